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
use super::meta::MetaStore;
use super::{GcReport, Result, StoreError};
use crate::api::hashing::{block_hash, trim_trailing_zeros, BlockHash};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Blocks found stored that are checked against the metadata per transaction.
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
    /// Puts the two together and marks the block store as this metadata's: one that answers
    /// for another database is refused (its collector would delete what this one holds); one
    /// that does not answer now is marked before the first collection.
    pub fn new(meta: Arc<M>, blocks: Arc<dyn BlockStore>) -> Result<Engine<M>> {
        let e = Engine {
            meta,
            blocks,
            claimed: Arc::new(AtomicBool::new(false)),
        };
        match e.claim_blocks() {
            Err(StoreError::Unavailable(err)) => tracing::warn!(error = %err, "the block store does not answer"),
            other => other?,
        }
        Ok(e)
    }

    pub fn meta(&self) -> &Arc<M> {
        &self.meta
    }

    fn claim_blocks(&self) -> Result<()> {
        if !self.claimed.load(Ordering::Acquire) {
            self.blocks.claim(self.meta.engine_id())?;
            self.claimed.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Stores a block that `account` sent; from then on it is present for that account.
    pub fn put_block(&self, account: &str, data: &[u8]) -> Result<BlockHash> {
        let stored = trim_trailing_zeros(data);
        let size = stored.len() as u64;
        // Refused before it costs any space, and again as it is recorded (concurrent uploads).
        self.meta.check_upload(account, size, &|| block_hash(stored))?;
        // Durable before it is recorded as present.
        let h = self.blocks.put(data)?;
        self.meta.block_sent(account, &h, size, &mut || {
            if self.blocks.stored_len(&h)?.is_none() {
                self.blocks.put(data)?;
            }
            Ok(())
        })?;
        Ok(h)
    }

    /// A block's stored bytes (trailing NULs trimmed; the caller pads).
    pub fn read_block(&self, hash: &BlockHash) -> Result<Vec<u8>> {
        let got = self.blocks.get(hash);
        if let Err(StoreError::CorruptBlock(_) | StoreError::LostBlock(_)) = &got {
            // (a corrupt block was set aside by the store: lost as well)
            self.meta.block_lost(hash)?;
        }
        got
    }

    /// Length of a block's stored bytes.
    pub fn block_stored_len(&self, hash: &BlockHash) -> Result<Option<u64>> {
        self.blocks.stored_len(hash)
    }

    /// Whether the engine can serve: the metadata answers a query (whatever the cause, a
    /// failure names the database), and the block store its root.
    pub fn health(&self) -> Result<()> {
        self.meta.health().map_err(|e| StoreError::Db(e.to_string()))?;
        self.blocks.check()
    }

    /// One garbage collection: uploads no version took within `grace` stop being charged,
    /// blocks nobody has held for `grace` are deleted, and so are stray files older than
    /// `grace` (and 15 minutes). Skipped (and said so) while another collector runs over the
    /// same database.
    pub fn collect_garbage(&self, grace: Duration) -> Result<GcReport> {
        self.claim_blocks()?;
        let me = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        if !self.meta.gc_take_lease(&me)? {
            return Ok(GcReport {
                skipped: true,
                ..GcReport::default()
            });
        }
        let out = self.collect_leased(&me, grace);
        if let Err(e) = self.meta.gc_drop_lease(&me) {
            tracing::warn!(error = %e, "could not give the collector's lease back (it expires)");
        }
        out
    }

    fn collect_leased(&self, me: &str, grace: Duration) -> Result<GcReport> {
        let mut report = GcReport::default();
        let mut renew = || self.meta.gc_take_lease(me);
        report.uploads_expired = self.meta.gc_expire(grace, &mut renew)?;
        let (n, bytes) = self
            .meta
            .gc_free(grace, &mut |h| self.blocks.remove(h).map(|_| ()), &mut renew)?;
        report.blocks_freed = n;
        report.bytes_freed = bytes;
        // Stray files: temp files of cut writes go at once; block files are checked against
        // the metadata a batch at a time.
        let older_than = SystemTime::now() - grace.max(STRAY_MIN_AGE);
        let mut batch: Vec<(BlockHash, u64)> = Vec::with_capacity(SWEEP_BATCH);
        let (mut n, mut bytes) = (0u64, 0u64);
        let mut flush = |batch: &mut Vec<(BlockHash, u64)>| -> Result<()> {
            let (k, b) = self.meta.gc_forget_strays(batch, &mut |h| self.blocks.remove(h))?;
            n += k;
            bytes += b;
            batch.clear();
            self.meta.gc_take_lease(me)?;
            Ok(())
        };
        let temps = self.blocks.sweep(older_than, &mut |h, len| {
            batch.push((h, len));
            if batch.len() == SWEEP_BATCH {
                flush(&mut batch)?;
            }
            Ok(())
        })?;
        flush(&mut batch)?;
        report.orphans_freed = n;
        report.temp_files_freed = temps.0;
        report.bytes_freed += bytes + temps.1;
        Ok(report)
    }
}
