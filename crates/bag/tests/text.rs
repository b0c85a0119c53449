//! Text and JSON-lines files, written by the tests into their own temporary
//! directories: reading (globs, gzip, blocks at line boundaries) against
//! `str::lines` on the whole content, bad input naming file and line, and
//! writing one file per partition.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use blockwise_bag::{self as bag, BadLines, Compression, ReadOptions};
use blockwise_local::{Compute, ComputeOptions, Scheduler};
use flate2::write::GzEncoder;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

fn executors() -> [ComputeOptions; 2] {
    [
        ComputeOptions::new().scheduler(Scheduler::Sync),
        ComputeOptions::new().scheduler(Scheduler::Threads(Some(2))),
    ]
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "blockwise-bag-{tag}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn pattern(&self, glob: &str) -> String {
        self.0.join(glob).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_plain(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn write_gzip(path: &Path, bytes: &[u8]) {
    let mut enc = GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap();
}

fn gzip_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Text with lines of random length (some empty, some with a multi-byte
/// character), `\n` or `\r\n` endings, and maybe no final newline.
fn text() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(("[a-cé ]{0,12}", any::<bool>()), 0..40),
        any::<bool>(),
    )
        .prop_map(|(lines, final_newline)| {
            let mut s = String::new();
            let n = lines.len();
            for (i, (line, crlf)) in lines.into_iter().enumerate() {
                s.push_str(&line);
                if i + 1 < n || final_newline {
                    s.push_str(if crlf { "\r\n" } else { "\n" });
                }
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn read_text_gives_the_lines_of_every_file_in_order(
        contents in proptest::collection::vec(text(), 1..4),
        blocksize in 1u64..80,
    ) {
        let dir = TempDir::new("lines");
        let mut expected: Vec<String> = Vec::new();
        for (i, content) in contents.iter().enumerate() {
            write_plain(&dir.path(&format!("part-{i}.txt")), content.as_bytes());
            expected.extend(content.lines().map(str::to_string));
        }
        // gzip copies, read whole, come after the plain files in sorted order
        for (i, content) in contents.iter().enumerate() {
            write_gzip(&dir.path(&format!("zz-{i}.txt.gz")), content.as_bytes());
        }
        let mut expected_gz = expected.clone();
        expected_gz.extend(contents.iter().flat_map(|c| c.lines().map(str::to_string)));

        let plain = bag::read_text_with(dir.pattern("part-*.txt"), &ReadOptions::new().blocksize(blocksize)).unwrap();
        let total: u64 = contents.iter().map(|c| c.len() as u64).sum();
        prop_assert!(plain.npartitions() as u64 >= total / blocksize);
        let whole = bag::read_text_with(dir.pattern("*.txt*"), &ReadOptions::new().whole_files()).unwrap();
        prop_assert_eq!(whole.npartitions(), 2 * contents.len());
        for opts in executors() {
            prop_assert_eq!(plain.compute_with(opts.clone()).unwrap(), expected.clone());
            prop_assert_eq!(whole.compute_with(opts.clone()).unwrap(), expected_gz.clone());
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Transaction {
    amount: i64,
    date: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Account {
    id: u64,
    name: String,
    amount: i64,
    transactions: Vec<Transaction>,
}

fn accounts(n: u64, seed: u64) -> Vec<Account> {
    let names = ["Alice", "Bob", "Charlie", "Dan", "Edith", "Frank", "George", "Hannah"];
    (0..n)
        .map(|i| {
            let x = (i * 7919 + seed * 104_729) % 1009;
            Account {
                id: i,
                name: names[(x % 8) as usize].to_string(),
                amount: (x % 23) as i64 - 8,
                transactions: (0..x % 3)
                    .map(|t| Transaction {
                        amount: (x + t) as i64,
                        date: format!("2024-01-{:02}", 1 + t),
                    })
                    .collect(),
            }
        })
        .collect()
}

fn json_lines<T: Serialize>(records: &[T]) -> String {
    records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect()
}

#[test]
fn seed_example_over_gzipped_json_lines() {
    let dir = TempDir::new("accounts");
    let mut all = Vec::new();
    for i in 0..3 {
        let records = accounts(200, i);
        write_gzip(
            &dir.path(&format!("accounts.{i}.json.gz")),
            json_lines(&records).as_bytes(),
        );
        all.extend(records);
    }
    // The same pipeline, sequentially: counts in first-appearance order,
    // then a stable sort by count.
    let mut counts: Vec<(String, usize)> = Vec::new();
    for a in all.iter().filter(|a| a.amount > 0) {
        match counts.iter_mut().find(|(n, _)| *n == a.name) {
            Some((_, c)) => *c += 1,
            None => counts.push((a.name.clone(), 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts.truncate(5);
    for opts in executors() {
        let top = bag::read_json_lines::<Account>(dir.pattern("accounts.*.json.gz"))
            .unwrap()
            .filter(|a| a.amount > 0)
            .map(|a| a.name)
            .frequencies()
            .topk(5, |(_, n)| *n)
            .compute_with(opts)
            .unwrap();
        assert_eq!(top, counts);
    }
}

#[test]
fn json_lines_in_blocks_typed_and_as_values() {
    let dir = TempDir::new("json");
    let records = accounts(300, 7);
    let mut content = json_lines(&records);
    content.insert_str(0, "\n  \n"); // blank lines are skipped
    write_plain(&dir.path("a.jsonl"), content.as_bytes());
    let opts = ReadOptions::new().blocksize(997);
    let typed = bag::read_json_lines_with::<Account>(dir.pattern("*.jsonl"), &opts).unwrap();
    assert!(typed.npartitions() > 10);
    let values = bag::read_json_lines_with::<serde_json::Value>(dir.pattern("*.jsonl"), &opts).unwrap();
    assert_ne!(typed.name(), values.name(), "different record types, different keys");
    for o in executors() {
        assert_eq!(typed.compute_with(o.clone()).unwrap(), records);
        let names = values.pluck("name").compute_with(o.clone()).unwrap();
        assert_eq!(
            names,
            records.iter().map(|r| serde_json::json!(r.name)).collect::<Vec<_>>()
        );
        let spent = values
            .pluck("transactions")
            .flat_map(|t| t.as_array().cloned().unwrap_or_default())
            .pluck("amount")
            .map(|a| a.as_i64().unwrap_or(0))
            .sum()
            .compute_with(o)
            .unwrap();
        let expected: i64 = records.iter().flat_map(|r| &r.transactions).map(|t| t.amount).sum();
        assert_eq!(spent, expected);
    }
}

#[test]
fn json_lines_parse_as_serde_json_parses_each_line() {
    // Lines the fast path parses and lines it leaves to serde_json (escapes,
    // floats, integers beyond 64 bits, `-0`), mixed in one file: every
    // record is what serde_json makes of its line.
    let lines = [
        r#"{"id":1,"name":"plain","amount":5,"transactions":[]}"#,
        r#"{"id":2,"name":"tab\there \"quoted\" \u00e9","amount":-5,"transactions":[{"amount":4,"date":"2026-12-07"}]}"#,
        r#"{"x":0.1,"y":-0,"z":1e300,"u":2.5e-3,"w":123456789012345678901234567890,"v":-9223372036854775808}"#,
        r#"{"nested":{"deep":[[1],[2,[3,{"k":"ü"}]]]},"t":true,"f":false,"n":null}"#,
        r#"  [1, 2.5, "three", {"four": 4}]  "#,
    ];
    let dir = TempDir::new("jsonmix");
    write_plain(&dir.path("mix.jsonl"), lines.join("\n").as_bytes());
    let expected: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let values = bag::read_json_lines::<serde_json::Value>(dir.pattern("*.jsonl")).unwrap();
    for o in executors() {
        let got = values.compute_with(o).unwrap();
        assert_eq!(got, expected);
        // Floats bit for bit (equal `Value`s could still print differently).
        let printed: Vec<String> = got.iter().map(|v| v.to_string()).collect();
        assert_eq!(printed, expected.iter().map(|v| v.to_string()).collect::<Vec<_>>());
    }
    let typed = bag::read_json_lines::<Account>(dir.path("mix.jsonl")).unwrap();
    let first = typed.take(2).unwrap();
    assert_eq!(first[1].name, "tab\there \"quoted\" é");
    assert_eq!(first[1].transactions[0].amount, 4);
    let err = typed.compute().unwrap_err();
    assert!(err.to_string().contains("mix.jsonl, line 3"), "{err}");
}

#[test]
fn a_record_error_is_serde_jsons_message_at_its_column() {
    let dir = TempDir::new("jsonerr");
    let path = dir.path("e.json");
    let good = r#"{"id":1,"name":"a","amount":2,"transactions":[]}"#;
    let cases = [
        r#"{"id":1,"name":"a","amount":2}"#,
        r#"{"id":1,"name":"a","amount":2.5,"transactions":[]}"#,
        r#"{"id":1,"name":"a","amount":2,"transactions":[],"id":3}"#,
        r#"  {"id":1,"name":"a","amount":2,"transactions":[]} trailing"#,
        r#"{"id":-1,"name":"a","amount":2,"transactions":[]}"#,
    ];
    for bad in cases {
        write_plain(&path, format!("{good}\n{bad}\n").as_bytes());
        let e = serde_json::from_str::<Account>(bad.trim()).unwrap_err();
        let indent = bad.len() - bad.trim_start().len();
        let message = e.to_string();
        let message = message
            .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
            .unwrap_or(&message)
            .to_string();
        let expected = format!(
            "{}, line 2, column {}: not a valid Account: {message}",
            path.display(),
            e.column() + indent
        );
        let err = bag::read_json_lines::<Account>(&path).unwrap().compute().unwrap_err();
        assert!(err.to_string().contains(&expected), "{err}\nexpected: {expected}");
    }
}

/// Ten accounts, one per line, with line 8 broken.
fn with_bad_line_8() -> String {
    let mut lines: Vec<String> = accounts(10, 3)
        .iter()
        .map(|a| serde_json::to_string(a).unwrap())
        .collect();
    lines[7] = String::from(r#"{"id": 7, "name": "Oops", "amount": }"#);
    lines.join("\n") + "\n"
}

#[test]
fn bad_json_names_file_and_line_even_in_a_later_block() {
    let dir = TempDir::new("badjson");
    let path = dir.path("broken.json");
    write_plain(&path, with_bad_line_8().as_bytes());
    for blocksize in [0u64, 100, 300] {
        let b = bag::read_json_lines_with::<Account>(&path, &ReadOptions::new().blocksize(blocksize)).unwrap();
        for o in executors() {
            let err = b.count().compute_with(o).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("line 8"), "blocksize {blocksize}: {msg}");
            assert!(msg.contains("column 37"), "{msg}");
            assert!(msg.contains("Account"), "{msg}");
        }
    }
    // inside gzip too
    let gz = dir.path("broken.json.gz");
    write_gzip(&gz, with_bad_line_8().as_bytes());
    let err = bag::read_json_lines::<Account>(&gz).unwrap().compute().unwrap_err();
    assert!(err.to_string().contains("broken.json.gz, line 8"), "{err}");
}

#[test]
fn bad_lines_can_be_skipped_and_counted() {
    let dir = TempDir::new("skip");
    let path = dir.path("broken.json");
    write_plain(&path, with_bad_line_8().as_bytes());
    let bad = BadLines::new();
    let b =
        bag::read_json_lines_with::<Account>(&path, &ReadOptions::new().blocksize(200).skip_bad_lines(&bad)).unwrap();
    assert_eq!(b.count().compute().unwrap(), 9);
    assert_eq!(bad.count(), 1);
    let example = &bad.examples()[0];
    assert_eq!((example.path.as_path(), example.line), (path.as_path(), 8));
    assert!(example.to_string().contains("line 8"), "{example}");
    // a second computation reads (and counts) again
    assert_eq!(b.compute().unwrap().len(), 9);
    assert_eq!(bad.count(), 2);
}

#[test]
fn invalid_utf8_names_file_and_line_or_is_skipped() {
    let dir = TempDir::new("utf8");
    let path = dir.path("latin1.txt");
    write_plain(&path, b"plain\nalso plain\ncaf\xe9\nlast\n");
    let err = bag::read_text(&path).unwrap().compute().unwrap_err();
    assert!(err.to_string().contains("latin1.txt, line 3"), "{err}");
    assert!(err.to_string().contains("UTF-8"), "{err}");
    let bad = BadLines::new();
    let lines = bag::read_text_with(&path, &ReadOptions::new().skip_bad_lines(&bad))
        .unwrap()
        .compute()
        .unwrap();
    assert_eq!(lines, vec!["plain", "also plain", "last"]);
    assert_eq!(bad.count(), 1);
    assert_eq!(bad.examples()[0].line, 3);
}

#[test]
fn corrupt_gzip_is_an_error_naming_the_file() {
    let dir = TempDir::new("gzip");
    let content = json_lines(&accounts(500, 1));
    let good = gzip_bytes(content.as_bytes());

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let cut = good[..good.len() / 2].to_vec();
    let not_gzip = content.as_bytes().to_vec();
    for (name, bytes) in [
        ("flipped.json.gz", flipped),
        ("cut.json.gz", cut),
        ("plain.json.gz", not_gzip),
    ] {
        let path = dir.path(name);
        write_plain(&path, &bytes);
        let bad = BadLines::new();
        // even when bad lines are skipped: a broken stream is not a bad line
        for options in [ReadOptions::new(), ReadOptions::new().skip_bad_lines(&bad)] {
            let err = bag::read_json_lines_with::<Account>(&path, &options)
                .unwrap()
                .count()
                .compute()
                .unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }
    // and an explicit compression overrides the name
    let path = dir.path("really-plain.gz");
    write_plain(&path, b"a\nb\n");
    let lines = bag::read_text_with(&path, &ReadOptions::new().compression(Compression::None)).unwrap();
    assert_eq!(lines.compute().unwrap(), vec!["a", "b"]);
}

#[test]
fn missing_files_are_errors_naming_them() {
    let dir = TempDir::new("missing");
    let err = bag::read_text(dir.pattern("nothing-*.txt")).unwrap_err();
    assert!(err.to_string().contains("no files match"), "{err}");
    assert!(err.to_string().contains("nothing-*.txt"), "{err}");
    let err = bag::read_text(dir.path("absent.txt")).unwrap_err();
    assert!(err.to_string().contains("absent.txt"), "{err}");
    let err = bag::read_text(dir.pattern("x.txt.bz2")).unwrap_err();
    assert!(
        err.to_string().contains("absent") || err.to_string().contains("x.txt.bz2"),
        "{err}"
    );
}

#[test]
fn text_files_roundtrip_plain_and_gzip() {
    let dir = TempDir::new("write");
    let lines: Vec<String> = (0..95).map(|i| format!("line {i} ✓")).collect();
    let b = bag::from_sequence(lines.clone(), 12);
    for ext in ["txt", "txt.gz"] {
        let pattern = dir.pattern(&format!("out-{ext}/part-*.{ext}"));
        let written = b.to_textfiles(&pattern).compute().unwrap();
        assert_eq!(written.len(), 12);
        assert_eq!(written[3], PathBuf::from(pattern.replace('*', "03")));
        assert!(written.iter().all(|p| p.exists()));
        let back = bag::read_text(&pattern).unwrap().compute().unwrap();
        assert_eq!(back, lines, "{ext}");
    }
    // gzip really is gzip
    let gz = std::fs::read(dir.path("out-txt.gz/part-00.txt.gz")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    // a directory gets N.part files; a name function replaces the index
    let numbers = bag::range(10, 2);
    let written = numbers.to_textfiles(&dir.pattern("numbers")).compute().unwrap();
    assert_eq!(written, vec![dir.path("numbers/0.part"), dir.path("numbers/1.part")]);
    assert_eq!(std::fs::read_to_string(&written[1]).unwrap(), "5\n6\n7\n8\n9\n");
    let named = numbers
        .to_textfiles_with(&dir.pattern("named/*.csv"), |i| format!("day-{}", i + 1))
        .compute()
        .unwrap();
    assert_eq!(named[1], dir.path("named/day-2.csv"));
}

#[test]
fn json_lines_roundtrip() {
    let dir = TempDir::new("jsonout");
    let records = accounts(50, 9);
    for opts in executors() {
        let pattern = dir.pattern("accounts/*.json.gz");
        bag::from_sequence(records.clone(), 4)
            .to_json_lines(&pattern)
            .compute_with(opts.clone())
            .unwrap();
        let back = bag::read_json_lines::<Account>(&pattern)
            .unwrap()
            .compute_with(opts)
            .unwrap();
        assert_eq!(back, records);
    }
}

#[test]
fn take_reads_only_the_first_block() {
    let dir = TempDir::new("take");
    let path = dir.path("big.txt");
    let content: String = (0..1000).map(|i| format!("{i}\n")).collect();
    write_plain(&path, content.as_bytes());
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let b = bag::read_text_with(&path, &ReadOptions::new().blocksize(500))
        .unwrap()
        .map(move |l| {
            s.fetch_add(1, Ordering::SeqCst);
            l
        });
    assert!(b.npartitions() >= 8);
    assert_eq!(b.take(4).unwrap(), vec!["0", "1", "2", "3"]);
    assert_eq!(seen.load(Ordering::SeqCst), 4);
}
