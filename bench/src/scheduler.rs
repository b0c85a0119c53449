//! The `--scheduler` setting, resolved to a local executor with a known
//! number of worker threads (reported in every record).

use blockwise::Scheduler;

use crate::BenchError;

/// A scheduler to benchmark on.
#[derive(Clone, Debug)]
pub(crate) struct BenchScheduler {
    /// The name reported in the `scheduler` field: `threads`, `sync` or
    /// `distributed` (a LocalCluster or a running cluster).
    pub(crate) name: &'static str,
    /// Worker threads running tasks (over every worker of a cluster).
    pub(crate) workers: usize,
    /// What `compute_with` is given.
    pub(crate) scheduler: Scheduler,
    /// The LocalCluster started for `--scheduler distributed`, kept alive
    /// (and stopped) with the scheduler setting.
    #[cfg(feature = "distributed")]
    #[allow(dead_code)]
    pub(crate) cluster: Option<std::sync::Arc<blockwise::distributed::LocalCluster>>,
    /// The client of the cluster, for workloads that use the futures API
    /// (`transfer`); `None` on a local scheduler.
    #[cfg(feature = "distributed")]
    #[cfg_attr(
        not(feature = "array"),
        allow(dead_code, reason = "only `transfer` (feature `array`) reads it")
    )]
    pub(crate) client: Option<blockwise::distributed::Client>,
}

impl BenchScheduler {
    /// Parses `threads` (one thread per core), `threads:N`, `sync`,
    /// `distributed` or a cluster address.
    pub(crate) fn parse(setting: &str) -> Result<BenchScheduler, BenchError> {
        let s = setting.trim();
        if s == "distributed" || s.contains("://") {
            return distributed(s);
        }
        match s {
            "threads" | "threaded" => {
                let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
                Ok(BenchScheduler::local(
                    "threads",
                    workers,
                    Scheduler::Threads(Some(workers)),
                ))
            }
            "sync" | "synchronous" => Ok(BenchScheduler::local("sync", 1, Scheduler::Sync)),
            _ => match s.strip_prefix("threads:").map(str::parse::<usize>) {
                Some(Ok(workers)) if workers > 0 => Ok(BenchScheduler::local(
                    "threads",
                    workers,
                    Scheduler::Threads(Some(workers)),
                )),
                _ => Err(BenchError::Usage(format!(
                    "--scheduler {s:?}: expected sync, threads, threads:N (N ≥ 1), distributed or tcp://HOST:PORT"
                ))),
            },
        }
    }
}

impl BenchScheduler {
    fn local(name: &'static str, workers: usize, scheduler: Scheduler) -> BenchScheduler {
        BenchScheduler {
            name,
            workers,
            scheduler,
            #[cfg(feature = "distributed")]
            cluster: None,
            #[cfg(feature = "distributed")]
            client: None,
        }
    }
}

/// Workers of the LocalCluster that `--scheduler distributed` starts: two,
/// one thread each (Dask's anchor runs the same shape).
#[cfg(feature = "distributed")]
const CLUSTER_WORKERS: usize = 2;

/// `distributed` starts a 2-worker LocalCluster of this executable (its
/// workers are copies of blockwise-bench, serving through `blockwise::init()`);
/// an address connects to a running cluster.
#[cfg(feature = "distributed")]
fn distributed(s: &str) -> Result<BenchScheduler, BenchError> {
    use blockwise::distributed::LocalCluster;
    if s == "distributed" {
        let cluster = LocalCluster::new(CLUSTER_WORKERS, 1)
            .map_err(|e| BenchError::Failed(format!("--scheduler distributed: starting a LocalCluster: {e}")))?;
        let client = cluster
            .client()
            .map_err(|e| BenchError::Failed(format!("--scheduler distributed: connecting to the LocalCluster: {e}")))?;
        return Ok(BenchScheduler {
            name: "distributed",
            workers: CLUSTER_WORKERS,
            scheduler: Scheduler::Executor(client.executor()),
            cluster: Some(std::sync::Arc::new(cluster)),
            client: Some(client),
        });
    }
    // A malformed address is a usage error, an unreachable one a failure.
    blockwise::distributed::tcp::host_port(s).map_err(|e| BenchError::Usage(format!("--scheduler {s}: {e}")))?;
    let client = blockwise::distributed::Client::connect(s)
        .map_err(|e| BenchError::Failed(format!("--scheduler {s}: connecting to the cluster: {e}")))?;
    Ok(BenchScheduler {
        name: "distributed",
        workers: 0,
        scheduler: Scheduler::Executor(client.executor()),
        cluster: None,
        client: Some(client),
    })
}

#[cfg(not(feature = "distributed"))]
fn distributed(s: &str) -> Result<BenchScheduler, BenchError> {
    Err(BenchError::Unsupported(format!(
        "--scheduler {s}: this blockwise-bench was built without the `distributed` feature"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_schedulers_and_thread_counts() {
        let s = BenchScheduler::parse("threads:3").unwrap();
        assert_eq!((s.name, s.workers), ("threads", 3));
        assert!(matches!(s.scheduler, Scheduler::Threads(Some(3))));
        let s = BenchScheduler::parse("sync").unwrap();
        assert_eq!((s.name, s.workers), ("sync", 1));
        assert!(BenchScheduler::parse("threads").unwrap().workers >= 1);
        assert!(matches!(BenchScheduler::parse("threads:0"), Err(BenchError::Usage(_))));
        assert!(matches!(BenchScheduler::parse("processes"), Err(BenchError::Usage(_))));
    }

    #[test]
    fn a_bad_cluster_address_is_a_usage_error() {
        assert!(matches!(
            BenchScheduler::parse("tcp://"),
            Err(BenchError::Usage(_) | BenchError::Unsupported(_))
        ));
    }
}
