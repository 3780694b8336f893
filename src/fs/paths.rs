//! Path mapping: which server path (account, container, object, or one of the read-only views)
//! an inode's names from the mount root stand for.

use super::{Fs, FsError, FsResult, Ino, NAME_MAX, ROOT};
use crate::client::{Registry, Storage};

/// Where an inode is on the server.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Loc {
    /// The account (lists containers).
    Account,
    /// `path` is empty for the container itself, else an object name (a file or directory).
    Object { container: String, path: String },
    /// `D/.versions`: one directory per file of `D` (`dir`, empty for the container).
    VersionRoot { container: String, dir: String },
    /// `D/.versions/N`: the versions of object `path`.
    Versions { container: String, path: String },
    /// `D/.versions/N/<id>`: one version of object `path`, read-only.
    Version {
        container: String,
        path: String,
        version: u64,
    },
    /// `/.images`: every image the account can see.
    Images,
    /// `/.images/<entry>`.
    ImageEntry { name: String },
}

/// The hidden directory of versions in every directory (reachable by name, never listed).
pub const VERSIONS_DIR: &str = ".versions";
/// The read-only view of every visible image, at the mount root.
pub const IMAGES_DIR: &str = ".images";

pub(super) fn check_name(name: &str) -> FsResult<()> {
    if name.is_empty() || name.contains('/') || name.contains('\0') {
        return Err(FsError::new(libc::EINVAL, format!("invalid name {name:?}")));
    }
    if name.len() > NAME_MAX {
        return Err(FsError::new(libc::ENAMETOOLONG, "name too long"));
    }
    Ok(())
}

impl<S: Storage + Registry> Fs<S> {
    /// The names from the mount root down to `ino`.
    pub(super) fn names(&self, ino: Ino) -> FsResult<Vec<String>> {
        let nodes = self.nodes();
        let mut names = vec![];
        let mut cur = ino;
        while cur != ROOT {
            let n = nodes
                .by_ino
                .get(&cur)
                .ok_or_else(|| FsError::new(libc::ENOENT, format!("stale inode {ino}")))?;
            names.push(n.name.clone());
            cur = n.parent;
        }
        names.reverse();
        Ok(names)
    }

    pub(super) fn loc(&self, ino: Ino) -> FsResult<Loc> {
        self.locate(self.names(ino)?)
    }

    pub(super) fn child_loc(&self, parent: Ino, name: &str) -> FsResult<Loc> {
        let mut names = self.names(parent)?;
        names.push(name.to_string());
        self.locate(names)
    }

    /// What a path from the mount root names: the account, a container, an object, or one of
    /// the views (`.images` at the root, `.versions` in any directory of a container).
    pub(super) fn locate(&self, mut names: Vec<String>) -> FsResult<Loc> {
        let deeper = || FsError::quiet(libc::ENOENT, "no such entry");
        if names.first().is_some_and(|n| n == IMAGES_DIR) {
            return match names.len() {
                1 => Ok(Loc::Images),
                2 => Ok(Loc::ImageEntry {
                    name: names.pop().unwrap_or_default(),
                }),
                _ => Err(FsError::quiet(libc::ENOTDIR, "an image entry is a file")),
            };
        }
        let (container, rest) = match &self.sh.opts.container {
            Some(c) => (c.clone(), names),
            None if names.is_empty() => return Ok(Loc::Account),
            None => {
                let rest = names.split_off(1);
                (names.pop().unwrap_or_default(), rest)
            }
        };
        let Some(at) = rest.iter().position(|n| n == VERSIONS_DIR) else {
            return Ok(Loc::Object {
                container,
                path: rest.join("/"),
            });
        };
        let dir = rest[..at].join("/");
        let join = |n: &str| {
            if dir.is_empty() {
                n.to_string()
            } else {
                format!("{dir}/{n}")
            }
        };
        match &rest[at + 1..] {
            [] => Ok(Loc::VersionRoot { container, dir }),
            [n] => Ok(Loc::Versions {
                container,
                path: join(n),
            }),
            [n, id] => Ok(Loc::Version {
                container,
                path: join(n),
                version: id.parse().map_err(|_| deeper())?,
            }),
            _ => Err(FsError::quiet(libc::ENOTDIR, "a version is a file")),
        }
    }

    pub(super) fn object_loc(&self, ino: Ino) -> FsResult<(String, String)> {
        match self.loc(ino)? {
            Loc::Object { container, path } if !path.is_empty() => Ok((container, path)),
            _ => Err(FsError::new(libc::EISDIR, "is a directory")),
        }
    }
}
