//! The metadata half of the engine, behind one trait: paths, versions, attributes, policies,
//! users and tokens, images, and which account holds which block. The block bytes are the
//! [`super::blocks::BlockStore`]'s; [`super::Engine`] puts the two together and owns what
//! must hold whatever is plugged in (blocks durable before anything names them, the
//! collector's order). [`super::sql::SqlStore`] implements it over SQLite and PostgreSQL.

use super::*;
use std::time::Duration;

/// The metadata of an engine: everything but the block bytes. Every method is one whole
/// operation; implementations make each atomic and durable before returning.
pub trait MetaStore: Send + Sync {
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

    // Block presence and references (the bytes are the engine's).
    /// The hashes (each once, in the order given) that are not present for `account`: a
    /// block is present for an account that sent it, holds it in an object of its own, or
    /// copied in an object it could read — never merely because another account stored it
    /// (knowing a block's hash must not be enough to read it, nor to learn that it exists).
    fn missing_blocks(&self, account: &str, hashes: &[BlockHash]) -> Result<Vec<BlockHash>>;
    /// Refuses, before any byte is stored, a block of `size` stored bytes that would take
    /// `account` past its quota (one it already has costs nothing more: `hash` gives its
    /// hash, computed only then).
    fn check_upload(&self, account: &str, size: u64, hash: &dyn Fn() -> BlockHash) -> Result<()>;
    /// `account` sent the block, durable in the block store: present for it from now on, and
    /// charged (refused past the quota). `verify` runs inside the transaction that records
    /// it, once the block's row is had: there the engine checks that the bytes are still
    /// stored (a collector may have deleted them meanwhile) and writes them again.
    fn block_sent(
        &self,
        account: &str,
        hash: &BlockHash,
        size: u64,
        verify: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()>;
    /// A read found the block missing or corrupt: nobody may name it until it is sent again.
    fn block_lost(&self, hash: &BlockHash) -> Result<()>;

    // The collector's part in the metadata ([`super::Engine::collect_garbage`] runs them).
    /// The id the block store is marked with (kept by a migration).
    fn engine_id(&self) -> &str;
    /// Takes (or renews) the one collector's lease of this database; false while another holds it.
    fn gc_take_lease(&self, me: &str) -> Result<bool>;
    fn gc_drop_lease(&self, me: &str) -> Result<()>;
    /// Forgets tokens a day past their expiry and stops counting uploads no version took
    /// within `grace`, a batch at a time while `renew` says the lease is still held. Gives
    /// the uploads expired.
    fn gc_expire(&self, grace: Duration, renew: &mut dyn FnMut() -> Result<bool>) -> Result<u64>;
    /// Deletes the blocks nobody has held for `grace`, a batch at a time while `renew` says
    /// the lease is held: each block's bytes by `remove`, inside the transaction that deletes
    /// its row (so an upload of the same block waits for it, then writes the block again).
    /// Gives (blocks, stored bytes).
    fn gc_free(
        &self,
        grace: Duration,
        remove: &mut dyn FnMut(&BlockHash) -> Result<()>,
        renew: &mut dyn FnMut() -> Result<bool>,
    ) -> Result<(u64, u64)>;
    /// Of these blocks found stored, each one the metadata does not know is deleted by
    /// `remove` (true: it was there), while no upload can record a block. Gives (blocks,
    /// bytes).
    fn gc_forget_strays(
        &self,
        found: &[(BlockHash, u64)],
        remove: &mut dyn FnMut(&BlockHash) -> Result<bool>,
    ) -> Result<(u64, u64)>;

    /// Whether the metadata answers a query.
    fn health(&self) -> Result<()>;
    /// Connections of a networked metadata database's pool: (open, idle); `None` if it has none.
    fn db_pool(&self) -> Option<(usize, usize)> {
        None
    }
}
