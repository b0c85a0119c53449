//! The scheduler server and workers over real loopback sockets, in one
//! process: workers run on threads here (the same build, so the same ops),
//! which keeps these checks fast. The multi-process cluster is
//! `tests/cluster.rs`.
//!
//! Timeouts below are hang guards, never timing assertions.

use std::time::Duration;

use blockwise_core::delayed::delayed;
use blockwise_core::{ErrorKind, identity};
use blockwise_distributed::frame::FrameLimits;
use blockwise_distributed::protocol::{ClientMessage, Hello, PROTOCOL_VERSION, Role, Welcome};
use blockwise_distributed::tcp::{Connection, host_port};
use blockwise_distributed::{Client, ClientOptions, SchedulerHandle, SchedulerOptions, WorkerOptions, run_worker};
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
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task(crate = crate::shim)]
fn explode(x: i64) -> i64 {
    if x == 3 {
        panic!("exploded on three");
    }
    x
}

fn scheduler(token: Option<&str>) -> SchedulerHandle {
    SchedulerHandle::start(SchedulerOptions {
        address: "tcp://127.0.0.1:0".into(),
        token: token.map(String::from),
        ..SchedulerOptions::default()
    })
    .expect("a scheduler starts on loopback")
}

/// A worker on a thread of this process; it returns when the scheduler
/// closes.
fn worker(address: &str, token: Option<&str>) -> std::thread::JoinHandle<blockwise_core::Result<()>> {
    let mut options = WorkerOptions::new(address).threads(2);
    options.token = token.map(String::from);
    std::thread::spawn(move || run_worker(options))
}

fn wait_for_workers(s: &SchedulerHandle, n: usize) {
    let start = std::time::Instant::now();
    while s.workers() < n {
        assert!(start.elapsed() < Duration::from_secs(60), "workers did not join");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn sum_graph() -> blockwise_core::delayed::Delayed<i64> {
    let mut level: Vec<_> = (0..32i64).map(|i| delayed(add).call(i, 1)).collect();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| delayed(add).call(&p[0], &p[1])).collect();
    }
    level.remove(0)
}

#[test]
fn threads_workers_compute_a_tree_reduction() {
    let s = scheduler(None);
    let workers: Vec<_> = (0..2).map(|_| worker(s.address(), None)).collect();
    wait_for_workers(&s, 2);
    let client = Client::connect(s.address()).unwrap();
    let f = client.submit(&sum_graph()).unwrap();
    let got: i64 = f.result_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(got, (1..=32).sum::<i64>());
    drop(f);
    drop(client);
    s.stop();
    for w in workers {
        w.join().unwrap().unwrap();
    }
}

#[test]
fn a_panicking_task_is_an_error_naming_its_key_and_worker() {
    let s = scheduler(None);
    let _w = worker(s.address(), None);
    wait_for_workers(&s, 1);
    let client = Client::connect(s.address()).unwrap();
    let parts: Vec<_> = (0..5i64).map(|i| delayed(explode).call(i)).collect();
    let bad = parts[3].key().clone();
    let f = client.submit(&delayed(add).call(&parts[3], &parts[4])).unwrap();
    let err = f.value_timeout(Duration::from_secs(60)).unwrap_err();
    assert_eq!(err.failed_key(), Some(&bad), "{err}");
    let text = err.to_string();
    assert!(text.contains("exploded on three"), "{text}");
    assert!(text.contains("on worker-1 at tcp://127.0.0.1:"), "{text}");
    // The worker survived its panic.
    assert_eq!(
        client
            .submit(&delayed(add).call(1, 2))
            .unwrap()
            .result::<i64>()
            .unwrap(),
        3
    );
}

#[test]
fn malformed_and_oversized_messages_close_only_their_connection() {
    let s = scheduler(None);
    let _w = worker(s.address(), None);
    wait_for_workers(&s, 1);
    let client = Client::connect(s.address()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A client that says hello, then sends a frame that is not a message.
        let mut bad = Connection::connect(s.address(), FrameLimits::default()).await.unwrap();
        bad.send(&Hello {
            protocol: PROTOCOL_VERSION,
            build_id: identity::build_id().into(),
            role: Role::Client { name: "garbage".into() },
            token: None,
        })
        .await
        .unwrap();
        assert!(matches!(
            bad.recv().await.unwrap().unwrap().decode::<Welcome>().unwrap(),
            Welcome::Accepted { .. }
        ));
        bad.send(&vec![0xffu8; 64]).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(30), bad.recv())
            .await
            .expect("hang guard");
        assert!(!matches!(closed, Ok(Some(_))), "a malformed message is not answered");

        // A client whose graph payload is garbage.
        let mut garbled = Connection::connect(s.address(), FrameLimits::default()).await.unwrap();
        garbled
            .send(&Hello {
                protocol: PROTOCOL_VERSION,
                build_id: identity::build_id().into(),
                role: Role::Client { name: "garbled".into() },
                token: None,
            })
            .await
            .unwrap();
        assert!(garbled.recv().await.unwrap().is_some());
        garbled
            .send_with(&ClientMessage::SubmitEncoded, &[&[0xff; 16]])
            .await
            .unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(30), garbled.recv())
            .await
            .expect("hang guard");
        assert!(!matches!(closed, Ok(Some(_))), "a garbled graph is not answered");

        // A raw stream announcing a 4 GiB control part.
        let mut huge = tokio::net::TcpStream::connect(host_port(s.address()).unwrap())
            .await
            .unwrap();
        huge.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        huge.write_all(&0u32.to_le_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), huge.read_to_end(&mut rest))
            .await
            .expect("hang guard");
        assert!(
            read.is_err() || rest.is_empty(),
            "the oversized connection is closed unanswered"
        );
    });
    // Everyone else is still served.
    let f = client.submit(&delayed(add).call(20, 22)).unwrap();
    assert_eq!(f.result_timeout::<i64>(Duration::from_secs(60)).unwrap(), 42);
}

#[test]
fn a_token_is_required_when_one_is_configured() {
    let s = scheduler(Some("s3cret"));
    let _w = worker(s.address(), Some("s3cret"));
    wait_for_workers(&s, 1);
    let mut without = ClientOptions::new(s.address());
    without.token = None;
    let err = Client::connect_with(without).unwrap_err();
    assert!(err.to_string().contains("wrong or missing token"), "{err}");
    let mut with = ClientOptions::new(s.address());
    with.token = Some("s3cret".into());
    let client = Client::connect_with(with).unwrap();
    assert_eq!(client.compute(&delayed(add).call(2, 3)).unwrap(), 5);
}

#[test]
fn a_worker_of_another_build_gets_a_clear_error() {
    let s = SchedulerHandle::start(SchedulerOptions {
        address: "tcp://127.0.0.1:0".into(),
        build_id: Some("another-build".into()),
        ..SchedulerOptions::default()
    })
    .unwrap();
    let err = run_worker(WorkerOptions::new(s.address()).threads(1)).unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::BuildMismatch);
    let text = err.to_string();
    assert!(text.contains("refused this worker"), "{text}");
    assert!(text.contains("runs a different executable"), "{text}");
    assert!(text.contains("another-build"), "{text}");
    assert_eq!(s.workers(), 0);
}

#[test]
fn work_waits_for_a_worker_to_join() {
    let s = scheduler(None);
    let client = Client::connect(s.address()).unwrap();
    let f = client.submit(&delayed(add).call(40, 2)).unwrap();
    // No worker yet: the task waits (no-worker) instead of failing.
    assert_eq!(f.status(), blockwise_distributed::FutureStatus::Pending);
    let _w = worker(s.address(), None);
    assert_eq!(f.result_timeout::<i64>(Duration::from_secs(60)).unwrap(), 42);
}

static FLAKY_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Fails on its first call in this process, succeeds after.
#[task(crate = crate::shim)]
fn flaky(x: i64) -> Result<i64, String> {
    if FLAKY_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
        Err("first call fails".into())
    } else {
        Ok(x)
    }
}

#[test]
fn retries_run_a_failing_task_again() {
    let s = scheduler(None);
    let _w = worker(s.address(), None);
    wait_for_workers(&s, 1);
    let client = Client::connect(s.address()).unwrap();
    let options = blockwise_distributed::SubmitOptions {
        retries: 1,
        priority: 5,
    };
    let f = client.persist_with(&delayed(flaky).call(7), &options).unwrap();
    assert_eq!(f[0].result_timeout::<i64>(Duration::from_secs(60)).unwrap(), 7);
    assert!(FLAKY_CALLS.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

#[test]
fn published_datasets_are_shared_between_clients() {
    let s = scheduler(None);
    let _w = worker(s.address(), None);
    wait_for_workers(&s, 1);
    {
        let first = Client::connect(s.address()).unwrap();
        let futures = first.map(0..4i64, |i| delayed(add).call(i, 100)).unwrap();
        first.wait(&futures, Some(Duration::from_secs(60))).unwrap();
        first.publish("hundreds", &futures).unwrap();
        // The first client leaves; the name keeps the results alive.
    }
    let second = Client::connect(s.address()).unwrap();
    assert_eq!(second.list_datasets().unwrap(), ["hundreds"]);
    let futures = second.get_dataset("hundreds").unwrap();
    assert_eq!(second.gather_as::<i64>(&futures).unwrap(), [100, 101, 102, 103]);
    second.unpublish("hundreds").unwrap();
    let err = second.get_dataset("hundreds").unwrap_err();
    assert!(err.to_string().contains("no dataset named \"hundreds\""), "{err}");
    // The second client's own futures still hold the results.
    assert_eq!(futures[3].result::<i64>().unwrap(), 103);
}

#[task(crate = crate::shim)]
fn nap(x: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(50));
    x
}

/// Polls the scheduler until `done` holds (a hang guard, not a timing
/// assertion).
fn eventually(s: &SchedulerHandle, what: &str, done: impl Fn(&blockwise_distributed::SchedulerSnapshot) -> bool) {
    let start = std::time::Instant::now();
    loop {
        let snapshot = s.snapshot().unwrap();
        if done(&snapshot) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{what}: {snapshot:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_disconnected_clients_work_is_released() {
    let s = scheduler(None);
    let _w = worker(s.address(), None);
    wait_for_workers(&s, 1);
    let client = Client::connect(s.address()).unwrap();
    let parts: Vec<_> = (0..40i64).map(|i| delayed(nap).call(i)).collect();
    let futures = client.map(parts, |p| p).unwrap();
    assert!(s.snapshot().unwrap().tasks >= 40);
    // Leaves while its futures still exist: it releases nothing itself.
    client.close();
    let err = futures[0].value().unwrap_err();
    assert!(err.to_string().contains("the client was closed"), "{err}");
    eventually(&s, "the client's tasks are forgotten", |snap| {
        snap.clients == 0 && snap.tasks == 0
    });
}

#[test]
fn dropped_futures_release_their_results() {
    let s = scheduler(None);
    let _w = worker(s.address(), None);
    wait_for_workers(&s, 1);
    let client = Client::connect(s.address()).unwrap();
    let f = client.submit(&delayed(add).call(1, 2)).unwrap();
    let g = f.clone();
    assert_eq!(f.result::<i64>().unwrap(), 3);
    drop(f);
    // A clone still holds the key.
    assert_eq!(g.result::<i64>().unwrap(), 3);
    drop(g);
    eventually(&s, "the released key is forgotten", |snap| snap.tasks == 0);
    assert_eq!(s.snapshot().unwrap().clients, 1);
}

#[test]
fn tls_with_mutual_certificates_serves_members_and_refuses_strangers() {
    use blockwise_distributed::tls::{Tls, create_test_certificates};
    let dir = std::env::temp_dir().join(format!("blockwise-tls-server-{}", std::process::id()));
    let members = create_test_certificates(&dir.join("cluster"), &["scheduler", "worker", "client"]).unwrap();
    let strangers = create_test_certificates(&dir.join("other"), &["intruder"]).unwrap();
    let tls = |i: usize| Tls::from_files(&members[i]).unwrap();

    let s = SchedulerHandle::start(SchedulerOptions {
        address: "tls://127.0.0.1:0".into(),
        tls: Some(tls(0)),
        ..SchedulerOptions::default()
    })
    .unwrap();
    assert!(s.address().starts_with("tls://"), "{}", s.address());
    let mut options = WorkerOptions::new(s.address()).threads(2);
    options.tls = Some(tls(1));
    let _w = std::thread::spawn(move || run_worker(options));
    wait_for_workers(&s, 1);

    // A member computes (the result is gathered from the worker's TLS port).
    let mut member = ClientOptions::new(s.address());
    member.tls = Some(tls(2));
    let client = Client::connect_with(member).unwrap();
    assert_eq!(client.compute(&sum_graph()).unwrap(), (1..=32).sum::<i64>());

    // No certificates at all: a clear error before anything is sent.
    let err = Client::connect(s.address()).unwrap_err().to_string();
    assert!(err.contains("no certificates were given"), "{err}");

    // Certificates of another CA: the handshake fails.
    let mut intruder = ClientOptions::new(s.address());
    intruder.tls = Some(Tls::from_files(&strangers[0]).unwrap());
    let err = Client::connect_with(intruder).unwrap_err().to_string();
    assert!(err.contains("TLS handshake"), "{err}");

    // Plain TCP on the TLS port: never gets a welcome.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let plain = s.address().replace("tls://", "tcp://");
        let mut c = Connection::connect(&plain, FrameLimits::default()).await.unwrap();
        let _ = c
            .send(&Hello {
                protocol: PROTOCOL_VERSION,
                build_id: identity::build_id().into(),
                role: Role::Client { name: "plain".into() },
                token: None,
            })
            .await;
        let answer = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("hang guard");
        assert!(!matches!(answer, Ok(Some(_))), "plain TCP was answered on a TLS port");
    });

    // The member is still served.
    assert_eq!(client.compute(&delayed(add).call(2, 2)).unwrap(), 4);
    drop(client);
    let _ = std::fs::remove_dir_all(&dir);
}

#[task(crate = crate::shim)]
fn block(i: i64) -> Vec<i64> {
    vec![i; 2000]
}

#[test]
fn results_beyond_the_memory_limit_spill_to_disk_and_come_back() {
    let s = scheduler(None);
    let dir = std::env::temp_dir().join(format!("blockwise-spill-test-{}", std::process::id()));
    let mut options = WorkerOptions::new(s.address()).threads(2);
    options.memory.limit = 100_000; // spill beyond 60 kB: about four blocks
    options.memory.directory = dir.clone();
    options.heartbeat = Duration::from_millis(20);
    let _w = std::thread::spawn(move || run_worker(options));
    wait_for_workers(&s, 1);
    let client = Client::connect(s.address()).unwrap();
    let futures = client.map(0..20i64, |i| delayed(block).call(i)).unwrap();
    client.wait(&futures, Some(Duration::from_secs(60))).unwrap();
    eventually(&s, "the worker reports spilled bytes", |snap| {
        snap.metrics.iter().any(|(_, m)| m.spilled >= 100_000)
    });
    // Every block comes back intact, spilled or not.
    let blocks: Vec<Vec<i64>> = client.gather_as(&futures).unwrap();
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(b.len(), 2000);
        assert!(b.iter().all(|&x| x == i as i64), "block {i}");
    }
    // And a task reading spilled inputs computes.
    let parts: Vec<_> = (0..20i64).map(|i| delayed(block).call(i)).collect();
    let total: i64 = client.compute(&delayed(sum_blocks).call(parts)).unwrap();
    assert_eq!(total, (0..20i64).map(|i| i * 2000).sum::<i64>());
    drop(futures);
    drop(client);
    s.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[task(crate = crate::shim)]
fn sum_blocks(blocks: Vec<Vec<i64>>) -> i64 {
    blocks.iter().flatten().sum()
}

#[test]
fn subscribed_clients_hear_tasks_finish_and_workers_come_and_go() {
    use blockwise_distributed::protocol::ClusterEvent;
    let s = scheduler(None);
    let client = Client::connect(s.address()).unwrap();
    let events = client.events().unwrap();
    let mut options = WorkerOptions::new(s.address()).threads(1);
    options.heartbeat = Duration::from_millis(20);
    let _w = std::thread::spawn(move || run_worker(options));
    let f = client.submit(&delayed(add).call(5, 6)).unwrap();
    assert_eq!(f.result_timeout::<i64>(Duration::from_secs(60)).unwrap(), 11);
    let (mut joined, mut finished, mut metrics) = (false, false, false);
    while !(joined && finished && metrics) {
        match events
            .recv_timeout(Duration::from_secs(60))
            .expect("hang guard: events stopped")
        {
            ClusterEvent::WorkerJoined { address, .. } => joined = address.starts_with("tcp://"),
            ClusterEvent::TaskFinished { key, .. } => finished |= key == *f.key(),
            ClusterEvent::WorkerMetrics { .. } => metrics = true,
            _ => {}
        }
    }
}

/// Counts what a callback is told.
#[derive(Default)]
struct Counting {
    planned: std::sync::atomic::AtomicUsize,
    finished: std::sync::Mutex<std::collections::HashSet<u32>>,
    ended_ok: std::sync::atomic::AtomicBool,
}

impl blockwise_core::Callback for Counting {
    fn start(&self, plan: &blockwise_core::Plan) {
        self.planned.store(plan.len(), std::sync::atomic::Ordering::SeqCst);
    }
    fn task_finish(&self, _: &blockwise_core::Plan, id: u32, _: usize, _: &blockwise_core::Value) {
        self.finished.lock().unwrap().insert(id);
    }
    fn finish(&self, _: &blockwise_core::Plan, failed: bool) {
        self.ended_ok.store(!failed, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn callbacks_and_progress_bars_see_every_task_of_a_cluster_computation() {
    use blockwise_local::{Compute, ComputeOptions, Scheduler};
    let s = scheduler(None);
    let _w = worker(s.address(), None);
    wait_for_workers(&s, 1);
    let client = Client::connect(s.address()).unwrap();
    let counting = std::sync::Arc::new(Counting::default());
    let options = ComputeOptions::new()
        .scheduler(Scheduler::Executor(client.executor()))
        .callback(counting.clone());
    assert_eq!(sum_graph().compute_with(options).unwrap(), (1..=32).sum::<i64>());
    let planned = counting.planned.load(std::sync::atomic::Ordering::SeqCst);
    assert!(planned > 1);
    assert_eq!(counting.finished.lock().unwrap().len(), planned);
    assert!(counting.ended_ok.load(std::sync::atomic::Ordering::SeqCst));
}
