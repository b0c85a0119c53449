//! Reductions as tree reductions: sum, prod, mean, var/std, min, max,
//! argmin/argmax, any/all, and their NaN-skipping variants.
//!
//! A reduction runs in three stages, as Dask's `reduction`:
//!
//! 1. **chunk**: every block is reduced over the reduction axes, keeping
//!    them as length-1 axes, into a *partial* (one generated layer). When the
//!    block comes from a producer that can stream it (random, constants,
//!    ranges, an uncompressed Zarr chunk) and nothing else reads it, the
//!    graph handed to the scheduler does both in one task that folds strips
//!    as they are drawn or read, never storing the block
//!    ([`crate::stream`]);
//! 2. **combine**: partials are merged in groups of `split_every` (per axis
//!    `split_every^(1/k)` for `k` reduced axes, at least 2) until one group
//!    is left along every reduced axis;
//! 3. **aggregate**: the last group is merged and finished (a mean divides,
//!    a variance applies `ddof`), and the reduced axes are dropped unless
//!    `keepdims`.
//!
//! Partials are plain task values: the block reduced with its own op for
//! sum/prod/min/max; `(count, sum)` for means and `(count, mean, M2)` for
//! variances, stacked on a leading axis of an `ArrayD<f64>`, merged with
//! Chan's parallel formula so variances stay accurate on data far from 0;
//! `(value, index)` pairs for argmin/argmax, with global indices, ties going
//! to the first occurrence as in NumPy.
//!
//! NaN: `sum`, `mean`, `min`… propagate NaN as NumPy does; the `nan*`
//! variants skip it. An all-NaN slice gives NaN for `nanmin`/`nanmax`/
//! `nanmean` and is an error for `nanargmin`/`nanargmax` (NumPy raises too).

use std::sync::Arc;

use blockwise_core::graph::{BlockArg, IndexMap, Input, Task};
use blockwise_core::value::Tuple;
use blockwise_core::{Error, Op, Result, Tokenizer, Value, config};
use ndarray::{ArrayD, ArrayViewD, Axis, Dimension, IxDyn, Zip};
use serde::{Deserialize, Serialize};

use crate::array::{Array, Meta, blockwise_layer, check_axis};
use crate::chunks::{Chunks, grid_indices};
use crate::creation::BlockInfo;
use crate::element::{Element, Number, for_each_number};
use crate::kernel::{Kernel, arg, block, index_arg, op, register_kernel, value};
use crate::shape::tasks_layer;

/// Which axes a reduction runs over, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reduction {
    axes: Option<Vec<usize>>,
    keepdims: bool,
    split_every: Option<usize>,
    ddof: usize,
}

impl Reduction {
    /// Over every axis.
    pub fn all() -> Self {
        Reduction::default()
    }

    /// Over one axis.
    pub fn axis(axis: usize) -> Self {
        Reduction {
            axes: Some(vec![axis]),
            ..Default::default()
        }
    }

    /// Over these axes.
    pub fn axes(axes: &[usize]) -> Self {
        Reduction {
            axes: Some(axes.to_vec()),
            ..Default::default()
        }
    }

    /// Keep the reduced axes as axes of length 1.
    pub fn keepdims(mut self, keep: bool) -> Self {
        self.keepdims = keep;
        self
    }

    /// How many partials one combine task merges (default: configuration
    /// `array.split-every`, else 16).
    pub fn split_every(mut self, n: usize) -> Self {
        self.split_every = Some(n);
        self
    }

    /// Delta degrees of freedom of `var`/`std`: the divisor is `n - ddof`.
    pub fn ddof(mut self, ddof: usize) -> Self {
        self.ddof = ddof;
        self
    }

    fn resolve_axes(&self, ndim: usize, what: &str) -> Result<Vec<usize>> {
        let mut axes = match &self.axes {
            None => (0..ndim).collect(),
            Some(a) => a.clone(),
        };
        for &a in &axes {
            check_axis(a, ndim, what)?;
        }
        axes.sort_unstable();
        let before = axes.len();
        axes.dedup();
        if axes.len() != before {
            return Err(Error::invalid(format!(
                "{what}: an axis is repeated in {:?}",
                self.axes
            )));
        }
        Ok(axes)
    }

    fn fan_in(&self, axes: usize) -> Result<usize> {
        let total = match self.split_every {
            Some(n) => n,
            None => config::get_usize("array.split-every")?.unwrap_or(16),
        };
        if total < 2 {
            return Err(Error::invalid(format!("split_every is {total}; it must be at least 2")));
        }
        let per_axis = (total as f64).powf(1.0 / axes.max(1) as f64).floor() as usize;
        Ok(per_axis.max(2))
    }
}

impl From<usize> for Reduction {
    fn from(axis: usize) -> Self {
        Reduction::axis(axis)
    }
}

/// What is reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Red {
    Sum,
    Prod,
    Min,
    Max,
    Mean,
    Var { ddof: usize, sqrt: bool },
    ArgMin,
    ArgMax,
}

/// The stage of a tree reduction a task runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Stage {
    /// Reduce one block into a partial; arg reductions get the block index
    /// (one `BlockIndex` argument per axis after the block) and the chunks.
    Chunk { chunks: Option<Chunks> },
    /// Merge partials into one.
    Combine,
    /// Merge and finish; drop the reduced axes unless `keepdims`.
    Aggregate { keepdims: bool },
}

/// A tree-reduction task over numbers.
#[derive(Serialize, Deserialize)]
pub(crate) struct Reduce<T> {
    pub(crate) red: Red,
    pub(crate) skipna: bool,
    pub(crate) axes: Vec<usize>,
    /// For arg reductions over every axis: the flat index is global.
    pub(crate) flat: bool,
    pub(crate) stage: Stage,
    #[serde(skip)]
    pub(crate) _type: std::marker::PhantomData<fn() -> T>,
}

/// Folds `a` over `axes` with an op on its own element type, keeping axes.
pub(crate) fn fold_same<A: Clone>(
    a: ArrayViewD<'_, A>,
    axes: &[usize],
    init: A,
    f: impl Fn(A, A) -> A + Copy,
) -> ArrayD<A> {
    let mut axes = axes.to_vec();
    axes.sort_unstable();
    axes.dedup();
    // Every axis of a contiguous block: one pass over memory.
    if axes.len() == a.ndim()
        && !axes.is_empty()
        && let Some(slice) = a.as_slice_memory_order()
    {
        return ArrayD::from_elem(IxDyn(&vec![1; a.ndim()]), fold_slice(slice, init, f));
    }
    let mut acc: Option<ArrayD<A>> = None;
    for &ax in axes.iter().rev() {
        let next = match &acc {
            None => fold_axis_fast(a.view(), ax, init.clone(), f),
            Some(prev) => fold_axis_fast(prev.view(), ax, init.clone(), f),
        };
        acc = Some(next.insert_axis(Axis(ax)));
    }
    acc.unwrap_or_else(|| a.to_owned())
}

/// Folds a slice with eight independent accumulators (the op is
/// associative: sum, product, min, max, and, or), so the loop is not one
/// long dependency chain; for floats this is also a more accurate sum.
fn fold_slice<A: Clone>(s: &[A], init: A, f: impl Fn(A, A) -> A + Copy) -> A {
    const LANES: usize = 8;
    let mut accs: Vec<A> = vec![init.clone(); LANES];
    let chunks = s.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (acc, x) in accs.iter_mut().zip(c) {
            *acc = f(acc.clone(), x.clone());
        }
    }
    let mut total = init;
    for acc in accs {
        total = f(total, acc);
    }
    for x in rest {
        total = f(total, x.clone());
    }
    total
}

/// Folds one axis: along contiguous lanes when the axis is the innermost
/// one (a cache-friendly pass), else row by row (`fold_axis`).
fn fold_axis_fast<A: Clone>(a: ArrayViewD<'_, A>, ax: usize, init: A, f: impl Fn(A, A) -> A + Copy) -> ArrayD<A> {
    if a.strides().get(ax) == Some(&1) && a.len_of(Axis(ax)) > 1 {
        a.map_axis(Axis(ax), |lane| match lane.as_slice() {
            Some(s) => fold_slice(s, init.clone(), f),
            None => lane.iter().fold(init.clone(), |x, y| f(x, y.clone())),
        })
    } else {
        a.fold_axis(Axis(ax), init.clone(), |x, y| f(x.clone(), y.clone()))
    }
}

/// Elementwise merge of equally shaped partials.
fn merge_same<A: Element>(parts: &[Value], f: impl Fn(A, A) -> A) -> Result<ArrayD<A>> {
    let first = block::<A>(
        parts
            .first()
            .ok_or_else(|| Error::graph("a reduction merged no partials"))?,
    )?;
    let mut acc = first.into_owned();
    for p in &parts[1..] {
        let b = block::<A>(p)?;
        if b.shape() != acc.shape() {
            return Err(Error::graph(format!(
                "partials of shapes {:?} and {:?} cannot be merged",
                acc.shape(),
                b.shape()
            )));
        }
        acc.zip_mut_with(&*b, |x, &y| *x = f(*x, y));
    }
    Ok(acc)
}

/// Removes length-1 `axes` (sorted) from an array.
fn drop_axes<A>(mut a: ArrayD<A>, axes: &[usize]) -> ArrayD<A> {
    for &ax in axes.iter().rev() {
        a = a.index_axis_move(Axis(ax), 0);
    }
    a
}

/// A fold over a block with a start value and a step, as sum, prod, min
/// and max make their partials ([`same_fold`]).
pub(crate) trait SameFold<T: Number> {
    type Out;
    fn fold(self, init: T, step: impl Fn(T, T) -> T + Copy) -> Self::Out;
}

/// Runs `fold` with the start value and step of `red` (sum, prod, min or
/// max; `None` for the others), NaNs skipped when `skip`. The stored and
/// the streamed chunk kernels ([`crate::stream`]) both take them from here,
/// so their partials stay equal bit for bit.
pub(crate) fn same_fold<T: Number, F: SameFold<T>>(red: Red, skip: bool, fold: F) -> Option<F::Out> {
    let nan_or = |v: T| if T::HAS_NAN && skip { T::from_f64(f64::NAN) } else { v };
    Some(match red {
        Red::Sum if skip => fold.fold(T::zero(), |x: T, y: T| if y.is_nan_value() { x } else { x.add(y) }),
        Red::Sum => fold.fold(T::zero(), T::add),
        Red::Prod if skip => fold.fold(T::one(), |x: T, y: T| if y.is_nan_value() { x } else { x.mul(y) }),
        Red::Prod => fold.fold(T::one(), T::mul),
        Red::Min => fold.fold(nan_or(T::max_value()), nan_aware_min::<T>(skip)),
        Red::Max => fold.fold(nan_or(T::min_value()), nan_aware_max::<T>(skip)),
        Red::Mean | Red::Var { .. } | Red::ArgMin | Red::ArgMax => return None,
    })
}

pub(crate) fn nan_aware_min<T: Number>(skipna: bool) -> impl Fn(T, T) -> T + Copy {
    move |a: T, b: T| {
        if skipna {
            if a.is_nan_value() {
                b
            } else if b.is_nan_value() || a <= b {
                a
            } else {
                b
            }
        } else {
            a.minimum(b)
        }
    }
}

pub(crate) fn nan_aware_max<T: Number>(skipna: bool) -> impl Fn(T, T) -> T + Copy {
    move |a: T, b: T| {
        if skipna {
            if a.is_nan_value() {
                b
            } else if b.is_nan_value() || a >= b {
                a
            } else {
                b
            }
        } else {
            a.maximum(b)
        }
    }
}

/// `(count, sum)` or `(count, mean, M2)` partials stacked on axis 0.
fn moments<T: Number>(a: &ArrayD<T>, axes: &[usize], skipna: bool, second: bool) -> ArrayD<f64> {
    let valid = move |v: T| !(skipna && v.is_nan_value());
    let sum = if skipna {
        fold_to_f64(a, axes, move |acc, v| if valid(v) { acc + v.to_f64() } else { acc })
    } else {
        fold_to_f64(a, axes, |acc, v| acc + v.to_f64())
    };
    let count = if skipna {
        fold_to_f64(a, axes, move |acc, v| if valid(v) { acc + 1.0 } else { acc })
    } else {
        let n: usize = axes.iter().map(|&ax| a.len_of(Axis(ax))).product();
        ArrayD::from_elem(sum.raw_dim(), n as f64)
    };
    if !second {
        return ndarray::stack(Axis(0), &[count.view(), sum.view()]).expect("equal shapes");
    }
    let mean = Zip::from(&sum)
        .and(&count)
        .map_collect(|&s, &c| if c > 0.0 { s / c } else { 0.0 });
    let dev = Zip::from(a).and_broadcast(&mean).map_collect(|&v, &m| {
        if valid(v) {
            let d = v.to_f64() - m;
            d * d
        } else {
            0.0
        }
    });
    let m2 = fold_same(dev.view(), axes, 0.0, |p, q| p + q);
    ndarray::stack(Axis(0), &[count.view(), mean.view(), m2.view()]).expect("equal shapes")
}

/// Folds numbers into f64 accumulators over `axes` (kept as length 1):
/// `f` along the last axis, then sums along the others.
fn fold_to_f64<T: Number>(a: &ArrayD<T>, axes: &[usize], f: impl Fn(f64, T) -> f64 + Copy) -> ArrayD<f64> {
    let mut axes = axes.to_vec();
    axes.sort_unstable();
    let Some((&first, rest)) = axes.split_last() else {
        return a.mapv(|v| f(0.0, v));
    };
    let acc = if a.strides().get(first) == Some(&1) && a.len_of(Axis(first)) > 1 {
        a.map_axis(Axis(first), |lane| lane.iter().fold(0.0f64, |acc, &v| f(acc, v)))
    } else {
        a.fold_axis(Axis(first), 0.0f64, |acc, &v| f(*acc, v))
    }
    .insert_axis(Axis(first));
    if rest.is_empty() {
        return acc;
    }
    fold_same(acc.view(), rest, 0.0, |p, q| p + q)
}

/// Chan et al.'s merge of `(count, mean, M2)` partials.
fn merge_moments(parts: &[Value], second: bool) -> Result<ArrayD<f64>> {
    if !second {
        return merge_same::<f64>(parts, |a, b| a + b);
    }
    let first = block::<f64>(
        parts
            .first()
            .ok_or_else(|| Error::graph("a variance merged no partials"))?,
    )?;
    let mut acc = first.into_owned();
    for p in &parts[1..] {
        let b = block::<f64>(p)?;
        if b.shape() != acc.shape() {
            return Err(Error::graph("variance partials of different shapes"));
        }
        let mut it = acc.outer_iter_mut();
        let (mut na, mut ma, mut qa) = (
            it.next().expect("count row"),
            it.next().expect("mean row"),
            it.next().expect("M2 row"),
        );
        let (nb, mb, qb) = (
            b.index_axis(Axis(0), 0),
            b.index_axis(Axis(0), 1),
            b.index_axis(Axis(0), 2),
        );
        Zip::from(&mut na)
            .and(&mut ma)
            .and(&mut qa)
            .and(&nb)
            .and(&mb)
            .and(&qb)
            .for_each(|na, ma, qa, &nb, &mb, &qb| {
                if nb == 0.0 {
                    return;
                }
                if *na == 0.0 {
                    (*na, *ma, *qa) = (nb, mb, qb);
                    return;
                }
                let n = *na + nb;
                let delta = mb - *ma;
                *ma += delta * nb / n;
                *qa += qb + delta * delta * *na * nb / n;
                *na = n;
            });
    }
    Ok(acc)
}

/// `(values, indices)` of an arg reduction over one block.
fn arg_chunk<T: Number>(
    a: &ArrayD<T>,
    axes: &[usize],
    flat: bool,
    info: &BlockInfo,
    is_min: bool,
    skipna: bool,
) -> Result<(ArrayD<T>, ArrayD<i64>)> {
    let better = arg_better::<T>(is_min, skipna);
    if flat {
        let strides = {
            let mut s = vec![1i64; info.array_shape.len()];
            for d in (0..s.len().saturating_sub(1)).rev() {
                s[d] = s[d + 1] * info.array_shape[d + 1] as i64;
            }
            s
        };
        let mut best: Option<(T, i64)> = None;
        for (idx, &v) in a.indexed_iter() {
            let g: i64 = idx
                .slice()
                .iter()
                .enumerate()
                .map(|(d, &i)| (info.offset[d] + i) as i64 * strides[d])
                .sum();
            best = Some(match best {
                None => start_arg(v, g, skipna),
                Some(cur) => better(cur, (v, g)),
            });
        }
        let (v, i) = best.unwrap_or((T::zero(), -1));
        let keep = vec![1usize; a.ndim()];
        return Ok((ArrayD::from_elem(IxDyn(&keep), v), ArrayD::from_elem(IxDyn(&keep), i)));
    }
    let ax = axes[0];
    let off = info.offset[ax] as i64;
    let mut vals = Vec::new();
    let mut idxs = Vec::new();
    for lane in a.lanes(Axis(ax)) {
        let mut best: Option<(T, i64)> = None;
        for (i, &v) in lane.iter().enumerate() {
            let g = off + i as i64;
            best = Some(match best {
                None => start_arg(v, g, skipna),
                Some(cur) => better(cur, (v, g)),
            });
        }
        let (v, i) = best.unwrap_or((T::zero(), -1));
        vals.push(v);
        idxs.push(i);
    }
    let mut keep = a.shape().to_vec();
    keep[ax] = 1;
    let v = ArrayD::from_shape_vec(IxDyn(&keep), vals).map_err(|e| Error::graph(e.to_string()))?;
    let i = ArrayD::from_shape_vec(IxDyn(&keep), idxs).map_err(|e| Error::graph(e.to_string()))?;
    Ok((v, i))
}

/// The first candidate of an arg reduction: a NaN counts as "no value"
/// (index −1) when skipping NaNs.
fn start_arg<T: Number>(v: T, g: i64, skipna: bool) -> (T, i64) {
    if skipna && v.is_nan_value() { (v, -1) } else { (v, g) }
}

/// Which of two `(value, global index)` candidates wins.
fn arg_better<T: Number>(is_min: bool, skipna: bool) -> impl Fn((T, i64), (T, i64)) -> (T, i64) + Copy {
    move |a: (T, i64), b: (T, i64)| {
        let (av, ai) = a;
        let (bv, bi) = b;
        if skipna {
            if bi < 0 || (skipna && bv.is_nan_value()) {
                return a;
            }
            if ai < 0 {
                return b;
            }
        } else {
            match (av.is_nan_value(), bv.is_nan_value()) {
                (true, true) => return if bi < ai { b } else { a },
                (true, false) => return a,
                (false, true) => return b,
                _ => {}
            }
        }
        let wins = if is_min { bv < av } else { bv > av };
        if wins || (bv == av && bi < ai) { b } else { a }
    }
}

fn arg_parts<T: Number>(v: &Value) -> Result<(ArrayD<T>, ArrayD<i64>)> {
    let t = v
        .downcast_ref::<Tuple>()
        .cloned()
        .map(Ok)
        .unwrap_or_else(|| <Tuple as blockwise_core::FromValue>::from_value(v))?;
    if t.0.len() != 2 {
        return Err(Error::graph("an arg-reduction partial is not a (values, indices) pair"));
    }
    Ok((block::<T>(&t.0[0])?.into_owned(), block::<i64>(&t.0[1])?.into_owned()))
}

impl<T: Number> Reduce<T> {
    fn chunk(&self, args: &[Value]) -> Result<Value> {
        let a = block::<T>(arg(args, 0, Self::BASE)?)?;
        let skip = self.skipna;
        Ok(match self.red {
            Red::Sum | Red::Prod | Red::Min | Red::Max => {
                struct Whole<'a, T>(ArrayViewD<'a, T>, &'a [usize]);
                impl<T: Number> SameFold<T> for Whole<'_, T> {
                    type Out = ArrayD<T>;
                    fn fold(self, init: T, step: impl Fn(T, T) -> T + Copy) -> ArrayD<T> {
                        fold_same(self.0, self.1, init, step)
                    }
                }
                match same_fold(self.red, skip, Whole(a.view(), &self.axes)) {
                    Some(folded) => value(folded),
                    None => return Err(Error::graph("sum, prod, min or max without its fold")),
                }
            }
            Red::Mean => value(moments(&a, &self.axes, skip, false)),
            Red::Var { .. } => value(moments(&a, &self.axes, skip, true)),
            Red::ArgMin | Red::ArgMax => {
                let Stage::Chunk { chunks: Some(chunks) } = &self.stage else {
                    return Err(Error::graph("an arg reduction's chunk stage needs the array's chunks"));
                };
                let index = args[1..].iter().map(index_arg).collect::<Result<Vec<_>>>()?;
                let info = BlockInfo::of(chunks, &index);
                let (v, i) = arg_chunk(&a, &self.axes, self.flat, &info, self.red == Red::ArgMin, skip)?;
                Arc::new(Tuple(vec![value(v), value(i)]))
            }
        })
    }

    fn merge(&self, parts: &[Value]) -> Result<Value> {
        let skip = self.skipna;
        Ok(match self.red {
            Red::Sum => value(merge_same::<T>(parts, T::add)?),
            Red::Prod => value(merge_same::<T>(parts, T::mul)?),
            Red::Min => value(merge_same::<T>(parts, nan_aware_min::<T>(skip))?),
            Red::Max => value(merge_same::<T>(parts, nan_aware_max::<T>(skip))?),
            Red::Mean => value(merge_moments(parts, false)?),
            Red::Var { .. } => value(merge_moments(parts, true)?),
            Red::ArgMin | Red::ArgMax => {
                let better = arg_better::<T>(self.red == Red::ArgMin, skip);
                let (mut vals, mut idxs) = arg_parts::<T>(parts.first().ok_or_else(|| Error::graph("no partials"))?)?;
                for p in &parts[1..] {
                    let (v, i) = arg_parts::<T>(p)?;
                    Zip::from(&mut vals)
                        .and(&mut idxs)
                        .and(&v)
                        .and(&i)
                        .for_each(|av, ai, &bv, &bi| {
                            (*av, *ai) = better((*av, *ai), (bv, bi));
                        });
                }
                Arc::new(Tuple(vec![value(vals), value(idxs)]))
            }
        })
    }

    fn finish(&self, merged: Value, keepdims: bool) -> Result<Value> {
        let fin = |a: ArrayD<f64>| if keepdims { a } else { drop_axes(a, &self.axes) };
        Ok(match self.red {
            Red::Sum | Red::Prod | Red::Min | Red::Max => {
                let a = block::<T>(&merged)?.into_owned();
                value(if keepdims { a } else { drop_axes(a, &self.axes) })
            }
            Red::Mean => {
                let m = block::<f64>(&merged)?;
                let (n, s) = (m.index_axis(Axis(0), 0), m.index_axis(Axis(0), 1));
                value(fin(Zip::from(&n).and(&s).map_collect(|&n, &s| s / n)))
            }
            Red::Var { ddof, sqrt } => {
                let m = block::<f64>(&merged)?;
                let (n, q) = (m.index_axis(Axis(0), 0), m.index_axis(Axis(0), 2));
                let d = ddof as f64;
                value(fin(Zip::from(&n).and(&q).map_collect(|&n, &q| {
                    let v = if n - d > 0.0 { q / (n - d) } else { f64::NAN };
                    if sqrt { v.sqrt() } else { v }
                })))
            }
            Red::ArgMin | Red::ArgMax => {
                let (_, idx) = arg_parts::<T>(&merged)?;
                if idx.iter().any(|&i| i < 0) {
                    return Err(Error::invalid(
                        "nanargmin/nanargmax: a slice holds only NaN, so it has no position to return",
                    ));
                }
                value(if keepdims { idx } else { drop_axes(idx, &self.axes) })
            }
        })
    }
}

impl<T: Number> Kernel for Reduce<T> {
    const BASE: &'static str = "array.reduce";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        match &self.stage {
            Stage::Chunk { .. } => self.chunk(args),
            Stage::Combine => self.merge(args),
            Stage::Aggregate { keepdims } => {
                let merged = if args.len() == 1 {
                    args[0].clone()
                } else {
                    self.merge(args)?
                };
                self.finish(merged, *keepdims)
            }
        }
    }
}

/// Any/all over bools.
#[derive(Serialize, Deserialize)]
pub(crate) struct ReduceBool {
    all: bool,
    axes: Vec<usize>,
    stage: Stage,
}

impl Kernel for ReduceBool {
    const BASE: &'static str = "array.reduce-bool";
    fn suffix() -> String {
        "bool".into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let all = self.all;
        let f = move |a: bool, b: bool| if all { a & b } else { a | b };
        Ok(match &self.stage {
            Stage::Chunk { .. } => {
                let a = block::<bool>(arg(args, 0, Self::BASE)?)?;
                value(fold_same(a.view(), &self.axes, all, f))
            }
            Stage::Combine => value(merge_same::<bool>(args, f)?),
            Stage::Aggregate { keepdims } => {
                let m = merge_same::<bool>(args, f)?;
                value(if *keepdims { m } else { drop_axes(m, &self.axes) })
            }
        })
    }
}
blockwise_core::register_op!("array.reduce-bool.bool", crate::kernel::decode::<ReduceBool>);

macro_rules! reg_reduce {
    ($t:ident) => {
        register_kernel!(Reduce, "array.reduce", $t);
    };
}
for_each_number!(reg_reduce);

/// The three ops of one reduction.
struct TreeOps {
    chunk: Arc<dyn Op>,
    combine: Arc<dyn Op>,
    aggregate: Arc<dyn Op>,
    /// Whether chunk tasks get their block index.
    with_index: bool,
}

/// Builds the tree: a generated chunk layer, explicit combine layers, and
/// the aggregate layer whose keys are the output array's.
fn tree(prefix: &str, x: &Meta, axes: &[usize], fan_in: usize, keepdims: bool, ops: TreeOps) -> Meta {
    let ndim = x.ndim();
    let mut args = vec![x.same_grid_arg()];
    if ops.with_index {
        args.extend((0..ndim as u32).map(BlockArg::BlockIndex));
    }
    let chunk = blockwise_layer(
        &format!("{prefix}-chunk"),
        ops.chunk,
        &x.chunks,
        args,
        vec![x.layer.clone()],
        &[],
    );
    let is_reduced = |a: usize| axes.contains(&a);
    let mut out_sizes: Vec<Vec<usize>> = Vec::new();
    for a in 0..ndim {
        if !is_reduced(a) {
            out_sizes.push(x.chunks.axis(a).to_vec());
        } else if keepdims {
            out_sizes.push(vec![1]);
        }
    }
    let out_chunks = Chunks::from_checked(out_sizes);
    let mut grid = x.chunks.grid();
    let mut level = chunk;
    if axes.iter().all(|&a| grid[a] == 1) {
        // One block along every reduced axis: the aggregate maps block to block.
        let map = (0..ndim)
            .map(|a| {
                if is_reduced(a) && !keepdims {
                    IndexMap::Fixed(0)
                } else {
                    let pos = if keepdims {
                        a
                    } else {
                        (0..a).filter(|&b| !is_reduced(b)).count()
                    };
                    IndexMap::Axis(pos as u32)
                }
            })
            .collect();
        let arg = BlockArg::Block {
            name: level.name.clone(),
            map,
        };
        return blockwise_layer(
            prefix,
            ops.aggregate,
            &out_chunks,
            vec![arg],
            vec![level.layer.clone()],
            &[],
        );
    }
    let mut depth = 0u64;
    loop {
        let last = axes.iter().all(|&a| grid[a] <= fan_in);
        let new_grid: Vec<usize> = (0..ndim)
            .map(|a| {
                if !is_reduced(a) {
                    grid[a]
                } else if last {
                    1
                } else {
                    grid[a].div_ceil(fan_in)
                }
            })
            .collect();
        let mut tok = Tokenizer::new();
        tok.str(level.name.as_str())
            .u64(depth)
            .u64(fan_in as u64)
            .u64(u64::from(keepdims));
        let op = if last {
            ops.aggregate.clone()
        } else {
            ops.combine.clone()
        };
        op.tokenize(&mut tok);
        let name = if last {
            tok.name(prefix)
        } else {
            tok.name(&format!("{prefix}-combine"))
        };
        let mut tasks = Vec::new();
        for index in grid_indices(&new_grid) {
            let spans: Vec<usize> = (0..ndim)
                .map(|a| {
                    if is_reduced(a) {
                        grid[a].min((index[a] + 1) * fan_in) - index[a] * fan_in
                    } else {
                        1
                    }
                })
                .collect();
            let inputs: Vec<Input> = grid_indices(&spans)
                .into_iter()
                .map(|off| {
                    let src: Vec<usize> = (0..ndim)
                        .map(|a| {
                            if is_reduced(a) {
                                index[a] * fan_in + off[a]
                            } else {
                                index[a]
                            }
                        })
                        .collect();
                    Input::Key(level.key(&src))
                })
                .collect();
            let key_index: Vec<usize> = if last && !keepdims {
                (0..ndim).filter(|&a| !is_reduced(a)).map(|a| index[a]).collect()
            } else {
                index.clone()
            };
            tasks.push((key_index, Task::new(op.clone(), inputs)));
        }
        let chunks = if last {
            out_chunks.clone()
        } else {
            // Partials' chunk sizes do not matter to later levels; record the grid.
            Chunks::from_checked(new_grid.iter().map(|&n| vec![1; n]).collect())
        };
        level = tasks_layer(name, vec![level.layer.clone()], tasks, chunks);
        if last {
            return level;
        }
        grid = new_grid;
        depth += 1;
    }
}

impl<T: Number> Array<T> {
    fn reduce_with<U: Element>(&self, prefix: &str, red: Red, skipna: bool, r: &Reduction) -> Result<Array<U>> {
        let axes = r.resolve_axes(self.ndim(), prefix)?;
        let empty = axes.iter().any(|&a| self.shape()[a] == 0);
        if empty && matches!(red, Red::Min | Red::Max | Red::ArgMin | Red::ArgMax) {
            return Err(Error::invalid(format!(
                "{prefix}: the array of shape {:?} is empty along a reduced axis, and {prefix} has no identity",
                self.shape()
            )));
        }
        let is_arg = matches!(red, Red::ArgMin | Red::ArgMax);
        let flat = is_arg && r.axes.is_none();
        if is_arg && !flat && axes.len() != 1 {
            return Err(Error::invalid(format!(
                "{prefix}: give one axis, or none for the flattened array"
            )));
        }
        let fan_in = r.fan_in(axes.len())?;
        let kernel = |stage: Stage| Reduce::<T> {
            red,
            skipna,
            axes: axes.clone(),
            flat,
            stage,
            _type: std::marker::PhantomData,
        };
        let ops = TreeOps {
            chunk: op(kernel(Stage::Chunk {
                chunks: is_arg.then(|| self.chunks().clone()),
            })),
            combine: op(kernel(Stage::Combine)),
            aggregate: op(kernel(Stage::Aggregate { keepdims: r.keepdims })),
            with_index: is_arg,
        };
        let meta = tree(prefix, &self.meta, &axes, fan_in, r.keepdims, ops);
        Ok(Array::from_meta(meta))
    }
}

macro_rules! reductions {
    ($($name:ident, $axis:ident, $with:ident => $red:expr, $skip:expr, $out:ty, $doc:expr;)+) => {
        impl<T: Number> Array<T> {
            $(
                #[doc = concat!($doc, ", over every axis.")]
                pub fn $name(&self) -> Result<Array<$out>> {
                    self.$with(&Reduction::all())
                }

                #[doc = concat!($doc, ", over one axis.")]
                pub fn $axis(&self, axis: usize) -> Result<Array<$out>> {
                    self.$with(&Reduction::axis(axis))
                }

                #[doc = concat!($doc, ", with axes, `keepdims` and `split_every` given by a [`Reduction`].")]
                pub fn $with(&self, r: &Reduction) -> Result<Array<$out>> {
                    self.reduce_with(stringify!($name), $red(r), $skip, r)
                }
            )+
        }
    };
}

reductions! {
    sum, sum_axis, sum_with => |_| Red::Sum, false, T, "Sum (NaN propagates; integers wrap)";
    prod, prod_axis, prod_with => |_| Red::Prod, false, T, "Product (NaN propagates; integers wrap)";
    min, min_axis, min_with => |_| Red::Min, false, T, "Minimum (NaN propagates)";
    max, max_axis, max_with => |_| Red::Max, false, T, "Maximum (NaN propagates)";
    mean, mean_axis, mean_with => |_| Red::Mean, false, f64, "Mean, computed in f64";
    nansum, nansum_axis, nansum_with => |_| Red::Sum, true, T, "Sum skipping NaN";
    nanprod, nanprod_axis, nanprod_with => |_| Red::Prod, true, T, "Product skipping NaN";
    nanmin, nanmin_axis, nanmin_with => |_| Red::Min, true, T, "Minimum skipping NaN (NaN where all are NaN)";
    nanmax, nanmax_axis, nanmax_with => |_| Red::Max, true, T, "Maximum skipping NaN (NaN where all are NaN)";
    nanmean, nanmean_axis, nanmean_with => |_| Red::Mean, true, f64, "Mean skipping NaN, computed in f64";
    argmin, argmin_axis, argmin_with => |_| Red::ArgMin, false, i64, "Position of the minimum (first on ties and NaN; over every axis: the flat index)";
    argmax, argmax_axis, argmax_with => |_| Red::ArgMax, false, i64, "Position of the maximum (first on ties and NaN; over every axis: the flat index)";
    nanargmin, nanargmin_axis, nanargmin_with => |_| Red::ArgMin, true, i64, "Position of the minimum skipping NaN";
    nanargmax, nanargmax_axis, nanargmax_with => |_| Red::ArgMax, true, i64, "Position of the maximum skipping NaN";
    var, var_axis, var_with => |r: &Reduction| Red::Var { ddof: r.ddof, sqrt: false }, false, f64, "Variance (divisor `n - ddof`, `ddof` from the [`Reduction`], 0 by default), stable merge of partial moments";
    std, std_axis, std_with => |r: &Reduction| Red::Var { ddof: r.ddof, sqrt: true }, false, f64, "Standard deviation (divisor `n - ddof`, `ddof` from the [`Reduction`], 0 by default)";
    nanvar, nanvar_axis, nanvar_with => |r: &Reduction| Red::Var { ddof: r.ddof, sqrt: false }, true, f64, "Variance skipping NaN";
    nanstd, nanstd_axis, nanstd_with => |r: &Reduction| Red::Var { ddof: r.ddof, sqrt: true }, true, f64, "Standard deviation skipping NaN";
}

impl<T: Element> Array<T> {
    fn bool_reduce(&self, all: bool, r: &Reduction) -> Result<Array<bool>> {
        let prefix = if all { "all" } else { "any" };
        let axes = r.resolve_axes(self.ndim(), prefix)?;
        let fan_in = r.fan_in(axes.len())?;
        let x = self.nonzero_mask();
        let kernel = |stage: Stage| ReduceBool {
            all,
            axes: axes.clone(),
            stage,
        };
        let ops = TreeOps {
            chunk: op(kernel(Stage::Chunk { chunks: None })),
            combine: op(kernel(Stage::Combine)),
            aggregate: op(kernel(Stage::Aggregate { keepdims: r.keepdims })),
            with_index: false,
        };
        Ok(Array::from_meta(tree(prefix, &x.meta, &axes, fan_in, r.keepdims, ops)))
    }

    /// Whether any element is non-zero, over every axis.
    pub fn any(&self) -> Result<Array<bool>> {
        self.bool_reduce(false, &Reduction::all())
    }

    /// Whether any element is non-zero, over one axis.
    pub fn any_axis(&self, axis: usize) -> Result<Array<bool>> {
        self.bool_reduce(false, &Reduction::axis(axis))
    }

    /// Whether any element is non-zero, as a [`Reduction`] says.
    pub fn any_with(&self, r: &Reduction) -> Result<Array<bool>> {
        self.bool_reduce(false, r)
    }

    /// Whether every element is non-zero, over every axis.
    pub fn all(&self) -> Result<Array<bool>> {
        self.bool_reduce(true, &Reduction::all())
    }

    /// Whether every element is non-zero, over one axis.
    pub fn all_axis(&self, axis: usize) -> Result<Array<bool>> {
        self.bool_reduce(true, &Reduction::axis(axis))
    }

    /// Whether every element is non-zero, as a [`Reduction`] says.
    pub fn all_with(&self, r: &Reduction) -> Result<Array<bool>> {
        self.bool_reduce(true, r)
    }
}
