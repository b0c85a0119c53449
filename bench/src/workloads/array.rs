//! Array workloads (issue 3): the seed example, a Zarr store larger than a
//! comfortable share of memory, and a blocked matrix product.
//!
//! - `array-mean`: uniform random `n × n` in `chunk × chunk` blocks, mean
//!   over axis 0; `result` is the sum of the `n` means. `--system rust-loop`
//!   runs the hand-written two-thread loop instead: it draws the same numbers
//!   (the same per-block generators as `blockwise::array::random`, sixteen
//!   interleaved xoshiro256++ streams filled a row at a time with SIMD) and
//!   adds them into column sums, with no graph, no blocks in memory and no
//!   allocation per block: the limit of the machine for this workload.
//!   blockwise runs its ordinary graph; the array crate fuses the mean's
//!   chunk stage with the random blocks it reads (`blockwise_array::stream`),
//!   so it too draws strips into the L1 cache and never stores a block.
//! - `array-sum-zarr`: the sum of a float64 Zarr v3 store (default 40,000 ×
//!   50,000, chunks 2,500 × 5,000, uncompressed: 16 GB), written by the bench
//!   into `--dir` unless a store of that shape is already there. The sum
//!   reads each uncompressed chunk file in pieces and folds them as they
//!   arrive (a fused reduction), with no buffer of a whole chunk.
//! - `matmul`: `a @ b` for uniform random `n × n` float64 arrays in
//!   `chunk × chunk` blocks; `result` is the sum of the product's elements.
//!
//! Every result is checked against the same numbers computed without
//! blockwise: the reference loop below, which regenerates the blocks from
//! their seeds. Checks run after the clock stops.

use std::path::{Path, PathBuf};
use std::time::Instant;

use blockwise::array::random::{self, block_rng};
use blockwise::array::{TryCompute, ZarrCompression};
use blockwise::prelude::*;

use super::{Context, OptionSpec, Workload, close};
use crate::BenchError;
use crate::measure;
use crate::record::{Record, seconds};

/// The workloads of this family.
pub(crate) const WORKLOADS: &[Workload] = &[
    Workload {
        name: "array-mean",
        about: "uniform random n x n in chunk x chunk blocks, mean over axis 0; result = sum of the means",
        options: &[N, CHUNK, SEED, SYSTEM],
        run: array_mean,
    },
    Workload {
        name: "array-sum-zarr",
        about: "sum of a float64 Zarr v3 store (rows x cols, uncompressed), written into --dir first",
        options: &[DIR, ROWS, COLS, CHUNK_ROWS, CHUNK_COLS, SEED],
        run: array_sum_zarr,
    },
    Workload {
        name: "matmul",
        about: "a @ b for uniform random n x n float64 in chunk x chunk blocks; result = sum of the product",
        options: &[MATMUL_N, CHUNK, SEED],
        run: matmul,
    },
];

const N: OptionSpec = OptionSpec {
    name: "n",
    default: "10000",
    about: "rows and columns",
};
const MATMUL_N: OptionSpec = OptionSpec {
    name: "n",
    default: "8000",
    about: "rows and columns of both matrices",
};
const CHUNK: OptionSpec = OptionSpec {
    name: "chunk",
    default: "1000",
    about: "rows and columns of a block",
};
const SEED: OptionSpec = OptionSpec {
    name: "seed",
    default: "42",
    about: "random seed",
};
const SYSTEM: OptionSpec = OptionSpec {
    name: "system",
    default: "blockwise",
    about: "blockwise, or rust-loop (the hand-written two-thread loop, no blockwise)",
};
const DIR: OptionSpec = OptionSpec {
    name: "dir",
    default: "/tmp/blockwise-bench/array.zarr",
    about: "the Zarr store (written when absent or of another shape)",
};
const ROWS: OptionSpec = OptionSpec {
    name: "rows",
    default: "40000",
    about: "rows of the store",
};
const COLS: OptionSpec = OptionSpec {
    name: "cols",
    default: "50000",
    about: "columns of the store",
};
const CHUNK_ROWS: OptionSpec = OptionSpec {
    name: "chunk-rows",
    default: "2500",
    about: "rows of a chunk",
};
const CHUNK_COLS: OptionSpec = OptionSpec {
    name: "chunk-cols",
    default: "5000",
    about: "columns of a chunk",
};

/// The blocks of an `rows × cols` array in `chunk_rows × chunk_cols` blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Grid {
    rows: usize,
    cols: usize,
    chunk_rows: usize,
    chunk_cols: usize,
}

impl Grid {
    fn blocks(&self) -> (usize, usize) {
        (self.rows.div_ceil(self.chunk_rows), self.cols.div_ceil(self.chunk_cols))
    }

    /// Row range and column range of block `(bi, bj)`.
    fn extent(&self, bi: usize, bj: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let r0 = bi * self.chunk_rows;
        let c0 = bj * self.chunk_cols;
        (r0..(r0 + self.chunk_rows).min(self.rows), c0..(c0 + self.chunk_cols).min(self.cols))
    }
}

/// The hand-written reference: regenerates every block of
/// `random::uniform(&[rows, cols], &[chunk_rows, chunk_cols], seed)` from
/// its seed, on `threads` threads (block `k` in row-major block order goes
/// to thread `k % threads`), and gives the column sums and the row sums of
/// the whole array. Nothing but the sums is kept in memory.
fn reference_sums(grid: Grid, seed: u64, threads: usize, want_rows: bool) -> (Vec<f64>, Vec<f64>) {
    let (nbi, nbj) = grid.blocks();
    let threads = threads.max(1);
    let partials: Vec<(Vec<f64>, Vec<f64>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut col = vec![0.0f64; grid.cols];
                    let mut row = vec![0.0f64; if want_rows { grid.rows } else { 0 }];
                    // One row of a block at a time, drawn into a buffer that
                    // stays in the L1 cache, then added to the column sums.
                    let mut draws = vec![0.0f64; grid.chunk_cols];
                    for k in (t..nbi * nbj).step_by(threads) {
                        let (bi, bj) = (k / nbj, k % nbj);
                        let (rs, cs) = grid.extent(bi, bj);
                        let mut rng = block_rng(seed, &[bi, bj]);
                        let draws = &mut draws[..cs.len()];
                        for r in rs {
                            rng.fill_uniform(draws);
                            let acc = &mut col[cs.clone()];
                            for (a, x) in acc.iter_mut().zip(draws.iter()) {
                                *a += x;
                            }
                            if want_rows {
                                row[r] += draws.iter().sum::<f64>();
                            }
                        }
                    }
                    (col, row)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("reference thread")).collect()
    });
    let mut col = vec![0.0f64; grid.cols];
    let mut row = vec![0.0f64; if want_rows { grid.rows } else { 0 }];
    for (c, r) in partials {
        col.iter_mut().zip(&c).for_each(|(a, b)| *a += b);
        row.iter_mut().zip(&r).for_each(|(a, b)| *a += b);
    }
    (col, row)
}

fn check_close(what: &str, got: f64, expected: f64, rel: f64) -> Result<(), BenchError> {
    if close(got, expected, rel) {
        Ok(())
    } else {
        Err(BenchError::Failed(format!(
            "{what}: got {got}, expected {expected} (computed without blockwise; relative tolerance {rel:e})"
        )))
    }
}

fn square_params(ctx: &Context<'_>, default_n: usize) -> Result<(usize, usize, u64), BenchError> {
    let n = ctx.options.usize("n", default_n)?;
    let chunk = ctx.options.usize("chunk", 1000)?;
    if n == 0 || chunk == 0 {
        return Err(BenchError::Usage(format!("--n {n} --chunk {chunk}: expected both at least 1")));
    }
    Ok((n, chunk, ctx.options.usize("seed", 42)? as u64))
}

fn array_mean(ctx: &Context<'_>) -> Result<Record, BenchError> {
    let (n, chunk, seed) = square_params(ctx, 10_000)?;
    let system = ctx.options.choice("system", &["blockwise", "rust-loop"], SYSTEM.default)?;
    let grid = Grid {
        rows: n,
        cols: n,
        chunk_rows: chunk,
        chunk_cols: chunk,
    };
    let rss_before = measure::rss_bytes();
    let mut r = ctx.record();
    let (result, tasks) = if system == "rust-loop" {
        let threads = ctx.scheduler.workers;
        let t0 = Instant::now();
        let (col, _) = reference_sums(grid, seed, threads, false);
        let means: f64 = col.iter().map(|s| s / n as f64).sum();
        let wall = t0.elapsed();
        r.set("system", "rust-loop")
            .set("build_s", 0.0)
            .set("wall_s", seconds(wall))
            .set("total_s", seconds(wall));
        (means, None)
    } else {
        let t0 = Instant::now();
        let x = random::uniform(&[n, n], &[chunk, chunk], seed)?;
        let m = x.mean_axis(0);
        let build = t0.elapsed();
        let t1 = Instant::now();
        let means = m.compute_with(ctx.scheduler.scheduler.clone())?;
        let wall = t1.elapsed();
        if means.len() != n {
            return Err(BenchError::Failed(format!("array-mean: {} means, expected {n}", means.len())));
        }
        r.set("build_s", seconds(build))
            .set("wall_s", seconds(wall))
            .set("total_s", seconds(build + wall));
        let (nb, _) = grid.blocks();
        (means.sum(), Some(nb * nb))
    };
    let peak = measure::peak_rss_bytes();
    // The check, after the clock: the same numbers drawn again without blockwise.
    if system == "blockwise" {
        let (col, _) = reference_sums(grid, seed, ctx.scheduler.workers, false);
        let expected: f64 = col.iter().map(|s| s / n as f64).sum();
        check_close("array-mean", result, expected, 1e-9)?;
    } else if !(n as f64 * 0.49..n as f64 * 0.51).contains(&result) && n >= 100 {
        return Err(BenchError::Failed(format!("array-mean: the loop's result {result} is not near n/2")));
    }
    r.set("n", n)
        .set("chunk", chunk)
        .set("tasks", tasks)
        .set("bytes", (n * n * 8) as u64)
        .set("peak_rss_bytes", peak)
        .set("rss_before_bytes", rss_before)
        .set("result", result);
    Ok(r)
}

/// The store's description, kept beside it: shape, chunks, seed, and the
/// sum computed without blockwise while the store was written.
fn zarr_sidecar(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!("{name}.bench.json"))
}

/// Writes the store unless one with this shape, chunking and seed is there
/// (as its sidecar says); returns the expected sum.
fn ensure_zarr(dir: &Path, grid: Grid, seed: u64, ctx: &Context<'_>) -> Result<f64, BenchError> {
    let sidecar = zarr_sidecar(dir);
    let wanted = serde_json::json!({
        "rows": grid.rows, "cols": grid.cols,
        "chunk_rows": grid.chunk_rows, "chunk_cols": grid.chunk_cols, "seed": seed,
    });
    if let Ok(text) = std::fs::read_to_string(&sidecar)
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
    {
        let same = ["rows", "cols", "chunk_rows", "chunk_cols", "seed"]
            .iter()
            .all(|k| v[k] == wanted[k]);
        if same
            && dir.join("zarr.json").exists()
            && let Some(sum) = v["sum"].as_f64()
        {
            return Ok(sum);
        }
    }
    eprintln!(
        "array-sum-zarr: writing a {} x {} float64 Zarr store ({:.1} GB) into {}",
        grid.rows,
        grid.cols,
        (grid.rows * grid.cols * 8) as f64 / 1e9,
        dir.display()
    );
    let _ = std::fs::remove_file(&sidecar);
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| BenchError::Failed(format!("cannot remove the old store {}: {e}", dir.display())))?;
    }
    let x = random::uniform(&[grid.rows, grid.cols], &[grid.chunk_rows, grid.chunk_cols], seed)?;
    x.to_zarr_with(dir, ZarrCompression::None, ctx.scheduler.scheduler.clone())?;
    let (col, _) = reference_sums(grid, seed, ctx.scheduler.workers, false);
    let sum: f64 = col.iter().sum();
    let mut v = wanted;
    v["sum"] = serde_json::json!(sum);
    std::fs::write(&sidecar, v.to_string())
        .map_err(|e| BenchError::Failed(format!("cannot write {}: {e}", sidecar.display())))?;
    Ok(sum)
}

fn array_sum_zarr(ctx: &Context<'_>) -> Result<Record, BenchError> {
    let grid = Grid {
        rows: ctx.options.usize("rows", 40_000)?,
        cols: ctx.options.usize("cols", 50_000)?,
        chunk_rows: ctx.options.usize("chunk-rows", 2_500)?,
        chunk_cols: ctx.options.usize("chunk-cols", 5_000)?,
    };
    if [grid.rows, grid.cols, grid.chunk_rows, grid.chunk_cols].contains(&0) {
        return Err(BenchError::Usage("array-sum-zarr: sizes must be at least 1".into()));
    }
    let seed = ctx.options.usize("seed", 42)? as u64;
    let dir = PathBuf::from(ctx.options.get("dir").unwrap_or(DIR.default));
    let expected = ensure_zarr(&dir, grid, seed, ctx)?;

    measure::reset_peak_rss();
    let rss_before = measure::rss_bytes();
    let t0 = Instant::now();
    let x = blockwise::array::from_zarr::<f64>(&dir, None)?;
    let s = x.sum();
    let build = t0.elapsed();
    let t1 = Instant::now();
    let total = s.compute_with(ctx.scheduler.scheduler.clone())?;
    let wall = t1.elapsed();
    let peak = measure::peak_rss_bytes();
    let result = *total
        .iter()
        .next()
        .ok_or_else(|| BenchError::Failed("array-sum-zarr: the sum is an empty array".into()))?;
    check_close("array-sum-zarr", result, expected, 1e-9)?;
    let bytes = (grid.rows * grid.cols * 8) as u64;
    let (nbi, nbj) = grid.blocks();
    let mut r = ctx.record();
    r.set("rows", grid.rows)
        .set("cols", grid.cols)
        .set("chunk_rows", grid.chunk_rows)
        .set("chunk_cols", grid.chunk_cols)
        .set("tasks", nbi * nbj)
        .set("bytes", bytes)
        .set("build_s", seconds(build))
        .set("wall_s", seconds(wall))
        .set("total_s", seconds(build + wall))
        .set("gb_per_s", (bytes as f64 / 1e9 / (build + wall).as_secs_f64() * 1000.0).round() / 1000.0)
        .set("peak_rss_bytes", peak)
        .set("rss_before_bytes", rss_before)
        .set("result", result);
    Ok(r)
}

fn matmul(ctx: &Context<'_>) -> Result<Record, BenchError> {
    let (n, chunk, seed) = square_params(ctx, 8_000)?;
    let rss_before = measure::rss_bytes();
    // Two different matrices from two seeds.
    let t0 = Instant::now();
    let a = random::uniform(&[n, n], &[chunk, chunk], seed)?;
    let b = random::uniform(&[n, n], &[chunk, chunk], seed + 1)?;
    let c = a.matmul(&b);
    let build = t0.elapsed();
    let t1 = Instant::now();
    let product = c.compute_with(ctx.scheduler.scheduler.clone())?;
    let wall = t1.elapsed();
    let peak = measure::peak_rss_bytes();
    if product.shape() != [n, n] {
        return Err(BenchError::Failed(format!("matmul: the product has shape {:?}", product.shape())));
    }
    let result = product.sum();
    drop(product);
    // sum(a @ b) = Σ_k (column sums of a)_k · (row sums of b)_k.
    let grid = Grid {
        rows: n,
        cols: n,
        chunk_rows: chunk,
        chunk_cols: chunk,
    };
    let (a_cols, _) = reference_sums(grid, seed, ctx.scheduler.workers, false);
    let (_, b_rows) = reference_sums(grid, seed + 1, ctx.scheduler.workers, true);
    let expected: f64 = a_cols.iter().zip(&b_rows).map(|(x, y)| x * y).sum();
    check_close("matmul", result, expected, 1e-9)?;
    let nb = n.div_ceil(chunk);
    let mut r = ctx.record();
    r.set("n", n)
        .set("chunk", chunk)
        // Two random layers, and one product task per output block.
        .set("tasks", 3 * nb * nb)
        .set("build_s", seconds(build))
        .set("wall_s", seconds(wall))
        .set("total_s", seconds(build + wall))
        .set("gflop_per_s", (2.0 * (n as f64).powi(3) / wall.as_secs_f64() / 1e9 * 100.0).round() / 100.0)
        .set("peak_rss_bytes", peak)
        .set("rss_before_bytes", rss_before)
        .set("result", result);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::tests::run;

    #[test]
    fn the_reference_draws_the_numbers_blockwise_draws() {
        // Uneven blocks on both axes.
        let grid = Grid {
            rows: 37,
            cols: 23,
            chunk_rows: 10,
            chunk_cols: 7,
        };
        let x = random::uniform(&[37, 23], &[10, 7], 9).unwrap().compute().unwrap();
        let (col, row) = reference_sums(grid, 9, 3, true);
        for j in 0..23 {
            let s: f64 = (0..37).map(|i| x[[i, j]]).sum();
            assert!(close(col[j], s, 1e-12), "column {j}");
        }
        for i in 0..37 {
            let s: f64 = (0..23).map(|j| x[[i, j]]).sum();
            assert!(close(row[i], s, 1e-12), "row {i}");
        }
        // The thread count does not change the sums beyond rounding.
        let (col1, _) = reference_sums(grid, 9, 1, false);
        assert!(col1.iter().zip(&col).all(|(a, b)| close(*a, *b, 1e-12)));
    }

    #[test]
    fn array_mean_matches_the_loop_on_both_schedulers() {
        for scheduler in ["sync", "threads:2"] {
            let r = run("array-mean", scheduler, &[("n", "300"), ("chunk", "70")]).unwrap();
            let loop_r = run("array-mean", scheduler, &[("n", "300"), ("chunk", "70"), ("system", "rust-loop")]).unwrap();
            let a = r.get("result").unwrap().as_f64().unwrap();
            let b = loop_r.get("result").unwrap().as_f64().unwrap();
            assert!(close(a, b, 1e-9), "{a} vs {b}");
            assert!((a - 150.0).abs() < 3.0, "{a}");
            assert_eq!(r.get("tasks").unwrap(), 25);
            assert_eq!(loop_r.get("system").unwrap(), "rust-loop");
        }
    }

    #[test]
    fn matmul_sums_the_product() {
        let r = run("matmul", "threads:2", &[("n", "90"), ("chunk", "40")]).unwrap();
        // Each entry of the product is a sum of 90 products of two U(0,1): about 22.5.
        let s = r.get("result").unwrap().as_f64().unwrap();
        assert!((s / (90.0 * 90.0) - 22.5).abs() < 2.0, "{s}");
    }

    #[test]
    fn array_sum_zarr_writes_then_reuses_its_store() {
        let dir = std::env::temp_dir().join(format!("blockwise-bench-zarr-{}", std::process::id()));
        let store = dir.join("x.zarr");
        let opts = [
            ("dir", store.to_str().unwrap()),
            ("rows", "50"),
            ("cols", "40"),
            ("chunk-rows", "20"),
            ("chunk-cols", "15"),
        ];
        let first = run("array-sum-zarr", "threads:2", &opts).unwrap();
        assert!(zarr_sidecar(&store).exists());
        let second = run("array-sum-zarr", "sync", &opts).unwrap();
        let (a, b) = (first.get("result").unwrap(), second.get("result").unwrap());
        assert!(close(a.as_f64().unwrap(), b.as_f64().unwrap(), 1e-12));
        assert_eq!(first.get("tasks").unwrap(), 9);
        // A different shape rewrites the store.
        let mut other = opts;
        other[1] = ("rows", "60");
        run("array-sum-zarr", "sync", &other).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
