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
    hasher: Xxh3,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokenizer {
    /// An empty tokenizer.
    pub fn new() -> Self {
        Tokenizer { hasher: Xxh3::new() }
    }

    /// Feeds raw bytes, length-prefixed so that `("ab","c")` and `("a","bc")` differ.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
        self
    }

    /// Feeds a string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Feeds an integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.hasher.update(&v.to_le_bytes());
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
        self.hasher.digest()
    }

    /// A name `"{prefix}-{token}"`, with a 16-hex-digit token.
    pub fn name(&self, prefix: &str) -> Name {
        Name::new(&format!("{prefix}-{:016x}", self.finish()))
    }
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
