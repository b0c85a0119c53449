//! Where tasks run: the worker objective, root-task queuing, work stealing.
//! The reasoning is in [`crate::scheduler`].

use std::cmp::Reverse;

use crate::id::{GroupId, IdMap, StimulusId, TaskId, WorkerId};
use crate::scheduler::command::Command;
use crate::scheduler::task::{Steal, TaskState};
use crate::scheduler::{Scheduler, WorkerStatus};

/// Up to this many running workers, every one is a candidate for every task.
/// Beyond, only the holders of a task's inputs and the workers with free
/// slots are (the objective is linear in the candidates).
const SMALL_CLUSTER: usize = 32;

/// A root-ish group reads fewer than this many tasks in all, from fewer than
/// this many groups (Dask's constant).
const ROOTISH_MAX_DEPENDENCIES: u64 = 5;

/// Tasks of one victim looked at per steal.
const STEAL_SCAN: usize = 256;

impl Scheduler {
    /// Whether a ready task is root-ish: its group is larger than twice the
    /// cluster's threads and reads fewer than five tasks in all. Such tasks
    /// are withheld beyond the workers' slots (see "Why root tasks are
    /// queued").
    ///
    /// Unlike Dask, a task reading a task of its own group is never
    /// root-ish: `inc(inc(inc(x)))` from `delayed` is one `inc` group, and
    /// its links are a chain, not a fan of roots.
    pub(crate) fn is_rootish(&self, id: TaskId) -> bool {
        let task = &self.tasks[id];
        task.dependencies.iter().all(|&d| self.tasks[d].group != task.group) && self.group_is_rootish(task.group)
    }

    pub(crate) fn group_is_rootish(&self, group: GroupId) -> bool {
        let g = &self.groups[group];
        if u64::from(g.size) <= 2 * self.total_threads {
            return false;
        }
        let mut groups = 0u64;
        let mut tasks = 0u64;
        for d in g.dependencies.iter() {
            if let Some(dg) = self.groups.get(d) {
                groups += 1;
                tasks += u64::from(dg.size);
            }
        }
        groups < ROOTISH_MAX_DEPENDENCIES && tasks < ROOTISH_MAX_DEPENDENCIES
    }

    /// Root-ish tasks queued in a group that stopped being root-ish (workers
    /// joined, the group shrank) go back through the ordinary placement.
    pub(crate) fn requeue_non_rootish(&mut self) -> crate::scheduler::Result<()> {
        let flipped: Vec<GroupId> = self
            .queued_groups
            .iter()
            .copied()
            .filter(|&g| !self.group_is_rootish(g))
            .collect();
        if flipped.is_empty() {
            return Ok(());
        }
        let moved: Vec<TaskId> = self
            .queued
            .iter()
            .map(|&(_, id)| id)
            .filter(|&id| flipped.contains(&self.tasks[id].group))
            .collect();
        for id in moved {
            self.requeue(id)?;
        }
        Ok(())
    }

    /// The least loaded running worker with a free slot, for a root-ish task
    /// (Dask's `decide_worker_rootish_queuing_enabled`). Fewest tasks per
    /// thread, then least data held, then the oldest worker.
    pub(crate) fn pick_worker_for_root(&self) -> Option<WorkerId> {
        self.with_slots.iter().copied().min_by(|&a, &b| {
            let (wa, wb) = (&self.workers[&a], &self.workers[&b]);
            let load_a = wa.processing.len() as u64 * u64::from(wb.info.threads);
            let load_b = wb.processing.len() as u64 * u64::from(wa.info.threads);
            load_a.cmp(&load_b).then(wa.nbytes.cmp(&wb.nbytes)).then(a.cmp(&b))
        })
    }

    /// The running worker that can start task `id` soonest (Dask's
    /// `worker_objective`): its backlog per thread plus the time to fetch
    /// the inputs it lacks; ties go to the worker holding less data.
    pub(crate) fn pick_worker(&self, id: TaskId) -> Option<WorkerId> {
        let task = &self.tasks[id];
        let mut local: IdMap<WorkerId, u64> = IdMap::default();
        let mut total = 0u64;
        for &d in task.dependencies.iter() {
            let dependency = &self.tasks[d];
            let nbytes = dependency.nbytes.unwrap_or(self.config.default_data_size);
            total += nbytes;
            for w in dependency.who_has.iter() {
                *local.entry(w).or_default() += nbytes;
            }
        }
        let objective = |w: WorkerId| {
            let worker = &self.workers[&w];
            let missing = total - local.get(&w).copied().unwrap_or(0);
            let start = worker.occupancy / u64::from(worker.info.threads) + self.transfer_us(missing);
            (start, worker.nbytes, w)
        };
        if self.running.len() <= SMALL_CLUSTER {
            return self.running.iter().copied().min_by_key(|&w| objective(w));
        }
        let mut candidates: Vec<WorkerId> = local.keys().copied().filter(|w| self.running.contains(w)).collect();
        candidates.extend(self.with_slots.iter().copied());
        if candidates.is_empty() {
            return self.running.iter().copied().min_by_key(|&w| objective(w));
        }
        candidates.into_iter().min_by_key(|&w| objective(w))
    }

    /// Bytes of task `id`'s inputs that `worker` does not hold.
    pub(crate) fn missing_bytes(&self, id: TaskId, worker: WorkerId) -> u64 {
        self.tasks[id]
            .dependencies
            .iter()
            .map(|&d| &self.tasks[d])
            .filter(|d| !d.who_has.contains(worker))
            .map(|d| d.nbytes.unwrap_or(self.config.default_data_size))
            .sum()
    }

    /// Microseconds to move `bytes` between workers.
    pub(crate) fn transfer_us(&self, bytes: u64) -> u64 {
        let us = u128::from(bytes) * 1_000_000 / u128::from(self.config.bandwidth.max(1));
        u64::try_from(us).unwrap_or(u64::MAX)
    }

    /// Expected compute time of task `id`, microseconds: the moving average
    /// of its prefix, or the configured guess for a prefix never seen.
    pub(crate) fn duration_estimate(&self, id: TaskId) -> u64 {
        let prefix = self.groups[self.tasks[id].group].prefix;
        self.prefixes[prefix]
            .duration
            .unwrap_or(self.config.unknown_task_duration_us)
    }

    pub(crate) fn learn_duration(&mut self, id: TaskId, duration_us: u64) {
        let prefix = self.groups[self.tasks[id].group].prefix;
        let p = &mut self.prefixes[prefix];
        p.duration = Some(match p.duration {
            None => duration_us,
            Some(old) => old / 2 + duration_us / 2,
        });
    }

    /// Keeps `with_slots` in step with a worker's status and load.
    pub(crate) fn update_worker_sets(&mut self, worker: WorkerId) {
        let has_slots = self.workers.get(&worker).is_some_and(|w| {
            w.status == WorkerStatus::Running
                && self
                    .config
                    .has_free_slot(w.info.threads, w.processing.len(), w.occupancy)
        });
        if has_slots {
            self.with_slots.insert(worker);
        } else {
            self.with_slots.remove(&worker);
        }
    }

    /// Work stealing: each running worker with an idle thread takes a
    /// not-yet-started task from the most backed-up worker, if it would
    /// finish it before that worker would get through its backlog.
    pub(crate) fn balance(&mut self) {
        if !self.config.work_stealing {
            return;
        }
        let spare = |s: &Scheduler, w: WorkerId| {
            let worker = &s.workers[&w];
            (worker.info.threads as usize).saturating_sub(worker.processing.len() + worker.incoming_steals.len())
        };
        let mut thieves: Vec<WorkerId> = self.running.iter().copied().filter(|&w| spare(self, w) > 0).collect();
        let mut victims: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.processing.len() > w.info.threads as usize)
            .map(|(&id, _)| id)
            .collect();
        if thieves.is_empty() || victims.is_empty() {
            return;
        }
        // Projected occupancy, as steals are decided.
        let mut occupancy: IdMap<WorkerId, u64> = self.workers.iter().map(|(&id, w)| (id, w.occupancy)).collect();
        let mut leaving: IdMap<WorkerId, usize> = IdMap::default();
        let per_thread = |s: &Scheduler, occupancy: &IdMap<WorkerId, u64>, w: WorkerId| {
            occupancy[&w] / u64::from(s.workers[&w].info.threads)
        };
        thieves.sort_by_key(|&w| (per_thread(self, &occupancy, w), w));
        for thief in thieves {
            while spare(self, thief) > 0 {
                victims.retain(|&v| {
                    let w = &self.workers[&v];
                    w.processing.len() - leaving.get(&v).copied().unwrap_or(0) > w.info.threads as usize
                });
                let Some(&victim) = victims
                    .iter()
                    .max_by_key(|&&v| (per_thread(self, &occupancy, v), Reverse(v)))
                else {
                    return;
                };
                let candidate = self.workers[&victim]
                    .processing
                    .iter()
                    .filter(|&t| {
                        let task = &self.tasks[t];
                        !task.started && task.stealing.is_none()
                    })
                    .take(STEAL_SCAN)
                    .min_by_key(|&t| (self.missing_bytes(t, thief), Reverse(self.tasks[t].priority), t));
                let Some(task) = candidate else {
                    victims.retain(|&v| v != victim);
                    continue;
                };
                let duration = self.duration_estimate(task);
                let transfer = self.transfer_us(self.missing_bytes(task, thief));
                let finish_on_thief = per_thread(self, &occupancy, thief) + transfer + duration;
                if finish_on_thief >= per_thread(self, &occupancy, victim) {
                    break;
                }
                self.request_steal(task, victim, thief, self.stimulus);
                *occupancy.get_mut(&thief).expect("thief is known") += transfer + duration;
                let cost = self.tasks[task].cost;
                let v = occupancy.get_mut(&victim).expect("victim is known");
                *v = v.saturating_sub(cost);
                *leaving.entry(victim).or_default() += 1;
            }
        }
    }

    fn request_steal(&mut self, id: TaskId, victim: WorkerId, thief: WorkerId, request: StimulusId) {
        self.tasks[id].stealing = Some(Steal {
            thief: Some(thief),
            request,
        });
        self.workers
            .get_mut(&thief)
            .expect("thief is known")
            .incoming_steals
            .insert(id);
        self.record(
            id,
            TaskState::Processing,
            TaskState::Processing,
            Some(thief),
            "steal-request",
        );
        self.out.push(Command::StealRequest {
            worker: victim,
            task: id,
            stimulus: request,
        });
    }
}
