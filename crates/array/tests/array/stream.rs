//! Reductions fused with the producers of their blocks (`blockwise_array::stream`):
//! the same numbers as the unfused graph, applied only where nothing else
//! reads the producer.

use blockwise_array::stream::FUSE_STREAMS_KEY;
use blockwise_array::{
    Array, Element, Reduction, ZarrCompression, arange, eye, from_zarr, full, linspace, ones, random, zeros,
};
use blockwise_core::exec::Collection;
use blockwise_core::graph::LayerBody;
use blockwise_core::{Graph, Plan, PlanOptions};
use blockwise_local::{Compute, ComputeOptions, compute_graph};
use ndarray::ArrayD;
use proptest::prelude::*;

use crate::common::*;

/// The fusion switch is process-wide configuration and the tests of this
/// binary run side by side: the test that turns it off holds this for
/// writing, every look at the graph a scheduler gets holds it for reading.
static SWITCH: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The graph a scheduler gets for `x`: its graph after the array's
/// optimizations.
fn graph_to_run<T: Element>(x: &Array<T>) -> Graph {
    let _switch = SWITCH.read().unwrap_or_else(|e| e.into_inner());
    optimized(x)
}

fn optimized<T: Element>(x: &Array<T>) -> Graph {
    Array::<T>::optimize(Collection::graph(x), &x.output_keys())
}

/// The op names of every layer of `graph`.
fn names_in(graph: &Graph) -> Vec<String> {
    graph
        .layers()
        .iter()
        .map(|l| match l.body() {
            LayerBody::Blockwise(b) => b.op.name().to_string(),
            LayerBody::Tasks(t) => t.first().map(|(_, t)| t.op.name().to_string()).unwrap_or_default(),
            LayerBody::Single(t) => t.op.name().to_string(),
        })
        .collect()
}

/// The op names of every layer of the graph a scheduler gets.
fn op_names<T: Element>(x: &Array<T>) -> Vec<String> {
    names_in(&graph_to_run(x))
}

fn fused<T: Element>(x: &Array<T>) -> bool {
    op_names(x).iter().any(|n| n.starts_with("array.stream-reduce."))
}

/// Computes the graph as built, without the rewrite.
fn compute_unfused<T: Element>(x: &Array<T>, options: ComputeOptions) -> ArrayD<T> {
    let graph = Graph::from_layer(x.layer().clone());
    let values = compute_graph(&graph, &x.output_keys(), &options).unwrap();
    x.finalize(values).unwrap()
}

/// Fused (the normal path) and unfused give the same numbers, bit for bit,
/// on both executors.
#[track_caller]
fn assert_same_as_unfused<T: Element>(x: &Array<T>) {
    for options in executors() {
        let got = graph_to_run(x);
        let values = compute_graph(&got, &x.output_keys(), &options).unwrap();
        let fused = x.finalize(values).unwrap();
        let plain = compute_unfused(x, options);
        assert_eq!(fused.shape(), plain.shape());
        let same = fused.iter().zip(plain.iter()).all(|(a, b)| {
            let (a, b): (f64, f64) = (a.cast(), b.cast());
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
        });
        assert!(same, "fused\n{fused}\nunfused\n{plain}");
    }
}

#[test]
fn a_reduction_of_random_blocks_is_fused_and_gives_the_same_numbers() {
    let x = random::uniform(&[300, 200], &[70, 60], 42).unwrap();
    let m = x.mean_axis(0).unwrap();
    assert!(fused(&m), "{:?}", op_names(&m));
    assert!(!op_names(&m).iter().any(|n| n.starts_with("array.random.")));
    assert_same_as_unfused(&m);
    // One task fewer per block: the random tasks are gone.
    let keys = m.output_keys();
    let plan = |g: &Graph| Plan::build(g, &keys, &PlanOptions { fuse: false }).unwrap().len();
    let blocks = 5 * 4;
    assert_eq!(
        plan(&Graph::from_layer(m.layer().clone())) - plan(&graph_to_run(&m)),
        blocks
    );
    // The result is the column means of the numbers the array holds.
    let whole = x.compute_with(executors().remove(0)).unwrap();
    let expected = whole.mean_axis(ndarray::Axis(0)).unwrap();
    assert!(same(&compute_both(&m), &expected, 1e-12));
    // The graph the user built is not changed.
    assert_eq!(m.layer().deps()[0].deps()[0].name(), x.name());
}

#[test]
fn every_streamed_reduction_and_distribution_matches_unfused() {
    let dists: Vec<Array<f64>> = vec![
        random::uniform(&[41, 23, 5], &[10, 7, 5], 1).unwrap(),
        random::uniform_range(-3.0, 2.0, &[41, 23, 5], &[10, 7, 5], 2).unwrap(),
        random::standard_normal(&[41, 23, 5], &[9, 8, 2], 3).unwrap(),
    ];
    for x in &dists {
        for axes in [
            vec![0],
            vec![1],
            vec![2],
            vec![0, 1],
            vec![1, 2],
            vec![0, 2],
            vec![0, 1, 2],
        ] {
            for keep in [false, true] {
                let r = Reduction::axes(&axes).keepdims(keep).split_every(3);
                for y in [
                    x.sum_with(&r),
                    x.prod_with(&r),
                    x.min_with(&r),
                    x.max_with(&r),
                    x.nansum_with(&r),
                    x.nanmin_with(&r),
                    x.nanmax_with(&r),
                    x.nanprod_with(&r),
                ] {
                    let y = y.unwrap();
                    assert!(fused(&y), "{axes:?}");
                    assert_same_as_unfused(&y);
                }
                for y in [x.mean_with(&r), x.nanmean_with(&r)] {
                    let y = y.unwrap();
                    assert!(fused(&y), "{axes:?}");
                    assert_same_as_unfused(&y);
                }
            }
        }
    }
    let ints = random::integers::<i64>(-50, 50, &[30, 17], &[8, 5], 4).unwrap();
    for y in [ints.sum_axis(1), ints.max(), ints.min_axis(0)] {
        let y = y.unwrap();
        assert!(fused(&y));
        assert_same_as_unfused(&y);
    }
    let bytes = random::integers::<u8>(0, 200, &[30, 17], &[8, 5], 4).unwrap();
    let m = bytes.mean_axis(0).unwrap();
    assert!(fused(&m));
    assert_same_as_unfused(&m);
    let singles = random::uniform(&[30, 17], &[8, 5], 4).unwrap().astype::<f32>();
    // A cast sits between the producer and the reduction: nothing to fuse.
    assert!(!fused(&singles.sum().unwrap()));
}

#[test]
fn generated_arrays_stream_too() {
    let cases: Vec<Array<f64>> = vec![
        zeros(&[20, 30], &[7, 8]).unwrap(),
        ones(&[20, 30], &[7, 8]).unwrap(),
        full(&[20, 30], &[7, 8], 2.5).unwrap(),
        eye(20, 30, 3, &[7, 8]).unwrap(),
    ];
    for x in &cases {
        for y in [x.sum_axis(0), x.sum_axis(1), x.mean(), x.max_axis(1)] {
            let y = y.unwrap();
            assert!(fused(&y), "{x:?}");
            assert_same_as_unfused(&y);
        }
    }
    let e = eye::<f64>(20, 30, 3, &[7, 8]).unwrap().sum_axis(1).unwrap();
    let expected: Vec<f64> = (0..20).map(|i| if i + 3 < 30 { 1.0 } else { 0.0 }).collect();
    assert_eq!(compute_both(&e).into_raw_vec_and_offset().0, expected);
    for x in [
        arange(0.5, 1000.0, 0.75, &[97]).unwrap(),
        linspace(-1.0, 4.0, 777, true, &[100]).unwrap(),
    ] {
        let y = x.sum().unwrap();
        assert!(fused(&y));
        assert_same_as_unfused(&y);
    }
    let ints = arange::<i32>(0, 1000, 1, &[64]).unwrap().sum().unwrap();
    assert!(fused(&ints));
    assert_eq!(compute_both(&ints).into_raw_vec_and_offset().0, vec![499_500]);
}

#[test]
fn a_producer_read_elsewhere_too_is_not_fused() {
    let x = random::uniform(&[60, 40], &[20, 20], 9).unwrap();
    // The same random blocks feed the mean and the difference.
    let centred = (&x - &x.mean_axis(0).unwrap()).unwrap();
    let s = centred.sum().unwrap();
    assert!(!fused(&s), "{:?}", op_names(&s));
    assert!(op_names(&s).iter().any(|n| n.starts_with("array.random.")));
    let col_means = compute_both(&s);
    assert!(col_means.iter().next().unwrap().abs() < 1e-9);
    // Two reductions of one array in one graph: neither is fused.
    let both = (&x.sum_axis(0).unwrap() + &x.max_axis(0).unwrap()).unwrap();
    assert!(!fused(&both));
    assert_eq!(
        op_names(&both)
            .iter()
            .filter(|n| n.starts_with("array.random."))
            .count(),
        1
    );
    // Computed together, two reductions that would each be fused alone
    // share the random blocks instead: the merged graph is optimized.
    let (sum, max) = (x.sum_axis(0).unwrap(), x.max_axis(0).unwrap());
    assert!(fused(&sum) && fused(&max));
    let mut merged = Collection::graph(&sum);
    merged.merge(&Collection::graph(&max));
    let keys: Vec<_> = sum.output_keys().into_iter().chain(max.output_keys()).collect();
    let names = names_in(&Array::<f64>::optimize(merged, &keys));
    assert!(
        !names.iter().any(|n| n.starts_with("array.stream-reduce.")),
        "{names:?}"
    );
    let together = blockwise_local::compute_all(&[sum.clone(), max.clone()]).unwrap();
    assert_eq!(together, vec![compute_both(&sum), compute_both(&max)]);
    // A random array asked for itself beside its mean is not fused away.
    let mean = x.mean_axis(0).unwrap();
    let mut merged = Collection::graph(&x);
    merged.merge(&Collection::graph(&mean));
    let keys: Vec<_> = x.output_keys().into_iter().chain(mean.output_keys()).collect();
    let names = names_in(&Array::<f64>::optimize(merged, &keys));
    assert!(
        !names.iter().any(|n| n.starts_with("array.stream-reduce.")),
        "{names:?}"
    );
    // Reductions that need the block twice, or positions, keep it.
    assert!(!fused(&x.var_axis(0).unwrap()));
    assert!(!fused(&x.argmax_axis(1).unwrap()));
    assert!(!fused(&x.std().unwrap()));
}

#[test]
fn the_fusion_can_be_turned_off() {
    let x = random::uniform(&[60, 40], &[20, 20], 9).unwrap();
    let m = x.sum_axis(1).unwrap();
    let on = compute_both(&m);
    {
        let _switch = SWITCH.write().unwrap_or_else(|e| e.into_inner());
        let _g = blockwise_core::config::set([(FUSE_STREAMS_KEY, false)]);
        let names = names_in(&optimized(&m));
        assert!(
            !names.iter().any(|n| n.starts_with("array.stream-reduce.")),
            "{names:?}"
        );
        assert_eq!(compute_both(&m), on);
    }
}

#[test]
fn zarr_blocks_stream_from_their_chunk_files() {
    let dir = std::env::temp_dir().join(format!("blockwise-array-stream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let x = random::standard_normal(&[53, 41], &[20, 15], 11).unwrap();
    let whole = x.compute_with(executors().remove(0)).unwrap();
    for (name, compression) in [
        ("plain.zarr", ZarrCompression::None),
        ("zstd.zarr", ZarrCompression::Zstd(3)),
    ] {
        let path = dir.join(name);
        x.to_zarr(&path, compression).unwrap();
        let z = from_zarr::<f64>(&path, None).unwrap();
        // Edge blocks are smaller than the chunks the store holds.
        assert_eq!(compute_both(&z), whole);
        for y in [z.sum(), z.sum_axis(0), z.mean_axis(1), z.nanmax_axis(0)] {
            let y = y.unwrap();
            assert!(fused(&y), "{name}");
            assert_same_as_unfused(&y);
        }
        // Blocks across chunk files: made whole inside the fused task.
        let across = from_zarr::<f64>(&path, Some(vec![vec![30, 23], vec![41]].into())).unwrap();
        let s = across.sum_axis(0).unwrap();
        assert!(fused(&s));
        assert_same_as_unfused(&s);
        assert!(same(&compute_both(&s), &whole.sum_axis(ndarray::Axis(0)), 1e-12));
    }
    // A chunk never written (or removed) reads as the fill value, 0.
    let sparse = dir.join("sparse.zarr");
    ones::<f64>(&[40, 30], &[20, 15])
        .unwrap()
        .to_zarr(&sparse, ZarrCompression::None)
        .unwrap();
    let chunk_files: Vec<_> = walk_files(&sparse)
        .into_iter()
        .filter(|p| !p.ends_with("zarr.json"))
        .collect();
    assert_eq!(chunk_files.len(), 4);
    std::fs::remove_file(&chunk_files[0]).unwrap();
    let s = from_zarr::<f64>(&sparse, None).unwrap().sum().unwrap();
    assert!(fused(&s));
    assert_eq!(compute_both(&s).iter().next(), Some(&900.0));
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random shapes, chunkings, axes and reductions: fused equals unfused
    /// exactly.
    #[test]
    fn fused_equals_unfused_for_any_chunking((shape, chunks) in strategies::chunked(3, 12), seed in 0u64..1000, pick in 0usize..5, mask in 1u32..8) {
        let x = random::uniform_range(-1.0, 1.0, &shape, chunks, seed).unwrap();
        let axes: Vec<usize> = (0..shape.len()).filter(|a| mask & (1 << a) != 0).collect();
        prop_assume!(!axes.is_empty());
        let r = Reduction::axes(&axes).split_every(2);
        let y = match pick {
            0 => x.sum_with(&r),
            1 => x.prod_with(&r),
            2 => x.min_with(&r),
            3 => x.max_with(&r),
            _ => x.mean_with(&r),
        };
        match y {
            Ok(y) => assert_same_as_unfused(&y),
            // min/max of an empty axis is an error before anything runs.
            Err(e) => prop_assert!(shape.contains(&0), "{e}"),
        }
    }
}
