//! Diagnostics observed for real: the progress bar drawn into memory, the
//! profiler's records checked against the graph, the resource profiler
//! watching an allocation, and reports checked for well-formed SVG with one
//! bar per task. Nothing here asserts a duration: only counts, order and
//! positivity.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blockwise_core::{ErrorKind, RunOptions, config};
use blockwise_local::diagnostics::progress::indicatif::{ProgressDrawTarget, TermLike};
use blockwise_local::diagnostics::{
    Profiler, ProgressBar, ProgressMode, ResourceProfiler, ResourceSample, TaskRecord, report,
};
use blockwise_local::{Compute, ComputeOptions, Delayed, Scheduler, callbacks_for, delayed, register_callback};
use parking_lot::{Mutex, RwLock};

/// Tests that change process-wide state (configuration, registered
/// callbacks) take this for writing; every other computing test takes it
/// for reading, so a registered callback never sees another test's work.
static GLOBAL: RwLock<()> = RwLock::new(());

fn inc(x: i64) -> i64 {
    x + 1
}

fn double(x: i64) -> i64 {
    2 * x
}

fn total(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

fn fails_on_seven(x: i64) -> std::result::Result<i64, String> {
    if x == 7 {
        Err("seven is not allowed".to_string())
    } else {
        Ok(x)
    }
}

/// `leaves` independent `inc` tasks summed by one `total`: `leaves + 1`
/// tasks that no fusion can merge.
fn fan_in(leaves: i64) -> Delayed<i64> {
    delayed(total).call((0..leaves).map(|i| delayed(inc).call(i)).collect::<Vec<_>>())
}

fn threads(n: usize) -> ComputeOptions {
    ComputeOptions::new().scheduler(Scheduler::Threads(Some(n))).fuse(false)
}

/// A terminal that keeps everything written to it.
#[derive(Clone, Debug, Default)]
struct MemoryTerm {
    text: Arc<Mutex<String>>,
}

impl MemoryTerm {
    fn target(&self) -> impl Fn() -> ProgressDrawTarget + Send + Sync + 'static {
        let term = self.clone();
        move || ProgressDrawTarget::term_like(Box::new(term.clone()))
    }

    fn text(&self) -> String {
        self.text.lock().clone()
    }
}

impl TermLike for MemoryTerm {
    fn width(&self) -> u16 {
        120
    }
    fn move_cursor_up(&self, _n: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _n: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _n: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _n: usize) -> io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        let mut text = self.text.lock();
        text.push_str(s);
        text.push('\n');
        Ok(())
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        let s = s.trim_end_matches(' ');
        let mut text = self.text.lock();
        text.push_str(s);
        if s.is_empty() {
            text.push('\n');
        }
        Ok(())
    }
    fn clear_line(&self) -> io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Waits (up to a generous bound, so a broken build fails instead of
/// hanging) until `ready` holds.
fn wait_for(ready: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !ready() && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------- progress

#[test]
fn progress_bar_counts_every_task_and_finishes() {
    let _shared = GLOBAL.read();
    let term = MemoryTerm::default();
    let bar = Arc::new(ProgressBar::new().minimum(Duration::ZERO).draw_target(term.target()));
    let out = fan_in(20).compute_with(threads(4).callback(bar.clone())).unwrap();
    assert_eq!(out, (1..=20).sum::<i64>());

    let shown = bar.last_bar().expect("a computation ran");
    assert_eq!(shown.length(), Some(21));
    assert_eq!(shown.position(), 21);
    assert!(shown.is_finished());
    assert!(bar.last_was_shown());
    let text = term.text();
    assert!(text.contains("21/21 tasks"), "{text}");
    assert!(text.contains("100%"), "{text}");
}

#[test]
fn progress_bar_stays_silent_for_computations_shorter_than_minimum() {
    let _shared = GLOBAL.read();
    let term = MemoryTerm::default();
    let bar = Arc::new(
        ProgressBar::new()
            .minimum(Duration::from_secs(3600))
            .draw_target(term.target()),
    );
    fan_in(10).compute_with(threads(2).callback(bar.clone())).unwrap();

    assert_eq!(term.text(), "", "nothing may be drawn before the minimum");
    assert!(!bar.last_was_shown());
    // Still counted, only not drawn.
    let hidden = bar.last_bar().unwrap();
    assert_eq!(hidden.position(), 11);
    assert!(hidden.is_finished());
    assert!(hidden.is_hidden());
}

#[test]
fn progress_bar_appears_while_a_long_computation_runs() {
    let _shared = GLOBAL.read();
    let term = MemoryTerm::default();
    let bar = Arc::new(
        ProgressBar::new()
            .minimum(Duration::from_millis(20))
            .draw_target(term.target()),
    );
    // The first task holds the computation until the ticker has shown the
    // bar, so a frame with 0 of 2 tasks done must have been drawn.
    let watched = bar.clone();
    let slow = move |x: i64| {
        wait_for(|| watched.last_was_shown());
        x
    };
    let x = delayed(inc).call(delayed(slow).call(1));
    assert_eq!(x.compute_with(threads(2).callback(bar.clone())).unwrap(), 2);

    let text = term.text();
    assert!(text.contains("0/2 tasks"), "the running frame is missing: {text}");
    assert!(text.contains("2/2 tasks"), "the final frame is missing: {text}");
    assert!(bar.last_bar().unwrap().is_finished());
}

#[test]
fn progress_bar_by_prefix_has_one_bar_per_prefix() {
    let _shared = GLOBAL.read();
    let term = MemoryTerm::default();
    let bar = Arc::new(
        ProgressBar::new()
            .minimum(Duration::ZERO)
            .by_prefix(true)
            .draw_target(term.target()),
    );
    let incs: Vec<_> = (0..6).map(|i| delayed(inc).call(i)).collect();
    let doubles: Vec<_> = (0..4).map(|i| delayed(double).call(i)).collect();
    let s = delayed(total).call(incs.into_iter().chain(doubles).collect::<Vec<_>>());
    assert_eq!(s.compute_with(threads(3).callback(bar.clone())).unwrap(), 21 + 12);

    let mut groups: Vec<(String, u64, Option<u64>, bool)> = bar
        .last_prefix_bars()
        .into_iter()
        .map(|(name, b)| (name, b.position(), b.length(), b.is_finished()))
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            ("double".to_string(), 4, Some(4), true),
            ("inc".to_string(), 6, Some(6), true),
            ("total".to_string(), 1, Some(1), true),
        ]
    );
    assert_eq!(bar.last_bar().unwrap().position(), 11);
    let text = term.text();
    for name in ["inc", "double", "total", "11/11 tasks"] {
        assert!(text.contains(name), "{name} is missing: {text}");
    }
}

#[test]
fn progress_bar_of_a_failed_computation_is_abandoned() {
    let _shared = GLOBAL.read();
    let term = MemoryTerm::default();
    let bar = Arc::new(ProgressBar::new().minimum(Duration::ZERO).draw_target(term.target()));
    let parts: Vec<_> = (0..10).map(|i| delayed(fails_on_seven).call(i)).collect();
    let err = delayed(total)
        .call(parts)
        .compute_with(ComputeOptions::new().scheduler(Scheduler::Sync).callback(bar.clone()))
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::TaskFailed(_)), "{err}");

    let shown = bar.last_bar().unwrap();
    assert!(shown.position() < 11);
    assert_eq!(shown.message(), "failed");
    assert!(term.text().contains("failed"));
}

#[test]
fn one_progress_bar_watches_several_computations_at_once() {
    let _shared = GLOBAL.read();
    let bar = Arc::new(
        ProgressBar::new()
            .minimum(Duration::ZERO)
            .draw_target(ProgressDrawTarget::hidden),
    );
    std::thread::scope(|scope| {
        for n in [5, 9, 13] {
            let bar = bar.clone();
            scope.spawn(move || {
                let out = fan_in(n).compute_with(threads(2).callback(bar)).unwrap();
                assert_eq!(out, (1..=n).sum::<i64>());
            });
        }
    });
    let last = bar.last_bar().unwrap();
    assert!(last.is_finished());
    assert_eq!(
        Some(last.position()),
        last.length(),
        "counts of one computation never leak into another"
    );
}

#[test]
fn registered_progress_bar_sees_every_computation_until_dropped() {
    let _exclusive = GLOBAL.write();
    let _quiet = config::set([("progress", "never")]);
    let bar = Arc::new(
        ProgressBar::new()
            .minimum(Duration::ZERO)
            .draw_target(ProgressDrawTarget::hidden),
    );
    {
        let _guard = register_callback(bar.clone());
        fan_in(7).compute_with(threads(2)).unwrap();
        assert_eq!(bar.last_bar().unwrap().position(), 8);
    }
    fan_in(3).compute_with(threads(2)).unwrap();
    assert_eq!(
        bar.last_bar().unwrap().position(),
        8,
        "an unregistered bar sees nothing"
    );
}

#[test]
fn progress_config_decides_the_automatic_bar() {
    let _exclusive = GLOBAL.write();
    let none = RunOptions::default();
    {
        let _c = config::set([("progress", "never")]);
        assert_eq!(callbacks_for(&none).unwrap().len(), 0);
    }
    {
        let _c = config::set([("progress", "always")]);
        assert_eq!(callbacks_for(&none).unwrap().len(), 1);
        // It is a silent bar for short work: the computation still succeeds.
        assert_eq!(fan_in(4).compute_with(threads(2)).unwrap(), 10);
    }
    {
        // `auto` draws only on a terminal: in CI (stderr piped) there is none.
        let _c = config::set([("progress", "auto")]);
        let on_terminal = ProgressMode::Auto.enabled();
        assert_eq!(callbacks_for(&none).unwrap().len(), usize::from(on_terminal));
    }
    {
        let _c = config::set([("progress", "sometimes")]);
        let err = fan_in(2).compute_with(threads(1)).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Config);
        assert!(err.to_string().contains("progress"), "{err}");
    }
}

// ---------------------------------------------------------------- profiler

#[test]
fn profiler_records_every_task_with_its_key_and_thread() {
    let _shared = GLOBAL.read();
    let profiler = Arc::new(Profiler::new());
    let incs: Vec<_> = (0..12).map(|i| delayed(inc).call(i)).collect();
    let doubles: Vec<_> = incs.iter().map(|x| delayed(double).call(x)).collect();
    let s = delayed(total).call(doubles);
    assert_eq!(
        s.compute_with(threads(4).callback(profiler.clone())).unwrap(),
        2 * (1..=12).sum::<i64>()
    );

    let records = profiler.results();
    assert_eq!(records.len(), 25);
    let count = |p: &str| records.iter().filter(|r| r.prefix == p).count();
    assert_eq!((count("inc"), count("double"), count("total")), (12, 12, 1));
    let mut keys: Vec<_> = records.iter().map(|r| r.key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 25, "one record per task");
    for r in &records {
        assert!(r.start >= 0.0 && r.start <= r.end, "{r:?}");
        assert!(r.worker < 4, "{r:?}");
        assert_eq!(r.key.name.prefix(), r.prefix);
        assert!(!r.op.is_empty());
    }
    // Ordered by start; the sum starts after every input ended.
    assert!(records.windows(2).all(|w| w[0].start <= w[1].start));
    let sum = records.iter().find(|r| r.prefix == "total").unwrap();
    assert!(
        records
            .iter()
            .filter(|r| r.prefix != "total")
            .all(|r| r.end <= sum.start)
    );

    let summary = profiler.summary();
    assert_eq!(summary.len(), 3);
    assert_eq!(summary.iter().map(|s| s.tasks).sum::<usize>(), 25);
    for s in &summary {
        assert!(s.total >= s.max && s.max >= s.mean && s.mean >= 0.0, "{s:?}");
    }
}

#[test]
fn profiler_leaves_out_tasks_that_never_finished() {
    let _shared = GLOBAL.read();
    let profiler = Arc::new(Profiler::new());
    let parts: Vec<_> = (0..10).map(|i| delayed(fails_on_seven).call(i)).collect();
    let sync = ComputeOptions::new()
        .scheduler(Scheduler::Sync)
        .callback(profiler.clone());
    assert!(delayed(total).call(parts).compute_with(sync).is_err());
    let records = profiler.results();
    assert!(records.len() < 11);
    assert!(records.iter().all(|r| r.prefix == "fails_on_seven"));
}

#[test]
fn profiler_accumulates_until_cleared() {
    let _shared = GLOBAL.read();
    let profiler = Arc::new(Profiler::new());
    fan_in(3).compute_with(threads(2).callback(profiler.clone())).unwrap();
    let first_end = profiler.results().iter().map(|r| r.end).fold(0.0, f64::max);
    fan_in(5).compute_with(threads(2).callback(profiler.clone())).unwrap();
    let records = profiler.results();
    assert_eq!(records.len(), 4 + 6);
    // One origin: the second computation comes after the first on the axis.
    assert!(records.iter().filter(|r| r.start >= first_end).count() >= 6);
    profiler.clear();
    assert!(profiler.results().is_empty());
    assert!(profiler.origin().is_none());
}

// ---------------------------------------------------------------- resources

#[cfg(target_os = "linux")]
#[test]
fn resource_profiler_sees_a_large_allocation() {
    let _shared = GLOBAL.read();
    const BYTES: usize = 96 << 20;
    let resources = Arc::new(ResourceProfiler::new().interval(Duration::from_millis(10)));
    let watched = resources.clone();
    let allocate = move |fill: i64| -> i64 {
        // Filled with non-zero bytes so every page is really resident.
        let block = vec![fill as u8; BYTES];
        // Hold it until the sampler has looked at least twice.
        let seen = watched.len();
        wait_for(|| watched.len() >= seen + 2);
        std::thread::sleep(Duration::from_millis(20));
        block.iter().step_by(4096).map(|&b| b as i64).sum()
    };
    let x = delayed(allocate).call(1);
    let pages = (BYTES / 4096) as i64;
    assert_eq!(x.compute_with(threads(2).callback(resources.clone())).unwrap(), pages);

    let samples: Vec<ResourceSample> = resources.results();
    assert!(samples.len() >= 3, "{samples:?}");
    assert!(samples.iter().all(|s| s.memory > 0));
    assert!(samples.iter().all(|s| s.cpu.is_finite() && s.cpu >= 0.0), "{samples:?}");
    assert!(samples.windows(2).all(|w| w[0].time <= w[1].time));
    let peak = resources.peak_memory().unwrap();
    assert!(peak >= BYTES as u64, "peak {peak} is below the {BYTES} bytes allocated");

    // Sampling stopped with the computation.
    let after = resources.len();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(resources.len(), after);
}

#[cfg(target_os = "linux")]
#[test]
fn resource_profiler_restarts_for_the_next_computation() {
    let _shared = GLOBAL.read();
    let resources = Arc::new(ResourceProfiler::new().interval(Duration::from_millis(5)));
    for _ in 0..2 {
        let watched = resources.clone();
        let wait = move |x: i64| {
            let seen = watched.len();
            wait_for(|| watched.len() > seen);
            x
        };
        delayed(wait)
            .call(1)
            .compute_with(threads(1).callback(resources.clone()))
            .unwrap();
    }
    let samples = resources.results();
    assert!(samples.len() >= 4, "{samples:?}");
    assert!(
        samples.windows(2).all(|w| w[0].time <= w[1].time),
        "one origin for both runs"
    );
}

// ---------------------------------------------------------------- reports

/// A minimal XML well-formedness check: balanced tags, quoted attributes,
/// known entities, one root. Returns the names of every element.
fn check_xml(text: &str) -> Vec<String> {
    let mut rest = text.trim_start();
    if rest.starts_with("<?xml") {
        let end = rest.find("?>").expect("the XML declaration is closed");
        rest = &rest[end + 2..];
    }
    let check_text = |t: &str| {
        assert!(!t.contains('<'), "raw < in text: {t}");
        let mut parts = t.split('&');
        parts.next();
        for p in parts {
            let entity = &p[..p.find(';').unwrap_or_else(|| panic!("unterminated entity in {t}"))];
            let known = ["amp", "lt", "gt", "quot", "apos"].contains(&entity)
                || (entity.starts_with('#') && entity[1..].chars().all(|c| c.is_ascii_digit()));
            assert!(known, "unknown entity &{entity}; in {t}");
        }
    };
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut roots = 0;
    while let Some(open) = rest.find('<') {
        let text_part = &rest[..open];
        if stack.is_empty() {
            assert!(text_part.trim().is_empty(), "text outside the root: {text_part}");
        } else {
            check_text(text_part);
        }
        rest = &rest[open..];
        if let Some(body) = rest.strip_prefix("<!--") {
            rest = &body[body.find("-->").expect("closed comment") + 3..];
            continue;
        }
        let close = rest.find('>').expect("every tag is closed");
        let tag = &rest[1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched </{name}>");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
        let name = &tag[..name_end];
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'));
        // Attributes: name="value" pairs.
        let mut attrs = tag[name_end..].trim();
        while !attrs.is_empty() {
            let eq = attrs
                .find("=\"")
                .unwrap_or_else(|| panic!("unquoted attribute in <{tag}>"));
            let value_end = attrs[eq + 2..].find('"').expect("closed attribute value") + eq + 2;
            check_text(&attrs[eq + 2..value_end]);
            attrs = attrs[value_end + 1..].trim_start();
        }
        if stack.is_empty() {
            roots += 1;
        }
        names.push(name.to_string());
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    assert!(rest.trim().is_empty(), "text after the root");
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    assert_eq!(roots, 1);
    names
}

fn profiled(resources: Option<&Arc<ResourceProfiler>>) -> (Arc<Profiler>, Vec<TaskRecord>) {
    let profiler = Arc::new(Profiler::new());
    let mut options = threads(3).callback(profiler.clone());
    if let Some(r) = resources {
        options = options.callback(r.clone());
    }
    // A prefix with characters that must be escaped in XML.
    let odd = delayed(double).name("a<b>&\"c\"");
    let incs: Vec<_> = (0..8).map(|i| odd.call(delayed(inc).call(i))).collect();
    delayed(total).call(incs).compute_with(options).unwrap();
    let records = profiler.results();
    (profiler, records)
}

#[test]
fn profiler_svg_is_well_formed_with_one_bar_per_task() {
    let _shared = GLOBAL.read();
    let (profiler, records) = profiled(None);
    assert_eq!(records.len(), 17);
    let svg = profiler.to_svg();
    let names = check_xml(&svg);
    assert_eq!(names[0], "svg");
    assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(svg.matches("<rect class=\"task\"").count(), records.len());
    // Every bar has a hover title naming its key.
    assert!(names.iter().filter(|n| *n == "title").count() >= records.len());
    assert!(
        svg.contains("a&lt;b&gt;&amp;&quot;c&quot;"),
        "the odd prefix is escaped"
    );
    for label in ["thread ", "time (", "inc (8)", "total (1)"] {
        assert!(svg.contains(label), "{label} is missing");
    }

    let path = std::env::temp_dir().join(format!("blockwise-diag-{}.svg", std::process::id()));
    profiler.write_svg(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), svg);
    std::fs::remove_file(&path).ok();
}

#[test]
fn combined_html_report_holds_both_profiles() {
    let _shared = GLOBAL.read();
    let resources = Arc::new(ResourceProfiler::new().interval(Duration::from_millis(5)));
    let (profiler, records) = profiled(Some(&resources));

    let path = std::env::temp_dir().join(format!("blockwise-diag-{}.html", std::process::id()));
    report::write_html(&path, &profiler, Some(&resources)).unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();

    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        !html.contains("<script") && !html.contains("<link"),
        "no scripts or external files"
    );
    // The inline figure is well-formed SVG with one bar per task.
    let svg = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap() + "</svg>".len()];
    check_xml(svg);
    assert_eq!(svg.matches("<rect class=\"task\"").count(), records.len());
    assert!(svg.contains("Memory (resident set, MiB)"));
    assert!(svg.contains("CPU (% of one core)"));
    // The table has one row per prefix.
    let table = &html[html.find("<tbody>").unwrap()..html.find("</tbody>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), 3);
    for prefix in ["inc", "total", "a&lt;b&gt;&amp;&quot;c&quot;"] {
        assert!(table.contains(prefix), "{prefix} is missing from the table");
    }

    let standalone = report::to_svg(&profiler, Some(&resources));
    check_xml(&standalone);
    assert_eq!(standalone.matches("<rect class=\"task\"").count(), records.len());
}

#[test]
fn reports_of_empty_profiles_say_so() {
    let profiler = Profiler::new();
    let resources = ResourceProfiler::new();
    let svg = report::to_svg(&profiler, Some(&resources));
    check_xml(&svg);
    assert!(svg.contains("no tasks were recorded"));
    assert!(svg.contains("no samples were recorded"));
    check_xml(&resources.to_svg());
    assert!(resources.to_html().contains("<svg"));
    assert!(profiler.to_html().contains("no tasks were recorded"));
}

#[test]
fn diagnostics_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ProgressBar>();
    assert_send_sync::<Profiler>();
    assert_send_sync::<ResourceProfiler>();
    assert_send_sync::<TaskRecord>();
    assert_send_sync::<ResourceSample>();
}
