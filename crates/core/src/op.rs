//! Ops: what a task runs, and how it is found again in another process.
//!
//! Every op has a stable name. An op that may cross a process boundary is
//! *registered*: an [`OpEntry`] (collected at link time with `inventory`) maps
//! its name to a constructor that rebuilds it from its encoded parameters. A
//! worker is the same executable as the client (see [`crate::identity`]), so
//! the same registrations exist on both sides.
//!
//! User functions are registered by `#[blockwise::task]`, which submits a
//! [`TaskEntry`]. [`FnOp`] wraps any function or closure for the local
//! executors; it is portable only when its function is registered — sending a
//! closure to another process is an [`ErrorKind::NotRegistered`] error that
//! names the fix.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use crate::error::{Error, ErrorKind, Result};
use crate::key::Tokenizer;
use crate::value::{Data, FromValue, IntoValue, Tuple, Value, postcard_decode, postcard_encode};

/// What a task runs: a function of its input values.
pub trait Op: Send + Sync + 'static {
    /// The stable name under which the op is registered (for a closure, a
    /// descriptive name that is not registered).
    fn name(&self) -> &str;

    /// Runs the op on its inputs, in the task's input order.
    fn call(&self, args: &[Value]) -> Result<Value>;

    /// Appends the parameters that rebuild this op in another process. An op
    /// that cannot be sent (a closure) returns [`ErrorKind::NotRegistered`].
    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        let _ = out;
        Ok(())
    }

    /// Feeds the op's identity to a tokenizer: its name and parameters. An
    /// op with unhashable state must feed [`Tokenizer::unique`].
    fn tokenize(&self, tokenizer: &mut Tokenizer) {
        tokenizer.str(self.name());
        let mut params = Vec::new();
        match self.encode_params(&mut params) {
            Ok(()) => tokenizer.bytes(&params),
            Err(_) => tokenizer.unique(),
        };
    }

    /// A short label for graph pictures and progress bars.
    fn label(&self) -> String {
        let name = self.name();
        name.rsplit("::").next().unwrap_or(name).to_string()
    }
}

impl fmt::Debug for dyn Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Op({})", self.name())
    }
}

/// A built-in or library op, registered at link time under a stable name.
pub struct OpEntry {
    /// The op's name, as returned by [`Op::name`].
    pub name: &'static str,
    /// Rebuilds the op from the bytes written by [`Op::encode_params`].
    pub decode: fn(&[u8]) -> Result<Arc<dyn Op>>,
}
inventory::collect!(OpEntry);

/// A user function registered by `#[blockwise::task]`.
pub struct TaskEntry {
    /// The stable name: module path and function name.
    pub name: &'static str,
    /// `std::any::type_name` of the function item, to recognise it when it is
    /// passed to `delayed` or `map`.
    pub type_name: fn() -> &'static str,
    /// Rebuilds the op from its parameters (the argument layout).
    pub decode: fn(&[u8]) -> Result<Arc<dyn Op>>,
}
inventory::collect!(TaskEntry);

/// A user function registered as a plain function pointer, for collection
/// ops that call it in their own way (a block function of an array, a
/// partition function of a data frame). `#[blockwise::task]` submits one for
/// every function, beside its [`TaskEntry`].
pub struct FnEntry {
    /// The stable name: module path and function name.
    pub name: &'static str,
    /// `std::any::type_name` of the function item.
    pub type_name: fn() -> &'static str,
    /// The function as a `fn(..) -> ..` pointer behind `Any`.
    pub func: fn() -> &'static (dyn std::any::Any + Send + Sync),
}
inventory::collect!(FnEntry);

/// Rebuilds an op from its encoded parameters.
type OpDecoder = fn(&[u8]) -> Result<Arc<dyn Op>>;

struct Registry {
    ops: HashMap<&'static str, OpDecoder>,
    by_type: HashMap<&'static str, &'static str>,
    fns: HashMap<&'static str, fn() -> &'static (dyn std::any::Any + Send + Sync)>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut ops = HashMap::new();
        let mut by_type = HashMap::new();
        let mut fns = HashMap::new();
        for e in inventory::iter::<FnEntry> {
            fns.insert(e.name, e.func);
            by_type.insert((e.type_name)(), e.name);
        }
        for e in inventory::iter::<OpEntry> {
            ops.insert(e.name, e.decode);
        }
        for e in inventory::iter::<TaskEntry> {
            ops.insert(e.name, e.decode);
            by_type.insert((e.type_name)(), e.name);
        }
        Registry { ops, by_type, fns }
    })
}

/// Rebuilds a registered op from its name and encoded parameters.
pub fn decode_op(name: &str, params: &[u8]) -> Result<Arc<dyn Op>> {
    match registry().ops.get(name) {
        Some(decode) => decode(params).map_err(|e| e.context(format!("while rebuilding op {name}"))),
        None => Err(Error::new(
            ErrorKind::NotRegistered,
            format!(
                "no op named `{name}` is registered in this executable; a function must be marked \
                 #[blockwise::task], and every process of a computation must run the same build"
            ),
        )),
    }
}

/// The registered name of a function type, if `#[blockwise::task]` registered it.
pub fn registered_name_of<F: 'static>() -> Option<&'static str> {
    registry().by_type.get(std::any::type_name::<F>()).copied()
}

/// The registered function `name` as the function-pointer type `P` (for
/// example `fn(ndarray::ArrayViewD<'_, f64>) -> ndarray::ArrayD<f64>`). An
/// unknown name or a different signature is a clear error.
pub fn registered_fn<P: Copy + 'static>(name: &str) -> Result<P> {
    let func = registry().fns.get(name).ok_or_else(|| {
        Error::new(
            ErrorKind::NotRegistered,
            format!("no function named `{name}` is registered in this executable (mark it #[blockwise::task])"),
        )
    })?;
    func().downcast_ref::<P>().copied().ok_or_else(|| {
        Error::new(
            ErrorKind::TypeMismatch,
            format!(
                "the registered function `{name}` does not have the signature {}",
                std::any::type_name::<P>()
            ),
        )
    })
}

/// Registers an op type with `OpEntry`, given an expression that decodes it.
#[macro_export]
macro_rules! register_op {
    ($name:expr, $decode:expr) => {
        $crate::__private::inventory::submit! {
            $crate::op::OpEntry { name: $name, decode: $decode }
        }
    };
}

/// What a task function returns: a value, or a `Result` whose error fails the task.
pub trait TaskOutput {
    /// The successful value type.
    type Ok;
    /// Converts into the engine's result.
    fn into_task_result(self) -> Result<Value>;
}

impl<T: IntoValue> TaskOutput for T {
    type Ok = T;
    fn into_task_result(self) -> Result<Value> {
        Ok(self.into_value())
    }
}

impl<T: IntoValue, E: fmt::Display> TaskOutput for std::result::Result<T, E> {
    type Ok = T;
    fn into_task_result(self) -> Result<Value> {
        self.map(IntoValue::into_value)
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, e.to_string()))
    }
}

/// A function of `Args` (a tuple of parameter types) that a task can call.
/// Implemented for every `Fn` of up to eight parameters whose parameters are
/// [`FromValue`] and whose output is a [`TaskOutput`].
pub trait TaskFn<Args>: Send + Sync + 'static {
    /// What the function returns on success.
    type Output;
    /// Number of parameters.
    const ARITY: usize;
    /// Calls the function with one value per parameter.
    fn invoke(&self, args: &[Value]) -> Result<Value>;
}

macro_rules! task_fn_arity {
    ($n:expr; $($a:ident $i:tt),*) => {
        impl<F, R, $($a),*> TaskFn<($($a,)*)> for F
        where
            F: Fn($($a),*) -> R + Send + Sync + 'static,
            R: TaskOutput,
            $($a: FromValue + 'static,)*
        {
            type Output = R::Ok;
            const ARITY: usize = $n;
            #[allow(unused_variables)]
            fn invoke(&self, args: &[Value]) -> Result<Value> {
                (self)($(
                    $a::from_value(&args[$i]).map_err(|e| e.context(format!("in argument {}", $i + 1)))?
                ),*).into_task_result()
            }
        }
    };
}
task_fn_arity!(0;);
task_fn_arity!(1; A1 0);
task_fn_arity!(2; A1 0, A2 1);
task_fn_arity!(3; A1 0, A2 1, A3 2);
task_fn_arity!(4; A1 0, A2 1, A3 2, A4 3);
task_fn_arity!(5; A1 0, A2 1, A3 2, A4 3, A5 4);
task_fn_arity!(6; A1 0, A2 1, A3 2, A4 3, A5 4, A6 5);
task_fn_arity!(7; A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6);
task_fn_arity!(8; A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6, A8 7);

/// How a task's flat input list maps onto a function's parameters: for each
/// parameter, `None` for one input, `Some(n)` for `n` inputs gathered into a
/// list (a `Vec<Delayed<T>>` passed where the function takes `Vec<T>`).
pub type ArgLayout = Vec<Option<u32>>;

/// A function or closure as an op.
pub struct FnOp<F, Args> {
    f: F,
    name: &'static str,
    registered: bool,
    layout: ArgLayout,
    _args: PhantomData<fn(Args)>,
}

impl<F: TaskFn<Args>, Args: 'static> FnOp<F, Args> {
    /// Wraps `f`; it is portable when `#[blockwise::task]` registered it.
    pub fn new(f: F, layout: ArgLayout) -> Self {
        let (name, registered) = match registered_name_of::<F>() {
            Some(name) => (name, true),
            None => (std::any::type_name::<F>(), false),
        };
        FnOp {
            f,
            name,
            registered,
            layout,
            _args: PhantomData,
        }
    }

    /// Rebuilds a registered function's op from its parameters (used by the
    /// code that `#[blockwise::task]` generates).
    pub fn from_params(f: F, name: &'static str, params: &[u8]) -> Result<Arc<dyn Op>> {
        let layout: ArgLayout = postcard_decode(params)?;
        if layout.len() != F::ARITY {
            return Err(Error::codec(format!(
                "op {name} takes {} arguments, the task gives {}",
                F::ARITY,
                layout.len()
            )));
        }
        Ok(Arc::new(FnOp {
            f,
            name,
            registered: true,
            layout,
            _args: PhantomData,
        }))
    }

    /// Whether the function is registered (so the op can cross processes).
    pub fn is_registered(&self) -> bool {
        self.registered
    }
}

impl<F: TaskFn<Args>, Args: 'static> Op for FnOp<F, Args> {
    fn name(&self) -> &str {
        self.name
    }

    fn call(&self, args: &[Value]) -> Result<Value> {
        if self.layout.iter().all(Option::is_none) {
            if args.len() != F::ARITY {
                return Err(Error::graph(format!(
                    "{} takes {} arguments, the task gives {}",
                    self.name,
                    F::ARITY,
                    args.len()
                )));
            }
            return self.f.invoke(args);
        }
        let mut grouped: Vec<Value> = Vec::with_capacity(self.layout.len());
        let mut rest = args;
        for shape in &self.layout {
            match shape {
                None => {
                    let (first, tail) = rest
                        .split_first()
                        .ok_or_else(|| Error::graph(format!("{}: too few inputs", self.name)))?;
                    grouped.push(first.clone());
                    rest = tail;
                }
                Some(n) => {
                    let n = *n as usize;
                    if rest.len() < n {
                        return Err(Error::graph(format!("{}: too few inputs", self.name)));
                    }
                    grouped.push(Arc::new(Tuple(rest[..n].to_vec())));
                    rest = &rest[n..];
                }
            }
        }
        self.f.invoke(&grouped)
    }

    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        if !self.registered {
            return Err(not_registered(self.name));
        }
        postcard_encode(&self.layout, out)
    }

    fn tokenize(&self, tokenizer: &mut Tokenizer) {
        tokenizer.str(self.name);
        // A function item or a closure without captures has no state: its
        // type identifies it. A capturing closure may differ between two
        // calls with the same type, so it gets a unique token.
        if std::mem::size_of::<F>() != 0 {
            tokenizer.unique();
        }
        for shape in &self.layout {
            tokenizer.u64(shape.map(u64::from).unwrap_or(u64::MAX));
        }
    }
}

/// The error for an op that cannot leave this process.
pub fn not_registered(name: &str) -> Error {
    Error::new(
        ErrorKind::NotRegistered,
        format!(
            "`{name}` is a closure or an unregistered function: it runs on the local schedulers, \
             but cannot be sent to another process. Move its body into a `fn` marked \
             `#[blockwise::task]`, which registers it under a stable name in every process of \
             this build"
        ),
    )
}

/// Takes item `i` out of a [`Tuple`] (a task that returned several outputs).
#[derive(Debug, Clone, Copy)]
pub struct ItemOp(pub u32);

impl Op for ItemOp {
    fn name(&self) -> &str {
        "blockwise.item"
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        let tuple = args
            .first()
            .and_then(|v| v.downcast_ref::<Tuple>())
            .ok_or_else(|| Error::new(ErrorKind::TypeMismatch, "blockwise.item expects a tuple of outputs"))?;
        tuple.0.get(self.0 as usize).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("output {} requested from a task with {} outputs", self.0, tuple.0.len()),
            )
        })
    }
    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        postcard_encode(&self.0, out)
    }
}
register_op!("blockwise.item", |p| Ok(Arc::new(ItemOp(postcard_decode(p)?))));

/// Returns its single input: the op of a persisted value (a literal under a key).
#[derive(Debug, Clone, Copy)]
pub struct IdentityOp;

impl Op for IdentityOp {
    fn name(&self) -> &str {
        "blockwise.identity"
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        args.first()
            .cloned()
            .ok_or_else(|| Error::graph("blockwise.identity needs one input"))
    }
}
register_op!("blockwise.identity", |_| Ok(Arc::new(IdentityOp)));

/// Shared instance of [`IdentityOp`].
pub fn identity() -> Arc<dyn Op> {
    static ID: OnceLock<Arc<dyn Op>> = OnceLock::new();
    ID.get_or_init(|| Arc::new(IdentityOp)).clone()
}

/// An unused helper so `Data` stays referenced from this module's docs.
#[doc(hidden)]
pub fn _assert_data<T: Data>() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(a: i64, b: i64) -> i64 {
        a + b
    }

    fn total(xs: Vec<i64>, k: i64) -> i64 {
        xs.iter().sum::<i64>() * k
    }

    #[test]
    fn fn_op_calls_typed_function() {
        let op = FnOp::new(add, vec![None, None]);
        let out = op.call(&[Arc::new(2i64), Arc::new(3i64)]).unwrap();
        assert_eq!(*out.downcast_ref::<i64>().unwrap(), 5);
    }

    #[test]
    fn fn_op_gathers_lists() {
        let op = FnOp::new(total, vec![Some(3), None]);
        let args: Vec<Value> = vec![Arc::new(1i64), Arc::new(2i64), Arc::new(3i64), Arc::new(10i64)];
        let out = op.call(&args).unwrap();
        assert_eq!(*out.downcast_ref::<i64>().unwrap(), 60);
    }

    #[test]
    fn closure_is_not_portable_and_says_how_to_fix() {
        let k = 3;
        let op = FnOp::new(move |x: i64| x * k, vec![None]);
        let err = op.encode_params(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::NotRegistered);
        assert!(err.to_string().contains("#[blockwise::task]"), "{err}");
    }

    #[test]
    fn unknown_op_name_is_not_registered() {
        let err = decode_op("nope.nothing", &[]).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::NotRegistered);
    }

    #[test]
    fn wrong_argument_type_names_the_argument() {
        let op = FnOp::new(add, vec![None, None]);
        let err = op.call(&[Arc::new(2i64), Arc::new(String::from("x"))]).unwrap_err();
        assert!(err.to_string().contains("argument 2"), "{err}");
    }

    #[test]
    fn item_op_roundtrips_through_registry() {
        let mut params = Vec::new();
        ItemOp(1).encode_params(&mut params).unwrap();
        let op = decode_op("blockwise.item", &params).unwrap();
        let t: Value = Arc::new(Tuple(vec![Arc::new(1i64), Arc::new(2i64)]));
        let out = op.call(&[t]).unwrap();
        assert_eq!(*out.downcast_ref::<i64>().unwrap(), 2);
    }
}
