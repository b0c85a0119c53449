//! Portable descriptions: how a bag's tasks are rebuilt in another process.
//!
//! # The problem
//!
//! A bag's tasks run closures built by generic code (`Bag<Account>::filter`,
//! `frequencies::<String>`). A worker rebuilds an op from a name and bytes,
//! and generic code cannot register itself at link time: the worker needs
//! code compiled for the concrete record types and functions, registered by
//! something that names them.
//!
//! # The parts
//!
//! - **Record functions** are registered by `#[blockwise::task]`. A filter
//!   `fn(&T) -> bool` is found as a plain function pointer by its name
//!   (`registered_fn`); a map `fn(A) -> R` (also for `flat_map` and
//!   `filter_map` when `R` is iterable) and a key `fn(&A) -> K` also get
//!   typed adapters from the attribute (see `blockwise_core::records`),
//!   since only the function knows both of its types.
//! - **Record types** are registered with [`register_element!`](crate::register_element):
//!   it instantiates, for one type `T`, the sources (values, text, JSON
//!   lines), the filters, the partition collector and the reductions that
//!   need only `T` (`count`, `topk`/`bottomk` by a registered key, and
//!   `frequencies` and `distinct` when `T: Eq + Hash`). Common types
//!   (`String`, integers, `f64`, `bool`, `serde_json::Value` and `(x, usize)`
//!   pairs of them, what `frequencies` yields) are registered here.
//! - **Descriptions** sit next to the closures: every pending stage keeps a
//!   [`Recipe`] (its source and element-wise steps, each by registered name
//!   and record type name) as long as every step has one, and every task of
//!   the reductions listed above a [`ReduceSpec`]. A [`BagOp`] with a
//!   description encodes it as its parameters; the worker decodes it and
//!   rebuilds the same closures from the registrations.
//!
//! A step without a description (a closure, `flat_map`, `zip`…) leaves the
//! stage without a recipe: the local executors run it as before, and
//! encoding it is an error naming the first unregistered closure and
//! `#[blockwise::task]`, or the step that cannot travel. An unregistered
//! record type is an error at encoding, on the client, naming
//! `register_element!`.

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use blockwise_core::op::{Op, registered_fn};
use blockwise_core::records::{ErasedStream, downcast_stream, flat_map_by_name, map_by_name, order_by_name};
use blockwise_core::value::{postcard_decode, postcard_encode, short_type_name};
use blockwise_core::{Error, ErrorKind, Result, Value};
use serde::{Deserialize, Serialize};

use crate::partition::{Element, Partition};
use crate::reduce::{Reduction, count_reduction, distinct_reduction, frequencies_reduction, level_run, top_reduction};
use crate::stage::{BagOp, RunFn, Sink, Stage, collect, passthrough};

/// Where a portable stage's records come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum SourceSpec {
    /// Every input is a partition value (a literal or another task's output).
    Values,
    /// Inputs `start`, `end`: the integers between (records `u64`).
    Range,
    /// Input: a text block; one `String` per line.
    Text,
    /// Input: a text block; one record parsed from each JSON line.
    JsonLines,
}

/// One element-wise step of a portable stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum StepSpec {
    /// `map` through the registered function `func`, giving records of type
    /// `output` (a `std::any::type_name`).
    Map { func: String, output: String },
    /// `flat_map` (or `filter_map`) through the registered function `func`,
    /// whose results hold records of type `output`.
    FlatMap { func: String, output: String },
    /// `filter` (`keep`: true) or `remove` (false) by the registered
    /// predicate `func`.
    Filter { func: String, keep: bool },
}

/// A stage as data: its source and steps, with the record type at each
/// point.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Recipe {
    source: SourceSpec,
    element: String,
    steps: Vec<StepSpec>,
}

impl Recipe {
    /// A stage reading `spec` into records of type `T`.
    pub(crate) fn source<T: 'static>(spec: SourceSpec) -> Recipe {
        Recipe {
            source: spec,
            element: std::any::type_name::<T>().to_string(),
            steps: Vec::new(),
        }
    }

    /// This stage with one more step.
    pub(crate) fn then(&self, step: StepSpec) -> Recipe {
        let mut next = self.clone();
        next.steps.push(step);
        next
    }

    /// Type names of the records at every point, source first.
    fn elements(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.element.as_str()).chain(self.steps.iter().filter_map(|s| match s {
            StepSpec::Map { output, .. } | StepSpec::FlatMap { output, .. } => Some(output.as_str()),
            StepSpec::Filter { .. } => None,
        }))
    }

    /// Type name of the records the stage yields.
    fn output(&self) -> &str {
        self.elements().last().unwrap_or(&self.element)
    }

    /// Fails, naming the fix, when a record type is not registered.
    fn check(&self) -> Result<()> {
        self.elements().try_for_each(|e| element_ops(e).map(|_| ()))
    }

    /// The stage, rebuilt from the registrations of this executable.
    fn build(&self) -> Result<ErasedStream> {
        let mut stream = element_ops(&self.element)?.source(&self.source)?;
        let mut current = self.element.as_str();
        for step in &self.steps {
            match step {
                StepSpec::Map { func, output } => {
                    stream = map_by_name(func, stream)?;
                    current = output;
                }
                StepSpec::FlatMap { func, output } => {
                    stream = flat_map_by_name(func, stream)?;
                    current = output;
                }
                StepSpec::Filter { func, keep } => stream = element_ops(current)?.filter(stream, func, *keep)?,
            }
        }
        Ok(stream)
    }
}

/// A reduction as data (see [`crate::reduce`] for what each computes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum ReduceSpec {
    Count,
    Frequencies,
    Distinct,
    /// `topk` (`largest`) or `bottomk` by the registered key function `key`.
    Top {
        k: u64,
        key: String,
        largest: bool,
    },
}

/// The level of a tree reduction a task belongs to.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) enum Level {
    /// Reads a partition's stage.
    Part,
    /// Merges partial results.
    Combine,
    /// Merges the last partial results and finishes.
    Aggregate,
}

/// What another process needs to rebuild a [`BagOp`]: the op's parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Portable {
    /// Runs a stage and collects a partition.
    Partition { recipe: Recipe },
    /// One level of a tree reduction over records of type `element`; the
    /// part level reads the stage of `recipe`.
    Reduce {
        recipe: Option<Recipe>,
        element: String,
        spec: ReduceSpec,
        level: Level,
    },
}

impl Portable {
    /// Appends the encoded description, after checking that every record
    /// type in it is registered.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Portable::Partition { recipe } => recipe.check()?,
            Portable::Reduce { recipe, element, .. } => {
                if let Some(recipe) = recipe {
                    recipe.check()?;
                }
                element_ops(element)?;
            }
        }
        postcard_encode(self, out)
    }

    fn decode(name: &'static str, params: &[u8]) -> Result<Arc<dyn Op>> {
        let portable: Portable = postcard_decode(params)?;
        let (element, run) = match &portable {
            Portable::Partition { recipe } => {
                let ops = element_ops(recipe.output())?;
                (ops.type_name(), ops.partition(recipe.build()?)?)
            }
            Portable::Reduce {
                recipe,
                element,
                spec,
                level,
            } => {
                let ops = element_ops(element)?;
                let stream = recipe.as_ref().map(Recipe::build).transpose()?;
                (ops.type_name(), ops.reduce(stream, spec, *level)?)
            }
        };
        let label = name.strip_prefix("blockwise.bag.").unwrap_or(name).to_string();
        Ok(BagOp::build_portable(
            name,
            label,
            Arc::from(Vec::new()),
            element,
            Some(portable),
            run,
        ))
    }
}

blockwise_core::register_op!("blockwise.bag.partition", |p| Portable::decode(
    "blockwise.bag.partition",
    p
));
blockwise_core::register_op!("blockwise.bag.reduce-part", |p| Portable::decode(
    "blockwise.bag.reduce-part",
    p
));
blockwise_core::register_op!("blockwise.bag.reduce-combine", |p| Portable::decode(
    "blockwise.bag.reduce-combine",
    p
));
blockwise_core::register_op!("blockwise.bag.reduce-aggregate", |p| Portable::decode(
    "blockwise.bag.reduce-aggregate",
    p
));

/// What a registered record type can rebuild: code compiled for that type.
pub(crate) trait ElementOps: Send + Sync + 'static {
    /// `std::any::type_name` of the type.
    fn type_name(&self) -> &'static str;
    /// The stage of a source, yielding records of this type.
    fn source(&self, spec: &SourceSpec) -> Result<ErasedStream>;
    /// A stream of this type, filtered by the registered predicate `func`.
    fn filter(&self, stream: ErasedStream, func: &str, keep: bool) -> Result<ErasedStream>;
    /// A task collecting a stream of this type into a partition.
    fn partition(&self, stream: ErasedStream) -> Result<Box<RunFn>>;
    /// A task of level `level` of the reduction `spec` over records of this type.
    fn reduce(&self, stream: Option<ErasedStream>, spec: &ReduceSpec, level: Level) -> Result<Box<RunFn>>;
}

fn source<T: Element>(spec: &SourceSpec) -> Result<ErasedStream> {
    let stage: ErasedStream = match spec {
        SourceSpec::Values => Box::new(passthrough::<T>()),
        SourceSpec::Range => Box::new(crate::bag::range_stage()),
        SourceSpec::Text => Box::new(crate::text::text_stage()),
        SourceSpec::JsonLines => Box::new(crate::text::json_stage::<T>()),
    };
    Ok(stage)
}

fn filter<T: Element>(stream: ErasedStream, func: &str, keep: bool) -> Result<ErasedStream> {
    let prev = downcast_stream::<T>(stream)?;
    let predicate = registered_fn::<fn(&T) -> bool>(func)?;
    let stage: Stage<T> = Arc::new(move |args: &[Value], sink: &mut Sink<'_, T>| {
        prev(args, &mut |x| if predicate(&x) == keep { sink(x) } else { Ok(()) })
    });
    Ok(Box::new(stage))
}

fn partition<T: Element>(stream: ErasedStream) -> Result<Box<RunFn>> {
    let stage = downcast_stream::<T>(stream)?;
    Ok(Box::new(move |args: &[Value]| {
        Ok(Arc::new(Partition::new(collect(&stage, args)?)) as Value)
    }))
}

/// The task of a reduction that needs only `T: Element`; `None` for one
/// that needs more of `T`.
fn reduce_plain<T: Element>(
    stream: Option<ErasedStream>,
    spec: &ReduceSpec,
    level: Level,
) -> Option<Result<Box<RunFn>>> {
    let stage = match stream.map(downcast_stream::<T>).transpose() {
        Ok(stage) => stage,
        Err(e) => return Some(Err(e)),
    };
    match spec {
        ReduceSpec::Count => Some(level_run(count_reduction::<T>(), stage, level)),
        ReduceSpec::Top { k, key, largest } => Some(order_by_name::<T>(key).and_then(|order| {
            let largest = *largest;
            let r: Reduction<T, Vec<T>> = top_reduction(
                if largest { "topk" } else { "bottomk" },
                *k as usize,
                0,
                Vec::new(),
                Arc::new(move |a: &T, b: &T| if largest { order(b, a) } else { order(a, b) }),
            );
            level_run(r, stage, level)
        })),
        ReduceSpec::Frequencies | ReduceSpec::Distinct => None,
    }
}

fn needs_hash<T>(spec: &ReduceSpec) -> Error {
    Error::new(
        ErrorKind::TypeMismatch,
        format!(
            "the reduction {spec:?} needs records that are Eq + Hash, and {} is registered without",
            short_type_name(std::any::type_name::<T>())
        ),
    )
}

/// The operations of a record type with no more than `Element`.
struct Plain<T>(PhantomData<fn() -> T>);

/// The operations of a record type that is also `Eq + Hash`.
struct Hashed<T>(PhantomData<fn() -> T>);

impl<T: Element> ElementOps for Plain<T> {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn source(&self, spec: &SourceSpec) -> Result<ErasedStream> {
        source::<T>(spec)
    }
    fn filter(&self, stream: ErasedStream, func: &str, keep: bool) -> Result<ErasedStream> {
        filter::<T>(stream, func, keep)
    }
    fn partition(&self, stream: ErasedStream) -> Result<Box<RunFn>> {
        partition::<T>(stream)
    }
    fn reduce(&self, stream: Option<ErasedStream>, spec: &ReduceSpec, level: Level) -> Result<Box<RunFn>> {
        reduce_plain::<T>(stream, spec, level).unwrap_or_else(|| Err(needs_hash::<T>(spec)))
    }
}

impl<T: Element + Eq + Hash> ElementOps for Hashed<T> {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn source(&self, spec: &SourceSpec) -> Result<ErasedStream> {
        source::<T>(spec)
    }
    fn filter(&self, stream: ErasedStream, func: &str, keep: bool) -> Result<ErasedStream> {
        filter::<T>(stream, func, keep)
    }
    fn partition(&self, stream: ErasedStream) -> Result<Box<RunFn>> {
        partition::<T>(stream)
    }
    fn reduce(&self, stream: Option<ErasedStream>, spec: &ReduceSpec, level: Level) -> Result<Box<RunFn>> {
        match spec {
            ReduceSpec::Frequencies | ReduceSpec::Distinct => {
                let stage = stream.map(downcast_stream::<T>).transpose()?;
                if matches!(spec, ReduceSpec::Frequencies) {
                    level_run(frequencies_reduction::<T>(), stage, level)
                } else {
                    level_run(distinct_reduction::<T>(), stage, level)
                }
            }
            _ => reduce_plain::<T>(stream, spec, level).unwrap_or_else(|| Err(needs_hash::<T>(spec))),
        }
    }
}

/// A registered record type's operations (opaque; made by
/// [`register_element!`](crate::register_element)).
#[doc(hidden)]
pub struct ElementHandle(&'static dyn ElementOps);

/// Chooses the operations of `T` by what `T` implements (autoref
/// specialization: `(&probe).element_handle()` finds [`ViaHash`] on the probe
/// itself when `T: Eq + Hash`, and [`ViaPlain`] one reference further).
#[doc(hidden)]
pub struct ElementProbe<T>(PhantomData<fn() -> T>);

impl<T> ElementProbe<T> {
    /// A probe for `T`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        ElementProbe(PhantomData)
    }
}

/// The operations of a record type that is `Eq + Hash`.
#[doc(hidden)]
pub trait ViaHash {
    /// The operations, with `frequencies` and `distinct`.
    fn element_handle(&self) -> ElementHandle;
}

impl<T: Element + Eq + Hash> ViaHash for ElementProbe<T> {
    fn element_handle(&self) -> ElementHandle {
        ElementHandle(Box::leak(Box::new(Hashed::<T>(PhantomData))))
    }
}

/// The operations of any record type.
#[doc(hidden)]
pub trait ViaPlain {
    /// The operations, without those that need `Eq + Hash`.
    fn element_handle(&self) -> ElementHandle;
}

impl<T: Element> ViaPlain for &ElementProbe<T> {
    fn element_handle(&self) -> ElementHandle {
        ElementHandle(Box::leak(Box::new(Plain::<T>(PhantomData))))
    }
}

/// A record type registered with [`register_element!`](crate::register_element).
#[doc(hidden)]
pub struct ElementEntry {
    /// `std::any::type_name` of the type.
    pub type_name: fn() -> &'static str,
    /// Its operations.
    pub ops: fn() -> ElementHandle,
}
blockwise_core::__private::inventory::collect!(ElementEntry);

/// Registers record types, so that bag pipelines over them can run in other
/// processes (workers of a cluster): sources, `filter`/`remove` by a
/// `#[blockwise::task]` predicate, collecting partitions, and the reductions
/// `count`, `topk`/`bottomk` by a `#[blockwise::task]` key, plus
/// `frequencies` and `distinct` when the type is `Eq + Hash`.
///
/// Every record type a sent pipeline passes through must be registered,
/// once in the program (at module level, like a function definition).
/// `String`, the integers, `f64`, `bool`, `serde_json::Value` and the pairs
/// `(String, usize)`, `(u64, usize)`, `(i64, usize)` (what `frequencies`
/// yields) are registered by this crate.
///
/// ```
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Account {
///     name: String,
///     amount: i64,
/// }
///
/// blockwise_bag::register_element!(Account);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! register_element {
    ($($ty:ty),+ $(,)?) => {$(
        $crate::__private::inventory::submit! {
            $crate::__private::ElementEntry {
                type_name: || ::std::any::type_name::<$ty>(),
                ops: || {
                    #[allow(unused_imports)]
                    use $crate::__private::{ViaHash as _, ViaPlain as _};
                    (&$crate::__private::ElementProbe::<$ty>::new()).element_handle()
                },
            }
        }
    )+};
}

crate::register_element!(
    String,
    u64,
    i64,
    u32,
    i32,
    usize,
    f64,
    bool,
    serde_json::Value,
    (String, usize),
    (u64, usize),
    (i64, usize),
);

fn registry() -> &'static HashMap<&'static str, &'static dyn ElementOps> {
    static REGISTRY: OnceLock<HashMap<&'static str, &'static dyn ElementOps>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        blockwise_core::__private::inventory::iter::<ElementEntry>
            .into_iter()
            .map(|e| ((e.type_name)(), (e.ops)().0))
            .collect()
    })
}

/// The operations of the registered record type `name`, or an error naming
/// the fix.
fn element_ops(name: &str) -> Result<&'static dyn ElementOps> {
    registry().get(name).copied().ok_or_else(|| {
        let short = short_type_name(name);
        Error::new(
            ErrorKind::NotRegistered,
            format!(
                "records of type {short} cannot be sent to another process: register the type with \
                 `blockwise::bag::register_element!({short});` (once, at module level)"
            ),
        )
    })
}
