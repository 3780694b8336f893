//! imgfs serve against an attacker with an account of their own and plain HTTP: each test is
//! a way in that was found open, now closed (one permission rule for every route,
//! src/store/access.rs), and was seen failing before its fix.

mod common;

use common::*;
use serde_json::Value;

/// alice with private and shared data, and bob, who tries.
struct Two {
    s: Server,
    alice: Api,
    bob: Api,
}

fn two() -> Two {
    let s = Server::start();
    let a = s.add_user("alice");
    let b = s.add_user("bob");
    Two {
        alice: Api::new(&s, &a),
        bob: Api::new(&s, &b),
        s,
    }
}

fn names(api: &Api, account: &str, path: &str) -> Vec<String> {
    let r = api.os_of(account, "GET", path).send().unwrap();
    if r.status() == 403 || r.status() == 204 {
        return vec![];
    }
    assert_eq!(r.status(), 200, "GET {path}");
    let v: Value = r.json().unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect()
}

fn dir_marker(api: &Api, path: &str) {
    let r = api
        .os("PUT", path)
        .header("Content-Type", "application/directory")
        .body("")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
}

fn share(api: &Api, path: &str, sharing: &str) {
    let r = api
        .os("POST", &format!("{path}?update"))
        .header("X-Object-Sharing", sharing)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "share {path}");
}

#[test]
fn a_recursive_copy_copies_only_what_the_caller_may_read() {
    let t = two();
    let acc = t.alice.user.uuid.clone();
    dir_marker(&t.alice, "pithos/dir");
    t.alice.put("pithos/dir/secret.img", b"private bytes");
    t.alice.put("pithos/dir/open.txt", b"shared bytes");
    share(&t.alice, "pithos/dir/open.txt", &format!("read={}", t.bob.user.uuid));

    // PUT with X-Copy-From + X-Source-Account, and COPY, both recursive (?delimiter=/).
    let put = t
        .bob
        .os("PUT", "pithos/loot?delimiter=/")
        .header("X-Copy-From", "/pithos/dir")
        .header("X-Source-Account", &acc)
        .header("Content-Length", "0")
        .send()
        .unwrap();
    assert_eq!(put.status(), 201, "the one shared object is copied");
    let copy = t
        .bob
        .os_of(&acc, "COPY", "pithos/dir?delimiter=/")
        .header("Destination", "/pithos/loot2")
        .header("Destination-Account", &t.bob.user.uuid)
        .send()
        .unwrap();
    assert_eq!(copy.status(), 201);
    let mut got = names(&t.bob, &t.bob.user.uuid, "pithos?format=json");
    got.sort();
    assert_eq!(got, ["loot/open.txt", "loot2/open.txt"], "nothing private came along");
    assert_eq!(t.bob.get("pithos/loot/open.txt"), b"shared bytes");

    // Nothing readable under a name: 403, the same whether the name exists or not (no oracle).
    let status = |from: &str| {
        t.bob
            .os("PUT", "pithos/probe?delimiter=/")
            .header("X-Copy-From", from)
            .header("X-Source-Account", &acc)
            .header("Content-Length", "0")
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(status("/pithos/dir/secret.img"), 403);
    assert_eq!(status("/pithos/no-such-name"), 403);
    assert_eq!(status("/no-such-container/x"), 403);
    assert_eq!(t.bob.head("pithos/probe").status(), 404, "nothing was stored");
    // Not recursive either.
    let r = t
        .bob
        .os("PUT", "pithos/probe")
        .header("X-Copy-From", "/pithos/dir/secret.img")
        .header("X-Source-Account", &acc)
        .header("Content-Length", "0")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // The owner's own recursive copy still copies everything.
    let r = t
        .alice
        .os("PUT", "pithos/copy?delimiter=/")
        .header("X-Copy-From", "/pithos/dir")
        .header("Content-Length", "0")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(t.alice.get("pithos/copy/secret.img"), b"private bytes");
    assert!(!t.s.log().contains("panicked"));
}

#[test]
fn a_shared_file_shares_nothing_under_its_name() {
    let t = two();
    let acc = t.alice.user.uuid.clone();
    t.alice.put("pithos/f", b"shared file");
    t.alice.put("pithos/f/private.txt", b"not shared");
    share(&t.alice, "pithos/f", &format!("read={}", t.bob.user.uuid));
    assert_eq!(t.bob.os_of(&acc, "GET", "pithos/f").send().unwrap().status(), 200);
    assert_eq!(
        t.bob
            .os_of(&acc, "GET", "pithos/f/private.txt")
            .send()
            .unwrap()
            .status(),
        403
    );
    // Listings: the shared file, and nothing of what lies "under" it (nor its hash).
    for q in [
        "pithos?format=json",
        "pithos?format=json&prefix=f/",
        "pithos?format=json&path=f",
    ] {
        let listed = names(&t.bob, &acc, q);
        assert!(!listed.contains(&"f/private.txt".to_string()), "{q}: {listed:?}");
    }
    assert_eq!(names(&t.bob, &acc, "pithos?format=json"), ["f"]);
    let text = t.bob.os_of(&acc, "GET", "pithos").send().unwrap().text().unwrap();
    assert_eq!(text, "f\n");
    // A shared directory marker does share what is under it.
    dir_marker(&t.alice, "pithos/d");
    t.alice.put("pithos/d/x", b"x");
    share(&t.alice, "pithos/d", &format!("read={}", t.bob.user.uuid));
    assert_eq!(t.bob.os_of(&acc, "GET", "pithos/d/x").send().unwrap().status(), 200);
    assert!(names(&t.bob, &acc, "pithos?format=json").contains(&"d/x".to_string()));
}

#[test]
fn sizes_a_client_names_are_bounded_before_anything_is_allocated() {
    let t = two();
    t.alice.put("pithos/small", b"0123456789");
    let post = |headers: &[(&str, &str)], body: &'static [u8]| {
        let mut rq = t
            .alice
            .os("POST", "pithos/small")
            .header("Content-Type", "application/octet-stream");
        for (k, v) in headers {
            rq = rq.header(*k, *v);
        }
        rq.body(body).send().unwrap().status()
    };
    // A size past the 5 TiB of one object: 2^64 - 1 bytes made the server allocate 2^42
    // block hashes and die; 5 TiB + 1 was accepted.
    for n in ["5497558138881", "18446744073709551615"] {
        assert_eq!(
            post(&[("Content-Range", "bytes 10-10/10"), ("X-Object-Bytes", n)], b"x"),
            413,
            "X-Object-Bytes {n}"
        );
    }
    // Ranges whose length wraps at 2^64.
    assert_eq!(post(&[("Content-Range", "bytes 0-18446744073709551615/10")], b"x"), 413);
    assert_eq!(
        post(&[("Content-Range", "bytes */*"), ("Content-Length", "1")], b"x"),
        204
    );
    // Alive, and the object is what the one good update made it.
    assert_eq!(t.alice.get("pithos/small"), b"0123456789x");
    assert!(!t.s.log().contains("panicked"));
}

#[test]
fn image_member_ids_cannot_carry_sharing_clauses() {
    let t = two();
    let bob = t.bob.user.uuid.clone();
    t.alice.put("pithos/img", b"image bytes");
    let r = t
        .alice
        .img("POST", "images/")
        .header("X-Image-Meta-Name", "Img")
        .header(
            "X-Image-Meta-Location",
            format!("pithos://{}/pithos/img", t.alice.user.uuid),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-image-meta-id");
    let sharing = || header(&t.alice.head("pithos/img"), "x-object-sharing");
    let before = sharing();
    for bad in [
        format!("{bob};write=*"),
        format!("{bob}%3Bwrite%3D*"),
        "*".to_string(),
        "nobody".to_string(),
    ] {
        let r = t
            .alice
            .img("PUT", &format!("images/{id}/members/{bad}"))
            .header("Content-Length", "0")
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "member {bad}");
    }
    for bad in [format!("{bob};write=*"), format!("{bob},*"), "nobody".to_string()] {
        let r = t
            .alice
            .img("PUT", &format!("images/{id}/members"))
            .header("Content-Type", "application/json")
            .body(serde_json::json!({"memberships": [{"member_id": bad}]}).to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "member_id {bad}");
    }
    assert_eq!(sharing(), before, "the sharing list did not change");
    let put = |what: &str| {
        t.bob
            .os_of(&t.alice.user.uuid, "PUT", "pithos/img")
            .header("Content-Type", "application/octet-stream")
            .body(what.to_string())
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(put("bob's"), 403);
    // A real member, by UUID or by name (stored as the UUID): may read, still not write.
    for good in [bob.as_str(), "bob"] {
        let r = t
            .alice
            .img("PUT", &format!("images/{id}/members/{good}"))
            .header("Content-Length", "0")
            .send()
            .unwrap();
        assert_eq!(r.status(), 204, "member {good}");
    }
    assert_eq!(sharing(), format!("read={},{bob}", t.alice.user.uuid));
    assert_eq!(t.bob.img("HEAD", &format!("images/{id}")).send().unwrap().status(), 200);
    assert_eq!(put("bob's"), 403);
    assert_eq!(t.alice.get("pithos/img"), b"image bytes");
}

/// The parts of a multipart/byteranges body: (Content-Range, bytes).
fn parts(r: reqwest::blocking::Response) -> Vec<(String, Vec<u8>)> {
    let ct = header(&r, "content-type");
    let boundary = ct.split("boundary=").nth(1).expect("multipart").to_string();
    let body = r.bytes().unwrap().to_vec();
    let sep = format!("--{boundary}\r\n");
    let mut out = vec![];
    let text = body.clone();
    let mut i = 0;
    while let Some(p) = find(&text[i..], sep.as_bytes()) {
        let start = i + p + sep.len();
        let head_end = start + find(&text[start..], b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&text[start..head_end]).to_string();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .unwrap()
            .to_string();
        let (a, b) = range["bytes ".len()..range.find('/').unwrap()].split_once('-').unwrap();
        let len = b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1;
        let data = text[head_end + 4..head_end + 4 + len].to_vec();
        out.push((range, data));
        i = head_end + 4 + len;
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn many_or_overlapping_ranges_never_make_an_answer_larger_than_the_object() {
    let t = two();
    let data = pattern(5 << 20, 7);
    t.alice.put("pithos/obj", &data);
    let acc = t.alice.user.uuid.clone();
    // Also on a public URL, where no token is needed.
    t.alice
        .os("POST", "pithos/obj?update")
        .header("X-Object-Public", "True")
        .send()
        .unwrap();
    let public = header(&t.alice.head("pithos/obj"), "x-object-public");
    let get = |range: &str, public_url: bool| {
        let rq = if public_url {
            http().get(&public)
        } else {
            t.alice.os_of(&acc, "GET", "pithos/obj")
        };
        rq.header("Range", range).send().unwrap()
    };
    for public_url in [false, true] {
        // 100 times `0-`: one range, the object once.
        let r = get(&format!("bytes={}", vec!["0-"; 100].join(",")), public_url);
        assert_eq!(r.status(), 206);
        assert_eq!(header(&r, "content-length"), (5u64 << 20).to_string());
        assert_eq!(r.bytes().unwrap().len(), 5 << 20);
        // More than 100 ranges: the Range header is ignored, the object is sent once.
        let r = get(&format!("bytes={}", vec!["0-"; 20000].join(",")), public_url);
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().unwrap().len(), 5 << 20);
    }
    // Overlapping and out-of-order ranges: merged, sorted, each byte right.
    let r = get("bytes=100-199,0-9,150-300,4194300-4194310", false);
    assert_eq!(r.status(), 206);
    let got = parts(r);
    let want = [(0usize, 9usize), (100, 300), (4194300, 4194310)];
    assert_eq!(
        got.len(),
        want.len(),
        "{:?}",
        got.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    for ((range, bytes), (a, b)) in got.iter().zip(want) {
        assert_eq!(range, &format!("bytes {a}-{b}/{}", 5 << 20));
        assert!(bytes[..] == data[a..=b], "{range}");
    }
    // 100 one-byte ranges inside one block, each its own part (read once, right bytes).
    let spec: Vec<String> = (0..100).map(|i| format!("{0}-{0}", i * 1000)).collect();
    let got = parts(get(&format!("bytes={}", spec.join(",")), false));
    assert_eq!(got.len(), 100);
    for (i, (_, bytes)) in got.iter().enumerate() {
        assert_eq!(bytes[..], data[i * 1000..=i * 1000]);
    }
}

fn vm_hwm_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

#[test]
fn a_huge_hashmap_costs_linear_time_and_bounded_memory() {
    let t = two();
    // 1M block hashes (a 4 TiB object), none stored, a fifth of them repeated.
    let n = 1_000_000u64;
    let hashes: Vec<String> = (0..n).map(|i| sha256_hex(&(i % 800_000).to_le_bytes())).collect();
    let body = format!(
        r#"{{"bytes": {}, "hashes": ["{}"]}}"#,
        n * (4 << 20),
        hashes.join("\",\"")
    );
    let t0 = std::time::Instant::now();
    let r = t
        .alice
        .os("PUT", "pithos/huge?hashmap=True&format=json")
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(r.status(), 409);
    let missing: Vec<String> = r.json().unwrap();
    assert_eq!(missing.len(), 800_000, "each missing block named once");
    assert_eq!(missing[..3], hashes[..3], "in the map's order");
    // A complexity check, not a measurement: the quadratic check took ~10 CPU-minutes here.
    assert!(took < std::time::Duration::from_secs(60), "took {took:?}");
    // (the 66 MB body is held while it is parsed; the hashes themselves are 32 MB)
    let peak = vm_hwm_mib(t.s.pid());
    eprintln!("1M-hash hashmap PUT: {took:?}, server peak RSS {peak} MiB");
    assert!(peak < 160, "server peak RSS {peak} MiB (300 MiB before)");
}

#[test]
fn what_the_server_writes_is_its_users_alone_and_names_are_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let t = two();
    t.alice.put("pithos/img", &pattern(5 << 20, 3));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // (in the PostgreSQL tier the metadata is not in the directory; the blocks may be)
    if !meta_in_pg() {
        assert_eq!(mode(&t.s.data), 0o700, "the data directory");
        assert_eq!(mode(&t.s.data.join("meta.db")), 0o600);
    }
    let mut files = vec![];
    // (in the S3 tier the blocks are not on this disk: the database's files are checked)
    let mut dirs = vec![if blocks_in_s3() {
        t.s.data.clone()
    } else {
        t.s.data.join("blocks")
    }];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    // (with the metadata in PostgreSQL and the blocks in S3 this disk holds nothing of theirs)
    if !(meta_in_pg() && blocks_in_s3()) {
        assert!(files.len() >= 2, "the blocks (or the database files) are there");
    }
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // A name with a line break would read as two names in a text listing.
    for name in ["a%0Ab", "a%0Db", "x%09y"] {
        let r = t
            .alice
            .os("PUT", &format!("pithos/{name}"))
            .header("Content-Type", "text/plain")
            .body("x")
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{name}");
    }
    let r = t
        .alice
        .os("PUT", "images%0Aevil")
        .header("Content-Length", "0")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(String::from_utf8(t.alice.get("pithos")).unwrap(), "img\n");
}

#[test]
fn slow_clients_are_cut_off_and_cannot_crowd_out_the_others() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let s = Server::start_args(&[
        "--header-timeout",
        "2",
        "--body-idle-timeout",
        "2",
        "--max-connections",
        "64",
    ]);
    let u = s.add_user("carol");
    let api = Api::new(&s, &u);
    api.put("pithos/x", b"x");
    // 300 clients that send half a request line and then nothing (slowloris), or nothing at
    // all (every third: those were held for ever), more than the server serves at once.
    let slow: Vec<std::net::TcpStream> = (0..300)
        .map(|i| {
            let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
            if i % 3 != 0 {
                c.write_all(b"GET /object-store/v1/ HT").unwrap();
            }
            c
        })
        .collect();
    // A client with its whole request is served once slow ones are cut off (2 s each).
    let t0 = Instant::now();
    assert_eq!(api.get("pithos/x"), b"x");
    let waited = t0.elapsed();
    // Every slow client was closed, none waits forever.
    for mut c in slow {
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = [0u8; 512];
        let n = match c.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("a slow client was still held after 15 s: {e}"),
        };
        // (closed at once, or told 408 first)
        let rest = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(n == 0 || rest.starts_with("HTTP/1.1 408"), "a slow client got {rest:?}");
    }
    // A body that stops arriving: the request ends (no reply, or an error), the connection
    // is freed.
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    write!(
        c,
        "PUT /object-store/v1/{}/pithos/partial HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly some",
        u.uuid, u.token
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let t1 = Instant::now();
    let mut buf = vec![];
    let _ = c.read_to_end(&mut buf);
    assert!(t1.elapsed() < Duration::from_secs(12), "the stalled upload held on");
    assert_eq!(api.head("pithos/partial").status(), 404, "nothing short was stored");
    eprintln!("served after {waited:?} behind 300 slow clients");
    assert!(!s.log().contains("panicked"));
}

#[test]
fn knowing_a_blocks_hash_is_not_enough_to_read_it() {
    let t = two();
    let secret = b"alice's 4-digit PIN is 4711, and other private bytes".to_vec();
    t.alice.put("pithos/secret.txt", &secret);
    let h = sha256_hex(&secret);
    let blocks_before = stored_blocks(&t.s.data).1;
    let hashmap = |hash: &str, len: usize| format!(r#"{{"bytes": {len}, "hashes": ["{hash}"]}}"#);
    let put_map = |api: &Api, name: &str, body: String| {
        api.os("PUT", &format!("pithos/{name}?hashmap=True&format=json"))
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .unwrap()
    };
    // bob names alice's block: it is missing for him (as any hash he never sent), and no
    // object of his is made from it.
    let r = put_map(&t.bob, "stolen", hashmap(&h, secret.len()));
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Vec<String>>().unwrap(), [h.as_str()]);
    let guess = sha256_hex(b"a guess nobody stored");
    let r = put_map(&t.bob, "guess", hashmap(&guess, 21));
    assert_eq!(r.status(), 409, "a stored and an unknown hash answer the same");
    assert_eq!(t.bob.head("pithos/stolen").status(), 404);
    // Once bob sends the bytes himself, he has the block: one stored copy still.
    let r = t
        .bob
        .os("POST", "pithos?update&format=json")
        .header("Content-Type", "application/octet-stream")
        .body(secret.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(put_map(&t.bob, "mine", hashmap(&h, secret.len())).status(), 201);
    assert_eq!(t.bob.get("pithos/mine"), secret);
    assert_eq!(stored_blocks(&t.s.data).1, blocks_before, "deduplicated");
    // An object shared with bob and copied by him gives him its blocks.
    let other = pattern(3 << 20, 11);
    t.alice.put("pithos/shared.img", &other);
    share(&t.alice, "pithos/shared.img", &format!("read={}", t.bob.user.uuid));
    let oh = sha256_hex(&other);
    assert_eq!(put_map(&t.bob, "early", hashmap(&oh, other.len())).status(), 409);
    let r = t
        .bob
        .os("PUT", "pithos/copy.img")
        .header("X-Copy-From", "/pithos/shared.img")
        .header("X-Source-Account", &t.alice.user.uuid)
        .header("Content-Length", "0")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(put_map(&t.bob, "again.img", hashmap(&oh, other.len())).status(), 201);
    assert_eq!(t.bob.get("pithos/again.img"), other);
}

/// Block uploads into another account's container are refused (container POSTs are the
/// owner's alone, write sharing included): the same 403 whether the container exists or not,
/// nothing stored, nothing charged. (A writer sends blocks to a container of its own.)
#[test]
fn block_uploads_into_another_account_are_refused_and_say_nothing() {
    let t = two();
    let acc = t.alice.user.uuid.clone();
    t.alice.put("pithos/private.txt", b"alice's");
    let block = pattern(1 << 20, unique_seed());
    let post = |container: &str| {
        t.bob
            .os_of(&acc, "POST", &format!("{container}?update&format=json"))
            .header("Content-Type", "application/octet-stream")
            .body(block.clone())
            .send()
            .unwrap()
            .status()
    };
    let before = stored_blocks(&t.s.data).1;
    assert_eq!(post("pithos"), 403, "an existing container");
    assert_eq!(post("no-such-container"), 403, "the same for a missing one");
    assert_eq!(stored_blocks(&t.s.data).1, before, "nothing stored");
    assert_eq!(header(&t.bob.head(""), "x-account-bytes-used"), "0", "nothing charged");
    share(&t.alice, "pithos/private.txt", &format!("read={}", t.bob.user.uuid));
    assert_eq!(post("pithos"), 403, "reading is not writing");
    share(&t.alice, "pithos/private.txt", &format!("write={}", t.bob.user.uuid));
    assert_eq!(post("pithos"), 403, "nor is writing a container POST");
    assert_eq!(stored_blocks(&t.s.data).1, before, "still nothing stored");
}

/// Pages through `container` as `api` with `limit` names a page (marker = the last name).
fn all_pages(api: &Api, account: &str, query: &str, limit: usize) -> (Vec<String>, Vec<usize>) {
    let (mut all, mut sizes) = (vec![], vec![]);
    loop {
        let marker = all.last().map(|m: &String| format!("&marker={m}")).unwrap_or_default();
        let page = names(api, account, &format!("{query}&limit={limit}{marker}"));
        sizes.push(page.len());
        if page.is_empty() {
            return (all, sizes);
        }
        all.extend(page);
    }
}

#[test]
fn another_users_listing_pages_are_full_pages_of_what_they_may_read() {
    let t = two();
    let acc = t.alice.user.uuid.clone();
    let bob = format!("read={}", t.bob.user.uuid);
    // Private names around the shared ones, before, between and after them.
    for i in 0..30 {
        t.alice.put(&format!("pithos/a{i:02}"), b"private");
        t.alice.put(&format!("pithos/m{i:02}"), b"private");
        t.alice.put(&format!("pithos/z{i:02}"), b"private");
    }
    let mut want = vec![];
    for i in 0..5 {
        let f = format!("f{i}");
        t.alice.put(&format!("pithos/{f}"), b"shared");
        share(&t.alice, &format!("pithos/{f}"), &bob);
        want.push(f);
    }
    dir_marker(&t.alice, "pithos/dir");
    share(&t.alice, "pithos/dir", &bob);
    want.push("dir".into());
    for i in 0..4 {
        t.alice.put(&format!("pithos/dir/x{i}"), b"under a shared directory");
        want.push(format!("dir/x{i}"));
    }
    // A directory inside it shared with someone else only: its marker is bob's by the
    // directory above (its own sharing says nothing of him), what is under it is not.
    dir_marker(&t.alice, "pithos/dir/other");
    share(&t.alice, "pithos/dir/other", "read=someone-else");
    t.alice.put("pithos/dir/other/secret", b"not bob's");
    want.push("dir/other".into());
    want.sort();
    // Each page as full as the limit allows (a short page ends a client's listing), in order.
    let (got, sizes) = all_pages(&t.bob, &acc, "pithos?format=json", 3);
    assert_eq!(got, want);
    assert_eq!(sizes, [3, 3, 3, 2, 0], "{got:?}");
    // The owner's ?shared the same way.
    let (got, sizes) = all_pages(&t.alice, &acc, "pithos?format=json&shared", 2);
    assert_eq!(got, ["dir", "dir/other", "f0", "f1", "f2", "f3", "f4"]);
    assert_eq!(sizes, [2, 2, 2, 1, 0]);
}
