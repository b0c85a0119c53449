//! The logical plan: what a lazy frame means, before it becomes tasks.
//!
//! A [`Node`] is one collection operation — a reader, a chain of
//! per-partition steps, a tree reduction, a shuffle, a join — with the
//! metadata that is known without computing: schema, number of partitions,
//! divisions. Collections hold a node; nothing is expanded into tasks until
//! `compute`, `persist` or `explain` asks.
//!
//! Then [`optimize`] rewrites the plan, as dask-expr does:
//!
//! - **projection pushdown**: walking from the output back to the readers,
//!   each node says which input columns it needs to produce the columns its
//!   consumers need. A reader is told the union over all its consumers and
//!   parses or decodes nothing else — a column no step uses is never parsed;
//! - **predicate pushdown**: a filter moves into the reader below it when
//!   nothing between them can change which rows or values the filter sees
//!   (see [`crate::step::Step::filter_can_pass`]) and no other consumer reads
//!   that reader. CSV and JSON readers then drop rows right after parsing a
//!   block; for a Parquet reader the row groups whose min/max/null-count
//!   statistics rule the filter out are dropped from the read right here,
//!   at planning time (`ParquetSource::prune`), so their bytes are never
//!   touched, and the filter runs on the rows of the others;
//! - **limit pushdown**: `head(n)` over a reader reads at most `n` rows.
//!
//! [`lower`] turns the optimized plan into layers of the task graph; each
//! node's layer name is a token of the node and everything under it, so the
//! same computation built twice has the same keys.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use blockwise_core::graph::{BlockArg, Blockwise, IndexMap, Input, Layer, LayerBody, Task};
use blockwise_core::op::ItemOp;
use blockwise_core::{Error, Graph, Key, Name, Result, Tokenizer};
use polars::prelude::{DataFrame as PlFrame, Expr, SchemaRef, Series as PlSeries};

use crate::io::csv::{CsvSource, ReadCsvTask};
use crate::io::csv_agg::{self, ReadCsvAggregateTask};
use crate::io::json::{JsonSource, ReadJsonTask};
use crate::io::parquet::{ParquetSource, ReadParquetTask};
use crate::ops::{
    self, ConcatTask, HashSplitTask, HeadTask, JoinTask, MapPartitionsOp, RangeSplitTask, SplitRowsTask, StepsTask,
};
use crate::partition::value_of;
use crate::polars_api::{self, JoinHow};
use crate::reduce::{CombineTask, FinalizeTask, PartialTask, Reducer};
use crate::step::{Step, schema_after};

/// Sorted boundaries of the partitions along a column: `npartitions + 1`
/// values, partition `i` holding values in `[values[i], values[i+1])` (the
/// last one closed).
#[derive(Clone, Debug)]
pub(crate) struct Divisions {
    pub(crate) column: String,
    pub(crate) values: PlSeries,
}

/// One operation of the logical plan, with its output metadata.
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) schema: SchemaRef,
    pub(crate) npartitions: usize,
    pub(crate) divisions: Option<Divisions>,
    pub(crate) token: u64,
}

/// Where a reader's data comes from.
pub(crate) enum SourceData {
    Csv(Arc<CsvSource>),
    Parquet(Arc<ParquetSource>),
    Json(Arc<JsonSource>),
    /// In-memory partitions (from a Polars frame), with a content hash.
    Frames(Arc<Vec<PlFrame>>, u64),
}

/// A reader, with what the optimizer pushed into it.
pub(crate) struct Source {
    pub(crate) data: SourceData,
    /// Output columns (`None`: all), in file order.
    pub(crate) columns: Option<Vec<String>>,
    pub(crate) predicate: Option<Expr>,
    pub(crate) limit: Option<usize>,
    /// Parquet only: for each partition, the row groups left to read after
    /// pruning by statistics (`None`: all of them).
    pub(crate) row_groups: Option<Arc<Vec<Vec<usize>>>>,
}

impl Source {
    /// A reader of `data`, all columns, nothing pushed into it yet.
    pub(crate) fn new(data: SourceData) -> Source {
        Source {
            data,
            columns: None,
            predicate: None,
            limit: None,
            row_groups: None,
        }
    }

    pub(crate) fn file_schema(&self) -> SchemaRef {
        match &self.data {
            SourceData::Csv(s) => s.file_schema.clone(),
            SourceData::Parquet(s) => s.schema.clone(),
            SourceData::Json(s) => s.schema.clone(),
            SourceData::Frames(f, _) => f.first().map(|f| f.schema().clone()).unwrap_or_default(),
        }
    }

    pub(crate) fn npartitions(&self) -> usize {
        match &self.data {
            SourceData::Csv(s) => s.blocks.len(),
            SourceData::Parquet(s) => s.pieces.len(),
            SourceData::Json(s) => s.blocks.len(),
            SourceData::Frames(f, _) => f.len(),
        }
    }

    pub(crate) fn out_schema(&self) -> SchemaRef {
        let file = self.file_schema();
        match &self.columns {
            None => file,
            Some(cols) => Arc::new(polars_api::schema_from(
                cols.iter()
                    .filter_map(|c| file.get(c.as_str()).map(|d| (c.clone(), d.clone()))),
            )),
        }
    }

    fn token(&self) -> u64 {
        let mut t = Tokenizer::new();
        match &self.data {
            SourceData::Csv(s) => {
                t.str("csv")
                    .str(&format!("{:?}", s.format))
                    .str(&format!("{:?}", s.file_schema));
                for b in &s.blocks {
                    t.str(&b.path).u64(b.start).u64(b.end);
                    file_stamp(&mut t, &b.path);
                }
            }
            SourceData::Parquet(s) => {
                t.str("parquet");
                for f in &s.files {
                    t.str(&f.path);
                    file_stamp(&mut t, &f.path);
                }
                for p in &s.pieces {
                    t.u64(p.file as u64)
                        .u64(p.row_groups.start as u64)
                        .u64(p.row_groups.end as u64);
                }
            }
            SourceData::Json(s) => {
                t.str("json").str(&format!("{:?}", s.schema));
                for b in &s.blocks {
                    t.str(&b.path).u64(b.start).u64(b.end);
                    file_stamp(&mut t, &b.path);
                }
            }
            SourceData::Frames(f, h) => {
                t.str("frames").u64(f.len() as u64).u64(*h);
            }
        }
        t.str(&format!("{:?}", self.columns));
        match &self.predicate {
            Some(p) => bytes_token(&mut t, p),
            None => {
                t.str("-");
            }
        }
        t.u64(self.limit.map(|l| l as u64).unwrap_or(u64::MAX));
        t.finish()
    }
}

fn file_stamp(t: &mut Tokenizer, path: &str) {
    // As Dask: a file's identity includes its size and modification time, so
    // a rewritten file is read again.
    if let Ok(meta) = std::fs::metadata(path) {
        t.u64(meta.len());
        if let Ok(m) = meta.modified()
            && let Ok(d) = m.duration_since(std::time::UNIX_EPOCH)
        {
            t.u64(d.as_nanos() as u64);
        }
    }
}

pub(crate) fn bytes_token<T: serde::Serialize>(t: &mut Tokenizer, value: &T) {
    match polars_api::ser(value) {
        Ok(b) => {
            t.bytes(&b);
        }
        Err(_) => {
            t.unique();
        }
    }
}

/// How `repartition` regroups partitions.
#[derive(Clone, Debug)]
pub(crate) enum Regroup {
    /// Output `j` concatenates the inputs `groups[j]`.
    Merge(Vec<std::ops::Range<usize>>),
    /// Input `i` is cut into `pieces[i]` row ranges.
    Split(Vec<usize>),
}

/// The operations.
pub(crate) enum Kind {
    Source(Source),
    Steps {
        input: Arc<Node>,
        steps: Vec<Step>,
        /// The input schema of each step.
        schemas: Vec<SchemaRef>,
    },
    MapPartitions {
        input: Arc<Node>,
        op: Arc<MapPartitionsOp>,
    },
    Reduce {
        input: Arc<Node>,
        reducer: Reducer,
        split_every: usize,
        split_out: usize,
    },
    Shuffle {
        input: Arc<Node>,
        on: Vec<String>,
    },
    RangeShuffle {
        input: Arc<Node>,
        column: String,
        boundaries: PlSeries,
        descending: bool,
        sort_by: Vec<String>,
    },
    Join {
        left: Arc<Node>,
        right: Arc<Node>,
        how: JoinHow,
        left_on: Vec<String>,
        right_on: Vec<String>,
        suffix: String,
        broadcast: bool,
    },
    Concat {
        inputs: Vec<Arc<Node>>,
        columns: Option<Vec<String>>,
    },
    Regroup {
        input: Arc<Node>,
        regroup: Regroup,
    },
    Partitions {
        input: Arc<Node>,
        indices: Vec<usize>,
    },
    Head {
        input: Arc<Node>,
        n: usize,
        take: usize,
    },
    Persisted {
        graph: Graph,
        name: Name,
    },
}

impl Node {
    /// A node; its token is computed from the kind.
    pub(crate) fn new(kind: Kind, schema: SchemaRef, npartitions: usize, divisions: Option<Divisions>) -> Arc<Node> {
        let token = token_of(&kind, npartitions);
        Arc::new(Node {
            kind,
            schema,
            npartitions,
            divisions,
            token,
        })
    }

    /// The node's inputs.
    pub(crate) fn children(&self) -> Vec<&Arc<Node>> {
        inputs_of(&self.kind)
    }
}

/// The nodes a node of this kind reads.
fn inputs_of(kind: &Kind) -> Vec<&Arc<Node>> {
    match kind {
        Kind::Source(_) | Kind::Persisted { .. } => vec![],
        Kind::Steps { input, .. }
        | Kind::MapPartitions { input, .. }
        | Kind::Reduce { input, .. }
        | Kind::Shuffle { input, .. }
        | Kind::RangeShuffle { input, .. }
        | Kind::Regroup { input, .. }
        | Kind::Partitions { input, .. }
        | Kind::Head { input, .. } => vec![input],
        Kind::Join { left, right, .. } => vec![left, right],
        Kind::Concat { inputs, .. } => inputs.iter().collect(),
    }
}

fn token_of(kind: &Kind, npartitions: usize) -> u64 {
    let mut t = Tokenizer::new();
    t.u64(npartitions as u64);
    for c in inputs_of(kind) {
        t.u64(c.token);
    }
    match kind {
        Kind::Source(s) => {
            t.str("source").u64(s.token());
        }
        Kind::Steps { steps, .. } => {
            t.str("steps");
            bytes_token(&mut t, steps);
        }
        Kind::MapPartitions { op, .. } => {
            use blockwise_core::Op;
            op.tokenize(&mut t);
        }
        Kind::Reduce {
            reducer,
            split_every,
            split_out,
            ..
        } => {
            t.str("reduce").u64(*split_every as u64).u64(*split_out as u64);
            bytes_token(&mut t, reducer);
        }
        Kind::Shuffle { on, .. } => {
            t.str("shuffle").str(&format!("{on:?}"));
        }
        Kind::RangeShuffle {
            column,
            boundaries,
            descending,
            sort_by,
            ..
        } => {
            t.str("range").str(column).str(&format!("{sort_by:?}{descending}"));
            bytes_token(&mut t, boundaries);
        }
        Kind::Join {
            how,
            left_on,
            right_on,
            suffix,
            broadcast,
            ..
        } => {
            t.str("join")
                .str(&format!("{how:?}{left_on:?}{right_on:?}{suffix}{broadcast}"));
        }
        Kind::Concat { columns, .. } => {
            t.str("concat").str(&format!("{columns:?}"));
        }
        Kind::Regroup { regroup, .. } => {
            t.str("regroup").str(&format!("{regroup:?}"));
        }
        Kind::Partitions { indices, .. } => {
            t.str("partitions").str(&format!("{indices:?}"));
        }
        Kind::Head { n, take, .. } => {
            t.str("head").u64(*n as u64).u64(*take as u64);
        }
        Kind::Persisted { name, .. } => {
            t.str("persisted").str(name.as_str());
        }
    }
    t.finish()
}

// ---------------------------------------------------------------- optimize

type Ptr = *const Node;

/// Every node under `root`, each once, inputs before consumers.
fn postorder(root: &Arc<Node>) -> Vec<Arc<Node>> {
    let mut seen: HashMap<Ptr, ()> = HashMap::new();
    let mut out = Vec::new();
    let mut stack: Vec<(Arc<Node>, bool)> = vec![(root.clone(), false)];
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            out.push(node);
            continue;
        }
        if seen.insert(Arc::as_ptr(&node), ()).is_some() {
            continue;
        }
        stack.push((node.clone(), true));
        for c in node.children().into_iter().rev() {
            if !seen.contains_key(&Arc::as_ptr(c)) {
                stack.push((c.clone(), false));
            }
        }
    }
    out
}

fn all_columns(schema: &SchemaRef) -> BTreeSet<String> {
    polars_api::names(schema).into_iter().collect()
}

/// Which columns each input must provide for `node` to produce `need`.
fn child_needs(node: &Node, need: &BTreeSet<String>) -> Vec<(Ptr, BTreeSet<String>)> {
    let restrict = |n: &Arc<Node>, set: BTreeSet<String>| {
        let have = all_columns(&n.schema);
        (
            Arc::as_ptr(n),
            set.into_iter().filter(|c| have.contains(c)).collect::<BTreeSet<_>>(),
        )
    };
    match &node.kind {
        Kind::Source(_) | Kind::Persisted { .. } => vec![],
        Kind::Steps { input, steps, schemas } => {
            let mut n = need.clone();
            for (step, schema) in steps.iter().zip(schemas).rev() {
                n = step.needs(&n, schema);
            }
            vec![restrict(input, n)]
        }
        Kind::MapPartitions { input, .. } => vec![(Arc::as_ptr(input), all_columns(&input.schema))],
        Kind::Reduce { input, reducer, .. } => {
            let n = match reducer.inputs() {
                Some(cols) => cols.into_iter().collect(),
                None => all_columns(&input.schema),
            };
            vec![restrict(input, n)]
        }
        Kind::Shuffle { input, on } => {
            let mut n = need.clone();
            n.extend(on.iter().cloned());
            vec![restrict(input, n)]
        }
        Kind::RangeShuffle {
            input, column, sort_by, ..
        } => {
            let mut n = need.clone();
            n.insert(column.clone());
            n.extend(sort_by.iter().cloned());
            vec![restrict(input, n)]
        }
        Kind::Join {
            left,
            right,
            how,
            left_on,
            right_on,
            suffix,
            ..
        } => {
            let mut r: BTreeSet<String> = right_on.iter().cloned().collect();
            if !matches!(how, JoinHow::Semi | JoinHow::Anti) {
                for c in polars_api::names(&right.schema) {
                    if need.contains(&c) || need.contains(&format!("{c}{suffix}")) {
                        r.insert(c);
                    }
                }
            }
            let mut l: BTreeSet<String> = left_on.iter().cloned().collect();
            for c in polars_api::names(&left.schema) {
                if need.contains(&c) || r.contains(&c) {
                    l.insert(c);
                }
            }
            vec![restrict(left, l), restrict(right, r)]
        }
        Kind::Concat { inputs, .. } => inputs.iter().map(|i| restrict(i, need.clone())).collect(),
        Kind::Regroup { input, .. } | Kind::Partitions { input, .. } | Kind::Head { input, .. } => {
            vec![restrict(input, need.clone())]
        }
    }
}

/// Rewrites the plan under `root`: projection, predicate and limit pushdown.
pub(crate) fn optimize(root: &Arc<Node>) -> Result<Arc<Node>> {
    let order = postorder(root);
    let mut consumers: HashMap<Ptr, usize> = HashMap::new();
    for n in &order {
        for c in n.children() {
            *consumers.entry(Arc::as_ptr(c)).or_default() += 1;
        }
    }
    let mut needed: HashMap<Ptr, BTreeSet<String>> = HashMap::new();
    needed.insert(Arc::as_ptr(root), all_columns(&root.schema));
    for n in order.iter().rev() {
        let need = needed.get(&Arc::as_ptr(n)).cloned().unwrap_or_default();
        for (child, set) in child_needs(n, &need) {
            needed.entry(child).or_default().extend(set);
        }
    }
    let mut rebuilt: HashMap<Ptr, Arc<Node>> = HashMap::new();
    for n in &order {
        let need = needed.get(&Arc::as_ptr(n)).cloned().unwrap_or_default();
        let new = rebuild(n, &need, &rebuilt, &consumers)?;
        rebuilt.insert(Arc::as_ptr(n), new);
    }
    Ok(rebuilt[&Arc::as_ptr(root)].clone())
}

fn rebuild(
    node: &Arc<Node>,
    need: &BTreeSet<String>,
    done: &HashMap<Ptr, Arc<Node>>,
    consumers: &HashMap<Ptr, usize>,
) -> Result<Arc<Node>> {
    let new_of = |c: &Arc<Node>| done[&Arc::as_ptr(c)].clone();
    let sole = |c: &Arc<Node>| consumers.get(&Arc::as_ptr(c)).copied().unwrap_or(0) <= 1;
    let same = |kind: Kind| Node::new(kind, node.schema.clone(), node.npartitions, node.divisions.clone());
    Ok(match &node.kind {
        Kind::Source(s) => {
            let file = s.file_schema();
            let current: Vec<String> = s.columns.clone().unwrap_or_else(|| polars_api::names(&file));
            let mut keep: Vec<String> = current.iter().filter(|c| need.contains(*c)).cloned().collect();
            if keep.is_empty() {
                keep = current.iter().take(1).cloned().collect();
            }
            let columns = if keep.len() == polars_api::names(&file).len() {
                None
            } else {
                Some(keep)
            };
            let source = Source {
                data: clone_data(&s.data),
                columns,
                predicate: s.predicate.clone(),
                limit: s.limit,
                row_groups: s.row_groups.clone(),
            };
            let schema = source.out_schema();
            Node::new(Kind::Source(source), schema, node.npartitions, node.divisions.clone())
        }
        Kind::Steps { input, steps, .. } => {
            let mut input2 = new_of(input);
            let mut remaining: Vec<Step> = Vec::new();
            if let Kind::Source(src) = &input2.kind {
                if sole(input) && src.limit.is_none() {
                    let file = all_columns(&src.file_schema());
                    let mut pushed: Vec<Expr> = Vec::new();
                    for step in steps {
                        if let Step::Filter(p) = step
                            && let Some(cols) = polars_api::expr_inputs(p)
                        {
                            let cols: BTreeSet<String> = cols.into_iter().collect();
                            if cols.is_subset(&file) && remaining.iter().all(|s| s.filter_can_pass(&cols)) {
                                pushed.push(p.clone());
                                continue;
                            }
                        }
                        remaining.push(step.clone());
                    }
                    if !pushed.is_empty() {
                        let mut pred = src.predicate.clone();
                        for p in pushed {
                            pred = Some(match pred {
                                None => p,
                                Some(q) => q.and(p),
                            });
                        }
                        // Row groups whose statistics rule the filter out
                        // are dropped from the read now, at planning time.
                        let row_groups = match (&src.data, &pred) {
                            (SourceData::Parquet(p), Some(pred)) => p.prune(pred),
                            _ => None,
                        };
                        let source = Source {
                            data: clone_data(&src.data),
                            columns: src.columns.clone(),
                            predicate: pred,
                            limit: None,
                            row_groups,
                        };
                        let schema = source.out_schema();
                        input2 = Node::new(
                            Kind::Source(source),
                            schema,
                            input2.npartitions,
                            input2.divisions.clone(),
                        );
                    }
                } else {
                    remaining = steps.clone();
                }
            } else {
                remaining = steps.clone();
            }
            if remaining.is_empty() {
                return Ok(input2);
            }
            let mut schemas = Vec::with_capacity(remaining.len());
            let mut schema = input2.schema.clone();
            for s in &remaining {
                schemas.push(schema.clone());
                schema = schema_after(s, &schema)?;
            }
            Node::new(
                Kind::Steps {
                    input: input2,
                    steps: remaining,
                    schemas,
                },
                schema,
                node.npartitions,
                node.divisions.clone(),
            )
        }
        Kind::MapPartitions { input, op } => same(Kind::MapPartitions {
            input: new_of(input),
            op: op.clone(),
        }),
        Kind::Reduce {
            input,
            reducer,
            split_every,
            split_out,
        } => same(Kind::Reduce {
            input: new_of(input),
            reducer: reducer.clone(),
            split_every: *split_every,
            split_out: *split_out,
        }),
        Kind::Shuffle { input, on } => same(Kind::Shuffle {
            input: new_of(input),
            on: on.clone(),
        }),
        Kind::RangeShuffle {
            input,
            column,
            boundaries,
            descending,
            sort_by,
        } => same(Kind::RangeShuffle {
            input: new_of(input),
            column: column.clone(),
            boundaries: boundaries.clone(),
            descending: *descending,
            sort_by: sort_by.clone(),
        }),
        Kind::Join {
            left,
            right,
            how,
            left_on,
            right_on,
            suffix,
            broadcast,
        } => same(Kind::Join {
            left: new_of(left),
            right: new_of(right),
            how: *how,
            left_on: left_on.clone(),
            right_on: right_on.clone(),
            suffix: suffix.clone(),
            broadcast: *broadcast,
        }),
        Kind::Concat { inputs, .. } => {
            let cols: Vec<String> = polars_api::names(&node.schema)
                .into_iter()
                .filter(|c| need.contains(c))
                .collect();
            same(Kind::Concat {
                inputs: inputs.iter().map(new_of).collect(),
                columns: Some(cols),
            })
        }
        Kind::Regroup { input, regroup } => same(Kind::Regroup {
            input: new_of(input),
            regroup: regroup.clone(),
        }),
        Kind::Partitions { input, indices } => same(Kind::Partitions {
            input: new_of(input),
            indices: indices.clone(),
        }),
        Kind::Head { input, n, take } => {
            let mut input2 = new_of(input);
            if let Kind::Source(src) = &input2.kind
                && sole(input)
                && src.predicate.is_none()
                && !matches!(src.data, SourceData::Frames(..))
            {
                let source = Source {
                    data: clone_data(&src.data),
                    columns: src.columns.clone(),
                    predicate: None,
                    limit: Some(src.limit.map_or(*n, |l| l.min(*n))),
                    row_groups: src.row_groups.clone(),
                };
                let schema = source.out_schema();
                input2 = Node::new(
                    Kind::Source(source),
                    schema,
                    input2.npartitions,
                    input2.divisions.clone(),
                );
            }
            same(Kind::Head {
                input: input2,
                n: *n,
                take: *take,
            })
        }
        Kind::Persisted { graph, name } => same(Kind::Persisted {
            graph: graph.clone(),
            name: name.clone(),
        }),
    })
}

fn clone_data(d: &SourceData) -> SourceData {
    match d {
        SourceData::Csv(s) => SourceData::Csv(s.clone()),
        SourceData::Parquet(s) => SourceData::Parquet(s.clone()),
        SourceData::Json(s) => SourceData::Json(s.clone()),
        SourceData::Frames(f, h) => SourceData::Frames(f.clone(), *h),
    }
}

// ---------------------------------------------------------------- explain

/// The plan as indented text, one node per line, inputs below.
pub(crate) fn explain(root: &Arc<Node>) -> String {
    let mut out = String::new();
    let mut labels: HashMap<Ptr, usize> = HashMap::new();
    explain_into(root, 0, &mut out, &mut labels);
    out
}

fn explain_into(node: &Arc<Node>, depth: usize, out: &mut String, seen: &mut HashMap<Ptr, usize>) {
    let pad = "  ".repeat(depth);
    let n = node.npartitions;
    let line = match &node.kind {
        Kind::Source(s) => {
            let (what, detail) = match &s.data {
                SourceData::Csv(c) => {
                    let files: BTreeSet<&str> = c.blocks.iter().map(|b| b.path.as_str()).collect();
                    ("ReadCsv", format!("{} files", files.len()))
                }
                SourceData::Parquet(p) => {
                    let total = p.n_row_groups();
                    let groups = match &s.row_groups {
                        None => format!("{total} row groups"),
                        Some(kept) => {
                            let read: usize = kept.iter().map(Vec::len).sum();
                            format!(
                                "{read} of {total} row groups read ({} pruned by statistics)",
                                total - read
                            )
                        }
                    };
                    ("ReadParquet", format!("{} files, {groups}", p.files.len()))
                }
                SourceData::Json(j) => {
                    let files: BTreeSet<&str> = j.blocks.iter().map(|b| b.path.as_str()).collect();
                    ("ReadJson", format!("{} files", files.len()))
                }
                SourceData::Frames(..) => ("FromPolars", "in memory".to_string()),
            };
            let total = s.file_schema().len();
            let cols = match &s.columns {
                None => format!("all {total} columns"),
                Some(c) => format!("columns [{}] ({} of {total})", c.join(", "), c.len()),
            };
            let mut l = format!("{what} {detail}, {n} partitions, {cols}");
            if let Some(p) = &s.predicate {
                l.push_str(&format!(", filter: {}", polars_api::expr_text(p)));
            }
            if let Some(lim) = s.limit {
                l.push_str(&format!(", at most {lim} rows per partition"));
            }
            l
        }
        Kind::Steps { steps, .. } => format!(
            "Steps ({n} partitions): {}",
            steps.iter().map(Step::describe).collect::<Vec<_>>().join(" → ")
        ),
        Kind::MapPartitions { op, .. } => format!("MapPartitions {} ({n} partitions)", op.type_name),
        Kind::Reduce {
            reducer,
            split_every,
            split_out,
            ..
        } => {
            format!(
                "Reduce {} (split_every={split_every}, split_out={split_out})",
                reducer.describe()
            )
        }
        Kind::Shuffle { on, .. } => format!("HashShuffle on {on:?} into {n} partitions"),
        Kind::RangeShuffle {
            column,
            descending,
            sort_by,
            ..
        } => format!(
            "RangeShuffle on {column:?} into {n} partitions, then sort by {sort_by:?}{}",
            if *descending { " descending" } else { "" }
        ),
        Kind::Join {
            how,
            left_on,
            right_on,
            broadcast,
            ..
        } => format!(
            "Join {how:?} {left_on:?} = {right_on:?} ({}, {n} partitions)",
            if *broadcast { "broadcast right" } else { "hash shuffle" }
        ),
        Kind::Concat { inputs, .. } => format!("Concat {} frames ({n} partitions)", inputs.len()),
        Kind::Regroup { regroup, .. } => match regroup {
            Regroup::Merge(_) => format!("Repartition (merge) into {n} partitions"),
            Regroup::Split(_) => format!("Repartition (split) into {n} partitions"),
        },
        Kind::Partitions { indices, .. } => format!("Partitions {indices:?}"),
        Kind::Head { n: rows, take, .. } => format!("Head {rows} rows from the first {take} partitions"),
        Kind::Persisted { name, .. } => format!("Persisted {name} ({n} partitions)"),
    };
    let ptr = Arc::as_ptr(node);
    if let Some(id) = seen.get(&ptr) {
        out.push_str(&format!("{pad}(same as #{id}) {line}\n"));
        return;
    }
    let id = seen.len() + 1;
    seen.insert(ptr, id);
    out.push_str(&format!("{pad}#{id} {line}\n"));
    for c in node.children() {
        explain_into(c, depth + 1, out, seen);
    }
}

// ---------------------------------------------------------------- lower

/// A node expanded into the task graph: its output layer holds the keys
/// `(name, [i])` for each partition `i`.
pub(crate) struct Lowered {
    pub(crate) name: Name,
    pub(crate) layer: Arc<Layer>,
}

impl Lowered {
    pub(crate) fn key(&self, i: usize) -> Key {
        Key::new(self.name.clone(), &[i as u32])
    }
}

/// Expands an (optimized) plan into layers.
pub(crate) fn lower(root: &Arc<Node>) -> Result<Arc<Lowered>> {
    let order = postorder(root);
    // How many nodes read each node (a CSV reader read by one group-by only
    // is fused with its partial).
    let mut readers: HashMap<Ptr, usize> = HashMap::new();
    for node in &order {
        for c in node.children() {
            *readers.entry(Arc::as_ptr(c)).or_default() += 1;
        }
    }
    let fuse = csv_agg::enabled();
    let mut memo: HashMap<Ptr, Arc<Lowered>> = HashMap::new();
    for node in order {
        let l = lower_one(&node, &memo, &|c: &Arc<Node>| {
            fuse && readers.get(&Arc::as_ptr(c)).copied() == Some(1)
        })?;
        memo.insert(Arc::as_ptr(&node), Arc::new(l));
    }
    Ok(memo[&Arc::as_ptr(root)].clone())
}

/// The task that reads block `b` of a CSV source.
fn csv_read_task(c: &CsvSource, s: &Source, b: &crate::io::blocks::Block) -> ReadCsvTask {
    ReadCsvTask {
        block: b.clone(),
        format: c.format.clone(),
        schema: c.file_schema.clone(),
        reference: c.reference.clone(),
        columns: s.columns.clone(),
        predicate: s.predicate.clone(),
        limit: s.limit,
    }
}

/// For a group-by over a CSV reader that nothing else reads: one task per
/// block that reads it and computes the partial in one pass (see
/// `io::csv_agg`). `None` when the reduction or the reader does not fit.
fn fused_partials(input: &Node, reducer: &Reducer) -> Option<Vec<Task>> {
    let (Kind::Source(s), Reducer::Agg(plan)) = (&input.kind, reducer) else {
        return None;
    };
    let SourceData::Csv(c) = &s.data else {
        return None;
    };
    let reads: Vec<ReadCsvTask> = c.blocks.iter().map(|b| csv_read_task(c, s, b)).collect();
    if !reads.iter().all(|r| ReadCsvAggregateTask::can_fuse(r, plan)) {
        return None;
    }
    Some(
        reads
            .into_iter()
            .map(|read| {
                Task::new(
                    ops::op(ReadCsvAggregateTask {
                        read,
                        plan: plan.clone(),
                    }),
                    vec![],
                )
            })
            .collect(),
    )
}

fn name_of(node: &Node, prefix: &str) -> Name {
    let mut t = Tokenizer::new();
    t.u64(node.token);
    t.name(prefix)
}

fn blockwise(name: Name, input: &Lowered, op: Arc<dyn blockwise_core::Op>, n: usize) -> Arc<Layer> {
    Layer::new(
        name,
        vec![input.layer.clone()],
        LayerBody::Blockwise(Box::new(Blockwise {
            op,
            grid: vec![n as u32],
            args: vec![BlockArg::Block {
                name: input.name.clone(),
                map: vec![IndexMap::Axis(0)],
            }],
        })),
    )
}

fn explicit(name: Name, deps: Vec<Arc<Layer>>, tasks: Vec<(Vec<u32>, Task)>) -> Arc<Layer> {
    let tasks = tasks
        .into_iter()
        .map(|(idx, t)| (Key::new(name.clone(), &idx), t))
        .collect();
    Layer::new(name, deps, LayerBody::Tasks(tasks))
}

/// An explicit layer with no inputs whose task `i` is partition `i`.
fn partitions(name: Name, tasks: Vec<Task>) -> Arc<Layer> {
    let tasks = tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| (vec![i as u32], t))
        .collect();
    explicit(name, vec![], tasks)
}

fn keys(lowered: &Lowered, n: usize) -> Vec<Input> {
    (0..n).map(|i| Input::Key(lowered.key(i))).collect()
}

/// Hash- or range-splits every partition of `input` into `k` outputs and
/// gathers output `j` from all of them: the shuffle as tasks in the graph.
/// Returns the gather layer (keys `[j]`).
fn shuffle_layers(
    prefix: &str,
    token: u64,
    input: &Lowered,
    n_in: usize,
    k: usize,
    split: Arc<dyn blockwise_core::Op>,
    schema: &SchemaRef,
) -> Lowered {
    let tok = |p: &str| {
        let mut t = Tokenizer::new();
        t.u64(token);
        t.name(p)
    };
    let split_name = tok(&format!("{prefix}-split"));
    let split_layer = blockwise(split_name.clone(), input, split, n_in);
    let item_name = tok(&format!("{prefix}-part"));
    let mut items = Vec::with_capacity(n_in * k);
    for i in 0..n_in {
        for j in 0..k {
            items.push((
                vec![i as u32, j as u32],
                Task::new(
                    Arc::new(ItemOp(j as u32)),
                    vec![Input::Key(Key::new(split_name.clone(), &[i as u32]))],
                ),
            ));
        }
    }
    let item_layer = explicit(item_name.clone(), vec![split_layer], items);
    let out_name = tok(prefix);
    let gather = (0..k)
        .map(|j| {
            let inputs = (0..n_in)
                .map(|i| Input::Key(Key::new(item_name.clone(), &[i as u32, j as u32])))
                .collect();
            (
                vec![j as u32],
                Task::new(
                    ops::op(ConcatTask {
                        columns: None,
                        schema: schema.clone(),
                    }),
                    inputs,
                ),
            )
        })
        .collect();
    let layer = explicit(out_name.clone(), vec![item_layer], gather);
    Lowered { name: out_name, layer }
}

fn lower_one(
    node: &Arc<Node>,
    memo: &HashMap<Ptr, Arc<Lowered>>,
    sole_reader: &dyn Fn(&Arc<Node>) -> bool,
) -> Result<Lowered> {
    let get = |c: &Arc<Node>| memo[&Arc::as_ptr(c)].clone();
    let n = node.npartitions;
    Ok(match &node.kind {
        Kind::Source(s) => {
            let (prefix, tasks): (&str, Vec<Task>) = match &s.data {
                SourceData::Csv(c) => (
                    "read-csv",
                    c.blocks
                        .iter()
                        .map(|b| Task::new(ops::op(csv_read_task(c, s, b)), vec![]))
                        .collect(),
                ),
                SourceData::Parquet(p) => {
                    let schema = s.out_schema();
                    (
                        "read-parquet",
                        p.pieces
                            .iter()
                            .enumerate()
                            .map(|(i, piece)| {
                                let file = &p.files[piece.file];
                                let groups: Vec<usize> = match &s.row_groups {
                                    Some(kept) => kept[i].clone(),
                                    None => piece.row_groups.clone().collect(),
                                };
                                let row_groups = groups
                                    .into_iter()
                                    .map(|rg| (rg, (file.offsets[rg], file.offsets[rg + 1] - file.offsets[rg])))
                                    .collect();
                                Task::new(
                                    ops::op(ReadParquetTask {
                                        path: file.path.clone(),
                                        row_groups,
                                        columns: s.columns.clone(),
                                        predicate: s.predicate.clone(),
                                        limit: s.limit,
                                        schema: schema.clone(),
                                    }),
                                    vec![],
                                )
                            })
                            .collect(),
                    )
                }
                SourceData::Json(j) => (
                    "read-json",
                    j.blocks
                        .iter()
                        .map(|b| {
                            Task::new(
                                ops::op(ReadJsonTask {
                                    block: b.clone(),
                                    schema: j.schema.clone(),
                                    columns: s.columns.clone(),
                                    predicate: s.predicate.clone(),
                                    limit: s.limit,
                                }),
                                vec![],
                            )
                        })
                        .collect(),
                ),
                SourceData::Frames(frames, _) => {
                    let mut steps = Vec::new();
                    if let Some(p) = &s.predicate {
                        steps.push(Step::Filter(p.clone()));
                    }
                    if let Some(c) = &s.columns {
                        steps.push(Step::Project(c.clone()));
                    }
                    (
                        "from-polars",
                        frames
                            .iter()
                            .map(|f| {
                                let lit = Input::Literal(value_of(f.clone()));
                                if steps.is_empty() {
                                    Task::new(blockwise_core::op::identity(), vec![lit])
                                } else {
                                    Task::new(ops::op(StepsTask { steps: steps.clone() }), vec![lit])
                                }
                            })
                            .collect(),
                    )
                }
            };
            let name = name_of(node, prefix);
            let layer = partitions(name.clone(), tasks);
            Lowered { name, layer }
        }
        Kind::Steps { input, steps, .. } => {
            let input = get(input);
            let name = name_of(node, step_prefix(steps));
            let layer = blockwise(name.clone(), &input, ops::op(StepsTask { steps: steps.clone() }), n);
            Lowered { name, layer }
        }
        Kind::MapPartitions { input, op } => {
            let input = get(input);
            let name = name_of(node, "map-partitions");
            let layer = blockwise(name.clone(), &input, op.clone(), n);
            Lowered { name, layer }
        }
        Kind::Reduce {
            input,
            reducer,
            split_every,
            split_out,
        } => {
            let n_in = input.npartitions;
            let fused = if sole_reader(input) {
                fused_partials(input, reducer)
            } else {
                None
            };
            let input = get(input);
            lower_reduce(
                node,
                &input,
                n_in,
                reducer,
                (*split_every).max(2),
                (*split_out).max(1),
                fused,
            )?
        }
        Kind::Shuffle { input, on } => {
            let n_in = input.npartitions;
            let input = get(input);
            shuffle_layers(
                "shuffle",
                node.token,
                &input,
                n_in,
                n,
                ops::op(HashSplitTask { on: on.clone(), k: n }),
                &node.schema,
            )
        }
        Kind::RangeShuffle {
            input,
            column,
            boundaries,
            descending,
            sort_by,
        } => {
            let n_in = input.npartitions;
            let input = get(input);
            let gathered = shuffle_layers(
                "sort-shuffle",
                node.token,
                &input,
                n_in,
                n,
                ops::op(RangeSplitTask {
                    column: column.clone(),
                    boundaries: boundaries.clone(),
                    descending: *descending,
                }),
                &node.schema,
            );
            let name = name_of(node, "sort");
            let steps = vec![Step::Sort {
                by: sort_by.clone(),
                descending: *descending,
            }];
            let layer = blockwise(name.clone(), &gathered, ops::op(StepsTask { steps }), n);
            Lowered { name, layer }
        }
        Kind::Join {
            left,
            right,
            how,
            left_on,
            right_on,
            suffix,
            broadcast,
        } => {
            let (nl, nr) = (left.npartitions, right.npartitions);
            let right_schema = right.schema.clone();
            let left_schema = left.schema.clone();
            let (ll, rl) = (get(left), get(right));
            let join = || {
                ops::op(JoinTask {
                    how: *how,
                    left_on: left_on.clone(),
                    right_on: right_on.clone(),
                    suffix: suffix.clone(),
                    right_schema: right_schema.clone(),
                })
            };
            let name = name_of(node, "join");
            if *broadcast {
                let bname = name_of(node, "join-broadcast");
                let blayer = explicit(
                    bname.clone(),
                    vec![rl.layer.clone()],
                    vec![(
                        vec![0],
                        Task::new(
                            ops::op(ConcatTask {
                                columns: None,
                                schema: right_schema.clone(),
                            }),
                            keys(&rl, nr),
                        ),
                    )],
                );
                let tasks = (0..nl)
                    .map(|i| {
                        (
                            vec![i as u32],
                            Task::new(
                                join(),
                                vec![Input::Key(ll.key(i)), Input::Key(Key::new(bname.clone(), &[0]))],
                            ),
                        )
                    })
                    .collect();
                Lowered {
                    name: name.clone(),
                    layer: explicit(name, vec![ll.layer.clone(), blayer], tasks),
                }
            } else {
                let mut t = Tokenizer::new();
                t.u64(node.token).str("left");
                let ls = shuffle_layers(
                    "join-shuffle-left",
                    t.finish(),
                    &ll,
                    nl,
                    n,
                    ops::op(HashSplitTask {
                        on: left_on.clone(),
                        k: n,
                    }),
                    &left_schema,
                );
                let mut t = Tokenizer::new();
                t.u64(node.token).str("right");
                let rs = shuffle_layers(
                    "join-shuffle-right",
                    t.finish(),
                    &rl,
                    nr,
                    n,
                    ops::op(HashSplitTask {
                        on: right_on.clone(),
                        k: n,
                    }),
                    &right_schema,
                );
                let tasks = (0..n)
                    .map(|j| {
                        (
                            vec![j as u32],
                            Task::new(join(), vec![Input::Key(ls.key(j)), Input::Key(rs.key(j))]),
                        )
                    })
                    .collect();
                Lowered {
                    name: name.clone(),
                    layer: explicit(name, vec![ls.layer.clone(), rs.layer.clone()], tasks),
                }
            }
        }
        Kind::Concat { inputs, columns } => {
            let name = name_of(node, "concat");
            let mut deps = Vec::new();
            let mut tasks = Vec::new();
            for input in inputs {
                let lo = get(input);
                let ni = input.npartitions;
                let project = match columns {
                    Some(c) if polars_api::names(&input.schema) != *c => Some(c.clone()),
                    _ => None,
                };
                for i in 0..ni {
                    let op = match &project {
                        Some(c) => ops::op(StepsTask {
                            steps: vec![Step::Project(c.clone())],
                        }),
                        None => blockwise_core::op::identity(),
                    };
                    tasks.push((vec![tasks.len() as u32], Task::new(op, vec![Input::Key(lo.key(i))])));
                }
                deps.push(lo.layer.clone());
            }
            Lowered {
                name: name.clone(),
                layer: explicit(name, deps, tasks),
            }
        }
        Kind::Regroup { input, regroup } => {
            let n_in = input.npartitions;
            let schema = input.schema.clone();
            let lo = get(input);
            let name = name_of(node, "repartition");
            match regroup {
                Regroup::Merge(groups) => {
                    let tasks = groups
                        .iter()
                        .enumerate()
                        .map(|(j, g)| {
                            let inputs = g.clone().map(|i| Input::Key(lo.key(i))).collect();
                            (
                                vec![j as u32],
                                Task::new(
                                    ops::op(ConcatTask {
                                        columns: None,
                                        schema: schema.clone(),
                                    }),
                                    inputs,
                                ),
                            )
                        })
                        .collect();
                    Lowered {
                        name: name.clone(),
                        layer: explicit(name, vec![lo.layer.clone()], tasks),
                    }
                }
                Regroup::Split(pieces) => {
                    let split_name = name_of(node, "repartition-split");
                    let split_tasks = (0..n_in)
                        .map(|i| {
                            (
                                vec![i as u32],
                                Task::new(
                                    ops::op(SplitRowsTask { pieces: pieces[i] }),
                                    vec![Input::Key(lo.key(i))],
                                ),
                            )
                        })
                        .collect();
                    let split_layer = explicit(split_name.clone(), vec![lo.layer.clone()], split_tasks);
                    let mut tasks = Vec::new();
                    for (i, &p) in pieces.iter().enumerate() {
                        for j in 0..p {
                            tasks.push((
                                vec![tasks.len() as u32],
                                Task::new(
                                    Arc::new(ItemOp(j as u32)),
                                    vec![Input::Key(Key::new(split_name.clone(), &[i as u32]))],
                                ),
                            ));
                        }
                    }
                    Lowered {
                        name: name.clone(),
                        layer: explicit(name, vec![split_layer], tasks),
                    }
                }
            }
        }
        Kind::Partitions { input, indices } => {
            let lo = get(input);
            let name = name_of(node, "partitions");
            let tasks = indices
                .iter()
                .enumerate()
                .map(|(j, &i)| {
                    (
                        vec![j as u32],
                        Task::new(blockwise_core::op::identity(), vec![Input::Key(lo.key(i))]),
                    )
                })
                .collect();
            Lowered {
                name: name.clone(),
                layer: explicit(name, vec![lo.layer.clone()], tasks),
            }
        }
        Kind::Head { input, n: rows, take } => {
            let lo = get(input);
            let name = name_of(node, "head");
            let task = Task::new(
                ops::op(HeadTask {
                    n: *rows,
                    schema: node.schema.clone(),
                }),
                keys(&lo, *take),
            );
            Lowered {
                name: name.clone(),
                layer: explicit(name, vec![lo.layer.clone()], vec![(vec![0], task)]),
            }
        }
        Kind::Persisted { graph, name } => {
            let layer = graph
                .roots()
                .iter()
                .find(|l| l.name() == name)
                .cloned()
                .ok_or_else(|| Error::graph(format!("the persisted layer {name} is missing from its graph")))?;
            Lowered {
                name: name.clone(),
                layer,
            }
        }
    })
}

fn step_prefix(steps: &[Step]) -> &'static str {
    match steps.last() {
        Some(Step::Select(_)) | Some(Step::Project(_)) => "select",
        Some(Step::Filter(_)) => "filter",
        Some(Step::WithColumns(_)) => "with-columns",
        Some(Step::Rename(_)) => "rename",
        Some(Step::Drop(_)) => "drop",
        Some(Step::Cast(_)) => "cast",
        Some(Step::FillNull { .. }) => "fill-null",
        Some(Step::DropNulls(_)) => "drop-nulls",
        Some(Step::Sort { .. }) => "sort",
        Some(Step::Unique { .. }) => "unique",
        None => "steps",
    }
}

fn reducer_prefix(r: &Reducer) -> &'static str {
    match r {
        Reducer::Agg(p) if p.keys.is_empty() => "aggregate",
        Reducer::Agg(_) => "groupby",
        Reducer::Unique { .. } => "unique",
        Reducer::Hll { .. } => "approx-nunique",
        Reducer::Sample { .. } => "sample",
        Reducer::Describe { .. } => "describe",
    }
}

fn lower_reduce(
    node: &Arc<Node>,
    input: &Lowered,
    n_in: usize,
    reducer: &Reducer,
    split_every: usize,
    split_out: usize,
    fused: Option<Vec<Task>>,
) -> Result<Lowered> {
    let prefix = reducer_prefix(reducer);
    let tok = |p: String| {
        let mut t = Tokenizer::new();
        t.u64(node.token);
        t.name(&p)
    };
    let partial_name = tok(format!("{prefix}-partial"));
    // The partials: over the input's partitions, or (fused with the read
    // of the input) tasks of their own with the same keys.
    let partial = match fused {
        Some(tasks) => partitions(partial_name.clone(), tasks),
        None => blockwise(
            partial_name.clone(),
            input,
            ops::op(PartialTask {
                reducer: reducer.clone(),
            }),
            n_in,
        ),
    };
    let out_name = tok(prefix.to_string());
    let mut layers: Vec<Arc<Layer>> = vec![partial.clone()];
    // The leaves of each output's tree, as (key, layer) pairs.
    let leaves: Vec<Vec<Key>> = if split_out == 1 {
        vec![(0..n_in).map(|i| Key::new(partial_name.clone(), &[i as u32])).collect()]
    } else {
        let on = reducer
            .split_keys()
            .ok_or_else(|| Error::invalid("split_out > 1 needs group keys: a whole-frame reduction has one output"))?;
        let split_name = tok(format!("{prefix}-split"));
        let split = blockwise(
            split_name.clone(),
            &Lowered {
                name: partial_name.clone(),
                layer: partial.clone(),
            },
            ops::op(HashSplitTask { on, k: split_out }),
            n_in,
        );
        let item_name = tok(format!("{prefix}-split-part"));
        let mut items = Vec::new();
        for i in 0..n_in {
            for j in 0..split_out {
                items.push((
                    vec![i as u32, j as u32],
                    Task::new(
                        Arc::new(ItemOp(j as u32)),
                        vec![Input::Key(Key::new(split_name.clone(), &[i as u32]))],
                    ),
                ));
            }
        }
        layers = vec![explicit(item_name.clone(), vec![split], items)];
        (0..split_out)
            .map(|j| {
                (0..n_in)
                    .map(|i| Key::new(item_name.clone(), &[i as u32, j as u32]))
                    .collect()
            })
            .collect()
    };
    let mut finals = Vec::new();
    let mut level_tasks: Vec<Vec<(Vec<u32>, Task)>> = Vec::new();
    for (j, mut level) in leaves.into_iter().enumerate() {
        let mut depth = 0usize;
        while level.len() > split_every {
            if level_tasks.len() <= depth {
                level_tasks.push(Vec::new());
            }
            let name = tok(format!("{prefix}-combine-{}", depth + 1));
            let mut next = Vec::new();
            for (g, chunk) in level.chunks(split_every).enumerate() {
                let idx = vec![j as u32, g as u32];
                let inputs = chunk.iter().map(|k| Input::Key(k.clone())).collect();
                level_tasks[depth].push((
                    idx.clone(),
                    Task::new(
                        ops::op(CombineTask {
                            reducer: reducer.clone(),
                        }),
                        inputs,
                    ),
                ));
                next.push(Key::new(name.clone(), &idx));
            }
            level = next;
            depth += 1;
        }
        let inputs = level.into_iter().map(Input::Key).collect();
        finals.push((
            vec![j as u32],
            Task::new(
                ops::op(FinalizeTask {
                    reducer: reducer.clone(),
                }),
                inputs,
            ),
        ));
    }
    for (depth, tasks) in level_tasks.into_iter().enumerate() {
        let name = tok(format!("{prefix}-combine-{}", depth + 1));
        let layer = explicit(name, layers.clone(), tasks);
        layers = vec![layer];
    }
    let layer = explicit(out_name.clone(), layers, finals);
    Ok(Lowered { name: out_name, layer })
}
