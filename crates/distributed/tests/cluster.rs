//! A real cluster: a scheduler in this process, worker processes of this
//! same executable, real loopback sockets.
//!
//! `harness = false`: `main` first turns the process into a worker when the
//! cluster started it as one (`serve_if_worker`), as every program using a
//! cluster does; libtest's `main` could not. Each check runs on its own
//! thread under a generous hang guard (never a timing assertion); the binary
//! prints one `N passed, N failed` line and exits non-zero on any failure.
//!
//! Run: `cargo test -p blockwise-distributed --test cluster`

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use blockwise_core::ErrorKind;
use blockwise_core::delayed::{Delayed, delayed};
use blockwise_distributed::frame::FrameLimits;
use blockwise_distributed::protocol::{Hello, PROTOCOL_VERSION, Role, Welcome};
use blockwise_distributed::scheduler::WorkerInfo;
use blockwise_distributed::tcp::Connection;
use blockwise_distributed::{Client, FutureStatus, LocalCluster, SchedulerOptions};
use blockwise_local::{Compute, Scheduler};
use blockwise_macros::task;

/// What the facade's `__private` module holds, for a crate without the facade.
#[allow(
    clippy::single_component_path_imports,
    reason = "the re-exports are the point: generated code reaches them as `crate::shim::...`"
)]
mod shim {
    pub(crate) use blockwise_core;
}

#[task(crate = crate::shim)]
fn square_plus(x: i64, k: i64) -> i64 {
    x * x + k
}

#[task(crate = crate::shim)]
fn total(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

#[task(crate = crate::shim)]
fn describe(n: i64, label: String) -> String {
    format!("{label}={n}")
}

#[task(crate = crate::shim)]
fn refuse_thirteen(x: i64) -> Result<i64, String> {
    if x == 13 {
        Err("thirteen is refused by this task".into())
    } else {
        Ok(x)
    }
}

/// Slow enough that a worker can be killed while it computes.
#[task(crate = crate::shim)]
fn slow_double(x: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(60));
    x * 2
}

#[task(crate = crate::shim)]
fn pair_sum(a: i64, b: i64) -> i64 {
    a + b
}

#[task(crate = crate::shim)]
fn inc(x: i64) -> i64 {
    x + 1
}

/// Ends the worker process running it, as a crash (out of memory, a
/// segfault in native code) would: no goodbye, the sockets just close.
#[task(crate = crate::shim)]
fn crash_worker(x: i64) -> i64 {
    if x == 666 {
        std::process::exit(86);
    }
    x
}

/// `i + 1` for a block index `i`: the tiny task of the generated layers.
#[task(crate = crate::shim)]
fn index_plus_one(i: u64) -> u64 {
    i + 1
}

#[task(crate = crate::shim)]
fn sum_all(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

/// A 1-d array of `n` f64, element `i` being `seed * 1e6 + i / 2`.
#[task(crate = crate::shim)]
fn ramp(seed: u64, n: u64) -> ndarray::ArrayD<f64> {
    ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[n as usize]), |i| seed as f64 * 1e6 + i[0] as f64 * 0.5)
}

/// The same numbers as a column-major 2-d array (encoded, not lent).
#[task(crate = crate::shim)]
fn ramp_fortran(seed: u64, rows: u64) -> ndarray::ArrayD<f64> {
    use ndarray::ShapeBuilder;
    ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[rows as usize, 3]).f(), |i| {
        seed as f64 * 1e6 + (i[0] * 3 + i[1]) as f64 * 0.5
    })
}

/// Every element of every array, in order, summed (so any changed,
/// missing or reordered byte changes it).
#[task(crate = crate::shim)]
fn weighted_sum(xs: Vec<ndarray::ArrayD<f64>>) -> f64 {
    xs.iter()
        .flat_map(|x| x.iter())
        .enumerate()
        .map(|(i, v)| v * ((i % 7) as f64 + 1.0))
        .sum()
}

/// `n` tiny tasks from one generated layer and one sum of them all (the
/// bench's `tasks-flat`): `n + 1` tasks, the result `n(n+1)/2`.
fn flat_sum(n: u32) -> Delayed<u64> {
    use blockwise_core::graph::{BlockArg, Blockwise, Input, Layer, LayerBody, Task};
    use blockwise_core::op::{FnOp, Op};
    use blockwise_core::{Key, Tokenizer};
    let op: Arc<dyn Op> = Arc::new(FnOp::new(index_plus_one, vec![None]));
    let mut tok = Tokenizer::new();
    op.tokenize(&mut tok);
    tok.str("flat-sum").u64(u64::from(n));
    let incs = Layer::new(
        tok.name("inc"),
        vec![],
        LayerBody::Blockwise(Box::new(Blockwise {
            op,
            grid: vec![n],
            args: vec![BlockArg::BlockIndex(0)],
        })),
    );
    let sum_op: Arc<dyn Op> = Arc::new(FnOp::new(sum_all, vec![Some(n)]));
    let name = tok.name("sum-all");
    let inputs = (0..n)
        .map(|i| Input::Key(Key::new(incs.name().clone(), &[i])))
        .collect();
    let key = Key::new(name.clone(), &[0]);
    let sum = Layer::new(
        name,
        vec![incs],
        LayerBody::Tasks(vec![(key.clone(), Task::new(sum_op, inputs))]),
    );
    Delayed::from_layer(sum, key)
}

fn flat_sum_expected(n: u32) -> u64 {
    let n = u64::from(n);
    n * (n + 1) / 2
}

fn graph() -> Delayed<String> {
    let parts: Vec<_> = (0..50).map(|i| delayed(square_plus).call(i, 3)).collect();
    let sum = delayed(total).call(parts);
    delayed(describe).call(&sum, String::from("sum"))
}

fn expected_graph_result() -> String {
    format!("sum={}", (0..50i64).map(|i| i * i + 3).sum::<i64>())
}

/// A tree reduction of slow tasks: 64 leaves, pairwise sums.
fn slow_tree() -> Delayed<i64> {
    let mut level: Vec<Delayed<i64>> = (0..64).map(|i| delayed(slow_double).call(i)).collect();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| delayed(pair_sum).call(&p[0], &p[1])).collect();
    }
    level.remove(0)
}

fn same_result_as_local(cluster: &LocalCluster) -> Result<(), String> {
    let local = graph().compute_with(Scheduler::Sync).map_err(|e| e.to_string())?;
    if local != expected_graph_result() {
        return Err(format!("local result {local:?}"));
    }
    let client = cluster.client().map_err(|e| e.to_string())?;
    let remote = graph()
        .compute_with(Scheduler::Executor(client.executor()))
        .map_err(|e| e.to_string())?;
    if remote != local {
        return Err(format!("the cluster gave {remote:?}, the sync scheduler {local:?}"));
    }
    // The explicit client API gives the same.
    let again = client.compute(&graph()).map_err(|e| e.to_string())?;
    if again != local {
        return Err(format!("client.compute gave {again:?}"));
    }
    Ok(())
}

fn cluster_address_as_scheduler_setting(cluster: &LocalCluster) -> Result<(), String> {
    blockwise_distributed::install();
    let scheduler = Scheduler::parse(cluster.address()).map_err(|e| e.to_string())?;
    let got = graph().compute_with(scheduler).map_err(|e| e.to_string())?;
    if got != expected_graph_result() {
        return Err(format!("through the scheduler setting: {got:?}"));
    }
    Ok(())
}

fn futures_api(cluster: &LocalCluster) -> Result<(), String> {
    let client = cluster.client().map_err(|e| e.to_string())?;
    let e = |e: blockwise_core::Error| e.to_string();
    // submit one call, take its result with a (hang-guard) timeout
    let f = client.submit(&delayed(inc).call(41)).map_err(e)?;
    let v: i64 = f.result_timeout(Duration::from_secs(60)).map_err(e)?;
    if v != 42 {
        return Err(format!("submit(inc(41)) gave {v}"));
    }
    // map, then gather in order
    let futures = client.map(0..20i64, |i| delayed(square_plus).call(i, 1)).map_err(e)?;
    let values: Vec<i64> = client.gather_as(&futures).map_err(e)?;
    let want: Vec<i64> = (0..20).map(|i| i * i + 1).collect();
    if values != want {
        return Err(format!("map+gather gave {values:?}"));
    }
    // wait, then every future is finished
    client.wait(&futures, Some(Duration::from_secs(60))).map_err(e)?;
    if let Some(f) = futures.iter().find(|f| f.status() != FutureStatus::Finished) {
        return Err(format!("{f:?} is not finished after wait"));
    }
    // as_completed yields each future once
    let more = client.map(100..110i64, |i| delayed(inc).call(i)).map_err(e)?;
    let mut seen: Vec<i64> = client
        .as_completed(more)
        .map(|f| f.result::<i64>())
        .collect::<Result<_, _>>()
        .map_err(e)?;
    seen.sort();
    if seen != (101..111).collect::<Vec<_>>() {
        return Err(format!("as_completed gave {seen:?}"));
    }
    // scatter: the value lives on a worker and comes back intact
    let data: Vec<i64> = (0..1000).collect();
    let scattered = client.scatter(data.clone()).map_err(e)?;
    let back: Vec<i64> = scattered.result_timeout(Duration::from_secs(60)).map_err(e)?;
    if back != data {
        return Err("scatter/gather changed the data".into());
    }
    // persist keeps results: a later computation on the same keys reuses them
    let persisted = client.persist(&graph()).map_err(e)?;
    client.wait(&persisted, Some(Duration::from_secs(60))).map_err(e)?;
    let reused = client.compute(&graph()).map_err(e)?;
    if reused != expected_graph_result() {
        return Err(format!("compute after persist gave {reused:?}"));
    }
    // cancel: the future is done, and asking for its value is an error
    let slow = client.submit(&delayed(slow_double).call(1000)).map_err(e)?;
    slow.cancel();
    if slow.status() != FutureStatus::Cancelled {
        return Err(format!("after cancel: {:?}", slow.status()));
    }
    match slow.value_timeout(Duration::from_secs(60)) {
        Err(err) if *err.kind() == ErrorKind::Cancelled => {}
        other => return Err(format!("value of a cancelled future: {other:?}")),
    }
    Ok(())
}

/// Arrays of 40 MB cross between the worker processes (the consumer of
/// four of them fetches those it does not hold) and come back to the
/// client, byte for byte: sent from their own memory and received into
/// their own storage — bodies this large on a blocking thread, their
/// memory faulted in ahead of the reads. A column-major one takes the
/// encoded path.
fn large_arrays_cross_between_processes_intact(cluster: &LocalCluster) -> Result<(), String> {
    let client = cluster.client().map_err(|e| e.to_string())?;
    let e = |e: blockwise_core::Error| e.to_string();
    const N: u64 = 5_000_000;
    let mut parts: Vec<Delayed<ndarray::ArrayD<f64>>> = (0..4).map(|s| delayed(ramp).call(s, N)).collect();
    parts.push(delayed(ramp_fortran).call(9, 1000));
    let total = delayed(weighted_sum).call(parts.clone());
    let local = total.compute_with(Scheduler::Sync).map_err(e)?;
    let remote = client.compute(&total).map_err(e)?;
    if remote.to_bits() != local.to_bits() {
        return Err(format!("the cluster summed {remote}, the sync scheduler {local}"));
    }
    for part in [&parts[1], &parts[4]] {
        let want = part.compute_with(Scheduler::Sync).map_err(e)?;
        let got = client.compute(part).map_err(e)?;
        if got != want {
            return Err(format!("{} changed on its way to the client", part.key()));
        }
    }
    Ok(())
}

fn task_error_names_the_key(cluster: &LocalCluster) -> Result<(), String> {
    let client = cluster.client().map_err(|e| e.to_string())?;
    let xs: Vec<_> = (10..16).map(|i| delayed(refuse_thirteen).call(i)).collect();
    let bad = xs[3].key().clone();
    let s = delayed(total).call(xs);
    match s.compute_with(Scheduler::Executor(client.executor())) {
        Ok(v) => Err(format!("expected a failure, got {v}")),
        Err(e) if e.failed_key() == Some(&bad) && e.to_string().contains("thirteen is refused") => {
            // The cluster still works after a failure.
            let ok = delayed(inc)
                .call(1)
                .compute_with(Scheduler::Executor(client.executor()));
            match ok {
                Ok(2) => Ok(()),
                other => Err(format!("after a failure, inc(1) gave {other:?}")),
            }
        }
        Err(e) => Err(format!("expected task {bad} to fail, got: {e}")),
    }
}

fn killed_worker_mid_computation() -> Result<(), String> {
    let e = |e: blockwise_core::Error| e.to_string();
    let mut cluster = LocalCluster::new(2, 2).map_err(e)?;
    let client = cluster.client().map_err(e)?;
    let tree = slow_tree();
    let expected: i64 = (0..64i64).map(|i| i * 2).sum();
    let local = tree.compute_with(Scheduler::Threads(Some(2))).map_err(e)?;
    if local != expected {
        return Err(format!("local result {local}, expected {expected}"));
    }
    let futures = client.persist(&tree).map_err(e)?;
    // Wait until a first leaf is done somewhere (a result exists on a
    // worker, others are running), then kill a worker.
    let leaves: Vec<_> = (0..64).map(|i| delayed(slow_double).call(i)).collect();
    let leaf_futures = client.map(leaves, |l| l).map_err(e)?;
    let first = client.as_completed(leaf_futures.clone()).next();
    if first.is_none() {
        return Err("no leaf completed".into());
    }
    cluster.kill_worker(0).map_err(e)?;
    let got: i64 = futures[0].result_timeout(Duration::from_secs(120)).map_err(e)?;
    if got != expected {
        return Err(format!(
            "after killing a worker the cluster gave {got}, expected {expected}"
        ));
    }
    if cluster.connected_workers() != 1 {
        return Err(format!(
            "{} workers connected after one was killed",
            cluster.connected_workers()
        ));
    }
    Ok(())
}

/// A graph far larger than the workers' queues (tiny tasks travel and run
/// in batches) completes with the right result.
fn a_large_graph_of_tiny_tasks_completes(cluster: &LocalCluster) -> Result<(), String> {
    let e = |e: blockwise_core::Error| e.to_string();
    let n = 100_000;
    let client = cluster.client().map_err(e)?;
    let got = client.compute(&flat_sum(n)).map_err(e)?;
    if got != flat_sum_expected(n) {
        return Err(format!(
            "{n} tiny tasks summed to {got}, expected {}",
            flat_sum_expected(n)
        ));
    }
    Ok(())
}

/// A graph sent as layers that does not hold together (a task reads a key
/// no layer has) is refused with the key named; the client goes on.
fn a_broken_layered_graph_is_refused_naming_the_key(cluster: &LocalCluster) -> Result<(), String> {
    use blockwise_core::graph::{Input, Layer, Task};
    use blockwise_core::{Collection, Graph, Key, Name};
    let e = |e: blockwise_core::Error| e.to_string();
    let client = cluster.client().map_err(e)?;
    let good = flat_sum(10);
    let missing = Key::single(Name::new("missing-input-77"));
    let reader = Layer::single(
        Name::new("reader-78"),
        vec![],
        Task::new(blockwise_core::op::identity(), vec![Input::Key(missing)]),
    );
    let mut graph = good.graph();
    graph.merge(&Graph::from_layer(reader));
    match client.submit_graph(&graph, &[Key::single(Name::new("reader-78"))], &Default::default()) {
        Ok(_) => return Err("a graph reading a key no layer has was accepted".into()),
        Err(err) if err.kind() == &ErrorKind::InvalidGraph && err.to_string().contains("missing-input-77") => {}
        Err(err) => return Err(format!("expected a refusal naming missing-input-77, got: {err}")),
    }
    match client.compute(&good) {
        Ok(v) if v == flat_sum_expected(10) => Ok(()),
        other => Err(format!("after a refusal the client computed {other:?}")),
    }
}

/// kill -9 while tiny tasks run in batches (many assigned, some started,
/// results reported a batch at a time): the lost and unreported ones are
/// recomputed and the sum is right.
fn killed_worker_while_tiny_tasks_run_in_batches() -> Result<(), String> {
    let e = |e: blockwise_core::Error| e.to_string();
    let mut cluster = LocalCluster::new(2, 1).map_err(e)?;
    let client = cluster.client().map_err(e)?;
    let n = 60_000;
    let events = client.events().map_err(e)?;
    let futures = client.persist(&flat_sum(n)).map_err(e)?;
    // Kill once a few thousand tasks are done: batches are running, and
    // both workers hold results the sum needs.
    let mut finished = 0;
    while finished < 3_000 {
        match events.recv_timeout(Duration::from_secs(60)) {
            Some(blockwise_distributed::protocol::ClusterEvent::TaskFinished { .. }) => finished += 1,
            Some(_) => {}
            None => return Err(format!("only {finished} tasks finished within a minute")),
        }
    }
    cluster.kill_worker(0).map_err(e)?;
    let got: u64 = futures[0].result_timeout(Duration::from_secs(240)).map_err(e)?;
    if got != flat_sum_expected(n) {
        return Err(format!(
            "after kill -9 the cluster summed {got}, expected {}",
            flat_sum_expected(n)
        ));
    }
    Ok(())
}

/// A crashing task batched with innocent ones: the first death gives every
/// task of the batch a strike, but from then on each suspect runs on its
/// own, so only the culprit is failed with KilledWorker; the innocent tasks
/// of its batch all compute.
fn only_the_culprit_of_a_crashed_batch_is_blamed() -> Result<(), String> {
    let e = |e: blockwise_core::Error| e.to_string();
    let mut options = SchedulerOptions::default();
    options.config.allowed_failures = 1;
    let cluster = LocalCluster::with_options(3, 1, options).map_err(e)?;
    let client = cluster.client().map_err(e)?;
    let calls: Vec<i64> = (0..2000).collect();
    let futures = client
        .map(calls.clone(), |i| delayed(crash_worker).call(i))
        .map_err(e)?;
    client.wait(&futures, Some(Duration::from_secs(240))).map_err(e)?;
    for (i, f) in calls.iter().zip(&futures) {
        match (i, f.status()) {
            (666, FutureStatus::Error(failure)) if failure.message.contains("KilledWorker") => {
                if failure.key != *f.key() {
                    return Err(format!("the crash was blamed on {}, not {}", failure.key, f.key()));
                }
            }
            (666, other) => return Err(format!("the crashing task ended {other:?}")),
            (_, FutureStatus::Finished) => {}
            (i, other) => return Err(format!("innocent task crash_worker({i}) ended {other:?}")),
        }
    }
    let values: Vec<i64> = client
        .gather_as(
            &futures
                .iter()
                .filter(|f| f.status() == FutureStatus::Finished)
                .cloned()
                .collect::<Vec<_>>(),
        )
        .map_err(e)?;
    let expected: Vec<i64> = calls.into_iter().filter(|&i| i != 666).collect();
    if values != expected {
        return Err("the innocent tasks gave wrong values".into());
    }
    Ok(())
}

fn a_task_that_kills_its_workers_fails_naming_the_key() -> Result<(), String> {
    let e = |e: blockwise_core::Error| e.to_string();
    let mut options = SchedulerOptions::default();
    // One death is forgiven (the worker may have died of something else);
    // the second one blames the task.
    options.config.allowed_failures = 1;
    let cluster = LocalCluster::with_options(3, 1, options).map_err(e)?;
    let client = cluster.client().map_err(e)?;
    let doomed = delayed(crash_worker).call(666);
    let key = doomed.key().clone();
    let f = client.submit(&doomed).map_err(e)?;
    match f.value_timeout(Duration::from_secs(120)) {
        Ok(v) => return Err(format!("a crashing task returned {v:?}")),
        Err(err) if err.failed_key() == Some(&key) && err.to_string().contains("KilledWorker") => {}
        Err(err) => return Err(format!("expected KilledWorker for {key}, got: {err}")),
    }
    // Two workers died for it; the third is unharmed and still computes.
    if cluster.connected_workers() != 1 {
        return Err(format!("{} workers left, expected 1", cluster.connected_workers()));
    }
    match client.compute(&delayed(crash_worker).call(1)) {
        Ok(1) => Ok(()),
        other => Err(format!("the surviving worker gave {other:?}")),
    }
}

fn a_tls_cluster_of_processes_gives_the_same_result() -> Result<(), String> {
    let e = |e: blockwise_core::Error| e.to_string();
    let dir = std::env::temp_dir().join(format!("blockwise-tls-cluster-{}", std::process::id()));
    let files = blockwise_distributed::tls::create_test_certificates(&dir, &["member"]).map_err(e)?;
    let cluster = LocalCluster::with_tls(2, 2, files[0].clone()).map_err(e)?;
    if !cluster.address().starts_with("tls://") {
        return Err(format!("a TLS cluster at {}", cluster.address()));
    }
    let client = cluster.client().map_err(e)?;
    // A tree whose sums read inputs from both workers: peers fetch over TLS.
    let got = client.compute(&slow_tree()).map_err(e)?;
    let _ = std::fs::remove_dir_all(&dir);
    let expected: i64 = (0..64i64).map(|i| i * 2).sum();
    if got != expected {
        return Err(format!("the TLS cluster gave {got}, expected {expected}"));
    }
    Ok(())
}

fn a_worker_of_another_build_is_refused(cluster: &LocalCluster) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let welcome = runtime.block_on(async {
        let mut c = Connection::connect(cluster.address(), FrameLimits::default())
            .await
            .map_err(|e| e.to_string())?;
        c.send(&Hello {
            protocol: PROTOCOL_VERSION,
            build_id: "0123456789abcdef0123456789abcdef".into(),
            role: Role::Worker {
                info: WorkerInfo {
                    name: "impostor".into(),
                    threads: 1,
                    ..Default::default()
                },
                address: "tcp://127.0.0.1:1".into(),
            },
            token: None,
        })
        .await
        .map_err(|e| e.to_string())?;
        let raw = c
            .recv()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("closed without an answer")?;
        raw.decode::<Welcome>().map_err(|e| e.to_string())
    })?;
    match welcome {
        Welcome::Refused { reason } if reason.contains("different executable") && reason.contains("impostor") => {
            // The cluster keeps serving.
            let client = cluster.client().map_err(|e| e.to_string())?;
            match client.compute(&delayed(inc).call(1)) {
                Ok(2) => Ok(()),
                other => Err(format!("after refusing a worker: {other:?}")),
            }
        }
        other => Err(format!("a worker of another build got {other:?}")),
    }
}

fn a_client_of_another_build_is_refused(cluster: &LocalCluster) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let welcome = runtime.block_on(async {
        let mut c = Connection::connect(cluster.address(), FrameLimits::default())
            .await
            .map_err(|e| e.to_string())?;
        c.send(&Hello {
            protocol: PROTOCOL_VERSION,
            build_id: "ffff".into(),
            role: Role::Client { name: "other".into() },
            token: None,
        })
        .await
        .map_err(|e| e.to_string())?;
        let raw = c
            .recv()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("closed without an answer")?;
        raw.decode::<Welcome>().map_err(|e| e.to_string())
    })?;
    match welcome {
        Welcome::Refused { reason } if reason.contains("build id ffff") => Ok(()),
        other => Err(format!("a client of another build got {other:?}")),
    }
}

fn closure_is_refused_before_sending(cluster: &LocalCluster) -> Result<(), String> {
    let client: Client = cluster.client().map_err(|e| e.to_string())?;
    let k = 7i64;
    let bumped = delayed(move |x: i64| x + k).call(1);
    match client.persist(&bumped) {
        Err(e) if *e.kind() == ErrorKind::NotRegistered => Ok(()),
        other => Err(format!("a closure sent to a cluster gave {other:?}")),
    }
}

type Check = fn() -> Result<(), String>;
type ClusterCheck = fn(&LocalCluster) -> Result<(), String>;

fn a_worker_copy_that_does_not_serve_cannot_start_a_cluster() -> Result<(), String> {
    let out = std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg(FORGETFUL_MAIN)
        .env(blockwise_distributed::worker::WORKER_ENV, "tcp://127.0.0.1:1")
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) && stderr.contains("call blockwise_distributed::serve_if_worker()") {
        Ok(())
    } else {
        Err(format!("status {}, stderr {stderr:?}", out.status))
    }
}

/// Makes `main` behave as a program that forgot `serve_if_worker`.
const FORGETFUL_MAIN: &str = "--forgetful-main";

fn main() {
    if std::env::args().any(|a| a == FORGETFUL_MAIN) {
        // Started as a worker, but goes on to start a cluster of its own.
        match LocalCluster::new(1, 1) {
            Ok(_) => std::process::exit(0),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(3);
            }
        }
    }
    blockwise_distributed::serve_if_worker();

    let shared = Arc::new(match LocalCluster::new(2, 2) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start the cluster: {e}");
            std::process::exit(1);
        }
    });
    let with_cluster: Vec<(&str, ClusterCheck)> = vec![
        ("same_result_as_local", same_result_as_local),
        (
            "cluster_address_as_scheduler_setting",
            cluster_address_as_scheduler_setting,
        ),
        ("futures_api", futures_api),
        ("task_error_names_the_key", task_error_names_the_key),
        (
            "large_arrays_cross_between_processes_intact",
            large_arrays_cross_between_processes_intact,
        ),
        (
            "a_worker_of_another_build_is_refused",
            a_worker_of_another_build_is_refused,
        ),
        (
            "a_client_of_another_build_is_refused",
            a_client_of_another_build_is_refused,
        ),
        ("closure_is_refused_before_sending", closure_is_refused_before_sending),
        (
            "a_large_graph_of_tiny_tasks_completes",
            a_large_graph_of_tiny_tasks_completes,
        ),
        (
            "a_broken_layered_graph_is_refused_naming_the_key",
            a_broken_layered_graph_is_refused_naming_the_key,
        ),
    ];
    let forgetful: (&str, Check) = (
        "a_worker_copy_that_does_not_serve_cannot_start_a_cluster",
        a_worker_copy_that_does_not_serve_cannot_start_a_cluster,
    );
    let alone: Vec<(&str, Check)> = vec![
        forgetful,
        ("killed_worker_mid_computation", killed_worker_mid_computation),
        (
            "a_task_that_kills_its_workers_fails_naming_the_key",
            a_task_that_kills_its_workers_fails_naming_the_key,
        ),
        (
            "killed_worker_while_tiny_tasks_run_in_batches",
            killed_worker_while_tiny_tasks_run_in_batches,
        ),
        (
            "only_the_culprit_of_a_crashed_batch_is_blamed",
            only_the_culprit_of_a_crashed_batch_is_blamed,
        ),
        (
            "a_tls_cluster_of_processes_gives_the_same_result",
            a_tls_cluster_of_processes_gives_the_same_result,
        ),
    ];

    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let selected = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let mut passed = 0;
    let mut failed = 0;
    let mut run = |name: &str, check: Box<dyn FnOnce() -> Result<(), String> + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(check());
        });
        // A hang guard, not a timing assertion.
        let outcome = rx
            .recv_timeout(Duration::from_secs(300))
            .unwrap_or_else(|_| Err("hung for 300 s (or panicked)".into()));
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED\n    {e}");
            }
        }
    };
    for (name, check) in with_cluster {
        if selected(name) {
            let cluster = shared.clone();
            run(name, Box::new(move || check(&cluster)));
        }
    }
    for (name, check) in alone {
        if selected(name) {
            run(name, Box::new(check));
        }
    }
    println!("{passed} passed, {failed} failed");
    drop(shared);
    if failed > 0 {
        std::process::exit(1);
    }
}
