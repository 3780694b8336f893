//! Directory listing. A directory of a container, and its `.versions/` (one directory per
//! file), is read from the server a page at a time while the kernel reads the handle, so what
//! a listing holds is one page (plus the registry's metafiles of the directory), whatever the
//! directory's size; the account, `/.images` and one file's versions are taken whole at open.

use super::handles::Handle;
use super::listing::Pages;
use super::paths::Loc;
use super::{now_micros, Attr, DirSink, Fs, FsError, FsResult, Ino, Kind, PAGE};
use crate::client::{Listed, Registry, Storage};
use bytes::Bytes;
use std::collections::HashMap;

/// An open directory: the entries from offset `base` on (offsets count entries after `.`
/// and `..`), and where the rest comes from.
pub(super) struct DirStream {
    base: u64,
    pub(super) window: Vec<(String, Attr)>,
    pager: Option<Pager>,
}

/// The server's listing of a directory of a container, as far as it was read.
struct Pager {
    pages: Pages,
    /// The registry's metafiles of this directory not met in the listing yet: a stored one
    /// reads as the registry's state, the others are added at the end.
    metafiles: HashMap<String, Bytes>,
    /// Objects listed lately whose name a directory prefix may still repeat (the prefix
    /// `a/` comes after the object `a`, with only names `a` + something below `/` between);
    /// such a name shows once, as the object.
    recent: Vec<String>,
    /// The listing is of `.versions/` of the directory: each file is a directory of its
    /// versions; directories, metafiles and files not committed have none.
    versions: bool,
}

/// Whether `name` + "/" sorts before `cur`: the listing is past where the prefix `name/`
/// would have come.
fn passed(name: &str, cur: &str) -> bool {
    let (n, c) = (name.as_bytes(), cur.as_bytes());
    match c.get(..n.len()) {
        Some(head) if head == n => c.get(n.len()).is_some_and(|&b| b > b'/'),
        _ => n < c,
    }
}

impl<S: Storage + Registry> Fs<S> {
    /// A directory opened: its first entries (all of them for the account and the views).
    async fn start_listing(&self, ino: Ino) -> FsResult<DirStream> {
        let (container, path, versions) = match self.loc(ino)? {
            Loc::Account => {
                let mut window = vec![];
                for c in self.sh.storage.list_containers().await? {
                    let attr = self.remember_attr(ino, &c.name, Kind::Dir, 0, c.mtime, 0);
                    window.push((c.name, attr));
                }
                self.add_local_files(ino, &mut window);
                return Ok(DirStream {
                    base: 0,
                    window,
                    pager: None,
                });
            }
            Loc::Object { container, path } => (container, path, false),
            Loc::VersionRoot { container, dir } => (container, dir, true),
            view => {
                let window = self.list_view(ino, view).await?;
                return Ok(DirStream {
                    base: 0,
                    window,
                    pager: None,
                });
            }
        };
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut pager = Pager {
            pages: Pages::new(&container, &prefix, PAGE),
            metafiles: HashMap::new(),
            recent: vec![],
            versions,
        };
        let first = if versions {
            pager.pages.next(self.sh.storage.as_ref()).await
        } else {
            // The registry's view of this directory's metafiles is asked meanwhile.
            let (first, metafiles) = tokio::join!(
                pager.pages.next(self.sh.storage.as_ref()),
                self.live_metafiles_in(&container, &prefix)
            );
            pager.metafiles = metafiles.into_iter().collect();
            first
        };
        let window = self.take_page(ino, &mut pager, first?);
        Ok(DirStream {
            base: 0,
            window,
            pager: Some(pager),
        })
    }

    /// A page of the listing as entries (remembered as inodes); after the last page, the
    /// metafiles not stored and the files created here and not committed yet.
    fn take_page(&self, ino: Ino, pager: &mut Pager, items: Vec<Listed>) -> Vec<(String, Attr)> {
        if pager.versions {
            return self.take_version_dirs(ino, pager, items);
        }
        let mut out = Vec::with_capacity(items.len());
        for e in &items {
            let rest = pager.pages.rest(e);
            pager.recent.retain(|n| !passed(n, rest));
            let (kind, size, mtime, version, name) = match e {
                Listed::Object(o) => (
                    if o.is_dir() { Kind::Dir } else { Kind::File },
                    o.size,
                    o.mtime,
                    o.version,
                    rest,
                ),
                Listed::Prefix(_) => (Kind::Dir, 0, now_micros(), 0, rest.trim_end_matches('/')),
            };
            // A name with a trailing '/' or an empty segment cannot be a file name here.
            if name.is_empty() || name.contains('/') {
                continue;
            }
            if matches!(e, Listed::Prefix(_)) && pager.recent.iter().any(|n| n == name) {
                continue;
            }
            if matches!(e, Listed::Object(_)) {
                pager.recent.push(name.to_string());
            }
            let mut attr = self.remember_attr(ino, name, kind, size, mtime, version);
            if let Some(data) = pager.metafiles.remove(name) {
                // (the attributes as they read: the registry's state, see `attr_of`)
                if attr.kind == Kind::File {
                    attr.size = data.len() as u64;
                }
                self.set_generated(attr.ino, Some(data));
            }
            out.push((name.to_string(), attr));
        }
        if pager.pages.done() {
            let mut left: Vec<(String, Bytes)> = pager.metafiles.drain().collect();
            left.sort_by(|a, b| a.0.cmp(&b.0));
            for (meta, data) in left {
                let mut attr = self.remember_attr(ino, &meta, Kind::File, 0, now_micros(), 0);
                attr.size = data.len() as u64;
                self.set_generated(attr.ino, Some(data));
                out.push((meta, attr));
            }
            self.add_local_files(ino, &mut out);
        }
        out
    }

    /// A page of a directory's listing as the entries of its `.versions/`: a directory per file.
    fn take_version_dirs(&self, ino: Ino, pager: &Pager, items: Vec<Listed>) -> Vec<(String, Attr)> {
        let mut out = vec![];
        for e in &items {
            let Listed::Object(o) = e else { continue };
            let name = pager.pages.rest(e);
            if o.is_dir() || name.is_empty() || name.contains('/') {
                continue;
            }
            let attr = self.remember_view(ino, name, Kind::Dir, 0, o.mtime, 0);
            out.push((name.to_string(), attr));
        }
        out
    }

    /// Files created in `ino` and not committed yet, which no listing holds. A listed name
    /// has been remembered as fetched, so what is still unfetched was not listed.
    fn add_local_files(&self, ino: Ino, out: &mut Vec<(String, Attr)>) {
        let nodes = self.nodes();
        for (k, &child) in nodes.by_name.iter().filter(|((p, _), _)| *p == ino) {
            if let Some(n) = nodes.by_ino.get(&child) {
                if n.fetched.is_none() && !out.iter().any(|(name, _)| *name == k.1) {
                    out.push((k.1.clone(), self.attr_of(child, n)));
                }
            }
        }
    }

    /// Moves `d` on until its window holds entry `i` or the listing ends; an `i` before the
    /// window starts the listing again (a rewinddir, or a seek back).
    async fn advance_to(&self, ino: Ino, d: &mut DirStream, i: u64) -> FsResult<()> {
        if i < d.base {
            *d = self.start_listing(ino).await?;
        }
        while i >= d.base + d.window.len() as u64 {
            let Some(pager) = d.pager.as_mut() else { return Ok(()) };
            if pager.pages.done() {
                return Ok(());
            }
            let items = pager.pages.next(self.sh.storage.as_ref()).await?;
            let page = self.take_page(ino, pager, items);
            d.base += d.window.len() as u64;
            d.window = page;
        }
        Ok(())
    }

    pub async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        if self.node(ino)?.kind != Kind::Dir {
            return Err(FsError::new(libc::ENOTDIR, "not a directory"));
        }
        let d = self.start_listing(ino).await?;
        Ok(self.add_handle(Handle::Dir(tokio::sync::Mutex::new(d))))
    }

    /// Entries from `offset` (0 = start; `.` and `..` come first).
    pub async fn readdir(&self, ino: Ino, fh: u64, offset: u64, sink: &mut dyn DirSink) -> FsResult<()> {
        let h = self.handle(fh)?;
        let Handle::Dir(d) = h.as_ref() else {
            return Err(FsError::new(libc::EBADF, "not a directory handle"));
        };
        let mut d = d.lock().await;
        let me = self.node(ino)?;
        let dot = self.attr_of(ino, &me);
        let dotdot = self.attr_of(me.parent, &self.node(me.parent)?);
        let mut n = offset;
        loop {
            let full = match n {
                0 => sink.add(ino, 1, ".", &dot),
                1 => sink.add(me.parent, 2, "..", &dotdot),
                n => {
                    let i = n - 2;
                    if i < d.base || i >= d.base + d.window.len() as u64 {
                        self.advance_to(ino, &mut d, i).await?;
                    }
                    let Some((name, attr)) = i.checked_sub(d.base).and_then(|at| d.window.get(at as usize)) else {
                        return Ok(());
                    };
                    if sink.gives_entries() {
                        let attr = self.announce(ino, name, attr);
                        let full = sink.add(attr.ino, n + 1, name, &attr);
                        if full {
                            self.forget(attr.ino, 1);
                        }
                        full
                    } else {
                        sink.add(attr.ino, n + 1, name, attr)
                    }
                }
            };
            if full {
                return Ok(());
            }
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::passed;

    #[test]
    fn a_prefix_comes_after_its_object_and_what_sorts_below_slash() {
        assert!(!passed("a", "a"));
        assert!(!passed("a", "a-b"));
        assert!(!passed("a", "a.txt"));
        assert!(!passed("a", "a/"));
        assert!(passed("a", "a0"));
        assert!(passed("a", "b"));
        assert!(!passed("b", "a"));
        assert!(passed("ab", "ac"));
        assert!(!passed("a", ""));
    }
}
