//! Bag workloads (issue 5) over files the bench writes itself.
//!
//! - `bag-json`: the Dask tutorial's accounts. `--files` (8) JSON-lines files
//!   `DIR/accounts.<i>.json` of `--records` (500,000) records each: `id`,
//!   `name` (one of 100 first names, some far more common than others),
//!   `amount` (−500 … 1,499) and `transactions` (0 to 5 of
//!   `{"transaction-id", "amount"}`). Read, parse, keep `amount > 0`, take
//!   the names, `frequencies`, top 10: `result` is the list of `[name, count]`.
//! - `wordcount`: `read_text` over `--mb` (1,024) MB of text in `--files` (8)
//!   files `DIR/text_<i>.txt` (words from a 20,000-word vocabulary with a
//!   Zipf-like law), split on whitespace and counted (`frequencies_of`,
//!   which borrows the words from each line), top 100.
//!   `--system rust-loop` runs the hand-written two-thread program instead
//!   (each thread reads every other file in large blocks and counts words in
//!   a `HashMap<String, usize>` without allocating for words it has seen;
//!   the two maps are merged): the limit the issue measures against.
//!
//! Each result is checked against counts computed without blockwise: kept
//! in `DIR/expected.json` while the files are written, or (for files the
//! bench did not write) counted once by the hand-written program.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use blockwise::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Context, Merge, OptionSpec, SplitMix, Workload, files_in, io_failed, write_files};
use crate::BenchError;
use crate::measure;
use crate::record::{Record, seconds};

/// The workloads of this family.
pub(crate) const WORKLOADS: &[Workload] = &[
    Workload {
        name: "bag-json",
        about: "JSON-lines accounts: filter amount > 0, names, frequencies, top 10; result = [[name, count]...]",
        options: &[JSON_DIR, FILES, RECORDS],
        run: bag_json,
    },
    Workload {
        name: "wordcount",
        about: "read_text over 1 GB of text, split, frequencies, top 100; result = [[word, count]...]",
        options: &[TEXT_DIR, FILES, MB, SYSTEM],
        run: wordcount,
    },
];

const JSON_DIR: OptionSpec = OptionSpec {
    name: "dir",
    default: "/tmp/blockwise-bench/accounts",
    about: "where accounts.*.json are (written when absent)",
};
const TEXT_DIR: OptionSpec = OptionSpec {
    name: "dir",
    default: "/tmp/blockwise-bench/text",
    about: "where text_*.txt are (written when absent)",
};
const FILES: OptionSpec = OptionSpec {
    name: "files",
    default: "8",
    about: "number of files to write",
};
const RECORDS: OptionSpec = OptionSpec {
    name: "records",
    default: "500000",
    about: "records per file to write",
};
const MB: OptionSpec = OptionSpec {
    name: "mb",
    default: "1024",
    about: "megabytes (2^20 bytes) of text to write, over all files",
};
const SYSTEM: OptionSpec = OptionSpec {
    name: "system",
    default: "blockwise",
    about: "blockwise, or rust-loop (the hand-written two-thread program, no blockwise)",
};

// ------------------------------------------------------------------ accounts

/// One transaction of an account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Transaction {
    #[serde(rename = "transaction-id")]
    transaction_id: u64,
    amount: i64,
}

/// One account record (one line of `accounts.*.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Account {
    id: u64,
    name: String,
    amount: i64,
    transactions: Vec<Transaction>,
}

const NAMES: [&str; 100] = [
    "Alice", "Bob", "Charlie", "Dan", "Edith", "Frank", "George", "Hannah", "Ingrid", "Jerry", "Kevin", "Laura",
    "Michael", "Norbert", "Oliver", "Patricia", "Quinn", "Ray", "Sarah", "Tim", "Ursula", "Victor", "Wendy",
    "Xavier", "Yvonne", "Zelda", "Alan", "Barbara", "Carl", "Diana", "Edward", "Fiona", "Gary", "Helen", "Ivan",
    "Julia", "Karl", "Linda", "Martin", "Nora", "Oscar", "Paula", "Quentin", "Rita", "Steven", "Tina", "Ulrich",
    "Vera", "Walter", "Xenia", "Yusuf", "Zoe", "Amir", "Bianca", "Cedric", "Dora", "Emil", "Flora", "Gustav",
    "Hilda", "Igor", "Jana", "Kurt", "Lena", "Moritz", "Nina", "Otto", "Petra", "Rolf", "Selma", "Theo", "Uma",
    "Viktor", "Wilma", "Xaver", "Yara", "Zeno", "Anton", "Berta", "Conrad", "Doris", "Erik", "Frida", "Gert",
    "Heidi", "Ida", "Jonas", "Klara", "Lukas", "Mia", "Nils", "Olga", "Paul", "Rosa", "Sven", "Tilda", "Udo",
    "Vivian", "Wolf", "Yann",
];

/// Draws one account. Name `i` has probability about `(200 − 2i) / 10,000`
/// (the smaller of two uniform draws), so the ten most frequent names stand
/// well apart.
fn account(id: u64, rng: &mut SplitMix) -> Account {
    let name = rng.below(100).min(rng.below(100)) as usize;
    let amount = rng.below(2_000) as i64 - 500;
    let transactions = (0..rng.below(6))
        .map(|_| Transaction {
            transaction_id: rng.below(1_000_000_000),
            amount: rng.below(10_000) as i64 - 2_000,
        })
        .collect();
    Account {
        id,
        name: NAMES[name].to_string(),
        amount,
        transactions,
    }
}

/// What a run must give: counts computed without blockwise.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Counts {
    /// Records (lines, or words) read in all.
    total: u64,
    /// The counts of the records that pass (names with `amount > 0`, or words).
    counts: HashMap<String, u64>,
}

impl Merge for Counts {
    fn merge(&mut self, other: Counts) {
        self.total += other.total;
        for (k, v) in other.counts {
            *self.counts.entry(k).or_insert(0) += v;
        }
    }
}

impl Counts {
    /// Checks a top-`k` list: `k` entries (or all there are), each with its
    /// true count, in non-increasing order, and no left-out key with a count
    /// above the smallest listed (ties at the edge may go either way).
    fn check_top(&self, what: &str, top: &[(String, u64)], k: usize) -> Result<(), BenchError> {
        let fail = |m: String| Err(BenchError::Failed(format!("{what}: {m} (counted without blockwise)")));
        if top.len() != k.min(self.counts.len()) {
            return fail(format!("{} entries, expected {}", top.len(), k.min(self.counts.len())));
        }
        for (key, n) in top {
            match self.counts.get(key) {
                Some(c) if c == n => {}
                other => return fail(format!("{key:?} has count {n}, expected {other:?}")),
            }
        }
        if top.windows(2).any(|w| w[0].1 < w[1].1) {
            return fail("the counts are not in decreasing order".into());
        }
        if let Some((_, smallest)) = top.last() {
            let listed: std::collections::HashSet<&str> = top.iter().map(|(w, _)| w.as_str()).collect();
            if let Some((w, c)) = self
                .counts
                .iter()
                .find(|(w, c)| *c > smallest && !listed.contains(w.as_str()))
            {
                return fail(format!("{w:?} (count {c}) is missing from the top {k}"));
            }
        }
        Ok(())
    }
}

fn save_counts(dir: &Path, counts: &Counts) -> Result<(), BenchError> {
    let path = dir.join("expected.json");
    let text = serde_json::to_string(counts).map_err(|e| BenchError::Failed(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| io_failed(&path, "cannot write", e))
}

fn load_counts(dir: &Path) -> Option<Counts> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).ok()?).ok()
}

/// Writes the accounts files; the name counts of accounts with `amount > 0`.
fn write_accounts(dir: &Path, files: usize, records: u64) -> Result<Counts, BenchError> {
    eprintln!(
        "bag-json: writing {files} files of {records} accounts into {} (once; later runs reuse them)",
        dir.display()
    );
    let counts = write_files(
        dir,
        files,
        |f| format!("accounts.{f}.json"),
        |f, w| {
            let mut rng = SplitMix::new(0xACC0_0000 + f as u64);
            let mut counts = Counts::default();
            for i in 0..records {
                let a = account(f as u64 * records + i, &mut rng);
                serde_json::to_writer(&mut *w, &a)?;
                w.write_all(b"\n")?;
                counts.total += 1;
                if a.amount > 0 {
                    *counts.counts.entry(a.name).or_insert(0) += 1;
                }
            }
            Ok(counts)
        },
    )?;
    save_counts(dir, &counts)?;
    Ok(counts)
}

/// Name counts of accounts with `amount > 0`, parsed without blockwise.
fn count_accounts(dir: &Path, files: &[PathBuf]) -> Result<Counts, BenchError> {
    eprintln!("bag-json: counting the names in {} files without blockwise", files.len());
    let mut counts = Counts::default();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| io_failed(path, "cannot read", e))?;
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let a: Account = serde_json::from_str(line)
                .map_err(|e| BenchError::Failed(format!("{}: line {}: {e}", path.display(), n + 1)))?;
            counts.total += 1;
            if a.amount > 0 {
                *counts.counts.entry(a.name).or_insert(0) += 1;
            }
        }
    }
    save_counts(dir, &counts)?;
    Ok(counts)
}

fn bag_json(ctx: &Context<'_>) -> Result<Record, BenchError> {
    let dir = PathBuf::from(ctx.options.get("dir").unwrap_or(JSON_DIR.default));
    let files = ctx.options.usize("files", 8)?;
    let records = ctx.options.usize("records", 500_000)? as u64;
    if files == 0 || records == 0 {
        return Err(BenchError::Usage("--files and --records must be at least 1".into()));
    }
    let existing = files_in(&dir, "accounts.", ".json");
    let expected = if existing.is_empty() {
        write_accounts(&dir, files, records)?
    } else {
        match load_counts(&dir) {
            Some(c) => c,
            None => count_accounts(&dir, &existing)?,
        }
    };
    let bytes: u64 = files_in(&dir, "accounts.", ".json")
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();

    measure::reset_peak_rss();
    let rss_before = measure::rss_bytes();
    let t0 = Instant::now();
    let accounts = blockwise::bag::read_json_lines::<Account>(format!("{}/accounts.*.json", dir.display()))?;
    let npartitions = accounts.npartitions();
    let top = accounts
        .filter(|a| a.amount > 0)
        .map(|a| a.name)
        .frequencies()
        .topk(10, |(_, n)| *n);
    let build = t0.elapsed();
    let t1 = Instant::now();
    let top = top.compute_with(ctx.scheduler.scheduler.clone())?;
    let wall = t1.elapsed();
    let peak = measure::peak_rss_bytes();

    let top: Vec<(String, u64)> = top.into_iter().map(|(k, n)| (k, n as u64)).collect();
    expected.check_top("bag-json", &top, 10)?;
    let mut r = ctx.record();
    r.set("dir", dir.display().to_string())
        .set("records", expected.total)
        .set("bytes", bytes)
        .set("npartitions", npartitions)
        .set("build_s", seconds(build))
        .set("wall_s", seconds(wall))
        .set("total_s", seconds(build + wall))
        .set("peak_rss_bytes", peak)
        .set("rss_before_bytes", rss_before)
        .set("result", serde_json::json!(top));
    Ok(r)
}

// ------------------------------------------------------------------ words

const VOCABULARY: u64 = 20_000;
const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "ve", "yo", "ba", "de", "fi", "go", "hu", "ju",
];

/// Word `rank` of the vocabulary: `rank + 1` written in base 16 with a
/// syllable per digit (distinct ranks give distinct words).
fn word(rank: u64, out: &mut String) {
    let mut digits = [0u8; 16];
    let mut x = rank + 1;
    let mut n = 0;
    while x > 0 {
        digits[n] = (x % 16) as u8;
        x /= 16;
        n += 1;
    }
    for d in digits[..n].iter().rev() {
        out.push_str(SYLLABLES[*d as usize]);
    }
}

/// A rank with probability about `1 / (rank + 1)` (log-uniform: `⌊(V+1)^u⌋ − 1`).
fn zipf_rank(rng: &mut SplitMix) -> u64 {
    let u = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let r = ((VOCABULARY as f64 + 1.0).ln() * u).exp() as u64;
    r.saturating_sub(1).min(VOCABULARY - 1)
}

/// Writes the text files (`mb` MB over `files` files); the word counts.
fn write_text(dir: &Path, files: usize, mb: u64) -> Result<Counts, BenchError> {
    eprintln!(
        "wordcount: writing {mb} MB of text in {files} files into {} (once; later runs reuse them)",
        dir.display()
    );
    let per_file = (mb << 20) / files as u64;
    let counts = write_files(
        dir,
        files,
        |f| format!("text_{f}.txt"),
        |f, w| {
            let mut rng = SplitMix::new(0x7E47_0000 + f as u64);
            let mut ranks = vec![0u64; VOCABULARY as usize];
            let mut written = 0u64;
            let mut line = String::with_capacity(256);
            while written < per_file {
                line.clear();
                let words = 6 + rng.below(11);
                for i in 0..words {
                    if i > 0 {
                        line.push(' ');
                    }
                    let r = zipf_rank(&mut rng);
                    ranks[r as usize] += 1;
                    word(r, &mut line);
                }
                line.push('\n');
                w.write_all(line.as_bytes())?;
                written += line.len() as u64;
            }
            let mut counts = Counts::default();
            let mut text = String::new();
            for (r, n) in ranks.into_iter().enumerate().filter(|(_, n)| *n > 0) {
                text.clear();
                word(r as u64, &mut text);
                counts.total += n;
                counts.counts.insert(text.clone(), n);
            }
            Ok(counts)
        },
    )?;
    save_counts(dir, &counts)?;
    Ok(counts)
}

/// The hand-written program: `threads` threads, thread `t` reads files `t`,
/// `t + threads`, … in 8 MiB blocks, splits on ASCII whitespace and counts
/// words in its own map, allocating only for a word it has not seen; then
/// the maps are merged. Gives every count (the top is taken by the caller).
fn count_words_by_hand(files: &[PathBuf], threads: usize) -> Result<Counts, BenchError> {
    let threads = threads.max(1);
    let parts: Vec<Result<Counts, BenchError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut map: HashMap<String, u64> = HashMap::new();
                    let mut total = 0u64;
                    let mut buf = vec![0u8; 8 << 20];
                    for path in files.iter().skip(t).step_by(threads) {
                        let mut file = std::fs::File::open(path).map_err(|e| io_failed(path, "cannot open", e))?;
                        // `carry` holds the start of a word cut by the block's end.
                        let mut carry = 0usize;
                        loop {
                            let n = file
                                .read(&mut buf[carry..])
                                .map_err(|e| io_failed(path, "cannot read", e))?;
                            let end = carry + n;
                            let last = n == 0;
                            // Count every word that is followed by whitespace
                            // (or all of them at the end of the file).
                            let cut = if last {
                                end
                            } else {
                                buf[..end]
                                    .iter()
                                    .rposition(|b| b.is_ascii_whitespace())
                                    .map_or(0, |p| p + 1)
                            };
                            let text = std::str::from_utf8(&buf[..cut])
                                .map_err(|e| BenchError::Failed(format!("{}: not UTF-8: {e}", path.display())))?;
                            for w in text.split_ascii_whitespace() {
                                total += 1;
                                match map.get_mut(w) {
                                    Some(c) => *c += 1,
                                    None => {
                                        map.insert(w.to_string(), 1);
                                    }
                                }
                            }
                            if last {
                                break;
                            }
                            buf.copy_within(cut..end, 0);
                            carry = end - cut;
                            if carry == buf.len() {
                                buf.resize(buf.len() * 2, 0);
                            }
                        }
                    }
                    Ok(Counts { total, counts: map })
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("counting thread")).collect()
    });
    let mut counts = Counts::default();
    for p in parts {
        counts.merge(p?);
    }
    Ok(counts)
}

/// The `k` largest counts, largest first; ties by word, so the order is
/// one answer among the equally right ones.
fn top_k(counts: &HashMap<String, u64>, k: usize) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = counts.iter().map(|(w, n)| (w.clone(), *n)).collect();
    all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn wordcount(ctx: &Context<'_>) -> Result<Record, BenchError> {
    let dir = PathBuf::from(ctx.options.get("dir").unwrap_or(TEXT_DIR.default));
    let files = ctx.options.usize("files", 8)?;
    let mb = ctx.options.usize("mb", 1024)? as u64;
    let system = ctx.options.choice("system", &["blockwise", "rust-loop"], SYSTEM.default)?;
    if files == 0 || mb == 0 {
        return Err(BenchError::Usage("--files and --mb must be at least 1".into()));
    }
    let existing = files_in(&dir, "text_", ".txt");
    let expected = if existing.is_empty() {
        write_text(&dir, files, mb)?
    } else {
        match load_counts(&dir) {
            Some(c) => c,
            None => {
                eprintln!("wordcount: counting the words of {} files without blockwise", existing.len());
                let c = count_words_by_hand(&existing, 2)?;
                save_counts(&dir, &c)?;
                c
            }
        }
    };
    let paths = files_in(&dir, "text_", ".txt");
    let bytes: u64 = paths.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();

    measure::reset_peak_rss();
    let rss_before = measure::rss_bytes();
    let mut r = ctx.record();
    let (top, build, wall, npartitions) = if system == "rust-loop" {
        let t0 = Instant::now();
        let counts = count_words_by_hand(&paths, ctx.scheduler.workers)?;
        let top = top_k(&counts.counts, 100);
        let wall = t0.elapsed();
        r.set("system", "rust-loop");
        (top, std::time::Duration::ZERO, wall, None)
    } else {
        let t0 = Instant::now();
        let lines = blockwise::bag::read_text(format!("{}/text_*.txt", dir.display()))?;
        let npartitions = lines.npartitions();
        // Words borrowed from each line, counted per partition; a word is
        // copied into a `String` only the first time a partition sees it.
        let top = lines
            .frequencies_of(|line: &String, emit: &mut dyn FnMut(&str)| line.split_ascii_whitespace().for_each(emit))
            .topk(100, |(_, n)| *n);
        let build = t0.elapsed();
        let t1 = Instant::now();
        let top = top.compute_with(ctx.scheduler.scheduler.clone())?;
        let wall = t1.elapsed();
        let top: Vec<(String, u64)> = top.into_iter().map(|(w, n)| (w, n as u64)).collect();
        (top, build, wall, Some(npartitions))
    };
    let peak = measure::peak_rss_bytes();
    expected.check_top("wordcount", &top, 100)?;
    r.set("dir", dir.display().to_string())
        .set("words", expected.total)
        .set("bytes", bytes)
        .set("npartitions", npartitions)
        .set("build_s", seconds(build))
        .set("wall_s", seconds(wall))
        .set("total_s", seconds(build + wall))
        .set("mb_per_s", (bytes as f64 / 1e6 / (build + wall).as_secs_f64()).round())
        .set("peak_rss_bytes", peak)
        .set("rss_before_bytes", rss_before)
        .set("result", serde_json::json!(top));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::tests::{run, temp_dir};

    #[test]
    fn words_are_distinct_and_ranks_skewed() {
        let mut seen = std::collections::HashSet::new();
        for r in 0..VOCABULARY {
            let mut w = String::new();
            word(r, &mut w);
            assert!(seen.insert(w), "rank {r}");
        }
        let mut rng = SplitMix::new(3);
        let mut low = 0;
        for _ in 0..10_000 {
            let r = zipf_rank(&mut rng);
            assert!(r < VOCABULARY);
            if r < 10 {
                low += 1;
            }
        }
        // P(rank < 10) = ln 11 / ln 20001 ≈ 0.24.
        assert!((2_000..3_000).contains(&low), "{low}");
    }

    #[test]
    fn top_lists_are_checked() {
        let counts = Counts {
            total: 10,
            counts: [("a", 5), ("b", 3), ("c", 3), ("d", 1)]
                .into_iter()
                .map(|(w, n)| (w.to_string(), n))
                .collect(),
        };
        let ok = |t: &[(&str, u64)]| t.iter().map(|(w, n)| (w.to_string(), *n)).collect::<Vec<_>>();
        assert!(counts.check_top("t", &ok(&[("a", 5), ("b", 3)]), 2).is_ok());
        assert!(counts.check_top("t", &ok(&[("a", 5), ("c", 3)]), 2).is_ok());
        assert!(counts.check_top("t", &ok(&[("a", 5), ("d", 1)]), 2).is_err());
        assert!(counts.check_top("t", &ok(&[("a", 4), ("b", 3)]), 2).is_err());
        assert!(counts.check_top("t", &ok(&[("b", 3), ("a", 5)]), 2).is_err());
        assert!(counts.check_top("t", &ok(&[("a", 5)]), 2).is_err());
    }

    #[test]
    fn bag_json_counts_names() {
        let dir = temp_dir("accounts");
        let d = dir.to_str().unwrap();
        for scheduler in ["sync", "threads:2"] {
            let r = run("bag-json", scheduler, &[("dir", d), ("files", "3"), ("records", "2000")]).unwrap();
            assert_eq!(r.get("records").unwrap(), 6000);
            assert_eq!(r.get("result").unwrap().as_array().unwrap().len(), 10);
        }
        // Counting the files again without the saved counts gives the same.
        let saved = load_counts(&dir).unwrap();
        let counted = count_accounts(&dir, &files_in(&dir, "accounts.", ".json")).unwrap();
        assert_eq!(saved, counted);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wordcount_by_blockwise_and_by_hand() {
        let dir = temp_dir("text");
        let d = dir.to_str().unwrap();
        let opts = [("dir", d), ("files", "3"), ("mb", "1")];
        let r = run("wordcount", "threads:2", &opts).unwrap();
        let by_hand = run("wordcount", "sync", &[opts[0], opts[1], opts[2], ("system", "rust-loop")]).unwrap();
        assert_eq!(r.get("result").unwrap().as_array().unwrap().len(), 100);
        assert_eq!(by_hand.get("system").unwrap(), "rust-loop");
        // The hand-written count of every word is the generator's.
        let saved = load_counts(&dir).unwrap();
        let counted = count_words_by_hand(&files_in(&dir, "text_", ".txt"), 2).unwrap();
        assert_eq!(saved, counted);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
