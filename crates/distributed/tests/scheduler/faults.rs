//! Dead workers, lost results, failing tasks, tasks that kill workers.

use blockwise_distributed::scheduler::{Event, FailureKind, SchedulerConfig, TaskState};

use crate::env::{Report, TestEnv, k, ki};
use crate::workflows::{Dag, diamond, map_reduce};

#[test]
fn a_worker_lost_mid_computation_has_its_lost_results_recomputed() {
    let mut env = TestEnv::with_config(SchedulerConfig {
        worker_saturation: f64::INFINITY,
        ..SchedulerConfig::default()
    });
    let w0 = env.add_worker(1);
    let w1 = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &map_reduce(4));
    // Run every x, and the y of the ones on w1 only.
    for i in 0..4 {
        env.finish(&ki("x", i), 10);
    }
    let on_w1: Vec<u32> = (0..4).filter(|&i| env.processing_on(&ki("y", i)) == w1).collect();
    let on_w0: Vec<u32> = (0..4).filter(|&i| env.processing_on(&ki("y", i)) == w0).collect();
    assert!(
        !on_w1.is_empty() && !on_w0.is_empty(),
        "work is spread: {on_w0:?} {on_w1:?}"
    );
    for &i in &on_w1 {
        env.finish(&ki("y", i), 10);
    }
    env.comm.clear();

    // w1 dies: its y results are lost and still needed by `total`. Their x
    // inputs were freed, so those are recomputed first. The y still
    // processing on w0 carry on.
    env.kill(w1);
    let mut sent = env.comm.take_computes(w0);
    sent.sort();
    assert_eq!(sent, on_w1.iter().map(|&i| ki("x", i)).collect::<Vec<_>>());
    env.comm.emptiness_check();
    for &i in &on_w1 {
        assert_eq!(env.state(&ki("y", i)), Some(TaskState::Waiting));
        env.finish(&ki("x", i), 10);
        assert_eq!(env.comm.take_computes(w0), vec![ki("y", i)]);
        env.finish(&ki("y", i), 10);
    }
    for &i in &on_w0 {
        env.finish(&ki("y", i), 10);
    }
    env.comm.take_frees(w0);
    assert_eq!(env.comm.take_computes(w0), vec![k("total")]);
    env.finish(&k("total"), 1);
    assert_eq!(env.comm.take_reports(c), vec![Report::InMemory(k("total"))]);
}

#[test]
fn tasks_processing_on_a_dead_worker_go_back_and_only_started_ones_get_a_strike() {
    let mut env = TestEnv::with_config(SchedulerConfig {
        worker_saturation: f64::INFINITY,
        ..SchedulerConfig::default()
    });
    let w0 = env.add_worker(1);
    let c = env.new_client();
    let mut dag = Dag::new();
    dag.add(k("p"), &[]).add(k("q"), &[]).output(&k("p")).output(&k("q"));
    env.submit(c, &dag);
    env.start(&k("p"));
    env.comm.clear();
    env.kill(w0);
    assert_eq!(env.state(&k("p")), Some(TaskState::NoWorker));
    assert_eq!(env.task(&k("p")).suspicious, 1);
    assert_eq!(env.task(&k("q")).suspicious, 0);
    let w1 = env.add_worker(1);
    let mut sent: Vec<_> = env
        .comm
        .take_compute_commands(w1)
        .into_iter()
        .map(|c| (c.key, c.suspicious))
        .collect();
    sent.sort();
    // The strike travels with the task: its worker runs it on its own,
    // never batched with others that would share the blame.
    assert_eq!(sent, vec![(k("p"), 1), (k("q"), 0)]);
    env.comm.emptiness_check();
}

#[test]
fn a_task_that_kills_its_workers_fails_with_killed_worker_after_allowed_failures() {
    let mut env = TestEnv::with_config(SchedulerConfig {
        allowed_failures: 2,
        ..SchedulerConfig::default()
    });
    let c = env.new_client();
    let mut dag = Dag::new();
    dag.add(k("bomb"), &[])
        .add(k("after"), &[k("bomb")])
        .output(&k("after"));
    env.submit(c, &dag);
    for death in 1..=3 {
        let w = env.add_worker(1);
        assert_eq!(env.comm.take_computes(w), vec![k("bomb")]);
        env.start(&k("bomb"));
        env.kill(w);
        if death <= 2 {
            assert_eq!(
                env.state(&k("bomb")),
                Some(TaskState::NoWorker),
                "death {death} is forgiven"
            );
            assert_eq!(env.task(&k("bomb")).suspicious, death);
            env.comm.emptiness_check();
        }
    }
    assert_eq!(env.state(&k("bomb")), Some(TaskState::Erred));
    assert_eq!(env.state(&k("after")), Some(TaskState::Erred));
    match env.comm.take_reports(c).as_slice() {
        [Report::Error(key, failure)] => {
            assert_eq!(key, &k("after"));
            assert_eq!(
                failure.key,
                k("bomb"),
                "the failure blames the task that killed the workers"
            );
            assert_eq!(failure.kind, FailureKind::KilledWorker);
            assert!(
                failure.message.contains("KilledWorker: 3 workers died"),
                "{}",
                failure.message
            );
            assert!(failure.to_string().contains("task \"bomb\" failed"), "{failure}");
        }
        other => panic!("expected one error report, got {other:?}"),
    }
    env.comm.emptiness_check();
    // Releasing the erred output forgets everything.
    env.release(c, &[k("after")]);
    assert_eq!(env.scheduler.task_count(), 0);
}

#[test]
fn a_graceful_departure_is_no_strike() {
    let mut env = TestEnv::with_config(SchedulerConfig {
        allowed_failures: 0,
        ..SchedulerConfig::default()
    });
    let w = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &diamond());
    env.start(&k("a"));
    env.handle(Event::WorkerLost {
        worker: w,
        graceful: true,
    });
    assert_eq!(env.state(&k("a")), Some(TaskState::NoWorker));
    assert_eq!(env.task(&k("a")).suspicious, 0);
}

#[test]
fn a_lost_output_is_reported_lost_and_recomputed() {
    let mut env = TestEnv::new();
    let w0 = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &diamond());
    for key in ["a", "b", "c", "d"] {
        env.finish(&k(key), 1);
    }
    assert_eq!(env.comm.take_reports(c), vec![Report::InMemory(k("d"))]);
    env.comm.clear();
    env.kill(w0);
    assert_eq!(env.comm.take_reports(c), vec![Report::Lost(k("d"))]);
    env.comm.emptiness_check();
    assert_eq!(env.state(&k("a")), Some(TaskState::NoWorker));
    let w1 = env.add_worker(1);
    assert_eq!(env.comm.take_computes(w1), vec![k("a")]);
    for key in ["a", "b", "c", "d"] {
        env.finish(&k(key), 1);
    }
    assert_eq!(env.comm.take_reports(c), vec![Report::InMemory(k("d"))]);
}

#[test]
fn a_missing_replica_is_forgotten_and_the_asker_told_where_else_to_look() {
    let mut env = TestEnv::new();
    let w0 = env.add_worker(1);
    let w1 = env.add_worker(1);
    let w2 = env.add_worker(1);
    let c = env.new_client();
    let mut dag = Dag::new();
    dag.add(k("a"), &[]).add(k("b"), &[k("a")]).output(&k("b"));
    env.submit(c, &dag);
    let holder = env.processing_on(&k("a"));
    env.finish(&k("a"), 10);
    let reader = env.processing_on(&k("b"));
    let a = env.id(&k("a"));
    let others: Vec<_> = [w0, w1, w2].into_iter().filter(|w| *w != holder).collect();
    // Another worker fetched a copy.
    let copy = others[0];
    env.handle(Event::ReplicasAdded {
        worker: copy,
        tasks: vec![a],
    });
    env.comm.clear();
    env.handle(Event::DataMissing {
        worker: reader,
        task: a,
        holder,
    });
    assert_eq!(env.comm.take_frees(holder), vec![a]);
    let updates: Vec<_> = env
        .comm
        .commands
        .drain(..)
        .map(|c| match c {
            blockwise_distributed::Command::UpdateWhoHas {
                worker, task, who_has, ..
            } => (worker, task, who_has),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(updates, vec![(reader, a, vec![copy])]);
    assert_eq!(env.task(&k("a")).who_has, vec![copy]);

    // The last copy is missing too: `a` is lost and recomputed, `b` waits.
    env.handle(Event::DataMissing {
        worker: reader,
        task: a,
        holder: copy,
    });
    assert_eq!(env.state(&k("b")), Some(TaskState::Waiting));
    assert_eq!(env.comm.take_cancels(reader), vec![env.id(&k("b"))]);
    assert_eq!(env.comm.take_frees(copy), vec![a]);
    let sent = env.comm.take_all_computes();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, k("a"));
    env.comm.emptiness_check();
}

#[test]
fn a_failing_task_errs_its_dependents_and_the_client_is_told_which_key_failed() {
    let mut env = TestEnv::new();
    let w = env.add_worker(2);
    let c = env.new_client();
    env.submit(c, &diamond());
    env.finish(&k("a"), 1);
    env.comm.take_computes(w);
    env.start(&k("c"));
    env.fail(&k("b"), "division by zero");
    // `d` erred; `c` is no longer needed and is cancelled; `a` is freed.
    assert_eq!(env.state(&k("b")), Some(TaskState::Erred));
    assert_eq!(env.state(&k("d")), Some(TaskState::Erred));
    match env.comm.take_reports(c).as_slice() {
        [Report::Error(key, failure)] => {
            assert_eq!(key, &k("d"));
            assert_eq!(failure.key, k("b"));
            assert_eq!(failure.kind, FailureKind::Raised);
            assert_eq!(failure.message, "division by zero");
        }
        other => panic!("expected one error report, got {other:?}"),
    }
    assert_eq!(env.comm.take_cancels(w), vec![env.id(&k("c"))]);
    assert_eq!(env.comm.take_frees(w), vec![env.id(&k("a"))]);
    env.comm.emptiness_check();
    // Resubmitting reports the error at once.
    env.submit(c, &diamond());
    assert!(matches!(env.comm.take_reports(c).as_slice(), [Report::Error(_, _)]));
    env.comm.emptiness_check();
}

#[test]
fn a_task_with_retries_runs_again_after_a_failure() {
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let c = env.new_client();
    let mut dag = Dag::new();
    dag.add(k("flaky"), &[]).output(&k("flaky")).retries(&k("flaky"), 1);
    env.submit(c, &dag);
    env.comm.clear();
    env.fail(&k("flaky"), "network blip");
    assert_eq!(env.comm.take_computes(w), vec![k("flaky")]);
    env.comm.emptiness_check();
    assert_eq!(env.task(&k("flaky")).retries_left, 0);
    env.fail(&k("flaky"), "network blip again");
    assert!(matches!(env.comm.take_reports(c).as_slice(), [Report::Error(_, _)]));
}

#[test]
fn a_paused_worker_gets_no_new_tasks_until_it_resumes() {
    let mut env = TestEnv::new();
    let w0 = env.add_worker(1);
    let c = env.new_client();
    env.handle(Event::WorkerPaused {
        worker: w0,
        paused: true,
    });
    env.submit(c, &diamond());
    assert_eq!(env.state(&k("a")), Some(TaskState::NoWorker));
    env.comm.emptiness_check();
    env.handle(Event::WorkerPaused {
        worker: w0,
        paused: false,
    });
    assert_eq!(env.comm.take_computes(w0), vec![k("a")]);
    // Paused while `a` runs: its dependents go elsewhere.
    env.handle(Event::WorkerPaused {
        worker: w0,
        paused: true,
    });
    let w1 = env.add_worker(1);
    env.finish(&k("a"), 1);
    let mut sent = env.comm.take_computes(w1);
    sent.sort();
    assert_eq!(sent, vec![k("b"), k("c")]);
    env.comm.emptiness_check();
}

#[test]
fn when_every_worker_dies_work_waits_and_resumes_with_a_new_one() {
    let mut env = TestEnv::new();
    let workers = env.add_workers(2, 2);
    let c = env.new_client();
    env.submit(c, &map_reduce(12));
    for w in workers {
        env.kill(w);
    }
    assert!(env.queued().len() + env.scheduler.no_worker().len() == 12);
    env.comm.clear();
    let w = env.add_worker(4);
    // Drain: finish whatever is processing until the output is in memory.
    while env.state(&k("total")) != Some(TaskState::Memory) {
        let next = env.processing(w).first().cloned().expect("something is processing");
        env.finish(&next, 1);
    }
    assert_eq!(env.comm.take_reports(c), vec![Report::InMemory(k("total"))]);
}
