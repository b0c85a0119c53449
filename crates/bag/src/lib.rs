//! Parallel bags of records (Dask Bag): not yet written.
