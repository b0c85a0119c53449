//! How one task of a plan travels to a worker, as opaque bytes.
//!
//! The scheduler never looks inside a [`TaskSpec`]: it runs no user code and
//! links no ops. The client writes, for each task of a [`Plan`], the op's
//! registered name and parameters and the task's inputs in argument order —
//! a dependency by its *key* (the scheduler orders and dedups a task's
//! inputs its own way; the key is what both ends agree on), a literal with
//! its codec. The worker rebuilds the op from its own registry
//! ([`blockwise_core::op::decode_op`]) and calls it.

use std::sync::Arc;

use blockwise_core::value::{decode_value, encode_value, postcard_decode, postcard_encode};
use blockwise_core::{Key, Op, Plan, Result, Slot, Value};
use serde::{Deserialize, Serialize};

use crate::scheduler::{Submission, TaskSpec};

/// One argument of a task, as sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SpecInput {
    /// The result of the task with this key (one of its dependencies).
    Key(Key),
    /// A literal value: its codec and encoded bytes.
    Literal(String, Vec<u8>),
}

/// A task as a worker reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireTask {
    /// The registered op name.
    pub op: String,
    /// The op's encoded parameters.
    pub params: Vec<u8>,
    /// The arguments, in order.
    pub inputs: Vec<SpecInput>,
}

/// Encodes task `id` of `plan` for a worker. Fails with the op's own error
/// when the op cannot leave this process (a closure names the fix).
pub fn encode_task(plan: &Plan, id: u32) -> Result<TaskSpec> {
    let op = plan.op(id);
    let mut params = Vec::new();
    op.encode_params(&mut params)
        .map_err(|e| e.context(format!("while sending task {} to a cluster", plan.key(id))))?;
    let inputs = plan
        .slots(id)
        .iter()
        .map(|s| {
            Ok(match s {
                Slot::Task(d) => SpecInput::Key(plan.key(*d).clone()),
                Slot::Literal(v) => {
                    let encoded = encode_value(v)
                        .map_err(|e| e.context(format!("while sending a literal input of task {}", plan.key(id))))?;
                    SpecInput::Literal(encoded.codec, encoded.bytes.to_vec())
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::new();
    postcard_encode(
        &WireTask {
            op: op.name().to_string(),
            params,
            inputs,
        },
        &mut out,
    )?;
    Ok(TaskSpec::new(out))
}

/// The submission of every task of `plan`, each encoded by [`encode_task`].
pub fn submission_of(plan: &Plan) -> Result<Submission> {
    Submission::from_plan(plan, |id| encode_task(plan, id))
}

/// A task rebuilt on a worker: its op and its arguments, literals decoded.
pub struct RunnableTask {
    /// The op.
    pub op: Arc<dyn Op>,
    /// The arguments: a dependency's key, or a decoded literal.
    pub inputs: Vec<Argument>,
}

/// One argument of a [`RunnableTask`].
pub enum Argument {
    /// The result of the dependency with this key.
    Key(Key),
    /// A literal.
    Value(Value),
}

/// Rebuilds task `key` from its spec with this executable's registry.
pub fn decode_task(key: &Key, spec: &TaskSpec) -> Result<RunnableTask> {
    let wire: WireTask =
        postcard_decode(spec.bytes()).map_err(|e| e.context(format!("while reading the spec of task {key}")))?;
    let op = blockwise_core::op::decode_op(&wire.op, &wire.params).map_err(|e| e.context(format!("in task {key}")))?;
    let inputs = wire
        .inputs
        .into_iter()
        .map(|i| {
            Ok(match i {
                SpecInput::Key(k) => Argument::Key(k),
                SpecInput::Literal(codec, bytes) => Argument::Value(
                    decode_value(&codec, &bytes)
                        .map_err(|e| e.context(format!("while decoding a literal input of task {key}")))?,
                ),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RunnableTask { op, inputs })
}

/// The spec of a task that returns `value` itself (how [`crate::Client::scatter`]
/// sends data: the scheduler keeps only the key, a worker holds the value).
pub fn literal_task(value: &Value) -> Result<TaskSpec> {
    let encoded = encode_value(value)?;
    let mut out = Vec::new();
    postcard_encode(
        &WireTask {
            op: blockwise_core::op::identity().name().to_string(),
            params: Vec::new(),
            inputs: vec![SpecInput::Literal(encoded.codec, encoded.bytes.to_vec())],
        },
        &mut out,
    )?;
    Ok(TaskSpec::new(out))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use blockwise_core::op::identity;
    use blockwise_core::{Key, Name, Plan, Slot, Value};

    use super::*;

    #[test]
    fn a_task_travels_as_its_op_name_literals_and_input_keys() {
        let keys = vec![Key::single(Name::new("a-1")), Key::new(Name::new("b-2"), &[3])];
        let literal: Value = Arc::new(41i64);
        let plan = Plan::from_parts(
            keys.clone(),
            vec![identity(), identity()],
            vec![vec![Slot::Literal(literal)], vec![Slot::Task(0)]],
            vec![1],
        )
        .unwrap();
        let first = decode_task(&keys[0], &encode_task(&plan, 0).unwrap()).unwrap();
        assert_eq!(first.op.name(), "blockwise.identity");
        match &first.inputs[..] {
            [Argument::Value(v)] => assert_eq!(v.downcast_ref::<i64>(), Some(&41)),
            _ => panic!("one literal input expected"),
        }
        let second = decode_task(&keys[1], &encode_task(&plan, 1).unwrap()).unwrap();
        match &second.inputs[..] {
            [Argument::Key(k)] => assert_eq!(k, &keys[0]),
            _ => panic!("one key input expected"),
        }
        let submission = submission_of(&plan).unwrap();
        assert_eq!(submission.tasks.len(), 2);
        assert_eq!(submission.outputs, vec![1]);
    }

    #[test]
    fn a_garbled_spec_is_an_error_naming_the_task() {
        let key = Key::single(Name::new("broken-7"));
        let err = match decode_task(&key, &TaskSpec::new(vec![0xff, 0xff, 0xff])) {
            Ok(_) => panic!("garbage decoded"),
            Err(e) => e,
        };
        assert!(err.to_string().contains("broken-7"), "{err}");
    }

    #[test]
    fn scattered_values_come_back_through_the_identity_op() {
        let value: Value = Arc::new(String::from("hello"));
        let key = Key::single(Name::new("scatter-x"));
        let task = decode_task(&key, &literal_task(&value).unwrap()).unwrap();
        let args: Vec<Value> = task
            .inputs
            .into_iter()
            .map(|a| match a {
                Argument::Value(v) => v,
                Argument::Key(k) => panic!("unexpected input {k}"),
            })
            .collect();
        let out = task.op.call(&args).unwrap();
        assert_eq!(out.downcast_ref::<String>().map(String::as_str), Some("hello"));
    }
}
