//! Content-addressed block files: `<root>/<hex[0..2]>/<hex[2..4]>/<hex>`, holding a block's
//! bytes with trailing NULs trimmed. The empty (and every all-zero) block is never stored.
//!
//! Integrity: each block file carries the BLAKE3 digest of its bytes as an extended attribute,
//! written with it. A read checks that (about 0.2 s of CPU per GiB) rather than the sha256 that
//! names the block (0.9 s, most of the server's CPU when serving reads); a file without the
//! attribute, or whose bytes do not match it, is checked by sha256, which decides. This guards
//! against what disks do; whoever can write the data directory is trusted anyway (the same
//! person could rewrite the metadata database).
//!
//! Durability: a block is written to a temp file in its final directory, fsynced, renamed over
//! its name, and the directory fsynced; only then is its hash returned, so a version row that
//! names it (committed afterwards) never points at a torn or missing file. Two writers of the
//! same block each write their own temp file; whichever rename lands last, the content is the
//! same.

use crate::api::hashing::{block_hash, trim_trailing_zeros, BlockHash};
use crate::store::{Result, StoreError};
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Block I/O by hash; the seam where an S3 bucket ([`super::s3`]) or another remote block
/// store goes. Async: a networked store waits on the network without holding a thread; the
/// file store does its I/O on the blocking threads.
#[async_trait::async_trait]
pub trait BlockStore: Send + Sync {
    /// Stores a block (trailing NULs trimmed) durably; its hash once it is.
    async fn put(&self, data: Bytes) -> Result<BlockHash>;
    /// Its stored bytes, checked (a corrupt block is set aside and never served).
    async fn get(&self, hash: &BlockHash) -> Result<Vec<u8>>;
    async fn stored_len(&self, hash: &BlockHash) -> Result<Option<u64>>;
    /// Deletes a block; false when it was not there. Only the collector calls this, for a
    /// block the metadata says nobody holds.
    async fn remove(&self, hash: &BlockHash) -> Result<bool>;
    /// One page of the walk over everything stored, from `from` (a page's `next`; `None`:
    /// the start): the blocks older than `older_than` it holds, after deleting the temp files
    /// of writes older than that (a crash cut them). Pages are bounded, so a walk over a store
    /// of any size holds one page in memory.
    async fn sweep(&self, older_than: SystemTime, from: Option<String>) -> Result<SweepPage>;
    /// Whether the store answers at all (for a readiness check; cheap).
    async fn check(&self) -> Result<()>;
    /// Marks the store as holding the blocks of the metadata database `owner` (its engine id),
    /// or refuses if it holds another's: the collector deletes every block its database does
    /// not know, so two databases over one store would delete each other's data.
    async fn claim(&self, owner: &str) -> Result<()>;
}

/// One page of [`BlockStore::sweep`].
#[derive(Debug, Default)]
pub struct SweepPage {
    /// Blocks stored (hash, stored length), old enough to be judged.
    pub found: Vec<(BlockHash, u64)>,
    /// Temp files deleted: count and bytes.
    pub temps: (u64, u64),
    /// Where the next page starts; `None`: this was the last.
    pub next: Option<String>,
}

/// The name of the owner mark, at the store's root (neither a block's name nor a temp file's).
pub const OWNER_MARK: &str = ".imgfs-owner";

/// The refusal of [`BlockStore::claim`].
pub fn claimed_by_another(store: &str, owner: &str, found: &str) -> StoreError {
    StoreError::Invalid(format!(
        "{store} holds the blocks of another imgfs metadata database ({found}, not {owner}): \
         its garbage collector would delete this one's blocks and this one's its; give each \
         database its own block store (another directory or S3 prefix)"
    ))
}

#[derive(Clone)]
pub struct FsBlocks {
    root: PathBuf,
    /// Block directories (by the hash's first two bytes) this process made durable: created
    /// if missing, and their parents fsynced, so that a block renamed into one survives a
    /// power cut. Held while making one durable, so that no writer uses a directory another
    /// is still making durable.
    durable_dirs: Arc<std::sync::Mutex<std::collections::HashSet<u16>>>,
}

/// Removes a temp file unless the rename that publishes it went through.
struct DeleteOnDrop(Option<PathBuf>);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl FsBlocks {
    pub fn open(root: &Path) -> Result<FsBlocks> {
        fs::create_dir_all(root)?;
        // (the root's own entry: durable once its parent is)
        if let Some(parent) = root.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(FsBlocks {
            root: root.to_path_buf(),
            durable_dirs: Default::default(),
        })
    }

    /// Makes the directory of a block durable: created, and its entry and its parent's entry
    /// fsynced (a new directory's name is durable only once its parent is fsynced). Once per
    /// directory and process: a directory found existing may have been made by a process that
    /// died before its fsync.
    fn ensure_dir(&self, hex: &str) -> Result<PathBuf> {
        let dir = self.dir_of(hex);
        let key = u16::from_str_radix(&hex[0..4], 16).unwrap_or(0);
        let mut known = self.durable_dirs.lock().unwrap_or_else(|p| p.into_inner());
        if !known.contains(&key) {
            fs::create_dir_all(&dir)?;
            File::open(self.root.join(&hex[0..2]))?.sync_all()?;
            File::open(&self.root)?.sync_all()?;
            known.insert(key);
        }
        Ok(dir)
    }

    fn dir_of(&self, hex: &str) -> PathBuf {
        self.root.join(&hex[0..2]).join(&hex[2..4])
    }

    fn path_of(&self, hash: &BlockHash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir_of(&hex).join(hex)
    }

    fn quarantine(&self, path: &Path) {
        let mut q = path.as_os_str().to_owned();
        q.push(".corrupted");
        if let Err(e) = fs::rename(path, &q) {
            tracing::error!(path = %path.display(), error = %e, "could not quarantine a corrupt block");
        }
    }
}

/// Direct I/O granularity (buffer address, length): the page size covers every disk's
/// logical block size.
const ALIGN: usize = 4096;

/// A reusable page-aligned buffer for direct writes.
struct Aligned {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
}

impl Aligned {
    fn layout(cap: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(cap, ALIGN).expect("valid layout")
    }

    /// `data` copied in and zero-padded to a multiple of [`ALIGN`].
    fn fill(&mut self, data: &[u8]) -> &[u8] {
        let len = data.len().div_ceil(ALIGN) * ALIGN;
        if len > self.cap {
            let layout = Self::layout(len);
            // SAFETY: the layout has a non-zero size (data is non-empty, so len >= ALIGN).
            let p = unsafe { std::alloc::alloc(layout) };
            let Some(p) = std::ptr::NonNull::new(p) else {
                std::alloc::handle_alloc_error(layout)
            };
            self.release();
            self.ptr = p;
            self.cap = len;
        }
        // SAFETY: ptr points to `cap >= len` bytes this struct owns; the slice lives as long as
        // the &mut self borrow.
        let buf = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), len) };
        buf[..data.len()].copy_from_slice(data);
        buf[data.len()..].fill(0);
        buf
    }

    fn release(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated in `fill` with this very layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) };
            self.cap = 0;
        }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        self.release();
    }
}

// SAFETY: an Aligned owns its allocation alone; moving it to another thread moves the ownership.
unsafe impl Send for Aligned {}

/// Buffers kept for reuse (a fresh one costs page faults on every write); beyond this many,
/// buffers of concurrent writers are freed after use, so idle memory stays bounded.
const POOLED: usize = 8;
static DIRECT_BUFS: std::sync::Mutex<Vec<Aligned>> = std::sync::Mutex::new(Vec::new());

fn with_direct_buf<T>(f: impl FnOnce(&mut Aligned) -> T) -> T {
    let taken = DIRECT_BUFS.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let mut buf = taken.unwrap_or(Aligned {
        ptr: std::ptr::NonNull::dangling(),
        cap: 0,
    });
    let out = f(&mut buf);
    let mut pool = DIRECT_BUFS.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < POOLED {
        pool.push(buf);
    }
    out
}

/// Writes a new file with `data` and fsyncs it. Direct I/O where the filesystem has it: a
/// block store's writes are not read back soon, and copying each one through the page cache
/// was half the server's CPU while ingesting (perf, 1 GiB upload on this VM).
fn write_durably(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let direct = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    let f = match direct {
        Ok(f) => {
            let res = with_direct_buf(|b| (&f).write_all(b.fill(data)));
            match res {
                Ok(()) => {
                    f.set_len(data.len() as u64)?;
                    f
                }
                // Some filesystems accept the flag and refuse the write.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    f.set_len(0)?;
                    drop(f);
                    let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
                    f.write_all(data)?;
                    f
                }
                Err(e) => return Err(e),
            }
        }
        // tmpfs and others have no direct I/O.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
            f.write_all(data)?;
            f
        }
        Err(e) => return Err(e),
    };
    set_check(&f, data);
    f.sync_all()
}

const CHECK_XATTR: &std::ffi::CStr = c"user.imgfs.blake3";

/// Records the digest that reads check. Where the filesystem has no user xattrs, reads fall
/// back to sha256.
fn set_check(f: &File, data: &[u8]) {
    use std::os::fd::AsRawFd;
    let d = blake3::hash(data);
    // SAFETY: a valid fd, a NUL-terminated name, and 32 readable bytes.
    unsafe { libc::fsetxattr(f.as_raw_fd(), CHECK_XATTR.as_ptr(), d.as_bytes().as_ptr().cast(), 32, 0) };
}

fn stored_check(f: &File) -> Option<[u8; 32]> {
    use std::os::fd::AsRawFd;
    let mut d = [0u8; 32];
    // SAFETY: a valid fd, a NUL-terminated name, and 32 writable bytes.
    let n = unsafe { libc::fgetxattr(f.as_raw_fd(), CHECK_XATTR.as_ptr(), d.as_mut_ptr().cast(), 32) };
    (n == 32).then_some(d)
}

/// The operations themselves, synchronous (the trait runs them on the blocking threads).
impl FsBlocks {
    pub fn check(&self) -> Result<()> {
        // Its root is there and can be read: a disk that went away or a lost mount fails this
        // (a disk remounted read-only does not; writes then fail with 5xx and a log line).
        let mut entries = fs::read_dir(&self.root)?;
        if let Some(e) = entries.next() {
            e?;
        }
        Ok(())
    }

    pub fn claim(&self, owner: &str) -> Result<()> {
        let mark = self.root.join(OWNER_MARK);
        for _ in 0..3 {
            match fs::read_to_string(&mark) {
                Ok(found) if found.trim() == owner => return Ok(()),
                // A write a crash cut (the mark is written in one go and fsynced): claimed again.
                Ok(found) if found.trim_matches(|c: char| c.is_whitespace() || c == '\0').is_empty() => {
                    fs::remove_file(&mark)?
                }
                Ok(found) => {
                    let store = format!("dir:{}", self.root.display());
                    return Err(claimed_by_another(&store, owner, found.trim()));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    // Created only if absent (never over a mark another process wrote
                    // meanwhile: then that one is read on the next turn).
                    match OpenOptions::new().write(true).create_new(true).open(&mark) {
                        Ok(mut f) => {
                            f.write_all(owner.as_bytes())?;
                            f.sync_all()?;
                            File::open(&self.root)?.sync_all()?;
                        }
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Invalid(format!(
            "{}: the owner mark could not be written and read back",
            mark.display()
        )))
    }

    pub fn put(&self, data: &[u8]) -> Result<BlockHash> {
        let stored = trim_trailing_zeros(data);
        let hash = block_hash(stored);
        if stored.is_empty() {
            return Ok(hash);
        }
        let hex = hash.to_hex();
        let dir = self.ensure_dir(&hex)?;
        let dest = dir.join(&hex);
        if let Ok(m) = fs::metadata(&dest) {
            if m.len() == stored.len() as u64 {
                return Ok(hash);
            }
        }
        let tmp = dir.join(format!(".tmp-{hex}-{:016x}", rand::random::<u64>()));
        let mut guard = DeleteOnDrop(Some(tmp.clone()));
        write_durably(&tmp, stored)?;
        fs::rename(&tmp, &dest)?;
        guard.0 = None;
        // The rename is durable only once the directory entry is.
        File::open(&dir)?.sync_all()?;
        Ok(hash)
    }

    pub fn get(&self, hash: &BlockHash) -> Result<Vec<u8>> {
        if hash.is_empty_block() {
            return Ok(vec![]);
        }
        let path = self.path_of(hash);
        let mut buf = vec![];
        let f = match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut buf)?;
                f
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(StoreError::LostBlock(*hash)),
            Err(e) => return Err(e.into()),
        };
        // Bad bytes never reach a reader: check them, and set a mismatch aside.
        if stored_check(&f).is_some_and(|d| d == *blake3::hash(&buf).as_bytes()) {
            return Ok(buf);
        }
        if block_hash(&buf) != *hash {
            self.quarantine(&path);
            return Err(StoreError::CorruptBlock(*hash));
        }
        // Written before blocks carried the digest, or the digest itself was damaged.
        set_check(&f, &buf);
        Ok(buf)
    }

    pub fn stored_len(&self, hash: &BlockHash) -> Result<Option<u64>> {
        if hash.is_empty_block() {
            return Ok(Some(0));
        }
        match fs::metadata(self.path_of(hash)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn remove(&self, hash: &BlockHash) -> Result<bool> {
        if hash.is_empty_block() {
            return Ok(false);
        }
        match fs::remove_file(self.path_of(hash)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// One page of the sweep: one top-level directory (of 256), from `from` on.
    pub fn sweep(&self, older_than: SystemTime, from: Option<&str>) -> Result<SweepPage> {
        let tops = sorted_dir(&self.root)?;
        let named = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let mut tops = tops
            .into_iter()
            .filter(|p| p.is_dir() && from.is_none_or(|f| named(p).as_str() >= f));
        let mut page = SweepPage::default();
        let Some(top) = tops.next() else {
            return Ok(page);
        };
        page.next = tops.next().map(|p| named(&p));
        for leaf in sorted_dir(&top)? {
            for file in sorted_dir(&leaf)? {
                let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let m = match fs::symlink_metadata(&file) {
                    Ok(m) if m.is_file() => m,
                    // (gone meanwhile, or not ours to judge)
                    _ => continue,
                };
                if m.modified()? >= older_than {
                    continue;
                }
                if name.starts_with(".tmp-") {
                    match fs::remove_file(&file) {
                        Ok(()) => {
                            page.temps.0 += 1;
                            page.temps.1 += m.len();
                        }
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                } else if let Some(h) = BlockHash::from_hex(name).filter(|h| h.to_hex() == name) {
                    page.found.push((h, m.len()));
                }
            }
        }
        Ok(page)
    }
}

/// Runs one of the file store's operations on the blocking threads.
async fn off_thread<T: Send + 'static>(
    store: &FsBlocks,
    f: impl FnOnce(&FsBlocks) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
}

#[async_trait::async_trait]
impl BlockStore for FsBlocks {
    async fn put(&self, data: Bytes) -> Result<BlockHash> {
        off_thread(self, move |s| s.put(&data)).await
    }

    async fn get(&self, hash: &BlockHash) -> Result<Vec<u8>> {
        let h = *hash;
        off_thread(self, move |s| s.get(&h)).await
    }

    async fn stored_len(&self, hash: &BlockHash) -> Result<Option<u64>> {
        let h = *hash;
        off_thread(self, move |s| s.stored_len(&h)).await
    }

    async fn remove(&self, hash: &BlockHash) -> Result<bool> {
        let h = *hash;
        off_thread(self, move |s| s.remove(&h)).await
    }

    async fn sweep(&self, older_than: SystemTime, from: Option<String>) -> Result<SweepPage> {
        off_thread(self, move |s| s.sweep(older_than, from.as_deref())).await
    }

    async fn check(&self) -> Result<()> {
        off_thread(self, |s| s.check()).await
    }

    async fn claim(&self, owner: &str) -> Result<()> {
        let owner = owner.to_string();
        off_thread(self, move |s| s.claim(&owner)).await
    }
}

/// The entries of a block store directory (missing: none), in name order.
fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(vec![]),
        Err(e) => return Err(e.into()),
    };
    let mut v = rd.map(|e| e.map(|e| e.path())).collect::<std::io::Result<Vec<_>>>()?;
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_dedup_and_zero_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlocks::open(dir.path()).unwrap();
        let h = b.put(b"hello\0\0").unwrap();
        assert_eq!(h, block_hash(b"hello"));
        assert_eq!(b.get(&h).unwrap(), b"hello");
        assert_eq!(b.put(b"hello").unwrap(), h);
        assert_eq!(b.stored_len(&h).unwrap(), Some(5));
        let z = b.put(&[0u8; 1000]).unwrap();
        assert!(z.is_empty_block());
        assert_eq!(b.get(&z).unwrap(), Vec::<u8>::new());
        assert!(matches!(b.get(&block_hash(b"nope")), Err(StoreError::LostBlock(_))));
        // no temp files left behind
        let leftovers = walk(dir.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".tmp-"))
            .count();
        assert_eq!(leftovers, 0);
    }

    /// Direct writes are padded to whole pages and cut back: every length reads back exactly,
    /// on a disk filesystem and on tmpfs (which may refuse direct I/O: buffered then).
    #[test]
    fn odd_lengths_round_trip_with_and_without_direct_io() {
        let shm = std::path::Path::new("/dev/shm");
        let mut roots = vec![tempfile::tempdir().unwrap()];
        if shm.is_dir() {
            roots.push(tempfile::tempdir_in(shm).unwrap());
        }
        for root in &roots {
            let b = FsBlocks::open(root.path()).unwrap();
            for len in [1usize, 4095, 4096, 4097, (4 << 20) - 1, 4 << 20] {
                let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
                let h = b.put(&data).unwrap();
                assert_eq!(b.stored_len(&h).unwrap(), Some(len as u64), "{len}");
                assert_eq!(b.get(&h).unwrap(), data, "{len} in {}", root.path().display());
            }
        }
    }

    #[test]
    fn corrupt_block_is_quarantined_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlocks::open(dir.path()).unwrap();
        let h = b.put(b"precious").unwrap();
        fs::write(b.path_of(&h), b"rotten!!").unwrap();
        assert!(matches!(b.get(&h), Err(StoreError::CorruptBlock(x)) if x == h));
        assert_eq!(b.stored_len(&h).unwrap(), None);
        // a fresh upload heals it
        b.put(b"precious").unwrap();
        assert_eq!(b.get(&h).unwrap(), b"precious");
    }

    /// Reads are checked by the BLAKE3 digest stored with the block; sha256 decides when the
    /// digest is missing or does not match.
    #[test]
    fn reads_are_checked_by_the_stored_digest_and_sha256_decides_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlocks::open(dir.path()).unwrap();
        let h = b.put(b"precious").unwrap();
        let path = b.path_of(&h);
        let check = || stored_check(&File::open(&path).unwrap());
        assert_eq!(check(), Some(*blake3::hash(b"precious").as_bytes()));
        // No digest (a block from before): served after sha256, and the digest added.
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: NUL-terminated path and name.
        assert_eq!(unsafe { libc::removexattr(c.as_ptr(), CHECK_XATTR.as_ptr()) }, 0);
        assert_eq!(check(), None);
        assert_eq!(b.get(&h).unwrap(), b"precious");
        assert_eq!(check(), Some(*blake3::hash(b"precious").as_bytes()));
        // A damaged digest over good bytes: sha256 says good, served, digest repaired.
        set_check(&File::open(&path).unwrap(), b"something else");
        assert_eq!(b.get(&h).unwrap(), b"precious");
        assert_eq!(check(), Some(*blake3::hash(b"precious").as_bytes()));
        // The digest is what a read trusts: bytes that match it are served without sha256.
        // (Only someone who can write the data directory could arrange that.)
        fs::write(&path, b"replaced").unwrap();
        set_check(&File::open(&path).unwrap(), b"replaced");
        assert_eq!(b.get(&h).unwrap(), b"replaced");
        // Bytes that match neither are set aside, with or without a digest.
        fs::write(&path, b"rotten!!").unwrap();
        assert!(matches!(b.get(&h), Err(StoreError::CorruptBlock(_))));
        b.put(b"precious").unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::removexattr(c.as_ptr(), CHECK_XATTR.as_ptr()) }, 0);
        fs::write(&path, b"rotten!!").unwrap();
        assert!(matches!(b.get(&h), Err(StoreError::CorruptBlock(_))));
    }

    #[test]
    fn a_store_is_claimed_by_one_owner_and_a_cut_mark_is_claimed_again() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlocks::open(dir.path()).unwrap();
        b.claim("db-one").unwrap();
        b.claim("db-one").unwrap();
        let e = b.claim("db-two").unwrap_err();
        assert!(e.to_string().contains("db-one, not db-two"), "{e}");
        // An empty mark (a crash before its bytes reached the disk) holds nothing.
        fs::write(dir.path().join(OWNER_MARK), b"").unwrap();
        b.claim("db-two").unwrap();
        assert_eq!(fs::read_to_string(dir.path().join(OWNER_MARK)).unwrap(), "db-two");
    }

    /// The sweep takes a top-level directory a page: every block once across the pages, temp
    /// files of cut writes deleted, young files and the owner mark left alone.
    #[test]
    fn the_sweep_walks_the_store_a_directory_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlocks::open(dir.path()).unwrap();
        b.claim("me").unwrap();
        let mut put: Vec<BlockHash> = (0..40u8).map(|i| b.put(&[i + 1; 10]).unwrap()).collect();
        put.sort();
        let tops = put
            .iter()
            .map(|h| h.to_hex()[..2].to_string())
            .collect::<std::collections::BTreeSet<_>>();
        let hex = put[0].to_hex();
        let tmp = dir.path().join(&hex[0..2]).join(&hex[2..4]).join(".tmp-cut");
        std::fs::write(&tmp, b"half").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        let (mut found, mut pages, mut temps, mut from) = (vec![], 0, (0, 0), None::<String>);
        loop {
            let page = b.sweep(later, from.as_deref()).unwrap();
            pages += 1;
            found.extend(page.found.iter().map(|(h, _)| *h));
            temps = (temps.0 + page.temps.0, temps.1 + page.temps.1);
            match page.next {
                Some(n) => from = Some(n),
                None => break,
            }
        }
        found.sort();
        assert_eq!(found, put);
        assert_eq!(pages, tops.len());
        assert_eq!(temps, (1, 4));
        assert!(!tmp.exists());
        assert!(dir.path().join(OWNER_MARK).exists());
        let young = b
            .sweep(SystemTime::now() - std::time::Duration::from_secs(3600), None)
            .unwrap();
        assert!(young.found.is_empty());
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                out.extend(walk(&e));
            } else {
                out.push(e);
            }
        }
        out
    }
}
