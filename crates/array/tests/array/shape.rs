//! Shape: rechunk, slicing, take, transpose, reshape, concatenate, stack.

use blockwise_array::{concatenate, from_array, random, stack};
use blockwise_core::ErrorKind;
use ndarray::{Axis, IxDyn};
use proptest::prelude::*;

use crate::common::*;

#[test]
fn rechunk_reads_only_overlapping_blocks() {
    let a = data(&[10, 9]);
    let x = from_array(&a, &[3, 4]).unwrap();
    let y = x.rechunk(&[4, 2]).unwrap();
    assert_eq!(y.chunks().axis(0), &[4, 4, 2]);
    assert_computes(&y, &a);
    let z = y.rechunk(vec![vec![10], vec![1, 8]]).unwrap();
    assert_computes(&z, &a);
    // each output task reads only the blocks it overlaps
    if let blockwise_core::LayerBody::Tasks(tasks) = y.layer().body() {
        let (_, first) = &tasks[0];
        assert_eq!(first.inputs.len(), 2, "block (0,0) of 4x2 overlaps 2x1 input blocks");
    } else {
        panic!("rechunk is an explicit layer");
    }
    let err = x.rechunk(vec![vec![5, 4], vec![9]]).unwrap_err();
    assert!(err.to_string().contains("axis 0 sum to 9"), "{err}");
}

#[test]
fn slicing_like_ndarray() {
    let a = data(&[11, 8, 3]);
    let x = from_array(&a, &[4, 3, 2]).unwrap();
    let cases = [
        vec![sl(2, Some(9), 1), all(), at(1)],
        vec![sl(0, None, 3), sl(1, Some(7), 2)],
        vec![sl(0, None, -1), at(5), new_axis(), all()],
        vec![sl(-4, None, 1), sl(0, Some(-2), 1), sl(0, Some(1), 1)],
        vec![sl(3, Some(9), -2), sl(0, None, -3)],
        vec![sl(4, Some(4), 1)],
        vec![new_axis(), at(10), at(-1), at(2)],
    ];
    for info in &cases {
        let got = x.slice(info).unwrap();
        assert_computes(&got, &slice_nd(&a, info));
    }
    let err = x.slice([at(11)]).unwrap_err();
    assert!(
        err.to_string().contains("index 11 is out of bounds for axis 0"),
        "{err}"
    );
    let err = x.slice([all(), all(), all(), at(1)]).unwrap_err();
    assert!(err.to_string().contains("4 axes"), "{err}");
}

#[test]
fn slicing_a_huge_array_computes_only_touched_blocks() {
    // 10^6 blocks: only the layer rules exist until the slice asks for one block.
    let x = random::uniform(&[1_000_000, 1_000], &[1_000, 1], 5).unwrap();
    let y = (&x * 2.0).slice([at(500_123), sl(7, Some(9), 1)]).unwrap();
    let v = compute_both(&y);
    assert_eq!(v.shape(), &[2]);
    assert!(v.iter().all(|&e| (0.0..2.0).contains(&e)));
}

#[test]
fn take_transpose_swapaxes() {
    let a = data(&[7, 5, 3]);
    let x = from_array(&a, &[3, 2, 2]).unwrap();
    let idx = [6isize, 0, 1, -1, 3, 3];
    let expected = a.select(Axis(0), &[6, 0, 1, 6, 3, 3]);
    assert_computes(&x.take(&idx, 0).unwrap(), &expected);
    assert_computes(&x.take(&[4, 2], 1).unwrap(), &a.select(Axis(1), &[4, 2]));
    let err = x.take(&[5], 1).unwrap_err();
    assert!(err.to_string().contains("index 5 is out of bounds for axis 1"), "{err}");
    assert_computes(&x.t(), &a.t().to_owned());
    assert_computes(
        &x.permute(&[1, 2, 0]).unwrap(),
        &a.view().permuted_axes(IxDyn(&[1, 2, 0])).to_owned(),
    );
    assert_computes(
        &x.swapaxes(0, 2).unwrap(),
        &a.view().permuted_axes(IxDyn(&[2, 1, 0])).to_owned(),
    );
    let err = x.permute(&[0, 0, 1]).unwrap_err();
    assert!(err.to_string().contains("repeated"), "{err}");
    let err = x.swapaxes(0, 3).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
}

#[test]
fn reshape_where_chunks_allow_and_a_clear_error_where_not() {
    let a = data(&[6, 4, 5]);
    let flat = a.clone().into_shape_with_order(IxDyn(&[120])).unwrap();
    let x = from_array(&a, vec![vec![2, 4], vec![4], vec![5]]).unwrap();
    assert_computes(&x.reshape(&[120]).unwrap(), &flat);
    assert_computes(
        &x.reshape(&[6, 20]).unwrap(),
        &flat.clone().into_shape_with_order(IxDyn(&[6, 20])).unwrap(),
    );
    assert_computes(
        &x.reshape(&[3, 2, 1, 20]).unwrap(),
        &flat.clone().into_shape_with_order(IxDyn(&[3, 2, 1, 20])).unwrap(),
    );
    let v = from_array(&flat, &[40]).unwrap();
    assert_computes(
        &v.reshape(&[12, 10]).unwrap(),
        &flat.clone().into_shape_with_order(IxDyn(&[12, 10])).unwrap(),
    );
    let err = v.reshape(&[10, 12]).unwrap_err();
    assert!(err.to_string().contains("rechunk axis 0"), "{err}");
    let ok = from_array(&a, &[3, 2, 5]).unwrap().reshape(&[6, 20]).unwrap();
    assert_eq!(ok.chunks().axis(1), &[10, 10]);
    assert_computes(&ok, &flat.clone().into_shape_with_order(IxDyn(&[6, 20])).unwrap());
    let y = from_array(&a, &[3, 2, 3]).unwrap();
    let err = y.reshape(&[6, 20]).unwrap_err();
    assert!(err.to_string().contains("axis 2"), "{err}");
    assert!(err.to_string().contains("one block"), "{err}");
    let err = y.reshape(&[7, 20]).unwrap_err();
    assert!(err.to_string().contains("120 elements"), "{err}");
    assert_computes(
        &y.rechunk(vec![vec![3, 3], vec![2, 2], vec![5]])
            .unwrap()
            .reshape(&[6, 20])
            .unwrap(),
        &flat.into_shape_with_order(IxDyn(&[6, 20])).unwrap(),
    );
}

#[test]
fn concatenate_and_stack() {
    let a = data(&[4, 5]);
    let b = data(&[3, 5]).mapv(|v| v + 100.0);
    let x = from_array(&a, &[3, 2]).unwrap();
    let y = from_array(&b, &[2, 3]).unwrap();
    let c = concatenate(&[&x, &y], 0).unwrap();
    assert_computes(&c, &ndarray::concatenate(Axis(0), &[a.view(), b.view()]).unwrap());
    let err = concatenate(&[&x, &y], 1).unwrap_err();
    assert!(err.to_string().contains("array 1 has shape [3, 5]"), "{err}");
    let z = from_array(&slice_nd(&b, &[sl(0, Some(3), 1), sl(0, Some(4), 1)]), &[2, 2]).unwrap();
    let err = stack(&[&y, &z], 0).unwrap_err();
    assert!(err.to_string().contains("array 1 has shape [3, 4]"), "{err}");
    let w = from_array(&b, &[1, 5]).unwrap();
    let st = stack(&[&y, &w, &y], 1).unwrap();
    assert_computes(&st, &ndarray::stack(Axis(1), &[b.view(), b.view(), b.view()]).unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn rechunk_and_slice_any_chunking(
        (shape, chunks) in strategies::chunked(3, 7),
        (_, target) in strategies::chunked(3, 7),
        start in 0usize..4,
        step in 1isize..4,
        neg in any::<bool>(),
    ) {
        let a = data(&shape);
        let x = from_array(&a, chunks).unwrap();
        if target.len() == shape.len() && target.iter().zip(&shape).all(|(t, &d)| t.iter().sum::<usize>() == d) {
            assert_computes(&x.rechunk(target).unwrap(), &a);
        }
        let st = if neg { -step } else { step };
        let info = vec![sl(start.min(shape[0]) as isize, None, st)];
        let got = x.slice(&info).unwrap();
        assert_computes(&got, &slice_nd(&a, &info));
    }
}
