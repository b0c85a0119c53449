//! [`ResourceProfiler`]: memory and CPU of this process over time (Dask's
//! `dask.diagnostics.ResourceProfiler`).
//!
//! A sampling thread runs while at least one watched computation is running:
//! it starts at the first `start` and stops (after one last sample) when the
//! last running computation calls `finish`. Each sample reads two files:
//!
//! - `/proc/self/status`, line `VmRSS`: the resident set in kB;
//! - `/proc/self/stat`, fields 14 and 15 (`utime`, `stime`): CPU time of
//!   every thread of the process, live or exited, in clock ticks.
//!
//! CPU percent is the CPU time used since the previous sample over the wall
//! time since it, times 100: 100 % is one core busy, 400 % four. The first
//! sample has no previous one and reports 0 %. The resolution is one clock
//! tick (10 ms), so short intervals give coarse CPU values.
//!
//! Outside Linux (no `/proc`) nothing is sampled and the results stay empty.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use blockwise_core::{Callback, Plan, Result};
use parking_lot::Mutex;

use super::{chart, report};

/// Clock ticks per second of the times in `/proc/<pid>/stat`. The kernel
/// reports them in `USER_HZ`, which is 100 on every architecture Rust
/// targets with Linux; reading `sysconf(_SC_CLK_TCK)` would need `unsafe`,
/// which the workspace forbids.
const TICKS_PER_SECOND: f64 = 100.0;

/// One measurement of the [`ResourceProfiler`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResourceSample {
    /// Seconds since the profiler's origin (the start of the first
    /// computation it watched).
    pub time: f64,
    /// Resident set size of the process, in bytes.
    pub memory: u64,
    /// CPU use since the previous sample, in percent of one core (may exceed
    /// 100 with several busy threads; 0 for the first sample).
    pub cpu: f64,
}

/// Samples the memory and CPU use of this process while computations run.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use blockwise_local::diagnostics::ResourceProfiler;
/// use blockwise_local::{Compute, ComputeOptions, delayed};
///
/// fn work(n: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(30));
///     (0..n).sum()
/// }
///
/// let resources = Arc::new(ResourceProfiler::new().interval(Duration::from_millis(10)));
/// let x = delayed(work).call(1000);
/// x.compute_with(ComputeOptions::new().callback(resources.clone())).unwrap();
/// if cfg!(target_os = "linux") {
///     let samples = resources.results();
///     assert!(samples.len() >= 2);
///     assert!(samples.iter().all(|s| s.memory > 0 && s.cpu >= 0.0));
/// }
/// ```
pub struct ResourceProfiler {
    interval: Duration,
    shared: Arc<Shared>,
    sampler: Mutex<Sampler>,
}

struct Shared {
    origin: Mutex<Option<Instant>>,
    samples: Mutex<Vec<ResourceSample>>,
}

impl Shared {
    fn record(&self, origin: Instant, reading: &Reading, cpu: f64) {
        self.samples.lock().push(ResourceSample {
            time: reading.at.saturating_duration_since(origin).as_secs_f64(),
            memory: reading.memory,
            cpu,
        });
    }
}

#[derive(Default)]
struct Sampler {
    /// Watched computations now running.
    active: usize,
    thread: Option<(Sender<()>, JoinHandle<()>)>,
}

impl Default for ResourceProfiler {
    fn default() -> Self {
        ResourceProfiler::new()
    }
}

impl ResourceProfiler {
    /// A resource profiler sampling every 100 ms.
    pub fn new() -> Self {
        ResourceProfiler {
            interval: Duration::from_millis(100),
            shared: Arc::new(Shared {
                origin: Mutex::new(None),
                samples: Mutex::new(Vec::new()),
            }),
            sampler: Mutex::new(Sampler::default()),
        }
    }

    /// Samples every `interval` (at least 1 ms) instead of every 100 ms.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The sampling interval.
    pub fn sampling_interval(&self) -> Duration {
        self.interval
    }

    /// Every sample so far, in time order (also while a computation runs).
    pub fn results(&self) -> Vec<ResourceSample> {
        self.shared.samples.lock().clone()
    }

    /// How many samples were taken so far.
    pub fn len(&self) -> usize {
        self.shared.samples.lock().len()
    }

    /// Whether no sample was taken yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest resident set seen, in bytes.
    pub fn peak_memory(&self) -> Option<u64> {
        self.shared.samples.lock().iter().map(|s| s.memory).max()
    }

    /// Forgets every sample; when no computation is running, the next one
    /// also sets a new origin.
    pub fn clear(&self) {
        let sampler = self.sampler.lock();
        self.shared.samples.lock().clear();
        if sampler.active == 0 {
            *self.shared.origin.lock() = None;
        }
    }

    /// The instant that sample times count from, if sampling ever started.
    pub fn origin(&self) -> Option<Instant> {
        *self.shared.origin.lock()
    }

    /// Memory and CPU charts as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let samples = self.results();
        chart::svg(
            &chart::Figure {
                title: "blockwise resource profile",
                tasks: None,
                samples: Some(&samples),
            },
            true,
        )
    }

    /// Writes [`ResourceProfiler::to_svg`] to `path`.
    pub fn write_svg(&self, path: impl AsRef<Path>) -> Result<()> {
        super::write_file(path.as_ref(), &self.to_svg())
    }

    /// A self-contained HTML report of memory and CPU use.
    pub fn to_html(&self) -> String {
        report::resources_html(self)
    }

    /// Writes [`ResourceProfiler::to_html`] to `path`.
    pub fn write_html(&self, path: impl AsRef<Path>) -> Result<()> {
        super::write_file(path.as_ref(), &self.to_html())
    }
}

impl Callback for ResourceProfiler {
    fn start(&self, _plan: &Plan) {
        let mut sampler = self.sampler.lock();
        sampler.active += 1;
        if sampler.thread.is_some() {
            return;
        }
        let origin = *self.shared.origin.lock().get_or_insert_with(Instant::now);
        // The first sample is taken here, before any task runs: the
        // baseline every later sample is compared with.
        let Some(first) = read_process() else {
            tracing::debug!("resource profiler: /proc/self is not readable; no samples");
            return;
        };
        self.shared.record(origin, &first, 0.0);
        let (stop, stopped) = mpsc::channel();
        let shared = self.shared.clone();
        let interval = self.interval;
        match std::thread::Builder::new()
            .name("blockwise-resource-profiler".into())
            .spawn(move || sample_until_stopped(&shared, origin, first, interval, &stopped))
        {
            Ok(handle) => sampler.thread = Some((stop, handle)),
            // Diagnostics never fail a computation: no thread, no samples.
            Err(e) => tracing::warn!("resource profiler: cannot start its sampling thread: {e}"),
        }
    }

    fn finish(&self, _plan: &Plan, _failed: bool) {
        let mut sampler = self.sampler.lock();
        sampler.active = sampler.active.saturating_sub(1);
        if sampler.active > 0 {
            return;
        }
        if let Some((stop, handle)) = sampler.thread.take() {
            let _ = stop.send(());
            if handle.join().is_err() {
                tracing::warn!("resource profiler: the sampling thread panicked");
            }
        }
    }
}

/// What the process has used so far.
#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    memory: u64,
    cpu_seconds: f64,
}

fn read_process() -> Option<Reading> {
    let at = Instant::now();
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some(Reading {
        at,
        memory: parse_vm_rss(&status)?,
        cpu_seconds: parse_cpu_ticks(&stat)? as f64 / TICKS_PER_SECOND,
    })
}

/// `VmRSS:     12345 kB` in `/proc/<pid>/status`, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let unit = match parts.next().unwrap_or("kB") {
        "kB" => 1024,
        "mB" | "MB" => 1024 * 1024,
        _ => 1,
    };
    Some(value * unit)
}

/// `utime + stime` from `/proc/<pid>/stat`. The second field (the command
/// name, in parentheses) may contain spaces and parentheses itself, so
/// fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name come fields 3, 4, …; utime is field 14, stime 15.
    let mut fields = after.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn sample_until_stopped(
    shared: &Shared,
    origin: Instant,
    first: Reading,
    interval: Duration,
    stop: &mpsc::Receiver<()>,
) {
    let mut previous = first;
    let mut deadline = previous.at + interval;
    loop {
        let stopping = match stop.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        };
        let Some(now) = read_process() else {
            return;
        };
        let wall = now.at.saturating_duration_since(previous.at).as_secs_f64();
        // A final sample right after the last one would divide tick-sized
        // CPU steps by almost no time: skip it.
        if wall >= 1e-3 {
            let cpu = ((now.cpu_seconds - previous.cpu_seconds) / wall * 100.0).max(0.0);
            shared.record(origin, &now, cpu);
            previous = now;
        }
        if stopping {
            return;
        }
        deadline += interval;
        // After a long stall, do not fire a burst of catch-up samples.
        if deadline < Instant::now() {
            deadline = Instant::now() + interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let stat = "4242 (my (weird) prog) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 100 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let r = read_process().expect("/proc/self is readable on Linux");
        assert!(r.memory > 0);
        assert!(r.cpu_seconds >= 0.0);
    }
}
