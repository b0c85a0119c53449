//! One error type for all of blockwise.
//!
//! An [`Error`] has a [`ErrorKind`] (what went wrong, matchable), a message
//! (what and where, written for a person), and a chain of context lines added
//! on the way up (`while computing key ("sum-3f", [2])`). Whether retrying can
//! help is a property of the kind: see [`ErrorKind::is_transient`].

use std::fmt;

use crate::key::Key;

/// The result type used throughout blockwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. Each kind says whether a retry can help.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A task returned an error or panicked. Carries the key of the task.
    /// Retrying the same task with the same inputs is unlikely to help.
    TaskFailed(Key),
    /// An op, task function or codec was looked up by name and is not
    /// registered in this executable.
    NotRegistered,
    /// A value could not be encoded or decoded.
    Codec,
    /// A graph is malformed: a missing dependency, a cycle, an unknown key.
    InvalidGraph,
    /// Configuration could not be read or has a wrong value.
    Config,
    /// An operating-system I/O error (file, socket, process).
    Io,
    /// The other side of a connection runs a different executable.
    BuildMismatch,
    /// A value has a different type than the consumer asked for.
    TypeMismatch,
    /// The caller passed an argument that cannot work (shape, axis, option).
    InvalidArgument,
    /// The computation was cancelled before it finished.
    Cancelled,
    /// A connection or remote process failed; retrying may help.
    Remote,
}

impl ErrorKind {
    /// Whether the same call may succeed if repeated (a lost connection may
    /// come back; a failing task or a bad graph will fail again).
    pub fn is_transient(&self) -> bool {
        matches!(self, ErrorKind::Remote | ErrorKind::Io)
    }
}

/// The blockwise error: a kind, a message, and context lines.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Vec<String>,
}

impl Error {
    /// A new error of `kind` with a message for a person.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            context: Vec::new(),
        }
    }

    /// What went wrong, for matching.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The main message, without context lines.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The context lines, innermost first.
    pub fn context_lines(&self) -> &[String] {
        &self.context
    }

    /// Adds a context line (where or while doing what the error happened).
    pub fn context(mut self, line: impl Into<String>) -> Self {
        self.context.push(line.into());
        self
    }

    /// The key of the failed task, when the error is a task failure.
    pub fn failed_key(&self) -> Option<&Key> {
        match &self.kind {
            ErrorKind::TaskFailed(key) => Some(key),
            _ => None,
        }
    }

    /// Shorthand for an [`ErrorKind::InvalidArgument`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for an [`ErrorKind::Codec`] error.
    pub fn codec(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Codec, message)
    }

    /// Shorthand for an [`ErrorKind::InvalidGraph`] error.
    pub fn graph(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidGraph, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::TaskFailed(key) => write!(f, "task {key} failed: {}", self.message)?,
            _ => f.write_str(&self.message)?,
        }
        for line in &self.context {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {self}", self.kind)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, err.to_string())
    }
}

/// Adds context to a `Result`'s error, as `anyhow`'s `Context` does.
pub trait ResultExt<T> {
    /// Adds a context line to the error, if any.
    fn context(self, line: impl Into<String>) -> Result<T>;
    /// Adds a lazily built context line to the error, if any.
    fn with_context<S: Into<String>>(self, line: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, line: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(line))
    }
    fn with_context<S: Into<String>>(self, line: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.into().context(line()))
    }
}

/// Returns early with an [`Error`] of the given kind and a formatted message.
#[macro_export]
macro_rules! bail {
    ($kind:expr, $($arg:tt)+) => {
        return Err($crate::Error::new($kind, format!($($arg)+)))
    };
}

/// Returns early with an [`Error`] unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $kind:expr, $($arg:tt)+) => {
        if !($cond) {
            $crate::bail!($kind, $($arg)+);
        }
    };
}
