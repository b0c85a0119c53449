//! Code identity across a process boundary, proven with real processes.
//!
//! This test binary is its own worker: `main` calls `blockwise::init()` first,
//! as every blockwise program that uses other processes does. When the test
//! starts a copy of this executable with `BLOCKWISE_WORKER=tcp://…`, that copy
//! serves the plan it is sent and exits, never reaching the tests below.
//!
//! The file uses `harness = false` (a plain `main`) because libtest's `main`
//! cannot call `blockwise::init()` first. It prints one `N passed, N failed`
//! line and exits non-zero on any failure.

use std::time::Duration;

use blockwise::local::process::ChildProcess;
use blockwise::prelude::*;
use blockwise::{ErrorKind, Scheduler};

#[blockwise::task]
fn square_plus(x: i64, k: i64) -> i64 {
    x * x + k
}

#[blockwise::task]
fn total(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

#[blockwise::task]
fn describe(n: i64, label: String) -> String {
    format!("{label}={n}")
}

#[blockwise::task]
fn refuse_thirteen(x: i64) -> Result<i64, String> {
    if x == 13 {
        Err("thirteen is refused by this task".into())
    } else {
        Ok(x)
    }
}

fn child() -> ChildProcess {
    ChildProcess::current_exe()
        .expect("this test knows its own executable")
        .threads(2)
        .timeout(Duration::from_secs(60))
}

fn graph() -> Delayed<String> {
    let parts: Vec<_> = (0..50).map(|i| delayed(square_plus).call(i, 3)).collect();
    let sum = delayed(total).call(parts);
    delayed(describe).call(&sum, String::from("sum"))
}

fn same_result_locally_and_in_a_child_process() -> Result<(), String> {
    let local = graph().compute_with(Scheduler::Sync).map_err(|e| e.to_string())?;
    let expected = format!("sum={}", (0..50i64).map(|i| i * i + 3).sum::<i64>());
    if local != expected {
        return Err(format!("local result {local:?}, expected {expected:?}"));
    }
    let exec: std::sync::Arc<dyn blockwise::core::Executor> = std::sync::Arc::new(child());
    let remote = graph()
        .compute_with(Scheduler::Executor(exec))
        .map_err(|e| e.to_string())?;
    if remote != local {
        return Err(format!("child process gave {remote:?}, this process {local:?}"));
    }
    Ok(())
}

fn plan_roundtrips_through_bytes() -> Result<(), String> {
    let g = graph();
    let plan =
        blockwise::core::Plan::build(&g.graph(), &g.output_keys(), &Default::default()).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    plan.encode(&mut bytes).map_err(|e| e.to_string())?;
    let back = blockwise::core::Plan::decode(&bytes).map_err(|e| e.to_string())?;
    if !back.keys().eq(plan.keys()) {
        return Err("decoded plan has other keys".into());
    }
    let values = blockwise::local::engine::run(&back, 2, &[]).map_err(|e| e.to_string())?;
    let got = values[0].downcast_ref::<String>().cloned().unwrap_or_default();
    let want = g.compute_with(Scheduler::Sync).map_err(|e| e.to_string())?;
    if got != want {
        return Err(format!("decoded plan computed {got:?}, expected {want:?}"));
    }
    Ok(())
}

fn a_different_executable_is_refused() -> Result<(), String> {
    // A copy of this binary with one byte appended: it still runs (the
    // loader ignores trailing bytes) but it is not the same build.
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("blockwise-worker-mode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let other = dir.join("other-build");
    let mut bytes = std::fs::read(&me).map_err(|e| e.to_string())?;
    bytes.extend_from_slice(b"\0another build");
    std::fs::write(&other, bytes).map_err(|e| e.to_string())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    let exec = ChildProcess::program(&other).timeout(Duration::from_secs(60));
    let result = exec.run_plan(
        &blockwise::core::Plan::build(&graph().graph(), &graph().output_keys(), &Default::default())
            .map_err(|e| e.to_string())?,
    );
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(v) => Err(format!("a different build was accepted and returned {v:?}")),
        Err(e) if *e.kind() == ErrorKind::BuildMismatch && e.to_string().contains("runs a different executable") => {
            Ok(())
        }
        Err(e) => Err(format!("expected a build mismatch, got: {e}")),
    }
}

fn unregistered_closure_is_a_clear_error() -> Result<(), String> {
    let k = 7i64;
    let bumped = delayed(move |x: i64| x + k).call(1);
    let exec: std::sync::Arc<dyn blockwise::core::Executor> = std::sync::Arc::new(child());
    match bumped.compute_with(Scheduler::Executor(exec)) {
        Ok(v) => Err(format!("a closure was sent to another process and returned {v}")),
        Err(e) if *e.kind() == ErrorKind::NotRegistered && e.to_string().contains("#[blockwise::task]") => {
            // ...while the same closure works on the local executors.
            match bumped.compute_with(Scheduler::Threads(Some(2))) {
                Ok(8) => Ok(()),
                other => Err(format!("closure on the threaded executor gave {other:?}")),
            }
        }
        Err(e) => Err(format!("expected a not-registered error, got: {e}")),
    }
}

fn task_error_in_child_names_the_key() -> Result<(), String> {
    let xs: Vec<_> = (10..16).map(|i| delayed(refuse_thirteen).call(i)).collect();
    let bad = xs[3].key().clone();
    let s = delayed(total).call(xs);
    let exec: std::sync::Arc<dyn blockwise::core::Executor> = std::sync::Arc::new(child());
    match s.compute_with(Scheduler::Executor(exec)) {
        Ok(v) => Err(format!("expected a failure, got {v}")),
        Err(e) if e.failed_key() == Some(&bad) && e.to_string().contains("thirteen is refused") => Ok(()),
        Err(e) => Err(format!("expected task {bad} to fail, got: {e}")),
    }
}

/// The facade's cluster path: `blockwise::init()` makes worker copies of
/// this binary serve a `LocalCluster`, and the cluster's address works as a
/// scheduler setting, as `BLOCKWISE_SCHEDULER=tcp://…` would.
fn same_result_on_a_local_cluster() -> Result<(), String> {
    use blockwise::distributed::LocalCluster;
    let cluster = LocalCluster::new(2, 1).map_err(|e| e.to_string())?;
    let client = cluster.client().map_err(|e| e.to_string())?;
    let local = graph().compute_with(Scheduler::Sync).map_err(|e| e.to_string())?;
    let on_cluster = graph()
        .compute_with(Scheduler::Executor(client.executor()))
        .map_err(|e| e.to_string())?;
    if on_cluster != local {
        return Err(format!("the cluster gave {on_cluster:?}, this process {local:?}"));
    }
    let by_address = Scheduler::parse(cluster.address()).map_err(|e| e.to_string())?;
    let again = graph().compute_with(by_address).map_err(|e| e.to_string())?;
    if again != local {
        return Err(format!("the cluster by address gave {again:?}, this process {local:?}"));
    }
    Ok(())
}

/// One check of this file: `Err` says what went wrong.
type Check = fn() -> Result<(), String>;

fn main() {
    blockwise::init();
    let tests: &[(&str, Check)] = &[
        (
            "same_result_locally_and_in_a_child_process",
            same_result_locally_and_in_a_child_process,
        ),
        ("plan_roundtrips_through_bytes", plan_roundtrips_through_bytes),
        ("a_different_executable_is_refused", a_different_executable_is_refused),
        (
            "unregistered_closure_is_a_clear_error",
            unregistered_closure_is_a_clear_error,
        ),
        ("task_error_in_child_names_the_key", task_error_in_child_names_the_key),
        ("same_result_on_a_local_cluster", same_result_on_a_local_cluster),
    ];
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        match test() {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(why) => {
                println!("test {name} ... FAILED\n  {why}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
