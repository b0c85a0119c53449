//! `Bag::to_dataframe` (the `frame` feature): the frame holds the same rows,
//! columns and dtypes as the Polars frame built from all the records at
//! once, over several partitionings, on both local executors, and frame
//! operations on it match Polars on the whole data.

use blockwise_bag as bag;
use blockwise_frame::polars::prelude::{self as pl, DataType, IntoLazy, col};
use blockwise_local::{Compute, ComputeOptions, Scheduler};
use serde::{Deserialize, Serialize};

fn executors() -> [(&'static str, ComputeOptions); 2] {
    [
        ("sync", ComputeOptions::new().scheduler(Scheduler::Sync)),
        ("threads", ComputeOptions::new().scheduler(Scheduler::Threads(Some(2)))),
    ]
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Account {
    id: u64,
    name: String,
    amount: i64,
    score: Option<f64>,
}

fn accounts(n: usize) -> Vec<Account> {
    let names = ["alice", "bob", "carol", "dan", "erin"];
    (0..n)
        .map(|i| Account {
            id: i as u64,
            name: names[(i * 7 + i / 3) % names.len()].to_string(),
            amount: (i as i64 * 37) % 101 - 50,
            score: if i % 6 == 1 { None } else { Some(i as f64 * 0.25) },
        })
        .collect()
}

/// The Polars frame of `records`, built directly.
fn polars_frame(records: &[Account]) -> pl::DataFrame {
    pl::df!(
        "id" => records.iter().map(|a| a.id as i64).collect::<Vec<_>>(),
        "name" => records.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
        "amount" => records.iter().map(|a| a.amount).collect::<Vec<_>>(),
        "score" => records.iter().map(|a| a.score).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn assert_frames_equal(got: &pl::DataFrame, want: &pl::DataFrame, what: &str) {
    assert_eq!(got.schema(), want.schema(), "{what}: schemas\n got {got}\nwant {want}");
    assert!(got.equals_missing(want), "{what}\n got {got}\nwant {want}");
}

#[test]
fn records_become_the_frame_polars_builds_from_them() {
    let records = accounts(500);
    let want = polars_frame(&records);
    for npartitions in [1, 3, 7] {
        let b = bag::from_sequence(records.clone(), npartitions);
        let df = b.to_dataframe().unwrap();
        assert_eq!(df.npartitions().unwrap(), b.npartitions(), "{npartitions} partitions");
        assert_eq!(df.columns().unwrap(), ["id", "name", "amount", "score"]);
        for (exec, opts) in executors() {
            let what = format!("{npartitions} partitions ({exec})");
            assert_frames_equal(&df.compute_with(opts.clone()).unwrap(), &want, &what);
            let means = df
                .groupby(["name"])
                .col("amount")
                .mean()
                .compute_with(opts)
                .unwrap()
                .sort(["name"], Default::default())
                .unwrap();
            let want_means = want
                .clone()
                .lazy()
                .group_by([col("name")])
                .agg([col("amount").mean()])
                .sort(["name"], Default::default())
                .collect()
                .unwrap();
            assert_frames_equal(&means, &want_means, &format!("group-by mean, {what}"));
        }
    }
}

#[test]
fn a_pipeline_of_tuples_becomes_numbered_columns() {
    let records = accounts(300);
    let pairs: Vec<(String, i64)> = records
        .iter()
        .filter(|a| a.amount > 0)
        .map(|a| (a.name.clone(), a.amount))
        .collect();
    let want = pl::df!(
        "0" => pairs.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
        "1" => pairs.iter().map(|p| p.1).collect::<Vec<_>>(),
    )
    .unwrap();
    for npartitions in [1, 4] {
        let df = bag::from_sequence(records.clone(), npartitions)
            .filter(|a| a.amount > 0)
            .map(|a| (a.name, a.amount))
            .to_dataframe()
            .unwrap();
        for (exec, opts) in executors() {
            assert_frames_equal(
                &df.compute_with(opts).unwrap(),
                &want,
                &format!("tuples, {npartitions} partitions ({exec})"),
            );
        }
    }
}

#[test]
fn a_given_schema_reads_fields_as_its_dtypes() {
    let records = accounts(200);
    let schema: pl::Schema = [("amount".into(), DataType::Float64), ("name".into(), DataType::String)]
        .into_iter()
        .collect();
    let df = bag::from_sequence(records.clone(), 3).to_dataframe_with_schema(std::sync::Arc::new(schema));
    let want = polars_frame(&records)
        .lazy()
        .select([col("amount").cast(DataType::Float64), col("name")])
        .collect()
        .unwrap();
    for (exec, opts) in executors() {
        assert_frames_equal(
            &df.compute_with(opts).unwrap(),
            &want,
            &format!("given schema ({exec})"),
        );
    }
}

#[test]
fn an_empty_bag_needs_a_schema() {
    let err = bag::from_sequence(Vec::<Account>::new(), 2).to_dataframe().unwrap_err();
    assert!(err.to_string().contains("to_dataframe_with_schema"), "{err}");
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Transaction {
    amount: i64,
    date: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Customer {
    id: i64,
    transactions: Vec<Transaction>,
}

#[test]
fn nested_records_become_lists_of_structs() {
    let customers: Vec<Customer> = (0..60)
        .map(|i| Customer {
            id: i,
            transactions: (0..(i % 4))
                .map(|j| Transaction {
                    amount: i * 10 + j,
                    date: format!("2024-01-{:02}", j + 1),
                })
                .collect(),
        })
        .collect();
    let df = bag::from_sequence(customers.clone(), 4).to_dataframe().unwrap();
    let schema = df.schema().unwrap();
    match schema.get("transactions") {
        Some(DataType::List(inner)) => match inner.as_ref() {
            DataType::Struct(fields) => {
                let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
                assert_eq!(names, ["amount", "date"]);
            }
            other => panic!("transactions hold {other}, not structs"),
        },
        other => panic!("transactions are {other:?}, not a list"),
    }
    for (exec, opts) in executors() {
        let got = df.compute_with(opts).unwrap();
        assert_eq!(got.height(), customers.len(), "{exec}");
        let lists = got.column("transactions").unwrap().as_materialized_series().clone();
        for (i, c) in customers.iter().enumerate() {
            let pl::AnyValue::List(items) = lists.get(i).unwrap() else {
                panic!("{exec}: row {i} is not a list");
            };
            assert_eq!(items.len(), c.transactions.len(), "{exec}: row {i}");
            let amounts = items.struct_().unwrap().field_by_name("amount").unwrap();
            let amounts: Vec<i64> = amounts.i64().unwrap().into_no_null_iter().collect();
            let want: Vec<i64> = c.transactions.iter().map(|t| t.amount).collect();
            assert_eq!(amounts, want, "{exec}: row {i}");
        }
    }
}
