//! Content-addressed block files: `<root>/<hex[0..2]>/<hex[2..4]>/<hex>`, holding a block's
//! bytes with trailing NULs trimmed. The empty (and every all-zero) block is never stored.
//!
//! Durability: a block is written to a temp file in its final directory, fsynced, renamed over
//! its name, and the directory fsynced; only then is its hash returned, so a version row that
//! names it (committed afterwards) never points at a torn or missing file. Two writers of the
//! same block each write their own temp file; whichever rename lands last, the content is the
//! same.

use crate::api::hashing::{block_hash, trim_trailing_zeros, BlockHash};
use crate::store::{Result, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

/// Block I/O by hash; the seam where a Swift-API or other remote block store can go.
pub trait BlockStore: Send + Sync {
    fn put(&self, data: &[u8]) -> Result<BlockHash>;
    fn get(&self, hash: &BlockHash) -> Result<Vec<u8>>;
    fn stored_len(&self, hash: &BlockHash) -> Result<Option<u64>>;
}

pub struct FsBlocks {
    root: PathBuf,
}

/// Removes a temp file unless the rename that publishes it went through.
struct DeleteOnDrop(Option<PathBuf>);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl FsBlocks {
    pub fn open(root: &Path) -> Result<FsBlocks> {
        fs::create_dir_all(root)?;
        Ok(FsBlocks {
            root: root.to_path_buf(),
        })
    }

    fn dir_of(&self, hex: &str) -> PathBuf {
        self.root.join(&hex[0..2]).join(&hex[2..4])
    }

    fn path_of(&self, hash: &BlockHash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir_of(&hex).join(hex)
    }

    fn quarantine(&self, path: &Path) {
        let mut q = path.as_os_str().to_owned();
        q.push(".corrupted");
        if let Err(e) = fs::rename(path, &q) {
            tracing::error!(path = %path.display(), error = %e, "could not quarantine a corrupt block");
        }
    }
}

impl BlockStore for FsBlocks {
    fn put(&self, data: &[u8]) -> Result<BlockHash> {
        let stored = trim_trailing_zeros(data);
        let hash = block_hash(stored);
        if stored.is_empty() {
            return Ok(hash);
        }
        let hex = hash.to_hex();
        let dir = self.dir_of(&hex);
        let dest = dir.join(&hex);
        if let Ok(m) = fs::metadata(&dest) {
            if m.len() == stored.len() as u64 {
                return Ok(hash);
            }
        }
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".tmp-{hex}-{:016x}", rand::random::<u64>()));
        let mut guard = DeleteOnDrop(Some(tmp.clone()));
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(stored)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &dest)?;
        guard.0 = None;
        // The rename is durable only once the directory entry is.
        File::open(&dir)?.sync_all()?;
        Ok(hash)
    }

    fn get(&self, hash: &BlockHash) -> Result<Vec<u8>> {
        if hash.is_empty_block() {
            return Ok(vec![]);
        }
        let path = self.path_of(hash);
        let mut buf = vec![];
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut buf)?;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(StoreError::LostBlock(*hash)),
            Err(e) => return Err(e.into()),
        }
        // Bad bytes never reach a reader: re-hash, and set a mismatch aside.
        if block_hash(&buf) != *hash {
            self.quarantine(&path);
            return Err(StoreError::CorruptBlock(*hash));
        }
        Ok(buf)
    }

    fn stored_len(&self, hash: &BlockHash) -> Result<Option<u64>> {
        if hash.is_empty_block() {
            return Ok(Some(0));
        }
        match fs::metadata(self.path_of(hash)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_dedup_and_zero_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlocks::open(dir.path()).unwrap();
        let h = b.put(b"hello\0\0").unwrap();
        assert_eq!(h, block_hash(b"hello"));
        assert_eq!(b.get(&h).unwrap(), b"hello");
        assert_eq!(b.put(b"hello").unwrap(), h);
        assert_eq!(b.stored_len(&h).unwrap(), Some(5));
        let z = b.put(&[0u8; 1000]).unwrap();
        assert!(z.is_empty_block());
        assert_eq!(b.get(&z).unwrap(), Vec::<u8>::new());
        assert!(matches!(b.get(&block_hash(b"nope")), Err(StoreError::LostBlock(_))));
        // no temp files left behind
        let leftovers = walk(dir.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".tmp-"))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn corrupt_block_is_quarantined_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlocks::open(dir.path()).unwrap();
        let h = b.put(b"precious").unwrap();
        fs::write(b.path_of(&h), b"rotten!!").unwrap();
        assert!(matches!(b.get(&h), Err(StoreError::CorruptBlock(x)) if x == h));
        assert_eq!(b.stored_len(&h).unwrap(), None);
        // a fresh upload heals it
        b.put(b"precious").unwrap();
        assert_eq!(b.get(&h).unwrap(), b"precious");
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                out.extend(walk(&e));
            } else {
                out.push(e);
            }
        }
        out
    }
}
