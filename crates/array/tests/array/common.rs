//! Helpers: run on both executors, compare with ndarray.

use blockwise_array::{Array, Element};
use blockwise_local::{Compute, ComputeOptions, Scheduler};
use ndarray::ArrayD;

/// Both local executors.
pub(crate) fn executors() -> Vec<ComputeOptions> {
    vec![
        ComputeOptions::new().scheduler(Scheduler::Sync),
        ComputeOptions::new().scheduler(Scheduler::Threads(Some(2))),
    ]
}

/// Computes on both executors, checks they agree, and returns the result.
pub(crate) fn compute_both<T: Element>(a: &Array<T>) -> ArrayD<T> {
    let mut out: Option<ArrayD<T>> = None;
    for o in executors() {
        let r = a.compute_with(o).unwrap_or_else(|e| panic!("compute failed: {e}"));
        assert_eq!(r.shape(), a.shape(), "result shape differs from the array's shape");
        if let Some(prev) = &out {
            assert!(same(prev, &r, 0.0), "sync and threads disagree:\n{prev}\n{r}");
        }
        out = Some(r);
    }
    out.expect("two executors")
}

/// Whether two arrays are equal (floats within `tol` relative, NaN == NaN).
pub(crate) fn same<T: Element>(a: &ArrayD<T>, b: &ArrayD<T>, tol: f64) -> bool {
    a.shape() == b.shape()
        && a.iter().zip(b.iter()).all(|(&x, &y)| {
            if x == y {
                return true;
            }
            let (fx, fy): (f64, f64) = (x.cast(), y.cast());
            (fx.is_nan() && fy.is_nan()) || (fx - fy).abs() <= tol * (1.0 + fx.abs().max(fy.abs()))
        })
}

/// Asserts that computing `a` on both executors gives `expected`.
#[track_caller]
pub(crate) fn assert_computes<T: Element>(a: &Array<T>, expected: &ArrayD<T>) {
    assert_close(a, expected, 1e-9);
}

/// Same as [`assert_computes`] with a tolerance for floats.
#[track_caller]
pub(crate) fn assert_close<T: Element>(a: &Array<T>, expected: &ArrayD<T>, tol: f64) {
    let got = compute_both(a);
    assert!(
        same(&got, expected, tol),
        "got\n{got}\nexpected\n{expected}\n(array {a:?})"
    );
}

/// A deterministic test array of `shape`: small varied values.
pub(crate) fn data(shape: &[usize]) -> ArrayD<f64> {
    let mut k = 0u64;
    ArrayD::from_shape_simple_fn(shape, || {
        k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((k >> 33) % 1000) as f64 / 100.0 - 5.0
    })
}

/// A slice element `start..end;step` (ndarray's semantics).
pub(crate) fn sl(start: isize, end: Option<isize>, step: isize) -> ndarray::SliceInfoElem {
    ndarray::SliceInfoElem::Slice { start, end, step }
}

/// The whole axis.
pub(crate) fn all() -> ndarray::SliceInfoElem {
    sl(0, None, 1)
}

/// An integer index.
pub(crate) fn at(i: isize) -> ndarray::SliceInfoElem {
    ndarray::SliceInfoElem::Index(i)
}

/// A new axis.
pub(crate) fn new_axis() -> ndarray::SliceInfoElem {
    ndarray::SliceInfoElem::NewAxis
}

/// Slices an in-memory array the same way.
pub(crate) fn slice_nd<T: Clone>(a: &ArrayD<T>, info: &[ndarray::SliceInfoElem]) -> ArrayD<T> {
    let mut full = info.to_vec();
    let indexed = info
        .iter()
        .filter(|e| !matches!(e, ndarray::SliceInfoElem::NewAxis))
        .count();
    for _ in indexed..a.ndim() {
        full.push(all());
    }
    a.slice(ndarray::SliceInfo::<_, ndarray::IxDyn, ndarray::IxDyn>::try_from(full).unwrap())
        .to_owned()
}

/// proptest strategies for shapes and chunkings.
pub(crate) mod strategies {
    use proptest::prelude::*;

    /// A shape of 1 to `max_ndim` axes, each 1 to `max_len`.
    pub(crate) fn shape(max_ndim: usize, max_len: usize) -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1..=max_len, 1..=max_ndim)
    }

    /// Explicit chunk sizes for `shape`: random cut points per axis.
    pub(crate) fn chunks_for(shape: Vec<usize>) -> impl Strategy<Value = (Vec<usize>, Vec<Vec<usize>>)> {
        let per_axis: Vec<_> = shape
            .iter()
            .map(|&d| prop::collection::vec(any::<bool>(), d.saturating_sub(1)))
            .collect();
        (Just(shape), per_axis).prop_map(|(shape, cuts)| {
            let chunks = shape
                .iter()
                .zip(cuts)
                .map(|(_, cut)| {
                    let mut sizes = Vec::new();
                    let mut run = 1;
                    for c in &cut {
                        if *c {
                            sizes.push(run);
                            run = 1;
                        } else {
                            run += 1;
                        }
                    }
                    sizes.push(run);
                    sizes
                })
                .collect();
            (shape, chunks)
        })
    }

    /// A shape with a random chunking.
    pub(crate) fn chunked(max_ndim: usize, max_len: usize) -> impl Strategy<Value = (Vec<usize>, Vec<Vec<usize>>)> {
        shape(max_ndim, max_len).prop_flat_map(chunks_for)
    }
}
