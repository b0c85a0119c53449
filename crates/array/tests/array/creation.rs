//! Creation: from_array, constants, ranges, eye, random; chunk specs.

use blockwise_array::{ChunkSpec, arange, eye, from_array, full, linspace, ones, random, zeros};
use blockwise_core::ErrorKind;
use blockwise_local::Compute;
use ndarray::{Array2, ArrayD, IxDyn};
use proptest::prelude::*;

use crate::common::*;

#[test]
fn seed_example_means_of_uniform_columns() {
    let x = random::uniform(&[200, 300], &[50, 70], 7).unwrap();
    let m = compute_both(&x.mean_axis(0).unwrap());
    assert_eq!(m.shape(), &[300]);
    let full = compute_both(&x);
    let expected = full.mean_axis(ndarray::Axis(0)).unwrap();
    assert!(same(&m, &expected, 1e-12));
    assert!(full.iter().all(|&v| (0.0..1.0).contains(&v)));
    let overall = full.mean().unwrap();
    assert!((overall - 0.5).abs() < 0.01, "{overall}");
}

#[test]
fn random_is_reproducible_on_any_executor_and_differs_by_seed() {
    let a = compute_both(&random::standard_normal(&[40, 30], &[7, 9], 1).unwrap());
    let b = compute_both(&random::standard_normal(&[40, 30], &[7, 9], 1).unwrap());
    let c = compute_both(&random::standard_normal(&[40, 30], &[7, 9], 2).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mean = a.mean().unwrap();
    let var = a.mapv(|v| (v - mean) * (v - mean)).mean().unwrap();
    assert!(mean.abs() < 0.15 && (var - 1.0).abs() < 0.2, "{mean} {var}");
    let ints = compute_both(&random::integers::<i64>(-3, 4, &[50, 20], &[10, 10], 9).unwrap());
    assert!(ints.iter().all(|&v| (-3..4).contains(&v)));
    assert!(ints.iter().any(|&v| v == -3) && ints.iter().any(|&v| v == 3));
    // a slice computes only its blocks, and they are the same numbers
    let x = random::uniform(&[40, 30], &[7, 9], 5).unwrap();
    let whole = compute_both(&x);
    let info = [sl(3, Some(9), 1), sl(20, None, 1)];
    let corner = compute_both(&x.slice(info).unwrap());
    assert_eq!(corner, slice_nd(&whole, &info));
}

#[test]
fn same_expression_same_names() {
    let a = random::uniform(&[10, 10], &[5, 5], 3).unwrap();
    let b = random::uniform(&[10, 10], &[5, 5], 3).unwrap();
    assert_eq!(a.name(), b.name());
    assert_eq!(a.mean_axis(1).unwrap().name(), b.mean_axis(1).unwrap().name());
    let c = random::uniform(&[10, 10], &[5, 5], 4).unwrap();
    assert_ne!(a.name(), c.name());
    let d = from_array(&data(&[4, 4]), &[2, 2]).unwrap();
    let e = from_array(&data(&[4, 4]), &[2, 2]).unwrap();
    assert_eq!(d.name(), e.name());
}

#[test]
fn constants_ranges_and_eye() {
    assert_computes(&zeros::<f64>(&[5, 7], &[2, 3]).unwrap(), &ArrayD::zeros(IxDyn(&[5, 7])));
    assert_computes(&ones::<i32>(&[5], &[2]).unwrap(), &ArrayD::ones(IxDyn(&[5])));
    assert_computes(
        &full(&[3, 2], &[2, 2], true).unwrap(),
        &ArrayD::from_elem(IxDyn(&[3, 2]), true),
    );
    let r = arange(2i64, 30, 3, &[4]).unwrap();
    let expected: Vec<i64> = (2..30).step_by(3).collect();
    assert_computes(&r, &ArrayD::from_shape_vec(IxDyn(&[expected.len()]), expected).unwrap());
    let r = arange(1.0f64, -1.0, -0.25, &[3]).unwrap();
    assert_computes(&r, &ndarray::Array1::range(1.0, -1.0, -0.25).into_dyn());
    let l = linspace::<f64>(0.0, 1.0, 11, true, &[4]).unwrap();
    assert_close(&l, &ndarray::Array1::linspace(0.0, 1.0, 11).into_dyn(), 1e-12);
    let e = eye::<f64>(5, 7, 1, &[2, 3]).unwrap();
    let mut expected = Array2::<f64>::zeros((5, 7));
    for i in 0..5 {
        expected[[i, i + 1]] = 1.0;
    }
    assert_computes(&e, &expected.into_dyn());
}

#[test]
fn bad_chunks_are_errors_naming_the_axis() {
    let err = from_array(&data(&[6, 4]), vec![vec![3, 2], vec![4]]).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("axis 0 sum to 5"), "{err}");
    let err = zeros::<f64>(&[6, 4], &[3]).unwrap_err();
    assert!(err.to_string().contains("1 axes, the shape [6, 4] has 2"), "{err}");
    let err = random::uniform(&[6, 4], &[0, 2], 1).unwrap_err();
    assert!(err.to_string().contains("axis 0"), "{err}");
    let err = arange(0i64, 5, 0, &[2]).unwrap_err();
    assert!(err.to_string().contains("step is 0"), "{err}");
}

#[test]
fn auto_chunks_follow_configuration() {
    let _g = blockwise_core::config::set([("array.chunk-size", "4KiB")]);
    let x = zeros::<f64>(&[100, 100], ChunkSpec::Auto).unwrap();
    let b = x.chunks().max_block();
    assert!(b[0] * b[1] * 8 <= 4096, "{b:?}");
    assert!(x.chunks().num_blocks() > 1);
    assert_eq!(compute_both(&x).sum(), 0.0);
}

#[test]
fn persist_keeps_values_and_names() {
    let x = random::uniform(&[20, 20], &[5, 5], 11).unwrap();
    let p = x.persist().unwrap();
    assert_eq!(p.name(), x.name());
    assert_eq!(compute_both(&p), compute_both(&x));
    let s = p.sum().unwrap().compute().unwrap();
    let expected: f64 = compute_both(&x).sum();
    assert!((s.into_iter().next().unwrap() - expected).abs() < 1e-9);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn from_array_roundtrips_any_chunking((shape, chunks) in strategies::chunked(3, 7)) {
        let a = data(&shape);
        let x = from_array(&a, chunks.clone()).unwrap();
        prop_assert_eq!(x.chunks().sizes(), &chunks[..]);
        prop_assert_eq!(compute_both(&x), a);
    }
}
