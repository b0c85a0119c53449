//! Random arrays, reproducible from a seed whatever runs them.
//!
//! Each block draws from its own xoshiro256++ generator, seeded from the
//! user's seed and the block's index (hashed together with XXH3). A block's
//! numbers therefore depend only on `(seed, block index, block shape)`: the
//! same on the sync and threaded schedulers, on any number of threads, in a
//! worker process, and when only some blocks are computed (a slice). They do
//! depend on the chunking, as Dask's do.
//!
//! ```
//! use blockwise_array::random;
//! use blockwise_local::Compute;
//! let x = random::uniform(&[1_000, 1_000], &[250, 250], 42).unwrap();
//! let m = x.mean_axis(0).unwrap().compute().unwrap();
//! assert_eq!(m.len(), 1_000);
//! ```

use blockwise_core::{Error, Result, Value};
use ndarray::{ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::array::{Array, blockwise_layer};
use crate::chunks::{ChunkSpec, Chunks};
use crate::creation::{BlockInfo, index_args};
use crate::element::{Number, for_each_number};
use crate::kernel::{Kernel, op, register_kernel, value};

/// A distribution to draw from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Distribution {
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound (included).
        low: f64,
        /// Upper bound (excluded).
        high: f64,
    },
    /// Normal with this mean and standard deviation.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Integers uniform on `[low, high)`.
    Integers {
        /// Lower bound (included).
        low: i64,
        /// Upper bound (excluded).
        high: i64,
    },
}

/// Draws one block.
#[derive(Serialize, Deserialize)]
pub(crate) struct Random<T> {
    chunks: Chunks,
    seed: u64,
    dist: Distribution,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

/// The generator of one block: a function of the seed and the block index only.
pub fn block_rng(seed: u64, index: &[usize]) -> Xoshiro256PlusPlus {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(b"blockwise-array-random");
    h.update(&seed.to_le_bytes());
    for &i in index {
        h.update(&(i as u64).to_le_bytes());
    }
    Xoshiro256PlusPlus::seed_from_u64(h.digest())
}

/// A uniform number on `[0, 1)` with 53 random bits.
#[inline]
fn unit(rng: &mut Xoshiro256PlusPlus) -> f64 {
    (rand::Rng::next_u64(rng) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Draws `n` numbers of `dist` from `rng`.
pub(crate) fn draw<T: Number>(rng: &mut Xoshiro256PlusPlus, dist: Distribution, n: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    match dist {
        Distribution::Uniform { low, high } => {
            let span = high - low;
            out.extend((0..n).map(|_| T::from_f64(low + span * unit(rng))));
        }
        Distribution::Normal { mean, std } => {
            // Box–Muller, both outputs used.
            while out.len() < n {
                let u1 = 1.0 - unit(rng);
                let u2 = unit(rng);
                let r = (-2.0 * u1.ln()).sqrt();
                let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
                out.push(T::from_f64(mean + std * r * c));
                if out.len() < n {
                    out.push(T::from_f64(mean + std * r * s));
                }
            }
        }
        Distribution::Integers { low, high } => {
            for _ in 0..n {
                let x: i64 = rng.random_range(low..high);
                out.push(T::from_f64(x as f64));
            }
        }
    }
    out
}

impl<T: Number> Kernel for Random<T> {
    const BASE: &'static str = "array.random";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let info = BlockInfo::from_args(&self.chunks, args)?;
        let n = info.shape.iter().product();
        let mut rng = block_rng(self.seed, &info.index);
        let data = draw::<T>(&mut rng, self.dist, n);
        let block = ArrayD::from_shape_vec(IxDyn(&info.shape), data).map_err(|e| Error::graph(e.to_string()))?;
        Ok(value(block))
    }
}

macro_rules! reg_random {
    ($t:ident) => {
        register_kernel!(Random, "array.random", $t);
    };
}
for_each_number!(reg_random);

/// An array drawn from `dist`, element type `T`.
pub fn sample<T: Number>(
    dist: Distribution,
    shape: &[usize],
    chunks: impl Into<ChunkSpec>,
    seed: u64,
) -> Result<Array<T>> {
    match dist {
        Distribution::Uniform { low, high } if !(low.is_finite() && high.is_finite() && low <= high) => {
            return Err(Error::invalid(format!(
                "uniform: the bounds [{low}, {high}) are not finite and ordered"
            )));
        }
        Distribution::Normal { mean, std } if !(mean.is_finite() && std.is_finite() && std >= 0.0) => {
            return Err(Error::invalid(format!(
                "normal: the mean {mean} and standard deviation {std} must be finite, the deviation not negative"
            )));
        }
        Distribution::Integers { low, high } if low >= high => {
            return Err(Error::invalid(format!("integers: the range [{low}, {high}) is empty")));
        }
        _ => {}
    }
    let chunks = chunks.into().resolve(shape, T::SIZE)?;
    let ndim = chunks.ndim();
    let kernel = Random::<T> {
        chunks: chunks.clone(),
        seed,
        dist,
        _type: std::marker::PhantomData,
    };
    let prefix = match dist {
        Distribution::Uniform { .. } => "uniform",
        Distribution::Normal { .. } => "normal",
        Distribution::Integers { .. } => "integers",
    };
    let meta = blockwise_layer(prefix, op(kernel), &chunks, index_args(ndim), vec![], &[]);
    Ok(Array::from_meta(meta))
}

/// Uniform `f64` on `[0, 1)` (NumPy's `random`). Infallible for valid chunk
/// specs; a bad spec is an error.
pub fn uniform(shape: &[usize], chunks: impl Into<ChunkSpec>, seed: u64) -> Result<Array<f64>> {
    sample(Distribution::Uniform { low: 0.0, high: 1.0 }, shape, chunks, seed)
}

/// Uniform `f64` on `[low, high)`.
pub fn uniform_range(
    low: f64,
    high: f64,
    shape: &[usize],
    chunks: impl Into<ChunkSpec>,
    seed: u64,
) -> Result<Array<f64>> {
    sample(Distribution::Uniform { low, high }, shape, chunks, seed)
}

/// Standard normal `f64` (mean 0, deviation 1).
pub fn standard_normal(shape: &[usize], chunks: impl Into<ChunkSpec>, seed: u64) -> Result<Array<f64>> {
    sample(Distribution::Normal { mean: 0.0, std: 1.0 }, shape, chunks, seed)
}

/// Normal `f64` with this mean and standard deviation.
pub fn normal(mean: f64, std: f64, shape: &[usize], chunks: impl Into<ChunkSpec>, seed: u64) -> Result<Array<f64>> {
    sample(Distribution::Normal { mean, std }, shape, chunks, seed)
}

/// Integers of type `T` uniform on `[low, high)`.
pub fn integers<T: Number>(
    low: i64,
    high: i64,
    shape: &[usize],
    chunks: impl Into<ChunkSpec>,
    seed: u64,
) -> Result<Array<T>> {
    sample(Distribution::Integers { low, high }, shape, chunks, seed)
}
