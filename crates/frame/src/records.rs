//! Frames from other collections: partitions computed by delayed values
//! ([`from_delayed`], Dask's `dd.from_delayed`), and Polars frames from serde
//! records ([`records_to_polars`], what a bag's `to_dataframe` runs on each
//! partition).
//!
//! Records become rows through JSON: each record is serialized with
//! `serde_json` (struct fields keep their declaration order) and the lines
//! are parsed by Polars' JSON reader with the frame's schema, so a field maps
//! to the column of the same name and a missing field or `None` to a null.
//! A record that serializes to a JSON array (a tuple) gives columns `"0"`,
//! `"1"`, …; a plain value (a number, a string) gives one column `"0"`.

use std::sync::Arc;

use blockwise_core::delayed::Delayed;
use blockwise_core::graph::{Input, Layer, LayerBody, Task};
use blockwise_core::{Error, ErrorKind, Graph, Key, Result, Tokenizer, Value};
use polars::prelude::{DataFrame as PlFrame, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::frame::DataFrame;
use crate::ops::{self, FrameTask, register_task};
use crate::partition::{Partition, frame_of, value_of};
use crate::plan::{Kind, Node};
use crate::polars_api;

/// Appends `record` to `out` as one JSON object line.
fn push_record<T: Serialize>(record: &T, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    serde_json::to_writer(&mut *out, record)
        .map_err(|e| Error::codec(format!("cannot serialize a record as JSON: {e}")))?;
    let first = out[start..].iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        Some(b'{') => {}
        Some(b'[') => {
            let value: serde_json::Value = serde_json::from_slice(&out[start..])
                .map_err(|e| Error::codec(format!("cannot read back a serialized record: {e}")))?;
            out.truncate(start);
            out.push(b'{');
            if let serde_json::Value::Array(items) = value {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(format!("\"{i}\":").as_bytes());
                    serde_json::to_writer(&mut *out, item)
                        .map_err(|e| Error::codec(format!("cannot serialize a record as JSON: {e}")))?;
                }
            }
            out.push(b'}');
        }
        _ => {
            let text = out.split_off(start);
            out.extend_from_slice(b"{\"0\":");
            out.extend_from_slice(&text);
            out.push(b'}');
        }
    }
    out.push(b'\n');
    Ok(())
}

/// A Polars frame whose rows are `records` (see the module documentation
/// for how a record maps to columns). With `schema`, values are read as
/// its dtypes and its columns come out in its order; without, dtypes are
/// inferred from all the records.
pub fn records_to_polars<T: Serialize>(records: &[T], schema: Option<&Schema>) -> Result<PlFrame> {
    let mut text = Vec::with_capacity(records.len() * 32);
    for r in records {
        push_record(r, &mut text)?;
    }
    let schema: Option<SchemaRef> = schema.map(|s| Arc::new(s.clone()));
    let df = polars_api::json_parse(text, schema.clone(), records.len())
        .map_err(|e| e.context(format!("turning {} records into a data frame", records.len())))?;
    match schema {
        Some(s) if polars_api::names(df.schema()) != polars_api::names(&s) => {
            polars_api::select_columns(&df, &polars_api::names(&s))
        }
        _ => Ok(df),
    }
}

/// Checks that a partition computed outside the frame's planner has the
/// declared schema, putting its columns in the declared order.
#[derive(Serialize, Deserialize)]
pub(crate) struct CheckSchemaTask {
    pub(crate) schema: SchemaRef,
    pub(crate) index: usize,
}

impl FrameTask for CheckSchemaTask {
    const NAME: &'static str = "frame.check_schema";
    fn run(&self, args: &[Value]) -> Result<Value> {
        let [arg] = args else {
            return Err(Error::graph("frame.check_schema takes one partition"));
        };
        let df = frame_of(arg)?;
        let mismatch = |detail: String| {
            Err(Error::new(
                ErrorKind::TypeMismatch,
                format!("partition {} does not have the declared schema: {detail}", self.index),
            ))
        };
        for (name, dtype) in self.schema.iter() {
            match df.schema().get(name) {
                None => {
                    return mismatch(format!(
                        "column {name:?} is missing (it has [{}])",
                        polars_api::names(df.schema()).join(", ")
                    ));
                }
                Some(d) if d != dtype => return mismatch(format!("column {name:?} is {d}, declared {dtype}")),
                Some(_) => {}
            }
        }
        if df.width() != self.schema.len() {
            let extra: Vec<String> = polars_api::names(df.schema())
                .into_iter()
                .filter(|c| self.schema.get(c.as_str()).is_none())
                .collect();
            return mismatch(format!("undeclared columns [{}]", extra.join(", ")));
        }
        let names = polars_api::names(&self.schema);
        if polars_api::names(df.schema()) == names {
            Ok(arg.clone())
        } else {
            Ok(value_of(polars_api::select_columns(&df, &names)?))
        }
    }
}
register_task!(CheckSchemaTask);

/// A frame whose partitions are computed by delayed values, in order
/// (Dask's `dd.from_delayed` with `meta`): each must be a [`Partition`] with
/// `schema`'s columns and dtypes (checked when it is computed; a mismatch is
/// an error naming the partition and the column). Nothing is computed now.
/// An empty list gives one empty partition.
pub fn from_delayed(parts: &[Delayed<Partition>], schema: SchemaRef) -> DataFrame {
    if parts.is_empty() {
        return match crate::from_polars(polars_api::empty(&schema), 1) {
            Ok(df) => df,
            Err(e) => DataFrame::from_error(e),
        };
    }
    let mut tok = Tokenizer::new();
    tok.str("from-delayed");
    crate::plan::bytes_token(&mut tok, &schema);
    let mut deps: Vec<Arc<Layer>> = Vec::new();
    for d in parts {
        tok.key(d.key());
        if !deps.iter().any(|l| Arc::ptr_eq(l, d.layer())) {
            deps.push(d.layer().clone());
        }
    }
    let name = tok.name("from-delayed");
    let tasks = parts
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                Key::new(name.clone(), &[i as u32]),
                Task::new(
                    ops::op(CheckSchemaTask {
                        schema: schema.clone(),
                        index: i,
                    }),
                    vec![Input::Key(d.key().clone())],
                ),
            )
        })
        .collect();
    let layer = Layer::new(name.clone(), deps, LayerBody::Tasks(tasks));
    DataFrame::from_node(Node::new(
        Kind::Persisted {
            graph: Graph::from_layer(layer),
            name,
        },
        schema,
        parts.len(),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::DataType;

    #[derive(Serialize)]
    struct Account {
        name: String,
        amount: i64,
        note: Option<String>,
    }

    #[test]
    fn structs_tuples_and_scalars_become_columns() {
        let accounts = vec![
            Account {
                name: "alice".into(),
                amount: 10,
                note: None,
            },
            Account {
                name: "bob".into(),
                amount: -3,
                note: Some("x".into()),
            },
        ];
        let df = records_to_polars(&accounts, None).unwrap();
        assert_eq!(polars_api::names(df.schema()), ["name", "amount", "note"]);
        assert_eq!(df.column("amount").unwrap().dtype(), &DataType::Int64);
        assert_eq!(df.column("note").unwrap().null_count(), 1);
        let tuples = records_to_polars(&[("a", 1.5), ("b", 2.0)], None).unwrap();
        assert_eq!(polars_api::names(tuples.schema()), ["0", "1"]);
        let scalars = records_to_polars(&[1u32, 2, 3], None).unwrap();
        assert_eq!(polars_api::names(scalars.schema()), ["0"]);
        assert_eq!(scalars.height(), 3);
    }
}
