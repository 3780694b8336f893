//! The read path: reads of a pinned version through the block cache, with a prefetch window
//! that grows while reads are sequential.

use super::handles::{Handle, ReadHandle};
use super::{Fs, FsError, FsResult, BS};
use crate::api::hashing::{block_count, block_len, BlockHash};
use crate::client::{Registry, Storage};

/// Largest prefetch window, in blocks.
const MAX_WINDOW: u64 = 8;
/// How far from the furthest read a read may land and still count as sequential.
const NEAR: u64 = 8 << 20;

impl<S: Storage + Registry> Fs<S> {
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

    pub(super) async fn read_pinned(&self, r: &ReadHandle, offset: u64, size: u32) -> FsResult<bytes::Bytes> {
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
    pub(super) fn fetch_block(
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
    pub(super) async fn hashmap_of(
        &self,
        container: &str,
        name: &str,
        version: u64,
    ) -> FsResult<(u64, Vec<BlockHash>)> {
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
}
