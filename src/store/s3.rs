//! Blocks in any S3 endpoint (Ceph RGW, MinIO, Garage, SeaweedFS, AWS, Swift's s3api): one
//! object per block, `<prefix>/<hex>`, holding its bytes with trailing NULs trimmed, through
//! the `object_store` crate.
//!
//! Writes are conditional (`If-None-Match: *`) where the endpoint supports it: a block is
//! content-addressed, so an object already there is the same bytes and is left as it is
//! (endpoints that refuse the condition get a plain PUT, which is as safe, only costlier).
//! An S3 PUT is durable when it is answered, so the block is durable before the version that
//! names it commits, as with [`super::blocks::FsBlocks`].
//!
//! Integrity: each object carries the BLAKE3 digest of its bytes as user metadata
//! (`x-amz-meta-imgfs-blake3`); a read checks that (cheap), and a missing or mismatching
//! digest is settled by the sha256 that names the block. Bytes that match neither are deleted
//! (an upload then heals the block) and never served.
//!
//! Async throughout: a request in flight to the endpoint holds no thread; only hashing (a
//! block's sha256 and BLAKE3, milliseconds per MiB) runs on the blocking threads. Requests
//! are bounded in time and retries so that an endpoint that is down fails a request within
//! seconds, as [`StoreError::Unavailable`] (503 with `Retry-After`).

use crate::api::hashing::{block_hash, trim_trailing_zeros, BlockHash};
use crate::store::blocks::{BlockStore, SweepPage};
use crate::store::{Result, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, AttributeValue, Attributes, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// The user metadata key of the BLAKE3 digest (`x-amz-meta-imgfs-blake3`).
const CHECK_KEY: &str = "imgfs-blake3";

/// Where blocks go: `s3://BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; empty: the bucket's root.
    pub prefix: String,
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

pub struct S3Blocks {
    store: AmazonS3,
    location: S3Location,
    /// Cleared when the endpoint refuses conditional writes (then plain PUTs).
    conditional: AtomicBool,
    /// Names a page of the sweep lists ([`SWEEP_PAGE`]; fewer in tests, to see pages join).
    sweep_page: usize,
}

/// How many blocks one page of the sweep lists (one S3 LIST request).
const SWEEP_PAGE: usize = 1000;

/// CPU-bound work (hashing a block) off the async workers.
async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))
}

fn unavailable(op: &str, e: object_store::Error) -> StoreError {
    StoreError::Unavailable(format!("S3 {op}: {e}"))
}

impl S3Blocks {
    /// A block store in `location`, with the endpoint and credentials of the usual `AWS_*`
    /// environment variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION` [us-east-1], `AWS_ALLOW_HTTP=true` for plain http). Buckets are addressed
    /// path-style unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`. Does not contact the endpoint.
    pub fn open(location: S3Location) -> Result<S3Blocks> {
        // reqwest's TLS takes the process's rustls provider: ring, as everywhere in imgfs.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(60));
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
            ..Default::default()
        };
        // The timeouts first: the environment (AWS_ALLOW_HTTP is a client option) goes over them.
        let mut b = AmazonS3Builder::new().with_client_options(client).with_retry(retry);
        for (key, value) in std::env::vars_os() {
            let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
                continue;
            };
            if key.starts_with("AWS_") {
                if let Ok(k) = key.to_ascii_lowercase().parse() {
                    b = b.with_config(k, value);
                }
            }
        }
        // (the bucket is the URL's, whatever AWS_BUCKET says)
        b = b.with_bucket_name(&location.bucket);
        if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            b = b.with_region("us-east-1");
        }
        let store = b
            .build()
            .map_err(|e| StoreError::Invalid(format!("S3 block store {location}: {e}")))?;
        Ok(S3Blocks {
            store,
            location,
            conditional: AtomicBool::new(true),
            sweep_page: SWEEP_PAGE,
        })
    }

    fn key(&self, hex: &str) -> ObjPath {
        if self.location.prefix.is_empty() {
            ObjPath::from(hex)
        } else {
            ObjPath::from(format!("{}/{hex}", self.location.prefix))
        }
    }

    fn prefix(&self) -> Option<ObjPath> {
        (!self.location.prefix.is_empty()).then(|| ObjPath::from(self.location.prefix.as_str()))
    }

    async fn put_stored(&self, key: &ObjPath, stored: Bytes, check: String) -> Result<()> {
        let mut attrs = Attributes::new();
        attrs.insert(Attribute::Metadata(CHECK_KEY.into()), AttributeValue::from(check));
        let payload = PutPayload::from(stored);
        if self.conditional.load(Ordering::Relaxed) {
            let opts = PutOptions {
                mode: PutMode::Create,
                attributes: attrs.clone(),
                ..Default::default()
            };
            match self.store.put_opts(key, payload.clone(), opts).await {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => return Ok(()),
                Err(object_store::Error::NotImplemented { .. }) | Err(object_store::Error::NotSupported { .. }) => {
                    tracing::warn!(store = %self.location, "the S3 endpoint refuses conditional writes; plain PUTs from now on");
                    self.conditional.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(unavailable("PUT", e)),
            }
        }
        let opts = PutOptions {
            attributes: attrs,
            ..Default::default()
        };
        self.store
            .put_opts(key, payload, opts)
            .await
            .map(|_| ())
            .map_err(|e| unavailable("PUT", e))
    }

    async fn get_checked(&self, hash: &BlockHash) -> Result<Vec<u8>> {
        let key = self.key(&hash.to_hex());
        let got = match self.store.get(&key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Err(StoreError::LostBlock(*hash)),
            Err(e) => return Err(unavailable("GET", e)),
        };
        let digest = got
            .attributes
            .get(&Attribute::Metadata(CHECK_KEY.into()))
            .map(|v| v.as_ref().to_owned());
        let data = got.bytes().await.map_err(|e| unavailable("GET", e))?.to_vec();
        let want = *hash;
        let (data, good) = hashing(move || {
            let good = digest.is_some_and(|d| d == blake3::hash(&data).to_hex().as_str()) || block_hash(&data) == want;
            (data, good)
        })
        .await?;
        if !good {
            // Never served; deleted so that the next upload of the block can write it again
            // (a conditional write would otherwise keep the bad object).
            tracing::error!(store = %self.location, block = %hash.to_hex(), "corrupt block deleted");
            if let Err(e) = self.store.delete(&key).await {
                tracing::error!(store = %self.location, error = %e, "could not delete a corrupt block");
            }
            return Err(StoreError::CorruptBlock(*hash));
        }
        Ok(data)
    }
}

#[async_trait::async_trait]
impl BlockStore for S3Blocks {
    async fn put(&self, data: Bytes) -> Result<BlockHash> {
        let (stored, hash, check) = hashing(move || {
            let stored = data.slice(..trim_trailing_zeros(&data).len());
            let hash = block_hash(&stored);
            let check = blake3::hash(&stored).to_hex().to_string();
            (stored, hash, check)
        })
        .await?;
        if stored.is_empty() {
            return Ok(hash);
        }
        let key = self.key(&hash.to_hex());
        self.put_stored(&key, stored, check).await?;
        Ok(hash)
    }

    async fn get(&self, hash: &BlockHash) -> Result<Vec<u8>> {
        if hash.is_empty_block() {
            return Ok(vec![]);
        }
        self.get_checked(hash).await
    }

    async fn stored_len(&self, hash: &BlockHash) -> Result<Option<u64>> {
        if hash.is_empty_block() {
            return Ok(Some(0));
        }
        let key = self.key(&hash.to_hex());
        match self.store.head(&key).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable("HEAD", e)),
        }
    }

    /// S3 answers a DELETE of a missing key as it answers one of a present key, so this says
    /// true for both: the collector's `blocks_freed` may count a block a crash had already
    /// taken.
    async fn remove(&self, hash: &BlockHash) -> Result<bool> {
        if hash.is_empty_block() {
            return Ok(false);
        }
        let key = self.key(&hash.to_hex());
        match self.store.delete(&key).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(unavailable("DELETE", e)),
        }
    }

    /// No temp files in S3 (a PUT is whole or absent): only blocks, a LIST request a page,
    /// each page from the last name of the one before.
    async fn sweep(&self, older_than: SystemTime, from: Option<String>) -> Result<SweepPage> {
        let prefix = self.prefix();
        let mut listing = match &from {
            None => self.store.list(prefix.as_ref()),
            Some(after) => self.store.list_with_offset(prefix.as_ref(), &self.key(after)),
        };
        let mut page = SweepPage::default();
        let mut seen = 0;
        while let Some(item) = listing.next().await {
            let meta = item.map_err(|e| unavailable("LIST", e))?;
            let Some(name) = meta.location.filename() else { continue };
            seen += 1;
            // (only what this store writes: a block's full hex name, directly under the prefix)
            let direct = meta.location.as_ref().len() == self.key(name).as_ref().len();
            if SystemTime::from(meta.last_modified) < older_than {
                if let Some(h) = BlockHash::from_hex(name).filter(|h| direct && h.to_hex() == name) {
                    page.found.push((h, meta.size));
                }
            }
            if seen == self.sweep_page {
                page.next = Some(name.to_string());
                break;
            }
        }
        Ok(page)
    }

    async fn claim(&self, owner: &str) -> Result<()> {
        let mark = self.key(crate::store::blocks::OWNER_MARK);
        {
            for _ in 0..3 {
                match self.store.get(&mark).await {
                    Ok(got) => {
                        let found = got.bytes().await.map_err(|e| unavailable("GET", e))?;
                        let found = String::from_utf8_lossy(&found);
                        if found.trim() == owner {
                            return Ok(());
                        }
                        return Err(crate::store::blocks::claimed_by_another(
                            &self.location.to_string(),
                            owner,
                            found.trim(),
                        ));
                    }
                    Err(object_store::Error::NotFound { .. }) => {
                        // Created only if absent (else read again: another process was first).
                        let opts = PutOptions {
                            mode: if self.conditional.load(Ordering::Relaxed) {
                                PutMode::Create
                            } else {
                                PutMode::Overwrite
                            },
                            ..Default::default()
                        };
                        match self
                            .store
                            .put_opts(&mark, PutPayload::from(owner.to_string()), opts)
                            .await
                        {
                            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
                            Err(object_store::Error::NotImplemented { .. }) => {
                                self.conditional.store(false, Ordering::Relaxed);
                            }
                            Err(e) => return Err(unavailable("PUT", e)),
                        }
                    }
                    Err(e) => return Err(unavailable("GET", e)),
                }
            }
            Err(StoreError::Unavailable(format!(
                "S3: the owner mark of {} could not be written and read back",
                self.location
            )))
        }
    }

    async fn check(&self) -> Result<()> {
        // A listing that starts after every block name (hex sorts before `g`): it costs one
        // request that returns nothing, and fails for a missing bucket or refused credentials
        // (a HEAD of a missing key could not tell a missing bucket from a missing key).
        let prefix = self.prefix();
        let after = self.key("g");
        match self.store.list_with_offset(prefix.as_ref(), &after).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(unavailable("LIST", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With `IMGFS_TEST_S3` (and the `AWS_*` of its endpoint; scripts/test.sh sets them), a
    /// walk over a prefix of the bucket a few names a page: every block once, the owner mark
    /// never, young blocks not, and each page starts after the last name of the one before.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_sweep_walks_the_bucket_a_page_at_a_time() {
        let Some(url) = std::env::var("IMGFS_TEST_S3").ok().filter(|u| !u.is_empty()) else {
            return;
        };
        let bucket = url.trim_start_matches("s3://").split('/').next().unwrap().to_string();
        let prefix = format!("sweep-{:016x}", rand::random::<u64>());
        let mut s = S3Blocks::open(S3Location { bucket, prefix }).unwrap();
        s.sweep_page = 3;
        s.claim("the-test").await.unwrap();
        let mut put = vec![];
        for i in 0..7u8 {
            put.push(BlockStore::put(&s, Bytes::from(vec![i + 1; 100])).await.unwrap());
        }
        put.sort();
        let walk = |older_than: SystemTime| {
            let s = &s;
            async move {
                let (mut found, mut pages, mut from) = (vec![], 0, None);
                loop {
                    let page = s.sweep(older_than, from).await.unwrap();
                    pages += 1;
                    found.extend(page.found.iter().map(|(h, len)| (*h, *len)));
                    match page.next {
                        Some(n) => from = Some(n),
                        None => break,
                    }
                }
                (found, pages)
            }
        };
        let (found, pages) = walk(SystemTime::now() + Duration::from_secs(3600)).await;
        let mut hashes: Vec<BlockHash> = found.iter().map(|(h, _)| *h).collect();
        hashes.sort();
        assert_eq!(hashes, put, "every block once");
        assert!(found.iter().all(|(_, len)| *len == 100));
        // (8 names with the owner mark: 3 + 3 + 2)
        assert_eq!(pages, 3);
        let (young, _) = walk(SystemTime::now() - Duration::from_secs(3600)).await;
        assert!(young.is_empty(), "{young:?}");
        for h in &put {
            assert!(BlockStore::remove(&s, h).await.unwrap());
        }
        s.store.delete(&s.key(crate::store::blocks::OWNER_MARK)).await.unwrap();
    }
}
