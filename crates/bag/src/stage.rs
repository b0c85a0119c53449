//! Stages: how a partition's records are produced, and how element-wise
//! operations compose before anything becomes a task.
//!
//! # Why stages
//!
//! Dask runs `read → filter → map → frequencies` as one task per partition
//! after its optimizer fuses the chain, but every step still builds a whole
//! intermediate list. Here a partition is produced by a *stage*: a function
//! that pushes the partition's records, one at a time, into a sink. `map`,
//! `filter`, `flat_map` and friends wrap the previous stage's sink, so a chain
//! of element-wise operations composes into one function at graph-building
//! time. A record read from a file flows through the whole chain before the
//! next one is read: no intermediate `Vec`, no clone of a record that a later
//! step consumes, and a reduction (`count`, `frequencies`, `foldby`…) consumes
//! the records as they come. That is what makes a JSON pipeline run at the
//! speed of the parser.
//!
//! A stage becomes a graph layer (one task per partition, each producing a
//! [`crate::Partition`]) only when something needs the partitions as values:
//! `compute`, `persist`, `to_delayed`, `zip`, `repartition`, a shuffle. A
//! reduction turns the stage straight into its per-partition tasks.
//!
//! The price: a bag whose records are consumed by two different outputs in
//! one computation (`compute_all(&[b.count(), b.sum()])`) runs its stage once
//! per output, where Dask would share the intermediate list. `persist` the bag
//! first to share the work, as one does in Dask when reusing a bag.
//!
//! # Early stop and failure
//!
//! A sink answers each record with a `Flow`: go on, stop because it has
//! enough (`Stop::Enough`, used by `take` and by `any`/`all`), or fail
//! (`Stop::Fail`, a record that cannot be parsed, a missing JSON field). A
//! stage stops at the first `Err` and hands it back.
//!
//! # Sending to another process
//!
//! A stage keeps, beside its closure, a `Recipe` describing it (source and
//! steps by registered names) while every step has one; a `BagOp` built
//! from it carries a `Portable` description that `encode_params` writes
//! and a worker decodes (the crate's `portable` module). Without one,
//! `encode_params` refuses, naming the first unregistered user function in
//! the chain (the fix is `#[blockwise::task]`), or the step that has no
//! portable form.

use std::sync::{Arc, OnceLock};

use blockwise_core::op::{Op, not_registered, registered_name_of};
use blockwise_core::value::short_type_name;
use blockwise_core::{Error, ErrorKind, Input, Key, Layer, LayerBody, Name, Result, Task, Tokenizer, Value};

use crate::partition::{Element, Partition, partition_of};
use crate::portable::{Portable, Recipe, SourceSpec};

pub(crate) use blockwise_core::records::{Flow, Sink, Stop};

/// Produces partition records from a task's inputs into a sink (a core
/// [`blockwise_core::records::Stream`], so that the adapters registered by
/// `#[blockwise::task]` can extend it in another process).
pub(crate) type Stage<T> = blockwise_core::records::Stream<T>;

/// Runs a stage to its end (or to an early stop), as a plain result.
pub(crate) fn drive<T>(stage: &Stage<T>, args: &[Value], sink: &mut Sink<'_, T>) -> Result<()> {
    match stage(args, sink) {
        Ok(()) | Err(Stop::Enough) => Ok(()),
        Err(Stop::Fail(e)) => Err(e),
    }
}

/// Runs a stage and collects its records.
pub(crate) fn collect<T>(stage: &Stage<T>, args: &[Value]) -> Result<Vec<T>> {
    let mut out = Vec::new();
    drive(stage, args, &mut |x| {
        out.push(x);
        Ok(())
    })?;
    Ok(out)
}

/// The stage of a bag whose partitions are already values: every input is a
/// partition, whose records are pushed in order (cloned, since the value is
/// shared with the engine and possibly other readers).
pub(crate) fn passthrough<T: Element>() -> Stage<T> {
    Arc::new(|args: &[Value], sink: &mut Sink<'_, T>| {
        for arg in args {
            let part = partition_of::<T>(arg)?;
            for x in part.iter() {
                sink(x.clone())?;
            }
        }
        Ok(())
    })
}

/// A user function in a chain: its name, and whether `#[blockwise::task]`
/// registered it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FnName {
    name: &'static str,
    registered: bool,
}

impl FnName {
    /// The name of the function or closure type `F`.
    pub(crate) fn of<F: 'static>() -> FnName {
        match registered_name_of::<F>() {
            Some(name) => FnName { name, registered: true },
            None => FnName {
                name: std::any::type_name::<F>(),
                registered: false,
            },
        }
    }
}

/// Feeds a user function's identity to a tokenizer, with the rule of
/// `FnOp::tokenize`: a function item or a closure without captures is
/// identified by its type; a capturing closure may hold different state in
/// two calls with the same type, so it gets a unique token.
pub(crate) fn feed_fn<F: 'static>(tokenizer: &mut Tokenizer) {
    tokenizer.str(std::any::type_name::<F>());
    if std::mem::size_of::<F>() != 0 {
        tokenizer.unique();
    }
}

pub(crate) type RunFn = dyn Fn(&[Value]) -> Result<Value> + Send + Sync;

/// The op of every bag task: a closure over the task's inputs, with its
/// portable description when it has one (see [`crate::portable`]), and what
/// is needed to explain why it cannot leave this process when it has none.
pub(crate) struct BagOp {
    name: &'static str,
    label: String,
    fns: Arc<[FnName]>,
    element: &'static str,
    portable: Option<Portable>,
    /// The chain this op reads from, when that chain is what keeps it in
    /// this process (a combine level after a part that cannot travel).
    upstream: Option<Arc<str>>,
    run: Box<RunFn>,
}

impl BagOp {
    /// An op named `name` (`blockwise.bag.*`), labelled `label` in pictures
    /// and progress bars, running `run`; `fns` are the user functions it
    /// calls, `element` the record type it works on. It cannot leave this
    /// process.
    pub(crate) fn build(
        name: &'static str,
        label: impl Into<String>,
        fns: Arc<[FnName]>,
        element: &'static str,
        run: impl Fn(&[Value]) -> Result<Value> + Send + Sync + 'static,
    ) -> Arc<dyn Op> {
        BagOp::build_portable(name, label, fns, element, None, run)
    }

    /// [`BagOp::build`] for an op that another process can rebuild from
    /// `portable`, when given.
    pub(crate) fn build_portable(
        name: &'static str,
        label: impl Into<String>,
        fns: Arc<[FnName]>,
        element: &'static str,
        portable: Option<Portable>,
        run: impl Fn(&[Value]) -> Result<Value> + Send + Sync + 'static,
    ) -> Arc<dyn Op> {
        Arc::new(BagOp {
            name,
            label: label.into(),
            fns,
            element,
            portable,
            upstream: None,
            run: Box::new(run),
        })
    }

    /// An op that could travel by itself but reads from `upstream`, a
    /// chain that cannot (calling `fns`): it stays in this process, and
    /// encoding it explains why by naming that chain.
    pub(crate) fn build_after(
        name: &'static str,
        label: impl Into<String>,
        fns: Arc<[FnName]>,
        element: &'static str,
        upstream: Arc<str>,
        run: impl Fn(&[Value]) -> Result<Value> + Send + Sync + 'static,
    ) -> Arc<dyn Op> {
        Arc::new(BagOp {
            name,
            label: label.into(),
            fns,
            element,
            portable: None,
            upstream: Some(upstream),
            run: Box::new(run),
        })
    }

    fn not_portable(&self) -> Error {
        let label = match &self.upstream {
            Some(upstream) => format!("{upstream}, read by {}", self.label),
            None => self.label.clone(),
        };
        match self.fns.iter().find(|f| !f.registered) {
            Some(f) => not_registered(f.name).context(format!(
                "in the bag step `{label}` over records of type {}",
                short_type_name(self.element)
            )),
            None => Error::new(
                ErrorKind::NotRegistered,
                format!(
                    "the bag op `{label}` ({}) over records of type {} runs on the local schedulers only: it has no \
                     portable description, so another process could not rebuild it. What can be sent: sources \
                     read_text, read_json_lines (without skipping bad lines), from_sequence, from_partitions, \
                     range; steps map, flat_map, filter_map, filter and remove with functions marked \
                     #[blockwise::task]; reductions \
                     count, frequencies, distinct, and topk or bottomk with a #[blockwise::task] key",
                    self.name,
                    short_type_name(self.element)
                ),
            ),
        }
    }
}

impl Op for BagOp {
    fn name(&self) -> &str {
        self.name
    }

    fn call(&self, args: &[Value]) -> Result<Value> {
        (self.run)(args)
    }

    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        match &self.portable {
            Some(portable) => portable
                .encode(out)
                .map_err(|e| e.context(format!("in the bag step `{}`", self.label))),
            None => Err(self.not_portable()),
        }
    }

    fn tokenize(&self, tokenizer: &mut Tokenizer) {
        // Bag layers are named from their source's token, never from their
        // ops; an op that holds closures is unique.
        tokenizer.str(self.name).str(&self.label).unique();
    }

    fn label(&self) -> String {
        self.label.clone()
    }
}

/// Where a bag's partitions come from: for each partition, the inputs of its
/// task and the stage that turns them into records.
pub(crate) struct Source<T> {
    /// The bag's identity, from everything that went into it.
    pub(crate) token: u64,
    /// The name of the layer the partitions are (or would be) computed in.
    pub(crate) name: Name,
    /// Operations of the pending chain, for labels (`read-text+filter+map`).
    pub(crate) label: Arc<str>,
    /// The layers the inputs read from.
    pub(crate) deps: Arc<[Arc<Layer>]>,
    /// Inputs of partition `i`'s task.
    pub(crate) inputs: Arc<[Vec<Input>]>,
    /// Produces a partition's records from its inputs.
    pub(crate) stage: Stage<T>,
    /// User functions called by the stage.
    pub(crate) fns: Arc<[FnName]>,
    /// What another process needs to rebuild the stage, when every step has
    /// a portable description.
    pub(crate) recipe: Option<Arc<Recipe>>,
    /// The layer computing the partitions, built on first need (or given,
    /// for a bag made from existing values).
    pub(crate) layer: OnceLock<Arc<Layer>>,
}

impl<T: Element> Source<T> {
    /// A pending source: nothing is built until a layer is needed.
    pub(crate) fn pending(
        token: u64,
        prefix: &str,
        label: Arc<str>,
        deps: Arc<[Arc<Layer>]>,
        inputs: Arc<[Vec<Input>]>,
        stage: Stage<T>,
        fns: Arc<[FnName]>,
    ) -> Self {
        Source {
            token,
            name: Name::new(&format!("{prefix}-{token:016x}")),
            label,
            deps,
            inputs,
            stage,
            fns,
            recipe: None,
            layer: OnceLock::new(),
        }
    }

    /// The same source, rebuildable in another process from `recipe`.
    pub(crate) fn with_recipe(mut self, recipe: Option<Recipe>) -> Self {
        self.recipe = recipe.map(Arc::new);
        self
    }

    /// The source of a bag whose partitions are the `npartitions` values of
    /// `layer` (indices `[0]`, `[1]`, …).
    pub(crate) fn of_layer(layer: Arc<Layer>, npartitions: usize, token: u64) -> Self {
        let name = layer.name().clone();
        let inputs: Arc<[Vec<Input>]> = (0..npartitions)
            .map(|i| vec![Input::Key(Key::new(name.clone(), &[i as u32]))])
            .collect();
        let cell = OnceLock::new();
        let _ = cell.set(layer.clone());
        Source {
            token,
            name,
            label: Arc::from(""),
            deps: Arc::from(vec![layer]),
            inputs,
            stage: passthrough::<T>(),
            fns: Arc::from(Vec::new()),
            recipe: Some(Arc::new(Recipe::source::<T>(SourceSpec::Values))),
            layer: cell,
        }
    }

    /// The layer computing the partitions: one task per partition, each
    /// running the stage and collecting its records.
    pub(crate) fn layer(&self) -> Arc<Layer> {
        self.layer
            .get_or_init(|| {
                let stage = self.stage.clone();
                let op = BagOp::build_portable(
                    "blockwise.bag.partition",
                    self.label.to_string(),
                    self.fns.clone(),
                    std::any::type_name::<T>(),
                    self.recipe
                        .as_ref()
                        .map(|r| Portable::Partition { recipe: (**r).clone() }),
                    move |args| Ok(Arc::new(Partition::new(collect(&stage, args)?)) as Value),
                );
                let tasks = self
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(i, inputs)| {
                        (
                            Key::new(self.name.clone(), &[i as u32]),
                            Task::new(op.clone(), inputs.clone()),
                        )
                    })
                    .collect();
                Layer::new(self.name.clone(), self.deps.to_vec(), LayerBody::Tasks(tasks))
            })
            .clone()
    }

    /// Keys of the partitions, in order.
    pub(crate) fn keys(&self) -> Vec<Key> {
        (0..self.inputs.len())
            .map(|i| Key::new(self.name.clone(), &[i as u32]))
            .collect()
    }
}

/// A chain label with one more step.
pub(crate) fn extend_label(label: &str, step: &str) -> Arc<str> {
    if label.is_empty() {
        Arc::from(step)
    } else {
        Arc::from(format!("{label}+{step}"))
    }
}

/// A function list with more functions.
pub(crate) fn extend_fns(fns: &[FnName], more: &[FnName]) -> Arc<[FnName]> {
    fns.iter().chain(more).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closures_are_named_and_refused_with_the_fix() {
        let k = 3;
        let f = move |x: i64| x + k;
        let _ = f(1);
        fn name_of<F: 'static>(_: &F) -> FnName {
            FnName::of::<F>()
        }
        let op = BagOp::build(
            "blockwise.bag.partition",
            "map",
            Arc::from(vec![name_of(&f)]),
            "i64",
            |_| Ok(Arc::new(1i64) as Value),
        );
        let err = op.encode_params(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::NotRegistered);
        assert!(err.to_string().contains("#[blockwise::task]"), "{err}");
        assert!(err.to_string().contains("closure"), "{err}");
    }

    #[test]
    fn ops_without_user_functions_explain_the_limit() {
        let op = BagOp::build(
            "blockwise.bag.chunk",
            "count",
            Arc::from(Vec::new()),
            "alloc::string::String",
            |_| Ok(Arc::new(1i64) as Value),
        );
        let err = op.encode_params(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::NotRegistered);
        assert!(err.to_string().contains("local schedulers"), "{err}");
    }
}
