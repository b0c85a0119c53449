//! Heap bytes of a serde value, for memory accounting.
//!
//! A bag's elements are any serde type, so there is no `Data::size_bytes` to
//! ask. Instead [`heap_bytes`] walks the value with a serializer that writes
//! nothing and rebuilds, from serde's data model, an estimate of the value's
//! layout: the inline size of each part (a `u64` is 8 bytes, a string or a
//! sequence is a 24-byte `String`/`Vec` header, a map a 48-byte `HashMap`, a
//! struct the sum of its fields) and the heap each part owns (a string's bytes,
//! a sequence's elements inline and their own heap, a map's entries). The
//! size of a sequence element cannot be read from its type (serde hands out
//! references), hence the model.
//!
//! Padding, enum tags of other variants, spare capacity and the header of
//! boxed or shared pointers (serialized transparently) are not seen, so the
//! estimate is a little low; it grows with the real footprint, which is what
//! [`blockwise_core::Data::size_bytes`] asks for.
//!
//! [`sampled_heap_bytes`] walks at most [`SAMPLE`] evenly spaced elements of a
//! long slice and extrapolates, so sizing a million-record partition costs
//! microseconds.

use std::fmt;

use serde::Serialize;
use serde::ser;

/// At most this many elements of a slice are walked by [`sampled_heap_bytes`].
pub(crate) const SAMPLE: usize = 64;

/// Inline size of a `String` or `Vec` header.
const VEC_HEADER: usize = 24;
/// Inline size of a `HashMap` header.
const MAP_HEADER: usize = 48;
/// Estimated size of an enum tag (with alignment).
const TAG: usize = 8;

/// Heap bytes held by `value` (not counting its own inline size).
pub(crate) fn heap_bytes<T: Serialize + ?Sized>(value: &T) -> usize {
    // The walker never fails; a type whose Serialize impl fails on purpose
    // counts as owning nothing.
    value.serialize(Walker).map(|s| s.heap).unwrap_or(0)
}

/// Heap bytes held by the elements of `items` (not the slice's own buffer),
/// exact for short slices and extrapolated from an even sample for long ones.
pub(crate) fn sampled_heap_bytes<T: Serialize>(items: &[T]) -> usize {
    let n = items.len();
    if n <= SAMPLE {
        return items.iter().map(heap_bytes).sum();
    }
    let sampled: usize = (0..SAMPLE).map(|k| heap_bytes(&items[k * n / SAMPLE])).sum();
    ((sampled as f64) * (n as f64) / (SAMPLE as f64)) as usize
}

/// The estimated layout of a value: bytes inline, bytes it owns on the heap.
#[derive(Clone, Copy, Default)]
struct Size {
    inline: usize,
    heap: usize,
}

impl Size {
    fn inline(inline: usize) -> Self {
        Size { inline, heap: 0 }
    }
}

/// The serializer that measures.
struct Walker;

/// The walker's error: only `serde::ser::Error::custom`, raised by a type's
/// own Serialize impl.
#[derive(Debug)]
struct Never(String);

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Never {}
impl ser::Error for Never {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Never(msg.to_string())
    }
}

/// What a compound value's parts add up to.
enum Kind {
    /// Parts live inline (tuples, structs); `tag` for an enum variant.
    Inline { tag: usize },
    /// Parts live on the heap behind a header (sequences, maps).
    Heap { header: usize, per_entry: usize },
}

struct Compound {
    kind: Kind,
    total: Size,
}

impl Compound {
    fn new(kind: Kind) -> Self {
        Compound {
            kind,
            total: Size::default(),
        }
    }

    fn part<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), Never> {
        let s = value.serialize(Walker)?;
        match self.kind {
            Kind::Inline { .. } => {
                self.total.inline += s.inline;
                self.total.heap += s.heap;
            }
            Kind::Heap { .. } => self.total.heap += s.inline + s.heap,
        }
        Ok(())
    }

    fn entry(&mut self) {
        if let Kind::Heap { per_entry, .. } = self.kind {
            self.total.heap += per_entry;
        }
    }

    fn end(self) -> Result<Size, Never> {
        Ok(match self.kind {
            Kind::Inline { tag } => Size {
                inline: self.total.inline + tag,
                heap: self.total.heap,
            },
            Kind::Heap { header, .. } => Size {
                inline: header,
                heap: self.total.heap,
            },
        })
    }
}

macro_rules! scalars {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method(self, _v: $ty) -> Result<Size, Never> {
            Ok(Size::inline(std::mem::size_of::<$ty>()))
        }
    )*};
}

impl ser::Serializer for Walker {
    type Ok = Size;
    type Error = Never;
    type SerializeSeq = Compound;
    type SerializeTuple = Compound;
    type SerializeTupleStruct = Compound;
    type SerializeTupleVariant = Compound;
    type SerializeMap = Compound;
    type SerializeStruct = Compound;
    type SerializeStructVariant = Compound;

    scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
    );

    fn serialize_str(self, v: &str) -> Result<Size, Never> {
        Ok(Size {
            inline: VEC_HEADER,
            heap: v.len(),
        })
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Size, Never> {
        Ok(Size {
            inline: VEC_HEADER,
            heap: v.len(),
        })
    }
    fn serialize_none(self) -> Result<Size, Never> {
        Ok(Size::inline(TAG))
    }
    fn serialize_some<V: Serialize + ?Sized>(self, value: &V) -> Result<Size, Never> {
        // Most payloads have a niche (a pointer, a length) that holds the tag.
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Size, Never> {
        Ok(Size::default())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Size, Never> {
        Ok(Size::default())
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, _variant: &'static str) -> Result<Size, Never> {
        Ok(Size::inline(TAG))
    }
    fn serialize_newtype_struct<V: Serialize + ?Sized>(self, _name: &'static str, value: &V) -> Result<Size, Never> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        value: &V,
    ) -> Result<Size, Never> {
        let s = value.serialize(self)?;
        Ok(Size {
            inline: s.inline + TAG,
            heap: s.heap,
        })
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound, Never> {
        Ok(Compound::new(Kind::Heap {
            header: VEC_HEADER,
            per_entry: 0,
        }))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound, Never> {
        Ok(Compound::new(Kind::Inline { tag: 0 }))
    }
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Compound, Never> {
        Ok(Compound::new(Kind::Inline { tag: 0 }))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Compound, Never> {
        Ok(Compound::new(Kind::Inline { tag: TAG }))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound, Never> {
        // A hash map entry also costs a control byte and spare slots.
        Ok(Compound::new(Kind::Heap {
            header: MAP_HEADER,
            per_entry: 8,
        }))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound, Never> {
        Ok(Compound::new(Kind::Inline { tag: 0 }))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Compound, Never> {
        Ok(Compound::new(Kind::Inline { tag: TAG }))
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

impl ser::SerializeSeq for Compound {
    type Ok = Size;
    type Error = Never;
    fn serialize_element<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), Never> {
        self.part(value)
    }
    fn end(self) -> Result<Size, Never> {
        Compound::end(self)
    }
}
impl ser::SerializeTuple for Compound {
    type Ok = Size;
    type Error = Never;
    fn serialize_element<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), Never> {
        self.part(value)
    }
    fn end(self) -> Result<Size, Never> {
        Compound::end(self)
    }
}
impl ser::SerializeTupleStruct for Compound {
    type Ok = Size;
    type Error = Never;
    fn serialize_field<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), Never> {
        self.part(value)
    }
    fn end(self) -> Result<Size, Never> {
        Compound::end(self)
    }
}
impl ser::SerializeTupleVariant for Compound {
    type Ok = Size;
    type Error = Never;
    fn serialize_field<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), Never> {
        self.part(value)
    }
    fn end(self) -> Result<Size, Never> {
        Compound::end(self)
    }
}
impl ser::SerializeMap for Compound {
    type Ok = Size;
    type Error = Never;
    fn serialize_key<V: Serialize + ?Sized>(&mut self, key: &V) -> Result<(), Never> {
        self.entry();
        self.part(key)
    }
    fn serialize_value<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), Never> {
        self.part(value)
    }
    fn end(self) -> Result<Size, Never> {
        Compound::end(self)
    }
}
impl ser::SerializeStruct for Compound {
    type Ok = Size;
    type Error = Never;
    fn serialize_field<V: Serialize + ?Sized>(&mut self, _key: &'static str, value: &V) -> Result<(), Never> {
        self.part(value)
    }
    fn end(self) -> Result<Size, Never> {
        Compound::end(self)
    }
}
impl ser::SerializeStructVariant for Compound {
    type Ok = Size;
    type Error = Never;
    fn serialize_field<V: Serialize + ?Sized>(&mut self, _key: &'static str, value: &V) -> Result<(), Never> {
        self.part(value)
    }
    fn end(self) -> Result<Size, Never> {
        Compound::end(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Account {
        id: u64,
        name: String,
        transactions: Vec<(u64, f64)>,
    }

    #[test]
    fn counts_strings_and_sequence_slots() {
        assert_eq!(heap_bytes(&5u64), 0);
        assert_eq!(heap_bytes(&String::from("hello")), 5);
        assert_eq!(heap_bytes(&vec![1u64, 2, 3]), 24);
        assert_eq!(heap_bytes(&vec![String::from("ab"), String::from("c")]), 2 * 24 + 3);
        let a = Account {
            id: 1,
            name: "alice".into(),
            transactions: vec![(1, 2.0); 10],
        };
        assert_eq!(heap_bytes(&a), 5 + 10 * 16);
        // tuples and Options are inline
        assert_eq!(heap_bytes(&(1u8, String::from("xy"))), 2);
        assert_eq!(heap_bytes(&Some(String::from("xyz"))), 3);
    }

    #[test]
    fn sampling_extrapolates_long_slices() {
        let items: Vec<String> = (0..10_000).map(|_| "x".repeat(100)).collect();
        let estimate = sampled_heap_bytes(&items);
        assert_eq!(estimate, 1_000_000);
        let short: Vec<String> = vec!["abc".into(); 3];
        assert_eq!(sampled_heap_bytes(&short), 9);
    }
}
