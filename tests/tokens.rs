//! Tokens of imgfs serve: issued with an expiry, rotated, revoked (`imgfs user token|revoke`),
//! 401 once they no longer hold; what the identity APIs say of their expiry is the truth; and
//! kamaki and the mount go on with a rotated token once it is in their config or token file.

mod common;

use common::*;
use std::time::Duration;

fn user_cmd(s: &Server, args: &[&str]) -> serde_json::Value {
    let out = imgfs(&s.data).arg("user").args(args).storage(&s.data).output().unwrap();
    assert!(
        out.status.success(),
        "imgfs user {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn with_token(u: &TestUser, token: &str) -> TestUser {
    TestUser {
        token: token.to_string(),
        ..u.clone()
    }
}

/// (status, fault message) of an account HEAD/GET with this token.
fn account_status(s: &Server, u: &TestUser) -> (u16, String) {
    let r = Api::new(s, u).os("GET", "").send().unwrap();
    let status = r.status().as_u16();
    (status, r.text().unwrap_or_default())
}

fn identity_expires(s: &Server, token: &str) -> (u16, Option<String>) {
    let r = http()
        .post(format!("{}/identity/v2.0/tokens", s.url()))
        .json(&serde_json::json!({"auth": {"token": {"id": token}}}))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().unwrap_or_default();
    (status, v["access"]["token"]["expires"].as_str().map(str::to_string))
}

#[test]
fn tokens_are_issued_with_an_expiry_rotated_revoked_and_refused_after() {
    let s = Server::start();
    let u = s.add_user("alice");
    assert_eq!(account_status(&s, &u).0, 200);
    // A user's first token lasts Astakos's 30 days, and the identity service says so.
    let (st, exp) = identity_expires(&s, &u.token);
    assert_eq!(st, 200);
    let exp = exp.unwrap();
    let days = |iso: &str| {
        let t = time::OffsetDateTime::parse(iso, &time::format_description::well_known::Rfc3339).unwrap();
        (t - time::OffsetDateTime::now_utc()).as_seconds_f64() / 86_400.0
    };
    assert!((29.9..30.1).contains(&days(&exp)), "{exp}");
    // A second token: both work.
    let t2 = user_cmd(&s, &["token", "alice", "--lifetime", "600"]);
    let t2 = t2["token"].as_str().unwrap().to_string();
    assert_eq!(account_status(&s, &with_token(&u, &t2)).0, 200);
    assert_eq!(account_status(&s, &u).0, 200, "the first still works");
    let r = http()
        .get(format!("{}/auth/v1.0", s.url()))
        .header("X-Auth-User", "alice")
        .header("X-Auth-Key", &t2)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let left: u64 = header(&r, "x-auth-token-expires").parse().unwrap();
    assert!((590..=600).contains(&left), "X-Auth-Token-Expires: {left}");
    // Rotation: only the new one works, at once.
    let t3 = user_cmd(&s, &["token", "alice", "--rotate"]);
    let t3 = t3["token"].as_str().unwrap().to_string();
    assert_eq!(account_status(&s, &u).0, 401);
    assert_eq!(account_status(&s, &with_token(&u, &t2)).0, 401);
    assert_eq!(identity_expires(&s, &t2).0, 401);
    assert_eq!(account_status(&s, &with_token(&u, &t3)).0, 200);
    // Expiry: 401 "Authentication expired" (Astakos's words), everywhere.
    let t4 = user_cmd(&s, &["token", "alice", "--lifetime", "1"]);
    let t4 = t4["token"].as_str().unwrap().to_string();
    assert_eq!(account_status(&s, &with_token(&u, &t4)).0, 200);
    std::thread::sleep(Duration::from_millis(1500));
    let (st, msg) = account_status(&s, &with_token(&u, &t4));
    assert_eq!(st, 401);
    assert!(msg.contains("Authentication expired"), "{msg}");
    assert_eq!(identity_expires(&s, &t4).0, 401);
    let r = Api::new(&s, &with_token(&u, &t4))
        .img("GET", "images/detail")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401, "the image API too");
    let r = http()
        .get(format!("{}/auth/v1.0", s.url()))
        .header("X-Auth-User", "alice")
        .header("X-Auth-Key", &t4)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401, "Swift's auth too");
    assert!(r.text().unwrap().contains("Authentication expired"));
    // Revocation: nothing of alice's works; a new token does.
    user_cmd(&s, &["revoke", "alice"]);
    assert_eq!(account_status(&s, &with_token(&u, &t3)).0, 401);
    let t5 = user_cmd(&s, &["token", "alice"]);
    assert_eq!(
        account_status(&s, &with_token(&u, t5["token"].as_str().unwrap())).0,
        200
    );
    // Nothing of a token is stored but its hash (the database's files; in the PostgreSQL
    // tier they are the cluster's, and the same code writes the same rows there).
    if meta_in_pg() {
        return;
    }
    let db = std::fs::read(s.data.join("meta.db")).unwrap();
    let wal = std::fs::read(s.data.join("meta.db-wal")).unwrap_or_default();
    for t in [&u.token, &t2, &t3, &t4] {
        let needle = t.as_bytes();
        for f in [&db, &wal] {
            assert!(!f.windows(needle.len()).any(|w| w == needle), "a token in the database");
        }
    }
}

/// A rotated token reaches kamaki through its config, and a mount through its token file,
/// without a remount: the mount reads the file again when the server refuses the old token.
#[test]
fn kamaki_and_the_mount_go_on_with_a_rotated_token() {
    let s = Server::start();
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    api.put("pithos/before.txt", b"before the rotation\n");
    let m = Mount::new(&s, &u, "attr_timeout=0");
    assert_eq!(
        std::fs::read(m.path("pithos/before.txt")).unwrap(),
        b"before the rotation\n"
    );
    let kamaki = std::env::var("IMGFS_KAMAKI").is_ok().then(|| Kamaki::new(&s, &u));
    if let Some(k) = &kamaki {
        assert!(k.ok(&["file", "list", "/pithos"]).contains("before.txt"));
    }
    let t2 = user_cmd(&s, &["token", "alice", "--rotate"]);
    let t2 = t2["token"].as_str().unwrap().to_string();
    // The old token is dead for everyone: the mount cannot list until its file says more.
    let stale = std::fs::read_dir(m.path("pithos")).and_then(|d| d.collect::<std::io::Result<Vec<_>>>());
    assert!(stale.is_err(), "a refused token lists nothing");
    if let Some(k) = &kamaki {
        assert!(!k.run(&["file", "list", "/pithos"]).status.success());
        k.ok(&["config", "set", "cloud.imgfs.token", &t2]);
        assert!(k.ok(&["file", "list", "/pithos"]).contains("before.txt"));
    }
    let token_file = m.log.parent().unwrap().join("token");
    std::fs::write(&token_file, format!("{t2}\n")).unwrap();
    Api::new(&s, &with_token(&u, &t2)).put("pithos/after.txt", b"after\n");
    assert_eq!(std::fs::read(m.path("pithos/after.txt")).unwrap(), b"after\n");
    std::fs::write(m.path("pithos/written.txt"), b"through the mount\n").unwrap();
    assert_eq!(
        Api::new(&s, &with_token(&u, &t2)).get("pithos/written.txt"),
        b"through the mount\n"
    );
    assert!(m.log().contains("using the one its source holds now"), "{}", m.log());
}
