//! Elementwise operations: arithmetic, comparisons, math functions, `where`,
//! `clip`, casting.
//!
//! Every elementwise operation is one generated layer over the output grid,
//! so a chain `((x + 1) * y).sqrt()` stays a chain of small rules and, when it
//! runs, fuses into one task per block.
//!
//! Array–array operations follow NumPy's broadcasting: shapes are aligned on
//! their last axes, and an axis of length 1 stretches to the other's length.
//! When two inputs are chunked differently along an axis, both are rechunked
//! to the common refinement of their chunk boundaries (Dask's
//! `unify_chunks`), so each output block reads exactly one block of each
//! input. Shapes that cannot broadcast are an error naming both shapes and
//! the axis, before anything runs.
//!
//! Array–scalar operations carry the scalar in the op's parameters, so they
//! cost nothing beyond the map itself.

use blockwise_core::graph::{BlockArg, IndexMap};
use blockwise_core::{Error, Result, Value};
use ndarray::{ArrayD, IxDyn, Zip};
use serde::{Deserialize, Serialize};

use crate::array::{Array, Meta, blockwise_layer};
use crate::chunks::{Chunks, starts};
use crate::element::{CastTo, Element, Float, Number, for_each_dtype, for_each_float, for_each_number};
use crate::kernel::{Kernel, arg, block, op, register_kernel, register_kernel2, value};

/// One side of a binary operation: an array or a scalar.
pub enum Operand<'a, T> {
    /// An array (broadcast against the other side).
    Array(&'a Array<T>),
    /// A scalar.
    Scalar(T),
}

impl<'a, T> From<&'a Array<T>> for Operand<'a, T> {
    fn from(a: &'a Array<T>) -> Self {
        Operand::Array(a)
    }
}

macro_rules! operand_from_scalar {
    ($t:ident) => {
        impl<'a> From<$t> for Operand<'a, $t> {
            fn from(s: $t) -> Self {
                Operand::Scalar(s)
            }
        }
    };
}
for_each_dtype!(operand_from_scalar);

/// How the inputs of an elementwise operation line up with its output.
pub(crate) struct Broadcast {
    /// The output chunks.
    pub(crate) chunks: Chunks,
    /// The chunks each input must have (rechunked when they differ).
    pub(crate) targets: Vec<Chunks>,
    /// For each input, how its block index follows from the output's.
    pub(crate) maps: Vec<Vec<IndexMap>>,
}

/// Plans NumPy broadcasting of inputs of the given shapes and chunks.
pub(crate) fn broadcast_plan(inputs: &[(&[usize], &Chunks)], what: &str) -> Result<Broadcast> {
    let ndim = inputs.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    let mut shape = vec![1usize; ndim];
    for (axis, out) in shape.iter_mut().enumerate() {
        let mut dim: Option<usize> = None;
        for (s, _) in inputs {
            let Some(j) = (axis + s.len()).checked_sub(ndim) else {
                continue;
            };
            let d = s[j];
            if d == 1 {
                continue;
            }
            match dim {
                None => dim = Some(d),
                Some(prev) if prev == d => {}
                Some(prev) => {
                    let shapes: Vec<String> = inputs.iter().map(|(s, _)| format!("{s:?}")).collect();
                    return Err(Error::invalid(format!(
                        "{what}: shapes {} cannot be broadcast together: axis {axis} of the result would need \
                         length {prev} and {d}",
                        shapes.join(" and ")
                    )));
                }
            }
        }
        *out = dim.unwrap_or(1);
    }
    let mut unified: Vec<Vec<usize>> = Vec::with_capacity(ndim);
    for (axis, &dim) in shape.iter().enumerate() {
        let mut bounds: Vec<usize> = vec![0, dim];
        for (s, c) in inputs {
            if let Some(j) = (axis + s.len()).checked_sub(ndim)
                && s[j] == dim
            {
                bounds.extend(starts(c.axis(j)));
            }
        }
        bounds.sort_unstable();
        bounds.dedup();
        let sizes: Vec<usize> = if dim == 0 {
            vec![0]
        } else {
            bounds.windows(2).map(|w| w[1] - w[0]).collect()
        };
        unified.push(sizes);
    }
    let chunks = Chunks::from_checked(unified);
    let mut targets = Vec::with_capacity(inputs.len());
    let mut maps = Vec::with_capacity(inputs.len());
    for (s, _) in inputs {
        let offset = ndim - s.len();
        let mut t = Vec::with_capacity(s.len());
        let mut m = Vec::with_capacity(s.len());
        for (j, &d) in s.iter().enumerate() {
            let axis = j + offset;
            if d == shape[axis] {
                t.push(chunks.axis(axis).to_vec());
                m.push(IndexMap::Axis(axis as u32));
            } else {
                t.push(vec![d]);
                m.push(IndexMap::Fixed(0));
            }
        }
        targets.push(Chunks::from_checked(t));
        maps.push(m);
    }
    Ok(Broadcast { chunks, targets, maps })
}

/// The broadcast shape of block shapes (inside a kernel).
fn co_shape(shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let ndim = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; ndim];
    for s in shapes {
        let offset = ndim - s.len();
        for (j, &d) in s.iter().enumerate() {
            let o = &mut out[j + offset];
            if d != 1 {
                if *o != 1 && *o != d {
                    return Err(Error::invalid(format!(
                        "blocks of shapes {shapes:?} cannot be broadcast together"
                    )));
                }
                *o = d;
            }
        }
    }
    Ok(out)
}

fn broadcast_err(e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("cannot broadcast a block: {e}"))
}

/// `f` over two blocks, broadcast together.
pub(crate) fn zip2<A: Element, B: Element, C: Element>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> C,
) -> Result<ArrayD<C>> {
    if a.shape() == b.shape()
        && let (Some(x), Some(y)) = (a.as_slice(), b.as_slice())
    {
        let data: Vec<C> = x.iter().zip(y).map(|(&p, &q)| f(p, q)).collect();
        return ArrayD::from_shape_vec(IxDyn(a.shape()), data).map_err(broadcast_err);
    }
    let shape = co_shape(&[a.shape(), b.shape()])?;
    let av = a.broadcast(IxDyn(&shape)).ok_or_else(|| broadcast_err("left"))?;
    let bv = b.broadcast(IxDyn(&shape)).ok_or_else(|| broadcast_err("right"))?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&p, &q| f(p, q)))
}

/// `f` over every element of a block.
#[inline]
pub(crate) fn map1<A: Element, C: Element>(a: &ArrayD<A>, f: impl Fn(A) -> C) -> ArrayD<C> {
    a.mapv(f)
}

/// Arithmetic with a scalar and the other numeric maps.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) enum NumFn<T: Element> {
    Neg,
    Abs,
    Square,
    Sign,
    AddS(T),
    SubS(T),
    RSubS(T),
    MulS(T),
    DivS(T),
    RDivS(T),
    RemS(T),
    RRemS(T),
    PowS(T),
    RPowS(T),
    MaxS(T),
    MinS(T),
    Clip(Option<T>, Option<T>),
}

impl<T: Number> NumFn<T> {
    #[inline]
    fn apply(self, x: T) -> T {
        match self {
            NumFn::Neg => x.neg(),
            NumFn::Abs => x.abs(),
            NumFn::Square => x.mul(x),
            NumFn::Sign => x.signum(),
            NumFn::AddS(s) => x.add(s),
            NumFn::SubS(s) => x.sub(s),
            NumFn::RSubS(s) => s.sub(x),
            NumFn::MulS(s) => x.mul(s),
            NumFn::DivS(s) => x.div(s),
            NumFn::RDivS(s) => s.div(x),
            NumFn::RemS(s) => x.rem(s),
            NumFn::RRemS(s) => s.rem(x),
            NumFn::PowS(s) => x.pow(s),
            NumFn::RPowS(s) => s.pow(x),
            NumFn::MaxS(s) => x.maximum(s),
            NumFn::MinS(s) => x.minimum(s),
            NumFn::Clip(lo, hi) => {
                let y = match lo {
                    Some(lo) => x.maximum(lo),
                    None => x,
                };
                match hi {
                    Some(hi) => y.minimum(hi),
                    None => y,
                }
            }
        }
    }
}

/// A numeric map `T → T`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct MapNum<T: Element> {
    f: NumFn<T>,
}

impl<T: Number> Kernel for MapNum<T> {
    const BASE: &'static str = "array.map";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let a = block::<T>(arg(args, 0, Self::BASE)?)?;
        let f = self.f;
        Ok(value(map1(&a, move |x| f.apply(x))))
    }
}

macro_rules! reg_num {
    ($t:ident) => {
        register_kernel!(MapNum, "array.map", $t);
        register_kernel!(BinaryNum, "array.binary", $t);
    };
}
for_each_number!(reg_num);

/// The math functions of floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FloatFn {
    Sqrt,
    Cbrt,
    Exp,
    Expm1,
    Exp2,
    Ln,
    Ln1p,
    Log2,
    Log10,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Floor,
    Ceil,
    Round,
    Trunc,
    Recip,
}

impl FloatFn {
    #[inline]
    fn apply<T: Float>(self, x: T) -> T {
        match self {
            FloatFn::Sqrt => x.sqrt(),
            FloatFn::Cbrt => x.cbrt(),
            FloatFn::Exp => x.exp(),
            FloatFn::Expm1 => x.exp_m1(),
            FloatFn::Exp2 => x.exp2(),
            FloatFn::Ln => x.ln(),
            FloatFn::Ln1p => x.ln_1p(),
            FloatFn::Log2 => x.log2(),
            FloatFn::Log10 => x.log10(),
            FloatFn::Sin => x.sin(),
            FloatFn::Cos => x.cos(),
            FloatFn::Tan => x.tan(),
            FloatFn::Asin => x.asin(),
            FloatFn::Acos => x.acos(),
            FloatFn::Atan => x.atan(),
            FloatFn::Sinh => x.sinh(),
            FloatFn::Cosh => x.cosh(),
            FloatFn::Tanh => x.tanh(),
            FloatFn::Floor => x.floor(),
            FloatFn::Ceil => x.ceil(),
            FloatFn::Round => x.round_even(),
            FloatFn::Trunc => x.trunc(),
            FloatFn::Recip => T::one().div(x),
        }
    }
}

/// A float math function `T → T`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct MapFloat<T> {
    f: FloatFn,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Float> Kernel for MapFloat<T> {
    const BASE: &'static str = "array.math";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let a = block::<T>(arg(args, 0, Self::BASE)?)?;
        let f = self.f;
        Ok(value(map1(&a, move |x| f.apply(x))))
    }
}

macro_rules! reg_float {
    ($t:ident) => {
        register_kernel!(MapFloat, "array.math", $t);
        register_kernel!(BinaryFloat, "array.binary-float", $t);
    };
}
for_each_float!(reg_float);

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    #[inline]
    fn apply<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

/// A test of each element, giving bools.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) enum Pred<T: Element> {
    Cmp(CmpOp, T),
    IsNan,
    IsFinite,
    IsInf,
    NonZero,
    Not,
}

/// An elementwise test `T → bool`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct Predicate<T: Element> {
    p: Pred<T>,
}

impl<T: Element> Kernel for Predicate<T> {
    const BASE: &'static str = "array.predicate";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let a = block::<T>(arg(args, 0, Self::BASE)?)?;
        let out = match self.p {
            Pred::Cmp(c, s) => map1(&a, move |x| c.apply(x, s)),
            Pred::IsNan => map1(&a, |x| x.is_nan_value()),
            Pred::IsFinite => map1(&a, |x| CastTo::<f64>::cast(x).is_finite()),
            Pred::IsInf => map1(&a, |x| CastTo::<f64>::cast(x).is_infinite()),
            Pred::NonZero => map1(&a, |x| x.truthy()),
            Pred::Not => map1(&a, |x| !x.truthy()),
        };
        Ok(value(out))
    }
}

/// Elementwise comparison of two arrays.
#[derive(Serialize, Deserialize)]
pub(crate) struct Compare<T> {
    c: CmpOp,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Element> Kernel for Compare<T> {
    const BASE: &'static str = "array.compare";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let a = block::<T>(arg(args, 0, Self::BASE)?)?;
        let b = block::<T>(arg(args, 1, Self::BASE)?)?;
        let c = self.c;
        Ok(value(zip2(&a, &b, move |x, y| c.apply(x, y))?))
    }
}

/// `where(cond, x, y)`.
#[derive(Serialize, Deserialize)]
pub(crate) struct Where<T> {
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Element> Kernel for Where<T> {
    const BASE: &'static str = "array.where";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let c = block::<bool>(arg(args, 0, Self::BASE)?)?;
        let x = block::<T>(arg(args, 1, Self::BASE)?)?;
        let y = block::<T>(arg(args, 2, Self::BASE)?)?;
        let shape = co_shape(&[c.shape(), x.shape(), y.shape()])?;
        let cv = c.broadcast(IxDyn(&shape)).ok_or_else(|| broadcast_err("condition"))?;
        let xv = x.broadcast(IxDyn(&shape)).ok_or_else(|| broadcast_err("x"))?;
        let yv = y.broadcast(IxDyn(&shape)).ok_or_else(|| broadcast_err("y"))?;
        Ok(value(
            Zip::from(&cv)
                .and(&xv)
                .and(&yv)
                .map_collect(|&c, &x, &y| if c { x } else { y }),
        ))
    }
}

macro_rules! reg_any {
    ($t:ident) => {
        register_kernel!(Predicate, "array.predicate", $t);
        register_kernel!(Compare, "array.compare", $t);
        register_kernel!(Where, "array.where", $t);
    };
}
for_each_dtype!(reg_any);

/// Casts every element.
#[derive(Serialize, Deserialize)]
pub(crate) struct Cast<T, U> {
    #[serde(skip)]
    _type: std::marker::PhantomData<fn(T) -> U>,
}

impl<T: Element + CastTo<U>, U: Element> Kernel for Cast<T, U> {
    const BASE: &'static str = "array.astype";
    fn suffix() -> String {
        format!("{}.{}", T::DTYPE_NAME, U::DTYPE_NAME)
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let a = block::<T>(arg(args, 0, Self::BASE)?)?;
        Ok(value(map1(&a, |x| -> U { x.cast() })))
    }
}

register_kernel2!(
    Cast,
    "array.astype",
    [f64, f32, i64, i32, u8, bool],
    [f64, f32, i64, i32, u8, bool]
);

/// A binary arithmetic operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Maximum,
    Minimum,
}

impl BinOp {
    #[inline]
    fn apply<T: Number>(self, a: T, b: T) -> T {
        match self {
            BinOp::Add => a.add(b),
            BinOp::Sub => a.sub(b),
            BinOp::Mul => a.mul(b),
            BinOp::Div => a.div(b),
            BinOp::Rem => a.rem(b),
            BinOp::Pow => a.pow(b),
            BinOp::Maximum => a.maximum(b),
            BinOp::Minimum => a.minimum(b),
        }
    }

    fn scalar<T: Number>(self, s: T, scalar_on_left: bool) -> NumFn<T> {
        match (self, scalar_on_left) {
            (BinOp::Add, _) => NumFn::AddS(s),
            (BinOp::Mul, _) => NumFn::MulS(s),
            (BinOp::Maximum, _) => NumFn::MaxS(s),
            (BinOp::Minimum, _) => NumFn::MinS(s),
            (BinOp::Sub, false) => NumFn::SubS(s),
            (BinOp::Sub, true) => NumFn::RSubS(s),
            (BinOp::Div, false) => NumFn::DivS(s),
            (BinOp::Div, true) => NumFn::RDivS(s),
            (BinOp::Rem, false) => NumFn::RemS(s),
            (BinOp::Rem, true) => NumFn::RRemS(s),
            (BinOp::Pow, false) => NumFn::PowS(s),
            (BinOp::Pow, true) => NumFn::RPowS(s),
        }
    }

    fn name(self) -> &'static str {
        match self {
            BinOp::Add => "add",
            BinOp::Sub => "sub",
            BinOp::Mul => "mul",
            BinOp::Div => "div",
            BinOp::Rem => "rem",
            BinOp::Pow => "pow",
            BinOp::Maximum => "maximum",
            BinOp::Minimum => "minimum",
        }
    }
}

/// Binary arithmetic of two arrays.
#[derive(Serialize, Deserialize)]
pub(crate) struct BinaryNum<T> {
    b: BinOp,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Number> Kernel for BinaryNum<T> {
    const BASE: &'static str = "array.binary";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let a = block::<T>(arg(args, 0, Self::BASE)?)?;
        let c = block::<T>(arg(args, 1, Self::BASE)?)?;
        let b = self.b;
        Ok(value(zip2(&a, &c, move |x, y| b.apply(x, y))?))
    }
}

/// Binary float functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FloatBinOp {
    Atan2,
    Hypot,
}

/// Binary float functions of two arrays.
#[derive(Serialize, Deserialize)]
pub(crate) struct BinaryFloat<T> {
    b: FloatBinOp,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Float> Kernel for BinaryFloat<T> {
    const BASE: &'static str = "array.binary-float";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let a = block::<T>(arg(args, 0, Self::BASE)?)?;
        let c = block::<T>(arg(args, 1, Self::BASE)?)?;
        Ok(value(match self.b {
            FloatBinOp::Atan2 => zip2(&a, &c, |x: T, y: T| x.atan2(y))?,
            FloatBinOp::Hypot => zip2(&a, &c, |x: T, y: T| x.hypot(y))?,
        }))
    }
}

/// Logical operations of bool arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum LogicOp {
    And,
    Or,
    Xor,
}

/// A logical operation of two bool arrays.
#[derive(Serialize, Deserialize)]
pub(crate) struct Logical {
    l: LogicOp,
}

impl Kernel for Logical {
    const BASE: &'static str = "array.logical";
    fn suffix() -> String {
        "bool".into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let a = block::<bool>(arg(args, 0, Self::BASE)?)?;
        let b = block::<bool>(arg(args, 1, Self::BASE)?)?;
        Ok(value(match self.l {
            LogicOp::And => zip2(&a, &b, |x, y| x & y)?,
            LogicOp::Or => zip2(&a, &b, |x, y| x | y)?,
            LogicOp::Xor => zip2(&a, &b, |x, y| x ^ y)?,
        }))
    }
}
blockwise_core::register_op!("array.logical.bool", crate::kernel::decode::<Logical>);

/// Applies a one-input kernel to every block.
pub(crate) fn map_blocks_kernel<T: Element, U: Element>(x: &Array<T>, prefix: &str, kernel: impl Kernel) -> Array<U> {
    let meta = blockwise_layer(
        prefix,
        op(kernel),
        &x.meta.chunks,
        vec![x.meta.same_grid_arg()],
        vec![x.meta.layer.clone()],
        &[],
    );
    Array::from_meta(meta)
}

/// Applies an n-input kernel over broadcast inputs (already given as metas of
/// their own types: `inputs[i]` must have `plan.targets[i]` chunks).
pub(crate) fn broadcast_kernel<U: Element>(
    prefix: &str,
    kernel: impl Kernel,
    inputs: &[&Meta],
    plan: &Broadcast,
) -> Array<U> {
    let args = inputs
        .iter()
        .zip(&plan.maps)
        .map(|(m, map)| BlockArg::Block {
            name: m.name.clone(),
            map: map.clone(),
        })
        .collect();
    let deps = inputs.iter().map(|m| m.layer.clone()).collect();
    Array::from_meta(blockwise_layer(prefix, op(kernel), &plan.chunks, args, deps, &[]))
}

/// The array rechunked to `target` (itself when it already is).
pub(crate) fn aligned<T: Element>(x: &Array<T>, target: &Chunks) -> Result<Array<T>> {
    if x.chunks() == target {
        Ok(x.clone())
    } else {
        x.rechunk_to(target)
    }
}

fn binary_arrays<T: Element, U: Element>(
    prefix: &str,
    a: &Array<T>,
    b: &Array<T>,
    kernel: impl Kernel,
) -> Result<Array<U>> {
    let plan = broadcast_plan(&[(a.shape(), a.chunks()), (b.shape(), b.chunks())], prefix)?;
    let a = aligned(a, &plan.targets[0])?;
    let b = aligned(b, &plan.targets[1])?;
    Ok(broadcast_kernel(prefix, kernel, &[&a.meta, &b.meta], &plan))
}

impl<T: Number> Array<T> {
    fn map_num(&self, prefix: &str, f: NumFn<T>) -> Array<T> {
        map_blocks_kernel(self, prefix, MapNum { f })
    }

    fn binary(&self, b: BinOp, other: Operand<'_, T>, scalar_on_left: bool) -> Result<Array<T>> {
        match other {
            Operand::Scalar(s) => Ok(self.map_num(b.name(), b.scalar(s, scalar_on_left))),
            Operand::Array(o) => {
                let kernel = BinaryNum::<T> {
                    b,
                    _type: std::marker::PhantomData,
                };
                if scalar_on_left {
                    binary_arrays(b.name(), o, self, kernel)
                } else {
                    binary_arrays(b.name(), self, o, kernel)
                }
            }
        }
    }

    /// `self + other`, an array or a scalar (broadcast).
    pub fn add<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<T>>
    where
        T: 'a,
    {
        self.binary(BinOp::Add, other.into(), false)
    }

    /// `self - other`.
    pub fn sub<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<T>>
    where
        T: 'a,
    {
        self.binary(BinOp::Sub, other.into(), false)
    }

    /// `self * other`.
    pub fn mul<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<T>>
    where
        T: 'a,
    {
        self.binary(BinOp::Mul, other.into(), false)
    }

    /// `self / other` (integers: truncating, 0 when dividing by 0).
    pub fn div<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<T>>
    where
        T: 'a,
    {
        self.binary(BinOp::Div, other.into(), false)
    }

    /// `self % other` (Rust's remainder).
    pub fn rem<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<T>>
    where
        T: 'a,
    {
        self.binary(BinOp::Rem, other.into(), false)
    }

    /// `self ** other` (integers: wrapping; a negative exponent gives 0).
    pub fn pow<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<T>>
    where
        T: 'a,
    {
        self.binary(BinOp::Pow, other.into(), false)
    }

    /// `scalar - self`.
    pub fn rsub(&self, scalar: T) -> Array<T> {
        self.map_num("rsub", NumFn::RSubS(scalar))
    }

    /// `scalar / self`.
    pub fn rdiv(&self, scalar: T) -> Array<T> {
        self.map_num("rdiv", NumFn::RDivS(scalar))
    }

    /// `scalar ** self`.
    pub fn rpow(&self, scalar: T) -> Array<T> {
        self.map_num("rpow", NumFn::RPowS(scalar))
    }

    /// Elementwise maximum (NaN wins, as NumPy's `maximum`).
    pub fn maximum<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<T>>
    where
        T: 'a,
    {
        self.binary(BinOp::Maximum, other.into(), false)
    }

    /// Elementwise minimum (NaN wins, as NumPy's `minimum`).
    pub fn minimum<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<T>>
    where
        T: 'a,
    {
        self.binary(BinOp::Minimum, other.into(), false)
    }

    /// Limits every element to `[lo, hi]` (either bound optional).
    pub fn clip(&self, lo: Option<T>, hi: Option<T>) -> Result<Array<T>> {
        if let (Some(l), Some(h)) = (lo, hi)
            && l > h
        {
            return Err(Error::invalid(format!(
                "clip: the lower bound {l} is above the upper bound {h}"
            )));
        }
        Ok(self.map_num("clip", NumFn::Clip(lo, hi)))
    }

    /// `-self` (integers wrap).
    pub fn neg(&self) -> Array<T> {
        self.map_num("neg", NumFn::Neg)
    }

    /// `|self|`.
    pub fn abs(&self) -> Array<T> {
        self.map_num("abs", NumFn::Abs)
    }

    /// `self * self`.
    pub fn square(&self) -> Array<T> {
        self.map_num("square", NumFn::Square)
    }

    /// −1, 0 or 1 per element.
    pub fn sign(&self) -> Array<T> {
        self.map_num("sign", NumFn::Sign)
    }
}

macro_rules! float_methods {
    ($($name:ident => $f:ident, $doc:expr;)+) => {
        impl<T: Float> Array<T> {
            $(
                #[doc = $doc]
                pub fn $name(&self) -> Array<T> {
                    self.math(stringify!($name), FloatFn::$f)
                }
            )+
        }
    };
}

float_methods! {
    sqrt => Sqrt, "Square root of every element.";
    cbrt => Cbrt, "Cube root of every element.";
    exp => Exp, "`e^x` of every element.";
    expm1 => Expm1, "`e^x - 1` of every element, accurate near 0.";
    exp2 => Exp2, "`2^x` of every element.";
    ln => Ln, "Natural logarithm of every element (NumPy's `log`).";
    log1p => Ln1p, "`ln(1 + x)` of every element, accurate near 0.";
    log2 => Log2, "Base-2 logarithm of every element.";
    log10 => Log10, "Base-10 logarithm of every element.";
    sin => Sin, "Sine of every element.";
    cos => Cos, "Cosine of every element.";
    tan => Tan, "Tangent of every element.";
    arcsin => Asin, "Arcsine of every element.";
    arccos => Acos, "Arccosine of every element.";
    arctan => Atan, "Arctangent of every element.";
    sinh => Sinh, "Hyperbolic sine of every element.";
    cosh => Cosh, "Hyperbolic cosine of every element.";
    tanh => Tanh, "Hyperbolic tangent of every element.";
    floor => Floor, "Largest integer not above, per element.";
    ceil => Ceil, "Smallest integer not below, per element.";
    round => Round, "Nearest integer per element, halves to even (NumPy's `round`).";
    trunc => Trunc, "Integer part of every element.";
    recip => Recip, "`1 / x` of every element.";
}

impl<T: Float> Array<T> {
    fn math(&self, prefix: &str, f: FloatFn) -> Array<T> {
        map_blocks_kernel(
            self,
            prefix,
            MapFloat::<T> {
                f,
                _type: std::marker::PhantomData,
            },
        )
    }

    /// Natural logarithm (alias of [`Array::ln`], NumPy's name).
    pub fn log(&self) -> Array<T> {
        self.ln()
    }

    /// `atan2(self, other)` elementwise, broadcast.
    pub fn arctan2(&self, other: &Array<T>) -> Result<Array<T>> {
        let k = BinaryFloat::<T> {
            b: FloatBinOp::Atan2,
            _type: std::marker::PhantomData,
        };
        binary_arrays("arctan2", self, other, k)
    }

    /// `sqrt(self² + other²)` elementwise, broadcast.
    pub fn hypot(&self, other: &Array<T>) -> Result<Array<T>> {
        let k = BinaryFloat::<T> {
            b: FloatBinOp::Hypot,
            _type: std::marker::PhantomData,
        };
        binary_arrays("hypot", self, other, k)
    }
}

impl<T: Element> Array<T> {
    fn predicate(&self, prefix: &str, p: Pred<T>) -> Array<bool> {
        map_blocks_kernel(self, prefix, Predicate { p })
    }

    fn compare<'a>(&self, c: CmpOp, other: Operand<'a, T>) -> Result<Array<bool>> {
        let prefix = match c {
            CmpOp::Eq => "equal",
            CmpOp::Ne => "not-equal",
            CmpOp::Lt => "less",
            CmpOp::Le => "less-equal",
            CmpOp::Gt => "greater",
            CmpOp::Ge => "greater-equal",
        };
        match other {
            Operand::Scalar(s) => Ok(self.predicate(prefix, Pred::Cmp(c, s))),
            Operand::Array(o) => binary_arrays(
                prefix,
                self,
                o,
                Compare::<T> {
                    c,
                    _type: std::marker::PhantomData,
                },
            ),
        }
    }

    /// `self == other` per element (an array or a scalar, broadcast).
    pub fn equal<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<bool>>
    where
        T: 'a,
    {
        self.compare(CmpOp::Eq, other.into())
    }

    /// `self != other` per element.
    pub fn not_equal<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<bool>>
    where
        T: 'a,
    {
        self.compare(CmpOp::Ne, other.into())
    }

    /// `self < other` per element.
    pub fn less<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<bool>>
    where
        T: 'a,
    {
        self.compare(CmpOp::Lt, other.into())
    }

    /// `self <= other` per element.
    pub fn less_equal<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<bool>>
    where
        T: 'a,
    {
        self.compare(CmpOp::Le, other.into())
    }

    /// `self > other` per element.
    pub fn greater<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<bool>>
    where
        T: 'a,
    {
        self.compare(CmpOp::Gt, other.into())
    }

    /// `self >= other` per element.
    pub fn greater_equal<'a>(&self, other: impl Into<Operand<'a, T>>) -> Result<Array<bool>>
    where
        T: 'a,
    {
        self.compare(CmpOp::Ge, other.into())
    }

    /// Whether each element is NaN (never, for non-floats).
    pub fn isnan(&self) -> Array<bool> {
        self.predicate("isnan", Pred::IsNan)
    }

    /// Whether each element is finite.
    pub fn isfinite(&self) -> Array<bool> {
        self.predicate("isfinite", Pred::IsFinite)
    }

    /// Whether each element is ±∞.
    pub fn isinf(&self) -> Array<bool> {
        self.predicate("isinf", Pred::IsInf)
    }

    /// Whether each element is non-zero (true, for bools).
    pub fn nonzero_mask(&self) -> Array<bool> {
        self.predicate("nonzero", Pred::NonZero)
    }

    /// Casts every element to `U` (Rust's `as`; numbers → bool is `!= 0`).
    pub fn astype<U: Element>(&self) -> Array<U>
    where
        T: CastTo<U>,
    {
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>() {
            return Array::from_meta(self.meta.clone());
        }
        map_blocks_kernel(
            self,
            "astype",
            Cast::<T, U> {
                _type: std::marker::PhantomData,
            },
        )
    }
}

impl Array<bool> {
    /// Logical not.
    pub fn not(&self) -> Array<bool> {
        self.predicate("not", Pred::Not)
    }

    /// Logical and (broadcast).
    pub fn and(&self, other: &Array<bool>) -> Result<Array<bool>> {
        binary_arrays("and", self, other, Logical { l: LogicOp::And })
    }

    /// Logical or (broadcast).
    pub fn or(&self, other: &Array<bool>) -> Result<Array<bool>> {
        binary_arrays("or", self, other, Logical { l: LogicOp::Or })
    }

    /// Logical exclusive or (broadcast).
    pub fn xor(&self, other: &Array<bool>) -> Result<Array<bool>> {
        binary_arrays("xor", self, other, Logical { l: LogicOp::Xor })
    }
}

/// `cond ? x : y` per element, the three broadcast together (NumPy's
/// `where`). Scalars are allowed for `x` and `y`.
pub fn where_<'a, T: Element + 'a>(
    cond: &Array<bool>,
    x: impl Into<Operand<'a, T>>,
    y: impl Into<Operand<'a, T>>,
) -> Result<Array<T>> {
    let to_array = |o: Operand<'a, T>| -> Result<Array<T>> {
        match o {
            Operand::Array(a) => Ok(a.clone()),
            Operand::Scalar(s) => crate::creation::full(&[], Vec::<usize>::new(), s),
        }
    };
    let (x, y) = (to_array(x.into())?, to_array(y.into())?);
    let plan = broadcast_plan(
        &[
            (cond.shape(), cond.chunks()),
            (x.shape(), x.chunks()),
            (y.shape(), y.chunks()),
        ],
        "where",
    )?;
    let c = aligned(cond, &plan.targets[0])?;
    let x = aligned(&x, &plan.targets[1])?;
    let y = aligned(&y, &plan.targets[2])?;
    Ok(broadcast_kernel(
        "where",
        Where::<T> {
            _type: std::marker::PhantomData,
        },
        &[&c.meta, &x.meta, &y.meta],
        &plan,
    ))
}

macro_rules! scalar_operators {
    ($tr:ident, $method:ident, $f:ident) => {
        impl<T: Number> std::ops::$tr<T> for &Array<T> {
            type Output = Array<T>;
            fn $method(self, s: T) -> Array<T> {
                self.map_num(stringify!($method), NumFn::$f(s))
            }
        }
        impl<T: Number> std::ops::$tr<T> for Array<T> {
            type Output = Array<T>;
            fn $method(self, s: T) -> Array<T> {
                std::ops::$tr::$method(&self, s)
            }
        }
        impl<T: Number> std::ops::$tr<&Array<T>> for &Array<T> {
            type Output = Result<Array<T>>;
            fn $method(self, other: &Array<T>) -> Result<Array<T>> {
                Array::$method(self, other)
            }
        }
    };
}
scalar_operators!(Add, add, AddS);
scalar_operators!(Sub, sub, SubS);
scalar_operators!(Mul, mul, MulS);
scalar_operators!(Div, div, DivS);
scalar_operators!(Rem, rem, RemS);

impl<T: Number> std::ops::Neg for &Array<T> {
    type Output = Array<T>;
    fn neg(self) -> Array<T> {
        Array::neg(self)
    }
}
