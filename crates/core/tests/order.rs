//! Behaviour of the static task order ([`blockwise_core::order::order`]).
//!
//! Every scenario draws its graph in ASCII (dependencies below, dependents
//! above, as Dask's `test_order.py` does) and is built through a small DSL of
//! named tasks. [`check`] then orders the graph under several id assignments
//! (as listed, reversed, sorted by name, sorted by mirrored names, shuffled),
//! so no assertion can hold only because of the order tasks were added in or
//! the names they carry. Assertions always name tasks by their drawn names.
//!
//! "Alive" results are the memory measure: a task's result is alive from the
//! moment it runs until its last dependent has run. Outputs (tasks without
//! dependents) are never counted, since whoever asked for them holds them.

use std::collections::HashMap;

use blockwise_core::csr::Csr;
use blockwise_core::order::{order, topological};
use proptest::prelude::*;

/// A graph of named tasks, in the order they were listed.
struct Spec {
    names: Vec<String>,
    deps: Vec<Vec<usize>>,
    index: HashMap<String, usize>,
}

/// Builds a [`Spec`] from `(name, dependencies)` pairs.
fn graph(tasks: &[(&str, &[&str])]) -> Spec {
    Spec::new(
        tasks
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect(),
    )
}

impl Spec {
    fn new(tasks: Vec<(String, Vec<String>)>) -> Spec {
        let index: HashMap<String, usize> = tasks.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
        assert_eq!(index.len(), tasks.len(), "task names must be distinct");
        let deps = tasks
            .iter()
            .map(|(n, ds)| {
                let mut row: Vec<usize> = ds
                    .iter()
                    .map(|d| *index.get(d).unwrap_or_else(|| panic!("{n} reads unknown {d}")))
                    .collect();
                row.sort_unstable();
                row.dedup();
                row
            })
            .collect();
        Spec {
            names: tasks.into_iter().map(|(n, _)| n).collect(),
            deps,
            index,
        }
    }

    fn len(&self) -> usize {
        self.names.len()
    }

    /// Orders the graph with task `i` (listing position) given id `ids[i]`.
    /// Each row of dependencies is kept in id order, so the order within rows
    /// changes with the ids too.
    fn order_with(&self, ids: &[u32], variant: &str) -> Ordered<'_> {
        let n = self.len();
        let mut listing_of = vec![0usize; n];
        for (i, &id) in ids.iter().enumerate() {
            listing_of[id as usize] = i;
        }
        let dependencies = Csr::from_rows((0..n).map(|id| {
            let mut row: Vec<u32> = self.deps[listing_of[id]].iter().map(|&d| ids[d]).collect();
            row.sort_unstable();
            row
        }));
        let dependents = dependencies.transpose();
        let by_id = order(&dependencies, &dependents);
        let rank: Vec<u32> = (0..n).map(|i| by_id[ids[i] as usize]).collect();
        let ordered = Ordered {
            spec: self,
            rank,
            variant: variant.to_string(),
        };
        ordered.assert_valid();
        ordered
    }

    /// The id assignments every scenario is checked under.
    fn variants(&self) -> Vec<(String, Vec<u32>)> {
        let n = self.len();
        let listed: Vec<u32> = (0..n as u32).collect();
        let reversed: Vec<u32> = (0..n as u32).rev().collect();
        let by_key = |key: &dyn Fn(&str) -> String| {
            let mut positions: Vec<usize> = (0..n).collect();
            positions.sort_by_key(|&i| key(&self.names[i]));
            let mut ids = vec![0u32; n];
            for (id, &i) in positions.iter().enumerate() {
                ids[i] = id as u32;
            }
            ids
        };
        let by_name = by_key(&|s| s.to_string());
        // Dask's fixture swaps "abcde" for "edcba"; this mirrors every letter.
        let by_mirrored_name = by_key(&|s| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_lowercase() {
                        (b'a' + b'z' - c as u8) as char
                    } else {
                        c
                    }
                })
                .collect()
        });
        let mut out = vec![
            ("as listed".to_string(), listed),
            ("reversed".to_string(), reversed),
            ("sorted by name".to_string(), by_name),
            ("sorted by mirrored name".to_string(), by_mirrored_name),
        ];
        for seed in 1..=4u64 {
            out.push((format!("shuffle {seed}"), shuffled(n, seed)));
        }
        out
    }
}

/// A permutation of `0..n` from a small deterministic generator.
fn shuffled(n: usize, seed: u64) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..n as u32).collect();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ids.swap(i, (state % (i as u64 + 1)) as usize);
    }
    ids
}

/// One ordering of a [`Spec`].
struct Ordered<'a> {
    spec: &'a Spec,
    rank: Vec<u32>,
    variant: String,
}

impl Ordered<'_> {
    /// The rank of the task named `name`.
    fn o(&self, name: &str) -> u32 {
        let i = *self
            .spec
            .index
            .get(name)
            .unwrap_or_else(|| panic!("no task named {name}"));
        self.rank[i]
    }

    /// Task names in run order.
    fn sequence(&self) -> Vec<&str> {
        let mut by_rank = vec![""; self.rank.len()];
        for (i, &r) in self.rank.iter().enumerate() {
            by_rank[r as usize] = &self.spec.names[i];
        }
        by_rank
    }

    /// Alive results after each step, running one task at a time in rank order.
    fn alive_over_time(&self) -> Vec<usize> {
        alive_over_time(&self.spec.deps, &self.rank)
    }

    /// The largest number of results alive at once.
    fn max_alive(&self) -> usize {
        self.alive_over_time().into_iter().max().unwrap_or(0)
    }

    fn assert_valid(&self) {
        let n = self.spec.len();
        let mut seen = vec![false; n];
        for &r in &self.rank {
            assert!(
                (r as usize) < n && !seen[r as usize],
                "{}: ranks are not a permutation",
                self.variant
            );
            seen[r as usize] = true;
        }
        for (t, ds) in self.spec.deps.iter().enumerate() {
            for &d in ds {
                assert!(
                    self.rank[d] < self.rank[t],
                    "{}: {} ranks after its dependent {}",
                    self.variant,
                    self.spec.names[d],
                    self.spec.names[t]
                );
            }
        }
    }
}

/// Alive results after each step of running tasks in `rank` order; `deps[t]`
/// lists what task `t` reads.
fn alive_over_time(deps: &[Vec<usize>], rank: &[u32]) -> Vec<usize> {
    let n = deps.len();
    let mut waiting = vec![0usize; n];
    for ds in deps {
        for &d in ds {
            waiting[d] += 1;
        }
    }
    let mut by_rank = vec![0usize; n];
    for (t, &r) in rank.iter().enumerate() {
        by_rank[r as usize] = t;
    }
    let mut alive = 0usize;
    let mut out = Vec::with_capacity(n);
    for t in by_rank {
        if waiting[t] > 0 {
            alive += 1;
        }
        for &d in &deps[t] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                alive -= 1;
            }
        }
        out.push(alive);
    }
    out
}

/// Runs `assertions` on the order of `spec` under every id assignment. The
/// variant and the run order are printed first, so a failure shows both.
fn check(spec: &Spec, assertions: impl Fn(&Ordered<'_>)) {
    for (variant, ids) in spec.variants() {
        let ordered = spec.order_with(&ids, &variant);
        eprintln!("variant {variant}: {:?}", ordered.sequence());
        assertions(&ordered);
    }
}

/// Owned-name graph builder for generated shapes.
#[derive(Default)]
struct Builder {
    tasks: Vec<(String, Vec<String>)>,
}

impl Builder {
    fn task(&mut self, name: impl Into<String>, deps: &[String]) -> String {
        let name = name.into();
        self.tasks.push((name.clone(), deps.to_vec()));
        name
    }

    fn build(self) -> Spec {
        Spec::new(self.tasks)
    }
}

// ---------------------------------------------------------------------------
// 1. Finish a branch before starting new roots.
// ---------------------------------------------------------------------------

/// Independent chains run one after the other, the longest first (its
/// critical path is the longest, and nothing favours the others).
///
/// ```text
///   a3
///   |
///   a2    b2
///   |     |
///   a1    b1    c1
///   |     |     |
///   a0    b0    c0
/// ```
#[test]
fn independent_chains_run_one_at_a_time_deepest_first() {
    let g = graph(&[
        ("c0", &[]),
        ("c1", &["c0"]),
        ("b0", &[]),
        ("b1", &["b0"]),
        ("b2", &["b1"]),
        ("a0", &[]),
        ("a1", &["a0"]),
        ("a2", &["a1"]),
        ("a3", &["a2"]),
    ]);
    check(&g, |o| {
        assert_eq!(o.sequence(), ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "c0", "c1"]);
        assert_eq!(o.max_alive(), 1);
    });
}

/// Once `c1` is computed, its other dependent `d1` runs before the order
/// goes on to load the new root `b2`: the branch that can finish, finishes.
///
/// ```text
///      a1
///      |
///      a2
///      |
///      a3    d1
///     /  \  /
///   b1    c1
///   |     |
///   b2    c2
///         |
///         c3
/// ```
#[test]
fn a_runnable_dependent_runs_before_new_roots() {
    let g = graph(&[
        ("a1", &["a2"]),
        ("a2", &["a3"]),
        ("a3", &["b1", "c1"]),
        ("b1", &["b2"]),
        ("c1", &["c2"]),
        ("c2", &["c3"]),
        ("d1", &["c1"]),
        ("c3", &[]),
        ("b2", &[]),
    ]);
    check(&g, |o| {
        assert!(o.o("d1") < o.o("b2"));
        assert!(o.o("d1") < o.o("b1"));
    });
}

/// The heavier branch `c` runs first, so `c1` is held while `b1` computes
/// (one short step) rather than `b1` being held while the longer `c` chain
/// computes; `d2` and `d3` release `d1` back to back.
///
/// ```text
///          a1
///          |
///     e2   a2  d2  d3
///     |    |    \  /
///     e1   a3    d1
///      \  /  \  /
///       b1    c1
///       |     |
///       b2    c2
///             |
///             c3
/// ```
#[test]
fn heavier_dependency_first_and_siblings_together() {
    let g = graph(&[
        ("a1", &["a2"]),
        ("a2", &["a3"]),
        ("a3", &["b1", "c1"]),
        ("b1", &["b2"]),
        ("b2", &[]),
        ("c1", &["c2"]),
        ("c2", &["c3"]),
        ("c3", &[]),
        ("d1", &["c1"]),
        ("d2", &["d1"]),
        ("d3", &["d1"]),
        ("e1", &["b1"]),
        ("e2", &["e1"]),
    ]);
    check(&g, |o| {
        assert!(o.o("c1") < o.o("b1"));
        assert_eq!(o.o("d2").abs_diff(o.o("d3")), 1);
        assert!(o.max_alive() <= 3);
    });
}

/// Whichever root starts, its branch finishes before the other root loads.
///
/// ```text
///   b0    b1  b2
///   |      \  /
///   a0      a1
/// ```
#[test]
fn a_started_branch_finishes_before_the_next_root() {
    let g = graph(&[
        ("a0", &[]),
        ("a1", &[]),
        ("b0", &["a0"]),
        ("b1", &["a1"]),
        ("b2", &["a1"]),
    ]);
    check(&g, |o| {
        let a0_first = o.o("a0") < o.o("a1");
        if a0_first {
            assert!(o.o("b0") < o.o("a1"));
        } else {
            assert!(o.o("b1") < o.o("a0") && o.o("b2") < o.o("a0"));
        }
    });
}

/// After the shared root `c`, the leaves `d` and `e` run before the branch
/// `b -> a'`: they cost nothing to hold (they are outputs) and once they
/// are done `b` releases `c`, so only one result is ever alive. (Dask runs
/// `b` first here, favouring the longest path for parallelism; this order
/// favours memory, at the cost of starting `b` two short tasks later.)
///
/// ```text
///        a'
///        |
///     d  b  e
///      \ | /
///        c
/// ```
#[test]
fn leaves_that_release_a_shared_input_run_before_the_long_branch() {
    let g = graph(&[("c", &[]), ("d", &["c"]), ("e", &["c"]), ("b", &["c"]), ("a'", &["b"])]);
    check(&g, |o| {
        assert!(o.o("d") < o.o("b"));
        assert!(o.o("e") < o.o("b"));
        assert_eq!(o.max_alive(), 1);
    });
}

// ---------------------------------------------------------------------------
// 2. Reductions.
// ---------------------------------------------------------------------------

/// A tree reduction: `roots` inputs, each incremented, summed `fan_in` at a
/// time until one result remains.
fn tree_reduction(roots: usize, fan_in: usize) -> (Spec, usize) {
    let mut b = Builder::default();
    let mut level: Vec<String> = (0..roots)
        .map(|i| {
            let x = b.task(format!("x{i}"), &[]);
            b.task(format!("inc{i}"), &[x])
        })
        .collect();
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        level = level
            .chunks(fan_in)
            .enumerate()
            .map(|(j, group)| b.task(format!("sum{depth}_{j}"), group))
            .collect();
    }
    (b.build(), depth)
}

/// A tree reduction computes each partial sum as soon as its inputs exist,
/// so at most one unfinished group per level is alive, never every input.
///
/// ```text
///                     sum3_0
///              /        |        \
///          sum2_0     sum2_1  ... (fan-in 4)
///        /  |  |  \
///   sum1_0 ...
///   / | | \
///  inc0 inc1 inc2 inc3  ...  inc63
///   |    |    |    |          |
///   x0   x1   x2   x3   ...  x63
/// ```
#[test]
fn tree_reduction_reduces_as_soon_as_inputs_are_done() {
    let (fan_in, roots) = (4, 64);
    let (g, depth) = tree_reduction(roots, fan_in);
    // One group in progress per level: up to fan_in - 1 finished partials
    // waiting at each level, plus the input just loaded. No order does
    // better on a complete tree.
    let bound = depth * (fan_in - 1) + 1;
    check(&g, |o| {
        assert!(o.max_alive() <= bound, "{} alive, bound {bound}", o.max_alive());
        // The first partial sum runs right after its four inputs.
        let first_partial = (0..roots / fan_in).map(|j| o.o(&format!("sum1_{j}"))).min().unwrap();
        assert_eq!(first_partial, 2 * fan_in as u32);
    });
    // Loading every input first is what this avoids.
    let all_roots_first: Vec<u32> = {
        let mut ranks = vec![0u32; g.len()];
        let mut next = 0;
        for pass in [true, false] {
            for (t, ds) in g.deps.iter().enumerate() {
                if ds.is_empty() == pass {
                    ranks[t] = next;
                    next += 1;
                }
            }
        }
        ranks
    };
    assert!(alive_over_time(&g.deps, &all_roots_first).into_iter().max().unwrap() >= roots);
}

/// Two reductions of the same mapped blocks (a sum and a max, as in
/// `x.sum()` and `x.max()` computed together): the partials of both run
/// while their blocks are in memory, so blocks are released group by group.
///
/// ```text
///        sum                 max
///      /  |  \             /  |  \
///   s0   s1  ...         m0   m1  ...
///   /|\                  /|\
///  y0 y1 y2 ... (each y feeds one s and one m)
///  |  |  |
///  x0 x1 x2 ...
/// ```
#[test]
fn stacked_reductions_release_blocks_group_by_group() {
    let (groups, fan_in) = (8, 4);
    let mut b = Builder::default();
    let mut sums = Vec::new();
    let mut maxes = Vec::new();
    for j in 0..groups {
        let ys: Vec<String> = (0..fan_in)
            .map(|i| {
                let x = b.task(format!("x{j}_{i}"), &[]);
                b.task(format!("y{j}_{i}"), &[x])
            })
            .collect();
        sums.push(b.task(format!("s{j}"), &ys));
        maxes.push(b.task(format!("m{j}"), &ys));
    }
    b.task("sum", &sums);
    b.task("max", &maxes);
    let g = b.build();
    check(&g, |o| {
        // One group's blocks plus the partials of both reductions.
        assert!(o.max_alive() <= fan_in + 2 * groups, "{}", o.max_alive());
        // No block of another group loads between a group's two partials.
        for j in 0..groups {
            let (s, m) = (o.o(&format!("s{j}")), o.o(&format!("m{j}")));
            let (first, last) = (s.min(m), s.max(m));
            for k in 0..groups {
                for i in 0..fan_in {
                    let x = o.o(&format!("x{k}_{i}"));
                    assert!(x < first || x > last, "x{k}_{i} loads between s{j} and m{j}");
                }
            }
        }
    });
}

/// `b0` runs right after the shared root, and each `b` just before the
/// accumulator that needs it.
///
/// ```text
///                a3
///               /|
///             a2 |
///            /|  |
///          a1 |  |
///         /|  |  |
///       a0 |  |  |
///       |  |  |  |
///       b0 b1 b2 b3
///         \ \ / /
///            c
/// ```
#[test]
fn base_of_an_accumulation_runs_first() {
    let g = graph(&[
        ("a0", &["b0"]),
        ("a1", &["a0", "b1"]),
        ("a2", &["a1", "b2"]),
        ("a3", &["a2", "b3"]),
        ("b0", &["c"]),
        ("b1", &["c"]),
        ("b2", &["c"]),
        ("b3", &["c"]),
        ("c", &[]),
    ]);
    check(&g, |o| {
        assert_eq!(o.o("c"), 0);
        assert_eq!(o.o("b0"), 1);
        assert!(o.o("b1") <= 3);
        assert_eq!(o.sequence(), ["c", "b0", "a0", "b1", "a1", "b2", "a2", "b3", "a3"]);
    });
}

/// Dependents of a shared input wait until their accumulator needs them,
/// rather than all running as soon as the input exists.
///
/// ```text
///              d2  ...           (up to d9: d_i reads d_{i-1}, b_i, c_i)
///            / |  \
///          d1  b2  c2
///        / | \
///      d0  b1  c1                (b_i reads b0 and c_i reads c0, i >= 1)
///    / | \
///  a0  b0  c0
/// ```
#[test]
fn dependents_of_a_shared_input_do_not_all_run_early() {
    let depth = 10;
    let mut tasks: Vec<(String, Vec<String>)> = vec![
        ("a0".into(), vec![]),
        ("b0".into(), vec![]),
        ("c0".into(), vec![]),
        ("d0".into(), vec!["a0".into(), "b0".into(), "c0".into()]),
    ];
    for i in 1..depth {
        tasks.push((format!("b{i}"), vec!["b0".into()]));
        tasks.push((format!("c{i}"), vec!["c0".into()]));
        tasks.push((
            format!("d{i}"),
            vec![format!("d{}", i - 1), format!("b{i}"), format!("c{i}")],
        ));
    }
    let g = Spec::new(tasks);
    check(&g, |o| {
        let ds: Vec<u32> = (0..depth).map(|i| o.o(&format!("d{i}"))).collect();
        assert_eq!(ds, (0..depth as u32).map(|i| 3 + 3 * i).collect::<Vec<_>>());
    });
}

/// The heavier branches of a wide reduction run first and the thinnest one
/// last, right before the reduction.
///
/// ```text
///                          z
///       ___________________|___________________
///      /        |      |          |            \
///     p2        q2     r1        s3             t3
///     |         |      |        /  \           /  \
///     p1        q1     |      s2    u2        t2   v2
///      \        |      |      |     |         |    |
///       \       |      |      s1    u1        t1   v1
///        \______|______|______|_____|_________|____|
///                             a
/// ```
#[test]
fn heavier_branches_first_thinnest_last() {
    let g = graph(&[
        ("a", &[]),
        ("p1", &["a"]),
        ("p2", &["p1"]),
        ("q1", &["a"]),
        ("q2", &["q1"]),
        ("r1", &["a"]),
        ("s1", &["a"]),
        ("s2", &["s1"]),
        ("u1", &["a"]),
        ("u2", &["u1"]),
        ("s3", &["s2", "u2"]),
        ("t1", &["a"]),
        ("t2", &["t1"]),
        ("v1", &["a"]),
        ("v2", &["v1"]),
        ("t3", &["t2", "v2"]),
        ("z", &["p2", "q2", "r1", "s3", "t3"]),
    ]);
    check(&g, |o| {
        let mut heavy: Vec<u32> = ["s1", "s2", "u1", "u2", "s3", "t1", "t2", "v1", "v2", "t3"]
            .iter()
            .map(|n| o.o(n))
            .collect();
        heavy.sort_unstable();
        assert_eq!(heavy, (1..=10).collect::<Vec<u32>>());
        assert_eq!(o.o("r1") + 1, o.o("z"));
    });
}

// ---------------------------------------------------------------------------
// 3. Shared data: sweeps, overlaps, transposes.
// ---------------------------------------------------------------------------

/// Each pair of `b` shares an `a`; the order finishes the left half before
/// loading anything of the right half, even though only the final `store`
/// joins them.
///
/// ```text
///                    store
///            /   /          \   \
///          s00  s10        s01  s11
///           |    |          |    |
///          b00  b10        b01  b11
///          / \  / \        / \  / \
///         a0  a1  a2     a3  a4  a5
/// ```
#[test]
fn finish_the_half_that_shares_data_first() {
    let g = graph(&[
        ("a0", &[]),
        ("a1", &[]),
        ("a2", &[]),
        ("b00", &["a0", "a1"]),
        ("b10", &["a1", "a2"]),
        ("s00", &["b00"]),
        ("s10", &["b10"]),
        ("a3", &[]),
        ("a4", &[]),
        ("a5", &[]),
        ("b01", &["a3", "a4"]),
        ("b11", &["a4", "a5"]),
        ("s01", &["b01"]),
        ("s11", &["b11"]),
        ("store", &["s00", "s10", "s01", "s11"]),
    ]);
    check(&g, |o| {
        let left = ["a0", "a1", "a2", "b00", "b10", "s00", "s10"].map(|n| o.o(n));
        let right = ["a3", "a4", "a5", "b01", "b11", "s01", "s11"].map(|n| o.o(n));
        let (left_first, right_first) = (
            left.iter().max() < right.iter().min(),
            right.iter().max() < left.iter().min(),
        );
        assert!(left_first || right_first);
        // Two finished s of the first half wait for `store` while the second
        // half holds one s, its shared input and the next input.
        assert!(o.max_alive() <= 5);
    });
}

/// A one-dimensional stencil: every `a` reads one or two neighbouring `b`.
/// The order sweeps from one end, holding at most two `b` at a time.
///
/// ```text
///   a1  a2  a3  a4  a5  a6  a7  a8  a9
///    \  |  /  \ |  /  \ |  /  \ |  /
///       b1      b2      b3      b4
/// ```
#[test]
fn a_stencil_is_swept_from_one_end() {
    let g = graph(&[
        ("b1", &[]),
        ("b2", &[]),
        ("b3", &[]),
        ("b4", &[]),
        ("a1", &["b1"]),
        ("a2", &["b1"]),
        ("a3", &["b1", "b2"]),
        ("a4", &["b2"]),
        ("a5", &["b2", "b3"]),
        ("a6", &["b3"]),
        ("a7", &["b3", "b4"]),
        ("a8", &["b4"]),
        ("a9", &["b4"]),
    ]);
    check(&g, |o| {
        assert!(o.max_alive() <= 2);
        // The first half of the order covers about half of the row.
        let half = g.len() as u32 / 2;
        let a_early = (1..=9).filter(|i| o.o(&format!("a{i}")) < half).count();
        let b_early = (1..=4).filter(|i| o.o(&format!("b{i}")) < half).count();
        assert!((4..=6).contains(&a_early), "{a_early}");
        assert!((2..=3).contains(&b_early), "{b_early}");
    });
}

/// Overlapping blocks (Dask's `map_overlap`): finish one edge before loading
/// the other edge.
///
/// ```text
///   b1      b3      b5
///    |\    / | \  / |
///   c1  c2  c3  c4  c5
///    |/  | \ | / | \|
///   d1  d2  d3  d4  d5
///    |       |      |
///   e1      e3      e5
/// ```
#[test]
fn overlapping_blocks_finish_one_edge_first() {
    let g = graph(&[
        ("e1", &[]),
        ("d1", &["e1"]),
        ("c1", &["d1"]),
        ("b1", &["c1", "c2"]),
        ("d2", &[]),
        ("c2", &["d1", "d2", "d3"]),
        ("e3", &[]),
        ("d3", &["e3"]),
        ("c3", &["d3"]),
        ("b3", &["c2", "c3", "c4"]),
        ("d4", &[]),
        ("c4", &["d3", "d4", "d5"]),
        ("e5", &[]),
        ("d5", &["e5"]),
        ("c5", &["d5"]),
        ("b5", &["c4", "c5"]),
    ]);
    check(&g, |o| {
        assert!(o.o("b1") < o.o("e5") || o.o("b5") < o.o("e1"));
    });
}

/// A sliding window of three inputs per output, listed in scrambled order:
/// only the structure says which inputs are neighbours. Starting at an end
/// and sliding keeps three inputs alive; inputs and outputs alternate.
///
/// ```text
///   w0   w1     w2      w3     ...     w9
///   |    | \    | \ \    | \ \          | \ \
///   i0   i0 i1  i0 i1 i2  i1 i2 i3  ...  i7 i8 i9
/// ```
/// (Drawn by position: the output at position `k` reads the inputs at
/// positions `k-2..=k`. The tasks themselves are named `in*` and `out*` in
/// an order unrelated to their positions.)
#[test]
fn structure_not_names_decides_neighbours() {
    // Position k of the window sequence is input "in{perm[k]}".
    let perm = [2, 0, 7, 4, 9, 6, 5, 1, 8, 3];
    let out_names = [5, 7, 9, 1, 2, 4, 3, 8, 6, 0];
    let mut tasks: Vec<(String, Vec<String>)> = (0..10).map(|i| (format!("in{i}"), vec![])).collect();
    for (k, out) in out_names.iter().enumerate() {
        let reads = perm[k.saturating_sub(2)..=k].iter().map(|j| format!("in{j}")).collect();
        tasks.push((format!("out{out}"), reads));
    }
    let g = Spec::new(tasks);
    check(&g, |o| {
        assert_eq!(o.max_alive(), 3);
        let mut inputs: Vec<u32> = (0..10).map(|i| o.o(&format!("in{i}"))).collect();
        inputs.sort_unstable();
        let mut outputs: Vec<u32> = (0..10).map(|i| o.o(&format!("out{i}"))).collect();
        outputs.sort_unstable();
        // Starting at the narrow end: in, out, in, out, ...; starting at the
        // wide end: three ins, then out, in, out, ... and two outs to finish.
        let narrow = (inputs == (0..10).map(|i| 2 * i).collect::<Vec<u32>>())
            && (outputs == (0..10).map(|i| 2 * i + 1).collect::<Vec<u32>>());
        let wide = inputs == [0, 1, 2, 4, 6, 8, 10, 12, 14, 16] && outputs == [3, 5, 7, 9, 11, 13, 15, 17, 18, 19];
        assert!(narrow || wide, "inputs {inputs:?} outputs {outputs:?}");
    });
}

/// A two-dimensional `k` x `k` stencil of blocks, its outputs summed or not.
fn grid_stencil(k: usize, summed: bool) -> Spec {
    let mut b = Builder::default();
    for i in 0..k {
        for j in 0..k {
            let x = b.task(format!("x{i}_{j}"), &[]);
            b.task(format!("y{i}_{j}"), &[x]);
        }
    }
    let mut outputs = Vec::new();
    for i in 0..k {
        for j in 0..k {
            let mut reads = vec![format!("y{i}_{j}")];
            for (di, dj) in [(-1i64, 0i64), (1, 0), (0, -1), (0, 1)] {
                let (a, c) = (i as i64 + di, j as i64 + dj);
                if (0..k as i64).contains(&a) && (0..k as i64).contains(&c) {
                    reads.push(format!("y{a}_{c}"));
                }
            }
            outputs.push(b.task(format!("o{i}_{j}"), &reads));
        }
    }
    if summed {
        b.task("total", &outputs);
    }
    b.build()
}

/// A two-dimensional stencil: every output block reads its block and its
/// four neighbours, each block incremented before it is read. The order
/// sweeps the grid as a front from an edge, so about two rows of blocks are
/// alive at a time rather than the whole grid (the first-come order of a
/// plain depth-first walk holds most of the grid).
///
/// ```text
///   o00  o01  o02 ...      o_ij reads y_ij and the y of its four neighbours
///    |  X  |  X  |
///   y00  y01  y02 ...      y_ij = inc(x_ij)
///    |    |    |
///   x00  x01  x02 ...
///   (rows 1..5 below alike)
/// ```
#[test]
fn a_grid_stencil_is_swept_as_a_front() {
    let k = 6;
    let g = grid_stencil(k, false);
    check(&g, |o| {
        assert!(o.max_alive() <= 2 * k + 2, "{}", o.max_alive());
    });
}

/// The same stencil summed into one result, whose inputs come in an order
/// unrelated to the grid (ids are shuffled): the order still sweeps the
/// grid. Every output waits for the sum (36 of them); beyond those only a
/// front of blocks is alive, two rows at most (the sweep may start inside
/// the grid, where the heaviest blocks are, and grow both ways).
///
/// ```text
///                 total
///          _______/ | \_______
///         o00  o01  ...  o55
///         (the stencil above)
/// ```
#[test]
fn a_reduction_over_a_grid_stencil_still_sweeps() {
    let k = 6;
    let g = grid_stencil(k, true);
    check(&g, |o| {
        assert!(o.max_alive() <= k * k + 2 * k, "{}", o.max_alive());
    });
}

/// `y = x + x.T` over a 4x4 grid of blocks, then summed: block (i, j) is
/// read by y(i, j) and y(j, i), so the two mirrored outputs run together and
/// release both blocks.
///
/// ```text
///        total
///      /   |   \
///   y00  y01  y10 ...      y_ij = x_ij + x_ji
///    |    | \/ |
///   x00  x01  x10 ...
/// ```
#[test]
fn x_plus_x_transpose_pairs_mirrored_blocks() {
    let k = 4;
    let mut b = Builder::default();
    for i in 0..k {
        for j in 0..k {
            b.task(format!("x{i}{j}"), &[]);
        }
    }
    let mut ys = Vec::new();
    for i in 0..k {
        for j in 0..k {
            ys.push(b.task(format!("y{i}{j}"), &[format!("x{i}{j}"), format!("x{j}{i}")]));
        }
    }
    b.task("total", &ys);
    let g = b.build();
    check(&g, |o| {
        for i in 0..k {
            for j in 0..k {
                let (a, c) = (o.o(&format!("y{i}{j}")), o.o(&format!("y{j}{i}")));
                assert!(a.abs_diff(c) <= 1, "y{i}{j} at {a}, y{j}{i} at {c}");
                // Each block is released by the time its mirrored pair is done.
                let x = o.o(&format!("x{i}{j}"));
                assert!(a.max(c) - x <= 3);
            }
        }
        // The outputs y are all alive until `total`: k*k of them plus the pair in flight.
        assert!(o.max_alive() <= k * k + 2);
    });
}

/// A map-reduce with a shuffle: every input is split into parts, and each
/// reducer reads one part of every input (Dask's `flux` reduction shape).
/// The inputs load first, then each reducer's parts are made and reduced
/// at once, one reducer at a time.
///
/// ```text
///   d00   d01   d10   d11
///    |     |     |     |
///   c00   c01   c10   c11        c_ij reads b_ij0, b_ij1, b_ij2
///    |||   |||   |||   |||
///   b..   b..   b..   b..        b_ijk reads a_k
///     \     \   /     /
///       a0    a1    a2
/// ```
#[test]
fn shuffle_makes_one_reducer_at_a_time() {
    let mut b = Builder::default();
    for k in 0..3 {
        b.task(format!("a{k}"), &[]);
    }
    for i in 0..2 {
        for j in 0..2 {
            let parts: Vec<String> = (0..3)
                .map(|k| b.task(format!("b{i}{j}{k}"), &[format!("a{k}")]))
                .collect();
            let c = b.task(format!("c{i}{j}"), &parts);
            b.task(format!("d{i}{j}"), &[c]);
        }
    }
    let g = b.build();
    check(&g, |o| {
        let mut finals: Vec<u32> = ["d00", "d01", "d10", "d11"].iter().map(|n| o.o(n)).collect();
        finals.sort_unstable();
        for w in finals.windows(2) {
            assert_eq!(w[1] - w[0], 5, "{finals:?}");
        }
        assert!(o.max_alive() <= 3 + 3);
    });
}

/// The chunk `c1` goes before the next pair of inputs `a1`, `b1`, since it
/// releases `a0` and `b0`, even though `a1` and `b1` share an ancestor with
/// them and could run at any time.
///
/// ```text
///                 c2
///                / \ \
///               /   \ \
///             c1     \ \
///           / | \     \ \
///         c0  a0 b0   a1 b1
///              \ \   / /
///               \ \ / /
///                 ab
/// ```
#[test]
fn shared_ancestor_does_not_pull_inputs_early() {
    let g = graph(&[
        ("ab", &[]),
        ("a0", &["ab"]),
        ("b0", &["ab"]),
        ("c0", &[]),
        ("c1", &["c0", "a0", "b0"]),
        ("a1", &["ab"]),
        ("b1", &["ab"]),
        ("c2", &["c1", "a1", "b1"]),
    ]);
    check(&g, |o| {
        assert!(o.o("a0") < o.o("a1"));
        assert!(o.o("b0") < o.o("b1"));
        assert!(o.o("c1") < o.o("a1"));
        assert!(o.o("c1") < o.o("b1"));
    });
}

/// Each column is finished, output included, before the next column loads
/// its root, and the order is exactly bottom-up, left to right.
///
/// ```text
///             c1
///             |
///         b1  c2
///         |  /|
///     a1  b2  c3
///     |  /|
///     a2  b3
///     |
///     a3
/// ```
#[test]
fn local_parents_of_a_reduction_run_first() {
    let g = graph(&[
        ("a3", &[]),
        ("a2", &["a3"]),
        ("a1", &["a2"]),
        ("b3", &[]),
        ("b2", &["b3", "a2"]),
        ("b1", &["b2"]),
        ("c3", &[]),
        ("c2", &["c3", "b2"]),
        ("c1", &["c2"]),
    ]);
    check(&g, |o| {
        assert_eq!(o.sequence(), ["a3", "a2", "a1", "b3", "b2", "b1", "c3", "c2", "c1"]);
    });
}

/// Pairs of inputs feed one output each: the pairs stay together.
///
/// ```text
///     b0       b1              b0       b1
///    /  \     /  \            /  \     /  \
///   a0   a1  a2   a3         a0   a2  a1   a3
/// ```
#[test]
fn inputs_of_one_output_stay_together() {
    for (left, right) in [(["a0", "a1"], ["a2", "a3"]), (["a0", "a2"], ["a1", "a3"])] {
        let g = graph(&[
            ("a0", &[]),
            ("a1", &[]),
            ("a2", &[]),
            ("a3", &[]),
            ("b0", &left),
            ("b1", &right),
        ]);
        check(&g, |o| {
            assert_eq!(o.o(left[0]).abs_diff(o.o(left[1])), 1);
            assert_eq!(o.o(right[0]).abs_diff(o.o(right[1])), 1);
            assert!(o.max_alive() <= 2);
        });
    }
}

/// A mean of an anomaly (xarray's `(x - x.mean()).mean()`): the mean `m`
/// needs every input, so all inputs are held until it exists and are then
/// read a second time; the second pass releases them group by group.
///
/// ```text
///            total
///           /     \
///         r0       r1              r_j sums a group of d
///        /  \     /  \
///      d0   d1  d2   d3            d_i reads x_i and m
///       :    :   :    :
///       :    m   :    :            m reads the partial sums p
///       :   / \  :    :
///       :  p0  p1:    :            p_j sums a group of x
///       :   ...  :    :
///      x0   x1  x2   x3            (the test: 16 inputs, groups of 4)
/// ```
#[test]
fn second_pass_over_inputs_stays_small() {
    let (n, fan_in) = (16, 4);
    let mut b = Builder::default();
    let xs: Vec<String> = (0..n).map(|i| b.task(format!("x{i}"), &[])).collect();
    let partials: Vec<String> = xs
        .chunks(fan_in)
        .enumerate()
        .map(|(j, grp)| b.task(format!("p{j}"), grp))
        .collect();
    let m = b.task("m", &partials);
    let ds: Vec<String> = (0..n)
        .map(|i| b.task(format!("d{i}"), &[xs[i].clone(), m.clone()]))
        .collect();
    let rs: Vec<String> = ds
        .chunks(fan_in)
        .enumerate()
        .map(|(j, grp)| b.task(format!("r{j}"), grp))
        .collect();
    b.task("total", &rs);
    let g = b.build();
    check(&g, |o| {
        // The inputs must all be held until m exists (n), plus what is in flight.
        assert!(o.max_alive() <= n + fan_in / 2 + 2, "{}", o.max_alive());
        // Each r follows its d's closely.
        for j in 0..n / fan_in {
            let r = o.o(&format!("r{j}"));
            for i in j * fan_in..(j + 1) * fan_in {
                assert!(r - o.o(&format!("d{i}")) <= fan_in as u32);
            }
        }
    });
}

/// Of `e` and `d` it is not clear which should go first, but `b` should
/// run before `c`: `b` is the deeper base of `a`.
///
/// ```text
///         a
///       / | \
///      b  c |
///     / \ | /
///    e    d
/// ```
#[test]
fn deeper_base_before_shallow_sibling() {
    let g = graph(&[
        ("a", &["b", "c", "d"]),
        ("b", &["d", "e"]),
        ("c", &["d"]),
        ("d", &[]),
        ("e", &[]),
    ]);
    check(&g, |o| assert!(o.o("b") < o.o("c")));
}

/// Small sections sharing inputs: two results at most are alive at once,
/// the least any order can do (`dd` runs before `bb`, so `bb` releases `cc`).
///
/// ```text
///           aa
///          / |
///     b   d  bb dd
///    / \ /|  | /
///   a   c e  cc
/// ```
#[test]
fn small_sections_keep_memory_at_the_optimum() {
    let g = graph(&[
        ("a", &[]),
        ("c", &[]),
        ("e", &[]),
        ("cc", &[]),
        ("b", &["a", "c"]),
        ("d", &["c", "e"]),
        ("bb", &["cc"]),
        ("aa", &["d", "bb"]),
        ("dd", &["cc"]),
    ]);
    check(&g, |o| {
        assert_eq!(o.max_alive(), 2);
        assert!(o.o("dd") < o.o("bb"));
    });
}

/// Overlapping windows of inputs: whichever end starts, no more than three
/// inputs are alive at once.
///
/// ```text
///     a1  b1  c1  d1  e1
///     /|\ /|\ /|\ /|  /
///    / | X | X | X | /
///   /  |/ \|/ \|/ \|/
/// a0  b0  c0  d0  e0
/// ```
#[test]
fn overlapping_windows_hold_three_inputs() {
    let g = graph(&[
        ("a0", &[]),
        ("b0", &[]),
        ("c0", &[]),
        ("d0", &[]),
        ("e0", &[]),
        ("a1", &["a0", "b0", "c0"]),
        ("b1", &["b0", "c0", "d0"]),
        ("c1", &["c0", "d0", "e0"]),
        ("d1", &["d0", "e0"]),
        ("e1", &["e0"]),
    ]);
    check(&g, |o| assert!(o.max_alive() <= 3, "{}", o.max_alive()));
}

/// Cumulative sums along a chunked axis, two of them, then a product per
/// chunk (the shape of `y = (x * x).cumsum(); w = y * x.cumsum()`). The
/// inputs load in axis order, each output completes as soon as its sums
/// exist, and memory stays flat however long the axis is.
///
/// ```text
///   w0      w1      w2    ...       w_i reads c_i and q_i
///   | \     | \     | \
///   |  q0 --|--q1 --|--q2 ...        q_i = q_{i-1} + p_i
///   |  |    |  |    |  |
///   |  p0   |  p1   |  p2            p_i = x_i * x_i
///   c0 -|-- c1 -|-- c2 ...           c_i = c_{i-1} + x_i
///    \ |     \ |     \ |
///     x0      x1      x2 ...
/// ```
#[test]
fn cumulative_sums_load_inputs_in_axis_order() {
    let n = 12;
    let mut b = Builder::default();
    let mut previous: Option<(String, String)> = None;
    for i in 0..n {
        let x = b.task(format!("x{i}"), &[]);
        let p = b.task(format!("p{i}"), std::slice::from_ref(&x));
        let (c, q) = match &previous {
            None => (b.task(format!("c{i}"), &[x]), b.task(format!("q{i}"), &[p])),
            Some((c0, q0)) => (
                b.task(format!("c{i}"), &[c0.clone(), x]),
                b.task(format!("q{i}"), &[q0.clone(), p]),
            ),
        };
        b.task(format!("w{i}"), &[c.clone(), q.clone()]);
        previous = Some((c, q));
    }
    let g = b.build();
    check(&g, |o| {
        let xs: Vec<u32> = (0..n).map(|i| o.o(&format!("x{i}"))).collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "inputs out of order: {xs:?}");
        for i in 0..n {
            // w_i follows the sums it needs within the next few steps.
            let ready = o.o(&format!("c{i}")).max(o.o(&format!("q{i}")));
            assert!(o.o(&format!("w{i}")) <= ready + 2);
        }
        assert!(o.max_alive() <= 4, "{}", o.max_alive());
    });
}

/// A shared input `m` (say a mean) is read twice by every chunk. Each chunk
/// runs its whole chain before the next chunk loads, so at most the shared
/// input plus one chunk are alive, and `m`'s readers are evenly spaced.
///
/// ```text
///   s0      s1      s2    ...
///   |       |       |
///   e0      e1      e2          e_i reads d_i and m
///   | \     | \     | \
///   d0 |    d1 |    d2 |        d_i reads a_i and m
///   |\ |    |\ |    |\ |
///   a0 m    a1 m    a2 m  ...   (one m, shared)
/// ```
#[test]
fn chunks_sharing_one_input_run_one_by_one() {
    let n = 8;
    let mut b = Builder::default();
    let m = b.task("m", &[]);
    for i in 0..n {
        let a = b.task(format!("a{i}"), &[]);
        let d = b.task(format!("d{i}"), &[a, m.clone()]);
        let e = b.task(format!("e{i}"), &[d, m.clone()]);
        b.task(format!("s{i}"), &[e]);
    }
    let g = b.build();
    check(&g, |o| {
        assert!(o.max_alive() <= 2, "{}", o.max_alive());
        let mut ds: Vec<u32> = (0..n).map(|i| o.o(&format!("d{i}"))).collect();
        ds.sort_unstable();
        let step = ds[1] - ds[0];
        assert!(ds.windows(2).all(|w| w[1] - w[0] == step), "{ds:?}");
    });
}

/// Blocks that all read the same few shared inputs, summed per row: each
/// row's blocks run back to back, so a row sum never waits on blocks of
/// other rows.
///
/// ```text
///      row0          row1        ...       row3
///    / |  |  \     / |  |  \             / |  |  \
///  b00 b01 b02 b03 b10 ...              b30 ...  b33
///    \___\___\___\__|___/___/___ ... __/___/
///                 k0   k1   k2          (every block reads every k)
/// ```
#[test]
fn blocks_of_one_reduction_run_back_to_back() {
    let (rows, shared) = (4, 3);
    let mut b = Builder::default();
    let ks: Vec<String> = (0..shared).map(|i| b.task(format!("k{i}"), &[])).collect();
    for i in 0..rows {
        let blocks: Vec<String> = (0..rows).map(|j| b.task(format!("b{i}{j}"), &ks)).collect();
        b.task(format!("row{i}"), &blocks);
    }
    let g = b.build();
    check(&g, |o| {
        for i in 0..rows {
            let ranks: Vec<u32> = (0..rows).map(|j| o.o(&format!("b{i}{j}"))).collect();
            let (lo, hi) = (ranks.iter().min().unwrap(), ranks.iter().max().unwrap());
            assert_eq!(hi - lo, rows as u32 - 1, "row {i}: {ranks:?}");
        }
    });
}

/// Each chunk of a reduction produces two results (`c_i1`, `c_i2`) from one
/// parent `b_i`, and the two go to different reducers. Computing one of
/// them means computing the other soon after, so `b_i` is released.
///
/// ```text
///                      top
///                    /     \
///                 r0         r1
///               / | \       / | \
///         c01 c11 c21 ... c02 c12 c22 ...
///            \___|___\___/___/___/
///         c_i1 and c_i2 both read b_i
///                 |
///                 b_i
///                 |
///                 a_i
/// ```
#[test]
fn both_children_of_a_parent_run_together() {
    let n = 6;
    let mut b = Builder::default();
    let mut firsts = Vec::new();
    let mut seconds = Vec::new();
    for i in 0..n {
        let a = b.task(format!("a{i}"), &[]);
        let p = b.task(format!("b{i}"), &[a]);
        firsts.push(b.task(format!("c{i}1"), std::slice::from_ref(&p)));
        seconds.push(b.task(format!("c{i}2"), &[p]));
    }
    let r0 = b.task("r0", &firsts);
    let r1 = b.task("r1", &seconds);
    b.task("top", &[r0, r1]);
    let g = b.build();
    check(&g, |o| {
        for i in 0..n {
            let (x, y) = (o.o(&format!("c{i}1")), o.o(&format!("c{i}2")));
            // Adjacent, or one reducer apart when the first completes a reducer.
            assert!(x.abs_diff(y) <= 2, "c{i}1 at {x}, c{i}2 at {y}");
        }
        // The c's wait for their reducers; nothing else piles up.
        assert!(o.max_alive() <= 2 * n + 1, "{}", o.max_alive());
    });
}

/// Several parts, each split three ways, then regrouped across parts (a
/// transposing reduction, as xarray produces): every `d_k` needs one piece
/// of every part. Finishing part after part would hold all pieces of the
/// finished parts (8 results at the peak); building one `d` at a time
/// across the parts holds 6.
///
/// ```text
///        d0          d1          d2          (d_k reads c_k0, c_k1, c_k2)
///
///   c00 c10 c20  c01 c11 c21  c02 c12 c22    (c_kp reads b_kp)
///    |   |   |    |   |   |    |   |   |
///   b00 b10 b20  b01 b11 b21  b02 b12 b22
///     \ / \ /      \ / \ /      \ / \ /      (b_0p: a_0p; b_1p: both; b_2p: a_1p)
///    a00   a10    a01   a11    a02   a12
/// ```
#[test]
fn transposing_reduction_builds_one_output_at_a_time() {
    let parts = 3;
    let mut b = Builder::default();
    for p in 0..parts {
        let a0 = b.task(format!("a0{p}"), &[]);
        let a1 = b.task(format!("a1{p}"), &[]);
        let b0 = b.task(format!("b0{p}"), std::slice::from_ref(&a0));
        let b1 = b.task(format!("b1{p}"), &[a0, a1.clone()]);
        let b2 = b.task(format!("b2{p}"), &[a1]);
        for (k, bk) in [b0, b1, b2].into_iter().enumerate() {
            b.task(format!("c{k}{p}"), &[bk]);
        }
    }
    for k in 0..3 {
        let cs: Vec<String> = (0..parts).map(|p| format!("c{k}{p}")).collect();
        b.task(format!("d{k}"), &cs);
    }
    let g = b.build();
    check(&g, |o| {
        assert!(o.max_alive() <= 6, "{}", o.max_alive());
        let first_output = (0..3).map(|k| o.o(&format!("d{k}"))).min().unwrap();
        assert!(first_output < g.len() as u32 / 2);
    });
}

/// `c` becomes the last reader of `x` while `g` is being computed, and `c`
/// needs `g`: pursuing `c` first would pull `g` in again while `g` is still
/// under way. The walk leaves `c` until `g` is done, and the order is valid.
///
/// ```text
///     w     c
///      \   / \
///        g    |
///       / \   |
///     d1   d2 |
///     | \  | \|
///     r1 \ r2 r3
///         \___x
/// ```
/// (`d1` reads `r1` and `x`; `d2` reads `r2` and `r3`; `c` reads `g` and `x`.)
#[test]
fn a_reader_of_the_goal_under_way_does_not_interrupt_it() {
    let g = graph(&[
        ("x", &[]),
        ("r1", &[]),
        ("r2", &[]),
        ("r3", &[]),
        ("d1", &["r1", "x"]),
        ("d2", &["r2", "r3"]),
        ("g", &["d1", "d2"]),
        ("w", &["g"]),
        ("c", &["g", "x"]),
    ]);
    check(&g, |o| {
        assert!(o.o("d2") < o.o("g") && o.o("g") < o.o("c"));
        assert!(o.max_alive() <= 4, "{}", o.max_alive());
    });
}

// ---------------------------------------------------------------------------
// 4. Edges and invariants.
// ---------------------------------------------------------------------------

/// No tasks, and a single task.
#[test]
fn empty_and_single_task_graphs() {
    let empty = Csr::from_rows(Vec::<Vec<u32>>::new());
    assert!(order(&empty, &empty.transpose()).is_empty());
    let one = Csr::from_rows(vec![Vec::<u32>::new()]);
    assert_eq!(order(&one, &one.transpose()), vec![0]);
}

/// A cycle (which planning rejects before ordering) still gets a
/// permutation rather than a hang or a panic.
///
/// ```text
///   1 <-> 2     3
///   |
///   0
/// ```
/// (`1` reads `0` and `2`, `2` reads `1`; `3` is on its own.)
#[test]
fn a_cycle_still_gives_a_permutation() {
    let deps = Csr::from_rows(vec![vec![], vec![0, 2], vec![1], vec![]]);
    let dependents = deps.transpose();
    assert_eq!(topological(&deps, &dependents).len(), 2);
    let mut ranks = order(&deps, &dependents);
    ranks.sort_unstable();
    assert_eq!(ranks, vec![0, 1, 2, 3]);
}

/// Ordering is deterministic: the same graph with the same ids gets the
/// same ranks.
#[test]
fn the_same_graph_always_gets_the_same_order() {
    let (g, _) = tree_reduction(50, 3);
    let ids: Vec<u32> = shuffled(g.len(), 9);
    let first = g.order_with(&ids, "first").rank;
    let second = g.order_with(&ids, "second").rank;
    assert_eq!(first, second);
}

/// A large graph (about 125,000 tasks): 50,000 inputs, each incremented,
/// summed in a fan-in-100 tree, beside 25,000 independent inputs summed in
/// one flat reduction. The order is a valid permutation, and only the flat
/// sum ever needs all its inputs at once.
#[test]
fn a_large_graph_is_ordered_correctly() {
    let roots = 50_000u32;
    let mut rows: Vec<Vec<u32>> = Vec::new();
    for _ in 0..roots {
        rows.push(vec![]);
    }
    for i in 0..roots {
        rows.push(vec![i]);
    }
    let mut level: Vec<u32> = (roots..2 * roots).collect();
    let mut max_alive_bound = 1;
    while level.len() > 1 {
        max_alive_bound += 99;
        level = level
            .chunks(100)
            .map(|grp| {
                rows.push(grp.to_vec());
                rows.len() as u32 - 1
            })
            .collect();
    }
    let flat_start = rows.len() as u32;
    for _ in 0..25_000 {
        rows.push(vec![]);
    }
    rows.push((flat_start..flat_start + 25_000).collect());
    let deps_rows: Vec<Vec<usize>> = rows.iter().map(|r| r.iter().map(|&d| d as usize).collect()).collect();
    let deps = Csr::from_rows(rows);
    let dependents = deps.transpose();
    let rank = order(&deps, &dependents);
    assert_eq!(rank.len(), deps.len());
    let mut seen = vec![false; rank.len()];
    for &r in &rank {
        assert!(!seen[r as usize]);
        seen[r as usize] = true;
    }
    for t in 0..deps.len() as u32 {
        for &d in deps.row(t) {
            assert!(rank[d as usize] < rank[t as usize]);
        }
    }
    // The flat sum needs all its inputs at once; the tree never does.
    let alive = alive_over_time(&deps_rows, &rank).into_iter().max().unwrap();
    assert!(alive <= 25_000 + max_alive_bound, "{alive}");
}

/// Random DAGs of up to 150 tasks reading up to 5 others: edges only go from
/// a lower to a higher listing position, so every generated graph is acyclic.
fn random_dag() -> impl Strategy<Value = Vec<Vec<u32>>> {
    (1usize..150).prop_flat_map(|n| {
        proptest::collection::vec(proptest::collection::vec(any::<proptest::sample::Index>(), 0..6), n).prop_map(
            move |picks| {
                picks
                    .into_iter()
                    .enumerate()
                    .map(|(t, ps)| {
                        let mut row: Vec<u32> = if t == 0 {
                            vec![]
                        } else {
                            ps.iter().map(|p| p.index(t) as u32).collect()
                        };
                        row.sort_unstable();
                        row.dedup();
                        row
                    })
                    .collect()
            },
        )
    })
}

proptest! {
    /// On any DAG, with ids shuffled, the ranks are a permutation in which
    /// every task ranks after its dependencies.
    #[test]
    fn random_dags_get_a_valid_order(rows in random_dag(), seed in 0u64..1000) {
        let n = rows.len();
        // Relabel ids so dependencies are not always lower ids.
        let ids = shuffled(n, seed);
        let mut relabelled = vec![Vec::new(); n];
        for (t, row) in rows.iter().enumerate() {
            relabelled[ids[t] as usize] = row.iter().map(|&d| ids[d as usize]).collect::<Vec<u32>>();
        }
        let deps = Csr::from_rows(relabelled);
        let dependents = deps.transpose();
        let rank = order(&deps, &dependents);
        let mut sorted = rank.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..n as u32).collect::<Vec<u32>>());
        for t in 0..n as u32 {
            for &d in deps.row(t) {
                prop_assert!(rank[d as usize] < rank[t as usize]);
            }
        }
    }
}
