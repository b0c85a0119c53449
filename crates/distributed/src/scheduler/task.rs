//! What the scheduler knows about one task, one task group, one key prefix.

use std::fmt;
use std::sync::Arc;

use blockwise_core::{Key, Name};
use serde::{Deserialize, Serialize};

use crate::id::{ClientId, GroupId, IdSet, RunId, TaskId, WorkerId};
use crate::scheduler::event::TaskSpec;

/// The state of a task on the scheduler (Dask's `TaskState.state`). See the
/// diagram in [`crate::scheduler`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum TaskState {
    /// Known, not running, no result anywhere. Kept only while a dependent
    /// may need it recomputed; forgotten once nothing refers to it.
    Released,
    /// Needed, but some dependency is not in memory yet.
    Waiting,
    /// Ready, root-ish, and every worker is saturated: withheld on the
    /// scheduler in priority order until a slot opens.
    Queued,
    /// Ready, but there is no running worker to run it.
    NoWorker,
    /// Assigned to a worker (fetching inputs, waiting for a thread, or
    /// running).
    Processing,
    /// The result is held by at least one worker.
    Memory,
    /// The task (or a dependency) failed; the error is recorded.
    Erred,
    /// Removed from the scheduler. Never stored: it appears only in stories.
    Forgotten,
}

impl TaskState {
    /// Dask's name of the state (`no-worker`, `processing`, …).
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Released => "released",
            TaskState::Waiting => "waiting",
            TaskState::Queued => "queued",
            TaskState::NoWorker => "no-worker",
            TaskState::Processing => "processing",
            TaskState::Memory => "memory",
            TaskState::Erred => "erred",
            TaskState::Forgotten => "forgotten",
        }
    }

    /// The states in which a task still needs the results of its
    /// dependencies: it is a *waiter* of each of them.
    pub fn needs_dependencies(self) -> bool {
        matches!(
            self,
            TaskState::Waiting | TaskState::Queued | TaskState::NoWorker | TaskState::Processing
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The order in which ready tasks run: smaller is more urgent.
///
/// Compared as Dask's `(-user_priority, generation, order)`: a higher user
/// priority first; then the earlier submission (computations are served
/// first come, first served); then the graph's static order (from
/// [`blockwise_core::order`]), which keeps memory low within a computation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub struct Priority {
    /// The user's priority: higher runs first.
    pub user: i32,
    /// The submission counter of the scheduler when the task was submitted.
    pub generation: u64,
    /// The task's rank in its graph's order (0 first).
    pub order: u32,
}

impl Ord for Priority {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .user
            .cmp(&self.user)
            .then(self.generation.cmp(&other.generation))
            .then(self.order.cmp(&other.order))
    }
}

impl PartialOrd for Priority {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a task failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum FailureKind {
    /// The task's op returned an error or panicked on a worker.
    Raised,
    /// Workers kept dying while running the task (Dask's `KilledWorker`).
    KilledWorker,
}

/// A task's error, shared by every dependent that fails because of it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TaskFailure {
    /// The task that failed (for a dependent, the one to blame).
    pub key: Key,
    /// What happened, for a person.
    pub message: String,
    /// Whether the op failed or its workers died.
    pub kind: FailureKind,
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} failed: {}", self.key, self.message)
    }
}

/// A steal request on the wire: the task stays with its victim until the
/// victim answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Steal {
    /// The worker that will run the task if the victim lets it go; `None`
    /// if the thief died meanwhile (the task is then placed anew).
    pub(crate) thief: Option<WorkerId>,
    /// The stimulus of the request; the answer must quote it.
    pub(crate) request: crate::id::StimulusId,
}

/// The scheduler's record of one task (Dask's `TaskState`).
pub(crate) struct Task {
    pub(crate) key: Key,
    pub(crate) spec: TaskSpec,
    pub(crate) priority: Priority,
    pub(crate) group: GroupId,
    pub(crate) state: TaskState,
    /// The distinct tasks whose results this one reads. Fixed at submission.
    pub(crate) dependencies: Box<[TaskId]>,
    /// The live tasks that read this one.
    pub(crate) dependents: IdSet<TaskId>,
    /// While waiting: how many dependencies are not in memory (0
    /// otherwise). A count, not a set: a task reading a million inputs
    /// would keep a million-entry set, and nothing asks *which* inputs are
    /// missing that the inputs' states do not say.
    pub(crate) waiting_for: u32,
    /// The dependents that still need this result (those in a state where
    /// [`TaskState::needs_dependencies`]).
    pub(crate) waiters: IdSet<TaskId>,
    /// The clients holding this key.
    pub(crate) who_wants: IdSet<ClientId>,
    /// The workers holding the result.
    pub(crate) who_has: IdSet<WorkerId>,
    /// While processing: the worker it is assigned to.
    pub(crate) processing_on: Option<WorkerId>,
    /// While processing: the current run (assignment).
    pub(crate) run: RunId,
    /// While processing: its share of that worker's occupancy, in
    /// microseconds (expected compute plus transfer time).
    pub(crate) cost: u64,
    /// While processing: the worker said it started running it.
    pub(crate) started: bool,
    /// While processing: a steal request is on the wire.
    pub(crate) stealing: Option<Steal>,
    /// Size of the result, once known (kept after release: it estimates the
    /// transfer cost of a recomputation).
    pub(crate) nbytes: Option<u64>,
    /// How many workers died while running this task.
    pub(crate) suspicious: u32,
    /// Failures the task may still retry after.
    pub(crate) retries_left: u32,
    /// While erred: why.
    pub(crate) error: Option<Arc<TaskFailure>>,
}

impl Task {
    /// Whether someone needs this task's result: a client holds it, or a
    /// dependent is waiting for it.
    pub(crate) fn is_needed(&self) -> bool {
        !self.who_wants.is_empty() || !self.waiters.is_empty()
    }

    /// Whether nothing refers to this task any more: it can be forgotten
    /// once released.
    pub(crate) fn is_orphan(&self) -> bool {
        self.who_wants.is_empty() && self.dependents.is_empty()
    }
}

/// The tasks of one layer (Dask's `TaskGroup`): grouped by key name, or by
/// the name's prefix for keys without an index (every `delayed(inc)` call is
/// one `inc` group).
pub(crate) struct Group {
    pub(crate) name: Name,
    pub(crate) prefix: PrefixId,
    /// Live tasks in the group.
    pub(crate) size: u32,
    /// Groups some task of this group reads from.
    pub(crate) dependencies: IdSet<GroupId>,
    /// Tasks of this group in state queued.
    pub(crate) queued: u32,
}

crate::id::define_id!(
    /// A key prefix (`sum` for `sum-9ac1e0f3`), which durations are learned by.
    pub(crate) struct PrefixId(u32),
    "prefix-"
);

/// What is known about every task whose key starts with one prefix
/// (Dask's `TaskPrefix`): how long they take.
pub(crate) struct Prefix {
    pub(crate) name: Box<str>,
    /// Moving average of compute time, microseconds, once one finished.
    pub(crate) duration: Option<u64>,
}

/// The group name of a key: the key's name for a key with an index (one
/// layer of a collection), the name's prefix for a key without one.
pub(crate) fn group_name(key: &Key) -> Name {
    if key.index.is_empty() {
        Name::new(key.name.prefix())
    } else {
        key.name.clone()
    }
}

/// [`group_name`] as a string, without building a [`Name`].
pub(crate) fn group_name_str(key: &Key) -> &str {
    if key.index.is_empty() {
        key.name.prefix()
    } else {
        key.name.as_str()
    }
}
