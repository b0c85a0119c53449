//! One function per legal edge of the task state machine, and the loop that
//! runs recommendations. The table of edges is in [`crate::scheduler`].

use std::sync::Arc;

use crate::id::{GenerationalId, TaskId, WorkerId};
use crate::scheduler::command::{Command, ComputeTask, InputLocation};
use crate::scheduler::story::SchedulerError;
use crate::scheduler::task::{TaskFailure, TaskState};
use crate::scheduler::{Result, Scheduler, WorkerStatus};

/// What a recommendation asks for.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// Bring the task in line with who needs it, whatever that takes by the
    /// time its turn comes: a needed task without a result (or placed while
    /// an input is gone) goes to waiting; a task nobody needs is released
    /// (its run cancelled, its result freed), and forgotten once nothing
    /// refers to it either. The state decides, not the recommender: in a
    /// cascade, "its input is lost, redo it" and "nobody needs it" can both
    /// be said of one task, and only the state at its turn knows which
    /// still holds.
    Settle,
    /// Run it (its inputs are in memory): place it, queue it, or park it.
    Processing,
    /// Fail it with this error.
    Erred(Arc<TaskFailure>),
}

/// Pending recommendations: an insertion-ordered map, popped last-in first
/// (Dask's `dict.popitem`). A second recommendation for a task replaces the
/// first in place, so a task is visited once per round with the latest
/// opinion about it.
///
/// Where a task's entry is comes from a dense table indexed by the id's
/// slot (ids are slots of the task slab), not a hash map: a cascade over a
/// million tasks then walks the table in order instead of missing the
/// cache on every push and pop.
#[derive(Default)]
pub(crate) struct Recommendations {
    stack: Vec<(TaskId, Target)>,
    /// Slot → position in `stack` (`NOT_PENDING` if none); the entry there
    /// is the task's only if its id matches (slots are reused).
    position: Vec<u32>,
}

const NOT_PENDING: u32 = u32::MAX;

impl Recommendations {
    fn push(&mut self, id: TaskId, target: Target) {
        let slot = id.slot() as usize;
        if slot >= self.position.len() {
            self.position.resize((slot + 1).next_power_of_two(), NOT_PENDING);
        }
        match self.position[slot] {
            i if i != NOT_PENDING && self.stack[i as usize].0 == id => self.stack[i as usize].1 = target,
            // Not pending, or pending for an earlier task of this slot
            // (removed meanwhile: its entry is skipped when popped).
            _ => {
                self.position[slot] = self.stack.len() as u32;
                self.stack.push((id, target));
            }
        }
    }

    fn pop(&mut self) -> Option<(TaskId, Target)> {
        let (id, target) = self.stack.pop()?;
        let slot = &mut self.position[id.slot() as usize];
        if *slot == self.stack.len() as u32 {
            *slot = NOT_PENDING;
        }
        Some((id, target))
    }

    pub(crate) fn clear(&mut self) {
        for (id, _) in self.stack.drain(..) {
            self.position[id.slot() as usize] = NOT_PENDING;
        }
    }

    /// Drops the room a large cascade (a submission of a million tasks)
    /// left behind, once it is over.
    fn shrink(&mut self) {
        if self.stack.is_empty() && self.stack.capacity() > 4096 {
            self.stack = Vec::new();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.stack.is_empty()
    }
}

impl Scheduler {
    pub(crate) fn recommend(&mut self, id: TaskId, target: Target) {
        self.recommendations.push(id, target);
    }

    pub(crate) fn run_recommendations(&mut self) -> Result<()> {
        while let Some((id, target)) = self.recommendations.pop() {
            if self.tasks.contains(id) {
                self.transition(id, target)?;
            }
        }
        self.recommendations.shrink();
        Ok(())
    }

    /// Moves task `id` towards `target`.
    pub(crate) fn transition(&mut self, id: TaskId, target: Target) -> Result<()> {
        use TaskState as S;
        let from = self.tasks[id].state;
        match (from, target) {
            (_, Target::Settle) => self.settle_task(id),
            (S::Waiting, Target::Processing) if self.tasks[id].waiting_for == 0 => self.waiting_processing(id),
            (S::NoWorker, Target::Processing) => self.no_worker_processing(id),
            (S::Queued, Target::Processing) => self.queued_processing(id),
            (S::Released | S::Waiting | S::Processing, Target::Erred(failure)) => self.fail(id, failure, ""),
            // Computed meanwhile (the failure of an input it no longer needs
            // does not apply), or failed already.
            (S::Memory | S::Erred, Target::Erred(_)) => Ok(()),
            (from, target) => {
                let to = match target {
                    Target::Processing => TaskState::Processing,
                    Target::Erred(_) => TaskState::Erred,
                    Target::Settle => unreachable!("settling is always legal"),
                };
                Err(self.illegal(id, from, to))
            }
        }
    }

    /// See [`Target::Settle`].
    fn settle_task(&mut self, id: TaskId) -> Result<()> {
        use TaskState as S;
        let task = &self.tasks[id];
        if task.is_needed() {
            match task.state {
                S::Released => self.released_waiting(id),
                // An input failed: so does this task.
                S::Waiting => match self.erred_input(id) {
                    Some(failure) => self.fail(id, failure, "dependency-erred"),
                    None => Ok(()),
                },
                // Placed while an input was lost: the run (or the place in
                // the queue) is void.
                S::Queued | S::NoWorker | S::Processing if self.inputs_missing(id) => {
                    self.release(id, "input-lost")?;
                    self.released_waiting(id)
                }
                _ => Ok(()),
            }
        } else {
            match task.state {
                S::Waiting | S::Queued | S::NoWorker | S::Processing | S::Memory => self.release(id, ""),
                S::Released | S::Erred if task.is_orphan() => self.forget(id),
                _ => Ok(()),
            }
        }
    }

    /// The error of an erred input of task `id`, if one erred.
    fn erred_input(&self, id: TaskId) -> Option<Arc<TaskFailure>> {
        self.tasks[id]
            .dependencies
            .iter()
            .find_map(|&d| self.tasks[d].error.clone())
    }

    fn inputs_missing(&self, id: TaskId) -> bool {
        self.tasks[id]
            .dependencies
            .iter()
            .any(|&d| self.tasks[d].state != TaskState::Memory)
    }

    pub(crate) fn illegal(&self, id: TaskId, from: TaskState, to: TaskState) -> SchedulerError {
        let key = self.tasks[id].key.clone();
        SchedulerError::IllegalTransition {
            story: self.story(&key),
            key,
            from,
            to,
        }
    }

    /// released → waiting: the task is needed. Each input not in memory is
    /// waited on (and made needed itself); with none missing, it is ready.
    fn released_waiting(&mut self, id: TaskId) -> Result<()> {
        let task = &self.tasks[id];
        if !task.is_needed() {
            // Nobody asks for it any more (the cascade changed its mind).
            self.recommend(id, Target::Settle);
            return Ok(());
        }
        if let Some(failure) = self.erred_input(id) {
            return self.fail(id, failure, "dependency-erred");
        }
        self.set_state(id, TaskState::Waiting, None, "");
        for i in 0..self.tasks[id].dependencies.len() {
            let d = self.tasks[id].dependencies[i];
            let dependency = &mut self.tasks[d];
            dependency.waiters.insert(id);
            let state = dependency.state;
            if state != TaskState::Memory {
                self.tasks[id].waiting_for += 1;
            }
            if state == TaskState::Released {
                self.recommend(d, Target::Settle);
            }
        }
        if self.tasks[id].waiting_for == 0 {
            let priority = self.tasks[id].priority;
            self.ready.insert((priority, id));
        }
        Ok(())
    }

    /// waiting → processing (or queued, or no-worker): every input is in
    /// memory.
    fn waiting_processing(&mut self, id: TaskId) -> Result<()> {
        self.dispatch_ready(id);
        Ok(())
    }

    /// no-worker → processing (or queued): a worker became available.
    fn no_worker_processing(&mut self, id: TaskId) -> Result<()> {
        self.no_worker.remove(&(self.tasks[id].priority, id));
        self.dispatch_ready(id);
        Ok(())
    }

    /// Places a ready task: on the best worker, in the queue (root-ish and
    /// every worker full, or more urgent root-ish tasks already queued), or
    /// in no-worker (no running worker).
    fn dispatch_ready(&mut self, id: TaskId) {
        let priority = self.tasks[id].priority;
        if self.running.is_empty() {
            self.no_worker.insert((priority, id));
            self.set_state(id, TaskState::NoWorker, None, "");
            return;
        }
        if self.is_rootish(id) {
            let behind_queue = self.queued.first().is_some_and(|first| *first < (priority, id));
            match self.pick_worker_for_root() {
                Some(worker) if !behind_queue => self.assign(id, worker, ""),
                _ => self.enqueue(id),
            }
        } else {
            let worker = self.pick_worker(id).expect("a running worker exists");
            self.assign(id, worker, "");
        }
    }

    fn enqueue(&mut self, id: TaskId) {
        let task = &self.tasks[id];
        let (priority, group) = (task.priority, task.group);
        self.queued.insert((priority, id));
        self.groups[group].queued += 1;
        self.queued_groups.insert(group);
        self.set_state(id, TaskState::Queued, None, "");
    }

    fn dequeue(&mut self, id: TaskId) {
        let task = &self.tasks[id];
        let (priority, group) = (task.priority, task.group);
        self.queued.remove(&(priority, id));
        let g = &mut self.groups[group];
        g.queued -= 1;
        if g.queued == 0 {
            self.queued_groups.remove(&group);
        }
    }

    /// queued → processing: a slot opened.
    fn queued_processing(&mut self, id: TaskId) -> Result<()> {
        match self.pick_worker_for_root() {
            Some(worker) => {
                self.dequeue(id);
                self.assign(id, worker, "");
                Ok(())
            }
            // Callers check for a free slot first.
            None => Err(self.illegal(id, TaskState::Queued, TaskState::Processing)),
        }
    }

    /// Assigns a ready task to `worker` and sends it there.
    fn assign(&mut self, id: TaskId, worker: WorkerId, note: &'static str) {
        let cost = self.duration_estimate(id) + self.transfer_us(self.missing_bytes(id, worker));
        self.runs = self.runs.next();
        let task = &mut self.tasks[id];
        task.processing_on = Some(worker);
        task.run = self.runs;
        task.cost = cost;
        task.started = false;
        let w = self
            .workers
            .get_mut(&worker)
            .expect("tasks are assigned to known workers");
        w.processing.insert(id);
        w.occupancy += cost;
        self.update_worker_sets(worker);
        self.set_state(id, TaskState::Processing, Some(worker), note);
        let task = &self.tasks[id];
        let inputs = task
            .dependencies
            .iter()
            .map(|&d| {
                let dependency = &self.tasks[d];
                InputLocation {
                    task: d,
                    key: dependency.key.clone(),
                    nbytes: dependency.nbytes.unwrap_or(0),
                    who_has: dependency.who_has.sorted(),
                }
            })
            .collect();
        let compute = Box::new(ComputeTask {
            task: id,
            run: task.run,
            key: task.key.clone(),
            spec: task.spec.clone(),
            priority: task.priority,
            inputs,
            suspicious: task.suspicious,
        });
        self.out.push(Command::Compute {
            worker,
            compute,
            stimulus: self.stimulus,
        });
    }

    /// Takes a processing task off its worker. `notify`: tell the worker to
    /// drop it (not when the worker is dead, reported the task itself, or
    /// already let it go).
    fn unassign(&mut self, id: TaskId, notify: bool) {
        let task = &mut self.tasks[id];
        let worker = task.processing_on.take().expect("a processing task has a worker");
        let cost = std::mem::take(&mut task.cost);
        task.started = false;
        if let Some(thief) = task.stealing.take().and_then(|s| s.thief)
            && let Some(w) = self.workers.get_mut(&thief)
        {
            w.incoming_steals.remove(id);
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(id);
            w.occupancy -= cost;
            if notify {
                self.out.cancel(worker, id, self.stimulus);
            }
            self.update_worker_sets(worker);
        }
    }

    /// queued → released → waiting → (ready): the task's group stopped
    /// being root-ish; it is placed anew by the ordinary objective.
    pub(crate) fn requeue(&mut self, id: TaskId) -> Result<()> {
        self.release(id, "not-root-ish")?;
        self.released_waiting(id)
    }

    /// processing → processing: the victim let the task go; the thief runs
    /// it.
    pub(crate) fn steal_confirmed(&mut self, id: TaskId, thief: WorkerId) {
        self.unassign(id, false);
        self.assign(id, thief, "stolen");
    }

    /// processing → memory: its worker computed it.
    pub(crate) fn processing_memory(
        &mut self,
        id: TaskId,
        worker: WorkerId,
        nbytes: u64,
        duration_us: u64,
    ) -> Result<()> {
        self.learn_duration(id, duration_us);
        self.unassign(id, false);
        self.tasks[id].nbytes = Some(nbytes);
        self.add_replica(id, worker);
        self.set_state(id, TaskState::Memory, Some(worker), "");
        self.leave_dependencies(id);
        let waiters = self.tasks[id].waiters.copied();
        for d in waiters {
            let dependent = &mut self.tasks[d];
            // A waiting dependent counted this input as missing (it was
            // not in memory when the dependent started waiting, or it left
            // memory since: `memory_released` counted it again).
            if dependent.state == TaskState::Waiting {
                debug_assert!(dependent.waiting_for > 0, "a waiting task waits for something");
                dependent.waiting_for -= 1;
                if dependent.waiting_for == 0 {
                    let priority = dependent.priority;
                    self.ready.insert((priority, d));
                }
            }
        }
        let task = &self.tasks[id];
        for client in task.who_wants.sorted_copied() {
            self.out.push(Command::ReportInMemory {
                client,
                key: task.key.clone(),
                nbytes,
                stimulus: self.stimulus,
            });
        }
        if !task.is_needed() {
            self.recommend(id, Target::Settle);
        }
        Ok(())
    }

    /// released, waiting, processing → erred (`fail`). The waiting dependents fail
    /// with the same error; the clients wanting it are told.
    pub(crate) fn fail(&mut self, id: TaskId, failure: Arc<TaskFailure>, note: &'static str) -> Result<()> {
        match self.tasks[id].state {
            TaskState::Released => {}
            TaskState::Waiting => {
                self.tasks[id].waiting_for = 0;
                self.leave_dependencies(id);
            }
            TaskState::Processing => {
                self.unassign(id, false);
                self.leave_dependencies(id);
            }
            from => return Err(self.illegal(id, from, TaskState::Erred)),
        }
        self.tasks[id].error = Some(failure.clone());
        self.set_state(id, TaskState::Erred, None, note);
        for d in self.tasks[id].waiters.copied() {
            self.recommend(d, Target::Erred(failure.clone()));
        }
        let task = &self.tasks[id];
        for client in task.who_wants.sorted_copied() {
            self.out.push(Command::ReportError {
                client,
                key: task.key.clone(),
                failure: failure.clone(),
                stimulus: self.stimulus,
            });
        }
        Ok(())
    }

    /// processing → released, telling the worker (`notify`) or not.
    pub(crate) fn processing_released(&mut self, id: TaskId, notify: bool, note: &'static str) -> Result<()> {
        self.unassign(id, notify);
        self.leave_dependencies(id);
        self.after_released(id, note);
        Ok(())
    }

    /// waiting, queued, no-worker, processing, memory, erred → released.
    pub(crate) fn release(&mut self, id: TaskId, note: &'static str) -> Result<()> {
        match self.tasks[id].state {
            TaskState::Waiting => {
                self.tasks[id].waiting_for = 0;
                self.leave_dependencies(id);
            }
            TaskState::Queued => {
                self.dequeue(id);
                self.leave_dependencies(id);
            }
            TaskState::NoWorker => {
                self.no_worker.remove(&(self.tasks[id].priority, id));
                self.leave_dependencies(id);
            }
            TaskState::Processing => return self.processing_released(id, true, note),
            TaskState::Memory => self.memory_released(id),
            TaskState::Erred => {
                // The verdict is lifted: a later run starts with a clean
                // record.
                let task = &mut self.tasks[id];
                task.error = None;
                task.suspicious = 0;
            }
            from => return Err(self.illegal(id, from, TaskState::Released)),
        }
        self.after_released(id, note);
        Ok(())
    }

    /// The result goes: freed on its holders, or already lost. Dependents
    /// that counted on it wait for it again.
    fn memory_released(&mut self, id: TaskId) {
        for worker in self.tasks[id].who_has.sorted_copied() {
            self.remove_replica(id, worker);
            self.out.free(worker, id, self.stimulus);
        }
        for d in self.tasks[id].waiters.copied() {
            let dependent = &mut self.tasks[d];
            match dependent.state {
                TaskState::Waiting => {
                    dependent.waiting_for += 1;
                }
                TaskState::Queued | TaskState::NoWorker | TaskState::Processing => {
                    self.recommend(d, Target::Settle);
                }
                _ => {}
            }
        }
        let task = &self.tasks[id];
        for client in task.who_wants.sorted_copied() {
            self.out.push(Command::ReportLost {
                client,
                key: task.key.clone(),
                stimulus: self.stimulus,
            });
        }
    }

    fn after_released(&mut self, id: TaskId, note: &'static str) {
        self.set_state(id, TaskState::Released, None, note);
        let task = &self.tasks[id];
        if task.is_needed() || task.is_orphan() {
            // Needed: compute it again. Orphan: forget it.
            self.recommend(id, Target::Settle);
        }
    }

    /// released, erred → forgotten: nothing refers to the task.
    fn forget(&mut self, id: TaskId) -> Result<()> {
        let from = self.tasks[id].state;
        self.record(id, from, TaskState::Forgotten, None, "");
        let task = self.tasks.remove(id).expect("a live task is forgotten");
        self.by_key.remove(id, &task.key);
        let group = &mut self.groups[task.group];
        group.size -= 1;
        if group.size == 0 {
            let g = self.groups.remove(task.group).expect("the group is live");
            self.group_by_name.remove(&g.name);
        }
        self.rootish_dirty = true;
        for &d in task.dependencies.iter() {
            let dependency = &mut self.tasks[d];
            dependency.dependents.remove(id);
            if dependency.is_orphan() && !dependency.is_needed() {
                self.recommend(d, Target::Settle);
            }
        }
        Ok(())
    }

    /// Task `id` no longer waits for its inputs: inputs nobody else needs
    /// are released.
    fn leave_dependencies(&mut self, id: TaskId) {
        for i in 0..self.tasks[id].dependencies.len() {
            let d = self.tasks[id].dependencies[i];
            let dependency = &mut self.tasks[d];
            if dependency.waiters.remove(id) && !dependency.is_needed() {
                self.release_if_unneeded(d);
            }
        }
    }

    /// Recommends dropping a task nobody needs: released if it holds or
    /// pursues a result, forgotten if nothing refers to it either.
    pub(crate) fn release_if_unneeded(&mut self, id: TaskId) {
        let task = &self.tasks[id];
        let unneeded =
            !task.is_needed() && (!matches!(task.state, TaskState::Released | TaskState::Erred) || task.is_orphan());
        if unneeded {
            self.recommend(id, Target::Settle);
        }
    }

    /// Whether `worker` is connected and running (a thief must be).
    pub(crate) fn is_running(&self, worker: WorkerId) -> bool {
        self.workers
            .get(&worker)
            .is_some_and(|w| w.status == WorkerStatus::Running)
    }
}

#[cfg(test)]
mod tests {
    use blockwise_core::{Key, Name};

    use super::*;
    use crate::id::{ClientId, StimulusId};
    use crate::scheduler::{Event, NewTask, Submission, TaskSpec};

    fn task(name: &str, dependencies: Vec<u32>) -> NewTask {
        NewTask {
            key: Key::single(Name::new(name)),
            dependencies,
            order: 0,
            spec: Some(TaskSpec::default()),
            retries: 0,
        }
    }

    #[test]
    fn an_illegal_edge_is_an_error_carrying_the_story() {
        let mut scheduler = Scheduler::default();
        let mut sent = Vec::new();
        let submission = Submission {
            tasks: vec![task("a", vec![]), task("b", vec![0])],
            outputs: vec![1],
            priority: 0,
        };
        scheduler
            .handle(
                StimulusId::new(7),
                Event::ClientSubmitted {
                    client: ClientId::new(0),
                    submission,
                },
                &mut sent,
            )
            .unwrap();
        let b = scheduler.task_id(&Key::single(Name::new("b"))).unwrap();
        // `b` waits for `a`: it cannot be placed.
        let err = scheduler.transition(b, Target::Processing).unwrap_err();
        match &err {
            SchedulerError::IllegalTransition { key, from, to, story } => {
                assert_eq!(key, &Key::single(Name::new("b")));
                assert_eq!((*from, *to), (TaskState::Waiting, TaskState::Processing));
                assert_eq!(story.len(), 2);
                assert!(story.iter().all(|r| r.stimulus == StimulusId::new(7)));
            }
            other => panic!("expected an illegal transition, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.starts_with("illegal transition of \"b\": waiting → processing"),
            "{text}"
        );
        assert!(
            text.contains("stimulus-7 \"b\": forgotten → released (submitted)"),
            "{text}"
        );
        scheduler.recommendations.clear();
        scheduler.validate_state().unwrap();
    }

    #[test]
    fn a_second_recommendation_replaces_the_first_in_place() {
        let mut recs = Recommendations::default();
        let mut slab: crate::id::Slab<TaskId, ()> = crate::id::Slab::new();
        let (a, b) = (slab.insert(()), slab.insert(()));
        recs.push(a, Target::Settle);
        recs.push(b, Target::Settle);
        recs.push(a, Target::Processing);
        assert!(matches!(recs.pop(), Some((id, Target::Settle)) if id == b));
        assert!(matches!(recs.pop(), Some((id, Target::Processing)) if id == a));
        assert!(recs.pop().is_none());
        assert!(recs.is_empty());
    }

    #[test]
    fn a_recommendation_for_a_reused_slot_is_its_own() {
        let mut recs = Recommendations::default();
        let mut slab: crate::id::Slab<TaskId, ()> = crate::id::Slab::new();
        let old = slab.insert(());
        recs.push(old, Target::Settle);
        slab.remove(old);
        let new = slab.insert(());
        assert_eq!(new.slot(), old.slot(), "the slab reuses the slot");
        assert_ne!(new, old);
        recs.push(new, Target::Processing);
        recs.push(new, Target::Settle);
        assert!(matches!(recs.pop(), Some((id, Target::Settle)) if id == new));
        assert!(matches!(recs.pop(), Some((id, Target::Settle)) if id == old));
        assert!(recs.pop().is_none());
        // The slot is free again for a later round.
        recs.push(new, Target::Processing);
        assert!(matches!(recs.pop(), Some((id, Target::Processing)) if id == new));
    }
}
