//! # blockwise-distributed
//!
//! Running blockwise graphs on a cluster: a scheduler process, worker
//! processes running the user's own executable, and clients.
//!
//! Its foundation, and the part everything else stands on, is [`scheduler`]: the scheduler as a synchronous state machine
//! — events in, commands out, no sockets — with one function per legal
//! transition, placement by data locality, root-task queuing, work stealing,
//! recovery from dead workers, and an invariant checker. The server, the
//! worker, the client and the wire protocol drive it; they never decide
//! anything it decides.
//!
//! - [`id`]: typed ids ([`TaskId`], [`WorkerId`], [`ClientId`],
//!   [`StimulusId`], [`RunId`]) and the storage only they index.
//! - [`scheduler`]: the state machine, its events, commands and invariants.
//! - [`protocol`]: the messages between clients, the scheduler and workers,
//!   and how they map to the state machine's events and commands.
//! - [`frame`]: length-prefixed frames with size limits checked before any
//!   allocation; bulk data travels beside a message, never re-encoded.
//! - [`tcp`]: framed connections over TCP and TLS (tokio).
//! - [`tls`]: `tls://` with mutual certificates (rustls), and test
//!   certificates.
//! - [`spec`]: a plan's task as the opaque bytes the scheduler forwards and
//!   a worker rebuilds from its registry.
//! - [`layers`]: a graph sent as its layers and expanded on the scheduler
//!   (a generated layer of a million tasks travels as one template).
//! - [`server`]: the scheduler server driving the state machine.
//! - [`worker`]: the worker (the user's own executable in worker mode).
//! - [`store`]: a worker's results, spilled to disk beyond a memory limit.
//! - [`client`]: [`Client`] and [`Future`]s; a client is an executor.
//! - [`cluster`]: [`LocalCluster`], scheduler and worker processes on this
//!   machine.
//!
//! ```text
//!   Client ──Submit(layers | task specs)───────▶ scheduler server ──Compute──▶ worker
//!     ▲  ◀──InMemory / Erred / WhoHas────────────  (state machine)  ◀─Finished── │
//!     └────────────── GetData (results, worker → client directly) ◀────────────── ┘
//!                                                worker ◀── GetData ──▶ worker
//! ```
//!
//! Workers run the user's own executable: [`serve_if_worker`] (or
//! [`init`]) first thing in `main` turns a copy started with
//! `BLOCKWISE_CLUSTER_WORKER=tcp://host:port` into a worker of that
//! scheduler. Every worker and client of a cluster must be the same build
//! (tasks travel as names of registered functions); the scheduler checks it
//! at every handshake and refuses the others with a message naming both
//! builds. The scheduler itself runs no user code (`blockwise scheduler`).
//!
//! Not yet: the dashboard, futures as inputs of later graphs.
//!
//! ```no_run
//! use blockwise_distributed::{LocalCluster, serve_if_worker};
//!
//! fn main() -> blockwise_core::Result<()> {
//!     serve_if_worker(); // a worker process of this program stops here
//!     let cluster = LocalCluster::new(2, 2)?;
//!     let client = cluster.client()?;
//!     // collection.compute_with(Scheduler::Executor(client.executor()))?, or:
//!     // let futures = client.persist(&collection)?;
//!     Ok(())
//! }
//! ```

pub mod client;
pub mod cluster;
pub mod frame;
pub mod id;
pub mod layers;
pub mod protocol;
pub mod scheduler;
pub mod server;
pub mod spec;
pub mod store;
pub mod tcp;
pub mod tls;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub use client::{AsCompleted, Client, ClientOptions, Events, Future, FutureStatus, SubmitOptions};
pub use cluster::LocalCluster;
pub use id::{ClientId, RunId, StimulusId, TaskId, WorkerId};
pub use scheduler::{Comm, Command, Event, Scheduler, SchedulerConfig, SchedulerError, Submission, TaskState};
pub use server::{SchedulerHandle, SchedulerOptions, SchedulerSnapshot};
pub use store::MemoryLimits;
pub use tls::{Tls, TlsFiles};
pub use worker::{WorkerOptions, run_worker, serve_if_worker};

/// Makes cluster addresses work as a scheduler setting: after this,
/// `BLOCKWISE_SCHEDULER=tcp://host:8786` (or `Scheduler::parse("tcp://…")`)
/// computes on that cluster through a [`Client`], one per address, kept for
/// the life of the process (and made anew if its connection was lost).
pub fn install() {
    blockwise_local::set_remote_factory(remote_executor);
}

/// [`install`], then [`serve_if_worker`]: call first thing in `main` of a
/// program that uses a cluster (what `blockwise::init()` should do when
/// the `distributed` feature is on).
pub fn init() {
    serve_if_worker();
    install();
}

fn remote_executor(address: &str) -> blockwise_core::Result<Arc<dyn blockwise_core::Executor>> {
    static CLIENTS: OnceLock<Mutex<HashMap<String, Client>>> = OnceLock::new();
    let clients = CLIENTS.get_or_init(Default::default);
    let mut clients = clients.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = clients.get(address)
        && !c.is_closed()
    {
        return Ok(c.executor());
    }
    let client = Client::connect(address)?;
    clients.insert(address.to_string(), client.clone());
    Ok(client.executor())
}

#[cfg(test)]
mod tests {
    /// The types a server moves between tasks and threads (tokio's
    /// `async_send_sync.rs`).
    #[test]
    fn public_types_are_send_and_sync_where_they_must_be() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<crate::Scheduler>();
        send_sync::<crate::scheduler::Event>();
        send_sync::<crate::scheduler::Command>();
        send_sync::<crate::scheduler::SchedulerError>();
        send_sync::<crate::protocol::Outgoing>();
        send_sync::<crate::frame::FrameError>();
        send::<crate::tcp::Connection>();
        send::<crate::tcp::ConnectionReader>();
        send::<crate::tcp::ConnectionWriter>();
        send_sync::<crate::Client>();
        send_sync::<crate::Future>();
        send::<crate::LocalCluster>();
        send::<crate::SchedulerHandle>();
    }
}
