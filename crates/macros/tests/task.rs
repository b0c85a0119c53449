//! `#[task]` end to end: a registered function is found from its type, rebuilt
//! by name from its encoded parameters, and called with values — the path a
//! task takes from a client to a worker of the same build.

use std::sync::Arc;

use blockwise_core::op::{FnOp, Op, TaskFn, decode_op, registered_fn, registered_name_of};
use blockwise_core::value::{Value, postcard_encode};
use blockwise_core::{ErrorKind, Tokenizer};
use blockwise_macros::task;

/// What the facade's `__private` module holds, for a crate without the facade.
#[allow(
    clippy::single_component_path_imports,
    reason = "the re-exports are the point: generated code reaches them as `crate::shim::...`"
)]
mod shim {
    pub(crate) use blockwise_core;
}

#[task(crate = crate::shim)]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task(crate = crate::shim)]
fn parse_count(text: String) -> Result<u64, std::num::ParseIntError> {
    text.trim().parse()
}

#[task(crate = "crate::shim")]
fn total(xs: Vec<i64>, factor: i64) -> i64 {
    xs.iter().sum::<i64>() * factor
}

#[task(crate = crate::shim)]
fn answer() -> i64 {
    42
}

/// A raw identifier registers under its plain name.
#[task(crate = crate::shim)]
fn r#type(x: i64) -> String {
    format!("type {x}")
}

/// Not a task (a slice is not a task value), but registered for collection
/// ops, which call it through its `fn` pointer.
#[task(crate = crate::shim)]
fn block_sum(block: &[f64], scale: f64) -> f64 {
    block.iter().sum::<f64>() * scale
}

/// A function no attribute registered, with the same signature as `add`.
fn unregistered_add(a: i64, b: i64) -> i64 {
    a + b
}

mod outer {
    pub(crate) mod inner {
        /// Documented, public, in a nested module: attributes stay on the fn.
        #[super::super::task(crate = crate::shim)]
        pub(crate) fn scale(x: f64, by: f64) -> f64 {
            x * by
        }
    }

    #[crate::task(crate = crate::shim)]
    pub(crate) fn scale(x: f64, by: f64) -> f64 {
        x * by * 100.0
    }
}

/// The registered name of the function item `f`, as `delayed(f)` sees it.
fn name_of<F: 'static>(_: &F) -> Option<&'static str> {
    registered_name_of::<F>()
}

/// The parameters a client would send for `f` with one input per parameter.
fn params_for<F: TaskFn<Args>, Args: 'static>(f: F) -> Vec<u8> {
    let op = FnOp::new(f, vec![None; F::ARITY]);
    assert!(op.is_registered(), "{} is not registered", op.name());
    let mut params = Vec::new();
    op.encode_params(&mut params).unwrap();
    params
}

fn values(items: Vec<Value>) -> Vec<Value> {
    items
}

#[test]
fn registered_fn_is_found_from_its_type() {
    let name = name_of(&add).expect("add is registered");
    assert_eq!(name, concat!(module_path!(), "::add"));
    assert_eq!(name, "task::add");
}

#[test]
fn unregistered_fn_is_not_found() {
    assert_eq!(name_of(&unregistered_add), None);
    let op = FnOp::new(unregistered_add, vec![None, None]);
    assert!(!op.is_registered());
    let err = op.encode_params(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NotRegistered);
}

#[test]
fn registered_fn_is_rebuilt_by_name_and_called_with_values() {
    let name = name_of(&add).unwrap();
    let op = decode_op(name, &params_for(add)).unwrap();
    assert_eq!(op.name(), name);
    let out = op.call(&values(vec![Arc::new(40i64), Arc::new(2i64)])).unwrap();
    assert_eq!(out.downcast_ref::<i64>(), Some(&42));
}

#[test]
fn registered_fn_stays_callable_as_written() {
    assert_eq!(add(2, 3), 5);
    assert_eq!(answer(), 42);
    assert_eq!(outer::inner::scale(2.0, 3.0), 6.0);
}

#[test]
fn rebuilt_op_has_the_same_token_as_the_original() {
    // Keys are names derived from tokens: a worker rebuilding the op must
    // agree with the client on them.
    let original = FnOp::new(add, vec![None, None]);
    let rebuilt = decode_op(original.name(), &params_for(add)).unwrap();
    let (mut a, mut b) = (Tokenizer::new(), Tokenizer::new());
    original.tokenize(&mut a);
    rebuilt.tokenize(&mut b);
    assert_eq!(a.finish(), b.finish());
}

#[test]
fn result_fn_returns_ok_value() {
    let op = decode_op(name_of(&parse_count).unwrap(), &params_for(parse_count)).unwrap();
    let out = op.call(&values(vec![Arc::new(String::from(" 17 "))])).unwrap();
    assert_eq!(out.downcast_ref::<u64>(), Some(&17));
}

#[test]
fn result_fn_fails_the_task_with_the_error_message() {
    let op = decode_op(name_of(&parse_count).unwrap(), &params_for(parse_count)).unwrap();
    let err = op.call(&values(vec![Arc::new(String::from("seventeen"))])).unwrap_err();
    let expected = "seventeen".parse::<u64>().unwrap_err().to_string();
    assert_eq!(err.kind(), &ErrorKind::InvalidArgument);
    assert!(err.to_string().contains(&expected), "{err}");
}

#[test]
fn nested_module_fns_have_their_full_paths() {
    let inner = name_of(&outer::inner::scale).unwrap();
    let outer_scale = name_of(&outer::scale).unwrap();
    assert_eq!(inner, "task::outer::inner::scale");
    assert_eq!(outer_scale, "task::outer::scale");

    // Same short name, same signature: each name rebuilds its own function.
    let args = values(vec![Arc::new(2.0f64), Arc::new(3.0f64)]);
    let inner_op = decode_op(inner, &params_for(outer::inner::scale)).unwrap();
    let outer_op = decode_op(outer_scale, &params_for(outer::scale)).unwrap();
    assert_eq!(inner_op.call(&args).unwrap().downcast_ref::<f64>(), Some(&6.0));
    assert_eq!(outer_op.call(&args).unwrap().downcast_ref::<f64>(), Some(&600.0));
}

#[test]
fn string_crate_path_and_gathered_list_argument() {
    // Layout: the first parameter gathers three inputs into a Vec, the
    // second takes one input.
    let mut params = Vec::new();
    postcard_encode(&vec![Some(3u32), None], &mut params).unwrap();
    let op = decode_op(name_of(&total).unwrap(), &params).unwrap();
    let args = values(vec![Arc::new(1i64), Arc::new(2i64), Arc::new(3i64), Arc::new(10i64)]);
    assert_eq!(op.call(&args).unwrap().downcast_ref::<i64>(), Some(&60));
}

#[test]
fn raw_identifier_fn_is_registered_under_its_plain_name() {
    let name = name_of(&r#type).expect("r#type is registered");
    assert_eq!(name, "task::type");
    let op = decode_op(name, &params_for(r#type)).unwrap();
    let out = op.call(&values(vec![Arc::new(3i64)])).unwrap();
    assert_eq!(out.downcast_ref::<String>().map(String::as_str), Some("type 3"));
}

#[test]
fn zero_argument_fn_is_rebuilt() {
    let op = decode_op(name_of(&answer).unwrap(), &params_for(answer)).unwrap();
    assert_eq!(op.call(&[]).unwrap().downcast_ref::<i64>(), Some(&42));
}

#[test]
fn layout_of_the_wrong_arity_is_a_codec_error() {
    let mut params = Vec::new();
    postcard_encode(&vec![None::<u32>], &mut params).unwrap();
    let err = decode_op(name_of(&add).unwrap(), &params).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Codec);
    assert!(err.to_string().contains("takes 2 arguments"), "{err}");
}

#[test]
fn fn_declared_inside_a_function_body_is_registered() {
    #[task(crate = crate::shim)]
    fn local_helper(x: i64) -> i64 {
        x - 1
    }
    let name = name_of(&local_helper).expect("a local fn item is registered too");
    assert_eq!(name, "task::local_helper");
    let op = decode_op(name, &params_for(local_helper)).unwrap();
    let out = op.call(&values(vec![Arc::new(10i64)])).unwrap();
    assert_eq!(out.downcast_ref::<i64>(), Some(&9));
}

#[test]
fn registered_fn_pointer_is_found_by_name() {
    let add_ptr: fn(i64, i64) -> i64 = registered_fn(name_of(&add).unwrap()).unwrap();
    assert_eq!(add_ptr(20, 22), 42);
    let parse: fn(String) -> Result<u64, std::num::ParseIntError> =
        registered_fn(name_of(&parse_count).unwrap()).unwrap();
    assert_eq!(parse("5".to_string()), Ok(5));
}

#[test]
fn registered_fn_with_another_signature_is_a_type_mismatch() {
    let err = registered_fn::<fn(i64) -> i64>(name_of(&add).unwrap()).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::TypeMismatch);
    assert!(err.to_string().contains("task::add"), "{err}");
}

#[test]
fn non_task_fn_is_registered_for_collection_ops() {
    let name = name_of(&block_sum).expect("block_sum is registered");
    assert_eq!(name, "task::block_sum");
    let sum: fn(&[f64], f64) -> f64 = registered_fn(name).unwrap();
    assert_eq!(sum(&[1.0, 2.0, 3.0], 2.0), 12.0);
}

#[test]
fn non_task_fn_cannot_be_rebuilt_as_a_task_and_says_why() {
    let mut params = Vec::new();
    postcard_encode(&vec![None::<u32>, None], &mut params).unwrap();
    let err = decode_op("task::block_sum", &params).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::TypeMismatch);
    assert!(err.to_string().contains("cannot run as a task"), "{err}");
}

/// A key of a record, by reference: gets the order adapter.
#[allow(clippy::ptr_arg, reason = "a key of `String` records takes `&String`")]
#[task(crate = crate::shim)]
fn length_key(text: &String) -> usize {
    text.len()
}

/// A key that is not `Ord`: registers, without an order.
#[task(crate = crate::shim)]
fn float_key(x: &f64) -> f64 {
    *x
}

/// A borrowed result and a trait object: no adapters, and no compile error.
#[task(crate = crate::shim)]
fn first_word(text: &str) -> &str {
    text.split(' ').next().unwrap_or("")
}

#[task(crate = crate::shim)]
fn describe_debug(value: &dyn std::fmt::Debug) -> String {
    format!("{value:?}")
}

#[task(crate = crate::shim)]
fn first_of(view: std::borrow::Cow<'_, str>) -> usize {
    view.len()
}

mod records {
    use std::sync::Arc;

    use blockwise_core::records::{ErasedStream, Sink, Stream, downcast_stream, map_by_name, order_by_name};
    use blockwise_core::value::Value;

    fn stream_of<T: Clone + Send + Sync + 'static>(items: Vec<T>) -> ErasedStream {
        let s: Stream<T> = Arc::new(move |_: &[Value], sink: &mut Sink<'_, T>| {
            for x in items.iter().cloned() {
                sink(x)?;
            }
            Ok(())
        });
        Box::new(s)
    }

    fn drain<T: 'static>(s: ErasedStream) -> Vec<T> {
        let mut out = Vec::new();
        let _ = downcast_stream::<T>(s).unwrap()(&[], &mut |x| {
            out.push(x);
            Ok(())
        });
        out
    }

    fn name(f: &str) -> String {
        format!("task::{f}")
    }

    #[test]
    fn one_value_fn_maps_a_record_stream_by_name() {
        let out = map_by_name(&name("type"), stream_of(vec![1i64, 2])).unwrap();
        assert_eq!(drain::<String>(out), vec!["type 1", "type 2"]);
    }

    #[test]
    fn reference_fn_with_ord_result_orders_records_by_name() {
        let order = order_by_name::<String>(&name("length_key")).unwrap();
        assert_eq!(order(&"abc".to_string(), &"z".to_string()), std::cmp::Ordering::Greater);
    }

    #[test]
    fn shapes_without_adapters_are_clear_errors() {
        let err = order_by_name::<f64>(&name("float_key")).err().unwrap();
        assert!(err.to_string().contains("Ord"), "{err}");
        let err = map_by_name(&name("add"), stream_of(vec![1i64])).err().unwrap();
        assert!(err.to_string().contains("exactly one parameter"), "{err}");
        for f in ["first_word", "describe_debug", "first_of"] {
            assert!(map_by_name(&name(f), stream_of(vec![1i64])).is_err());
            assert!(order_by_name::<str>(&name(f)).is_err());
        }
        assert_eq!(super::first_word("a b"), "a");
        assert_eq!(super::describe_debug(&1), "1");
        assert_eq!(super::first_of("ab".into()), 2);
    }
}
