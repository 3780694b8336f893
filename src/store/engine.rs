//! The engine: a [`MetaStore`] and a [`BlockStore`] put together, owning what must hold
//! whichever of each is plugged in — a block's bytes durable before the metadata says it is
//! there (so before any version can name it), a read that finds them gone or corrupt marking
//! the block lost, the block store serving one metadata database only, and the garbage
//! collector's order (rows decided by the metadata, bytes deleted inside the transactions
//! that delete the rows). Every metadata operation is the [`MetaStore`]'s, reached through
//! `Deref`.
//!
//! Why the collector cannot lose data, on the engine's side: a block's bytes go only inside
//! the metadata transaction that deletes its row (`gc_free`), and only while no upload of
//! the same block can commit without waiting for it (`gc_forget_strays`); an upload writes
//! the bytes, then records them and checks, inside that recording transaction, that they
//! are still stored, writing them again if not ([`MetaStore::block_sent`]). So a block is
//! either recorded and stored, or neither. The metadata's side (which rows may go, under
//! which locks) is `sql/gc.rs`.

use super::blocks::BlockStore;
use super::meta::{BlockCheck, BlockRemove, LazyHash, MetaStore};
use super::{GcReport, Result, StoreError};
use crate::api::hashing::{block_hash, trim_trailing_zeros, BlockHash};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Blocks found stored that are checked against the metadata per transaction (at most).
const SWEEP_BATCH: usize = 512;

/// Stray files younger than this stay whatever the grace period: a temp file is a write in
/// flight (seconds), and a block file without a row may be one whose transaction is about to
/// commit.
const STRAY_MIN_AGE: Duration = Duration::from_secs(900);

pub struct Engine<M: ?Sized = dyn MetaStore> {
    meta: Arc<M>,
    pub(crate) blocks: Arc<dyn BlockStore>,
    /// The block store has been marked as this metadata's (once per process).
    claimed: Arc<AtomicBool>,
}

impl<M: ?Sized> std::ops::Deref for Engine<M> {
    type Target = M;

    fn deref(&self) -> &M {
        &self.meta
    }
}

impl<M: MetaStore + 'static> Engine<M> {
    /// The same engine with its metadata behind the trait (what the server holds).
    pub fn erased(&self) -> Engine {
        Engine {
            meta: self.meta.clone() as Arc<dyn MetaStore>,
            blocks: self.blocks.clone(),
            claimed: self.claimed.clone(),
        }
    }
}

impl<M: MetaStore + ?Sized> Engine<M> {
    /// Puts the two together. The block store is marked as this metadata's by
    /// [`Engine::claim_blocks`] (a server does so as it starts) and before every collection.
    pub fn new(meta: Arc<M>, blocks: Arc<dyn BlockStore>) -> Engine<M> {
        Engine {
            meta,
            blocks,
            claimed: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn meta(&self) -> &Arc<M> {
        &self.meta
    }

    /// Marks the block store as this metadata's: one that answers for another database is
    /// refused (its collector would delete what this one holds).
    pub async fn claim_blocks(&self) -> Result<()> {
        if !self.claimed.load(Ordering::Acquire) {
            self.blocks.claim(self.meta.engine_id()).await?;
            self.claimed.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// [`Engine::claim_blocks`] as a process starts: a block store that answers for another
    /// database is refused; one that does not answer now is marked before the first
    /// collection (said in the log).
    pub async fn claim_blocks_on_start(&self) -> Result<()> {
        match self.claim_blocks().await {
            Err(StoreError::Unavailable(err)) => {
                tracing::warn!(error = %err, "the block store does not answer");
                Ok(())
            }
            other => other,
        }
    }

    /// Stores a block that `account` sent; from then on it is present for that account.
    pub async fn put_block(&self, account: &str, data: Bytes) -> Result<BlockHash> {
        let size = trim_trailing_zeros(&data).len() as u64;
        // Refused before it costs any space, and again as it is recorded (concurrent uploads).
        let for_hash = data.clone();
        let hash: LazyHash = Box::new(move || block_hash(trim_trailing_zeros(&for_hash)));
        self.meta.check_upload(account, size, hash).await?;
        // Durable before it is recorded as present.
        let h = self.blocks.put(data.clone()).await?;
        let blocks = self.blocks.clone();
        let verify: BlockCheck = Box::new(move || {
            let (blocks, data) = (blocks.clone(), data.clone());
            Box::pin(async move {
                if blocks.stored_len(&h).await?.is_none() {
                    blocks.put(data).await?;
                }
                Ok(())
            })
        });
        self.meta.block_sent(account, &h, size, verify).await?;
        Ok(h)
    }

    /// A block's stored bytes (trailing NULs trimmed; the caller pads).
    pub async fn read_block(&self, hash: &BlockHash) -> Result<Vec<u8>> {
        let got = self.blocks.get(hash).await;
        if let Err(StoreError::CorruptBlock(_) | StoreError::LostBlock(_)) = &got {
            // (a corrupt block was set aside by the store: lost as well)
            self.meta.block_lost(hash).await?;
        }
        got
    }

    /// Length of a block's stored bytes.
    pub async fn block_stored_len(&self, hash: &BlockHash) -> Result<Option<u64>> {
        self.blocks.stored_len(hash).await
    }

    /// Whether the engine can serve: the metadata answers a query (whatever the cause, a
    /// failure names the database), and the block store its root.
    pub async fn health(&self) -> Result<()> {
        self.meta.health().await.map_err(|e| StoreError::Db(e.to_string()))?;
        self.blocks.check().await
    }

    /// One garbage collection: uploads no version took within `grace` stop being charged,
    /// blocks nobody has held for `grace` are deleted, and so are stray files older than
    /// `grace` (and 15 minutes). Skipped (and said so) while another collector runs over the
    /// same database.
    pub async fn collect_garbage(&self, grace: Duration) -> Result<GcReport> {
        self.claim_blocks().await?;
        let me = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        if !self.meta.gc_take_lease(&me).await? {
            return Ok(GcReport {
                skipped: true,
                ..GcReport::default()
            });
        }
        let out = self.collect_leased(&me, grace).await;
        if let Err(e) = self.meta.gc_drop_lease(&me).await {
            tracing::warn!(error = %e, "could not give the collector's lease back (it expires)");
        }
        out
    }

    async fn collect_leased(&self, me: &str, grace: Duration) -> Result<GcReport> {
        let mut report = GcReport {
            uploads_expired: self.meta.gc_expire(grace, me).await?,
            ..GcReport::default()
        };
        let blocks = self.blocks.clone();
        let remove: BlockRemove = Arc::new(move |h| {
            let blocks = blocks.clone();
            Box::pin(async move { blocks.remove(&h).await })
        });
        let (n, bytes) = self.meta.gc_free(grace, me, remove.clone()).await?;
        report.blocks_freed = n;
        report.bytes_freed = bytes;
        // Stray files: temp files of cut writes go at once; block files are checked against
        // the metadata a page at a time.
        let older_than = SystemTime::now() - grace.max(STRAY_MIN_AGE);
        let mut from = None;
        loop {
            let page = self.blocks.sweep(older_than, from).await?;
            report.temp_files_freed += page.temps.0;
            report.bytes_freed += page.temps.1;
            for batch in page.found.chunks(SWEEP_BATCH) {
                let (k, b) = self.meta.gc_forget_strays(batch.to_vec(), remove.clone()).await?;
                report.orphans_freed += k;
                report.bytes_freed += b;
            }
            if !self.meta.gc_take_lease(me).await? {
                tracing::warn!("the collector's lease was lost during the sweep; stopping");
                break;
            }
            match page.next {
                Some(next) => from = Some(next),
                None => break,
            }
        }
        Ok(report)
    }
}
