//! [`MetaStore`] for [`SqlStore`]: each operation's transaction runs on the blocking threads
//! (rusqlite is synchronous, and the engine's SQL is written once for both databases over a
//! synchronous face, `db.rs`), so the async workers never wait on a database. Arguments are
//! copied into the blocking task (not a hashmap's hashes: those are given, or shared); what the engine runs inside a transaction (a block's
//! check, a block's removal) is awaited there, on that thread.

use super::SqlStore;
use crate::api::hashing::BlockHash;
use crate::api::pithos::Sharing;
use crate::api::timefmt::Micros;
use crate::store::meta::{BlockCheck, BlockRemove, LazyHash};
use crate::store::*;
use std::sync::Arc;
use std::time::Duration;

impl SqlStore {
    /// Runs `f` over a clone of this store on the blocking threads.
    async fn off<T: Send + 'static>(&self, f: impl FnOnce(&SqlStore) -> Result<T> + Send + 'static) -> Result<T> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || f(&s))
            .await
            .map_err(|e| StoreError::Db(format!("a metadata task failed: {e}")))?
    }
}

/// A block's removal as the synchronous transaction code calls it.
fn removing(remove: &BlockRemove) -> impl FnMut(&BlockHash) -> Result<bool> + '_ {
    move |h| crate::store::block_on(remove(*h))
}

#[async_trait::async_trait]
impl MetaStore for SqlStore {
    async fn create_user(&self, name: &str) -> Result<(User, String)> {
        let name = name.to_owned();
        self.off(move |s| s.create_user(&name)).await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.off(|s| s.list_users()).await
    }

    async fn check_token(&self, token: &str) -> Result<TokenCheck> {
        let token = token.to_owned();
        self.off(move |s| s.check_token(&token)).await
    }

    async fn issue_token(&self, uuid: &str, lifetime: Duration, revoke_others: bool) -> Result<(String, Micros)> {
        let uuid = uuid.to_owned();
        self.off(move |s| s.issue_token(&uuid, lifetime, revoke_others)).await
    }

    async fn revoke_tokens(&self, uuid: &str) -> Result<u64> {
        let uuid = uuid.to_owned();
        self.off(move |s| s.revoke_tokens(&uuid)).await
    }

    async fn user_by_uuid(&self, uuid: &str) -> Result<Option<User>> {
        let uuid = uuid.to_owned();
        self.off(move |s| s.user_by_uuid(&uuid)).await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let name = name.to_owned();
        self.off(move |s| s.user_by_name(&name)).await
    }

    async fn account_info(&self, account: &str) -> Result<AccountInfo> {
        let account = account.to_owned();
        self.off(move |s| s.account_info(&account)).await
    }

    async fn update_account(&self, account: &str, meta: Option<MetaUpdate>, groups: Option<MetaUpdate>) -> Result<()> {
        let account = account.to_owned();
        self.off(move |s| s.update_account(&account, meta, groups)).await
    }

    async fn set_account_quota(&self, account: &str, quota: u64) -> Result<()> {
        let account = account.to_owned();
        self.off(move |s| s.set_account_quota(&account, quota)).await
    }

    async fn list_containers(&self, account: &str) -> Result<Vec<ContainerInfo>> {
        let account = account.to_owned();
        self.off(move |s| s.list_containers(&account)).await
    }

    async fn container_info(&self, account: &str, container: &str) -> Result<ContainerInfo> {
        let (account, container) = (account.to_owned(), container.to_owned());
        self.off(move |s| s.container_info(&account, &container)).await
    }

    async fn put_container(&self, account: &str, container: &str, policy: &PolicyUpdate, meta: &Meta) -> Result<bool> {
        let (account, container) = (account.to_owned(), container.to_owned());
        let (policy, meta) = (policy.clone(), meta.clone());
        self.off(move |s| s.put_container(&account, &container, &policy, &meta))
            .await
    }

    async fn update_container(
        &self,
        account: &str,
        container: &str,
        policy: &PolicyUpdate,
        meta: Option<MetaUpdate>,
    ) -> Result<()> {
        let (account, container, policy) = (account.to_owned(), container.to_owned(), policy.clone());
        self.off(move |s| s.update_container(&account, &container, &policy, meta))
            .await
    }

    async fn delete_container(&self, account: &str, container: &str) -> Result<()> {
        let (account, container) = (account.to_owned(), container.to_owned());
        self.off(move |s| s.delete_container(&account, &container)).await
    }

    async fn clear_container(&self, account: &str, container: &str, modified_by: &str) -> Result<()> {
        let (account, container, by) = (account.to_owned(), container.to_owned(), modified_by.to_owned());
        self.off(move |s| s.clear_container(&account, &container, &by)).await
    }

    async fn purge_container(&self, account: &str, container: &str, until: Micros) -> Result<()> {
        let (account, container) = (account.to_owned(), container.to_owned());
        self.off(move |s| s.purge_container(&account, &container, until)).await
    }

    async fn list_objects(&self, account: &str, container: &str, q: &ListQuery) -> Result<Vec<Listed>> {
        let (account, container, q) = (account.to_owned(), container.to_owned(), q.clone());
        self.off(move |s| s.list_objects(&account, &container, &q)).await
    }

    async fn object_info(&self, path: &ObjectPath, version: Option<u64>) -> Result<ObjectInfo> {
        let path = path.clone();
        self.off(move |s| s.object_info(&path, version)).await
    }

    async fn version_hashes(&self, version: u64) -> Result<Vec<BlockHash>> {
        self.off(move |s| s.version_hashes(version)).await
    }

    async fn list_versions(&self, path: &ObjectPath) -> Result<Vec<(u64, Micros)>> {
        let path = path.clone();
        self.off(move |s| s.list_versions(&path)).await
    }

    async fn put_object(&self, path: &ObjectPath, obj: NewObject, cond: &Precondition) -> Result<ObjectInfo> {
        let (path, cond) = (path.clone(), cond.clone());
        self.off(move |s| s.put_object(&path, &obj, &cond)).await
    }

    async fn copy_object(&self, spec: &CopySpec, cond: &Precondition) -> Result<ObjectInfo> {
        let (spec, cond) = (spec.clone(), cond.clone());
        self.off(move |s| s.copy_object(&spec, &cond)).await
    }

    async fn update_object_meta(&self, path: &ObjectPath, meta: &MetaUpdate, modified_by: &str) -> Result<ObjectInfo> {
        let (path, meta, by) = (path.clone(), meta.clone(), modified_by.to_owned());
        self.off(move |s| s.update_object_meta(&path, &meta, &by)).await
    }

    async fn set_permissions(
        &self,
        path: &ObjectPath,
        sharing: Option<&Sharing>,
        public: Option<bool>,
    ) -> Result<ObjectInfo> {
        let (path, sharing) = (path.clone(), sharing.cloned());
        self.off(move |s| s.set_permissions(&path, sharing.as_ref(), public))
            .await
    }

    async fn set_image_meta(
        &self,
        path: &ObjectPath,
        image: &Meta,
        sharing: Option<&Sharing>,
        modified_by: &str,
    ) -> Result<ObjectInfo> {
        let (path, image, sharing, by) = (path.clone(), image.clone(), sharing.cloned(), modified_by.to_owned());
        self.off(move |s| s.set_image_meta(&path, &image, sharing.as_ref(), &by))
            .await
    }

    async fn delete_object(&self, path: &ObjectPath, modified_by: &str, recursive: bool) -> Result<()> {
        let (path, by) = (path.clone(), modified_by.to_owned());
        self.off(move |s| s.delete_object(&path, &by, recursive)).await
    }

    async fn purge_object(&self, path: &ObjectPath, until: Micros) -> Result<()> {
        let path = path.clone();
        self.off(move |s| s.purge_object(&path, until)).await
    }

    async fn object_by_uuid(&self, uuid: &str) -> Result<Option<ObjectInfo>> {
        let uuid = uuid.to_owned();
        self.off(move |s| s.object_by_uuid(&uuid)).await
    }

    async fn object_by_public_id(&self, public_id: &str) -> Result<Option<ObjectInfo>> {
        let id = public_id.to_owned();
        self.off(move |s| s.object_by_public_id(&id)).await
    }

    async fn list_images(&self, viewer: &str, name: Option<&str>) -> Result<Vec<ObjectInfo>> {
        let (viewer, name) = (viewer.to_owned(), name.map(str::to_owned));
        self.off(move |s| s.list_images(&viewer, name.as_deref())).await
    }

    async fn access(&self, user: &str, path: &ObjectPath) -> Result<Option<access::Access>> {
        let (user, path) = (user.to_owned(), path.clone());
        self.off(move |s| s.access(&user, &path)).await
    }

    async fn shared_paths(&self, account: &str) -> Result<Vec<(String, String, Sharing)>> {
        let account = account.to_owned();
        self.off(move |s| s.shared_paths(&account)).await
    }

    async fn accounts_sharing_with(&self, user: &str) -> Result<Vec<String>> {
        let user = user.to_owned();
        self.off(move |s| s.accounts_sharing_with(&user)).await
    }

    async fn missing_blocks(&self, account: &str, hashes: Arc<Vec<BlockHash>>) -> Result<Vec<BlockHash>> {
        let account = account.to_owned();
        self.off(move |s| s.missing_blocks(&account, &hashes)).await
    }

    async fn check_upload(&self, account: &str, size: u64, hash: LazyHash) -> Result<()> {
        let account = account.to_owned();
        self.off(move |s| s.check_upload(&account, size, &hash)).await
    }

    async fn block_sent(&self, account: &str, hash: &BlockHash, size: u64, verify: BlockCheck) -> Result<()> {
        let (account, hash) = (account.to_owned(), *hash);
        self.off(move |s| s.block_sent(&account, &hash, size, &mut || crate::store::block_on(verify())))
            .await
    }

    async fn block_lost(&self, hash: &BlockHash) -> Result<()> {
        let hash = *hash;
        self.off(move |s| s.block_lost(&hash)).await
    }

    fn engine_id(&self) -> &str {
        &self.id
    }

    async fn gc_take_lease(&self, me: &str) -> Result<bool> {
        let me = me.to_owned();
        self.off(move |s| s.gc_take_lease(&me)).await
    }

    async fn gc_drop_lease(&self, me: &str) -> Result<()> {
        let me = me.to_owned();
        self.off(move |s| s.gc_drop_lease(&me)).await
    }

    async fn gc_expire(&self, grace: Duration, me: &str) -> Result<u64> {
        let me = me.to_owned();
        self.off(move |s| s.gc_expire(grace, &me)).await
    }

    async fn gc_free(&self, grace: Duration, me: &str, remove: BlockRemove) -> Result<(u64, u64)> {
        let me = me.to_owned();
        self.off(move |s| {
            let mut remove = removing(&remove);
            s.gc_free(grace, &me, &mut |h| remove(h).map(|_| ()))
        })
        .await
    }

    async fn gc_forget_strays(&self, found: Vec<(BlockHash, u64)>, remove: BlockRemove) -> Result<(u64, u64)> {
        self.off(move |s| s.gc_forget_strays(&found, &mut removing(&remove)))
            .await
    }

    async fn health(&self) -> Result<()> {
        self.off(|s| s.health()).await
    }

    fn db_pool(&self) -> Option<(usize, usize)> {
        SqlStore::db_pool(self)
    }
}
