//! Who holds which block, kept in the transaction that commits or drops a version, and what
//! each account is charged for it.
//!
//! `account_blocks (account, hash, refs, since)`: `refs` counts the account's versions that
//! name the block (each version once, however often it names it); a row with `refs = 0` is a
//! block the account *sent* and no version of its own holds yet (an upload in flight, or an
//! abandoned one), kept from `since` for one grace period. A row is what makes a block present
//! for an account (`missing_blocks`), and what the account is charged for: `accounts.stored`
//! is the sum of the stored sizes of its rows — each distinct block once, however many
//! versions or objects name it, so history and metadata-only versions cost nothing beyond
//! their changed blocks, and a block uploaded but not yet in an object is charged as well.
//!
//! `blocks (hash, size, refs, free_since)`: `refs` counts the accounts with a row; at 0 the
//! block belongs to nobody and the collector deletes it once `free_since` is a grace period
//! old. Charging is the same whether or not the block was already stored by someone else, so
//! quotas say nothing about other accounts' data.
//!
//! `blocks.lost` (version 7): a read found the block missing or corrupt in the block store;
//! it is missing for every account until someone uploads it again. So "which of these blocks
//! may this account use" is answered by the metadata alone, one query and no request to the
//! block store per block (an S3 store would otherwise take a HEAD per block of a hashmap).
//!
//! The all-zero block (stored as nothing) is never counted.

use super::db::{params, Db, OptionalExtension};
use crate::api::hashing::BlockHash;
use crate::store::{Result, StoreError};

/// Version 3 (from 2): reference counts, the charge per account, the collector's lease.
pub(super) const SCHEMA_3: &str = r#"
ALTER TABLE account_blocks ADD COLUMN refs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account_blocks ADD COLUMN since INTEGER NOT NULL DEFAULT 0;
CREATE INDEX account_blocks_pending ON account_blocks (since) WHERE refs = 0;
CREATE TABLE blocks (hash BLOB PRIMARY KEY, size INTEGER NOT NULL, refs INTEGER NOT NULL,
                     free_since INTEGER) WITHOUT ROWID;
CREATE INDEX blocks_free ON blocks (free_since) WHERE refs = 0;
ALTER TABLE accounts ADD COLUMN stored INTEGER NOT NULL DEFAULT 0;
CREATE TABLE gc_lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, until INTEGER NOT NULL);
"#;

/// The distinct blocks a packed hash list names, without the all-zero one.
pub(super) fn distinct(packed: &[u8]) -> Vec<[u8; 32]> {
    let zeros = BlockHash::empty().0;
    let mut v: Vec<[u8; 32]> = packed
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32-byte chunk"))
        .filter(|h| *h != zeros)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The bytes `account` is charged for.
pub(super) fn stored(c: &Db, account: &str) -> Result<u64> {
    let s: Option<i64> = c
        .prepare_cached("SELECT stored FROM accounts WHERE uuid = ?1")?
        .query_row([account], |r| r.get(0))
        .optional()?;
    Ok(s.unwrap_or(0).max(0) as u64)
}

fn charge(c: &Db, account: &str, delta: i64, now: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO accounts (uuid, quota, modified, stored)
             VALUES (?1, 0, ?3, CASE WHEN ?2 > 0 THEN CAST(?2 AS BIGINT) ELSE 0 END)
         ON CONFLICT (uuid) DO UPDATE SET stored = CASE WHEN accounts.stored + ?2 > 0 THEN accounts.stored + ?2 ELSE 0 END",
    )?
    .execute(params![account, delta, now])?;
    Ok(())
}

fn block_size(c: &Db, h: &[u8; 32]) -> Result<Option<i64>> {
    c.prepare_cached("SELECT size FROM blocks WHERE hash = ?1")?
        .query_row([&h[..]], |r| r.get(0))
        .optional()
}

fn account_refs(c: &Db, account: &str, h: &[u8; 32]) -> Result<Option<i64>> {
    c.prepare_cached("SELECT refs FROM account_blocks WHERE account = ?1 AND hash = ?2")?
        .query_row(params![account, &h[..]], |r| r.get(0))
        .optional()
}

/// One more account holds the stored block: its size, or `None` if there is no such block
/// (any more: the collector may have taken it since it was looked at). One statement, so that
/// on PostgreSQL it waits for a collector holding the row and then sees what it did.
fn block_gained(c: &Db, h: &[u8; 32]) -> Result<Option<i64>> {
    c.prepare_cached("UPDATE blocks SET refs = refs + 1, free_since = NULL WHERE hash = ?1 RETURNING size")?
        .query_row([&h[..]], |r| r.get(0))
        .optional()
}

/// One account less holds the block; at none, its grace period starts at `since`.
fn block_lost(c: &Db, h: &[u8; 32], since: i64) -> Result<()> {
    c.prepare_cached(
        "UPDATE blocks SET refs = CASE WHEN refs > 1 THEN refs - 1 ELSE 0 END,
                free_since = CASE WHEN refs <= 1 THEN CAST(?2 AS BIGINT) ELSE NULL END WHERE hash = ?1",
    )?
    .execute(params![&h[..], since])?;
    Ok(())
}

/// `account` sent a block (`size` stored bytes): present for it from now on, charged to it
/// until a version of its own holds it (then charged as held) or the grace period ends.
pub(super) fn sent(c: &Db, account: &str, h: &[u8; 32], size: u64, now: i64) -> Result<()> {
    if *h == BlockHash::empty().0 {
        return Ok(());
    }
    match account_refs(c, account, h)? {
        Some(0) => {
            c.prepare_cached("UPDATE account_blocks SET since = ?3 WHERE account = ?1 AND hash = ?2")?
                .execute(params![account, &h[..], now])?;
        }
        Some(_) => {}
        None => {
            // A new row or one holder more, atomically: writers of other accounts may send or
            // release the same block at once, and the collector may be deleting it (then this
            // waits for its commit and makes a new row).
            let size: i64 = c
                .prepare_cached(
                    "INSERT INTO blocks (hash, size, refs) VALUES (?1, ?2, 1)
                     ON CONFLICT (hash) DO UPDATE SET refs = blocks.refs + 1, free_since = NULL
                     RETURNING size",
                )?
                .query_row(params![&h[..], size as i64], |r| r.get(0))?;
            c.prepare_cached("INSERT INTO account_blocks (account, hash, refs, since) VALUES (?1, ?2, 0, ?3)")?
                .execute(params![account, &h[..], now])?;
            charge(c, account, size, now)?;
        }
    }
    Ok(())
}

/// A new version of `account`'s names these blocks. Each must already be stored (sent by
/// someone, or held): the caller checked that the writer may use them.
pub(super) fn hold(c: &Db, account: &str, packed: &[u8], now: i64) -> Result<()> {
    let mut gained = 0i64;
    for h in distinct(packed) {
        if account_refs(c, account, &h)?.is_some() {
            c.prepare_cached("UPDATE account_blocks SET refs = refs + 1 WHERE account = ?1 AND hash = ?2")?
                .execute(params![account, &h[..]])?;
            continue;
        }
        let size = block_gained(c, &h)?.ok_or(StoreError::LostBlock(BlockHash(h)))?;
        c.prepare_cached("INSERT INTO account_blocks (account, hash, refs, since) VALUES (?1, ?2, 1, ?3)")?
            .execute(params![account, &h[..], now])?;
        gained += size;
    }
    if gained > 0 {
        charge(c, account, gained, now)?;
    }
    Ok(())
}

/// A version of `account`'s that named these blocks is gone.
pub(super) fn release(c: &Db, account: &str, packed: &[u8], now: i64) -> Result<()> {
    let mut freed = 0i64;
    for h in distinct(packed) {
        match account_refs(c, account, &h)? {
            Some(n) if n > 1 => {
                c.prepare_cached("UPDATE account_blocks SET refs = refs - 1 WHERE account = ?1 AND hash = ?2")?
                    .execute(params![account, &h[..]])?;
            }
            Some(_) => {
                c.prepare_cached("DELETE FROM account_blocks WHERE account = ?1 AND hash = ?2")?
                    .execute(params![account, &h[..]])?;
                freed += block_size(c, &h)?.unwrap_or(0);
                block_lost(c, &h, now)?;
            }
            // (never counted: a database repaired by hand, say; nothing to give back)
            None => {}
        }
    }
    if freed > 0 {
        charge(c, account, -freed, now)?;
    }
    Ok(())
}

/// Drops the versions `select` names (a `SELECT id, account FROM ...` over `versions v`,
/// `paths p`, `containers k`), giving their blocks back, with their attributes.
pub(super) fn drop_versions(c: &Db, select: &str, param: super::db::Value, now: i64) -> Result<()> {
    let doomed: Vec<(i64, String, Vec<u8>)> = {
        let mut st = c.prepare_cached(select)?;
        let rows = st.query_map([&param], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_>>()?
    };
    for (vid, account, hashes) in doomed {
        release(c, &account, &hashes, now)?;
        c.prepare_cached("DELETE FROM attrs WHERE version = ?1")?
            .execute([vid])?;
        c.prepare_cached("DELETE FROM versions WHERE id = ?1")?.execute([vid])?;
    }
    Ok(())
}

/// From version 2: every account holds what its versions name, and is charged for it; blocks
/// it sent or copied and holds in no version become uploads whose grace period starts now.
pub(super) fn migrate_to_3(c: &Db, size_of: &dyn Fn(&BlockHash) -> Result<Option<u64>>) -> Result<()> {
    c.execute_batch(SCHEMA_3)?;
    let now = crate::api::timefmt::now_micros();
    c.execute(
        "DELETE FROM account_blocks WHERE hash = ?1",
        [&BlockHash::empty().0[..]],
    )?;
    {
        let mut st = c.prepare(
            "SELECT k.account, v.hashes FROM versions v JOIN paths p ON p.id = v.path
             JOIN containers k ON k.id = p.container WHERE v.deleted = 0",
        )?;
        let rows = st.query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        for r in rows {
            let (account, hashes) = r?;
            for h in distinct(&hashes) {
                c.execute(
                    "INSERT INTO account_blocks (account, hash, refs, since) VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (account, hash) DO UPDATE SET refs = refs + 1",
                    params![account, &h[..], now],
                )?;
            }
        }
    }
    c.execute("UPDATE account_blocks SET since = ?1", [now])?;
    let hashes: Vec<Vec<u8>> = {
        let mut st = c.prepare("SELECT DISTINCT hash FROM account_blocks")?;
        let rows = st.query_map((), |r| r.get(0))?;
        rows.collect::<Result<_>>()?
    };
    for h in hashes {
        let Ok(arr) = <[u8; 32]>::try_from(h.as_slice()) else {
            continue;
        };
        // (a block a version names but the store lost is counted as nothing)
        let size = size_of(&BlockHash(arr))?.unwrap_or(0);
        c.execute(
            "INSERT INTO blocks (hash, size, refs) SELECT ?1, ?2, COUNT(*) FROM account_blocks WHERE hash = ?1",
            params![&h, size as i64],
        )?;
    }
    c.execute(
        "UPDATE accounts SET stored = (SELECT COALESCE(SUM(b.size), 0) FROM account_blocks a
         JOIN blocks b ON b.hash = a.hash WHERE a.account = accounts.uuid)",
        (),
    )?;
    Ok(())
}

/// Version 7 (from 6): `blocks.lost`, set for the blocks the store does not have now.
pub(super) fn migrate_to_7(c: &Db, size_of: &dyn Fn(&BlockHash) -> Result<Option<u64>>) -> Result<()> {
    c.execute_batch("ALTER TABLE blocks ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;")?;
    let held: Vec<Vec<u8>> = {
        let mut st = c.prepare("SELECT hash FROM blocks WHERE refs > 0")?;
        let rows = st.query_map((), |r| r.get(0))?;
        rows.collect::<Result<_>>()?
    };
    for h in held {
        let Ok(arr) = <[u8; 32]>::try_from(h.as_slice()) else {
            continue;
        };
        if size_of(&BlockHash(arr))?.is_none() {
            lost(c, &arr)?;
        }
    }
    Ok(())
}

/// The block store does not have this block (any more): nobody may name it until it is sent
/// again.
pub(super) fn lost(c: &Db, h: &[u8; 32]) -> Result<()> {
    c.prepare_cached("UPDATE blocks SET lost = 1 WHERE hash = ?1")?
        .execute(params![&h[..]])?;
    Ok(())
}

/// The block was stored again.
pub(super) fn found(c: &Db, h: &[u8; 32]) -> Result<()> {
    c.prepare_cached("UPDATE blocks SET lost = 0 WHERE hash = ?1 AND lost = 1")?
        .execute(params![&h[..]])?;
    Ok(())
}

/// Whether `account` may name the block in a hashmap: it has a row for it, and the block is
/// not known lost.
pub(super) fn usable(c: &Db, account: &str, h: &[u8; 32]) -> Result<bool> {
    Ok(!usable_of(c, account, std::slice::from_ref(h))?.is_empty())
}

/// Which of `hashes` (at most [`USABLE_BATCH`]) have a row, whoever holds them: one
/// statement.
pub(super) fn known_of(c: &Db, hashes: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
    hashes_among(c, "SELECT hash FROM blocks WHERE hash IN ({})", &[], hashes)
}

/// How many hashes [`usable_of`] and [`known_of`] ask about per statement.
pub(super) const USABLE_BATCH: usize = 500;

/// Which of `hashes` (at most [`USABLE_BATCH`]) `account` may name, as [`usable`] decides:
/// one statement (a round trip to a networked database) for all of them, in hash order.
pub(super) fn usable_of(c: &Db, account: &str, hashes: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
    hashes_among(
        c,
        "SELECT a.hash FROM account_blocks a JOIN blocks b ON b.hash = a.hash
         WHERE a.account = ?1 AND a.hash IN ({}) AND b.lost = 0 ORDER BY a.hash",
        &[&account],
        hashes,
    )
}

/// The hashes a query of one hash column gives, its `IN ({})` filled with a parameter per
/// hash after the `lead` ones.
fn hashes_among(c: &Db, sql: &str, lead: &[&dyn super::db::ToValue], hashes: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
    let first = lead.len() + 1;
    let marks: Vec<String> = (first..first + hashes.len()).map(|i| format!("?{i}")).collect();
    let sql = sql.replace("{}", &marks.join(", "));
    let mut args: Vec<&dyn super::db::ToValue> = lead.to_vec();
    args.extend(hashes.iter().map(|h| h as &dyn super::db::ToValue));
    let mut out = vec![];
    for h in c
        .prepare_cached(&sql)?
        .query_map(&args[..], |r| r.get::<_, Vec<u8>>(0))?
    {
        if let Ok(h) = <[u8; 32]>::try_from(h?.as_slice()) {
            out.push(h);
        }
    }
    Ok(out)
}
