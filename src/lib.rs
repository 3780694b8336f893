//! imgfs: manage cloud disk images with ordinary file tools. This crate holds the shared wire
//! formats ([`api`]), the storage engine ([`store`]), the Synnefo-compatible server
//! ([`server`]), the filesystem's client ([`client`]) and core ([`fs`]), and the mount
//! command ([`mount`]); the `imgfs` binary wires them to a command line.

pub mod api;
pub mod client;
pub mod fs;
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
}

/// Opens (creating if needed) the embedded engine in `dir`: `meta.db` and `blocks/`.
pub fn open_data_dir(dir: &Path) -> Result<Arc<store::sqlite::SqliteStore>, DataDirError> {
    let unusable = |source| DataDirError::Unusable {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(unusable)?;
    // Writable, and on a file system that takes files: found now rather than at the first PUT.
    let probe = dir.join(".imgfs-probe");
    std::fs::write(&probe, b"ok").map_err(unusable)?;
    std::fs::remove_file(&probe).map_err(unusable)?;
    let store_err = |source| DataDirError::Store {
        dir: dir.to_path_buf(),
        source,
    };
    let blocks = store::blocks::FsBlocks::open(&dir.join("blocks")).map_err(store_err)?;
    let s = store::sqlite::SqliteStore::open(&dir.join("meta.db"), Arc::new(blocks)).map_err(store_err)?;
    Ok(Arc::new(s))
}
