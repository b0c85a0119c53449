//! What comes out of the scheduler: commands for workers and clients, and
//! the [`Comm`] they are handed to.

use std::sync::Arc;

use blockwise_core::Key;

use crate::id::{ClientId, IdMap, RunId, StimulusId, TaskId, WorkerId};
use crate::scheduler::event::TaskSpec;
use crate::scheduler::task::{Priority, TaskFailure};

/// Where the scheduler's commands go. The server's implementation writes
/// them to connections; tests record them. The state machine never does
/// I/O itself (hyperqueue's `tako` `Comm`).
pub trait Comm {
    /// Delivers one command (or queues it for delivery).
    fn send(&mut self, command: Command);
}

impl Comm for Vec<Command> {
    fn send(&mut self, command: Command) {
        self.push(command);
    }
}

/// Where one input of a task lives.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputLocation {
    /// The input's task (workers name results by task id).
    pub task: TaskId,
    /// Its key.
    pub key: Key,
    /// Its size.
    pub nbytes: u64,
    /// The workers holding it, sorted.
    pub who_has: Vec<WorkerId>,
}

/// Everything a worker needs to run a task.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ComputeTask {
    /// The task.
    pub task: TaskId,
    /// This assignment: quoted by every report about it.
    pub run: RunId,
    /// Its key (for errors and logs).
    pub key: Key,
    /// How to run it.
    pub spec: TaskSpec,
    /// Its priority: a worker runs its ready tasks most urgent first.
    pub priority: Priority,
    /// Its inputs and where to fetch them, in dependency order.
    pub inputs: Vec<InputLocation>,
    /// How many workers died while running it before: a worker runs a
    /// suspicious task on its own, never in a batch with others (so that
    /// when it kills this worker too, the blame falls on it alone).
    pub suspicious: u32,
}

/// A message from the scheduler. Every command carries the id of the
/// stimulus that caused it. Commands to one worker (or one client) must be
/// delivered in the order they are sent; there is no order between
/// different recipients.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Run a task.
    Compute {
        /// The worker.
        worker: WorkerId,
        /// The task and its inputs (boxed: the largest command by far).
        compute: Box<ComputeTask>,
        /// Cause.
        stimulus: StimulusId,
    },
    /// Drop these results: nobody needs them any more.
    Free {
        /// The worker.
        worker: WorkerId,
        /// Results it holds.
        tasks: Vec<TaskId>,
        /// Cause.
        stimulus: StimulusId,
    },
    /// Forget these assigned tasks: do not start them, and drop the result
    /// if one is already computed (its report, if on the way, is ignored:
    /// the scheduler never frees a cancelled run's result itself).
    Cancel {
        /// The worker.
        worker: WorkerId,
        /// Tasks assigned to it.
        tasks: Vec<TaskId>,
        /// Cause.
        stimulus: StimulusId,
    },
    /// Give up this task if it has not started; answer with
    /// [`crate::scheduler::Event::StealResponse`] quoting `stimulus`.
    StealRequest {
        /// The victim.
        worker: WorkerId,
        /// The task.
        task: TaskId,
        /// Cause, and the id the answer must quote.
        stimulus: StimulusId,
    },
    /// The inputs of a task this worker was given have moved: fetch `task`
    /// from these workers instead (sent after the worker reported a holder
    /// missing).
    UpdateWhoHas {
        /// The worker.
        worker: WorkerId,
        /// The input.
        task: TaskId,
        /// The workers holding it now, sorted.
        who_has: Vec<WorkerId>,
        /// Cause.
        stimulus: StimulusId,
    },
    /// A key the client wants is in memory.
    ReportInMemory {
        /// The client.
        client: ClientId,
        /// The key.
        key: Key,
        /// Its size.
        nbytes: u64,
        /// Cause.
        stimulus: StimulusId,
    },
    /// A key the client wants failed.
    ReportError {
        /// The client.
        client: ClientId,
        /// The key.
        key: Key,
        /// Why (the failure names the task to blame).
        failure: Arc<TaskFailure>,
        /// Cause.
        stimulus: StimulusId,
    },
    /// A key the client was told is in memory lost its result; it is being
    /// recomputed.
    ReportLost {
        /// The client.
        client: ClientId,
        /// The key.
        key: Key,
        /// Cause.
        stimulus: StimulusId,
    },
    /// A submission was malformed and ignored as a whole.
    Rejected {
        /// The client.
        client: ClientId,
        /// Why.
        message: String,
        /// Cause.
        stimulus: StimulusId,
    },
}

impl Command {
    /// The stimulus that caused the command.
    pub fn stimulus(&self) -> StimulusId {
        match self {
            Command::Compute { stimulus, .. }
            | Command::Free { stimulus, .. }
            | Command::Cancel { stimulus, .. }
            | Command::StealRequest { stimulus, .. }
            | Command::UpdateWhoHas { stimulus, .. }
            | Command::ReportInMemory { stimulus, .. }
            | Command::ReportError { stimulus, .. }
            | Command::ReportLost { stimulus, .. }
            | Command::Rejected { stimulus, .. } => *stimulus,
        }
    }

    /// The worker the command is for, if it is for a worker.
    pub fn worker(&self) -> Option<WorkerId> {
        match self {
            Command::Compute { worker, .. }
            | Command::Free { worker, .. }
            | Command::Cancel { worker, .. }
            | Command::StealRequest { worker, .. }
            | Command::UpdateWhoHas { worker, .. } => Some(*worker),
            _ => None,
        }
    }

    /// The client the command is for, if it is for a client.
    pub fn client(&self) -> Option<ClientId> {
        match self {
            Command::ReportInMemory { client, .. }
            | Command::ReportError { client, .. }
            | Command::ReportLost { client, .. }
            | Command::Rejected { client, .. } => Some(*client),
            _ => None,
        }
    }
}

/// The commands of the event being handled, delivered together at its end.
///
/// `Free` and `Cancel` of one worker are merged into one command when
/// nothing else for that worker came between them: the per-worker order is
/// kept exactly, and releasing a million keys is a handful of messages.
#[derive(Default)]
pub(crate) struct Outbox {
    commands: Vec<Command>,
    /// Position of the last command for each worker.
    last: IdMap<WorkerId, usize>,
}

impl Outbox {
    pub(crate) fn push(&mut self, command: Command) {
        if let Some(w) = command.worker() {
            self.last.insert(w, self.commands.len());
        }
        self.commands.push(command);
    }

    pub(crate) fn free(&mut self, worker: WorkerId, task: TaskId, stimulus: StimulusId) {
        if let Some(&i) = self.last.get(&worker)
            && let Command::Free { tasks, .. } = &mut self.commands[i]
        {
            tasks.push(task);
            return;
        }
        self.push(Command::Free {
            worker,
            tasks: vec![task],
            stimulus,
        });
    }

    pub(crate) fn cancel(&mut self, worker: WorkerId, task: TaskId, stimulus: StimulusId) {
        if let Some(&i) = self.last.get(&worker)
            && let Command::Cancel { tasks, .. } = &mut self.commands[i]
        {
            tasks.push(task);
            return;
        }
        self.push(Command::Cancel {
            worker,
            tasks: vec![task],
            stimulus,
        });
    }

    pub(crate) fn flush(&mut self, comm: &mut impl Comm) {
        self.last.clear();
        for c in self.commands.drain(..) {
            comm.send(c);
        }
    }

    pub(crate) fn discard(&mut self) {
        self.last.clear();
        self.commands.clear();
    }
}
