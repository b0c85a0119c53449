//! Partitioned data frames over Polars (Dask DataFrame): not yet written.
