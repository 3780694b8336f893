//! An open file's pending content: a block list where each 4 MiB block is clean (on the
//! server, by hash), uploading, uploaded, dirty in memory, or spilled to the staging file.
//!
//! Sequential writes fill a block and hand it, full, to a background task that hashes it off
//! the FUSE threads and uploads it unless the server is known to have it (blocks of the
//! previous version, blocks this mount already sent, all-zero blocks); only hashes stay. Other
//! writes patch blocks in place: a block is loaded from its clean content on first touch,
//! and beyond `max_dirty` blocks in memory the oldest dirty ones go to a staging file. Commit
//! uploads what is left and PUTs the hashmap.

use crate::api::hashing::{block_count, block_hash, block_len, BlockHash, BLOCK_SIZE};
use crate::client::{PutOutcome, Storage};
use crate::fs::error::{FsError, FsResult};
use crate::fs::Shared;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use tokio::task::JoinHandle;

const BS: u64 = BLOCK_SIZE as u64;

/// ENOSPC and EDQUOT as they are (the writer can free space and retry); other I/O errors of
/// the staging file are EIO.
fn errno_of_io(e: &std::io::Error) -> i32 {
    match e.raw_os_error() {
        Some(n) if n == libc::ENOSPC || n == libc::EDQUOT => n,
        _ => libc::EIO,
    }
}

enum Slot {
    /// Readable from the base version at this index (or all zeros).
    Clean(BlockHash),
    /// Finalized and being sent; the bytes are kept until the task is joined.
    Uploading(Bytes, JoinHandle<FsResult<BlockHash>>),
    /// On the server but in no version yet: readable only while the block cache has it.
    Uploaded(BlockHash),
    Dirty(Vec<u8>),
    Spilled(u64),
}

/// Where the content came from, for reading clean blocks.
#[derive(Clone)]
pub struct Base {
    pub container: String,
    pub name: String,
    pub version: u64,
    pub size: u64,
}

pub struct WriteState {
    /// Where blocks are uploaded (the object's container).
    container: String,
    pub size: u64,
    slots: Vec<Slot>,
    base: Option<Base>,
    /// Hashes the server is known to hold (the previous version's blocks).
    known: Arc<HashSet<BlockHash>>,
    /// Dirty block indexes in the order they were last touched.
    touched: Vec<usize>,
    /// Indexes of blocks sent to upload, oldest first, until their task is reaped.
    uploading: std::collections::VecDeque<usize>,
    spill: Option<std::fs::File>,
    spill_free: Vec<u64>,
    spill_next: u64,
    pub changed: bool,
    /// Emptied at open (O_TRUNC, or a new file) and not written since. A flush then commits
    /// only if the closing process holds no other descriptor of the file: shells open, `dup2`
    /// and close the first descriptor before the command writes, and committing there would
    /// store an empty version before every save.
    pub emptied_unwritten: bool,
    pub content_type: String,
    /// The user metadata (`user.meta.*`) the commit carries over from the current version.
    pub meta: Vec<(String, String)>,
    /// Why the content is not what the writer meant (a write failed): never committed.
    failed: Option<FsError>,
}

impl WriteState {
    /// Content equal to `base` (all blocks clean).
    pub fn from_base(base: Base, hashes: Vec<BlockHash>, content_type: String) -> WriteState {
        let known = Arc::new(hashes.iter().copied().collect());
        WriteState {
            container: base.container.clone(),
            size: base.size,
            slots: hashes.into_iter().map(Slot::Clean).collect(),
            base: Some(base),
            known,
            touched: vec![],
            uploading: Default::default(),
            spill: None,
            spill_free: vec![],
            spill_next: 0,
            changed: false,
            emptied_unwritten: false,
            content_type,
            meta: vec![],
            failed: None,
        }
    }

    /// Empty content; `known` are blocks the server has (an O_TRUNC'd file's old blocks).
    pub fn empty(container: &str, known: Vec<BlockHash>, content_type: String) -> WriteState {
        WriteState {
            container: container.to_string(),
            size: 0,
            slots: vec![],
            base: None,
            known: Arc::new(known.into_iter().collect()),
            touched: vec![],
            uploading: Default::default(),
            spill: None,
            spill_free: vec![],
            spill_next: 0,
            changed: true,
            emptied_unwritten: false,
            content_type,
            meta: vec![],
            failed: None,
        }
    }

    /// Empty content, as an O_TRUNC open or a new file leaves it (see `emptied_unwritten`).
    pub fn emptied_at_open(container: &str, known: Vec<BlockHash>, content_type: String) -> WriteState {
        WriteState {
            emptied_unwritten: true,
            ..WriteState::empty(container, known, content_type)
        }
    }

    /// Blocks whose bytes are held in memory (dirty, or in flight).
    pub fn buffered_blocks(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Dirty(_) | Slot::Uploading(..)))
            .count()
    }

    /// Unchanged since it became a copy of exactly these blocks.
    pub fn is_clean_copy_of(&self, size: u64, hashes: &[BlockHash]) -> bool {
        !self.changed
            && self.size == size
            && self.slots.len() == hashes.len()
            && self
                .slots
                .iter()
                .zip(hashes)
                .all(|(s, h)| matches!(s, Slot::Clean(x) if x == h))
    }

    /// Whether some block of `offset..offset + len` was uploaded by this handle, is in no
    /// version yet and is no longer cached: then only a commit makes it readable.
    pub fn needs_checkpoint<S: Storage>(&self, sh: &Shared<S>, offset: u64, len: u64) -> bool {
        if len == 0 || offset >= self.size {
            return false;
        }
        let first = (offset / BS) as usize;
        let last = (((offset + len).min(self.size) - 1) / BS) as usize;
        self.slots[first..=last.min(self.slots.len() - 1)]
            .iter()
            .any(|s| matches!(s, Slot::Uploaded(h) if sh.cache.get(h).is_none()))
    }

    fn dirty_count(&self) -> usize {
        self.slots.iter().filter(|s| matches!(s, Slot::Dirty(_))).count()
    }

    /// The current bytes of block `idx` (exactly `block_len(size, idx)` long).
    async fn block_bytes<S: Storage>(&mut self, sh: &Shared<S>, idx: usize) -> FsResult<Vec<u8>> {
        let want = block_len(self.size, idx as u64);
        let mut data =
            match &mut self.slots[idx] {
                Slot::Dirty(b) => b.clone(),
                Slot::Uploading(b, _) => b.to_vec(),
                Slot::Spilled(at) => {
                    let at = *at;
                    self.read_spill(at)?
                }
                Slot::Clean(h) => {
                    let h = *h;
                    self.clean_bytes(sh, idx, h).await?
                }
                Slot::Uploaded(h) => {
                    let h = *h;
                    match sh.cache.get(&h) {
                        Some(b) => b.to_vec(),
                        None => return Err(FsError::new(
                            libc::EIO,
                            "a block written earlier through this handle is no longer cached (and was not committed)",
                        )),
                    }
                }
            };
        data.resize(want, 0);
        Ok(data)
    }

    async fn clean_bytes<S: Storage>(&self, sh: &Shared<S>, idx: usize, h: BlockHash) -> FsResult<Vec<u8>> {
        if h.is_empty_block() {
            return Ok(vec![]);
        }
        let base = self
            .base
            .clone()
            .ok_or_else(|| FsError::new(libc::EIO, "clean block without a base version"))?;
        let storage = sh.storage.clone();
        let start = idx as u64 * BS;
        let len = block_len(base.size, idx as u64) as u64;
        let fetch = Box::pin(async move {
            storage
                .read(&base.container, &base.name, base.version, start, len)
                .await
                .map_err(FsError::from)
        });
        Ok(sh.cache.get_or_fetch(h, sh.opts.verify_reads, fetch).await?.to_vec())
    }

    fn read_spill(&mut self, at: u64) -> FsResult<Vec<u8>> {
        let f = self
            .spill
            .as_mut()
            .ok_or_else(|| FsError::new(libc::EIO, "staging file missing"))?;
        let mut buf = vec![0u8; BLOCK_SIZE];
        f.seek(SeekFrom::Start(at))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| FsError::new(libc::EIO, format!("staging read: {e}")))?;
        self.spill_free.push(at);
        Ok(buf)
    }

    /// Makes block `idx` dirty (loading its content) and returns it.
    async fn dirty<S: Storage>(&mut self, sh: &Shared<S>, idx: usize) -> FsResult<&mut Vec<u8>> {
        if !matches!(self.slots[idx], Slot::Dirty(_)) {
            // A dirty buffer shorter than its block reads as zero-padded, so a block of zeros
            // starts empty: writers fill it once instead of zeroing it first.
            let data = match self.slots[idx] {
                Slot::Clean(h) if h.is_empty_block() => Vec::with_capacity(BLOCK_SIZE),
                _ => self.block_bytes(sh, idx).await?,
            };
            self.slots[idx] = Slot::Dirty(data);
            self.spill_if_needed(sh, idx)?;
        }
        self.touched.retain(|&i| i != idx);
        self.touched.push(idx);
        match &mut self.slots[idx] {
            Slot::Dirty(b) => Ok(b),
            _ => unreachable!("just made dirty"),
        }
    }

    /// Keeps at most `max_dirty` blocks in memory: the least recently touched go to disk.
    fn spill_if_needed<S: Storage>(&mut self, sh: &Shared<S>, keep: usize) -> FsResult<()> {
        while self.dirty_count() > sh.opts.max_dirty_blocks {
            let Some(pos) = self
                .touched
                .iter()
                .position(|&i| i != keep && matches!(self.slots[i], Slot::Dirty(_)))
            else {
                break;
            };
            let idx = self.touched[pos];
            let Slot::Dirty(data) = &mut self.slots[idx] else {
                unreachable!()
            };
            let len = data.len();
            data.resize(BLOCK_SIZE, 0);
            let data = std::mem::take(data);
            match self.stage(sh, &data) {
                Ok(at) => {
                    self.touched.remove(pos);
                    self.slots[idx] = Slot::Spilled(at);
                }
                Err(e) => {
                    // The block stays in memory, as it was: nothing is lost, and the caller's
                    // write fails (and with it the handle's commit).
                    let mut data = data;
                    data.truncate(len);
                    self.slots[idx] = Slot::Dirty(data);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Writes one block to the staging file; returns where. Whatever fails, the file's
    /// other blocks stay where they were.
    fn stage<S: Storage>(&mut self, sh: &Shared<S>, data: &[u8]) -> FsResult<u64> {
        if self.spill.is_none() {
            let f = tempfile::tempfile_in(&sh.opts.staging_dir).map_err(|e| {
                FsError::new(
                    errno_of_io(&e),
                    format!("cannot create a staging file in {}: {e}", sh.opts.staging_dir.display()),
                )
            })?;
            self.spill = Some(f);
        }
        let (at, fresh) = match self.spill_free.pop() {
            Some(a) => (a, false),
            None => {
                if self.spill_next + BS > sh.opts.max_staging_bytes {
                    return Err(FsError::new(
                        libc::ENOSPC,
                        "staging limit reached: too many scattered writes before a close or fsync",
                    ));
                }
                (self.spill_next, true)
            }
        };
        let f = self.spill.as_mut().expect("created above");
        match f.seek(SeekFrom::Start(at)).and_then(|_| f.write_all(data)) {
            Ok(()) => {
                if fresh {
                    self.spill_next += BS;
                }
                Ok(at)
            }
            Err(e) => {
                if !fresh {
                    self.spill_free.push(at);
                }
                Err(FsError::new(
                    errno_of_io(&e),
                    format!("staging write in {}: {e}", sh.opts.staging_dir.display()),
                ))
            }
        }
    }

    /// Hashes and uploads a full block in the background.
    async fn finalize<S: Storage>(&mut self, sh: &Shared<S>, idx: usize) -> FsResult<()> {
        let Slot::Dirty(data) = std::mem::replace(&mut self.slots[idx], Slot::Clean(BlockHash::empty())) else {
            return Ok(());
        };
        self.touched.retain(|&i| i != idx);
        let bytes = Bytes::from(data);
        let task = spawn_upload(sh, &self.container, self.known.clone(), bytes.clone()).await;
        self.slots[idx] = Slot::Uploading(bytes, task);
        self.uploading.push_back(idx);
        self.reap().await;
        Ok(())
    }

    /// Turns finished uploads into hashes, freeing their buffers, so that memory holds only
    /// the blocks in flight. A failed upload becomes dirty again; commit retries it and
    /// reports the error.
    async fn reap(&mut self) {
        while let Some(&idx) = self.uploading.front() {
            match &self.slots[idx] {
                Slot::Uploading(_, t) if !t.is_finished() => break,
                Slot::Uploading(..) => {}
                // Rewritten since it was sent: nothing to reap.
                _ => {
                    self.uploading.pop_front();
                    continue;
                }
            }
            self.uploading.pop_front();
            let Slot::Uploading(bytes, task) = std::mem::replace(&mut self.slots[idx], Slot::Clean(BlockHash::empty()))
            else {
                unreachable!("checked above")
            };
            self.slots[idx] = match task.await {
                Ok(Ok(h)) => Slot::Uploaded(h),
                Ok(Err(e)) => {
                    tracing::warn!("upload of block {idx} failed, kept for the commit: {e}");
                    Slot::Dirty(bytes.to_vec())
                }
                Err(e) => {
                    tracing::warn!("upload task of block {idx} failed, kept for the commit: {e}");
                    Slot::Dirty(bytes.to_vec())
                }
            };
        }
    }

    /// Writes `data` at `offset`. After a failed write the handle is spoiled: its content is
    /// not what the writer meant, so every later write and commit fails with the same error
    /// and the server keeps its previous version.
    pub async fn write<S: Storage>(&mut self, sh: &Shared<S>, offset: u64, data: &[u8]) -> FsResult<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.write_unchecked(sh, offset, data).await;
        if let Err(e) = &r {
            self.spoil(e);
        }
        r
    }

    fn spoil(&mut self, e: &FsError) {
        tracing::warn!("a write failed, so this file's new content will not be committed: {e}");
        self.failed = Some(FsError::new(
            e.errno,
            format!("not committed: an earlier write failed ({})", e.message),
        ));
    }

    async fn write_unchecked<S: Storage>(&mut self, sh: &Shared<S>, offset: u64, data: &[u8]) -> FsResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        if end > self.size {
            self.resize(sh, end).await?;
        }
        let first = (offset / BS) as usize;
        let last = ((end - 1) / BS) as usize;
        for idx in first..=last {
            let bstart = idx as u64 * BS;
            let lo = (offset.max(bstart) - bstart) as usize;
            let hi = (end.min(bstart + BS) - bstart) as usize;
            let src = &data[(bstart + lo as u64 - offset) as usize..(bstart + hi as u64 - offset) as usize];
            let buf = self.dirty(sh, idx).await?;
            if buf.len() < lo {
                buf.resize(lo, 0);
            }
            let overlap = hi.min(buf.len());
            buf[lo..overlap].copy_from_slice(&src[..overlap - lo]);
            buf.extend_from_slice(&src[overlap - lo..]);
            // A write that reaches the end of a full block is what sequential writers do: send it.
            if hi == BLOCK_SIZE {
                self.finalize(sh, idx).await?;
            }
        }
        self.changed = true;
        self.emptied_unwritten = false;
        Ok(())
    }

    /// Reads up to `len` bytes at `offset` of the pending content.
    pub async fn read<S: Storage>(&mut self, sh: &Shared<S>, offset: u64, len: u32) -> FsResult<Vec<u8>> {
        if offset >= self.size {
            return Ok(vec![]);
        }
        let end = (offset + len as u64).min(self.size);
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let idx = (pos / BS) as usize;
            let bstart = idx as u64 * BS;
            let block = self.block_bytes(sh, idx).await?;
            if let Slot::Spilled(_) = self.slots[idx] {
                // read_spill freed the slot; keep the content in memory instead.
                self.slots[idx] = Slot::Dirty(block.clone());
                self.touched.push(idx);
                self.spill_if_needed(sh, idx)?;
            }
            let lo = (pos - bstart) as usize;
            let hi = ((end - bstart) as usize).min(block.len());
            out.extend_from_slice(&block[lo..hi]);
            pos = bstart + hi as u64;
        }
        Ok(out)
    }

    /// Truncates or extends (with zeros) to `size`; a failure spoils the handle, as a write's.
    pub async fn resize<S: Storage>(&mut self, sh: &Shared<S>, size: u64) -> FsResult<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.resize_unchecked(sh, size).await;
        if let Err(e) = &r {
            self.spoil(e);
        }
        r
    }

    async fn resize_unchecked<S: Storage>(&mut self, sh: &Shared<S>, size: u64) -> FsResult<()> {
        if size == self.size {
            return Ok(());
        }
        let n = block_count(size) as usize;
        if size < self.size {
            for s in self.slots.drain(n..) {
                if let Slot::Spilled(at) = s {
                    self.spill_free.push(at);
                }
            }
            self.touched.retain(|&i| i < n);
            if !size.is_multiple_of(BS) {
                // Bytes past the new end must not come back if the file grows again.
                let idx = n - 1;
                let keep = (size % BS) as usize;
                let buf = self.dirty(sh, idx).await?;
                buf.truncate(keep);
            }
        } else {
            // The old last block (if partial) reads as zeros beyond its end: padding.
            while self.slots.len() < n {
                self.slots.push(Slot::Clean(BlockHash::empty()));
            }
        }
        self.size = size;
        self.changed = true;
        self.emptied_unwritten = false;
        Ok(())
    }

    /// Uploads what is pending and PUTs the hashmap; returns the new version. After it, every
    /// block is clean relative to that version.
    pub async fn commit<S: Storage>(&mut self, sh: &Shared<S>, container: &str, name: &str) -> FsResult<u64> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let n = block_count(self.size) as usize;
        self.slots.truncate(n);
        let mut hashes: Vec<Option<BlockHash>> = vec![None; n];
        let mut tasks: Vec<(usize, JoinHandle<FsResult<BlockHash>>)> = vec![];
        let mut bytes_of: HashMap<usize, Bytes> = HashMap::new();
        for (idx, slot) in hashes.iter_mut().enumerate() {
            let want = block_len(self.size, idx as u64);
            match std::mem::replace(&mut self.slots[idx], Slot::Clean(BlockHash::empty())) {
                Slot::Clean(h) | Slot::Uploaded(h) => *slot = Some(h),
                Slot::Uploading(b, t) => {
                    if b.len() == want {
                        bytes_of.insert(idx, b);
                        tasks.push((idx, t));
                    } else {
                        let mut v = b.to_vec();
                        v.resize(want, 0);
                        let b = Bytes::from(v);
                        bytes_of.insert(idx, b.clone());
                        tasks.push((idx, spawn_upload(sh, &self.container, self.known.clone(), b).await));
                    }
                }
                Slot::Dirty(mut v) => {
                    v.resize(want, 0);
                    let b = Bytes::from(v);
                    bytes_of.insert(idx, b.clone());
                    tasks.push((idx, spawn_upload(sh, &self.container, self.known.clone(), b).await));
                }
                Slot::Spilled(at) => {
                    let mut v = self.read_spill(at)?;
                    v.truncate(want);
                    let b = Bytes::from(v);
                    bytes_of.insert(idx, b.clone());
                    tasks.push((idx, spawn_upload(sh, &self.container, self.known.clone(), b).await));
                }
            }
        }
        let mut first_err = None;
        for (idx, t) in tasks {
            match t.await {
                Ok(Ok(h)) => hashes[idx] = Some(h),
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(e) => first_err = first_err.or(Some(FsError::new(libc::EIO, format!("upload task failed: {e}")))),
            }
        }
        if let Some(e) = first_err {
            // Keep every block so that a retry (another fsync or close) can succeed.
            for (idx, b) in bytes_of {
                self.slots[idx] = Slot::Dirty(b.to_vec());
            }
            for (idx, h) in hashes.iter().enumerate() {
                if let (Some(h), Slot::Clean(_)) = (h, &self.slots[idx]) {
                    self.slots[idx] = Slot::Clean(*h);
                }
            }
            return Err(e);
        }
        let hashes: Vec<BlockHash> = hashes.into_iter().map(|h| h.expect("every block resolved")).collect();
        let outcome = sh
            .storage
            .put_hashmap(container, name, self.size, &hashes, &self.content_type, &self.meta)
            .await;
        let outcome = match outcome {
            Ok(PutOutcome::Missing(missing)) => {
                // The server lacks blocks we believed it had: send those we still hold, retry once.
                for h in &missing {
                    if let Some((_, b)) = bytes_of.iter().find(|(_, b)| block_hash(b) == *h) {
                        sh.storage.upload_block(container, b.clone()).await?;
                    } else {
                        self.restore_clean(&hashes);
                        return Err(FsError::new(
                            libc::EIO,
                            format!("the server lost block {h} of {container}/{name}"),
                        ));
                    }
                }
                sh.storage
                    .put_hashmap(container, name, self.size, &hashes, &self.content_type, &self.meta)
                    .await
            }
            other => other,
        };
        let version = match outcome {
            Ok(PutOutcome::Done { version }) => version,
            Ok(PutOutcome::Missing(m)) => {
                self.restore_dirty(bytes_of, &hashes);
                return Err(FsError::new(
                    libc::EIO,
                    format!("the server still lacks {} blocks of {container}/{name}", m.len()),
                ));
            }
            Err(e) => {
                self.restore_dirty(bytes_of, &hashes);
                return Err(e.into());
            }
        };
        self.slots = hashes.iter().copied().map(Slot::Clean).collect();
        self.uploading.clear();
        self.known = Arc::new(hashes.iter().copied().collect());
        self.base = Some(Base {
            container: container.into(),
            name: name.into(),
            version,
            size: self.size,
        });
        self.touched.clear();
        self.spill = None;
        self.spill_free.clear();
        self.spill_next = 0;
        self.changed = false;
        Ok(version)
    }

    fn restore_clean(&mut self, hashes: &[BlockHash]) {
        for (i, h) in hashes.iter().enumerate() {
            if matches!(self.slots[i], Slot::Clean(_)) {
                self.slots[i] = Slot::Uploaded(*h);
            }
        }
    }

    fn restore_dirty(&mut self, bytes_of: HashMap<usize, Bytes>, hashes: &[BlockHash]) {
        self.restore_clean(hashes);
        for (idx, b) in bytes_of {
            self.slots[idx] = Slot::Dirty(b.to_vec());
        }
    }
}

/// Hashes a block off the FUSE threads and uploads it unless the server has it. Waits for an
/// upload slot first, so a fast writer cannot queue unbounded memory.
async fn spawn_upload<S: Storage>(
    sh: &Shared<S>,
    container: &str,
    known: Arc<HashSet<BlockHash>>,
    bytes: Bytes,
) -> JoinHandle<FsResult<BlockHash>> {
    let permit = sh
        .uploads
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore never closed");
    let sh = sh.clone();
    let container = container.to_string();
    tokio::spawn(async move {
        let _permit = permit;
        let b = bytes.clone();
        let memo = sh.memo.clone();
        let hashing = sh.hashers.acquire().await.expect("semaphore never closed");
        let h = tokio::task::spawn_blocking(move || memo.block_hash(&b))
            .await
            .map_err(|e| FsError::new(libc::EIO, format!("hash task failed: {e}")))?;
        drop(hashing);
        if h.is_empty_block() || known.contains(&h) || sh.sent.lock().unwrap_or_else(|p| p.into_inner()).contains(&h) {
            sh.stats
                .blocks_skipped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(h);
        }
        let got = sh.storage.upload_block(&container, bytes.clone()).await?;
        if got != h {
            return Err(FsError::new(
                libc::EIO,
                format!("server hashed a block as {got}, we computed {h}"),
            ));
        }
        sh.stats.blocks_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sh.stats
            .bytes_sent
            .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        sh.sent.lock().unwrap_or_else(|p| p.into_inner()).put(h, ());
        sh.cache.insert(h, &bytes);
        Ok(h)
    })
}
