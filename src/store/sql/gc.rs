//! The collector's part in the metadata: which rows may go, and under which locks
//! ([`crate::store::Engine::collect_garbage`] runs the phases and deletes the bytes).
//!
//! Why it cannot lose data:
//! * A block is deleted only when no account has a row for it (`blocks.refs = 0`: no version
//!   names it, no upload of the last grace period sent it) and has had none for a grace
//!   period. Row counts change in the transactions that commit or drop versions, so they are
//!   never behind what the versions say.
//! * The bytes are removed inside the transaction that deletes the block's row, holding that
//!   row (SQLite: the one write lock; PostgreSQL: `FOR UPDATE`). A concurrent upload of the
//!   same block either commits its row first (the block has a holder again: not deleted) or
//!   waits for the collector's commit and makes a new row; the upload then checks, inside its
//!   own transaction, that the bytes are there, and writes them again if not (`block_sent`).
//! * An upload no version took stops counting in a transaction holding its account's lock
//!   ([`super::scope`]), the lock a hashmap PUT of that writer holds while it re-checks that
//!   the writer has a row for every block and takes them: either the PUT commits first (the
//!   block is held: not expired) or it sees the row gone and answers which blocks to send.
//! * A crash between the removal and the commit leaves a row with `refs = 0` and no bytes: no
//!   hashmap can name it (nobody has it), an upload rewrites it, the next run deletes it.
//! * Stored blocks without a row (a crash between a block's write and its row) are deleted
//!   once older than the grace period and 15 minutes (writes in flight are younger), checked
//!   against the rows holding the sweep lock, which an upload's transaction holds shared from
//!   before its row is made until it has checked its bytes.
//!
//! One collector at a time, decided through the database (`gc_lease`): several server
//! processes over one database, or `imgfs gc` beside a running server, take turns.

use super::db::{params, OptionalExtension};
use super::scope::{Scope, Sweep};
use super::SqlStore;
use crate::api::hashing::BlockHash;
use crate::store::Result;
use std::time::Duration;

/// Rows or files handled per transaction: the write lock is held for one batch at a time.
const BATCH: usize = 512;

/// How long a collector's claim lasts without being renewed (renewed at every batch).
const LEASE: Duration = Duration::from_secs(600);

impl SqlStore {
    pub(super) fn take_lease(&self, me: &str) -> Result<bool> {
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

    pub(super) fn drop_lease(&self, me: &str) -> Result<()> {
        self.with_tx(&Scope::name("gc"), |tx| {
            tx.execute("DELETE FROM gc_lease WHERE id = 1 AND holder = ?1", [me])?;
            Ok(())
        })
    }

    /// Tokens a day past their expiry, then the uploads no version took within `grace`, an
    /// account at a time under its lock. (The accounts are found without it, by this
    /// machine's clock: a hint; each account's rows are decided by the database's.)
    pub(super) fn expire_uploads(&self, grace: Duration, renew: &mut dyn FnMut() -> Result<bool>) -> Result<u64> {
        self.with_tx(&Scope::rows(), super::tokens::forget_expired)?;
        let grace_us = grace.as_micros() as i64;
        let mut expired_total = 0u64;
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
                    expired_total += n as u64;
                    if n < BATCH || !renew()? {
                        break;
                    }
                }
            }
            match accounts.last() {
                Some(last) if accounts.len() == BATCH && renew()? => after = last.clone(),
                _ => break,
            }
        }
        Ok(expired_total)
    }

    /// Blocks nobody has held for `grace`: their bytes removed by `remove`, each inside the
    /// transaction that deletes its row, holding it. Gives (blocks, bytes).
    pub(super) fn free_blocks(
        &self,
        grace: Duration,
        remove: &mut dyn FnMut(&BlockHash) -> Result<()>,
        renew: &mut dyn FnMut() -> Result<bool>,
    ) -> Result<(u64, u64)> {
        let grace_us = grace.as_micros() as i64;
        let (mut blocks, mut freed) = (0u64, 0u64);
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
                        remove(&BlockHash(h))?;
                    }
                    tx.prepare_cached("DELETE FROM blocks WHERE hash = ?1")?
                        .execute([hash])?;
                    bytes += (*size).max(0) as u64;
                }
                Ok((dead.len(), bytes))
            })?;
            blocks += n as u64;
            freed += bytes;
            if n < BATCH || !renew()? {
                return Ok((blocks, freed));
            }
        }
    }

    /// Of blocks found stored, those without a row, removed holding the sweep lock (no upload
    /// records a block meanwhile). The rows are first looked up together without it (one
    /// statement per [`super::refs::USABLE_BATCH`]; almost every block has one), so the lock,
    /// which holds off every block upload, is taken only for the few that may be strays, and
    /// each of those is decided again under it. Gives (blocks, bytes).
    pub(super) fn forget_strays(
        &self,
        found: &[(BlockHash, u64)],
        remove: &mut dyn FnMut(&BlockHash) -> Result<bool>,
    ) -> Result<(u64, u64)> {
        let mut known = std::collections::HashSet::new();
        self.with_read(|c| {
            for chunk in found.chunks(super::refs::USABLE_BATCH) {
                let hashes: Vec<[u8; 32]> = chunk.iter().map(|(h, _)| h.0).collect();
                known.extend(super::refs::known_of(c, &hashes)?);
            }
            Ok(())
        })?;
        let maybe: Vec<&(BlockHash, u64)> = found.iter().filter(|(h, _)| !known.contains(&h.0)).collect();
        if maybe.is_empty() {
            return Ok((0, 0));
        }
        self.with_tx(&Scope::rows().with_sweep(Sweep::Exclusive), |tx| {
            let (mut n, mut bytes) = (0u64, 0u64);
            let mut st = tx.prepare_cached("SELECT 1 FROM blocks WHERE hash = ?1")?;
            for (h, len) in &maybe {
                if !st.exists([&h.0[..]])? && remove(h)? {
                    n += 1;
                    bytes += len;
                }
            }
            Ok((n, bytes))
        })
    }
}
