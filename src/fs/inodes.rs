//! The inode table: what this mount knows of each name (from listings, lookups and its own
//! writes), how long the kernel holds each inode, and when unused ones are swept out.

use super::{to_systime, Attr, Fs, FsError, FsResult, Handle, Ino, Kind, ROOT};
use crate::client::{ObjectStat, Registry, Storage};
use std::collections::{HashMap, HashSet};
use std::time::{Instant, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) parent: Ino,
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) size: u64,
    pub(super) mtime: i64,
    pub(super) version: u64,
    /// When the attributes were last confirmed by the server (None: created here, not yet
    /// committed).
    pub(super) fetched: Option<Instant>,
    /// Removed from its directory while open; kept until the last handle closes.
    pub(super) unlinked: bool,
    /// Entries the kernel holds (each entry reply counts one; `forget` gives them back).
    pub(super) lookups: u64,
    /// For `N.meta` of a registered image: the registry's live state in kamaki's layout,
    /// which is what reading the file gives (the stored bytes may be older).
    pub(super) generated: Option<bytes::Bytes>,
    /// Part of a read-only view (`.versions`, `.images`).
    pub(super) view: bool,
}

#[derive(Default)]
pub(super) struct Nodes {
    pub(super) by_ino: HashMap<Ino, Node>,
    pub(super) by_name: HashMap<(Ino, String), Ino>,
    pub(super) next: Ino,
    /// Table size at which nodes the kernel does not hold are swept out.
    pub(super) sweep_at: usize,
}

/// Nodes kept at least, before sweeping those the kernel has forgotten or never seen.
pub(super) const SWEEP_MIN: usize = 16 << 10;

impl<S: Storage + Registry> Fs<S> {
    pub(super) fn nodes(&self) -> std::sync::MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn node(&self, ino: Ino) -> FsResult<Node> {
        self.nodes()
            .by_ino
            .get(&ino)
            .cloned()
            .ok_or_else(|| FsError::new(libc::ENOENT, format!("stale inode {ino}")))
    }

    pub(super) fn attr_of(&self, ino: Ino, n: &Node) -> Attr {
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

    /// Records what the server said about `parent/name` and returns its inode.
    pub(super) fn remember(&self, parent: Ino, name: &str, kind: Kind, size: u64, mtime: i64, version: u64) -> Ino {
        let mut nodes = self.nodes();
        self.remember_locked(&mut nodes, parent, name, kind, size, mtime, version)
    }

    /// [`Self::remember`], returning the attributes (one lock, no copy of the node: listings
    /// do this for every entry).
    pub(super) fn remember_attr(
        &self,
        parent: Ino,
        name: &str,
        kind: Kind,
        size: u64,
        mtime: i64,
        version: u64,
    ) -> Attr {
        let mut nodes = self.nodes();
        let ino = self.remember_locked(&mut nodes, parent, name, kind, size, mtime, version);
        self.attr_of(ino, &nodes.by_ino[&ino])
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn remember_locked(
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
    pub(super) fn sweep(&self, nodes: &mut Nodes) {
        let open: HashSet<Ino> = {
            let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
            let mut open = HashSet::new();
            for h in handles.values() {
                match h.as_ref() {
                    Handle::Write(w) => open.insert(w.ino),
                    Handle::Read(r) => open.insert(r.ino),
                    Handle::Generated { ino, .. } => open.insert(*ino),
                    // A directory being read hands out inodes from its window: they stay
                    // where the window can be seen. (While a page is being taken in, it
                    // cannot; a swept entry is then made anew when handed to the kernel,
                    // see `announce`.)
                    Handle::Dir(d) => {
                        if let Ok(d) = d.try_lock() {
                            open.extend(d.window.iter().map(|(_, a)| a.ino));
                        }
                        continue;
                    }
                };
            }
            open
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
    pub(super) fn announce(&self, parent: Ino, name: &str, listed: &Attr) -> Attr {
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
    pub(super) fn count_lookup(&self, ino: Ino) {
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
    pub(super) fn forget_name(&self, parent: Ino, name: &str) {
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

    pub(super) fn update_node(&self, ino: Ino, st: &ObjectStat) {
        if let Some(node) = self.nodes().by_ino.get_mut(&ino) {
            node.size = st.size;
            node.mtime = st.mtime;
            node.version = st.version;
            node.fetched = Some(Instant::now());
        }
    }
}
