//! Root-task queuing: root-ish tasks beyond `ceil(threads × 1.1)` per worker
//! wait on the scheduler, most urgent first.

use blockwise_distributed::scheduler::SchedulerConfig;

use crate::env::{Report, TestEnv, ki};
use crate::workflows::{Dag, independent, map_reduce, tree_reduction};

#[test]
fn root_tasks_beyond_the_slots_are_queued_in_priority_order() {
    let mut env = TestEnv::new();
    let w0 = env.add_worker(2);
    let w1 = env.add_worker(2);
    let c = env.new_client();
    let dag = independent(20);
    env.submit(c, &dag);
    // ceil(2 × 1.1) = 3 slots per worker.
    assert_eq!(env.comm.take_computes(w0).len(), 3);
    assert_eq!(env.comm.take_computes(w1).len(), 3);
    env.comm.emptiness_check();
    let queued = env.queued();
    assert_eq!(queued.len(), 14);
    let order = dag.order();
    let rank = |key: &blockwise_core::Key| order[dag.keys().iter().position(|k| k == key).unwrap()];
    assert!(
        queued.windows(2).all(|w| rank(&w[0]) < rank(&w[1])),
        "queue in order: {queued:?}"
    );
    // A slot opens: the most urgent queued task takes it, on that worker.
    let running = env.processing(w0)[0].clone();
    env.finish(&running, 1);
    assert_eq!(env.comm.take_reports(c), vec![Report::InMemory(running)]);
    assert_eq!(env.comm.take_computes(w0), vec![queued[0].clone()]);
    env.comm.emptiness_check();
    assert_eq!(env.queued(), queued[1..].to_vec());
}

#[test]
fn dependents_run_before_new_roots_leave_the_queue() {
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &map_reduce(10));
    let first = env.comm.take_computes(w);
    assert_eq!(first.len(), 2, "two slots for one thread: {first:?}");
    assert!(first.iter().all(|key| key.name.as_str() == "x"));
    // x finishes: its y takes the free slot; no new root leaves the queue.
    let (x0, x1) = (first[0].clone(), first[1].clone());
    env.finish(&x0, 1);
    let y0 = ki("y", x0.index[0]);
    assert_eq!(env.comm.take_computes(w), vec![y0.clone()]);
    env.comm.emptiness_check();
    env.finish(&x1, 1);
    let y1 = ki("y", x1.index[0]);
    assert_eq!(env.comm.take_computes(w), vec![y1.clone()]);
    // y0 done: the slot goes back to the queue.
    env.finish(&y0, 1);
    let next = env.comm.take_computes(w);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].name.as_str(), "x");
    assert_eq!(env.freed(w), vec![x0]);
    env.comm.emptiness_check();
}

#[test]
fn a_tree_reduction_never_holds_more_than_the_slots_of_roots() {
    // Dask's rule alone: without the queue window, 1 ms tasks on two
    // threads would be given ten at a time.
    let mut env = TestEnv::with_config(SchedulerConfig {
        worker_queue_window_us: 0,
        ..SchedulerConfig::default()
    });
    let w = env.add_worker(2);
    let c = env.new_client();
    let dag = tree_reduction(32, 4);
    env.submit(c, &dag);
    let mut done = 0;
    loop {
        let computes = env.comm.take_computes(w);
        env.comm.take_frees(w);
        let processing = env.processing(w);
        let roots = processing.iter().filter(|key| key.name.as_str() == "x").count();
        assert!(roots <= 3, "{roots} roots on a 2-thread worker: {processing:?}");
        let _ = computes;
        let Some(next) = processing.first().cloned() else {
            break;
        };
        env.finish(&next, 1);
        done += 1;
    }
    assert_eq!(done, dag.len());
    assert_eq!(
        env.comm.take_reports(c),
        vec![Report::InMemory(dag.output_keys()[0].clone())]
    );
}

#[test]
fn tiny_root_tasks_fill_the_queue_window_and_the_tree_still_completes() {
    // 10 µs tasks, a 5 ms window: once the prefix's duration is learned, a
    // one-thread worker holds up to 500 roots (not 2), and a reduction
    // still finishes with every task run once.
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let c = env.new_client();
    let dag = tree_reduction(2000, 10);
    env.submit(c, &dag);
    let mut done = 0;
    let mut most_roots = 0;
    loop {
        env.comm.take_computes(w);
        env.comm.take_frees(w);
        let processing = env.processing(w);
        let roots = processing.iter().filter(|key| key.name.as_str() == "x").count();
        most_roots = most_roots.max(roots);
        assert!(roots <= 500, "{roots} roots of 10 µs in a 5 ms window");
        let Some(next) = processing.first().cloned() else {
            break;
        };
        env.finish_taking(&next, 1, 10);
        done += 1;
    }
    assert_eq!(done, dag.len());
    assert!(
        most_roots > 100,
        "only {most_roots} roots at once: the window was not used"
    );
    assert_eq!(
        env.comm.take_reports(c),
        vec![Report::InMemory(dag.output_keys()[0].clone())]
    );
}

#[test]
fn infinite_saturation_sends_every_root_at_once() {
    let mut env = TestEnv::with_config(SchedulerConfig {
        worker_saturation: f64::INFINITY,
        ..SchedulerConfig::default()
    });
    let w = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &independent(20));
    assert_eq!(env.comm.take_computes(w).len(), 20);
    assert!(env.queued().is_empty());
}

#[test]
fn small_groups_are_not_root_ish_and_not_queued() {
    let mut env = TestEnv::new();
    let w = env.add_worker(4);
    let c = env.new_client();
    env.submit(c, &independent(8)); // 8 is not more than 2 × 4 threads
    assert_eq!(env.comm.take_computes(w).len(), 8);
    assert!(env.queued().is_empty());
}

#[test]
fn a_joining_worker_takes_from_the_queue() {
    let mut env = TestEnv::new();
    let w0 = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &independent(12));
    assert_eq!(env.comm.take_computes(w0).len(), 2);
    let queued = env.queued();
    assert_eq!(queued.len(), 10);
    let w1 = env.add_worker(2);
    assert_eq!(env.comm.take_computes(w1), queued[..3].to_vec());
    env.comm.emptiness_check();
}

#[test]
fn queued_tasks_of_a_group_that_stops_being_root_ish_are_placed() {
    let mut env = TestEnv::new();
    let w0 = env.add_worker(1);
    let c = env.new_client();
    env.submit(c, &independent(5)); // 5 > 2 × 1: root-ish
    assert_eq!(env.comm.take_computes(w0).len(), 2);
    assert_eq!(env.queued().len(), 3);
    // 5 threads now: 5 is not more than 10, the group is not root-ish, and
    // its queued tasks are placed by the ordinary objective.
    let w1 = env.add_worker(4);
    let sent = env.comm.take_all_computes();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|(w, _)| *w == w1), "{sent:?}");
    assert!(env.queued().is_empty());
}

#[test]
fn an_earlier_submission_goes_first_and_a_higher_user_priority_jumps_the_queue() {
    let mut env = TestEnv::new();
    let w = env.add_worker(1);
    let c = env.new_client();
    let group = |name: &str, priority: i32| {
        let mut dag = Dag::new();
        for i in 0..6 {
            dag.add(ki(name, i), &[]).output(&ki(name, i));
        }
        dag.priority(priority);
        dag
    };
    env.submit(c, &group("early", 0));
    env.submit(c, &group("late", 0));
    env.submit(c, &group("urgent", 5));
    env.comm.take_computes(w);
    let queued = env.queued();
    let names: Vec<&str> = queued.iter().map(|k| k.name.as_str()).collect();
    // Two `early` tasks hold the worker's slots; the rest wait: the urgent
    // submission first, then by submission.
    let mut expected = vec!["urgent"; 6];
    expected.extend(["early"; 4]);
    expected.extend(["late"; 6]);
    assert_eq!(names, expected);
}
