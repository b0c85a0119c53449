//! Tree reductions: aggregations, group-bys, distinct rows, sketches.
//!
//! Every reduction has three stages, as Dask's `apply_concat_apply`:
//!
//! 1. **partial**, per input partition: a small summary (per group when
//!    there are keys) — sums, counts, minima, maxima, first and last values,
//!    sets of distinct values, HyperLogLog registers, samples;
//! 2. **combine**, over up to `split_every` summaries at a time, level after
//!    level: the same kind of summary, of the union;
//! 3. **finalize**: the answer from the last summaries.
//!
//! Variance and standard deviation do not combine sums of squares (which
//! lose every digit when the mean is large against the spread); each summary
//! holds a count, a mean and the sum of squared deviations from that mean
//! (`M2`), combined with Chan's parallel formula
//! `M2 = Σ M2ᵢ + Σ nᵢ (meanᵢ − mean)²`.
//!
//! With `split_out = k > 1` the partial summaries are hashed on the group
//! keys into `k` outputs, and each output is reduced on its own: the result
//! has `k` partitions, each holding whole groups.

use std::sync::Arc;

use blockwise_core::value::Tuple;
use blockwise_core::{Error, ErrorKind, Result, Value};
use polars::prelude::{DataFrame as PlFrame, DataType, Expr, LazyFrame, NamedFrom, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::ops::{FrameTask, frames_of, register_task};
use crate::partition::{frame_of, value_of};
use crate::polars_api::{self, PlResultExt, agg as ex};

/// What an aggregation computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggKind {
    /// Sum of the values (nulls skipped).
    Sum,
    /// Mean of the values (nulls skipped).
    Mean,
    /// Number of non-null values.
    Count,
    /// Number of rows, nulls included.
    Size,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Standard deviation with `ddof` delta degrees of freedom.
    Std(u8),
    /// Variance with `ddof` delta degrees of freedom.
    Var(u8),
    /// First value, in row order.
    First,
    /// Last value, in row order.
    Last,
    /// Number of distinct values (null counts as one value, as in Polars).
    NUnique,
}

impl AggKind {
    fn word(&self) -> &'static str {
        match self {
            AggKind::Sum => "sum",
            AggKind::Mean => "mean",
            AggKind::Count => "count",
            AggKind::Size => "size",
            AggKind::Min => "min",
            AggKind::Max => "max",
            AggKind::Std(_) => "std",
            AggKind::Var(_) => "var",
            AggKind::First => "first",
            AggKind::Last => "last",
            AggKind::NUnique => "nunique",
        }
    }

    /// The plain Polars expression of this aggregation, run on whole data
    /// (used for the output schema and by tests as the reference).
    pub(crate) fn polars_expr(&self, column: &str) -> Expr {
        let c = ex::c(column);
        match self {
            AggKind::Sum => c.sum(),
            AggKind::Mean => c.mean(),
            AggKind::Count => c.count(),
            AggKind::Size => ex::size(),
            AggKind::Min => c.min(),
            AggKind::Max => c.max(),
            AggKind::Std(d) => c.std(*d),
            AggKind::Var(d) => c.var(*d),
            AggKind::First => c.first(),
            AggKind::Last => c.last(),
            AggKind::NUnique => c.n_unique(),
        }
    }
}

/// One aggregation: a kind, the column it reads, the name of its output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agg {
    pub(crate) column: String,
    pub(crate) kind: AggKind,
    pub(crate) alias: Option<String>,
}

impl Agg {
    /// An aggregation of `kind` over `column`.
    pub fn new(column: impl Into<String>, kind: AggKind) -> Self {
        Agg {
            column: column.into(),
            kind,
            alias: None,
        }
    }

    /// Names the output column (default: the input column's name, or
    /// `"size"` for [`AggKind::Size`]).
    pub fn alias(mut self, name: impl Into<String>) -> Self {
        self.alias = Some(name.into());
        self
    }

    /// The output column name.
    pub fn output_name(&self) -> String {
        match (&self.alias, self.kind) {
            (Some(a), _) => a.clone(),
            (None, AggKind::Size) => "size".to_string(),
            (None, _) => self.column.clone(),
        }
    }

    /// The input column.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// What is computed.
    pub fn kind(&self) -> AggKind {
        self.kind
    }
}

/// The aggregations of a group-by (or of a whole frame, with no keys).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AggPlan {
    pub(crate) keys: Vec<String>,
    pub(crate) aggs: Vec<Agg>,
    /// Sort the result by the keys (Dask's and pandas' `sort=True`).
    pub(crate) sort: bool,
    /// The schema Polars gives the same aggregation on whole data: the result
    /// is cast to it, so dtypes match Polars exactly.
    pub(crate) out_schema: SchemaRef,
}

impl AggPlan {
    /// Builds the plan and its output schema from the input schema.
    pub(crate) fn new(keys: Vec<String>, aggs: Vec<Agg>, sort: bool, input: &SchemaRef) -> Result<AggPlan> {
        let what = format!(
            "aggregate [{}]",
            aggs.iter()
                .map(|a| format!("{}({})", a.kind.word(), a.column))
                .collect::<Vec<_>>()
                .join(", ")
        );
        crate::step::check_columns(input, keys.iter(), &what)?;
        crate::step::check_columns(
            input,
            aggs.iter().filter(|a| a.kind != AggKind::Size).map(|a| &a.column),
            &what,
        )?;
        let mut seen = std::collections::BTreeSet::new();
        for name in keys.iter().cloned().chain(aggs.iter().map(Agg::output_name)) {
            if !seen.insert(name.clone()) {
                return Err(Error::invalid(format!(
                    "two outputs of {what} are named {name:?}: give one of them another name with `.alias(..)`"
                )));
            }
        }
        if aggs.is_empty() {
            return Err(Error::invalid("an aggregation needs at least one aggregate"));
        }
        let exprs: Vec<Expr> = aggs
            .iter()
            .map(|a| a.kind.polars_expr(&a.column).alias(a.output_name()))
            .collect();
        let lf = polars_api::lazy(polars_api::empty(input));
        let lf = if keys.is_empty() {
            lf.select(exprs)
        } else {
            lf.group_by(keys.iter().map(|k| ex::c(k)).collect::<Vec<_>>())
                .agg(exprs)
        };
        let out_schema = polars_api::schema_of(lf).map_err(|e| crate::step::explain_polars_error(e, input, &what))?;
        Ok(AggPlan {
            keys,
            aggs,
            sort,
            out_schema,
        })
    }

    /// The columns the aggregation reads.
    pub(crate) fn inputs(&self) -> Vec<String> {
        let mut cols = self.keys.clone();
        for a in &self.aggs {
            if a.kind != AggKind::Size && !cols.contains(&a.column) {
                cols.push(a.column.clone());
            }
        }
        cols
    }

    pub(crate) fn describe(&self) -> String {
        let aggs = self
            .aggs
            .iter()
            .map(|a| format!("{}: {}({})", a.output_name(), a.kind.word(), a.column))
            .collect::<Vec<_>>()
            .join(", ");
        if self.keys.is_empty() {
            format!("[{aggs}]")
        } else {
            format!("by {:?} [{aggs}]", self.keys)
        }
    }

    fn grouped(&self) -> bool {
        !self.keys.is_empty()
    }

    fn run_grouped(&self, lf: LazyFrame, exprs: Vec<Expr>) -> LazyFrame {
        if self.grouped() {
            lf.group_by(self.keys.iter().map(|k| ex::c(k)).collect::<Vec<_>>())
                .agg(exprs)
        } else {
            lf.select(exprs)
        }
    }

    pub(crate) fn partial(&self, df: PlFrame) -> Result<PlFrame> {
        let mut exprs = Vec::new();
        for (i, a) in self.aggs.iter().enumerate() {
            let c = || ex::c(&a.column);
            let p = |s: &str| format!("__p{i}_{s}");
            match a.kind {
                AggKind::Sum => exprs.push(c().sum().alias(p("s"))),
                AggKind::Count => exprs.push(c().count().alias(p("n"))),
                AggKind::Size => exprs.push(ex::size().alias(p("n"))),
                AggKind::Mean => {
                    exprs.push(c().sum().alias(p("s")));
                    exprs.push(c().count().alias(p("n")));
                }
                AggKind::Std(_) | AggKind::Var(_) => {
                    let x = || c().cast(ex::f64_type());
                    exprs.push(c().count().alias(p("n")));
                    exprs.push(x().mean().alias(p("m")));
                    exprs.push((x() - x().mean()).pow(2).sum().alias(p("q")));
                }
                AggKind::Min => exprs.push(c().min().alias(p("v"))),
                AggKind::Max => exprs.push(c().max().alias(p("v"))),
                AggKind::First => exprs.push(c().first().alias(p("v"))),
                AggKind::Last => exprs.push(c().last().alias(p("v"))),
                AggKind::NUnique => exprs.push(ex::set_of(c(), self.grouped()).alias(p("set"))),
            }
        }
        let lf = self.run_grouped(polars_api::lazy(df), exprs);
        let plain = self.aggs.iter().all(|a| {
            matches!(
                a.kind,
                AggKind::Sum | AggKind::Count | AggKind::Size | AggKind::Mean | AggKind::Min | AggKind::Max
            )
        });
        if self.grouped() && plain {
            polars_api::collect_streaming(lf).pl()
        } else {
            polars_api::collect(lf).pl()
        }
    }

    fn combine(&self, parts: Vec<PlFrame>) -> Result<PlFrame> {
        let df = polars_api::concat(parts, None)?;
        let mut pre = Vec::new();
        let mut exprs = Vec::new();
        for (i, a) in self.aggs.iter().enumerate() {
            let p = |s: &str| format!("__p{i}_{s}");
            let c = |s: &str| ex::c(&p(s));
            match a.kind {
                AggKind::Sum => exprs.push(c("s").sum().alias(p("s"))),
                AggKind::Count | AggKind::Size => exprs.push(c("n").sum().alias(p("n"))),
                AggKind::Mean => {
                    exprs.push(c("s").sum().alias(p("s")));
                    exprs.push(c("n").sum().alias(p("n")));
                }
                AggKind::Std(_) | AggKind::Var(_) => {
                    let n = || c("n").cast(ex::f64_type());
                    let total_mean = ex::over_keys((n() * c("m")).sum(), &self.keys).pl()?
                        / ex::over_keys(n().sum(), &self.keys).pl()?;
                    pre.push(total_mean.alias(p("M")));
                    exprs.push(c("n").sum().alias(p("n")));
                    exprs.push(((n() * c("m")).sum() / n().sum()).alias(p("m")));
                    exprs.push((c("q") + n() * (c("m") - c("M")).pow(2)).sum().alias(p("q")));
                }
                AggKind::Min => exprs.push(c("v").min().alias(p("v"))),
                AggKind::Max => exprs.push(c("v").max().alias(p("v"))),
                AggKind::First => exprs.push(c("v").first().alias(p("v"))),
                AggKind::Last => exprs.push(c("v").last().alias(p("v"))),
                AggKind::NUnique => exprs.push(ex::union_of_sets(c("set"), self.grouped()).alias(p("set"))),
            }
        }
        let mut lf = polars_api::lazy(df);
        if !pre.is_empty() {
            lf = lf.with_columns(pre);
        }
        polars_api::collect(self.run_grouped(lf, exprs)).pl()
    }

    fn finalize(&self, parts: Vec<PlFrame>) -> Result<PlFrame> {
        let df = self.combine(parts)?;
        let mut exprs: Vec<Expr> = self.keys.iter().map(|k| ex::c(k)).collect();
        for (i, a) in self.aggs.iter().enumerate() {
            let p = |s: &str| format!("__p{i}_{s}");
            let c = |s: &str| ex::c(&p(s));
            let f = |e: Expr| e.cast(ex::f64_type());
            let e = match a.kind {
                AggKind::Sum => c("s"),
                AggKind::Count | AggKind::Size => c("n"),
                AggKind::Mean => ex::when_else_null(c("n").gt(polars::prelude::lit(0)), f(c("s")) / f(c("n"))),
                AggKind::Var(d) => ex::when_else_null(
                    c("n").cast(ex::f64_type()).gt(polars::prelude::lit(d as f64)),
                    c("q") / (f(c("n")) - polars::prelude::lit(d as f64)),
                ),
                AggKind::Std(d) => ex::when_else_null(
                    c("n").cast(ex::f64_type()).gt(polars::prelude::lit(d as f64)),
                    ex::sqrt(c("q") / (f(c("n")) - polars::prelude::lit(d as f64))),
                ),
                AggKind::Min | AggKind::Max | AggKind::First | AggKind::Last => c("v"),
                AggKind::NUnique => ex::set_len(c("set")),
            };
            let dtype = self
                .out_schema
                .get(a.output_name().as_str())
                .cloned()
                .unwrap_or(DataType::Null);
            exprs.push(e.cast(dtype).alias(a.output_name()));
        }
        let mut lf = polars_api::lazy(df).select(exprs);
        if self.sort && self.grouped() {
            lf = polars_api::sort(lf, &self.keys, false);
        }
        polars_api::collect(lf).pl()
    }
}

/// A reduction: what each stage does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Reducer {
    /// Aggregations, grouped or not.
    Agg(AggPlan),
    /// Distinct rows (on `subset`, or all columns), first or last kept.
    Unique {
        subset: Option<Vec<String>>,
        keep_last: bool,
        schema: SchemaRef,
    },
    /// Approximate distinct count of a column with HyperLogLog.
    Hll { column: String, precision: u8 },
    /// A weighted sample of a column's non-null values, sorted (for
    /// quantiles and sort boundaries): columns `value`, `weight`.
    Sample { column: String, size: usize },
    /// `describe()`: aggregates and samples of numeric columns.
    Describe {
        agg: AggPlan,
        columns: Vec<String>,
        size: usize,
    },
}

impl Reducer {
    /// The keys a `split_out` shuffle hashes on (`None`: cannot split).
    pub(crate) fn split_keys(&self) -> Option<Vec<String>> {
        match self {
            Reducer::Agg(plan) if !plan.keys.is_empty() => Some(plan.keys.clone()),
            Reducer::Unique { subset, schema, .. } => Some(subset.clone().unwrap_or_else(|| polars_api::names(schema))),
            _ => None,
        }
    }

    /// The columns the reduction reads (`None`: all).
    pub(crate) fn inputs(&self) -> Option<Vec<String>> {
        match self {
            Reducer::Agg(plan) => Some(plan.inputs()),
            Reducer::Unique { .. } => None,
            Reducer::Hll { column, .. } | Reducer::Sample { column, .. } => Some(vec![column.clone()]),
            Reducer::Describe { agg, .. } => Some(agg.inputs()),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Reducer::Agg(plan) => format!("aggregate {}", plan.describe()),
            Reducer::Unique { subset, keep_last, .. } => {
                format!("unique {subset:?} keep {}", if *keep_last { "last" } else { "first" })
            }
            Reducer::Hll { column, precision } => format!("approx_nunique {column:?} (HyperLogLog, p={precision})"),
            Reducer::Sample { column, size } => format!("sample {column:?} ({size} values per partition)"),
            Reducer::Describe { columns, .. } => format!("describe {columns:?}"),
        }
    }

    pub(crate) fn partial(&self, df: PlFrame) -> Result<Value> {
        match self {
            Reducer::Agg(plan) => Ok(value_of(plan.partial(df)?)),
            Reducer::Unique { subset, keep_last, .. } => Ok(value_of(unique_frame(df, subset, *keep_last)?)),
            Reducer::Hll { column, precision } => Ok(Arc::new(hll_registers(&df, column, *precision)?)),
            Reducer::Sample { column, size } => Ok(value_of(sample(&df, column, *size)?)),
            Reducer::Describe { agg, columns, size } => {
                let mut parts = vec![value_of(agg.partial(df.clone())?)];
                for c in columns {
                    parts.push(value_of(sample(&df, c, *size)?));
                }
                Ok(Arc::new(Tuple(parts)))
            }
        }
    }

    pub(crate) fn combine(&self, parts: &[Value]) -> Result<Value> {
        match self {
            Reducer::Agg(plan) => Ok(value_of(plan.combine(frames_of(parts)?)?)),
            Reducer::Unique {
                subset,
                keep_last,
                schema,
            } => {
                let df = polars_api::concat(frames_of(parts)?, Some(schema))?;
                Ok(value_of(unique_frame(df, subset, *keep_last)?))
            }
            Reducer::Hll { .. } => {
                let mut acc: Vec<u8> = Vec::new();
                for p in parts {
                    let regs = registers_of(p)?;
                    if acc.is_empty() {
                        acc = regs;
                    } else {
                        for (a, b) in acc.iter_mut().zip(regs) {
                            *a = (*a).max(b);
                        }
                    }
                }
                Ok(Arc::new(acc))
            }
            Reducer::Sample { .. } => Ok(value_of(polars_api::concat(frames_of(parts)?, None)?)),
            Reducer::Describe { agg, columns, .. } => {
                let tuples: Vec<Vec<Value>> = parts.iter().map(tuple_parts).collect::<Result<_>>()?;
                let mut out = Vec::new();
                let aggs: Vec<PlFrame> = tuples.iter().map(|t| frame_of(&t[0])).collect::<Result<_>>()?;
                out.push(value_of(agg.combine(aggs)?));
                for j in 0..columns.len() {
                    let samples: Vec<PlFrame> = tuples.iter().map(|t| frame_of(&t[j + 1])).collect::<Result<_>>()?;
                    out.push(value_of(polars_api::concat(samples, None)?));
                }
                Ok(Arc::new(Tuple(out)))
            }
        }
    }

    pub(crate) fn finalize(&self, parts: &[Value]) -> Result<PlFrame> {
        match self {
            Reducer::Agg(plan) => plan.finalize(frames_of(parts)?),
            Reducer::Unique { .. } => frame_of(&self.combine(parts)?),
            Reducer::Hll { column, precision } => {
                let regs = registers_of(&self.combine(parts)?)?;
                let estimate = hll_estimate(&regs, *precision).round() as u64;
                let s = polars::prelude::Series::new(column.as_str().into(), [estimate]);
                let df = polars::prelude::DataFrame::new_infer_height(vec![s.into()]).pl()?;
                Ok(df)
            }
            Reducer::Sample { .. } => {
                let df = frame_of(&self.combine(parts)?)?;
                polars_api::collect(polars_api::sort(polars_api::lazy(df), &["value".to_string()], false)).pl()
            }
            Reducer::Describe { agg, columns, .. } => {
                let combined = tuple_parts(&self.combine(parts)?)?;
                let stats = agg.finalize(vec![frame_of(&combined[0])?])?;
                let samples: Vec<PlFrame> = combined[1..].iter().map(frame_of).collect::<Result<_>>()?;
                crate::frame::assemble_describe(&stats, columns, samples)
            }
        }
    }
}

fn tuple_parts(v: &Value) -> Result<Vec<Value>> {
    use blockwise_core::value::{Decode, Encoded, TUPLE_CODEC};
    if let Some(t) = v.downcast_ref::<Tuple>() {
        return Ok(t.0.clone());
    }
    if let Some(enc) = v.downcast_ref::<Encoded>()
        && enc.codec == TUPLE_CODEC
    {
        return Ok(Tuple::decode(&enc.bytes)?.0);
    }
    Err(Error::new(
        ErrorKind::TypeMismatch,
        format!("expected a tuple of summaries, found {}", v.describe()),
    ))
}

fn unique_frame(df: PlFrame, subset: &Option<Vec<String>>, keep_last: bool) -> Result<PlFrame> {
    polars_api::collect(polars_api::unique(polars_api::lazy(df), subset.as_deref(), keep_last)).pl()
}

// ---------------------------------------------------------------- HyperLogLog

fn registers_of(v: &Value) -> Result<Vec<u8>> {
    use blockwise_core::FromValue;
    Vec::<u8>::from_value(v)
}

/// A 64-bit finalizer (splitmix64): spreads hashes whose entropy sits in a
/// few bits before their leading zeros are counted.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `2^p` HyperLogLog registers of one column of a partition.
pub(crate) fn hll_registers(df: &PlFrame, column: &str, p: u8) -> Result<Vec<u8>> {
    let m = 1usize << p;
    let mut regs = vec![0u8; m];
    for h in polars_api::hash_rows(df, &[column.to_string()])? {
        let h = mix(h);
        let idx = (h >> (64 - p)) as usize;
        let w = (h << p) | (1u64 << (p - 1));
        let rho = (w.leading_zeros() + 1) as u8;
        if regs[idx] < rho {
            regs[idx] = rho;
        }
    }
    Ok(regs)
}

/// The HyperLogLog estimate from registers, with linear counting for small
/// cardinalities (Flajolet et al., 2007).
pub(crate) fn hll_estimate(regs: &[u8], p: u8) -> f64 {
    let m = (1usize << p) as f64;
    if regs.is_empty() {
        return 0.0;
    }
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let sum: f64 = regs.iter().map(|&r| 2f64.powi(-(r as i32))).sum();
    let raw = alpha * m * m / sum;
    let zeros = regs.iter().filter(|&&r| r == 0).count();
    if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    }
}

// ---------------------------------------------------------------- samples

/// Up to `size` evenly spaced values of the sorted non-null values of
/// `column`, each weighted by how many rows it stands for.
pub(crate) fn sample(df: &PlFrame, column: &str, size: usize) -> Result<PlFrame> {
    let lf = polars_api::lazy(df.clone()).select([ex::c(column).drop_nulls().alias("value")]);
    let sorted = polars_api::collect(polars_api::sort(lf, &["value".to_string()], false)).pl()?;
    let n = sorted.height();
    let size = size.max(2);
    let (picked, weight) = if n <= size {
        (sorted, 1.0)
    } else {
        let idx: Vec<polars::prelude::IdxSize> = (0..size)
            .map(|i| ((i * (n - 1)) / (size - 1)) as polars::prelude::IdxSize)
            .collect();
        (polars_api::take_rows(&sorted, idx)?, n as f64 / size as f64)
    };
    let h = picked.height();
    let w = polars::prelude::Series::new("weight".into(), vec![weight; h]);
    let mut out = picked;
    out.with_column(w.into()).pl()?;
    Ok(out)
}

// ---------------------------------------------------------------- ops

/// Stage 1 of a reduction, on one partition.
#[derive(Serialize, Deserialize)]
pub(crate) struct PartialTask {
    pub(crate) reducer: Reducer,
}

impl FrameTask for PartialTask {
    const NAME: &'static str = "frame.reduce_partial";
    fn run(&self, args: &[Value]) -> Result<Value> {
        let df = frame_of(
            args.first()
                .ok_or_else(|| Error::graph("reduce_partial needs a partition"))?,
        )?;
        self.reducer.partial(df)
    }
}
register_task!(PartialTask);

/// Stage 2: combines summaries.
#[derive(Serialize, Deserialize)]
pub(crate) struct CombineTask {
    pub(crate) reducer: Reducer,
}

impl FrameTask for CombineTask {
    const NAME: &'static str = "frame.reduce_combine";
    fn run(&self, args: &[Value]) -> Result<Value> {
        self.reducer.combine(args)
    }
}
register_task!(CombineTask);

/// Stage 3: the answer, as a partition.
#[derive(Serialize, Deserialize)]
pub(crate) struct FinalizeTask {
    pub(crate) reducer: Reducer,
}

impl FrameTask for FinalizeTask {
    const NAME: &'static str = "frame.reduce_finalize";
    fn run(&self, args: &[Value]) -> Result<Value> {
        Ok(value_of(self.reducer.finalize(args)?))
    }
}
register_task!(FinalizeTask);
