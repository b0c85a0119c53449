//! Bag tasks cross a process boundary as data: a child process of this same
//! executable rebuilds every op (JSON-lines and text sources, `filter`/`map`
//! steps by `#[blockwise::task]` functions, tree reductions) from its
//! registries and computes what this process computes. A closure is refused
//! with an error naming it and the fix, and still runs locally.
//!
//! `harness = false`: `main` must first turn the process into a worker when
//! it was started as one. Prints one `N passed, N failed` line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use blockwise_bag::{ReadOptions, from_sequence, read_json_lines, read_json_lines_with, read_text, read_text_with};
use blockwise_core::ErrorKind;
use blockwise_local::process::ChildProcess;
use blockwise_local::{Compute, Scheduler};
use serde::{Deserialize, Serialize};

mod common;
use common::{Account, NAMES, count_of, expected_top, name_of, positive, write_accounts};

/// A record type nobody registered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Unlisted {
    name: String,
}

#[allow(clippy::ptr_arg, reason = "a filter of a `Bag<String>` takes `&String`")]
#[blockwise_macros::task(crate = crate::common::shim)]
fn mentions_alice(line: &String) -> bool {
    line.contains("Alice")
}

#[blockwise_macros::task(crate = crate::common::shim)]
fn tens(x: u64) -> u64 {
    x / 10
}

#[blockwise_macros::task(crate = crate::common::shim)]
fn unlisted(account: Account) -> Unlisted {
    Unlisted { name: account.name }
}

#[blockwise_macros::task(crate = crate::common::shim)]
fn words(line: String) -> Vec<String> {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[blockwise_macros::task(crate = crate::common::shim)]
fn debt(account: Account) -> Option<i64> {
    (account.amount < 0).then_some(-account.amount)
}

#[blockwise_macros::task(crate = crate::common::shim)]
fn minus_one(count: &(String, usize)) -> usize {
    count.1.wrapping_sub(1)
}

/// The accounts, and a directory of JSON-lines files holding them (three
/// files, one of them gzip).
fn accounts() -> (Vec<Account>, PathBuf) {
    let accounts = common::accounts(3000, (5, 7, 11, 201));
    let dir = write_accounts("blockwise-bag-worker", &accounts, &[2]);
    (accounts, dir)
}

fn child() -> Scheduler {
    let exec = ChildProcess::current_exe()
        .expect("own executable")
        .threads(2)
        .timeout(Duration::from_secs(60));
    Scheduler::Executor(Arc::new(exec))
}

/// Small blocks: many partitions, so the reductions have combine levels.
fn small_blocks() -> ReadOptions {
    ReadOptions::new().blocksize(4096)
}

fn json_pipeline_runs_in_a_child() -> Result<(), String> {
    let (accounts, dir) = accounts();
    let pattern = dir.join("accounts.*.json*");
    let top = read_json_lines_with::<Account>(pattern.to_str().unwrap(), &small_blocks())
        .map_err(|e| e.to_string())?
        .split_every(3)
        .filter(positive)
        .map(name_of)
        .frequencies()
        .topk(3, count_of);
    let local = top.compute_with(Scheduler::Sync).map_err(|e| format!("locally: {e}"))?;
    let remote = top.compute_with(child()).map_err(|e| format!("in a child: {e}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    let expected = expected_top(&accounts, 3);
    if local != expected {
        return Err(format!("locally {local:?}, sequentially {expected:?}"));
    }
    if remote != local {
        return Err(format!("child gave {remote:?}, this process {local:?}"));
    }
    Ok(())
}

fn counts_and_distinct_run_in_a_child() -> Result<(), String> {
    let (accounts, dir) = accounts();
    let pattern = dir.join("accounts.*.json*");
    let bag = read_json_lines::<Account>(pattern.to_str().unwrap()).map_err(|e| e.to_string())?;
    let remote = bag
        .remove(positive)
        .count()
        .compute_with(child())
        .map_err(|e| e.to_string())?;
    let expected = accounts.iter().filter(|a| a.amount <= 0).count();
    if remote != expected {
        return Err(format!(
            "count of non-positive accounts: child {remote}, expected {expected}"
        ));
    }

    let lines = read_text(pattern.to_str().unwrap()).map_err(|e| e.to_string())?;
    let long = lines.filter(mentions_alice).count();
    let (local, remote) = (
        long.compute_with(Scheduler::Sync).map_err(|e| e.to_string())?,
        long.compute_with(child()).map_err(|e| e.to_string())?,
    );
    let _ = std::fs::remove_dir_all(&dir);
    if local != remote || local == 0 {
        return Err(format!("lines mentioning Alice: child {remote}, this process {local}"));
    }

    let distinct = from_sequence(0..500u64, 9).split_every(2).map(tens).distinct();
    let remote = distinct.compute_with(child()).map_err(|e| e.to_string())?;
    if remote != (0..50).collect::<Vec<u64>>() {
        return Err(format!("distinct tens: child gave {remote:?}"));
    }
    let bottom = blockwise_bag::range(100, 7)
        .map(tens)
        .frequencies()
        .map(|(t, n)| (t, n))
        .count();
    match bottom.compute_with(child()) {
        Err(e) if *e.kind() == ErrorKind::NotRegistered => Ok(()),
        other => Err(format!("a closure after frequencies must be refused, got {other:?}")),
    }
}

fn unregistered_closure_is_refused_with_the_fix() -> Result<(), String> {
    let (accounts, dir) = accounts();
    let pattern = dir.join("accounts.*.json*");
    let threshold = 0i64;
    let top = read_json_lines::<Account>(pattern.to_str().unwrap())
        .map_err(|e| e.to_string())?
        .filter(move |a| a.amount > threshold)
        .map(name_of)
        .frequencies()
        .topk(3, count_of);
    let result = top.compute_with(child());
    // ...while the same pipeline runs on the local executors.
    let local = top.compute_with(Scheduler::Threads(Some(2))).map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(v) => return Err(format!("a closure was sent to another process and returned {v:?}")),
        Err(e) => {
            let message = e.to_string();
            let named = message.contains("unregistered_closure_is_refused_with_the_fix::{{closure}}");
            if std::env::var_os("SHOW_ERRORS").is_some() {
                eprintln!("{message}");
            }
            if *e.kind() != ErrorKind::NotRegistered || !named || !message.contains("#[blockwise::task]") {
                return Err(format!(
                    "expected an error naming the closure and the fix, got: {message}"
                ));
            }
        }
    }
    if local? != expected_top(&accounts, 3) {
        return Err("the closure pipeline computed another result locally".into());
    }
    Ok(())
}

fn unregistered_record_type_names_register_element() -> Result<(), String> {
    let (_, dir) = accounts();
    let pattern = dir.join("accounts.*.json*");
    let bag = read_json_lines::<Account>(pattern.to_str().unwrap())
        .map_err(|e| e.to_string())?
        .map(unlisted);
    let result = bag.compute_with(child());
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Err(e) if *e.kind() == ErrorKind::NotRegistered && e.to_string().contains("register_element!(Unlisted)") => {
            Ok(())
        }
        other => Err(format!("expected an error naming register_element!, got {other:?}")),
    }
}

fn word_count_and_filter_map_run_in_a_child() -> Result<(), String> {
    let (accounts, dir) = accounts();
    let pattern = dir.join("accounts.*.json*");
    let lines = read_text_with(pattern.to_str().unwrap(), &small_blocks()).map_err(|e| e.to_string())?;
    let top = lines.flat_map(words).frequencies().bottomk(4, minus_one);
    let debts = read_json_lines::<Account>(pattern.to_str().unwrap())
        .map_err(|e| e.to_string())?
        .filter_map(debt)
        .distinct()
        .count();
    let local = (
        top.compute_with(Scheduler::Sync).map_err(|e| e.to_string())?,
        debts.compute_with(Scheduler::Sync).map_err(|e| e.to_string())?,
    );
    let remote = (
        top.compute_with(child())
            .map_err(|e| format!("word count in a child: {e}")),
        debts
            .compute_with(child())
            .map_err(|e| format!("debts in a child: {e}")),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let remote = (remote.0?, remote.1?);
    let mut distinct_debts: Vec<i64> = accounts.iter().filter(|a| a.amount < 0).map(|a| -a.amount).collect();
    distinct_debts.sort_unstable();
    distinct_debts.dedup();
    if local.1 != distinct_debts.len() || local.0.len() != 4 {
        return Err(format!(
            "locally {local:?}, expected {} distinct debts",
            distinct_debts.len()
        ));
    }
    if remote != local {
        return Err(format!("child gave {remote:?}, this process {local:?}"));
    }
    Ok(())
}

fn step_without_description_is_named() -> Result<(), String> {
    let bag = from_sequence(NAMES.iter().map(|s| s.to_string()), 3)
        .random_sample(0.5, 7)
        .map_err(|e| e.to_string())?;
    match bag.count().compute_with(child()) {
        Err(e) if *e.kind() == ErrorKind::NotRegistered && e.to_string().contains("random-sample") => Ok(()),
        other => Err(format!("expected random_sample to be refused by name, got {other:?}")),
    }
}

fn main() {
    blockwise_local::process::serve_if_worker();
    let checks: [common::Check<()>; 6] = [
        ("json_pipeline_runs_in_a_child", |_| json_pipeline_runs_in_a_child()),
        ("counts_and_distinct_run_in_a_child", |_| {
            counts_and_distinct_run_in_a_child()
        }),
        ("unregistered_closure_is_refused_with_the_fix", |_| {
            unregistered_closure_is_refused_with_the_fix()
        }),
        ("unregistered_record_type_names_register_element", |_| {
            unregistered_record_type_names_register_element()
        }),
        ("word_count_and_filter_map_run_in_a_child", |_| {
            word_count_and_filter_map_run_in_a_child()
        }),
        ("step_without_description_is_named", |_| {
            step_without_description_is_named()
        }),
    ];
    if !common::run_checks(&(), &checks) {
        std::process::exit(1);
    }
}
