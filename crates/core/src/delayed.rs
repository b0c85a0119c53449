//! `delayed`: lazy calls of ordinary functions, Dask's `dask.delayed`.
//!
//! ```
//! use blockwise_core::delayed::{delayed, Delayed};
//! fn inc(x: i64) -> i64 { x + 1 }
//! fn add(a: i64, b: i64) -> i64 { a + b }
//! let a: Delayed<i64> = delayed(inc).call(1);
//! let b = delayed(inc).call(2);
//! let total = delayed(add).call(a, b);   // nothing has run yet
//! # let _ = total;
//! ```
//!
//! Rust has no stable way to overload the call operator, so Dask's
//! `delayed(f)(a, b)` is written `delayed(f).call(a, b)`. Each argument is
//! either a plain value (a literal) or a [`Delayed`] handle (a dependency); a
//! `Vec<Delayed<T>>` is accepted where the function takes `Vec<T>`. A function
//! returning a tuple gives a `Delayed<(A, B)>` whose parts are split with
//! [`Delayed::unpack`], Dask's `nout`.
//!
//! Names are deterministic: `delayed(inc).call(1)` built twice has one key.
//! A capturing closure gets a fresh key per call, since two closures of the
//! same type may hold different state.

use std::any::TypeId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::Result;
use crate::exec::Collection;
use crate::graph::{CallBuilder, Graph, Input, Layer, Task};
use crate::hash::FastHash;
use crate::key::{Key, Tokenizer};
use crate::op::{ArgLayout, FnOp, ItemOp, Op, TaskFn};
use crate::value::{FromValue, IntoValue, Value};

/// A lazy value of type `T`: the output of one task and the graph behind it.
pub struct Delayed<T> {
    key: Key,
    layer: Arc<Layer>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Delayed<T> {
    fn clone(&self) -> Self {
        Delayed {
            key: self.key.clone(),
            layer: self.layer.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Delayed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Delayed({})", self.key)
    }
}

impl<T> Delayed<T> {
    /// The key of this value.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The layer computing this value.
    pub fn layer(&self) -> &Arc<Layer> {
        &self.layer
    }

    /// Wraps an existing layer's single output (for collections that hand out
    /// one of their keys as a `Delayed`, as Dask's `to_delayed`).
    pub fn from_layer(layer: Arc<Layer>, key: Key) -> Self {
        Delayed {
            key,
            layer,
            _type: PhantomData,
        }
    }
}

impl<T: FromValue> Collection for Delayed<T> {
    type Output = T;

    fn graph(&self) -> Graph {
        Graph::from_layer(self.layer.clone())
    }

    fn output_keys(&self) -> Vec<Key> {
        vec![self.key.clone()]
    }

    fn finalize(&self, values: Vec<Value>) -> Result<T> {
        let value = values
            .into_iter()
            .next()
            .ok_or_else(|| crate::Error::graph("a delayed computation returned no value"))?;
        T::from_value(&value).map_err(|e| e.context(format!("in the result of {}", self.key)))
    }

    fn with_graph(&self, graph: Graph) -> Self {
        let layer = graph
            .roots()
            .iter()
            .find(|l| *l.name() == self.key.name)
            .cloned()
            .unwrap_or_else(|| self.layer.clone());
        Delayed::from_layer(layer, self.key.clone())
    }
}

/// A delayed value holding `value` itself (Dask's `delayed(value)`).
pub fn value<T: IntoValue + 'static>(value: T) -> Delayed<T> {
    let value = value.into_value();
    let mut tok = Tokenizer::new();
    tok.str("literal");
    value.tokenize(&mut tok);
    let name = tok.name(&format!(
        "literal-{}",
        crate::value::short_type_name(value.codec()).to_ascii_lowercase()
    ));
    let task = Task::new(crate::op::identity(), vec![Input::Literal(value)]);
    let layer = Layer::single(name.clone(), vec![], task);
    Delayed::from_layer(layer, Key::single(name))
}

/// Collects the inputs of one delayed call.
pub struct ArgBuilder {
    /// The arguments, kept as a list only when they are not simply the
    /// dependencies' outputs in order or one literal.
    call: CallBuilder,
    deps: Vec<Arc<Layer>>,
    /// Kept inline: it only picks the shared op, and becomes an
    /// [`ArgLayout`] when an op is made.
    layout: smallvec::SmallVec<[Option<u32>; 8]>,
    tokenizer: Tokenizer,
    /// The layers in `deps`, by address, once there are many of them (a
    /// call over a list of a hundred thousand handles stays linear).
    dep_set: std::collections::HashSet<usize, FastHash>,
}

impl Default for ArgBuilder {
    fn default() -> Self {
        ArgBuilder {
            call: CallBuilder::InOrder(0),
            deps: Vec::new(),
            layout: smallvec::SmallVec::new(),
            tokenizer: Tokenizer::default(),
            dep_set: Default::default(),
        }
    }
}

impl ArgBuilder {
    fn push_delayed<T>(&mut self, d: &Delayed<T>) {
        self.tokenizer.key(&d.key);
        let added = self.add_dep(&d.layer);
        self.call.key(&d.key, added, &self.deps);
    }

    fn push_literal(&mut self, v: Value) {
        v.tokenize(&mut self.tokenizer);
        self.call.literal(v, &self.deps);
    }

    /// Adds `layer` to the call's dependencies unless it is there already;
    /// `true` when added (at the end).
    fn add_dep(&mut self, layer: &Arc<Layer>) -> bool {
        const LINEAR: usize = 16;
        if self.deps.len() < LINEAR {
            if self.deps.iter().any(|l| Arc::ptr_eq(l, layer)) {
                return false;
            }
            self.deps.push(layer.clone());
            return true;
        }
        if self.dep_set.is_empty() {
            self.dep_set = self.deps.iter().map(|l| Arc::as_ptr(l) as usize).collect();
        }
        if self.dep_set.insert(Arc::as_ptr(layer) as usize) {
            self.deps.push(layer.clone());
            return true;
        }
        false
    }
}

/// Something that can be passed where a function takes an `A`: a plain
/// value, or a lazy one.
pub trait IntoArg<A> {
    /// Adds this argument's inputs to the call being built.
    fn add_to(self, builder: &mut ArgBuilder);
}

impl<A: IntoValue> IntoArg<A> for A {
    fn add_to(self, b: &mut ArgBuilder) {
        b.push_literal(self.into_value());
        b.layout.push(None);
    }
}

impl<A> IntoArg<A> for Delayed<A> {
    fn add_to(self, b: &mut ArgBuilder) {
        b.push_delayed(&self);
        b.layout.push(None);
    }
}

impl<A> IntoArg<A> for &Delayed<A> {
    fn add_to(self, b: &mut ArgBuilder) {
        b.push_delayed(self);
        b.layout.push(None);
    }
}

impl<A> IntoArg<Vec<A>> for Vec<Delayed<A>> {
    fn add_to(self, b: &mut ArgBuilder) {
        (&self[..]).add_to(b)
    }
}

impl<A> IntoArg<Vec<A>> for &[Delayed<A>] {
    fn add_to(self, b: &mut ArgBuilder) {
        b.tokenizer.u64(self.len() as u64);
        b.call.reserve(self.len());
        for d in self {
            b.push_delayed(d);
        }
        b.layout.push(Some(self.len() as u32));
    }
}

/// A function made lazy by [`delayed`]: call it with `.call(args…)`.
pub struct DelayedFn<F, Args> {
    f: F,
    prefix: Option<String>,
    pure: bool,
    _args: PhantomData<fn(Args)>,
}

/// Makes `f` lazy: `delayed(f).call(a, b)` builds a task and returns a
/// [`Delayed`] handle to its result.
pub fn delayed<F, Args>(f: F) -> DelayedFn<F, Args>
where
    F: TaskFn<Args>,
{
    DelayedFn {
        f,
        prefix: None,
        pure: true,
        _args: PhantomData,
    }
}

impl<F, Args: 'static> DelayedFn<F, Args>
where
    F: TaskFn<Args> + Clone,
{
    /// Sets the key prefix (Dask's `dask_key_name` prefix); the default is
    /// the function's name.
    pub fn name(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.to_string());
        self
    }

    /// Marks the function impure (Dask's `pure=False`): every call gets a
    /// fresh key, so equal calls are never merged (use for functions reading
    /// clocks, random state or files that change).
    pub fn impure(mut self) -> Self {
        self.pure = false;
        self
    }

    fn build(&self, mut b: ArgBuilder) -> Delayed<F::Output> {
        let layout = std::mem::take(&mut b.layout);
        let pure = self.pure;
        let name_with = |tokenizer: &mut Tokenizer, prefix: &str| {
            if !pure {
                tokenizer.unique();
            }
            tokenizer.name(self.prefix.as_deref().unwrap_or(prefix))
        };
        let (op, name) = if std::mem::size_of::<F>() == 0 {
            // A function item or a closure without captures: one op for
            // every call with this argument layout.
            with_shared_op(&self.f, &layout, |shared| {
                b.tokenizer.u64(shared.token);
                (shared.op.clone(), name_with(&mut b.tokenizer, &shared.prefix))
            })
        } else {
            let op: Arc<dyn Op> = Arc::new(FnOp::new(self.f.clone(), layout.to_vec()));
            op.tokenize(&mut b.tokenizer);
            let name = name_with(&mut b.tokenizer, &default_prefix(&*op));
            (op, name)
        };
        let layer = b.call.into_layer(name.clone(), b.deps, op);
        Delayed::from_layer(layer, Key::single(name))
    }
}

/// The key prefix of calls of `op`: its label, closures spelled `closure`.
fn default_prefix(op: &dyn Op) -> Arc<str> {
    Arc::from(op.label().replace("{{closure}}", "closure"))
}

/// What every call of one stateless function with one argument layout
/// shares: the op, its token and the key prefix. Made once per thread, so a
/// loop of a million `delayed(inc).call(i)` makes one op, not a million.
#[derive(Clone)]
struct SharedOp {
    op: Arc<dyn Op>,
    token: u64,
    prefix: Arc<str>,
}

/// Per function type, its shared ops by argument layout (a function is
/// called with few layouts: one per list length).
type SharedOps = HashMap<TypeId, Vec<(ArgLayout, SharedOp)>, FastHash>;

thread_local! {
    static SHARED_OPS: RefCell<SharedOps> = const { RefCell::new(HashMap::with_hasher(FastHash::new())) };
}

/// Runs `with` on the shared op of `f` for `layout`, making it on first use.
fn with_shared_op<F, Args, R>(f: &F, layout: &[Option<u32>], with: impl FnOnce(&SharedOp) -> R) -> R
where
    F: TaskFn<Args> + Clone,
    Args: 'static,
{
    // Lists of many lengths (one layout each) must not grow the cache
    // without bound, nor its lists past a short scan.
    const MAX_FUNCTIONS: usize = 1024;
    const MAX_LAYOUTS: usize = 32;
    SHARED_OPS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= MAX_FUNCTIONS && !cache.contains_key(&TypeId::of::<F>()) {
            cache.clear();
        }
        let ops = cache.entry(TypeId::of::<F>()).or_default();
        if let Some(at) = ops.iter().position(|(l, _)| l[..] == *layout) {
            return with(&ops[at].1);
        }
        let op: Arc<dyn Op> = Arc::new(FnOp::new(f.clone(), layout.to_vec()));
        let mut tok = Tokenizer::new();
        op.tokenize(&mut tok);
        let shared = SharedOp {
            token: tok.finish(),
            prefix: default_prefix(&*op),
            op,
        };
        if ops.len() >= MAX_LAYOUTS {
            ops.clear();
        }
        ops.push((layout.to_vec(), shared));
        with(&ops[ops.len() - 1].1)
    })
}

macro_rules! delayed_call {
    ($($a:ident $arg:ident),*) => {
        impl<F, $($a: 'static),*> DelayedFn<F, ($($a,)*)>
        where
            F: TaskFn<($($a,)*)> + Clone,
        {
            /// Builds the task calling the function with these arguments.
            #[allow(unused_mut, clippy::too_many_arguments)]
            pub fn call(&self, $($arg: impl IntoArg<$a>),*) -> Delayed<F::Output> {
                let mut b = ArgBuilder::default();
                $($arg.add_to(&mut b);)*
                self.build(b)
            }
        }
    };
}
delayed_call!();
delayed_call!(A1 a1);
delayed_call!(A1 a1, A2 a2);
delayed_call!(A1 a1, A2 a2, A3 a3);
delayed_call!(A1 a1, A2 a2, A3 a3, A4 a4);
delayed_call!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5);
delayed_call!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6);
delayed_call!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7);
delayed_call!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8);

fn item<T, U>(d: &Delayed<T>, i: u32) -> Delayed<U> {
    let op: Arc<dyn Op> = Arc::new(ItemOp(i));
    let mut tok = Tokenizer::new();
    tok.str("item").key(&d.key).u64(u64::from(i));
    let name = tok.name(&format!("{}-item{i}", d.key.name.prefix()));
    let layer = Layer::single(
        name.clone(),
        vec![d.layer.clone()],
        Task::new(op, vec![Input::Key(d.key.clone())]),
    );
    Delayed::from_layer(layer, Key::single(name))
}

macro_rules! unpack {
    ($($t:ident $i:tt),+) => {
        impl<$($t),+> Delayed<($($t,)+)> {
            /// Splits a task's several outputs into one handle each (Dask's `nout`).
            pub fn unpack(&self) -> ($(Delayed<$t>,)+) {
                ($(item::<_, $t>(self, $i),)+)
            }
        }
    };
}
unpack!(A 0, B 1);
unpack!(A 0, B 1, C 2);
unpack!(A 0, B 1, C 2, D 3);
unpack!(A 0, B 1, C 2, D 3, E 4);
unpack!(A 0, B 1, C 2, D 3, E 4, F 5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Name;

    fn inc(x: i64) -> i64 {
        x + 1
    }

    fn add(a: i64, b: i64) -> i64 {
        a + b
    }

    #[test]
    fn same_call_same_key() {
        let a = delayed(inc).call(1);
        let b = delayed(inc).call(1);
        let c = delayed(inc).call(2);
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        let s1 = delayed(add).call(&a, &c);
        let s2 = delayed(add).call(&b, &c);
        assert_eq!(s1.key(), s2.key());
        assert_eq!(s1.key().name.prefix(), "add");
    }

    #[test]
    fn capturing_closures_and_impure_calls_get_fresh_keys() {
        let k = 10i64;
        let f = move |x: i64| x + k;
        let a = delayed(f).call(1);
        let b = delayed(f).call(1);
        assert_ne!(a.key(), b.key());
        let c = delayed(inc).impure().call(1);
        let d = delayed(inc).impure().call(1);
        assert_ne!(c.key(), d.key());
    }

    fn op_of<T>(d: &Delayed<T>) -> Arc<dyn Op> {
        match d.layer().body() {
            crate::graph::LayerBody::Single(task) => task.op.clone(),
            _ => panic!("a delayed call is a single-task layer"),
        }
    }

    #[test]
    fn calls_of_one_function_share_one_op_per_argument_layout() {
        let a = delayed(inc).call(1);
        let b = delayed(inc).call(2);
        assert!(Arc::ptr_eq(&op_of(&a), &op_of(&b)));
        let total = |xs: Vec<i64>| -> i64 { xs.iter().sum() };
        let s2 = delayed(total).call(vec![a.clone(), b.clone()]);
        let s3 = delayed(total).call(vec![a.clone(), b.clone(), a.clone()]);
        // Lists of different lengths have different layouts: different ops.
        assert!(!Arc::ptr_eq(&op_of(&s2), &op_of(&s3)));
        let k = 5i64;
        let capturing = move |x: i64| x + k;
        let c1 = delayed(capturing).call(1);
        let c2 = delayed(capturing).call(1);
        assert!(!Arc::ptr_eq(&op_of(&c1), &op_of(&c2)));
        // Another thread builds its own shared op and the same keys.
        let key_elsewhere = std::thread::spawn(|| delayed(inc).call(1).key().clone())
            .join()
            .unwrap();
        assert_eq!(&key_elsewhere, a.key());
    }

    #[test]
    fn many_list_lengths_keep_deterministic_keys() {
        fn total(xs: Vec<i64>) -> i64 {
            xs.iter().sum()
        }
        let leaves: Vec<Delayed<i64>> = (0..80).map(|i| delayed(inc).call(i)).collect();
        // More layouts than one function keeps: the cache is refilled, the
        // keys stay what they were.
        let build = || -> Vec<Key> {
            (1..=80)
                .map(|len| delayed(total).call(&leaves[..len]).key().clone())
                .collect()
        };
        let first = build();
        let again = build();
        assert_eq!(first, again);
        let distinct: std::collections::HashSet<&Key> = first.iter().collect();
        assert_eq!(distinct.len(), 80);
    }

    #[test]
    fn a_single_task_layer_has_only_the_empty_index() {
        let a = delayed(inc).call(1);
        let layer = a.layer();
        assert_eq!(layer.len(), 1);
        assert_eq!(layer.keys(), vec![a.key().clone()]);
        assert!(layer.task(&[]).is_ok());
        let err = layer.task(&[0]).err().unwrap();
        assert!(err.to_string().contains("is not in layer"), "{err}");
        assert_eq!(layer.position(&[]), Some(0));
        assert_eq!(layer.position(&[0]), None);
    }

    /// The inputs of `d`'s task: `Ok(key)` or `Err(literal)`.
    fn inputs_of<T>(d: &Delayed<T>) -> Vec<std::result::Result<Key, i64>> {
        d.layer()
            .task(&[])
            .unwrap()
            .inputs
            .iter()
            .map(|i| match i {
                Input::Key(k) => Ok(k.clone()),
                Input::Literal(v) => Err(*v.downcast_ref::<i64>().unwrap()),
            })
            .collect()
    }

    #[test]
    fn every_argument_pattern_keeps_its_inputs_in_order() {
        fn three(a: i64, b: i64, c: i64) -> i64 {
            a * 100 + b * 10 + c
        }
        fn total(xs: Vec<i64>) -> i64 {
            xs.iter().sum()
        }
        let a = delayed(inc).call(1);
        let b = delayed(inc).call(2);
        let (ka, kb) = (Ok(a.key().clone()), Ok(b.key().clone()));
        // Dependencies in order (no list kept), one literal (inline), and
        // every mix: literal first or last, a handle twice, out of order.
        assert_eq!(inputs_of(&delayed(add).call(&a, &b)), vec![ka.clone(), kb.clone()]);
        assert_eq!(inputs_of(&delayed(inc).call(7)), vec![Err(7)]);
        assert_eq!(inputs_of(&delayed(add).call(3, 4)), vec![Err(3), Err(4)]);
        assert_eq!(
            inputs_of(&delayed(three).call(5, &a, &b)),
            vec![Err(5), ka.clone(), kb.clone()]
        );
        assert_eq!(
            inputs_of(&delayed(three).call(&a, &b, 6)),
            vec![ka.clone(), kb.clone(), Err(6)]
        );
        assert_eq!(
            inputs_of(&delayed(three).call(&a, &b, &a)),
            vec![ka.clone(), kb.clone(), ka.clone()]
        );
        assert_eq!(inputs_of(&delayed(add).call(&b, &b)), vec![kb.clone(), kb.clone()]);
        let many: Vec<Delayed<i64>> = (0..40).map(|i| delayed(inc).call(i)).collect();
        let mut list = many.clone();
        list.push(many[3].clone());
        let expected: Vec<_> = list.iter().map(|d| Ok(d.key().clone())).collect();
        assert_eq!(inputs_of(&delayed(total).call(&list[..])), expected);
        assert_eq!(delayed(total).call(&list[..]).layer().deps().len(), 40);
        // A handle to one key of a many-key layer is read by its index.
        let parts = Layer::new(
            Name::new("parts"),
            vec![],
            crate::graph::LayerBody::Tasks(
                (0..3u32)
                    .map(|i| {
                        (
                            Key::new(Name::new("parts"), &[i]),
                            Task::new(crate::op::identity(), vec![Input::Literal(Arc::new(i64::from(i)))]),
                        )
                    })
                    .collect(),
            ),
        );
        let second: Delayed<i64> = Delayed::from_layer(parts.clone(), Key::new(Name::new("parts"), &[1]));
        assert_eq!(
            inputs_of(&delayed(inc).call(&second)),
            vec![Ok(Key::new(Name::new("parts"), &[1]))]
        );
    }

    #[test]
    fn graph_holds_all_layers() {
        let a = delayed(inc).call(1);
        let b = delayed(inc).call(&a);
        let c = delayed(add).call(&a, &b);
        assert_eq!(c.graph().layers().len(), 3);
    }
}
