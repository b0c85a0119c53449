//! What the process-crossing tests (`worker_process`, `cluster`) share: the
//! account records and the `#[blockwise::task]` functions of the issue's
//! pipeline, the files they are read from, the pipeline's sequential
//! answer, and the runner of a `harness = false` test binary.

use std::path::{Path, PathBuf};

use blockwise_bag::register_element;
use serde::{Deserialize, Serialize};

/// What `#[task(crate = …)]` reaches generated code through (this crate
/// cannot depend on the facade, which depends on it).
#[allow(
    clippy::single_component_path_imports,
    reason = "the re-export is the point: generated code reaches it as `crate::common::shim::blockwise_core`"
)]
pub(crate) mod shim {
    pub(crate) use blockwise_core;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Account {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) amount: i64,
}

register_element!(Account);

#[blockwise_macros::task(crate = crate::common::shim)]
pub(crate) fn positive(account: &Account) -> bool {
    account.amount > 0
}

#[blockwise_macros::task(crate = crate::common::shim)]
pub(crate) fn name_of(account: Account) -> String {
    account.name
}

#[blockwise_macros::task(crate = crate::common::shim)]
pub(crate) fn count_of(pair: &(String, usize)) -> usize {
    pair.1
}

pub(crate) const NAMES: [&str; 7] = ["Alice", "Bob", "Charlie", "Dan", "Edith", "Frank", "Gert"];

/// `n` accounts; `mix` picks how names and amounts spread.
pub(crate) fn accounts(n: u64, mix: (u64, u64, u64, u64)) -> Vec<Account> {
    let (a, b, c, m) = mix;
    (0..n)
        .map(|i| Account {
            id: i,
            name: NAMES[((i * a + i / b + i * i / c) % 7) as usize].to_string(),
            amount: ((i * 7919) % m) as i64 - (m as i64 * 2 / 5),
        })
        .collect()
}

/// Writes `accounts` as JSON-lines files of 1,000 records into a fresh
/// directory `name` (under the temporary directory, per process), the
/// files whose number is in `gzipped` compressed.
pub(crate) fn write_accounts(name: &str, accounts: &[Account], gzipped: &[usize]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (k, chunk) in accounts.chunks(1000).enumerate() {
        let text: String = chunk.iter().map(|a| serde_json::to_string(a).unwrap() + "\n").collect();
        if gzipped.contains(&k) {
            write_gzip(&dir.join(format!("accounts.{k}.json.gz")), &text);
        } else {
            std::fs::write(dir.join(format!("accounts.{k}.json")), text).unwrap();
        }
    }
    dir
}

fn write_gzip(path: &Path, text: &str) {
    use std::io::Write;
    let file = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
}

/// The pipeline run sequentially: frequencies of the names of
/// accounts with a positive amount in first-appearance order, then the `k`
/// largest counts, earlier first among equal counts.
pub(crate) fn expected_top(accounts: &[Account], k: usize) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for a in accounts.iter().filter(|a| a.amount > 0) {
        match counts.iter_mut().find(|(n, _)| *n == a.name) {
            Some((_, c)) => *c += 1,
            None => counts.push((a.name.clone(), 1)),
        }
    }
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    counts.truncate(k);
    counts
}

/// A named check of a `harness = false` test binary.
pub(crate) type Check<C> = (&'static str, fn(&C) -> Result<(), String>);

/// Runs each named check on `context`, printing `test NAME ... ok` or
/// `... FAILED` with the reason as libtest does, then `N passed, N failed`.
/// Returns whether every check passed.
pub(crate) fn run_checks<C>(context: &C, checks: &[Check<C>]) -> bool {
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        match check(context) {
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
    failed == 0
}
