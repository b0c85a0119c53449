//! The scheduler is chosen by `blockwise.toml`, then `BLOCKWISE_*`
//! environment variables, then code — checked in child processes of this
//! test binary, so the global configuration of the parent never changes.

use std::path::Path;
use std::process::Command;

use blockwise_core::config;
use blockwise_local::{Compute, Scheduler, Threads, delayed};

fn inc(x: i64) -> i64 {
    x + 1
}

/// Runs in the child: prints what configuration resolves to, and proves the
/// resolved scheduler computes.
#[test]
#[ignore = "run by the other tests in a child process"]
fn probe() {
    let _code = std::env::var("PROBE_SET_IN_CODE")
        .ok()
        .map(|s| config::set([("scheduler", s)]));
    let scheduler = Scheduler::from_config().expect("configuration resolves");
    let executor = scheduler.executor().expect("an executor");
    let workers = Threads::from_config().expect("thread count").workers();
    assert_eq!(delayed(inc).call(41).compute().expect("computes"), 42);
    println!("PROBE scheduler={} workers={workers}", executor.name());
}

fn run_probe(dir: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.args(["probe", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .current_dir(dir)
        .env_remove("BLOCKWISE_SCHEDULER")
        .env_remove("BLOCKWISE_NUM_WORKERS")
        .env_remove("BLOCKWISE_CONFIG")
        .env("HOME", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "probe failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("PROBE ").map(|(_, rest)| rest.trim().to_string()))
        .unwrap_or_else(|| panic!("no probe line in {stdout}"))
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("blockwise-config-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn default_is_threads_one_per_core() {
    let dir = temp_dir("default");
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(run_probe(&dir, &[]), format!("scheduler=threads workers={cores}"));
}

#[test]
fn file_then_environment_then_code() {
    let dir = temp_dir("layers");
    std::fs::write(dir.join("blockwise.toml"), "scheduler = \"sync\"\nnum_workers = 3\n").unwrap();
    // The file in the working directory.
    assert_eq!(run_probe(&dir, &[]), "scheduler=sync workers=3");
    // The environment over the file.
    assert_eq!(
        run_probe(
            &dir,
            &[("BLOCKWISE_SCHEDULER", "threads"), ("BLOCKWISE_NUM_WORKERS", "5")]
        ),
        "scheduler=threads workers=5"
    );
    // Code over the environment.
    assert_eq!(
        run_probe(
            &dir,
            &[("BLOCKWISE_SCHEDULER", "threads"), ("PROBE_SET_IN_CODE", "sync")]
        ),
        "scheduler=sync workers=3"
    );
    // BLOCKWISE_CONFIG names the file explicitly.
    let other = dir.join("elsewhere.toml");
    std::fs::write(&other, "scheduler = \"threads\"\nnum-workers = 2\n").unwrap();
    assert_eq!(
        run_probe(&dir, &[("BLOCKWISE_CONFIG", other.to_str().unwrap())]),
        "scheduler=threads workers=2"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_scheduler_is_a_clear_error() {
    let err = Scheduler::parse("gpu-magic").unwrap_err();
    assert!(err.to_string().contains("unknown scheduler \"gpu-magic\""), "{err}");
    let err = Scheduler::parse("tcp://127.0.0.1:8786").unwrap_err();
    assert!(err.to_string().contains("no distributed client is linked"), "{err}");
}
