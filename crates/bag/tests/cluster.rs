//! The bag pipeline on a real cluster: a scheduler in this process
//! and two worker processes of this same executable (a `LocalCluster`), so
//! partitions and partial results also move between workers. The pipeline
//! with `#[blockwise::task]` functions gives the local result; the same
//! pipeline with a closure is refused, naming the closure and the fix.
//!
//! `harness = false`: `main` first turns the process into a worker when the
//! cluster started it as one. Prints one `N passed, N failed` line.
//!
//! Run: `cargo test -p blockwise-bag --test cluster`

use std::path::PathBuf;

use blockwise_bag::{ReadOptions, read_json_lines_with, register_element};
use blockwise_core::ErrorKind;
use blockwise_distributed::LocalCluster;
use blockwise_local::{Compute, Scheduler};
use serde::{Deserialize, Serialize};

/// What `#[task(crate = …)]` reaches generated code through (this crate
/// cannot depend on the facade, which depends on it).
#[allow(
    clippy::single_component_path_imports,
    reason = "the re-export is the point: generated code reaches it as `crate::shim::blockwise_core`"
)]
mod shim {
    pub(crate) use blockwise_core;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Account {
    id: u64,
    name: String,
    amount: i64,
}

register_element!(Account);

#[blockwise_macros::task(crate = crate::shim)]
fn positive(account: &Account) -> bool {
    account.amount > 0
}

#[blockwise_macros::task(crate = crate::shim)]
fn name_of(account: Account) -> String {
    account.name
}

#[blockwise_macros::task(crate = crate::shim)]
fn count_of(pair: &(String, usize)) -> usize {
    pair.1
}

const NAMES: [&str; 7] = ["Alice", "Bob", "Charlie", "Dan", "Edith", "Frank", "Gert"];

/// Accounts in four JSON-lines files, in a fresh directory.
fn accounts(tag: &str) -> (Vec<Account>, PathBuf) {
    let accounts: Vec<Account> = (0..4000u64)
        .map(|i| Account {
            id: i,
            name: NAMES[((i * 3 + i / 5 + i * i / 13) % 7) as usize].to_string(),
            amount: ((i * 7919) % 301) as i64 - 120,
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("blockwise-bag-cluster-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (k, chunk) in accounts.chunks(1000).enumerate() {
        let text: String = chunk.iter().map(|a| serde_json::to_string(a).unwrap() + "\n").collect();
        std::fs::write(dir.join(format!("accounts.{k}.json")), text).unwrap();
    }
    (accounts, dir)
}

/// Frequencies in first-appearance order, then the `k` largest counts,
/// earlier first among equal counts: the pipeline run sequentially.
fn expected_top(accounts: &[Account], k: usize) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for a in accounts.iter().filter(|a| a.amount > 0) {
        match counts.iter_mut().find(|(n, _)| *n == a.name) {
            Some((_, c)) => *c += 1,
            None => counts.push((a.name.clone(), 1)),
        }
    }
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    counts.truncate(k);
    counts
}

fn registered_pipeline_runs_on_the_cluster(cluster: &LocalCluster) -> Result<(), String> {
    let (accounts, dir) = accounts("registered");
    let pattern = dir.join("accounts.*.json");
    let top = read_json_lines_with::<Account>(pattern.to_str().unwrap(), &ReadOptions::new().blocksize(8192))
        .map_err(|e| e.to_string())?
        .split_every(3)
        .filter(positive)
        .map(name_of)
        .frequencies()
        .topk(3, count_of);
    let local = top.compute_with(Scheduler::Sync).map_err(|e| format!("locally: {e}"))?;
    let client = cluster.client().map_err(|e| e.to_string())?;
    let remote = top
        .compute_with(Scheduler::Executor(client.executor()))
        .map_err(|e| format!("on the cluster: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let remote = remote?;
    let expected = expected_top(&accounts, 3);
    if local != expected {
        return Err(format!("locally {local:?}, sequentially {expected:?}"));
    }
    if remote != local {
        return Err(format!("the cluster gave {remote:?}, this process {local:?}"));
    }
    Ok(())
}

fn closure_is_refused_naming_it_and_the_fix(cluster: &LocalCluster) -> Result<(), String> {
    let (_, dir) = accounts("closure");
    let pattern = dir.join("accounts.*.json");
    let top = read_json_lines_with::<Account>(pattern.to_str().unwrap(), &ReadOptions::new())
        .map_err(|e| e.to_string())?
        .filter(|a| a.amount > 0)
        .map(name_of)
        .frequencies()
        .topk(3, count_of);
    let client = cluster.client().map_err(|e| e.to_string())?;
    let result = top.compute_with(Scheduler::Executor(client.executor()));
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(v) => Err(format!("a closure ran on the cluster and gave {v:?}")),
        Err(e) => {
            let message = e.to_string();
            if *e.kind() == ErrorKind::NotRegistered
                && message.contains("closure_is_refused_naming_it_and_the_fix::{{closure}}")
                && message.contains("#[blockwise::task]")
            {
                Ok(())
            } else {
                Err(format!(
                    "expected an error naming the closure and the fix, got: {message}"
                ))
            }
        }
    }
}

type Check = fn(&LocalCluster) -> Result<(), String>;

fn main() {
    blockwise_distributed::serve_if_worker();
    let cluster = match LocalCluster::new(2, 2) {
        Ok(cluster) => cluster,
        Err(e) => {
            println!("cannot start a local cluster: {e}");
            std::process::exit(1);
        }
    };
    let tests: [(&str, Check); 2] = [
        (
            "registered_pipeline_runs_on_the_cluster",
            registered_pipeline_runs_on_the_cluster,
        ),
        (
            "closure_is_refused_naming_it_and_the_fix",
            closure_is_refused_naming_it_and_the_fix,
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        match test(&cluster) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(e) => {
                println!("test {name} ... FAILED\n{e}");
                failed += 1;
            }
        }
    }
    drop(cluster);
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
