//! A CSV block read and the partial of a group-by over it, in one pass.
//!
//! `read_csv(..).groupby([key]).agg(..)` with plain aggregations (sum,
//! count, size, mean, min, max) needs, per block, one small table: for each
//! key, sums, counts and extremes. The unfused tasks build it the long way —
//! Polars tokenizes the block, builds a string column of keys and a float
//! column of values, then its group-by hashes every string again. The fused
//! task reads the text in pieces of 64 KiB of whole lines. For each piece,
//! one pass eight bytes at a time lists where the separators and line
//! breaks are (and notes quote characters and non-ASCII bytes); with the
//! schema's number of fields, field `i` of a line lies between two known
//! positions, so no branch depends on field lengths. The key's bytes are
//! hashed straight into a small table (keys of up to 16 bytes are compared
//! as two machine words) and the value is parsed in place: no column is
//! ever built. It returns the frame the unfused partial returns: same
//! columns, same dtypes, same values (sums are plain, in row order, as
//! Polars' grouped sums are).
//!
//! The fused scan reads only what it can read exactly as Polars' CSV parser
//! would. Anything else makes it give up on the block, and the block goes
//! through the unfused read and partial (which also gives the errors, with
//! file, line and column): quote characters anywhere in the block, blank
//! lines, lines with more or fewer fields than the schema has columns
//! (Polars reads them with missing values, or skips the extra fields
//! when it reads some columns only), values that are not plain decimal
//! numbers (`-12.5`, `3`, `1e-7`; Polars also reads `+1`, `.5`, `inf`,
//! leading blanks …), a key dtype other than text or `Int64`, a value dtype
//! other than `Float64` or `Int64`, a filter or a `head` pushed into the
//! reader, or columns read besides the key and the aggregated ones. Empty
//! fields and the configured null strings are missing values, a `\r`
//! before a line break is dropped, and the last line needs no line break —
//! as in Polars.
//!
//! The planner uses this task for a group-by partial whose input is a CSV
//! reader nothing else reads; the configuration key
//! [`FUSE_CSV_AGGREGATE_KEY`] (`false`) turns it off.

use std::collections::HashMap;

use blockwise_core::{Result, Value};
use polars::prelude::{Column, DataFrame as PlFrame, DataType, NamedFrom, Series as PlSeries};
use serde::{Deserialize, Serialize};

use super::blocks;
use super::csv::ReadCsvTask;
use crate::ops::{FrameTask, register_task};
use crate::partition::value_of;
use crate::polars_api::{self, PlResultExt};
use crate::reduce::{AggKind, AggPlan};

/// The configuration key that turns the fused CSV group-by scan off
/// (`false`; missing means on). Results are the same either way.
pub const FUSE_CSV_AGGREGATE_KEY: &str = "frame.fuse-csv-aggregate";

/// Whether the planner may fuse CSV reads with group-by partials.
pub(crate) fn enabled() -> bool {
    blockwise_core::config::get_bool(FUSE_CSV_AGGREGATE_KEY, true).unwrap_or(false)
}

/// Reads one CSV block and returns the group-by partial of its rows.
#[derive(Serialize, Deserialize)]
pub(crate) struct ReadCsvAggregateTask {
    /// The read the unfused path runs.
    pub(crate) read: ReadCsvTask,
    /// The group-by whose partial is computed.
    pub(crate) plan: AggPlan,
}

impl FrameTask for ReadCsvAggregateTask {
    const NAME: &'static str = "frame.read_csv_aggregate";
    fn run(&self, _args: &[Value]) -> Result<Value> {
        if let Some(df) = self.fused()? {
            return Ok(value_of(df));
        }
        self.unfused().map(value_of)
    }
}
register_task!(ReadCsvAggregateTask);

impl ReadCsvAggregateTask {
    /// Whether the task can take the fused path at all (from its
    /// parameters only). The planner asks before it builds the task.
    pub(crate) fn can_fuse(read: &ReadCsvTask, plan: &AggPlan) -> bool {
        Shape::of(read, plan).is_some()
    }

    /// The read, then the partial: what the fused path must equal.
    pub(crate) fn unfused(&self) -> Result<PlFrame> {
        self.plan.partial(self.read.read()?)
    }

    /// The partial from one pass over the text, or `None` when the block
    /// holds anything the scan does not read exactly as Polars would.
    pub(crate) fn fused(&self) -> Result<Option<PlFrame>> {
        let Some(shape) = Shape::of(&self.read, &self.plan) else {
            return Ok(None);
        };
        let r = &self.read;
        let (bytes, _) = blocks::load_mapped(&r.block)?;
        let has_header = r.block.is_first() && r.format.has_header;
        if has_header {
            r.check_header(&bytes)?;
        }
        if r.block.is_first() && polars_api::looks_compressed(&bytes) {
            return Ok(None);
        }
        let body: &[u8] = if has_header {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(p) => &bytes[p + 1..],
                None => &[],
            }
        } else {
            &bytes
        };
        // Empty blocks are cheap either way; the unfused path gives them
        // their exact (empty) shape.
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(None);
        }
        // As Polars' reader (and the unfused path): with any text column in
        // the file, the text must be valid UTF-8 (checked by the scan).
        let texty = r
            .schema
            .iter_values()
            .any(|d| d.is_string() || polars_api::csv_reads_as_text(d));
        let nulls: Vec<&[u8]> = r.format.null_values.iter().map(|s| s.as_bytes()).collect();
        let Some(table) = scan(body, &shape, r.format.separator, r.format.quote, &nulls, texty) else {
            return Ok(None);
        };
        self.frame(&shape, table)
    }

    /// The partial frame from the scanned table, in the columns and dtypes
    /// of the unfused partial (`None` if they do not line up).
    fn frame(&self, shape: &Shape, table: Table) -> Result<Option<PlFrame>> {
        let Some(table) = table.by_key(shape.key_int) else {
            return Ok(None);
        };
        let key_name = self.plan.keys[0].as_str();
        let mut cols: Vec<Column> = Vec::new();
        cols.push(match &table.keys {
            OutKeys::Text(k) => PlSeries::new(key_name.into(), k.clone()).into(),
            OutKeys::Int(k) => PlSeries::new(key_name.into(), k.clone()).into(),
        });
        for (i, (kind, slot)) in shape.aggs.iter().enumerate() {
            let name = |s: &str| format!("__p{i}_{s}");
            let acc = slot.map(|j| &table.accs[j]);
            let count = |acc: Option<&Acc>| -> Column {
                let n: Vec<u64> = match acc {
                    Some(a) => a.counts(),
                    None => table.rows.clone(),
                };
                PlSeries::new(name("n").into(), n).into()
            };
            match (kind, acc) {
                (AggKind::Size, _) => cols.push(count(None)),
                (AggKind::Count, Some(a)) => cols.push(count(Some(a))),
                (AggKind::Sum, Some(a)) => cols.push(a.sums(&name("s"))),
                (AggKind::Mean, Some(a)) => {
                    cols.push(a.sums(&name("s")));
                    cols.push(count(Some(a)));
                }
                (AggKind::Min, Some(a)) => cols.push(a.extremes(&name("v"), false)),
                (AggKind::Max, Some(a)) => cols.push(a.extremes(&name("v"), true)),
                _ => return Ok(None),
            }
        }
        // The unfused partial of no rows says which columns, in which
        // order, with which dtypes.
        let input = polars_api::schema_from(
            self.plan
                .inputs()
                .into_iter()
                .filter_map(|c| self.read.schema.get(c.as_str()).map(|d| (c.clone(), d.clone()))),
        );
        let want = self.plan.partial(polars_api::empty(&input))?;
        if want.width() != cols.len() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(cols.len());
        for (name, dtype) in want.schema().iter() {
            let Some(c) = cols.iter().find(|c| c.name() == name) else {
                return Ok(None);
            };
            out.push(c.cast(dtype).pl()?);
        }
        Ok(Some(PlFrame::new_infer_height(out).pl()?))
    }
}

// ---------------------------------------------------------------- shape

/// What a field the scan reads is for.
#[derive(Clone, Copy, Debug)]
enum Role {
    Key,
    /// The value slot the field is parsed into.
    Value(usize),
}

/// At most this many distinct aggregated columns are fused.
const MAX_VALUES: usize = 8;

/// What the fused scan reads and computes, from the task's parameters.
#[derive(Debug)]
struct Shape {
    /// The fields read, by index in the line, in line order.
    needed: Vec<(usize, Role)>,
    /// Whether the key is an integer (`Int64`) rather than text.
    key_int: bool,
    /// Per value slot: whether it is an integer (`Int64`) rather than `Float64`.
    value_int: Vec<bool>,
    /// Each aggregation and the value slot it reads (`None` for `size`).
    aggs: Vec<(AggKind, Option<usize>)>,
    /// The number of fields of every line (the schema's columns).
    n_fields: usize,
}

impl Shape {
    fn of(read: &ReadCsvTask, plan: &AggPlan) -> Option<Shape> {
        if read.predicate.is_some() || read.limit.is_some() || read.block.gzip || plan.keys.len() != 1 {
            return None;
        }
        let schema = &read.schema;
        let key = plan.keys[0].as_str();
        let (key_idx, _, key_dtype) = schema.get_full(key)?;
        let key_int = match key_dtype {
            DataType::String => false,
            DataType::Int64 => true,
            _ => return None,
        };
        let mut needed = vec![(key_idx, Role::Key)];
        let mut value_int = Vec::new();
        let mut value_cols: Vec<&str> = Vec::new();
        let mut aggs = Vec::new();
        for a in &plan.aggs {
            let kind = a.kind();
            if !matches!(
                kind,
                AggKind::Sum | AggKind::Count | AggKind::Size | AggKind::Mean | AggKind::Min | AggKind::Max
            ) {
                return None;
            }
            if kind == AggKind::Size {
                aggs.push((kind, None));
                continue;
            }
            let col = a.column();
            if col == key {
                return None;
            }
            let slot = match value_cols.iter().position(|c| *c == col) {
                Some(j) => j,
                None => {
                    let (idx, _, dtype) = schema.get_full(col)?;
                    let int = match dtype {
                        DataType::Float64 => false,
                        DataType::Int64 => true,
                        _ => return None,
                    };
                    value_cols.push(col);
                    value_int.push(int);
                    needed.push((idx, Role::Value(value_cols.len() - 1)));
                    value_cols.len() - 1
                }
            };
            aggs.push((kind, Some(slot)));
        }
        if value_cols.len() > MAX_VALUES {
            return None;
        }
        // The unfused read parses the columns the reader was given; any
        // other than the ones aggregated here would be parsed (and could
        // fail) there, so only those may be asked for.
        let read_cols: Vec<&str> = match &read.columns {
            Some(c) => c.iter().map(String::as_str).collect(),
            None => schema.iter_names().map(|n| n.as_str()).collect(),
        };
        if read_cols.iter().any(|c| *c != key && !value_cols.contains(c)) {
            return None;
        }
        needed.sort_by_key(|(i, _)| *i);
        Some(Shape {
            needed,
            key_int,
            value_int,
            aggs,
            n_fields: schema.len(),
        })
    }
}

// ---------------------------------------------------------------- scan

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of every zero byte of `x` set (and possibly of bytes above
/// the first zero byte: only the lowest set bit is exact).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// The index of the first `a` or `b` in `bytes` at or after `i`, or
/// `bytes.len()`: eight bytes at a time.
#[inline(always)]
fn find2(bytes: &[u8], mut i: usize, a: u8, b: u8) -> usize {
    let (wa, wb) = (LO * u64::from(a), LO * u64::from(b));
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        let m = zero_bytes(w ^ wa) | zero_bytes(w ^ wb);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && bytes[i] != a && bytes[i] != b {
        i += 1;
    }
    i
}

/// A parsed value of one line.
#[derive(Clone, Copy, Debug)]
enum Parsed {
    Null,
    F(f64),
    I(i64),
}

/// Per-group sums, counts of non-missing values and extremes of one value
/// column.
#[derive(Debug)]
enum Acc {
    Float(Vec<FloatCell>),
    Int(Vec<IntCell>),
}

#[derive(Clone, Copy, Debug)]
struct FloatCell {
    sum: f64,
    n: u64,
    min: f64,
    max: f64,
}

impl FloatCell {
    const EMPTY: FloatCell = FloatCell {
        sum: 0.0,
        n: 0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    #[inline(always)]
    fn add(&mut self, x: f64) {
        // No branch on the value (parsed values are never NaN).
        self.sum += x;
        self.n += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn merge(&mut self, o: &FloatCell) {
        self.sum += o.sum;
        self.n += o.n;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

#[derive(Clone, Copy, Debug)]
struct IntCell {
    sum: i64,
    n: u64,
    min: i64,
    max: i64,
}

impl IntCell {
    const EMPTY: IntCell = IntCell {
        sum: 0,
        n: 0,
        min: i64::MAX,
        max: i64::MIN,
    };

    #[inline(always)]
    fn add(&mut self, x: i64) {
        // Wrapping, as Polars' integer sums.
        self.sum = self.sum.wrapping_add(x);
        self.n += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn merge(&mut self, o: &IntCell) {
        self.sum = self.sum.wrapping_add(o.sum);
        self.n += o.n;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

impl Acc {
    fn new(int: bool) -> Acc {
        if int {
            Acc::Int(Vec::new())
        } else {
            Acc::Float(Vec::new())
        }
    }

    fn push_empty(&mut self) {
        match self {
            Acc::Float(v) => v.push(FloatCell::EMPTY),
            Acc::Int(v) => v.push(IntCell::EMPTY),
        }
    }

    #[inline(always)]
    fn add(&mut self, g: usize, x: Parsed) {
        match (self, x) {
            (Acc::Float(v), Parsed::F(x)) => v[g].add(x),
            (Acc::Int(v), Parsed::I(x)) => v[g].add(x),
            _ => {}
        }
    }

    /// The cells regrouped: group `g` folded into `dest[g]` of `n` groups.
    fn regroup(&self, dest: &[usize], n: usize) -> Acc {
        match self {
            Acc::Float(v) => {
                let mut out = vec![FloatCell::EMPTY; n];
                for (c, &d) in v.iter().zip(dest) {
                    out[d].merge(c);
                }
                Acc::Float(out)
            }
            Acc::Int(v) => {
                let mut out = vec![IntCell::EMPTY; n];
                for (c, &d) in v.iter().zip(dest) {
                    out[d].merge(c);
                }
                Acc::Int(out)
            }
        }
    }

    fn counts(&self) -> Vec<u64> {
        match self {
            Acc::Float(v) => v.iter().map(|c| c.n).collect(),
            Acc::Int(v) => v.iter().map(|c| c.n).collect(),
        }
    }

    fn sums(&self, name: &str) -> Column {
        match self {
            Acc::Float(v) => PlSeries::new(name.into(), v.iter().map(|c| c.sum).collect::<Vec<_>>()).into(),
            Acc::Int(v) => PlSeries::new(name.into(), v.iter().map(|c| c.sum).collect::<Vec<_>>()).into(),
        }
    }

    /// Minima (or maxima); missing for a group without values.
    fn extremes(&self, name: &str, max: bool) -> Column {
        match self {
            Acc::Float(v) => PlSeries::new(
                name.into(),
                v.iter()
                    .map(|c| (c.n > 0).then_some(if max { c.max } else { c.min }))
                    .collect::<Vec<_>>(),
            )
            .into(),
            Acc::Int(v) => PlSeries::new(
                name.into(),
                v.iter()
                    .map(|c| (c.n > 0).then_some(if max { c.max } else { c.min }))
                    .collect::<Vec<_>>(),
            )
            .into(),
        }
    }
}

/// The key of a group: up to 16 bytes as two little-endian words (the rest
/// zero), longer keys by hash and position in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyWords {
    w0: u64,
    w1: u64,
    len: usize,
}

/// Groups by key bytes: open addressing over group numbers.
#[derive(Debug)]
struct Groups {
    /// Group number + 1 per slot (0: empty); a power of two long.
    slots: Vec<u32>,
    keys: Vec<KeyWords>,
    hashes: Vec<u64>,
    /// Bytes of the keys longer than 16 bytes.
    arena: Vec<u8>,
    /// The group of the missing key.
    null: Option<usize>,
}

#[inline(always)]
fn mix(w0: u64, w1: u64, len: usize) -> u64 {
    let mut h =
        w0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ w1.wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(31) ^ (len as u64);
    h ^= h >> 32;
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^ (h >> 29)
}

/// The little-endian word of `bytes[..n]` (`n <= 8`), zero above.
#[inline(always)]
fn masked(w: u64, n: usize) -> u64 {
    if n >= 8 { w } else { w & ((1u64 << (8 * n)) - 1) }
}

#[inline(always)]
fn word_at(bytes: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[i..i + 8]);
    u64::from_le_bytes(w)
}

impl Groups {
    fn new() -> Groups {
        Groups {
            slots: vec![0; 256],
            keys: Vec::new(),
            hashes: Vec::new(),
            arena: Vec::new(),
            null: None,
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    /// The group of `text[start..start + len]`: `(group, whether new)`.
    #[inline(always)]
    fn find_or_insert(&mut self, text: &[u8], start: usize, len: usize) -> (usize, bool) {
        let (k, h) = if len <= 16 {
            let (w0, w1) = if start + 16 <= text.len() {
                (word_at(text, start), word_at(text, start + 8))
            } else {
                let mut buf = [0u8; 16];
                buf[..len].copy_from_slice(&text[start..start + len]);
                (word_at(&buf, 0), word_at(&buf, 8))
            };
            let (w0, w1) = if len <= 8 {
                (masked(w0, len), 0)
            } else {
                (w0, masked(w1, len - 8))
            };
            (KeyWords { w0, w1, len }, mix(w0, w1, len))
        } else {
            let h = xxhash_rust::xxh3::xxh3_64(&text[start..start + len]);
            (KeyWords { w0: h, w1: 0, len }, h)
        };
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                break;
            }
            let g = (s - 1) as usize;
            let other = self.keys[g];
            if other.len == k.len && other.w0 == k.w0 {
                if len <= 16 {
                    if other.w1 == k.w1 {
                        return (g, false);
                    }
                } else {
                    let at = other.w1 as usize;
                    if self.arena[at..at + len] == text[start..start + len] {
                        return (g, false);
                    }
                }
            }
            i = (i + 1) & mask;
        }
        let g = self.keys.len();
        let k = if len > 16 {
            let at = self.arena.len();
            self.arena.extend_from_slice(&text[start..start + len]);
            KeyWords { w1: at as u64, ..k }
        } else {
            k
        };
        self.keys.push(k);
        self.hashes.push(h);
        self.slots[i] = g as u32 + 1;
        if self.keys.len() * 2 > self.slots.len() {
            self.grow();
        }
        (g, true)
    }

    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        let mask = n - 1;
        let mut slots = vec![0u32; n];
        for (g, &h) in self.hashes.iter().enumerate() {
            let mut i = h as usize & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = g as u32 + 1;
        }
        self.slots = slots;
    }

    /// The key bytes of group `g` (`None`: the missing key).
    fn key(&self, g: usize) -> Option<Vec<u8>> {
        if self.null == Some(g) {
            return None;
        }
        let k = self.keys[g];
        Some(if k.len <= 16 {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&k.w0.to_le_bytes());
            b[8..].copy_from_slice(&k.w1.to_le_bytes());
            b[..k.len].to_vec()
        } else {
            let at = k.w1 as usize;
            self.arena[at..at + k.len].to_vec()
        })
    }
}

/// What a scan found: groups, rows per group, value cells per group.
#[derive(Debug)]
struct Table {
    groups: Groups,
    rows: Vec<u64>,
    accs: Vec<Acc>,
}

/// Keys of the output, typed.
enum OutKeys {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

/// A table by typed key (distinct byte keys may be one integer: `007`, `7`).
struct KeyedTable {
    keys: OutKeys,
    rows: Vec<u64>,
    accs: Vec<Acc>,
}

impl Table {
    /// The group of the missing key (made on first use; never looked up
    /// by bytes).
    fn null_group(&mut self) -> usize {
        if let Some(g) = self.groups.null {
            return g;
        }
        let g = self.groups.keys.len();
        self.groups.keys.push(KeyWords {
            w0: 0,
            w1: 0,
            len: usize::MAX,
        });
        self.groups.hashes.push(0);
        self.groups.null = Some(g);
        self.add_group();
        g
    }

    fn add_group(&mut self) {
        self.rows.push(0);
        for a in &mut self.accs {
            a.push_empty();
        }
    }

    /// The groups with typed keys, or `None` when a key is not what the
    /// unfused read makes of it exactly (text that is not UTF-8, an integer
    /// this scan does not read).
    fn by_key(self, int: bool) -> Option<KeyedTable> {
        let n = self.groups.len();
        let raw: Vec<Option<Vec<u8>>> = (0..n).map(|g| self.groups.key(g)).collect();
        if !int {
            let keys = raw
                .into_iter()
                .map(|k| k.map(String::from_utf8).transpose().ok())
                .collect::<Option<Vec<_>>>()?;
            return Some(KeyedTable {
                keys: OutKeys::Text(keys),
                rows: self.rows,
                accs: self.accs,
            });
        }
        let mut index: HashMap<Option<i64>, usize> = HashMap::new();
        let mut keys = Vec::new();
        let mut dest = Vec::with_capacity(n);
        for k in raw {
            let k = match k {
                None => None,
                Some(b) => Some(parse_i64(&b)?),
            };
            let d = *index.entry(k).or_insert_with(|| {
                keys.push(k);
                keys.len() - 1
            });
            dest.push(d);
        }
        let m = keys.len();
        let mut rows = vec![0u64; m];
        for (r, &d) in self.rows.iter().zip(&dest) {
            rows[d] += r;
        }
        let accs = self.accs.iter().map(|a| a.regroup(&dest, m)).collect();
        Some(KeyedTable {
            keys: OutKeys::Int(keys),
            rows,
            accs,
        })
    }
}

/// Text is scanned in pieces of about this many bytes, cut after a line
/// break: the piece and its separator positions stay in the L2 cache.
const PIECE: usize = 64 << 10;

/// The high bit of every byte of `x` that is zero, exactly (no borrow
/// between bytes).
#[inline(always)]
fn zero_mask(x: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// The number of bytes flagged in a [`zero_mask`] (one multiply: no
/// `popcnt` in the baseline x86-64 target).
#[inline(always)]
fn flagged(m: u64) -> usize {
    ((m >> 7).wrapping_mul(LO) >> 56) as usize
}

/// What [`structure`] found in a piece.
struct Piece {
    /// Separators and line breaks found.
    len: usize,
    /// Line breaks among them.
    breaks: usize,
    /// Whether a quote character was seen.
    quoted: bool,
    /// Whether a byte above 127 was seen (the text may not be ASCII).
    high: bool,
}

/// The positions (from `start`) of every separator and line break in
/// `text[start..end]`, into `pos[..len]`: 64 bytes at a time with AVX2
/// where the CPU has it, else eight bytes at a time.
fn structure(text: &[u8], start: usize, end: usize, sep: u8, quote: Option<u8>, pos: &mut Vec<u32>) -> Piece {
    if pos.len() < end - start + 80 {
        pos.resize(end - start + 80, 0);
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || structure_avx2(simd, text, start, end, sep, quote, pos),
        );
    }
    structure_words(text, start, end, sep, quote, pos)
}

/// [`structure`] with AVX2: three compares and three bit masks per 64
/// bytes; the first eight positions of each 64 bytes written without a
/// branch.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn structure_avx2(
    simd: pulp::x86::V3,
    text: &[u8],
    start: usize,
    end: usize,
    sep: u8,
    quote: Option<u8>,
    pos: &mut [u32],
) -> Piece {
    use std::arch::x86_64::__m256i;
    let splat = |b: u8| simd.avx._mm256_set1_epi8(b as i8);
    let (vs, vn, vq) = (splat(sep), splat(b'\n'), splat(quote.unwrap_or(sep)));
    let load = |i: usize| -> __m256i {
        let mut a = [0u8; 32];
        a.copy_from_slice(&text[i..i + 32]);
        pulp::bytemuck::cast(a)
    };
    let bits = |v: __m256i| -> u64 { u64::from(simd.avx2._mm256_movemask_epi8(v) as u32) };
    let eq = |a: __m256i, b: __m256i, v: __m256i| -> u64 {
        bits(simd.avx2._mm256_cmpeq_epi8(a, v)) | (bits(simd.avx2._mm256_cmpeq_epi8(b, v)) << 32)
    };
    let (mut len, mut breaks, mut quotes, mut high) = (0usize, 0usize, 0u64, 0u64);
    let mut i = start;
    while i + 64 <= end {
        let (a, b) = (load(i), load(i + 32));
        high |= bits(a) | bits(b);
        let mn = eq(a, b, vn);
        let mut m = eq(a, b, vs) | mn;
        quotes |= eq(a, b, vq);
        breaks += mn.count_ones() as usize;
        let c = m.count_ones() as usize;
        let at = (i - start) as u32;
        for slot in &mut pos[len..len + 8] {
            *slot = at + m.trailing_zeros();
            m &= m.wrapping_sub(1);
        }
        if c > 8 {
            let mut l = len + 8;
            while m != 0 {
                pos[l] = at + m.trailing_zeros();
                m &= m.wrapping_sub(1);
                l += 1;
            }
        }
        len += c;
        i += 64;
    }
    let rest = structure_words(text, i, end, sep, quote, &mut pos[len..]);
    let offset = (i - start) as u32;
    for p in &mut pos[len..len + rest.len] {
        *p += offset;
    }
    Piece {
        len: len + rest.len,
        breaks: breaks + rest.breaks,
        quoted: rest.quoted || (quote.is_some() && quotes != 0),
        high: rest.high || high != 0,
    }
}

/// [`structure`] eight bytes at a time, the first two positions of each
/// word written without a branch (`pos` has room for them).
fn structure_words(text: &[u8], start: usize, end: usize, sep: u8, quote: Option<u8>, pos: &mut [u32]) -> Piece {
    let (ws, wn) = (LO * u64::from(sep), LO * u64::from(b'\n'));
    let wq = LO * u64::from(quote.unwrap_or(sep));
    let (mut len, mut breaks, mut quotes, mut high) = (0usize, 0usize, 0u64, 0u64);
    let mut i = start;
    while i + 8 <= end {
        let w = word_at(text, i);
        high |= w;
        let mn = zero_mask(w ^ wn);
        let mut m = zero_mask(w ^ ws) | mn;
        quotes |= zero_mask(w ^ wq);
        breaks += flagged(mn);
        let c = flagged(m);
        let at = (i - start) as u32;
        pos[len] = at + m.trailing_zeros() / 8;
        m &= m.wrapping_sub(1);
        pos[len + 1] = at + m.trailing_zeros() / 8;
        if c > 2 {
            m &= m.wrapping_sub(1);
            let mut l = len + 2;
            while m != 0 {
                pos[l] = at + m.trailing_zeros() / 8;
                m &= m.wrapping_sub(1);
                l += 1;
            }
        }
        len += c;
        i += 8;
    }
    let mut quoted = quote.is_some() && quotes != 0;
    while i < end {
        let b = text[i];
        high |= u64::from(b);
        quoted |= quote == Some(b);
        if b == sep || b == b'\n' {
            pos[len] = (i - start) as u32;
            len += 1;
            breaks += usize::from(b == b'\n');
        }
        i += 1;
    }
    Piece {
        len,
        breaks,
        quoted,
        high: high & HI != 0,
    }
}

/// Scans the lines of `text` (no header) into a table; `None` when the
/// text holds a quote character or a line the scan does not read exactly
/// as Polars' parser: every line must have the schema's number of fields.
fn scan(text: &[u8], shape: &Shape, sep: u8, quote: Option<u8>, nulls: &[&[u8]], texty: bool) -> Option<Table> {
    let n = text.len();
    let nf = shape.n_fields;
    let mut table = Table {
        groups: Groups::new(),
        rows: Vec::new(),
        accs: shape.value_int.iter().map(|&i| Acc::new(i)).collect(),
    };
    let n_values = shape.value_int.len();
    let mut pos: Vec<u32> = Vec::new();
    let mut values = [Parsed::Null; MAX_VALUES];
    let mut start = 0usize;
    while start < n {
        // A piece of whole lines.
        let mut end = (start + PIECE).min(n);
        if end < n {
            end = match text[start..end].iter().rposition(|&b| b == b'\n') {
                Some(p) => start + p + 1,
                None => find2(text, end, b'\n', b'\n').min(n - 1) + 1,
            };
        }
        if end - start > u32::MAX as usize - 16 {
            return None;
        }
        let piece = structure(text, start, end, sep, quote, &mut pos);
        if piece.quoted || (texty && piece.high && !polars_api::valid_utf8(&text[start..end])) {
            return None;
        }
        let mut len = piece.len;
        let mut lines_wanted = piece.breaks;
        if end == n && text[n - 1] != b'\n' {
            // The last line has no line break: end it at the end of the text.
            pos[len] = (n - start) as u32;
            len += 1;
            lines_wanted += 1;
        }
        // Every line is `nf` fields: `nf - 1` separators, then its end.
        // Groups of `nf` positions that each end at a line break, as many
        // as there are line breaks, are exactly that.
        if len != lines_wanted * nf {
            return None;
        }
        let mut line_start = start;
        let mut k = 0usize;
        while k < len {
            let eol = start + pos[k + nf - 1] as usize;
            if eol < n && text[eol] != b'\n' {
                return None;
            }
            let mut key: Option<(usize, usize)> = None;
            for v in &mut values[..n_values] {
                *v = Parsed::Null;
            }
            for &(idx, role) in &shape.needed {
                let s = if idx == 0 {
                    line_start
                } else {
                    start + pos[k + idx - 1] as usize + 1
                };
                let e = start + pos[k + idx] as usize;
                let mut f = &text[s..e];
                if let [rest @ .., b'\r'] = f {
                    f = rest;
                }
                let missing = f.is_empty() || (!nulls.is_empty() && nulls.contains(&f));
                if missing {
                    continue;
                }
                match role {
                    Role::Key => key = Some((s, f.len())),
                    Role::Value(j) => {
                        values[j] = if shape.value_int[j] {
                            Parsed::I(parse_i64(f)?)
                        } else {
                            Parsed::F(parse_f64(f)?)
                        };
                    }
                }
            }
            let g = match key {
                Some((s, l)) => {
                    let (g, new) = table.groups.find_or_insert(text, s, l);
                    if new {
                        table.add_group();
                    }
                    g
                }
                None => table.null_group(),
            };
            table.rows[g] += 1;
            for (acc, &v) in table.accs.iter_mut().zip(&values[..n_values]) {
                acc.add(g, v);
            }
            line_start = eol + 1;
            k += nf;
        }
        start = end;
    }
    Some(table)
}

/// `10^i` for the exact decimal fast path (Clinger): every power up to
/// `10^22` is exact in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Parses `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?`, correctly rounded (as
/// Polars' `fast_float2`); `None` for anything else.
fn parse_f64(f: &[u8]) -> Option<f64> {
    let (neg, digits) = match f.first() {
        Some(b'-') => (true, &f[1..]),
        _ => (false, f),
    };
    let mut i = 0usize;
    let mut mant: u64 = 0;
    while let Some(&c) = digits.get(i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        mant = mant.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    let int_digits = i;
    if int_digits == 0 {
        return None;
    }
    let mut exp: i64 = 0;
    let mut frac_digits = 0usize;
    if digits.get(i) == Some(&b'.') {
        i += 1;
        let s = i;
        while let Some(&c) = digits.get(i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            mant = mant.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        frac_digits = i - s;
        if frac_digits == 0 {
            return None;
        }
        exp = -(frac_digits as i64);
    }
    if let Some(&(b'e' | b'E')) = digits.get(i) {
        i += 1;
        let eneg = match digits.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let s = i;
        let mut e: i64 = 0;
        while let Some(&c) = digits.get(i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 || i - s >= 6 {
                break;
            }
            e = e * 10 + i64::from(d);
            i += 1;
        }
        if i == s {
            return None;
        }
        exp += if eneg { -e } else { e };
    }
    if i != digits.len() {
        return None;
    }
    let v = if int_digits + frac_digits <= 19 && mant <= 1 << 53 && (-22..=22).contains(&exp) {
        // Both operands exact: one correctly rounded operation.
        let m = mant as f64;
        if exp < 0 {
            m / POW10[(-exp) as usize]
        } else {
            m * POW10[exp as usize]
        }
    } else {
        std::str::from_utf8(digits).ok()?.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Parses `-?[0-9]{1,18}` (leading zeros allowed, as Polars); `None` for
/// anything else.
fn parse_i64(f: &[u8]) -> Option<i64> {
    let (neg, digits) = match f.first() {
        Some(b'-') => (true, &f[1..]),
        _ => (false, f),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + i64::from(d);
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use polars::prelude::{AnyValue, SchemaRef};

    use super::*;
    use crate::io::csv::{CsvOptions, plan};
    use crate::reduce::Agg;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bw-csv-agg-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&d).ok();
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The fused tasks of a group-by of `path` by `key`, one per block.
    fn tasks(path: &Path, options: &CsvOptions, key: &str, aggs: Vec<Agg>) -> Vec<ReadCsvAggregateTask> {
        let source = plan(vec![path.to_path_buf()], options).unwrap();
        let schema: SchemaRef = source.file_schema.clone();
        let agg = AggPlan::new(vec![key.to_string()], aggs, false, &schema).unwrap();
        let inputs = agg.inputs();
        let columns: Vec<String> = schema
            .iter_names()
            .map(|n| n.to_string())
            .filter(|n| inputs.contains(n))
            .collect();
        source
            .blocks
            .iter()
            .map(|b| ReadCsvAggregateTask {
                read: ReadCsvTask {
                    block: b.clone(),
                    format: source.format.clone(),
                    schema: schema.clone(),
                    reference: source.reference.clone(),
                    columns: Some(columns.clone()),
                    predicate: None,
                    limit: None,
                },
                plan: agg.clone(),
            })
            .collect()
    }

    fn all_aggs(value: &str) -> Vec<Agg> {
        vec![
            Agg::new(value, AggKind::Mean),
            Agg::new(value, AggKind::Sum).alias("sum"),
            Agg::new(value, AggKind::Count).alias("count"),
            Agg::new(value, AggKind::Size),
            Agg::new(value, AggKind::Min).alias("min"),
            Agg::new(value, AggKind::Max).alias("max"),
        ]
    }

    /// The rows of a partial frame by key, as text (floats to 1e-9 relative).
    fn rows(df: &PlFrame, key: &str) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = (0..df.height())
            .map(|i| {
                let cell = |c: &Column| match c.get(i).unwrap() {
                    AnyValue::Float64(x) => format!("{:.9e}", x),
                    v => format!("{v}"),
                };
                let k = cell(df.column(key).unwrap());
                (k, df.columns().iter().map(cell).collect())
            })
            .collect();
        out.sort();
        out
    }

    /// Runs every task both ways: the fused path must be taken when
    /// `fused` and must give what the unfused one gives.
    fn check(tasks: &[ReadCsvAggregateTask], key: &str, fused: bool, what: &str) {
        assert!(!tasks.is_empty());
        for (i, t) in tasks.iter().enumerate() {
            let want = t.unfused().unwrap();
            let got = t.fused().unwrap();
            assert_eq!(got.is_some(), fused, "{what}, block {i}: fused path taken?");
            let got = match got {
                Some(g) => g,
                None => crate::partition::frame_of(&t.run(&[]).unwrap()).unwrap(),
            };
            assert_eq!(got.schema(), want.schema(), "{what}, block {i}");
            assert_eq!(
                rows(&got, key),
                rows(&want, key),
                "{what}, block {i}\n got {got}\nwant {want}"
            );
        }
    }

    fn lines(n: usize, end: &str) -> String {
        let mut s = format!("id,category,value,flag{end}");
        for i in 0..n {
            let v = match i % 7 {
                0 => format!("-{}.{:02}", i % 500, i % 100),
                1 => format!("{}e-3", i * 13),
                2 => format!("{}E+2", i % 11),
                3 => format!("{}", i * 3),
                _ => format!("{}.{}", i % 1000, i % 10),
            };
            s.push_str(&format!("{i},cat_{:02},{v},{}{end}", (i * 7919) % 23, i % 2 == 0));
        }
        s
    }

    #[test]
    fn fused_partials_equal_unfused_ones() {
        let dir = temp_dir("plain");
        let p = write(&dir, "a.csv", &lines(8000, "\n"));
        check(
            &tasks(&p, &CsvOptions::new(), "category", all_aggs("value")),
            "category",
            true,
            "lf",
        );
        let blocks = tasks(
            &p,
            &CsvOptions::new().blocksize(Some(10_000)),
            "category",
            all_aggs("value"),
        );
        assert!(blocks.len() > 3);
        check(&blocks, "category", true, "blocks");
        let p = write(&dir, "crlf.csv", &lines(500, "\r\n"));
        check(
            &tasks(&p, &CsvOptions::new(), "category", all_aggs("value")),
            "category",
            true,
            "crlf",
        );
        let text = lines(500, "\n");
        let p = write(&dir, "open.csv", text.trim_end());
        check(
            &tasks(&p, &CsvOptions::new(), "category", all_aggs("value")),
            "category",
            true,
            "no last newline",
        );
        // Keys longer than 16 bytes, and ones of 8 and 16.
        let mut long = String::from("k,v\n");
        for i in 0..400 {
            let k = ["a_rather_long_key_name", "12345678", "1234567890abcdef", "z"][i % 4];
            long.push_str(&format!("{k}{},{}.5\n", i % 3, i));
        }
        let p = write(&dir, "long.csv", &long);
        check(
            &tasks(&p, &CsvOptions::new(), "k", all_aggs("v")),
            "k",
            true,
            "long keys",
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn missing_values_and_null_strings() {
        let dir = temp_dir("missing");
        let text = "k,v,w\nx,1.5,a\n,2.5,b\ny,,c\nx,NA,d\nNA,4,e\ny,-3,f\nz,,g\n";
        let p = write(&dir, "a.csv", text);
        let opts = CsvOptions::new().null_values(["NA"]);
        check(&tasks(&p, &opts, "k", all_aggs("v")), "k", true, "nulls");
        // `z` has no value: its sum is 0, its count 0, its minimum missing.
        let t = &tasks(&p, &opts, "k", all_aggs("v"))[0];
        let df = t.fused().unwrap().unwrap();
        assert_eq!(df.height(), 4, "x, y, z and the missing key\n{df}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn integer_keys_and_values() {
        let dir = temp_dir("ints");
        let mut text = String::from("key,n,x\n");
        for i in 0..600 {
            text.push_str(&format!("{},{},{}\n", [7, -2, 13, 0][i % 4], i as i64 - 300, i % 5));
        }
        let p = write(&dir, "a.csv", &text);
        let aggs = vec![
            Agg::new("n", AggKind::Sum),
            Agg::new("x", AggKind::Mean),
            Agg::new("n", AggKind::Min).alias("lo"),
            Agg::new("x", AggKind::Max).alias("hi"),
            Agg::new("n", AggKind::Size),
        ];
        let t = tasks(&p, &CsvOptions::new(), "key", aggs.clone());
        assert_eq!(t[0].read.schema.get("key"), Some(&DataType::Int64));
        check(&t, "key", true, "integer keys");
        // `007` and `7` are one key.
        let p = write(&dir, "b.csv", "key,n\n7,1\n007,2\n-0,3\n0,4\n");
        check(
            &tasks(&p, &CsvOptions::new(), "key", vec![Agg::new("n", AggKind::Sum)]),
            "key",
            true,
            "leading zeros",
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn anything_else_falls_back() {
        let dir = temp_dir("fallback");
        let cases = [
            ("quoted", "k,v\n\"x\",1\ny,2\n"),
            ("header only", "k,v\n"),
            ("blank line", "k,v\nx,1\n\ny,2\n"),
            ("plus sign", "k,v\nx,+1\ny,2\n"),
            ("leading blank", "k,v\nx, 1\ny,2\n"),
            ("short line", "k,v,w\nx,1,a\ny\n"),
            ("inf", "k,v\nx,inf\ny,2\n"),
        ];
        // `v` is read as `Float64` whatever inference makes of the sample,
        // so only the text keeps the scan from reading it.
        let opts = CsvOptions::new().dtype("v", DataType::Float64);
        for (what, text) in cases {
            let p = write(&dir, "a.csv", text);
            let t = tasks(&p, &opts, "k", all_aggs("v"));
            assert!(ReadCsvAggregateTask::can_fuse(&t[0].read, &t[0].plan), "{what}");
            check(&t, "k", false, what);
        }
        // A line with more fields than the schema: Polars skips the extra
        // ones when it reads some columns only, fails when it reads all;
        // the fused scan leaves both to the unfused path.
        let schema = polars_api::schema_from([
            ("k".to_string(), DataType::String),
            ("v".to_string(), DataType::Float64),
            ("w".to_string(), DataType::String),
        ]);
        let p = write(&dir, "b.csv", "k,v,w\nx,1,a,extra\ny,2,b\n");
        let opts = CsvOptions::new().schema(schema.clone());
        check(&tasks(&p, &opts, "k", all_aggs("v")), "k", false, "ragged, projected");
        let schema = polars_api::schema_from([
            ("k".to_string(), DataType::String),
            ("v".to_string(), DataType::Float64),
        ]);
        let p = write(&dir, "c.csv", "k,v\nx,1,extra\ny,2\n");
        let t = tasks(&p, &CsvOptions::new().schema(schema), "k", all_aggs("v"));
        assert!(t[0].fused().unwrap().is_none(), "ragged, every column read");
        assert_eq!(t[0].run(&[]).is_ok(), t[0].unfused().is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_numbers_are_reported_by_file_line_and_column() {
        let dir = temp_dir("bad");
        let p = write(&dir, "a.csv", "k,v\nx,1.5\ny,2\nx,12x\n");
        let mut opts = CsvOptions::new();
        opts = opts.dtype("v", DataType::Float64);
        let t = tasks(&p, &opts, "k", all_aggs("v"));
        assert!(t[0].fused().unwrap().is_none());
        let err = t[0].run(&[]).unwrap_err().to_string();
        assert!(err.contains("a.csv line 4, column 2"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn only_plain_group_bys_of_readers_fuse() {
        let dir = temp_dir("shapes");
        let p = write(&dir, "a.csv", &lines(50, "\n"));
        let fuses = |aggs: Vec<Agg>, key: &str| {
            let t = tasks(&p, &CsvOptions::new(), key, aggs);
            ReadCsvAggregateTask::can_fuse(&t[0].read, &t[0].plan)
        };
        assert!(fuses(all_aggs("value"), "category"));
        assert!(!fuses(vec![Agg::new("value", AggKind::Std(1))], "category"));
        assert!(!fuses(vec![Agg::new("value", AggKind::Mean)], "flag"), "boolean key");
        assert!(
            !fuses(vec![Agg::new("flag", AggKind::Sum)], "category"),
            "boolean value"
        );
        let mut t = tasks(&p, &CsvOptions::new(), "category", all_aggs("value")).remove(0);
        t.read.columns = None;
        assert!(!ReadCsvAggregateTask::can_fuse(&t.read, &t.plan), "other columns read");
        t.read.columns = Some(vec!["category".into(), "value".into()]);
        t.read.predicate = Some(polars::prelude::col("value").gt(polars::prelude::lit(1.0)));
        assert!(!ReadCsvAggregateTask::can_fuse(&t.read, &t.plan), "a filter");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn floats_parse_as_the_standard_library_does() {
        for s in [
            "0",
            "-0",
            "1",
            "12.5",
            "-12.50",
            "0.1",
            "123.45",
            "999.99",
            "1e5",
            "1E-5",
            "-2.5e+3",
            "00012.000",
            "9007199254740993",
            "1234567890123456789012",
            "0.30000000000000004",
            "1e22",
            "1e23",
            "4.9e-324",
            "1.7976931348623157e308",
            "1e400",
            "123456789.123456789",
        ] {
            let want: f64 = s.parse().unwrap();
            let got = parse_f64(s.as_bytes()).unwrap_or_else(|| panic!("{s} not parsed"));
            assert_eq!(got.to_bits(), want.to_bits(), "{s}");
        }
        for s in [
            "", "-", "+1", ".5", "5.", "1e", "1e+", "nan", "inf", " 1", "1 ", "1,5", "1.2.3", "--1", "0x10",
        ] {
            assert_eq!(parse_f64(s.as_bytes()), None, "{s:?}");
        }
    }

    #[test]
    fn integers_parse_strictly() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-17"), Some(-17));
        assert_eq!(parse_i64(b"007"), Some(7));
        assert_eq!(parse_i64(b"999999999999999999"), Some(999_999_999_999_999_999));
        for s in ["", "-", "+1", "1.0", "1e3", "9999999999999999999", " 1", "x"] {
            assert_eq!(parse_i64(s.as_bytes()), None, "{s:?}");
        }
    }

    #[test]
    fn find2_finds_the_first_of_two_bytes() {
        let text = b"abcdefghij,klmnopqrstu\nvwxyz";
        for start in 0..text.len() {
            let want = text[start..]
                .iter()
                .position(|&b| b == b',' || b == b'\n')
                .map_or(text.len(), |p| start + p);
            assert_eq!(find2(text, start, b',', b'\n'), want, "from {start}");
        }
    }

    #[test]
    fn structure_finds_every_separator_and_line_break() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut pos = Vec::new();
        for round in 0..300 {
            let len = (next() % 200) as usize;
            let text: Vec<u8> = (0..len).map(|_| b",\n,ab\"\xC3"[(next() % 7) as usize]).collect();
            let start = if len == 0 { 0 } else { (next() as usize) % len };
            let quote = if round % 2 == 0 { Some(b'"') } else { None };
            let want: Vec<u32> = (start..len)
                .filter(|&i| text[i] == b',' || text[i] == b'\n')
                .map(|i| (i - start) as u32)
                .collect();
            let body = &text[start..];
            // The dispatched one (AVX2 here, most likely) and the portable one.
            let piece = structure(&text, start, len, b',', quote, &mut pos);
            let mut words = vec![0u32; len - start + 80];
            let portable = structure_words(&text, start, len, b',', quote, &mut words);
            for (what, piece, pos) in [("dispatched", piece, &pos), ("portable", portable, &words)] {
                assert_eq!(&pos[..piece.len], &want[..], "round {round}, {what}");
                assert_eq!(piece.breaks, body.iter().filter(|&&b| b == b'\n').count(), "{what}");
                assert_eq!(piece.quoted, quote.is_some() && body.contains(&b'"'), "{what}");
                assert_eq!(piece.high, body.iter().any(|&b| b > 127), "{what}");
            }
        }
    }

    #[test]
    fn groups_tell_keys_apart() {
        let mut g = Groups::new();
        let mut text = Vec::new();
        let mut spans = Vec::new();
        for i in 0..2000 {
            let k = match i % 4 {
                0 => format!("k{i}"),
                1 => format!("a_much_longer_key_number_{i}"),
                2 => format!("{i:016}"),
                _ => format!("{}", i % 10),
            };
            spans.push((text.len(), k.len()));
            text.extend_from_slice(k.as_bytes());
            text.push(b',');
        }
        let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
        for &(s, l) in &spans {
            let (grp, new) = g.find_or_insert(&text, s, l);
            let key = text[s..s + l].to_vec();
            match seen.get(&key) {
                Some(&want) => assert_eq!((grp, new), (want, false)),
                None => {
                    assert!(new);
                    seen.insert(key.clone(), grp);
                }
            }
            assert_eq!(g.key(grp), Some(key));
        }
        assert_eq!(g.len(), seen.len());
    }
}
