//! The worker: the user's own executable, serving a scheduler.
//!
//! A worker connects to the scheduler, introduces itself (its build id, its
//! threads, the address where peers fetch its results), and then does what
//! it is told:
//!
//! - **Compute**: fetch the inputs it does not hold from the peers that hold
//!   them (worker to worker, directly, at most `FETCH_BATCH` (1024) results per
//!   request), then run the task on one of its threads, most urgent ready
//!   task first; keep the result and report `Finished` (or `Erred`, with
//!   the key and the cause — a panic is caught and reported, never fatal).
//!   Tiny tasks run in *batches*: a thread takes the most urgent ready
//!   tasks up to about `BATCH_WINDOW_US` (1 ms) of their learned run time, the
//!   scheduler hears their `Started` in one write before the first runs,
//!   and their reports go out together.
//! - **Free / Cancel**: drop results; a cancelled task is not started, and
//!   its result, if its thread was already running it, is dropped on
//!   arrival (every report quotes its run, see the scheduler's "Messages
//!   that cross").
//! - **StealRequest**: let a task go if it has not started.
//! - **UpdateWhoHas / Peers**: where inputs and peers are now.
//!
//! Around that, two servers: a peer server answering `GetData` from other
//! workers and from clients gathering results, and a heartbeat every
//! [`WorkerOptions::heartbeat`].
//!
//! One task (the worker's *core*) owns the worker's state; fetches, task
//! runs and the scheduler connection report to it through one channel. The
//! results themselves live in a shared store the peer server reads.
//!
//! Results are accounted by size; beyond a memory limit they spill to disk
//! and the worker pauses ([`crate::store`]). Not yet: resources.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blockwise_core::value::decode_value;
use blockwise_core::{Error, ErrorKind, Key, Result, Value, identity};
use tokio::sync::{mpsc, oneshot};

use crate::frame::FrameLimits;
use crate::id::{GenerationalId, IdBuildHasher, IdMap, StimulusId, TaskId, WorkerId};
use crate::protocol::{
    Envelope, Hello, PROTOCOL_VERSION, PeerRequest, PeerResponse, Role, ToWorker, Welcome, WorkerMessage,
};
use crate::scheduler::{ComputeTask, Priority, StealOutcome, WorkerInfo, WorkerMetrics};
use crate::spec::{Argument, decode_task};
use crate::store::MemoryLimits;
use crate::tcp::{Connection, ConnectionWriter, Listener};
use crate::tls::{Tls, TlsFiles};

/// The environment variable that makes this executable a cluster worker:
/// `BLOCKWISE_CLUSTER_WORKER=tcp://scheduler:8786` (see [`serve_if_worker`]).
pub const WORKER_ENV: &str = "BLOCKWISE_CLUSTER_WORKER";

/// Threads for a worker started by [`serve_if_worker`].
pub const THREADS_ENV: &str = "BLOCKWISE_CLUSTER_WORKER_THREADS";

/// Bytes of results a worker started by [`serve_if_worker`] keeps in
/// memory before spilling (see [`MemoryLimits`]).
pub const MEMORY_LIMIT_ENV: &str = "BLOCKWISE_CLUSTER_WORKER_MEMORY_LIMIT";

/// The cluster's shared secret, for workers and clients that are given
/// none explicitly.
pub const TOKEN_ENV: &str = "BLOCKWISE_CLUSTER_TOKEN";

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The scheduler, `tcp://host:port`.
    pub scheduler: String,
    /// Tasks run at once.
    pub threads: usize,
    /// A name for logs and the dashboard (default: its address).
    pub name: Option<String>,
    /// The host peers reach this worker at (it listens there on a free
    /// port).
    pub host: String,
    /// Bytes of results the worker keeps in memory before spilling to
    /// disk and pausing (limit 0: no limit), and where it spills.
    pub memory: MemoryLimits,
    /// The cluster's shared secret.
    pub token: Option<String>,
    /// Bounds on what a peer may send.
    pub limits: FrameLimits,
    /// Certificates: required for a `tls://` scheduler, and then the
    /// worker's peer port is `tls://` too.
    pub tls: Option<crate::tls::Tls>,
    /// How often the worker reports to the scheduler.
    pub heartbeat: Duration,
    /// How long to keep trying to reach the scheduler at start.
    pub connect_timeout: Duration,
}

impl WorkerOptions {
    /// Defaults for a worker of `scheduler`: one thread per core, on
    /// loopback.
    pub fn new(scheduler: impl Into<String>) -> Self {
        WorkerOptions {
            scheduler: scheduler.into(),
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            name: None,
            host: "127.0.0.1".into(),
            memory: MemoryLimits::default(),
            token: None,
            limits: FrameLimits::default(),
            tls: None,
            heartbeat: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(30),
        }
    }

    /// `threads` threads (at least one).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }
}

/// In cluster-worker mode (`BLOCKWISE_CLUSTER_WORKER` is set), serves that
/// scheduler until it closes and exits the process; otherwise returns.
/// [`THREADS_ENV`], [`TOKEN_ENV`] and [`crate::tls::TLS_ENV`] configure it.
/// Call it first thing in `main` (as `blockwise::init()` does).
pub fn serve_if_worker() {
    let Ok(scheduler) = std::env::var(WORKER_ENV) else {
        return;
    };
    if scheduler.is_empty() {
        return;
    }
    let mut options = WorkerOptions::new(scheduler);
    if let Some(threads) = std::env::var(THREADS_ENV).ok().and_then(|t| t.parse().ok()) {
        options = options.threads(threads);
    }
    if let Some(limit) = std::env::var(MEMORY_LIMIT_ENV).ok().and_then(|t| t.parse().ok()) {
        options.memory.limit = limit;
    }
    options.token = std::env::var(TOKEN_ENV).ok();
    let tls = TlsFiles::from_env().map(|files| Tls::from_files(&files)).transpose();
    let code = match tls.and_then(|tls| {
        options.tls = tls;
        run_worker(options)
    }) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("blockwise worker (pid {}): {e}", std::process::id());
            1
        }
    };
    std::process::exit(code);
}

/// Runs a worker until its scheduler closes the connection (`Ok`) or it
/// cannot serve (refused by the scheduler, a lost connection: `Err`).
pub fn run_worker(options: WorkerOptions) -> Result<()> {
    // One thread for the connections and the worker's core (they wake each
    // other without crossing threads); tasks run on the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(options.threads.max(1) + 4)
        .thread_name("blockwise-worker")
        .enable_all()
        .build()?;
    let result = runtime.block_on(worker_main(options));
    // Threads still running a task are abandoned: the process ends.
    runtime.shutdown_background();
    result
}

type Store = Arc<Mutex<crate::store::Store>>;

/// What reaches the worker's core.
enum Internal {
    Scheduler(Envelope<ToWorker>),
    SchedulerClosed(String),
    /// A thread finished a batch of tasks.
    Done(Vec<Done>),
    Fetched {
        holder: WorkerId,
        found: Vec<(TaskId, Value)>,
        missing: Vec<TaskId>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fetching,
    Ready,
    Running,
}

struct Assigned {
    compute: Box<ComputeTask>,
    phase: Phase,
    /// While fetching: the inputs before this position are known to be
    /// here (inputs only arrive while a task waits), so each arrival
    /// checks on from there and a task reading a million inputs is
    /// checked in time linear in them, not quadratic.
    present: usize,
}

struct Core {
    me: WorkerId,
    /// Where peers reach this worker (named in error reports).
    address: String,
    threads: usize,
    store: Store,
    tasks: IdMap<TaskId, Assigned>,
    ready: BTreeSet<(Priority, TaskId)>,
    running: usize,
    peers: HashMap<WorkerId, String>,
    /// Inputs to fetch, with where they are (as last told).
    wanted: IdMap<TaskId, Vec<WorkerId>>,
    /// Inputs being fetched right now.
    in_flight: HashSet<TaskId, IdBuildHasher>,
    /// Assigned tasks waiting for each input.
    waiters: IdMap<TaskId, Vec<TaskId>>,
    to_scheduler: mpsc::UnboundedSender<Outgoing>,
    internal: mpsc::UnboundedSender<Internal>,
    /// Connections to peers, reused.
    pool: PeerPool,
    /// Whether this worker told the scheduler it paused.
    paused: bool,
    /// Moving average of the run time of each key prefix run here,
    /// microseconds (decides what is batched).
    durations: HashMap<Box<str>, u64>,
}

async fn worker_main(options: WorkerOptions) -> Result<()> {
    let store: Store = Arc::new(Mutex::new(crate::store::Store::new(options.memory.clone())));
    let scheme = if options.tls.is_some() { "tls" } else { "tcp" };
    let listener = Listener::bind_with(
        &format!("{scheme}://{}:0", options.host),
        options.limits,
        options.tls.clone(),
    )
    .await
    .map_err(|e| Error::from(e).context(format!("while opening this worker's peer port on {}", options.host)))?;
    let address = listener.address()?;
    let name = options.name.clone().unwrap_or_else(|| address.clone());
    tokio::spawn(peer_server(listener, store.clone(), options.token.clone()));

    let mut connection = connect_with_retry(
        &options.scheduler,
        options.limits,
        options.tls.as_ref(),
        options.connect_timeout,
    )
    .await?;
    connection
        .send(&Hello {
            protocol: PROTOCOL_VERSION,
            build_id: identity::build_id().to_string(),
            role: Role::Worker {
                info: WorkerInfo {
                    name: name.clone(),
                    threads: options.threads.max(1) as u32,
                    memory_limit: options.memory.limit,
                    resources: Default::default(),
                },
                address: address.clone(),
            },
            token: options.token.clone(),
        })
        .await?;
    let scheduler = options.scheduler.clone();
    let me = match connection.recv().await? {
        Some(raw) => match raw.decode::<Welcome>()? {
            Welcome::Accepted { id } => WorkerId::new(id),
            Welcome::Refused { reason } => {
                return Err(Error::new(
                    ErrorKind::BuildMismatch,
                    format!("the scheduler at {scheduler} refused this worker: {reason}"),
                ));
            }
        },
        None => {
            return Err(Error::new(
                ErrorKind::Remote,
                format!("the scheduler at {scheduler} closed the connection during the handshake"),
            ));
        }
    };
    tracing::info!("{me} ({name}) serving {scheduler}, peers fetch from {address}");

    let (internal_tx, mut internal) = mpsc::unbounded_channel::<Internal>();
    let (to_scheduler, outgoing) = mpsc::unbounded_channel::<Outgoing>();
    let (mut reader, writer) = connection.into_split();
    tokio::spawn(scheduler_writer(writer, outgoing));
    let forward = internal_tx.clone();
    tokio::spawn(async move {
        loop {
            match reader.recv().await {
                Ok(Some(raw)) => match raw.decode::<Vec<Envelope<ToWorker>>>() {
                    Ok(envelopes) => {
                        for envelope in envelopes {
                            if forward.send(Internal::Scheduler(envelope)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = forward.send(Internal::SchedulerClosed(format!("it sent a malformed message: {e}")));
                        return;
                    }
                },
                Ok(None) => {
                    let _ = forward.send(Internal::SchedulerClosed("it closed the connection".into()));
                    return;
                }
                Err(e) => {
                    let _ = forward.send(Internal::SchedulerClosed(e.to_string()));
                    return;
                }
            }
        }
    });

    let mut core = Core {
        me,
        address: address.clone(),
        threads: options.threads.max(1),
        store,
        tasks: IdMap::default(),
        ready: BTreeSet::new(),
        running: 0,
        peers: HashMap::new(),
        wanted: IdMap::default(),
        in_flight: HashSet::default(),
        waiters: IdMap::default(),
        to_scheduler,
        internal: internal_tx,
        pool: PeerPool::new(
            options.limits,
            options.token.clone(),
            options.tls.clone(),
            me.to_string(),
        ),
        paused: false,
        durations: HashMap::new(),
    };
    let mut heartbeat = tokio::time::interval(options.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(message) = internal.recv() => match message {
                Internal::Scheduler(envelope) => {
                    if let ToWorker::Close { reason } = &envelope.message {
                        tracing::info!("{me}: the scheduler closed: {reason}");
                        return Ok(());
                    }
                    core.on_scheduler(envelope);
                }
                Internal::SchedulerClosed(why) => {
                    // A worker without its scheduler has nothing left to do.
                    tracing::info!("{me}: lost the scheduler at {scheduler}: {why}");
                    return Ok(());
                }
                Internal::Done(done) => core.on_done(done),
                Internal::Fetched { holder, found, missing } => core.on_fetched(holder, found, missing),
            },
            _ = heartbeat.tick() => {
                let (managed, spilled) = {
                    let store = core.store.lock().expect("store lock");
                    (store.memory(), store.spilled())
                };
                let metrics = WorkerMetrics {
                    memory: resident_memory().unwrap_or(managed),
                    spilled,
                    cpu: 0.0,
                    executing: core.running as u32,
                };
                core.send(WorkerMessage::Heartbeat(metrics));
            }
        }
        core.dispatch();
    }
}

/// Connects, retrying while nothing listens there yet (a scheduler still
/// starting); any other failure (a refused certificate) is final at once.
pub(crate) async fn connect_with_retry(
    address: &str,
    limits: FrameLimits,
    tls: Option<&crate::tls::Tls>,
    timeout: Duration,
) -> Result<Connection> {
    let start = Instant::now();
    loop {
        match Connection::connect_with(address, limits, tls).await {
            Ok(c) => return Ok(c),
            Err(crate::frame::FrameError::Io(e))
                if e.kind() == std::io::ErrorKind::ConnectionRefused && start.elapsed() < timeout =>
            {
                tracing::debug!("cannot reach the scheduler at {address} yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Remote,
                    format!("cannot connect to the scheduler at {address} (tried for {timeout:?}): {e}"),
                ));
            }
        }
    }
}

/// A message for the scheduler, and whom to tell once it is on the wire.
type Outgoing = (WorkerMessage, Option<oneshot::Sender<()>>);

async fn scheduler_writer(mut writer: ConnectionWriter, mut queue: mpsc::UnboundedReceiver<Outgoing>) {
    // Everything queued goes out as frames of many messages (the scheduler
    // reads a frame as a `Vec<WorkerMessage>`), flushed once.
    let mut batch = crate::frame::Batch::new();
    let mut sent = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some((message, notify)) = next {
            if writer.batch(&mut batch, &message).await.is_err() {
                return;
            }
            if batch.len() >= crate::server::MAX_BATCH && writer.feed_batch(&mut batch).await.is_err() {
                return;
            }
            sent.extend(notify);
            next = queue.try_recv().ok();
        }
        if writer.feed_batch(&mut batch).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        for notify in sent.drain(..) {
            let _ = notify.send(());
        }
    }
}

impl Core {
    fn send(&self, message: WorkerMessage) {
        let _ = self.to_scheduler.send((message, None));
    }

    fn on_scheduler(&mut self, envelope: Envelope<ToWorker>) {
        let stimulus = envelope.stimulus;
        match envelope.message {
            ToWorker::Compute(compute) => self.on_compute(compute),
            ToWorker::Free(tasks) => {
                let mut store = self.store.lock().expect("store lock");
                for t in tasks {
                    store.remove(&t);
                }
                drop(store);
                self.check_pause();
            }
            ToWorker::Cancel(tasks) => {
                let mut store = self.store.lock().expect("store lock");
                for t in tasks {
                    store.remove(&t);
                    if let Some(a) = self.tasks.remove(&t) {
                        self.ready.remove(&(a.compute.priority, t));
                    }
                }
                drop(store);
                self.check_pause();
            }
            ToWorker::StealRequest(task) => self.on_steal_request(task, stimulus),
            ToWorker::UpdateWhoHas { task, who_has } => {
                if let Some(holders) = self.wanted.get_mut(&task) {
                    *holders = who_has;
                    self.fetch(&[task]);
                }
            }
            ToWorker::Peers { joined, left } => {
                for (w, address) in joined {
                    self.peers.insert(w, address);
                }
                for w in left {
                    self.peers.remove(&w);
                }
            }
            ToWorker::Close { .. } => {}
        }
    }

    fn on_compute(&mut self, compute: Box<ComputeTask>) {
        let task = compute.task;
        let mut missing = Vec::new();
        {
            let store = self.store.lock().expect("store lock");
            for input in &compute.inputs {
                if !store.contains(&input.task) {
                    missing.push((input.task, input.who_has.clone()));
                }
            }
        }
        let priority = compute.priority;
        let phase = if missing.is_empty() {
            Phase::Ready
        } else {
            Phase::Fetching
        };
        if let Some(old) = self.tasks.insert(
            task,
            Assigned {
                compute,
                phase,
                present: 0,
            },
        ) {
            self.ready.remove(&(old.compute.priority, task));
        }
        if phase == Phase::Ready {
            self.ready.insert((priority, task));
            return;
        }
        let inputs: Vec<TaskId> = missing.iter().map(|(i, _)| *i).collect();
        for (input, who_has) in missing {
            self.waiters.entry(input).or_default().push(task);
            self.wanted.insert(input, who_has);
        }
        self.fetch(&inputs);
    }

    /// Starts fetching `inputs` (those not here nor on their way already),
    /// one request per holder.
    fn fetch(&mut self, inputs: &[TaskId]) {
        let mut by_holder: HashMap<WorkerId, Vec<TaskId>> = HashMap::new();
        for &input in inputs {
            if self.in_flight.contains(&input) || self.store.lock().expect("store lock").contains(&input) {
                continue;
            }
            let Some(holders) = self.wanted.get(&input) else {
                continue;
            };
            // Spread fetches over holders; skip ourselves and unknown peers.
            let candidates: Vec<WorkerId> = holders
                .iter()
                .copied()
                .filter(|w| *w != self.me && self.peers.contains_key(w))
                .collect();
            match candidates.get(input.slot() as usize % candidates.len().max(1)) {
                Some(&holder) => {
                    self.in_flight.insert(input);
                    by_holder.entry(holder).or_default().push(input);
                }
                None => {
                    // Nobody reachable holds it: tell the scheduler about each
                    // holder it named, so it sends new holders or recomputes
                    // the input.
                    for &h in holders {
                        self.send(WorkerMessage::DataMissing { task: input, holder: h });
                    }
                    self.wanted.insert(input, Vec::new());
                }
            }
        }
        for (holder, batch) in by_holder {
            let address = self.peers[&holder].clone();
            let internal = self.internal.clone();
            let pool = self.pool.clone();
            let me = self.me;
            // One request at a time per holder, each within what one
            // response may carry (a payload per result): a task reading a
            // million inputs fetches them in rounds, each handled as it
            // arrives, over one connection.
            tokio::spawn(async move {
                for chunk in batch.chunks(FETCH_BATCH) {
                    let message = match pool.fetch(&address, chunk.to_vec()).await {
                        Ok(PeerData { found, missing }) => Internal::Fetched { holder, found, missing },
                        Err(e) => {
                            tracing::warn!(
                                "{me}: fetching {} results from {holder} at {address} failed: {e}",
                                chunk.len()
                            );
                            Internal::Fetched {
                                holder,
                                found: vec![],
                                missing: chunk.to_vec(),
                            }
                        }
                    };
                    if internal.send(message).is_err() {
                        return;
                    }
                }
            });
        }
    }

    fn on_fetched(&mut self, holder: WorkerId, found: Vec<(TaskId, Value)>, missing: Vec<TaskId>) {
        let mut arrived = Vec::new();
        {
            let mut store = self.store.lock().expect("store lock");
            for (t, v) in found {
                self.in_flight.remove(&t);
                if self.wanted.remove(&t).is_some() {
                    store.insert(t, v);
                    arrived.push(t);
                }
            }
        }
        if !arrived.is_empty() {
            self.send(WorkerMessage::ReplicasAdded { tasks: arrived.clone() });
            self.check_pause();
        }
        let mut again = Vec::new();
        for t in missing {
            self.in_flight.remove(&t);
            self.send(WorkerMessage::DataMissing { task: t, holder });
            if let Some(holders) = self.wanted.get_mut(&t) {
                holders.retain(|w| *w != holder);
                if !holders.is_empty() {
                    again.push(t);
                }
            }
        }
        self.fetch(&again);
        for input in arrived {
            for task in self.waiters.remove(&input).unwrap_or_default() {
                self.maybe_ready(task);
            }
        }
    }

    fn maybe_ready(&mut self, task: TaskId) {
        let Some(a) = self.tasks.get_mut(&task) else {
            return;
        };
        if a.phase != Phase::Fetching {
            return;
        }
        let store = self.store.lock().expect("store lock");
        let inputs = &a.compute.inputs;
        while a.present < inputs.len() && store.contains(&inputs[a.present].task) {
            a.present += 1;
        }
        if a.present == inputs.len() {
            a.phase = Phase::Ready;
            self.ready.insert((a.compute.priority, task));
        }
    }

    /// Pauses (no new tasks from the scheduler) while memory is over the
    /// pause threshold even after spilling; resumes below it.
    fn check_pause(&mut self) {
        let over = self.store.lock().expect("store lock").over_pause();
        if over != self.paused {
            self.paused = over;
            let what = if over {
                "paused: memory over the pause threshold"
            } else {
                "resumed"
            };
            tracing::info!("{}: {what}", self.me);
            self.send(WorkerMessage::Paused(over));
        }
    }

    fn on_steal_request(&mut self, task: TaskId, request: StimulusId) {
        let outcome = match self.tasks.get(&task) {
            Some(a) if a.phase == Phase::Running => StealOutcome::Running,
            Some(a) => {
                let priority = a.compute.priority;
                self.ready.remove(&(priority, task));
                self.tasks.remove(&task);
                StealOutcome::Released
            }
            None => StealOutcome::NotHere,
        };
        self.send(WorkerMessage::StealResponse { task, request, outcome });
    }

    /// Starts ready tasks while threads are free, most urgent first.
    ///
    /// A thread is given a *batch*: the most urgent ready task, and after
    /// it, while their expected time (learned per key prefix on this
    /// worker) stays within [`BATCH_WINDOW_US`], the next ones — at most
    /// an equal share of the ready tasks per free thread. A task of a
    /// prefix never run here, or one that workers died running before
    /// (`suspicious`), runs alone. One `Started` flush and one thread
    /// hand-off per batch, not per task, is what makes tiny tasks cheap.
    fn dispatch(&mut self) {
        while self.running < self.threads {
            let free = self.threads - self.running;
            let share = self.ready.len().div_ceil(free).clamp(1, MAX_BATCH);
            let mut batch: Vec<Job> = Vec::new();
            let mut expected = 0u64;
            while batch.len() < share {
                let Some(&(_, task)) = self.ready.first() else {
                    break;
                };
                let Some(a) = self.tasks.get(&task) else {
                    self.ready.pop_first();
                    continue;
                };
                let cost = if a.compute.suspicious > 0 {
                    None
                } else {
                    self.durations.get(a.compute.key.name.prefix()).copied()
                };
                if !batch.is_empty() && cost.is_none_or(|c| expected + c > BATCH_WINDOW_US) {
                    break;
                }
                self.ready.pop_first();
                if let Some(job) = self.prepare(task) {
                    batch.push(job);
                    expected += cost.unwrap_or(BATCH_WINDOW_US);
                }
            }
            if batch.is_empty() {
                if self.ready.is_empty() {
                    return;
                }
                continue;
            }
            self.running += 1;
            // The batch starts only once the scheduler's connection carries
            // its `Started`s: if a task then kills this process, the
            // scheduler knows which tasks to suspect (and fails the culprit
            // with KilledWorker after `allowed-failures` deaths instead of
            // retrying forever; a suspect runs alone from then on).
            let (on_wire, wired) = oneshot::channel();
            let last = batch.len() - 1;
            let mut on_wire = Some(on_wire);
            for (i, job) in batch.iter().enumerate() {
                let notify = if i == last { on_wire.take() } else { None };
                let _ = self.to_scheduler.send((
                    WorkerMessage::Started {
                        task: job.task,
                        run: job.run,
                    },
                    notify,
                ));
            }
            let internal = self.internal.clone();
            tokio::task::spawn_blocking(move || {
                // An error means the connection is gone: the worker is
                // ending, and the results will not be reported anyway.
                let _ = wired.blocking_recv();
                let done = batch
                    .into_iter()
                    .map(|job| {
                        let start = Instant::now();
                        let outcome = run_task(&job.key, &job.spec, &job.inputs);
                        Done {
                            task: job.task,
                            run: job.run,
                            outcome,
                            duration: start.elapsed(),
                        }
                    })
                    .collect();
                let _ = internal.send(Internal::Done(done));
            });
        }
    }

    /// Lines up a ready task's inputs and marks it running; a task whose
    /// input was freed meanwhile goes back to fetching it (`None`).
    fn prepare(&mut self, task: TaskId) -> Option<Job> {
        let a = self.tasks.get_mut(&task)?;
        let mut store = self.store.lock().expect("store lock");
        let mut inputs: HashMap<Key, Value> = HashMap::with_capacity(a.compute.inputs.len());
        let mut missing = Vec::new();
        for i in &a.compute.inputs {
            match store.get(&i.task) {
                Ok(Some(v)) => {
                    inputs.insert(i.key.clone(), v);
                }
                Ok(None) => missing.push((i.task, i.who_has.clone())),
                Err(e) => {
                    // A spilled value that cannot be read back is gone:
                    // fetch it anew (or have it recomputed).
                    tracing::warn!("{}: {e}", self.me);
                    store.remove(&i.task);
                    missing.push((i.task, i.who_has.clone()));
                }
            }
        }
        drop(store);
        if !missing.is_empty() {
            a.phase = Phase::Fetching;
            a.present = 0;
            let fetch: Vec<TaskId> = missing.iter().map(|(i, _)| *i).collect();
            for (input, who_has) in missing {
                self.waiters.entry(input).or_default().push(task);
                self.wanted.insert(input, who_has);
            }
            self.fetch(&fetch);
            return None;
        }
        a.phase = Phase::Running;
        let compute = &a.compute;
        Some(Job {
            task,
            run: compute.run,
            key: compute.key.clone(),
            spec: compute.spec.clone(),
            inputs,
        })
    }

    /// A thread finished a batch: keep the results of the runs still
    /// current and report each.
    fn on_done(&mut self, done: Vec<Done>) {
        self.running -= 1;
        let mut stored = false;
        for Done {
            task,
            run,
            outcome,
            duration,
        } in done
        {
            let current = self
                .tasks
                .get(&task)
                .is_some_and(|a| a.compute.run == run && a.phase == Phase::Running);
            if !current {
                // Cancelled while it ran: the scheduler ignores this run.
                continue;
            }
            let assigned = self.tasks.remove(&task).expect("checked above");
            let prefix = assigned.compute.key.name.prefix();
            let us = duration.as_micros() as u64;
            match self.durations.get_mut(prefix) {
                Some(d) => *d = *d / 2 + us / 2,
                None => {
                    self.durations.insert(prefix.into(), us);
                }
            }
            match outcome {
                Ok(value) => {
                    let nbytes = value.size_bytes() as u64;
                    self.store.lock().expect("store lock").insert(task, value);
                    stored = true;
                    self.send(WorkerMessage::Finished {
                        task,
                        run,
                        nbytes,
                        duration_us: us,
                    });
                }
                Err(message) => self.send(WorkerMessage::Erred {
                    task,
                    run,
                    message: format!("{message} (on {} at {})", self.me, self.address),
                }),
            }
        }
        if stored {
            self.check_pause();
        }
    }
}

/// Expected run time, microseconds, up to which ready tasks are batched
/// onto one thread.
const BATCH_WINDOW_US: u64 = 1000;

/// The most tasks in one batch.
const MAX_BATCH: usize = 256;

/// Results asked of one peer in one request (a response carries a payload
/// per result, within [`FrameLimits::max_payloads`]).
const FETCH_BATCH: usize = 1024;

/// A task handed to a thread, its inputs lined up.
struct Job {
    task: TaskId,
    run: crate::id::RunId,
    key: Key,
    spec: crate::scheduler::TaskSpec,
    inputs: HashMap<Key, Value>,
}

/// How one task of a batch went.
struct Done {
    task: TaskId,
    run: crate::id::RunId,
    outcome: std::result::Result<Value, String>,
    duration: Duration,
}

/// Runs one task: rebuilds its op, lines up its arguments, calls it with
/// panics caught.
fn run_task(
    key: &Key,
    spec: &crate::scheduler::TaskSpec,
    inputs: &HashMap<Key, Value>,
) -> std::result::Result<Value, String> {
    let task = decode_task(key, spec).map_err(|e| e.to_string())?;
    let args = task
        .inputs
        .into_iter()
        .map(|a| match a {
            Argument::Value(v) => Ok(v),
            Argument::Key(k) => inputs
                .get(&k)
                .cloned()
                .ok_or_else(|| format!("task {key} reads {k}, which is not among its inputs")),
        })
        .collect::<std::result::Result<Vec<Value>, String>>()?;
    match catch_unwind(AssertUnwindSafe(|| task.op.call(&args))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => Err(format!(
            "panicked in op {}: {}",
            task.op.name(),
            blockwise_local::engine::panic_message(&payload)
        )),
    }
}

/// Connections to peers (workers serving results), kept open and reused:
/// a reduction fetches from the same few peers over and over.
#[derive(Clone)]
pub(crate) struct PeerPool {
    idle: Arc<Mutex<HashMap<String, Vec<Connection>>>>,
    limits: FrameLimits,
    tls: Option<crate::tls::Tls>,
    token: Option<String>,
    /// Who is asking, for the peers' logs.
    who: String,
}

impl PeerPool {
    pub(crate) fn new(limits: FrameLimits, token: Option<String>, tls: Option<crate::tls::Tls>, who: String) -> Self {
        PeerPool {
            idle: Arc::default(),
            limits,
            tls,
            token,
            who,
        }
    }

    /// Fetches `tasks` from the peer at `address`: what it sent, and what
    /// it did not have.
    pub(crate) async fn fetch(&self, address: &str, tasks: Vec<TaskId>) -> Result<PeerData> {
        let idle = self
            .idle
            .lock()
            .expect("pool lock")
            .get_mut(address)
            .and_then(|v| v.pop());
        if let Some(mut connection) = idle {
            // The peer may have closed an idle connection: then one retry
            // on a new one.
            if let Ok(data) = request(&mut connection, address, tasks.clone()).await {
                self.put_back(address, connection);
                return Ok(data);
            }
        }
        let mut connection = self.open(address).await?;
        let data = request(&mut connection, address, tasks).await?;
        self.put_back(address, connection);
        Ok(data)
    }

    fn put_back(&self, address: &str, connection: Connection) {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(address.to_string()).or_default();
        // A few per peer cover the fetches a worker makes at once.
        if list.len() < 4 {
            list.push(connection);
        }
    }

    async fn open(&self, address: &str) -> Result<Connection> {
        let mut connection = Connection::connect_with(address, self.limits, self.tls.as_ref())
            .await
            .map_err(|e| Error::from(e).context(format!("while connecting to the worker at {address}")))?;
        connection
            .send(&Hello {
                protocol: PROTOCOL_VERSION,
                build_id: identity::build_id().to_string(),
                role: Role::Peer { name: self.who.clone() },
                token: self.token.clone(),
            })
            .await?;
        match connection
            .recv()
            .await?
            .map(|raw| raw.decode::<Welcome>())
            .transpose()?
        {
            Some(Welcome::Accepted { .. }) => Ok(connection),
            Some(Welcome::Refused { reason }) => Err(Error::new(
                ErrorKind::Remote,
                format!("the worker at {address} refused: {reason}"),
            )),
            None => Err(Error::new(
                ErrorKind::Remote,
                format!("the worker at {address} closed the connection"),
            )),
        }
    }
}

async fn request(connection: &mut Connection, address: &str, tasks: Vec<TaskId>) -> Result<PeerData> {
    connection.send(&PeerRequest::GetData(tasks)).await?;
    let raw = connection.recv().await?.ok_or_else(|| {
        Error::new(
            ErrorKind::Remote,
            format!("the worker at {address} closed the connection"),
        )
    })?;
    let response: PeerResponse = raw.decode()?;
    let raw_len: usize = raw.payloads.iter().map(Vec::len).sum();
    if response.found.len() != raw.payloads.len() {
        return Err(Error::codec(format!(
            "the worker at {address} sent {} payloads for {} results",
            raw.payloads.len(),
            response.found.len()
        )));
    }
    let address = address.to_string();
    let decode = move || {
        let found = response
            .found
            .into_iter()
            .zip(raw.payloads)
            .map(|((t, codec), bytes)| {
                decode_value(&codec, &bytes)
                    .map(|v| (t, v))
                    .map_err(|e| e.context(format!("in {t} from the worker at {address}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PeerData {
            found,
            missing: response.missing,
        })
    };
    // Decoding is a pass over every byte: a large response is decoded on a
    // blocking thread, so the thread of the worker's core (and of its
    // connections) goes on meanwhile; small ones, the common case of tiny
    // tasks, are decoded here without a thread hand-off.
    let bytes: usize = raw_len;
    if bytes < DECODE_INLINE_BYTES {
        return decode();
    }
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|e| Error::new(ErrorKind::Remote, format!("decoding results from a peer failed: {e}")))?
}

/// Responses up to this many bytes are encoded and decoded on the thread
/// of the connection; larger ones on a blocking thread.
const DECODE_INLINE_BYTES: usize = 1 << 20;

/// What a peer sent: the results it had, and the ones it did not.
pub(crate) struct PeerData {
    pub(crate) found: Vec<(TaskId, Value)>,
    pub(crate) missing: Vec<TaskId>,
}

/// Serves results to peers and clients.
async fn peer_server(listener: Listener, store: Store, token: Option<String>) {
    loop {
        let incoming = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!("peer port: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let store = store.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let peer = incoming.peer();
            let connection = match incoming.establish().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("refused {peer}: {e}");
                    return;
                }
            };
            if let Err(e) = serve_peer(connection, store, token).await {
                tracing::debug!("peer {peer}: {e}");
            }
        });
    }
}

async fn serve_peer(mut connection: Connection, store: Store, token: Option<String>) -> Result<()> {
    let Some(raw) = connection.recv().await? else {
        return Ok(());
    };
    let hello: Hello = raw.decode()?;
    if token.is_some() && hello.token != token {
        let reason = "wrong or missing token".to_string();
        tracing::warn!("refused {}: {reason}", connection.peer());
        connection.send(&Welcome::Refused { reason }).await?;
        return Ok(());
    }
    connection.send(&Welcome::Accepted { id: 0 }).await?;
    while let Some(raw) = connection.recv().await? {
        let PeerRequest::GetData(tasks) = raw.decode()?;
        let values: Vec<(TaskId, Option<crate::store::ForPeer>)> = {
            let store = store.lock().expect("store lock");
            tasks.into_iter().map(|t| (t, store.for_peer(&t))).collect()
        };
        // Encoding large values (a pass over every byte) and reading spilled
        // ones run on a blocking thread: this thread also carries the
        // worker's core and its scheduler connection. Small values in
        // memory, the common case of tiny tasks, are encoded here.
        let inline = values
            .iter()
            .map(|(_, v)| v.as_ref().map_or(Some(0), crate::store::ForPeer::in_memory_bytes))
            .try_fold(0usize, |total, bytes| bytes.map(|b| total + b))
            .is_some_and(|total| total < DECODE_INLINE_BYTES);
        let (response, payloads) = if inline {
            encode_for_peer(values)
        } else {
            tokio::task::spawn_blocking(move || encode_for_peer(values))
                .await
                .map_err(|e| Error::new(ErrorKind::Remote, format!("encoding results for a peer failed: {e}")))?
        };
        let slices: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
        connection.send_with(&response, &slices).await?;
    }
    Ok(())
}

/// The answer to a `GetData`: what was found, encoded, and what was not.
fn encode_for_peer(values: Vec<(TaskId, Option<crate::store::ForPeer>)>) -> (PeerResponse, Vec<crate::store::Bytes>) {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    let mut payloads = Vec::new();
    for (t, v) in values {
        match v.map(|v| v.encode()) {
            Some(Ok(encoded)) => {
                found.push((t, encoded.codec));
                payloads.push(encoded.bytes);
            }
            Some(Err(e)) => {
                tracing::warn!("cannot send {t}: {e}");
                missing.push(t);
            }
            None => missing.push(t),
        }
    }
    (PeerResponse { found, missing }, payloads)
}

/// Resident memory of this process, bytes (Linux).
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
