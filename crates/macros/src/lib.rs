//! # blockwise-macros
//!
//! The two procedural macros of blockwise, re-exported by the facade as
//! `blockwise::task` and `blockwise::Data`:
//!
//! - [`macro@task`] keeps a function as written and registers it under a
//!   stable name, so a task calling it can be rebuilt in another process of the
//!   same build (a worker running the user's executable).
//! - [`macro@Data`] makes a serde type a task value: its size for memory
//!   accounting, its postcard codec, and the codec's registration.
//!
//! Generated code reaches `blockwise-core` through `::blockwise::__private`,
//! so a user needs only the facade. A crate that does not depend on the facade
//! names a module of its own that re-exports the same items:
//!
//! ```
//! mod shim {
//!     pub use blockwise_core;
//!     pub use serde; // needed only by `#[derive(Data)]` on a generic type
//! }
//!
//! #[blockwise_macros::task(crate = crate::shim)]
//! fn double(x: i64) -> i64 {
//!     x * 2
//! }
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize, blockwise_macros::Data)]
//! #[blockwise(crate = crate::shim)]
//! struct Reading {
//!     station: String,
//!     celsius: f64,
//! }
//!
//! # fn main() {
//! assert_eq!(double(21), 42); // still an ordinary function
//! # let _ = Reading { station: String::new(), celsius: 0.0 };
//! # }
//! ```

mod data;
mod krate;
mod task;

use proc_macro::TokenStream;

/// Registers a function as a task op that any process of this build can
/// rebuild by name.
///
/// The function stays as written and callable as usual. Beside it, the
/// attribute submits (at link time, with `inventory`), under the stable name
/// `module_path!()::name` (e.g. `my_app::stats::mean`):
///
/// - a `TaskEntry`: the function item's type name, so `delayed(mean)` or
///   `bag.map(mean)` finds the registration from the function alone
///   (`blockwise_core::op::registered_name_of`), and a constructor rebuilding
///   the op from its encoded argument layout (`blockwise_core::op::decode_op`);
/// - a `FnEntry`: the function as a `fn` pointer, for collection ops that call
///   it their own way (`blockwise_core::op::registered_fn`);
/// - a `RecordFnEntry` (`blockwise_core::records`): for a function of one
///   value `fn(A) -> R`, an adapter mapping a stream of `A` records into a
///   stream of `R`; for a function of one reference `fn(&A) -> K` with an
///   `Ord` key, the order of `A` records by that key. With them a bag's
///   `map(f)` and `topk(k, key)` can be rebuilt in a worker, which knows
///   neither type otherwise.
///
/// To run as a task, parameters must be task values (`Data + Decode + Clone`,
/// e.g. numbers, `String`, `Vec<T>`, types deriving `blockwise::Data`) and the
/// result a value or a `Result<T, E>` whose error (any `Display`) fails the
/// task with its message. A function with other parameters (a slice, an array
/// view) still registers, for collection ops; passing it to `delayed` is then
/// a compile error at that call, and rebuilding it as a task by name is a
/// `TypeMismatch` error.
///
/// ```ignore
/// #[blockwise::task]
/// fn mean(xs: Vec<f64>) -> f64 {
///     xs.iter().sum::<f64>() / xs.len() as f64
/// }
///
/// #[blockwise::task]
/// fn parse(line: String) -> Result<i64, std::num::ParseIntError> {
///     line.trim().parse()
/// }
/// ```
///
/// (These examples name the facade `blockwise`, which this crate cannot depend
/// on; the example under *Options* compiles and runs the same thing.)
///
/// Rejected, each with an error on the offending part: generic functions,
/// `impl Trait` parameters or results and named lifetimes (each process must
/// find the function by one name and one `fn` pointer type; write a
/// non-generic wrapper, elide lifetimes), `self` parameters, `async fn`,
/// `unsafe fn`, and more than eight parameters. Only free functions can be
/// registered: on a function inside an `impl` block the attribute fails to
/// compile (`const` items in this context need a name).
///
/// # Options
///
/// `#[task(crate = path)]` replaces the default root `::blockwise::__private`
/// of the generated paths with `path`, a module that re-exports
/// `blockwise_core`; for crates that use `blockwise-core` without the facade:
///
/// ```
/// mod shim {
///     pub use blockwise_core;
/// }
///
/// mod geometry {
///     #[blockwise_macros::task(crate = crate::shim)]
///     pub fn area(width: f64, height: f64) -> f64 {
///         width * height
///     }
/// }
///
/// use std::sync::Arc;
/// use blockwise_core::op::{decode_op, registered_name_of};
/// use blockwise_core::value::{postcard_encode, Value};
///
/// /// The registered name of a function item, found from its type alone.
/// fn name_of<F: 'static>(_: &F) -> Option<&'static str> {
///     registered_name_of::<F>()
/// }
///
/// # fn main() {
/// let name = name_of(&geometry::area).expect("registered");
/// assert!(name.ends_with("::geometry::area"));
///
/// let mut params = Vec::new();
/// postcard_encode(&vec![None::<u32>, None], &mut params).unwrap(); // one input per parameter
/// let op = decode_op(name, &params).unwrap();
/// let out = op.call(&[Arc::new(3.0f64) as Value, Arc::new(4.0f64)]).unwrap();
/// assert_eq!(out.downcast_ref::<f64>(), Some(&12.0));
/// # }
/// ```
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match task::expand(attr.into(), item.clone()) {
        Ok(expanded) => expanded.into(),
        Err(error) => {
            // Keep the function as written beside the error, so its callers
            // do not add a cascade of "cannot find function" errors.
            let mut out = item;
            out.extend(error.into_compile_error());
            out.into()
        }
    }
}

/// Makes a struct or enum a task value: implements
/// `blockwise_core::value::Data` and `Decode` through serde and postcard, and
/// registers its codec.
///
/// The type must also derive `serde::Serialize` and `serde::Deserialize`, and
/// every field must itself be `Data` (its size is counted:
/// `size_bytes` = `size_of::<Self>()` plus each field's heap bytes, of the
/// variant in hand for an enum). Derive `Clone` too to take the type as a task
/// argument.
///
/// ```ignore
/// #[derive(Clone, serde::Serialize, serde::Deserialize, blockwise::Data)]
/// struct Reading {
///     station: String,
///     celsius: f64,
/// }
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize, blockwise::Data)]
/// enum Shape {
///     Circle { radius: f64 },
///     Polygon(Vec<f64>),
/// }
/// ```
///
/// A registered codec lets a value arriving from another process be decoded
/// eagerly into its type. A **generic** type gets `Data` and `Decode` (bounded
/// on its field types and on serde) but is **not registered**, since an open
/// generic has no single codec name: register the instantiations you send with
/// `blockwise::register_codec!(Pair<i64>)`, or let them be decoded lazily when
/// a typed consumer asks for them, which works without registration.
///
/// # Options
///
/// `#[blockwise(crate = path)]` replaces the default root
/// `::blockwise::__private` with `path`, a module that re-exports
/// `blockwise_core` (and `serde`, used by the bounds of a generic type):
///
/// ```
/// mod shim {
///     pub use blockwise_core;
///     pub use serde;
/// }
///
/// #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, blockwise_macros::Data)]
/// #[blockwise(crate = crate::shim)]
/// enum Shape {
///     Circle { radius: f64 },
///     Label(String),
/// }
///
/// use std::sync::Arc;
/// use blockwise_core::value::{decode_value, encode_value, Data, Value};
///
/// # fn main() {
/// let label = Shape::Label("a long label".to_string());
/// assert!(label.size_bytes() > Shape::Circle { radius: 1.0 }.size_bytes());
///
/// let value: Value = Arc::new(label.clone());
/// let encoded = encode_value(&value).unwrap();
/// let back = decode_value(&encoded.codec, &encoded.bytes).unwrap();
/// assert_eq!(back.downcast_ref::<Shape>(), Some(&label)); // decoded eagerly: registered
/// # }
/// ```
#[proc_macro_derive(Data, attributes(blockwise))]
pub fn derive_data(input: TokenStream) -> TokenStream {
    data::expand(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
