//! Opening and creating files: a reader pins the version current at open, a writer gets the
//! write pipeline's state, a registered image's metafile opens as the registry's live state.

use super::handles::{Handle, ReadHandle, WriteHandle};
use super::inodes::Node;
use super::paths::{check_name, Loc};
use super::write::{Base, WriteState};
use super::{now_micros, Attr, Fs, FsError, FsResult, Ino, Kind};
use crate::client::{Registry, Storage};

impl<S: Storage + Registry> Fs<S> {
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
}
