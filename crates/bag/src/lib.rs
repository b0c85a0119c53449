//! # blockwise-bag
//!
//! Parallel processing of records that are not a table or an array: log
//! lines, JSON documents, any `T: Serialize + DeserializeOwned + Send + Sync +
//! Clone` (Dask's `dask.bag`). A [`Bag<T>`] is a lazy, partitioned sequence of
//! records; every operation adds to a graph, and `compute()` (from
//! [`blockwise_local::Compute`]) runs it on all cores.
//!
//! ```no_run
//! # fn main() -> blockwise_core::Result<()> {
//! use blockwise_local::Compute;
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Account { id: u64, name: String, amount: i64 }
//!
//! let top = blockwise_bag::read_json_lines::<Account>("accounts.*.json.gz")?
//!     .filter(|a| a.amount > 0)
//!     .map(|a| a.name)
//!     .frequencies()
//!     .topk(10, |(_, n)| *n)
//!     .compute()?;                       // Vec<(String, usize)>, largest first
//! # Ok(()) }
//! ```
//!
//! ## The parts
//!
//! - Sources: [`from_sequence`], [`from_partitions`], [`range`],
//!   [`from_delayed`], [`concat()`]; text with [`read_text`] and JSON lines with
//!   [`read_json_lines`] (globs, gzip, large files cut into blocks at line
//!   boundaries; see [`text`]).
//! - Transforms (methods of [`Bag`]): `map`, `filter`, `flat_map`, `flatten`,
//!   `map_partitions`, `pluck`, `starmap`, `zip`, `random_sample`,
//!   `repartition` and more. Element-wise transforms compose into one step per
//!   partition (see [`stage`] for why and what it costs).
//! - Reductions, tree-shaped with a fan-in set by [`Bag::split_every`]:
//!   `fold`, `reduction`, `count`, `sum`, `min`, `max`, `mean`, `var`, `std`,
//!   `any`, `all` give an [`Item`]; `frequencies`, `topk`, `nlargest`,
//!   `distinct` give a one-partition bag (see [`reduce`]); `frequencies_of`
//!   counts keys lent by each record, short strings kept inline in its table
//!   (see [`count`]).
//! - Grouping: `foldby` (the fast path) and `groupby` (a hash shuffle); see
//!   [`group`].
//! - Sinks: `compute()` (all records, in order), `take(n)` (only the
//!   partitions it needs), `to_textfiles`, `to_json_lines`, `to_delayed`,
//!   and with the `frame` feature `to_dataframe` into blockwise-frame's
//!   `DataFrame` (module `to_frame`).
//!
//! ## Closures and clusters
//!
//! Every function given to a bag may be a closure: the local executors run
//! it in this process. To run the same pipeline on a cluster (or any
//! executor in another process), its functions must be `fn`s marked
//! `#[blockwise::task]` and its record types registered with
//! [`register_element!`]; the tasks then travel as descriptions (registered
//! names and record type names) and each worker, running the same build,
//! rebuilds them (see the `portable` module's docs for how):
//!
//! ```ignore
//! use blockwise::prelude::*;
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Account { id: u64, name: String, amount: i64 }
//! blockwise::bag::register_element!(Account);
//!
//! #[blockwise::task]
//! fn positive(a: &Account) -> bool { a.amount > 0 }
//! #[blockwise::task]
//! fn name_of(a: Account) -> String { a.name }
//! #[blockwise::task]
//! fn count_of(pair: &(String, usize)) -> usize { pair.1 }
//!
//! let top = blockwise::bag::read_json_lines::<Account>("accounts.*.json.gz")?
//!     .filter(positive)
//!     .map(name_of)
//!     .frequencies()
//!     .topk(10, count_of)
//!     .compute()?;                       // on a cluster when one is configured
//! ```
//!
//! (The example names the facade `blockwise`, which this crate cannot
//! depend on; `tests/worker_process.rs` runs the same pipeline in a child
//! process and compares it with the local result.)
//!
//! What travels: the sources [`read_text`], [`read_json_lines`] (unless it
//! counts skipped bad lines, which lives in this process), [`from_sequence`],
//! [`from_partitions`], [`range`] and bags made of computed partitions;
//! `map`, `flat_map`, `filter_map`, `filter` and `remove` by registered
//! functions; the reductions
//! `count`, `frequencies`, `distinct`, and `topk`/`bottomk` by a registered
//! key. Sending anything else is an [`blockwise_core::ErrorKind::NotRegistered`]
//! error, raised on the client before any task leaves: it names the first
//! closure of the chain and the fix (`#[blockwise::task]`), or an
//! unregistered record type and `register_element!`, or the step that has
//! no portable form yet.

mod bag;
pub mod count;
pub mod group;
mod json;
mod partition;
mod portable;
pub mod reduce;
mod size;
pub mod stage;
pub mod text;
#[cfg(feature = "frame")]
pub mod to_frame;

pub use bag::{Bag, DEFAULT_SPLIT_EVERY, JsonKey, concat, from_delayed, from_partitions, from_sequence, range};
pub use count::FrequencyKey;
pub use partition::{Element, Partition, Scalar};
pub use reduce::{Item, ToF64};
pub use text::{
    BadLine, BadLines, Compression, DEFAULT_BLOCKSIZE, Paths, ReadOptions, read_json_lines, read_json_lines_with,
    read_text, read_text_with,
};

/// Re-exports for [`register_element!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::portable::{ElementEntry, ElementHandle, ElementProbe, ViaHash, ViaPlain};
    pub use blockwise_core::__private::inventory;
}
