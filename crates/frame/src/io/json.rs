//! Reading JSON lines: blocks like CSV, one schema inferred once.
//!
//! A JSON lines record cannot hold a raw line break (JSON escapes it inside
//! strings), so byte-range blocks cut at line boundaries are always safe.

use std::path::{Path, PathBuf};

use blockwise_core::{Error, Result, Value};
use polars::prelude::{Expr, SchemaRef};
use serde::{Deserialize, Serialize};

use super::blocks::{self, Block};
use crate::ops::{FrameTask, register_task};
use crate::partition::value_of;
use crate::polars_api;

/// A planned JSON lines read.
#[derive(Debug)]
pub(crate) struct JsonSource {
    pub(crate) blocks: Vec<Block>,
    pub(crate) schema: SchemaRef,
}

/// Plans a JSON lines read; the schema comes from the first non-empty file.
pub(crate) fn plan(files: Vec<PathBuf>, blocksize: Option<u64>, schema: Option<SchemaRef>) -> Result<JsonSource> {
    let schema = match schema {
        Some(s) => s,
        None => {
            let mut found = None;
            for f in &files {
                let sample = blocks::sample(f, 1 << 20)?;
                if sample.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let df = polars_api::json_parse(sample, None, 1000)
                    .map_err(|e| e.context(format!("while inferring the schema of {}", f.display())))?;
                found = Some(df.schema().clone());
                break;
            }
            found.ok_or_else(|| Error::invalid("cannot infer a JSON schema: every file is empty"))?
        }
    };
    Ok(JsonSource {
        blocks: blocks::plan_blocks(&files, blocksize)?,
        schema,
    })
}

/// Reads one block of JSON lines.
#[derive(Serialize, Deserialize)]
pub(crate) struct ReadJsonTask {
    pub(crate) block: Block,
    pub(crate) schema: SchemaRef,
    pub(crate) columns: Option<Vec<String>>,
    pub(crate) predicate: Option<Expr>,
    pub(crate) limit: Option<usize>,
}

impl FrameTask for ReadJsonTask {
    const NAME: &'static str = "frame.read_json";
    fn run(&self, _args: &[Value]) -> Result<Value> {
        let (bytes, _) = blocks::load(&self.block)?;
        let df = polars_api::json_parse(bytes, Some(self.schema.clone()), 1)
            .map_err(|e| e.context(format!("reading {}", Path::new(&self.block.path).display())))?;
        let mut lf = polars_api::lazy(df);
        if let Some(p) = &self.predicate {
            lf = lf.filter(p.clone());
        }
        if let Some(cols) = &self.columns {
            lf = lf.select(
                cols.iter()
                    .map(|c| polars::prelude::col(c.as_str()))
                    .collect::<Vec<_>>(),
            );
        }
        if let Some(n) = self.limit {
            lf = lf.limit(n as polars::prelude::IdxSize);
        }
        let df = polars_api::collect(lf).map_err(polars_api::pl_err)?;
        Ok(value_of(df))
    }
}
register_task!(ReadJsonTask);
