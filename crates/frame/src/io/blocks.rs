//! Files, globs and byte-range blocks of line-oriented text.
//!
//! A large text file is read as several partitions: byte ranges of about
//! `blocksize` bytes, cut at line boundaries. The rule, as Dask's: the block
//! `[start, end)` holds every line whose first byte lies in `[start, end)`.
//! Its task skips to the first line that starts at or after `start` and reads
//! through the end of the line that holds byte `end - 1`. Every line then
//! belongs to exactly one block, and no task needs to know where another
//! block's lines begin — blocks are planned from file sizes alone, without
//! reading a byte.
//!
//! A quoted CSV field may hold a line break. A block boundary that falls
//! inside such a field would cut the record in two; the reader detects it (a
//! block that does not hold an even number of quote characters cannot end
//! outside a quoted field) and fails with an error naming the file and the
//! byte range, and suggesting one partition per file. Gzip files are never
//! split (one partition per file).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use blockwise_core::{Error, ErrorKind, Result};
use polars::polars_utils::mmap::MMapSemaphore;
use serde::{Deserialize, Serialize};

use crate::polars_api::io_err;

/// Paths given to a reader: a glob pattern, a file, a directory, or a list.
pub trait IntoPaths {
    /// The patterns or paths, unexpanded.
    fn into_patterns(self) -> Vec<String>;
}

impl IntoPaths for &str {
    fn into_patterns(self) -> Vec<String> {
        vec![self.to_string()]
    }
}
impl IntoPaths for String {
    fn into_patterns(self) -> Vec<String> {
        vec![self]
    }
}
impl IntoPaths for &String {
    fn into_patterns(self) -> Vec<String> {
        vec![self.clone()]
    }
}
impl IntoPaths for &Path {
    fn into_patterns(self) -> Vec<String> {
        vec![self.to_string_lossy().into_owned()]
    }
}
impl IntoPaths for PathBuf {
    fn into_patterns(self) -> Vec<String> {
        vec![self.to_string_lossy().into_owned()]
    }
}
impl IntoPaths for &PathBuf {
    fn into_patterns(self) -> Vec<String> {
        vec![self.to_string_lossy().into_owned()]
    }
}
impl<T: IntoPaths> IntoPaths for Vec<T> {
    fn into_patterns(self) -> Vec<String> {
        self.into_iter().flat_map(IntoPaths::into_patterns).collect()
    }
}
impl<T: IntoPaths + Clone> IntoPaths for &[T] {
    fn into_patterns(self) -> Vec<String> {
        self.iter().cloned().flat_map(IntoPaths::into_patterns).collect()
    }
}
impl<T: IntoPaths + Clone, const N: usize> IntoPaths for [T; N] {
    fn into_patterns(self) -> Vec<String> {
        self.into_iter().flat_map(IntoPaths::into_patterns).collect()
    }
}

/// Expands patterns into files, in order: a glob expands to its matches
/// sorted by name, a directory to the files in it whose name ends with one
/// of `extensions` (sorted; hidden and `_`-prefixed files skipped), a file
/// to itself. A pattern that matches nothing is an error.
pub(crate) fn expand(patterns: Vec<String>, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for pattern in patterns {
        let path = Path::new(&pattern);
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| io_err(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .filter(|p| {
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    !name.starts_with('.') && !name.starts_with('_') && extensions.iter().any(|e| name.ends_with(e))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("the directory {pattern} holds no {} files", extensions.join(" or ")),
                ));
            }
            out.extend(files);
        } else if pattern.contains(['*', '?', '[']) {
            let mut files: Vec<PathBuf> = glob::glob(&pattern)
                .map_err(|e| Error::invalid(format!("bad glob pattern {pattern:?}: {e}")))?
                .filter_map(|r| r.ok())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(Error::new(ErrorKind::Io, format!("no file matches {pattern:?}")));
            }
            out.extend(files);
        } else {
            if !path.is_file() {
                return Err(Error::new(ErrorKind::Io, format!("{pattern}: no such file")));
            }
            out.push(path.to_path_buf());
        }
    }
    if out.is_empty() {
        return Err(Error::invalid("no path given"));
    }
    Ok(out)
}

/// Whether a path names a gzip file (by its extension).
pub(crate) fn is_gzip(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz") || e.eq_ignore_ascii_case("gzip"))
}

/// One partition's share of a text file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Block {
    /// The file.
    pub(crate) path: String,
    /// First byte of the range (lines starting before it belong to the
    /// previous block).
    pub(crate) start: u64,
    /// One past the last byte of the range.
    pub(crate) end: u64,
    /// The file's size when planned.
    pub(crate) file_len: u64,
    /// Whether the file is gzip-compressed (then the block is the file).
    pub(crate) gzip: bool,
}

impl Block {
    /// Whether the block starts at the top of its file (where the header is).
    pub(crate) fn is_first(&self) -> bool {
        self.start == 0
    }

    /// Whether the block is all of its file.
    pub(crate) fn is_whole_file(&self) -> bool {
        self.start == 0 && self.end >= self.file_len
    }
}

/// Plans the blocks of `files`: one per file when `blocksize` is `None` or
/// a file is compressed, else ranges of `blocksize` bytes.
pub(crate) fn plan_blocks(files: &[PathBuf], blocksize: Option<u64>) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    for f in files {
        let len = std::fs::metadata(f).map_err(|e| io_err(f, e))?.len();
        let gzip = is_gzip(f);
        let path = f.to_string_lossy().into_owned();
        match blocksize {
            Some(bs) if !gzip && len > bs && bs > 0 => {
                let mut start = 0;
                while start < len {
                    let end = (start + bs).min(len);
                    blocks.push(Block {
                        path: path.clone(),
                        start,
                        end,
                        file_len: len,
                        gzip,
                    });
                    start = end;
                }
            }
            _ => blocks.push(Block {
                path,
                start: 0,
                end: len,
                file_len: len,
                gzip,
            }),
        }
    }
    Ok(blocks)
}

/// The text of a block: its file's bytes mapped into memory, or read into
/// a buffer.
pub(crate) enum BlockBytes {
    /// Read (small blocks, gzip).
    Owned(Vec<u8>),
    /// `range` of the file, mapped: no copy, no fresh memory to fault in.
    Mapped {
        map: MMapSemaphore,
        range: std::ops::Range<usize>,
    },
}

impl std::ops::Deref for BlockBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            BlockBytes::Owned(v) => v,
            BlockBytes::Mapped { map, range } => &map.as_ref()[range.clone()],
        }
    }
}

/// Blocks from this size on are mapped rather than read (below it, a read
/// is as cheap as setting up a mapping).
const MAP_FROM: u64 = 1 << 20;

/// The text of a block, `(bytes, offset of its first byte in the file)`,
/// without copying it out of the page cache: large uncompressed blocks are
/// memory-mapped (as Polars maps the files its own readers scan). The
/// bytes are the same as [`load`]'s.
pub(crate) fn load_mapped(block: &Block) -> Result<(BlockBytes, u64)> {
    load_mapped_from(block, MAP_FROM)
}

/// [`load_mapped`], mapping blocks of at least `min` bytes.
fn load_mapped_from(block: &Block, min: u64) -> Result<(BlockBytes, u64)> {
    if block.gzip || block.file_len == 0 || block.end.saturating_sub(block.start) < min.max(1) {
        let (v, begin) = load(block)?;
        return Ok((BlockBytes::Owned(v), begin));
    }
    let path = Path::new(&block.path);
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let map = MMapSemaphore::new_from_file(&file).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("{}: cannot map the file into memory: {e}", block.path),
        )
    })?;
    let bytes: &[u8] = map.as_ref();
    let len = bytes.len();
    let newline_after = |from: usize| {
        bytes[from.min(len)..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| from + p + 1)
    };
    let begin = if block.start == 0 {
        0
    } else {
        // Skip the line that holds byte `start - 1`.
        newline_after(block.start as usize - 1).unwrap_or(len)
    };
    if block.start != 0 && begin as u64 >= block.end {
        return Ok((BlockBytes::Owned(Vec::new()), begin as u64));
    }
    let mut end = (block.end as usize).min(len);
    if block.end < block.file_len && end > begin && bytes[end - 1] != b'\n' {
        // Finish the line that holds byte `end - 1`.
        end = newline_after(end).unwrap_or(len);
    }
    let end = end.max(begin);
    Ok((BlockBytes::Mapped { map, range: begin..end }, begin as u64))
}

/// The text of a block: `(bytes, offset of its first byte in the file)`.
pub(crate) fn load(block: &Block) -> Result<(Vec<u8>, u64)> {
    let path = Path::new(&block.path);
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    if block.gzip {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(BufReader::new(file))
            .read_to_end(&mut out)
            .map_err(|e| Error::new(ErrorKind::Io, format!("{}: cannot decompress gzip: {e}", block.path)))?;
        return Ok((out, 0));
    }
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let begin = if block.start == 0 {
        0
    } else {
        reader
            .seek(SeekFrom::Start(block.start - 1))
            .map_err(|e| io_err(path, e))?;
        let mut skipped = Vec::new();
        let n = reader.read_until(b'\n', &mut skipped).map_err(|e| io_err(path, e))? as u64;
        block.start - 1 + n
    };
    if begin >= block.end && block.start != 0 {
        // The block holds no line start.
        return Ok((Vec::new(), begin));
    }
    reader.seek(SeekFrom::Start(begin)).map_err(|e| io_err(path, e))?;
    let want = block.end.saturating_sub(begin);
    let mut out = Vec::with_capacity(want as usize + 256);
    (&mut reader)
        .take(want)
        .read_to_end(&mut out)
        .map_err(|e| io_err(path, e))?;
    if block.end < block.file_len && out.last() != Some(&b'\n') {
        // Finish the line that holds byte `end - 1`.
        reader.read_until(b'\n', &mut out).map_err(|e| io_err(path, e))?;
    }
    Ok((out, begin))
}

/// The first `limit` bytes of a file (decompressed for gzip), cut after the
/// last complete line when the file is longer.
pub(crate) fn sample(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut out = Vec::new();
    if is_gzip(path) {
        flate2::read::MultiGzDecoder::new(BufReader::new(file))
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("{}: cannot decompress gzip: {e}", path.display()),
                )
            })?;
    } else {
        file.take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| io_err(path, e))?;
    }
    if out.len() > limit {
        out.truncate(limit);
        if let Some(pos) = out.iter().rposition(|&b| b == b'\n') {
            out.truncate(pos + 1);
        }
    }
    Ok(out)
}

/// The 1-based line number of byte `offset` of a file (counting `\n`).
pub(crate) fn line_of_offset(path: &Path, offset: u64) -> Result<u64> {
    if offset == 0 {
        return Ok(1);
    }
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file).take(offset);
    let mut buf = [0u8; 1 << 16];
    let mut lines = 1u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn every_line_belongs_to_exactly_one_block() {
        let dir = std::env::temp_dir().join(format!("bw-blocks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = (0..200).map(|i| format!("{i},{}\n", "x".repeat(i % 13))).collect();
        let p = write(&dir, "a.csv", &text);
        for bs in [1u64, 2, 7, 16, 33, 100, 1000, 100_000] {
            let blocks = plan_blocks(std::slice::from_ref(&p), Some(bs)).unwrap();
            let mut joined = Vec::new();
            let mut mapped = Vec::new();
            for b in &blocks {
                let (bytes, begin) = load(b).unwrap();
                let (m, mbegin) = load_mapped_from(b, 0).unwrap();
                assert_eq!((&*m, mbegin), (&bytes[..], begin), "blocksize {bs}, block {b:?}");
                joined.extend(bytes);
                mapped.extend_from_slice(&m);
            }
            assert_eq!(String::from_utf8(joined).unwrap(), text, "blocksize {bs}");
            assert_eq!(String::from_utf8(mapped).unwrap(), text, "blocksize {bs}, mapped");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
