//! Several `imgfs serve` over one storage (the same metadata database and block store; in
//! the imgfs-s3 tier blocks in S3) behind HAProxy, round-robin: the servers share nothing
//! else, so any of them can take any request — an upload's blocks through one and its hashmap
//! through another, a token issued once working on all, a write race across servers with one
//! winner, a server killed under a copy through the balancer without anything torn, one
//! server's collector beside the others' uploads without anything lost.

mod common;

mod many_servers {
    use super::common::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Barrier};

    const BLOCK: usize = 4 << 20;

    fn three() -> (Server, tempfile::TempDir) {
        let tmp = tempfile::Builder::new()
            .prefix("imgfs-many-")
            .tempdir_in(test_root())
            .unwrap();
        let s = Server::start_many(3, &tmp.path().join("data"), "127.0.0.1:0", &[], &[]);
        assert_eq!(s.backends().len(), 3);
        (s, tmp)
    }

    /// kamaki's way of uploading, split over servers: the hashmap PUT through B names blocks
    /// sent through A (409 first, then 201), C reads the object whole; a token issued beside
    /// the servers works on each, and once revoked fails on each at once (no server keeps a
    /// token of its own).
    #[test]
    fn blocks_through_one_server_hashmap_through_another_and_tokens_everywhere() {
        let (s, _tmp) = three();
        let u = s.add_user("alice");
        let b = s.backends();
        let (a, bb, c) = (
            Api::new(&At(b[0].clone()), &u),
            Api::new(&At(b[1].clone()), &u),
            Api::new(&At(b[2].clone()), &u),
        );
        let data = pattern(2 * BLOCK + 999, 51);
        let hashes: Vec<String> = data
            .chunks(BLOCK)
            .map(|c| imgfs::api::hashing::block_hash(c).to_hex())
            .collect();
        let body = serde_json::json!({"bytes": data.len(), "hashes": hashes}).to_string();
        let r = bb
            .os("PUT", "pithos/img?hashmap&format=json")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 409);
        assert_eq!(r.json::<Vec<String>>().unwrap(), hashes);
        for chunk in data.chunks(BLOCK) {
            let r = a
                .os("POST", "pithos?update&format=json")
                .header("Content-Type", "application/octet-stream")
                .body(chunk.to_vec())
                .send()
                .unwrap();
            assert_eq!(r.status(), 202);
        }
        assert_eq!(
            bb.os("PUT", "pithos/img?hashmap&format=json")
                .body(body)
                .send()
                .unwrap()
                .status(),
            201
        );
        assert_eq!(c.get("pithos/img"), data);
        // Through the balancer too, request after request on whichever server.
        let lb = Api::new(&s, &u);
        for _ in 0..6 {
            assert_eq!(sha256_hex(&lb.get("pithos/img")), sha256_hex(&data));
        }

        let out = imgfs(&s.data)
            .args(["user", "token", "alice"])
            .storage(&s.data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let token = v["token"].as_str().unwrap().to_string();
        let status = |at: &str, token: &str| {
            http()
                .get(format!("http://{at}/object-store/v1/{}/pithos/img", u.uuid))
                .header("X-Auth-Token", token)
                .send()
                .unwrap()
                .status()
                .as_u16()
        };
        for at in &b {
            assert_eq!(status(at, &token), 200, "{at}");
        }
        let out = imgfs(&s.data)
            .args(["user", "revoke", "alice"])
            .storage(&s.data)
            .output()
            .unwrap();
        assert!(out.status.success());
        for at in &b {
            assert_eq!(status(at, &token), 401, "revoked on {at}");
            assert_eq!(status(at, &u.token), 401, "revoked on {at}");
        }
    }

    /// Three writers, one per server, overwrite one object at the same moment, each with
    /// `If-Match` of the version they read: exactly one wins (201), the others get 412, and the
    /// object is the winner's, whole.
    #[test]
    fn an_if_match_race_across_servers_has_exactly_one_winner() {
        let (s, _tmp) = three();
        let u = s.add_user("alice");
        let apis: Vec<Arc<Api>> = s
            .backends()
            .iter()
            .map(|b| Arc::new(Api::new(&At(b.clone()), &u)))
            .collect();
        for round in 0..5u64 {
            let v1 = pattern(BLOCK / 2, 60 + round);
            assert_eq!(apis[0].put("pithos/race", &v1).status(), 201);
            let etag = header(&apis[1].head("pithos/race"), "etag");
            let barrier = Arc::new(Barrier::new(apis.len()));
            let writers: Vec<_> = apis
                .iter()
                .enumerate()
                .map(|(i, api)| {
                    let (api, barrier, etag) = (api.clone(), barrier.clone(), etag.clone());
                    let mine = pattern(BLOCK / 2 + i, 100 * round + i as u64);
                    std::thread::spawn(move || {
                        barrier.wait();
                        let r = api
                            .os("PUT", "pithos/race")
                            .header("If-Match", etag)
                            .body(mine.clone())
                            .send()
                            .unwrap();
                        (r.status().as_u16(), sha256_hex(&mine))
                    })
                })
                .collect();
            let results: Vec<(u16, String)> = writers.into_iter().map(|w| w.join().unwrap()).collect();
            let won: Vec<&(u16, String)> = results.iter().filter(|(st, _)| *st == 201).collect();
            let lost = results.iter().filter(|(st, _)| *st == 412).count();
            assert_eq!((won.len(), lost), (1, 2), "round {round}: {results:?}");
            assert_eq!(sha256_hex(&apis[2].get("pithos/race")), won[0].1, "the winner's bytes");
        }
    }

    /// A 1 GiB `cp` through the balancer while one server is killed -9 under it: the copy
    /// completes (the mount retries, HAProxy sends the retry elsewhere) or fails with an error;
    /// either way nothing torn is ever visible — the object is absent or the whole file.
    #[test]
    fn a_server_killed_under_a_copy_through_the_balancer_tears_nothing() {
        let (mut s, tmp) = three();
        let u = s.add_user("alice");
        let src = tmp.path().join("big.img");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&src).unwrap();
            for i in 0..256u64 {
                f.write_all(&pattern(BLOCK, 7000 + i)).unwrap();
            }
        }
        let want = sha_file(&src);
        let m = Mount::new(&s, &u, "");
        let dst = m.path("pithos/big.img");
        let cp = {
            let (src, dst) = (src.clone(), dst.clone());
            std::thread::spawn(move || std::process::Command::new("cp").arg(&src).arg(&dst).output().unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(!cp.is_finished(), "the kill must come while the copy runs");
        s.kill9_one(1);
        let out = cp.join().unwrap();
        let outcome = whole_or_absent(&Api::new(&s, &u), "pithos/big.img", &out, &want, &dst);
        let retries = m.log().matches("retrying").count();
        eprintln!("cp with a server killed under it: {outcome} ({retries} requests retried by the mount)");
        assert!(!m.log().contains("panicked") && !s.log().contains("panicked"));
    }

    /// A counter of a server's `/metrics`.
    fn counter(s: &Server, name: &str) -> f64 {
        counter_at(&At(s.addr.clone()), name)
    }

    fn counter_at(at: &At, name: &str) -> f64 {
        let text = reqwest::blocking::get(format!("http://{}/metrics", at.0))
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{name} in /metrics"))
            .parse()
            .unwrap()
    }

    /// The collector of one server (no grace period, every second) runs while two others take
    /// uploads of shared blocks, each upload's blocks through one of them and its hashmap
    /// through the other, and half the objects go again at once, so blocks become nobody's
    /// while other writers are about to name them (until the collector has run three times
    /// beside them): every acknowledged object reads back whole
    /// (sha256) through each of the three, after the uploads and after more collections. A
    /// hashmap PUT whose blocks were collected in between gets 409 for them and sends them
    /// again, as kamaki does.
    #[test]
    fn a_collector_on_one_server_loses_nothing_the_others_upload() {
        let tmp = tempfile::Builder::new()
            .prefix("imgfs-many-")
            .tempdir_in(test_root())
            .unwrap();
        let data = tmp.path().join("data");
        let up = Server::start_many(2, &data, "127.0.0.1:0", &["--gc-interval", "0"], &[]);
        let gc = Server::start_single(&data, "127.0.0.1:0", &["--gc-grace", "0", "--gc-interval", "1"], &[]);
        let users: Vec<_> = (0..3).map(|i| up.add_user(&format!("u{i}"))).collect();
        for u in &users {
            let r = Api::new(&up, u)
                .os("PUT", "flat")
                .header("X-Container-Policy-Versioning", "none")
                .send()
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        let b = up.backends();
        assert_eq!(b.len(), 2);
        let runs_before = counter(&gc, "imgfs_gc_runs_total");
        // (writers go on until the collector has run three times beside them)
        let enough = Arc::new(AtomicBool::new(false));
        let monitor = {
            let (enough, url) = (enough.clone(), gc.addr.clone());
            std::thread::spawn(move || {
                let gc = At(url);
                while counter_at(&gc, "imgfs_gc_runs_total") < runs_before + 3.0 {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                enough.store(true, Ordering::Relaxed);
            })
        };
        let pool: Arc<Vec<Vec<u8>>> = Arc::new((0..4).map(|i| pattern(BLOCK, 3000 + i)).collect());
        let retries = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..12)
            .map(|w| {
                let user = &users[w % users.len()];
                let api = Api::new(&At(b[w % 2].clone()), user);
                let blocks = Api::new(&At(b[(w + 1) % 2].clone()), user);
                let (pool, retries, enough) = (pool.clone(), retries.clone(), enough.clone());
                std::thread::spawn(move || {
                    let mut kept = vec![];
                    for round in 0..60u64 {
                        if round >= 6 && enough.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut data = pool[(w + round as usize) % pool.len()].clone();
                        data.extend_from_slice(&pool[(w * 3 + round as usize) % pool.len()]);
                        data.extend_from_slice(&pattern(5000 + w, (w as u64) << 8 | round));
                        let name = format!("flat/w{w}-r{round}.img");
                        put_by_hashmap(&api, &blocks, &name, &data, &retries);
                        if round % 2 == 1 {
                            assert_eq!(api.os("DELETE", &name).send().unwrap().status(), 204);
                        } else {
                            kept.push((api.user.clone(), name, sha256_hex(&data)));
                        }
                    }
                    kept
                })
            })
            .collect();
        let kept: Vec<_> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        monitor.join().unwrap();
        let runs = counter(&gc, "imgfs_gc_runs_total") - runs_before;
        let collected = counter(&gc, "imgfs_gc_blocks_collected_total");
        eprintln!(
            "{} objects kept, {runs} collections during the uploads, {collected} blocks collected, {} hashmap PUTs answered 409 after their blocks were sent",
            kept.len(),
            retries.load(Ordering::Relaxed)
        );
        assert!(runs >= 3.0, "the collector ran during the uploads ({runs} runs)");
        assert!(collected > 0.0, "the deleted objects' own blocks were collected");
        let check = |when: &str| {
            for at in [&b[0], &b[1], &gc.addr] {
                for (user, name, want) in &kept {
                    let got = sha256_hex(&Api::new(&At(at.clone()), user).get(name));
                    assert_eq!(&got, want, "{name} through {at} {when}");
                }
            }
        };
        check("after the uploads");
        let until = counter(&gc, "imgfs_gc_runs_total") + 2.0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while counter(&gc, "imgfs_gc_runs_total") < until {
            assert!(std::time::Instant::now() < deadline, "two more collections within 60 s");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        check("after two more collections");
        // The counters the writers of three accounts changed side by side say what is there,
        // and once everything is deleted nothing stays charged or stored: a holder counted
        // twice or lost by a race between accounts would leave a block behind (or lose one,
        // above).
        for u in &users {
            let api = Api::new(&up, u);
            let mine: Vec<_> = kept.iter().filter(|(who, _, _)| who.uuid == u.uuid).collect();
            let r = api.head("flat");
            assert_eq!(r.status(), 204);
            assert_eq!(
                r.headers()["x-container-object-count"].to_str().unwrap(),
                mine.len().to_string(),
                "{}'s container count",
                u.name
            );
            for (_, name, _) in mine {
                assert_eq!(api.os("DELETE", name).send().unwrap().status(), 204);
            }
        }
        let until = counter(&gc, "imgfs_gc_runs_total") + 2.0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while counter(&gc, "imgfs_gc_runs_total") < until {
            assert!(std::time::Instant::now() < deadline, "two more collections within 60 s");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        for u in &users {
            let r = Api::new(&up, u).head("");
            assert_eq!(
                r.headers()["x-account-bytes-used"].to_str().unwrap(),
                "0",
                "{} charged",
                u.name
            );
        }
        // (a bucket's listing may lag its deletes by a moment; a leaked block stays for good)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while stored_blocks(&data) != (0, 0) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        assert_eq!(stored_blocks(&data), (0, 0), "blocks left once nothing holds them");
        assert!(!up.log().contains("panicked") && !gc.log().contains("panicked"));
    }
}
