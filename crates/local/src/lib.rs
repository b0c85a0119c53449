//! # blockwise-local
//!
//! Runs graphs on this machine. One engine ([`engine`]), two executors:
//!
//! - [`Threads`], the default: work-stealing worker threads, one per core.
//!   There is no GIL: threads are true parallelism.
//! - [`Sync`]: everything on the calling thread, for debugging and profiling.
//!
//! Which one runs is chosen per call ([`Compute::compute_with`]), in code
//! (`config::set([("scheduler", "sync")])`), by `BLOCKWISE_SCHEDULER`, or by
//! `scheduler = "sync"` in `blockwise.toml`. A cluster address
//! (`tcp://host:port`) there is handed to the distributed client, when one is
//! linked ([`set_remote_factory`]).
//!
//! [`process`] runs a plan in a child process of this same executable: the
//! proof that code identity (registered ops, build-id handshake) works across
//! a process boundary.

pub mod diagnostics;
pub mod engine;
pub mod process;

use std::sync::{Arc, OnceLock};

use blockwise_core::exec::graph_of_values;
use blockwise_core::{Callback, Collection, Error, ErrorKind, Executor, Graph, Key, Result, RunOptions, Value, config};
use parking_lot::RwLock;

pub use blockwise_core::delayed::{Delayed, delayed};

/// The threaded executor: `workers` threads picking tasks by priority,
/// stealing from each other when idle.
#[derive(Clone, Debug)]
pub struct Threads {
    workers: usize,
}

impl Threads {
    /// `workers` threads (at least one).
    pub fn new(workers: usize) -> Self {
        Threads {
            workers: workers.max(1),
        }
    }

    /// One thread per core, or `num-workers` from configuration.
    pub fn from_config() -> Result<Self> {
        let n = match config::get_usize("num-workers")? {
            Some(n) if n > 0 => n,
            _ => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        };
        Ok(Threads::new(n))
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }
}

impl Executor for Threads {
    fn name(&self) -> String {
        "threads".into()
    }

    fn execute(&self, graph: &Graph, outputs: &[Key], options: &RunOptions) -> Result<Vec<Value>> {
        let plan = blockwise_core::exec::plan(graph, outputs, options)?;
        let callbacks = callbacks_for(options)?;
        engine::run(&plan, self.workers, &callbacks)
    }
}

/// The synchronous executor: every task on the calling thread, in priority
/// order. Same engine as [`Threads`], one worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sync;

impl Executor for Sync {
    fn name(&self) -> String {
        "sync".into()
    }

    fn execute(&self, graph: &Graph, outputs: &[Key], options: &RunOptions) -> Result<Vec<Value>> {
        let plan = blockwise_core::exec::plan(graph, outputs, options)?;
        let callbacks = callbacks_for(options)?;
        engine::run(&plan, 1, &callbacks)
    }
}

/// Which executor runs a computation.
#[derive(Clone)]
pub enum Scheduler {
    /// The threaded executor with this many threads (`None`: from config).
    Threads(Option<usize>),
    /// The synchronous executor.
    Sync,
    /// Any executor, e.g. a distributed client.
    Executor(Arc<dyn Executor>),
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scheduler::Threads(n) => write!(f, "Threads({n:?})"),
            Scheduler::Sync => write!(f, "Sync"),
            Scheduler::Executor(e) => write!(f, "Executor({})", e.name()),
        }
    }
}

/// Builds an executor for a cluster address; installed by the distributed
/// client crate.
pub type RemoteFactory = fn(&str) -> Result<Arc<dyn Executor>>;

static REMOTE: OnceLock<RemoteFactory> = OnceLock::new();

/// Installs the function that turns a `tcp://…` (or `tls://…`) scheduler
/// setting into an executor. Called once by the distributed crate.
pub fn set_remote_factory(factory: RemoteFactory) {
    let _ = REMOTE.set(factory);
}

impl Scheduler {
    /// Parses a scheduler setting: `threads`, `threads:N`, `sync` (also
    /// `synchronous`, `single-threaded`), or a cluster address.
    pub fn parse(setting: &str) -> Result<Scheduler> {
        let s = setting.trim();
        match s {
            "threads" | "threading" | "threaded" => return Ok(Scheduler::Threads(None)),
            "sync" | "synchronous" | "single-threaded" => return Ok(Scheduler::Sync),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("threads:") {
            let n: usize = n.parse().map_err(|_| {
                Error::new(
                    ErrorKind::Config,
                    format!("scheduler {s:?}: the thread count must be a whole number"),
                )
            })?;
            return Ok(Scheduler::Threads(Some(n)));
        }
        if s.contains("://") {
            return match REMOTE.get() {
                Some(factory) => Ok(Scheduler::Executor(factory(s)?)),
                None => Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "scheduler is set to the cluster address {s:?}, but no distributed client is linked \
                         into this program: enable blockwise's `distributed` feature and call blockwise::init()"
                    ),
                )),
            };
        }
        Err(Error::new(
            ErrorKind::Config,
            format!("unknown scheduler {s:?}: use threads, threads:N, sync, or a cluster address tcp://host:port"),
        ))
    }

    /// The scheduler named by configuration (`scheduler`, default `threads`).
    pub fn from_config() -> Result<Scheduler> {
        Scheduler::parse(&config::get_string("scheduler").unwrap_or_else(|| "threads".into()))
    }

    /// The executor behind this choice.
    pub fn executor(&self) -> Result<Arc<dyn Executor>> {
        Ok(match self {
            Scheduler::Threads(Some(n)) => Arc::new(Threads::new(*n)),
            Scheduler::Threads(None) => Arc::new(Threads::from_config()?),
            Scheduler::Sync => Arc::new(Sync),
            Scheduler::Executor(e) => e.clone(),
        })
    }
}

impl From<Arc<dyn Executor>> for Scheduler {
    fn from(e: Arc<dyn Executor>) -> Self {
        Scheduler::Executor(e)
    }
}

type CallbackList = RwLock<Vec<(u64, Arc<dyn Callback>)>>;

fn global_callbacks() -> &'static CallbackList {
    static CALLBACKS: OnceLock<CallbackList> = OnceLock::new();
    CALLBACKS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Unregisters a global callback when dropped.
#[must_use = "the callback is unregistered when the guard is dropped"]
pub struct CallbackGuard {
    id: u64,
}

impl Drop for CallbackGuard {
    fn drop(&mut self) {
        global_callbacks().write().retain(|(id, _)| *id != self.id);
    }
}

/// Registers a callback for every computation until the guard is dropped
/// (Dask's `with ProgressBar():` / `callback.register()`).
pub fn register_callback(callback: Arc<dyn Callback>) -> CallbackGuard {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    global_callbacks().write().push((id, callback));
    CallbackGuard { id }
}

/// The callbacks of one computation: the call's own, then the global ones,
/// then the automatic progress bar when the configuration key `progress`
/// asks for one (see [`diagnostics::ProgressMode`]).
pub fn callbacks_for(options: &RunOptions) -> Result<Vec<Arc<dyn Callback>>> {
    let mut all = options.callbacks.clone();
    all.extend(global_callbacks().read().iter().map(|(_, c)| c.clone()));
    // Last, so that an explicit bar in the list can keep it quiet.
    if let Some(bar) = diagnostics::progress::automatic()? {
        all.push(bar);
    }
    Ok(all)
}

/// Options of one computation: scheduler, optimizations, callbacks.
#[derive(Clone, Default)]
pub struct ComputeOptions {
    /// The scheduler; `None` means the configured default.
    pub scheduler: Option<Scheduler>,
    /// Whether to fuse linear chains; `None` means `optimization.fuse`.
    pub fuse: Option<bool>,
    /// Callbacks for this computation only.
    pub callbacks: Vec<Arc<dyn Callback>>,
}

impl ComputeOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs on `scheduler`.
    pub fn scheduler(mut self, scheduler: Scheduler) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Turns chain fusion on or off.
    pub fn fuse(mut self, fuse: bool) -> Self {
        self.fuse = Some(fuse);
        self
    }

    /// Adds a callback for this computation.
    pub fn callback(mut self, callback: Arc<dyn Callback>) -> Self {
        self.callbacks.push(callback);
        self
    }

    fn resolve(&self) -> Result<(Arc<dyn Executor>, RunOptions)> {
        let scheduler = match &self.scheduler {
            Some(s) => s.clone(),
            None => Scheduler::from_config()?,
        };
        let fuse = match self.fuse {
            Some(f) => f,
            None => config::get_bool("optimization.fuse", true)?,
        };
        let run = RunOptions {
            plan: blockwise_core::PlanOptions { fuse },
            callbacks: self.callbacks.clone(),
        };
        Ok((scheduler.executor()?, run))
    }
}

impl From<Scheduler> for ComputeOptions {
    fn from(s: Scheduler) -> Self {
        ComputeOptions::new().scheduler(s)
    }
}

/// Computes the keys of a graph with the given options.
pub fn compute_graph(graph: &Graph, keys: &[Key], options: &ComputeOptions) -> Result<Vec<Value>> {
    let (executor, run) = options.resolve()?;
    executor.execute(graph, keys, &run)
}

/// `compute` and `persist` for every lazy collection.
pub trait Compute: Collection + Sized {
    /// Computes the result on the configured scheduler (threads by default).
    fn compute(&self) -> Result<Self::Output> {
        self.compute_with(ComputeOptions::new())
    }

    /// Computes the result with explicit options or scheduler.
    fn compute_with(&self, options: impl Into<ComputeOptions>) -> Result<Self::Output> {
        let keys = self.output_keys();
        let values = compute_graph(&Self::optimize(self.graph(), &keys), &keys, &options.into())?;
        self.finalize(values)
    }

    /// Computes the collection's values and returns the same collection
    /// backed by them: later computations built on it reuse the values.
    fn persist(&self) -> Result<Self> {
        self.persist_with(ComputeOptions::new())
    }

    /// Draws the task graph to `path` (`.dot`, `.svg`, `.png`, `.pdf`; all but
    /// `.dot` need Graphviz's `dot`), as Dask's `x.visualize(filename=…)`.
    fn visualize(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        blockwise_core::visualize::visualize(self, path.as_ref(), &Default::default())
    }

    /// [`Compute::persist`] with explicit options.
    fn persist_with(&self, options: impl Into<ComputeOptions>) -> Result<Self> {
        let keys = self.output_keys();
        let values = compute_graph(&Self::optimize(self.graph(), &keys), &keys, &options.into())?;
        Ok(self.with_graph(graph_of_values(&keys, values)))
    }
}

impl<C: Collection> Compute for C {}

/// Computes several collections of one type in one pass over their merged
/// graph: shared parts are computed once (Dask's `dask.compute(a, b, …)`),
/// and the type's optimizations ([`Collection::optimize`]) see them all.
pub fn compute_all<C: Collection>(items: &[C]) -> Result<Vec<C::Output>> {
    compute_all_with(items, ComputeOptions::new())
}

/// [`compute_all`] with explicit options.
pub fn compute_all_with<C: Collection>(items: &[C], options: impl Into<ComputeOptions>) -> Result<Vec<C::Output>> {
    let mut graph = Graph::new();
    let mut keys = Vec::new();
    let mut spans = Vec::with_capacity(items.len());
    for item in items {
        graph.merge(&item.graph());
        let k = item.output_keys();
        spans.push(keys.len()..keys.len() + k.len());
        keys.extend(k);
    }
    let graph = C::optimize(graph, &keys);
    let values = compute_graph(&graph, &keys, &options.into())?;
    items
        .iter()
        .zip(spans)
        .map(|(item, span)| item.finalize(values[span].to_vec()))
        .collect()
}
