//! Worker-to-worker transfer of a large array (issue 6: "at least 1 GB/s on
//! loopback").
//!
//! - `transfer`: on a cluster of at least two workers, two tasks each make
//!   an array of `--mb` megabytes (f64, 10⁶ bytes a megabyte), one per
//!   worker; then one task reads both. Wherever it runs, one of the two
//!   arrays crosses from its worker to the other, peer to peer (the
//!   scheduler only tells where it is). The consumer samples both arrays
//!   (every 4,096th element and the last), so a transfer that garbled or
//!   cut the data fails the run.
//!
//! Timing: `wall_s` is the consumer's submission to its result in the
//! client; `compute_s` is the consumer's own run time as its worker
//! reported it (taking its two inputs out of the store and sampling them);
//! `transfer_s = wall_s − compute_s` is the fetch — the array's elements
//! written to the socket from the sending worker's memory and read straight
//! into the new array's storage on the receiving one (no encode or decode
//! pass since protocol 4), faulting that fresh memory in included (helper
//! threads fault it in ahead of the reads) — plus the scheduling round
//! trips of one tiny task, and `gb_per_s` is `bytes / transfer_s`.
//!
//! Runs only on `--scheduler distributed` (a 2-worker LocalCluster) or a
//! running cluster (`tcp://…`). With `--scheduler distributed` every
//! process starts its own cluster, so run 0 of each process is the first
//! transfer of a fresh cluster (`first_in_process: true` in its record):
//! to see first transfers, run the process several times; later runs
//! receive into memory the same workers freed moments before.

use std::time::{Duration, Instant};

use blockwise::array::ndarray::{ArrayD, IxDyn};
use blockwise::core::Key;
use blockwise::distributed::protocol::ClusterEvent;
use blockwise::prelude::*;

use super::{Context, OptionSpec, Workload};
use crate::BenchError;
use crate::measure;
use crate::record::{Record, seconds};

/// The workloads of this family.
pub(crate) const WORKLOADS: &[Workload] = &[Workload {
    name: "transfer",
    about: "worker-to-worker transfer of a --mb MB f64 array on a cluster; reports GB/s",
    options: &[MB],
    run: transfer,
}];

const MB: OptionSpec = OptionSpec {
    name: "mb",
    default: "1000",
    about: "size of the array moved, megabytes (10^6 bytes)",
};

/// Element `i` of the array made from `seed`.
fn element(seed: u64, i: u64) -> f64 {
    (seed as f64) * 0.5 + i as f64
}

/// An array of `elements` f64, element `i` being [`element`]`(seed, i)`.
#[blockwise::task]
fn filled(seed: u64, elements: u64) -> ArrayD<f64> {
    let data: Vec<f64> = (0..elements).map(|i| element(seed, i)).collect();
    ArrayD::from_shape_vec(IxDyn(&[elements as usize]), data).expect("a 1-d shape of its length")
}

/// Every 4,096th element and the last one, of a 1-d array.
fn sampled(x: &ArrayD<f64>) -> f64 {
    let Some(s) = x.as_slice() else {
        return f64::NAN;
    };
    s.iter().step_by(4096).sum::<f64>() + s.last().copied().unwrap_or(0.0)
}

/// Samples both arrays (one of which was fetched from the other worker).
#[blockwise::task]
fn probe(a: ArrayD<f64>, b: ArrayD<f64>) -> f64 {
    sampled(&a) + sampled(&b) + (a.len() + b.len()) as f64
}

/// What [`probe`] returns for the arrays of `seeds`, computed here.
fn expected(seeds: [u64; 2], elements: u64) -> f64 {
    let mut out = 0.0;
    for seed in seeds {
        let mut i = 0;
        while i < elements {
            out += element(seed, i);
            i += 4096;
        }
        if elements > 0 {
            out += element(seed, elements - 1);
        }
        out += elements as f64;
    }
    out
}

/// Where each of `keys` finished, and in how long (µs), from the events.
fn finished(events: &blockwise::distributed::Events, keys: &[&Key], wait: Duration) -> Vec<Option<(u32, u64)>> {
    let mut out = vec![None; keys.len()];
    let deadline = Instant::now() + wait;
    while out.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(event) = events.recv_timeout(left) else {
            break;
        };
        if let ClusterEvent::TaskFinished {
            key,
            worker,
            duration_us,
            ..
        } = event
            && let Some(i) = keys.iter().position(|k| **k == key)
        {
            out[i] = Some((worker.get(), duration_us));
        }
    }
    out
}

fn transfer(ctx: &Context<'_>) -> Result<Record, BenchError> {
    let mb = ctx.options.usize("mb", 1000)?;
    if mb == 0 {
        return Err(BenchError::Usage("--mb 0: expected at least 1".into()));
    }
    let Some(client) = ctx.scheduler.client.as_ref() else {
        return Err(BenchError::Usage(format!(
            "{} moves data between workers: run it with --scheduler distributed or tcp://HOST:PORT",
            ctx.workload
        )));
    };
    let failed = |what: &str, e: blockwise::Error| BenchError::Failed(format!("{}: {what}: {e}", ctx.workload));
    let bytes = (mb as u64) * 1_000_000;
    let elements = bytes / 8;
    let seeds = [2 * ctx.run as u64 + 1, 2 * ctx.run as u64 + 2];

    let events = client.events().map_err(|e| failed("subscribing to events", e))?;
    let a = delayed(filled).call(seeds[0], elements);
    let b = delayed(filled).call(seeds[1], elements);
    // Two independent tasks on two idle one-thread workers: one each.
    let made = client
        .map([&a, &b], |x| x.clone())
        .map_err(|e| failed("submitting the arrays", e))?;
    client
        .wait(&made, Some(Duration::from_secs(600)))
        .map_err(|e| failed("making the arrays", e))?;
    let (ka, kb) = (a.key().clone(), b.key().clone());
    let where_made = finished(&events, &[&ka, &kb], Duration::from_secs(60));
    let (Some((wa, _)), Some((wb, _))) = (where_made[0], where_made[1]) else {
        return Err(BenchError::Failed(format!(
            "{}: no report of where the arrays were made",
            ctx.workload
        )));
    };
    if wa == wb {
        return Err(BenchError::Failed(format!(
            "{}: both arrays were made on worker {wa}: nothing would cross between workers \
             (is the cluster two workers of one thread each?)",
            ctx.workload
        )));
    }

    let c = delayed(probe).call(&a, &b);
    let rss_before = measure::rss_bytes();
    let t0 = Instant::now();
    let future = client.submit(&c).map_err(|e| failed("submitting the consumer", e))?;
    let got: f64 = future
        .result_timeout(Duration::from_secs(600))
        .map_err(|e| failed("running the consumer", e))?;
    let wall = t0.elapsed();
    let kc = c.key().clone();
    let Some((wc, compute_us)) = finished(&events, &[&kc], Duration::from_secs(60))[0] else {
        return Err(BenchError::Failed(format!(
            "{}: no report of the consumer's run",
            ctx.workload
        )));
    };
    drop(future);
    drop(made);

    let want = expected(seeds, elements);
    if got != want {
        return Err(BenchError::Failed(format!(
            "{}: the consumer sampled {got}, expected {want}: the array changed on its way",
            ctx.workload
        )));
    }
    let compute = Duration::from_micros(compute_us);
    let moved = wall.saturating_sub(compute);
    let gb_per_s = if moved.is_zero() {
        None
    } else {
        Some(bytes as f64 / 1e9 / moved.as_secs_f64())
    };
    let mut r = ctx.record();
    r.set("mb", mb)
        .set("bytes", bytes)
        .set("from_worker", if wc == wa { wb } else { wa })
        .set("to_worker", wc)
        .set("first_in_process", ctx.run == 0)
        .set("wall_s", seconds(wall))
        .set("compute_s", seconds(compute))
        .set("transfer_s", seconds(moved))
        .set("gb_per_s", gb_per_s)
        .set("peak_rss_bytes", measure::peak_rss_bytes())
        .set("rss_before_bytes", rss_before)
        .set("result", got);
    Ok(r)
}
