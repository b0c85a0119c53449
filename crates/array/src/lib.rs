//! Chunked n-dimensional arrays (Dask Array): not yet written.
