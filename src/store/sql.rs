//! The engine: metadata in one SQLite file (WAL, `synchronous=FULL`, one writer) or in
//! PostgreSQL ([`postgres`]: a lock per account, [`scope`]), blocks in a [`BlockStore`]. Each
//! trait method is one write transaction (SQLite: an immediate one).
//!
//! Model (after Pithos' node/version tables): a `paths` row per name ever used in a container,
//! pointing at its current version (`latest`, NULL once deleted); `versions` rows drawn from
//! one AUTOINCREMENT counter (the server-wide version ids), each with its block list, and
//! `attrs` rows per version and domain (`pithos` user metadata, `plankton` image metadata).
//! Sharing and the public flag belong to the path, not to versions.
//!
//! Crash order: the blocks a version names are durable (fsynced by the block store) before the
//! transaction inserting that version commits, and the commit is durable (`synchronous=FULL`)
//! before the caller acknowledges; so after a crash every path shows its old or its new
//! version, whole.

use crate::api::hashing::BlockHash;
use crate::api::pithos::Sharing;
use crate::api::timefmt::Micros;
use crate::store::access::{decide, Access, Position, Readable, SharedDirs};
use crate::store::*;
use db::{params, Db, OptionalExtension};
use scope::{Scope, Sweep};
use std::path::Path;
use std::sync::{Arc, Mutex};

mod counts;
pub(crate) mod db;
mod gc;
mod grants;
mod images;
mod off_thread;
pub mod postgres;
mod refs;
pub(crate) mod scope;
pub mod sqlite;
mod tokens;

/// The schema this build makes and reads (SQLite's `user_version`, PostgreSQL's
/// `schema_version` table).
pub const SCHEMA_VERSION: i64 = 7;

const SCHEMA: &str = r#"
CREATE TABLE users (uuid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash BLOB NOT NULL UNIQUE,
                    created INTEGER NOT NULL);
CREATE TABLE accounts (uuid TEXT PRIMARY KEY, quota INTEGER NOT NULL DEFAULT 0, modified INTEGER NOT NULL);
CREATE TABLE account_meta (account TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (account, key));
CREATE TABLE account_groups (account TEXT NOT NULL, grp TEXT NOT NULL, members TEXT NOT NULL, PRIMARY KEY (account, grp));
CREATE TABLE containers (id INTEGER PRIMARY KEY, account TEXT NOT NULL, name TEXT NOT NULL,
                         versioning TEXT NOT NULL, quota INTEGER NOT NULL, modified INTEGER NOT NULL,
                         UNIQUE (account, name));
CREATE TABLE container_meta (container INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (container, key));
CREATE TABLE paths (id INTEGER PRIMARY KEY, container INTEGER NOT NULL, name TEXT NOT NULL, latest INTEGER,
                    sharing TEXT, public_id TEXT UNIQUE, UNIQUE (container, name));
CREATE TABLE versions (id INTEGER PRIMARY KEY AUTOINCREMENT, path INTEGER NOT NULL, uuid TEXT NOT NULL,
                       size INTEGER NOT NULL, content_type TEXT NOT NULL, hashes BLOB NOT NULL,
                       merkle TEXT NOT NULL, md5 TEXT, mtime INTEGER NOT NULL, modified_by TEXT NOT NULL,
                       deleted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX versions_path ON versions (path, id);
CREATE INDEX versions_uuid ON versions (uuid);
CREATE TABLE attrs (version INTEGER NOT NULL, domain TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                    PRIMARY KEY (version, domain, key));
CREATE INDEX attrs_key ON attrs (domain, key);
"#;

/// Version 7: the database's identity, which its block store is marked with.
const ENGINE_ID: &str = "CREATE TABLE engine (id INTEGER PRIMARY KEY CHECK (id = 1), uuid TEXT NOT NULL);";

/// Version 2: which blocks each account may use in a hashmap (sent them, holds them, copied
/// them) — `MetaStore::missing_blocks`.
const BLOCK_PRESENCE: &str = r#"
CREATE TABLE account_blocks (account TEXT NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (account, hash)) WITHOUT ROWID;
"#;

/// From version 1: every account has the blocks its stored versions hold.
fn migrate_to_2(tx: &Db) -> Result<()> {
    tx.execute_batch(BLOCK_PRESENCE)?;
    let mut st = tx.prepare(
        "SELECT k.account, v.hashes FROM versions v JOIN paths p ON p.id = v.path
         JOIN containers k ON k.id = p.container",
    )?;
    let mut ins = tx.prepare("INSERT OR IGNORE INTO account_blocks (account, hash) VALUES (?1, ?2)")?;
    let rows = st.query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    for r in rows {
        let (account, hashes) = r?;
        for h in hashes.chunks_exact(32) {
            ins.execute(params![account, h])?;
        }
    }
    Ok(())
}

/// Version 5 also: the shared paths of a container without reading the others (what another
/// user may read is found from them).
const SHARED_INDEX: &str = "CREATE INDEX paths_shared ON paths (container, name) WHERE sharing IS NOT NULL;";

/// The container every new user gets (kamaki's default).
pub const DEFAULT_CONTAINER: &str = "pithos";

/// Where the metadata is.
enum Backend {
    Sqlite(Mutex<rusqlite::Connection>),
    Pg(postgres::PgPool),
}

/// Cheap to clone: the clones share the database (the connection or the pool).
#[derive(Clone)]
pub struct SqlStore {
    backend: Arc<Backend>,
    /// This database's engine id (`engine.uuid`), the owner mark of its block store.
    id: Arc<str>,
}

/// A version row.
struct Row {
    id: i64,
    path: i64,
    uuid: String,
    size: i64,
    content_type: String,
    hashes: Vec<u8>,
    merkle: String,
    md5: Option<String>,
    mtime: i64,
    modified_by: String,
    /// A deletion marker, not readable data.
    deleted: bool,
}

const ROW_COLS: &str =
    "v.id, v.path, v.uuid, v.size, v.content_type, v.hashes, v.merkle, v.md5, v.mtime, v.modified_by, v.deleted";

fn row_from(r: &db::SqlRow, at: usize) -> Result<Row> {
    Ok(Row {
        id: r.get(at)?,
        path: r.get(at + 1)?,
        uuid: r.get(at + 2)?,
        size: r.get(at + 3)?,
        content_type: r.get(at + 4)?,
        hashes: r.get(at + 5)?,
        merkle: r.get(at + 6)?,
        md5: r.get(at + 7)?,
        mtime: r.get(at + 8)?,
        modified_by: r.get(at + 9)?,
        deleted: r.get::<_, i64>(at + 10)? != 0,
    })
}

fn pack_hashes(hashes: &[BlockHash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

fn unpack_hashes(b: &[u8]) -> Vec<BlockHash> {
    b.chunks_exact(32)
        .map(|c| BlockHash(c.try_into().expect("32-byte chunk")))
        .collect()
}

struct ContainerRow {
    id: i64,
    versioning: Versioning,
    quota: u64,
}

/// Where a path row is, plus its container's policy.
struct PathCtx {
    container: ContainerRow,
    account: String,
    container_name: String,
}

impl SqlStore {
    /// SQLite at `db_path` (created or migrated to this schema; migrations of old schemas ask
    /// `size_of` the stored sizes of the blocks).
    pub fn open(db_path: &Path, size_of: &dyn Fn(&BlockHash) -> Result<Option<u64>>) -> Result<SqlStore> {
        let conn = sqlite::open(db_path, size_of)?;
        SqlStore::over(Backend::Sqlite(Mutex::new(conn)))
    }

    /// PostgreSQL at `url` (`postgres://USER[:PASS]@HOST:PORT/DB`); the schema is created if
    /// the database has none (`imgfs db migrate` does only that).
    pub fn open_postgres(url: &str) -> Result<SqlStore> {
        let pool = postgres::PgPool::connect(url)?;
        SqlStore::over(Backend::Pg(pool))
    }

    fn over(backend: Backend) -> Result<SqlStore> {
        let mut s = SqlStore {
            backend: Arc::new(backend),
            id: "".into(),
        };
        let id: String = s.with_read(|c| c.query_row("SELECT uuid FROM engine WHERE id = 1", (), |r| r.get(0)))?;
        s.id = id.into();
        Ok(s)
    }

    /// A consistent copy of the whole database in a new SQLite file `to` (`VACUUM INTO`),
    /// taken while readers and writers carry on.
    pub fn snapshot(&self, to: &Path) -> Result<()> {
        let to = to
            .to_str()
            .ok_or_else(|| StoreError::Invalid(format!("{}: not a UTF-8 path", to.display())))?;
        match &*self.backend {
            Backend::Sqlite(_) => self.with_read(|c| c.execute("VACUUM INTO ?1", [to]).map(|_| ())),
            Backend::Pg(_) => Err(StoreError::Invalid(
                "a snapshot is taken of an SQLite database only (PostgreSQL has pg_dump)".into(),
            )),
        }
    }

    /// One write transaction: on SQLite an immediate one (one writer), on PostgreSQL one
    /// holding the locks of `scope` — one writer per account at a time, whichever server it
    /// runs in.
    fn with_tx<T>(&self, scope: &Scope, mut f: impl FnMut(&Db) -> Result<T>) -> Result<T> {
        match &*self.backend {
            Backend::Sqlite(conn) => {
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let out = f(&Db::Sqlite(&tx))?;
                tx.commit()?;
                Ok(out)
            }
            Backend::Pg(pool) => pool.write(scope, f),
        }
    }

    /// A read of one statement (on PostgreSQL without a transaction around it).
    fn with_statement<T>(&self, f: impl FnMut(&Db) -> Result<T>) -> Result<T> {
        match &*self.backend {
            Backend::Sqlite(_) => self.with_read(f),
            Backend::Pg(pool) => pool.statement(f),
        }
    }

    /// One read: a consistent view for all its statements.
    fn with_read<T>(&self, mut f: impl FnMut(&Db) -> Result<T>) -> Result<T> {
        match &*self.backend {
            Backend::Sqlite(conn) => {
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                f(&Db::Sqlite(&conn))
            }
            Backend::Pg(pool) => pool.read(f),
        }
    }
}

fn container_row(c: &Db, account: &str, name: &str) -> Result<ContainerRow> {
    c.query_row(
        "SELECT id, versioning, quota FROM containers WHERE account = ?1 AND name = ?2",
        params![account, name],
        |r| {
            let v: String = r.get(1)?;
            Ok(ContainerRow {
                id: r.get(0)?,
                versioning: Versioning::parse(&v).unwrap_or(Versioning::Auto),
                quota: r.get::<_, i64>(2)? as u64,
            })
        },
    )
    .optional()?
    .ok_or(StoreError::ContainerNotFound)
}

fn path_ctx(c: &Db, account: &str, container: &str) -> Result<PathCtx> {
    Ok(PathCtx {
        container: container_row(c, account, container)?,
        account: account.to_string(),
        container_name: container.to_string(),
    })
}

/// `(path id, latest version id)`
fn path_row(c: &Db, container: i64, name: &str) -> Result<Option<(i64, Option<i64>)>> {
    c.query_row(
        "SELECT id, latest FROM paths WHERE container = ?1 AND name = ?2",
        params![container, name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

fn ensure_path(c: &Db, container: i64, name: &str) -> Result<(i64, Option<i64>)> {
    if let Some(p) = path_row(c, container, name)? {
        return Ok(p);
    }
    let id = c.insert(
        "INSERT INTO paths (container, name) VALUES (?1, ?2)",
        params![container, name],
    )?;
    Ok((id, None))
}

fn load_row(c: &Db, vid: i64) -> Result<Row> {
    c.query_row(
        &format!("SELECT {ROW_COLS} FROM versions v WHERE v.id = ?1"),
        [vid],
        |r| row_from(r, 0),
    )
    .optional()?
    .ok_or(StoreError::VersionNotFound)
}

/// A version's user metadata and image metadata, in one statement.
fn load_attrs(c: &Db, vid: i64) -> Result<(Meta, Meta)> {
    let (mut user, mut image) = (Meta::new(), Meta::new());
    let mut st = c.prepare_cached("SELECT domain, key, value FROM attrs WHERE version = ?1")?;
    for r in st.query_map([vid], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))? {
        let (domain, k, v) = r?;
        match domain.as_str() {
            DOMAIN_PITHOS => user.insert(k, v),
            DOMAIN_PLANKTON => image.insert(k, v),
            _ => None,
        };
    }
    Ok((user, image))
}

fn write_attrs(c: &Db, vid: i64, domain: &str, meta: &Meta) -> Result<()> {
    let mut st = c.prepare_cached("INSERT INTO attrs (version, domain, key, value) VALUES (?1, ?2, ?3, ?4)")?;
    for (k, v) in meta {
        st.execute(params![vid, domain, k, v])?;
    }
    Ok(())
}

/// Builds the full description of version `row` at path `pid`.
fn info_of(c: &Db, ctx: &PathCtx, name: &str, row: &Row, with_attrs: bool) -> Result<ObjectInfo> {
    let (latest, sharing, public_id): (Option<i64>, Option<String>, Option<String>) = c
        .prepare_cached("SELECT latest, sharing, public_id FROM paths WHERE id = ?1")?
        .query_row([row.path], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let modified = match latest {
        Some(l) if l != row.id => c.query_row("SELECT mtime FROM versions WHERE id = ?1", [l], |r| r.get(0))?,
        _ => row.mtime,
    };
    let (meta, image) = if with_attrs {
        load_attrs(c, row.id)?
    } else {
        (Meta::new(), Meta::new())
    };
    Ok(make_info(ctx, name, row, modified, sharing, public_id, meta, image))
}

/// An object's info from its version row and what its path holds: the time of its latest
/// version, its permissions, and (when asked for) its metadata.
#[allow(clippy::too_many_arguments)]
fn make_info(
    ctx: &PathCtx,
    name: &str,
    row: &Row,
    modified: i64,
    sharing: Option<String>,
    public_id: Option<String>,
    meta: Meta,
    image: Meta,
) -> ObjectInfo {
    ObjectInfo {
        account: ctx.account.clone(),
        container: ctx.container_name.clone(),
        name: name.to_string(),
        version: row.id as u64,
        version_ts: row.mtime,
        modified,
        uuid: row.uuid.clone(),
        size: row.size as u64,
        content_type: row.content_type.clone(),
        merkle: row.merkle.clone(),
        md5: row.md5.clone(),
        modified_by: row.modified_by.clone(),
        meta,
        image,
        sharing: sharing.and_then(|s| Sharing::parse(&s).ok()).filter(|s| !s.is_empty()),
        public_id,
    }
}

/// The current version of a name, if there is one.
/// The permission rule ([`crate::store::access`]) for one path of a container.
fn access_in(c: &Db, ctx: &PathCtx, user: &str, name: &str) -> Result<Option<Access>> {
    if user == ctx.account {
        return Ok(Some(Access::owner()));
    }
    let own: Option<String> = c
        .query_row(
            "SELECT sharing FROM paths WHERE container = ?1 AND name = ?2
             AND latest IS NOT NULL AND sharing IS NOT NULL",
            params![ctx.container.id, name],
            |r| r.get(0),
        )
        .optional()?;
    let own = own.and_then(|s| Sharing::parse(&s).ok());
    let inherited = inherited_in(c, ctx, name)?;
    Ok(decide(
        user,
        &ctx.account,
        own.as_ref(),
        inherited.as_ref().map(|(by, s)| (by.as_str(), s)),
    ))
}

/// The nearest ancestor directory marker of `name` with sharing: `(container/path, sharing)`.
fn inherited_in(c: &Db, ctx: &PathCtx, name: &str) -> Result<Option<(String, Sharing)>> {
    let mut name = name;
    while let Some(pos) = name.rfind('/') {
        name = &name[..pos];
        let hit: Option<(String, String)> = c
            .query_row(
                "SELECT p.sharing, v.content_type FROM paths p JOIN versions v ON v.id = p.latest
                 WHERE p.container = ?1 AND p.name = ?2 AND p.sharing IS NOT NULL",
                params![ctx.container.id, name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((s, ct)) = hit {
            if crate::api::pithos::is_directory_type(&ct) {
                if let Ok(s) = Sharing::parse(&s) {
                    return Ok(Some((format!("{}/{}", ctx.container_name, name), s)));
                }
            }
        }
    }
    Ok(None)
}

/// The container's shared paths (one query over the partial index): the directory markers a
/// listing's rows inherit from, and the ranges of names `user` may find something to read in.
fn shared_in(c: &Db, ctx: &PathCtx, user: &str) -> Result<(SharedDirs, Readable)> {
    let mut st = c.prepare_cached(
        "SELECT p.name, p.sharing, v.content_type FROM paths p JOIN versions v ON v.id = p.latest
         WHERE p.container = ?1 AND p.sharing IS NOT NULL",
    )?;
    let rows = st.query_map([ctx.container.id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
    })?;
    let mut shared = vec![];
    for r in rows {
        let (name, sharing, ct) = r?;
        if let Ok(s) = Sharing::parse(&sharing) {
            shared.push((name, s, crate::api::pithos::is_directory_type(&ct)));
        }
    }
    let dirs = shared
        .iter()
        .filter(|(_, _, dir)| *dir)
        .map(|(n, s, _)| (n.clone(), s.clone()));
    Ok((SharedDirs::new(&ctx.container_name, dirs), Readable::new(user, shared)))
}

fn current(c: &Db, ctx: &PathCtx, name: &str) -> Result<Option<(i64, Row)>> {
    match path_row(c, ctx.container.id, name)? {
        Some((pid, Some(vid))) => Ok(Some((pid, load_row(c, vid)?))),
        _ => Ok(None),
    }
}

fn check_precondition(cur: Option<&ObjectInfo>, cond: &Precondition) -> Result<()> {
    let matches = |list: &str, etag: &str| {
        list.split(',')
            .map(|t| t.trim().trim_matches('"'))
            .any(|t| t == "*" || t.eq_ignore_ascii_case(etag))
    };
    if let Some(m) = &cond.if_match {
        match cur {
            Some(o) if matches(m, o.etag()) => {}
            _ => return Err(StoreError::PreconditionFailed("Resource ETag does not match")),
        }
    }
    if let Some(v) = cond.if_version {
        if cur.map(|o| o.version) != Some(v) {
            return Err(StoreError::PreconditionFailed("Object changed during the update"));
        }
    }
    if let Some(m) = &cond.if_none_match {
        if let Some(o) = cur {
            if matches(m, o.etag()) {
                return Err(StoreError::PreconditionFailed("Resource exists or ETag matches"));
            }
        }
    }
    Ok(())
}

/// Refuses a write that grows the container's object bytes past its quota (the account's
/// quota counts stored blocks: [`check_account_quota`]).
fn check_quota(c: &Db, ctx: &PathCtx, old_size: u64, new_size: u64) -> Result<()> {
    if new_size <= old_size {
        return Ok(());
    }
    let growth = new_size - old_size;
    if ctx.container.quota > 0 && counts::of(c, ctx.container.id)?.1 + growth > ctx.container.quota {
        return Err(StoreError::QuotaExceeded);
    }
    Ok(())
}

fn account_quota(c: &Db, account: &str) -> Result<u64> {
    let q: Option<i64> = c
        .prepare_cached("SELECT quota FROM accounts WHERE uuid = ?1")?
        .query_row([account], |r| r.get(0))
        .optional()?;
    Ok(q.unwrap_or(0).max(0) as u64)
}

/// Refuses a change (made already, in this transaction) that grew what the account is charged
/// (`before` → now) past its quota; one that shrinks it passes even over quota.
fn check_account_quota(c: &Db, account: &str, before: u64) -> Result<()> {
    let quota = account_quota(c, account)?;
    if quota == 0 {
        return Ok(());
    }
    let after = refs::stored(c, account)?;
    if after > before && after > quota {
        return Err(StoreError::QuotaExceeded);
    }
    Ok(())
}

struct VersionData<'a> {
    uuid: &'a str,
    size: u64,
    content_type: &'a str,
    hashes: &'a [u8],
    merkle: &'a str,
    md5: Option<&'a str>,
    modified_by: &'a str,
}

/// Version `vid` of a path of `container` becomes current (`sign` 1) or stops being so (-1):
/// what is kept per current version changes with it. Called before the version's rows go.
fn current_changes(c: &Db, container: i64, vid: i64, sign: i64) -> Result<()> {
    counts::current_changes(c, container, vid, sign)?;
    images::current_changes(c, vid, sign)
}

/// Inserts a version as the path's current one and applies the container's versioning policy.
fn commit_version(c: &Db, ctx: &PathCtx, pid: i64, d: &VersionData, meta: &Meta, image: &Meta) -> Result<i64> {
    let now = c.now();
    let charged_before = refs::stored(c, &ctx.account)?;
    refs::hold(c, &ctx.account, d.hashes, now)?;
    let vid = c.insert(
        "INSERT INTO versions (path, uuid, size, content_type, hashes, merkle, md5, mtime, modified_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            pid,
            d.uuid,
            d.size as i64,
            d.content_type,
            d.hashes,
            d.merkle,
            d.md5,
            now,
            d.modified_by
        ],
    )?;
    write_attrs(c, vid, DOMAIN_PITHOS, meta)?;
    write_attrs(c, vid, DOMAIN_PLANKTON, image)?;
    let before: Option<i64> = c
        .prepare_cached("SELECT latest FROM paths WHERE id = ?1")?
        .query_row([pid], |r| r.get(0))?;
    if let Some(old) = before {
        current_changes(c, ctx.container.id, old, -1)?;
    }
    c.execute("UPDATE paths SET latest = ?1 WHERE id = ?2", params![vid, pid])?;
    current_changes(c, ctx.container.id, vid, 1)?;
    if ctx.container.versioning == Versioning::None {
        purge_history(c, pid, Some(vid))?;
    }
    check_account_quota(c, &ctx.account, charged_before)?;
    touch_container(c, ctx.container.id, now)?;
    Ok(vid)
}

fn touch_container(c: &Db, container: i64, now: Micros) -> Result<()> {
    c.execute(
        "UPDATE containers SET modified = ?1 WHERE id = ?2",
        params![now, container],
    )?;
    Ok(())
}

/// Drops every version of a path except `keep`, giving their blocks back.
fn purge_history(c: &Db, pid: i64, keep: Option<i64>) -> Result<()> {
    let keep = keep.unwrap_or(-1);
    refs::drop_versions(
        c,
        &format!(
            "SELECT v.id, k.account, v.hashes FROM versions v JOIN paths p ON p.id = v.path
             JOIN containers k ON k.id = p.container WHERE v.path = ?1 AND v.id != {keep}"
        ),
        db::Value::Int(pid),
        c.now(),
    )
}

/// Marks a path deleted: a deletion-marker version, no current version, no permissions.
fn delete_path(c: &Db, ctx: &PathCtx, pid: i64, row: &Row, by: &str) -> Result<()> {
    let now = c.now();
    c.execute(
        "INSERT INTO versions (path, uuid, size, content_type, hashes, merkle, md5, mtime, modified_by, deleted)
         VALUES (?1, ?2, 0, '', ?5, '', NULL, ?3, ?4, 1)",
        params![pid, row.uuid, now, by, Vec::<u8>::new()],
    )?;
    current_changes(c, ctx.container.id, row.id, -1)?;
    c.execute(
        "UPDATE paths SET latest = NULL, sharing = NULL, public_id = NULL WHERE id = ?1",
        [pid],
    )?;
    grants::set(c, pid, None)?;
    if ctx.container.versioning == Versioning::None {
        purge_history(c, pid, None)?;
        c.execute("DELETE FROM paths WHERE id = ?1", [pid])?;
    }
    touch_container(c, ctx.container.id, now)?;
    Ok(())
}

/// Removes the names (`paths` rows matching `cond` on `paths`) left with neither a current
/// version nor history.
fn forget_unused_paths(c: &Db, cond: &str, param: i64) -> Result<()> {
    c.execute(
        &format!(
            "DELETE FROM paths WHERE {cond} AND latest IS NULL
             AND NOT EXISTS (SELECT 1 FROM versions v WHERE v.path = paths.id)"
        ),
        [param],
    )?;
    Ok(())
}

fn set_path_permissions(c: &Db, pid: i64, sharing: Option<&Sharing>, public: Option<bool>) -> Result<()> {
    if let Some(s) = sharing {
        let v = if s.is_empty() { None } else { Some(s.to_string()) };
        c.execute("UPDATE paths SET sharing = ?1 WHERE id = ?2", params![v, pid])?;
        grants::set(c, pid, Some(s))?;
    }
    match public {
        Some(true) => {
            let has: Option<String> = c.query_row("SELECT public_id FROM paths WHERE id = ?1", [pid], |r| r.get(0))?;
            if has.is_none() {
                let id = hex::encode(rand::random::<[u8; 16]>());
                c.execute("UPDATE paths SET public_id = ?1 WHERE id = ?2", params![id, pid])?;
            }
        }
        Some(false) => {
            c.execute("UPDATE paths SET public_id = NULL WHERE id = ?1", [pid])?;
        }
        None => {}
    }
    Ok(())
}

/// The current object matching one condition on `v` (versions), `p` (paths) or `k` (containers).
fn current_where(c: &Db, cond: &str, param: &str) -> Result<Option<ObjectInfo>> {
    let hit: Option<(String, String, String, Row)> = c
        .query_row(
            &format!(
                "SELECT k.account, k.name, p.name, {ROW_COLS} FROM paths p
                 JOIN versions v ON v.id = p.latest JOIN containers k ON k.id = p.container
                 WHERE {cond}"
            ),
            [param],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, row_from(r, 3)?)),
        )
        .optional()?;
    match hit {
        Some((acc, cont, name, row)) => {
            let ctx = path_ctx(c, &acc, &cont)?;
            Ok(Some(info_of(c, &ctx, &name, &row, true)?))
        }
        None => Ok(None),
    }
}

/// Current names under `prefix` (a range scan), in byte order.
fn names_under(c: &Db, container: i64, prefix: &str) -> Result<Vec<(i64, String)>> {
    let upper = format!("{prefix}\u{10FFFF}\u{10FFFF}");
    let mut st = c.prepare_cached(
        "SELECT id, name FROM paths WHERE container = ?1 AND name >= ?2 AND name < ?3 AND latest IS NOT NULL ORDER BY name",
    )?;
    let rows = st.query_map(params![container, prefix, upper], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect::<Result<_>>()
}

/// The operations of [`MetaStore`], synchronous: each runs its transaction on the calling
/// thread (the trait's implementation, `sql/off_thread.rs`, calls them on the blocking
/// threads; the command line and the tests call them directly).
impl SqlStore {
    pub fn create_user(&self, name: &str) -> Result<(User, String)> {
        let uuid = uuid::Uuid::new_v4().to_string();
        let scope = Scope::name(&format!("user:{name}")).and(&uuid);
        let token = self.with_tx(&scope, |tx| {
            let exists: Option<String> = tx
                .query_row("SELECT uuid FROM users WHERE name = ?1", [name], |r| r.get(0))
                .optional()?;
            if exists.is_some() {
                return Err(StoreError::UserExists(name.to_string()));
            }
            let now = tx.now();
            // (the legacy column gets a value that never was a token)
            tx.execute(
                "INSERT INTO users (uuid, name, token_hash, created) VALUES (?1, ?2, ?3, ?4)",
                params![uuid, name, rand::random::<[u8; 32]>().to_vec(), now],
            )?;
            tx.execute(
                "INSERT INTO accounts (uuid, quota, modified) VALUES (?1, 0, ?2)",
                params![uuid, now],
            )?;
            tx.execute(
                "INSERT INTO containers (account, name, versioning, quota, modified) VALUES (?1, ?2, 'auto', 0, ?3)",
                params![uuid, DEFAULT_CONTAINER, now],
            )?;
            Ok(tokens::issue(tx, &uuid, DEFAULT_TOKEN_LIFETIME, false)?.0)
        })?;
        Ok((
            User {
                uuid,
                name: name.to_string(),
            },
            token,
        ))
    }

    pub fn list_users(&self) -> Result<Vec<User>> {
        self.with_read(|c| {
            let mut st = c.prepare("SELECT uuid, name FROM users ORDER BY created")?;
            let rows = st.query_map((), |r| {
                Ok(User {
                    uuid: r.get(0)?,
                    name: r.get(1)?,
                })
            })?;
            rows.collect::<Result<_>>()
        })
    }

    pub fn check_token(&self, token: &str) -> Result<TokenCheck> {
        self.with_statement(|c| tokens::check(c, token))
    }

    pub fn issue_token(
        &self,
        uuid: &str,
        lifetime: std::time::Duration,
        revoke_others: bool,
    ) -> Result<(String, Micros)> {
        self.with_tx(&Scope::account(uuid), |tx| {
            let known: bool = tx
                .prepare_cached("SELECT 1 FROM users WHERE uuid = ?1")?
                .exists([uuid])?;
            if !known {
                return Err(StoreError::Invalid(format!("no user {uuid}")));
            }
            tokens::issue(tx, uuid, lifetime, revoke_others)
        })
    }

    pub fn revoke_tokens(&self, uuid: &str) -> Result<u64> {
        self.with_tx(&Scope::account(uuid), |tx| tokens::revoke(tx, uuid))
    }

    pub fn user_by_uuid(&self, uuid: &str) -> Result<Option<User>> {
        self.with_read(|c| {
            c.query_row("SELECT uuid, name FROM users WHERE uuid = ?1", [uuid], |r| {
                Ok(User {
                    uuid: r.get(0)?,
                    name: r.get(1)?,
                })
            })
            .optional()
        })
    }

    pub fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        self.with_read(|c| {
            c.query_row("SELECT uuid, name FROM users WHERE name = ?1", [name], |r| {
                Ok(User {
                    uuid: r.get(0)?,
                    name: r.get(1)?,
                })
            })
            .optional()
        })
    }

    pub fn account_info(&self, account: &str) -> Result<AccountInfo> {
        self.with_read(|c| {
            let (quota, amod): (i64, i64) = c
                .query_row("SELECT quota, modified FROM accounts WHERE uuid = ?1", [account], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?
                .unwrap_or((0, 0));
            let (count, cmod): (i64, Option<i64>) = c.query_row(
                "SELECT COUNT(*), MAX(modified) FROM containers WHERE account = ?1",
                [account],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let mut st = c.prepare_cached("SELECT key, value FROM account_meta WHERE account = ?1")?;
            let meta = st
                .query_map([account], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Meta>>()?;
            let mut st = c.prepare_cached("SELECT grp, members FROM account_groups WHERE account = ?1")?;
            let groups = st
                .query_map([account], |r| {
                    let m: String = r.get(1)?;
                    Ok((
                        r.get(0)?,
                        m.split(',').map(|s| s.to_string()).filter(|s| !s.is_empty()).collect(),
                    ))
                })?
                .collect::<Result<_>>()?;
            Ok(AccountInfo {
                container_count: count as u64,
                // What the account makes the server store (what its quota counts).
                bytes: refs::stored(c, account)?,
                modified: amod.max(cmod.unwrap_or(0)),
                quota: quota as u64,
                meta,
                groups,
            })
        })
    }

    pub fn update_account(&self, account: &str, meta: Option<MetaUpdate>, groups: Option<MetaUpdate>) -> Result<()> {
        self.with_tx(&Scope::account(account), |tx| {
            let now = tx.now();
            tx.execute(
                "INSERT INTO accounts (uuid, quota, modified) VALUES (?1, 0, ?2)
                 ON CONFLICT (uuid) DO UPDATE SET modified = ?2",
                params![account, now],
            )?;
            for (table, col, upd) in [
                ("account_meta", "key", meta.as_ref()),
                ("account_groups", "grp", groups.as_ref()),
            ] {
                let Some(upd) = upd else { continue };
                let valcol = if table == "account_meta" { "value" } else { "members" };
                let cur: Meta = {
                    let mut st = tx.prepare(&format!("SELECT {col}, {valcol} FROM {table} WHERE account = ?1"))?;
                    let rows = st.query_map([account], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect::<Result<_>>()?
                };
                let new = upd.apply(&cur);
                tx.execute(&format!("DELETE FROM {table} WHERE account = ?1"), [account])?;
                for (k, v) in new {
                    tx.execute(
                        &format!("INSERT INTO {table} (account, {col}, {valcol}) VALUES (?1, ?2, ?3)"),
                        params![account, k, v],
                    )?;
                }
            }
            Ok(())
        })
    }

    pub fn set_account_quota(&self, account: &str, quota: u64) -> Result<()> {
        self.with_tx(&Scope::account(account), |tx| {
            tx.execute(
                "INSERT INTO accounts (uuid, quota, modified) VALUES (?1, ?2, ?3)
                 ON CONFLICT (uuid) DO UPDATE SET quota = ?2",
                params![account, quota as i64, tx.now()],
            )?;
            Ok(())
        })
    }

    pub fn list_containers(&self, account: &str) -> Result<Vec<ContainerInfo>> {
        let names: Vec<String> = self.with_read(|c| {
            let mut st = c.prepare("SELECT name FROM containers WHERE account = ?1 ORDER BY name")?;
            let rows = st.query_map([account], |r| r.get(0))?;
            rows.collect::<Result<_>>()
        })?;
        names.iter().map(|n| self.container_info(account, n)).collect()
    }

    pub fn container_info(&self, account: &str, container: &str) -> Result<ContainerInfo> {
        self.with_read(|c| {
            let row = container_row(c, account, container)?;
            let modified: i64 = c.query_row("SELECT modified FROM containers WHERE id = ?1", [row.id], |r| r.get(0))?;
            let (count, bytes) = counts::of(c, row.id)?;
            let mut st = c.prepare_cached("SELECT key, value FROM container_meta WHERE container = ?1")?;
            let meta = st
                .query_map([row.id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Meta>>()?;
            let keys = counts::keys(c, row.id)?;
            Ok(ContainerInfo {
                name: container.to_string(),
                count,
                bytes,
                modified,
                versioning: row.versioning,
                quota: row.quota,
                meta,
                object_meta_keys: keys,
            })
        })
    }

    pub fn put_container(&self, account: &str, container: &str, policy: &PolicyUpdate, meta: &Meta) -> Result<bool> {
        let created = self.with_tx(&Scope::account(account), |tx| {
            if container_row(tx, account, container).is_ok() {
                return Ok(false);
            }
            let versioning = policy.versioning.flatten().unwrap_or(Versioning::Auto);
            let quota = policy.quota.flatten().unwrap_or(0);
            let id = tx.insert(
                "INSERT INTO containers (account, name, versioning, quota, modified) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![account, container, versioning.as_str(), quota as i64, tx.now()],
            )?;
            for (k, v) in meta.iter().filter(|(_, v)| !v.is_empty()) {
                tx.execute(
                    "INSERT INTO container_meta (container, key, value) VALUES (?1, ?2, ?3)",
                    params![id, k, v],
                )?;
            }
            Ok(true)
        })?;
        if !created {
            self.update_container(account, container, policy, Some(MetaUpdate::Merge(meta.clone())))?;
        }
        Ok(created)
    }

    pub fn update_container(
        &self,
        account: &str,
        container: &str,
        policy: &PolicyUpdate,
        meta: Option<MetaUpdate>,
    ) -> Result<()> {
        self.with_tx(&Scope::account(account), |tx| {
            let row = container_row(tx, account, container)?;
            if let Some(v) = policy.versioning {
                let v = v.unwrap_or(Versioning::Auto);
                tx.execute(
                    "UPDATE containers SET versioning = ?1 WHERE id = ?2",
                    params![v.as_str(), row.id],
                )?;
            }
            if let Some(q) = policy.quota {
                tx.execute(
                    "UPDATE containers SET quota = ?1 WHERE id = ?2",
                    params![q.unwrap_or(0) as i64, row.id],
                )?;
            }
            if let Some(upd) = &meta {
                let cur: Meta = {
                    let mut st = tx.prepare("SELECT key, value FROM container_meta WHERE container = ?1")?;
                    let rows = st.query_map([row.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect::<Result<_>>()?
                };
                tx.execute("DELETE FROM container_meta WHERE container = ?1", [row.id])?;
                tx.execute("DELETE FROM container_keys WHERE container = ?1", [row.id])?;
                for (k, v) in upd.apply(&cur) {
                    tx.execute(
                        "INSERT INTO container_meta (container, key, value) VALUES (?1, ?2, ?3)",
                        params![row.id, k, v],
                    )?;
                }
            }
            touch_container(tx, row.id, tx.now())
        })
    }

    pub fn delete_container(&self, account: &str, container: &str) -> Result<()> {
        self.with_tx(&Scope::account(account), |tx| {
            let row = container_row(tx, account, container)?;
            if counts::of(tx, row.id)?.0 > 0 {
                return Err(StoreError::ContainerNotEmpty);
            }
            refs::drop_versions(
                tx,
                "SELECT v.id, k.account, v.hashes FROM versions v JOIN paths p ON p.id = v.path
                 JOIN containers k ON k.id = p.container WHERE p.container = ?1",
                row.id.into(),
                tx.now(),
            )?;
            tx.execute(
                "DELETE FROM grants WHERE path IN (SELECT id FROM paths WHERE container = ?1)",
                [row.id],
            )?;
            tx.execute("DELETE FROM paths WHERE container = ?1", [row.id])?;
            tx.execute("DELETE FROM container_meta WHERE container = ?1", [row.id])?;
            tx.execute("DELETE FROM containers WHERE id = ?1", [row.id])?;
            Ok(())
        })
    }

    pub fn clear_container(&self, account: &str, container: &str, modified_by: &str) -> Result<()> {
        self.with_tx(&Scope::account(account), |tx| {
            let ctx = path_ctx(tx, account, container)?;
            for (pid, name) in names_under(tx, ctx.container.id, "")? {
                if let Some((_, row)) = current(tx, &ctx, &name)? {
                    delete_path(tx, &ctx, pid, &row, modified_by)?;
                }
            }
            Ok(())
        })
    }

    pub fn purge_container(&self, account: &str, container: &str, until: Micros) -> Result<()> {
        self.with_tx(&Scope::account(account), |tx| {
            let row = container_row(tx, account, container)?;
            let now = tx.now();
            refs::drop_versions(
                tx,
                &format!(
                    "SELECT v.id, k.account, v.hashes FROM versions v JOIN paths p ON p.id = v.path
                     JOIN containers k ON k.id = p.container
                     WHERE p.container = ?1 AND v.mtime <= {until} AND v.id IS DISTINCT FROM p.latest"
                ),
                row.id.into(),
                now,
            )?;
            forget_unused_paths(tx, "container = ?1", row.id)?;
            touch_container(tx, row.id, now)
        })
    }

    pub fn list_objects(&self, account: &str, container: &str, q: &ListQuery) -> Result<Vec<Listed>> {
        self.with_read(|c| {
            let ctx = path_ctx(c, account, container)?;
            let (delimiter, mut prefix) = if q.path_mode {
                let p = q.prefix.trim_start_matches('/');
                (
                    Some('/'),
                    if p.is_empty() {
                        String::new()
                    } else {
                        format!("{}/", p.trim_end_matches('/'))
                    },
                )
            } else {
                (q.delimiter, q.prefix.trim_start_matches('/').to_string())
            };
            if let Some(d) = delimiter {
                if !prefix.is_empty() && !prefix.ends_with(d) && q.path_mode {
                    prefix.push(d);
                }
            }
            let upper = format!("{prefix}\u{10FFFF}\u{10FFFF}");
            let limit = q.limit.clamp(1, crate::api::pithos::MAX_LISTING);
            // Another user reads only the ranges the rule opens to them, each row checked by it.
            let readable = match &q.reader {
                Some(user) => {
                    let (dirs, ranges) = shared_in(c, &ctx, user)?;
                    Some((ranges, dirs, user))
                }
                None => None,
            };
            let subdirs = readable.is_none() && !q.only_shared && !q.only_public;
            let mut out: Vec<Listed> = Vec::new();
            // `from` is inclusive and `after` exclusive; rolled-up prefixes are skipped by
            // moving `from` past them rather than reading their contents.
            let mut from = prefix.clone();
            let mut after = q.marker.clone();
            // The path's permissions come with each row: one query per page, not per object.
            // One lower bound per query, the tighter of `from` and `after`: given both, SQLite
            // seeks to the first and filters up to the second (a page from the middle of 1M
            // objects cost 44 ms against 5 ms at 10k).
            let page = |lower: &str| {
                format!(
                    "SELECT p.name, p.sharing, p.public_id, {ROW_COLS} FROM paths p JOIN versions v ON v.id = p.latest
                     WHERE p.container = ?1 AND p.name {lower} ?2 AND p.name < ?3
                     ORDER BY p.name LIMIT ?4"
                )
            };
            let (from_sql, after_sql) = (page(">="), page(">"));
            type Page = Vec<(String, Option<String>, Option<String>, Row)>;
            'outer: loop {
                let (sql, bound) = match &after {
                    Some(a) if *a >= from => (&after_sql, a.as_str()),
                    _ => (&from_sql, from.as_str()),
                };
                let batch: Page = c
                    .prepare_cached(sql)?
                    .query_map(params![ctx.container.id, bound, upper, (limit + 1) as i64], |r| {
                        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, row_from(r, 3)?))
                    })?
                    .collect::<Result<_>>()?;
                if batch.is_empty() {
                    break;
                }
                let last = batch.last().map(|(n, ..)| n.clone());
                for (name, sharing, public_id, row) in batch {
                    if let Some((ranges, ..)) = &readable {
                        match ranges.position(&name) {
                            Position::Inside => {}
                            Position::Before(next) => {
                                from = next.to_string();
                                after = None;
                                continue 'outer;
                            }
                            Position::After => break 'outer,
                        }
                    }
                    if let Some(d) = delimiter {
                        let rest = &name[prefix.len()..];
                        if let Some(pos) = rest.find(d) {
                            if pos + d.len_utf8() < rest.len() {
                                let sub = format!("{}{}", prefix, &rest[..pos + d.len_utf8()]);
                                if subdirs && !q.path_mode && q.marker.as_deref().is_none_or(|m| sub.as_str() > m) {
                                    out.push(Listed::Subdir(sub.clone()));
                                    if out.len() >= limit {
                                        break 'outer;
                                    }
                                }
                                let mut next = sub[..sub.len() - d.len_utf8()].to_string();
                                next.push(char::from_u32(d as u32 + 1).unwrap_or(char::MAX));
                                from = next;
                                after = None;
                                continue 'outer;
                            }
                        }
                    }
                    let info = make_info(
                        &ctx,
                        &name,
                        &row,
                        row.mtime,
                        sharing,
                        public_id,
                        Meta::new(),
                        Meta::new(),
                    );
                    if let Some((_, dirs, user)) = &readable {
                        if dirs.decide(user, &ctx.account, &name, info.sharing.as_ref()).is_none() {
                            continue;
                        }
                    }
                    if (q.only_shared && info.sharing.is_none()) || (q.only_public && info.public_id.is_none()) {
                        continue;
                    }
                    out.push(Listed::Object(Box::new(info)));
                    if out.len() >= limit {
                        break 'outer;
                    }
                }
                after = last;
            }
            Ok(out)
        })
    }

    pub fn object_info(&self, path: &ObjectPath, version: Option<u64>) -> Result<ObjectInfo> {
        self.with_read(|c| {
            let ctx = path_ctx(c, &path.account, &path.container)?;
            let Some((pid, latest)) = path_row(c, ctx.container.id, &path.name)? else {
                return Err(if version.is_some() {
                    StoreError::VersionNotFound
                } else {
                    StoreError::ObjectNotFound
                });
            };
            let row = match version {
                Some(v) => {
                    let row = c
                        .query_row(
                            &format!(
                                "SELECT {ROW_COLS} FROM versions v WHERE v.id = ?1 AND v.path = ?2 AND v.deleted = 0"
                            ),
                            params![v as i64, pid],
                            |r| row_from(r, 0),
                        )
                        .optional()?;
                    row.ok_or(StoreError::VersionNotFound)?
                }
                None => load_row(c, latest.ok_or(StoreError::ObjectNotFound)?)?,
            };
            info_of(c, &ctx, &path.name, &row, true)
        })
    }

    pub fn version_hashes(&self, version: u64) -> Result<Vec<BlockHash>> {
        self.with_read(|c| Ok(unpack_hashes(&load_row(c, version as i64)?.hashes)))
    }

    pub fn list_versions(&self, path: &ObjectPath) -> Result<Vec<(u64, Micros)>> {
        self.with_read(|c| {
            let ctx = path_ctx(c, &path.account, &path.container)?;
            let (pid, _) = path_row(c, ctx.container.id, &path.name)?.ok_or(StoreError::ObjectNotFound)?;
            let mut st =
                c.prepare_cached("SELECT id, mtime FROM versions WHERE path = ?1 AND deleted = 0 ORDER BY id")?;
            let rows = st.query_map([pid], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?;
            let v: Vec<_> = rows.collect::<Result<_>>()?;
            if v.is_empty() {
                return Err(StoreError::ObjectNotFound);
            }
            Ok(v)
        })
    }

    pub fn put_object(&self, path: &ObjectPath, obj: &NewObject, cond: &Precondition) -> Result<ObjectInfo> {
        // (the blocks must be the writer's: sent, held or copied by them)
        let missing = self.missing_blocks(&obj.modified_by, &obj.hashes)?;
        if !missing.is_empty() {
            return Err(StoreError::MissingBlocks(missing));
        }
        let merkle = obj.merkle();
        let packed = pack_hashes(&obj.hashes);
        // (the owner's rows change; the writer's uploads are what the version names)
        self.with_tx(&Scope::accounts([&*path.account, &*obj.modified_by]), |tx| {
            let ctx = path_ctx(tx, &path.account, &path.container)?;
            let (pid, latest) = ensure_path(tx, ctx.container.id, &path.name)?;
            let cur = match latest {
                Some(vid) => {
                    let row = load_row(tx, vid)?;
                    Some((info_of(tx, &ctx, &path.name, &row, true)?, row))
                }
                None => None,
            };
            check_precondition(cur.as_ref().map(|(i, _)| i), cond)?;
            check_quota(tx, &ctx, cur.as_ref().map_or(0, |(i, _)| i.size), obj.size)?;
            let uuid = cur
                .as_ref()
                .map_or_else(|| uuid::Uuid::new_v4().to_string(), |(_, r)| r.uuid.clone());
            // Image metadata stays with the object across overwrites.
            let image = cur.as_ref().map(|(i, _)| i.image.clone()).unwrap_or_default();
            let d = VersionData {
                uuid: &uuid,
                size: obj.size,
                content_type: &obj.content_type,
                hashes: &packed,
                merkle: &merkle,
                md5: obj.md5.as_deref(),
                modified_by: &obj.modified_by,
            };
            // Checked again under the writer's lock: the collector may have taken a block that
            // was present for the writer when it asked (an upload that expired meanwhile).
            let mut gone = vec![];
            for h in refs::distinct(&packed) {
                if !refs::usable(tx, &obj.modified_by, &h)? {
                    gone.push(BlockHash(h));
                }
            }
            if !gone.is_empty() {
                return Err(StoreError::MissingBlocks(gone));
            }
            // (the owner now holds them, also where a writer it shares with sent them)
            let vid = commit_version(tx, &ctx, pid, &d, &obj.meta, &image)?;
            set_path_permissions(tx, pid, obj.sharing.as_ref(), obj.public)?;
            let row = load_row(tx, vid)?;
            info_of(tx, &ctx, &path.name, &row, true)
        })
    }

    pub fn copy_object(&self, spec: &CopySpec, cond: &Precondition) -> Result<ObjectInfo> {
        // (the source's rows must not change while its versions are copied or moved)
        self.with_tx(&Scope::accounts([&*spec.src.account, &*spec.dst.account]), |tx| {
            let sctx = match path_ctx(tx, &spec.src.account, &spec.src.container) {
                // (another account's containers are not named to a reader either)
                Err(StoreError::ContainerNotFound) if spec.reader.is_some() => return Err(StoreError::Forbidden),
                r => r?,
            };
            let dctx = path_ctx(tx, &spec.dst.account, &spec.dst.container)?;
            let same = spec.src == spec.dst;
            // (source name, destination name): the object, then (recursive) everything below it.
            let mut pairs = vec![];
            let top = path_row(tx, sctx.container.id, &spec.src.name)?;
            let top_exists = matches!(top, Some((_, Some(_)))) || spec.src_version.is_some();
            if top_exists {
                pairs.push((spec.src.name.clone(), spec.dst.name.clone()));
            }
            if spec.recursive && !same {
                let sp = format!("{}/", spec.src.name.trim_end_matches('/'));
                let dp = format!("{}/", spec.dst.name.trim_end_matches('/'));
                for (_, n) in names_under(tx, sctx.container.id, &sp)? {
                    pairs.push((n.clone(), format!("{dp}{}", &n[sp.len()..])));
                }
            }
            if let Some(reader) = &spec.reader {
                // Each object by the permission rule; what the reader may not read is not
                // copied, and nothing at all is a refusal whether or not anything exists.
                let mut readable = Vec::with_capacity(pairs.len());
                for (sname, dname) in pairs {
                    if access_in(tx, &sctx, reader, &sname)?.is_some() {
                        readable.push((sname, dname));
                    }
                }
                pairs = readable;
                if pairs.is_empty() {
                    return Err(StoreError::Forbidden);
                }
            }
            if pairs.is_empty() {
                return Err(StoreError::ObjectNotFound);
            }
            // (the first pair is the object named, when it is there and may be copied)
            let top_first = top_exists && pairs[0].0 == spec.src.name;
            let mut first: Option<ObjectInfo> = None;
            for (i, (sname, dname)) in pairs.iter().enumerate() {
                let is_top = i == 0 && top_first;
                let (spid, srow) = match (is_top, spec.src_version) {
                    (true, Some(v)) => {
                        let spid = path_row(tx, sctx.container.id, sname)?
                            .ok_or(StoreError::VersionNotFound)?
                            .0;
                        let row = load_row(tx, v as i64)?;
                        if row.path != spid || row.deleted {
                            return Err(StoreError::VersionNotFound);
                        }
                        (spid, row)
                    }
                    _ => current(tx, &sctx, sname)?.ok_or(StoreError::ObjectNotFound)?,
                };
                let sinfo = info_of(tx, &sctx, sname, &srow, true)?;
                let (dpid, _) = ensure_path(tx, dctx.container.id, dname)?;
                let dcur = match current(tx, &dctx, dname)? {
                    Some((_, row)) => Some(info_of(tx, &dctx, dname, &row, true)?),
                    None => None,
                };
                if is_top {
                    check_precondition(dcur.as_ref(), cond)?;
                }
                if !(spec.is_move && spec.src.account == spec.dst.account) {
                    check_quota(tx, &dctx, dcur.as_ref().map_or(0, |d| d.size), sinfo.size)?;
                }
                let uuid = if spec.is_move {
                    srow.uuid.clone()
                } else {
                    dcur.as_ref()
                        .map_or_else(|| uuid::Uuid::new_v4().to_string(), |d| d.uuid.clone())
                };
                let image = if spec.is_move {
                    sinfo.image.clone()
                } else {
                    dcur.as_ref().map(|d| d.image.clone()).unwrap_or_default()
                };
                let meta = match &spec.meta {
                    Some(u) if is_top => u.apply(&sinfo.meta),
                    _ => sinfo.meta.clone(),
                };
                let content_type = match &spec.content_type {
                    Some(ct) if is_top => ct.clone(),
                    _ => srow.content_type.clone(),
                };
                let d = VersionData {
                    uuid: &uuid,
                    size: srow.size as u64,
                    content_type: &content_type,
                    hashes: &srow.hashes,
                    merkle: &srow.merkle,
                    md5: srow.md5.as_deref(),
                    modified_by: &spec.modified_by,
                };
                // (a copy of something it may read gives the destination account its blocks)
                let vid = commit_version(tx, &dctx, dpid, &d, &meta, &image)?;
                if spec.is_move && !same {
                    // Permissions travel with a moved object (an image stays public).
                    let sharing = sinfo.sharing.clone().unwrap_or_default();
                    set_path_permissions(tx, dpid, Some(&sharing), Some(sinfo.public_id.is_some()))?;
                    delete_path(tx, &sctx, spid, &srow, &spec.modified_by)?;
                }
                if i == 0 {
                    set_path_permissions(tx, dpid, spec.sharing.as_ref(), spec.public)?;
                    let row = load_row(tx, vid)?;
                    first = Some(info_of(tx, &dctx, dname, &row, true)?);
                }
            }
            first.ok_or(StoreError::ObjectNotFound)
        })
    }

    pub fn update_object_meta(&self, path: &ObjectPath, meta: &MetaUpdate, modified_by: &str) -> Result<ObjectInfo> {
        self.rewrite_current(path, modified_by, None, |info| {
            (meta.apply(&info.meta), info.image.clone())
        })
    }

    pub fn set_permissions(
        &self,
        path: &ObjectPath,
        sharing: Option<&Sharing>,
        public: Option<bool>,
    ) -> Result<ObjectInfo> {
        self.with_tx(&Scope::account(&path.account), |tx| {
            let ctx = path_ctx(tx, &path.account, &path.container)?;
            let (pid, row) = current(tx, &ctx, &path.name)?.ok_or(StoreError::ObjectNotFound)?;
            set_path_permissions(tx, pid, sharing, public)?;
            info_of(tx, &ctx, &path.name, &row, true)
        })
    }

    pub fn set_image_meta(
        &self,
        path: &ObjectPath,
        image: &Meta,
        sharing: Option<&Sharing>,
        modified_by: &str,
    ) -> Result<ObjectInfo> {
        self.rewrite_current(path, modified_by, sharing, |info| (info.meta.clone(), image.clone()))
    }

    pub fn delete_object(&self, path: &ObjectPath, modified_by: &str, recursive: bool) -> Result<()> {
        self.with_tx(&Scope::account(&path.account), |tx| {
            let ctx = path_ctx(tx, &path.account, &path.container)?;
            let mut found = false;
            if let Some((pid, row)) = current(tx, &ctx, &path.name)? {
                delete_path(tx, &ctx, pid, &row, modified_by)?;
                found = true;
            }
            if recursive {
                let prefix = format!("{}/", path.name.trim_end_matches('/'));
                for (_, n) in names_under(tx, ctx.container.id, &prefix)? {
                    if let Some((pid, row)) = current(tx, &ctx, &n)? {
                        delete_path(tx, &ctx, pid, &row, modified_by)?;
                        found = true;
                    }
                }
            }
            if found {
                Ok(())
            } else {
                Err(StoreError::ObjectNotFound)
            }
        })
    }

    pub fn purge_object(&self, path: &ObjectPath, until: Micros) -> Result<()> {
        self.with_tx(&Scope::account(&path.account), |tx| {
            let ctx = path_ctx(tx, &path.account, &path.container)?;
            let Some((pid, latest)) = path_row(tx, ctx.container.id, &path.name)? else {
                return Err(StoreError::ObjectNotFound);
            };
            let now = tx.now();
            if let Some(vid) = latest {
                let mtime: Micros = tx.query_row("SELECT mtime FROM versions WHERE id = ?1", [vid], |r| r.get(0))?;
                if mtime <= until {
                    current_changes(tx, ctx.container.id, vid, -1)?;
                    tx.execute(
                        "UPDATE paths SET latest = NULL, sharing = NULL, public_id = NULL WHERE id = ?1",
                        [pid],
                    )?;
                    grants::set(tx, pid, None)?;
                }
            }
            refs::drop_versions(
                tx,
                &format!(
                    "SELECT v.id, k.account, v.hashes FROM versions v JOIN paths p ON p.id = v.path
                     JOIN containers k ON k.id = p.container WHERE v.path = ?1 AND v.mtime <= {until}"
                ),
                pid.into(),
                now,
            )?;
            forget_unused_paths(tx, "id = ?1", pid)?;
            touch_container(tx, ctx.container.id, now)
        })
    }

    pub fn object_by_uuid(&self, uuid: &str) -> Result<Option<ObjectInfo>> {
        self.with_read(|c| current_where(c, "v.uuid = ?1", uuid))
    }

    pub fn object_by_public_id(&self, public_id: &str) -> Result<Option<ObjectInfo>> {
        self.with_read(|c| current_where(c, "p.public_id = ?1", public_id))
    }

    pub fn list_images(&self, viewer: &str, name: Option<&str>) -> Result<Vec<ObjectInfo>> {
        self.with_read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT k.account, k.name, p.name, {ROW_COLS} FROM paths p
                 JOIN versions v ON v.id = p.latest JOIN containers k ON k.id = p.container
                 WHERE p.id IN ({})",
                images::visible_paths(name.is_some())
            ))?;
            let row = |r: &db::SqlRow| Ok((r.get(0)?, r.get(1)?, r.get(2)?, row_from(r, 3)?));
            let hits: Vec<(String, String, String, Row)> = match name {
                Some(n) => st.query_map(params![viewer, n], row)?.collect::<Result<_>>()?,
                None => st.query_map(params![viewer], row)?.collect::<Result<_>>()?,
            };
            let mut ctxs: std::collections::HashMap<(String, String), PathCtx> = Default::default();
            hits.into_iter()
                .map(|(acc, cont, name, row)| {
                    let key = (acc, cont);
                    if !ctxs.contains_key(&key) {
                        let ctx = path_ctx(c, &key.0, &key.1)?;
                        ctxs.insert(key.clone(), ctx);
                    }
                    info_of(c, &ctxs[&key], &name, &row, true)
                })
                .collect()
        })
    }

    pub fn access(&self, user: &str, path: &ObjectPath) -> Result<Option<Access>> {
        if user == path.account {
            return Ok(Some(Access::owner()));
        }
        self.with_read(|c| match path_ctx(c, &path.account, &path.container) {
            Ok(ctx) => access_in(c, &ctx, user, &path.name),
            Err(StoreError::ContainerNotFound) => Ok(None),
            Err(e) => Err(e),
        })
    }

    pub fn shared_paths(&self, account: &str) -> Result<Vec<(String, String, Sharing)>> {
        self.with_read(|c| {
            let mut st = c.prepare_cached(
                "SELECT k.name, p.name, p.sharing FROM paths p JOIN containers k ON k.id = p.container
                 WHERE k.account = ?1 AND p.sharing IS NOT NULL AND p.latest IS NOT NULL ORDER BY k.name, p.name",
            )?;
            let rows = st.query_map([account], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))?;
            let mut out = vec![];
            for r in rows {
                let (k, p, s) = r?;
                if let Ok(s) = Sharing::parse(&s) {
                    out.push((k, p, s));
                }
            }
            Ok(out)
        })
    }

    pub fn accounts_sharing_with(&self, user: &str) -> Result<Vec<String>> {
        self.with_read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT DISTINCT k.account FROM grants g JOIN paths p ON p.id = g.path
                 JOIN containers k ON k.id = p.container
                 WHERE {} AND p.latest IS NOT NULL AND k.account != ?1 ORDER BY k.account",
                grants::reader_is(1)
            ))?;
            let out = st.query_map([user], |r| r.get(0))?.collect::<Result<_>>()?;
            Ok(out)
        })
    }

    pub fn check_upload(&self, account: &str, size: u64, hash: &dyn Fn() -> BlockHash) -> Result<()> {
        self.with_read(|c| {
            let q = account_quota(c, account)?;
            if q > 0 && size > 0 && refs::stored(c, account)? + size > q {
                // (a block the account has already costs nothing more)
                let has = c
                    .prepare_cached("SELECT 1 FROM account_blocks WHERE account = ?1 AND hash = ?2")?
                    .exists(params![account, &hash().0[..]])?;
                if !has {
                    return Err(StoreError::QuotaExceeded);
                }
            }
            Ok(())
        })
    }

    pub fn block_sent(
        &self,
        account: &str,
        hash: &BlockHash,
        size: u64,
        verify: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let scope = Scope::account(account).with_sweep(Sweep::Shared);
        self.with_tx(&scope, |tx| {
            let before = refs::stored(tx, account)?;
            refs::sent(tx, account, &hash.0, size, tx.now())?;
            check_account_quota(tx, account, before)?;
            // The collector deletes a block's bytes holding its row (locked by `sent` above
            // until the collector commits) and stray ones holding the sweep lock, so bytes it
            // took between their write and this transaction are found missing here, and
            // written again.
            verify()?;
            refs::found(tx, &hash.0)
        })
    }

    pub fn missing_blocks(&self, account: &str, hashes: &[BlockHash]) -> Result<Vec<BlockHash>> {
        // Each distinct hash looked at once, and the missing ones named in the order given:
        // sorted (hash, position) pairs, O(n log n) and 36 bytes a hash (a `contains` per hash
        // cost ~10 CPU-minutes for a 1.3M-hash map; a hash set would take twice the memory).
        let mut by_hash: Vec<(BlockHash, u32)> = hashes.iter().zip(0u32..).map(|(h, i)| (*h, i)).collect();
        by_hash.sort_unstable();
        by_hash.dedup_by(|later, first| later.0 == first.0);
        let mut missing: Vec<(u32, BlockHash)> = vec![];
        // (the all-zero block says nothing: everyone has it)
        let zeros = BlockHash::empty();
        by_hash.retain(|(h, _)| *h != zeros);
        if by_hash.is_empty() {
            return Ok(vec![]);
        }
        self.with_read(|c| {
            for chunk in by_hash.chunks(refs::USABLE_BATCH) {
                let asked: Vec<[u8; 32]> = chunk.iter().map(|(h, _)| h.0).collect();
                let have = refs::usable_of(c, account, &asked)?;
                // (both in hash order: one merge)
                let mut have = have.iter().peekable();
                for (h, i) in chunk {
                    while have.next_if(|x| **x < h.0).is_some() {}
                    if have.next_if(|x| **x == h.0).is_none() {
                        missing.push((*i, *h));
                    }
                }
            }
            Ok(())
        })?;
        missing.sort_unstable_by_key(|(i, _)| *i);
        Ok(missing.into_iter().map(|(_, h)| h).collect())
    }

    pub fn block_lost(&self, hash: &BlockHash) -> Result<()> {
        self.with_tx(&Scope::rows(), |tx| refs::lost(tx, &hash.0))
    }

    pub fn engine_id(&self) -> &str {
        &self.id
    }

    pub fn gc_take_lease(&self, me: &str) -> Result<bool> {
        self.take_lease(me)
    }

    pub fn gc_drop_lease(&self, me: &str) -> Result<()> {
        self.drop_lease(me)
    }

    pub fn gc_expire(&self, grace: std::time::Duration, me: &str) -> Result<u64> {
        self.expire_uploads(grace, &mut || self.take_lease(me))
    }

    pub fn gc_free(
        &self,
        grace: std::time::Duration,
        me: &str,
        remove: &mut dyn FnMut(&BlockHash) -> Result<()>,
    ) -> Result<(u64, u64)> {
        self.free_blocks(grace, remove, &mut || self.take_lease(me))
    }

    pub fn gc_forget_strays(
        &self,
        found: &[(BlockHash, u64)],
        remove: &mut dyn FnMut(&BlockHash) -> Result<bool>,
    ) -> Result<(u64, u64)> {
        self.forget_strays(found, remove)
    }

    pub fn health(&self) -> Result<()> {
        self.with_statement(|c| c.query_row("SELECT COUNT(*) FROM users WHERE 1 = 0", (), |r| r.get::<_, i64>(0)))
            .map(|_| ())
    }

    pub fn db_pool(&self) -> Option<(usize, usize)> {
        match &*self.backend {
            Backend::Sqlite(_) => None,
            Backend::Pg(p) => Some(p.pool_status()),
        }
    }
}

impl SqlStore {
    /// A new current version with the same data and the attributes `f` derives.
    fn rewrite_current(
        &self,
        path: &ObjectPath,
        by: &str,
        sharing: Option<&Sharing>,
        mut f: impl FnMut(&ObjectInfo) -> (Meta, Meta),
    ) -> Result<ObjectInfo> {
        self.with_tx(&Scope::account(&path.account), |tx| {
            let ctx = path_ctx(tx, &path.account, &path.container)?;
            let (pid, row) = current(tx, &ctx, &path.name)?.ok_or(StoreError::ObjectNotFound)?;
            let info = info_of(tx, &ctx, &path.name, &row, true)?;
            let (meta, image) = f(&info);
            let d = VersionData {
                uuid: &row.uuid,
                size: row.size as u64,
                content_type: &row.content_type,
                hashes: &row.hashes,
                merkle: &row.merkle,
                md5: row.md5.as_deref(),
                modified_by: by,
            };
            let vid = commit_version(tx, &ctx, pid, &d, &meta, &image)?;
            set_path_permissions(tx, pid, sharing, None)?;
            let row = load_row(tx, vid)?;
            info_of(tx, &ctx, &path.name, &row, true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::timefmt::now_micros;
    use crate::store::block_on;
    use crate::store::blocks::{BlockStore, FsBlocks, SweepPage};
    use bytes::Bytes;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    impl SqlStore {
        /// The SQLite connection itself, for tests that make an old database.
        fn sqlite(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
            match &*self.backend {
                Backend::Sqlite(c) => c.lock().unwrap(),
                Backend::Pg(_) => panic!("not an SQLite store"),
            }
        }
    }

    fn open(dir: &Path) -> Engine<SqlStore> {
        let blocks = Arc::new(FsBlocks::open(&dir.join("blocks")).unwrap());
        open_db(dir, "meta.db", blocks).unwrap()
    }

    /// The metadata database `name` of the test in `dir`: SQLite there, or with
    /// `IMGFS_TEST_PG=postgres://…` a PostgreSQL schema of its own (named after the path, so
    /// a test that opens it again finds it) — the same tests on both engines.
    fn open_db(dir: &Path, name: &str, blocks: Arc<dyn BlockStore>) -> Result<Engine<SqlStore>> {
        let at = dir.join(name);
        let e = match pg_url(&at) {
            Some(url) => Engine::new(Arc::new(SqlStore::open_postgres(&url)?), blocks),
            None => {
                let size_of = |h: &BlockHash| block_on(blocks.stored_len(h));
                Engine::new(Arc::new(SqlStore::open(&at, &size_of)?), blocks)
            }
        };
        // (as a server does when it starts)
        block_on(e.claim_blocks())?;
        Ok(e)
    }

    /// With `IMGFS_TEST_PG`, the URL of the PostgreSQL schema of the database at `at`.
    fn pg_url(at: &Path) -> Option<String> {
        use sha2::Digest;
        let url = std::env::var("IMGFS_TEST_PG").ok().filter(|u| !u.is_empty())?;
        let schema = format!(
            "t{}",
            &hex::encode(sha2::Sha256::digest(at.to_string_lossy().as_bytes()))[..16]
        );
        let sep = if url.contains('?') { '&' } else { '?' };
        Some(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
    }

    fn on_postgres() -> bool {
        std::env::var("IMGFS_TEST_PG").is_ok_and(|u| !u.is_empty())
    }

    #[test]
    fn a_version_1_database_learns_which_account_holds_which_block() {
        if on_postgres() {
            return; // (PostgreSQL databases start at the current schema: nothing to migrate)
        }
        let dir = tempfile::tempdir().unwrap();
        let (alice, bob) = {
            let s = open(dir.path());
            let (a, _) = s.create_user("alice").unwrap();
            let (b, _) = s.create_user("bob").unwrap();
            let h = block_on(s.put_block(&a.uuid, Bytes::copy_from_slice(b"alice's block"))).unwrap();
            let obj = NewObject {
                size: 13,
                hashes: vec![h],
                content_type: "text/plain".into(),
                md5: None,
                meta: Meta::new(),
                modified_by: a.uuid.clone(),
                sharing: None,
                public: None,
            };
            let p = ObjectPath::new(&a.uuid, DEFAULT_CONTAINER, "f");
            s.put_object(&p, &obj, &Precondition::default()).unwrap();
            let image = Meta::from([("name".to_string(), "debian".to_string())]);
            let read_bob = Sharing::parse(&format!("read={}", b.uuid)).unwrap();
            s.set_image_meta(&p, &image, Some(&read_bob), &a.uuid).unwrap();
            // What a version 1 database has: no presence table, no counts.
            let c = s.sqlite();
            c.execute_batch(
                "DROP TABLE account_blocks; DROP TABLE blocks; DROP TABLE gc_lease; DROP TABLE tokens;
                 ALTER TABLE accounts DROP COLUMN stored; DROP TABLE container_keys; DROP INDEX paths_shared;
                 ALTER TABLE containers DROP COLUMN objects; ALTER TABLE containers DROP COLUMN bytes;
                 DROP TABLE images; DROP TABLE grants; DROP TABLE engine;
                 PRAGMA user_version = 1;",
            )
            .unwrap();
            // (nor had its block store an owner)
            std::fs::remove_file(dir.path().join("blocks").join(crate::store::blocks::OWNER_MARK)).unwrap();
            (a, b)
        };
        let s = open(dir.path());
        let h = crate::api::hashing::block_hash(b"alice's block");
        assert!(s.missing_blocks(&alice.uuid, &[h]).unwrap().is_empty(), "backfilled");
        assert_eq!(s.missing_blocks(&bob.uuid, &[h]).unwrap(), [h], "only for its holder");
        let v: i64 = s
            .sqlite()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        // and counts what each holds
        check_counts(&s);
        assert_eq!(s.account_info(&alice.uuid).unwrap().bytes, 13);
        assert_eq!(s.account_info(&bob.uuid).unwrap().bytes, 0);
        let info = s.container_info(&alice.uuid, DEFAULT_CONTAINER).unwrap();
        assert_eq!((info.count, info.bytes), (1, 13), "container counters backfilled");
        let seen = s.list_images(&bob.uuid, None).unwrap();
        assert_eq!(seen.len(), 1, "image index and grants backfilled");
        assert_eq!(s.accounts_sharing_with(&bob.uuid).unwrap(), vec![alice.uuid.clone()]);
    }

    /// The image list a user gets is theirs plus what is shared with them or public, and
    /// follows every change of registration, sharing, name and place.
    #[test]
    fn the_image_list_is_what_the_viewer_may_see() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let (a, _) = s.create_user("alice").unwrap();
        let (b, _) = s.create_user("bob").unwrap();
        let (c, _) = s.create_user("carol").unwrap();
        let pc = Precondition::default();
        let register = |p: &ObjectPath, name: &str, sharing: Option<&str>| {
            s.put_object(p, &obj(&p.account, vec![], 0), &pc).unwrap();
            let image = Meta::from([("name".to_string(), name.to_string())]);
            let sharing = sharing.map(|x| Sharing::parse(x).unwrap());
            s.set_image_meta(p, &image, sharing.as_ref(), &p.account).unwrap();
        };
        let names = |viewer: &str, name: Option<&str>| -> Vec<String> {
            let mut v: Vec<String> = s
                .list_images(viewer, name)
                .unwrap()
                .into_iter()
                .map(|o| format!("{}:{}", o.name, o.image.get("name").cloned().unwrap_or_default()))
                .collect();
            v.sort();
            v
        };
        let at = |acc: &str, n: &str| ObjectPath::new(acc, DEFAULT_CONTAINER, n);
        register(&at(&a.uuid, "a1"), "one", None);
        register(
            &at(&a.uuid, "a2"),
            "two",
            Some(&format!("read={}", b.uuid.to_uppercase())),
        );
        register(&at(&c.uuid, "c1"), "pub", Some("read=*"));
        register(&at(&b.uuid, "b1"), "one", None);
        s.put_object(&at(&a.uuid, "plain"), &obj(&a.uuid, vec![], 0), &pc)
            .unwrap();
        let shared = Sharing::parse(&format!("write={}", b.uuid)).unwrap();
        s.set_permissions(&at(&a.uuid, "plain"), Some(&shared), None).unwrap();
        check_counts(&s);
        assert_eq!(names(&b.uuid, None), ["a2:two", "b1:one", "c1:pub"]);
        assert_eq!(names(&a.uuid, None), ["a1:one", "a2:two", "c1:pub"]);
        assert_eq!(names(&b.uuid, Some("one")), ["b1:one"], "alice's 'one' is not shared");
        assert_eq!(names(&c.uuid, Some("two")), Vec::<String>::new());
        assert_eq!(
            s.accounts_sharing_with(&b.uuid).unwrap().len(),
            2,
            "alice (a2, plain) and carol (public)"
        );
        // A new version keeps the image; renaming it changes the index.
        s.update_object_meta(&at(&a.uuid, "a2"), &MetaUpdate::Merge(Meta::new()), &a.uuid)
            .unwrap();
        let renamed = Meta::from([("name".to_string(), "deux".to_string())]);
        s.set_image_meta(&at(&a.uuid, "a2"), &renamed, None, &a.uuid).unwrap();
        assert_eq!(names(&b.uuid, Some("deux")), ["a2:deux"]);
        check_counts(&s);
        // Revoked, moved, unregistered, deleted.
        s.set_permissions(&at(&a.uuid, "a2"), Some(&Sharing::default()), None)
            .unwrap();
        assert_eq!(names(&b.uuid, None), ["b1:one", "c1:pub"]);
        let mv = CopySpec {
            src: at(&c.uuid, "c1"),
            src_version: None,
            dst: at(&c.uuid, "moved"),
            is_move: true,
            recursive: false,
            content_type: None,
            meta: None,
            modified_by: c.uuid.clone(),
            sharing: None,
            public: None,
            reader: None,
        };
        s.copy_object(&mv, &pc).unwrap();
        check_counts(&s);
        assert_eq!(
            names(&b.uuid, None),
            ["b1:one", "moved:pub"],
            "a move keeps image and sharing"
        );
        s.set_image_meta(&at(&b.uuid, "b1"), &Meta::new(), None, &b.uuid)
            .unwrap();
        s.delete_object(&at(&c.uuid, "moved"), &c.uuid, false).unwrap();
        check_counts(&s);
        assert_eq!(names(&b.uuid, None), Vec::<String>::new());
        assert_eq!(
            s.accounts_sharing_with(&b.uuid).unwrap(),
            vec![a.uuid.clone()],
            "plain only"
        );
    }

    /// The counts are what the versions say: each account's rows hold the blocks its versions
    /// name (refs = how many versions), each block's refs = how many accounts have a row,
    /// each account is charged the sizes of its rows, and every held block has its file.
    fn check_counts(s: &Engine<SqlStore>) {
        s.with_read(|c| check_counts_in(s, c)).unwrap()
    }

    fn check_counts_in(s: &Engine<SqlStore>, c: &Db) -> Result<()> {
        let mut want: BTreeMap<(String, Vec<u8>), i64> = BTreeMap::new();
        let mut st = c
            .prepare(
                "SELECT k.account, v.hashes FROM versions v JOIN paths p ON p.id = v.path
                 JOIN containers k ON k.id = p.container WHERE v.deleted = 0",
            )
            .unwrap();
        for r in st
            .query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .unwrap()
        {
            let (a, hashes) = r.unwrap();
            for h in refs::distinct(&hashes) {
                *want.entry((a.clone(), h.to_vec())).or_default() += 1;
            }
        }
        let mut st = c
            .prepare("SELECT account, hash, refs FROM account_blocks WHERE refs > 0")
            .unwrap();
        let have: BTreeMap<(String, Vec<u8>), i64> = st
            .query_map((), |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(have, want, "account rows = what the versions hold");
        let bad = count(
            c,
            "SELECT COUNT(*) FROM blocks b WHERE refs != (SELECT COUNT(*) FROM account_blocks a WHERE a.hash = b.hash)",
        );
        assert_eq!(bad, 0, "block refs = accounts holding");
        let orphan_rows = count(
            c,
            "SELECT COUNT(*) FROM account_blocks a WHERE NOT EXISTS (SELECT 1 FROM blocks b WHERE b.hash = a.hash)",
        );
        assert_eq!(orphan_rows, 0);
        let bad = count(
            c,
            "SELECT COUNT(*) FROM accounts x WHERE stored != (SELECT COALESCE(SUM(b.size), 0)
                 FROM account_blocks a JOIN blocks b ON b.hash = a.hash WHERE a.account = x.uuid)",
        );
        assert_eq!(bad, 0, "charge = sizes of the rows");
        let bad = count(
            c,
            "SELECT COUNT(*) FROM containers k
                 WHERE objects != (SELECT COUNT(*) FROM paths p WHERE p.container = k.id AND p.latest IS NOT NULL)
                 OR bytes != (SELECT COALESCE(SUM(v.size), 0) FROM paths p JOIN versions v ON v.id = p.latest
                              WHERE p.container = k.id)",
        );
        assert_eq!(bad, 0, "container counters = what is current");
        let keys = |sql: &str| triples::<i64, String, i64>(c, sql);
        assert_eq!(
            keys("SELECT container, key, n FROM container_keys ORDER BY 1, 2"),
            keys(
                "SELECT p.container, a.key, COUNT(*) FROM paths p
                 JOIN attrs a ON a.version = p.latest AND a.domain = 'pithos' GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            "container keys = those of what is current"
        );
        let images = |sql: &str| triples::<i64, String, String>(c, sql);
        assert_eq!(
            images("SELECT path, account, name FROM images ORDER BY 1"),
            images(
                "SELECT p.id, k.account, a.value FROM paths p JOIN containers k ON k.id = p.container
                 JOIN attrs a ON a.version = p.latest AND a.domain = 'plankton' AND a.key = 'name' ORDER BY 1"
            ),
            "the image index = the current versions with an image name"
        );
        let mut st = c.prepare("SELECT member, path FROM grants ORDER BY 1, 2").unwrap();
        let have: Vec<(String, i64)> = st
            .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let mut st = c
            .prepare("SELECT id, sharing FROM paths WHERE sharing IS NOT NULL AND latest IS NOT NULL")
            .unwrap();
        let mut want: Vec<(String, i64)> = vec![];
        for r in st
            .query_map((), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
        {
            let (pid, sharing) = r.unwrap();
            for m in grants::members(&Sharing::parse(&sharing).unwrap()) {
                want.push((m, pid));
            }
        }
        want.sort();
        assert_eq!(have, want, "grants = the members of each current path's sharing");
        let stale = count(
            c,
            "SELECT COUNT(*) FROM paths WHERE latest IS NULL AND sharing IS NOT NULL",
        );
        assert_eq!(stale, 0, "no sharing without a current version");
        let mut st = c.prepare("SELECT hash FROM blocks WHERE refs > 0").unwrap();
        for h in st.query_map((), |r| r.get::<_, Vec<u8>>(0)).unwrap() {
            let h = BlockHash(h.unwrap().try_into().unwrap());
            assert!(
                block_on(s.blocks.stored_len(&h)).unwrap().is_some(),
                "held block {h} has its file"
            );
        }
        Ok(())
    }

    /// The one number a `COUNT(*)` query answers.
    fn count(c: &Db, sql: &str) -> i64 {
        c.query_row(sql, (), |r| r.get(0)).unwrap()
    }

    /// Every row of a three-column query.
    fn triples<A, B, C>(c: &Db, sql: &str) -> Vec<(A, B, C)>
    where
        A: db::FromValue,
        B: db::FromValue,
        C: db::FromValue,
    {
        let mut st = c.prepare(sql).unwrap();
        st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    fn obj(by: &str, hashes: Vec<BlockHash>, size: u64) -> NewObject {
        NewObject {
            size,
            hashes,
            content_type: "application/octet-stream".into(),
            md5: None,
            meta: Meta::new(),
            modified_by: by.into(),
            sharing: None,
            public: None,
        }
    }

    fn block_files(dir: &Path) -> usize {
        fn walk(p: &Path, n: &mut usize) {
            for e in std::fs::read_dir(p).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, n);
                } else if !p.ends_with(crate::store::blocks::OWNER_MARK) {
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        walk(&dir.join("blocks"), &mut n);
        n
    }

    /// Overwrites, metadata versions, copies, deletes, purges and abandoned uploads keep the
    /// counts exact; the collector deletes exactly what nobody holds, and space comes back.
    #[test]
    fn counts_follow_versions_and_the_collector_frees_what_nobody_holds() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let (a, _) = s.create_user("alice").unwrap();
        let (b, _) = s.create_user("bob").unwrap();
        let put = |acc: &str, data: &[u8]| block_on(s.put_block(acc, Bytes::copy_from_slice(data))).unwrap();
        let (b1, b2, b3) = (put(&a.uuid, b"one"), put(&a.uuid, b"two"), put(&a.uuid, b"three"));
        // Sent, not yet in a version: charged already.
        assert_eq!(s.account_info(&a.uuid).unwrap().bytes, 11);
        check_counts(&s);
        let f = ObjectPath::new(&a.uuid, DEFAULT_CONTAINER, "f");
        let none = PolicyUpdate {
            versioning: Some(Some(Versioning::None)),
            ..Default::default()
        };
        s.put_container(&a.uuid, "flat", &none, &Meta::new()).unwrap();
        let g = ObjectPath::new(&a.uuid, "flat", "g");
        let pc = Precondition::default();
        s.put_object(&f, &obj(&a.uuid, vec![b1, b2, b2], 12), &pc).unwrap();
        s.put_object(&f, &obj(&a.uuid, vec![b2, b3], 8), &pc).unwrap(); // history keeps b1
        let color = |v: &str| MetaUpdate::Merge(Meta::from([("color".to_string(), v.to_string())]));
        s.update_object_meta(&f, &color("blue"), &a.uuid).unwrap();
        check_counts(&s);
        let info = s.container_info(&a.uuid, DEFAULT_CONTAINER).unwrap();
        assert_eq!(
            (info.count, info.bytes, info.object_meta_keys.clone()),
            (1, 8, vec!["color".to_string()])
        );
        s.update_object_meta(&f, &color(""), &a.uuid).unwrap();
        assert!(s
            .container_info(&a.uuid, DEFAULT_CONTAINER)
            .unwrap()
            .object_meta_keys
            .is_empty());
        s.update_object_meta(&f, &color("red"), &a.uuid).unwrap();
        s.put_object(&g, &obj(&a.uuid, vec![b3], 5), &pc).unwrap();
        check_counts(&s);
        // Each distinct block once, history included: 3 + 3 + 5.
        assert_eq!(s.account_info(&a.uuid).unwrap().bytes, 11);
        // Bob copies what alice shares: charged to bob, one file on disk.
        s.set_permissions(&f, Some(&Sharing::parse(&format!("read={}", b.uuid)).unwrap()), None)
            .unwrap();
        let spec = CopySpec {
            src: f.clone(),
            src_version: None,
            dst: ObjectPath::new(&b.uuid, DEFAULT_CONTAINER, "copy"),
            is_move: false,
            recursive: false,
            content_type: None,
            meta: None,
            modified_by: b.uuid.clone(),
            sharing: None,
            public: None,
            reader: Some(b.uuid.clone()),
        };
        s.copy_object(&spec, &pc).unwrap();
        assert_eq!(s.account_info(&b.uuid).unwrap().bytes, 8);
        check_counts(&s);
        // A move there and back.
        let moved = ObjectPath::new(&b.uuid, DEFAULT_CONTAINER, "moved");
        let mv = |src: &ObjectPath, dst: &ObjectPath| CopySpec {
            src: src.clone(),
            dst: dst.clone(),
            is_move: true,
            reader: Some(b.uuid.clone()),
            ..spec.clone()
        };
        s.copy_object(&mv(&spec.dst, &moved), &pc).unwrap();
        check_counts(&s);
        s.copy_object(&mv(&moved, &spec.dst), &pc).unwrap();
        check_counts(&s);
        s.purge_object(&moved, now_micros()).unwrap();
        let info = s.container_info(&b.uuid, DEFAULT_CONTAINER).unwrap();
        assert_eq!((info.count, info.bytes), (1, 8));
        // An abandoned upload of bob's, and an overwrite under "none" that drops b3 from g.
        let lost = put(&b.uuid, b"abandoned");
        s.put_object(&g, &obj(&a.uuid, vec![], 0), &pc).unwrap();
        check_counts(&s);
        assert_eq!(block_files(dir.path()), 4);
        // Within the grace period nothing goes.
        let r = block_on(s.collect_garbage(std::time::Duration::from_secs(3600))).unwrap();
        assert_eq!((r.uploads_expired, r.blocks_freed), (0, 0));
        // After it: bob's abandoned upload, and nothing anyone holds.
        let r = block_on(s.collect_garbage(std::time::Duration::ZERO)).unwrap();
        assert_eq!((r.uploads_expired, r.blocks_freed, r.bytes_freed), (1, 1, 9), "{r:?}");
        assert_eq!(s.missing_blocks(&b.uuid, &[lost]).unwrap(), [lost]);
        assert_eq!(block_files(dir.path()), 3);
        check_counts(&s);
        // Alice purges her container's history: f keeps its current version, b1 goes.
        s.purge_container(&a.uuid, DEFAULT_CONTAINER, now_micros()).unwrap();
        assert_eq!(s.list_versions(&f).unwrap().len(), 1);
        assert_eq!(s.account_info(&a.uuid).unwrap().bytes, 8);
        assert!(s.access(&b.uuid, &f).unwrap().is_some(), "the sharing stays");
        check_counts(&s);
        // Deleting everything (history purged with the object or the container) frees it all.
        let copy = ObjectPath::new(&b.uuid, DEFAULT_CONTAINER, "copy");
        s.delete_object(&copy, &b.uuid, false).unwrap();
        assert_eq!(s.account_info(&b.uuid).unwrap().bytes, 8, "history under auto is kept");
        s.purge_object(&copy, now_micros()).unwrap();
        assert_eq!(s.account_info(&b.uuid).unwrap().bytes, 0);
        assert!(matches!(
            s.purge_object(&copy, now_micros()),
            Err(StoreError::ObjectNotFound)
        ));
        check_counts(&s);
        s.put_container(&b.uuid, "x", &PolicyUpdate::default(), &Meta::new())
            .unwrap();
        s.delete_container(&b.uuid, DEFAULT_CONTAINER).unwrap();
        assert_eq!(s.account_info(&b.uuid).unwrap().bytes, 0);
        s.delete_object(&f, &a.uuid, false).unwrap();
        s.delete_object(&g, &a.uuid, false).unwrap();
        s.delete_container(&a.uuid, DEFAULT_CONTAINER).unwrap();
        s.delete_container(&a.uuid, "flat").unwrap();
        assert_eq!(s.account_info(&a.uuid).unwrap().bytes, 0);
        check_counts(&s);
        let r = block_on(s.collect_garbage(std::time::Duration::ZERO)).unwrap();
        assert_eq!(r.blocks_freed, 3, "{r:?}");
        assert_eq!(block_files(dir.path()), 0);
        check_counts(&s);
    }

    /// A block file without a row (a crash between its write and its transaction) and a
    /// temp file of a cut write go once older than the grace period; a block being uploaded
    /// again is written again if the collector took it.
    #[test]
    fn stray_files_are_swept_and_a_collected_block_is_rewritten_by_its_next_upload() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let (a, _) = s.create_user("alice").unwrap();
        let h = block_on(s.blocks.put(Bytes::from_static(b"orphan"))).unwrap();
        let tmp = dir.path().join("blocks/00/00/.tmp-cut");
        std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
        std::fs::write(&tmp, b"half a block").unwrap();
        let r = block_on(s.collect_garbage(std::time::Duration::ZERO)).unwrap();
        assert_eq!((r.orphans_freed, r.temp_files_freed), (0, 0), "young files stay");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let hex = h.to_hex();
        for p in [
            tmp.clone(),
            dir.path().join("blocks").join(&hex[0..2]).join(&hex[2..4]).join(&hex),
        ] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let r = block_on(s.collect_garbage(std::time::Duration::from_secs(1800))).unwrap();
        assert_eq!(
            (r.orphans_freed, r.temp_files_freed, r.bytes_freed),
            (1, 1, 18),
            "{r:?}"
        );
        assert_eq!(block_on(s.blocks.stored_len(&h)).unwrap(), None);
        assert!(!tmp.exists());
        // The file vanishes between an upload's write and its transaction (what a collector
        // in another process could do): the upload's transaction writes it again.
        let h = block_on(s.put_block(&a.uuid, Bytes::copy_from_slice(b"again"))).unwrap();
        block_on(s.blocks.remove(&h)).unwrap();
        block_on(s.put_block(&a.uuid, Bytes::copy_from_slice(b"again"))).unwrap();
        assert_eq!(block_on(s.read_block(&h)).unwrap(), b"again");
        check_counts(&s);
    }

    /// A block store that stops in `remove` of the armed hash until told to go on: the
    /// collector is caught between deleting a block's file and committing.
    struct PausingBlocks {
        inner: FsBlocks,
        armed: Mutex<Option<BlockHash>>,
        removing: Mutex<Option<std::sync::mpsc::Sender<()>>>,
        go_on: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    }

    #[async_trait::async_trait]
    impl BlockStore for PausingBlocks {
        async fn put(&self, data: Bytes) -> Result<BlockHash> {
            BlockStore::put(&self.inner, data).await
        }
        async fn get(&self, hash: &BlockHash) -> Result<Vec<u8>> {
            BlockStore::get(&self.inner, hash).await
        }
        async fn stored_len(&self, hash: &BlockHash) -> Result<Option<u64>> {
            BlockStore::stored_len(&self.inner, hash).await
        }
        async fn remove(&self, hash: &BlockHash) -> Result<bool> {
            if self.armed.lock().unwrap().take_if(|h| h == hash).is_some() {
                self.removing.lock().unwrap().take().unwrap().send(()).unwrap();
                // (on the collector's blocking thread: it waits here as a slow store would)
                self.go_on.lock().unwrap().take().unwrap().recv().unwrap();
            }
            BlockStore::remove(&self.inner, hash).await
        }
        async fn sweep(&self, older_than: std::time::SystemTime, from: Option<String>) -> Result<SweepPage> {
            BlockStore::sweep(&self.inner, older_than, from).await
        }
        async fn check(&self) -> Result<()> {
            BlockStore::check(&self.inner).await
        }
        async fn claim(&self, owner: &str) -> Result<()> {
            BlockStore::claim(&self.inner, owner).await
        }
    }

    /// An upload of a block by another account while the collector is deleting it — a block
    /// nobody held, its row locked; then a stray file, the sweep lock held — waits for the
    /// collector's commit and writes the block again: the block is there and present for the
    /// uploader afterwards, and the counts agree. (On PostgreSQL the two run in parallel
    /// transactions: without the collector's `FOR UPDATE` or the sweep lock the upload
    /// commits first and the file goes after.)
    #[test]
    fn an_upload_racing_the_collector_for_its_block_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = Arc::new(PausingBlocks {
            inner: FsBlocks::open(&dir.path().join("blocks")).unwrap(),
            armed: Mutex::new(None),
            removing: Mutex::new(None),
            go_on: Mutex::new(None),
        });
        let s = Arc::new(open_db(dir.path(), "race.db", blocks.clone()).unwrap());
        let (a, _) = s.create_user("alice").unwrap();
        let (b, _) = s.create_user("bob").unwrap();
        let race = |data: &'static [u8], hash: BlockHash, sweep: bool| {
            let (removing_tx, removing) = std::sync::mpsc::channel();
            let (go_on, go_on_rx) = std::sync::mpsc::channel();
            *blocks.removing.lock().unwrap() = Some(removing_tx);
            *blocks.go_on.lock().unwrap() = Some(go_on_rx);
            *blocks.armed.lock().unwrap() = Some(hash);
            let grace = if sweep {
                std::time::Duration::from_secs(1800)
            } else {
                std::time::Duration::ZERO
            };
            let collector = std::thread::spawn({
                let s = s.clone();
                move || block_on(s.collect_garbage(grace)).unwrap()
            });
            removing.recv_timeout(std::time::Duration::from_secs(20)).unwrap();
            let upload = std::thread::spawn({
                let (s, b) = (s.clone(), b.uuid.clone());
                move || block_on(s.put_block(&b, Bytes::copy_from_slice(data))).unwrap()
            });
            // (time for an upload that does not wait to commit before the file goes)
            std::thread::sleep(std::time::Duration::from_millis(500));
            go_on.send(()).unwrap();
            let report = collector.join().unwrap();
            assert_eq!(upload.join().unwrap(), hash);
            assert_eq!(
                block_on(s.read_block(&hash)).unwrap(),
                data,
                "sweep={sweep}: {report:?}"
            );
            assert!(s.missing_blocks(&b.uuid, &[hash]).unwrap().is_empty());
            check_counts(&s);
        };
        // A block alice sent and nobody took: the collector frees it as bob sends it.
        let h = block_on(s.put_block(&a.uuid, Bytes::copy_from_slice(b"shared by chance"))).unwrap();
        race(b"shared by chance", h, false);
        // A block file the database does not know, old enough to be swept.
        let h = block_on(s.blocks.put(Bytes::from_static(b"stray"))).unwrap();
        let hex = h.to_hex();
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("blocks").join(&hex[0..2]).join(&hex[2..4]).join(&hex))
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
            .unwrap();
        race(b"stray", h, true);
    }

    /// Only one collector at a time: another's live lease makes a run a no-op.
    #[test]
    fn one_collector_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.with_tx(&Scope::name("gc"), |tx| {
            tx.execute(
                "INSERT INTO gc_lease (id, holder, until) VALUES (1, 'elsewhere', ?1)",
                [now_micros() + 60_000_000],
            )?;
            Ok(())
        })
        .unwrap();
        assert!(block_on(s.collect_garbage(std::time::Duration::ZERO)).unwrap().skipped);
        s.with_tx(&Scope::name("gc"), |tx| {
            tx.execute("UPDATE gc_lease SET until = ?1", [now_micros() - 1])?;
            Ok(())
        })
        .unwrap();
        assert!(
            !block_on(s.collect_garbage(std::time::Duration::ZERO)).unwrap().skipped,
            "an expired lease is taken"
        );
    }

    /// An account's quota counts what it makes the server store: uploads not yet in an object,
    /// and history; a metadata-only version costs nothing.
    #[test]
    fn the_account_quota_counts_uploads_and_history_not_metadata_versions() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let (a, _) = s.create_user("alice").unwrap();
        s.set_account_quota(&a.uuid, 10).unwrap();
        let b1 = block_on(s.put_block(&a.uuid, Bytes::copy_from_slice(b"123456"))).unwrap();
        assert!(matches!(
            block_on(s.put_block(&a.uuid, Bytes::copy_from_slice(b"abcde"))),
            Err(StoreError::QuotaExceeded)
        ));
        // the same block again costs nothing
        block_on(s.put_block(&a.uuid, Bytes::copy_from_slice(b"123456"))).unwrap();
        let f = ObjectPath::new(&a.uuid, DEFAULT_CONTAINER, "f");
        let pc = Precondition::default();
        s.put_object(&f, &obj(&a.uuid, vec![b1], 6), &pc).unwrap();
        for _ in 0..5 {
            s.update_object_meta(&f, &MetaUpdate::Merge(Meta::new()), &a.uuid)
                .unwrap();
        }
        assert_eq!(s.account_info(&a.uuid).unwrap().bytes, 6);
        let b2 = block_on(s.put_block(&a.uuid, Bytes::copy_from_slice(b"wxyz"))).unwrap();
        s.put_object(&f, &obj(&a.uuid, vec![b2], 4), &pc).unwrap();
        assert_eq!(s.account_info(&a.uuid).unwrap().bytes, 10, "history counts");
        assert!(matches!(
            block_on(s.put_block(&a.uuid, Bytes::copy_from_slice(b"!"))),
            Err(StoreError::QuotaExceeded)
        ));
        check_counts(&s);
    }

    /// A block the store lost (or set aside as corrupt) is missing for everyone from the read
    /// that found out, without asking the block store per hash, until it is uploaded again.
    #[test]
    fn a_block_found_lost_is_missing_until_it_is_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let (a, _) = s.create_user("alice").unwrap();
        let h = block_on(s.put_block(&a.uuid, Bytes::copy_from_slice(b"precious"))).unwrap();
        let f = ObjectPath::new(&a.uuid, DEFAULT_CONTAINER, "f");
        s.put_object(&f, &obj(&a.uuid, vec![h], 8), &Precondition::default())
            .unwrap();
        assert!(s.missing_blocks(&a.uuid, &[h]).unwrap().is_empty());
        block_on(s.blocks.remove(&h)).unwrap();
        assert!(matches!(block_on(s.read_block(&h)), Err(StoreError::LostBlock(_))));
        assert_eq!(s.missing_blocks(&a.uuid, &[h]).unwrap(), vec![h]);
        let g = ObjectPath::new(&a.uuid, DEFAULT_CONTAINER, "g");
        assert!(matches!(
            s.put_object(&g, &obj(&a.uuid, vec![h], 8), &Precondition::default()),
            Err(StoreError::MissingBlocks(m)) if m == vec![h]
        ));
        block_on(s.put_block(&a.uuid, Bytes::copy_from_slice(b"precious"))).unwrap();
        assert!(s.missing_blocks(&a.uuid, &[h]).unwrap().is_empty());
        assert_eq!(block_on(s.read_block(&h)).unwrap(), b"precious");
        check_counts(&s);
    }

    /// An SQLite snapshot copied into PostgreSQL (by `COPY`) reads back the same, values
    /// that `COPY`'s text format must escape included: tabs, newlines, backslashes, a
    /// literal `\N`, NULLs, bytes; and the copy's token works there.
    #[test]
    fn a_snapshot_copied_into_postgres_reads_back_the_same() {
        if !on_postgres() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let blocks: Arc<dyn BlockStore> = Arc::new(FsBlocks::open(&dir.path().join("blocks")).unwrap());
        let size_of = |h: &BlockHash| block_on(blocks.stored_len(h));
        let src = Engine::new(
            Arc::new(SqlStore::open(&dir.path().join("src.db"), &size_of).unwrap()),
            blocks.clone(),
        );
        let (a, token) = src.create_user("alice").unwrap();
        let h = block_on(src.put_block(&a.uuid, Bytes::copy_from_slice(b"block bytes"))).unwrap();
        let mut o = obj(&a.uuid, vec![h, BlockHash::empty()], 11 + 4096);
        o.content_type = "text/plain; a=\"b\\c\"".into();
        o.meta = [
            ("tab".to_string(), "a\tb".to_string()),
            ("lines".to_string(), "one\ntwo\r\n".to_string()),
            ("slash".to_string(), "C:\\dir\\N".to_string()),
            ("null".to_string(), "\\N".to_string()),
        ]
        .into();
        let p = ObjectPath::new(&a.uuid, DEFAULT_CONTAINER, "odd\tname\\x");
        let want = src.put_object(&p, &o, &Precondition::default()).unwrap();
        let snap = dir.path().join("snap.db");
        src.snapshot(&snap).unwrap();

        // (the copy takes the source's engine id, so the same block store is its own)
        let meta = SqlStore::open_postgres(&pg_url(&dir.path().join("copy")).unwrap()).unwrap();
        let Backend::Pg(pool) = &*meta.backend else {
            unreachable!()
        };
        assert!(pool.import_sqlite(&snap).unwrap() > 0);
        let meta = SqlStore::open_postgres(&pg_url(&dir.path().join("copy")).unwrap()).unwrap();
        let dst = Engine::new(Arc::new(meta), blocks);
        let got = dst.object_info(&p, None).unwrap();
        assert_eq!(
            (
                got.version,
                &got.content_type,
                &got.meta,
                &got.merkle,
                got.md5.as_deref()
            ),
            (
                want.version,
                &want.content_type,
                &want.meta,
                &want.merkle,
                want.md5.as_deref()
            )
        );
        assert_eq!(dst.version_hashes(got.version).unwrap(), [h, BlockHash::empty()]);
        assert!(matches!(dst.check_token(&token).unwrap(), TokenCheck::Valid(_)));
        assert!(dst.missing_blocks(&a.uuid, &[h]).unwrap().is_empty());
        check_counts(&dst);
        // (the copy's next version id is above every copied one)
        let next = dst.put_object(&p, &o, &Precondition::default()).unwrap();
        assert!(next.version > want.version);
    }

    /// Two metadata databases over one block store would collect each other's blocks: the
    /// second is refused at open, by name; the first (and a server beside it) opens again.
    #[test]
    fn a_block_store_serves_one_metadata_database() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = || Arc::new(FsBlocks::open(&dir.path().join("blocks")).unwrap());
        let first = open_db(dir.path(), "a.db", blocks()).unwrap();
        drop(first);
        open_db(dir.path(), "a.db", blocks()).unwrap();
        let e = open_db(dir.path(), "b.db", blocks()).err().unwrap();
        assert!(e.to_string().contains("another imgfs metadata database"), "{e}");
    }
}
