//! The values a bag's tasks pass around: [`Partition`] (a partition's
//! records) and [`Scalar`] (one reduced value).
//!
//! Core implements [`Data`] for `Vec<T>` only when `T` is itself `Data`, but a
//! bag holds any serde type (a user's `Account` needs only `#[derive(Serialize,
//! Deserialize)]`). So a partition is a newtype whose codec is postcard over
//! the whole `Vec<T>`, and whose size is measured through serde (see
//! [`crate::size`]) and cached: a partition never changes once a task made it.
//!
//! Neither type registers its codec (a generic type cannot be registered once
//! for all `T`): a partition arriving from another process stays
//! [`blockwise_core::value::Encoded`] until a typed task reads it, which
//! decodes it by type ([`partition_of`]).

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use blockwise_core::Result;
use blockwise_core::value::{
    Data, Decode, FromValue, Value, downcast_arc, postcard_decode, postcard_encode, short_type_name,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::size::{heap_bytes, sampled_heap_bytes};

/// What a bag can hold: any serde type that can be shared between threads.
/// Implemented for every such type; user types need only
/// `#[derive(Clone, Serialize, Deserialize)]`.
pub trait Element: Serialize + DeserializeOwned + Send + Sync + Clone + 'static {}

impl<T: Serialize + DeserializeOwned + Send + Sync + Clone + 'static> Element for T {}

/// One partition of a bag: its records, in order.
///
/// It is what [`crate::Bag::to_delayed`] hands out and what a function given
/// to `delayed` receives for a partition.
pub struct Partition<T> {
    items: Vec<T>,
    /// Heap bytes of the items, measured on first request.
    heap: OnceLock<usize>,
}

impl<T> Partition<T> {
    /// A partition holding `items`.
    pub fn new(items: Vec<T>) -> Self {
        Partition {
            items,
            heap: OnceLock::new(),
        }
    }

    /// The records.
    pub fn as_slice(&self) -> &[T] {
        &self.items
    }

    /// The records, by value.
    pub fn into_vec(self) -> Vec<T> {
        self.items
    }
}

impl<T> Deref for Partition<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<T: Clone> Clone for Partition<T> {
    fn clone(&self) -> Self {
        Partition {
            items: self.items.clone(),
            heap: self.heap.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Partition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Partition").field(&self.items).finish()
    }
}

impl<T: PartialEq> PartialEq for Partition<T> {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
    }
}

impl<T> From<Vec<T>> for Partition<T> {
    fn from(items: Vec<T>) -> Self {
        Partition::new(items)
    }
}

impl<T: Element> Data for Partition<T> {
    fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.items.capacity() * std::mem::size_of::<T>()
            + *self.heap.get_or_init(|| sampled_heap_bytes(&self.items))
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        postcard_encode(&self.items, out)
    }

    fn describe(&self) -> String {
        format!(
            "partition of {} {}",
            self.items.len(),
            short_type_name(std::any::type_name::<T>())
        )
    }
}

impl<T: Element> Decode for Partition<T> {
    fn decode(bytes: &[u8]) -> Result<Self> {
        Ok(Partition::new(postcard_decode(bytes)?))
    }
}

/// One value computed from a whole bag (a count, a sum, a partial reduction):
/// what an [`crate::Item`] computes, and what travels between the levels of
/// a tree reduction.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar<U>(pub U);

impl<U: Element> Data for Scalar<U> {
    fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + heap_bytes(&self.0)
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        postcard_encode(&self.0, out)
    }

    fn describe(&self) -> String {
        short_type_name(std::any::type_name::<U>()).to_string()
    }
}

impl<U: Element> Decode for Scalar<U> {
    fn decode(bytes: &[u8]) -> Result<Self> {
        Ok(Scalar(postcard_decode(bytes)?))
    }
}

/// The partition behind a task input, shared when it was made in this
/// process, decoded when it came from another.
pub(crate) fn partition_of<T: Element>(value: &Value) -> Result<Arc<Partition<T>>> {
    match downcast_arc::<Partition<T>>(value.clone()) {
        Ok(p) => Ok(p),
        Err(other) => Partition::<T>::from_value(&other).map(Arc::new),
    }
}

/// The records of a computed partition, moved out when nothing else holds
/// the value, cloned otherwise.
pub(crate) fn into_items<T: Element>(value: Value) -> Result<Vec<T>> {
    match downcast_arc::<Partition<T>>(value) {
        Ok(p) => Ok(Arc::try_unwrap(p)
            .map(Partition::into_vec)
            .unwrap_or_else(|p| p.items.clone())),
        Err(other) => Partition::<T>::from_value(&other).map(Partition::into_vec),
    }
}

/// The value behind a [`Scalar`] task output.
pub(crate) fn scalar_of<U: Element>(value: &Value) -> Result<U> {
    match value.downcast_ref::<Scalar<U>>() {
        Some(s) => Ok(s.0.clone()),
        None => Scalar::<U>::from_value(value).map(|s| s.0),
    }
}

/// The value behind a [`Scalar`] task output, moved out when unshared.
pub(crate) fn into_scalar<U: Element>(value: Value) -> Result<U> {
    match downcast_arc::<Scalar<U>>(value) {
        Ok(s) => Ok(Arc::try_unwrap(s).map(|s| s.0).unwrap_or_else(|s| s.0.clone())),
        Err(other) => Scalar::<U>::from_value(&other).map(|s| s.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockwise_core::value::{Encoded, encode_value};

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Account {
        name: String,
        amount: i64,
    }

    #[test]
    fn partition_roundtrips_through_its_codec() {
        let p = Partition::new(vec![
            Account {
                name: "a".into(),
                amount: 1,
            },
            Account {
                name: "bob".into(),
                amount: -2,
            },
        ]);
        let value: Value = Arc::new(p.clone());
        let enc = encode_value(&value).unwrap();
        let lazy: Value = Arc::new(Encoded {
            codec: enc.codec.clone(),
            bytes: enc.bytes.clone(),
        });
        assert_eq!(*partition_of::<Account>(&lazy).unwrap(), p);
        assert_eq!(into_items::<Account>(value).unwrap(), p.into_vec());
    }

    #[test]
    fn size_grows_with_the_records() {
        let small = Partition::new(vec![String::from("x"); 10]);
        let big = Partition::new(vec!["x".repeat(1000); 10]);
        assert!(big.size_bytes() >= 10_000);
        assert!(small.size_bytes() < big.size_bytes());
    }

    #[test]
    fn wrong_partition_type_is_a_clear_error() {
        let value: Value = Arc::new(Partition::new(vec![1u64]));
        let err = partition_of::<String>(&value).unwrap_err();
        assert!(err.to_string().contains("Partition"), "{err}");
    }
}
