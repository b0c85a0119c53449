//! A fast hash for in-process maps.
//!
//! Planning a million single-task layers looks up a million layer addresses
//! and names; a word count looks up every word. `Xxh3Builder` builds a
//! streaming XXH3 state per lookup and std's SipHash is several times slower
//! on short keys. [`FastHash`] is a multiply-and-rotate per eight bytes with
//! a 64-bit finaliser, so the lowest bits (which pick the bucket) depend on
//! every bit of the key, even of an address whose low bits are zero by
//! alignment.
//!
//! [`FastHash::new`] is deterministic, for maps of this process's own
//! addresses, names and type ids. Maps keyed by data (words of a text) use
//! [`FastHash::random`], seeded once per process, so which keys collide is
//! not known in advance. Nothing may depend on a map's iteration order.

use std::hash::{BuildHasher, Hasher};

/// Builds [`FastHasher`]s from a seed.
#[derive(Clone, Copy, Default, Debug)]
pub struct FastHash {
    seed: u64,
}

impl FastHash {
    /// The deterministic hash (seed 0).
    pub const fn new() -> Self {
        FastHash { seed: 0 }
    }

    /// A hash seeded once per process from std's random state.
    pub fn random() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x5EED_u64) | 1);
        FastHash { seed }
    }
}

impl BuildHasher for FastHash {
    type Hasher = FastHasher;

    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.seed)
    }
}

/// The hasher state: one word.
pub struct FastHasher(u64);

const MUL: u64 = 0x517c_c1b7_2722_0a95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(MUL);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // MurmurHash3's 64-bit finaliser.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn hash_of<T: std::hash::Hash + ?Sized>(v: &T) -> u64 {
        FastHash::new().hash_one(v)
    }

    #[test]
    fn aligned_addresses_spread_over_low_bits() {
        // Addresses 16 bytes apart must not share their low bucket bits.
        let buckets: HashSet<u64> = (0..4096usize)
            .map(|i| hash_of(&(0x7f00_0000 + 16 * i)) & 0xfff)
            .collect();
        assert!(buckets.len() > 2000, "only {} of 4096 buckets used", buckets.len());
    }

    #[test]
    fn strings_differing_anywhere_hash_differently() {
        assert_ne!(hash_of("inc-0000000000000001"), hash_of("inc-0000000000000002"));
        assert_ne!(hash_of("ab"), hash_of("ab\0"));
        assert_ne!(hash_of(""), hash_of("\0"));
        assert_eq!(hash_of("same"), hash_of("same"));
    }

    #[test]
    fn a_random_seed_is_fixed_for_the_process() {
        let (a, b) = (FastHash::random(), FastHash::random());
        assert_eq!(a.hash_one("word"), b.hash_one("word"));
        assert_ne!(a.hash_one("word"), FastHash::new().hash_one("word"));
    }
}
