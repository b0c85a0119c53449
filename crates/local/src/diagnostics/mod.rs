//! Diagnostics for local computations, after Dask's `dask.diagnostics`:
//! a progress bar, a task profiler, a resource profiler, and reports that a
//! person can open in a browser.
//!
//! # Design
//!
//! Everything here is a [`Callback`](blockwise_core::Callback): the engine
//! calls `start` on the calling thread, `task_start` / `task_finish` on
//! whichever worker thread runs the task, and `finish` on the calling thread
//! once every worker has stopped. A callback is plain data behind an `Arc`,
//! so the same object can watch one computation
//! (`ComputeOptions::new().callback(p.clone())`), every computation
//! ([`register_callback`](crate::register_callback), Dask's
//! `with ProgressBar():`), or several computations at once — a task may itself
//! call `compute`. Per-computation state is therefore kept in a small table
//! keyed by the address of the computation's [`Plan`], which is alive and
//! unique from `start` to `finish`.
//!
//! The per-task path is kept short because it runs once for every task of
//! every computation: a read lock on that table, then a few atomic stores
//! into slots preallocated at `start`. Worker threads never draw, allocate
//! or sort for diagnostics; that work happens at `finish`, on the
//! [`ProgressBar`]'s single shared ticker thread, or on the
//! [`ResourceProfiler`]'s sampling thread.
//!
//! | piece | Dask | what it records |
//! |---|---|---|
//! | [`ProgressBar`] | `ProgressBar` | tasks done out of the total, elapsed time; drawn with `indicatif` after a delay |
//! | [`Profiler`] | `Profiler` | key, key prefix, op, worker thread, start and end of every task |
//! | [`ResourceProfiler`] | `ResourceProfiler` | process memory (RSS) and CPU % over time, Linux `/proc` |
//! | [`report`] | `visualize([prof, rprof])` | self-contained HTML and SVG, both profiles on one time axis |
//!
//! The automatic progress bar: every local computation gets one when the
//! configuration key `progress` says so — `auto` (the default: only when
//! stderr is a terminal, so CI logs and pipes stay clean), `always`, or
//! `never` ([`ProgressMode`]). A computation that already has an explicit
//! [`ProgressBar`] does not get a second one.
//!
//! ```
//! use std::sync::Arc;
//! use blockwise_local::diagnostics::{Profiler, ResourceProfiler, report};
//! use blockwise_local::{Compute, ComputeOptions, delayed};
//!
//! fn square(x: i64) -> i64 {
//!     x * x
//! }
//! fn total(xs: Vec<i64>) -> i64 {
//!     xs.iter().sum()
//! }
//!
//! let profiler = Arc::new(Profiler::new());
//! let resources = Arc::new(ResourceProfiler::new());
//! let parts: Vec<_> = (0..8).map(|i| delayed(square).call(i)).collect();
//! let sum = delayed(total).call(parts);
//! let options = ComputeOptions::new().callback(profiler.clone()).callback(resources.clone());
//! assert_eq!(sum.compute_with(options).unwrap(), 140);
//! assert_eq!(profiler.results().len(), 9);
//!
//! let path = std::env::temp_dir().join("blockwise-diagnostics-doc.html");
//! report::write_html(&path, &profiler, Some(&resources)).unwrap();
//! # std::fs::remove_file(&path).ok();
//! ```

mod chart;
pub mod profiler;
pub mod progress;
pub mod report;
pub mod resource;

pub use profiler::{PrefixSummary, Profiler, TaskRecord};
pub use progress::{ProgressBar, ProgressMode};
pub use resource::{ResourceProfiler, ResourceSample};

use std::sync::Arc;

use blockwise_core::Plan;
use parking_lot::RwLock;

/// Identifies one running computation: the address of its plan, which stays
/// put and unique between `start` and `finish`.
fn plan_id(plan: &Plan) -> usize {
    plan as *const Plan as usize
}

/// The state of each computation a callback is watching, by plan.
struct Runs<T> {
    runs: RwLock<Vec<(usize, Arc<T>)>>,
}

impl<T> Runs<T> {
    fn new() -> Self {
        Runs {
            runs: RwLock::new(Vec::new()),
        }
    }

    fn insert(&self, plan: &Plan, run: Arc<T>) {
        self.runs.write().push((plan_id(plan), run));
    }

    /// Calls `f` with the state of `plan`'s computation, if it is watched.
    /// Runs under a read lock, so `f` must be short.
    fn with<R>(&self, plan: &Plan, f: impl FnOnce(&T) -> R) -> Option<R> {
        let id = plan_id(plan);
        let runs = self.runs.read();
        runs.iter().find(|(p, _)| *p == id).map(|(_, run)| f(run))
    }

    fn remove(&self, plan: &Plan) -> Option<Arc<T>> {
        let id = plan_id(plan);
        let mut runs = self.runs.write();
        let at = runs.iter().position(|(p, _)| *p == id)?;
        Some(runs.swap_remove(at).1)
    }
}

/// Writes a report file, naming the path in the error.
fn write_file(path: &std::path::Path, text: &str) -> blockwise_core::Result<()> {
    std::fs::write(path, text).map_err(|e| {
        blockwise_core::Error::new(
            blockwise_core::ErrorKind::Io,
            format!("cannot write the report {}: {e}", path.display()),
        )
    })
}
