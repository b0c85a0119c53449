//! Keys and deterministic names.
//!
//! A [`Key`] is a layer name plus a small index tuple, as Dask's
//! `("mean-agg-3f9a", 2, 0)`. Names are made by [`Tokenizer`]: a hash of the
//! op and everything that goes into it, so building the same computation twice
//! gives the same keys (and a persisted result is found again), while two
//! different computations never share a key.
//!
//! The name is an `Arc<str>` shared by every key of its layer: a million-chunk
//! array has one name allocation, and comparing keys of one layer starts with
//! a pointer comparison.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;
use xxhash_rust::xxh3::Xxh3;

/// The name of a layer (and the first part of each of its keys).
#[derive(Clone)]
pub struct Name(Arc<str>);

impl Name {
    /// A name from any string. Prefer [`Tokenizer::name`] for names that must
    /// be deterministic.
    pub fn new(name: &str) -> Self {
        Name(Arc::from(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address of the shared string: equal for clones of one name, so
    /// planners can look a name up without hashing its text.
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0).cast::<u8>() as usize
    }

    /// The part before the last `-`, Dask's "key prefix" (`"sum"` for
    /// `"sum-9ac1e0f3"`); used to group tasks in progress bars and reports.
    pub fn prefix(&self) -> &str {
        match self.0.rfind('-') {
            Some(i) if i > 0 => &self.0[..i],
            _ => &self.0,
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}
impl Eq for Name {}
impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}
impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}
impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Name::new(&s))
    }
}

/// The index part of a key: one entry per dimension of the layer's grid.
/// Up to four entries are stored inline.
pub type Index = SmallVec<[u32; 4]>;

/// The identity of one task's output: a layer name and an index tuple.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// The layer (collection operation) the key belongs to.
    pub name: Name,
    /// The position within the layer (chunk or partition index).
    pub index: Index,
}

impl Key {
    /// A key of `name` at `index`.
    pub fn new(name: Name, index: &[u32]) -> Self {
        Key {
            name,
            index: Index::from_slice(index),
        }
    }

    /// A key with no index (a single-task layer, as a `delayed` call).
    pub fn single(name: Name) -> Self {
        Key {
            name,
            index: Index::new(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.index.is_empty() {
            write!(f, "{:?}", self.name.as_str())
        } else {
            write!(f, "({:?}", self.name.as_str())?;
            for i in &self.index {
                write!(f, ", {i}")?;
            }
            f.write_str(")")
        }
    }
}
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Builds deterministic names: feed it everything a computation depends on,
/// then call [`Tokenizer::name`].
///
/// The hash is XXH3-64 over a tagged byte stream, the same in every process
/// of the same build. It is not a cryptographic hash: it names tasks, it does
/// not guard anything.
pub struct Tokenizer {
    /// The stream while it is short (most tokens hash a few dozen bytes):
    /// one-shot XXH3 over it at the end gives the same token as the
    /// streaming state, without building that state (about 600 bytes) for
    /// every `delayed` call.
    pending: SmallVec<[u8; 120]>,
    /// The streaming state, once the stream outgrows `pending`.
    hasher: Option<Box<Xxh3>>,
}

/// Longest stream hashed in one shot.
const ONE_SHOT_BYTES: usize = 1024;

impl Default for Tokenizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokenizer {
    /// An empty tokenizer.
    pub fn new() -> Self {
        Tokenizer {
            pending: SmallVec::new(),
            hasher: None,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
        } else if self.pending.len() + bytes.len() <= ONE_SHOT_BYTES {
            self.pending.extend_from_slice(bytes);
        } else {
            let mut hasher = Box::new(Xxh3::new());
            hasher.update(&self.pending);
            hasher.update(bytes);
            self.pending = SmallVec::new();
            self.hasher = Some(hasher);
        }
    }

    /// Feeds raw bytes, length-prefixed so that `("ab","c")` and `("a","bc")` differ.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.update(&(bytes.len() as u64).to_le_bytes());
        self.update(bytes);
        self
    }

    /// Feeds a string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Feeds an integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.update(&v.to_le_bytes());
        self
    }

    /// Feeds a key (its name and index).
    pub fn key(&mut self, key: &Key) -> &mut Self {
        self.str(key.name.as_str());
        self.u64(key.index.len() as u64);
        for i in &key.index {
            self.u64(u64::from(*i));
        }
        self
    }

    /// Feeds a fresh, process-unique value: for computations that cannot be
    /// hashed (a closure with captured state), so their keys never collide
    /// with another computation's.
    pub fn unique(&mut self) -> &mut Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.u64(u64::from(std::process::id()));
        self.u64(n);
        self.u64(nanos_since_epoch());
        self
    }

    /// The 64-bit token so far.
    pub fn finish(&self) -> u64 {
        match &self.hasher {
            Some(hasher) => hasher.digest(),
            None => xxhash_rust::xxh3::xxh3_64(&self.pending),
        }
    }

    /// A name `"{prefix}-{token}"`, with a 16-hex-digit token.
    pub fn name(&self, prefix: &str) -> Name {
        token_name(prefix, self.finish())
    }
}

/// The hash the planner files a name under: [`crate::hash::FastHash`] of
/// its text, the same for every copy of a name.
pub(crate) fn name_hash(text: &str) -> u64 {
    use std::hash::BuildHasher;
    crate::hash::FastHash::new().hash_one(text)
}

/// `"{prefix}-{token:016x}"` as a [`Name`], written into one allocation (a
/// million `delayed` calls make a million names).
pub(crate) fn token_name(prefix: &str, token: u64) -> Name {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 17];
    digits[0] = b'-';
    for (i, d) in digits[1..].iter_mut().enumerate() {
        *d = HEX[((token >> (60 - 4 * i)) & 0xf) as usize];
    }
    let mut buf = [0u8; 96];
    let len = prefix.len() + digits.len();
    if len <= buf.len() {
        buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
        buf[prefix.len()..len].copy_from_slice(&digits);
        // Both parts are UTF-8: the prefix is a `str`, the rest ASCII.
        if let Ok(text) = std::str::from_utf8(&buf[..len]) {
            return Name::new(text);
        }
    }
    Name::new(&format!("{prefix}-{token:016x}"))
}

fn nanos_since_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_name_different_inputs_different_name() {
        let a = Tokenizer::new().str("inc").u64(1).name("inc");
        let b = Tokenizer::new().str("inc").u64(1).name("inc");
        let c = Tokenizer::new().str("inc").u64(2).name("inc");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.prefix(), "inc");
    }

    #[test]
    fn names_have_sixteen_hex_digits_for_any_prefix() {
        let t = Tokenizer::new().str("x").finish();
        let short = Tokenizer::new().str("x").name("inc");
        assert_eq!(short.as_str(), format!("inc-{t:016x}"));
        let long_prefix = "p".repeat(200);
        let long = Tokenizer::new().str("x").name(&long_prefix);
        assert_eq!(long.as_str(), format!("{long_prefix}-{t:016x}"));
        assert_eq!(token_name("a", 0x0123_4567_89ab_cdef).as_str(), "a-0123456789abcdef");
        assert_eq!(token_name("é", 0xf).as_str(), "é-000000000000000f");
    }

    #[test]
    fn long_streams_give_the_streaming_hash() {
        // Short and long streams (past the one-shot buffer) hash the same
        // bytes as XXH3's streaming state does.
        for len in [0usize, 5, 119, 121, 1000, 1030, 5000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut tok = Tokenizer::new();
            let mut reference = Xxh3::new();
            for piece in data.chunks(37) {
                tok.bytes(piece);
                reference.update(&(piece.len() as u64).to_le_bytes());
                reference.update(piece);
            }
            tok.u64(len as u64);
            reference.update(&(len as u64).to_le_bytes());
            assert_eq!(tok.finish(), reference.digest(), "stream of {len} bytes");
        }
    }

    #[test]
    fn length_prefix_separates_fields() {
        let a = Tokenizer::new().str("ab").str("c").finish();
        let b = Tokenizer::new().str("a").str("bc").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn unique_tokens_differ() {
        let a = Tokenizer::new().unique().finish();
        let b = Tokenizer::new().unique().finish();
        assert_ne!(a, b);
    }

    #[test]
    fn key_display_and_serde_roundtrip() {
        let k = Key::new(Name::new("x-1"), &[2, 0]);
        assert_eq!(k.to_string(), "(\"x-1\", 2, 0)");
        let bytes = postcard::to_stdvec(&k).unwrap();
        let back: Key = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, k);
    }
}
