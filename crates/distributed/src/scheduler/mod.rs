//! The scheduler: a synchronous state machine. Events in, commands out.
//!
//! [`Scheduler::handle`] takes one [`Event`] (a worker finished a task, a
//! client submitted a graph, a worker died…) with the [`StimulusId`] that
//! names it, changes the state, and hands [`Command`]s (run this task on
//! that worker, free those results, tell that client its key is ready) to a
//! [`Comm`]. It does no I/O, reads no clock and spawns nothing, so every
//! transition is tested without a network, deterministically, with
//! [`Scheduler::validate_state`] checked after every step. The async server
//! only carries events in and commands out (hyperqueue's `tako` reactor,
//! dask/distributed's `scheduler.py` transitions and
//! `worker_state_machine.py`).
//!
//! # Task states
//!
//! ```text
//!               ┌──── worker died · input or result lost · retry · no longer root-ish ──┐
//!               ▼                                                                       │
//! submitted ─▶ released ──▶ waiting ──▶ (ready) ─┬─────────────────▶ processing ──▶ memory
//!               │  ▲          │                  ├─▶ queued ─(slot)──────▲  │           │
//!               │  │          │                  └─▶ no-worker ─(worker)─┘  │           │
//!               │  │          ▼                                             │           │
//!               │  │        erred ◀─ op failed · input erred · KilledWorker ┘           │
//!               │  │          │                                                         │
//!               │  └──────────┴─── nobody needs it: cancel the run, free the result ◀───┘
//!               ▼
//!           forgotten   (released or erred, and nothing refers to it any more)
//! ```
//!
//! | edge | function | when |
//! |---|---|---|
//! | released → waiting | `released_waiting` | it is needed: a client wants it, or a waiting dependent |
//! | waiting → processing, queued, no-worker | `waiting_processing` | its last input reached memory |
//! | queued → processing | `queued_processing` | a worker has a free slot |
//! | no-worker → processing, queued | `no_worker_processing` | a worker joined or resumed |
//! | processing → memory | `processing_memory` | its worker reported the current run finished |
//! | processing → processing | `steal_confirmed` | its victim let it go to a thief |
//! | released, waiting, processing → erred | `fail` | the op failed (no retries left), an input erred, `KilledWorker` |
//! | waiting, queued, no-worker, processing, memory, erred → released | `release` | nobody needs it; or its worker died, its result or an input was lost, a retry, its group stopped being root-ish (then on to waiting) |
//! | released, erred → forgotten | `forget` | no client wants it and no live task reads it |
//!
//! Any other edge is an error ([`SchedulerError::IllegalTransition`]) that
//! carries the key's [story](Scheduler::story). A change of state starts a
//! cascade: each transition may *recommend* other tasks for another look (a
//! finished task makes its dependents ready; a released one may leave its
//! inputs unneeded; a lost result voids the runs that were about to read
//! it), and the event's handler runs recommendations until none is left.
//! Most recommendations only say *settle this task*: when its turn comes,
//! the task is brought in line with whether it is needed *then* — to
//! waiting if it is needed and has no result (or was placed while an input
//! was lost), to released if nobody needs it, to forgotten if nothing
//! refers to it. Within one cascade "its input is lost, redo it" and
//! "nobody needs it" can both be said of one task; the state at its turn,
//! not the order in which they were said, decides which holds. (An early
//! version let the later recommendation win, and the property test found a
//! task left processing with a lost input.)
//!
//! Ready tasks are not placed inside the cascade but after it, most urgent
//! first, so the order of placement is the order of priority, not the order
//! in which the cascade happened to reach them.
//!
//! # Who needs a task
//!
//! A task is *needed* while a client wants it or a dependent *waits* for it
//! (a dependent in waiting, queued, no-worker or processing). Needed tasks
//! move towards memory; a result nobody needs is freed on its workers at
//! once (as the local engine drops a value after its last reader runs); a
//! released or erred task that no client wants and no live task reads is
//! forgotten. A released task with live dependents is kept, result-less:
//! if a dependent's result is lost, it may have to be recomputed from it.
//!
//! # Placement
//!
//! A ready task goes to the worker that can *start* it soonest
//! ([`Scheduler`]'s `pick_worker`, Dask's `worker_objective`): the worker's
//! backlog (occupancy ÷ threads) plus the time to fetch the inputs it does
//! not hold (bytes ÷ bandwidth); ties go to the worker holding less data.
//! Occupancy is the sum, over the tasks assigned to a worker, of their
//! expected compute time (learned per key prefix from finished tasks) and
//! transfer time.
//!
//! # Why root tasks are queued
//!
//! Root tasks (loading a chunk, generating a block) are ready all at once.
//! Sent to workers all at once, every worker runs every root task it got
//! before the reductions that would consume their results, and memory fills
//! with chunks waiting to be combined ("root task overproduction"). So, as
//! Dask since 2022.11, *root-ish* tasks — a task group larger than twice the
//! cluster's threads, reading fewer than five tasks in all — are given to a
//! worker only while it holds fewer than `ceil(threads × worker_saturation)`
//! tasks (1.1 by default: one extra per ten threads so no thread idles
//! while the next task travels). The rest wait in the scheduler's queue in
//! priority order and go out one by one as slots open, after the dependents
//! that just became ready — so a worker finishes a branch before it starts
//! a new one. Non-root tasks are never queued: their inputs already pin
//! them to where the data is.
//!
//! Unlike Dask, a worker also takes root-ish tasks while its occupancy
//! (expected work) is below `threads × worker_queue_window` (5 ms by
//! default, at most [`MAX_TASKS_PER_THREAD`] per thread). Tasks whose
//! learned duration is far below a round trip to the scheduler would
//! otherwise leave each thread idle for one round trip per task (Dask's
//! LocalCluster runs a few hundred no-op tasks a second for that reason);
//! a few milliseconds of them per thread travel, run and report in
//! batches. Until a prefix's duration is learned its tasks count at
//! `unknown-task-duration` (500 ms), so unknown and long tasks are withheld
//! exactly as before, and overproduction is bounded by the window.
//!
//! # Stealing
//!
//! Placement is decided once, with estimates; [`Event::Balance`] corrects
//! it. An idle worker (fewer tasks than threads) steals from the most
//! backed-up worker (more tasks than threads) a task that has not started
//! and is cheapest to move, if it would finish there before the victim
//! would get through its backlog. The victim confirms
//! ([`Event::StealResponse`]): a task that started in the meantime stays.
//! Queued tasks need no stealing: they are not on any worker yet, and go to
//! whichever worker frees a slot first.
//!
//! # Faults
//!
//! - **A worker dies**: its results are gone. A lost result that is still
//!   needed is recomputed from its (recursively recomputed, if lost too)
//!   inputs; dependents that were about to run with it go back to waiting.
//!   Its assigned tasks go back to waiting. A task that had *started* on it
//!   gets a strike (`suspicious`); the strike after `allowed_failures` fails
//!   it with [`FailureKind::KilledWorker`], naming the key.
//! - **A task fails**: retried while it has retries left, then erred; its
//!   waiting dependents err with the same failure (blaming it), and every
//!   client wanting one of them is told.
//! - **A client goes away**: everything it wanted is released.
//! - **No worker**: ready tasks wait in no-worker until one joins.
//!
//! Every output of a submission ends in memory or erred, as long as some
//! worker eventually runs tasks: the property test drives random graphs
//! through random joins, deaths, pauses, steals and finishes to check it.
//!
//! # Messages that cross
//!
//! Scheduler and workers talk over connections that keep order in each
//! direction but take time, so a worker's report can cross the scheduler's
//! change of mind. The rules that make every crossing harmless (and that
//! the worker must keep):
//!
//! - Every assignment is a new *run* ([`crate::RunId`]); a worker's
//!   started/finished/erred report quotes it, and a report of any run but
//!   the current one is ignored.
//! - [`Command::Cancel`] makes the worker drop the task *and* any result or
//!   copy of it; the scheduler never frees a cancelled run's result itself
//!   (a free could cross a later run's report and drop the new result).
//! - A worker answers [`Command::StealRequest`] as of when it reads it
//!   (before any later command), and drops the task if it lets it go.
//! - A worker keeps results and fetched copies until [`Command::Free`], and
//!   reports copies with [`Event::ReplicasAdded`] and holders that failed it
//!   with [`Event::DataMissing`] (answered with [`Command::UpdateWhoHas`], or
//!   by recomputing a result that turns out to be gone).
//! - Anything from a worker the scheduler has declared lost is ignored.
//!
//! The property test runs with workers' messages delayed at random, so
//! these crossings happen there all the time.
//!
//! # Invariants
//!
//! [`Scheduler::validate_state`] checks, between events: every cross
//! reference is symmetric (dependencies/dependents, who_has/has_what,
//! who_wants/wants, processing/processing_on, steals); each state has exactly
//! its data (waiting ⇔ some input missing, and `waiting_for` counts exactly
//! the missing ones; queued/no-worker/processing ⇒ every input in memory;
//! memory ⇔ at least one holder; erred ⇔ an error recorded); the needed
//! tasks are exactly those not released or erred; occupancy and held bytes
//! equal their sums; the queue holds only root-ish tasks, and is empty
//! unless every running worker is full; no-worker tasks exist only while no
//! worker runs.

mod command;
mod config;
mod event;
mod keys;
mod placement;
mod ready;
mod story;
mod task;
mod transitions;
mod validate;
mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use blockwise_core::{Key, Name};

pub use command::{Comm, Command, ComputeTask, InputLocation};
pub use config::{MAX_TASKS_PER_THREAD, SchedulerConfig};
pub use event::{Event, NewTask, StealOutcome, Submission, TaskSpec, WorkerInfo, WorkerMetrics};
pub use story::{SchedulerError, TransitionRecord};
pub use task::{FailureKind, Priority, TaskFailure, TaskState};
pub use view::{TaskView, WorkerView};

use crate::id::{ClientId, GroupId, IdSet, IndexVec, RunId, Slab, StimulusId, TaskId, WorkerId};
use command::Outbox;
use story::TransitionLog;
use task::{Group, Prefix, PrefixId, Task};
use transitions::{Recommendations, Target};

/// The result of the scheduler's operations.
pub type Result<T, E = SchedulerError> = std::result::Result<T, E>;

/// Whether a worker takes new tasks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WorkerStatus {
    /// Takes new tasks.
    Running,
    /// Keeps its tasks and data, takes no new tasks (memory pressure).
    Paused,
}

pub(crate) struct Worker {
    pub(crate) info: WorkerInfo,
    pub(crate) status: WorkerStatus,
    /// Tasks assigned to it.
    pub(crate) processing: IdSet<TaskId>,
    /// Sum of the costs of `processing`, microseconds.
    pub(crate) occupancy: u64,
    /// Results it holds.
    pub(crate) has_what: IdSet<TaskId>,
    /// Sum of the sizes of `has_what`.
    pub(crate) nbytes: u64,
    /// Tasks a steal request would move here.
    pub(crate) incoming_steals: IdSet<TaskId>,
    pub(crate) metrics: WorkerMetrics,
}

#[derive(Default)]
pub(crate) struct Client {
    pub(crate) wants: IdSet<TaskId>,
}

/// The scheduler's state. See the [module documentation](self) for the
/// design.
pub struct Scheduler {
    pub(crate) config: SchedulerConfig,
    pub(crate) tasks: Slab<TaskId, Task>,
    /// Keys to ids (see [`keys`]): a million keys are looked up at each
    /// submission and forgotten at each release.
    pub(crate) by_key: keys::KeyIndex,
    pub(crate) groups: Slab<GroupId, Group>,
    pub(crate) group_by_name: HashMap<Name, GroupId>,
    pub(crate) prefixes: IndexVec<PrefixId, Prefix>,
    pub(crate) prefix_by_name: HashMap<Box<str>, PrefixId>,
    pub(crate) workers: BTreeMap<WorkerId, Worker>,
    /// The largest worker id ever seen (ids are never reused).
    pub(crate) newest_worker: Option<WorkerId>,
    /// Workers taking new tasks.
    pub(crate) running: BTreeSet<WorkerId>,
    /// Running workers holding fewer tasks than their slots.
    pub(crate) with_slots: BTreeSet<WorkerId>,
    /// Threads of all connected workers (running or paused).
    pub(crate) total_threads: u64,
    pub(crate) clients: BTreeMap<ClientId, Client>,
    /// Queued tasks, most urgent first.
    pub(crate) queued: BTreeSet<(Priority, TaskId)>,
    /// Groups with queued tasks.
    pub(crate) queued_groups: BTreeSet<GroupId>,
    /// No-worker tasks, most urgent first.
    pub(crate) no_worker: BTreeSet<(Priority, TaskId)>,
    /// Submissions so far.
    pub(crate) generation: u64,
    /// The last run handed out.
    pub(crate) runs: RunId,
    pub(crate) log: TransitionLog,
    /// The stimulus being handled.
    pub(crate) stimulus: StimulusId,
    pub(crate) recommendations: Recommendations,
    /// Waiting tasks whose inputs are all in memory, dispatched in priority
    /// order once the cascade settles.
    pub(crate) ready: ready::ReadyQueue,
    /// Group sizes or thread counts changed: queued tasks may no longer be
    /// root-ish.
    pub(crate) rootish_dirty: bool,
    pub(crate) out: Outbox,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new(SchedulerConfig::default())
    }
}

impl Scheduler {
    /// An empty scheduler: no workers, no clients, no tasks.
    pub fn new(config: SchedulerConfig) -> Self {
        let log = TransitionLog::new(config.transition_log_length);
        Scheduler {
            config,
            tasks: Slab::new(),
            by_key: keys::KeyIndex::default(),
            groups: Slab::new(),
            group_by_name: HashMap::new(),
            prefixes: IndexVec::new(),
            prefix_by_name: HashMap::new(),
            workers: BTreeMap::new(),
            newest_worker: None,
            running: BTreeSet::new(),
            with_slots: BTreeSet::new(),
            total_threads: 0,
            clients: BTreeMap::new(),
            queued: BTreeSet::new(),
            queued_groups: BTreeSet::new(),
            no_worker: BTreeSet::new(),
            generation: 0,
            runs: RunId::default(),
            log,
            stimulus: StimulusId::default(),
            recommendations: Recommendations::default(),
            ready: ready::ReadyQueue::default(),
            rootish_dirty: false,
            out: Outbox::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Handles one event: changes the state, runs the cascade of
    /// transitions it starts, and sends the resulting commands to `comm`.
    ///
    /// An error is a bug (an illegal transition, with the key's story) or a
    /// driver's broken promise (a reused worker id); nothing is sent then,
    /// and the state should not be trusted further.
    pub fn handle(&mut self, stimulus: StimulusId, event: Event, comm: &mut impl Comm) -> Result<()> {
        self.stimulus = stimulus;
        let result = self.dispatch(event).and_then(|()| self.settle());
        match result {
            Ok(()) => {
                self.out.flush(comm);
                Ok(())
            }
            Err(e) => {
                self.out.discard();
                self.recommendations.clear();
                self.ready.clear();
                Err(e)
            }
        }
    }

    fn dispatch(&mut self, event: Event) -> Result<()> {
        match event {
            Event::WorkerJoined { worker, info } => self.on_worker_joined(worker, info),
            Event::WorkerLost { worker, graceful } => self.on_worker_lost(worker, graceful),
            Event::WorkerPaused { worker, paused } => {
                self.on_worker_paused(worker, paused);
                Ok(())
            }
            Event::WorkerHeartbeat { worker, metrics } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.metrics = metrics;
                }
                Ok(())
            }
            Event::ClientSubmitted { client, submission } => {
                self.on_client_submitted(client, submission);
                Ok(())
            }
            Event::ClientReleased { client, keys } => {
                self.on_client_released(client, &keys);
                Ok(())
            }
            Event::ClientDisconnected { client } => {
                self.on_client_disconnected(client);
                Ok(())
            }
            Event::TaskStarted { worker, task, run } => {
                if self.is_current_run(task, worker, run) {
                    self.tasks[task].started = true;
                }
                Ok(())
            }
            Event::TaskFinished {
                worker,
                task,
                run,
                nbytes,
                duration_us,
            } => {
                if self.is_current_run(task, worker, run) {
                    self.processing_memory(task, worker, nbytes, duration_us)?;
                } else {
                    // A cancelled run (its worker dropped the result when
                    // the cancel arrived), or a task stolen, forgotten, or
                    // given to another worker meanwhile.
                    tracing::debug!("{worker} reported {task} ({run}), which is not its current run: ignored");
                }
                Ok(())
            }
            Event::TaskErred {
                worker,
                task,
                run,
                message,
            } => {
                if self.is_current_run(task, worker, run) {
                    self.on_task_erred(task, message)?;
                }
                Ok(())
            }
            Event::ReplicasAdded { worker, tasks } => {
                self.on_replicas_added(worker, &tasks);
                Ok(())
            }
            Event::DataMissing { worker, task, holder } => self.on_data_missing(worker, task, holder),
            Event::StealResponse {
                worker,
                task,
                request,
                outcome,
            } => self.on_steal_response(worker, task, request, outcome),
            Event::Balance => {
                self.balance();
                Ok(())
            }
        }
    }

    /// Runs the cascade to its end: recommendations, then ready tasks in
    /// priority order, then queue corrections and releases, until nothing
    /// moves.
    fn settle(&mut self) -> Result<()> {
        loop {
            self.run_recommendations()?;
            if let Some((_, id)) = self.ready.pop_first() {
                let ready = self.tasks.get(id).is_some_and(|t| {
                    (t.state == TaskState::Waiting && t.waiting_for == 0) || t.state == TaskState::NoWorker
                });
                if ready {
                    self.transition(id, Target::Processing)?;
                }
                continue;
            }
            if self.rootish_dirty {
                self.rootish_dirty = false;
                self.requeue_non_rootish()?;
                continue;
            }
            if let (Some(&(_, id)), false) = (self.queued.first(), self.with_slots.is_empty()) {
                self.transition(id, Target::Processing)?;
                continue;
            }
            return Ok(());
        }
    }

    // ----- workers -------------------------------------------------------

    fn on_worker_joined(&mut self, worker: WorkerId, info: WorkerInfo) -> Result<()> {
        if self.newest_worker.is_some_and(|newest| worker <= newest) {
            return Err(SchedulerError::InvalidEvent {
                message: format!(
                    "{worker} joined, but worker ids must grow (the newest is {})",
                    self.newest_worker.map(|w| w.to_string()).unwrap_or_default()
                ),
            });
        }
        if info.threads == 0 {
            return Err(SchedulerError::InvalidEvent {
                message: format!("{worker} ({}) joined with no threads", info.name),
            });
        }
        self.newest_worker = Some(worker);
        self.total_threads += u64::from(info.threads);
        self.workers.insert(
            worker,
            Worker {
                info,
                status: WorkerStatus::Running,
                processing: IdSet::new(),
                occupancy: 0,
                has_what: IdSet::new(),
                nbytes: 0,
                incoming_steals: IdSet::new(),
                metrics: WorkerMetrics::default(),
            },
        );
        self.running.insert(worker);
        self.update_worker_sets(worker);
        self.rootish_dirty = true;
        self.wake_no_worker_tasks();
        Ok(())
    }

    fn on_worker_paused(&mut self, worker: WorkerId, paused: bool) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        match (w.status, paused) {
            (WorkerStatus::Running, true) => {
                w.status = WorkerStatus::Paused;
                self.running.remove(&worker);
                self.update_worker_sets(worker);
            }
            (WorkerStatus::Paused, false) => {
                w.status = WorkerStatus::Running;
                self.running.insert(worker);
                self.update_worker_sets(worker);
                self.wake_no_worker_tasks();
            }
            _ => {}
        }
    }

    /// A worker is running again (or new): every no-worker task is ready.
    fn wake_no_worker_tasks(&mut self) {
        if self.running.is_empty() {
            return;
        }
        // Dispatched with the other ready tasks, in priority order, once the
        // cascade settles.
        self.ready.extend(self.no_worker.iter().copied());
    }

    fn on_worker_lost(&mut self, worker: WorkerId, graceful: bool) -> Result<()> {
        // Out of the map first: nothing below can assign to it, cancel on
        // it or count it as a holder.
        let Some(w) = self.workers.remove(&worker) else {
            return Ok(());
        };
        let threads = u64::from(w.info.threads);
        let mut held = w.has_what.to_vec();
        let mut processing = w.processing.to_vec();
        let incoming = w.incoming_steals.to_vec();
        self.running.remove(&worker);
        self.with_slots.remove(&worker);
        self.total_threads -= threads;
        self.rootish_dirty = true;

        // Results first: a task going back to waiting below must see which
        // of its inputs are really still somewhere.
        held.sort_unstable_by_key(|&t| (self.tasks[t].priority, t));
        for t in held {
            self.remove_replica(t, worker);
            if self.tasks[t].who_has.is_empty() {
                self.release(t, "lost")?;
            }
        }
        processing.sort_unstable_by_key(|&t| (self.tasks[t].priority, t));
        for t in processing {
            let task = &mut self.tasks[t];
            if !graceful && task.started {
                task.suspicious += 1;
            }
            if task.suspicious > self.config.allowed_failures {
                let failure = Arc::new(TaskFailure {
                    key: task.key.clone(),
                    message: format!(
                        "KilledWorker: {} workers died while running this task (the last was {worker}, {}); \
                         allowed-failures is {}. The task probably crashes its worker (out of memory, an \
                         abort, a segfault in native code)",
                        task.suspicious, w.info.name, self.config.allowed_failures
                    ),
                    kind: FailureKind::KilledWorker,
                });
                self.fail(t, failure, "killed-worker")?;
            } else {
                self.processing_released(t, false, "worker-lost")?;
            }
        }
        // Steals towards the dead worker: the victim's answer is still
        // awaited; if it lets the task go, the task is placed anew.
        for t in incoming {
            if let Some(steal) = self.tasks.get_mut(t).and_then(|t| t.stealing.as_mut()) {
                steal.thief = None;
            }
        }
        Ok(())
    }

    // ----- clients -------------------------------------------------------

    fn on_client_submitted(&mut self, client: ClientId, submission: Submission) {
        // Each key is hashed once, for the duplicate check, the lookup and
        // the insertion.
        let hashes: Vec<u64> = submission.tasks.iter().map(|t| self.by_key.hash(&t.key)).collect();
        let order = match submission.topological_order(&hashes) {
            Ok(order) => order,
            Err(e) => return self.reject(client, e.to_string()),
        };
        if let Some(t) = submission
            .tasks
            .iter()
            .zip(&hashes)
            .find(|(t, h)| t.spec.is_none() && self.by_key.get_hashed(&self.tasks, &t.key, **h).is_none())
            .map(|(t, _)| t)
        {
            return self.reject(
                client,
                format!(
                    "key {} has no task and the scheduler does not hold it (was it released?)",
                    t.key
                ),
            );
        }
        self.generation += 1;
        let generation = self.generation;
        let mut ids: Vec<Option<TaskId>> = vec![None; submission.tasks.len()];
        let mut created = Vec::new();
        // With no task known before, no key of the submission can be known
        // (its own keys are distinct): the lookups, a cache miss each in a
        // table of a million, are skipped.
        let known_before = self.by_key.len() > 0;
        // Room for every task at once: a million tasks would otherwise move
        // the slab and the key index a dozen times each as they grow.
        self.tasks.reserve(submission.tasks.len());
        self.by_key.reserve(&self.tasks, submission.tasks.len());
        let mut last_group: Option<GroupId> = None;
        let mut tasks = submission.tasks;
        let mut dependencies: Vec<TaskId> = Vec::new();
        for i in order {
            let new = &mut tasks[i as usize];
            let hash = hashes[i as usize];
            if known_before && let Some(existing) = self.by_key.get_hashed(&self.tasks, &new.key, hash) {
                ids[i as usize] = Some(existing);
                continue;
            }
            dependencies.clear();
            dependencies.extend(
                new.dependencies
                    .iter()
                    .map(|&d| ids[d as usize].expect("dependencies come first")),
            );
            dependencies.sort_unstable();
            dependencies.dedup();
            // Tasks of one layer (or of one prefix) come together: the group
            // of the previous task is checked first, by name, without
            // building the group's name or hashing it.
            let group = match last_group {
                Some(g) if self.groups[g].name.as_str() == task::group_name_str(&new.key) => {
                    self.groups[g].size += 1;
                    g
                }
                _ => {
                    let g = self.group_for(&new.key);
                    last_group = Some(g);
                    g
                }
            };
            for &d in &dependencies {
                let dependency_group = self.tasks[d].group;
                if dependency_group != group {
                    self.groups[group].dependencies.insert(dependency_group);
                }
            }
            let id = self.tasks.insert(Task {
                key: new.key.clone(),
                spec: new.spec.take().expect("checked above: unknown keys have a spec"),
                priority: Priority {
                    user: submission.priority,
                    generation,
                    order: new.order,
                },
                group,
                state: TaskState::Released,
                dependencies: dependencies.as_slice().into(),
                dependents: IdSet::new(),
                waiting_for: 0,
                waiters: IdSet::new(),
                who_wants: IdSet::new(),
                who_has: IdSet::new(),
                processing_on: None,
                run: RunId::default(),
                cost: 0,
                started: false,
                stealing: None,
                nbytes: None,
                suspicious: 0,
                retries_left: new.retries,
                error: None,
            });
            self.by_key.insert_hashed(&self.tasks, id, hash);
            for &d in &dependencies {
                self.tasks[d].dependents.insert(id);
            }
            self.record(id, TaskState::Forgotten, TaskState::Released, None, "submitted");
            ids[i as usize] = Some(id);
            created.push(id);
        }
        drop(tasks);
        self.rootish_dirty = true;
        let wants = &mut self.clients.entry(client).or_default().wants;
        let outputs: Vec<TaskId> = submission
            .outputs
            .iter()
            .map(|&o| ids[o as usize].expect("every task got an id"))
            .collect();
        for &o in &outputs {
            wants.insert(o);
        }
        for o in outputs {
            let task = &mut self.tasks[o];
            task.who_wants.insert(client);
            match task.state {
                TaskState::Memory => {
                    let command = Command::ReportInMemory {
                        client,
                        key: task.key.clone(),
                        nbytes: task.nbytes.unwrap_or(0),
                        stimulus: self.stimulus,
                    };
                    self.out.push(command);
                }
                TaskState::Erred => {
                    let command = Command::ReportError {
                        client,
                        key: task.key.clone(),
                        failure: task.error.clone().expect("an erred task has its error"),
                        stimulus: self.stimulus,
                    };
                    self.out.push(command);
                }
                TaskState::Released => self.recommend(o, Target::Settle),
                _ => {}
            }
        }
        // Tasks sent along that no output needs.
        for id in created {
            if self.tasks[id].is_orphan() {
                self.recommend(id, Target::Settle);
            }
        }
    }

    fn reject(&mut self, client: ClientId, message: String) {
        tracing::warn!("{client}: submission rejected: {message}");
        self.out.push(Command::Rejected {
            client,
            message,
            stimulus: self.stimulus,
        });
    }

    fn group_for(&mut self, key: &Key) -> GroupId {
        let name = task::group_name(key);
        if let Some(&g) = self.group_by_name.get(&name) {
            self.groups[g].size += 1;
            return g;
        }
        let prefix_name = key.name.prefix();
        let prefix = match self.prefix_by_name.get(prefix_name) {
            Some(&p) => p,
            None => {
                let p = self.prefixes.push(Prefix {
                    name: prefix_name.into(),
                    duration: None,
                });
                self.prefix_by_name.insert(prefix_name.into(), p);
                p
            }
        };
        let g = self.groups.insert(Group {
            name: name.clone(),
            prefix,
            size: 1,
            dependencies: IdSet::new(),
            queued: 0,
        });
        self.group_by_name.insert(name, g);
        g
    }

    fn on_client_released(&mut self, client: ClientId, keys: &[Key]) {
        for key in keys {
            let Some(id) = self.by_key.get(&self.tasks, key) else {
                continue;
            };
            let Some(c) = self.clients.get_mut(&client) else {
                return;
            };
            if c.wants.remove(id) {
                self.tasks[id].who_wants.remove(client);
                self.release_if_unneeded(id);
            }
        }
    }

    fn on_client_disconnected(&mut self, client: ClientId) {
        let Some(c) = self.clients.remove(&client) else {
            return;
        };
        for id in c.wants.iter() {
            self.tasks[id].who_wants.remove(client);
            self.release_if_unneeded(id);
        }
    }

    // ----- tasks ---------------------------------------------------------

    /// Whether `run` is the run of `task` assigned to `worker` right now.
    fn is_current_run(&self, task: TaskId, worker: WorkerId, run: RunId) -> bool {
        self.tasks
            .get(task)
            .is_some_and(|t| t.state == TaskState::Processing && t.processing_on == Some(worker) && t.run == run)
    }

    fn on_task_erred(&mut self, id: TaskId, message: String) -> Result<()> {
        let t = &mut self.tasks[id];
        if t.retries_left > 0 {
            t.retries_left -= 1;
            return self.processing_released(id, false, "retry");
        }
        let failure = Arc::new(TaskFailure {
            key: t.key.clone(),
            message,
            kind: FailureKind::Raised,
        });
        self.fail(id, failure, "")
    }

    fn on_replicas_added(&mut self, worker: WorkerId, tasks: &[TaskId]) {
        if !self.workers.contains_key(&worker) {
            return;
        }
        for &id in tasks {
            match self.tasks.get(id) {
                Some(t) if t.state == TaskState::Memory => self.add_replica(id, worker),
                // The result was lost meanwhile and is being recomputed on
                // this very worker: the copy it fetched is as good as the
                // result it will report, and a free could cross that report.
                Some(t) if t.processing_on == Some(worker) => {}
                _ => self.out.free(worker, id, self.stimulus),
            }
        }
    }

    fn on_data_missing(&mut self, worker: WorkerId, id: TaskId, holder: WorkerId) -> Result<()> {
        if !self.workers.contains_key(&worker) {
            return Ok(());
        }
        let Some(t) = self.tasks.get(id) else {
            return Ok(());
        };
        if t.state != TaskState::Memory {
            return Ok(());
        }
        if t.who_has.contains(holder) {
            self.remove_replica(id, holder);
            if self.workers.contains_key(&holder) {
                // It may hold a copy the asker could not reach: drop it, so
                // what the scheduler believes is what is.
                self.out.free(holder, id, self.stimulus);
            }
            self.record(
                id,
                TaskState::Memory,
                TaskState::Memory,
                Some(holder),
                "replica-missing",
            );
        }
        if self.tasks[id].who_has.is_empty() {
            return self.release(id, "lost");
        }
        let who_has = self.tasks[id].who_has.sorted();
        self.out.push(Command::UpdateWhoHas {
            worker,
            task: id,
            who_has,
            stimulus: self.stimulus,
        });
        Ok(())
    }

    fn on_steal_response(
        &mut self,
        victim: WorkerId,
        id: TaskId,
        request: StimulusId,
        outcome: StealOutcome,
    ) -> Result<()> {
        let Some(t) = self.tasks.get_mut(id) else {
            return Ok(());
        };
        let Some(steal) = t.stealing else {
            return Ok(());
        };
        if t.state != TaskState::Processing || t.processing_on != Some(victim) || steal.request != request {
            return Ok(());
        }
        t.stealing = None;
        if let Some(thief) = steal.thief
            && let Some(w) = self.workers.get_mut(&thief)
        {
            w.incoming_steals.remove(id);
        }
        match outcome {
            StealOutcome::Released => {
                let thief = steal.thief.filter(|&w| self.is_running(w));
                match thief {
                    Some(thief) => self.steal_confirmed(id, thief),
                    None => self.processing_released(id, false, "stolen-no-thief")?,
                }
            }
            StealOutcome::Running => self.tasks[id].started = true,
            StealOutcome::NotHere => {}
        }
        Ok(())
    }

    // ----- bookkeeping helpers ------------------------------------------

    pub(crate) fn add_replica(&mut self, id: TaskId, worker: WorkerId) {
        let task = &mut self.tasks[id];
        if task.who_has.insert(worker) {
            let nbytes = task.nbytes.unwrap_or(0);
            let w = self.workers.get_mut(&worker).expect("replicas live on known workers");
            w.has_what.insert(id);
            w.nbytes += nbytes;
        }
    }

    pub(crate) fn remove_replica(&mut self, id: TaskId, worker: WorkerId) {
        let task = &mut self.tasks[id];
        if task.who_has.remove(worker) {
            let nbytes = task.nbytes.unwrap_or(0);
            if let Some(w) = self.workers.get_mut(&worker) {
                w.has_what.remove(id);
                w.nbytes -= nbytes;
            }
        }
    }

    /// Sets a task's state and records the transition.
    pub(crate) fn set_state(&mut self, id: TaskId, to: TaskState, worker: Option<WorkerId>, note: &'static str) {
        let from = std::mem::replace(&mut self.tasks[id].state, to);
        self.record(id, from, to, worker, note);
    }

    pub(crate) fn record(
        &mut self,
        id: TaskId,
        from: TaskState,
        to: TaskState,
        worker: Option<WorkerId>,
        note: &'static str,
    ) {
        if self.log.capacity() == 0 {
            return;
        }
        let entry = story::Entry {
            task: id,
            from,
            to,
            worker,
            stimulus: self.stimulus,
            note,
        };
        let forgotten_key = (to == TaskState::Forgotten).then(|| &self.tasks[id].key);
        self.log.push(entry, forgotten_key);
    }

    /// The recent transitions of `key`, oldest first, each with the stimulus
    /// that caused it (Dask's `story`).
    pub fn story(&self, key: &Key) -> Vec<TransitionRecord> {
        self.log.story(key, self.task_id(key))
    }

    /// Every remembered transition, oldest first.
    pub fn transition_log(&self) -> impl Iterator<Item = TransitionRecord> + '_ {
        self.log.iter(|id| self.tasks.get(id).map(|t| &t.key))
    }
}
