//! `imgfs migrate --from DIR --meta URL --blocks URL`: moves a single-machine data directory
//! to other storage (its blocks to S3, say), resumable, every block verified.
//!
//! Order, so that the target never names a block it lacks: a consistent snapshot of the
//! metadata is taken first (`VACUUM INTO`, beside a running server too); every block that
//! snapshot holds is copied — read from the source (checked there), written to the target,
//! read back and checked by its hash — and only then does the snapshot become the target's
//! database. The snapshot keeps the source's engine id and token hashes, so the target's
//! block store is marked as that database's and every token keeps working.
//!
//! Into PostgreSQL the snapshot is staged in the source directory and its rows are copied in
//! one transaction once every block is there (so a cut run leaves the schema empty); the
//! schema must hold nothing before.
//!
//! Resumable: a block already in the target with its size is not copied again (it was
//! verified when written), so a run that was cut short is simply run again. Writes to the
//! source after the snapshot are not carried over: stop the server (or run once more after
//! stopping it) before switching.

use crate::store::blocks::BlockStore;
use crate::store::location::{MetaLocation, Storage};
use crate::store::{block_on, StoreError};
use crate::DataDirError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Blocks listed per query of the snapshot.
const PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Open(#[from] DataDirError),
    #[error("{0}: a metadata database is already there (migrated before?); nothing was done")]
    TargetExists(PathBuf),
    #[error("the target is the source's own directory {0}")]
    SameDirectory(PathBuf),
    #[error("block {hash}: {source}")]
    Block { hash: String, source: StoreError },
    #[error("block {0} read back from the target does not match its hash")]
    Mismatch(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the target's metadata goes once the blocks are there.
enum Target {
    /// The directory the snapshot is renamed into.
    Dir(PathBuf),
    /// The schema its rows are copied into (the staging directory goes with it).
    Pg(tempfile::TempDir, Box<crate::store::sql::postgres::PgPool>),
}

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MigrateReport {
    /// Blocks the snapshot holds.
    pub blocks: u64,
    /// Copied (and verified) by this run.
    pub copied: u64,
    /// Found in the target already (a run before this one).
    pub already_there: u64,
    pub bytes_copied: u64,
    /// Rows copied into PostgreSQL (0 into SQLite: the snapshot file is the database).
    pub rows: u64,
    /// Where the metadata went.
    pub meta: String,
    pub blocks_at: String,
}

/// Copies the data directory `from` to `to`; `progress` hears (blocks done, of how many).
pub fn migrate(from: &Path, to: &Storage, mut progress: impl FnMut(u64, u64)) -> Result<MigrateReport, MigrateError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| MigrateError::Io { what, path, source }
    };
    let source = crate::open_data_dir(from)?;
    // Where the snapshot is staged: beside the target's database file, or (PostgreSQL) in
    // the source directory until its rows are copied.
    let (staged, pg) = match &to.meta {
        MetaLocation::Sqlite(dir) => {
            let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
            if same(dir, from) {
                return Err(MigrateError::SameDirectory(dir.clone()));
            }
            let db = dir.join("meta.db");
            if db.exists() {
                return Err(MigrateError::TargetExists(db));
            }
            crate::prepare_data_dir(dir)?;
            (dir.join("meta.db.migrating"), Target::Dir(dir.clone()))
        }
        MetaLocation::Postgres(url) => {
            // (the schema is made here if there is none; one that holds anything is refused)
            let pool = crate::store::sql::postgres::PgPool::connect(url)?;
            if !pool.is_empty()? {
                return Err(MigrateError::TargetExists(PathBuf::from(to.meta.to_string())));
            }
            // (from now on the empty schema is the source's copy: its block store is the same)
            pool.adopt_engine_id(source.engine_id())?;
            let tmp = tempfile::Builder::new()
                .prefix(".migrate-")
                .tempdir_in(from)
                .map_err(io("cannot make a staging directory in", from))?;
            (tmp.path().join("snapshot.db"), Target::Pg(tmp, Box::new(pool)))
        }
    };
    match std::fs::remove_file(&staged) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot remove", &staged)(e)),
    }
    source.snapshot(&staged)?;

    let target: Arc<dyn BlockStore> = crate::open_blocks(&to.blocks)?;
    block_on(target.claim(source.engine_id()))?;
    let total = crate::store::sql::sqlite::held_block_count(&staged)?;
    let mut report = MigrateReport {
        blocks: total,
        meta: to.meta.to_string(),
        blocks_at: to.blocks.to_string(),
        ..Default::default()
    };
    let mut after = None;
    loop {
        let page = crate::store::sql::sqlite::held_blocks(&staged, after.as_ref(), PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        for (hash, size) in page {
            let failed = |source| MigrateError::Block {
                hash: hash.to_hex(),
                source,
            };
            if block_on(target.stored_len(&hash)).map_err(failed)? == Some(size) {
                report.already_there += 1;
            } else {
                let data = block_on(source.read_block(&hash)).map_err(failed)?;
                let put = block_on(target.put(data.clone().into())).map_err(failed)?;
                // (read back through the store's own check: its digest, or sha256)
                let back = block_on(target.get(&put)).map_err(failed)?;
                if put != hash || back != data {
                    return Err(MigrateError::Mismatch(hash.to_hex()));
                }
                report.copied += 1;
                report.bytes_copied += data.len() as u64;
            }
            progress(report.copied + report.already_there, total);
        }
    }
    // The snapshot becomes the target's database only now that every block it names is there.
    match pg {
        Target::Pg(_staging, pool) => {
            report.rows = pool.import_sqlite(&staged)?;
        }
        Target::Dir(dir) => {
            let db = dir.join("meta.db");
            std::fs::File::open(&staged)
                .and_then(|f| f.sync_all())
                .map_err(io("cannot sync", &staged))?;
            std::fs::rename(&staged, &db).map_err(io("cannot rename into place", &db))?;
            std::fs::File::open(&dir)
                .and_then(|f| f.sync_all())
                .map_err(io("cannot sync", &dir))?;
        }
    }
    // Opens as a server would (schema, block store mark).
    let opened = crate::open_storage(to)?;
    block_on(opened.claim_blocks())?;
    block_on(opened.health())?;
    Ok(report)
}
