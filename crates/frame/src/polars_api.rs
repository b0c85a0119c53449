//! Every Polars call whose shape changes between Polars releases.
//!
//! Polars is pinned exactly (`=0.55.2`) and its Rust API moves between
//! releases: reader option builders, join arguments, selectors, serialization
//! and hashing entry points have all changed in the past. The rest of this
//! crate goes through the small functions here, so an upgrade touches this
//! file (and the few expression builders it exports), not the planner or the
//! ops.
//!
//! ## Threads
//!
//! Polars runs its own rayon pool (`POLARS_MAX_THREADS`, default one thread
//! per core). Our threaded scheduler already runs one task per core, each
//! task working on one partition. We leave the pool at its default size on
//! purpose and make the readers single-threaded instead:
//!
//! - a Polars parallel section entered from one of our worker threads runs
//!   inside `THREAD_POOL.install`, which parks the calling thread until the
//!   pool is done, so the number of *running* threads stays about the number
//!   of cores however many of our workers call in;
//! - shrinking the pool to one thread would do the opposite of what is
//!   wanted: every worker's parallel sections would queue behind the single
//!   pool thread;
//! - the CSV reader is the one place where Polars would split a block across
//!   the pool for no gain (the block is already one task among many), so it is
//!   read with `n_threads(1)`.
//!
//! `POLARS_MAX_THREADS` is read once, when Polars first starts its pool; set
//! it in the environment of worker processes to give Polars fewer threads
//! (this crate cannot set it itself: changing the environment of a running
//! process is `unsafe`, which the workspace forbids).
//!
//! ## Serialization
//!
//! Op parameters hold Polars expressions, schemas and data types. They are
//! written with Polars' own serializer in its "future compatible" mode, which
//! is MessagePack (`rmp-serde`), so expressions ship to workers as data.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use blockwise_core::{Error, ErrorKind, Result};
use polars::io::SerReader;
use polars::io::SerWriter;
use polars::polars_utils::aliases::PlSeedableRandomStateQuality;
use polars::prelude::{
    AnyValue, CompatLevel, CsvParseOptions, CsvReadOptions, CsvWriter, DataFrame as PlFrame, DataType, Expr, IdxCa,
    IdxSize, IntoLazy, IpcStreamReader, IpcStreamWriter, JoinArgs, JoinType, JsonFormat, JsonReader, LazyFrame,
    NamedFrom, NullValues, ParquetReader, ParquetWriter, PlHashMap, PlSmallStr, PolarsError, Scalar, Schema, SchemaRef,
    Series as PlSeries, SortMultipleOptions, UniqueKeepStrategy,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Converts a Polars error into ours, keeping its message.
pub(crate) fn pl_err(e: PolarsError) -> Error {
    let kind = match &e {
        PolarsError::IO { .. } => ErrorKind::Io,
        PolarsError::SchemaMismatch(_) => ErrorKind::TypeMismatch,
        _ => ErrorKind::InvalidArgument,
    };
    Error::new(kind, e.to_string())
}

/// Whether a Polars error says a column is missing.
pub(crate) fn is_column_not_found(e: &PolarsError) -> bool {
    match e {
        PolarsError::ColumnNotFound(_) => true,
        PolarsError::Context { error, .. } | PolarsError::ExprContext { error, .. } => is_column_not_found(error),
        _ => false,
    }
}

/// `.pl()` on Polars results: converts the error.
pub(crate) trait PlResultExt<T> {
    /// Converts a Polars error into a blockwise error.
    fn pl(self) -> Result<T>;
}

impl<T> PlResultExt<T> for std::result::Result<T, PolarsError> {
    fn pl(self) -> Result<T> {
        self.map_err(pl_err)
    }
}

// ---------------------------------------------------------------- codecs

/// Appends `df` as an Arrow IPC stream.
pub(crate) fn ipc_encode(df: &PlFrame, out: &mut Vec<u8>) -> Result<()> {
    let mut df = df.clone();
    IpcStreamWriter::new(out)
        .with_compat_level(CompatLevel::newest())
        .finish(&mut df)
        .map_err(|e| Error::codec(format!("cannot write a partition as Arrow IPC: {e}")))
}

/// Reads a frame from an Arrow IPC stream.
pub(crate) fn ipc_decode(bytes: &[u8]) -> Result<PlFrame> {
    IpcStreamReader::new(Cursor::new(bytes)).finish().map_err(|e| {
        Error::codec(format!(
            "cannot read a partition from Arrow IPC ({} bytes): {e}",
            bytes.len()
        ))
    })
}

/// Serializes op parameters (expressions, schemas, data types) with Polars'
/// own serde support, as MessagePack.
pub(crate) fn ser<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    polars::polars_utils::pl_serialize::serialize_to_bytes::<_, true>(value)
        .map_err(|e| Error::codec(format!("cannot serialize frame op parameters: {e}")))
}

/// Reads op parameters written by [`ser`].
pub(crate) fn de<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    polars::polars_utils::pl_serialize::deserialize_from_reader::<T, _, true>(bytes)
        .map_err(|e| Error::codec(format!("cannot deserialize frame op parameters: {e}")))
}

// ---------------------------------------------------------------- hashing

fn fixed_hasher() -> PlSeedableRandomStateQuality {
    // Fixed seeds: every process of one build hashes a row the same way, so
    // a shuffle sends equal keys to the same output partition everywhere.
    PlSeedableRandomStateQuality::fixed()
}

/// One 64-bit hash per row over the columns `cols` (all columns if empty).
pub(crate) fn hash_rows(df: &PlFrame, cols: &[String]) -> Result<Vec<u64>> {
    let names: Vec<PlSmallStr> = if cols.is_empty() {
        df.get_column_names().into_iter().cloned().collect()
    } else {
        cols.iter().map(|c| PlSmallStr::from(c.as_str())).collect()
    };
    let mut hashes: Vec<u64> = Vec::with_capacity(df.height());
    if names.is_empty() {
        hashes.resize(df.height(), 0);
        return Ok(hashes);
    }
    for (i, name) in names.iter().enumerate() {
        let column = df.column(name).pl()?;
        if i == 0 {
            column.vec_hash(fixed_hasher(), &mut hashes).pl()?;
        } else {
            column.vec_hash_combine(fixed_hasher(), &mut hashes).pl()?;
        }
    }
    Ok(hashes)
}

/// A content hash of a whole frame (schema and rows), for task names.
pub(crate) fn fingerprint(df: &PlFrame) -> Result<u64> {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    for (name, dtype) in df.schema().iter() {
        h.update(name.as_bytes());
        h.update(format!("{dtype:?}").as_bytes());
    }
    h.update(&(df.height() as u64).to_le_bytes());
    for v in hash_rows(df, &[])? {
        h.update(&v.to_le_bytes());
    }
    Ok(h.digest())
}

/// The rows of `df` at `indices`, in that order.
pub(crate) fn take_rows(df: &PlFrame, indices: Vec<IdxSize>) -> Result<PlFrame> {
    let idx = IdxCa::from_vec(PlSmallStr::from_static("idx"), indices);
    df.take(&idx).pl()
}

// ---------------------------------------------------------------- frames

/// An empty frame with `schema`.
pub(crate) fn empty(schema: &Schema) -> PlFrame {
    PlFrame::empty_with_schema(schema)
}

/// Concatenates frames vertically, in order. The frames must have the same
/// columns; an empty list gives an empty frame with `schema`.
pub(crate) fn concat(frames: Vec<PlFrame>, schema: Option<&Schema>) -> Result<PlFrame> {
    let frames: Vec<PlFrame> = frames.into_iter().filter(|f| f.width() > 0 || f.height() > 0).collect();
    match frames.len() {
        0 => Ok(schema.map(empty).unwrap_or_default()),
        1 => Ok(frames.into_iter().next().unwrap_or_default()),
        _ => {
            let mut iter = frames.into_iter();
            let mut acc = iter.next().unwrap_or_default();
            for f in iter {
                acc.vstack_mut_owned(f).pl()?;
            }
            acc.rechunk_mut();
            Ok(acc)
        }
    }
}

/// The columns `cols` of `df`, in that order.
pub(crate) fn select_columns(df: &PlFrame, cols: &[String]) -> Result<PlFrame> {
    df.select(cols.iter().map(|c| PlSmallStr::from(c.as_str()))).pl()
}

/// Rows `offset..offset+len` of `df`.
pub(crate) fn slice(df: &PlFrame, offset: usize, len: usize) -> PlFrame {
    df.slice(offset as i64, len)
}

/// A lazy frame over an in-memory frame.
pub(crate) fn lazy(df: PlFrame) -> LazyFrame {
    df.lazy()
}

/// Runs a lazy query on the in-memory engine.
pub(crate) fn collect(lf: LazyFrame) -> std::result::Result<PlFrame, PolarsError> {
    lf.collect()
}

/// Runs a lazy query on Polars' streaming engine. For a group-by with
/// plain aggregations (sums, counts, minima, maxima) it aggregates into one
/// hash table per thread instead of first listing the rows of every group,
/// as the in-memory engine does: the per-partition partial of a group-by
/// then costs about half. The query's root is one plan (never a multiple
/// sink), so the result is one frame.
pub(crate) fn collect_streaming(lf: LazyFrame) -> std::result::Result<PlFrame, PolarsError> {
    lf.collect_with_engine(polars::prelude::Engine::Streaming)
        .map(|r| r.unwrap_single())
}

/// The output schema of a lazy query, without running it.
pub(crate) fn schema_of(mut lf: LazyFrame) -> std::result::Result<SchemaRef, PolarsError> {
    lf.collect_schema()
}

/// Column names of a schema, in order.
pub(crate) fn names(schema: &Schema) -> Vec<String> {
    schema.iter_names().map(|n| n.to_string()).collect()
}

/// A schema from `(name, dtype)` pairs.
pub(crate) fn schema_from(fields: impl IntoIterator<Item = (String, DataType)>) -> Schema {
    fields.into_iter().map(|(n, d)| (PlSmallStr::from(n), d)).collect()
}

/// A literal expression holding `value` of `dtype`.
pub(crate) fn lit_value(dtype: DataType, value: AnyValue<'static>) -> Expr {
    polars::prelude::lit(Scalar::new(dtype, value))
}

/// The value at `i` of a series, owned.
pub(crate) fn value_at(series: &PlSeries, i: usize) -> Result<AnyValue<'static>> {
    Ok(series.get(i).pl()?.into_static())
}

// ---------------------------------------------------------------- expressions

/// The input columns an expression reads, or `None` when it can read any
/// column (wildcards, selectors, regular expressions).
pub(crate) fn expr_inputs(expr: &Expr) -> Option<Vec<String>> {
    let meta = expr.clone().meta();
    if meta.has_multiple_outputs() || meta.is_regex_projection() {
        return None;
    }
    Some(
        expr.clone()
            .meta()
            .root_names()
            .into_iter()
            .map(|n| n.to_string())
            .collect(),
    )
}

/// The name of the column an expression produces, when it produces one.
pub(crate) fn expr_output(expr: &Expr) -> Option<String> {
    let meta = expr.clone().meta();
    if meta.has_multiple_outputs() {
        return None;
    }
    expr.clone().meta().output_name().ok().map(|n| n.to_string())
}

/// Whether `expr` is a plain column reference (`col("a")`, not aliased).
pub(crate) fn expr_is_plain_column(expr: &Expr) -> bool {
    expr.clone().meta().is_column()
}

/// Polars' text form of an expression, for `explain()` and errors.
pub(crate) fn expr_text(expr: &Expr) -> String {
    format!("{expr}")
}

// ---------------------------------------------------------------- lazy steps

/// `lf.rename(pairs)`, strict.
pub(crate) fn rename(lf: LazyFrame, pairs: &[(String, String)]) -> LazyFrame {
    let old: Vec<&str> = pairs.iter().map(|(a, _)| a.as_str()).collect();
    let new: Vec<&str> = pairs.iter().map(|(_, b)| b.as_str()).collect();
    lf.rename(old, new, true)
}

/// `lf.drop(cols)`, strict.
pub(crate) fn drop(lf: LazyFrame, cols: &[String]) -> LazyFrame {
    lf.drop(polars::prelude::cols(cols.iter().map(|c| c.as_str())))
}

/// `lf.cast(map)`, strict.
pub(crate) fn cast(lf: LazyFrame, pairs: &[(String, DataType)]) -> LazyFrame {
    let map: PlHashMap<&str, DataType> = pairs.iter().map(|(c, d)| (c.as_str(), d.clone())).collect();
    lf.cast(map, true)
}

/// `lf.drop_nulls(subset)`.
pub(crate) fn drop_nulls(lf: LazyFrame, subset: Option<&[String]>) -> LazyFrame {
    lf.drop_nulls(subset.map(|s| polars::prelude::cols(s.iter().map(|c| c.as_str()))))
}

/// `lf.sort(by)` with one `descending` flag for all columns; nulls first, as
/// Polars' default.
pub(crate) fn sort(lf: LazyFrame, by: &[String], descending: bool) -> LazyFrame {
    let opts = SortMultipleOptions::default()
        .with_order_descending(descending)
        .with_maintain_order(true);
    lf.sort(
        by.iter().map(|s| PlSmallStr::from(s.as_str())).collect::<Vec<_>>(),
        opts,
    )
}

/// `lf.unique_stable(subset, keep)`: keeps the first (or last) row of each
/// distinct value, in order.
pub(crate) fn unique(lf: LazyFrame, subset: Option<&[String]>, keep_last: bool) -> LazyFrame {
    let keep = if keep_last {
        UniqueKeepStrategy::Last
    } else {
        UniqueKeepStrategy::First
    };
    lf.unique_stable(
        subset.map(|s| polars::prelude::cols(s.iter().map(|c| c.as_str()))),
        keep,
    )
}

/// How rows of two frames are matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum JoinHow {
    /// Rows whose keys appear on both sides.
    Inner,
    /// Every left row, with right columns where the key matches.
    Left,
    /// Every row of both sides (Polars' full join: both key columns kept).
    Outer,
    /// Left rows whose key appears on the right (left columns only).
    Semi,
    /// Left rows whose key does not appear on the right.
    Anti,
}

/// `left.join(right, …)` with our join kinds.
pub(crate) fn join(
    left: LazyFrame,
    right: LazyFrame,
    how: JoinHow,
    left_on: &[String],
    right_on: &[String],
    suffix: &str,
) -> LazyFrame {
    let how = match how {
        JoinHow::Inner => JoinType::Inner,
        JoinHow::Left => JoinType::Left,
        JoinHow::Outer => JoinType::Full,
        JoinHow::Semi => JoinType::Semi,
        JoinHow::Anti => JoinType::Anti,
    };
    let mut args = JoinArgs::new(how);
    args.suffix = Some(PlSmallStr::from(suffix));
    let l: Vec<Expr> = left_on.iter().map(|c| polars::prelude::col(c.as_str())).collect();
    let r: Vec<Expr> = right_on.iter().map(|c| polars::prelude::col(c.as_str())).collect();
    left.join(right, l, r, args)
}

// ---------------------------------------------------------------- aggregation expressions

/// Expression builders for the partial, combine and final stages of
/// aggregations (see `reduce.rs`).
pub(crate) mod agg {
    use polars::prelude::*;

    /// `col(name)`.
    pub(crate) fn c(name: &str) -> Expr {
        col(name)
    }

    /// Row count of a group (nulls included).
    pub(crate) fn size() -> Expr {
        len()
    }

    /// Values of `e` seen in a group, as a list (a set: unique values).
    pub(crate) fn set_of(e: Expr, grouped: bool) -> Expr {
        let u = e.unique();
        if grouped { u } else { u.implode(false) }
    }

    /// Union of the list column `e` over a group, as a list of unique values.
    pub(crate) fn union_of_sets(e: Expr, grouped: bool) -> Expr {
        let u = e
            .explode(ExplodeOptions {
                empty_as_null: false,
                keep_nulls: false,
            })
            .unique();
        if grouped { u } else { u.implode(false) }
    }

    /// Number of elements of the list column `e`.
    pub(crate) fn set_len(e: Expr) -> Expr {
        e.list().len()
    }

    /// `e` over the groups `keys` (a window), or over the whole frame.
    pub(crate) fn over_keys(e: Expr, keys: &[String]) -> PolarsResult<Expr> {
        if keys.is_empty() {
            Ok(e)
        } else {
            e.over(keys.iter().map(|k| col(k.as_str())).collect::<Vec<_>>())
        }
    }

    /// `when(cond).then(a).otherwise(null)`.
    pub(crate) fn when_else_null(cond: Expr, then: Expr) -> Expr {
        when(cond).then(then).otherwise(lit(NULL))
    }

    /// Float64.
    pub(crate) fn f64_type() -> DataType {
        DataType::Float64
    }

    /// `e.sqrt()`.
    pub(crate) fn sqrt(e: Expr) -> Expr {
        e.sqrt()
    }
}

// ---------------------------------------------------------------- CSV

/// How CSV text is parsed.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct CsvFormat {
    /// Field separator.
    pub(crate) separator: u8,
    /// Quote character (`None`: no quoting).
    pub(crate) quote: Option<u8>,
    /// Strings read as missing values (besides the empty field).
    pub(crate) null_values: Vec<String>,
    /// Whether date and datetime columns are recognised while inferring.
    pub(crate) parse_dates: bool,
    /// Whether the first line of each file is a header.
    pub(crate) has_header: bool,
}

impl Default for CsvFormat {
    fn default() -> Self {
        CsvFormat {
            separator: b',',
            quote: Some(b'"'),
            null_values: Vec::new(),
            parse_dates: true,
            has_header: true,
        }
    }
}

fn parse_options(format: &CsvFormat) -> CsvParseOptions {
    let mut opts = CsvParseOptions::default()
        .with_separator(format.separator)
        .with_quote_char(format.quote)
        .with_try_parse_dates(format.parse_dates);
    if !format.null_values.is_empty() {
        opts = opts.with_null_values(Some(NullValues::AllColumns(
            format
                .null_values
                .iter()
                .map(|s| PlSmallStr::from(s.as_str()))
                .collect(),
        )));
    }
    opts
}

/// Parses CSV text with a known schema. `has_header`: the text starts with
/// a header line (skipped: names come from `schema`). `columns`: the only
/// columns to parse (the others are skipped while tokenizing).
pub(crate) fn csv_parse(
    bytes: &[u8],
    schema: &SchemaRef,
    has_header: bool,
    columns: Option<&[String]>,
    n_rows: Option<usize>,
    format: &CsvFormat,
) -> std::result::Result<PlFrame, PolarsError> {
    let opts = CsvReadOptions::default()
        .with_has_header(has_header)
        .with_schema(Some(schema.clone()))
        .with_columns(columns.map(|c| c.iter().map(|s| PlSmallStr::from(s.as_str())).collect()))
        .with_n_rows(n_rows)
        .with_n_threads(Some(1))
        .with_raise_if_empty(false)
        .with_rechunk(false)
        .with_parse_options(parse_options(format));
    opts.into_reader_with_file_handle(Cursor::new(bytes)).finish()
}

/// Parses `n_lines` CSV records (no header line, no quote character in the
/// text) with a known schema, parsing only `columns` (`None`: all), in file
/// order.
///
/// This is Polars' own chunk parser (`read_chunk`, what its streaming CSV
/// source runs per batch of lines) without the pass that [`csv_parse`]
/// makes first: Polars' reader walks the whole text once to count lines
/// and cut it into chunks for its thread pool, byte by byte on a stable
/// toolchain (its SIMD line counter needs nightly Rust). A block is
/// already one task among many, so it is parsed in one piece on the
/// calling thread; the caller counts the lines (a quote-free text needs
/// no quote tracking, see `io::csv::count_bytes`).
///
/// `Ok(None)` when the parser finds a different number of records than
/// `n_lines` (blank lines, ragged text), or when no column is asked for:
/// the caller then reads the text with [`csv_parse`], whose behaviour and
/// errors it keeps.
pub(crate) fn csv_parse_lines(
    bytes: &[u8],
    schema: &SchemaRef,
    columns: Option<&[String]>,
    format: &CsvFormat,
    n_lines: usize,
) -> std::result::Result<Option<PlFrame>, PolarsError> {
    use polars::io::csv::read::_csv_read_internal::{cast_columns, prepare_csv_schema, read_chunk, validate_utf8};
    let parse = parse_options(format);
    let mut schema = schema.clone();
    let mut to_cast = Vec::new();
    prepare_csv_schema(&mut schema, &mut to_cast)?;
    let mut projection: Vec<usize> = match columns {
        Some(cols) => cols
            .iter()
            .map(|c| schema.try_index_of(c.as_str()))
            .collect::<std::result::Result<_, PolarsError>>()?,
        None => (0..schema.len()).collect(),
    };
    projection.sort_unstable();
    if projection.is_empty() {
        return Ok(None);
    }
    // As Polars' reader: text columns must be valid UTF-8.
    if schema.iter_values().any(|d| d.is_string()) && !validate_utf8(bytes) {
        return Err(PolarsError::ComputeError("invalid utf-8 sequence".into()));
    }
    let null_values = parse.null_values.clone().map(|nv| nv.compile(&schema)).transpose()?;
    let mut df = read_chunk(
        bytes,
        &parse,
        &schema,
        false,
        &projection,
        0,
        n_lines,
        null_values.as_ref(),
        usize::MAX,
        bytes.len(),
        Some(0),
    )?;
    if df.height() != n_lines {
        return Ok(None);
    }
    cast_columns(&mut df, &to_cast, false, false)?;
    Ok(Some(df))
}

/// Whether `bytes` are valid UTF-8, checked as Polars' CSV reader checks
/// them (SIMD, fast on ASCII).
pub(crate) fn valid_utf8(bytes: &[u8]) -> bool {
    polars::io::csv::read::_csv_read_internal::validate_utf8(bytes)
}

/// Exact formats tried, in order, for text columns read as datetimes
/// (the ISO forms Polars' CSV inference recognises most often).
const DATETIME_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d",
];

/// Exact formats tried, in order, for text columns read as dates.
const DATE_FORMATS: &[&str] = &["%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%d-%m-%Y", "%d/%m/%Y"];

/// Whether a CSV column of this dtype is better read as text and converted
/// by [`csv_text_to_temporal`]: Polars' CSV parser, given a datetime column
/// whose values have no fractional seconds (`2024-01-01 00:00:00`), misses
/// its fast parser on every value (its first pattern expects a fraction)
/// and falls back to trying up to 29 `chrono` patterns per value: about
/// 1 µs a value, most of a sort of such a file.
pub(crate) fn csv_reads_as_text(dtype: &DataType) -> bool {
    matches!(dtype, DataType::Datetime(_, None) | DataType::Date)
}

/// Converts the text columns `columns` (name, target dtype) of `df` with
/// one exact format per column, chosen by the column's first value:
/// Polars' strptime with a fixed format, a single fast pass. `Ok(None)`
/// when some value of a column does not follow that format (mixed
/// formats, bad values): the caller then parses the text as before, with
/// Polars' own per-value inference and errors.
pub(crate) fn csv_text_to_temporal(
    mut df: PlFrame,
    columns: &[(String, DataType)],
) -> std::result::Result<Option<PlFrame>, PolarsError> {
    use polars::prelude::{StrptimeOptions, col, lit};
    for (name, dtype) in columns {
        let text = df.column(name)?.as_materialized_series().clone();
        let nulls = text.null_count();
        let Some(first) = text.str()?.iter().flatten().next().map(str::to_string) else {
            df.with_column(text.cast(dtype)?.into())?;
            continue;
        };
        let formats = if *dtype == DataType::Date {
            DATE_FORMATS
        } else {
            DATETIME_FORMATS
        };
        let convert = |lf: LazyFrame, format: &str| {
            let options = StrptimeOptions {
                format: Some(format.into()),
                strict: false,
                exact: true,
                cache: false,
            };
            lf.select([col(name.as_str()).str().strptime(dtype.clone(), options, lit("raise"))])
                .collect()
        };
        let probe = PlFrame::new(1, vec![PlSeries::new(name.as_str().into(), [first.as_str()]).into()])?;
        let Some(format) = formats.iter().find(|f| {
            convert(probe.clone().lazy(), f)
                .ok()
                .and_then(|d| d.column(name).ok().map(|c| c.null_count() == 0))
                .unwrap_or(false)
        }) else {
            return Ok(None);
        };
        let single = PlFrame::new(text.len(), vec![text.into()])?;
        let out = convert(single.lazy(), format)?;
        let parsed = out.column(name)?.clone();
        if parsed.null_count() != nulls || parsed.dtype() != dtype {
            return Ok(None);
        }
        df.with_column(parsed)?;
    }
    Ok(Some(df))
}

/// Whether `bytes` start like a compressed stream (gzip, zlib, zstd), which
/// Polars' CSV reader decompresses on its own.
pub(crate) fn looks_compressed(bytes: &[u8]) -> bool {
    polars::io::utils::compression::SupportedCompression::check(bytes).is_some()
}

/// Parses CSV text with every column as a string (for locating bad values).
pub(crate) fn csv_parse_strings(
    bytes: &[u8],
    names: &[String],
    has_header: bool,
    format: &CsvFormat,
) -> Result<PlFrame> {
    let schema: SchemaRef = Arc::new(schema_from(names.iter().map(|n| (n.clone(), DataType::String))));
    csv_parse(bytes, &schema, has_header, None, None, format).pl()
}

/// Infers a schema from a sample of CSV text (header included when the
/// format has one).
pub(crate) fn csv_infer(bytes: Vec<u8>, format: &CsvFormat, rows: usize) -> Result<Schema> {
    let opts = CsvReadOptions::default()
        .with_has_header(format.has_header)
        .with_infer_schema_length(Some(rows))
        .with_n_threads(Some(1))
        .with_n_rows(Some(rows))
        .with_raise_if_empty(false)
        .with_parse_options(parse_options(format));
    let df = opts.into_reader_with_file_handle(Cursor::new(bytes)).finish().pl()?;
    Ok(df.schema().as_ref().clone())
}

/// Writes `df` as CSV (with a header) to `w`.
pub(crate) fn csv_write<W: std::io::Write>(df: &PlFrame, w: W, separator: u8) -> Result<()> {
    let mut df = df.clone();
    CsvWriter::new(w)
        .include_header(true)
        .with_separator(separator)
        .finish(&mut df)
        .pl()
}

/// Casts a string column to `dtype` without failing; values that cannot be
/// parsed become null (used to find which value broke a parse).
pub(crate) fn cast_lenient(series: &PlSeries, dtype: &DataType) -> Result<PlSeries> {
    use polars::prelude::{NULL, StrptimeOptions, col, lit, when};
    let name = series.name().clone();
    // A plain cast reads neither CSV booleans nor datetimes such as
    // `2024-01-01 00:00:00`: parse those as the CSV parser does.
    let expr = match dtype {
        DataType::Boolean => {
            let lower = || col(name.clone()).str().to_lowercase();
            when(lower().eq(lit("true")))
                .then(lit(true))
                .when(lower().eq(lit("false")))
                .then(lit(false))
                .otherwise(lit(NULL).cast(DataType::Boolean))
        }
        DataType::Datetime(..) | DataType::Date => {
            let options = StrptimeOptions {
                format: None,
                strict: false,
                exact: true,
                cache: false,
            };
            col(name.clone()).str().strptime(dtype.clone(), options, lit("raise"))
        }
        _ => return series.cast(dtype).pl(),
    };
    let df = PlFrame::new(series.len(), vec![series.clone().into()]).pl()?;
    let out = df.lazy().select([expr.alias(name.clone())]).collect().pl()?;
    Ok(out.column(&name).pl()?.as_materialized_series().clone())
}

// ---------------------------------------------------------------- Parquet

/// A Parquet file's footer, read once when a read is planned: the schema,
/// the row groups (rows, sizes) and the statistics of every column chunk.
/// Polars keeps the statistics as ranges into the footer's bytes, so holding
/// a footer costs about the footer's size (kilobytes).
#[derive(Clone)]
pub(crate) struct ParquetFooter {
    metadata: polars::io::parquet::metadata::FileMetadataRef,
    arrow: Arc<polars::prelude::ArrowSchema>,
    /// The file's schema, as Polars reads it.
    pub(crate) schema: Schema,
}

impl std::fmt::Debug for ParquetFooter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ParquetFooter({} rows in {} row groups)",
            self.metadata.num_rows,
            self.metadata.row_groups.len()
        )
    }
}

/// One row group's statistics of one column: min, max, null count.
type ChunkStatistics = (Option<AnyValue<'static>>, Option<AnyValue<'static>>, Option<u64>);

/// The name of a column of the statistics frame (see
/// [`ParquetFooter::statistics`]): `kind` is `min`, `max` or `nulls`.
fn stat_column(kind: &str, column: &str) -> String {
    format!("__blockwise_{kind}__{column}")
}

/// The row count column of the statistics frame.
const STAT_LEN: &str = "__blockwise_len__";

/// Whether min/max statistics of a column of this dtype are read and used
/// for pruning (plain scalars whose Parquet order is Polars' order).
fn has_usable_statistics(dtype: &DataType) -> bool {
    dtype.is_primitive_numeric()
        || matches!(
            dtype,
            DataType::Boolean | DataType::String | DataType::Date | DataType::Datetime(..)
        )
}

impl ParquetFooter {
    /// Reads the footer of the Parquet file at `path`.
    pub(crate) fn read(path: &Path) -> Result<ParquetFooter> {
        let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
        let mut reader = ParquetReader::new(file);
        let arrow = reader.schema().pl()?;
        let metadata = reader.get_metadata().pl()?.clone();
        let schema = <Schema as polars::prelude::SchemaExt>::from_arrow_schema(&arrow);
        Ok(ParquetFooter {
            metadata,
            arrow,
            schema,
        })
    }

    /// Rows and uncompressed bytes of each row group, in file order.
    pub(crate) fn row_groups(&self) -> Vec<(usize, usize)> {
        self.metadata
            .row_groups
            .iter()
            .map(|rg| (rg.num_rows(), rg.total_byte_size()))
            .collect()
    }

    /// The min, max and null count of `column` in each row group, as values
    /// of `dtype` (`None` where the file holds no usable statistics).
    fn column_statistics(&self, column: &str, dtype: &DataType) -> Vec<ChunkStatistics> {
        use polars::io::parquet::metadata::{ParquetStatistics, deserialize};
        let unknown: ChunkStatistics = (None, None, None);
        let Some(field) = self.arrow.get(column) else {
            return vec![unknown; self.metadata.row_groups.len()];
        };
        let value = |array: Option<polars::prelude::ArrayRef>| -> Option<AnyValue<'static>> {
            let series = PlSeries::try_from((PlSmallStr::from(column), array?)).ok()?;
            let series = series.cast(dtype).ok()?;
            if series.len() != 1 {
                return None;
            }
            series.get(0).ok().map(|v| v.into_static()).filter(|v| !v.is_null())
        };
        self.metadata
            .row_groups
            .iter()
            .map(|rg| {
                let read = || {
                    let mut chunks = rg.columns_under_root_iter(column)?;
                    if chunks.len() != 1 {
                        return None;
                    }
                    let stats = deserialize(field, &mut chunks, &self.metadata.footer_buf).ok()??;
                    let ParquetStatistics::Column(stats) = stats else {
                        return None;
                    };
                    let stats = stats.into_arrow().ok()?;
                    Some((value(stats.min_value), value(stats.max_value), stats.null_count))
                };
                // Polars' statistics decoder panics on physical
                // types it does not expect; a file we cannot prune must still
                // be read, never crash the planner.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
                    .ok()
                    .flatten()
                    .unwrap_or(unknown.clone())
            })
            .collect()
    }

    /// One row per row group: its row count and, for each of `columns`,
    /// min, max and null count (null where unknown).
    fn statistics(&self, columns: &[String]) -> Result<PlFrame> {
        let lens: Vec<u64> = self.metadata.row_groups.iter().map(|rg| rg.num_rows() as u64).collect();
        let height = lens.len();
        let mut out: Vec<polars::prelude::Column> = vec![PlSeries::new(STAT_LEN.into(), lens).into()];
        for c in columns {
            let Some(dtype) = self.schema.get(c.as_str()) else {
                continue;
            };
            let stats = if has_usable_statistics(dtype) {
                self.column_statistics(c, dtype)
            } else {
                vec![(None, None, None); height]
            };
            let (mut mins, mut maxs, mut nulls) = (Vec::new(), Vec::new(), Vec::new());
            for (lo, hi, n) in stats {
                mins.push(lo.unwrap_or(AnyValue::Null));
                maxs.push(hi.unwrap_or(AnyValue::Null));
                nulls.push(n);
            }
            out.push(
                PlSeries::from_any_values_and_dtype(stat_column("min", c).into(), &mins, dtype, false)
                    .pl()?
                    .into(),
            );
            out.push(
                PlSeries::from_any_values_and_dtype(stat_column("max", c).into(), &maxs, dtype, false)
                    .pl()?
                    .into(),
            );
            out.push(PlSeries::new(stat_column("nulls", c).into(), nulls).into());
        }
        PlFrame::new(height, out).pl()
    }

    /// Which row groups may hold rows for which `predicate` is true, from
    /// their min/max/null-count statistics: `None` when the statistics
    /// cannot decide anything (the predicate has no part they can judge).
    /// A row group is only ruled out when its statistics prove that no row
    /// matches.
    pub(crate) fn row_groups_matching(&self, predicate: &Expr) -> Option<Vec<bool>> {
        let condition = stats_condition(predicate, &self.schema)?;
        let mut columns = expr_inputs(predicate)?;
        columns.sort();
        columns.dedup();
        let stats = self.statistics(&columns).ok()?;
        let keep = lazy(stats)
            .select([condition.fill_null(polars::prelude::lit(true)).alias("keep")])
            .collect()
            .ok()?;
        let keep = keep.column("keep").ok()?.as_materialized_series().bool().ok()?;
        Some(keep.iter().map(|k| k.unwrap_or(true)).collect())
    }
}

/// Rewrites a filter into a condition on the statistics frame that is false
/// for a row group only when no row of it can satisfy the filter, or `None`
/// when the statistics cannot judge it. Evaluated with three-valued logic,
/// a null (statistics missing) counts as "may match". Recognised: `and`,
/// `or`, comparisons of a column with a literal, `is_null`, `is_not_null`.
fn stats_condition(expr: &Expr, schema: &Schema) -> Option<Expr> {
    use polars::prelude::{BooleanFunction, FunctionExpr, Operator, col, lit};
    match expr {
        Expr::BinaryExpr { left, op, right } => match op {
            Operator::And | Operator::LogicalAnd => {
                match (stats_condition(left, schema), stats_condition(right, schema)) {
                    (Some(a), Some(b)) => Some(a.and(b)),
                    (Some(a), None) | (None, Some(a)) => Some(a),
                    (None, None) => None,
                }
            }
            Operator::Or | Operator::LogicalOr => {
                Some(stats_condition(left, schema)?.or(stats_condition(right, schema)?))
            }
            Operator::Eq | Operator::NotEq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                let (column, value, op) = match (&**left, &**right) {
                    (Expr::Column(c), v @ Expr::Literal(_)) => (c, v, *op),
                    (v @ Expr::Literal(_), Expr::Column(c)) => (
                        c,
                        v,
                        match op {
                            Operator::Lt => Operator::Gt,
                            Operator::LtEq => Operator::GtEq,
                            Operator::Gt => Operator::Lt,
                            Operator::GtEq => Operator::LtEq,
                            other => *other,
                        },
                    ),
                    _ => return None,
                };
                let dtype = schema.get(column.as_str())?;
                if !has_usable_statistics(dtype) {
                    return None;
                }
                // Parquet writers leave NaN out of float statistics, and
                // Polars orders NaN above every number: only `<` and `<=`
                // (which NaN never satisfies) are safe to judge on floats.
                let float = dtype.is_float();
                let v = value.clone();
                let min = col(stat_column("min", column));
                let max = col(stat_column("max", column));
                match op {
                    Operator::Lt => Some(min.lt(v)),
                    Operator::LtEq => Some(min.lt_eq(v)),
                    Operator::Gt if !float => Some(max.gt(v)),
                    Operator::GtEq if !float => Some(max.gt_eq(v)),
                    Operator::Eq if !float => Some(min.lt_eq(v.clone()).and(max.gt_eq(v))),
                    Operator::NotEq if !float => Some(min.neq(v.clone()).or(max.neq(v))),
                    _ => None,
                }
            }
            _ => None,
        },
        Expr::Function {
            input,
            function: FunctionExpr::Boolean(f),
        } => match (f, input.as_slice()) {
            (BooleanFunction::IsNull, [Expr::Column(c)]) if schema.get(c.as_str()).is_some() => {
                Some(col(stat_column("nulls", c)).gt(lit(0u64)))
            }
            (BooleanFunction::IsNotNull, [Expr::Column(c)]) if schema.get(c.as_str()).is_some() => {
                Some(col(stat_column("nulls", c)).lt(col(STAT_LEN)))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Reads rows `slice` (`(offset, len)`; `None`: all) of a Parquet file, only
/// `columns` (`None`: all). Row groups outside the slice are not read at
/// all: not decoded, their bytes not touched.
pub(crate) fn parquet_read_rows(
    path: &Path,
    columns: Option<&[String]>,
    slice: Option<(usize, usize)>,
) -> Result<PlFrame> {
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    ParquetReader::new(file)
        .with_columns(columns.map(<[String]>::to_vec))
        .with_slice(slice)
        // The row-group strategy is the one that skips the row groups
        // outside the slice (the column strategy walks every row group).
        .read_parallel(polars::io::parquet::read::ParallelStrategy::RowGroups)
        .finish()
        .pl()
}

/// The rows of `df` for which `predicate` is true.
pub(crate) fn filter(df: PlFrame, predicate: &Expr) -> Result<PlFrame> {
    lazy(df).filter(predicate.clone()).collect().pl()
}

/// Writes `df` as Parquet (Zstd compression, statistics on) to `w`.
pub(crate) fn parquet_write<W: std::io::Write + Send>(df: &PlFrame, w: W) -> Result<()> {
    let mut df = df.clone();
    ParquetWriter::new(w)
        .with_statistics(polars::prelude::StatisticsOptions::full())
        .finish(&mut df)
        .pl()
        .map(|_| ())
}

// ---------------------------------------------------------------- JSON lines

/// Parses JSON lines; with `schema`, values are read as its types.
pub(crate) fn json_parse(bytes: Vec<u8>, schema: Option<SchemaRef>, infer_rows: usize) -> Result<PlFrame> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(schema.map(|s| empty(&s)).unwrap_or_default());
    }
    let mut reader = JsonReader::new(Cursor::new(bytes)).with_json_format(JsonFormat::JsonLines);
    match schema {
        Some(s) => reader = reader.with_schema(s),
        None => reader = reader.infer_schema_len(std::num::NonZeroUsize::new(infer_rows.max(1))),
    }
    reader.finish().pl()
}

/// An I/O error naming the file.
pub(crate) fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{}: {e}", path.display()))
}
