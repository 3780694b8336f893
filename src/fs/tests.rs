//! The core against the in-memory storage of `fake.rs`, with request counters and fault
//! injection: dedup (no block sent twice), patching only touched blocks, staging spill,
//! truncation, failed uploads and commits that keep the data for a retry, short hashmaps,
//! stalled requests.

use super::fake::{Faulty, Mem, Op};
use super::*;
use crate::client::{AccountStat, ErrorKind};
use std::sync::atomic::Ordering;

type TestFs = Fs<Faulty<Arc<Mem>>>;

fn fs_with(opts: FsOptions) -> (Arc<Mem>, TestFs) {
    let mem = Arc::new(Mem::default());
    let fs = Fs::new(
        Faulty::new(mem.clone()),
        FsOptions {
            staging_dir: std::env::temp_dir(),
            ..opts
        },
    );
    (mem, fs)
}

/// Pseudo-random bytes that do not repeat between blocks.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

async fn container_ino(fs: &TestFs) -> Ino {
    fs.lookup(ROOT, "c").await.unwrap().ino
}

async fn write_file(fs: &TestFs, dir: Ino, name: &str, bytes: &[u8], chunk: usize) {
    let (_, fh) = fs.create(dir, name, libc::O_WRONLY).await.unwrap();
    for (i, c) in bytes.chunks(chunk).enumerate() {
        fs.write(fh, (i * chunk) as u64, c).await.unwrap();
    }
    fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn statfs_reports_the_quota_and_1_pib_for_no_limit() {
    let (mem, fs) = fs_with(FsOptions::default());
    let stat = |quota, bytes_used| *mem.account.lock().unwrap() = AccountStat { bytes_used, quota };
    const PIB_IN_UNITS: u64 = (1 << 50) / 4096;
    stat(0, 4096 * 10);
    assert_eq!(fs.statfs().await.unwrap(), (PIB_IN_UNITS, PIB_IN_UNITS - 10));
    // The original's "no limit" is Astakos' infinity, 2^63-1.
    stat(crate::api::pithos::UNLIMITED_QUOTA, 4096 * 10);
    assert_eq!(fs.statfs().await.unwrap(), (PIB_IN_UNITS, PIB_IN_UNITS - 10));
    stat(4096 * 100, 4096 * 30);
    assert_eq!(fs.statfs().await.unwrap(), (100, 70));
    // Over quota (a server that charged late): nothing free, never an underflow.
    stat(4096 * 100, 4096 * 130);
    assert_eq!(fs.statfs().await.unwrap(), (100, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_write_then_rewrite_sends_each_block_once() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let bytes = data(3 * BLOCK_SIZE + 1000, 1);
    write_file(&fs, dir, "f", &bytes, 128 << 10).await;
    assert_eq!(mem.content("f"), bytes);
    assert_eq!(mem.uploads.load(Ordering::SeqCst), 4);
    assert_eq!(mem.puts.load(Ordering::SeqCst), 1, "one commit per close");
    // the same content again: nothing uploaded
    let a = fs.lookup(dir, "f").await.unwrap();
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    for (i, c) in bytes.chunks(1 << 20).enumerate() {
        fs.write(fh, (i << 20) as u64, c).await.unwrap();
    }
    fs.release(fh).await.unwrap();
    assert_eq!(mem.uploads.load(Ordering::SeqCst), 4, "a re-copy sends no blocks");
    assert_eq!(mem.content("f"), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_write_uploads_only_the_touched_block() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let mut bytes = data(5 * BLOCK_SIZE, 2);
    write_file(&fs, dir, "img", &bytes, 1 << 20).await;
    let before = mem.uploads.load(Ordering::SeqCst);
    let a = fs.lookup(dir, "img").await.unwrap();
    let fh = fs.open(a.ino, libc::O_RDWR).await.unwrap();
    let at = 2 * BLOCK_SIZE + 100;
    fs.write(fh, at as u64, b"patched").await.unwrap();
    bytes[at..at + 7].copy_from_slice(b"patched");
    // read-back through the same handle sees the patch
    assert_eq!(fs.read(fh, at as u64, 7).await.unwrap(), &b"patched"[..]);
    fs.release(fh).await.unwrap();
    assert_eq!(mem.uploads.load(Ordering::SeqCst) - before, 1);
    assert_eq!(mem.content("img"), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_writes_spill_to_staging_and_commit_whole() {
    let (mem, fs) = fs_with(FsOptions {
        max_dirty_blocks: 2,
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let (_, fh) = fs.create(dir, "sparse", libc::O_WRONLY).await.unwrap();
    let mut want = vec![0u8; 6 * BLOCK_SIZE + 10];
    // backwards, one small write per block: nothing completes a block, so all stay dirty
    for b in (0..7).rev() {
        let at = b * BLOCK_SIZE + 5;
        fs.write(fh, at as u64, &[b as u8 + 1; 5]).await.unwrap();
        want[at..at + 5].copy_from_slice(&[b as u8 + 1; 5]);
    }
    fs.release(fh).await.unwrap();
    assert_eq!(mem.content("sparse"), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_down_and_up_and_zero_blocks() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let bytes = data(2 * BLOCK_SIZE + 50, 3);
    write_file(&fs, dir, "t", &bytes, 1 << 20).await;
    let a = fs.lookup(dir, "t").await.unwrap();
    fs.set_size(a.ino, None, 1000).await.unwrap();
    assert_eq!(mem.content("t"), &bytes[..1000]);
    let uploads = mem.uploads.load(Ordering::SeqCst);
    fs.set_size(a.ino, None, 3 * BLOCK_SIZE as u64).await.unwrap();
    let got = mem.content("t");
    assert_eq!(&got[..1000], &bytes[..1000]);
    assert!(got[1000..].iter().all(|&b| b == 0));
    assert_eq!(
        mem.uploads.load(Ordering::SeqCst),
        uploads,
        "growing by zeros uploads nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_upload_fails_close_and_loses_nothing() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let bytes = data(BLOCK_SIZE + 10, 4);
    let (_, fh) = fs.create(dir, "x", libc::O_WRONLY).await.unwrap();
    fs.storage().fail_next(Op::UploadBlock, 2, ErrorKind::Unavailable);
    fs.write(fh, 0, &bytes).await.unwrap();
    let e = fs.flush(fh, || false).await.unwrap_err();
    assert_eq!(e.errno, libc::EIO);
    assert!(
        mem.objects
            .lock()
            .unwrap()
            .get(&("c".to_string(), "x".to_string()))
            .is_none(),
        "nothing half-written"
    );
    // the data is still held: a second flush (fsync, close) commits it
    fs.flush(fh, || false).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(mem.content("x"), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_path_pins_a_version_and_uses_the_cache() {
    // A small cache, so the blocks this test writes are not all still cached from the upload.
    let (mem, fs) = fs_with(FsOptions {
        cache_blocks: 1,
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let old = data(3 * BLOCK_SIZE + 3, 5);
    write_file(&fs, dir, "r", &old, 1 << 20).await;
    let a = fs.lookup(dir, "r").await.unwrap();
    let read_all = |fh: u64| {
        let fs = &fs;
        async move {
            let mut got = vec![];
            let mut off = 0;
            loop {
                let c = fs.read(fh, off, 128 << 10).await.unwrap();
                if c.is_empty() {
                    break;
                }
                off += c.len() as u64;
                got.extend(c);
            }
            got
        }
    };
    let reader = fs.open(a.ino, libc::O_RDONLY).await.unwrap();
    assert_eq!(fs.read(reader, 0, 10).await.unwrap(), old[..10]);
    // another writer commits a new version while the reader is open
    let new = data(2 * BLOCK_SIZE, 6);
    let w = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.write(w, 0, &new).await.unwrap();
    fs.release(w).await.unwrap();
    assert_eq!(
        read_all(reader).await,
        old,
        "the open reader keeps the version it opened"
    );
    fs.release(reader).await.unwrap();
    // a new open sees the new version; its blocks are fetched once each, the repeat from cache
    let fresh = fs.open(a.ino, libc::O_RDONLY).await.unwrap();
    let before = mem.reads.load(Ordering::SeqCst);
    let mut seen = vec![];
    for i in 0..(BLOCK_SIZE / (128 << 10)) {
        seen.extend(fs.read(fresh, (i * (128 << 10)) as u64, 128 << 10).await.unwrap());
    }
    assert_eq!(seen, new[..BLOCK_SIZE]);
    assert!(
        mem.reads.load(Ordering::SeqCst) - before <= 3,
        "32 reads of one block cost at most the block and its prefetch"
    );
    fs.release(fresh).await.unwrap();
    // errors map to errno
    assert_eq!(fs.lookup(dir, "nope").await.unwrap_err().errno, libc::ENOENT);
    assert_eq!(fs.lookup(ROOT, "other").await.unwrap_err().errno, libc::ENOENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_turns_corrupt_blocks_into_eio_and_caches_nothing_bad() {
    let (_mem, fs) = fs_with(FsOptions {
        cache_blocks: 1,
        verify_reads: true,
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let bytes = data(2 * BLOCK_SIZE, 9);
    write_file(&fs, dir, "v", &bytes, 1 << 20).await;
    let ino = fs.lookup(dir, "v").await.unwrap().ino;
    fs.storage().corrupt_reads(true);
    let fh = fs.open(ino, libc::O_RDONLY).await.unwrap();
    // The cache holds one block: at least one of the two is fetched, corrupt.
    let mut errs = 0;
    for b in 0..2u64 {
        if let Err(e) = fs.read(fh, b * BLOCK_SIZE as u64, 16).await {
            assert_eq!(e.errno, libc::EIO);
            errs += 1;
        }
    }
    assert!(
        errs >= 1,
        "a corrupt block fetched with verify_reads must fail the read"
    );
    fs.storage().corrupt_reads(false);
    for b in 0..2usize {
        let got = fs.read(fh, (b * BLOCK_SIZE) as u64, 16).await.unwrap();
        assert_eq!(
            got,
            bytes[b * BLOCK_SIZE..b * BLOCK_SIZE + 16],
            "the failed fetch left nothing in the cache"
        );
    }
    fs.release(fh).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rereading_an_evicted_uploaded_block_commits_early_instead_of_failing() {
    let (mem, fs) = fs_with(FsOptions {
        cache_blocks: 1,
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let mut bytes = data(4 * BLOCK_SIZE, 11);
    let (_, fh) = fs.create(dir, "e", libc::O_RDWR).await.unwrap();
    let uploads = |n: usize| {
        let mem = mem.clone();
        async move {
            for _ in 0..500 {
                if mem.uploads.load(Ordering::SeqCst) >= n {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("uploads did not finish");
        }
    };
    for (i, c) in bytes[..3 * BLOCK_SIZE].chunks(1 << 20).enumerate() {
        fs.write(fh, (i << 20) as u64, c).await.unwrap();
    }
    uploads(3).await;
    // The next full block reaps the finished uploads: blocks 0..3 are then only on the server
    // (in no version) and the one-block cache holds at most one of them.
    fs.write(fh, 3 * BLOCK_SIZE as u64, &bytes[3 * BLOCK_SIZE..])
        .await
        .unwrap();
    uploads(4).await;
    assert_eq!(mem.puts.load(Ordering::SeqCst), 0);
    let got = fs.read(fh, 100, 1000).await.unwrap();
    assert_eq!(got, bytes[100..1100], "block 0 reads back through the writer");
    // and a partial rewrite of block 0 lands
    fs.write(fh, 5, b"again").await.unwrap();
    bytes[5..10].copy_from_slice(b"again");
    fs.release(fh).await.unwrap();
    assert_eq!(mem.content("e"), bytes);
    assert!(
        mem.puts.load(Ordering::SeqCst) >= 2,
        "an early commit, then the final one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_and_never_seen_inodes_leave_the_table() {
    struct Plus(usize);
    impl DirSink for Plus {
        fn add(&mut self, _: Ino, _: u64, _: &str, _: &Attr) -> bool {
            self.0 += 1;
            false
        }
        fn gives_entries(&self) -> bool {
            true
        }
    }
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    write_file(&fs, dir, "kept", b"kept", 4).await;
    let first = fs.lookup(dir, "kept").await.unwrap().ino;
    // create counted one entry, the lookup another: both must be forgotten before it goes
    fs.forget(first, 1);
    assert_eq!(fs.lookup(dir, "kept").await.unwrap().ino, first);
    fs.forget(first, 2);
    let again = fs.lookup(dir, "kept").await.unwrap().ino;
    assert_ne!(
        again, first,
        "a forgotten inode is dropped, a new lookup makes a new one"
    );
    // A listing of 20k names remembers them all; past the threshold the ones the kernel was
    // never given are swept, the one it holds stays.
    {
        let mut objs = mem.objects.lock().unwrap();
        for i in 0..20_000 {
            objs.insert(("c".into(), format!("n{i:05}")), (0, vec![], 1, "text/plain".into()));
        }
    }
    let fh = fs.opendir(dir).await.unwrap();
    fs.release_handle(fh);
    assert!(fs.inode_count() < 20_000, "table swept: {} inodes", fs.inode_count());
    assert_eq!(
        fs.lookup(dir, "kept").await.unwrap().ino,
        again,
        "held inodes survive the sweep"
    );
    // readdirplus hands out entries: each counts, swept or not
    let fh = fs.opendir(dir).await.unwrap();
    let mut sink = Plus(0);
    fs.readdir(dir, fh, 0, &mut sink).await.unwrap();
    fs.release_handle(fh);
    assert_eq!(sink.0, 20_003, "., .., kept and 20k names");
    let ino = fs.lookup(dir, "n00001").await.unwrap().ino;
    fs.forget(ino, 2);
    assert_ne!(fs.lookup(dir, "n00001").await.unwrap().ino, ino);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_answers_the_same_process_until_something_changes() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    write_file(&fs, dir, "d.img.meta", br#"{"name": "Before"}"#, 2).await;
    write_file(&fs, dir, "d.img", b"bytes", 5).await;
    let ino = fs.lookup(dir, "d.img").await.unwrap().ino;
    let name = |pid| {
        let fs = &fs;
        async move { String::from_utf8(fs.getxattr(ino, "user.image.name", pid).await.unwrap()).unwrap() }
    };
    let rename_elsewhere = |to: &str| {
        mem.images
            .lock()
            .unwrap()
            .get_mut(&("c".into(), "d.img".into()))
            .unwrap()
            .name = to.into();
    };
    assert!(fs
        .listxattr(ino, 7)
        .await
        .unwrap()
        .contains(&"user.image.name".to_string()));
    // Changed elsewhere: the listing process reads what it listed, any other process the news.
    rename_elsewhere("Elsewhere");
    assert_eq!(name(7).await, "Before");
    assert_eq!(name(8).await, "Elsewhere");
    assert_eq!(name(0).await, "Elsewhere", "no process known, no snapshot");
    // A change through the mount ends the snapshot at once.
    fs.listxattr(ino, 7).await.unwrap();
    fs.setxattr(ino, "user.image.name", b"Set", 0).await.unwrap();
    assert_eq!(name(7).await, "Set");
    fs.listxattr(ino, 7).await.unwrap();
    write_file(&fs, dir, "d.img.meta", br#"{"name": "Saved"}"#, 3).await;
    assert_eq!(name(7).await, "Saved");
    // And it lasts moments only.
    fs.listxattr(ino, 7).await.unwrap();
    rename_elsewhere("Later");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(name(7).await, "Later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmount_ends_grace_periods() {
    let (mem, fs) = fs_with(FsOptions {
        meta_grace: Duration::from_secs(3600),
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let registered = |name: &str| mem.images.lock().unwrap().contains_key(&("c".into(), name.into()));
    for name in ["a.img", "b.img"] {
        write_file(&fs, dir, &format!("{name}.meta"), b"{}", 2).await;
        write_file(&fs, dir, name, b"bytes", 5).await;
        assert!(registered(name));
    }
    fs.rename(dir, "a.img.meta", dir, "a.json").await.unwrap();
    fs.end_grace_periods().await;
    assert!(!registered("a.img"), "moved away, unregistered at unmount");
    assert!(registered("b.img"), "nothing else changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metafiles_register_and_unregister() {
    let grace = Duration::from_millis(300);
    let (mem, fs) = fs_with(FsOptions {
        meta_grace: grace,
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let image = |mem: &Mem| {
        mem.images
            .lock()
            .unwrap()
            .get(&("c".into(), "disk.img".into()))
            .cloned()
    };
    // the metafile first (cp -r order): stored, registered once the image is committed
    write_file(
        &fs,
        dir,
        "disk.img.meta",
        br#"{"name": "Disk", "properties": {"OS": "linux"}}"#,
        7,
    )
    .await;
    assert!(image(&mem).is_none());
    write_file(&fs, dir, "disk.img", b"bytes", 5).await;
    let img = image(&mem).expect("registered when the image was committed");
    assert_eq!(img.name, "Disk");
    assert_eq!(img.properties["os"], "linux");
    // re-registration replaces everything
    write_file(&fs, dir, "disk.img.meta", br#"{"is-public": "True"}"#, 100).await;
    let img = image(&mem).unwrap();
    assert_eq!(
        (img.name.as_str(), img.is_public, img.properties.len()),
        ("disk.img", true, 0)
    );
    // a bad metafile: EINVAL at close, registry unchanged, bytes kept, reason readable
    let (_, fh) = fs.create(dir, "disk.img.meta", libc::O_WRONLY).await.unwrap();
    fs.write(fh, 0, br#"{"disk-format": "qcow9"}"#).await.unwrap();
    assert_eq!(fs.release(fh).await.unwrap_err().errno, libc::EINVAL);
    assert!(image(&mem).unwrap().is_public);
    assert_eq!(mem.content("disk.img.meta"), br#"{"disk-format": "qcow9"}"#);
    let meta_ino = fs.lookup(dir, "disk.img.meta").await.unwrap().ino;
    let why = fs.metafile_error(meta_ino).unwrap().unwrap();
    assert!(why.contains("qcow9"), "{why}");
    assert_eq!(
        fs.metafile_error(fs.lookup(dir, "disk.img").await.unwrap().ino)
            .unwrap(),
        None
    );
    // a good one clears the error
    write_file(&fs, dir, "disk.img.meta", b"{}", 2).await;
    assert_eq!(fs.metafile_error(meta_ino).unwrap().unwrap(), "");
    // Renamed away (an editor's backup), the name is free as on any filesystem, and the
    // image stays registered while a new metafile is written within the grace period.
    fs.rename(dir, "disk.img.meta", dir, "disk.img.meta~").await.unwrap();
    assert!(image(&mem).is_some(), "a backup rename is no unregister");
    assert_eq!(fs.lookup(dir, "disk.img.meta").await.unwrap_err().errno, libc::ENOENT);
    write_file(&fs, dir, "disk.img.meta", br#"{"name": "saved"}"#, 4).await;
    tokio::time::sleep(grace * 2).await;
    assert_eq!(
        image(&mem).expect("still registered after the grace period").name,
        "saved"
    );
    fs.unlink(dir, "disk.img.meta~").await.unwrap();
    assert!(image(&mem).is_some(), "removing the backup is no unregister");
    // A metafile moved away for good unregisters once the grace period is over.
    fs.rename(dir, "disk.img.meta", dir, "kept.json").await.unwrap();
    tokio::time::sleep(grace / 3).await;
    assert!(image(&mem).is_some(), "not during the grace period");
    tokio::time::sleep(grace).await;
    assert!(image(&mem).is_none(), "unregistered after it");
    fs.rename(dir, "kept.json", dir, "disk.img.meta").await.unwrap();
    assert_eq!(image(&mem).expect("moving it back registers").name, "saved");
    // Generated-only (registered elsewhere, no stored metafile): a rename stores what it
    // reads as at the new name.
    fs.unlink(dir, "disk.img.meta").await.unwrap();
    let reg = crate::api::metafile::Registration {
        name: Some("elsewhere".into()),
        ..Default::default()
    };
    crate::client::Registry::register(&mem, "c", "disk.img", &reg)
        .await
        .unwrap();
    fs.rename(dir, "disk.img.meta", dir, "disk.img.meta~").await.unwrap();
    assert!(String::from_utf8(mem.content("disk.img.meta~"))
        .unwrap()
        .contains("\"elsewhere\""));
    write_file(&fs, dir, "disk.img.meta", br#"{"name": "after"}"#, 4).await;
    fs.unlink(dir, "disk.img.meta~").await.unwrap();
    assert_eq!(image(&mem).unwrap().name, "after");
    // rm refused by the registry: EACCES, nothing deleted
    fs.storage().fail_always(Op::Unregister, ErrorKind::Forbidden);
    assert_eq!(fs.unlink(dir, "disk.img.meta").await.unwrap_err().errno, libc::EACCES);
    assert!(image(&mem).is_some());
    assert_eq!(mem.content("disk.img.meta"), br#"{"name": "after"}"#);
    fs.storage().heal();
    // rm N.meta unregisters, N stays
    fs.unlink(dir, "disk.img.meta").await.unwrap();
    assert!(image(&mem).is_none());
    assert_eq!(mem.content("disk.img"), b"bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_unlink_and_mkdir() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    write_file(&fs, dir, "a", b"hello", 5).await;
    fs.rename(dir, "a", dir, "b").await.unwrap();
    assert_eq!(mem.content("b"), b"hello");
    assert_eq!(fs.lookup(dir, "a").await.unwrap_err().errno, libc::ENOENT);
    fs.mkdir(dir, "d").await.unwrap();
    assert_eq!(
        mem.objects.lock().unwrap()[&("c".to_string(), "d".to_string())].3,
        "application/directory"
    );
    assert_eq!(fs.mkdir(dir, "d").await.unwrap_err().errno, libc::EEXIST);
    fs.unlink(dir, "b").await.unwrap();
    assert!(mem
        .objects
        .lock()
        .unwrap()
        .get(&("c".to_string(), "b".to_string()))
        .is_none());
    assert_eq!(fs.create(dir, "bad/name", 0).await.unwrap_err().errno, libc::EINVAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_file_range_is_a_server_side_copy() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let bytes = data(BLOCK_SIZE + 5, 7);
    write_file(&fs, dir, "src", &bytes, 1 << 20).await;
    let uploads = mem.uploads.load(Ordering::SeqCst);
    let a = fs.lookup(dir, "src").await.unwrap();
    let fin = fs.open(a.ino, libc::O_RDONLY).await.unwrap();
    let (_, fout) = fs.create(dir, "dst", libc::O_WRONLY).await.unwrap();
    assert_eq!(
        fs.copy_file_range(fin, 0, fout, 0, u64::MAX >> 2).await.unwrap(),
        bytes.len() as u64
    );
    assert_eq!(
        fs.copy_file_range(fin, bytes.len() as u64, fout, bytes.len() as u64, 1 << 30)
            .await
            .unwrap(),
        0
    );
    fs.release(fout).await.unwrap();
    fs.release(fin).await.unwrap();
    assert_eq!(mem.content("dst"), bytes);
    assert_eq!(mem.copies.load(Ordering::SeqCst), 1);
    assert_eq!(
        mem.uploads.load(Ordering::SeqCst),
        uploads,
        "no data moved through the client"
    );
    // a partial copy into the middle of a file is not a whole-object copy: the kernel falls back
    let b = fs.lookup(dir, "dst").await.unwrap();
    let fout = fs.open(b.ino, libc::O_RDWR).await.unwrap();
    let fin = fs.open(a.ino, libc::O_RDONLY).await.unwrap();
    assert_eq!(
        fs.copy_file_range(fin, 0, fout, 10, 100).await.unwrap_err().errno,
        libc::EOPNOTSUPP
    );
    fs.release(fout).await.unwrap();
    fs.release(fin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sequential_write_holds_only_the_blocks_in_flight() {
    let (mem, fs) = fs_with(FsOptions {
        uploads_in_flight: 3,
        ..FsOptions::default()
    });
    fs.storage()
        .delay(Op::UploadBlock, std::time::Duration::from_millis(20));
    let dir = container_ino(&fs).await;
    let (_, fh) = fs.create(dir, "long", libc::O_WRONLY).await.unwrap();
    let bytes = data(40 * BLOCK_SIZE, 9);
    let mut peak = 0;
    for (i, c) in bytes.chunks(1 << 20).enumerate() {
        fs.write(fh, (i << 20) as u64, c).await.unwrap();
        let h = fs.handle(fh).unwrap();
        if let Handle::Write(w) = h.as_ref() {
            peak = peak.max(w.state.lock().await.buffered_blocks());
        }
    }
    fs.release(fh).await.unwrap();
    assert_eq!(mem.content("long"), bytes);
    // In flight (3), finished ones waiting behind a slower one to be reaped in order, one
    // waiting for a slot and the block being filled: a few, never the whole file.
    assert!(peak <= 2 * 3 + 2, "peak {peak} blocks buffered for a 40-block file");
}

/// Shells open, `dup2` and close the first descriptor before the command writes: that flush
/// of a file emptied at open, while the shell still holds it, commits nothing; what is
/// written then commits once. A program closing its last descriptor commits at the close
/// (which sees a commit's error); `: > f` ends as one empty version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_save_commits_one_version() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let puts = || mem.puts.load(Ordering::SeqCst);
    let (held, last) = (|| true, || false);

    // `echo x > new`: created, the duplicate closed, written, the last close.
    let (a, fh) = fs.create(dir, "new", libc::O_WRONLY).await.unwrap();
    fs.flush(fh, held).await.unwrap();
    assert_eq!(puts(), 0, "the duplicate's close commits nothing");
    fs.write(fh, 0, b"x\n").await.unwrap();
    fs.flush(fh, || panic!("asked only while nothing is written"))
        .await
        .unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!((puts(), mem.content("new")), (1, b"x\n".to_vec()));

    // `echo y > new` over it: the server keeps "x" until the write, the mount says empty.
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.flush(fh, held).await.unwrap();
    assert_eq!((puts(), mem.content("new")), (1, b"x\n".to_vec()));
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, 0, "answered as truncated");
    fs.write(fh, 0, b"y\n").await.unwrap();
    fs.flush(fh, last).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!((puts(), mem.content("new")), (2, b"y\n".to_vec()));

    // `: > new` in bash: the redirect's duplicate, then stdout restored, then the release.
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.flush(fh, held).await.unwrap();
    assert_eq!(puts(), 2);
    fs.flush(fh, last).await.unwrap();
    assert_eq!((puts(), mem.content("new")), (3, vec![]), "one empty version");
    fs.release(fh).await.unwrap();
    assert_eq!(puts(), 3);

    // `open(O_TRUNC); close()`: committed by the close, not left to the release.
    write_file(&fs, dir, "new", b"z", 1).await;
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.flush(fh, last).await.unwrap();
    assert_eq!((puts(), mem.content("new")), (5, vec![]));
    fs.release(fh).await.unwrap();

    // Still held and never written: the release commits.
    write_file(&fs, dir, "new", b"z", 1).await;
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.flush(fh, held).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!((puts(), mem.content("new")), (7, vec![]));

    // fsync asks for it now.
    write_file(&fs, dir, "new", b"z", 1).await;
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.fsync(fh).await.unwrap();
    assert_eq!((puts(), mem.content("new")), (9, vec![]));
    fs.release(fh).await.unwrap();
    assert_eq!(puts(), 9, "nothing changed since the fsync");

    // A rename of a file emptied and not yet committed moves the empty content.
    write_file(&fs, dir, "new", b"z", 1).await;
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.flush(fh, held).await.unwrap();
    fs.rename(dir, "new", dir, "moved").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(mem.content("moved"), Vec::<u8>::new());
    assert!(!mem
        .objects
        .lock()
        .unwrap()
        .contains_key(&("c".to_string(), "new".to_string())));
}

/// A rewrite is a PUT, which replaces an object's user metadata: the commit sends the
/// current version's again, so `user.meta.*` outlives the content as a file's attributes do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_keeps_the_user_metadata() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    write_file(&fs, dir, "f", b"one", 3).await;
    let a = fs.lookup(dir, "f").await.unwrap();
    fs.setxattr(a.ino, "user.meta.color", b"blue", 0).await.unwrap();
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.write(fh, 0, b"two").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(mem.content("f"), b"two");
    assert_eq!(fs.getxattr(a.ino, "user.meta.color", 0).await.unwrap(), b"blue");
}

/// What one edit of an existing file returned, step by step, under one injected failure.
#[derive(Debug)]
struct EditRun {
    open: FsResult<()>,
    write: FsResult<()>,
    first_fsync: FsResult<()>,
    /// Whether the server held the edit right after the first fsync.
    new_after_first: bool,
    /// After the storage healed, with the same handle (a retry).
    second_fsync: FsResult<()>,
    /// The storage calls the edit made, by operation.
    calls: Vec<(Op, usize)>,
}

const OLD_LEN: usize = 3 * BLOCK_SIZE + 100;

/// `f` holds `data(OLD_LEN, 1)`; an edit opens it in place and overwrites 2 blocks' worth
/// from the middle of block 0 (three blocks touched, two of them partly), then fsyncs; the
/// storage heals; the edit fsyncs again. `fault` is armed once `f` is stored. Returns the
/// storage, the run and the content the edit means.
async fn edit_under(fault: impl FnOnce(&Faulty<Arc<Mem>>)) -> (Arc<Mem>, EditRun, Vec<u8>) {
    // One cached block: the partly written blocks' old bytes come from the storage.
    let (mem, fs) = fs_with(FsOptions {
        cache_blocks: 1,
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let old = data(OLD_LEN, 1);
    write_file(&fs, dir, "f", &old, 1 << 20).await;
    let ino = fs.lookup(dir, "f").await.unwrap().ino;
    let mut new = old.clone();
    let patch = data(2 * BLOCK_SIZE, 2);
    new[BLOCK_SIZE / 2..BLOCK_SIZE / 2 + patch.len()].copy_from_slice(&patch);
    let before: Vec<usize> = Op::ALL.iter().map(|&op| fs.storage().calls(op)).collect();
    fault(fs.storage());
    let mut run = EditRun {
        open: Ok(()),
        write: Ok(()),
        first_fsync: Ok(()),
        new_after_first: false,
        second_fsync: Ok(()),
        calls: vec![],
    };
    match fs.open(ino, libc::O_RDWR).await {
        Ok(fh) => {
            run.write = fs.write(fh, (BLOCK_SIZE / 2) as u64, &patch).await.map(|_| ());
            run.first_fsync = fs.fsync(fh).await;
            run.new_after_first = mem.content("f") == new;
            fs.storage().heal();
            run.second_fsync = fs.fsync(fh).await;
            let _ = fs.release(fh).await;
        }
        Err(e) => run.open = Err(e),
    }
    run.calls = Op::ALL
        .iter()
        .zip(before)
        .map(|(&op, b)| (op, fs.storage().calls(op) - b))
        .filter(|&(_, n)| n > 0)
        .collect();
    (mem, run, new)
}

/// Every storage call an edit makes, failed in turn (the k-th call of each operation, with
/// the failures a server gives): the server keeps the old content or gets exactly the new,
/// never anything else; the failure reaches the caller as the kind's errno (or EIO); after
/// a failed open or write nothing of the edit is committed, by either fsync; after a failed
/// fsync, a retry once the storage heals commits the edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failing_call_of_an_edit_keeps_the_old_content_or_commits_the_new() {
    let old = data(OLD_LEN, 1);
    let (mem, clean, new) = edit_under(|_| {}).await;
    assert!(clean.first_fsync.is_ok() && clean.second_fsync.is_ok(), "{clean:?}");
    assert_eq!(mem.content("f"), new);
    let ops: Vec<Op> = clean.calls.iter().map(|(op, _)| *op).collect();
    for op in [Op::Head, Op::Hashmap, Op::Read, Op::UploadBlock, Op::PutHashmap] {
        assert!(ops.contains(&op), "an edit makes no {op:?} call: {:?}", clean.calls);
    }
    let mut tried = 0;
    let mut failed_fsyncs = 0;
    for &(op, total) in &clean.calls {
        for k in 1..=total {
            for kind in [ErrorKind::Unavailable, ErrorKind::QuotaExceeded, ErrorKind::Forbidden] {
                tried += 1;
                let (mem, run, _) = edit_under(|s| s.fail_nth(op, k, kind)).await;
                let now = mem.content("f");
                let what = format!("call {k} of {op:?} failing with {kind:?}: {run:?}");
                assert!(now == old || now == new, "{what}: the server holds neither version");
                let first_failure = [&run.open, &run.write, &run.first_fsync]
                    .into_iter()
                    .find_map(|r| r.as_ref().err());
                let Some(e) = first_failure else {
                    assert!(run.new_after_first, "{what}: the fsync said ok but did not commit");
                    assert_eq!(now, new, "{what}: all said ok");
                    continue;
                };
                let errno = super::error::errno_of(kind);
                assert!(e.errno == errno || e.errno == libc::EIO, "{what}: errno {}", e.errno);
                if run.open.is_err() || run.write.is_err() {
                    // The one write failed: neither fsync may commit any of it.
                    assert_eq!(now, old, "{what}: committed after a failed open or write");
                } else {
                    failed_fsyncs += 1;
                    assert!(run.second_fsync.is_ok(), "{what}: the retry failed");
                    assert_eq!(now, new, "{what}: the retry did not commit the edit");
                }
            }
        }
    }
    assert!(tried >= 3 * 6, "only {tried} failures tried: {:?}", clean.calls);
    assert!(failed_fsyncs > 0, "no failure reached an fsync");
}

/// A hashmap with fewer hashes than the size has blocks (a broken or hostile server) is EIO
/// for a reader and for an in-place writer, not a panic at the first read past the map;
/// once the server answers right again, the same file opens and reads whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_hashmap_is_eio_and_nothing_panics() {
    let (_mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let bytes = data(2 * BLOCK_SIZE + 7, 5);
    write_file(&fs, dir, "f", &bytes, 1 << 20).await;
    let ino = fs.lookup(dir, "f").await.unwrap().ino;
    fs.storage().short_hashmaps(true);
    for flags in [libc::O_RDONLY, libc::O_RDWR, libc::O_WRONLY] {
        let e = fs.open(ino, flags).await.unwrap_err();
        assert_eq!(e.errno, libc::EIO, "open({flags:#o})");
        assert!(e.message.contains("hashes for"), "{}", e.message);
    }
    assert_eq!(fs.getattr(ino).await.unwrap().size, bytes.len() as u64);
    fs.storage().short_hashmaps(false);
    let fh = fs.open(ino, libc::O_RDONLY).await.unwrap();
    let mut back = vec![];
    while back.len() < bytes.len() {
        let chunk = fs.read(fh, back.len() as u64, 1 << 20).await.unwrap();
        assert!(!chunk.is_empty());
        back.extend_from_slice(&chunk);
    }
    fs.release(fh).await.unwrap();
    assert_eq!(back, bytes);
}

/// A commit stalled in the storage (a server that does not answer) holds its own file's
/// state and nothing else: the file's attributes (with the pending size), other files'
/// lookups, reads, listings and writes all answer meanwhile; a rename of the committing file
/// waits for the commit (it must carry the committed content); both finish once the storage
/// answers, with the right content at the new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_commit_holds_only_its_own_file() {
    let (mem, fs) = fs_with(FsOptions::default());
    let fs = Arc::new(fs);
    let dir = container_ino(&fs).await;
    let other = data(BLOCK_SIZE + 3, 6);
    write_file(&fs, dir, "other", &other, 1 << 20).await;
    let bytes = data(BLOCK_SIZE + 11, 7);
    let (a, fh) = fs.create(dir, "a", libc::O_WRONLY).await.unwrap();
    fs.write(fh, 0, &bytes).await.unwrap();
    let puts = fs.storage().calls(Op::PutHashmap);
    fs.storage().stall(Op::PutHashmap);
    let commit = tokio::spawn({
        let fs = fs.clone();
        async move { fs.fsync(fh).await }
    });
    while fs.storage().calls(Op::PutHashmap) == puts {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // The commit now waits in the storage.
    let meanwhile = async {
        assert_eq!(fs.getattr(a.ino).await.unwrap().size, bytes.len() as u64);
        let o = fs.lookup(dir, "other").await.unwrap();
        let rfh = fs.open(o.ino, libc::O_RDONLY).await.unwrap();
        assert_eq!(&fs.read(rfh, 0, 100).await.unwrap()[..], &other[..100]);
        fs.release(rfh).await.unwrap();
        let dfh = fs.opendir(dir).await.unwrap();
        fs.release_handle(dfh);
        let (_, wfh) = fs.create(dir, "third", libc::O_WRONLY).await.unwrap();
        fs.write(wfh, 0, b"written meanwhile").await.unwrap();
        wfh
    };
    let wfh = tokio::time::timeout(std::time::Duration::from_secs(20), meanwhile)
        .await
        .expect("other files' operations waited for the stalled commit");
    let rename = tokio::spawn({
        let fs = fs.clone();
        async move { fs.rename(dir, "a", dir, "b").await }
    });
    // Were the rename not to wait, it would be done long before this (the storage answers
    // everything but the stalled PUT at once).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!commit.is_finished(), "the commit did not wait for the storage");
    assert!(!rename.is_finished(), "the rename did not wait for the commit");
    fs.storage().unstall(Op::PutHashmap);
    commit.await.unwrap().unwrap();
    rename.await.unwrap().unwrap();
    fs.release(fh).await.unwrap();
    fs.release(wfh).await.unwrap();
    assert_eq!(mem.content("b"), bytes);
    assert_eq!(mem.content("third"), b"written meanwhile");
    assert!(mem.version_of("a").is_none(), "the old name stayed");
}

/// A staging directory that cannot take a spilled block (here: it does not exist) fails the
/// write that needed it and, with it, the close; the server keeps the old version; the same
/// edit, once the directory is there, commits exactly what it wrote. (tests/staging.rs does
/// the same with a full tmpfs through a real mount.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_staging_directory_fails_the_close_and_keeps_the_old_version() {
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("staging");
    let mem = Arc::new(Mem::default());
    let fs = Fs::new(
        Faulty::new(mem.clone()),
        FsOptions {
            max_dirty_blocks: 2,
            staging_dir: staging.clone(),
            ..FsOptions::default()
        },
    );
    let dir = container_ino(&fs).await;
    let old = data(6 * BLOCK_SIZE, 8);
    write_file(&fs, dir, "f", &old, 1 << 20).await;
    let ino = fs.lookup(dir, "f").await.unwrap().ino;
    let v1 = mem.version_of("f");
    // Small writes into every block, backwards: no block completes, so they stay dirty and
    // the third must be spilled.
    let edit = || async {
        let fh = fs.open(ino, libc::O_RDWR).await.unwrap();
        let mut first_err = None;
        for b in (0..6).rev() {
            if let Err(e) = fs.write(fh, (b * BLOCK_SIZE + 9) as u64, &[b as u8; 9]).await {
                first_err.get_or_insert(e);
            }
        }
        (first_err, fs.release(fh).await)
    };
    let (write_err, close) = edit().await;
    let e = write_err.expect("a write that needed the staging directory failed");
    // The staging directory's trouble is the mount's, not the caller's: EIO, and the log
    // line (the message) says where.
    assert_eq!(e.errno, libc::EIO, "{}", e.message);
    assert!(e.message.contains("staging"), "{}", e.message);
    assert!(close.is_err(), "the close reported success");
    assert_eq!(mem.version_of("f"), v1, "a version was committed");
    assert_eq!(mem.content("f"), old);
    std::fs::create_dir(&staging).unwrap();
    let (write_err, close) = edit().await;
    assert!(write_err.is_none(), "{write_err:?}");
    close.unwrap();
    let mut want = old.clone();
    for b in 0..6 {
        want[b * BLOCK_SIZE + 9..b * BLOCK_SIZE + 18].copy_from_slice(&[b as u8; 9]);
    }
    assert_eq!(mem.content("f"), want);
}

/// Takes what fits in a kernel buffer of `room` entries, as readdir replies do.
struct Buffer {
    room: usize,
    got: Vec<(u64, String, Kind)>,
}

impl DirSink for Buffer {
    fn add(&mut self, _: Ino, offset: u64, name: &str, attr: &Attr) -> bool {
        if self.got.len() == self.room {
            return true;
        }
        self.got.push((offset, name.to_string(), attr.kind));
        false
    }
}

/// Reads `fh` from `offset` to the end, `room` entries a call; returns the entries after
/// `.` and `..` and the most inodes the table held meanwhile.
async fn read_whole_dir(fs: &TestFs, dir: Ino, fh: u64, mut offset: u64, room: usize) -> (Vec<(String, Kind)>, usize) {
    let mut out = vec![];
    let mut most = 0;
    loop {
        let mut b = Buffer { room, got: vec![] };
        fs.readdir(dir, fh, offset, &mut b).await.unwrap();
        most = most.max(fs.inode_count());
        let Some(&(next, _, _)) = b.got.last() else {
            return (out, most);
        };
        offset = next;
        out.extend(
            b.got
                .into_iter()
                .filter(|(_, n, _)| n != "." && n != "..")
                .map(|(_, n, k)| (n, k)),
        );
    }
}

/// A directory far larger than a page is read a page at a time: every name once (a file
/// and a directory of one name, met on two pages, once, as the file; a registered image's
/// metafile and a file not committed yet at the end), the handle never holds more than a
/// page, the inode table stays bounded (it held every entry before), and a rewind or a
/// seek back reads the same entries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_directory_is_read_a_page_at_a_time() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let mut want: Vec<(String, Kind)> = vec![];
    {
        let mut objs = mem.objects.lock().unwrap();
        let mut put = |name: String| {
            objs.insert(("c".into(), name), (0, vec![], 1, "application/octet-stream".into()));
        };
        // 9 999 names, then "a": the file `a` ends the first page, the prefix `a/` is on the
        // second, with `a-b` between them.
        for i in 0..PAGE - 1 {
            put(format!("{i:05}"));
            want.push((format!("{i:05}"), Kind::File));
        }
        for (n, k) in [("a", Kind::File), ("a-b", Kind::File), ("img", Kind::File)] {
            put(n.to_string());
            want.push((n.to_string(), k));
        }
        put("a/inner".to_string());
        put("sub/inner".to_string());
        want.push(("sub".to_string(), Kind::Dir));
        for i in 0..5 * PAGE + 17 {
            put(format!("z{i:06}"));
            want.push((format!("z{i:06}"), Kind::File));
        }
    }
    let img = fs.storage().register("c", "img", &Default::default()).await.unwrap();
    assert!(!img.id.is_empty());
    want.push(("img.meta".to_string(), Kind::File));
    let (_, local) = fs.create(dir, "local", libc::O_WRONLY).await.unwrap();
    want.push(("local".to_string(), Kind::File));
    want.sort_by(|a, b| a.0.cmp(&b.0));

    let fh = fs.opendir(dir).await.unwrap();
    let (mut got, most) = read_whole_dir(&fs, dir, fh, 0, 1000).await;
    let in_order = got.clone();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got.len(), want.len());
    assert!(got == want, "names differ");
    assert!(
        most < 3 * PAGE,
        "the inode table held {most} inodes while {} entries were read",
        want.len()
    );
    {
        let h = fs.handle(fh).unwrap();
        let Handle::Dir(d) = h.as_ref() else {
            panic!("not a directory handle")
        };
        assert!(d.lock().await.window.len() <= PAGE + 2);
    }
    // Rewind, and a seek back into the middle: the same entries at the same offsets.
    let (again, _) = read_whole_dir(&fs, dir, fh, 0, 4096).await;
    assert!(again == in_order, "a rewind read other entries");
    let (tail, _) = read_whole_dir(&fs, dir, fh, 2 + 15_000, 500).await;
    assert!(tail[..] == in_order[15_000..], "a seek back read other entries");
    fs.release_handle(fh);
    fs.release(local).await.unwrap();
}

/// `.versions/` of a big directory is read a page at a time too (it was listed whole at
/// open): a directory per file, none for directories, the handle holding one page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_versions_of_a_big_directory_are_read_a_page_at_a_time() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let mut want: Vec<(String, Kind)> = vec![];
    {
        let mut objs = mem.objects.lock().unwrap();
        let mut put = |name: String| {
            objs.insert(("c".into(), name), (0, vec![], 1, "application/octet-stream".into()));
        };
        for i in 0..3 * PAGE + 5 {
            put(format!("f{i:06}"));
            want.push((format!("f{i:06}"), Kind::Dir));
        }
        put("sub/inner".to_string());
    }
    let versions = fs.lookup(dir, ".versions").await.unwrap().ino;
    let fh = fs.opendir(versions).await.unwrap();
    let (got, most) = read_whole_dir(&fs, versions, fh, 0, 1000).await;
    assert_eq!(got.len(), want.len());
    assert!(got == want, "entries differ");
    assert!(most < 3 * PAGE, "the inode table held {most} inodes");
    {
        let h = fs.handle(fh).unwrap();
        let Handle::Dir(d) = h.as_ref() else {
            panic!("not a directory handle")
        };
        assert!(d.lock().await.window.len() <= PAGE, "the handle holds one page");
    }
    let (tail, _) = read_whole_dir(&fs, versions, fh, 2 + 2 * PAGE as u64, 700).await;
    assert!(tail[..] == want[2 * PAGE..], "a seek back read other entries");
    fs.release_handle(fh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_with_its_attributes_lands_quietly_on_a_new_file() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let image = |name: &str| {
        mem.images
            .lock()
            .unwrap()
            .get(&("c".to_string(), name.to_string()))
            .cloned()
    };
    // cp -a (process 77): the data, then every attribute before the close, server-assigned
    // ones too, the image's fields before its name. (The FUSE adapter says who created a
    // file or opened it for writing.)
    const CP: u32 = 77;
    let (a, fh) = fs.create(dir, "copy.img", libc::O_WRONLY).await.unwrap();
    fs.written_by(a.ino, CP);
    fs.write(fh, 0, b"disk").await.unwrap();
    for (k, v) in [
        ("user.image.id", "the-source's-id"),
        ("user.image.disk-format", "extdump"),
        ("user.pithos.uuid", "the-source's-uuid"),
        ("user.pithos.version", "7"),
        ("user.meta.color", "blue"),
        ("user.image.properties.os", "linux"),
        ("user.pithos.public", "false"),
        ("user.image.name", "Copied"),
        ("user.image.size", "123"),
    ] {
        fs.setxattr(a.ino, k, v.as_bytes(), CP)
            .await
            .unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    // A value the server would refuse is refused at once, as on any file.
    let e = fs
        .setxattr(a.ino, "user.image.disk-format", b"floppy", CP)
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EINVAL, "{e}");
    assert_eq!(image("copy.img"), None, "nothing registered before the content is");
    fs.release(fh).await.unwrap();
    assert_eq!(mem.content("copy.img"), b"disk");
    assert_eq!(fs.getxattr(a.ino, "user.meta.color", 0).await.unwrap(), b"blue");
    let img = image("copy.img").expect("registered by its first commit");
    assert_eq!((img.name.as_str(), img.disk_format.as_str()), ("Copied", "extdump"));
    assert_eq!(img.properties.get("os").map(String::as_str), Some("linux"));
    assert_ne!(
        fs.getxattr(a.ino, "user.pithos.uuid", 0).await.unwrap(),
        b"the-source's-uuid"
    );

    // rsync -aX: the attributes after the close, in name order.
    const RSYNC: u32 = 78;
    let (b, fh) = fs.create(dir, "later.img", libc::O_WRONLY).await.unwrap();
    fs.written_by(b.ino, RSYNC);
    fs.write(fh, 0, b"disk2").await.unwrap();
    fs.release(fh).await.unwrap();
    // Another process (setfattr after the copy) gets the usual answer.
    let e = fs.setxattr(b.ino, "user.pithos.uuid", b"other", CP).await.unwrap_err();
    assert_eq!(e.errno, libc::EPERM, "{e}");
    for (k, v) in [
        ("user.image.checksum", "c0ffee"),
        ("user.image.container-format", "bare"),
        ("user.image.is-public", "true"),
        ("user.image.name", "Later"),
        ("user.image.owner", "someone-else"),
        ("user.meta.color", "red"),
        ("user.pithos.version", "1"),
    ] {
        fs.setxattr(b.ino, k, v.as_bytes(), RSYNC)
            .await
            .unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    let img = image("later.img").expect("registered by its name");
    assert!(img.is_public && img.name == "Later", "{img:?}");
    assert_eq!(fs.getxattr(b.ino, "user.meta.color", 0).await.unwrap(), b"red");

    // A file this mount did not just make: a server-assigned attribute of another value is
    // refused, image fields of an unregistered file too.
    let other = Fs::new(Faulty::new(mem.clone()), FsOptions::default());
    write_file(&other, container_ino(&other).await, "theirs", b"x", 1).await;
    let t = fs.lookup(dir, "theirs").await.unwrap();
    let e = fs.setxattr(t.ino, "user.pithos.uuid", b"other", CP).await.unwrap_err();
    assert_eq!(e.errno, libc::EPERM, "{e}");
    let e = fs
        .setxattr(t.ino, "user.image.disk-format", b"extdump", CP)
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ENODATA, "{e}");
}
