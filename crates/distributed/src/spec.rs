//! How one task of a plan travels to a worker, as opaque bytes.
//!
//! The scheduler never looks inside a [`TaskSpec`]: it runs no user code and
//! links no ops. The client writes, for each task of a [`Plan`], the op's
//! registered name and parameters and the task's inputs in argument order —
//! a dependency by its *key* (the scheduler orders and dedups a task's
//! inputs its own way; the key is what both ends agree on), a literal with
//! its codec. The worker rebuilds the op from its own registry
//! ([`blockwise_core::op::decode_op`]) and calls it.
//!
//! A task of a generated layer (expanded on the scheduler, see
//! [`crate::layers`]) carries its layer's one [`WireTemplate`] instead,
//! shared by every task of the layer: the worker resolves the template's
//! arguments at the index of the task's key, exactly as
//! [`blockwise_core::Layer::visit_task`] does in the client's process.

use std::sync::Arc;

use blockwise_core::key::Index;
use blockwise_core::value::{decode_value, encode_value, postcard_decode, postcard_encode};
use blockwise_core::{BlockArg, Blockwise, IndexMap, Input, Key, Name, Op, Plan, Result, SlotRef, Task, Value};
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

/// A task spec as written: one task, or the template of a generated
/// layer's tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum WireSpec {
    Task(WireTask),
    Generated(WireTemplate),
}

/// The tasks of a generated layer as a worker reads them: one op and
/// arguments resolved at each task's index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireTemplate {
    /// The registered op name.
    pub op: String,
    /// The op's encoded parameters.
    pub params: Vec<u8>,
    /// The arguments, in order.
    pub args: Vec<TemplateArg>,
}

/// One argument of a [`WireTemplate`] (a [`blockwise_core::BlockArg`] as
/// sent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TemplateArg {
    /// The same literal for every task: its codec and encoded bytes.
    Literal(String, Vec<u8>),
    /// The task's index along this axis, as a `u64`.
    BlockIndex(u32),
    /// The result of the task of layer `name` at the index given by the
    /// map (one entry per dimension of that layer).
    Block(Name, Vec<IndexMap>),
}

/// The spec shared by every task of a generated layer.
pub fn encode_template(layer: &Name, rule: &Blockwise) -> Result<TaskSpec> {
    let mut params = Vec::new();
    rule.op
        .encode_params(&mut params)
        .map_err(|e| e.context(format!("while sending layer {layer} to a cluster")))?;
    let args = rule
        .args
        .iter()
        .map(|a| {
            Ok(match a {
                BlockArg::Literal(v) => {
                    let encoded = encode_value(v)
                        .map_err(|e| e.context(format!("while sending a literal argument of layer {layer}")))?;
                    TemplateArg::Literal(encoded.codec, encoded.bytes.to_vec())
                }
                BlockArg::BlockIndex(axis) => TemplateArg::BlockIndex(*axis),
                BlockArg::Block { name, map } => TemplateArg::Block(name.clone(), map.clone()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::new();
    postcard_encode(
        &WireSpec::Generated(WireTemplate {
            op: rule.op.name().to_string(),
            params,
            args,
        }),
        &mut out,
    )?;
    Ok(TaskSpec::new(out))
}

/// Encodes one explicit task (`key` running `task`) for a worker.
pub fn encode_explicit(key: &Key, task: &Task) -> Result<TaskSpec> {
    let mut params = Vec::new();
    task.op
        .encode_params(&mut params)
        .map_err(|e| e.context(format!("while sending task {key} to a cluster")))?;
    let inputs = task
        .inputs
        .iter()
        .map(|i| {
            Ok(match i {
                Input::Key(k) => SpecInput::Key(k.clone()),
                Input::Literal(v) => {
                    let encoded = encode_value(v)
                        .map_err(|e| e.context(format!("while sending a literal input of task {key}")))?;
                    SpecInput::Literal(encoded.codec, encoded.bytes.to_vec())
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    write_task(WireTask {
        op: task.op.name().to_string(),
        params,
        inputs,
    })
}

fn write_task(task: WireTask) -> Result<TaskSpec> {
    let mut out = Vec::new();
    postcard_encode(&WireSpec::Task(task), &mut out)?;
    Ok(TaskSpec::new(out))
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
        .map(|s| {
            Ok(match s {
                SlotRef::Task(d) => SpecInput::Key(plan.key(d)),
                SlotRef::Literal(v) => {
                    let encoded = encode_value(v)
                        .map_err(|e| e.context(format!("while sending a literal input of task {}", plan.key(id))))?;
                    SpecInput::Literal(encoded.codec, encoded.bytes.to_vec())
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    write_task(WireTask {
        op: op.name().to_string(),
        params,
        inputs,
    })
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
    let wire: WireSpec =
        postcard_decode(spec.bytes()).map_err(|e| e.context(format!("while reading the spec of task {key}")))?;
    let wire = match wire {
        WireSpec::Task(task) => task,
        WireSpec::Generated(template) => return decode_generated(key, template),
    };
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

/// Task `key` of a generated layer: the template's arguments at the key's
/// index (as [`blockwise_core::Layer::visit_task`] resolves them).
fn decode_generated(key: &Key, template: WireTemplate) -> Result<RunnableTask> {
    let op = blockwise_core::op::decode_op(&template.op, &template.params)
        .map_err(|e| e.context(format!("in task {key}")))?;
    let axis = |a: u32| {
        key.index.get(a as usize).copied().ok_or_else(|| {
            blockwise_core::Error::graph(format!(
                "task {key}: axis {a} is outside its {}-d index",
                key.index.len()
            ))
        })
    };
    let inputs = template
        .args
        .into_iter()
        .map(|a| {
            Ok(match a {
                TemplateArg::Literal(codec, bytes) => Argument::Value(
                    decode_value(&codec, &bytes)
                        .map_err(|e| e.context(format!("while decoding a literal input of task {key}")))?,
                ),
                TemplateArg::BlockIndex(a) => Argument::Value(Arc::new(u64::from(axis(a)?)) as Value),
                TemplateArg::Block(name, map) => {
                    let index = map
                        .iter()
                        .map(|m| match m {
                            IndexMap::Axis(a) => axis(*a),
                            IndexMap::Fixed(i) => Ok(*i),
                        })
                        .collect::<Result<Index>>()?;
                    Argument::Key(Key { name, index })
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RunnableTask { op, inputs })
}

/// The spec of a task that returns `value` itself (how [`crate::Client::scatter`]
/// sends data: the scheduler keeps only the key, a worker holds the value).
pub fn literal_task(value: &Value) -> Result<TaskSpec> {
    let encoded = encode_value(value)?;
    write_task(WireTask {
        op: blockwise_core::op::identity().name().to_string(),
        params: Vec::new(),
        inputs: vec![SpecInput::Literal(encoded.codec, encoded.bytes.to_vec())],
    })
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
