//! [`ProgressBar`]: tasks done out of the total, drawn with `indicatif`
//! (Dask's `dask.diagnostics.ProgressBar`).
//!
//! # When something is drawn
//!
//! A bar is created hidden at `start`. It becomes visible only once the
//! computation has run for [`ProgressBar::minimum`] (1 s by default), so the
//! many short computations of a program print nothing. At `finish` a visible
//! bar is drawn one last time, complete (or marked `failed`); a computation
//! that ended before the minimum leaves no trace.
//!
//! Showing and refreshing are done by one ticker thread shared by every bar
//! of the process (started on first use, asleep while no bar is running),
//! ten times a second. Worker threads only increment counters, so a bar adds
//! one atomic add per task and never draws from a worker.
//!
//! # Where it is drawn
//!
//! By default, to stderr: as a live bar when stderr is a terminal, otherwise
//! (a log file, CI) as a plain line at most every few seconds and once at the
//! end. Only one stderr bar is visible at a time: a computation started
//! inside a task of another one stays quiet while the outer bar is shown.
//! [`ProgressBar::draw_target`] draws elsewhere, through any
//! [`indicatif::ProgressDrawTarget`] (for instance an in-memory
//! [`indicatif::TermLike`]).
//!
//! # The automatic bar
//!
//! The local executors add a bar to every computation when the
//! configuration key `progress` asks for one ([`ProgressMode`]): `auto`, the
//! default, when stderr is a terminal (and `TERM` is not `dumb`); `always`;
//! `never`. A computation that already has an explicit [`ProgressBar`]
//! (its own or a registered one) does not get the automatic one.

use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use blockwise_core::{Callback, Error, ErrorKind, Plan, Result, Value, config};
use indicatif::{MultiProgress, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};
use parking_lot::{Condvar, Mutex};

use super::{Runs, plan_id};

/// The `indicatif` crate, for building draw targets
/// ([`ProgressBar::draw_target`]) and reading bars ([`ProgressBar::last_bar`])
/// with the same version blockwise uses.
pub use indicatif;

/// How often running bars are refreshed.
const TICK: Duration = Duration::from_millis(100);
/// A bar drawn to a non-terminal writes a line at most this often.
const PLAIN_PERIOD: Duration = Duration::from_secs(5);
/// With [`ProgressBar::by_prefix`], at most this many prefix bars are drawn.
const MAX_GROUPS: usize = 12;

/// When the automatic progress bar is added: the configuration key
/// `progress`.
///
/// ```
/// use blockwise_local::diagnostics::ProgressMode;
///
/// assert_eq!(ProgressMode::parse("never").unwrap(), ProgressMode::Never);
/// assert_eq!(ProgressMode::parse("true").unwrap(), ProgressMode::Always);
/// assert!(ProgressMode::parse("sometimes").is_err());
/// assert!(ProgressMode::Always.enabled());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// Only when stderr is a terminal (the default): CI logs and pipes stay
    /// clean.
    Auto,
    /// On every computation, also when stderr is not a terminal.
    Always,
    /// Never automatically (an explicit [`ProgressBar`] still draws).
    Never,
}

impl ProgressMode {
    /// Parses a setting: `auto`, `always` (or `true`), `never` (or `false`).
    pub fn parse(setting: &str) -> Result<ProgressMode> {
        match setting.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ProgressMode::Auto),
            "always" | "true" | "on" => Ok(ProgressMode::Always),
            "never" | "false" | "off" => Ok(ProgressMode::Never),
            _ => Err(Error::new(
                ErrorKind::Config,
                format!("configuration key progress is {setting:?}: use auto, always or never"),
            )),
        }
    }

    /// The configured mode (`progress`, default `auto`).
    pub fn from_config() -> Result<ProgressMode> {
        match config::get_string("progress") {
            Some(s) => ProgressMode::parse(&s),
            None => Ok(ProgressMode::Auto),
        }
    }

    /// Whether the automatic bar is added in this process now.
    pub fn enabled(self) -> bool {
        match self {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => stderr_is_terminal(),
        }
    }
}

fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The automatic bar for one computation, if configuration asks for it
/// (used by [`crate::callbacks_for`]).
pub(crate) fn automatic() -> Result<Option<Arc<dyn Callback>>> {
    if !ProgressMode::from_config()?.enabled() {
        return Ok(None);
    }
    // One instance serves every computation: its state is per plan.
    static AUTOMATIC: OnceLock<Arc<ProgressBar>> = OnceLock::new();
    let bar = AUTOMATIC.get_or_init(|| {
        Arc::new(ProgressBar {
            automatic: true,
            ..ProgressBar::new()
        })
    });
    Ok(Some(bar.clone() as Arc<dyn Callback>))
}

/// Plans that have an explicit (not automatic) bar, so the automatic one
/// stays out. The engine calls `start` in list order and the automatic bar
/// comes last, after every explicit one has claimed its plan.
fn claims() -> &'static Mutex<Vec<usize>> {
    static CLAIMS: OnceLock<Mutex<Vec<usize>>> = OnceLock::new();
    CLAIMS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Whether a bar is visible on stderr right now.
static STDERR_TAKEN: AtomicBool = AtomicBool::new(false);

type TargetFactory = Arc<dyn Fn() -> ProgressDrawTarget + Send + Sync>;

/// A progress bar over the tasks of each computation it watches.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use blockwise_local::diagnostics::ProgressBar;
/// use blockwise_local::diagnostics::progress::indicatif::ProgressDrawTarget;
/// use blockwise_local::{Compute, ComputeOptions, delayed};
///
/// fn inc(x: i64) -> i64 {
///     x + 1
/// }
///
/// // Shown after 1 s on stderr; here drawn nowhere, to read it back.
/// let bar = Arc::new(ProgressBar::new().minimum(Duration::ZERO).draw_target(ProgressDrawTarget::hidden));
/// let x = delayed(inc).call(delayed(inc).call(0));
/// x.compute_with(ComputeOptions::new().fuse(false).callback(bar.clone())).unwrap();
/// let shown = bar.last_bar().unwrap();
/// assert_eq!((shown.position(), shown.length()), (2, Some(2)));
/// assert!(shown.is_finished());
/// ```
///
/// For every computation of a block, as Dask's `with ProgressBar():`:
///
/// ```
/// # use std::sync::Arc;
/// # use blockwise_local::diagnostics::ProgressBar;
/// let _guard = blockwise_local::register_callback(Arc::new(ProgressBar::new()));
/// // … computations here show a bar when they take more than a second …
/// ```
pub struct ProgressBar {
    minimum: Duration,
    by_prefix: bool,
    target: Option<TargetFactory>,
    automatic: bool,
    runs: Runs<Run>,
    last: Mutex<Option<Arc<Run>>>,
}

impl Default for ProgressBar {
    fn default() -> Self {
        ProgressBar::new()
    }
}

impl std::fmt::Debug for ProgressBar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressBar")
            .field("minimum", &self.minimum)
            .field("by_prefix", &self.by_prefix)
            .field("custom_target", &self.target.is_some())
            .field("automatic", &self.automatic)
            .finish()
    }
}

impl ProgressBar {
    /// A bar on stderr, shown for computations that run longer than 1 s.
    pub fn new() -> Self {
        ProgressBar {
            minimum: Duration::from_secs(1),
            by_prefix: false,
            target: None,
            automatic: false,
            runs: Runs::new(),
            last: Mutex::new(None),
        }
    }

    /// Shows the bar only once a computation has run this long (Dask's
    /// `minimum`); `Duration::ZERO` shows it at once.
    pub fn minimum(mut self, minimum: Duration) -> Self {
        self.minimum = minimum;
        self
    }

    /// Adds one bar per key prefix under the total, in the order the
    /// prefixes start to run (at most 12 bars: with more prefixes, the last
    /// of them share an `other` bar).
    pub fn by_prefix(mut self, by_prefix: bool) -> Self {
        self.by_prefix = by_prefix;
        self
    }

    /// Draws to the target `make` returns (called once per computation, when
    /// the bar is first shown) instead of stderr.
    pub fn draw_target<F>(mut self, make: F) -> Self
    where
        F: Fn() -> ProgressDrawTarget + Send + Sync + 'static,
    {
        self.target = Some(Arc::new(make));
        self
    }

    /// The total bar of the most recent computation (running or finished):
    /// its position, length, elapsed time and whether it finished.
    pub fn last_bar(&self) -> Option<indicatif::ProgressBar> {
        self.last.lock().as_ref().map(|run| run.bar.clone())
    }

    /// The per-prefix bars of the most recent computation, with their
    /// prefixes, when [`ProgressBar::by_prefix`] is on.
    pub fn last_prefix_bars(&self) -> Vec<(String, indicatif::ProgressBar)> {
        match self.last.lock().as_ref() {
            Some(run) => run.groups.iter().map(|g| (g.name.clone(), g.bar.clone())).collect(),
            None => Vec::new(),
        }
    }

    /// Whether the most recent computation's bar was ever drawn.
    pub fn last_was_shown(&self) -> bool {
        self.last
            .lock()
            .as_ref()
            .is_some_and(|run| run.shown_once.load(Ordering::Acquire))
    }
}

impl Callback for ProgressBar {
    fn start(&self, plan: &Plan) {
        let id = plan_id(plan);
        if self.automatic {
            if claims().lock().contains(&id) {
                return;
            }
        } else {
            claims().lock().push(id);
        }
        let run = Arc::new(Run::new(plan, self.minimum, self.by_prefix, self.target.clone()));
        self.runs.insert(plan, run.clone());
        *self.last.lock() = Some(run.clone());
        ticker().add(run);
    }

    fn task_finish(&self, plan: &Plan, id: u32, _worker: usize, _value: &Value) {
        self.runs.with(plan, |run| run.task_done(id));
    }

    fn finish(&self, plan: &Plan, failed: bool) {
        if !self.automatic {
            let id = plan_id(plan);
            let mut claims = claims().lock();
            if let Some(at) = claims.iter().position(|&p| p == id) {
                claims.swap_remove(at);
            }
        }
        if let Some(run) = self.runs.remove(plan) {
            ticker().remove(&run);
            run.finish(failed);
        }
    }
}

/// One prefix's bar.
struct Group {
    name: String,
    done: AtomicU64,
    bar: indicatif::ProgressBar,
}

enum Stage {
    Hidden,
    Shown {
        /// This bar holds [`STDERR_TAKEN`].
        stderr: bool,
        /// The line writer, when drawing to a non-terminal stderr.
        plain: Option<Arc<Mutex<PlainLine>>>,
    },
    Finished,
}

/// One computation under a bar.
struct Run {
    started: Instant,
    minimum: Duration,
    target: Option<TargetFactory>,
    done: AtomicU64,
    /// Group of each task (empty without `by_prefix`).
    group_of: Vec<u16>,
    groups: Vec<Group>,
    multi: MultiProgress,
    bar: indicatif::ProgressBar,
    stage: Mutex<Stage>,
    shown_once: AtomicBool,
}

impl Run {
    fn new(plan: &Plan, minimum: Duration, by_prefix: bool, target: Option<TargetFactory>) -> Run {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
        let bar = multi.add(indicatif::ProgressBar::with_draw_target(
            Some(plan.len() as u64),
            ProgressDrawTarget::hidden(),
        ));
        let (group_of, groups) = if by_prefix {
            prefix_groups(plan, &multi)
        } else {
            (Vec::new(), Vec::new())
        };
        Run {
            started: Instant::now(),
            minimum,
            target,
            done: AtomicU64::new(0),
            group_of,
            groups,
            multi,
            bar,
            stage: Mutex::new(Stage::Hidden),
            shown_once: AtomicBool::new(false),
        }
    }

    fn task_done(&self, id: u32) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if let Some(&g) = self.group_of.get(id as usize) {
            self.groups[g as usize].done.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Copies the counters into the bars (which redraw if shown).
    fn update(&self) {
        for g in &self.groups {
            g.bar.set_position(g.done.load(Ordering::Relaxed));
        }
        self.bar.set_position(self.done.load(Ordering::Relaxed));
        // Redraws even without progress, so the elapsed time moves on.
        self.bar.tick();
    }

    /// Shows the bar if it has waited long enough and a place to draw is
    /// free. Called with the stage lock held.
    fn reveal(&self, stage: &mut Stage, now: Instant) {
        if !matches!(stage, Stage::Hidden) || now.saturating_duration_since(self.started) < self.minimum {
            return;
        }
        let (target, style, stderr, plain) = match &self.target {
            Some(make) => (make(), Styles::plain(), false, None),
            None => {
                if STDERR_TAKEN
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    return;
                }
                if stderr_is_terminal() {
                    (ProgressDrawTarget::stderr(), Styles::terminal(), true, None)
                } else {
                    let line = Arc::new(Mutex::new(PlainLine::default()));
                    let term = PlainStderr { line: line.clone() };
                    (
                        ProgressDrawTarget::term_like_with_hz(Box::new(term), 10),
                        Styles::plain(),
                        true,
                        Some(line),
                    )
                }
            }
        };
        self.bar.set_style(style.total);
        for g in &self.groups {
            g.bar.set_style(style.group.clone());
            g.bar.set_prefix(g.name.clone());
        }
        self.multi.set_draw_target(target);
        *stage = Stage::Shown { stderr, plain };
        self.shown_once.store(true, Ordering::Release);
    }

    /// Called by the ticker.
    fn tick(&self, now: Instant) {
        let mut stage = self.stage.lock();
        self.reveal(&mut stage, now);
        if matches!(*stage, Stage::Shown { .. }) {
            self.update();
        }
    }

    fn finish(&self, failed: bool) {
        let mut stage = self.stage.lock();
        // A computation that outlived the minimum between two ticks is still
        // shown, complete.
        self.reveal(&mut stage, Instant::now());
        for g in &self.groups {
            g.bar.set_position(g.done.load(Ordering::Relaxed));
        }
        self.bar.set_position(self.done.load(Ordering::Relaxed));
        if failed {
            for g in &self.groups {
                g.bar.abandon();
            }
            self.bar.abandon_with_message("failed");
        } else {
            for g in &self.groups {
                g.bar.finish();
            }
            self.bar.finish();
        }
        if let Stage::Shown { stderr, plain } = &*stage {
            if let Some(line) = plain {
                line.lock().emit(true);
            }
            if *stderr {
                STDERR_TAKEN.store(false, Ordering::Release);
            }
        }
        *stage = Stage::Finished;
    }
}

/// Groups tasks by key prefix, in the order they start to run. With more
/// than [`MAX_GROUPS`] prefixes, the later ones share an `other` group.
fn prefix_groups(plan: &Plan, multi: &MultiProgress) -> (Vec<u16>, Vec<Group>) {
    let priorities = plan.priorities();
    // (prefix, tasks, earliest priority)
    let mut found: Vec<(&str, u64, u32)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut raw_group = Vec::with_capacity(plan.len());
    for id in 0..plan.len() {
        let prefix = plan.name(id as u32).prefix();
        let priority = priorities.get(id).copied().unwrap_or(u32::MAX);
        let i = *index.entry(prefix).or_insert_with(|| {
            found.push((prefix, 0, priority));
            found.len() - 1
        });
        found[i].1 += 1;
        found[i].2 = found[i].2.min(priority);
        raw_group.push(i);
    }
    let mut order: Vec<usize> = (0..found.len()).collect();
    order.sort_by_key(|&i| found[i].2);
    let own = if found.len() <= MAX_GROUPS {
        found.len()
    } else {
        MAX_GROUPS - 1
    };
    let mut slot = vec![0u16; found.len()];
    let mut groups: Vec<(String, u64)> = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        if rank < own {
            slot[i] = groups.len() as u16;
            groups.push((found[i].0.to_string(), found[i].1));
        } else {
            if groups.len() == own {
                groups.push(("other".to_string(), 0));
            }
            slot[i] = own as u16;
            groups[own].1 += found[i].1;
        }
    }
    let group_of = raw_group.into_iter().map(|i| slot[i]).collect();
    let groups = groups
        .into_iter()
        .map(|(name, total)| Group {
            bar: multi.add(indicatif::ProgressBar::with_draw_target(
                Some(total),
                ProgressDrawTarget::hidden(),
            )),
            name,
            done: AtomicU64::new(0),
        })
        .collect();
    (group_of, groups)
}

struct Styles {
    total: ProgressStyle,
    group: ProgressStyle,
}

impl Styles {
    fn make(total: &str, group: &str, chars: &str) -> Styles {
        let style = |template: &str| {
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("seconds", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
                })
                .progress_chars(chars)
        };
        Styles {
            total: style(total),
            group: style(group),
        }
    }

    /// Colours and fine blocks, for a terminal.
    fn terminal() -> Styles {
        Styles::make(
            "[{bar:40.cyan/blue}] {percent:>3}% | {pos}/{len} tasks | {seconds} {msg:.red}",
            "  {prefix:<24!} [{bar:24.green/white}] {pos}/{len}",
            "█▉▊▋▌▍▎▏ ",
        )
    }

    /// Plain ASCII, for logs and custom targets.
    fn plain() -> Styles {
        Styles::make(
            "[{bar:40}] {percent:>3}% | {pos}/{len} tasks | {seconds} {msg}",
            "  {prefix:<24!} [{bar:24}] {pos}/{len}",
            "#>-",
        )
    }
}

/// The one thread that shows and refreshes every running bar.
struct Ticker {
    runs: Mutex<Vec<Arc<Run>>>,
    wake: Condvar,
}

fn ticker() -> &'static Ticker {
    static TICKER: OnceLock<Ticker> = OnceLock::new();
    static SPAWN: std::sync::Once = std::sync::Once::new();
    let ticker = TICKER.get_or_init(|| Ticker {
        runs: Mutex::new(Vec::new()),
        wake: Condvar::new(),
    });
    SPAWN.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("blockwise-progress".into())
            .spawn(move || ticker.run());
        if let Err(e) = spawned {
            // Without the ticker, bars are still drawn at `finish` when
            // the computation took longer than their minimum.
            tracing::warn!("progress bar: cannot start its ticker thread: {e}");
        }
    });
    ticker
}

impl Ticker {
    fn add(&self, run: Arc<Run>) {
        self.runs.lock().push(run);
        self.wake.notify_one();
    }

    fn remove(&self, run: &Arc<Run>) {
        self.runs.lock().retain(|r| !Arc::ptr_eq(r, run));
    }

    fn run(&self) {
        let mut runs = self.runs.lock();
        loop {
            if runs.is_empty() {
                self.wake.wait(&mut runs);
                continue;
            }
            let snapshot: Vec<Arc<Run>> = runs.clone();
            // Draw without holding the list: starting and finishing
            // computations never wait for a terminal write.
            drop(runs);
            let now = Instant::now();
            let mut next = now + TICK;
            for run in &snapshot {
                run.tick(now);
                if matches!(*run.stage.lock(), Stage::Hidden) {
                    let due = run.started + run.minimum;
                    if due > now && due < next {
                        next = due;
                    }
                }
            }
            drop(snapshot);
            runs = self.runs.lock();
            if !runs.is_empty() {
                self.wake.wait_until(&mut runs, next);
            }
        }
    }
}

/// What a bar on a non-terminal stderr has drawn since the last line.
#[derive(Debug, Default)]
struct PlainLine {
    text: String,
    emitted: String,
    last_emit: Option<Instant>,
}

impl PlainLine {
    /// Writes the current text as whole lines if it changed and (unless
    /// `force`) the last write is old enough.
    fn emit(&mut self, force: bool) {
        let text = self.text.trim_end();
        if text.is_empty() || text == self.emitted {
            return;
        }
        if !force && self.last_emit.is_some_and(|t| t.elapsed() < PLAIN_PERIOD) {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
        let _ = err.flush();
        self.emitted = text.to_string();
        self.last_emit = Some(Instant::now());
    }
}

/// A [`TermLike`] for a stderr that is not a terminal: no cursor movement,
/// no escape codes, one plain line per refresh period.
#[derive(Debug)]
struct PlainStderr {
    line: Arc<Mutex<PlainLine>>,
}

impl TermLike for PlainStderr {
    fn width(&self) -> u16 {
        100
    }

    fn move_cursor_up(&self, _n: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _n: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _n: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _n: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        let mut line = self.line.lock();
        line.text.push_str(s);
        line.text.push('\n');
        Ok(())
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let mut line = self.line.lock();
        // indicatif pads each drawn line with spaces up to the width (the
        // padding is how a terminal moves to the next line): mark the end of
        // a line instead.
        if s.trim().is_empty() {
            line.text.push('\n');
        } else {
            line.text.push_str(s);
        }
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        // Each redraw clears every line it drew before, then draws them all.
        self.line.lock().text.clear();
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        self.line.lock().emit(false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_drop_padding() {
        let line = Arc::new(Mutex::new(PlainLine::default()));
        let term = PlainStderr { line: line.clone() };
        term.clear_line().unwrap();
        term.write_str("[###---] 50%").unwrap();
        term.write_str("      ").unwrap();
        term.write_str("  sum [#--] 1/3").unwrap();
        term.write_str("").unwrap();
        assert_eq!(line.lock().text, "[###---] 50%\n  sum [#--] 1/3\n");
        term.clear_line().unwrap();
        assert_eq!(line.lock().text, "");
    }

    fn two_task_plan() -> Plan {
        use blockwise_core::{Key, Name, Slot};
        let keys = vec![Key::single(Name::new("a-1")), Key::single(Name::new("b-2"))];
        let ops = vec![blockwise_core::op::identity(), blockwise_core::op::identity()];
        let literal: Value = Arc::new(1i64);
        let inputs = vec![vec![Slot::Literal(literal)], vec![Slot::Task(0)]];
        Plan::from_parts(keys, ops, inputs, vec![1]).unwrap()
    }

    #[test]
    fn an_explicit_bar_keeps_the_automatic_one_quiet() {
        let plan = two_task_plan();
        let explicit = ProgressBar::new().draw_target(ProgressDrawTarget::hidden);
        let automatic = ProgressBar {
            automatic: true,
            ..ProgressBar::new()
        };
        // The order of `callbacks_for`: explicit ones first.
        explicit.start(&plan);
        automatic.start(&plan);
        assert!(explicit.runs.with(&plan, |_| ()).is_some());
        assert!(automatic.runs.with(&plan, |_| ()).is_none());
        explicit.finish(&plan, false);
        automatic.finish(&plan, false);
        assert!(!claims().lock().contains(&plan_id(&plan)));

        // Alone, the automatic bar watches the computation.
        automatic.start(&plan);
        assert!(automatic.runs.with(&plan, |_| ()).is_some());
        automatic.finish(&plan, false);
        assert!(automatic.runs.with(&plan, |_| ()).is_none());
    }

    #[test]
    fn styles_parse() {
        // A template typo would silently fall back to indicatif's default.
        for t in [
            "[{bar:40.cyan/blue}] {percent:>3}% | {pos}/{len} tasks | {seconds} {msg:.red}",
            "  {prefix:<24!} [{bar:24.green/white}] {pos}/{len}",
            "[{bar:40}] {percent:>3}% | {pos}/{len} tasks | {seconds} {msg}",
            "  {prefix:<24!} [{bar:24}] {pos}/{len}",
        ] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }
}
