//! Row and column operations applied to each partition on its own.
//!
//! A [`Step`] is data, not code: Polars expressions and column names. That is
//! what lets a chain of steps ship to a worker (serialized with Polars' serde
//! support), lets the planner see which columns a step reads (projection
//! pushdown) and whether a filter may move before it (predicate pushdown), and
//! lets the output schema be known without computing anything (the steps are
//! run on an empty frame of the input schema).

use std::collections::BTreeSet;

use blockwise_core::{Error, ErrorKind, Result};
use polars::prelude::{DataType, Expr, LazyFrame, PolarsError, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::polars_api;

/// One per-partition operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Step {
    /// `select(exprs)`.
    Select(Vec<Expr>),
    /// `filter(predicate)`.
    Filter(Expr),
    /// `with_columns(exprs)`.
    WithColumns(Vec<Expr>),
    /// Renames `(old, new)`.
    Rename(Vec<(String, String)>),
    /// Drops columns.
    Drop(Vec<String>),
    /// Casts columns (strict: a value that does not fit is an error).
    Cast(Vec<(String, DataType)>),
    /// Replaces nulls by `value` in `subset` (all columns when `None`).
    FillNull {
        /// The replacement (a literal or an expression).
        value: Expr,
        /// The columns to fill.
        subset: Option<Vec<String>>,
    },
    /// Drops rows with a null in `subset` (any column when `None`).
    DropNulls(Option<Vec<String>>),
    /// Sorts the partition.
    Sort {
        /// Sort keys.
        by: Vec<String>,
        /// Largest first.
        descending: bool,
    },
    /// Drops duplicate rows within the partition, keeping the first (or last).
    Unique {
        /// Columns that define a duplicate (all when `None`).
        subset: Option<Vec<String>>,
        /// Keep the last occurrence instead of the first.
        keep_last: bool,
    },
    /// Keeps the columns named, in that order.
    Project(Vec<String>),
}

impl Step {
    /// Adds this step to a lazy query.
    pub(crate) fn apply(&self, lf: LazyFrame) -> LazyFrame {
        match self {
            Step::Select(exprs) => lf.select(exprs.clone()),
            Step::Filter(pred) => lf.filter(pred.clone()),
            Step::WithColumns(exprs) => lf.with_columns(exprs.clone()),
            Step::Rename(pairs) => polars_api::rename(lf, pairs),
            Step::Drop(cols) => polars_api::drop(lf, cols),
            Step::Cast(pairs) => polars_api::cast(lf, pairs),
            Step::FillNull { value, subset } => match subset {
                None => lf.fill_null(value.clone()),
                Some(cols) => lf.with_columns(
                    cols.iter()
                        .map(|c| polars::prelude::col(c.as_str()).fill_null(value.clone()))
                        .collect::<Vec<_>>(),
                ),
            },
            Step::DropNulls(subset) => polars_api::drop_nulls(lf, subset.as_deref()),
            Step::Sort { by, descending } => polars_api::sort(lf, by, *descending),
            Step::Unique { subset, keep_last } => polars_api::unique(lf, subset.as_deref(), *keep_last),
            Step::Project(cols) => lf.select(
                cols.iter()
                    .map(|c| polars::prelude::col(c.as_str()))
                    .collect::<Vec<_>>(),
            ),
        }
    }

    /// A one-line description for `explain()`.
    pub(crate) fn describe(&self) -> String {
        let exprs = |es: &[Expr]| es.iter().map(polars_api::expr_text).collect::<Vec<_>>().join(", ");
        match self {
            Step::Select(es) => format!("select [{}]", exprs(es)),
            Step::Filter(p) => format!("filter {}", polars_api::expr_text(p)),
            Step::WithColumns(es) => format!("with_columns [{}]", exprs(es)),
            Step::Rename(pairs) => format!(
                "rename [{}]",
                pairs
                    .iter()
                    .map(|(a, b)| format!("{a} → {b}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::Drop(cols) => format!("drop {cols:?}"),
            Step::Cast(pairs) => format!(
                "cast [{}]",
                pairs
                    .iter()
                    .map(|(c, d)| format!("{c}: {d}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::FillNull { value, subset } => format!("fill_null {} in {subset:?}", polars_api::expr_text(value)),
            Step::DropNulls(subset) => format!("drop_nulls {subset:?}"),
            Step::Sort { by, descending } => format!("sort {by:?}{}", if *descending { " descending" } else { "" }),
            Step::Unique { subset, keep_last } => {
                format!("unique {subset:?} keep {}", if *keep_last { "last" } else { "first" })
            }
            Step::Project(cols) => format!("project {cols:?}"),
        }
    }

    /// The columns this step needs from its input to produce `after` (the
    /// columns needed from its output). `input` is the step's input schema.
    pub(crate) fn needs(&self, after: &BTreeSet<String>, input: &SchemaRef) -> BTreeSet<String> {
        let all = || polars_api::names(input).into_iter().collect::<BTreeSet<_>>();
        let roots = |es: &[Expr]| -> Option<BTreeSet<String>> {
            let mut set = BTreeSet::new();
            for e in es {
                set.extend(polars_api::expr_inputs(e)?);
            }
            Some(set)
        };
        let keep_known = |set: BTreeSet<String>| -> BTreeSet<String> {
            let have = all();
            set.into_iter().filter(|c| have.contains(c)).collect()
        };
        let need = match self {
            Step::Select(es) => match roots(es) {
                Some(r) => r,
                None => return all(),
            },
            Step::WithColumns(es) => {
                let Some(r) = roots(es) else { return all() };
                let outputs: BTreeSet<String> = es.iter().filter_map(polars_api::expr_output).collect();
                let mut need: BTreeSet<String> = after.difference(&outputs).cloned().collect();
                need.extend(r);
                need
            }
            Step::Filter(p) => {
                let Some(r) = roots(std::slice::from_ref(p)) else {
                    return all();
                };
                let mut need = after.clone();
                need.extend(r);
                need
            }
            Step::Rename(pairs) => after
                .iter()
                .map(|c| match pairs.iter().find(|(_, new)| new == c) {
                    Some((old, _)) => old.clone(),
                    None => c.clone(),
                })
                .chain(pairs.iter().map(|(old, _)| old.clone()))
                .collect(),
            Step::Drop(cols) => {
                // Strict drop: the dropped columns must exist, so they are read.
                let mut need = after.clone();
                need.extend(cols.iter().cloned());
                need
            }
            Step::Cast(pairs) => {
                let mut need = after.clone();
                need.extend(pairs.iter().map(|(c, _)| c.clone()));
                need
            }
            Step::FillNull { value, subset } => {
                let Some(r) = roots(std::slice::from_ref(value)) else {
                    return all();
                };
                let mut need = after.clone();
                need.extend(r);
                if let Some(s) = subset {
                    need.extend(s.iter().cloned());
                }
                need
            }
            Step::DropNulls(subset) | Step::Unique { subset, .. } => match subset {
                None => return all(),
                Some(s) => {
                    let mut need = after.clone();
                    need.extend(s.iter().cloned());
                    need
                }
            },
            Step::Sort { by, .. } => {
                let mut need = after.clone();
                need.extend(by.iter().cloned());
                need
            }
            Step::Project(cols) => cols.iter().cloned().collect(),
        };
        keep_known(need)
    }

    /// Whether a filter reading `pred_cols` gives the same rows when moved
    /// before this step. Only steps that cannot change the rows or the values
    /// the filter sees qualify; anything computed (a `with_columns` may hold an
    /// aggregation whose value depends on which rows are present) stops it.
    pub(crate) fn filter_can_pass(&self, pred_cols: &BTreeSet<String>) -> bool {
        match self {
            Step::Filter(_) | Step::DropNulls(_) => true,
            Step::Drop(_) => true,
            Step::Cast(pairs) => pairs.iter().all(|(c, _)| !pred_cols.contains(c)),
            Step::Project(_) => true,
            Step::Select(es) => es.iter().all(polars_api::expr_is_plain_column),
            Step::FillNull { subset: Some(s), value } => {
                polars_api::expr_inputs(value).is_some_and(|r| r.is_empty()) && s.iter().all(|c| !pred_cols.contains(c))
            }
            _ => false,
        }
    }
}

/// Runs `steps` on a partition.
pub(crate) fn apply_steps(
    df: polars::prelude::DataFrame,
    steps: &[Step],
) -> std::result::Result<polars::prelude::DataFrame, PolarsError> {
    if steps.is_empty() {
        return Ok(df);
    }
    let mut lf = polars_api::lazy(df);
    for s in steps {
        lf = s.apply(lf);
    }
    polars_api::collect(lf)
}

/// The schema after `step`, from the schema before it, without data. A
/// missing column is an error that lists the columns that exist.
pub(crate) fn schema_after(step: &Step, input: &SchemaRef) -> Result<SchemaRef> {
    let lf = step.apply(polars_api::lazy(polars_api::empty(input)));
    polars_api::schema_of(lf).map_err(|e| explain_polars_error(e, input, &step.describe()))
}

/// A Polars planning error, with the columns that exist when one is missing.
pub(crate) fn explain_polars_error(e: PolarsError, input: &SchemaRef, what: &str) -> Error {
    if polars_api::is_column_not_found(&e) {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{}; the frame has the columns [{}] (in `{what}`)",
                first_line(&e.to_string()),
                polars_api::names(input).join(", ")
            ),
        )
    } else {
        polars_api::pl_err(e).context(format!("in `{what}`"))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

/// Checks that every column of `cols` exists in `schema`, listing those that
/// do when one is missing.
pub(crate) fn check_columns<'a>(
    schema: &SchemaRef,
    cols: impl IntoIterator<Item = &'a String>,
    what: &str,
) -> Result<()> {
    for c in cols {
        if schema.get(c.as_str()).is_none() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "column {c:?} not found in `{what}`; the frame has the columns [{}]",
                    polars_api::names(schema).join(", ")
                ),
            ));
        }
    }
    Ok(())
}
