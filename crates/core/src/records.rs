//! Record streams, and the adapters `#[blockwise::task]` registers so that a
//! collection op calling a user function on every record can be rebuilt in
//! another process.
//!
//! # Streams
//!
//! A [`Stream`] produces records from a task's inputs by pushing them, one at
//! a time, into a [`Sink`]; each push answers with a [`Flow`] (go on, stop
//! early, or fail). The bag collection composes its element-wise steps
//! (`map`, `filter`…) as streams, so a chain of them runs without any
//! intermediate list.
//!
//! # Why the adapters live here
//!
//! A worker rebuilds an op from a name and bytes; to rebuild "map this
//! stream of `A` through `f`", it needs code compiled for `A` and for `f`'s
//! result `R`. Generic code cannot register itself, so the one place that
//! knows both types is the registration of `f`: `#[blockwise::task]` submits
//! a [`RecordFnEntry`] whose adapters are [`map_stream`] and
//! [`flat_map_stream`] (for a function of one value; the latter when its
//! result is iterable) and [`order_by_key`] (for a function of one reference
//! whose result is `Ord`), instantiated for the function's own types. A collection
//! that needs only the record type (a filter `fn(&T) -> bool`) finds the
//! plain function pointer with [`crate::op::registered_fn`] instead.
//!
//! Erased streams and orders travel as `Box<dyn Any>`; a type that does not
//! match what the description promised is a [`ErrorKind::TypeMismatch`]
//! error naming both types, never a panic.

use std::any::Any;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::error::{Error, ErrorKind, Result};
use crate::value::{Value, short_type_name};

/// Why a stream stopped before its last record.
pub enum Stop {
    /// The consumer has what it needs; not an error.
    Enough,
    /// A record could not be produced or consumed.
    Fail(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Fail(e)
    }
}

/// What a sink answers for each record.
pub type Flow = std::result::Result<(), Stop>;

/// Receives records one by one.
pub type Sink<'a, T> = dyn FnMut(T) -> Flow + 'a;

/// Produces records from a task's inputs into a sink.
pub type Stream<T> = Arc<dyn Fn(&[Value], &mut Sink<'_, T>) -> Flow + Send + Sync>;

/// A total order on records of `A`.
pub type Order<A> = Arc<dyn Fn(&A, &A) -> Ordering + Send + Sync>;

/// A [`Stream`] of some record type, behind `Any`.
pub type ErasedStream = Box<dyn Any + Send + Sync>;

/// An [`Order`] on records of some type, behind `Any`.
pub type ErasedOrder = Box<dyn Any + Send + Sync>;

/// The stream of `A` behind an erased stream; another record type is a
/// clear error.
pub fn downcast_stream<A: 'static>(stream: ErasedStream) -> Result<Stream<A>> {
    stream.downcast::<Stream<A>>().map(|s| *s).map_err(|_| {
        Error::new(
            ErrorKind::TypeMismatch,
            format!(
                "a record stream was expected to carry {} records, but carries another type",
                short_type_name(std::any::type_name::<A>())
            ),
        )
    })
}

/// The stream of `f(x)` for every record `x` of `prev` (a stream of `A`).
pub fn map_stream<A, R, F>(f: F, prev: ErasedStream) -> Result<ErasedStream>
where
    A: 'static,
    R: 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let prev = downcast_stream::<A>(prev)?;
    let stream: Stream<R> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, R>| prev(args, &mut |x| sink(f(x))));
    Ok(Box::new(stream))
}

/// The stream of every item of `f(x)`, for every record `x` of `prev` (a
/// stream of `A`): a `flat_map`, and a `filter_map` when `f` returns an
/// `Option`.
pub fn flat_map_stream<A, I, F>(f: F, prev: ErasedStream) -> Result<ErasedStream>
where
    A: 'static,
    I: IntoIterator,
    I::Item: 'static,
    F: Fn(A) -> I + Send + Sync + 'static,
{
    let prev = downcast_stream::<A>(prev)?;
    let stream: Stream<I::Item> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, I::Item>| {
        prev(args, &mut |x| {
            for y in f(x) {
                sink(y)?;
            }
            Ok(())
        })
    });
    Ok(Box::new(stream))
}

/// The order of records of `A` by ascending `key`, erased.
pub fn order_by_key<A, K, F>(key: F) -> ErasedOrder
where
    A: ?Sized + 'static,
    K: Ord,
    F: Fn(&A) -> K + Send + Sync + 'static,
{
    let order: Order<A> = Arc::new(move |a: &A, b: &A| key(a).cmp(&key(b)));
    Box::new(order)
}

/// Lifts a registered function of one value onto record streams.
pub type MapAdapter = fn(ErasedStream) -> Result<ErasedStream>;

/// Lifts a registered function of one value returning an iterable onto
/// record streams, yielding its items (an error when the result is not
/// `IntoIterator`).
pub type FlatMapAdapter = fn(ErasedStream) -> Result<ErasedStream>;

/// Builds the order by a registered key function, when its key is `Ord`.
pub type OrderAdapter = fn() -> Option<ErasedOrder>;

/// The record adapters of a function registered by `#[blockwise::task]`.
pub struct RecordFnEntry {
    /// The registered name (as in `TaskEntry` and `FnEntry`).
    pub name: &'static str,
    /// For a function of one value `fn(A) -> R`: maps a stream of `A` into a
    /// stream of `R`.
    pub map: Option<MapAdapter>,
    /// For a function of one value `fn(A) -> I` with `I: IntoIterator`:
    /// maps a stream of `A` into a stream of the items.
    pub flat_map: Option<FlatMapAdapter>,
    /// For a function of one reference `fn(&A) -> K`: the order of records
    /// of `A` by ascending key (`None` from the adapter when `K` is not `Ord`).
    pub order: Option<OrderAdapter>,
}
inventory::collect!(RecordFnEntry);

fn record_fns() -> &'static HashMap<&'static str, &'static RecordFnEntry> {
    static REGISTRY: OnceLock<HashMap<&'static str, &'static RecordFnEntry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        inventory::iter::<RecordFnEntry>
            .into_iter()
            .map(|e| (e.name, e))
            .collect()
    })
}

fn unknown(name: &str) -> Error {
    Error::new(
        ErrorKind::NotRegistered,
        format!(
            "no function named `{name}` is registered in this executable: mark it #[blockwise::task], and run \
             the same build in every process"
        ),
    )
}

/// Maps `prev` through the registered function `name` (a function of one
/// value whose parameter type is the stream's record type).
pub fn map_by_name(name: &str, prev: ErasedStream) -> Result<ErasedStream> {
    let entry = record_fns().get(name).ok_or_else(|| unknown(name))?;
    let map = entry.map.ok_or_else(|| {
        Error::new(
            ErrorKind::TypeMismatch,
            format!(
                "the registered function `{name}` cannot map records: it must take exactly one parameter, by value"
            ),
        )
    })?;
    map(prev).map_err(|e| e.context(format!("while mapping records through `{name}`")))
}

/// Maps `prev` through the registered function `name` and yields the items
/// of each result (a function of one value returning an iterable).
pub fn flat_map_by_name(name: &str, prev: ErasedStream) -> Result<ErasedStream> {
    let entry = record_fns().get(name).ok_or_else(|| unknown(name))?;
    let flat_map = entry.flat_map.ok_or_else(|| {
        Error::new(
            ErrorKind::TypeMismatch,
            format!(
                "the registered function `{name}` cannot flat-map records: it must take exactly one parameter, by \
                 value, and return an iterable"
            ),
        )
    })?;
    flat_map(prev).map_err(|e| e.context(format!("while flat-mapping records through `{name}`")))
}

/// The ascending order of records of `A` by the registered key function
/// `name` (a function of one `&A` returning an `Ord` key).
pub fn order_by_name<A: ?Sized + 'static>(name: &str) -> Result<Order<A>> {
    let entry = record_fns().get(name).ok_or_else(|| unknown(name))?;
    let mismatch = || {
        Error::new(
            ErrorKind::TypeMismatch,
            format!(
                "the registered function `{name}` is not a key of {} records: it must take one `&{}` and return \
                 an `Ord` key",
                short_type_name(std::any::type_name::<A>()),
                short_type_name(std::any::type_name::<A>()),
            ),
        )
    };
    let order = entry.order.and_then(|order| order()).ok_or_else(mismatch)?;
    order.downcast::<Order<A>>().map(|o| *o).map_err(|_| mismatch())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers() -> ErasedStream {
        let s: Stream<i64> = Arc::new(|_: &[Value], sink: &mut Sink<'_, i64>| {
            for x in 1..=3 {
                sink(x)?;
            }
            Ok(())
        });
        Box::new(s)
    }

    fn collect<T: 'static>(s: ErasedStream) -> Vec<T> {
        let s = downcast_stream::<T>(s).unwrap();
        let mut out = Vec::new();
        let _ = s(&[], &mut |x| {
            out.push(x);
            Ok(())
        });
        out
    }

    #[test]
    fn map_stream_applies_the_function() {
        let s = map_stream(|x: i64| format!("<{x}>"), numbers()).unwrap();
        assert_eq!(collect::<String>(s), vec!["<1>", "<2>", "<3>"]);
    }

    #[test]
    fn flat_map_stream_yields_every_item() {
        let s = flat_map_stream(|x: i64| (0..x).map(|i| i * 10), numbers()).unwrap();
        assert_eq!(collect::<i64>(s), vec![0, 0, 10, 0, 10, 20]);
        let s = flat_map_stream(|x: i64| (x % 2 == 1).then_some(x), numbers()).unwrap();
        assert_eq!(collect::<i64>(s), vec![1, 3]);
    }

    #[test]
    fn wrong_record_type_is_a_mismatch() {
        let err = map_stream(|x: u8| x, numbers()).err().unwrap();
        assert_eq!(err.kind(), &ErrorKind::TypeMismatch);
        assert!(err.to_string().contains("u8"), "{err}");
    }

    #[test]
    fn order_by_key_compares_keys() {
        let order = order_by_key(|s: &str| s.len()).downcast::<Order<str>>().unwrap();
        assert_eq!(order("ab", "c"), Ordering::Greater);
    }

    #[test]
    fn unknown_names_say_how_to_register() {
        let err = map_by_name("nowhere::f", numbers()).err().unwrap();
        assert_eq!(err.kind(), &ErrorKind::NotRegistered);
        assert!(err.to_string().contains("#[blockwise::task]"), "{err}");
    }
}
