//! Clients: what they want is computed and kept; what they release is
//! freed and forgotten.

use blockwise_distributed::scheduler::{Event, TaskState};

use crate::env::{Report, TestEnv, k, ki};
use crate::workflows::{Dag, diamond, independent};

#[test]
fn releasing_while_processing_cancels_and_forgets() {
    let mut env = TestEnv::new();
    let w = env.add_worker(2);
    let c = env.new_client();
    env.submit(c, &diamond());
    env.finish(&k("a"), 1);
    env.comm.take_computes(w);
    env.release(c, &[k("d")]);
    let mut cancelled = env.cancelled(w);
    cancelled.sort();
    assert_eq!(cancelled, vec![k("b"), k("c")]);
    assert_eq!(env.freed(w), vec![k("a")]);
    env.comm.emptiness_check();
    assert_eq!(env.scheduler.task_count(), 0);
}

#[test]
fn a_disconnected_client_has_all_its_work_released() {
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &independent(3));
    env.finish(&ki("x", 0), 1);
    env.comm.clear();
    env.handle(Event::ClientDisconnected { client: c });
    assert_eq!(env.freed(w), vec![ki("x", 0)]);
    assert_eq!(env.cancelled(w), vec![ki("x", 1), ki("x", 2)]);
    env.comm.emptiness_check();
    assert_eq!(env.scheduler.task_count(), 0);
}

#[test]
fn a_key_shared_by_two_clients_lives_until_both_release_it() {
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let (c1, c2) = (env.new_client(), env.new_client());
    env.submit(c1, &diamond());
    for key in ["a", "b", "c", "d"] {
        env.finish(&k(key), 1);
    }
    assert_eq!(env.comm.take_reports(c1), vec![Report::InMemory(k("d"))]);
    env.comm.clear();
    // The second client gets the result at once: nothing is recomputed.
    env.submit(c2, &diamond());
    assert_eq!(env.comm.take_reports(c2), vec![Report::InMemory(k("d"))]);
    env.comm.emptiness_check();
    env.release(c1, &[k("d")]);
    env.comm.emptiness_check();
    assert_eq!(env.state(&k("d")), Some(TaskState::Memory));
    assert_eq!(env.scheduler.wanted_by(c2), vec![k("d")]);
    env.release(c2, &[k("d")]);
    assert_eq!(env.freed(w), vec![k("d")]);
    assert_eq!(env.scheduler.task_count(), 0);
}

#[test]
fn a_persisted_input_is_read_by_a_later_graph_without_recomputation() {
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let c = env.new_client();
    let mut first = Dag::new();
    first.add(k("data"), &[]).output(&k("data"));
    env.submit(c, &first);
    env.finish(&k("data"), 1000);
    env.comm.clear();
    let mut second = Dag::new();
    second
        .add(k("data"), &[])
        .add(k("stats"), &[k("data")])
        .output(&k("stats"));
    env.submit(c, &second);
    assert_eq!(env.comm.take_computes(w), vec![k("stats")]);
    env.finish(&k("stats"), 1);
    assert_eq!(env.comm.take_reports(c), vec![Report::InMemory(k("stats"))]);
    env.comm.emptiness_check(); // `data` is still wanted: not freed
    env.release(c, &[k("data")]);
    // Freed, but kept (result-less) while `stats` may need it recomputed.
    assert_eq!(env.freed(w), vec![k("data")]);
    env.comm.emptiness_check();
    assert_eq!(env.state(&k("data")), Some(TaskState::Released));
}

#[test]
fn releasing_part_of_a_graph_keeps_what_the_rest_needs() {
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let c = env.new_client();
    let mut dag = Dag::new();
    dag.add(k("a"), &[])
        .add(k("b"), &[k("a")])
        .add(k("c"), &[k("a")])
        .output(&k("b"))
        .output(&k("c"));
    env.submit(c, &dag);
    env.finish(&k("a"), 1);
    env.comm.take_computes(w);
    env.release(c, &[k("b")]);
    assert_eq!(env.cancelled(w), vec![k("b")]);
    env.comm.emptiness_check();
    assert_eq!(env.state(&k("a")), Some(TaskState::Memory), "`c` still reads `a`");
    assert_eq!(env.state(&k("b")), None);
    env.finish(&k("c"), 1);
    assert_eq!(env.comm.take_reports(c), vec![Report::InMemory(k("c"))]);
    assert_eq!(env.freed(w), vec![k("a")]);
}
