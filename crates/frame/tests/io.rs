//! Readers and writers: CSV edge cases written by the tests themselves,
//! blocks, gzip, schemas, errors that point at the bad value, Parquet, JSON
//! lines, atomic writes, and what the planner pushes into the readers.

mod common;

use std::io::Write;
use std::path::Path;

use blockwise_frame::polars::prelude::{self as pl, DataType, col, lit};
use blockwise_frame::{
    CsvOptions, ParquetOptions, read_csv, read_csv_with, read_json, read_parquet, read_parquet_with,
};
use blockwise_local::Compute;
use common::{assert_same, executors, temp_dir};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn csv_rows(rows: usize, offset: usize) -> String {
    let mut s = String::from("id,category,value,note\n");
    for i in offset..offset + rows {
        let value = if i % 9 == 4 {
            String::new()
        } else {
            format!("{}", i as f64 * 0.25)
        };
        s.push_str(&format!("{i},{},{value},\"n, {i}\"\n", ["x", "y", "z"][i % 3]));
    }
    s
}

#[test]
fn glob_of_files_reads_in_order_with_one_schema() {
    let dir = temp_dir("glob");
    write(&dir, "data_0.csv", &csv_rows(40, 0));
    write(&dir, "data_1.csv", &csv_rows(35, 40));
    write(&dir, "data_2.csv", &csv_rows(25, 75));
    let df = read_csv(dir.join("data_*.csv").to_str().unwrap()).unwrap();
    assert_eq!(df.columns().unwrap(), ["id", "category", "value", "note"]);
    assert_eq!(
        df.dtypes().unwrap(),
        [DataType::Int64, DataType::String, DataType::Float64, DataType::String]
    );
    for (exec, opts) in executors() {
        let got = df.compute_with(opts).unwrap();
        assert_eq!(got.height(), 100, "{exec}");
        let ids: Vec<i64> = got.column("id").unwrap().i64().unwrap().into_no_null_iter().collect();
        assert_eq!(ids, (0..100).collect::<Vec<_>>(), "{exec}: files and rows in order");
        assert_eq!(
            got.column("value").unwrap().null_count(),
            11,
            "{exec}: empty fields are nulls"
        );
        assert_eq!(
            got.column("note").unwrap().str().unwrap().get(7),
            Some("n, 7"),
            "{exec}: quoted separators"
        );
    }
}

#[test]
fn byte_range_blocks_give_the_same_rows_as_one_block() {
    let dir = temp_dir("blocks");
    let p = write(&dir, "big.csv", &csv_rows(500, 0));
    let whole = read_csv_with(&p, CsvOptions::new().blocksize(None)).unwrap();
    assert_eq!(whole.npartitions().unwrap(), 1);
    let want = whole.compute().unwrap();
    for bs in [64u64, 500, 1999, 4096] {
        let df = read_csv_with(&p, CsvOptions::new().blocksize(Some(bs))).unwrap();
        assert!(df.npartitions().unwrap() > 1);
        for (exec, opts) in executors() {
            let got = df.compute_with(opts).unwrap();
            assert_same(&got, &want, None, &format!("blocksize {bs} ({exec})"));
        }
    }
}

#[test]
fn quoted_newlines_in_one_block_are_read() {
    let dir = temp_dir("quoted");
    let text = "id,text\n1,\"first line\nsecond line\"\n2,\"with \"\"quotes\"\" and, commas\"\n3,plain\n";
    let p = write(&dir, "q.csv", text);
    let got = read_csv(&p).unwrap().compute().unwrap();
    let texts: Vec<&str> = got
        .column("text")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(
        texts,
        ["first line\nsecond line", "with \"quotes\" and, commas", "plain"]
    );
}

#[test]
fn a_quoted_newline_across_a_block_boundary_is_a_clear_error() {
    let dir = temp_dir("quoted-split");
    let mut text = String::from("id,text\n");
    for i in 0..50 {
        text.push_str(&format!("{i},\"line one\nline two of record {i}\"\n"));
    }
    let p = write(&dir, "q.csv", &text);
    let err = read_csv_with(&p, CsvOptions::new().blocksize(Some(100)))
        .unwrap()
        .compute()
        .unwrap_err()
        .to_string();
    assert!(err.contains("q.csv") && err.contains("blocksize(None)"), "{err}");
    let ok = read_csv_with(&p, CsvOptions::new().blocksize(None))
        .unwrap()
        .compute()
        .unwrap();
    assert_eq!(ok.height(), 50);
}

#[test]
fn empty_and_header_only_files_add_no_rows() {
    let dir = temp_dir("empty");
    write(&dir, "a_0.csv", "");
    write(&dir, "a_1.csv", "id,category,value,note\n");
    write(&dir, "a_2.csv", &csv_rows(10, 0));
    write(&dir, "a_3.csv", "");
    let df = read_csv(dir.join("a_*.csv").to_str().unwrap()).unwrap();
    assert_eq!(
        df.dtypes().unwrap()[0],
        DataType::Int64,
        "schema from the first file with data"
    );
    for (exec, opts) in executors() {
        let got = df.compute_with(opts).unwrap();
        assert_eq!(got.height(), 10, "{exec}");
    }
    let only_header = write(&dir, "h.csv", "a,b\n");
    let got = read_csv(&only_header).unwrap().compute().unwrap();
    assert_eq!(got.height(), 0);
    assert_eq!(got.get_column_names(), ["a", "b"]);
}

#[test]
fn missing_values_and_null_markers() {
    let dir = temp_dir("nulls");
    let p = write(&dir, "n.csv", "a,b,c\n1,,x\nNA,2.5,\n3,NA,z\n");
    let got = read_csv_with(&p, CsvOptions::new().null_values(["NA"]))
        .unwrap()
        .compute()
        .unwrap();
    assert_eq!(got.column("a").unwrap().null_count(), 1);
    assert_eq!(got.column("b").unwrap().null_count(), 2);
    assert_eq!(got.column("c").unwrap().null_count(), 1);
    assert_eq!(got.column("a").unwrap().dtype(), &DataType::Int64);
}

#[test]
fn explicit_schema_dtypes_and_columns() {
    let dir = temp_dir("schema");
    let p = write(&dir, "s.csv", &csv_rows(20, 0));
    let df = read_csv_with(&p, CsvOptions::new().dtype("id", DataType::Float64)).unwrap();
    assert_eq!(df.dtypes().unwrap()[0], DataType::Float64);
    let df = read_csv_with(&p, CsvOptions::new().columns(["value", "id"])).unwrap();
    assert_eq!(df.columns().unwrap(), ["value", "id"]);
    let got = df.compute().unwrap();
    assert_eq!(got.width(), 2);
    let schema: pl::Schema = [
        ("id".into(), DataType::Int32),
        ("category".into(), DataType::String),
        ("value".into(), DataType::Float32),
        ("note".into(), DataType::String),
    ]
    .into_iter()
    .collect();
    let got = read_csv_with(&p, CsvOptions::new().schema(schema))
        .unwrap()
        .compute()
        .unwrap();
    assert_eq!(got.column("id").unwrap().dtype(), &DataType::Int32);
    assert_eq!(got.column("value").unwrap().dtype(), &DataType::Float32);
}

#[test]
fn gzip_files_are_one_partition_each() {
    let dir = temp_dir("gzip");
    for (i, offset) in [(0, 0), (1, 30)] {
        let f = std::fs::File::create(dir.join(format!("g_{i}.csv.gz"))).unwrap();
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        enc.write_all(csv_rows(30, offset).as_bytes()).unwrap();
        enc.finish().unwrap();
    }
    let df = read_csv_with(
        dir.join("g_*.csv.gz").to_str().unwrap(),
        CsvOptions::new().blocksize(Some(10)),
    )
    .unwrap();
    assert_eq!(df.npartitions().unwrap(), 2);
    let got = df.compute().unwrap();
    assert_eq!(got.height(), 60);
    assert_eq!(got.column("id").unwrap().i64().unwrap().get(59), Some(59));
}

#[test]
fn a_malformed_row_names_the_file_line_and_column() {
    let dir = temp_dir("malformed");
    let mut text = csv_rows(30, 0);
    text.push_str("30,x,not-a-number,\"n\"\n");
    let p = write(&dir, "bad.csv", &text);
    // The schema is inferred from the top of the file, before the bad row.
    let err = read_csv_with(&p, CsvOptions::new().sample(300, 10))
        .unwrap()
        .compute()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.csv") && err.contains("line 32") && err.contains("column 3") && err.contains("value"),
        "{err}"
    );

    let mut text = csv_rows(30, 0);
    text.push_str("30,x,1.0,\"n\",extra\n");
    let p = write(&dir, "ragged.csv", &text);
    let err = read_csv_with(&p, CsvOptions::new().sample(300, 10))
        .unwrap()
        .compute()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ragged.csv") && err.contains("line 32") && err.contains("expected 4 fields, found 5"),
        "{err}"
    );

    // In a later block: the line is counted from the top of the file.
    let mut text = csv_rows(200, 0);
    text.push_str("200,x,oops,\"n\"\n");
    let p = write(&dir, "late.csv", &text);
    let err = read_csv_with(&p, CsvOptions::new().blocksize(Some(1000)).sample(300, 10))
        .unwrap()
        .compute()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("late.csv") && err.contains("line 202") && err.contains("\"value\""),
        "{err}"
    );
}

#[test]
fn files_whose_columns_disagree_name_both_files_and_the_column() {
    let dir = temp_dir("disagree");
    write(&dir, "d_0.csv", "a,b,c\n1,2,3\n");
    write(&dir, "d_1.csv", "a,x,c\n1,2,3\n");
    let err = read_csv(dir.join("d_*.csv").to_str().unwrap())
        .unwrap()
        .compute()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("d_0.csv") && err.contains("d_1.csv") && err.contains("\"b\"") && err.contains("\"x\""),
        "{err}"
    );
}

#[test]
fn projection_and_filters_are_pushed_into_the_reader() {
    let dir = temp_dir("pushdown");
    let p = write(&dir, "p.csv", &csv_rows(60, 0));
    let df = read_csv(&p).unwrap();
    let q = df
        .filter(col("id").gt(lit(10)))
        .groupby(["category"])
        .col("value")
        .sum();
    let plan = q.explain().unwrap();
    assert!(
        plan.contains("ReadCsv") && plan.contains("columns [id, category, value] (3 of 4)"),
        "{plan}"
    );
    assert!(plan.contains("filter: [(col(\"id\")) > (dyn int: 10)]"), "{plan}");
    assert!(!plan.contains("Steps"), "the filter left no step behind:\n{plan}");
    let got = q.compute().unwrap();
    let want = common::polars(&df.compute().unwrap(), |l| {
        l.filter(col("id").gt(lit(10)))
            .group_by([col("category")])
            .agg([col("value").sum()])
    });
    assert_same(&got, &want, Some(&["category"]), "pushdown result");
    // `note` is never parsed: a malformed note would not matter.
    let plan = df.select([col("id")]).explain().unwrap();
    assert!(plan.contains("columns [id] (1 of 4)"), "{plan}");
    // A filter after a computed column stays above it.
    let plan = df
        .with_columns([col("value").sum().alias("total")])
        .filter(col("id").gt(lit(3)))
        .explain()
        .unwrap();
    assert!(plan.contains("Steps") && plan.contains("filter"), "{plan}");
}

/// Rows without any quote character: the reader's fast path (Polars' chunk
/// parser on lines counted by the reader).
fn plain_rows(rows: usize, offset: usize, eol: &str) -> String {
    let mut s = format!("id,category,value,flag,ts{eol}");
    for i in offset..offset + rows {
        let value = if i % 9 == 4 {
            String::new()
        } else {
            format!("{}", i as f64 * 0.25)
        };
        let category = if i % 7 == 3 {
            "NA"
        } else {
            ["x", "y", "zzzzzzzzzzzzzzzzzzzz"][i % 3]
        };
        s.push_str(&format!(
            "{i},{category},{value},{},2024-01-{:02} {:02}:{:02}:00{eol}",
            i % 2 == 0,
            1 + i % 28,
            i % 24,
            i % 60
        ));
    }
    s
}

/// What Polars itself reads from the whole file with `schema`.
fn polars_read(path: &Path, schema: pl::SchemaRef, null_values: &[&str]) -> pl::DataFrame {
    use blockwise_frame::polars::io::SerReader;
    let mut parse = pl::CsvParseOptions::default();
    if !null_values.is_empty() {
        parse = parse.with_null_values(Some(pl::NullValues::AllColumns(
            null_values.iter().map(|s| (*s).into()).collect(),
        )));
    }
    pl::CsvReadOptions::default()
        .with_has_header(true)
        .with_schema(Some(schema))
        .with_parse_options(parse)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .unwrap()
        .finish()
        .unwrap()
}

#[test]
fn quote_free_text_reads_as_polars_reads_it() {
    let dir = temp_dir("plain");
    let mut files = vec![
        ("lf.csv", plain_rows(300, 0, "\n")),
        ("crlf.csv", plain_rows(300, 0, "\r\n")),
        ("no-final-newline.csv", plain_rows(300, 0, "\n").trim_end().to_string()),
    ];
    // Blank lines: Polars skips them; the parser then finds fewer records
    // than lines and the reader falls back to Polars' reader.
    let mut blank = plain_rows(120, 0, "\n");
    blank.push('\n');
    blank.push_str(plain_rows(100, 120, "\n").split_once('\n').unwrap().1);
    files.push(("blank-lines.csv", blank));
    // Two datetime formats in one column: no single format reads them all,
    // so the column is parsed again with Polars' per-value inference.
    let mixed: String = plain_rows(300, 0, "\n")
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i % 5 == 2 {
                format!("{}\n", l.replacen(' ', "T", 1))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    files.push(("mixed-datetimes.csv", mixed));
    for (name, text) in files {
        let p = write(&dir, name, &text);
        for nulls in [&[][..], &["NA"][..]] {
            let whole =
                read_csv_with(&p, CsvOptions::new().blocksize(None).null_values(nulls.iter().copied())).unwrap();
            let schema = whole.schema().unwrap();
            assert_eq!(
                schema.get("ts"),
                Some(&DataType::Datetime(pl::TimeUnit::Microseconds, None)),
                "{name}"
            );
            let want = polars_read(&p, schema, nulls);
            assert!(
                want.height() >= 300 || name == "blank-lines.csv",
                "{name}: {}",
                want.height()
            );
            for bs in [None, Some(64u64), Some(1000), Some(4096)] {
                let df = read_csv_with(&p, CsvOptions::new().blocksize(bs).null_values(nulls.iter().copied())).unwrap();
                for (exec, opts) in executors() {
                    let what = format!("{name}, blocksize {bs:?}, nulls {nulls:?} ({exec})");
                    assert_same(&df.compute_with(opts.clone()).unwrap(), &want, None, &what);
                    // Projected: only some columns parsed, in the asked order.
                    let got = df.select([col("value"), col("id")]).compute_with(opts).unwrap();
                    let want = want.select(["value", "id"]).unwrap();
                    assert_same(&got, &want, None, &format!("{what}, projected"));
                }
            }
        }
    }
}

#[test]
fn large_blocks_are_mapped_and_read_whole() {
    // Blocks of a megabyte and more are memory-mapped rather than read.
    let dir = temp_dir("mapped");
    let p = write(&dir, "big.csv", &plain_rows(80_000, 0, "\n"));
    let len = std::fs::metadata(&p).unwrap().len();
    assert!(len > 3 << 20, "{len}");
    let whole = read_csv_with(&p, CsvOptions::new().blocksize(None)).unwrap();
    let want = polars_read(&p, whole.schema().unwrap(), &[]);
    for bs in [None, Some(1_300_000u64), Some(len / 2 + 1)] {
        let df = read_csv_with(&p, CsvOptions::new().blocksize(bs)).unwrap();
        let got = df.compute().unwrap();
        assert_same(&got, &want, None, &format!("blocksize {bs:?}"));
        let means = df.groupby(["category"]).col("value").mean().compute().unwrap();
        let want_means = common::polars(&want, |l| l.group_by([col("category")]).agg([col("value").mean()]));
        assert_same(
            &means,
            &want_means,
            Some(&["category"]),
            &format!("group-by, blocksize {bs:?}"),
        );
    }
}

#[test]
fn bad_values_in_quote_free_text_name_the_file_line_and_column() {
    let dir = temp_dir("plain-bad");
    let mut text = plain_rows(200, 0, "\n");
    text.push_str("200,x,oops,true,2024-01-01 00:00:00\n");
    let p = write(&dir, "bad.csv", &text);
    for bs in [None, Some(1000u64)] {
        let err = read_csv_with(&p, CsvOptions::new().blocksize(bs).sample(400, 10))
            .unwrap()
            .compute()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.csv")
                && err.contains("line 202")
                && err.contains("column 3")
                && err.contains("\"value\""),
            "blocksize {bs:?}: {err}"
        );
    }
    let mut text = plain_rows(200, 0, "\n");
    text.push_str("200,x,1.5,true,2024-01-01 00:00:00,extra\n");
    let p = write(&dir, "ragged.csv", &text);
    let err = read_csv_with(&p, CsvOptions::new().sample(400, 10))
        .unwrap()
        .compute()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ragged.csv") && err.contains("line 202") && err.contains("expected 5 fields, found 6"),
        "{err}"
    );
}

#[test]
fn a_corrupt_column_the_query_does_not_use_is_never_parsed() {
    // `flag` is inferred as a boolean from the top of the file; a later
    // value is no boolean. Only a read that parses `flag` can fail on it.
    let dir = temp_dir("unused");
    let mut text = plain_rows(200, 0, "\n");
    text.push_str("200,x,1.5,maybe,2024-01-01 00:00:00\n");
    let p = write(&dir, "u.csv", &text);
    for bs in [None, Some(1000u64)] {
        let df = read_csv_with(&p, CsvOptions::new().blocksize(bs).sample(400, 10)).unwrap();
        assert_eq!(df.dtypes().unwrap()[3], DataType::Boolean);
        for (exec, opts) in executors() {
            let means = df.groupby(["category"]).col("value").mean().compute_with(opts.clone());
            assert_eq!(means.unwrap().height(), 4, "{exec}, blocksize {bs:?}");
            let err = df.select([col("flag")]).compute_with(opts).unwrap_err().to_string();
            assert!(err.contains("line 202") && err.contains("\"flag\""), "{exec}: {err}");
        }
    }
}

#[test]
fn parquet_roundtrip_projection_and_filters() {
    let dir = temp_dir("parquet");
    let whole = common::sample(300);
    let df = blockwise_frame::from_polars(whole.clone(), 3).unwrap();
    let out = dir.join("pq");
    let files = df.to_parquet(&out).unwrap();
    assert_eq!(files.len(), 3);
    assert!(files[0].ends_with("part.0.parquet"));
    let back = read_parquet(out.to_str().unwrap()).unwrap();
    assert_eq!(back.npartitions().unwrap(), 3);
    assert_eq!(back.len().unwrap(), 300);
    for (exec, opts) in executors() {
        assert_same(
            &back.compute_with(opts.clone()).unwrap(),
            &whole,
            None,
            &format!("parquet roundtrip ({exec})"),
        );
        let q = back.filter(col("id").lt(lit(50))).select([col("id"), col("value")]);
        let plan = q.explain().unwrap();
        assert!(
            plan.contains("ReadParquet") && plan.contains("columns [id, value]") && plan.contains("filter"),
            "{plan}"
        );
        let got = q.compute_with(opts).unwrap();
        assert_eq!(got.height(), 50, "{exec}");
    }
    let names = df
        .to_parquet_with(
            dir.join("named"),
            |i| format!("chunk-{i:03}.parquet"),
            blockwise_local::ComputeOptions::new(),
        )
        .unwrap();
    assert!(names[2].ends_with("chunk-002.parquet"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("named"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left behind");
}

/// Writes `df` as one Parquet file of row groups of `rows` rows (Polars'
/// own writer, statistics on).
fn write_row_groups(df: &pl::DataFrame, path: &Path, rows: usize) {
    let file = std::fs::File::create(path).unwrap();
    pl::ParquetWriter::new(file)
        .with_row_group_size(Some(rows))
        .with_statistics(pl::StatisticsOptions::full())
        .finish(&mut df.clone())
        .unwrap();
}

/// Byte ranges of a Parquet file's row groups, from its footer.
fn row_group_ranges(path: &Path) -> Vec<std::ops::Range<u64>> {
    use blockwise_frame::polars::io::SerReader;
    let mut reader = pl::ParquetReader::new(std::fs::File::open(path).unwrap());
    let meta = reader.get_metadata().unwrap();
    meta.row_groups.iter().map(|rg| rg.full_byte_range()).collect()
}

#[test]
fn parquet_files_split_into_partitions_by_row_group() {
    let dir = temp_dir("row-groups");
    let whole = common::sample(8000);
    let path = dir.join("big.parquet");
    write_row_groups(&whole, &path, 1000);
    assert_eq!(row_group_ranges(&path).len(), 8);
    let p = path.to_str().unwrap();
    let cases = [
        (
            "default (one partition, the file is small)",
            ParquetOptions::default(),
            1,
        ),
        ("whole files", ParquetOptions::whole_files(), 1),
        (
            "3 row groups each",
            ParquetOptions::default().row_groups_per_partition(3),
            3,
        ),
        (
            "a blocksize below one row group",
            ParquetOptions::default().blocksize(1),
            8,
        ),
    ];
    for (what, options, n) in cases {
        let df = read_parquet_with(p, options).unwrap();
        assert_eq!(df.npartitions().unwrap(), n, "{what}");
        assert_eq!(df.len().unwrap(), 8000, "{what}");
        for (exec, opts) in executors() {
            assert_same(
                &df.compute_with(opts.clone()).unwrap(),
                &whole,
                None,
                &format!("{what} ({exec})"),
            );
            let q = df.filter(col("qty").gt(lit(10i64))).select([col("id"), col("qty")]);
            let want = common::polars(&whole, |l| {
                l.filter(col("qty").gt(lit(10i64))).select([col("id"), col("qty")])
            });
            assert_same(
                &q.compute_with(opts.clone()).unwrap(),
                &want,
                None,
                &format!("{what} filtered ({exec})"),
            );
            assert_eq!(df.head_with(1500, opts).unwrap().height(), 1500, "{what} head");
        }
    }
    // A blocksize of about three row groups' bytes gives partitions of at
    // most three row groups each.
    let df = read_parquet_with(p, ParquetOptions::default().blocksize(150_000)).unwrap();
    assert!(df.npartitions().unwrap() > 1, "{}", df.explain().unwrap());
    assert_same(&df.compute().unwrap(), &whole, None, "by blocksize");
}

#[test]
fn parquet_row_groups_are_pruned_by_statistics_and_never_read() {
    let dir = temp_dir("prune");
    let whole = common::sample(8000);
    let path = dir.join("sorted.parquet");
    // `id` is 0..8000 in order: row group g holds ids 1000g..1000g+999.
    write_row_groups(&whole, &path, 1000);
    let p = path.to_str().unwrap();
    let by_group = read_parquet_with(p, ParquetOptions::default().row_groups_per_partition(1)).unwrap();
    let one_partition = read_parquet(p).unwrap();
    let queries: Vec<(&str, pl::Expr, usize)> = vec![
        ("id >= 6500", col("id").gt_eq(lit(6500i64)), 2),
        ("6500 <= id (literal on the left)", lit(6500i64).lt_eq(col("id")), 2),
        ("id == 4321", col("id").eq(lit(4321i64)), 1),
        (
            "id < 1500 and value > 0",
            col("id").lt(lit(1500i64)).and(col("value").gt(lit(0.0))),
            2,
        ),
        (
            "id < 500 or id >= 7500",
            col("id").lt(lit(500i64)).or(col("id").gt_eq(lit(7500i64))),
            2,
        ),
        ("id > 100000", col("id").gt(lit(100_000i64)), 0),
        ("id is null (no row group has a null id)", col("id").is_null(), 0),
        (
            "day > a date after every day",
            col("day").gt(lit(pl::Scalar::new(DataType::Date, pl::AnyValue::Date(19_100)))),
            0,
        ),
        (
            "category == \"zz\" (above every string)",
            col("category").eq(lit("zz")),
            0,
        ),
        (
            "id < 2000 and category == \"zz\"",
            col("id").lt(lit(2000i64)).and(col("category").eq(lit("zz"))),
            0,
        ),
    ];
    for (what, filter, read) in &queries {
        let want = common::polars(&whole, |l| l.filter(filter.clone()).select([col("id"), col("value")]));
        for df in [&by_group, &one_partition] {
            let q = df.filter(filter.clone()).select([col("id"), col("value")]);
            let plan = q.explain().unwrap();
            let expect = format!("{read} of 8 row groups read ({} pruned by statistics)", 8 - read);
            assert!(plan.contains(&expect), "{what}: expected {expect:?} in\n{plan}");
            for (exec, opts) in executors() {
                assert_same(&q.compute_with(opts).unwrap(), &want, None, &format!("{what} ({exec})"));
            }
        }
    }
    // A filter the statistics cannot judge prunes nothing.
    let plan = one_partition
        .filter(col("id").cast(DataType::Float64).gt(lit(6500.0)))
        .explain()
        .unwrap();
    assert!(plan.contains("8 row groups") && !plan.contains("pruned"), "{plan}");

    // The proof that pruned row groups are never read: overwrite the bytes
    // of row groups 0..6 (the footer stays intact). Reading them fails now,
    // with the file and the row group named; the pruned reads still give
    // Polars' answer on the original data.
    let mut bytes = std::fs::read(&path).unwrap();
    for range in &row_group_ranges(&path)[..6] {
        for b in &mut bytes[range.start as usize..range.end as usize] {
            *b = 0xA5;
        }
    }
    std::fs::write(&path, &bytes).unwrap();
    let by_group = read_parquet_with(p, ParquetOptions::default().row_groups_per_partition(1)).unwrap();
    let err = by_group.compute().unwrap_err().to_string();
    assert!(err.contains("sorted.parquet") && err.contains("row group "), "{err}");
    for (what, filter, _) in &queries[..2] {
        let want = common::polars(&whole, |l| l.filter(filter.clone()).select([col("id"), col("value")]));
        for options in [
            ParquetOptions::default(),
            ParquetOptions::default().row_groups_per_partition(1),
        ] {
            let q = read_parquet_with(p, options)
                .unwrap()
                .filter(filter.clone())
                .select([col("id"), col("value")]);
            for (exec, opts) in executors() {
                assert_same(
                    &q.compute_with(opts).unwrap(),
                    &want,
                    None,
                    &format!("{what} over corrupted pruned row groups ({exec})"),
                );
            }
        }
    }
}

#[test]
fn parquet_files_whose_schemas_disagree_name_both() {
    let dir = temp_dir("parquet-disagree");
    let a = blockwise_frame::from_polars(pl::df!("x" => [1i64, 2], "y" => ["a", "b"]).unwrap(), 1).unwrap();
    let b = blockwise_frame::from_polars(pl::df!("x" => [1.5f64], "y" => ["c"]).unwrap(), 1).unwrap();
    a.to_parquet_with(&dir, |_| "a.parquet".into(), blockwise_local::ComputeOptions::new())
        .unwrap();
    b.to_parquet_with(&dir, |_| "b.parquet".into(), blockwise_local::ComputeOptions::new())
        .unwrap();
    let err = read_parquet(dir.to_str().unwrap()).unwrap_err().to_string();
    assert!(
        err.contains("a.parquet") && err.contains("b.parquet") && err.contains("\"x\""),
        "{err}"
    );
}

#[test]
fn a_failed_write_leaves_no_half_written_file() {
    let dir = temp_dir("atomic");
    let df = blockwise_frame::from_polars(common::sample(40), 4).unwrap();
    // Partition 2 fails while computing: its file never appears, and no
    // temporary file is left.
    let bad = df.map_partitions(|d: pl::DataFrame| {
        let ids = d.column("id")?.i64()?.clone();
        if ids.iter().flatten().any(|v| v == 25) {
            Err(pl::PolarsError::ComputeError("boom".into()))
        } else {
            Ok(d)
        }
    });
    assert!(bad.to_parquet(&dir).is_err());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp"), "temporary file left: {name}");
        assert_ne!(name, "part.2.parquet");
    }
}

#[test]
fn csv_written_reads_back_identically() {
    let dir = temp_dir("csv-write");
    let whole = common::sample(90).drop("day").unwrap();
    let df = blockwise_frame::from_polars(whole.clone(), 3).unwrap();
    let files = df.to_csv(&dir).unwrap();
    assert_eq!(files.len(), 3);
    let back = read_csv(dir.join("part.*.csv").to_str().unwrap())
        .unwrap()
        .compute()
        .unwrap();
    assert_same(&back, &whole, None, "csv roundtrip");
}

#[test]
fn json_lines_blocks_and_schema() {
    let dir = temp_dir("json");
    let mut text = String::new();
    for i in 0..120 {
        if i % 10 == 3 {
            text.push_str(&format!("{{\"id\": {i}, \"name\": null, \"score\": {}.5}}\n", i));
        } else {
            text.push_str(&format!("{{\"id\": {i}, \"name\": \"n{i}\", \"score\": {}.5}}\n", i));
        }
    }
    let p = write(&dir, "d.jsonl", &text);
    let one = blockwise_frame::read_json_with(&p, None, None)
        .unwrap()
        .compute()
        .unwrap();
    let df = blockwise_frame::read_json_with(&p, Some(500), None).unwrap();
    assert!(df.npartitions().unwrap() > 1);
    for (exec, opts) in executors() {
        assert_same(
            &df.compute_with(opts).unwrap(),
            &one,
            None,
            &format!("json blocks ({exec})"),
        );
    }
    assert_eq!(one.height(), 120);
    assert_eq!(one.column("name").unwrap().null_count(), 12);
    assert_eq!(
        read_json(&p)
            .unwrap()
            .filter(col("id").lt(lit(5)))
            .compute()
            .unwrap()
            .height(),
        5
    );
}

#[test]
fn head_reads_only_what_it_needs() {
    let dir = temp_dir("head");
    let p = write(&dir, "h.csv", &csv_rows(400, 0));
    // Block 3 is malformed: head(5) never reads it.
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("400,x,bad,\"n\"\n");
    std::fs::write(&p, &text).unwrap();
    let df = read_csv_with(&p, CsvOptions::new().blocksize(Some(2000)).sample(500, 10)).unwrap();
    assert!(df.npartitions().unwrap() > 2);
    let h = df.head(5).unwrap();
    assert_eq!(h.height(), 5);
    assert!(df.compute().is_err());
}

/// Whether `df`'s graph reads CSV blocks and computes group-by partials in
/// one task per block (`io::csv_agg`).
fn fused_scan(df: &blockwise_frame::DataFrame) -> bool {
    use blockwise_core::Collection;
    df.graph()
        .layers()
        .iter()
        .any(|l| l.task(&[0]).is_ok_and(|t| t.op.name() == "frame.read_csv_aggregate"))
}

#[test]
fn csv_group_by_fused_with_the_read_equals_the_unfused_one() {
    use blockwise_frame::{Agg, AggKind, FUSE_CSV_AGGREGATE_KEY};
    let dir = temp_dir("fused-groupby");
    let row = |i: usize| {
        let value = match i % 6 {
            0 => format!("{}.{:02}", i % 997, i % 100),
            1 => format!("-{}.5", i % 31),
            2 => format!("{}e-2", i),
            3 => format!("{}", i % 50),
            4 => format!("1.25E+{}", i % 4),
            _ => format!("0.{:03}", i % 1000),
        };
        format!("{i},cat_{:02},{value},{}", (i * 31) % 17, i.is_multiple_of(3))
    };
    let header = "id,category,value,flag";
    let lf: String = std::iter::once(header.to_string())
        .chain((0..900).map(row))
        .map(|l| l + "\n")
        .collect();
    write(&dir, "a_lf.csv", &lf);
    let crlf: String = std::iter::once(header.to_string())
        .chain((900..1500).map(row))
        .map(|l| l + "\r\n")
        .collect();
    write(&dir, "b_crlf.csv", &crlf);
    // Missing values (empty, `NA`, a missing key) and no line break at the end.
    write(
        &dir,
        "c_missing.csv",
        "id,category,value,flag\n1,cat_01,,true\n2,cat_02,NA,false\n3,,4.5,true\n4,cat_99,,false\n5,cat_01,-2e1,true",
    );
    write(&dir, "d_header_only.csv", "id,category,value,flag\n");
    // Quotes: this file takes the unfused path.
    write(
        &dir,
        "e_quoted.csv",
        "id,category,value,flag\n6,\"cat_01\",2.5,true\n7,\"cat,x\",1,false\n",
    );
    let aggs = || {
        [
            Agg::new("value", AggKind::Mean),
            Agg::new("value", AggKind::Sum).alias("sum"),
            Agg::new("value", AggKind::Count).alias("count"),
            Agg::new("value", AggKind::Size),
            Agg::new("value", AggKind::Min).alias("min"),
            Agg::new("value", AggKind::Max).alias("max"),
        ]
    };
    let query = |bs: Option<u64>| {
        read_csv_with(
            dir.join("*.csv").to_str().unwrap(),
            CsvOptions::new().blocksize(bs).null_values(["NA"]),
        )
        .unwrap()
        .groupby(["category"])
        .agg(aggs())
    };
    for bs in [None, Some(997)] {
        let fused = query(bs);
        assert!(fused_scan(&fused), "blocksize {bs:?}: the fused scan is planned");
        let unfused = {
            let _off = blockwise_core::config::set([(FUSE_CSV_AGGREGATE_KEY, false)]);
            let q = query(bs);
            assert!(!fused_scan(&q));
            q
        };
        for (exec, opts) in executors() {
            let got = fused.compute_with(opts.clone()).unwrap();
            let want = unfused.compute_with(opts).unwrap();
            assert_eq!(got.height(), 20, "17 categories, cat_99, \"cat,x\" and the missing key");
            assert_same(&got, &want, Some(&["category"]), &format!("blocksize {bs:?} ({exec})"));
        }
    }
    // Means of plain `read_csv(..).groupby(..).mean()`, as the bench runs it.
    let plain = read_csv(dir.join("a_lf.csv").to_str().unwrap())
        .unwrap()
        .groupby(["category"])
        .col("value")
        .mean();
    assert!(fused_scan(&plain));
    use blockwise_frame::polars::io::SerReader;
    let whole = pl::CsvReadOptions::default()
        .try_into_reader_with_file_path(Some(dir.join("a_lf.csv")))
        .unwrap()
        .finish()
        .unwrap();
    let want = common::polars(&whole, |l| l.group_by([col("category")]).agg([col("value").mean()]));
    assert_same(&plain.compute().unwrap(), &want, Some(&["category"]), "against Polars");
}

#[test]
fn fused_csv_group_by_reports_bad_values_by_file_line_and_column() {
    let dir = temp_dir("fused-bad-value");
    let mut text = String::from("category,value\n");
    for i in 0..60 {
        let v = if i == 47 { "12x".to_string() } else { format!("{i}.5") };
        text.push_str(&format!("c{},{v}\n", i % 3));
    }
    let p = write(&dir, "bad.csv", &text);
    let schema: pl::Schema = [
        ("category".into(), DataType::String),
        ("value".into(), DataType::Float64),
    ]
    .into_iter()
    .collect();
    let q = read_csv_with(&p, CsvOptions::new().schema(schema))
        .unwrap()
        .groupby(["category"])
        .col("value")
        .sum();
    assert!(fused_scan(&q));
    let err = q.compute().unwrap_err().to_string();
    assert!(err.contains("bad.csv line 49, column 2"), "{err}");
}
