//! What goes into the scheduler: events, and the submissions they carry.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use blockwise_core::{Error, Key, Plan, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::{ClientId, RunId, StimulusId, TaskId, WorkerId};

/// Something that happened, told to [`crate::scheduler::Scheduler::handle`].
///
/// Events from workers and clients may be stale: a worker that finished a
/// task just as the scheduler declared it dead, a client releasing a key
/// twice. Every handler accepts that and ignores what no longer applies; only
/// a driver bug (a worker id used twice) is an error.
#[derive(Clone, Debug)]
pub enum Event {
    /// A worker connected (after its handshake).
    WorkerJoined {
        /// A new id, greater than every worker id used before.
        worker: WorkerId,
        /// What it offers.
        info: WorkerInfo,
    },
    /// A worker is gone: its connection broke, or it said goodbye.
    WorkerLost {
        /// The worker.
        worker: WorkerId,
        /// It left on purpose (retired, closed), so the tasks it was running
        /// are not suspected of killing it.
        graceful: bool,
    },
    /// A worker paused (its memory is above the pause threshold) or resumed.
    /// A paused worker keeps its tasks and data and gets no new tasks.
    WorkerPaused {
        /// The worker.
        worker: WorkerId,
        /// Paused (true) or running again (false).
        paused: bool,
    },
    /// A worker's periodic report.
    WorkerHeartbeat {
        /// The worker.
        worker: WorkerId,
        /// Its resource use.
        metrics: WorkerMetrics,
    },
    /// A client submitted a graph and wants its outputs.
    ClientSubmitted {
        /// The client (known or new).
        client: ClientId,
        /// The tasks.
        submission: Submission,
    },
    /// A client no longer wants these keys.
    ClientReleased {
        /// The client.
        client: ClientId,
        /// Keys it wanted.
        keys: Vec<Key>,
    },
    /// A client disconnected: everything it wanted is released.
    ClientDisconnected {
        /// The client.
        client: ClientId,
    },
    /// A worker started running a task (its inputs are local and a thread
    /// took it). Only started tasks are blamed when a worker dies, and only
    /// tasks not started are stolen.
    TaskStarted {
        /// The worker.
        worker: WorkerId,
        /// The task.
        task: TaskId,
        /// The run, from [`crate::scheduler::ComputeTask::run`].
        run: RunId,
    },
    /// A worker computed a task and holds its result.
    TaskFinished {
        /// The worker.
        worker: WorkerId,
        /// The task.
        task: TaskId,
        /// The run, from [`crate::scheduler::ComputeTask::run`]: a result
        /// of an older run is ignored (the worker dropped it when it was
        /// cancelled).
        run: RunId,
        /// Size of the result in bytes.
        nbytes: u64,
        /// Time the op ran, in microseconds (teaches the scheduler how long
        /// tasks of this prefix take).
        duration_us: u64,
    },
    /// A task's op failed on a worker.
    TaskErred {
        /// The worker.
        worker: WorkerId,
        /// The task.
        task: TaskId,
        /// The run, from [`crate::scheduler::ComputeTask::run`].
        run: RunId,
        /// The error, for a person.
        message: String,
    },
    /// A worker fetched results from peers and now holds copies.
    ReplicasAdded {
        /// The worker.
        worker: WorkerId,
        /// The tasks whose results it holds.
        tasks: Vec<TaskId>,
    },
    /// A worker asked `holder` for a result and `holder` did not have it (or
    /// could not be reached).
    DataMissing {
        /// The worker that asked.
        worker: WorkerId,
        /// The result it asked for.
        task: TaskId,
        /// The worker that should have had it.
        holder: WorkerId,
    },
    /// A worker's answer to [`crate::scheduler::Command::StealRequest`].
    StealResponse {
        /// The worker that was asked (the victim).
        worker: WorkerId,
        /// The task.
        task: TaskId,
        /// The stimulus of the request being answered.
        request: StimulusId,
        /// What the victim did.
        outcome: StealOutcome,
    },
    /// Time to rebalance: steal work from saturated workers for idle ones.
    /// The driver sends it periodically (Dask: every 100 ms).
    Balance,
}

/// A victim's answer to a steal request.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum StealOutcome {
    /// The task had not started; the victim dropped it and will not run it.
    Released,
    /// The task is already running; the victim keeps it.
    Running,
    /// The victim does not have the task (finished, failed or cancelled
    /// already; its own message about it is on the way or has arrived).
    NotHere,
}

/// What a worker offers, told when it joins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// A name for people (`--name`, or its address).
    pub name: String,
    /// Tasks it runs at once (at least one).
    pub threads: u32,
    /// Bytes of memory it may use (0: unknown).
    pub memory_limit: u64,
    /// Abstract resources (`GPU = 2`), for tasks that require them.
    pub resources: BTreeMap<String, f64>,
}

/// A worker's resource use, from its heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerMetrics {
    /// Resident memory of the process, bytes.
    pub memory: u64,
    /// Bytes of results spilled to disk.
    pub spilled: u64,
    /// CPU use, percent of one core (400 = four cores busy).
    pub cpu: f32,
    /// Tasks running right now.
    pub executing: u32,
}

/// How to run a task, as bytes only a worker understands (the op's
/// registered name, its parameters, literal inputs). The scheduler runs no
/// user code and never looks inside.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TaskSpec(Arc<[u8]>);

impl TaskSpec {
    /// A spec from bytes.
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        TaskSpec(bytes.into())
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for TaskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskSpec({} bytes)", self.0.len())
    }
}

impl Serialize for TaskSpec {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for TaskSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = TaskSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("task spec bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<TaskSpec, E> {
                Ok(TaskSpec::new(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> std::result::Result<TaskSpec, E> {
                Ok(TaskSpec::new(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<TaskSpec, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(TaskSpec::new(v))
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

/// One task of a [`Submission`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// The task's key. A key the scheduler already knows is not submitted
    /// again: the known task (and its result, if in memory) is used.
    pub key: Key,
    /// The tasks it reads, as positions in [`Submission::tasks`].
    pub dependencies: Vec<u32>,
    /// Its rank in the graph's order (0 runs first).
    pub order: u32,
    /// How to run it; `None` for a key that must already be known to the
    /// scheduler (a future the client holds), an error otherwise.
    pub spec: Option<TaskSpec>,
    /// How many times a failure of the op is retried before it is an error.
    pub retries: u32,
}

/// A graph sent by a client: every task its outputs need, each once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// The tasks.
    pub tasks: Vec<NewTask>,
    /// The tasks the client wants, as positions in `tasks`.
    pub outputs: Vec<u32>,
    /// User priority: higher runs first (Dask's `priority=`).
    pub priority: i32,
}

impl Submission {
    /// A submission of a planned graph. `spec` encodes task `id` of the plan
    /// for a worker; its error aborts the submission (an op that cannot
    /// leave this process says so).
    pub fn from_plan(plan: &Plan, mut spec: impl FnMut(u32) -> Result<TaskSpec>) -> Result<Submission> {
        let priorities = plan.priorities();
        let tasks = (0..plan.len() as u32)
            .map(|id| {
                Ok(NewTask {
                    key: plan.key(id).clone(),
                    dependencies: plan.dependencies().row(id).to_vec(),
                    order: priorities[id as usize],
                    spec: Some(spec(id)?),
                    retries: 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Submission {
            tasks,
            outputs: plan.outputs().to_vec(),
            priority: 0,
        })
    }

    /// The same submission with user priority `priority`.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Checks the submission's own structure and returns its tasks in an
    /// order where every task comes after its dependencies. `hashes` are
    /// the tasks' key hashes, in task order.
    pub(crate) fn topological_order(&self, hashes: &[u64]) -> Result<Vec<u32>> {
        let n = self.tasks.len();
        debug_assert_eq!(hashes.len(), n);
        let mut seen: hashbrown::HashTable<u32> = hashbrown::HashTable::with_capacity(n);
        for (i, t) in self.tasks.iter().enumerate() {
            let hash = hashes[i];
            match seen.entry(hash, |&j| self.tasks[j as usize].key == t.key, |&j| hashes[j as usize]) {
                hashbrown::hash_table::Entry::Occupied(j) => {
                    return Err(Error::graph(format!(
                        "key {} is submitted twice (tasks {} and {i})",
                        t.key,
                        j.get()
                    )));
                }
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(i as u32);
                }
            }
        }
        drop(seen);
        // Dependents as one flat table (offsets into `dependents`), not a
        // vector per task: a million tasks, a million fewer allocations.
        let mut missing_dependencies = vec![0u32; n];
        let mut offsets = vec![0u32; n + 1];
        for t in &self.tasks {
            for &d in &t.dependencies {
                if d as usize >= n {
                    return Err(Error::graph(format!(
                        "task {} reads task {d}, the submission has {n}",
                        t.key
                    )));
                }
                offsets[d as usize + 1] += 1;
            }
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut dependents = vec![0u32; offsets[n] as usize];
        for (i, t) in self.tasks.iter().enumerate() {
            missing_dependencies[i] = t.dependencies.len() as u32;
            for &d in &t.dependencies {
                let at = &mut fill[d as usize];
                dependents[*at as usize] = i as u32;
                *at += 1;
            }
        }
        drop(fill);
        for &o in &self.outputs {
            if o as usize >= n {
                return Err(Error::graph(format!(
                    "output {o} is not a task of the submission ({n} tasks)"
                )));
            }
        }
        let mut order: Vec<u32> = Vec::with_capacity(n);
        order.extend((0..n as u32).filter(|&i| missing_dependencies[i as usize] == 0));
        let mut next = 0;
        while next < order.len() {
            let t = order[next] as usize;
            next += 1;
            for &d in &dependents[offsets[t] as usize..offsets[t + 1] as usize] {
                missing_dependencies[d as usize] -= 1;
                if missing_dependencies[d as usize] == 0 {
                    order.push(d);
                }
            }
        }
        if order.len() < n {
            let stuck = (0..n).find(|&i| missing_dependencies[i] > 0).unwrap_or(0);
            return Err(Error::graph(format!(
                "the submitted graph has a cycle through key {}",
                self.tasks[stuck].key
            )));
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockwise_core::plan::Slot;
    use blockwise_core::{Name, op::identity};

    /// The key hashes `topological_order` is given.
    fn hashes(s: &Submission) -> Vec<u64> {
        use std::hash::BuildHasher;
        s.tasks
            .iter()
            .map(|t| crate::id::IdBuildHasher::default().hash_one(&t.key))
            .collect()
    }

    fn key(name: &str) -> Key {
        Key::single(Name::new(name))
    }

    fn task(name: &str, dependencies: &[u32]) -> NewTask {
        NewTask {
            key: key(name),
            dependencies: dependencies.to_vec(),
            order: 0,
            spec: Some(TaskSpec::default()),
            retries: 0,
        }
    }

    #[test]
    fn topological_order_puts_dependencies_first() {
        let s = Submission {
            tasks: vec![task("c", &[1, 2]), task("a", &[]), task("b", &[1])],
            outputs: vec![0],
            priority: 0,
        };
        assert_eq!(s.topological_order(&hashes(&s)).unwrap(), vec![1, 2, 0]);
    }

    #[test]
    fn malformed_submissions_are_refused_with_the_key() {
        let cycle = Submission {
            tasks: vec![task("a", &[1]), task("b", &[0])],
            outputs: vec![0],
            priority: 0,
        };
        assert!(
            cycle
                .topological_order(&hashes(&cycle))
                .unwrap_err()
                .to_string()
                .contains("cycle through key \"a\"")
        );
        let twice = Submission {
            tasks: vec![task("a", &[]), task("a", &[])],
            outputs: vec![0],
            priority: 0,
        };
        assert!(
            twice
                .topological_order(&hashes(&twice))
                .unwrap_err()
                .to_string()
                .contains("submitted twice")
        );
        let dangling = Submission {
            tasks: vec![task("a", &[7])],
            outputs: vec![0],
            priority: 0,
        };
        assert!(
            dangling
                .topological_order(&hashes(&dangling))
                .unwrap_err()
                .to_string()
                .contains("reads task 7")
        );
        let bad_output = Submission {
            tasks: vec![task("a", &[])],
            outputs: vec![3],
            priority: 0,
        };
        assert!(bad_output.topological_order(&hashes(&bad_output)).is_err());
    }

    #[test]
    fn from_plan_keeps_keys_edges_order_and_outputs() {
        let keys = vec![key("x"), key("y"), key("z")];
        let plan = Plan::from_parts(
            keys.clone(),
            vec![identity(), identity(), identity()],
            vec![vec![], vec![Slot::Task(0)], vec![Slot::Task(0), Slot::Task(1)]],
            vec![2],
        )
        .unwrap();
        let s = Submission::from_plan(&plan, |id| Ok(TaskSpec::new(vec![id as u8]))).unwrap();
        assert_eq!(s.tasks.iter().map(|t| t.key.clone()).collect::<Vec<_>>(), keys);
        assert_eq!(s.tasks[2].dependencies, vec![0, 1]);
        assert_eq!(s.tasks[1].spec.as_ref().unwrap().bytes(), &[1]);
        assert_eq!(s.outputs, vec![2]);
        let orders: Vec<u32> = s.tasks.iter().map(|t| t.order).collect();
        assert_eq!(orders, plan.priorities());
    }

    #[test]
    fn task_spec_roundtrips_through_postcard() {
        let spec = TaskSpec::new(vec![1u8, 2, 3, 255]);
        let mut bytes = Vec::new();
        bytes.extend(postcard_bytes(&spec));
        let back: TaskSpec = postcard_from(&bytes);
        assert_eq!(back, spec);
    }

    fn postcard_bytes<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        blockwise_core::value::postcard_encode(v, &mut out).unwrap();
        out
    }

    fn postcard_from<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> T {
        blockwise_core::value::postcard_decode(bytes).unwrap()
    }
}
