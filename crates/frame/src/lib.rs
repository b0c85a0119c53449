//! # blockwise-frame
//!
//! Partitioned, lazy data frames over Polars — Dask DataFrame, with Polars
//! in the place pandas has in Dask:
//!
//! ```no_run
//! use blockwise_local::Compute;
//! # fn main() -> blockwise_core::Result<()> {
//! let df = blockwise_frame::read_csv("data_*.csv")?;
//! let means = df.groupby(["category"]).col("value").mean().compute()?; // a Polars DataFrame
//! # let _ = means; Ok(()) }
//! ```
//!
//! - A [`DataFrame`] is a logical plan (`plan`) with its metadata —
//!   schema, number of partitions, divisions — known without computing.
//!   Each partition is a Polars `DataFrame` ([`Partition`]).
//! - Row and column operations are Polars expressions applied to each
//!   partition (`step`); they are data, so they ship to workers and the
//!   planner can read them: columns no step uses are never parsed, filters
//!   move into the readers ([`DataFrame::explain`] shows it).
//! - Reductions and group-bys are tree reductions with a configurable fan-in
//!   and number of outputs (`reduce`); joins broadcast a small side or
//!   hash-shuffle both; sorting samples boundaries and range-shuffles
//!   (`sort`).
//! - Readers: CSV (globs, byte-range blocks, one inferred schema, gzip),
//!   Parquet (footers checked, partitions of row groups, projection,
//!   row groups pruned by their statistics), JSON lines,
//!   in-memory Polars frames. Writers: CSV and Parquet, one file per
//!   partition, each written atomically.
//!
//! Every Polars call that changes between Polars releases lives in one
//! module, `polars_api`, which also documents how Polars' thread pool is
//! sized against our scheduler's.

mod frame;
mod io;
mod ops;
mod partition;
mod plan;
mod polars_api;
mod records;
mod reduce;
mod sort;
mod step;

use std::sync::Arc;

use blockwise_core::{Error, Result};
use polars::prelude::{DataFrame as PlFrame, SchemaRef};

pub use frame::{DEFAULT_SPLIT_EVERY, DataFrame, GroupBy, GroupedColumn, JoinOptions, Scalar, Series};
pub use io::blocks::IntoPaths;
pub use io::csv::CsvOptions;
pub use io::csv_agg::FUSE_CSV_AGGREGATE_KEY;
pub use io::parquet::{DEFAULT_PARQUET_BLOCKSIZE, ParquetOptions};
pub use ops::PartitionFnPtr;
pub use partition::Partition;
pub use polars_api::JoinHow;
pub use records::{from_delayed, records_to_polars};
pub use reduce::{Agg, AggKind};

/// The Polars version this crate is built against (re-exported, so users
/// build expressions with the same Polars).
pub use polars;

use plan::{Kind, Node, Source, SourceData};

/// Reads CSV files: a glob (`"data_*.csv"`), a file, a directory, or a list
/// of them, with default [`CsvOptions`] (64 MiB blocks, header, inferred
/// schema).
pub fn read_csv(paths: impl IntoPaths) -> Result<DataFrame> {
    read_csv_with(paths, CsvOptions::default())
}

/// Reads CSV files with options.
pub fn read_csv_with(paths: impl IntoPaths, options: CsvOptions) -> Result<DataFrame> {
    let files = io::blocks::expand(paths.into_patterns(), &[".csv", ".csv.gz", ".txt", ".tsv", ".gz"])?;
    let source = io::csv::plan(files, &options)?;
    let source = Source::new(SourceData::Csv(Arc::new(source)));
    let frame = source_frame(source);
    match options.columns {
        Some(cols) => {
            // Reading fewer columns is a projection the planner pushes into
            // the reader.
            let df = frame.select_columns(cols);
            df.schema()?;
            Ok(df)
        }
        None => Ok(frame),
    }
}

/// Reads Parquet files: a glob, a file, a directory (its `*.parquet`
/// files), or a list, with default [`ParquetOptions`]: one partition per
/// file, files above 256 MiB (uncompressed) cut between row groups.
///
/// Only the columns the computation uses are decoded, and a filter pushed
/// into the read skips the row groups whose statistics rule it out
/// ([`DataFrame::explain`] shows how many).
pub fn read_parquet(paths: impl IntoPaths) -> Result<DataFrame> {
    read_parquet_with(paths, ParquetOptions::default())
}

/// Reads Parquet files, cut into partitions as `options` says.
pub fn read_parquet_with(paths: impl IntoPaths, options: ParquetOptions) -> Result<DataFrame> {
    let files = io::blocks::expand(paths.into_patterns(), &[".parquet", ".pq"])?;
    let source = io::parquet::plan(files, &options)?;
    Ok(source_frame(Source::new(SourceData::Parquet(Arc::new(source)))))
}

/// Reads JSON lines files (one JSON object per line), 64 MiB blocks, the
/// schema inferred from the first non-empty file.
pub fn read_json(paths: impl IntoPaths) -> Result<DataFrame> {
    read_json_with(paths, Some(64 << 20), None)
}

/// Reads JSON lines with a block size (`None`: one partition per file) and
/// an optional schema.
pub fn read_json_with(paths: impl IntoPaths, blocksize: Option<u64>, schema: Option<SchemaRef>) -> Result<DataFrame> {
    let files = io::blocks::expand(paths.into_patterns(), &[".json", ".jsonl", ".ndjson", ".gz"])?;
    let source = io::json::plan(files, blocksize, schema)?;
    Ok(source_frame(Source::new(SourceData::Json(Arc::new(source)))))
}

/// A lazy frame over an in-memory Polars frame, cut into `npartitions` runs
/// of rows (as equal as possible).
pub fn from_polars(df: PlFrame, npartitions: usize) -> Result<DataFrame> {
    let k = npartitions.max(1);
    let n = df.height();
    let fingerprint = polars_api::fingerprint(&df)?;
    let parts: Vec<PlFrame> = (0..k)
        .map(|j| {
            let (a, b) = (n * j / k, n * (j + 1) / k);
            polars_api::slice(&df, a, b - a)
        })
        .collect();
    Ok(source_frame(Source::new(SourceData::Frames(
        Arc::new(parts),
        fingerprint,
    ))))
}

fn source_frame(source: Source) -> DataFrame {
    let schema = source.out_schema();
    let n = source.npartitions();
    DataFrame::from_node(Node::new(Kind::Source(source), schema, n, None))
}

/// Concatenates frames: the partitions of the first, then of the second, …
/// The frames must have the same columns with the same dtypes.
pub fn concat(frames: &[DataFrame]) -> Result<DataFrame> {
    let nodes: Vec<Arc<Node>> = frames.iter().map(|f| f.node().cloned()).collect::<Result<_>>()?;
    let first = nodes
        .first()
        .ok_or_else(|| Error::invalid("concat needs at least one frame"))?;
    for (i, n) in nodes.iter().enumerate().skip(1) {
        if n.schema != first.schema {
            let a = polars_api::names(&first.schema);
            let b = polars_api::names(&n.schema);
            let detail = a
                .iter()
                .zip(&b)
                .find_map(|(x, y)| {
                    if x != y {
                        Some(format!("column {x:?} of the first is {y:?} in frame {i}"))
                    } else if first.schema.get(x.as_str()) != n.schema.get(y.as_str()) {
                        Some(format!(
                            "column {x:?} is {} in the first frame but {} in frame {i}",
                            first
                                .schema
                                .get(x.as_str())
                                .cloned()
                                .unwrap_or(polars::prelude::DataType::Null),
                            n.schema
                                .get(y.as_str())
                                .cloned()
                                .unwrap_or(polars::prelude::DataType::Null)
                        ))
                    } else {
                        None
                    }
                })
                .unwrap_or_else(|| {
                    format!(
                        "the first frame has columns [{}], frame {i} has [{}]",
                        a.join(", "),
                        b.join(", ")
                    )
                });
            return Err(Error::invalid(format!(
                "cannot concatenate frames with different schemas: {detail}"
            )));
        }
    }
    let total = nodes.iter().map(|n| n.npartitions).sum();
    let schema = first.schema.clone();
    Ok(DataFrame::from_node(Node::new(
        Kind::Concat {
            inputs: nodes,
            columns: None,
        },
        schema,
        total,
        None,
    )))
}

/// Aggregations for [`GroupBy::agg`] and [`DataFrame::agg`]:
/// `agg::mean("value").alias("mean_value")`.
pub mod agg {
    use crate::reduce::{Agg, AggKind};

    /// Sum.
    pub fn sum(column: &str) -> Agg {
        Agg::new(column, AggKind::Sum)
    }
    /// Mean.
    pub fn mean(column: &str) -> Agg {
        Agg::new(column, AggKind::Mean)
    }
    /// Number of non-null values.
    pub fn count(column: &str) -> Agg {
        Agg::new(column, AggKind::Count)
    }
    /// Number of rows (nulls included); output named `size` by default.
    pub fn size() -> Agg {
        Agg::new("", AggKind::Size)
    }
    /// Minimum.
    pub fn min(column: &str) -> Agg {
        Agg::new(column, AggKind::Min)
    }
    /// Maximum.
    pub fn max(column: &str) -> Agg {
        Agg::new(column, AggKind::Max)
    }
    /// Standard deviation (`ddof` 1, as pandas and Polars).
    pub fn std(column: &str) -> Agg {
        Agg::new(column, AggKind::Std(1))
    }
    /// Variance (`ddof` 1).
    pub fn var(column: &str) -> Agg {
        Agg::new(column, AggKind::Var(1))
    }
    /// First value in row order.
    pub fn first(column: &str) -> Agg {
        Agg::new(column, AggKind::First)
    }
    /// Last value in row order.
    pub fn last(column: &str) -> Agg {
        Agg::new(column, AggKind::Last)
    }
    /// Number of distinct values (null counts as a value).
    pub fn nunique(column: &str) -> Agg {
        Agg::new(column, AggKind::NUnique)
    }
}
