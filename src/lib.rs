//! imgfs: manage cloud disk images with ordinary file tools. This crate holds the shared wire
//! formats ([`api`]), the storage engine ([`store`]), the Synnefo-compatible server
//! ([`server`]), the filesystem's client ([`client`]) and core ([`fs`]), and the mount
//! command ([`mount`]); the `imgfs` binary wires them to a command line.

pub mod api;
pub mod client;
pub mod fs;
pub mod migrate;
pub mod mount;
pub mod server;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data directory {dir} is not usable: {source}")]
    Unusable { dir: PathBuf, source: std::io::Error },
    #[error("cannot open the metadata database in {dir}: {source}")]
    Store { dir: PathBuf, source: store::StoreError },
    #[error("cannot open the block store {location}: {source}")]
    Blocks {
        location: String,
        source: store::StoreError,
    },
}

/// Opens (creating if needed) the engine the locations name: the metadata database (SQLite
/// in its directory, `meta.db`, or PostgreSQL) over block files or an S3 bucket.
pub fn open_storage(at: &store::location::Storage) -> Result<Arc<store::Engine<store::sql::SqlStore>>, DataDirError> {
    use store::location::MetaLocation;
    let dir = match &at.meta {
        MetaLocation::Sqlite(dir) => dir,
        MetaLocation::Postgres(url) => {
            let blocks = open_blocks(&at.blocks)?;
            let named = PathBuf::from(at.meta.to_string());
            let s = store::sql::SqlStore::open_postgres(url).map_err(|source| DataDirError::Store {
                dir: named.clone(),
                source,
            })?;
            return Ok(Arc::new(store::Engine::new(Arc::new(s), blocks)));
        }
    };
    prepare_data_dir(dir)?;
    let blocks = open_blocks(&at.blocks)?;
    // (old schemas' migrations ask the blocks' stored sizes)
    let size_of = |h: &api::hashing::BlockHash| store::block_on(blocks.stored_len(h));
    let s = store::sql::SqlStore::open(&dir.join("meta.db"), &size_of).map_err(|source| DataDirError::Store {
        dir: dir.to_path_buf(),
        source,
    })?;
    let s = store::Engine::new(Arc::new(s), blocks);
    // meta.db's name (SQLite makes its WAL's durable, not the database file's)
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|source| DataDirError::Unusable {
            dir: dir.to_path_buf(),
            source,
        })?;
    Ok(Arc::new(s))
}

/// The block store a location names (made if it is a new directory; not contacted if S3).
pub fn open_blocks(at: &store::location::BlocksLocation) -> Result<Arc<dyn store::blocks::BlockStore>, DataDirError> {
    use store::location::BlocksLocation;
    let blocks_err = |source| DataDirError::Blocks {
        location: at.to_string(),
        source,
    };
    Ok(match at {
        BlocksLocation::Dir(d) => Arc::new(store::blocks::FsBlocks::open(d).map_err(blocks_err)?),
        BlocksLocation::S3(l) => Arc::new(store::s3::S3Blocks::open(l.clone()).map_err(blocks_err)?),
    })
}

/// The single-machine engine in `dir`: `meta.db` and `blocks/` (`--data DIR`).
pub fn open_data_dir(dir: &Path) -> Result<Arc<store::Engine<store::sql::SqlStore>>, DataDirError> {
    open_storage(&store::location::Storage {
        meta: store::location::MetaLocation::Sqlite(dir.to_path_buf()),
        blocks: store::location::BlocksLocation::Dir(dir.join("blocks")),
    })
}

/// The metadata directory made (durably), private, and proven writable.
pub(crate) fn prepare_data_dir(dir: &Path) -> Result<(), DataDirError> {
    let unusable = |source| DataDirError::Unusable {
        dir: dir.to_path_buf(),
        source,
    };
    let existed = dir.is_dir();
    std::fs::create_dir_all(dir).map_err(unusable)?;
    if !existed {
        // (a new directory's name is durable once its parent is fsynced)
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(unusable)?;
        }
    }
    // Other people's private images live here: no other local user may even look inside
    // (also for a directory an older version left 0755; what it holds is then out of reach).
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).map_err(unusable)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(unusable)?;
            tracing::info!(dir = %dir.display(), "data directory made private (0700, was {mode:o})");
        }
    }
    // Writable, and on a file system that takes files: found now rather than at the first PUT.
    let probe = dir.join(".imgfs-probe");
    std::fs::write(&probe, b"ok").map_err(unusable)?;
    std::fs::remove_file(&probe).map_err(unusable)?;
    Ok(())
}
