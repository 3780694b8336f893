//! The filesystem's view of a cloud: a [`Storage`] trait of the object-store operations the
//! filesystem core needs (one error enum for all, mapped to errno in `fs`), and its Pithos+
//! implementation over HTTP ([`pithos::PithosClient`]). The core is generic over the trait, so
//! unit tests run it against an in-memory fake.

pub mod pithos;
pub mod plankton;
pub mod session;
pub mod tls;

use crate::api::hashing::BlockHash;
use crate::api::metafile::Registration;
use crate::api::plankton::Image;
use bytes::Bytes;
use std::future::Future;

/// A failed storage or registry request: what kind of failure (all the filesystem acts on),
/// which request, and what was seen. The core matches on `kind` only; HTTP statuses stay in
/// the client.
#[derive(Debug, thiserror::Error, Clone)]
#[error("{op}: {source}")]
pub struct StorageError {
    pub kind: ErrorKind,
    /// The request (`GET /v1/ACCOUNT/c/o`), or the operation of a storage that is not HTTP.
    pub op: String,
    pub source: Cause,
}

/// What was seen of a failure.
#[derive(Debug, thiserror::Error, Clone)]
pub enum Cause {
    /// The server answered with an error status.
    #[error("{status} {message}")]
    Status { status: u16, message: String },
    /// No answer (after the retries).
    #[error("{0}")]
    Network(String),
    /// The answer did not make sense.
    #[error("unexpected reply: {0}")]
    Protocol(String),
    /// A storage that is not HTTP failed (the core's in-memory fake, `fs/fake.rs`).
    #[error("{0}")]
    Failed(String),
}

/// What went wrong, as the filesystem needs to know it (HTTP statuses stay in the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 401: the token was refused.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 409: the state does not allow it (a container not empty, blocks missing).
    Conflict,
    /// 412: a condition (If-Match and kin) did not hold.
    ConditionFailed,
    /// 413: over quota.
    QuotaExceeded,
    /// 400, 416, 422: the request was refused as malformed.
    Invalid,
    /// 405, 501.
    Unsupported,
    /// No answer, or 5xx, after the retries.
    Unavailable,
    /// An answer that did not make sense.
    Protocol,
}

/// DESIGN.md's statuses as kinds.
fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        412 => ErrorKind::ConditionFailed,
        413 => ErrorKind::QuotaExceeded,
        400 | 416 | 422 => ErrorKind::Invalid,
        405 | 501 => ErrorKind::Unsupported,
        _ => ErrorKind::Unavailable,
    }
}

impl StorageError {
    /// The server refused `method path` with `status`.
    pub fn status(method: &str, path: &str, status: u16, message: impl Into<String>) -> StorageError {
        StorageError {
            kind: kind_of_status(status),
            op: format!("{method} {path}"),
            source: Cause::Status {
                status,
                message: message.into(),
            },
        }
    }

    /// `method path` got no answer.
    pub fn network(method: &str, path: &str, message: impl Into<String>) -> StorageError {
        StorageError {
            kind: ErrorKind::Unavailable,
            op: format!("{method} {path}"),
            source: Cause::Network(message.into()),
        }
    }

    /// `method path` got an answer that makes no sense.
    pub fn protocol(method: &str, path: &str, message: impl ToString) -> StorageError {
        StorageError {
            kind: ErrorKind::Protocol,
            op: format!("{method} {path}"),
            source: Cause::Protocol(message.to_string()),
        }
    }

    /// A storage that is not HTTP failed `op` so.
    pub fn failed(op: &str, kind: ErrorKind, message: impl Into<String>) -> StorageError {
        StorageError {
            kind,
            op: op.to_string(),
            source: Cause::Failed(format!("{kind:?}: {}", message.into())),
        }
    }

    /// The status the server answered, if it answered one.
    pub fn http_status(&self) -> Option<u16> {
        match self.source {
            Cause::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// An error with its causes (reqwest's own message leaves out why a connection failed).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let next = c.to_string();
        // (io::Error shows its inner error's message, then hands out the inner's source)
        if !s.ends_with(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        src = c.source();
    }
    s
}

/// What a listing or HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectStat {
    pub name: String,
    pub size: u64,
    pub content_type: String,
    pub version: u64,
    /// Microseconds since the epoch.
    pub mtime: i64,
    pub hash: String,
}

impl ObjectStat {
    pub fn is_dir(&self) -> bool {
        crate::api::pithos::is_directory_type(&self.content_type)
    }
}

/// Everything a HEAD says about an object (or one version of it): what the `user.pithos.*`
/// and `user.meta.*` attributes show.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectInfo {
    pub stat: ObjectStat,
    pub uuid: String,
    /// RFC 1123, as the server sent it.
    pub version_timestamp: String,
    pub modified_by: String,
    /// `read=a,b; write=c`, empty when not shared.
    pub sharing: String,
    /// The public URL, empty when not published.
    pub public: String,
    /// User metadata, keys in lower case.
    pub meta: Vec<(String, String)>,
}

/// A change to an object's metadata or permissions (POST `?update`): only what is given changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectUpdate {
    /// User metadata keys to set (`Some`) or delete (`None`).
    pub meta: Vec<(String, Option<String>)>,
    pub sharing: Option<String>,
    pub public: Option<bool>,
}

/// A container's policy and usage: what its directory's `user.pithos.*` attributes show.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerInfo {
    /// `auto` or `none`.
    pub versioning: String,
    /// Bytes, 0 = unlimited.
    pub quota: u64,
    pub block_size: u64,
    pub object_count: u64,
    pub bytes_used: u64,
}

/// One entry of a container listing with `delimiter=/`.
#[derive(Debug, Clone, PartialEq)]
pub enum Listed {
    Object(ObjectStat),
    /// A prefix ending in `/` with objects under it.
    Prefix(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStat {
    pub name: String,
    pub bytes: u64,
    pub mtime: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AccountStat {
    pub bytes_used: u64,
    /// 0 = unlimited.
    pub quota: u64,
}

/// The result of committing a hashmap.
#[derive(Debug, Clone, PartialEq)]
pub enum PutOutcome {
    Done { version: u64 },
    Missing(Vec<BlockHash>),
}

/// The object-store operations of the filesystem, relative to the mounted account.
pub trait Storage: Send + Sync + 'static {
    fn list_containers(&self) -> impl Future<Output = Result<Vec<ContainerStat>>> + Send;
    fn account_stat(&self) -> impl Future<Output = Result<AccountStat>> + Send;
    fn create_container(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    fn delete_container(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    fn container_exists(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Children of `prefix` (which is empty or ends in `/`), names > `marker`, at most `limit`.
    fn list(
        &self,
        container: &str,
        prefix: &str,
        marker: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Listed>>> + Send;
    /// Whether anything exists under `prefix` (which ends in `/`).
    fn has_children(&self, container: &str, prefix: &str) -> impl Future<Output = Result<bool>> + Send;
    fn head(&self, container: &str, name: &str) -> impl Future<Output = Result<Option<ObjectStat>>> + Send;
    /// `(size, block hashes)` of a version.
    fn hashmap(
        &self,
        container: &str,
        name: &str,
        version: u64,
    ) -> impl Future<Output = Result<(u64, Vec<BlockHash>)>> + Send;
    /// Bytes `start..start+len` of a version.
    fn read(
        &self,
        container: &str,
        name: &str,
        version: u64,
        start: u64,
        len: u64,
    ) -> impl Future<Output = Result<Bytes>> + Send;
    /// A new version of these blocks with this user metadata (a PUT replaces the object's
    /// `X-Object-Meta-*`, so what is to stay is sent again).
    fn put_hashmap(
        &self,
        container: &str,
        name: &str,
        size: u64,
        hashes: &[BlockHash],
        content_type: &str,
        meta: &[(String, String)],
    ) -> impl Future<Output = Result<PutOutcome>> + Send;
    fn upload_block(&self, container: &str, data: Bytes) -> impl Future<Output = Result<BlockHash>> + Send;
    /// A 0-byte object (an empty file or a directory marker).
    fn put_empty(&self, container: &str, name: &str, content_type: &str) -> impl Future<Output = Result<u64>> + Send;
    fn delete(&self, container: &str, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Server-side copy of version `version` of `src` onto `dst`; returns the new version.
    fn copy(
        &self,
        src_container: &str,
        src: &str,
        version: u64,
        dst_container: &str,
        dst: &str,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// What HEAD says about `name` (`version` None: the current one); `None` if it does not exist.
    fn object_info(
        &self,
        container: &str,
        name: &str,
        version: Option<u64>,
    ) -> impl Future<Output = Result<Option<ObjectInfo>>> + Send;
    /// Changes user metadata, sharing or the public flag, leaving the rest as it is.
    fn update_object(
        &self,
        container: &str,
        name: &str,
        update: &ObjectUpdate,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The object's versions, oldest first, as `(version id, microseconds since the epoch)`.
    fn versions(&self, container: &str, name: &str) -> impl Future<Output = Result<Vec<(u64, i64)>>> + Send;
    fn container_info(&self, container: &str) -> impl Future<Output = Result<ContainerInfo>> + Send;
    /// Changes a container's versioning policy (`auto`/`none`) or quota, whichever is given.
    fn set_container_policy(
        &self,
        container: &str,
        versioning: Option<&str>,
        quota: Option<u64>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Server-side move; `recursive` also moves everything under `src/`.
    fn rename(
        &self,
        src_container: &str,
        src: &str,
        dst_container: &str,
        dst: &str,
        recursive: bool,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// The image-registry operations the filesystem needs to keep an object's registration in
/// step with its `.meta` file. Images are the account's own objects, named by container and
/// path; the image id is the object's UUID.
pub trait Registry: Send + Sync + 'static {
    /// The registration of `container/name`, or `None` if it is not an image.
    fn image_of(&self, container: &str, name: &str) -> impl Future<Output = Result<Option<Image>>> + Send;
    /// Registers (or re-registers, replacing everything) `container/name` as `reg` says;
    /// without a name in `reg`, the object's path names the image.
    fn register(&self, container: &str, name: &str, reg: &Registration) -> impl Future<Output = Result<Image>> + Send;
    /// Unregisters an image (the object stays); an id that is no image is not an error.
    fn unregister(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Replaces an image's settable metadata with `img`'s (name, formats, status, public
    /// flag, the whole property set), as kamaki's `image modify` does.
    fn update(&self, img: &Image) -> impl Future<Output = Result<Image>> + Send;
    /// The account's own images, as `(container, path, image)`.
    fn own_images(&self) -> impl Future<Output = Result<Vec<(String, String, Image)>>> + Send;
    /// Every image the account can see: its own, public ones, ones shared with it.
    fn visible_images(&self) -> impl Future<Output = Result<Vec<Image>>> + Send;
}
