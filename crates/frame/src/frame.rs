//! The lazy [`DataFrame`], its columns ([`Series`]) and single values
//! ([`Scalar`]).
//!
//! Every method adds a node to the logical plan (see [`crate::plan`]) and
//! returns at once; `compute()` (from [`blockwise_local::Compute`]) optimizes
//! the plan, expands it into tasks and runs them. Mistakes that can be seen
//! without data — a missing column, a bad expression — are found when the
//! method is called, kept in the frame, and returned by `compute()` (and by
//! the metadata accessors), as a Polars `LazyFrame` does: methods chain
//! without a `?` at every step.
//!
//! A few operations need data to plan and run eagerly, as in Dask:
//! `head`, `len`, `sort_values`/`set_index` (sampling for the boundaries),
//! and the writers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use blockwise_core::graph::{Input, Layer, Task};
use blockwise_core::{Collection, Error, ErrorKind, Graph, Key, Name, Op, Result, Value};
use blockwise_local::{Compute, ComputeOptions};
use polars::prelude::{
    AnyValue, DataFrame as PlFrame, DataType, Expr, NamedFrom, PolarsResult, SchemaRef, Series as PlSeries,
};

use crate::io::write::{WriteFormat, WriteTask};
use crate::ops::{self, MapPartitionsOp};
use crate::partition::frame_of;
use crate::plan::{Divisions, Kind, Lowered, Node, Regroup, Source, SourceData};
use crate::polars_api::{self, JoinHow, PlResultExt};
use crate::reduce::{Agg, AggKind, AggPlan, Reducer};
use crate::step::{Step, check_columns, schema_after};

/// Default fan-in of tree reductions (Dask's `split_every`).
pub const DEFAULT_SPLIT_EVERY: usize = 8;

/// A partitioned, lazy data frame: each partition is a Polars `DataFrame`.
/// `compute()` returns the partitions concatenated in order.
#[derive(Clone)]
pub struct DataFrame {
    inner: std::result::Result<Arc<Node>, Error>,
    lowered: Arc<OnceLock<std::result::Result<Arc<Lowered>, Error>>>,
}

impl std::fmt::Debug for DataFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Ok(n) => write!(
                f,
                "DataFrame(npartitions={}, columns=[{}])",
                n.npartitions,
                polars_api::names(&n.schema).join(", ")
            ),
            Err(e) => write!(f, "DataFrame(error: {e})"),
        }
    }
}

impl DataFrame {
    pub(crate) fn from_node(node: Arc<Node>) -> Self {
        DataFrame {
            inner: Ok(node),
            lowered: Arc::new(OnceLock::new()),
        }
    }

    pub(crate) fn from_error(e: Error) -> Self {
        DataFrame {
            inner: Err(e),
            lowered: Arc::new(OnceLock::new()),
        }
    }

    fn from_result(r: Result<Arc<Node>>) -> Self {
        match r {
            Ok(n) => Self::from_node(n),
            Err(e) => Self::from_error(e),
        }
    }

    pub(crate) fn node(&self) -> Result<&Arc<Node>> {
        self.inner.as_ref().map_err(Clone::clone)
    }

    fn then(&self, f: impl FnOnce(&Arc<Node>) -> Result<Arc<Node>>) -> DataFrame {
        match &self.inner {
            Ok(n) => Self::from_result(f(n)),
            Err(_) => self.clone(),
        }
    }

    // ------------------------------------------------------------ metadata

    /// The schema: column names and dtypes, known without computing.
    pub fn schema(&self) -> Result<SchemaRef> {
        Ok(self.node()?.schema.clone())
    }

    /// The column names, in order.
    pub fn columns(&self) -> Result<Vec<String>> {
        Ok(polars_api::names(&self.node()?.schema))
    }

    /// The dtypes, in column order.
    pub fn dtypes(&self) -> Result<Vec<DataType>> {
        Ok(self.node()?.schema.iter().map(|(_, d)| d.clone()).collect())
    }

    /// The number of partitions.
    pub fn npartitions(&self) -> Result<usize> {
        Ok(self.node()?.npartitions)
    }

    /// The divisions along the index column when known (after `set_index`
    /// or `sort_values`): `npartitions + 1` sorted values bounding the
    /// partitions.
    pub fn divisions(&self) -> Result<Option<PlSeries>> {
        Ok(self.node()?.divisions.as_ref().map(|d| d.values.clone()))
    }

    /// Whether divisions are known.
    pub fn known_divisions(&self) -> bool {
        self.inner.as_ref().is_ok_and(|n| n.divisions.is_some())
    }

    /// The column the frame is indexed (sorted and divided) by, if any.
    pub fn index(&self) -> Option<String> {
        self.inner
            .as_ref()
            .ok()
            .and_then(|n| n.divisions.as_ref().map(|d| d.column.clone()))
    }

    /// The optimized plan, as text: what each reader will parse (columns,
    /// pushed-down filters and limits) and every operation above it.
    pub fn explain(&self) -> Result<String> {
        let node = self.node()?;
        let optimized = crate::plan::optimize(node)?;
        Ok(crate::plan::explain(&optimized))
    }

    /// The plan as built, before optimization.
    pub fn explain_unoptimized(&self) -> Result<String> {
        Ok(crate::plan::explain(self.node()?))
    }

    // ------------------------------------------------------------ steps

    fn step(&self, step: Step) -> DataFrame {
        self.then(|node| {
            let (input, mut steps, mut schemas) = match &node.kind {
                // Consecutive steps form one chain, so filters can travel
                // down it and it runs as one task per partition.
                Kind::Steps { input, steps, schemas } => (input.clone(), steps.clone(), schemas.clone()),
                _ => (node.clone(), Vec::new(), Vec::new()),
            };
            let schema = schema_after(&step, &node.schema)?;
            let divisions = match &step {
                Step::Filter(_)
                | Step::DropNulls(_)
                | Step::Sort { .. }
                | Step::Unique { .. }
                | Step::FillNull { .. } => node.divisions.clone(),
                _ => node
                    .divisions
                    .clone()
                    .filter(|d| schema.get(d.column.as_str()) == node.schema.get(d.column.as_str())),
            };
            schemas.push(node.schema.clone());
            steps.push(step);
            Ok(Node::new(
                Kind::Steps { input, steps, schemas },
                schema,
                node.npartitions,
                divisions,
            ))
        })
    }

    /// Selects (and computes) columns with Polars expressions.
    pub fn select<E: Into<Expr>>(&self, exprs: impl IntoIterator<Item = E>) -> DataFrame {
        self.step(Step::Select(exprs.into_iter().map(Into::into).collect()))
    }

    /// Keeps the columns named, in that order.
    pub fn select_columns<S: Into<String>>(&self, columns: impl IntoIterator<Item = S>) -> DataFrame {
        let cols: Vec<String> = columns.into_iter().map(Into::into).collect();
        match &self.inner {
            Ok(node) => {
                if let Err(e) = check_columns(&node.schema, cols.iter(), "select_columns") {
                    return Self::from_error(e);
                }
                self.step(Step::Project(cols))
            }
            Err(_) => self.clone(),
        }
    }

    /// Keeps the rows where `predicate` is true.
    pub fn filter(&self, predicate: Expr) -> DataFrame {
        self.step(Step::Filter(predicate))
    }

    /// Adds or replaces columns computed by Polars expressions.
    pub fn with_columns<E: Into<Expr>>(&self, exprs: impl IntoIterator<Item = E>) -> DataFrame {
        self.step(Step::WithColumns(exprs.into_iter().map(Into::into).collect()))
    }

    /// Adds or replaces one column.
    pub fn with_column(&self, expr: Expr) -> DataFrame {
        self.with_columns([expr])
    }

    /// Renames columns: `(old, new)` pairs.
    pub fn rename<A: Into<String>, B: Into<String>>(&self, pairs: impl IntoIterator<Item = (A, B)>) -> DataFrame {
        let pairs: Vec<(String, String)> = pairs.into_iter().map(|(a, b)| (a.into(), b.into())).collect();
        match &self.inner {
            Ok(node) => match check_columns(&node.schema, pairs.iter().map(|(a, _)| a), "rename") {
                Ok(()) => self.step(Step::Rename(pairs)),
                Err(e) => Self::from_error(e),
            },
            Err(_) => self.clone(),
        }
    }

    /// Drops columns.
    pub fn drop<S: Into<String>>(&self, columns: impl IntoIterator<Item = S>) -> DataFrame {
        let cols: Vec<String> = columns.into_iter().map(Into::into).collect();
        match &self.inner {
            Ok(node) => match check_columns(&node.schema, cols.iter(), "drop") {
                Ok(()) => self.step(Step::Drop(cols)),
                Err(e) => Self::from_error(e),
            },
            Err(_) => self.clone(),
        }
    }

    /// Casts columns to dtypes (strict: a value that does not fit fails the
    /// computation).
    pub fn cast<S: Into<String>>(&self, pairs: impl IntoIterator<Item = (S, DataType)>) -> DataFrame {
        let pairs: Vec<(String, DataType)> = pairs.into_iter().map(|(a, b)| (a.into(), b)).collect();
        match &self.inner {
            Ok(node) => match check_columns(&node.schema, pairs.iter().map(|(a, _)| a), "cast") {
                Ok(()) => self.step(Step::Cast(pairs)),
                Err(e) => Self::from_error(e),
            },
            Err(_) => self.clone(),
        }
    }

    /// Replaces nulls in every column by `value` (a literal or expression).
    pub fn fill_null(&self, value: impl Into<Expr>) -> DataFrame {
        self.step(Step::FillNull {
            value: value.into(),
            subset: None,
        })
    }

    /// Replaces nulls in the columns named by `value`.
    pub fn fill_null_in<S: Into<String>>(
        &self,
        columns: impl IntoIterator<Item = S>,
        value: impl Into<Expr>,
    ) -> DataFrame {
        let cols: Vec<String> = columns.into_iter().map(Into::into).collect();
        self.step(Step::FillNull {
            value: value.into(),
            subset: Some(cols),
        })
    }

    /// Drops rows holding a null in any column.
    pub fn drop_nulls(&self) -> DataFrame {
        self.step(Step::DropNulls(None))
    }

    /// Drops rows holding a null in one of `columns`.
    pub fn drop_nulls_in<S: Into<String>>(&self, columns: impl IntoIterator<Item = S>) -> DataFrame {
        let cols: Vec<String> = columns.into_iter().map(Into::into).collect();
        match &self.inner {
            Ok(node) => match check_columns(&node.schema, cols.iter(), "drop_nulls") {
                Ok(()) => self.step(Step::DropNulls(Some(cols))),
                Err(e) => Self::from_error(e),
            },
            Err(_) => self.clone(),
        }
    }

    /// One column, as a lazy [`Series`].
    pub fn col(&self, name: &str) -> Series {
        Series {
            frame: self.select_columns([name]),
            name: name.to_string(),
        }
    }

    // ------------------------------------------------------------ reductions

    fn aggregate(
        &self,
        keys: Vec<String>,
        aggs: Vec<Agg>,
        sort: bool,
        split_every: usize,
        split_out: usize,
    ) -> DataFrame {
        self.then(|node| {
            let plan = AggPlan::new(keys, aggs, sort, &node.schema)?;
            let schema = plan.out_schema.clone();
            Ok(Node::new(
                Kind::Reduce {
                    input: node.clone(),
                    reducer: Reducer::Agg(plan),
                    split_every,
                    split_out,
                },
                schema,
                split_out,
                None,
            ))
        })
    }

    fn columns_where(&self, keep: impl Fn(&DataType) -> bool) -> Vec<String> {
        match &self.inner {
            Ok(n) => n
                .schema
                .iter()
                .filter(|(_, d)| keep(d))
                .map(|(c, _)| c.to_string())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn whole(&self, kind: AggKind, columns: Vec<String>) -> DataFrame {
        let aggs = columns.into_iter().map(|c| Agg::new(c, kind)).collect();
        self.aggregate(Vec::new(), aggs, false, DEFAULT_SPLIT_EVERY, 1)
    }

    /// Sum of each numeric (and boolean) column: a one-row frame.
    pub fn sum(&self) -> DataFrame {
        self.whole(
            AggKind::Sum,
            self.columns_where(|d| d.is_primitive_numeric() || d.is_bool()),
        )
    }

    /// Mean of each numeric (and boolean) column.
    pub fn mean(&self) -> DataFrame {
        self.whole(
            AggKind::Mean,
            self.columns_where(|d| d.is_primitive_numeric() || d.is_bool()),
        )
    }

    /// Minimum of each column that has an order (numbers, strings, dates).
    pub fn min(&self) -> DataFrame {
        self.whole(AggKind::Min, self.columns_where(orderable))
    }

    /// Maximum of each column that has an order.
    pub fn max(&self) -> DataFrame {
        self.whole(AggKind::Max, self.columns_where(orderable))
    }

    /// Number of non-null values of each column.
    pub fn count(&self) -> DataFrame {
        self.whole(AggKind::Count, self.columns_where(|_| true))
    }

    /// Standard deviation of each numeric column.
    pub fn std(&self, ddof: u8) -> DataFrame {
        self.whole(AggKind::Std(ddof), self.columns_where(|d| d.is_primitive_numeric()))
    }

    /// Variance of each numeric column.
    pub fn var(&self, ddof: u8) -> DataFrame {
        self.whole(AggKind::Var(ddof), self.columns_where(|d| d.is_primitive_numeric()))
    }

    /// Exact number of distinct values of each column (null counts as a value).
    pub fn nunique(&self) -> DataFrame {
        self.whole(AggKind::NUnique, self.columns_where(|_| true))
    }

    /// Several aggregations over the whole frame: a one-row frame.
    pub fn agg(&self, aggs: impl IntoIterator<Item = Agg>) -> DataFrame {
        self.aggregate(Vec::new(), aggs.into_iter().collect(), false, DEFAULT_SPLIT_EVERY, 1)
    }

    /// Summary statistics of the numeric columns, as Polars' `describe`:
    /// a `statistic` column (`count`, `null_count`, `mean`, `std`, `min`,
    /// `25%`, `50%`, `75%`, `max`) and one `f64` column per numeric column.
    /// Percentiles come from merged per-partition samples of up to
    /// `10_000` values each: exact when every partition is smaller, close
    /// otherwise (Polars' "nearest" interpolation).
    pub fn describe(&self) -> DataFrame {
        let cols = self.columns_where(|d| d.is_primitive_numeric());
        self.then(|node| {
            if cols.is_empty() {
                return Err(Error::invalid("describe needs at least one numeric column"));
            }
            let mut aggs = Vec::new();
            for c in &cols {
                aggs.push(Agg::new(c.clone(), AggKind::Count).alias(format!("{c}__count")));
                aggs.push(Agg::new(c.clone(), AggKind::Size).alias(format!("{c}__size")));
                aggs.push(Agg::new(c.clone(), AggKind::Mean).alias(format!("{c}__mean")));
                aggs.push(Agg::new(c.clone(), AggKind::Std(1)).alias(format!("{c}__std")));
                aggs.push(Agg::new(c.clone(), AggKind::Min).alias(format!("{c}__min")));
                aggs.push(Agg::new(c.clone(), AggKind::Max).alias(format!("{c}__max")));
            }
            let agg = AggPlan::new(Vec::new(), aggs, false, &node.schema)?;
            let mut fields = vec![("statistic".to_string(), DataType::String)];
            fields.extend(cols.iter().map(|c| (c.clone(), DataType::Float64)));
            let schema = Arc::new(polars_api::schema_from(fields));
            Ok(Node::new(
                Kind::Reduce {
                    input: node.clone(),
                    reducer: Reducer::Describe {
                        agg,
                        columns: cols.clone(),
                        size: 10_000,
                    },
                    split_every: DEFAULT_SPLIT_EVERY,
                    split_out: 1,
                },
                schema,
                1,
                None,
            ))
        })
    }

    /// Distinct rows (on `subset`, or all columns), keeping the first
    /// occurrence in partition order; one output partition.
    pub fn drop_duplicates(&self, subset: Option<Vec<String>>) -> DataFrame {
        self.drop_duplicates_with(subset, false, DEFAULT_SPLIT_EVERY, 1)
    }

    /// [`DataFrame::drop_duplicates`] keeping the last occurrence when
    /// `keep_last`, with a fan-in and a number of output partitions (rows are
    /// hashed on `subset` into `split_out` outputs).
    pub fn drop_duplicates_with(
        &self,
        subset: Option<Vec<String>>,
        keep_last: bool,
        split_every: usize,
        split_out: usize,
    ) -> DataFrame {
        self.then(|node| {
            if let Some(s) = &subset {
                check_columns(&node.schema, s.iter(), "drop_duplicates")?;
            }
            let schema = node.schema.clone();
            Ok(Node::new(
                Kind::Reduce {
                    input: node.clone(),
                    reducer: Reducer::Unique {
                        subset,
                        keep_last,
                        schema: schema.clone(),
                    },
                    split_every,
                    split_out: split_out.max(1),
                },
                schema,
                split_out.max(1),
                None,
            ))
        })
    }

    /// Distinct rows over all columns.
    pub fn unique(&self) -> DataFrame {
        self.drop_duplicates(None)
    }

    /// Group by key columns.
    pub fn groupby<S: Into<String>>(&self, keys: impl IntoIterator<Item = S>) -> GroupBy {
        GroupBy {
            frame: self.clone(),
            keys: keys.into_iter().map(Into::into).collect(),
            split_every: DEFAULT_SPLIT_EVERY,
            split_out: 1,
            sort: true,
        }
    }

    // ------------------------------------------------------------ rows

    /// The first `n` rows, computed now. Reads the first partition, then
    /// more (doubling) only while fewer than `n` rows have been found; a
    /// reader with nothing between it and `head` reads at most `n` rows.
    pub fn head(&self, n: usize) -> Result<PlFrame> {
        self.head_with(n, ComputeOptions::new())
    }

    /// [`DataFrame::head`] with explicit compute options.
    pub fn head_with(&self, n: usize, options: impl Into<ComputeOptions>) -> Result<PlFrame> {
        let options = options.into();
        let node = self.node()?;
        let total = node.npartitions;
        let mut take = 1usize.min(total);
        loop {
            let head = Node::new(
                Kind::Head {
                    input: node.clone(),
                    n,
                    take,
                },
                node.schema.clone(),
                1,
                None,
            );
            let df = DataFrame::from_node(head).compute_frame(&options)?;
            if df.height() >= n || take >= total {
                return Ok(df);
            }
            take = (take * 2).min(total);
        }
    }

    /// The number of rows, computed now.
    pub fn len(&self) -> Result<usize> {
        self.len_with(ComputeOptions::new())
    }

    /// Whether the frame has no rows, computed now.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// [`DataFrame::len`] with explicit compute options.
    pub fn len_with(&self, options: impl Into<ComputeOptions>) -> Result<usize> {
        let node = self.node()?;
        if let Kind::Source(Source {
            data: SourceData::Parquet(p),
            predicate: None,
            limit: None,
            ..
        }) = &node.kind
        {
            // Parquet footers hold the row counts.
            return Ok(p.rows().iter().sum());
        }
        let first = match node.schema.iter_names().next() {
            Some(c) => c.to_string(),
            None => return Ok(0),
        };
        let counted = self.agg([Agg::new(first, AggKind::Size).alias("len")]);
        let df = counted.compute_frame(&options.into())?;
        let v = df.column("len").pl()?.get(0).pl()?;
        Ok(v.extract::<u64>().unwrap_or(0) as usize)
    }

    /// The partitions at `indices` (Dask's `df.partitions[...]`).
    pub fn partitions(&self, indices: impl IntoIterator<Item = usize>) -> DataFrame {
        let indices: Vec<usize> = indices.into_iter().collect();
        self.then(|node| {
            if let Some(bad) = indices.iter().find(|&&i| i >= node.npartitions) {
                return Err(Error::invalid(format!(
                    "partition {bad} requested from a frame of {} partitions",
                    node.npartitions
                )));
            }
            let divisions = node.divisions.as_ref().and_then(|d| {
                let contiguous = indices.windows(2).all(|w| w[1] == w[0] + 1);
                match (contiguous, indices.first(), indices.last()) {
                    (true, Some(&a), Some(&b)) => Some(Divisions {
                        column: d.column.clone(),
                        values: d.values.slice(a as i64, b - a + 2),
                    }),
                    _ => None,
                }
            });
            Ok(Node::new(
                Kind::Partitions {
                    input: node.clone(),
                    indices: indices.clone(),
                },
                node.schema.clone(),
                indices.len(),
                divisions,
            ))
        })
    }

    /// Changes the number of partitions: fewer by concatenating neighbours,
    /// more by cutting partitions into row ranges. Order is kept.
    pub fn repartition(&self, npartitions: usize) -> DataFrame {
        self.then(|node| {
            let n = node.npartitions;
            let k = npartitions.max(1);
            if k == n {
                return Ok(node.clone());
            }
            let (regroup, divisions) = if k < n {
                let groups: Vec<std::ops::Range<usize>> = (0..k).map(|j| (n * j / k)..(n * (j + 1) / k)).collect();
                let divisions = node.divisions.as_ref().map(|d| {
                    let idx: Vec<polars::prelude::IdxSize> = groups
                        .iter()
                        .map(|g| g.start as polars::prelude::IdxSize)
                        .chain([n as polars::prelude::IdxSize])
                        .collect();
                    let values = d
                        .values
                        .take(&polars::prelude::IdxCa::from_vec("idx".into(), idx))
                        .unwrap_or_else(|_| d.values.clone());
                    Divisions {
                        column: d.column.clone(),
                        values,
                    }
                });
                (Regroup::Merge(groups), divisions)
            } else {
                let pieces: Vec<usize> = (0..n).map(|i| k * (i + 1) / n - k * i / n).collect();
                (Regroup::Split(pieces), None)
            };
            Ok(Node::new(
                Kind::Regroup {
                    input: node.clone(),
                    regroup,
                },
                node.schema.clone(),
                k,
                divisions,
            ))
        })
    }

    /// Hash-partitions the rows on `on` into `npartitions` partitions: equal
    /// keys end up in one partition (Dask's `shuffle`).
    pub fn shuffle<S: Into<String>>(&self, on: impl IntoIterator<Item = S>, npartitions: Option<usize>) -> DataFrame {
        let on: Vec<String> = on.into_iter().map(Into::into).collect();
        self.then(|node| {
            check_columns(&node.schema, on.iter(), "shuffle")?;
            let k = npartitions.unwrap_or(node.npartitions).max(1);
            Ok(Node::new(
                Kind::Shuffle {
                    input: node.clone(),
                    on: on.clone(),
                },
                node.schema.clone(),
                k,
                None,
            ))
        })
    }

    /// Applies a function to every partition. The output schema is found by
    /// calling the function once on an empty frame of this frame's schema.
    ///
    /// A plain closure runs on the local schedulers. To run on a cluster,
    /// the function must be a `fn(polars::prelude::DataFrame) ->
    /// PolarsResult<polars::prelude::DataFrame>` marked `#[blockwise::task]`.
    pub fn map_partitions<F>(&self, f: F) -> DataFrame
    where
        F: Fn(PlFrame) -> PolarsResult<PlFrame> + Send + Sync + 'static,
    {
        let registered = blockwise_core::op::registered_name_of::<F>().map(str::to_string);
        let type_name = std::any::type_name::<F>().to_string();
        let op = Arc::new(MapPartitionsOp {
            func: Arc::new(f),
            registered,
            type_name,
        });
        self.then(|node| {
            let empty = polars_api::empty(&node.schema);
            let out = (op.func)(empty).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("map_partitions: the function failed on an empty frame of the input schema (used to find the output schema): {e}"),
                )
            })?;
            let schema = out.schema().clone();
            Ok(Node::new(Kind::MapPartitions { input: node.clone(), op: op.clone() }, schema, node.npartitions, None))
        })
    }

    /// [`DataFrame::map_partitions`] with the output schema given (the
    /// function is not called to find it).
    pub fn map_partitions_with_schema<F>(&self, f: F, schema: SchemaRef) -> DataFrame
    where
        F: Fn(PlFrame) -> PolarsResult<PlFrame> + Send + Sync + 'static,
    {
        let registered = blockwise_core::op::registered_name_of::<F>().map(str::to_string);
        let type_name = std::any::type_name::<F>().to_string();
        let op = Arc::new(MapPartitionsOp {
            func: Arc::new(f),
            registered,
            type_name,
        });
        self.then(|node| {
            Ok(Node::new(
                Kind::MapPartitions {
                    input: node.clone(),
                    op,
                },
                schema,
                node.npartitions,
                None,
            ))
        })
    }

    // ------------------------------------------------------------ joins and order

    /// Joins with `other` on equal key columns. The right side is broadcast
    /// (sent whole to every left partition) when it has at most
    /// `broadcast_max` partitions (default 1) and the join keeps only left
    /// rows (inner, left, semi, anti); otherwise both sides are hash-shuffled
    /// on their keys into `max(npartitions)` partitions.
    pub fn join(&self, other: &DataFrame, left_on: &[&str], right_on: &[&str], how: JoinHow) -> DataFrame {
        self.join_with(other, left_on, right_on, how, JoinOptions::default())
    }

    /// [`DataFrame::join`] with options.
    pub fn join_with(
        &self,
        other: &DataFrame,
        left_on: &[&str],
        right_on: &[&str],
        how: JoinHow,
        options: JoinOptions,
    ) -> DataFrame {
        let other = match other.node() {
            Ok(n) => n.clone(),
            Err(e) => return Self::from_error(e),
        };
        let left_on: Vec<String> = left_on.iter().map(|s| s.to_string()).collect();
        let right_on: Vec<String> = right_on.iter().map(|s| s.to_string()).collect();
        self.then(|node| {
            check_columns(&node.schema, left_on.iter(), "join (left keys)")?;
            check_columns(&other.schema, right_on.iter(), "join (right keys)")?;
            if left_on.len() != right_on.len() || left_on.is_empty() {
                return Err(Error::invalid(format!(
                    "join needs as many left keys as right keys (and at least one): {left_on:?} and {right_on:?}"
                )));
            }
            for (l, r) in left_on.iter().zip(&right_on) {
                let (ld, rd) = (
                    node.schema.get(l.as_str()).cloned().unwrap_or(DataType::Null),
                    other.schema.get(r.as_str()).cloned().unwrap_or(DataType::Null),
                );
                if ld != rd {
                    return Err(Error::new(
                        ErrorKind::TypeMismatch,
                        format!(
                            "join keys differ in dtype: left {l:?} is {ld}, right {r:?} is {rd}; cast one side first"
                        ),
                    ));
                }
            }
            let lf = polars_api::join(
                polars_api::lazy(polars_api::empty(&node.schema)),
                polars_api::lazy(polars_api::empty(&other.schema)),
                how,
                &left_on,
                &right_on,
                &options.suffix,
            );
            let schema = polars_api::schema_of(lf).map_err(polars_api::pl_err)?;
            let keeps_left_only = matches!(how, JoinHow::Inner | JoinHow::Left | JoinHow::Semi | JoinHow::Anti);
            let broadcast = keeps_left_only && other.npartitions <= options.broadcast_max;
            let n = if broadcast {
                node.npartitions
            } else {
                node.npartitions.max(other.npartitions)
            };
            Ok(Node::new(
                Kind::Join {
                    left: node.clone(),
                    right: other.clone(),
                    how,
                    left_on: left_on.clone(),
                    right_on: right_on.clone(),
                    suffix: options.suffix.clone(),
                    broadcast,
                },
                schema,
                n,
                if broadcast { node.divisions.clone() } else { None },
            ))
        })
    }

    /// Sorts by `by` (all ascending, or all descending): samples the first
    /// key now to choose partition boundaries, then range-shuffles and sorts
    /// each partition. The result has divisions on `by[0]`.
    pub fn sort_values(&self, by: &[&str], descending: bool) -> Result<DataFrame> {
        self.sort_values_with(by, descending, ComputeOptions::new())
    }

    /// [`DataFrame::sort_values`] with the options used for the sampling pass.
    pub fn sort_values_with(
        &self,
        by: &[&str],
        descending: bool,
        options: impl Into<ComputeOptions>,
    ) -> Result<DataFrame> {
        let node = self.node()?;
        let by: Vec<String> = by.iter().map(|s| s.to_string()).collect();
        check_columns(&node.schema, by.iter(), "sort_values")?;
        let first = by
            .first()
            .ok_or_else(|| Error::invalid("sort_values needs at least one column"))?
            .clone();
        let k = node.npartitions.max(1);
        let (bounds, ends) = crate::sort::boundaries(node, &first, k, descending, &options.into())?;
        if k == 1 {
            // One partition: sort it in place; its divisions are its ends.
            let sorted = self.step(Step::Sort { by, descending });
            let divisions = if descending {
                None
            } else {
                crate::sort::divisions(&first, &bounds, ends)?
            };
            return Ok(match (sorted.node(), divisions) {
                (Ok(n), Some(d)) => DataFrame::from_node(Node::new(
                    match &n.kind {
                        Kind::Steps { input, steps, schemas } => Kind::Steps {
                            input: input.clone(),
                            steps: steps.clone(),
                            schemas: schemas.clone(),
                        },
                        _ => return Ok(sorted),
                    },
                    n.schema.clone(),
                    n.npartitions,
                    Some(d),
                )),
                _ => sorted,
            });
        }
        let out_n = bounds.len() + 1;
        let divisions = if descending {
            None
        } else {
            crate::sort::divisions(&first, &bounds, ends)?
        };
        let divisions = divisions.filter(|d| d.values.len() == out_n + 1);
        Ok(DataFrame::from_node(Node::new(
            Kind::RangeShuffle {
                input: node.clone(),
                column: first,
                boundaries: bounds,
                descending,
                sort_by: by,
            },
            node.schema.clone(),
            out_n,
            divisions,
        )))
    }

    /// Sorts by `column` and records it as the index: the frame's divisions
    /// then bound each partition's values of `column`. Polars frames have no
    /// index; the column stays a column.
    pub fn set_index(&self, column: &str) -> Result<DataFrame> {
        if let Ok(node) = self.node()
            && node.divisions.as_ref().is_some_and(|d| d.column == column)
        {
            return Ok(self.clone());
        }
        self.sort_values(&[column], false)
    }

    // ------------------------------------------------------------ writing

    /// Writes one CSV file per partition into `dir` (`part.0.csv`, …), now.
    pub fn to_csv(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        self.write(
            dir.as_ref(),
            &|i| format!("part.{i}.csv"),
            WriteFormat::Csv(b','),
            ComputeOptions::new(),
        )
    }

    /// Writes one CSV file per partition named by `name(i)`.
    pub fn to_csv_with(
        &self,
        dir: impl AsRef<Path>,
        name: impl Fn(usize) -> String,
        options: impl Into<ComputeOptions>,
    ) -> Result<Vec<PathBuf>> {
        self.write(dir.as_ref(), &name, WriteFormat::Csv(b','), options.into())
    }

    /// Writes one Parquet file per partition into `dir` (`part.0.parquet`, …), now.
    pub fn to_parquet(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        self.write(
            dir.as_ref(),
            &|i| format!("part.{i}.parquet"),
            WriteFormat::Parquet,
            ComputeOptions::new(),
        )
    }

    /// Writes one Parquet file per partition named by `name(i)`.
    pub fn to_parquet_with(
        &self,
        dir: impl AsRef<Path>,
        name: impl Fn(usize) -> String,
        options: impl Into<ComputeOptions>,
    ) -> Result<Vec<PathBuf>> {
        self.write(dir.as_ref(), &name, WriteFormat::Parquet, options.into())
    }

    fn write(
        &self,
        dir: &Path,
        name: &dyn Fn(usize) -> String,
        format: WriteFormat,
        options: ComputeOptions,
    ) -> Result<Vec<PathBuf>> {
        let lowered = self.lowered()?;
        let n = self.node()?.npartitions;
        let paths = crate::io::write::targets(dir, n, name)?;
        let mut t = blockwise_core::Tokenizer::new();
        t.str(lowered.name.as_str()).str(&format!("{format:?}{paths:?}"));
        let wname = t.name("write");
        let tasks = paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    Key::new(wname.clone(), &[i as u32]),
                    Task::new(
                        ops::op(WriteTask {
                            path: p.clone(),
                            format,
                        }),
                        vec![Input::Key(lowered.key(i))],
                    ),
                )
            })
            .collect();
        let layer = Layer::new(
            wname.clone(),
            vec![lowered.layer.clone()],
            blockwise_core::LayerBody::Tasks(tasks),
        );
        let keys: Vec<Key> = (0..n).map(|i| Key::new(wname.clone(), &[i as u32])).collect();
        blockwise_local::compute_graph(&Graph::from_layer(layer), &keys, &options)?;
        Ok(paths.into_iter().map(PathBuf::from).collect())
    }

    // ------------------------------------------------------------ running

    fn lowered(&self) -> Result<Arc<Lowered>> {
        self.lowered
            .get_or_init(|| {
                let node = self.node()?;
                let optimized = crate::plan::optimize(node)?;
                crate::plan::lower(&optimized)
            })
            .clone()
    }

    /// Computes and returns the Polars frame (as `compute_with`).
    pub(crate) fn compute_frame(&self, options: &ComputeOptions) -> Result<PlFrame> {
        self.compute_with(options.clone())
    }
}

fn orderable(d: &DataType) -> bool {
    d.is_primitive_numeric() || d.is_bool() || d.is_temporal() || matches!(d, DataType::String)
}

/// Options of [`DataFrame::join_with`].
#[derive(Clone, Debug)]
pub struct JoinOptions {
    /// Right frames with at most this many partitions are broadcast.
    pub broadcast_max: usize,
    /// Appended to right column names that clash with left ones.
    pub suffix: String,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            broadcast_max: 1,
            suffix: "_right".into(),
        }
    }
}

/// A task that fails with a planning error, so that `compute()` of a frame
/// built with a mistake reports it.
struct FailOp(Error);

impl Op for FailOp {
    fn name(&self) -> &str {
        "frame.failed-plan"
    }
    fn call(&self, _args: &[Value]) -> Result<Value> {
        Err(self.0.clone())
    }
    fn encode_params(&self, _out: &mut Vec<u8>) -> Result<()> {
        Err(self.0.clone())
    }
    fn tokenize(&self, t: &mut blockwise_core::Tokenizer) {
        t.unique();
    }
}

fn failed_graph(e: &Error) -> (Graph, Key) {
    let name = Name::new(FAILED);
    let layer = Layer::single(name.clone(), vec![], Task::new(Arc::new(FailOp(e.clone())), vec![]));
    (Graph::from_layer(layer), Key::single(name))
}

impl Collection for DataFrame {
    type Output = PlFrame;

    fn graph(&self) -> Graph {
        match self.lowered() {
            Ok(l) => Graph::from_layer(l.layer.clone()),
            Err(e) => failed_graph(&e).0,
        }
    }

    fn output_keys(&self) -> Vec<Key> {
        match (self.lowered(), self.node()) {
            (Ok(l), Ok(n)) => (0..n.npartitions).map(|i| l.key(i)).collect(),
            (Err(e), _) | (_, Err(e)) => vec![failed_graph(&e).1],
        }
    }

    fn finalize(&self, values: Vec<Value>) -> Result<PlFrame> {
        let node = self.node()?;
        let frames: Vec<PlFrame> = values.iter().map(frame_of).collect::<Result<_>>()?;
        let df = polars_api::concat(frames, Some(&node.schema))?;
        let cols = polars_api::names(&node.schema);
        if polars_api::names(df.schema()) == cols {
            Ok(df)
        } else {
            polars_api::select_columns(&df, &cols)
        }
    }

    fn with_graph(&self, graph: Graph) -> Self {
        match (self.node(), self.lowered()) {
            (Ok(node), Ok(lowered)) => DataFrame::from_node(Node::new(
                Kind::Persisted {
                    graph,
                    name: lowered.name.clone(),
                },
                node.schema.clone(),
                node.npartitions,
                node.divisions.clone(),
            )),
            _ => self.clone(),
        }
    }
}

/// The layer name of the one task of a frame whose plan has an error.
const FAILED: &str = "failed-plan";

// ---------------------------------------------------------------- Series

/// One column of a lazy frame. `compute()` returns a Polars `Series`.
#[derive(Clone, Debug)]
pub struct Series {
    frame: DataFrame,
    name: String,
}

impl Series {
    /// The column's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The one-column frame behind this series.
    pub fn to_frame(&self) -> DataFrame {
        self.frame.clone()
    }

    /// The dtype.
    pub fn dtype(&self) -> Result<DataType> {
        Ok(self.frame.dtypes()?.into_iter().next().unwrap_or(DataType::Null))
    }

    /// The number of partitions.
    pub fn npartitions(&self) -> Result<usize> {
        self.frame.npartitions()
    }

    fn scalar(&self, kind: AggKind) -> Scalar {
        Scalar {
            frame: self.frame.agg([Agg::new(self.name.clone(), kind)]),
        }
    }

    /// Sum (nulls skipped).
    pub fn sum(&self) -> Scalar {
        self.scalar(AggKind::Sum)
    }
    /// Mean (nulls skipped).
    pub fn mean(&self) -> Scalar {
        self.scalar(AggKind::Mean)
    }
    /// Minimum.
    pub fn min(&self) -> Scalar {
        self.scalar(AggKind::Min)
    }
    /// Maximum.
    pub fn max(&self) -> Scalar {
        self.scalar(AggKind::Max)
    }
    /// Number of non-null values.
    pub fn count(&self) -> Scalar {
        self.scalar(AggKind::Count)
    }
    /// Standard deviation.
    pub fn std(&self, ddof: u8) -> Scalar {
        self.scalar(AggKind::Std(ddof))
    }
    /// Variance.
    pub fn var(&self, ddof: u8) -> Scalar {
        self.scalar(AggKind::Var(ddof))
    }
    /// Exact number of distinct values (null counts as a value).
    pub fn nunique(&self) -> Scalar {
        self.scalar(AggKind::NUnique)
    }

    /// Approximate number of distinct values, by HyperLogLog with `2^14`
    /// registers (standard error about 0.8%); constant memory per partition.
    pub fn approx_nunique(&self) -> Scalar {
        let name = self.name.clone();
        let frame = self.frame.then(|node| {
            let schema = Arc::new(polars_api::schema_from([(name.clone(), DataType::UInt64)]));
            Ok(Node::new(
                Kind::Reduce {
                    input: node.clone(),
                    reducer: Reducer::Hll {
                        column: name.clone(),
                        precision: 14,
                    },
                    split_every: DEFAULT_SPLIT_EVERY,
                    split_out: 1,
                },
                schema,
                1,
                None,
            ))
        });
        Scalar { frame }
    }

    /// Distinct values, in order of first appearance.
    pub fn unique(&self) -> Series {
        Series {
            frame: self.frame.drop_duplicates(None),
            name: self.name.clone(),
        }
    }

    /// Counts of each distinct value (null included): a frame with the
    /// value column and `count`, largest count first.
    pub fn value_counts(&self) -> DataFrame {
        let name = self.name.clone();
        let counted = self.frame.aggregate(
            vec![name.clone()],
            vec![Agg::new(name.clone(), AggKind::Size).alias("count")],
            false,
            DEFAULT_SPLIT_EVERY,
            1,
        );
        counted.step(Step::Sort {
            by: vec!["count".into(), name],
            descending: true,
        })
    }
}

impl Collection for Series {
    type Output = PlSeries;

    fn graph(&self) -> Graph {
        self.frame.graph()
    }
    fn output_keys(&self) -> Vec<Key> {
        self.frame.output_keys()
    }
    fn finalize(&self, values: Vec<Value>) -> Result<PlSeries> {
        let df = self.frame.finalize(values)?;
        Ok(df.column(&self.name).pl()?.as_materialized_series().clone())
    }
    fn with_graph(&self, graph: Graph) -> Self {
        Series {
            frame: self.frame.with_graph(graph),
            name: self.name.clone(),
        }
    }
}

// ---------------------------------------------------------------- Scalar

/// A single lazy value (a reduction of a series). `compute()` returns a
/// Polars `AnyValue`.
#[derive(Clone, Debug)]
pub struct Scalar {
    frame: DataFrame,
}

impl Scalar {
    /// The one-row, one-column frame behind this value.
    pub fn to_frame(&self) -> DataFrame {
        self.frame.clone()
    }
}

impl Collection for Scalar {
    type Output = AnyValue<'static>;

    fn graph(&self) -> Graph {
        self.frame.graph()
    }
    fn output_keys(&self) -> Vec<Key> {
        self.frame.output_keys()
    }
    fn finalize(&self, values: Vec<Value>) -> Result<AnyValue<'static>> {
        let df = self.frame.finalize(values)?;
        let col = df
            .columns()
            .first()
            .ok_or_else(|| Error::graph("a scalar reduction returned no column"))?;
        Ok(col.get(0).pl()?.into_static())
    }
    fn with_graph(&self, graph: Graph) -> Self {
        Scalar {
            frame: self.frame.with_graph(graph),
        }
    }
}

// ---------------------------------------------------------------- GroupBy

/// A frame grouped by key columns; aggregations run as tree reductions.
#[derive(Clone, Debug)]
pub struct GroupBy {
    frame: DataFrame,
    keys: Vec<String>,
    split_every: usize,
    split_out: usize,
    sort: bool,
}

impl GroupBy {
    /// Fan-in of the combine tree (default 8).
    pub fn split_every(mut self, n: usize) -> Self {
        self.split_every = n.max(2);
        self
    }

    /// Number of output partitions (default 1); groups are hashed on the
    /// keys into them. With more than one, the result is not sorted.
    pub fn split_out(mut self, n: usize) -> Self {
        self.split_out = n.max(1);
        self
    }

    /// Whether the result is sorted by the keys (default `true`, as pandas
    /// and Dask; only with `split_out(1)`).
    pub fn sort(mut self, yes: bool) -> Self {
        self.sort = yes;
        self
    }

    /// Several aggregations at once: `[agg::sum("x"), agg::mean("y").alias("m")]`.
    pub fn agg(&self, aggs: impl IntoIterator<Item = Agg>) -> DataFrame {
        self.frame.aggregate(
            self.keys.clone(),
            aggs.into_iter().collect(),
            self.sort && self.split_out == 1,
            self.split_every,
            self.split_out,
        )
    }

    /// One column of the groups.
    pub fn col(&self, name: &str) -> GroupedColumn {
        GroupedColumn {
            groupby: self.clone(),
            column: name.to_string(),
        }
    }

    fn all(&self, kind: AggKind, keep: impl Fn(&DataType) -> bool) -> DataFrame {
        let cols: Vec<String> = self
            .frame
            .columns_where(keep)
            .into_iter()
            .filter(|c| !self.keys.contains(c))
            .collect();
        self.agg(cols.into_iter().map(|c| Agg::new(c, kind)))
    }

    /// Sum of every numeric non-key column per group.
    pub fn sum(&self) -> DataFrame {
        self.all(AggKind::Sum, |d| d.is_primitive_numeric() || d.is_bool())
    }
    /// Mean of every numeric non-key column per group.
    pub fn mean(&self) -> DataFrame {
        self.all(AggKind::Mean, |d| d.is_primitive_numeric() || d.is_bool())
    }
    /// Minimum of every orderable non-key column per group.
    pub fn min(&self) -> DataFrame {
        self.all(AggKind::Min, orderable)
    }
    /// Maximum of every orderable non-key column per group.
    pub fn max(&self) -> DataFrame {
        self.all(AggKind::Max, orderable)
    }
    /// Non-null count of every non-key column per group.
    pub fn count(&self) -> DataFrame {
        self.all(AggKind::Count, |_| true)
    }
    /// Rows per group: the keys and a `size` column.
    pub fn size(&self) -> DataFrame {
        let first = self.keys.first().cloned().unwrap_or_default();
        self.agg([Agg::new(first, AggKind::Size)])
    }
}

/// One column of a [`GroupBy`]: `df.groupby(["k"]).col("v").mean()`.
#[derive(Clone, Debug)]
pub struct GroupedColumn {
    groupby: GroupBy,
    column: String,
}

impl GroupedColumn {
    fn one(&self, kind: AggKind) -> DataFrame {
        self.groupby.agg([Agg::new(self.column.clone(), kind)])
    }
    /// Sum per group.
    pub fn sum(&self) -> DataFrame {
        self.one(AggKind::Sum)
    }
    /// Mean per group.
    pub fn mean(&self) -> DataFrame {
        self.one(AggKind::Mean)
    }
    /// Non-null count per group.
    pub fn count(&self) -> DataFrame {
        self.one(AggKind::Count)
    }
    /// Minimum per group.
    pub fn min(&self) -> DataFrame {
        self.one(AggKind::Min)
    }
    /// Maximum per group.
    pub fn max(&self) -> DataFrame {
        self.one(AggKind::Max)
    }
    /// Standard deviation per group.
    pub fn std(&self, ddof: u8) -> DataFrame {
        self.one(AggKind::Std(ddof))
    }
    /// Variance per group.
    pub fn var(&self, ddof: u8) -> DataFrame {
        self.one(AggKind::Var(ddof))
    }
    /// First value per group, in row order.
    pub fn first(&self) -> DataFrame {
        self.one(AggKind::First)
    }
    /// Last value per group, in row order.
    pub fn last(&self) -> DataFrame {
        self.one(AggKind::Last)
    }
    /// Distinct values per group.
    pub fn nunique(&self) -> DataFrame {
        self.one(AggKind::NUnique)
    }
}

// ---------------------------------------------------------------- describe

/// Builds the `describe()` frame from the aggregate row and the merged,
/// sorted samples of each column.
pub(crate) fn assemble_describe(stats: &PlFrame, columns: &[String], samples: Vec<PlFrame>) -> Result<PlFrame> {
    let get = |name: String| -> Result<Option<f64>> {
        let v = stats.column(&name).pl()?.get(0).pl()?;
        Ok(v.extract::<f64>())
    };
    let labels = ["count", "null_count", "mean", "std", "min", "25%", "50%", "75%", "max"];
    let mut cols = vec![PlSeries::new("statistic".into(), labels.to_vec()).into()];
    for (c, sample) in columns.iter().zip(samples) {
        let count = get(format!("{c}__count"))?;
        let size = get(format!("{c}__size"))?;
        let nulls = match (count, size) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let sorted = polars_api::collect(polars_api::sort(
            polars_api::lazy(sample),
            &["value".to_string()],
            false,
        ))
        .pl()?;
        let q = |p: f64| -> Result<Option<f64>> { weighted_quantile(&sorted, p) };
        let values = vec![
            count,
            nulls,
            get(format!("{c}__mean"))?,
            get(format!("{c}__std"))?,
            get(format!("{c}__min"))?,
            q(0.25)?,
            q(0.5)?,
            q(0.75)?,
            get(format!("{c}__max"))?,
        ];
        cols.push(PlSeries::new(c.as_str().into(), values).into());
    }
    PlFrame::new_infer_height(cols).pl()
}

/// The "nearest" quantile of a sorted weighted sample: exact when every
/// weight is one.
fn weighted_quantile(sorted: &PlFrame, p: f64) -> Result<Option<f64>> {
    let n = sorted.height();
    if n == 0 {
        return Ok(None);
    }
    let values = sorted
        .column("value")
        .pl()?
        .as_materialized_series()
        .cast(&DataType::Float64)
        .pl()?;
    let values: Vec<Option<f64>> = values.f64().pl()?.iter().collect();
    let weights: Vec<f64> = sorted
        .column("weight")
        .pl()?
        .as_materialized_series()
        .f64()
        .pl()?
        .iter()
        .map(|w| w.unwrap_or(0.0))
        .collect();
    if weights.iter().all(|&w| w == 1.0) {
        let idx = ((n - 1) as f64 * p).round() as usize;
        return Ok(values[idx.min(n - 1)]);
    }
    let total: f64 = weights.iter().sum();
    let target = p * total;
    let mut cum = 0.0;
    for (v, w) in values.iter().zip(&weights) {
        cum += w;
        if cum >= target {
            return Ok(*v);
        }
    }
    Ok(values[n - 1])
}
