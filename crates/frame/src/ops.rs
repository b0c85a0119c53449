//! The ops that frame tasks run.
//!
//! Every op is a registered type: a serde struct of parameters (Polars
//! expressions, column names, schemas) behind [`TaskOp`], registered under
//! `frame.<name>` so a worker process rebuilds it from its encoded parameters.
//! The one exception is [`MapPartitionsOp`], whose parameter is a user
//! function: portable only when `#[blockwise::task]` registered it.

use std::sync::Arc;

use blockwise_core::value::Tuple;
use blockwise_core::{Error, ErrorKind, Op, Result, Tokenizer, Value};
use polars::prelude::{DataFrame as PlFrame, IdxSize, PolarsResult, SchemaRef};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::partition::{frame_of, value_of};
use crate::polars_api::{self, JoinHow, PlResultExt};
use crate::step::{Step, apply_steps};

/// A frame op: parameters that serialize, and what a task does with them.
pub(crate) trait FrameTask: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The registered name, `frame.<name>`.
    const NAME: &'static str;
    /// Runs the task on its inputs.
    fn run(&self, args: &[Value]) -> Result<Value>;
}

/// Adapts a [`FrameTask`] to the engine's [`Op`].
pub(crate) struct TaskOp<T>(pub(crate) T);

impl<T: FrameTask> Op for TaskOp<T> {
    fn name(&self) -> &str {
        T::NAME
    }

    fn call(&self, args: &[Value]) -> Result<Value> {
        self.0.run(args)
    }

    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&polars_api::ser(&self.0)?);
        Ok(())
    }

    fn label(&self) -> String {
        T::NAME.trim_start_matches("frame.").to_string()
    }
}

/// Wraps a task's parameters as a shared op.
pub(crate) fn op<T: FrameTask>(task: T) -> Arc<dyn Op> {
    Arc::new(TaskOp(task))
}

/// Registers a [`FrameTask`] type under its name.
macro_rules! register_task {
    ($ty:ty) => {
        blockwise_core::register_op!(<$ty as $crate::ops::FrameTask>::NAME, |params| {
            let task: $ty = $crate::polars_api::de(params)?;
            Ok(::std::sync::Arc::new($crate::ops::TaskOp(task)) as ::std::sync::Arc<dyn blockwise_core::Op>)
        });
    };
}
pub(crate) use register_task;

/// The frames of all inputs, in order.
pub(crate) fn frames_of(args: &[Value]) -> Result<Vec<PlFrame>> {
    args.iter().map(frame_of).collect()
}

fn one_frame(args: &[Value], name: &str) -> Result<PlFrame> {
    match args {
        [v] => frame_of(v),
        _ => Err(Error::graph(format!(
            "{name} takes one partition, the task gives {}",
            args.len()
        ))),
    }
}

// ---------------------------------------------------------------- steps

/// Runs a chain of [`Step`]s on one partition.
#[derive(Serialize, Deserialize)]
pub(crate) struct StepsTask {
    pub(crate) steps: Vec<Step>,
}

impl FrameTask for StepsTask {
    const NAME: &'static str = "frame.steps";
    fn run(&self, args: &[Value]) -> Result<Value> {
        let df = one_frame(args, Self::NAME)?;
        Ok(value_of(apply_steps(df, &self.steps).pl()?))
    }
}
register_task!(StepsTask);

// ---------------------------------------------------------------- concat

/// Concatenates its inputs in order; `columns` first selects those columns
/// from each (inputs planned with different projections line up again).
#[derive(Serialize, Deserialize)]
pub(crate) struct ConcatTask {
    pub(crate) columns: Option<Vec<String>>,
    pub(crate) schema: SchemaRef,
}

impl FrameTask for ConcatTask {
    const NAME: &'static str = "frame.concat";
    fn run(&self, args: &[Value]) -> Result<Value> {
        let mut frames = frames_of(args)?;
        if let Some(cols) = &self.columns {
            frames = frames
                .iter()
                .map(|f| polars_api::select_columns(f, cols))
                .collect::<Result<_>>()?;
        }
        Ok(value_of(polars_api::concat(frames, Some(&self.schema))?))
    }
}
register_task!(ConcatTask);

/// Takes the first `n` rows of the concatenation of its inputs.
#[derive(Serialize, Deserialize)]
pub(crate) struct HeadTask {
    pub(crate) n: usize,
    pub(crate) schema: SchemaRef,
}

impl FrameTask for HeadTask {
    const NAME: &'static str = "frame.head";
    fn run(&self, args: &[Value]) -> Result<Value> {
        let mut out = Vec::new();
        let mut have = 0usize;
        for v in args {
            if have >= self.n {
                break;
            }
            let f = frame_of(v)?;
            let take = (self.n - have).min(f.height());
            have += take;
            out.push(polars_api::slice(&f, 0, take));
        }
        Ok(value_of(polars_api::concat(out, Some(&self.schema))?))
    }
}
register_task!(HeadTask);

// ---------------------------------------------------------------- splitting

/// Splits a partition into `pieces` runs of consecutive rows (as equal as
/// possible), returned as a tuple.
#[derive(Serialize, Deserialize)]
pub(crate) struct SplitRowsTask {
    pub(crate) pieces: usize,
}

impl FrameTask for SplitRowsTask {
    const NAME: &'static str = "frame.split_rows";
    fn run(&self, args: &[Value]) -> Result<Value> {
        let df = one_frame(args, Self::NAME)?;
        let n = df.height();
        let k = self.pieces.max(1);
        let parts = (0..k)
            .map(|j| {
                let (a, b) = (n * j / k, n * (j + 1) / k);
                value_of(polars_api::slice(&df, a, b - a))
            })
            .collect();
        Ok(Arc::new(Tuple(parts)))
    }
}
register_task!(SplitRowsTask);

/// Sends each row to output `hash(on) % k`: a tuple of `k` partitions.
#[derive(Serialize, Deserialize)]
pub(crate) struct HashSplitTask {
    pub(crate) on: Vec<String>,
    pub(crate) k: usize,
}

impl FrameTask for HashSplitTask {
    const NAME: &'static str = "frame.hash_split";
    fn run(&self, args: &[Value]) -> Result<Value> {
        let df = one_frame(args, Self::NAME)?;
        let hashes = polars_api::hash_rows(&df, &self.on)?;
        let buckets: Vec<usize> = hashes.iter().map(|h| bucket_of(*h, self.k)).collect();
        Ok(Arc::new(Tuple(split_by_bucket(&df, &buckets, self.k)?)))
    }
}
register_task!(HashSplitTask);

/// The output partition of a row hash among `k`. The high bits are mixed in
/// so that hashes differing only there still spread.
pub(crate) fn bucket_of(hash: u64, k: usize) -> usize {
    let mixed = hash ^ (hash >> 29) ^ (hash >> 47);
    (mixed % k.max(1) as u64) as usize
}

/// The rows of `df` grouped by bucket, each group in row order.
pub(crate) fn split_by_bucket(df: &PlFrame, buckets: &[usize], k: usize) -> Result<Vec<Value>> {
    let mut idx: Vec<Vec<IdxSize>> = vec![Vec::new(); k];
    for (row, b) in buckets.iter().enumerate() {
        idx[*b].push(row as IdxSize);
    }
    idx.into_iter()
        .map(|rows| {
            if rows.len() == df.height() {
                Ok(value_of(df.clone()))
            } else {
                Ok(value_of(polars_api::take_rows(df, rows)?))
            }
        })
        .collect()
}

/// Sends each row to the output range its `by[0]` value falls in, given
/// sorted `boundaries` (`k - 1` values): a tuple of `k` partitions. Nulls go
/// first (Polars sorts nulls first).
#[derive(Serialize, Deserialize)]
pub(crate) struct RangeSplitTask {
    pub(crate) column: String,
    pub(crate) boundaries: polars::prelude::Series,
    pub(crate) descending: bool,
}

impl FrameTask for RangeSplitTask {
    const NAME: &'static str = "frame.range_split";
    fn run(&self, args: &[Value]) -> Result<Value> {
        let df = one_frame(args, Self::NAME)?;
        let k = self.boundaries.len() + 1;
        let buckets = crate::sort::range_buckets(&df, &self.column, &self.boundaries, self.descending)?;
        Ok(Arc::new(Tuple(split_by_bucket(&df, &buckets, k)?)))
    }
}
register_task!(RangeSplitTask);

// ---------------------------------------------------------------- joins

/// Joins a left partition with a right partition (or with the concatenation
/// of several right partitions, for a broadcast join).
#[derive(Serialize, Deserialize)]
pub(crate) struct JoinTask {
    pub(crate) how: JoinHow,
    pub(crate) left_on: Vec<String>,
    pub(crate) right_on: Vec<String>,
    pub(crate) suffix: String,
    pub(crate) right_schema: SchemaRef,
}

impl FrameTask for JoinTask {
    const NAME: &'static str = "frame.join";
    fn run(&self, args: &[Value]) -> Result<Value> {
        let (left, rights) = args
            .split_first()
            .ok_or_else(|| Error::graph("frame.join needs a left partition"))?;
        let left = frame_of(left)?;
        let right = polars_api::concat(frames_of(rights)?, Some(&self.right_schema))?;
        let lf = polars_api::join(
            polars_api::lazy(left),
            polars_api::lazy(right),
            self.how,
            &self.left_on,
            &self.right_on,
            &self.suffix,
        );
        Ok(value_of(polars_api::collect(lf).pl()?))
    }
}
register_task!(JoinTask);

// ---------------------------------------------------------------- map_partitions

/// The signature of a partition function that can be registered with
/// `#[blockwise::task]` and so run on workers.
pub type PartitionFnPtr = fn(PlFrame) -> PolarsResult<PlFrame>;

/// A user function applied to every partition.
pub(crate) struct MapPartitionsOp {
    pub(crate) func: Arc<dyn Fn(PlFrame) -> PolarsResult<PlFrame> + Send + Sync>,
    /// The registered name, when the function is registered.
    pub(crate) registered: Option<String>,
    /// A descriptive name (the function's type name) for messages.
    pub(crate) type_name: String,
}

impl Op for MapPartitionsOp {
    fn name(&self) -> &str {
        "frame.map_partitions"
    }

    fn call(&self, args: &[Value]) -> Result<Value> {
        let df = one_frame(args, "frame.map_partitions")?;
        let out = (self.func)(df)
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("{} failed: {e}", self.type_name)))?;
        Ok(value_of(out))
    }

    fn encode_params(&self, out: &mut Vec<u8>) -> Result<()> {
        match &self.registered {
            Some(name) => blockwise_core::value::postcard_encode(name, out),
            None => Err(blockwise_core::op::not_registered(&self.type_name)),
        }
    }

    fn tokenize(&self, tokenizer: &mut Tokenizer) {
        tokenizer.str("frame.map_partitions");
        match &self.registered {
            Some(name) => tokenizer.str(name),
            None => tokenizer.unique(),
        };
    }

    fn label(&self) -> String {
        "map_partitions".into()
    }
}

blockwise_core::register_op!("frame.map_partitions", |params| {
    let name: String = blockwise_core::value::postcard_decode(params)?;
    let func: PartitionFnPtr = blockwise_core::op::registered_fn::<PartitionFnPtr>(&name)?;
    Ok(Arc::new(MapPartitionsOp {
        func: Arc::new(func),
        registered: Some(name.clone()),
        type_name: name,
    }) as Arc<dyn Op>)
});
