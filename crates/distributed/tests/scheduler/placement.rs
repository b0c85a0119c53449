//! Placement: the worker that can start a task soonest, given where its
//! inputs are and how busy each worker is.

use blockwise_distributed::scheduler::SchedulerConfig;

use crate::env::{TestEnv, k};
use crate::workflows::{Dag, independent};

/// ```text
///   a (10 MB)   b (1 kB)
///        ╲       ╱
///            c
/// ```
fn two_inputs() -> Dag {
    let mut dag = Dag::new();
    dag.add(k("a"), &[])
        .add(k("b"), &[])
        .add(k("c"), &[k("a"), k("b")])
        .output(&k("c"));
    dag
}

#[test]
fn a_task_runs_where_its_large_input_is() {
    let mut env = TestEnv::new();
    env.add_worker(1);
    env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &two_inputs());
    let (on_a, on_b) = (env.processing_on(&k("a")), env.processing_on(&k("b")));
    assert_ne!(on_a, on_b, "two idle workers share the two roots");
    env.finish(&k("a"), 10_000_000);
    env.finish(&k("b"), 1_000);
    assert_eq!(env.processing_on(&k("c")), on_a);
}

#[test]
fn the_compute_command_lists_every_input_and_its_holders() {
    let mut env = TestEnv::new();
    env.add_worker(1);
    env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &two_inputs());
    let (on_a, on_b) = (env.processing_on(&k("a")), env.processing_on(&k("b")));
    env.finish(&k("a"), 10_000_000);
    env.finish(&k("b"), 1_000);
    let worker = env.processing_on(&k("c"));
    let computes = env.comm.take_compute_commands(worker);
    let compute = computes.iter().find(|c| c.key == k("c")).expect("c was sent");
    let inputs: Vec<_> = compute
        .inputs
        .iter()
        .map(|i| (i.key.clone(), i.nbytes, i.who_has.clone()))
        .collect();
    assert_eq!(
        inputs,
        vec![(k("a"), 10_000_000, vec![on_a]), (k("b"), 1_000, vec![on_b])]
    );
    assert_eq!(compute.task, env.id(&k("c")));
    assert_eq!(compute.spec.bytes(), b"\"c\"");
}

/// One worker holds a long backlog; the input of `c` is small.
fn busy_worker_and_a_new_one(
    input_bytes: u64,
) -> (
    TestEnv,
    blockwise_distributed::WorkerId,
    blockwise_distributed::WorkerId,
) {
    let mut env = TestEnv::with_config(SchedulerConfig {
        worker_saturation: f64::INFINITY,
        ..SchedulerConfig::default()
    });
    let busy = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &independent(10)); // 10 × 0.5 s (unknown duration) on `busy`
    let mut dag = Dag::new();
    dag.add(k("a"), &[]).add(k("c"), &[k("a")]).output(&k("c"));
    env.submit(c, &dag);
    assert_eq!(env.processing_on(&k("a")), busy);
    let idle = env.add_worker(1);
    env.finish(&k("a"), input_bytes);
    env.comm.take_all_computes();
    (env, busy, idle)
}

#[test]
fn a_busy_worker_loses_to_an_idle_one_when_the_input_is_cheap_to_move() {
    let (env, _busy, idle) = busy_worker_and_a_new_one(10);
    assert_eq!(env.processing_on(&k("c")), idle);
}

#[test]
fn a_large_input_keeps_the_task_on_its_busy_holder() {
    // 1 GB at 100 MB/s is 10 s of transfer, more than the 4.5 s backlog.
    let (env, busy, _idle) = busy_worker_and_a_new_one(1_000_000_000);
    assert_eq!(env.processing_on(&k("c")), busy);
}

#[test]
fn occupancy_adds_expected_compute_and_transfer_time() {
    let mut env = TestEnv::new();
    let w = env.add_worker(2);
    let c = env.new_client();
    env.submit(c, &two_inputs());
    let view = env.scheduler.worker(w).unwrap();
    // Two roots of unknown prefixes: 0.5 s each.
    assert_eq!(view.occupancy_us, 1_000_000);
    env.finish(&k("a"), 50_000_000);
    env.finish(&k("b"), 50_000_000);
    // `c` is unknown (0.5 s); its inputs are local: nothing to transfer.
    assert_eq!(env.scheduler.worker(w).unwrap().occupancy_us, 500_000);
}
