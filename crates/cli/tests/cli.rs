//! The `blockwise scheduler` binary serving a user program: the scheduler
//! is this crate's generic binary (it runs no user code), the workers are
//! copies of this test program in worker mode, the client is this process.
//!
//! `harness = false`: `main` first turns a copy started as a worker into
//! one. Prints one `N passed, N failed` line; timeouts are hang guards.
//!
//! Run: `cargo test -p blockwise-cli --test cli`

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use blockwise_core::delayed::delayed;
use blockwise_distributed::worker::{THREADS_ENV, WORKER_ENV};
use blockwise_distributed::{Client, ClientOptions, Tls, TlsFiles};

/// What the facade's `__private` module holds, for a crate without the facade.
#[allow(
    clippy::single_component_path_imports,
    reason = "the re-exports are the point: generated code reaches them as `crate::shim::...`"
)]
mod shim {
    pub(crate) use blockwise_core;
}

#[blockwise_macros::task(crate = crate::shim)]
fn triple(x: i64) -> i64 {
    3 * x
}

#[blockwise_macros::task(crate = crate::shim)]
fn sum(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

/// Kills the processes it holds when dropped.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn scheduler_binary_serves_a_user_program() -> Result<(), String> {
    serve_a_user_program(None)
}

fn scheduler_binary_serves_a_user_program_over_tls() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("blockwise-cli-tls-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_blockwise"))
        .arg("tls-certs")
        .arg(&dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("tls-certs failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let files = |name: &str| TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    let result = serve_a_user_program(Some((files("scheduler"), files("worker"), files("client"))));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The scheduler binary, two workers of this program, a client here;
/// with certificates (scheduler's, workers', client's) over TLS.
fn serve_a_user_program(tls: Option<(TlsFiles, TlsFiles, TlsFiles)>) -> Result<(), String> {
    let mut processes = Processes(Vec::new());
    let mut command = Command::new(env!("CARGO_BIN_EXE_blockwise"));
    command.args(["scheduler", "--port", "0"]);
    if let Some((s, _, _)) = &tls {
        command
            .arg("--tls-ca")
            .arg(&s.ca)
            .arg("--tls-cert")
            .arg(&s.cert)
            .arg("--tls-key")
            .arg(&s.key);
    }
    let mut scheduler = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the scheduler binary: {e}"))?;
    let stdout = scheduler.stdout.take().ok_or("no stdout")?;
    processes.0.push(scheduler);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
    let address = line
        .trim()
        .strip_prefix("blockwise scheduler at ")
        .ok_or_else(|| format!("the scheduler printed {line:?}"))?
        .to_string();
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    for _ in 0..2 {
        let mut command = Command::new(&me);
        if let Some((_, w, _)) = &tls {
            command.envs(w.env());
        }
        let worker = command
            .env(WORKER_ENV, &address)
            .env(THREADS_ENV, "2")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        processes.0.push(worker);
    }
    let mut options = ClientOptions::new(&address);
    if let Some((_, _, c)) = &tls {
        options.tls = Some(Tls::from_files(c).map_err(|e| e.to_string())?);
    }
    let client = Client::connect_with(options).map_err(|e| e.to_string())?;
    let parts: Vec<_> = (0..40i64).map(|i| delayed(triple).call(i)).collect();
    let total = client.submit(&delayed(sum).call(parts)).map_err(|e| e.to_string())?;
    let got: i64 = total
        .result_timeout(Duration::from_secs(120))
        .map_err(|e| e.to_string())?;
    let want: i64 = (0..40).map(|i| 3 * i).sum();
    if got != want {
        return Err(format!("the cluster computed {got}, expected {want}"));
    }
    Ok(())
}

fn worker_binary_without_a_scheduler_says_so() -> Result<(), String> {
    // Nothing listens on port 1: the worker gives up with a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_blockwise"))
        .args(["worker", "tcp://127.0.0.1:1", "--connect-timeout", "0"])
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !stderr.contains("cannot connect to the scheduler at tcp://127.0.0.1:1") {
        return Err(format!("status {}, stderr {stderr:?}", out.status));
    }
    Ok(())
}

type Check = fn() -> Result<(), String>;

fn main() {
    blockwise_distributed::serve_if_worker();
    let checks: [(&str, Check); 3] = [
        (
            "scheduler_binary_serves_a_user_program",
            scheduler_binary_serves_a_user_program,
        ),
        (
            "scheduler_binary_serves_a_user_program_over_tls",
            scheduler_binary_serves_a_user_program_over_tls,
        ),
        (
            "worker_binary_without_a_scheduler_says_so",
            worker_binary_without_a_scheduler_says_so,
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(check());
        });
        match rx
            .recv_timeout(Duration::from_secs(300))
            .unwrap_or_else(|_| Err("hung for 300 s (or panicked)".into()))
        {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED\n    {e}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
