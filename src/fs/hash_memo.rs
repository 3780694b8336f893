//! The sha256 of blocks this mount has hashed before, found again by their BLAKE3 digest.
//!
//! Pithos names blocks by sha256, which runs at about 1.2 GB/s per core here; BLAKE3 runs at
//! about 5 GB/s and is as collision-resistant, so a block written again (a re-copy of an
//! image, the unchanged blocks of a rebuilt one) is recognised for a quarter of the CPU. Both
//! digests cover the same bytes (trailing NULs trimmed, as the block hash does), so a hit is
//! exactly the hash `block_hash` would compute.

use crate::api::hashing::{block_hash, trim_trailing_zeros, BlockHash};
use std::num::NonZeroUsize;
use std::sync::Mutex;

pub struct HashMemo {
    by_blake3: Mutex<lru::LruCache<[u8; 32], BlockHash>>,
}

impl HashMemo {
    /// Remembers up to `entries` blocks (about 100 bytes each).
    pub fn new(entries: usize) -> HashMemo {
        HashMemo {
            by_blake3: Mutex::new(lru::LruCache::new(NonZeroUsize::new(entries.max(1)).expect("non-zero"))),
        }
    }

    /// `block_hash(data)`, computed only for content not seen before.
    pub fn block_hash(&self, data: &[u8]) -> BlockHash {
        let data = trim_trailing_zeros(data);
        if data.is_empty() {
            return BlockHash::empty();
        }
        let key = *blake3::hash(data).as_bytes();
        if let Some(h) = self.by_blake3.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return *h;
        }
        let h = block_hash(data);
        self.by_blake3.lock().unwrap_or_else(|p| p.into_inner()).put(key, h);
        h
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_blake3.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_hash_as_block_hash_seen_or_not() {
        let memo = HashMemo::new(2);
        let a = b"first block".to_vec();
        let mut a_padded = a.clone();
        a_padded.resize(4096, 0);
        let b = b"second block".to_vec();
        let c = b"third block".to_vec();
        assert_eq!(memo.block_hash(&a), block_hash(&a));
        // The padded block is the same stored content: one entry, the same hash.
        assert_eq!(memo.block_hash(&a_padded), block_hash(&a));
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.block_hash(&b), block_hash(&b));
        assert_eq!(memo.block_hash(&c), block_hash(&c));
        // Bounded: the least recently used entry went, and is computed again correctly.
        assert_eq!(memo.len(), 2);
        assert_eq!(memo.block_hash(&a), block_hash(&a));
        assert_eq!(memo.block_hash(&[0u8; 100]), BlockHash::empty());
        assert_eq!(memo.block_hash(&[]), BlockHash::empty());
        assert_eq!(memo.len(), 2);
    }
}
