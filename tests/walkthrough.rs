//! ../shared/reference/imageregister-walkthrough.txt, every step in its file-tool form on a
//! real mount over a real `imgfs serve`, with kamaki 0.16 as the registry's and the object
//! store's independent witness. Also the views and attributes those steps stand on:
//! `/.images/`, `D/.versions/N/<id>`, `user.pithos.*`, `user.meta.*`.
//!
//! Runs through scripts/test.sh (root, /dev/fuse, kamaki installed).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

on_both!(
    every_walkthrough_step_with_file_tools,
    object_attributes_and_container_policy,
);

fn setfattr(p: &Path, name: &str, value: &str) {
    sh(&format!("setfattr -n {name} -v '{value}' '{}'", p.display()));
}

/// Runs a command that must fail; returns its stderr.
fn fails(cmd: &str) -> String {
    let out = Command::new("bash").args(["-c", cmd]).output().unwrap();
    assert!(!out.status.success(), "{cmd} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `kamaki image info ID` as `key: value` lines (properties indented under `properties:`).
fn info(k: &Kamaki, id: &str) -> String {
    k.ok(&["image", "info", id])
}

/// The ids of `kamaki file info --object-versions`, oldest first.
fn kamaki_versions(k: &Kamaki, path: &str) -> Vec<String> {
    k.ok(&["file", "info", "--object-versions", path])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("version_id: ").map(str::to_string))
        .collect()
}

/// The version ids listed in `D/.versions/N`, oldest first.
fn version_ids(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = names_in(dir).iter().map(|n| n.parse().unwrap()).collect();
    v.sort();
    v
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The entries of `.images` named with this run's tag.
fn ours(dir: &Path, tag: &str) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(&format!(" {tag}")))
        .collect()
}

fn every_walkthrough_step_with_file_tools(peer: Peer) {
    let s = Cloud::start(peer);
    let me = s.add_user("someuser");
    let other = s.add_user("otheruser");
    let m = Mount::new(&s, &me, "");
    let k = Kamaki::new(&s, &me);
    let ko = Kamaki::new(&s, &other);
    // The original is shared by every test and keeps what earlier runs registered: the names
    // carry this run's tag, so that no one else's public image shares them.
    let t = run_tag();
    let alpha_name = format!("Debian Base Alpha {t}");
    let beta_name = format!("Beta Debian Base {t}");
    let gama = format!("Debian Base Gama {t}");
    let delta = format!("Debian Base Delta {t}");

    // Another user's public image, registered with kamaki ("Debian Base Alpha" of the
    // walkthrough's list).
    let theirs = ko.path("alpha.diskdump");
    std::fs::write(&theirs, pattern(2 << 20, 7)).unwrap();
    ko.ok(&["file", "upload", theirs.to_str().unwrap(), "/pithos/alpha.diskdump"]);
    ko.ok(&[
        "image",
        "register",
        "--name",
        &alpha_name,
        "--location",
        "/pithos/alpha.diskdump",
        "--public",
    ]);

    // ... one shared with this user ("Beta Debian Base"), and one it cannot see.
    for (file, name) in [
        ("beta.diskdump", beta_name.clone()),
        ("private.diskdump", format!("Private {t}")),
    ] {
        ko.ok(&["file", "upload", theirs.to_str().unwrap(), &format!("/pithos/{file}")]);
        ko.ok(&[
            "image",
            "register",
            "--name",
            &name,
            "--location",
            &format!("/pithos/{file}"),
        ]);
    }
    let beta_id = ko
        .ok(&["image", "list"])
        .lines()
        .find(|l| l.ends_with(&format!(" {beta_name}")))
        .and_then(|l| l.split_whitespace().next())
        .expect("kamaki lists the shared image")
        .to_string();
    ko.ok(&["image", "modify", &beta_id, "--member-add", &me.uuid]);

    // Upload the image: cp into the mount.
    let local = m.dir.parent().unwrap().join("debian_base3.diskdump");
    std::fs::write(&local, pattern(9 << 20, 3)).unwrap();
    sh(&format!("cp '{}' '{}'", local.display(), m.path("pithos/").display()));
    let img = m.path("pithos/debian_base3.diskdump");
    let meta = m.path("pithos/debian_base3.diskdump.meta");
    assert_eq!(sha_file(&img), sha_file(&local));

    // Register it as 'Debian Base Gama': write its metafile.
    let first_metafile = format!(r#"{{"name": "{gama}"}}"#);
    write_close(&meta, first_metafile.as_bytes()).unwrap();
    let id = getfattr(&img, "user.image.id");
    assert_eq!(
        id,
        getfattr(&img, "user.pithos.uuid"),
        "the image id is the object's UUID"
    );
    assert!(info(&k, &id).contains(&format!("name: {gama}")));

    // Read the metafile: the registry's entry in kamaki's layout.
    let live: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(live["id"], id.as_str());
    assert_eq!(live["name"], gama.as_str());
    assert_eq!(
        live["location"],
        format!("pithos://{}/pithos/debian_base3.diskdump", me.uuid)
    );
    assert_eq!(live["disk-format"], "diskdump");

    // List all images the account can see (of these two users: the original also holds other
    // tests' public images), then only its own.
    let listed = ours(&m.path(".images"), &t);
    assert_eq!(listed, [beta_name.as_str(), &alpha_name, &gama]);
    let all = k.ok(&["image", "list"]);
    for name in &listed {
        assert!(all.contains(name.as_str()), "kamaki lists {name} too: {all}");
    }
    assert!(!all.contains(&format!("Private {t}")), "{all}");
    assert_eq!(
        getfattr(&m.path(&format!(".images/{beta_name}")), "user.image.id"),
        beta_id
    );
    let alpha = m.path(&format!(".images/{alpha_name}"));
    assert_eq!(getfattr(&alpha, "user.image.owner"), other.uuid);
    assert_eq!(getfattr(&alpha, "user.image.is-public"), "true");
    let alpha_json: Value = serde_json::from_slice(&std::fs::read(&alpha).unwrap()).unwrap();
    assert_eq!(alpha_json["name"], alpha_name.as_str());
    assert_eq!(
        std::fs::metadata(&alpha).unwrap().len(),
        std::fs::read(&alpha).unwrap().len() as u64
    );
    let mine: Vec<String> = names_in(&m.path(".images"))
        .into_iter()
        .filter(|n| getfattr(&m.path(&format!(".images/{n}")), "user.image.owner") == me.uuid)
        .collect();
    assert_eq!(mine, [gama.as_str()]);

    // Unregister an image owned by the user, check it is gone.
    std::fs::remove_file(&meta).unwrap();
    assert!(!k.ok(&["image", "list", "--owner", &me.uuid]).contains(&gama));
    assert_eq!(ours(&m.path(".images"), &t), [beta_name.as_str(), &alpha_name]);

    // Attempt to unregister (or change) an image of another user: EACCES, nothing changes.
    let e = std::fs::remove_file(&alpha).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    let err = fails(&format!("setfattr -n user.image.name -v Mine '{}'", alpha.display()));
    assert!(err.contains("Permission denied"), "{err}");
    assert!(ko.ok(&["image", "list"]).contains(&alpha_name));
    // The view is read-only as files.
    let e = std::fs::write(m.path(".images/new"), b"{}").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");

    // Register with properties.
    write_close(
        &meta,
        format!(r#"{{"name": "{gama}", "properties": {{"OS": "Linux", "user": "someuser"}}}}"#).as_bytes(),
    )
    .unwrap();
    assert_eq!(
        getfattr(&img, "user.image.id"),
        id,
        "same id after unregister + register"
    );
    let out = info(&k, &id);
    assert!(out.contains("os: Linux") && out.contains("user: someuser"), "{out}");

    // Register with a metafile: download it, edit it (a new name, a changed and an added
    // property), register again: an override, properties not in the file are removed.
    let downloaded = std::fs::read_to_string(&meta).unwrap();
    let mut edited: Value = serde_json::from_str(&downloaded).unwrap();
    edited["name"] = delta.as_str().into();
    edited["properties"] = serde_json::json!({"OS": "Linux", "USER": "root"});
    write_close(&meta, serde_json::to_string_pretty(&edited).unwrap().as_bytes()).unwrap();
    let out = info(&k, &id);
    assert!(
        out.contains(&format!("name: {delta}")) && out.contains("user: root"),
        "{out}"
    );
    assert!(!out.contains("user: someuser"), "{out}");

    // Metadata and property modification: rename and publish, unpublish, properties.
    setfattr(&img, "user.image.name", "Changed Name");
    assert!(info(&k, &id).contains("name: Changed Name"));
    setfattr(&img, "user.image.is-public", "true");
    setfattr(&img, "user.image.name", &gama);
    let out = info(&k, &id);
    assert!(
        out.contains("is-public: True") && out.contains(&format!("name: {gama}")),
        "{out}"
    );
    setfattr(&img, "user.image.is-public", "false");
    assert!(info(&k, &id).contains("is-public: False"));
    setfattr(&img, "user.image.properties.greet", "Hi there");
    setfattr(&img, "user.image.properties.user", "root");
    assert!(info(&k, &id).contains("greet: Hi there"));
    sh(&format!("setfattr -x user.image.properties.greet '{}'", img.display()));
    let out = info(&k, &id);
    assert!(!out.contains("greet") && out.contains("user: root"), "{out}");
    // The stored metafile follows the attribute changes.
    let stored = k.ok(&["file", "cat", "/pithos/debian_base3.diskdump.meta"]);
    assert!(stored.contains(&gama) && !stored.contains("greet"), "{stored}");

    // Multiple metafile versions: versioning get/set on the container's directory.
    let pithos = m.path("pithos");
    assert_eq!(getfattr(&pithos, "user.pithos.versioning"), "auto");
    setfattr(&pithos, "user.pithos.versioning", "none");
    assert!(k
        .ok(&["container", "info", "pithos"])
        .contains("x-container-policy-versioning: none"));
    setfattr(&pithos, "user.pithos.versioning", "auto");
    assert!(k
        .ok(&["container", "info", "pithos"])
        .contains("x-container-policy-versioning: auto"));
    let err = fails(&format!(
        "setfattr -n user.pithos.versioning -v sometimes '{}'",
        pithos.display()
    ));
    assert!(err.contains("Invalid argument"), "{err}");

    // List the versions of the metafile; consult the first one; restore it by cp.
    let by_id = version_ids(&m.path("pithos/.versions/debian_base3.diskdump.meta"));
    let witness: Vec<u64> = kamaki_versions(&k, "/pithos/debian_base3.diskdump.meta")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(by_id, witness, "the versions kamaki lists");
    assert!(by_id.len() >= 3, "{by_id:?}");
    let first = m.path(&format!("pithos/.versions/debian_base3.diskdump.meta/{}", by_id[0]));
    assert_eq!(std::fs::read(&first).unwrap(), first_metafile.as_bytes());
    let listing = getfattr(&meta, "user.pithos.versions");
    assert_eq!(listing.lines().count(), by_id.len(), "{listing}");
    assert!(listing.starts_with(&format!("{} ", by_id[0])), "{listing}");
    // A version is read-only and carries its own time.
    let e = std::fs::OpenOptions::new().write(true).open(&first).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    let mtime = std::fs::metadata(&first).unwrap().modified().unwrap();
    let newest = m.path(&format!(
        "pithos/.versions/debian_base3.diskdump.meta/{}",
        by_id.last().unwrap()
    ));
    assert!(mtime < std::fs::metadata(&newest).unwrap().modified().unwrap());
    // Restoring the first version re-registers what it says.
    sh(&format!("cp '{}' '{}'", first.display(), meta.display()));
    let out = info(&k, &id);
    assert!(
        out.contains(&format!("name: {gama}")) && !out.contains("user: root"),
        "{out}"
    );
    // Versions of an image read back byte for byte.
    let v = version_ids(&m.path("pithos/.versions/debian_base3.diskdump"));
    let v0 = m.path(&format!("pithos/.versions/debian_base3.diskdump/{}", v[0]));
    assert_eq!(sha_file(&v0), sha_file(&local));
    // `.versions/` of the container: a directory per file, the image and its metafile among them.
    let mut roots: Vec<String> = std::fs::read_dir(m.path("pithos/.versions"))
        .unwrap()
        .map(|e| e.unwrap())
        .inspect(|e| assert!(e.file_type().unwrap().is_dir(), "{:?}", e.file_name()))
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    roots.sort();
    for want in ["debian_base3.diskdump", "debian_base3.diskdump.meta"] {
        assert!(roots.iter().any(|r| r == want), "{want} not in .versions/: {roots:?}");
    }

    // Batch image upload: cp -r of a folder of images and metafiles with "is-public".
    let batch = m.dir.parent().unwrap().join("images");
    std::fs::create_dir_all(&batch).unwrap();
    for (i, name) in ["one.diskdump", "two.diskdump"].iter().enumerate() {
        std::fs::write(batch.join(name), pattern((1 << 20) + i, i as u64)).unwrap();
        std::fs::write(
            batch.join(format!("{name}.meta")),
            format!(r#"{{"name": "Batch {name} {t}", "is-public": "True"}}"#),
        )
        .unwrap();
    }
    sh(&format!(
        "cp -r '{}' '{}'",
        batch.display(),
        m.path("pithos/").display()
    ));
    let all = k.ok(&["image", "list"]);
    for name in ["one.diskdump", "two.diskdump"] {
        assert!(all.contains(&format!("Batch {name} {t}")), "{all}");
        let f = m.path(&format!("pithos/images/{name}"));
        assert_eq!(getfattr(&f, "user.image.is-public"), "true");
        assert!(
            ko.ok(&["image", "list"]).contains(&format!("Batch {name} {t}")),
            "public to others"
        );
    }

    // The registration survives mv (same id, location follows).
    sh(&format!(
        "mv '{}' '{}'",
        img.display(),
        m.path("pithos/renamed.diskdump").display()
    ));
    let out = info(&k, &id);
    assert!(out.contains("/pithos/renamed.diskdump"), "{out}");
    assert!(m.path("pithos/renamed.diskdump.meta").exists());
}

fn object_attributes_and_container_policy(peer: Peer) {
    let s = Cloud::start(peer);
    let u = s.add_user("alice");
    let m = Mount::new(&s, &u, "");
    let k = Kamaki::new(&s, &u);
    let api = Api::new(&s, &u);
    let f = m.path("pithos/notes.txt");
    std::fs::write(&f, b"hello").unwrap();

    // Object headers as user.pithos.*: what HEAD says.
    let head = api.head("pithos/notes.txt");
    assert_eq!(getfattr(&f, "user.pithos.uuid"), header(&head, "x-object-uuid"));
    assert_eq!(getfattr(&f, "user.pithos.version"), header(&head, "x-object-version"));
    assert_eq!(getfattr(&f, "user.pithos.hash"), header(&head, "x-object-hash"));
    assert_eq!(getfattr(&f, "user.pithos.modified-by"), u.uuid);
    let names = sh(&format!("getfattr -d -m - '{}'", f.display()));
    assert!(
        names.contains("user.pithos.versions") && !names.contains("user.image."),
        "{names}"
    );

    // user.meta.* is X-Object-Meta-*: set, seen by kamaki, removed.
    setfattr(&f, "user.meta.color", "blue");
    assert_eq!(header(&api.head("pithos/notes.txt"), "x-object-meta-color"), "blue");
    assert!(k.ok(&["file", "info", "/pithos/notes.txt"]).contains("blue"));
    assert_eq!(getfattr(&f, "user.meta.color"), "blue");
    sh(&format!("setfattr -x user.meta.color '{}'", f.display()));
    assert_eq!(header(&api.head("pithos/notes.txt"), "x-object-meta-color"), "");
    let err = fails(&format!("setfattr -x user.meta.color '{}'", f.display()));
    assert!(err.contains("No such attribute"), "{err}");
    let err = fails(&format!("setfattr -n user.meta.bad:key -v x '{}'", f.display()));
    assert!(err.contains("Invalid argument"), "{err}");

    // Sharing and publishing are settable; the rest is read-only.
    setfattr(&f, "user.pithos.sharing", "read=bob,carol");
    assert_eq!(
        header(&api.head("pithos/notes.txt"), "x-object-sharing"),
        "read=bob,carol"
    );
    setfattr(&f, "user.pithos.public", "true");
    let url = getfattr(&f, "user.pithos.public");
    assert!(url.contains("/public/"), "{url}");
    assert_eq!(http().get(&url).send().unwrap().bytes().unwrap().as_ref(), b"hello");
    sh(&format!("setfattr -x user.pithos.public '{}'", f.display()));
    assert_eq!(header(&api.head("pithos/notes.txt"), "x-object-public"), "");
    let err = fails(&format!(
        "setfattr -n user.pithos.sharing -v 'share=all' '{}'",
        f.display()
    ));
    assert!(err.contains("Invalid argument"), "{err}");
    let err = fails(&format!("setfattr -n user.pithos.uuid -v x '{}'", f.display()));
    assert!(err.contains("Operation not permitted"), "{err}");

    // A container's directory: policy and usage; quota settable.
    let dir = m.path("pithos");
    assert_eq!(getfattr(&dir, "user.pithos.block-size"), "4194304");
    assert_eq!(getfattr(&dir, "user.pithos.object-count"), "1");
    setfattr(&dir, "user.pithos.quota", "1000000");
    assert!(k
        .ok(&["container", "info", "pithos"])
        .contains("x-container-policy-quota: 1000000"));
    let err = fails(&format!("setfattr -n user.pithos.quota -v lots '{}'", dir.display()));
    assert!(err.contains("Invalid argument"), "{err}");
    // Not for other namespaces.
    let err = fails(&format!("setfattr -n user.other -v x '{}'", f.display()));
    assert!(err.contains("Operation not supported"), "{err}");

    // Versions: one file per version, named by id, read-only, restored by cp.
    std::fs::write(&f, b"second").unwrap();
    let ids = version_ids(&m.path("pithos/.versions/notes.txt"));
    assert_eq!(
        ids.len(),
        2 + 2,
        "first write, the two metadata POSTs, second write: {ids:?}"
    );
    let oldest = m.path(&format!("pithos/.versions/notes.txt/{}", ids[0]));
    assert_eq!(std::fs::read(&oldest).unwrap(), b"hello");
    assert_eq!(getfattr(&oldest, "user.pithos.version"), ids[0].to_string());
    let e = std::fs::remove_file(&oldest).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    sh(&format!("cp '{}' '{}'", oldest.display(), f.display()));
    assert_eq!(std::fs::read(&f).unwrap(), b"hello");
    // `.versions` is reachable by name, never listed.
    assert!(!names_in(&dir).contains(&".versions".to_string()));
    assert_eq!(names_in(&m.path("pithos/.versions")), ["notes.txt"]);
    let e = std::fs::metadata(m.path("pithos/.versions/missing")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
}
