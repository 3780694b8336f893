//! Blocks by hash, bounded in count: fetched once even when several readers (or the
//! prefetcher) ask at the same time, and never stale, since a hash names its content.
//! Entries hold a block's bytes with trailing NULs trimmed; readers pad.

use crate::api::hashing::{trim_trailing_zeros, BlockHash};
use crate::fs::error::{FsError, FsResult};
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

type Fetch = Shared<BoxFuture<'static, FsResult<Bytes>>>;

pub struct BlockCache {
    lru: Mutex<lru::LruCache<BlockHash, Bytes>>,
    inflight: Mutex<HashMap<BlockHash, Fetch>>,
}

impl BlockCache {
    pub fn new(blocks: usize) -> BlockCache {
        BlockCache {
            lru: Mutex::new(lru::LruCache::new(NonZeroUsize::new(blocks.max(1)).expect("non-zero"))),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, h: &BlockHash) -> Option<Bytes> {
        if h.is_empty_block() {
            return Some(Bytes::new());
        }
        self.lru.lock().unwrap_or_else(|p| p.into_inner()).get(h).cloned()
    }

    pub fn insert(&self, h: BlockHash, data: &Bytes) {
        if h.is_empty_block() {
            return;
        }
        let trimmed = data.slice(0..trim_trailing_zeros(data).len());
        self.lru.lock().unwrap_or_else(|p| p.into_inner()).put(h, trimmed);
    }

    /// The block's (trimmed) bytes, fetching them with `fetch` unless cached or already being
    /// fetched. With `verify`, the content is checked against its hash once per fetch, however
    /// many readers wait on it.
    pub async fn get_or_fetch(
        self: &Arc<Self>,
        h: BlockHash,
        verify: bool,
        fetch: BoxFuture<'static, FsResult<Bytes>>,
    ) -> FsResult<Bytes> {
        if let Some(b) = self.get(&h) {
            return Ok(b);
        }
        let fut = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            let cache = self.clone();
            inflight
                .entry(h)
                .or_insert_with(|| {
                    async move {
                        let res = fetched(h, verify, fetch).await;
                        if let Ok(data) = &res {
                            cache.insert(h, data);
                        }
                        cache.inflight.lock().unwrap_or_else(|p| p.into_inner()).remove(&h);
                        res
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        fut.await
    }
}

/// Fetches a block, checks it against `h` if asked, and returns it trimmed.
async fn fetched(h: BlockHash, verify: bool, fetch: BoxFuture<'static, FsResult<Bytes>>) -> FsResult<Bytes> {
    let data = fetch.await?;
    if verify {
        // Hashing 4 MiB takes milliseconds: not on an async worker.
        let d = data.clone();
        let got = tokio::task::spawn_blocking(move || crate::api::hashing::block_hash(&d))
            .await
            .map_err(|e| FsError::new(libc::EIO, format!("hash task failed: {e}")))?;
        if got != h {
            return Err(FsError::new(libc::EIO, format!("block {h} arrived with hash {got}")));
        }
    }
    Ok(data.slice(0..trim_trailing_zeros(&data).len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_gets_fetch_once_and_hashes_are_checked() {
        let c = Arc::new(BlockCache::new(2));
        let data = Bytes::from_static(b"abc\0\0");
        let h = crate::api::hashing::block_hash(&data);
        let n = Arc::new(AtomicUsize::new(0));
        let mut tasks = vec![];
        for _ in 0..8 {
            let (c, n, data) = (c.clone(), n.clone(), data.clone());
            tasks.push(tokio::spawn(async move {
                let fetch = async move {
                    n.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    Ok(data)
                }
                .boxed();
                c.get_or_fetch(h, true, fetch).await.unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Bytes::from_static(b"abc"));
        }
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let bad = async { Ok(Bytes::from_static(b"xyz")) }.boxed();
        let other = crate::api::hashing::block_hash(b"other");
        assert_eq!(c.get_or_fetch(other, true, bad).await.unwrap_err().errno, libc::EIO);
        // Unverified, the same bytes are taken as they come (the server vouches for them).
        let bad = async { Ok(Bytes::from_static(b"xyz")) }.boxed();
        assert_eq!(
            c.get_or_fetch(other, false, bad).await.unwrap(),
            Bytes::from_static(b"xyz")
        );
    }
}
