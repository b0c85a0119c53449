//! Storage, out of core: `.npy` files, `.npy` stacks, Zarr v3 stores.
//!
//! Every reader is a generated layer whose task for a block reads only that
//! block's bytes from disk, and every writer is a layer whose task for a
//! block writes only that block: an array larger than memory streams through
//! one block per worker thread at a time. Writers compute at once (as Dask's
//! `to_npy_stack`, `to_zarr` with `compute=True`).
//!
//! - **`.npy`** ([`from_npy`], [`Array::to_npy`]): one file in NumPy's
//!   format. The header is parsed with `ndarray-npy`; a block is read with
//!   positioned reads of its contiguous runs (`pread`), and written the same
//!   way into a file whose header and size are set up before any task runs.
//!   C order and Fortran order (read as the transpose of a C-order array)
//!   are read; C order is written. Little-endian only.
//! - **`.npy` stack** ([`from_npy_stack`], [`Array::to_npy_stack`]): a
//!   directory with one `.npy` file per block along one axis (`0.npy`,
//!   `1.npy`, …) and an `info.json` naming the axis, the chunks and the
//!   dtype (Dask's layout, with JSON instead of pickle so any language can
//!   read it).
//! - **Zarr v3** ([`from_zarr`], [`Array::to_zarr`]) through `zarrs` on the
//!   local filesystem: uncompressed or zstd/gzip as zarr-python writes them.
//!   Reading defaults to the store's own chunks; writing uses the array's
//!   chunks (rechunked to a regular grid first when they are not).
//!
//! Files are named in task names by path, size and modification time, so a
//! changed file is read again. A missing or corrupt file is an error naming
//! the file, raised while the graph is built when the header shows it.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockwise_core::graph::{Input, Task};
use blockwise_core::{Error, ErrorKind, Key, Result, Tokenizer, Value};
use blockwise_local::ComputeOptions;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::array::{Array, blockwise_layer, tokenize_chunks};
use crate::chunks::{ChunkSpec, Chunks, grid_indices};
use crate::creation::{BlockInfo, index_args};
use crate::element::{Element, for_each_dtype};
use crate::kernel::{Kernel, arg, block, op, register_kernel, value};

fn io_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}: {e}", path.display()))
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::codec(format!("{} is not a valid .npy file: {e}", path.display()))
}

/// A parsed `.npy` header.
#[derive(Clone, Debug)]
struct NpyHeader {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
    data_offset: u64,
}

fn read_npy_header(path: &Path) -> Result<NpyHeader> {
    let mut file = File::open(path).map_err(|e| io_err(path, "cannot open", e))?;
    let header = ndarray_npy::npy::header::Header::from_reader(&mut file).map_err(|e| corrupt(path, e))?;
    let data_offset = std::io::Seek::stream_position(&mut file).map_err(|e| io_err(path, "cannot read", e))?;
    let descr = header
        .type_descriptor
        .to_string()
        .trim_matches('\'')
        .trim_matches('"')
        .to_string();
    Ok(NpyHeader {
        descr,
        fortran: header.layout.is_fortran(),
        shape: header.shape,
        data_offset,
    })
}

/// Whether a `.npy` type descriptor means `T` in little-endian order.
fn descr_matches<T: Element>(descr: &str) -> bool {
    let want = T::NPY_DESCR;
    descr == want
        || (descr.len() == want.len() && matches!(descr.as_bytes()[0], b'<' | b'|' | b'=') && descr[1..] == want[1..])
}

/// The bytes of a `.npy` header for `T` and `shape` (version 1.0, C order).
pub(crate) fn npy_header_bytes<T: Element>(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}",
        T::NPY_DESCR
    );
    // magic (6) + version (2) + length (2) + dict + '\n', padded to 64 bytes
    let total = 10 + dict.len() + 1;
    let pad = (64 - total % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// The contiguous runs of a block in a C-order file: `(first element's flat
/// index, number of elements)`, in the block's row-major order.
fn block_runs(shape: &[usize], start: &[usize], block: &[usize]) -> Vec<(usize, usize)> {
    let ndim = shape.len();
    if ndim == 0 {
        return vec![(0, 1)];
    }
    let mut strides = vec![1usize; ndim];
    for a in (0..ndim - 1).rev() {
        strides[a] = strides[a + 1] * shape[a + 1];
    }
    // axes from `k` on are read as one run
    let mut k = ndim - 1;
    while k > 0 && block[k] == shape[k] {
        k -= 1;
    }
    let run: usize = block[k..].iter().product();
    if run == 0 {
        return Vec::new();
    }
    grid_indices(&block[..k])
        .into_iter()
        .map(|outer| {
            let flat: usize = outer
                .iter()
                .enumerate()
                .map(|(a, &i)| (start[a] + i) * strides[a])
                .sum::<usize>()
                + start[k] * strides[k];
            (flat, run)
        })
        .collect()
}

fn decode_elements<T: Element>(bytes: &[u8], path: &Path) -> Result<Vec<T>> {
    bytes
        .chunks_exact(T::SIZE)
        .map(T::read_le)
        .collect::<Result<Vec<T>>>()
        .map_err(|e| Error::codec(format!("{}: {e}", path.display())))
}

/// Reads one block of a C-order `.npy` file.
#[derive(Serialize, Deserialize)]
pub(crate) struct NpyRead<T> {
    path: PathBuf,
    data_offset: u64,
    shape: Vec<usize>,
    chunks: Chunks,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Element> Kernel for NpyRead<T> {
    const BASE: &'static str = "array.npy-read";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let info = BlockInfo::from_args(&self.chunks, args)?;
        let file = File::open(&self.path).map_err(|e| io_err(&self.path, "cannot open", e))?;
        let n: usize = info.shape.iter().product();
        let mut data: Vec<T> = Vec::with_capacity(n);
        let mut buf = Vec::new();
        for (flat, len) in block_runs(&self.shape, &info.offset, &info.shape) {
            buf.resize(len * T::SIZE, 0);
            file.read_exact_at(&mut buf, self.data_offset + (flat * T::SIZE) as u64)
                .map_err(|e| io_err(&self.path, &format!("cannot read block {:?} of", info.index), e))?;
            data.extend(decode_elements::<T>(&buf, &self.path)?);
        }
        ArrayD::from_shape_vec(IxDyn(&info.shape), data)
            .map(value)
            .map_err(|e| Error::graph(e.to_string()))
    }
}

/// Writes one block into a C-order `.npy` file whose header is written.
#[derive(Serialize, Deserialize)]
pub(crate) struct NpyWrite<T> {
    path: PathBuf,
    data_offset: u64,
    shape: Vec<usize>,
    chunks: Chunks,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Element> Kernel for NpyWrite<T> {
    const BASE: &'static str = "array.npy-write";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let b = block::<T>(arg(args, 0, Self::BASE)?)?;
        let info = BlockInfo::from_args(&self.chunks, &args[1..])?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| io_err(&self.path, "cannot open for writing", e))?;
        let std_block = b.as_standard_layout();
        let elems = std_block
            .as_slice()
            .ok_or_else(|| Error::graph("a standard-layout block has no slice"))?;
        let mut at = 0;
        let mut buf = Vec::new();
        for (flat, len) in block_runs(&self.shape, &info.offset, &info.shape) {
            buf.clear();
            for &x in &elems[at..at + len] {
                x.write_le(&mut buf);
            }
            file.write_all_at(&buf, self.data_offset + (flat * T::SIZE) as u64)
                .map_err(|e| io_err(&self.path, "cannot write", e))?;
            at += len;
        }
        Ok(Arc::new(()))
    }
}

/// Writes one block as a whole `.npy` file.
#[derive(Serialize, Deserialize)]
pub(crate) struct NpyFileWrite<T> {
    path: PathBuf,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Element> Kernel for NpyFileWrite<T> {
    const BASE: &'static str = "array.npy-file-write";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let b = block::<T>(arg(args, 0, Self::BASE)?)?;
        let mut bytes = npy_header_bytes::<T>(b.shape());
        for &x in b.iter() {
            x.write_le(&mut bytes);
        }
        std::fs::write(&self.path, bytes).map_err(|e| io_err(&self.path, "cannot write", e))?;
        Ok(Arc::new(()))
    }
}

/// Reads one whole `.npy` file as a block.
#[derive(Serialize, Deserialize)]
pub(crate) struct NpyFileRead<T> {
    path: PathBuf,
    shape: Vec<usize>,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Element> Kernel for NpyFileRead<T> {
    const BASE: &'static str = "array.npy-file-read";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, _args: &[Value]) -> Result<Value> {
        let h = read_npy_header(&self.path)?;
        if !descr_matches::<T>(&h.descr) || h.fortran || h.shape != self.shape {
            return Err(Error::codec(format!(
                "{} holds {} {:?}{}, the stack's info.json promises {} {:?}",
                self.path.display(),
                h.descr,
                h.shape,
                if h.fortran { " in Fortran order" } else { "" },
                T::NPY_DESCR,
                self.shape
            )));
        }
        let mut file = File::open(&self.path).map_err(|e| io_err(&self.path, "cannot open", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_err(&self.path, "cannot read", e))?;
        let n: usize = self.shape.iter().product();
        let data = bytes
            .get(h.data_offset as usize..h.data_offset as usize + n * T::SIZE)
            .ok_or_else(|| {
                corrupt(
                    &self.path,
                    format!("the data is shorter than the {n} elements of its header"),
                )
            })?;
        let elems = decode_elements::<T>(data, &self.path)?;
        ArrayD::from_shape_vec(IxDyn(&self.shape), elems)
            .map(value)
            .map_err(|e| Error::graph(e.to_string()))
    }
}

fn file_token(tok: &mut Tokenizer, path: &Path) {
    tok.str(&path.display().to_string());
    if let Ok(meta) = std::fs::metadata(path) {
        tok.u64(meta.len());
        if let Ok(m) = meta.modified()
            && let Ok(d) = m.duration_since(std::time::UNIX_EPOCH)
        {
            tok.u64(d.as_nanos() as u64);
        }
    }
}

/// Reads a `.npy` file lazily, block by block (`chunks` default: `auto`).
/// The element type must match the file's (`<f8` for `f64`, `|b1` for
/// `bool`, …); a mismatch, a truncated file or a bad header is an error
/// naming the file, raised here.
pub fn from_npy<T: Element>(path: impl AsRef<Path>, chunks: impl Into<ChunkSpec>) -> Result<Array<T>> {
    let path = path.as_ref().to_path_buf();
    let h = read_npy_header(&path)?;
    if !descr_matches::<T>(&h.descr) {
        return Err(Error::invalid(format!(
            "{} holds elements of type {}, not {} ({})",
            path.display(),
            h.descr,
            T::DTYPE_NAME,
            T::NPY_DESCR
        )));
    }
    let n: usize = h.shape.iter().product();
    let len = std::fs::metadata(&path)
        .map_err(|e| io_err(&path, "cannot stat", e))?
        .len();
    let needed = h.data_offset + (n * T::SIZE) as u64;
    if len < needed {
        return Err(corrupt(
            &path,
            format!(
                "its header promises {:?} ({n} elements, {needed} bytes in all), the file has {len} bytes",
                h.shape
            ),
        ));
    }
    // A Fortran-order file is the C-order file of the reversed shape, transposed.
    let c_shape: Vec<usize> = if h.fortran {
        h.shape.iter().rev().copied().collect()
    } else {
        h.shape.clone()
    };
    let spec = chunks.into();
    let wanted = spec.resolve(&h.shape, T::SIZE)?;
    let c_chunks = if h.fortran {
        wanted.permuted(&(0..h.shape.len()).rev().collect::<Vec<_>>())
    } else {
        wanted
    };
    let kernel = NpyRead::<T> {
        path: path.clone(),
        data_offset: h.data_offset,
        shape: c_shape.clone(),
        chunks: c_chunks.clone(),
        _type: std::marker::PhantomData,
    };
    let mut tok = Tokenizer::new();
    file_token(&mut tok, &path);
    let meta = blockwise_layer(
        "from-npy",
        op(kernel),
        &c_chunks,
        index_args(c_shape.len()),
        vec![],
        &[tok.finish()],
    );
    let a = Array::from_meta(meta);
    Ok(if h.fortran { a.t() } else { a })
}

fn run_store<T: Element>(
    prefix: &str,
    x: &Array<T>,
    kernel: impl Kernel,
    extra: u64,
    options: ComputeOptions,
) -> Result<()> {
    let mut args = vec![x.meta.same_grid_arg()];
    args.extend(index_args(x.ndim()));
    let meta = blockwise_layer(
        prefix,
        op(kernel),
        x.chunks(),
        args,
        vec![x.meta.layer.clone()],
        &[extra],
    );
    let keys: Vec<Key> = x.chunks().indices().iter().map(|i| meta.key(i)).collect();
    let graph = blockwise_core::Graph::from_layer(meta.layer.clone());
    blockwise_local::compute_graph(&graph, &keys, &options)?;
    Ok(())
}

impl<T: Element> Array<T> {
    /// Writes the array to one `.npy` file (C order), block by block, on
    /// the configured scheduler.
    pub fn to_npy(&self, path: impl AsRef<Path>) -> Result<()> {
        self.to_npy_with(path, ComputeOptions::new())
    }

    /// [`Array::to_npy`] with explicit options.
    pub fn to_npy_with(&self, path: impl AsRef<Path>, options: impl Into<ComputeOptions>) -> Result<()> {
        let path = path.as_ref().to_path_buf();
        let header = npy_header_bytes::<T>(self.shape());
        let data_len = (self.len() * T::SIZE) as u64;
        let file = File::create(&path).map_err(|e| io_err(&path, "cannot create", e))?;
        file.write_all_at(&header, 0)
            .map_err(|e| io_err(&path, "cannot write", e))?;
        file.set_len(header.len() as u64 + data_len)
            .map_err(|e| io_err(&path, "cannot size", e))?;
        drop(file);
        let kernel = NpyWrite::<T> {
            path: path.clone(),
            data_offset: header.len() as u64,
            shape: self.shape().to_vec(),
            chunks: self.chunks().clone(),
            _type: std::marker::PhantomData,
        };
        let mut tok = Tokenizer::new();
        tok.str(&path.display().to_string()).unique();
        run_store("to-npy", self, kernel, tok.finish(), options.into())
    }

    /// Writes one `.npy` file per block along `axis` into directory `dir`
    /// (created if missing), plus `info.json`. Other axes are rechunked into
    /// one block first.
    pub fn to_npy_stack(&self, dir: impl AsRef<Path>, axis: usize) -> Result<()> {
        self.to_npy_stack_with(dir, axis, ComputeOptions::new())
    }

    /// [`Array::to_npy_stack`] with explicit options.
    pub fn to_npy_stack_with(
        &self,
        dir: impl AsRef<Path>,
        axis: usize,
        options: impl Into<ComputeOptions>,
    ) -> Result<()> {
        let axis = self.check_axis(axis, "to_npy_stack")?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, "cannot create directory", e))?;
        let mut sizes: Vec<Vec<usize>> = self.shape().iter().map(|&d| vec![d]).collect();
        sizes[axis] = self.chunks().axis(axis).to_vec();
        let x = self.rechunk_to(&Chunks::from_checked(sizes))?;
        let info = serde_json::json!({
            "format": "blockwise-npy-stack",
            "axis": axis,
            "chunks": x.chunks().sizes(),
            "shape": x.shape(),
            "dtype": T::NPY_DESCR,
        });
        std::fs::write(dir.join("info.json"), info.to_string())
            .map_err(|e| io_err(&dir, "cannot write info.json in", e))?;
        let mut tok = Tokenizer::new();
        tok.str(&dir.display().to_string()).unique();
        let name = tok.name("to-npy-stack");
        let tasks: Vec<(Key, Task)> = x
            .chunks()
            .indices()
            .into_iter()
            .map(|index| {
                let kernel = NpyFileWrite::<T> {
                    path: dir.join(format!("{}.npy", index[axis])),
                    _type: std::marker::PhantomData,
                };
                let idx: Vec<u32> = index.iter().map(|&i| i as u32).collect();
                (
                    Key::new(name.clone(), &idx),
                    Task::new(op(kernel), vec![Input::Key(x.meta.key(&index))]),
                )
            })
            .collect();
        let keys: Vec<Key> = tasks.iter().map(|(k, _)| k.clone()).collect();
        let layer = blockwise_core::Layer::new(
            name,
            vec![x.meta.layer.clone()],
            blockwise_core::LayerBody::Tasks(tasks),
        );
        blockwise_local::compute_graph(&blockwise_core::Graph::from_layer(layer), &keys, &options.into())?;
        Ok(())
    }
}

/// Reads a directory written by [`Array::to_npy_stack`] (or by any program
/// writing the same `info.json`), one block per file.
pub fn from_npy_stack<T: Element>(dir: impl AsRef<Path>) -> Result<Array<T>> {
    let dir = dir.as_ref().to_path_buf();
    let info_path = dir.join("info.json");
    let text = std::fs::read_to_string(&info_path).map_err(|e| io_err(&info_path, "cannot read", e))?;
    #[derive(Deserialize)]
    struct Info {
        axis: usize,
        chunks: Vec<Vec<usize>>,
        shape: Vec<usize>,
        dtype: String,
    }
    let info: Info = serde_json::from_str(&text)
        .map_err(|e| Error::codec(format!("{} is not a valid stack description: {e}", info_path.display())))?;
    if !descr_matches::<T>(&info.dtype) {
        return Err(Error::invalid(format!(
            "{} describes elements of type {}, not {}",
            info_path.display(),
            info.dtype,
            T::DTYPE_NAME
        )));
    }
    let chunks = Chunks::new(&info.shape, info.chunks).map_err(|e| e.context(format!("in {}", info_path.display())))?;
    if info.axis >= chunks.ndim() || (0..chunks.ndim()).any(|a| a != info.axis && chunks.axis(a).len() != 1) {
        return Err(Error::codec(format!(
            "{}: a stack has one block per file along its axis {} and whole other axes",
            info_path.display(),
            info.axis
        )));
    }
    let mut tok = Tokenizer::new();
    tok.str("from-npy-stack");
    file_token(&mut tok, &info_path);
    tokenize_chunks(&mut tok, &chunks);
    let name = tok.name("from-npy-stack");
    let mut tasks = Vec::new();
    for index in chunks.indices() {
        let path = dir.join(format!("{}.npy", index[info.axis]));
        file_token(&mut tok, &path);
        let kernel = NpyFileRead::<T> {
            path,
            shape: chunks.block_shape(&index),
            _type: std::marker::PhantomData,
        };
        tasks.push((index, Task::new(op(kernel), vec![])));
    }
    Ok(Array::from_meta(crate::shape::tasks_layer(name, vec![], tasks, chunks)))
}

/// An element type Zarr can store.
pub trait ZarrElement: Element + zarrs::array::ElementOwned {
    /// The Zarr v3 data type name.
    const ZARR_DTYPE: &'static str;
    /// The fill value written to new stores.
    fn fill_value() -> zarrs::array::FillValue;
}

macro_rules! zarr_element {
    ($t:ident, $name:expr, $fill:expr) => {
        impl ZarrElement for $t {
            const ZARR_DTYPE: &'static str = $name;
            fn fill_value() -> zarrs::array::FillValue {
                zarrs::array::FillValue::from($fill)
            }
        }
    };
}
zarr_element!(f64, "float64", 0.0f64);
zarr_element!(f32, "float32", 0.0f32);
zarr_element!(i64, "int64", 0i64);
zarr_element!(i32, "int32", 0i32);
zarr_element!(u8, "uint8", 0u8);
zarr_element!(bool, "bool", false);

fn zarr_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("Zarr store {}: {e}", path.display()))
}

type ZarrArray = zarrs::array::Array<zarrs::filesystem::FilesystemStore>;

fn open_zarr(path: &Path) -> Result<ZarrArray> {
    let store = zarrs::filesystem::FilesystemStore::new(path).map_err(|e| zarr_err(path, e))?;
    zarrs::array::Array::open(Arc::new(store), "/").map_err(|e| zarr_err(path, e))
}

fn subset_of(info: &BlockInfo) -> zarrs::array::ArraySubset {
    let ranges: Vec<std::ops::Range<u64>> = info
        .offset
        .iter()
        .zip(&info.shape)
        .map(|(&o, &s)| o as u64..(o + s) as u64)
        .collect();
    zarrs::array::ArraySubset::new_with_ranges(&ranges)
}

/// Reads one block of a Zarr array.
#[derive(Serialize, Deserialize)]
pub(crate) struct ZarrRead<T> {
    pub(crate) path: PathBuf,
    pub(crate) chunks: Chunks,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: ZarrElement> Kernel for ZarrRead<T> {
    const BASE: &'static str = "array.zarr-read";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let info = BlockInfo::from_args(&self.chunks, args)?;
        let z = open_zarr(&self.path)?;
        if let Some(mut plain) = PlainBlock::<T>::open(&z, &self.path, &info)? {
            // One allocation, filled from the page cache through a small buffer.
            let mut data = vec![T::default(); info.shape.iter().product()];
            plain.fill(&mut data)?;
            return ArrayD::from_shape_vec(IxDyn(&info.shape), data)
                .map(value)
                .map_err(|e| Error::graph(e.to_string()));
        }
        let block: ArrayD<T> = z.retrieve_array_subset::<ArrayD<T>>(&subset_of(&info)).map_err(|e| {
            Error::codec(format!(
                "Zarr store {}: block {:?}: {e}",
                self.path.display(),
                info.index
            ))
        })?;
        Ok(value(block))
    }
}

impl<T: ZarrElement> ZarrRead<T> {
    /// The block at `info` as a reader of row-major strips, when it lies in
    /// one uncompressed chunk file (see [`PlainBlock`]).
    pub(crate) fn plain_block(&self, info: &BlockInfo) -> Result<Option<PlainBlock<T>>> {
        let z = open_zarr(&self.path)?;
        PlainBlock::open(&z, &self.path, info)
    }
}

/// Bytes read from a chunk file per positioned read: large enough that the
/// system call costs little, small enough to stay in the L2 cache.
const READ_PIECE: usize = 512 << 10;

/// A block that lies in one uncompressed chunk file — the `bytes` codec
/// alone, little-endian, no storage transformer, a regular chunk grid — read
/// in row-major order with positioned reads into a small buffer and decoded
/// from there: no buffer of the whole chunk (zarrs decodes a chunk into one,
/// then copies the block out of it). Stores that are compressed, sharded or
/// otherwise encoded, blocks across chunks and chunks never written (the
/// fill value) are left to zarrs.
pub(crate) struct PlainBlock<T> {
    file: File,
    path: PathBuf,
    /// Each row-major run of the block: byte offset in the file, elements.
    runs: Vec<(u64, usize)>,
    /// The run being read, and how many of its elements were read.
    run: usize,
    done: usize,
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded.
    at: usize,
    _type: std::marker::PhantomData<fn() -> T>,
}

/// Whether a codec list is the `bytes` codec alone, little-endian (or with
/// no endianness, as for one-byte types).
fn plain_codecs(codecs: &serde_json::Value) -> bool {
    let [codec] = codecs.as_array().map(Vec::as_slice).unwrap_or_default() else {
        return false;
    };
    if codec.as_str() == Some("bytes") {
        return true;
    }
    codec["name"] == "bytes"
        && match codec.get("configuration") {
            None | Some(serde_json::Value::Null) => true,
            Some(c) => c.get("endian").is_none_or(|e| e == "little"),
        }
}

impl<T: Element> PlainBlock<T> {
    /// The reader of `info`'s block, or `None` when zarrs must decode it.
    fn open(z: &ZarrArray, path: &Path, info: &BlockInfo) -> Result<Option<Self>> {
        let zarrs::array::ArrayMetadata::V3(m) = z.metadata() else {
            return Ok(None);
        };
        if !m.storage_transformers.is_empty() || info.shape.contains(&0) {
            return Ok(None);
        }
        let codecs = serde_json::to_value(&m.codecs).unwrap_or_default();
        let grid = serde_json::to_value(&m.chunk_grid).unwrap_or_default();
        if !plain_codecs(&codecs) || grid["name"] != "regular" {
            return Ok(None);
        }
        let Some(chunk_shape) = grid["configuration"]["chunk_shape"].as_array().and_then(|a| {
            a.iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<Vec<_>>>()
        }) else {
            return Ok(None);
        };
        if chunk_shape.len() != info.shape.len() || chunk_shape.contains(&0) {
            return Ok(None);
        }
        let chunk: Vec<u64> = info
            .offset
            .iter()
            .zip(&chunk_shape)
            .map(|(&o, &c)| (o / c) as u64)
            .collect();
        let within: Vec<usize> = info.offset.iter().zip(&chunk_shape).map(|(&o, &c)| o % c).collect();
        if within
            .iter()
            .zip(&info.shape)
            .zip(&chunk_shape)
            .any(|((&w, &s), &c)| w + s > c)
        {
            return Ok(None);
        }
        let key = z.chunk_key(&chunk);
        let file_path = path.join(key.as_str().trim_start_matches('/'));
        let file = match File::open(&file_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&file_path, "cannot open", e)),
        };
        let len = file.metadata().map_err(|e| io_err(&file_path, "cannot read", e))?.len();
        if len != (chunk_shape.iter().product::<usize>() * T::SIZE) as u64 {
            // Not a plain chunk after all: zarrs says what is wrong with it.
            return Ok(None);
        }
        let runs = block_runs(&chunk_shape, &within, &info.shape)
            .into_iter()
            .map(|(flat, n)| ((flat * T::SIZE) as u64, n))
            .collect();
        Ok(Some(PlainBlock {
            file,
            path: file_path,
            runs,
            run: 0,
            done: 0,
            buf: Vec::new(),
            at: 0,
            _type: std::marker::PhantomData,
        }))
    }

    /// Reads the next piece of the block into the buffer.
    fn refill(&mut self) -> Result<()> {
        while self.run < self.runs.len() && self.done == self.runs[self.run].1 {
            self.run += 1;
            self.done = 0;
        }
        let Some(&(offset, len)) = self.runs.get(self.run) else {
            return Err(Error::graph(format!(
                "{}: a block reader was asked for more elements than the block has",
                self.path.display()
            )));
        };
        let n = (len - self.done).min((READ_PIECE / T::SIZE).max(1));
        self.buf.resize(n * T::SIZE, 0);
        self.file
            .read_exact_at(&mut self.buf, offset + (self.done * T::SIZE) as u64)
            .map_err(|e| io_err(&self.path, "cannot read", e))?;
        self.done += n;
        self.at = 0;
        Ok(())
    }

    /// Writes the block's next `out.len()` elements (row-major order).
    pub(crate) fn fill(&mut self, out: &mut [T]) -> Result<()> {
        let mut filled = 0;
        while filled < out.len() {
            if self.at == self.buf.len() {
                self.refill()?;
            }
            let k = ((self.buf.len() - self.at) / T::SIZE).min(out.len() - filled);
            let bytes = &self.buf[self.at..self.at + k * T::SIZE];
            for (o, b) in out[filled..filled + k].iter_mut().zip(bytes.chunks_exact(T::SIZE)) {
                *o = T::read_le(b).map_err(|e| Error::codec(format!("{}: {e}", self.path.display())))?;
            }
            self.at += k * T::SIZE;
            filled += k;
        }
        Ok(())
    }
}

/// Writes one block into a Zarr array whose metadata is written.
#[derive(Serialize, Deserialize)]
pub(crate) struct ZarrWrite<T> {
    path: PathBuf,
    chunks: Chunks,
    #[serde(skip)]
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: ZarrElement> Kernel for ZarrWrite<T> {
    const BASE: &'static str = "array.zarr-write";
    fn suffix() -> String {
        T::DTYPE_NAME.into()
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let b = block::<T>(arg(args, 0, Self::BASE)?)?;
        let info = BlockInfo::from_args(&self.chunks, &args[1..])?;
        let z = open_zarr(&self.path)?;
        let data: ArrayD<T> = b.as_standard_layout().into_owned();
        z.store_array_subset(&subset_of(&info), data)
            .map_err(|e| zarr_err(&self.path, format!("cannot write block {:?}: {e}", info.index)))?;
        Ok(Arc::new(()))
    }
}

macro_rules! reg_io {
    ($t:ident) => {
        register_kernel!(NpyRead, "array.npy-read", $t);
        register_kernel!(NpyWrite, "array.npy-write", $t);
        register_kernel!(NpyFileRead, "array.npy-file-read", $t);
        register_kernel!(NpyFileWrite, "array.npy-file-write", $t);
        register_kernel!(ZarrRead, "array.zarr-read", $t);
        register_kernel!(ZarrWrite, "array.zarr-write", $t);
    };
}
for_each_dtype!(reg_io);

/// Compression of a Zarr store written by [`Array::to_zarr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZarrCompression {
    /// No compression (the `bytes` codec only).
    None,
    /// zstd at this level (zarr-python's default codec for v3 arrays).
    Zstd(i32),
    /// gzip at this level (0–9).
    Gzip(u32),
}

/// Reads a Zarr v3 array at `path` lazily, one task per block; blocks are
/// the store's chunks unless `chunks` says otherwise.
pub fn from_zarr<T: ZarrElement>(path: impl AsRef<Path>, chunks: Option<ChunkSpec>) -> Result<Array<T>> {
    let path = path.as_ref().to_path_buf();
    let z = open_zarr(&path)?;
    let dtype = match z.metadata() {
        zarrs::array::ArrayMetadata::V3(m) => m.data_type.name().to_string(),
        zarrs::array::ArrayMetadata::V2(_) => {
            return Err(Error::invalid(format!(
                "{} is a Zarr v2 array; only v3 is read",
                path.display()
            )));
        }
    };
    if dtype != T::ZARR_DTYPE {
        return Err(Error::invalid(format!(
            "Zarr store {} holds {dtype} elements, not {} ({})",
            path.display(),
            T::ZARR_DTYPE,
            T::DTYPE_NAME
        )));
    }
    let shape: Vec<usize> = z.shape().iter().map(|&d| d as usize).collect();
    let chunks = match chunks {
        Some(spec) => spec.resolve(&shape, T::SIZE)?,
        None => {
            let zero = vec![0u64; shape.len()];
            let c = z.chunk_shape(&zero).map_err(|e| zarr_err(&path, e))?;
            let block: Vec<usize> = c.iter().map(|d| d.get() as usize).collect();
            Chunks::uniform(&shape, &block)?
        }
    };
    let kernel = ZarrRead::<T> {
        path: path.clone(),
        chunks: chunks.clone(),
        _type: std::marker::PhantomData,
    };
    let mut tok = Tokenizer::new();
    file_token(&mut tok, &path.join("zarr.json"));
    let meta = blockwise_layer(
        "from-zarr",
        op(kernel),
        &chunks,
        index_args(shape.len()),
        vec![],
        &[tok.finish()],
    );
    Ok(Array::from_meta(meta))
}

impl<T: ZarrElement> Array<T> {
    /// Writes the array as a Zarr v3 array at `path` (a directory), one
    /// chunk per block, on the configured scheduler.
    pub fn to_zarr(&self, path: impl AsRef<Path>, compression: ZarrCompression) -> Result<()> {
        self.to_zarr_with(path, compression, ComputeOptions::new())
    }

    /// [`Array::to_zarr`] with explicit options.
    pub fn to_zarr_with(
        &self,
        path: impl AsRef<Path>,
        compression: ZarrCompression,
        options: impl Into<ComputeOptions>,
    ) -> Result<()> {
        let path = path.as_ref().to_path_buf();
        // Zarr's grid is regular: blocks of one size, the last one smaller.
        let x = if self.chunks().is_regular() {
            self.clone()
        } else {
            self.rechunk(self.chunks().max_block())?
        };
        let block: Vec<u64> = x.chunks().max_block().iter().map(|&b| b.max(1) as u64).collect();
        let shape: Vec<u64> = x.shape().iter().map(|&d| d as u64).collect();
        std::fs::create_dir_all(&path).map_err(|e| io_err(&path, "cannot create directory", e))?;
        let store = Arc::new(zarrs::filesystem::FilesystemStore::new(&path).map_err(|e| zarr_err(&path, e))?);
        let mut builder = zarrs::array::ArrayBuilder::new(shape, block, T::ZARR_DTYPE, T::fill_value());
        match compression {
            ZarrCompression::None => {}
            ZarrCompression::Zstd(level) => {
                builder.bytes_to_bytes_codecs(vec![Arc::new(zarrs::array::codec::ZstdCodec::new(level, false))]);
            }
            ZarrCompression::Gzip(level) => {
                let codec = zarrs::array::codec::GzipCodec::new(level)
                    .map_err(|e| Error::invalid(format!("gzip level {level}: {e}")))?;
                builder.bytes_to_bytes_codecs(vec![Arc::new(codec)]);
            }
        }
        let z = builder.build(store, "/").map_err(|e| zarr_err(&path, e))?;
        z.store_metadata().map_err(|e| zarr_err(&path, e))?;
        let kernel = ZarrWrite::<T> {
            path: path.clone(),
            chunks: x.chunks().clone(),
            _type: std::marker::PhantomData,
        };
        let mut tok = Tokenizer::new();
        tok.str(&path.display().to_string()).unique();
        run_store("to-zarr", &x, kernel, tok.finish(), options.into())
    }
}
