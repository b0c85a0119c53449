//! One conformance suite that every executor must pass (Dask's
//! `GetFunctionTestMixin`): the same cases run on `sync`, `threads` with one
//! thread, and `threads` with four. The cases live in
//! [`conformance/cases.rs`](conformance/cases.rs), shared with the 2-worker
//! cluster's run of them (`crates/distributed/tests/conformance.rs`); the
//! functions they call as tasks are defined here, as plain functions.

use blockwise_local::{ComputeOptions, Delayed, Scheduler, compute_all_with, delayed};

#[path = "conformance/cases.rs"]
mod cases;

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

fn to_text(x: i64) -> String {
    x.to_string()
}

/// One module of tests per executor, one test per case.
macro_rules! executor_tests {
    (($($modname:ident => $scheduler:expr;)+) $cases:tt) => {
        $(executor_tests!(@one $modname, $scheduler, $cases);)+
    };
    (@one $modname:ident, $scheduler:expr, [$($case:ident),+ $(,)?]) => {
        mod $modname {
            use super::*;

            $(
                #[test]
                fn $case() {
                    cases::$case(&cases::Target::local($scheduler));
                }
            )+
        }
    };
}

cases::with_cases!(executor_tests!(
    sync => Scheduler::Sync;
    threads_1 => Scheduler::Threads(Some(1));
    threads_4 => Scheduler::Threads(Some(4));
));

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
