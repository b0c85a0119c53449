//! Static task ordering: a rank for every task that keeps peak memory low.
//!
//! Executors run ready tasks lowest rank first, so this order decides how many
//! results wait in memory for their dependents. A result is *alive* from the
//! moment its task runs until its last dependent has run. Outputs (tasks
//! without dependents) are held by whoever asked for them whatever the order,
//! so they do not count. The order keeps the number of alive results small
//! while it finishes one part of the graph before starting another. It reads
//! only the graph's structure; task ids matter only as the last tie-break.
//!
//! # How: one simulated thread, choosing by memory
//!
//! Ranks are handed out by simulating a single thread that runs one task at a
//! time. At each step it takes the first of these that applies:
//!
//! 1. **Release memory now.** A ready task runs at once when running it
//!    leaves fewer results alive than before: it is the last reader of more
//!    inputs than the one result it adds (a partial sum whose inputs are all
//!    done, the second half of `x + x.T`'s mirrored pair). A ready output runs
//!    at once too: it adds nothing, and every input it reads comes closer to
//!    release. A task missing a single input that is itself ready is a *hop*:
//!    when running the input and then the task still leaves fewer results
//!    alive, both run. Hops are what sweep a stencil from one block to the
//!    next and what finish a half-started group before anything new begins.
//!    Moves that never hold an extra result, not even for a moment, go before
//!    hops whose input is new data.
//! 2. **Finish the current goal, depth first.** Otherwise the walk works back
//!    from its current goal through the dependencies that have not run,
//!    heaviest first: the one with the most work behind it starts first, so
//!    its result waits the shortest while the lighter ones compute (the
//!    Sethi-Ullman rule for evaluating expression trees in few registers).
//!    Among equally heavy ones the most shared goes first: its other readers
//!    can then finish before more private inputs are loaded. One exception:
//!    call a task that is the last reader still waiting for some result a
//!    *closer* (running it releases that result). Before starting a sub-goal,
//!    if the most recently found closer misses fewer inputs than the
//!    sub-goal, the closer goes first. Every task must run some time; this
//!    runs the one that releases memory while its inputs are at hand. It is
//!    what makes a reduction over a stencil sweep the stencil instead of
//!    visiting blocks in whatever order the reduction lists them.
//! 3. **Before new data, the free moves.** Right before the walk loads a task
//!    without dependencies, it runs the moves that cost nothing: a task that
//!    releases one input and adds one result, or a hop that ends even. They
//!    are kept back until then because they gain no memory by themselves,
//!    and the current goal's own chain (which loads nothing) should not wait
//!    for them; but once new data is coming, whatever can finish with the data
//!    already in memory should finish first.
//! 4. **Next goal: what is alive.** When a goal is done and results are
//!    still alive, the next goal is the most recently found closer; failing
//!    that, a dependent of the *oldest* result still alive, the one missing
//!    the fewest inputs, then the lightest. Work continues where its data already is, instead of
//!    starting elsewhere and leaving results waiting; and going back to the
//!    oldest result moves the walk forward as a front (row after row through
//!    a grid) rather than around its edge.
//! 5. **Only then, a new output.** With nothing alive, the next goal is the
//!    next output not yet run, in a fixed ranking. First the most
//!    self-contained: the smallest share of its work that fans out to other
//!    outputs, since whatever fans out will wait in memory for them. Then
//!    the heaviest, the longest chain of work, which also starts the
//!    critical path early. Then the one farthest out at the edge of its
//!    connected part of the graph (breadth-first sweeps, as Cuthill-McKee
//!    picks its starting node), so that sweeps through stencils and grids
//!    start at an end rather than in the middle, where two fronts would stay
//!    alive.
//!
//! The result behaves like Dask's `order.py` on the cases of its
//! `test_order.py` that concern memory (see `tests/order.rs`), though the
//! method differs: Dask walks a critical path and caches "runnable paths";
//! here every decision is a local count of what a run adds and releases,
//! which is what keeps the walk linear. Where Dask favours the longest path
//! over memory (it runs a long branch before cheap outputs that would
//! release a shared input), this order favours memory.
//!
//! # Cost
//!
//! Linear passes for the topological order, the weights and the edge sweeps;
//! each task's dependencies are sorted when the walk expands it (once, but
//! for the rare goal that a closer pulls in again while it is under way),
//! and the outputs once: `O((n + e) log n)` time for `n` tasks and `e` edges.
//! A run updates counters of its neighbours only, and every decision reads
//! a few counters (the id of a task's last missing input is the XOR of the
//! ids still missing, so it needs no search) or a bounded window of
//! dependents. Memory is about eight words per task, plus stacks of task ids
//! with `O(n + e)` entries in all.
//!
//! A graph with a cycle (which [`crate::plan::Plan`] rejects before ordering)
//! still gets a permutation: the tasks before any cycle in topological
//! order, then the rest by id.

use std::cmp::Ordering;

use crate::csr::Csr;

/// Rank of a task that has not run yet.
const NOT_RUN: u32 = u32::MAX;

/// Distance of a task the breadth-first sweeps have not reached.
const UNSEEN: u32 = u32::MAX;

/// How many dependents of an alive result are compared when choosing the next
/// goal: enough to prefer one that is nearly ready, and bounded, so that a
/// result read by a million tasks costs no more to consult than one read by ten.
const FRONTIER_SCAN: usize = 16;

/// Ranks every task: `priority[i]` is the position of task `i` in the run
/// order, a permutation of `0..n` in which every task ranks after its
/// dependencies. `dependencies.row(i)` are the tasks `i` reads; `dependents`
/// is its transpose. See the module documentation for how ranks are chosen.
pub fn order(dependencies: &Csr, dependents: &Csr) -> Vec<u32> {
    let n = dependencies.len();
    debug_assert_eq!(dependents.len(), n, "dependents must be the transpose of dependencies");
    let topo = topological(dependencies, dependents);
    if topo.len() != n {
        return cyclic_fallback(n, &topo);
    }
    let shape = Shape::measure(dependencies, dependents, &topo);
    drop(topo);
    let outputs = shape.ranked_outputs(dependencies, dependents);
    let mut walk = Walk::new(dependencies, dependents, shape);
    walk.run_all(&outputs);
    debug_assert_eq!(walk.next_rank as usize, n);
    walk.rank
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

/// Ranks for a graph with a cycle: what [`topological`] reached, in its
/// order, then every other task by id.
fn cyclic_fallback(n: usize, topo: &[u32]) -> Vec<u32> {
    let mut rank = vec![NOT_RUN; n];
    let mut next = 0u32;
    for &t in topo {
        rank[t as usize] = next;
        next += 1;
    }
    for r in rank.iter_mut().filter(|r| **r == NOT_RUN) {
        *r = next;
        next += 1;
    }
    rank
}

/// Static measures of the graph, computed once in topological order.
struct Shape {
    /// Work behind each task: itself plus the weights of its dependencies,
    /// so shared work is counted once per path (saturating). Cheap, and
    /// exact on trees, where it matters most.
    weight: Vec<u64>,
    /// The share of that work that fans out (tasks behind this one with
    /// more than one dependent, counted the same way), in units of 2^-32:
    /// how much of what this task needs is also needed elsewhere, and so
    /// will wait in memory for other readers.
    share: Vec<u32>,
}

impl Shape {
    fn measure(dependencies: &Csr, dependents: &Csr, topo: &[u32]) -> Shape {
        let n = dependencies.len();
        let mut weight = vec![0u64; n];
        let mut shared = vec![0u64; n];
        for &t in topo {
            let (mut w, mut s) = (1u64, 0u64);
            for &d in dependencies.row(t) {
                w = w.saturating_add(weight[d as usize]);
                let fans_out = u64::from(dependents.row(d).len() > 1);
                s = s.saturating_add(shared[d as usize]).saturating_add(fans_out);
            }
            weight[t as usize] = w;
            shared[t as usize] = s;
        }
        let share = shared
            .iter()
            .zip(&weight)
            .map(|(&s, &w)| ((u128::from(s) << 32) / u128::from(w)).min(u128::from(u32::MAX)) as u32)
            .collect();
        Shape { weight, share }
    }

    /// Outputs in the order they become goals when nothing is alive: least
    /// shared work (as a share of all work) first, then heaviest, then
    /// farthest out at the edge of the graph, then by id.
    fn ranked_outputs(&self, dependencies: &Csr, dependents: &Csr) -> Vec<u32> {
        let n = dependencies.len();
        let mut outputs: Vec<u32> = (0..n as u32).filter(|&t| dependents.row(t).is_empty()).collect();
        let by_share_and_weight = |a: u32, b: u32| {
            let key = |t: u32| (self.share[t as usize], u64::MAX - self.weight[t as usize]);
            key(a).cmp(&key(b))
        };
        outputs.sort_unstable_by(|&a, &b| by_share_and_weight(a, b).then(a.cmp(&b)));
        // The edge sweeps cost two passes over the graph; only ties need them.
        if outputs
            .windows(2)
            .any(|w| by_share_and_weight(w[0], w[1]) == Ordering::Equal)
        {
            let periphery = periphery(dependencies, dependents);
            outputs.sort_unstable_by(|&a, &b| {
                by_share_and_weight(a, b)
                    .then(periphery[b as usize].cmp(&periphery[a as usize]))
                    .then(a.cmp(&b))
            });
        }
        outputs
    }
}

/// How far out every task lies in its connected part of the graph (edges
/// taken both ways), measured along a pseudo-diameter: the larger of its hop
/// distances from the diameter's two ends. The ends are found as
/// Cuthill-McKee finds its starting node: the task farthest from any task is
/// one end, the task farthest from that is the other. The distance from the
/// second end is taken as the diameter minus the distance from the first,
/// exact along the diameter and a lower bound elsewhere; it saves a sweep.
fn periphery(dependencies: &Csr, dependents: &Csr) -> Vec<u32> {
    let n = dependencies.len();
    let mut from_any = vec![UNSEEN; n];
    let mut from_end = vec![UNSEEN; n];
    let mut queue = Vec::new();
    for start in 0..n as u32 {
        if from_any[start as usize] == UNSEEN {
            let end = sweep(dependencies, dependents, start, &mut from_any, &mut queue);
            let other_end = sweep(dependencies, dependents, end, &mut from_end, &mut queue);
            let diameter = from_end[other_end as usize];
            // The last sweep's queue is exactly this connected part.
            for &t in &queue {
                let d = from_end[t as usize];
                from_end[t as usize] = d.max(diameter.saturating_sub(d));
            }
        }
    }
    from_end
}

/// Breadth-first hop distances from `start` over edges in both directions,
/// into `distance` (`UNSEEN` marks unvisited); returns the last task reached,
/// one of the farthest.
fn sweep(dependencies: &Csr, dependents: &Csr, start: u32, distance: &mut [u32], queue: &mut Vec<u32>) -> u32 {
    queue.clear();
    distance[start as usize] = 0;
    queue.push(start);
    let mut i = 0;
    while i < queue.len() {
        let t = queue[i];
        let next = distance[t as usize] + 1;
        for row in [dependencies.row(t), dependents.row(t)] {
            for &u in row {
                if distance[u as usize] == UNSEEN {
                    distance[u as usize] = next;
                    queue.push(u);
                }
            }
        }
        i += 1;
    }
    queue[queue.len() - 1]
}

/// The four queues of eager moves, in the order they are taken.
#[derive(Clone, Copy)]
enum Lane {
    /// Releases memory and never holds an extra result on the way.
    Releases = 0,
    /// Releases memory after loading one input first (a hop onto new data).
    ReleasesAfterLoad = 1,
    /// Ends even and never holds an extra result on the way.
    Even = 2,
    /// Ends even after loading one input first.
    EvenAfterLoad = 3,
}

/// The simulated single thread (see the module documentation).
struct Walk<'g> {
    dependencies: &'g Csr,
    dependents: &'g Csr,
    /// [`Shape::weight`].
    weight: Vec<u64>,
    /// Dependencies not yet run.
    missing: Vec<u32>,
    /// XOR of the ids of the dependencies not yet run: once one is left,
    /// its id.
    missing_xor: Vec<u32>,
    /// Dependents not yet run; a result that has run is alive while this is
    /// not zero.
    waiting: Vec<u32>,
    /// For a task not yet run: how many of its run dependencies it is the
    /// last waiting reader of, i.e. how many results running it releases.
    releases: Vec<u32>,
    /// For an alive result: where the scan of its dependents for the next
    /// goal resumes (all before it have run or been expanded).
    scan_from: Vec<u32>,
    /// Whether a task's dependencies have been pushed as goals; it will run
    /// once they have, so it is never chosen as a goal again.
    expanded: Vec<bool>,
    /// The answer; `NOT_RUN` until a task runs.
    rank: Vec<u32>,
    next_rank: u32,
    /// Eager moves, one stack per [`Lane`]; entries are re-checked when taken.
    eager: [Vec<u32>; 4],
    /// The depth-first stack of goals: a task stays until it has run.
    goals: Vec<u32>,
    /// Results that were alive when they ran, oldest first.
    alive: Vec<u32>,
    /// Entries of `alive` before this one no longer qualify as a source of
    /// goals: their readers have all run or been expanded.
    oldest_alive: usize,
    /// Tasks that release a result when they run (most recent last), to
    /// pursue before anything else while their inputs are at hand; entries
    /// that have run or been expanded are dropped when met.
    closers: Vec<u32>,
    /// Dependencies being sorted for [`Walk::expand`].
    scratch: Vec<(u64, u32, u32)>,
}

/// What running a task now (with its one missing input first, for a hop)
/// does to the number of alive results.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Fewer alive results, or a ready output (which holds nothing).
    Releases,
    /// As many as before.
    Even,
}

impl<'g> Walk<'g> {
    fn new(dependencies: &'g Csr, dependents: &'g Csr, shape: Shape) -> Self {
        let n = dependencies.len();
        Walk {
            dependencies,
            dependents,
            weight: shape.weight,
            missing: (0..n as u32).map(|t| dependencies.row(t).len() as u32).collect(),
            missing_xor: (0..n as u32)
                .map(|t| dependencies.row(t).iter().fold(0, |x, &d| x ^ d))
                .collect(),
            waiting: (0..n as u32).map(|t| dependents.row(t).len() as u32).collect(),
            releases: vec![0; n],
            scan_from: vec![0; n],
            expanded: vec![false; n],
            rank: vec![NOT_RUN; n],
            next_rank: 0,
            eager: Default::default(),
            goals: Vec::new(),
            alive: Vec::new(),
            oldest_alive: 0,
            closers: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn has_run(&self, t: u32) -> bool {
        self.rank[t as usize] != NOT_RUN
    }

    fn is_output(&self, t: u32) -> bool {
        self.dependents.row(t).is_empty()
    }

    /// Alive results added by running the ready task `t` now: one for its
    /// own result (none for an output), minus the inputs it releases.
    fn gain(&self, t: u32) -> i64 {
        i64::from(!self.is_output(t)) - i64::from(self.releases[t as usize])
    }

    /// The main loop: the rules of the module documentation, in order.
    fn run_all(&mut self, outputs: &[u32]) {
        let mut next_output = 0;
        loop {
            if let Some(t) = self.pop_eager(&[Lane::Releases, Lane::ReleasesAfterLoad]) {
                self.try_eager(t, false);
                continue;
            }
            if let Some(&goal) = self.goals.last() {
                if self.has_run(goal) {
                    self.goals.pop();
                } else if self.missing[goal as usize] > 0 {
                    // Before starting a new sub-goal, finish what is alive
                    // if that releases a result and is closer to done.
                    if !self.expanded[goal as usize]
                        && let Some(closer) = self.closer_goal()
                        && self.may_interrupt(closer, goal)
                    {
                        self.goals.push(closer);
                    } else {
                        // Usually a fresh goal. A goal met again before it is
                        // ready was pulled in by a closer that needs it while
                        // it was under way lower down; its missing
                        // dependencies go on top again.
                        self.expand(goal);
                    }
                } else if self.dependencies.row(goal).is_empty()
                    && let Some(t) = self.pop_eager(&[Lane::Even, Lane::EvenAfterLoad])
                {
                    self.try_eager(t, true);
                } else {
                    self.goals.pop();
                    self.run(goal);
                }
                continue;
            }
            if let Some(goal) = self.closer_goal() {
                self.goals.push(goal);
                continue;
            }
            if let Some(goal) = self.next_goal_from_alive() {
                self.goals.push(goal);
                continue;
            }
            if let Some(t) = self.pop_eager(&[Lane::Even, Lane::EvenAfterLoad]) {
                self.try_eager(t, true);
                continue;
            }
            while next_output < outputs.len() && self.has_run(outputs[next_output]) {
                next_output += 1;
            }
            match outputs.get(next_output) {
                Some(&output) => self.goals.push(output),
                None => break,
            }
        }
    }

    fn pop_eager(&mut self, lanes: &[Lane]) -> Option<u32> {
        lanes.iter().find_map(|&lane| self.eager[lane as usize].pop())
    }

    /// Pushes the dependencies of `goal` that have not run, so that the
    /// heaviest is taken first, then the most shared, then the lowest id.
    fn expand(&mut self, goal: u32) {
        self.expanded[goal as usize] = true;
        self.scratch.clear();
        for &d in self.dependencies.row(goal) {
            if !self.has_run(d) {
                let readers = self.dependents.row(d).len() as u32;
                self.scratch
                    .push((u64::MAX - self.weight[d as usize], u32::MAX - readers, d));
            }
        }
        self.scratch.sort_unstable();
        self.scratch.dedup();
        self.goals.extend(self.scratch.iter().rev().map(|&(_, _, d)| d));
    }

    /// A goal among the dependents of the oldest result still alive, which
    /// has waited longest: the walk then advances as a front (row after row
    /// through a grid) instead of circling around its edge. Of that result's
    /// dependents that have neither run nor been expanded: the one missing
    /// the fewest inputs, then the lightest, then the lowest id.
    fn next_goal_from_alive(&mut self) -> Option<u32> {
        while let Some(&t) = self.alive.get(self.oldest_alive) {
            if self.waiting[t as usize] > 0
                && let Some(goal) = self.best_reader(t)
            {
                return Some(goal);
            }
            // Its readers have all run or are under way: it never qualifies again.
            self.oldest_alive += 1;
        }
        None
    }

    /// Whether `closer` should be pursued before the fresh goal `goal`: it is
    /// missing fewer inputs, and its one missing input (when it misses one)
    /// is not a goal under way, which it would have to wait for anyway.
    fn may_interrupt(&self, closer: u32, goal: u32) -> bool {
        let missing = self.missing[closer as usize];
        missing < self.missing[goal as usize]
            && (missing != 1 || !self.expanded[self.missing_xor[closer as usize] as usize])
    }

    /// The most recent task that will release a result and is not under way
    /// yet (see rule 2 of the module documentation).
    fn closer_goal(&mut self) -> Option<u32> {
        while let Some(&c) = self.closers.last() {
            if !self.has_run(c) && !self.expanded[c as usize] {
                return Some(c);
            }
            self.closers.pop();
        }
        None
    }

    /// The dependent of `t` to pursue next (see [`Walk::next_goal_from_alive`]),
    /// from a bounded window; `None` once every dependent has run or been
    /// expanded.
    fn best_reader(&mut self, t: u32) -> Option<u32> {
        let readers = self.dependents.row(t);
        let eligible = |walk: &Self, d: u32| !walk.has_run(d) && !walk.expanded[d as usize];
        let mut from = self.scan_from[t as usize] as usize;
        while from < readers.len() && !eligible(self, readers[from]) {
            from += 1;
        }
        self.scan_from[t as usize] = from as u32;
        let key = |d: u32| (self.missing[d as usize], self.weight[d as usize], d);
        readers[from..]
            .iter()
            .take(FRONTIER_SCAN)
            .copied()
            .filter(|&d| eligible(self, d))
            .min_by_key(|&d| key(d))
    }

    /// Whether running `t` now (after its one missing input, if it misses
    /// one) leaves no more results alive than before, and by how much.
    fn effect(&self, t: u32) -> Option<Effect> {
        if self.has_run(t) {
            return None;
        }
        let (gain, free) = match self.missing[t as usize] {
            0 => (self.gain(t), self.is_output(t)),
            1 => {
                let input = self.missing_xor[t as usize];
                if self.missing[input as usize] > 0 {
                    return None;
                }
                // An input that pays for itself runs on its own merit; it
                // must not make `t` look better than `t` is.
                let input_alone = self.gain(input).max(0);
                let input_released = i64::from(self.dependents.row(input).len() == 1);
                (input_alone + self.gain(t) - input_released, false)
            }
            _ => return None,
        };
        match gain.cmp(&0) {
            Ordering::Less => Some(Effect::Releases),
            Ordering::Equal if free => Some(Effect::Releases),
            Ordering::Equal => Some(Effect::Even),
            Ordering::Greater => None,
        }
    }

    /// Whether the move for `t` holds no extra result even for a moment: it
    /// is ready, or its missing input adds nothing by itself.
    fn loads_nothing(&self, t: u32) -> bool {
        self.missing[t as usize] == 0 || self.gain(self.missing_xor[t as usize]) <= 0
    }

    /// Queues `t` as an eager move if running it now does not add memory.
    fn consider(&mut self, t: u32) {
        let Some(effect) = self.effect(t) else {
            return;
        };
        let lane = match (effect, self.loads_nothing(t)) {
            (Effect::Releases, true) => Lane::Releases,
            (Effect::Releases, false) => Lane::ReleasesAfterLoad,
            (Effect::Even, true) => Lane::Even,
            (Effect::Even, false) => Lane::EvenAfterLoad,
        };
        self.eager[lane as usize].push(t);
    }

    /// Runs a queued eager move if it still qualifies. Counters only move in
    /// one direction while `t` waits, except that its missing input may have
    /// run and taken its own credit; so the move is checked again.
    fn try_eager(&mut self, t: u32, even_allowed: bool) {
        match self.effect(t) {
            None => return,
            Some(Effect::Even) if !even_allowed => {
                self.consider(t);
                return;
            }
            Some(_) => {}
        }
        if self.missing[t as usize] == 1 {
            self.run(self.missing_xor[t as usize]);
        }
        if !self.has_run(t) {
            self.run(t);
        }
    }

    /// Records that running `t` will release one more result; the first time,
    /// `t` becomes a candidate for [`Walk::closer_goal`].
    fn gains_a_release(&mut self, t: u32) {
        self.releases[t as usize] += 1;
        if self.releases[t as usize] == 1 {
            self.closers.push(t);
        }
    }

    /// Gives `t` the next rank and updates its neighbours' counters, queueing
    /// every neighbour whose effect may have become favourable.
    fn run(&mut self, t: u32) {
        debug_assert!(!self.has_run(t) && self.missing[t as usize] == 0);
        self.rank[t as usize] = self.next_rank;
        self.next_rank += 1;
        let (dependencies, dependents) = (self.dependencies, self.dependents);
        for &d in dependencies.row(t) {
            self.waiting[d as usize] -= 1;
            if self.waiting[d as usize] != 1 {
                continue;
            }
            // `d` has one reader left, which will release it.
            let Some(last) = dependents.row(d).iter().copied().find(|&x| !self.has_run(x)) else {
                continue;
            };
            self.gains_a_release(last);
            self.consider(last);
            // A cheaper `last` may make its only reader worth a hop.
            if let [reader] = dependents.row(last)
                && self.missing[last as usize] == 0
                && self.missing[*reader as usize] == 1
            {
                self.consider(*reader);
            }
        }
        let readers = dependents.row(t);
        if let [only] = readers {
            self.gains_a_release(*only);
        }
        if !readers.is_empty() {
            self.alive.push(t);
        }
        for &r in readers {
            self.missing[r as usize] -= 1;
            self.missing_xor[r as usize] ^= t;
            match self.missing[r as usize] {
                0 => {
                    self.consider(r);
                    // `r` is now a ready input for readers missing only it.
                    for &next in dependents.row(r) {
                        if self.missing[next as usize] == 1 && self.missing_xor[next as usize] == r {
                            self.consider(next);
                        }
                    }
                }
                1 => self.consider(r),
                _ => {}
            }
        }
    }
}
