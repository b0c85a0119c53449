//! Readers and writers: CSV, Parquet, JSON lines.

pub(crate) mod blocks;
pub(crate) mod csv;
pub(crate) mod csv_agg;
pub(crate) mod json;
pub(crate) mod parquet;
pub(crate) mod write;
