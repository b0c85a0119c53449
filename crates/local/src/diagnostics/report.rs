//! Reports a person can open: one self-contained HTML page (or one SVG
//! picture) with the task chart of a [`Profiler`] and the memory and CPU
//! charts of a [`ResourceProfiler`] on one time axis — Dask's
//! `visualize([prof, rprof])`.
//!
//! The HTML file needs no network and no script: the charts are inline SVG,
//! each task bar carries a `<title>` that the browser shows on hover (key,
//! prefix, op, thread, duration), and a table sums the time per key prefix.
//!
//! The two profilers may have started at different instants; both are
//! shifted onto the earlier origin, so a task and the memory it allocated
//! line up vertically.
//!
//! ```
//! use std::sync::Arc;
//! use blockwise_local::diagnostics::{Profiler, ResourceProfiler, report};
//! use blockwise_local::{Compute, ComputeOptions, delayed};
//!
//! fn inc(x: i64) -> i64 {
//!     x + 1
//! }
//!
//! let (profiler, resources) = (Arc::new(Profiler::new()), Arc::new(ResourceProfiler::new()));
//! let options = ComputeOptions::new().callback(profiler.clone()).callback(resources.clone());
//! delayed(inc).call(1).compute_with(options).unwrap();
//!
//! let html = report::to_html(&profiler, Some(&resources));
//! assert!(html.starts_with("<!DOCTYPE html>"));
//! assert!(html.contains("inc"));
//! let svg = report::to_svg(&profiler, Some(&resources));
//! assert!(svg.contains("Memory"));
//! ```

use std::fmt::Write;
use std::path::Path;
use std::time::Instant;

use blockwise_core::Result;

use super::chart::{self, Colors, escape, human_mib, human_seconds};
use super::profiler::{Profiler, TaskRecord, summarize};
use super::resource::{ResourceProfiler, ResourceSample};

/// Both profiles shifted onto one origin: the earlier of the two.
fn aligned(
    profiler: Option<&Profiler>,
    resources: Option<&ResourceProfiler>,
) -> (Vec<TaskRecord>, Vec<ResourceSample>) {
    let mut tasks = profiler.map(Profiler::results).unwrap_or_default();
    let mut samples = resources.map(ResourceProfiler::results).unwrap_or_default();
    let origins = [
        profiler.and_then(Profiler::origin),
        resources.and_then(ResourceProfiler::origin),
    ];
    let Some(base) = origins.iter().flatten().min().copied() else {
        return (tasks, samples);
    };
    let shift = |origin: Option<Instant>| origin.map_or(0.0, |o| o.saturating_duration_since(base).as_secs_f64());
    let (task_shift, sample_shift) = (shift(origins[0]), shift(origins[1]));
    for t in &mut tasks {
        t.start += task_shift;
        t.end += task_shift;
    }
    for s in &mut samples {
        s.time += sample_shift;
    }
    (tasks, samples)
}

/// The task chart and, if given, the resource charts as one standalone SVG
/// document.
pub fn to_svg(profiler: &Profiler, resources: Option<&ResourceProfiler>) -> String {
    let (tasks, samples) = aligned(Some(profiler), resources);
    chart::svg(
        &chart::Figure {
            title: "blockwise profile",
            tasks: Some(&tasks),
            samples: resources.map(|_| samples.as_slice()),
        },
        true,
    )
}

/// Writes [`to_svg`] to `path`.
pub fn write_svg(path: impl AsRef<Path>, profiler: &Profiler, resources: Option<&ResourceProfiler>) -> Result<()> {
    super::write_file(path.as_ref(), &to_svg(profiler, resources))
}

/// The task chart, the resource charts if given, summary figures and a
/// table of time per key prefix, as one self-contained HTML page.
pub fn to_html(profiler: &Profiler, resources: Option<&ResourceProfiler>) -> String {
    let (tasks, samples) = aligned(Some(profiler), resources);
    page(Some(&tasks), resources.map(|_| samples.as_slice()))
}

/// Writes [`to_html`] to `path`: open it in any browser.
///
/// ```no_run
/// # use blockwise_local::diagnostics::{Profiler, ResourceProfiler, report};
/// # let (profiler, resources) = (Profiler::new(), ResourceProfiler::new());
/// report::write_html("profile.html", &profiler, Some(&resources))?;
/// # Ok::<(), blockwise_core::Error>(())
/// ```
pub fn write_html(path: impl AsRef<Path>, profiler: &Profiler, resources: Option<&ResourceProfiler>) -> Result<()> {
    super::write_file(path.as_ref(), &to_html(profiler, resources))
}

/// The HTML page of a resource profile alone.
pub(super) fn resources_html(resources: &ResourceProfiler) -> String {
    let (_, samples) = aligned(None, Some(resources));
    page(None, Some(&samples))
}

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:28px 36px;color:#222;background:#f7f7f8}\
h1{font-size:24px;margin:0 0 4px}\
h2{font-size:17px;margin:26px 0 10px}\
.sub{color:#666;margin:0 0 18px;font-size:14px}\
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:0 0 20px}\
.card{background:#fff;border:1px solid #e1e1e4;border-radius:8px;padding:10px 16px;min-width:110px}\
.card .value{font-size:20px;font-weight:600}\
.card .name{font-size:12px;color:#666;margin-top:2px}\
figure{background:#fff;border:1px solid #e1e1e4;border-radius:8px;padding:10px;margin:0;overflow-x:auto}\
figure svg{display:block}\
table{border-collapse:collapse;background:#fff;border:1px solid #e1e1e4;font-size:14px}\
th,td{padding:7px 14px;border-bottom:1px solid #eee;text-align:right;font-variant-numeric:tabular-nums}\
th{background:#f1f1f3;font-weight:600}\
th:first-child,td:first-child{text-align:left}\
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:8px;vertical-align:-1px}\
code{font-size:13px}";

fn page(tasks: Option<&[TaskRecord]>, samples: Option<&[ResourceSample]>) -> String {
    let title = match (tasks.is_some(), samples.is_some()) {
        (true, true) => "blockwise profile: tasks and resources",
        (true, false) => "blockwise profile: tasks",
        _ => "blockwise profile: resources",
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    let hint = if tasks.is_some() {
        "Hover a task bar for its key and duration. Times are seconds since the first computation started."
    } else {
        "Times are seconds since the first computation started."
    };
    let _ = writeln!(out, "<p class=\"sub\">{hint}</p>");

    out.push_str("<div class=\"cards\">\n");
    let card = |out: &mut String, value: String, name: &str| {
        let _ = writeln!(
            out,
            "<div class=\"card\"><div class=\"value\">{}</div><div class=\"name\">{}</div></div>",
            escape(&value),
            escape(name)
        );
    };
    if let Some(tasks) = tasks {
        let mut workers: Vec<usize> = tasks.iter().map(|t| t.worker).collect();
        workers.sort_unstable();
        workers.dedup();
        let first = tasks.iter().map(|t| t.start).fold(f64::INFINITY, f64::min);
        let last = tasks.iter().map(|t| t.end).fold(0.0f64, f64::max);
        let wall = if tasks.is_empty() { 0.0 } else { (last - first).max(0.0) };
        let busy: f64 = tasks.iter().map(TaskRecord::duration).sum();
        card(&mut out, tasks.len().to_string(), "tasks");
        if !tasks.is_empty() {
            card(&mut out, workers.len().to_string(), "worker threads used");
            card(&mut out, human_seconds(wall), "from first task start to last task end");
            card(&mut out, human_seconds(busy), "task time, summed");
        }
        if wall > 0.0 {
            card(
                &mut out,
                format!("{:.2}×", busy / wall),
                "parallelism (task time / wall time)",
            );
        }
    }
    if let Some(samples) = samples {
        if let Some(peak) = samples.iter().map(|s| s.memory).max() {
            card(&mut out, human_mib(peak as f64), "peak memory (resident set)");
        }
        if samples.len() > 1 {
            let mean = samples[1..].iter().map(|s| s.cpu).sum::<f64>() / (samples.len() - 1) as f64;
            let max = samples.iter().map(|s| s.cpu).fold(0.0f64, f64::max);
            card(&mut out, format!("{mean:.0} %"), "mean CPU (100 % = one core)");
            card(&mut out, format!("{max:.0} %"), "highest CPU");
        }
        card(&mut out, samples.len().to_string(), "resource samples");
    }
    out.push_str("</div>\n<figure>\n");
    out.push_str(&chart::svg(
        &chart::Figure {
            title: "",
            tasks,
            samples,
        },
        false,
    ));
    out.push_str("</figure>\n");

    if let Some(tasks) = tasks.filter(|t| !t.is_empty()) {
        let colors = Colors::new(tasks);
        let summary = summarize(tasks);
        let busy: f64 = summary.iter().map(|s| s.total).sum();
        out.push_str(
            "<h2>Time per key prefix</h2>\n<table>\n<thead><tr><th>key prefix</th><th>tasks</th>\
             <th>total time</th><th>share</th><th>mean</th><th>longest</th></tr></thead>\n<tbody>\n",
        );
        for s in &summary {
            let share = if busy > 0.0 { s.total / busy * 100.0 } else { 0.0 };
            let _ = writeln!(
                out,
                "<tr><td><span class=\"swatch\" style=\"background:{}\"></span><code>{}</code></td>\
                 <td>{}</td><td>{}</td><td>{share:.1} %</td><td>{}</td><td>{}</td></tr>",
                colors.of(&s.prefix),
                escape(&s.prefix),
                s.tasks,
                human_seconds(s.total),
                human_seconds(s.mean),
                human_seconds(s.max)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}
