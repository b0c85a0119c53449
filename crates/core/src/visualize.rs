//! Pictures of task graphs: DOT text, and SVG, PNG or PDF through Graphviz `dot`.
//!
//! Dask's `x.visualize(filename=...)` draws the graph a computation would
//! run. Here the same picture comes in two steps:
//!
//! 1. [`to_dot`] writes Graphviz DOT text for a [`Plan`] (one node per task,
//!    an edge from every dependency to its dependent), [`graph_to_dot`] plans
//!    a [`Graph`] without fusion first (so the picture shows the graph as it
//!    was built), and [`layers_to_dot`] draws one node per layer (Dask's
//!    `HighLevelGraph.visualize`).
//! 2. [`write()`] picks the output format from the file's extension: `.dot` and
//!    `.gv` are the text itself; `.svg`, `.png` and `.pdf` pipe the text
//!    through Graphviz's `dot` program.
//!
//! [`visualize`] does both for a collection, as Dask's method does.
//!
//! # Why DOT is written here
//!
//! DOT is a small text format, and writing it ourselves keeps graph crates
//! out of the core's dependencies and makes the output plain text that tests
//! can read. Graphviz is needed only to turn the text into an image; it is an
//! external program (Debian package `graphviz`), looked up on the `PATH` at
//! the moment an image is asked for. Without it, [`write()`] fails with an error
//! that says how to install it and that a `.dot` file works without it.
//!
//! # The look
//!
//! As Dask draws it: tasks are circles labelled by their op (and the key's
//! index, `inc (3)`; a label wider than a dozen characters gets an ellipse,
//! since a circle grows to its label's width both ways), edges point from a dependency to its dependent, and the
//! graph reads bottom to top ([`RankDir::BottomToTop`]), inputs at the bottom
//! and results at the top. [`NodeStyle::TasksAndData`] adds Dask's boxes for
//! the data each task outputs; [`NodeStyle::Keys`] shows only keys.
//! [`Color::Order`] fills each task with a colour from red (runs first) to
//! blue (runs last) by its [`Plan::priorities`] rank, Dask's `color="order"`.
//! Hovering over a node in an SVG shows its full key.
//!
//! Key names end in a 16-digit token (`inc-3f9a0c…`); labels replace each
//! distinct token by `#0`, `#1`, … (as Dask's `dot.label` does), so pictures
//! stay narrow while different layers stay distinguishable.
//!
//! # Large graphs
//!
//! [`to_dot`] and [`layers_to_dot`] run in time linear in the number of tasks
//! (layers) plus edges plus label text, so they are safe on any graph: the
//! text of a million-task plan is written in well under a second. The cost is
//! in Graphviz, whose layout is super-linear: beyond a few thousand nodes it
//! takes minutes and the picture is unreadable. Nothing is refused or capped
//! (a truncated picture would mislead); instead [`to_dot`] logs a
//! `tracing` warning above [`LARGE_GRAPH_TASKS`] tasks, suggesting
//! [`layers_to_dot`] or a `.dot` file.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, ErrorKind, Result};
use crate::exec::Collection;
use crate::graph::{Graph, LayerBody};
use crate::key::{Key, Name};
use crate::plan::{Plan, PlanOptions};

/// Above this many tasks [`to_dot`] logs a warning: Graphviz takes minutes to
/// lay out graphs of this size and the picture is hard to read.
pub const LARGE_GRAPH_TASKS: usize = 5_000;

/// Task labels wider than this many characters get an ellipse instead of a
/// circle: a circle grows to its label's width in both directions, so a long
/// op name (`blockwise.identity`, a fused `inc+inc+inc`) would dwarf the graph.
const ROUND_LABEL_CHARS: usize = 12;

/// The file extensions [`write()`] understands, lower case, without the dot.
pub const SUPPORTED_EXTENSIONS: &[&str] = &["dot", "gv", "svg", "png", "pdf"];

/// The direction in which the graph is laid out: where the inputs are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RankDir {
    /// Inputs at the bottom, results at the top (Dask's default, `BT`).
    #[default]
    BottomToTop,
    /// Inputs at the top, results at the bottom (`TB`).
    TopToBottom,
    /// Inputs on the left, results on the right (`LR`).
    LeftToRight,
    /// Inputs on the right, results on the left (`RL`).
    RightToLeft,
}

impl RankDir {
    /// The Graphviz `rankdir` value: `BT`, `TB`, `LR` or `RL`.
    pub fn as_str(self) -> &'static str {
        match self {
            RankDir::BottomToTop => "BT",
            RankDir::TopToBottom => "TB",
            RankDir::LeftToRight => "LR",
            RankDir::RightToLeft => "RL",
        }
    }
}

/// Which nodes [`to_dot`] draws for each task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeStyle {
    /// One circle per task, labelled by its op and its key's index
    /// (`inc (3)`); edges from dependency to dependent.
    #[default]
    Tasks,
    /// Dask's full picture: a circle per task labelled by its op, and a box
    /// per task output labelled by its key. Edges run from a dependency's box
    /// to the task's circle, and from the circle to its own box.
    TasksAndData,
    /// One box per task labelled by its key only (ops left out).
    Keys,
}

/// How [`to_dot`] colours task nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Color {
    /// No fill.
    #[default]
    None,
    /// Fill by run-order rank ([`Plan::priorities`]): red runs first, blue
    /// runs last, through white (Dask's `color="order"`, a red-blue ramp).
    /// The rank is added to the label.
    Order,
}

/// Options of [`to_dot`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DotOptions {
    /// Layout direction; bottom to top by default, as Dask.
    pub rankdir: RankDir,
    /// Which nodes represent a task.
    pub nodes: NodeStyle,
    /// How task nodes are coloured.
    pub color: Color,
}

/// Writes Graphviz DOT text for `plan`: one node per task and an edge from
/// each dependency to each of its dependents (see the module docs for the
/// look). Node ids are `t{id}` for task `id`, and `d{id}` for its data box
/// under [`NodeStyle::TasksAndData`].
///
/// Runs in time linear in tasks, edges and label text; logs a warning above
/// [`LARGE_GRAPH_TASKS`] tasks.
pub fn to_dot(plan: &Plan, options: &DotOptions) -> String {
    let n = plan.len();
    if n > LARGE_GRAPH_TASKS {
        tracing::warn!(
            tasks = n,
            "drawing {n} tasks: Graphviz takes a long time to lay out graphs above a few thousand \
             nodes and the picture is hard to read; consider layers_to_dot, or writing a .dot file"
        );
    }
    let mut out = String::with_capacity(64 + n * 64);
    out.push_str("digraph blockwise {\n");
    let _ = writeln!(out, "  graph [rankdir={}];", options.rankdir.as_str());
    let task_shape = match options.nodes {
        NodeStyle::Keys => "box",
        NodeStyle::Tasks | NodeStyle::TasksAndData => "circle",
    };
    let _ = writeln!(out, "  node [shape={task_shape}];");

    let priorities = plan.priorities();
    let colored = options.color == Color::Order && priorities.len() == n;
    let mut names = ShortNames::default();
    let mut label = String::new();
    for id in 0..n as u32 {
        let key = &plan.key(id);
        label.clear();
        match options.nodes {
            NodeStyle::Tasks => {
                label.push_str(&plan.op(id).label());
                if !key.index.is_empty() {
                    label.push(' ');
                    push_index(&mut label, key);
                }
            }
            NodeStyle::TasksAndData => label.push_str(&plan.op(id).label()),
            NodeStyle::Keys => names.push_key(&mut label, key),
        }
        if colored {
            let _ = write!(label, "\n#{}", priorities[id as usize]);
        }
        let _ = write!(out, "  t{id} [");
        if task_shape == "circle" && widest_line(&label) > ROUND_LABEL_CHARS {
            out.push_str("shape=ellipse, ");
        }
        out.push_str("label=");
        push_quoted(&mut out, &label);
        out.push_str(", tooltip=");
        push_quoted(&mut out, &key.to_string());
        if colored {
            let (fill, font) = order_colors(priorities[id as usize], n);
            let _ = write!(out, ", style=filled, fillcolor=\"{fill}\", fontcolor=\"{font}\"");
        }
        out.push_str("];\n");
        if options.nodes == NodeStyle::TasksAndData {
            label.clear();
            names.push_key(&mut label, key);
            let _ = write!(out, "  d{id} [shape=box, label=");
            push_quoted(&mut out, &label);
            out.push_str(", tooltip=");
            push_quoted(&mut out, &key.to_string());
            if colored {
                let (fill, font) = order_colors(priorities[id as usize], n);
                let _ = write!(out, ", style=filled, fillcolor=\"{fill}\", fontcolor=\"{font}\"");
            }
            out.push_str("];\n");
        }
    }
    let dependency_node = if options.nodes == NodeStyle::TasksAndData {
        'd'
    } else {
        't'
    };
    for id in 0..n as u32 {
        if options.nodes == NodeStyle::TasksAndData {
            let _ = writeln!(out, "  t{id} -> d{id};");
        }
        for &dependency in plan.dependencies().row(id) {
            let _ = writeln!(out, "  {dependency_node}{dependency} -> t{id};");
        }
    }
    out.push_str("}\n");
    out
}

/// Plans the computation of `outputs` from `graph` without fusion, so every
/// task of the graph as built gets its own node, then writes DOT with
/// [`to_dot`] (Dask's `visualize(optimize_graph=False)`, its default).
///
/// Fails as [`Plan::build`] does: an output key or a dependency that no layer
/// holds, or a cycle.
pub fn graph_to_dot(graph: &Graph, outputs: &[Key], options: &DotOptions) -> Result<String> {
    let plan = Plan::build(graph, outputs, &PlanOptions { fuse: false })?;
    Ok(to_dot(&plan, options))
}

/// Writes DOT text with one box per layer of `graph`, labelled by the layer's
/// name and its number of tasks, and an edge from each layer to each layer
/// that reads it (Dask's `HighLevelGraph.visualize`). Bottom to top, as
/// [`to_dot`]'s default. Layers are not expanded, so this is cheap on graphs
/// of any size; node ids are `l{i}` in dependency order.
///
/// Two layers with the same name are the same computation (see
/// [`Graph::layers_by_name`]) and are drawn once.
pub fn layers_to_dot(graph: &Graph) -> String {
    let layers = graph.layers();
    let mut ids: HashMap<Name, usize> = HashMap::with_capacity(layers.len());
    let mut names = ShortNames::default();
    let mut out = String::with_capacity(64 + layers.len() * 96);
    out.push_str("digraph blockwise_layers {\n");
    let _ = writeln!(out, "  graph [rankdir={}];", RankDir::BottomToTop.as_str());
    out.push_str("  node [shape=box];\n");
    let mut label = String::new();
    for layer in &layers {
        if ids.contains_key(layer.name()) {
            continue;
        }
        let id = ids.len();
        ids.insert(layer.name().clone(), id);
        label.clear();
        names.push_name(&mut label, layer.name());
        let count = layer.len();
        let _ = write!(label, "\n{count} task{}", if count == 1 { "" } else { "s" });
        if let LayerBody::Blockwise(rule) = layer.body() {
            let grid: Vec<String> = rule.grid.iter().map(u32::to_string).collect();
            let _ = write!(label, "\nblockwise {}", grid.join("x"));
        }
        let _ = write!(out, "  l{id} [label=");
        push_quoted(&mut out, &label);
        out.push_str(", tooltip=");
        push_quoted(&mut out, layer.name().as_str());
        out.push_str("];\n");
    }
    let mut drawn: HashSet<(usize, usize)> = HashSet::new();
    for layer in &layers {
        let id = ids[layer.name()];
        for dep in layer.deps() {
            let dep_id = ids[dep.name()];
            if drawn.insert((dep_id, id)) {
                let _ = writeln!(out, "  l{dep_id} -> l{id};");
            }
        }
    }
    out.push_str("}\n");
    out
}

/// An output format of [`write()`], chosen by file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// DOT text (`.dot` or `.gv`); needs no Graphviz.
    Dot,
    /// Scalable vector graphics (`.svg`), rendered by Graphviz.
    Svg,
    /// A PNG image (`.png`), rendered by Graphviz.
    Png,
    /// A PDF document (`.pdf`), rendered by Graphviz.
    Pdf,
}

impl Format {
    /// The format named by `path`'s extension (case-insensitive). An unknown
    /// or missing extension is an [`ErrorKind::InvalidArgument`] error that
    /// lists the supported ones.
    pub fn from_path(path: &Path) -> Result<Format> {
        let extension = path.extension().and_then(OsStr::to_str).map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("dot" | "gv") => Ok(Format::Dot),
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            Some("pdf") => Ok(Format::Pdf),
            _ => {
                let supported: Vec<String> = SUPPORTED_EXTENSIONS.iter().map(|e| format!(".{e}")).collect();
                let found = match path.extension() {
                    Some(e) => format!("has the extension `.{}`", e.to_string_lossy()),
                    None => "has no extension".to_string(),
                };
                Err(Error::invalid(format!(
                    "cannot tell which picture to write: {} {found}; the supported extensions are {} \
                     (.dot and .gv write the DOT text and need no Graphviz)",
                    path.display(),
                    supported.join(", ")
                )))
            }
        }
    }

    /// Whether the format needs Graphviz to render.
    pub fn needs_graphviz(self) -> bool {
        self != Format::Dot
    }

    /// The Graphviz output format name (`dot -T<name>`).
    pub fn graphviz_name(self) -> &'static str {
        match self {
            Format::Dot => "dot",
            Format::Svg => "svg",
            Format::Png => "png",
            Format::Pdf => "pdf",
        }
    }
}

/// The Graphviz `dot` program, which lays out DOT text and renders images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graphviz {
    program: PathBuf,
}

impl Graphviz {
    /// Finds `dot` on the current `PATH`, read at the moment of the call.
    /// When it is not there, the error ([`ErrorKind::Io`]) says how to
    /// install Graphviz and that `.dot` files need no Graphviz.
    pub fn find() -> Result<Graphviz> {
        Graphviz::find_in(&std::env::var_os("PATH").unwrap_or_default())
    }

    /// Finds `dot` in the directories of `search_path`, a `PATH`-style list
    /// (as [`std::env::split_paths`] reads it). Same error as
    /// [`Graphviz::find`].
    pub fn find_in(search_path: &OsStr) -> Result<Graphviz> {
        let file_name = if cfg!(windows) { "dot.exe" } else { "dot" };
        std::env::split_paths(search_path)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(file_name))
            .find(|candidate| is_executable(candidate))
            .map(|program| Graphviz { program })
            .ok_or_else(|| graphviz_missing("which is not on the PATH"))
    }

    /// The `dot` program at an explicit path, not checked until it is run.
    pub fn at(program: impl Into<PathBuf>) -> Graphviz {
        Graphviz {
            program: program.into(),
        }
    }

    /// The path of the program that renders.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Renders DOT text in `format` by piping it through `dot -T<format>`,
    /// returning the output file's bytes. [`Format::Dot`] returns the text
    /// unchanged, without running Graphviz.
    ///
    /// Errors ([`ErrorKind::Io`]): the program cannot be started (for a
    /// missing program, the install hint of [`Graphviz::find`]), or it fails,
    /// in which case the error carries its exit status and standard error.
    pub fn render(&self, dot: &str, format: Format) -> Result<Vec<u8>> {
        if format == Format::Dot {
            return Ok(dot.as_bytes().to_vec());
        }
        let flag = format!("-T{}", format.graphviz_name());
        let command = format!("{} {flag}", self.program.display());
        let mut child = Command::new(&self.program)
            .arg(&flag)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => {
                    graphviz_missing(&format!("which is not at {}", self.program.display()))
                }
                _ => Error::new(ErrorKind::Io, format!("could not start Graphviz (`{command}`): {err}")),
            })?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Io, format!("`{command}` has no standard input")))?;
        // Feed the text from another thread: Graphviz may write warnings to
        // a full stderr pipe before it has read all its input.
        let (output, fed) = std::thread::scope(|scope| {
            let feeder = scope.spawn(move || stdin.write_all(dot.as_bytes()));
            let output = child.wait_with_output();
            (output, feeder.join())
        });
        let output = output.map_err(|err| Error::new(ErrorKind::Io, format!("while running `{command}`: {err}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "Graphviz (`{command}`) failed with {}: {}",
                    output.status,
                    stderr.trim()
                ),
            ));
        }
        match fed {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("could not pipe the graph into `{command}`: {err}"),
                ));
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("the thread piping the graph into `{command}` panicked"),
                ));
            }
        }
        if output.stdout.is_empty() {
            return Err(Error::new(
                ErrorKind::Io,
                format!("`{command}` succeeded but wrote nothing"),
            ));
        }
        Ok(output.stdout)
    }
}

/// Writes the DOT text `dot` to `path`, in the format named by its extension
/// ([`SUPPORTED_EXTENSIONS`]): `.dot` and `.gv` write the text; `.svg`,
/// `.png` and `.pdf` are rendered by Graphviz's `dot`, looked up on the `PATH`
/// at the time of the call ([`Graphviz::find`]).
///
/// The file is written only once rendering succeeded, so a failure leaves an
/// existing file untouched. Errors: an unknown extension
/// ([`ErrorKind::InvalidArgument`]), Graphviz missing or failing, or the file
/// not writable ([`ErrorKind::Io`]).
pub fn write(dot: &str, path: &Path) -> Result<()> {
    let format = Format::from_path(path)?;
    let graphviz = if format.needs_graphviz() {
        Some(Graphviz::find().map_err(|e| e.context(format!("while writing {}", path.display())))?)
    } else {
        None
    };
    write_format(dot, path, format, graphviz.as_ref())
}

/// As [`write()`], with an explicit Graphviz instead of a `PATH` lookup.
pub fn write_with(dot: &str, path: &Path, graphviz: &Graphviz) -> Result<()> {
    let format = Format::from_path(path)?;
    write_format(dot, path, format, Some(graphviz))
}

/// Draws a collection's graph to `path` (format by extension, as [`write()`]),
/// unfused as [`graph_to_dot`] plans it: Dask's `x.visualize(filename=...)`.
pub fn visualize<C: Collection>(collection: &C, path: &Path, options: &DotOptions) -> Result<()> {
    // Check the extension before planning: a typo should not cost a plan.
    Format::from_path(path)?;
    let dot = graph_to_dot(&collection.graph(), &collection.output_keys(), options)?;
    write(&dot, path)
}

fn write_format(dot: &str, path: &Path, format: Format, graphviz: Option<&Graphviz>) -> Result<()> {
    let bytes = match graphviz {
        Some(graphviz) if format.needs_graphviz() => graphviz
            .render(dot, format)
            .map_err(|e| e.context(format!("while writing {}", path.display())))?,
        _ => dot.as_bytes().to_vec(),
    };
    std::fs::write(path, bytes).map_err(|err| Error::from(err).context(format!("while writing {}", path.display())))
}

/// The error for a missing `dot`; `absent` says where it was looked for.
fn graphviz_missing(absent: &str) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "rendering a graph as SVG, PNG or PDF needs Graphviz's `dot` program, {absent}. \
             Install Graphviz (Debian/Ubuntu: `apt-get install graphviz`; Fedora: `dnf install \
             graphviz`; macOS: `brew install graphviz`; others: https://graphviz.org/download/), \
             or write a `.dot` file instead, which needs no Graphviz"
        ),
    )
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// Appends `text` as a DOT double-quoted string. Inside one, only `"` and
/// `\` are special to the parser, and Graphviz reads `\n`, `\l`, `\N` and
/// others in labels as escapes: so backslashes are doubled, quotes escaped,
/// a newline becomes `\n` (a centred line break), and other control
/// characters are spelled out (`\u{7}`) rather than passed into the image.
/// Braces, angle brackets and `|` need nothing: they are special only in
/// record shapes and HTML labels, which are never used here.
fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push_str("\\n");
                }
            }
            c if c.is_control() => {
                for escaped in c.escape_unicode() {
                    if escaped == '\\' {
                        out.push_str("\\\\");
                    } else {
                        out.push(escaped);
                    }
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The number of characters in the longest line of `label`.
fn widest_line(label: &str) -> usize {
    label.lines().map(|line| line.chars().count()).max().unwrap_or(0)
}

/// Appends a key's index as `(3)` or `(2, 0)`.
fn push_index(out: &mut String, key: &Key) {
    out.push('(');
    for (i, index) in key.index.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{index}");
    }
    out.push(')');
}

/// Short labels for names: a trailing hex token (`inc-3f9a0c12…`) becomes
/// `#0`, `#1`, … numbered by first appearance, as Dask's `dot.label`.
#[derive(Default)]
struct ShortNames {
    short: HashMap<Name, String>,
    tokens: usize,
}

impl ShortNames {
    fn push_name(&mut self, out: &mut String, name: &Name) {
        if let Some(short) = self.short.get(name) {
            out.push_str(short);
            return;
        }
        let text = name.as_str();
        let short = match text.rfind('-') {
            Some(dash) if is_token(&text[dash + 1..]) => {
                let short = format!("{}-#{}", &text[..dash], self.tokens);
                self.tokens += 1;
                short
            }
            _ => text.to_string(),
        };
        out.push_str(&short);
        self.short.insert(name.clone(), short);
    }

    fn push_key(&mut self, out: &mut String, key: &Key) {
        self.push_name(out, &key.name);
        if !key.index.is_empty() {
            out.push(' ');
            push_index(out, key);
        }
    }
}

/// Whether a name's last part looks like a token: eight or more hex digits.
fn is_token(part: &str) -> bool {
    part.len() >= 8 && part.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The fill and font colours of the task of `rank` among `count` tasks: a
/// red–white–blue ramp (the ends and middle of matplotlib's `RdBu`, which
/// Dask uses), red first. The font is white on the dark ends, black on the
/// light middle.
fn order_colors(rank: u32, count: usize) -> (String, &'static str) {
    const STOPS: [(u8, u8, u8); 3] = [(0xb2, 0x18, 0x2b), (0xf7, 0xf7, 0xf7), (0x21, 0x66, 0xac)];
    const STEPS: u64 = 1_000;
    let last = count.saturating_sub(1).max(1) as u64;
    let position = u64::from(rank).min(last) * 2 * STEPS / last; // 0..=2*STEPS
    let (segment, within) = if position >= STEPS {
        (1, position - STEPS)
    } else {
        (0, position)
    };
    let (from, to) = (STOPS[segment], STOPS[segment + 1]);
    let mix = |a: u8, b: u8| -> u8 {
        let (a, b) = (u64::from(a), u64::from(b));
        ((a * (STEPS - within) + b * within) / STEPS) as u8
    };
    let (r, g, b) = (mix(from.0, to.0), mix(from.1, to.1), mix(from.2, to.2));
    // Relative luminance (ITU-R BT.601 weights), 0..=255.
    let luminance = (299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b)) / 1000;
    let font = if luminance < 140 { "white" } else { "black" };
    (format!("#{r:02x}{g:02x}{b:02x}"), font)
}
