//! Every operation against Polars run on the whole data in one piece, over
//! several partitionings, on both local executors.

mod common;

use blockwise_frame::polars::prelude::{self as pl, DataType, IntoLazy, col, lit};
use blockwise_frame::{DataFrame, JoinHow, JoinOptions, agg, from_polars};
use blockwise_local::{Compute, ComputeOptions};
use common::{PARTITIONINGS, assert_same, executors, polars, sample};

/// Runs `check` for every partitioning and executor.
fn each(n: usize, mut check: impl FnMut(&pl::DataFrame, DataFrame, &ComputeOptions, &str)) {
    let whole = sample(n);
    for parts in PARTITIONINGS {
        for (exec, opts) in executors() {
            let df = from_polars(whole.clone(), parts).unwrap();
            check(&whole, df, &opts, &format!("{parts} partitions, {exec}"));
        }
    }
}

#[test]
fn compute_returns_the_partitions_in_order() {
    each(100, |whole, df, opts, what| {
        assert_eq!(
            df.npartitions().unwrap(),
            what.split(' ').next().unwrap().parse::<usize>().unwrap()
        );
        let got = df.compute_with(opts.clone()).unwrap();
        assert_same(&got, whole, None, what);
    });
}

#[test]
fn metadata_is_known_without_computing() {
    let whole = sample(10);
    let df = from_polars(whole.clone(), 3).unwrap();
    assert_eq!(
        df.columns().unwrap(),
        vec!["id", "category", "value", "qty", "flag", "day"]
    );
    assert_eq!(df.dtypes().unwrap()[5], DataType::Date);
    let df2 = df.with_columns([
        (col("qty") * lit(2)).alias("double"),
        col("value").cast(DataType::Float32),
    ]);
    assert_eq!(df2.schema().unwrap().get("double"), Some(&DataType::Int64));
    assert_eq!(df2.schema().unwrap().get("value"), Some(&DataType::Float32));
    assert_eq!(df2.npartitions().unwrap(), 3);
    assert!(!df2.known_divisions());
}

#[test]
fn row_and_column_operations_match_polars() {
    each(120, |whole, df, opts, what| {
        let cases: Vec<(&str, DataFrame, pl::DataFrame)> = vec![
            (
                "select",
                df.select([col("id"), (col("value") * lit(2.0)).alias("v2")]),
                polars(whole, |l| l.select([col("id"), (col("value") * lit(2.0)).alias("v2")])),
            ),
            (
                "filter",
                df.filter(col("qty").gt(lit(3)).and(col("category").eq(lit("a")).not())),
                polars(whole, |l| {
                    l.filter(col("qty").gt(lit(3)).and(col("category").eq(lit("a")).not()))
                }),
            ),
            (
                "with_columns",
                df.with_columns([
                    (col("qty") + col("id")).alias("s"),
                    col("category").str().to_uppercase(),
                ]),
                polars(whole, |l| {
                    l.with_columns([
                        (col("qty") + col("id")).alias("s"),
                        col("category").str().to_uppercase(),
                    ])
                }),
            ),
            (
                "rename",
                df.rename([("id", "key"), ("qty", "n")]),
                polars(whole, |l| l.rename(["id", "qty"], ["key", "n"], true)),
            ),
            (
                "drop",
                df.drop(["flag", "day"]),
                polars(whole, |l| l.drop(pl::cols(["flag", "day"]))),
            ),
            (
                "cast",
                df.cast([("qty", DataType::Float64), ("id", DataType::Int32)]),
                polars(whole, |l| {
                    l.with_columns([col("qty").cast(DataType::Float64), col("id").cast(DataType::Int32)])
                }),
            ),
            (
                "fill_null",
                df.fill_null_in(["qty"], lit(0)).fill_null_in(["category"], lit("none")),
                polars(whole, |l| {
                    l.with_columns([col("qty").fill_null(lit(0)), col("category").fill_null(lit("none"))])
                }),
            ),
            ("drop_nulls", df.drop_nulls(), polars(whole, |l| l.drop_nulls(None))),
            (
                "drop_nulls_in",
                df.drop_nulls_in(["qty"]),
                polars(whole, |l| l.drop_nulls(Some(pl::cols(["qty"])))),
            ),
            (
                "datetime",
                df.with_columns([
                    col("day").dt().year().alias("year"),
                    col("day").dt().month().alias("month"),
                ]),
                polars(whole, |l| {
                    l.with_columns([
                        col("day").dt().year().alias("year"),
                        col("day").dt().month().alias("month"),
                    ])
                }),
            ),
            (
                "categorical",
                df.with_columns([col("category").cast(DataType::from_categories(pl::Categories::global()))])
                    .with_columns([col("category").cast(DataType::String).alias("back")]),
                polars(whole, |l| {
                    l.with_columns([col("category").cast(DataType::from_categories(pl::Categories::global()))])
                        .with_columns([col("category").cast(DataType::String).alias("back")])
                }),
            ),
            (
                "chain",
                df.filter(col("flag"))
                    .select([col("id"), col("value")])
                    .filter(col("id").gt(lit(10))),
                polars(whole, |l| {
                    l.filter(col("flag"))
                        .select([col("id"), col("value")])
                        .filter(col("id").gt(lit(10)))
                }),
            ),
        ];
        for (name, lazy, want) in cases {
            let got = lazy
                .compute_with(opts.clone())
                .unwrap_or_else(|e| panic!("{name} ({what}): {e}"));
            assert_same(&got, &want, None, &format!("{name} ({what})"));
        }
    });
}

#[test]
fn whole_frame_reductions_match_polars() {
    each(150, |whole, df, opts, what| {
        let num = ["id", "value", "qty"];
        let numeric = |l: pl::LazyFrame| l.select(num.iter().map(|c| col(*c)).collect::<Vec<_>>());
        let cases: Vec<(&str, DataFrame, pl::DataFrame)> = vec![
            ("sum", df.select_columns(num).sum(), polars(whole, |l| numeric(l).sum())),
            (
                "mean",
                df.select_columns(num).mean(),
                polars(whole, |l| numeric(l).mean()),
            ),
            ("min", df.min(), polars(whole, |l| l.min())),
            ("max", df.max(), polars(whole, |l| l.max())),
            (
                "std",
                df.select_columns(num).std(1),
                polars(whole, |l| numeric(l).std(1)),
            ),
            (
                "var",
                df.select_columns(num).var(0),
                polars(whole, |l| numeric(l).var(0)),
            ),
            (
                "count",
                df.count(),
                polars(whole, |l| {
                    l.select(["id", "category", "value", "qty", "flag", "day"].map(|c| col(c).count()))
                }),
            ),
            (
                "nunique",
                df.nunique(),
                polars(whole, |l| {
                    l.select(["id", "category", "value", "qty", "flag", "day"].map(|c| col(c).n_unique()))
                }),
            ),
            (
                "agg",
                df.agg([
                    agg::sum("qty").alias("total"),
                    agg::first("category"),
                    agg::last("value"),
                    agg::size(),
                ]),
                polars(whole, |l| {
                    l.select([
                        col("qty").sum().alias("total"),
                        col("category").first(),
                        col("value").last(),
                        pl::len().alias("size"),
                    ])
                }),
            ),
        ];
        for (name, lazy, want) in cases {
            let got = lazy
                .compute_with(opts.clone())
                .unwrap_or_else(|e| panic!("{name} ({what}): {e}"));
            assert_same(&got, &want, None, &format!("{name} ({what})"));
        }
    });
}

#[test]
fn series_reductions_give_scalars() {
    each(90, |whole, df, opts, what| {
        let got = df.col("value").mean().compute_with(opts.clone()).unwrap();
        let want = whole.column("value").unwrap().as_materialized_series().mean().unwrap();
        assert!((got.extract::<f64>().unwrap() - want).abs() < 1e-6, "{what}");
        let got = df.col("category").nunique().compute_with(opts.clone()).unwrap();
        assert_eq!(got.extract::<u64>().unwrap(), 8, "{what}: seven letters and null");
        let got = df.col("qty").max().compute_with(opts.clone()).unwrap();
        assert_eq!(got.extract::<i64>().unwrap(), 18, "{what}");
        let s = df.col("id").compute_with(opts.clone()).unwrap();
        assert_eq!(s.len(), 90);
    });
}

#[test]
fn value_counts_unique_and_drop_duplicates() {
    each(200, |whole, df, opts, what| {
        let got = df.col("category").value_counts().compute_with(opts.clone()).unwrap();
        let want = polars(whole, |l| l.group_by([col("category")]).agg([pl::len().alias("count")]));
        assert_same(&got, &want, Some(&["category"]), &format!("value_counts ({what})"));
        let counts: Vec<u32> = got
            .column("count")
            .unwrap()
            .u32()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert!(
            counts.windows(2).all(|w| w[0] >= w[1]),
            "value_counts sorted by count ({what})"
        );

        let got = df.col("qty").unique().compute_with(opts.clone()).unwrap();
        let want = whole
            .column("qty")
            .unwrap()
            .as_materialized_series()
            .unique_stable()
            .unwrap();
        assert!(
            got.equals_missing(&want),
            "unique keeps first appearance order ({what}): {got:?} vs {want:?}"
        );

        let got = df
            .drop_duplicates(Some(vec!["category".into(), "flag".into()]))
            .compute_with(opts.clone())
            .unwrap();
        let want = polars(whole, |l| {
            l.unique_stable(Some(pl::cols(["category", "flag"])), pl::UniqueKeepStrategy::First)
        });
        assert_same(&got, &want, None, &format!("drop_duplicates ({what})"));

        let got = df
            .drop_duplicates_with(Some(vec!["category".into()]), true, 2, 3)
            .compute_with(opts.clone())
            .unwrap();
        let want = polars(whole, |l| {
            l.unique_stable(Some(pl::cols(["category"])), pl::UniqueKeepStrategy::Last)
        });
        assert_same(
            &got,
            &want,
            Some(&["category"]),
            &format!("drop_duplicates keep last, split_out 3 ({what})"),
        );
    });
}

#[test]
fn approximate_distinct_count_is_close() {
    let n = 20_000;
    let ids: Vec<i64> = (0..n).map(|i| (i * 7919) % 15_000).collect();
    let whole = pl::df!("x" => ids).unwrap();
    for (exec, opts) in executors() {
        let df = from_polars(whole.clone(), 5).unwrap();
        let est = df
            .col("x")
            .approx_nunique()
            .compute_with(opts.clone())
            .unwrap()
            .extract::<u64>()
            .unwrap();
        let exact = df
            .col("x")
            .nunique()
            .compute_with(opts)
            .unwrap()
            .extract::<u64>()
            .unwrap();
        assert_eq!(exact, 15_000);
        let err = (est as f64 - exact as f64).abs() / exact as f64;
        assert!(err < 0.03, "{exec}: HyperLogLog estimate {est} vs {exact}");
    }
}

#[test]
fn describe_matches_polars_statistics() {
    each(101, |whole, df, opts, what| {
        let got = df
            .select_columns(["value", "qty"])
            .describe()
            .compute_with(opts.clone())
            .unwrap();
        let stats: Vec<&str> = got
            .column("statistic")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|s| s.unwrap())
            .collect();
        assert_eq!(
            stats,
            ["count", "null_count", "mean", "std", "min", "25%", "50%", "75%", "max"]
        );
        for c in ["value", "qty"] {
            let s = whole
                .column(c)
                .unwrap()
                .as_materialized_series()
                .cast(&DataType::Float64)
                .unwrap();
            let want = [
                (s.len() - s.null_count()) as f64,
                s.null_count() as f64,
                s.mean().unwrap(),
                s.std(1).unwrap(),
                s.min::<f64>().unwrap().unwrap(),
                s.quantile_reduce(0.25, pl::QuantileMethod::Nearest)
                    .unwrap()
                    .value()
                    .extract::<f64>()
                    .unwrap(),
                s.quantile_reduce(0.5, pl::QuantileMethod::Nearest)
                    .unwrap()
                    .value()
                    .extract::<f64>()
                    .unwrap(),
                s.quantile_reduce(0.75, pl::QuantileMethod::Nearest)
                    .unwrap()
                    .value()
                    .extract::<f64>()
                    .unwrap(),
                s.max::<f64>().unwrap().unwrap(),
            ];
            let col: Vec<f64> = got.column(c).unwrap().f64().unwrap().into_no_null_iter().collect();
            for (i, (g, w)) in col.iter().zip(want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{what}: describe {c} {}: {g} vs {w}",
                    stats[i]
                );
            }
        }
    });
}

#[test]
fn groupby_matches_polars() {
    each(300, |whole, df, opts, what| {
        let aggs = || {
            [
                agg::sum("qty"),
                agg::mean("value"),
                agg::count("value").alias("n"),
                agg::min("qty").alias("qmin"),
                agg::max("value").alias("vmax"),
                agg::std("value").alias("vstd"),
                agg::var("qty").alias("qvar"),
                agg::first("id").alias("first_id"),
                agg::last("id").alias("last_id"),
                agg::nunique("qty").alias("distinct_qty"),
                agg::size(),
            ]
        };
        let want_one = polars(whole, |l| {
            l.group_by([col("category")]).agg([
                col("qty").sum(),
                col("value").mean(),
                col("value").count().alias("n"),
                col("qty").min().alias("qmin"),
                col("value").max().alias("vmax"),
                col("value").std(1).alias("vstd"),
                col("qty").var(1).alias("qvar"),
                col("id").first().alias("first_id"),
                col("id").last().alias("last_id"),
                col("qty").n_unique().alias("distinct_qty"),
                pl::len().alias("size"),
            ])
        });
        for (split_every, split_out) in [(8, 1), (2, 1), (2, 3)] {
            let got = df
                .groupby(["category"])
                .split_every(split_every)
                .split_out(split_out)
                .agg(aggs())
                .compute_with(opts.clone())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let label = format!("groupby split_every={split_every} split_out={split_out} ({what})");
            assert_same(&got, &want_one, Some(&["category"]), &label);
            if split_out == 1 {
                assert_same(
                    &got,
                    &common::sorted(&got, &["category"]),
                    None,
                    &format!("{label}: sorted by key"),
                );
            }
        }
        let got = df
            .groupby(["flag", "category"])
            .col("value")
            .mean()
            .compute_with(opts.clone())
            .unwrap();
        let want = polars(whole, |l| {
            l.group_by([col("flag"), col("category")]).agg([col("value").mean()])
        });
        assert_same(&got, &want, Some(&["flag", "category"]), &format!("two keys ({what})"));
        let got = df.groupby(["category"]).sum().compute_with(opts.clone()).unwrap();
        let want = polars(whole, |l| {
            l.group_by([col("category")]).agg([
                col("id").sum(),
                col("value").sum(),
                col("qty").sum(),
                col("flag").sum(),
            ])
        });
        assert_same(
            &got,
            &want,
            Some(&["category"]),
            &format!("groupby sum of all ({what})"),
        );
    });
}

#[test]
fn seed_example_groupby_mean() {
    let whole = sample(500);
    let df = from_polars(whole.clone(), 4).unwrap();
    let means = df.groupby(["category"]).col("value").mean().compute().unwrap();
    let want = polars(&whole, |l| l.group_by([col("category")]).agg([col("value").mean()]));
    assert_same(&means, &want, Some(&["category"]), "seed example");
}

#[test]
fn head_len_and_partitions() {
    each(100, |whole, df, opts, what| {
        let h = df.head_with(5, opts.clone()).unwrap();
        assert_same(&h, &whole.head(Some(5)), None, &format!("head 5 ({what})"));
        let h = df.head_with(60, opts.clone()).unwrap();
        assert_same(&h, &whole.head(Some(60)), None, &format!("head 60 ({what})"));
        let h = df.head_with(1000, opts.clone()).unwrap();
        assert_eq!(h.height(), 100);
        assert_eq!(df.len_with(opts.clone()).unwrap(), 100);
        assert_eq!(df.filter(col("flag")).len_with(opts.clone()).unwrap(), 34);
        let last = df
            .partitions([df.npartitions().unwrap() - 1])
            .compute_with(opts.clone())
            .unwrap();
        assert!(last.height() > 0);
    });
}

#[test]
fn joins_match_polars_broadcast_and_shuffled() {
    let left = sample(120);
    let right = pl::df!(
        "category" => ["a", "b", "c", "x", "a"],
        "weight" => [1.0, 2.0, 3.0, 4.0, 5.0],
    )
    .unwrap();
    for (exec, opts) in executors() {
        for lparts in [1, 4] {
            for rparts in [1, 3] {
                for broadcast_max in [0, 4] {
                    let l = from_polars(left.clone(), lparts).unwrap();
                    let r = from_polars(right.clone(), rparts).unwrap();
                    for how in [
                        JoinHow::Inner,
                        JoinHow::Left,
                        JoinHow::Outer,
                        JoinHow::Semi,
                        JoinHow::Anti,
                    ] {
                        let what = format!("{how:?} {lparts}x{rparts} broadcast_max={broadcast_max} ({exec})");
                        let options = JoinOptions {
                            broadcast_max,
                            ..JoinOptions::default()
                        };
                        let got = l
                            .join_with(&r, &["category"], &["category"], how, options)
                            .compute_with(opts.clone())
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                        let pl_how = match how {
                            JoinHow::Inner => pl::JoinType::Inner,
                            JoinHow::Left => pl::JoinType::Left,
                            JoinHow::Outer => pl::JoinType::Full,
                            JoinHow::Semi => pl::JoinType::Semi,
                            JoinHow::Anti => pl::JoinType::Anti,
                        };
                        let want = left
                            .clone()
                            .lazy()
                            .join(
                                right.clone().lazy(),
                                [col("category")],
                                [col("category")],
                                pl::JoinArgs::new(pl_how),
                            )
                            .collect()
                            .unwrap();
                        assert_same(&got, &want, Some(&[]), &what);
                    }
                }
            }
        }
    }
}

#[test]
fn sort_values_and_set_index() {
    each(250, |whole, df, opts, what| {
        let got = df.sort_values_with(&["value", "id"], false, opts.clone()).unwrap();
        let out = got.compute_with(opts.clone()).unwrap();
        let want = polars(whole, |l| {
            l.sort(
                ["value", "id"],
                pl::SortMultipleOptions::default().with_maintain_order(true),
            )
        });
        assert_same(&out, &want, None, &format!("sort ascending ({what})"));
        let got = df
            .sort_values_with(&["qty"], true, opts.clone())
            .unwrap()
            .compute_with(opts.clone())
            .unwrap();
        let qty: Vec<Option<i64>> = got.column("qty").unwrap().i64().unwrap().iter().collect();
        let mut want_q: Vec<Option<i64>> = whole.column("qty").unwrap().i64().unwrap().iter().collect();
        want_q.sort_by(|a, b| match (a, b) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, _) => std::cmp::Ordering::Less,
            (_, None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(x),
        });
        assert_eq!(qty, want_q, "sort descending ({what})");

        let indexed = df.set_index("id").unwrap();
        assert_eq!(indexed.index().as_deref(), Some("id"));
        if indexed.npartitions().unwrap() > 1 {
            let div = indexed
                .divisions()
                .unwrap()
                .expect("divisions are known after set_index");
            assert_eq!(div.len(), indexed.npartitions().unwrap() + 1);
            let parts = indexed.npartitions().unwrap();
            for i in 0..parts {
                let p = indexed.partitions([i]).compute_with(opts.clone()).unwrap();
                let ids = p.column("id").unwrap().i64().unwrap();
                let lo = div.get(i).unwrap().extract::<i64>().unwrap();
                let hi = div.get(i + 1).unwrap().extract::<i64>().unwrap();
                for v in ids.into_no_null_iter() {
                    assert!(
                        v >= lo && v <= hi,
                        "{what}: id {v} in partition {i} outside [{lo}, {hi}]"
                    );
                }
            }
        }
        assert_same(
            &indexed.compute_with(opts.clone()).unwrap(),
            whole,
            None,
            &format!("set_index keeps rows ({what})"),
        );
    });
}

#[test]
fn repartition_concat_and_shuffle_keep_rows() {
    each(77, |whole, df, opts, what| {
        for k in [1, 2, 5, 11] {
            let r = df.repartition(k);
            assert_eq!(r.npartitions().unwrap(), k);
            assert_same(
                &r.compute_with(opts.clone()).unwrap(),
                whole,
                None,
                &format!("repartition {k} ({what})"),
            );
        }
        let both = blockwise_frame::concat(&[df.clone(), df.filter(col("flag"))]).unwrap();
        let want = pl::concat(
            [whole.clone().lazy(), whole.clone().lazy().filter(col("flag"))],
            Default::default(),
        )
        .unwrap()
        .collect()
        .unwrap();
        assert_same(
            &both.compute_with(opts.clone()).unwrap(),
            &want,
            None,
            &format!("concat ({what})"),
        );
        let sh = df.shuffle(["category"], Some(4));
        assert_eq!(sh.npartitions().unwrap(), 4);
        assert_same(
            &sh.compute_with(opts.clone()).unwrap(),
            whole,
            Some(&["id"]),
            &format!("shuffle ({what})"),
        );
        for i in 0..4 {
            let p = sh.partitions([i]).compute_with(opts.clone()).unwrap();
            for j in 0..4 {
                if i == j {
                    continue;
                }
                let q = sh.partitions([j]).compute_with(opts.clone()).unwrap();
                let keys = |f: &pl::DataFrame| -> std::collections::HashSet<Option<String>> {
                    f.column("category")
                        .unwrap()
                        .str()
                        .unwrap()
                        .iter()
                        .map(|s| s.map(str::to_string))
                        .collect()
                };
                assert!(
                    keys(&p).is_disjoint(&keys(&q)),
                    "a key is in two shuffle outputs ({what})"
                );
            }
        }
    });
}

fn add_ten(df: pl::DataFrame) -> pl::PolarsResult<pl::DataFrame> {
    df.lazy().with_columns([(col("id") + lit(10)).alias("id10")]).collect()
}

#[test]
fn map_partitions_with_a_function_and_a_closure() {
    each(50, |whole, df, opts, what| {
        let got = df.map_partitions(add_ten).compute_with(opts.clone()).unwrap();
        assert_same(&got, &add_ten(whole.clone()).unwrap(), None, &format!("fn ({what})"));
        let k = 3i64;
        let got = df
            .map_partitions(move |d: pl::DataFrame| d.lazy().select([(col("qty") * lit(k)).alias("q3")]).collect())
            .compute_with(opts.clone())
            .unwrap();
        let want = polars(whole, |l| l.select([(col("qty") * lit(3i64)).alias("q3")]));
        assert_same(&got, &want, None, &format!("closure ({what})"));
    });
}

#[test]
fn persist_reuses_values() {
    let whole = sample(60);
    let df = from_polars(whole.clone(), 3).unwrap().filter(col("flag"));
    let persisted = df.persist().unwrap();
    assert!(persisted.explain().unwrap().contains("Persisted"));
    let got = persisted
        .with_columns([(col("id") * lit(2)).alias("x")])
        .compute()
        .unwrap();
    let want = polars(&whole, |l| {
        l.filter(col("flag")).with_columns([(col("id") * lit(2)).alias("x")])
    });
    assert_same(&got, &want, None, "persisted");
}

#[test]
fn missing_column_lists_the_columns_that_exist() {
    let df = from_polars(sample(10), 2).unwrap();
    let err = df.select([col("nope")]).compute().unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("id, category, value, qty, flag, day"),
        "{err}"
    );
    let err = df.drop(["nope"]).schema().unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("category"), "{err}");
    let err = df
        .groupby(["nope"])
        .col("value")
        .sum()
        .compute()
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope") && err.contains("qty"), "{err}");
}

#[test]
fn same_computation_twice_has_the_same_keys() {
    use blockwise_core::Collection;
    let whole = sample(30);
    let a = from_polars(whole.clone(), 3)
        .unwrap()
        .filter(col("flag"))
        .groupby(["category"])
        .col("qty")
        .sum();
    let b = from_polars(whole, 3)
        .unwrap()
        .filter(col("flag"))
        .groupby(["category"])
        .col("qty")
        .sum();
    assert_eq!(a.output_keys(), b.output_keys());
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<DataFrame>();
    check::<blockwise_frame::Series>();
    check::<blockwise_frame::Scalar>();
    check::<blockwise_frame::GroupBy>();
    check::<blockwise_frame::Partition>();
}

fn sample_slice(offset: i64) -> blockwise_frame::Partition {
    blockwise_frame::Partition(common::sample(60).slice(offset, 20))
}

#[test]
fn from_delayed_checks_each_partition_against_the_schema() {
    use blockwise_core::delayed::delayed;
    let whole = common::sample(60);
    let parts: Vec<_> = [0i64, 20, 40]
        .into_iter()
        .map(|o| delayed(sample_slice).call(o))
        .collect();
    let df = blockwise_frame::from_delayed(&parts, whole.schema().clone());
    assert_eq!(df.npartitions().unwrap(), 3);
    for (exec, opts) in executors() {
        assert_same(
            &df.compute_with(opts.clone()).unwrap(),
            &whole,
            None,
            &format!("from_delayed ({exec})"),
        );
        let q = df.filter(col("qty").gt(lit(3))).select([col("id"), col("qty")]);
        let want = polars(&whole, |l| {
            l.filter(col("qty").gt(lit(3))).select([col("id"), col("qty")])
        });
        assert_same(
            &q.compute_with(opts).unwrap(),
            &want,
            None,
            &format!("from_delayed, filtered ({exec})"),
        );
    }
    let mut wrong = whole.schema().as_ref().clone();
    wrong.set_dtype("value", DataType::Int64);
    let err = blockwise_frame::from_delayed(&parts, std::sync::Arc::new(wrong))
        .compute()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("partition") && err.contains("\"value\"") && err.contains("declared i64"),
        "{err}"
    );
}
