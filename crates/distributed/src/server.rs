//! The scheduler server: connections in, the state machine in the middle.
//!
//! ```text
//!  accept ─▶ connection task ── Hello ──▶ ┐
//!            (one per peer)               │   core task: owns the Scheduler,
//!            reads messages ── Inbound ─▶ ├─▶ turns each message into an Event,
//!  writer task ◀── Outbound (channel) ────┘   each Command into an Outbound
//! ```
//!
//! One task (the *core*) owns the [`Scheduler`] and is the only one that
//! touches it; connection tasks only decode what arrives and forward it, and
//! writer tasks only encode what the core queued for their peer (draining
//! their queue and flushing once, so a burst of commands is one write). The
//! core never awaits I/O: a slow peer slows its own writer, nobody else.
//!
//! The server runs no user code and decodes no ops: task specs are opaque
//! bytes ([`crate::scheduler::TaskSpec`]). What it does check at each
//! handshake: the protocol version, the token (when one is configured), and
//! the build id — every worker and client of a cluster must run the same
//! executable, because tasks travel as names of functions compiled into it.
//! The cluster's build id is pinned by [`SchedulerOptions::build_id`] or else
//! by the first peer to connect; a peer with another is refused with a reason
//! naming both builds. A malformed or oversized message closes that one
//! connection (a worker's close is a worker lost); the others are served on.
//!
//! Worker liveness: a closed connection is a lost worker at once (a worker
//! killed with `kill -9` on the same host closes its sockets as it dies);
//! a worker silent for [`SchedulerOptions::worker_ttl`] (a machine gone
//! without a reset) is declared lost too.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blockwise_core::{Error, ErrorKind, Key, Result};
use tokio::sync::{mpsc, oneshot};

use crate::frame::FrameLimits;
use crate::id::{ClientId, StimulusId, TaskId, WorkerId};
use crate::protocol::{
    ClientMessage, ClusterEvent, Envelope, Hello, Outgoing, PROTOCOL_VERSION, Role, ToClient, ToWorker, Welcome,
    WorkerMessage,
};
use crate::scheduler::{Command, Event, Scheduler, SchedulerConfig, TaskState};
use crate::tcp::{Connection, ConnectionReader, ConnectionWriter, Incoming, Listener};

/// How a scheduler server runs.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Where to listen, `tcp://host:port` (port 0: any free port).
    pub address: String,
    /// The state machine's knobs.
    pub config: SchedulerConfig,
    /// Bounds on what a peer may send.
    pub limits: FrameLimits,
    /// Certificates, for a `tls://` address (required then).
    pub tls: Option<crate::tls::Tls>,
    /// A shared secret every worker and client must present.
    pub token: Option<String>,
    /// The build id every worker and client must have; `None`: the first
    /// peer's.
    pub build_id: Option<String>,
    /// A worker silent this long is declared lost.
    pub worker_ttl: Duration,
    /// How often idle workers steal work ([`Event::Balance`]).
    pub balance_interval: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            address: "tcp://127.0.0.1:8786".into(),
            config: SchedulerConfig::default(),
            limits: FrameLimits::default(),
            tls: None,
            token: None,
            build_id: None,
            worker_ttl: Duration::from_secs(60),
            balance_interval: Duration::from_millis(100),
        }
    }
}

/// What the connection tasks tell the core.
enum Inbound {
    Join {
        hello: Hello,
        peer: String,
        outbound: mpsc::UnboundedSender<Outbound>,
        reply: oneshot::Sender<std::result::Result<u32, String>>,
    },
    /// A frame of messages from a worker, in order.
    Worker(WorkerId, Vec<WorkerMessage>),
    WorkerClosed(WorkerId, String),
    Client(ClientId, ClientMessage),
    /// A submission that could not be expanded: answered `Rejected`.
    Refused(ClientId, String),
    ClientClosed(ClientId),
    Snapshot(oneshot::Sender<SchedulerSnapshot>),
}

/// A summary of a running scheduler's state (for tests, logs and the
/// dashboard).
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerSnapshot {
    /// Connected workers.
    pub workers: usize,
    /// Connected clients.
    pub clients: usize,
    /// Live tasks.
    pub tasks: usize,
    /// Live tasks in each state.
    pub states: Vec<(TaskState, usize)>,
    /// Published dataset names, sorted.
    pub datasets: Vec<String>,
    /// Each worker's last heartbeat.
    pub metrics: Vec<(WorkerId, crate::scheduler::WorkerMetrics)>,
}

/// What the core queues for one connection: the messages of one turn of
/// its loop, in order.
enum Outbound {
    Worker(Vec<Envelope<ToWorker>>),
    Client(Vec<Envelope<ToClient>>),
}

/// Messages for connections, gathered during one turn of the core's loop
/// and handed to each connection's writer at its end as one batch: a run
/// of no-op tasks is a message or two per task, and a channel operation
/// (and a wake of the writer) per message was several percent of the
/// core's time. The writers run on the core's thread, after the turn
/// anyway, so nothing is sent later than before.
#[derive(Default)]
struct Pending {
    workers: BTreeMap<WorkerId, Vec<Envelope<ToWorker>>>,
    clients: BTreeMap<ClientId, Vec<Envelope<ToClient>>>,
}

struct WorkerConnection {
    address: String,
    name: String,
    outbound: mpsc::UnboundedSender<Outbound>,
    last_seen: Instant,
}

struct Core {
    scheduler: Scheduler,
    options: SchedulerOptions,
    stimulus: StimulusId,
    workers: BTreeMap<WorkerId, WorkerConnection>,
    clients: HashMap<ClientId, mpsc::UnboundedSender<Outbound>>,
    next_worker: u32,
    next_client: u32,
    build_id: Option<String>,
    commands: Vec<Command>,
    /// Connected workers, for whoever started the server.
    connected: Arc<AtomicUsize>,
    /// Published datasets: name → keys, wanted by [`DATASETS`].
    datasets: BTreeMap<String, Vec<Key>>,
    /// Clients that receive [`ClusterEvent`]s.
    subscribers: std::collections::BTreeSet<ClientId>,
    /// Messages of this turn, not yet handed to the writers.
    pending: Pending,
}

/// The client that wants the keys of published datasets (real clients are
/// numbered from 1), so their results live while their names do.
const DATASETS: ClientId = ClientId::new(0);

impl Core {
    fn next_stimulus(&mut self) -> StimulusId {
        self.stimulus = self.stimulus.next();
        self.stimulus
    }

    /// Runs one event through the state machine and queues its commands.
    fn handle(&mut self, event: Event) {
        let stimulus = self.next_stimulus();
        let mut commands = std::mem::take(&mut self.commands);
        if let Err(e) = self.scheduler.handle(stimulus, event, &mut commands) {
            // A bug in the state machine or in this driver: say so loudly.
            // The event's commands were discarded; the server keeps serving.
            tracing::error!("scheduler error at {stimulus}: {e}");
            eprintln!("blockwise scheduler: internal error at {stimulus}: {e}");
        }
        for command in commands.drain(..) {
            self.deliver(Outgoing::from(command));
        }
        self.commands = commands;
    }

    fn deliver(&mut self, out: Outgoing) {
        match out {
            Outgoing::Worker(w, envelope) => self.queue_for_worker(w, envelope),
            Outgoing::Client(c, envelope) => self.queue_for_client(c, envelope),
        }
    }

    /// Queues a message for a connected worker (see [`Pending`]).
    fn queue_for_worker(&mut self, worker: WorkerId, envelope: Envelope<ToWorker>) {
        if self.workers.contains_key(&worker) {
            self.pending.workers.entry(worker).or_default().push(envelope);
        }
    }

    /// Tells every connected worker that peers joined (id, address) or
    /// left, so they know where to fetch inputs from.
    fn tell_peers(&mut self, stimulus: StimulusId, joined: Vec<(WorkerId, String)>, left: Vec<WorkerId>) {
        let others: Vec<WorkerId> = self.workers.keys().copied().collect();
        for w in others {
            let message = ToWorker::Peers {
                joined: joined.clone(),
                left: left.clone(),
            };
            self.queue_for_worker(w, Envelope { stimulus, message });
        }
    }

    /// Queues a message for a connected client (see [`Pending`]).
    fn queue_for_client(&mut self, client: ClientId, envelope: Envelope<ToClient>) {
        if self.clients.contains_key(&client) {
            self.pending.clients.entry(client).or_default().push(envelope);
        }
    }

    /// Hands this turn's messages to the writers, one batch per connection.
    fn flush(&mut self) {
        for (w, envelopes) in std::mem::take(&mut self.pending.workers) {
            if let Some(c) = self.workers.get(&w) {
                let _ = c.outbound.send(Outbound::Worker(envelopes));
            }
        }
        for (c, envelopes) in std::mem::take(&mut self.pending.clients) {
            if let Some(tx) = self.clients.get(&c) {
                let _ = tx.send(Outbound::Client(envelopes));
            }
        }
    }

    fn join(
        &mut self,
        hello: Hello,
        peer: &str,
        outbound: mpsc::UnboundedSender<Outbound>,
    ) -> std::result::Result<u32, String> {
        if self.options.token.is_some() && hello.token != self.options.token {
            tracing::warn!("{peer}: refused: wrong or missing token");
            return Err(format!("the scheduler refused {peer}: wrong or missing token"));
        }
        let who = match &hello.role {
            Role::Worker { info, address } => format!("worker {} at {address}", info.name),
            Role::Client { name } => format!("client {name} from {peer}"),
            Role::Peer { .. } => return Err("the scheduler serves no data: connect to a worker".into()),
        };
        match &self.build_id {
            Some(expected) if *expected != hello.build_id => {
                let reason = format!(
                    "{who} runs a different executable (build id {}) than this cluster (build id {expected}): \
                     workers and clients of one cluster must run the same build, because tasks travel as the \
                     names of functions compiled into it; restart it from the cluster's binary",
                    hello.build_id
                );
                tracing::warn!("refused: {reason}");
                return Err(reason);
            }
            Some(_) => {}
            None => self.build_id = Some(hello.build_id.clone()),
        }
        match hello.role {
            Role::Worker { info, address } => {
                self.next_worker += 1;
                let id = WorkerId::new(self.next_worker);
                let stimulus = self.next_stimulus();
                let joined: Vec<(WorkerId, String)> =
                    self.workers.iter().map(|(w, c)| (*w, c.address.clone())).collect();
                // Not connected yet: its first message goes straight out.
                let _ = outbound.send(Outbound::Worker(vec![Envelope {
                    stimulus,
                    message: ToWorker::Peers { joined, left: vec![] },
                }]));
                self.tell_peers(stimulus, vec![(id, address.clone())], vec![]);
                tracing::info!("{id} joined: {} at {address}, {} threads", info.name, info.threads);
                self.broadcast(ClusterEvent::WorkerJoined {
                    worker: id,
                    name: info.name.clone(),
                    address: address.clone(),
                });
                self.workers.insert(
                    id,
                    WorkerConnection {
                        address,
                        name: info.name.clone(),
                        outbound,
                        last_seen: Instant::now(),
                    },
                );
                self.connected.store(self.workers.len(), Ordering::Relaxed);
                self.handle(Event::WorkerJoined { worker: id, info });
                Ok(id.get())
            }
            Role::Client { name } => {
                self.next_client += 1;
                let id = ClientId::new(self.next_client);
                tracing::info!("{id} connected: {name} from {peer}");
                self.clients.insert(id, outbound);
                Ok(id.get())
            }
            Role::Peer { .. } => Err("the scheduler serves no data: connect to a worker".into()),
        }
    }

    fn worker_lost(&mut self, worker: WorkerId, graceful: bool, why: &str) {
        let Some(c) = self.workers.remove(&worker) else {
            return;
        };
        tracing::warn!("{worker} ({} at {}) lost: {why}", c.name, c.address);
        self.broadcast(ClusterEvent::WorkerLost { worker });
        self.connected.store(self.workers.len(), Ordering::Relaxed);
        let stimulus = self.next_stimulus();
        self.tell_peers(stimulus, vec![], vec![worker]);
        self.handle(Event::WorkerLost { worker, graceful });
    }

    fn on_worker_message(&mut self, worker: WorkerId, message: WorkerMessage) {
        if !self.workers.contains_key(&worker) {
            // Declared lost already: anything it says is ignored.
            return;
        }
        if let WorkerMessage::Goodbye = message {
            return self.worker_lost(worker, true, "it said goodbye");
        }
        if !self.subscribers.is_empty() {
            self.publish_worker_message(worker, &message);
        }
        self.handle(message.into_event(worker));
    }

    /// Tells subscribers what a worker's message means, before the
    /// scheduler acts on it (so a client hears of a task's end before it
    /// hears of the result the task completes).
    fn publish_worker_message(&mut self, worker: WorkerId, message: &WorkerMessage) {
        let current = |task: TaskId, run| self.scheduler.current_run_key(task, worker, run).cloned();
        let event = match *message {
            WorkerMessage::Finished {
                task,
                run,
                nbytes,
                duration_us,
            } => current(task, run).map(|key| ClusterEvent::TaskFinished {
                key,
                worker,
                duration_us,
                nbytes,
            }),
            WorkerMessage::Erred { task, run, .. } => {
                current(task, run).map(|key| ClusterEvent::TaskErred { key, worker })
            }
            WorkerMessage::Heartbeat(metrics) => Some(ClusterEvent::WorkerMetrics { worker, metrics }),
            _ => None,
        };
        if let Some(event) = event {
            self.broadcast(event);
        }
    }

    fn broadcast(&mut self, event: ClusterEvent) {
        if self.subscribers.is_empty() {
            return;
        }
        let stimulus = self.next_stimulus();
        let subscribers: smallvec::SmallVec<[ClientId; 4]> = self.subscribers.iter().copied().collect();
        for c in subscribers {
            self.queue_for_client(
                c,
                Envelope {
                    stimulus,
                    message: ToClient::Event(event.clone()),
                },
            );
        }
    }

    fn on_client_message(&mut self, client: ClientId, message: ClientMessage) {
        match message {
            ClientMessage::WhoHas(keys) => {
                let answer = self.who_has(keys);
                let stimulus = self.next_stimulus();
                self.queue_for_client(
                    client,
                    Envelope {
                        stimulus,
                        message: ToClient::WhoHas(answer),
                    },
                );
            }
            ClientMessage::Submit(submission) => {
                let stimulus = self.next_stimulus();
                let mut commands = std::mem::take(&mut self.commands);
                let result =
                    self.scheduler
                        .handle(stimulus, Event::ClientSubmitted { client, submission }, &mut commands);
                let mut rejected = false;
                for command in commands.drain(..) {
                    rejected |= matches!(&command, Command::Rejected { client: c, .. } if *c == client);
                    self.deliver(Outgoing::from(command));
                }
                self.commands = commands;
                let message = match result {
                    Err(e) => {
                        tracing::error!("scheduler error at {stimulus}: {e}");
                        Some(ToClient::Rejected {
                            message: format!("internal scheduler error: {e}"),
                        })
                    }
                    Ok(()) if !rejected => Some(ToClient::Accepted),
                    Ok(()) => None,
                };
                if let Some(message) = message {
                    self.queue_for_client(client, Envelope { stimulus, message });
                }
            }
            ClientMessage::Publish { name, keys } => {
                let answer = self.publish(name, keys);
                self.answer(client, ToClient::Published(answer));
            }
            ClientMessage::Unpublish { name } => {
                if let Some(keys) = self.datasets.remove(&name) {
                    self.release_dataset_keys(keys);
                }
            }
            ClientMessage::GetDataset { name } => {
                let keys = self.datasets.get(&name).cloned();
                self.answer(client, ToClient::Dataset(keys));
            }
            ClientMessage::Subscribe => {
                self.subscribers.insert(client);
                self.answer(client, ToClient::Subscribed);
            }
            ClientMessage::ListDatasets => {
                let names = self.datasets.keys().cloned().collect();
                self.answer(client, ToClient::Datasets(names));
            }
            other => {
                if let Some(event) = other.into_event(client) {
                    self.handle(event);
                }
            }
        }
    }

    fn answer(&mut self, client: ClientId, message: ToClient) {
        let stimulus = self.next_stimulus();
        self.queue_for_client(client, Envelope { stimulus, message });
    }

    /// Makes [`DATASETS`] want `keys` under `name`.
    fn publish(&mut self, name: String, keys: Vec<Key>) -> std::result::Result<(), String> {
        if let Some(k) = keys.iter().find(|k| self.scheduler.task_id(k).is_none()) {
            return Err(format!("key {k} is not known to the scheduler (was it released?)"));
        }
        let submission = crate::scheduler::Submission {
            tasks: keys
                .iter()
                .map(|k| crate::scheduler::NewTask {
                    key: k.clone(),
                    dependencies: vec![],
                    order: 0,
                    spec: None,
                    retries: 0,
                })
                .collect(),
            outputs: (0..keys.len() as u32).collect(),
            priority: 0,
        };
        self.handle(Event::ClientSubmitted {
            client: DATASETS,
            submission,
        });
        if let Some(old) = self.datasets.insert(name, keys) {
            self.release_dataset_keys(old);
        }
        Ok(())
    }

    /// Releases keys of a dropped or replaced dataset that no other
    /// dataset holds.
    fn release_dataset_keys(&mut self, keys: Vec<Key>) {
        let held: std::collections::HashSet<&Key> = self.datasets.values().flatten().collect();
        let keys: Vec<Key> = keys.into_iter().filter(|k| !held.contains(k)).collect();
        if !keys.is_empty() {
            self.handle(Event::ClientReleased { client: DATASETS, keys });
        }
    }

    fn who_has(&self, keys: Vec<Key>) -> Vec<(Key, Option<crate::id::TaskId>, Vec<String>)> {
        keys.into_iter()
            .map(|key| match self.scheduler.task(&key) {
                Some(t) if t.state == TaskState::Memory => {
                    let holders = t
                        .who_has
                        .iter()
                        .filter_map(|w| self.workers.get(w).map(|c| c.address.clone()))
                        .collect();
                    (key, Some(t.id), holders)
                }
                Some(t) => (key, Some(t.id), Vec::new()),
                None => (key, None, Vec::new()),
            })
            .collect()
    }

    fn on_inbound(&mut self, message: Inbound) {
        match message {
            Inbound::Join {
                hello,
                peer,
                outbound,
                reply,
            } => {
                let answer = self.join(hello, &peer, outbound);
                let _ = reply.send(answer);
            }
            Inbound::Worker(w, messages) => {
                // Heard from once per frame (a clock read per message was a
                // few percent of the core's time in a run of no-op tasks).
                if let Some(c) = self.workers.get_mut(&w) {
                    c.last_seen = Instant::now();
                }
                for m in messages {
                    self.on_worker_message(w, m);
                }
            }
            Inbound::WorkerClosed(w, why) => self.worker_lost(w, false, &why),
            Inbound::Client(c, m) => self.on_client_message(c, m),
            Inbound::Refused(c, message) => {
                tracing::warn!("{c}: submission rejected: {message}");
                self.answer(c, ToClient::Rejected { message });
            }
            Inbound::Snapshot(reply) => {
                let _ = reply.send(SchedulerSnapshot {
                    workers: self.workers.len(),
                    clients: self.clients.len(),
                    tasks: self.scheduler.task_count(),
                    states: self.scheduler.state_counts(),
                    datasets: self.datasets.keys().cloned().collect(),
                    metrics: self
                        .scheduler
                        .workers()
                        .into_iter()
                        .filter_map(|w| self.scheduler.worker(w).map(|v| (w, v.metrics)))
                        .collect(),
                });
            }
            Inbound::ClientClosed(c) => {
                self.subscribers.remove(&c);
                if self.clients.remove(&c).is_some() {
                    tracing::info!("{c} disconnected: its work is released");
                    self.handle(Event::ClientDisconnected { client: c });
                }
            }
        }
    }

    fn check_ttl(&mut self) {
        let ttl = self.options.worker_ttl;
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, c)| c.last_seen.elapsed() > ttl)
            .map(|(w, _)| *w)
            .collect();
        for w in silent {
            self.worker_lost(w, false, &format!("no message for {ttl:?}"));
        }
    }
}

/// Serves a scheduler on `listener` until `shutdown` resolves.
pub async fn serve(listener: Listener, options: SchedulerOptions, shutdown: impl std::future::Future<Output = ()>) {
    let (inbound_tx, inbound) = mpsc::unbounded_channel::<Inbound>();
    serve_with(listener, options, shutdown, Arc::default(), inbound_tx, inbound).await
}

async fn serve_with(
    listener: Listener,
    options: SchedulerOptions,
    shutdown: impl std::future::Future<Output = ()>,
    connected: Arc<AtomicUsize>,
    inbound_tx: mpsc::UnboundedSender<Inbound>,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
) {
    let mut core = Core {
        scheduler: Scheduler::new(options.config.clone()),
        build_id: options.build_id.clone(),
        options,
        stimulus: StimulusId::default(),
        workers: BTreeMap::new(),
        clients: HashMap::new(),
        next_worker: 0,
        next_client: 0,
        commands: Vec::new(),
        connected,
        datasets: BTreeMap::new(),
        subscribers: Default::default(),
        pending: Pending::default(),
    };
    let mut balance = tokio::time::interval(core.options.balance_interval);
    balance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ttl = tokio::time::interval(Duration::from_secs(1));
    ttl.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let accept_pause = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(accept_pause);
    let mut accepting = true;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut accept_pause, if !accepting => accepting = true,
            accepted = listener.accept(), if accepting => match accepted {
                Ok(connection) => {
                    tokio::spawn(connection_task(connection, inbound_tx.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning
                    // (the core keeps serving meanwhile).
                    tracing::warn!("accept failed: {e}");
                    accept_pause.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(50));
                    accepting = false;
                }
            },
            Some(message) = inbound.recv() => {
                core.on_inbound(message);
                // Take what else has arrived before the writers run: their
                // batches grow, and the writes (syscalls) shrink.
                for _ in 0..1024 {
                    match inbound.try_recv() {
                        Ok(message) => core.on_inbound(message),
                        Err(_) => break,
                    }
                }
            }
            _ = balance.tick() => {
                if core.workers.len() > 1 {
                    core.handle(Event::Balance);
                }
            }
            _ = ttl.tick() => core.check_ttl(),
        }
        core.flush();
    }
    core.flush();
    // Tell workers to stop; dropping the queues closes the connections.
    let stimulus = core.next_stimulus();
    for c in core.workers.values() {
        let _ = c.outbound.send(Outbound::Worker(vec![Envelope {
            stimulus,
            message: ToWorker::Close {
                reason: "the scheduler is shutting down".into(),
            },
        }]));
    }
}

async fn connection_task(incoming: Incoming, core: mpsc::UnboundedSender<Inbound>) {
    let peer = incoming.peer();
    let connection = match tokio::time::timeout(Duration::from_secs(30), incoming.establish()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            // Refused credentials land here: logged, and only this
            // connection is closed.
            tracing::warn!("refused {peer}: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!("refused {peer}: no TLS handshake within 30 s");
            return;
        }
    };
    if let Err(e) = handshake_and_serve(connection, core).await {
        tracing::warn!("connection from {peer} closed: {e}");
    }
}

async fn handshake_and_serve(mut connection: Connection, core: mpsc::UnboundedSender<Inbound>) -> Result<()> {
    let peer = connection.peer().to_string();
    let raw = tokio::time::timeout(Duration::from_secs(30), connection.recv())
        .await
        .map_err(|_| Error::new(ErrorKind::Remote, format!("{peer} sent no hello within 30 s")))??;
    let Some(raw) = raw else {
        return Ok(());
    };
    let hello: Hello = raw.decode()?;
    if hello.protocol != PROTOCOL_VERSION {
        let reason = format!(
            "protocol version {} is not this scheduler's ({PROTOCOL_VERSION})",
            hello.protocol
        );
        connection.send(&Welcome::Refused { reason: reason.clone() }).await?;
        return Err(Error::new(ErrorKind::Remote, reason));
    }
    let is_worker = matches!(hello.role, Role::Worker { .. });
    let (outbound, queue) = mpsc::unbounded_channel();
    let (reply, answer) = oneshot::channel();
    core.send(Inbound::Join {
        hello,
        peer: peer.clone(),
        outbound,
        reply,
    })
    .map_err(|_| Error::new(ErrorKind::Remote, "the scheduler is shutting down"))?;
    let answer = answer
        .await
        .map_err(|_| Error::new(ErrorKind::Remote, "the scheduler is shutting down"))?;
    let id = match answer {
        Ok(id) => id,
        Err(reason) => {
            connection.send(&Welcome::Refused { reason: reason.clone() }).await?;
            return Err(Error::new(ErrorKind::BuildMismatch, reason));
        }
    };
    connection.send(&Welcome::Accepted { id }).await?;
    let (reader, writer) = connection.into_split();
    tokio::spawn(writer_task(writer, queue));
    if is_worker {
        let worker = WorkerId::new(id);
        let why = read_loop(reader, |m: Vec<WorkerMessage>, _| {
            forward(&core, Inbound::Worker(worker, m))
        })
        .await;
        let _ = core.send(Inbound::WorkerClosed(worker, why));
    } else {
        let client = ClientId::new(id);
        let why = read_loop(reader, |m: ClientMessage, payloads| {
            let m = match m {
                // A graph too large for a control part travels as a payload;
                // decoded here, off the core.
                ClientMessage::SubmitEncoded => {
                    let bytes = payloads.first().ok_or("SubmitEncoded without its payload")?;
                    let submission =
                        postcard::from_bytes(bytes).map_err(|e| format!("its submitted graph is malformed ({e})"))?;
                    ClientMessage::Submit(submission)
                }
                // A graph sent as layers is expanded here too. A graph
                // that does not hold together is refused (the connection
                // stays); only bytes that do not decode close it.
                ClientMessage::SubmitLayers => {
                    let bytes = payloads.first().ok_or("SubmitLayers without its payload")?;
                    let graph: crate::layers::LayeredGraph =
                        postcard::from_bytes(bytes).map_err(|e| format!("its layered graph is malformed ({e})"))?;
                    match graph.expand() {
                        Ok(submission) => ClientMessage::Submit(submission),
                        Err(e) => return forward(&core, Inbound::Refused(client, e.to_string())),
                    }
                }
                m => m,
            };
            forward(&core, Inbound::Client(client, m))
        })
        .await;
        tracing::debug!("{client}: {why}");
        let _ = core.send(Inbound::ClientClosed(client));
    }
    Ok(())
}

fn forward(core: &mpsc::UnboundedSender<Inbound>, message: Inbound) -> std::result::Result<(), String> {
    core.send(message)
        .map_err(|_| "the scheduler is shutting down".to_string())
}

/// Reads messages of type `T` (with their payloads) until the connection
/// ends or `forward` refuses one; returns why it ended.
async fn read_loop<T: serde::de::DeserializeOwned>(
    mut reader: ConnectionReader,
    mut forward: impl FnMut(T, Vec<Vec<u8>>) -> std::result::Result<(), String>,
) -> String {
    let peer = reader.peer().to_string();
    loop {
        match reader.recv().await {
            Ok(Some(raw)) => match raw.decode::<T>() {
                Ok(message) => {
                    if let Err(why) = forward(message, raw.payloads) {
                        tracing::warn!("{peer}: {why}; closing the connection");
                        return why;
                    }
                }
                Err(e) => {
                    tracing::warn!("{peer}: {e}; closing the connection");
                    return format!("its connection sent a malformed message ({e})");
                }
            },
            Ok(None) => return "its connection closed".into(),
            Err(e) => return format!("its connection failed ({e})"),
        }
    }
}

/// Messages in one frame at most (a frame is decoded whole before its
/// first message is acted on).
pub(crate) const MAX_BATCH: usize = 4096;

/// Writes what the core queued for one connection: everything waiting is
/// drained into batches (a frame of up to [`MAX_BATCH`] messages each, see
/// [`crate::frame::Batch`]) and flushed once.
async fn writer_task(mut writer: ConnectionWriter, mut queue: mpsc::UnboundedReceiver<Outbound>) {
    let mut batch = crate::frame::Batch::new();
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        let mut closing = false;
        while let Some(message) = next {
            match message {
                Outbound::Worker(envelopes) => {
                    for e in &envelopes {
                        closing |= matches!(e.message, ToWorker::Close { .. });
                        if !feed(&mut writer, &mut batch, e).await {
                            return;
                        }
                    }
                }
                Outbound::Client(envelopes) => {
                    for e in &envelopes {
                        if !feed(&mut writer, &mut batch, e).await {
                            return;
                        }
                    }
                }
            }
            next = queue.try_recv().ok();
        }
        if writer.feed_batch(&mut batch).await.is_err() || writer.flush().await.is_err() || closing {
            return;
        }
    }
}

/// Adds one message to the writer's batch, writing the batch out once it
/// holds [`MAX_BATCH`] messages; false if the connection failed.
async fn feed<T: serde::Serialize>(
    writer: &mut ConnectionWriter,
    batch: &mut crate::frame::Batch,
    envelope: &Envelope<T>,
) -> bool {
    if writer.batch(batch, envelope).await.is_err() {
        return false;
    }
    !(batch.len() >= MAX_BATCH && writer.feed_batch(batch).await.is_err())
}

/// A scheduler running on its own thread (and tokio runtime) in this
/// process; stopped when dropped.
pub struct SchedulerHandle {
    address: String,
    connected: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    core: mpsc::UnboundedSender<Inbound>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SchedulerHandle {
    /// Binds `options.address` and serves on a new thread. Returns once the
    /// scheduler listens.
    pub fn start(options: SchedulerOptions) -> Result<SchedulerHandle> {
        // One thread: the core is one task, and the connections' tasks on
        // the same thread wake each other without crossing threads.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let listener = runtime
            .block_on(Listener::bind_with(
                &options.address,
                options.limits,
                options.tls.clone(),
            ))
            .map_err(|e| Error::from(e).context(format!("while listening on {}", options.address)))?;
        let address = listener.address()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let connected = Arc::new(AtomicUsize::new(0));
        let counter = connected.clone();
        let (core, inbound) = mpsc::unbounded_channel::<Inbound>();
        let inbound_tx = core.clone();
        let thread = std::thread::Builder::new()
            .name("blockwise-scheduler".into())
            .spawn(move || {
                runtime.block_on(serve_with(
                    listener,
                    options,
                    async move {
                        let _ = stopped.await;
                    },
                    counter,
                    inbound_tx,
                    inbound,
                ));
                // Give writers a moment to send their goodbyes.
                runtime.shutdown_timeout(Duration::from_millis(200));
            })?;
        Ok(SchedulerHandle {
            address,
            connected,
            core,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address workers and clients connect to, `tcp://ip:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Workers connected right now.
    pub fn workers(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// A summary of the scheduler's state now. Call it from outside any
    /// async runtime (it waits for the scheduler's answer).
    pub fn snapshot(&self) -> Result<SchedulerSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.core
            .send(Inbound::Snapshot(tx))
            .map_err(|_| Error::new(ErrorKind::Remote, "the scheduler has stopped"))?;
        rx.blocking_recv()
            .map_err(|_| Error::new(ErrorKind::Remote, "the scheduler has stopped"))
    }

    /// Stops the scheduler and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
