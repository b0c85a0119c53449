//! From a graph to something an executor runs: cull, fuse, order.
//!
//! [`Plan::build`] walks back from the requested output keys, asking each
//! layer for the task behind each key. Only tasks that an output needs are
//! ever expanded (culling and expansion are one pass). Tasks get dense `u32`
//! ids; inputs become [`Slot`]s; the dependency structure becomes two
//! [`Csr`]s. Then linear chains are fused (optional, [`PlanOptions::fuse`])
//! and every task gets a priority from [`crate::order`].
//!
//! A plan is what every executor consumes: the local engine and, through
//! [`Plan::encode`], the distributed scheduler.

use std::collections::HashMap;
use std::sync::Arc;

use crate::csr::Csr;
use crate::error::{Error, Result};
use crate::graph::{Graph, Layer, LayerBody, SCAN, TaskPart, visit_explicit};
use crate::hash::FastHash;
use crate::key::{Index, Key, Name};
use crate::op::Op;
use crate::order;
use crate::value::{Value, decode_value, encode_value, postcard_decode, postcard_encode};

/// One input of a task given to [`Plan::from_parts`].
#[derive(Clone)]
pub enum Slot {
    /// The output of task `id`.
    Task(u32),
    /// A literal value.
    Literal(Value),
}

/// One input of a planned task, as [`Plan::slots`] lists it.
#[derive(Clone, Copy)]
pub enum SlotRef<'a> {
    /// The output of task `id`.
    Task(u32),
    /// A literal value.
    Literal(&'a Value),
}

/// A slot code with this bit set is a position in the plan's literals;
/// without it, a task id. Plans hold fewer than 2³¹ tasks and literals.
const LITERAL: u32 = 1 << 31;

/// The inputs of one planned task, in argument order ([`Plan::slots`]).
#[derive(Clone)]
pub struct Slots<'a> {
    codes: std::slice::Iter<'a, u32>,
    literals: &'a [Value],
}

impl<'a> Iterator for Slots<'a> {
    type Item = SlotRef<'a>;

    fn next(&mut self) -> Option<SlotRef<'a>> {
        let &code = self.codes.next()?;
        Some(if code & LITERAL == 0 {
            SlotRef::Task(code)
        } else {
            SlotRef::Literal(&self.literals[(code & !LITERAL) as usize])
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.codes.size_hint()
    }
}

impl ExactSizeIterator for Slots<'_> {}

/// Every task's inputs: one row of slot codes per task, and the literals
/// they point at. A task input is four bytes; a literal adds its value.
#[derive(Default)]
struct SlotTable {
    offsets: Vec<u32>,
    codes: Vec<u32>,
    literals: Vec<Value>,
}

impl SlotTable {
    fn with_rows(rows: usize) -> SlotTable {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        SlotTable {
            offsets,
            ..SlotTable::default()
        }
    }

    fn push_task(&mut self, id: u32) {
        self.codes.push(id);
    }

    fn push_literal(&mut self, v: Value) -> Result<()> {
        let at = u32::try_from(self.literals.len())
            .ok()
            .filter(|at| at & LITERAL == 0)
            .ok_or_else(|| too_many("literal inputs"))?;
        self.literals.push(v);
        self.codes.push(at | LITERAL);
        Ok(())
    }

    fn push(&mut self, slot: Slot) -> Result<()> {
        match slot {
            Slot::Task(t) => self.push_task(t),
            Slot::Literal(v) => self.push_literal(v)?,
        }
        Ok(())
    }

    /// Ends the current task's row.
    fn end_row(&mut self) -> Result<()> {
        let end = u32::try_from(self.codes.len()).map_err(|_| too_many("inputs"))?;
        self.offsets.push(end);
        Ok(())
    }

    fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    fn row(&self, t: u32) -> &[u32] {
        &self.codes[self.offsets[t as usize] as usize..self.offsets[t as usize + 1] as usize]
    }

    fn slots(&self, t: u32) -> Slots<'_> {
        Slots {
            codes: self.row(t).iter(),
            literals: &self.literals,
        }
    }

    /// The task ids of row `t`, in order, repeats kept.
    fn tasks(&self, t: u32) -> impl Iterator<Item = u32> + '_ {
        self.row(t).iter().copied().filter(|c| c & LITERAL == 0)
    }

    fn fit(&mut self) {
        fit(&mut self.offsets);
        fit(&mut self.codes);
        fit(&mut self.literals);
    }

    fn size_bytes(&self) -> usize {
        (self.offsets.capacity() + self.codes.capacity()) * 4 + self.literals.capacity() * std::mem::size_of::<Value>()
    }
}

/// The keys of a plan's tasks: each distinct name once, and each task's
/// name position and index. A `delayed` task's key costs its name's
/// reference and four bytes; a generated task's, twelve bytes.
#[derive(Default)]
struct KeyTable {
    names: Vec<Name>,
    name_of: Vec<u32>,
    /// Task `t`'s index is `index_items[index_offsets[t]..index_offsets[t
    /// + 1]]`; both stay empty while every index is (`delayed` calls).
    index_offsets: Vec<u32>,
    index_items: Vec<u32>,
}

impl KeyTable {
    fn with_capacity(n: usize) -> KeyTable {
        KeyTable {
            names: Vec::new(),
            name_of: Vec::with_capacity(n),
            index_offsets: Vec::new(),
            index_items: Vec::new(),
        }
    }

    /// Keys as a list, names shared by text.
    fn from_keys(keys: Vec<Key>) -> Result<KeyTable> {
        let mut table = KeyTable::with_capacity(keys.len());
        let mut by_text: HashMap<Name, u32, crate::hash::FastHash> = HashMap::default();
        for key in keys {
            let at = match by_text.get(&key.name) {
                Some(&at) => at,
                None => {
                    let at = table.add_name(key.name.clone())?;
                    by_text.insert(key.name, at);
                    at
                }
            };
            table.push(at, &key.index)?;
        }
        Ok(table)
    }

    /// Adds a name; its position for [`KeyTable::push`].
    fn add_name(&mut self, name: Name) -> Result<u32> {
        let at = u32::try_from(self.names.len()).map_err(|_| too_many("layers"))?;
        self.names.push(name);
        Ok(at)
    }

    fn push(&mut self, name: u32, index: &[u32]) -> Result<()> {
        if self.index_offsets.is_empty() && !index.is_empty() {
            // The first task with an index: every earlier one had none.
            self.index_offsets.reserve_exact(self.name_of.capacity() + 1);
            self.index_offsets.resize(self.name_of.len() + 1, 0);
        }
        self.name_of.push(name);
        if !self.index_offsets.is_empty() {
            self.index_items.extend_from_slice(index);
            let end = u32::try_from(self.index_items.len()).map_err(|_| too_many("index entries"))?;
            self.index_offsets.push(end);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.name_of.len()
    }

    fn name(&self, t: u32) -> &Name {
        &self.names[self.name_of[t as usize] as usize]
    }

    fn index(&self, t: u32) -> &[u32] {
        match self.index_offsets.get(t as usize..t as usize + 2) {
            Some(&[a, b]) => &self.index_items[a as usize..b as usize],
            _ => &[],
        }
    }

    fn key(&self, t: u32) -> Key {
        Key::new(self.name(t).clone(), self.index(t))
    }

    fn fit(&mut self) {
        fit(&mut self.names);
        fit(&mut self.name_of);
        fit(&mut self.index_offsets);
        fit(&mut self.index_items);
    }

    fn size_bytes(&self) -> usize {
        self.names.capacity() * std::mem::size_of::<Name>()
            + (self.name_of.capacity() + self.index_offsets.capacity() + self.index_items.capacity()) * 4
    }
}

/// Gives back the room of a list reserved for much more than it holds (a
/// plan of a small part of a large graph).
fn fit<T>(v: &mut Vec<T>) {
    if v.len() < v.capacity() / 2 {
        v.shrink_to_fit();
    }
}

/// Options of [`Plan::build`].
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Fuse linear chains into single tasks (fewer tasks, less scheduling).
    pub fuse: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { fuse: true }
    }
}

/// A culled, fused and ordered graph over dense task ids.
pub struct Plan {
    keys: KeyTable,
    /// Each task's op, as a position in a table of the distinct ops (a
    /// million tasks of one function share one entry).
    ops: Ops,
    slots: SlotTable,
    dependencies: Csr,
    dependents: Csr,
    priority: Vec<u32>,
    outputs: Vec<u32>,
}

impl Plan {
    /// Plans the computation of `outputs` from `graph`.
    pub fn build(graph: &Graph, outputs: &[Key], options: &PlanOptions) -> Result<Plan> {
        let plan = expand(graph, outputs)?;
        let plan = if options.fuse { fuse(plan) } else { plan };
        Ok(plan.with_order())
    }

    /// Builds a plan from explicit parts (used by the wire format and tests).
    /// Checks that every slot points at an existing task and that there is
    /// no cycle.
    pub fn from_parts(
        keys: Vec<Key>,
        ops: Vec<Arc<dyn Op>>,
        inputs: Vec<Vec<Slot>>,
        outputs: Vec<u32>,
    ) -> Result<Plan> {
        let n = keys.len();
        if inputs.len() != n {
            return Err(Error::graph("plan parts have different lengths"));
        }
        let mut slots = SlotTable::with_rows(n);
        for row in inputs {
            for slot in row {
                slots.push(slot)?;
            }
            slots.end_row()?;
        }
        let plan = Plan::assemble(KeyTable::from_keys(keys)?, Ops::from_list(ops), slots, outputs)?;
        plan.check_acyclic()?;
        Ok(plan.with_order())
    }

    /// Puts a plan together from its tables, unordered and unchecked for
    /// cycles: checks lengths and that every slot names a task.
    fn assemble(keys: KeyTable, ops: Ops, slots: SlotTable, outputs: Vec<u32>) -> Result<Plan> {
        let n = keys.len();
        if ops.of.len() != n || slots.rows() != n {
            return Err(Error::graph("plan parts have different lengths"));
        }
        if n as u64 >= u64::from(LITERAL) {
            return Err(too_many("tasks"));
        }
        for &c in &slots.codes {
            if c & LITERAL == 0 && c as usize >= n {
                return Err(Error::graph(format!("a slot points at task {c}, the plan has {n}")));
            }
        }
        for &o in &outputs {
            if o as usize >= n {
                return Err(Error::graph(format!("output {o} is not a task of the plan")));
            }
        }
        let dependencies = dependencies_of(&slots);
        let dependents = dependencies.transpose();
        Ok(Plan {
            keys,
            ops,
            slots,
            dependencies,
            dependents,
            priority: Vec::new(),
            outputs,
        })
    }

    fn with_order(mut self) -> Plan {
        self.priority = order::order(&self.dependencies, &self.dependents);
        self
    }

    fn check_acyclic(&self) -> Result<()> {
        let topo = order::topological(&self.dependencies, &self.dependents);
        if topo.len() == self.len() {
            return Ok(());
        }
        let mut on_topo = vec![false; self.len()];
        for t in topo {
            on_topo[t as usize] = true;
        }
        let stuck = on_topo.iter().position(|x| !x).unwrap_or(0);
        Err(Error::graph(format!(
            "the graph has a cycle through key {}",
            self.key(stuck as u32)
        )))
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the plan has no tasks.
    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }

    /// The key of task `id`.
    pub fn key(&self, id: u32) -> Key {
        self.keys.key(id)
    }

    /// The name of task `id`'s key.
    pub fn name(&self, id: u32) -> &Name {
        self.keys.name(id)
    }

    /// The index of task `id`'s key.
    pub fn key_index(&self, id: u32) -> &[u32] {
        self.keys.index(id)
    }

    /// Every key, by task id.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = Key> + '_ {
        (0..self.len() as u32).map(|t| self.keys.key(t))
    }

    /// The op of task `id`.
    pub fn op(&self, id: u32) -> &Arc<dyn Op> {
        &self.ops.table[self.ops.of[id as usize] as usize]
    }

    /// The inputs of task `id`, in argument order.
    pub fn slots(&self, id: u32) -> Slots<'_> {
        self.slots.slots(id)
    }

    /// The distinct tasks that task `id` reads.
    pub fn dependencies(&self) -> &Csr {
        &self.dependencies
    }

    /// The distinct tasks that read task `id`.
    pub fn dependents(&self) -> &Csr {
        &self.dependents
    }

    /// The run-order rank of each task (0 first).
    pub fn priorities(&self) -> &[u32] {
        &self.priority
    }

    /// The tasks whose values were asked for, in the order asked.
    pub fn outputs(&self) -> &[u32] {
        &self.outputs
    }

    /// Bytes held by the plan's own structures (not by literal values).
    pub fn size_bytes(&self) -> usize {
        self.keys.size_bytes()
            + self.ops.table.capacity() * std::mem::size_of::<Arc<dyn Op>>()
            + self.ops.of.capacity() * 4
            + self.slots.size_bytes()
            + self.priority.capacity() * 4
            + self.dependencies.size_bytes()
            + self.dependents.size_bytes()
    }

    /// Encodes the plan for another process: keys, op names and parameters,
    /// literal values with their codecs. Fails with the op's own error (a
    /// closure names the fix) if any op cannot leave this process.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut tasks = Vec::with_capacity(self.len());
        for id in 0..self.len() as u32 {
            let op = self.op(id);
            let mut params = Vec::new();
            op.encode_params(&mut params)
                .map_err(|e| e.context(format!("while sending task {}", self.key(id))))?;
            let inputs = self
                .slots(id)
                .map(|s| {
                    Ok(match s {
                        SlotRef::Task(d) => WireSlot::Task(d),
                        SlotRef::Literal(v) => {
                            let enc = encode_value(v)?;
                            WireSlot::Literal(enc.codec, enc.bytes.to_vec())
                        }
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            tasks.push(WireTask {
                key: self.key(id),
                op: op.name().to_string(),
                params,
                inputs,
            });
        }
        postcard_encode(
            &WirePlan {
                tasks,
                outputs: self.outputs.clone(),
            },
            out,
        )
    }

    /// Decodes a plan written by [`Plan::encode`], rebuilding every op from
    /// this executable's registry.
    pub fn decode(bytes: &[u8]) -> Result<Plan> {
        let wire: WirePlan = postcard_decode(bytes)?;
        let n = wire.tasks.len();
        let mut keys = Vec::with_capacity(n);
        let mut ops = Vec::with_capacity(n);
        let mut inputs = Vec::with_capacity(n);
        // Tasks of one layer share one name allocation again.
        let mut names: HashMap<String, Name> = HashMap::new();
        for t in wire.tasks {
            let op = crate::op::decode_op(&t.op, &t.params).map_err(|e| e.context(format!("in task {}", t.key)))?;
            let name = names
                .entry(t.key.name.as_str().to_string())
                .or_insert_with(|| t.key.name.clone())
                .clone();
            keys.push(Key {
                name,
                index: t.key.index,
            });
            ops.push(op);
            inputs.push(
                t.inputs
                    .into_iter()
                    .map(|s| {
                        Ok(match s {
                            WireSlot::Task(d) => Slot::Task(d),
                            WireSlot::Literal(codec, bytes) => Slot::Literal(decode_value(&codec, &bytes)?),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        Plan::from_parts(keys, ops, inputs, wire.outputs)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WirePlan {
    tasks: Vec<WireTask>,
    outputs: Vec<u32>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WireTask {
    key: Key,
    op: String,
    params: Vec<u8>,
    inputs: Vec<WireSlot>,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum WireSlot {
    Task(u32),
    Literal(String, Vec<u8>),
}

fn dependencies_of(slots: &SlotTable) -> Csr {
    // last_reader[d] == t + 1 once task t has listed d: distinct inputs in
    // one pass, however many times a task reads the same input.
    let n = slots.rows();
    let mut last_reader = vec![0u32; n];
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0u32);
    let mut items = Vec::with_capacity(slots.codes.len());
    for t in 0..n as u32 {
        for d in slots.tasks(t) {
            if last_reader[d as usize] != t + 1 {
                last_reader[d as usize] = t + 1;
                items.push(d);
            }
        }
        offsets.push(items.len() as u32);
    }
    Csr::from_offsets(offsets, items)
}

/// The layers of a graph, found by key name, each with a table from a
/// task's position in its layer to its plan id.
struct LayerTables<'g> {
    /// Borrowed from the graph: planning a million single-task layers
    /// touches no reference count.
    layers: Vec<&'g Layer>,
    /// Each layer's id with a 32-bit hash of its name, found by name;
    /// layers with equal names (the same computation built twice) share one
    /// entry. Eight bytes an entry; growing the table reads no name.
    /// Probed once per edge of the walk, and when expanding only for a key
    /// that names none of its task's layer's dependencies by address.
    by_name: hashbrown::HashTable<(u32, u32)>,
    /// The ids of layer `l`'s dependencies, in its order, are
    /// `dep_ids[dep_base[l]..dep_base[l + 1]]`.
    dep_base: Vec<u32>,
    dep_ids: Vec<u32>,
    /// Where layer `l`'s positions start in `ids`.
    base: Vec<u32>,
    ids: Vec<u32>,
    /// The positions of the keys of explicit layers of more than
    /// [`SCAN`] tasks not listed in index order, made on first lookup.
    explicit: HashMap<u32, HashMap<Index, u32, FastHash>, FastHash>,
}

const UNSEEN: u32 = u32::MAX;

/// The 32 bits of a name's hash kept in the planner's table.
fn table_hash(name: &Name) -> u32 {
    let h = crate::key::name_hash(name.as_str());
    (h ^ (h >> 32)) as u32
}

/// A 32-bit hash spread over the 64 bits the table reads (its low bits
/// pick the bucket, its top bits the tag).
fn widen(h: u32) -> u64 {
    u64::from(h) << 32 | u64::from(h)
}

/// Two layers under one name must be the same computation.
fn check_same_length(first: &Layer, other: &Layer) -> Result<()> {
    if first.len() == other.len() {
        return Ok(());
    }
    Err(Error::graph(format!(
        "two different layers are named {}: names must be unique per computation",
        other.name()
    )))
}

impl<'g> LayerTables<'g> {
    /// Walks the graph from its roots once, entering each layer's name as
    /// it is first reached: one table probe per edge. A layer whose name is
    /// already known is either the same layer reached again or an alias of
    /// the first (the same computation by name), whose dependencies are not
    /// walked again.
    fn new(graph: &'g Graph) -> Result<Self> {
        const ROOT: usize = usize::MAX;
        let mut layers: Vec<&'g Layer> = Vec::new();
        let mut by_name = hashbrown::HashTable::<(u32, u32)>::new();
        let mut dep_base: Vec<u32> = Vec::new();
        let mut dep_ids: Vec<u32> = Vec::new();
        let mut base: Vec<u32> = Vec::new();
        let mut total = 0u32;
        // Each entry: a layer, and the edge (a place in `dep_ids`) it was
        // reached by.
        let mut stack: Vec<(&'g Layer, usize)> = graph.roots().iter().rev().map(|l| (&**l, ROOT)).collect();
        while let Some((layer, edge)) = stack.pop() {
            let hash = table_hash(layer.name());
            // One probe: the entry is either the layer's first sighting by
            // name or the slot it is entered in.
            let entry = by_name.entry(
                widen(hash),
                |&(h, id)| h == hash && layers[id as usize].name() == layer.name(),
                |&(h, _)| widen(h),
            );
            let id = match entry {
                hashbrown::hash_table::Entry::Occupied(e) => {
                    let id = e.get().1;
                    let first = layers[id as usize];
                    if !std::ptr::eq(first, layer) {
                        check_same_length(first, layer)?;
                    }
                    id
                }
                hashbrown::hash_table::Entry::Vacant(e) => {
                    let id = layers.len() as u32;
                    e.insert((hash, id));
                    base.push(total);
                    total = u32::try_from(layer.len())
                        .ok()
                        .and_then(|len| total.checked_add(len))
                        .ok_or_else(|| too_many("tasks"))?;
                    layers.push(layer);
                    let deps = layer.deps();
                    let at = dep_ids.len();
                    dep_base.push(u32::try_from(at).map_err(|_| too_many("layer dependencies"))?);
                    dep_ids.resize(at + deps.len(), UNSEEN);
                    stack.extend(deps.iter().enumerate().rev().map(|(i, d)| (&**d, at + i)));
                    id
                }
            };
            if edge != ROOT {
                dep_ids[edge] = id;
            }
        }
        dep_base.push(u32::try_from(dep_ids.len()).map_err(|_| too_many("layer dependencies"))?);
        Ok(LayerTables {
            layers,
            by_name,
            dep_base,
            dep_ids,
            base,
            ids: vec![UNSEEN; total as usize],
            explicit: HashMap::default(),
        })
    }

    fn layer_of(&self, name: &Name) -> Option<u32> {
        let hash = table_hash(name);
        self.by_name
            .find(widen(hash), |&(h, id)| {
                h == hash && self.layers[id as usize].name() == name
            })
            .map(|&(_, id)| id)
    }

    /// The layer a task of layer `l` reads through the key name `name`:
    /// the dependency at `*next` when the names share an address (inputs
    /// usually come in the order of the dependencies), then any dependency
    /// of a short list by address, then the table.
    fn dep_of(&self, l: u32, next: &mut usize, name: &Name) -> Option<u32> {
        let deps = &self.dep_ids[self.dep_base[l as usize] as usize..self.dep_base[l as usize + 1] as usize];
        let addr = name.addr();
        let named = |d: u32| self.layers[d as usize].name().addr() == addr;
        if let Some(&d) = deps.get(*next)
            && named(d)
        {
            *next += 1;
            return Some(d);
        }
        if deps.len() <= 16
            && let Some(&d) = deps.iter().find(|&&d| named(d))
        {
            return Some(d);
        }
        self.layer_of(name)
    }

    /// The position of `index` in layer `l` and its place in `ids`, or
    /// the layer's own error when the index is not one of its keys.
    fn slot(&mut self, l: u32, index: &[u32]) -> Result<(u32, &mut u32)> {
        let layer = self.layers[l as usize];
        let pos = match layer.body() {
            LayerBody::Tasks(tasks)
                if tasks.len() > SCAN
                    && !matches!(index, [i] if tasks.get(*i as usize).is_some_and(|(k, _)| k.index.as_slice() == index)) =>
            {
                self.explicit
                    .entry(l)
                    .or_insert_with(|| {
                        tasks
                            .iter()
                            .enumerate()
                            .map(|(i, (k, _))| (k.index.clone(), i as u32))
                            .collect()
                    })
                    .get(index)
                    .map(|&p| p as usize)
            }
            _ => layer.position(index),
        };
        let Some(pos) = pos else {
            return Err(layer.key_error(index));
        };
        let pos32 = u32::try_from(pos).map_err(|_| too_many("tasks in one layer"))?;
        Ok((pos32, &mut self.ids[self.base[l as usize] as usize + pos]))
    }
}

/// Cull and expand: every task the outputs need, and nothing else.
///
/// Each task's inputs become slots the moment it is expanded, in the order
/// they stay in; no `Task` is ever built.
fn expand(graph: &Graph, outputs: &[Key]) -> Result<Plan> {
    let mut tables = LayerTables::new(graph)?;
    // Tasks by the order they were found in: their layer and position.
    // A task's id is the order it is expanded in (depth first), so its
    // slots are written where they stay; slots name tasks by finding
    // number until the end, when they are renumbered in place.
    //
    // Every list below grows to the number of tasks planned, at most the
    // number of tasks in the graph: reserved at that bound, only what is
    // used is ever touched.
    let bound = tables.ids.len();
    let mut found: Vec<(u32, u32)> = Vec::with_capacity(bound);
    let mut id_of_found: Vec<u32> = Vec::with_capacity(bound);
    let mut output_found = Vec::with_capacity(outputs.len());
    for key in outputs {
        let Some(l) = tables.layer_of(&key.name) else {
            return Err(Error::graph(format!(
                "output key {key} was requested, but no layer of the graph is named {}",
                key.name
            )));
        };
        let (pos, slot) = tables.slot(l, &key.index)?;
        if *slot == UNSEEN {
            *slot = found.len() as u32;
            found.push((l, pos));
            id_of_found.push(UNSEEN);
        }
        output_found.push(*slot);
    }
    let mut stack: Vec<u32> = (0..found.len() as u32).rev().collect();
    let mut keys = KeyTable::with_capacity(bound);
    keys.names.reserve_exact(tables.layers.len());
    // The position of layer `l`'s name in `keys`, once one of its tasks is.
    let mut name_at = vec![UNSEEN; tables.layers.len()];
    let mut ops = Ops::default();
    ops.of.reserve_exact(bound);
    // Most tasks read one input or more, and most graphs' tasks take a
    // literal each (an index, a path, a seed): lists reserved at that size
    // grow by doubling less often, which leaves fewer freed blocks between
    // the plan's lists.
    let mut slots = SlotTable::with_rows(bound);
    slots.codes.reserve_exact(bound);
    slots.literals.reserve_exact(bound);
    let mut pending: Vec<u32> = Vec::new();
    let mut index = Index::new();
    while let Some(f) = stack.pop() {
        let (l, pos) = found[f as usize];
        let layer = tables.layers[l as usize];
        layer.index_at(pos as usize, &mut index);
        id_of_found[f as usize] = keys.len() as u32;
        // The layer's own name, so every key of a layer shares one.
        if name_at[l as usize] == UNSEEN {
            name_at[l as usize] = keys.add_name(layer.name().clone())?;
        }
        keys.push(name_at[l as usize], &index)?;
        pending.clear();
        let mut next_dep = 0;
        let mut op = None;
        let mut visit = |part: TaskPart<'_>| {
            match part {
                TaskPart::Op(o) => op = Some(ops.intern(o)),
                TaskPart::Literal(v) => slots.push_literal(v.clone())?,
                TaskPart::Key(name, dep_index) => {
                    let Some(dl) = tables.dep_of(l, &mut next_dep, name) else {
                        return Err(Error::graph(format!(
                            "task {} reads key {}, but no layer of the graph is named {name}",
                            Key::new(layer.name().clone(), &index),
                            Key::new(name.clone(), dep_index)
                        )));
                    };
                    let (dep_pos, slot) = tables.slot(dl, dep_index)?;
                    if *slot == UNSEEN {
                        *slot = found.len() as u32;
                        found.push((dl, dep_pos));
                        id_of_found.push(UNSEEN);
                        pending.push(*slot);
                    }
                    slots.push_task(*slot);
                }
            }
            Ok(())
        };
        match layer.body() {
            LayerBody::Tasks(tasks) => visit_explicit(&tasks[pos as usize].1, &mut visit)?,
            _ => layer.visit_task(&index, &mut visit)?,
        }
        let op =
            op.ok_or_else(|| Error::graph(format!("task {} has no op", Key::new(layer.name().clone(), &index))))?;
        ops.of.push(op);
        slots.end_row()?;
        // First input expanded first, as a depth-first walk would.
        stack.extend(pending.iter().rev());
    }
    drop(tables);
    drop(found);
    drop(name_at);
    for c in &mut slots.codes {
        if *c & LITERAL == 0 {
            *c = id_of_found[*c as usize];
        }
    }
    let output_ids = output_found.iter().map(|&f| id_of_found[f as usize]).collect();
    drop(id_of_found);
    keys.fit();
    fit(&mut ops.of);
    slots.fit();
    ops.forget_lookup();
    let plan = Plan::assemble(keys, ops, slots, output_ids)?;
    plan.check_acyclic()?;
    Ok(plan)
}

fn too_many(what: &str) -> Error {
    Error::graph(format!(
        "the graph has more than {} {what}: too large to plan",
        u32::MAX
    ))
}

/// The ops of a plan's tasks: each distinct op once.
#[derive(Default)]
struct Ops {
    table: Vec<Arc<dyn Op>>,
    /// Task `t` runs `table[of[t]]`.
    of: Vec<u32>,
    /// Table positions by op address while the plan is being built.
    lookup: HashMap<usize, u32, crate::hash::FastHash>,
}

impl Ops {
    /// One op per task, as [`Plan::from_parts`] receives them.
    fn from_list(list: Vec<Arc<dyn Op>>) -> Ops {
        let mut ops = Ops::default();
        ops.of.reserve_exact(list.len());
        for op in &list {
            let at = ops.intern(op);
            ops.of.push(at);
        }
        ops.forget_lookup();
        ops
    }

    /// The table position of `op` (by address), adding it if new. Tasks
    /// of one op usually come in runs: the last entry is tried first.
    fn intern(&mut self, op: &Arc<dyn Op>) -> u32 {
        let addr = Arc::as_ptr(op).cast::<()>() as usize;
        if let Some(last) = self.table.last()
            && Arc::as_ptr(last).cast::<()>() as usize == addr
        {
            return self.table.len() as u32 - 1;
        }
        *self.lookup.entry(addr).or_insert_with(|| {
            self.table.push(op.clone());
            self.table.len() as u32 - 1
        })
    }

    fn forget_lookup(&mut self) {
        self.lookup = HashMap::default();
    }
}

/// Fuses linear chains: a task with one dependent, which reads no other task,
/// runs inside that dependent. The chain keeps the key of its last task.
fn fuse(plan: Plan) -> Plan {
    let n = plan.len();
    let is_output = {
        let mut v = vec![false; n];
        for &o in &plan.outputs {
            v[o as usize] = true;
        }
        v
    };
    // merged_into[t] = the dependent that absorbs t.
    let mut absorbed = vec![false; n];
    let mut any = false;
    for t in 0..n as u32 {
        let dependents = plan.dependents.row(t);
        if dependents.len() == 1 && !is_output[t as usize] {
            let d = dependents[0];
            // Only a dependent reading nothing else can absorb t; count its
            // reads only then (a wide final task would make this quadratic).
            if plan.dependencies.row(d).len() == 1 && plan.slots.tasks(d).filter(|&x| x == t).count() == 1 {
                absorbed[t as usize] = true;
                any = true;
            }
        }
    }
    if !any {
        return plan;
    }
    // Each surviving task collects its chain, head first.
    let mut new_id = vec![u32::MAX; n];
    let mut next = 0u32;
    for t in 0..n {
        if !absorbed[t] {
            new_id[t] = next;
            next += 1;
        }
    }
    let mut keys = KeyTable::with_capacity(next as usize);
    keys.names = plan.keys.names.clone();
    let mut ops = Ops::default();
    ops.of.reserve_exact(next as usize);
    let mut slots = SlotTable::with_rows(next as usize);
    for t in 0..n as u32 {
        if absorbed[t as usize] {
            continue;
        }
        let mut chain = vec![t];
        let mut cur = t;
        while let [d] = plan.dependencies.row(cur) {
            if absorbed[*d as usize] {
                chain.push(*d);
                cur = *d;
            } else {
                break;
            }
        }
        chain.reverse();
        let head = chain[0];
        if keys.push(plan.keys.name_of[t as usize], plan.keys.index(t)).is_err() {
            return plan;
        }
        for s in plan.slots(head) {
            match s {
                SlotRef::Task(d) => slots.push_task(new_id[d as usize]),
                SlotRef::Literal(v) => {
                    if slots.push_literal(v.clone()).is_err() {
                        return plan;
                    }
                }
            }
        }
        if slots.end_row().is_err() {
            return plan;
        }
        if chain.len() == 1 {
            let op = ops.intern(plan.op(t));
            ops.of.push(op);
        } else {
            let steps = chain
                .iter()
                .map(|&c| FusedStep {
                    op: plan.op(c).clone(),
                    inputs: if c == head {
                        (0..plan.slots(c).len() as u32).map(FusedInput::Outer).collect()
                    } else {
                        plan.slots(c)
                            .map(|s| match s {
                                SlotRef::Task(_) => FusedInput::Previous,
                                SlotRef::Literal(v) => FusedInput::Literal(v.clone()),
                            })
                            .collect()
                    },
                })
                .collect();
            let fused: Arc<dyn Op> = Arc::new(FusedOp { steps });
            let op = ops.intern(&fused);
            ops.of.push(op);
        }
    }
    let outputs = plan.outputs.iter().map(|&o| new_id[o as usize]).collect();
    ops.forget_lookup();
    // Fusing an acyclic plan keeps it acyclic and every slot valid.
    match Plan::assemble(keys, ops, slots, outputs) {
        Ok(fused) => fused,
        Err(_) => plan,
    }
}

/// An input of one step of a fused chain.
#[derive(Clone)]
pub enum FusedInput {
    /// Input `i` of the fused task.
    Outer(u32),
    /// The previous step's result.
    Previous,
    /// A literal.
    Literal(Value),
}

/// One step of a fused chain.
#[derive(Clone)]
pub struct FusedStep {
    /// The step's op.
    pub op: Arc<dyn Op>,
    /// Its inputs.
    pub inputs: Vec<FusedInput>,
}

/// A linear chain of ops run as one task.
pub struct FusedOp {
    /// The chain, first step first.
    pub steps: Vec<FusedStep>,
}

impl Op for FusedOp {
    fn name(&self) -> &str {
        "blockwise.fused"
    }

    fn call(&self, args: &[Value]) -> Result<Value> {
        let mut previous: Option<Value> = None;
        let mut buf: Vec<Value> = Vec::new();
        for step in &self.steps {
            buf.clear();
            for input in &step.inputs {
                buf.push(match input {
                    FusedInput::Outer(i) => args[*i as usize].clone(),
                    FusedInput::Previous => previous
                        .clone()
                        .ok_or_else(|| Error::graph("a fused chain reads a previous step that does not exist"))?,
                    FusedInput::Literal(v) => v.clone(),
                });
            }
            previous = Some(step.op.call(&buf)?);
        }
        previous.ok_or_else(|| Error::graph("empty fused chain"))
    }

    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let mut params = Vec::new();
            step.op.encode_params(&mut params)?;
            let inputs = step
                .inputs
                .iter()
                .map(|i| {
                    Ok(match i {
                        FusedInput::Outer(k) => WireFused::Outer(*k),
                        FusedInput::Previous => WireFused::Previous,
                        FusedInput::Literal(v) => {
                            let enc = encode_value(v)?;
                            WireFused::Literal(enc.codec, enc.bytes.to_vec())
                        }
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            steps.push((step.op.name().to_string(), params, inputs));
        }
        postcard_encode(&steps, out)
    }

    fn label(&self) -> String {
        self.steps.iter().map(|s| s.op.label()).collect::<Vec<_>>().join("+")
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
enum WireFused {
    Outer(u32),
    Previous,
    Literal(String, Vec<u8>),
}

fn decode_fused(params: &[u8]) -> Result<Arc<dyn Op>> {
    let steps: Vec<(String, Vec<u8>, Vec<WireFused>)> = postcard_decode(params)?;
    let steps = steps
        .into_iter()
        .map(|(name, params, inputs)| {
            Ok(FusedStep {
                op: crate::op::decode_op(&name, &params)?,
                inputs: inputs
                    .into_iter()
                    .map(|i| {
                        Ok(match i {
                            WireFused::Outer(k) => FusedInput::Outer(k),
                            WireFused::Previous => FusedInput::Previous,
                            WireFused::Literal(codec, bytes) => FusedInput::Literal(decode_value(&codec, &bytes)?),
                        })
                    })
                    .collect::<Result<_>>()?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Arc::new(FusedOp { steps }))
}
crate::register_op!("blockwise.fused", decode_fused);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Input, Layer, LayerBody, Task};
    use crate::op::{FnOp, identity};

    fn inc(x: i64) -> i64 {
        x + 1
    }

    fn chain_graph(len: usize) -> (Graph, Key) {
        let mut layer = Layer::single(
            Name::new("c-0"),
            vec![],
            Task::new(identity(), vec![Input::Literal(Arc::new(0i64))]),
        );
        for i in 1..len {
            let prev = Key::single(layer.name().clone());
            let op: Arc<dyn Op> = Arc::new(FnOp::new(inc, vec![None]));
            layer = Layer::single(
                Name::new(&format!("c-{i}")),
                vec![layer],
                Task::new(op, vec![Input::Key(prev)]),
            );
        }
        let key = Key::single(layer.name().clone());
        (Graph::from_layer(layer), key)
    }

    #[test]
    fn a_computation_built_twice_is_planned_once() {
        use crate::delayed::delayed;
        use crate::exec::Collection;
        fn add(a: i64, b: i64) -> i64 {
            a + b
        }
        // Two separately built layers with one name (two allocations of it).
        let a1 = delayed(inc).call(1);
        let a2 = delayed(inc).call(1);
        assert!(!Arc::ptr_eq(a1.layer(), a2.layer()));
        let s = delayed(add).call(&a1, &a2);
        let plan = Plan::build(
            &s.graph(),
            &[s.key().clone(), a2.key().clone()],
            &PlanOptions { fuse: false },
        )
        .unwrap();
        assert_eq!(plan.len(), 2, "inc once, add once");
        let inc_id = plan.outputs()[1];
        let add_id = plan.outputs()[0];
        assert!(plan.slots(add_id).all(|s| matches!(s, SlotRef::Task(t) if t == inc_id)));
        assert_eq!(plan.dependencies().row(add_id), &[inc_id]);
    }

    #[test]
    fn two_different_layers_under_one_name_are_an_error() {
        let name = Name::new("same-name");
        let one = Layer::single(
            name.clone(),
            vec![],
            Task::new(identity(), vec![Input::Literal(Arc::new(1i64))]),
        );
        let two = Layer::new(
            Name::new("same-name"),
            vec![],
            LayerBody::Tasks(
                (0..2u32)
                    .map(|i| {
                        (
                            Key::new(Name::new("same-name"), &[i]),
                            Task::new(identity(), vec![Input::Literal(Arc::new(i64::from(i)))]),
                        )
                    })
                    .collect(),
            ),
        );
        let mut graph = Graph::from_layer(one);
        graph.add_layer(two);
        let err = Plan::build(&graph, &[Key::single(name)], &PlanOptions::default())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("two different layers are named same-name"),
            "{err}"
        );
    }

    /// A task's key inputs are matched to its layer's dependencies by name
    /// address, in order, out of order, repeated, through a copy of a name
    /// (a different allocation of the same text) and beyond the short list
    /// scanned by address: every way resolves to the right task.
    #[test]
    fn inputs_find_their_layers_however_they_name_them() {
        let leaves: Vec<Arc<Layer>> = (0..40i64)
            .map(|i| {
                Layer::single(
                    Name::new(&format!("leaf-{i}")),
                    vec![],
                    Task::new(identity(), vec![Input::Literal(Arc::new(i))]),
                )
            })
            .collect();
        let key_of = |i: usize| Key::single(leaves[i].name().clone());
        let copied_key_of = |i: usize| Key::single(Name::new(leaves[i].name().as_str()));
        // Reads: reversed, one twice, one through a copied name.
        let reads_few = vec![key_of(2), key_of(0), key_of(1), key_of(0), copied_key_of(1)];
        let few = Layer::single(
            Name::new("few"),
            leaves[..3].to_vec(),
            Task::new(identity(), reads_few.into_iter().map(Input::Key).collect()),
        );
        // Forty dependencies read backwards, the last through a copied name.
        let mut reads_many: Vec<Key> = (1..40).rev().map(key_of).collect();
        reads_many.push(copied_key_of(0));
        let many = Layer::single(
            Name::new("many"),
            leaves.clone(),
            Task::new(identity(), reads_many.into_iter().map(Input::Key).collect()),
        );
        let mut graph = Graph::from_layer(few.clone());
        graph.add_layer(many.clone());
        let outputs = [Key::single(few.name().clone()), Key::single(many.name().clone())];
        let plan = Plan::build(&graph, &outputs, &PlanOptions { fuse: false }).unwrap();
        assert_eq!(plan.len(), 42);
        let leaf_of = |slot: SlotRef<'_>| match slot {
            SlotRef::Task(t) => plan.name(t).as_str().to_string(),
            SlotRef::Literal(_) => panic!("a key input planned as a literal"),
        };
        let few_reads: Vec<String> = plan.slots(plan.outputs()[0]).map(leaf_of).collect();
        assert_eq!(few_reads, ["leaf-2", "leaf-0", "leaf-1", "leaf-0", "leaf-1"]);
        let many_reads: Vec<String> = plan.slots(plan.outputs()[1]).map(leaf_of).collect();
        let expected: Vec<String> = (1..40).rev().chain([0]).map(|i| format!("leaf-{i}")).collect();
        assert_eq!(many_reads, expected);
        // Each leaf is one task, whichever name allocation reached it.
        assert_eq!(plan.dependencies().row(plan.outputs()[0]).len(), 3);
        assert_eq!(plan.dependencies().row(plan.outputs()[1]).len(), 40);
    }

    #[test]
    fn cull_keeps_only_what_outputs_need() {
        let name = Name::new("xs");
        let tasks = (0..10u32)
            .map(|i| {
                (
                    Key::new(name.clone(), &[i]),
                    Task::new(identity(), vec![Input::Literal(Arc::new(i64::from(i)))]),
                )
            })
            .collect();
        let layer = Layer::new(name.clone(), vec![], LayerBody::Tasks(tasks));
        let g = Graph::from_layer(layer);
        let plan = Plan::build(&g, &[Key::new(name, &[3])], &PlanOptions { fuse: false }).unwrap();
        assert_eq!(plan.len(), 1);
    }

    #[test]
    fn explicit_layers_listed_in_any_order_find_every_key() {
        // Two-dimensional keys listed backwards, and one-dimensional keys
        // listed shuffled: the planner's own key table and the in-order
        // shortcut must both give each key its own task.
        let grid = Name::new("grid");
        let mut cells: Vec<(Key, Task)> = Vec::new();
        for i in (0..4u32).rev() {
            for j in (0..5u32).rev() {
                let v = i64::from(i * 10 + j);
                cells.push((
                    Key::new(grid.clone(), &[i, j]),
                    Task::new(identity(), vec![Input::Literal(Arc::new(v))]),
                ));
            }
        }
        let row = Name::new("row");
        let mut order: Vec<u32> = (0..12).collect();
        order.swap(0, 7);
        order.swap(3, 11);
        let rows: Vec<(Key, Task)> = order
            .iter()
            .map(|&i| {
                (
                    Key::new(row.clone(), &[i]),
                    Task::new(identity(), vec![Input::Key(Key::new(grid.clone(), &[i % 4, i % 5]))]),
                )
            })
            .collect();
        let grid_layer = Layer::new(grid.clone(), vec![], LayerBody::Tasks(cells));
        let row_layer = Layer::new(row.clone(), vec![grid_layer], LayerBody::Tasks(rows));
        let g = Graph::from_layer(row_layer);
        let outputs: Vec<Key> = (0..12).map(|i| Key::new(row.clone(), &[i])).collect();
        let plan = Plan::build(&g, &outputs, &PlanOptions { fuse: false }).unwrap();
        for (o, &t) in plan.outputs().iter().enumerate() {
            assert_eq!(plan.key(t), outputs[o]);
            let [SlotRef::Task(cell)] = plan.slots(t).collect::<Vec<_>>()[..] else {
                panic!("row {o} reads one cell");
            };
            let i = o as u32;
            assert_eq!(plan.key(cell), Key::new(grid.clone(), &[i % 4, i % 5]));
            let [SlotRef::Literal(v)] = plan.slots(cell).collect::<Vec<_>>()[..] else {
                panic!("a cell holds one literal");
            };
            assert_eq!(*v.downcast_ref::<i64>().unwrap(), i64::from((i % 4) * 10 + i % 5));
        }
        let missing = Plan::build(&g, &[Key::new(grid, &[4, 0])], &PlanOptions::default())
            .err()
            .unwrap();
        assert!(missing.to_string().contains("not in layer"), "{missing}");
    }

    #[test]
    fn fuse_collapses_a_linear_chain() {
        let (g, key) = chain_graph(50);
        let plan = Plan::build(&g, std::slice::from_ref(&key), &PlanOptions { fuse: true }).unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan.key(0), key);
        let unfused = Plan::build(&g, &[key], &PlanOptions { fuse: false }).unwrap();
        assert_eq!(unfused.len(), 50);
    }

    #[test]
    fn missing_key_names_the_reader() {
        let op: Arc<dyn Op> = Arc::new(FnOp::new(inc, vec![None]));
        let layer = Layer::single(
            Name::new("b"),
            vec![],
            Task::new(op, vec![Input::Key(Key::single(Name::new("ghost")))]),
        );
        let err = Plan::build(
            &Graph::from_layer(layer),
            &[Key::single(Name::new("b"))],
            &PlanOptions::default(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("\"b\" reads key \"ghost\""), "{err}");
    }

    #[test]
    fn cycle_is_an_error_naming_a_key() {
        let keys = vec![Key::single(Name::new("a")), Key::single(Name::new("b"))];
        let ops: Vec<Arc<dyn Op>> = vec![identity(), identity()];
        let err = Plan::from_parts(keys, ops, vec![vec![Slot::Task(1)], vec![Slot::Task(0)]], vec![0])
            .err()
            .unwrap();
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    #[test]
    fn order_gives_every_task_a_distinct_rank() {
        let (g, key) = chain_graph(20);
        let plan = Plan::build(&g, &[key], &PlanOptions { fuse: false }).unwrap();
        let mut p = plan.priorities().to_vec();
        p.sort();
        assert_eq!(p, (0..20).collect::<Vec<u32>>());
        // dependencies always rank before their dependents
        for t in 0..plan.len() as u32 {
            for &d in plan.dependencies().row(t) {
                assert!(plan.priorities()[d as usize] < plan.priorities()[t as usize]);
            }
        }
    }
}
