//! A writer's handle from its first write to its commit: writes, checkpoints, flush and fsync
//! (when a close commits), the commit itself and what the registry does after it, server-side
//! copies, and truncation.

use super::handles::{Handle, WriteHandle};
use super::write::{Base, WriteState};
use super::{now_micros, Attr, Fs, FsError, FsResult, Ino};
use crate::client::{Registry, Storage};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl<S: Storage + Registry> Fs<S> {
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
    pub(super) async fn checkpoint_if_needed(
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

    pub(super) async fn commit_if_changed(&self, fh: u64, still_held: Option<impl FnOnce() -> bool>) -> FsResult<()> {
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
    pub(super) async fn commit_locked(&self, w: &WriteHandle, state: &mut WriteState, last: bool) -> FsResult<()> {
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
        // A new version keeps the object's user metadata, as a file keeps its attributes; a
        // new object takes what a copy set before this first commit.
        let first = self.node(w.ino)?.fetched.is_none();
        let held = if first {
            let held = self.take_held(w.ino);
            state.meta = held
                .object
                .meta
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                .collect();
            held
        } else {
            if let Some(info) = self.sh.storage.object_info(&container, &name, None).await? {
                state.meta = info.meta;
            }
            Default::default()
        };
        let version = match state.commit(&self.sh, &container, &name).await {
            Ok(v) => v,
            Err(e) => {
                self.hold_again(w.ino, held);
                return Err(e);
            }
        };
        self.committed_here(w.ino);
        let size = state.size;
        if let Some(node) = self.nodes().by_ino.get_mut(&w.ino) {
            node.size = size;
            node.version = version;
            node.mtime = now_micros();
            node.fetched = Some(Instant::now());
        }
        if first {
            self.apply_held(w.ino, &container, &name, held).await?;
        }
        if last {
            self.registry_follows(w.ino, &container, &name, metafile).await?;
        }
        Ok(())
    }

    /// After a commit of `container/name` (written, or copied onto): the registry follows.
    /// A metafile's attributes are asked again, since what it reads as (and its size) now
    /// comes from the registry.
    pub(super) async fn registry_follows(
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
}
