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
//!   `distinct` give a one-partition bag (see [`reduce`]).
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
//! it in this process. A bag's tasks cannot yet be sent to another process:
//! encoding one is an [`blockwise_core::ErrorKind::NotRegistered`] error that
//! names the first closure and the fix (`#[blockwise::task]`), or, for
//! registered functions, says that generic bag ops have no registered
//! instantiation yet.

mod bag;
pub mod group;
mod partition;
pub mod reduce;
mod size;
pub mod stage;
pub mod text;
#[cfg(feature = "frame")]
pub mod to_frame;

pub use bag::{Bag, DEFAULT_SPLIT_EVERY, JsonKey, concat, from_delayed, from_partitions, from_sequence, range};
pub use partition::{Element, Partition, Scalar};
pub use reduce::{Item, ToF64};
pub use text::{
    BadLine, BadLines, Compression, DEFAULT_BLOCKSIZE, Paths, ReadOptions, read_json_lines, read_json_lines_with,
    read_text, read_text_with,
};
