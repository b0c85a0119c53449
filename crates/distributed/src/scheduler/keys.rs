//! The scheduler's key index: which live task has a key.
//!
//! A table of task ids, hashed by their tasks' keys: the key itself is
//! stored once, in the task (a `HashMap<Key, TaskId>` held a second copy of
//! every key, forty bytes and a reference count update on the key's name
//! each). A submission hashes each of its keys once and probes with that
//! hash, for the duplicate check and the lookup and the insertion alike.

use std::hash::BuildHasher;

use blockwise_core::Key;
use hashbrown::HashTable;

use crate::id::{IdBuildHasher, Slab, TaskId};
use crate::scheduler::task::Task;

/// Live tasks by key. Every id in it is live in the scheduler's task slab,
/// which the methods that compare keys are given.
#[derive(Default)]
pub(crate) struct KeyIndex {
    table: HashTable<TaskId>,
    hasher: IdBuildHasher,
}

impl KeyIndex {
    /// The hash of `key` in this index.
    pub(crate) fn hash(&self, key: &Key) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The live task with `key`.
    pub(crate) fn get(&self, tasks: &Slab<TaskId, Task>, key: &Key) -> Option<TaskId> {
        self.get_hashed(tasks, key, self.hash(key))
    }

    /// [`KeyIndex::get`] with the key's [`KeyIndex::hash`] already known.
    pub(crate) fn get_hashed(&self, tasks: &Slab<TaskId, Task>, key: &Key, hash: u64) -> Option<TaskId> {
        self.table.find(hash, |&id| tasks[id].key == *key).copied()
    }

    /// Indexes live task `id`, whose key (not indexed yet) hashes to `hash`.
    pub(crate) fn insert_hashed(&mut self, tasks: &Slab<TaskId, Task>, id: TaskId, hash: u64) {
        let hasher = self.hasher;
        self.table
            .insert_unique(hash, id, |&other| hasher.hash_one(&tasks[other].key));
    }

    /// Drops task `id`, whose key is `key`, from the index.
    pub(crate) fn remove(&mut self, id: TaskId, key: &Key) {
        if let Ok(entry) = self.table.find_entry(self.hash(key), |&other| other == id) {
            entry.remove();
        }
    }

    /// Makes room for `additional` more keys.
    pub(crate) fn reserve(&mut self, tasks: &Slab<TaskId, Task>, additional: usize) {
        let hasher = self.hasher;
        self.table
            .reserve(additional, |&other| hasher.hash_one(&tasks[other].key));
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}
