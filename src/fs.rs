//! The filesystem core: inodes, directories, open handles, the read path (block cache and
//! prefetch) and the write pipeline, generic over [`Storage`]. It knows neither fuser nor HTTP:
//! `fs/fuse.rs` translates kernel requests into calls here, and tests drive it directly against
//! an in-memory storage.

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

use crate::api::hashing::{block_count, block_len, BlockHash, BLOCK_SIZE};
use crate::client::{Listed, ObjectStat, Registry, Storage};
use cache::BlockCache;
pub use error::{FsError, FsResult};
pub use page_cache::PageCache;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use write::{Base, WriteState};

/// Longest name of one path component (what statfs reports and lookups enforce).
pub const NAME_MAX: usize = 255;

pub type Ino = u64;
pub const ROOT: Ino = 1;
const BS: u64 = BLOCK_SIZE as u64;
/// Listing page size (the server's maximum).
const PAGE: usize = 10_000;
/// Largest prefetch window, in blocks.
const MAX_WINDOW: u64 = 8;
/// How far from the furthest read a read may land and still count as sequential.
const NEAR: u64 = 8 << 20;

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

#[derive(Debug, Clone)]
struct Node {
    parent: Ino,
    name: String,
    kind: Kind,
    size: u64,
    mtime: i64,
    version: u64,
    /// When the attributes were last confirmed by the server (None: created here, not yet
    /// committed).
    fetched: Option<Instant>,
    /// Removed from its directory while open; kept until the last handle closes.
    unlinked: bool,
    /// Entries the kernel holds (each entry reply counts one; `forget` gives them back).
    lookups: u64,
    /// For `N.meta` of a registered image: the registry's live state in kamaki's layout,
    /// which is what reading the file gives (the stored bytes may be older).
    generated: Option<bytes::Bytes>,
    /// Part of a read-only view (`.versions`, `.images`).
    view: bool,
}

/// Where an inode is on the server.
#[derive(Debug, Clone, PartialEq)]
enum Loc {
    /// The account (lists containers).
    Account,
    /// `path` is empty for the container itself, else an object name (a file or directory).
    Object { container: String, path: String },
    /// `D/.versions`: one directory per file of `D` (`dir`, empty for the container).
    VersionRoot { container: String, dir: String },
    /// `D/.versions/N`: the versions of object `path`.
    Versions { container: String, path: String },
    /// `D/.versions/N/<id>`: one version of object `path`, read-only.
    Version {
        container: String,
        path: String,
        version: u64,
    },
    /// `/.images`: every image the account can see.
    Images,
    /// `/.images/<entry>`.
    ImageEntry { name: String },
}

/// The hidden directory of versions in every directory (reachable by name, never listed).
pub const VERSIONS_DIR: &str = ".versions";
/// The read-only view of every visible image, at the mount root.
pub const IMAGES_DIR: &str = ".images";

struct ReadHandle {
    ino: Ino,
    container: String,
    name: String,
    version: u64,
    size: u64,
    hashes: Arc<Vec<BlockHash>>,
    /// Sequential-read detection for prefetch.
    seq: Mutex<ReadSeq>,
    cache: PageCache,
}

impl ReadHandle {
    /// A reader pinned to `version`, prefetching one block ahead to start with.
    fn new(
        ino: Ino,
        (container, name): (String, String),
        version: u64,
        (size, hashes): (u64, Vec<BlockHash>),
        cache: PageCache,
    ) -> ReadHandle {
        ReadHandle {
            cache,
            ino,
            container,
            name,
            version,
            size,
            hashes: Arc::new(hashes),
            seq: Mutex::new(ReadSeq {
                last_end: 0,
                window: 1,
                prefetched: 1,
            }),
        }
    }
}

/// Where a reader is, for prefetch.
#[derive(Default)]
struct ReadSeq {
    /// The furthest byte read so far.
    last_end: u64,
    /// Blocks to keep fetched ahead.
    window: u64,
    /// Blocks below this index have been asked for.
    prefetched: u64,
}

struct WriteHandle {
    ino: Ino,
    state: tokio::sync::Mutex<WriteState>,
    /// The pending size, readable by getattr while a read or write holds `state`.
    size: AtomicU64,
    /// The file was unlinked or replaced while open: reads and writes go on, nothing is
    /// committed (a commit would bring the name back).
    orphaned: std::sync::atomic::AtomicBool,
}

impl WriteHandle {
    fn new(ino: Ino, state: WriteState) -> WriteHandle {
        let size = AtomicU64::new(state.size);
        WriteHandle {
            ino,
            state: tokio::sync::Mutex::new(state),
            size,
            orphaned: Default::default(),
        }
    }
}

enum Handle {
    Read(ReadHandle),
    /// A metafile's generated content, read as it was at open.
    Generated {
        ino: Ino,
        data: bytes::Bytes,
    },
    Write(Box<WriteHandle>),
    Dir(Vec<(String, Attr)>),
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
    nodes: Mutex<Nodes>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
}

#[derive(Default)]
struct Nodes {
    by_ino: HashMap<Ino, Node>,
    by_name: HashMap<(Ino, String), Ino>,
    next: Ino,
    /// Table size at which nodes the kernel does not hold are swept out.
    sweep_at: usize,
}

/// Nodes kept at least, before sweeping those the kernel has forgotten or never seen.
const SWEEP_MIN: usize = 16 << 10;

/// The states of `writers` (from [`Fs::writers_of`]), locked in order.
async fn lock_states(writers: &[Arc<Handle>]) -> Vec<tokio::sync::MutexGuard<'_, WriteState>> {
    let mut guards = Vec::with_capacity(writers.len());
    for h in writers {
        if let Handle::Write(w) = h.as_ref() {
            guards.push(w.state.lock().await);
        }
    }
    guards
}

fn to_systime(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64)
}

fn now_micros() -> i64 {
    crate::api::timefmt::now_micros()
}

fn check_name(name: &str) -> FsResult<()> {
    if name.is_empty() || name.contains('/') || name.contains('\0') {
        return Err(FsError::new(libc::EINVAL, format!("invalid name {name:?}")));
    }
    if name.len() > NAME_MAX {
        return Err(FsError::new(libc::ENAMETOOLONG, "name too long"));
    }
    Ok(())
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

    fn nodes(&self) -> std::sync::MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn node(&self, ino: Ino) -> FsResult<Node> {
        self.nodes()
            .by_ino
            .get(&ino)
            .cloned()
            .ok_or_else(|| FsError::new(libc::ENOENT, format!("stale inode {ino}")))
    }

    fn attr_of(&self, ino: Ino, n: &Node) -> Attr {
        let o = &self.sh.opts;
        Attr {
            ino,
            kind: n.kind,
            nlink: match (n.kind, n.unlinked) {
                (Kind::Dir, _) => 2,
                (Kind::File, true) => 0,
                (Kind::File, false) => 1,
            },
            size: match (&n.generated, n.kind) {
                (_, Kind::Dir) => 0,
                (Some(g), _) => g.len() as u64,
                (None, _) => n.size,
            },
            mtime: to_systime(n.mtime),
            // Views are read-only whatever the mount's modes say.
            perm: match (n.kind, n.view) {
                (Kind::Dir, false) => o.dir_mode,
                (Kind::File, false) => o.file_mode,
                (Kind::Dir, true) => o.dir_mode & 0o555,
                (Kind::File, true) => o.file_mode & 0o444,
            },
            uid: o.uid,
            gid: o.gid,
        }
    }

    /// The names from the mount root down to `ino`.
    fn names(&self, ino: Ino) -> FsResult<Vec<String>> {
        let nodes = self.nodes();
        let mut names = vec![];
        let mut cur = ino;
        while cur != ROOT {
            let n = nodes
                .by_ino
                .get(&cur)
                .ok_or_else(|| FsError::new(libc::ENOENT, format!("stale inode {ino}")))?;
            names.push(n.name.clone());
            cur = n.parent;
        }
        names.reverse();
        Ok(names)
    }

    fn loc(&self, ino: Ino) -> FsResult<Loc> {
        self.locate(self.names(ino)?)
    }

    fn child_loc(&self, parent: Ino, name: &str) -> FsResult<Loc> {
        let mut names = self.names(parent)?;
        names.push(name.to_string());
        self.locate(names)
    }

    /// What a path from the mount root names: the account, a container, an object, or one of
    /// the views (`.images` at the root, `.versions` in any directory of a container).
    fn locate(&self, mut names: Vec<String>) -> FsResult<Loc> {
        let deeper = || FsError::quiet(libc::ENOENT, "no such entry");
        if names.first().is_some_and(|n| n == IMAGES_DIR) {
            return match names.len() {
                1 => Ok(Loc::Images),
                2 => Ok(Loc::ImageEntry {
                    name: names.pop().unwrap_or_default(),
                }),
                _ => Err(FsError::quiet(libc::ENOTDIR, "an image entry is a file")),
            };
        }
        let (container, rest) = match &self.sh.opts.container {
            Some(c) => (c.clone(), names),
            None if names.is_empty() => return Ok(Loc::Account),
            None => {
                let rest = names.split_off(1);
                (names.pop().unwrap_or_default(), rest)
            }
        };
        let Some(at) = rest.iter().position(|n| n == VERSIONS_DIR) else {
            return Ok(Loc::Object {
                container,
                path: rest.join("/"),
            });
        };
        let dir = rest[..at].join("/");
        let join = |n: &str| {
            if dir.is_empty() {
                n.to_string()
            } else {
                format!("{dir}/{n}")
            }
        };
        match &rest[at + 1..] {
            [] => Ok(Loc::VersionRoot { container, dir }),
            [n] => Ok(Loc::Versions {
                container,
                path: join(n),
            }),
            [n, id] => Ok(Loc::Version {
                container,
                path: join(n),
                version: id.parse().map_err(|_| deeper())?,
            }),
            _ => Err(FsError::quiet(libc::ENOTDIR, "a version is a file")),
        }
    }

    /// Records what the server said about `parent/name` and returns its inode.
    fn remember(&self, parent: Ino, name: &str, kind: Kind, size: u64, mtime: i64, version: u64) -> Ino {
        let mut nodes = self.nodes();
        self.remember_locked(&mut nodes, parent, name, kind, size, mtime, version)
    }

    /// [`Self::remember`], returning the attributes (one lock, no copy of the node: listings
    /// do this for every entry).
    fn remember_attr(&self, parent: Ino, name: &str, kind: Kind, size: u64, mtime: i64, version: u64) -> Attr {
        let mut nodes = self.nodes();
        let ino = self.remember_locked(&mut nodes, parent, name, kind, size, mtime, version);
        self.attr_of(ino, &nodes.by_ino[&ino])
    }

    #[allow(clippy::too_many_arguments)]
    fn remember_locked(
        &self,
        nodes: &mut Nodes,
        parent: Ino,
        name: &str,
        kind: Kind,
        size: u64,
        mtime: i64,
        version: u64,
    ) -> Ino {
        if nodes.by_ino.len() >= nodes.sweep_at {
            self.sweep(nodes);
        }
        let key = (parent, name.to_string());
        let ino = match nodes.by_name.get(&key) {
            Some(&ino) if nodes.by_ino.get(&ino).is_some_and(|n| n.kind == kind) => ino,
            _ => {
                let ino = nodes.next;
                nodes.next += 1;
                nodes.by_name.insert(key, ino);
                ino
            }
        };
        // What the server said replaces what was known, generated content included: the
        // callers that know a metafile's live state set it afterwards.
        let node = Node {
            parent,
            name: String::new(),
            kind,
            size,
            mtime,
            version,
            fetched: Some(Instant::now()),
            unlinked: false,
            lookups: 0,
            generated: None,
            view: false,
        };
        match nodes.by_ino.get_mut(&ino) {
            Some(n) => {
                let name = std::mem::take(&mut n.name);
                *n = Node {
                    lookups: n.lookups,
                    name,
                    ..node
                };
            }
            None => {
                nodes.by_ino.insert(
                    ino,
                    Node {
                        name: name.to_string(),
                        ..node
                    },
                );
            }
        }
        ino
    }

    /// Listings remember every entry, most of which the kernel never looks up: drop the nodes
    /// it holds no entry for, keeping what only this mount knows (uncommitted files, open
    /// files) and the parents of what is kept.
    fn sweep(&self, nodes: &mut Nodes) {
        let open: HashSet<Ino> = {
            let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
            if handles.values().any(|h| matches!(h.as_ref(), Handle::Dir(_))) {
                // A directory being read may still hand out inodes from its snapshot.
                return;
            }
            handles
                .values()
                .filter_map(|h| match h.as_ref() {
                    Handle::Write(w) => Some(w.ino),
                    Handle::Read(r) => Some(r.ino),
                    Handle::Generated { ino, .. } => Some(*ino),
                    Handle::Dir(_) => None,
                })
                .collect()
        };
        let mut keep: HashSet<Ino> = HashSet::new();
        for (&ino, n) in &nodes.by_ino {
            if ino == ROOT || n.lookups > 0 || n.fetched.is_none() || open.contains(&ino) {
                let mut cur = ino;
                while keep.insert(cur) && cur != ROOT {
                    match nodes.by_ino.get(&cur) {
                        Some(n) => cur = n.parent,
                        None => break,
                    }
                }
            }
        }
        let before = nodes.by_ino.len();
        nodes.by_ino.retain(|ino, _| keep.contains(ino));
        nodes.by_name.retain(|_, ino| keep.contains(ino));
        nodes.sweep_at = (2 * nodes.by_ino.len()).max(SWEEP_MIN);
        tracing::debug!(before, after = nodes.by_ino.len(), "swept the inode table");
    }

    /// A listed entry about to be handed to the kernel: counted on the node now known by
    /// that name (made anew from the listing if it was forgotten since), whose attributes it
    /// returns.
    fn announce(&self, parent: Ino, name: &str, listed: &Attr) -> Attr {
        let mut nodes = self.nodes();
        // Usually the node of the listing is still there: count it without a copy.
        if let Some(n) = nodes.by_ino.get_mut(&listed.ino) {
            if n.parent == parent && n.kind == listed.kind && n.name == name && !n.unlinked {
                n.lookups += 1;
                return self.attr_of(listed.ino, n);
            }
        }
        let key = (parent, name.to_string());
        let ino = match nodes.by_name.get(&key) {
            Some(&ino) if nodes.by_ino.get(&ino).is_some_and(|n| n.kind == listed.kind) => ino,
            _ => {
                let ino = nodes.next;
                nodes.next += 1;
                nodes.by_name.insert(key, ino);
                let mtime = listed
                    .mtime
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as i64);
                nodes.by_ino.insert(
                    ino,
                    Node {
                        parent,
                        name: name.to_string(),
                        kind: listed.kind,
                        size: listed.size,
                        mtime,
                        version: 0,
                        fetched: Some(Instant::now()),
                        unlinked: false,
                        lookups: 0,
                        generated: None,
                        view: false,
                    },
                );
                ino
            }
        };
        let n = nodes.by_ino.get_mut(&ino).expect("found or inserted above");
        n.lookups += 1;
        self.attr_of(ino, n)
    }

    /// The kernel now holds one more entry for `ino`.
    fn count_lookup(&self, ino: Ino) {
        if let Some(n) = self.nodes().by_ino.get_mut(&ino) {
            n.lookups += 1;
        }
    }

    /// The kernel dropped `count` entries for `ino`; with none left and nothing open, the
    /// inode goes (a later lookup makes a new one). Parents of known nodes stay: paths are
    /// built from them.
    pub fn forget(&self, ino: Ino, count: u64) {
        if ino == ROOT {
            return;
        }
        let open = self.has_handles(ino);
        let mut nodes = self.nodes();
        let Some(n) = nodes.by_ino.get_mut(&ino) else { return };
        n.lookups = n.lookups.saturating_sub(count);
        if n.lookups == 0 {
            self.pages.forget(ino);
        }
        if n.lookups > 0 || open || n.fetched.is_none() {
            return;
        }
        let key = (n.parent, n.name.clone());
        let is_dir = n.kind == Kind::Dir;
        if is_dir && nodes.by_ino.values().any(|c| c.parent == ino) {
            return;
        }
        nodes.by_ino.remove(&ino);
        if nodes.by_name.get(&key) == Some(&ino) {
            nodes.by_name.remove(&key);
        }
    }

    /// Drops a name; its inode lives on (unlinked) while handles are open on it.
    fn forget_name(&self, parent: Ino, name: &str) {
        let open = {
            let nodes = self.nodes();
            nodes
                .by_name
                .get(&(parent, name.to_string()))
                .copied()
                .filter(|ino| self.has_handles(*ino))
        };
        let mut nodes = self.nodes();
        if let Some(ino) = nodes.by_name.remove(&(parent, name.to_string())) {
            if Some(ino) == open {
                if let Some(n) = nodes.by_ino.get_mut(&ino) {
                    n.unlinked = true;
                }
            } else {
                nodes.by_ino.remove(&ino);
            }
        }
    }

    fn has_handles(&self, ino: Ino) -> bool {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        handles.values().any(|h| match h.as_ref() {
            Handle::Write(w) => w.ino == ino,
            Handle::Read(r) => r.ino == ino,
            Handle::Generated { ino: g, .. } => *g == ino,
            Handle::Dir(_) => false,
        })
    }

    /// An open writer's size is newer than the server's.
    fn pending_size(&self, ino: Ino) -> Option<u64> {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        handles.values().find_map(|h| match h.as_ref() {
            Handle::Write(w) if w.ino == ino => Some(w.size.load(Ordering::SeqCst)),
            _ => None,
        })
    }

    /// The write handles open on `ino`. A name operation (unlink, rename) locks their states
    /// first: a release may be committing just then (a file closed and at once removed or
    /// renamed, as vim does with its probe file), and the operation must see that commit
    /// done or not started. Lock order: the source's writers, then the target's.
    fn writers_of(&self, ino: Ino) -> Vec<Arc<Handle>> {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        handles
            .values()
            .filter(|h| matches!(h.as_ref(), Handle::Write(w) if w.ino == ino))
            .cloned()
            .collect()
    }

    /// Open writers of `ino` stop committing: the name now belongs to something else, or to
    /// nothing.
    fn orphan_writers(&self, ino: Ino) {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        for h in handles.values() {
            if let Handle::Write(w) = h.as_ref() {
                if w.ino == ino {
                    w.orphaned.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Whether `fh` is a handle that writes.
    /// How a reader uses the kernel's page cache (`None` for other handles).
    pub fn page_cache_of(&self, fh: u64) -> Option<PageCache> {
        match self.handle(fh).ok()?.as_ref() {
            Handle::Read(r) => Some(r.cache),
            _ => None,
        }
    }

    pub fn is_writer(&self, fh: u64) -> bool {
        self.handle(fh).is_ok_and(|h| matches!(h.as_ref(), Handle::Write(_)))
    }

    fn has_writer(&self, ino: Ino) -> bool {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        handles
            .values()
            .any(|h| matches!(h.as_ref(), Handle::Write(w) if w.ino == ino))
    }

    /// What the kernel asks: the entry `parent/name`, counted as held by the kernel.
    pub async fn lookup(&self, parent: Ino, name: &str) -> FsResult<Attr> {
        let attr = self.resolve(parent, name).await?;
        self.count_lookup(attr.ino);
        Ok(attr)
    }

    async fn resolve(&self, parent: Ino, name: &str) -> FsResult<Attr> {
        if name.len() > NAME_MAX {
            return Err(FsError::quiet(libc::ENAMETOOLONG, "name too long"));
        }
        // Fresh knowledge (from a listing or an earlier lookup) answers without a request.
        let cached = {
            let nodes = self.nodes();
            nodes
                .by_name
                .get(&(parent, name.to_string()))
                .and_then(|ino| nodes.by_ino.get(ino).map(|n| (*ino, n.clone())))
        };
        if let Some((ino, n)) = cached {
            let fresh = match n.fetched {
                None => true,
                Some(t) => t.elapsed() < self.sh.opts.attr_ttl,
            };
            if fresh || self.has_writer(ino) {
                return Ok(self.attr_of(ino, &n));
            }
        }
        match self.child_loc(parent, name)? {
            Loc::Account => Err(FsError::quiet(libc::ENOENT, "no such entry")),
            Loc::Object { container, path } if path.is_empty() => {
                if self.sh.storage.container_exists(&container).await? {
                    let ino = self.remember(parent, name, Kind::Dir, 0, now_micros(), 0);
                    Ok(self.attr_of(ino, &self.node(ino)?))
                } else {
                    self.forget_name(parent, name);
                    Err(FsError::quiet(libc::ENOENT, format!("no container {container}")))
                }
            }
            Loc::Object { container, path } => {
                let live = self.live_metafile(&container, &path).await;
                if let Some(st) = self.sh.storage.head(&container, &path).await? {
                    let kind = if st.is_dir() { Kind::Dir } else { Kind::File };
                    let ino = self.remember(parent, name, kind, st.size, st.mtime, st.version);
                    self.set_generated(ino, live);
                    return Ok(self.attr_of(ino, &self.node(ino)?));
                }
                if live.is_some() {
                    // A registered image without a stored metafile still shows one.
                    let ino = self.remember(parent, name, Kind::File, 0, now_micros(), 0);
                    self.set_generated(ino, live);
                    return Ok(self.attr_of(ino, &self.node(ino)?));
                }
                if self.sh.storage.has_children(&container, &format!("{path}/")).await? {
                    let ino = self.remember(parent, name, Kind::Dir, 0, now_micros(), 0);
                    return Ok(self.attr_of(ino, &self.node(ino)?));
                }
                self.forget_name(parent, name);
                Err(FsError::quiet(libc::ENOENT, format!("no object {container}/{path}")))
            }
            view => {
                let found = self.resolve_view(parent, name, view).await;
                if found.is_err() {
                    self.forget_name(parent, name);
                }
                found
            }
        }
    }

    pub async fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let n = self.node(ino)?;
        let stale = !n.unlinked && n.fetched.is_some_and(|t| t.elapsed() >= self.sh.opts.attr_ttl);
        if ino != ROOT && stale && n.kind == Kind::File && !self.has_writer(ino) {
            if let Loc::Object { container, path } = self.loc(ino)? {
                let live = self.live_metafile(&container, &path).await;
                match self.sh.storage.head(&container, &path).await? {
                    Some(st) => {
                        let mut nodes = self.nodes();
                        if let Some(node) = nodes.by_ino.get_mut(&ino) {
                            node.size = st.size;
                            node.mtime = st.mtime;
                            node.version = st.version;
                            node.fetched = Some(Instant::now());
                            node.generated = live;
                        }
                    }
                    None if live.is_some() => {
                        let mut nodes = self.nodes();
                        if let Some(node) = nodes.by_ino.get_mut(&ino) {
                            node.fetched = Some(Instant::now());
                            node.generated = live;
                        }
                    }
                    None => return Err(FsError::quiet(libc::ENOENT, format!("{container}/{path} is gone"))),
                }
            }
        }
        let mut attr = self.attr_of(ino, &self.node(ino)?);
        if let Some(size) = self.pending_size(ino) {
            attr.size = size;
        }
        Ok(attr)
    }

    /// All entries of a directory (paged through the server's listing), remembered as inodes.
    async fn list_dir(&self, ino: Ino) -> FsResult<Vec<(String, Attr)>> {
        let mut out = vec![];
        match self.loc(ino)? {
            Loc::Account => {
                for c in self.sh.storage.list_containers().await? {
                    let attr = self.remember_attr(ino, &c.name, Kind::Dir, 0, c.mtime, 0);
                    out.push((c.name, attr));
                }
            }
            Loc::Object { container, path } => {
                let prefix = if path.is_empty() {
                    String::new()
                } else {
                    format!("{path}/")
                };
                // The registry's view of this directory's metafiles is asked meanwhile.
                let listing = async {
                    let mut out = vec![];
                    let mut seen_dirs = std::collections::HashSet::new();
                    listing::each_child(self.sh.storage.as_ref(), &container, &prefix, PAGE, |rest, e| {
                        let (kind, size, mtime, version) = match e {
                            Listed::Object(o) => (
                                if o.is_dir() { Kind::Dir } else { Kind::File },
                                o.size,
                                o.mtime,
                                o.version,
                            ),
                            Listed::Prefix(_) => (Kind::Dir, 0, now_micros(), 0),
                        };
                        let name = match e {
                            Listed::Prefix(_) => rest.trim_end_matches('/'),
                            Listed::Object(_) => rest,
                        };
                        // A name with a trailing '/' or an empty segment cannot be a file name here.
                        if name.is_empty() || name.contains('/') {
                            return;
                        }
                        if kind == Kind::Dir && !seen_dirs.insert(name.to_string()) {
                            return;
                        }
                        let attr = self.remember_attr(ino, name, kind, size, mtime, version);
                        out.push((name.to_string(), attr));
                    })
                    .await?;
                    Ok::<_, FsError>(out)
                };
                let (listed, metafiles) = tokio::join!(listing, self.live_metafiles_in(&container, &prefix));
                out = listed?;
                // A name can be both a file and a prefix; show it once, as the file.
                let files: std::collections::HashSet<String> = out
                    .iter()
                    .filter(|(_, a)| a.kind == Kind::File)
                    .map(|(n, _)| n.clone())
                    .collect();
                out.retain(|(n, a)| a.kind == Kind::File || !files.contains(n));
                for (meta, data) in metafiles {
                    let existing = out.iter().position(|(n, _)| *n == meta);
                    let child = match existing {
                        Some(i) => out[i].1.ino,
                        None => self.remember(ino, &meta, Kind::File, 0, now_micros(), 0),
                    };
                    self.set_generated(child, Some(data));
                    let attr = self.attr_of(child, &self.node(child)?);
                    match existing {
                        Some(i) => out[i].1 = attr,
                        None => out.push((meta, attr)),
                    }
                }
                out.sort_by(|a, b| a.0.cmp(&b.0));
            }
            view => return self.list_view(ino, view).await,
        }
        // Files created here and not yet committed are listed too.
        let nodes = self.nodes();
        for (k, &child) in nodes.by_name.iter().filter(|((p, _), _)| *p == ino) {
            if let Some(n) = nodes.by_ino.get(&child) {
                if n.fetched.is_none() && !out.iter().any(|(name, _)| *name == k.1) {
                    out.push((k.1.clone(), self.attr_of(child, n)));
                }
            }
        }
        Ok(out)
    }

    pub async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        if self.node(ino)?.kind != Kind::Dir {
            return Err(FsError::new(libc::ENOTDIR, "not a directory"));
        }
        let entries = self.list_dir(ino).await?;
        Ok(self.add_handle(Handle::Dir(entries)))
    }

    /// Entries from `offset` (0 = start; `.` and `..` come first).
    pub fn readdir(&self, ino: Ino, fh: u64, offset: u64, sink: &mut dyn DirSink) -> FsResult<()> {
        let h = self.handle(fh)?;
        let Handle::Dir(entries) = h.as_ref() else {
            return Err(FsError::new(libc::EBADF, "not a directory handle"));
        };
        let me = self.node(ino)?;
        let dot = self.attr_of(ino, &me);
        let dotdot = self.attr_of(me.parent, &self.node(me.parent)?);
        let mut i = offset;
        loop {
            let full = match i {
                0 => sink.add(ino, 1, ".", &dot),
                1 => sink.add(me.parent, 2, "..", &dotdot),
                n => match entries.get((n - 2) as usize) {
                    Some((name, attr)) if sink.gives_entries() => {
                        let attr = self.announce(ino, name, attr);
                        let full = sink.add(attr.ino, n + 1, name, &attr);
                        if full {
                            self.forget(attr.ino, 1);
                        }
                        full
                    }
                    Some((name, attr)) => sink.add(attr.ino, n + 1, name, attr),
                    None => return Ok(()),
                },
            };
            if full {
                return Ok(());
            }
            i += 1;
        }
    }

    fn add_handle(&self, h: Handle) -> u64 {
        if let Handle::Write(w) = &h {
            self.pages.changed(w.ino);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(h));
        fh
    }

    fn handle(&self, fh: u64) -> FsResult<Arc<Handle>> {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::new(libc::EBADF, "bad file handle"))
    }

    pub fn release_handle(&self, fh: u64) {
        let h = self.handles.lock().unwrap_or_else(|p| p.into_inner()).remove(&fh);
        let ino = match h.as_deref() {
            Some(Handle::Write(w)) => w.ino,
            Some(Handle::Read(r)) => {
                self.pages.release(r.ino, r.cache);
                r.ino
            }
            Some(Handle::Generated { ino, .. }) => *ino,
            _ => return,
        };
        if !self.has_handles(ino) {
            let mut nodes = self.nodes();
            if nodes.by_ino.get(&ino).is_some_and(|n| n.unlinked) {
                nodes.by_ino.remove(&ino);
            }
        }
    }

    fn object_loc(&self, ino: Ino) -> FsResult<(String, String)> {
        match self.loc(ino)? {
            Loc::Object { container, path } if !path.is_empty() => Ok((container, path)),
            _ => Err(FsError::new(libc::EISDIR, "is a directory")),
        }
    }

    /// Opens a file. Readers pin the version current at open; writers (and O_TRUNC) get a
    /// write handle whose content is committed on flush/fsync/release.
    pub async fn open(&self, ino: Ino, flags: i32) -> FsResult<u64> {
        let n = self.node(ino)?;
        if n.kind == Kind::Dir {
            return Err(FsError::new(libc::EISDIR, "is a directory"));
        }
        let acc = flags & libc::O_ACCMODE;
        let writing = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if n.view {
            return self.open_view(ino, self.loc(ino)?, writing).await;
        }
        if writing && self.sh.opts.read_only {
            return Err(FsError::new(libc::EROFS, "read-only mount"));
        }
        let (container, name) = self.object_loc(ino)?;
        if let Some(data) = self.live_metafile_of(ino, &container, &name).await {
            if !writing {
                return Ok(self.add_handle(Handle::Generated { ino, data }));
            }
            if flags & libc::O_TRUNC == 0 {
                // An in-place edit of a stored metafile starts from what a reader sees. Without
                // a stored one (vim renamed it away to write anew), the writer starts empty.
                let state = match self.sh.storage.head(&container, &name).await? {
                    Some(st) => {
                        let known = self.hashmap_of(&container, &name, st.version).await?.1;
                        let mut state =
                            WriteState::empty(&container, known, crate::api::pithos::OCTET_STREAM.to_string());
                        state.write(&self.sh, 0, &data).await?;
                        state.changed = false;
                        state
                    }
                    None => WriteState::empty(&container, vec![], crate::api::pithos::OCTET_STREAM.to_string()),
                };
                return Ok(self.add_handle(Handle::Write(Box::new(WriteHandle::new(ino, state)))));
            }
        }
        let current = if n.fetched.is_none() {
            None
        } else {
            self.sh.storage.head(&container, &name).await?
        };
        if !writing {
            let st = current.ok_or_else(|| FsError::new(libc::ENOENT, format!("{container}/{name} is gone")))?;
            let (size, hashes) = self.hashmap_of(&container, &name, st.version).await?;
            self.update_node(ino, &st);
            let cache = self.pages.admit(ino, st.version);
            return Ok(self.add_handle(Handle::Read(ReadHandle::new(
                ino,
                (container, name),
                st.version,
                (size, hashes),
                cache,
            ))));
        }
        let state = match (current, flags & libc::O_TRUNC != 0) {
            (Some(st), trunc) => {
                let (size, hashes) = self.hashmap_of(&container, &name, st.version).await?;
                let ct = if st.content_type.is_empty() {
                    crate::api::pithos::OCTET_STREAM.to_string()
                } else {
                    st.content_type.clone()
                };
                if trunc {
                    WriteState::emptied_at_open(&container, hashes, ct)
                } else {
                    let base = Base {
                        container: container.clone(),
                        name: name.clone(),
                        version: st.version,
                        size,
                    };
                    WriteState::from_base(base, hashes, ct)
                }
            }
            (None, _) => WriteState::emptied_at_open(&container, vec![], crate::api::pithos::OCTET_STREAM.to_string()),
        };
        Ok(self.add_handle(Handle::Write(Box::new(WriteHandle::new(ino, state)))))
    }

    fn update_node(&self, ino: Ino, st: &ObjectStat) {
        if let Some(node) = self.nodes().by_ino.get_mut(&ino) {
            node.size = st.size;
            node.mtime = st.mtime;
            node.version = st.version;
            node.fetched = Some(Instant::now());
        }
    }

    /// Creates a file (not on the server until the handle commits) and opens it for writing.
    pub async fn create(&self, parent: Ino, name: &str, flags: i32) -> FsResult<(Attr, u64)> {
        check_name(name)?;
        if self.sh.opts.read_only {
            return Err(FsError::new(libc::EROFS, "read-only mount"));
        }
        let (container, path) = match self.child_loc(parent, name)? {
            Loc::Object { container, path } => (container, path),
            Loc::Account => {
                return Err(FsError::new(
                    libc::EPERM,
                    "only directories (containers) can be made at the top",
                ))
            }
            _ => return Err(FsError::new(libc::EROFS, "versions and the image list are read-only")),
        };
        if path.is_empty() {
            return Err(FsError::new(
                libc::EPERM,
                "only directories (containers) can be made at the top",
            ));
        }
        match self.resolve(parent, name).await {
            Ok(a) if flags & libc::O_EXCL != 0 => {
                return Err(FsError::quiet(libc::EEXIST, format!("{} exists", a.ino)))
            }
            Ok(a) => {
                let fh = self.open(a.ino, flags | libc::O_TRUNC).await?;
                self.count_lookup(a.ino);
                return Ok((self.getattr(a.ino).await?, fh));
            }
            Err(e) if e.errno == libc::ENOENT => {}
            Err(e) => return Err(e),
        }
        let ino = {
            let mut nodes = self.nodes();
            let ino = nodes.next;
            nodes.next += 1;
            nodes.by_name.insert((parent, name.to_string()), ino);
            nodes.by_ino.insert(
                ino,
                Node {
                    parent,
                    name: name.to_string(),
                    kind: Kind::File,
                    size: 0,
                    mtime: now_micros(),
                    version: 0,
                    fetched: None,
                    unlinked: false,
                    lookups: 1,
                    generated: None,
                    view: false,
                },
            );
            ino
        };
        let state = WriteState::emptied_at_open(&container, vec![], crate::api::pithos::OCTET_STREAM.to_string());
        let fh = self.add_handle(Handle::Write(Box::new(WriteHandle::new(ino, state))));
        Ok((self.attr_of(ino, &self.node(ino)?), fh))
    }

    /// `mknod` of a regular file (what `tar --xattrs` does, to set attributes before the
    /// data): an empty file, committed at once, as `touch` makes it.
    pub async fn make_file(&self, parent: Ino, name: &str) -> FsResult<Attr> {
        let (attr, fh) = self.create(parent, name, libc::O_WRONLY | libc::O_EXCL).await?;
        self.release(fh).await?;
        self.getattr(attr.ino).await
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<bytes::Bytes> {
        let h = self.handle(fh)?;
        match h.as_ref() {
            Handle::Write(w) => {
                let mut state = w.state.lock().await;
                self.checkpoint_if_needed(w, &mut state, offset, size as u64).await?;
                Ok(state.read(&self.sh, offset, size).await?.into())
            }
            Handle::Dir(_) => Err(FsError::new(libc::EISDIR, "is a directory")),
            Handle::Read(r) => self.read_pinned(r, offset, size).await,
            Handle::Generated { data, .. } => {
                let start = (offset as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                Ok(data.slice(start..end))
            }
        }
    }

    async fn read_pinned(&self, r: &ReadHandle, offset: u64, size: u32) -> FsResult<bytes::Bytes> {
        if offset >= r.size || size == 0 {
            return Ok(bytes::Bytes::new());
        }
        let end = (offset + size as u64).min(r.size);
        let first = offset / BS;
        let last = (end - 1) / BS;
        // Sequential reads grow the prefetch window; a seek resets it. The kernel's readahead
        // arrives on several threads, slightly out of order, so "sequential" means near the
        // furthest read so far. Prefetch is issued only for blocks not yet asked for.
        let (from, to) = {
            let mut seq = r.seq.lock().unwrap_or_else(|p| p.into_inner());
            let near = offset.abs_diff(seq.last_end) <= NEAR;
            let total = block_count(r.size);
            if !near {
                seq.window = 1;
                seq.last_end = end;
                seq.prefetched = last + 1;
                (0, 0)
            } else {
                seq.last_end = seq.last_end.max(end);
                if last + seq.window >= seq.prefetched {
                    seq.window = (seq.window * 2).min(MAX_WINDOW);
                    let from = seq.prefetched.max(last + 1);
                    let to = (last + 1 + seq.window).min(total);
                    seq.prefetched = seq.prefetched.max(to);
                    (from, to)
                } else {
                    (0, 0)
                }
            }
        };
        for idx in from..to {
            let fut = self.fetch_block(r, idx);
            tokio::spawn(async move {
                let _ = fut.await;
            });
        }
        if first == last {
            // The usual read lies inside one block: answer with a view of the cached block.
            let data = self.fetch_block(r, first).await?;
            let (lo, hi) = ((offset - first * BS) as usize, (end - first * BS) as usize);
            if hi <= data.len() {
                return Ok(data.slice(lo..hi));
            }
        }
        let mut out = vec![0u8; (end - offset) as usize];
        for idx in first..=last {
            // Cached blocks are stored without their trailing zeros: copy what is there, the
            // rest of `out` is already zero.
            let data = self.fetch_block(r, idx).await?;
            let bstart = idx * BS;
            let lo = offset.max(bstart) - bstart;
            let hi = end.min(bstart + BS) - bstart;
            let avail_hi = hi.min(data.len() as u64);
            if avail_hi > lo {
                let dst = (bstart + lo - offset) as usize;
                out[dst..dst + (avail_hi - lo) as usize].copy_from_slice(&data[lo as usize..avail_hi as usize]);
            }
        }
        Ok(out.into())
    }

    /// A block of a pinned version, through the cache.
    fn fetch_block(
        &self,
        r: &ReadHandle,
        idx: u64,
    ) -> impl std::future::Future<Output = FsResult<bytes::Bytes>> + Send + 'static {
        let h = r.hashes[idx as usize];
        let cache = self.sh.cache.clone();
        let verify = self.sh.opts.verify_reads;
        let storage = self.sh.storage.clone();
        let (container, name, version) = (r.container.clone(), r.name.clone(), r.version);
        let len = block_len(r.size, idx) as u64;
        async move {
            let fetch = Box::pin(async move {
                storage
                    .read(&container, &name, version, idx * BS, len)
                    .await
                    .map_err(FsError::from)
            });
            cache.get_or_fetch(h, verify, fetch).await
        }
    }

    /// A version's size and block hashes, checked: one hash per block of the size (more or
    /// fewer would have reads index past the map, or stop short of the data).
    async fn hashmap_of(&self, container: &str, name: &str, version: u64) -> FsResult<(u64, Vec<BlockHash>)> {
        let (size, hashes) = self.sh.storage.hashmap(container, name, version).await?;
        let blocks = size.div_ceil(BS);
        if hashes.len() as u64 != blocks && !(size == 0 && hashes.len() <= 1) {
            return Err(FsError::new(
                libc::EIO,
                format!(
                    "GET {container}/{name}?hashmap&version={version}: {} hashes for {size} bytes ({blocks} blocks)",
                    hashes.len()
                ),
            ));
        }
        Ok((size, hashes))
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.handle(fh)?;
        let Handle::Write(w) = h.as_ref() else {
            return Err(FsError::new(libc::EBADF, "not open for writing"));
        };
        let mut state = w.state.lock().await;
        self.checkpoint_if_needed(w, &mut state, offset, data.len() as u64)
            .await?;
        state.write(&self.sh, offset, data).await?;
        w.size.store(state.size, Ordering::SeqCst);
        Ok(data.len() as u32)
    }

    /// A block this handle uploaded is in no version yet, so once the cache has dropped it,
    /// only a commit makes it readable again (from the server). Rare: a writer that rereads
    /// or rewrites part of what it wrote well before. The commit shows an intermediate
    /// version, as an fsync would.
    async fn checkpoint_if_needed(
        &self,
        w: &WriteHandle,
        state: &mut WriteState,
        offset: u64,
        len: u64,
    ) -> FsResult<()> {
        if w.orphaned.load(Ordering::SeqCst) || !state.needs_checkpoint(&self.sh, offset, len) {
            return Ok(());
        }
        tracing::info!(
            ino = w.ino,
            offset,
            "committing early: a block written before is needed again and no longer cached"
        );
        self.commit_locked(w, state, false).await
    }

    /// A close of one descriptor: commits the content if it changed. A file emptied at open
    /// and not written since waits while the closing process still holds it by another
    /// descriptor (`still_held`, asked only then): a shell's redirect closes a duplicate
    /// before the command writes, and this mount already answers as if truncated. The next
    /// flush, an fsync or the release commits it.
    pub async fn flush(&self, fh: u64, still_held: impl FnOnce() -> bool) -> FsResult<()> {
        self.commit_if_changed(fh, Some(still_held)).await
    }

    /// Commits the content if it changed, now.
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        self.commit_if_changed(fh, None::<fn() -> bool>).await
    }

    async fn commit_if_changed(&self, fh: u64, still_held: Option<impl FnOnce() -> bool>) -> FsResult<()> {
        let h = self.handle(fh)?;
        let Handle::Write(w) = h.as_ref() else { return Ok(()) };
        let mut state = w.state.lock().await;
        if !state.changed || w.orphaned.load(Ordering::SeqCst) {
            return Ok(());
        }
        if state.emptied_unwritten && still_held.is_some_and(|held| held()) {
            tracing::debug!(ino = w.ino, "emptied, not written yet, still open: committed later");
            return Ok(());
        }
        self.commit_locked(w, &mut state, true).await
    }

    /// Commits a writer's content; a final commit (not a checkpoint) then brings the image
    /// registry in step.
    async fn commit_locked(&self, w: &WriteHandle, state: &mut WriteState, last: bool) -> FsResult<()> {
        self.forget_xattr_snapshot();
        let (container, name) = self.object_loc(w.ino)?;
        let metafile = if last && crate::api::metafile::image_name(&name).is_some() {
            let bytes = if state.size as usize > crate::api::metafile::MAX_BYTES {
                vec![]
            } else {
                state.read(&self.sh, 0, state.size as u32).await?
            };
            Some((state.size, bytes))
        } else {
            None
        };
        // A new version keeps the object's user metadata, as a file keeps its attributes.
        if self.node(w.ino)?.fetched.is_some() {
            if let Some(info) = self.sh.storage.object_info(&container, &name, None).await? {
                state.meta = info.meta;
            }
        }
        let version = state.commit(&self.sh, &container, &name).await?;
        let size = state.size;
        if let Some(node) = self.nodes().by_ino.get_mut(&w.ino) {
            node.size = size;
            node.version = version;
            node.mtime = now_micros();
            node.fetched = Some(Instant::now());
        }
        if last {
            self.registry_follows(w.ino, &container, &name, metafile).await?;
        }
        Ok(())
    }

    /// After a commit of `container/name` (written, or copied onto): the registry follows.
    /// A metafile's attributes are asked again, since what it reads as (and its size) now
    /// comes from the registry.
    async fn registry_follows(
        &self,
        ino: Ino,
        container: &str,
        name: &str,
        metafile: Option<(u64, Vec<u8>)>,
    ) -> FsResult<()> {
        let res = self.registry_after_commit(container, name, metafile).await;
        self.forget_xattr_snapshot();
        if crate::api::metafile::image_name(name).is_some() {
            if let Some(node) = self.nodes().by_ino.get_mut(&ino) {
                let now = Instant::now();
                node.fetched = Some(now.checked_sub(self.sh.opts.attr_ttl).unwrap_or(now));
            }
        }
        res
    }

    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let r = self.fsync(fh).await;
        self.release_handle(fh);
        r
    }

    /// `copy_file_range` of a whole file into an empty one (what `cp` does) is a server-side
    /// copy: no data passes through here. Anything else answers EOPNOTSUPP, on which the
    /// kernel falls back to reading and writing.
    pub async fn copy_file_range(&self, fh_in: u64, off_in: u64, fh_out: u64, off_out: u64, len: u64) -> FsResult<u64> {
        let unsupported = || {
            FsError::quiet(
                libc::EOPNOTSUPP,
                "only whole-file copies into an empty file are server-side",
            )
        };
        let hin = self.handle(fh_in)?;
        let hout = self.handle(fh_out)?;
        let Handle::Read(src) = hin.as_ref() else {
            return Err(unsupported());
        };
        let Handle::Write(dst) = hout.as_ref() else {
            return Err(FsError::new(libc::EBADF, "not open for writing"));
        };
        if off_in >= src.size {
            return Ok(0);
        }
        let mut state = dst.state.lock().await;
        // The kernel's reply holds 32 bits: a copy of a larger object continues here, already done.
        if off_in == off_out && off_in > 0 && state.is_clean_copy_of(src.size, &src.hashes) {
            return Ok(src.size - off_in);
        }
        if off_in != 0 || off_out != 0 || state.size != 0 || len < src.size {
            return Err(unsupported());
        }
        let (dc, dn) = self.object_loc(dst.ino)?;
        let version = self
            .sh
            .storage
            .copy(&src.container, &src.name, src.version, &dc, &dn)
            .await?;
        let (size, hashes) = self.hashmap_of(&dc, &dn, version).await?;
        *state = WriteState::from_base(
            Base {
                container: dc,
                name: dn,
                version,
                size,
            },
            hashes,
            state.content_type.clone(),
        );
        dst.size.store(size, Ordering::SeqCst);
        drop(state);
        if let Some(node) = self.nodes().by_ino.get_mut(&dst.ino) {
            node.size = size;
            node.version = version;
            node.mtime = now_micros();
            node.fetched = Some(Instant::now());
        }
        // A copy is a commit: onto `N.meta` it registers, onto a registered `N` it re-registers.
        if let Ok((dc, dn)) = self.object_loc(dst.ino) {
            self.registry_follows(dst.ino, &dc, &dn, None).await?;
        }
        Ok(size)
    }

    /// `truncate`/`ftruncate`: through the open handle, or as a commit of its own.
    pub async fn set_size(&self, ino: Ino, fh: Option<u64>, size: u64) -> FsResult<Attr> {
        if self.sh.opts.read_only {
            return Err(FsError::new(libc::EROFS, "read-only mount"));
        }
        let handle = match fh {
            Some(fh) => Some(self.handle(fh)?),
            None => {
                let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
                handles
                    .values()
                    .find(|h| matches!(h.as_ref(), Handle::Write(w) if w.ino == ino))
                    .cloned()
            }
        };
        if let Some(h) = handle {
            if let Handle::Write(w) = h.as_ref() {
                let mut state = w.state.lock().await;
                if size < state.size {
                    self.checkpoint_if_needed(w, &mut state, size.saturating_sub(1), 1)
                        .await?;
                }
                state.resize(&self.sh, size).await?;
                w.size.store(state.size, Ordering::SeqCst);
                drop(state);
                return self.getattr(ino).await;
            }
        }
        let fh = self.open(ino, libc::O_WRONLY).await?;
        let res = async {
            let h = self.handle(fh)?;
            if let Handle::Write(w) = h.as_ref() {
                w.state.lock().await.resize(&self.sh, size).await?;
            }
            self.fsync(fh).await
        }
        .await;
        self.release_handle(fh);
        res?;
        self.getattr(ino).await
    }

    pub async fn mkdir(&self, parent: Ino, name: &str) -> FsResult<Attr> {
        check_name(name)?;
        if self.sh.opts.read_only {
            return Err(FsError::new(libc::EROFS, "read-only mount"));
        }
        if self.resolve(parent, name).await.is_ok() {
            return Err(FsError::quiet(libc::EEXIST, format!("{name} exists")));
        }
        match self.child_loc(parent, name)? {
            Loc::Object { container, path } if path.is_empty() => self.sh.storage.create_container(&container).await?,
            Loc::Object { container, path } => {
                self.sh
                    .storage
                    .put_empty(&container, &path, "application/directory")
                    .await?;
            }
            Loc::Account => return Err(FsError::new(libc::EINVAL, "bad name")),
            _ => return Err(FsError::new(libc::EROFS, "versions and the image list are read-only")),
        }
        let ino = self.remember(parent, name, Kind::Dir, 0, now_micros(), 0);
        self.count_lookup(ino);
        Ok(self.attr_of(ino, &self.node(ino)?))
    }

    pub async fn rmdir(&self, parent: Ino, name: &str) -> FsResult<()> {
        if self.sh.opts.read_only {
            return Err(FsError::new(libc::EROFS, "read-only mount"));
        }
        let attr = self.resolve(parent, name).await?;
        if attr.kind != Kind::Dir {
            return Err(FsError::new(libc::ENOTDIR, "not a directory"));
        }
        match self.child_loc(parent, name)? {
            Loc::Object { container, path } if path.is_empty() => self.sh.storage.delete_container(&container).await?,
            Loc::Object { container, path } => {
                if self.sh.storage.has_children(&container, &format!("{path}/")).await? {
                    return Err(FsError::quiet(
                        libc::ENOTEMPTY,
                        format!("{container}/{path} is not empty"),
                    ));
                }
                match self.sh.storage.delete(&container, &path).await {
                    Ok(()) => {}
                    // A directory that only existed as a prefix has no marker to delete.
                    Err(e) if e.kind() == crate::client::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Loc::Account => return Err(FsError::new(libc::EINVAL, "bad name")),
            _ => return Err(FsError::new(libc::EROFS, "versions and the image list are read-only")),
        }
        self.forget_name(parent, name);
        Ok(())
    }

    pub async fn unlink(&self, parent: Ino, name: &str) -> FsResult<()> {
        self.forget_xattr_snapshot();
        if self.sh.opts.read_only {
            return Err(FsError::new(libc::EROFS, "read-only mount"));
        }
        let attr = self.resolve(parent, name).await?;
        if attr.kind == Kind::Dir {
            return Err(FsError::new(libc::EISDIR, "is a directory"));
        }
        if self.node(attr.ino)?.view {
            self.unlink_view(self.loc(attr.ino)?).await?;
            self.forget_name(parent, name);
            return Ok(());
        }
        let writers = self.writers_of(attr.ino);
        let _settled = lock_states(&writers).await;
        let local = self.node(attr.ino)?.fetched.is_none();
        if !local {
            let (container, path) = self.object_loc(attr.ino)?;
            self.registry_before_unlink(&container, &path).await?;
            match self.sh.storage.delete(&container, &path).await {
                // A metafile shown only because its image is registered has no object.
                Err(e)
                    if e.kind() == crate::client::ErrorKind::NotFound && self.node(attr.ino)?.generated.is_some() => {}
                other => other?,
            }
        }
        self.orphan_writers(attr.ino);
        self.forget_name(parent, name);
        Ok(())
    }

    /// A server-side move (the object UUID, hence the image id, survives). Onto an existing
    /// name it replaces it; a directory moves with everything under it.
    pub async fn rename(&self, parent: Ino, name: &str, newparent: Ino, newname: &str) -> FsResult<()> {
        let existing = self.resolve(newparent, newname).await.ok();
        self.rename_checked(parent, name, newparent, newname, existing).await
    }

    /// `rename` once the caller has looked the target up (`existing`: what is there).
    async fn rename_checked(
        &self,
        parent: Ino,
        name: &str,
        newparent: Ino,
        newname: &str,
        existing: Option<Attr>,
    ) -> FsResult<()> {
        self.forget_xattr_snapshot();
        check_name(newname)?;
        if self.sh.opts.read_only {
            return Err(FsError::new(libc::EROFS, "read-only mount"));
        }
        let attr = self.resolve(parent, name).await?;
        let read_only = || FsError::new(libc::EROFS, "versions and the image list are read-only");
        let (sc, sp) = match self.child_loc(parent, name)? {
            Loc::Object { container, path } if !path.is_empty() => (container, path),
            Loc::Object { .. } | Loc::Account => return Err(FsError::new(libc::EPERM, "containers cannot be renamed")),
            _ => return Err(read_only()),
        };
        let (dc, dp) = match self.child_loc(newparent, newname)? {
            Loc::Object { container, path } if !path.is_empty() => (container, path),
            Loc::Object { .. } | Loc::Account => {
                return Err(FsError::new(libc::EPERM, "cannot rename onto a container"))
            }
            _ => return Err(read_only()),
        };
        if let Some(existing) = existing {
            match (attr.kind, existing.kind) {
                (Kind::Dir, Kind::File) => return Err(FsError::new(libc::ENOTDIR, "target is not a directory")),
                (Kind::File, Kind::Dir) => return Err(FsError::new(libc::EISDIR, "target is a directory")),
                (Kind::Dir, Kind::Dir) if self.sh.storage.has_children(&dc, &format!("{dp}/")).await? => {
                    return Err(FsError::new(libc::ENOTEMPTY, "target directory is not empty"));
                }
                _ => {}
            }
        }
        let writers = self.writers_of(attr.ino);
        let mut settled = lock_states(&writers).await;
        let local = self.node(attr.ino)?.fetched.is_none();
        if !local {
            settled.clear();
            // An open writer commits first, so the move carries the latest content.
            if attr.kind == Kind::File {
                let fhs: Vec<u64> = {
                    let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
                    handles
                        .iter()
                        .filter(|(_, h)| matches!(h.as_ref(), Handle::Write(w) if w.ino == attr.ino))
                        .map(|(f, _)| *f)
                        .collect()
                };
                for fh in fhs {
                    self.fsync(fh).await?;
                }
            }
        }
        let replaced = self
            .nodes()
            .by_name
            .get(&(newparent, newname.to_string()))
            .copied()
            .filter(|o| *o != attr.ino);
        let replaced_writers = replaced.map(|o| self.writers_of(o)).unwrap_or_default();
        let _replaced_settled = lock_states(&replaced_writers).await;
        if !local {
            let moved = self.sh.storage.rename(&sc, &sp, &dc, &dp, attr.kind == Kind::Dir).await;
            match (moved, self.node(attr.ino)?.generated) {
                // A metafile shown only because its image is registered has no object: what
                // it reads as is what lands at the new name (an editor's backup).
                (Err(e), Some(data)) if e.kind() == crate::client::ErrorKind::NotFound => {
                    self.store_metafile(&dc, &dp, data).await?
                }
                (moved, _) => moved?,
            }
        }
        // An editor's save renames its new file onto `N.meta`: that is a commit of it.
        let registers = attr.kind == Kind::File && !local && crate::api::metafile::image_name(&dp).is_some();
        if let Some(old) = replaced {
            self.orphan_writers(old);
        }
        {
            let mut nodes = self.nodes();
            if let Some(old) = nodes.by_name.remove(&(newparent, newname.to_string())) {
                if old != attr.ino {
                    nodes.by_ino.remove(&old);
                }
            }
            nodes.by_name.remove(&(parent, name.to_string()));
            nodes.by_name.insert((newparent, newname.to_string()), attr.ino);
            if let Some(n) = nodes.by_ino.get_mut(&attr.ino) {
                n.parent = newparent;
                n.name = newname.to_string();
            }
        }
        if registers {
            self.registry_after_commit(&dc, &dp, None).await?;
        }
        // Only a committed metafile moving away changes what the server holds under its name.
        if attr.kind == Kind::File && !local {
            if let Some(image) = crate::api::metafile::image_name(&sp) {
                let same = sc == dc && crate::api::metafile::image_name(&dp) == Some(image);
                if !same {
                    self.metafile_moved_away(&sc, image);
                }
            }
        }
        if attr.kind == Kind::File && !local && crate::api::metafile::image_name(&sp).is_none() {
            self.move_metafile_along(&sc, &sp, &dc, &dp).await?;
            let meta = |n: &str| format!("{n}{}", crate::api::metafile::SUFFIX);
            self.forget_name(parent, &meta(name));
            self.forget_name(newparent, &meta(newname));
        }
        Ok(())
    }

    /// `rename` with RENAME_NOREPLACE (emacs asks for it): EEXIST when the target exists.
    /// The object store has no atomic form of it; the check and the move are two requests.
    pub async fn rename_noreplace(&self, parent: Ino, name: &str, newparent: Ino, newname: &str) -> FsResult<()> {
        match self.resolve(newparent, newname).await {
            Ok(_) => Err(FsError::quiet(libc::EEXIST, format!("{newname} exists"))),
            Err(e) if e.errno == libc::ENOENT => self.rename_checked(parent, name, newparent, newname, None).await,
            Err(e) => Err(e),
        }
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
mod tests;
