//! A LocalCluster end to end: two worker processes of this very program,
//! a flat graph of `n` tiny tasks and a tree reduction over them, computed
//! through the cluster and checked against the threaded scheduler; prints
//! the tasks per second through the scheduler.
//!
//! Run: `cargo run --release -p blockwise-distributed --example local_cluster -- 20000`

use std::time::Instant;

use blockwise_core::delayed::{Delayed, delayed};
use blockwise_distributed::LocalCluster;
use blockwise_local::{Compute, Scheduler};

/// What the facade's `__private` module holds, for a crate without the facade.
#[allow(
    clippy::single_component_path_imports,
    reason = "the re-exports are the point: generated code reaches them as `crate::shim::...`"
)]
mod shim {
    pub(crate) use blockwise_core;
}

#[blockwise_macros::task(crate = crate::shim)]
fn inc(x: i64) -> i64 {
    x + 1
}

#[blockwise_macros::task(crate = crate::shim)]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn tree(n: i64) -> Delayed<i64> {
    let mut level: Vec<Delayed<i64>> = (0..n).map(|i| delayed(inc).call(i)).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| {
                if p.len() == 2 {
                    delayed(add).call(&p[0], &p[1])
                } else {
                    p[0].clone()
                }
            })
            .collect();
    }
    level.remove(0)
}

fn main() -> blockwise_core::Result<()> {
    // A worker process started by the cluster serves here and never returns.
    blockwise_distributed::serve_if_worker();
    let n: i64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    if std::env::var_os("SUBMISSION_SIZE").is_some() {
        let g = tree(n);
        let plan = blockwise_core::Plan::build(
            &blockwise_core::Collection::graph(&g),
            &[g.key().clone()],
            &Default::default(),
        )?;
        let submission = blockwise_distributed::spec::submission_of(&plan)?;
        let bytes = blockwise_distributed::frame::encode(&submission).map_err(blockwise_core::Error::from)?;
        println!(
            "{} tasks: submission of {} bytes ({} per task)",
            plan.len(),
            bytes.len(),
            bytes.len() / plan.len()
        );
        return Ok(());
    }
    let cluster = LocalCluster::new(2, 1)?;
    let client = cluster.client()?;
    let graph = tree(n);
    let expected = graph.compute_with(Scheduler::Threads(Some(2)))?;
    let start = Instant::now();
    let got = graph.compute_with(Scheduler::Executor(client.executor()))?;
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(got, expected);
    let tasks = 2 * n - 1;
    println!(
        "{tasks} tasks on {}: {seconds:.3} s, {:.0} tasks/s (result {got})",
        cluster.address(),
        tasks as f64 / seconds
    );
    Ok(())
}
