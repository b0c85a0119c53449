//! Scheduler overhead: many tiny tasks (Dask's "tasks" benchmarks).
//!
//! - `tasks-tree`: `inc(i)` for `i` in `0..n`, summed in a tree of fan-in
//!   `--fan-in` (100): `n + n/100 + n/10⁴ + …` tasks, result `n(n+1)/2`.
//! - `tasks-flat`: the same `n` tasks and one final `total` reading all of
//!   them: `n + 1` tasks.
//! - `graph-build`: builds the `tasks-tree` (or `--shape flat`) graph, culls
//!   and orders it ([`Plan::build`]), and runs nothing.
//!
//! Two ways to build the same graph (`--api`, reported in the `api` field):
//!
//! - `delayed` (default): one `delayed(inc).call(i)` per task and one
//!   `delayed(total).call(&chunk)` per sum: what the Dask anchor does with
//!   `dask.delayed`. Each call is its own single-task layer.
//! - `layers`: the generated-layer API. The `inc` tasks are one
//!   [`Blockwise`] rule over a grid of `n` blocks whose argument is the block
//!   index ([`BlockArg::BlockIndex`]); each level of the sum is one explicit
//!   layer ([`LayerBody::Tasks`]). This is how collections build graphs.
//!
//! The task functions are `#[blockwise::task]`, so the same graphs can run on
//! a cluster once there is one.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use blockwise::core::exec::Callback;
use blockwise::core::graph::{BlockArg, Blockwise, Input, Layer, LayerBody, Task};
use blockwise::core::op::{FnOp, Op};
use blockwise::core::{Collection, Key, Plan, PlanOptions, Tokenizer};
use blockwise::prelude::*;

use super::{Context, OptionSpec, Workload};
use crate::BenchError;
use crate::measure;
use crate::record::{Record, per_second, seconds};

/// The workloads of this family.
pub(crate) const WORKLOADS: &[Workload] = &[
    Workload {
        name: "tasks-tree",
        about: "n tiny tasks inc(i), summed in a tree of fan-in 100; result n(n+1)/2",
        options: &[N, FAN_IN, API],
        run: tasks_tree,
    },
    Workload {
        name: "tasks-flat",
        about: "n tiny tasks inc(i) and one final sum of all of them; result n(n+1)/2",
        options: &[N, API],
        run: tasks_flat,
    },
    Workload {
        name: "graph-build",
        about: "build, cull and order the tasks-tree graph of n tasks without running it",
        options: &[N, FAN_IN, API, SHAPE],
        run: graph_build,
    },
];

const N: OptionSpec = OptionSpec {
    name: "n",
    default: "100000",
    about: "number of inc tasks",
};
const FAN_IN: OptionSpec = OptionSpec {
    name: "fan-in",
    default: "100",
    about: "inputs per sum task of the tree (at least 2)",
};
const API: OptionSpec = OptionSpec {
    name: "api",
    default: "delayed",
    about: "how the graph is built: delayed (one delayed call per task) or layers (generated layers)",
};
const SHAPE: OptionSpec = OptionSpec {
    name: "shape",
    default: "tree",
    about: "tree (as tasks-tree) or flat (as tasks-flat)",
};

/// Adds one.
#[blockwise::task]
fn inc(i: u64) -> u64 {
    i + 1
}

/// The sum of a list.
#[blockwise::task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

/// How the graph is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Delayed,
    Layers,
}

impl Api {
    fn from_options(ctx: &Context<'_>) -> Result<Api, BenchError> {
        Ok(match ctx.options.choice("api", &["delayed", "layers"], API.default)? {
            "layers" => Api::Layers,
            _ => Api::Delayed,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Api::Delayed => "delayed",
            Api::Layers => "layers",
        }
    }
}

/// The shape of the reduction after the `inc` tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Sums of `fan_in` inputs, level after level, down to one.
    Tree { fan_in: usize },
    /// One sum of everything.
    Flat,
}

impl Shape {
    fn fan_in(self, n: usize) -> usize {
        match self {
            Shape::Tree { fan_in } => fan_in,
            Shape::Flat => n.max(1),
        }
    }
}

/// The graph parameters every workload of the family reads.
struct Params {
    n: usize,
    api: Api,
}

fn params(ctx: &Context<'_>) -> Result<Params, BenchError> {
    let n = ctx.options.usize("n", 100_000)?;
    if n == 0 || n > u32::MAX as usize {
        return Err(BenchError::Usage(format!("--n {n}: expected 1 to {}", u32::MAX)));
    }
    Ok(Params {
        n,
        api: Api::from_options(ctx)?,
    })
}

fn fan_in(ctx: &Context<'_>) -> Result<usize, BenchError> {
    let fan_in = ctx.options.usize("fan-in", 100)?;
    if fan_in < 2 {
        return Err(BenchError::Usage(format!("--fan-in {fan_in}: expected at least 2")));
    }
    Ok(fan_in)
}

/// `sum(i + 1 for i in 0..n)`, computed without blockwise.
fn expected(n: usize) -> u64 {
    let n = n as u64;
    n * (n + 1) / 2
}

/// Number of tasks of the graph: `n` incs plus every level of sums.
fn task_count(n: usize, shape: Shape) -> usize {
    let fan_in = shape.fan_in(n);
    let mut tasks = n;
    let mut level = n;
    loop {
        level = level.div_ceil(fan_in);
        tasks += level;
        if level <= 1 {
            return tasks;
        }
    }
}

/// Builds the graph: the `inc` tasks and the sums over them.
fn build(api: Api, n: usize, shape: Shape) -> Delayed<u64> {
    match api {
        Api::Delayed => build_delayed(n, shape),
        Api::Layers => build_layers(n, shape),
    }
}

fn build_delayed(n: usize, shape: Shape) -> Delayed<u64> {
    let fan_in = shape.fan_in(n);
    let mut level: Vec<Delayed<u64>> = (0..n as u64).map(|i| delayed(inc).call(i)).collect();
    loop {
        level = level.chunks(fan_in).map(|chunk| delayed(total).call(chunk)).collect();
        if level.len() == 1 {
            return level.pop().expect("one sum left");
        }
    }
}

fn build_layers(n: usize, shape: Shape) -> Delayed<u64> {
    let fan_in = shape.fan_in(n);
    let inc_op: Arc<dyn Op> = Arc::new(FnOp::new(inc, vec![None]));
    let mut tok = Tokenizer::new();
    inc_op.tokenize(&mut tok);
    tok.str("block-index").u64(n as u64);
    let mut layer = Layer::new(
        tok.name("inc"),
        vec![],
        LayerBody::Blockwise(Box::new(Blockwise {
            op: inc_op,
            grid: vec![n as u32],
            args: vec![BlockArg::BlockIndex(0)],
        })),
    );
    loop {
        layer = sum_layer(&layer, fan_in);
        if layer.len() == 1 {
            let key = Key::new(layer.name().clone(), &[0]);
            return Delayed::from_layer(layer, key);
        }
    }
}

/// One level of the tree: task `j` sums blocks `j*fan_in ..` of `input`.
fn sum_layer(input: &Arc<Layer>, fan_in: usize) -> Arc<Layer> {
    let len = input.len();
    let mut tok = Tokenizer::new();
    tok.str(env!("CARGO_PKG_NAME")).str("total").str(input.name().as_str()).u64(fan_in as u64);
    let name = tok.name("total");
    // One op per distinct chunk length (all but the last chunk share one).
    let mut ops: HashMap<usize, Arc<dyn Op>> = HashMap::new();
    let tasks = (0..len.div_ceil(fan_in))
        .map(|j| {
            let range = j * fan_in..(len.min((j + 1) * fan_in));
            let op = ops
                .entry(range.len())
                .or_insert_with(|| Arc::new(FnOp::new(total, vec![Some(range.len() as u32)])))
                .clone();
            let inputs = range
                .map(|i| Input::Key(Key::new(input.name().clone(), &[i as u32])))
                .collect();
            (Key::new(name.clone(), &[j as u32]), Task::new(op, inputs))
        })
        .collect();
    Layer::new(name, vec![input.clone()], LayerBody::Tasks(tasks))
}

/// When the engine started (after planning) and finished, and the number
/// of planned tasks, seen through the callback interface.
#[derive(Default)]
struct Phases {
    started: OnceLock<Instant>,
    finished: OnceLock<Instant>,
    planned: OnceLock<usize>,
}

impl Callback for Phases {
    fn start(&self, plan: &Plan) {
        let _ = self.started.set(Instant::now());
        let _ = self.planned.set(plan.len());
    }

    fn finish(&self, _plan: &Plan, _failed: bool) {
        let _ = self.finished.set(Instant::now());
    }
}

fn tasks_tree(ctx: &Context<'_>) -> Result<Record, BenchError> {
    let fan_in = fan_in(ctx)?;
    run_tasks(ctx, Shape::Tree { fan_in })
}

fn tasks_flat(ctx: &Context<'_>) -> Result<Record, BenchError> {
    run_tasks(ctx, Shape::Flat)
}

/// Builds the graph, computes it, checks the result.
fn run_tasks(ctx: &Context<'_>, shape: Shape) -> Result<Record, BenchError> {
    let Params { n, api } = params(ctx)?;
    let tasks = task_count(n, shape);
    let rss_before = measure::rss_bytes();

    let t0 = Instant::now();
    let graph = build(api, n, shape);
    let build_time = t0.elapsed();
    let rss_graph = measure::rss_bytes();

    let phases = Arc::new(Phases::default());
    let options = ComputeOptions::new()
        .scheduler(ctx.scheduler.scheduler.clone())
        .callback(phases.clone());
    let t1 = Instant::now();
    let result = graph.compute_with(options)?;
    let wall = t1.elapsed();
    let peak = measure::peak_rss_bytes();

    if result != expected(n) {
        return Err(BenchError::Failed(format!(
            "{}: got {result}, expected {} = n(n+1)/2 for n = {n}",
            ctx.workload,
            expected(n)
        )));
    }
    let since = |from: Instant, to: Option<&Instant>| to.map(|t| seconds(t.saturating_duration_since(from)));
    let plan_s = since(t1, phases.started.get());
    let run_s = phases.started.get().and_then(|s| since(*s, phases.finished.get()));

    let mut r = ctx.record();
    r.set("api", api.name()).set("n", n);
    if let Shape::Tree { fan_in } = shape {
        r.set("fan_in", fan_in);
    }
    r.set("tasks", tasks)
        .set("planned_tasks", phases.planned.get().copied())
        .set("build_s", seconds(build_time))
        .set("wall_s", seconds(wall))
        .set("plan_s", plan_s)
        .set("run_s", run_s)
        .set("tasks_per_s", per_second(tasks, wall))
        .set("peak_rss_bytes", peak)
        .set("rss_before_bytes", rss_before)
        .set("graph_rss_bytes", measure::delta(rss_before, rss_graph))
        .set("result", result);
    Ok(r)
}

/// Builds, culls and orders; runs nothing.
///
/// `Plan::build` culls (expanding only the tasks the output needs), checks
/// for fusable chains and cycles, and orders, in one call. `order_s` is
/// measured by running [`blockwise::core::order::order`] again on the
/// finished plan; `cull_s` is the rest of `Plan::build` (`plan_s - order_s`).
fn graph_build(ctx: &Context<'_>) -> Result<Record, BenchError> {
    let Params { n, api } = params(ctx)?;
    let shape = match ctx.options.choice("shape", &["tree", "flat"], SHAPE.default)? {
        "flat" => Shape::Flat,
        _ => Shape::Tree { fan_in: fan_in(ctx)? },
    };
    let tasks = task_count(n, shape);
    let rss_before = measure::rss_bytes();

    let t0 = Instant::now();
    let delayed = build(api, n, shape);
    let build_time = t0.elapsed();
    let rss_graph = measure::rss_bytes();

    let graph = delayed.graph();
    let outputs = delayed.output_keys();
    let t1 = Instant::now();
    let plan = Plan::build(&graph, &outputs, &PlanOptions::default())?;
    let plan_time = t1.elapsed();
    let rss_plan = measure::rss_bytes();

    let t2 = Instant::now();
    let priorities = blockwise::core::order::order(plan.dependencies(), plan.dependents());
    let order_time = t2.elapsed();
    if priorities.as_slice() != plan.priorities() {
        return Err(BenchError::Failed("ordering the same plan twice gave two orders".into()));
    }
    drop(priorities);
    let peak = measure::peak_rss_bytes();
    if plan.len() != tasks {
        return Err(BenchError::Failed(format!(
            "graph-build: the plan has {} tasks, the graph {tasks}",
            plan.len()
        )));
    }

    let graph_bytes = measure::delta(rss_before, rss_graph);
    let total_bytes = measure::delta(rss_before, rss_plan);
    let per_task = |bytes: Option<i64>| bytes.map(|b| (b as f64 / tasks as f64).round() as i64);
    let mut r = ctx.record();
    r.set("api", api.name()).set("n", n);
    match shape {
        Shape::Tree { fan_in } => r.set("shape", "tree").set("fan_in", fan_in),
        Shape::Flat => r.set("shape", "flat"),
    };
    r.set("tasks", tasks)
        .set("build_s", seconds(build_time))
        .set("plan_s", seconds(plan_time))
        .set("cull_s", seconds(plan_time.saturating_sub(order_time)))
        .set("order_s", seconds(order_time))
        .set("total_s", seconds(build_time + plan_time))
        .set("wall_s", Option::<f64>::None)
        .set("bytes_per_task", per_task(total_bytes))
        .set("graph_bytes_per_task", per_task(graph_bytes))
        .set("plan_bytes", plan.size_bytes())
        .set("peak_rss_bytes", peak)
        .set("rss_before_bytes", rss_before)
        .set("result", Option::<u64>::None);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Options;
    use crate::scheduler::BenchScheduler;

    fn run(workload: &str, scheduler: &str, options: &[(&str, &str)]) -> Record {
        let w = super::super::find(workload).unwrap();
        let options = Options::from_pairs(options);
        w.check_options(&options).unwrap();
        let scheduler = BenchScheduler::parse(scheduler).unwrap();
        let ctx = Context {
            workload: w.name,
            scheduler: &scheduler,
            options: &options,
            run: 0,
            load_average: None,
        };
        (w.run)(&ctx).unwrap()
    }

    #[test]
    fn tasks_tree_sums_to_n_n_plus_one_over_two() {
        for api in ["delayed", "layers"] {
            for scheduler in ["sync", "threads:2"] {
                let r = run("tasks-tree", scheduler, &[("n", "1000"), ("api", api)]);
                assert_eq!(r.get("result").unwrap(), 1000 * 1001 / 2, "{api} on {scheduler}");
                // 1000 incs, 10 sums, 1 final sum; none is fusable.
                assert_eq!(r.get("tasks").unwrap(), 1011);
                assert_eq!(r.get("planned_tasks").unwrap(), 1011);
                assert_eq!(r.get("api").unwrap(), api);
                assert_eq!(r.get("system").unwrap(), "blockwise");
            }
        }
    }

    #[test]
    fn tasks_flat_and_uneven_trees() {
        let r = run("tasks-flat", "threads:2", &[("n", "777"), ("api", "layers")]);
        assert_eq!(r.get("result").unwrap(), 777 * 778 / 2);
        assert_eq!(r.get("tasks").unwrap(), 778);
        for api in ["delayed", "layers"] {
            let r = run("tasks-tree", "sync", &[("n", "1001"), ("fan-in", "7"), ("api", api)]);
            assert_eq!(r.get("result").unwrap(), 1001 * 1002 / 2);
            assert_eq!(r.get("tasks").unwrap(), task_count(1001, Shape::Tree { fan_in: 7 }));
        }
    }

    #[test]
    fn both_apis_plan_the_same_number_of_tasks() {
        for shape in [Shape::Tree { fan_in: 10 }, Shape::Flat] {
            let a = build(Api::Delayed, 500, shape);
            let b = build(Api::Layers, 500, shape);
            let pa = Plan::build(&a.graph(), &a.output_keys(), &PlanOptions::default()).unwrap();
            let pb = Plan::build(&b.graph(), &b.output_keys(), &PlanOptions::default()).unwrap();
            assert_eq!(pa.len(), task_count(500, shape));
            assert_eq!(pb.len(), task_count(500, shape));
        }
    }

    #[test]
    fn graph_build_reports_its_phases() {
        let r = run("graph-build", "sync", &[("n", "2000"), ("api", "layers")]);
        assert_eq!(r.get("tasks").unwrap(), 2021);
        for field in ["build_s", "cull_s", "order_s", "plan_bytes"] {
            assert!(r.get(field).unwrap().is_number(), "{field}");
        }
    }

    #[test]
    fn task_counts() {
        assert_eq!(task_count(100_000, Shape::Tree { fan_in: 100 }), 101_011);
        assert_eq!(task_count(100_000, Shape::Flat), 100_001);
        assert_eq!(task_count(1, Shape::Flat), 2);
        assert_eq!(task_count(1, Shape::Tree { fan_in: 100 }), 2);
    }
}
