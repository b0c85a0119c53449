//! SVG drawing of profiles: one figure, panels stacked on one time axis
//! (tasks per worker thread, then memory, then CPU), written as text with no
//! dependency. The same figure is the standalone `.svg` file and the picture
//! inside the HTML report, so the two never disagree.
//!
//! Hover information is each bar's `<title>` child, which every browser
//! shows as a tooltip without any script.

use std::collections::HashMap;
use std::fmt::Write;

use super::profiler::TaskRecord;
use super::resource::ResourceSample;

/// Category colours (Tableau 10, then its light variants): distinct, and
/// readable as thin bars on white.
const PALETTE: [&str; 20] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 96.0;
const RIGHT: f64 = 32.0;
const PLOT_WIDTH: f64 = WIDTH - LEFT - RIGHT;
const RESOURCE_PANEL_HEIGHT: f64 = 150.0;
const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";

/// Escapes text for XML and HTML content and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline are not allowed
            // in XML 1.0 at all; a key never needs them.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The colour of every key prefix: the prefix with the most task time gets
/// the first colour, so the dominant work is always the same blue.
pub(super) struct Colors {
    by_prefix: HashMap<String, &'static str>,
    /// Prefixes in legend order, with their task count and total time.
    pub(super) order: Vec<(String, usize, f64)>,
}

impl Colors {
    pub(super) fn new(tasks: &[TaskRecord]) -> Self {
        let mut totals: HashMap<&str, (usize, f64)> = HashMap::new();
        for t in tasks {
            let e = totals.entry(t.prefix.as_str()).or_default();
            e.0 += 1;
            e.1 += t.duration();
        }
        let mut order: Vec<(String, usize, f64)> =
            totals.into_iter().map(|(p, (n, s))| (p.to_string(), n, s)).collect();
        order.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        let by_prefix = order
            .iter()
            .enumerate()
            .map(|(i, (p, _, _))| (p.clone(), PALETTE[i % PALETTE.len()]))
            .collect();
        Colors { by_prefix, order }
    }

    pub(super) fn of(&self, prefix: &str) -> &'static str {
        self.by_prefix
            .get(prefix)
            .copied()
            .unwrap_or(PALETTE[PALETTE.len() - 3])
    }
}

/// What one figure shows. `None` leaves a panel out; `Some(&[])` draws it
/// with a note that nothing was recorded.
pub(super) struct Figure<'a> {
    /// Drawn above the panels; empty for none (the HTML page has its own).
    pub(super) title: &'a str,
    pub(super) tasks: Option<&'a [TaskRecord]>,
    pub(super) samples: Option<&'a [ResourceSample]>,
}

/// A step of 1, 2 or 5 times a power of ten giving about `target` ticks.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let normalized = raw / magnitude;
    let nice = if normalized <= 1.0 {
        1.0
    } else if normalized <= 2.0 {
        2.0
    } else if normalized <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Ticks from 0 covering `max`: the tick values and the axis end.
fn ticks(max: f64, target: f64) -> (Vec<f64>, f64) {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let step = nice_step(max, target);
    let count = (max / step - 1e-9).ceil().max(1.0) as usize;
    ((0..=count).map(|k| k as f64 * step).collect(), count as f64 * step)
}

/// A tick label with as many decimals as the step needs.
fn tick_label(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10() - 1e-9).ceil().max(0.0) as usize
    };
    format!("{value:.decimals$}")
}

/// A duration in seconds for people: `90 ns`, `4.2 µs`, `850 µs`, `12.5 ms`,
/// `3.20 s`.
pub(super) fn human_seconds(seconds: f64) -> String {
    // Also turns the -0.0 of an empty float sum into 0.
    let seconds = if seconds > 0.0 { seconds } else { 0.0 };
    if seconds < 1e-6 {
        format!("{:.0} ns", seconds * 1e9)
    } else if seconds < 1e-5 {
        format!("{:.1} µs", seconds * 1e6)
    } else if seconds < 1e-3 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

/// Bytes as MiB for people.
pub(super) fn human_mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// The shared horizontal axis: seconds since the origin, shown in s, ms or µs.
struct TimeAxis {
    /// Seconds at the right edge.
    end: f64,
    /// Tick positions, in seconds.
    ticks: Vec<f64>,
    /// Tick labels, in `unit`.
    labels: Vec<String>,
    unit: &'static str,
}

impl TimeAxis {
    fn new(last: f64) -> Self {
        let last = if last.is_finite() && last > 0.0 { last } else { 1.0 };
        let (scale, unit) = if last < 1e-3 {
            (1e6, "µs")
        } else if last < 1.0 {
            (1e3, "ms")
        } else {
            (1.0, "s")
        };
        let (scaled_ticks, end) = ticks(last * scale, 10.0);
        let step = scaled_ticks.get(1).copied().unwrap_or(end);
        TimeAxis {
            end: end / scale,
            labels: scaled_ticks.iter().map(|&v| tick_label(v, step)).collect(),
            ticks: scaled_ticks.iter().map(|&v| v / scale).collect(),
            unit,
        }
    }

    fn x(&self, seconds: f64) -> f64 {
        LEFT + seconds.max(0.0) / self.end * PLOT_WIDTH
    }

    /// Vertical grid lines over a panel.
    fn grid(&self, out: &mut String, top: f64, height: f64) {
        for &t in &self.ticks {
            let x = self.x(t);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.2}" y1="{top:.2}" x2="{x:.2}" y2="{:.2}" stroke="#e3e3e3" stroke-width="1"/>"##,
                top + height
            );
        }
    }

    /// Tick marks, labels and the axis title under a panel whose bottom is `y`.
    fn draw(&self, out: &mut String, y: f64) {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="#555" stroke-width="1"/>"##,
            LEFT + PLOT_WIDTH
        );
        for (&t, label) in self.ticks.iter().zip(&self.labels) {
            let x = self.x(t);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.2}" y1="{y:.2}" x2="{x:.2}" y2="{:.2}" stroke="#555" stroke-width="1"/><text x="{x:.2}" y="{:.2}" text-anchor="middle" class="tick">{}</text>"##,
                y + 4.0,
                y + 16.0,
                escape(label)
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{:.2}" y="{:.2}" text-anchor="middle" class="axis">time ({})</text>"##,
            LEFT + PLOT_WIDTH / 2.0,
            y + 32.0,
            self.unit
        );
    }
}

/// Draws the figure as an SVG document (`standalone`: with the XML
/// declaration, for a `.svg` file) or as an `<svg>` element for HTML.
pub(super) fn svg(figure: &Figure<'_>, standalone: bool) -> String {
    let tasks = figure.tasks.unwrap_or(&[]);
    let samples = figure.samples.unwrap_or(&[]);
    let last = tasks
        .iter()
        .map(|t| t.end)
        .chain(samples.iter().map(|s| s.time))
        .fold(0.0f64, f64::max);
    let axis = TimeAxis::new(last);

    let mut body = String::new();
    let mut y = 0.0;
    if figure.title.is_empty() {
        y += 8.0;
    } else {
        let _ = writeln!(
            body,
            r#"<text x="{LEFT}" y="26" class="title">{}</text>"#,
            escape(figure.title)
        );
        y += 40.0;
    }
    if let Some(tasks) = figure.tasks {
        y = task_panel(&mut body, &axis, tasks, y);
    }
    if let Some(samples) = figure.samples {
        y = resource_panels(&mut body, &axis, samples, y);
    }
    let height = y + 8.0;

    let mut out = String::with_capacity(body.len() + 1024);
    if standalone {
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    }
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="{FONT}" font-size="12">"#
    );
    out.push_str(
        "<style>\
         .title{font-size:17px;font-weight:600;fill:#222}\
         .panel{font-size:13px;font-weight:600;fill:#333}\
         .tick{font-size:11px;fill:#555}\
         .axis{font-size:12px;fill:#444}\
         .label{font-size:12px;fill:#333}\
         .note{font-size:12px;fill:#888;font-style:italic}\
         rect.task:hover{stroke:#111;stroke-width:1.5}\
         </style>\n",
    );
    let _ = writeln!(
        out,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height:.0}" fill="#ffffff"/>"##
    );
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

fn panel_title(out: &mut String, y: f64, text: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{:.2}" class="panel">{}</text>"#,
        y + 14.0,
        escape(text)
    );
}

fn panel_frame(out: &mut String, top: f64, height: f64) {
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top:.2}" width="{PLOT_WIDTH}" height="{height:.2}" fill="none" stroke="#bbb" stroke-width="1"/>"##
    );
}

/// The Gantt chart: one row per worker thread, one bar per task coloured by
/// key prefix, then the legend. Returns the y below it.
fn task_panel(out: &mut String, axis: &TimeAxis, tasks: &[TaskRecord], mut y: f64) -> f64 {
    let total: f64 = tasks.iter().map(TaskRecord::duration).sum();
    panel_title(
        out,
        y,
        &format!(
            "Tasks by worker thread — {} tasks, {} of task time",
            tasks.len(),
            human_seconds(total)
        ),
    );
    y += 24.0;
    let mut workers: Vec<usize> = tasks.iter().map(|t| t.worker).collect();
    workers.sort_unstable();
    workers.dedup();
    if workers.is_empty() {
        let height = 40.0;
        panel_frame(out, y, height);
        let _ = writeln!(
            out,
            r#"<text x="{:.2}" y="{:.2}" text-anchor="middle" class="note">no tasks were recorded</text>"#,
            LEFT + PLOT_WIDTH / 2.0,
            y + 24.0
        );
        axis.draw(out, y + height);
        return y + height + 44.0;
    }
    let row_height = match workers.len() {
        0..=16 => 26.0,
        17..=48 => 15.0,
        _ => 9.0,
    };
    let row_of: HashMap<usize, usize> = workers.iter().enumerate().map(|(row, &w)| (w, row)).collect();
    let top = y;
    let height = workers.len() as f64 * row_height;
    for (row, &worker) in workers.iter().enumerate() {
        let row_top = top + row as f64 * row_height;
        if row % 2 == 1 {
            let _ = writeln!(
                out,
                r##"<rect x="{LEFT}" y="{row_top:.2}" width="{PLOT_WIDTH}" height="{row_height}" fill="#f6f6f6"/>"##
            );
        }
        if row_height >= 14.0 || row % 4 == 0 {
            let _ = writeln!(
                out,
                r#"<text x="{:.2}" y="{:.2}" text-anchor="end" class="label">thread {worker}</text>"#,
                LEFT - 8.0,
                row_top + row_height / 2.0 + 4.0
            );
        }
    }
    axis.grid(out, top, height);
    let colors = Colors::new(tasks);
    let bar_height = (row_height - 6.0).max(row_height * 0.7);
    let inset = (row_height - bar_height) / 2.0;
    for t in tasks {
        let row = row_of[&t.worker];
        let x = axis.x(t.start);
        // A task of a few microseconds still gets a visible sliver; wider
        // bars leave a hairline gap so back-to-back tasks of one prefix
        // stay distinguishable.
        let span = axis.x(t.end) - x;
        let width = if span > 2.0 { span - 0.75 } else { span.max(0.6) };
        let _ = writeln!(
            out,
            r#"<rect class="task" x="{x:.2}" y="{:.2}" width="{width:.2}" height="{bar_height:.2}" fill="{}"><title>{}
{} · op {} · thread {}
{} ({:.6} s → {:.6} s)</title></rect>"#,
            top + row as f64 * row_height + inset,
            colors.of(&t.prefix),
            escape(&t.key.to_string()),
            escape(&t.prefix),
            escape(&t.op),
            t.worker,
            human_seconds(t.duration()),
            t.start,
            t.end
        );
    }
    panel_frame(out, top, height);
    axis.draw(out, top + height);
    y = top + height + 44.0;
    legend(out, &colors, y)
}

/// One swatch and name per key prefix, wrapping across lines.
fn legend(out: &mut String, colors: &Colors, y: f64) -> f64 {
    let mut x = LEFT;
    let mut line_y = y;
    for (prefix, count, _) in &colors.order {
        let shown: String = if prefix.chars().count() > 32 {
            prefix.chars().take(31).chain(['…']).collect()
        } else {
            prefix.clone()
        };
        let text = format!("{shown} ({count})");
        // Rough advance of a 12 px sans-serif glyph.
        let width = 22.0 + text.chars().count() as f64 * 6.8 + 18.0;
        if x + width > LEFT + PLOT_WIDTH && x > LEFT {
            x = LEFT;
            line_y += 20.0;
        }
        let _ = writeln!(
            out,
            r#"<g><title>{}</title><rect x="{x:.2}" y="{:.2}" width="12" height="12" rx="2" fill="{}"/><text x="{:.2}" y="{:.2}" class="label">{}</text></g>"#,
            escape(prefix),
            line_y,
            colors.of(prefix),
            x + 18.0,
            line_y + 10.5,
            escape(&text)
        );
        x += width;
    }
    line_y + 32.0
}

/// Memory and CPU line charts over the shared time axis.
fn resource_panels(out: &mut String, axis: &TimeAxis, samples: &[ResourceSample], mut y: f64) -> f64 {
    const MIB: f64 = 1024.0 * 1024.0;
    let peak = samples.iter().map(|s| s.memory).max().unwrap_or(0) as f64;
    let mean_cpu = if samples.len() > 1 {
        samples[1..].iter().map(|s| s.cpu).sum::<f64>() / (samples.len() - 1) as f64
    } else {
        0.0
    };
    let memory: Vec<(f64, f64)> = samples.iter().map(|s| (s.time, s.memory as f64 / MIB)).collect();
    let cpu: Vec<(f64, f64)> = samples.iter().map(|s| (s.time, s.cpu)).collect();
    let (memory_title, cpu_title) = if samples.is_empty() {
        (
            "Memory (resident set, MiB)".to_string(),
            "CPU (% of one core)".to_string(),
        )
    } else {
        (
            format!("Memory (resident set, MiB) — peak {}", human_mib(peak)),
            format!("CPU (% of one core) — mean {mean_cpu:.0} %"),
        )
    };
    y = line_panel(out, axis, y, &memory_title, &memory, "#4e79a7", 1.0);
    y = line_panel(out, axis, y, &cpu_title, &cpu, "#e15759", 100.0);
    y
}

/// One line chart; `floor` is the least top of the value axis.
fn line_panel(
    out: &mut String,
    axis: &TimeAxis,
    y: f64,
    title: &str,
    points: &[(f64, f64)],
    color: &str,
    floor: f64,
) -> f64 {
    panel_title(out, y, title);
    let top = y + 24.0;
    let height = RESOURCE_PANEL_HEIGHT;
    let bottom = top + height;
    let max = points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(floor, f64::max);
    let (value_ticks, value_end) = ticks(max * 1.05, 4.0);
    let step = value_ticks.get(1).copied().unwrap_or(value_end);
    let y_of = |v: f64| bottom - (v.max(0.0) / value_end) * height;
    for &v in &value_ticks {
        let ty = y_of(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{ty:.2}" x2="{:.2}" y2="{ty:.2}" stroke="#ececec" stroke-width="1"/><text x="{:.2}" y="{:.2}" text-anchor="end" class="tick">{}</text>"##,
            LEFT + PLOT_WIDTH,
            LEFT - 8.0,
            ty + 4.0,
            tick_label(v, step)
        );
    }
    axis.grid(out, top, height);
    if points.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{:.2}" y="{:.2}" text-anchor="middle" class="note">no samples were recorded (resource sampling reads Linux /proc)</text>"#,
            LEFT + PLOT_WIDTH / 2.0,
            top + height / 2.0
        );
    } else {
        let mut line = String::new();
        for &(t, v) in points {
            let _ = write!(line, "{:.2},{:.2} ", axis.x(t), y_of(v));
        }
        let first = axis.x(points[0].0);
        let last = axis.x(points[points.len() - 1].0);
        let _ = writeln!(
            out,
            r#"<polygon points="{first:.2},{bottom:.2} {line}{last:.2},{bottom:.2}" fill="{color}" fill-opacity="0.15" stroke="none"/>"#
        );
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.8" stroke-linejoin="round"/>"#,
            line.trim_end()
        );
        if let Some(&(t, v)) = points.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            let _ = writeln!(
                out,
                r##"<circle cx="{:.2}" cy="{:.2}" r="3" fill="{color}" stroke="#fff" stroke-width="1"/>"##,
                axis.x(t),
                y_of(v)
            );
        }
    }
    panel_frame(out, top, height);
    axis.draw(out, bottom);
    bottom + 48.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_cover_the_range() {
        let (t, end) = ticks(3.7, 10.0);
        assert_eq!(end, 4.0);
        assert_eq!(t.first(), Some(&0.0));
        assert_eq!(t.last(), Some(&4.0));
        let (t, end) = ticks(0.043, 10.0);
        assert!((end - 0.045).abs() < 1e-12, "{end}");
        assert_eq!(t.len(), 10);
        assert_eq!(tick_label(0.005 * 3.0, 0.005), "0.015");
        assert_eq!(tick_label(20.0, 10.0), "20");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_seconds(-0.0), "0 ns");
        assert_eq!(human_seconds(9e-8), "90 ns");
        assert_eq!(human_seconds(4.2e-6), "4.2 µs");
        assert_eq!(human_seconds(8.5e-4), "850 µs");
        assert_eq!(human_seconds(0.0125), "12.5 ms");
        assert_eq!(human_seconds(3.2), "3.20 s");
    }

    #[test]
    fn escape_makes_keys_safe_for_xml() {
        assert_eq!(escape(r#"("a<b>&'c", 0)"#), "(&quot;a&lt;b&gt;&amp;&#39;c&quot;, 0)");
    }
}
