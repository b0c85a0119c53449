//! Tasks, layers and graphs.
//!
//! A [`Graph`] is a set of output layers; every layer holds `Arc`s to the
//! layers it reads from, so a graph is a DAG of shared layers. Combining two
//! collections' graphs copies nothing: it holds both sets of `Arc`s. Building
//! a `delayed` call or an array operation is O(1) in the size of what came
//! before.
//!
//! A layer is either explicit ([`LayerBody::Single`]: one task, as a
//! `delayed` call; [`LayerBody::Tasks`]: a list of tasks) or a
//! rule ([`LayerBody::Blockwise`]) that generates the task for any index on
//! demand. Rules are how a million-chunk elementwise operation stays one small
//! object until a scheduler asks for the tasks it needs ([`crate::plan`] culls
//! while it expands, so tasks no output needs are never built).
//!
//! Deep chains of layers (a loop of ten thousand `delayed` calls) are dropped
//! iteratively, so dropping a graph never overflows the stack.

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::hash::FastHash;
use crate::key::{Index, Key, Name};
use crate::op::Op;
use crate::value::Value;

/// One input of a task: the output of another task, or a literal value.
#[derive(Clone)]
pub enum Input {
    /// The value of another task.
    Key(Key),
    /// A value given directly.
    Literal(Value),
}

/// An op applied to inputs.
#[derive(Clone)]
pub struct Task {
    /// What to run.
    pub op: Arc<dyn Op>,
    /// Its inputs, in the op's argument order.
    pub inputs: Vec<Input>,
}

impl Task {
    /// A task running `op` on `inputs`.
    pub fn new(op: Arc<dyn Op>, inputs: Vec<Input>) -> Self {
        Task { op, inputs }
    }

    /// The keys this task reads.
    pub fn dependencies(&self) -> impl Iterator<Item = &Key> {
        self.inputs.iter().filter_map(|i| match i {
            Input::Key(k) => Some(k),
            Input::Literal(_) => None,
        })
    }
}

/// How an input index is derived from an output index in a [`Blockwise`] rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum IndexMap {
    /// The output index along this output axis.
    Axis(u32),
    /// Always this index (broadcasting a single block along an axis).
    Fixed(u32),
}

/// One argument of a [`Blockwise`] rule.
#[derive(Clone)]
pub enum BlockArg {
    /// The same literal for every task.
    Literal(Value),
    /// The block of layer `name` at the index given by `map` (one entry per
    /// dimension of that layer's grid).
    Block {
        /// The input layer.
        name: Name,
        /// How each of its index entries follows from the output index.
        map: Vec<IndexMap>,
    },
    /// The output index along an axis, as a `u64` value (for generators:
    /// `inc(i)`, a random block seeded by its position).
    BlockIndex(u32),
}

/// A rule generating one task per index of an n-dimensional grid: the task at
/// index `i` runs `op` on `args` resolved at `i`. Dask's `Blockwise` layer.
#[derive(Clone)]
pub struct Blockwise {
    /// The op every task runs.
    pub op: Arc<dyn Op>,
    /// The output grid: number of blocks along each axis.
    pub grid: Vec<u32>,
    /// The op's arguments.
    pub args: Vec<BlockArg>,
}

impl Blockwise {
    /// Number of tasks the rule generates.
    pub fn len(&self) -> usize {
        self.grid.iter().map(|&n| n as usize).product()
    }

    /// Whether the grid is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The task at `index` of the grid.
    pub fn task_at(&self, index: &[u32]) -> Result<Task> {
        if index.len() != self.grid.len() || index.iter().zip(&self.grid).any(|(i, n)| i >= n) {
            return Err(Error::graph(format!(
                "index {index:?} is outside the grid {:?} of a blockwise layer",
                self.grid
            )));
        }
        let inputs = self
            .args
            .iter()
            .map(|arg| {
                Ok(match arg {
                    BlockArg::Literal(v) => Input::Literal(v.clone()),
                    BlockArg::BlockIndex(axis) => {
                        let i = *index.get(*axis as usize).ok_or_else(|| {
                            Error::graph(format!("block index axis {axis} outside a {}-d grid", index.len()))
                        })?;
                        Input::Literal(Arc::new(u64::from(i)))
                    }
                    BlockArg::Block { name, map } => {
                        let mut at = Index::with_capacity(map.len());
                        for m in map {
                            at.push(match m {
                                IndexMap::Axis(a) => *index.get(*a as usize).ok_or_else(|| {
                                    Error::graph(format!("index map axis {a} outside a {}-d grid", index.len()))
                                })?,
                                IndexMap::Fixed(i) => *i,
                            });
                        }
                        Input::Key(Key {
                            name: name.clone(),
                            index: at,
                        })
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Task::new(self.op.clone(), inputs))
    }

    /// Every index of the grid, in row-major order.
    pub fn indices(&self) -> impl Iterator<Item = Index> + '_ {
        let total = self.len();
        (0..total).map(move |mut flat| {
            let mut index = Index::from_elem(0, self.grid.len());
            for (axis, n) in self.grid.iter().enumerate().rev() {
                index[axis] = (flat % *n as usize) as u32;
                flat /= *n as usize;
            }
            index
        })
    }
}

/// One part of a task, as [`Layer::visit_task`] hands it out.
pub enum TaskPart<'a> {
    /// The task's op (always first).
    Op(&'a Arc<dyn Op>),
    /// An input read from another task: its layer's name and its index.
    Key(&'a Name, &'a [u32]),
    /// A literal input.
    Literal(&'a Value),
}

/// The task of a single-task layer ([`LayerBody::Single`]): its op, and its
/// inputs stored for what `delayed` calls usually read. A call reading the
/// outputs of its layer's dependencies in their order (`total(&parts)`,
/// `add(&a, &b)`) keeps no input list at all; a call of one literal
/// (`inc(i)`) keeps the literal inline. A million calls are a million small
/// layers, so these bytes are most of a `delayed` graph.
///
/// A `Call` belongs to the layer it was made for ([`Layer::single`]): its
/// inputs may be "the dependencies' outputs", so it must not be moved into
/// a layer with other dependencies.
#[derive(Clone)]
pub struct Call {
    /// What to run.
    pub op: Arc<dyn Op>,
    args: CallArgs,
}

#[derive(Clone)]
enum CallArgs {
    /// The output of each dependency (its key with no index), in order.
    Deps,
    /// One literal.
    Literal(Value),
    /// Any other list of inputs.
    Inputs(Box<[Input]>),
}

impl Call {
    /// The call of `task` in a layer reading `deps`, in its most compact
    /// form.
    fn new(task: Task, deps: &[Arc<Layer>]) -> Call {
        let Task { op, mut inputs } = task;
        let args = if inputs.len() == 1 && matches!(inputs[0], Input::Literal(_)) {
            match inputs.pop() {
                Some(Input::Literal(v)) => CallArgs::Literal(v),
                _ => unreachable!("checked to be one literal"),
            }
        } else if inputs.len() == deps.len()
            && inputs.iter().zip(deps).all(|(input, dep)| match input {
                Input::Key(k) => k.index.is_empty() && k.name == dep.name,
                Input::Literal(_) => false,
            })
        {
            CallArgs::Deps
        } else {
            CallArgs::Inputs(inputs.into_boxed_slice())
        };
        Call { op, args }
    }

    /// The call's inputs as a task, given its layer's dependencies.
    fn to_task(&self, deps: &[Arc<Layer>]) -> Task {
        let inputs = match &self.args {
            CallArgs::Deps => deps.iter().map(|d| Input::Key(Key::single(d.name.clone()))).collect(),
            CallArgs::Literal(v) => vec![Input::Literal(v.clone())],
            CallArgs::Inputs(inputs) => inputs.to_vec(),
        };
        Task::new(self.op.clone(), inputs)
    }

    /// Hands out the op, then each input in argument order.
    fn visit(&self, deps: &[Arc<Layer>], f: &mut impl FnMut(TaskPart<'_>) -> Result<()>) -> Result<()> {
        f(TaskPart::Op(&self.op))?;
        match &self.args {
            CallArgs::Deps => {
                for d in deps {
                    f(TaskPart::Key(&d.name, &[]))?;
                }
            }
            CallArgs::Literal(v) => f(TaskPart::Literal(v))?,
            CallArgs::Inputs(inputs) => visit_inputs(inputs, f)?,
        }
        Ok(())
    }
}

/// Hands out an explicit task's op, then each input in argument order (as
/// [`Layer::visit_task`] does).
pub(crate) fn visit_explicit(task: &Task, f: &mut impl FnMut(TaskPart<'_>) -> Result<()>) -> Result<()> {
    f(TaskPart::Op(&task.op))?;
    visit_inputs(&task.inputs, f)
}

fn visit_inputs(inputs: &[Input], f: &mut impl FnMut(TaskPart<'_>) -> Result<()>) -> Result<()> {
    for input in inputs {
        match input {
            Input::Key(k) => f(TaskPart::Key(&k.name, &k.index))?,
            Input::Literal(v) => f(TaskPart::Literal(v))?,
        }
    }
    Ok(())
}

/// Builds the [`Call`] of a `delayed` call argument by argument, keeping no
/// input list while the arguments are the dependencies in order.
pub(crate) enum CallBuilder {
    /// The arguments so far are the outputs of the first `n` dependencies
    /// (every dependency so far), in order.
    InOrder(usize),
    /// One literal and nothing else so far.
    Literal(Value),
    /// Any other list.
    Listed(Vec<Input>),
}

impl CallBuilder {
    /// Turns the arguments so far into an explicit list.
    fn listed(&mut self, deps: &[Arc<Layer>]) -> &mut Vec<Input> {
        if !matches!(self, CallBuilder::Listed(_)) {
            let list = match std::mem::replace(self, CallBuilder::InOrder(0)) {
                CallBuilder::InOrder(n) => deps[..n]
                    .iter()
                    .map(|d| Input::Key(Key::single(d.name.clone())))
                    .collect(),
                CallBuilder::Literal(v) => vec![Input::Literal(v)],
                CallBuilder::Listed(list) => list,
            };
            *self = CallBuilder::Listed(list);
        }
        match self {
            CallBuilder::Listed(list) => list,
            _ => unreachable!("made a list above"),
        }
    }

    /// Adds a literal argument.
    pub(crate) fn literal(&mut self, v: Value, deps: &[Arc<Layer>]) {
        match self {
            CallBuilder::InOrder(0) => *self = CallBuilder::Literal(v),
            _ => self.listed(deps).push(Input::Literal(v)),
        }
    }

    /// Adds `key`, an output of one of `deps`; `added` when its layer was
    /// appended to `deps` for this argument (it is then the last).
    pub(crate) fn key(&mut self, key: &Key, added: bool, deps: &[Arc<Layer>]) {
        match self {
            CallBuilder::InOrder(n)
                if added && *n + 1 == deps.len() && key.index.is_empty() && key.name == deps[*n].name =>
            {
                *n += 1
            }
            _ => self.listed(deps).push(Input::Key(key.clone())),
        }
    }

    /// Reserves room for `more` listed arguments.
    pub(crate) fn reserve(&mut self, more: usize) {
        if let CallBuilder::Listed(list) = self {
            list.reserve_exact(more);
        }
    }

    /// The single-task layer of the call.
    pub(crate) fn into_layer(self, name: Name, deps: Vec<Arc<Layer>>, op: Arc<dyn Op>) -> Arc<Layer> {
        let call = match self {
            CallBuilder::InOrder(n) if n == deps.len() => Call {
                op,
                args: CallArgs::Deps,
            },
            CallBuilder::Literal(v) => Call {
                op,
                args: CallArgs::Literal(v),
            },
            CallBuilder::InOrder(_) | CallBuilder::Listed(_) => {
                let mut this = self;
                let inputs = std::mem::take(this.listed(&deps));
                Call::new(Task::new(op, inputs), &deps)
            }
        };
        Layer::new(name, deps, LayerBody::Single(call))
    }
}

/// The tasks of a layer: explicit, or generated by a rule.
#[derive(Clone)]
pub enum LayerBody {
    /// One task under the key of the layer's name with no index (a `delayed`
    /// call): no list and no key of its own to store.
    Single(Call),
    /// Explicit tasks, each with its key (all keys carry the layer's name).
    Tasks(Vec<(Key, Task)>),
    /// Tasks generated on demand by a rule (boxed: most layers of a large
    /// graph are single calls, which stay small).
    Blockwise(Box<Blockwise>),
}

/// One collection operation's tasks, and the layers they read.
///
/// Kept small: a graph of a million `delayed` calls is a million layers
/// (80 bytes each). The planner keeps what speeds up its lookups (name
/// hashes, key tables of large explicit layers) for as long as it plans.
pub struct Layer {
    name: Name,
    deps: Box<[Arc<Layer>]>,
    body: LayerBody,
}

/// Explicit layers up to this many tasks find a key by scanning.
pub(crate) const SCAN: usize = 8;

impl Layer {
    /// A layer named `name` reading from `deps`.
    pub fn new(name: Name, deps: Vec<Arc<Layer>>, body: LayerBody) -> Arc<Self> {
        Arc::new(Layer {
            name,
            deps: deps.into_boxed_slice(),
            body,
        })
    }

    /// A layer holding a single task, under the key `name` with no index.
    pub fn single(name: Name, deps: Vec<Arc<Layer>>, task: Task) -> Arc<Self> {
        let call = Call::new(task, &deps);
        Layer::new(name, deps, LayerBody::Single(call))
    }

    /// The layer's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The layers this one reads from.
    pub fn deps(&self) -> &[Arc<Layer>] {
        &self.deps
    }

    /// The layer's tasks or rule.
    pub fn body(&self) -> &LayerBody {
        &self.body
    }

    /// Number of tasks in the layer.
    pub fn len(&self) -> usize {
        match &self.body {
            LayerBody::Single(_) => 1,
            LayerBody::Tasks(t) => t.len(),
            LayerBody::Blockwise(b) => b.len(),
        }
    }

    /// Whether the layer has no tasks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index of the task at `pos` (the inverse of [`Layer::position`]),
    /// written into `out`.
    pub(crate) fn index_at(&self, pos: usize, out: &mut Index) {
        out.clear();
        match &self.body {
            LayerBody::Single(_) => {}
            LayerBody::Tasks(tasks) => out.extend_from_slice(&tasks[pos].0.index),
            LayerBody::Blockwise(b) => {
                let mut rest = pos;
                out.resize(b.grid.len(), 0);
                for (i, &n) in out.iter_mut().zip(&b.grid).rev() {
                    *i = (rest % n as usize) as u32;
                    rest /= n as usize;
                }
            }
        }
    }

    /// The position of `index` among the layer's tasks (row-major in a
    /// rule's grid, list order in an explicit layer), or `None` when the
    /// layer has no such key.
    pub fn position(&self, index: &[u32]) -> Option<usize> {
        match &self.body {
            LayerBody::Blockwise(b) => {
                if index.len() != b.grid.len() {
                    return None;
                }
                let mut flat = 0usize;
                for (&i, &n) in index.iter().zip(&b.grid) {
                    if i >= n {
                        return None;
                    }
                    flat = flat * n as usize + i as usize;
                }
                Some(flat)
            }
            LayerBody::Single(_) => index.is_empty().then_some(0),
            LayerBody::Tasks(tasks) => {
                // Keys are usually listed in order ([0], [1], …): where
                // the index says, then a scan (planners keep a table for
                // large layers listed otherwise).
                if let [i] = index
                    && let Some((k, _)) = tasks.get(*i as usize)
                    && k.index.as_slice() == index
                {
                    return Some(*i as usize);
                }
                tasks.iter().position(|(k, _)| k.index.as_slice() == index)
            }
        }
    }

    /// Visits the task computing `index` without building it: `f` gets the
    /// op first, then each input in argument order. The planner uses this to
    /// expand millions of tasks without a `Task` (and its input list) each.
    pub fn visit_task(&self, index: &[u32], mut f: impl FnMut(TaskPart<'_>) -> Result<()>) -> Result<()> {
        match &self.body {
            LayerBody::Blockwise(b) => {
                if self.position(index).is_none() {
                    return Err(self.key_error(index));
                }
                f(TaskPart::Op(&b.op))?;
                let mut at = Index::new();
                for arg in &b.args {
                    match arg {
                        BlockArg::Literal(v) => f(TaskPart::Literal(v))?,
                        BlockArg::BlockIndex(axis) => {
                            let i = *index.get(*axis as usize).ok_or_else(|| {
                                Error::graph(format!("block index axis {axis} outside a {}-d grid", index.len()))
                            })?;
                            f(TaskPart::Literal(&(Arc::new(u64::from(i)) as Value)))?
                        }
                        BlockArg::Block { name, map } => {
                            at.clear();
                            for m in map {
                                at.push(match m {
                                    IndexMap::Axis(a) => *index.get(*a as usize).ok_or_else(|| {
                                        Error::graph(format!("index map axis {a} outside a {}-d grid", index.len()))
                                    })?,
                                    IndexMap::Fixed(i) => *i,
                                });
                            }
                            f(TaskPart::Key(name, &at))?
                        }
                    }
                }
                Ok(())
            }
            LayerBody::Single(call) if index.is_empty() => call.visit(&self.deps, &mut f),
            LayerBody::Single(_) => Err(self.key_error(index)),
            LayerBody::Tasks(tasks) => {
                let pos = self.position(index).ok_or_else(|| self.key_error(index))?;
                visit_explicit(&tasks[pos].1, &mut f)
            }
        }
    }

    /// Why `index` is not a key of this layer (a rule says which bound it
    /// breaks).
    pub(crate) fn key_error(&self, index: &[u32]) -> Error {
        if let LayerBody::Blockwise(b) = &self.body
            && let Err(e) = b.task_at(index)
        {
            return e;
        }
        Error::graph(format!(
            "key {} is not in layer {}",
            Key::new(self.name.clone(), index),
            self.name
        ))
    }

    /// The task computing `index` of this layer.
    pub fn task(&self, index: &[u32]) -> Result<Task> {
        match &self.body {
            LayerBody::Blockwise(b) => b.task_at(index),
            LayerBody::Single(call) if index.is_empty() => Ok(call.to_task(&self.deps)),
            LayerBody::Single(_) => Err(self.key_error(index)),
            LayerBody::Tasks(tasks) => self
                .position(index)
                .map(|i| tasks[i].1.clone())
                .ok_or_else(|| self.key_error(index)),
        }
    }

    /// Every key of the layer.
    pub fn keys(&self) -> Vec<Key> {
        match &self.body {
            LayerBody::Single(_) => vec![Key::single(self.name.clone())],
            LayerBody::Tasks(t) => t.iter().map(|(k, _)| k.clone()).collect(),
            LayerBody::Blockwise(b) => b
                .indices()
                .map(|index| Key {
                    name: self.name.clone(),
                    index,
                })
                .collect(),
        }
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        // Unlink uniquely owned ancestors one by one instead of recursing.
        let mut stack = std::mem::take(&mut self.deps).into_vec();
        while let Some(dep) = stack.pop() {
            if let Some(mut layer) = Arc::into_inner(dep) {
                stack.extend(std::mem::take(&mut layer.deps));
            }
        }
    }
}

/// A task graph: output layers and everything they read.
#[derive(Clone, Default)]
pub struct Graph {
    roots: Vec<Arc<Layer>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph::default()
    }

    /// A graph whose outputs are in `layer`.
    pub fn from_layer(layer: Arc<Layer>) -> Self {
        Graph { roots: vec![layer] }
    }

    /// Adds the layers of another graph (shared, not copied).
    pub fn merge(&mut self, other: &Graph) {
        for layer in &other.roots {
            if !self.roots.iter().any(|r| Arc::ptr_eq(r, layer)) {
                self.roots.push(layer.clone());
            }
        }
    }

    /// Adds one layer (and, through it, everything it reads).
    pub fn add_layer(&mut self, layer: Arc<Layer>) {
        if !self.roots.iter().any(|r| Arc::ptr_eq(r, &layer)) {
            self.roots.push(layer);
        }
    }

    /// The layers the graph was built from.
    pub fn roots(&self) -> &[Arc<Layer>] {
        &self.roots
    }

    /// Every layer reachable from the roots, each once, dependencies before
    /// dependents.
    pub fn layers(&self) -> Vec<Arc<Layer>> {
        self.walk().into_iter().cloned().collect()
    }

    /// [`Graph::layers`] without touching a reference count: a graph of a
    /// million `delayed` calls is walked without a million atomic updates.
    pub(crate) fn walk(&self) -> Vec<&Arc<Layer>> {
        let mut seen: HashSet<*const Layer, FastHash> = HashSet::with_hasher(FastHash::new());
        let mut out = Vec::new();
        // Iterative post-order DFS.
        let mut stack: Vec<(&Arc<Layer>, bool)> = self.roots.iter().rev().map(|l| (l, false)).collect();
        while let Some((layer, expanded)) = stack.pop() {
            if expanded {
                out.push(layer);
                continue;
            }
            if !seen.insert(Arc::as_ptr(layer)) {
                continue;
            }
            stack.push((layer, true));
            for dep in layer.deps().iter().rev() {
                if !seen.contains(&Arc::as_ptr(dep)) {
                    stack.push((dep, false));
                }
            }
        }
        out
    }

    /// Number of tasks over all layers, before culling.
    pub fn len(&self) -> usize {
        self.layers().iter().map(|l| l.len()).sum()
    }

    /// Whether the graph has no tasks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::identity;

    fn lit(v: i64) -> Input {
        Input::Literal(Arc::new(v))
    }

    #[test]
    fn deep_chain_drops_without_overflow() {
        let mut layer = Layer::single(Name::new("x-0"), vec![], Task::new(identity(), vec![lit(0)]));
        for i in 1..200_000 {
            let name = Name::new(&format!("x-{i}"));
            let prev = Key::single(layer.name().clone());
            layer = Layer::single(name, vec![layer], Task::new(identity(), vec![Input::Key(prev)]));
        }
        drop(layer);
    }

    #[test]
    fn blockwise_generates_tasks_by_index() {
        let rule = Blockwise {
            op: identity(),
            grid: vec![2, 3],
            args: vec![BlockArg::Block {
                name: Name::new("a"),
                map: vec![IndexMap::Axis(1), IndexMap::Fixed(0)],
            }],
        };
        assert_eq!(rule.len(), 6);
        let task = rule.task_at(&[1, 2]).unwrap();
        match &task.inputs[0] {
            Input::Key(k) => assert_eq!(k.index.as_slice(), &[2, 0]),
            Input::Literal(_) => panic!("expected a key"),
        }
        let all: Vec<_> = rule.indices().collect();
        assert_eq!(all.len(), 6);
        assert_eq!(all[5].as_slice(), &[1, 2]);
        assert!(rule.task_at(&[2, 0]).is_err());
    }

    #[test]
    fn layers_are_listed_once_in_dependency_order() {
        let a = Layer::single(Name::new("a"), vec![], Task::new(identity(), vec![lit(1)]));
        let b = Layer::single(
            Name::new("b"),
            vec![a.clone()],
            Task::new(identity(), vec![Input::Key(Key::single(Name::new("a")))]),
        );
        let c = Layer::single(
            Name::new("c"),
            vec![a.clone(), b.clone()],
            Task::new(identity(), vec![Input::Key(Key::single(Name::new("b")))]),
        );
        let g = Graph::from_layer(c);
        let names: Vec<String> = g.layers().iter().map(|l| l.name().to_string()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
    }

    #[test]
    fn explicit_layer_lookup_by_index() {
        let name = Name::new("many");
        let tasks = (0..100u32)
            .map(|i| {
                (
                    Key::new(name.clone(), &[i]),
                    Task::new(identity(), vec![lit(i64::from(i))]),
                )
            })
            .collect();
        let layer = Layer::new(name, vec![], LayerBody::Tasks(tasks));
        assert!(layer.task(&[42]).is_ok());
        let err = layer.task(&[100]).err().unwrap();
        assert!(err.to_string().contains("not in layer"), "{err}");
    }
}
