//! Elementwise: arithmetic, broadcasting across chunkings, math, where, clip, casts.

use blockwise_array::{Array, from_array, where_};
use blockwise_core::ErrorKind;
use ndarray::{ArrayD, IxDyn, Zip};
use proptest::prelude::*;

use crate::common::*;

fn arr(shape: &[usize], chunks: Vec<Vec<usize>>) -> (ArrayD<f64>, Array<f64>) {
    let a = data(shape);
    let x = from_array(&a, chunks).unwrap();
    (a, x)
}

#[test]
fn scalar_arithmetic_and_math() {
    let (a, x) = arr(&[6, 5], vec![vec![2, 4], vec![3, 2]]);
    assert_computes(&(&x + 1.5), &(&a + 1.5));
    assert_computes(&(&x * -2.0), &(&a * -2.0));
    assert_computes(&(&x / 4.0), &(&a / 4.0));
    assert_computes(&(&x - 3.0), &(&a - 3.0));
    assert_computes(&x.rsub(1.0), &a.mapv(|v| 1.0 - v));
    assert_computes(&-&x, &a.mapv(|v| -v));
    assert_computes(&x.abs().sqrt(), &a.mapv(|v| v.abs().sqrt()));
    assert_computes(&x.exp().ln(), &a.mapv(|v| v.exp().ln()));
    assert_computes(&x.sin(), &a.mapv(f64::sin));
    assert_computes(&x.cos(), &a.mapv(f64::cos));
    assert_computes(&x.tanh(), &a.mapv(f64::tanh));
    assert_computes(&x.pow(2.0).unwrap(), &a.mapv(|v| v.powf(2.0)));
    assert_computes(&x.floor(), &a.mapv(f64::floor));
    assert_computes(&x.clip(Some(-1.0), Some(2.0)).unwrap(), &a.mapv(|v| v.clamp(-1.0, 2.0)));
    assert_computes(&x.maximum(0.0).unwrap(), &a.mapv(|v| v.max(0.0)));
    let err = x.clip(Some(3.0), Some(1.0)).unwrap_err();
    assert!(err.to_string().contains("lower bound 3"), "{err}");
}

#[test]
fn integer_arithmetic_wraps_and_divides_safely() {
    let a = ArrayD::from_shape_fn(IxDyn(&[4, 3]), |i| (i[0] as i32 - 2) * 1_000_000_000);
    let x = from_array(&a, &[3, 2]).unwrap();
    assert_computes(&(&x * 3), &a.mapv(|v| v.wrapping_mul(3)));
    assert_computes(&(&x / 0), &a.mapv(|_| 0));
    let b = ArrayD::from_shape_fn(IxDyn(&[4, 3]), |i| i[1] as i32);
    let y = from_array(&b, &[2, 3]).unwrap();
    let expected = Zip::from(&a)
        .and(&b)
        .map_collect(|&p, &q| if q == 0 { 0 } else { p.wrapping_rem(q) });
    assert_computes(&x.rem(&y).unwrap(), &expected);
}

#[test]
fn broadcasting_with_different_chunks() {
    let (a, x) = arr(&[6, 5], vec![vec![2, 4], vec![3, 2]]);
    let (b, y) = arr(&[6, 5], vec![vec![3, 3], vec![1, 4]]);
    let sum = x.add(&y).unwrap();
    assert_eq!(sum.chunks().axis(0), &[2, 1, 3]);
    assert_eq!(sum.chunks().axis(1), &[1, 2, 2]);
    assert_computes(&sum, &(&a + &b));
    // row vector and column vector
    let (r, row) = arr(&[5], vec![vec![2, 3]]);
    assert_computes(&x.mul(&row).unwrap(), &(&a * &r));
    let (c, col) = arr(&[6, 1], vec![vec![6], vec![1]]);
    assert_computes(&x.sub(&col).unwrap(), &(&a - &c));
    assert_computes(&col.sub(&row).unwrap(), &(&c - &r));
    assert_computes(&(&x + &y).unwrap(), &(&a + &b));
}

#[test]
fn mismatched_shapes_name_both_shapes_and_the_axis() {
    let (_, x) = arr(&[6, 5], vec![vec![6], vec![5]]);
    let (_, y) = arr(&[4, 5], vec![vec![4], vec![5]]);
    let err = x.add(&y).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
    let msg = err.to_string();
    assert!(
        msg.contains("[6, 5]") && msg.contains("[4, 5]") && msg.contains("axis 0"),
        "{msg}"
    );
}

#[test]
fn comparisons_where_and_logic() {
    let (a, x) = arr(&[7, 4], vec![vec![3, 4], vec![2, 2]]);
    let (b, y) = arr(&[4], vec![vec![1, 3]]);
    let gt = x.greater(&y).unwrap();
    let expected = Zip::from(&a).and_broadcast(&b).map_collect(|&p, &q| p > q);
    assert_computes(&gt, &expected);
    assert_computes(&x.less_equal(0.0).unwrap(), &a.mapv(|v| v <= 0.0));
    let w = where_(&gt, &x, 0.0).unwrap();
    assert_computes(
        &w,
        &Zip::from(&a)
            .and_broadcast(&b)
            .map_collect(|&p, &q| if p > q { p } else { 0.0 }),
    );
    let both = gt.and(&x.greater(-1.0).unwrap()).unwrap();
    assert_computes(&both, &(&a.mapv(|v| v > -1.0) & &expected));
    assert_computes(&gt.not(), &expected.mapv(|v| !v));
}

#[test]
fn casting_between_element_types() {
    let (a, x) = arr(&[5, 3], vec![vec![2, 3], vec![3]]);
    assert_computes(&x.astype::<i32>(), &a.mapv(|v| v as i32));
    assert_computes(&x.astype::<u8>(), &a.mapv(|v| v as u8));
    assert_computes(&x.astype::<bool>(), &a.mapv(|v| v != 0.0));
    assert_computes(&x.astype::<f32>().astype::<f64>(), &a.mapv(|v| v as f32 as f64));
    assert_computes(
        &x.greater(0.0).unwrap().astype::<i64>(),
        &a.mapv(|v| i64::from(v > 0.0)),
    );
    let nan = from_array(
        &ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0, f64::NAN, f64::INFINITY]).unwrap(),
        &[2],
    )
    .unwrap();
    assert_computes(
        &nan.isnan(),
        &ArrayD::from_shape_vec(IxDyn(&[3]), vec![false, true, false]).unwrap(),
    );
    assert_computes(
        &nan.isfinite(),
        &ArrayD::from_shape_vec(IxDyn(&[3]), vec![true, false, false]).unwrap(),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn binary_ops_match_ndarray_for_any_chunkings(
        (shape, c1) in strategies::chunked(3, 6),
        seed in 0u64..1000,
    ) {
        let a = data(&shape);
        let b = a.mapv(|v| v * 0.5 + seed as f64 * 0.01);
        let x = from_array(&a, c1).unwrap();
        let y = from_array(&b, &vec![2; shape.len()][..]).unwrap();
        assert_computes(&x.add(&y).unwrap(), &(&a + &b));
        assert_computes(&x.mul(&y).unwrap().sub(2.0).unwrap(), &(&(&a * &b) - 2.0));
        assert_computes(&x.minimum(&y).unwrap(), &Zip::from(&a).and(&b).map_collect(|&p, &q| p.min(q)));
    }
}
