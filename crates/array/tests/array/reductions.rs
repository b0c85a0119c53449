//! Reductions over axes, keepdims, split_every; NaN variants; stability.

use blockwise_array::{Reduction, from_array, random};
use blockwise_core::ErrorKind;
use ndarray::{ArrayD, Axis, IxDyn};
use proptest::prelude::*;

use crate::common::*;

/// ndarray reference: reduce `a` over `axes` with `f` on each lane (flattened).
fn reference<T: Copy, U>(a: &ArrayD<T>, axes: &[usize], keepdims: bool, f: impl Fn(&[T]) -> U) -> ArrayD<U> {
    let ndim = a.ndim();
    let kept: Vec<usize> = (0..ndim).filter(|d| !axes.contains(d)).collect();
    let mut perm = kept.clone();
    perm.extend(axes);
    let moved = a.view().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned();
    let outer: usize = kept.iter().map(|&d| a.shape()[d]).product();
    let inner: usize = axes.iter().map(|&d| a.shape()[d]).product();
    let flat: Vec<T> = moved.iter().copied().collect();
    let vals: Vec<U> = (0..outer).map(|o| f(&flat[o * inner..(o + 1) * inner])).collect();
    let shape: Vec<usize> = if keepdims {
        (0..ndim)
            .map(|d| if axes.contains(&d) { 1 } else { a.shape()[d] })
            .collect()
    } else {
        kept.iter().map(|&d| a.shape()[d]).collect()
    };
    ArrayD::from_shape_vec(IxDyn(&shape), vals).unwrap()
}

fn var(xs: &[f64], ddof: usize) -> f64 {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - ddof as f64)
}

#[test]
fn sums_means_and_moments_over_axes() {
    let a = data(&[9, 7, 4]);
    let x = from_array(&a, vec![vec![2, 3, 4], vec![3, 3, 1], vec![4]]).unwrap();
    for axes in [vec![0], vec![1], vec![2], vec![0, 2], vec![0, 1, 2]] {
        for keep in [false, true] {
            for split in [2, 3, 16] {
                let r = Reduction::axes(&axes).keepdims(keep).split_every(split);
                let ctx = format!("axes {axes:?} keepdims {keep} split_every {split}");
                let s = x.sum_with(&r).unwrap();
                assert_close(&s, &reference(&a, &axes, keep, |l| l.iter().sum()), 1e-12);
                assert_close(
                    &x.mean_with(&r).unwrap(),
                    &reference(&a, &axes, keep, |l| l.iter().sum::<f64>() / l.len() as f64),
                    1e-12,
                );
                assert_close(
                    &x.var_with(&r.clone().ddof(1)).unwrap(),
                    &reference(&a, &axes, keep, |l| var(l, 1)),
                    1e-10,
                );
                assert_close(
                    &x.std_with(&r).unwrap(),
                    &reference(&a, &axes, keep, |l| var(l, 0).sqrt()),
                    1e-10,
                );
                assert_close(
                    &x.min_with(&r).unwrap(),
                    &reference(&a, &axes, keep, |l| l.iter().copied().fold(f64::INFINITY, f64::min)),
                    0.0,
                );
                assert_close(
                    &x.max_with(&r).unwrap(),
                    &reference(&a, &axes, keep, |l| l.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                    0.0,
                );
                assert_close(
                    &x.prod_with(&r).unwrap(),
                    &reference(&a, &axes, keep, |l| l.iter().product()),
                    1e-9,
                );
                let _ = ctx;
            }
        }
    }
}

#[test]
fn argmin_argmax_take_the_first_occurrence() {
    let a = ArrayD::from_shape_vec(
        IxDyn(&[3, 5]),
        vec![3., 1., 4., 1., 5., 9., 2., 6., 5., 3., 5., 8., 9., 7., 9.],
    )
    .unwrap();
    let x = from_array(&a, &[2, 2]).unwrap();
    assert_computes(&x.argmin().unwrap(), &ArrayD::from_elem(IxDyn(&[]), 1i64));
    assert_computes(&x.argmax().unwrap(), &ArrayD::from_elem(IxDyn(&[]), 5i64));
    let am0 = reference(&a, &[0], false, |l| first_arg(l, |p, q| p < q));
    assert_computes(&x.argmin_axis(0).unwrap(), &am0);
    let ax1 = reference(&a, &[1], false, |l| first_arg(l, |p, q| p > q));
    assert_computes(&x.argmax_with(&Reduction::axis(1).split_every(2)).unwrap(), &ax1);
}

fn first_arg(l: &[f64], better: impl Fn(f64, f64) -> bool) -> i64 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if better(v, l[best]) {
            best = i;
        }
    }
    best as i64
}

#[test]
fn nan_variants_skip_nan_and_plain_ones_propagate_it() {
    let mut a = data(&[6, 4]);
    a[[1, 2]] = f64::NAN;
    a[[4, 0]] = f64::NAN;
    let x = from_array(&a, &[4, 3]).unwrap();
    let s = compute_both(&x.sum_axis(0).unwrap());
    assert!(s[[2]].is_nan() && s[[0]].is_nan() && !s[[1]].is_nan());
    let clean = |l: &[f64]| l.iter().copied().filter(|v| !v.is_nan()).collect::<Vec<_>>();
    assert_close(
        &x.nansum_axis(0).unwrap(),
        &reference(&a, &[0], false, |l| clean(l).iter().sum()),
        1e-12,
    );
    assert_close(
        &x.nanmean_axis(1).unwrap(),
        &reference(&a, &[1], false, |l| {
            let c = clean(l);
            c.iter().sum::<f64>() / c.len() as f64
        }),
        1e-12,
    );
    assert_close(
        &x.nanmax().unwrap(),
        &reference(&a, &[0, 1], false, |l| {
            clean(l).into_iter().fold(f64::NEG_INFINITY, f64::max)
        }),
        0.0,
    );
    assert_close(
        &x.nanvar_with(&Reduction::axis(0).ddof(1)).unwrap(),
        &reference(&a, &[0], false, |l| var(&clean(l), 1)),
        1e-10,
    );
    let nm = compute_both(&x.nanargmin_axis(0).unwrap());
    let expected = reference(&a, &[0], false, |l| {
        let mut best: Option<usize> = None;
        for (i, &v) in l.iter().enumerate() {
            if !v.is_nan() && best.is_none_or(|b| v < l[b]) {
                best = Some(i);
            }
        }
        best.unwrap() as i64
    });
    assert_eq!(nm, expected);
    assert_computes(
        &x.argmax_axis(1).unwrap(),
        &reference(&a, &[1], false, |l| {
            l.iter()
                .position(|v| v.is_nan())
                .map(|p| p as i64)
                .unwrap_or_else(|| first_arg(l, |p, q| p > q))
        }),
    );
}

#[test]
fn variance_is_stable_far_from_zero() {
    let a = data(&[4000]).mapv(|v| 1e9 + v);
    let x = from_array(&a, &[300]).unwrap();
    let got = compute_both(&x.var().unwrap()).into_iter().next().unwrap();
    let expected = var(a.as_slice().unwrap(), 0);
    assert!((got - expected).abs() / expected < 1e-6, "{got} vs {expected}");
}

#[test]
fn integer_and_bool_reductions() {
    let a = ArrayD::from_shape_fn(IxDyn(&[5, 6]), |i| (i[0] * 7 + i[1] * 3) as i32 % 11 - 5);
    let x = from_array(&a, &[2, 4]).unwrap();
    assert_computes(&x.sum_axis(1).unwrap(), &a.sum_axis(Axis(1)));
    assert_computes(
        &x.max().unwrap(),
        &ArrayD::from_elem(IxDyn(&[]), *a.iter().max().unwrap()),
    );
    assert_computes(
        &x.any_axis(0).unwrap(),
        &reference(&a, &[0], false, |l| l.iter().any(|&v| v != 0)),
    );
    assert_computes(
        &x.all_axis(1).unwrap(),
        &reference(&a, &[1], false, |l| l.iter().all(|&v| v != 0)),
    );
    let b = x.greater(0).unwrap();
    assert_computes(&b.any().unwrap(), &ArrayD::from_elem(IxDyn(&[]), true));
    assert_computes(&b.all().unwrap(), &ArrayD::from_elem(IxDyn(&[]), false));
    let m = compute_both(&x.mean_axis(0).unwrap());
    assert!(same(&m, &a.mapv(f64::from).mean_axis(Axis(0)).unwrap(), 1e-12));
}

#[test]
fn bad_axes_are_errors_before_compute() {
    let x = random::uniform(&[4, 5], &[2, 2], 1).unwrap();
    let err = x.sum_axis(2).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("axis 2 is out of range"), "{err}");
    let err = x.mean_with(&Reduction::axes(&[1, 1])).unwrap_err();
    assert!(err.to_string().contains("repeated"), "{err}");
    let err = x.sum_with(&Reduction::all().split_every(1)).unwrap_err();
    assert!(err.to_string().contains("split_every"), "{err}");
    let empty = from_array(&ArrayD::<f64>::zeros(IxDyn(&[0, 3])), &[2, 2]).unwrap();
    let err = empty.min_axis(0).unwrap_err();
    assert!(err.to_string().contains("no identity"), "{err}");
    assert_computes(&empty.sum_axis(0).unwrap(), &ArrayD::zeros(IxDyn(&[3])));
}

#[test]
fn many_blocks_reduce_in_several_levels() {
    let x = random::uniform(&[64, 64], &[2, 2], 3).unwrap();
    let a = compute_both(&x);
    let s = x.sum_with(&Reduction::all().split_every(4)).unwrap();
    assert_close(&s, &ArrayD::from_elem(IxDyn(&[]), a.sum()), 1e-12);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn reductions_match_ndarray_for_any_chunking(
        (shape, chunks) in strategies::chunked(3, 6),
        axis_pick in 0usize..3,
        keep in any::<bool>(),
        split in 2usize..5,
    ) {
        let a = data(&shape);
        let x = from_array(&a, chunks).unwrap();
        let axis = axis_pick % shape.len();
        let r = Reduction::axis(axis).keepdims(keep).split_every(split);
        assert_close(&x.sum_with(&r).unwrap(), &reference(&a, &[axis], keep, |l| l.iter().sum()), 1e-12);
        assert_close(&x.var_with(&r).unwrap(), &reference(&a, &[axis], keep, |l| var(l, 0)), 1e-10);
        assert_close(&x.max_with(&r).unwrap(), &reference(&a, &[axis], keep, |l| l.iter().copied().fold(f64::NEG_INFINITY, f64::max)), 0.0);
        assert_computes(&x.argmin_with(&r).unwrap(), &reference(&a, &[axis], keep, |l| first_arg(l, |p, q| p < q)));
    }
}
