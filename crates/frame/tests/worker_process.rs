//! Frame tasks cross a process boundary as data: a child process of this
//! same executable rebuilds every op (readers, steps with Polars
//! expressions, tree reductions, shuffles) from its registry and computes
//! the same result. A closure passed to `map_partitions` is refused with the
//! error that names the fix; a registered function is not.
//!
//! `harness = false`: `main` must first turn the process into a worker when
//! it was started as one. Prints one `N passed, N failed` line.

use std::sync::Arc;
use std::time::Duration;

use blockwise_core::ErrorKind;
use blockwise_frame::polars::prelude::{self as pl, IntoLazy, col, lit};
use blockwise_frame::{
    CsvOptions, JoinHow, ParquetOptions, PartitionFnPtr, agg, from_polars, read_csv_with, read_parquet_with,
};
use blockwise_local::process::ChildProcess;
use blockwise_local::{Compute, Scheduler};

fn add_ten(df: pl::DataFrame) -> pl::PolarsResult<pl::DataFrame> {
    df.lazy().with_columns([(col("id") + lit(10)).alias("id10")]).collect()
}

// What `#[blockwise::task]` submits for a function (this crate cannot use
// the facade's macro: the facade depends on it).
static ADD_TEN: PartitionFnPtr = add_ten;
blockwise_core::__private::inventory::submit! {
    blockwise_core::op::FnEntry {
        name: "worker_process::add_ten",
        type_name: || std::any::type_name_of_val(&add_ten),
        func: || &ADD_TEN,
    }
}

fn child() -> Scheduler {
    let exec = ChildProcess::current_exe()
        .expect("own executable")
        .threads(2)
        .timeout(Duration::from_secs(60));
    Scheduler::Executor(Arc::new(exec))
}

fn frame() -> blockwise_frame::DataFrame {
    let n = 200i64;
    let df = pl::df!(
        "id" => (0..n).collect::<Vec<_>>(),
        "category" => (0..n).map(|i| ["a", "b", "c"][(i % 3) as usize]).collect::<Vec<_>>(),
        "value" => (0..n).map(|i| i as f64 * 0.5).collect::<Vec<_>>(),
    )
    .unwrap();
    from_polars(df, 4).unwrap()
}

fn same_result(what: &str, df: &blockwise_frame::DataFrame, sort: &[&str]) -> Result<(), String> {
    let local = df
        .compute_with(Scheduler::Sync)
        .map_err(|e| format!("{what} locally: {e}"))?;
    let remote = df
        .compute_with(child())
        .map_err(|e| format!("{what} in a child: {e}"))?;
    let s = |f: pl::DataFrame| {
        f.lazy()
            .sort(
                sort.iter().map(|c| pl::PlSmallStr::from(*c)).collect::<Vec<_>>(),
                Default::default(),
            )
            .collect()
            .unwrap()
    };
    if !s(local.clone()).equals_missing(&s(remote.clone())) {
        return Err(format!("{what}: child gave\n{remote}\nthis process\n{local}"));
    }
    Ok(())
}

fn steps_and_groupby() -> Result<(), String> {
    let df = frame()
        .filter(col("id").gt(lit(7)))
        .with_columns([(col("value") * lit(2.0)).alias("v2")])
        .groupby(["category"])
        .split_every(2)
        .agg([agg::mean("v2"), agg::std("value"), agg::nunique("id"), agg::size()]);
    same_result("groupby", &df, &["category"])
}

fn csv_join_and_sort() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("blockwise-frame-worker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut text = String::from("category,weight\n");
    for (i, c) in ["a", "b", "c", "d"].iter().enumerate() {
        text.push_str(&format!("{c},{i}\n"));
    }
    let path = dir.join("weights.csv");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    let weights = read_csv_with(&path, CsvOptions::new()).map_err(|e| e.to_string())?;
    let joined = frame().join(&weights, &["category"], &["category"], JoinHow::Inner);
    same_result("broadcast join with a CSV", &joined, &["id"])?;
    let shuffled = frame()
        .shuffle(["category"], Some(3))
        .drop_duplicates(Some(vec!["category".into()]));
    same_result("shuffle and drop_duplicates", &shuffled, &["category"])?;
    let sorted = frame().sort_values(&["value"], true).map_err(|e| e.to_string())?;
    same_result("sort_values", &sorted, &["id"])?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn parquet_row_groups_pruned_in_a_child() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("blockwise-frame-worker-pq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("rows.parquet");
    let mut whole = frame().compute_with(Scheduler::Sync).map_err(|e| e.to_string())?;
    let file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    pl::ParquetWriter::new(file)
        .with_row_group_size(Some(50))
        .finish(&mut whole)
        .map_err(|e| e.to_string())?;
    let df = read_parquet_with(&path, ParquetOptions::default().row_groups_per_partition(1))
        .map_err(|e| e.to_string())?
        .filter(col("id").gt_eq(lit(120i64)))
        .select([col("id"), col("value")]);
    let plan = df.explain().map_err(|e| e.to_string())?;
    if !plan.contains("2 of 4 row groups read") {
        return Err(format!("row groups were not pruned:\n{plan}"));
    }
    same_result("pruned parquet read", &df, &["id"])?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn registered_function_runs_in_a_child() -> Result<(), String> {
    same_result(
        "map_partitions(registered fn)",
        &frame().map_partitions(add_ten),
        &["id"],
    )
}

fn closure_is_refused_with_the_fix() -> Result<(), String> {
    let k = 3.0;
    let df = frame().map_partitions(move |d: pl::DataFrame| d.lazy().with_columns([col("value") * lit(k)]).collect());
    if let Err(e) = df.compute_with(Scheduler::Sync) {
        return Err(format!("the closure runs locally: {e}"));
    }
    match df.compute_with(child()) {
        Ok(_) => Err("a closure was sent to another process".into()),
        Err(e) if e.kind() == &ErrorKind::NotRegistered && e.to_string().contains("#[blockwise::task]") => Ok(()),
        Err(e) => Err(format!("unexpected error: {e:?}")),
    }
}

/// One check: `Err` holds what went wrong.
type Check = fn() -> Result<(), String>;

fn main() {
    blockwise_local::process::serve_if_worker();
    let tests: [(&str, Check); 5] = [
        ("steps_and_groupby", steps_and_groupby),
        ("csv_join_and_sort", csv_join_and_sort),
        (
            "parquet_row_groups_pruned_in_a_child",
            parquet_row_groups_pruned_in_a_child,
        ),
        (
            "registered_function_runs_in_a_child",
            registered_function_runs_in_a_child,
        ),
        ("closure_is_refused_with_the_fix", closure_is_refused_with_the_fix),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        match test() {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(e) => {
                println!("test {name} ... FAILED\n{e}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
