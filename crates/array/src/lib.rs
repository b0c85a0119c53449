//! # blockwise-array
//!
//! Chunked, lazy n-dimensional arrays: Dask Array over `ndarray`.
//!
//! ```
//! use blockwise_array::{random, TryCompute};
//! # fn main() -> blockwise_core::Result<()> {
//! let x = random::uniform(&[2_000, 2_000], &[500, 500], 42)?;
//! let means = x.mean_axis(0).compute()?; // an ndarray of 2,000 means
//! assert_eq!(means.len(), 2_000);
//! # Ok(()) }
//! ```
//!
//! An [`Array<T>`] is a graph of blocks, each block a plain
//! `ndarray::ArrayD<T>`. Every operation adds one layer to the graph and
//! returns at once; `compute()` (from `blockwise_local::Compute`, or
//! [`TryCompute`] on a `Result<Array<T>>`) runs it on the local schedulers and
//! assembles the result. Why it is built the way it is:
//!
//! - **Generated layers.** Creation, elementwise operations, per-block maps
//!   and the first stage of reductions are rules ([`blockwise_core::Blockwise`])
//!   that make the task for a block on demand: an operation on a million
//!   blocks is one small object, and the planner expands only the blocks an
//!   output needs (a slice computes only what it touches). Tree reductions,
//!   rechunking, slicing and joins are explicit task lists.
//! - **Registered ops, not closures.** Every built-in op is a serializable
//!   kernel registered per element type (`array.map.f64`), so an array graph
//!   can be sent to a worker process of the same executable. User block
//!   functions work as closures locally and cross processes when registered
//!   with `#[blockwise::task]` ([`user`]).
//! - **Deterministic names.** Layer names are tokens of the op and its
//!   inputs: building the same expression twice gives the same keys.
//! - **Errors while building.** Shapes, axes and chunks are checked when the
//!   operation is called; only data-dependent failures (a corrupt file, an
//!   all-NaN `nanargmin`) wait for `compute`.
//!
//! Modules: [`chunks`] (chunk specs), [`creation`] and [`random`], [`element`]
//! (the six element types and casting), [`elementwise`], [`reduce`],
//! [`shape`] (slicing, rechunk, reshape, joins), [`stream`] (reductions fused
//! with the producers of their blocks), [`user`] (`map_blocks`,
//! `blockwise`, `map_overlap`), [`io`] (`.npy`, `.npy` stacks, Zarr v3) and
//! [`linalg`] (blocked matmul/tensordot, TSQR, SVD, least squares, Cholesky,
//! solve, with `faer`).

pub mod array;
pub mod chunks;
pub mod creation;
pub mod element;
pub mod elementwise;
pub mod io;
pub(crate) mod kernel;
pub mod linalg;
pub mod random;
pub mod reduce;
pub mod shape;
pub mod stream;
pub mod user;

pub use array::{Array, TryCompute};
pub use chunks::{AxisChunks, ChunkSpec, Chunks};
pub use creation::{BlockInfo, arange, eye, from_array, full, linspace, ones, zeros};
pub use element::{CastTo, Element, Float, Number};
pub use elementwise::{Operand, where_};
pub use io::{ZarrCompression, ZarrElement, from_npy, from_npy_stack, from_zarr};
pub use ndarray::{self, NewAxis, SliceInfoElem, s};
pub use reduce::Reduction;
pub use shape::{concatenate, stack};
pub use user::{Boundary, blockwise, from_block_fn};
