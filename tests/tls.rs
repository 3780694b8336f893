//! https with a certificate of our own (made by openssl for 127.0.0.1): `imgfs serve
//! --tls-cert --tls-key`, witnessed by curl and by a rustls client that trusts only that
//! certificate; the mount over https, trusting a private CA by `-o ca_file=`, `SSL_CERT_FILE`
//! or kamaki's `ca_certs`, and refusing a server it cannot trust; kamaki over https.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const LOOPBACK: &str = "IP:127.0.0.1,DNS:localhost";

/// A test CA and a server certificate it signed for `names` (openssl's subjectAltName):
/// (ca.pem, cert.pem, key.pem).
fn make_cert(dir: &Path, names: &str) -> (String, String, String) {
    let p = |n: &str| dir.join(n).display().to_string();
    std::fs::write(
        dir.join("leaf.ext"),
        format!("subjectAltName={names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
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
    let (ca, cert, key) = make_cert(dir.path(), LOOPBACK);
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
    let (_, cert, key) = make_cert(dir.path(), LOOPBACK);
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

/// A TLS server's URLs.
struct Https<'a>(&'a Server);

impl Endpoints for Https<'_> {
    fn identity_url(&self) -> String {
        format!("https://{}/identity/v2.0", self.0.addr)
    }
    fn pithos_url(&self) -> String {
        format!("https://{}/object-store/v1", self.0.addr)
    }
    fn image_url(&self) -> String {
        format!("https://{}/image/v1.0", self.0.addr)
    }
}

/// `imgfs mount SOURCE DIR -o OPTS` with extra environment; its output (the mount stays up
/// on success: the caller unmounts).
fn mount(source: &str, dir: &Path, opts: &str, env: &[(&str, &str)]) -> std::process::Output {
    std::fs::create_dir_all(dir).unwrap();
    let mut c = Command::new(BIN);
    c.args(["mount", source]).arg(dir).args(["-o", opts]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn unmount(dir: &Path) {
    let out = Command::new("fusermount3").arg("-u").arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The mount reaches an https cloud when told whom to trust (`ca_file=`, the CA in
/// `SSL_CERT_FILE`, kamaki's `ca_certs` for a `kamaki:` source), and otherwise refuses it
/// with a message that says it is the certificate, whose, and why; kamaki over https reads
/// what the mount wrote.
#[test]
fn the_mount_speaks_https_and_says_why_it_will_not() {
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    let (ca, cert, key) = make_cert(dir.path(), LOOPBACK);
    let s = Server::start_args(&["--tls-cert", &cert, "--tls-key", &key]);
    let u = s.add_user("alice");
    let cloud = Https(&s);
    let url = cloud.identity_url();
    let token = dir.path().join("token");
    std::fs::write(&token, &u.token).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log = dir.path().join("mount.log");
    let base = format!("token_file={},log_file={}", token.display(), log.display());
    let mnt = dir.path().join("m");

    // Trusting the CA by ca_file=: files go in and come out over https.
    let data = pattern((9 << 20) + 7, unique_seed());
    let out = mount(&url, &mnt, &format!("{base},ca_file={ca}"), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(mnt.join("pithos/tls.img"), &data).unwrap();
    assert_eq!(sha_file(&mnt.join("pithos/tls.img")), sha256_hex(&data));
    unmount(&mnt);
    let api = trusting(&ca);
    let got = api
        .get(format!("{}/{}/pithos/tls.img", cloud.pithos_url(), u.uuid))
        .header("X-Auth-Token", &u.token)
        .send()
        .unwrap();
    assert_eq!(sha256_hex(&got.bytes().unwrap()), sha256_hex(&data), "stored whole");

    // Trusting it through SSL_CERT_FILE, as OpenSSL-based tools do.
    let out = mount(&url, &mnt, &base, &[("SSL_CERT_FILE", &ca)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha_file(&mnt.join("pithos/tls.img")), sha256_hex(&data));
    unmount(&mnt);

    // Not told: refused, and the message says why.
    let out = mount(&url, &mnt, &base, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the certificate of {}", s.addr)) && err.contains("UnknownIssuer"),
        "{err}"
    );
    assert!(err.contains("ca_file"), "says what to do: {err}");
    eprintln!("an untrusted server: {err}");
    assert!(!err.contains("panicked"), "{err}");
    // A CA file that holds no certificate is an error, not a quiet fallback to the system's.
    let out = mount(&url, &mnt, &format!("{base},ca_file={}", token.display()), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no certificate"), "{err}");

    // A certificate made out to another name: refused although its CA is trusted.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (ca2, cert2, key2) = make_cert(&other, "DNS:elsewhere.test");
    let s2 = Server::start_args(&["--tls-cert", &cert2, "--tls-key", &key2]);
    let u2 = s2.add_user("bob");
    std::fs::write(&token, &u2.token).unwrap();
    let out = mount(&Https(&s2).identity_url(), &mnt, &format!("{base},ca_file={ca2}"), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not made out to this host name"), "{err}");
    eprintln!("a certificate for another name: {err}");
    std::fs::write(&token, &u.token).unwrap();

    // kamaki over https, with the CA as its ca_certs: reads what the mount wrote, and a
    // kamaki:CLOUD source of the mount takes the same setting.
    let k = Kamaki::new(&cloud, &u);
    k.ok(&["config", "set", "ca_certs", &ca]);
    let dl = k.path("tls.img");
    k.ok(&["file", "download", "/pithos/tls.img", dl.to_str().unwrap()]);
    assert_eq!(sha_file(&dl), sha256_hex(&data));
    let home = tempfile::tempdir_in(test_root()).unwrap();
    std::fs::write(
        home.path().join(".kamakirc"),
        format!(
            "[global]\ndefault_cloud = tls\nca_certs = {ca}\n\n[cloud \"tls\"]\nurl = {url}\ntoken = {}\n",
            u.token
        ),
    )
    .unwrap();
    let home_dir = home.path().display().to_string();
    let out = mount(
        "kamaki:tls",
        &mnt,
        &format!("log_file={}", log.display()),
        &[("HOME", &home_dir)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha_file(&mnt.join("pithos/tls.img")), sha256_hex(&data));
    unmount(&mnt);
    assert!(!s.log().contains("panicked"));
}
