//! The array test suite, one binary (one link) with a module per area.
//!
//! Every operation is checked against the same computation done directly
//! with ndarray on the whole array, over several chunkings (proptest picks
//! random shapes and chunkings), on both local executors.

mod common;

mod creation;
mod elementwise;
mod io;
mod linalg;
mod reductions;
mod shape;
mod stream;
mod user;
