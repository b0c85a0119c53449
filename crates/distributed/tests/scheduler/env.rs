//! `TestEnv`: a scheduler, the workers and clients around it, and a
//! recording comm — everything a scheduler test needs, without a network
//! (tako's `tests/utils`). Every event goes through [`TestEnv::handle`],
//! which validates the whole state afterwards.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use blockwise_core::{Key, Name};
use blockwise_distributed::scheduler::{
    Comm, Command, Event, SchedulerConfig, StealOutcome, TaskFailure, TaskState, TaskView, WorkerInfo,
};
use blockwise_distributed::{ClientId, RunId, Scheduler, StimulusId, TaskId, WorkerId};

use crate::workflows::Dag;

/// A key without an index (`"a"`): its group is the name's prefix.
pub(crate) fn k(name: &str) -> Key {
    Key::single(Name::new(name))
}

/// A key of layer `name` at index `i` (`("x", 3)`): its group is the layer.
pub(crate) fn ki(name: &str, i: u32) -> Key {
    Key::new(Name::new(name), &[i])
}

/// What a client was told.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Report {
    InMemory(Key),
    Error(Key, Arc<TaskFailure>),
    Lost(Key),
    Rejected(String),
}

/// Records every command; tests take out what they expect, and
/// [`RecordingComm::emptiness_check`] proves nothing else was sent.
#[derive(Default)]
pub(crate) struct RecordingComm {
    pub(crate) commands: VecDeque<Command>,
}

impl Comm for RecordingComm {
    fn send(&mut self, command: Command) {
        self.commands.push_back(command);
    }
}

impl RecordingComm {
    fn take<T>(&mut self, mut pick: impl FnMut(&Command) -> Option<T>) -> Vec<T> {
        let mut taken = Vec::new();
        self.commands.retain(|c| match pick(c) {
            Some(t) => {
                taken.push(t);
                false
            }
            None => true,
        });
        taken
    }

    /// The keys sent to `worker` to compute, in order.
    pub(crate) fn take_computes(&mut self, worker: WorkerId) -> Vec<Key> {
        self.take(|c| match c {
            Command::Compute { worker: w, compute, .. } if *w == worker => Some(compute.key.clone()),
            _ => None,
        })
    }

    /// Every compute command: (worker, key), in order.
    pub(crate) fn take_all_computes(&mut self) -> Vec<(WorkerId, Key)> {
        self.take(|c| match c {
            Command::Compute { worker, compute, .. } => Some((*worker, compute.key.clone())),
            _ => None,
        })
    }

    /// The full compute commands to `worker`.
    pub(crate) fn take_compute_commands(
        &mut self,
        worker: WorkerId,
    ) -> Vec<blockwise_distributed::scheduler::ComputeTask> {
        self.take(|c| match c {
            Command::Compute { worker: w, compute, .. } if *w == worker => Some((**compute).clone()),
            _ => None,
        })
    }

    /// The tasks `worker` was told to free.
    pub(crate) fn take_frees(&mut self, worker: WorkerId) -> Vec<TaskId> {
        let mut v: Vec<TaskId> = self
            .take(|c| match c {
                Command::Free { worker: w, tasks, .. } if *w == worker => Some(tasks.clone()),
                _ => None,
            })
            .concat();
        v.sort();
        v
    }

    /// The tasks `worker` was told to cancel.
    pub(crate) fn take_cancels(&mut self, worker: WorkerId) -> Vec<TaskId> {
        let mut v: Vec<TaskId> = self
            .take(|c| match c {
                Command::Cancel { worker: w, tasks, .. } if *w == worker => Some(tasks.clone()),
                _ => None,
            })
            .concat();
        v.sort();
        v
    }

    /// Steal requests: (victim, task, request stimulus).
    pub(crate) fn take_steal_requests(&mut self) -> Vec<(WorkerId, TaskId, StimulusId)> {
        self.take(|c| match c {
            Command::StealRequest { worker, task, stimulus } => Some((*worker, *task, *stimulus)),
            _ => None,
        })
    }

    /// What `client` was told, in order.
    pub(crate) fn take_reports(&mut self, client: ClientId) -> Vec<Report> {
        self.take(|c| match c {
            Command::ReportInMemory { client: x, key, .. } if *x == client => Some(Report::InMemory(key.clone())),
            Command::ReportError {
                client: x,
                key,
                failure,
                ..
            } if *x == client => Some(Report::Error(key.clone(), failure.clone())),
            Command::ReportLost { client: x, key, .. } if *x == client => Some(Report::Lost(key.clone())),
            Command::Rejected { client: x, message, .. } if *x == client => Some(Report::Rejected(message.clone())),
            _ => None,
        })
    }

    /// Fails if any command was not taken by the test.
    #[track_caller]
    pub(crate) fn emptiness_check(&self) {
        assert!(
            self.commands.is_empty(),
            "commands not checked by the test: {:#?}",
            self.commands
        );
    }

    /// Drops everything recorded so far.
    pub(crate) fn clear(&mut self) {
        self.commands.clear();
    }
}

pub(crate) struct TestEnv {
    pub(crate) scheduler: Scheduler,
    pub(crate) comm: RecordingComm,
    next_stimulus: u64,
    next_worker: u32,
    next_client: u32,
    /// Every task id ever seen, with its key (forgotten tasks included), to
    /// read commands about tasks the scheduler no longer knows.
    names: HashMap<TaskId, Key>,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    pub(crate) fn new() -> Self {
        Self::with_config(SchedulerConfig::default())
    }

    pub(crate) fn with_config(config: SchedulerConfig) -> Self {
        TestEnv {
            scheduler: Scheduler::new(config),
            comm: RecordingComm::default(),
            next_stimulus: 1,
            next_worker: 0,
            next_client: 0,
            names: HashMap::new(),
        }
    }

    /// Handles an event, then checks every invariant.
    #[track_caller]
    pub(crate) fn handle(&mut self, event: Event) -> StimulusId {
        let stimulus = StimulusId::new(self.next_stimulus);
        self.next_stimulus += 1;
        let described = format!("{event:?}");
        if let Err(e) = self.scheduler.handle(stimulus, event, &mut self.comm) {
            panic!("handling {described} failed: {e}");
        }
        for c in &self.comm.commands {
            if let Command::Compute { compute, .. } = c {
                self.names.insert(compute.task, compute.key.clone());
            }
        }
        if let Err(e) = self.scheduler.validate_state() {
            let log: Vec<String> = self
                .scheduler
                .transition_log()
                .filter(|r| r.stimulus == stimulus)
                .map(|r| r.to_string())
                .collect();
            panic!("after {described}: {e}\nthis event:\n{}", log.join("\n"));
        }
        stimulus
    }

    pub(crate) fn events(&self) -> u64 {
        self.next_stimulus - 1
    }

    pub(crate) fn add_worker(&mut self, threads: u32) -> WorkerId {
        let worker = WorkerId::new(self.next_worker);
        self.next_worker += 1;
        self.handle(Event::WorkerJoined {
            worker,
            info: WorkerInfo {
                name: format!("w{}", worker.get()),
                threads,
                memory_limit: 1 << 30,
                resources: Default::default(),
            },
        });
        worker
    }

    pub(crate) fn add_workers(&mut self, n: usize, threads: u32) -> Vec<WorkerId> {
        (0..n).map(|_| self.add_worker(threads)).collect()
    }

    pub(crate) fn new_client(&mut self) -> ClientId {
        let c = ClientId::new(self.next_client);
        self.next_client += 1;
        c
    }

    /// Submits a fixture for `client`.
    pub(crate) fn submit(&mut self, client: ClientId, dag: &Dag) -> StimulusId {
        let s = self.handle(Event::ClientSubmitted {
            client,
            submission: dag.submission(),
        });
        for key in dag.keys() {
            if let Some(id) = self.scheduler.task_id(key) {
                self.names.insert(id, key.clone());
            }
        }
        s
    }

    pub(crate) fn id(&self, key: &Key) -> TaskId {
        self.scheduler
            .task_id(key)
            .unwrap_or_else(|| panic!("{key} is not known"))
    }

    pub(crate) fn name(&self, id: TaskId) -> Key {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} was never seen"))
    }

    pub(crate) fn names(&self, ids: &[TaskId]) -> Vec<Key> {
        let mut v: Vec<Key> = ids.iter().map(|&id| self.name(id)).collect();
        v.sort();
        v
    }

    /// The keys `worker` was told to free, sorted.
    pub(crate) fn freed(&mut self, worker: WorkerId) -> Vec<Key> {
        let ids = self.comm.take_frees(worker);
        self.names(&ids)
    }

    /// The keys `worker` was told to cancel, sorted.
    pub(crate) fn cancelled(&mut self, worker: WorkerId) -> Vec<Key> {
        let ids = self.comm.take_cancels(worker);
        self.names(&ids)
    }

    pub(crate) fn state(&self, key: &Key) -> Option<TaskState> {
        self.scheduler.state_of(key)
    }

    pub(crate) fn task(&self, key: &Key) -> TaskView {
        self.scheduler.task(key).unwrap_or_else(|| panic!("{key} is not known"))
    }

    #[track_caller]
    pub(crate) fn processing_on(&self, key: &Key) -> WorkerId {
        self.task(key)
            .processing_on
            .unwrap_or_else(|| panic!("{key} is not processing: {:?}", self.state(key)))
    }

    /// The current run of a processing task.
    #[track_caller]
    pub(crate) fn run(&self, key: &Key) -> RunId {
        self.task(key)
            .run
            .unwrap_or_else(|| panic!("{key} is not processing: {:?}", self.state(key)))
    }

    pub(crate) fn start(&mut self, key: &Key) {
        let worker = self.processing_on(key);
        let task = self.id(key);
        let run = self.run(key);
        self.handle(Event::TaskStarted { worker, task, run });
    }

    /// Its worker starts and finishes `key` with a result of `nbytes`,
    /// having run 1 ms.
    pub(crate) fn finish(&mut self, key: &Key, nbytes: u64) {
        let worker = self.processing_on(key);
        self.finish_on(worker, key, nbytes);
    }

    pub(crate) fn finish_on(&mut self, worker: WorkerId, key: &Key, nbytes: u64) {
        self.finish_on_taking(worker, key, nbytes, 1000);
    }

    /// Its worker starts and finishes `key` with a result of `nbytes`,
    /// having run `duration_us`.
    pub(crate) fn finish_taking(&mut self, key: &Key, nbytes: u64, duration_us: u64) {
        let worker = self.processing_on(key);
        self.finish_on_taking(worker, key, nbytes, duration_us);
    }

    fn finish_on_taking(&mut self, worker: WorkerId, key: &Key, nbytes: u64, duration_us: u64) {
        let task = self.id(key);
        let run = self.run(key);
        self.handle(Event::TaskStarted { worker, task, run });
        self.handle(Event::TaskFinished {
            worker,
            task,
            run,
            nbytes,
            duration_us,
        });
    }

    pub(crate) fn fail(&mut self, key: &Key, message: &str) {
        let worker = self.processing_on(key);
        let task = self.id(key);
        let run = self.run(key);
        self.handle(Event::TaskStarted { worker, task, run });
        self.handle(Event::TaskErred {
            worker,
            task,
            run,
            message: message.to_string(),
        });
    }

    pub(crate) fn kill(&mut self, worker: WorkerId) {
        self.handle(Event::WorkerLost {
            worker,
            graceful: false,
        });
    }

    pub(crate) fn release(&mut self, client: ClientId, keys: &[Key]) {
        self.handle(Event::ClientReleased {
            client,
            keys: keys.to_vec(),
        });
    }

    pub(crate) fn balance(&mut self) {
        self.handle(Event::Balance);
    }

    pub(crate) fn steal_response(
        &mut self,
        victim: WorkerId,
        task: TaskId,
        request: StimulusId,
        outcome: StealOutcome,
    ) {
        self.handle(Event::StealResponse {
            worker: victim,
            task,
            request,
            outcome,
        });
    }

    /// The keys processing on `worker`, sorted.
    pub(crate) fn processing(&self, worker: WorkerId) -> Vec<Key> {
        let w = self.scheduler.worker(worker).expect("worker is connected");
        self.names(&w.processing)
    }

    /// The keys whose results `worker` holds, sorted.
    pub(crate) fn has_what(&self, worker: WorkerId) -> Vec<Key> {
        let w = self.scheduler.worker(worker).expect("worker is connected");
        self.names(&w.has_what)
    }

    /// The queued keys, most urgent first.
    pub(crate) fn queued(&self) -> Vec<Key> {
        self.scheduler.queued().iter().map(|&id| self.name(id)).collect()
    }
}
