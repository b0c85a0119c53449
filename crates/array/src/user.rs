//! User code per block: `map_blocks`, `blockwise`, `map_overlap`,
//! `from_block_fn`.
//!
//! A user function runs on whole blocks as ndarray views and returns an
//! owned ndarray. Any closure works on the local schedulers. For a graph
//! to cross a process boundary the function must be registered: a plain
//! `fn` marked `#[blockwise::task]` is found by
//! `blockwise_core::op::registered_name_of`, its name travels in the op's
//! parameters, and the worker rebuilds it from its own registry with
//! `registered_fn` (same executable, same registrations). Encoding a graph
//! that holds an unregistered closure is a `NotRegistered` error naming the
//! fix.
//!
//! The function-pointer types looked up in the registry are:
//!
//! | use | signature |
//! |---|---|
//! | `map_blocks`, `map_overlap` | `fn(ArrayViewD<'_, T>) -> ArrayD<U>` |
//! | `blockwise` | `fn(&[ArrayViewD<'_, T>]) -> ArrayD<U>` |
//! | `from_block_fn` | `fn(&BlockInfo) -> ArrayD<T>` |
//!
//! A block function must return the block shape the output's chunks
//! promise; a wrong shape is an error naming the block.

use std::collections::HashMap;
use std::sync::Arc;

use blockwise_core::graph::{BlockArg, IndexMap, Input, Task};
use blockwise_core::op::{not_registered, registered_fn, registered_name_of};
use blockwise_core::value::{postcard_decode, postcard_encode};
use blockwise_core::{Error, Op, Result, Tokenizer, Value};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

use crate::array::{Array, blockwise_layer};
use crate::chunks::{ChunkSpec, Chunks, grid_indices, starts};
use crate::creation::{BlockInfo, index_args};
use crate::element::{Element, for_each_dtype};
use crate::kernel::{block, op_name, value};
use crate::shape::tasks_layer;

/// A user function with what is needed to name, send and rebuild it.
struct UserFn<F: ?Sized> {
    f: Arc<F>,
    /// The registered name, when `#[blockwise::task]` registered the function.
    registered: Option<&'static str>,
    /// A readable name for labels and errors.
    label: String,
    /// Whether the function can be identified by its type alone (no captured state).
    stateless: bool,
}

impl<F: ?Sized> Clone for UserFn<F> {
    fn clone(&self) -> Self {
        UserFn {
            f: self.f.clone(),
            registered: self.registered,
            label: self.label.clone(),
            stateless: self.stateless,
        }
    }
}

impl<F: ?Sized> UserFn<F> {
    fn new<G: 'static>(f: Arc<F>) -> Self {
        let type_name = std::any::type_name::<G>();
        UserFn {
            f,
            registered: registered_name_of::<G>(),
            label: type_name
                .rsplit("::")
                .next()
                .unwrap_or(type_name)
                .replace("{{closure}}", "closure"),
            stateless: std::mem::size_of::<G>() == 0,
        }
    }

    fn tokenize(&self, tok: &mut Tokenizer, type_name: &str) {
        match self.registered {
            Some(n) => {
                tok.str(n);
            }
            None if self.stateless => {
                tok.str(type_name);
            }
            None => {
                tok.unique();
            }
        }
    }

    fn encode_name(&self, out: &mut Vec<u8>) -> Result<&'static str> {
        let name = self.registered.ok_or_else(|| not_registered(&self.label))?;
        postcard_encode(name, out)?;
        Ok(name)
    }
}

type BlockFn<T, U> = dyn Fn(ArrayViewD<'_, T>) -> ArrayD<U> + Send + Sync;
type ManyFn<T, U> = dyn Fn(&[ArrayViewD<'_, T>]) -> ArrayD<U> + Send + Sync;
type GenFn<T> = dyn Fn(&BlockInfo) -> ArrayD<T> + Send + Sync;

fn check_shape<U>(out: &ArrayD<U>, expected: &[usize], what: &str, info: &BlockInfo) -> Result<()> {
    if out.shape() != expected {
        return Err(Error::invalid(format!(
            "{what}: the function returned a block of shape {:?} for block {:?}, but the output's chunks give it {expected:?}",
            out.shape(),
            info.index
        )));
    }
    Ok(())
}

/// `map_blocks`: one input block in, one block out.
struct MapBlocksOp<T, U> {
    f: UserFn<BlockFn<T, U>>,
    out_chunks: Chunks,
    name: &'static str,
}

#[derive(Serialize, Deserialize)]
struct MapBlocksParams {
    func: String,
    out_chunks: Chunks,
}

impl<T: Element, U: Element> Op for MapBlocksOp<T, U> {
    fn name(&self) -> &str {
        self.name
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let b = block::<T>(args.first().ok_or_else(|| Error::graph("map_blocks needs a block"))?)?;
        let info = BlockInfo::from_args(&self.out_chunks, &args[1..])?;
        let out = (self.f.f)(b.view());
        check_shape(&out, &info.shape, &format!("map_blocks({})", self.f.label), &info)?;
        Ok(value(out))
    }
    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut tmp = Vec::new();
        let func = self.f.encode_name(&mut tmp)?.to_string();
        postcard_encode(
            &MapBlocksParams {
                func,
                out_chunks: self.out_chunks.clone(),
            },
            out,
        )
    }
    fn tokenize(&self, tok: &mut Tokenizer) {
        tok.str(self.name);
        self.f.tokenize(tok, &self.f.label);
    }
    fn label(&self) -> String {
        format!("map_blocks({})", self.f.label)
    }
}

fn decode_map_blocks<T: Element, U: Element>(params: &[u8]) -> Result<Arc<dyn Op>> {
    let p: MapBlocksParams = postcard_decode(params)?;
    let func = registered_fn::<fn(ArrayViewD<'_, T>) -> ArrayD<U>>(&p.func)?;
    let name: &'static str = leak_name(&p.func);
    Ok(Arc::new(MapBlocksOp::<T, U> {
        f: UserFn {
            f: Arc::new(func),
            registered: Some(name),
            label: p.func.clone(),
            stateless: true,
        },
        out_chunks: p.out_chunks,
        name: op_name("array.map_blocks", &format!("{}.{}", T::DTYPE_NAME, U::DTYPE_NAME)),
    }))
}

/// A registered name as `&'static str` (interned once).
fn leak_name(name: &str) -> &'static str {
    op_name("fn", name).trim_start_matches("fn.")
}

/// `blockwise`: several input blocks (with contracted axes concatenated) in,
/// one block out.
struct BlockwiseOp<T, U> {
    f: UserFn<ManyFn<T, U>>,
    /// Per argument: the grid of blocks it receives, concatenated in order.
    grids: Vec<Vec<usize>>,
    out_chunks: Chunks,
    name: &'static str,
}

#[derive(Serialize, Deserialize)]
struct BlockwiseParams {
    func: String,
    grids: Vec<Vec<usize>>,
    out_chunks: Chunks,
}

/// Concatenates a row-major grid of blocks into one array.
fn concat_grid<T: Element>(blocks: &[std::borrow::Cow<'_, ArrayD<T>>], grid: &[usize]) -> Result<ArrayD<T>> {
    if blocks.len() == 1 {
        return Ok(blocks[0].clone().into_owned());
    }
    let ndim = grid.len();
    let positions = grid_indices(grid);
    // sizes along each axis, read from the blocks on that axis's line
    let mut sizes: Vec<Vec<usize>> = vec![Vec::new(); ndim];
    for (axis, s) in sizes.iter_mut().enumerate() {
        for k in 0..grid[axis] {
            let at = positions
                .iter()
                .position(|p| p[axis] == k && p.iter().enumerate().all(|(a, &x)| a == axis || x == 0))
                .expect("grid position exists");
            s.push(blocks[at].len_of(Axis(axis)));
        }
    }
    let offsets: Vec<Vec<usize>> = sizes.iter().map(|s| starts(s)).collect();
    let shape: Vec<usize> = sizes.iter().map(|s| s.iter().sum()).collect();
    let mut out = ArrayD::from_elem(IxDyn(&shape), T::default());
    for (b, p) in blocks.iter().zip(&positions) {
        let mut dst = out.view_mut();
        for axis in 0..ndim {
            let (s, e) = (offsets[axis][p[axis]], offsets[axis][p[axis] + 1]);
            if e - s != b.len_of(Axis(axis)) {
                return Err(Error::invalid(format!(
                    "blockwise: blocks along axis {axis} of a contracted argument have unequal sizes"
                )));
            }
            dst.slice_axis_inplace(Axis(axis), (s..e).into());
        }
        dst.assign(&**b);
    }
    Ok(out)
}

impl<T: Element, U: Element> Op for BlockwiseOp<T, U> {
    fn name(&self) -> &str {
        self.name
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let n_blocks: usize = self.grids.iter().map(|g| g.iter().product::<usize>()).sum();
        if args.len() < n_blocks {
            return Err(Error::graph("blockwise: too few inputs"));
        }
        let info = BlockInfo::from_args(&self.out_chunks, &args[n_blocks..])?;
        let mut at = 0;
        let mut joined = Vec::with_capacity(self.grids.len());
        for g in &self.grids {
            let n: usize = g.iter().product();
            let blocks = args[at..at + n].iter().map(block::<T>).collect::<Result<Vec<_>>>()?;
            joined.push(concat_grid(&blocks, g)?);
            at += n;
        }
        let views: Vec<ArrayViewD<'_, T>> = joined.iter().map(|a| a.view()).collect();
        let out = (self.f.f)(&views);
        check_shape(&out, &info.shape, &format!("blockwise({})", self.f.label), &info)?;
        Ok(value(out))
    }
    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut tmp = Vec::new();
        let func = self.f.encode_name(&mut tmp)?.to_string();
        postcard_encode(
            &BlockwiseParams {
                func,
                grids: self.grids.clone(),
                out_chunks: self.out_chunks.clone(),
            },
            out,
        )
    }
    fn tokenize(&self, tok: &mut Tokenizer) {
        tok.str(self.name);
        self.f.tokenize(tok, &self.f.label);
        for g in &self.grids {
            for &x in g {
                tok.u64(x as u64);
            }
        }
    }
    fn label(&self) -> String {
        format!("blockwise({})", self.f.label)
    }
}

fn decode_blockwise<T: Element, U: Element>(params: &[u8]) -> Result<Arc<dyn Op>> {
    let p: BlockwiseParams = postcard_decode(params)?;
    let func = registered_fn::<fn(&[ArrayViewD<'_, T>]) -> ArrayD<U>>(&p.func)?;
    Ok(Arc::new(BlockwiseOp::<T, U> {
        f: UserFn {
            f: Arc::new(func),
            registered: Some(leak_name(&p.func)),
            label: p.func.clone(),
            stateless: true,
        },
        grids: p.grids,
        out_chunks: p.out_chunks,
        name: op_name("array.blockwise", &format!("{}.{}", T::DTYPE_NAME, U::DTYPE_NAME)),
    }))
}

/// What lies beyond the edges of the array, for `map_overlap`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Boundary<T: Element> {
    /// Mirror the edge, the edge element included (Dask's `reflect`,
    /// NumPy's `pad(mode="symmetric")`).
    Reflect,
    /// Wrap around to the other end.
    Periodic,
    /// Repeat the edge element.
    Nearest,
    /// A constant.
    Constant(T),
    /// No halo at the array's edges: edge blocks are extended only inwards.
    None,
}

/// One part of an extended block along one axis.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Part {
    /// Elements `[start, end)` of the neighbour `block` along this axis,
    /// reversed or not.
    Src {
        block: usize,
        start: usize,
        end: usize,
        reversed: bool,
    },
    /// Element `index` of `block` repeated `count` times.
    Repeat { block: usize, index: usize, count: usize },
    /// `len` constant elements.
    Const { len: usize },
}

impl Part {
    fn len(&self) -> usize {
        match *self {
            Part::Src { start, end, .. } => end - start,
            Part::Repeat { count, .. } => count,
            Part::Const { len } => len,
        }
    }
    fn block(&self) -> Option<usize> {
        match *self {
            Part::Src { block, .. } | Part::Repeat { block, .. } => Some(block),
            Part::Const { .. } => None,
        }
    }
}

/// The parts along one axis of block `i`, and the halo widths (left, right).
fn axis_parts<T: Element>(sizes: &[usize], i: usize, depth: usize, boundary: Boundary<T>) -> (Vec<Part>, usize, usize) {
    let n = sizes.len();
    let mut parts = Vec::with_capacity(3);
    let (mut left, mut right) = (0, 0);
    if depth > 0 {
        let edge = match boundary {
            _ if i > 0 => Some(Part::Src {
                block: i - 1,
                start: sizes[i - 1] - depth,
                end: sizes[i - 1],
                reversed: false,
            }),
            Boundary::Periodic => Some(Part::Src {
                block: n - 1,
                start: sizes[n - 1] - depth,
                end: sizes[n - 1],
                reversed: false,
            }),
            Boundary::Reflect => Some(Part::Src {
                block: 0,
                start: 0,
                end: depth,
                reversed: true,
            }),
            Boundary::Nearest => Some(Part::Repeat {
                block: 0,
                index: 0,
                count: depth,
            }),
            Boundary::Constant(_) => Some(Part::Const { len: depth }),
            Boundary::None => None,
        };
        if let Some(p) = edge {
            left = depth;
            parts.push(p);
        }
    }
    parts.push(Part::Src {
        block: i,
        start: 0,
        end: sizes[i],
        reversed: false,
    });
    if depth > 0 {
        let last = n - 1;
        let edge = match boundary {
            _ if i < last => Some(Part::Src {
                block: i + 1,
                start: 0,
                end: depth,
                reversed: false,
            }),
            Boundary::Periodic => Some(Part::Src {
                block: 0,
                start: 0,
                end: depth,
                reversed: false,
            }),
            Boundary::Reflect => Some(Part::Src {
                block: last,
                start: sizes[last] - depth,
                end: sizes[last],
                reversed: true,
            }),
            Boundary::Nearest => Some(Part::Repeat {
                block: last,
                index: sizes[last] - 1,
                count: depth,
            }),
            Boundary::Constant(_) => Some(Part::Const { len: depth }),
            Boundary::None => None,
        };
        if let Some(p) = edge {
            right = depth;
            parts.push(p);
        }
    }
    (parts, left, right)
}

/// `map_overlap` for one block: assemble the block with its halo from the
/// neighbours, call the function, trim the halo off.
struct OverlapOp<T: Element> {
    f: UserFn<BlockFn<T, T>>,
    params: OverlapParams<T>,
    name: &'static str,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
struct OverlapParams<T: Element> {
    func: String,
    /// Parts per axis.
    parts: Vec<Vec<Part>>,
    /// For each combination of neighbour blocks (row-major over parts with a
    /// block), which input it is.
    inputs: Vec<(Vec<usize>, u32)>,
    fill: T,
    trim: Vec<(usize, usize)>,
}

impl<T: Element> Op for OverlapOp<T> {
    fn name(&self) -> &str {
        self.name
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let p = &self.params;
        let shape: Vec<usize> = p.parts.iter().map(|ps| ps.iter().map(Part::len).sum()).collect();
        let mut ext = ArrayD::from_elem(IxDyn(&shape), p.fill);
        let lookup: HashMap<&Vec<usize>, u32> = p.inputs.iter().map(|(k, v)| (k, *v)).collect();
        let counts: Vec<usize> = p.parts.iter().map(Vec::len).collect();
        let offsets: Vec<Vec<usize>> = p
            .parts
            .iter()
            .map(|ps| starts(&ps.iter().map(Part::len).collect::<Vec<_>>()))
            .collect();
        for combo in grid_indices(&counts) {
            let parts: Vec<&Part> = combo.iter().enumerate().map(|(a, &c)| &p.parts[a][c]).collect();
            let Some(src_index) = parts.iter().map(|q| q.block()).collect::<Option<Vec<usize>>>() else {
                continue; // a constant region: already filled
            };
            let input = *lookup
                .get(&src_index)
                .ok_or_else(|| Error::graph("map_overlap: a neighbour block is missing from the task"))?;
            let b = block::<T>(&args[input as usize])?;
            let mut src = b.view();
            for (axis, q) in parts.iter().enumerate() {
                match **q {
                    Part::Src {
                        start, end, reversed, ..
                    } => {
                        src.slice_axis_inplace(Axis(axis), (start..end).into());
                        if reversed {
                            src.invert_axis(Axis(axis));
                        }
                    }
                    Part::Repeat { index, .. } => src.slice_axis_inplace(Axis(axis), (index..index + 1).into()),
                    Part::Const { .. } => unreachable!("constant parts were skipped"),
                }
            }
            let mut dst = ext.view_mut();
            for (axis, &c) in combo.iter().enumerate() {
                let (s, e) = (offsets[axis][c], offsets[axis][c + 1]);
                dst.slice_axis_inplace(Axis(axis), (s..e).into());
            }
            let src = src
                .broadcast(dst.raw_dim())
                .ok_or_else(|| Error::graph("map_overlap: a halo piece does not fit"))?;
            dst.assign(&src);
        }
        let out = (self.f.f)(ext.view());
        if out.shape() != ext.shape() {
            return Err(Error::invalid(format!(
                "map_overlap({}): the function must keep the shape of the extended block {:?}, it returned {:?}",
                self.f.label,
                ext.shape(),
                out.shape()
            )));
        }
        let mut view = out.view();
        for (axis, &(l, r)) in p.trim.iter().enumerate() {
            let n = view.len_of(Axis(axis));
            view.slice_axis_inplace(Axis(axis), (l..n - r).into());
        }
        Ok(value(view.as_standard_layout().into_owned()))
    }
    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut tmp = Vec::new();
        self.f.encode_name(&mut tmp)?;
        postcard_encode(&self.params, out)
    }
    fn tokenize(&self, tok: &mut Tokenizer) {
        tok.str(self.name);
        self.f.tokenize(tok, &self.f.label);
        let mut bytes = Vec::new();
        if postcard_encode(&(self.params.parts.len(), &self.params.trim), &mut bytes).is_ok() {
            tok.bytes(&bytes);
        }
    }
    fn label(&self) -> String {
        format!("map_overlap({})", self.f.label)
    }
}

fn decode_overlap<T: Element>(params: &[u8]) -> Result<Arc<dyn Op>> {
    let p: OverlapParams<T> = postcard_decode(params)?;
    let func = registered_fn::<fn(ArrayViewD<'_, T>) -> ArrayD<T>>(&p.func)?;
    Ok(Arc::new(OverlapOp::<T> {
        f: UserFn {
            f: Arc::new(func),
            registered: Some(leak_name(&p.func)),
            label: p.func.clone(),
            stateless: true,
        },
        params: p,
        name: op_name("array.map_overlap", T::DTYPE_NAME),
    }))
}

/// A generator of blocks from their position.
struct FromFnOp<T> {
    f: UserFn<GenFn<T>>,
    chunks: Chunks,
    name: &'static str,
}

impl<T: Element> Op for FromFnOp<T> {
    fn name(&self) -> &str {
        self.name
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let info = BlockInfo::from_args(&self.chunks, args)?;
        let out = (self.f.f)(&info);
        check_shape(&out, &info.shape, &format!("from_block_fn({})", self.f.label), &info)?;
        Ok(value(out))
    }
    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut tmp = Vec::new();
        let func = self.f.encode_name(&mut tmp)?.to_string();
        postcard_encode(&(func, &self.chunks), out)
    }
    fn tokenize(&self, tok: &mut Tokenizer) {
        tok.str(self.name);
        self.f.tokenize(tok, &self.f.label);
    }
    fn label(&self) -> String {
        format!("from_block_fn({})", self.f.label)
    }
}

fn decode_from_fn<T: Element>(params: &[u8]) -> Result<Arc<dyn Op>> {
    let (func, chunks): (String, Chunks) = postcard_decode(params)?;
    let f = registered_fn::<fn(&BlockInfo) -> ArrayD<T>>(&func)?;
    Ok(Arc::new(FromFnOp::<T> {
        f: UserFn {
            f: Arc::new(f),
            registered: Some(leak_name(&func)),
            label: func,
            stateless: true,
        },
        chunks,
        name: op_name("array.from_fn", T::DTYPE_NAME),
    }))
}

macro_rules! reg_user_pairs {
    ($t:ident) => {
        reg_user_pairs!(@to $t, f64);
        reg_user_pairs!(@to $t, f32);
        reg_user_pairs!(@to $t, i64);
        reg_user_pairs!(@to $t, i32);
        reg_user_pairs!(@to $t, u8);
        reg_user_pairs!(@to $t, bool);
        blockwise_core::register_op!(concat!("array.map_overlap.", stringify!($t)), decode_overlap::<$t>);
        blockwise_core::register_op!(concat!("array.from_fn.", stringify!($t)), decode_from_fn::<$t>);
    };
    (@to $t:ident, $u:ident) => {
        blockwise_core::register_op!(
            concat!("array.map_blocks.", stringify!($t), ".", stringify!($u)),
            decode_map_blocks::<$t, $u>
        );
        blockwise_core::register_op!(
            concat!("array.blockwise.", stringify!($t), ".", stringify!($u)),
            decode_blockwise::<$t, $u>
        );
    };
}
for_each_dtype!(reg_user_pairs);

impl<T: Element> Array<T> {
    /// Applies `f` to every block; the output has the same chunks. `f` may be
    /// a closure (local schedulers) or a `#[blockwise::task]` function
    /// (anywhere).
    pub fn map_blocks<U: Element, F>(&self, f: F) -> Array<U>
    where
        F: Fn(ArrayViewD<'_, T>) -> ArrayD<U> + Send + Sync + 'static,
    {
        self.map_blocks_chunks(f, self.chunks().clone())
            .expect("the input's own chunks fit its grid")
    }

    /// Applies `f` to every block when it changes block shapes: `chunks`
    /// are the output's, with the same number of blocks per axis as the
    /// input (Dask's `map_blocks(…, chunks=…)`).
    pub fn map_blocks_with_chunks<U: Element, F>(&self, f: F, chunks: impl Into<ChunkSpec>) -> Result<Array<U>>
    where
        F: Fn(ArrayViewD<'_, T>) -> ArrayD<U> + Send + Sync + 'static,
    {
        let spec = chunks.into();
        let out = match spec {
            ChunkSpec::PerAxis(ref axes) => {
                let sizes: Option<Vec<Vec<usize>>> = axes
                    .iter()
                    .map(|a| match a {
                        crate::chunks::AxisChunks::Sizes(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                match sizes {
                    Some(s) => {
                        let shape: Vec<usize> = s.iter().map(|x| x.iter().sum()).collect();
                        Chunks::new(&shape, s)?
                    }
                    None => {
                        return Err(Error::invalid(
                            "map_blocks_with_chunks: give the output's chunk sizes per axis explicitly",
                        ));
                    }
                }
            }
            ChunkSpec::Auto => {
                return Err(Error::invalid(
                    "map_blocks_with_chunks: `auto` chunks cannot describe a function's output",
                ));
            }
        };
        self.map_blocks_chunks(f, out)
    }

    fn map_blocks_chunks<U: Element, F>(&self, f: F, out_chunks: Chunks) -> Result<Array<U>>
    where
        F: Fn(ArrayViewD<'_, T>) -> ArrayD<U> + Send + Sync + 'static,
    {
        if out_chunks.grid() != self.chunks().grid() {
            return Err(Error::invalid(format!(
                "map_blocks: the output chunks have a grid of {:?} blocks, the input {:?}; they must match",
                out_chunks.grid(),
                self.chunks().grid()
            )));
        }
        let op = MapBlocksOp::<T, U> {
            f: UserFn::new::<F>(Arc::new(f) as Arc<BlockFn<T, U>>),
            out_chunks: out_chunks.clone(),
            name: op_name("array.map_blocks", &format!("{}.{}", T::DTYPE_NAME, U::DTYPE_NAME)),
        };
        let mut args = vec![self.meta.same_grid_arg()];
        args.extend(index_args(out_chunks.ndim()));
        let meta = blockwise_layer(
            "map-blocks",
            Arc::new(op),
            &out_chunks,
            args,
            vec![self.meta.layer.clone()],
            &[],
        );
        Ok(Array::from_meta(meta))
    }

    /// Applies `f` to every block extended by `depth` elements of its
    /// neighbours along each axis (a halo), then trims the halo from the
    /// result: stencils and filters whose output at a point reads nearby
    /// points. `f` must return an array of the extended block's shape.
    /// `depth` must not exceed any block's size along its axis (rechunk to
    /// larger blocks first).
    pub fn map_overlap<F>(&self, f: F, depth: &[usize], boundary: Boundary<T>) -> Result<Array<T>>
    where
        F: Fn(ArrayViewD<'_, T>) -> ArrayD<T> + Send + Sync + 'static,
    {
        if depth.len() != self.ndim() {
            return Err(Error::invalid(format!(
                "map_overlap: {} depths given for an array of {} dimensions",
                depth.len(),
                self.ndim()
            )));
        }
        for (axis, &d) in depth.iter().enumerate() {
            let smallest = self.chunks().axis(axis).iter().copied().min().unwrap_or(0);
            if d > smallest {
                return Err(Error::invalid(format!(
                    "map_overlap: depth {d} along axis {axis} exceeds the smallest block there ({smallest}); \
                     rechunk to blocks of at least {d} first"
                )));
            }
        }
        let f = UserFn::new::<F>(Arc::new(f) as Arc<BlockFn<T, T>>);
        let fill = match boundary {
            Boundary::Constant(c) => c,
            _ => T::default(),
        };
        let chunks = self.chunks().clone();
        let mut tok = Tokenizer::new();
        tok.str("map-overlap").str(self.name().as_str());
        f.tokenize(&mut tok, &f.label);
        for &d in depth {
            tok.u64(d as u64);
        }
        let mut bbytes = Vec::new();
        postcard_encode(&boundary, &mut bbytes)?;
        tok.bytes(&bbytes);
        let name = tok.name("map-overlap");
        let func = f.registered.unwrap_or("").to_string();
        let mut tasks = Vec::with_capacity(chunks.num_blocks());
        for index in chunks.indices() {
            let mut parts = Vec::with_capacity(self.ndim());
            let mut trim = Vec::with_capacity(self.ndim());
            for (axis, &i) in index.iter().enumerate() {
                let (p, l, r) = axis_parts(chunks.axis(axis), i, depth[axis], boundary);
                parts.push(p);
                trim.push((l, r));
            }
            let mut inputs: Vec<Input> = Vec::new();
            let mut table: Vec<(Vec<usize>, u32)> = Vec::new();
            let counts: Vec<usize> = parts.iter().map(Vec::len).collect();
            for combo in grid_indices(&counts) {
                let src: Option<Vec<usize>> = combo.iter().enumerate().map(|(a, &c)| parts[a][c].block()).collect();
                if let Some(src) = src
                    && !table.iter().any(|(k, _)| *k == src)
                {
                    table.push((src.clone(), inputs.len() as u32));
                    inputs.push(Input::Key(self.meta.key(&src)));
                }
            }
            let op = OverlapOp::<T> {
                f: f.clone(),
                params: OverlapParams {
                    func: func.clone(),
                    parts,
                    inputs: table,
                    fill,
                    trim,
                },
                name: op_name("array.map_overlap", T::DTYPE_NAME),
            };
            tasks.push((index, Task::new(Arc::new(op), inputs)));
        }
        Ok(Array::from_meta(tasks_layer(
            name,
            vec![self.meta.layer.clone()],
            tasks,
            chunks,
        )))
    }
}

/// An array whose blocks are made by `f` from their position (Dask's
/// `map_blocks` on `block_info` with no input). `f` must return blocks of
/// the shape `BlockInfo::shape`.
pub fn from_block_fn<T: Element, F>(shape: &[usize], chunks: impl Into<ChunkSpec>, f: F) -> Result<Array<T>>
where
    F: Fn(&BlockInfo) -> ArrayD<T> + Send + Sync + 'static,
{
    let chunks = chunks.into().resolve(shape, T::SIZE)?;
    let op = FromFnOp::<T> {
        f: UserFn::new::<F>(Arc::new(f) as Arc<GenFn<T>>),
        chunks: chunks.clone(),
        name: op_name("array.from_fn", T::DTYPE_NAME),
    };
    let ndim = chunks.ndim();
    Ok(Array::from_meta(blockwise_layer(
        "from-fn",
        Arc::new(op),
        &chunks,
        index_args(ndim),
        vec![],
        &[],
    )))
}

/// Dask's `blockwise` with index strings: `blockwise(f, "ij", &[(&x, "ik"), (&y, "kj")])`.
///
/// Each letter names an axis. Letters of the output index are the output's
/// axes, in order; a letter of an input missing from the output is
/// *contracted*: `f` receives, for each input, all its blocks along the
/// contracted axes concatenated (Dask's `concatenate=True`). Inputs sharing
/// a letter must have the same length there; their chunks are unified. `f`
/// gets one view per input and returns the output block.
pub fn blockwise<T: Element, U: Element, F>(f: F, out_index: &str, args: &[(&Array<T>, &str)]) -> Result<Array<U>>
where
    F: Fn(&[ArrayViewD<'_, T>]) -> ArrayD<U> + Send + Sync + 'static,
{
    let out_letters: Vec<char> = out_index.chars().collect();
    // length and chunk boundaries per letter
    let mut lengths: HashMap<char, usize> = HashMap::new();
    let mut bounds: HashMap<char, Vec<usize>> = HashMap::new();
    for (k, (a, idx)) in args.iter().enumerate() {
        let letters: Vec<char> = idx.chars().collect();
        if letters.len() != a.ndim() {
            return Err(Error::invalid(format!(
                "blockwise: argument {k} has index {idx:?} of {} letters for an array of {} dimensions",
                letters.len(),
                a.ndim()
            )));
        }
        for (axis, &c) in letters.iter().enumerate() {
            let len = a.shape()[axis];
            if let Some(&prev) = lengths.get(&c)
                && prev != len
            {
                return Err(Error::invalid(format!(
                    "blockwise: index {c:?} has length {prev} in one argument and {len} in argument {k} (axis {axis})"
                )));
            }
            lengths.insert(c, len);
            bounds.entry(c).or_default().extend(starts(a.chunks().axis(axis)));
        }
    }
    for c in &out_letters {
        if !lengths.contains_key(c) {
            return Err(Error::invalid(format!(
                "blockwise: output index {c:?} appears in no argument"
            )));
        }
    }
    let unified: HashMap<char, Vec<usize>> = bounds
        .into_iter()
        .map(|(c, mut b)| {
            b.sort_unstable();
            b.dedup();
            let sizes = if lengths[&c] == 0 {
                vec![0]
            } else {
                b.windows(2).map(|w| w[1] - w[0]).collect()
            };
            (c, sizes)
        })
        .collect();
    let mut aligned = Vec::with_capacity(args.len());
    for (a, idx) in args {
        let target: Vec<Vec<usize>> = idx.chars().map(|c| unified[&c].clone()).collect();
        aligned.push(a.rechunk_to(&Chunks::from_checked(target))?);
    }
    let out_chunks = Chunks::from_checked(out_letters.iter().map(|c| unified[c].clone()).collect());
    let user = UserFn::new::<F>(Arc::new(f) as Arc<ManyFn<T, U>>);
    let grids: Vec<Vec<usize>> = args
        .iter()
        .map(|(_, idx)| {
            idx.chars()
                .map(|c| if out_letters.contains(&c) { 1 } else { unified[&c].len() })
                .collect()
        })
        .collect();
    let contracted = grids.iter().any(|g| g.iter().any(|&n| n > 1));
    let op = Arc::new(BlockwiseOp::<T, U> {
        f: user,
        grids: grids.clone(),
        out_chunks: out_chunks.clone(),
        name: op_name("array.blockwise", &format!("{}.{}", T::DTYPE_NAME, U::DTYPE_NAME)),
    });
    let deps = aligned.iter().map(|a| a.meta.layer.clone()).collect::<Vec<_>>();
    if !contracted {
        let mut bargs: Vec<BlockArg> = args
            .iter()
            .zip(&aligned)
            .map(|((_, idx), a)| BlockArg::Block {
                name: a.name().clone(),
                map: idx
                    .chars()
                    .map(|c| match out_letters.iter().position(|&o| o == c) {
                        Some(p) => IndexMap::Axis(p as u32),
                        None => IndexMap::Fixed(0),
                    })
                    .collect(),
            })
            .collect();
        bargs.extend(index_args(out_chunks.ndim()));
        return Ok(Array::from_meta(blockwise_layer(
            "blockwise",
            op,
            &out_chunks,
            bargs,
            deps,
            &[],
        )));
    }
    let mut tok = Tokenizer::new();
    op.tokenize(&mut tok);
    tok.str(out_index);
    for (a, idx) in args.iter().zip(&aligned) {
        tok.str(a.1).str(idx.name().as_str());
    }
    let name = tok.name("blockwise");
    let mut tasks = Vec::with_capacity(out_chunks.num_blocks());
    for index in out_chunks.indices() {
        let mut inputs = Vec::new();
        for (((_, idx), a), g) in args.iter().zip(&aligned).zip(&grids) {
            for off in grid_indices(g) {
                let src: Vec<usize> = idx
                    .chars()
                    .zip(&off)
                    .map(|(c, &o)| match out_letters.iter().position(|&x| x == c) {
                        Some(p) => index[p],
                        None => o,
                    })
                    .collect();
                inputs.push(Input::Key(a.meta.key(&src)));
            }
        }
        for &i in &index {
            inputs.push(Input::Literal(Arc::new(i as u64)));
        }
        tasks.push((index, Task::new(op.clone(), inputs)));
    }
    Ok(Array::from_meta(tasks_layer(name, deps, tasks, out_chunks)))
}
