//! Counting borrowed keys: the per-partition tables behind
//! [`Bag::frequencies_of`](crate::Bag::frequencies_of).
//!
//! A word count looks up every word of the text in a table of (usually) a few
//! thousand to a few hundred thousand keys, so each lookup is a cache miss or
//! two; the text is too large for anything else to matter much. A
//! `HashMap<String, _>` pays two: the bucket, then the key's heap bytes to
//! compare them. The table for string and byte keys ([`BytesCounter`])
//! keeps keys of up to 16 bytes *inside* its 32-byte slot, beside their
//! hash and count, so a hit touches one cache line: the tag (hash and
//! length) and two words of key bytes are compared in registers. Longer
//! keys live in an arena and are compared there.
//!
//! Which table a key type gets is chosen by the [`FrequencyKey`] trait:
//! `str` and `[u8]` get [`BytesCounter`]; every sized key (and `Path`) gets a
//! hash map that copies a key the first time it sees it ([`MapCounter`]).
//! [`Bag::frequencies`](crate::Bag::frequencies) over `String` records counts
//! in a [`BytesCounter`] too.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::Path;

use blockwise_core::hash::FastHash;

use crate::partition::Element;
use crate::reduce::OrderedMap;

/// Keys that [`Bag::frequencies_of`](crate::Bag::frequencies_of) can count
/// when they are lent by reference: every sized `Element + Hash + Eq` type,
/// and `str`, `[u8]` and `Path` (counted as `String`, `Vec<u8>` and
/// `PathBuf`).
pub trait FrequencyKey: Hash + Eq + ToOwned<Owned: Element + Hash + Eq + Borrow<Self>> {
    /// The table counting keys of this type within a partition.
    type Counter: Counter<Self>;
}

/// A table counting borrowed keys `Q` within one partition.
pub trait Counter<Q: ?Sized + ToOwned>: Default + Send {
    /// Counts one occurrence of `key` (copied when first seen).
    fn add(&mut self, key: &Q);

    /// The keys with their counts, in order of first appearance.
    fn into_vec(self) -> Vec<(Q::Owned, usize)>;
}

impl<T: Element + Hash + Eq> FrequencyKey for T {
    type Counter = MapCounter<T>;
}

impl FrequencyKey for str {
    type Counter = BytesCounter<String>;
}

impl FrequencyKey for [u8] {
    type Counter = BytesCounter<Vec<u8>>;
}

impl FrequencyKey for Path {
    type Counter = MapCounter<std::path::PathBuf>;
}

/// Counts keys in a hash map of owned keys, copying a key only the first
/// time it is seen.
pub struct MapCounter<K> {
    map: OrderedMap<K, usize>,
}

impl<K: Eq + Hash> Default for MapCounter<K> {
    fn default() -> Self {
        MapCounter { map: OrderedMap::new() }
    }
}

impl<Q, K> Counter<Q> for MapCounter<K>
where
    Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    K: Borrow<Q> + Eq + Hash + Send,
{
    #[inline]
    fn add(&mut self, key: &Q) {
        self.map.upsert_borrowed(key, 1, |c, n| *c += n);
    }

    fn into_vec(self) -> Vec<(K, usize)> {
        self.map.into_vec()
    }
}

/// Keys of at most this many bytes are kept inside their slot.
const INLINE: usize = 16;

/// One slot of a [`BytesCounter`]: 32 bytes, half a cache line.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Slot {
    /// 0: empty. Otherwise the key's hash with its low byte replaced by the
    /// key's length (capped at 255), and the top bit set.
    tag: u64,
    count: u64,
    /// A short key's bytes, zero-padded, as two little-endian words; a long
    /// key's offset and length in the arena.
    key: [u64; 2],
}

/// Output key types a [`BytesCounter`] can make from the bytes it counted.
pub trait FromCountedBytes: Sized {
    /// The key made from `bytes`, which are the bytes of a key lent as
    /// `Self`'s borrowed form.
    fn from_counted(bytes: &[u8]) -> Self;
}

impl FromCountedBytes for String {
    fn from_counted(bytes: &[u8]) -> Self {
        // The bytes came from a `&str`: never lossy.
        String::from_utf8_lossy(bytes).into_owned()
    }
}

impl FromCountedBytes for Vec<u8> {
    fn from_counted(bytes: &[u8]) -> Self {
        bytes.to_vec()
    }
}

/// An open-addressing table (linear probing, at most half full) counting
/// byte strings, with keys of up to 16 bytes stored in the slot itself.
/// Gives `K` (`String` or `Vec<u8>`) keys.
pub struct BytesCounter<K> {
    slots: Vec<Slot>,
    /// Number of keys held.
    len: usize,
    /// Slot index of each key, in order of first appearance.
    order: Vec<u32>,
    /// The bytes of keys longer than [`INLINE`].
    arena: Vec<u8>,
    hasher: FastHash,
    _key: std::marker::PhantomData<fn() -> K>,
}

impl<K> Default for BytesCounter<K> {
    fn default() -> Self {
        BytesCounter {
            slots: vec![Slot::default(); 64],
            len: 0,
            order: Vec::new(),
            arena: Vec::new(),
            hasher: FastHash::random(),
            _key: std::marker::PhantomData,
        }
    }
}

/// The little-endian word of `b` (at most 8 bytes), zero-padded, without a
/// copy loop: two (possibly overlapping) loads agree on the bytes they share.
#[inline(always)]
fn word_of(b: &[u8]) -> u64 {
    let n = b.len();
    if let Some(w) = b.first_chunk::<8>() {
        u64::from_le_bytes(*w)
    } else if let (Some(lo), Some(hi)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        (u32::from_le_bytes(*lo) as u64) | ((u32::from_le_bytes(*hi) as u64) << (8 * (n - 4)))
    } else if n > 0 {
        (b[0] as u64) | ((b[n / 2] as u64) << (8 * (n / 2))) | ((b[n - 1] as u64) << (8 * (n - 1)))
    } else {
        0
    }
}

impl<K> BytesCounter<K> {
    #[inline(always)]
    fn count(&mut self, key: &[u8]) {
        let n = key.len();
        let mut h = self.hasher.build_hasher();
        let words = if n <= INLINE {
            let words = if n > 8 {
                [word_of(&key[..8]), word_of(&key[8..])]
            } else {
                [word_of(key), 0]
            };
            h.write_u64(words[0]);
            h.write_u64(words[1]);
            words
        } else {
            h.write(key);
            [0, 0]
        };
        h.write_usize(n);
        let tag = (h.finish() & !0xFF) | (n.min(255) as u64) | (1 << 63);
        let mask = self.slots.len() - 1;
        let mut i = (tag >> 8) as usize & mask;
        loop {
            let slot = &self.slots[i];
            if slot.tag == tag {
                let same = if n <= INLINE {
                    slot.key == words
                } else {
                    self.arena
                        .get(slot.key[0] as usize..(slot.key[0] + slot.key[1]) as usize)
                        == Some(key)
                };
                if same {
                    self.slots[i].count += 1;
                    return;
                }
            } else if slot.tag == 0 {
                self.insert(i, tag, words, key);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    #[cold]
    #[inline(never)]
    fn insert(&mut self, i: usize, tag: u64, words: [u64; 2], key: &[u8]) {
        let key = if key.len() <= INLINE {
            words
        } else {
            let at = self.arena.len() as u64;
            self.arena.extend_from_slice(key);
            [at, key.len() as u64]
        };
        self.slots[i] = Slot { tag, count: 1, key };
        self.order.push(i as u32);
        self.len += 1;
        if self.len * 2 > self.slots.len() {
            self.grow();
        }
    }

    /// Doubles the table; keys are reinserted in first-appearance order.
    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        let mask = size - 1;
        for at in &mut self.order {
            let slot = old[*at as usize];
            let mut i = (slot.tag >> 8) as usize & mask;
            while self.slots[i].tag != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
            *at = i as u32;
        }
    }

    /// The bytes of the key in `slot`.
    fn key_bytes<'a>(&'a self, slot: &Slot, inline: &'a mut [u8; INLINE]) -> &'a [u8] {
        let n = (slot.tag & 0xFF) as usize;
        if n <= INLINE {
            inline[..8].copy_from_slice(&slot.key[0].to_le_bytes());
            inline[8..].copy_from_slice(&slot.key[1].to_le_bytes());
            &inline[..n]
        } else {
            &self.arena[slot.key[0] as usize..(slot.key[0] + slot.key[1]) as usize]
        }
    }

    fn entries(&self) -> Vec<(K, usize)>
    where
        K: FromCountedBytes,
    {
        let mut inline = [0u8; INLINE];
        self.order
            .iter()
            .map(|&i| {
                let slot = self.slots[i as usize];
                (K::from_counted(self.key_bytes(&slot, &mut inline)), slot.count as usize)
            })
            .collect()
    }
}

impl Counter<str> for BytesCounter<String> {
    #[inline]
    fn add(&mut self, key: &str) {
        self.count(key.as_bytes());
    }

    fn into_vec(self) -> Vec<(String, usize)> {
        self.entries()
    }
}

impl Counter<[u8]> for BytesCounter<Vec<u8>> {
    #[inline]
    fn add(&mut self, key: &[u8]) {
        self.count(key);
    }

    fn into_vec(self) -> Vec<(Vec<u8>, usize)> {
        self.entries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_str(words: &[&str]) -> Vec<(String, usize)> {
        let mut c = BytesCounter::<String>::default();
        for w in words {
            Counter::<str>::add(&mut c, w);
        }
        c.into_vec()
    }

    /// Counts in first-appearance order, the slow way.
    fn expected(words: &[&str]) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for w in words {
            match out.iter_mut().find(|(k, _)| k == w) {
                Some((_, n)) => *n += 1,
                None => out.push((w.to_string(), 1)),
            }
        }
        out
    }

    #[test]
    fn words_of_every_length_are_told_apart() {
        // Keys of length 0 to 40 that share prefixes, differ only in their
        // last byte, or only in length (trailing zero bytes included).
        let mut words: Vec<String> = Vec::new();
        for n in 0..40 {
            words.push("a".repeat(n));
            words.push(format!("{}b", "a".repeat(n)));
            words.push(format!("{}\0", "a".repeat(n)));
            words.push((0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect());
        }
        let mut stream: Vec<&str> = Vec::new();
        for round in 0..3 {
            for (i, w) in words.iter().enumerate() {
                if (i + round) % 3 != 0 {
                    stream.push(w);
                }
            }
        }
        assert_eq!(count_str(&stream), expected(&stream));
    }

    #[test]
    fn many_keys_survive_growth_in_order() {
        let words: Vec<String> = (0..5_000u32).map(|i| format!("w{}", i * 7919 % 5_003)).collect();
        let mut stream: Vec<&str> = words.iter().map(String::as_str).collect();
        stream.extend(words.iter().rev().step_by(3).map(String::as_str));
        assert_eq!(count_str(&stream), expected(&stream));
    }

    #[test]
    fn word_of_pads_with_zeros() {
        for n in 0..=8 {
            let bytes: Vec<u8> = (1..=n as u8).collect();
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(&bytes);
            assert_eq!(word_of(&bytes), u64::from_le_bytes(padded), "{n}");
        }
    }

    #[test]
    fn bytes_and_sized_keys() {
        let mut c = BytesCounter::<Vec<u8>>::default();
        for w in [
            &b"x\xff"[..],
            b"",
            b"x\xff",
            b"a long key of more than sixteen bytes",
            b"",
        ] {
            c.add(w);
        }
        assert_eq!(
            c.into_vec(),
            vec![
                (b"x\xff".to_vec(), 2),
                (Vec::new(), 2),
                (b"a long key of more than sixteen bytes".to_vec(), 1)
            ]
        );
        let mut m = MapCounter::<u32>::default();
        for k in [3, 1, 3] {
            m.add(&k);
        }
        assert_eq!(Counter::<u32>::into_vec(m), vec![(3, 2), (1, 1)]);
    }
}
