//! A cluster on this machine: a scheduler in this process, worker processes
//! of this same executable, all on loopback.
//!
//! The workers are copies of the running program started with
//! [`crate::worker::WORKER_ENV`] set: `main` must call
//! [`crate::serve_if_worker`] (or `blockwise::init()`) first, which turns
//! such a copy into a worker. Dropping the cluster kills the workers and
//! stops the scheduler.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockwise_core::{Error, ErrorKind, Result, identity};

use crate::client::{Client, ClientOptions};
use crate::server::{SchedulerHandle, SchedulerOptions};
use crate::tls::{Tls, TlsFiles};
use crate::worker::{THREADS_ENV, TOKEN_ENV, WORKER_ENV};

/// A scheduler and worker processes on this machine (Dask's
/// `LocalCluster`).
///
/// The workers inherit this process's environment, `GLIBC_TUNABLES`
/// included. They are not given transparent huge pages
/// (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`) by default: where a value
/// arrives in fresh memory — a 1 GB array received from a peer is read into
/// the new array's storage — huge pages make the first touch cost what it
/// costs the host to back 2 MiB of guest memory, and in a VM whose free
/// memory goes back to the host (free page reporting, as on the
/// benchmark machine) that was 4–8 s per GB against about a second
/// in 4 KiB pages, whose fault-in a large receive spreads over other cores
/// (see `crate::tcp`). Set the tunable in the parent to have huge pages.
pub struct LocalCluster {
    scheduler: SchedulerHandle,
    workers: Vec<Child>,
    program: PathBuf,
    args: Vec<OsString>,
    threads: usize,
    token: Option<String>,
    tls: Option<Tls>,
    tls_files: Option<TlsFiles>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalCluster({}, {} workers)", self.address(), self.workers.len())
    }
}

impl LocalCluster {
    /// Starts a scheduler and `workers` worker processes of this executable
    /// with `threads_per_worker` threads each, and waits until they joined.
    pub fn new(workers: usize, threads_per_worker: usize) -> Result<LocalCluster> {
        LocalCluster::with_options(workers, threads_per_worker, SchedulerOptions::default())
    }

    /// The same with scheduler options (its knobs, a token); the address
    /// is always a free port on loopback, and the build id this
    /// executable's.
    pub fn with_options(workers: usize, threads_per_worker: usize, options: SchedulerOptions) -> Result<LocalCluster> {
        LocalCluster::start(
            std::env::current_exe()?,
            Vec::new(),
            workers,
            threads_per_worker,
            options,
            None,
        )
    }

    /// A cluster on `tls://`: the scheduler, the workers and the clients
    /// of [`LocalCluster::client`] all present the certificate of `files`
    /// (see [`crate::tls::create_test_certificates`]).
    pub fn with_tls(workers: usize, threads_per_worker: usize, files: TlsFiles) -> Result<LocalCluster> {
        LocalCluster::start(
            std::env::current_exe()?,
            Vec::new(),
            workers,
            threads_per_worker,
            SchedulerOptions::default(),
            Some(files),
        )
    }

    /// The same with another executable (which must call
    /// [`crate::serve_if_worker`] first in `main` and be the same build as
    /// this one) and extra arguments for it.
    pub fn with_program(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
        workers: usize,
        threads_per_worker: usize,
    ) -> Result<LocalCluster> {
        LocalCluster::start(
            program.into(),
            args.into_iter().map(Into::into).collect(),
            workers,
            threads_per_worker,
            SchedulerOptions::default(),
            None,
        )
    }

    fn start(
        program: PathBuf,
        args: Vec<OsString>,
        workers: usize,
        threads_per_worker: usize,
        options: SchedulerOptions,
        tls_files: Option<TlsFiles>,
    ) -> Result<LocalCluster> {
        // A worker copy that reached this point did not stop at
        // serve_if_worker: starting a cluster here would start copies of
        // copies without end.
        if std::env::var_os(WORKER_ENV).is_some() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "this process was started as a cluster worker ({WORKER_ENV} is set) but went on to start a \
                     LocalCluster: call blockwise_distributed::serve_if_worker() (or blockwise::init()) first \
                     thing in main"
                ),
            ));
        }
        let token = options.token.clone();
        let tls = tls_files.as_ref().map(Tls::from_files).transpose()?;
        let scheme = if tls.is_some() { "tls" } else { "tcp" };
        let scheduler = SchedulerHandle::start(SchedulerOptions {
            address: format!("{scheme}://127.0.0.1:0"),
            build_id: Some(identity::build_id().to_string()),
            tls: tls.clone(),
            ..options
        })?;
        let mut cluster = LocalCluster {
            scheduler,
            workers: Vec::new(),
            program,
            args,
            threads: threads_per_worker.max(1),
            token,
            tls,
            tls_files,
        };
        for _ in 0..workers {
            cluster.add_worker()?;
        }
        cluster.wait_for_workers(workers, Duration::from_secs(60))?;
        Ok(cluster)
    }

    /// Starts one more worker process (it joins in the background).
    pub fn add_worker(&mut self) -> Result<u32> {
        let mut command = Command::new(&self.program);
        if let Some(token) = &self.token {
            command.env(TOKEN_ENV, token);
        }
        if let Some(files) = &self.tls_files {
            command.envs(files.env());
        }
        let child = command
            .args(&self.args)
            .env(WORKER_ENV, self.scheduler.address())
            .env(THREADS_ENV, self.threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot start a worker from {}: {e}", self.program.display()),
                )
            })?;
        let pid = child.id();
        self.workers.push(child);
        Ok(pid)
    }

    /// Waits until `n` workers are connected.
    pub fn wait_for_workers(&mut self, n: usize, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let connected = self.scheduler.workers();
            if connected >= n {
                return Ok(());
            }
            for w in &mut self.workers {
                if let Ok(Some(status)) = w.try_wait() {
                    return Err(Error::new(
                        ErrorKind::Remote,
                        format!(
                            "worker process {} ({}) exited with {status} before joining the scheduler at {}: \
                             does its main call blockwise_distributed::serve_if_worker() (or blockwise::init()) first?",
                            w.id(),
                            self.program.display(),
                            self.scheduler.address()
                        ),
                    ));
                }
            }
            if start.elapsed() > timeout {
                return Err(Error::new(
                    ErrorKind::Remote,
                    format!(
                        "{connected} of {n} workers joined the scheduler at {} within {timeout:?}",
                        self.scheduler.address()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The scheduler's address, `tcp://127.0.0.1:port`.
    pub fn address(&self) -> &str {
        self.scheduler.address()
    }

    /// A new client of this cluster.
    pub fn client(&self) -> Result<Client> {
        let mut options = ClientOptions::new(self.address());
        options.token = self.token.clone();
        options.tls = self.tls.clone();
        Client::connect_with(options)
    }

    /// The process ids of the workers started (alive or not).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.id()).collect()
    }

    /// Workers connected to the scheduler right now.
    pub fn connected_workers(&self) -> usize {
        self.scheduler.workers()
    }

    /// A summary of the scheduler's state now.
    pub fn snapshot(&self) -> Result<crate::server::SchedulerSnapshot> {
        self.scheduler.snapshot()
    }

    /// Kills worker `index` at once (SIGKILL), as a crash would.
    pub fn kill_worker(&mut self, index: usize) -> Result<()> {
        let started = self.workers.len();
        let w = self
            .workers
            .get_mut(index)
            .ok_or_else(|| Error::invalid(format!("no worker {index}: the cluster started {started}")))?;
        w.kill()?;
        w.wait()?;
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
        }
        for w in &mut self.workers {
            let _ = w.wait();
        }
    }
}
