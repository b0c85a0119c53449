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
//!   and their reports go out together. One more batch per thread waits
//!   queued behind the running one, so a thread goes from batch to batch
//!   without waiting to be woken (see `Core::dispatch`).
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
use crate::store::{ForPeer, MemoryLimits};
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
    /// A thread finished a batch of tasks (`suspect`: the batch held a
    /// task suspected of killing workers).
    Done {
        done: Vec<Done>,
        suspect: bool,
    },
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
    /// Batches handed to the task threads: running, or queued behind the
    /// running ones (see [`Core::dispatch`]).
    running: usize,
    /// Of those, the batches holding a suspect task.
    suspects_handed: usize,
    /// The task threads' queue of batches.
    runners: std::sync::mpsc::Sender<Handed>,
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
    let runners = start_task_threads(options.threads.max(1), &internal_tx)?;
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
        suspects_handed: 0,
        runners,
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
                Internal::Done { done, suspect } => core.on_done(done, suspect),
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
                    executing: core.running.min(core.threads) as u32,
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
    ///
    /// Beyond the free threads, one more batch per thread is handed
    /// *ahead*: it waits in the threads' queue with its `Started`s already
    /// on the wire, and the thread that finishes a batch goes on with it at
    /// once instead of sleeping until the core hears of the finish and
    /// wakes it again (the hand-off that otherwise idles a thread between
    /// batches of tiny tasks). Only plain batches go ahead — none with a
    /// suspect or a task of unknown duration, and none while a suspect's
    /// batch is handed — so a task that kills its worker takes with it, as
    /// started, at most the batches queued behind it the first time, and
    /// runs alone (nothing queued behind it) from then on.
    fn dispatch(&mut self) {
        loop {
            let ahead = self.running >= self.threads;
            if ahead && (self.running >= 2 * self.threads || self.suspects_handed > 0) {
                return;
            }
            let free = self.threads.saturating_sub(self.running).max(1);
            let share = self.ready.len().div_ceil(free).clamp(1, MAX_BATCH);
            let mut batch: Vec<Job> = Vec::new();
            let mut expected = 0u64;
            let mut suspect = false;
            while batch.len() < share {
                let Some(&(_, task)) = self.ready.first() else {
                    break;
                };
                let Some(a) = self.tasks.get(&task) else {
                    self.ready.pop_first();
                    continue;
                };
                let suspicious = a.compute.suspicious > 0;
                let cost = if suspicious {
                    None
                } else {
                    self.durations.get(a.compute.key.name.prefix()).copied()
                };
                if ahead && cost.is_none() {
                    break;
                }
                if !batch.is_empty() && cost.is_none_or(|c| expected + c > BATCH_WINDOW_US) {
                    break;
                }
                self.ready.pop_first();
                if let Some(job) = self.prepare(task) {
                    batch.push(job);
                    expected += cost.unwrap_or(BATCH_WINDOW_US);
                    suspect |= suspicious;
                }
            }
            if batch.is_empty() {
                if self.ready.is_empty() || ahead {
                    return;
                }
                continue;
            }
            self.running += 1;
            if suspect {
                self.suspects_handed += 1;
            }
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
            // An error means the task threads are gone: the worker is
            // ending.
            let _ = self.runners.send(Handed { batch, wired, suspect });
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
    fn on_done(&mut self, done: Vec<Done>, suspect: bool) {
        self.running -= 1;
        if suspect {
            self.suspects_handed -= 1;
        }
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

/// Results asked of one peer in one request (a response carries two
/// payloads per result, within [`FrameLimits::max_payloads`]).
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
/// A batch handed to the task threads, with the signal that its
/// `Started`s are on the wire.
struct Handed {
    batch: Vec<Job>,
    wired: oneshot::Receiver<()>,
    suspect: bool,
}

/// Starts the worker's task threads: each takes the next batch from the
/// queue, waits until its `Started`s are on the wire, runs it and reports
/// it to the core; they end when the core (the queue's sender) is gone.
fn start_task_threads(
    threads: usize,
    internal: &mpsc::UnboundedSender<Internal>,
) -> Result<std::sync::mpsc::Sender<Handed>> {
    let (runners, queue) = std::sync::mpsc::channel::<Handed>();
    let queue = Arc::new(Mutex::new(queue));
    for i in 0..threads {
        let queue = queue.clone();
        let internal = internal.clone();
        std::thread::Builder::new()
            .name(format!("blockwise-task-{i}"))
            .spawn(move || run_batches(&queue, &internal))
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start a task thread: {e}")))?;
    }
    Ok(runners)
}

/// The loop of one task thread (see [`start_task_threads`]).
fn run_batches(queue: &Mutex<std::sync::mpsc::Receiver<Handed>>, internal: &mpsc::UnboundedSender<Internal>) {
    loop {
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(Handed { batch, wired, suspect }) = next else {
            return;
        };
        // An error means the connection is gone: the worker is ending, and
        // the results will not be reported anyway.
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
        if internal.send(Internal::Done { done, suspect }).is_err() {
            return;
        }
    }
}

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
        if let Some(connection) = idle {
            // The peer may have closed an idle connection: then one retry
            // on a new one.
            if let Ok((data, connection)) = request(connection, address, tasks.clone()).await {
                self.put_back(address, connection);
                return Ok(data);
            }
        }
        let connection = self.open(address).await?;
        let (data, connection) = request(connection, address, tasks).await?;
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

/// Sends `tasks` to the peer at `address` and receives its answer; the
/// connection comes back with it (it is dropped on an error).
async fn request(mut connection: Connection, address: &str, tasks: Vec<TaskId>) -> Result<(PeerData, Connection)> {
    connection.send(&PeerRequest::GetData(tasks)).await?;
    let head = connection.recv_head().await?.ok_or_else(|| {
        Error::new(
            ErrorKind::Remote,
            format!("the worker at {address} closed the connection"),
        )
    })?;
    let response: PeerResponse = head.decode()?;
    let lengths = &head.payload_lengths;
    if lengths.len() != 2 * response.found.len() {
        return Err(Error::codec(format!(
            "the worker at {address} sent {} payloads for {} results (a head and a body each)",
            lengths.len(),
            response.found.len()
        )));
    }
    // The lengths were checked against the frame limits as the head was
    // read; they fit in memory sizes.
    let size = |len: u64| usize::try_from(len).expect("a checked length fits in memory");
    let mut found = Vec::with_capacity(response.found.len());
    let mut to_decode = Vec::new();
    let mut to_decode_bytes = 0;
    for (i, (t, codec)) in response.found.into_iter().enumerate() {
        let mut bytes = vec![0u8; size(lengths[2 * i])];
        connection.read_payload(&mut bytes).await?;
        let body_len = size(lengths[2 * i + 1]);
        // A body to receive into the value's own storage: read from the
        // socket straight into it, no decode pass, no copy.
        if body_len > 0
            && let Some(receiving) = blockwise_core::value::receive_value(&codec, &bytes, body_len)
        {
            let mut receiving = receiving.map_err(|e| e.context(format!("in {t} from the worker at {address}")))?;
            if body_len >= LARGE_BODY_BYTES {
                (connection, receiving) = receive_large(connection, receiving).await?;
            } else {
                connection.read_payload(receiving.body()).await?;
            }
            let value = receiving
                .finish()
                .map_err(|e| e.context(format!("in {t} from the worker at {address}")))?;
            found.push((t, value));
            continue;
        }
        let at = bytes.len();
        bytes.resize(at + body_len, 0);
        connection.read_payload(&mut bytes[at..]).await?;
        to_decode_bytes += bytes.len();
        to_decode.push((t, codec, bytes));
    }
    let address = address.to_string();
    let decode = move || {
        for (t, codec, bytes) in to_decode {
            let value =
                decode_value(&codec, &bytes).map_err(|e| e.context(format!("in {t} from the worker at {address}")))?;
            found.push((t, value));
        }
        Ok(PeerData {
            found,
            missing: response.missing,
        })
    };
    // Decoding is a pass over every byte: a large response is decoded on a
    // blocking thread, so the thread of the worker's core (and of its
    // connections) goes on meanwhile; small ones, the common case of tiny
    // tasks, are decoded here without a thread hand-off.
    let data: Result<PeerData> = if to_decode_bytes < DECODE_INLINE_BYTES {
        decode()
    } else {
        tokio::task::spawn_blocking(decode)
            .await
            .map_err(|e| Error::new(ErrorKind::Remote, format!("decoding results from a peer failed: {e}")))?
    };
    Ok((data?, connection))
}

/// Bodies of at least this many bytes are received by
/// [`receive_large`]; smaller ones are read on the connection's task.
const LARGE_BODY_BYTES: usize = 32 << 20;

/// Reads the next payload of `connection` into `receiving`'s body on a
/// blocking thread, with the body's fresh memory faulted in ahead of the
/// reads on another core ([`Connection::read_large_payload`]): reading
/// 1 GB into fresh memory on one thread spends more time faulting its
/// pages in than copying. If this future is dropped, the read stops at its
/// next wait for data and the connection is closed.
async fn receive_large(
    mut connection: Connection,
    mut receiving: Box<dyn blockwise_core::value::Receiving>,
) -> Result<(Connection, Box<dyn blockwise_core::value::Receiving>)> {
    let runtime = tokio::runtime::Handle::current();
    let (_waiting, mut abandoned) = oneshot::channel();
    let (connection, receiving, read) = tokio::task::spawn_blocking(move || {
        let read = connection.read_large_payload(&runtime, receiving.body(), &mut abandoned);
        (connection, receiving, read)
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Remote, format!("receiving a result from a peer failed: {e}")))?;
    read?;
    Ok((connection, receiving))
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
        let values: Vec<(TaskId, Option<ForPeer>)> = {
            let store = store.lock().expect("store lock");
            tasks.into_iter().map(|t| (t, store.for_peer(&t))).collect()
        };
        // Values that lend their encoding (array chunks) are sent from their
        // own memory: a header, then the elements as they are.
        let mut parts: Vec<Option<Part<'_>>> = values.iter().map(|(_, v)| v.as_ref().and_then(lend)).collect();
        // The others are encoded. Encoding large values (a pass over every
        // byte) and reading spilled ones run on a blocking thread: this
        // thread also carries the worker's core and its scheduler
        // connection. Small values in memory, the common case of tiny
        // tasks, are encoded here.
        let to_encode: Vec<(usize, ForPeer)> = values
            .iter()
            .zip(&parts)
            .enumerate()
            .filter_map(|(i, ((_, v), part))| match (v, part) {
                (Some(v), None) => Some((i, v.clone())),
                _ => None,
            })
            .collect();
        let inline = to_encode
            .iter()
            .map(|(_, v)| v.in_memory_bytes())
            .try_fold(0usize, |total, bytes| bytes.map(|b| total + b))
            .is_some_and(|total| total < DECODE_INLINE_BYTES);
        let encoded = if inline {
            encode_for_peer(to_encode)
        } else {
            tokio::task::spawn_blocking(move || encode_for_peer(to_encode))
                .await
                .map_err(|e| Error::new(ErrorKind::Remote, format!("encoding results for a peer failed: {e}")))?
        };
        for (i, outcome) in encoded {
            match outcome {
                Ok(e) => parts[i] = Some(Part::Encoded(e)),
                Err(e) => tracing::warn!("cannot send {}: {e}", values[i].0),
            }
        }
        let mut found = Vec::new();
        let mut missing = Vec::new();
        let mut slices: Vec<&[u8]> = Vec::new();
        for ((t, _), part) in values.iter().zip(&parts) {
            match part {
                Some(Part::Lent { codec, head, body }) => {
                    found.push((*t, codec.to_string()));
                    slices.extend([head.as_slice(), body]);
                }
                Some(Part::Encoded(e)) => {
                    found.push((*t, e.codec.clone()));
                    slices.extend([&e.bytes[..], &[]]);
                }
                None => missing.push(*t),
            }
        }
        connection.send_with(&PeerResponse { found, missing }, &slices).await?;
    }
    Ok(())
}

/// How one result is sent to a peer: its header and its own memory, or
/// its encoding.
enum Part<'a> {
    Lent {
        codec: &'static str,
        head: Vec<u8>,
        body: &'a [u8],
    },
    Encoded(crate::store::Encoded),
}

/// The parts of a value in memory that lends its encoding; `None` for one
/// that does not (or that failed: it is encoded instead, which reports
/// the failure).
fn lend(v: &ForPeer) -> Option<Part<'_>> {
    let ForPeer::Value(value) = v else {
        return None;
    };
    let mut head = Vec::new();
    let body = value.encode_lent(&mut head)?.ok()?;
    Some(Part::Lent {
        codec: value.codec(),
        head,
        body,
    })
}

/// Encodes the values to send that do not lend their encoding.
fn encode_for_peer(values: Vec<(usize, ForPeer)>) -> Vec<(usize, Result<crate::store::Encoded>)> {
    values.into_iter().map(|(i, v)| (i, v.encode())).collect()
}

/// Resident memory of this process, bytes (Linux).
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use blockwise_core::value::{Data, Encoded};
    use ndarray::{ArrayD, IxDyn, ShapeBuilder};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::frame::{self, FrameLimits};
    use crate::id::Slab;
    use crate::tcp::host_port;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn pool() -> PeerPool {
        PeerPool::new(FrameLimits::default(), None, None, "test".into())
    }

    /// A peer server over `values`, and its address.
    async fn serve(values: Vec<(TaskId, Value)>) -> String {
        let store: Store = Arc::new(Mutex::new(crate::store::Store::new(MemoryLimits::default())));
        for (t, v) in values {
            store.lock().unwrap().insert(t, v);
        }
        let listener = Listener::bind("tcp://127.0.0.1:0", FrameLimits::default())
            .await
            .unwrap();
        let address = listener.address().unwrap();
        tokio::spawn(peer_server(listener, store, None));
        address
    }

    #[test]
    fn values_cross_to_a_peer_intact_lent_or_encoded() {
        let mut ids: Slab<TaskId, ()> = Slab::new();
        let t: Vec<TaskId> = (0..8).map(|_| ids.insert(())).collect();
        // Above the inline threshold: sent from its own memory, received
        // into its own storage.
        let big = ArrayD::from_shape_fn(IxDyn(&[1500, 1000]), |i| (i[0] * 1000 + i[1]) as f64 * 0.25);
        // Above `LARGE_BODY_BYTES` too: received on a blocking thread, its
        // memory faulted in ahead of the reads.
        let large = ArrayD::from_shape_fn(IxDyn(&[5, 1_000_001]), |i| (i[0] as u64) << 32 | i[1] as u64);
        assert!(large.len() * 8 >= LARGE_BODY_BYTES);
        let ints = ArrayD::from_shape_fn(IxDyn(&[3, 5]), |i| i[0] as i32 - i[1] as i32);
        // Column-major: encoded element by element instead.
        let fortran = ArrayD::from_shape_vec(IxDyn(&[2, 3]).f(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
        let flags = ArrayD::from_shape_fn(IxDyn(&[9]), |i| i[0] % 3 == 0);
        let list: Vec<i64> = (0..1000).collect();
        let empty = ArrayD::<f32>::zeros(IxDyn(&[0, 4]));
        // A value still encoded (never decoded on the sender) goes as it is.
        let mut ints_bytes = Vec::new();
        ints.encode(&mut ints_bytes).unwrap();
        let still_encoded = Encoded {
            codec: ints.codec().to_string(),
            bytes: ints_bytes.into(),
        };
        let values: Vec<Value> = vec![
            Arc::new(big.clone()),
            Arc::new(ints.clone()),
            Arc::new(fortran.clone()),
            Arc::new(flags.clone()),
            Arc::new(list.clone()),
            Arc::new(empty.clone()),
            Arc::new(still_encoded),
            Arc::new(large.clone()),
        ];
        let missing = ids.insert(());
        runtime().block_on(async {
            let address = serve(t.iter().copied().zip(values).collect()).await;
            let mut asked = t.clone();
            asked.insert(3, missing);
            let data = pool().fetch(&address, asked).await.unwrap();
            assert_eq!(data.missing, vec![missing]);
            let got: HashMap<TaskId, Value> = data.found.into_iter().collect();
            assert_eq!(got.len(), t.len());
            assert_eq!(got[&t[0]].downcast_ref::<ArrayD<f64>>(), Some(&big));
            assert_eq!(got[&t[1]].downcast_ref::<ArrayD<i32>>(), Some(&ints));
            assert_eq!(got[&t[2]].downcast_ref::<ArrayD<f64>>(), Some(&fortran));
            assert_eq!(got[&t[3]].downcast_ref::<ArrayD<bool>>(), Some(&flags));
            assert_eq!(got[&t[4]].downcast_ref::<Vec<i64>>(), Some(&list));
            assert_eq!(got[&t[5]].downcast_ref::<ArrayD<f32>>(), Some(&empty));
            assert_eq!(got[&t[6]].downcast_ref::<ArrayD<i32>>(), Some(&ints));
            assert!(got[&t[7]].downcast_ref::<ArrayD<u64>>() == Some(&large));
            // The connection went back to the pool and serves again.
            let again = pool().fetch(&address, vec![t[1]]).await.unwrap();
            assert_eq!(again.found[0].1.downcast_ref::<ArrayD<i32>>(), Some(&ints));
        });
    }

    /// A fake peer that answers its first request with the raw `reply`.
    async fn raw_peer(reply: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("tcp://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let limits = FrameLimits::default();
            // Hello, then the welcome, then GetData, then the reply.
            let read_one = async |stream: &mut tokio::net::TcpStream| {
                let mut buf = vec![0u8; 1 << 16];
                let n = stream.read(&mut buf).await.unwrap();
                buf.truncate(n);
                buf
            };
            read_one(&mut stream).await;
            let mut welcome = Vec::new();
            frame::write_message(&mut welcome, &Welcome::Accepted { id: 0 }, &[], &limits).unwrap();
            stream.write_all(&welcome).await.unwrap();
            read_one(&mut stream).await;
            stream.write_all(&reply).await.unwrap();
            // Nothing more is sent: a reply cut short ends there.
            let _ = stream.shutdown().await;
            let _ = stream.read_to_end(&mut Vec::new()).await;
        });
        address
    }

    #[test]
    fn a_malformed_response_fails_the_fetch_naming_the_problem() {
        let mut ids: Slab<TaskId, ()> = Slab::new();
        let task = ids.insert(());
        let limits = FrameLimits::default();
        let array = ArrayD::from_shape_fn(IxDyn(&[4]), |i| i[0] as f64);
        let codec = array.codec();
        let mut head = Vec::new();
        array.encode_lent(&mut head).unwrap().unwrap();
        let response = PeerResponse {
            found: vec![(task, codec.to_string())],
            missing: vec![],
        };
        let message = |payloads: &[&[u8]]| {
            let mut out = Vec::new();
            frame::write_message(&mut out, &response, payloads, &limits).unwrap();
            out
        };
        // A body shorter than the head announces.
        let short = message(&[&head, &[0u8; 24]]);
        // One payload where a head and a body are due.
        let odd = message(&[&head]);
        // A payload length over the limit, in the frame's own header.
        let mut oversized = Vec::new();
        let control = frame::encode(&response).unwrap();
        oversized.extend_from_slice(&(control.len() as u32).to_le_bytes());
        oversized.extend_from_slice(&2u32.to_le_bytes());
        oversized.extend_from_slice(&(head.len() as u64).to_le_bytes());
        oversized.extend_from_slice(&u64::MAX.to_le_bytes());
        oversized.extend_from_slice(&control);
        // A stream that ends inside the body.
        let mut cut = message(&[&head, &[0u8; 32]]);
        cut.truncate(cut.len() - 5);
        // A stream that ends inside a body received on a blocking thread
        // (over `LARGE_BODY_BYTES`).
        let large = ArrayD::<f64>::zeros(IxDyn(&[(LARGE_BODY_BYTES + (8 << 20)) / 8]));
        let mut large_head = Vec::new();
        let large_body = large.encode_lent(&mut large_head).unwrap().unwrap();
        let mut cut_large = message(&[&large_head, large_body]);
        cut_large.truncate(cut_large.len() - (12 << 20));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (short, "needs 4 elements"),
            (odd, "1 payloads for 1 results"),
            (oversized, "over the limit"),
            (cut, "closed in the middle of a message"),
            (cut_large, "closed in the middle of a message"),
        ];
        runtime().block_on(async {
            for (reply, want) in cases {
                let address = raw_peer(reply).await;
                let pool = pool();
                // A hang guard, not a timing assertion.
                let fetched = tokio::time::timeout(Duration::from_secs(120), pool.fetch(&address, vec![task]))
                    .await
                    .unwrap_or_else(|_| panic!("hung on a malformed response (expected {want:?})"));
                let err = match fetched {
                    Ok(_) => panic!("a malformed response was accepted (expected {want:?})"),
                    Err(e) => e.to_string(),
                };
                assert!(err.contains(want), "expected {want:?} in: {err}");
                assert!(
                    pool.idle.lock().unwrap().get(&address).is_none_or(Vec::is_empty),
                    "the broken connection is not kept"
                );
            }
        });
    }

    #[test]
    fn a_peer_sending_an_oversized_header_loses_only_its_connection() {
        let mut ids: Slab<TaskId, ()> = Slab::new();
        let task = ids.insert(());
        let array = ArrayD::from_shape_fn(IxDyn(&[100, 100]), |i| (i[0] + i[1]) as u64);
        runtime().block_on(async {
            let address = serve(vec![(task, Arc::new(array.clone()))]).await;
            let mut bad = tokio::net::TcpStream::connect(host_port(&address).unwrap())
                .await
                .unwrap();
            // A header announcing a 4 GiB control part.
            bad.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
            bad.write_all(&0u32.to_le_bytes()).await.unwrap();
            let mut rest = Vec::new();
            let closed = bad.read_to_end(&mut rest).await;
            assert!(closed.is_err() || rest.is_empty(), "the server closed it unanswered");
            let data = pool().fetch(&address, vec![task]).await.unwrap();
            assert_eq!(data.found[0].1.downcast_ref::<ArrayD<u64>>(), Some(&array));
        });
    }
}
