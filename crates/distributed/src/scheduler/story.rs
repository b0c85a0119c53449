//! The transition log: what happened to each key, and why.
//!
//! Every state change is recorded with the stimulus that caused it, in a
//! bounded ring (Dask's `transition_log`). [`crate::scheduler::Scheduler::story`]
//! reads one key's entries back; an illegal transition or a broken invariant
//! carries the story of the key involved, so the error says how the key got
//! where it should not be.

use std::collections::VecDeque;
use std::fmt;

use blockwise_core::Key;

use crate::id::{StimulusId, TaskId, WorkerId};
use crate::scheduler::task::TaskState;

/// One recorded transition of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionRecord {
    /// The key.
    pub key: Key,
    /// The task (its id changes if the key is forgotten and submitted again).
    pub task: TaskId,
    /// State before.
    pub from: TaskState,
    /// State after. Equal to `from` for events that change no state (a
    /// steal, a replica).
    pub to: TaskState,
    /// The worker involved: where it was assigned, computed, stolen to.
    pub worker: Option<WorkerId>,
    /// What caused it.
    pub stimulus: StimulusId,
    /// Why, when the states alone do not say (`"lost"`, `"stolen"`,
    /// `"killed-worker"`).
    pub note: &'static str,
}

impl fmt::Display for TransitionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {} → {}", self.stimulus, self.key, self.from, self.to)?;
        if let Some(w) = self.worker {
            write!(f, " on {w}")?;
        }
        if !self.note.is_empty() {
            write!(f, " ({})", self.note)?;
        }
        Ok(())
    }
}

/// A bounded log of transitions.
pub(crate) struct TransitionLog {
    records: VecDeque<TransitionRecord>,
    capacity: usize,
}

impl TransitionLog {
    pub(crate) fn new(capacity: usize) -> Self {
        TransitionLog {
            records: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
        }
    }

    pub(crate) fn push(&mut self, record: TransitionRecord) {
        if self.capacity == 0 {
            return;
        }
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    pub(crate) fn story(&self, key: &Key) -> Vec<TransitionRecord> {
        self.records.iter().filter(|r| &r.key == key).cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &TransitionRecord> + '_ {
        self.records.iter()
    }
}

/// A bug in the scheduler (or in its driver), found while handling an event
/// or validating the state. The state is not rolled back: a server logs the
/// error and shuts down rather than keep running on a state it cannot trust.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SchedulerError {
    /// A transition the state machine does not have.
    IllegalTransition {
        /// The key.
        key: Key,
        /// Its state.
        from: TaskState,
        /// The state it was asked to go to.
        to: TaskState,
        /// Its recent transitions.
        story: Vec<TransitionRecord>,
    },
    /// The driver broke the protocol (a worker id used twice, a worker with
    /// no threads).
    InvalidEvent {
        /// What was wrong.
        message: String,
    },
    /// [`crate::scheduler::Scheduler::validate_state`] found an inconsistency.
    Invariant {
        /// What does not hold.
        message: String,
        /// The key involved, if one is.
        key: Option<Key>,
        /// That key's recent transitions.
        story: Vec<TransitionRecord>,
    },
}

impl fmt::Display for SchedulerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let story = match self {
            SchedulerError::IllegalTransition { key, from, to, story } => {
                write!(f, "illegal transition of {key}: {from} → {to}")?;
                story
            }
            SchedulerError::InvalidEvent { message } => return write!(f, "invalid event: {message}"),
            SchedulerError::Invariant { message, story, .. } => {
                write!(f, "scheduler invariant broken: {message}")?;
                story
            }
        };
        if !story.is_empty() {
            f.write_str("\n  story:")?;
            for r in story {
                write!(f, "\n    {r}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for SchedulerError {}
