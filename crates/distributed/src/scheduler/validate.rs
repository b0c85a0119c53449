//! The invariant checker (tako's `sanity_check`, distributed's
//! `validate_state`). Tests run it after every event; it walks the whole
//! state, so it is for tests and debugging, not for every event of a
//! production server.

use std::collections::BTreeSet;

use crate::id::{GroupId, IdMap, IdSet, TaskId};
use crate::scheduler::story::SchedulerError;
use crate::scheduler::task::TaskState;
use crate::scheduler::{Result, Scheduler, WorkerStatus};

macro_rules! check {
    ($self:ident, $cond:expr, $id:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($self.violation($id, format!($($arg)+)));
        }
    };
}

impl Scheduler {
    fn violation(&self, id: Option<TaskId>, message: String) -> SchedulerError {
        let key = id.and_then(|id| self.tasks.get(id)).map(|t| t.key.clone());
        SchedulerError::Invariant {
            story: key.as_ref().map(|k| self.story(k)).unwrap_or_default(),
            key,
            message,
        }
    }

    /// Checks every invariant of the state between events (listed in
    /// [`crate::scheduler`]); the first one broken is returned, with the
    /// story of the key involved.
    pub fn validate_state(&self) -> Result<()> {
        self.validate_tasks()?;
        self.validate_workers()?;
        self.validate_clients()?;
        self.validate_sets()?;
        Ok(())
    }

    fn validate_tasks(&self) -> Result<()> {
        use TaskState as S;
        check!(
            self,
            self.by_key.len() == self.tasks.len(),
            None,
            "{} keys are indexed for {} tasks",
            self.by_key.len(),
            self.tasks.len()
        );
        check!(
            self,
            self.recommendations.is_empty() && self.ready.is_empty(),
            None,
            "recommendations or ready tasks left over after an event"
        );
        let mut group_sizes: IdMap<GroupId, u32> = IdMap::default();
        let mut group_queued: IdMap<GroupId, u32> = IdMap::default();
        for (id, t) in self.tasks.iter() {
            let some = Some(id);
            check!(
                self,
                self.by_key.get(&self.tasks, &t.key) == Some(id),
                some,
                "{} is not indexed by its key",
                t.key
            );
            check!(
                self,
                self.groups.contains(t.group),
                some,
                "{} belongs to a dead group",
                t.key
            );
            *group_sizes.entry(t.group).or_default() += 1;
            if t.state == S::Queued {
                *group_queued.entry(t.group).or_default() += 1;
            }
            // Structure.
            for &d in t.dependencies.iter() {
                let Some(dep) = self.tasks.get(d) else {
                    return Err(self.violation(some, format!("{} reads a forgotten task {d}", t.key)));
                };
                check!(
                    self,
                    dep.dependents.contains(id),
                    some,
                    "{} is not a dependent of its input {}",
                    t.key,
                    dep.key
                );
            }
            for d in t.dependents.iter() {
                let Some(dep) = self.tasks.get(d) else {
                    return Err(self.violation(some, format!("{} has a forgotten dependent {d}", t.key)));
                };
                check!(
                    self,
                    dep.dependencies.contains(&id),
                    some,
                    "{} lists {} as dependent, not vice versa",
                    t.key,
                    dep.key
                );
            }
            // Waiters: exactly the dependents that still need this result.
            let waiters: IdSet<TaskId> = t
                .dependents
                .iter()
                .filter(|&d| self.tasks[d].state.needs_dependencies())
                .collect();
            check!(
                self,
                t.waiters == waiters,
                some,
                "{}: waiters {:?}, expected {:?}",
                t.key,
                t.waiters,
                waiters
            );
            // Waiting on: exactly the inputs not in memory, while waiting.
            if t.state == S::Waiting {
                let missing: Vec<TaskId> = t
                    .dependencies
                    .iter()
                    .copied()
                    .filter(|&d| self.tasks[d].state != S::Memory)
                    .collect();
                check!(
                    self,
                    t.waiting_for as usize == missing.len(),
                    some,
                    "{}: waiting for {} inputs, missing {:?}",
                    t.key,
                    t.waiting_for,
                    missing
                );
                check!(
                    self,
                    !missing.is_empty(),
                    some,
                    "{} waits with every input in memory",
                    t.key
                );
                for &d in &missing {
                    let state = self.tasks[d].state;
                    check!(
                        self,
                        state.needs_dependencies(),
                        some,
                        "{} waits on {} which is {state}: nothing will bring it to memory",
                        t.key,
                        self.tasks[d].key
                    );
                }
            } else {
                check!(
                    self,
                    t.waiting_for == 0,
                    some,
                    "{} is {} and waits for {} inputs",
                    t.key,
                    t.state,
                    t.waiting_for
                );
            }
            if matches!(t.state, S::Queued | S::NoWorker | S::Processing) {
                for &d in t.dependencies.iter() {
                    check!(
                        self,
                        self.tasks[d].state == S::Memory,
                        some,
                        "{} is {} but its input {} is {}",
                        t.key,
                        t.state,
                        self.tasks[d].key,
                        self.tasks[d].state
                    );
                }
            }
            // Needed-ness: only released and erred tasks may be unneeded;
            // released ones must be.
            match t.state {
                S::Released => {
                    check!(self, !t.is_needed(), some, "{} is released but needed", t.key);
                    check!(
                        self,
                        !t.is_orphan(),
                        some,
                        "{} is released and referred to by nothing: not forgotten",
                        t.key
                    );
                }
                S::Erred => {
                    check!(
                        self,
                        t.waiters.is_empty(),
                        some,
                        "{} is erred with waiting dependents",
                        t.key
                    );
                    check!(
                        self,
                        !t.is_orphan(),
                        some,
                        "{} is erred and referred to by nothing: not forgotten",
                        t.key
                    );
                }
                S::Forgotten => return Err(self.violation(some, format!("{} is stored as forgotten", t.key))),
                _ => check!(
                    self,
                    t.is_needed(),
                    some,
                    "{} is {} but nobody needs it",
                    t.key,
                    t.state
                ),
            }
            // Processing.
            check!(
                self,
                (t.state == S::Processing) == t.processing_on.is_some(),
                some,
                "{} is {} with processing_on {:?}",
                t.key,
                t.state,
                t.processing_on
            );
            if let Some(w) = t.processing_on {
                let Some(worker) = self.workers.get(&w) else {
                    return Err(self.violation(some, format!("{} is processing on unknown {w}", t.key)));
                };
                check!(
                    self,
                    worker.processing.contains(id),
                    some,
                    "{} is not in {w}'s processing set",
                    t.key
                );
            } else {
                check!(
                    self,
                    t.cost == 0 && !t.started && t.stealing.is_none(),
                    some,
                    "{} keeps processing data while {}",
                    t.key,
                    t.state
                );
            }
            if let Some(thief) = t.stealing.and_then(|steal| steal.thief) {
                let Some(w) = self.workers.get(&thief) else {
                    return Err(self.violation(some, format!("{} is being stolen by unknown {thief}", t.key)));
                };
                check!(
                    self,
                    w.incoming_steals.contains(id),
                    some,
                    "{} is being stolen by {thief}, which does not know",
                    t.key
                );
                check!(
                    self,
                    Some(thief) != t.processing_on,
                    some,
                    "{} is being stolen by its own worker",
                    t.key
                );
            }
            // Memory.
            check!(
                self,
                (t.state == S::Memory) != t.who_has.is_empty(),
                some,
                "{} is {} with holders {:?}",
                t.key,
                t.state,
                t.who_has
            );
            if t.state == S::Memory {
                check!(self, t.nbytes.is_some(), some, "{} is in memory with no size", t.key);
            }
            for w in t.who_has.iter() {
                let Some(worker) = self.workers.get(&w) else {
                    return Err(self.violation(some, format!("{} is held by unknown {w}", t.key)));
                };
                check!(
                    self,
                    worker.has_what.contains(id),
                    some,
                    "{} lists {w} as holder, {w} does not",
                    t.key
                );
            }
            // Errors.
            check!(
                self,
                (t.state == S::Erred) == t.error.is_some(),
                some,
                "{} is {} with error {:?}",
                t.key,
                t.state,
                t.error
            );
            check!(
                self,
                t.state == S::Erred || t.suspicious <= self.config.allowed_failures,
                some,
                "{} has {} strikes and is not erred",
                t.key,
                t.suspicious
            );
            // Clients.
            for c in t.who_wants.iter() {
                let Some(client) = self.clients.get(&c) else {
                    return Err(self.violation(some, format!("{} is wanted by unknown {c}", t.key)));
                };
                check!(
                    self,
                    client.wants.contains(id),
                    some,
                    "{} lists {c} as wanting it, {c} does not",
                    t.key
                );
            }
            // Queues.
            let key = (t.priority, id);
            check!(
                self,
                (t.state == S::Queued) == self.queued.contains(&key),
                some,
                "{} is {} and queued={}",
                t.key,
                t.state,
                self.queued.contains(&key)
            );
            check!(
                self,
                (t.state == S::NoWorker) == self.no_worker.contains(&key),
                some,
                "{} is {} and in no-worker={}",
                t.key,
                t.state,
                self.no_worker.contains(&key)
            );
            if t.state == S::Queued {
                check!(self, self.is_rootish(id), some, "{} is queued but not root-ish", t.key);
            }
        }
        // Groups.
        check!(
            self,
            self.groups.len() == group_sizes.len() && self.group_by_name.len() == self.groups.len(),
            None,
            "{} groups ({} named) for tasks in {} groups",
            self.groups.len(),
            self.group_by_name.len(),
            group_sizes.len()
        );
        for (g, group) in self.groups.iter() {
            check!(
                self,
                group_sizes.get(&g).copied() == Some(group.size),
                None,
                "group {} has size {}, counted {:?}",
                group.name,
                group.size,
                group_sizes.get(&g)
            );
            let queued = group_queued.get(&g).copied().unwrap_or(0);
            check!(
                self,
                group.queued == queued,
                None,
                "group {} counts {} queued, found {queued}",
                group.name,
                group.queued
            );
            check!(
                self,
                self.queued_groups.contains(&g) == (queued > 0),
                None,
                "group {} with {queued} queued tasks is listed as queued: {}",
                group.name,
                self.queued_groups.contains(&g)
            );
            check!(
                self,
                self.group_by_name.get(&group.name) == Some(&g),
                None,
                "group {} is not indexed by name",
                group.name
            );
        }
        Ok(())
    }

    fn validate_workers(&self) -> Result<()> {
        let mut threads = 0u64;
        for (&w, worker) in self.workers.iter() {
            threads += u64::from(worker.info.threads);
            check!(
                self,
                self.newest_worker.is_some_and(|n| w <= n),
                None,
                "{w} is newer than the newest worker"
            );
            let mut occupancy = 0u64;
            for t in worker.processing.iter() {
                let Some(task) = self.tasks.get(t) else {
                    return Err(self.violation(None, format!("{w} processes forgotten {t}")));
                };
                check!(
                    self,
                    task.processing_on == Some(w),
                    Some(t),
                    "{w} processes {} which is on {:?}",
                    task.key,
                    task.processing_on
                );
                occupancy += task.cost;
            }
            check!(
                self,
                worker.occupancy == occupancy,
                None,
                "{w} has occupancy {} but its tasks cost {occupancy}",
                worker.occupancy
            );
            let mut nbytes = 0u64;
            for t in worker.has_what.iter() {
                let Some(task) = self.tasks.get(t) else {
                    return Err(self.violation(None, format!("{w} holds forgotten {t}")));
                };
                check!(
                    self,
                    task.who_has.contains(w),
                    Some(t),
                    "{w} holds {} which does not list it",
                    task.key
                );
                nbytes += task.nbytes.unwrap_or(0);
            }
            check!(
                self,
                worker.nbytes == nbytes,
                None,
                "{w} holds {} bytes by its count, {nbytes} by its results",
                worker.nbytes
            );
            for t in worker.incoming_steals.iter() {
                let Some(task) = self.tasks.get(t) else {
                    return Err(self.violation(None, format!("{w} expects forgotten {t} stolen")));
                };
                check!(
                    self,
                    task.stealing.is_some_and(|s| s.thief == Some(w)),
                    Some(t),
                    "{w} expects {} stolen, the task says {:?}",
                    task.key,
                    task.stealing
                );
            }
            let running = worker.status == WorkerStatus::Running;
            check!(
                self,
                self.running.contains(&w) == running,
                None,
                "{w} is {:?}, in running set: {}",
                worker.status,
                !running
            );
            let slots = running
                && self
                    .config
                    .has_free_slot(worker.info.threads, worker.processing.len(), worker.occupancy);
            check!(
                self,
                self.with_slots.contains(&w) == slots,
                None,
                "{w} has free slots: {slots}, listed: {}",
                !slots
            );
        }
        check!(
            self,
            self.total_threads == threads,
            None,
            "total threads {} but workers have {threads}",
            self.total_threads
        );
        for w in self.running.iter().chain(self.with_slots.iter()) {
            check!(
                self,
                self.workers.contains_key(w),
                None,
                "unknown {w} is listed as running"
            );
        }
        Ok(())
    }

    fn validate_clients(&self) -> Result<()> {
        for (&c, client) in self.clients.iter() {
            for t in client.wants.iter() {
                let Some(task) = self.tasks.get(t) else {
                    return Err(self.violation(None, format!("{c} wants forgotten {t}")));
                };
                check!(
                    self,
                    task.who_wants.contains(c),
                    Some(t),
                    "{c} wants {}, which does not list it",
                    task.key
                );
            }
        }
        Ok(())
    }

    fn validate_sets(&self) -> Result<()> {
        check!(
            self,
            self.log.len() <= self.log.capacity(),
            None,
            "the transition log outgrew its bound"
        );
        for &(_, id) in self.queued.iter().chain(self.no_worker.iter()) {
            check!(
                self,
                self.tasks.contains(id),
                None,
                "forgotten {id} is queued or in no-worker"
            );
        }
        // The queue is what the workers cannot take yet: never a free slot
        // beside a queued task (that would be a stall).
        check!(
            self,
            self.queued.is_empty() || self.with_slots.is_empty(),
            self.queued.first().map(|&(_, id)| id),
            "{} tasks are queued while {:?} have free slots",
            self.queued.len(),
            self.with_slots
        );
        // No-worker tasks exist only while no worker runs.
        check!(
            self,
            self.no_worker.is_empty() || self.running.is_empty(),
            self.no_worker.first().map(|&(_, id)| id),
            "{} tasks wait for a worker while {:?} run",
            self.no_worker.len(),
            self.running
        );
        let queued_groups: BTreeSet<_> = self.queued.iter().map(|&(_, id)| self.tasks[id].group).collect();
        check!(
            self,
            queued_groups == self.queued_groups,
            None,
            "queued groups {:?}, listed {:?}",
            queued_groups,
            self.queued_groups
        );
        Ok(())
    }
}
