//! The messages between clients, the scheduler and workers.
//!
//! Every connection starts with a [`Hello`] from the side that connected and
//! a [`Welcome`] from the side that accepted; then each side sends the
//! messages of its role, framed by [`crate::frame`] (control parts are
//! postcard; bulk data travels as payloads beside them). The scheduler's
//! messages to workers and clients, and the workers' to the scheduler,
//! travel in batches: each frame's control part is a `Vec` of them (a
//! [`crate::frame::Batch`]), in order — a thousand tiny tasks assigned or
//! finished cost one frame, not a thousand.
//!
//! ```text
//! worker → scheduler   Hello{Worker}      ← Welcome{Accepted{id}} | Refused
//!                      WorkerMessage …    ← ToWorker …
//! client → scheduler   Hello{Client}      ← Welcome{Accepted{id}} | Refused
//!                      ClientMessage …    ← ToClient …
//!                      (each Submit is answered Accepted | Rejected, each
//!                      query in the order asked; reports come any time)
//! worker → worker      Hello{Peer}        ← Welcome
//! client → worker      PeerRequest …      ← PeerResponse … (+ payloads)
//! ```
//!
//! Results never pass through the scheduler: a worker fetches its inputs
//! from its peers, and a client gathers from the workers the scheduler
//! names in [`ToClient::WhoHas`].
//!
//! The scheduler side of these messages is the state machine's own
//! vocabulary: [`WorkerMessage::into_event`] and
//! [`ClientMessage::into_event`] turn what arrives into
//! [`crate::scheduler::Event`]s, and [`Outgoing::from`] turns each
//! [`Command`] into a message for one connection. Stimulus ids travel with
//! every scheduler message, so a worker's log names the same stimuli as the
//! scheduler's stories.

use std::sync::Arc;

use blockwise_core::Key;
use serde::{Deserialize, Serialize};

use crate::id::{ClientId, RunId, StimulusId, TaskId, WorkerId};
use crate::scheduler::{Command, ComputeTask, Event, StealOutcome, Submission, TaskFailure, WorkerInfo, WorkerMetrics};

/// Version of this protocol; peers with another version are refused.
///
/// 4: a result sent to a peer travels as two payloads, a head and a body
/// (see [`PeerResponse`]).
pub const PROTOCOL_VERSION: u32 = 4;

/// The first message on a connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol: u32,
    /// The sender's build id ([`blockwise_core::identity::build_id`]):
    /// workers and clients of one computation must run the same build.
    pub build_id: String,
    /// Who is connecting.
    pub role: Role,
    /// The cluster's shared secret, when one is configured.
    pub token: Option<String>,
}

/// Who is connecting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Role {
    /// A worker, offering what [`WorkerInfo`] says; peers reach it at
    /// `address` (`tcp://host:port`).
    Worker {
        /// What it offers.
        info: WorkerInfo,
        /// Where peers fetch results from it.
        address: String,
    },
    /// A client.
    Client {
        /// A name for logs.
        name: String,
    },
    /// Another worker (or a client gathering results), come to fetch
    /// results.
    Peer {
        /// Who is connecting, for logs.
        name: String,
    },
}

/// The answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Welcome {
    /// Accepted; the id the scheduler gave the worker or client (0 for a
    /// peer).
    Accepted {
        /// The new worker's or client's id number.
        id: u32,
    },
    /// Refused, and why (a build mismatch, a wrong token, another protocol
    /// version). The connection closes after it.
    Refused {
        /// Why, for a person.
        reason: String,
    },
}

/// A worker's message to the scheduler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WorkerMessage {
    /// See [`Event::TaskStarted`].
    Started {
        /// The task.
        task: TaskId,
        /// Its run.
        run: RunId,
    },
    /// See [`Event::TaskFinished`].
    Finished {
        /// The task.
        task: TaskId,
        /// Its run.
        run: RunId,
        /// Result size.
        nbytes: u64,
        /// Compute time, microseconds.
        duration_us: u64,
    },
    /// See [`Event::TaskErred`].
    Erred {
        /// The task.
        task: TaskId,
        /// Its run.
        run: RunId,
        /// The error.
        message: String,
    },
    /// See [`Event::ReplicasAdded`].
    ReplicasAdded {
        /// Results now held.
        tasks: Vec<TaskId>,
    },
    /// See [`Event::DataMissing`].
    DataMissing {
        /// The result asked for.
        task: TaskId,
        /// The worker that did not have it.
        holder: WorkerId,
    },
    /// See [`Event::StealResponse`].
    StealResponse {
        /// The task.
        task: TaskId,
        /// The request answered.
        request: StimulusId,
        /// What the worker did.
        outcome: StealOutcome,
    },
    /// See [`Event::WorkerHeartbeat`].
    Heartbeat(WorkerMetrics),
    /// See [`Event::WorkerPaused`].
    Paused(bool),
    /// The worker is leaving on purpose (see [`Event::WorkerLost`]).
    Goodbye,
}

impl WorkerMessage {
    /// The scheduler event this message is, from `worker`.
    pub fn into_event(self, worker: WorkerId) -> Event {
        match self {
            WorkerMessage::Started { task, run } => Event::TaskStarted { worker, task, run },
            WorkerMessage::Finished {
                task,
                run,
                nbytes,
                duration_us,
            } => Event::TaskFinished {
                worker,
                task,
                run,
                nbytes,
                duration_us,
            },
            WorkerMessage::Erred { task, run, message } => Event::TaskErred {
                worker,
                task,
                run,
                message,
            },
            WorkerMessage::ReplicasAdded { tasks } => Event::ReplicasAdded { worker, tasks },
            WorkerMessage::DataMissing { task, holder } => Event::DataMissing { worker, task, holder },
            WorkerMessage::StealResponse { task, request, outcome } => Event::StealResponse {
                worker,
                task,
                request,
                outcome,
            },
            WorkerMessage::Heartbeat(metrics) => Event::WorkerHeartbeat { worker, metrics },
            WorkerMessage::Paused(paused) => Event::WorkerPaused { worker, paused },
            WorkerMessage::Goodbye => Event::WorkerLost { worker, graceful: true },
        }
    }
}

/// A scheduler's message to a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run a task (see [`Command::Compute`]).
    Compute(Box<ComputeTask>),
    /// Drop these results (see [`Command::Free`]).
    Free(Vec<TaskId>),
    /// Forget these tasks and their results (see [`Command::Cancel`]).
    Cancel(Vec<TaskId>),
    /// Give up this task if not started (see [`Command::StealRequest`]);
    /// the answer quotes the envelope's stimulus.
    StealRequest(TaskId),
    /// Fetch this input from these workers instead (see
    /// [`Command::UpdateWhoHas`]).
    UpdateWhoHas {
        /// The input.
        task: TaskId,
        /// Its holders.
        who_has: Vec<WorkerId>,
    },
    /// Where peers are: workers that joined (id, address) and left.
    Peers {
        /// New workers.
        joined: Vec<(WorkerId, String)>,
        /// Workers gone.
        left: Vec<WorkerId>,
    },
    /// The scheduler is closing this connection, and why.
    Close {
        /// Why, for a person.
        reason: String,
    },
}

/// A client's message to the scheduler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// Compute these tasks (see [`Event::ClientSubmitted`]).
    Submit(Submission),
    /// The same, with the [`Submission`] postcard-encoded in the message's
    /// first payload: a graph of a million tasks is larger than a control
    /// part may be. The server turns it into `Submit` as it arrives.
    SubmitEncoded,
    /// Compute a graph sent as its layers: a
    /// [`crate::layers::LayeredGraph`], postcard-encoded in the message's
    /// first payload. The server expands it into a `Submit` as it
    /// arrives (answered as a `Submit`: `Accepted` or `Rejected`).
    SubmitLayers,
    /// No longer wanted (see [`Event::ClientReleased`]).
    Release(Vec<Key>),
    /// Where are the results of these keys? (Answered with
    /// [`ToClient::WhoHas`]; not an event: it changes nothing.) Queries are
    /// answered in the order they are asked.
    WhoHas(Vec<Key>),
    /// Keep these keys under a name, for any client (answered with
    /// [`ToClient::Published`]).
    Publish {
        /// The name.
        name: String,
        /// The keys, which the scheduler must know.
        keys: Vec<Key>,
    },
    /// Drop a name (its keys are released unless wanted otherwise).
    Unpublish {
        /// The name.
        name: String,
    },
    /// The keys published under a name (answered with
    /// [`ToClient::Dataset`]).
    GetDataset {
        /// The name.
        name: String,
    },
    /// The names published (answered with [`ToClient::Datasets`]).
    ListDatasets,
    /// Send this client the cluster's [`ClusterEvent`]s from now on
    /// (answered with [`ToClient::Subscribed`]).
    Subscribe,
    /// The client is leaving (see [`Event::ClientDisconnected`]).
    Goodbye,
}

impl ClientMessage {
    /// The scheduler event this message is, from `client`; `None` for a
    /// query.
    pub fn into_event(self, client: ClientId) -> Option<Event> {
        match self {
            ClientMessage::Submit(submission) => Some(Event::ClientSubmitted { client, submission }),
            ClientMessage::Release(keys) => Some(Event::ClientReleased { client, keys }),
            ClientMessage::WhoHas(_)
            | ClientMessage::SubmitEncoded
            | ClientMessage::SubmitLayers
            | ClientMessage::Publish { .. }
            | ClientMessage::Unpublish { .. }
            | ClientMessage::GetDataset { .. }
            | ClientMessage::ListDatasets
            | ClientMessage::Subscribe => None,
            ClientMessage::Goodbye => Some(Event::ClientDisconnected { client }),
        }
    }
}

/// A scheduler's message to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToClient {
    /// A wanted key is in memory.
    InMemory {
        /// The key.
        key: Key,
        /// Its size.
        nbytes: u64,
    },
    /// A wanted key failed.
    Erred {
        /// The key.
        key: Key,
        /// Why (naming the task to blame).
        #[serde(with = "shared")]
        failure: Arc<TaskFailure>,
    },
    /// A key reported in memory lost its result; it is being recomputed.
    Lost {
        /// The key.
        key: Key,
    },
    /// A submission was refused (the answer to one `Submit`).
    Rejected {
        /// Why.
        message: String,
    },
    /// A submission was accepted (the answer to one `Submit` that was not
    /// rejected): its outputs are now wanted by this client.
    Accepted,
    /// Where results are: key, task id (workers name results by it), and
    /// the holders' addresses; no holders if the key is not in memory.
    WhoHas(Vec<(Key, Option<TaskId>, Vec<String>)>),
    /// The answer to a `Publish`: done, or why not.
    Published(Result<(), String>),
    /// The answer to a `GetDataset`: the keys, if the name exists.
    Dataset(Option<Vec<Key>>),
    /// The answer to `ListDatasets`: the names, sorted.
    Datasets(Vec<String>),
    /// The answer to `Subscribe`: events follow from here on.
    Subscribed,
    /// Something happened on the cluster (to subscribed clients).
    Event(ClusterEvent),
}

/// What a subscribed client hears about the cluster: a task's end, and
/// workers coming, going and reporting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClusterEvent {
    /// A task's result is in memory on `worker` (sent before any report
    /// that the result caused).
    TaskFinished {
        /// The task's key.
        key: Key,
        /// Where it ran.
        worker: WorkerId,
        /// How long it ran, microseconds.
        duration_us: u64,
        /// Its result's size.
        nbytes: u64,
    },
    /// A task's op failed on `worker` (it may be retried).
    TaskErred {
        /// The task's key.
        key: Key,
        /// Where it ran.
        worker: WorkerId,
    },
    /// A worker joined.
    WorkerJoined {
        /// Its id.
        worker: WorkerId,
        /// Its name.
        name: String,
        /// Where peers reach it.
        address: String,
    },
    /// A worker left or died.
    WorkerLost {
        /// Its id.
        worker: WorkerId,
    },
    /// A worker's heartbeat: memory, spilled bytes, CPU, tasks running.
    WorkerMetrics {
        /// Its id.
        worker: WorkerId,
        /// What it reported.
        metrics: WorkerMetrics,
    },
}

/// A worker's request to a peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Send these results.
    GetData(Vec<TaskId>),
}

/// A peer's answer: the results it has, with a codec name each, and the
/// ones it does not have.
///
/// Each result found travels as two payloads, in the order of `found`: a
/// *head* and a *body*, the value's encoding being the head followed by
/// the body. A value that lends its encoding
/// ([`blockwise_core::Data::encode_lent`]: an array chunk) sends its header
/// as the head and its own memory as the body, never copied into a
/// buffer; the receiver reads the body straight into the new value's
/// storage when its build has a receiver for the codec
/// ([`blockwise_core::value::receive_value`]). Any other value sends its
/// whole encoding as the head and an empty body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerResponse {
    /// Results sent, with the codec of each payload.
    pub found: Vec<(TaskId, String)>,
    /// Results it does not hold.
    pub missing: Vec<TaskId>,
}

/// A scheduler message with the stimulus that caused it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The cause.
    pub stimulus: StimulusId,
    /// The message.
    pub message: T,
}

/// Serde for a shared value, as the value itself (serde's `rc` feature,
/// without turning it on for everyone).
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(value: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
        (**value).serialize(s)
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}

/// A command, addressed to one connection.
#[derive(Clone, Debug, PartialEq)]
pub enum Outgoing {
    /// For a worker.
    Worker(WorkerId, Envelope<ToWorker>),
    /// For a client.
    Client(ClientId, Envelope<ToClient>),
}

impl From<Command> for Outgoing {
    fn from(command: Command) -> Self {
        let stimulus = command.stimulus();
        let worker = |w, message| Outgoing::Worker(w, Envelope { stimulus, message });
        let client = |c, message| Outgoing::Client(c, Envelope { stimulus, message });
        match command {
            Command::Compute { worker: w, compute, .. } => worker(w, ToWorker::Compute(compute)),
            Command::Free { worker: w, tasks, .. } => worker(w, ToWorker::Free(tasks)),
            Command::Cancel { worker: w, tasks, .. } => worker(w, ToWorker::Cancel(tasks)),
            Command::StealRequest { worker: w, task, .. } => worker(w, ToWorker::StealRequest(task)),
            Command::UpdateWhoHas {
                worker: w,
                task,
                who_has,
                ..
            } => worker(w, ToWorker::UpdateWhoHas { task, who_has }),
            Command::ReportInMemory {
                client: c, key, nbytes, ..
            } => client(c, ToClient::InMemory { key, nbytes }),
            Command::ReportError {
                client: c,
                key,
                failure,
                ..
            } => client(c, ToClient::Erred { key, failure }),
            Command::ReportLost { client: c, key, .. } => client(c, ToClient::Lost { key }),
            Command::Rejected { client: c, message, .. } => client(c, ToClient::Rejected { message }),
        }
    }
}

#[cfg(test)]
mod tests {
    use blockwise_core::Name;

    use super::*;
    use crate::frame::{FrameLimits, read_message, write_message};
    use crate::scheduler::{FailureKind, InputLocation, Priority, TaskSpec};

    fn roundtrip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(message: T) {
        let mut bytes = Vec::new();
        write_message(&mut bytes, &message, &[], &FrameLimits::default()).unwrap();
        let raw = read_message(&mut std::io::Cursor::new(bytes), &FrameLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(raw.decode::<T>().unwrap(), message);
    }

    #[test]
    fn every_kind_of_message_roundtrips() {
        let key = Key::new(Name::new("x-1"), &[3, 4]);
        let mut slab: crate::id::Slab<TaskId, ()> = crate::id::Slab::new();
        let task = slab.insert(());
        roundtrip(Hello {
            protocol: PROTOCOL_VERSION,
            build_id: "abc".into(),
            role: Role::Worker {
                info: WorkerInfo {
                    name: "w".into(),
                    threads: 4,
                    memory_limit: 1 << 30,
                    resources: [("GPU".to_string(), 2.0)].into_iter().collect(),
                },
                address: "tcp://127.0.0.1:1234".into(),
            },
            token: Some("secret".into()),
        });
        roundtrip(Welcome::Refused { reason: "no".into() });
        roundtrip(Envelope {
            stimulus: StimulusId::new(9),
            message: ToWorker::Compute(Box::new(ComputeTask {
                task,
                run: RunId::new(3),
                key: key.clone(),
                spec: TaskSpec::new(vec![1, 2, 3]),
                priority: Priority {
                    user: -1,
                    generation: 2,
                    order: 7,
                },
                inputs: vec![InputLocation {
                    task,
                    key: key.clone(),
                    nbytes: 10,
                    who_has: vec![WorkerId::new(1), WorkerId::new(2)],
                }],
                suspicious: 1,
            })),
        });
        roundtrip(WorkerMessage::StealResponse {
            task,
            request: StimulusId::new(5),
            outcome: StealOutcome::Released,
        });
        roundtrip(ClientMessage::Release(vec![key.clone()]));
        roundtrip(ToClient::Erred {
            key: key.clone(),
            failure: Arc::new(TaskFailure {
                key,
                message: "boom".into(),
                kind: FailureKind::Raised,
            }),
        });
        roundtrip(PeerResponse {
            found: vec![(task, "postcard".into())],
            missing: vec![],
        });
    }

    #[test]
    fn commands_are_addressed_to_their_connection_with_their_stimulus() {
        let out = Outgoing::from(Command::Free {
            worker: WorkerId::new(4),
            tasks: vec![],
            stimulus: StimulusId::new(12),
        });
        assert_eq!(
            out,
            Outgoing::Worker(
                WorkerId::new(4),
                Envelope {
                    stimulus: StimulusId::new(12),
                    message: ToWorker::Free(vec![])
                }
            )
        );
        let out = Outgoing::from(Command::Rejected {
            client: ClientId::new(1),
            message: "cycle".into(),
            stimulus: StimulusId::new(2),
        });
        assert!(matches!(out, Outgoing::Client(c, _) if c == ClientId::new(1)));
        let event = WorkerMessage::Goodbye.into_event(WorkerId::new(3));
        assert!(matches!(event, Event::WorkerLost { graceful: true, .. }));
        assert!(ClientMessage::WhoHas(vec![]).into_event(ClientId::new(0)).is_none());
    }
}
