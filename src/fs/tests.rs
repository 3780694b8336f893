//! The core against an in-memory [`Storage`] with request counters and fault injection:
//! dedup (no block sent twice), patching only touched blocks, staging spill, truncation, and
//! a failed commit that keeps the data for a retry.

use super::*;
use crate::api::hashing::block_hash;
use crate::client::{AccountStat, ClientError, ContainerStat, PutOutcome};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;

/// `(container, name)` → `(size, hashes, version, content type)`
type Objects = BTreeMap<(String, String), (u64, Vec<BlockHash>, u64, String)>;

#[derive(Default)]
struct Mem {
    objects: Mutex<Objects>,
    blocks: Mutex<HashMap<BlockHash, Bytes>>,
    version: AtomicU64,
    uploads: AtomicUsize,
    puts: AtomicUsize,
    copies: AtomicUsize,
    reads: AtomicUsize,
    /// Every committed version's (size, hashes), so pinned readers can read old versions.
    versions: Mutex<HashMap<u64, (u64, Vec<BlockHash>)>>,
    /// Fail the next N block uploads with a 503.
    fail_uploads: AtomicUsize,
    /// Slow uploads down, to see what a writer holds meanwhile.
    upload_delay_ms: AtomicU64,
    /// Flip a byte in everything read, as a faulty disk or network would.
    corrupt_reads: std::sync::atomic::AtomicBool,
    /// `(container, name)` → the registration.
    images: Mutex<BTreeMap<(String, String), crate::api::plankton::Image>>,
    /// Refuse unregistering (as the registry does for non-owners).
    refuse_unregister: std::sync::atomic::AtomicBool,
    /// `(container, name)` → user metadata.
    meta: Mutex<HashMap<(String, String), BTreeMap<String, String>>>,
    /// Container → versioning policy.
    policies: Mutex<HashMap<String, String>>,
    /// What the account HEAD says.
    account: Mutex<AccountStat>,
}

impl crate::client::Registry for Arc<Mem> {
    async fn image_of(&self, c: &str, name: &str) -> crate::client::Result<Option<crate::api::plankton::Image>> {
        Ok(self
            .images
            .lock()
            .unwrap()
            .get(&(c.to_string(), name.to_string()))
            .cloned())
    }
    async fn register(
        &self,
        c: &str,
        name: &str,
        reg: &crate::api::metafile::Registration,
    ) -> crate::client::Result<crate::api::plankton::Image> {
        if !self
            .objects
            .lock()
            .unwrap()
            .contains_key(&(c.to_string(), name.to_string()))
        {
            return Err(err(404));
        }
        let img = crate::api::plankton::Image {
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
    async fn update(&self, img: &crate::api::plankton::Image) -> crate::client::Result<crate::api::plankton::Image> {
        let mut images = self.images.lock().unwrap();
        let slot = images.values_mut().find(|i| i.id == img.id).ok_or_else(|| err(404))?;
        *slot = img.clone();
        Ok(img.clone())
    }
    async fn own_images(&self) -> crate::client::Result<Vec<(String, String, crate::api::plankton::Image)>> {
        Ok(self
            .images
            .lock()
            .unwrap()
            .iter()
            .map(|((c, n), i)| (c.clone(), n.clone(), i.clone()))
            .collect())
    }
    async fn visible_images(&self) -> crate::client::Result<Vec<crate::api::plankton::Image>> {
        Ok(self.images.lock().unwrap().values().cloned().collect())
    }
    async fn unregister(&self, id: &str) -> crate::client::Result<()> {
        if self.refuse_unregister.load(Ordering::SeqCst) {
            return Err(err(403));
        }
        self.images.lock().unwrap().retain(|_, i| i.id != id);
        Ok(())
    }
}

fn err(status: u16) -> ClientError {
    ClientError::Status {
        method: "X".into(),
        path: "p".into(),
        status,
        message: "injected".into(),
    }
}

impl Storage for Arc<Mem> {
    async fn list_containers(&self) -> crate::client::Result<Vec<ContainerStat>> {
        Ok(vec![ContainerStat {
            name: "c".into(),
            bytes: 0,
            mtime: 0,
        }])
    }
    async fn account_stat(&self) -> crate::client::Result<AccountStat> {
        Ok(*self.account.lock().unwrap())
    }
    async fn create_container(&self, _: &str) -> crate::client::Result<()> {
        Ok(())
    }
    async fn delete_container(&self, _: &str) -> crate::client::Result<()> {
        Ok(())
    }
    async fn container_exists(&self, name: &str) -> crate::client::Result<bool> {
        Ok(name == "c")
    }
    async fn list(&self, c: &str, prefix: &str, marker: &str, limit: usize) -> crate::client::Result<Vec<Listed>> {
        let objs = self.objects.lock().unwrap();
        Ok(objs
            .iter()
            .filter(|((oc, n), _)| oc == c && n.starts_with(prefix) && !n[prefix.len()..].contains('/'))
            .filter(|((_, n), _)| n.as_str() > marker)
            .take(limit)
            .map(|((_, n), (size, _, v, ct))| {
                Listed::Object(ObjectStat {
                    name: n.clone(),
                    size: *size,
                    content_type: ct.clone(),
                    version: *v,
                    mtime: 0,
                    hash: String::new(),
                })
            })
            .collect())
    }
    async fn has_children(&self, c: &str, prefix: &str) -> crate::client::Result<bool> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .keys()
            .any(|(oc, n)| oc == c && n.starts_with(prefix)))
    }
    async fn head(&self, c: &str, name: &str) -> crate::client::Result<Option<ObjectStat>> {
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
    async fn hashmap(&self, c: &str, name: &str, _: u64) -> crate::client::Result<(u64, Vec<BlockHash>)> {
        self.objects
            .lock()
            .unwrap()
            .get(&(c.into(), name.into()))
            .map(|(s, h, _, _)| (*s, h.clone()))
            .ok_or_else(|| err(404))
    }
    async fn read(&self, c: &str, name: &str, v: u64, start: u64, len: u64) -> crate::client::Result<Bytes> {
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
        let mut out = out[start as usize..(start + len) as usize].to_vec();
        if self.corrupt_reads.load(Ordering::SeqCst) && !out.is_empty() {
            out[0] ^= 1;
        }
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
    ) -> crate::client::Result<PutOutcome> {
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
    async fn upload_block(&self, _: &str, data: Bytes) -> crate::client::Result<BlockHash> {
        let delay = self.upload_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if self.fail_uploads.load(Ordering::SeqCst) > 0 {
            self.fail_uploads.fetch_sub(1, Ordering::SeqCst);
            return Err(err(503));
        }
        self.uploads.fetch_add(1, Ordering::SeqCst);
        let h = block_hash(&data);
        self.blocks
            .lock()
            .unwrap()
            .insert(h, Bytes::from(crate::api::hashing::trim_trailing_zeros(&data).to_vec()));
        Ok(h)
    }
    async fn put_empty(&self, c: &str, name: &str, ct: &str) -> crate::client::Result<u64> {
        let v = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        self.objects
            .lock()
            .unwrap()
            .insert((c.into(), name.into()), (0, vec![], v, ct.into()));
        Ok(v)
    }
    async fn delete(&self, c: &str, name: &str) -> crate::client::Result<()> {
        self.objects
            .lock()
            .unwrap()
            .remove(&(c.into(), name.into()))
            .map(|_| ())
            .ok_or_else(|| err(404))
    }
    async fn copy(&self, sc: &str, s: &str, _: u64, dc: &str, d: &str) -> crate::client::Result<u64> {
        self.copies.fetch_add(1, Ordering::SeqCst);
        let v = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        let mut o = self.objects.lock().unwrap();
        let mut obj = o.get(&(sc.into(), s.into())).cloned().ok_or_else(|| err(404))?;
        obj.2 = v;
        o.insert((dc.into(), d.into()), obj);
        Ok(v)
    }
    async fn rename(&self, sc: &str, s: &str, dc: &str, d: &str, _: bool) -> crate::client::Result<()> {
        let mut o = self.objects.lock().unwrap();
        let v = o.remove(&(sc.into(), s.into())).ok_or_else(|| err(404))?;
        o.insert((dc.into(), d.into()), v);
        Ok(())
    }
    async fn object_info(
        &self,
        c: &str,
        name: &str,
        version: Option<u64>,
    ) -> crate::client::Result<Option<crate::client::ObjectInfo>> {
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
        Ok(Some(crate::client::ObjectInfo {
            uuid: format!("uuid-{name}"),
            stat,
            meta: meta.into_iter().collect(),
            ..Default::default()
        }))
    }
    async fn update_object(&self, c: &str, name: &str, u: &crate::client::ObjectUpdate) -> crate::client::Result<()> {
        let key = (c.to_string(), name.to_string());
        if !self.objects.lock().unwrap().contains_key(&key) {
            return Err(err(404));
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
    async fn versions(&self, c: &str, name: &str) -> crate::client::Result<Vec<(u64, i64)>> {
        let v = self.head(c, name).await?.ok_or_else(|| err(404))?.version;
        Ok(vec![(v, 0)])
    }
    async fn container_info(&self, c: &str) -> crate::client::Result<crate::client::ContainerInfo> {
        Ok(crate::client::ContainerInfo {
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
    async fn set_container_policy(
        &self,
        c: &str,
        versioning: Option<&str>,
        _: Option<u64>,
    ) -> crate::client::Result<()> {
        if let Some(v) = versioning {
            self.policies.lock().unwrap().insert(c.to_string(), v.to_string());
        }
        Ok(())
    }
}

fn content(mem: &Mem, name: &str) -> Vec<u8> {
    let objs = mem.objects.lock().unwrap();
    let (size, hashes, _, _) = objs
        .get(&("c".to_string(), name.to_string()))
        .expect("object exists")
        .clone();
    let mut out = vec![];
    for (i, h) in hashes.iter().enumerate() {
        let mut b = mem.blocks.lock().unwrap().get(h).cloned().unwrap_or_default().to_vec();
        b.resize(block_len(size, i as u64), 0);
        out.extend_from_slice(&b);
    }
    out
}

fn fs_with(opts: FsOptions) -> (Arc<Mem>, Fs<Arc<Mem>>) {
    let mem = Arc::new(Mem::default());
    let fs = Fs::new(
        mem.clone(),
        FsOptions {
            staging_dir: std::env::temp_dir(),
            ..opts
        },
    );
    (mem, fs)
}

/// Pseudo-random bytes that do not repeat between blocks.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

async fn container_ino(fs: &Fs<Arc<Mem>>) -> Ino {
    fs.lookup(ROOT, "c").await.unwrap().ino
}

async fn write_file(fs: &Fs<Arc<Mem>>, dir: Ino, name: &str, bytes: &[u8], chunk: usize) {
    let (_, fh) = fs.create(dir, name, libc::O_WRONLY).await.unwrap();
    for (i, c) in bytes.chunks(chunk).enumerate() {
        fs.write(fh, (i * chunk) as u64, c).await.unwrap();
    }
    fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn statfs_reports_the_quota_and_1_pib_for_no_limit() {
    let (mem, fs) = fs_with(FsOptions::default());
    let stat = |quota, bytes_used| *mem.account.lock().unwrap() = AccountStat { bytes_used, quota };
    const PIB_IN_UNITS: u64 = (1 << 50) / 4096;
    stat(0, 4096 * 10);
    assert_eq!(fs.statfs().await.unwrap(), (PIB_IN_UNITS, PIB_IN_UNITS - 10));
    // The original's "no limit" is Astakos' infinity, 2^63-1.
    stat(crate::api::pithos::UNLIMITED_QUOTA, 4096 * 10);
    assert_eq!(fs.statfs().await.unwrap(), (PIB_IN_UNITS, PIB_IN_UNITS - 10));
    stat(4096 * 100, 4096 * 30);
    assert_eq!(fs.statfs().await.unwrap(), (100, 70));
    // Over quota (a server that charged late): nothing free, never an underflow.
    stat(4096 * 100, 4096 * 130);
    assert_eq!(fs.statfs().await.unwrap(), (100, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_write_then_rewrite_sends_each_block_once() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let bytes = data(3 * BLOCK_SIZE + 1000, 1);
    write_file(&fs, dir, "f", &bytes, 128 << 10).await;
    assert_eq!(content(&mem, "f"), bytes);
    assert_eq!(mem.uploads.load(Ordering::SeqCst), 4);
    assert_eq!(mem.puts.load(Ordering::SeqCst), 1, "one commit per close");
    // the same content again: nothing uploaded
    let a = fs.lookup(dir, "f").await.unwrap();
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    for (i, c) in bytes.chunks(1 << 20).enumerate() {
        fs.write(fh, (i << 20) as u64, c).await.unwrap();
    }
    fs.release(fh).await.unwrap();
    assert_eq!(mem.uploads.load(Ordering::SeqCst), 4, "a re-copy sends no blocks");
    assert_eq!(content(&mem, "f"), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_write_uploads_only_the_touched_block() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let mut bytes = data(5 * BLOCK_SIZE, 2);
    write_file(&fs, dir, "img", &bytes, 1 << 20).await;
    let before = mem.uploads.load(Ordering::SeqCst);
    let a = fs.lookup(dir, "img").await.unwrap();
    let fh = fs.open(a.ino, libc::O_RDWR).await.unwrap();
    let at = 2 * BLOCK_SIZE + 100;
    fs.write(fh, at as u64, b"patched").await.unwrap();
    bytes[at..at + 7].copy_from_slice(b"patched");
    // read-back through the same handle sees the patch
    assert_eq!(fs.read(fh, at as u64, 7).await.unwrap(), &b"patched"[..]);
    fs.release(fh).await.unwrap();
    assert_eq!(mem.uploads.load(Ordering::SeqCst) - before, 1);
    assert_eq!(content(&mem, "img"), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_writes_spill_to_staging_and_commit_whole() {
    let (mem, fs) = fs_with(FsOptions {
        max_dirty_blocks: 2,
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let (_, fh) = fs.create(dir, "sparse", libc::O_WRONLY).await.unwrap();
    let mut want = vec![0u8; 6 * BLOCK_SIZE + 10];
    // backwards, one small write per block: nothing completes a block, so all stay dirty
    for b in (0..7).rev() {
        let at = b * BLOCK_SIZE + 5;
        fs.write(fh, at as u64, &[b as u8 + 1; 5]).await.unwrap();
        want[at..at + 5].copy_from_slice(&[b as u8 + 1; 5]);
    }
    fs.release(fh).await.unwrap();
    assert_eq!(content(&mem, "sparse"), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_down_and_up_and_zero_blocks() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let bytes = data(2 * BLOCK_SIZE + 50, 3);
    write_file(&fs, dir, "t", &bytes, 1 << 20).await;
    let a = fs.lookup(dir, "t").await.unwrap();
    fs.set_size(a.ino, None, 1000).await.unwrap();
    assert_eq!(content(&mem, "t"), &bytes[..1000]);
    let uploads = mem.uploads.load(Ordering::SeqCst);
    fs.set_size(a.ino, None, 3 * BLOCK_SIZE as u64).await.unwrap();
    let got = content(&mem, "t");
    assert_eq!(&got[..1000], &bytes[..1000]);
    assert!(got[1000..].iter().all(|&b| b == 0));
    assert_eq!(
        mem.uploads.load(Ordering::SeqCst),
        uploads,
        "growing by zeros uploads nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_upload_fails_close_and_loses_nothing() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let bytes = data(BLOCK_SIZE + 10, 4);
    let (_, fh) = fs.create(dir, "x", libc::O_WRONLY).await.unwrap();
    mem.fail_uploads.store(2, Ordering::SeqCst);
    fs.write(fh, 0, &bytes).await.unwrap();
    let e = fs.flush(fh, || false).await.unwrap_err();
    assert_eq!(e.errno, libc::EIO);
    assert!(
        mem.objects
            .lock()
            .unwrap()
            .get(&("c".to_string(), "x".to_string()))
            .is_none(),
        "nothing half-written"
    );
    // the data is still held: a second flush (fsync, close) commits it
    fs.flush(fh, || false).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(content(&mem, "x"), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_path_pins_a_version_and_uses_the_cache() {
    // A small cache, so the blocks this test writes are not all still cached from the upload.
    let (mem, fs) = fs_with(FsOptions {
        cache_blocks: 1,
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let old = data(3 * BLOCK_SIZE + 3, 5);
    write_file(&fs, dir, "r", &old, 1 << 20).await;
    let a = fs.lookup(dir, "r").await.unwrap();
    let read_all = |fh: u64| {
        let fs = &fs;
        async move {
            let mut got = vec![];
            let mut off = 0;
            loop {
                let c = fs.read(fh, off, 128 << 10).await.unwrap();
                if c.is_empty() {
                    break;
                }
                off += c.len() as u64;
                got.extend(c);
            }
            got
        }
    };
    let reader = fs.open(a.ino, libc::O_RDONLY).await.unwrap();
    assert_eq!(fs.read(reader, 0, 10).await.unwrap(), old[..10]);
    // another writer commits a new version while the reader is open
    let new = data(2 * BLOCK_SIZE, 6);
    let w = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.write(w, 0, &new).await.unwrap();
    fs.release(w).await.unwrap();
    assert_eq!(
        read_all(reader).await,
        old,
        "the open reader keeps the version it opened"
    );
    fs.release(reader).await.unwrap();
    // a new open sees the new version; its blocks are fetched once each, the repeat from cache
    let fresh = fs.open(a.ino, libc::O_RDONLY).await.unwrap();
    let before = mem.reads.load(Ordering::SeqCst);
    let mut seen = vec![];
    for i in 0..(BLOCK_SIZE / (128 << 10)) {
        seen.extend(fs.read(fresh, (i * (128 << 10)) as u64, 128 << 10).await.unwrap());
    }
    assert_eq!(seen, new[..BLOCK_SIZE]);
    assert!(
        mem.reads.load(Ordering::SeqCst) - before <= 3,
        "32 reads of one block cost at most the block and its prefetch"
    );
    fs.release(fresh).await.unwrap();
    // errors map to errno
    assert_eq!(fs.lookup(dir, "nope").await.unwrap_err().errno, libc::ENOENT);
    assert_eq!(fs.lookup(ROOT, "other").await.unwrap_err().errno, libc::ENOENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_turns_corrupt_blocks_into_eio_and_caches_nothing_bad() {
    let (mem, fs) = fs_with(FsOptions {
        cache_blocks: 1,
        verify_reads: true,
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let bytes = data(2 * BLOCK_SIZE, 9);
    write_file(&fs, dir, "v", &bytes, 1 << 20).await;
    let ino = fs.lookup(dir, "v").await.unwrap().ino;
    mem.corrupt_reads.store(true, Ordering::SeqCst);
    let fh = fs.open(ino, libc::O_RDONLY).await.unwrap();
    // The cache holds one block: at least one of the two is fetched, corrupt.
    let mut errs = 0;
    for b in 0..2u64 {
        if let Err(e) = fs.read(fh, b * BLOCK_SIZE as u64, 16).await {
            assert_eq!(e.errno, libc::EIO);
            errs += 1;
        }
    }
    assert!(
        errs >= 1,
        "a corrupt block fetched with verify_reads must fail the read"
    );
    mem.corrupt_reads.store(false, Ordering::SeqCst);
    for b in 0..2usize {
        let got = fs.read(fh, (b * BLOCK_SIZE) as u64, 16).await.unwrap();
        assert_eq!(
            got,
            bytes[b * BLOCK_SIZE..b * BLOCK_SIZE + 16],
            "the failed fetch left nothing in the cache"
        );
    }
    fs.release(fh).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rereading_an_evicted_uploaded_block_commits_early_instead_of_failing() {
    let (mem, fs) = fs_with(FsOptions {
        cache_blocks: 1,
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let mut bytes = data(4 * BLOCK_SIZE, 11);
    let (_, fh) = fs.create(dir, "e", libc::O_RDWR).await.unwrap();
    let uploads = |n: usize| {
        let mem = mem.clone();
        async move {
            for _ in 0..500 {
                if mem.uploads.load(Ordering::SeqCst) >= n {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("uploads did not finish");
        }
    };
    for (i, c) in bytes[..3 * BLOCK_SIZE].chunks(1 << 20).enumerate() {
        fs.write(fh, (i << 20) as u64, c).await.unwrap();
    }
    uploads(3).await;
    // The next full block reaps the finished uploads: blocks 0..3 are then only on the server
    // (in no version) and the one-block cache holds at most one of them.
    fs.write(fh, 3 * BLOCK_SIZE as u64, &bytes[3 * BLOCK_SIZE..])
        .await
        .unwrap();
    uploads(4).await;
    assert_eq!(mem.puts.load(Ordering::SeqCst), 0);
    let got = fs.read(fh, 100, 1000).await.unwrap();
    assert_eq!(got, bytes[100..1100], "block 0 reads back through the writer");
    // and a partial rewrite of block 0 lands
    fs.write(fh, 5, b"again").await.unwrap();
    bytes[5..10].copy_from_slice(b"again");
    fs.release(fh).await.unwrap();
    assert_eq!(content(&mem, "e"), bytes);
    assert!(
        mem.puts.load(Ordering::SeqCst) >= 2,
        "an early commit, then the final one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_and_never_seen_inodes_leave_the_table() {
    struct Plus(usize);
    impl DirSink for Plus {
        fn add(&mut self, _: Ino, _: u64, _: &str, _: &Attr) -> bool {
            self.0 += 1;
            false
        }
        fn gives_entries(&self) -> bool {
            true
        }
    }
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    write_file(&fs, dir, "kept", b"kept", 4).await;
    let first = fs.lookup(dir, "kept").await.unwrap().ino;
    // create counted one entry, the lookup another: both must be forgotten before it goes
    fs.forget(first, 1);
    assert_eq!(fs.lookup(dir, "kept").await.unwrap().ino, first);
    fs.forget(first, 2);
    let again = fs.lookup(dir, "kept").await.unwrap().ino;
    assert_ne!(
        again, first,
        "a forgotten inode is dropped, a new lookup makes a new one"
    );
    // A listing of 20k names remembers them all; past the threshold the ones the kernel was
    // never given are swept, the one it holds stays.
    {
        let mut objs = mem.objects.lock().unwrap();
        for i in 0..20_000 {
            objs.insert(("c".into(), format!("n{i:05}")), (0, vec![], 1, "text/plain".into()));
        }
    }
    let fh = fs.opendir(dir).await.unwrap();
    fs.release_handle(fh);
    assert!(fs.inode_count() < 20_000, "table swept: {} inodes", fs.inode_count());
    assert_eq!(
        fs.lookup(dir, "kept").await.unwrap().ino,
        again,
        "held inodes survive the sweep"
    );
    // readdirplus hands out entries: each counts, swept or not
    let fh = fs.opendir(dir).await.unwrap();
    let mut sink = Plus(0);
    fs.readdir(dir, fh, 0, &mut sink).unwrap();
    fs.release_handle(fh);
    assert_eq!(sink.0, 20_003, "., .., kept and 20k names");
    let ino = fs.lookup(dir, "n00001").await.unwrap().ino;
    fs.forget(ino, 2);
    assert_ne!(fs.lookup(dir, "n00001").await.unwrap().ino, ino);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_answers_the_same_process_until_something_changes() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    write_file(&fs, dir, "d.img.meta", br#"{"name": "Before"}"#, 2).await;
    write_file(&fs, dir, "d.img", b"bytes", 5).await;
    let ino = fs.lookup(dir, "d.img").await.unwrap().ino;
    let name = |pid| {
        let fs = &fs;
        async move { String::from_utf8(fs.getxattr(ino, "user.image.name", pid).await.unwrap()).unwrap() }
    };
    let rename_elsewhere = |to: &str| {
        mem.images
            .lock()
            .unwrap()
            .get_mut(&("c".into(), "d.img".into()))
            .unwrap()
            .name = to.into();
    };
    assert!(fs
        .listxattr(ino, 7)
        .await
        .unwrap()
        .contains(&"user.image.name".to_string()));
    // Changed elsewhere: the listing process reads what it listed, any other process the news.
    rename_elsewhere("Elsewhere");
    assert_eq!(name(7).await, "Before");
    assert_eq!(name(8).await, "Elsewhere");
    assert_eq!(name(0).await, "Elsewhere", "no process known, no snapshot");
    // A change through the mount ends the snapshot at once.
    fs.listxattr(ino, 7).await.unwrap();
    fs.setxattr(ino, "user.image.name", b"Set").await.unwrap();
    assert_eq!(name(7).await, "Set");
    fs.listxattr(ino, 7).await.unwrap();
    write_file(&fs, dir, "d.img.meta", br#"{"name": "Saved"}"#, 3).await;
    assert_eq!(name(7).await, "Saved");
    // And it lasts moments only.
    fs.listxattr(ino, 7).await.unwrap();
    rename_elsewhere("Later");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(name(7).await, "Later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmount_ends_grace_periods() {
    let (mem, fs) = fs_with(FsOptions {
        meta_grace: Duration::from_secs(3600),
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let registered = |name: &str| mem.images.lock().unwrap().contains_key(&("c".into(), name.into()));
    for name in ["a.img", "b.img"] {
        write_file(&fs, dir, &format!("{name}.meta"), b"{}", 2).await;
        write_file(&fs, dir, name, b"bytes", 5).await;
        assert!(registered(name));
    }
    fs.rename(dir, "a.img.meta", dir, "a.json").await.unwrap();
    fs.end_grace_periods().await;
    assert!(!registered("a.img"), "moved away, unregistered at unmount");
    assert!(registered("b.img"), "nothing else changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metafiles_register_and_unregister() {
    let grace = Duration::from_millis(300);
    let (mem, fs) = fs_with(FsOptions {
        meta_grace: grace,
        ..FsOptions::default()
    });
    let dir = container_ino(&fs).await;
    let image = |mem: &Mem| {
        mem.images
            .lock()
            .unwrap()
            .get(&("c".into(), "disk.img".into()))
            .cloned()
    };
    // the metafile first (cp -r order): stored, registered once the image is committed
    write_file(
        &fs,
        dir,
        "disk.img.meta",
        br#"{"name": "Disk", "properties": {"OS": "linux"}}"#,
        7,
    )
    .await;
    assert!(image(&mem).is_none());
    write_file(&fs, dir, "disk.img", b"bytes", 5).await;
    let img = image(&mem).expect("registered when the image was committed");
    assert_eq!(img.name, "Disk");
    assert_eq!(img.properties["os"], "linux");
    // re-registration replaces everything
    write_file(&fs, dir, "disk.img.meta", br#"{"is-public": "True"}"#, 100).await;
    let img = image(&mem).unwrap();
    assert_eq!(
        (img.name.as_str(), img.is_public, img.properties.len()),
        ("disk.img", true, 0)
    );
    // a bad metafile: EINVAL at close, registry unchanged, bytes kept, reason readable
    let (_, fh) = fs.create(dir, "disk.img.meta", libc::O_WRONLY).await.unwrap();
    fs.write(fh, 0, br#"{"disk-format": "qcow9"}"#).await.unwrap();
    assert_eq!(fs.release(fh).await.unwrap_err().errno, libc::EINVAL);
    assert!(image(&mem).unwrap().is_public);
    assert_eq!(content(&mem, "disk.img.meta"), br#"{"disk-format": "qcow9"}"#);
    let meta_ino = fs.lookup(dir, "disk.img.meta").await.unwrap().ino;
    let why = fs.metafile_error(meta_ino).unwrap().unwrap();
    assert!(why.contains("qcow9"), "{why}");
    assert_eq!(
        fs.metafile_error(fs.lookup(dir, "disk.img").await.unwrap().ino)
            .unwrap(),
        None
    );
    // a good one clears the error
    write_file(&fs, dir, "disk.img.meta", b"{}", 2).await;
    assert_eq!(fs.metafile_error(meta_ino).unwrap().unwrap(), "");
    // Renamed away (an editor's backup), the name is free as on any filesystem, and the
    // image stays registered while a new metafile is written within the grace period.
    fs.rename(dir, "disk.img.meta", dir, "disk.img.meta~").await.unwrap();
    assert!(image(&mem).is_some(), "a backup rename is no unregister");
    assert_eq!(fs.lookup(dir, "disk.img.meta").await.unwrap_err().errno, libc::ENOENT);
    write_file(&fs, dir, "disk.img.meta", br#"{"name": "saved"}"#, 4).await;
    tokio::time::sleep(grace * 2).await;
    assert_eq!(
        image(&mem).expect("still registered after the grace period").name,
        "saved"
    );
    fs.unlink(dir, "disk.img.meta~").await.unwrap();
    assert!(image(&mem).is_some(), "removing the backup is no unregister");
    // A metafile moved away for good unregisters once the grace period is over.
    fs.rename(dir, "disk.img.meta", dir, "kept.json").await.unwrap();
    tokio::time::sleep(grace / 3).await;
    assert!(image(&mem).is_some(), "not during the grace period");
    tokio::time::sleep(grace).await;
    assert!(image(&mem).is_none(), "unregistered after it");
    fs.rename(dir, "kept.json", dir, "disk.img.meta").await.unwrap();
    assert_eq!(image(&mem).expect("moving it back registers").name, "saved");
    // Generated-only (registered elsewhere, no stored metafile): a rename stores what it
    // reads as at the new name.
    fs.unlink(dir, "disk.img.meta").await.unwrap();
    let reg = crate::api::metafile::Registration {
        name: Some("elsewhere".into()),
        ..Default::default()
    };
    crate::client::Registry::register(&mem, "c", "disk.img", &reg)
        .await
        .unwrap();
    fs.rename(dir, "disk.img.meta", dir, "disk.img.meta~").await.unwrap();
    assert!(String::from_utf8(content(&mem, "disk.img.meta~"))
        .unwrap()
        .contains("\"elsewhere\""));
    write_file(&fs, dir, "disk.img.meta", br#"{"name": "after"}"#, 4).await;
    fs.unlink(dir, "disk.img.meta~").await.unwrap();
    assert_eq!(image(&mem).unwrap().name, "after");
    // rm refused by the registry: EACCES, nothing deleted
    mem.refuse_unregister.store(true, Ordering::SeqCst);
    assert_eq!(fs.unlink(dir, "disk.img.meta").await.unwrap_err().errno, libc::EACCES);
    assert!(image(&mem).is_some());
    assert_eq!(content(&mem, "disk.img.meta"), br#"{"name": "after"}"#);
    mem.refuse_unregister.store(false, Ordering::SeqCst);
    // rm N.meta unregisters, N stays
    fs.unlink(dir, "disk.img.meta").await.unwrap();
    assert!(image(&mem).is_none());
    assert_eq!(content(&mem, "disk.img"), b"bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_unlink_and_mkdir() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    write_file(&fs, dir, "a", b"hello", 5).await;
    fs.rename(dir, "a", dir, "b").await.unwrap();
    assert_eq!(content(&mem, "b"), b"hello");
    assert_eq!(fs.lookup(dir, "a").await.unwrap_err().errno, libc::ENOENT);
    fs.mkdir(dir, "d").await.unwrap();
    assert_eq!(
        mem.objects.lock().unwrap()[&("c".to_string(), "d".to_string())].3,
        "application/directory"
    );
    assert_eq!(fs.mkdir(dir, "d").await.unwrap_err().errno, libc::EEXIST);
    fs.unlink(dir, "b").await.unwrap();
    assert!(mem
        .objects
        .lock()
        .unwrap()
        .get(&("c".to_string(), "b".to_string()))
        .is_none());
    assert_eq!(fs.create(dir, "bad/name", 0).await.unwrap_err().errno, libc::EINVAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_file_range_is_a_server_side_copy() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let bytes = data(BLOCK_SIZE + 5, 7);
    write_file(&fs, dir, "src", &bytes, 1 << 20).await;
    let uploads = mem.uploads.load(Ordering::SeqCst);
    let a = fs.lookup(dir, "src").await.unwrap();
    let fin = fs.open(a.ino, libc::O_RDONLY).await.unwrap();
    let (_, fout) = fs.create(dir, "dst", libc::O_WRONLY).await.unwrap();
    assert_eq!(
        fs.copy_file_range(fin, 0, fout, 0, u64::MAX >> 2).await.unwrap(),
        bytes.len() as u64
    );
    assert_eq!(
        fs.copy_file_range(fin, bytes.len() as u64, fout, bytes.len() as u64, 1 << 30)
            .await
            .unwrap(),
        0
    );
    fs.release(fout).await.unwrap();
    fs.release(fin).await.unwrap();
    assert_eq!(content(&mem, "dst"), bytes);
    assert_eq!(mem.copies.load(Ordering::SeqCst), 1);
    assert_eq!(
        mem.uploads.load(Ordering::SeqCst),
        uploads,
        "no data moved through the client"
    );
    // a partial copy into the middle of a file is not a whole-object copy: the kernel falls back
    let b = fs.lookup(dir, "dst").await.unwrap();
    let fout = fs.open(b.ino, libc::O_RDWR).await.unwrap();
    let fin = fs.open(a.ino, libc::O_RDONLY).await.unwrap();
    assert_eq!(
        fs.copy_file_range(fin, 0, fout, 10, 100).await.unwrap_err().errno,
        libc::EOPNOTSUPP
    );
    fs.release(fout).await.unwrap();
    fs.release(fin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sequential_write_holds_only_the_blocks_in_flight() {
    let (mem, fs) = fs_with(FsOptions {
        uploads_in_flight: 3,
        ..FsOptions::default()
    });
    mem.upload_delay_ms.store(20, Ordering::SeqCst);
    let dir = container_ino(&fs).await;
    let (_, fh) = fs.create(dir, "long", libc::O_WRONLY).await.unwrap();
    let bytes = data(40 * BLOCK_SIZE, 9);
    let mut peak = 0;
    for (i, c) in bytes.chunks(1 << 20).enumerate() {
        fs.write(fh, (i << 20) as u64, c).await.unwrap();
        let h = fs.handle(fh).unwrap();
        if let Handle::Write(w) = h.as_ref() {
            peak = peak.max(w.state.lock().await.buffered_blocks());
        }
    }
    fs.release(fh).await.unwrap();
    assert_eq!(content(&mem, "long"), bytes);
    // In flight (3), finished ones waiting behind a slower one to be reaped in order, one
    // waiting for a slot and the block being filled: a few, never the whole file.
    assert!(peak <= 2 * 3 + 2, "peak {peak} blocks buffered for a 40-block file");
}

/// Shells open, `dup2` and close the first descriptor before the command writes: that flush
/// of a file emptied at open, while the shell still holds it, commits nothing; what is
/// written then commits once. A program closing its last descriptor commits at the close
/// (which sees a commit's error); `: > f` ends as one empty version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_save_commits_one_version() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    let puts = || mem.puts.load(Ordering::SeqCst);
    let (held, last) = (|| true, || false);

    // `echo x > new`: created, the duplicate closed, written, the last close.
    let (a, fh) = fs.create(dir, "new", libc::O_WRONLY).await.unwrap();
    fs.flush(fh, held).await.unwrap();
    assert_eq!(puts(), 0, "the duplicate's close commits nothing");
    fs.write(fh, 0, b"x\n").await.unwrap();
    fs.flush(fh, || panic!("asked only while nothing is written"))
        .await
        .unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!((puts(), content(&mem, "new")), (1, b"x\n".to_vec()));

    // `echo y > new` over it: the server keeps "x" until the write, the mount says empty.
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.flush(fh, held).await.unwrap();
    assert_eq!((puts(), content(&mem, "new")), (1, b"x\n".to_vec()));
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, 0, "answered as truncated");
    fs.write(fh, 0, b"y\n").await.unwrap();
    fs.flush(fh, last).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!((puts(), content(&mem, "new")), (2, b"y\n".to_vec()));

    // `: > new` in bash: the redirect's duplicate, then stdout restored, then the release.
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.flush(fh, held).await.unwrap();
    assert_eq!(puts(), 2);
    fs.flush(fh, last).await.unwrap();
    assert_eq!((puts(), content(&mem, "new")), (3, vec![]), "one empty version");
    fs.release(fh).await.unwrap();
    assert_eq!(puts(), 3);

    // `open(O_TRUNC); close()`: committed by the close, not left to the release.
    write_file(&fs, dir, "new", b"z", 1).await;
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.flush(fh, last).await.unwrap();
    assert_eq!((puts(), content(&mem, "new")), (5, vec![]));
    fs.release(fh).await.unwrap();

    // Still held and never written: the release commits.
    write_file(&fs, dir, "new", b"z", 1).await;
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.flush(fh, held).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!((puts(), content(&mem, "new")), (7, vec![]));

    // fsync asks for it now.
    write_file(&fs, dir, "new", b"z", 1).await;
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.fsync(fh).await.unwrap();
    assert_eq!((puts(), content(&mem, "new")), (9, vec![]));
    fs.release(fh).await.unwrap();
    assert_eq!(puts(), 9, "nothing changed since the fsync");

    // A rename of a file emptied and not yet committed moves the empty content.
    write_file(&fs, dir, "new", b"z", 1).await;
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.flush(fh, held).await.unwrap();
    fs.rename(dir, "new", dir, "moved").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(content(&mem, "moved"), Vec::<u8>::new());
    assert!(!mem
        .objects
        .lock()
        .unwrap()
        .contains_key(&("c".to_string(), "new".to_string())));
}

/// A rewrite is a PUT, which replaces an object's user metadata: the commit sends the
/// current version's again, so `user.meta.*` outlives the content as a file's attributes do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_keeps_the_user_metadata() {
    let (mem, fs) = fs_with(FsOptions::default());
    let dir = container_ino(&fs).await;
    write_file(&fs, dir, "f", b"one", 3).await;
    let a = fs.lookup(dir, "f").await.unwrap();
    fs.setxattr(a.ino, "user.meta.color", b"blue").await.unwrap();
    let fh = fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.write(fh, 0, b"two").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(content(&mem, "f"), b"two");
    assert_eq!(fs.getxattr(a.ino, "user.meta.color", 0).await.unwrap(), b"blue");
}
