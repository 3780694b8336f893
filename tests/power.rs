//! Power cuts, not just kill -9: the server's data directory on a filesystem that keeps every
//! write in memory until it is fsynced and loses the rest at the cut (tests/common/lazyfs.rs).
//! Writers upload, overwrite and delete while the server's collector runs every second with
//! no grace period; the power goes at a random moment (mid-upload, mid-overwrite, mid-GC);
//! after the restart every acknowledged object reads back whole, every unacknowledged one is
//! old, new or absent — never torn — and SQLite's integrity check passes.

mod common;

use common::lazyfs::LazyFs;
use common::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a name may hold after the cut: sha256 of its acknowledged content (None: absent), and
/// for an operation in flight, the other possible outcome.
#[derive(Clone, Debug, Default)]
struct Expect {
    acked: Option<String>,
    in_flight: Option<Option<String>>,
}

type Book = Arc<Mutex<BTreeMap<String, Expect>>>;

fn writer(api: Api, book: Book, stop: Arc<AtomicBool>, seed: u64, ops: Arc<AtomicU64>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let r = seed.wrapping_mul(31).wrapping_add(n);
        let container = if r.is_multiple_of(3) { "pithos" } else { "flat" };
        // A new object, an overwrite of an acknowledged one, or a delete.
        let existing: Vec<String> = book
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, e)| e.acked.is_some() && e.in_flight.is_none() && k.starts_with(container))
            .map(|(k, _)| k.clone())
            .collect();
        let op = r % 5;
        let pick = || existing[(r as usize / 5) % existing.len()].clone();
        let (name, new_sha, request) = if op == 0 && !existing.is_empty() {
            let name = pick();
            let rq = api.os("DELETE", &name);
            (name, None, rq)
        } else {
            let name = if (op == 1 || op == 2) && !existing.is_empty() {
                pick()
            } else {
                format!("{container}/obj-{seed}-{n}")
            };
            let data = pattern(1 + (r as usize * 7919) % (12 << 20), r ^ unique_seed());
            let sha = sha256_hex(&data);
            let rq = api
                .os("PUT", &name)
                .header("Content-Type", "application/octet-stream")
                .body(data);
            (name, Some(sha), rq)
        };
        book.lock().unwrap().entry(name.clone()).or_default().in_flight = Some(new_sha.clone());
        match request.send() {
            Ok(resp) if resp.status() == 201 || resp.status() == 204 => {
                let mut b = book.lock().unwrap();
                let e = b.get_mut(&name).expect("booked");
                e.acked = new_sha;
                e.in_flight = None;
                ops.fetch_add(1, Ordering::Relaxed);
            }
            Ok(resp) if resp.status().is_server_error() && !stop.load(Ordering::Relaxed) => {
                panic!("{name}: {} {}", resp.status(), resp.text().unwrap_or_default())
            }
            // (cut: the outcome is either; it stays in flight)
            _ => return,
        }
    }
}

fn integrity_ok(data: &std::path::Path) {
    let c = rusqlite::Connection::open_with_flags(data.join("meta.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let v: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(v, "ok", "SQLite integrity_check");
}

#[test]
fn power_cuts_mid_upload_overwrite_and_gc_lose_nothing_acknowledged() {
    if meta_in_pg() {
        // (the cut is of imgfs's own disk: with the metadata in PostgreSQL that disk holds
        // nothing to lose — what this test checks is SQLite's and the block files' order)
        eprintln!("skipped: the metadata is in PostgreSQL, not on the disk being cut");
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("power-")
        .tempdir_in(test_root())
        .unwrap();
    let mnt = root.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let mut fs = LazyFs::mount(&mnt);
    let data = mnt.join("data");
    std::fs::create_dir(&data).unwrap();
    // (the data directory existed before; what imgfs makes inside it is its own business)
    fs.sync_all();
    let args = ["--gc-grace", "0", "--gc-interval", "1"];
    let mut s = Server::start_on_with(&data, &args);
    let user = s.add_user("alice");
    let api = Api::new(&s, &user);
    let r = api
        .os("PUT", "flat")
        .header("X-Container-Policy-Versioning", "none")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let book: Book = Arc::default();
    let mut checked = 0;
    for round in 0..6u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (api, book, stop, ops) = (Api::new(&s, &user), book.clone(), stop.clone(), ops.clone());
                std::thread::spawn(move || writer(api, book, stop, round * 10 + w, ops))
            })
            .collect();
        // The cut comes at a moment the writers cannot foresee.
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(400 + (unique_seed() % 1200)));
        stop.store(true, Ordering::Relaxed);
        s.kill9();
        for w in writers {
            w.join().expect("a writer failed");
        }
        let before = fs.fsyncs();
        fs.power_cut();
        s = Server::start_on_with(&data, &args);
        let api = Api::new(&s, &user);
        integrity_ok(&data);
        let mut b = book.lock().unwrap();
        for (name, e) in b.iter_mut() {
            let r = api.os("GET", name).send().unwrap();
            let got = match r.status().as_u16() {
                200 => match r.bytes() {
                    Ok(b) => Some(sha256_hex(&b)),
                    Err(e) => {
                        let log = s.log();
                        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).take(5).collect();
                        panic!("{name} after the cut: {e}; the server said:\n{}", errors.join("\n"))
                    }
                },
                404 => None,
                other => panic!("{name} after the cut: {other} {}", r.text().unwrap_or_default()),
            };
            match &e.in_flight {
                None => assert_eq!(got, e.acked, "{name}: acknowledged, then the power went"),
                Some(other) => assert!(
                    got == e.acked || got == *other,
                    "{name}: in flight at the cut, now {got:?} (old {:?}, new {other:?})",
                    e.acked
                ),
            }
            e.acked = got;
            e.in_flight = None;
            checked += 1;
        }
        eprintln!(
            "round {round}: cut after {:?}, {} acknowledged operations, {} objects checked, {before} fsyncs so far",
            t.elapsed(),
            ops.load(Ordering::Relaxed),
            b.len()
        );
    }
    assert!(checked > 20, "enough objects were at stake ({checked})");
}
