//! The garbage collector: gives back the space of blocks nobody holds.
//!
//! Why it cannot lose data:
//! * A block is deleted only when no account has a row for it (`blocks.refs = 0`: no version
//!   names it, no upload of the last grace period sent it) and has had none for a grace
//!   period. Row counts change in the transactions that commit or drop versions, so they are
//!   never behind what the versions say.
//! * The file is removed inside the transaction that deletes the block's row, holding that
//!   row (SQLite: the one write lock; PostgreSQL: `FOR UPDATE`). A concurrent upload of the
//!   same block either commits its row first (the block has a holder again: not deleted) or
//!   waits for the collector's commit and makes a new row; the upload then checks, inside its
//!   own transaction, that the file is there, and writes it again if not (`put_block`).
//! * An upload no version took stops counting in a transaction holding its account's lock
//!   ([`super::scope`]), the lock a hashmap PUT of that writer holds while it re-checks that
//!   the writer has a row for every block and takes them: either the PUT commits first (the
//!   block is held: not expired) or it sees the row gone and answers which blocks to send.
//! * A crash between the removal and the commit leaves a row with `refs = 0` and no file: no
//!   hashmap can name it (nobody has it), an upload rewrites it, the next run deletes it.
//! * Files without a row (a crash between a block's write and its row, a temp file of a cut
//!   write) are deleted once older than the grace period and 15 minutes (writes in flight
//!   are younger), block files checked against the rows holding the sweep lock, which an
//!   upload's transaction holds shared from before its row is made until it has checked its
//!   file.
//!
//! One collector at a time, decided through the database (`gc_lease`): several server
//! processes over one database, or `imgfs gc` beside a running server, take turns.

use super::db::{params, OptionalExtension};
use super::scope::{Scope, Sweep};
use super::SqlStore;
use crate::api::hashing::BlockHash;
use crate::store::{GcReport, Result};
use std::time::{Duration, SystemTime};

/// Rows or files handled per transaction: the write lock is held for one batch at a time.
const BATCH: usize = 512;

/// Stray files younger than this stay whatever the grace period: a temp file is a write in
/// flight (seconds), and a block file without a row may be one whose transaction is about to
/// commit.
const STRAY_MIN_AGE: Duration = Duration::from_secs(900);

/// How long a collector's claim lasts without being renewed (renewed at every batch).
const LEASE: Duration = Duration::from_secs(600);

impl SqlStore {
    fn take_lease(&self, me: &str) -> Result<bool> {
        self.with_tx(&Scope::name("gc"), |tx| {
            let now = tx.now();
            let cur: Option<(String, i64)> = tx
                .query_row("SELECT holder, until FROM gc_lease WHERE id = 1", (), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            if let Some((holder, until)) = cur {
                if holder != me && until > now {
                    return Ok(false);
                }
            }
            tx.execute(
                "INSERT INTO gc_lease (id, holder, until) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET holder = ?1, until = ?2",
                params![me, now + LEASE.as_micros() as i64],
            )?;
            Ok(true)
        })
    }

    fn drop_lease(&self, me: &str) -> Result<()> {
        self.with_tx(&Scope::name("gc"), |tx| {
            tx.execute("DELETE FROM gc_lease WHERE id = 1 AND holder = ?1", [me])?;
            Ok(())
        })
    }

    /// One collection: uploads no version took within `grace` stop counting, blocks nobody has
    /// held for `grace` are deleted, and so are stray files older than `grace`.
    pub(super) fn collect(&self, grace: Duration) -> Result<GcReport> {
        self.claim_blocks()?;
        let me = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        if !self.take_lease(&me)? {
            return Ok(GcReport {
                skipped: true,
                ..GcReport::default()
            });
        }
        let out = self.collect_leased(&me, grace);
        if let Err(e) = self.drop_lease(&me) {
            tracing::warn!(error = %e, "could not give the collector's lease back (it expires)");
        }
        out
    }

    fn collect_leased(&self, me: &str, grace: Duration) -> Result<GcReport> {
        let mut report = GcReport::default();
        self.with_tx(&Scope::rows(), super::tokens::forget_expired)?;
        let grace_us = grace.as_micros() as i64;
        // Uploads that no version took in time, an account at a time under its lock. (The
        // accounts are found without it, by this machine's clock: a hint; each account's rows
        // are decided by the database's.)
        let mut after = String::new();
        loop {
            let accounts: Vec<String> = self.with_read(|c| {
                let mut st = c.prepare_cached(
                    "SELECT DISTINCT account FROM account_blocks WHERE refs = 0 AND since < ?1 AND account > ?2
                     ORDER BY account LIMIT ?3",
                )?;
                let rows = st.query_map(params![c.now() - grace_us, &after, BATCH as i64], |r| r.get(0))?;
                rows.collect::<Result<_>>()
            })?;
            for account in &accounts {
                loop {
                    let n = self.with_tx(&Scope::account(account), |tx| {
                        let expired: Vec<(Vec<u8>, i64)> = {
                            let mut st = tx.prepare_cached(
                                "SELECT hash, since FROM account_blocks WHERE account = ?1 AND refs = 0 AND since < ?2
                                 ORDER BY hash LIMIT ?3",
                            )?;
                            let rows = st.query_map(params![account, tx.now() - grace_us, BATCH as i64], |r| {
                                Ok((r.get(0)?, r.get(1)?))
                            })?;
                            rows.collect::<Result<_>>()?
                        };
                        for (hash, since) in &expired {
                            // (a one-hash "version" released at the upload's own time: collectable now)
                            super::refs::release(tx, account, hash, *since)?;
                        }
                        Ok(expired.len())
                    })?;
                    report.uploads_expired += n as u64;
                    if n < BATCH || !self.take_lease(me)? {
                        break;
                    }
                }
            }
            match accounts.last() {
                Some(last) if accounts.len() == BATCH && self.take_lease(me)? => after = last.clone(),
                _ => break,
            }
        }
        // Blocks nobody holds.
        loop {
            let (n, bytes) = self.with_tx(&Scope::rows(), |tx| {
                let dead: Vec<(Vec<u8>, i64)> = {
                    // (held until the commit: an upload of one of them waits, then makes a new row)
                    let mut st = tx.prepare_cached(&format!(
                        "SELECT hash, size FROM blocks WHERE refs = 0 AND free_since < ?1 LIMIT ?2{}",
                        tx.for_update()
                    ))?;
                    let rows = st.query_map(params![tx.now() - grace_us, BATCH as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                    rows.collect::<Result<_>>()?
                };
                let mut bytes = 0u64;
                for (hash, size) in &dead {
                    if let Ok(h) = <[u8; 32]>::try_from(hash.as_slice()) {
                        self.blocks.remove(&BlockHash(h))?;
                    }
                    tx.prepare_cached("DELETE FROM blocks WHERE hash = ?1")?
                        .execute([hash])?;
                    bytes += (*size).max(0) as u64;
                }
                Ok((dead.len(), bytes))
            })?;
            report.blocks_freed += n as u64;
            report.bytes_freed += bytes;
            if n < BATCH || !self.take_lease(me)? {
                break;
            }
        }
        // Stray files: temp files of cut writes go at once; block files are checked against
        // the database a batch at a time, holding the sweep lock (no upload commits meanwhile).
        let older_than = SystemTime::now() - grace.max(STRAY_MIN_AGE);
        let mut batch: Vec<(BlockHash, u64)> = Vec::with_capacity(BATCH);
        let (mut n, mut bytes) = (0u64, 0u64);
        let mut flush = |batch: &mut Vec<(BlockHash, u64)>| -> Result<()> {
            self.with_tx(&Scope::rows().with_sweep(Sweep::Exclusive), |tx| {
                let mut st = tx.prepare_cached("SELECT 1 FROM blocks WHERE hash = ?1")?;
                for (h, len) in batch.iter() {
                    if !st.exists([&h.0[..]])? && self.blocks.remove(h)? {
                        n += 1;
                        bytes += len;
                    }
                }
                Ok(())
            })?;
            batch.clear();
            self.take_lease(me)?;
            Ok(())
        };
        let temps = self.blocks.sweep(older_than, &mut |h, len| {
            batch.push((h, len));
            if batch.len() == BATCH {
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
