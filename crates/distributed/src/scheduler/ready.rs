//! The ready tasks of a cascade, dispatched most urgent first.

use crate::id::TaskId;
use crate::scheduler::task::Priority;

/// A set of `(priority, task)` popped smallest first — a `BTreeSet` with
/// `pop_first`, laid out for how a cascade uses it: the tasks a cascade
/// makes ready are all pushed before the first of them is popped (a
/// submission of a million roots pushes a million, then pops them all). A
/// push appends to a vector; the first pop after pushes sorts them and
/// merges them into the sorted rest. A million ready tasks are one sort,
/// instead of a million B-tree insertions and removals with a node
/// allocation every few.
///
/// Pushes between pops cost a merge with the rest at the next pop (linear
/// in the rest): a cascade that alternated single pushes and pops over a
/// long queue would be quadratic. None does: placing a ready task makes
/// nothing else ready.
#[derive(Default)]
pub(crate) struct ReadyQueue {
    /// Sorted, largest first: the next pop is the last.
    sorted: Vec<(Priority, TaskId)>,
    /// Pushed since the last pop, in no order.
    pushed: Vec<(Priority, TaskId)>,
}

impl ReadyQueue {
    /// Adds an entry (a second push of the same entry is one entry).
    pub(crate) fn insert(&mut self, entry: (Priority, TaskId)) {
        self.pushed.push(entry);
    }

    /// Removes and returns the smallest entry.
    pub(crate) fn pop_first(&mut self) -> Option<(Priority, TaskId)> {
        if !self.pushed.is_empty() {
            self.merge();
        }
        let first = self.sorted.pop();
        if self.sorted.is_empty() && self.sorted.capacity() > 4096 {
            // The room a large cascade left behind.
            self.sorted = Vec::new();
        }
        first
    }

    fn merge(&mut self) {
        self.pushed.sort_unstable_by(|a, b| b.cmp(a));
        self.pushed.dedup();
        if self.sorted.is_empty() {
            std::mem::swap(&mut self.sorted, &mut self.pushed);
            return;
        }
        let mut merged = Vec::with_capacity(self.sorted.len() + self.pushed.len());
        let (mut a, mut b) = (self.sorted.drain(..).peekable(), self.pushed.drain(..).peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x >= y => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => break,
            };
            let next = next.expect("peeked");
            if merged.last() != Some(&next) {
                merged.push(next);
            }
        }
        drop((a, b));
        self.sorted = merged;
    }

    /// Whether no entry is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.sorted.is_empty() && self.pushed.is_empty()
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.sorted.clear();
        self.pushed.clear();
    }
}

impl Extend<(Priority, TaskId)> for ReadyQueue {
    fn extend<T: IntoIterator<Item = (Priority, TaskId)>>(&mut self, entries: T) {
        self.pushed.extend(entries);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::id::{GenerationalId, TaskId};

    fn entry(order: u32, slot: u32) -> (Priority, TaskId) {
        (
            Priority {
                user: (order % 3) as i32,
                generation: u64::from(order % 5),
                order,
            },
            TaskId::from_parts(slot, 0),
        )
    }

    /// Pops in the order a `BTreeSet` would, through any mix of pushes
    /// (duplicates included) and pops.
    #[test]
    fn pops_as_an_ordered_set_would() {
        let mut queue = ReadyQueue::default();
        let mut model: BTreeSet<(Priority, TaskId)> = BTreeSet::new();
        let mut state = 12345u64;
        let mut random = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for _ in 0..5000 {
            if random(3) == 0 {
                assert_eq!(queue.pop_first(), model.pop_first());
            } else {
                for _ in 0..random(20) {
                    let e = entry(random(200) as u32, random(50) as u32);
                    queue.insert(e);
                    model.insert(e);
                }
            }
            assert_eq!(queue.is_empty(), model.is_empty());
        }
        while let Some(e) = model.pop_first() {
            assert_eq!(queue.pop_first(), Some(e));
        }
        assert_eq!(queue.pop_first(), None);
        assert!(queue.is_empty());
        queue.extend([entry(1, 1), entry(1, 1)]);
        queue.clear();
        assert!(queue.is_empty());
    }
}
