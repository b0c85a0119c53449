//! The [`Array`] type: a name, a graph layer, a shape and its chunks.
//!
//! An `Array<T>` is a handle, cheap to clone: the layer that computes its
//! blocks (key `(name, i, j, …)` per block) holds `Arc`s to the layers it
//! reads, so an expression of a thousand operations is a chain of shared
//! layers, and two arrays built from the same expression share their names
//! (names are tokens of the op and its inputs).
//!
//! `Array<T>` is a [`Collection`]: `compute()` and `persist()` come from
//! `blockwise_local::Compute`, and the output is the assembled
//! `ndarray::ArrayD<T>`. Operations that can fail on their arguments (shapes,
//! axes) return `Result<Array<T>>`; [`TryCompute`] lets such a result be
//! computed directly, so `x.mean_axis(0).compute()?` reads as in Dask.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use blockwise_core::exec::Collection;
use blockwise_core::graph::{BlockArg, Blockwise, IndexMap, Layer, LayerBody};
use blockwise_core::{Error, Graph, Key, Name, Op, Result, Tokenizer, Value};
use blockwise_local::{Compute, ComputeOptions};
use ndarray::{ArrayD, IxDyn, Slice};

use crate::chunks::Chunks;
use crate::element::Element;
use crate::kernel::block;

/// The untyped part of an array: what graph-building code needs.
#[derive(Clone)]
pub(crate) struct Meta {
    pub(crate) name: Name,
    pub(crate) layer: Arc<Layer>,
    pub(crate) chunks: Chunks,
    pub(crate) shape: Vec<usize>,
}

impl Meta {
    pub(crate) fn new(layer: Arc<Layer>, chunks: Chunks) -> Meta {
        Meta {
            name: layer.name().clone(),
            shape: chunks.shape(),
            layer,
            chunks,
        }
    }

    pub(crate) fn ndim(&self) -> usize {
        self.shape.len()
    }

    pub(crate) fn key(&self, index: &[usize]) -> Key {
        let index: Vec<u32> = index.iter().map(|&i| i as u32).collect();
        Key::new(self.name.clone(), &index)
    }

    /// A block argument reading this array at the same grid position as the
    /// output (the output has the same number of axes).
    pub(crate) fn same_grid_arg(&self) -> BlockArg {
        BlockArg::Block {
            name: self.name.clone(),
            map: (0..self.ndim() as u32).map(IndexMap::Axis).collect(),
        }
    }
}

/// A chunked, lazy n-dimensional array of `T` (Dask's `dask.array.Array`).
pub struct Array<T> {
    pub(crate) meta: Meta,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            meta: self.meta.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: Element> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Array<{}>(name={}, shape={:?}, chunks={:?})",
            T::DTYPE_NAME,
            self.meta.name,
            self.meta.shape,
            self.meta.chunks.sizes()
        )
    }
}

impl<T: Element> Array<T> {
    /// Wraps a layer computing blocks of `T` with these chunks. The layer must
    /// have one task per block, keyed `(layer name, block index…)`.
    pub fn from_layer(layer: Arc<Layer>, chunks: Chunks) -> Self {
        Array {
            meta: Meta::new(layer, chunks),
            _type: PhantomData,
        }
    }

    pub(crate) fn from_meta(meta: Meta) -> Self {
        Array {
            meta,
            _type: PhantomData,
        }
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        &self.meta.shape
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.meta.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.meta.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Chunk sizes per axis.
    pub fn chunks(&self) -> &Chunks {
        &self.meta.chunks
    }

    /// Number of blocks along each axis.
    pub fn num_blocks(&self) -> Vec<usize> {
        self.meta.chunks.grid()
    }

    /// Bytes of the whole array once computed.
    pub fn nbytes(&self) -> usize {
        self.len() * T::SIZE
    }

    /// The name of the layer computing the blocks (the first part of every key).
    pub fn name(&self) -> &Name {
        &self.meta.name
    }

    /// The layer computing the blocks.
    pub fn layer(&self) -> &Arc<Layer> {
        &self.meta.layer
    }

    /// The key of the block at `index`.
    pub fn block_key(&self, index: &[usize]) -> Key {
        self.meta.key(index)
    }

    /// The element type's name (`f64`, `bool`, …).
    pub fn dtype(&self) -> &'static str {
        T::DTYPE_NAME
    }

    /// Checks an axis number against the array's dimensions.
    pub(crate) fn check_axis(&self, axis: usize, what: &str) -> Result<usize> {
        check_axis(axis, self.ndim(), what)
    }
}

/// Checks an axis number against a number of dimensions.
pub(crate) fn check_axis(axis: usize, ndim: usize, what: &str) -> Result<usize> {
    if axis < ndim {
        Ok(axis)
    } else {
        Err(Error::invalid(format!(
            "{what}: axis {axis} is out of range for an array of {ndim} dimensions"
        )))
    }
}

impl<T: Element> Collection for Array<T> {
    type Output = ArrayD<T>;

    fn graph(&self) -> Graph {
        Graph::from_layer(self.meta.layer.clone())
    }

    /// Reductions fused with the producers of their blocks where nothing
    /// else (no other layer, no output) reads those blocks
    /// ([`crate::stream`]).
    fn optimize(graph: Graph, outputs: &[Key]) -> Graph {
        crate::stream::fuse_streams(&graph, outputs)
    }

    fn output_keys(&self) -> Vec<Key> {
        self.meta.chunks.indices().iter().map(|i| self.meta.key(i)).collect()
    }

    fn finalize(&self, values: Vec<Value>) -> Result<ArrayD<T>> {
        let indices = self.meta.chunks.indices();
        if values.len() != indices.len() {
            return Err(Error::graph(format!(
                "array {} has {} blocks, the computation returned {} values",
                self.meta.name,
                indices.len(),
                values.len()
            )));
        }
        if values.len() == 1 {
            let b = block::<T>(&values[0])?;
            check_block_shape(&self.meta, &indices[0], b.shape())?;
            return Ok(b.into_owned());
        }
        let mut out = ArrayD::from_elem(IxDyn(&self.meta.shape), T::default());
        let offsets = self.meta.chunks.offsets();
        for (index, v) in indices.iter().zip(&values) {
            let b = block::<T>(v)?;
            check_block_shape(&self.meta, index, b.shape())?;
            let mut dst = out.view_mut();
            for (axis, &i) in index.iter().enumerate() {
                let (s, e) = (offsets[axis][i], offsets[axis][i + 1]);
                dst.slice_axis_inplace(ndarray::Axis(axis), Slice::from(s..e));
            }
            dst.assign(&*b);
        }
        Ok(out)
    }

    fn with_graph(&self, graph: Graph) -> Self {
        let layer = graph
            .roots()
            .iter()
            .find(|l| *l.name() == self.meta.name)
            .cloned()
            .unwrap_or_else(|| self.meta.layer.clone());
        Array::from_layer(layer, self.meta.chunks.clone())
    }
}

/// The error for a block whose shape is not the one its chunks promise.
pub(crate) fn check_block_shape(meta: &Meta, index: &[usize], shape: &[usize]) -> Result<()> {
    let expected = meta.chunks.block_shape(index);
    if shape != expected.as_slice() {
        return Err(Error::invalid(format!(
            "block {} has shape {shape:?}, but the array's chunks give it {expected:?}",
            meta.key(index)
        )));
    }
    Ok(())
}

/// Builds a generated (blockwise) layer: one task per block of `chunks`,
/// each running `op` on `args` at its grid position. The name is a token of
/// the op, the inputs and the chunks, so the same expression gets the same
/// keys.
pub(crate) fn blockwise_layer(
    prefix: &str,
    op: Arc<dyn Op>,
    chunks: &Chunks,
    args: Vec<BlockArg>,
    deps: Vec<Arc<Layer>>,
    token_extra: &[u64],
) -> Meta {
    let mut tok = Tokenizer::new();
    op.tokenize(&mut tok);
    for a in &args {
        match a {
            BlockArg::Literal(v) => {
                tok.str("literal");
                v.tokenize(&mut tok);
            }
            BlockArg::Block { name, map } => {
                tok.str(name.as_str());
                for m in map {
                    match m {
                        IndexMap::Axis(a) => tok.u64(u64::from(*a)),
                        IndexMap::Fixed(i) => tok.u64(1 << 40 | u64::from(*i)),
                    };
                }
            }
            BlockArg::BlockIndex(a) => {
                tok.str("block-index").u64(u64::from(*a));
            }
        }
    }
    tokenize_chunks(&mut tok, chunks);
    for &x in token_extra {
        tok.u64(x);
    }
    let name = tok.name(prefix);
    let body = LayerBody::Blockwise(Box::new(Blockwise {
        op,
        grid: chunks.grid().iter().map(|&n| n as u32).collect(),
        args,
    }));
    let mut unique: Vec<Arc<Layer>> = Vec::new();
    for d in deps {
        if !unique.iter().any(|u| Arc::ptr_eq(u, &d)) {
            unique.push(d);
        }
    }
    Meta::new(Layer::new(name, unique, body), chunks.clone())
}

/// Feeds chunk sizes to a tokenizer.
pub(crate) fn tokenize_chunks(tok: &mut Tokenizer, chunks: &Chunks) {
    tok.u64(chunks.ndim() as u64);
    for s in chunks.sizes() {
        tok.u64(s.len() as u64);
        for &c in s {
            tok.u64(c as u64);
        }
    }
}

/// `compute` and `persist` straight on the result of a fallible array
/// operation: `x.mean_axis(0).compute()?`. The operation's own error (a bad
/// axis, mismatched shapes) comes out first, before anything runs.
pub trait TryCompute {
    /// What computing gives.
    type Output;
    /// The collection behind the result.
    type Collection;

    /// Computes on the configured scheduler.
    fn compute(self) -> Result<Self::Output>;

    /// Computes with explicit options or scheduler.
    fn compute_with(self, options: impl Into<ComputeOptions>) -> Result<Self::Output>;

    /// Computes and keeps the blocks in memory for later computations.
    fn persist(self) -> Result<Self::Collection>;
}

impl<T: Element> TryCompute for Result<Array<T>> {
    type Output = ArrayD<T>;
    type Collection = Array<T>;

    fn compute(self) -> Result<ArrayD<T>> {
        Compute::compute(&self?)
    }

    fn compute_with(self, options: impl Into<ComputeOptions>) -> Result<ArrayD<T>> {
        Compute::compute_with(&self?, options)
    }

    fn persist(self) -> Result<Array<T>> {
        Compute::persist(&self?)
    }
}
