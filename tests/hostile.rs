//! The mount against a server that lies, through a tampering proxy (tests/common/tamper.rs):
//! listings naming what is not in the directory, names that are not UTF-8, pages that never
//! advance, oversized answers, hashmaps shorter than the object, blocks with other bytes.
//! A server that stops answering. Each time the call fails with EIO (the hang within the
//! mount's `io_timeout` per attempt), the mount's log says which request and why, and the mount
//! stays up and answers the next call rightly.

mod common;

use common::tamper::{Answer, Tamper};
use common::*;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Lie {
    Nothing,
    NameOutside,
    NotUtf8,
    NoAdvance,
    Oversized,
    ShortHashmap,
    OtherBytes,
    /// Holds the answer to a hashmap or listing back for a minute (a server that hangs).
    Stall,
}

fn lie(lie: Lie, method: &str, target: &str, a: &mut Answer) {
    let listing = method == "GET" && target.contains("delimiter=") && target.contains("format=json");
    match lie {
        Lie::NameOutside if listing && target.contains("prefix=d1") => {
            let mut v = a.json();
            v[0]["name"] = "elsewhere/x.txt".into();
            a.set_json(&v);
        }
        Lie::NotUtf8 if listing && target.contains("prefix=d2") => {
            let at = a.body.windows(5).position(|w| w == b"a.txt").expect("a name");
            a.body[at] = 0xc3; // a lead byte with no continuation
        }
        Lie::NoAdvance if listing && target.contains("prefix=d3") => {
            // A full page of the same names, whatever the marker asked.
            let row = a.json()[0].clone();
            let rows: Vec<serde_json::Value> = (0..10_000)
                .map(|i| {
                    let mut r = row.clone();
                    r["name"] = format!("d3/n{i:05}").into();
                    r
                })
                .collect();
            a.set_json(&serde_json::Value::Array(rows));
        }
        Lie::Oversized if listing && target.contains("prefix=d4") => {
            a.body = vec![b' '; 100 << 20];
        }
        Lie::ShortHashmap if method == "GET" && target.contains("hashmap=True") => {
            let mut v = a.json();
            v["hashes"].as_array_mut().unwrap().pop();
            a.set_json(&v);
        }
        Lie::OtherBytes if method == "GET" && target.contains("big.img") && a.status == 206 => {
            a.body[0] ^= 0xff;
        }
        Lie::Stall if method == "GET" && (target.contains("hashmap=True") || listing) => {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
        _ => {}
    }
}

/// A tampering proxy before `s` that tells the lie the returned cell holds (none at first).
fn lying_proxy(s: &Server) -> (Tamper, Arc<Mutex<Lie>>) {
    let now = Arc::new(Mutex::new(Lie::Nothing));
    let told = now.clone();
    let proxy = Tamper::start(
        &s.addr,
        Arc::new(move |m: &str, t: &str, a: &mut Answer| {
            // (copied out first: the guard must not be held through a stall)
            let now = *told.lock().unwrap();
            lie(now, m, t, a)
        }),
    );
    (proxy, now)
}

fn eio(r: std::io::Result<impl std::fmt::Debug>) -> bool {
    match r {
        Err(e) => e.raw_os_error() == Some(libc::EIO),
        Ok(v) => panic!("expected EIO, got {v:?}"),
    }
}

/// Reading the directory fails with EIO: at opendir, or (the directory is read a page at a
/// time) at a later page, after the entries of the pages before.
fn listing_eio(p: &std::path::Path) -> bool {
    let is_eio = |e: &std::io::Error| e.raw_os_error() == Some(libc::EIO);
    match std::fs::read_dir(p) {
        Err(e) => is_eio(&e),
        Ok(d) => d.filter_map(|e| e.err()).any(|e| is_eio(&e)),
    }
}

fn names(p: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn a_lying_server_gets_eio_and_the_mount_stays_up() {
    let s = Server::start();
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    for d in ["d1", "d2", "d3", "d4"] {
        api.put(&format!("pithos/{d}/a.txt"), b"a");
        api.put(&format!("pithos/{d}/b.txt"), b"b");
    }
    let big = pattern((2 << 22) + 4321, unique_seed());
    api.put("pithos/big.img", &big);
    let (proxy, now) = lying_proxy(&s);
    let m = Mount::new(&At(proxy.addr.clone()), &u, "verify_reads");
    let set = |l: Lie| *now.lock().unwrap() = l;

    for (l, dir, says) in [
        (Lie::NameOutside, "d1", "which is not under the prefix"),
        (Lie::NotUtf8, "d2", "unexpected reply"),
        (Lie::NoAdvance, "d3", "does not advance"),
        (Lie::Oversized, "d4", "more than the"),
    ] {
        set(l);
        assert!(listing_eio(&m.path(&format!("pithos/{dir}"))), "{l:?}");
        let log = m.log();
        assert!(log.contains(says), "{l:?}: the log says why:\n{log}");
        set(Lie::Nothing);
        assert_eq!(
            names(&m.path(&format!("pithos/{dir}"))),
            ["a.txt", "b.txt"],
            "{l:?}: up again"
        );
    }

    set(Lie::ShortHashmap);
    assert!(eio(std::fs::read(m.path("pithos/big.img")).map(|b| b.len())));
    assert!(m.log().contains("hashes for"), "{}", m.log());
    set(Lie::OtherBytes);
    assert!(eio(std::fs::read(m.path("pithos/big.img")).map(|b| b.len())));
    set(Lie::Nothing);
    assert_eq!(
        sha_file(&m.path("pithos/big.img")),
        sha256_hex(&big),
        "no bad block kept"
    );
    assert_eq!(std::fs::read(m.path("pithos/d1/a.txt")).unwrap(), b"a");

    // The daemon's memory stayed bounded through it all (the oversized answer was not read).
    let pid = sh(&format!("pgrep -f 'imgfs mount .* {}' | head -1", m.dir.display()));
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let hwm: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(hwm < 200 << 10, "mount peak RSS {hwm} kB");
    assert!(!m.log().contains("panicked"), "{}", m.log());
}

/// A server that hangs (the answer held back a minute): with `io_timeout=1` each attempt
/// gives up after a second, the retries after a few more, and the call is EIO well before
/// the server would have answered; the log names the request; the mount answers again as
/// soon as the server does.
#[test]
fn a_server_that_hangs_gets_eio_in_bounded_time() {
    let s = Server::start();
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    api.put("pithos/d/a.txt", b"a");
    let big = pattern((1 << 22) + 5, unique_seed());
    api.put("pithos/big.img", &big);
    let (proxy, now) = lying_proxy(&s);
    let m = Mount::new(&At(proxy.addr.clone()), &u, "io_timeout=1");
    *now.lock().unwrap() = Lie::Stall;
    let t = std::time::Instant::now();
    assert!(eio(std::fs::read(m.path("pithos/big.img")).map(|b| b.len())));
    assert!(listing_eio(&m.path("pithos/d")));
    let took = t.elapsed();
    // Two calls of six attempts each: ~2 x (6 x 1 s + 3 s of backoff). The stall is 60 s.
    assert!(took < std::time::Duration::from_secs(45), "took {took:?}");
    let log = m.log();
    assert!(
        log.contains("hashmap") && log.contains("timed out"),
        "the log names the request and the timeout:\n{log}"
    );
    *now.lock().unwrap() = Lie::Nothing;
    assert_eq!(sha_file(&m.path("pithos/big.img")), sha256_hex(&big));
    assert_eq!(names(&m.path("pithos/d")), ["a.txt"]);
    assert!(!m.log().contains("panicked"), "{}", m.log());
}
