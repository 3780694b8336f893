//! Directory listing: a directory's entries paged from the server (with the registry's
//! metafiles and this mount's uncommitted files) into a snapshot held by the directory handle.

use super::handles::Handle;
use super::paths::Loc;
use super::{listing, now_micros, Attr, DirSink, Fs, FsError, FsResult, Ino, Kind, PAGE};
use crate::client::{Listed, Registry, Storage};

impl<S: Storage + Registry> Fs<S> {
    /// All entries of a directory (paged through the server's listing), remembered as inodes.
    pub(super) async fn list_dir(&self, ino: Ino) -> FsResult<Vec<(String, Attr)>> {
        let mut out = vec![];
        match self.loc(ino)? {
            Loc::Account => {
                for c in self.sh.storage.list_containers().await? {
                    let attr = self.remember_attr(ino, &c.name, Kind::Dir, 0, c.mtime, 0);
                    out.push((c.name, attr));
                }
            }
            Loc::Object { container, path } => {
                let prefix = if path.is_empty() {
                    String::new()
                } else {
                    format!("{path}/")
                };
                // The registry's view of this directory's metafiles is asked meanwhile.
                let listing = async {
                    let mut out = vec![];
                    let mut seen_dirs = std::collections::HashSet::new();
                    listing::each_child(self.sh.storage.as_ref(), &container, &prefix, PAGE, |rest, e| {
                        let (kind, size, mtime, version) = match e {
                            Listed::Object(o) => (
                                if o.is_dir() { Kind::Dir } else { Kind::File },
                                o.size,
                                o.mtime,
                                o.version,
                            ),
                            Listed::Prefix(_) => (Kind::Dir, 0, now_micros(), 0),
                        };
                        let name = match e {
                            Listed::Prefix(_) => rest.trim_end_matches('/'),
                            Listed::Object(_) => rest,
                        };
                        // A name with a trailing '/' or an empty segment cannot be a file name here.
                        if name.is_empty() || name.contains('/') {
                            return;
                        }
                        if kind == Kind::Dir && !seen_dirs.insert(name.to_string()) {
                            return;
                        }
                        let attr = self.remember_attr(ino, name, kind, size, mtime, version);
                        out.push((name.to_string(), attr));
                    })
                    .await?;
                    Ok::<_, FsError>(out)
                };
                let (listed, metafiles) = tokio::join!(listing, self.live_metafiles_in(&container, &prefix));
                out = listed?;
                // A name can be both a file and a prefix; show it once, as the file.
                let files: std::collections::HashSet<String> = out
                    .iter()
                    .filter(|(_, a)| a.kind == Kind::File)
                    .map(|(n, _)| n.clone())
                    .collect();
                out.retain(|(n, a)| a.kind == Kind::File || !files.contains(n));
                for (meta, data) in metafiles {
                    let existing = out.iter().position(|(n, _)| *n == meta);
                    let child = match existing {
                        Some(i) => out[i].1.ino,
                        None => self.remember(ino, &meta, Kind::File, 0, now_micros(), 0),
                    };
                    self.set_generated(child, Some(data));
                    let attr = self.attr_of(child, &self.node(child)?);
                    match existing {
                        Some(i) => out[i].1 = attr,
                        None => out.push((meta, attr)),
                    }
                }
                out.sort_by(|a, b| a.0.cmp(&b.0));
            }
            view => return self.list_view(ino, view).await,
        }
        // Files created here and not yet committed are listed too.
        let nodes = self.nodes();
        for (k, &child) in nodes.by_name.iter().filter(|((p, _), _)| *p == ino) {
            if let Some(n) = nodes.by_ino.get(&child) {
                if n.fetched.is_none() && !out.iter().any(|(name, _)| *name == k.1) {
                    out.push((k.1.clone(), self.attr_of(child, n)));
                }
            }
        }
        Ok(out)
    }

    pub async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        if self.node(ino)?.kind != Kind::Dir {
            return Err(FsError::new(libc::ENOTDIR, "not a directory"));
        }
        let entries = self.list_dir(ino).await?;
        Ok(self.add_handle(Handle::Dir(entries)))
    }

    /// Entries from `offset` (0 = start; `.` and `..` come first).
    pub fn readdir(&self, ino: Ino, fh: u64, offset: u64, sink: &mut dyn DirSink) -> FsResult<()> {
        let h = self.handle(fh)?;
        let Handle::Dir(entries) = h.as_ref() else {
            return Err(FsError::new(libc::EBADF, "not a directory handle"));
        };
        let me = self.node(ino)?;
        let dot = self.attr_of(ino, &me);
        let dotdot = self.attr_of(me.parent, &self.node(me.parent)?);
        let mut i = offset;
        loop {
            let full = match i {
                0 => sink.add(ino, 1, ".", &dot),
                1 => sink.add(me.parent, 2, "..", &dotdot),
                n => match entries.get((n - 2) as usize) {
                    Some((name, attr)) if sink.gives_entries() => {
                        let attr = self.announce(ino, name, attr);
                        let full = sink.add(attr.ino, n + 1, name, &attr);
                        if full {
                            self.forget(attr.ino, 1);
                        }
                        full
                    }
                    Some((name, attr)) => sink.add(attr.ino, n + 1, name, attr),
                    None => return Ok(()),
                },
            };
            if full {
                return Ok(());
            }
            i += 1;
        }
    }
}
