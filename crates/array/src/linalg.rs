//! Linear algebra on `f64` arrays, blocked, with `faer` kernels per block.
//!
//! - [`tensordot`] (and [`matmul`], [`dot`]): output block `(i, j)` sums the
//!   products of the input blocks along the contracted axes; each product is
//!   one `faer` matrix multiply on the blocks reshaped to matrices (blocks are
//!   borrowed, not copied, when they are contiguous). Contracted axes are
//!   rechunked to a common chunking first.
//! - [`tsqr`]: tall-and-skinny QR (Demmel et al.; Dask's `tsqr`): a QR of
//!   every row block, a QR of the stacked `R` factors, and `Q` block `i` =
//!   `Q_i · Q₂[i]`. One level of stacking: the stacked `R`s (`blocks × n`
//!   rows) must fit in one task's memory.
//! - [`svd`]: SVD of a tall-and-skinny array from its TSQR: the SVD of the
//!   small `R` gives `S` and `Vᵀ`, and `U = Q · U_R` block by block.
//! - [`lstsq`] and [`solve`]: `x = R⁻¹ Qᵀ b` from the TSQR, with `Qᵀ b`
//!   summed over row blocks; `solve` is the square case (a QR solve is
//!   stable without pivoting across blocks).
//! - [`cholesky`]: blocked right-looking Cholesky of a symmetric positive
//!   definite array with square blocks; each block of `L` is one task
//!   reading the blocks it needs.
//!
//! Shapes are checked while the graph is built; a matrix that turns out not
//! to be positive definite fails its diagonal block's task with a message
//! saying so.

use std::sync::Arc;

use blockwise_core::graph::{Input, Task};
use blockwise_core::op::ItemOp;
use blockwise_core::value::Tuple;
use blockwise_core::{Error, Op, Result, Tokenizer, Value};
use faer::linalg::matmul::matmul as faer_matmul;
use faer::{Accum, Mat, MatRef, Par};
use ndarray::{Array2, ArrayD, Ix2, IxDyn};
use serde::{Deserialize, Serialize};

use crate::array::{Array, Meta, check_axis};
use crate::chunks::{Chunks, grid_indices, starts};
use crate::kernel::{Kernel, block, value};
use crate::shape::tasks_layer;

fn as_matrix(a: &ArrayD<f64>, what: &str) -> Result<Array2<f64>> {
    a.view()
        .into_dimensionality::<Ix2>()
        .map(|v| v.as_standard_layout().into_owned())
        .map_err(|_| Error::graph(format!("{what}: expected a 2-d block, found shape {:?}", a.shape())))
}

fn mat_of(v: &Value, what: &str) -> Result<Array2<f64>> {
    let b = block::<f64>(v)?;
    as_matrix(&b, what)
}

fn mat_ref(a: &Array2<f64>) -> MatRef<'_, f64> {
    let (r, c) = a.dim();
    MatRef::from_row_major_slice(a.as_slice().expect("standard layout"), r, c)
}

fn to_ndarray(m: MatRef<'_, f64>) -> ArrayD<f64> {
    Array2::from_shape_fn((m.nrows(), m.ncols()), |(i, j)| m[(i, j)]).into_dyn()
}

fn tuple_part(v: &Value, i: usize) -> Result<Value> {
    let t = v
        .downcast_ref::<Tuple>()
        .ok_or_else(|| Error::graph("a linear-algebra task expected a tuple of blocks"))?;
    t.0.get(i)
        .cloned()
        .ok_or_else(|| Error::graph("a tuple of blocks is too short"))
}

/// Sums block products along the contracted axes (one output block).
#[derive(Serialize, Deserialize)]
pub(crate) struct Tensordot {
    /// Permutation of an `a` block: free axes, then contracted.
    a_perm: Vec<usize>,
    a_free: usize,
    /// Permutation of a `b` block: contracted axes, then free.
    b_perm: Vec<usize>,
    b_free: usize,
}

impl Kernel for Tensordot {
    const BASE: &'static str = "array.tensordot";
    fn suffix() -> String {
        "f64".into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        if args.is_empty() || !args.len().is_multiple_of(2) {
            return Err(Error::graph("tensordot takes pairs of blocks"));
        }
        let mut acc: Option<Mat<f64>> = None;
        let mut out_shape = Vec::new();
        for pair in args.chunks(2) {
            let a = block::<f64>(&pair[0])?;
            let b = block::<f64>(&pair[1])?;
            let ap = a.view().permuted_axes(IxDyn(&self.a_perm));
            let bp = b.view().permuted_axes(IxDyn(&self.b_perm));
            let fa: usize = ap.shape()[..self.a_free].iter().product();
            let ka: usize = ap.shape()[self.a_free..].iter().product();
            let kb: usize = bp.shape()[..bp.ndim() - self.b_free].iter().product();
            let fb: usize = bp.shape()[bp.ndim() - self.b_free..].iter().product();
            if ka != kb {
                return Err(Error::graph(format!(
                    "tensordot: block contraction sizes {ka} and {kb} differ"
                )));
            }
            if out_shape.is_empty() {
                out_shape = ap.shape()[..self.a_free].to_vec();
                out_shape.extend_from_slice(&bp.shape()[bp.ndim() - self.b_free..]);
            }
            let a2 = ap.as_standard_layout();
            let b2 = bp.as_standard_layout();
            let am = MatRef::from_row_major_slice(a2.as_slice().expect("standard layout"), fa, ka);
            let bm = MatRef::from_row_major_slice(b2.as_slice().expect("standard layout"), kb, fb);
            let dst = acc.get_or_insert_with(|| Mat::zeros(fa, fb));
            faer_matmul(dst.as_mut(), Accum::Add, am, bm, 1.0, Par::Seq);
        }
        let m = acc.expect("at least one pair");
        let flat = to_ndarray(m.as_ref());
        let data: Vec<f64> = flat.iter().copied().collect();
        ArrayD::from_shape_vec(IxDyn(&out_shape), data)
            .map(value)
            .map_err(|e| Error::graph(e.to_string()))
    }
}
blockwise_core::register_op!("array.tensordot.f64", crate::kernel::decode::<Tensordot>);

fn common_chunks(a: &[usize], b: &[usize]) -> Vec<usize> {
    let mut bounds = starts(a);
    bounds.extend(starts(b));
    bounds.sort_unstable();
    bounds.dedup();
    if bounds.len() < 2 {
        return vec![0];
    }
    bounds.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Contracts `a`'s axes `axes_a` with `b`'s axes `axes_b` (NumPy's
/// `tensordot`): the result's axes are `a`'s other axes, then `b`'s.
pub fn tensordot(a: &Array<f64>, b: &Array<f64>, axes_a: &[usize], axes_b: &[usize]) -> Result<Array<f64>> {
    if axes_a.len() != axes_b.len() {
        return Err(Error::invalid(format!(
            "tensordot: {} axes of a are paired with {} axes of b",
            axes_a.len(),
            axes_b.len()
        )));
    }
    for (&x, &y) in axes_a.iter().zip(axes_b) {
        check_axis(x, a.ndim(), "tensordot (a)")?;
        check_axis(y, b.ndim(), "tensordot (b)")?;
        if a.shape()[x] != b.shape()[y] {
            return Err(Error::invalid(format!(
                "tensordot: axis {x} of a (shape {:?}) has length {}, axis {y} of b (shape {:?}) has {}",
                a.shape(),
                a.shape()[x],
                b.shape(),
                b.shape()[y]
            )));
        }
    }
    let mut seen_a = axes_a.to_vec();
    seen_a.sort_unstable();
    seen_a.dedup();
    let mut seen_b = axes_b.to_vec();
    seen_b.sort_unstable();
    seen_b.dedup();
    if seen_a.len() != axes_a.len() || seen_b.len() != axes_b.len() {
        return Err(Error::invalid("tensordot: an axis is contracted twice"));
    }
    // Unify chunks along contracted pairs.
    let mut ca = a.chunks().sizes().to_vec();
    let mut cb = b.chunks().sizes().to_vec();
    for (&x, &y) in axes_a.iter().zip(axes_b) {
        let common = common_chunks(a.chunks().axis(x), b.chunks().axis(y));
        ca[x] = common.clone();
        cb[y] = common;
    }
    let a = a.rechunk_to(&Chunks::from_checked(ca))?;
    let b = b.rechunk_to(&Chunks::from_checked(cb))?;
    let free_a: Vec<usize> = (0..a.ndim()).filter(|d| !axes_a.contains(d)).collect();
    let free_b: Vec<usize> = (0..b.ndim()).filter(|d| !axes_b.contains(d)).collect();
    let mut a_perm = free_a.clone();
    a_perm.extend_from_slice(axes_a);
    let mut b_perm = axes_b.to_vec();
    b_perm.extend_from_slice(&free_b);
    let mut out_sizes: Vec<Vec<usize>> = free_a.iter().map(|&d| a.chunks().axis(d).to_vec()).collect();
    out_sizes.extend(free_b.iter().map(|&d| b.chunks().axis(d).to_vec()));
    let out_chunks = Chunks::from_checked(out_sizes);
    let k_grid: Vec<usize> = axes_a.iter().map(|&x| a.chunks().axis(x).len()).collect();
    let kernel = Tensordot {
        a_perm,
        a_free: free_a.len(),
        b_perm,
        b_free: free_b.len(),
    };
    let op = crate::kernel::op(kernel);
    let mut tok = Tokenizer::new();
    tok.str("tensordot").str(a.name().as_str()).str(b.name().as_str());
    for (&x, &y) in axes_a.iter().zip(axes_b) {
        tok.u64(x as u64).u64(y as u64);
    }
    let name = tok.name("tensordot");
    let mut tasks = Vec::with_capacity(out_chunks.num_blocks());
    for index in out_chunks.indices() {
        let mut inputs = Vec::new();
        for k in grid_indices(&k_grid) {
            let mut ia = vec![0; a.ndim()];
            for (p, &d) in free_a.iter().enumerate() {
                ia[d] = index[p];
            }
            let mut ib = vec![0; b.ndim()];
            for (p, &d) in free_b.iter().enumerate() {
                ib[d] = index[free_a.len() + p];
            }
            for (c, (&x, &y)) in axes_a.iter().zip(axes_b).enumerate() {
                ia[x] = k[c];
                ib[y] = k[c];
            }
            inputs.push(Input::Key(a.meta.key(&ia)));
            inputs.push(Input::Key(b.meta.key(&ib)));
        }
        tasks.push((index, Task::new(op.clone(), inputs)));
    }
    Ok(Array::from_meta(tasks_layer(
        name,
        vec![a.meta.layer.clone(), b.meta.layer.clone()],
        tasks,
        out_chunks,
    )))
}

/// Matrix product of 2-d arrays (`a @ b`).
pub fn matmul_arrays(a: &Array<f64>, b: &Array<f64>) -> Result<Array<f64>> {
    if a.ndim() != 2 || b.ndim() != 2 {
        return Err(Error::invalid(format!(
            "matmul: expected 2-d arrays, found shapes {:?} and {:?} (use tensordot or dot)",
            a.shape(),
            b.shape()
        )));
    }
    tensordot(a, b, &[1], &[0])
}

pub use matmul_arrays as matmul;

/// NumPy's `dot` for 1-d and 2-d arrays: the last axis of `a` with the
/// first axis of `b` (for 1-d `b`, its only axis).
pub fn dot(a: &Array<f64>, b: &Array<f64>) -> Result<Array<f64>> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(Error::invalid("dot: 0-d arrays are scalars; multiply them instead"));
    }
    tensordot(a, b, &[a.ndim() - 1], &[0])
}

/// QR of one row block: `(Q_i, R_i)` thin.
#[derive(Serialize, Deserialize)]
pub(crate) struct BlockQr;

impl Kernel for BlockQr {
    const BASE: &'static str = "array.block-qr";
    fn suffix() -> String {
        "f64".into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let mut blocks = Vec::with_capacity(args.len());
        for v in args {
            blocks.push(mat_of(v, "qr")?);
        }
        // Several inputs are R factors stacked vertically.
        let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
        let stacked = ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| Error::graph(e.to_string()))?;
        let qr = mat_ref(&stacked).qr();
        let q = qr.compute_thin_Q();
        let r = qr.thin_R().to_owned();
        Ok(Arc::new(Tuple(vec![
            value(to_ndarray(q.as_ref())),
            value(to_ndarray(r.as_ref())),
        ])))
    }
}
blockwise_core::register_op!("array.block-qr.f64", crate::kernel::decode::<BlockQr>);

/// `Q_i · Q₂[rows]`: one block of the final `Q` (or of `U = Q · U_R`).
#[derive(Serialize, Deserialize)]
pub(crate) struct QBlock {
    /// Rows of the stacked `Q₂` belonging to this block.
    start: usize,
    end: usize,
}

impl Kernel for QBlock {
    const BASE: &'static str = "array.q-block";
    fn suffix() -> String {
        "f64".into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let qi = mat_of(&tuple_part(&args[0], 0)?, "tsqr")?;
        let q2 = mat_of(&tuple_part(&args[1], 0)?, "tsqr")?;
        let rows = q2
            .slice_axis(ndarray::Axis(0), (self.start..self.end).into())
            .as_standard_layout()
            .into_owned();
        let mut out = Mat::<f64>::zeros(qi.nrows(), rows.ncols());
        faer_matmul(
            out.as_mut(),
            Accum::Replace,
            mat_ref(&qi),
            mat_ref(&rows),
            1.0,
            Par::Seq,
        );
        let mut result = to_ndarray(out.as_ref());
        if args.len() > 2 {
            // times U_R (for the SVD)
            let ur = mat_of(&args[2], "svd")?;
            let left = as_matrix(&result, "svd")?;
            let mut u = Mat::<f64>::zeros(left.nrows(), ur.ncols());
            faer_matmul(u.as_mut(), Accum::Replace, mat_ref(&left), mat_ref(&ur), 1.0, Par::Seq);
            result = to_ndarray(u.as_ref());
        }
        Ok(value(result))
    }
}
blockwise_core::register_op!("array.q-block.f64", crate::kernel::decode::<QBlock>);

/// The factors of a TSQR: `Q` with the row chunks of the input and one
/// column block, and `R` as one block.
#[derive(Clone, Debug)]
pub struct Tsqr {
    /// The orthonormal factor, `m × k`.
    pub q: Array<f64>,
    /// The upper-triangular factor, `k × n`.
    pub r: Array<f64>,
}

fn item_layer(prefix: &str, src: &Meta, index: &[usize], item: u32, chunks: Chunks) -> Meta {
    let mut tok = Tokenizer::new();
    tok.str(prefix).str(src.name.as_str()).u64(u64::from(item));
    for &i in index {
        tok.u64(i as u64);
    }
    let name = tok.name(prefix);
    let op: Arc<dyn Op> = Arc::new(ItemOp(item));
    let out_index = vec![0; chunks.ndim()];
    tasks_layer(
        name,
        vec![src.layer.clone()],
        vec![(out_index, Task::new(op, vec![Input::Key(src.key(index))]))],
        chunks,
    )
}

/// Tall-and-skinny QR of a 2-d array (`m × n` with small `n`). Columns are
/// rechunked into one block if they are not.
pub fn tsqr(a: &Array<f64>) -> Result<Tsqr> {
    let (a, parts, stacked) = tsqr_parts(a)?;
    let n = a.shape()[1];
    let k_total: usize = a.chunks().axis(0).iter().map(|&mi| mi.min(n)).sum();
    let k = k_total.min(n);
    let q = q_blocks(&a, &parts, &stacked, None, k)?;
    let r = Array::from_meta(item_layer("tsqr-r", &stacked, &[], 1, Chunks::single(&[k, n])));
    Ok(Tsqr { q, r })
}

/// The per-block QRs and the QR of the stacked R factors.
fn tsqr_parts(a: &Array<f64>) -> Result<(Array<f64>, Meta, Meta)> {
    if a.ndim() != 2 {
        return Err(Error::invalid(format!(
            "tsqr: expected a 2-d array, found shape {:?}",
            a.shape()
        )));
    }
    let (m, n) = (a.shape()[0], a.shape()[1]);
    if m < n || m == 0 || n == 0 {
        return Err(Error::invalid(format!(
            "tsqr: the array of shape {:?} is not tall and skinny (it needs at least as many rows as columns, and both)",
            a.shape()
        )));
    }
    let a = if a.chunks().axis(1).len() == 1 {
        a.clone()
    } else {
        a.rechunk(vec![a.chunks().axis(0).to_vec(), vec![n]])?
    };
    let qr_op = crate::kernel::op(BlockQr);
    let mut tok = Tokenizer::new();
    tok.str("tsqr").str(a.name().as_str());
    let parts_name = tok.name("tsqr-block-qr");
    let rows = a.chunks().axis(0).len();
    let tasks: Vec<(Vec<usize>, Task)> = (0..rows)
        .map(|i| {
            (
                vec![i, 0],
                Task::new(qr_op.clone(), vec![Input::Key(a.meta.key(&[i, 0]))]),
            )
        })
        .collect();
    let parts = tasks_layer(parts_name, vec![a.meta.layer.clone()], tasks, a.chunks().clone());
    // R factors of every block, stacked and factored again in one task.
    let r_items: Vec<Meta> = (0..rows)
        .map(|i| item_layer("tsqr-r-part", &parts, &[i, 0], 1, Chunks::single(&[1, 1])))
        .collect();
    let stacked_name = Tokenizer::new()
        .str("tsqr-stack")
        .str(a.name().as_str())
        .name("tsqr-stacked-qr");
    let inputs = r_items.iter().map(|r| Input::Key(r.key(&[0, 0]))).collect();
    let deps = r_items.iter().map(|r| r.layer.clone()).collect();
    let stacked = tasks_layer(
        stacked_name,
        deps,
        vec![(vec![], Task::new(qr_op, inputs))],
        Chunks::from_checked(vec![]),
    );
    Ok((a, parts, stacked))
}

/// The blocks of `Q` (or of `Q · U_R` when `ur` is given).
fn q_blocks(a: &Array<f64>, parts: &Meta, stacked: &Meta, ur: Option<&Meta>, k: usize) -> Result<Array<f64>> {
    let n = a.shape()[1];
    let mut tok = Tokenizer::new();
    tok.str("tsqr-q").str(parts.name.as_str());
    if let Some(u) = ur {
        tok.str(u.name.as_str());
    }
    let name = tok.name(if ur.is_some() { "svd-u" } else { "tsqr-q" });
    let mut tasks = Vec::new();
    let mut at = 0;
    for (i, &mi) in a.chunks().axis(0).iter().enumerate() {
        let ki = mi.min(n);
        let op = crate::kernel::op(QBlock {
            start: at,
            end: at + ki,
        });
        at += ki;
        let mut inputs = vec![Input::Key(parts.key(&[i, 0])), Input::Key(stacked.key(&[]))];
        if let Some(u) = ur {
            inputs.push(Input::Key(u.key(&[0, 0])));
        }
        tasks.push((vec![i, 0], Task::new(op, inputs)));
    }
    let mut deps = vec![parts.layer.clone(), stacked.layer.clone()];
    if let Some(u) = ur {
        deps.push(u.layer.clone());
    }
    let chunks = Chunks::from_checked(vec![a.chunks().axis(0).to_vec(), vec![k]]);
    Ok(Array::from_meta(tasks_layer(name, deps, tasks, chunks)))
}

/// SVD of the small R: `(U_R, S, Vᵀ)`.
#[derive(Serialize, Deserialize)]
pub(crate) struct SmallSvd;

impl Kernel for SmallSvd {
    const BASE: &'static str = "array.small-svd";
    fn suffix() -> String {
        "f64".into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let r = mat_of(&tuple_part(&args[0], 1)?, "svd")?;
        let svd = mat_ref(&r)
            .thin_svd()
            .map_err(|e| Error::invalid(format!("svd: the small SVD did not converge: {e:?}")))?;
        let s = svd.S().column_vector();
        let sv: Vec<f64> = (0..s.nrows()).map(|i| s[i]).collect();
        let vt = svd.V().transpose().to_owned();
        Ok(Arc::new(Tuple(vec![
            value(to_ndarray(svd.U())),
            value(ArrayD::from_shape_vec(IxDyn(&[sv.len()]), sv).map_err(|e| Error::graph(e.to_string()))?),
            value(to_ndarray(vt.as_ref())),
        ])))
    }
}
blockwise_core::register_op!("array.small-svd.f64", crate::kernel::decode::<SmallSvd>);

/// The SVD `a = U · diag(S) · Vᵀ` of a tall-and-skinny array.
#[derive(Clone, Debug)]
pub struct Svd {
    /// Left singular vectors, `m × k`, with the row chunks of the input.
    pub u: Array<f64>,
    /// Singular values, non-increasing.
    pub s: Array<f64>,
    /// Right singular vectors (transposed), `k × n`.
    pub vt: Array<f64>,
}

/// SVD of a tall-and-skinny 2-d array through its TSQR.
pub fn svd(a: &Array<f64>) -> Result<Svd> {
    let (a, parts, stacked) = tsqr_parts(a)?;
    let n = a.shape()[1];
    let k_total: usize = a.chunks().axis(0).iter().map(|&mi| mi.min(n)).sum();
    let k = k_total.min(n);
    let mut tok = Tokenizer::new();
    tok.str("svd").str(stacked.name.as_str());
    let small_name = tok.name("svd-small");
    let small = tasks_layer(
        small_name,
        vec![stacked.layer.clone()],
        vec![(
            vec![],
            Task::new(crate::kernel::op(SmallSvd), vec![Input::Key(stacked.key(&[]))]),
        )],
        Chunks::from_checked(vec![]),
    );
    let ur = item_layer("svd-ur", &small, &[], 0, Chunks::single(&[k, k]));
    let u = q_blocks(&a, &parts, &stacked, Some(&ur), k)?;
    let s = Array::from_meta(item_layer("svd-s", &small, &[], 1, Chunks::single(&[k])));
    let vt = Array::from_meta(item_layer("svd-vt", &small, &[], 2, Chunks::single(&[k, n])));
    Ok(Svd { u, s, vt })
}

/// Solves `R x = y` for the upper-triangular `R` of a TSQR.
#[derive(Serialize, Deserialize)]
pub(crate) struct TriSolve {
    vector: bool,
}

impl Kernel for TriSolve {
    const BASE: &'static str = "array.upper-solve";
    fn suffix() -> String {
        "f64".into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let r = mat_of(&tuple_part(&args[0], 1)?, "lstsq")?;
        let y = mat_of(&args[1], "lstsq")?;
        let k = r.nrows();
        if r.ncols() != k {
            return Err(Error::invalid(format!(
                "lstsq: R is {}×{}; the array has fewer independent rows than columns",
                k,
                r.ncols()
            )));
        }
        let mut rhs = Mat::<f64>::from_fn(y.nrows(), y.ncols(), |i, j| y[(i, j)]);
        mat_ref(&r).solve_upper_triangular_in_place(rhs.as_mut());
        let x = to_ndarray(rhs.as_ref());
        Ok(value(if self.vector {
            x.index_axis_move(ndarray::Axis(1), 0)
        } else {
            x
        }))
    }
}
blockwise_core::register_op!("array.upper-solve.f64", crate::kernel::decode::<TriSolve>);

/// `Q_iᵀ b_i` summed over the row blocks, in one task.
#[derive(Serialize, Deserialize)]
pub(crate) struct QtB;

impl Kernel for QtB {
    const BASE: &'static str = "array.qt-b";
    fn suffix() -> String {
        "f64".into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let mut acc: Option<Mat<f64>> = None;
        for pair in args.chunks(2) {
            let q = mat_of(&pair[0], "lstsq")?;
            let b = mat_of(&pair[1], "lstsq")?;
            let dst = acc.get_or_insert_with(|| Mat::zeros(q.ncols(), b.ncols()));
            faer_matmul(
                dst.as_mut(),
                Accum::Add,
                mat_ref(&q).transpose(),
                mat_ref(&b),
                1.0,
                Par::Seq,
            );
        }
        let m = acc.ok_or_else(|| Error::graph("lstsq: no blocks"))?;
        Ok(value(to_ndarray(m.as_ref())))
    }
}
blockwise_core::register_op!("array.qt-b.f64", crate::kernel::decode::<QtB>);

/// Least squares: the `x` minimizing `‖a x − b‖₂` for a tall-and-skinny
/// `a` of full column rank (`b` is 1-d or 2-d, with `a`'s rows).
pub fn lstsq(a: &Array<f64>, b: &Array<f64>) -> Result<Array<f64>> {
    if a.ndim() != 2 || !(1..=2).contains(&b.ndim()) || b.shape()[0] != a.shape()[0] {
        return Err(Error::invalid(format!(
            "lstsq: a must be 2-d and b 1-d or 2-d with as many rows; found shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        )));
    }
    let vector = b.ndim() == 1;
    let b2 = if vector {
        b.reshape(&[b.shape()[0], 1])?
    } else {
        b.clone()
    };
    let t = tsqr(a)?;
    let p = b2.shape()[1];
    let b2 = b2.rechunk(vec![t.q.chunks().axis(0).to_vec(), vec![p]])?;
    let mut tok = Tokenizer::new();
    tok.str("lstsq").str(t.q.name().as_str()).str(b2.name().as_str());
    let qtb_name = tok.name("lstsq-qtb");
    let inputs = (0..t.q.chunks().axis(0).len())
        .flat_map(|i| [Input::Key(t.q.meta.key(&[i, 0])), Input::Key(b2.meta.key(&[i, 0]))])
        .collect();
    let k = t.r.shape()[0];
    let qtb = tasks_layer(
        qtb_name,
        vec![t.q.meta.layer.clone(), b2.meta.layer.clone()],
        vec![(vec![0, 0], Task::new(crate::kernel::op(QtB), inputs))],
        Chunks::single(&[k, p]),
    );
    let n = a.shape()[1];
    let stacked_key = match t.r.layer().body() {
        blockwise_core::LayerBody::Tasks(tasks) => tasks[0].1.inputs[0].clone(),
        blockwise_core::LayerBody::Single(_) | blockwise_core::LayerBody::Blockwise(_) => {
            return Err(Error::graph("lstsq: unexpected R layer"));
        }
    };
    let stacked_layer = t.r.layer().deps()[0].clone();
    let solve_name = Tokenizer::new().str("lstsq-solve").str(qtb.name.as_str()).name("lstsq");
    let chunks = if vector {
        Chunks::single(&[n])
    } else {
        Chunks::single(&[n, p])
    };
    let index = if vector { vec![0] } else { vec![0, 0] };
    let solve = tasks_layer(
        solve_name,
        vec![stacked_layer, qtb.layer.clone()],
        vec![(
            index,
            Task::new(
                crate::kernel::op(TriSolve { vector }),
                vec![stacked_key, Input::Key(qtb.key(&[0, 0]))],
            ),
        )],
        chunks,
    );
    Ok(Array::from_meta(solve))
}

/// Solves `a x = b` for a square, non-singular `a` (through a QR of `a`,
/// which is stable without pivoting across blocks).
pub fn solve(a: &Array<f64>, b: &Array<f64>) -> Result<Array<f64>> {
    if a.ndim() != 2 || a.shape()[0] != a.shape()[1] {
        return Err(Error::invalid(format!(
            "solve: a must be square, found shape {:?}",
            a.shape()
        )));
    }
    lstsq(a, b)
}

/// One block of a blocked Cholesky factor.
#[derive(Serialize, Deserialize)]
pub(crate) struct CholBlock {
    /// Diagonal block (factor) or below-diagonal block (triangular solve).
    diagonal: bool,
    /// Number of `(L_ij, L_kj)` pairs after the `A` block.
    pairs: usize,
    /// The block's position, for messages.
    at: (usize, usize),
}

impl Kernel for CholBlock {
    const BASE: &'static str = "array.cholesky-block";
    fn suffix() -> String {
        "f64".into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let a = mat_of(&args[0], "cholesky")?;
        let mut s = Mat::<f64>::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)]);
        for p in 0..self.pairs {
            let lij = mat_of(&args[1 + 2 * p], "cholesky")?;
            let lkj = mat_of(&args[2 + 2 * p], "cholesky")?;
            faer_matmul(
                s.as_mut(),
                Accum::Add,
                mat_ref(&lij),
                mat_ref(&lkj).transpose(),
                -1.0,
                Par::Seq,
            );
        }
        if self.diagonal {
            let llt = s.llt(faer::Side::Lower).map_err(|e| {
                Error::invalid(format!(
                    "cholesky: the matrix is not positive definite (found in diagonal block {:?}: {e:?})",
                    self.at
                ))
            })?;
            return Ok(value(to_ndarray(llt.L())));
        }
        // X · L_kkᵀ = S  ⇔  L_kk · Xᵀ = Sᵀ
        let lkk = mat_of(&args[1 + 2 * self.pairs], "cholesky")?;
        let mut xt = s.transpose().to_owned();
        mat_ref(&lkk).solve_lower_triangular_in_place(xt.as_mut());
        Ok(value(to_ndarray(xt.transpose())))
    }
}
blockwise_core::register_op!("array.cholesky-block.f64", crate::kernel::decode::<CholBlock>);

/// The lower-triangular Cholesky factor `L` of a symmetric positive
/// definite array (`a = L Lᵀ`; only the lower triangle of `a` is read).
/// Columns are rechunked like the rows, so blocks are square.
pub fn cholesky(a: &Array<f64>) -> Result<Array<f64>> {
    if a.ndim() != 2 || a.shape()[0] != a.shape()[1] {
        return Err(Error::invalid(format!(
            "cholesky: a must be square, found shape {:?}",
            a.shape()
        )));
    }
    let rows = a.chunks().axis(0).to_vec();
    let a = a.rechunk(vec![rows.clone(), rows.clone()])?;
    let nb = rows.len();
    let name = Tokenizer::new().str("cholesky").str(a.name().as_str()).name("cholesky");
    let key = |i: usize, j: usize| Input::Key(blockwise_core::Key::new(name.clone(), &[i as u32, j as u32]));
    let mut tasks = Vec::with_capacity(nb * nb);
    for i in 0..nb {
        for k in 0..nb {
            if k > i {
                tasks.push((vec![i, k], zeros_task(rows[i], rows[k])));
                continue;
            }
            let mut inputs = vec![Input::Key(a.meta.key(&[i, k]))];
            for j in 0..k {
                inputs.push(key(i, j));
                inputs.push(key(k, j));
            }
            if i != k {
                inputs.push(key(k, k));
            }
            let op = crate::kernel::op(CholBlock {
                diagonal: i == k,
                pairs: k,
                at: (i, k),
            });
            tasks.push((vec![i, k], Task::new(op, inputs)));
        }
    }
    let chunks = a.chunks().clone();
    Ok(Array::from_meta(tasks_layer(
        name,
        vec![a.meta.layer.clone()],
        tasks,
        chunks,
    )))
}

/// A task producing a zero block (upper triangle of `L`).
fn zeros_task(r: usize, c: usize) -> Task {
    let block: Value = value(ArrayD::<f64>::zeros(IxDyn(&[r, c])));
    Task::new(blockwise_core::op::identity(), vec![Input::Literal(block)])
}

impl Array<f64> {
    /// Matrix product `self @ other` of 2-d arrays.
    pub fn matmul(&self, other: &Array<f64>) -> Result<Array<f64>> {
        matmul_arrays(self, other)
    }

    /// NumPy's `dot` (see [`dot`]).
    pub fn dot(&self, other: &Array<f64>) -> Result<Array<f64>> {
        dot(self, other)
    }
}
