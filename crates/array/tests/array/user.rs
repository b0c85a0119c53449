//! User code per block, and graphs crossing a process boundary (plan
//! encode → decode → run, as a worker does).

use blockwise_array::{Array, BlockInfo, Boundary, Element, blockwise, from_array, from_block_fn, random};
use blockwise_core::exec::Collection;
use blockwise_core::op::FnEntry;
use blockwise_core::{ErrorKind, Plan, PlanOptions};
use ndarray::{ArrayD, ArrayViewD, Axis, Dimension, Ix2, IxDyn};

use crate::common::*;

fn double(x: ArrayViewD<'_, f64>) -> ArrayD<f64> {
    x.mapv(|v| v * 2.0)
}

fn type_name_of<T>(_: T) -> &'static str {
    std::any::type_name::<T>()
}

static DOUBLE: fn(ArrayViewD<'_, f64>) -> ArrayD<f64> = double;

// What `#[blockwise::task]` submits for a function (done by hand here, so
// this test does not depend on the macro crate).
blockwise_core::__private::inventory::submit! {
    FnEntry {
        name: "array_tests::double",
        type_name: || type_name_of(double),
        func: || &DOUBLE,
    }
}

/// Encodes the plan of `a`, decodes it (rebuilding every op from the
/// registry, as a worker process does) and runs the decoded plan.
fn run_decoded<T: Element>(a: &Array<T>) -> blockwise_core::Result<ArrayD<T>> {
    let plan = Plan::build(&a.graph(), &a.output_keys(), &PlanOptions::default())?;
    let mut bytes = Vec::new();
    plan.encode(&mut bytes)?;
    let decoded = Plan::decode(&bytes)?;
    let values = blockwise_local::engine::run(&decoded, 2, &[])?;
    a.finalize(values)
}

#[test]
fn map_blocks_with_closures_and_registered_functions() {
    let a = data(&[7, 6]);
    let x = from_array(&a, &[3, 4]).unwrap();
    let k = 3.0;
    assert_computes(&x.map_blocks(move |b| b.mapv(|v| v + k)), &a.mapv(|v| v + 3.0));
    let y = x.map_blocks(double);
    assert_computes(&y, &a.mapv(|v| v * 2.0));
    assert_eq!(run_decoded(&y).unwrap(), a.mapv(|v| v * 2.0));
    // a closure cannot leave the process: the error names the fix
    let z = x.map_blocks(move |b| b.mapv(|v| v * k));
    let err = run_decoded(&z).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NotRegistered);
    assert!(err.to_string().contains("#[blockwise::task]"), "{err}");
    // changing block shapes needs the output chunks
    let sums = x
        .map_blocks_with_chunks(
            |b| b.sum_axis(Axis(0)).insert_axis(Axis(0)),
            vec![vec![1, 1, 1], vec![4, 2]],
        )
        .unwrap();
    let got = compute_both(&sums);
    assert_eq!(got.shape(), &[3, 6]);
    assert!((got.sum() - a.sum()).abs() < 1e-9);
    // a wrong shape is an error naming the block
    let bad = x.map_blocks(|b| b.slice_axis(Axis(0), (0..1).into()).to_owned());
    let err = blockwise_local::Compute::compute(&bad).unwrap_err();
    assert!(
        err.to_string().contains("block [0, 0]") || err.to_string().contains("shape"),
        "{err}"
    );
}

#[test]
fn built_in_kernels_cross_a_process_boundary() {
    let a = data(&[9, 8]);
    let x = from_array(&a, &[4, 3]).unwrap();
    let r = random::uniform(&[9, 8], &[5, 5], 1).unwrap();
    let expr = ((&x * 2.0).abs().add(&r).unwrap().sqrt().astype::<f32>().astype::<f64>())
        .rechunk(&[3, 8])
        .unwrap()
        .var_axis(0)
        .unwrap();
    let local = compute_both(&expr);
    assert_eq!(run_decoded(&expr).unwrap(), local);
    let am = x.slice([sl(1, None, 2)]).unwrap().t().argmax_axis(1).unwrap();
    assert_eq!(run_decoded(&am).unwrap(), compute_both(&am));
}

#[test]
fn from_block_fn_builds_blocks_from_their_position() {
    let x = from_block_fn::<i64, _>(&[5, 7], &[2, 3], |info: &BlockInfo| {
        ArrayD::from_shape_fn(IxDyn(&info.shape), |i| {
            ((info.offset[0] + i[0]) * 100 + info.offset[1] + i[1]) as i64
        })
    })
    .unwrap();
    assert_computes(
        &x,
        &ArrayD::from_shape_fn(IxDyn(&[5, 7]), |i| (i[0] * 100 + i[1]) as i64),
    );
}

#[test]
fn blockwise_with_and_without_contraction() {
    let a = data(&[6, 5]);
    let b = data(&[5, 4]).mapv(|v| v * 0.3);
    let x = from_array(&a, &[4, 2]).unwrap();
    let y = from_array(&b, &[3, 3]).unwrap();
    let prod = blockwise(
        |v: &[ArrayViewD<'_, f64>]| {
            let l = v[0].view().into_dimensionality::<Ix2>().unwrap();
            let r = v[1].view().into_dimensionality::<Ix2>().unwrap();
            l.dot(&r).into_dyn()
        },
        "ij",
        &[(&x, "ik"), (&y, "kj")],
    )
    .unwrap();
    let expected = a
        .view()
        .into_dimensionality::<Ix2>()
        .unwrap()
        .dot(&b.view().into_dimensionality::<Ix2>().unwrap());
    assert_close(&prod, &expected.into_dyn(), 1e-12);
    let z = from_array(&a.mapv(|v| v - 1.0), &[2, 5]).unwrap();
    let sum = blockwise(
        |v: &[ArrayViewD<'_, f64>]| &v[0] + &v[1],
        "ij",
        &[(&x, "ij"), (&z, "ij")],
    )
    .unwrap();
    assert_computes(&sum, &(&a + &a.mapv(|v| v - 1.0)));
    let err = blockwise(
        |v: &[ArrayViewD<'_, f64>]| v[0].to_owned(),
        "ij",
        &[(&x, "ij"), (&y, "ij")],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("length 6") || err.to_string().contains("length 5"),
        "{err}"
    );
}

/// Sum of each element and its in-bounds neighbours (a 3×3 box, or 3 in 1-d).
fn box_sum(v: ArrayViewD<'_, f64>) -> ArrayD<f64> {
    let shape = v.shape().to_vec();
    ArrayD::from_shape_fn(IxDyn(&shape), |i| {
        let mut s = 0.0;
        let idx = i.slice().to_vec();
        let ranges: Vec<(isize, isize)> = idx.iter().map(|&x| (x as isize - 1, x as isize + 1)).collect();
        let mut stack = vec![Vec::new()];
        for (lo, hi) in ranges {
            stack = stack
                .into_iter()
                .flat_map(|p: Vec<isize>| (lo..=hi).map(move |x| [p.clone(), vec![x]].concat()))
                .collect();
        }
        for p in stack {
            if p.iter().zip(&shape).all(|(&x, &d)| x >= 0 && (x as usize) < d) {
                let q: Vec<usize> = p.iter().map(|&x| x as usize).collect();
                s += v[IxDyn(&q)];
            }
        }
        s
    })
}

fn pad(a: &ArrayD<f64>, boundary: Boundary<f64>) -> ArrayD<f64> {
    let shape: Vec<usize> = a.shape().iter().map(|d| d + 2).collect();
    ArrayD::from_shape_fn(IxDyn(&shape), |i| {
        let mut src = Vec::new();
        for (axis, &x) in i.slice().iter().enumerate() {
            let n = a.shape()[axis] as isize;
            let g = x as isize - 1;
            let s = match boundary {
                _ if (0..n).contains(&g) => g,
                Boundary::Periodic => g.rem_euclid(n),
                Boundary::Reflect => {
                    if g < 0 {
                        -g - 1
                    } else {
                        2 * n - g - 1
                    }
                }
                Boundary::Nearest => g.clamp(0, n - 1),
                Boundary::Constant(_) | Boundary::None => {
                    return match boundary {
                        Boundary::Constant(c) => c,
                        _ => 0.0,
                    };
                }
            };
            src.push(s as usize);
        }
        a[IxDyn(&src)]
    })
}

#[test]
fn map_overlap_matches_the_stencil_on_the_padded_array() {
    let a = data(&[9, 7]);
    let x = from_array(&a, vec![vec![3, 2, 4], vec![2, 3, 2]]).unwrap();
    for boundary in [
        Boundary::Periodic,
        Boundary::Reflect,
        Boundary::Nearest,
        Boundary::Constant(0.0),
        Boundary::Constant(1.5),
    ] {
        let got = x.map_overlap(box_sum, &[1, 1], boundary).unwrap();
        let full = box_sum(pad(&a, boundary).view());
        let expected = full.slice_each_axis(|ax| (1..ax.len - 1).into()).to_owned();
        assert_close(&got, &expected, 1e-12);
    }
    // no halo at the edges: the function sees the array's own edge
    let got = x.map_overlap(box_sum, &[1, 1], Boundary::None).unwrap();
    assert_close(&got, &box_sum(a.view()), 1e-12);
    let err = x.map_overlap(box_sum, &[3, 1], Boundary::Periodic).unwrap_err();
    assert!(
        err.to_string()
            .contains("depth 3 along axis 0 exceeds the smallest block there (2)"),
        "{err}"
    );
    let err = x.map_overlap(box_sum, &[1], Boundary::Periodic).unwrap_err();
    assert!(err.to_string().contains("1 depths"), "{err}");
}

fn smooth(v: ArrayViewD<'_, f64>) -> ArrayD<f64> {
    box_sum(v)
}

static SMOOTH: fn(ArrayViewD<'_, f64>) -> ArrayD<f64> = smooth;

blockwise_core::__private::inventory::submit! {
    FnEntry {
        name: "array_tests::smooth",
        type_name: || type_name_of(smooth),
        func: || &SMOOTH,
    }
}

/// Every kind of op, sent through encode → decode → run: a registration
/// whose name differs from the op's runtime name would fail here.
#[test]
fn every_op_kind_survives_encoding() {
    use blockwise_array::{arange, concatenate, eye, full, linalg, linspace, ones, stack, where_, zeros};
    let a = data(&[6, 4]);
    let x = from_array(&a, &[4, 3]).unwrap();
    let check_f64 = |arr: &Array<f64>| assert!(same(&run_decoded(arr).unwrap(), &compute_both(arr), 1e-12), "{arr:?}");
    check_f64(&zeros::<f64>(&[3, 2], &[2, 2]).unwrap());
    check_f64(&ones::<f64>(&[3], &[2]).unwrap());
    check_f64(&eye::<f64>(4, 4, 0, &[3, 3]).unwrap());
    check_f64(&linspace::<f64>(0.0, 1.0, 7, true, &[3]).unwrap());
    check_f64(&arange(0.0, 5.0, 0.5, &[4]).unwrap());
    check_f64(&where_(&x.greater(0.0).unwrap(), &x, -1.0).unwrap());
    check_f64(&x.take(&[3, 0, 5], 0).unwrap());
    check_f64(&concatenate(&[&x, &x], 1).unwrap());
    check_f64(&stack(&[&x, &x], 0).unwrap());
    check_f64(&x.rechunk(&[6, 4]).unwrap().reshape(&[24]).unwrap());
    check_f64(&x.map_overlap(smooth, &[1, 1], Boundary::Reflect).unwrap());
    check_f64(&x.matmul(&x.t()).unwrap());
    check_f64(&linalg::tsqr(&x).unwrap().q);
    check_f64(&linalg::svd(&x).unwrap().s);
    check_f64(
        &linalg::cholesky(
            &(x.matmul(&x.t())
                .unwrap()
                .add(&eye::<f64>(6, 6, 0, &[4, 4]).unwrap().mul(10.0).unwrap()))
            .unwrap(),
        )
        .unwrap(),
    );
    check_f64(&x.nanmean_axis(1).unwrap());
    check_f64(&x.arctan2(&x.t().t()).unwrap());
    let flags = x.greater(0.0).unwrap().and(&x.less(3.0).unwrap()).unwrap();
    assert_eq!(run_decoded(&flags).unwrap(), compute_both(&flags));
    assert_eq!(
        run_decoded(&flags.any_axis(0).unwrap()).unwrap(),
        compute_both(&flags.any_axis(0).unwrap())
    );
    let b = full(&[3], &[2], true).unwrap();
    assert_eq!(run_decoded(&b).unwrap(), compute_both(&b));
    let i = x.astype::<i32>().argmin().unwrap();
    assert_eq!(run_decoded(&i).unwrap(), compute_both(&i));
    let dir = std::env::temp_dir().join(format!("blockwise-array-enc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    x.to_npy(dir.join("x.npy")).unwrap();
    x.to_zarr(dir.join("z"), blockwise_array::ZarrCompression::Zstd(1))
        .unwrap();
    x.to_npy_stack(dir.join("s"), 0).unwrap();
    check_f64(&blockwise_array::from_npy::<f64>(dir.join("x.npy"), &[4, 4]).unwrap());
    check_f64(&blockwise_array::from_zarr::<f64>(dir.join("z"), None).unwrap());
    check_f64(&blockwise_array::from_npy_stack::<f64>(dir.join("s")).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn public_types_are_send_and_sync() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Array<f64>>();
    is_send_sync::<Array<bool>>();
    is_send_sync::<blockwise_array::Chunks>();
    is_send_sync::<blockwise_array::Reduction>();
    is_send_sync::<blockwise_array::linalg::Svd>();
}
