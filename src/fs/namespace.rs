//! Namespace operations: mkdir, rmdir, unlink and rename, with what they mean for open
//! writers (locked first, then orphaned) and for image metafiles.

use super::handles::{lock_states, Handle};
use super::paths::{check_name, Loc};
use super::{now_micros, Attr, Fs, FsError, FsResult, Ino, Kind};
use crate::client::{Registry, Storage};

impl<S: Storage + Registry> Fs<S> {
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
    pub(super) async fn rename_checked(
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
}
