//! Ready-made graphs (tako's `workflows.rs`), each drawn in its doc comment.
//! Priorities come from the real `blockwise_core::order`.

use std::collections::HashMap;

use blockwise_core::Key;
use blockwise_core::csr::Csr;
use blockwise_distributed::scheduler::{NewTask, Submission, TaskSpec};

use crate::env::{k, ki};

/// A graph under construction: keys, edges, outputs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dag {
    keys: Vec<Key>,
    dependencies: Vec<Vec<u32>>,
    outputs: Vec<u32>,
    index: HashMap<Key, u32>,
    retries: HashMap<u32, u32>,
    priority: i32,
}

impl Dag {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds `key`, reading `dependencies` (added before).
    pub(crate) fn add(&mut self, key: Key, dependencies: &[Key]) -> &mut Self {
        let deps = dependencies
            .iter()
            .map(|d| {
                *self
                    .index
                    .get(d)
                    .unwrap_or_else(|| panic!("{d} must be added before its dependents"))
            })
            .collect();
        self.index.insert(key.clone(), self.keys.len() as u32);
        self.keys.push(key);
        self.dependencies.push(deps);
        self
    }

    pub(crate) fn output(&mut self, key: &Key) -> &mut Self {
        self.outputs.push(self.index[key]);
        self
    }

    /// Lets `key` retry `n` failures.
    pub(crate) fn retries(&mut self, key: &Key, n: u32) -> &mut Self {
        self.retries.insert(self.index[key], n);
        self
    }

    pub(crate) fn priority(&mut self, priority: i32) -> &mut Self {
        self.priority = priority;
        self
    }

    pub(crate) fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn output_keys(&self) -> Vec<Key> {
        self.outputs.iter().map(|&o| self.keys[o as usize].clone()).collect()
    }

    /// The rank of each task in `blockwise_core::order`.
    pub(crate) fn order(&self) -> Vec<u32> {
        let deps = Csr::from_rows(self.dependencies.iter().map(|r| r.iter().copied()));
        blockwise_core::order::order(&deps, &deps.transpose())
    }

    pub(crate) fn submission(&self) -> Submission {
        let order = self.order();
        Submission {
            tasks: self
                .keys
                .iter()
                .enumerate()
                .map(|(i, key)| NewTask {
                    key: key.clone(),
                    dependencies: self.dependencies[i].clone(),
                    order: order[i],
                    spec: Some(TaskSpec::new(key.to_string().into_bytes())),
                    retries: self.retries.get(&(i as u32)).copied().unwrap_or(0),
                })
                .collect(),
            outputs: self.outputs.clone(),
            priority: self.priority,
        }
    }
}

/// A linear chain of one layer; the last task is the output.
///
/// ```text
/// (chain,0) ─▶ (chain,1) ─▶ … ─▶ (chain,n-1)
/// ```
pub(crate) fn chain(n: u32) -> Dag {
    let mut dag = Dag::new();
    dag.add(ki("chain", 0), &[]);
    for i in 1..n {
        dag.add(ki("chain", i), &[ki("chain", i - 1)]);
    }
    dag.output(&ki("chain", n - 1));
    dag
}

/// ```text
///       a
///      ╱ ╲
///     b   c
///      ╲ ╱
///       d        (output)
/// ```
pub(crate) fn diamond() -> Dag {
    let mut dag = Dag::new();
    dag.add(k("a"), &[])
        .add(k("b"), &[k("a")])
        .add(k("c"), &[k("a")])
        .add(k("d"), &[k("b"), k("c")])
        .output(&k("d"));
    dag
}

/// A tree reduction of `leaves` root tasks, `fan_in` at a time, up to one
/// output `(sum-L, 0)`.
///
/// ```text
/// (x,0) (x,1) (x,2) (x,3) (x,4) (x,5) (x,6) (x,7)      leaves: root-ish
///    ╲   ╱       ╲   ╱       ╲   ╱       ╲   ╱
///   (sum-1,0)   (sum-1,1)   (sum-1,2)   (sum-1,3)       fan_in = 2
///          ╲     ╱                ╲     ╱
///         (sum-2,0)              (sum-2,1)
///                 ╲             ╱
///                   (sum-3,0)                          output
/// ```
pub(crate) fn tree_reduction(leaves: u32, fan_in: u32) -> Dag {
    let mut dag = Dag::new();
    let mut level: Vec<Key> = (0..leaves).map(|i| ki("x", i)).collect();
    for key in &level {
        dag.add(key.clone(), &[]);
    }
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        let name = format!("sum-{depth}");
        level = level
            .chunks(fan_in as usize)
            .enumerate()
            .map(|(j, inputs)| {
                let key = ki(&name, j as u32);
                dag.add(key.clone(), inputs);
                key
            })
            .collect();
    }
    dag.output(&level[0]);
    dag
}

/// A map then a reduction of everything.
///
/// ```text
/// (x,0)   (x,1)   …   (x,w-1)        root-ish when w > 2 × threads
///   │       │            │
/// (y,0)   (y,1)   …   (y,w-1)
///     ╲     │          ╱
///          total                     output
/// ```
pub(crate) fn map_reduce(width: u32) -> Dag {
    let mut dag = Dag::new();
    for i in 0..width {
        dag.add(ki("x", i), &[]);
        dag.add(ki("y", i), &[ki("x", i)]);
    }
    let ys: Vec<Key> = (0..width).map(|i| ki("y", i)).collect();
    dag.add(k("total"), &ys).output(&k("total"));
    dag
}

/// Independent tasks, every one an output.
///
/// ```text
/// (x,0)   (x,1)   …   (x,n-1)
/// ```
pub(crate) fn independent(n: u32) -> Dag {
    let mut dag = Dag::new();
    for i in 0..n {
        dag.add(ki("x", i), &[]).output(&ki("x", i));
    }
    dag
}
