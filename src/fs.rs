//! The filesystem core, generic over [`Storage`] and [`Registry`]. It knows neither fuser nor
//! HTTP: `fs/fuse.rs` translates kernel requests into calls here, and tests drive it directly
//! against the in-memory storage of `fs/fake.rs`.
//!
//! What lives where:
//! - `inodes.rs`: the inode table (names the server or this mount made known, kernel lookup
//!   counts, sweeping); `paths.rs`: which server path an inode stands for;
//! - `handles.rs`: the table of open files and directories;
//! - `lookup.rs` (lookup, getattr), `readdir.rs` (listings), `open.rs` (open, create),
//!   `read.rs` (reads through the block cache, prefetch), `commit.rs` (write, flush, fsync,
//!   commit, copy_file_range, truncate), `namespace.rs` (mkdir, rmdir, unlink, rename);
//! - `write.rs`: a writer's content (dirty blocks, staging, uploads, the hashmap it commits);
//!   `cache.rs`, `hash_memo.rs`, `page_cache.rs`: what is kept between requests;
//! - `images.rs` (metafiles and the registry), `views.rs` (`.versions`, `.images`),
//!   `xattr.rs` (extended attributes), `listing.rs` (the checked paging loop);
//! - `error.rs`: errors and the one table from storage errors to errno.
//!
//! # Locks
//! Taken in this order, never the other way round:
//! 1. a writer's state (`WriteHandle::state`) or an open directory's listing
//!    (`Handle::Dir`): async mutexes, the only locks held across a request to the server. A
//!    name operation locks every writer of its source, then every writer of its target
//!    (`handles::lock_states`); a commit holds its own writer's only; a readdir its
//!    directory's (`sweep`, with the inode table held, only tries it).
//! 2. `Fs::nodes` (the inode table), then
//! 3. `Fs::handles` (the handle table; `sweep` and `forget_name` look at it with the table
//!    held), then
//! 4. `Fs::pages` (which readers share the kernel's page cache).
//!
//! The others are leaves, held for a lookup or an insert and nothing else: `meta_errors`,
//! `moved_away`, `xattr_snapshot`, `fresh`, a reader's `seq`, and those inside the block
//! cache, the hash memo and `Shared::sent`. Only the locks of (1) are ever held across an `.await`.

mod commit;
mod handles;
mod inodes;
mod lookup;
mod namespace;
mod open;
mod paths;
mod read;
mod readdir;
mod restore;

pub mod cache;
pub mod error;
pub mod fuse;
pub mod hash_memo;
pub mod images;
pub mod listing;
pub mod page_cache;
pub mod procfs;
pub mod views;
pub mod write;
pub mod xattr;

use crate::api::hashing::{BlockHash, BLOCK_SIZE};
use crate::client::{Registry, Storage};
use cache::BlockCache;
pub use error::{FsError, FsResult};
use handles::{Handle, ReadHandle};
use inodes::{Node, Nodes, SWEEP_MIN};
pub use page_cache::PageCache;
use paths::Loc;
pub use paths::{IMAGES_DIR, VERSIONS_DIR};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest name of one path component (what statfs reports and lookups enforce).
pub const NAME_MAX: usize = 255;

pub type Ino = u64;
pub const ROOT: Ino = 1;
const BS: u64 = BLOCK_SIZE as u64;
/// Listing page size (the server's maximum).
const PAGE: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    /// 0 for a file unlinked while open.
    pub nlink: u32,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

/// Receives directory entries; `add` returns true when the buffer is full.
pub trait DirSink {
    fn add(&mut self, ino: Ino, offset: u64, name: &str, attr: &Attr) -> bool;
    /// Whether the kernel keeps an entry (an inode reference) for each name added, as with
    /// readdirplus.
    fn gives_entries(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone)]
pub struct FsOptions {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    pub attr_ttl: Duration,
    pub read_only: bool,
    /// Mount one container as the root.
    pub container: Option<String>,
    pub staging_dir: PathBuf,
    pub cache_blocks: usize,
    pub max_dirty_blocks: usize,
    pub max_staging_bytes: u64,
    pub uploads_in_flight: usize,
    /// Blocks hashed at once: one per core. Hashing is most of a write's CPU (sha256 runs
    /// ~1 GB/s per core here); leaving a core to the FUSE round trips was slower on 2 cores
    /// (re-copy of 1 GiB, 6 alternated runs: median 1.19 s vs 1.30 s; first copy 4.85 vs 5.08).
    pub hash_threads: usize,
    /// Check fetched blocks against their hashes here too (the server already checks what it
    /// reads from disk); costs a sha256 pass per block read.
    pub verify_reads: bool,
    /// After `N.meta` is renamed away, how long a new `N.meta` has to appear before `N` is
    /// unregistered (an editor's save renames the old file to a backup, then writes anew).
    pub meta_grace: Duration,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            uid: 0,
            gid: 0,
            file_mode: 0o644,
            dir_mode: 0o755,
            attr_ttl: Duration::from_secs(1),
            read_only: false,
            container: None,
            staging_dir: std::env::temp_dir(),
            cache_blocks: 16,
            max_dirty_blocks: 8,
            max_staging_bytes: 64 << 30,
            uploads_in_flight: 4,
            hash_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            verify_reads: false,
            meta_grace: Duration::from_secs(3),
        }
    }
}

/// Counters for tests and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub blocks_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub blocks_skipped: AtomicU64,
}

/// What the write pipeline and the read path share.
pub struct Shared<S> {
    pub storage: Arc<S>,
    pub cache: Arc<BlockCache>,
    pub opts: Arc<FsOptions>,
    pub uploads: Arc<tokio::sync::Semaphore>,
    pub hashers: Arc<tokio::sync::Semaphore>,
    /// Hashes this mount uploaded recently (the server has them).
    pub sent: Arc<Mutex<lru::LruCache<BlockHash, ()>>>,
    /// Block hashes computed before, to recognise written blocks cheaply.
    pub memo: Arc<hash_memo::HashMemo>,
    pub stats: Arc<Stats>,
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared {
            storage: self.storage.clone(),
            cache: self.cache.clone(),
            opts: self.opts.clone(),
            uploads: self.uploads.clone(),
            hashers: self.hashers.clone(),
            sent: self.sent.clone(),
            memo: self.memo.clone(),
            stats: self.stats.clone(),
        }
    }
}

pub struct Fs<S: Storage> {
    sh: Shared<S>,
    /// Why the last commit of each metafile failed, by `(container, path)`.
    meta_errors: Mutex<HashMap<(String, String), String>>,
    /// Images whose `N.meta` was renamed away, by `(container, N)`: unregistered when the
    /// grace period ends without a new `N.meta`. The value tells one rename from the next.
    moved_away: Arc<Mutex<HashMap<(String, String), u64>>>,
    /// Which readers share the kernel's page cache of each file.
    pages: page_cache::PageCaches,
    /// The attributes last listed, for the reads that follow (see `xattr.rs`).
    xattr_snapshot: Mutex<Option<xattr::Snapshot>>,
    /// Files just made here, and what a copy's attributes hold for them (see `restore.rs`).
    fresh: Mutex<HashMap<Ino, restore::Fresh>>,
    nodes: Mutex<Nodes>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
}

fn to_systime(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64)
}

fn now_micros() -> i64 {
    crate::api::timefmt::now_micros()
}

impl<S: Storage + Registry> Fs<S> {
    pub fn new(storage: S, opts: FsOptions) -> Fs<S> {
        let mut nodes = Nodes {
            next: ROOT + 1,
            sweep_at: SWEEP_MIN,
            ..Default::default()
        };
        nodes.by_ino.insert(
            ROOT,
            Node {
                parent: ROOT,
                name: String::new(),
                kind: Kind::Dir,
                size: 0,
                mtime: now_micros(),
                version: 0,
                fetched: Some(Instant::now()),
                unlinked: false,
                lookups: 0,
                generated: None,
                view: false,
            },
        );
        let sh = Shared {
            storage: Arc::new(storage),
            cache: Arc::new(BlockCache::new(opts.cache_blocks)),
            uploads: Arc::new(tokio::sync::Semaphore::new(opts.uploads_in_flight.max(1))),
            hashers: Arc::new(tokio::sync::Semaphore::new(opts.hash_threads.max(1))),
            sent: Arc::new(Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(4096).expect("non-zero"),
            ))),
            // 64k blocks (256 GiB of distinct content) in at most about 7 MiB.
            memo: Arc::new(hash_memo::HashMemo::new(1 << 16)),
            stats: Arc::new(Stats::default()),
            opts: Arc::new(opts),
        };
        Fs {
            sh,
            nodes: Mutex::new(nodes),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            meta_errors: Mutex::new(HashMap::new()),
            moved_away: Default::default(),
            pages: Default::default(),
            xattr_snapshot: Mutex::new(None),
            fresh: Default::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.sh.stats
    }

    /// Inodes in the table (they are dropped once the kernel forgets them).
    pub fn inode_count(&self) -> usize {
        self.nodes().by_ino.len()
    }

    pub fn storage(&self) -> &S {
        &self.sh.storage
    }

    pub fn attr_ttl(&self) -> Duration {
        self.sh.opts.attr_ttl
    }

    /// `(blocks, free blocks)` in 4 KiB units, from the account's quota and usage.
    pub async fn statfs(&self) -> FsResult<(u64, u64)> {
        let st = self.sh.storage.account_stat().await?;
        const UNIT: u64 = 4096;
        // Unlimited accounts (quota 0, or the original's 2^63-1) report 1 PiB so that tools
        // that check free space proceed.
        let unlimited = st.quota == 0 || st.quota >= crate::api::pithos::UNLIMITED_QUOTA;
        let total = if unlimited { 1u64 << 50 } else { st.quota };
        let used = st.bytes_used.min(total);
        Ok((total / UNIT, (total - used) / UNIT))
    }
}

#[cfg(test)]
pub mod fake;
#[cfg(test)]
mod tests;
