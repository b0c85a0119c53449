//! A bag pipeline written as a user writes it — `#[blockwise::task]`
//! functions, `blockwise::bag::register_element!` — travels as bytes: its
//! plan encodes, decodes through the registries (what a worker does), and
//! the decoded plan computes the local result. A closure in the same
//! pipeline is refused at encoding, naming it and the fix.
//!
//! (The same pipeline runs in real child processes and on a `LocalCluster`
//! in blockwise-bag's `worker_process` and `cluster` tests.)
#![cfg(feature = "bag")]

use blockwise::core::{Plan, PlanOptions};
use blockwise::prelude::*;
use blockwise::{ErrorKind, Scheduler};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Reading {
    station: String,
    celsius: i64,
}

blockwise::bag::register_element!(Reading);

#[blockwise::task]
fn warm(reading: &Reading) -> bool {
    reading.celsius >= 20
}

#[blockwise::task]
fn station(reading: Reading) -> String {
    reading.station
}

#[blockwise::task]
fn count_of(pair: &(String, usize)) -> usize {
    pair.1
}

fn readings() -> Vec<Reading> {
    (0..400i64)
        .map(|i| Reading {
            station: ["north", "south", "east", "west", "harbour"][((i * 7 + i / 3) % 5) as usize].to_string(),
            celsius: (i * 13) % 41 - 5,
        })
        .collect()
}

/// Encodes the plan of `c`, decodes it, runs the decoded plan and finishes
/// the result as `c` would.
fn through_bytes<C: Collection>(c: &C) -> blockwise::Result<C::Output> {
    let plan = Plan::build(&c.graph(), &c.output_keys(), &PlanOptions::default())?;
    let mut bytes = Vec::new();
    plan.encode(&mut bytes)?;
    let back = Plan::decode(&bytes)?;
    let values = blockwise::local::engine::run(&back, 2, &[])?;
    c.finalize(values)
}

#[test]
fn registered_pipeline_decodes_and_computes_the_local_result() {
    let top = blockwise::bag::from_sequence(readings(), 7)
        .split_every(2)
        .filter(warm)
        .map(station)
        .frequencies()
        .topk(3, count_of);
    let local = top.compute_with(Scheduler::Sync).unwrap();
    assert_eq!(local.len(), 3);
    assert_eq!(through_bytes(&top).unwrap(), local);
}

#[test]
fn closure_in_the_pipeline_is_refused_with_its_name_and_the_fix() {
    let limit = 20i64;
    let top = blockwise::bag::from_sequence(readings(), 7)
        .filter(move |r: &Reading| r.celsius >= limit)
        .map(station)
        .frequencies()
        .topk(3, count_of);
    let err = through_bytes(&top).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NotRegistered);
    let message = err.to_string();
    assert!(
        message.contains("closure_in_the_pipeline_is_refused_with_its_name_and_the_fix::{{closure}}"),
        "{message}"
    );
    assert!(message.contains("#[blockwise::task]"), "{message}");
    // The same pipeline runs on the local executors.
    assert_eq!(top.compute().unwrap().len(), 3);
}
