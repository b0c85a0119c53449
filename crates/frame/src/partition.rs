//! One partition of a data frame, as a task value.
//!
//! A [`Partition`] is a Polars `DataFrame` wrapped so that the engine can hold
//! it: its size comes from Polars' own `estimated_size` (buffers, heap
//! included), and it crosses a process boundary as an Arrow IPC stream — the
//! format DESIGN.md names for bulk frame data — written and read by Polars
//! itself. Cloning a partition is cheap: Polars columns are reference counted.

use blockwise_core::value::Decode;
use blockwise_core::{Data, Error, ErrorKind, Result, Tokenizer, Value};
use polars::prelude::DataFrame as PlFrame;

use crate::polars_api;

/// A partition: one Polars data frame inside the task graph.
#[derive(Clone, Debug)]
pub struct Partition(pub PlFrame);

impl Partition {
    /// The Polars frame.
    pub fn frame(&self) -> &PlFrame {
        &self.0
    }

    /// Takes the Polars frame out.
    pub fn into_frame(self) -> PlFrame {
        self.0
    }
}

impl Data for Partition {
    fn size_bytes(&self) -> usize {
        self.0.estimated_size() + std::mem::size_of::<Self>()
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        polars_api::ipc_encode(&self.0, out)
    }

    fn tokenize(&self, tokenizer: &mut Tokenizer) {
        // Hashing the rows is much cheaper than encoding the frame.
        match polars_api::fingerprint(&self.0) {
            Ok(token) => tokenizer.str("partition").u64(token),
            Err(_) => tokenizer.unique(),
        };
    }

    fn describe(&self) -> String {
        format!("partition of {} rows × {} columns", self.0.height(), self.0.width())
    }
}

impl Decode for Partition {
    fn decode(bytes: &[u8]) -> Result<Self> {
        polars_api::ipc_decode(bytes).map(Partition)
    }
}

blockwise_core::register_codec!(Partition);

/// Reads a partition out of a task input: shared when it is one, decoded
/// when it arrived encoded from another process.
pub(crate) fn frame_of(value: &Value) -> Result<PlFrame> {
    if let Some(p) = value.downcast_ref::<Partition>() {
        return Ok(p.0.clone());
    }
    use blockwise_core::FromValue;
    Partition::from_value(value)
        .map(Partition::into_frame)
        .map_err(|e| Error::new(ErrorKind::TypeMismatch, format!("expected a data frame partition: {e}")))
}

/// Wraps a Polars frame as a task value.
pub(crate) fn value_of(frame: PlFrame) -> Value {
    std::sync::Arc::new(Partition(frame))
}
