//! Copies that keep attributes (`cp -a`, `rsync -aX`, `tar --xattrs`) write back every
//! attribute they read, the server-assigned ones (uuid, version, hash, the image's id, ...)
//! included, each tool at its own moment: `cp` before its close (no object exists yet),
//! `rsync` after it (on its temporary name), `tar` between `mknod` and the data; and
//! `user.image.*` in listing order, where `name` (which registers) need not come first.
//!
//! A file is *fresh* for the process that created it here or opened it for writing here
//! (the copy tool: each of them sets the attributes itself), while it is open for writing
//! and for [`FRESH_FOR`] after its creation or its last commit. For that process only (a
//! `setfattr` run after the copy is another process), on a fresh file:
//! - a server-assigned attribute is the source's, and the new object has its own: the write
//!   succeeds and changes nothing;
//! - a settable attribute written before the first commit is held and goes with it (user
//!   metadata in the PUT itself, sharing and public right after, the image fields register
//!   it);
//! - image fields written to an unregistered file before `user.image.name` wait for it, and
//!   register with it.
//!
//! Anywhere else, a server-assigned attribute set to another value is EPERM (DESIGN.md §2).

use super::error::{FsError, FsResult};
use super::images::{apply_image_field, ERROR_XATTR, IMAGE_XATTR};
use super::xattr::object_change;
use super::{Fs, Ino, Kind};
use crate::api::metafile::Registration;
use crate::api::plankton::Image;
use crate::client::{ObjectUpdate, Registry, Storage};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long after its creation or commit here a file takes a copy's attributes quietly.
/// rsync sets them right after its close, tar right after `mknod`.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(60);

/// Fresh files remembered at most before the stale ones are dropped (those holding
/// attributes for a commit are kept while there is room).
const REMEMBERED: usize = 4096;

/// Attributes waiting for a file's first commit or its registration.
#[derive(Debug, Default)]
pub(super) struct Held {
    pub(super) object: ObjectUpdate,
    /// `user.image.FIELD` values by FIELD, in the order written.
    pub(super) image: Vec<(String, String)>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.object == ObjectUpdate::default() && self.image.is_empty()
    }
}

#[derive(Debug)]
pub(super) struct Fresh {
    since: Instant,
    /// The process that created the file or opened it for writing.
    pid: u32,
    held: Held,
}

/// Attributes only the server sets.
pub(super) fn server_assigned(name: &str) -> bool {
    const PITHOS: &[&str] = &[
        "uuid",
        "version",
        "version-timestamp",
        "hash",
        "modified-by",
        "versions",
        "block-size",
        "object-count",
        "bytes-used",
    ];
    const IMAGE: &[&str] = &[
        "id",
        "owner",
        "location",
        "size",
        "checksum",
        "created-at",
        "updated-at",
    ];
    name == ERROR_XATTR
        || name.strip_prefix("user.pithos.").is_some_and(|f| PITHOS.contains(&f))
        || name.strip_prefix(IMAGE_XATTR).is_some_and(|f| IMAGE.contains(&f))
}

/// The registration asked by held image fields with `name`, and a status other than the
/// registry's default, if one was held.
fn registration_of(name: String, fields: &[(String, String)]) -> FsResult<(Registration, Option<String>)> {
    let mut img = Image {
        name,
        ..Image::default()
    };
    let mut reg = Registration::default();
    let mut status = None;
    for (field, value) in fields {
        apply_image_field(&mut img, &format!("{IMAGE_XATTR}{field}"), field, Some(value.clone()))?;
        match field.as_str() {
            "disk-format" => reg.disk_format = Some(img.disk_format.clone()),
            "container-format" => reg.container_format = Some(img.container_format.clone()),
            "status" => status = Some(img.status.clone()),
            _ => {}
        }
    }
    reg.name = Some(img.name);
    reg.is_public = img.is_public;
    reg.properties = img.properties;
    Ok((reg, status))
}

impl<S: Storage + Registry> Fs<S> {
    fn fresh(&self) -> std::sync::MutexGuard<'_, HashMap<Ino, Fresh>> {
        self.fresh.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Process `pid` created `ino` here or opened it for writing (the FUSE adapter says so).
    pub fn written_by(&self, ino: Ino, pid: u32) {
        let mut fresh = self.fresh();
        if fresh.len() >= REMEMBERED && !fresh.contains_key(&ino) {
            fresh.retain(|_, f| f.since.elapsed() < FRESH_FOR);
            if fresh.len() >= REMEMBERED {
                fresh.retain(|_, f| !f.held.is_empty());
            }
        }
        let f = fresh.entry(ino).or_insert_with(|| Fresh {
            since: Instant::now(),
            pid,
            held: Held::default(),
        });
        f.since = Instant::now();
        f.pid = pid;
    }

    /// `ino` was committed just now: its window starts again.
    pub(super) fn committed_here(&self, ino: Ino) {
        if let Some(f) = self.fresh().get_mut(&ino) {
            f.since = Instant::now();
        }
    }

    pub(super) fn is_fresh(&self, ino: Ino, pid: u32) -> bool {
        let recent = match self.fresh().get(&ino) {
            Some(f) if pid != 0 && f.pid == pid => f.since.elapsed() < FRESH_FOR,
            _ => return false,
        };
        recent || !self.writers_of(ino).is_empty()
    }

    /// On a fresh file, a copy's attribute that is not set at once: `Ok(true)` when it is
    /// taken care of (ignored, or held for the first commit), `Ok(false)` when it is set as
    /// usual.
    pub(super) fn copy_attribute(&self, ino: Ino, name: &str, value: &[u8], pid: u32) -> FsResult<bool> {
        if !self.is_fresh(ino, pid) {
            return Ok(false);
        }
        if server_assigned(name) {
            tracing::debug!(
                ino,
                attribute = name,
                "a copy's server-assigned attribute: the new object has its own"
            );
            return Ok(true);
        }
        let n = self.node(ino)?;
        if n.kind != Kind::File || n.view || n.fetched.is_some() {
            return Ok(false);
        }
        let text = std::str::from_utf8(value)
            .map_err(|_| FsError::new(libc::EINVAL, format!("{name}: the value is not UTF-8")))?
            .trim_end_matches('\n')
            .to_string();
        if let Some(field) = name.strip_prefix(IMAGE_XATTR) {
            self.hold_image_field(ino, name, field, text)?;
        } else if name.starts_with("user.pithos.") || name.starts_with("user.meta.") {
            let change = object_change(name, Some(text))?;
            let mut fresh = self.fresh();
            let Some(f) = fresh.get_mut(&ino) else {
                return Ok(false);
            };
            let object = &mut f.held.object;
            object
                .meta
                .retain(|(k, _)| !change.meta.iter().any(|(c, _)| c.eq_ignore_ascii_case(k)));
            object.meta.extend(change.meta);
            object.sharing = change.sharing.or(object.sharing.take());
            object.public = change.public.or(object.public);
        } else {
            return Ok(false);
        }
        tracing::debug!(ino, attribute = name, "held for the file's first commit");
        Ok(true)
    }

    /// Holds `user.image.FIELD` (checked now) for the registration to come.
    pub(super) fn hold_image_field(&self, ino: Ino, name: &str, field: &str, text: String) -> FsResult<()> {
        apply_image_field(&mut Image::default(), name, field, Some(text.clone()))?;
        let mut fresh = self.fresh();
        let Some(f) = fresh.get_mut(&ino) else {
            return Err(FsError::new(
                libc::ENODATA,
                format!("{name}: the file is no longer new here"),
            ));
        };
        f.held.image.retain(|(k, _)| k != field);
        f.held.image.push((field.to_string(), text));
        Ok(())
    }

    /// What is held for `ino`, taken out (a failed commit puts it back with [`Self::hold_again`]).
    pub(super) fn take_held(&self, ino: Ino) -> Held {
        self.fresh()
            .get_mut(&ino)
            .map(|f| std::mem::take(&mut f.held))
            .unwrap_or_default()
    }

    pub(super) fn hold_again(&self, ino: Ino, held: Held) {
        if held.is_empty() {
            return;
        }
        if let Some(f) = self.fresh().get_mut(&ino) {
            f.held = held;
        }
    }

    /// Registers `container/image` as `name` with the image fields held for `ino`.
    pub(super) async fn register_with_held(
        &self,
        ino: Ino,
        container: &str,
        image: &str,
        name: String,
    ) -> FsResult<Image> {
        let held = self.take_held(ino);
        let (reg, status) = match registration_of(name, &held.image) {
            Ok(r) => r,
            Err(e) => {
                self.hold_again(ino, held);
                return Err(e);
            }
        };
        let mut img = match self.sh.storage.register(container, image, &reg).await {
            Ok(img) => img,
            Err(e) => {
                self.hold_again(ino, held);
                return Err(e.into());
            }
        };
        if let Some(s) = status.filter(|s| *s != img.status) {
            img.status = s;
            img = self.sh.storage.update(&img).await?;
        }
        Ok(img)
    }

    /// After the first commit of `ino` as `container/path`: what was held and could not go
    /// with the PUT (user metadata did).
    pub(super) async fn apply_held(&self, ino: Ino, container: &str, path: &str, held: Held) -> FsResult<()> {
        if held.object.sharing.is_some() || held.object.public.is_some() {
            let update = ObjectUpdate {
                meta: vec![],
                ..held.object
            };
            self.sh.storage.update_object(container, path, &update).await?;
            tracing::info!(container, path, "a copy's sharing attributes set");
        }
        let name = held
            .image
            .iter()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.clone())
            .filter(|n| !n.trim().is_empty());
        let fields: Vec<(String, String)> = held.image.into_iter().filter(|(k, _)| k != "name").collect();
        match name {
            Some(name) => {
                self.hold_again(
                    ino,
                    Held {
                        image: fields,
                        ..Held::default()
                    },
                );
                let img = self.register_with_held(ino, container, path, name).await?;
                tracing::info!(container, path, id = %img.id, "registered with a copy's user.image attributes");
            }
            None => self.hold_again(
                ino,
                Held {
                    image: fields,
                    ..Held::default()
                },
            ),
        }
        Ok(())
    }
}
