//! `blockwise-bench`: runs one benchmark workload and prints one JSON object
//! per line on stdout (see `bench/README.md`).
//!
//! ```text
//! cargo run --release -p blockwise-bench -- tasks-tree --scheduler threads --n 100000
//! ```
//!
//! One workload per process, so that `peak_rss_bytes` (the kernel's high-water
//! mark of this process) belongs to that workload alone. Exit codes: 0 on
//! success, 1 when the computation failed or gave a wrong result, 2 for a
//! usage error or a scheduler that does not exist yet.

mod args;
mod measure;
mod record;
mod scheduler;
mod workloads;

use std::io::Write;

use args::Command;

fn main() {
    // The same executable may be started as a worker of a computation.
    blockwise::init();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(match run(&argv) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("blockwise-bench: {e}");
            e.exit_code()
        }
    });
}

fn run(argv: &[String]) -> Result<(), BenchError> {
    let invocation = match args::parse(argv)? {
        Command::Help => {
            print!("{}", args::usage());
            return Ok(());
        }
        Command::List => {
            for w in workloads::all() {
                println!("{:<14} {}", w.name, w.about);
            }
            return Ok(());
        }
        Command::Run(invocation) => invocation,
    };
    let workload = workloads::find(&invocation.workload)?;
    workload.check_options(&invocation.options)?;
    let scheduler = scheduler::BenchScheduler::parse(&invocation.scheduler)?;
    let mut stdout = std::io::stdout().lock();
    for run in 0..invocation.repeat {
        measure::reset_peak_rss();
        let context = workloads::Context {
            workload: workload.name,
            scheduler: &scheduler,
            options: &invocation.options,
            run,
            load_average: measure::load_average(),
        };
        let record = (workload.run)(&context)?;
        writeln!(stdout, "{}", record.to_json())
            .and_then(|()| stdout.flush())
            .map_err(|e| BenchError::Failed(format!("cannot write the result: {e}")))?;
    }
    Ok(())
}

/// Why a benchmark run stopped.
#[derive(Debug)]
pub(crate) enum BenchError {
    /// Bad command line (exit code 2).
    Usage(String),
    /// Asked for something that does not exist yet, such as the distributed
    /// scheduler (exit code 2). No numbers are printed.
    #[cfg_attr(feature = "distributed", allow(dead_code))]
    Unsupported(String),
    /// The computation failed or gave a wrong result (exit code 1).
    Failed(String),
}

impl BenchError {
    fn exit_code(&self) -> i32 {
        match self {
            BenchError::Usage(_) | BenchError::Unsupported(_) => 2,
            BenchError::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "{m}\n(run with --help for usage)"),
            BenchError::Unsupported(m) | BenchError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<blockwise::Error> for BenchError {
    fn from(e: blockwise::Error) -> Self {
        BenchError::Failed(e.to_string())
    }
}
