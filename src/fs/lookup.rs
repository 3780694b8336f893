//! Lookup and getattr: answered from the inode table while fresh, else from the server.

use super::paths::Loc;
use super::{now_micros, Attr, Fs, FsError, FsResult, Ino, Kind, NAME_MAX, ROOT};
use crate::client::{Registry, Storage};
use std::time::Instant;

impl<S: Storage + Registry> Fs<S> {
    /// What the kernel asks: the entry `parent/name`, counted as held by the kernel.
    pub async fn lookup(&self, parent: Ino, name: &str) -> FsResult<Attr> {
        let attr = self.resolve(parent, name).await?;
        self.count_lookup(attr.ino);
        Ok(attr)
    }

    pub(super) async fn resolve(&self, parent: Ino, name: &str) -> FsResult<Attr> {
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
}
