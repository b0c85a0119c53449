//! [`Bag`]: the collection, its element-wise transforms, in-memory sources and
//! the sinks that hand partitions out (`take`, `to_delayed`).
//!
//! Element-wise transforms never add a layer: they wrap the pending stage
//! (see [`crate::stage`] for why). Transforms that rearrange partitions
//! (`zip`, `repartition`, `concat`) read the partitions as values, so they
//! turn their inputs into layers first.

use std::fmt;
use std::sync::Arc;

use blockwise_core::delayed::Delayed;
use blockwise_core::op::registered_name_of;
use blockwise_core::{Collection, Error, Graph, Input, Key, Layer, LayerBody, Name, Result, Task, Tokenizer, Value};
use blockwise_local::{ComputeOptions, compute_graph};
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};

use crate::partition::{Element, Partition, into_items, partition_of};
use crate::portable::{Recipe, SourceSpec, StepSpec};
use crate::stage::{BagOp, FnName, Sink, Source, Stage, Stop, drive, extend_fns, extend_label, feed_fn, passthrough};

/// The fan-in of tree reductions unless [`Bag::split_every`] says otherwise
/// (Dask's default).
pub const DEFAULT_SPLIT_EVERY: usize = 8;

/// A lazy, partitioned collection of records of type `T` (Dask's `Bag`).
///
/// Every method builds on the graph and returns at once; `compute()` (from
/// [`blockwise_local::Compute`]) runs it and returns all records in order, as
/// a `Vec<T>`. Cloning a bag is cheap: it shares its graph.
///
/// ```
/// use blockwise_bag as bag;
/// use blockwise_local::Compute;
///
/// let squares = bag::range(10, 3).map(|x| x * x).filter(|x| x % 2 == 0);
/// assert_eq!(squares.compute().unwrap(), vec![0, 4, 16, 36, 64]);
/// assert_eq!(squares.sum().compute().unwrap(), 120);
/// ```
pub struct Bag<T> {
    pub(crate) source: Arc<Source<T>>,
    pub(crate) split_every: usize,
}

impl<T> Clone for Bag<T> {
    fn clone(&self) -> Self {
        Bag {
            source: self.source.clone(),
            split_every: self.split_every,
        }
    }
}

impl<T> fmt::Debug for Bag<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Bag<{}>({}, {} partitions)",
            std::any::type_name::<T>(),
            self.source.name,
            self.source.inputs.len()
        )
    }
}

/// An argument of a task, checked (the inputs are built by this crate, so a
/// missing one is a bug of ours, reported rather than panicking).
pub(crate) fn arg(args: &[Value], i: usize) -> Result<&Value> {
    args.get(i).ok_or_else(|| {
        Error::graph(format!(
            "a bag task expected at least {} inputs, got {}",
            i + 1,
            args.len()
        ))
    })
}

/// A `u64` literal argument of a task.
pub(crate) fn u64_arg(args: &[Value], i: usize) -> Result<u64> {
    arg(args, i)?
        .downcast_ref::<u64>()
        .copied()
        .ok_or_else(|| Error::graph(format!("input {i} of a bag task is not an integer")))
}

impl<T: Element> Bag<T> {
    pub(crate) fn from_source(source: Source<T>) -> Self {
        Bag {
            source: Arc::new(source),
            split_every: DEFAULT_SPLIT_EVERY,
        }
    }

    /// A bag whose partitions are the values of `layer` at `[0]` … `[n-1]`.
    pub(crate) fn from_layer(layer: Arc<Layer>, npartitions: usize, token: u64, split_every: usize) -> Self {
        Bag {
            source: Arc::new(Source::of_layer(layer, npartitions, token)),
            split_every,
        }
    }

    /// Number of partitions.
    pub fn npartitions(&self) -> usize {
        self.source.inputs.len()
    }

    /// The name of the layer holding the partitions: key `(name, i)` is
    /// partition `i`.
    pub fn name(&self) -> &Name {
        &self.source.name
    }

    /// The fan-in of the tree reductions built on this bag and on bags
    /// derived from it (default 8, as Dask's `split_every`): each combining
    /// task reads at most `n` partial results. Values below 2 are taken as 2.
    pub fn split_every(&self, n: usize) -> Self {
        Bag {
            source: self.source.clone(),
            split_every: n.max(2),
        }
    }

    /// The fan-in set by [`Bag::split_every`].
    pub fn fan_in(&self) -> usize {
        self.split_every
    }

    /// The bag computed by `stage` over this bag's inputs: one more step in
    /// the pending chain, no new layer.
    /// `portable` describes the step for another process, when it can be
    /// described.
    fn then<U: Element>(
        &self,
        step: &str,
        fns: &[FnName],
        feed: impl FnOnce(&mut Tokenizer),
        stage: Stage<U>,
        portable: Option<StepSpec>,
    ) -> Bag<U> {
        let src = &self.source;
        let mut tok = Tokenizer::new();
        tok.str(step).u64(src.token);
        feed(&mut tok);
        Bag {
            source: Arc::new(
                Source::pending(
                    tok.finish(),
                    step,
                    extend_label(&src.label, step),
                    src.deps.clone(),
                    src.inputs.clone(),
                    stage,
                    extend_fns(&src.fns, fns),
                )
                .with_recipe(src.recipe.as_ref().zip(portable).map(|(r, step)| r.then(step))),
            ),
            split_every: self.split_every,
        }
    }

    /// Applies `f` to every record.
    pub fn map<U, F>(&self, f: F) -> Bag<U>
    where
        U: Element,
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        let prev = self.source.stage.clone();
        let stage: Stage<U> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, U>| prev(args, &mut |x| sink(f(x))));
        let portable = registered_name_of::<F>().map(|func| StepSpec::Map {
            func: func.to_string(),
            output: std::any::type_name::<U>().to_string(),
        });
        self.then("map", &[FnName::of::<F>()], feed_fn::<F>, stage, portable)
    }

    /// Applies a fallible `f` to every record; the first error fails the
    /// computation with its message (and the partition's key).
    pub fn try_map<U, E, F>(&self, f: F) -> Bag<U>
    where
        U: Element,
        E: fmt::Display,
        F: Fn(T) -> std::result::Result<U, E> + Send + Sync + 'static,
    {
        let prev = self.source.stage.clone();
        let stage: Stage<U> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, U>| {
            prev(args, &mut |x| match f(x) {
                Ok(y) => sink(y),
                Err(e) => Err(Stop::Fail(Error::invalid(e.to_string()))),
            })
        });
        self.then("try-map", &[FnName::of::<F>()], feed_fn::<F>, stage, None)
    }

    /// Keeps the records for which `predicate` is true.
    pub fn filter<F>(&self, predicate: F) -> Bag<T>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        let prev = self.source.stage.clone();
        let stage: Stage<T> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, T>| {
            prev(args, &mut |x| if predicate(&x) { sink(x) } else { Ok(()) })
        });
        let portable = registered_name_of::<F>().map(|func| StepSpec::Filter {
            func: func.to_string(),
            keep: true,
        });
        self.then("filter", &[FnName::of::<F>()], feed_fn::<F>, stage, portable)
    }

    /// Drops the records for which `predicate` is true (Dask's `remove`).
    pub fn remove<F>(&self, predicate: F) -> Bag<T>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        let prev = self.source.stage.clone();
        let stage: Stage<T> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, T>| {
            prev(args, &mut |x| if predicate(&x) { Ok(()) } else { sink(x) })
        });
        let portable = registered_name_of::<F>().map(|func| StepSpec::Filter {
            func: func.to_string(),
            keep: false,
        });
        self.then("remove", &[FnName::of::<F>()], feed_fn::<F>, stage, portable)
    }

    /// Applies `f` to every record and keeps the `Some` results.
    pub fn filter_map<U, F>(&self, f: F) -> Bag<U>
    where
        U: Element,
        F: Fn(T) -> Option<U> + Send + Sync + 'static,
    {
        let prev = self.source.stage.clone();
        let stage: Stage<U> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, U>| {
            prev(args, &mut |x| match f(x) {
                Some(y) => sink(y),
                None => Ok(()),
            })
        });
        let portable = registered_name_of::<F>().map(|func| StepSpec::FlatMap {
            func: func.to_string(),
            output: std::any::type_name::<U>().to_string(),
        });
        self.then("filter-map", &[FnName::of::<F>()], feed_fn::<F>, stage, portable)
    }

    /// Applies `f` to every record and yields each of its results in turn
    /// (`map` then `flatten`).
    pub fn flat_map<U, I, F>(&self, f: F) -> Bag<U>
    where
        U: Element,
        I: IntoIterator<Item = U>,
        F: Fn(T) -> I + Send + Sync + 'static,
    {
        let prev = self.source.stage.clone();
        let stage: Stage<U> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, U>| {
            prev(args, &mut |x| {
                for y in f(x) {
                    sink(y)?;
                }
                Ok(())
            })
        });
        let portable = registered_name_of::<F>().map(|func| StepSpec::FlatMap {
            func: func.to_string(),
            output: std::any::type_name::<U>().to_string(),
        });
        self.then("flat-map", &[FnName::of::<F>()], feed_fn::<F>, stage, portable)
    }

    /// Applies `f` to each whole partition: it receives the partition's
    /// records in order and returns the new partition's records.
    pub fn map_partitions<U, I, F>(&self, f: F) -> Bag<U>
    where
        U: Element,
        I: IntoIterator<Item = U>,
        F: Fn(Vec<T>) -> I + Send + Sync + 'static,
    {
        let prev = self.source.stage.clone();
        let stage: Stage<U> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, U>| {
            let mut records = Vec::new();
            prev(args, &mut |x| {
                records.push(x);
                Ok(())
            })?;
            for y in f(records) {
                sink(y)?;
            }
            Ok(())
        });
        self.then("map-partitions", &[FnName::of::<F>()], feed_fn::<F>, stage, None)
    }

    /// Keeps each record with probability `probability`, independently, from
    /// a random stream seeded by `seed` and the partition's index: the same
    /// seed and partitioning give the same sample. A probability outside
    /// `[0, 1]` is an error.
    pub fn random_sample(&self, probability: f64, seed: u64) -> Result<Bag<T>> {
        if !(0.0..=1.0).contains(&probability) {
            return Err(Error::invalid(format!(
                "random_sample: the probability must be between 0 and 1, got {probability}"
            )));
        }
        let prev = self.source.stage.clone();
        let stage: Stage<T> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, T>| {
            let (index, rest) = args
                .split_last()
                .ok_or_else(|| Stop::Fail(Error::graph("random_sample: a task without its partition index")))?;
            let index = index
                .downcast_ref::<u64>()
                .copied()
                .ok_or_else(|| Stop::Fail(Error::graph("random_sample: the partition index is not an integer")))?;
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            prev(rest, &mut |x| {
                // 53 random bits as a uniform float in [0, 1).
                let u = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
                if u < probability { sink(x) } else { Ok(()) }
            })
        });
        let src = &self.source;
        let inputs: Arc<[Vec<Input>]> = src
            .inputs
            .iter()
            .enumerate()
            .map(|(i, inputs)| {
                let mut inputs = inputs.clone();
                inputs.push(Input::Literal(Arc::new(i as u64)));
                inputs
            })
            .collect();
        let mut tok = Tokenizer::new();
        tok.str("random-sample")
            .u64(src.token)
            .u64(probability.to_bits())
            .u64(seed);
        Ok(Bag {
            source: Arc::new(Source::pending(
                tok.finish(),
                "random-sample",
                extend_label(&src.label, "random-sample"),
                src.deps.clone(),
                inputs,
                stage,
                src.fns.clone(),
            )),
            split_every: self.split_every,
        })
    }

    /// Pairs the records of two bags with the same partitioning, partition
    /// by partition. Different partition counts are an error here; partitions
    /// of different lengths fail the computation, naming the partition.
    pub fn zip<U: Element>(&self, other: &Bag<U>) -> Result<Bag<(T, U)>> {
        if self.npartitions() != other.npartitions() {
            return Err(Error::invalid(format!(
                "zip needs bags with the same number of partitions, got {} and {}",
                self.npartitions(),
                other.npartitions()
            )));
        }
        let (left, right) = (self.source.layer(), other.source.layer());
        let inputs: Arc<[Vec<Input>]> = self
            .source
            .keys()
            .into_iter()
            .zip(other.source.keys())
            .map(|(a, b)| vec![Input::Key(a), Input::Key(b)])
            .collect();
        let stage: Stage<(T, U)> = Arc::new(|args: &[Value], sink: &mut Sink<'_, (T, U)>| {
            let a = partition_of::<T>(arg(args, 0)?)?;
            let b = partition_of::<U>(arg(args, 1)?)?;
            if a.len() != b.len() {
                return Err(Stop::Fail(Error::invalid(format!(
                    "zip needs partitions of equal length; this partition has {} records on the left and {} on the right",
                    a.len(),
                    b.len()
                ))));
            }
            for (x, y) in a.iter().zip(b.iter()) {
                sink((x.clone(), y.clone()))?;
            }
            Ok(())
        });
        let token = Tokenizer::new()
            .str("zip")
            .u64(self.source.token)
            .u64(other.source.token)
            .finish();
        Ok(Bag {
            source: Arc::new(Source::pending(
                token,
                "zip",
                Arc::from("zip"),
                Arc::from(vec![left, right]),
                inputs,
                stage,
                Arc::from(Vec::new()),
            )),
            split_every: self.split_every,
        })
    }

    /// The same records in `npartitions` partitions (0 is taken as 1). Fewer
    /// partitions concatenate neighbours; more split each partition into
    /// nearly equal slices. Order is kept.
    pub fn repartition(&self, npartitions: usize) -> Bag<T> {
        let n = npartitions.max(1);
        let m = self.npartitions();
        if n == m {
            return self.clone();
        }
        let layer = self.source.layer();
        let keys = self.source.keys();
        let (inputs, stage): (Vec<Vec<Input>>, Stage<T>) = if n < m {
            let inputs = (0..n)
                .map(|j| {
                    keys[j * m / n..(j + 1) * m / n]
                        .iter()
                        .cloned()
                        .map(Input::Key)
                        .collect()
                })
                .collect();
            (inputs, passthrough::<T>())
        } else {
            let mut inputs = Vec::with_capacity(n);
            for (i, key) in keys.iter().enumerate() {
                let pieces = (n / m + usize::from(i < n % m)) as u64;
                for k in 0..pieces {
                    inputs.push(vec![
                        Input::Key(key.clone()),
                        Input::Literal(Arc::new(k)),
                        Input::Literal(Arc::new(pieces)),
                    ]);
                }
            }
            let stage: Stage<T> = Arc::new(|args: &[Value], sink: &mut Sink<'_, T>| {
                let part = partition_of::<T>(arg(args, 0)?)?;
                let (k, pieces) = (u64_arg(args, 1)? as usize, u64_arg(args, 2)? as usize);
                let len = part.len();
                for x in &part[k * len / pieces..(k + 1) * len / pieces] {
                    sink(x.clone())?;
                }
                Ok(())
            });
            (inputs, stage)
        };
        let token = Tokenizer::new()
            .str("repartition")
            .u64(self.source.token)
            .u64(n as u64)
            .finish();
        Bag {
            source: Arc::new(Source::pending(
                token,
                "repartition",
                Arc::from("repartition"),
                Arc::from(vec![layer]),
                inputs.into(),
                stage,
                Arc::from(Vec::new()),
            )),
            split_every: self.split_every,
        }
    }

    /// The partitions as delayed values, one per partition, in order (Dask's
    /// `to_delayed`): for handing partitions to `delayed` functions.
    pub fn to_delayed(&self) -> Vec<Delayed<Partition<T>>> {
        let layer = self.source.layer();
        self.source
            .keys()
            .into_iter()
            .map(|key| Delayed::from_layer(layer.clone(), key))
            .collect()
    }

    /// A layer whose task `i` yields the first `n` records of partition `i`,
    /// stopping the partition's stage as soon as it has them.
    fn heads(&self, n: usize) -> Arc<Layer> {
        let src = &self.source;
        let token = Tokenizer::new().str("take").u64(src.token).u64(n as u64).finish();
        let name = Name::new(&format!("take-{token:016x}"));
        let stage = src.stage.clone();
        let op = BagOp::build(
            "blockwise.bag.head",
            extend_label(&src.label, "take").to_string(),
            src.fns.clone(),
            std::any::type_name::<T>(),
            move |args| {
                let mut out = Vec::new();
                if n > 0 {
                    drive(&stage, args, &mut |x| {
                        out.push(x);
                        if out.len() >= n { Err(Stop::Enough) } else { Ok(()) }
                    })?;
                }
                Ok(Arc::new(Partition::new(out)) as Value)
            },
        );
        let tasks = src
            .inputs
            .iter()
            .enumerate()
            .map(|(i, inputs)| {
                (
                    Key::new(name.clone(), &[i as u32]),
                    Task::new(op.clone(), inputs.clone()),
                )
            })
            .collect();
        Layer::new(name, src.deps.to_vec(), LayerBody::Tasks(tasks))
    }

    /// The first `n` records, computing only the partitions needed: the
    /// first partition, then (if it held fewer than `n` records) the next
    /// one, then two more, four more… Within a partition, reading stops as
    /// soon as `n` records are in hand. Runs on the configured scheduler.
    pub fn take(&self, n: usize) -> Result<Vec<T>> {
        self.take_with(n, ComputeOptions::new())
    }

    /// [`Bag::take`] with explicit options or scheduler.
    pub fn take_with(&self, n: usize, options: impl Into<ComputeOptions>) -> Result<Vec<T>> {
        let options = options.into();
        let layer = self.heads(n);
        let graph = Graph::from_layer(layer.clone());
        let total = self.npartitions();
        let mut out: Vec<T> = Vec::new();
        let (mut next, mut batch) = (0usize, 1usize);
        while out.len() < n && next < total {
            let end = (next + batch).min(total);
            let keys: Vec<Key> = (next..end)
                .map(|i| Key::new(layer.name().clone(), &[i as u32]))
                .collect();
            for value in compute_graph(&graph, &keys, &options)? {
                let room = n - out.len();
                out.extend(into_items::<T>(value)?.into_iter().take(room));
            }
            next = end;
            batch *= 2;
        }
        Ok(out)
    }

    /// A one-partition bag of the first `n` records found in the first
    /// `npartitions` partitions (Dask's `take(n, npartitions, compute=False)`):
    /// fewer when those partitions hold fewer.
    pub fn head(&self, n: usize, npartitions: usize) -> Bag<T> {
        let heads = self.heads(n);
        let np = npartitions.clamp(1, self.npartitions());
        let token = Tokenizer::new()
            .str("head")
            .str(heads.name().as_str())
            .u64(np as u64)
            .finish();
        let name = Name::new(&format!("head-{token:016x}"));
        let op = BagOp::build(
            "blockwise.bag.concat-head",
            "head",
            Arc::from(Vec::new()),
            std::any::type_name::<T>(),
            move |args| {
                let mut out = Vec::new();
                for a in args {
                    let room = n - out.len();
                    out.extend(partition_of::<T>(a)?.iter().take(room).cloned());
                }
                Ok(Arc::new(Partition::new(out)) as Value)
            },
        );
        let inputs = (0..np)
            .map(|i| Input::Key(Key::new(heads.name().clone(), &[i as u32])))
            .collect();
        let layer = Layer::new(
            name.clone(),
            vec![heads],
            LayerBody::Tasks(vec![(Key::new(name, &[0]), Task::new(op, inputs))]),
        );
        Bag::from_layer(layer, 1, token, self.split_every)
    }
}

impl<T: Element> Collection for Bag<T> {
    type Output = Vec<T>;

    fn graph(&self) -> Graph {
        Graph::from_layer(self.source.layer())
    }

    fn output_keys(&self) -> Vec<Key> {
        self.source.keys()
    }

    fn finalize(&self, values: Vec<Value>) -> Result<Vec<T>> {
        let mut out: Vec<T> = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            let items =
                into_items::<T>(value).map_err(|e| e.context(format!("in partition {i} of {}", self.source.name)))?;
            if out.is_empty() {
                out = items;
            } else {
                out.extend(items);
            }
        }
        Ok(out)
    }

    fn with_graph(&self, graph: Graph) -> Self {
        match graph.roots().iter().find(|l| *l.name() == self.source.name) {
            Some(layer) => Bag::from_layer(layer.clone(), self.npartitions(), self.source.token, self.split_every),
            None => self.clone(),
        }
    }
}

impl<T> Bag<T>
where
    T: Element + IntoIterator,
    T::Item: Element,
{
    /// Yields the items of every record in turn (a bag of lists becomes a
    /// bag of their items).
    pub fn flatten(&self) -> Bag<T::Item> {
        let prev = self.source.stage.clone();
        let stage: Stage<T::Item> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, T::Item>| {
            prev(args, &mut |x| {
                for y in x {
                    sink(y)?;
                }
                Ok(())
            })
        });
        self.then("flatten", &[], |_| {}, stage, None)
    }
}

macro_rules! starmap {
    ($($t:ident $v:ident),+) => {
        impl<$($t: Element),+> Bag<($($t,)+)> {
            /// Applies `f` to the parts of every tuple record, as separate
            /// arguments (Dask's `starmap`).
            pub fn starmap<U, F>(&self, f: F) -> Bag<U>
            where
                U: Element,
                F: Fn($($t),+) -> U + Send + Sync + 'static,
            {
                self.map_star(f)
            }

            fn map_star<U, F>(&self, f: F) -> Bag<U>
            where
                U: Element,
                F: Fn($($t),+) -> U + Send + Sync + 'static,
            {
                let prev = self.source.stage.clone();
                let stage: Stage<U> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, U>| {
                    prev(args, &mut |($($v,)+)| sink(f($($v),+)))
                });
                self.then("starmap", &[FnName::of::<F>()], feed_fn::<F>, stage, None)
            }
        }
    };
}
starmap!(A a, B b);
starmap!(A a, B b, C c);
starmap!(A a, B b, C c, D d);

/// What [`Bag::pluck`] takes out of a JSON record: an object's field or an
/// array's item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonKey {
    /// The field of this name of an object.
    Field(String),
    /// The item at this position of an array.
    Index(usize),
}

impl From<&str> for JsonKey {
    fn from(s: &str) -> Self {
        JsonKey::Field(s.to_string())
    }
}
impl From<String> for JsonKey {
    fn from(s: String) -> Self {
        JsonKey::Field(s)
    }
}
impl From<usize> for JsonKey {
    fn from(i: usize) -> Self {
        JsonKey::Index(i)
    }
}

impl fmt::Display for JsonKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonKey::Field(s) => write!(f, "field {s:?}"),
            JsonKey::Index(i) => write!(f, "index {i}"),
        }
    }
}

fn pluck_value(v: serde_json::Value, key: &JsonKey) -> std::result::Result<serde_json::Value, serde_json::Value> {
    match (v, key) {
        (serde_json::Value::Object(mut map), JsonKey::Field(name)) => match map.remove(name) {
            Some(x) => Ok(x),
            None => Err(serde_json::Value::Object(map)),
        },
        (serde_json::Value::Array(mut items), JsonKey::Index(i)) if *i < items.len() => Ok(items.swap_remove(*i)),
        (other, _) => Err(other),
    }
}

fn preview(v: &serde_json::Value) -> String {
    let mut s = v.to_string();
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

impl Bag<serde_json::Value> {
    /// Takes one field (or array item) out of every JSON record (Dask's
    /// `pluck`). A record without it fails the computation, showing the
    /// record; see [`Bag::pluck_or`] for a default instead.
    pub fn pluck(&self, key: impl Into<JsonKey>) -> Bag<serde_json::Value> {
        let key = key.into();
        let prev = self.source.stage.clone();
        let k = key.clone();
        let stage: Stage<serde_json::Value> =
            Arc::new(move |args: &[Value], sink: &mut Sink<'_, serde_json::Value>| {
                prev(args, &mut |x| match pluck_value(x, &k) {
                    Ok(v) => sink(v),
                    Err(record) => Err(Stop::Fail(Error::invalid(format!(
                        "pluck: the record has no {k}: {}",
                        preview(&record)
                    )))),
                })
            });
        self.then("pluck", &[], |t| pluck_token(t, &key, None), stage, None)
    }

    /// Like [`Bag::pluck`], with `default` for records without the key.
    pub fn pluck_or(&self, key: impl Into<JsonKey>, default: serde_json::Value) -> Bag<serde_json::Value> {
        let key = key.into();
        let prev = self.source.stage.clone();
        let (k, d) = (key.clone(), default.clone());
        let stage: Stage<serde_json::Value> =
            Arc::new(move |args: &[Value], sink: &mut Sink<'_, serde_json::Value>| {
                prev(args, &mut |x| sink(pluck_value(x, &k).unwrap_or_else(|_| d.clone())))
            });
        self.then("pluck", &[], |t| pluck_token(t, &key, Some(&default)), stage, None)
    }
}

fn pluck_token(tok: &mut Tokenizer, key: &JsonKey, default: Option<&serde_json::Value>) {
    match key {
        JsonKey::Field(s) => tok.str("field").str(s),
        JsonKey::Index(i) => tok.str("index").u64(*i as u64),
    };
    if let Some(d) = default {
        tok.str(&d.to_string());
    }
}

/// Sizes of `n` nearly equal parts of `len` items (the first ones one larger).
fn even_sizes(len: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| len / n + usize::from(i < len % n))
}

/// A bag of the records of `items`, in `npartitions` nearly equal partitions
/// (0 is taken as 1; never more partitions than records, but at least one).
pub fn from_sequence<T: Element>(items: impl IntoIterator<Item = T>, npartitions: usize) -> Bag<T> {
    let items: Vec<T> = items.into_iter().collect();
    let n = npartitions.clamp(1, items.len().max(1));
    let mut rest = items.into_iter();
    let parts: Vec<Vec<T>> = even_sizes(rest.len(), n)
        .map(|k| rest.by_ref().take(k).collect())
        .collect();
    from_partitions(parts)
}

/// A bag with exactly these partitions (an empty list gives one empty
/// partition).
pub fn from_partitions<T: Element>(partitions: Vec<Vec<T>>) -> Bag<T> {
    let partitions = if partitions.is_empty() {
        vec![Vec::new()]
    } else {
        partitions
    };
    let mut tok = Tokenizer::new();
    tok.str("from-sequence");
    let inputs: Arc<[Vec<Input>]> = partitions
        .into_iter()
        .map(|p| {
            let value: Value = Arc::new(Partition::new(p));
            value.tokenize(&mut tok);
            vec![Input::Literal(value)]
        })
        .collect();
    Bag::from_source(
        Source::pending(
            tok.finish(),
            "from-sequence",
            Arc::from("from-sequence"),
            Arc::from(Vec::new()),
            inputs,
            passthrough::<T>(),
            Arc::from(Vec::new()),
        )
        .with_recipe(Some(Recipe::source::<T>(SourceSpec::Values))),
    )
}

/// The stage of [`range`]: the integers from input 0 up to input 1.
pub(crate) fn range_stage() -> Stage<u64> {
    Arc::new(|args: &[Value], sink: &mut Sink<'_, u64>| {
        for x in u64_arg(args, 0)?..u64_arg(args, 1)? {
            sink(x)?;
        }
        Ok(())
    })
}

/// The integers `0..n` in `npartitions` nearly equal partitions (Dask's
/// `bag.range`). Each task generates its own range: nothing is stored in
/// the graph.
pub fn range(n: u64, npartitions: usize) -> Bag<u64> {
    let parts = (npartitions as u64).clamp(1, n.max(1));
    let inputs: Arc<[Vec<Input>]> = (0..parts)
        .map(|i| {
            let (start, end) = (i * n / parts, (i + 1) * n / parts);
            vec![Input::Literal(Arc::new(start)), Input::Literal(Arc::new(end))]
        })
        .collect();
    let stage = range_stage();
    let token = Tokenizer::new().str("range").u64(n).u64(parts).finish();
    Bag::from_source(
        Source::pending(
            token,
            "range",
            Arc::from("range"),
            Arc::from(Vec::new()),
            inputs,
            stage,
            Arc::from(Vec::new()),
        )
        .with_recipe(Some(Recipe::source::<u64>(SourceSpec::Range))),
    )
}

/// A bag whose partitions are computed by delayed values (Dask's
/// `from_delayed`), in order. An empty list gives one empty partition.
pub fn from_delayed<T: Element>(parts: &[Delayed<Partition<T>>]) -> Bag<T> {
    if parts.is_empty() {
        return from_partitions(Vec::new());
    }
    let mut deps: Vec<Arc<Layer>> = Vec::new();
    let mut tok = Tokenizer::new();
    tok.str("from-delayed");
    let inputs: Arc<[Vec<Input>]> = parts
        .iter()
        .map(|d| {
            if !deps.iter().any(|l| Arc::ptr_eq(l, d.layer())) {
                deps.push(d.layer().clone());
            }
            tok.key(d.key());
            vec![Input::Key(d.key().clone())]
        })
        .collect();
    Bag::from_source(
        Source::pending(
            tok.finish(),
            "from-delayed",
            Arc::from("from-delayed"),
            deps.into(),
            inputs,
            passthrough::<T>(),
            Arc::from(Vec::new()),
        )
        .with_recipe(Some(Recipe::source::<T>(SourceSpec::Values))),
    )
}

/// The partitions of several bags one after the other (Dask's `bag.concat`).
/// An empty list gives one empty partition.
pub fn concat<T: Element>(bags: &[Bag<T>]) -> Bag<T> {
    let Some(first) = bags.first() else {
        return from_partitions(Vec::new());
    };
    let mut tok = Tokenizer::new();
    tok.str("concat");
    let mut deps = Vec::with_capacity(bags.len());
    let mut inputs = Vec::new();
    for b in bags {
        tok.u64(b.source.token);
        deps.push(b.source.layer());
        inputs.extend(b.source.keys().into_iter().map(|k| vec![Input::Key(k)]));
    }
    Bag {
        source: Arc::new(
            Source::pending(
                tok.finish(),
                "concat",
                Arc::from("concat"),
                deps.into(),
                inputs.into(),
                passthrough::<T>(),
                Arc::from(Vec::new()),
            )
            .with_recipe(Some(Recipe::source::<T>(SourceSpec::Values))),
        ),
        split_every: first.split_every,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_sizes_cover_the_input() {
        let sizes: Vec<usize> = even_sizes(10, 4).collect();
        assert_eq!(sizes, vec![3, 3, 2, 2]);
        assert_eq!(even_sizes(0, 1).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn names_are_deterministic_and_capturing_closures_unique() {
        fn double(x: u64) -> u64 {
            x * 2
        }
        let a = range(10, 2).map(double);
        let b = range(10, 2).map(double);
        assert_eq!(a.name(), b.name());
        assert_ne!(range(10, 2).name(), range(11, 2).name());
        let k = 3u64;
        let c = range(10, 2).map(move |x| x + k);
        let d = range(10, 2).map(move |x| x + k);
        assert_ne!(c.name(), d.name());
        assert_eq!(a.name().prefix(), "map");
    }

    #[test]
    fn chained_element_ops_stay_one_layer() {
        let b = range(100, 4)
            .map(|x| x + 1)
            .filter(|x| x % 2 == 0)
            .flat_map(|x| vec![x, x]);
        let g = b.graph();
        assert_eq!(g.layers().len(), 1);
        assert_eq!(g.len(), 4);
    }
}
