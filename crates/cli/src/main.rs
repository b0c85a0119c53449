//! The `blockwise` command: the parts of a cluster that need no user code.
//!
//! ```text
//! blockwise scheduler [--host 127.0.0.1] [--port 8786] [--token SECRET] [TLS]
//! blockwise worker tcp://HOST:PORT [--nthreads N] [--name NAME] [--host H]
//!                                  [--memory-limit BYTES] [--local-directory DIR]
//!                                  [--token SECRET] [--connect-timeout SECONDS] [TLS]
//! blockwise tls-certs DIR [NAME…]
//!
//! TLS = --tls-ca CA.pem --tls-cert CERT.pem --tls-key KEY.pem
//! ```
//!
//! With certificates the scheduler listens on `tls://`, a worker connects
//! to a `tls://` address and serves its peers on `tls://`; every side
//! presents a certificate of the CA and trusts no other. `tls-certs` writes
//! a test CA and a certificate per name (default: scheduler, worker,
//! client) for `localhost` and `127.0.0.1`.
//!
//! The scheduler is generic: it runs no user code, so this binary serves
//! any program. A worker started from this binary knows only the ops built
//! into blockwise; workers of a program with its own `#[blockwise::task]`
//! functions are that program itself in worker mode
//! (`BLOCKWISE_CLUSTER_WORKER=tcp://HOST:PORT ./my-program`). A cluster's
//! workers and clients must all run one build: the scheduler refuses the
//! others with a message naming both builds.

use std::process::ExitCode;

use blockwise_core::{Error, Result};
use blockwise_distributed::{SchedulerHandle, SchedulerOptions, Tls, TlsFiles, WorkerOptions, run_worker};

const USAGE: &str = "\
usage:
  blockwise scheduler [--host HOST] [--port PORT] [--token SECRET] [TLS]
  blockwise worker tcp://HOST:PORT [--nthreads N] [--name NAME] [--host HOST]
                                   [--memory-limit BYTES] [--local-directory DIR]
                                   [--token SECRET] [--connect-timeout SECONDS] [TLS]
  blockwise tls-certs DIR [NAME...]

TLS is --tls-ca CA.pem --tls-cert CERT.pem --tls-key KEY.pem: the scheduler
then listens on tls://, and a worker connects to tls://HOST:PORT. tls-certs
writes a test CA and one certificate per NAME (default: scheduler worker
client) into DIR.

The scheduler listens on 127.0.0.1:8786 by default (--host 0.0.0.0 for every
interface). A worker listens for its peers on --host (default 127.0.0.1; give
an address the other workers can reach on a real network). Beyond 60% of
--memory-limit a worker spills results to --local-directory (default: the
system's temporary directory), beyond 80% it pauses.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blockwise: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("scheduler") => scheduler(&Flags::parse(
            &args[1..],
            &["host", "port", "token", "tls-ca", "tls-cert", "tls-key"],
        )?),
        Some("worker") => worker(&Flags::parse(
            &args[1..],
            &[
                "nthreads",
                "name",
                "host",
                "memory-limit",
                "local-directory",
                "token",
                "connect-timeout",
                "tls-ca",
                "tls-cert",
                "tls-key",
            ],
        )?),
        Some("tls-certs") => tls_certs(&Flags::parse(&args[1..], &[])?),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(Error::invalid(format!("unknown command {other:?}\n{USAGE}"))),
        None => Err(Error::invalid(USAGE)),
    }
}

/// `--name value` flags and positional arguments.
struct Flags {
    positional: Vec<String>,
    named: Vec<(String, String)>,
}

impl Flags {
    fn parse(args: &[String], known: &[&str]) -> Result<Flags> {
        let mut flags = Flags {
            positional: Vec::new(),
            named: Vec::new(),
        };
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            if let Some(flag) = a.strip_prefix("--") {
                let (name, value) = match flag.split_once('=') {
                    Some((n, v)) => (n.to_string(), v.to_string()),
                    None => {
                        i += 1;
                        let v = args
                            .get(i)
                            .ok_or_else(|| Error::invalid(format!("--{flag} needs a value\n{USAGE}")))?;
                        (flag.to_string(), v.clone())
                    }
                };
                if !known.contains(&name.as_str()) {
                    return Err(Error::invalid(format!("unknown option --{name}\n{USAGE}")));
                }
                flags.named.push((name, value));
            } else {
                flags.positional.push(a.clone());
            }
            i += 1;
        }
        Ok(flags)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.named
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, name: &str) -> Result<Option<u64>> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| Error::invalid(format!("--{name} must be a whole number, not {v:?}")))
            })
            .transpose()
    }
}

impl Flags {
    /// The TLS configuration of `--tls-ca/--tls-cert/--tls-key` (all three
    /// or none).
    fn tls(&self) -> Result<Option<Tls>> {
        match (self.get("tls-ca"), self.get("tls-cert"), self.get("tls-key")) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Tls::from_files(&TlsFiles {
                ca: ca.into(),
                cert: cert.into(),
                key: key.into(),
            })
            .map(Some),
            _ => Err(Error::invalid(format!(
                "TLS needs all three of --tls-ca, --tls-cert and --tls-key\n{USAGE}"
            ))),
        }
    }
}

fn tls_certs(flags: &Flags) -> Result<()> {
    let Some((dir, names)) = flags.positional.split_first() else {
        return Err(Error::invalid(format!(
            "where should the certificates go? DIR\n{USAGE}"
        )));
    };
    let names: Vec<&str> = if names.is_empty() {
        vec!["scheduler", "worker", "client"]
    } else {
        names.iter().map(String::as_str).collect()
    };
    let files = blockwise_distributed::tls::create_test_certificates(std::path::Path::new(dir), &names)?;
    println!("CA: {}", files[0].ca.display());
    for (name, f) in names.iter().zip(&files) {
        println!(
            "{name}: --tls-ca {} --tls-cert {} --tls-key {}",
            f.ca.display(),
            f.cert.display(),
            f.key.display()
        );
    }
    Ok(())
}

fn scheduler(flags: &Flags) -> Result<()> {
    if let Some(extra) = flags.positional.first() {
        return Err(Error::invalid(format!("unexpected argument {extra:?}\n{USAGE}")));
    }
    let host = flags.get("host").unwrap_or("127.0.0.1");
    let port = flags.number("port")?.unwrap_or(8786);
    let tls = flags.tls()?;
    let scheme = if tls.is_some() { "tls" } else { "tcp" };
    let options = SchedulerOptions {
        address: format!("{scheme}://{host}:{port}"),
        tls,
        config: blockwise_distributed::SchedulerConfig::from_config()?,
        token: flags.get("token").map(String::from),
        ..SchedulerOptions::default()
    };
    let handle = SchedulerHandle::start(options)?;
    println!("blockwise scheduler at {}", handle.address());
    // Serves until the process is stopped (Ctrl-C, SIGTERM).
    loop {
        std::thread::park();
    }
}

fn worker(flags: &Flags) -> Result<()> {
    let scheduler = match flags.positional.as_slice() {
        [address] => address.clone(),
        [] => return Err(Error::invalid(format!("which scheduler? tcp://HOST:PORT\n{USAGE}"))),
        [_, extra, ..] => return Err(Error::invalid(format!("unexpected argument {extra:?}\n{USAGE}"))),
    };
    let mut options = WorkerOptions::new(scheduler);
    if let Some(n) = flags.number("nthreads")? {
        options = options.threads(n as usize);
    }
    if let Some(name) = flags.get("name") {
        options.name = Some(name.to_string());
    }
    if let Some(host) = flags.get("host") {
        options.host = host.to_string();
    }
    if let Some(limit) = flags.number("memory-limit")? {
        options.memory.limit = limit;
    }
    if let Some(dir) = flags.get("local-directory") {
        options.memory.directory = dir.into();
    }
    if let Some(seconds) = flags.number("connect-timeout")? {
        options.connect_timeout = std::time::Duration::from_secs(seconds);
    }
    options.token = flags.get("token").map(String::from);
    options.tls = flags.tls()?;
    run_worker(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_parse_both_spellings_and_refuse_unknown_ones() {
        let f = Flags::parse(
            &strings(&["tcp://h:1", "--nthreads", "4", "--name=w1"]),
            &["nthreads", "name"],
        )
        .unwrap();
        assert_eq!(f.positional, ["tcp://h:1"]);
        assert_eq!(f.number("nthreads").unwrap(), Some(4));
        assert_eq!(f.get("name"), Some("w1"));
        assert!(Flags::parse(&strings(&["--bogus", "1"]), &["port"]).is_err());
        assert!(Flags::parse(&strings(&["--port"]), &["port"]).is_err());
        let f = Flags::parse(&strings(&["--port", "x"]), &["port"]).unwrap();
        assert!(f.number("port").unwrap_err().to_string().contains("whole number"));
    }

    #[test]
    fn tls_flags_come_in_threes_and_tls_certs_writes_loadable_files() {
        let dir = std::env::temp_dir().join(format!("blockwise-cli-certs-{}", std::process::id()));
        let d = dir.to_string_lossy().to_string();
        run(&strings(&["tls-certs", &d, "w1"])).unwrap();
        let f = Flags::parse(
            &strings(&[
                "--tls-ca",
                &format!("{d}/ca.pem"),
                "--tls-cert",
                &format!("{d}/w1.pem"),
                "--tls-key",
                &format!("{d}/w1-key.pem"),
            ]),
            &["tls-ca", "tls-cert", "tls-key"],
        )
        .unwrap();
        assert!(f.tls().unwrap().is_some());
        let partial = Flags::parse(&strings(&["--tls-ca", "x.pem"]), &["tls-ca"]).unwrap();
        assert!(partial.tls().unwrap_err().to_string().contains("all three"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_commands_show_the_usage() {
        let err = run(&strings(&["frobnicate"])).unwrap_err().to_string();
        assert!(
            err.contains("unknown command") && err.contains("blockwise worker"),
            "{err}"
        );
    }
}
