//! Which readers may use the kernel's page cache of a file, and when it must be dropped.
//!
//! The kernel keeps one page cache per inode, filled by the reads of every handle on it, and
//! drops it when the file is opened without "keep cache". Readers here pin the version they
//! opened, so the cache can only be shared by readers of one version: a reader of that version
//! keeps it (a second `cat` or `sha256sum` of an unchanged image costs no request), a reader of
//! another version refills it, unless readers of the cached version are still open — then the
//! newcomer reads around the cache, and neither sees the other's pages.
//!
//! Left out: a file mapped with mmap through a reader that goes around the cache still fills
//! the cache (the kernel maps through it), so two readers of different versions, one of them
//! mapping the file, can see each other's pages.

use crate::fs::Ino;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageCache {
    /// The kernel's pages are of this reader's version: keep them.
    Keep,
    /// Drop what the kernel holds; this reader's version fills it anew.
    Refill,
    /// Readers of another version use the cache: this one goes around it.
    Bypass,
}

impl PageCache {
    /// Whether the reader fills and reads the kernel's cache.
    fn shares(self) -> bool {
        self != PageCache::Bypass
    }
}

#[derive(Default)]
struct Pages {
    /// The only version the kernel's pages can be of; `None` when unknown.
    version: Option<u64>,
    /// Open readers using the cache (all of `version`).
    readers: usize,
}

#[derive(Default)]
pub struct PageCaches {
    by_ino: Mutex<HashMap<Ino, Pages>>,
}

impl PageCaches {
    /// How a reader of `version` opening `ino` uses the cache; it counts until [`Self::release`].
    pub fn admit(&self, ino: Ino, version: u64) -> PageCache {
        let mut all = self.by_ino.lock().unwrap_or_else(|p| p.into_inner());
        let p = all.entry(ino).or_default();
        let mode = if p.version == Some(version) {
            PageCache::Keep
        } else if p.readers > 0 {
            PageCache::Bypass
        } else {
            p.version = Some(version);
            PageCache::Refill
        };
        if mode.shares() {
            p.readers += 1;
        }
        mode
    }

    pub fn release(&self, ino: Ino, mode: PageCache) {
        if mode.shares() {
            let mut all = self.by_ino.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = all.get_mut(&ino) {
                p.readers = p.readers.saturating_sub(1);
            }
        }
    }

    /// The content may change here (a writer opened it): the next reader refills the cache.
    pub fn changed(&self, ino: Ino) {
        if let Some(p) = self.by_ino.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&ino) {
            p.version = None;
        }
    }

    /// The kernel dropped the inode, and its pages with it.
    pub fn forget(&self, ino: Ino) {
        let mut all = self.by_ino.lock().unwrap_or_else(|p| p.into_inner());
        if all.get(&ino).is_some_and(|p| p.readers == 0) {
            all.remove(&ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_version_shares_the_cache_others_refill_or_go_around() {
        let c = PageCaches::default();
        assert_eq!(c.admit(1, 10), PageCache::Refill);
        assert_eq!(c.admit(1, 10), PageCache::Keep);
        // Version 11 appeared while two readers of 10 are open.
        assert_eq!(c.admit(1, 11), PageCache::Bypass);
        c.release(1, PageCache::Bypass);
        c.release(1, PageCache::Refill);
        assert_eq!(c.admit(1, 11), PageCache::Bypass, "one reader of 10 is still open");
        c.release(1, PageCache::Keep);
        assert_eq!(c.admit(1, 11), PageCache::Refill);
        c.release(1, PageCache::Refill);
        assert_eq!(c.admit(1, 11), PageCache::Keep, "nothing changed since");
        c.release(1, PageCache::Keep);
        // A writer: whatever the kernel holds is no longer known to be version 11.
        c.changed(1);
        assert_eq!(c.admit(1, 11), PageCache::Refill);
        c.release(1, PageCache::Refill);
        // Other inodes are apart; a forgotten inode starts over.
        assert_eq!(c.admit(2, 11), PageCache::Refill);
        c.release(2, PageCache::Refill);
        c.forget(1);
        assert_eq!(c.admit(1, 11), PageCache::Refill);
    }
}
