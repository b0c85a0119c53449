//! Length-prefixed frames: how a message crosses a byte stream.
//!
//! A message is one *control* part (a postcard-encoded protocol message)
//! and any number of *payloads* (bulk data: an array chunk, an Arrow IPC
//! buffer) that travel beside it as raw bytes, never re-encoded:
//!
//! ```text
//! u32 LE   control length
//! u32 LE   number of payloads
//! u64 LE   length of each payload      (× number of payloads)
//! …        control bytes
//! …        payload bytes, one after the other
//! ```
//!
//! Every length is checked against [`FrameLimits`] *before* anything is
//! allocated: a corrupt or hostile peer gets its connection closed with a
//! [`FrameError::TooLarge`] and costs no memory. A stream that ends between
//! messages is a clean close (`Ok(None)`); one that ends inside a message is
//! [`FrameError::Truncated`].
//!
//! Payloads are read straight into buffers of their exact size, so a 1 GB
//! chunk is read once, with no copy through an intermediate buffer.
//! A reader that knows better where a payload goes (a received array's own
//! storage) reads the [`MessageHead`] first and then each payload into a
//! buffer of its choosing.

use std::fmt;
use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bounds on what a peer may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest control part, bytes.
    pub max_control: u32,
    /// Most payloads in one message.
    pub max_payloads: u32,
    /// Largest single payload, bytes.
    pub max_payload: u64,
    /// Largest message (control plus payloads), bytes.
    pub max_message: u64,
}

impl Default for FrameLimits {
    /// 64 MiB of control (a submission of a million tasks fits), 4096
    /// payloads, 16 GiB per payload and per message.
    fn default() -> Self {
        FrameLimits {
            max_control: 64 << 20,
            max_payloads: 4096,
            max_payload: 16 << 30,
            max_message: 16 << 30,
        }
    }
}

/// Why a message could not be read or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The transport failed.
    Io(io::Error),
    /// The stream ended inside a message.
    Truncated,
    /// A length is over its limit (nothing was allocated for it).
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The control part is not a valid message.
    Decode(String),
    /// A message could not be encoded.
    Encode(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "connection failed: {e}"),
            FrameError::Truncated => f.write_str("connection closed in the middle of a message"),
            FrameError::TooLarge { what, len, limit } => {
                write!(f, "{what} of {len} bytes is over the limit of {limit} bytes")
            }
            FrameError::Decode(e) => write!(f, "malformed message: {e}"),
            FrameError::Encode(e) => write!(f, "cannot encode a message: {e}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    }
}

impl From<FrameError> for blockwise_core::Error {
    fn from(e: FrameError) -> Self {
        use blockwise_core::ErrorKind;
        let kind = match &e {
            FrameError::Io(_) | FrameError::Truncated => ErrorKind::Remote,
            FrameError::TooLarge { .. } | FrameError::Decode(_) | FrameError::Encode(_) => ErrorKind::Codec,
        };
        blockwise_core::Error::new(kind, e.to_string())
    }
}

/// A message as read: the control bytes and the payloads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawMessage {
    /// The encoded control part.
    pub control: Vec<u8>,
    /// The payloads, in order.
    pub payloads: Vec<Vec<u8>>,
}

impl RawMessage {
    /// Decodes the control part as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, FrameError> {
        postcard::from_bytes(&self.control).map_err(|e| FrameError::Decode(e.to_string()))
    }
}

/// A message read up to its payloads: the control bytes and the length of
/// each payload, checked against the limits. The reader then reads each
/// payload, in order, into a buffer of its choosing (a received array's
/// own storage, say) — and must read them all before the next message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageHead {
    /// The encoded control part.
    pub control: Vec<u8>,
    /// The length of each payload that follows, in order.
    pub payload_lengths: Vec<u64>,
}

impl MessageHead {
    /// Decodes the control part as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, FrameError> {
        postcard::from_bytes(&self.control).map_err(|e| FrameError::Decode(e.to_string()))
    }
}

/// Encodes `message` as a control part.
pub fn encode<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>, FrameError> {
    postcard::to_stdvec(message).map_err(|e| FrameError::Encode(e.to_string()))
}

/// The bytes before the control part, after checking the message against
/// `limits` (a message we could not receive ourselves is not sent).
pub fn header(control_len: usize, payloads: &[&[u8]], limits: &FrameLimits) -> Result<Vec<u8>, FrameError> {
    let control_len = u32::try_from(control_len)
        .ok()
        .filter(|&n| n <= limits.max_control)
        .ok_or(FrameError::TooLarge {
            what: "control part",
            len: control_len as u64,
            limit: u64::from(limits.max_control),
        })?;
    check(payloads.len() as u64, u64::from(limits.max_payloads), "payload count")?;
    let mut total = u64::from(control_len);
    let mut out = Vec::with_capacity(8 + 8 * payloads.len());
    out.extend_from_slice(&control_len.to_le_bytes());
    out.extend_from_slice(&(payloads.len() as u32).to_le_bytes());
    for p in payloads {
        let len = p.len() as u64;
        check(len, limits.max_payload, "payload")?;
        total += len;
        out.extend_from_slice(&len.to_le_bytes());
    }
    check(total, limits.max_message, "message")?;
    Ok(out)
}

fn check(len: u64, limit: u64, what: &'static str) -> Result<(), FrameError> {
    if len > limit {
        Err(FrameError::TooLarge { what, len, limit })
    } else {
        Ok(())
    }
}

/// The parsed fixed part of a header.
struct Prefix {
    control_len: u32,
    payload_count: u32,
}

fn parse_prefix(bytes: [u8; 8], limits: &FrameLimits) -> Result<Prefix, FrameError> {
    let control_len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let payload_count = u32::from_le_bytes(bytes[4..].try_into().expect("4 bytes"));
    check(u64::from(control_len), u64::from(limits.max_control), "control part")?;
    check(
        u64::from(payload_count),
        u64::from(limits.max_payloads),
        "payload count",
    )?;
    Ok(Prefix {
        control_len,
        payload_count,
    })
}

fn parse_lengths(bytes: &[u8], control_len: u32, limits: &FrameLimits) -> Result<Vec<u64>, FrameError> {
    let mut total = u64::from(control_len);
    bytes
        .chunks_exact(8)
        .map(|c| {
            let len = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            check(len, limits.max_payload, "payload")?;
            total = total.saturating_add(len);
            check(total, limits.max_message, "message")?;
            Ok(len)
        })
        .collect()
}

fn buffer(len: u64) -> Vec<u8> {
    // Checked against the limits already; the limits fit in memory sizes.
    vec![0u8; usize::try_from(len).expect("a checked length fits in memory")]
}

/// Messages of one type gathered into one control part: the postcard
/// encoding of a `Vec<T>` (a length, then each message), built one message
/// at a time so that a writer can cut the batch before it passes
/// [`FrameLimits::max_control`]. The reader decodes it as a `Vec<T>`.
///
/// A burst of small messages (a thousand `Compute`s, a thousand
/// `Finished`) then costs one frame header, one read and one decode call on
/// the other side, not one each.
#[derive(Debug, Default)]
pub struct Batch {
    body: Vec<u8>,
    count: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the batch's control part so far (without its length).
    pub fn encoded_len(&self) -> usize {
        self.body.len()
    }

    /// Appends `message`.
    pub fn push<T: Serialize + ?Sized>(&mut self, message: &T) -> Result<(), FrameError> {
        let body = std::mem::take(&mut self.body);
        self.body = postcard::to_extend(message, body).map_err(|e| FrameError::Encode(e.to_string()))?;
        self.count += 1;
        Ok(())
    }

    /// Removes the messages after the first `len` bytes (`len` an
    /// [`Batch::encoded_len`] taken between pushes) and `count` of them.
    pub fn truncate(&mut self, len: usize, count: usize) {
        self.body.truncate(len);
        self.count = count;
    }

    /// The control part (count, then the messages), and an empty batch
    /// left behind that keeps its buffer.
    pub fn take_control(&mut self) -> Vec<u8> {
        let mut control = Vec::with_capacity(self.body.len() + 10);
        // postcard writes a sequence's length as an unsigned LEB128 varint.
        blockwise_core::value::write_varint(&mut control, self.count as u64);
        control.extend_from_slice(&self.body);
        self.body.clear();
        self.count = 0;
        control
    }
}

/// Writes one message to a blocking stream (and flushes it).
pub fn write_message<W: Write, T: Serialize + ?Sized>(
    writer: &mut W,
    message: &T,
    payloads: &[&[u8]],
    limits: &FrameLimits,
) -> Result<(), FrameError> {
    let control = encode(message)?;
    writer.write_all(&header(control.len(), payloads, limits)?)?;
    writer.write_all(&control)?;
    for p in payloads {
        writer.write_all(p)?;
    }
    writer.flush()?;
    Ok(())
}

/// Reads one message from a blocking stream; `Ok(None)` if the stream ended
/// cleanly before it.
pub fn read_message<R: Read>(reader: &mut R, limits: &FrameLimits) -> Result<Option<RawMessage>, FrameError> {
    let mut first = [0u8; 8];
    let mut got = 0;
    while got < first.len() {
        match reader.read(&mut first[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let prefix = parse_prefix(first, limits)?;
    let mut lengths = vec![0u8; prefix.payload_count as usize * 8];
    reader.read_exact(&mut lengths)?;
    let lengths = parse_lengths(&lengths, prefix.control_len, limits)?;
    let mut control = buffer(u64::from(prefix.control_len));
    reader.read_exact(&mut control)?;
    let mut payloads = Vec::with_capacity(lengths.len());
    for len in lengths {
        let mut p = buffer(len);
        reader.read_exact(&mut p)?;
        payloads.push(p);
    }
    Ok(Some(RawMessage { control, payloads }))
}

/// The same framing over tokio streams.
pub mod asynchronous {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::*;

    /// Writes one message (and flushes it).
    pub async fn write_message<W: AsyncWrite + Unpin, T: Serialize + ?Sized>(
        writer: &mut W,
        message: &T,
        payloads: &[&[u8]],
        limits: &FrameLimits,
    ) -> Result<(), FrameError> {
        feed_message(writer, message, payloads, limits).await?;
        writer.flush().await?;
        Ok(())
    }

    /// Writes one message into a buffered writer without flushing it (a
    /// writer draining a queue flushes once for many messages).
    pub async fn feed_message<W: AsyncWrite + Unpin, T: Serialize + ?Sized>(
        writer: &mut W,
        message: &T,
        payloads: &[&[u8]],
        limits: &FrameLimits,
    ) -> Result<(), FrameError> {
        let control = encode(message)?;
        writer.write_all(&header(control.len(), payloads, limits)?).await?;
        writer.write_all(&control).await?;
        for p in payloads {
            writer.write_all(p).await?;
        }
        Ok(())
    }

    /// Writes one message whose control part is already encoded, without
    /// flushing it.
    pub async fn feed_encoded<W: AsyncWrite + Unpin>(
        writer: &mut W,
        control: &[u8],
        payloads: &[&[u8]],
        limits: &FrameLimits,
    ) -> Result<(), FrameError> {
        writer.write_all(&header(control.len(), payloads, limits)?).await?;
        writer.write_all(control).await?;
        for p in payloads {
            writer.write_all(p).await?;
        }
        Ok(())
    }

    /// Reads one message; `Ok(None)` if the stream ended cleanly before it.
    pub async fn read_message<R: AsyncRead + Unpin>(
        reader: &mut R,
        limits: &FrameLimits,
    ) -> Result<Option<RawMessage>, FrameError> {
        let Some(head) = read_head(reader, limits).await? else {
            return Ok(None);
        };
        let mut payloads = Vec::with_capacity(head.payload_lengths.len());
        for &len in &head.payload_lengths {
            let mut p = buffer(len);
            reader.read_exact(&mut p).await?;
            payloads.push(p);
        }
        Ok(Some(RawMessage {
            control: head.control,
            payloads,
        }))
    }

    /// Reads one message up to its payloads (see [`MessageHead`]);
    /// `Ok(None)` if the stream ended cleanly before it.
    pub async fn read_head<R: AsyncRead + Unpin>(
        reader: &mut R,
        limits: &FrameLimits,
    ) -> Result<Option<MessageHead>, FrameError> {
        let mut first = [0u8; 8];
        let mut got = 0;
        while got < first.len() {
            match reader.read(&mut first[got..]).await? {
                0 if got == 0 => return Ok(None),
                0 => return Err(FrameError::Truncated),
                n => got += n,
            }
        }
        let prefix = parse_prefix(first, limits)?;
        let mut lengths = vec![0u8; prefix.payload_count as usize * 8];
        reader.read_exact(&mut lengths).await?;
        let lengths = parse_lengths(&lengths, prefix.control_len, limits)?;
        let mut control = buffer(u64::from(prefix.control_len));
        reader.read_exact(&mut control).await?;
        Ok(Some(MessageHead {
            control,
            payload_lengths: lengths,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use proptest::prelude::*;

    use super::*;

    /// The bytes of one message whose control part is `control` (a byte
    /// string) with `payloads`.
    fn roundtrip(control: &[u8], payloads: &[Vec<u8>]) -> Vec<u8> {
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        let mut out = Vec::new();
        write_message(&mut out, control, &refs, &FrameLimits::default()).unwrap();
        out
    }

    proptest! {
        #[test]
        fn messages_roundtrip_and_every_cut_is_truncated(
            messages in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 0..64), prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..4)),
                1..5,
            ),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut stream = Vec::new();
            for (control, payloads) in &messages {
                stream.extend(roundtrip(control, payloads));
            }
            let mut reader = Cursor::new(stream.clone());
            for (control, payloads) in &messages {
                let raw = read_message(&mut reader, &FrameLimits::default()).unwrap().unwrap();
                prop_assert_eq!(&raw.decode::<Vec<u8>>().unwrap(), control);
                prop_assert_eq!(&raw.payloads, payloads);
            }
            prop_assert!(read_message(&mut reader, &FrameLimits::default()).unwrap().is_none());
            // Cut inside the first message: truncated, never a message.
            let first = roundtrip(&messages[0].0, &messages[0].1);
            let at = 1 + cut.index(first.len() - 1);
            let mut reader = Cursor::new(first[..at].to_vec());
            prop_assert!(matches!(read_message(&mut reader, &FrameLimits::default()), Err(FrameError::Truncated)));
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_overallocate(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let limits = FrameLimits { max_control: 1024, max_payloads: 8, max_payload: 1024, max_message: 4096 };
            let mut reader = Cursor::new(bytes);
            // Whatever the bytes say, reading ends in a message, an error or
            // the end, within the limits.
            while let Ok(Some(raw)) = read_message(&mut reader, &limits) {
                prop_assert!(raw.control.len() <= 1024);
                prop_assert!(raw.payloads.len() <= 8);
            }
        }
    }

    #[test]
    fn an_oversized_header_is_refused_before_allocation() {
        let limits = FrameLimits::default();
        let mut header = Vec::new();
        header.extend_from_slice(&u32::MAX.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        match read_message(&mut Cursor::new(header), &limits) {
            Err(FrameError::TooLarge { what, len, .. }) => {
                assert_eq!(what, "control part");
                assert_eq!(len, u64::from(u32::MAX));
            }
            other => panic!("expected too large, got {other:?}"),
        }
        let mut header = Vec::new();
        header.extend_from_slice(&4u32.to_le_bytes());
        header.extend_from_slice(&1u32.to_le_bytes());
        header.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = read_message(&mut Cursor::new(header), &limits).unwrap_err();
        assert!(
            err.to_string()
                .contains("payload of 18446744073709551615 bytes is over the limit"),
            "{err}"
        );
    }

    #[test]
    fn a_batch_decodes_as_a_vector_of_its_messages() {
        let messages: Vec<(u32, String)> = (0..300).map(|i| (i, format!("message {i}"))).collect();
        let mut batch = Batch::new();
        for m in &messages {
            batch.push(m).unwrap();
        }
        assert_eq!(batch.len(), 300);
        let control = batch.take_control();
        assert!(batch.is_empty());
        assert_eq!(postcard::from_bytes::<Vec<(u32, String)>>(&control).unwrap(), messages);
        // Cut back to what fits: the first two messages only.
        let mut batch = Batch::new();
        batch.push(&messages[0]).unwrap();
        batch.push(&messages[1]).unwrap();
        let (len, count) = (batch.encoded_len(), batch.len());
        batch.push(&messages[2]).unwrap();
        batch.truncate(len, count);
        assert_eq!(
            postcard::from_bytes::<Vec<(u32, String)>>(&batch.take_control()).unwrap(),
            messages[..2].to_vec()
        );
    }

    #[test]
    fn a_message_over_the_limits_is_not_sent() {
        let limits = FrameLimits {
            max_payload: 10,
            ..FrameLimits::default()
        };
        let mut out = Vec::new();
        let err = write_message(&mut out, &1u8, &[&[0u8; 11]], &limits).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { what: "payload", .. }));
        assert!(out.is_empty(), "nothing was written");
    }
}
