//! The engine's conformance cases (Dask's `GetFunctionTestMixin`), shared by
//! every executor's suite: the local executors (`crates/local/tests/conformance.rs`)
//! and a 2-worker cluster of real worker processes
//! (`crates/distributed/tests/conformance.rs`, which includes this file by
//! `#[path]`).
//!
//! A case is a function of the [`Target`] it runs on; it asserts (panics)
//! on a wrong result. The functions the cases call as tasks — `inc`, `add`,
//! `total`, `fails_on_seven`, `panics_on_three`, `div_mod`, `to_text` — come
//! from the including file (`super::…`): plain functions locally,
//! `#[task]`-registered ones for a cluster, whose workers rebuild them by
//! name. What is inherently local (a closure capturing state, a value that
//! cannot leave its process) runs where `Target::in_process` is true, and
//! elsewhere asserts the clear error a cluster gives instead.
//!
//! [`with_cases!`] names every case once, for the including file to turn
//! into tests.

#![allow(dead_code, reason = "each including test binary uses its own part of this file")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use blockwise_core::value::Data;
use blockwise_core::{ErrorKind, Result};
use blockwise_local::{Compute, ComputeOptions, Delayed, Scheduler, compute_all_with, delayed};

use super::{add, div_mod, fails_on_seven, inc, panics_on_three, to_text, total};

/// Where the cases run.
#[derive(Clone)]
pub(crate) struct Target {
    /// The options every computation of a case is given (its scheduler).
    pub(crate) options: ComputeOptions,
    /// Whether tasks run in this process (a local executor): closures and
    /// values that cannot be encoded work there. On a cluster they must be
    /// refused with [`ErrorKind::NotRegistered`] before anything is sent.
    pub(crate) in_process: bool,
}

impl Target {
    /// A local executor.
    pub(crate) fn local(scheduler: Scheduler) -> Target {
        Target {
            options: ComputeOptions::new().scheduler(scheduler),
            in_process: true,
        }
    }

    /// A cluster (its client as the executor).
    pub(crate) fn remote(scheduler: Scheduler) -> Target {
        Target {
            options: ComputeOptions::new().scheduler(scheduler),
            in_process: false,
        }
    }

    fn opts(&self) -> ComputeOptions {
        self.options.clone()
    }
}

/// Calls `$callback! { ($($args)*) [case, case, …] }` with the name of
/// every case of this file, so the including file writes each case's test
/// (or list entry) once, without repeating the list.
macro_rules! with_cases {
    ($callback:ident!($($args:tt)*)) => {
        $callback! {
            ($($args)*)
            [
                literal_value,
                chain_and_diamond,
                long_chain_fused_and_unfused,
                tree_reduction_of_ten_thousand,
                flat_sum_of_many,
                several_outputs_nout,
                shared_dependency_runs_once,
                persist_reuses_results,
                task_error_names_key_and_cause,
                panic_fails_the_computation_not_the_process,
                wrong_result_type_is_an_error,
                intermediate_values_are_released,
            ]
        }
    };
}
pub(crate) use with_cases;

/// Asserts that computing `what` on a cluster was refused because it holds
/// a closure, naming the fix.
fn refused_as_a_closure<T>(what: Result<T>) {
    let Err(err) = what else {
        panic!("a closure sent to a cluster must be refused, and it ran");
    };
    assert_eq!(err.kind(), &ErrorKind::NotRegistered, "{err}");
    assert!(
        err.to_string().contains("#[blockwise::task]"),
        "the error names the fix: {err}"
    );
}

fn tree_sum(leaves: Vec<Delayed<i64>>, fan_in: usize) -> Delayed<i64> {
    let mut level = leaves;
    while level.len() > 1 {
        level = level.chunks(fan_in).map(|c| delayed(total).call(c.to_vec())).collect();
    }
    level.pop().expect("at least one leaf")
}

pub(crate) fn literal_value(t: &Target) {
    let v = blockwise_core::delayed::value(41i64);
    assert_eq!(delayed(inc).call(v).compute_with(t.opts()).unwrap(), 42);
}

pub(crate) fn chain_and_diamond(t: &Target) {
    let a = delayed(inc).call(1);
    let b = delayed(inc).call(&a);
    let c = delayed(inc).call(&a);
    let d = delayed(add).call(&b, &c);
    assert_eq!(d.compute_with(t.opts()).unwrap(), 6);
}

pub(crate) fn long_chain_fused_and_unfused(t: &Target) {
    let mut x = delayed(inc).call(0);
    for _ in 0..2_000 {
        x = delayed(inc).call(&x);
    }
    assert_eq!(x.compute_with(t.opts()).unwrap(), 2_001);
    assert_eq!(x.compute_with(t.opts().fuse(false)).unwrap(), 2_001);
}

pub(crate) fn tree_reduction_of_ten_thousand(t: &Target) {
    let leaves: Vec<_> = (0..10_000).map(|i| delayed(inc).call(i)).collect();
    let s = tree_sum(leaves, 100);
    assert_eq!(s.compute_with(t.opts()).unwrap(), (1..=10_000).sum::<i64>());
}

pub(crate) fn flat_sum_of_many(t: &Target) {
    let leaves: Vec<_> = (0..5_000).map(|i| delayed(inc).call(i)).collect();
    let s = delayed(total).call(leaves);
    assert_eq!(s.compute_with(t.opts()).unwrap(), (1..=5_000).sum::<i64>());
}

pub(crate) fn several_outputs_nout(t: &Target) {
    let q = delayed(div_mod).call(17, 5);
    let (d, m) = q.unpack();
    let s = delayed(add).call(&d, &m);
    assert_eq!(s.compute_with(t.opts()).unwrap(), 5);
    assert_eq!(q.compute_with(t.opts()).unwrap(), (3, 2));
}

pub(crate) fn shared_dependency_runs_once(t: &Target) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let counted = move |x: i64| {
        c.fetch_add(1, Ordering::SeqCst);
        x * 10
    };
    let base = delayed(counted).call(4);
    let a = delayed(inc).call(&base);
    let b = delayed(inc).call(&base);
    if !t.in_process {
        // The counter lives in this process: a cluster cannot run it.
        refused_as_a_closure(compute_all_with(&[a, b], t.opts()));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        return;
    }
    let out = compute_all_with(&[a, b], t.opts()).unwrap();
    assert_eq!(out, vec![41, 41]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

pub(crate) fn persist_reuses_results(t: &Target) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let counted = move |x: i64| {
        c.fetch_add(1, Ordering::SeqCst);
        x + 100
    };
    if !t.in_process {
        refused_as_a_closure(delayed(counted).call(1).persist_with(t.opts()));
        // What can be observed from here: a persisted registered task's
        // value, reused by later computations under the same key.
        let base = delayed(add).call(1, 100);
        let kept = base.persist_with(t.opts()).unwrap();
        assert_eq!(kept.key(), base.key());
        let x = delayed(inc).call(&kept);
        let y = delayed(add).call(&kept, &x);
        assert_eq!(y.compute_with(t.opts()).unwrap(), 101 + 102);
        assert_eq!(kept.compute_with(t.opts()).unwrap(), 101);
        return;
    }
    let base = delayed(counted).call(1);
    let kept = base.persist_with(t.opts()).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(kept.key(), base.key());
    let x = delayed(inc).call(&kept);
    let y = delayed(add).call(&kept, &x);
    assert_eq!(y.compute_with(t.opts()).unwrap(), 101 + 102);
    assert_eq!(kept.compute_with(t.opts()).unwrap(), 101);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "persisted value must not be recomputed"
    );
}

pub(crate) fn task_error_names_key_and_cause(t: &Target) {
    let xs: Vec<_> = (0..20).map(|i| delayed(fails_on_seven).call(i)).collect();
    let bad_key = xs[7].key().clone();
    let s = delayed(total).call(xs);
    let err = s.compute_with(t.opts()).unwrap_err();
    assert_eq!(err.failed_key(), Some(&bad_key), "{err}");
    assert!(err.to_string().contains("seven is not allowed (got 7)"), "{err}");
}

pub(crate) fn panic_fails_the_computation_not_the_process(t: &Target) {
    let xs: Vec<_> = (0..50).map(|i| delayed(panics_on_three).call(i)).collect();
    let bad_key = xs[3].key().clone();
    let s = delayed(total).call(xs);
    let err = s.compute_with(t.opts()).unwrap_err();
    assert_eq!(err.failed_key(), Some(&bad_key), "{err}");
    assert!(err.to_string().contains("three makes this task panic"), "{err}");
    // The executor is still usable afterwards.
    assert_eq!(delayed(inc).call(1).compute_with(t.opts()).unwrap(), 2);
}

pub(crate) fn wrong_result_type_is_an_error(t: &Target) {
    let text = delayed(to_text).call(5);
    let err = delayed(inc)
        .call(Delayed::<i64>::from_layer(text.layer().clone(), text.key().clone()))
        .compute_with(t.opts())
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::TaskFailed(_)), "{err:?}");
    assert!(err.to_string().contains("expected a value of type i64"), "{err}");
}

pub(crate) fn intermediate_values_are_released(t: &Target) {
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (l, p) = (live.clone(), peak.clone());
    let make = move |i: u64| -> TrackedBox { TrackedBox(Arc::new(Tracked::new(i as i64, &l, &p))) };
    let leaves: Vec<Delayed<TrackedBox>> = (0..2_000u64).map(|i| delayed(make.clone()).call(i)).collect();
    let (l2, p2) = (live.clone(), peak.clone());
    let combine = move |xs: Vec<TrackedBox>| -> TrackedBox {
        let s = xs.iter().map(|t| t.0.value).sum();
        TrackedBox(Arc::new(Tracked::new(s, &l2, &p2)))
    };
    let mut level = leaves;
    while level.len() > 1 {
        level = level
            .chunks(10)
            .map(|c| delayed(combine.clone()).call(c.to_vec()))
            .collect();
    }
    let root = level.pop().unwrap();
    if !t.in_process {
        // Values counted in this process cannot be made elsewhere; a
        // cluster's release of results is checked by its own tests.
        refused_as_a_closure(root.compute_with(t.opts()));
        assert_eq!(live.load(Ordering::SeqCst), 0, "nothing ran here");
        return;
    }
    let out = root.compute_with(t.opts()).unwrap();
    assert_eq!(out.0.value, (0..2_000).sum::<i64>());
    drop(out);
    assert_eq!(live.load(Ordering::SeqCst), 0, "every value was dropped");
    let peak = peak.load(Ordering::SeqCst);
    // A tree of fan-in 10 and depth 4: computed in priority order,
    // only a few partial results per level are alive at once. One
    // worker makes this deterministic; with several, a worker the
    // OS pauses mid-group holds its group's siblings alive while
    // the others go on, so the bound allows for that (still a
    // tenth of the 2,222 values).
    let bound = match t.options.scheduler {
        Some(Scheduler::Threads(Some(n))) if n > 1 => 220,
        _ => 80,
    };
    assert!(peak <= bound, "peak of {peak} live values out of 2,222 (bound {bound})");
}

/// A value that counts how many of its kind are alive.
struct Tracked {
    live: Arc<AtomicUsize>,
    value: i64,
}

impl Tracked {
    fn new(value: i64, live: &Arc<AtomicUsize>, peak: &Arc<AtomicUsize>) -> Self {
        let now = live.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        Tracked {
            live: live.clone(),
            value,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Data for Tracked {
    fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }
    fn encode(&self, _out: &mut Vec<u8>) -> Result<()> {
        Err(blockwise_core::Error::codec("Tracked stays in this process"))
    }
}

/// A `Data` wrapper sharing a tracked value (cloning does not count as a new value).
#[derive(Clone)]
struct TrackedBox(Arc<Tracked>);

impl Data for TrackedBox {
    fn size_bytes(&self) -> usize {
        self.0.size_bytes()
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        self.0.encode(out)
    }
}

impl blockwise_core::Decode for TrackedBox {
    fn decode(_bytes: &[u8]) -> Result<Self> {
        Err(blockwise_core::Error::codec("Tracked stays in this process"))
    }
}
