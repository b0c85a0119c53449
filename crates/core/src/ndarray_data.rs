//! Owned ndarray arrays as task values: the chunks of `blockwise-array`.
//!
//! An array chunk is a plain `ndarray::ArrayD<T>`, so user block functions
//! take and return ndarray types and nothing in between copies or wraps them.
//! These impls live here, not in the array crate, because of the orphan rule
//! (`Data` is ours, `ArrayD` is ndarray's: only this crate may join them).
//!
//! Encoding is a small header and the raw little-endian buffer, never
//! per-element serde:
//!
//! ```text
//! b"BWND"  version:u8  dtype:u8  ndim:u8  shape:[u64 LE; ndim]  data:[element LE; product(shape)]
//! ```
//!
//! The element order is row-major (C order) whatever the array's memory
//! layout. `bool` is one byte, 0 or 1; any other byte is a corrupt value.
//!
//! Sending an array between processes never builds that encoding: an array
//! of numbers in standard layout lends it as its header and its own memory
//! ([`Data::encode_lent`], on little-endian machines: there the memory of a
//! number is its encoding; elsewhere it is encoded),
//! and the receiver reads the elements straight into the new array's
//! storage ([`crate::value::receive_value`]), so a 1 GB chunk is copied by
//! the kernel only.
//!
//! Tokenizing an array (for deterministic task names) hashes its dtype, shape
//! and raw bytes with XXH3 in batches, without building the encoding.

use ndarray::ArrayD;
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};
use crate::key::Tokenizer;
use std::sync::Arc;

use crate::value::{Data, Decode, ReceiverEntry, Receiving, Value};

/// The first bytes of every encoded array.
pub const MAGIC: &[u8; 4] = b"BWND";
/// The encoding version written by this build.
pub const VERSION: u8 = 1;

/// An element type that an array chunk may hold, with its raw little-endian
/// encoding.
pub trait NdElement: Copy + Send + Sync + 'static {
    /// A stable one-byte code of the type in the encoding header.
    const DTYPE: u8;
    /// The type's name, as NumPy's short names (`f64`, `i32`, `bool`).
    const DTYPE_NAME: &'static str;
    /// Bytes per element.
    const SIZE: usize;
    /// Appends the little-endian bytes of `self`.
    fn write_le(self, out: &mut Vec<u8>);
    /// Reads one element from exactly [`NdElement::SIZE`] bytes.
    fn read_le(bytes: &[u8]) -> Result<Self>;
    /// The encoding of `elements` (their little-endian bytes, in order)
    /// lent without copying, when the machine's memory layout of the type
    /// is that encoding; `None` (the default) otherwise.
    fn lend_le(elements: &[Self]) -> Option<&[u8]> {
        let _ = elements;
        None
    }
}

macro_rules! nd_number {
    ($($ty:ty => $code:expr, $name:expr;)+) => {$(
        impl NdElement for $ty {
            const DTYPE: u8 = $code;
            const DTYPE_NAME: &'static str = $name;
            const SIZE: usize = std::mem::size_of::<$ty>();
            #[inline]
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn read_le(bytes: &[u8]) -> Result<Self> {
                let raw: [u8; std::mem::size_of::<$ty>()] = bytes
                    .try_into()
                    .map_err(|_| Error::codec(concat!("a ", $name, " element is cut short")))?;
                Ok(<$ty>::from_le_bytes(raw))
            }
            #[inline]
            fn lend_le(elements: &[Self]) -> Option<&[u8]> {
                // A number's bytes in memory are its little-endian encoding
                // on a little-endian machine.
                if cfg!(target_endian = "little") {
                    Some(bytemuck::cast_slice(elements))
                } else {
                    None
                }
            }
        }
    )+};
}

nd_number! {
    f64 => 1, "f64";
    f32 => 2, "f32";
    i64 => 3, "i64";
    i32 => 4, "i32";
    u8 => 5, "u8";
    u64 => 7, "u64";
    u32 => 8, "u32";
    i16 => 9, "i16";
    u16 => 10, "u16";
    i8 => 11, "i8";
}

impl NdElement for bool {
    const DTYPE: u8 = 6;
    const DTYPE_NAME: &'static str = "bool";
    const SIZE: usize = 1;
    #[inline]
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    #[inline]
    fn read_le(bytes: &[u8]) -> Result<Self> {
        match bytes {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(Error::codec(format!("a bool element holds the byte {b}, not 0 or 1"))),
            _ => Err(Error::codec("a bool element is cut short")),
        }
    }
}

/// The name of the dtype behind a header code, for messages.
fn dtype_name(code: u8) -> String {
    match code {
        1 => "f64".into(),
        2 => "f32".into(),
        3 => "i64".into(),
        4 => "i32".into(),
        5 => "u8".into(),
        6 => "bool".into(),
        7 => "u64".into(),
        8 => "u32".into(),
        9 => "i16".into(),
        10 => "u16".into(),
        11 => "i8".into(),
        other => format!("unknown dtype code {other}"),
    }
}

/// Bytes of the header of an array of `ndim` dimensions.
pub fn header_len(ndim: usize) -> usize {
    MAGIC.len() + 3 + 8 * ndim
}

/// Element bytes of `array`, in row-major order, fed in batches to `sink`
/// (the encoder and the tokenizer share this walk).
fn for_each_batch<T: NdElement>(array: &ArrayD<T>, mut sink: impl FnMut(&[u8])) {
    const BATCH: usize = 8192;
    let mut buf = Vec::with_capacity(BATCH.min(array.len() * T::SIZE) + T::SIZE);
    for &x in array.iter() {
        x.write_le(&mut buf);
        if buf.len() >= BATCH {
            sink(&buf);
            buf.clear();
        }
    }
    if !buf.is_empty() {
        sink(&buf);
    }
}

impl<T: NdElement> Data for ArrayD<T> {
    fn size_bytes(&self) -> usize {
        self.len() * T::SIZE + header_len(self.ndim()) + std::mem::size_of::<Self>()
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.reserve(header_len(self.ndim()) + self.len() * T::SIZE);
        write_header(self, out)?;
        if let Some(slice) = self.as_slice() {
            for &x in slice {
                x.write_le(out);
            }
        } else {
            for_each_batch(self, |b| out.extend_from_slice(b));
        }
        Ok(())
    }

    fn encode_lent(&self, head: &mut Vec<u8>) -> Option<Result<&[u8]>> {
        // Standard (row-major, contiguous) layout only: its memory is the
        // elements in encoding order.
        let body = T::lend_le(self.as_slice()?)?;
        Some(write_header(self, head).map(|()| body))
    }

    fn tokenize(&self, tokenizer: &mut Tokenizer) {
        let mut hasher = Xxh3::new();
        for_each_batch(self, |b| hasher.update(b));
        tokenizer
            .str("ndarray")
            .u64(u64::from(T::DTYPE))
            .u64(self.ndim() as u64);
        for &d in self.shape() {
            tokenizer.u64(d as u64);
        }
        tokenizer.u64(hasher.digest());
    }

    fn describe(&self) -> String {
        format!("ndarray {}{:?}", T::DTYPE_NAME, self.shape())
    }
}

/// Appends the header of `array` (everything before its elements).
fn write_header<T: NdElement>(array: &ArrayD<T>, out: &mut Vec<u8>) -> Result<()> {
    if array.ndim() > usize::from(u8::MAX) {
        return Err(Error::codec(format!(
            "an array of {} dimensions cannot be encoded (at most 255)",
            array.ndim()
        )));
    }
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(T::DTYPE);
    out.push(array.ndim() as u8);
    for &d in array.shape() {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
    Ok(())
}

/// The shape, element count and header length read from the start of
/// `bytes` (an encoding of `total` bytes, for messages), checked against
/// `T`.
fn read_header<T: NdElement>(bytes: &[u8], total: usize) -> Result<(Vec<usize>, usize, usize)> {
    let what = || format!("an ndarray {} value of {total} bytes", T::DTYPE_NAME);
    if bytes.len() < MAGIC.len() + 3 || &bytes[..4] != MAGIC {
        return Err(Error::codec(format!("{} does not start with the array header", what())));
    }
    let (version, dtype, ndim) = (bytes[4], bytes[5], usize::from(bytes[6]));
    if version != VERSION {
        return Err(Error::codec(format!(
            "{} has encoding version {version}, this build reads {VERSION}",
            what()
        )));
    }
    if dtype != T::DTYPE {
        return Err(Error::codec(format!("{} holds {} elements", what(), dtype_name(dtype))));
    }
    let header = header_len(ndim);
    if bytes.len() < header {
        return Err(Error::codec(format!("{}: its {ndim}-d shape is cut short", what())));
    }
    let mut shape = Vec::with_capacity(ndim);
    let mut count: usize = 1;
    for i in 0..ndim {
        let at = MAGIC.len() + 3 + 8 * i;
        let raw: [u8; 8] = bytes[at..at + 8].try_into().expect("8 bytes were checked above");
        let d = usize::try_from(u64::from_le_bytes(raw))
            .map_err(|_| Error::codec(format!("{}: dimension {i} does not fit in memory", what())))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| Error::codec(format!("{}: its shape overflows", what())))?;
        shape.push(d);
    }
    let data = total - header;
    if Some(data) != count.checked_mul(T::SIZE) {
        return Err(Error::codec(format!(
            "{}: shape {shape:?} needs {count} elements of {} bytes, the buffer holds {data} bytes",
            what(),
            T::SIZE,
        )));
    }
    Ok((shape, count, header))
}

/// An array being received: its shape, and zeroed storage the body is
/// read into (fresh pages from the allocator, touched only by the read).
struct ArrayReceiving<T> {
    shape: Vec<usize>,
    elements: Vec<T>,
}

impl<T: NdElement + bytemuck::Pod> Receiving for ArrayReceiving<T>
where
    ArrayD<T>: Data,
{
    fn body(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.elements)
    }

    fn finish(self: Box<Self>) -> Result<Value> {
        let ArrayReceiving { shape, mut elements } = *self;
        if cfg!(target_endian = "big") {
            for x in &mut elements {
                *x = T::read_le(bytemuck::bytes_of(x))?;
            }
        }
        let array = ArrayD::from_shape_vec(shape, elements)
            .map_err(|e| Error::codec(format!("a received ndarray {}: {e}", T::DTYPE_NAME)))?;
        Ok(Arc::new(array))
    }
}

/// Prepares to receive an array whose encoding is `head` (its header) and
/// `body_len` bytes of elements.
fn receive_array<T: NdElement + bytemuck::Pod>(head: &[u8], body_len: usize) -> Result<Box<dyn Receiving>>
where
    ArrayD<T>: Data,
{
    let total = head
        .len()
        .checked_add(body_len)
        .ok_or_else(|| Error::codec("a received array's length overflows"))?;
    let (shape, count, header) = read_header::<T>(head, total)?;
    if header != head.len() {
        return Err(Error::codec(format!(
            "a received ndarray {} has a head of {} bytes, its header is {header} bytes",
            T::DTYPE_NAME,
            head.len()
        )));
    }
    Ok(Box::new(ArrayReceiving {
        shape,
        // Zero is a valid number of every Pod type; `vec!` of zeros asks
        // the allocator for zeroed memory (fresh pages, no fill pass).
        elements: vec![T::zeroed(); count],
    }))
}

/// Registers the receivers of arrays of these element types.
macro_rules! register_receivers {
    ($($ty:ty),+ $(,)?) => {$(
        inventory::submit! {
            ReceiverEntry {
                name: || std::any::type_name::<ArrayD<$ty>>(),
                receive: receive_array::<$ty>,
            }
        }
    )+};
}

register_receivers!(f64, f32, i64, i32, u8, u64, u32);

impl<T: NdElement> Decode for ArrayD<T> {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let (shape, _, header) = read_header::<T>(bytes, bytes.len())?;
        let what = || format!("an ndarray {} value of {} bytes", T::DTYPE_NAME, bytes.len());
        let data = &bytes[header..];
        let elements = data.chunks_exact(T::SIZE).map(T::read_le).collect::<Result<Vec<T>>>()?;
        ArrayD::from_shape_vec(shape, elements).map_err(|e| Error::codec(format!("{}: {e}", what())))
    }
}

crate::register_codec!(
    ArrayD<f64>,
    ArrayD<f32>,
    ArrayD<i64>,
    ArrayD<i32>,
    ArrayD<u8>,
    ArrayD<bool>,
    ArrayD<u64>,
    ArrayD<u32>,
);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ndarray::{ArrayD, IxDyn, ShapeBuilder};

    use super::*;
    use crate::value::{FromValue, Value, decode_value, encode_value, receive_value};

    fn roundtrip<T: NdElement + PartialEq + std::fmt::Debug>(a: ArrayD<T>)
    where
        ArrayD<T>: Data + Decode + Clone,
    {
        let v: Value = Arc::new(a.clone());
        let enc = encode_value(&v).unwrap();
        assert_eq!(enc.bytes.len(), header_len(a.ndim()) + a.len() * T::SIZE);
        let back = decode_value(&enc.codec, &enc.bytes).unwrap();
        assert!(back.is::<ArrayD<T>>(), "registered codec decodes eagerly");
        assert_eq!(ArrayD::<T>::from_value(&back).unwrap(), a);
    }

    #[test]
    fn arrays_roundtrip_every_dtype() {
        roundtrip(ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| {
            (i[0] * 4 + i[1]) as f64 * 0.5
        }));
        roundtrip(ArrayD::from_shape_fn(IxDyn(&[2, 2, 2]), |i| i[2] as f32 - 1.0));
        roundtrip(ArrayD::from_shape_fn(IxDyn(&[5]), |i| i[0] as i64 - 2));
        roundtrip(ArrayD::from_shape_fn(IxDyn(&[5]), |i| i[0] as i32 * -7));
        roundtrip(ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| (i[0] + i[1]) as u8));
        roundtrip(ArrayD::from_shape_fn(IxDyn(&[4]), |i| i[0] % 2 == 0));
        roundtrip(ArrayD::<f64>::zeros(IxDyn(&[0, 3])));
        roundtrip(ArrayD::from_elem(IxDyn(&[]), 7.0f64));
    }

    #[test]
    fn non_standard_layout_encodes_in_row_major_order() {
        let f = ArrayD::from_shape_vec(IxDyn(&[2, 3]).f(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
        let c = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(f, c);
        let (mut ef, mut ec) = (Vec::new(), Vec::new());
        f.encode(&mut ef).unwrap();
        c.encode(&mut ec).unwrap();
        assert_eq!(ef, ec);
        let (mut tf, mut tc) = (Tokenizer::new(), Tokenizer::new());
        f.tokenize(&mut tf);
        c.tokenize(&mut tc);
        assert_eq!(tf.finish(), tc.finish());
    }

    #[test]
    fn tokens_identify_content_shape_and_dtype() {
        let tok = |v: &dyn Data| {
            let mut t = Tokenizer::new();
            v.tokenize(&mut t);
            t.finish()
        };
        let a = ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| i[1] as f64);
        let mut b = a.clone();
        b[[1, 2]] = 9.0;
        let reshaped = a.clone().into_shape_with_order(IxDyn(&[3, 2])).unwrap();
        let as_f32 = a.mapv(|x| x as f32);
        assert_eq!(tok(&a), tok(&a.clone()));
        assert_ne!(tok(&a), tok(&b));
        assert_ne!(tok(&a), tok(&reshaped));
        assert_ne!(tok(&a), tok(&as_f32));
    }

    /// Sends `a` as a head and a lent body, and receives it into its own
    /// storage.
    fn lend_and_receive<T: NdElement + PartialEq + std::fmt::Debug>(a: ArrayD<T>)
    where
        ArrayD<T>: Data + Decode + Clone,
    {
        let mut head = Vec::new();
        let body = a
            .encode_lent(&mut head)
            .expect("a standard-layout array lends")
            .unwrap();
        let mut whole = Vec::new();
        a.encode(&mut whole).unwrap();
        assert_eq!([head.as_slice(), body].concat(), whole, "head + body is the encoding");
        let mut receiving = receive_value(a.codec(), &head, body.len())
            .expect("the codec has a receiver")
            .unwrap();
        receiving.body().copy_from_slice(body);
        let back = receiving.finish().unwrap();
        assert_eq!(back.downcast_ref::<ArrayD<T>>(), Some(&a));
    }

    #[test]
    fn arrays_lend_their_elements_and_are_received_into_their_storage() {
        lend_and_receive(ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| {
            (i[0] * 4 + i[1]) as f64 * 0.5
        }));
        lend_and_receive(ArrayD::from_shape_fn(IxDyn(&[2, 2, 2]), |i| i[2] as f32 - 1.0));
        lend_and_receive(ArrayD::from_shape_fn(IxDyn(&[5]), |i| i[0] as i64 - 2));
        lend_and_receive(ArrayD::from_shape_fn(IxDyn(&[5]), |i| i[0] as i32 * -7));
        lend_and_receive(ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| (i[0] + i[1]) as u8));
        lend_and_receive(ArrayD::from_shape_fn(IxDyn(&[7]), |i| u64::MAX - i[0] as u64));
        lend_and_receive(ArrayD::<f64>::zeros(IxDyn(&[0, 3])));
        lend_and_receive(ArrayD::from_elem(IxDyn(&[]), 7.0f64));
    }

    #[test]
    fn arrays_without_a_lendable_layout_fall_back_to_encode() {
        let f = ArrayD::from_shape_vec(IxDyn(&[2, 3]).f(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
        assert!(
            f.encode_lent(&mut Vec::new()).is_none(),
            "column-major memory is not the encoding"
        );
        let flags = ArrayD::from_elem(IxDyn(&[4]), true);
        assert!(flags.encode_lent(&mut Vec::new()).is_none());
        assert!(
            receive_value(flags.codec(), b"", 4).is_none(),
            "bool arrays have no receiver"
        );
        assert!(7i64.encode_lent(&mut Vec::new()).is_none(), "the default lends nothing");
    }

    #[test]
    fn a_bad_head_or_body_length_is_a_codec_error() {
        let a = ArrayD::from_shape_fn(IxDyn(&[2, 2]), |i| i[0] as f64);
        let mut head = Vec::new();
        let body_len = a.encode_lent(&mut head).unwrap().unwrap().len();
        let codec = a.codec();
        let err = |head: &[u8], len: usize| match receive_value(codec, head, len) {
            Some(Err(e)) => e,
            Some(Ok(_)) => panic!("a head of {} bytes and a body of {len} were accepted", head.len()),
            None => panic!("no receiver"),
        };
        let e = err(&head, body_len - 8);
        assert_eq!(e.kind(), &crate::ErrorKind::Codec);
        assert!(e.to_string().contains("needs 4 elements"), "{e}");
        assert!(err(b"nope", 32).to_string().contains("header"));
        assert!(err(&head[..head.len() - 1], 33).to_string().contains("cut short"));
        let mut long = head.clone();
        long.extend_from_slice(&[0; 8]);
        assert!(err(&long, body_len - 8).to_string().contains("head of"));
        let mut huge = head.clone();
        huge[7..15].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&huge, 32).to_string().contains("overflows"));
        let mut ints = Vec::new();
        ArrayD::from_elem(IxDyn(&[2]), 1i32)
            .encode_lent(&mut ints)
            .unwrap()
            .unwrap();
        assert!(err(&ints, 8).to_string().contains("holds i32 elements"));
    }

    #[test]
    fn corrupt_bytes_are_codec_errors_naming_the_problem() {
        let a = ArrayD::from_shape_fn(IxDyn(&[2, 2]), |i| i[0] as f64);
        let mut bytes = Vec::new();
        a.encode(&mut bytes).unwrap();
        let err = ArrayD::<f64>::decode(&bytes[..bytes.len() - 3]).unwrap_err();
        assert_eq!(err.kind(), &crate::ErrorKind::Codec);
        assert!(err.to_string().contains("needs 4 elements"), "{err}");
        let err = ArrayD::<i32>::decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("holds f64 elements"), "{err}");
        let err = ArrayD::<f64>::decode(b"nope").unwrap_err();
        assert!(err.to_string().contains("header"), "{err}");
        let mut flags = Vec::new();
        ArrayD::from_elem(IxDyn(&[2]), true).encode(&mut flags).unwrap();
        *flags.last_mut().unwrap() = 7;
        let err = ArrayD::<bool>::decode(&flags).unwrap_err();
        assert!(err.to_string().contains("byte 7"), "{err}");
    }
}
