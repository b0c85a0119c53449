//! Creating arrays: from an ndarray, constants, ranges, the identity.
//!
//! Every generator is one blockwise layer whose task at block `(i, j, …)`
//! receives its block index and builds that block alone: a `zeros` of a
//! million blocks is one small object, and slicing a corner of it computes
//! only the corner's blocks. `from_array` is the exception: its blocks are
//! the user's data, cut once and held as literals.

use std::sync::Arc;

use blockwise_core::graph::{BlockArg, Input, Layer, LayerBody, Task};
use blockwise_core::op::identity;
use blockwise_core::{Error, Result, Tokenizer, Value};
use ndarray::{ArrayD, IxDyn, Slice};
use serde::{Deserialize, Serialize};

use crate::array::{Array, Meta, blockwise_layer, tokenize_chunks};
use crate::chunks::{ChunkSpec, Chunks};
use crate::element::{Element, Number, for_each_dtype, for_each_number};
use crate::kernel::{Kernel, index_arg, op, register_kernel, value};

/// The position of a block: what a generator receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// The block's index in the grid.
    pub index: Vec<usize>,
    /// The block's shape.
    pub shape: Vec<usize>,
    /// Where the block starts in the whole array, per axis.
    pub offset: Vec<usize>,
    /// The whole array's shape.
    pub array_shape: Vec<usize>,
}

impl BlockInfo {
    /// The info of block `index` of `chunks`.
    pub fn of(chunks: &Chunks, index: &[usize]) -> BlockInfo {
        BlockInfo {
            index: index.to_vec(),
            shape: chunks.block_shape(index),
            offset: index
                .iter()
                .zip(chunks.sizes())
                .map(|(&i, s)| s[..i].iter().sum())
                .collect(),
            array_shape: chunks.shape(),
        }
    }

    /// Reads the block index from a generator task's `BlockIndex` arguments.
    pub(crate) fn from_args(chunks: &Chunks, args: &[Value]) -> Result<BlockInfo> {
        if args.len() < chunks.ndim() {
            return Err(Error::graph(format!(
                "a generator of a {}-d array received {} block indices",
                chunks.ndim(),
                args.len()
            )));
        }
        let index = args[..chunks.ndim()]
            .iter()
            .map(index_arg)
            .collect::<Result<Vec<_>>>()?;
        for (axis, (&i, s)) in index.iter().zip(chunks.sizes()).enumerate() {
            if i >= s.len() {
                return Err(Error::graph(format!(
                    "block index {i} along axis {axis} is outside the grid"
                )));
            }
        }
        Ok(BlockInfo::of(chunks, &index))
    }
}

/// The `BlockIndex` arguments of a generator over `ndim` axes.
pub(crate) fn index_args(ndim: usize) -> Vec<BlockArg> {
    (0..ndim as u32).map(BlockArg::BlockIndex).collect()
}

/// What a [`Generate`] kernel fills a block with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) enum Fill<T: Element> {
    /// Every element the same.
    Constant(T),
    /// `start + i * step` along a 1-d array.
    Arange { start: T, step: T },
    /// `start + i * step` in f64, with the last element exactly `stop` when
    /// `endpoint`.
    Linspace {
        start: f64,
        step: f64,
        num: usize,
        stop: f64,
        endpoint: bool,
    },
    /// Ones on the `k`-th diagonal of a 2-d array.
    Eye { k: i64 },
}

impl<T: Number> Fill<T> {
    /// Writes the elements of a block at row-major positions `start..start +
    /// out.len()`: a whole block, or a strip of it for a reduction that never
    /// stores the block (see [`crate::stream`]).
    pub(crate) fn fill_strip(&self, info: &BlockInfo, start: usize, out: &mut [T]) {
        match self {
            Fill::Constant(c) => out.fill(*c),
            Fill::Arange { start: first, step } => {
                let o = info.offset[0] + start;
                for (k, x) in out.iter_mut().enumerate() {
                    *x = first.add(step.mul(T::from_usize(o + k)));
                }
            }
            Fill::Linspace {
                start: first,
                step,
                num,
                stop,
                endpoint,
            } => {
                let o = info.offset[0] + start;
                for (k, x) in out.iter_mut().enumerate() {
                    let at = o + k;
                    *x = if *endpoint && at + 1 == *num {
                        T::from_f64(*stop)
                    } else {
                        T::from_f64(first + at as f64 * step)
                    };
                }
            }
            Fill::Eye { k } => {
                let (r0, c0) = (info.offset[0] as i64, info.offset[1] as i64);
                let cols = info.shape[1].max(1);
                for (p, x) in (start..).zip(out.iter_mut()) {
                    let (i, j) = ((p / cols) as i64, (p % cols) as i64);
                    *x = if c0 + j - (r0 + i) == *k { T::one() } else { T::zero() };
                }
            }
        }
    }
}

/// Builds one block of a generated array from its block index.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct Generate<T: Element> {
    pub(crate) chunks: Chunks,
    pub(crate) fill: Fill<T>,
}

impl<T: Number> Kernel for Generate<T> {
    const BASE: &'static str = "array.generate";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let info = BlockInfo::from_args(&self.chunks, args)?;
        let shape = IxDyn(&info.shape);
        let block = match &self.fill {
            Fill::Constant(c) => ArrayD::from_elem(shape, *c),
            fill => {
                let mut data = vec![T::zero(); info.shape.iter().product()];
                fill.fill_strip(&info, 0, &mut data);
                ArrayD::from_shape_vec(shape, data).map_err(|e| Error::graph(e.to_string()))?
            }
        };
        Ok(value(block))
    }
}

macro_rules! reg_generate {
    ($t:ident) => {
        register_kernel!(Generate, "array.generate", $t);
    };
}
for_each_number!(reg_generate);

/// A constant block of any element type (bools included).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct Constant<T: Element> {
    pub(crate) chunks: Chunks,
    pub(crate) value: T,
}

impl<T: Element> Kernel for Constant<T> {
    const BASE: &'static str = "array.constant";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let info = BlockInfo::from_args(&self.chunks, args)?;
        Ok(value(ArrayD::from_elem(IxDyn(&info.shape), self.value)))
    }
}

macro_rules! reg_constant {
    ($t:ident) => {
        register_kernel!(Constant, "array.constant", $t);
    };
}
for_each_dtype!(reg_constant);

fn generated<T: Number>(prefix: &str, chunks: Chunks, fill: Fill<T>) -> Array<T> {
    let ndim = chunks.ndim();
    let kernel = Generate {
        chunks: chunks.clone(),
        fill,
    };
    let meta = blockwise_layer(prefix, op(kernel), &chunks, index_args(ndim), vec![], &[]);
    Array::from_meta(meta)
}

/// An array of `shape` filled with `value` (any element type).
pub fn full<T: Element>(shape: &[usize], chunks: impl Into<ChunkSpec>, value: T) -> Result<Array<T>> {
    let chunks = chunks.into().resolve(shape, T::SIZE)?;
    let ndim = chunks.ndim();
    let kernel = Constant {
        chunks: chunks.clone(),
        value,
    };
    let meta = blockwise_layer("full", op(kernel), &chunks, index_args(ndim), vec![], &[value.token()]);
    Ok(Array::from_meta(meta))
}

/// An array of zeros.
pub fn zeros<T: Number>(shape: &[usize], chunks: impl Into<ChunkSpec>) -> Result<Array<T>> {
    let chunks = chunks.into().resolve(shape, T::SIZE)?;
    Ok(generated("zeros", chunks, Fill::Constant(T::zero())))
}

/// An array of ones.
pub fn ones<T: Number>(shape: &[usize], chunks: impl Into<ChunkSpec>) -> Result<Array<T>> {
    let chunks = chunks.into().resolve(shape, T::SIZE)?;
    Ok(generated("ones", chunks, Fill::Constant(T::one())))
}

/// `start, start + step, …` below `stop` (above, for a negative step), as
/// NumPy's `arange`. A zero step is an error.
pub fn arange<T: Number>(start: T, stop: T, step: T, chunks: impl Into<ChunkSpec>) -> Result<Array<T>> {
    if step == T::zero() {
        return Err(Error::invalid("arange: the step is 0"));
    }
    let n = ((stop.to_f64() - start.to_f64()) / step.to_f64()).ceil();
    let n = if n.is_finite() && n > 0.0 { n as usize } else { 0 };
    let chunks = chunks.into().resolve(&[n], T::SIZE)?;
    Ok(generated("arange", chunks, Fill::Arange { start, step }))
}

/// `num` evenly spaced values from `start` to `stop` (included when
/// `endpoint`), as NumPy's `linspace`.
pub fn linspace<T: Number>(
    start: f64,
    stop: f64,
    num: usize,
    endpoint: bool,
    chunks: impl Into<ChunkSpec>,
) -> Result<Array<T>> {
    let div = if endpoint { num.saturating_sub(1) } else { num };
    let step = if div == 0 { 0.0 } else { (stop - start) / div as f64 };
    let chunks = chunks.into().resolve(&[num], T::SIZE)?;
    Ok(generated(
        "linspace",
        chunks,
        Fill::Linspace {
            start,
            step,
            num,
            stop,
            endpoint,
        },
    ))
}

/// A 2-d array with ones on the `k`-th diagonal (0: the main one; positive:
/// above it), as NumPy's `eye(n, m, k)`.
pub fn eye<T: Number>(n: usize, m: usize, k: i64, chunks: impl Into<ChunkSpec>) -> Result<Array<T>> {
    let chunks = chunks.into().resolve(&[n, m], T::SIZE)?;
    Ok(generated("eye", chunks, Fill::Eye { k }))
}

/// Splits an in-memory array into blocks (Dask's `from_array`). The blocks
/// are copied once, now; they are the literal inputs of the graph.
pub fn from_array<T: Element>(data: &ArrayD<T>, chunks: impl Into<ChunkSpec>) -> Result<Array<T>> {
    let chunks = chunks.into().resolve(data.shape(), T::SIZE)?;
    let mut tok = Tokenizer::new();
    tok.str("from-array");
    blockwise_core::value::Data::tokenize(data, &mut tok);
    tokenize_chunks(&mut tok, &chunks);
    let name = tok.name("array");
    let offsets = chunks.offsets();
    let tasks = chunks
        .indices()
        .into_iter()
        .map(|index| {
            let mut view = data.view();
            for (axis, &i) in index.iter().enumerate() {
                view.slice_axis_inplace(ndarray::Axis(axis), Slice::from(offsets[axis][i]..offsets[axis][i + 1]));
            }
            let block: Value = Arc::new(view.as_standard_layout().into_owned());
            let idx: Vec<u32> = index.iter().map(|&i| i as u32).collect();
            (
                blockwise_core::Key::new(name.clone(), &idx),
                Task::new(identity(), vec![Input::Literal(block)]),
            )
        })
        .collect();
    let layer = Layer::new(name, vec![], LayerBody::Tasks(tasks));
    Ok(Array::from_meta(Meta::new(layer, chunks)))
}
