//! Fakes for the core's tests: [`Mem`], an in-memory storage and registry that counts what it
//! is asked, and [`Faulty`], a wrapper around any storage that fails the k-th call of an
//! operation, stalls calls until released, answers short hashmaps or corrupts reads. Core
//! tests run the filesystem over `Faulty<Arc<Mem>>` and turn faults on where they need them
//! (as mountpoint-s3 tests its core over a failure-injecting client).

use crate::api::hashing::{block_hash, block_len, BlockHash};
use crate::api::metafile::Registration;
use crate::api::plankton::Image;
use crate::client::{
    AccountStat, ContainerInfo, ContainerStat, ErrorKind, Listed, ObjectInfo, ObjectStat, ObjectUpdate, PutOutcome,
    Registry, Result, Storage, StorageError,
};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn not_found() -> StorageError {
    StorageError::failed("mem", ErrorKind::NotFound, "no such object")
}

/// `(container, name)` → `(size, hashes, version, content type)`
pub type Objects = BTreeMap<(String, String), (u64, Vec<BlockHash>, u64, String)>;

#[derive(Default)]
pub struct Mem {
    pub objects: Mutex<Objects>,
    pub blocks: Mutex<HashMap<BlockHash, Bytes>>,
    pub version: AtomicU64,
    pub uploads: AtomicUsize,
    pub puts: AtomicUsize,
    pub copies: AtomicUsize,
    pub reads: AtomicUsize,
    /// Every committed version's (size, hashes), so pinned readers can read old versions.
    pub versions: Mutex<HashMap<u64, (u64, Vec<BlockHash>)>>,
    /// `(container, name)` → the registration.
    pub images: Mutex<BTreeMap<(String, String), Image>>,
    /// `(container, name)` → user metadata.
    pub meta: Mutex<HashMap<(String, String), BTreeMap<String, String>>>,
    /// Container → versioning policy.
    pub policies: Mutex<HashMap<String, String>>,
    /// What the account HEAD says.
    pub account: Mutex<AccountStat>,
}

impl Registry for Arc<Mem> {
    async fn image_of(&self, c: &str, name: &str) -> Result<Option<Image>> {
        Ok(self
            .images
            .lock()
            .unwrap()
            .get(&(c.to_string(), name.to_string()))
            .cloned())
    }
    async fn register(&self, c: &str, name: &str, reg: &Registration) -> Result<Image> {
        if !self
            .objects
            .lock()
            .unwrap()
            .contains_key(&(c.to_string(), name.to_string()))
        {
            return Err(not_found());
        }
        let img = Image {
            id: format!("id-{name}"),
            name: reg.name.clone().unwrap_or_else(|| name.to_string()),
            location: format!("pithos://acc/{c}/{name}"),
            owner: "acc".into(),
            size: 0,
            checksum: String::new(),
            disk_format: reg.disk_format.clone().unwrap_or_else(|| "diskdump".into()),
            container_format: reg.container_format.clone().unwrap_or_else(|| "bare".into()),
            status: "AVAILABLE".into(),
            is_public: reg.is_public,
            created_at: 0,
            updated_at: 0,
            properties: reg.properties.clone(),
        };
        self.images
            .lock()
            .unwrap()
            .insert((c.to_string(), name.to_string()), img.clone());
        Ok(img)
    }
    async fn update(&self, img: &Image) -> Result<Image> {
        let mut images = self.images.lock().unwrap();
        let slot = images.values_mut().find(|i| i.id == img.id).ok_or_else(not_found)?;
        *slot = img.clone();
        Ok(img.clone())
    }
    async fn own_images(&self) -> Result<Vec<(String, String, Image)>> {
        Ok(self
            .images
            .lock()
            .unwrap()
            .iter()
            .map(|((c, n), i)| (c.clone(), n.clone(), i.clone()))
            .collect())
    }
    async fn visible_images(&self) -> Result<Vec<Image>> {
        Ok(self.images.lock().unwrap().values().cloned().collect())
    }
    async fn unregister(&self, id: &str) -> Result<()> {
        self.images.lock().unwrap().retain(|_, i| i.id != id);
        Ok(())
    }
}

impl Storage for Arc<Mem> {
    async fn list_containers(&self) -> Result<Vec<ContainerStat>> {
        Ok(vec![ContainerStat {
            name: "c".into(),
            bytes: 0,
            mtime: 0,
        }])
    }
    async fn account_stat(&self) -> Result<AccountStat> {
        Ok(*self.account.lock().unwrap())
    }
    async fn create_container(&self, _: &str) -> Result<()> {
        Ok(())
    }
    async fn delete_container(&self, _: &str) -> Result<()> {
        Ok(())
    }
    async fn container_exists(&self, name: &str) -> Result<bool> {
        Ok(name == "c")
    }
    /// As Pithos lists with `delimiter=/`: the objects right under `prefix` and one
    /// `Prefix` for each deeper level, in name order, after `marker`.
    async fn list(&self, c: &str, prefix: &str, marker: &str, limit: usize) -> Result<Vec<Listed>> {
        use std::ops::Bound::{Excluded, Unbounded};
        let objs = self.objects.lock().unwrap();
        let from = (c.to_string(), marker.max(prefix).to_string());
        let mut out = vec![];
        let mut last_prefix: Option<String> = None;
        for ((oc, n), (size, _, v, ct)) in objs.range((Excluded(from), Unbounded)) {
            if out.len() == limit || oc != c || !n.starts_with(prefix) {
                break;
            }
            let rest = &n[prefix.len()..];
            match rest.find('/') {
                Some(at) => {
                    let p = &n[..prefix.len() + at + 1];
                    if p > marker && last_prefix.as_deref() != Some(p) {
                        last_prefix = Some(p.to_string());
                        out.push(Listed::Prefix(p.to_string()));
                    }
                }
                None => out.push(Listed::Object(ObjectStat {
                    name: n.clone(),
                    size: *size,
                    content_type: ct.clone(),
                    version: *v,
                    mtime: 0,
                    hash: String::new(),
                })),
            }
        }
        Ok(out)
    }
    async fn has_children(&self, c: &str, prefix: &str) -> Result<bool> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .keys()
            .any(|(oc, n)| oc == c && n.starts_with(prefix)))
    }
    async fn head(&self, c: &str, name: &str) -> Result<Option<ObjectStat>> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(&(c.into(), name.into()))
            .map(|(size, _, v, ct)| ObjectStat {
                name: name.into(),
                size: *size,
                content_type: ct.clone(),
                version: *v,
                mtime: 0,
                hash: String::new(),
            }))
    }
    async fn hashmap(&self, c: &str, name: &str, _: u64) -> Result<(u64, Vec<BlockHash>)> {
        self.objects
            .lock()
            .unwrap()
            .get(&(c.into(), name.into()))
            .map(|(s, h, _, _)| (*s, h.clone()))
            .ok_or_else(not_found)
    }
    async fn read(&self, c: &str, name: &str, v: u64, start: u64, len: u64) -> Result<Bytes> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let pinned = self.versions.lock().unwrap().get(&v).cloned();
        let (size, hashes) = match pinned {
            Some(x) => x,
            None => self.hashmap(c, name, 0).await?,
        };
        let mut out = vec![];
        for (i, h) in hashes.iter().enumerate() {
            let mut b = self.blocks.lock().unwrap().get(h).cloned().unwrap_or_default().to_vec();
            b.resize(block_len(size, i as u64), 0);
            out.extend_from_slice(&b);
        }
        let out = out[start as usize..(start + len) as usize].to_vec();
        Ok(Bytes::from(out))
    }
    async fn put_hashmap(
        &self,
        c: &str,
        name: &str,
        size: u64,
        hashes: &[BlockHash],
        ct: &str,
        meta: &[(String, String)],
    ) -> Result<PutOutcome> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        let blocks = self.blocks.lock().unwrap();
        let missing: Vec<BlockHash> = hashes
            .iter()
            .filter(|h| !h.is_empty_block() && !blocks.contains_key(h))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Ok(PutOutcome::Missing(missing));
        }
        let v = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        self.objects
            .lock()
            .unwrap()
            .insert((c.into(), name.into()), (size, hashes.to_vec(), v, ct.into()));
        self.versions.lock().unwrap().insert(v, (size, hashes.to_vec()));
        // A PUT replaces the user metadata, as on Pithos.
        self.meta
            .lock()
            .unwrap()
            .insert((c.into(), name.into()), meta.iter().cloned().collect());
        Ok(PutOutcome::Done { version: v })
    }
    async fn upload_block(&self, _: &str, data: Bytes) -> Result<BlockHash> {
        self.uploads.fetch_add(1, Ordering::SeqCst);
        let h = block_hash(&data);
        self.blocks
            .lock()
            .unwrap()
            .insert(h, Bytes::from(crate::api::hashing::trim_trailing_zeros(&data).to_vec()));
        Ok(h)
    }
    async fn put_empty(&self, c: &str, name: &str, ct: &str) -> Result<u64> {
        let v = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        self.objects
            .lock()
            .unwrap()
            .insert((c.into(), name.into()), (0, vec![], v, ct.into()));
        Ok(v)
    }
    async fn delete(&self, c: &str, name: &str) -> Result<()> {
        self.objects
            .lock()
            .unwrap()
            .remove(&(c.into(), name.into()))
            .map(|_| ())
            .ok_or_else(not_found)
    }
    async fn copy(&self, sc: &str, s: &str, _: u64, dc: &str, d: &str) -> Result<u64> {
        self.copies.fetch_add(1, Ordering::SeqCst);
        let v = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        let mut o = self.objects.lock().unwrap();
        let mut obj = o.get(&(sc.into(), s.into())).cloned().ok_or_else(not_found)?;
        obj.2 = v;
        o.insert((dc.into(), d.into()), obj);
        Ok(v)
    }
    async fn rename(&self, sc: &str, s: &str, dc: &str, d: &str, _: bool) -> Result<()> {
        let mut o = self.objects.lock().unwrap();
        let v = o.remove(&(sc.into(), s.into())).ok_or_else(not_found)?;
        o.insert((dc.into(), d.into()), v);
        Ok(())
    }
    async fn object_info(&self, c: &str, name: &str, version: Option<u64>) -> Result<Option<ObjectInfo>> {
        let Some(mut stat) = self.head(c, name).await? else {
            return Ok(None);
        };
        if let Some(v) = version {
            if v != stat.version {
                let Some((size, _)) = self.versions.lock().unwrap().get(&v).cloned() else {
                    return Ok(None);
                };
                stat.size = size;
                stat.version = v;
            }
        }
        let key = (c.to_string(), name.to_string());
        let meta = self.meta.lock().unwrap().get(&key).cloned().unwrap_or_default();
        Ok(Some(ObjectInfo {
            uuid: format!("uuid-{name}"),
            stat,
            meta: meta.into_iter().collect(),
            ..Default::default()
        }))
    }
    async fn update_object(&self, c: &str, name: &str, u: &ObjectUpdate) -> Result<()> {
        let key = (c.to_string(), name.to_string());
        if !self.objects.lock().unwrap().contains_key(&key) {
            return Err(not_found());
        }
        let mut all = self.meta.lock().unwrap();
        let m = all.entry(key).or_default();
        for (k, v) in &u.meta {
            match v {
                Some(v) => m.insert(k.to_lowercase(), v.clone()),
                None => m.remove(&k.to_lowercase()),
            };
        }
        Ok(())
    }
    async fn versions(&self, c: &str, name: &str) -> Result<Vec<(u64, i64)>> {
        let v = self.head(c, name).await?.ok_or_else(not_found)?.version;
        Ok(vec![(v, 0)])
    }
    async fn container_info(&self, c: &str) -> Result<ContainerInfo> {
        Ok(ContainerInfo {
            versioning: self
                .policies
                .lock()
                .unwrap()
                .get(c)
                .cloned()
                .unwrap_or_else(|| "auto".into()),
            ..Default::default()
        })
    }
    async fn set_container_policy(&self, c: &str, versioning: Option<&str>, _: Option<u64>) -> Result<()> {
        if let Some(v) = versioning {
            self.policies.lock().unwrap().insert(c.to_string(), v.to_string());
        }
        Ok(())
    }
}

impl Mem {
    /// The current content of `c/name`, whole.
    pub fn content(&self, name: &str) -> Vec<u8> {
        let objs = self.objects.lock().unwrap();
        let (size, hashes, _, _) = objs
            .get(&("c".to_string(), name.to_string()))
            .expect("object exists")
            .clone();
        let mut out = vec![];
        for (i, h) in hashes.iter().enumerate() {
            let mut b = self.blocks.lock().unwrap().get(h).cloned().unwrap_or_default().to_vec();
            b.resize(block_len(size, i as u64), 0);
            out.extend_from_slice(&b);
        }
        out
    }

    /// The current version of `c/name`.
    pub fn version_of(&self, name: &str) -> Option<u64> {
        let objs = self.objects.lock().unwrap();
        objs.get(&("c".to_string(), name.to_string())).map(|o| o.2)
    }
}

/// The operations of [`Storage`] and [`Registry`], for [`Faulty`]'s rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    ListContainers,
    AccountStat,
    CreateContainer,
    DeleteContainer,
    ContainerExists,
    List,
    HasChildren,
    Head,
    Hashmap,
    Read,
    PutHashmap,
    UploadBlock,
    PutEmpty,
    Delete,
    Copy,
    ObjectInfo,
    UpdateObject,
    Versions,
    ContainerInfo,
    SetContainerPolicy,
    Rename,
    ImageOf,
    Register,
    Unregister,
    Update,
    OwnImages,
    VisibleImages,
}

impl Op {
    pub const ALL: [Op; 27] = [
        Op::ListContainers,
        Op::AccountStat,
        Op::CreateContainer,
        Op::DeleteContainer,
        Op::ContainerExists,
        Op::List,
        Op::HasChildren,
        Op::Head,
        Op::Hashmap,
        Op::Read,
        Op::PutHashmap,
        Op::UploadBlock,
        Op::PutEmpty,
        Op::Delete,
        Op::Copy,
        Op::ObjectInfo,
        Op::UpdateObject,
        Op::Versions,
        Op::ContainerInfo,
        Op::SetContainerPolicy,
        Op::Rename,
        Op::ImageOf,
        Op::Register,
        Op::Unregister,
        Op::Update,
        Op::OwnImages,
        Op::VisibleImages,
    ];
}

/// Calls `skip..skip+count` of `op` (counted from when the rule was made) fail with `kind`.
struct Rule {
    op: Op,
    skip: usize,
    count: usize,
    kind: ErrorKind,
}

/// A storage whose calls fail, stall or lie on demand; without rules it is the storage it
/// wraps.
pub struct Faulty<S> {
    inner: S,
    rules: Mutex<Vec<Rule>>,
    calls: Mutex<HashMap<Op, usize>>,
    /// Calls of an operation wait here until [`Faulty::unstall`].
    gates: Mutex<HashMap<Op, Arc<tokio::sync::Semaphore>>>,
    delays: Mutex<HashMap<Op, Duration>>,
    /// Hashmaps lose their last hash, as from a server that cut them short.
    short_hashmaps: AtomicBool,
    /// Reads come back with their first byte flipped, as from a faulty disk or network.
    corrupt_reads: AtomicBool,
}

impl<S> Faulty<S> {
    pub fn new(inner: S) -> Faulty<S> {
        Faulty {
            inner,
            rules: Mutex::default(),
            calls: Mutex::default(),
            gates: Mutex::default(),
            delays: Mutex::default(),
            short_hashmaps: AtomicBool::new(false),
            corrupt_reads: AtomicBool::new(false),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The `k`-th call of `op` from now (1 = the next) fails with `kind`.
    pub fn fail_nth(&self, op: Op, k: usize, kind: ErrorKind) {
        self.add_rule(op, k.saturating_sub(1), 1, kind);
    }

    /// The next `n` calls of `op` fail with `kind`.
    pub fn fail_next(&self, op: Op, n: usize, kind: ErrorKind) {
        self.add_rule(op, 0, n, kind);
    }

    /// Every call of `op` fails with `kind` until [`Faulty::heal`].
    pub fn fail_always(&self, op: Op, kind: ErrorKind) {
        self.add_rule(op, 0, usize::MAX, kind);
    }

    /// No more failures (stalls and lies stay as they are).
    pub fn heal(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// Calls of `op` wait from now until [`Faulty::unstall`].
    pub fn stall(&self, op: Op) {
        self.gates
            .lock()
            .unwrap()
            .insert(op, Arc::new(tokio::sync::Semaphore::new(0)));
    }

    /// Lets the calls of `op` waiting in a stall go on, and the later ones pass.
    pub fn unstall(&self, op: Op) {
        if let Some(gate) = self.gates.lock().unwrap().remove(&op) {
            gate.close();
        }
    }

    /// Every call of `op` takes `d` longer.
    pub fn delay(&self, op: Op, d: Duration) {
        self.delays.lock().unwrap().insert(op, d);
    }

    pub fn short_hashmaps(&self, on: bool) {
        self.short_hashmaps.store(on, Ordering::SeqCst);
    }

    pub fn corrupt_reads(&self, on: bool) {
        self.corrupt_reads.store(on, Ordering::SeqCst);
    }

    /// Calls of `op` so far (those that failed or are stalled included).
    pub fn calls(&self, op: Op) -> usize {
        self.calls.lock().unwrap().get(&op).copied().unwrap_or(0)
    }

    fn add_rule(&self, op: Op, skip: usize, count: usize, kind: ErrorKind) {
        // Counted from now: the calls made so far are the rule's past.
        let skip = skip + self.calls(op);
        self.rules.lock().unwrap().push(Rule { op, skip, count, kind });
    }

    /// What happens to a call of `op` before it reaches the wrapped storage.
    async fn before(&self, op: Op) -> Result<()> {
        let nth = {
            let mut calls = self.calls.lock().unwrap();
            let c = calls.entry(op).or_default();
            *c += 1;
            *c - 1
        };
        let delay = self.delays.lock().unwrap().get(&op).copied();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let gate = self.gates.lock().unwrap().get(&op).cloned();
        if let Some(gate) = gate {
            // Closed by `unstall`: the acquire then returns at once.
            let _ = gate.acquire().await;
        }
        let failing = self
            .rules
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.op == op && nth >= r.skip && nth - r.skip < r.count)
            .map(|r| r.kind);
        match failing {
            Some(kind) => Err(StorageError::failed(
                "faulty",
                kind,
                format!("injected failure of call {} of {op:?}", nth + 1),
            )),
            None => Ok(()),
        }
    }
}

/// `before`, then the wrapped call.
macro_rules! through {
    ($self:ident, $op:ident, $($call:tt)*) => {{
        $self.before(Op::$op).await?;
        $self.inner.$($call)*.await
    }};
}

impl<S: Storage> Storage for Faulty<S> {
    async fn list_containers(&self) -> Result<Vec<ContainerStat>> {
        through!(self, ListContainers, list_containers())
    }
    async fn account_stat(&self) -> Result<AccountStat> {
        through!(self, AccountStat, account_stat())
    }
    async fn create_container(&self, name: &str) -> Result<()> {
        through!(self, CreateContainer, create_container(name))
    }
    async fn delete_container(&self, name: &str) -> Result<()> {
        through!(self, DeleteContainer, delete_container(name))
    }
    async fn container_exists(&self, name: &str) -> Result<bool> {
        through!(self, ContainerExists, container_exists(name))
    }
    async fn list(&self, c: &str, prefix: &str, marker: &str, limit: usize) -> Result<Vec<Listed>> {
        through!(self, List, list(c, prefix, marker, limit))
    }
    async fn has_children(&self, c: &str, prefix: &str) -> Result<bool> {
        through!(self, HasChildren, has_children(c, prefix))
    }
    async fn head(&self, c: &str, name: &str) -> Result<Option<ObjectStat>> {
        through!(self, Head, head(c, name))
    }
    async fn hashmap(&self, c: &str, name: &str, version: u64) -> Result<(u64, Vec<BlockHash>)> {
        let (size, mut hashes) = through!(self, Hashmap, hashmap(c, name, version))?;
        if self.short_hashmaps.load(Ordering::SeqCst) {
            hashes.pop();
        }
        Ok((size, hashes))
    }
    async fn read(&self, c: &str, name: &str, version: u64, start: u64, len: u64) -> Result<Bytes> {
        let data = through!(self, Read, read(c, name, version, start, len))?;
        if self.corrupt_reads.load(Ordering::SeqCst) && !data.is_empty() {
            let mut bad = data.to_vec();
            bad[0] ^= 1;
            return Ok(bad.into());
        }
        Ok(data)
    }
    async fn put_hashmap(
        &self,
        c: &str,
        name: &str,
        size: u64,
        hashes: &[BlockHash],
        ct: &str,
        meta: &[(String, String)],
    ) -> Result<PutOutcome> {
        through!(self, PutHashmap, put_hashmap(c, name, size, hashes, ct, meta))
    }
    async fn upload_block(&self, c: &str, data: Bytes) -> Result<BlockHash> {
        through!(self, UploadBlock, upload_block(c, data))
    }
    async fn put_empty(&self, c: &str, name: &str, ct: &str) -> Result<u64> {
        through!(self, PutEmpty, put_empty(c, name, ct))
    }
    async fn delete(&self, c: &str, name: &str) -> Result<()> {
        through!(self, Delete, delete(c, name))
    }
    async fn copy(&self, sc: &str, s: &str, version: u64, dc: &str, d: &str) -> Result<u64> {
        through!(self, Copy, copy(sc, s, version, dc, d))
    }
    async fn object_info(&self, c: &str, name: &str, version: Option<u64>) -> Result<Option<ObjectInfo>> {
        through!(self, ObjectInfo, object_info(c, name, version))
    }
    async fn update_object(&self, c: &str, name: &str, u: &ObjectUpdate) -> Result<()> {
        through!(self, UpdateObject, update_object(c, name, u))
    }
    async fn versions(&self, c: &str, name: &str) -> Result<Vec<(u64, i64)>> {
        through!(self, Versions, versions(c, name))
    }
    async fn container_info(&self, c: &str) -> Result<ContainerInfo> {
        through!(self, ContainerInfo, container_info(c))
    }
    async fn set_container_policy(&self, c: &str, versioning: Option<&str>, quota: Option<u64>) -> Result<()> {
        through!(self, SetContainerPolicy, set_container_policy(c, versioning, quota))
    }
    async fn rename(&self, sc: &str, s: &str, dc: &str, d: &str, recursive: bool) -> Result<()> {
        through!(self, Rename, rename(sc, s, dc, d, recursive))
    }
}

impl<S: Registry> Registry for Faulty<S> {
    async fn image_of(&self, c: &str, name: &str) -> Result<Option<Image>> {
        through!(self, ImageOf, image_of(c, name))
    }
    async fn register(&self, c: &str, name: &str, reg: &Registration) -> Result<Image> {
        through!(self, Register, register(c, name, reg))
    }
    async fn unregister(&self, id: &str) -> Result<()> {
        through!(self, Unregister, unregister(id))
    }
    async fn update(&self, img: &Image) -> Result<Image> {
        through!(self, Update, update(img))
    }
    async fn own_images(&self) -> Result<Vec<(String, String, Image)>> {
        through!(self, OwnImages, own_images())
    }
    async fn visible_images(&self) -> Result<Vec<Image>> {
        through!(self, VisibleImages, visible_images())
    }
}
