//! Reductions: tree-shaped, with a configurable fan-in, and [`Item`], the lazy
//! scalar they return.
//!
//! # Shape
//!
//! Dask's `Bag.reduction`: a *part* task per partition consumes the
//! partition's records as its stage produces them (no partition is built)
//! and returns a partial result; then levels of *combine* tasks each merge at
//! most `split_every` partial results of neighbouring partitions, until at
//! most `split_every` remain; one *aggregate* task merges those and finishes
//! the result. Every level is its own layer, with keys
//! `("count-part-…", i)`, `("count-combine1-…", j)`, `("count-aggregate-…")`.
//!
//! Partial results are always merged in partition order, so reductions that
//! care about order (first appearance in `frequencies` and `distinct`, ties in
//! `topk`, the last of equal maxima) give exactly what the same fold over the
//! whole input, in order, gives.
//!
//! Reductions that return a small bag (`frequencies`, `topk`, `distinct`,
//! `foldby`) end in a one-partition layer, keyed `(name, 0)`; the others end
//! in an [`Item`], keyed `(name)`.

use std::any::{Any, TypeId};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use blockwise_core::delayed::Delayed;
use blockwise_core::hash::FastHash;
use blockwise_core::op::registered_name_of;
use blockwise_core::{Collection, Error, Graph, Input, Key, Layer, LayerBody, Name, Result, Task, Tokenizer, Value};
use serde::{Deserialize, Serialize};

use crate::bag::{Bag, arg};
use crate::count::{BytesCounter, Counter, FrequencyKey};
use crate::partition::{Element, Partition, Scalar, into_scalar, scalar_of};
use crate::portable::{Level, Portable, Recipe, ReduceSpec};
use crate::stage::{BagOp, FnName, RunFn, Stage, Stop, collect, drive, extend_fns, extend_label, feed_fn};

/// A lazy single value computed from a bag (Dask's `Item`): what `count`,
/// `sum`, `fold` and the like return. `compute()` gives the value.
pub struct Item<U> {
    layer: Arc<Layer>,
    key: Key,
    _type: PhantomData<fn() -> U>,
}

impl<U> Clone for Item<U> {
    fn clone(&self) -> Self {
        Item {
            layer: self.layer.clone(),
            key: self.key.clone(),
            _type: PhantomData,
        }
    }
}

impl<U> std::fmt::Debug for Item<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Item({})", self.key)
    }
}

impl<U: Element> Item<U> {
    pub(crate) fn new(layer: Arc<Layer>, key: Key) -> Self {
        Item {
            layer,
            key,
            _type: PhantomData,
        }
    }

    /// The key of the value.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The value as a delayed [`Scalar`], for passing to `delayed` functions.
    pub fn to_delayed(&self) -> Delayed<Scalar<U>> {
        Delayed::from_layer(self.layer.clone(), self.key.clone())
    }

    /// Applies `f` to the value, lazily (Dask's `Item.apply`).
    pub fn apply<V, F>(&self, f: F) -> Item<V>
    where
        V: Element,
        F: Fn(U) -> V + Send + Sync + 'static,
    {
        let mut tok = Tokenizer::new();
        tok.str("apply").key(&self.key);
        feed_fn::<F>(&mut tok);
        let name = tok.name("apply");
        let op = BagOp::build(
            "blockwise.bag.apply",
            "apply",
            Arc::from(vec![FnName::of::<F>()]),
            std::any::type_name::<U>(),
            move |args| Ok(Arc::new(Scalar(f(scalar_of::<U>(arg(args, 0)?)?))) as Value),
        );
        let layer = Layer::single(
            name.clone(),
            vec![self.layer.clone()],
            Task::new(op, vec![Input::Key(self.key.clone())]),
        );
        Item::new(layer, Key::single(name))
    }
}

impl<U: Element> Collection for Item<U> {
    type Output = U;

    fn graph(&self) -> Graph {
        Graph::from_layer(self.layer.clone())
    }

    fn output_keys(&self) -> Vec<Key> {
        vec![self.key.clone()]
    }

    fn finalize(&self, values: Vec<Value>) -> Result<U> {
        let value = values
            .into_iter()
            .next()
            .ok_or_else(|| Error::graph(format!("the computation of {} returned no value", self.key)))?;
        into_scalar::<U>(value).map_err(|e| e.context(format!("in the result of {}", self.key)))
    }

    fn with_graph(&self, graph: Graph) -> Self {
        let layer = graph
            .roots()
            .iter()
            .find(|l| *l.name() == self.key.name)
            .cloned()
            .unwrap_or_else(|| self.layer.clone());
        Item::new(layer, self.key.clone())
    }
}

/// Where a tree reduction's result goes.
pub(crate) enum Output {
    /// An [`Item`]: key `(name)`.
    Item,
    /// A one-partition bag: key `(name, 0)`.
    Partition,
}

type CombineFn<A> = dyn Fn(Vec<A>) -> Result<A> + Send + Sync;
type PartFn<T, A> = dyn Fn(&Stage<T>, &[Value]) -> Result<A> + Send + Sync;

/// What a tree reduction does at each level.
pub(crate) struct Reduction<T, A> {
    /// Key prefix: `count`, `frequencies`, …
    pub(crate) prefix: &'static str,
    /// Identity of the reduction (operation, parameters, user functions).
    pub(crate) token: u64,
    /// User functions the reduction calls.
    pub(crate) fns: Vec<FnName>,
    /// Partial result of one partition, from its stage and inputs.
    pub(crate) part: Box<PartFn<T, A>>,
    /// Merges partial results of neighbouring partitions, in order.
    pub(crate) combine: Arc<CombineFn<A>>,
    /// Turns the last partial result into the output value.
    pub(crate) finish: Box<dyn Fn(A) -> Result<Value> + Send + Sync>,
    /// The reduction as data, when another process can rebuild it (see
    /// [`crate::portable`]).
    pub(crate) portable: Option<ReduceSpec>,
}

/// The task of a combine level: merges partial results.
fn combine_run<A: Element>(combine: Arc<CombineFn<A>>) -> Box<RunFn> {
    Box::new(move |args: &[Value]| {
        let parts = args.iter().map(scalar_of::<A>).collect::<Result<Vec<A>>>()?;
        Ok(Arc::new(Scalar(combine(parts)?)) as Value)
    })
}

/// The task of the aggregate level: merges and finishes.
fn aggregate_run<A: Element>(
    combine: Arc<CombineFn<A>>,
    finish: Box<dyn Fn(A) -> Result<Value> + Send + Sync>,
) -> Box<RunFn> {
    Box::new(move |args: &[Value]| {
        let parts = args.iter().map(scalar_of::<A>).collect::<Result<Vec<A>>>()?;
        finish(combine(parts)?)
    })
}

/// The task of one level of `r` (the part level reads `stage`).
pub(crate) fn level_run<T: Element, A: Element>(
    r: Reduction<T, A>,
    stage: Option<Stage<T>>,
    level: Level,
) -> Result<Box<RunFn>> {
    Ok(match level {
        Level::Part => {
            let stage = stage.ok_or_else(|| Error::graph("the part task of a reduction was sent without its stage"))?;
            let part = r.part;
            Box::new(move |args: &[Value]| Ok(Arc::new(Scalar(part(&stage, args)?)) as Value))
        }
        Level::Combine => combine_run(r.combine),
        Level::Aggregate => aggregate_run(r.combine, r.finish),
    })
}

/// Builds the layers of a tree reduction over `bag`; returns the last layer,
/// the key of the result, and the token of the whole reduction (the bag's,
/// the reduction's and the fan-in).
pub(crate) fn tree_reduce<T: Element, A: Element>(
    bag: &Bag<T>,
    r: Reduction<T, A>,
    out: Output,
) -> (Arc<Layer>, Key, u64) {
    let src = &bag.source;
    let token = Tokenizer::new()
        .u64(r.token)
        .u64(src.token)
        .u64(bag.split_every as u64)
        .finish();
    let element = std::any::type_name::<T>();
    let prefix = r.prefix;
    let fns = extend_fns(&src.fns, &r.fns);
    let own_fns: Arc<[FnName]> = r.fns.clone().into();

    let portable = |level: Level, recipe: Option<Recipe>| {
        r.portable.clone().map(|spec| Portable::Reduce {
            recipe,
            element: element.to_string(),
            spec,
            level,
        })
    };
    let part_portable = src
        .recipe
        .as_ref()
        .and_then(|recipe| portable(Level::Part, Some((**recipe).clone())));
    // A part that cannot travel keeps the whole reduction here; the later
    // levels then name the chain that holds it back.
    let blocked = part_portable.is_none();
    let (combine_portable, aggregate_portable) = (portable(Level::Combine, None), portable(Level::Aggregate, None));
    let chain = extend_label(&src.label, prefix);
    let later = |name: &'static str, label: String, portable: Option<Portable>, run: Box<RunFn>| {
        if blocked {
            BagOp::build_after(name, label, fns.clone(), element, chain.clone(), run)
        } else {
            BagOp::build_portable(name, label, own_fns.clone(), element, portable, run)
        }
    };
    let stage = src.stage.clone();
    let part = r.part;
    let part_op = BagOp::build_portable(
        "blockwise.bag.reduce-part",
        chain.to_string(),
        fns.clone(),
        element,
        part_portable,
        move |args| Ok(Arc::new(Scalar(part(&stage, args)?)) as Value),
    );
    let name = Name::new(&format!("{prefix}-part-{token:016x}"));
    let tasks = src
        .inputs
        .iter()
        .enumerate()
        .map(|(i, inputs)| {
            (
                Key::new(name.clone(), &[i as u32]),
                Task::new(part_op.clone(), inputs.clone()),
            )
        })
        .collect();
    let mut layer = Layer::new(name, src.deps.to_vec(), LayerBody::Tasks(tasks));
    let mut keys = layer.keys();

    let fan_in = bag.split_every.max(2);
    let mut level = 0;
    while keys.len() > fan_in {
        level += 1;
        let op = later(
            "blockwise.bag.reduce-combine",
            format!("{prefix}-combine"),
            combine_portable.clone(),
            combine_run(r.combine.clone()),
        );
        let name = Name::new(&format!("{prefix}-combine{level}-{token:016x}"));
        let tasks = keys
            .chunks(fan_in)
            .enumerate()
            .map(|(j, group)| {
                (
                    Key::new(name.clone(), &[j as u32]),
                    Task::new(op.clone(), group.iter().cloned().map(Input::Key).collect()),
                )
            })
            .collect();
        layer = Layer::new(name, vec![layer], LayerBody::Tasks(tasks));
        keys = layer.keys();
    }

    let name = Name::new(&format!("{prefix}-aggregate-{token:016x}"));
    let key = match out {
        Output::Item => Key::single(name.clone()),
        Output::Partition => Key::new(name.clone(), &[0]),
    };
    let op = later(
        "blockwise.bag.reduce-aggregate",
        format!("{prefix}-aggregate"),
        aggregate_portable,
        aggregate_run(r.combine, r.finish),
    );
    let task = Task::new(op, keys.into_iter().map(Input::Key).collect());
    let layer = Layer::new(name, vec![layer], LayerBody::Tasks(vec![(key.clone(), task)]));
    (layer, key, token)
}

/// Feeds a serde value to a tokenizer (its postcard encoding), or a unique
/// token when it cannot be encoded.
pub(crate) fn feed_value<V: Serialize>(tok: &mut Tokenizer, value: &V) {
    match postcard::to_stdvec(value) {
        Ok(bytes) => tok.bytes(&bytes),
        Err(_) => tok.unique(),
    };
}

fn scalar<U: Element>(u: U) -> Result<Value> {
    Ok(Arc::new(Scalar(u)) as Value)
}

fn partition<U: Element>(items: Vec<U>) -> Result<Value> {
    Ok(Arc::new(Partition::new(items)) as Value)
}

fn nonempty<A>(parts: Vec<A>, f: impl Fn(A, A) -> A) -> Result<A> {
    parts
        .into_iter()
        .reduce(f)
        .ok_or_else(|| Error::graph("a reduction step received no partial results"))
}

/// A hash map that remembers the order in which keys first arrived, so a
/// merge of ordered partial results stays in first-appearance order.
pub(crate) struct OrderedMap<K, V> {
    map: HashMap<K, (V, u64), FastHash>,
    next: u64,
}

impl<K: Eq + Hash, V> OrderedMap<K, V> {
    pub(crate) fn new() -> Self {
        OrderedMap {
            // Seeded once per process: which words collide is not known in
            // advance; the entries keep first-appearance order regardless.
            map: HashMap::with_hasher(FastHash::random()),
            next: 0,
        }
    }

    /// Inserts `(key, value)`, or merges `value` into the present value.
    pub(crate) fn upsert(&mut self, key: K, value: V, merge: impl FnOnce(&mut V, V)) {
        match self.map.get_mut(&key) {
            Some((old, _)) => merge(old, value),
            None => {
                self.map.insert(key, (value, self.next));
                self.next += 1;
            }
        }
    }

    /// [`upsert`](Self::upsert) of a borrowed key: an owned copy is made only
    /// when the key is new.
    #[inline]
    pub(crate) fn upsert_borrowed<Q>(&mut self, key: &Q, value: V, merge: impl FnOnce(&mut V, V))
    where
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
        K: Borrow<Q>,
    {
        match self.map.get_mut(key) {
            Some((old, _)) => merge(old, value),
            None => {
                self.map.insert(key.to_owned(), (value, self.next));
                self.next += 1;
            }
        }
    }

    /// The value of `key`, inserting `make()` first if absent.
    pub(crate) fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let next = &mut self.next;
        &mut self
            .map
            .entry(key)
            .or_insert_with(|| {
                *next += 1;
                (make(), *next - 1)
            })
            .0
    }

    /// The entries in first-appearance order.
    pub(crate) fn into_vec(self) -> Vec<(K, V)> {
        let mut entries: Vec<(K, (V, u64))> = self.map.into_iter().collect();
        entries.sort_unstable_by_key(|(_, (_, order))| *order);
        entries.into_iter().map(|(k, (v, _))| (k, v)).collect()
    }
}

/// Running count, mean and sum of squared deviations (Welford), merged
/// across partitions with Chan's formula: stable for large means.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    fn merge(self, other: Moments) -> Moments {
        if self.n == 0 {
            return other;
        }
        if other.n == 0 {
            return self;
        }
        let n = self.n + other.n;
        let delta = other.mean - self.mean;
        Moments {
            n,
            mean: self.mean + delta * other.n as f64 / n as f64,
            m2: self.m2 + other.m2 + delta * delta * (self.n as f64) * (other.n as f64) / n as f64,
        }
    }

    fn variance(&self, ddof: usize) -> f64 {
        if self.n <= ddof as u64 {
            f64::NAN
        } else {
            self.m2 / (self.n - ddof as u64) as f64
        }
    }
}

/// Numbers whose statistics (`mean`, `var`, `std`) a bag can compute.
pub trait ToF64 {
    /// The value as a float (rounded for large integers).
    fn to_f64(&self) -> f64;
}

macro_rules! to_f64 {
    ($($t:ty),*) => {$(
        impl ToF64 for $t {
            fn to_f64(&self) -> f64 {
                *self as f64
            }
        }
    )*};
}
to_f64!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64);

/// Records kept for `topk`: the best `k` so far with their positions, pruned
/// whenever the buffer doubles. `better(a, b)` is `Less` when `a` ranks
/// before `b`; ties rank by position.
struct TopK<T> {
    k: usize,
    buffer: Vec<(u64, T)>,
    seen: u64,
}

type RankFn<T> = dyn Fn(&T, &T) -> Ordering + Send + Sync;

impl<T> TopK<T> {
    fn new(k: usize) -> Self {
        TopK {
            k,
            buffer: Vec::new(),
            seen: 0,
        }
    }

    fn push(&mut self, x: T, better: &RankFn<T>) {
        if self.k == 0 {
            return;
        }
        self.buffer.push((self.seen, x));
        self.seen += 1;
        if self.buffer.len() >= (2 * self.k).max(64) {
            self.prune(better);
        }
    }

    fn prune(&mut self, better: &RankFn<T>) {
        if self.buffer.len() > self.k {
            let k = self.k;
            self.buffer
                .select_nth_unstable_by(k - 1, |a, b| better(&a.1, &b.1).then(a.0.cmp(&b.0)));
            self.buffer.truncate(k);
        }
    }

    fn finish(mut self, better: &RankFn<T>) -> Vec<T> {
        self.prune(better);
        self.buffer
            .sort_unstable_by(|a, b| better(&a.1, &b.1).then(a.0.cmp(&b.0)));
        self.buffer.into_iter().map(|(_, x)| x).collect()
    }
}

/// The reduction behind [`Bag::count`].
pub(crate) fn count_reduction<T: Element>() -> Reduction<T, usize> {
    Reduction {
        prefix: "count",
        token: Tokenizer::new().str("count").finish(),
        fns: Vec::new(),
        part: Box::new(|stage, args| {
            let mut n = 0usize;
            drive(stage, args, &mut |_| {
                n += 1;
                Ok(())
            })?;
            Ok(n)
        }),
        combine: Arc::new(|parts| Ok(parts.into_iter().sum())),
        finish: Box::new(scalar),
        portable: Some(ReduceSpec::Count),
    }
}

/// Merges `frequencies` partials in order: counts added, keys in first
/// appearance order.
fn merge_counts<K: Eq + Hash>(parts: Vec<Vec<(K, usize)>>) -> Result<Vec<(K, usize)>> {
    let mut counts = OrderedMap::new();
    for (x, n) in parts.into_iter().flatten() {
        counts.upsert(x, n, |c, n| *c += n);
    }
    Ok(counts.into_vec())
}

/// The part of `frequencies` over `String` records (`None` for any other
/// type): counted in the table that keeps short strings inline (see
/// [`crate::count`]), which is faster than a map of `String`s.
fn string_frequencies<T: Element>(stage: &Stage<T>, args: &[Value]) -> Option<Result<Vec<(T, usize)>>> {
    if TypeId::of::<T>() != TypeId::of::<String>() {
        return None;
    }
    let mut counts = BytesCounter::<String>::default();
    let run = drive(stage, args, &mut |x: T| {
        // Always a `String` here: the check compiles away.
        if let Some(s) = (&x as &dyn Any).downcast_ref::<String>() {
            counts.add(s.as_str());
        }
        Ok(())
    });
    Some(run.and_then(|()| {
        let counts: Box<dyn Any> = Box::new(counts.into_vec());
        counts
            .downcast::<Vec<(T, usize)>>()
            .map(|c| *c)
            .map_err(|_| Error::graph("string frequencies of a type that is not String"))
    }))
}

/// The reduction behind [`Bag::frequencies`].
pub(crate) fn frequencies_reduction<T: Element + Eq + Hash>() -> Reduction<T, Vec<(T, usize)>> {
    Reduction {
        prefix: "frequencies",
        token: Tokenizer::new().str("frequencies").finish(),
        fns: Vec::new(),
        part: Box::new(|stage, args| {
            if let Some(counts) = string_frequencies::<T>(stage, args) {
                return counts;
            }
            let mut counts = OrderedMap::new();
            drive(stage, args, &mut |x| {
                counts.upsert(x, 1, |c, n| *c += n);
                Ok(())
            })?;
            Ok(counts.into_vec())
        }),
        combine: Arc::new(merge_counts::<T>),
        finish: Box::new(partition::<(T, usize)>),
        portable: Some(ReduceSpec::Frequencies),
    }
}

/// The reduction behind [`Bag::frequencies_of`]: `keys` lends each
/// record's keys, counted in the key type's table (see [`crate::count`]); a
/// key is copied only when a partition first sees it.
fn frequencies_of_reduction<T, Q, F>(keys: F) -> Reduction<T, Vec<(Q::Owned, usize)>>
where
    T: Element,
    Q: ?Sized + FrequencyKey,
    F: Fn(&T, &mut dyn FnMut(&Q)) + Send + Sync + 'static,
{
    let mut tok = Tokenizer::new();
    tok.str("frequencies-of");
    feed_fn::<F>(&mut tok);
    Reduction {
        prefix: "frequencies",
        token: tok.finish(),
        fns: vec![FnName::of::<F>()],
        part: Box::new(move |stage, args| {
            let mut counts = Q::Counter::default();
            drive(stage, args, &mut |x: T| {
                keys(&x, &mut |q: &Q| counts.add(q));
                Ok(())
            })?;
            Ok(counts.into_vec())
        }),
        combine: Arc::new(merge_counts::<Q::Owned>),
        finish: Box::new(partition::<(Q::Owned, usize)>),
        portable: None,
    }
}

/// The reduction behind [`Bag::distinct`].
pub(crate) fn distinct_reduction<T: Element + Eq + Hash>() -> Reduction<T, Vec<T>> {
    let merge = |parts: Vec<Vec<T>>| {
        let mut seen = OrderedMap::new();
        for x in parts.into_iter().flatten() {
            seen.upsert(x, (), |_, _| {});
        }
        Ok(seen.into_vec().into_iter().map(|(x, ())| x).collect::<Vec<T>>())
    };
    Reduction {
        prefix: "distinct",
        token: Tokenizer::new().str("distinct").finish(),
        fns: Vec::new(),
        part: Box::new(|stage, args| {
            let mut seen = OrderedMap::new();
            drive(stage, args, &mut |x| {
                seen.upsert(x, (), |_, _| {});
                Ok(())
            })?;
            Ok(seen.into_vec().into_iter().map(|(x, ())| x).collect::<Vec<T>>())
        }),
        combine: Arc::new(merge),
        finish: Box::new(partition::<T>),
        portable: Some(ReduceSpec::Distinct),
    }
}

/// The reduction behind [`Bag::topk`] and its kin: the `k` best records by
/// `better` (`Less`: the first argument is better).
pub(crate) fn top_reduction<T: Element>(
    prefix: &'static str,
    k: usize,
    token: u64,
    fns: Vec<FnName>,
    better: Arc<RankFn<T>>,
) -> Reduction<T, Vec<T>> {
    let b2 = better.clone();
    Reduction {
        prefix,
        token: Tokenizer::new().str(prefix).u64(token).u64(k as u64).finish(),
        fns,
        part: Box::new(move |stage, args| {
            let mut top = TopK::new(k);
            drive(stage, args, &mut |x| {
                top.push(x, &*better);
                Ok(())
            })?;
            Ok(top.finish(&*better))
        }),
        combine: Arc::new(move |parts: Vec<Vec<T>>| {
            let mut top = TopK::new(k);
            for x in parts.into_iter().flatten() {
                top.push(x, &*b2);
            }
            Ok(top.finish(&*b2))
        }),
        finish: Box::new(partition::<T>),
        portable: None,
    }
}

impl<T: Element> Bag<T> {
    /// A tree reduction ending in an [`Item`] of `U` (what `r.finish` makes).
    fn item<A: Element, U: Element>(&self, r: Reduction<T, A>) -> Item<U> {
        let (layer, key, _) = tree_reduce(self, r, Output::Item);
        Item::new(layer, key)
    }

    pub(crate) fn small_bag<A: Element, U: Element>(&self, r: Reduction<T, A>) -> Bag<U> {
        let (layer, _, token) = tree_reduce(self, r, Output::Partition);
        Bag::from_layer(layer, 1, token, self.split_every)
    }

    /// Folds every partition from `initial` with `binop`, then merges the
    /// partial results with `combine`, in a tree (Dask's `fold`). For a
    /// result independent of the partitioning, `combine` must be associative
    /// and `initial` neutral for it.
    pub fn fold<A, B, C>(&self, initial: A, binop: B, combine: C) -> Item<A>
    where
        A: Element,
        B: Fn(A, T) -> A + Send + Sync + 'static,
        C: Fn(A, A) -> A + Send + Sync + 'static,
    {
        let mut tok = Tokenizer::new();
        tok.str("fold");
        feed_fn::<B>(&mut tok);
        feed_fn::<C>(&mut tok);
        feed_value(&mut tok, &initial);
        self.item(Reduction {
            prefix: "fold",
            token: tok.finish(),
            fns: vec![FnName::of::<B>(), FnName::of::<C>()],
            part: Box::new(move |stage, args| {
                let mut acc = Some(initial.clone());
                drive(stage, args, &mut |x| {
                    if let Some(a) = acc.take() {
                        acc = Some(binop(a, x));
                    }
                    Ok(())
                })?;
                acc.ok_or_else(|| Error::graph("fold lost its accumulator"))
            }),
            combine: Arc::new(move |parts| nonempty(parts, &combine)),
            finish: Box::new(scalar),
            portable: None,
        })
    }

    /// Reduces each partition's records with `perpartition`, then the
    /// partial results with `aggregate`, in a tree whose every level calls
    /// `aggregate` on at most `split_every` partial results (Dask's
    /// `reduction`).
    pub fn reduction<A, P, G>(&self, perpartition: P, aggregate: G) -> Item<A>
    where
        A: Element,
        P: Fn(Vec<T>) -> A + Send + Sync + 'static,
        G: Fn(Vec<A>) -> A + Send + Sync + 'static,
    {
        let mut tok = Tokenizer::new();
        tok.str("reduction");
        feed_fn::<P>(&mut tok);
        feed_fn::<G>(&mut tok);
        self.item(Reduction {
            prefix: "reduction",
            token: tok.finish(),
            fns: vec![FnName::of::<P>(), FnName::of::<G>()],
            part: Box::new(move |stage, args| Ok(perpartition(collect(stage, args)?))),
            combine: Arc::new(move |parts| Ok(aggregate(parts))),
            finish: Box::new(scalar),
            portable: None,
        })
    }

    /// Number of records.
    pub fn count(&self) -> Item<usize> {
        self.item(count_reduction())
    }

    /// Whether `predicate` holds for some record (false for an empty bag).
    /// Each partition stops reading at its first match.
    pub fn any<F>(&self, predicate: F) -> Item<bool>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        self.quantifier("any", predicate, true)
    }

    /// Whether `predicate` holds for every record (true for an empty bag).
    /// Each partition stops reading at its first counterexample.
    pub fn all<F>(&self, predicate: F) -> Item<bool>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        self.quantifier("all", predicate, false)
    }

    /// `any` when `stop_on` is true, `all` when false.
    fn quantifier<F>(&self, prefix: &'static str, predicate: F, stop_on: bool) -> Item<bool>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        let mut tok = Tokenizer::new();
        tok.str(prefix);
        feed_fn::<F>(&mut tok);
        self.item(Reduction {
            prefix,
            token: tok.finish(),
            fns: vec![FnName::of::<F>()],
            part: Box::new(move |stage, args| {
                let mut found = false;
                drive(stage, args, &mut |x| {
                    if predicate(&x) == stop_on {
                        found = true;
                        Err(Stop::Enough)
                    } else {
                        Ok(())
                    }
                })?;
                Ok(found == stop_on)
            }),
            combine: Arc::new(move |parts| {
                Ok(if stop_on {
                    parts.into_iter().any(|p| p)
                } else {
                    parts.into_iter().all(|p| p)
                })
            }),
            finish: Box::new(scalar),
            portable: None,
        })
    }

    /// The records in first-appearance order, each once.
    pub fn distinct(&self) -> Bag<T>
    where
        T: Eq + Hash,
    {
        self.small_bag(distinct_reduction())
    }

    /// The first record of each distinct `key`, in first-appearance order.
    pub fn distinct_by<K, F>(&self, key: F) -> Bag<T>
    where
        K: Eq + Hash + Send + Sync + 'static,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        let key = Arc::new(key);
        let dedup = {
            let key = key.clone();
            move |records: &mut dyn Iterator<Item = T>| {
                let mut seen = OrderedMap::new();
                for x in records {
                    seen.upsert(key(&x), x, |_, _| {});
                }
                seen.into_vec().into_iter().map(|(_, x)| x).collect::<Vec<T>>()
            }
        };
        let dedup = Arc::new(dedup);
        let d2 = dedup.clone();
        let mut tok = Tokenizer::new();
        tok.str("distinct-by");
        feed_fn::<F>(&mut tok);
        self.small_bag(Reduction {
            prefix: "distinct",
            token: tok.finish(),
            fns: vec![FnName::of::<F>()],
            part: Box::new(move |stage, args| Ok(dedup(&mut collect(stage, args)?.into_iter()))),
            combine: Arc::new(move |parts| Ok(d2(&mut parts.into_iter().flatten()))),
            finish: Box::new(partition::<T>),
            portable: None,
        })
    }

    /// How often each distinct record occurs: a one-partition bag of
    /// `(record, count)` in first-appearance order (like Python's
    /// `Counter(records).items()`).
    pub fn frequencies(&self) -> Bag<(T, usize)>
    where
        T: Eq + Hash,
    {
        self.small_bag(frequencies_reduction())
    }

    /// How often each key occurs, where every record lends any number of
    /// keys: `keys(record, emit)` calls `emit` once per key, with a key
    /// borrowed from the record. A one-partition bag of `(key, count)` in
    /// first-appearance order: the same as `flat_map` to owned keys then
    /// [`frequencies`](Self::frequencies), without an owned key (a `String`)
    /// per occurrence — within a partition a key is copied only the first
    /// time it is seen. Keys may be any sized `Element + Hash + Eq` type, or
    /// `str`, `[u8]` or `Path` (see [`FrequencyKey`]); `str` and `[u8]` keys
    /// are counted in a table that keeps short keys inline ([`crate::count`]).
    /// Word counts:
    ///
    /// ```no_run
    /// # fn main() -> blockwise_core::Result<()> {
    /// use blockwise_local::Compute;
    /// let top = blockwise_bag::read_text("books/*.txt")?
    ///     .frequencies_of(|line: &String, emit: &mut dyn FnMut(&str)| {
    ///         line.split_ascii_whitespace().for_each(emit)
    ///     })
    ///     .topk(100, |(_, n)| *n)
    ///     .compute()?;
    /// # Ok(()) }
    /// ```
    ///
    /// The function is a closure of this process: this reduction runs on
    /// the local executors only (sending it elsewhere is a
    /// [`blockwise_core::ErrorKind::NotRegistered`] error).
    pub fn frequencies_of<Q, F>(&self, keys: F) -> Bag<(Q::Owned, usize)>
    where
        Q: ?Sized + FrequencyKey,
        F: Fn(&T, &mut dyn FnMut(&Q)) + Send + Sync + 'static,
    {
        self.small_bag(frequencies_of_reduction(keys))
    }

    fn top_by(&self, prefix: &'static str, k: usize, token: u64, fns: Vec<FnName>, better: Arc<RankFn<T>>) -> Bag<T> {
        self.small_bag(top_reduction(prefix, k, token, fns, better))
    }

    /// The `k` records with the largest `key`, largest first (Dask's `topk`);
    /// among equal keys, earlier records first. A one-partition bag.
    pub fn topk<K, F>(&self, k: usize, key: F) -> Bag<T>
    where
        K: Ord,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        let mut tok = Tokenizer::new();
        feed_fn::<F>(&mut tok);
        let mut r = top_reduction(
            "topk",
            k,
            tok.finish(),
            vec![FnName::of::<F>()],
            Arc::new(move |a: &T, b: &T| key(b).cmp(&key(a))),
        );
        r.portable = registered_name_of::<F>().map(|key| ReduceSpec::Top {
            k: k as u64,
            key: key.to_string(),
            largest: true,
        });
        self.small_bag(r)
    }

    /// The `k` records with the smallest `key`, smallest first; among equal
    /// keys, earlier records first. A one-partition bag.
    pub fn bottomk<K, F>(&self, k: usize, key: F) -> Bag<T>
    where
        K: Ord,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        let mut tok = Tokenizer::new();
        feed_fn::<F>(&mut tok);
        let mut r = top_reduction(
            "bottomk",
            k,
            tok.finish(),
            vec![FnName::of::<F>()],
            Arc::new(move |a: &T, b: &T| key(a).cmp(&key(b))),
        );
        r.portable = registered_name_of::<F>().map(|key| ReduceSpec::Top {
            k: k as u64,
            key: key.to_string(),
            largest: false,
        });
        self.small_bag(r)
    }

    /// The `k` largest records, largest first (`topk` by the records
    /// themselves).
    pub fn nlargest(&self, k: usize) -> Bag<T>
    where
        T: Ord,
    {
        self.top_by("nlargest", k, 0, Vec::new(), Arc::new(|a: &T, b: &T| b.cmp(a)))
    }

    /// The `k` smallest records, smallest first.
    pub fn nsmallest(&self, k: usize) -> Bag<T>
    where
        T: Ord,
    {
        self.top_by("nsmallest", k, 0, Vec::new(), Arc::new(|a: &T, b: &T| a.cmp(b)))
    }

    /// The sum of the records (zero for an empty bag). Integer sums are
    /// exact; float sums are added partition by partition, so their last
    /// bits may differ from a sequential sum.
    pub fn sum(&self) -> Item<T>
    where
        T: std::iter::Sum<T>,
    {
        self.item(Reduction {
            prefix: "sum",
            token: Tokenizer::new().str("sum").finish(),
            fns: Vec::new(),
            part: Box::new(|stage, args| {
                // `Sum` needs an iterator, a stage pushes: add blocks of
                // records, so a partition is never held whole.
                const BLOCK: usize = 1024;
                let mut total: Option<T> = None;
                let mut block: Vec<T> = Vec::with_capacity(BLOCK);
                let add = |total: &mut Option<T>, block: &mut Vec<T>| {
                    let s: T = block.drain(..).sum();
                    *total = Some(match total.take() {
                        Some(t) => [t, s].into_iter().sum(),
                        None => s,
                    });
                };
                drive(stage, args, &mut |x| {
                    block.push(x);
                    if block.len() == BLOCK {
                        add(&mut total, &mut block);
                    }
                    Ok(())
                })?;
                add(&mut total, &mut block);
                total.ok_or_else(|| Error::graph("sum lost its total"))
            }),
            combine: Arc::new(|parts| Ok(parts.into_iter().sum())),
            finish: Box::new(scalar),
            portable: None,
        })
    }

    /// The largest record, `None` for an empty bag; of equal largest
    /// records, the last (as `Iterator::max`). Records not comparable with
    /// themselves (float NaN) are skipped.
    pub fn max(&self) -> Item<Option<T>>
    where
        T: PartialOrd,
    {
        self.extreme("max", |x, best| x >= best)
    }

    /// The smallest record, `None` for an empty bag; of equal smallest
    /// records, the first (as `Iterator::min`). Records not comparable with
    /// themselves (float NaN) are skipped.
    pub fn min(&self) -> Item<Option<T>>
    where
        T: PartialOrd,
    {
        self.extreme("min", |x, best| x < best)
    }

    /// `replaces(x, best)`: whether a later `x` replaces the current `best`.
    fn extreme(&self, prefix: &'static str, replaces: fn(&T, &T) -> bool) -> Item<Option<T>>
    where
        T: PartialOrd,
    {
        let step = move |best: &mut Option<T>, x: T| {
            if x.partial_cmp(&x).is_none() {
                return;
            }
            match best {
                Some(b) if !replaces(&x, b) => {}
                _ => *best = Some(x),
            }
        };
        self.item(Reduction {
            prefix,
            token: Tokenizer::new().str(prefix).finish(),
            fns: Vec::new(),
            part: Box::new(move |stage, args| {
                let mut best = None;
                drive(stage, args, &mut |x| {
                    step(&mut best, x);
                    Ok(())
                })?;
                Ok(best)
            }),
            combine: Arc::new(move |parts| {
                let mut best = None;
                for x in parts.into_iter().flatten() {
                    step(&mut best, x);
                }
                Ok(best)
            }),
            finish: Box::new(scalar),
            portable: None,
        })
    }

    fn moments(&self, prefix: &'static str, ddof: usize, finish: fn(Moments, usize) -> f64) -> Item<f64>
    where
        T: ToF64,
    {
        self.item(Reduction {
            prefix,
            token: Tokenizer::new().str(prefix).u64(ddof as u64).finish(),
            fns: Vec::new(),
            part: Box::new(|stage, args| {
                let mut m = Moments::default();
                drive(stage, args, &mut |x| {
                    m.push(x.to_f64());
                    Ok(())
                })?;
                Ok(m)
            }),
            combine: Arc::new(|parts| Ok(parts.into_iter().fold(Moments::default(), Moments::merge))),
            finish: Box::new(move |m| scalar(finish(m, ddof))),
            portable: None,
        })
    }

    /// The mean of the records (NaN for an empty bag).
    pub fn mean(&self) -> Item<f64>
    where
        T: ToF64,
    {
        self.moments("mean", 0, |m, _| if m.n == 0 { f64::NAN } else { m.mean })
    }

    /// The variance with `ddof` delta degrees of freedom (0: population,
    /// 1: sample); NaN when there are no more records than `ddof`.
    pub fn var(&self, ddof: usize) -> Item<f64>
    where
        T: ToF64,
    {
        self.moments("var", ddof, |m, ddof| m.variance(ddof))
    }

    /// The standard deviation with `ddof` delta degrees of freedom (see
    /// [`Bag::var`]).
    pub fn std(&self, ddof: usize) -> Item<f64>
    where
        T: ToF64,
    {
        self.moments("std", ddof, |m, ddof| m.variance(ddof).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_merge_like_one_pass() {
        let xs: Vec<f64> = (0..100).map(|i| (i as f64).sin() * 1e6 + 1e9).collect();
        let mut whole = Moments::default();
        xs.iter().for_each(|&x| whole.push(x));
        let (mut a, mut b) = (Moments::default(), Moments::default());
        xs[..37].iter().for_each(|&x| a.push(x));
        xs[37..].iter().for_each(|&x| b.push(x));
        let merged = a.merge(b);
        assert_eq!(merged.n, 100);
        assert!((merged.mean - whole.mean).abs() < 1e-3);
        assert!((merged.variance(1) - whole.variance(1)).abs() / whole.variance(1) < 1e-9);
    }

    #[test]
    fn ordered_map_keeps_first_appearance() {
        let mut m = OrderedMap::new();
        for w in ["b", "a", "b", "c", "a", "b"] {
            m.upsert(w, 1, |c, n| *c += n);
        }
        assert_eq!(m.into_vec(), vec![("b", 3), ("a", 2), ("c", 1)]);
    }

    #[test]
    fn topk_breaks_ties_by_position() {
        let better: Arc<RankFn<(u32, u32)>> = Arc::new(|a: &(u32, u32), b: &(u32, u32)| b.0.cmp(&a.0));
        let mut top = TopK::new(3);
        for x in [(1, 0), (5, 1), (5, 2), (3, 3), (5, 4), (9, 5)] {
            top.push(x, &*better);
        }
        assert_eq!(top.finish(&*better), vec![(9, 5), (5, 1), (5, 2)]);
    }
}
