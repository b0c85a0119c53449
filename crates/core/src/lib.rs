//! # blockwise-core
//!
//! The graph core every other blockwise crate stands on. Data flows one way:
//!
//! ```text
//! collection ──builds──▶ Graph (layers of tasks) ──Plan::build──▶ cull, fuse, order
//!                                                     │
//!                                     executor (threads, sync, cluster) ──▶ values
//! ```
//!
//! - [`key`]: keys and deterministic names ([`Tokenizer`]).
//! - [`value`]: [`Data`] (size in bytes, codec) and [`Value`] = `Arc<dyn Data>`.
//! - [`op`]: ops with stable registered names; `#[blockwise::task]` registers
//!   user functions, so a task can be rebuilt in another process.
//! - [`graph`]: tasks, layers (explicit or generated), graphs of shared layers.
//! - [`plan`]: cull, fuse and order a graph into dense task ids; encode a plan
//!   to bytes and back.
//! - [`order`]: the static priority that keeps memory low.
//! - [`delayed`]: lazy function calls.
//! - [`exec`]: the contract between collections and executors, and callbacks.
//! - [`config`]: layered configuration, as `dask.config`.
//! - [`identity`]: the build id checked at every handshake.
//! - [`hash`]: a fast hash for in-process maps (addresses, names, words).
//! - [`visualize`]: DOT and SVG pictures of graphs.

pub mod config;
pub mod csr;
pub mod delayed;
pub mod error;
pub mod exec;
pub mod graph;
pub mod hash;
pub mod identity;
pub mod key;
#[cfg(feature = "ndarray")]
pub mod ndarray_data;
pub mod op;
pub mod order;
pub mod plan;
pub mod records;
pub mod value;
pub mod visualize;

pub use error::{Error, ErrorKind, Result, ResultExt};
pub use exec::{Callback, Collection, Executor, RunOptions};
pub use graph::{BlockArg, Blockwise, Call, Graph, IndexMap, Input, Layer, LayerBody, Task, TaskPart};
pub use key::{Key, Name, Tokenizer};
pub use op::{FnOp, Op, TaskFn};
pub use plan::{Plan, PlanOptions, Slot, SlotRef};
pub use value::{Data, Decode, FromValue, IntoValue, Value};

/// Re-exports for macros; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}
