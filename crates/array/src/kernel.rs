//! Registered ops: how an array task is named, sent and rebuilt.
//!
//! Every array op is a [`Kernel`]: a serde struct of parameters plus a `call`
//! over block values. [`KernelOp`] turns a kernel into a core
//! [`Op`](blockwise_core::Op) whose name is `BASE.dtype` (`array.map.f64`)
//! and whose parameters are the kernel's postcard encoding, so a worker
//! process rebuilds the very same kernel from the registry.
//!
//! Kernels are generic over element types; the registry needs one entry per
//! concrete type, so each kernel module registers itself with
//! [`register_kernel!`] over the dtypes it supports. The runtime name is
//! interned once per (base, dtype) and must spell what the macro registered:
//! [`Kernel::suffix`] returns `Element::DTYPE_NAME`, the same text as
//! `stringify!` of the type.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use blockwise_core::value::{Encoded, postcard_decode, postcard_encode};
use blockwise_core::{Error, ErrorKind, Op, Result, Value};
use ndarray::ArrayD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::element::Element;

/// Parameters and code of one array op.
pub(crate) trait Kernel: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The registered name without its dtype suffix (`"array.map"`).
    const BASE: &'static str;
    /// The dtype suffix (`"f64"`, or `"f64.i32"` for two types).
    fn suffix() -> String;
    /// Runs the kernel on its input values.
    fn call(&self, args: &[Value]) -> Result<Value>;
}

/// A kernel as a core op.
pub(crate) struct KernelOp<K> {
    name: &'static str,
    kernel: K,
}

/// The interned `BASE.suffix` name.
pub(crate) fn op_name(base: &str, suffix: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let full = format!("{base}.{suffix}");
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(&full) {
        return n;
    }
    let leaked: &'static str = Box::leak(full.clone().into_boxed_str());
    names.insert(full, leaked);
    leaked
}

impl<K: Kernel> Op for KernelOp<K> {
    fn name(&self) -> &str {
        self.name
    }

    fn call(&self, args: &[Value]) -> Result<Value> {
        self.kernel.call(args)
    }

    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        postcard_encode(&self.kernel, out)
    }

    fn label(&self) -> String {
        K::BASE.trim_start_matches("array.").to_string()
    }
}

/// Wraps a kernel as a shared op.
pub(crate) fn op<K: Kernel>(kernel: K) -> Arc<dyn Op> {
    Arc::new(KernelOp {
        name: op_name(K::BASE, &K::suffix()),
        kernel,
    })
}

/// Rebuilds a kernel op from its parameters (the registry's decode function).
pub(crate) fn decode<K: Kernel>(params: &[u8]) -> Result<Arc<dyn Op>> {
    let kernel: K = postcard_decode(params)?;
    Ok(op(kernel))
}

/// Registers a kernel once per listed element type:
/// `register_kernel!(Map, "array.map", f64, f32)` registers `Map<f64>` as
/// `array.map.f64`, and so on.
macro_rules! register_kernel {
    ($kernel:ident, $base:literal, $($t:ident),+ $(,)?) => {$(
        blockwise_core::register_op!(
            concat!($base, ".", stringify!($t)),
            $crate::kernel::decode::<$kernel<$t>>
        );
    )+};
}
pub(crate) use register_kernel;

/// Registers a two-type kernel for every (from, to) pair of element types.
macro_rules! register_kernel2 {
    ($kernel:ident, $base:literal, [$($a:ident),+], $bs:tt) => {$(
        $crate::kernel::register_kernel2!(@one $kernel, $base, $a, $bs);
    )+};
    (@one $kernel:ident, $base:literal, $a:ident, [$($b:ident),+]) => {$(
        blockwise_core::register_op!(
            concat!($base, ".", stringify!($a), ".", stringify!($b)),
            $crate::kernel::decode::<$kernel<$a, $b>>
        );
    )+};
}
pub(crate) use register_kernel2;

/// The block in a value: borrowed when it is one, decoded when it arrived
/// encoded from another process.
pub(crate) fn block<T: Element>(value: &Value) -> Result<Cow<'_, ArrayD<T>>> {
    if let Some(a) = value.downcast_ref::<ArrayD<T>>() {
        return Ok(Cow::Borrowed(a));
    }
    if let Some(enc) = value.downcast_ref::<Encoded>() {
        if enc.codec == std::any::type_name::<ArrayD<T>>() {
            return Ok(Cow::Owned(<ArrayD<T> as blockwise_core::Decode>::decode(&enc.bytes)?));
        }
        return Err(mismatch::<T>(&enc.codec));
    }
    Err(mismatch::<T>(value.codec()))
}

fn mismatch<T: Element>(found: &str) -> Error {
    Error::new(
        ErrorKind::TypeMismatch,
        format!(
            "an array kernel expected a block of {} elements, found {found}",
            T::DTYPE_NAME
        ),
    )
}

/// The `i`-th argument, or an error naming the op.
pub(crate) fn arg<'a>(args: &'a [Value], i: usize, op: &str) -> Result<&'a Value> {
    args.get(i).ok_or_else(|| {
        Error::graph(format!(
            "{op} expects at least {} inputs, the task gives {}",
            i + 1,
            args.len()
        ))
    })
}

/// A block index argument (a `u64` literal from `BlockArg::BlockIndex`).
pub(crate) fn index_arg(value: &Value) -> Result<usize> {
    value
        .downcast_ref::<u64>()
        .map(|&i| i as usize)
        .ok_or_else(|| Error::graph(format!("expected a block index, found {}", value.codec())))
}

/// Wraps an owned block as a value.
pub(crate) fn value<T: Element>(a: ArrayD<T>) -> Value {
    Arc::new(a)
}
