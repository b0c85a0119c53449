//! Text files: reading lines and JSON records, writing one file per partition.
//!
//! # Reading
//!
//! [`read_text`] and [`read_json_lines`] resolve their paths (globs are
//! expanded and sorted, as Dask does) and look at every file's size when the
//! bag is built; the files are read only when the tasks run. Each partition
//! is one *block*:
//!
//! - a gzip file (`.gz`, or [`Compression::Gzip`]) is one block: a gzip stream
//!   cannot be entered in the middle;
//! - a plain file larger than the block size (64 MiB by default) is cut into
//!   the fewest byte ranges of at most the block size, all of (nearly) the
//!   same length: `[k·len/n, (k+1)·len/n)` for `n = ⌈len / size⌉`. A line
//!   belongs to the block in which it *starts*: a block whose range starts in
//!   the middle of a line skips to the next line start, and a block reads its
//!   last line to its end even past its range. So every line is read exactly
//!   once, and a task reads only its range (plus the tail of one line).
//!
//! Lines are split at `\n`; a `\r` before it is dropped, and a last line
//! without `\n` still counts (the rule of `str::lines`). For JSON lines, a
//! blank line is skipped.
//!
//! A JSON line is parsed into its record by a fast path for the common line
//! (numbers other than integers of up to 19 digits are parsed by serde_json
//! itself), and by serde_json when the fast path gives up: on a byte
//! string, say, or any error. Records, and the messages of bad lines, are
//! serde_json's either way.
//!
//! A task reads its block into one buffer (256 KiB, no second copy of
//! lines), checks the UTF-8 of all the whole lines in it at once, and hands
//! out each line as a slice of that text. The JSON fast path parses a line
//! straight from the buffer and finds its end as it goes (a document ends
//! its line, `\n` is no whitespace inside it); a line it does not take is
//! cut at its `\n` and parsed on its own, as above.
//!
//! # Bad input
//!
//! A line that is not UTF-8 (for text) or not a valid record (for JSON)
//! fails the computation with its file and line number: `accounts.3.json,
//! line 1712, column 9: …`. The line number of a block that starts in the
//! middle of a file is found only when needed, by counting the newlines
//! before the block. With [`ReadOptions::skip_bad_lines`], such lines are
//! skipped instead and counted in a [`BadLines`] handle. A gzip stream that
//! cannot be decompressed (corrupt or cut short) is an error naming the file,
//! in either mode: the rest of that file cannot be trusted.
//!
//! # Writing
//!
//! [`Bag::to_textfiles`] writes each partition to its own file as its stage
//! produces the records (a partition is never held whole), gzip-compressed
//! when the name ends in `.gz`, and returns the paths written.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use blockwise_core::value::{Data, Decode, FromValue, postcard_decode, postcard_encode, short_type_name};
use blockwise_core::{Error, ErrorKind, Input, Key, Layer, LayerBody, Name, Result, Task, Tokenizer, Value};
use flate2::Compression as GzLevel;
use flate2::bufread::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::bag::{Bag, arg};
use crate::partition::{Element, Scalar, scalar_of};
use crate::portable::{Recipe, SourceSpec};
use crate::reduce::Item;
use crate::stage::{BagOp, Flow, Sink, Source, Stage, Stop, drive, extend_label};

/// The default block size of plain text files: 64 MiB.
pub const DEFAULT_BLOCKSIZE: u64 = 64 * 1024 * 1024;

/// Buffer size of file readers and writers.
const BUFFER: usize = 256 * 1024;

/// How many bad lines a [`BadLines`] handle keeps as examples.
const EXAMPLES: usize = 10;

/// How text files are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// From the file name: `.gz` is gzip, other known compressed extensions
    /// are an error, anything else is plain text.
    #[default]
    Infer,
    /// Plain text.
    None,
    /// Gzip (one or several concatenated members).
    Gzip,
}

/// Counts (and keeps a few examples of) the lines skipped by a read with
/// [`ReadOptions::skip_bad_lines`]. Clones share one count.
///
/// Every computation that reads the files adds to the count: computing the
/// same bag twice counts its bad lines twice. The count lives in this
/// process: it sees the lines skipped by local executors.
#[derive(Clone)]
pub struct BadLines {
    inner: Arc<BadLinesInner>,
}

struct BadLinesInner {
    id: u64,
    count: AtomicU64,
    examples: Mutex<Vec<BadLine>>,
}

/// One skipped line: where it is and why it was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// The file.
    pub path: PathBuf,
    /// The line number, from 1 (0 if it could not be found).
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, line {}: {}", self.path.display(), self.line, self.reason)
    }
}

impl Default for BadLines {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for BadLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BadLines({})", self.count())
    }
}

impl BadLines {
    /// A new handle with a count of zero.
    pub fn new() -> Self {
        let id = Tokenizer::new().unique().finish();
        BadLines {
            inner: Arc::new(BadLinesInner {
                id,
                count: AtomicU64::new(0),
                examples: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Number of lines skipped so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// The first few lines skipped (at most ten), in the order they were met.
    pub fn examples(&self) -> Vec<BadLine> {
        self.inner.examples.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, pos: &LinePos<'_>, reason: String) {
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        let mut examples = self.inner.examples.lock().unwrap_or_else(|e| e.into_inner());
        if examples.len() < EXAMPLES {
            examples.push(BadLine {
                path: pos.path.to_path_buf(),
                line: pos.number().unwrap_or(0),
                reason,
            });
        }
    }
}

/// Options of [`read_text_with`] and [`read_json_lines_with`].
#[derive(Clone, Debug)]
pub struct ReadOptions {
    blocksize: Option<u64>,
    compression: Compression,
    bad_lines: Option<BadLines>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            blocksize: Some(DEFAULT_BLOCKSIZE),
            compression: Compression::Infer,
            bad_lines: None,
        }
    }
}

impl ReadOptions {
    /// Defaults: 64 MiB blocks, compression from the file name, bad lines
    /// are errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cuts plain files larger than `bytes` into the fewest blocks of at most
    /// `bytes`, of equal length (0: one partition per file).
    pub fn blocksize(mut self, bytes: u64) -> Self {
        self.blocksize = (bytes > 0).then_some(bytes);
        self
    }

    /// One partition per file, whatever its size (Dask's `blocksize=None`).
    pub fn whole_files(mut self) -> Self {
        self.blocksize = None;
        self
    }

    /// Sets the compression instead of inferring it from file names.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Skips lines that are not valid UTF-8 (text) or not valid records
    /// (JSON), counting them in `bad_lines`, instead of failing.
    pub fn skip_bad_lines(mut self, bad_lines: &BadLines) -> Self {
        self.bad_lines = Some(bad_lines.clone());
        self
    }
}

/// Files to read: glob patterns (`data/*.json.gz`), plain paths, or lists of
/// either. Patterns are expanded in sorted order; a pattern matching nothing
/// is an error.
#[derive(Clone, Debug)]
pub struct Paths(Vec<PathSpec>);

#[derive(Clone, Debug)]
enum PathSpec {
    Pattern(String),
    Path(PathBuf),
}

impl From<&str> for Paths {
    fn from(s: &str) -> Self {
        Paths(vec![PathSpec::Pattern(s.to_string())])
    }
}
impl From<String> for Paths {
    fn from(s: String) -> Self {
        Paths(vec![PathSpec::Pattern(s)])
    }
}
impl From<&String> for Paths {
    fn from(s: &String) -> Self {
        Paths(vec![PathSpec::Pattern(s.clone())])
    }
}
impl From<&Path> for Paths {
    fn from(p: &Path) -> Self {
        Paths(vec![PathSpec::Path(p.to_path_buf())])
    }
}
impl From<PathBuf> for Paths {
    fn from(p: PathBuf) -> Self {
        Paths(vec![PathSpec::Path(p)])
    }
}
impl From<&PathBuf> for Paths {
    fn from(p: &PathBuf) -> Self {
        Paths(vec![PathSpec::Path(p.clone())])
    }
}
impl From<Vec<PathBuf>> for Paths {
    fn from(v: Vec<PathBuf>) -> Self {
        Paths(v.into_iter().map(PathSpec::Path).collect())
    }
}
impl From<&[PathBuf]> for Paths {
    fn from(v: &[PathBuf]) -> Self {
        Paths(v.iter().cloned().map(PathSpec::Path).collect())
    }
}
impl From<Vec<String>> for Paths {
    fn from(v: Vec<String>) -> Self {
        Paths(v.into_iter().map(PathSpec::Pattern).collect())
    }
}
impl From<Vec<&str>> for Paths {
    fn from(v: Vec<&str>) -> Self {
        Paths(v.into_iter().map(|s| PathSpec::Pattern(s.to_string())).collect())
    }
}
impl From<&[&str]> for Paths {
    fn from(v: &[&str]) -> Self {
        Paths(v.iter().map(|s| PathSpec::Pattern(s.to_string())).collect())
    }
}

fn io_error(message: String) -> Error {
    Error::new(ErrorKind::Io, message)
}

impl Paths {
    /// The files, in order.
    fn resolve(&self) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for spec in &self.0 {
            match spec {
                PathSpec::Path(p) => files.push(p.clone()),
                PathSpec::Pattern(p) if !p.contains(['*', '?', '[']) => files.push(PathBuf::from(p)),
                PathSpec::Pattern(p) => {
                    let matches =
                        glob::glob(p).map_err(|e| Error::invalid(format!("invalid glob pattern {p:?}: {e}")))?;
                    let mut found: Vec<PathBuf> = Vec::new();
                    for m in matches {
                        let path = m.map_err(|e| io_error(format!("while expanding {p:?}: {e}")))?;
                        if path.is_file() {
                            found.push(path);
                        }
                    }
                    if found.is_empty() {
                        return Err(io_error(format!("no files match {p:?}")));
                    }
                    found.sort();
                    files.extend(found);
                }
            }
        }
        if files.is_empty() {
            return Err(Error::invalid("no files to read: the list of paths is empty"));
        }
        Ok(files)
    }
}

/// One partition of a text source: a byte range of a file, or a whole
/// gzip file. The literal input of a read task.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TextBlock {
    path: PathBuf,
    start: u64,
    /// Lines starting at or after `end` belong to the next block; `None`:
    /// read to the end of the file.
    end: Option<u64>,
    gzip: bool,
}

impl Data for TextBlock {
    fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.path.as_os_str().len()
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        postcard_encode(self, out)
    }
}

impl Decode for TextBlock {
    fn decode(bytes: &[u8]) -> Result<Self> {
        postcard_decode(bytes)
    }
}

fn is_gzip(path: &Path, compression: Compression) -> Result<bool> {
    match compression {
        Compression::None => Ok(false),
        Compression::Gzip => Ok(true),
        Compression::Infer => {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            match ext.as_str() {
                "gz" | "gzip" => Ok(true),
                "bz2" | "xz" | "zst" | "zstd" | "lz4" | "zip" | "7z" => Err(Error::invalid(format!(
                    "{}: {ext} compression is not supported (only gzip); if the file is plain text, \
                     set ReadOptions::compression(Compression::None)",
                    path.display()
                ))),
                _ => Ok(false),
            }
        }
    }
}

/// The blocks of the files, and a token identifying their contents (path,
/// size and modification time of each file, as Dask's `tokenize` of files).
fn plan_blocks(files: &[PathBuf], options: &ReadOptions, tok: &mut Tokenizer) -> Result<Vec<TextBlock>> {
    let mut blocks = Vec::new();
    for path in files {
        let meta = std::fs::metadata(path).map_err(|e| io_error(format!("cannot read {}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(io_error(format!("{} is not a file", path.display())));
        }
        let size = meta.len();
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        tok.str(&path.to_string_lossy()).u64(size).u64(modified);
        let gzip = is_gzip(path, options.compression)?;
        match options.blocksize {
            Some(bs) if !gzip && size > bs => {
                // The fewest blocks of at most `bs` bytes, all of about the
                // same size: no short last block left to run alone at the
                // end of a computation.
                let n = size.div_ceil(bs);
                let cut = |k: u64| (u128::from(size) * u128::from(k) / u128::from(n)) as u64;
                for k in 0..n {
                    blocks.push(TextBlock {
                        path: path.clone(),
                        start: cut(k),
                        end: (k + 1 < n).then(|| cut(k + 1)),
                        gzip,
                    });
                }
            }
            _ => blocks.push(TextBlock {
                path: path.clone(),
                start: 0,
                end: None,
                gzip,
            }),
        }
    }
    if let Some(bs) = options.blocksize {
        tok.u64(bs);
    }
    tok.u64(options.compression as u64);
    Ok(blocks)
}

/// Where a line is, for messages; finds its number only when asked.
struct LinePos<'a> {
    path: &'a Path,
    /// Byte offset of the block's first line in the file (0 for gzip).
    first: u64,
    /// Index of the line within the block.
    rel: u64,
}

impl LinePos<'_> {
    /// The line number from 1: the block's own count plus the newlines
    /// before the block (counted now, on the error path).
    fn number(&self) -> Option<u64> {
        let before = if self.first == 0 {
            0
        } else {
            let file = File::open(self.path).ok()?;
            let mut reader = BufReader::with_capacity(BUFFER, file.take(self.first));
            let mut count = 0u64;
            loop {
                let buf = reader.fill_buf().ok()?;
                if buf.is_empty() {
                    break;
                }
                count += buf.iter().filter(|&&b| b == b'\n').count() as u64;
                let n = buf.len();
                reader.consume(n);
            }
            count
        };
        Some(before + self.rel + 1)
    }

    fn describe(&self) -> String {
        match self.number() {
            Some(n) => format!("{}, line {n}", self.path.display()),
            None => format!(
                "{}, line {} of the block at byte {}",
                self.path.display(),
                self.rel + 1,
                self.first
            ),
        }
    }
}

/// One line of a block, without its line ending.
struct Line<'a> {
    /// Its bytes.
    bytes: &'a [u8],
    /// Its text: `Some` exactly when the line is valid UTF-8 (checked once
    /// for many lines at a time, see [`read_lines`]).
    text: Option<&'a str>,
}

/// What [`read_lines`] hands the lines to.
trait OnLine {
    /// Whether [`OnLine::ahead`] may take lines.
    const AHEAD: bool;

    /// Takes the line at the start of `rest` (whole lines of text, the last
    /// ending in `\n`) if it can find the line's end by itself as it reads
    /// it: `Some(Ok(n))` when `rest[n]` is the `\n` ending the line; `None`
    /// to have the line cut and handed to [`OnLine::line`] instead.
    fn ahead(&mut self, rest: &str) -> Option<std::result::Result<usize, Stop>>;

    /// Takes one line.
    fn line(&mut self, line: Line<'_>, pos: &LinePos<'_>) -> Flow;
}

/// Reads the lines of a block into `on_line`.
fn read_block(block: &TextBlock, on_line: &mut impl OnLine) -> Flow {
    let path = block.path.as_path();
    let mut file = File::open(path).map_err(|e| io_error(format!("cannot open {}: {e}", path.display())))?;
    if block.gzip {
        let reader = MultiGzDecoder::new(BufReader::with_capacity(BUFFER, file));
        let extent = Extent {
            path,
            start: 0,
            skip_first: false,
            end: None,
            gzip: true,
        };
        return read_lines(reader, &extent, BUFFER, on_line);
    }
    let mut from = block.start;
    if block.start > 0 {
        // The line holding byte `start - 1` belongs to the previous block
        // unless that byte ends it: read from there, skipping to the first
        // line start.
        from = block.start - 1;
        file.seek(SeekFrom::Start(from))
            .map_err(|e| io_error(format!("cannot read {}: {e}", path.display())))?;
    }
    let extent = Extent {
        path,
        start: from,
        skip_first: block.start > 0,
        end: block.end,
        gzip: false,
    };
    read_lines(file, &extent, BUFFER, on_line)
}

/// The UTF-8 check of a run of whole lines, done once for many lines: the
/// text of `bytes[from..end]`, the longest valid stretch from `from` (a
/// line start).
struct Checked<'a> {
    from: usize,
    end: usize,
    text: &'a str,
}

impl<'a> Checked<'a> {
    /// Checks `bytes` from `from` up to its end or its first invalid byte.
    fn from(bytes: &'a [u8], from: usize) -> Checked<'a> {
        let rest = &bytes[from..];
        let valid = match std::str::from_utf8(rest) {
            Ok(text) => {
                return Checked {
                    from,
                    end: bytes.len(),
                    text,
                };
            }
            Err(e) => e.valid_up_to(),
        };
        Checked {
            from,
            end: from + valid,
            // Valid by the check above.
            text: std::str::from_utf8(&rest[..valid]).unwrap_or_default(),
        }
    }

    /// The text of `bytes[a..b]`, a line at or after the last one asked
    /// for, if it is valid. When the last check stopped at an invalid byte
    /// before the line, the check goes on from the line's start.
    #[inline]
    fn line(&mut self, bytes: &'a [u8], a: usize, b: usize) -> Option<&'a str> {
        self.reach(bytes, a);
        if b <= self.end {
            // `a` and `b` are line boundaries: character boundaries.
            self.text.get(a - self.from..b - self.from)
        } else {
            None
        }
    }

    /// The text of `bytes[a..]` (`a` a line start at or after the last one
    /// asked for) up to the end of the check: the lines from `a` that are
    /// valid, and the valid start of the first that is not. `None` when the
    /// line at `a` starts with an invalid byte.
    #[inline]
    fn rest(&mut self, bytes: &'a [u8], a: usize) -> Option<&'a str> {
        self.reach(bytes, a);
        if a < self.end {
            self.text.get(a - self.from..)
        } else {
            None
        }
    }

    /// Checks again from `a` if the last check stopped before `a`.
    #[inline(always)]
    fn reach(&mut self, bytes: &'a [u8], a: usize) {
        if a > self.end {
            *self = Checked::from(bytes, a);
        }
    }
}

/// What [`read_lines`] reads: from byte `start` of `path` up to the line
/// that crosses `end`. With `skip_first`, `start` is the byte before the
/// block: the bytes up to the first `\n` from there belong to the previous
/// block.
struct Extent<'a> {
    path: &'a Path,
    start: u64,
    skip_first: bool,
    end: Option<u64>,
    gzip: bool,
}

/// Reads the lines of `extent` from `reader` (which is at its start) into
/// `on_line`. Lines are handed out from a buffer of `capacity` bytes (grown
/// for a longer line) into which the reader reads directly; the whole lines
/// in it are checked for UTF-8 at once, and a line's text is a slice of
/// that check. A line is offered to [`OnLine::ahead`] first, which may find
/// its end as it parses it; else its end is searched for and it goes to
/// [`OnLine::line`].
fn read_lines<R: Read, O: OnLine>(mut reader: R, extent: &Extent<'_>, capacity: usize, on_line: &mut O) -> Flow {
    let Extent {
        path,
        start,
        skip_first,
        end,
        gzip,
    } = *extent;
    let read_error = |e: io::Error| {
        if gzip {
            io_error(format!(
                "cannot read {} as gzip (corrupt or cut short?): {e}",
                path.display()
            ))
        } else {
            io_error(format!("cannot read {}: {e}", path.display()))
        }
    };
    let mut buf = vec![0u8; capacity.max(1)];
    // `buf[..len]` holds bytes read and not yet handed out, from file
    // offset `pos`; `first` is the offset of the block's first line.
    let mut len = 0;
    let mut pos = start;
    let mut skipping = skip_first;
    let mut first = start;
    let mut rel = 0u64;
    let strip = |line: &[u8]| -> usize {
        match line.strip_suffix(b"\r") {
            Some(l) => l.len(),
            None => line.len(),
        }
    };
    loop {
        let n = loop {
            match reader.read(&mut buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e).into()),
            }
        };
        len += n;
        let bytes = &buf[..len];
        let mut at = 0;
        if skipping {
            match memchr::memchr(b'\n', bytes) {
                Some(i) => {
                    at = i + 1;
                    skipping = false;
                    first = pos + at as u64;
                }
                None => at = len,
            }
        }
        if n == 0 {
            // The end: the last line, without a line ending (a `\r` there
            // is kept), unless it belongs to the previous block or starts at
            // or after `end`.
            let starts = pos + at as u64;
            if at < len && !skipping && end.is_none_or(|end| starts < end) {
                let line = &bytes[at..];
                on_line.line(
                    Line {
                        bytes: line,
                        text: std::str::from_utf8(line).ok(),
                    },
                    &LinePos { path, first, rel },
                )?;
            }
            return Ok(());
        }
        // The whole lines in the buffer.
        let whole = memchr::memrchr(b'\n', &bytes[at..]).map_or(at, |i| at + i + 1);
        let mut checked = Checked::from(&bytes[..whole], at);
        while at < whole {
            if end.is_some_and(|end| pos + at as u64 >= end) {
                return Ok(());
            }
            let line_pos = LinePos { path, first, rel };
            if O::AHEAD
                && let Some(rest) = checked.rest(&bytes[..whole], at)
                && let Some(taken) = on_line.ahead(rest)
            {
                rel += 1;
                at += taken? + 1;
                continue;
            }
            let i = at + memchr::memchr(b'\n', &bytes[at..whole]).unwrap_or(whole - at - 1);
            let line = &bytes[at..i];
            let cut = at + strip(line);
            on_line.line(
                Line {
                    bytes: &bytes[at..cut],
                    text: checked.line(&bytes[..whole], at, cut),
                },
                &line_pos,
            )?;
            rel += 1;
            at = i + 1;
        }
        if end.is_some_and(|end| pos + at as u64 >= end) {
            return Ok(());
        }
        // Keep the start of a line cut by the buffer's end, and make room.
        buf.copy_within(at..len, 0);
        len -= at;
        pos += at as u64;
        if len == buf.len() {
            buf.resize(2 * len, 0);
        }
    }
}

/// Fails, or counts and skips, a bad line. `column` (from 1) points into the
/// line when the parser knows where it went wrong.
fn bad_line(bad_lines: Option<&BadLines>, pos: &LinePos<'_>, column: Option<usize>, reason: String) -> Flow {
    match bad_lines {
        Some(b) => {
            let reason = match column {
                Some(c) => format!("column {c}: {reason}"),
                None => reason,
            };
            b.record(pos, reason);
            Ok(())
        }
        None => {
            let at = match column {
                Some(c) => format!("{}, column {c}", pos.describe()),
                None => pos.describe(),
            };
            Err(Stop::Fail(Error::invalid(format!("{at}: {reason}"))))
        }
    }
}

/// Turns each line of a block into records.
trait LineParser<T>: Send + Sync + 'static {
    /// Pushes the records of `line` into `sink`; a bad line fails, or is
    /// counted in `bad` (see [`bad_line`]).
    fn parse(&self, line: Line<'_>, pos: &LinePos<'_>, bad: Option<&BadLines>, sink: &mut Sink<'_, T>) -> Flow;

    /// Whether [`LineParser::parse_ahead`] may take lines.
    const AHEAD: bool = false;

    /// Pushes the records of the line at the start of `rest` (see
    /// [`OnLine::ahead`]) if this parser finds the line's end as it parses
    /// it, and the line is good: the index of that end. `None` leaves the
    /// line to [`LineParser::parse`].
    #[inline(always)]
    fn parse_ahead(&self, rest: &str, sink: &mut Sink<'_, T>) -> Option<std::result::Result<usize, Stop>> {
        let _ = (rest, sink);
        None
    }
}

/// A block's lines going through a [`LineParser`] into a sink.
struct Parsing<'a, 's, P, T> {
    parse: &'a P,
    bad: Option<&'a BadLines>,
    sink: &'a mut Sink<'s, T>,
}

impl<P: LineParser<T>, T> OnLine for Parsing<'_, '_, P, T> {
    const AHEAD: bool = P::AHEAD;

    #[inline(always)]
    fn ahead(&mut self, rest: &str) -> Option<std::result::Result<usize, Stop>> {
        self.parse.parse_ahead(rest, self.sink)
    }

    #[inline(always)]
    fn line(&mut self, line: Line<'_>, pos: &LinePos<'_>) -> Flow {
        self.parse.parse(line, pos, self.bad, self.sink)
    }
}

/// A stage reading a text block (its one input), each line turned into
/// records by `parse`; bad lines fail it, or are counted in `bad_lines`.
fn block_stage<T: Element>(parse: impl LineParser<T>, bad_lines: Option<BadLines>) -> Stage<T> {
    Arc::new(move |args: &[Value], sink: &mut Sink<'_, T>| {
        let value = arg(args, 0)?;
        // Decoded here when the block came from another process.
        let decoded;
        let block = match value.downcast_ref::<TextBlock>() {
            Some(block) => block,
            None => {
                decoded = TextBlock::from_value(value).map_err(|e| e.context("the input of a read task"))?;
                &decoded
            }
        };
        let before = bad_lines.as_ref().map(BadLines::count);
        let mut parsing = Parsing {
            parse: &parse,
            bad: bad_lines.as_ref(),
            sink: &mut *sink,
        };
        let flow = read_block(block, &mut parsing);
        if let (Some(b), Some(before)) = (&bad_lines, before) {
            let skipped = b.count().saturating_sub(before);
            if skipped > 0 {
                tracing::warn!(path = %block.path.display(), skipped, "skipped bad lines");
            }
        }
        flow
    })
}

/// The stage of [`read_text`] without skipping bad lines (what another
/// process rebuilds).
pub(crate) fn text_stage() -> Stage<String> {
    block_stage(TextLines, None)
}

/// The stage of [`read_json_lines`] without skipping bad lines (what
/// another process rebuilds).
pub(crate) fn json_stage<T: Element>() -> Stage<T> {
    block_stage(JsonLines::<T>::new(), None)
}

/// A bag over the lines of `paths`, each line turned into records by `parse`.
/// `spec` is the source as another process rebuilds it; a source that
/// counts skipped bad lines in this process has none.
fn text_source<T: Element>(
    paths: Paths,
    options: &ReadOptions,
    kind: &str,
    parse: impl LineParser<T>,
    spec: SourceSpec,
) -> Result<Bag<T>> {
    let files = paths.resolve()?;
    let mut tok = Tokenizer::new();
    // Different record types parse the same lines differently.
    tok.str(kind).str(std::any::type_name::<T>());
    let blocks = plan_blocks(&files, options, &mut tok)?;
    if let Some(b) = &options.bad_lines {
        tok.u64(b.inner.id);
    }
    let inputs: Arc<[Vec<Input>]> = blocks.into_iter().map(|b| vec![Input::Literal(Arc::new(b))]).collect();
    let recipe = options.bad_lines.is_none().then(|| Recipe::source::<T>(spec));
    let stage = block_stage(parse, options.bad_lines.clone());
    Ok(Bag::from_source(
        Source::pending(
            tok.finish(),
            kind,
            Arc::from(kind),
            Arc::from(Vec::new()),
            inputs,
            stage,
            Arc::from(Vec::new()),
        )
        .with_recipe(recipe),
    ))
}

/// The lines of text files, one record per line, without line endings
/// (Dask's `read_text`). See the [module docs](self) for globs, gzip and
/// blocks; bad UTF-8 is an error naming file and line.
///
/// ```no_run
/// # fn main() -> blockwise_core::Result<()> {
/// use blockwise_local::Compute;
/// let words = blockwise_bag::read_text("logs/*.log.gz")?
///     .flat_map(|line| line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
///     .frequencies()
///     .topk(10, |(_, n)| *n)
///     .compute()?;
/// # Ok(()) }
/// ```
pub fn read_text(paths: impl Into<Paths>) -> Result<Bag<String>> {
    read_text_with(paths, &ReadOptions::default())
}

/// [`read_text`] with options (block size, compression, skipping bad lines).
pub fn read_text_with(paths: impl Into<Paths>, options: &ReadOptions) -> Result<Bag<String>> {
    text_source(paths.into(), options, "read-text", TextLines, SourceSpec::Text)
}

/// The lines of [`read_text`]: each line is a record.
struct TextLines;

impl LineParser<String> for TextLines {
    fn parse(&self, line: Line<'_>, pos: &LinePos<'_>, bad: Option<&BadLines>, sink: &mut Sink<'_, String>) -> Flow {
        match line.text {
            Some(s) => sink(s.to_string()),
            None => match std::str::from_utf8(line.bytes) {
                Ok(s) => sink(s.to_string()),
                Err(e) => bad_line(bad, pos, Some(e.valid_up_to() + 1), format!("not valid UTF-8: {e}")),
            },
        }
    }
}

/// JSON lines (one JSON document per line) parsed into records of type `T`,
/// which may be any `Deserialize` type or `serde_json::Value`. Blank lines
/// are skipped; a line that does not parse as a `T` is an error naming the
/// file, line and column.
///
/// ```no_run
/// # fn main() -> blockwise_core::Result<()> {
/// use blockwise_local::Compute;
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Account { name: String, amount: i64 }
///
/// let top = blockwise_bag::read_json_lines::<Account>("accounts.*.json.gz")?
///     .filter(|a| a.amount > 0)
///     .map(|a| a.name)
///     .frequencies()
///     .topk(10, |(_, n)| *n)
///     .compute()?;
/// # Ok(()) }
/// ```
pub fn read_json_lines<T: Element>(paths: impl Into<Paths>) -> Result<Bag<T>> {
    read_json_lines_with(paths, &ReadOptions::default())
}

/// [`read_json_lines`] with options (block size, compression, skipping bad
/// lines).
pub fn read_json_lines_with<T: Element>(paths: impl Into<Paths>, options: &ReadOptions) -> Result<Bag<T>> {
    text_source(
        paths.into(),
        options,
        "read-json-lines",
        JsonLines::<T>::new(),
        SourceSpec::JsonLines,
    )
}

/// The lines of [`read_json_lines`]: each line not blank is a record of
/// type `T`.
struct JsonLines<T> {
    type_name: &'static str,
    record: std::marker::PhantomData<fn() -> T>,
}

impl<T> JsonLines<T> {
    fn new() -> Self {
        JsonLines {
            type_name: short_type_name(std::any::type_name::<T>()),
            record: std::marker::PhantomData,
        }
    }
}

impl<T: Element> LineParser<T> for JsonLines<T> {
    const AHEAD: bool = true;

    fn parse(&self, line: Line<'_>, pos: &LinePos<'_>, bad: Option<&BadLines>, sink: &mut Sink<'_, T>) -> Flow {
        // The UTF-8 check of the line was made by the reader, for many
        // lines at once, so that the parser need not check every string it
        // reads.
        let text = match line.text {
            Some(text) => text.trim_ascii(),
            None => {
                let trimmed = line.bytes.trim_ascii();
                let indent = line.bytes.len() - line.bytes.trim_ascii_start().len();
                match std::str::from_utf8(trimmed) {
                    Ok(text) => text,
                    Err(e) => {
                        return bad_line(
                            bad,
                            pos,
                            Some(indent + e.valid_up_to() + 1),
                            format!("not valid UTF-8: {e}"),
                        );
                    }
                }
            }
        };
        if text.is_empty() {
            return Ok(());
        }
        // The fast path parses the common line; serde_json parses what it
        // leaves, and names what is wrong with a bad line.
        if let Ok(record) = crate::json::from_str::<T>(text) {
            return sink(record);
        }
        self.by_serde_json(text, line.bytes, pos, bad, sink)
    }

    #[inline(always)]
    fn parse_ahead(&self, rest: &str, sink: &mut Sink<'_, T>) -> Option<std::result::Result<usize, Stop>> {
        // A good line, parsed to its end by the fast path; anything else
        // (a blank line, an error, what the fast path leaves) is cut and
        // parsed as a line.
        let (record, len) = crate::json::from_line::<T>(rest).ok()?;
        Some(sink(record).map(|()| len))
    }
}

impl<T: Element> JsonLines<T> {
    /// A line the fast path left: serde_json's record, or its error.
    #[cold]
    #[inline(never)]
    fn by_serde_json(
        &self,
        text: &str,
        line: &[u8],
        pos: &LinePos<'_>,
        bad: Option<&BadLines>,
        sink: &mut Sink<'_, T>,
    ) -> Flow {
        match serde_json::from_str::<T>(text) {
            Ok(record) => sink(record),
            Err(e) => {
                // serde_json ends its message with the position in the
                // parsed text; the line is ours to name, the column stays.
                let indent = line.len() - line.trim_ascii_start().len();
                let message = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let message = message.strip_suffix(&suffix).unwrap_or(&message);
                let column = (e.column() > 0).then(|| e.column() + indent);
                let type_name = self.type_name;
                bad_line(bad, pos, column, format!("not a valid {type_name}: {message}"))
            }
        }
    }
}

/// Output file `i`: the pattern with `*` replaced by `name`, or a file
/// `name.part` in the pattern taken as a directory.
fn output_path(pattern: &str, name: &str) -> PathBuf {
    if pattern.contains('*') {
        PathBuf::from(pattern.replace('*', name))
    } else {
        Path::new(pattern).join(format!("{name}.part"))
    }
}

/// An output file, plain or gzip (the encoder is boxed: it is several
/// hundred bytes, the plain writer a few words).
enum Writer {
    Plain(BufWriter<File>),
    Gzip(Box<GzEncoder<BufWriter<File>>>),
}

impl Writer {
    fn create(path: &Path) -> io::Result<Writer> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = BufWriter::with_capacity(BUFFER, File::create(path)?);
        let gzip = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        Ok(if gzip {
            Writer::Gzip(Box::new(GzEncoder::new(file, GzLevel::default())))
        } else {
            Writer::Plain(file)
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Writer::Plain(w) => w.write_all(bytes),
            Writer::Gzip(w) => w.write_all(bytes),
        }
    }

    fn finish(self) -> io::Result<()> {
        let mut inner = match self {
            Writer::Plain(w) => w,
            Writer::Gzip(w) => w.finish()?,
        };
        inner.flush()
    }
}

type Format<T> = dyn Fn(&T, &mut Vec<u8>) -> Result<()> + Send + Sync;

impl<T: Element> Bag<T> {
    fn write_files(
        &self,
        prefix: &str,
        pattern: &str,
        name: &dyn Fn(usize) -> String,
        format: Arc<Format<T>>,
    ) -> Item<Vec<PathBuf>> {
        let src = &self.source;
        let paths: Vec<String> = (0..self.npartitions())
            .map(|i| output_path(pattern, &name(i)).to_string_lossy().into_owned())
            .collect();
        let mut tok = Tokenizer::new();
        tok.str(prefix).u64(src.token);
        for p in &paths {
            tok.str(p);
        }
        let token = tok.finish();
        let stage = src.stage.clone();
        let op = BagOp::build(
            "blockwise.bag.write-text",
            extend_label(&src.label, prefix).to_string(),
            src.fns.clone(),
            std::any::type_name::<T>(),
            move |args| {
                let (path, rest) = args
                    .split_last()
                    .ok_or_else(|| Error::graph("a write task without its path"))?;
                let path = PathBuf::from(
                    path.downcast_ref::<String>()
                        .ok_or_else(|| Error::graph("a write task's path is not a string"))?,
                );
                let write_error = |e: io::Error| io_error(format!("cannot write {}: {e}", path.display()));
                let mut writer = Writer::create(&path).map_err(write_error)?;
                let mut line = Vec::with_capacity(256);
                drive(&stage, rest, &mut |x| {
                    line.clear();
                    format(&x, &mut line)?;
                    line.push(b'\n');
                    writer.write_all(&line).map_err(|e| Stop::Fail(write_error(e)))
                })?;
                writer.finish().map_err(write_error)?;
                Ok(Arc::new(Scalar(path)) as Value)
            },
        );
        let write_name = Name::new(&format!("{prefix}-{token:016x}"));
        let tasks = src
            .inputs
            .iter()
            .zip(&paths)
            .enumerate()
            .map(|(i, (inputs, path))| {
                let mut inputs = inputs.clone();
                inputs.push(Input::Literal(Arc::new(path.clone())));
                (Key::new(write_name.clone(), &[i as u32]), Task::new(op.clone(), inputs))
            })
            .collect();
        let writes = Layer::new(write_name, src.deps.to_vec(), LayerBody::Tasks(tasks));
        let gather_name = Name::new(&format!("{prefix}-paths-{token:016x}"));
        let gather = BagOp::build(
            "blockwise.bag.gather-paths",
            "paths",
            Arc::from(Vec::new()),
            "std::path::PathBuf",
            |args| {
                let paths = args.iter().map(scalar_of::<PathBuf>).collect::<Result<Vec<_>>>()?;
                Ok(Arc::new(Scalar(paths)) as Value)
            },
        );
        let key = Key::single(gather_name.clone());
        let inputs = writes.keys().into_iter().map(Input::Key).collect();
        let layer = Layer::single(gather_name, vec![writes], Task::new(gather, inputs));
        Item::new(layer, key)
    }

    /// Writes each record as one line of JSON, one file per partition (see
    /// [`Bag::to_textfiles`] for the names and compression). Computing the
    /// returned item writes the files and gives their paths.
    pub fn to_json_lines(&self, pattern: &str) -> Item<Vec<PathBuf>> {
        let n = self.npartitions();
        let format: Arc<Format<T>> = Arc::new(|x, out| {
            serde_json::to_writer(&mut *out, x)
                .map_err(|e| Error::invalid(format!("cannot write a record as JSON: {e}")))
        });
        self.write_files("to-json-lines", pattern, &|i| padded(i, n), format)
    }
}

/// `i` zero-padded to the width of the largest index, so names sort in
/// partition order (Dask's `build_name_function`).
fn padded(i: usize, n: usize) -> String {
    let width = n.saturating_sub(1).max(1).to_string().len();
    format!("{i:0width$}")
}

impl<T: Element + fmt::Display> Bag<T> {
    /// Writes each record as one line (its `Display`), one file per
    /// partition (Dask's `to_textfiles`). `pattern` holds a `*`, replaced by
    /// the partition index zero-padded to a common width
    /// (`out/part-*.txt.gz` → `out/part-0.txt.gz` …), or names a directory,
    /// which gets `0.part`, `1.part`, …. Files ending in `.gz` are gzip;
    /// missing directories are created. Computing the returned item writes
    /// the files and gives their paths, in partition order.
    pub fn to_textfiles(&self, pattern: &str) -> Item<Vec<PathBuf>> {
        let n = self.npartitions();
        self.to_textfiles_with(pattern, move |i| padded(i, n))
    }

    /// [`Bag::to_textfiles`] with `name(i)` in place of `*` for partition `i`.
    pub fn to_textfiles_with(&self, pattern: &str, name: impl Fn(usize) -> String) -> Item<Vec<PathBuf>> {
        let format: Arc<Format<T>> =
            Arc::new(|x, out| write!(out, "{x}").map_err(|e| Error::invalid(format!("cannot format a record: {e}"))));
        self.write_files("to-textfiles", pattern, &name, format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `read_lines` hands out from `[start, end)` of `content`
    /// through a buffer of `capacity` bytes (as `read_block` reads a block),
    /// with their text when they are valid UTF-8.
    fn lines_with_text(
        content: &[u8],
        capacity: usize,
        start: u64,
        end: Option<u64>,
    ) -> Vec<(Vec<u8>, Option<String>)> {
        let mut reader = std::io::Cursor::new(content);
        let from = start.saturating_sub(1);
        reader.seek(SeekFrom::Start(from)).unwrap();
        let mut out = Collect(Vec::new());
        let extent = Extent {
            path: Path::new("mem"),
            start: from,
            skip_first: start > 0,
            end,
            gzip: false,
        };
        let flow = read_lines(reader, &extent, capacity, &mut out);
        assert!(flow.is_ok(), "reading failed");
        out.0
    }

    /// Keeps every line with its text.
    struct Collect(Vec<(Vec<u8>, Option<String>)>);

    impl OnLine for Collect {
        const AHEAD: bool = false;

        fn ahead(&mut self, _rest: &str) -> Option<std::result::Result<usize, Stop>> {
            None
        }

        fn line(&mut self, line: Line<'_>, _pos: &LinePos<'_>) -> Flow {
            self.0.push((line.bytes.to_vec(), line.text.map(str::to_string)));
            Ok(())
        }
    }

    /// The lines' bytes, as [`lines_with_text`]; checks that each text is
    /// the line's, when it is valid UTF-8.
    fn lines_via(content: &[u8], capacity: usize, start: u64, end: Option<u64>) -> Vec<Vec<u8>> {
        lines_with_text(content, capacity, start, end)
            .into_iter()
            .map(|(bytes, text)| {
                assert_eq!(text.as_deref(), std::str::from_utf8(&bytes).ok(), "{bytes:?}");
                bytes
            })
            .collect()
    }

    #[test]
    fn lines_cut_by_the_buffer_read_like_whole_ones() {
        let content = b"alpha beta\r\n\nx\nlonger line with words\r\n\r\nlast\r";
        let expected: Vec<&[u8]> = vec![b"alpha beta", b"", b"x", b"longer line with words", b"", b"last\r"];
        for capacity in [1, 2, 3, 5, 8, 13, 64, 4096] {
            assert_eq!(lines_via(content, capacity, 0, None), expected, "capacity {capacity}");
        }
        // A block: the lines that start before its end, from its start.
        // "x\n" starts at 13; "longer…" at 15.
        for capacity in [1, 4, 4096] {
            assert_eq!(
                lines_via(content, capacity, 13, Some(15)),
                vec![b"x".to_vec()],
                "capacity {capacity}"
            );
            assert_eq!(
                lines_via(content, capacity, 13, Some(16)),
                vec![b"x".to_vec(), b"longer line with words".to_vec()],
                "capacity {capacity}"
            );
        }
        assert_eq!(lines_via(b"", 4, 0, None), Vec::<Vec<u8>>::new());
        // A block starting inside the only line has none, whether or not
        // the byte before it is the file's first.
        for capacity in [1, 2, 4096] {
            for start in 1..3 {
                assert_eq!(lines_via("é!".as_bytes(), capacity, start, None), Vec::<Vec<u8>>::new());
            }
            assert_eq!(lines_via(b"a\nb", capacity, 1, None), vec![b"b".to_vec()]);
            assert_eq!(lines_via(b"a\nb", capacity, 2, None), vec![b"b".to_vec()]);
            assert_eq!(lines_via(b"a\nb", capacity, 3, None), Vec::<Vec<u8>>::new());
        }
        assert_eq!(lines_via(b"\n", 4, 0, None), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn each_line_has_its_text_exactly_when_it_is_utf8() {
        // Valid and invalid lines side by side, characters of 2 to 4 bytes
        // cut by every buffer size, a bad byte at the start, middle and end
        // of a line, and a cut sequence before a line end.
        let content: &[u8] =
            b"caf\xc3\xa9 \xe2\x9c\x93\n\xff start\nmid \xc3\x28 dle\nend \xe2\x82\n\xf0\x9f\x98\x80 ok\r\n\nlatin1 \xe9t\xe9\nlast \xf0\x9f\x98";
        let expected: Vec<&[u8]> = content
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .collect();
        for capacity in [1, 2, 3, 4, 5, 7, 8, 13, 16, 64, 4096] {
            let lines = lines_with_text(content, capacity, 0, None);
            let bytes: Vec<&[u8]> = lines.iter().map(|(b, _)| b.as_slice()).collect();
            assert_eq!(bytes, expected, "capacity {capacity}");
            let valid: Vec<bool> = lines.iter().map(|(_, t)| t.is_some()).collect();
            assert_eq!(
                valid,
                [true, false, false, false, true, true, false, false],
                "capacity {capacity}"
            );
            for (b, t) in &lines {
                assert_eq!(t.as_deref(), std::str::from_utf8(b).ok(), "capacity {capacity}");
            }
            // A block starting in the middle of a line: from the next one.
            let from_mid: Vec<Vec<u8>> = lines_via(content, capacity, 14, None);
            assert_eq!(from_mid.len(), expected.len() - 2, "capacity {capacity}");
        }
    }

    #[test]
    fn json_lines_parsed_to_their_end_are_the_lines_serde_json_parses() {
        // Good lines with margins, blank lines, `\r\n`, a document over
        // two lines (two bad lines), margins JSON does not call whitespace,
        // trailing garbage, escapes, a line that is not UTF-8, and a last
        // line without a line ending.
        let content: &[u8] = b"{\"a\":1}\n  [1, 2]  \r\n\n\t \n{\"a\":\n2}\n\x0c{\"b\":3}\x0c\n\"s\" x\n{\"c\":\"\\u00e9\"}\r\r\n42\n\xff\n-0\n[3]";
        let mut expected = Vec::new();
        let mut expected_bad = 0;
        for line in content.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line).trim_ascii();
            match std::str::from_utf8(line) {
                Ok("") => {}
                Ok(text) => match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(v) => expected.push(v),
                    Err(_) => expected_bad += 1,
                },
                Err(_) => expected_bad += 1,
            }
        }
        assert_eq!((expected.len(), expected_bad), (7, 4));
        for capacity in [1, 2, 3, 7, 16, 4096] {
            let bad = BadLines::new();
            let mut got = Vec::new();
            let parser = JsonLines::<serde_json::Value>::new();
            let mut sink = |v| {
                got.push(v);
                Ok(())
            };
            let mut parsing = Parsing {
                parse: &parser,
                bad: Some(&bad),
                sink: &mut sink,
            };
            let extent = Extent {
                path: Path::new("mem"),
                start: 0,
                skip_first: false,
                end: None,
                gzip: false,
            };
            let flow = read_lines(std::io::Cursor::new(content), &extent, capacity, &mut parsing);
            assert!(flow.is_ok(), "capacity {capacity}");
            assert_eq!(got, expected, "capacity {capacity}");
            assert_eq!(bad.count(), expected_bad, "capacity {capacity}");
            let lines: Vec<u64> = bad.examples().iter().map(|b| b.line).collect();
            assert_eq!(lines, [5, 6, 8, 11], "capacity {capacity}");
        }
    }

    #[test]
    fn output_names() {
        assert_eq!(output_path("out/*.txt.gz", "03"), PathBuf::from("out/03.txt.gz"));
        assert_eq!(output_path("out", "3"), PathBuf::from("out/3.part"));
        assert_eq!(padded(3, 12), "03");
        assert_eq!(padded(0, 1), "0");
        assert_eq!(padded(7, 10), "7");
    }

    #[test]
    fn compression_is_inferred_from_the_extension() {
        assert!(is_gzip(Path::new("a.json.gz"), Compression::Infer).unwrap());
        assert!(!is_gzip(Path::new("a.json"), Compression::Infer).unwrap());
        assert!(!is_gzip(Path::new("a.json.gz"), Compression::None).unwrap());
        let err = is_gzip(Path::new("a.json.bz2"), Compression::Infer).unwrap_err();
        assert!(err.to_string().contains("bz2"), "{err}");
    }
}
