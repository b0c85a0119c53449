//! [`Profiler`]: when, where and for how long every task ran (Dask's
//! `dask.diagnostics.Profiler`).
//!
//! At `start` the profiler allocates, for each task of the plan, a start
//! slot, an end slot and a worker slot (atomics, each written by exactly the
//! one thread that runs the task). `task_start` and `task_finish` only store a
//! timestamp there. At `finish` the slots become [`TaskRecord`]s, with keys
//! and op labels read from the plan once. Tasks that never finished (the
//! computation failed first) are left out, as in Dask.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use blockwise_core::{Callback, Key, Plan, Result, Value};
use parking_lot::Mutex;

use super::{Runs, chart, report};

/// One task as the [`Profiler`] saw it. Times are seconds since the
/// profiler's origin (the start of the first computation it watched).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    /// The task's key.
    pub key: Key,
    /// The key prefix (`"sum"` for `"sum-9ac1e0f3"`), by which reports group
    /// and colour tasks.
    pub prefix: String,
    /// A short label of the task's op.
    pub op: String,
    /// The index of the worker thread that ran it (0 is the calling thread).
    pub worker: usize,
    /// When the task started.
    pub start: f64,
    /// When it finished.
    pub end: f64,
}

impl TaskRecord {
    /// How long the task ran, in seconds.
    ///
    /// ```
    /// # use blockwise_core::{Key, Name};
    /// # use blockwise_local::diagnostics::TaskRecord;
    /// let r = TaskRecord {
    ///     key: Key::single(Name::new("inc-1f")),
    ///     prefix: "inc".into(),
    ///     op: "inc".into(),
    ///     worker: 0,
    ///     start: 0.25,
    ///     end: 0.75,
    /// };
    /// assert_eq!(r.duration(), 0.5);
    /// ```
    pub fn duration(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }
}

/// Task time of one key prefix, from [`Profiler::summary`].
#[derive(Clone, Debug, PartialEq)]
pub struct PrefixSummary {
    /// The key prefix.
    pub prefix: String,
    /// How many of its tasks ran.
    pub tasks: usize,
    /// Their summed duration, in seconds.
    pub total: f64,
    /// The mean duration, in seconds.
    pub mean: f64,
    /// The longest one, in seconds.
    pub max: f64,
}

/// Records the start, end and worker thread of every task, for every
/// computation it watches, until [`Profiler::clear`].
///
/// ```
/// use std::sync::Arc;
/// use blockwise_local::diagnostics::Profiler;
/// use blockwise_local::{Compute, ComputeOptions, delayed};
///
/// fn inc(x: i64) -> i64 {
///     x + 1
/// }
///
/// let profiler = Arc::new(Profiler::new());
/// let x = delayed(inc).call(delayed(inc).call(1));
/// let options = ComputeOptions::new().fuse(false).callback(profiler.clone());
/// assert_eq!(x.compute_with(options).unwrap(), 3);
///
/// let records = profiler.results();
/// assert_eq!(records.len(), 2);
/// assert!(records[0].end <= records[1].start); // the second needs the first
/// assert_eq!(records[0].prefix, "inc");
///
/// let svg = profiler.to_svg();
/// assert!(svg.contains("<rect class=\"task\""));
/// ```
pub struct Profiler {
    origin: Mutex<Option<Instant>>,
    runs: Runs<Run>,
    records: Mutex<Vec<TaskRecord>>,
}

/// One computation being profiled.
struct Run {
    origin: Instant,
    /// Nanoseconds since `origin`, plus one; 0 means "not yet".
    starts: Vec<AtomicU64>,
    /// Same encoding as `starts`.
    ends: Vec<AtomicU64>,
    workers: Vec<AtomicU32>,
}

impl Run {
    fn stamp(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64 + 1
    }
}

impl Default for Profiler {
    fn default() -> Self {
        Profiler::new()
    }
}

impl Profiler {
    /// A profiler with no records.
    pub fn new() -> Self {
        Profiler {
            origin: Mutex::new(None),
            runs: Runs::new(),
            records: Mutex::new(Vec::new()),
        }
    }

    /// The records of every task of every finished computation, ordered by
    /// start time.
    pub fn results(&self) -> Vec<TaskRecord> {
        self.records.lock().clone()
    }

    /// Forgets every record; the next computation sets a new origin.
    pub fn clear(&self) {
        self.records.lock().clear();
        *self.origin.lock() = None;
    }

    /// The instant that record times count from (the start of the first
    /// computation watched), if any computation has started.
    pub fn origin(&self) -> Option<Instant> {
        *self.origin.lock()
    }

    /// Task time per key prefix, the largest total first.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use blockwise_local::diagnostics::Profiler;
    /// # use blockwise_local::{Compute, ComputeOptions, delayed};
    /// fn double(x: i64) -> i64 {
    ///     2 * x
    /// }
    /// fn total(xs: Vec<i64>) -> i64 {
    ///     xs.iter().sum()
    /// }
    /// let profiler = Arc::new(Profiler::new());
    /// let s = delayed(total).call((0..4).map(|i| delayed(double).call(i)).collect::<Vec<_>>());
    /// s.compute_with(ComputeOptions::new().callback(profiler.clone())).unwrap();
    /// let summary = profiler.summary();
    /// let doubles = summary.iter().find(|p| p.prefix == "double").unwrap();
    /// assert_eq!(doubles.tasks, 4);
    /// ```
    pub fn summary(&self) -> Vec<PrefixSummary> {
        summarize(&self.records.lock())
    }

    /// The task chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let records = self.results();
        chart::svg(
            &chart::Figure {
                title: "blockwise profile",
                tasks: Some(&records),
                samples: None,
            },
            true,
        )
    }

    /// Writes [`Profiler::to_svg`] to `path`.
    pub fn write_svg(&self, path: impl AsRef<Path>) -> Result<()> {
        super::write_file(path.as_ref(), &self.to_svg())
    }

    /// A self-contained HTML report of the tasks (see [`report::to_html`]).
    pub fn to_html(&self) -> String {
        report::to_html(self, None)
    }

    /// Writes [`Profiler::to_html`] to `path`.
    pub fn write_html(&self, path: impl AsRef<Path>) -> Result<()> {
        report::write_html(path, self, None)
    }
}

pub(super) fn summarize(records: &[TaskRecord]) -> Vec<PrefixSummary> {
    let mut out: Vec<PrefixSummary> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for r in records {
        let i = *index.entry(r.prefix.as_str()).or_insert_with(|| {
            out.push(PrefixSummary {
                prefix: r.prefix.clone(),
                tasks: 0,
                total: 0.0,
                mean: 0.0,
                max: 0.0,
            });
            out.len() - 1
        });
        let s = &mut out[i];
        let d = r.duration();
        s.tasks += 1;
        s.total += d;
        s.max = s.max.max(d);
    }
    for s in &mut out {
        s.mean = s.total / s.tasks as f64;
    }
    out.sort_by(|a, b| b.total.total_cmp(&a.total).then_with(|| a.prefix.cmp(&b.prefix)));
    out
}

impl Callback for Profiler {
    fn start(&self, plan: &Plan) {
        let origin = *self.origin.lock().get_or_insert_with(Instant::now);
        let n = plan.len();
        let run = Run {
            origin,
            starts: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ends: (0..n).map(|_| AtomicU64::new(0)).collect(),
            workers: (0..n).map(|_| AtomicU32::new(0)).collect(),
        };
        self.runs.insert(plan, Arc::new(run));
    }

    fn task_start(&self, plan: &Plan, id: u32, worker: usize) {
        self.runs.with(plan, |run| {
            let i = id as usize;
            run.workers[i].store(worker as u32, Ordering::Relaxed);
            run.starts[i].store(run.stamp(), Ordering::Relaxed);
        });
    }

    fn task_finish(&self, plan: &Plan, id: u32, _worker: usize, _value: &Value) {
        self.runs
            .with(plan, |run| run.ends[id as usize].store(run.stamp(), Ordering::Relaxed));
    }

    fn finish(&self, plan: &Plan, _failed: bool) {
        let Some(run) = self.runs.remove(plan) else {
            return;
        };
        // Every worker has stopped before `finish`, so the relaxed stores
        // above are visible here (the engine joins or synchronizes with them).
        let mut fresh = Vec::new();
        for id in 0..plan.len() {
            let (start, end) = (
                run.starts[id].load(Ordering::Relaxed),
                run.ends[id].load(Ordering::Relaxed),
            );
            if start == 0 || end == 0 {
                continue;
            }
            let key = plan.key(id as u32);
            fresh.push(TaskRecord {
                key: key.clone(),
                prefix: key.name.prefix().to_string(),
                op: plan.op(id as u32).label(),
                worker: run.workers[id].load(Ordering::Relaxed) as usize,
                start: (start - 1) as f64 * 1e-9,
                end: (end - 1) as f64 * 1e-9,
            });
        }
        let mut records = self.records.lock();
        records.extend(fresh);
        records.sort_by(|a, b| a.start.total_cmp(&b.start));
    }
}
