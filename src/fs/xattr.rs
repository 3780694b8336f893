//! Extended attributes (DESIGN.md §2 "Extended attributes"): `user.image.*` (the registry,
//! in `images.rs`), `user.pithos.*` and `user.meta.*` (object headers, and a container's
//! policy and usage on its directory), `user.imgfs.error` (why a metafile's last commit
//! failed). `system.*` and `security.*` answer EOPNOTSUPP: ENOSYS would switch xattrs off for
//! the whole mount.

use super::error::{FsError, FsResult};
use super::images::{ERROR_XATTR, IMAGE_XATTR};
use super::{Fs, Ino, Kind, Loc};
use crate::api::timefmt;
use crate::client::{ObjectInfo, ObjectUpdate, Registry, Storage};
use std::time::{Duration, Instant};

const PITHOS_XATTR: &str = "user.pithos.";
const META_XATTR: &str = "user.meta.";
const VERSIONS_XATTR: &str = "user.pithos.versions";

/// How long what was listed for one process answers its reads of the same inode's
/// attributes. `getfattr -d` lists twice, then reads each attribute twice (size, value); each
/// answer used to cost a HEAD and a registry request: 94 requests for an image with five
/// properties, which against a distant cloud is seconds.
const SNAPSHOT_FOR: Duration = Duration::from_millis(250);

/// The attributes of one inode as listed for one process (a single entry: `getfattr` goes
/// file by file).
pub(super) struct Snapshot {
    ino: Ino,
    pid: u32,
    at: Instant,
    names: Vec<String>,
    /// `user.image.*`, `user.pithos.*` (without the version list) and `user.meta.*`.
    values: Vec<(String, String)>,
    /// The version list, once read (a request per version).
    versions: Option<String>,
}

/// What the `user.pithos.*` / `user.meta.*` attributes of an inode describe.
enum Target {
    /// An object, or one version of it.
    Object {
        container: String,
        path: String,
        version: Option<u64>,
    },
    Container(String),
    Nothing,
}

fn not_supported(name: &str) -> FsError {
    FsError::quiet(
        libc::EOPNOTSUPP,
        format!("attribute namespace of {name} is not supported"),
    )
}

fn no_attr(name: &str) -> FsError {
    FsError::quiet(libc::ENODATA, format!("no attribute {name}"))
}

/// A value without the newlines that end it (as `text_of` reads what is set).
fn without_newlines(mut v: &[u8]) -> &[u8] {
    while let Some(rest) = v.strip_suffix(b"\n") {
        v = rest;
    }
    v
}

fn text_of(name: &str, value: &[u8]) -> FsResult<String> {
    Ok(std::str::from_utf8(value)
        .map_err(|_| FsError::new(libc::EINVAL, format!("{name}: the value is not UTF-8")))?
        .trim_end_matches('\n')
        .to_string())
}

/// `user.pithos.*` of an object, from its headers (sharing and public only when set).
fn object_xattrs(info: &ObjectInfo) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = [
        ("uuid", info.uuid.clone()),
        ("version", info.stat.version.to_string()),
        ("version-timestamp", info.version_timestamp.clone()),
        ("hash", info.stat.hash.clone()),
        ("modified-by", info.modified_by.clone()),
        ("sharing", info.sharing.clone()),
        ("public", info.public.clone()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (format!("{PITHOS_XATTR}{k}"), v))
    .collect();
    for (k, v) in &info.meta {
        out.push((format!("{META_XATTR}{k}"), v.clone()));
    }
    out
}

/// What setting (`Some`) or removing (`None`) `user.meta.KEY`, `user.pithos.sharing` or
/// `user.pithos.public` of an object asks the server for; the other `user.pithos.*` are
/// read-only.
pub(super) fn object_change(name: &str, value: Option<String>) -> FsResult<ObjectUpdate> {
    let bad = |why: String| FsError::new(libc::EINVAL, format!("{name}: {why}"));
    let mut update = ObjectUpdate::default();
    if let Some(key) = name.strip_prefix(META_XATTR) {
        if key.is_empty() || key.len() > crate::api::pithos::MAX_META_KEY {
            return Err(bad(format!(
                "a metadata key has 1 to {} characters",
                crate::api::pithos::MAX_META_KEY
            )));
        }
        if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(bad("a metadata key has letters, digits, '-' and '_' only".into()));
        }
        if value
            .as_ref()
            .is_some_and(|v| v.len() > crate::api::pithos::MAX_META_VALUE)
        {
            return Err(bad(format!(
                "a value has at most {} bytes",
                crate::api::pithos::MAX_META_VALUE
            )));
        }
        update.meta.push((key.to_string(), value.filter(|v| !v.is_empty())));
        return Ok(update);
    }
    match (name.strip_prefix(PITHOS_XATTR).unwrap_or(name), value) {
        ("sharing", v) => {
            let v = v.unwrap_or_default();
            crate::api::pithos::Sharing::parse(&v).map_err(|e| bad(e.to_string()))?;
            update.sharing = Some(v);
        }
        ("public", None) => update.public = Some(false),
        ("public", Some(v)) => {
            update.public = Some(match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" | "" => false,
                _ => return Err(bad(format!("expected true or false, not {v:?}"))),
            })
        }
        _ => return Err(FsError::new(libc::EPERM, format!("{name} is read-only"))),
    }
    Ok(update)
}

impl<S: Storage + Registry> Fs<S> {
    fn xattr_target(&self, ino: Ino) -> FsResult<Target> {
        let n = self.node(ino)?;
        Ok(match self.loc(ino)? {
            Loc::Object { container, path } if path.is_empty() => Target::Container(container),
            // A file not committed yet has no object, a generated-only metafile neither (HEAD
            // answers None for it).
            Loc::Object { container, path } if n.kind == Kind::File && n.fetched.is_some() => Target::Object {
                container,
                path,
                version: None,
            },
            Loc::Version {
                container,
                path,
                version,
            } => Target::Object {
                container,
                path,
                version: Some(version),
            },
            _ => Target::Nothing,
        })
    }

    /// The `user.pithos.*` and `user.meta.*` attributes (without the version list, which
    /// costs a request per version and is computed only when asked for).
    async fn pithos_xattrs(&self, target: &Target) -> FsResult<Vec<(String, String)>> {
        match target {
            Target::Object {
                container,
                path,
                version,
            } => Ok(self
                .sh
                .storage
                .object_info(container, path, *version)
                .await?
                .map(|i| object_xattrs(&i))
                .unwrap_or_default()),
            Target::Container(c) => {
                let info = self.sh.storage.container_info(c).await?;
                Ok([
                    ("versioning", info.versioning),
                    ("quota", info.quota.to_string()),
                    ("block-size", info.block_size.to_string()),
                    ("object-count", info.object_count.to_string()),
                    ("bytes-used", info.bytes_used.to_string()),
                ]
                .into_iter()
                .map(|(k, v)| (format!("{PITHOS_XATTR}{k}"), v))
                .collect())
            }
            Target::Nothing => Ok(vec![]),
        }
    }

    /// `user.pithos.versions`: one line per version, `<id> <ISO time> <bytes>`, oldest first.
    async fn versions_xattr(&self, container: &str, path: &str) -> FsResult<String> {
        let mut out = String::new();
        for (id, time) in self.sh.storage.versions(container, path).await? {
            if let Some(info) = self.sh.storage.object_info(container, path, Some(id)).await? {
                out.push_str(&format!("{id} {} {}\n", timefmt::iso_micros(time), info.stat.size));
            }
        }
        Ok(out)
    }

    fn snapshot(&self) -> std::sync::MutexGuard<'_, Option<Snapshot>> {
        self.xattr_snapshot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `pid` listed for `ino` moments ago, if anything.
    fn snapshot_of<T>(&self, ino: Ino, pid: u32, f: impl FnOnce(&Snapshot) -> T) -> Option<T> {
        let snap = self.snapshot();
        snap.as_ref()
            .filter(|s| pid != 0 && s.ino == ino && s.pid == pid && s.at.elapsed() < SNAPSHOT_FOR)
            .map(f)
    }

    /// Anything that may change attributes (a commit, a rename, an unlink, a set or remove)
    /// ends the snapshot, so a process sees its own changes at once.
    pub(super) fn forget_xattr_snapshot(&self) {
        *self.snapshot() = None;
    }

    /// An extended attribute's value; `pid` asked (0: unknown).
    pub async fn getxattr(&self, ino: Ino, name: &str, pid: u32) -> FsResult<Vec<u8>> {
        if !name.starts_with("user.") {
            return Err(not_supported(name));
        }
        let snapshotted = name != VERSIONS_XATTR
            && (name.starts_with(IMAGE_XATTR) || name.starts_with(PITHOS_XATTR) || name.starts_with(META_XATTR));
        let want = name.to_ascii_lowercase();
        let from_snapshot = if snapshotted {
            self.snapshot_of(ino, pid, |s| {
                s.values
                    .iter()
                    .find(|(k, _)| k == name || (!name.starts_with(IMAGE_XATTR) && *k == want))
                    .map(|(_, v)| v.clone())
            })
        } else {
            None
        };
        let found = if let Some(v) = from_snapshot {
            v
        } else if name == ERROR_XATTR {
            self.metafile_error(ino)?
        } else if name.starts_with(IMAGE_XATTR) {
            self.image_xattrs(ino)
                .await?
                .into_iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
        } else if name == VERSIONS_XATTR {
            match self.snapshot_of(ino, pid, |s| s.versions.clone()).flatten() {
                Some(v) => Some(v),
                None => match self.xattr_target(ino)? {
                    Target::Object {
                        container,
                        path,
                        version: None,
                    } => {
                        let v = self.versions_xattr(&container, &path).await?;
                        if let Some(s) = self.snapshot().as_mut().filter(|s| s.ino == ino && s.pid == pid) {
                            s.versions = Some(v.clone());
                        }
                        Some(v)
                    }
                    _ => None,
                },
            }
        } else if name.starts_with(PITHOS_XATTR) || name.starts_with(META_XATTR) {
            let target = self.xattr_target(ino)?;
            self.pithos_xattrs(&target)
                .await?
                .into_iter()
                .find(|(k, _)| *k == want || k == name)
                .map(|(_, v)| v)
        } else {
            None
        };
        found.map(String::into_bytes).ok_or_else(|| no_attr(name))
    }

    /// The attribute names of `ino`; what `pid` reads of them next comes from the same look.
    pub async fn listxattr(&self, ino: Ino, pid: u32) -> FsResult<Vec<String>> {
        if let Some(names) = self.snapshot_of(ino, pid, |s| s.names.clone()) {
            return Ok(names);
        }
        let mut values = self.image_xattrs(ino).await?;
        let target = self.xattr_target(ino)?;
        values.extend(self.pithos_xattrs(&target).await?);
        let mut names: Vec<String> = values.iter().map(|(k, _)| k.clone()).collect();
        if matches!(target, Target::Object { version: None, .. }) {
            names.push(VERSIONS_XATTR.to_string());
        }
        if self.metafile_error(ino)?.is_some() {
            names.push(ERROR_XATTR.to_string());
        }
        *self.snapshot() = Some(Snapshot {
            ino,
            pid,
            at: Instant::now(),
            names: names.clone(),
            values,
            versions: None,
        });
        Ok(names)
    }

    /// Sets an attribute for process `pid` (0: unknown).
    pub async fn setxattr(&self, ino: Ino, name: &str, value: &[u8], pid: u32) -> FsResult<()> {
        self.forget_xattr_snapshot();
        if !name.starts_with("user.") {
            return Err(not_supported(name));
        }
        // What `cp -a`, `rsync -X` and `tar --xattrs` write back is what they read: the
        // current value changes nothing, read-only or not (and sends no update, which
        // would make a version).
        if let Ok(current) = self.getxattr(ino, name, 0).await {
            if without_newlines(&current) == without_newlines(value) {
                tracing::debug!(ino, attribute = name, "set to the value it has: nothing to do");
                return Ok(());
            }
        }
        if self.copy_attribute(ino, name, value, pid)? {
            return Ok(());
        }
        if name.starts_with(IMAGE_XATTR) {
            return self.set_image_xattr(ino, name, Some(value), pid).await;
        }
        if name.starts_with(PITHOS_XATTR) || name.starts_with(META_XATTR) {
            let value = text_of(name, value)?;
            return self.set_pithos_xattr(ino, name, Some(value)).await;
        }
        if name == ERROR_XATTR {
            return Err(FsError::new(libc::EPERM, format!("{name} is read-only")));
        }
        Err(FsError::new(
            libc::EOPNOTSUPP,
            format!("{name}: only user.image.*, user.pithos.* and user.meta.* attributes exist here"),
        ))
    }

    pub async fn removexattr(&self, ino: Ino, name: &str) -> FsResult<()> {
        self.forget_xattr_snapshot();
        if name.starts_with(IMAGE_XATTR) {
            return self.set_image_xattr(ino, name, None, 0).await;
        }
        if name.starts_with(PITHOS_XATTR) || name.starts_with(META_XATTR) {
            return self.set_pithos_xattr(ino, name, None).await;
        }
        Err(FsError::quiet(libc::ENODATA, format!("no removable attribute {name}")))
    }

    /// Sets (`Some`) or removes (`None`) `user.meta.KEY`, `user.pithos.sharing`,
    /// `user.pithos.public` on an object, or `user.pithos.versioning` / `.quota` on a
    /// container's directory. Everything else of `user.pithos.*` is read-only.
    async fn set_pithos_xattr(&self, ino: Ino, name: &str, value: Option<String>) -> FsResult<()> {
        if self.sh.opts.read_only {
            return Err(FsError::new(libc::EROFS, "read-only mount"));
        }
        let bad = |why: String| FsError::new(libc::EINVAL, format!("{name}: {why}"));
        let read_only = || FsError::new(libc::EPERM, format!("{name} is read-only"));
        match self.xattr_target(ino)? {
            Target::Object {
                container,
                path,
                version: None,
            } => {
                if let (Some(key), None) = (name.strip_prefix(META_XATTR), &value) {
                    let info = self.sh.storage.object_info(&container, &path, None).await?;
                    let has = info.is_some_and(|i| i.meta.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)));
                    if !has {
                        return Err(no_attr(name));
                    }
                }
                let update = object_change(name, value)?;
                self.sh.storage.update_object(&container, &path, &update).await?;
                tracing::info!(container, path, attribute = name, "object attributes changed");
                Ok(())
            }
            Target::Container(_) if !name.starts_with(PITHOS_XATTR) => Err(FsError::new(
                libc::EOPNOTSUPP,
                format!("{name}: a container's directory has only user.pithos.* attributes"),
            )),
            Target::Container(c) => {
                match (&name[PITHOS_XATTR.len()..], value) {
                    ("versioning", Some(v)) => {
                        let v = v.trim().to_ascii_lowercase();
                        if v != "auto" && v != "none" {
                            return Err(bad(format!("expected auto or none, not {v:?}")));
                        }
                        self.sh.storage.set_container_policy(&c, Some(&v), None).await?;
                    }
                    ("quota", Some(v)) => {
                        let q: u64 = v
                            .trim()
                            .parse()
                            .map_err(|_| bad(format!("expected a number of bytes, not {v:?}")))?;
                        self.sh.storage.set_container_policy(&c, None, Some(q)).await?;
                    }
                    ("quota", None) => self.sh.storage.set_container_policy(&c, None, Some(0)).await?,
                    _ => return Err(read_only()),
                }
                tracing::info!(container = c, attribute = name, "container policy changed");
                Ok(())
            }
            Target::Object { version: Some(_), .. } => Err(FsError::new(libc::EROFS, "versions are read-only")),
            Target::Nothing => Err(FsError::new(
                libc::EPERM,
                format!("{name}: only objects and containers have these attributes"),
            )),
        }
    }
}
