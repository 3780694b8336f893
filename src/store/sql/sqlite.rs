//! SQLite under the engine: one file (WAL, `synchronous=FULL`, one writer), its schema grown
//! step by step from the first release (each step in the module whose rows it adds).

use super::db::{Db, SqlRow, Value};
use super::{counts, grants, images, refs, tokens};
use super::{migrate_to_2, ENGINE_ID, SCHEMA, SCHEMA_VERSION, SHARED_INDEX};
use crate::api::hashing::BlockHash;
use crate::store::{Result, StoreError};
use rusqlite::{params_from_iter, Connection};
use std::path::Path;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NoRow,
            // (another process holds the write lock past the busy timeout)
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy => {
                StoreError::Unavailable("the metadata database is busy".into())
            }
            e => StoreError::Db(e.to_string()),
        }
    }
}

/// Opens (creating or migrating) the database file.
pub(super) fn open(db_path: &Path, size_of: &dyn Fn(&BlockHash) -> Result<Option<u64>>) -> Result<Connection> {
    let conn = Connection::open(db_path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL could lose the last commits on power loss; acknowledged must mean durable.
    conn.pragma_update(None, "synchronous", "FULL")?;
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if v > SCHEMA_VERSION {
        return Err(StoreError::Invalid(format!(
            "metadata database schema version {v} is newer than the supported {SCHEMA_VERSION}"
        )));
    }
    if v < SCHEMA_VERSION {
        // Each step from the version before; a new database takes them all (one path to test).
        let tx = conn.unchecked_transaction()?;
        let db = Db::Sqlite(&tx);
        if v < 1 {
            db.execute_batch(SCHEMA)?;
        }
        if v < 2 {
            migrate_to_2(&db)?;
        }
        if v < 3 {
            refs::migrate_to_3(&db, size_of)?;
        }
        if v < 4 {
            tokens::migrate_to_4(&db)?;
        }
        if v < 5 {
            counts::migrate_to_5(&db)?;
            db.execute_batch(SHARED_INDEX)?;
        }
        if v < 6 {
            grants::migrate_to_6(&db)?;
            images::migrate_to_6(&db)?;
        }
        if v < 7 {
            refs::migrate_to_7(&db, size_of)?;
            db.execute_batch(ENGINE_ID)?;
            db.execute(
                "INSERT INTO engine (id, uuid) VALUES (1, ?1)",
                [uuid::Uuid::new_v4().to_string()],
            )?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        if v > 0 {
            tracing::info!("metadata database migrated from schema version {v} to {SCHEMA_VERSION}");
        }
    }
    Ok(conn)
}

fn bind(p: Vec<Value>) -> impl Iterator<Item = rusqlite::types::Value> {
    p.into_iter().map(|v| match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(i),
        Value::Text(s) => rusqlite::types::Value::Text(s),
        Value::Blob(b) => rusqlite::types::Value::Blob(b),
    })
}

pub(super) fn execute(c: &Connection, sql: &str, p: Vec<Value>) -> Result<usize> {
    Ok(c.prepare_cached(sql)?.execute(params_from_iter(bind(p)))?)
}

pub(super) fn rows(c: &Connection, sql: &str, p: Vec<Value>) -> Result<Vec<SqlRow>> {
    let mut st = c.prepare_cached(sql)?;
    let n = st.column_count();
    let mut rows = st.query(params_from_iter(bind(p)))?;
    let mut out = vec![];
    while let Some(r) = rows.next()? {
        out.push(SqlRow(values(r, n)?));
    }
    Ok(out)
}

/// The first `n` columns of a row.
pub(super) fn values(r: &rusqlite::Row, n: usize) -> Result<Vec<Value>> {
    use rusqlite::types::ValueRef;
    let mut vals = Vec::with_capacity(n);
    for i in 0..n {
        vals.push(match r.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Int(i),
            // (no column is REAL; a float from an expression is taken as its integer part)
            ValueRef::Real(f) => Value::Int(f as i64),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        });
    }
    Ok(vals)
}

/// The blocks some account holds (in a version, or sent within the grace period) in the
/// database file `db`, in hash order after `after`, at most `limit`: `(hash, stored size)`.
/// Blocks known lost are left out. For a migration, which reads a snapshot.
pub fn held_blocks(db: &Path, after: Option<&BlockHash>, limit: usize) -> Result<Vec<(BlockHash, u64)>> {
    let c = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let after = after.map_or(vec![], |h| h.0.to_vec());
    let rows = rows(
        &c,
        "SELECT hash, size FROM blocks WHERE refs > 0 AND lost = 0 AND hash > ?1 ORDER BY hash LIMIT ?2",
        vec![Value::Blob(after), Value::Int(limit as i64)],
    )?;
    let mut out = vec![];
    for r in rows {
        let (h, size): (Vec<u8>, i64) = (r.get(0)?, r.get(1)?);
        if let Ok(h) = <[u8; 32]>::try_from(h.as_slice()) {
            out.push((BlockHash(h), size.max(0) as u64));
        }
    }
    Ok(out)
}

/// How many blocks [`held_blocks`] lists in all.
pub fn held_block_count(db: &Path) -> Result<u64> {
    let c = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let n: i64 = c.query_row("SELECT COUNT(*) FROM blocks WHERE refs > 0 AND lost = 0", (), |r| {
        r.get(0)
    })?;
    Ok(n.max(0) as u64)
}
