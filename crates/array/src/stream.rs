//! Streaming reductions: a reduction fused with the producer of its blocks.
//!
//! The chunk stage of a reduction ([`crate::reduce`]) turns one block into a
//! partial. When the block comes from a producer that can hand its elements
//! out in row-major strips — a random block, `zeros`/`ones`/`full`,
//! `arange`, `linspace`, `eye`, a block of an uncompressed Zarr chunk — and
//! nothing else reads it, the producer task and the chunk task become one
//! task that draws (or reads) a strip of about 16 KiB into a buffer that
//! stays in the L1 cache and folds it into the partial at once: the block is
//! never stored. For a random 1,000 × 1,000 block this saves writing 8 MB
//! and reading it back from memory; for a 100 MB Zarr chunk, the 100 MB
//! buffer (its page faults, its zeroing and the copies into it).
//!
//! **Where it happens.** The rewrite ([`fuse_streams`]) runs when arrays
//! are handed to a scheduler (`Collection::optimize`, on the merged graph
//! of everything computed together), as Dask optimizes an array graph
//! before it runs: only then is the whole computation known. A producer
//! that anything else reads too (the same random array in a mean and a
//! standard deviation computed together, or asked for itself) is left
//! alone, so its blocks are made once and shared. The fused layer keeps the
//! chunk layer's name — its keys hold the same values — so the rest of the
//! tree is unchanged, and the graph the user built is not modified (layers
//! are shared and immutable; the layers between the fused one and the
//! output are copied). The configuration key `array.fuse-streams = false`
//! turns the rewrite off.
//!
//! **The same numbers as unfused.** The fused op does the arithmetic of the
//! unfused chunk kernel in the same order, so the partials are equal bit
//! for bit, whatever the strip size:
//!
//! - the producers give the same elements in pieces as in one block
//!   (`random::Draws` continues one block's generator; a fill is a function of the
//!   position; a Zarr chunk is read run by run);
//! - the first fold, over the largest reduced axis, walks the block in
//!   row-major order. When that axis is the innermost one with more than
//!   one element, each row (a *lane*) folds into one value: with eight
//!   interleaved accumulators then the tail, as `fold_slice` does for
//!   sum/prod/min/max, or one after the other as a mean's `f64` sum does.
//!   Otherwise every output element (a *column*) folds its inputs one by
//!   one in the order of the folded axis, as `fold_axis`. A sum/prod/min/max
//!   over every axis is one lane: the whole block, as `fold_slice` sees it;
//! - the other reduced axes fold the small result with the very function
//!   the unfused kernel uses (`reduce::fold_same`).
//!
//! The tests compare the fused and unfused partials exactly, over random
//! shapes, chunkings and axes.
//!
//! **Which reductions.** `sum`, `prod`, `min`, `max`, `mean` and their
//! NaN-skipping variants, over any axes. `var`/`std` (two passes over the
//! block) and `argmin`/`argmax` keep the stored block. A producer that
//! cannot stream a block (a Zarr block spanning chunks, a compressed store,
//! an empty block) makes the whole block inside the fused task and reduces
//! it as the unfused graph would.

use std::collections::HashMap;
use std::sync::Arc;

use blockwise_core::graph::{BlockArg, Blockwise, IndexMap, Layer, LayerBody};
use blockwise_core::value::postcard_decode;
use blockwise_core::{Error, Graph, Key, Name, Op, Result, Value, config};
use ndarray::{ArrayD, Axis, IxDyn};
use pulp::{Arch, Simd, WithSimd};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::chunks::Chunks;
use crate::creation::{BlockInfo, Constant, Fill, Generate, index_args};
use crate::element::{Number, for_each_number};
use crate::io::{PlainBlock, ZarrElement, ZarrRead};
use crate::kernel::{Kernel, op, register_kernel, value};
use crate::random::{Draws, Random, block_rng};
use crate::reduce::{Red, Reduce, SameFold, Stage, fold_same, same_fold};

/// The configuration key that turns the fusion off (`false`).
pub const FUSE_STREAMS_KEY: &str = "array.fuse-streams";

/// Bytes of one strip: with the partial it folds into, it stays in the L1
/// cache.
const STRIP_BYTES: usize = 16 << 10;

/// What makes the blocks a fused reduction reads: the producer's own kernel.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) enum Source<T: Number> {
    /// `random::uniform`, `standard_normal`, `integers`, …
    Random(Random<T>),
    /// `zeros`, `ones`, `arange`, `linspace`, `eye`.
    Generate(Generate<T>),
    /// `full`.
    Constant(Constant<T>),
    /// `from_zarr`.
    Zarr(ZarrRead<T>),
}

/// One block's elements in row-major order, a strip at a time.
enum Strips<'a, T: Number> {
    /// Boxed: a generator's state (sixteen lanes) is large beside the others.
    Draws(Box<Draws>),
    Fill {
        fill: &'a Fill<T>,
        info: &'a BlockInfo,
        at: usize,
    },
    Constant(T),
    Zarr(PlainBlock<T>),
}

impl<T: Number> Strips<'_, T> {
    /// Writes the block's next `out.len()` elements.
    fn fill(&mut self, out: &mut [T]) -> Result<()> {
        match self {
            Strips::Draws(d) => d.fill(out),
            Strips::Fill { fill, info, at } => {
                fill.fill_strip(info, *at, out);
                *at += out.len();
            }
            Strips::Constant(c) => out.fill(*c),
            Strips::Zarr(z) => z.fill(out)?,
        }
        Ok(())
    }
}

impl<T: Number + ZarrElement> Source<T> {
    fn chunks(&self) -> &Chunks {
        match self {
            Source::Random(k) => &k.chunks,
            Source::Generate(k) => &k.chunks,
            Source::Constant(k) => &k.chunks,
            Source::Zarr(k) => &k.chunks,
        }
    }

    /// The whole block, made by the producer's own kernel.
    fn block(&self, args: &[Value]) -> Result<Value> {
        match self {
            Source::Random(k) => k.call(args),
            Source::Generate(k) => k.call(args),
            Source::Constant(k) => k.call(args),
            Source::Zarr(k) => k.call(args),
        }
    }

    /// The block at `info` as strips, or `None` when only the whole block
    /// can be made.
    fn strips<'a>(&'a self, info: &'a BlockInfo) -> Result<Option<Strips<'a, T>>> {
        Ok(Some(match self {
            Source::Random(k) => Strips::Draws(Box::new(Draws::new(block_rng(k.seed, &info.index), k.dist))),
            Source::Generate(k) => Strips::Fill {
                fill: &k.fill,
                info,
                at: 0,
            },
            Source::Constant(k) => Strips::Constant(k.value),
            Source::Zarr(k) => match k.plain_block(info)? {
                Some(p) => Strips::Zarr(p),
                None => return Ok(None),
            },
        }))
    }
}

/// How the first fold of a reduction walks a block in row-major order, the
/// block seen as `outer × len × inner` with `len` the folded axis.
#[derive(Clone, Copy, Debug)]
enum Walk {
    /// `inner == 1`: lanes of `len` adjacent elements, one result each;
    /// `eight`: with eight interleaved accumulators and the tail after them
    /// (`fold_slice`), else one element after the other.
    Lanes { len: usize, eight: bool },
    /// `outer × inner` results, each folding `len` elements `inner` apart,
    /// in order (`fold_axis`).
    Columns { len: usize, inner: usize },
}

/// Folds `total` elements of `src` as `walk` says: `f` folds an element into
/// an accumulator, `g` merges the eight accumulators of a lane. Compiled for
/// the best instruction set of the CPU (chosen at run time through `pulp`,
/// as the random generator is): the folds are vector loops, and wider
/// vectors do not change what each accumulator adds, in which order.
fn fold_strips<T: Number, A: Copy>(
    src: &mut Strips<'_, T>,
    total: usize,
    walk: Walk,
    init: A,
    f: impl Fn(A, T) -> A + Copy,
    g: impl Fn(A, A) -> A + Copy,
) -> Result<Vec<A>> {
    Arch::new().dispatch(FoldStrips {
        src,
        total,
        walk,
        init,
        f,
        g,
    })
}

/// [`fold_strips`] as a `pulp` operation.
struct FoldStrips<'a, 'b, T: Number, A, F, G> {
    src: &'a mut Strips<'b, T>,
    total: usize,
    walk: Walk,
    init: A,
    f: F,
    g: G,
}

impl<T: Number, A: Copy, F: Fn(A, T) -> A + Copy, G: Fn(A, A) -> A + Copy> WithSimd for FoldStrips<'_, '_, T, A, F, G> {
    type Output = Result<Vec<A>>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Result<Vec<A>> {
        fold_strips_inline(self.src, self.total, self.walk, self.init, self.f, self.g)
    }
}

#[inline(always)]
fn fold_strips_inline<T: Number, A: Copy>(
    src: &mut Strips<'_, T>,
    total: usize,
    walk: Walk,
    init: A,
    f: impl Fn(A, T) -> A + Copy,
    g: impl Fn(A, A) -> A + Copy,
) -> Result<Vec<A>> {
    let mut strip = (STRIP_BYTES / T::SIZE).max(1);
    if let Walk::Columns { inner, .. } = walk
        && inner < strip
    {
        // Whole rows per strip.
        strip -= strip % inner;
    }
    let mut buf = vec![T::zero(); strip.min(total)];
    let mut done = 0;
    match walk {
        Walk::Columns { len, inner } => {
            let row = len * inner;
            let mut res = vec![init; total / row * inner];
            while done < total {
                let k = buf.len().min(total - done);
                src.fill(&mut buf[..k])?;
                let mut s = 0;
                while s < k {
                    let p = done + s;
                    let (o, i) = (p / row, p % inner);
                    let n = (inner - i).min(k - s);
                    let acc = &mut res[o * inner + i..o * inner + i + n];
                    for (r, &x) in acc.iter_mut().zip(&buf[s..s + n]) {
                        *r = f(*r, x);
                    }
                    s += n;
                }
                done += k;
            }
            Ok(res)
        }
        Walk::Lanes { len, eight: false } => {
            let mut res = Vec::with_capacity(total / len);
            let (mut acc, mut q) = (init, 0);
            while done < total {
                let k = buf.len().min(total - done);
                src.fill(&mut buf[..k])?;
                let mut s = 0;
                while s < k {
                    let n = (len - q).min(k - s);
                    acc = buf[s..s + n].iter().fold(acc, |a, &x| f(a, x));
                    (q, s) = (q + n, s + n);
                    if q == len {
                        res.push(acc);
                        (acc, q) = (init, 0);
                    }
                }
                done += k;
            }
            Ok(res)
        }
        Walk::Lanes { len, eight: true } => {
            let full = len - len % 8;
            let mut res = Vec::with_capacity(total / len);
            let (mut accs, mut lane_total, mut merged, mut q) = ([init; 8], init, false, 0);
            while done < total {
                let k = buf.len().min(total - done);
                src.fill(&mut buf[..k])?;
                let mut s = 0;
                while s < k {
                    let n = (len - q).min(k - s);
                    let mut seg = &buf[s..s + n];
                    s += n;
                    if q < full {
                        let (mut head, rest) = seg.split_at((full - q).min(seg.len()));
                        seg = rest;
                        while q % 8 != 0 && !head.is_empty() {
                            accs[q % 8] = f(accs[q % 8], head[0]);
                            (head, q) = (&head[1..], q + 1);
                        }
                        q += head.len();
                        let mut eights = head.chunks_exact(8);
                        for c in &mut eights {
                            for (a, &x) in accs.iter_mut().zip(c) {
                                *a = f(*a, x);
                            }
                        }
                        for (j, &x) in eights.remainder().iter().enumerate() {
                            accs[j] = f(accs[j], x);
                        }
                    }
                    if q == full && !merged {
                        lane_total = accs.iter().fold(init, |t, &a| g(t, a));
                        merged = true;
                    }
                    lane_total = seg.iter().fold(lane_total, |t, &x| f(t, x));
                    q += seg.len();
                    if q == len {
                        res.push(lane_total);
                        (accs, merged, q) = ([init; 8], false, 0);
                    }
                }
                done += k;
            }
            Ok(res)
        }
    }
}

/// A reduction's chunk stage fused with the producer of its blocks.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct StreamReduce<T: Number> {
    source: Source<T>,
    /// The chunk kernel it replaces (its reduction, axes and NaN handling).
    reduce: Reduce<T>,
}

impl<T: Number + ZarrElement> Kernel for StreamReduce<T> {
    const BASE: &'static str = "array.stream-reduce";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let info = BlockInfo::from_args(self.source.chunks(), args)?;
        if !info.shape.is_empty()
            && !info.shape.contains(&0)
            && let Some(mut strips) = self.source.strips(&info)?
        {
            return self.fold(&mut strips, &info.shape);
        }
        let block = self.source.block(args)?;
        self.reduce.call(&[block])
    }
}

macro_rules! reg_stream {
    ($t:ident) => {
        register_kernel!(StreamReduce, "array.stream-reduce", $t);
    };
}
for_each_number!(reg_stream);

/// The block seen along the largest reduced axis.
struct Geometry {
    shape: Vec<usize>,
    /// Reduced axes, sorted.
    axes: Vec<usize>,
    /// The largest reduced axis.
    axis: usize,
    total: usize,
    len: usize,
    inner: usize,
}

impl Geometry {
    fn new(shape: &[usize], axes: &[usize]) -> Result<Self> {
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        let axis = match axes.last() {
            Some(&a) if a < shape.len() => a,
            _ => {
                return Err(Error::graph(format!(
                    "a streaming reduction over axes {axes:?} got a block of shape {shape:?}"
                )));
            }
        };
        Ok(Geometry {
            shape: shape.to_vec(),
            total: shape.iter().product(),
            len: shape[axis],
            inner: shape[axis + 1..].iter().product(),
            axes,
            axis,
        })
    }

    /// The walk of the first fold (lanes when the axis is contiguous).
    fn walk(&self, eight: bool) -> Walk {
        if self.inner == 1 && self.len > 1 {
            Walk::Lanes { len: self.len, eight }
        } else {
            Walk::Columns {
                len: self.len,
                inner: self.inner,
            }
        }
    }

    /// The first fold's results as an array with the folded axis kept
    /// (length 1), then folded over the other reduced axes with `g`.
    fn finish<A: Clone>(&self, first: Vec<A>, init: A, g: impl Fn(A, A) -> A + Copy) -> Result<ArrayD<A>> {
        let mut kept = self.shape.clone();
        kept.remove(self.axis);
        let a = ArrayD::from_shape_vec(IxDyn(&kept), first)
            .map_err(|e| Error::graph(format!("a streaming reduction's partial: {e}")))?
            .insert_axis(Axis(self.axis));
        let rest = &self.axes[..self.axes.len() - 1];
        Ok(if rest.is_empty() {
            a
        } else {
            fold_same(a.view(), rest, init, g)
        })
    }
}

impl<T: Number> StreamReduce<T> {
    /// The partial of one block, folded strip by strip (see the module docs).
    fn fold(&self, src: &mut Strips<'_, T>, shape: &[usize]) -> Result<Value> {
        let geo = Geometry::new(shape, &self.reduce.axes)?;
        let skip = self.reduce.skipna;
        match self.reduce.red {
            Red::Sum | Red::Prod | Red::Min | Red::Max => {
                struct Strip<'s, 'a, T: Number>(&'s mut Strips<'a, T>, &'s Geometry);
                impl<T: Number> SameFold<T> for Strip<'_, '_, T> {
                    type Out = Result<Value>;
                    fn fold(self, init: T, step: impl Fn(T, T) -> T + Copy) -> Result<Value> {
                        fold_op(self.0, self.1, init, step)
                    }
                }
                same_fold(self.reduce.red, skip, Strip(src, &geo))
                    .unwrap_or_else(|| Err(Error::graph("sum, prod, min or max without its fold")))
            }
            Red::Mean => fold_mean(src, &geo, skip),
            Red::Var { .. } | Red::ArgMin | Red::ArgMax => Err(Error::graph(
                "a streaming reduction was built for a reduction it does not stream",
            )),
        }
    }
}

/// sum/prod/min/max: `fold_same` of the unfused chunk kernel, strip by strip.
fn fold_op<T: Number>(src: &mut Strips<'_, T>, geo: &Geometry, init: T, f: impl Fn(T, T) -> T + Copy) -> Result<Value> {
    if geo.axes.len() == geo.shape.len() {
        // Every axis: one pass over the whole block, as one lane.
        let walk = Walk::Lanes {
            len: geo.total,
            eight: true,
        };
        let v = fold_strips(src, geo.total, walk, init, f, f)?;
        return Ok(value(ArrayD::from_elem(IxDyn(&vec![1; geo.shape.len()]), v[0])));
    }
    let first = fold_strips(src, geo.total, geo.walk(true), init, f, f)?;
    Ok(value(geo.finish(first, init, f)?))
}

/// mean: the `(count, sum)` partial of the unfused chunk kernel (`f64`
/// sums, one after the other along the first axis), strip by strip.
fn fold_mean<T: Number>(src: &mut Strips<'_, T>, geo: &Geometry, skip: bool) -> Result<Value> {
    let walk = geo.walk(false);
    let add = |p: f64, q: f64| p + q;
    let (sum, count) = if skip {
        let pairs = fold_strips(
            src,
            geo.total,
            walk,
            (0.0f64, 0.0f64),
            |(s, c), v: T| {
                if v.is_nan_value() {
                    (s, c)
                } else {
                    (s + v.to_f64(), c + 1.0)
                }
            },
            |a, _| a,
        )?;
        let (s, c): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
        (geo.finish(s, 0.0, add)?, Some(geo.finish(c, 0.0, add)?))
    } else {
        let s = fold_strips(src, geo.total, walk, 0.0f64, |s, v: T| s + v.to_f64(), |a, _| a)?;
        (geo.finish(s, 0.0, add)?, None)
    };
    let count = count.unwrap_or_else(|| {
        let n: usize = geo.axes.iter().map(|&a| geo.shape[a]).product();
        ArrayD::from_elem(sum.raw_dim(), n as f64)
    });
    Ok(value(
        ndarray::stack(Axis(0), &[count.view(), sum.view()]).expect("equal shapes"),
    ))
}

/// Rewrites `graph` so that every reduction chunk layer reading a
/// streamable producer that nothing else reads — no other layer, and none
/// of `outputs` — does both in one task (see the module docs). Returns the
/// graph as it is when nothing changes or when `array.fuse-streams` is not
/// `true` (missing means `true`; a value that is not a boolean leaves the
/// graph as it is).
pub(crate) fn fuse_streams(graph: &Graph, outputs: &[Key]) -> Graph {
    if !config::get_bool(FUSE_STREAMS_KEY, true).unwrap_or(false) {
        return graph.clone();
    }
    let layers = graph.layers();
    let mut readers: HashMap<*const Layer, usize> = HashMap::new();
    for layer in &layers {
        for dep in layer.deps() {
            *readers.entry(Arc::as_ptr(dep)).or_default() += 1;
        }
    }
    // A layer whose blocks are asked for is read by whoever asked.
    let asked: std::collections::HashSet<&Name> = outputs.iter().map(|k| &k.name).collect();
    for layer in &layers {
        if asked.contains(layer.name()) {
            *readers.entry(Arc::as_ptr(layer)).or_default() += 1;
        }
    }
    let mut rewritten: HashMap<*const Layer, Arc<Layer>> = HashMap::new();
    for layer in &layers {
        let new = fused_layer(layer, &readers).or_else(|| {
            let deps = layer.deps();
            deps.iter().any(|d| rewritten.contains_key(&Arc::as_ptr(d))).then(|| {
                let deps = deps
                    .iter()
                    .map(|d| rewritten.get(&Arc::as_ptr(d)).unwrap_or(d).clone())
                    .collect();
                Layer::new(layer.name().clone(), deps, layer.body().clone())
            })
        });
        if let Some(new) = new {
            rewritten.insert(Arc::as_ptr(layer), new);
        }
    }
    if rewritten.is_empty() {
        return graph.clone();
    }
    let mut out = Graph::new();
    for root in graph.roots() {
        out.add_layer(rewritten.get(&Arc::as_ptr(root)).unwrap_or(root).clone());
    }
    out
}

/// The fused replacement of `layer`, when it is a reduction's chunk layer
/// reading, block for block, a streamable producer read by nothing else.
fn fused_layer(layer: &Arc<Layer>, readers: &HashMap<*const Layer, usize>) -> Option<Arc<Layer>> {
    let LayerBody::Blockwise(chunk) = layer.body() else {
        return None;
    };
    let dtype = chunk.op.name().strip_prefix("array.reduce.")?;
    let [source] = layer.deps() else {
        return None;
    };
    if readers.get(&Arc::as_ptr(source)) != Some(&1) {
        return None;
    }
    let LayerBody::Blockwise(producer) = source.body() else {
        return None;
    };
    let ndim = chunk.grid.len();
    let [BlockArg::Block { name, map }] = chunk.args.as_slice() else {
        return None;
    };
    let same_block = name == source.name()
        && map.len() == ndim
        && map.iter().enumerate().all(|(i, m)| *m == IndexMap::Axis(i as u32));
    let by_index = producer.grid == chunk.grid
        && producer.args.len() == ndim
        && producer
            .args
            .iter()
            .enumerate()
            .all(|(i, a)| matches!(a, BlockArg::BlockIndex(x) if *x == i as u32));
    if !same_block || !by_index {
        return None;
    }
    let op = match dtype {
        "f64" => fused_op::<f64>(&*chunk.op, &*producer.op),
        "f32" => fused_op::<f32>(&*chunk.op, &*producer.op),
        "i64" => fused_op::<i64>(&*chunk.op, &*producer.op),
        "i32" => fused_op::<i32>(&*chunk.op, &*producer.op),
        "u8" => fused_op::<u8>(&*chunk.op, &*producer.op),
        _ => None,
    }?;
    let body = LayerBody::Blockwise(Box::new(Blockwise {
        op,
        grid: chunk.grid.clone(),
        args: index_args(ndim),
    }));
    Some(Layer::new(layer.name().clone(), vec![], body))
}

/// A registered op's parameters decoded as kernel `K`.
fn params<K: DeserializeOwned>(op: &dyn Op) -> Option<K> {
    let mut bytes = Vec::new();
    op.encode_params(&mut bytes).ok()?;
    postcard_decode(&bytes).ok()
}

/// The fused op of a chunk op and a producer op over elements `T`, when the
/// reduction streams and the producer is one that can.
fn fused_op<T: Number + ZarrElement>(chunk: &dyn Op, producer: &dyn Op) -> Option<Arc<dyn Op>> {
    let reduce: Reduce<T> = params(chunk)?;
    let streams = matches!(reduce.stage, Stage::Chunk { chunks: None })
        && !reduce.flat
        && !reduce.axes.is_empty()
        && matches!(reduce.red, Red::Sum | Red::Prod | Red::Min | Red::Max | Red::Mean);
    if !streams {
        return None;
    }
    let (base, dtype) = producer.name().rsplit_once('.')?;
    if dtype != T::DTYPE_NAME {
        return None;
    }
    let source = match base {
        "array.random" => Source::Random(params(producer)?),
        "array.generate" => Source::Generate(params(producer)?),
        "array.constant" => Source::Constant(params(producer)?),
        "array.zarr-read" => Source::Zarr(params(producer)?),
        _ => return None,
    };
    Some(op(StreamReduce { source, reduce }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{Distribution, draw};

    /// Every walk, strip size and axis set gives the unfused chunk kernel's
    /// partial bit for bit.
    #[test]
    fn streamed_partials_equal_the_unfused_kernel() {
        let dist = Distribution::Normal { mean: 1.0, std: 3.0 };
        for shape in [
            vec![7usize],
            vec![37],
            vec![5, 9],
            vec![9, 1],
            vec![1, 17],
            vec![3, 4, 11],
            vec![2, 1, 3, 20],
        ] {
            let ndim = shape.len();
            let n: usize = shape.iter().product();
            let rng = block_rng(5, &[1, 2]);
            let data: Vec<f64> = draw(&mut rng.clone(), dist, n);
            let block = ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap();
            let axis_sets: Vec<Vec<usize>> = (1u32..(1 << ndim))
                .map(|m| (0..ndim).filter(|a| m & (1 << a) != 0).collect())
                .collect();
            for axes in axis_sets {
                for red in [Red::Sum, Red::Prod, Red::Min, Red::Max, Red::Mean] {
                    for skipna in [false, true] {
                        let reduce = Reduce::<f64> {
                            red,
                            skipna,
                            axes: axes.clone(),
                            flat: false,
                            stage: Stage::Chunk { chunks: None },
                            _type: std::marker::PhantomData,
                        };
                        let want = reduce.call(&[value(block.clone())]).unwrap();
                        let fused = StreamReduce {
                            source: Source::Constant(Constant {
                                chunks: Chunks::from_checked(shape.iter().map(|&d| vec![d]).collect()),
                                value: 0.0,
                            }),
                            reduce,
                        };
                        let mut strips = Strips::Draws(Box::new(Draws::new(rng.clone(), dist)));
                        let got = fused.fold(&mut strips, &shape).unwrap();
                        let (w, g) = (
                            want.downcast_ref::<ArrayD<f64>>().unwrap(),
                            got.downcast_ref::<ArrayD<f64>>().unwrap(),
                        );
                        assert_eq!(w.shape(), g.shape(), "{shape:?} {axes:?} {red:?}");
                        let same = w.iter().zip(g.iter()).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{shape:?} {axes:?} {red:?} skipna={skipna}: {w} vs {g}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_fill_streams_the_block_it_builds() {
        let chunks = Chunks::from_checked(vec![vec![4, 3], vec![5, 2]]);
        let info = BlockInfo::of(&chunks, &[1, 0]);
        let fill: Fill<f64> = Fill::Eye { k: -1 };
        let mut whole = vec![0.0; 15];
        fill.fill_strip(&info, 0, &mut whole);
        let mut strips = Strips::Fill {
            fill: &fill,
            info: &info,
            at: 0,
        };
        let mut pieces = Vec::new();
        for k in [4usize, 1, 7, 3] {
            let mut p = vec![0.0; k];
            strips.fill(&mut p).unwrap();
            pieces.extend(p);
        }
        assert_eq!(pieces, whole);
    }
}
