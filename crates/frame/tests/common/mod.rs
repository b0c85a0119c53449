//! Helpers shared by the frame tests: executors, sample data, comparison
//! against Polars on the whole data, temporary directories.

#![allow(dead_code)]

use std::path::PathBuf;

use blockwise_frame::polars::prelude::*;
use blockwise_local::{ComputeOptions, Scheduler};

/// Both local executors: every check runs on each.
pub(crate) fn executors() -> Vec<(&'static str, ComputeOptions)> {
    vec![
        ("sync", ComputeOptions::new().scheduler(Scheduler::Sync)),
        ("threads", ComputeOptions::new().scheduler(Scheduler::Threads(Some(2)))),
    ]
}

/// The partitionings every check runs over.
pub(crate) const PARTITIONINGS: [usize; 3] = [1, 3, 7];

/// A frame with ints, floats, strings, booleans and dates, and nulls.
pub(crate) fn sample(n: usize) -> DataFrame {
    let id: Vec<i64> = (0..n as i64).collect();
    let cats = ["a", "b", "c", "d", "e", "f", "g"];
    let category: Vec<Option<&str>> = (0..n)
        .map(|i| {
            if i % 11 == 5 {
                None
            } else {
                Some(cats[(i * 7 + i / 3) % cats.len()])
            }
        })
        .collect();
    let value: Vec<Option<f64>> = (0..n)
        .map(|i| {
            if i % 13 == 3 {
                None
            } else {
                Some(((i * 37) % 101) as f64 * 0.5 - 12.25 + 1e6)
            }
        })
        .collect();
    let qty: Vec<Option<i64>> = (0..n)
        .map(|i| {
            if i % 17 == 2 {
                None
            } else {
                Some(((i * 5) % 23) as i64 - 4)
            }
        })
        .collect();
    let flag: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    let day: Vec<i32> = (0..n).map(|i| 19000 + (i % 40) as i32).collect();
    let mut df = df!(
        "id" => id,
        "category" => category,
        "value" => value,
        "qty" => qty,
        "flag" => flag,
    )
    .unwrap();
    let day = Series::new("day".into(), day).cast(&DataType::Date).unwrap();
    df.with_column(day.into()).unwrap();
    df
}

/// Runs a Polars lazy query on the whole frame.
pub(crate) fn polars(df: &DataFrame, f: impl FnOnce(LazyFrame) -> LazyFrame) -> DataFrame {
    f(df.clone().lazy()).collect().unwrap()
}

/// Sorts by `by` (all columns when empty), nulls first.
pub(crate) fn sorted(df: &DataFrame, by: &[&str]) -> DataFrame {
    let by: Vec<PlSmallStr> = if by.is_empty() {
        df.get_column_names().into_iter().cloned().collect()
    } else {
        by.iter().map(|s| PlSmallStr::from(*s)).collect()
    };
    df.clone()
        .lazy()
        .sort(by, SortMultipleOptions::default().with_maintain_order(true))
        .collect()
        .unwrap()
}

/// Asserts two frames are equal: same columns, dtypes and values, floats
/// within a relative 1e-9 (tree reductions add in another order). With
/// `sort_by`, both are sorted first (`Some(&[])`: by all columns).
pub(crate) fn assert_same(got: &DataFrame, want: &DataFrame, sort_by: Option<&[&str]>, what: &str) {
    let (got, want) = match sort_by {
        Some(by) => (sorted(got, by), sorted(want, by)),
        None => (got.clone(), want.clone()),
    };
    assert_eq!(
        got.schema(),
        want.schema(),
        "{what}: schemas differ\n got {got}\nwant {want}"
    );
    assert_eq!(
        got.height(),
        want.height(),
        "{what}: row counts differ\n got {got}\nwant {want}"
    );
    for (g, w) in got.columns().iter().zip(want.columns()) {
        let (g, w) = (g.as_materialized_series(), w.as_materialized_series());
        if g.dtype().is_float() {
            let gv: Vec<Option<f64>> = g.cast(&DataType::Float64).unwrap().f64().unwrap().iter().collect();
            let wv: Vec<Option<f64>> = w.cast(&DataType::Float64).unwrap().f64().unwrap().iter().collect();
            for (i, (a, b)) in gv.iter().zip(&wv).enumerate() {
                match (a, b) {
                    (Some(a), Some(b)) if a.is_nan() && b.is_nan() => {}
                    (Some(a), Some(b)) => assert!(
                        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                        "{what}: column {} row {i}: {a} != {b}\n got {got}\nwant {want}",
                        g.name()
                    ),
                    (None, None) => {}
                    _ => panic!(
                        "{what}: column {} row {i}: {a:?} != {b:?}\n got {got}\nwant {want}",
                        g.name()
                    ),
                }
            }
        } else {
            assert!(
                g.equals_missing(w),
                "{what}: column {} differs\n got {got}\nwant {want}",
                g.name()
            );
        }
    }
}

/// A fresh temporary directory for one test.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("blockwise-frame-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
