//! Shape operations: rechunk, slicing, `take`, transpose, reshape,
//! concatenate, stack.
//!
//! The rule throughout: an output block reads only the input blocks it
//! overlaps. Rechunking builds each output block from the pieces of the
//! input blocks that intersect it, so no task ever holds more than one
//! output block and the blocks it touches — the whole array is never
//! materialized. Slicing keeps the input's block boundaries (each output
//! block is a slice of exactly one input block), so a slice of a huge array
//! computes only the blocks it touches (the planner culls the rest).
//!
//! Slices use ndarray's own slice elements, so `x.slice(s![2..10;3, 4, NewAxis])`
//! means exactly what `a.slice(s![…])` means on an in-memory array,
//! negative steps included.

use std::collections::HashMap;
use std::sync::Arc;

use blockwise_core::graph::{BlockArg, IndexMap, Input, Layer, LayerBody, Task};
use blockwise_core::op::identity;
use blockwise_core::{Error, Key, Result, Tokenizer, Value};
use ndarray::{ArrayD, Axis, IxDyn, SliceInfo, SliceInfoElem};
use serde::{Deserialize, Serialize};

use crate::array::{Array, Meta, blockwise_layer, check_axis, tokenize_chunks};
use crate::chunks::{ChunkSpec, Chunks, grid_indices, starts};
use crate::creation::index_args;
use crate::element::{Element, for_each_dtype};
use crate::kernel::{Kernel, arg, block, op, register_kernel, value};

/// One piece of an output block: a box of one input block copied to an
/// offset of the output.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Piece {
    /// Which input (task argument) it comes from.
    pub(crate) input: u32,
    /// `[start, end)` per axis, in the input block.
    pub(crate) src: Vec<(usize, usize)>,
    /// Where it starts in the output block, per axis.
    pub(crate) dst: Vec<usize>,
}

/// Builds an output block from pieces of input blocks.
#[derive(Serialize, Deserialize)]
pub(crate) struct Assemble<T> {
    pub(crate) shape: Vec<usize>,
    pub(crate) pieces: Vec<Piece>,
    #[serde(skip)]
    pub(crate) _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Element> Kernel for Assemble<T> {
    const BASE: &'static str = "array.assemble";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        if let [p] = self.pieces.as_slice() {
            let v = arg(args, p.input as usize, Self::BASE)?;
            let b = block::<T>(v)?;
            let whole =
                b.shape() == self.shape.as_slice() && p.src.iter().zip(b.shape()).all(|(&(s, e), &d)| s == 0 && e == d);
            if whole {
                // The output block is an input block: share it, copy nothing.
                return Ok(match b {
                    std::borrow::Cow::Borrowed(_) => v.clone(),
                    std::borrow::Cow::Owned(a) => value(a),
                });
            }
        }
        let mut out = ArrayD::from_elem(IxDyn(&self.shape), T::default());
        for p in &self.pieces {
            let b = block::<T>(arg(args, p.input as usize, Self::BASE)?)?;
            let mut src = b.view();
            let mut dst = out.view_mut();
            for (axis, (&(s, e), &d)) in p.src.iter().zip(&p.dst).enumerate() {
                if e > src.len_of(Axis(axis)) || d + (e - s) > dst.len_of(Axis(axis)) {
                    return Err(Error::graph(format!(
                        "a rechunk piece [{s}, {e}) at {d} along axis {axis} does not fit its blocks"
                    )));
                }
                src.slice_axis_inplace(Axis(axis), (s..e).into());
                dst.slice_axis_inplace(Axis(axis), (d..d + e - s).into());
            }
            dst.assign(&src);
        }
        Ok(value(out))
    }
}

/// Slices one block with ndarray's slice (in block-local coordinates).
#[derive(Serialize, Deserialize)]
pub(crate) struct SliceBlock<T> {
    elems: Vec<LocalElem>,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

/// A serializable [`SliceInfoElem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum LocalElem {
    Slice {
        start: isize,
        end: Option<isize>,
        step: isize,
    },
    Index(isize),
    NewAxis,
}

impl LocalElem {
    fn to_ndarray(self) -> SliceInfoElem {
        match self {
            LocalElem::Slice { start, end, step } => SliceInfoElem::Slice { start, end, step },
            LocalElem::Index(i) => SliceInfoElem::Index(i),
            LocalElem::NewAxis => SliceInfoElem::NewAxis,
        }
    }
}

impl<T: Element> Kernel for SliceBlock<T> {
    const BASE: &'static str = "array.slice";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let b = block::<T>(arg(args, 0, Self::BASE)?)?;
        let elems: Vec<SliceInfoElem> = self.elems.iter().map(|e| e.to_ndarray()).collect();
        let info: SliceInfo<Vec<SliceInfoElem>, IxDyn, IxDyn> =
            SliceInfo::try_from(elems).map_err(|e| Error::graph(format!("bad block slice: {e}")))?;
        if b.ndim() != info.in_ndim() {
            return Err(Error::graph(format!(
                "a block slice for {} axes met a block of {}",
                info.in_ndim(),
                b.ndim()
            )));
        }
        Ok(value(b.slice(info).as_standard_layout().into_owned()))
    }
}

/// Picks indices along one axis of a block.
#[derive(Serialize, Deserialize)]
pub(crate) struct TakeBlock<T> {
    axis: usize,
    indices: Vec<usize>,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Element> Kernel for TakeBlock<T> {
    const BASE: &'static str = "array.take";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let b = block::<T>(arg(args, 0, Self::BASE)?)?;
        if self.axis >= b.ndim() || self.indices.iter().any(|&i| i >= b.len_of(Axis(self.axis))) {
            return Err(Error::graph("take: a block index is outside its block"));
        }
        Ok(value(b.select(Axis(self.axis), &self.indices)))
    }
}

/// Permutes the axes of a block.
#[derive(Serialize, Deserialize)]
pub(crate) struct Transpose<T> {
    axes: Vec<usize>,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Element> Kernel for Transpose<T> {
    const BASE: &'static str = "array.transpose";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let b = block::<T>(arg(args, 0, Self::BASE)?)?;
        if b.ndim() != self.axes.len() {
            return Err(Error::graph("transpose: block rank differs from the permutation"));
        }
        Ok(value(
            b.view()
                .permuted_axes(IxDyn(&self.axes))
                .as_standard_layout()
                .into_owned(),
        ))
    }
}

/// Reshapes a block to its output block's shape (row-major).
#[derive(Serialize, Deserialize)]
pub(crate) struct ReshapeBlock<T> {
    chunks: Chunks,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Element> Kernel for ReshapeBlock<T> {
    const BASE: &'static str = "array.reshape";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let b = block::<T>(arg(args, 0, Self::BASE)?)?;
        let info = crate::creation::BlockInfo::from_args(&self.chunks, &args[1..])?;
        let data: Vec<T> = b.iter().copied().collect();
        ArrayD::from_shape_vec(IxDyn(&info.shape), data)
            .map(value)
            .map_err(|e| Error::graph(format!("reshape of a block of shape {:?}: {e}", b.shape())))
    }
}

/// Inserts a new axis of length 1 in a block.
#[derive(Serialize, Deserialize)]
pub(crate) struct ExpandDims<T> {
    axis: usize,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Element> Kernel for ExpandDims<T> {
    const BASE: &'static str = "array.expand-dims";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let b = block::<T>(arg(args, 0, Self::BASE)?)?;
        if self.axis > b.ndim() {
            return Err(Error::graph("expand-dims: axis beyond the block's rank"));
        }
        Ok(value(b.into_owned().insert_axis(Axis(self.axis))))
    }
}

macro_rules! reg_shape {
    ($t:ident) => {
        register_kernel!(Assemble, "array.assemble", $t);
        register_kernel!(SliceBlock, "array.slice", $t);
        register_kernel!(TakeBlock, "array.take", $t);
        register_kernel!(Transpose, "array.transpose", $t);
        register_kernel!(ReshapeBlock, "array.reshape", $t);
        register_kernel!(ExpandDims, "array.expand-dims", $t);
    };
}
for_each_dtype!(reg_shape);

/// Builds an explicit layer from tasks keyed by output block index.
pub(crate) fn tasks_layer(
    name: blockwise_core::Name,
    deps: Vec<Arc<Layer>>,
    tasks: Vec<(Vec<usize>, Task)>,
    chunks: Chunks,
) -> Meta {
    let tasks = tasks
        .into_iter()
        .map(|(index, task)| {
            let idx: Vec<u32> = index.iter().map(|&i| i as u32).collect();
            (Key::new(name.clone(), &idx), task)
        })
        .collect();
    let mut unique: Vec<Arc<Layer>> = Vec::new();
    for d in deps {
        if !unique.iter().any(|u| Arc::ptr_eq(u, &d)) {
            unique.push(d);
        }
    }
    Meta::new(Layer::new(name, unique, LayerBody::Tasks(tasks)), chunks)
}

/// For one axis: the pieces of input blocks that make each output block:
/// `(input block, start in it, end in it, start in the output block)`.
fn overlaps(from: &[usize], to: &[usize]) -> Vec<Vec<(usize, usize, usize, usize)>> {
    let from_starts = starts(from);
    let to_starts = starts(to);
    let mut out = Vec::with_capacity(to.len());
    let mut b = 0;
    for (j, &size) in to.iter().enumerate() {
        let (s, e) = (to_starts[j], to_starts[j] + size);
        let mut pieces = Vec::new();
        if size == 0 {
            pieces.push((0, 0, 0, 0));
            out.push(pieces);
            continue;
        }
        while from_starts[b + 1] <= s {
            b += 1;
        }
        let mut k = b;
        while k < from.len() && from_starts[k] < e {
            let lo = s.max(from_starts[k]);
            let hi = e.min(from_starts[k + 1]);
            if hi > lo {
                pieces.push((k, lo - from_starts[k], hi - from_starts[k], lo - s));
            }
            k += 1;
        }
        out.push(pieces);
    }
    out
}

impl<T: Element> Array<T> {
    /// The same array cut into other chunks (Dask's `rechunk`). Each output
    /// block is built from the input blocks it overlaps, and only those.
    pub fn rechunk(&self, chunks: impl Into<ChunkSpec>) -> Result<Array<T>> {
        let target = chunks.into().resolve(self.shape(), T::SIZE)?;
        self.rechunk_to(&target)
    }

    /// Rechunks to exact chunks over the same shape.
    pub(crate) fn rechunk_to(&self, target: &Chunks) -> Result<Array<T>> {
        if target.shape() != self.shape() {
            return Err(Error::invalid(format!(
                "rechunk: the chunks {:?} cover the shape {:?}, the array has {:?}",
                target.sizes(),
                target.shape(),
                self.shape()
            )));
        }
        if target == self.chunks() {
            return Ok(self.clone());
        }
        let per_axis: Vec<_> = (0..self.ndim())
            .map(|a| overlaps(self.chunks().axis(a), target.axis(a)))
            .collect();
        let mut tok = Tokenizer::new();
        tok.str("rechunk").str(self.name().as_str());
        tokenize_chunks(&mut tok, target);
        let name = tok.name("rechunk");
        let mut tasks = Vec::with_capacity(target.num_blocks());
        for index in target.indices() {
            let lists: Vec<&Vec<(usize, usize, usize, usize)>> =
                index.iter().enumerate().map(|(a, &i)| &per_axis[a][i]).collect();
            let counts: Vec<usize> = lists.iter().map(|l| l.len()).collect();
            let mut inputs: Vec<Input> = Vec::new();
            let mut seen: HashMap<Vec<usize>, u32> = HashMap::new();
            let mut pieces = Vec::new();
            for combo in grid_indices(&counts) {
                let parts: Vec<&(usize, usize, usize, usize)> =
                    combo.iter().enumerate().map(|(a, &c)| &lists[a][c]).collect();
                let src_block: Vec<usize> = parts.iter().map(|p| p.0).collect();
                let n = seen.len() as u32;
                let input = *seen.entry(src_block.clone()).or_insert_with(|| {
                    inputs.push(Input::Key(self.meta.key(&src_block)));
                    n
                });
                pieces.push(Piece {
                    input,
                    src: parts.iter().map(|p| (p.1, p.2)).collect(),
                    dst: parts.iter().map(|p| p.3).collect(),
                });
            }
            let kernel = Assemble::<T> {
                shape: target.block_shape(&index),
                pieces,
                _type: std::marker::PhantomData,
            };
            tasks.push((index, Task::new(op(kernel), inputs)));
        }
        Ok(Array::from_meta(tasks_layer(
            name,
            vec![self.meta.layer.clone()],
            tasks,
            target.clone(),
        )))
    }

    /// Basic slicing with ndarray's slice elements, one per axis:
    /// `x.slice([(1..8).into(), 3.into(), NewAxis.into()])`, a `Vec` of them,
    /// or ndarray's `s![1..8;2, 3, NewAxis]` where that macro is allowed.
    /// Ranges (steps, negative steps), integers (drop the axis) and new axes
    /// work as on an ndarray; missing trailing axes are taken whole. Only the
    /// blocks the slice touches are ever computed.
    pub fn slice(&self, info: impl AsRef<[SliceInfoElem]>) -> Result<Array<T>> {
        let info = info.as_ref();
        let in_axes = info.iter().filter(|e| !matches!(e, SliceInfoElem::NewAxis)).count();
        if in_axes > self.ndim() {
            return Err(Error::invalid(format!(
                "slice: {in_axes} axes are indexed, the array of shape {:?} has {}",
                self.shape(),
                self.ndim()
            )));
        }
        let mut elems: Vec<SliceInfoElem> = info.to_vec();
        for _ in in_axes..self.ndim() {
            elems.push(SliceInfoElem::Slice {
                start: 0,
                end: None,
                step: 1,
            });
        }
        // Per element: the output axis's blocks, each (input block, local elem).
        enum AxisPlan {
            Blocks(Vec<(usize, LocalElem, usize)>),
            Index(usize, isize),
            New,
        }
        let mut plans = Vec::with_capacity(elems.len());
        let mut axis = 0;
        for e in &elems {
            match *e {
                SliceInfoElem::NewAxis => plans.push(AxisPlan::New),
                SliceInfoElem::Index(i) => {
                    let len = self.shape()[axis] as isize;
                    let g = if i < 0 { i + len } else { i };
                    if g < 0 || g >= len {
                        return Err(Error::invalid(format!(
                            "slice: index {i} is out of bounds for axis {axis} of length {len}"
                        )));
                    }
                    let st = starts(self.chunks().axis(axis));
                    let b = st.partition_point(|&s| s <= g as usize) - 1;
                    plans.push(AxisPlan::Index(b, g - st[b] as isize));
                    axis += 1;
                }
                SliceInfoElem::Slice { start, end, step } => {
                    if step == 0 {
                        return Err(Error::invalid(format!("slice: the step along axis {axis} is 0")));
                    }
                    let len = self.shape()[axis] as isize;
                    let norm = |x: isize| if x < 0 { (x + len).max(0) } else { x.min(len) };
                    let s = norm(start);
                    let e = norm(end.unwrap_or(len)).max(s);
                    let count = if e > s {
                        ((e - s - 1) / step.abs() + 1) as usize
                    } else {
                        0
                    };
                    let first = if step > 0 { s } else { e - 1 };
                    let st = starts(self.chunks().axis(axis));
                    let mut blocks: Vec<(usize, LocalElem, usize)> = Vec::new();
                    let mut k = 0usize;
                    while k < count {
                        let g = first + step * k as isize;
                        let b = st.partition_point(|&x| x <= g as usize) - 1;
                        let (lo, hi) = (st[b] as isize, st[b + 1] as isize);
                        // how many of the remaining picks fall in this block
                        let room = if step > 0 {
                            (hi - 1 - g) / step + 1
                        } else {
                            (g - lo) / (-step) + 1
                        };
                        let n = (room as usize).min(count - k);
                        let last = g + step * (n as isize - 1);
                        let (a, z) = if step > 0 { (g, last) } else { (last, g) };
                        blocks.push((
                            b,
                            LocalElem::Slice {
                                start: a - lo,
                                end: Some(z - lo + 1),
                                step,
                            },
                            n,
                        ));
                        k += n;
                    }
                    if blocks.is_empty() {
                        blocks.push((
                            0,
                            LocalElem::Slice {
                                start: 0,
                                end: Some(0),
                                step: 1,
                            },
                            0,
                        ));
                    }
                    plans.push(AxisPlan::Blocks(blocks));
                    axis += 1;
                }
            }
        }
        let out_sizes: Vec<Vec<usize>> = plans
            .iter()
            .filter_map(|p| match p {
                AxisPlan::Blocks(b) => Some(b.iter().map(|x| x.2).collect()),
                AxisPlan::New => Some(vec![1]),
                AxisPlan::Index(..) => None,
            })
            .collect();
        let out_chunks = Chunks::from_checked(out_sizes);
        let mut tok = Tokenizer::new();
        tok.str("getitem").str(self.name().as_str());
        for e in &elems {
            match *e {
                SliceInfoElem::Slice { start, end, step } => tok
                    .u64(0)
                    .u64(start as u64)
                    .u64(end.map(|x| x as u64).unwrap_or(u64::MAX))
                    .u64(step as u64),
                SliceInfoElem::Index(i) => tok.u64(1).u64(i as u64),
                SliceInfoElem::NewAxis => tok.u64(2),
            };
        }
        let name = tok.name("getitem");
        let mut tasks = Vec::with_capacity(out_chunks.num_blocks());
        for index in out_chunks.indices() {
            let mut src = Vec::with_capacity(self.ndim());
            let mut local = Vec::with_capacity(plans.len());
            let mut out_axis = 0;
            for p in &plans {
                match p {
                    AxisPlan::Blocks(b) => {
                        let (blk, elem, _) = b[index[out_axis]];
                        src.push(blk);
                        local.push(elem);
                        out_axis += 1;
                    }
                    AxisPlan::Index(blk, i) => {
                        src.push(*blk);
                        local.push(LocalElem::Index(*i));
                    }
                    AxisPlan::New => {
                        local.push(LocalElem::NewAxis);
                        out_axis += 1;
                    }
                }
            }
            let kernel = SliceBlock::<T> {
                elems: local,
                _type: std::marker::PhantomData,
            };
            tasks.push((index, Task::new(op(kernel), vec![Input::Key(self.meta.key(&src))])));
        }
        Ok(Array::from_meta(tasks_layer(
            name,
            vec![self.meta.layer.clone()],
            tasks,
            out_chunks,
        )))
    }

    /// The elements at `indices` along `axis` (NumPy's `take`; negative
    /// indices count from the end). Output blocks follow runs of indices
    /// that fall in one input block.
    pub fn take(&self, indices: &[isize], axis: usize) -> Result<Array<T>> {
        let axis = self.check_axis(axis, "take")?;
        let len = self.shape()[axis] as isize;
        let st = starts(self.chunks().axis(axis));
        let mut runs: Vec<(usize, Vec<usize>)> = Vec::new();
        for &i in indices {
            let g = if i < 0 { i + len } else { i };
            if g < 0 || g >= len {
                return Err(Error::invalid(format!(
                    "take: index {i} is out of bounds for axis {axis} of length {len}"
                )));
            }
            let b = st.partition_point(|&x| x <= g as usize) - 1;
            let local = g as usize - st[b];
            match runs.last_mut() {
                Some((rb, list)) if *rb == b => list.push(local),
                _ => runs.push((b, vec![local])),
            }
        }
        if runs.is_empty() {
            runs.push((0, Vec::new()));
        }
        let mut sizes = self.chunks().sizes().to_vec();
        sizes[axis] = runs.iter().map(|r| r.1.len()).collect();
        let out_chunks = Chunks::from_checked(sizes);
        let mut tok = Tokenizer::new();
        tok.str("take").str(self.name().as_str()).u64(axis as u64);
        for &i in indices {
            tok.u64(i as u64);
        }
        let name = tok.name("take");
        let tasks = out_chunks
            .indices()
            .into_iter()
            .map(|index| {
                let (b, list) = &runs[index[axis]];
                let mut src = index.clone();
                src[axis] = *b;
                let kernel = TakeBlock::<T> {
                    axis,
                    indices: list.clone(),
                    _type: std::marker::PhantomData,
                };
                (index, Task::new(op(kernel), vec![Input::Key(self.meta.key(&src))]))
            })
            .collect();
        Ok(Array::from_meta(tasks_layer(
            name,
            vec![self.meta.layer.clone()],
            tasks,
            out_chunks,
        )))
    }

    /// Permutes the axes: output axis `i` is input axis `axes[i]`.
    pub fn permute(&self, axes: &[usize]) -> Result<Array<T>> {
        let mut seen = vec![false; self.ndim()];
        if axes.len() != self.ndim() {
            return Err(Error::invalid(format!(
                "transpose: {} axes given for an array of {} dimensions",
                axes.len(),
                self.ndim()
            )));
        }
        for &a in axes {
            check_axis(a, self.ndim(), "transpose")?;
            if std::mem::replace(&mut seen[a], true) {
                return Err(Error::invalid(format!("transpose: axis {a} is repeated in {axes:?}")));
            }
        }
        if axes.iter().enumerate().all(|(i, &a)| i == a) {
            return Ok(self.clone());
        }
        let mut inverse = vec![0u32; axes.len()];
        for (i, &a) in axes.iter().enumerate() {
            inverse[a] = i as u32;
        }
        let arg = BlockArg::Block {
            name: self.name().clone(),
            map: inverse.into_iter().map(IndexMap::Axis).collect(),
        };
        let chunks = self.chunks().permuted(axes);
        let kernel = Transpose::<T> {
            axes: axes.to_vec(),
            _type: std::marker::PhantomData,
        };
        Ok(Array::from_meta(blockwise_layer(
            "transpose",
            op(kernel),
            &chunks,
            vec![arg],
            vec![self.meta.layer.clone()],
            &[],
        )))
    }

    /// Reverses the axes (NumPy's `.T`).
    pub fn t(&self) -> Array<T> {
        let axes: Vec<usize> = (0..self.ndim()).rev().collect();
        self.permute(&axes).expect("a reversal is a valid permutation")
    }

    /// Swaps two axes.
    pub fn swapaxes(&self, a: usize, b: usize) -> Result<Array<T>> {
        check_axis(a, self.ndim(), "swapaxes")?;
        check_axis(b, self.ndim(), "swapaxes")?;
        let mut axes: Vec<usize> = (0..self.ndim()).collect();
        axes.swap(a, b);
        self.permute(&axes)
    }

    /// A new shape with the same elements in row-major order. Works where
    /// the chunks allow it without moving data between blocks: when axes are
    /// merged, all but the first merged axis must be one block; when an axis
    /// is split, its blocks must be multiples of the new trailing axes. Other
    /// cases are an error saying which axis to rechunk.
    pub fn reshape(&self, shape: &[usize]) -> Result<Array<T>> {
        let old = self.shape().to_vec();
        let (n_old, n_new): (usize, usize) = (old.iter().product(), shape.iter().product());
        if n_old != n_new {
            return Err(Error::invalid(format!(
                "reshape: cannot reshape an array of shape {old:?} ({n_old} elements) into {shape:?} ({n_new} elements)"
            )));
        }
        if old == shape {
            return Ok(self.clone());
        }
        if n_old == 0 {
            return Err(Error::invalid(format!(
                "reshape: the array of shape {old:?} has no elements; reshaping empty arrays is not supported"
            )));
        }
        if n_old == 1 {
            // One element: one block in, one block out.
            let chunks = Chunks::single(shape);
            let mut args = vec![BlockArg::Block {
                name: self.name().clone(),
                map: vec![IndexMap::Fixed(0); old.len()],
            }];
            args.extend(index_args(shape.len()));
            let kernel = ReshapeBlock::<T> {
                chunks: chunks.clone(),
                _type: std::marker::PhantomData,
            };
            return Ok(Array::from_meta(blockwise_layer(
                "reshape",
                op(kernel),
                &chunks,
                args,
                vec![self.meta.layer.clone()],
                &[],
            )));
        }
        // Group axes whose products match: old[i0..i1] ↔ new[j0..j1].
        let groups = reshape_groups(&old, shape);
        let mut out_sizes: Vec<Vec<usize>> = vec![Vec::new(); shape.len()];
        let mut maps: Vec<IndexMap> = vec![IndexMap::Fixed(0); old.len()];
        for (ins, outs) in &groups {
            let lead_in = ins.iter().copied().find(|&a| old[a] != 1).unwrap_or(ins[0]);
            for &a in ins {
                if a > lead_in && self.chunks().axis(a).len() > 1 {
                    return Err(Error::invalid(format!(
                        "reshape from {old:?} to {shape:?}: axis {a} (merged with axis {lead_in}) is in {} blocks; \
                         rechunk it into one block first",
                        self.chunks().axis(a).len()
                    )));
                }
            }
            let lead_out = outs.iter().copied().find(|&a| shape[a] != 1).unwrap_or(outs[0]);
            let trailing: usize = outs.iter().filter(|&&a| a > lead_out).map(|&a| shape[a]).product();
            let inner: usize = ins.iter().filter(|&&a| a > lead_in).map(|&a| old[a]).product();
            let lead_chunks: Vec<usize> = self.chunks().axis(lead_in).iter().map(|&c| c * inner).collect();
            if let Some(bad) = lead_chunks.iter().find(|&&c| c % trailing != 0) {
                return Err(Error::invalid(format!(
                    "reshape from {old:?} to {shape:?}: a block of {bad} elements along axis {lead_in} does not split \
                     into whole rows of {trailing}; rechunk axis {lead_in} to multiples of {} first",
                    trailing / gcd(trailing, inner)
                )));
            }
            for &o in outs {
                out_sizes[o] = if o == lead_out {
                    lead_chunks.iter().map(|&c| c / trailing).collect()
                } else if o < lead_out {
                    vec![1]
                } else {
                    vec![shape[o]]
                };
            }
            maps[lead_in] = IndexMap::Axis(lead_out as u32);
        }
        let chunks = Chunks::from_checked(out_sizes);
        let mut args = vec![BlockArg::Block {
            name: self.name().clone(),
            map: maps,
        }];
        args.extend(index_args(shape.len()));
        let kernel = ReshapeBlock::<T> {
            chunks: chunks.clone(),
            _type: std::marker::PhantomData,
        };
        Ok(Array::from_meta(blockwise_layer(
            "reshape",
            op(kernel),
            &chunks,
            args,
            vec![self.meta.layer.clone()],
            &[],
        )))
    }

    /// All elements in one axis, row-major (a reshape to `[len]`).
    pub fn ravel(&self) -> Result<Array<T>> {
        self.reshape(&[self.len()])
    }

    /// Inserts an axis of length 1 at `axis`.
    pub fn expand_dims(&self, axis: usize) -> Result<Array<T>> {
        check_axis(axis, self.ndim() + 1, "expand_dims")?;
        let mut info: Vec<SliceInfoElem> = (0..axis)
            .map(|_| SliceInfoElem::Slice {
                start: 0,
                end: None,
                step: 1,
            })
            .collect();
        info.push(SliceInfoElem::NewAxis);
        self.slice(&info)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// Pairs up axes of two shapes with equal products (trailing size-1 axes
/// join the last group). Both shapes hold the same positive number of
/// elements.
fn reshape_groups(old: &[usize], new: &[usize]) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut groups: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        let (mut ins, mut outs) = (vec![i], vec![j]);
        let (mut pi, mut pj) = (old[i], new[j]);
        i += 1;
        j += 1;
        while pi != pj {
            if pi < pj && i < old.len() {
                pi *= old[i];
                ins.push(i);
                i += 1;
            } else if j < new.len() {
                pj *= new[j];
                outs.push(j);
                j += 1;
            } else {
                break;
            }
        }
        groups.push((ins, outs));
    }
    if groups.is_empty() {
        groups.push((Vec::new(), Vec::new()));
    }
    let last = groups.last_mut().expect("one group at least");
    last.0.extend(i..old.len());
    last.1.extend(j..new.len());
    groups
}

/// Joins arrays along an existing axis. Their other axes must match; chunks
/// along them are unified (rechunked to the common refinement).
pub fn concatenate<T: Element>(arrays: &[&Array<T>], axis: usize) -> Result<Array<T>> {
    let first = arrays
        .first()
        .ok_or_else(|| Error::invalid("concatenate: no arrays given"))?;
    let ndim = first.ndim();
    check_axis(axis, ndim, "concatenate")?;
    for (k, a) in arrays.iter().enumerate() {
        if a.ndim() != ndim
            || a.shape()
                .iter()
                .zip(first.shape())
                .enumerate()
                .any(|(ax, (x, y))| ax != axis && x != y)
        {
            return Err(Error::invalid(format!(
                "concatenate along axis {axis}: array {k} has shape {:?}, array 0 has {:?}; all axes but {axis} must match",
                a.shape(),
                first.shape()
            )));
        }
    }
    // Unified chunks on the other axes.
    let mut target: Vec<Vec<usize>> = first.chunks().sizes().to_vec();
    for ax in (0..ndim).filter(|&a| a != axis) {
        let mut bounds: Vec<usize> = Vec::new();
        for a in arrays {
            bounds.extend(starts(a.chunks().axis(ax)));
        }
        bounds.sort_unstable();
        bounds.dedup();
        target[ax] = if first.shape()[ax] == 0 {
            vec![0]
        } else {
            bounds.windows(2).map(|w| w[1] - w[0]).collect()
        };
    }
    let mut parts = Vec::with_capacity(arrays.len());
    for a in arrays {
        let mut t = target.clone();
        t[axis] = a.chunks().axis(axis).to_vec();
        parts.push(a.rechunk_to(&Chunks::from_checked(t))?);
    }
    let mut out_sizes = target.clone();
    out_sizes[axis] = parts
        .iter()
        .flat_map(|p| p.chunks().axis(axis).iter().copied().filter(|&c| c > 0))
        .collect();
    if out_sizes[axis].is_empty() {
        out_sizes[axis] = vec![0];
    }
    let mut owners: Vec<(usize, usize)> = Vec::new();
    for (k, p) in parts.iter().enumerate() {
        for (b, &c) in p.chunks().axis(axis).iter().enumerate() {
            if c > 0 {
                owners.push((k, b));
            }
        }
    }
    if owners.is_empty() {
        owners.push((0, 0));
    }
    let chunks = Chunks::from_checked(out_sizes);
    let mut tok = Tokenizer::new();
    tok.str("concatenate").u64(axis as u64);
    for p in &parts {
        tok.str(p.name().as_str());
    }
    let name = tok.name("concatenate");
    let tasks = chunks
        .indices()
        .into_iter()
        .map(|index| {
            let (k, b) = owners[index[axis]];
            let mut src = index.clone();
            src[axis] = b;
            (index, Task::new(identity(), vec![Input::Key(parts[k].meta.key(&src))]))
        })
        .collect();
    let deps = parts.iter().map(|p| p.meta.layer.clone()).collect();
    Ok(Array::from_meta(tasks_layer(name, deps, tasks, chunks)))
}

/// Joins arrays of one shape along a new axis.
pub fn stack<T: Element>(arrays: &[&Array<T>], axis: usize) -> Result<Array<T>> {
    let first = arrays.first().ok_or_else(|| Error::invalid("stack: no arrays given"))?;
    check_axis(axis, first.ndim() + 1, "stack")?;
    for (k, a) in arrays.iter().enumerate() {
        if a.shape() != first.shape() {
            return Err(Error::invalid(format!(
                "stack: array {k} has shape {:?}, array 0 has {:?}; all must match",
                a.shape(),
                first.shape()
            )));
        }
    }
    let expanded = arrays.iter().map(|a| a.expand_dims(axis)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Array<T>> = expanded.iter().collect();
    concatenate(&refs, axis)
}

/// Unused marker so `Meta` stays referenced in docs of this module.
#[allow(dead_code)]
fn _meta(_: &Meta) {}
