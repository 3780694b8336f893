//! Pithos block hashing (trailing NULs trimmed) and the Merkle hash over block digests
//! (spec/pithos.md §7).

use sha2::{Digest, Sha256};

/// The block size every container reports (`X-Container-Block-Size`).
pub const BLOCK_SIZE: usize = 4 * 1024 * 1024;
/// The block hash algorithm every container reports (`X-Container-Block-Hash`).
pub const BLOCK_HASH: &str = "sha256";

/// A raw sha256 digest naming a block.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub [u8; 32]);

impl BlockHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lower- or upper-case hex digits.
    pub fn from_hex(s: &str) -> Option<BlockHash> {
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return None;
        }
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(BlockHash(out))
    }

    /// The hash of the empty block, which is also the hash of every all-zero block.
    pub fn empty() -> BlockHash {
        BlockHash(Sha256::digest(b"").into())
    }

    pub fn is_empty_block(&self) -> bool {
        *self == Self::empty()
    }
}

/// In JSON a block hash is its 64 hex digits. Read straight from the body's text (no string
/// per hash: a 5 TiB object's hashmap has 1.3 million).
impl serde::Serialize for BlockHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        hex::encode_to_slice(self.0, &mut buf).expect("64 digits for 32 bytes");
        s.serialize_str(std::str::from_utf8(&buf).expect("hex is ASCII"))
    }
}

impl<'de> serde::Deserialize<'de> for BlockHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = BlockHash;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a block hash (64 hex digits)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BlockHash, E> {
                BlockHash::from_hex(v).ok_or_else(|| E::custom(format!("bad block hash '{v}'")))
            }
        }
        d.deserialize_str(V)
    }
}

impl std::fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl std::fmt::Display for BlockHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

/// The bytes of a block that are stored: trailing NULs are not, since reads pad them back.
pub fn trim_trailing_zeros(data: &[u8]) -> &[u8] {
    // Whole 64-byte chunks first (the OR of a chunk vectorizes; a byte-wise scan of a 4 MiB
    // zero block cost more CPU than hashing one), then the bytes of the last non-zero chunk.
    const CHUNK: usize = 64;
    let mut end = data.len() - data.len() % CHUNK;
    let tail = &data[end..];
    if let Some(p) = tail.iter().rposition(|&b| b != 0) {
        return &data[..end + p + 1];
    }
    while end > 0 && data[end - CHUNK..end].iter().fold(0u8, |a, &b| a | b) == 0 {
        end -= CHUNK;
    }
    let end = data[..end].iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    &data[..end]
}

/// `block_hash(block) = sha256(block with trailing NULs removed)`.
pub fn block_hash(data: &[u8]) -> BlockHash {
    BlockHash(Sha256::digest(trim_trailing_zeros(data)).into())
}

/// The Merkle hash of an object (`X-Object-Hash`): one block is its own hash; more are padded
/// with zero digests to a power of two and reduced pairwise.
pub fn merkle(hashes: &[BlockHash]) -> BlockHash {
    match hashes.len() {
        0 => BlockHash::empty(),
        1 => hashes[0],
        n => {
            let mut level: Vec<[u8; 32]> = hashes.iter().map(|h| h.0).collect();
            level.resize(n.next_power_of_two(), [0u8; 32]);
            while level.len() > 1 {
                level = level
                    .chunks(2)
                    .map(|pair| {
                        let mut h = Sha256::new();
                        h.update(pair[0]);
                        h.update(pair[1]);
                        h.finalize().into()
                    })
                    .collect();
            }
            BlockHash(level[0])
        }
    }
}

/// How many blocks an object of `size` bytes has.
pub fn block_count(size: u64) -> u64 {
    size.div_ceil(BLOCK_SIZE as u64)
}

/// How many bytes of block `index` are real in an object of `size` bytes.
pub fn block_len(size: u64, index: u64) -> usize {
    let start = index * BLOCK_SIZE as u64;
    (size.saturating_sub(start)).min(BLOCK_SIZE as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vector_hello() {
        assert_eq!(
            block_hash(b"hello world\n").to_hex(),
            "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
        );
    }

    #[test]
    fn trailing_zeros_do_not_count() {
        assert_eq!(block_hash(b"abc"), block_hash(b"abc\0\0"));
        assert_eq!(block_hash(&[0u8; 4096]), BlockHash::empty());
        for len in [0usize, 1, 63, 64, 65, 127, 128, 200, 4096] {
            for nz in [None, Some(0), Some(len / 2), len.checked_sub(1)] {
                let mut v = vec![0u8; len];
                if let Some(Some(i)) = nz.map(|i| (i < len).then_some(i)) {
                    v[i] = 7;
                }
                let want = v.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                assert_eq!(trim_trailing_zeros(&v).len(), want, "len {len}, non-zero at {nz:?}");
            }
        }
        assert_ne!(block_hash(b"\0abc"), block_hash(b"abc"));
    }

    #[test]
    fn spec_vector_merkle() {
        let a = vec![b'A'; BLOCK_SIZE];
        let b = vec![b'B'; BLOCK_SIZE];
        let hs = [block_hash(&a), block_hash(&b), block_hash(b"CCCCCCCCCC")];
        assert_eq!(
            merkle(&hs).to_hex(),
            "6a5cd842286c8f5ec2bd4df836b2265ac02e170b3f137adc2601329aff55bc65"
        );
        assert_eq!(
            merkle(&hs[..2]).to_hex(),
            "cc82a8b082d400c4d9db666131623f67ed7601090bef7fceee1898fdc1ac89d9"
        );
        assert_eq!(merkle(&hs[..1]), hs[0]);
        assert_eq!(merkle(&[]), BlockHash::empty());
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        let h = block_hash(b"x");
        assert_eq!(BlockHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(BlockHash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        assert_eq!(BlockHash::from_hex("abc"), None);
        assert_eq!(BlockHash::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn block_geometry() {
        assert_eq!(block_count(0), 0);
        assert_eq!(block_count(1), 1);
        assert_eq!(block_count(BLOCK_SIZE as u64), 1);
        assert_eq!(block_count(BLOCK_SIZE as u64 + 1), 2);
        assert_eq!(block_len(BLOCK_SIZE as u64 + 10, 1), 10);
        assert_eq!(block_len(BLOCK_SIZE as u64 + 10, 0), BLOCK_SIZE);
    }
}
