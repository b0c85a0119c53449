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
//! Tokenizing an array (for deterministic task names) hashes its dtype, shape
//! and raw bytes with XXH3 in batches, without building the encoding.

use ndarray::ArrayD;
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};
use crate::key::Tokenizer;
use crate::value::{Data, Decode};

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
        if self.ndim() > usize::from(u8::MAX) {
            return Err(Error::codec(format!(
                "an array of {} dimensions cannot be encoded (at most 255)",
                self.ndim()
            )));
        }
        out.reserve(header_len(self.ndim()) + self.len() * T::SIZE);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(T::DTYPE);
        out.push(self.ndim() as u8);
        for &d in self.shape() {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        if let Some(slice) = self.as_slice() {
            for &x in slice {
                x.write_le(out);
            }
        } else {
            for_each_batch(self, |b| out.extend_from_slice(b));
        }
        Ok(())
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

impl<T: NdElement> Decode for ArrayD<T> {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let what = || format!("an ndarray {} value of {} bytes", T::DTYPE_NAME, bytes.len());
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
        let data = &bytes[header..];
        if Some(data.len()) != count.checked_mul(T::SIZE) {
            return Err(Error::codec(format!(
                "{}: shape {shape:?} needs {count} elements of {} bytes, the buffer holds {} bytes",
                what(),
                T::SIZE,
                data.len()
            )));
        }
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
    use crate::value::{FromValue, Value, decode_value, encode_value};

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
