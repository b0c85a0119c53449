//! Framed messages over TCP (`tcp://host:port`) and TLS (`tls://host:port`),
//! on tokio.
//!
//! Why tokio and not a thread per connection: a scheduler holds a
//! connection to every worker and client at once (hundreds), a worker
//! serves its peers' fetches while its threads compute, the dashboard is
//! axum (tokio), and TLS comes from `tokio-rustls`. The scheduler's state
//! machine stays synchronous: one task owns it and receives events from the
//! connection tasks through a channel, so async code only carries messages.
//!
//! A [`Connection`] reads and writes whole messages ([`crate::frame`]);
//! [`Connection::into_split`] gives a reader and a writer for two tasks.
//! Nagle is off: messages are small and latency-bound, and each message is
//! flushed whole. The scheme of an address picks the transport: `tcp://`
//! plain, `tls://` with mutual certificates ([`crate::tls`]). A listener
//! hands out an [`Incoming`] at once and the TLS handshake happens in
//! [`Incoming::establish`], on the caller's task, so a slow or hostile
//! handshake never holds up the accept loop.

use std::io;
use std::sync::Mutex;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use crate::frame::{Batch, FrameError, FrameLimits, MessageHead, RawMessage, asynchronous};
use crate::tls::Tls;

/// The transport of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `tcp://`: plain TCP.
    Tcp,
    /// `tls://`: TLS over TCP, mutual certificates.
    Tls,
}

/// The scheme and `host:port` of a `tcp://host:port` or `tls://host:port`
/// address.
pub fn parse_address(address: &str) -> Result<(Scheme, &str), FrameError> {
    let (scheme, rest) = if let Some(rest) = address.strip_prefix("tcp://") {
        (Scheme::Tcp, rest)
    } else if let Some(rest) = address.strip_prefix("tls://") {
        (Scheme::Tls, rest)
    } else {
        (Scheme::Tcp, "")
    };
    if rest.is_empty() {
        return Err(FrameError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("address {address:?} must look like tcp://host:port or tls://host:port"),
        )));
    }
    Ok((scheme, rest))
}

/// The `host:port` of a `tcp://` or `tls://` address.
pub fn host_port(address: &str) -> Result<&str, FrameError> {
    parse_address(address).map(|(_, rest)| rest)
}

fn no_tls(address: &str) -> FrameError {
    FrameError::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{address} is a TLS address, but no certificates were given (the CA, certificate and key: \
             `--tls-ca/--tls-cert/--tls-key`, or TlsFiles in the options)"
        ),
    ))
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection carrying framed messages.
pub struct Connection {
    reader: ConnectionReader,
    writer: ConnectionWriter,
}

/// The receiving half of a [`Connection`].
pub struct ConnectionReader {
    inner: BufReader<BoxRead>,
    limits: FrameLimits,
    peer: String,
}

/// The sending half of a [`Connection`].
pub struct ConnectionWriter {
    inner: BufWriter<BoxWrite>,
    limits: FrameLimits,
}

fn peer_of(stream: &TcpStream, scheme: Scheme) -> String {
    let prefix = match scheme {
        Scheme::Tcp => "tcp",
        Scheme::Tls => "tls",
    };
    stream
        .peer_addr()
        .map(|a| format!("{prefix}://{a}"))
        .unwrap_or_else(|_| format!("{prefix}://?"))
}

impl Connection {
    /// Connects to `tcp://host:port`.
    pub async fn connect(address: &str, limits: FrameLimits) -> Result<Connection, FrameError> {
        Connection::connect_with(address, limits, None).await
    }

    /// Connects to `tcp://host:port`, or to `tls://host:port` with `tls`
    /// (verifying the peer against the CA and presenting our certificate).
    pub async fn connect_with(address: &str, limits: FrameLimits, tls: Option<&Tls>) -> Result<Connection, FrameError> {
        let (scheme, host_port) = parse_address(address)?;
        let stream = TcpStream::connect(host_port).await?;
        stream.set_nodelay(true)?;
        let peer = peer_of(&stream, scheme);
        match scheme {
            Scheme::Tcp => {
                let (read, write) = stream.into_split();
                Ok(Connection::from_halves(Box::new(read), Box::new(write), limits, peer))
            }
            Scheme::Tls => {
                let tls = tls.ok_or_else(|| no_tls(address))?;
                let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
                    FrameError::Io(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{address}: {host:?} is not a server name: {e}"),
                    ))
                })?;
                let stream = tokio_rustls::TlsConnector::from(tls.client.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| {
                        FrameError::Io(io::Error::new(
                            e.kind(),
                            format!("TLS handshake with {address} failed: {e}"),
                        ))
                    })?;
                let (read, write) = tokio::io::split(stream);
                Ok(Connection::from_halves(Box::new(read), Box::new(write), limits, peer))
            }
        }
    }

    /// Wraps an accepted or connected plain TCP stream.
    pub fn from_stream(stream: TcpStream, limits: FrameLimits) -> Result<Connection, FrameError> {
        stream.set_nodelay(true)?;
        let peer = peer_of(&stream, Scheme::Tcp);
        let (read, write) = stream.into_split();
        Ok(Connection::from_halves(Box::new(read), Box::new(write), limits, peer))
    }

    fn from_halves(read: BoxRead, write: BoxWrite, limits: FrameLimits, peer: String) -> Connection {
        Connection {
            reader: ConnectionReader {
                inner: BufReader::with_capacity(64 << 10, read),
                limits,
                peer,
            },
            writer: ConnectionWriter {
                inner: BufWriter::with_capacity(64 << 10, write),
                limits,
            },
        }
    }

    /// The peer's address.
    pub fn peer(&self) -> &str {
        &self.reader.peer
    }

    /// Sends a message without payloads.
    pub async fn send<T: Serialize + ?Sized>(&mut self, message: &T) -> Result<(), FrameError> {
        self.writer.send(message, &[]).await
    }

    /// Sends a message with payloads.
    pub async fn send_with<T: Serialize + ?Sized>(
        &mut self,
        message: &T,
        payloads: &[&[u8]],
    ) -> Result<(), FrameError> {
        self.writer.send(message, payloads).await
    }

    /// Receives the next message; `Ok(None)` when the peer closed the
    /// connection between messages.
    pub async fn recv(&mut self) -> Result<Option<RawMessage>, FrameError> {
        self.reader.recv().await
    }

    /// Receives the next message up to its payloads; read them with
    /// [`Connection::read_payload`]. `Ok(None)` when the peer closed the
    /// connection between messages.
    pub async fn recv_head(&mut self) -> Result<Option<MessageHead>, FrameError> {
        self.reader.recv_head().await
    }

    /// Reads the next payload of the message whose head was received into
    /// `buffer`, whose length must be that payload's.
    pub async fn read_payload(&mut self, buffer: &mut [u8]) -> Result<(), FrameError> {
        self.reader.read_payload(buffer).await
    }

    /// Reads the next payload of the message whose head was received into
    /// `buffer` — as [`Connection::read_payload`] — on the calling
    /// thread, which must be a blocking one (`spawn_blocking`, never a
    /// thread of `runtime`), while helper threads fault the pages of
    /// `buffer` in ahead of the reads: for a large payload read into fresh
    /// memory, which the reads would otherwise fault in one 4 KiB page at a
    /// time on the reader's core (on the 2-vCPU benchmark machine that is
    /// more time than the copy itself). The reads stop with an error when
    /// `abandoned` resolves (its sender is dropped: whoever waited for the
    /// payload is gone); a stream cut short is
    /// [`FrameError::Truncated`], as for [`Connection::read_payload`].
    pub fn read_large_payload(
        &mut self,
        runtime: &tokio::runtime::Handle,
        buffer: &mut [u8],
        abandoned: &mut tokio::sync::oneshot::Receiver<std::convert::Infallible>,
    ) -> Result<(), FrameError> {
        fill_faulted_ahead(buffer, FAULT_AHEAD_CHUNK, fault_ahead_helpers(), |chunk| {
            runtime.block_on(async {
                tokio::select! {
                    read = self.reader.read_payload(chunk) => read,
                    _ = &mut *abandoned => Err(FrameError::Io(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "the read of a payload was abandoned",
                    ))),
                }
            })
        })
    }

    /// Splits into a reader and a writer.
    pub fn into_split(self) -> (ConnectionReader, ConnectionWriter) {
        (self.reader, self.writer)
    }
}

impl ConnectionReader {
    /// Receives the next message; `Ok(None)` when the peer closed the
    /// connection between messages.
    pub async fn recv(&mut self) -> Result<Option<RawMessage>, FrameError> {
        asynchronous::read_message(&mut self.inner, &self.limits).await
    }

    /// Receives the next message up to its payloads (see
    /// [`MessageHead`]); `Ok(None)` when the peer closed the connection
    /// between messages.
    pub async fn recv_head(&mut self) -> Result<Option<MessageHead>, FrameError> {
        asynchronous::read_head(&mut self.inner, &self.limits).await
    }

    /// Reads the next payload of the message whose head was received into
    /// `buffer`, whose length must be that payload's. A large buffer is
    /// read into straight from the socket (the read buffer holds only what
    /// arrived with the head).
    pub async fn read_payload(&mut self, buffer: &mut [u8]) -> Result<(), FrameError> {
        use tokio::io::AsyncReadExt;
        self.inner.read_exact(buffer).await?;
        Ok(())
    }

    /// The peer's address.
    pub fn peer(&self) -> &str {
        &self.peer
    }
}

impl ConnectionWriter {
    /// Sends a message with payloads (and flushes it).
    pub async fn send<T: Serialize + ?Sized>(&mut self, message: &T, payloads: &[&[u8]]) -> Result<(), FrameError> {
        asynchronous::write_message(&mut self.inner, message, payloads, &self.limits).await
    }

    /// Writes a message into the buffer without flushing: call
    /// [`ConnectionWriter::flush`] after a batch.
    pub async fn feed<T: Serialize + ?Sized>(&mut self, message: &T, payloads: &[&[u8]]) -> Result<(), FrameError> {
        asynchronous::feed_message(&mut self.inner, message, payloads, &self.limits).await
    }

    /// Writes a message whose control part is already encoded (a
    /// [`crate::frame::Batch`]) into the buffer without flushing.
    pub async fn feed_encoded(&mut self, control: &[u8], payloads: &[&[u8]]) -> Result<(), FrameError> {
        asynchronous::feed_encoded(&mut self.inner, control, payloads, &self.limits).await
    }

    /// Adds `message` to `batch`; if that would take the batch over the
    /// limit of a control part, the batch is first written out as one
    /// frame (not flushed) and `message` starts the next one.
    pub async fn batch<T: Serialize + ?Sized>(&mut self, batch: &mut Batch, message: &T) -> Result<(), FrameError> {
        let (len, count) = (batch.encoded_len(), batch.len());
        batch.push(message)?;
        // 10 bytes for the count in front.
        if count > 0 && batch.encoded_len() + 10 > self.limits.max_control as usize {
            batch.truncate(len, count);
            self.feed_batch(batch).await?;
            batch.push(message)?;
        }
        Ok(())
    }

    /// Writes `batch` as one frame, without flushing (nothing if it is
    /// empty); the batch is empty afterwards.
    pub async fn feed_batch(&mut self, batch: &mut Batch) -> Result<(), FrameError> {
        if batch.is_empty() {
            return Ok(());
        }
        let control = batch.take_control();
        self.feed_encoded(&control, &[]).await
    }

    /// Sends everything fed so far.
    pub async fn flush(&mut self) -> Result<(), FrameError> {
        use tokio::io::AsyncWriteExt;
        self.inner.flush().await?;
        Ok(())
    }
}

/// Bytes [`Connection::read_large_payload`] faults in and reads at a time.
const FAULT_AHEAD_CHUNK: usize = 4 << 20;

/// Threads [`Connection::read_large_payload`] faults memory in with: one
/// per core beside the reader's, at most two (one thread faults 4 KiB
/// pages in about as fast as a loopback socket fills them; the sender
/// needs a core too).
fn fault_ahead_helpers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).clamp(1, 2))
}

/// Fills `buffer` with `read`, called on consecutive chunks of at most
/// `chunk` bytes in order, while `helpers` threads write to every page of
/// the chunks ahead of the reader, so that the fresh memory of a large
/// buffer is faulted in on other cores while the reader copies into the
/// pages already there. They never share a chunk: the buffer is split
/// (`split_at_mut`), a helper takes the next chunk from the front of what
/// nobody has taken yet and hands it to the reader through a channel once
/// its pages are in; a reader that catches up takes the next chunk itself
/// (its reads fault it in, as without helpers). The helpers only write
/// zeros, to memory the reader overwrites. On the first error of `read`
/// the helpers stop after their current chunk and the error is returned.
fn fill_faulted_ahead<E>(
    buffer: &mut [u8],
    chunk: usize,
    helpers: usize,
    mut read: impl FnMut(&mut [u8]) -> Result<(), E>,
) -> Result<(), E> {
    /// Takes the next chunk of at most `chunk` bytes, and its offset, from
    /// the front of what is left of a buffer of `total` bytes (`None` when
    /// nothing is) — only if it starts at `at`, when that is given.
    fn take_front<'a>(
        left: &Mutex<&'a mut [u8]>,
        total: usize,
        chunk: usize,
        at: Option<usize>,
    ) -> Option<(usize, &'a mut [u8])> {
        let mut left = left.lock().expect("the buffer's lock is never held across a panic");
        let offset = total - left.len();
        if left.is_empty() || at.is_some_and(|at| at != offset) {
            return None;
        }
        let rest = std::mem::take(&mut *left);
        let (front, rest) = rest.split_at_mut(chunk.min(rest.len()));
        *left = rest;
        Some((offset, front))
    }

    let chunk = chunk.max(1);
    let total = buffer.len();
    let left = Mutex::new(buffer);
    let (faulted, ready) = std::sync::mpsc::channel::<(usize, &mut [u8])>();
    std::thread::scope(|scope| {
        // Dropped when the reader returns, which stops the helpers.
        let ready = ready;
        let left = &left;
        for _ in 0..helpers {
            let faulted = faulted.clone();
            let helper = std::thread::Builder::new()
                .name("blockwise-fault-ahead".into())
                .spawn_scoped(scope, move || {
                    while let Some((at, next)) = take_front(left, total, chunk, None) {
                        // One write per 4 KiB (the smallest page size):
                        // each faults in its page. A zero, overwritten by
                        // the read.
                        for page in next.chunks_mut(4096) {
                            page[0] = 0;
                        }
                        std::hint::black_box(&mut *next);
                        if faulted.send((at, next)).is_err() {
                            // The reader stopped.
                            return;
                        }
                    }
                });
            if let Err(e) = helper {
                // Fewer helpers (or none: the reader takes every chunk).
                tracing::debug!("no thread to fault a buffer in ahead of its reads: {e}");
                break;
            }
        }
        drop(faulted);
        // Chunks a helper finished before the one the reader waits for.
        let mut early = std::collections::BTreeMap::new();
        let mut done = 0;
        while done < total {
            // The next chunk is a helper's (faulted early, or on its way)
            // unless nobody has taken it yet.
            let next = match early.remove(&done) {
                Some(next) => next,
                None => match take_front(left, total, chunk, Some(done)) {
                    Some((_, next)) => next,
                    None => loop {
                        let (at, next) = ready
                            .recv()
                            .expect("the helpers send every chunk they take before they end");
                        if at == done {
                            break next;
                        }
                        early.insert(at, next);
                    },
                },
            };
            done += next.len();
            read(next)?;
        }
        Ok(())
    })
}

/// A listening socket that yields connections.
pub struct Listener {
    inner: TcpListener,
    limits: FrameLimits,
    tls: Option<Tls>,
}

/// An accepted socket, before its (TLS) handshake.
pub struct Incoming {
    stream: TcpStream,
    limits: FrameLimits,
    tls: Option<Tls>,
}

impl Listener {
    /// Listens on `tcp://host:port` (port 0: any free port).
    pub async fn bind(address: &str, limits: FrameLimits) -> Result<Listener, FrameError> {
        Listener::bind_with(address, limits, None).await
    }

    /// Listens on `tcp://host:port`, or on `tls://host:port` with `tls`
    /// (every peer must present a certificate of the CA).
    pub async fn bind_with(address: &str, limits: FrameLimits, tls: Option<Tls>) -> Result<Listener, FrameError> {
        let (scheme, host_port) = parse_address(address)?;
        let tls = match scheme {
            Scheme::Tcp => None,
            Scheme::Tls => Some(tls.ok_or_else(|| no_tls(address))?),
        };
        let inner = TcpListener::bind(host_port).await?;
        Ok(Listener { inner, limits, tls })
    }

    /// The address peers connect to, `tcp://ip:port` or `tls://ip:port`.
    pub fn address(&self) -> Result<String, FrameError> {
        let scheme = if self.tls.is_some() { "tls" } else { "tcp" };
        Ok(format!("{scheme}://{}", self.inner.local_addr()?))
    }

    /// The next incoming socket; [`Incoming::establish`] makes it a
    /// connection.
    pub async fn accept(&self) -> Result<Incoming, FrameError> {
        let (stream, _) = self.inner.accept().await?;
        Ok(Incoming {
            stream,
            limits: self.limits,
            tls: self.tls.clone(),
        })
    }
}

impl Incoming {
    /// The peer's address.
    pub fn peer(&self) -> String {
        peer_of(&self.stream, if self.tls.is_some() { Scheme::Tls } else { Scheme::Tcp })
    }

    /// The connection, after the TLS handshake (if any): a peer without a
    /// valid certificate is refused here, with an error naming it.
    pub async fn establish(self) -> Result<Connection, FrameError> {
        let Some(tls) = self.tls else {
            return Connection::from_stream(self.stream, self.limits);
        };
        self.stream.set_nodelay(true)?;
        let peer = peer_of(&self.stream, Scheme::Tls);
        let stream = tokio_rustls::TlsAcceptor::from(tls.server.clone())
            .accept(self.stream)
            .await
            .map_err(|e| {
                FrameError::Io(io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {peer} failed: {e}"),
                ))
            })?;
        let (read, write) = tokio::io::split(stream);
        Ok(Connection::from_halves(
            Box::new(read),
            Box::new(write),
            self.limits,
            peer,
        ))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Echoes every message back; a connection that sends garbage is
    /// dropped, and the others are served on.
    async fn echo_server(listener: Listener) {
        loop {
            let Ok(incoming) = listener.accept().await else {
                return;
            };
            let Ok(mut conn) = incoming.establish().await else {
                continue;
            };
            tokio::spawn(async move {
                loop {
                    match conn.recv().await {
                        Ok(Some(raw)) => {
                            let payloads: Vec<&[u8]> = raw.payloads.iter().map(|p| p.as_slice()).collect();
                            let message: Vec<u8> = raw.decode().expect("tests send byte strings");
                            if conn.send_with(&message, &payloads).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) | Err(_) => return,
                    }
                }
            });
        }
    }

    #[test]
    fn a_malformed_connection_is_closed_and_the_others_are_served() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let limits = FrameLimits {
                max_control: 1 << 20,
                ..FrameLimits::default()
            };
            let listener = Listener::bind("tcp://127.0.0.1:0", limits).await.unwrap();
            let address = listener.address().unwrap();
            tokio::spawn(echo_server(listener));

            let mut good = Connection::connect(&address, limits).await.unwrap();
            let mut bad = TcpStream::connect(host_port(&address).unwrap()).await.unwrap();
            // A header announcing a 4 GiB control part.
            bad.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
            bad.write_all(&0u32.to_le_bytes()).await.unwrap();
            let mut rest = Vec::new();
            let closed = bad.read_to_end(&mut rest).await;
            assert!(
                closed.is_err() || rest.is_empty(),
                "the bad connection is closed, unanswered"
            );

            let big = vec![7u8; 3 << 20];
            good.send_with(&b"hello".to_vec(), &[&big, b"tail"]).await.unwrap();
            let back = good.recv().await.unwrap().expect("an answer");
            assert_eq!(back.decode::<Vec<u8>>().unwrap(), b"hello");
            assert_eq!(back.payloads.len(), 2);
            assert!(back.payloads[0] == big);
            assert_eq!(back.payloads[1], b"tail");
        });
    }

    /// `fill_faulted_ahead` over a buffer of `len` bytes in chunks of
    /// `chunk`: the reads cover it in order, each exactly once; `slow`
    /// reads make the helper run ahead, fast ones let the reader catch up.
    fn fill_and_check(len: usize, chunk: usize, helpers: usize, slow: bool) {
        let source: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut buffer = vec![0xAAu8; len];
        let mut at = 0;
        let mut reads = 0;
        fill_faulted_ahead(&mut buffer, chunk, helpers, |part| {
            assert!(
                !part.is_empty() && part.len() <= chunk.max(1),
                "a chunk of {} bytes",
                part.len()
            );
            part.copy_from_slice(&source[at..at + part.len()]);
            at += part.len();
            reads += 1;
            if slow {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok::<(), String>(())
        })
        .unwrap();
        assert_eq!(at, len);
        assert_eq!(reads, len.div_ceil(chunk.max(1)));
        assert!(
            buffer == source,
            "{len} bytes in chunks of {chunk}: the buffer holds what was read"
        );
    }

    #[test]
    fn a_buffer_faulted_ahead_is_read_whole_in_order() {
        for (len, chunk) in [
            (0, 16),
            (1, 16),
            (15, 16),
            (16, 16),
            (17, 16),
            (1 << 20, 4096),
            (3 << 20, 100_000),
            (5, 0),
        ] {
            for helpers in [0, 1, 2, 3] {
                fill_and_check(len, chunk, helpers, false);
            }
        }
        fill_and_check(200 * 4096 + 7, 4096, 2, true);
    }

    #[test]
    fn a_failed_read_stops_filling_a_buffer_faulted_ahead() {
        let mut buffer = vec![0u8; 64 << 20];
        let mut reads = 0;
        let got = fill_faulted_ahead(&mut buffer, 1 << 20, 2, |part| {
            reads += 1;
            if reads == 3 {
                return Err(format!("read {reads} failed"));
            }
            part.fill(1);
            Ok(())
        });
        assert_eq!(got, Err("read 3 failed".to_string()));
        assert_eq!(reads, 3, "no read after the failed one");
        assert!(buffer[..2 << 20].iter().all(|&b| b == 1));
    }

    /// A runtime of one thread, like a worker's, and a connection pair on
    /// it: what the peer sends arrives at the returned connection.
    fn connected_pair(runtime: &tokio::runtime::Runtime) -> (Connection, TcpStream) {
        runtime.block_on(async {
            let listener = Listener::bind("tcp://127.0.0.1:0", FrameLimits::default())
                .await
                .unwrap();
            let address = listener.address().unwrap();
            let peer = TcpStream::connect(host_port(&address).unwrap()).await.unwrap();
            let ours = listener.accept().await.unwrap().establish().await.unwrap();
            (ours, peer)
        })
    }

    /// Receives one message with a single payload of `len` bytes from
    /// `connection` through `read_large_payload` on a blocking thread.
    async fn receive_large(
        mut connection: Connection,
        abandoned: tokio::sync::oneshot::Receiver<std::convert::Infallible>,
    ) -> Result<Vec<u8>, FrameError> {
        let head = connection.recv_head().await?.expect("a message");
        let len = usize::try_from(head.payload_lengths[0]).unwrap();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut abandoned = abandoned;
            let mut buffer = vec![0u8; len];
            connection
                .read_large_payload(&runtime, &mut buffer, &mut abandoned)
                .map(|()| buffer)
        })
        .await
        .unwrap()
    }

    #[test]
    fn a_large_payload_is_read_on_a_blocking_thread_of_a_one_thread_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (ours, mut peer) = connected_pair(&runtime);
        let payload: Vec<u8> = (0..(9 << 20) + 123).map(|i: usize| (i % 253) as u8).collect();
        let mut message = Vec::new();
        crate::frame::write_message(&mut message, &b"big".to_vec(), &[&payload], &FrameLimits::default()).unwrap();
        let (_keep, abandoned) = tokio::sync::oneshot::channel();
        let got = runtime.block_on(async {
            let sending = tokio::spawn(async move {
                peer.write_all(&message).await.unwrap();
                peer
            });
            let got = receive_large(ours, abandoned).await.unwrap();
            drop(sending.await.unwrap());
            got
        });
        assert!(got == payload, "the payload arrives byte for byte");
    }

    #[test]
    fn a_large_payload_cut_short_or_abandoned_is_an_error() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let payload = vec![3u8; 6 << 20];
        let mut message = Vec::new();
        crate::frame::write_message(&mut message, &b"big".to_vec(), &[&payload], &FrameLimits::default()).unwrap();
        // Cut inside the payload, then closed.
        let (ours, mut peer) = connected_pair(&runtime);
        let (_keep, abandoned) = tokio::sync::oneshot::channel();
        let cut = message[..message.len() - 1000].to_vec();
        let err = runtime.block_on(async {
            let writing = tokio::spawn(async move {
                peer.write_all(&cut).await.unwrap();
                // Dropped: closed.
            });
            let err = receive_large(ours, abandoned).await.unwrap_err();
            writing.await.unwrap();
            err
        });
        assert!(err.to_string().contains("closed in the middle of a message"), "{err}");
        // Stalled inside the payload (the peer stays connected): abandoning
        // the read ends it.
        let (ours, mut peer) = connected_pair(&runtime);
        let (waiting, abandoned) = tokio::sync::oneshot::channel();
        let stalled = message[..message.len() / 2].to_vec();
        let err = runtime.block_on(async {
            let (close, closing) = tokio::sync::oneshot::channel::<()>();
            let writing = tokio::spawn(async move {
                peer.write_all(&stalled).await.unwrap();
                // Connected, silent, until the test ends.
                let _ = closing.await;
            });
            let reading = tokio::spawn(receive_large(ours, abandoned));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            drop(waiting);
            // A hang guard, not a timing assertion.
            let got = tokio::time::timeout(std::time::Duration::from_secs(120), reading)
                .await
                .expect("the abandoned read ends")
                .unwrap();
            drop(close);
            writing.await.unwrap();
            got.unwrap_err()
        });
        assert!(err.to_string().contains("abandoned"), "{err}");
    }

    #[test]
    fn addresses_must_be_tcp_urls() {
        assert_eq!(host_port("tcp://10.0.0.1:8786").unwrap(), "10.0.0.1:8786");
        assert!(host_port("10.0.0.1:8786").is_err());
        assert_eq!(parse_address("tls://h:1").unwrap(), (Scheme::Tls, "h:1"));
        assert!(host_port("tcp://").is_err());
    }
}
