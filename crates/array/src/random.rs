//! Random arrays, reproducible from a seed whatever runs them.
//!
//! Each block draws from its own generator, [`BlockRng`]: sixteen
//! xoshiro256++ streams ("lanes") interleaved element by element, seeded
//! from the user's seed and the block's index (hashed together with XXH3);
//! lane `l` is the block's first stream advanced by `l` jumps of 2¹²⁸ steps,
//! so the lanes never overlap. Sixteen independent streams let the compiler
//! step them side by side in SIMD registers (AVX-512, whose 64-bit vector
//! rotates xoshiro needs, or AVX2, whichever the CPU has, chosen at run
//! time), several times faster than one stream. The integer
//! arithmetic is the same on every CPU, so the numbers are too.
//!
//! A block's numbers therefore depend only on `(seed, block index, block
//! shape)`: the same on the sync and threaded schedulers, on any number of
//! threads, in a worker process, and when only some blocks are computed (a
//! slice). They do depend on the chunking, as Dask's do.
//!
//! Uniform floats take the top 52 bits of a 64-bit output as the mantissa of
//! a number in `[1, 2)` and subtract 1: every multiple of 2⁻⁵² in `[0, 1)`
//! equally likely.
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
use pulp::{Arch, Simd, WithSimd};
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
    pub(crate) chunks: Chunks,
    pub(crate) seed: u64,
    pub(crate) dist: Distribution,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

/// Interleaved streams of a [`BlockRng`].
pub const LANES: usize = 16;

/// `1.0`'s bits: OR-ed with 52 random mantissa bits, a number in `[1, 2)`.
const ONE_BITS: u64 = 0x3FF0_0000_0000_0000;

/// The generator of one block: [`LANES`] xoshiro256++ streams, output `j`
/// from lane `j % LANES` (its `j / LANES`-th number).
///
/// The sequence does not depend on how it is drawn: `fill_uniform` of 10
/// then of 90 numbers gives the same 100 numbers as one `fill_uniform` of
/// 100, and [`next_u64`](Self::next_u64) continues where a fill stopped.
#[derive(Clone, Debug)]
pub struct BlockRng {
    /// The four state words of every lane, word-major (`s[w][lane]`), so
    /// that one word of all lanes sits in adjacent memory (SIMD registers).
    s: [[u64; LANES]; 4],
    /// One step of every lane, drawn ahead for `next_u64` and partial fills.
    buf: [u64; LANES],
    /// Outputs of `buf` already handed out (`LANES`: none left).
    used: usize,
}

/// SplitMix64, as `rand_xoshiro`'s `seed_from_u64` expands a `u64` seed.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One xoshiro256++ step of a single stream (for the jumps).
fn step_one(s: &mut [u64; 4]) -> u64 {
    let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
    let t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s[3].rotate_left(45);
    out
}

/// One xoshiro256++ step of every lane of `s` (word-major): `LANES`
/// outputs. Written lane by lane with no dependency between lanes, so it
/// compiles to SIMD.
#[inline(always)]
fn step_lanes(s: &mut [[u64; LANES]; 4]) -> [u64; LANES] {
    let [s0, s1, s2, s3] = s;
    let mut out = [0u64; LANES];
    for i in 0..LANES {
        out[i] = s0[i].wrapping_add(s3[i]).rotate_left(23).wrapping_add(s0[i]);
        let t = s1[i] << 17;
        s2[i] ^= s0[i];
        s3[i] ^= s1[i];
        s1[i] ^= s2[i];
        s0[i] ^= s3[i];
        s2[i] ^= t;
        s3[i] = s3[i].rotate_left(45);
    }
    out
}

/// Advances one stream by 2¹²⁸ steps (xoshiro256's `jump`).
fn jump(s: &mut [u64; 4]) {
    const JUMP: [u64; 4] = [
        0x180e_c6d3_3cfd_0aba,
        0xd5a6_1266_f0c9_392c,
        0xa958_2618_e03f_c9aa,
        0x39ab_dc45_29b1_661c,
    ];
    let mut acc = [0u64; 4];
    for word in JUMP {
        for b in 0..64 {
            if word & (1u64 << b) != 0 {
                for (a, x) in acc.iter_mut().zip(s.iter()) {
                    *a ^= x;
                }
            }
            step_one(s);
        }
    }
    *s = acc;
}

impl BlockRng {
    /// A generator whose first lane is xoshiro256++ seeded with
    /// `seed_from_u64(seed)` (SplitMix64 expansion), and lane `l` that
    /// stream after `l` jumps of 2¹²⁸ steps.
    pub fn from_seed_u64(seed: u64) -> Self {
        let mut sm = seed;
        let mut lane = [0u64; 4];
        for w in &mut lane {
            *w = splitmix64(&mut sm);
        }
        if lane == [0; 4] {
            // The one state xoshiro cannot leave (as rand_xoshiro does).
            lane = [0x9E37_79B9_7F4A_7C15, 0xBF58_476D_1CE4_E5B9, 0x94D0_49BB_1331_11EB, 1];
        }
        let mut s = [[0u64; LANES]; 4];
        for l in 0..LANES {
            if l > 0 {
                jump(&mut lane);
            }
            for (word, value) in s.iter_mut().zip(lane) {
                word[l] = value;
            }
        }
        BlockRng {
            s,
            buf: [0; LANES],
            used: LANES,
        }
    }

    /// One xoshiro256++ step of every lane: `LANES` outputs.
    #[inline(always)]
    fn step(&mut self) -> [u64; LANES] {
        step_lanes(&mut self.s)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        if self.used == LANES {
            self.buf = self.step();
            self.used = 0;
        }
        let x = self.buf[self.used];
        self.used += 1;
        x
    }

    /// A uniform number on `[0, 1)` (a multiple of 2⁻⁵²).
    pub fn next_uniform(&mut self) -> f64 {
        to_unit(self.next_u64())
    }

    /// Fills `out` with uniform numbers on `[0, 1)`: the next `out.len()`
    /// numbers of the sequence, as `next_uniform` would give them one by one.
    pub fn fill_uniform(&mut self, out: &mut [f64]) {
        Arch::new().dispatch(FillUniform { rng: self, out });
    }

    /// [`fill_uniform`](Self::fill_uniform), inlined into the caller (which
    /// chooses the instruction set).
    #[inline(always)]
    fn fill_uniform_inline(&mut self, out: &mut [f64]) {
        // Finish the step drawn ahead first.
        let ahead = (LANES - self.used).min(out.len());
        let (head, rest) = out.split_at_mut(ahead);
        for o in head {
            *o = to_unit(self.buf[self.used]);
            self.used += 1;
        }
        let mut groups = rest.chunks_exact_mut(LANES);
        // The state in locals for the loop (registers, not memory).
        let mut s = self.s;
        for g in &mut groups {
            let bits = step_lanes(&mut s);
            for (o, b) in g.iter_mut().zip(bits) {
                *o = to_unit(b);
            }
        }
        self.s = s;
        for o in groups.into_remainder() {
            *o = self.next_uniform();
        }
    }

    /// `n` numbers uniform on `[low, low + span)` converted to `T`, in a new
    /// vector (no zeroing pass: drawn in small pieces and appended).
    fn uniform_vec<T: Number>(&mut self, n: usize, low: f64, span: f64) -> Vec<T> {
        Arch::new().dispatch(UniformVec {
            rng: self,
            n,
            low,
            span,
            _type: std::marker::PhantomData,
        })
    }

    /// An integer uniform on `[low, high)` (`low < high`), without bias
    /// (Lemire's multiply-and-reject).
    pub fn next_in_range(&mut self, low: i64, high: i64) -> i64 {
        let range = high.wrapping_sub(low) as u64;
        debug_assert!(low < high);
        let mut m = u128::from(self.next_u64()) * u128::from(range);
        if (m as u64) < range {
            let threshold = range.wrapping_neg() % range;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(range);
            }
        }
        low.wrapping_add((m >> 64) as u64 as i64)
    }
}

/// `fill_uniform` as an operation that `pulp` runs with the best
/// instruction set of the CPU (AVX-512 or AVX2 on x86-64): `with_simd` and
/// everything it calls are inlined into a function compiled for it.
struct FillUniform<'a> {
    rng: &'a mut BlockRng,
    out: &'a mut [f64],
}

impl WithSimd for FillUniform<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        self.rng.fill_uniform_inline(self.out);
    }
}

/// `uniform_vec` as a `pulp` operation (see [`FillUniform`]).
struct UniformVec<'a, T> {
    rng: &'a mut BlockRng,
    n: usize,
    low: f64,
    span: f64,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Number> WithSimd for UniformVec<'_, T> {
    type Output = Vec<T>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<T> {
        const PIECE: usize = 16 * LANES;
        let UniformVec { rng, n, low, span, .. } = self;
        let mut out = Vec::with_capacity(n);
        let mut piece = [0.0f64; PIECE];
        while out.len() < n {
            let k = (n - out.len()).min(PIECE);
            rng.fill_uniform_inline(&mut piece[..k]);
            if low == 0.0 && span == 1.0 {
                out.extend(piece[..k].iter().map(|&u| T::from_f64(u)));
            } else {
                out.extend(piece[..k].iter().map(|&u| T::from_f64(low + span * u)));
            }
        }
        out
    }
}

/// 64 random bits to a uniform number on `[0, 1)`: the top 52 bits as the
/// mantissa of a number in `[1, 2)`, minus 1 (exact).
#[inline(always)]
fn to_unit(bits: u64) -> f64 {
    f64::from_bits((bits >> 12) | ONE_BITS) - 1.0
}

/// The generator of one block: a function of the seed and the block index only.
pub fn block_rng(seed: u64, index: &[usize]) -> BlockRng {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(b"blockwise-array-random");
    h.update(&seed.to_le_bytes());
    for &i in index {
        h.update(&(i as u64).to_le_bytes());
    }
    BlockRng::from_seed_u64(h.digest())
}

/// Draws `n` numbers of `dist` from `rng`.
pub(crate) fn draw<T: Number>(rng: &mut BlockRng, dist: Distribution, n: usize) -> Vec<T> {
    match dist {
        Distribution::Uniform { low, high } => rng.uniform_vec(n, low, high - low),
        Distribution::Normal { .. } | Distribution::Integers { .. } => {
            let mut out = vec![T::zero(); n];
            let mut draws = Draws::new(rng.clone(), dist);
            draws.fill(&mut out);
            *rng = draws.rng;
            out
        }
    }
}

/// The numbers of one block drawn a piece at a time: the block's sequence
/// whatever the sizes of the pieces (what [`draw`] gives in one go), so a
/// reduction can draw a strip into a buffer that stays in the L1 cache and
/// fold it at once instead of storing the block (see [`crate::stream`]).
#[derive(Clone, Debug)]
pub(crate) struct Draws {
    rng: BlockRng,
    dist: Distribution,
    /// Box–Muller's second number, drawn with the first and not given out yet.
    spare: Option<f64>,
}

impl Draws {
    /// The draws of `dist` from `rng`, from its current position.
    pub(crate) fn new(rng: BlockRng, dist: Distribution) -> Self {
        Draws { rng, dist, spare: None }
    }

    /// Writes the next `out.len()` numbers.
    pub(crate) fn fill<T: Number>(&mut self, out: &mut [T]) {
        let rng = &mut self.rng;
        match self.dist {
            Distribution::Uniform { low, high } => {
                Arch::new().dispatch(FillNumbers {
                    rng,
                    out,
                    low,
                    span: high - low,
                });
            }
            Distribution::Normal { mean, std } => {
                // Box–Muller, both outputs used: the second is the next number.
                for o in out {
                    if let Some(s) = self.spare.take() {
                        *o = T::from_f64(s);
                        continue;
                    }
                    let u1 = 1.0 - rng.next_uniform();
                    let u2 = rng.next_uniform();
                    let r = (-2.0 * u1.ln()).sqrt();
                    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
                    *o = T::from_f64(mean + std * r * c);
                    self.spare = Some(mean + std * r * s);
                }
            }
            Distribution::Integers { low, high } => {
                for o in out {
                    *o = T::from_f64(rng.next_in_range(low, high) as f64);
                }
            }
        }
    }
}

/// Uniform numbers converted to `T` into a slice, as a `pulp` operation
/// (see [`FillUniform`]): the same numbers as [`UniformVec`].
struct FillNumbers<'a, T> {
    rng: &'a mut BlockRng,
    out: &'a mut [T],
    low: f64,
    span: f64,
}

impl<T: Number> WithSimd for FillNumbers<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        const PIECE: usize = 16 * LANES;
        let FillNumbers { rng, out, low, span } = self;
        let mut piece = [0.0f64; PIECE];
        for part in out.chunks_mut(PIECE) {
            let k = part.len();
            rng.fill_uniform_inline(&mut piece[..k]);
            if low == 0.0 && span == 1.0 {
                for (o, &u) in part.iter_mut().zip(&piece[..k]) {
                    *o = T::from_f64(u);
                }
            } else {
                for (o, &u) in part.iter_mut().zip(&piece[..k]) {
                    *o = T::from_f64(low + span * u);
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn uniforms(seed: u64, n: usize) -> Vec<f64> {
        let mut v = vec![0.0; n];
        block_rng(seed, &[3, 4]).fill_uniform(&mut v);
        v
    }

    #[test]
    fn lanes_are_xoshiro256pp_streams_a_jump_apart() {
        let seed = 0x1234_5678_9abc_def0;
        let mut ours = BlockRng::from_seed_u64(seed);
        let outs: Vec<u64> = (0..LANES * 50).map(|_| ours.next_u64()).collect();
        let mut reference = Xoshiro256PlusPlus::seed_from_u64(seed);
        for lane in 0..LANES {
            let mut r = reference.clone();
            for step in 0..50 {
                assert_eq!(outs[step * LANES + lane], r.next_u64(), "lane {lane} step {step}");
            }
            reference.jump();
        }
    }

    #[test]
    fn the_sequence_does_not_depend_on_how_it_is_drawn() {
        let whole = uniforms(7, 1000);
        // Pieces of every size around the lane count, and single draws.
        let mut rng = block_rng(7, &[3, 4]);
        let mut got = Vec::new();
        let mut sizes = [1usize, 3, 15, 16, 17, 31, 0, 33, 2].iter().cycle();
        while got.len() < 1000 {
            let k = (*sizes.next().unwrap()).min(1000 - got.len());
            if k == 2 {
                got.push(rng.next_uniform());
                got.push(to_unit(rng.next_u64()));
            } else {
                let mut piece = vec![0.0; k];
                rng.fill_uniform(&mut piece);
                got.extend(piece);
            }
        }
        assert_eq!(got, whole);
        // The vector path (used by the kernel) draws the same numbers.
        let v: Vec<f64> = block_rng(7, &[3, 4]).uniform_vec(1000, 0.0, 1.0);
        assert_eq!(v, whole);
        let w: Vec<f64> = block_rng(7, &[3, 4]).uniform_vec(1000, -2.0, 4.0);
        assert!(w.iter().zip(&whole).all(|(a, b)| *a == -2.0 + 4.0 * b));
        let f: Vec<f32> = block_rng(7, &[3, 4]).uniform_vec(1000, 0.0, 1.0);
        assert!(f.iter().zip(&whole).all(|(a, b)| *a == *b as f32));
    }

    #[test]
    fn blocks_and_seeds_get_different_numbers() {
        let a = uniforms(1, 64);
        let b = uniforms(2, 64);
        let mut c = vec![0.0; 64];
        block_rng(1, &[4, 3]).fill_uniform(&mut c);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, uniforms(1, 64));
    }

    /// Mean, variance, a 64-bin chi-square, serial correlation at lags 1
    /// (neighbouring lanes) and `LANES` (one lane's consecutive numbers).
    #[test]
    fn uniform_numbers_pass_basic_statistical_tests() {
        let n = 1 << 20;
        for seed in [0u64, 1, 42, u64::MAX] {
            let x = uniforms(seed, n);
            assert!(x.iter().all(|&v| (0.0..1.0).contains(&v)));
            let mean = x.iter().sum::<f64>() / n as f64;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
            // Standard error of the mean: sqrt(1/12/n) ≈ 2.8e-4.
            assert!((mean - 0.5).abs() < 1.5e-3, "seed {seed}: mean {mean}");
            assert!((var - 1.0 / 12.0).abs() < 1e-3, "seed {seed}: variance {var}");
            let mut bins = [0usize; 64];
            for &v in &x {
                bins[(v * 64.0) as usize] += 1;
            }
            let expected = n as f64 / 64.0;
            let chi2: f64 = bins.iter().map(|&b| (b as f64 - expected).powi(2) / expected).sum();
            // 63 degrees of freedom: mean 63, deviation 11.2; 130 is 6 deviations.
            assert!(chi2 < 130.0, "seed {seed}: chi-square {chi2}");
            for lag in [1, 2, LANES - 1, LANES, LANES + 1, 2 * LANES] {
                let c = x[..n - lag]
                    .iter()
                    .zip(&x[lag..])
                    .map(|(a, b)| (a - mean) * (b - mean))
                    .sum::<f64>()
                    / (n - lag) as f64
                    / var;
                // Standard error 1/sqrt(n) ≈ 1e-3.
                assert!(c.abs() < 6e-3, "seed {seed}: lag {lag} correlation {c}");
            }
            // The low mantissa bits are random too: bit 0 and bit 1 of the
            // 52-bit integer each set about half the time.
            for bit in [0u32, 1, 26, 51] {
                let set = x
                    .iter()
                    .filter(|&&v| ((v * (1u64 << 52) as f64) as u64 >> bit) & 1 == 1)
                    .count();
                let frac = set as f64 / n as f64;
                assert!((frac - 0.5).abs() < 3e-3, "seed {seed}: bit {bit} set {frac}");
            }
        }
    }

    #[test]
    fn neighbouring_blocks_are_uncorrelated() {
        let n = 1 << 16;
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        block_rng(5, &[0, 0]).fill_uniform(&mut a);
        block_rng(5, &[0, 1]).fill_uniform(&mut b);
        let c = a.iter().zip(&b).map(|(x, y)| (x - 0.5) * (y - 0.5)).sum::<f64>() / n as f64 * 12.0;
        assert!(c.abs() < 0.025, "{c}");
    }

    #[test]
    fn integers_are_uniform_and_in_range() {
        let mut rng = block_rng(11, &[0]);
        let mut counts = [0usize; 7];
        let n = 700_000;
        for _ in 0..n {
            let v = rng.next_in_range(-3, 4);
            assert!((-3..4).contains(&v));
            counts[(v + 3) as usize] += 1;
        }
        let expected = n as f64 / 7.0;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
        // 6 degrees of freedom: 40 is far in the tail.
        assert!(chi2 < 40.0, "{chi2} {counts:?}");
        // A range of one value, and the widest range.
        assert!((0..100).all(|_| rng.next_in_range(5, 6) == 5));
        let wide: Vec<i64> = (0..1000).map(|_| rng.next_in_range(i64::MIN, i64::MAX)).collect();
        assert!(wide.iter().any(|&v| v < 0) && wide.iter().any(|&v| v > 0));
        assert!(wide.iter().all(|&v| v < i64::MAX));
        // A range just above 2^63 (rejection happens often): still in range.
        let lo = -(1i64 << 62) * 2;
        assert!(
            (0..1000)
                .map(|_| rng.next_in_range(lo, 1))
                .all(|v| (lo..1).contains(&v))
        );
    }

    #[test]
    fn normal_numbers_have_the_right_moments() {
        let mut rng = block_rng(3, &[1, 2]);
        let x: Vec<f64> = draw(&mut rng, Distribution::Normal { mean: 2.0, std: 3.0 }, 400_001);
        assert_eq!(x.len(), 400_001);
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let skew = x.iter().map(|v| ((v - mean) / var.sqrt()).powi(3)).sum::<f64>() / n;
        let kurt = x.iter().map(|v| ((v - mean) / var.sqrt()).powi(4)).sum::<f64>() / n;
        assert!((mean - 2.0).abs() < 0.03, "{mean}");
        assert!((var - 9.0).abs() < 0.1, "{var}");
        assert!(skew.abs() < 0.03, "{skew}");
        assert!((kurt - 3.0).abs() < 0.06, "{kurt}");
    }
}
