//! kill -9 of the server during a 200 MiB hashmap upload and during a raw overwrite, then a
//! restart on the same data directory: every object must read back as its old or its new
//! content, whole (never torn, never short), and the server must start again.

mod common;

use common::*;
use imgfs::api::hashing::{block_hash, merkle, BLOCK_SIZE};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SIZE: usize = 200 << 20;
const TRIALS: u64 = 10;

/// The base content with every block's first byte varied by `n`, so that no block of one
/// version dedups against another's.
fn version(base: &[u8], n: u8) -> Vec<u8> {
    let mut d = base.to_vec();
    for k in (0..d.len()).step_by(BLOCK_SIZE) {
        d[k] ^= n;
    }
    d
}

fn hashmap_upload(api: &Api, path: &str, data: &[u8]) -> Result<(), String> {
    let blocks: Vec<&[u8]> = data.chunks(BLOCK_SIZE).collect();
    let hashes: Vec<String> = blocks.iter().map(|b| block_hash(b).to_hex()).collect();
    let body = json!({"bytes": data.len(), "hashes": hashes}).to_string();
    let put = || {
        api.os("PUT", &format!("{path}?hashmap=True"))
            .body(body.clone())
            .send()
            .map_err(|e| e.to_string())
    };
    let r = put()?;
    if r.status() == 201 {
        return Ok(());
    }
    let missing: Vec<String> = r.json().map_err(|e| e.to_string())?;
    let container = path.split('/').next().unwrap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(h) = missing.get(i) else { break };
                let b = blocks[hashes.iter().position(|x| x == h).unwrap()];
                let ok = api
                    .os("POST", &format!("{container}?update"))
                    .header("Content-Type", "application/octet-stream")
                    .body(b.to_vec())
                    .send()
                    .is_ok_and(|r| r.status() == 202);
                if !ok {
                    failed.store(true, Ordering::SeqCst);
                    break;
                }
            });
        }
    });
    if failed.load(Ordering::SeqCst) {
        return Err("block upload failed".into());
    }
    let r = put()?;
    if r.status() == 201 {
        Ok(())
    } else {
        Err(format!("final PUT: {}", r.status()))
    }
}

fn raw_upload(api: &Api, path: &str, data: &[u8]) -> Result<(), String> {
    let r = api
        .os("PUT", path)
        .body(data.to_vec())
        .send()
        .map_err(|e| e.to_string())?;
    if r.status() == 201 {
        Ok(())
    } else {
        Err(format!("{}", r.status()))
    }
}

/// Which of the candidates the object now is, checking every byte and the Merkle hash.
fn which(api: &Api, path: &str, candidates: &[(&str, &str)]) -> String {
    let head = api.head(path);
    assert_eq!(head.status(), 200, "{path} must exist after the crash");
    let body = api.get(path);
    assert_eq!(header(&head, "content-length"), body.len().to_string());
    let hashes: Vec<_> = body.chunks(BLOCK_SIZE).map(block_hash).collect();
    assert_eq!(
        header(&head, "x-object-hash"),
        merkle(&hashes).to_hex(),
        "stored hash matches the bytes served"
    );
    let sum = sha256_hex(&body);
    candidates
        .iter()
        .find(|(_, s)| *s == sum)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| panic!("{path} is neither old nor new (len {}): torn", body.len()))
}

fn run_trials(kind: &str, upload: fn(&Api, &str, &[u8]) -> Result<(), String>) {
    let tmp = tempfile::tempdir_in(test_root()).unwrap();
    let data_dir = tmp.path().join("data");
    let mut server = Server::start_on(&data_dir);
    let user = server.add_user("crash");
    let base = pattern(SIZE, 11);
    let mut old = version(&base, 1);
    let mut old_sum = sha256_hex(&old);
    {
        let api = Api::new(&server, &user);
        upload(&api, "pithos/target", &old).unwrap();
        // Undisturbed runs to learn how long an upload takes (the first one is cold).
        let mut full = Duration::MAX;
        for n in 0..2 {
            let t = Instant::now();
            upload(&api, "pithos/probe", &version(&base, 200 + n)).unwrap();
            full = full.min(t.elapsed());
        }
        eprintln!("{kind}: an undisturbed 200 MiB upload takes {full:?}");
        std::env::set_var("CRASH_FULL_MS", full.as_millis().to_string());
    }
    let full_ms: u64 = std::env::var("CRASH_FULL_MS").unwrap().parse().unwrap();
    let mut outcomes = vec![];
    for trial in 0..TRIALS {
        let new = version(&base, 2 + trial as u8);
        let new_sum = sha256_hex(&new);
        // Spread the kills over the whole upload, commit included.
        let delay = Duration::from_millis(full_ms * (trial + 1) / TRIALS + 5);
        let api = Api::new(&server, &user);
        let pid = server.pid();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        });
        let result = upload(&api, "pithos/target", &new);
        killer.join().unwrap();
        server.kill9();
        server = Server::start_on(&data_dir);
        let api = Api::new(&server, &user);
        let got = which(&api, "pithos/target", &[("old", &old_sum), ("new", &new_sum)]);
        if result.is_ok() {
            assert_eq!(got, "new", "an acknowledged upload must survive the crash");
        }
        eprintln!(
            "{kind} trial {trial}: kill after {delay:?}, upload {:?} → {got}",
            result.as_ref().map(|_| "acknowledged")
        );
        outcomes.push(got.clone());
        if got == "new" {
            old = new;
            old_sum = new_sum;
        }
        // the restarted server takes new writes
        raw_upload(&api, "pithos/after", b"alive").unwrap();
    }
    let _ = old;
    eprintln!("{kind}: outcomes {outcomes:?}");
}

#[test]
fn kill9_during_hashmap_upload() {
    run_trials("hashmap", hashmap_upload);
}

#[test]
fn kill9_during_raw_overwrite() {
    run_trials("raw", raw_upload);
}
