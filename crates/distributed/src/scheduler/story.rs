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

/// One transition as kept in the log: the task's id, not its key.
///
/// Copying a key into every record cost a reference count update on the
/// key's shared name (a cache miss each, for a million distinct names) and
/// forty bytes; the key is found again from the id when a story is read:
/// the live task's key, or, for a forgotten task, the key its `forgotten`
/// record kept (see [`TransitionLog`]).
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) task: TaskId,
    pub(crate) from: TaskState,
    pub(crate) to: TaskState,
    pub(crate) worker: Option<WorkerId>,
    pub(crate) stimulus: StimulusId,
    pub(crate) note: &'static str,
}

impl Entry {
    fn with_key(&self, key: Key) -> TransitionRecord {
        TransitionRecord {
            key,
            task: self.task,
            from: self.from,
            to: self.to,
            worker: self.worker,
            stimulus: self.stimulus,
            note: self.note,
        }
    }
}

/// A bounded log of transitions.
///
/// Records name tasks by id. The keys of tasks forgotten while some of
/// their records are still in the ring are kept beside it, one per
/// `forgotten` record and in the same order: a task's `forgotten` record is
/// its last, so while any record of a forgotten task is in the ring, so is
/// that one, and its key. Every other record's task is live, and the
/// scheduler has its key.
pub(crate) struct TransitionLog {
    records: VecDeque<Entry>,
    /// The keys of the `forgotten` records in `records`, oldest first.
    forgotten: VecDeque<(TaskId, Key)>,
    capacity: usize,
}

impl TransitionLog {
    pub(crate) fn new(capacity: usize) -> Self {
        TransitionLog {
            records: VecDeque::with_capacity(capacity.min(4096)),
            forgotten: VecDeque::new(),
            capacity,
        }
    }

    /// Appends a record; `forgotten_key` is the task's key when `entry`
    /// forgets it (and only then).
    pub(crate) fn push(&mut self, entry: Entry, forgotten_key: Option<&Key>) {
        if self.capacity == 0 {
            return;
        }
        if self.records.len() == self.capacity
            && let Some(old) = self.records.pop_front()
            && old.to == TaskState::Forgotten
        {
            self.forgotten.pop_front();
        }
        if let Some(key) = forgotten_key {
            self.forgotten.push_back((entry.task, key.clone()));
        }
        self.records.push_back(entry);
    }

    /// The records of `key`: those of its live task `live` (if any) and of
    /// the forgotten tasks that had that key.
    pub(crate) fn story(&self, key: &Key, live: Option<TaskId>) -> Vec<TransitionRecord> {
        let mut ids: smallvec::SmallVec<[TaskId; 4]> = live.into_iter().collect();
        ids.extend(self.forgotten.iter().filter(|(_, k)| k == key).map(|&(t, _)| t));
        if ids.is_empty() {
            return Vec::new();
        }
        self.records
            .iter()
            .filter(|r| ids.contains(&r.task))
            .map(|r| r.with_key(key.clone()))
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Every record, oldest first, with its key: `live_key` gives the key
    /// of a live task.
    pub(crate) fn iter<'a>(
        &'a self,
        live_key: impl Fn(TaskId) -> Option<&'a Key> + 'a,
    ) -> impl Iterator<Item = TransitionRecord> + 'a {
        let forgotten: std::collections::HashMap<TaskId, &Key, crate::id::IdBuildHasher> =
            self.forgotten.iter().map(|(t, k)| (*t, k)).collect();
        self.records.iter().filter_map(move |r| {
            let key = forgotten.get(&r.task).copied().or_else(|| live_key(r.task))?;
            Some(r.with_key(key.clone()))
        })
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

#[cfg(test)]
mod tests {
    use blockwise_core::Name;

    use super::*;
    use crate::id::{GenerationalId, StimulusId};

    fn entry(task: TaskId, to: TaskState) -> Entry {
        Entry {
            task,
            from: TaskState::Released,
            to,
            worker: None,
            stimulus: StimulusId::new(1),
            note: "",
        }
    }

    /// A forgotten task's records keep its key while they are in the ring,
    /// and the kept key goes with its `forgotten` record.
    #[test]
    fn forgotten_tasks_keep_their_keys_as_long_as_their_records() {
        let a = Key::single(Name::new("a"));
        let (old, new) = (TaskId::from_parts(0, 0), TaskId::from_parts(0, 1));
        let mut log = TransitionLog::new(4);
        log.push(entry(old, TaskState::Released), None);
        log.push(entry(old, TaskState::Forgotten), Some(&a));
        log.push(entry(new, TaskState::Released), None);
        // Both incarnations of the key, the live one by its id.
        let story = log.story(&a, Some(new));
        assert_eq!(story.iter().map(|r| r.task).collect::<Vec<_>>(), [old, old, new]);
        assert!(story.iter().all(|r| r.key == a));
        assert_eq!(log.story(&a, None).len(), 2, "without the live task: the forgotten one");
        let all: Vec<TransitionRecord> = log.iter(|id| (id == new).then_some(&a)).collect();
        assert_eq!(all.len(), 3);
        // The ring turns: the forgotten incarnation's records leave, and
        // its key with its last one.
        for _ in 0..3 {
            log.push(entry(new, TaskState::Waiting), None);
        }
        assert_eq!(log.len(), 4);
        assert!(log.forgotten.is_empty());
        assert_eq!(log.story(&a, None), Vec::new());
        assert_eq!(log.story(&a, Some(new)).len(), 4);
        // A log of no capacity keeps nothing.
        let mut none = TransitionLog::new(0);
        none.push(entry(old, TaskState::Forgotten), Some(&a));
        assert_eq!(none.len(), 0);
        assert!(none.forgotten.is_empty());
    }
}
