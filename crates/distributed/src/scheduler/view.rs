//! Read-only snapshots of the state, for tests, the dashboard and logs.

use std::sync::Arc;

use blockwise_core::Key;

use crate::id::{ClientId, RunId, TaskId, WorkerId};
use crate::scheduler::event::{WorkerInfo, WorkerMetrics};
use crate::scheduler::task::{Priority, TaskFailure, TaskState};
use crate::scheduler::{Scheduler, WorkerStatus};

/// What the scheduler knows about one task, copied out.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskView {
    /// The task's id (changes if the key is forgotten and submitted again).
    pub id: TaskId,
    /// Its key.
    pub key: Key,
    /// Its state.
    pub state: TaskState,
    /// Its priority.
    pub priority: Priority,
    /// The keys it reads.
    pub dependencies: Vec<Key>,
    /// While processing: where.
    pub processing_on: Option<WorkerId>,
    /// While processing: the current run.
    pub run: Option<RunId>,
    /// While processing: whether its worker said it started.
    pub started: bool,
    /// While a steal is on the wire: the thief (if still alive).
    pub stealing_to: Option<WorkerId>,
    /// The workers holding the result, sorted.
    pub who_has: Vec<WorkerId>,
    /// The result's size, once known.
    pub nbytes: Option<u64>,
    /// The clients wanting it, sorted.
    pub who_wants: Vec<ClientId>,
    /// Workers that died while running it.
    pub suspicious: u32,
    /// Failures it may still retry after.
    pub retries_left: u32,
    /// While erred: why.
    pub error: Option<Arc<TaskFailure>>,
}

/// What the scheduler knows about one worker, copied out.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerView {
    /// The worker.
    pub id: WorkerId,
    /// What it said when it joined.
    pub info: WorkerInfo,
    /// Running or paused.
    pub status: WorkerStatus,
    /// The tasks assigned to it, sorted.
    pub processing: Vec<TaskId>,
    /// The results it holds, sorted.
    pub has_what: Vec<TaskId>,
    /// Expected time to finish its tasks, microseconds (all threads busy).
    pub occupancy_us: u64,
    /// Bytes of results it holds.
    pub nbytes: u64,
    /// Its last heartbeat.
    pub metrics: WorkerMetrics,
}

impl Scheduler {
    /// The id of the task with `key`, if the scheduler knows it.
    pub fn task_id(&self, key: &Key) -> Option<TaskId> {
        self.by_key.get(&self.tasks, key)
    }

    /// The key of task `id`, if it is live.
    pub fn key_of(&self, id: TaskId) -> Option<&Key> {
        self.tasks.get(id).map(|t| &t.key)
    }

    /// The state of the task with `key`; `None` if unknown (never submitted
    /// or forgotten).
    pub fn state_of(&self, key: &Key) -> Option<TaskState> {
        self.task_id(key).map(|id| self.tasks[id].state)
    }

    /// A snapshot of the task with `key`.
    pub fn task(&self, key: &Key) -> Option<TaskView> {
        self.task_id(key).and_then(|id| self.task_by_id(id))
    }

    /// A snapshot of task `id`, if it is live.
    pub fn task_by_id(&self, id: TaskId) -> Option<TaskView> {
        let t = self.tasks.get(id)?;
        Some(TaskView {
            id,
            key: t.key.clone(),
            state: t.state,
            priority: t.priority,
            dependencies: t.dependencies.iter().map(|&d| self.tasks[d].key.clone()).collect(),
            processing_on: t.processing_on,
            run: t.processing_on.map(|_| t.run),
            started: t.started,
            stealing_to: t.stealing.and_then(|s| s.thief),
            who_has: t.who_has.sorted(),
            nbytes: t.nbytes,
            who_wants: t.who_wants.sorted(),
            suspicious: t.suspicious,
            retries_left: t.retries_left,
            error: t.error.clone(),
        })
    }

    /// The key of task `id` if `run` is its current run on `worker` (what
    /// a worker's report about that run is about; `None` for a stale
    /// report). Cheap: for every report a server relays.
    pub fn current_run_key(&self, id: TaskId, worker: WorkerId, run: RunId) -> Option<&Key> {
        self.tasks
            .get(id)
            .filter(|t| t.state == TaskState::Processing && t.processing_on == Some(worker) && t.run == run)
            .map(|t| &t.key)
    }

    /// A snapshot of worker `id`, if connected.
    pub fn worker(&self, id: WorkerId) -> Option<WorkerView> {
        let w = self.workers.get(&id)?;
        Some(WorkerView {
            id,
            info: w.info.clone(),
            status: w.status,
            processing: w.processing.sorted(),
            has_what: w.has_what.sorted(),
            occupancy_us: w.occupancy,
            nbytes: w.nbytes,
            metrics: w.metrics,
        })
    }

    /// The connected workers, oldest first.
    pub fn workers(&self) -> Vec<WorkerId> {
        self.workers.keys().copied().collect()
    }

    /// The queued tasks, most urgent first.
    pub fn queued(&self) -> Vec<TaskId> {
        self.queued.iter().map(|&(_, id)| id).collect()
    }

    /// The tasks waiting for a worker to exist, most urgent first.
    pub fn no_worker(&self) -> Vec<TaskId> {
        self.no_worker.iter().map(|&(_, id)| id).collect()
    }

    /// Number of live tasks.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Number of live tasks in each state, in the order of
    /// [`TaskState`]'s variants (forgotten, never stored, omitted).
    pub fn state_counts(&self) -> Vec<(TaskState, usize)> {
        use TaskState as S;
        let states = [
            S::Released,
            S::Waiting,
            S::Queued,
            S::NoWorker,
            S::Processing,
            S::Memory,
            S::Erred,
        ];
        let mut counts = [0usize; 7];
        for (_, t) in self.tasks.iter() {
            if let Some(i) = states.iter().position(|s| *s == t.state) {
                counts[i] += 1;
            }
        }
        states.into_iter().zip(counts).collect()
    }

    /// The keys a client wants, sorted.
    pub fn wanted_by(&self, client: ClientId) -> Vec<Key> {
        let mut keys: Vec<Key> = self
            .clients
            .get(&client)
            .map(|c| c.wants.iter().map(|t| self.tasks[t].key.clone()).collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// What was learned about each key prefix: its name and the moving
    /// average of its tasks' compute time in microseconds (`None` until one
    /// finished).
    pub fn prefix_durations(&self) -> Vec<(&str, Option<u64>)> {
        self.prefixes.iter().map(|(_, p)| (&*p.name, p.duration)).collect()
    }

    /// Threads of all connected workers.
    pub fn total_threads(&self) -> u64 {
        self.total_threads
    }
}
