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

use blockwise_bag::{ReadOptions, read_json_lines_with};
use blockwise_core::ErrorKind;
use blockwise_distributed::LocalCluster;
use blockwise_local::{Compute, Scheduler};

mod common;
use common::{Account, count_of, expected_top, name_of, positive, write_accounts};

/// Accounts in four JSON-lines files, in a fresh directory.
fn accounts(tag: &str) -> (Vec<Account>, PathBuf) {
    let accounts = common::accounts(4000, (3, 5, 13, 301));
    let dir = write_accounts(&format!("blockwise-bag-cluster-{tag}"), &accounts, &[]);
    (accounts, dir)
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

fn main() {
    blockwise_distributed::serve_if_worker();
    let cluster = match LocalCluster::new(2, 2) {
        Ok(cluster) => cluster,
        Err(e) => {
            println!("cannot start a local cluster: {e}");
            std::process::exit(1);
        }
    };
    let checks: [common::Check<LocalCluster>; 2] = [
        (
            "registered_pipeline_runs_on_the_cluster",
            registered_pipeline_runs_on_the_cluster,
        ),
        (
            "closure_is_refused_naming_it_and_the_fix",
            closure_is_refused_naming_it_and_the_fix,
        ),
    ];
    let passed = common::run_checks(&cluster, &checks);
    drop(cluster);
    if !passed {
        std::process::exit(1);
    }
}
