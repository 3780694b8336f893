//! The storage engine behind `imgfs serve`: a trait of whole operations (one transaction each)
//! that the HTTP layer calls, and the types it speaks. No HTTP here, and no SQL or file paths
//! above this trait, so a networked metadata database and a distributed block store can back
//! the same server (DESIGN.md §3).
//!
//! The engine is [`sql::SqlStore`]: metadata in SQLite or PostgreSQL, blocks in a
//! [`blocks::BlockStore`] (files, [`blocks::FsBlocks`], or an S3 bucket, [`s3`]).

pub mod access;
pub mod blocks;
pub mod location;
pub mod s3;
pub mod sql;

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

/// The runtime the async clients of the backends (S3, PostgreSQL) run on, called from the
/// engine's blocking threads: two threads are plenty for I/O; never dropped (a runtime may
/// not be dropped from async code, and the engine lives as long as the process).
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

/// The metadata and block engine. Every method is one whole operation; implementations make
/// each atomic and durable before returning.
pub trait Store: Send + Sync {
    // Users and tokens.
    /// A new user with a token of [`DEFAULT_TOKEN_LIFETIME`] and the default container.
    fn create_user(&self, name: &str) -> Result<(User, String)>;
    fn list_users(&self) -> Result<Vec<User>>;
    fn check_token(&self, token: &str) -> Result<TokenCheck>;
    /// The user of a valid token (expired, revoked and unknown tokens: none).
    fn authenticate(&self, token: &str) -> Result<Option<User>> {
        Ok(match self.check_token(token)? {
            TokenCheck::Valid(s) => Some(s.user),
            _ => None,
        })
    }
    /// A new token for the user, valid for `lifetime`; with `revoke_others` the user's other
    /// tokens stop working at once. Returns the secret and its expiry.
    fn issue_token(&self, uuid: &str, lifetime: std::time::Duration, revoke_others: bool) -> Result<(String, Micros)>;
    /// Every token of the user stops working; how many were live.
    fn revoke_tokens(&self, uuid: &str) -> Result<u64>;
    fn user_by_uuid(&self, uuid: &str) -> Result<Option<User>>;
    fn user_by_name(&self, name: &str) -> Result<Option<User>>;

    // Accounts.
    fn account_info(&self, account: &str) -> Result<AccountInfo>;
    fn update_account(&self, account: &str, meta: Option<MetaUpdate>, groups: Option<MetaUpdate>) -> Result<()>;
    fn set_account_quota(&self, account: &str, quota: u64) -> Result<()>;

    // Containers.
    fn list_containers(&self, account: &str) -> Result<Vec<ContainerInfo>>;
    fn container_info(&self, account: &str, container: &str) -> Result<ContainerInfo>;
    /// Creates the container, or updates it; true when it was created.
    fn put_container(&self, account: &str, container: &str, policy: &PolicyUpdate, meta: &Meta) -> Result<bool>;
    fn update_container(
        &self,
        account: &str,
        container: &str,
        policy: &PolicyUpdate,
        meta: Option<MetaUpdate>,
    ) -> Result<()>;
    fn delete_container(&self, account: &str, container: &str) -> Result<()>;
    /// Deletes every current object of the container (`DELETE ?delimiter`).
    fn clear_container(&self, account: &str, container: &str, modified_by: &str) -> Result<()>;
    /// `DELETE <container>?until=`: the history of every path up to `until` (versions that
    /// are not current, deletion markers) goes; current versions stay. Their blocks are
    /// given back.
    fn purge_container(&self, account: &str, container: &str, until: Micros) -> Result<()>;
    fn list_objects(&self, account: &str, container: &str, q: &ListQuery) -> Result<Vec<Listed>>;

    // Objects.
    /// The current version, or the given one.
    fn object_info(&self, path: &ObjectPath, version: Option<u64>) -> Result<ObjectInfo>;
    /// The block list of a version.
    fn version_hashes(&self, version: u64) -> Result<Vec<BlockHash>>;
    /// `(version id, time)` of every stored version, oldest first.
    fn list_versions(&self, path: &ObjectPath) -> Result<Vec<(u64, Micros)>>;
    /// Commits a new version; fails with `MissingBlocks` if the block store lacks any block.
    fn put_object(&self, path: &ObjectPath, obj: &NewObject, cond: &Precondition) -> Result<ObjectInfo>;
    fn copy_object(&self, spec: &CopySpec, cond: &Precondition) -> Result<ObjectInfo>;
    /// A new version with the same data and updated user metadata.
    fn update_object_meta(&self, path: &ObjectPath, meta: &MetaUpdate, modified_by: &str) -> Result<ObjectInfo>;
    /// Changes sharing and/or the public flag (no new version).
    fn set_permissions(&self, path: &ObjectPath, sharing: Option<&Sharing>, public: Option<bool>)
        -> Result<ObjectInfo>;
    /// Replaces the image metadata domain (empty = unregistered) in a new version, and the
    /// path's sharing with `sharing` when given, in one transaction.
    fn set_image_meta(
        &self,
        path: &ObjectPath,
        image: &Meta,
        sharing: Option<&Sharing>,
        modified_by: &str,
    ) -> Result<ObjectInfo>;
    fn delete_object(&self, path: &ObjectPath, modified_by: &str, recursive: bool) -> Result<()>;
    /// `DELETE <object>?until=`: as the original, every version of the path up to `until`
    /// goes, the current one too when it is that old (then the name is gone, with its
    /// permissions). A name with neither (never used, or purged) is not found.
    fn purge_object(&self, path: &ObjectPath, until: Micros) -> Result<()>;
    /// The object whose current version has this UUID.
    fn object_by_uuid(&self, uuid: &str) -> Result<Option<ObjectInfo>>;
    /// The object published under this public id.
    fn object_by_public_id(&self, public_id: &str) -> Result<Option<ObjectInfo>>;
    /// The current objects carrying image metadata that `viewer` may see: their own and those
    /// whose own sharing lets them read (shared with them or with everyone); only those named
    /// `name` if given. Costs what it returns.
    fn list_images(&self, viewer: &str, name: Option<&str>) -> Result<Vec<ObjectInfo>>;
    /// What `user` may do with `path` by the permission rule ([`access::decide`]); `None`:
    /// nothing (also when there is no such object or container).
    fn access(&self, user: &str, path: &ObjectPath) -> Result<Option<access::Access>>;
    /// Containers of `account` holding objects with sharing set (and those objects' paths).
    fn shared_paths(&self, account: &str) -> Result<Vec<(String, String, Sharing)>>;
    /// Accounts that share anything with `user` (or with everyone).
    fn accounts_sharing_with(&self, user: &str) -> Result<Vec<String>>;

    // Blocks.
    /// Stores a block that `account` sent; from then on it is present for that account.
    fn put_block(&self, account: &str, data: &[u8]) -> Result<BlockHash>;
    /// The hashes (each once, in the order given) that are not present for `account`: a
    /// block is present for an account that sent it, holds it in an object of its own, or
    /// copied in an object it could read — never merely because another account stored it
    /// (knowing a block's hash must not be enough to read it, nor to learn that it exists).
    fn missing_blocks(&self, account: &str, hashes: &[BlockHash]) -> Result<Vec<BlockHash>>;
    /// A block's stored bytes (trailing NULs trimmed; the caller pads).
    fn read_block(&self, hash: &BlockHash) -> Result<Vec<u8>>;
    /// Length of a block's stored bytes.
    fn block_stored_len(&self, hash: &BlockHash) -> Result<Option<u64>>;

    // Space.
    /// One garbage collection ([`sql`]'s `gc` module says why it never loses data):
    /// uploads no version took within `grace` stop being charged, blocks nobody has held for
    /// `grace` are deleted, and so are stray files older than `grace`. Skipped (and said so)
    /// while another collector runs over the same database.
    fn collect_garbage(&self, grace: std::time::Duration) -> Result<GcReport>;
    /// Whether the engine can serve: the metadata answers a query, the block store its root.
    fn health(&self) -> Result<()>;
    /// Connections of a networked metadata database's pool: (open, idle); `None` if it has none.
    fn db_pool(&self) -> Option<(usize, usize)> {
        None
    }
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
