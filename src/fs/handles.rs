//! The handle table: open files and directories, and the questions asked of it (who writes
//! an inode, which states to lock before a name operation).

use super::write::WriteState;
use super::{Fs, FsError, FsResult, Ino, PageCache};
use crate::api::hashing::BlockHash;
use crate::client::{Registry, Storage};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(super) struct ReadHandle {
    pub(super) ino: Ino,
    pub(super) container: String,
    pub(super) name: String,
    pub(super) version: u64,
    pub(super) size: u64,
    pub(super) hashes: Arc<Vec<BlockHash>>,
    /// Sequential-read detection for prefetch.
    pub(super) seq: Mutex<ReadSeq>,
    pub(super) cache: PageCache,
}

impl ReadHandle {
    /// A reader pinned to `version`, prefetching one block ahead to start with.
    pub(super) fn new(
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
pub(super) struct ReadSeq {
    /// The furthest byte read so far.
    pub(super) last_end: u64,
    /// Blocks to keep fetched ahead.
    pub(super) window: u64,
    /// Blocks below this index have been asked for.
    pub(super) prefetched: u64,
}

pub(super) struct WriteHandle {
    pub(super) ino: Ino,
    pub(super) state: tokio::sync::Mutex<WriteState>,
    /// The pending size, readable by getattr while a read or write holds `state`.
    pub(super) size: AtomicU64,
    /// The file was unlinked or replaced while open: reads and writes go on, nothing is
    /// committed (a commit would bring the name back).
    pub(super) orphaned: std::sync::atomic::AtomicBool,
}

impl WriteHandle {
    pub(super) fn new(ino: Ino, state: WriteState) -> WriteHandle {
        let size = AtomicU64::new(state.size);
        WriteHandle {
            ino,
            state: tokio::sync::Mutex::new(state),
            size,
            orphaned: Default::default(),
        }
    }
}

pub(super) enum Handle {
    Read(ReadHandle),
    /// A metafile's generated content, read as it was at open.
    Generated {
        ino: Ino,
        data: bytes::Bytes,
    },
    Write(Box<WriteHandle>),
    /// An open directory, read page by page (locked while a page is fetched).
    Dir(tokio::sync::Mutex<super::readdir::DirStream>),
}

/// The states of `writers` (from [`Fs::writers_of`]), locked in order.
pub(super) async fn lock_states(writers: &[Arc<Handle>]) -> Vec<tokio::sync::MutexGuard<'_, WriteState>> {
    let mut guards = Vec::with_capacity(writers.len());
    for h in writers {
        if let Handle::Write(w) = h.as_ref() {
            guards.push(w.state.lock().await);
        }
    }
    guards
}

impl<S: Storage + Registry> Fs<S> {
    pub(super) fn has_handles(&self, ino: Ino) -> bool {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        handles.values().any(|h| match h.as_ref() {
            Handle::Write(w) => w.ino == ino,
            Handle::Read(r) => r.ino == ino,
            Handle::Generated { ino: g, .. } => *g == ino,
            Handle::Dir(_) => false,
        })
    }

    /// An open writer's size is newer than the server's.
    pub(super) fn pending_size(&self, ino: Ino) -> Option<u64> {
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
    pub(super) fn writers_of(&self, ino: Ino) -> Vec<Arc<Handle>> {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        handles
            .values()
            .filter(|h| matches!(h.as_ref(), Handle::Write(w) if w.ino == ino))
            .cloned()
            .collect()
    }

    /// Open writers of `ino` stop committing: the name now belongs to something else, or to
    /// nothing.
    pub(super) fn orphan_writers(&self, ino: Ino) {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        for h in handles.values() {
            if let Handle::Write(w) = h.as_ref() {
                if w.ino == ino {
                    w.orphaned.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// How a reader uses the kernel's page cache (`None` for other handles).
    pub fn page_cache_of(&self, fh: u64) -> Option<PageCache> {
        match self.handle(fh).ok()?.as_ref() {
            Handle::Read(r) => Some(r.cache),
            _ => None,
        }
    }

    /// Whether `fh` is a handle that writes.
    pub fn is_writer(&self, fh: u64) -> bool {
        self.handle(fh).is_ok_and(|h| matches!(h.as_ref(), Handle::Write(_)))
    }

    pub(super) fn has_writer(&self, ino: Ino) -> bool {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        handles
            .values()
            .any(|h| matches!(h.as_ref(), Handle::Write(w) if w.ino == ino))
    }

    pub(super) fn add_handle(&self, h: Handle) -> u64 {
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

    pub(super) fn handle(&self, fh: u64) -> FsResult<Arc<Handle>> {
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
}
