//! How an array is cut into blocks.
//!
//! As in Dask, chunks are given per dimension: `((1000, 1000, 500), (250, 250))`
//! is a 2500 × 500 array in a 3 × 2 grid of blocks. [`Chunks`] holds that
//! normalized form (sizes per axis, every size positive, each axis summing to
//! its dimension; an axis of length 0 is one block of size 0).
//!
//! Users describe chunks with a [`ChunkSpec`]: a block shape (`&[1000, 250]`,
//! cut uniformly, the last block along an axis holding the rest), explicit
//! sizes per axis (`vec![vec![1000, 1000, 500], vec![250, 250]]`), or
//! [`ChunkSpec::Auto`]: blocks of about `array.chunk-size` bytes (default
//! 128 MiB, see `blockwise_core::config`), as square as the shape allows.
//! Per-axis choices mix ([`AxisChunks`]). A spec that does not fit the shape
//! is an [`ErrorKind::InvalidArgument`](blockwise_core::ErrorKind) error
//! naming the axis, raised while the graph is built.

use blockwise_core::{Error, Result, config};

/// Chunk sizes along every axis of an array (Dask's `chunks` tuple).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Chunks(Vec<Vec<usize>>);

impl Chunks {
    /// Checks `sizes` against `shape`: one list per axis, positive sizes
    /// summing to the dimension (a dimension of 0 has the single size 0).
    pub fn new(shape: &[usize], sizes: Vec<Vec<usize>>) -> Result<Self> {
        if sizes.len() != shape.len() {
            return Err(Error::invalid(format!(
                "chunks give {} axes, the shape {shape:?} has {}",
                sizes.len(),
                shape.len()
            )));
        }
        for (axis, (s, &dim)) in sizes.iter().zip(shape).enumerate() {
            if dim == 0 {
                if !(s.is_empty() || s == &[0]) {
                    return Err(Error::invalid(format!(
                        "chunks along axis {axis} are {s:?}, but the axis has length 0"
                    )));
                }
                continue;
            }
            if let Some(i) = s.iter().position(|&c| c == 0) {
                return Err(Error::invalid(format!(
                    "chunk {i} along axis {axis} has size 0 (chunks {s:?})"
                )));
            }
            let total: usize = s.iter().sum();
            if total != dim {
                return Err(Error::invalid(format!(
                    "chunks along axis {axis} sum to {total}, but the shape {shape:?} has {dim} there (chunks {s:?})"
                )));
            }
        }
        let sizes = sizes
            .into_iter()
            .zip(shape)
            .map(|(s, &d)| if d == 0 { vec![0] } else { s })
            .collect();
        Ok(Chunks(sizes))
    }

    /// Chunks of an already checked form (internal constructors).
    pub(crate) fn from_checked(sizes: Vec<Vec<usize>>) -> Self {
        debug_assert!(sizes.iter().all(|s| !s.is_empty()));
        Chunks(sizes)
    }

    /// One block per axis, the whole shape.
    pub fn single(shape: &[usize]) -> Self {
        Chunks(shape.iter().map(|&d| vec![d]).collect())
    }

    /// Uniform blocks of `block` along each axis (the last one holds the rest).
    pub fn uniform(shape: &[usize], block: &[usize]) -> Result<Self> {
        if block.len() != shape.len() {
            return Err(Error::invalid(format!(
                "the block shape {block:?} has {} axes, the shape {shape:?} has {}",
                block.len(),
                shape.len()
            )));
        }
        let sizes = shape
            .iter()
            .zip(block)
            .enumerate()
            .map(|(axis, (&d, &b))| uniform_axis(axis, d, b))
            .collect::<Result<_>>()?;
        Ok(Chunks(sizes))
    }

    /// Sizes along every axis.
    pub fn sizes(&self) -> &[Vec<usize>] {
        &self.0
    }

    /// Sizes along one axis.
    pub fn axis(&self, axis: usize) -> &[usize] {
        &self.0[axis]
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.0.len()
    }

    /// The block grid: number of blocks along each axis.
    pub fn grid(&self) -> Vec<usize> {
        self.0.iter().map(Vec::len).collect()
    }

    /// Number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.0.iter().map(Vec::len).product()
    }

    /// The shape these chunks cover.
    pub fn shape(&self) -> Vec<usize> {
        self.0.iter().map(|s| s.iter().sum()).collect()
    }

    /// Start offsets of the blocks along each axis, plus the end.
    pub fn offsets(&self) -> Vec<Vec<usize>> {
        self.0.iter().map(|s| starts(s)).collect()
    }

    /// The shape of the block at `index`.
    pub fn block_shape(&self, index: &[usize]) -> Vec<usize> {
        index.iter().zip(&self.0).map(|(&i, s)| s[i]).collect()
    }

    /// The largest block's size along each axis.
    pub fn max_block(&self) -> Vec<usize> {
        self.0.iter().map(|s| s.iter().copied().max().unwrap_or(0)).collect()
    }

    /// Every block index, row-major.
    pub fn indices(&self) -> Vec<Vec<usize>> {
        grid_indices(&self.grid())
    }

    /// Whether every axis has blocks of one size, save a smaller last block
    /// (what Zarr's regular grid and `.npy` stacks can hold).
    pub fn is_regular(&self) -> bool {
        self.0
            .iter()
            .all(|s| s.len() <= 1 || (s[..s.len() - 1].iter().all(|&c| c == s[0]) && s[s.len() - 1] <= s[0]))
    }

    /// Chunks of `self` with the axes in another order.
    pub(crate) fn permuted(&self, axes: &[usize]) -> Chunks {
        Chunks(axes.iter().map(|&a| self.0[a].clone()).collect())
    }
}

/// Start offsets of blocks of the given sizes, plus the total at the end.
pub(crate) fn starts(sizes: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(sizes.len() + 1);
    let mut at = 0;
    out.push(0);
    for &s in sizes {
        at += s;
        out.push(at);
    }
    out
}

/// Every index of a grid, row-major.
pub(crate) fn grid_indices(grid: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = grid.iter().product();
    let mut out = Vec::with_capacity(total);
    for mut flat in 0..total {
        let mut index = vec![0; grid.len()];
        for (axis, &n) in grid.iter().enumerate().rev() {
            index[axis] = flat % n;
            flat /= n;
        }
        out.push(index);
    }
    out
}

fn uniform_axis(axis: usize, dim: usize, block: usize) -> Result<Vec<usize>> {
    if dim == 0 {
        return Ok(vec![0]);
    }
    if block == 0 {
        return Err(Error::invalid(format!(
            "the block size along axis {axis} is 0; it must be at least 1"
        )));
    }
    let mut out = vec![block; dim / block];
    if !dim.is_multiple_of(block) {
        out.push(dim % block);
    }
    Ok(out)
}

/// How to chunk one axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AxisChunks {
    /// Blocks of this size (the last one holds the rest).
    Size(usize),
    /// Exactly these sizes, summing to the dimension.
    Sizes(Vec<usize>),
    /// One block spanning the axis (Dask's `-1`).
    Full,
    /// A size chosen so blocks hold about `array.chunk-size` bytes.
    Auto,
}

/// How to chunk an array: per axis, or [`ChunkSpec::Auto`] for all axes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkSpec {
    /// One choice per axis.
    PerAxis(Vec<AxisChunks>),
    /// `auto` along every axis.
    Auto,
}

impl ChunkSpec {
    /// Resolves the spec for an array of `shape` whose elements take
    /// `item_size` bytes.
    pub fn resolve(&self, shape: &[usize], item_size: usize) -> Result<Chunks> {
        let per_axis = match self {
            ChunkSpec::Auto => vec![AxisChunks::Auto; shape.len()],
            ChunkSpec::PerAxis(p) => p.clone(),
        };
        if per_axis.len() != shape.len() {
            return Err(Error::invalid(format!(
                "chunks give {} axes, the shape {shape:?} has {}",
                per_axis.len(),
                shape.len()
            )));
        }
        let auto_axes: Vec<usize> = (0..shape.len()).filter(|&a| per_axis[a] == AxisChunks::Auto).collect();
        let auto_sizes = if auto_axes.is_empty() {
            Vec::new()
        } else {
            let fixed: usize = per_axis
                .iter()
                .zip(shape)
                .map(|(c, &d)| match c {
                    AxisChunks::Size(s) => (*s).min(d).max(1),
                    AxisChunks::Sizes(s) => s.iter().copied().max().unwrap_or(1).max(1),
                    AxisChunks::Full => d.max(1),
                    AxisChunks::Auto => 1,
                })
                .product();
            auto_block(shape, &auto_axes, item_size, fixed)?
        };
        let mut sizes = Vec::with_capacity(shape.len());
        for (axis, (spec, &dim)) in per_axis.iter().zip(shape).enumerate() {
            sizes.push(match spec {
                AxisChunks::Size(s) => uniform_axis(axis, dim, *s)?,
                AxisChunks::Sizes(s) => s.clone(),
                AxisChunks::Full => vec![dim],
                AxisChunks::Auto => {
                    let pos = auto_axes.iter().position(|&a| a == axis).expect("auto axis listed");
                    auto_sizes[pos].clone()
                }
            });
        }
        Chunks::new(shape, sizes)
    }
}

/// Sizes along the `auto` axes so a block holds about `array.chunk-size` bytes.
fn auto_block(shape: &[usize], auto_axes: &[usize], item_size: usize, fixed: usize) -> Result<Vec<Vec<usize>>> {
    let target = config::get_bytes("array.chunk-size")?.unwrap_or(128 << 20).max(1);
    let budget = (target as f64 / item_size.max(1) as f64 / fixed as f64).max(1.0);
    // Axes whose whole length fits the budget take all of it; the rest share
    // what is left equally (blocks as square as the shape allows).
    let mut remaining: Vec<usize> = auto_axes.to_vec();
    let mut budget_left = budget;
    let mut size = vec![0usize; shape.len()];
    loop {
        let k = remaining.len();
        if k == 0 {
            break;
        }
        let side = budget_left.powf(1.0 / k as f64);
        let small: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|&a| (shape[a] as f64) <= side)
            .collect();
        if small.is_empty() {
            for &a in &remaining {
                size[a] = (side.floor() as usize).max(1);
            }
            break;
        }
        for a in small {
            size[a] = shape[a];
            budget_left /= shape[a].max(1) as f64;
            remaining.retain(|&r| r != a);
        }
    }
    Ok(auto_axes
        .iter()
        .map(|&a| {
            let dim = shape[a];
            if dim == 0 {
                return vec![0];
            }
            // Even out the blocks: as many as the size asks for, equal sizes.
            let n = dim.div_ceil(size[a].clamp(1, dim));
            let even = dim.div_ceil(n);
            uniform_axis(a, dim, even).expect("positive block size")
        })
        .collect())
}

impl From<&[usize]> for ChunkSpec {
    fn from(block: &[usize]) -> Self {
        ChunkSpec::PerAxis(block.iter().map(|&b| AxisChunks::Size(b)).collect())
    }
}

impl<const N: usize> From<&[usize; N]> for ChunkSpec {
    fn from(block: &[usize; N]) -> Self {
        ChunkSpec::from(&block[..])
    }
}

impl From<Vec<usize>> for ChunkSpec {
    fn from(block: Vec<usize>) -> Self {
        ChunkSpec::from(&block[..])
    }
}

impl From<Vec<Vec<usize>>> for ChunkSpec {
    fn from(sizes: Vec<Vec<usize>>) -> Self {
        ChunkSpec::PerAxis(sizes.into_iter().map(AxisChunks::Sizes).collect())
    }
}

impl From<&Chunks> for ChunkSpec {
    fn from(chunks: &Chunks) -> Self {
        ChunkSpec::from(chunks.0.clone())
    }
}

impl From<Chunks> for ChunkSpec {
    fn from(chunks: Chunks) -> Self {
        ChunkSpec::from(chunks.0)
    }
}

impl From<Vec<AxisChunks>> for ChunkSpec {
    fn from(per_axis: Vec<AxisChunks>) -> Self {
        ChunkSpec::PerAxis(per_axis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_puts_the_rest_in_the_last_block() {
        let c = ChunkSpec::from(&[4, 3]).resolve(&[10, 6], 8).unwrap();
        assert_eq!(c.sizes(), &[vec![4, 4, 2], vec![3, 3]]);
        assert_eq!(c.grid(), vec![3, 2]);
        assert_eq!(c.offsets()[0], vec![0, 4, 8, 10]);
        assert!(c.is_regular());
    }

    #[test]
    fn explicit_sizes_must_sum_to_the_shape() {
        let err = ChunkSpec::from(vec![vec![3, 3], vec![5]])
            .resolve(&[7, 5], 8)
            .unwrap_err();
        assert!(err.to_string().contains("axis 0 sum to 6"), "{err}");
        assert!(err.to_string().contains("has 7"), "{err}");
        let err = ChunkSpec::from(&[2]).resolve(&[7, 5], 8).unwrap_err();
        assert!(err.to_string().contains("1 axes"), "{err}");
        let err = ChunkSpec::from(&[0, 2]).resolve(&[7, 5], 8).unwrap_err();
        assert!(err.to_string().contains("axis 0 is 0"), "{err}");
    }

    #[test]
    fn auto_targets_the_configured_size() {
        let _g = config::set([("array.chunk-size", "8KiB")]);
        let c = ChunkSpec::Auto.resolve(&[1000, 1000], 8).unwrap();
        let block = c.max_block();
        let bytes = block[0] * block[1] * 8;
        assert!(bytes <= 8192 && bytes > 2048, "{block:?}");
        // a small axis is taken whole
        let c = ChunkSpec::Auto.resolve(&[3, 100_000], 8).unwrap();
        assert_eq!(c.axis(0), &[3]);
        assert!(c.max_block()[1] * 3 * 8 <= 8192);
        // mixed with fixed axes
        let c = ChunkSpec::from(vec![AxisChunks::Full, AxisChunks::Auto])
            .resolve(&[10, 100_000], 8)
            .unwrap();
        assert_eq!(c.axis(0), &[10]);
    }

    #[test]
    fn zero_length_axes_are_one_empty_block() {
        let c = ChunkSpec::from(&[4, 3]).resolve(&[0, 6], 8).unwrap();
        assert_eq!(c.sizes(), &[vec![0], vec![3, 3]]);
    }
}
