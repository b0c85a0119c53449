//! The command line, parsed by hand: `<workload> [--scheduler S] [--repeat R]
//! [--OPTION VALUE]...`. Options other than the common ones belong to the
//! workload, which declares them (see [`crate::workloads::Workload::options`]).

use crate::BenchError;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Print the usage.
    Help,
    /// List the workloads.
    List,
    /// Run a workload.
    Run(Invocation),
}

/// One workload run, as asked on the command line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invocation {
    /// The workload's name.
    pub(crate) workload: String,
    /// The scheduler setting (`threads`, `threads:N`, `sync`, `distributed`, an address).
    pub(crate) scheduler: String,
    /// How many times to run it in this process (one JSON line each).
    pub(crate) repeat: usize,
    /// The workload's own options.
    pub(crate) options: Options,
}

/// The workload-specific `--name value` options, in command-line order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    values: Vec<(String, String)>,
}

impl Options {
    /// The option names given.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|(n, _)| n.as_str())
    }

    /// The last value given for `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name` as a whole number, or `default` when not given. Accepts `_`
    /// separators and a scientific shorthand (`1e6`).
    pub(crate) fn usize(&self, name: &str, default: usize) -> Result<usize, BenchError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => parse_count(text).ok_or_else(|| {
                BenchError::Usage(format!(
                    "--{name} {text:?}: expected a whole number such as 100000 or 1e5"
                ))
            }),
        }
    }

    /// `name` as a size in bytes (`512MB`, `1.5GiB`, `300000000`), or
    /// `None` when not given.
    #[cfg_attr(not(feature = "frame"), allow(dead_code))]
    pub(crate) fn bytes(&self, name: &str) -> Result<Option<u64>, BenchError> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => parse_bytes(text).map(Some).ok_or_else(|| {
                BenchError::Usage(format!(
                    "--{name} {text:?}: expected a size such as 512MB, 2GiB or 300000000 (bytes)"
                ))
            }),
        }
    }

    /// `name` as one of `choices`, or `default` when not given.
    pub(crate) fn choice<'c>(&self, name: &str, choices: &[&'c str], default: &'c str) -> Result<&'c str, BenchError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => {
                choices.iter().find(|c| **c == text).copied().ok_or_else(|| {
                    BenchError::Usage(format!("--{name} {text:?}: expected one of {}", choices.join(", ")))
                })
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Options {
        Options {
            values: pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }
}

fn parse_count(text: &str) -> Option<usize> {
    let text = text.replace('_', "");
    if let Some((mantissa, exponent)) = text.split_once(['e', 'E']) {
        let m: usize = mantissa.parse().ok()?;
        let e: u32 = exponent.parse().ok()?;
        return m.checked_mul(10usize.checked_pow(e)?);
    }
    text.parse().ok()
}

/// A size in bytes: a number (fractions allowed with a unit) followed by
/// nothing (bytes), `B`, `KB`/`MB`/`GB` (powers of 1000) or
/// `KiB`/`MiB`/`GiB` (powers of 1024), case-insensitive.
#[cfg_attr(not(feature = "frame"), allow(dead_code))]
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim().replace('_', "");
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    if unit.is_empty() {
        return parse_count(number).map(|n| n as u64);
    }
    let x: f64 = number.parse().ok()?;
    (x.is_finite() && x >= 0.0).then(|| (x * scale as f64).round() as u64)
}

/// Parses the arguments after the program name.
pub(crate) fn parse(argv: &[String]) -> Result<Command, BenchError> {
    let mut workload: Option<String> = None;
    let mut scheduler = "threads".to_string();
    let mut repeat = 1usize;
    let mut options = Options::default();
    let mut rest = argv.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--list" => return Ok(Command::List),
            _ => {}
        }
        let Some(flag) = arg.strip_prefix("--") else {
            if let Some(first) = &workload {
                return Err(BenchError::Usage(format!(
                    "one workload per run: got {first:?} and {arg:?} (peak memory is per process)"
                )));
            }
            workload = Some(arg.clone());
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => {
                let value = rest
                    .next()
                    .ok_or_else(|| BenchError::Usage(format!("--{flag} needs a value")))?;
                (flag.to_string(), value.clone())
            }
        };
        match name.as_str() {
            "scheduler" => scheduler = value,
            "repeat" => {
                repeat = parse_count(&value)
                    .filter(|&r| r > 0)
                    .ok_or_else(|| BenchError::Usage(format!("--repeat {value:?}: expected a count of at least 1")))?;
            }
            _ => options.values.push((name, value)),
        }
    }
    let workload = workload.ok_or_else(|| BenchError::Usage("no workload given (--list shows them)".into()))?;
    Ok(Command::Run(Invocation {
        workload,
        scheduler,
        repeat,
        options,
    }))
}

/// The `--help` text.
pub(crate) fn usage() -> String {
    let mut text = String::from(
        "usage: blockwise-bench <workload> [--scheduler sync|threads|threads:N|distributed|tcp://HOST:PORT]\n\
         \x20                      [--repeat R] [workload options]\n\
         \n\
         Prints one JSON object per run on stdout. Run one workload per process:\n\
         peak_rss_bytes is the process's high-water mark.\n\
         \n\
         workloads:\n",
    );
    for w in crate::workloads::all() {
        text.push_str(&format!("  {:<14} {}\n", w.name, w.about));
        for o in w.options {
            text.push_str(&format!("      --{:<10} {} (default {})\n", o.name, o.about, o.default));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn workload_scheduler_and_options() {
        let cmd = parse(&argv("tasks-tree --scheduler sync --n 1e3 --api=layers --repeat 2")).unwrap();
        let Command::Run(inv) = cmd else {
            panic!("expected a run")
        };
        assert_eq!(inv.workload, "tasks-tree");
        assert_eq!(inv.scheduler, "sync");
        assert_eq!(inv.repeat, 2);
        assert_eq!(inv.options.usize("n", 5).unwrap(), 1000);
        assert_eq!(inv.options.usize("fan-in", 100).unwrap(), 100);
        assert_eq!(
            inv.options.choice("api", &["delayed", "layers"], "delayed").unwrap(),
            "layers"
        );
        assert_eq!(inv.options.names().collect::<Vec<_>>(), vec!["n", "api"]);
    }

    #[test]
    fn defaults_and_errors() {
        let Command::Run(inv) = parse(&argv("tasks-flat")).unwrap() else {
            panic!("expected a run")
        };
        assert_eq!(inv.scheduler, "threads");
        assert_eq!(inv.repeat, 1);
        assert_eq!(parse(&argv("--help")).unwrap(), Command::Help);
        assert!(matches!(parse(&argv("")), Err(BenchError::Usage(_))));
        assert!(matches!(parse(&argv("a b")), Err(BenchError::Usage(_))));
        assert!(matches!(parse(&argv("a --n")), Err(BenchError::Usage(_))));
        assert!(matches!(parse(&argv("a --repeat 0")), Err(BenchError::Usage(_))));
        let Command::Run(inv) = parse(&argv("a --n ten")).unwrap() else {
            panic!("expected a run")
        };
        assert!(matches!(inv.options.usize("n", 1), Err(BenchError::Usage(_))));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("300000000"), Some(300_000_000));
        assert_eq!(parse_bytes("512MB"), Some(512_000_000));
        assert_eq!(parse_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_bytes("256mib"), Some(256 << 20));
        assert_eq!(parse_bytes("12 parsecs"), None);
        assert_eq!(parse_bytes("-1GB"), None);
        let o = Options::from_pairs(&[("memory-limit", "2GB")]);
        assert_eq!(o.bytes("memory-limit").unwrap(), Some(2_000_000_000));
        assert_eq!(o.bytes("other").unwrap(), None);
        let o = Options::from_pairs(&[("memory-limit", "lots")]);
        assert!(matches!(o.bytes("memory-limit"), Err(BenchError::Usage(_))));
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("100_000"), Some(100_000));
        assert_eq!(parse_count("1e6"), Some(1_000_000));
        assert_eq!(parse_count("2E3"), Some(2_000));
        assert_eq!(parse_count("1.5e3"), None);
        assert_eq!(parse_count("-1"), None);
    }
}
