//! The scheduler's knobs.

use blockwise_core::config::{self, ConfigValue};
use blockwise_core::{Error, ErrorKind, Result};

/// How the scheduler places, withholds and retries work. Defaults are
/// Dask's; [`SchedulerConfig::from_config`] reads overrides from
/// `distributed.scheduler.*` in the blockwise configuration.
///
/// | key | default | field |
/// |---|---|---|
/// | `distributed.scheduler.worker-saturation` | `1.1` | [`worker_saturation`](Self::worker_saturation) |
/// | `distributed.scheduler.allowed-failures` | `3` | [`allowed_failures`](Self::allowed_failures) |
/// | `distributed.scheduler.bandwidth` | `100MB` | [`bandwidth`](Self::bandwidth) |
/// | `distributed.scheduler.unknown-task-duration` | `500ms` | [`unknown_task_duration_us`](Self::unknown_task_duration_us) |
/// | `distributed.scheduler.default-data-size` | `1kB` | [`default_data_size`](Self::default_data_size) |
/// | `distributed.scheduler.work-stealing` | `true` | [`work_stealing`](Self::work_stealing) |
/// | `distributed.scheduler.transition-log-length` | `100000` | [`transition_log_length`](Self::transition_log_length) |
/// | `distributed.scheduler.worker-queue-window` | `5ms` | [`worker_queue_window_us`](Self::worker_queue_window_us) |
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// Root-ish tasks given to a worker at most: `ceil(threads ×
    /// saturation)` (at least one). Beyond that they wait in the scheduler's
    /// queue. `f64::INFINITY` turns queuing off (every ready task is sent at
    /// once, Dask before 2022.11).
    pub worker_saturation: f64,
    /// How many workers may die while running a task before the task is
    /// declared the culprit: one more death and it fails with
    /// [`crate::scheduler::FailureKind::KilledWorker`].
    pub allowed_failures: u32,
    /// Assumed network bandwidth between workers, bytes per second; turns
    /// bytes to fetch into seconds when placing a task.
    pub bandwidth: u64,
    /// Assumed compute time of a task whose prefix never finished yet,
    /// microseconds.
    pub unknown_task_duration_us: u64,
    /// Assumed size of a result whose size is not known yet, bytes.
    pub default_data_size: u64,
    /// Whether [`crate::scheduler::Event::Balance`] steals work.
    pub work_stealing: bool,
    /// Transitions remembered for [`crate::scheduler::Scheduler::story`]
    /// (0: none).
    pub transition_log_length: usize,
    /// Expected work per thread, microseconds, that a worker is kept fed
    /// with beyond its saturation slots: a worker whose occupancy is below
    /// `threads × window` still takes root-ish tasks (at most
    /// [`MAX_TASKS_PER_THREAD`] per thread). Tiny tasks (whose learned
    /// duration is far below one round trip to the scheduler) then travel
    /// and report in batches instead of one per round trip; tasks of
    /// unknown duration or longer than the window are withheld exactly as
    /// Dask does. 0 turns it off.
    pub worker_queue_window_us: u64,
}

/// The most tasks per thread a worker is given while its occupancy is
/// below the [queue window](SchedulerConfig::worker_queue_window_us) (a
/// task learned to take no measurable time costs nothing).
pub const MAX_TASKS_PER_THREAD: u64 = 1000;

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            worker_saturation: 1.1,
            allowed_failures: 3,
            bandwidth: 100_000_000,
            unknown_task_duration_us: 500_000,
            default_data_size: 1000,
            work_stealing: true,
            transition_log_length: 100_000,
            worker_queue_window_us: 5_000,
        }
    }
}

impl SchedulerConfig {
    /// The defaults, overridden by `distributed.scheduler.*` configuration.
    pub fn from_config() -> Result<Self> {
        let mut c = SchedulerConfig::default();
        const P: &str = "distributed.scheduler.";
        if let Some(v) = config::get(&format!("{P}worker-saturation")) {
            c.worker_saturation = float(&v)
                .filter(|x| *x > 0.0)
                .ok_or_else(|| bad(&format!("{P}worker-saturation"), "a positive number or \"inf\"", &v))?;
        }
        if let Some(n) = config::get_usize(&format!("{P}allowed-failures"))? {
            c.allowed_failures = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(b) = config::get_bytes(&format!("{P}bandwidth"))? {
            c.bandwidth = b.max(1);
        }
        if let Some(v) = config::get(&format!("{P}unknown-task-duration")) {
            c.unknown_task_duration_us = duration_us(&v)
                .ok_or_else(|| bad(&format!("{P}unknown-task-duration"), "a duration such as \"500ms\"", &v))?;
        }
        if let Some(b) = config::get_bytes(&format!("{P}default-data-size"))? {
            c.default_data_size = b;
        }
        c.work_stealing = config::get_bool(&format!("{P}work-stealing"), c.work_stealing)?;
        if let Some(n) = config::get_usize(&format!("{P}transition-log-length"))? {
            c.transition_log_length = n;
        }
        if let Some(v) = config::get(&format!("{P}worker-queue-window")) {
            c.worker_queue_window_us = duration_us(&v)
                .ok_or_else(|| bad(&format!("{P}worker-queue-window"), "a duration such as \"5ms\"", &v))?;
        }
        Ok(c)
    }

    /// Root-ish tasks a worker with `threads` threads may hold at once.
    pub(crate) fn task_slots(&self, threads: u32) -> u64 {
        if self.worker_saturation.is_infinite() {
            u64::MAX
        } else {
            ((f64::from(threads) * self.worker_saturation).ceil() as u64).max(1)
        }
    }

    /// Whether a running worker with `threads` threads, `processing` tasks
    /// and `occupancy` microseconds of expected work takes another
    /// root-ish task: below its saturation slots, or below the queue
    /// window (and [`MAX_TASKS_PER_THREAD`]).
    pub(crate) fn has_free_slot(&self, threads: u32, processing: usize, occupancy: u64) -> bool {
        let processing = processing as u64;
        processing < self.task_slots(threads)
            || (occupancy < u64::from(threads).saturating_mul(self.worker_queue_window_us)
                && processing < u64::from(threads) * MAX_TASKS_PER_THREAD)
    }
}

fn bad(key: &str, expected: &str, found: &ConfigValue) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("configuration key {key} must be {expected}, found {found}"),
    )
}

fn float(v: &ConfigValue) -> Option<f64> {
    match v {
        ConfigValue::Float(f) => Some(*f),
        ConfigValue::Integer(i) => Some(*i as f64),
        ConfigValue::String(s) if s.trim().eq_ignore_ascii_case("inf") => Some(f64::INFINITY),
        ConfigValue::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A duration in microseconds from `500ms`, `2s`, `250us`, `1.5` (seconds).
fn duration_us(v: &ConfigValue) -> Option<u64> {
    let text = match v {
        ConfigValue::String(s) => s.trim().to_string(),
        other => return float(other).filter(|x| *x >= 0.0).map(|s| (s * 1e6) as u64),
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "s" => 1e6,
        "ms" => 1e3,
        "us" | "µs" => 1.0,
        "m" | "min" => 60e6,
        _ => return None,
    };
    Some((number * scale) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let s = |t: &str| duration_us(&ConfigValue::String(t.into()));
        assert_eq!(s("500ms"), Some(500_000));
        assert_eq!(s("2s"), Some(2_000_000));
        assert_eq!(s("1.5"), Some(1_500_000));
        assert_eq!(s("250us"), Some(250));
        assert_eq!(s("soon"), None);
        assert_eq!(duration_us(&ConfigValue::Float(0.25)), Some(250_000));
    }

    #[test]
    fn slots_follow_saturation() {
        let c = SchedulerConfig::default();
        assert_eq!(c.task_slots(1), 2);
        assert_eq!(c.task_slots(4), 5);
        assert_eq!(c.task_slots(10), 11);
        let off = SchedulerConfig {
            worker_saturation: f64::INFINITY,
            ..c.clone()
        };
        assert_eq!(off.task_slots(4), u64::MAX);
        let low = SchedulerConfig {
            worker_saturation: 0.1,
            ..c
        };
        assert_eq!(low.task_slots(2), 1);
    }

    #[test]
    fn tiny_tasks_fill_the_queue_window_up_to_a_cap() {
        let c = SchedulerConfig::default();
        // Saturation slots first, whatever the occupancy.
        assert!(c.has_free_slot(1, 1, u64::MAX));
        assert!(!c.has_free_slot(1, 2, 500_000));
        // 10 µs tasks: 499 of them are below a 5 ms window.
        assert!(c.has_free_slot(1, 499, 4_990));
        assert!(!c.has_free_slot(1, 500, 5_000));
        assert!(c.has_free_slot(2, 999, 9_990));
        // Tasks that take no measurable time stop at the cap.
        assert!(c.has_free_slot(1, 999, 0));
        assert!(!c.has_free_slot(1, 1000, 0));
        let off = SchedulerConfig {
            worker_queue_window_us: 0,
            ..c
        };
        assert!(!off.has_free_slot(1, 2, 0));
    }

    #[test]
    fn from_config_reads_overrides() {
        let _guard = config::set([
            ("distributed.scheduler.allowed-failures", ConfigValue::Integer(0)),
            (
                "distributed.scheduler.worker-saturation",
                ConfigValue::String("inf".into()),
            ),
            (
                "distributed.scheduler.unknown-task-duration",
                ConfigValue::String("20ms".into()),
            ),
            (
                "distributed.scheduler.worker-queue-window",
                ConfigValue::String("250us".into()),
            ),
        ]);
        let c = SchedulerConfig::from_config().unwrap();
        assert_eq!(c.allowed_failures, 0);
        assert!(c.worker_saturation.is_infinite());
        assert_eq!(c.unknown_task_duration_us, 20_000);
        assert_eq!(c.worker_queue_window_us, 250);
        assert_eq!(c.bandwidth, SchedulerConfig::default().bandwidth);
    }
}
