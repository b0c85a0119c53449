//! The contract between collections and schedulers.
//!
//! A collection ([`Collection`]) only describes a graph and the keys it
//! wants; an [`Executor`] only runs graphs. Diagnostics hook into any executor
//! through [`Callback`]s. Neither side knows the other's types.

use std::sync::Arc;

use crate::error::Result;
use crate::graph::{Graph, Input, Layer, LayerBody, Task};
use crate::key::{Key, Name};
use crate::op::identity;
use crate::plan::{Plan, PlanOptions};
use crate::value::Value;

/// Observes a computation. Every method has an empty default; a callback may
/// be called from several threads at once.
pub trait Callback: Send + Sync {
    /// The plan is about to run.
    fn start(&self, plan: &Plan) {
        let _ = plan;
    }
    /// Task `id` starts on worker thread `worker`.
    fn task_start(&self, plan: &Plan, id: u32, worker: usize) {
        let _ = (plan, id, worker);
    }
    /// Task `id` finished on `worker` with `value`.
    fn task_finish(&self, plan: &Plan, id: u32, worker: usize, value: &Value) {
        let _ = (plan, id, worker, value);
    }
    /// The computation ended: `failed` says whether with an error.
    fn finish(&self, plan: &Plan, failed: bool) {
        let _ = (plan, failed);
    }
}

/// How one computation runs.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Graph optimizations.
    pub plan: PlanOptions,
    /// Observers of this computation (besides any global ones).
    pub callbacks: Vec<Arc<dyn Callback>>,
}

/// Something that runs graphs: a local executor or a cluster client.
pub trait Executor: Send + Sync {
    /// A short name for messages and benchmarks (`threads`, `sync`, an address).
    fn name(&self) -> String;

    /// Computes the values of `outputs` from `graph`, in order.
    fn execute(&self, graph: &Graph, outputs: &[Key], options: &RunOptions) -> Result<Vec<Value>>;
}

/// A lazy collection: a graph, the keys it wants, and how to assemble the
/// result from their values.
pub trait Collection {
    /// What `compute` returns.
    type Output;

    /// The collection's graph (cheap: shares layers).
    fn graph(&self) -> Graph;

    /// The keys whose values make up the result, in order.
    fn output_keys(&self) -> Vec<Key>;

    /// Assembles the result from the values of [`Collection::output_keys`].
    fn finalize(&self, values: Vec<Value>) -> Result<Self::Output>;

    /// The same collection over another graph holding the same keys (used by
    /// `persist`, whose graph holds the computed values).
    fn with_graph(&self, graph: Graph) -> Self
    where
        Self: Sized;

    /// The graph to run for `outputs`: `graph` is the graph of one or more
    /// collections of this type (merged when several are computed
    /// together), rewritten here by the collection type's own
    /// optimizations, as Dask's `__dask_optimize__`. Schedulers call it on
    /// the whole merged graph, so a rewrite sees every reader of every
    /// layer. The default runs the graph as it is.
    fn optimize(graph: Graph, outputs: &[Key]) -> Graph
    where
        Self: Sized,
    {
        let _ = outputs;
        graph
    }
}

/// A graph holding computed values under their keys: what `persist` returns.
/// Later computations read these values instead of recomputing them.
pub fn graph_of_values(keys: &[Key], values: Vec<Value>) -> Graph {
    let mut by_name: Vec<(Name, Vec<(Key, Task)>)> = Vec::new();
    for (key, value) in keys.iter().zip(values) {
        let task = Task::new(identity(), vec![Input::Literal(value)]);
        match by_name.iter_mut().find(|(n, _)| *n == key.name) {
            Some((_, tasks)) => tasks.push((key.clone(), task)),
            None => by_name.push((key.name.clone(), vec![(key.clone(), task)])),
        }
    }
    let mut graph = Graph::new();
    for (name, tasks) in by_name {
        graph.add_layer(Layer::new(name, vec![], LayerBody::Tasks(tasks)));
    }
    graph
}

/// Plans a graph with default options (convenience for executors and tests).
pub fn plan(graph: &Graph, outputs: &[Key], options: &RunOptions) -> Result<Plan> {
    Plan::build(graph, outputs, &options.plan)
}
