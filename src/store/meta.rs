//! The metadata half of the engine, behind one trait: paths, versions, attributes, policies,
//! users and tokens, images, and which account holds which block. The block bytes are the
//! [`super::blocks::BlockStore`]'s; [`super::Engine`] puts the two together and owns what
//! must hold whatever is plugged in (blocks durable before anything names them, the
//! collector's order). [`super::sql::SqlStore`] implements it over SQLite and PostgreSQL.

use super::*;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// What the engine runs inside a metadata transaction against the block store: it is handed
/// from the engine (which owns the block store) to the metadata (which owns the transaction).
pub type BlockCheck = Box<dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync>;
/// Deletes a block's bytes (true: they were there), run by the metadata inside the
/// transaction that forgets the block.
pub type BlockRemove = Arc<dyn Fn(BlockHash) -> BoxFuture<'static, Result<bool>> + Send + Sync>;
/// A block's hash, computed only if it is needed.
pub type LazyHash = Box<dyn Fn() -> BlockHash + Send + Sync>;

/// The metadata of an engine: everything but the block bytes. Every method is one whole
/// operation; implementations make each atomic and durable before returning. Async, so that
/// a metadata database reached over the network can be waited on without a thread
/// ([`super::sql::SqlStore`] runs its transactions on the blocking threads).
#[async_trait::async_trait]
pub trait MetaStore: Send + Sync {
    // Users and tokens.
    /// A new user with a token of [`DEFAULT_TOKEN_LIFETIME`] and the default container.
    async fn create_user(&self, name: &str) -> Result<(User, String)>;
    async fn list_users(&self) -> Result<Vec<User>>;
    async fn check_token(&self, token: &str) -> Result<TokenCheck>;
    /// The user of a valid token (expired, revoked and unknown tokens: none).
    async fn authenticate(&self, token: &str) -> Result<Option<User>> {
        Ok(match self.check_token(token).await? {
            TokenCheck::Valid(s) => Some(s.user),
            _ => None,
        })
    }
    /// A new token for the user, valid for `lifetime`; with `revoke_others` the user's other
    /// tokens stop working at once. Returns the secret and its expiry.
    async fn issue_token(
        &self,
        uuid: &str,
        lifetime: std::time::Duration,
        revoke_others: bool,
    ) -> Result<(String, Micros)>;
    /// Every token of the user stops working; how many were live.
    async fn revoke_tokens(&self, uuid: &str) -> Result<u64>;
    async fn user_by_uuid(&self, uuid: &str) -> Result<Option<User>>;
    async fn user_by_name(&self, name: &str) -> Result<Option<User>>;

    // Accounts.
    async fn account_info(&self, account: &str) -> Result<AccountInfo>;
    async fn update_account(&self, account: &str, meta: Option<MetaUpdate>, groups: Option<MetaUpdate>) -> Result<()>;
    async fn set_account_quota(&self, account: &str, quota: u64) -> Result<()>;

    // Containers.
    async fn list_containers(&self, account: &str) -> Result<Vec<ContainerInfo>>;
    async fn container_info(&self, account: &str, container: &str) -> Result<ContainerInfo>;
    /// Creates the container, or updates it; true when it was created.
    async fn put_container(&self, account: &str, container: &str, policy: &PolicyUpdate, meta: &Meta) -> Result<bool>;
    async fn update_container(
        &self,
        account: &str,
        container: &str,
        policy: &PolicyUpdate,
        meta: Option<MetaUpdate>,
    ) -> Result<()>;
    async fn delete_container(&self, account: &str, container: &str) -> Result<()>;
    /// Deletes every current object of the container (`DELETE ?delimiter`).
    async fn clear_container(&self, account: &str, container: &str, modified_by: &str) -> Result<()>;
    /// `DELETE <container>?until=`: the history of every path up to `until` (versions that
    /// are not current, deletion markers) goes; current versions stay. Their blocks are
    /// given back.
    async fn purge_container(&self, account: &str, container: &str, until: Micros) -> Result<()>;
    async fn list_objects(&self, account: &str, container: &str, q: &ListQuery) -> Result<Vec<Listed>>;

    // Objects.
    /// The current version, or the given one.
    async fn object_info(&self, path: &ObjectPath, version: Option<u64>) -> Result<ObjectInfo>;
    /// The block list of a version.
    async fn version_hashes(&self, version: u64) -> Result<Vec<BlockHash>>;
    /// `(version id, time)` of every stored version, oldest first.
    async fn list_versions(&self, path: &ObjectPath) -> Result<Vec<(u64, Micros)>>;
    /// Commits a new version; fails with `MissingBlocks` if the block store lacks any block.
    async fn put_object(&self, path: &ObjectPath, obj: NewObject, cond: &Precondition) -> Result<ObjectInfo>;
    async fn copy_object(&self, spec: &CopySpec, cond: &Precondition) -> Result<ObjectInfo>;
    /// A new version with the same data and updated user metadata.
    async fn update_object_meta(&self, path: &ObjectPath, meta: &MetaUpdate, modified_by: &str) -> Result<ObjectInfo>;
    /// Changes sharing and/or the public flag (no new version).
    async fn set_permissions(
        &self,
        path: &ObjectPath,
        sharing: Option<&Sharing>,
        public: Option<bool>,
    ) -> Result<ObjectInfo>;
    /// Replaces the image metadata domain (empty = unregistered) in a new version, and the
    /// path's sharing with `sharing` when given, in one transaction.
    async fn set_image_meta(
        &self,
        path: &ObjectPath,
        image: &Meta,
        sharing: Option<&Sharing>,
        modified_by: &str,
    ) -> Result<ObjectInfo>;
    async fn delete_object(&self, path: &ObjectPath, modified_by: &str, recursive: bool) -> Result<()>;
    /// `DELETE <object>?until=`: as the original, every version of the path up to `until`
    /// goes, the current one too when it is that old (then the name is gone, with its
    /// permissions). A name with neither (never used, or purged) is not found.
    async fn purge_object(&self, path: &ObjectPath, until: Micros) -> Result<()>;
    /// The object whose current version has this UUID.
    async fn object_by_uuid(&self, uuid: &str) -> Result<Option<ObjectInfo>>;
    /// The object published under this public id.
    async fn object_by_public_id(&self, public_id: &str) -> Result<Option<ObjectInfo>>;
    /// The current objects carrying image metadata that `viewer` may see: their own and those
    /// whose own sharing lets them read (shared with them or with everyone); only those named
    /// `name` if given. Costs what it returns.
    async fn list_images(&self, viewer: &str, name: Option<&str>) -> Result<Vec<ObjectInfo>>;
    /// What `user` may do with `path` by the permission rule ([`access::decide`]); `None`:
    /// nothing (also when there is no such object or container).
    async fn access(&self, user: &str, path: &ObjectPath) -> Result<Option<access::Access>>;
    /// Containers of `account` holding objects with sharing set (and those objects' paths).
    async fn shared_paths(&self, account: &str) -> Result<Vec<(String, String, Sharing)>>;
    /// Accounts that share anything with `user` (or with everyone).
    async fn accounts_sharing_with(&self, user: &str) -> Result<Vec<String>>;

    // Block presence and references (the bytes are the engine's).
    /// The hashes (each once, in the order given) that are not present for `account`: a
    /// block is present for an account that sent it, holds it in an object of its own, or
    /// copied in an object it could read — never merely because another account stored it
    /// (knowing a block's hash must not be enough to read it, nor to learn that it exists).
    async fn missing_blocks(&self, account: &str, hashes: Arc<Vec<BlockHash>>) -> Result<Vec<BlockHash>>;
    /// Refuses, before any byte is stored, a block of `size` stored bytes that would take
    /// `account` past its quota (one it already has costs nothing more: `hash` gives its
    /// hash, computed only then).
    async fn check_upload(&self, account: &str, size: u64, hash: LazyHash) -> Result<()>;
    /// `account` sent the block, durable in the block store: present for it from now on, and
    /// charged (refused past the quota). `verify` runs inside the transaction that records
    /// it, once the block's row is had: there the engine checks that the bytes are still
    /// stored (a collector may have deleted them meanwhile) and writes them again.
    async fn block_sent(&self, account: &str, hash: &BlockHash, size: u64, verify: BlockCheck) -> Result<()>;
    /// A read found the block missing or corrupt: nobody may name it until it is sent again.
    async fn block_lost(&self, hash: &BlockHash) -> Result<()>;

    // The collector's part in the metadata ([`super::Engine::collect_garbage`] runs them).
    /// The id the block store is marked with (kept by a migration).
    fn engine_id(&self) -> &str;
    /// Takes (or renews) the one collector's lease of this database; false while another holds it.
    async fn gc_take_lease(&self, me: &str) -> Result<bool>;
    async fn gc_drop_lease(&self, me: &str) -> Result<()>;
    /// Forgets tokens a day past their expiry and stops counting uploads no version took
    /// within `grace`, a batch at a time while the lease of `me` can be renewed. Gives the
    /// uploads expired.
    async fn gc_expire(&self, grace: Duration, me: &str) -> Result<u64>;
    /// Deletes the blocks nobody has held for `grace`, a batch at a time while the lease of
    /// `me` can be renewed: each block's bytes by `remove`, inside the transaction that
    /// deletes its row (so an upload of the same block waits for it, then writes the block
    /// again). Gives (blocks, stored bytes).
    async fn gc_free(&self, grace: Duration, me: &str, remove: BlockRemove) -> Result<(u64, u64)>;
    /// Of these blocks found stored, each one the metadata does not know is deleted by
    /// `remove` (true: it was there), while no upload can record a block. Gives (blocks,
    /// bytes).
    async fn gc_forget_strays(&self, found: Vec<(BlockHash, u64)>, remove: BlockRemove) -> Result<(u64, u64)>;

    /// Whether the metadata answers a query.
    async fn health(&self) -> Result<()>;
    /// Connections of a networked metadata database's pool: (open, idle); `None` if it has none.
    fn db_pool(&self) -> Option<(usize, usize)> {
        None
    }
}
