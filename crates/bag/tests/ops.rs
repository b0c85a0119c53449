//! Every bag operation against the same pipeline run sequentially with
//! iterators on the whole input, over random partitionings (proptest) and
//! random tree fan-ins, on both local executors.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use blockwise_bag::{self as bag, Bag, Element};
use blockwise_core::{Collection, ErrorKind, Plan, PlanOptions};
use blockwise_local::{Compute, ComputeOptions, Scheduler, compute_all_with};
use proptest::prelude::*;

fn executors() -> [ComputeOptions; 2] {
    [
        ComputeOptions::new().scheduler(Scheduler::Sync),
        ComputeOptions::new().scheduler(Scheduler::Threads(Some(2))),
    ]
}

/// `data` cut into partitions at `cuts` (positions, any order, may repeat:
/// repeated cuts make empty partitions).
fn partitioned<T: Element>(data: &[T], cuts: &[usize]) -> Vec<Vec<T>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    cuts.sort_unstable();
    let mut parts = Vec::new();
    let mut start = 0;
    for c in cuts {
        parts.push(data[start..c].to_vec());
        start = c;
    }
    parts.push(data[start..].to_vec());
    parts
}

/// Records, a partitioning of them and a fan-in.
fn case() -> impl Strategy<Value = (Vec<i64>, Vec<usize>, usize)> {
    (
        proptest::collection::vec(-20i64..20, 0..120),
        proptest::collection::vec(0usize..120, 0..12),
        2usize..6,
    )
}

fn first_appearance_counts<T: Eq + Hash + Clone>(xs: &[T]) -> Vec<(T, usize)> {
    let mut index: HashMap<T, usize> = HashMap::new();
    let mut out: Vec<(T, usize)> = Vec::new();
    for x in xs {
        match index.get(x) {
            Some(&i) => out[i].1 += 1,
            None => {
                index.insert(x.clone(), out.len());
                out.push((x.clone(), 1));
            }
        }
    }
    out
}

fn stable_top<T: Clone, K: Ord>(xs: &[T], k: usize, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut v = xs.to_vec();
    v.sort_by_key(|x| std::cmp::Reverse(key(x)));
    v.truncate(k);
    v
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn element_wise_transforms((data, cuts, fan_in) in case()) {
        let parts = partitioned(&data, &cuts);
        let b = bag::from_partitions(parts.clone()).split_every(fan_in);
        let pipeline = b
            .map(|x| x * 3)
            .filter(|x| x % 2 == 0)
            .flat_map(|x| vec![x, x + 1])
            .filter_map(|x| (x % 5 != 0).then_some(x - 1))
            .remove(|x| *x > 40);
        let expected: Vec<i64> = data
            .iter()
            .map(|x| x * 3)
            .filter(|x| x % 2 == 0)
            .flat_map(|x| vec![x, x + 1])
            .filter_map(|x| (x % 5 != 0).then_some(x - 1))
            .filter(|x| *x <= 40)
            .collect();
        let nested = b.map(|x| vec![x; (x.unsigned_abs() % 3) as usize]).flatten();
        let expected_nested: Vec<i64> = data.iter().flat_map(|&x| vec![x; (x.unsigned_abs() % 3) as usize]).collect();
        let pairs = b.map(|x| (x, x * 2)).starmap(|a, b| a + b);
        let triples = b.map(|x| (x, 1i64, 2i64)).starmap(|a, b, c| a * b - c);
        let reversed = b.map_partitions(|xs| xs.into_iter().rev());
        let expected_reversed: Vec<i64> = parts.iter().flat_map(|p| p.iter().rev().copied()).collect();
        let fallible = b.try_map(|x| if x < 100 { Ok(x + 1) } else { Err("too big") });
        for opts in executors() {
            prop_assert_eq!(b.compute_with(opts.clone()).unwrap(), data.clone());
            prop_assert_eq!(pipeline.compute_with(opts.clone()).unwrap(), expected.clone());
            prop_assert_eq!(nested.compute_with(opts.clone()).unwrap(), expected_nested.clone());
            prop_assert_eq!(pairs.compute_with(opts.clone()).unwrap(), data.iter().map(|x| x * 3).collect::<Vec<_>>());
            prop_assert_eq!(triples.compute_with(opts.clone()).unwrap(), data.iter().map(|x| x - 2).collect::<Vec<_>>());
            prop_assert_eq!(reversed.compute_with(opts.clone()).unwrap(), expected_reversed.clone());
            prop_assert_eq!(fallible.compute_with(opts.clone()).unwrap(), data.iter().map(|x| x + 1).collect::<Vec<_>>());
        }
    }

    #[test]
    fn rearranging_partitions((data, cuts, _) in case(), n in 1usize..9) {
        let b = bag::from_partitions(partitioned(&data, &cuts));
        let re = b.repartition(n);
        prop_assert_eq!(re.npartitions(), n);
        let zipped = b.zip(&b.map(|x| x * 10)).unwrap();
        let doubled = bag::concat(&[b.clone(), re.map(|x| -x)]);
        let mut expected_doubled = data.clone();
        expected_doubled.extend(data.iter().map(|x| -x));
        let seq = bag::from_sequence(data.clone(), n);
        prop_assert_eq!(seq.npartitions(), n.min(data.len().max(1)));
        let from_parts = bag::from_delayed(&b.to_delayed());
        for opts in executors() {
            prop_assert_eq!(re.compute_with(opts.clone()).unwrap(), data.clone());
            prop_assert_eq!(
                zipped.compute_with(opts.clone()).unwrap(),
                data.iter().map(|&x| (x, x * 10)).collect::<Vec<_>>()
            );
            prop_assert_eq!(doubled.compute_with(opts.clone()).unwrap(), expected_doubled.clone());
            prop_assert_eq!(seq.compute_with(opts.clone()).unwrap(), data.clone());
            prop_assert_eq!(from_parts.compute_with(opts.clone()).unwrap(), data.clone());
        }
    }

    #[test]
    fn scalar_reductions((data, cuts, fan_in) in case()) {
        let b = bag::from_partitions(partitioned(&data, &cuts)).split_every(fan_in);
        let n = data.len();
        let mean = data.iter().sum::<i64>() as f64 / n as f64;
        let expected_mean = if n == 0 { f64::NAN } else { mean };
        let var = |ddof: usize| {
            if n <= ddof {
                f64::NAN
            } else {
                data.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - ddof) as f64
            }
        };
        for opts in executors() {
            prop_assert_eq!(b.count().compute_with(opts.clone()).unwrap(), n);
            prop_assert_eq!(b.sum().compute_with(opts.clone()).unwrap(), data.iter().sum::<i64>());
            prop_assert_eq!(b.max().compute_with(opts.clone()).unwrap(), data.iter().copied().max());
            prop_assert_eq!(b.min().compute_with(opts.clone()).unwrap(), data.iter().copied().min());
            prop_assert!(close(b.mean().compute_with(opts.clone()).unwrap(), expected_mean));
            prop_assert!(close(b.var(0).compute_with(opts.clone()).unwrap(), var(0)));
            prop_assert!(close(b.std(1).compute_with(opts.clone()).unwrap(), var(1).sqrt()));
            prop_assert_eq!(b.any(|x| *x > 15).compute_with(opts.clone()).unwrap(), data.iter().any(|x| *x > 15));
            prop_assert_eq!(b.all(|x| *x > -15).compute_with(opts.clone()).unwrap(), data.iter().all(|x| *x > -15));
            prop_assert_eq!(
                b.fold(0i64, |acc, x| acc + x * x, |a, b| a + b).compute_with(opts.clone()).unwrap(),
                data.iter().map(|x| x * x).sum::<i64>()
            );
            prop_assert_eq!(
                b.reduction(|xs| xs.len(), |counts| counts.into_iter().sum()).compute_with(opts.clone()).unwrap(),
                n
            );
            prop_assert_eq!(
                b.count().apply(|c| c * 2).compute_with(opts.clone()).unwrap(),
                2 * n
            );
        }
    }

    #[test]
    fn counting_ranking_and_distinct((data, cuts, fan_in) in case(), k in 0usize..8) {
        let b = bag::from_partitions(partitioned(&data, &cuts)).split_every(fan_in);
        let keyed = b.map(|x| (x, x.rem_euclid(7)));
        let keyed_data: Vec<(i64, i64)> = data.iter().map(|&x| (x, x.rem_euclid(7))).collect();
        let mut distinct = Vec::new();
        for x in &data {
            if !distinct.contains(x) {
                distinct.push(*x);
            }
        }
        let mut first_per_key: Vec<(i64, i64)> = Vec::new();
        for p in &keyed_data {
            if !first_per_key.iter().any(|q| q.1 == p.1) {
                first_per_key.push(*p);
            }
        }
        let mut ascending = data.clone();
        ascending.sort();
        for opts in executors() {
            prop_assert_eq!(b.frequencies().compute_with(opts.clone()).unwrap(), first_appearance_counts(&data));
            prop_assert_eq!(b.distinct().compute_with(opts.clone()).unwrap(), distinct.clone());
            prop_assert_eq!(keyed.distinct_by(|p| p.1).compute_with(opts.clone()).unwrap(), first_per_key.clone());
            prop_assert_eq!(keyed.topk(k, |p| p.1).compute_with(opts.clone()).unwrap(), stable_top(&keyed_data, k, |p| p.1));
            prop_assert_eq!(
                keyed.bottomk(k, |p| p.1).compute_with(opts.clone()).unwrap(),
                stable_top(&keyed_data, k, |p| std::cmp::Reverse(p.1))
            );
            prop_assert_eq!(b.nlargest(k).compute_with(opts.clone()).unwrap(), stable_top(&data, k, |x| *x));
            prop_assert_eq!(
                b.nsmallest(k).compute_with(opts.clone()).unwrap(),
                ascending.iter().take(k).copied().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn frequencies_of_borrowed_words_equals_flat_map_then_frequencies(
        lines in proptest::collection::vec("[abc ]{0,10}", 0..60),
        cuts in proptest::collection::vec(0usize..60, 0..6),
        fan_in in 2usize..5,
    ) {
        let b = bag::from_partitions(partitioned(&lines, &cuts)).split_every(fan_in);
        let words: Vec<String> = lines.iter().flat_map(|l| l.split_ascii_whitespace().map(str::to_string)).collect();
        let expected = first_appearance_counts(&words);
        let owned = b.flat_map(|l: String| l.split_ascii_whitespace().map(str::to_string).collect::<Vec<_>>());
        let borrowed = b.frequencies_of(|l: &String, emit: &mut dyn FnMut(&str)| l.split_ascii_whitespace().for_each(emit));
        // Byte-string keys, and sized keys lent by reference, count the same.
        let bytes = b.frequencies_of(|l: &String, emit: &mut dyn FnMut(&[u8])| {
            l.as_bytes().split(|c| *c == b' ').filter(|w| !w.is_empty()).for_each(emit)
        });
        let expected_bytes: Vec<(Vec<u8>, usize)> =
            expected.iter().map(|(w, n)| (w.as_bytes().to_vec(), *n)).collect();
        let lengths = b.frequencies_of(|l: &String, emit: &mut dyn FnMut(&usize)| {
            l.split_ascii_whitespace().for_each(|w| emit(&w.len()))
        });
        let expected_lengths = first_appearance_counts(&words.iter().map(String::len).collect::<Vec<_>>());
        for opts in executors() {
            prop_assert_eq!(borrowed.compute_with(opts.clone()).unwrap(), expected.clone());
            prop_assert_eq!(owned.frequencies().compute_with(opts.clone()).unwrap(), expected.clone());
            prop_assert_eq!(bytes.compute_with(opts.clone()).unwrap(), expected_bytes.clone());
            prop_assert_eq!(lengths.compute_with(opts.clone()).unwrap(), expected_lengths.clone());
        }
    }

    #[test]
    fn grouping((data, cuts, fan_in) in case(), out in 1usize..6) {
        let b = bag::from_partitions(partitioned(&data, &cuts)).split_every(fan_in);
        // foldby: sum and count per key, keys in first-appearance order
        let mut expected: Vec<(i64, (i64, usize))> = Vec::new();
        for &x in &data {
            let k = x.rem_euclid(5);
            match expected.iter_mut().find(|(key, _)| *key == k) {
                Some((_, (s, c))) => {
                    *s += x;
                    *c += 1;
                }
                None => expected.push((k, (x, 1))),
            }
        }
        let folded = b.foldby(|x| x.rem_euclid(5), (0i64, 0usize), |(s, c), x| (s + x, c + 1), |a, b| (a.0 + b.0, a.1 + b.1));
        // groupby: every group with its records in order; group order is the shuffle's
        let mut groups: Vec<(i64, Vec<i64>)> = Vec::new();
        for &x in &data {
            let k = x.rem_euclid(5);
            match groups.iter_mut().find(|(key, _)| *key == k) {
                Some((_, g)) => g.push(x),
                None => groups.push((k, vec![x])),
            }
        }
        groups.sort();
        let grouped = b.groupby_with(|x| x.rem_euclid(5), out);
        prop_assert_eq!(grouped.npartitions(), out);
        for opts in executors() {
            prop_assert_eq!(folded.compute_with(opts.clone()).unwrap(), expected.clone());
            let mut got = grouped.compute_with(opts.clone()).unwrap();
            got.sort();
            prop_assert_eq!(got, groups.clone());
        }
    }

    #[test]
    fn take_and_head((data, cuts, _) in case(), n in 0usize..50, np in 1usize..4) {
        let parts = partitioned(&data, &cuts);
        let b = bag::from_partitions(parts.clone());
        let in_first: Vec<i64> = parts.iter().take(np).flatten().take(n).copied().collect();
        for opts in executors() {
            prop_assert_eq!(b.take_with(n, opts.clone()).unwrap(), data.iter().take(n).copied().collect::<Vec<_>>());
            prop_assert_eq!(b.head(n, np).compute_with(opts.clone()).unwrap(), in_first.clone());
        }
    }

    #[test]
    fn random_sample_is_a_seeded_ordered_subset((data, cuts, _) in case(), p in 0.0f64..=1.0, seed in 0u64..1000) {
        let b = bag::from_partitions(partitioned(&data, &cuts)).map(|x| x * 1000);
        let indexed = bag::from_sequence(0..data.len() as u64, 1);
        let s = b.random_sample(p, seed).unwrap();
        let first = s.compute_with(ComputeOptions::new().scheduler(Scheduler::Sync)).unwrap();
        let again = s.compute_with(ComputeOptions::new().scheduler(Scheduler::Threads(Some(2)))).unwrap();
        prop_assert_eq!(&first, &again);
        // an ordered subsequence of the input
        let all: Vec<i64> = data.iter().map(|x| x * 1000).collect();
        let mut it = all.iter();
        for x in &first {
            prop_assert!(it.any(|y| y == x), "{x} out of order or not in the input");
        }
        let everything = indexed.random_sample(1.0, seed).unwrap().count().compute().unwrap();
        prop_assert_eq!(everything, data.len());
        let nothing = indexed.random_sample(0.0, seed).unwrap().count().compute().unwrap();
        prop_assert_eq!(nothing, 0);
    }
}

#[test]
fn seed_pipeline_on_records() {
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    struct Account {
        name: String,
        amount: i64,
    }
    let names = ["alice", "bob", "carol", "dan", "erin"];
    let accounts: Vec<Account> = (0..500)
        .map(|i: i64| Account {
            name: names[(i * i % 7 % 5) as usize].to_string(),
            amount: (i * 37) % 11 - 5,
        })
        .collect();
    let expected = stable_top(
        &first_appearance_counts(
            &accounts
                .iter()
                .filter(|a| a.amount > 0)
                .map(|a| a.name.clone())
                .collect::<Vec<_>>(),
        ),
        3,
        |(_, n)| *n,
    );
    for opts in executors() {
        let top = bag::from_sequence(accounts.clone(), 7)
            .filter(|a| a.amount > 0)
            .map(|a| a.name)
            .frequencies()
            .topk(3, |(_, n)| *n)
            .compute_with(opts)
            .unwrap();
        assert_eq!(top, expected);
    }
}

#[test]
fn range_makes_its_own_partitions() {
    let r = bag::range(10, 3);
    assert_eq!(r.npartitions(), 3);
    assert_eq!(r.compute().unwrap(), (0..10).collect::<Vec<u64>>());
    assert_eq!(bag::range(0, 4).compute().unwrap(), Vec::<u64>::new());
    assert_eq!(bag::range(2, 5).npartitions(), 2);
}

#[test]
fn max_skips_nan_and_keeps_iterator_tie_rules() {
    let b = bag::from_partitions(vec![vec![1.0, f64::NAN], vec![f64::NAN, 5.0, 2.0], vec![]]);
    assert_eq!(b.max().compute().unwrap(), Some(5.0));
    assert_eq!(b.min().compute().unwrap(), Some(1.0));
    let empty: Bag<f64> = bag::from_partitions(vec![vec![], vec![]]);
    assert_eq!(empty.max().compute().unwrap(), None);
    assert!(empty.mean().compute().unwrap().is_nan());
    assert_eq!(empty.sum().compute().unwrap(), 0.0);
    // strings: the last of equal maxima, the first of equal minima
    let words = bag::from_partitions(vec![vec!["b".to_string(), "a".into()], vec!["b".into()]]);
    assert_eq!(words.max().compute().unwrap().as_deref(), Some("b"));
}

#[test]
fn tree_reduction_has_one_layer_per_level() {
    let b = bag::range(1000, 20).split_every(3);
    let total = b.sum();
    // part (20 tasks) → combine1 (7) → combine2 (3) → aggregate (1)
    let layers = total.graph().layers();
    let sizes: Vec<usize> = layers.iter().map(|l| l.len()).collect();
    assert_eq!(sizes, vec![20, 7, 3, 1]);
    assert!(layers[0].name().as_str().starts_with("sum-part-"));
    assert_eq!(total.key().name.prefix(), "sum-aggregate");
    assert_eq!(total.compute().unwrap(), (0..1000).sum::<u64>());
    // the default fan-in is Dask's 8
    let sizes: Vec<usize> = bag::range(1000, 20)
        .count()
        .graph()
        .layers()
        .iter()
        .map(|l| l.len())
        .collect();
    assert_eq!(sizes, vec![20, 3, 1]);
}

#[test]
fn same_pipeline_same_keys_and_persist_reuses_values() {
    fn double(x: u64) -> u64 {
        x * 2
    }
    let a = bag::range(100, 4).map(double).filter(|x| x % 3 == 0);
    let b = bag::range(100, 4).map(double).filter(|x| x % 3 == 0);
    assert_eq!(a.output_keys(), b.output_keys());
    assert_eq!(a.count().key(), b.count().key());

    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let counted = bag::range(100, 4).map(move |x| {
        c.fetch_add(1, Ordering::SeqCst);
        x
    });
    let kept = counted.persist().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 100);
    assert_eq!(kept.output_keys(), counted.output_keys());
    assert_eq!(kept.sum().compute().unwrap(), (0..100).sum::<u64>());
    assert_eq!(kept.map(|x| x + 1).count().compute().unwrap(), 100);
    assert_eq!(calls.load(Ordering::SeqCst), 100, "a persisted bag is not recomputed");
}

#[test]
fn bags_reduced_from_different_inputs_have_different_keys() {
    // Regression: the one-partition bag of a reduction once took its token
    // from the reduction alone, so `topk` of two different `frequencies`
    // shared keys and `compute_all` gave one answer for both.
    let a = bag::from_sequence(vec![1u64, 1, 2], 2)
        .frequencies()
        .topk(1, |(_, n)| *n);
    let b = bag::from_sequence(vec![3u64, 4, 4], 2)
        .frequencies()
        .topk(1, |(_, n)| *n);
    assert_ne!(a.output_keys(), b.output_keys());
    for opts in executors() {
        assert_eq!(
            compute_all_with(&[a.clone(), b.clone()], opts).unwrap(),
            vec![vec![(1, 2)], vec![(4, 2)]]
        );
    }
}

#[test]
fn compute_all_of_several_reductions() {
    let b = bag::range(50, 5);
    let items = [b.count(), b.map(|x| x as usize).sum(), b.filter(|x| x % 2 == 0).count()];
    for opts in executors() {
        assert_eq!(
            compute_all_with(&items, opts).unwrap(),
            vec![50, (0..50).sum::<usize>(), 25]
        );
    }
}

#[test]
fn take_computes_only_the_partitions_it_needs() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let b = bag::range(100, 10).map(move |x| {
        c.fetch_add(1, Ordering::SeqCst);
        x
    });
    assert_eq!(b.take(3).unwrap(), vec![0, 1, 2]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "reading stops at the third record of the first partition"
    );
    calls.store(0, Ordering::SeqCst);
    // 25 records: partition 0 (10), then 1 (10), then 2 and 3 (only 5 needed of 2)
    assert_eq!(b.take(25).unwrap(), (0..25).collect::<Vec<u64>>());
    assert!(
        calls.load(Ordering::SeqCst) <= 40,
        "read {} records",
        calls.load(Ordering::SeqCst)
    );
    assert_eq!(b.take(1000).unwrap().len(), 100);
}

#[test]
fn zip_checks_partitioning() {
    let a = bag::range(10, 2);
    let err = a.zip(&bag::range(10, 3)).unwrap_err();
    assert!(err.to_string().contains("same number of partitions"), "{err}");
    let uneven = bag::from_partitions(vec![vec![1u64, 2], vec![3]]);
    let err = uneven
        .zip(&bag::from_partitions(vec![vec![1u64], vec![2, 3]]))
        .unwrap()
        .compute()
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::TaskFailed(_)), "{err:?}");
    assert!(err.to_string().contains("equal length"), "{err}");
}

#[test]
fn invalid_arguments_are_errors_not_panics() {
    let b = bag::range(10, 2);
    assert!(b.random_sample(1.5, 0).is_err());
    assert!(b.random_sample(f64::NAN, 0).is_err());
    let failing = b.try_map(|x| {
        if x == 7 {
            Err(format!("seven ({x}) is not allowed"))
        } else {
            Ok(x)
        }
    });
    let err = failing.compute().unwrap_err();
    assert!(err.to_string().contains("seven (7) is not allowed"), "{err}");
    assert_eq!(
        failing.take(3).unwrap(),
        vec![0, 1, 2],
        "take stops before the failing record"
    );
}

#[test]
fn json_values_pluck_fields_and_items() {
    use serde_json::json;
    let records = vec![
        json!({"name": "alice", "tags": ["a", "b"]}),
        json!({"name": "bob", "tags": ["c"]}),
        json!({"tags": []}),
    ];
    let b = bag::from_sequence(records, 2);
    let names = b.pluck_or("name", json!(null));
    assert_eq!(
        names.compute().unwrap(),
        vec![json!("alice"), json!("bob"), json!(null)]
    );
    let firsts = b.filter(|r| r.get("name").is_some()).pluck("tags").pluck(0);
    assert_eq!(firsts.compute().unwrap(), vec![json!("a"), json!("c")]);
    let err = b.pluck("name").compute().unwrap_err();
    assert!(err.to_string().contains("no field \"name\""), "{err}");
    assert!(err.to_string().contains("{\"tags\":[]}"), "{err}");
}

#[test]
fn closures_cannot_leave_the_process_and_the_error_names_the_fix() {
    let k = 2u64;
    let b = bag::range(10, 2).map(move |x| x * k);
    let plan = Plan::build(&b.graph(), &b.output_keys(), &PlanOptions::default()).unwrap();
    let err = plan.encode(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NotRegistered);
    assert!(err.to_string().contains("#[blockwise::task]"), "{err}");
    assert!(err.to_string().contains("closure"), "{err}");
    // ops without user functions travel when they have a portable form...
    let c = bag::range(10, 2).count();
    let plan = Plan::build(&c.graph(), &c.output_keys(), &PlanOptions::default()).unwrap();
    plan.encode(&mut Vec::new()).unwrap();
    // ...and name the step that has none otherwise
    let s = bag::range(10, 2).random_sample(0.5, 7).unwrap().count();
    let plan = Plan::build(&s.graph(), &s.output_keys(), &PlanOptions::default()).unwrap();
    let err = plan.encode(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NotRegistered);
    assert!(err.to_string().contains("random-sample"), "{err}");
    assert!(err.to_string().contains("no portable description"), "{err}");
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Bag<String>>();
    check::<bag::Item<u64>>();
    check::<bag::Partition<String>>();
    check::<bag::BadLines>();
}
