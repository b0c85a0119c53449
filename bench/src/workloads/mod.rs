//! The workload registry: name → function.
//!
//! Each workload family is one module exporting `WORKLOADS: &[Workload]`.
//! Adding a family is a new file here plus its name in the `families!` line
//! below; adding a workload to a family is one more entry in its slice.
//!
//! A workload's function runs once per repetition and returns one
//! [`Record`], already holding the common fields ([`Context::record`]). It
//! must check its own result against a value computed without blockwise, and
//! fail ([`BenchError::Failed`]) rather than report the timing of a wrong
//! answer.

#[cfg(any(feature = "frame", feature = "bag"))]
use std::io::{BufWriter, Write};
#[cfg(any(feature = "frame", feature = "bag"))]
use std::path::{Path, PathBuf};

use crate::BenchError;
use crate::args::Options;
use crate::record::Record;
use crate::scheduler::BenchScheduler;

macro_rules! families {
    ($($(#[$cfg:meta])* $family:ident),* $(,)?) => {
        $($(#[$cfg])* mod $family;)*
        const FAMILIES: &[&[Workload]] = &[$($(#[$cfg])* $family::WORKLOADS),*];
    };
}

// The collection families sit behind the bench's cargo features of the same
// names (all on by default); `tasks` needs only the engine; `transfer` (an
// ndarray moved between workers) needs `array` and `distributed`.
families!(
    tasks,
    #[cfg(feature = "array")]
    array,
    #[cfg(feature = "frame")]
    frame,
    #[cfg(feature = "bag")]
    bag,
    #[cfg(all(feature = "array", feature = "distributed"))]
    transfer,
);

/// A small, fast generator (SplitMix64) for the bench's data files: the
/// data must be the same on every machine and must not depend on a random
/// crate's version.
#[cfg(any(feature = "frame", feature = "bag"))]
#[derive(Clone, Debug)]
pub(crate) struct SplitMix(u64);

#[cfg(any(feature = "frame", feature = "bag"))]
impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on `0..n` (the modulo bias, below 10⁻⁹ for the ranges used here, does not matter).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Whether two floating-point results that add the same numbers in
/// different orders agree to a relative tolerance.
/// What each writer thread of [`write_files`] returns, merged into one.
#[cfg(any(feature = "frame", feature = "bag"))]
pub(crate) trait Merge: Default {
    /// Adds `other` into `self`.
    fn merge(&mut self, other: Self);
}

/// A failed file operation, naming the file.
#[cfg(any(feature = "frame", feature = "bag"))]
pub(crate) fn io_failed(path: &Path, what: &str, e: std::io::Error) -> BenchError {
    BenchError::Failed(format!("{}: {what}: {e}", path.display()))
}

#[cfg(any(feature = "frame", feature = "bag"))]
/// Files in `dir` named `prefix…suffix`, sorted.
pub(crate) fn files_in(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    files.sort();
    files
}

#[cfg(any(feature = "frame", feature = "bag"))]
/// Runs `write(file index, writer)` for `files` files on two threads (each
/// file written under a temporary name, then renamed) and merges what each
/// returns.
pub(crate) fn write_files<A: Merge + Send>(
    dir: &Path,
    files: usize,
    name: impl Fn(usize) -> String + Sync,
    write: impl Fn(usize, &mut dyn Write) -> std::io::Result<A> + Sync,
) -> Result<A, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| io_failed(dir, "cannot create", e))?;
    let threads = 2.min(files.max(1));
    let parts: Vec<Result<A, BenchError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (name, write) = (&name, &write);
                s.spawn(move || {
                    let mut counts = A::default();
                    for f in (t..files).step_by(threads) {
                        let path = dir.join(name(f));
                        let tmp = dir.join(format!(".{}.tmp", name(f)));
                        let file = std::fs::File::create(&tmp).map_err(|e| io_failed(&tmp, "cannot create", e))?;
                        let mut w = BufWriter::with_capacity(1 << 20, file);
                        counts.merge(write(f, &mut w).map_err(|e| io_failed(&tmp, "cannot write", e))?);
                        w.flush().map_err(|e| io_failed(&tmp, "cannot write", e))?;
                        drop(w);
                        std::fs::rename(&tmp, &path).map_err(|e| io_failed(&path, "cannot rename into", e))?;
                    }
                    Ok(counts)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("writer thread")).collect()
    });
    let mut counts = A::default();
    for p in parts {
        counts.merge(p?);
    }
    Ok(counts)
}

#[cfg(any(feature = "array", feature = "frame"))]
pub(crate) fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

/// A workload-specific option, for `--help` and for rejecting typos.
pub(crate) struct OptionSpec {
    /// The name, without `--`.
    pub(crate) name: &'static str,
    /// The default, as shown in `--help`.
    pub(crate) default: &'static str,
    /// What it sets.
    pub(crate) about: &'static str,
}

/// A named benchmark.
pub(crate) struct Workload {
    /// The name given on the command line.
    pub(crate) name: &'static str,
    /// One line for `--list` and `--help`.
    pub(crate) about: &'static str,
    /// The options it reads besides `--scheduler` and `--repeat`.
    pub(crate) options: &'static [OptionSpec],
    /// Runs it once.
    pub(crate) run: fn(&Context<'_>) -> Result<Record, BenchError>,
}

impl Workload {
    /// Rejects options the workload does not read (a typo must not silently
    /// benchmark the default).
    pub(crate) fn check_options(&self, options: &Options) -> Result<(), BenchError> {
        for name in options.names() {
            if !self.options.iter().any(|o| o.name == name) {
                let known: Vec<String> = self.options.iter().map(|o| format!("--{}", o.name)).collect();
                return Err(BenchError::Usage(format!(
                    "{} has no option --{name} (it takes --scheduler, --repeat{}{})",
                    self.name,
                    if known.is_empty() { "" } else { ", " },
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Every workload, family by family.
pub(crate) fn all() -> impl Iterator<Item = &'static Workload> {
    FAMILIES.iter().flat_map(|f| f.iter())
}

/// The workload called `name`.
pub(crate) fn find(name: &str) -> Result<&'static Workload, BenchError> {
    all().find(|w| w.name == name).ok_or_else(|| {
        let names: Vec<&str> = all().map(|w| w.name).collect();
        BenchError::Usage(format!("unknown workload {name:?}; workloads: {}", names.join(", ")))
    })
}

/// What one run of a workload is given.
pub(crate) struct Context<'a> {
    /// The workload's name (for the record).
    pub(crate) workload: &'static str,
    /// Where to compute.
    pub(crate) scheduler: &'a BenchScheduler,
    /// The workload's options.
    pub(crate) options: &'a Options,
    /// Which repetition this is, from 0.
    pub(crate) run: usize,
    /// The 1-minute load average when the run started.
    pub(crate) load_average: Option<f64>,
}

impl Context<'_> {
    /// A record with the fields every line carries: `workload`, `system`,
    /// `scheduler`, `workers`, `run`, and `loadavg_1m` (the machine's load
    /// when the run started: timings on a busy machine are not comparable).
    pub(crate) fn record(&self) -> Record {
        let mut r = Record::default();
        r.set("workload", self.workload)
            .set("system", "blockwise")
            .set("scheduler", self.scheduler.name)
            .set("workers", self.scheduler.workers)
            .set("run", self.run)
            .set("loadavg_1m", self.load_average);
        r
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scheduler::BenchScheduler;

    /// Runs a workload once in this process, as `main` would.
    #[allow(dead_code)]
    pub(crate) fn run(workload: &str, scheduler: &str, options: &[(&str, &str)]) -> Result<Record, BenchError> {
        let w = find(workload).unwrap();
        let options = Options::from_pairs(options);
        w.check_options(&options).unwrap();
        let scheduler = BenchScheduler::parse(scheduler).unwrap();
        let ctx = Context {
            workload: w.name,
            scheduler: &scheduler,
            options: &options,
            run: 0,
            load_average: None,
        };
        (w.run)(&ctx)
    }

    /// A fresh directory under the system's temporary directory.
    #[allow(dead_code)]
    pub(crate) fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("blockwise-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn names_are_unique_and_options_checked() {
        let names: Vec<&str> = all().map(|w| w.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate workload names in {names:?}");
        let tree = find("tasks-tree").unwrap();
        assert!(tree.check_options(&Options::from_pairs(&[("n", "10")])).is_ok());
        assert!(matches!(
            tree.check_options(&Options::from_pairs(&[("nn", "10")])),
            Err(BenchError::Usage(_))
        ));
        assert!(matches!(find("nope"), Err(BenchError::Usage(_))));
    }
}
