//! `#[derive(Data)]` end to end: sizes that follow the heap, values that cross
//! a process boundary (encode, then decode eagerly through the codec
//! registry), and derived types used as task arguments and results.

use std::collections::HashMap;
use std::sync::Arc;

use blockwise_core::op::{FnOp, Op, decode_op, registered_name_of};
use blockwise_core::value::{Data, Decode, Encoded, FromValue, Value, decode_value, encode_value};
use blockwise_macros::{Data, task};
use serde::{Deserialize, Serialize};

/// What the facade's `__private` module holds, for a crate without the facade.
#[allow(
    clippy::single_component_path_imports,
    reason = "the re-exports are the point: generated code reaches them as `crate::shim::...`"
)]
mod shim {
    pub(crate) use blockwise_core;
    pub(crate) use serde;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Data)]
#[blockwise(crate = crate::shim)]
struct Reading {
    station: String,
    celsius: f64,
    tags: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Data)]
#[blockwise(crate = crate::shim)]
enum Shape {
    Point,
    Circle { radius: f64 },
    Polygon(Vec<f64>, String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Data)]
#[blockwise(crate = "crate::shim")]
struct Meters(f64);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Data)]
#[blockwise(crate = crate::shim)]
struct Marker;

/// Generic: `Data` and `Decode` with bounds, no codec registration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Data)]
#[blockwise(crate = crate::shim)]
struct Pair<T> {
    left: T,
    right: Vec<T>,
}

/// A field named like a constant in scope must be bound by the generated
/// pattern, not read as a pattern matching that constant.
mod shadowing {
    #[allow(non_upper_case_globals)]
    pub(crate) const value: i64 = 7;

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, blockwise_macros::Data)]
    #[blockwise(crate = crate::shim)]
    pub(crate) struct Shadowing {
        pub(crate) value: i64,
        pub(crate) note: String,
    }
}

/// An empty enum has no values, but is still a type a task may name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Data)]
#[blockwise(crate = crate::shim)]
enum Never {}

mod nested {
    /// A derived type in a nested module, holding a derived type.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, blockwise_macros::Data)]
    #[blockwise(crate = crate::shim)]
    pub(crate) struct Batch {
        pub(crate) readings: Vec<super::Reading>,
        pub(crate) by_station: std::collections::HashMap<String, i64>,
    }
}

fn reading(station: &str) -> Reading {
    Reading {
        station: station.to_string(),
        celsius: 21.5,
        tags: vec!["roof".to_string()],
    }
}

/// Encodes a value and decodes it as a receiving process would.
fn cross_process(value: Value) -> Value {
    let encoded = encode_value(&value).unwrap();
    decode_value(&encoded.codec, &encoded.bytes).unwrap()
}

#[test]
fn struct_roundtrips_and_decodes_eagerly() {
    let original = reading("north");
    let back = cross_process(Arc::new(original.clone()));
    assert!(back.is::<Reading>(), "Reading is registered, so it decodes eagerly");
    assert_eq!(back.downcast_ref::<Reading>(), Some(&original));
}

#[test]
fn enum_roundtrips_every_variant_and_decodes_eagerly() {
    let shapes = [
        Shape::Point,
        Shape::Circle { radius: 2.5 },
        Shape::Polygon(vec![0.0, 1.0, 2.0], "triangle".to_string()),
    ];
    for shape in shapes {
        let back = cross_process(Arc::new(shape.clone()));
        assert!(back.is::<Shape>(), "Shape is registered, so it decodes eagerly");
        assert_eq!(back.downcast_ref::<Shape>(), Some(&shape));
    }
}

#[test]
fn tuple_and_unit_structs_roundtrip() {
    let back = cross_process(Arc::new(Meters(3.5)));
    assert_eq!(back.downcast_ref::<Meters>(), Some(&Meters(3.5)));
    let back = cross_process(Arc::new(Marker));
    assert_eq!(back.downcast_ref::<Marker>(), Some(&Marker));
    assert_eq!(Marker.size_bytes(), 0);
    assert_eq!(Meters(1.0).size_bytes(), std::mem::size_of::<f64>());
}

#[test]
fn nested_derived_types_roundtrip() {
    let batch = nested::Batch {
        readings: vec![reading("a"), reading("b")],
        by_station: HashMap::from([("a".to_string(), 1), ("b".to_string(), 2)]),
    };
    let back = cross_process(Arc::new(batch.clone()));
    assert_eq!(back.downcast_ref::<nested::Batch>(), Some(&batch));
    assert!(batch.size_bytes() > 2 * reading("a").size_bytes() - std::mem::size_of::<Reading>());
}

#[test]
fn size_grows_with_a_string_field() {
    let short = reading("n");
    let long = reading(&"n".repeat(10_000));
    assert!(short.size_bytes() >= std::mem::size_of::<Reading>());
    assert!(long.size_bytes() >= std::mem::size_of::<Reading>() + 10_000);
    assert_eq!(
        long.size_bytes() - short.size_bytes(),
        long.station.capacity() - short.station.capacity()
    );
}

#[test]
fn enum_size_counts_the_heap_of_the_variant_in_hand() {
    let point = Shape::Point;
    let polygon = Shape::Polygon(vec![0.0; 1000], "big".to_string());
    assert_eq!(point.size_bytes(), std::mem::size_of::<Shape>());
    assert!(polygon.size_bytes() >= std::mem::size_of::<Shape>() + 8000 + 3);
}

#[test]
fn field_named_like_a_constant_is_bound_not_matched() {
    let s = shadowing::Shadowing {
        value: 1,
        note: "x".repeat(100),
    };
    assert!(s.size_bytes() >= std::mem::size_of::<shadowing::Shadowing>() + 100);
    assert_eq!(shadowing::value, 7);
}

#[test]
fn generic_type_is_data_but_not_registered() {
    let pair = Pair {
        left: 1i64,
        right: vec![2, 3, 4],
    };
    assert!(pair.size_bytes() >= std::mem::size_of::<Pair<i64>>() + 3 * 8);
    let text_pair = Pair {
        left: "x".repeat(50),
        right: vec![],
    };
    assert!(text_pair.size_bytes() >= std::mem::size_of::<Pair<String>>() + 50);

    // Not registered: decoding keeps it encoded, and a typed consumer decodes it.
    let back = cross_process(Arc::new(pair.clone()));
    assert!(back.is::<Encoded>(), "an open generic has no registered codec");
    assert_eq!(Pair::<i64>::from_value(&back).unwrap(), pair);
}

#[test]
fn empty_enum_is_data_and_never_decodes() {
    fn assert_data<T: Data + Decode>() {}
    assert_data::<Never>();
    assert_eq!(
        Never::decode(&[0]).unwrap_err().kind(),
        &blockwise_core::ErrorKind::Codec
    );
}

#[test]
fn decode_reports_bad_bytes_as_a_codec_error() {
    let err = Reading::decode(&[0xff, 0xff, 0xff]).unwrap_err();
    assert_eq!(err.kind(), &blockwise_core::ErrorKind::Codec);
    assert!(err.to_string().contains("Reading"), "{err}");
}

#[task(crate = crate::shim)]
fn warmest(readings: Vec<Reading>) -> Result<Reading, String> {
    readings
        .into_iter()
        .max_by(|a, b| a.celsius.total_cmp(&b.celsius))
        .ok_or_else(|| "no readings".to_string())
}

#[test]
fn derived_types_are_task_arguments_and_results() {
    let name = registered_name_of::<fn(Vec<Reading>) -> Result<Reading, String>>();
    assert_eq!(name, None, "only the fn item type is registered, not a pointer type");

    let op = FnOp::new(warmest, vec![Some(2)]);
    assert!(op.is_registered());
    let mut params = Vec::new();
    op.encode_params(&mut params).unwrap();
    let rebuilt = decode_op(op.name(), &params).unwrap();

    let mut hot = reading("south");
    hot.celsius = 35.0;
    // The inputs arrive from other processes: encoded, then decoded eagerly.
    let args = vec![
        cross_process(Arc::new(reading("north"))),
        cross_process(Arc::new(hot.clone())),
    ];
    let out = rebuilt.call(&args).unwrap();
    assert_eq!(out.downcast_ref::<Reading>(), Some(&hot));

    let err = rebuilt.call(&[]).unwrap_err();
    assert!(err.to_string().contains("too few inputs"), "{err}");
}
