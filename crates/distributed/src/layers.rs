//! Scheduler-side layer expansion: a graph travels as its layers, and the
//! scheduler expands them to tasks.
//!
//! A generated layer ([`LayerBody::Blockwise`]: one op over an n-d grid)
//! of a million tasks travels as one [`WireLayer::Generated`]: its name, its
//! grid, how each task's inputs follow from its index, and one opaque
//! template (the op's registered name and parameters, the literal
//! arguments; [`crate::spec::encode_template`]). Explicit layers travel as
//! their tasks, each with its key, the keys it reads and its spec.
//!
//! The scheduler ([`LayeredGraph::expand`], run on the connection's task,
//! off the state machine) walks back from the outputs as
//! [`blockwise_core::Plan::build`] does — only tasks an output needs are
//! expanded — gives the tasks dense ids, orders them with
//! [`blockwise_core::order`], and hands the state machine an ordinary
//! [`Submission`]. It runs no user code and decodes no op: it reads only
//! names, grids, index maps and keys. Every task of a generated layer
//! shares the layer's template (one `Arc`); a worker resolves the template
//! at the task's key ([`crate::spec::decode_task`]).
//!
//! What it does not do: fuse linear chains (the client's plan does, for
//! graphs sent task by task). A graph with no generated layer is sent as
//! its plan; see [`has_generated_layers`].

use std::collections::HashMap;

use blockwise_core::csr::Csr;
use blockwise_core::key::Index;
use blockwise_core::{Error, Graph, IndexMap, Key, LayerBody, Name, Result};
use serde::{Deserialize, Serialize};

use crate::id::IdBuildHasher;
use crate::scheduler::{NewTask, Submission, TaskSpec};
use crate::spec::{encode_explicit, encode_template};

/// A graph as its layers, with the keys a client wants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayeredGraph {
    /// Every layer of the graph, dependencies first.
    pub layers: Vec<WireLayer>,
    /// The keys wanted, in order.
    pub outputs: Vec<Key>,
    /// User priority (see [`Submission::priority`]).
    pub priority: i32,
    /// Retries of every task (see [`NewTask::retries`]).
    pub retries: u32,
}

/// One layer as sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireLayer {
    /// A rule: one task per index of `grid`, keyed `(name, index)`.
    Generated {
        /// The layer's name.
        name: Name,
        /// Blocks along each axis.
        grid: Vec<u32>,
        /// The keys each task reads, one per block argument in argument
        /// order: a layer name, and how each entry of its index follows
        /// from the task's index.
        reads: Vec<(Name, Vec<IndexMap>)>,
        /// The spec every task of the layer shares (opaque here).
        template: TaskSpec,
    },
    /// Explicit tasks.
    Tasks(Vec<ExplicitTask>),
}

/// One task of an explicit layer as sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplicitTask {
    /// Its key.
    pub key: Key,
    /// The keys it reads, each once.
    pub reads: Vec<Key>,
    /// How to run it (opaque here).
    pub spec: TaskSpec,
}

/// Whether the graph has a generated layer: then it is sent as layers
/// (small however many tasks it generates); otherwise as its plan (culled
/// and fused by the client).
pub fn has_generated_layers(graph: &Graph) -> bool {
    graph
        .layers()
        .iter()
        .any(|l| matches!(l.body(), LayerBody::Blockwise(_)))
}

impl LayeredGraph {
    /// The layers of `graph` as sent (every op encoded; an op that cannot
    /// leave this process, such as a closure, is an error naming the fix).
    ///
    /// Only the layers the outputs read (directly or through others) are
    /// sent; what is needed within them is culled on the scheduler.
    pub fn from_graph(graph: &Graph, outputs: &[Key], priority: i32, retries: u32) -> Result<LayeredGraph> {
        let all = graph.layers();
        let mut needed: std::collections::HashSet<*const blockwise_core::Layer> = Default::default();
        let wanted: std::collections::HashSet<&Name, IdBuildHasher> = outputs.iter().map(|k| &k.name).collect();
        let mut stack: Vec<&std::sync::Arc<blockwise_core::Layer>> =
            all.iter().filter(|l| wanted.contains(l.name())).collect();
        while let Some(layer) = stack.pop() {
            if needed.insert(std::sync::Arc::as_ptr(layer)) {
                stack.extend(layer.deps());
            }
        }
        let layers = all
            .iter()
            .filter(|l| needed.contains(&std::sync::Arc::as_ptr(l)))
            .map(|layer| {
                Ok(match layer.body() {
                    LayerBody::Blockwise(rule) => WireLayer::Generated {
                        name: layer.name().clone(),
                        grid: rule.grid.clone(),
                        reads: rule
                            .args
                            .iter()
                            .filter_map(|a| match a {
                                blockwise_core::BlockArg::Block { name, map } => Some((name.clone(), map.clone())),
                                _ => None,
                            })
                            .collect(),
                        template: encode_template(layer.name(), rule)?,
                    },
                    LayerBody::Single(_) => {
                        let key = Key::single(layer.name().clone());
                        WireLayer::Tasks(vec![explicit(&key, &layer.task(&[])?)?])
                    }
                    LayerBody::Tasks(tasks) => WireLayer::Tasks(
                        tasks
                            .iter()
                            .map(|(key, task)| explicit(key, task))
                            .collect::<Result<Vec<_>>>()?,
                    ),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LayeredGraph {
            layers,
            outputs: outputs.to_vec(),
            priority,
            retries,
        })
    }

    /// Expands the tasks the outputs need into a submission: keys,
    /// dependencies, the graph's order and specs. Errors name the key: an
    /// output or input no layer has, an index outside its layer's grid.
    pub fn expand(&self) -> Result<Submission> {
        let mut tables = Tables::new(&self.layers)?;
        let mut tasks: Vec<Pending> = Vec::new();
        let mut outputs = Vec::with_capacity(self.outputs.len());
        for key in &self.outputs {
            let at = tables
                .find(key)
                .map_err(|why| Error::graph(format!("output key {key} was requested, but {why}")))?;
            outputs.push(tables.id(at, key, &mut tasks));
        }
        // Depth-first from the outputs, as the client's planner walks.
        let mut stack: Vec<u32> = (0..tasks.len() as u32).rev().collect();
        let mut dependencies: Vec<Vec<u32>> = vec![Vec::new(); tasks.len()];
        let mut found: Vec<u32> = Vec::new();
        // last_reader[d] == id + 1 once task `id` listed `d`: each input
        // once, in the order first read (the client's planner does the same,
        // so both give the same order to the same graph).
        let mut last_reader: Vec<u32> = Vec::new();
        while let Some(id) = stack.pop() {
            let (layer, position) = tasks[id as usize].at;
            let key = tasks[id as usize].key.clone();
            let first_new = tasks.len();
            let mut deps = Vec::new();
            match &self.layers[layer] {
                WireLayer::Generated { reads, .. } => {
                    for (name, map) in reads {
                        let mut index = Index::with_capacity(map.len());
                        for m in map {
                            index.push(match m {
                                IndexMap::Axis(a) => *key.index.get(*a as usize).ok_or_else(|| {
                                    Error::graph(format!(
                                        "task {key}: index map axis {a} is outside its {}-d index",
                                        key.index.len()
                                    ))
                                })?,
                                IndexMap::Fixed(i) => *i,
                            });
                        }
                        let read = Key {
                            name: name.clone(),
                            index,
                        };
                        deps.push(tables.read(&key, &read, &mut tasks)?);
                    }
                }
                WireLayer::Tasks(explicit) => {
                    for read in &explicit[position].reads {
                        deps.push(tables.read(&key, read, &mut tasks)?);
                    }
                }
            }
            last_reader.resize(tasks.len(), 0);
            deps.retain(|&d| std::mem::replace(&mut last_reader[d as usize], id + 1) != id + 1);
            dependencies.resize(tasks.len(), Vec::new());
            dependencies[id as usize] = deps;
            // First input first, as a depth-first walk would.
            found.clear();
            found.extend(first_new as u32..tasks.len() as u32);
            stack.extend(found.iter().rev());
        }
        let deps = Csr::from_rows(dependencies.iter().map(|d| d.iter().copied()));
        let dependents = deps.transpose();
        // A cycle is refused by the state machine, naming a key on it.
        let priorities = blockwise_core::order::order(&deps, &dependents);
        drop((deps, dependents));
        let tasks = tasks
            .into_iter()
            .zip(dependencies)
            .zip(priorities)
            .map(|((task, dependencies), order)| NewTask {
                spec: Some(match &self.layers[task.at.0] {
                    WireLayer::Generated { template, .. } => template.clone(),
                    WireLayer::Tasks(explicit) => explicit[task.at.1].spec.clone(),
                }),
                key: task.key,
                dependencies,
                order,
                retries: self.retries,
            })
            .collect();
        Ok(Submission {
            tasks,
            outputs,
            priority: self.priority,
        })
    }
}

/// One explicit task as sent: its key, the keys it reads (each once, in
/// the order first read) and its spec.
fn explicit(key: &Key, task: &blockwise_core::Task) -> Result<ExplicitTask> {
    // Sized for every input at once: a task reading a million keys would
    // otherwise rehash the set twenty times.
    let inputs = task.dependencies().count();
    let mut seen: std::collections::HashSet<&Key, IdBuildHasher> =
        std::collections::HashSet::with_capacity_and_hasher(inputs, Default::default());
    let mut reads: Vec<Key> = Vec::with_capacity(inputs);
    reads.extend(task.dependencies().filter(|k| seen.insert(k)).cloned());
    Ok(ExplicitTask {
        key: key.clone(),
        reads,
        spec: encode_explicit(key, task)?,
    })
}

/// A task found during expansion: its key and where it is (layer,
/// position in the layer).
struct Pending {
    key: Key,
    at: (usize, usize),
}

const UNSEEN: u32 = u32::MAX;

/// The layers by name, and a dense id slot per task of each.
struct Tables<'a> {
    layers: &'a [WireLayer],
    by_name: HashMap<&'a Name, usize, IdBuildHasher>,
    /// Position of each key of an explicit layer.
    positions: Vec<Option<HashMap<&'a Index, usize, IdBuildHasher>>>,
    base: Vec<usize>,
    ids: Vec<u32>,
}

impl<'a> Tables<'a> {
    fn new(layers: &'a [WireLayer]) -> Result<Self> {
        let mut by_name: HashMap<&Name, usize, IdBuildHasher> = HashMap::default();
        let mut positions = Vec::with_capacity(layers.len());
        let mut base = Vec::with_capacity(layers.len());
        let mut total = 0usize;
        for (l, layer) in layers.iter().enumerate() {
            base.push(total);
            match layer {
                WireLayer::Generated { name, grid, .. } => {
                    let len = grid.iter().try_fold(1usize, |n, &g| n.checked_mul(g as usize));
                    let len = len
                        .filter(|&n| total.checked_add(n).is_some_and(|t| t < UNSEEN as usize))
                        .ok_or_else(|| Error::graph(format!("layer {name} has too many tasks ({grid:?})")))?;
                    total += len;
                    by_name.entry(name).or_insert(l);
                    positions.push(None);
                }
                WireLayer::Tasks(tasks) => {
                    let mut at: HashMap<&Index, usize, IdBuildHasher> = HashMap::default();
                    for (i, t) in tasks.iter().enumerate() {
                        if at.insert(&t.key.index, i).is_some() {
                            return Err(Error::graph(format!("key {} is sent twice", t.key)));
                        }
                        by_name.entry(&t.key.name).or_insert(l);
                    }
                    total += tasks.len();
                    if total >= UNSEEN as usize {
                        return Err(Error::graph("the graph has too many tasks"));
                    }
                    positions.push(Some(at));
                }
            }
        }
        Ok(Tables {
            layers,
            by_name,
            positions,
            base,
            ids: vec![UNSEEN; total],
        })
    }

    /// The layer and position of `key`, or why there is none.
    fn find(&self, key: &Key) -> std::result::Result<(usize, usize), String> {
        let Some(&l) = self.by_name.get(&key.name) else {
            return Err(format!("no layer of the graph is named {}", key.name));
        };
        let position = match &self.layers[l] {
            WireLayer::Generated { grid, .. } => {
                if key.index.len() != grid.len() || key.index.iter().zip(grid).any(|(i, n)| i >= n) {
                    None
                } else {
                    Some(
                        key.index
                            .iter()
                            .zip(grid)
                            .fold(0usize, |flat, (&i, &n)| flat * n as usize + i as usize),
                    )
                }
            }
            WireLayer::Tasks(_) => self.positions[l].as_ref().and_then(|at| at.get(&key.index).copied()),
        };
        match position {
            Some(p) => Ok((l, p)),
            None => Err(format!("layer {} has no key {key}", key.name)),
        }
    }

    /// The id of the task at `at` (with key `key`), given on first sight.
    fn id(&mut self, at: (usize, usize), key: &Key, tasks: &mut Vec<Pending>) -> u32 {
        let slot = &mut self.ids[self.base[at.0] + at.1];
        if *slot == UNSEEN {
            *slot = tasks.len() as u32;
            tasks.push(Pending { key: key.clone(), at });
        }
        *slot
    }

    /// The id of `read`, an input of `task`.
    fn read(&mut self, task: &Key, read: &Key, tasks: &mut Vec<Pending>) -> Result<u32> {
        let at = self
            .find(read)
            .map_err(|why| Error::graph(format!("task {task} reads key {read}, but {why}")))?;
        Ok(self.id(at, read, tasks))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;

    use blockwise_core::op::identity;
    use blockwise_core::{BlockArg, Blockwise, Input, Layer, Plan, PlanOptions, Task, Value};

    use super::*;
    use crate::spec::{Argument, decode_task};

    fn rule(grid: Vec<u32>, args: Vec<BlockArg>) -> LayerBody {
        LayerBody::Blockwise(Box::new(Blockwise {
            op: identity(),
            grid,
            args,
        }))
    }

    /// A 4×3 generated layer; a 4-block layer reading two of its columns
    /// (an axis map and fixed entries); an explicit sum of those; and a
    /// layer nobody asks for.
    fn graph() -> (Graph, Vec<Key>) {
        let a = Layer::new(
            Name::new("a-1"),
            vec![],
            rule(
                vec![4, 3],
                vec![BlockArg::BlockIndex(1), BlockArg::Literal(Arc::new(7i64))],
            ),
        );
        let b = Layer::new(
            Name::new("b-2"),
            vec![a.clone()],
            rule(
                vec![4],
                vec![
                    BlockArg::Block {
                        name: a.name().clone(),
                        map: vec![IndexMap::Axis(0), IndexMap::Fixed(2)],
                    },
                    BlockArg::Block {
                        name: a.name().clone(),
                        map: vec![IndexMap::Axis(0), IndexMap::Fixed(0)],
                    },
                    BlockArg::BlockIndex(0),
                ],
            ),
        );
        let mut inputs: Vec<Input> = (0..4).map(|i| Input::Key(Key::new(b.name().clone(), &[i]))).collect();
        inputs.push(Input::Key(Key::new(b.name().clone(), &[0])));
        inputs.push(Input::Literal(Arc::new(String::from("label"))));
        let c_key = Key::single(Name::new("c-3"));
        let c = Layer::single(Name::new("c-3"), vec![b.clone()], Task::new(identity(), inputs));
        let unused = Layer::new(
            Name::new("d-4"),
            vec![a],
            rule(
                vec![4],
                vec![BlockArg::Block {
                    name: Name::new("a-1"),
                    map: vec![IndexMap::Axis(0), IndexMap::Fixed(1)],
                }],
            ),
        );
        let mut graph = Graph::from_layer(c);
        graph.add_layer(unused);
        (graph, vec![c_key])
    }

    #[test]
    fn expansion_on_the_scheduler_matches_the_clients_plan() {
        let (graph, outputs) = graph();
        assert!(has_generated_layers(&graph));
        let unfused = PlanOptions { fuse: false };
        let plan = Plan::build(&graph, &outputs, &unfused).unwrap();
        let layered = LayeredGraph::from_graph(&graph, &outputs, 3, 2).unwrap();
        // What travels goes through the wire format.
        let mut bytes = Vec::new();
        blockwise_core::value::postcard_encode(&layered, &mut bytes).unwrap();
        let layered: LayeredGraph = blockwise_core::value::postcard_decode(&bytes).unwrap();
        let submission = layered.expand().unwrap();
        // Culled alike (a-1 column 1 and d-4 are not needed), the same
        // edges, the same order. Ids are each side's own numbering: tasks
        // are compared by key.
        let keys: Vec<Key> = submission.tasks.iter().map(|t| t.key.clone()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        let mut planned: Vec<Key> = plan.keys().collect();
        planned.sort();
        assert_eq!(sorted, planned);
        assert_eq!(keys.len(), 4 + 4 + 4 + 1);
        let plan_keys: Vec<Key> = plan.keys().collect();
        let plan_id: HashMap<&Key, u32> = plan_keys.iter().enumerate().map(|(i, k)| (k, i as u32)).collect();
        for t in &submission.tasks {
            let p = plan_id[&t.key];
            let mut ours: Vec<&Key> = t.dependencies.iter().map(|&d| &keys[d as usize]).collect();
            let mut theirs: Vec<&Key> = plan
                .dependencies()
                .row(p)
                .iter()
                .map(|&d| &plan_keys[d as usize])
                .collect();
            ours.sort();
            theirs.sort();
            assert_eq!(ours, theirs, "inputs of {}", t.key);
            assert_eq!(t.order, plan.priorities()[p as usize], "order of {}", t.key);
            assert_eq!(t.retries, 2);
        }
        let outputs: Vec<&Key> = submission.outputs.iter().map(|&o| &keys[o as usize]).collect();
        let planned_outputs: Vec<&Key> = plan.outputs().iter().map(|&o| &plan_keys[o as usize]).collect();
        assert_eq!(outputs, planned_outputs);
        assert_eq!(submission.priority, 3);
        // Every task of a generated layer shares its layer's template.
        let b: Vec<&NewTask> = submission
            .tasks
            .iter()
            .filter(|t| t.key.name.as_str() == "b-2")
            .collect();
        assert!(b.windows(2).all(|w| w[0].spec == w[1].spec));
    }

    /// The arguments a worker rebuilds from a spec, as comparable text.
    fn arguments(key: &Key, spec: &TaskSpec) -> Vec<String> {
        decode_task(key, spec)
            .unwrap()
            .inputs
            .iter()
            .map(|a| match a {
                Argument::Key(k) => format!("key {k}"),
                Argument::Value(v) => value_text(v),
            })
            .collect()
    }

    fn value_text(v: &Value) -> String {
        if let Some(x) = v.downcast_ref::<u64>() {
            format!("u64 {x}")
        } else if let Some(x) = v.downcast_ref::<i64>() {
            format!("i64 {x}")
        } else if let Some(x) = v.downcast_ref::<String>() {
            format!("string {x}")
        } else {
            "other".into()
        }
    }

    #[test]
    fn a_worker_rebuilds_each_generated_task_as_the_client_would_have_built_it() {
        let (graph, outputs) = graph();
        let submission = LayeredGraph::from_graph(&graph, &outputs, 0, 0)
            .unwrap()
            .expand()
            .unwrap();
        let layers: BTreeMap<String, Arc<Layer>> = graph
            .layers()
            .into_iter()
            .map(|l| (l.name().as_str().to_string(), l))
            .collect();
        for t in &submission.tasks {
            let task = layers[t.key.name.as_str()].task(&t.key.index).unwrap();
            let expected: Vec<String> = task
                .inputs
                .iter()
                .map(|i| match i {
                    Input::Key(k) => format!("key {k}"),
                    Input::Literal(v) => value_text(v),
                })
                .collect();
            let spec = t.spec.as_ref().unwrap();
            assert_eq!(arguments(&t.key, spec), expected, "task {}", t.key);
            assert_eq!(decode_task(&t.key, spec).unwrap().op.name(), task.op.name());
        }
    }

    #[test]
    fn keys_no_layer_has_are_errors_naming_them() {
        let (graph, _) = graph();
        let missing = Key::single(Name::new("nowhere-9"));
        let err = LayeredGraph::from_graph(&graph, std::slice::from_ref(&missing), 0, 0)
            .unwrap()
            .expand()
            .unwrap_err();
        assert!(err.to_string().contains("nowhere-9"), "{err}");
        let outside = Key::new(Name::new("b-2"), &[4]);
        let err = LayeredGraph::from_graph(&graph, &[outside], 0, 0)
            .unwrap()
            .expand()
            .unwrap_err();
        assert!(err.to_string().contains("(\"b-2\", 4)"), "{err}");
        // An explicit task reading a key of no layer.
        let reader = Layer::single(
            Name::new("r-5"),
            vec![],
            Task::new(identity(), vec![Input::Key(missing.clone())]),
        );
        let err = LayeredGraph::from_graph(&Graph::from_layer(reader), &[Key::single(Name::new("r-5"))], 0, 0)
            .unwrap()
            .expand()
            .unwrap_err();
        assert!(
            err.to_string().contains("task \"r-5\" reads key \"nowhere-9\""),
            "{err}"
        );
    }
}
