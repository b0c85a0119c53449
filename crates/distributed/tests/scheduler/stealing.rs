//! Work stealing: an idle worker takes a task that has not started from a
//! backed-up one, once the victim lets it go.

use blockwise_distributed::WorkerId;
use blockwise_distributed::scheduler::{SchedulerConfig, StealOutcome, TaskState};

use crate::env::{Report, TestEnv, k, ki};
use crate::workflows::{Dag, independent};

fn no_queuing() -> SchedulerConfig {
    SchedulerConfig {
        worker_saturation: f64::INFINITY,
        ..SchedulerConfig::default()
    }
}

/// Ten roots all on `busy` (no queuing), `x0` started; then `idle` joins.
fn backlog() -> (TestEnv, WorkerId, WorkerId) {
    let mut env = TestEnv::with_config(no_queuing());
    let busy = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &independent(10));
    assert_eq!(env.comm.take_computes(busy).len(), 10);
    env.start(&ki("x", 0));
    let idle = env.add_worker(1);
    env.comm.emptiness_check();
    (env, busy, idle)
}

#[test]
fn an_idle_worker_steals_a_task_that_has_not_started() {
    let (mut env, busy, idle) = backlog();
    env.balance();
    let requests = env.comm.take_steal_requests();
    assert_eq!(requests.len(), 1, "one idle thread, one steal");
    let (victim, task, request) = requests[0];
    assert_eq!(victim, busy);
    let key = env.name(task);
    assert_ne!(key, ki("x", 0), "the started task is not stolen");
    assert_eq!(env.task(&key).stealing_to, Some(idle));
    // The least urgent task goes: the victim would have run it last.
    let urgency = |key: &blockwise_core::Key| env.task(key).priority;
    assert!(env.processing(busy).iter().all(|other| urgency(other) <= urgency(&key)));
    env.comm.emptiness_check();

    env.steal_response(busy, task, request, StealOutcome::Released);
    assert_eq!(env.comm.take_computes(idle), vec![key.clone()]);
    env.comm.emptiness_check();
    assert_eq!(env.processing_on(&key), idle);
    assert_eq!(env.scheduler.worker(busy).unwrap().processing.len(), 9);
    let story = env.scheduler.story(&key);
    assert!(
        story.iter().any(|r| r.note == "stolen" && r.worker == Some(idle)),
        "{story:?}"
    );
}

#[test]
fn a_task_that_started_meanwhile_stays_with_its_victim() {
    let (mut env, busy, idle) = backlog();
    env.balance();
    let (_, task, request) = env.comm.take_steal_requests()[0];
    env.steal_response(busy, task, request, StealOutcome::Running);
    env.comm.emptiness_check();
    let key = env.name(task);
    let view = env.task(&key);
    assert_eq!(view.processing_on, Some(busy));
    assert!(view.started);
    assert_eq!(view.stealing_to, None);
    assert!(env.processing(idle).is_empty());
}

#[test]
fn an_answer_after_the_task_finished_changes_nothing() {
    let (mut env, busy, _idle) = backlog();
    env.balance();
    let (_, task, request) = env.comm.take_steal_requests()[0];
    let key = env.name(task);
    env.finish(&key, 1);
    let c = blockwise_distributed::ClientId::new(0);
    assert_eq!(env.comm.take_reports(c), vec![Report::InMemory(key.clone())]);
    env.steal_response(busy, task, request, StealOutcome::NotHere);
    env.comm.emptiness_check();
    assert_eq!(env.state(&key), Some(TaskState::Memory));
}

#[test]
fn an_answer_to_another_request_is_ignored() {
    let (mut env, busy, _idle) = backlog();
    env.balance();
    let (_, task, request) = env.comm.take_steal_requests()[0];
    let wrong = blockwise_distributed::StimulusId::new(request.get() + 1000);
    env.steal_response(busy, task, wrong, StealOutcome::Released);
    env.comm.emptiness_check();
    assert_eq!(env.task(&env.name(task)).processing_on, Some(busy));
}

#[test]
fn if_the_thief_dies_the_released_task_is_placed_anew() {
    let (mut env, busy, idle) = backlog();
    env.balance();
    let (_, task, request) = env.comm.take_steal_requests()[0];
    env.kill(idle);
    assert_eq!(env.task(&env.name(task)).stealing_to, None);
    env.steal_response(busy, task, request, StealOutcome::Released);
    // Back on the only worker left.
    assert_eq!(env.comm.take_computes(busy), vec![env.name(task)]);
    env.comm.emptiness_check();
}

#[test]
fn a_task_whose_input_is_expensive_to_move_is_not_stolen() {
    let mut env = TestEnv::with_config(no_queuing());
    env.add_worker(1);
    let c = env.new_client();
    // `big` (1 GB) on `busy`, then three readers of it behind one thread.
    let mut dag = Dag::new();
    dag.add(k("big"), &[]);
    for i in 0..3 {
        dag.add(ki("reader", i), &[k("big")]).output(&ki("reader", i));
    }
    env.submit(c, &dag);
    env.finish(&k("big"), 1_000_000_000);
    env.comm.take_all_computes();
    env.add_worker(1);
    env.balance();
    // 10 s of transfer against a 1.5 s backlog: not worth it.
    assert!(env.comm.take_steal_requests().is_empty());
}

#[test]
fn stealing_can_be_turned_off() {
    let mut env = TestEnv::with_config(SchedulerConfig {
        work_stealing: false,
        ..no_queuing()
    });
    env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &independent(10));
    env.add_worker(1);
    env.comm.clear();
    env.balance();
    env.comm.emptiness_check();
}
