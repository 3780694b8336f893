//! python-swiftclient's `swift` CLI against a real `imgfs serve`, through Swift auth v1:
//! stat, upload (also 100 MiB), list, download with checksum compare, delete.
//!
//! Needs the CLI installed by scripts/test.sh (IMGFS_SWIFT).

mod common;

use common::*;
use std::process::Command;

fn swift(s: &Server, u: &TestUser, cwd: &std::path::Path, args: &[&str]) -> String {
    let bin = std::env::var("IMGFS_SWIFT")
        .expect("IMGFS_SWIFT is not set: run the tests through scripts/test.sh, which installs python-swiftclient");
    let auth = format!("{}/auth/v1.0", s.url());
    let o = Command::new(bin)
        .args(["-A", &auth, "-U", &u.name, "-K", &u.token])
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "swift {args:?} failed:\n{out}");
    out
}

#[test]
fn swift_cli_stat_upload_list_download_delete() {
    let s = Server::start();
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    let dir = tempfile::tempdir_in(test_root()).unwrap();
    let d = dir.path();

    let out = swift(&s, &u, d, &["stat"]);
    assert!(out.contains(&u.uuid) && out.contains("Containers: 1"), "{out}");

    let small = pattern(12_345, 1);
    let big = pattern(100 << 20, 2);
    std::fs::write(d.join("small.bin"), &small).unwrap();
    std::fs::write(d.join("big.img"), &big).unwrap();
    swift(&s, &u, d, &["upload", "images", "small.bin"]);
    swift(&s, &u, d, &["upload", "images", "big.img"]);
    // the server holds exactly those bytes
    assert_eq!(api.get("images/small.bin"), small);
    assert_eq!(sha256_hex(&api.get("images/big.img")), sha256_hex(&big));

    let out = swift(&s, &u, d, &["list"]);
    assert!(out.lines().any(|l| l == "images"), "{out}");
    let out = swift(&s, &u, d, &["list", "images"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["big.img", "small.bin"]);
    let out = swift(&s, &u, d, &["stat", "images", "big.img"]);
    assert!(out.contains(&format!("Content Length: {}", 100 << 20)), "{out}");

    // download checks the MD5 against the ETag itself; compare the bytes too
    let dl = d.join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    swift(&s, &u, &dl, &["download", "images", "big.img", "small.bin"]);
    assert_eq!(
        sha256_hex(&std::fs::read(dl.join("big.img")).unwrap()),
        sha256_hex(&big)
    );
    assert_eq!(std::fs::read(dl.join("small.bin")).unwrap(), small);

    swift(&s, &u, d, &["delete", "images", "small.bin"]);
    assert_eq!(api.head("images/small.bin").status(), 404);
    let out = swift(&s, &u, d, &["list", "images"]);
    assert_eq!(out.trim(), "big.img");
}
