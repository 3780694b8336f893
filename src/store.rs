//! The storage engine behind `imgfs serve`: whole operations (one transaction each) that the
//! HTTP layer calls, and the types it speaks. No HTTP here, and no SQL or file paths above
//! the two traits, so a networked metadata database and a distributed block store can back
//! the same server (DESIGN.md §3).
//!
//! [`Engine`] is a [`MetaStore`] (the metadata: [`sql::SqlStore`] over SQLite or PostgreSQL)
//! and a [`blocks::BlockStore`] (files, [`blocks::FsBlocks`], or an S3 bucket, [`s3`]) put
//! together: it owns the order between them (a block durable before anything names it) and
//! the collector's.

pub mod access;
pub mod blocks;
mod engine;
pub mod location;
mod meta;
pub mod s3;
pub mod sql;

pub use engine::Engine;
pub use meta::{BlockCheck, BlockRemove, LazyHash, MetaStore};

use crate::api::hashing::{merkle, BlockHash};
use crate::api::pithos::Sharing;
use crate::api::timefmt::Micros;
use std::collections::BTreeMap;

pub type Meta = BTreeMap<String, String>;

/// The metadata domain of user `X-*-Meta-*` items.
pub const DOMAIN_PITHOS: &str = "pithos";
/// The metadata domain of image registry items (invisible to the object API).
pub const DOMAIN_PLANKTON: &str = "plankton";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Container does not exist")]
    ContainerNotFound,
    #[error("Container is not empty")]
    ContainerNotEmpty,
    #[error("Object does not exist")]
    ObjectNotFound,
    #[error("Version does not exist")]
    VersionNotFound,
    /// The permission rule ([`access`]) refused (also where the object does not exist, so
    /// that the answer says nothing of another account's names).
    #[error("Not allowed")]
    Forbidden,
    #[error("User {0} already exists")]
    UserExists(String),
    #[error("{} blocks are missing", .0.len())]
    MissingBlocks(Vec<BlockHash>),
    #[error("Quota exceeded")]
    QuotaExceeded,
    #[error("{0}")]
    PreconditionFailed(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("block {0} is corrupt (quarantined)")]
    CorruptBlock(BlockHash),
    #[error("block {0} is missing from the block store")]
    LostBlock(BlockHash),
    /// A backend that does not answer (an S3 endpoint down, a network error, a timeout):
    /// the client should come back later (503 with `Retry-After`), not think it made a mistake.
    #[error("{0}")]
    Unavailable(String),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata database error: {0}")]
    Db(String),
    /// A query that must find one row found none (inside the engine: [`sql::db`]'s
    /// `.optional()` turns it into `None`).
    #[error("metadata database error: an expected row is missing")]
    NoRow,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The runtime PostgreSQL's client runs on, called from the engine's blocking threads (and
/// the command line's async calls): two threads are plenty for I/O; never dropped (a runtime
/// may not be dropped from async code, and the engine lives as long as the process).
pub(crate) fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("imgfs-io")
            .enable_all()
            .build()
            .expect("a tokio runtime for the storage clients")
    })
}

/// Waits for `f` from synchronous code — the engine's transactions, which run on blocking
/// threads and await the block store inside them, and the command line: on the runtime the
/// thread belongs to, or on [`io_runtime`] where there is none (or only a single-threaded one,
/// which a blocking wait would stall).
pub fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| h.block_on(f)),
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| io_runtime().block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
        Err(_) => io_runtime().block_on(f),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub uuid: String,
    pub name: String,
}

/// How long a token works unless its issuer says otherwise: Astakos's default, 30 days.
pub const DEFAULT_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// A valid token's user and when the token stops working.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub user: User,
    pub expires: Micros,
}

/// What a token is worth.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenCheck {
    Valid(Session),
    /// A token this server issued, past its expiry.
    Expired,
    /// Never issued here, or revoked.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    Auto,
    None,
}

impl Versioning {
    pub fn as_str(&self) -> &'static str {
        match self {
            Versioning::Auto => "auto",
            Versioning::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Versioning> {
        match s {
            "auto" => Some(Versioning::Auto),
            "none" => Some(Versioning::None),
            _ => None,
        }
    }
}

/// A change of container policy: `Some(None)` resets a key to its default.
#[derive(Debug, Clone, Default)]
pub struct PolicyUpdate {
    pub versioning: Option<Option<Versioning>>,
    pub quota: Option<Option<u64>>,
}

/// How a metadata write applies: replace the whole set, or merge (an empty value deletes).
#[derive(Debug, Clone)]
pub enum MetaUpdate {
    Replace(Meta),
    Merge(Meta),
}

impl MetaUpdate {
    pub fn apply(&self, current: &Meta) -> Meta {
        match self {
            MetaUpdate::Replace(m) => m
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            MetaUpdate::Merge(m) => {
                let mut out = current.clone();
                for (k, v) in m {
                    if v.is_empty() {
                        out.remove(k);
                    } else {
                        out.insert(k.clone(), v.clone());
                    }
                }
                out
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AccountInfo {
    pub container_count: u64,
    pub bytes: u64,
    pub modified: Micros,
    pub quota: u64,
    pub meta: Meta,
    pub groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub name: String,
    pub count: u64,
    pub bytes: u64,
    pub modified: Micros,
    pub versioning: Versioning,
    pub quota: u64,
    pub meta: Meta,
    /// User metadata keys in use by current objects.
    pub object_meta_keys: Vec<String>,
}

/// One version of an object, as stored.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub account: String,
    pub container: String,
    pub name: String,
    pub version: u64,
    pub version_ts: Micros,
    /// The time of the path's latest change (`Last-Modified`).
    pub modified: Micros,
    pub uuid: String,
    pub size: u64,
    pub content_type: String,
    pub merkle: String,
    pub md5: Option<String>,
    pub modified_by: String,
    pub meta: Meta,
    pub image: Meta,
    pub sharing: Option<Sharing>,
    pub public_id: Option<String>,
}

impl ObjectInfo {
    /// The ETag: the MD5 when the data arrived whole (Swift clients check it), else the Merkle
    /// hash (what Pithos reports by default).
    pub fn etag(&self) -> &str {
        self.md5.as_deref().unwrap_or(&self.merkle)
    }

    pub fn is_directory(&self) -> bool {
        crate::api::pithos::is_directory_type(&self.content_type)
    }
}

/// The data of a new version: its blocks and the object attributes that go with it.
#[derive(Debug, Clone)]
pub struct NewObject {
    pub size: u64,
    pub hashes: Vec<BlockHash>,
    pub content_type: String,
    pub md5: Option<String>,
    pub meta: Meta,
    pub modified_by: String,
    /// `Some` sets the path's sharing (empty clears it).
    pub sharing: Option<Sharing>,
    /// `Some` publishes or unpublishes.
    pub public: Option<bool>,
}

impl NewObject {
    pub fn merkle(&self) -> String {
        merkle(&self.hashes).to_hex()
    }
}

/// If-Match / If-None-Match of a write, checked inside its transaction.
#[derive(Debug, Clone, Default)]
pub struct Precondition {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    /// The write applies only if the current version is still this one (read-modify-write).
    pub if_version: Option<u64>,
}

/// Where an object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath {
    pub account: String,
    pub container: String,
    pub name: String,
}

impl ObjectPath {
    pub fn new(account: &str, container: &str, name: &str) -> ObjectPath {
        ObjectPath {
            account: account.into(),
            container: container.into(),
            name: name.into(),
        }
    }
}

/// A server-side copy or move.
#[derive(Debug, Clone)]
pub struct CopySpec {
    pub src: ObjectPath,
    pub src_version: Option<u64>,
    pub dst: ObjectPath,
    pub is_move: bool,
    /// Also copy/move every object under `<src name>/`.
    pub recursive: bool,
    pub content_type: Option<String>,
    /// `Some` replaces the source's user metadata.
    pub meta: Option<MetaUpdate>,
    pub modified_by: String,
    pub sharing: Option<Sharing>,
    pub public: Option<bool>,
    /// Someone other than the source's owner: only what the permission rule lets them read
    /// is copied (each object of a recursive copy on its own), and nothing → `Forbidden`.
    pub reader: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<char>,
    /// `path=` mode: like prefix + `/` delimiter, without virtual subdir entries.
    pub path_mode: bool,
    pub marker: Option<String>,
    pub limit: usize,
    /// Another user than the owner: only what the permission rule lets them read, and no
    /// rolled-up subdirectories.
    pub reader: Option<String>,
    /// Only objects with sharing (`?shared`) / published (`?public`); no subdirectories.
    pub only_shared: bool,
    pub only_public: bool,
}

#[derive(Debug, Clone)]
pub enum Listed {
    Object(Box<ObjectInfo>),
    Subdir(String),
}

/// What one garbage collection gave back.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Another collector held the lease: nothing was done.
    pub skipped: bool,
    /// Uploaded blocks that no version took within the grace period (no longer charged).
    pub uploads_expired: u64,
    /// Blocks nobody held, deleted.
    pub blocks_freed: u64,
    /// Block files the metadata did not know (a crash between write and commit), deleted.
    pub orphans_freed: u64,
    /// Temp files of writes a crash cut, deleted.
    pub temp_files_freed: u64,
    /// Disk bytes of all the files deleted.
    pub bytes_freed: u64,
}
