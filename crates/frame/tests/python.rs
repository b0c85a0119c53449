//! Real interchange with pandas and pyarrow (the virtualenv made by
//! `tools/python-env`): files they write read correctly here — dtypes,
//! nulls, timestamps, strings — and files written here read back
//! identically there.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use blockwise_frame::polars::prelude::{self as pl, DataType, NamedFrom, TimeUnit};
use blockwise_frame::{read_csv, read_parquet};
use blockwise_local::Compute;
use common::{executors, temp_dir};

const N: usize = 50;
/// 2024-01-01T00:00:00 in microseconds since the epoch.
const BASE_US: i64 = 1_704_067_200_000_000;

fn python() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/python-env");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("tools/python-env runs");
    assert!(
        out.status.success(),
        "tools/python-env failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn run_python(code: &str, dir: &Path) {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .arg(dir)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The frame both sides agree on: ints, floats with missing values,
/// strings with missing values, booleans, timestamps.
fn expected() -> pl::DataFrame {
    let id: Vec<i64> = (0..N as i64).collect();
    let x: Vec<Option<f64>> = (0..N)
        .map(|i| if i % 7 == 0 { None } else { Some(i as f64 * 0.5) })
        .collect();
    let s: Vec<Option<String>> = (0..N)
        .map(|i| if i % 5 == 0 { None } else { Some(format!("s{i}")) })
        .collect();
    let b: Vec<bool> = (0..N).map(|i| i % 2 == 0).collect();
    let t: Vec<i64> = (0..N as i64).map(|i| BASE_US + i * 3_600_000_000).collect();
    let mut df = pl::df!("id" => id, "x" => x, "s" => s, "b" => b).unwrap();
    let t = pl::Series::new("t".into(), t)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .unwrap();
    df.with_column(t.into()).unwrap();
    df
}

const PANDAS_FRAME: &str = r#"
import sys, numpy as np, pandas as pd
n = 50
df = pd.DataFrame({
    "id": np.arange(n, dtype="int64"),
    "x": [np.nan if i % 7 == 0 else i * 0.5 for i in range(n)],
    "s": pd.array([None if i % 5 == 0 else f"s{i}" for i in range(n)], dtype="str"),
    "b": [i % 2 == 0 for i in range(n)],
    "t": pd.date_range("2024-01-01", periods=n, freq="h"),
})
"#;

fn check_read(got: &pl::DataFrame, what: &str) {
    let want = expected();
    assert_eq!(got.get_column_names(), want.get_column_names(), "{what}");
    assert_eq!(got.column("id").unwrap().dtype(), &DataType::Int64, "{what}");
    assert_eq!(got.column("x").unwrap().dtype(), &DataType::Float64, "{what}");
    assert_eq!(got.column("s").unwrap().dtype(), &DataType::String, "{what}");
    assert_eq!(got.column("b").unwrap().dtype(), &DataType::Boolean, "{what}");
    assert!(
        matches!(got.column("t").unwrap().dtype(), DataType::Datetime(_, None)),
        "{what}: {:?}",
        got.column("t").unwrap().dtype()
    );
    let t = got
        .column("t")
        .unwrap()
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .unwrap();
    let mut got = got.clone();
    got.with_column(t).unwrap();
    common::assert_same(&got, &want, None, what);
}

#[test]
fn files_written_by_pandas_read_correctly() {
    let dir = temp_dir("from-pandas");
    let code = format!(
        "{PANDAS_FRAME}
d = sys.argv[1]
df.iloc[:20].to_parquet(d + '/p_0.parquet', index=False)
df.iloc[20:].to_parquet(d + '/p_1.parquet', index=False)
df.iloc[:30].to_csv(d + '/c_0.csv', index=False)
df.iloc[30:].to_csv(d + '/c_1.csv', index=False)
"
    );
    run_python(&code, &dir);
    for (exec, opts) in executors() {
        let pq = read_parquet(dir.join("p_*.parquet").to_str().unwrap()).unwrap();
        check_read(
            &pq.compute_with(opts.clone()).unwrap(),
            &format!("parquet from pandas ({exec})"),
        );
        let csv = read_csv(dir.join("c_*.csv").to_str().unwrap()).unwrap();
        check_read(&csv.compute_with(opts).unwrap(), &format!("csv from pandas ({exec})"));
    }
}

#[test]
fn files_written_here_read_back_identically_in_pandas() {
    let dir = temp_dir("to-pandas");
    let df = blockwise_frame::from_polars(expected(), 3).unwrap();
    df.to_parquet(dir.join("pq")).unwrap();
    df.to_csv(dir.join("csv")).unwrap();
    let code = format!(
        "{PANDAS_FRAME}
import glob
d = sys.argv[1]
def check(got, what):
    assert list(got.columns) == list(df.columns), (what, list(got.columns))
    got = got.reset_index(drop=True)
    assert (got['id'].to_numpy() == df['id'].to_numpy()).all(), what
    assert got['id'].dtype == 'int64', (what, got['id'].dtype)
    assert got['x'].isna().equals(df['x'].isna()), what
    assert np.allclose(got['x'].fillna(-1), df['x'].fillna(-1)), what
    assert got['s'].isna().equals(df['s'].isna()), what
    assert (got['s'].fillna('') == df['s'].fillna('')).all(), what
    assert got['b'].dtype == bool and (got['b'] == df['b']).all(), (what, got['b'].dtype)
    assert (pd.to_datetime(got['t']).astype('datetime64[us]') == df['t'].astype('datetime64[us]')).all(), what
pq = pd.read_parquet(d + '/pq')
check(pq, 'parquet')
csv = pd.concat([pd.read_csv(f, parse_dates=['t']) for f in sorted(glob.glob(d + '/csv/part.*.csv'))])
check(csv, 'csv')
print('ok')
"
    );
    run_python(&code, &dir);
}

// ---------------------------------------------------------------- time zones

const TZ_N: usize = 50;
/// 2024-03-29T23:00:00Z (midnight in Paris), in microseconds: the hourly
/// series crosses the change to summer time on 2024-03-31.
const TZ_BASE_US: i64 = 1_711_753_200_000_000;

/// `TZ_N` hourly instants from `TZ_BASE_US` as a Datetime column in `tz`.
fn tz_column(name: &str, tz: &str) -> pl::Column {
    let us: Vec<i64> = (0..TZ_N as i64).map(|i| TZ_BASE_US + i * 3_600_000_000).collect();
    let tz = pl::TimeZone::opt_try_new(Some(tz)).unwrap();
    pl::Series::new(name.into(), us)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, tz))
        .unwrap()
        .into()
}

/// Ids, and the same instants in UTC and in Europe/Paris.
fn tz_expected() -> pl::DataFrame {
    let mut df = pl::df!("id" => (0..TZ_N as i64).collect::<Vec<_>>()).unwrap();
    df.with_column(tz_column("t_utc", "UTC")).unwrap();
    df.with_column(tz_column("t_paris", "Europe/Paris")).unwrap();
    df
}

const PANDAS_TZ_FRAME: &str = r#"
import sys, numpy as np, pandas as pd
n = 50
df = pd.DataFrame({
    "id": np.arange(n, dtype="int64"),
    "t_utc": pd.date_range("2024-03-29 23:00", periods=n, freq="h", tz="UTC"),
    "t_paris": pd.date_range("2024-03-30 00:00", periods=n, freq="h", tz="Europe/Paris"),
})
assert df["t_paris"].dt.tz_convert("UTC").equals(df["t_utc"])
"#;

/// `got`'s time columns are in `zones` (`None`: any zone); then its values
/// are compared as instants with [`tz_expected`].
fn check_tz(got: &pl::DataFrame, zones: [Option<&str>; 2], what: &str) {
    let want = tz_expected();
    assert_eq!(got.get_column_names(), want.get_column_names(), "{what}");
    let mut got = got.clone();
    for (name, zone) in ["t_utc", "t_paris"].into_iter().zip(zones) {
        let c = got.column(name).unwrap();
        match c.dtype() {
            DataType::Datetime(_, Some(tz)) => {
                if let Some(zone) = zone {
                    assert_eq!(tz.as_str(), zone, "{what}: time zone of {name}");
                }
            }
            other => panic!("{what}: {name} is {other}, not a time-zone-aware Datetime"),
        }
        let as_want = c.cast(want.column(name).unwrap().dtype()).unwrap();
        got.with_column(as_want).unwrap();
    }
    common::assert_same(&got, &want, None, what);
}

#[test]
fn time_zone_aware_timestamps_written_by_pandas_read_correctly() {
    let dir = temp_dir("tz-from-pandas");
    let code = format!(
        "{PANDAS_TZ_FRAME}
d = sys.argv[1]
df.to_parquet(d + '/tz.parquet', index=False, row_group_size=10)
df.to_csv(d + '/tz.csv', index=False)
"
    );
    run_python(&code, &dir);
    let pq = dir.join("tz.parquet");
    for (exec, opts) in executors() {
        let df = read_parquet(pq.to_str().unwrap()).unwrap();
        check_tz(
            &df.compute_with(opts.clone()).unwrap(),
            [Some("UTC"), Some("Europe/Paris")],
            &format!("parquet from pandas ({exec})"),
        );
        // Local time in the column's zone: 2024-03-31 has 23 hours in Paris.
        let hours = df
            .filter(pl::col("t_paris").dt().day().eq(pl::lit(31i8)))
            .len_with(opts.clone())
            .unwrap();
        assert_eq!(hours, 23, "{exec}: hours of 2024-03-31 in Paris");
        // pyarrow's row-group statistics prune as Polars' do.
        let by_group = blockwise_frame::read_parquet_with(
            pq.to_str().unwrap(),
            blockwise_frame::ParquetOptions::default().row_groups_per_partition(1),
        )
        .unwrap();
        assert_eq!(by_group.npartitions().unwrap(), 5);
        let q = by_group.filter(pl::col("id").gt_eq(pl::lit(40i64)));
        let plan = q.explain().unwrap();
        assert!(plan.contains("1 of 5 row groups read"), "{plan}");
        let got = q.compute_with(opts.clone()).unwrap();
        let mut want = tz_expected().slice(40, 10);
        for name in ["t_utc", "t_paris"] {
            let c = got.column(name).unwrap().clone();
            want.with_column(want.column(name).unwrap().cast(c.dtype()).unwrap())
                .unwrap();
        }
        common::assert_same(&got, &want, None, &format!("pruned parquet from pandas ({exec})"));
        // A time-zone-aware literal prunes on pyarrow's timestamp statistics.
        for (name, zone) in [("t_utc", "UTC"), ("t_paris", "Europe/Paris")] {
            let tz = pl::TimeZone::opt_try_new(Some(zone)).unwrap().unwrap();
            let instant = TZ_BASE_US + 40 * 3_600_000_000;
            let value =
                pl::AnyValue::DatetimeOwned(instant, TimeUnit::Microseconds, Some(std::sync::Arc::new(tz.clone())));
            let literal = pl::lit(pl::Scalar::new(
                DataType::Datetime(TimeUnit::Microseconds, Some(tz)),
                value,
            ));
            let q = by_group.filter(pl::col(name).gt_eq(literal));
            let plan = q.explain().unwrap();
            assert!(plan.contains("1 of 5 row groups read"), "{name}: {plan}");
            let got = q.compute_with(opts.clone()).unwrap();
            common::assert_same(&got, &want, None, &format!("{name} >= a {zone} literal ({exec})"));
        }
        // CSV holds offsets, not zone names: the instants must survive.
        let csv = read_csv(dir.join("tz.csv").to_str().unwrap()).unwrap();
        check_tz(
            &csv.compute_with(opts).unwrap(),
            [None, None],
            &format!("csv from pandas ({exec})"),
        );
    }
}

#[test]
fn time_zone_aware_timestamps_written_here_read_back_in_pandas() {
    let dir = temp_dir("tz-to-pandas");
    let df = blockwise_frame::from_polars(tz_expected(), 3).unwrap();
    df.to_parquet(dir.join("pq")).unwrap();
    df.to_csv(dir.join("csv")).unwrap();
    let code = format!(
        "{PANDAS_TZ_FRAME}
import glob
d = sys.argv[1]
pq = pd.read_parquet(d + '/pq').reset_index(drop=True)
assert list(pq.columns) == list(df.columns), list(pq.columns)
for c in ['t_utc', 't_paris']:
    assert str(pq[c].dt.tz) == str(df[c].dt.tz), (c, pq[c].dtype)
    assert (pq[c].dt.tz_convert('UTC').astype('datetime64[us, UTC]') == df[c].dt.tz_convert('UTC').astype('datetime64[us, UTC]')).all(), c
    assert (pq[c].dt.hour == df[c].dt.hour).all(), c
csv = pd.concat([pd.read_csv(f) for f in sorted(glob.glob(d + '/csv/part.*.csv'))]).reset_index(drop=True)
for c in ['t_utc', 't_paris']:
    got = pd.to_datetime(csv[c], utc=True).astype('datetime64[us, UTC]')
    assert (got == df[c].dt.tz_convert('UTC').astype('datetime64[us, UTC]')).all(), (c, csv[c].head())
print('ok')
"
    );
    run_python(&code, &dir);
}
