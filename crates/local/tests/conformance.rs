//! One conformance suite that every local executor must pass (Dask's
//! `GetFunctionTestMixin`): the same cases run on `sync`, `threads` with one
//! thread, and `threads` with four.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use blockwise_core::value::Data;
use blockwise_core::{ErrorKind, Result};
use blockwise_local::{Compute, ComputeOptions, Delayed, Scheduler, compute_all_with, delayed};

fn inc(x: i64) -> i64 {
    x + 1
}

fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn total(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

fn fails_on_seven(x: i64) -> std::result::Result<i64, String> {
    if x == 7 {
        Err(format!("seven is not allowed (got {x})"))
    } else {
        Ok(x)
    }
}

fn panics_on_three(x: i64) -> i64 {
    assert!(x != 3, "three makes this task panic");
    x
}

fn div_mod(a: i64, b: i64) -> (i64, i64) {
    (a / b, a % b)
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

fn tree_sum(leaves: Vec<Delayed<i64>>, fan_in: usize) -> Delayed<i64> {
    let mut level = leaves;
    while level.len() > 1 {
        level = level.chunks(fan_in).map(|c| delayed(total).call(c.to_vec())).collect();
    }
    level.pop().expect("at least one leaf")
}

macro_rules! conformance {
    ($($modname:ident => $opts:expr;)+) => {$(
        mod $modname {
            use super::*;

            fn opts() -> ComputeOptions {
                $opts
            }

            #[test]
            fn literal_value() {
                let v = blockwise_core::delayed::value(41i64);
                assert_eq!(delayed(inc).call(v).compute_with(opts()).unwrap(), 42);
            }

            #[test]
            fn chain_and_diamond() {
                let a = delayed(inc).call(1);
                let b = delayed(inc).call(&a);
                let c = delayed(inc).call(&a);
                let d = delayed(add).call(&b, &c);
                assert_eq!(d.compute_with(opts()).unwrap(), 6);
            }

            #[test]
            fn long_chain_fused_and_unfused() {
                let mut x = delayed(inc).call(0);
                for _ in 0..2_000 {
                    x = delayed(inc).call(&x);
                }
                assert_eq!(x.compute_with(opts()).unwrap(), 2_001);
                assert_eq!(x.compute_with(opts().fuse(false)).unwrap(), 2_001);
            }

            #[test]
            fn tree_reduction_of_ten_thousand() {
                let leaves: Vec<_> = (0..10_000).map(|i| delayed(inc).call(i)).collect();
                let s = tree_sum(leaves, 100);
                assert_eq!(s.compute_with(opts()).unwrap(), (1..=10_000).sum::<i64>());
            }

            #[test]
            fn flat_sum_of_many() {
                let leaves: Vec<_> = (0..5_000).map(|i| delayed(inc).call(i)).collect();
                let s = delayed(total).call(leaves);
                assert_eq!(s.compute_with(opts()).unwrap(), (1..=5_000).sum::<i64>());
            }

            #[test]
            fn several_outputs_nout() {
                let q = delayed(div_mod).call(17, 5);
                let (d, m) = q.unpack();
                let s = delayed(add).call(&d, &m);
                assert_eq!(s.compute_with(opts()).unwrap(), 5);
                assert_eq!(q.compute_with(opts()).unwrap(), (3, 2));
            }

            #[test]
            fn shared_dependency_runs_once() {
                let calls = Arc::new(AtomicUsize::new(0));
                let c = calls.clone();
                let counted = move |x: i64| {
                    c.fetch_add(1, Ordering::SeqCst);
                    x * 10
                };
                let base = delayed(counted).call(4);
                let a = delayed(inc).call(&base);
                let b = delayed(inc).call(&base);
                let out = compute_all_with(&[a, b], opts()).unwrap();
                assert_eq!(out, vec![41, 41]);
                assert_eq!(calls.load(Ordering::SeqCst), 1);
            }

            #[test]
            fn persist_reuses_results() {
                let calls = Arc::new(AtomicUsize::new(0));
                let c = calls.clone();
                let counted = move |x: i64| {
                    c.fetch_add(1, Ordering::SeqCst);
                    x + 100
                };
                let base = delayed(counted).call(1);
                let kept = base.persist_with(opts()).unwrap();
                assert_eq!(calls.load(Ordering::SeqCst), 1);
                assert_eq!(kept.key(), base.key());
                let x = delayed(inc).call(&kept);
                let y = delayed(add).call(&kept, &x);
                assert_eq!(y.compute_with(opts()).unwrap(), 101 + 102);
                assert_eq!(kept.compute_with(opts()).unwrap(), 101);
                assert_eq!(calls.load(Ordering::SeqCst), 1, "persisted value must not be recomputed");
            }

            #[test]
            fn task_error_names_key_and_cause() {
                let xs: Vec<_> = (0..20).map(|i| delayed(fails_on_seven).call(i)).collect();
                let bad_key = xs[7].key().clone();
                let s = delayed(total).call(xs);
                let err = s.compute_with(opts()).unwrap_err();
                assert_eq!(err.failed_key(), Some(&bad_key), "{err}");
                assert!(err.to_string().contains("seven is not allowed (got 7)"), "{err}");
            }

            #[test]
            fn panic_fails_the_computation_not_the_process() {
                let xs: Vec<_> = (0..50).map(|i| delayed(panics_on_three).call(i)).collect();
                let bad_key = xs[3].key().clone();
                let s = delayed(total).call(xs);
                let err = s.compute_with(opts()).unwrap_err();
                assert_eq!(err.failed_key(), Some(&bad_key), "{err}");
                assert!(err.to_string().contains("three makes this task panic"), "{err}");
                // The executor is still usable afterwards.
                assert_eq!(delayed(inc).call(1).compute_with(opts()).unwrap(), 2);
            }

            #[test]
            fn wrong_result_type_is_an_error() {
                let text = delayed(|x: i64| x.to_string()).call(5);
                let err = delayed(inc).call(Delayed::<i64>::from_layer(text.layer().clone(), text.key().clone()))
                    .compute_with(opts())
                    .unwrap_err();
                assert!(matches!(err.kind(), ErrorKind::TaskFailed(_)), "{err:?}");
                assert!(err.to_string().contains("expected a value of type i64"), "{err}");
            }

            #[test]
            fn intermediate_values_are_released() {
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
                    level = level.chunks(10).map(|c| delayed(combine.clone()).call(c.to_vec())).collect();
                }
                let out = level.pop().unwrap().compute_with(opts()).unwrap();
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
                let bound = match opts().scheduler {
                    Some(Scheduler::Threads(Some(n))) if n > 1 => 220,
                    _ => 80,
                };
                assert!(peak <= bound, "peak of {peak} live values out of 2,222 (bound {bound})");
            }
        }
    )+};
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

conformance! {
    sync => ComputeOptions::new().scheduler(Scheduler::Sync);
    threads_1 => ComputeOptions::new().scheduler(Scheduler::Threads(Some(1)));
    threads_4 => ComputeOptions::new().scheduler(Scheduler::Threads(Some(4)));
}

mod random_dags {
    use super::*;
    use proptest::prelude::*;

    /// Node `i` reads up to three earlier nodes; its value is `i` plus the
    /// sum of what it reads, so any mix-up shows in the result.
    fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
        (1usize..60).prop_flat_map(|n| {
            (0..n)
                .map(|i| proptest::collection::vec(0..i.max(1), if i == 0 { 0..1 } else { 0..4 }))
                .collect::<Vec<_>>()
        })
    }

    fn reference(deps: &[Vec<usize>]) -> Vec<i64> {
        let mut out: Vec<i64> = Vec::with_capacity(deps.len());
        for (i, d) in deps.iter().enumerate() {
            let v = i as i64 + d.iter().map(|&j| out[j]).sum::<i64>();
            out.push(v % 1_000_003);
        }
        out
    }

    fn build(deps: &[Vec<usize>]) -> Vec<Delayed<i64>> {
        let mut nodes: Vec<Delayed<i64>> = Vec::with_capacity(deps.len());
        for (i, d) in deps.iter().enumerate() {
            let f = move |xs: Vec<i64>| (i as i64 + xs.iter().sum::<i64>()) % 1_000_003;
            let inputs: Vec<Delayed<i64>> = d.iter().map(|&j| nodes[j].clone()).collect();
            nodes.push(delayed(f).call(inputs));
        }
        nodes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_executor_gives_the_sequential_result(deps in dag()) {
            let expected = reference(&deps);
            let nodes = build(&deps);
            for scheduler in [Scheduler::Sync, Scheduler::Threads(Some(1)), Scheduler::Threads(Some(3))] {
                for fuse in [true, false] {
                    let got = compute_all_with(&nodes, ComputeOptions::new().scheduler(scheduler.clone()).fuse(fuse)).unwrap();
                    prop_assert_eq!(&got, &expected);
                }
            }
        }
    }
}
