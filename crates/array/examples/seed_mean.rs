//! The seed example: column means of a 10,000 × 10,000 uniform random
//! array in 1,000 × 1,000 blocks, computed on the threaded scheduler, with
//! the wall time printed.
//!
//! Run: `cargo run --release -p blockwise-array --example seed_mean -- [n] [chunk]`

use std::time::Instant;

use blockwise_array::{TryCompute, random};

fn main() -> blockwise_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let chunk: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let start = Instant::now();
    let x = random::uniform(&[n, n], &[chunk, chunk], 42)?;
    let means = x.mean_axis(0).compute()?;
    let elapsed = start.elapsed();
    println!(
        "{n} x {n} in {chunk} x {chunk} blocks: {} means, sum {:.6}, {:.3} s",
        means.len(),
        means.sum(),
        elapsed.as_secs_f64()
    );
    Ok(())
}
