//! The image registry as files (DESIGN.md §2 ".meta files") on a real mount over a real
//! `imgfs serve`, with kamaki 0.16 as the registry's independent witness: a committed
//! `N.meta` registers N with exactly what it says, bad metafiles fail the close with EINVAL
//! and keep their bytes, `rm N.meta` and `rm N` unregister.
//!
//! Runs through scripts/test.sh (root, /dev/fuse, kamaki installed).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

on_both!(
    meta_files_register_update_and_unregister,
    editors_update_the_registration_in_place,
    xattrs_read_and_change_the_registration,
    every_save_is_one_version,
    copies_out_and_back_keep_attributes_quietly,
);

/// The account's own images, by name, from `GET /images/detail` (which also lists every
/// public image, other tests' too on the original).
fn detail(api: &Api, name: &str) -> Option<Value> {
    let list: Value = api.img("GET", "images/detail").send().unwrap().json().unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name && i["owner"] == api.user.uuid.as_str())
        .cloned()
}

fn uuid(api: &Api, path: &str) -> String {
    header(&api.head(path), "x-object-uuid")
}

fn meta_files_register_update_and_unregister(peer: Peer) {
    let s = Cloud::start(peer);
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    let m = Mount::new(&s, &u, "");
    let k = Kamaki::new(&s, &u);

    // Register: an image file, then its metafile as a person types it.
    std::fs::write(m.path("pithos/deb.img"), pattern(5 << 20, 1)).unwrap();
    let id = uuid(&api, "pithos/deb.img");
    write_close(
        &m.path("pithos/deb.img.meta"),
        br#"{"name": "Debian", "is-public": true, "properties": {"OSFAMILY": "linux", "users": "root"}}"#,
    )
    .unwrap();
    let img = detail(&api, "Debian").expect("registered by the close");
    assert_eq!(img["id"], id.as_str(), "the image id is the object's UUID");
    assert_eq!(img["is_public"], true);
    assert_eq!(img["properties"]["osfamily"], "linux");
    let out = k.ok(&["image", "list"]);
    assert!(out.contains(&format!("{id} Debian")), "{out}");
    let out = k.ok(&["image", "info", &id]);
    assert!(out.contains("users: root") && out.contains("osfamily: linux"), "{out}");

    // Override: exactly what the file says, properties not in it removed, id kept.
    write_close(&m.path("pithos/deb.img.meta"), br#"{"name": "Debian 2"}"#).unwrap();
    let img = detail(&api, "Debian 2").expect("re-registered");
    assert_eq!(img["id"], id.as_str());
    assert_eq!(img["is_public"], false);
    assert_eq!(img["properties"], serde_json::json!({}));
    assert!(detail(&api, "Debian").is_none());

    // A metafile kamaki itself wrote (string values, "True", dashes) registers through the
    // mount too.
    std::fs::write(m.path("pithos/k.img"), pattern(3000, 2)).unwrap();
    k.ok(&[
        "image",
        "register",
        "--name",
        "From Kamaki",
        "--location",
        "/pithos/k.img",
        "--public",
        "-p",
        "root_partition=1",
    ]);
    let kamaki_meta = std::fs::read(m.path("pithos/k.img.meta")).unwrap();
    assert!(String::from_utf8_lossy(&kamaki_meta).contains("\"is-public\": \"True\""));
    write_close(&m.path("pithos/deb.img.meta"), &kamaki_meta).unwrap();
    let img = detail(&api, "From Kamaki").expect("registered from kamaki's metafile");
    assert_eq!(img["id"], id.as_str(), "deb.img took the name, not k.img's id");
    assert_eq!(img["is_public"], true);
    assert_eq!(img["properties"]["root_partition"], "1");

    // A program that writes a temp file and renames it over the metafile: an update.
    write_close(&m.path("pithos/.deb.img.meta.tmp"), br#"{"name": "Renamed In"}"#).unwrap();
    std::fs::rename(m.path("pithos/.deb.img.meta.tmp"), m.path("pithos/deb.img.meta")).unwrap();
    let img = detail(&api, "Renamed In").expect("registered by the rename");
    assert_eq!(img["id"], id.as_str());
    assert!(!m.path("pithos/.deb.img.meta.tmp").exists());

    // Reading the metafile gives the registry's live state, also after a change made
    // elsewhere (kamaki), never the older stored bytes.
    let live: Value = serde_json::from_slice(&std::fs::read(m.path("pithos/deb.img.meta")).unwrap()).unwrap();
    assert_eq!(
        (live["name"].as_str(), live["id"].as_str()),
        (Some("Renamed In"), Some(id.as_str()))
    );
    k.ok(&[
        "image",
        "modify",
        &id,
        "--name",
        "Changed Elsewhere",
        "-p",
        "via=kamaki",
    ]);
    let text = std::fs::read(m.path("pithos/deb.img.meta")).unwrap();
    let live: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(live["name"], "Changed Elsewhere");
    assert_eq!(live["properties"]["via"], "kamaki");
    assert_eq!(live["is-public"], "False");
    std::thread::sleep(std::time::Duration::from_millis(1100)); // past the attribute TTL
    assert_eq!(
        std::fs::metadata(m.path("pithos/deb.img.meta")).unwrap().len(),
        text.len() as u64
    );
    // Right after a commit of the metafile, its size is what it now reads as.
    write_close(
        &m.path("pithos/deb.img.meta"),
        br#"{"name": "Changed Elsewhere", "properties": {"via": "kamaki", "longer": "now"}}"#,
    )
    .unwrap();
    // (stat first: opening the file for the read refreshes what it knows)
    let len = std::fs::metadata(m.path("pithos/deb.img.meta")).unwrap().len();
    assert_eq!(len, std::fs::read(m.path("pithos/deb.img.meta")).unwrap().len() as u64);

    // An image registered without a metafile still shows one; removing it unregisters.
    std::fs::write(m.path("pithos/bare.img"), pattern(4096, 5)).unwrap();
    let out = k.ok(&[
        "image",
        "register",
        "--name",
        "No Metafile",
        "--location",
        "/pithos/bare.img",
        "--no-metafile-upload",
    ]);
    assert!(out.contains("No Metafile"), "{out}");
    assert_eq!(api.img("GET", "images/detail").send().unwrap().status(), 200);
    let listing: Vec<String> = std::fs::read_dir(m.path("pithos"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(listing.contains(&"bare.img.meta".to_string()), "{listing:?}");
    let live: Value = serde_json::from_slice(&std::fs::read(m.path("pithos/bare.img.meta")).unwrap()).unwrap();
    assert_eq!(live["name"], "No Metafile");
    std::fs::remove_file(m.path("pithos/bare.img.meta")).unwrap();
    assert!(detail(&api, "No Metafile").is_none());
    assert!(!m.path("pithos/bare.img.meta").exists());
    assert_eq!(api.get("pithos/bare.img").len(), 4096);

    // Bad metafiles: EINVAL at close, registry unchanged, bytes kept, reason in the xattr.
    let bad: [(&str, &[u8], &str); 5] = [
        ("invalid JSON", b"{\"name\": ", "invalid JSON"),
        ("unknown format", br#"{"disk-format": "qcow9"}"#, "qcow9"),
        ("wrong type", br#"{"properties": {"a": [1]}}"#, "must be a string"),
        ("empty", b"", "empty"),
        ("not UTF-8", b"{\"name\": \"\xff\"}", "UTF-8"),
    ];
    for (what, bytes, reason) in bad {
        let e = write_close(&m.path("pithos/deb.img.meta"), bytes).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{what}: {e}");
        assert!(
            detail(&api, "Changed Elsewhere").is_some(),
            "{what}: registry kept its state"
        );
        assert_eq!(api.get("pithos/deb.img.meta"), bytes, "{what}: bytes kept");
        let why = getfattr(&m.path("pithos/deb.img.meta"), "user.imgfs.error");
        assert!(why.contains(reason), "{what}: user.imgfs.error = {why:?}");
    }
    let big = vec![b' '; 10 << 20];
    let e = write_close(&m.path("pithos/deb.img.meta"), &big).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    assert_eq!(
        api.get("pithos/deb.img.meta").len(),
        10 << 20,
        "a 10 MiB metafile is kept too"
    );
    // A good file clears the error.
    write_close(&m.path("pithos/deb.img.meta"), br#"{"name": "Debian 3"}"#).unwrap();
    assert_eq!(getfattr(&m.path("pithos/deb.img.meta"), "user.imgfs.error"), "");
    assert!(detail(&api, "Debian 3").is_some());

    // `cp -r` of a folder where the metafile comes first: registered when the image lands.
    let src = m.dir.parent().unwrap().join("batch");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("b.img.meta"), br#"{"name": "Batch", "is-public": "True"}"#).unwrap();
    std::fs::write(src.join("b.img"), pattern(1 << 20, 3)).unwrap();
    std::fs::create_dir(m.path("pithos/batch")).unwrap();
    std::fs::copy(src.join("b.img.meta"), m.path("pithos/batch/b.img.meta")).unwrap();
    assert!(detail(&api, "Batch").is_none(), "no image yet");
    std::fs::copy(src.join("b.img"), m.path("pithos/batch/b.img")).unwrap();
    let img = detail(&api, "Batch").expect("registered when the image was committed");
    assert_eq!(img["is_public"], true);
    assert_eq!(img["location"], format!("pithos://{}/pithos/batch/b.img", u.uuid));

    // Rewriting the image keeps it registered with the new size.
    std::fs::write(m.path("pithos/batch/b.img"), pattern(2 << 20, 4)).unwrap();
    assert_eq!(detail(&api, "Batch").unwrap()["size"], 2 << 20);

    // mv N M: the metafile follows, the image keeps its id, its location follows.
    std::fs::rename(m.path("pithos/deb.img"), m.path("pithos/moved.img")).unwrap();
    assert!(!m.path("pithos/deb.img.meta").exists());
    let img = detail(&api, "Debian 3").expect("still registered after mv");
    assert_eq!(img["id"], id.as_str());
    assert_eq!(img["location"], format!("pithos://{}/pithos/moved.img", u.uuid));
    let live: Value = serde_json::from_slice(&std::fs::read(m.path("pithos/moved.img.meta")).unwrap()).unwrap();
    assert_eq!(live["name"], "Debian 3");
    assert_eq!(
        api.get("pithos/moved.img.meta"),
        br#"{"name": "Debian 3"}"#,
        "the stored metafile moved"
    );
    std::fs::rename(m.path("pithos/moved.img"), m.path("pithos/deb.img")).unwrap();

    // rm N.meta unregisters and keeps N; rm N unregisters.
    std::fs::remove_file(m.path("pithos/deb.img.meta")).unwrap();
    assert!(detail(&api, "Debian 3").is_none());
    let out = k.ok(&["image", "list"]);
    assert!(!out.contains(&id), "{out}");
    assert_eq!(api.get("pithos/deb.img").len(), 5 << 20);
    std::fs::remove_file(m.path("pithos/batch/b.img")).unwrap();
    assert!(detail(&api, "Batch").is_none());
    assert!(m.path("pithos/batch/b.img.meta").exists(), "rm N leaves N.meta");
}

/// Polls `HEAD /images/ID` until stopped; returns how many answers were not 200.
fn watch_registration(api: &Api, id: &str, stop: &std::sync::atomic::AtomicBool) -> usize {
    let mut missing = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if api.img("HEAD", &format!("images/{id}")).send().unwrap().status() != 200 {
            missing += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    missing
}

/// Runs an editor command on the mount while watching the image's registration; returns
/// how often the image was seen unregistered.
fn edit(api: &Api, id: &str, save: &dyn Fn()) -> usize {
    /// Stops the watcher however the save ends: a panicking save must fail the test, not
    /// leave the scope waiting for the watcher forever.
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        let watcher = sc.spawn(|| watch_registration(api, id, &stop));
        let guard = StopOnDrop(&stop);
        std::thread::sleep(std::time::Duration::from_millis(20));
        save();
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(guard);
        watcher.join().unwrap()
    })
}

/// Object names in the container (through the API, not the mount).
fn objects(api: &Api) -> Vec<String> {
    let text = String::from_utf8(api.get("pithos")).unwrap();
    text.lines().map(str::to_string).collect()
}

fn editors_update_the_registration_in_place(peer: Peer) {
    let s = Cloud::start(peer);
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    let m = Mount::new(&s, &u, "");
    std::fs::write(m.path("pithos/ed.img"), pattern(1 << 20, 9)).unwrap();
    let id = uuid(&api, "pithos/ed.img");
    std::fs::write(
        m.path("pithos/ed.img.meta"),
        br#"{"name": "Debian", "properties": {"os": "linux"}}"#,
    )
    .unwrap();
    assert!(detail(&api, "Debian").is_some());
    let meta = m.path("pithos/ed.img.meta");
    let before = objects(&api);

    let run = |cmd: String| move || drop(sh(&cmd));
    let m_ = meta.clone();
    // (what, how it saves, the name it saves)
    type Step<'a> = (&'a str, Box<dyn Fn()>, &'a str);
    let steps: Vec<Step> = vec![
        (
            "sed -i",
            Box::new(run(format!(r#"sed -i 's/"Debian"/"Debian sed"/' '{}'"#, meta.display()))),
            "Debian sed",
        ),
        (
            "vim, backupcopy=auto",
            Box::new(run(format!(
                "vim -u DEFAULTS -es -c 'set backupskip= backupcopy=auto writebackup' -c '%s/Debian sed/Dv/' -c 'wq' '{}'",
                meta.display()
            ))),
            "Dv",
        ),
        (
            "vim, backupcopy=yes",
            Box::new(run(format!(
                "vim -u DEFAULTS -es -c 'set backupskip= backupcopy=yes writebackup' -c '%s/Dv/Debian vim yes/' -c 'wq' '{}'",
                meta.display()
            ))),
            "Debian vim yes",
        ),
        (
            // Backups on (also outside the home), made by renaming the file away: the
            // backup rename dance. Lock files fail (no symlinks) as emacs allows.
            "emacs --batch",
            Box::new(run(format!(
                r#"cd / && emacs -Q --batch --eval '(setq make-backup-files t backup-by-copying nil backup-enable-predicate (lambda (_) t))' '{}' --eval '(progn (goto-char (point-min)) (while (search-forward "Debian vim yes" nil t) (replace-match "Debian emacs")) (save-buffer))'"#,
                meta.display()
            ))),
            "Debian emacs",
        ),
        ("nano (through tmux)", Box::new(move || nano_replace(&m_, "Debian emacs", "Debian nano")), "Debian nano"),
        (
            "a program writing a temp file and renaming it over",
            Box::new(run(format!(
                r#"python3 -c 'import json, os, sys; p = sys.argv[1]; d = json.load(open(p)); d["name"] = "Debian py"; t = p + ".tmp123"; f = open(t, "w"); json.dump(d, f); f.flush(); os.fsync(f.fileno()); f.close(); os.rename(t, p)' '{}'"#,
                meta.display()
            ))),
            "Debian py",
        ),
    ];
    for (what, save, name) in steps {
        let unregistered = edit(&api, &id, &*save);
        assert_eq!(
            unregistered, 0,
            "{what}: the image was seen unregistered during the save"
        );
        let img = detail(&api, name).unwrap_or_else(|| panic!("{what}: registry has the edit"));
        assert_eq!(img["id"], id.as_str(), "{what}: same image");
        assert_eq!(img["properties"]["os"], "linux", "{what}: the rest of the file kept");
        if what.starts_with("emacs") {
            // emacs keeps its backup by design: the old file, which registers nothing, and
            // whose removal unregisters nothing.
            let mut expected = before.clone();
            expected.push("ed.img.meta~".to_string());
            expected.sort();
            assert_eq!(objects(&api), expected, "{what}: only emacs's backup is left");
            std::fs::remove_file(m.path("pithos/ed.img.meta~")).unwrap();
            assert!(
                detail(&api, name).is_some(),
                "removing emacs's backup unregisters nothing"
            );
        }
        assert_eq!(objects(&api), before, "{what}: no swap, backup or temp objects left");
    }
    // Past the grace period the saves above still stand.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert!(detail(&api, "Debian py").is_some());

    // A metafile moved away for good unregisters once the grace period is over, and
    // moving it back registers again.
    let kept = m.path("pithos/ed.img.json");
    std::fs::rename(&meta, &kept).unwrap();
    assert!(!meta.exists(), "the name is free after the rename");
    assert!(
        detail(&api, "Debian py").is_some(),
        "not unregistered during the grace period"
    );
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert!(detail(&api, "Debian py").is_none(), "unregistered after it");
    std::fs::rename(&kept, &meta).unwrap();
    assert_eq!(detail(&api, "Debian py").unwrap()["id"], id.as_str());

    // Unmounting ends a running grace period at once: the image does not stay registered
    // with its metafile gone.
    std::fs::rename(&meta, &kept).unwrap();
    m.unmount();
    let t0 = std::time::Instant::now();
    while detail(&api, "Debian py").is_some() && t0.elapsed() < std::time::Duration::from_millis(2500) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        detail(&api, "Debian py").is_none(),
        "unregistered at unmount, before the grace period would have ended"
    );
}

/// How many versions of `path` the server lists (0 when it has none).
fn version_count(api: &Api, path: &str) -> usize {
    let r = api
        .os("GET", &format!("{path}?version=list&format=json"))
        .send()
        .unwrap();
    if r.status() == 404 {
        return 0;
    }
    assert_eq!(r.status(), 200, "versions of {path}");
    r.json::<Value>().unwrap()["versions"].as_array().unwrap().len()
}

/// `path` comes to `n` versions and stays there (a commit at the release lands a moment
/// after the last close returns).
fn settles_at(api: &Api, path: &str, n: usize, what: &str) {
    let t0 = std::time::Instant::now();
    while version_count(api, path) < n && t0.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(version_count(api, path), n, "{what}: one save, one version");
}

/// Every everyday way of saving a file stores exactly one new version with what was saved,
/// and no empty one before it (shells close a duplicate of the redirected descriptor before
/// the command writes); `: > f` stores one empty version. On a metafile, the README's
/// `echo '{...}' > N.meta` registers without a warning, and its first version in
/// `.versions/` is what was written (the walkthrough's "consult the first version").
fn every_save_is_one_version(peer: Peer) {
    let s = Cloud::start(peer);
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    let m = Mount::new(&s, &u, "");
    let f = m.path("pithos/notes.txt");
    let fp = f.display().to_string();
    let outside = tempfile::tempdir_in(test_root()).unwrap();
    let src = outside.path().join("seven.txt");
    std::fs::write(&src, "seven\n").unwrap();

    sh(&format!("echo one > '{fp}'"));
    settles_at(&api, "pithos/notes.txt", 1, "bash: echo > a new file");
    assert_eq!(api.get("pithos/notes.txt"), b"one\n");

    let f_ = f.clone();
    type Save<'a> = (&'a str, Box<dyn Fn()>, &'a str);
    let run = |cmd: String| -> Box<dyn Fn()> { Box::new(move || drop(sh(&cmd))) };
    let saves: Vec<Save> = vec![
        ("dash: echo >", run(format!("dash -c \"echo two > '{fp}'\"")), "two\n"),
        ("bash: printf >", run(format!("printf 'three\\n' > '{fp}'")), "three\n"),
        ("tee", run(format!("echo four | tee '{fp}' > /dev/null")), "four\n"),
        ("bash: echo >>", run(format!("echo five >> '{fp}'")), "four\nfive\n"),
        (
            "python open('w')",
            run(format!(r#"python3 -c 'import sys; f = open(sys.argv[1], "w"); f.write("six\n"); f.close()' '{fp}'"#)),
            "six\n",
        ),
        ("cp over it", run(format!("cp '{}' '{fp}'", src.display())), "seven\n"),
        ("sed -i", run(format!("sed -i s/seven/eight/ '{fp}'")), "eight\n"),
        (
            "vim, backupcopy=auto",
            run(format!(
                "vim -u DEFAULTS -es -c 'set backupskip= backupcopy=auto writebackup' -c '%s/eight/nine/' -c 'wq' '{fp}'"
            )),
            "nine\n",
        ),
        (
            "vim, backupcopy=yes",
            run(format!(
                "vim -u DEFAULTS -es -c 'set backupskip= backupcopy=yes writebackup' -c '%s/nine/ten/' -c 'wq' '{fp}'"
            )),
            "ten\n",
        ),
        (
            // Its first save renames the file to `notes.txt~` and writes a new one.
            "emacs --batch, with its backup",
            run(format!(
                r#"cd / && emacs -Q --batch --eval '(setq make-backup-files t backup-by-copying nil backup-enable-predicate (lambda (_) t))' '{fp}' --eval '(progn (goto-char (point-min)) (while (search-forward "ten" nil t) (replace-match "eleven")) (save-buffer))'"#
            )),
            "eleven\n",
        ),
        ("nano (through tmux)", Box::new(move || nano_replace(&f_, "eleven", "twelve")), "twelve\n"),
        ("bash: : > (truncate only)", run(format!(": > '{fp}'")), ""),
    ];
    for (what, save, expected) in saves {
        let n = version_count(&api, "pithos/notes.txt");
        save();
        settles_at(&api, "pithos/notes.txt", n + 1, what);
        assert_eq!(api.get("pithos/notes.txt"), expected.as_bytes(), "{what}");
        assert_eq!(
            std::fs::read(&f).unwrap(),
            expected.as_bytes(),
            "{what}: the mount reads it"
        );
    }
    std::fs::remove_file(m.path("pithos/notes.txt~")).unwrap();
    let names = String::from_utf8(api.get("pithos")).unwrap();
    assert_eq!(names, "notes.txt\n", "no temp, swap or backup objects left");
    // Every stored version but the last is one of the saves: none empty.
    let vdir = m.path("pithos/.versions/notes.txt");
    let mut versions: Vec<_> = std::fs::read_dir(&vdir).unwrap().map(|e| e.unwrap().path()).collect();
    versions.sort_by_key(|p| p.file_name().unwrap().to_str().unwrap().parse::<u64>().unwrap());
    assert_eq!(versions.len(), version_count(&api, "pithos/notes.txt"));
    let last = versions.pop().unwrap();
    assert_eq!(std::fs::read(last).unwrap(), b"", "the last is the truncation");
    for v in versions {
        assert!(!std::fs::read(&v).unwrap().is_empty(), "{} is empty", v.display());
    }

    // The README's registration, by redirect, twice.
    std::fs::write(m.path("pithos/deb.img"), pattern(1 << 20, 5)).unwrap();
    let meta = m.path("pithos/deb.img.meta");
    sh(&format!(r#"echo '{{"name": "First"}}' > '{}'"#, meta.display()));
    settles_at(&api, "pithos/deb.img.meta", 1, "echo > N.meta");
    assert!(detail(&api, "First").is_some(), "registered by the redirect");
    sh(&format!(r#"printf '{{"name": "Second"}}' > '{}'"#, meta.display()));
    settles_at(&api, "pithos/deb.img.meta", 2, "printf > N.meta");
    assert!(detail(&api, "Second").is_some());
    let log = m.log();
    assert!(
        !log.contains("the file is empty"),
        "no empty commit of a metafile:\n{log}"
    );
    let vdir = m.path("pithos/.versions/deb.img.meta");
    let mut versions: Vec<_> = std::fs::read_dir(&vdir).unwrap().map(|e| e.unwrap().path()).collect();
    versions.sort_by_key(|p| p.file_name().unwrap().to_str().unwrap().parse::<u64>().unwrap());
    let first = std::fs::read_to_string(&versions[0]).unwrap();
    assert_eq!(first, "{\"name\": \"First\"}\n", "the first version is the first save");
}

/// Runs `cmd` in bash and returns its exit status and what it printed on stderr.
fn status_and_stderr(cmd: &str) -> (i32, String) {
    let out = std::process::Command::new("bash").args(["-c", cmd]).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cp -a`, `rsync -aX` and `tar --xattrs` of a registered image out of the mount and back
/// onto it: no warning and no error, as the read-only attributes come back with the values
/// they have (a different value is still EPERM); nothing is re-registered or changed.
/// `tar` makes its files by mknod first (to set attributes before the data).
fn copies_out_and_back_keep_attributes_quietly(peer: Peer) {
    let s = Cloud::start(peer);
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    let m = Mount::new(&s, &u, "");
    let img = m.path("pithos/rt.img");
    std::fs::write(&img, pattern(1 << 20, 21)).unwrap();
    write_close(
        &m.path("pithos/rt.img.meta"),
        br#"{"name": "Round Trip", "properties": {"os": "linux"}}"#,
    )
    .unwrap();
    sh(&format!("setfattr -n user.meta.color -v blue '{}'", img.display()));
    let id = uuid(&api, "pithos/rt.img");
    let attrs = |p: &Path| sh(&format!("getfattr -d -m - '{}' | sed 1d", p.display()));
    let before = attrs(&img);
    assert!(
        before.contains("user.pithos.uuid=") && before.contains("user.image.id="),
        "{before}"
    );
    let versions = version_count(&api, "pithos/rt.img");
    let out = tempfile::tempdir_in(test_root()).unwrap();
    let o = out.path().display().to_string();
    let i = img.display();

    // Out: every attribute comes along.
    let (rc, err) = status_and_stderr(&format!("cp -a --preserve=xattr '{i}' '{o}/cp.img'"));
    assert_eq!((rc, err.as_str()), (0, ""), "cp -a out");
    assert_eq!(
        attrs(&out.path().join("cp.img")),
        before,
        "cp -a carried every attribute"
    );
    let (rc, err) = status_and_stderr(&format!("rsync -aX '{i}' '{o}/rsync.img'"));
    assert_eq!((rc, err.as_str()), (0, ""), "rsync -aX out");
    let (rc, err) = status_and_stderr(&format!(
        "tar --xattrs --xattrs-include='*' -C '{}' -cf '{o}/rt.tar' rt.img",
        m.path("pithos").display()
    ));
    assert_eq!((rc, err.as_str()), (0, ""), "tar --xattrs out");

    // Back onto the same file: rsync finds it unchanged (attributes only), cp writes it again.
    let log_before = m.log().len();
    let (rc, err) = status_and_stderr(&format!("rsync -aX '{o}/rsync.img' '{i}'"));
    assert_eq!((rc, err.as_str()), (0, ""), "rsync -aX back");
    assert_eq!(version_count(&api, "pithos/rt.img"), versions, "rsync changed nothing");
    assert_eq!(attrs(&img), before, "rsync changed no attribute");
    let (rc, err) = status_and_stderr(&format!("cp -a --preserve=xattr '{o}/cp.img' '{i}'"));
    assert_eq!((rc, err.as_str()), (0, ""), "cp -a back");
    let img_detail = detail(&api, "Round Trip").expect("still registered");
    assert_eq!(img_detail["id"], id.as_str(), "the same image");
    assert_eq!(img_detail["properties"]["os"], "linux");
    assert_eq!(uuid(&api, "pithos/rt.img"), id);
    assert_eq!(api.get("pithos/rt.img"), pattern(1 << 20, 21));
    // cp's commit is a new version (and the registry following it may add one).
    assert!(version_count(&api, "pithos/rt.img") > versions, "cp wrote it again");
    let log = m.log()[log_before..].to_string();
    assert!(
        !log.contains("attributes changed") && !log.contains("image updated") && !log.contains("errno="),
        "the attributes written back changed nothing and failed nowhere:\n{log}"
    );

    // tar into an empty directory: mknod, its attributes, its data.
    std::fs::create_dir(m.path("pithos/untar")).unwrap();
    let (rc, err) = status_and_stderr(&format!(
        "tar --xattrs --xattrs-include='user.meta.*' -C '{}' -xf '{o}/rt.tar'",
        m.path("pithos/untar").display()
    ));
    assert_eq!((rc, err.as_str()), (0, ""), "tar --xattrs in");
    assert_eq!(api.get("pithos/untar/rt.img"), pattern(1 << 20, 21));
    let untarred = attrs(&m.path("pithos/untar/rt.img"));
    assert!(untarred.contains("user.meta.color=\"blue\""), "{untarred}");

    // Into new files: cp -a sets the attributes before its close, rsync after it (on a
    // temporary name it then renames), tar after mknod and before the data; every one brings
    // the source's server-assigned values too. Each copy is quiet, keeps the user metadata and
    // comes out registered under its own name with the source's image fields.
    std::fs::create_dir(m.path("pithos/untar-all")).unwrap();
    let p = m.path("pithos").display().to_string();
    let log_before = m.log().len();
    for (what, cmd, path) in [
        (
            "cp -a",
            format!("cp -a --preserve=xattr '{o}/cp.img' '{p}/cp-new.img'"),
            "pithos/cp-new.img",
        ),
        (
            "rsync -aX",
            format!("rsync -aX '{o}/rsync.img' '{p}/rsync-new.img'"),
            "pithos/rsync-new.img",
        ),
        (
            "tar --xattrs",
            format!("tar --xattrs -C '{p}/untar-all' -xf '{o}/rt.tar'"),
            "pithos/untar-all/rt.img",
        ),
    ] {
        let (rc, err) = status_and_stderr(&cmd);
        assert_eq!((rc, err.as_str()), (0, ""), "{what} into a new file");
        assert_eq!(api.get(path), pattern(1 << 20, 21), "{what}");
        let got = attrs(&m.path(path));
        assert!(got.contains("user.meta.color=\"blue\""), "{what}: {got}");
        let location = format!("/{path}");
        let list: Value = api.img("GET", "images/detail").send().unwrap().json().unwrap();
        let copies: Vec<&Value> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["location"].as_str().is_some_and(|l| l.ends_with(&location)))
            .collect();
        assert_eq!(copies.len(), 1, "{what}: one image at {location}: {list:#}");
        assert_eq!(copies[0]["name"], "Round Trip", "{what}");
        assert_eq!(copies[0]["properties"]["os"], "linux", "{what}");
        assert_ne!(copies[0]["id"], id.as_str(), "{what}: an image of its own");
        assert_eq!(uuid(&api, path), copies[0]["id"].as_str().unwrap(), "{what}");
    }
    let list: Value = api.img("GET", "images/detail").send().unwrap().json().unwrap();
    let mine: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["owner"] == api.user.uuid.as_str())
        .collect();
    assert_eq!(
        mine.len(),
        4,
        "the source and three copies, none left at rsync's temporary name: {mine:#?}"
    );
    let log = m.log()[log_before..].to_string();
    assert!(!log.contains("errno="), "the copies failed nowhere:\n{log}");

    // Another process than the copy's (setfattr after it): another value of a read-only
    // attribute is still refused, on a file just copied in as on one made elsewhere.
    for f in [m.path("pithos/cp-new.img"), img.clone()] {
        let f = f.display();
        let (rc, err) = status_and_stderr(&format!("setfattr -n user.pithos.uuid -v other '{f}'"));
        assert!(rc != 0 && err.contains("not permitted"), "{f}: {rc} {err}");
    }
    api.put("pithos/theirs.img", b"made elsewhere");
    let theirs = m.path("pithos/theirs.img").display().to_string();
    let (rc, err) = status_and_stderr(&format!("setfattr -n user.pithos.uuid -v other '{theirs}'"));
    assert!(rc != 0 && err.contains("not permitted"), "{rc} {err}");
    let their_id = uuid(&api, "pithos/theirs.img");
    let (rc, err) = status_and_stderr(&format!("setfattr -n user.pithos.uuid -v {their_id} '{theirs}'"));
    assert_eq!((rc, err.as_str()), (0, ""), "the value it has is fine");
}

/// Replaces `from` by `to` in `file` with nano (no batch mode: driven through tmux), then
/// writes the file out and quits.
fn nano_replace(file: &Path, from: &str, to: &str) {
    let session = format!("imgfs-nano-{}", std::process::id());
    let tmux = |args: &[&str]| {
        let out = std::process::Command::new("tmux")
            .args(args)
            .env("TERM", "xterm")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let screen_shows = |text: &str| {
        for _ in 0..500 {
            if tmux(&["capture-pane", "-p", "-t", &session]).contains(text) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "nano never showed {text:?}:\n{}",
            tmux(&["capture-pane", "-p", "-t", &session])
        );
    };
    // A terminal type every machine has terminfo for, whatever the caller's TERM (CI has none).
    let cmd = format!("TERM=xterm nano --ignorercfiles '{}'", file.display());
    tmux(&["new-session", "-d", "-s", &session, "-x", "150", "-y", "40", &cmd]);
    screen_shows(from);
    tmux(&["send-keys", "-t", &session, "C-\\"]);
    screen_shows("Search (to replace)");
    tmux(&["send-keys", "-t", &session, "-l", from]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    screen_shows("Replace with");
    tmux(&["send-keys", "-t", &session, "-l", to]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    screen_shows("Replace this instance");
    tmux(&["send-keys", "-t", &session, "a"]);
    screen_shows("Replaced 1 occurrence");
    tmux(&["send-keys", "-t", &session, "C-o"]);
    screen_shows("File Name to Write");
    tmux(&["send-keys", "-t", &session, "Enter"]);
    screen_shows("Wrote");
    tmux(&["send-keys", "-t", &session, "C-x"]);
    // nano has quit when its session is gone (and with it, maybe, the tmux server).
    for _ in 0..500 {
        let alive = std::process::Command::new("tmux")
            .args(["has-session", "-t", &session])
            .output()
            .unwrap()
            .status
            .success();
        if !alive {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("nano did not quit");
}

/// `setfattr` that must fail; returns what it printed.
fn setfattr_fails(args: &str) -> String {
    let out = std::process::Command::new("bash")
        .args(["-c", &format!("setfattr {args}")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "setfattr {args} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn xattrs_read_and_change_the_registration(peer: Peer) {
    let s = Cloud::start(peer);
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    let m = Mount::new(&s, &u, "");
    let k = Kamaki::new(&s, &u);
    let img = m.path("pithos/x.img");
    std::fs::write(&img, pattern(1 << 20, 10)).unwrap();
    let id = uuid(&api, "pithos/x.img");
    std::fs::write(
        m.path("pithos/x.img.meta"),
        br#"{"name": "X", "properties": {"os": "linux"}}"#,
    )
    .unwrap();

    // Read: the live registry values, on N and on N.meta.
    let all = sh(&format!("getfattr -d -m user.image '{}'", img.display()));
    assert!(all.contains(&format!("user.image.id=\"{id}\"")), "{all}");
    assert!(
        all.contains("user.image.name=\"X\"") && all.contains("user.image.properties.os=\"linux\""),
        "{all}"
    );
    assert_eq!(getfattr(&m.path("pithos/x.img.meta"), "user.image.name"), "X");
    assert_eq!(getfattr(&img, "user.image.is-public"), "false");
    // getfattr -d lists, then reads every attribute twice (size, value): one look at the
    // object and the registry serves them all, not a few requests per attribute.
    let requests = || s.requests().len();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let before = requests();
    let dump = sh(&format!("getfattr -d -m - '{}'", img.display()));
    std::thread::sleep(std::time::Duration::from_millis(50));
    let cost = requests() - before;
    let attrs = dump.lines().filter(|l| l.starts_with("user.")).count();
    assert!(attrs >= 18 && dump.contains("user.pithos.uuid="), "{dump}");
    assert!(cost <= 16, "getfattr -d of {attrs} attributes cost {cost} requests");

    // Rename and publish, set and delete properties: the registry follows, kamaki sees it,
    // and the stored metafile is rewritten to agree.
    let set = |n: &str, v: &str| sh(&format!("setfattr -n {n} -v '{v}' '{}'", img.display()));
    set("user.image.name", "X Renamed");
    set("user.image.is-public", "true");
    set("user.image.properties.users", "root");
    sh(&format!("setfattr -x user.image.properties.os '{}'", img.display()));
    let d = detail(&api, "X Renamed").expect("renamed by setfattr");
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["is_public"], true);
    assert_eq!(d["properties"], serde_json::json!({"users": "root"}));
    let out = k.ok(&["image", "info", &id]);
    assert!(
        out.contains("name: X Renamed") && out.contains("users: root") && !out.contains("os: linux"),
        "{out}"
    );
    let stored: Value = serde_json::from_slice(&api.get("pithos/x.img.meta")).unwrap();
    assert_eq!(stored["name"], "X Renamed");
    assert_eq!(stored["is-public"], "True");

    // Bad values and read-only attributes are refused, the registry unchanged.
    assert!(setfattr_fails(&format!("-n user.image.id -v other '{}'", img.display())).contains("not permitted"));
    assert!(
        setfattr_fails(&format!("-n user.image.disk-format -v qcow9 '{}'", img.display())).contains("Invalid argument")
    );
    assert!(
        setfattr_fails(&format!("-n user.image.is-public -v maybe '{}'", img.display())).contains("Invalid argument")
    );
    assert!(setfattr_fails(&format!("-x user.image.name '{}'", img.display())).contains("not permitted"));
    assert_eq!(detail(&api, "X Renamed").unwrap()["is_public"], true);

    // Directories list no image attributes and no error: the account root nothing, a
    // container its policy and usage.
    assert_eq!(sh(&format!("getfattr -d -m - '{}'", m.dir.display())), "");
    let listed = sh(&format!("getfattr -d -m - '{}'", m.path("pithos").display()));
    assert!(
        listed.contains("user.pithos.versioning=\"auto\"")
            && !listed.contains("user.image")
            && !listed.contains("imgfs"),
        "{listed}"
    );

    // Setting a name on an unregistered file registers it, without a metafile; its
    // metafile then shows up generated.
    let plain = m.path("pithos/plain.img");
    std::fs::write(&plain, pattern(4096, 11)).unwrap();
    let none = std::process::Command::new("getfattr")
        .args(["-n", "user.image.name"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&none.stderr).contains("No such attribute"));
    sh(&format!("setfattr -n user.image.name -v Fresh '{}'", plain.display()));
    assert_eq!(
        detail(&api, "Fresh").unwrap()["id"],
        uuid(&api, "pithos/plain.img").as_str()
    );
    assert_eq!(api.head("pithos/plain.img.meta").status(), 404, "no metafile stored");
    let live: Value = serde_json::from_slice(&std::fs::read(m.path("pithos/plain.img.meta")).unwrap()).unwrap();
    assert_eq!(live["name"], "Fresh");
}
