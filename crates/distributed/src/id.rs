//! Typed ids, and the storage only they can index.
//!
//! A bare `usize` can index anything; a [`WorkerId`] can only look up a
//! worker. Every id here is a newtype, and every collection keyed by ids
//! ([`IndexVec`], [`Slab`], [`IdSet`]) is typed by the id it accepts, so
//! mixing up a task and a worker is a compile error (tako's
//! `define_id_type!` and `IndexVec`).
//!
//! Two kinds of ids:
//!
//! - **Counted ids** ([`WorkerId`], [`ClientId`], [`StimulusId`]): a number
//!   handed out by whoever creates the thing (the server, as connections
//!   arrive; the driver, as events arrive). They are never reused.
//! - **Generational ids** ([`TaskId`], [`GroupId`]): a slot in a [`Slab`] plus
//!   the generation of that slot. Slots are reused after a task is forgotten,
//!   which keeps storage dense (a scheduler that ran a billion tasks still
//!   holds only its live ones), and the generation makes a stale id — in a
//!   message that was on the wire while its task was forgotten — look up
//!   nothing instead of someone else's task. Workers name results by
//!   [`TaskId`], so two incarnations of one key never share a name.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::Hash;

use blockwise_core::hash::FastHash;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// An id that indexes an [`IndexVec`]: a dense index in disguise.
pub trait Idx: Copy + Eq + Hash + Ord + fmt::Debug {
    /// The id of position `index`.
    fn from_index(index: usize) -> Self;
    /// The position this id stands for.
    fn index(self) -> usize;
}

/// Defines a counted id: a `Copy` newtype over an integer, printed with a
/// prefix (`worker-3`), serialized as the bare integer.
macro_rules! define_id {
    ($(#[$meta:meta])* $vis:vis struct $name:ident($int:ty), $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        $vis struct $name($int);

        #[allow(dead_code)]
        impl $name {
            /// The id with this number.
            $vis const fn new(value: $int) -> Self {
                $name(value)
            }

            /// The number behind the id.
            $vis const fn get(self) -> $int {
                self.0
            }

            /// The id after this one.
            $vis const fn next(self) -> Self {
                $name(self.0 + 1)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(self, f)
            }
        }

        impl $crate::id::Idx for $name {
            fn from_index(index: usize) -> Self {
                $name(<$int>::try_from(index).expect(concat!(stringify!($name), " overflow")))
            }
            fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}
pub(crate) use define_id;

define_id!(
    /// A worker process, as long as it is connected. A worker that reconnects
    /// gets a new id.
    pub struct WorkerId(u32),
    "worker-"
);
define_id!(
    /// A client connection.
    pub struct ClientId(u32),
    "client-"
);
define_id!(
    /// One assignment of a task to a worker. A task cancelled and assigned
    /// again (to the same worker, even) gets a new run; a worker's report
    /// quotes its run, so a result of a cancelled run is never taken for
    /// the result of the current one.
    pub struct RunId(u64),
    "run-"
);
define_id!(
    /// What caused a change: every event carries one, every command and
    /// every recorded transition repeats the id of the event that caused it,
    /// so a key's story can be read back to the messages behind it.
    pub struct StimulusId(u64),
    "stimulus-"
);

/// An id made of a [`Slab`] slot and that slot's generation.
pub trait GenerationalId: Copy + Eq + Hash + Ord + fmt::Debug {
    /// The id of `slot` at `generation`.
    fn from_parts(slot: u32, generation: u32) -> Self;
    /// The slot.
    fn slot(self) -> u32;
    /// The generation of the slot when the id was handed out.
    fn generation(self) -> u32;
}

/// Defines a generational id, printed as `{prefix}{slot}.{generation}`.
macro_rules! define_generational_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name {
            slot: u32,
            generation: u32,
        }

        impl GenerationalId for $name {
            fn from_parts(slot: u32, generation: u32) -> Self {
                $name { slot, generation }
            }
            fn slot(self) -> u32 {
                self.slot
            }
            fn generation(self) -> u32 {
                self.generation
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}.{}"), self.slot, self.generation)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

define_generational_id!(
    /// A task known to the scheduler, from submission until it is forgotten.
    /// Workers name results by it.
    TaskId,
    "task-"
);
define_generational_id!(
    /// A task group: the tasks of one layer (one key name), Dask's
    /// `TaskGroup`. Used to recognise root tasks.
    GroupId,
    "group-"
);

/// A `Vec` that only its id type can index.
#[derive(Clone, PartialEq, Eq)]
pub struct IndexVec<I, V> {
    items: Vec<V>,
    _id: PhantomData<fn(I) -> I>,
}

impl<I: Idx, V> IndexVec<I, V> {
    /// An empty vector.
    pub fn new() -> Self {
        IndexVec {
            items: Vec::new(),
            _id: PhantomData,
        }
    }

    /// Appends `value` and returns its id.
    pub fn push(&mut self, value: V) -> I {
        let id = I::from_index(self.items.len());
        self.items.push(value);
        id
    }

    /// The value of `id`, if it is in range.
    pub fn get(&self, id: I) -> Option<&V> {
        self.items.get(id.index())
    }

    /// The value of `id`, mutably, if it is in range.
    pub fn get_mut(&mut self, id: I) -> Option<&mut V> {
        self.items.get_mut(id.index())
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every id with its value, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (I, &V)> + '_ {
        self.items.iter().enumerate().map(|(i, v)| (I::from_index(i), v))
    }
}

impl<I: Idx, V> Default for IndexVec<I, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: Idx, V> std::ops::Index<I> for IndexVec<I, V> {
    type Output = V;
    fn index(&self, id: I) -> &V {
        &self.items[id.index()]
    }
}

impl<I: Idx, V> std::ops::IndexMut<I> for IndexVec<I, V> {
    fn index_mut(&mut self, id: I) -> &mut V {
        &mut self.items[id.index()]
    }
}

impl<I: Idx, V: fmt::Debug> fmt::Debug for IndexVec<I, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

struct Entry<V> {
    generation: u32,
    value: Option<V>,
}

/// Dense storage with reusable slots, indexed by a [`GenerationalId`].
///
/// Removing a value bumps its slot's generation, so every id handed out for
/// the old value stops finding anything. (After 2³² reuses of one slot an id
/// would find a value again; a stale message does not live that long.)
/// Iteration is in slot order, which is deterministic for a given history.
pub struct Slab<I, V> {
    entries: Vec<Entry<V>>,
    free: Vec<u32>,
    len: usize,
    _id: PhantomData<fn(I) -> I>,
}

impl<I: GenerationalId, V> Slab<I, V> {
    /// An empty slab.
    pub fn new() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
            _id: PhantomData,
        }
    }

    /// Stores `value` and returns its new id.
    pub fn insert(&mut self, value: V) -> I {
        self.len += 1;
        if let Some(slot) = self.free.pop() {
            let entry = &mut self.entries[slot as usize];
            entry.value = Some(value);
            I::from_parts(slot, entry.generation)
        } else {
            let slot = u32::try_from(self.entries.len()).expect("more than 2^32 live values in a slab");
            self.entries.push(Entry {
                generation: 0,
                value: Some(value),
            });
            I::from_parts(slot, 0)
        }
    }

    /// Makes room for `additional` more values without reallocating (free
    /// slots count).
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional.saturating_sub(self.free.len()));
    }

    /// Removes and returns the value of `id`, if `id` is live.
    pub fn remove(&mut self, id: I) -> Option<V> {
        let entry = self.entries.get_mut(id.slot() as usize)?;
        if entry.generation != id.generation() || entry.value.is_none() {
            return None;
        }
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(id.slot());
        self.len -= 1;
        entry.value.take()
    }

    /// The value of `id`, if `id` is live.
    pub fn get(&self, id: I) -> Option<&V> {
        let entry = self.entries.get(id.slot() as usize)?;
        if entry.generation == id.generation() {
            entry.value.as_ref()
        } else {
            None
        }
    }

    /// The value of `id`, mutably, if `id` is live.
    pub fn get_mut(&mut self, id: I) -> Option<&mut V> {
        let entry = self.entries.get_mut(id.slot() as usize)?;
        if entry.generation == id.generation() {
            entry.value.as_mut()
        } else {
            None
        }
    }

    /// Whether `id` is live.
    pub fn contains(&self, id: I) -> bool {
        self.get(id).is_some()
    }

    /// Number of live values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no live values.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every live id with its value, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (I, &V)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| e.value.as_ref().map(|v| (I::from_parts(slot as u32, e.generation), v)))
    }

    /// Every live id, in slot order.
    pub fn ids(&self) -> impl Iterator<Item = I> + '_ {
        self.iter().map(|(id, _)| id)
    }
}

impl<I: GenerationalId, V> Default for Slab<I, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// Indexing a slab with a dead id is a bug in the scheduler, never a
/// consequence of a message: ids from messages are looked up with
/// [`Slab::get`].
impl<I: GenerationalId, V> std::ops::Index<I> for Slab<I, V> {
    type Output = V;
    fn index(&self, id: I) -> &V {
        match self.get(id) {
            Some(v) => v,
            None => panic!("{id:?} is not live in this slab"),
        }
    }
}

impl<I: GenerationalId, V> std::ops::IndexMut<I> for Slab<I, V> {
    fn index_mut(&mut self, id: I) -> &mut V {
        match self.get_mut(id) {
            Some(v) => v,
            None => panic!("{id:?} is not live in this slab"),
        }
    }
}

/// The hasher of id maps and sets: core's deterministic [`FastHash`].
/// Deterministic matters: iteration order of an [`IdSet`] decides the order
/// of commands, and a test must see the same order every run.
pub type IdBuildHasher = FastHash;

/// A hash map keyed by ids, with the deterministic [`IdBuildHasher`].
pub type IdMap<K, V> = std::collections::HashMap<K, V, IdBuildHasher>;

/// Sets this large move from a vector to an ordered set.
const PROMOTE_AT: usize = 24;

#[derive(Clone)]
#[expect(
    clippy::box_collection,
    reason = "boxed to keep a set sixteen bytes inline: most sets hold one id or none"
)]
enum Repr<I> {
    Empty,
    One(I),
    /// Two to [`PROMOTE_AT`] ids, in insertion order.
    Few(Box<Vec<I>>),
    Large(Box<BTreeSet<I>>),
}

/// A set of ids. Most sets in a scheduler hold one id (the one worker
/// holding a result, the one dependent waiting for it), a few hold a
/// million (every dependent of a broadcast chunk): an empty set or a set
/// of one is kept inline, a few ids in a vector, many in an ordered set.
/// Sixteen bytes inline whatever the size (a task holds four sets, and a
/// scheduler a million tasks). Iteration order is deterministic (insertion
/// order while small, id order once large).
///
/// Why ordered and not hashed when large: ids are handed out in order and
/// mostly come and go in order (the inputs of a task reading a million
/// results finish one after another; a worker's results are freed in the
/// order they were made), so consecutive operations touch the same few
/// nodes of a B-tree, where a hash set scatters them over a table of
/// megabytes, a cache miss each.
#[derive(Clone)]
pub struct IdSet<I> {
    repr: Repr<I>,
}

impl<I: Copy + Ord + Hash> IdSet<I> {
    /// An empty set (no allocation).
    pub fn new() -> Self {
        IdSet { repr: Repr::Empty }
    }

    /// Adds `id`; returns whether it was new.
    pub fn insert(&mut self, id: I) -> bool {
        match &mut self.repr {
            Repr::Empty => {
                self.repr = Repr::One(id);
                true
            }
            Repr::One(one) => {
                if *one == id {
                    return false;
                }
                self.repr = Repr::Few(Box::new(vec![*one, id]));
                true
            }
            Repr::Few(v) => {
                if v.contains(&id) {
                    return false;
                }
                if v.len() >= PROMOTE_AT {
                    let mut set: BTreeSet<I> = v.drain(..).collect();
                    set.insert(id);
                    self.repr = Repr::Large(Box::new(set));
                } else {
                    v.push(id);
                }
                true
            }
            Repr::Large(s) => s.insert(id),
        }
    }

    /// Removes `id`; returns whether it was there.
    pub fn remove(&mut self, id: I) -> bool {
        match &mut self.repr {
            Repr::Empty => false,
            Repr::One(one) => {
                if *one == id {
                    self.repr = Repr::Empty;
                    true
                } else {
                    false
                }
            }
            Repr::Few(v) => match v.iter().position(|x| *x == id) {
                Some(i) => {
                    v.swap_remove(i);
                    true
                }
                None => false,
            },
            Repr::Large(s) => s.remove(&id),
        }
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: I) -> bool {
        match &self.repr {
            Repr::Empty => false,
            Repr::One(one) => *one == id,
            Repr::Few(v) => v.contains(&id),
            Repr::Large(s) => s.contains(&id),
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Empty => 0,
            Repr::One(_) => 1,
            Repr::Few(v) => v.len(),
            Repr::Large(s) => s.len(),
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every id (and frees a large set's table).
    pub fn clear(&mut self) {
        self.repr = Repr::Empty;
    }

    /// The ids, in the set's (deterministic) order.
    pub fn iter(&self) -> IdSetIter<'_, I> {
        match &self.repr {
            Repr::Empty => IdSetIter::Small([].iter()),
            Repr::One(one) => IdSetIter::Small(std::slice::from_ref(one).iter()),
            Repr::Few(v) => IdSetIter::Small(v.iter()),
            Repr::Large(s) => IdSetIter::Large(s.iter()),
        }
    }

    /// The ids, copied into a vector.
    pub fn to_vec(&self) -> Vec<I> {
        self.iter().collect()
    }

    /// The ids, copied (inline up to four: no allocation for the one
    /// holder or the one waiter most sets have), in the set's order.
    pub fn copied(&self) -> SmallVec<[I; 4]> {
        self.iter().collect()
    }

    /// [`IdSet::copied`], sorted.
    pub fn sorted_copied(&self) -> SmallVec<[I; 4]> {
        let mut v = self.copied();
        if matches!(self.repr, Repr::Few(_)) {
            v.sort_unstable();
        }
        v
    }
}

impl<I: Copy + Eq + Hash + Ord> IdSet<I> {
    /// The ids, sorted.
    pub fn sorted(&self) -> Vec<I> {
        let mut v = self.to_vec();
        if matches!(self.repr, Repr::Few(_)) {
            v.sort_unstable();
        }
        v
    }
}

impl<I: Copy + Ord + Hash> Default for IdSet<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: Copy + Ord + Hash> PartialEq for IdSet<I> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|x| other.contains(x))
    }
}

impl<I: Copy + Ord + Hash> Eq for IdSet<I> {}

impl<I: Copy + Ord + Hash> FromIterator<I> for IdSet<I> {
    fn from_iter<T: IntoIterator<Item = I>>(iter: T) -> Self {
        let mut set = IdSet::new();
        for id in iter {
            set.insert(id);
        }
        set
    }
}

impl<I: Copy + Eq + Hash + Ord + fmt::Debug> fmt::Debug for IdSet<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.sorted()).finish()
    }
}

/// Iterator over an [`IdSet`].
pub enum IdSetIter<'a, I> {
    /// Over the inline id or the vector.
    Small(std::slice::Iter<'a, I>),
    /// Over the ordered set.
    Large(std::collections::btree_set::Iter<'a, I>),
}

impl<I: Copy> Iterator for IdSetIter<'_, I> {
    type Item = I;
    fn next(&mut self) -> Option<I> {
        match self {
            IdSetIter::Small(it) => it.next().copied(),
            IdSetIter::Large(it) => it.next().copied(),
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            IdSetIter::Small(it) => it.size_hint(),
            IdSetIter::Large(it) => it.size_hint(),
        }
    }
}

impl<'a, I: Copy + Ord + Hash> IntoIterator for &'a IdSet<I> {
    type Item = I;
    type IntoIter = IdSetIter<'a, I>;
    fn into_iter(self) -> IdSetIter<'a, I> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    define_id!(
        /// A test id.
        struct PrefixId(u32),
        "p"
    );

    #[test]
    fn index_vec_is_indexed_by_its_id() {
        let mut v: IndexVec<PrefixId, &str> = IndexVec::new();
        let a = v.push("a");
        let b = v.push("b");
        assert_eq!((a, b), (PrefixId::new(0), PrefixId::new(1)));
        assert_eq!(v[b], "b");
        assert_eq!(v.get(PrefixId::new(2)), None);
        assert_eq!(
            v.iter().map(|(i, s)| format!("{i}={s}")).collect::<Vec<_>>(),
            ["p0=a", "p1=b"]
        );
    }

    #[test]
    fn slab_reuses_slots_and_refuses_stale_ids() {
        let mut slab: Slab<TaskId, u32> = Slab::new();
        let a = slab.insert(1);
        let b = slab.insert(2);
        assert_eq!(slab.remove(a), Some(1));
        assert_eq!(slab.remove(a), None, "a dead id removes nothing");
        let c = slab.insert(3);
        assert_eq!(c.slot(), a.slot(), "the slot is reused");
        assert_ne!(c, a, "with a new generation");
        assert_eq!(slab.get(a), None, "the stale id finds nothing");
        assert_eq!(slab[c], 3);
        assert_eq!(slab[b], 2);
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.ids().collect::<Vec<_>>(), vec![c, b]);
        assert_eq!(c.to_string(), "task-0.1");
    }

    #[test]
    fn id_set_promotes_and_keeps_set_semantics() {
        let mut s: IdSet<WorkerId> = IdSet::new();
        for i in 0..100 {
            assert!(s.insert(WorkerId::new(i % 60)) == (i < 60));
        }
        assert_eq!(s.len(), 60);
        for i in 0..30 {
            assert!(s.remove(WorkerId::new(i)));
            assert!(!s.remove(WorkerId::new(i)));
        }
        assert_eq!(s.sorted(), (30..60).map(WorkerId::new).collect::<Vec<_>>());
        let same: IdSet<WorkerId> = (30..60).rev().map(WorkerId::new).collect();
        assert_eq!(s, same);
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn id_set_iteration_is_deterministic() {
        let build = || {
            (0..1000)
                .map(|i| WorkerId::new(i * 7919 % 1009))
                .collect::<IdSet<_>>()
                .to_vec()
        };
        assert_eq!(build(), build());
    }
}
