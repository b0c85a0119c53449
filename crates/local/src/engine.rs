//! The one execution engine behind every local executor (Dask's `local.py`).
//!
//! # State
//!
//! Everything is indexed by the plan's dense task ids:
//!
//! - `waiting[t]`: dependencies of `t` not yet computed. When it reaches 0,
//!   `t` is ready.
//! - `uses[t]`: dependents of `t` not yet run, plus one if `t` is an output.
//!   When it reaches 0 the value of `t` is dropped at once: intermediate
//!   results live exactly as long as something still needs them.
//! - `results[t]`: the value of `t` while it is alive.
//!
//! # Task selection policy
//!
//! Each worker thread owns a LIFO deque (crossbeam). When a task finishes,
//! the dependents it made ready are pushed lowest-priority first, so the
//! worker continues with the most urgent one: a branch is finished before new
//! work starts, which is what keeps memory low. Root tasks wait in a shared
//! queue in priority order and are taken one at a time only when a worker has
//! nothing of its own. An idle worker steals from the others' deques, and
//! sleeps on a condition variable when there is nothing anywhere.
//!
//! The `sync` executor is this same loop with one worker, on the calling
//! thread.
//!
//! # Failure
//!
//! A task that returns an error or panics sets `failed`; every worker stops
//! taking tasks, sleeping workers are woken, and the first error (with the
//! task's key) is returned. Panics are caught, so the process never aborts.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use blockwise_core::{Callback, Error, ErrorKind, Plan, Result, SlotRef, Value};
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use parking_lot::{Condvar, Mutex};

/// Runs a plan on `workers` threads (the calling thread is one of them) and
/// returns the values of its outputs, in order.
pub fn run(plan: &Plan, workers: usize, callbacks: &[Arc<dyn Callback>]) -> Result<Vec<Value>> {
    let workers = workers.max(1);
    let state = State::new(plan, callbacks);
    for cb in callbacks {
        cb.start(plan);
    }
    if plan.is_empty() {
        return state.finish();
    }
    let deques: Vec<Worker<u32>> = (0..workers).map(|_| Worker::new_lifo()).collect();
    let stealers: Vec<Stealer<u32>> = deques.iter().map(Worker::stealer).collect();
    if workers == 1 {
        let deque = deques.into_iter().next().expect("one deque");
        WorkerLoop {
            state: &state,
            index: 0,
            local: deque,
            stealers: &stealers,
        }
        .run();
    } else {
        std::thread::scope(|scope| {
            let mut deques = deques.into_iter();
            let mine = deques.next().expect("at least one deque");
            for (index, local) in deques.enumerate() {
                let state = &state;
                let stealers = &stealers;
                let spawned = std::thread::Builder::new()
                    .name(format!("blockwise-worker-{}", index + 1))
                    .spawn_scoped(scope, move || {
                        WorkerLoop {
                            state,
                            index: index + 1,
                            local,
                            stealers,
                        }
                        .run()
                    });
                if let Err(e) = spawned {
                    state.fail(Error::new(ErrorKind::Io, format!("cannot start a worker thread: {e}")));
                }
            }
            WorkerLoop {
                state: &state,
                index: 0,
                local: mine,
                stealers: &stealers,
            }
            .run();
        });
    }
    state.finish()
}

struct State<'a> {
    plan: &'a Plan,
    callbacks: &'a [Arc<dyn Callback>],
    waiting: Vec<AtomicU32>,
    uses: Vec<AtomicU32>,
    results: Vec<Mutex<Option<Value>>>,
    roots: Injector<u32>,
    done: AtomicUsize,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

impl<'a> State<'a> {
    fn new(plan: &'a Plan, callbacks: &'a [Arc<dyn Callback>]) -> Self {
        let n = plan.len();
        let deps = plan.dependencies();
        let dependents = plan.dependents();
        let waiting = (0..n as u32)
            .map(|t| AtomicU32::new(deps.row(t).len() as u32))
            .collect();
        let mut uses: Vec<AtomicU32> = (0..n as u32)
            .map(|t| AtomicU32::new(dependents.row(t).len() as u32))
            .collect();
        for &o in plan.outputs() {
            *uses[o as usize].get_mut() += 1;
        }
        let mut roots: Vec<u32> = (0..n as u32).filter(|&t| deps.row(t).is_empty()).collect();
        let priority = plan.priorities();
        roots.sort_unstable_by_key(|&t| priority[t as usize]);
        let injector = Injector::new();
        for t in roots {
            injector.push(t);
        }
        State {
            plan,
            callbacks,
            waiting,
            uses,
            results: (0..n).map(|_| Mutex::new(None)).collect(),
            roots: injector,
            done: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    fn finished(&self) -> bool {
        self.failed.load(Ordering::Acquire) || self.done.load(Ordering::Acquire) == self.plan.len()
    }

    fn fail(&self, error: Error) {
        {
            let mut slot = self.error.lock();
            if slot.is_none() {
                *slot = Some(error);
            }
        }
        self.failed.store(true, Ordering::Release);
        self.wake_all();
    }

    fn wake_all(&self) {
        let _guard = self.sleep_lock.lock();
        self.wake.notify_all();
    }

    fn wake_one(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.sleep_lock.lock();
            self.wake.notify_one();
        }
    }

    fn finish(self) -> Result<Vec<Value>> {
        let failed = self.failed.load(Ordering::Acquire);
        for cb in self.callbacks {
            cb.finish(self.plan, failed);
        }
        if let Some(err) = self.error.into_inner() {
            return Err(err);
        }
        self.plan
            .outputs()
            .iter()
            .map(|&o| {
                self.results[o as usize]
                    .lock()
                    .clone()
                    .ok_or_else(|| Error::graph(format!("output {} was not computed", self.plan.key(o))))
            })
            .collect()
    }
}

struct WorkerLoop<'s, 'a> {
    state: &'s State<'a>,
    index: usize,
    local: Worker<u32>,
    stealers: &'s [Stealer<u32>],
}

impl WorkerLoop<'_, '_> {
    fn run(&self) {
        let mut ready: Vec<u32> = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        while !self.state.finished() {
            match self.find_task() {
                Some(t) => {
                    if let Err(e) = self.execute(t, &mut args, &mut ready) {
                        self.state.fail(e);
                        return;
                    }
                }
                None => self.idle(),
            }
        }
    }

    fn find_task(&self) -> Option<u32> {
        if let Some(t) = self.local.pop() {
            return Some(t);
        }
        loop {
            let mut retry = false;
            match self.state.roots.steal() {
                Steal::Success(t) => return Some(t),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            let n = self.stealers.len();
            for k in 1..n {
                match self.stealers[(self.index + k) % n].steal() {
                    Steal::Success(t) => return Some(t),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    fn has_visible_work(&self) -> bool {
        !self.state.roots.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    fn idle(&self) {
        for _ in 0..64 {
            if self.state.finished() || self.has_visible_work() {
                return;
            }
            std::hint::spin_loop();
        }
        std::thread::yield_now();
        let mut guard = self.state.sleep_lock.lock();
        self.state.sleepers.fetch_add(1, Ordering::SeqCst);
        if !self.state.finished() && !self.has_visible_work() {
            // The timeout is a backstop against a missed wake-up, not the
            // way work is found: pushes wake a sleeper directly.
            self.state.wake.wait_for(&mut guard, Duration::from_millis(20));
        }
        self.state.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    fn execute(&self, t: u32, args: &mut Vec<Value>, ready: &mut Vec<u32>) -> Result<()> {
        let state = self.state;
        let plan = state.plan;
        args.clear();
        for slot in plan.slots(t) {
            args.push(match slot {
                SlotRef::Literal(v) => v.clone(),
                SlotRef::Task(d) => state.results[d as usize].lock().clone().ok_or_else(|| {
                    Error::graph(format!(
                        "task {} started before its input {} was computed",
                        plan.key(t),
                        plan.key(d)
                    ))
                })?,
            });
        }
        for cb in state.callbacks {
            cb.task_start(plan, t, self.index);
        }
        let op = plan.op(t);
        let outcome = catch_unwind(AssertUnwindSafe(|| op.call(args)));
        args.clear();
        let value = match outcome {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(task_error(plan, t, e)),
            Err(payload) => {
                let msg = panic_message(&payload);
                return Err(
                    Error::new(ErrorKind::TaskFailed(plan.key(t)), format!("panicked: {msg}"))
                        .context(format!("in op {}", op.name())),
                );
            }
        };
        for cb in state.callbacks {
            cb.task_finish(plan, t, self.index, &value);
        }
        if state.uses[t as usize].load(Ordering::Acquire) > 0 {
            *state.results[t as usize].lock() = Some(value);
        }
        // Release inputs whose last user this was.
        for &d in plan.dependencies().row(t) {
            if state.uses[d as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                let released = state.results[d as usize].lock().take();
                drop(released);
            }
        }
        ready.clear();
        for &x in plan.dependents().row(t) {
            if state.waiting[x as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                ready.push(x);
            }
        }
        if !ready.is_empty() {
            let priority = plan.priorities();
            // Push the least urgent first: the LIFO pop takes the most urgent.
            ready.sort_unstable_by_key(|&x| std::cmp::Reverse(priority[x as usize]));
            for &x in ready.iter() {
                self.local.push(x);
            }
            if ready.len() > 1 {
                state.wake_one();
            }
        }
        if state.done.fetch_add(1, Ordering::AcqRel) + 1 == plan.len() {
            state.wake_all();
        }
        Ok(())
    }
}

fn task_error(plan: &Plan, t: u32, e: Error) -> Error {
    match e.kind() {
        // An error that already names a failed task (from a nested
        // computation) keeps its key.
        ErrorKind::TaskFailed(_) => e,
        _ => {
            let mut err = Error::new(ErrorKind::TaskFailed(plan.key(t)), e.message().to_string());
            for line in e.context_lines() {
                err = err.context(line.clone());
            }
            err.context(format!("in op {}", plan.op(t).name()))
        }
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}
