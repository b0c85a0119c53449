//! The client: submits graphs to a scheduler and holds futures of their
//! results.
//!
//! A [`Client`] is one connection to a scheduler. Its methods block the
//! calling thread (collections' `compute` is synchronous); a small tokio
//! runtime of its own carries the messages. Every key the client submitted
//! has an entry here with its status (pending, finished, erred, cancelled),
//! updated by the scheduler's reports, and a count of the [`Future`]s that
//! refer to it: when the last one is dropped the key is released, and the
//! scheduler frees the result once nobody else wants it (Dask's reference
//! counting of futures).
//!
//! Results never pass through the scheduler: [`Client::gather`] asks the
//! scheduler *who has* each key and fetches the values from those workers
//! directly. A result lost with its worker goes back to pending (the
//! scheduler recomputes it), and gathering waits for it again.
//!
//! A `Client` is also an [`Executor`]: `compute_with(Scheduler::Executor(client.executor()))`
//! runs any collection on the cluster, and [`crate::install`] lets a
//! `tcp://…` address in the `scheduler` configuration do the same.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use blockwise_core::value::Value;
use blockwise_core::{
    Collection, Error, ErrorKind, Executor, FromValue, Graph, IntoValue, Key, Name, Plan, Result, RunOptions, Tokenizer,
};
use tokio::sync::{mpsc, oneshot};

use crate::frame::FrameLimits;
use crate::id::{ClientId, TaskId};
use crate::layers::{LayeredGraph, has_generated_layers};
use crate::protocol::{ClientMessage, ClusterEvent, Envelope, Hello, PROTOCOL_VERSION, Role, ToClient, Welcome};
use crate::scheduler::{NewTask, Submission, TaskFailure};
use crate::spec::{literal_task, submission_of};
use crate::worker::{PeerData, PeerPool};

/// How a client connects.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The scheduler, `tcp://host:port`.
    pub address: String,
    /// A name for the scheduler's logs.
    pub name: String,
    /// The cluster's shared secret.
    pub token: Option<String>,
    /// Bounds on what a peer may send.
    pub limits: FrameLimits,
    /// Certificates, for a `tls://` scheduler (required then).
    pub tls: Option<crate::tls::Tls>,
    /// How long to keep trying to reach the scheduler.
    pub connect_timeout: Duration,
}

impl ClientOptions {
    /// Defaults for a client of `address`.
    pub fn new(address: impl Into<String>) -> Self {
        ClientOptions {
            address: address.into(),
            name: format!("client of pid {}", std::process::id()),
            token: std::env::var(crate::worker::TOKEN_ENV).ok(),
            limits: FrameLimits::default(),
            tls: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Where a future's key is.
#[derive(Clone, Debug, PartialEq)]
pub enum FutureStatus {
    /// Not computed yet (or lost and being recomputed).
    Pending,
    /// Computed; the result is on a worker.
    Finished,
    /// Failed: the failure names the task to blame.
    Error(Arc<TaskFailure>),
    /// Cancelled by [`Client::cancel`].
    Cancelled,
}

impl FutureStatus {
    /// Whether the key will not change any more (until it is lost).
    pub fn is_done(&self) -> bool {
        !matches!(self, FutureStatus::Pending)
    }
}

struct Entry {
    status: FutureStatus,
    refs: usize,
}

type WhoHas = Vec<(Key, Option<TaskId>, Vec<String>)>;

/// A message for the scheduler, with its bulk payload if any.
struct Outgoing {
    message: ClientMessage,
    payload: Option<Vec<u8>>,
}

impl From<ClientMessage> for Outgoing {
    fn from(message: ClientMessage) -> Self {
        Outgoing { message, payload: None }
    }
}

/// The scheduler's answer to a query.
#[derive(Debug)]
enum Answer {
    WhoHas(WhoHas),
    Published(std::result::Result<(), String>),
    Dataset(Option<Vec<Key>>),
    Datasets(Vec<String>),
    Subscribed,
}

/// How a graph is submitted.
#[derive(Clone, Debug, Default)]
pub struct SubmitOptions {
    /// Higher runs first (Dask's `priority=`); ties go to the earlier
    /// submission.
    pub priority: i32,
    /// How many times a failing task is run again before its error is
    /// final (Dask's `retries=`).
    pub retries: u32,
}

/// Results asked of one worker at once (a response carries two payloads
/// each, within [`FrameLimits::max_payloads`]).
const GATHER_BATCH: usize = 1024;

/// Rounds of asking the scheduler and fetching before gathering gives up
/// on a key that is finished but cannot be fetched (about a minute).
const MAX_GATHER_ATTEMPTS: u32 = 150;

/// One batch fetched from one worker.
struct Fetched {
    address: String,
    items: Vec<(usize, TaskId)>,
    outcome: Result<PeerData>,
}

#[derive(Default)]
struct State {
    keys: HashMap<Key, Entry>,
    submits: VecDeque<oneshot::Sender<std::result::Result<(), String>>>,
    /// Waiting for answers to queries, in the order asked.
    answers: VecDeque<oneshot::Sender<Answer>>,
    /// Why the connection is gone, once it is.
    closed: Option<String>,
    /// Where cluster events go (see [`Client::events`]).
    listeners: Vec<std::sync::mpsc::Sender<ClusterEvent>>,
    /// Whether the scheduler was asked for events.
    subscribed: bool,
}

/// What the reader task shares with the client.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Inner {
    address: String,
    id: ClientId,
    shared: Arc<Shared>,
    to_scheduler: mpsc::UnboundedSender<Outgoing>,
    /// Connections to the workers results are gathered from.
    pool: PeerPool,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.to_scheduler.send(ClientMessage::Goodbye.into());
        if let Some(runtime) = self.runtime.take() {
            // Let the writer send the goodbye.
            runtime.shutdown_timeout(Duration::from_millis(100));
        }
    }
}

/// A connection to a scheduler. Cheap to clone (clones share the
/// connection).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({} at {})", self.inner.id, self.inner.address)
    }
}

/// A result on the cluster: a key the client submitted. Dropping the last
/// future of a key releases it.
pub struct Future {
    key: Key,
    client: Client,
}

impl std::fmt::Debug for Future {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Future({}, {:?})", self.key, self.status())
    }
}

impl Clone for Future {
    fn clone(&self) -> Self {
        self.client.add_ref(&self.key);
        Future {
            key: self.key.clone(),
            client: self.client.clone(),
        }
    }
}

impl Drop for Future {
    fn drop(&mut self) {
        self.client.drop_ref(&self.key);
    }
}

impl Future {
    /// The key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Its status now.
    pub fn status(&self) -> FutureStatus {
        self.client.status(&self.key)
    }

    /// Whether it finished, failed or was cancelled.
    pub fn done(&self) -> bool {
        self.status().is_done()
    }

    /// The value, waiting as long as it takes.
    pub fn value(&self) -> Result<Value> {
        self.client
            .gather_until(std::slice::from_ref(&self.key), None)
            .map(|mut v| v.remove(0))
    }

    /// The value, or a timeout error after `timeout`.
    pub fn value_timeout(&self, timeout: Duration) -> Result<Value> {
        self.client
            .gather_until(std::slice::from_ref(&self.key), Some(Instant::now() + timeout))
            .map(|mut v| v.remove(0))
    }

    /// The value as `T` (Dask's `future.result()`).
    pub fn result<T: FromValue>(&self) -> Result<T> {
        T::from_value(&self.value()?).map_err(|e| e.context(format!("in the result of {}", self.key)))
    }

    /// The value as `T`, or a timeout error after `timeout`.
    pub fn result_timeout<T: FromValue>(&self, timeout: Duration) -> Result<T> {
        T::from_value(&self.value_timeout(timeout)?).map_err(|e| e.context(format!("in the result of {}", self.key)))
    }

    /// Cancels it (see [`Client::cancel`]).
    pub fn cancel(&self) {
        self.client.cancel(std::slice::from_ref(self));
    }
}

impl Client {
    /// Connects to the scheduler at `address` (`tcp://host:port`).
    pub fn connect(address: &str) -> Result<Client> {
        Client::connect_with(ClientOptions::new(address))
    }

    /// Connects with explicit options.
    pub fn connect_with(options: ClientOptions) -> Result<Client> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("blockwise-client")
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let (to_scheduler, outgoing) = mpsc::unbounded_channel::<Outgoing>();
        let id = runtime.block_on(connect_and_spawn(&options, shared.clone(), outgoing))?;
        let pool = PeerPool::new(
            options.limits,
            options.token.clone(),
            options.tls.clone(),
            id.to_string(),
        );
        Ok(Client {
            inner: Arc::new(Inner {
                address: options.address.clone(),
                id,
                pool,
                shared,
                to_scheduler,
                runtime: Some(runtime),
            }),
        })
    }

    /// The scheduler's address.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The id the scheduler gave this client.
    pub fn id(&self) -> ClientId {
        self.inner.id
    }

    /// Disconnects: the scheduler releases everything this client wanted
    /// (its futures become errors). Dropping the last clone of a client
    /// and its futures does the same.
    pub fn close(&self) {
        {
            let mut state = self.inner.shared.lock();
            if state.closed.is_none() {
                state.closed = Some("the client was closed".into());
            }
            state.submits.clear();
            state.answers.clear();
        }
        self.inner.shared.changed.notify_all();
        let _ = self.inner.to_scheduler.send(ClientMessage::Goodbye.into());
    }

    /// Whether the connection is gone (closed by [`Client::close`], or
    /// lost).
    pub fn is_closed(&self) -> bool {
        self.inner.shared.lock().closed.is_some()
    }

    /// This client as an executor, for `compute_with(Scheduler::Executor(…))`.
    pub fn executor(&self) -> Arc<dyn Executor> {
        Arc::new(self.clone())
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.inner
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the client")
    }

    fn closed_error(&self, why: &str) -> Error {
        Error::new(
            ErrorKind::Remote,
            format!("lost the connection to the scheduler at {}: {why}", self.inner.address),
        )
    }

    // ----- submitting ----------------------------------------------------

    /// Submits a planned graph; returns a future for each of its outputs,
    /// in order, once the scheduler accepted it.
    pub fn submit_plan(&self, plan: &Plan) -> Result<Vec<Future>> {
        self.submit_plan_with(plan, &SubmitOptions::default())
    }

    /// [`Client::submit_plan`] with a priority and retries.
    pub fn submit_plan_with(&self, plan: &Plan, options: &SubmitOptions) -> Result<Vec<Future>> {
        let mut submission = submission_of(plan)?.with_priority(options.priority);
        for t in &mut submission.tasks {
            t.retries = options.retries;
        }
        let keys: Vec<Key> = plan.outputs().iter().map(|&o| plan.key(o)).collect();
        self.submit_raw(submission, keys)
    }

    fn submit_raw(&self, submission: Submission, outputs: Vec<Key>) -> Result<Vec<Future>> {
        // Encoded here, sent as a payload (no size limit of control parts).
        let encoded = crate::frame::encode(&submission)?;
        drop(submission);
        self.submit_payload(ClientMessage::SubmitEncoded, encoded, outputs)
    }

    /// Sends a submission (`message`, with `encoded` as its payload) and
    /// waits for the scheduler to accept it.
    fn submit_payload(&self, message: ClientMessage, encoded: Vec<u8>, outputs: Vec<Key>) -> Result<Vec<Future>> {
        let (ack, acked) = oneshot::channel();
        let futures = {
            let mut state = self.inner.shared.lock();
            if let Some(why) = &state.closed {
                return Err(self.closed_error(why));
            }
            let futures: Vec<Future> = outputs
                .into_iter()
                .map(|key| {
                    let entry = state.keys.entry(key.clone()).or_insert(Entry {
                        status: FutureStatus::Pending,
                        refs: 0,
                    });
                    entry.refs += 1;
                    // Submitting again revives a cancelled key.
                    if entry.status == FutureStatus::Cancelled {
                        entry.status = FutureStatus::Pending;
                    }
                    Future {
                        key,
                        client: self.clone(),
                    }
                })
                .collect();
            state.submits.push_back(ack);
            // Sent under the lock: acknowledgements come back in this order.
            self.inner
                .to_scheduler
                .send(Outgoing {
                    message,
                    payload: Some(encoded),
                })
                .map_err(|_| self.closed_error("the client is shutting down"))?;
            futures
        };
        match acked.blocking_recv() {
            Ok(Ok(())) => Ok(futures),
            Ok(Err(message)) => Err(Error::new(
                ErrorKind::InvalidGraph,
                format!("the scheduler at {} rejected the graph: {message}", self.inner.address),
            )),
            Err(_) => Err(self.closed_error(
                &self
                    .inner
                    .shared
                    .lock()
                    .closed
                    .clone()
                    .unwrap_or_else(|| "closed".into()),
            )),
        }
    }

    /// Submits a collection's graph and returns a future for each of its
    /// output keys (Dask's `client.compute(x)` / `client.persist(x)`: the
    /// results stay on the workers while the futures live).
    pub fn persist<C: Collection>(&self, collection: &C) -> Result<Vec<Future>> {
        self.persist_with(collection, &SubmitOptions::default())
    }

    /// [`Client::persist`] with a priority and retries.
    pub fn persist_with<C: Collection>(&self, collection: &C, options: &SubmitOptions) -> Result<Vec<Future>> {
        let keys = collection.output_keys();
        self.submit_graph(&C::optimize(collection.graph(), &keys), &keys, options)
    }

    /// Submits the computation of `outputs` from `graph`; returns a future
    /// for each output, in order. A graph with a generated layer travels
    /// as its layers and the scheduler expands it (a million-task layer is
    /// one small message, see [`crate::layers`]); any other graph as its
    /// plan, culled and fused here.
    pub fn submit_graph(&self, graph: &Graph, outputs: &[Key], options: &SubmitOptions) -> Result<Vec<Future>> {
        if !has_generated_layers(graph) {
            let plan = Plan::build(graph, outputs, &Default::default())?;
            return self.submit_plan_with(&plan, options);
        }
        let layered = LayeredGraph::from_graph(graph, outputs, options.priority, options.retries)?;
        let encoded = crate::frame::encode(&layered)?;
        drop(layered);
        self.submit_payload(ClientMessage::SubmitLayers, encoded, outputs.to_vec())
    }

    // ----- named datasets --------------------------------------------------

    /// Publishes the futures' keys under `name` (Dask's `publish_dataset`):
    /// the scheduler keeps their results while the name exists, for any
    /// client to take with [`Client::get_dataset`]. A name already taken is
    /// replaced.
    pub fn publish(&self, name: &str, futures: &[Future]) -> Result<()> {
        let keys = futures.iter().map(|f| f.key.clone()).collect();
        let answer = self.ask(ClientMessage::Publish {
            name: name.to_string(),
            keys,
        })?;
        match answer {
            Answer::Published(Ok(())) => Ok(()),
            Answer::Published(Err(message)) => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("cannot publish {name:?} on {}: {message}", self.inner.address),
            )),
            other => Err(self.unexpected(other)),
        }
    }

    /// Removes a published name; its results are released unless someone
    /// else holds them.
    pub fn unpublish(&self, name: &str) -> Result<()> {
        self.inner
            .to_scheduler
            .send(ClientMessage::Unpublish { name: name.to_string() }.into())
            .map_err(|_| self.closed_error("the client is shutting down"))
    }

    /// Futures for the keys published under `name`, in order (Dask's
    /// `get_dataset`).
    pub fn get_dataset(&self, name: &str) -> Result<Vec<Future>> {
        let keys = match self.ask(ClientMessage::GetDataset { name: name.to_string() })? {
            Answer::Dataset(Some(keys)) => keys,
            Answer::Dataset(None) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("no dataset named {name:?} on the scheduler at {}", self.inner.address),
                ));
            }
            other => return Err(self.unexpected(other)),
        };
        // Want them as this client too (they are known: no specs needed).
        let submission = Submission {
            tasks: keys
                .iter()
                .map(|k| NewTask {
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
        self.submit_raw(submission, keys)
    }

    /// The names published on the scheduler, sorted.
    pub fn list_datasets(&self) -> Result<Vec<String>> {
        match self.ask(ClientMessage::ListDatasets)? {
            Answer::Datasets(names) => Ok(names),
            other => Err(self.unexpected(other)),
        }
    }

    /// The cluster's events from now on (tasks finishing, workers joining,
    /// leaving and reporting their memory), as the scheduler publishes
    /// them. Returns once the scheduler has the subscription: nothing that
    /// happens after is missed.
    pub fn events(&self) -> Result<Events> {
        let (tx, rx) = std::sync::mpsc::channel();
        let subscribed = {
            let mut state = self.inner.shared.lock();
            if let Some(why) = &state.closed {
                return Err(self.closed_error(why));
            }
            state.listeners.push(tx);
            std::mem::replace(&mut state.subscribed, true)
        };
        if !subscribed {
            match self.ask(ClientMessage::Subscribe)? {
                Answer::Subscribed => {}
                other => return Err(self.unexpected(other)),
            }
        }
        Ok(Events { receiver: rx })
    }

    /// Sends a query and waits for its answer (answers come in order).
    fn ask(&self, message: ClientMessage) -> Result<Answer> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.inner.shared.lock();
            if let Some(why) = &state.closed {
                return Err(self.closed_error(why));
            }
            state.answers.push_back(tx);
            self.inner
                .to_scheduler
                .send(message.into())
                .map_err(|_| self.closed_error("the client is shutting down"))?;
        }
        rx.blocking_recv().map_err(|_| self.closed_error("closed"))
    }

    fn unexpected(&self, answer: Answer) -> Error {
        Error::new(
            ErrorKind::Remote,
            format!(
                "the scheduler at {} answered out of turn: {answer:?}",
                self.inner.address
            ),
        )
    }

    /// Submits one delayed call of a registered function (`#[blockwise::task]`):
    /// `client.submit(&delayed(inc).call(1))`.
    pub fn submit<C: Collection>(&self, call: &C) -> Result<Future> {
        let mut futures = self.persist(call)?;
        match futures.len() {
            1 => Ok(futures.remove(0)),
            n => Err(Error::invalid(format!(
                "submit takes a computation with one output, this one has {n}; use persist"
            ))),
        }
    }

    /// Submits `f(item)` for every item, in one graph (Dask's
    /// `client.map(f, items)`): `client.map(0..10, |i| delayed(inc).call(i))`.
    pub fn map<I, C, F>(&self, items: I, f: F) -> Result<Vec<Future>>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> C,
        C: Collection,
    {
        let calls: Vec<C> = items.into_iter().map(f).collect();
        let mut graph = Graph::new();
        let mut keys = Vec::new();
        for c in &calls {
            graph.merge(&c.graph());
            keys.extend(c.output_keys());
        }
        let graph = C::optimize(graph, &keys);
        let plan = Plan::build(&graph, &keys, &Default::default())?;
        self.submit_plan(&plan)
    }

    /// Sends a value to the cluster and returns its future (Dask's
    /// `scatter`). The key is a hash of the value: scattering equal values
    /// twice gives the same key. The value travels through the scheduler
    /// as a one-task graph; a worker keeps it.
    pub fn scatter<T: IntoValue>(&self, value: T) -> Result<Future> {
        let value = value.into_value();
        let mut tokenizer = Tokenizer::new();
        tokenizer.str("scatter");
        value.tokenize(&mut tokenizer);
        let name: Name = tokenizer.name("scatter");
        let key = Key::single(name);
        let submission = Submission {
            tasks: vec![NewTask {
                key: key.clone(),
                dependencies: vec![],
                order: 0,
                spec: Some(literal_task(&value)?),
                retries: 0,
            }],
            outputs: vec![0],
            priority: 0,
        };
        Ok(self.submit_raw(submission, vec![key])?.remove(0))
    }

    /// Computes a collection on the cluster and returns its result (the
    /// results are released afterwards).
    pub fn compute<C: Collection>(&self, collection: &C) -> Result<C::Output> {
        let futures = self.persist(collection)?;
        let values = self.gather(&futures)?;
        collection.finalize(values)
    }

    // ----- waiting and gathering ------------------------------------------

    /// Waits until every future is done (finished, failed or cancelled);
    /// `None` waits as long as it takes. Failures are not errors here:
    /// check each future's status.
    pub fn wait(&self, futures: &[Future], timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let keys: Vec<&Key> = futures.iter().map(|f| &f.key).collect();
        let mut state = self.inner.shared.lock();
        loop {
            if keys
                .iter()
                .all(|k| state.keys.get(*k).is_none_or(|e| e.status.is_done()))
            {
                return Ok(());
            }
            if let Some(why) = &state.closed {
                return Err(self.closed_error(why));
            }
            state = self.wait_changed(state, deadline, &keys)?;
        }
    }

    fn wait_changed<'a>(
        &self,
        state: MutexGuard<'a, State>,
        deadline: Option<Instant>,
        keys: &[&Key],
    ) -> Result<MutexGuard<'a, State>> {
        match deadline {
            None => Ok(self.inner.shared.changed.wait(state).unwrap_or_else(|e| e.into_inner())),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    let pending: Vec<String> = keys
                        .iter()
                        .filter(|k| state.keys.get(**k).is_some_and(|e| !e.status.is_done()))
                        .take(3)
                        .map(|k| k.to_string())
                        .collect();
                    return Err(Error::new(
                        ErrorKind::Remote,
                        format!(
                            "timed out waiting for the cluster at {} (still pending: {})",
                            self.inner.address,
                            pending.join(", ")
                        ),
                    ));
                }
                Ok(self
                    .inner
                    .shared
                    .changed
                    .wait_timeout(state, d - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0)
            }
        }
    }

    /// An iterator over the futures in the order they complete (Dask's
    /// `as_completed`).
    pub fn as_completed(&self, futures: Vec<Future>) -> AsCompleted {
        AsCompleted {
            client: self.clone(),
            pending: futures,
        }
    }

    /// Cancels the futures: their keys are released on the scheduler (and
    /// their tasks stopped if nobody else wants them); waiting on them
    /// returns at once, and their values are errors.
    pub fn cancel(&self, futures: &[Future]) {
        let keys: Vec<Key> = futures.iter().map(|f| f.key.clone()).collect();
        {
            let mut state = self.inner.shared.lock();
            for k in &keys {
                if let Some(e) = state.keys.get_mut(k) {
                    e.status = FutureStatus::Cancelled;
                }
            }
        }
        self.inner.shared.changed.notify_all();
        let _ = self.inner.to_scheduler.send(ClientMessage::Release(keys).into());
    }

    /// The values of the futures, in order; the first failure is the
    /// error (naming the key to blame).
    pub fn gather(&self, futures: &[Future]) -> Result<Vec<Value>> {
        let keys: Vec<Key> = futures.iter().map(|f| f.key.clone()).collect();
        self.gather_until(&keys, None)
    }

    /// The values of the futures as `T`.
    pub fn gather_as<T: FromValue>(&self, futures: &[Future]) -> Result<Vec<T>> {
        self.gather(futures)?
            .iter()
            .zip(futures)
            .map(|(v, f)| T::from_value(v).map_err(|e| e.context(format!("in the result of {}", f.key))))
            .collect()
    }

    fn status(&self, key: &Key) -> FutureStatus {
        self.inner
            .shared
            .lock()
            .keys
            .get(key)
            .map(|e| e.status.clone())
            .unwrap_or(FutureStatus::Cancelled)
    }

    /// Waits for `keys` to be finished, then fetches them from the workers
    /// holding them; a key lost meanwhile is waited for again.
    fn gather_until(&self, keys: &[Key], deadline: Option<Instant>) -> Result<Vec<Value>> {
        let mut values: Vec<Option<Value>> = vec![None; keys.len()];
        let mut attempts = 0u32;
        loop {
            let todo: Vec<usize> = (0..keys.len()).filter(|&i| values[i].is_none()).collect();
            if todo.is_empty() {
                return Ok(values.into_iter().map(|v| v.expect("every value fetched")).collect());
            }
            self.wait_finished(keys, &todo, deadline)?;
            let asked: Vec<Key> = todo.iter().map(|&i| keys[i].clone()).collect();
            let answer = self.who_has(asked)?;
            // One request per holder, in batches a response can carry.
            let mut by_holder: HashMap<String, Vec<(usize, TaskId)>> = HashMap::new();
            for (&i, (_, task, holders)) in todo.iter().zip(&answer) {
                if let (Some(task), Some(holder)) = (task, holders.first()) {
                    by_holder.entry(holder.clone()).or_default().push((i, *task));
                }
            }
            let batches: Vec<(String, Vec<(usize, TaskId)>)> = by_holder
                .into_iter()
                .flat_map(|(address, items)| {
                    items
                        .chunks(GATHER_BATCH)
                        .map(|c| (address.clone(), c.to_vec()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let mut last_failure = None;
            for fetched in self.fetch_batches(batches) {
                match fetched.outcome {
                    Ok(data) => {
                        let by_task: HashMap<TaskId, Value> = data.found.into_iter().collect();
                        for (i, t) in fetched.items {
                            if let Some(v) = by_task.get(&t) {
                                values[i] = Some(v.clone());
                            }
                        }
                    }
                    Err(e) => last_failure = Some(e.context(format!("while gathering from {}", fetched.address))),
                }
            }
            if let Some(i) = values.iter().position(|v| v.is_none()) {
                // A holder died or dropped the result: the scheduler learns
                // it (the worker's connection closes) and recomputes; give
                // it a moment before asking again.
                attempts += 1;
                if attempts > MAX_GATHER_ATTEMPTS {
                    let why = last_failure
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "no holder had it".into());
                    return Err(Error::new(
                        ErrorKind::Remote,
                        format!(
                            "could not fetch {} from the workers of {} after {MAX_GATHER_ATTEMPTS} attempts: {why}",
                            keys[i], self.inner.address
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(20 * u64::from(attempts.min(25))));
            }
        }
    }

    /// Fetches each batch from its holder, all at once.
    fn fetch_batches(&self, batches: Vec<(String, Vec<(usize, TaskId)>)>) -> Vec<Fetched> {
        let pool = self.inner.pool.clone();
        self.runtime().block_on(async {
            let jobs: Vec<_> = batches
                .into_iter()
                .map(|(address, items)| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        let tasks = items.iter().map(|&(_, t)| t).collect();
                        let outcome = pool.fetch(&address, tasks).await;
                        Fetched {
                            address,
                            items,
                            outcome,
                        }
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(jobs.len());
            for j in jobs {
                if let Ok(r) = j.await {
                    out.push(r);
                }
            }
            out
        })
    }

    fn wait_finished(&self, keys: &[Key], todo: &[usize], deadline: Option<Instant>) -> Result<()> {
        let wanted: Vec<&Key> = todo.iter().map(|&i| &keys[i]).collect();
        let mut state = self.inner.shared.lock();
        loop {
            let mut all = true;
            for k in &wanted {
                match state.keys.get(*k).map(|e| &e.status) {
                    Some(FutureStatus::Finished) => {}
                    Some(FutureStatus::Pending) => all = false,
                    Some(FutureStatus::Error(failure)) => {
                        let mut e = Error::new(ErrorKind::TaskFailed(failure.key.clone()), failure.message.clone());
                        if failure.key != **k {
                            e = e.context(format!("while computing {k}"));
                        }
                        return Err(e.context(format!("on the cluster at {}", self.inner.address)));
                    }
                    Some(FutureStatus::Cancelled) | None => {
                        return Err(Error::new(ErrorKind::Cancelled, format!("{k} was cancelled")));
                    }
                }
            }
            if all {
                return Ok(());
            }
            if let Some(why) = &state.closed {
                return Err(self.closed_error(why));
            }
            state = self.wait_changed(state, deadline, &wanted)?;
        }
    }

    fn who_has(&self, keys: Vec<Key>) -> Result<WhoHas> {
        match self.ask(ClientMessage::WhoHas(keys))? {
            Answer::WhoHas(answer) => Ok(answer),
            other => Err(self.unexpected(other)),
        }
    }

    fn add_ref(&self, key: &Key) {
        if let Some(e) = self.inner.shared.lock().keys.get_mut(key) {
            e.refs += 1;
        }
    }

    fn drop_ref(&self, key: &Key) {
        let mut state = self.inner.shared.lock();
        let Some(e) = state.keys.get_mut(key) else {
            return;
        };
        e.refs -= 1;
        if e.refs == 0 {
            state.keys.remove(key);
            let _ = self
                .inner
                .to_scheduler
                .send(ClientMessage::Release(vec![key.clone()]).into());
        }
    }
}

/// Futures in the order they complete; see [`Client::as_completed`].
pub struct AsCompleted {
    client: Client,
    pending: Vec<Future>,
}

impl Iterator for AsCompleted {
    type Item = Future;

    fn next(&mut self) -> Option<Future> {
        if self.pending.is_empty() {
            return None;
        }
        let shared = &self.client.inner.shared;
        let mut state = shared.lock();
        loop {
            let done = self
                .pending
                .iter()
                .position(|f| state.closed.is_some() || state.keys.get(&f.key).is_none_or(|e| e.status.is_done()));
            if let Some(i) = done {
                drop(state);
                return Some(self.pending.swap_remove(i));
            }
            state = shared.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The cluster's events, from [`Client::events`].
pub struct Events {
    receiver: std::sync::mpsc::Receiver<ClusterEvent>,
}

impl Events {
    /// The next event, waiting at most `timeout`; `None` if none came (or
    /// the client is gone).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<ClusterEvent> {
        self.receiver.recv_timeout(timeout).ok()
    }

    /// The next event if one is waiting.
    pub fn try_next(&self) -> Option<ClusterEvent> {
        self.receiver.try_recv().ok()
    }
}

impl Iterator for Events {
    type Item = ClusterEvent;

    /// Waits for the next event; `None` once the client is gone.
    fn next(&mut self) -> Option<ClusterEvent> {
        self.receiver.recv().ok()
    }
}

impl Executor for Client {
    fn name(&self) -> String {
        self.inner.address.clone()
    }

    /// Runs the graph on the cluster. Callbacks (the call's, the global
    /// ones, the automatic progress bar) see `start`, a `task_finish` for
    /// every task as the scheduler reports it (with `worker` the worker's
    /// id number and a unit value: results stay on the workers), and
    /// `finish`.
    ///
    /// A graph with a generated layer travels as its layers and is
    /// expanded on the scheduler ([`crate::layers`]); the plan the
    /// callbacks see is then built here without fusion, so that its tasks
    /// are the scheduler's.
    fn execute(&self, graph: &Graph, outputs: &[Key], options: &RunOptions) -> Result<Vec<Value>> {
        let callbacks = blockwise_local::callbacks_for(options)?;
        let layered = has_generated_layers(graph);
        let submit = |plan: Option<&Plan>| match plan {
            Some(plan) if !layered => self.submit_plan(plan),
            _ => self.submit_graph(graph, outputs, &SubmitOptions::default()),
        };
        if callbacks.is_empty() {
            let plan = if layered {
                None
            } else {
                Some(blockwise_core::exec::plan(graph, outputs, options)?)
            };
            return submit(plan.as_ref()).and_then(|futures| self.gather(&futures));
        }
        let plan = if layered {
            let mut unfused = options.plan.clone();
            unfused.fuse = false;
            Plan::build(graph, outputs, &unfused)?
        } else {
            blockwise_core::exec::plan(graph, outputs, options)?
        };
        for cb in &callbacks {
            cb.start(&plan);
        }
        let events = self.events()?;
        let done = std::sync::atomic::AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            let follower = scope.spawn(|| follow(&plan, &callbacks, events, &done));
            let result = submit(Some(&plan)).and_then(|futures| self.gather(&futures));
            done.store(true, std::sync::atomic::Ordering::Release);
            let _ = follower.join();
            result
        });
        for cb in &callbacks {
            cb.finish(&plan, result.is_err());
        }
        result
    }
}

/// Calls `task_finish` for each task of `plan` the scheduler reports
/// finished, until `done` (then drains what already arrived: every report
/// of a task comes before the report of the results it led to).
fn follow(
    plan: &Plan,
    callbacks: &[Arc<dyn blockwise_core::Callback>],
    events: Events,
    done: &std::sync::atomic::AtomicBool,
) {
    let ids: HashMap<Key, u32, crate::id::IdBuildHasher> =
        plan.keys().enumerate().map(|(i, k)| (k, i as u32)).collect();
    let unit: Value = Arc::new(());
    let mut seen = vec![false; plan.len()];
    let mut on = |event: ClusterEvent| {
        if let ClusterEvent::TaskFinished { key, worker, .. } = event
            && let Some(&id) = ids.get(&key)
            && !std::mem::replace(&mut seen[id as usize], true)
        {
            for cb in callbacks {
                cb.task_finish(plan, id, worker.get() as usize, &unit);
            }
        }
    };
    loop {
        if done.load(std::sync::atomic::Ordering::Acquire) {
            while let Some(event) = events.try_next() {
                on(event);
            }
            return;
        }
        if let Some(event) = events.recv_timeout(Duration::from_millis(20)) {
            on(event);
        }
    }
}

async fn connect_and_spawn(
    options: &ClientOptions,
    shared: Arc<Shared>,
    outgoing: mpsc::UnboundedReceiver<Outgoing>,
) -> Result<ClientId> {
    let address = &options.address;
    let mut connection =
        crate::worker::connect_with_retry(address, options.limits, options.tls.as_ref(), options.connect_timeout)
            .await?;
    connection
        .send(&Hello {
            protocol: PROTOCOL_VERSION,
            build_id: blockwise_core::identity::build_id().to_string(),
            role: Role::Client {
                name: options.name.clone(),
            },
            token: options.token.clone(),
        })
        .await?;
    let id = match connection
        .recv()
        .await?
        .map(|raw| raw.decode::<Welcome>())
        .transpose()?
    {
        Some(Welcome::Accepted { id }) => ClientId::new(id),
        Some(Welcome::Refused { reason }) => {
            return Err(Error::new(
                ErrorKind::BuildMismatch,
                format!("the scheduler at {address} refused this client: {reason}"),
            ));
        }
        None => {
            return Err(Error::new(
                ErrorKind::Remote,
                format!("the scheduler at {address} closed the connection during the handshake"),
            ));
        }
    };
    let (mut reader, mut writer) = connection.into_split();
    tokio::spawn(async move {
        let mut outgoing = outgoing;
        while let Some(first) = outgoing.recv().await {
            let mut next = Some(first);
            let mut leaving = false;
            while let Some(Outgoing { message, payload }) = next {
                leaving |= matches!(message, ClientMessage::Goodbye);
                let payloads: Vec<&[u8]> = payload.as_deref().into_iter().collect();
                if writer.feed(&message, &payloads).await.is_err() {
                    return;
                }
                next = outgoing.try_recv().ok();
            }
            if writer.flush().await.is_err() || leaving {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let why = loop {
            match reader.recv().await {
                Ok(Some(raw)) => match raw.decode::<Vec<Envelope<ToClient>>>() {
                    Ok(envelopes) => on_messages(&shared, envelopes),
                    Err(e) => break format!("the scheduler sent a malformed message: {e}"),
                },
                Ok(None) => break "the scheduler closed the connection".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        let mut state = shared.lock();
        if state.closed.is_none() {
            state.closed = Some(why);
        }
        // Dropping the waiters wakes whoever waits for an answer.
        state.submits.clear();
        state.answers.clear();
        drop(state);
        shared.changed.notify_all();
    });
    Ok(id)
}

fn answer_query(state: &mut State, answer: Answer) {
    if let Some(tx) = state.answers.pop_front() {
        let _ = tx.send(answer);
    }
}

/// Applies a frame of the scheduler's messages, under one lock; waiters
/// are woken once, if anything they wait on changed.
fn on_messages(shared: &Shared, envelopes: Vec<Envelope<ToClient>>) {
    let mut state = shared.lock();
    let mut changed = false;
    for envelope in envelopes {
        changed |= on_message(&mut state, envelope.message);
    }
    drop(state);
    if changed {
        shared.changed.notify_all();
    }
}

/// Applies one message; whether a waiter may care.
fn on_message(state: &mut State, message: ToClient) -> bool {
    match message {
        ToClient::InMemory { key, .. } => {
            if let Some(e) = state.keys.get_mut(&key)
                && e.status != FutureStatus::Cancelled
            {
                e.status = FutureStatus::Finished;
            }
        }
        ToClient::Erred { key, failure } => {
            if let Some(e) = state.keys.get_mut(&key)
                && e.status != FutureStatus::Cancelled
            {
                e.status = FutureStatus::Error(failure);
            }
        }
        ToClient::Lost { key } => {
            if let Some(e) = state.keys.get_mut(&key)
                && e.status == FutureStatus::Finished
            {
                e.status = FutureStatus::Pending;
            }
        }
        ToClient::Rejected { message } => {
            if let Some(ack) = state.submits.pop_front() {
                let _ = ack.send(Err(message));
            }
        }
        ToClient::Accepted => {
            if let Some(ack) = state.submits.pop_front() {
                let _ = ack.send(Ok(()));
            }
        }
        ToClient::WhoHas(answer) => answer_query(state, Answer::WhoHas(answer)),
        ToClient::Published(outcome) => answer_query(state, Answer::Published(outcome)),
        ToClient::Dataset(keys) => answer_query(state, Answer::Dataset(keys)),
        ToClient::Datasets(names) => answer_query(state, Answer::Datasets(names)),
        ToClient::Subscribed => answer_query(state, Answer::Subscribed),
        ToClient::Event(event) => {
            state.listeners.retain(|l| l.send(event.clone()).is_ok());
            // Nobody waits on a status for an event.
            return false;
        }
    }
    true
}
