//! DataFrame workloads (issue 4) over CSV files the bench writes itself.
//!
//! - `csv-groupby`: the seed example. `read_csv("DIR/data_*.csv")`, group by
//!   `category`, mean of `value`; `result` maps each category to its mean.
//! - `join`: the 20,000,000 rows of `data_*.csv` inner-joined on `id` with
//!   the 1,000,000 rows of `DIR/right.csv` (every 20th id, a `weight`);
//!   `result` is `{"rows", "value_sum", "weight_sum"}` of the joined frame.
//! - `sort`: the same 20,000,000 rows sorted by `value` (a sample of
//!   quantiles, then a range shuffle); `result` is
//!   `{"rows", "first", "last", "sorted"}`, checked in full.
//!
//! The data: `--files` (8) files `DIR/data_<i>.csv` of `--rows` (2,500,000)
//! rows each, columns `id` (0, 1, … across the files), `category` (100
//! values `cat_00` … `cat_99`), `value` (two decimals in `[0, 1000)`), `flag`
//! (`true`/`false`) and `ts` (`2024-01-01 00:00:00` plus `id` seconds), drawn
//! from a fixed seed. Files already in `DIR` are used as they are. What each
//! result must be is computed while the files are written (exactly, with
//! integer hundredths) and kept in `DIR/expected.json`; for files the bench
//! did not write, by parsing them once without blockwise.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use blockwise::frame::polars::prelude::DataFrame as PlFrame;
use blockwise::frame::{self as bwframe, JoinHow};
use blockwise::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Context, Merge, OptionSpec, SplitMix, Workload, close, files_in, io_failed, write_files};
use crate::BenchError;
use crate::measure;
use crate::record::{Record, seconds};

/// The workloads of this family.
pub(crate) const WORKLOADS: &[Workload] = &[
    Workload {
        name: "csv-groupby",
        about: "read_csv(DIR/data_*.csv), group by category, mean of value; result = category -> mean",
        options: &[DIR, FILES, ROWS, MEMORY_LIMIT],
        run: csv_groupby,
    },
    Workload {
        name: "join",
        about: "data_*.csv (20M rows) inner-joined on id with right.csv (1M rows); result = rows and sums",
        options: &[DIR, FILES, ROWS],
        run: join,
    },
    Workload {
        name: "sort",
        about: "data_*.csv (20M rows) sorted by value; result = rows, first and last value",
        options: &[DIR, FILES, ROWS],
        run: sort,
    },
];

const DIR: OptionSpec = OptionSpec {
    name: "dir",
    default: "/tmp/blockwise-bench/csv",
    about: "where data_*.csv are (written when absent)",
};
const FILES: OptionSpec = OptionSpec {
    name: "files",
    default: "8",
    about: "number of data_*.csv files to write",
};
const MEMORY_LIMIT: OptionSpec = OptionSpec {
    name: "memory-limit",
    default: "none",
    about: "out-of-core check: the files must total at least 3x this (e.g. 350MB); reports whether peak RSS stayed under it",
};
const ROWS: OptionSpec = OptionSpec {
    name: "rows",
    default: "2500000",
    about: "rows per file to write",
};

/// Every 20th id is in `right.csv`.
const RIGHT_EVERY: u64 = 20;
const CATEGORIES: u64 = 100;

/// `(year, month, day)` of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// 2024-01-01 00:00:00 in days since 1970-01-01.
const TS_BASE_DAYS: i64 = 19_723;

/// One row of `data_*.csv` (without the newline).
pub(crate) fn data_row(id: u64, rng: &mut SplitMix, out: &mut Vec<u8>) -> (u64, u64) {
    let category = rng.below(CATEGORIES);
    let hundredths = rng.below(100_000);
    let flag = rng.next_u64() & 1 == 1;
    let days = TS_BASE_DAYS + (id / 86_400) as i64;
    let secs = id % 86_400;
    let (y, mo, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{id},cat_{category:02},{}.{:02},{flag},{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        hundredths / 100,
        hundredths % 100,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    (category, hundredths)
}

/// What the results must be, computed without blockwise.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Expected {
    rows: u64,
    /// Per category: (rows, sum of value in hundredths).
    groups: BTreeMap<String, (u64, u64)>,
    /// Rows of the join and the sum of their values in hundredths.
    join_rows: u64,
    join_value_hundredths: u64,
    /// Sum of `weight` over `right.csv`'s rows that match.
    join_weight_sum: u64,
    /// Smallest and largest value, in hundredths.
    min_value: u64,
    max_value: u64,
}

impl Expected {
    fn add(&mut self, id: u64, category: u64, hundredths: u64) {
        self.add_named(id, &format!("cat_{category:02}"), hundredths);
    }

    fn add_named(&mut self, id: u64, category: &str, hundredths: u64) {
        if self.rows == 0 {
            self.min_value = hundredths;
            self.max_value = hundredths;
        }
        self.rows += 1;
        self.min_value = self.min_value.min(hundredths);
        self.max_value = self.max_value.max(hundredths);
        match self.groups.get_mut(category) {
            Some(g) => {
                g.0 += 1;
                g.1 += hundredths;
            }
            None => {
                self.groups.insert(category.to_string(), (1, hundredths));
            }
        }
        if id.is_multiple_of(RIGHT_EVERY) {
            self.join_rows += 1;
            self.join_value_hundredths += hundredths;
            self.join_weight_sum += weight(id);
        }
    }


    /// Category → mean value.
    fn means(&self) -> BTreeMap<String, f64> {
        self.groups
            .iter()
            .map(|(k, (n, s))| (k.clone(), *s as f64 / 100.0 / *n as f64))
            .collect()
    }
}

impl Merge for Expected {
    fn merge(&mut self, other: Expected) {
        if other.rows == 0 {
            return;
        }
        if self.rows == 0 {
            self.min_value = other.min_value;
            self.max_value = other.max_value;
        }
        self.rows += other.rows;
        self.min_value = self.min_value.min(other.min_value);
        self.max_value = self.max_value.max(other.max_value);
        for (k, (n, s)) in other.groups {
            let g = self.groups.entry(k).or_insert((0, 0));
            g.0 += n;
            g.1 += s;
        }
        self.join_rows += other.join_rows;
        self.join_value_hundredths += other.join_value_hundredths;
        self.join_weight_sum += other.join_weight_sum;
    }
}

/// The weight `right.csv` gives id `id`.
fn weight(id: u64) -> u64 {
    (id / RIGHT_EVERY) % 7 + 1
}

/// The data files in `dir`, sorted by name.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    files_in(dir, "data_", ".csv")
}

/// Writes `files` files of `rows` rows (two threads), `right.csv`, and
/// `expected.json`.
pub(crate) fn write_data(dir: &Path, files: usize, rows: u64) -> Result<Expected, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| io_failed(dir, "cannot create", e))?;
    eprintln!(
        "csv: writing {files} files of {rows} rows into {} (once; later runs reuse them)",
        dir.display()
    );
    let expected = write_files(
        dir,
        files,
        |f| format!("data_{f}.csv"),
        |f, w| {
            let mut expected = Expected::default();
            w.write_all(b"id,category,value,flag,ts\n")?;
            let mut rng = SplitMix::new(0x5EED_0000 + f as u64);
            let mut line = Vec::with_capacity(64);
            for i in 0..rows {
                let id = f as u64 * rows + i;
                line.clear();
                let (c, h) = data_row(id, &mut rng, &mut line);
                line.push(b'\n');
                w.write_all(&line)?;
                expected.add(id, c, h);
            }
            Ok(expected)
        },
    )?;
    write_right(dir, files as u64 * rows)?;
    save_expected(dir, &expected)?;
    Ok(expected)
}

/// `right.csv`: `id` (every 20th of `0..total`), `weight`.
fn write_right(dir: &Path, total: u64) -> Result<(), BenchError> {
    let path = dir.join("right.csv");
    let file = std::fs::File::create(&path).map_err(|e| io_failed(&path, "cannot create", e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut write = || -> std::io::Result<()> {
        w.write_all(b"id,weight\n")?;
        for id in (0..total).step_by(RIGHT_EVERY as usize) {
            writeln!(w, "{id},{}", weight(id))?;
        }
        w.flush()
    };
    write().map_err(|e| io_failed(&path, "cannot write", e))
}

fn save_expected(dir: &Path, expected: &Expected) -> Result<(), BenchError> {
    let path = dir.join("expected.json");
    let text = serde_json::to_string(expected).map_err(|e| BenchError::Failed(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| io_failed(&path, "cannot write", e))
}

/// Parses `value` (`123.45`, at most two decimals) into hundredths.
fn hundredths(text: &str) -> Option<u64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 2 {
        return None;
    }
    let frac_value: u64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    Some(whole.parse::<u64>().ok()? * 100 + if frac.len() == 1 { frac_value * 10 } else { frac_value })
}

/// What the results must be, for files the bench did not write: parsed
/// once, without blockwise, and kept in `expected.json`.
fn expected_from_files(dir: &Path, files: &[PathBuf]) -> Result<Expected, BenchError> {
    eprintln!("csv: computing the expected results from {} files in {}", files.len(), dir.display());
    let mut expected = Expected::default();
    for path in files {
        let file = std::fs::File::open(path).map_err(|e| io_failed(path, "cannot open", e))?;
        let mut lines = BufReader::with_capacity(1 << 20, file).lines();
        let header = lines
            .next()
            .transpose()
            .map_err(|e| io_failed(path, "cannot read", e))?
            .unwrap_or_default();
        let names: Vec<&str> = header.split(',').collect();
        let index = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| BenchError::Failed(format!("{}: no column {name:?}", path.display())))
        };
        let (ci, vi, ii) = (index("category")?, index("value")?, index("id")?);
        for (n, line) in lines.enumerate() {
            let line = line.map_err(|e| io_failed(path, "cannot read", e))?;
            let fields: Vec<&str> = line.split(',').collect();
            let bad = || BenchError::Failed(format!("{}: line {}: cannot read {line:?}", path.display(), n + 2));
            let id: u64 = fields.get(ii).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let h = fields.get(vi).and_then(|s| hundredths(s)).ok_or_else(bad)?;
            expected.add_named(id, fields.get(ci).ok_or_else(bad)?, h);
        }
    }
    if !dir.join("right.csv").exists() {
        let max_id = expected.rows; // ids are 0..rows in the bench's files
        write_right(dir, max_id)?;
    }
    save_expected(dir, &expected)?;
    Ok(expected)
}

/// The data directory, written if it holds no data files; the expected results.
fn prepare(ctx: &Context<'_>) -> Result<(PathBuf, Expected), BenchError> {
    let dir = PathBuf::from(ctx.options.get("dir").unwrap_or(DIR.default));
    let files = ctx.options.usize("files", 8)?;
    let rows = ctx.options.usize("rows", 2_500_000)? as u64;
    if files == 0 || rows == 0 {
        return Err(BenchError::Usage("--files and --rows must be at least 1".into()));
    }
    let existing = data_files(&dir);
    if existing.is_empty() {
        let expected = write_data(&dir, files, rows)?;
        return Ok((dir, expected));
    }
    let saved = std::fs::read_to_string(dir.join("expected.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Expected>(&t).ok());
    let expected = match saved {
        Some(e) => e,
        None => expected_from_files(&dir, &existing)?,
    };
    Ok((dir, expected))
}

fn glob(dir: &Path) -> String {
    format!("{}/data_*.csv", dir.display())
}

/// A float column of a result frame, by name.
fn f64_column(df: &PlFrame, name: &str) -> Result<Vec<Option<f64>>, BenchError> {
    let c = df
        .column(name)
        .map_err(|e| BenchError::Failed(format!("result has no column {name:?}: {e}")))?;
    let c = c
        .cast(&blockwise::frame::polars::prelude::DataType::Float64)
        .map_err(|e| BenchError::Failed(format!("column {name:?}: {e}")))?;
    Ok(c.f64()
        .map_err(|e| BenchError::Failed(format!("column {name:?}: {e}")))?
        .iter()
        .collect())
}

fn str_column(df: &PlFrame, name: &str) -> Result<Vec<Option<String>>, BenchError> {
    let c = df
        .column(name)
        .map_err(|e| BenchError::Failed(format!("result has no column {name:?}: {e}")))?;
    Ok(c.str()
        .map_err(|e| BenchError::Failed(format!("column {name:?}: {e}")))?
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

/// Common fields of the frame records.
fn finish_record(
    ctx: &Context<'_>,
    dir: &Path,
    expected: &Expected,
    build: std::time::Duration,
    wall: std::time::Duration,
    npartitions: Option<usize>,
    rss_before: Option<u64>,
) -> Record {
    let peak = measure::peak_rss_bytes();
    let bytes: u64 = data_files(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let mut r = ctx.record();
    r.set("dir", dir.display().to_string())
        .set("rows", expected.rows)
        .set("bytes", bytes)
        .set("npartitions", npartitions)
        .set("build_s", seconds(build))
        .set("wall_s", seconds(wall))
        .set("total_s", seconds(build + wall))
        .set("peak_rss_bytes", peak)
        .set("rss_before_bytes", rss_before);
    r
}

fn csv_groupby(ctx: &Context<'_>) -> Result<Record, BenchError> {
    let (dir, expected) = prepare(ctx)?;
    let memory_limit = ctx.options.bytes("memory-limit")?;
    if let Some(limit) = memory_limit {
        let bytes: u64 = data_files(&dir).iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
        if bytes < 3 * limit {
            return Err(BenchError::Usage(format!(
                "--memory-limit {limit}: the files in {} total {bytes} bytes, less than 3 times the limit \
                 (write more with --files/--rows into an empty --dir, or lower the limit)",
                dir.display()
            )));
        }
    }
    measure::reset_peak_rss();
    let rss_before = measure::rss_bytes();
    let t0 = Instant::now();
    let df = bwframe::read_csv(glob(&dir))?;
    let npartitions = df.npartitions().ok();
    let means = df.groupby(["category"]).col("value").mean();
    let build = t0.elapsed();
    let t1 = Instant::now();
    let out = means.compute_with(ctx.scheduler.scheduler.clone())?;
    let wall = t1.elapsed();

    let categories = str_column(&out, "category")?;
    let values = f64_column(&out, "value")?;
    let mut result = serde_json::Map::new();
    for (c, v) in categories.into_iter().zip(values) {
        let (Some(c), Some(v)) = (c, v) else {
            return Err(BenchError::Failed("csv-groupby: a null category or mean in the result".into()));
        };
        result.insert(c, serde_json::json!(v));
    }
    let want = expected.means();
    if result.len() != want.len() {
        return Err(BenchError::Failed(format!(
            "csv-groupby: {} groups, expected {}",
            result.len(),
            want.len()
        )));
    }
    for (k, w) in &want {
        let got = result.get(k).and_then(|v| v.as_f64());
        if !got.is_some_and(|g| close(g, *w, 1e-9)) {
            return Err(BenchError::Failed(format!(
                "csv-groupby: mean of {k} is {got:?}, expected {w} (computed without blockwise)"
            )));
        }
    }
    let mut r = finish_record(ctx, &dir, &expected, build, wall, npartitions, rss_before);
    if let Some(limit) = memory_limit {
        // The engine has no memory limit to set: this only reports whether
        // the peak stayed under the one asked for.
        let peak = measure::peak_rss_bytes();
        r.set("memory_limit_bytes", limit)
            .set("under_memory_limit", peak.map(|p| p <= limit));
    }
    r.set("groups", result.len()).set("result", serde_json::Value::Object(result));
    Ok(r)
}

fn join(ctx: &Context<'_>) -> Result<Record, BenchError> {
    let (dir, expected) = prepare(ctx)?;
    measure::reset_peak_rss();
    let rss_before = measure::rss_bytes();
    let t0 = Instant::now();
    let left = bwframe::read_csv(glob(&dir))?.select_columns(["id", "value"]);
    let right = bwframe::read_csv(dir.join("right.csv").display().to_string())?;
    let npartitions = left.npartitions().ok();
    let joined = left.join(&right, &["id"], &["id"], JoinHow::Inner);
    let build = t0.elapsed();
    let t1 = Instant::now();
    let out = joined.compute_with(ctx.scheduler.scheduler.clone())?;
    let wall = t1.elapsed();
    let rows = out.height() as u64;
    let value_sum: f64 = f64_column(&out, "value")?.into_iter().flatten().sum();
    let weight_sum: f64 = f64_column(&out, "weight")?.into_iter().flatten().sum();
    let want_value = expected.join_value_hundredths as f64 / 100.0;
    if rows != expected.join_rows
        || !close(value_sum, want_value, 1e-9)
        || weight_sum != expected.join_weight_sum as f64
    {
        return Err(BenchError::Failed(format!(
            "join: {rows} rows, value sum {value_sum}, weight sum {weight_sum}; expected {}, {want_value}, {}",
            expected.join_rows, expected.join_weight_sum
        )));
    }
    let mut r = finish_record(ctx, &dir, &expected, build, wall, npartitions, rss_before);
    r.set(
        "result",
        serde_json::json!({"rows": rows, "value_sum": value_sum, "weight_sum": weight_sum}),
    );
    Ok(r)
}

fn sort(ctx: &Context<'_>) -> Result<Record, BenchError> {
    let (dir, expected) = prepare(ctx)?;
    measure::reset_peak_rss();
    let rss_before = measure::rss_bytes();
    let t0 = Instant::now();
    let df = bwframe::read_csv(glob(&dir))?;
    let npartitions = df.npartitions().ok();
    // Sampling the boundaries computes: it is part of the sort's time.
    let sorted = df.sort_values_with(&["value"], false, ctx.scheduler.scheduler.clone())?;
    let build = t0.elapsed();
    let t1 = Instant::now();
    let out = sorted.compute_with(ctx.scheduler.scheduler.clone())?;
    let wall = t1.elapsed();
    let values = f64_column(&out, "value")?;
    let ids = out
        .column("id")
        .map_err(|e| BenchError::Failed(format!("sort: {e}")))?
        .n_unique()
        .map_err(|e| BenchError::Failed(format!("sort: {e}")))?;
    let rows = values.len() as u64;
    let is_sorted = values.windows(2).all(|w| matches!((w[0], w[1]), (Some(a), Some(b)) if a <= b));
    let (first, last) = (values.first().copied().flatten(), values.last().copied().flatten());
    let want = (expected.min_value as f64 / 100.0, expected.max_value as f64 / 100.0);
    if rows != expected.rows || ids as u64 != expected.rows || !is_sorted || first != Some(want.0) || last != Some(want.1) {
        return Err(BenchError::Failed(format!(
            "sort: {rows} rows ({ids} distinct ids), sorted: {is_sorted}, first {first:?}, last {last:?}; \
             expected {} rows from {} to {}",
            expected.rows, want.0, want.1
        )));
    }
    drop(out);
    let mut r = finish_record(ctx, &dir, &expected, build, wall, npartitions, rss_before);
    r.set(
        "result",
        serde_json::json!({"rows": rows, "first": first, "last": last, "sorted": is_sorted}),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::tests::{run, temp_dir};

    #[test]
    fn dates_and_values() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(TS_BASE_DAYS), (2024, 1, 1));
        assert_eq!(civil_from_days(TS_BASE_DAYS + 59), (2024, 2, 29));
        assert_eq!(civil_from_days(TS_BASE_DAYS + 366), (2025, 1, 1));
        assert_eq!(hundredths("123.45"), Some(12345));
        assert_eq!(hundredths("7.5"), Some(750));
        assert_eq!(hundredths("0"), Some(0));
        assert_eq!(hundredths("1.234"), None);
        let mut line = Vec::new();
        let mut rng = SplitMix::new(1);
        let (c, h) = data_row(86_400 + 3_661, &mut rng, &mut line);
        let text = String::from_utf8(line).unwrap();
        let fields: Vec<&str> = text.split(',').collect();
        assert_eq!(fields[0], "90061");
        assert_eq!(fields[1], format!("cat_{c:02}"));
        assert_eq!(hundredths(fields[2]), Some(h));
        assert!(fields[3] == "true" || fields[3] == "false");
        assert_eq!(fields[4], "2024-01-02 01:01:01");
    }

    #[test]
    fn written_files_parse_back_to_the_same_expectation() {
        let dir = temp_dir("csv-gen");
        let written = write_data(&dir, 3, 1000).unwrap();
        assert_eq!(written.rows, 3000);
        assert_eq!(written.join_rows, 150);
        assert_eq!(data_files(&dir).len(), 3);
        let parsed = expected_from_files(&dir, &data_files(&dir)).unwrap();
        assert_eq!(parsed, written);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn groupby_join_and_sort_check_their_results() {
        let dir = temp_dir("csv-run");
        let d = dir.to_str().unwrap();
        let opts = [("dir", d), ("files", "3"), ("rows", "2000")];
        for scheduler in ["sync", "threads:2"] {
            let r = run("csv-groupby", scheduler, &opts).unwrap();
            assert_eq!(r.get("groups").unwrap(), 100);
            assert_eq!(r.get("rows").unwrap(), 6000);
            let r = run("join", scheduler, &opts).unwrap();
            assert_eq!(r.get("result").unwrap()["rows"], 300);
            let r = run("sort", scheduler, &opts).unwrap();
            assert_eq!(r.get("result").unwrap()["rows"], 6000);
        }
        // A wrong expectation fails the run instead of printing a number.
        let path = dir.join("expected.json");
        let mut e: Expected = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        e.groups.get_mut("cat_07").unwrap().1 += 1;
        save_expected(&dir, &e).unwrap();
        assert!(matches!(run("csv-groupby", "sync", &opts), Err(BenchError::Failed(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
