//! The life of a computation: submit, compute, report, free, forget.

use blockwise_distributed::scheduler::{Event, NewTask, Submission, TaskSpec, TaskState};
use blockwise_distributed::{ClientId, RunId, WorkerId};

use crate::workflows::Dag;

use crate::env::{Report, TestEnv, k, ki};
use crate::workflows::{chain, diamond};

#[test]
fn diamond_runs_to_memory_frees_as_it_goes_and_forgets_on_release() {
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &diamond());
    assert_eq!(env.comm.take_computes(w), vec![k("a")]);
    env.comm.emptiness_check();

    env.finish(&k("a"), 100);
    let mut next = env.comm.take_computes(w);
    next.sort();
    assert_eq!(next, vec![k("b"), k("c")]);
    env.comm.emptiness_check();

    env.finish(&k("b"), 10);
    env.comm.emptiness_check(); // `a` is still needed by `c`
    env.finish(&k("c"), 10);
    assert_eq!(env.freed(w), vec![k("a")], "`a` freed once its last reader ran");
    assert_eq!(env.comm.take_computes(w), vec![k("d")]);
    env.comm.emptiness_check();

    env.finish(&k("d"), 1);
    assert_eq!(env.comm.take_reports(c), vec![Report::InMemory(k("d"))]);
    assert_eq!(env.freed(w), vec![k("b"), k("c")]);
    env.comm.emptiness_check();
    assert_eq!(env.state(&k("d")), Some(TaskState::Memory));
    // Inputs are kept, result-less, in case `d` must be recomputed.
    assert_eq!(env.state(&k("a")), Some(TaskState::Released));
    assert_eq!(env.has_what(w), vec![k("d")]);

    env.release(c, &[k("d")]);
    assert_eq!(env.freed(w), vec![k("d")]);
    env.comm.emptiness_check();
    assert_eq!(env.scheduler.task_count(), 0, "everything is forgotten");
}

#[test]
fn a_chain_runs_link_by_link() {
    let mut env = TestEnv::new();
    let w = env.add_worker(4);
    let c = env.new_client();
    env.submit(c, &chain(5));
    for i in 0..5 {
        assert_eq!(env.comm.take_computes(w), vec![ki("chain", i)]);
        env.finish(&ki("chain", i), 8);
        if i > 0 {
            assert_eq!(env.freed(w), vec![ki("chain", i - 1)]);
        }
    }
    assert_eq!(env.comm.take_reports(c), vec![Report::InMemory(ki("chain", 4))]);
    env.comm.emptiness_check();
}

#[test]
fn without_workers_ready_tasks_wait_in_no_worker_until_one_joins() {
    let mut env = TestEnv::new();
    let c = env.new_client();
    env.submit(c, &diamond());
    assert_eq!(env.state(&k("a")), Some(TaskState::NoWorker));
    assert_eq!(env.state(&k("d")), Some(TaskState::Waiting));
    env.comm.emptiness_check();
    let w = env.add_worker(2);
    assert_eq!(env.comm.take_computes(w), vec![k("a")]);
    assert_eq!(env.state(&k("a")), Some(TaskState::Processing));
    env.comm.emptiness_check();
}

#[test]
fn a_cyclic_submission_is_rejected_and_changes_nothing() {
    let mut env = TestEnv::new();
    env.add_worker(1);
    let c = env.new_client();
    let task = |name: &str, dependencies: Vec<u32>| NewTask {
        key: k(name),
        dependencies,
        order: 0,
        spec: Some(TaskSpec::default()),
        retries: 0,
    };
    env.handle(Event::ClientSubmitted {
        client: c,
        submission: Submission {
            tasks: vec![task("p", vec![1]), task("q", vec![0])],
            outputs: vec![0],
            priority: 0,
        },
    });
    match env.comm.take_reports(c).as_slice() {
        [Report::Rejected(why)] => assert!(why.contains("cycle through key \"p\""), "{why}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    env.comm.emptiness_check();
    assert_eq!(env.scheduler.task_count(), 0);
}

#[test]
fn a_key_without_a_task_must_be_held_by_the_scheduler() {
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let c = env.new_client();
    let future = |name: &str| NewTask {
        key: k(name),
        dependencies: vec![],
        order: 0,
        spec: None,
        retries: 0,
    };
    env.handle(Event::ClientSubmitted {
        client: c,
        submission: Submission {
            tasks: vec![future("ghost")],
            outputs: vec![0],
            priority: 0,
        },
    });
    match env.comm.take_reports(c).as_slice() {
        [Report::Rejected(why)] => assert!(why.contains("\"ghost\" has no task"), "{why}"),
        other => panic!("expected a rejection, got {other:?}"),
    }

    // A key the scheduler holds is used as it is: no recomputation.
    let mut first = crate::workflows::Dag::new();
    first.add(k("held"), &[]).output(&k("held"));
    env.submit(c, &first);
    env.finish(&k("held"), 5);
    env.comm.clear();
    env.handle(Event::ClientSubmitted {
        client: c,
        submission: Submission {
            tasks: vec![
                future("held"),
                NewTask {
                    key: k("user"),
                    dependencies: vec![0],
                    order: 1,
                    spec: Some(TaskSpec::default()),
                    retries: 0,
                },
            ],
            outputs: vec![1],
            priority: 0,
        },
    });
    assert_eq!(env.comm.take_computes(w), vec![k("user")]);
    env.comm.emptiness_check();
}

#[test]
fn stale_and_foreign_messages_are_ignored() {
    let mut env = TestEnv::new();
    let w0 = env.add_worker(1);
    let w1 = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &diamond());
    let on = env.processing_on(&k("a"));
    let other = if on == w0 { w1 } else { w0 };
    env.comm.clear();
    let (a, run) = (env.id(&k("a")), env.run(&k("a")));
    // The wrong worker, an unknown worker, a wrong run, a stranger client.
    for worker in [other, WorkerId::new(99)] {
        env.handle(Event::TaskFinished {
            worker,
            task: a,
            run,
            nbytes: 1,
            duration_us: 1,
        });
        env.handle(Event::TaskErred {
            worker,
            task: a,
            run,
            message: "not yours".into(),
        });
    }
    env.handle(Event::TaskFinished {
        worker: on,
        task: a,
        run: RunId::new(run.get() + 100),
        nbytes: 1,
        duration_us: 1,
    });
    env.handle(Event::ClientReleased {
        client: ClientId::new(42),
        keys: vec![k("d")],
    });
    env.comm.emptiness_check();
    assert_eq!(env.state(&k("a")), Some(TaskState::Processing));
    assert_eq!(env.state(&k("d")), Some(TaskState::Waiting));
}

#[test]
fn a_result_of_a_cancelled_run_is_not_taken_for_the_next_run() {
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let c = env.new_client();
    let mut dag = Dag::new();
    dag.add(k("a"), &[]).add(k("b"), &[k("a")]).output(&k("b"));
    env.submit(c, &dag);
    env.finish(&k("a"), 1);
    let (a, b, first) = (env.id(&k("a")), env.id(&k("b")), env.run(&k("b")));
    env.comm.clear();
    // `a` turns out to be gone: `b` is cancelled and, once `a` is
    // recomputed, runs again on the same worker as a new run.
    env.handle(Event::DataMissing {
        worker: w,
        task: a,
        holder: w,
    });
    assert_eq!(env.comm.take_cancels(w), vec![b]);
    assert_eq!(env.comm.take_frees(w), vec![a]);
    assert_eq!(env.comm.take_computes(w), vec![k("a")]);
    env.finish(&k("a"), 1);
    assert_eq!(env.comm.take_computes(w), vec![k("b")]);
    let second = env.run(&k("b"));
    assert_ne!(first, second);
    // The report of the cancelled run arrives late: the worker dropped
    // that result on cancel, so it is not taken for the new run's.
    env.handle(Event::TaskFinished {
        worker: w,
        task: b,
        run: first,
        nbytes: 1,
        duration_us: 1,
    });
    env.comm.emptiness_check();
    assert_eq!(env.state(&k("b")), Some(TaskState::Processing));
    env.finish(&k("b"), 1);
    assert_eq!(env.comm.take_reports(c), vec![Report::InMemory(k("b"))]);
}

#[test]
fn the_story_of_a_key_names_its_transitions_and_their_stimuli() {
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let c = env.new_client();
    let submitted = env.submit(c, &diamond());
    env.finish(&k("a"), 1);
    let story = env.scheduler.story(&k("a"));
    let steps: Vec<(TaskState, TaskState)> = story.iter().map(|r| (r.from, r.to)).collect();
    assert_eq!(
        steps,
        vec![
            (TaskState::Forgotten, TaskState::Released),
            (TaskState::Released, TaskState::Waiting),
            (TaskState::Waiting, TaskState::Processing),
            (TaskState::Processing, TaskState::Memory),
        ]
    );
    assert!(story[..3].iter().all(|r| r.stimulus == submitted));
    assert_eq!(story[2].worker, Some(w));
    let text = story[3].to_string();
    assert!(text.contains("processing → memory on worker-0"), "{text}");
}

#[test]
fn prefix_durations_are_learned_from_finished_tasks() {
    let mut env = TestEnv::new();
    env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &diamond());
    env.finish(&k("a"), 1);
    let learned = env.scheduler.prefix_durations();
    assert!(learned.contains(&("a", Some(1000))), "{learned:?}");
    assert!(learned.contains(&("d", None)), "{learned:?}");
}
