//! A fast hash for the planner's in-process maps.
//!
//! Planning a million single-task layers looks up a million layer addresses
//! and names. A streaming XXH3 state is built per lookup by
//! `Xxh3Builder`; this hash is a multiply-and-rotate per eight bytes
//! with a 64-bit finaliser, so the lowest bits (which pick the bucket) depend
//! on every bit of an address whose low bits are zero by alignment. The maps
//! it serves hold this process's own addresses, names and type ids, never
//! keys chosen by someone else, so resistance to collision attacks is not
//! needed.

use std::hash::{BuildHasher, Hasher};

/// Builds [`FastHasher`]s.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct FastHash;

impl BuildHasher for FastHash {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

/// The hasher state: one word.
pub(crate) struct FastHasher(u64);

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
        FastHash.hash_one(v)
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
}
