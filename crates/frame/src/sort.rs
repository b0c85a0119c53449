//! Ordering: `sort_values` and `set_index` by sampling, range splitting and
//! sorting each output partition.
//!
//! As Dask: each partition contributes an evenly spaced sample of its sorted
//! sort-key values, weighted by how many rows each sample value stands for;
//! the weighted quantiles of the merged sample become the boundaries between
//! output partitions (computed eagerly, when `sort_values` is called); every
//! row goes to the output whose range holds its key (a shuffle as tasks);
//! each output is sorted on its own. Equal keys always land in one output,
//! so sorting by several columns ranges on the first and sorts by all.

use std::sync::Arc;

use blockwise_core::Result;
use polars::prelude::{DataFrame as PlFrame, DataType, Series as PlSeries};

use crate::plan::{Divisions, Kind, Node};
use crate::polars_api::{self, PlResultExt, agg as ex};
use crate::reduce::Reducer;

/// The output range of each row: the number of boundaries its `column`
/// value lies above (below, when descending). Nulls go to the first range.
pub(crate) fn range_buckets(df: &PlFrame, column: &str, boundaries: &PlSeries, descending: bool) -> Result<Vec<usize>> {
    let c = || ex::c(column);
    let mut e = polars::prelude::lit(0u32);
    for i in 0..boundaries.len() {
        let b = polars_api::lit_value(boundaries.dtype().clone(), polars_api::value_at(boundaries, i)?);
        let cmp = if descending { c().lt(b) } else { c().gt(b) };
        e = e + cmp.cast(DataType::UInt32).fill_null(polars::prelude::lit(0u32));
    }
    let out = polars_api::collect(polars_api::lazy(df.clone()).select([e.alias("__bucket")])).pl()?;
    let s = out.column("__bucket").pl()?.as_materialized_series().clone();
    let ca = s.u32().pl()?;
    Ok(ca.iter().map(|v| v.unwrap_or(0) as usize).collect())
}

/// Samples `column` of `input` and returns the `k - 1` boundaries of `k`
/// output ranges (fewer when values repeat), plus the minimum and maximum.
pub(crate) fn boundaries(
    input: &Arc<Node>,
    column: &str,
    k: usize,
    descending: bool,
    options: &blockwise_local::ComputeOptions,
) -> Result<(PlSeries, Option<(PlSeries, PlSeries)>)> {
    let size = (k * 20).clamp(100, 10_000);
    let reducer = Reducer::Sample {
        column: column.to_string(),
        size,
    };
    let dtype = input.schema.get(column).cloned().unwrap_or(DataType::Null);
    let schema = Arc::new(polars_api::schema_from([
        ("value".to_string(), dtype),
        ("weight".to_string(), DataType::Float64),
    ]));
    let node = Node::new(
        Kind::Reduce {
            input: input.clone(),
            reducer,
            split_every: 16,
            split_out: 1,
        },
        schema,
        1,
        None,
    );
    let sample = crate::frame::DataFrame::from_node(node).compute_frame(options)?;
    let values = sample.column("value").pl()?.as_materialized_series().clone();
    let weights: Vec<f64> = sample
        .column("weight")
        .pl()?
        .as_materialized_series()
        .f64()
        .pl()?
        .iter()
        .map(|w| w.unwrap_or(0.0))
        .collect();
    let n = values.len();
    if n == 0 {
        return Ok((values.clear(), None));
    }
    let total: f64 = weights.iter().sum();
    let mut picks: Vec<polars::prelude::IdxSize> = Vec::new();
    let mut cum = 0.0;
    let mut j = 1usize;
    for (i, w) in weights.iter().enumerate() {
        cum += w;
        while j < k && cum >= total * j as f64 / k as f64 {
            if picks.last() != Some(&(i as polars::prelude::IdxSize)) {
                picks.push(i as polars::prelude::IdxSize);
            }
            j += 1;
        }
    }
    // The last sample value as a boundary would leave the last range empty.
    picks.retain(|&i| (i as usize) < n - 1);
    let idx = polars::prelude::IdxCa::from_vec("idx".into(), picks);
    let mut bounds = values.take(&idx).pl()?;
    // Equal boundaries would make empty ranges.
    bounds = bounds.unique_stable().pl()?;
    let min = values.slice(0, 1);
    let max = values.slice(n as i64 - 1, 1);
    if descending {
        bounds = bounds.reverse();
        return Ok((bounds, Some((max, min))));
    }
    Ok((bounds, Some((min, max))))
}

/// The divisions of a range-shuffled frame: first, boundaries, last.
pub(crate) fn divisions(
    column: &str,
    bounds: &PlSeries,
    ends: Option<(PlSeries, PlSeries)>,
) -> Result<Option<Divisions>> {
    let Some((first, last)) = ends else { return Ok(None) };
    let mut values = first;
    values.append(bounds).pl()?;
    values.append(&last).pl()?;
    Ok(Some(Divisions {
        column: column.to_string(),
        values,
    }))
}
