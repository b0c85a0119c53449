//! Reading Parquet: one partition per file, projection and filters pushed
//! into Polars' reader.
//!
//! Every file's footer is read when the read is planned (a few kilobytes per
//! file): the schemas must agree — a disagreement is an error naming both
//! files and the column — and the row counts are known without reading data.
//! Each partition is read with Polars' Parquet scan restricted to the columns
//! the plan needs and with the plan's filter: Polars skips the row groups
//! whose min/max statistics cannot match the filter, and decodes only the
//! projected columns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockwise_core::{Error, ErrorKind, Result, Value};
use polars::prelude::{Expr, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::ops::{FrameTask, register_task};
use crate::partition::value_of;
use crate::polars_api;

/// A planned Parquet read.
#[derive(Debug)]
pub(crate) struct ParquetSource {
    pub(crate) files: Vec<String>,
    pub(crate) rows: Vec<usize>,
    pub(crate) schema: SchemaRef,
}

/// Plans a Parquet read: reads every footer, checks that schemas agree.
pub(crate) fn plan(files: Vec<PathBuf>) -> Result<ParquetSource> {
    let mut schema: Option<(SchemaRef, PathBuf)> = None;
    let mut rows = Vec::with_capacity(files.len());
    for f in &files {
        let (s, n) =
            polars_api::parquet_schema(f).map_err(|e| e.context(format!("reading the footer of {}", f.display())))?;
        rows.push(n);
        match &schema {
            None => schema = Some((Arc::new(s), f.clone())),
            Some((first, first_path)) => check_same(first, first_path, &s, f)?,
        }
    }
    let (schema, _) = schema.ok_or_else(|| Error::invalid("no Parquet file given"))?;
    Ok(ParquetSource {
        files: files.iter().map(|f| f.to_string_lossy().into_owned()).collect(),
        rows,
        schema,
    })
}

fn check_same(a: &SchemaRef, a_path: &Path, b: &polars::prelude::Schema, b_path: &Path) -> Result<()> {
    for (name, dtype) in a.iter() {
        match b.get(name) {
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the schemas of {} and {} disagree: column {name:?} is in {} but not in {}",
                        a_path.display(),
                        b_path.display(),
                        a_path.display(),
                        b_path.display()
                    ),
                ));
            }
            Some(other) if other != dtype => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the schemas of {} and {} disagree: column {name:?} is {dtype} in {} but {other} in {}",
                        a_path.display(),
                        b_path.display(),
                        a_path.display(),
                        b_path.display()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some((name, _)) = b.iter().find(|(n, _)| a.get(n).is_none()) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "the schemas of {} and {} disagree: column {name:?} is in {} but not in {}",
                a_path.display(),
                b_path.display(),
                b_path.display(),
                a_path.display()
            ),
        ));
    }
    Ok(())
}

/// Reads one Parquet file.
#[derive(Serialize, Deserialize)]
pub(crate) struct ReadParquetTask {
    pub(crate) path: String,
    pub(crate) columns: Option<Vec<String>>,
    pub(crate) predicate: Option<Expr>,
    pub(crate) limit: Option<usize>,
}

impl FrameTask for ReadParquetTask {
    const NAME: &'static str = "frame.read_parquet";
    fn run(&self, _args: &[Value]) -> Result<Value> {
        let n_rows = if self.predicate.is_none() { self.limit } else { None };
        let mut df = polars_api::parquet_read(
            Path::new(&self.path),
            self.columns.as_deref(),
            self.predicate.as_ref(),
            n_rows,
        )
        .map_err(|e| e.context(format!("reading {}", self.path)))?;
        if let (Some(n), Some(_)) = (self.limit, &self.predicate) {
            df = polars_api::slice(&df, 0, n);
        }
        Ok(value_of(df))
    }
}
register_task!(ReadParquetTask);
