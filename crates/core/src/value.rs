//! Values: what tasks take and return.
//!
//! A [`Value`] is an `Arc<dyn Data>`: cheap to share between the dependents of
//! a task, released when the last one has run. [`Data`] knows two things the
//! schedulers need and nothing else:
//!
//! - its size in bytes, heap included, for memory accounting and spilling;
//! - its codec: a stable name plus `encode`, so a value can cross a process
//!   boundary. The receiving side decodes either eagerly, through the codec
//!   registry ([`CodecEntry`], filled at link time), or lazily, when a typed
//!   consumer asks for it ([`FromValue`] on an [`Encoded`] value).
//!
//! Codec names default to `std::any::type_name`, which is the same in every
//! process of one build — and only one build may join a computation (see
//! [`crate::identity`]).
//!
//! Tuples are not `Data`: a task that returns `(A, B)` returns a [`Tuple`] of
//! two values, so each part can be taken out by a generic op (`nout`).

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::key::Tokenizer;

/// A shared, immutable value produced by a task.
pub type Value = Arc<dyn Data>;

/// Anything a task can take or return.
///
/// Implemented here for numbers, `bool`, `String`, `Vec`, `Option`, maps and
/// unit; collections implement it for their chunk types; user types get it
/// from `#[derive(blockwise::Data)]` (serde underneath).
pub trait Data: Any + Send + Sync {
    /// Bytes held by this value, heap included (an estimate is fine; it must
    /// grow with the real footprint).
    fn size_bytes(&self) -> usize;

    /// The stable name of this value's encoding. Decoders are looked up by it.
    fn codec(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// Appends the encoding of this value to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<()>;

    /// The encoding of this value without copying its bulk: a small head
    /// appended to `head`, and a body lent from the value's own memory. The
    /// encoding is the head followed by the body — the bytes
    /// [`Data::encode`] writes — so a sender writes both to a socket and
    /// never builds the encoding.
    ///
    /// `None` (the default) when the value has no such layout; senders then
    /// use [`Data::encode`]. An implementation returns `Some` only when this
    /// is cheap whatever the value's size (a header, not a pass over the
    /// data). Array chunks of numbers in standard layout lend their
    /// elements.
    fn encode_lent(&self, head: &mut Vec<u8>) -> Option<Result<&[u8]>> {
        let _ = head;
        None
    }

    /// Feeds this value to a tokenizer, for deterministic task names. The
    /// default hashes the encoding; large values may override with something
    /// cheaper that still identifies them.
    fn tokenize(&self, tokenizer: &mut Tokenizer) {
        thread_local! {
            // One encoding buffer per thread: a million literals of a
            // million `delayed` calls allocate nothing to be named.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut hash = |buf: &mut Vec<u8>| match self.encode(buf) {
            Ok(()) => {
                tokenizer.str(self.codec()).bytes(buf);
            }
            Err(_) => {
                tokenizer.unique();
            }
        };
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                hash(&mut buf);
                // Keep the buffer small after one large value.
                if buf.capacity() > 1 << 16 {
                    *buf = Vec::new();
                }
            }
            // Encoding this value tokenizes another on this thread.
            Err(_) => hash(&mut Vec::new()),
        })
    }

    /// A short description for errors and graph pictures.
    fn describe(&self) -> String {
        short_type_name(self.codec()).to_string()
    }
}

/// Decoding, the other half of a codec. Separate from [`Data`] because it
/// returns `Self` (so `Data` stays usable as `dyn Data`).
pub trait Decode: Sized {
    /// Reads a value from bytes written by [`Data::encode`].
    fn decode(bytes: &[u8]) -> Result<Self>;

    /// Builds a value from several task outputs (a list argument: a
    /// `Vec<Delayed<T>>` passed where a function takes `Vec<T>`). Only
    /// collection types support this.
    fn from_parts(parts: &[Value]) -> Result<Self> {
        Err(Error::new(
            ErrorKind::TypeMismatch,
            format!(
                "{} cannot be built from a list of {} values",
                std::any::type_name::<Self>(),
                parts.len()
            ),
        ))
    }
}

/// A codec registered at link time, for decoding by name without knowing the
/// type statically (for example on a worker that received a literal).
pub struct CodecEntry {
    /// The codec name, as returned by [`Data::codec`].
    pub name: fn() -> &'static str,
    /// Decodes bytes into a value.
    pub decode: fn(&[u8]) -> Result<Value>,
}
inventory::collect!(CodecEntry);

/// Registers the codec of a type implementing [`Data`] and [`Decode`] so values
/// of that type are decoded eagerly when they arrive from another process.
#[macro_export]
macro_rules! register_codec {
    ($($ty:ty),+ $(,)?) => {$(
        $crate::__private::inventory::submit! {
            $crate::value::CodecEntry {
                name: || ::std::any::type_name::<$ty>(),
                decode: |bytes| {
                    let v: $ty = <$ty as $crate::value::Decode>::decode(bytes)?;
                    Ok(::std::sync::Arc::new(v) as $crate::value::Value)
                },
            }
        }
    )+};
}

/// A value being received straight into its own storage: the receiving
/// side of [`Data::encode_lent`]. The body of the encoding is read into
/// [`Receiving::body`], which is the value's memory, and
/// [`Receiving::finish`] makes it the value — no decode pass, no copy.
pub trait Receiving: Send {
    /// Where the body goes: exactly as many bytes as the body announced.
    fn body(&mut self) -> &mut [u8];

    /// The value, once [`Receiving::body`] holds the body's bytes. Checks
    /// what the bytes must satisfy and fails with a codec error if they
    /// do not.
    fn finish(self: Box<Self>) -> Result<Value>;
}

/// A codec that can receive values straight into their storage (see
/// [`Receiving`]), registered at link time next to its [`CodecEntry`].
pub struct ReceiverEntry {
    /// The codec name, as returned by [`Data::codec`].
    pub name: fn() -> &'static str,
    /// Reads the head of an encoding and prepares storage for a body of
    /// `body_len` bytes; a codec error if the head is not this codec's or
    /// does not announce a body of that length.
    pub receive: ValueReceiver,
}
inventory::collect!(ReceiverEntry);

/// Prepares to receive a value of `codec` whose encoding is `head`
/// followed by a body of `body_len` bytes, when this build has a
/// [`ReceiverEntry`] for the codec: read the body into
/// [`Receiving::body`], then [`Receiving::finish`]. `None` when it has
/// not: then read the body into a buffer and [`decode_value`] the head and
/// body joined.
pub fn receive_value(codec: &str, head: &[u8], body_len: usize) -> Option<Result<Box<dyn Receiving>>> {
    static RECEIVERS: OnceLock<HashMap<&'static str, ValueReceiver>> = OnceLock::new();
    let receivers = RECEIVERS.get_or_init(|| {
        inventory::iter::<ReceiverEntry>
            .into_iter()
            .map(|e| ((e.name)(), e.receive))
            .collect()
    });
    let receive = receivers.get(codec)?;
    Some(receive(head, body_len).map_err(|e| e.context(format!("while receiving a value of type {codec}"))))
}

/// Prepares the storage of a received value of one codec, from the head of
/// its encoding and the length of its body (see [`ReceiverEntry`]).
pub type ValueReceiver = fn(&[u8], usize) -> Result<Box<dyn Receiving>>;

/// Decodes a value of one codec.
type ValueDecoder = fn(&[u8]) -> Result<Value>;

fn codec_registry() -> &'static HashMap<&'static str, ValueDecoder> {
    static REGISTRY: OnceLock<HashMap<&'static str, ValueDecoder>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        inventory::iter::<CodecEntry>
            .into_iter()
            .map(|e| ((e.name)(), e.decode))
            .collect()
    })
}

/// Encodes a value into `(codec, bytes)`.
pub fn encode_value(value: &Value) -> Result<Encoded> {
    if let Some(enc) = value.downcast_ref::<Encoded>() {
        return Ok(enc.clone());
    }
    let mut bytes = Vec::new();
    value
        .encode(&mut bytes)
        .map_err(|e| e.context(format!("while encoding a value of type {}", value.codec())))?;
    Ok(Encoded {
        codec: value.codec().to_string(),
        bytes: Arc::from(bytes),
    })
}

/// Decodes `(codec, bytes)`: through the registry when the codec is
/// registered, else kept as an [`Encoded`] value for a typed consumer.
pub fn decode_value(codec: &str, bytes: &[u8]) -> Result<Value> {
    if codec == TUPLE_CODEC {
        return Ok(Arc::new(Tuple::decode(bytes)?));
    }
    match codec_registry().get(codec) {
        Some(decode) => decode(bytes).map_err(|e| e.context(format!("while decoding a value of type {codec}"))),
        None => Ok(Arc::new(Encoded {
            codec: codec.to_string(),
            bytes: Arc::from(bytes),
        })),
    }
}

impl dyn Data {
    /// The value as `&T`, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        (self as &dyn Any).downcast_ref::<T>()
    }

    /// Whether the value is a `T`.
    pub fn is<T: Any>(&self) -> bool {
        (self as &dyn Any).is::<T>()
    }
}

impl fmt::Debug for dyn Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} of {} bytes>", self.describe(), self.size_bytes())
    }
}

/// Downcasts a shared value to `Arc<T>` without copying.
pub fn downcast_arc<T: Data>(value: Value) -> std::result::Result<Arc<T>, Value> {
    if value.is::<T>() {
        let any: Arc<dyn Any + Send + Sync> = value;
        Ok(any.downcast::<T>().expect("checked with is::<T>()"))
    } else {
        Err(value)
    }
}

/// A value still in its encoded form: it came from another process and no
/// codec for it is registered here, so it is decoded when a typed consumer
/// asks for it.
#[derive(Clone)]
pub struct Encoded {
    /// The codec name of the original value.
    pub codec: String,
    /// The encoded bytes.
    pub bytes: Arc<[u8]>,
}

impl Data for Encoded {
    fn size_bytes(&self) -> usize {
        self.bytes.len() + self.codec.len() + std::mem::size_of::<Self>()
    }
    fn codec(&self) -> &'static str {
        // An encoded value re-encodes as itself; see `encode_value`, which
        // keeps its original codec name.
        "blockwise::Encoded"
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&self.bytes);
        Ok(())
    }
    fn describe(&self) -> String {
        format!("encoded {}", short_type_name(&self.codec))
    }
}

/// The codec name of [`Tuple`].
pub const TUPLE_CODEC: &str = "blockwise::Tuple";

/// Several values returned by one task (`nout`), each taken out by its own key.
#[derive(Clone)]
pub struct Tuple(pub Vec<Value>);

impl Data for Tuple {
    fn size_bytes(&self) -> usize {
        self.0.iter().map(|v| v.size_bytes()).sum::<usize>() + std::mem::size_of::<Self>()
    }
    fn codec(&self) -> &'static str {
        TUPLE_CODEC
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let parts: Vec<Encoded> = self.0.iter().map(encode_value).collect::<Result<_>>()?;
        let wire: Vec<(&str, &[u8])> = parts.iter().map(|e| (e.codec.as_str(), &*e.bytes)).collect();
        postcard_encode(&wire, out)
    }
    fn describe(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|v| v.describe()).collect();
        format!("({})", parts.join(", "))
    }
}

impl Decode for Tuple {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let wire: Vec<(String, Vec<u8>)> = postcard_decode(bytes)?;
        let values = wire
            .iter()
            .map(|(codec, bytes)| decode_value(codec, bytes))
            .collect::<Result<_>>()?;
        Ok(Tuple(values))
    }
}

/// Encodes with postcard (the message format of blockwise).
pub fn postcard_encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    let bytes = postcard::to_stdvec(value).map_err(|e| Error::codec(format!("postcard encoding failed: {e}")))?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Decodes with postcard, naming the target type in the error.
pub fn postcard_decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::codec(format!(
            "cannot decode {} from {} bytes: {e}",
            std::any::type_name::<T>(),
            bytes.len()
        ))
    })
}

/// `"alloc::string::String"` → `"String"`, for messages.
pub fn short_type_name(name: &str) -> &str {
    let head = name.split('<').next().unwrap_or(name);
    match head.rfind("::") {
        Some(i) => &name[i + 2..],
        None => name,
    }
}

/// Conversion from a shared value into the type a function takes.
pub trait FromValue: Sized {
    /// Reads `Self` out of a value: a downcast and clone, or a decode when the
    /// value is still [`Encoded`].
    fn from_value(value: &Value) -> Result<Self>;
}

/// Conversion of what a function returns into a shared value.
pub trait IntoValue {
    /// Wraps `self` as a value.
    fn into_value(self) -> Value;
}

impl<T: Data + Decode + Clone> FromValue for T {
    fn from_value(value: &Value) -> Result<Self> {
        if let Some(v) = value.downcast_ref::<T>() {
            return Ok(v.clone());
        }
        if let Some(enc) = value.downcast_ref::<Encoded>() {
            if enc.codec == std::any::type_name::<T>() {
                return T::decode(&enc.bytes);
            }
            if enc.codec == TUPLE_CODEC {
                return T::from_parts(&Tuple::decode(&enc.bytes)?.0);
            }
            return Err(type_mismatch::<T>(&enc.codec));
        }
        if let Some(parts) = value.downcast_ref::<Tuple>() {
            return T::from_parts(&parts.0);
        }
        Err(type_mismatch::<T>(value.codec()))
    }
}

fn type_mismatch<T>(found: &str) -> Error {
    Error::new(
        ErrorKind::TypeMismatch,
        format!(
            "expected a value of type {}, found {}",
            std::any::type_name::<T>(),
            found
        ),
    )
}

impl<T: Data> IntoValue for T {
    fn into_value(self) -> Value {
        Arc::new(self)
    }
}

macro_rules! tuple_values {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: IntoValue),+> IntoValue for ($($name,)+) {
            fn into_value(self) -> Value {
                Arc::new(Tuple(vec![$(self.$idx.into_value()),+]))
            }
        }
        impl<$($name: FromValue),+> FromValue for ($($name,)+) {
            fn from_value(value: &Value) -> Result<Self> {
                let tuple = match value.downcast_ref::<Tuple>() {
                    Some(t) => t.clone(),
                    None => match value.downcast_ref::<Encoded>() {
                        Some(enc) if enc.codec == TUPLE_CODEC => Tuple::decode(&enc.bytes)?,
                        _ => return Err(type_mismatch::<Self>(value.codec())),
                    },
                };
                let n = [$($idx),+].len();
                if tuple.0.len() != n {
                    return Err(Error::new(ErrorKind::TypeMismatch, format!(
                        "expected a tuple of {n} values, found {}", tuple.0.len())));
                }
                Ok(($($name::from_value(&tuple.0[$idx])?,)+))
            }
        }
    };
}
tuple_values!(A 0, B 1);
tuple_values!(A 0, B 1, C 2);
tuple_values!(A 0, B 1, C 2, D 3);
tuple_values!(A 0, B 1, C 2, D 3, E 4);
tuple_values!(A 0, B 1, C 2, D 3, E 4, F 5);

/// Implements [`Data`] and [`Decode`] through serde and postcard for a type
/// whose size is `size_of` (no heap), and registers its codec.
#[macro_export]
macro_rules! impl_plain_data {
    ($($ty:ty),+ $(,)?) => {$(
        impl $crate::value::Data for $ty {
            fn size_bytes(&self) -> usize { ::std::mem::size_of::<$ty>() }
            fn encode(&self, out: &mut Vec<u8>) -> $crate::Result<()> {
                $crate::value::postcard_encode(self, out)
            }
        }
        impl $crate::value::Decode for $ty {
            fn decode(bytes: &[u8]) -> $crate::Result<Self> { $crate::value::postcard_decode(bytes) }
        }
        $crate::register_codec!($ty);
    )+};
}

impl_plain_data!(
    bool,
    u8,
    u16,
    u32,
    u64,
    usize,
    i8,
    i16,
    i32,
    i64,
    isize,
    f32,
    f64,
    char,
    ()
);

impl Data for String {
    fn size_bytes(&self) -> usize {
        std::mem::size_of::<String>() + self.capacity()
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        postcard_encode(self, out)
    }
}
impl Decode for String {
    fn decode(bytes: &[u8]) -> Result<Self> {
        postcard_decode(bytes)
    }
}
register_codec!(String);

/// Heap bytes of a value beyond its inline size.
fn heap_of<T: Data>(v: &T) -> usize {
    v.size_bytes().saturating_sub(std::mem::size_of::<T>())
}

// A `Vec` encodes element by element through the elements' own codecs, so a
// list of any `Data` (not only serde types) can cross a process boundary.
impl<T: Data> Data for Vec<T> {
    fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.capacity() * std::mem::size_of::<T>()
            + self.iter().map(heap_of).sum::<usize>()
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        write_varint(out, self.len() as u64);
        let mut buf = Vec::new();
        for item in self {
            buf.clear();
            item.encode(&mut buf)?;
            write_varint(out, buf.len() as u64);
            out.extend_from_slice(&buf);
        }
        Ok(())
    }
}
impl<T: Data + Decode + Clone> Decode for Vec<T> {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut rest = bytes;
        let n = read_varint(&mut rest)? as usize;
        let mut out = Vec::with_capacity(n.min(rest.len()));
        for i in 0..n {
            let len = read_varint(&mut rest)? as usize;
            if len > rest.len() {
                return Err(Error::codec(format!("list item {i} of {n} is cut short")));
            }
            let (item, tail) = rest.split_at(len);
            out.push(T::decode(item).map_err(|e| e.context(format!("in list item {i}")))?);
            rest = tail;
        }
        Ok(out)
    }
    fn from_parts(parts: &[Value]) -> Result<Self> {
        parts
            .iter()
            .enumerate()
            .map(|(i, v)| T::from_value(v).map_err(|e| e.context(format!("in list item {i}"))))
            .collect()
    }
}

/// Appends an unsigned LEB128 integer.
pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads an unsigned LEB128 integer, advancing `bytes`.
pub fn read_varint(bytes: &mut &[u8]) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes
            .split_first()
            .ok_or_else(|| Error::codec("a length is cut short"))?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Error::codec("a length is longer than 64 bits"))
}

register_codec!(
    Vec<f64>,
    Vec<f32>,
    Vec<i64>,
    Vec<i32>,
    Vec<u64>,
    Vec<u32>,
    Vec<u8>,
    Vec<bool>,
    Vec<String>
);

impl<T: Data + Serialize + DeserializeOwned> Data for Option<T> {
    fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.as_ref().map(heap_of).unwrap_or(0)
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        postcard_encode(self, out)
    }
}
impl<T: Data + Serialize + DeserializeOwned> Decode for Option<T> {
    fn decode(bytes: &[u8]) -> Result<Self> {
        postcard_decode(bytes)
    }
}

impl<K, V> Data for HashMap<K, V>
where
    K: Data + Serialize + DeserializeOwned + Eq + std::hash::Hash,
    V: Data + Serialize + DeserializeOwned,
{
    fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.capacity() * (std::mem::size_of::<K>() + std::mem::size_of::<V>() + 1)
            + self.iter().map(|(k, v)| heap_of(k) + heap_of(v)).sum::<usize>()
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        // Sorted by encoding, so equal maps encode (and tokenize) equally.
        let mut entries: Vec<(Vec<u8>, &V)> = Vec::with_capacity(self.len());
        for (k, v) in self {
            entries.push((postcard::to_stdvec(k).map_err(|e| Error::codec(e.to_string()))?, v));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let keys: Vec<K> = entries.iter().map(|(k, _)| postcard_decode(k)).collect::<Result<_>>()?;
        let pairs: Vec<(&K, &V)> = keys.iter().zip(entries.iter().map(|(_, v)| *v)).collect();
        postcard_encode(&pairs, out)
    }
}
impl<K, V> Decode for HashMap<K, V>
where
    K: DeserializeOwned + Eq + std::hash::Hash,
    V: DeserializeOwned,
{
    fn decode(bytes: &[u8]) -> Result<Self> {
        let pairs: Vec<(K, V)> = postcard_decode(bytes)?;
        Ok(pairs.into_iter().collect())
    }
}

impl<K, V> Data for BTreeMap<K, V>
where
    K: Data + Serialize + DeserializeOwned + Ord,
    V: Data + Serialize + DeserializeOwned,
{
    fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .iter()
                .map(|(k, v)| k.size_bytes() + v.size_bytes() + 16)
                .sum::<usize>()
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        postcard_encode(self, out)
    }
}
impl<K: DeserializeOwned + Ord, V: DeserializeOwned> Decode for BTreeMap<K, V> {
    fn decode(bytes: &[u8]) -> Result<Self> {
        postcard_decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Data + Decode + Clone + PartialEq + fmt::Debug>(v: T) {
        let value: Value = Arc::new(v.clone());
        let enc = encode_value(&value).unwrap();
        // eager path, through the registry (or lazy when unregistered)
        let back = decode_value(&enc.codec, &enc.bytes).unwrap();
        assert_eq!(T::from_value(&back).unwrap(), v);
        // lazy path, always through the typed consumer
        let lazy: Value = Arc::new(Encoded {
            codec: enc.codec.clone(),
            bytes: enc.bytes.clone(),
        });
        assert_eq!(T::from_value(&lazy).unwrap(), v);
    }

    #[test]
    fn codecs_roundtrip() {
        roundtrip(42i64);
        roundtrip(1.5f64);
        roundtrip(true);
        roundtrip(String::from("héllo"));
        roundtrip(vec![1.0f64, 2.0, 3.0]);
        roundtrip(vec![String::from("a"), String::from("bc")]);
        roundtrip(Some(3u32));
        let mut m = HashMap::new();
        m.insert(String::from("x"), 1i64);
        m.insert(String::from("y"), 2i64);
        roundtrip(m);
    }

    #[test]
    fn registered_codec_decodes_eagerly() {
        let value: Value = Arc::new(7i64);
        let enc = encode_value(&value).unwrap();
        let back = decode_value(&enc.codec, &enc.bytes).unwrap();
        assert!(back.is::<i64>(), "i64 is registered, so it decodes eagerly");
    }

    #[test]
    fn size_counts_heap() {
        let small = vec![0f64; 10];
        let big = vec![0f64; 10_000];
        assert!(big.size_bytes() >= 80_000);
        assert!(small.size_bytes() < big.size_bytes());
        let s = String::from_utf8(vec![b'a'; 1000]).unwrap();
        assert!(s.size_bytes() >= 1000);
    }

    #[test]
    fn wrong_type_is_a_clear_error() {
        let value: Value = Arc::new(7i64);
        let err = String::from_value(&value).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::TypeMismatch);
        assert!(err.to_string().contains("i64"), "{err}");
    }

    #[test]
    fn tuples_roundtrip_through_tuple_values() {
        let v = (1i64, String::from("two")).into_value();
        let enc = encode_value(&v).unwrap();
        let back = decode_value(&enc.codec, &enc.bytes).unwrap();
        let (a, b): (i64, String) = FromValue::from_value(&back).unwrap();
        assert_eq!((a, b.as_str()), (1, "two"));
    }

    #[test]
    fn equal_maps_encode_equally() {
        let mut a = HashMap::new();
        let mut b = HashMap::new();
        for i in 0..50i64 {
            a.insert(i, i * 2);
        }
        for i in (0..50i64).rev() {
            b.insert(i, i * 2);
        }
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        a.encode(&mut ea).unwrap();
        b.encode(&mut eb).unwrap();
        assert_eq!(ea, eb);
    }
}
