//! Linear algebra: blocked products, TSQR, SVD, least squares, Cholesky, solve.

use blockwise_array::{from_array, linalg, random};
use blockwise_core::ErrorKind;
use ndarray::{Array2, ArrayD, Ix2, IxDyn};
use proptest::prelude::*;

use crate::common::*;

fn m2(a: &ArrayD<f64>) -> Array2<f64> {
    a.view().into_dimensionality::<Ix2>().unwrap().to_owned()
}

#[test]
fn matmul_and_dot_over_chunkings() {
    let a = data(&[7, 9]);
    let b = data(&[9, 5]).mapv(|v| v * 0.1);
    let expected = m2(&a).dot(&m2(&b)).into_dyn();
    for (ca, cb) in [
        (vec![3, 4], vec![4, 2]),
        (vec![7, 9], vec![2, 5]),
        (vec![2, 2], vec![9, 1]),
    ] {
        let x = from_array(&a, &ca[..]).unwrap();
        let y = from_array(&b, &cb[..]).unwrap();
        assert_close(&x.matmul(&y).unwrap(), &expected, 1e-12);
    }
    let v = data(&[9]);
    let x = from_array(&a, &[3, 4]).unwrap();
    let w = from_array(&v, &[5]).unwrap();
    let mv = m2(&a)
        .dot(&v.view().into_dimensionality::<ndarray::Ix1>().unwrap())
        .into_dyn();
    assert_close(&x.dot(&w).unwrap(), &mv, 1e-12);
    let vv: f64 = v.iter().map(|x| x * x).sum();
    assert_close(&w.dot(&w).unwrap(), &ArrayD::from_elem(IxDyn(&[]), vv), 1e-12);
    let err = x.matmul(&x).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
    assert!(
        err.to_string().contains("axis 1 of a") && err.to_string().contains("has length 9"),
        "{err}"
    );
}

#[test]
fn tensordot_of_three_dimensional_arrays() {
    let a = data(&[4, 5, 6]);
    let b = data(&[6, 5, 3]).mapv(|v| v * 0.2);
    let x = from_array(&a, &[2, 3, 4]).unwrap();
    let y = from_array(&b, &[3, 2, 3]).unwrap();
    let got = linalg::tensordot(&x, &y, &[1, 2], &[1, 0]).unwrap();
    let expected = ArrayD::from_shape_fn(IxDyn(&[4, 3]), |i| {
        let mut s = 0.0;
        for j in 0..5 {
            for k in 0..6 {
                s += a[[i[0], j, k]] * b[[k, j, i[1]]];
            }
        }
        s
    });
    assert_close(&got, &expected, 1e-12);
}

fn close2(a: &Array2<f64>, b: &Array2<f64>, tol: f64) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + x.abs()))
}

#[test]
fn tsqr_and_svd_of_tall_skinny_arrays() {
    let x = random::standard_normal(&[60, 5], &[11, 5], 3).unwrap();
    let a = m2(&compute_both(&x));
    let t = linalg::tsqr(&x).unwrap();
    let q = m2(&compute_both(&t.q));
    let r = m2(&compute_both(&t.r));
    assert!(close2(&q.dot(&r), &a, 1e-10), "Q R != A");
    assert!(close2(&q.t().dot(&q), &Array2::eye(5), 1e-10), "Q not orthonormal");
    assert!(
        (0..5).all(|i| (0..i).all(|j| r[[i, j]].abs() < 1e-12)),
        "R not upper triangular"
    );
    let s = linalg::svd(&x).unwrap();
    let u = m2(&compute_both(&s.u));
    let sv = compute_both(&s.s);
    let vt = m2(&compute_both(&s.vt));
    let us = Array2::from_shape_fn(u.dim(), |(i, j)| u[[i, j]] * sv[[j]]);
    assert!(close2(&us.dot(&vt), &a, 1e-10), "U S Vt != A");
    assert!(
        sv.iter().zip(sv.iter().skip(1)).all(|(p, q)| p >= q),
        "singular values not sorted: {sv}"
    );
    // columns in several blocks are joined first
    let y = x.rechunk(&[11, 2]).unwrap();
    let q2 = m2(&compute_both(&linalg::tsqr(&y).unwrap().q));
    assert_eq!(q2.dim(), (60, 5));
    let err = linalg::tsqr(&x.t()).unwrap_err();
    assert!(err.to_string().contains("not tall and skinny"), "{err}");
}

#[test]
fn least_squares_and_solve() {
    let x = random::standard_normal(&[50, 4], &[12, 4], 8).unwrap();
    let a = m2(&compute_both(&x));
    let truth = ndarray::arr1(&[1.0, -2.0, 0.5, 3.0]);
    let b = a.dot(&truth).into_dyn();
    let bx = from_array(&b, &[10]).unwrap();
    let sol = compute_both(&linalg::lstsq(&x, &bx).unwrap());
    assert!(sol.iter().zip(truth.iter()).all(|(p, q)| (p - q).abs() < 1e-9), "{sol}");
    let sq = random::uniform(&[6, 6], &[3, 3], 2)
        .unwrap()
        .add(&from_array(&(Array2::<f64>::eye(6) * 3.0).into_dyn(), &[3, 3]).unwrap())
        .unwrap();
    let am = m2(&compute_both(&sq));
    let rhs = data(&[6, 2]);
    let xs = m2(&compute_both(
        &linalg::solve(&sq, &from_array(&rhs, &[2, 2]).unwrap()).unwrap(),
    ));
    assert!(close2(&am.dot(&xs), &m2(&rhs), 1e-9));
    let err = linalg::solve(&x, &bx).unwrap_err();
    assert!(err.to_string().contains("square"), "{err}");
}

#[test]
fn cholesky_of_positive_definite_arrays() {
    let g = random::standard_normal(&[9, 9], &[4, 4], 5).unwrap();
    let gm = m2(&compute_both(&g));
    let spd = gm.dot(&gm.t()) + Array2::<f64>::eye(9) * 9.0;
    let x = from_array(&spd.clone().into_dyn(), vec![vec![4, 3, 2], vec![9]]).unwrap();
    let l = m2(&compute_both(&linalg::cholesky(&x).unwrap()));
    assert!(close2(&l.dot(&l.t()), &spd, 1e-10));
    assert!((0..9).all(|i| (i + 1..9).all(|j| l[[i, j]] == 0.0)));
    let not_pd = from_array(&(Array2::<f64>::eye(4) * -1.0).into_dyn(), &[2, 2]).unwrap();
    let err = blockwise_local::Compute::compute(&linalg::cholesky(&not_pd).unwrap()).unwrap_err();
    assert!(err.to_string().contains("not positive definite"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn matmul_matches_ndarray_for_any_chunking(
        (sa, ca) in strategies::chunked(2, 6).prop_filter("2-d", |(s, _)| s.len() == 2),
        k in 1usize..6,
        split in 1usize..4,
    ) {
        let a = data(&sa);
        let b = data(&[sa[1], k]).mapv(|v| v * 0.3);
        let x = from_array(&a, ca).unwrap();
        let y = from_array(&b, &[split, 2]).unwrap();
        assert_close(&x.matmul(&y).unwrap(), &m2(&a).dot(&m2(&b)).into_dyn(), 1e-12);
    }
}
