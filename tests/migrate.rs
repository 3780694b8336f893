//! `imgfs migrate`: a single-machine data directory moved to other storage (in the
//! imgfs-pg-s3 tier, its metadata to PostgreSQL and its blocks to S3; else to another
//! directory) — objects, history, sharing, images and tokens all come along; a run cut by kill -9 is finished by running it again, keeping what
//! it copied; a target that has a database is refused.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BLOCK: usize = 4 << 20;

/// Where a test server on `dst` keeps its blocks: `--blocks` for a migration to it.
fn blocks_of(dst: &Path) -> String {
    s3_blocks(dst).unwrap_or_else(|| format!("dir:{}", dst.join("blocks").display()))
}

/// `imgfs migrate --from SRC --meta META --blocks BLOCKS`, META being `sqlite:DST` or in the
/// PostgreSQL tier the schema a server on DST uses.
fn migrate(src: &Path, dst: &Path, blocks: &str) -> Command {
    let mut c = imgfs_files();
    c.args(["migrate", "--from"])
        .arg(src)
        .arg("--meta")
        .arg(pg_meta(dst).unwrap_or_else(|| format!("sqlite:{}", dst.display())))
        .args(["--blocks", blocks]);
    c
}

fn report(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "imgfs migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

#[test]
fn a_data_directory_moves_with_its_objects_images_and_tokens() {
    let tmp = tempfile::Builder::new()
        .prefix("imgfs-migrate-")
        .tempdir_in(test_root())
        .unwrap();
    let src = tmp.path().join("src");
    let mut s = Server::start_env(&src, "127.0.0.1:0", &[], &[("IMGFS_BLOCKS", "")]);
    let alice = s.add_user("alice");
    let bob = s.add_user("bob");
    let api = Api::new(&s, &alice);
    let disk = pattern(40 * BLOCK + 1234, 81);
    let mut sparse = pattern(3 * BLOCK, 82);
    sparse[BLOCK..2 * BLOCK].fill(0);
    assert_eq!(api.put("pithos/disk.img", &disk).status(), 201);
    assert_eq!(api.put("pithos/sparse.img", &pattern(BLOCK, 83)).status(), 201);
    assert_eq!(api.put("pithos/sparse.img", &sparse).status(), 201, "a second version");
    let r = api
        .img("POST", "images/")
        .header("X-Image-Meta-Name", "Debian")
        .header(
            "X-Image-Meta-Location",
            format!("pithos://{}/pithos/disk.img", alice.uuid),
        )
        .header("X-Image-Meta-Is-Public", "False")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let image_id = header(&r, "x-image-meta-id");
    let r = api
        .os("POST", "pithos/disk.img?update")
        .header("X-Object-Sharing", format!("read={}", bob.uuid))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let versions = api.json("pithos/sparse.img?version=list&format=json");
    s.kill9();

    // Cut short by kill -9 once it has copied a block, then run again.
    let dst = tmp.path().join("dst");
    let mut child = migrate(&src, &dst, &blocks_of(&dst))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while stored_blocks(&dst).1 == 0 && child.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(60), "no block copied in a minute");
        std::thread::sleep(Duration::from_millis(2));
    }
    let cut = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    if cut {
        if meta_in_pg() {
            let users = imgfs(&dst).args(["user", "list"]).storage(&dst).output().unwrap();
            assert!(users.status.success(), "{}", String::from_utf8_lossy(&users.stderr));
            assert!(users.stdout.is_empty(), "no rows before every block is there");
        } else {
            assert!(!dst.join("meta.db").exists(), "no database before every block is there");
        }
    }
    let t = Instant::now();
    let first = report(&migrate(&src, &dst, &blocks_of(&dst)).output().unwrap());
    eprintln!("migrate: {first} in {:?}", t.elapsed());
    assert_eq!(first["blocks"], 41 + 1 + 2, "{first}"); // disk.img, v1, v2's two (one zero)
    assert_eq!(
        first["copied"].as_u64().unwrap() + first["already_there"].as_u64().unwrap(),
        first["blocks"].as_u64().unwrap()
    );
    if cut {
        assert!(
            first["already_there"].as_u64().unwrap() >= 1,
            "the cut run's blocks are kept: {first}"
        );
    }
    let (_, in_target) = stored_blocks(&dst);
    assert_eq!(in_target as u64, first["blocks"].as_u64().unwrap());

    // The migrated storage serves the same users with the same tokens.
    let m = Server::start_on(&dst);
    let a2 = Api::new(&m, &alice);
    assert_eq!(sha256_hex(&a2.get("pithos/disk.img")), sha256_hex(&disk));
    assert_eq!(a2.get("pithos/sparse.img"), sparse);
    assert_eq!(
        a2.json("pithos/sparse.img?version=list&format=json"),
        versions,
        "history came along"
    );
    let v1 = versions["versions"][0][0].as_u64().unwrap();
    assert_eq!(a2.get(&format!("pithos/sparse.img?version={v1}")), pattern(BLOCK, 83));
    let b2 = Api::new(&m, &bob);
    let shared = b2.os_of(&alice.uuid, "GET", "pithos/disk.img").send().unwrap();
    assert_eq!(shared.status(), 200, "sharing came along");
    assert_eq!(sha256_hex(&shared.bytes().unwrap()), sha256_hex(&disk));
    let list: serde_json::Value = b2.img("GET", "images/detail").send().unwrap().json().unwrap();
    assert!(
        list.as_array().unwrap().iter().any(|i| i["id"] == image_id.as_str()),
        "bob sees alice's image shared with him: {list}"
    );
    // New writes work, and the collector finds nothing to take.
    assert_eq!(a2.put("pithos/new.img", &pattern(BLOCK + 5, 84)).status(), 201);
    let gc = imgfs(&dst).args(["gc", "--grace", "0"]).storage(&dst).output().unwrap();
    let gc: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(gc["blocks_freed"], 0, "{gc}");
    assert_eq!(sha256_hex(&a2.get("pithos/disk.img")), sha256_hex(&disk));

    // A target with a database is refused, and left as it was.
    let out = migrate(&src, &dst, &blocks_of(&dst)).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already there"));
    assert_eq!(sha256_hex(&a2.get("pithos/disk.img")), sha256_hex(&disk));
}
