//! A worker's results: in memory, or spilled to disk beyond a budget.
//!
//! Every value is accounted by its [`blockwise_core::Data::size_bytes`].
//! With a memory limit, once the values in memory pass `target × limit`
//! the least recently used ones are written to the worker's local directory
//! (encoded with their codec, the same bytes a peer would be sent) until
//! memory is back under the target — Dask's `distributed.worker.memory.target`
//! and `spill`. A spilled value is read back when a task or a peer needs it;
//! it stays on disk (reading does not bring it back into the budget), and a
//! peer is sent the file's bytes as they are.
//!
//! Above `pause × limit` even after spilling (values that cannot be
//! encoded stay in memory), the worker pauses: the scheduler sends it no
//! new tasks until it is back under.

use std::path::{Path, PathBuf};

use blockwise_core::value::{decode_value, encode_value};
use blockwise_core::{Error, ErrorKind, Result, Value};

use crate::id::{GenerationalId, TaskId};

/// How much a worker keeps in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryLimits {
    /// Bytes of results the worker may hold in memory (0: no limit, never
    /// spill).
    pub limit: u64,
    /// Spill beyond this fraction of the limit.
    pub target: f64,
    /// Pause beyond this fraction of the limit (after spilling).
    pub pause: f64,
    /// Where spilled values go (a directory of its own is made inside).
    pub directory: PathBuf,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            limit: 0,
            target: 0.6,
            pause: 0.8,
            directory: std::env::temp_dir(),
        }
    }
}

enum Entry {
    Memory { value: Value, nbytes: u64, used: u64 },
    Disk { path: PathBuf, codec: String, nbytes: u64 },
}

/// A value to send to a peer: encoded bytes and their codec.
pub(crate) struct Encoded {
    pub(crate) codec: String,
    pub(crate) bytes: Bytes,
}

/// Encoded bytes: written for this send, or shared with a value that is
/// still in its encoded form (sent as they are, never copied).
pub(crate) enum Bytes {
    Owned(Vec<u8>),
    Shared(std::sync::Arc<[u8]>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Shared(a) => a,
        }
    }
}

/// The results a worker holds.
pub(crate) struct Store {
    entries: crate::id::IdMap<TaskId, Entry>,
    limits: MemoryLimits,
    /// This worker's spill directory, made on first spill.
    directory: PathBuf,
    made_directory: bool,
    memory: u64,
    spilled: u64,
    clock: u64,
}

impl Store {
    pub(crate) fn new(limits: MemoryLimits) -> Store {
        // Unique per store: workers on threads of one process (tests) must
        // not share (and remove) each other's directory.
        static STORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let directory = limits
            .directory
            .join(format!("blockwise-worker-{}-{n}-spill", std::process::id()));
        Store {
            entries: Default::default(),
            limits,
            directory,
            made_directory: false,
            memory: 0,
            spilled: 0,
            clock: 0,
        }
    }

    /// Bytes of results in memory.
    pub(crate) fn memory(&self) -> u64 {
        self.memory
    }

    /// Bytes of results on disk.
    pub(crate) fn spilled(&self) -> u64 {
        self.spilled
    }

    pub(crate) fn contains(&self, task: &TaskId) -> bool {
        self.entries.contains_key(task)
    }

    /// Keeps `value` as the result of `task` (replacing any), then spills if
    /// over the target.
    pub(crate) fn insert(&mut self, task: TaskId, value: Value) {
        self.remove(&task);
        let nbytes = value.size_bytes() as u64;
        self.clock += 1;
        self.memory += nbytes;
        self.entries.insert(
            task,
            Entry::Memory {
                value,
                nbytes,
                used: self.clock,
            },
        );
        self.spill_to_target();
    }

    pub(crate) fn remove(&mut self, task: &TaskId) {
        match self.entries.remove(task) {
            Some(Entry::Memory { nbytes, .. }) => self.memory -= nbytes,
            Some(Entry::Disk { path, nbytes, .. }) => {
                self.spilled -= nbytes;
                let _ = std::fs::remove_file(path);
            }
            None => {}
        }
    }

    /// The value of `task`, read back from disk if spilled.
    pub(crate) fn get(&mut self, task: &TaskId) -> Result<Option<Value>> {
        self.clock += 1;
        let clock = self.clock;
        match self.entries.get_mut(task) {
            Some(Entry::Memory { value, used, .. }) => {
                *used = clock;
                Ok(Some(value.clone()))
            }
            Some(Entry::Disk { path, codec, .. }) => {
                let bytes = read(path)?;
                decode_value(codec, &bytes)
                    .map(Some)
                    .map_err(|e| e.context(format!("while reading {task} back from {}", path.display())))
            }
            None => Ok(None),
        }
    }

    /// What a peer is sent for `task`: a value in memory is cloned here
    /// (and encoded by the caller, outside any lock); a spilled one is its
    /// file's bytes.
    pub(crate) fn for_peer(&self, task: &TaskId) -> Option<ForPeer> {
        match self.entries.get(task)? {
            Entry::Memory { value, .. } => Some(ForPeer::Value(value.clone())),
            Entry::Disk { path, codec, .. } => Some(ForPeer::File(path.clone(), codec.clone())),
        }
    }

    /// Whether the values in memory are above the pause threshold.
    pub(crate) fn over_pause(&self) -> bool {
        self.limits.limit > 0 && self.memory as f64 > self.limits.pause * self.limits.limit as f64
    }

    fn spill_to_target(&mut self) {
        if self.limits.limit == 0 {
            return;
        }
        let target = (self.limits.target * self.limits.limit as f64) as u64;
        while self.memory > target {
            // Least recently used first (a linear scan: spilling is rare
            // and far slower than the scan).
            let victim = self
                .entries
                .iter()
                .filter_map(|(t, e)| match e {
                    Entry::Memory { used, .. } => Some((*used, *t)),
                    Entry::Disk { .. } => None,
                })
                .min();
            let Some((_, task)) = victim else {
                return;
            };
            if let Err(e) = self.spill(task) {
                // It stays in memory; pausing protects the worker.
                tracing::warn!("cannot spill {task}: {e}");
                return;
            }
        }
    }

    fn spill(&mut self, task: TaskId) -> Result<()> {
        let Some(Entry::Memory { value, nbytes, .. }) = self.entries.get(&task) else {
            return Ok(());
        };
        let nbytes = *nbytes;
        let encoded = encode_value(value)?;
        if !self.made_directory {
            std::fs::create_dir_all(&self.directory).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot make the spill directory {}: {e}", self.directory.display()),
                )
            })?;
            self.made_directory = true;
        }
        let path = self.directory.join(format!("{}-{}", task.slot(), task.generation()));
        std::fs::write(&path, &encoded.bytes)
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot spill to {}: {e}", path.display())))?;
        self.entries.insert(
            task,
            Entry::Disk {
                path,
                codec: encoded.codec,
                nbytes,
            },
        );
        self.memory -= nbytes;
        self.spilled += nbytes;
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.made_directory {
            let _ = std::fs::remove_dir_all(&self.directory);
        }
    }
}

/// See [`Store::for_peer`].
#[derive(Clone)]
pub(crate) enum ForPeer {
    Value(Value),
    File(PathBuf, String),
}

impl ForPeer {
    /// The size of a value in memory; `None` for one on disk (reading it
    /// back is blocking I/O).
    pub(crate) fn in_memory_bytes(&self) -> Option<usize> {
        match self {
            ForPeer::Value(v) => Some(v.size_bytes()),
            ForPeer::File(..) => None,
        }
    }

    /// The bytes to send: the value encoded once, straight into the
    /// buffer that is sent (a value still encoded — one that came from a
    /// peer and was never decoded here — is sent as it is, uncopied).
    pub(crate) fn encode(self) -> Result<Encoded> {
        match self {
            ForPeer::Value(v) => {
                if let Some(e) = v.downcast_ref::<blockwise_core::value::Encoded>() {
                    return Ok(Encoded {
                        codec: e.codec.clone(),
                        bytes: Bytes::Shared(e.bytes.clone()),
                    });
                }
                let mut bytes = Vec::new();
                v.encode(&mut bytes)
                    .map_err(|e| e.context(format!("while encoding a value of type {}", v.codec())))?;
                Ok(Encoded {
                    codec: v.codec().to_string(),
                    bytes: Bytes::Owned(bytes),
                })
            }
            ForPeer::File(path, codec) => Ok(Encoded {
                codec,
                bytes: Bytes::Owned(read(&path)?),
            }),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read spilled data {}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::id::Slab;

    #[test]
    fn values_beyond_the_target_spill_least_recently_used_first_and_read_back() {
        let dir = std::env::temp_dir().join(format!("blockwise-store-unit-{}", std::process::id()));
        let mut store = Store::new(MemoryLimits {
            limit: 10_000,
            target: 0.5,
            pause: 0.8,
            directory: dir.clone(),
        });
        let mut ids: Slab<TaskId, ()> = Slab::new();
        let t: Vec<TaskId> = (0..4).map(|_| ids.insert(())).collect();
        let value = |n: i64| -> Value { Arc::new(vec![n; 250]) }; // 2000 bytes each
        store.insert(t[0], value(0));
        store.insert(t[1], value(1));
        assert_eq!(store.spilled(), 0);
        store.get(&t[0]).unwrap(); // t[1] is now the least recently used
        store.insert(t[2], value(2));
        store.insert(t[3], value(3));
        assert!(store.memory() <= 5_000, "memory {}", store.memory());
        assert!(store.spilled() >= 2_000);
        assert!(
            matches!(store.entries[&t[1]], Entry::Disk { .. }),
            "the least recently used spilled first"
        );
        for (i, task) in t.iter().enumerate() {
            let v = store.get(task).unwrap().unwrap();
            assert_eq!(v.downcast_ref::<Vec<i64>>().unwrap()[0], i as i64);
            let sent = store.for_peer(task).unwrap().encode().unwrap();
            let back = decode_value(&sent.codec, &sent.bytes).unwrap();
            assert_eq!(back.downcast_ref::<Vec<i64>>().unwrap()[0], i as i64);
        }
        store.remove(&t[1]);
        assert_eq!(store.memory() + store.spilled(), 3 * value(0).size_bytes() as u64);
        let spill_dir = store.directory.clone();
        assert!(spill_dir.exists());
        drop(store);
        assert!(!spill_dir.exists(), "the spill directory is removed with the store");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
