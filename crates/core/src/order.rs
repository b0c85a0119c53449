//! Static task ordering: a priority for every task that keeps peak memory low.
//!
//! Priorities are ranks: 0 runs first. Executors pick ready tasks by priority,
//! so this order decides how many intermediate results are alive at once.
//!
//! This version: a depth-first traversal from the outputs, visiting each
//! task's dependencies before the task itself; a task's dependencies are
//! visited cheapest-subtree first, so small branches finish (and release their
//! inputs) before large ones start. The rank is the post-order position. It
//! reads only the graph's structure, never key names.

use crate::csr::Csr;

/// Ranks every task: `priority[i]` is the position of task `i` in the run
/// order. `dependencies.row(i)` are the tasks `i` reads; `dependents` is its
/// transpose.
pub fn order(dependencies: &Csr, dependents: &Csr) -> Vec<u32> {
    let n = dependencies.len();
    // Size of each task's subtree (number of ancestors, counted with
    // multiplicity but capped), used to visit cheap branches first.
    let topo = topological(dependencies, dependents);
    let mut weight = vec![1u64; n];
    for &t in &topo {
        let w: u64 = dependencies.row(t).iter().map(|&d| weight[d as usize]).sum();
        weight[t as usize] = (1 + w).min(u64::MAX / 4);
    }
    let mut priority = vec![u32::MAX; n];
    let mut next = 0u32;
    // Sinks (no dependents) in the order tasks were added.
    let sinks: Vec<u32> = (0..n as u32).filter(|&t| dependents.row(t).is_empty()).collect();
    let mut stack: Vec<(u32, bool)> = Vec::new();
    let mut scratch: Vec<u32> = Vec::new();
    for &sink in &sinks {
        stack.push((sink, false));
        while let Some((t, expanded)) = stack.pop() {
            if priority[t as usize] != u32::MAX {
                continue;
            }
            if expanded {
                priority[t as usize] = next;
                next += 1;
                continue;
            }
            stack.push((t, true));
            scratch.clear();
            scratch.extend(dependencies.row(t).iter().copied().filter(|&d| priority[d as usize] == u32::MAX));
            // Push heaviest first so the lightest is visited first.
            scratch.sort_by_key(|&d| std::cmp::Reverse(weight[d as usize]));
            for &d in &scratch {
                stack.push((d, false));
            }
        }
    }
    priority
}

/// Tasks in an order where every task comes after its dependencies (Kahn).
/// Tasks on a cycle are left out; callers compare the length to detect one.
pub fn topological(dependencies: &Csr, dependents: &Csr) -> Vec<u32> {
    let n = dependencies.len();
    let mut remaining: Vec<u32> = (0..n as u32).map(|t| dependencies.row(t).len() as u32).collect();
    let mut out: Vec<u32> = (0..n as u32).filter(|&t| remaining[t as usize] == 0).collect();
    let mut i = 0;
    while i < out.len() {
        let t = out[i];
        for &d in dependents.row(t) {
            remaining[d as usize] -= 1;
            if remaining[d as usize] == 0 {
                out.push(d);
            }
        }
        i += 1;
    }
    out
}
