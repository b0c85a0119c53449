//! `Bag::to_dataframe`: a bag of records as a blockwise-frame `DataFrame`
//! (the `frame` feature).
//!
//! Each partition's records are turned into one Polars frame by
//! [`blockwise_frame::records_to_polars`] in the same task that produces
//! them: a pending chain of element-wise steps (`read → filter → map`) runs
//! straight into the conversion, with no intermediate partition of records.
//! Struct fields become columns of the same names, in declaration order;
//! tuples give columns `"0"`, `"1"`, …; plain values one column `"0"`.

use std::sync::Arc;

use blockwise_core::delayed::Delayed;
use blockwise_core::{Error, Key, Layer, LayerBody, Name, Result, Task, Tokenizer, Value};
use blockwise_frame::polars::prelude::SchemaRef;
use blockwise_frame::{DataFrame, Partition as FramePartition};

use crate::bag::Bag;
use crate::partition::Element;
use crate::stage::{BagOp, collect, extend_label};

/// How many records `to_dataframe` reads to infer the schema.
const INFER_RECORDS: usize = 100;

impl<T: Element> Bag<T> {
    /// The records as a lazy [`DataFrame`], one frame partition per bag
    /// partition (Dask's `Bag.to_dataframe`). The schema is inferred from
    /// the first records (up to 100), computed now — as Dask computes the
    /// head of the first partition when no `meta` is given; an empty bag is
    /// an error. Give the schema with [`Bag::to_dataframe_with_schema`] to
    /// compute nothing now.
    pub fn to_dataframe(&self) -> Result<DataFrame> {
        let sample = self.take(INFER_RECORDS)?;
        if sample.is_empty() {
            return Err(Error::invalid(
                "to_dataframe cannot infer a schema from an empty bag: give one with to_dataframe_with_schema",
            ));
        }
        let frame = blockwise_frame::records_to_polars(&sample, None)
            .map_err(|e| e.context("inferring the schema of to_dataframe from the first records"))?;
        Ok(self.to_dataframe_with_schema(frame.schema().clone()))
    }

    /// The records as a lazy [`DataFrame`] with `schema`: each record's
    /// fields are read as the dtypes of the columns of the same names (a
    /// missing field is a null; fields not in the schema are dropped).
    /// Nothing is computed now.
    pub fn to_dataframe_with_schema(&self, schema: SchemaRef) -> DataFrame {
        let src = &self.source;
        let mut tok = Tokenizer::new();
        tok.str("to-dataframe")
            .u64(src.token)
            .str(&format!("{:?}", schema.as_ref()));
        let token = tok.finish();
        let name = Name::new(&format!("to-dataframe-{token:016x}"));
        let stage = src.stage.clone();
        let task_schema = schema.clone();
        let op = BagOp::build(
            "blockwise.bag.to-dataframe",
            extend_label(&src.label, "to-dataframe").to_string(),
            src.fns.clone(),
            std::any::type_name::<T>(),
            move |args| {
                let records = collect(&stage, args)?;
                let df = blockwise_frame::records_to_polars(&records, Some(&task_schema))?;
                Ok(Arc::new(FramePartition(df)) as Value)
            },
        );
        let tasks = src
            .inputs
            .iter()
            .enumerate()
            .map(|(i, inputs)| {
                (
                    Key::new(name.clone(), &[i as u32]),
                    Task::new(op.clone(), inputs.clone()),
                )
            })
            .collect();
        let layer = Layer::new(name.clone(), src.deps.to_vec(), LayerBody::Tasks(tasks));
        let parts: Vec<Delayed<FramePartition>> = (0..src.inputs.len())
            .map(|i| Delayed::from_layer(layer.clone(), Key::new(name.clone(), &[i as u32])))
            .collect();
        blockwise_frame::from_delayed(&parts, schema)
    }
}
