//! `.meta` files keep the image registry in step (DESIGN.md §2 ".meta files"): committing
//! `N.meta` registers `N` with exactly what the file says, committing `N` while `N.meta`
//! exists re-registers it, removing `N.meta` (or `N`) unregisters. A bad metafile fails the
//! committing call with EINVAL, keeps its bytes, and says why in `user.imgfs.error`.

use super::error::{FsError, FsResult};
use super::{Fs, Ino, Kind, Loc};
use crate::api::metafile::{self, MetafileError, Registration};
use crate::api::plankton::{self, Image};
use crate::client::{Cause, Registry, Storage, StorageError};
use bytes::Bytes;

/// The extended attribute that tells why the last commit of a `.meta` file failed.
pub const ERROR_XATTR: &str = "user.imgfs.error";
/// Image fields as extended attributes: `user.image.name`, `user.image.properties.KEY`, ...
pub const IMAGE_XATTR: &str = "user.image.";
const PROPERTY_XATTR: &str = "user.image.properties.";

impl<S: Storage + Registry> Fs<S> {
    /// Called after `container/path` was committed (written, or renamed onto). `content` is
    /// a metafile's `(size, bytes)` when the caller still holds them (the bytes are left out
    /// past [`metafile::MAX_BYTES`]).
    pub(super) async fn registry_after_commit(
        &self,
        container: &str,
        path: &str,
        content: Option<(u64, Vec<u8>)>,
    ) -> FsResult<()> {
        match metafile::image_name(path) {
            Some(image) => {
                // A new `N.meta` (good or bad) ends the grace period of one renamed away.
                self.moved_away_lock()
                    .remove(&(container.to_string(), image.to_string()));
                let (size, bytes) = match content {
                    Some(c) => c,
                    None => match self.stored_metafile(container, path).await? {
                        Some(c) => c,
                        None => return Ok(()),
                    },
                };
                self.register_from(container, image, path, size, &bytes).await
            }
            None => {
                let meta = format!("{path}{}", metafile::SUFFIX);
                let Some((size, bytes)) = self.stored_metafile(container, &meta).await? else {
                    return Ok(());
                };
                // The image's content is committed whatever its metafile says; a bad
                // metafile is reported on the metafile.
                match self.register_from(container, path, &meta, size, &bytes).await {
                    Err(e) if e.errno == libc::EINVAL => Ok(()),
                    other => other,
                }
            }
        }
    }

    /// A stored metafile's size and bytes (no bytes past [`metafile::MAX_BYTES`]).
    async fn stored_metafile(&self, container: &str, meta: &str) -> FsResult<Option<(u64, Vec<u8>)>> {
        let Some(st) = self.sh.storage.head(container, meta).await? else {
            return Ok(None);
        };
        if st.size as usize > metafile::MAX_BYTES {
            return Ok(Some((st.size, vec![])));
        }
        let bytes = self.sh.storage.read(container, meta, st.version, 0, st.size).await?;
        Ok(Some((st.size, bytes.to_vec())))
    }

    /// Registers `container/image` from the metafile `meta`'s bytes, if the image exists.
    async fn register_from(&self, container: &str, image: &str, meta: &str, size: u64, bytes: &[u8]) -> FsResult<()> {
        if size as usize > metafile::MAX_BYTES {
            let e = MetafileError::TooLarge(size as usize);
            return Err(self.fail(container, meta, libc::EINVAL, e.to_string()));
        }
        let reg: Registration = match metafile::parse(bytes) {
            Ok(r) => r,
            Err(e) => return Err(self.fail(container, meta, libc::EINVAL, e.to_string())),
        };
        if self.sh.storage.head(container, image).await?.is_none() {
            // `cp -r` may bring the metafile first: the image registers when it is committed.
            tracing::info!(container, image, "metafile stored; the image registers when it exists");
            self.clear_error(container, meta);
            return Ok(());
        }
        match self.sh.storage.register(container, image, &reg).await {
            Ok(img) => {
                tracing::info!(container, image, id = %img.id, "registered");
                self.clear_error(container, meta);
                Ok(())
            }
            Err(e) => {
                let errno = FsError::from(e.clone()).errno;
                Err(self.fail(container, meta, errno, registry_reason(&e)))
            }
        }
    }

    /// Before `container/path` is deleted: removing `N.meta` or `N` unregisters `N`. A
    /// refusal (not the owner) stops the delete.
    pub(super) async fn registry_before_unlink(&self, container: &str, path: &str) -> FsResult<()> {
        let image = metafile::image_name(path).unwrap_or(path);
        let Some(img) = self.sh.storage.image_of(container, image).await? else {
            return Ok(());
        };
        self.sh.storage.unregister(&img.id).await.map_err(|e| {
            let err = FsError::from(e);
            FsError::new(err.errno, format!("unregistering {container}/{image}: {}", err.message))
        })?;
        tracing::info!(container, image, id = %img.id, "unregistered");
        Ok(())
    }

    /// For a metafile path `N.meta`: the registry's live state of `N` in kamaki's layout, if
    /// `N` is registered. A registry that cannot be asked leaves the stored bytes visible.
    pub(super) async fn live_metafile(&self, container: &str, path: &str) -> Option<Bytes> {
        let image = metafile::image_name(path)?;
        if self.is_moved_away(container, image) {
            // As on any filesystem, the name is free after the rename (editors check that
            // before writing the new file).
            return None;
        }
        match self.sh.storage.image_of(container, image).await {
            Ok(img) => img.map(|i| Bytes::from(metafile::render(&i))),
            Err(e) => {
                tracing::warn!(
                    container,
                    image,
                    "registry lookup failed, showing the stored metafile: {e}"
                );
                None
            }
        }
    }

    pub(super) async fn live_metafile_of(&self, ino: Ino, container: &str, path: &str) -> Option<Bytes> {
        let live = self.live_metafile(container, path).await;
        self.set_generated(ino, live.clone());
        live
    }

    /// Whether the content of `ino` can follow the registry: a file named like a metafile, or
    /// an entry of `/.images`. Such files are opened with direct I/O and get no kernel TTL,
    /// so no stale page or size is served.
    pub fn follows_registry(&self, ino: Ino) -> bool {
        let nodes = self.nodes();
        let Some(n) = nodes.by_ino.get(&ino) else {
            return false;
        };
        if n.view {
            let parent = nodes.by_ino.get(&n.parent);
            return n.kind == Kind::File
                && parent.is_some_and(|p| p.name == super::IMAGES_DIR && p.parent == super::ROOT && p.view);
        }
        metafile::image_name(&n.name).is_some()
    }

    /// Whether the kernel may remember that `name` is missing in `parent`: not for metafile
    /// names (a registration elsewhere makes one appear) nor inside the views.
    pub fn may_cache_absence(&self, parent: Ino, name: &str) -> bool {
        metafile::image_name(name).is_none() && self.nodes().by_ino.get(&parent).is_some_and(|p| !p.view)
    }

    pub(super) fn set_generated(&self, ino: Ino, live: Option<Bytes>) {
        if let Some(n) = self.nodes().by_ino.get_mut(&ino) {
            n.generated = live;
        }
    }

    /// The metafiles of this account's images directly under `prefix` of `container`: name
    /// (`N.meta`) and live content. One registry request per listing.
    pub(super) async fn live_metafiles_in(&self, container: &str, prefix: &str) -> Vec<(String, Bytes)> {
        let images = match self.sh.storage.own_images().await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(
                    container,
                    prefix,
                    "listing images failed, metafiles show as stored: {e}"
                );
                return vec![];
            }
        };
        images
            .into_iter()
            .filter(|(c, p, _)| c == container && p.starts_with(prefix) && !p[prefix.len()..].contains('/'))
            .filter(|(c, p, _)| !self.is_moved_away(c, p))
            .map(|(_, p, img)| {
                let name = format!("{}{}", &p[prefix.len()..], metafile::SUFFIX);
                (name, Bytes::from(metafile::render(&img)))
            })
            .collect()
    }

    fn moved_away_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), u64>> {
        self.moved_away.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_moved_away(&self, container: &str, image: &str) -> bool {
        self.moved_away_lock()
            .contains_key(&(container.to_string(), image.to_string()))
    }

    /// `N.meta` was renamed to something else (`mv N.meta elsewhere`, or an editor's backup
    /// rename before it writes the new file): `N` is unregistered unless a new `N.meta` is
    /// committed within [`super::FsOptions::meta_grace`], so an editor's save stays an update.
    pub(super) fn metafile_moved_away(&self, container: &str, image: &str) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let token = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = (container.to_string(), image.to_string());
        self.moved_away_lock().insert(key.clone(), token);
        let (moved, storage, grace) = (
            self.moved_away.clone(),
            self.sh.storage.clone(),
            self.sh.opts.meta_grace,
        );
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let still = {
                let mut m = moved.lock().unwrap_or_else(|p| p.into_inner());
                let still = m.get(&key) == Some(&token);
                if still {
                    m.remove(&key);
                }
                still
            };
            if still {
                unregister_moved_away(&*storage, &key.0, &key.1).await;
            }
        });
    }

    /// At unmount, grace periods still running end at once: no new `N.meta` can come through
    /// this mount any more, and a task left sleeping would die with the process, leaving `N`
    /// registered with its metafile gone.
    pub async fn end_grace_periods(&self) {
        let pending: Vec<(String, String)> = self.moved_away_lock().drain().map(|(k, _)| k).collect();
        for (container, image) in pending {
            unregister_moved_away(&*self.sh.storage, &container, &image).await;
        }
    }

    /// `mv N M` takes `N.meta` along to `M.meta` (the image keeps its id: the server moved
    /// the object, and its registration with it).
    pub(super) async fn move_metafile_along(&self, sc: &str, sp: &str, dc: &str, dp: &str) -> FsResult<()> {
        let (from, to) = (format!("{sp}{}", metafile::SUFFIX), format!("{dp}{}", metafile::SUFFIX));
        if self.sh.storage.head(sc, &from).await?.is_none() {
            return Ok(());
        }
        self.sh.storage.rename(sc, &from, dc, &to, false).await?;
        tracing::info!(from = %format!("{sc}/{from}"), to = %format!("{dc}/{to}"), "metafile moved with its image");
        Ok(())
    }

    /// What the `user.image.*` attributes of `ino` are about: the image object `(container,
    /// path)` where there is one (`N` for `N` and `N.meta`, the location of an entry of
    /// `/.images`), and its registration. Neither for directories and versions.
    async fn image_of_ino(&self, ino: Ino) -> FsResult<(Option<(String, String)>, Option<Image>)> {
        if self.node(ino)?.kind != Kind::File {
            return Ok((None, None));
        }
        match self.loc(ino)? {
            Loc::Object { container, path } if !path.is_empty() => {
                let image = metafile::image_name(&path).unwrap_or(&path).to_string();
                let img = self.sh.storage.image_of(&container, &image).await?;
                Ok((Some((container, image)), img))
            }
            Loc::ImageEntry { name } => {
                let img = self.image_entry(&name).await?;
                let place = img
                    .as_ref()
                    .and_then(|i| plankton::parse_location(&i.location))
                    .map(|(_, c, p)| (c, p));
                Ok((place, img))
            }
            _ => Ok((None, None)),
        }
    }

    /// The `user.image.*` attributes of a registered `N` (and of `N.meta`, and of an entry of
    /// `/.images`), DESIGN.md's table; none for anything else.
    pub async fn image_xattrs(&self, ino: Ino) -> FsResult<Vec<(String, String)>> {
        let Some(img) = self.image_of_ino(ino).await?.1 else {
            return Ok(vec![]);
        };
        let date = crate::api::timefmt::image_date;
        let mut out: Vec<(String, String)> = [
            ("id", img.id.clone()),
            ("owner", img.owner.clone()),
            ("location", img.location.clone()),
            ("size", img.size.to_string()),
            ("checksum", img.checksum.clone()),
            ("created-at", date(img.created_at)),
            ("updated-at", date(img.updated_at)),
            ("name", img.name.clone()),
            ("disk-format", img.disk_format.clone()),
            ("container-format", img.container_format.clone()),
            ("is-public", img.is_public.to_string()),
            ("status", img.status.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{IMAGE_XATTR}{k}"), v))
        .collect();
        for (k, v) in &img.properties {
            out.push((format!("{PROPERTY_XATTR}{k}"), v.clone()));
        }
        Ok(out)
    }

    /// Sets (`Some`) or removes (`None`) a `user.image.*` attribute: the registry changes as
    /// with kamaki's `image modify`. Setting `user.image.name` on an unregistered file
    /// registers it (without a metafile).
    pub async fn set_image_xattr(&self, ino: Ino, name: &str, value: Option<&[u8]>, pid: u32) -> FsResult<()> {
        if self.sh.opts.read_only {
            return Err(FsError::new(libc::EROFS, "read-only mount"));
        }
        let field = name
            .strip_prefix(IMAGE_XATTR)
            .ok_or_else(|| FsError::new(libc::EOPNOTSUPP, format!("{name} is not an image attribute")))?;
        let text = match value {
            Some(v) => Some(
                std::str::from_utf8(v)
                    .map_err(|_| FsError::new(libc::EINVAL, format!("{name}: the value is not UTF-8")))?
                    .trim_end_matches('\n')
                    .to_string(),
            ),
            None => None,
        };
        let (place, img) = self.image_of_ino(ino).await?;
        let Some((container, image)) = place else {
            return Err(FsError::new(libc::EPERM, format!("{name}: not an image file")));
        };
        let Some(mut img) = img else {
            return match (field, text) {
                ("name", Some(n)) if !n.trim().is_empty() => {
                    let img = self.register_with_held(ino, &container, &image, n).await?;
                    tracing::info!(container, image, id = %img.id, "registered by setting user.image.name");
                    Ok(())
                }
                // A copy (rsync -aX, tar --xattrs) writes the image's fields in listing
                // order: they wait for the name.
                (_, Some(v)) if self.is_fresh(ino, pid) => self.hold_image_field(ino, name, field, v),
                _ => Err(FsError::new(
                    libc::ENODATA,
                    format!("{container}/{image} is not a registered image (set user.image.name to register it)"),
                )),
            };
        };
        apply_image_field(&mut img, name, field, text)?;
        let img = self.sh.storage.update(&img).await?;
        tracing::info!(container, image, id = %img.id, attribute = name, "image updated");
        self.rewrite_stored_metafile(&container, &image, &img).await
    }

    /// After an attribute change, a stored `N.meta` is rewritten so file and registry agree.
    async fn rewrite_stored_metafile(&self, container: &str, image: &str, img: &Image) -> FsResult<()> {
        let meta = format!("{image}{}", metafile::SUFFIX);
        if self.sh.storage.head(container, &meta).await?.is_none() {
            return Ok(());
        }
        self.store_metafile(container, &meta, Bytes::from(metafile::render(img)))
            .await
    }

    /// Stores a metafile's bytes (one block at most) as `container/path`.
    pub(super) async fn store_metafile(&self, container: &str, path: &str, bytes: Bytes) -> FsResult<()> {
        let hash = self.sh.storage.upload_block(container, bytes.clone()).await?;
        let ct = crate::api::pithos::OCTET_STREAM;
        match self
            .sh
            .storage
            .put_hashmap(container, path, bytes.len() as u64, &[hash], ct, &[])
            .await?
        {
            crate::client::PutOutcome::Done { .. } => Ok(()),
            crate::client::PutOutcome::Missing(_) => Err(FsError::new(
                libc::EIO,
                format!("the server lost the block of {container}/{path} just sent"),
            )),
        }
    }

    /// `user.imgfs.error` of a metafile: the last commit's error, empty if none.
    pub fn metafile_error(&self, ino: Ino) -> FsResult<Option<String>> {
        let n = self.node(ino)?;
        if n.kind != Kind::File || n.view {
            return Ok(None);
        }
        let (container, path) = self.object_loc(ino)?;
        if metafile::image_name(&path).is_none() {
            return Ok(None);
        }
        let errors = self.meta_errors.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Some(errors.get(&(container, path)).cloned().unwrap_or_default()))
    }

    fn fail(&self, container: &str, meta: &str, errno: i32, reason: String) -> FsError {
        tracing::warn!(container, metafile = meta, "{reason}");
        self.record_error(container, meta, reason.clone());
        FsError::new(errno, format!("{container}/{meta}: {reason}"))
    }

    fn record_error(&self, container: &str, meta: &str, reason: String) {
        self.meta_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((container.to_string(), meta.to_string()), reason);
    }

    fn clear_error(&self, container: &str, meta: &str) {
        self.meta_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(container.to_string(), meta.to_string()));
    }
}

/// The registry's own words where it gave some.
fn registry_reason(e: &StorageError) -> String {
    match &e.source {
        Cause::Status { status, message } => format!("the registry refused ({status}): {message}"),
        _ => e.to_string(),
    }
}

async fn unregister_moved_away<S: Storage + Registry>(storage: &S, container: &str, image: &str) {
    let res = async {
        match storage.image_of(container, image).await? {
            Some(img) => storage.unregister(&img.id).await.map(|_| Some(img.id)),
            None => Ok(None),
        }
    }
    .await;
    match res {
        Ok(Some(id)) => tracing::info!(container, image, id, "unregistered: its metafile was moved away"),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            container,
            image,
            "unregistering after the metafile moved away failed: {e}"
        ),
    }
}

/// `img` with one `user.image.FIELD` set (`Some`) or removed (`None`), checked as the registry
/// would; the fields the registry assigns are read-only.
pub(super) fn apply_image_field(img: &mut Image, name: &str, field: &str, text: Option<String>) -> FsResult<()> {
    let bad = |why: String| FsError::new(libc::EINVAL, format!("{name}: {why}"));
    match (field, text) {
        (f, None) if f.starts_with("properties.") => {
            let key = plankton::normalize_key(&f["properties.".len()..]);
            if img.properties.remove(&key).is_none() {
                return Err(FsError::quiet(libc::ENODATA, format!("no property {key}")));
            }
        }
        (f, Some(v)) if f.starts_with("properties.") => {
            let key = plankton::normalize_key(&f["properties.".len()..]);
            if key.is_empty() || key.len() > plankton::MAX_KEY {
                return Err(bad(format!("a property key has 1 to {} characters", plankton::MAX_KEY)));
            }
            if v.len() > plankton::MAX_VALUE {
                return Err(bad(format!("a value has at most {} bytes", plankton::MAX_VALUE)));
            }
            img.properties.insert(key, v);
            if img.properties.len() > metafile::MAX_PROPERTIES {
                return Err(bad(format!(
                    "an image has at most {} properties",
                    metafile::MAX_PROPERTIES
                )));
            }
        }
        ("name", Some(v)) if !v.trim().is_empty() => img.name = v,
        ("disk-format", Some(v)) if plankton::DISK_FORMATS.contains(&v.as_str()) => img.disk_format = v,
        ("container-format", Some(v)) if plankton::CONTAINER_FORMATS.contains(&v.as_str()) => img.container_format = v,
        ("status", Some(v)) if !v.trim().is_empty() => img.status = v.to_uppercase(),
        ("is-public", Some(v)) => {
            img.is_public = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(bad(format!("expected true or false, not {v:?}"))),
            }
        }
        ("name" | "disk-format" | "container-format" | "status", Some(v)) => {
            return Err(bad(format!("{v:?} is not a valid value")));
        }
        ("name" | "disk-format" | "container-format" | "status" | "is-public", None) => {
            return Err(FsError::new(libc::EPERM, format!("{name} cannot be removed")));
        }
        _ => return Err(FsError::new(libc::EPERM, format!("{name} is read-only"))),
    }
    Ok(())
}
