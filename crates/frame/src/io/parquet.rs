//! Reading Parquet: partitions of whole files or of runs of row groups,
//! projection, and row groups pruned by their statistics.
//!
//! Every file's footer is read when the read is planned (a few kilobytes per
//! file, kept in memory with the plan): the schemas must agree — a
//! disagreement is an error naming both files and the column — and the row
//! groups, their sizes and row counts are known without reading data.
//!
//! ## Partitions
//!
//! As Dask's `split_row_groups="infer"`: a file whose row groups hold at
//! most [`ParquetOptions::blocksize`] uncompressed bytes is one partition;
//! a larger file is cut between row groups into partitions of at most that
//! many bytes (a single larger row group stays whole). Or, with
//! [`ParquetOptions::row_groups_per_partition`], exactly `k` row groups per
//! partition.
//!
//! ## Pruning
//!
//! When the planner pushes a filter into the reader (see `plan.rs`), the
//! row groups' min/max/null-count statistics are checked against it at
//! planning time (`ParquetFooter::row_groups_matching`): a row group whose
//! statistics prove that no row can match is left out of the read task —
//! its bytes are never touched — and `explain()` says how many were pruned.
//! A partition left with no row group reads nothing and yields an empty
//! frame. The filter itself still runs on the rows read.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockwise_core::{Error, ErrorKind, Result, Value};
use polars::prelude::{Expr, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::ops::{FrameTask, register_task};
use crate::partition::value_of;
use crate::polars_api::{self, ParquetFooter};

/// Dask's default partition size for Parquet: 256 MiB of uncompressed data.
pub const DEFAULT_PARQUET_BLOCKSIZE: u64 = 256 << 20;

/// How Parquet files are cut into partitions.
#[derive(Clone, Debug)]
pub struct ParquetOptions {
    /// A file holding more than this many uncompressed bytes is split
    /// between row groups into partitions of at most this many bytes (a row
    /// group larger than that is a partition by itself). `None`: one
    /// partition per file. Default [`DEFAULT_PARQUET_BLOCKSIZE`].
    pub blocksize: Option<u64>,
    /// Exactly this many row groups per partition (the last of a file may
    /// have fewer); takes precedence over `blocksize` (Dask's integer
    /// `split_row_groups`).
    pub row_groups_per_partition: Option<usize>,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            blocksize: Some(DEFAULT_PARQUET_BLOCKSIZE),
            row_groups_per_partition: None,
        }
    }
}

impl ParquetOptions {
    /// One partition per file.
    pub fn whole_files() -> Self {
        ParquetOptions {
            blocksize: None,
            row_groups_per_partition: None,
        }
    }

    /// Partitions of at most `bytes` uncompressed bytes.
    pub fn blocksize(mut self, bytes: u64) -> Self {
        self.blocksize = Some(bytes);
        self
    }

    /// Exactly `k` row groups per partition.
    pub fn row_groups_per_partition(mut self, k: usize) -> Self {
        self.row_groups_per_partition = Some(k.max(1));
        self
    }
}

/// One file of a planned read.
#[derive(Debug)]
pub(crate) struct ParquetFile {
    pub(crate) path: String,
    pub(crate) footer: ParquetFooter,
    /// First row of each row group, and the total after the last.
    pub(crate) offsets: Vec<usize>,
}

impl ParquetFile {
    pub(crate) fn n_row_groups(&self) -> usize {
        self.offsets.len() - 1
    }
}

/// One partition: a run of row groups of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParquetPiece {
    pub(crate) file: usize,
    pub(crate) row_groups: Range<usize>,
}

/// A planned Parquet read.
#[derive(Debug)]
pub(crate) struct ParquetSource {
    pub(crate) files: Vec<ParquetFile>,
    pub(crate) pieces: Vec<ParquetPiece>,
    pub(crate) schema: SchemaRef,
}

impl ParquetSource {
    /// Rows in each partition.
    pub(crate) fn rows(&self) -> Vec<usize> {
        self.pieces
            .iter()
            .map(|p| {
                let o = &self.files[p.file].offsets;
                o[p.row_groups.end] - o[p.row_groups.start]
            })
            .collect()
    }

    /// The total number of row groups.
    pub(crate) fn n_row_groups(&self) -> usize {
        self.files.iter().map(ParquetFile::n_row_groups).sum()
    }

    /// For each partition, the row groups that may hold rows matching
    /// `predicate`, from their statistics; `None` when nothing is pruned.
    pub(crate) fn prune(&self, predicate: &Expr) -> Option<Arc<Vec<Vec<usize>>>> {
        let masks: Vec<Option<Vec<bool>>> = self
            .files
            .iter()
            .map(|f| f.footer.row_groups_matching(predicate))
            .collect();
        let kept: Vec<Vec<usize>> = self
            .pieces
            .iter()
            .map(|p| {
                p.row_groups
                    .clone()
                    .filter(|&rg| {
                        masks[p.file]
                            .as_ref()
                            .is_none_or(|m| m.get(rg).copied().unwrap_or(true))
                    })
                    .collect()
            })
            .collect();
        let n: usize = kept.iter().map(Vec::len).sum();
        (n < self.n_row_groups()).then(|| Arc::new(kept))
    }
}

/// Plans a Parquet read: reads every footer, checks that schemas agree,
/// cuts the files into partitions.
pub(crate) fn plan(paths: Vec<PathBuf>, options: &ParquetOptions) -> Result<ParquetSource> {
    let mut schema: Option<(SchemaRef, PathBuf)> = None;
    let mut files = Vec::with_capacity(paths.len());
    let mut pieces = Vec::new();
    for (i, f) in paths.iter().enumerate() {
        let footer = ParquetFooter::read(f).map_err(|e| e.context(format!("reading the footer of {}", f.display())))?;
        match &schema {
            None => schema = Some((Arc::new(footer.schema.clone()), f.clone())),
            Some((first, first_path)) => check_same(first, first_path, &footer.schema, f)?,
        }
        let groups = footer.row_groups();
        let mut offsets = Vec::with_capacity(groups.len() + 1);
        let mut at = 0usize;
        for (rows, _) in &groups {
            offsets.push(at);
            at += rows;
        }
        offsets.push(at);
        for row_groups in split(&groups, options) {
            pieces.push(ParquetPiece { file: i, row_groups });
        }
        files.push(ParquetFile {
            path: f.to_string_lossy().into_owned(),
            footer,
            offsets,
        });
    }
    let (schema, _) = schema.ok_or_else(|| Error::invalid("no Parquet file given"))?;
    Ok(ParquetSource { files, pieces, schema })
}

/// Cuts one file's row groups (rows, bytes) into partitions.
fn split(groups: &[(usize, usize)], options: &ParquetOptions) -> Vec<Range<usize>> {
    let n = groups.len();
    if n == 0 {
        return std::iter::once(0..0).collect();
    }
    if let Some(k) = options.row_groups_per_partition {
        let k = k.max(1);
        return (0..n).step_by(k).map(|a| a..(a + k).min(n)).collect();
    }
    let Some(limit) = options.blocksize else {
        return std::iter::once(0..n).collect();
    };
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0usize, 0u64);
    for (i, (_, b)) in groups.iter().enumerate() {
        let b = *b as u64;
        if i > start && bytes + b > limit {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += b;
    }
    out.push(start..n);
    out
}

fn check_same(a: &SchemaRef, a_path: &Path, b: &polars::prelude::Schema, b_path: &Path) -> Result<()> {
    let (a_name, b_name) = (a_path.display(), b_path.display());
    let disagree = |detail: String| {
        Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("the schemas of {a_name} and {b_name} disagree: {detail}"),
        ))
    };
    for (name, dtype) in a.iter() {
        match b.get(name) {
            None => return disagree(format!("column {name:?} is in {a_name} but not in {b_name}")),
            Some(other) if other != dtype => {
                return disagree(format!(
                    "column {name:?} is {dtype} in {a_name} but {other} in {b_name}"
                ));
            }
            Some(_) => {}
        }
    }
    if let Some((name, _)) = b.iter().find(|(n, _)| a.get(n).is_none()) {
        return disagree(format!("column {name:?} is in {b_name} but not in {a_name}"));
    }
    Ok(())
}

/// Reads row groups of one Parquet file.
#[derive(Serialize, Deserialize)]
pub(crate) struct ReadParquetTask {
    pub(crate) path: String,
    /// The row groups to read, ascending, each with its rows `(offset, len)`
    /// in the file.
    pub(crate) row_groups: Vec<(usize, (usize, usize))>,
    /// Output columns (`None`: all).
    pub(crate) columns: Option<Vec<String>>,
    pub(crate) predicate: Option<Expr>,
    pub(crate) limit: Option<usize>,
    /// The output schema (for a partition with nothing to read).
    pub(crate) schema: SchemaRef,
}

impl ReadParquetTask {
    /// Consecutive row groups merged into runs: `(first, last, offset, len)`.
    fn runs(&self) -> Vec<(usize, usize, usize, usize)> {
        let mut runs: Vec<(usize, usize, usize, usize)> = Vec::new();
        for &(rg, (offset, len)) in &self.row_groups {
            match runs.last_mut() {
                Some(run) if run.1 + 1 == rg && run.2 + run.3 == offset => {
                    run.1 = rg;
                    run.3 += len;
                }
                _ => runs.push((rg, rg, offset, len)),
            }
        }
        runs
    }
}

impl FrameTask for ReadParquetTask {
    const NAME: &'static str = "frame.read_parquet";
    fn run(&self, _args: &[Value]) -> Result<Value> {
        // The columns to decode: the output's and the filter's.
        let read_columns: Option<Vec<String>> = self.columns.as_ref().map(|cols| {
            let mut all = cols.clone();
            if let Some(p) = &self.predicate {
                for c in polars_api::expr_inputs(p).unwrap_or_default() {
                    if !all.contains(&c) {
                        all.push(c);
                    }
                }
            }
            all
        });
        let mut frames = Vec::new();
        let mut have = 0usize;
        for (first, last, offset, mut len) in self.runs() {
            if let Some(limit) = self.limit {
                if have >= limit {
                    break;
                }
                if self.predicate.is_none() {
                    len = len.min(limit - have);
                }
            }
            let mut df =
                polars_api::parquet_read_rows(Path::new(&self.path), read_columns.as_deref(), Some((offset, len)))
                    .map_err(|e| {
                        let groups = if first == last {
                            format!("row group {first}")
                        } else {
                            format!("row groups {first}..={last}")
                        };
                        e.context(format!(
                            "reading {groups} (rows {offset}..{}) of {}",
                            offset + len,
                            self.path
                        ))
                    })?;
            if let Some(p) = &self.predicate {
                df = polars_api::filter(df, p).map_err(|e| e.context(format!("filtering rows of {}", self.path)))?;
            }
            if let Some(cols) = &self.columns
                && read_columns.as_ref() != Some(cols)
            {
                df = polars_api::select_columns(&df, cols)?;
            }
            have += df.height();
            frames.push(df);
        }
        let mut df = polars_api::concat(frames, Some(&self.schema))?;
        if let Some(limit) = self.limit
            && df.height() > limit
        {
            df = polars_api::slice(&df, 0, limit);
        }
        Ok(value_of(df))
    }
}
register_task!(ReadParquetTask);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_groups_are_cut_by_size_or_count() {
        let groups = vec![(10, 100), (10, 100), (10, 300), (10, 50), (10, 50)];
        let by_size = ParquetOptions::default().blocksize(200);
        assert_eq!(split(&groups, &by_size), vec![0..2, 2..3, 3..5]);
        let by_count = ParquetOptions::default().row_groups_per_partition(2);
        assert_eq!(split(&groups, &by_count), vec![0..2, 2..4, 4..5]);
        assert_eq!(split(&groups, &ParquetOptions::whole_files()), vec![0..5]);
        assert_eq!(split(&groups, &ParquetOptions::default()), vec![0..5]);
        assert_eq!(split(&[], &by_count), vec![0..0]);
    }
}
