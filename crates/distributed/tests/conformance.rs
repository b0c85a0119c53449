//! The engine's conformance suite on a cluster: the same cases as the local
//! executors' (`crates/local/tests/conformance/cases.rs`, included below),
//! run on one `LocalCluster` of two worker processes of this executable,
//! over real loopback sockets.
//!
//! The functions the cases call as tasks are `#[task]`-registered here, so
//! the workers rebuild them by name. Cases that need this process (closures
//! capturing a counter, values that cannot be encoded) assert the cluster's
//! clear refusal instead.
//!
//! `harness = false`: `main` first turns the process into a worker when the
//! cluster started it as one. Each case runs on its own thread under a
//! generous hang guard (never a timing assertion); the binary prints one
//! `N passed, N failed` line and exits non-zero on any failure.
//!
//! Run: `cargo test -p blockwise-distributed --test conformance [NAME…]`

use std::sync::mpsc;
use std::time::Duration;

use blockwise_distributed::LocalCluster;
use blockwise_local::Scheduler;
use blockwise_macros::task;

#[path = "../../local/tests/conformance/cases.rs"]
mod cases;

/// What the facade's `__private` module holds, for a crate without the facade.
#[allow(
    clippy::single_component_path_imports,
    reason = "the re-exports are the point: generated code reaches them as `crate::shim::...`"
)]
mod shim {
    pub(crate) use blockwise_core;
}

#[task(crate = crate::shim)]
fn inc(x: i64) -> i64 {
    x + 1
}

#[task(crate = crate::shim)]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task(crate = crate::shim)]
fn total(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

#[task(crate = crate::shim)]
fn fails_on_seven(x: i64) -> Result<i64, String> {
    if x == 7 {
        Err(format!("seven is not allowed (got {x})"))
    } else {
        Ok(x)
    }
}

#[task(crate = crate::shim)]
fn panics_on_three(x: i64) -> i64 {
    assert!(x != 3, "three makes this task panic");
    x
}

#[task(crate = crate::shim)]
fn div_mod(a: i64, b: i64) -> (i64, i64) {
    (a / b, a % b)
}

#[task(crate = crate::shim)]
fn to_text(x: i64) -> String {
    x.to_string()
}

type Case = fn(&cases::Target);

/// Every case, by name.
macro_rules! case_list {
    (() [$($case:ident),+ $(,)?]) => {
        vec![$((stringify!($case), cases::$case as Case)),+]
    };
}

fn main() {
    blockwise_distributed::serve_if_worker();

    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let selected = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let all: Vec<(&str, Case)> = cases::with_cases!(case_list!());
    let chosen: Vec<(&str, Case)> = all.into_iter().filter(|(name, _)| selected(name)).collect();
    if chosen.is_empty() {
        println!("0 passed, 0 failed");
        return;
    }

    // One cluster for the whole suite.
    let cluster = match LocalCluster::new(2, 2) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start the cluster: {e}");
            std::process::exit(1);
        }
    };
    let client = match cluster.client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot connect to the cluster at {}: {e}", cluster.address());
            std::process::exit(1);
        }
    };
    let target = cases::Target::remote(Scheduler::Executor(client.executor()));
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in chosen {
        let (tx, rx) = mpsc::channel();
        let t = target.clone();
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&t)))
                .map_err(|payload| blockwise_local::engine::panic_message(&payload));
            let _ = tx.send(outcome);
        });
        // A hang guard, not a timing assertion.
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(Ok(())) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Ok(Err(message)) => {
                failed += 1;
                println!("test {name} ... FAILED\n    {message}");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED\n    hung for 300 s");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    drop(client);
    drop(cluster);
    if failed > 0 {
        std::process::exit(1);
    }
}
