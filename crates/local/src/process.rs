//! Running a plan in a child process of this same executable.
//!
//! This is how code identity is proven before any cluster exists: the parent
//! encodes a plan (op names, parameters, literal values — never code), starts
//! its own executable with `BLOCKWISE_WORKER=tcp://127.0.0.1:PORT`, and the
//! child, at `blockwise::init()` (or [`serve_if_worker`]), connects back,
//! says which build it is, receives the plan, rebuilds every op from its own
//! registry, runs it on the local engine and sends the encoded results.
//!
//! The handshake refuses a child whose build id differs from the parent's:
//! the same op name could mean different code in another build.
//!
//! ```text
//! child  → parent   Hello { build_id, pid }
//! parent → child    Refuse { reason }  |  Run { plan, threads }
//! child  → parent   Done { values }    |  Failed { error }
//! ```
//!
//! Messages are postcard, each framed by a 4-byte little-endian length.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockwise_core::value::{decode_value, encode_value};
use blockwise_core::{Error, ErrorKind, Executor, Graph, Key, Plan, Result, RunOptions, Value, identity};
use serde::{Deserialize, Serialize};

/// The environment variable that puts a process in worker mode.
pub const WORKER_ENV: &str = "BLOCKWISE_WORKER";

/// The largest message accepted (a larger length prefix is a corrupt or
/// hostile stream, refused before allocating).
pub const MAX_FRAME: usize = 1 << 30;

#[derive(Serialize, Deserialize, Debug)]
enum ToParent {
    Hello { build_id: String, pid: u32 },
    Done { values: Vec<(String, Vec<u8>)> },
    Failed { message: String, key: Option<Key> },
}

#[derive(Serialize, Deserialize, Debug)]
enum ToChild {
    Refuse { reason: String },
    Run { plan: Vec<u8>, threads: u32 },
}

fn write_frame<T: Serialize>(stream: &mut TcpStream, msg: &T) -> Result<()> {
    let bytes = postcard::to_stdvec(msg).map_err(|e| Error::codec(format!("cannot encode a message: {e}")))?;
    if bytes.len() > MAX_FRAME {
        return Err(Error::codec(format!(
            "message of {} bytes exceeds the {MAX_FRAME}-byte limit",
            bytes.len()
        )));
    }
    stream.write_all(&(bytes.len() as u32).to_le_bytes())?;
    stream.write_all(&bytes)?;
    stream.flush()?;
    Ok(())
}

fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream, peer: &str) -> Result<T> {
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .map_err(|e| Error::new(ErrorKind::Remote, format!("connection to {peer} closed: {e}")))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(Error::new(
            ErrorKind::Remote,
            format!("{peer} sent a message of {len} bytes, over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).map_err(|e| {
        Error::new(
            ErrorKind::Remote,
            format!("connection to {peer} closed mid-message: {e}"),
        )
    })?;
    postcard::from_bytes(&buf).map_err(|e| Error::codec(format!("malformed message from {peer}: {e}")))
}

/// The address this process should serve as a worker, if it was started as
/// one (`BLOCKWISE_WORKER=tcp://…` or `--worker tcp://…`).
pub fn worker_address() -> Option<String> {
    if let Ok(addr) = std::env::var(WORKER_ENV)
        && !addr.is_empty()
    {
        return Some(addr);
    }
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == "--worker" {
            return args.next();
        }
        if let Some(v) = a.strip_prefix("--worker=") {
            return Some(v.to_string());
        }
    }
    None
}

/// In worker mode, serves the parent and exits the process; otherwise returns.
/// `blockwise::init()` calls this first thing in `main`.
pub fn serve_if_worker() {
    if let Some(addr) = worker_address() {
        let code = match serve(&addr) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("blockwise worker: {e}");
                1
            }
        };
        std::process::exit(code);
    }
}

/// Connects to `addr`, introduces this build, runs the plan it is given and
/// sends back the results.
pub fn serve(addr: &str) -> Result<()> {
    let host = addr
        .strip_prefix("tcp://")
        .ok_or_else(|| Error::invalid(format!("worker address {addr:?} must start with tcp://")))?;
    let mut stream = TcpStream::connect(host)
        .map_err(|e| Error::new(ErrorKind::Remote, format!("cannot connect to {addr}: {e}")))?;
    stream.set_nodelay(true).ok();
    write_frame(
        &mut stream,
        &ToParent::Hello {
            build_id: identity::build_id().to_string(),
            pid: std::process::id(),
        },
    )?;
    match read_frame::<ToChild>(&mut stream, addr)? {
        ToChild::Refuse { reason } => Err(Error::new(
            ErrorKind::BuildMismatch,
            format!("refused by {addr}: {reason}"),
        )),
        ToChild::Run { plan, threads } => {
            let reply = match run_encoded(&plan, threads as usize) {
                Ok(values) => ToParent::Done { values },
                Err(e) => ToParent::Failed {
                    message: e.to_string(),
                    key: e.failed_key().cloned(),
                },
            };
            write_frame(&mut stream, &reply)
        }
    }
}

fn run_encoded(plan: &[u8], threads: usize) -> Result<Vec<(String, Vec<u8>)>> {
    let plan = Plan::decode(plan)?;
    let values = crate::engine::run(&plan, threads, &[])?;
    values
        .iter()
        .map(|v| encode_value(v).map(|e| (e.codec, e.bytes.to_vec())))
        .collect()
}

/// An executor that runs each computation in a fresh child process started
/// from an executable (by default this one) in worker mode.
#[derive(Clone, Debug)]
pub struct ChildProcess {
    program: PathBuf,
    args: Vec<OsString>,
    threads: usize,
    timeout: Duration,
}

impl ChildProcess {
    /// Runs computations in children of this very executable.
    pub fn current_exe() -> Result<Self> {
        Ok(Self::program(std::env::current_exe()?))
    }

    /// Runs computations in children of `program`, which must call
    /// `blockwise::init()` at the top of `main`.
    pub fn program(program: impl Into<PathBuf>) -> Self {
        ChildProcess {
            program: program.into(),
            args: Vec::new(),
            threads: 1,
            timeout: Duration::from_secs(60),
        }
    }

    /// Extra arguments for the child (e.g. a test filter).
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Worker threads in the child.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// How long to wait for the child to connect and to finish.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn who(&self, child: &Child) -> String {
        format!("worker process {} ({})", child.id(), self.program.display())
    }

    /// Runs an already planned computation in a child.
    pub fn run_plan(&self, plan: &Plan) -> Result<Vec<Value>> {
        // Encode first: an unregistered closure fails here, before any
        // process is started, with the error that names the fix.
        let mut bytes = Vec::new();
        plan.encode(&mut bytes)?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = format!("tcp://{}", listener.local_addr()?);
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env(WORKER_ENV, &addr)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start {}: {e}", self.program.display())))?;
        let stderr = child.stderr.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = s.read_to_string(&mut text);
                text
            })
        });
        let result = self.talk(&listener, &mut child, bytes);
        let status = wait_or_kill(&mut child, self.timeout);
        let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
        result.map_err(|e| {
            let e = e.context(format!("{} exited with {status}", self.who(&child)));
            if stderr.trim().is_empty() {
                e
            } else {
                e.context(format!("its stderr: {}", stderr.trim()))
            }
        })
    }

    fn talk(&self, listener: &TcpListener, child: &mut Child, plan: Vec<u8>) -> Result<Vec<Value>> {
        let who = self.who(child);
        let mut stream = accept_from(listener, child, self.timeout, &who)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_nodelay(true).ok();
        let (build_id, pid) = match read_frame::<ToParent>(&mut stream, &who)? {
            ToParent::Hello { build_id, pid } => (build_id, pid),
            other => {
                return Err(Error::new(
                    ErrorKind::Remote,
                    format!("{who} did not introduce itself: {other:?}"),
                ));
            }
        };
        if let Err(e) = identity::check_peer(&build_id, &format!("worker process {pid}")) {
            let _ = write_frame(&mut stream, &ToChild::Refuse { reason: e.to_string() });
            return Err(e);
        }
        write_frame(
            &mut stream,
            &ToChild::Run {
                plan,
                threads: self.threads as u32,
            },
        )?;
        match read_frame::<ToParent>(&mut stream, &who)? {
            ToParent::Done { values } => values.iter().map(|(codec, bytes)| decode_value(codec, bytes)).collect(),
            ToParent::Failed { message, key } => Err(match key {
                Some(key) => Error::new(ErrorKind::TaskFailed(key), message),
                None => Error::new(ErrorKind::Remote, message),
            }
            .context(format!("reported by {who}"))),
            ToParent::Hello { .. } => Err(Error::new(ErrorKind::Remote, format!("{who} said hello twice"))),
        }
    }
}

fn accept_from(listener: &TcpListener, child: &mut Child, timeout: Duration, who: &str) -> Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait()? {
                    return Err(Error::new(
                        ErrorKind::Remote,
                        format!(
                            "{who} exited ({status}) without connecting: does its main call blockwise::init() first?"
                        ),
                    ));
                }
                if start.elapsed() > timeout {
                    return Err(Error::new(
                        ErrorKind::Remote,
                        format!("{who} did not connect within {timeout:?}"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn wait_or_kill(child: &mut Child, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                return child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            }
        }
    }
}

impl Executor for ChildProcess {
    fn name(&self) -> String {
        format!("process:{}", self.program.display())
    }

    fn execute(&self, graph: &Graph, outputs: &[Key], options: &RunOptions) -> Result<Vec<Value>> {
        let plan = blockwise_core::exec::plan(graph, outputs, options)?;
        self.run_plan(&plan)
    }
}
