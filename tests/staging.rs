//! A staging directory that fills up under scattered writes: the write that cannot be staged
//! fails with ENOSPC, so do the later ones and the close; the server keeps its previous
//! version (nothing of the failed attempt is committed); the same edit succeeds once there
//! is room again.

mod common;

use common::*;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const BLOCK: usize = 4 << 20;
const BLOCKS: usize = 24;

/// A tmpfs of `mb` MiB at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(dir: &Path, mb: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        sh(&format!(
            "mount -t tmpfs -o size={mb}m,mode=700 tmpfs '{}'",
            dir.display()
        ));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// One byte written into every block, last block first (each stays dirty: more than the
/// mount keeps in memory, so most go to the staging file); the first write error and
/// close's own result.
fn scatter(p: &Path) -> (std::io::Result<()>, std::io::Result<()>) {
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    let mut first = Ok(());
    for i in (0..BLOCKS).rev() {
        if let Err(e) = f.write_at(b"X", (i * BLOCK + 7) as u64) {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    let fd = f.into_raw_fd();
    // SAFETY: fd was just taken from the File.
    let closed = if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    };
    (first, closed)
}

#[test]
fn a_full_staging_directory_fails_the_writes_and_keeps_the_old_version() {
    let s = Server::start();
    let u = s.add_user("alice");
    let api = Api::new(&s, &u);
    let old = pattern(BLOCKS * BLOCK + 100, unique_seed());
    api.put("pithos/disk.img", &old);
    let version = header(&api.head("pithos/disk.img"), "x-object-version");
    let root = tempfile::tempdir_in(test_root()).unwrap();
    let staging = root.path().join("staging");
    let small = Tmpfs::new(&staging, 12);
    let m = Mount::new(&s, &u, &format!("staging_dir={}", staging.display()));

    let (wrote, closed) = scatter(&m.path("pithos/disk.img"));
    let errno = |r: &std::io::Result<()>| r.as_ref().err().and_then(|e| e.raw_os_error());
    assert_eq!(errno(&wrote), Some(libc::ENOSPC), "the write that cannot be staged");
    assert_eq!(errno(&closed), Some(libc::ENOSPC), "and the close");
    assert_eq!(
        header(&api.head("pithos/disk.img"), "x-object-version"),
        version,
        "no new version"
    );
    assert_eq!(sha256_hex(&api.get("pithos/disk.img")), sha256_hex(&old));
    assert!(m.log().contains("staging"), "{}", m.log());

    // Room again: the same edit is committed whole.
    drop(small);
    let _big = Tmpfs::new(&staging, 256);
    let (wrote, closed) = scatter(&m.path("pithos/disk.img"));
    assert!(wrote.is_ok() && closed.is_ok(), "{wrote:?} {closed:?}");
    let mut want = old.clone();
    for i in 0..BLOCKS {
        want[i * BLOCK + 7] = b'X';
    }
    assert_eq!(sha256_hex(&api.get("pithos/disk.img")), sha256_hex(&want));
    assert_eq!(sha_file(&m.path("pithos/disk.img")), sha256_hex(&want));
    assert!(!m.log().contains("panicked"));
}
