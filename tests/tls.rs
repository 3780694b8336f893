//! `imgfs serve --tls-cert --tls-key`: https with a certificate of our own (made by openssl
//! for 127.0.0.1), witnessed by curl and by a rustls client that trusts only that certificate.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost:
/// (ca.pem, cert.pem, key.pem).
fn make_cert(dir: &Path) -> (String, String, String) {
    let p = |n: &str| dir.join(n).display().to_string();
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh(&format!(
        "set -e; openssl req -x509 {ec} -days 2 -subj /CN=imgfs-test-ca -keyout '{cakey}' -out '{ca}' 2>&1
         openssl req {ec} -subj /CN=localhost -keyout '{key}' -out '{csr}' 2>&1
         openssl x509 -req -in '{csr}' -CA '{ca}' -CAkey '{cakey}' -CAcreateserial -days 2 \
           -extfile '{ext}' -out '{cert}' 2>&1",
        cakey = p("ca.key"),
        ca = p("ca.pem"),
        key = p("key.pem"),
        csr = p("leaf.csr"),
        ext = p("leaf.ext"),
        cert = p("cert.pem"),
    ));
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

fn trusting(ca: &str) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(ca).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn the_server_speaks_https_with_its_certificate() {
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    let (ca, cert, key) = make_cert(dir.path());
    let s = Server::start_args(&["--tls-cert", &cert, "--tls-key", &key, "--header-timeout", "2"]);
    let u = s.add_user("alice");
    let base = format!("https://{}", s.addr);
    let c = trusting(&ca);
    // The identity service hands out https URLs.
    let r = c
        .post(format!("{base}/identity/v2.0/tokens"))
        .json(&serde_json::json!({"auth": {"token": {"id": u.token}}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    let store = v["access"]["serviceCatalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "object-store")
        .unwrap()["endpoints"][0]["publicURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(store, format!("{base}/object-store/v1"));
    // Objects in and out over TLS, through the catalog's URL.
    let data = pattern(5 << 20, unique_seed());
    let url = format!("{store}/{}/pithos/over-tls.img", u.uuid);
    let r = c
        .put(&url)
        .header("X-Auth-Token", &u.token)
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = c.get(&url).header("X-Auth-Token", &u.token).send().unwrap();
    assert_eq!(got.version(), reqwest::Version::HTTP_2, "h2 by ALPN");
    assert_eq!(sha256_hex(&got.bytes().unwrap()), sha256_hex(&data));
    // curl, trusting the certificate, reads the same bytes; without it, refuses the server.
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert", &ca, "-H"])
        .arg(format!("X-Auth-Token: {}", u.token))
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256_hex(&out.stdout), sha256_hex(&data));
    let out = Command::new("curl").args(["-sS", &url]).output().unwrap();
    assert!(!out.status.success(), "an unknown certificate is refused by curl");
    // Plain http to the TLS port gets no answer, and the server goes on.
    let plain = http().get(format!("http://{}/identity/v2.0/tokens", s.addr)).send();
    assert!(plain.is_err() || plain.unwrap().status() == 400);
    // A client that connects and never says hello is dropped after the header timeout.
    let t = Instant::now();
    let mut idle = std::net::TcpStream::connect(&s.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut idle, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "handshake timeout: {:?}",
        t.elapsed()
    );
    assert_eq!(
        c.get(&url).header("X-Auth-Token", &u.token).send().unwrap().status(),
        200
    );
    assert!(!s.log().contains("panicked"));
}

#[test]
fn a_bad_certificate_or_key_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    let (_, cert, key) = make_cert(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let data = dir.path().join("data");
    for (c, k, says) in [
        (garbage.display().to_string(), key.clone(), "no certificate"),
        (cert.clone(), garbage.display().to_string(), "garbage.pem"),
        (cert.clone(), "/nonexistent/key.pem".to_string(), "/nonexistent/key.pem"),
        (key.clone(), cert.clone(), ""),
    ] {
        let out = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &c,
                "--tls-key",
                &k,
                "--data",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{c} {k}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert", &cert, "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-key"),
        "both or neither"
    );
}
