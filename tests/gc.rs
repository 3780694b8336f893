//! Space comes back: garbage collection and quotas of a real `imgfs serve`, with `imgfs gc`
//! run beside it (a second process over the same database, as several servers would be).

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const BLOCK: usize = 4 << 20;

/// What the live objects need on disk: each distinct block once, trailing NULs trimmed.
fn live_usage<'a>(objects: impl IntoIterator<Item = &'a Vec<u8>>) -> u64 {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for data in objects {
        for b in data.chunks(BLOCK) {
            let end = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
            if end > 0 && seen.insert(sha256_hex(&b[..end])) {
                total += end as u64;
            }
        }
    }
    total
}

/// `imgfs gc --grace 0`, again while the server's own collector holds the lease.
fn gc_now(data: &Path) -> serde_json::Value {
    for _ in 0..100 {
        let out = imgfs(data).args(["gc", "--grace", "0"]).storage(data).output().unwrap();
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a report");
        if r["skipped"] == true {
            assert!(!out.status.success(), "a skipped run fails");
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        assert!(
            out.status.success(),
            "imgfs gc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return r;
    }
    panic!("the collector's lease was never free");
}

/// `imgfs user quota NAME BYTES` beside the server.
fn set_quota(s: &Server, name: &str, bytes: u64) {
    let out = imgfs(&s.data)
        .args(["user", "quota", name, &bytes.to_string()])
        .storage(&s.data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn account_bytes(api: &Api) -> u64 {
    header(&api.head(""), "x-account-bytes-used").parse().unwrap()
}

/// Overwrites under `none`, deletes, a purged container, an abandoned upload, a temp file of a
/// cut write and a block file the database never knew: after one collection the block files
/// are exactly the live data, and every live object reads back whole.
#[test]
fn after_overwrites_deletes_and_purges_disk_usage_returns_to_the_live_data() {
    let s = Server::start_args(&["--gc-interval", "0"]);
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    let keep = pattern(2 * BLOCK + 12345, unique_seed());
    api.put("pithos/keep.img", &keep);
    for (c, policy) in [("flat", "none"), ("scratch", "auto")] {
        let r = api
            .os("PUT", c)
            .header("X-Container-Policy-Versioning", policy)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Overwritten under "none": the first version's blocks are nobody's.
    api.put("flat/over.img", &pattern(BLOCK + 1, unique_seed()));
    let over = pattern(BLOCK + 99, unique_seed());
    api.put("flat/over.img", &over);
    // Deleted under "auto", then purged with its container.
    api.put("scratch/gone.img", &pattern(BLOCK, unique_seed()));
    assert_eq!(api.os("DELETE", "scratch/gone.img").send().unwrap().status(), 204);
    assert_eq!(api.os("DELETE", "scratch").send().unwrap().status(), 204);
    // Sent and never used.
    assert_eq!(upload_block(&api, &pattern(BLOCK, unique_seed())).status(), 202);
    // What a crash leaves: a temp file, and a block file with no row. (Block files only: an
    // S3 store has no temp files, and its objects' times cannot be set back; its strays are
    // swept by the same code once they are older than 15 minutes.)
    let strays = !blocks_in_s3();
    if strays {
        let orphan = pattern(777, 2);
        let oh = sha256_hex(&orphan);
        let stray = s.data.join("blocks").join(&oh[0..2]).join(&oh[2..4]);
        std::fs::create_dir_all(&stray).unwrap();
        std::fs::write(stray.join(".tmp-cut-write"), pattern(1000, 1)).unwrap();
        std::fs::write(stray.join(&oh), &orphan).unwrap();
        sh(&format!(
            "touch -d '2 hours ago' {}/* {}/.tmp-cut-write",
            stray.display(),
            stray.display()
        ));
    }

    let live = live_usage([&keep, &over]);
    assert!(stored_blocks(&s.data).0 > live + 3 * BLOCK as u64, "garbage to collect");
    let r = gc_now(&s.data);
    assert_eq!(r["skipped"], false);
    assert_eq!(r["uploads_expired"], 1, "{r}");
    assert_eq!(r["blocks_freed"], 4, "{r}"); // the first over.img (2), gone.img, the upload
    let n = u64::from(strays);
    assert_eq!(
        (r["orphans_freed"].as_u64(), r["temp_files_freed"].as_u64()),
        (Some(n), Some(n)),
        "{r}"
    );
    let (bytes, files) = stored_blocks(&s.data);
    assert_eq!(bytes, live, "disk = live data ({files} block files)");
    assert_eq!(api.get("pithos/keep.img"), keep);
    assert_eq!(api.get("flat/over.img"), over);
    assert_eq!(account_bytes(&api), live, "the account is charged what it stores");
    // A second run finds nothing.
    let r = gc_now(&s.data);
    assert_eq!(r["bytes_freed"], 0, "{r}");
    assert!(!s.log().contains("panicked"));
}

/// 20 writers make objects of shared and unique blocks while others delete theirs, and
/// collectors with no grace period run all along (two servers over one data directory, each
/// its own every second, and `imgfs gc` processes one after another, 50 ms apart; the lease
/// in the database lets one run at a time): each acknowledged object reads back whole. A writer whose blocks
/// were collected before its hashmap PUT gets 409 for them and sends them again, as kamaki does.
#[test]
fn a_collector_racing_20_writers_of_shared_blocks_loses_nothing() {
    let s = Server::start_args(&["--gc-grace", "0", "--gc-interval", "1"]);
    // A second server over the same database and blocks, collecting too: writers send their
    // blocks through one and their hashmaps through the other.
    let s2 = Server::start_on_with(&s.data, &["--gc-grace", "0", "--gc-interval", "1"]);
    let users: Vec<_> = (0..4).map(|i| s.add_user(&format!("u{i}"))).collect();
    for u in &users {
        let r = Api::new(&s, u)
            .os("PUT", "flat")
            .header("X-Container-Policy-Versioning", "none")
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let pool: Arc<Vec<Vec<u8>>> = Arc::new((0..5).map(|i| pattern(BLOCK, 1000 + i)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicU64::new(0));
    let collector = {
        let (stop, runs, data) = (stop.clone(), runs.clone(), s.data.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = imgfs(&data)
                    .args(["gc", "--grace", "0"])
                    .storage(&data)
                    .output()
                    .unwrap();
                // (exit 1 with "skipped" while the server's collector holds the lease)
                let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a report");
                if r["skipped"] == false {
                    runs.fetch_add(1, Ordering::Relaxed);
                }
                // (20 collections a second and the servers' own: uploads still race them,
                // and a writer still gets its object in within a bounded number of tries)
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let retries = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..20)
        .map(|w| {
            let user = &users[w % users.len()];
            let (one, other) = if w % 2 == 0 { (&s, &s2) } else { (&s2, &s) };
            let (api, blocks) = (Api::new(one, user), Api::new(other, user));
            let (pool, retries) = (pool.clone(), retries.clone());
            std::thread::spawn(move || {
                let mut kept = vec![];
                for round in 0..4u64 {
                    let seed = (w as u64) << 8 | round;
                    let mut data = pool[(w + round as usize) % pool.len()].clone();
                    data.extend_from_slice(&pool[(w * 3 + round as usize) % pool.len()]);
                    data.extend_from_slice(&pattern(1000 + w, seed));
                    let name = format!("flat/w{w}-r{round}.img");
                    put_by_hashmap(&api, &blocks, &name, &data, &retries);
                    // Every other object goes again at once (no history in "flat"): its blocks
                    // may become nobody's while another writer is about to name them.
                    if round % 2 == 1 {
                        assert_eq!(api.os("DELETE", &name).send().unwrap().status(), 204);
                    } else {
                        kept.push((api.user.clone(), name, data));
                    }
                }
                kept
            })
        })
        .collect();
    let mut kept = vec![];
    for w in writers {
        match w.join() {
            Ok(k) => kept.extend(k),
            Err(_) => {
                let log = s.log();
                let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).take(5).collect();
                panic!("a writer failed; the server said:\n{}", errors.join("\n"));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    collector.join().unwrap();
    assert!(runs.load(Ordering::Relaxed) > 0, "imgfs gc ran beside the server");
    eprintln!(
        "{} objects kept, {} collections by imgfs gc, {} hashmap PUTs answered 409 after their blocks were sent",
        kept.len(),
        runs.load(Ordering::Relaxed),
        retries.load(Ordering::Relaxed)
    );
    for (user, name, data) in &kept {
        let api = Api::new(&s, user);
        assert_eq!(sha256_hex(&api.get(name)), sha256_hex(data), "{name}");
    }
    // One more collection, and everything is still there.
    gc_now(&s.data);
    for (user, name, data) in &kept {
        let api = Api::new(&s, user);
        assert_eq!(
            sha256_hex(&api.get(name)),
            sha256_hex(data),
            "{name} after the last collection"
        );
    }
    assert!(!s.log().contains("panicked"));
}

/// The account's quota counts blocks sent before any object names them (413 from the upload
/// itself, nothing written), history, and not metadata-only versions; the mount's statfs says
/// what is left.
#[test]
fn quotas_count_uploads_and_history_and_statfs_tells_the_truth() {
    let s = Server::start_args(&["--gc-interval", "0"]);
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    set_quota(&s, "alice", 3 * BLOCK as u64);
    assert_eq!(header(&api.head(""), "x-account-policy-quota"), (3 * BLOCK).to_string());
    let seed = unique_seed();
    // (a block is stored without its trailing zeros: these end in none, so each costs BLOCK)
    let blk: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let mut b = pattern(BLOCK, seed + i);
            b[BLOCK - 1] |= 1;
            b
        })
        .collect();
    for (i, b) in blk[..3].iter().enumerate() {
        assert_eq!(upload_block(&api, b).status(), 202);
        assert_eq!(
            account_bytes(&api),
            (i as u64 + 1) * BLOCK as u64,
            "uploads are charged"
        );
    }
    let (before, _) = stored_blocks(&s.data);
    assert_eq!(upload_block(&api, &blk[3]).status(), 413, "over quota by blocks alone");
    assert_eq!(stored_blocks(&s.data).0, before, "nothing written for a refused block");
    // An object of sent blocks costs nothing more, nor do metadata-only versions.
    let ab = [blk[0].as_slice(), blk[1].as_slice()].concat();
    api.put("pithos/ab.img", &ab);
    for i in 0..3 {
        let r = api
            .os("POST", "pithos/ab.img?update")
            .header("X-Object-Meta-Edit", i.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    assert_eq!(account_bytes(&api), 3 * BLOCK as u64);
    // A new version of sent blocks fits; one of a new block does not (history is stored).
    let ac = [blk[0].as_slice(), blk[2].as_slice()].concat();
    api.put("pithos/ab.img", &ac);
    assert_eq!(account_bytes(&api), 3 * BLOCK as u64);
    let r = api.try_put("pithos/ab.img", &blk[3]);
    assert_eq!(r.status(), 413);
    assert_eq!(api.get("pithos/ab.img"), ac, "the old object stays");
    // The mount's df: the quota, and what is left of it.
    let m = Mount::new(&s, &u, "");
    let df = sh(&format!("stat -f -c '%S %b %a' '{}'", m.path("").display()));
    let v: Vec<u64> = df.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(v[0] * v[1], 3 * BLOCK as u64, "size = quota ({df})");
    assert_eq!(v[0] * v[2], 0, "nothing left ({df})");
    assert!(!s.log().contains("panicked"));
}

/// `DELETE ?until=` on a container (history only) and on an object (all of it, as the
/// original) gives history's blocks back: the charge falls, a write refused for the quota
/// fits again, and after a collection the disk holds the current data only.
#[test]
fn purging_history_gives_the_quota_and_the_disk_back() {
    let s = Server::start_args(&["--gc-interval", "0"]);
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    set_quota(&s, "alice", 3 * BLOCK as u64);
    let seed = unique_seed();
    // (as above: blocks that end in no zero byte, so each costs BLOCK; one in 256 seeds made
    // one that ends in 0, stored and charged a byte short)
    let v: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let mut b = pattern(BLOCK, seed + i);
            b[BLOCK - 1] |= 1;
            b
        })
        .collect();
    api.put("pithos/a.img", &v[0]);
    api.put("pithos/a.img", &v[1]);
    api.put("pithos/b.img", &v[2]);
    assert_eq!(api.os("DELETE", "pithos/b.img").send().unwrap().status(), 204);
    assert_eq!(account_bytes(&api), 3 * BLOCK as u64, "history is charged");
    assert_eq!(api.try_put("pithos/c.img", &v[3]).status(), 413);

    let purge = |path: &str| api.os("DELETE", &format!("{path}?until=9999999999")).send().unwrap();
    // Another account may purge nothing, whether it exists or not.
    let bob = s.add_user("bob");
    let other = Api::new(&s, &bob);
    for path in ["pithos", "pithos/a.img", "pithos/b.img", "pithos/never"] {
        let r = other
            .http
            .delete(format!("{}/{}/{path}?until=9999999999", s.pithos_url(), u.uuid))
            .header("X-Auth-Token", &bob.token)
            .send()
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let versions = api.get("pithos/a.img?version=list&format=json");
    let versions: serde_json::Value = serde_json::from_slice(&versions).unwrap();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2, "untouched by bob");
    assert_eq!(account_bytes(&api), 3 * BLOCK as u64);
    assert_eq!(purge("pithos").status(), 204);
    assert_eq!(
        account_bytes(&api),
        BLOCK as u64,
        "only a.img's current version is left"
    );
    assert_eq!(api.get("pithos/a.img"), v[1]);
    let versions = api.get("pithos/a.img?version=list&format=json");
    let versions: serde_json::Value = serde_json::from_slice(&versions).unwrap();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1, "{versions}");
    assert_eq!(
        api.os("GET", "pithos/b.img?version=list&format=json")
            .send()
            .unwrap()
            .status(),
        404
    );
    api.put("pithos/c.img", &v[3]);
    let r = gc_now(&s.data);
    assert_eq!(r["blocks_freed"], 2, "{r}");
    assert_eq!(stored_blocks(&s.data).0, live_usage([&v[1], &v[3]]));

    assert_eq!(purge("pithos/a.img").status(), 204);
    assert_eq!(api.os("HEAD", "pithos/a.img").send().unwrap().status(), 404);
    assert_eq!(account_bytes(&api), BLOCK as u64);
    let r = gc_now(&s.data);
    assert_eq!(r["blocks_freed"], 1, "{r}");
    assert_eq!(stored_blocks(&s.data).0, live_usage([&v[3]]));
    assert_eq!(api.get("pithos/c.img"), v[3]);
    assert!(!s.log().contains("panicked"));
}
