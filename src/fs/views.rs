//! The read-only views of DESIGN.md §2: `D/.versions/N/<id>` (every version of `N` as a file
//! named by its id, with the version's time as mtime; restore one with `cp`) and `/.images/`
//! (every image the account can see, one file per image holding its metafile, with its
//! `user.image.*` attributes; `rm` of an entry unregisters it as `kamaki image unregister`
//! does, with the registry's permissions).

use super::error::{FsError, FsResult};
use super::{Attr, Fs, Handle, Ino, Kind, Loc, ReadHandle, NAME_MAX};
use crate::api::metafile;
use crate::api::plankton::Image;
use crate::client::{Registry, Storage};
use bytes::Bytes;
use std::collections::HashMap;

impl<S: Storage + Registry> Fs<S> {
    /// Records a view entry (read-only) and returns its attributes.
    pub(super) fn remember_view(
        &self,
        parent: Ino,
        name: &str,
        kind: Kind,
        size: u64,
        mtime: i64,
        version: u64,
    ) -> Attr {
        let mut nodes = self.nodes();
        let ino = self.remember_locked(&mut nodes, parent, name, kind, size, mtime, version);
        let n = nodes.by_ino.get_mut(&ino).expect("just remembered");
        n.view = true;
        self.attr_of(ino, n)
    }

    /// Looks up `parent/name` where it lands in a view (`loc` is where).
    pub(super) async fn resolve_view(&self, parent: Ino, name: &str, loc: Loc) -> FsResult<Attr> {
        let now = super::now_micros();
        match loc {
            Loc::Images | Loc::VersionRoot { .. } => Ok(self.remember_view(parent, name, Kind::Dir, 0, now, 0)),
            Loc::Versions { container, path } => {
                let versions = match self.sh.storage.versions(&container, &path).await {
                    Err(e) if e.kind() == crate::client::ErrorKind::NotFound => vec![],
                    other => other?,
                };
                match versions.last() {
                    Some(&(_, mtime)) => Ok(self.remember_view(parent, name, Kind::Dir, 0, mtime, 0)),
                    None => Err(FsError::quiet(
                        libc::ENOENT,
                        format!("no versions of {container}/{path}"),
                    )),
                }
            }
            Loc::Version {
                container,
                path,
                version,
            } => match self.sh.storage.object_info(&container, &path, Some(version)).await? {
                Some(info) => {
                    Ok(self.remember_view(parent, name, Kind::File, info.stat.size, info.stat.mtime, version))
                }
                None => Err(FsError::quiet(
                    libc::ENOENT,
                    format!("no version {version} of {container}/{path}"),
                )),
            },
            Loc::ImageEntry { name: entry } => match self.image_entry(&entry).await? {
                Some(img) => {
                    let len = metafile::render(&img).len() as u64;
                    Ok(self.remember_view(parent, name, Kind::File, len, img.updated_at, 0))
                }
                None => Err(FsError::quiet(libc::ENOENT, format!("no image {entry}"))),
            },
            Loc::Account | Loc::Object { .. } => Err(FsError::new(libc::EINVAL, "not a view")),
        }
    }

    /// The entries of a view directory.
    pub(super) async fn list_view(&self, ino: Ino, loc: Loc) -> FsResult<Vec<(String, Attr)>> {
        let mut out = vec![];
        match loc {
            Loc::Images => {
                for (entry, img) in self.image_entries().await? {
                    let len = metafile::render(&img).len() as u64;
                    let attr = self.remember_view(ino, &entry, Kind::File, len, img.updated_at, 0);
                    out.push((entry, attr));
                }
            }
            Loc::Versions { container, path } => {
                for (version, _) in self.sh.storage.versions(&container, &path).await? {
                    // A version purged since the list was made is simply not shown.
                    if let Some(info) = self.sh.storage.object_info(&container, &path, Some(version)).await? {
                        let name = version.to_string();
                        let attr = self.remember_view(ino, &name, Kind::File, info.stat.size, info.stat.mtime, version);
                        out.push((name, attr));
                    }
                }
            }
            _ => return Err(FsError::new(libc::ENOTDIR, "not a directory")),
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Opens a view file for reading; views cannot be written.
    pub(super) async fn open_view(&self, ino: Ino, loc: Loc, writing: bool) -> FsResult<u64> {
        if writing {
            return Err(FsError::new(libc::EROFS, "versions and the image list are read-only"));
        }
        match loc {
            Loc::Version {
                container,
                path,
                version,
            } => {
                let (size, hashes) = self.hashmap_of(&container, &path, version).await?;
                let cache = self.pages.admit(ino, version);
                Ok(self.add_handle(Handle::Read(ReadHandle::new(
                    ino,
                    (container, path),
                    version,
                    (size, hashes),
                    cache,
                ))))
            }
            Loc::ImageEntry { name } => {
                let img = self
                    .image_entry(&name)
                    .await?
                    .ok_or_else(|| FsError::quiet(libc::ENOENT, format!("no image {name}")))?;
                let data = Bytes::from(metafile::render(&img));
                Ok(self.add_handle(Handle::Generated { ino, data }))
            }
            _ => Err(FsError::new(libc::EISDIR, "is a directory")),
        }
    }

    /// `rm /.images/<entry>`: unregisters the image (the object and any metafile stay, as
    /// with `kamaki image unregister`). Another user's image → EACCES from the registry.
    pub(super) async fn unlink_view(&self, loc: Loc) -> FsResult<()> {
        let Loc::ImageEntry { name } = loc else {
            return Err(FsError::new(libc::EROFS, "versions are read-only"));
        };
        let img = self
            .image_entry(&name)
            .await?
            .ok_or_else(|| FsError::quiet(libc::ENOENT, format!("no image {name}")))?;
        self.sh.storage.unregister(&img.id).await.map_err(|e| {
            let err = FsError::from(e);
            FsError::new(
                err.errno,
                format!("unregistering image {} ({name}): {}", img.id, err.message),
            )
        })?;
        tracing::info!(id = %img.id, entry = name, "unregistered from the image list");
        Ok(())
    }

    /// The image an entry of `/.images` names.
    pub(super) async fn image_entry(&self, entry: &str) -> FsResult<Option<Image>> {
        Ok(self
            .image_entries()
            .await?
            .into_iter()
            .find(|(n, _)| n == entry)
            .map(|(_, i)| i))
    }

    /// Every visible image under a file name: its name, made safe for a path component, and
    /// followed by its id where two images share a name.
    async fn image_entries(&self) -> FsResult<Vec<(String, Image)>> {
        let images = self.sh.storage.visible_images().await?;
        let safe = |img: &Image| {
            let n: String = img
                .name
                .chars()
                .map(|c| if c == '/' || c == '\0' { '_' } else { c })
                .collect();
            if n.is_empty() || n == "." || n == ".." {
                img.id.clone()
            } else {
                n
            }
        };
        let mut count: HashMap<String, usize> = HashMap::new();
        for img in &images {
            *count.entry(safe(img)).or_default() += 1;
        }
        Ok(images
            .into_iter()
            .map(|img| {
                let base = safe(&img);
                let mut name = if count[&base] > 1 {
                    format!("{base} ({})", img.id)
                } else {
                    base
                };
                if name.len() > NAME_MAX {
                    name = img.id.clone();
                }
                (name, img)
            })
            .collect())
    }
}
