//! imgfs serve over a real S3 endpoint (OpenStack Swift's s3api, started by scripts/test.sh's
//! `imgfs-s3` tier, which sets `IMGFS_TEST_S3` and the `AWS_*` variables): what only an S3
//! block store can do wrong — the endpoint going away and coming back, bytes changed inside
//! the bucket, two databases pointed at one prefix. The rest of the suite runs in that tier
//! too, with every server's blocks in S3.
//!
//! Named `s3_endpoint::…`; the tier without S3 skips them.

mod common;

mod s3_endpoint {
    use super::common::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    const BLOCK: usize = 4 << 20;

    fn endpoint() -> String {
        assert!(
            blocks_in_s3(),
            "IMGFS_TEST_S3 is not set: these tests run in scripts/test.sh's imgfs-s3 tier"
        );
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL")
    }

    /// A TCP relay to the S3 endpoint that the test can take down (every connection cut, new
    /// ones reset at once) and bring back: what a crashed or unreachable endpoint looks like
    /// to a client.
    struct Relay {
        addr: String,
        up: Arc<AtomicBool>,
        open: Arc<Mutex<Vec<TcpStream>>>,
    }

    impl Relay {
        fn start(upstream: &str) -> Relay {
            let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap().to_string();
            let up = Arc::new(AtomicBool::new(true));
            let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
            let (up2, open2) = (up.clone(), open.clone());
            std::thread::spawn(move || {
                for c in l.incoming() {
                    let Ok(c) = c else { continue };
                    if !up2.load(Ordering::SeqCst) {
                        drop(c);
                        continue;
                    }
                    let Ok(s) = TcpStream::connect(&upstream) else { continue };
                    open2
                        .lock()
                        .unwrap()
                        .extend([c.try_clone().unwrap(), s.try_clone().unwrap()]);
                    let pipe = |mut from: TcpStream, mut to: TcpStream| {
                        std::thread::spawn(move || {
                            let mut buf = vec![0u8; 64 << 10];
                            while let Ok(n) = from.read(&mut buf) {
                                if n == 0 || to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(Shutdown::Both);
                            let _ = from.shutdown(Shutdown::Both);
                        });
                    };
                    pipe(c.try_clone().unwrap(), s.try_clone().unwrap());
                    pipe(s, c);
                }
            });
            Relay { addr, up, open }
        }

        fn down(&self) {
            self.up.store(false, Ordering::SeqCst);
            for c in self.open.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }

        fn up(&self) {
            self.up.store(true, Ordering::SeqCst);
        }
    }

    fn fresh(env: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
        fresh_n(env, 1)
    }

    /// `n` servers over one storage (more than one: behind HAProxy, round-robin).
    fn fresh_n(env: &[(&str, &str)], n: usize) -> (Server, tempfile::TempDir) {
        endpoint();
        let tmp = tempfile::Builder::new()
            .prefix("imgfs-s3-")
            .tempdir_in(test_root())
            .unwrap();
        let data = tmp.path().join("data");
        let s = match n {
            1 => Server::start_single(&data, "127.0.0.1:0", &[], env),
            _ => Server::start_many(n, &data, "127.0.0.1:0", &[], env),
        };
        (s, tmp)
    }

    /// The endpoint goes away: reads of blocks, uploads and the readiness check answer 503
    /// with `Retry-After` within seconds (no 500, no hang), metadata still answers; when it
    /// is back everything works again and nothing was lost or torn.
    #[test]
    fn an_endpoint_that_goes_away_gives_503s_and_all_works_again_when_it_returns() {
        endpoint_goes_away(1);
    }

    /// The same through three servers behind HAProxy.
    #[test]
    fn an_endpoint_that_goes_away_under_three_servers_gives_503s_and_all_works_again() {
        endpoint_goes_away(3);
    }

    fn endpoint_goes_away(n: usize) {
        let relay = Relay::start(&endpoint());
        let url = format!("http://{}", relay.addr);
        let (s, _tmp) = fresh_n(&[("AWS_ENDPOINT_URL", &url)], n);
        let u = s.add_user("alice");
        let api = Api::new(&s, &u);
        let img = pattern(2 * BLOCK + 4321, 41);
        assert_eq!(api.put("pithos/disk.img", &img).status(), 201);
        assert_eq!(api.get("pithos/disk.img"), img);
        let health = |want: u16| {
            let r = http().get(format!("{}/healthz", s.url())).send().unwrap();
            assert_eq!(r.status(), want);
            r
        };
        health(200);

        relay.down();
        let t = Instant::now();
        let r = health(503);
        assert_eq!(r.headers()["retry-after"], "5");
        assert_eq!(r.text().unwrap(), "unavailable: the block store does not answer\n");
        let r = api.os("GET", "pithos/disk.img").send().unwrap();
        // (the answer may have started: then it is cut short, never completed with wrong bytes)
        match r.status().as_u16() {
            503 => assert_eq!(r.headers()["retry-after"], "5"),
            200 => assert!(
                r.bytes().map_or(true, |b| b.len() < img.len()),
                "a torn read must not complete"
            ),
            other => panic!("GET while the endpoint is down: {other}"),
        }
        let r = api
            .os("PUT", "pithos/new.img")
            .body(pattern(BLOCK + 1, 42))
            .send()
            .unwrap();
        assert_eq!(r.status(), 503, "{}", r.text().unwrap_or_default());
        let r = api.head("pithos/disk.img");
        assert_eq!(r.status(), 200, "metadata answers without the block store");
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "answers came in {:?}",
            t.elapsed()
        );
        assert!(s.log().contains("storage backend unavailable"), "logged with its cause");

        relay.up();
        health(200);
        assert_eq!(api.get("pithos/disk.img"), img);
        let new = pattern(BLOCK + 1, 42);
        assert_eq!(api.put("pithos/new.img", &new).status(), 201);
        assert_eq!(api.get("pithos/new.img"), new);
        let r = api.os("GET", "pithos/new.img?format=json&hashmap").send().unwrap();
        assert_eq!(r.status(), 200);
        assert!(!s.log().contains("panicked"));
    }

    /// A block whose bytes were changed inside the bucket is never served; it counts as
    /// missing from then on (a hashmap naming it gets 409 for it), and the next upload of the
    /// block heals every object that names it.
    #[test]
    fn a_block_changed_in_the_bucket_is_not_served_and_an_upload_heals_it() {
        let (s, _tmp) = fresh(&[]);
        let u = s.add_user("alice");
        let api = Api::new(&s, &u);
        let img = pattern(BLOCK + 77, 43);
        assert_eq!(api.put("pithos/a.img", &img).status(), 201);
        let url = s3_blocks(&s.data).unwrap();
        let first = imgfs::api::hashing::block_hash(&img[..BLOCK]).to_hex();
        let key = s3_objects(&url)
            .into_iter()
            .map(|(n, _)| n)
            .find(|n| n.ends_with(&first))
            .expect("the first block in the bucket");
        swift_put(&url, &key, &pattern(BLOCK, 99));

        let r = api.os("GET", "pithos/a.img").send().unwrap();
        let got = r.bytes().map(|b| b.to_vec()).unwrap_or_default();
        assert_ne!(got, img, "the changed block is not served");
        assert!(
            got.len() < img.len(),
            "the answer is cut, not completed with other bytes"
        );
        assert!(s.log().contains("corrupt block deleted"));
        // A hashmap naming it: the block is missing now.
        let hashes: Vec<String> = img
            .chunks(BLOCK)
            .map(|c| imgfs::api::hashing::block_hash(c).to_hex())
            .collect();
        let body = serde_json::json!({"bytes": img.len(), "hashes": hashes}).to_string();
        let r = api
            .os("PUT", "pithos/b.img?hashmap&format=json")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 409);
        assert_eq!(r.json::<Vec<String>>().unwrap(), vec![first.clone()]);
        let r = api
            .os("POST", "pithos?update&format=json")
            .header("Content-Type", "application/octet-stream")
            .body(img[..BLOCK].to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(
            api.os("PUT", "pithos/b.img?hashmap&format=json")
                .body(body)
                .send()
                .unwrap()
                .status(),
            201
        );
        assert_eq!(api.get("pithos/a.img"), img, "healed");
        assert_eq!(api.get("pithos/b.img"), img);
    }

    /// Two metadata databases over one prefix would collect each other's blocks: the second
    /// server refuses to start, naming the reason; the first starts again on its own.
    #[test]
    fn a_prefix_serves_one_metadata_database() {
        let (s, tmp) = fresh(&[]);
        let url = s3_blocks(&s.data).unwrap();
        let other = tmp.path().join("other");
        let mut child = std::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--meta"])
            .arg(format!("sqlite:{}", other.display()))
            .args(["--blocks", &url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("a second database over the same prefix was served");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("another imgfs metadata database"), "{err}");
        let data = s.data.clone();
        drop(s);
        let again = Server::start_on(&data);
        assert_eq!(
            http().get(format!("{}/healthz", again.url())).send().unwrap().status(),
            200
        );
    }

    /// Writes an object's bytes through Swift's own API (behind imgfs's back).
    fn swift_put(url: &str, key: &str, data: &[u8]) {
        let bucket = url.trim_start_matches("s3://").split('/').next().unwrap();
        let (token, storage) = swift_session();
        let r2 = http()
            .put(format!("{storage}/{bucket}/{key}"))
            .header("X-Auth-Token", token)
            .body(data.to_vec())
            .send()
            .unwrap();
        assert_eq!(r2.status(), 201);
    }
}
