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

    #[test]
    fn addresses_must_be_tcp_urls() {
        assert_eq!(host_port("tcp://10.0.0.1:8786").unwrap(), "10.0.0.1:8786");
        assert!(host_port("10.0.0.1:8786").is_err());
        assert_eq!(parse_address("tls://h:1").unwrap(), (Scheme::Tls, "h:1"));
        assert!(host_port("tcp://").is_err());
    }
}
