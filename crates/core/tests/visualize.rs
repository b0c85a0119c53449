//! Graph pictures: the DOT text `to_dot` writes (nodes, edges, labels and
//! their escaping, options), the layer picture, and files written through
//! `write`: DOT without Graphviz, SVG/PNG/PDF with the real Graphviz `dot`,
//! and the errors for a missing or failing Graphviz and a wrong extension.
//!
//! The rendering tests need Graphviz (`apt-get install graphviz`); without it
//! they fail and say so, unless `BLOCKWISE_SKIP_GRAPHVIZ=1` is set.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use blockwise_core::delayed::delayed;
use blockwise_core::visualize::{
    self, Color, DotOptions, Format, Graphviz, NodeStyle, RankDir, SUPPORTED_EXTENSIONS, graph_to_dot, layers_to_dot,
    to_dot,
};
use blockwise_core::{
    BlockArg, Blockwise, ErrorKind, FnOp, Graph, IndexMap, Input, Key, Layer, LayerBody, Name, Op, Plan, PlanOptions,
    Result, Slot, Task, Value,
};

fn inc(x: i64) -> i64 {
    x + 1
}

fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn total(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

const XS: &str = "xs";
const INC: &str = "inc-0123456789abcdef";
const TOTAL: &str = "total-fedcba9876543210";

/// ```text
///            total
///       /   |    |   \
///   inc 0  inc 1 inc 2  inc 3     (a blockwise layer)
///     |     |     |     |
///   xs 0  xs 1  xs 2  xs 3        (explicit tasks, literals)
/// ```
fn fan_in_graph() -> (Graph, Key) {
    let xs = Name::new(XS);
    let tasks = (0..4u32)
        .map(|i| {
            let task = Task::new(
                blockwise_core::op::identity(),
                vec![Input::Literal(Arc::new(i64::from(i)))],
            );
            (Key::new(xs.clone(), &[i]), task)
        })
        .collect();
    let xs_layer = Layer::new(xs.clone(), vec![], LayerBody::Tasks(tasks));
    let inc_op: Arc<dyn Op> = Arc::new(FnOp::new(inc, vec![None]));
    let inc_layer = Layer::new(
        Name::new(INC),
        vec![xs_layer],
        LayerBody::Blockwise(Box::new(Blockwise {
            op: inc_op,
            grid: vec![4],
            args: vec![BlockArg::Block {
                name: xs,
                map: vec![IndexMap::Axis(0)],
            }],
        })),
    );
    let total_op: Arc<dyn Op> = Arc::new(FnOp::new(total, vec![Some(4)]));
    let inputs = (0..4u32).map(|i| Input::Key(Key::new(Name::new(INC), &[i]))).collect();
    let total_layer = Layer::single(Name::new(TOTAL), vec![inc_layer], Task::new(total_op, inputs));
    (Graph::from_layer(total_layer), Key::single(Name::new(TOTAL)))
}

fn unfused(graph: &Graph, outputs: &[Key]) -> Plan {
    Plan::build(graph, outputs, &PlanOptions { fuse: false }).unwrap()
}

/// A node line of `to_dot`'s output: its id and its label, unescaped.
struct DotNode {
    id: String,
    label: String,
    line: String,
}

/// The nodes and edges of DOT text written by `to_dot` (one statement a line).
fn parse_dot(dot: &str) -> (Vec<DotNode>, BTreeSet<(String, String)>) {
    let mut nodes = Vec::new();
    let mut edges = BTreeSet::new();
    for line in dot.lines().map(str::trim) {
        if let Some((from, to)) = line.strip_suffix(';').and_then(|l| l.split_once(" -> ")) {
            assert!(
                edges.insert((from.to_string(), to.to_string())),
                "edge drawn twice: {line}"
            );
        } else if let Some((id, attrs)) = line.split_once(" [") {
            if ["graph", "node", "edge"].contains(&id) {
                continue;
            }
            nodes.push(DotNode {
                id: id.to_string(),
                label: quoted_attribute(attrs, "label").unwrap_or_else(|| panic!("node without a label: {line}")),
                line: line.to_string(),
            });
        }
    }
    (nodes, edges)
}

/// The value of a double-quoted DOT attribute, unescaped.
fn quoted_attribute(attrs: &str, name: &str) -> Option<String> {
    let start = attrs.find(&format!("{name}=\""))? + name.len() + 2;
    let mut value = String::new();
    let mut chars = attrs[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// Graphviz on the PATH, or `None` when the run opted out of needing it.
fn graphviz() -> Option<Graphviz> {
    match Graphviz::find() {
        Ok(graphviz) => Some(graphviz),
        Err(_) if std::env::var_os("BLOCKWISE_SKIP_GRAPHVIZ").is_some() => {
            eprintln!("Graphviz is not installed; BLOCKWISE_SKIP_GRAPHVIZ is set, so this test is skipped");
            None
        }
        Err(err) => {
            panic!("this test renders with Graphviz (or set BLOCKWISE_SKIP_GRAPHVIZ=1): {err}")
        }
    }
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("blockwise-visualize-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks that `svg` is well-formed XML with one `<svg>` root: every tag is
/// closed in order, every `&` starts an entity. Returns the text of every
/// `<text>` element, entities decoded.
fn svg_texts(svg: &str) -> Vec<String> {
    assert!(svg.trim_start().starts_with("<?xml"), "no XML declaration: {svg}");
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut texts = Vec::new();
    let mut rest = svg;
    while let Some(lt) = rest.find('<') {
        let between = &rest[..lt];
        assert!(!between.contains('>'), "stray `>` in text {between:?}");
        if stack.last() == Some(&"text") {
            texts.push(decode_entities(between));
        }
        rest = &rest[lt..];
        let (end, tag) = if rest.starts_with("<!--") {
            (rest.find("-->").expect("unclosed comment") + 3, None)
        } else if rest.starts_with("<?") {
            (rest.find("?>").expect("unclosed declaration") + 2, None)
        } else if rest.starts_with("<!") {
            (rest.find('>').expect("unclosed doctype") + 1, None)
        } else {
            let end = rest.find('>').expect("unclosed tag");
            (end + 1, Some(&rest[1..end]))
        };
        if let Some(tag) = tag {
            if let Some(closing) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(closing.trim()), "mismatched closing tag </{closing}>");
            } else {
                let name = tag.split_whitespace().next().expect("empty tag");
                if stack.is_empty() {
                    assert_eq!(name, "svg", "the root element is not <svg>");
                    roots += 1;
                }
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
        }
        rest = &rest[end..];
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    assert!(rest.trim().is_empty(), "text after the root: {rest:?}");
    assert_eq!(roots, 1);
    texts
}

fn decode_entities(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let semi = rest[amp..].find(';').unwrap_or_else(|| panic!("bare `&` in {text:?}")) + amp;
        let entity = &rest[amp + 1..semi];
        out.push(match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let number = entity
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("unknown entity &{entity};"));
                let code = match number.strip_prefix('x') {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => number.parse(),
                };
                char::from_u32(code.unwrap()).unwrap()
            }
        });
        rest = &rest[semi + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn dot_has_one_node_per_task_and_an_edge_per_dependency() {
    let (graph, output) = fan_in_graph();
    let plan = unfused(&graph, &[output]);
    assert_eq!(plan.len(), 9);
    let dot = to_dot(&plan, &DotOptions::default());
    assert!(
        dot.starts_with("digraph blockwise {\n") && dot.ends_with("}\n"),
        "{dot}"
    );
    assert!(
        dot.contains("graph [rankdir=BT];"),
        "Dask draws bottom to top by default: {dot}"
    );
    assert!(dot.contains("node [shape=circle];"), "{dot}");

    let (nodes, edges) = parse_dot(&dot);
    let ids: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
    assert_eq!(ids, (0..9).map(|t| format!("t{t}")).collect());
    let expected: BTreeSet<(String, String)> = (0..9u32)
        .flat_map(|t| {
            plan.dependencies()
                .row(t)
                .iter()
                .map(move |d| (format!("t{d}"), format!("t{t}")))
        })
        .collect();
    assert_eq!(edges, expected);
    assert_eq!(edges.len(), 8, "4 xs -> inc, 4 inc -> total");

    // Labels: the op and the key's index; a key without index shows the op only.
    for id in 0..9u32 {
        let node = nodes.iter().find(|n| n.id == format!("t{id}")).unwrap();
        let key = plan.key(id);
        let expected = match key.name.as_str() {
            XS => format!("blockwise.identity ({})", key.index[0]),
            INC => format!("inc ({})", key.index[0]),
            TOTAL => "total".to_string(),
            other => panic!("unexpected layer {other}"),
        };
        assert_eq!(node.label, expected);
        assert_eq!(quoted_attribute(&node.line, "tooltip").unwrap(), key.to_string());
        // Short labels keep Dask's circles; a long one would make a huge circle.
        assert_eq!(
            node.line.contains("shape=ellipse"),
            expected.len() > 12,
            "{}",
            node.line
        );
    }
    // Same plan, same text.
    assert_eq!(to_dot(&plan, &DotOptions::default()), dot);
}

/// A test op whose label holds every character DOT treats specially.
struct Awkward;

const AWKWARD_LABEL: &str = "say \"hi\" \\N {a|b} <i>\nnext line\r\nlast\u{7}";

impl Op for Awkward {
    fn name(&self) -> &str {
        "test.awkward"
    }
    fn call(&self, args: &[Value]) -> Result<Value> {
        Ok(args[0].clone())
    }
    fn label(&self) -> String {
        AWKWARD_LABEL.to_string()
    }
}

#[test]
fn labels_escape_quotes_backslashes_newlines_and_closure_braces() {
    let k = 3i64;
    let scaled = delayed(move |x: i64| x * k).call(1);
    let odd_name = Name::new("we\"ird\\name");
    let awkward = Layer::single(
        odd_name.clone(),
        vec![scaled.layer().clone()],
        Task::new(Arc::new(Awkward), vec![Input::Key(scaled.key().clone())]),
    );
    let graph = Graph::from_layer(awkward);
    let dot = graph_to_dot(&graph, &[Key::single(odd_name)], &DotOptions::default()).unwrap();

    // The closure's label keeps its braces: they are plain text in a quoted
    // label of a non-record shape.
    assert!(dot.contains("label=\"{{closure}}\""), "{dot}");
    // Quotes and backslashes escaped (`\N` must not become Graphviz's
    // node-name escape), CRLF and LF both one line break, BEL spelled out.
    assert!(
        dot.contains(r#"label="say \"hi\" \\N {a|b} <i>\nnext line\nlast\\u{7}""#),
        "{dot}"
    );
    assert!(dot.contains(r#"tooltip="\"we\\\"ird\\\\name\"""#), "{dot}");
    assert!(!dot.contains('\r') && !dot.contains('\u{7}'));
    let (nodes, edges) = parse_dot(&dot);
    assert_eq!(nodes.len(), 2);
    assert_eq!(edges.len(), 1);
    assert_eq!(nodes[0].label, "say \"hi\" \\N {a|b} <i>\nnext line\nlast\\u{7}");

    // Graphviz reads it, and draws the text as written.
    let Some(graphviz) = graphviz() else { return };
    let svg = String::from_utf8(graphviz.render(&dot, Format::Svg).unwrap()).unwrap();
    let texts = svg_texts(&svg);
    for expected in ["{{closure}}", "say \"hi\" \\N {a|b} <i>", "next line", "last\\u{7}"] {
        assert!(texts.iter().any(|t| t == expected), "{expected:?} not among {texts:?}");
    }
}

#[test]
fn rankdir_and_node_styles() {
    let (graph, output) = fan_in_graph();
    let plan = unfused(&graph, &[output]);
    for (rankdir, text) in [
        (RankDir::BottomToTop, "BT"),
        (RankDir::TopToBottom, "TB"),
        (RankDir::LeftToRight, "LR"),
        (RankDir::RightToLeft, "RL"),
    ] {
        let dot = to_dot(
            &plan,
            &DotOptions {
                rankdir,
                ..Default::default()
            },
        );
        assert!(dot.contains(&format!("graph [rankdir={text}];")), "{dot}");
    }

    // Only keys: boxes labelled by the key, tokens shortened to #n.
    let keys = to_dot(
        &plan,
        &DotOptions {
            nodes: NodeStyle::Keys,
            ..Default::default()
        },
    );
    assert!(keys.contains("node [shape=box];"), "{keys}");
    let (nodes, edges) = parse_dot(&keys);
    assert_eq!((nodes.len(), edges.len()), (9, 8));
    let labels: BTreeSet<String> = nodes.iter().map(|n| n.label.clone()).collect();
    let mut expected: BTreeSet<String> = (0..4)
        .flat_map(|i| [format!("xs ({i})"), format!("inc-#0 ({i})")])
        .collect();
    expected.insert("total-#1".to_string());
    // Token numbers follow first appearance; the plan lists the output first.
    let expected_other: BTreeSet<String> = expected
        .iter()
        .map(|l| l.replace("#0", "#x").replace("#1", "#0").replace("#x", "#1"))
        .collect();
    assert!(labels == expected || labels == expected_other, "{labels:?}");
    assert!(!keys.contains("label=\"inc ("), "ops are left out: {keys}");

    // Dask's picture: a circle per task (op), a box per output (key).
    let both = to_dot(
        &plan,
        &DotOptions {
            nodes: NodeStyle::TasksAndData,
            ..Default::default()
        },
    );
    let (nodes, edges) = parse_dot(&both);
    assert_eq!(nodes.len(), 18);
    let data: Vec<&DotNode> = nodes.iter().filter(|n| n.id.starts_with('d')).collect();
    assert_eq!(data.len(), 9);
    assert!(data.iter().all(|n| n.line.contains("shape=box")));
    for t in 0..9u32 {
        assert!(
            edges.contains(&(format!("t{t}"), format!("d{t}"))),
            "task {t} -> its data"
        );
        for d in plan.dependencies().row(t) {
            assert!(
                edges.contains(&(format!("d{d}"), format!("t{t}"))),
                "data {d} -> task {t}"
            );
        }
    }
    assert_eq!(edges.len(), 9 + 8);
    let task_labels: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| n.id.starts_with('t'))
        .map(|n| n.label.as_str())
        .collect();
    assert_eq!(task_labels, BTreeSet::from(["blockwise.identity", "inc", "total"]));
}

#[test]
fn order_colouring_runs_from_red_to_blue_and_shows_the_rank() {
    let (graph, output) = fan_in_graph();
    let plan = unfused(&graph, &[output]);
    let dot = to_dot(
        &plan,
        &DotOptions {
            color: Color::Order,
            ..Default::default()
        },
    );
    let (nodes, _) = parse_dot(&dot);
    assert_eq!(nodes.len(), 9);
    let mut fills = BTreeSet::new();
    for node in &nodes {
        let id: u32 = node.id[1..].parse().unwrap();
        let rank = plan.priorities()[id as usize];
        assert!(node.label.ends_with(&format!("\n#{rank}")), "{}", node.label);
        assert!(node.line.contains("style=filled"), "{}", node.line);
        let fill = quoted_attribute(&node.line, "fillcolor").unwrap();
        assert!(fill.len() == 7 && fill.starts_with('#'), "{fill}");
        match rank {
            0 => assert_eq!(fill, "#b2182b", "the first task is red"),
            8 => assert_eq!(fill, "#2166ac", "the last task is blue"),
            4 => assert_eq!(fill, "#f7f7f7", "the middle is white"),
            _ => {}
        }
        let font = quoted_attribute(&node.line, "fontcolor").unwrap();
        match rank {
            0 | 8 => assert_eq!(font, "white", "readable on the dark ends"),
            4 => assert_eq!(font, "black", "readable on the white middle"),
            _ => assert!(font == "white" || font == "black", "{font}"),
        }
        fills.insert(fill);
    }
    assert_eq!(fills.len(), 9, "every rank its own shade");
    // Uncoloured by default.
    assert!(!to_dot(&plan, &DotOptions::default()).contains("fillcolor"));
}

#[test]
fn graph_to_dot_draws_the_graph_unfused() {
    // inc(inc(inc(inc(1)))): fusion would make it one task.
    let mut value = delayed(inc).call(1);
    for _ in 0..3 {
        value = delayed(inc).call(&value);
    }
    let graph = Graph::from_layer(value.layer().clone());
    let dot = graph_to_dot(&graph, &[value.key().clone()], &DotOptions::default()).unwrap();
    let (nodes, edges) = parse_dot(&dot);
    assert_eq!((nodes.len(), edges.len()), (4, 3));
    assert!(nodes.iter().all(|n| n.label == "inc"));

    let fused = Plan::build(&graph, &[value.key().clone()], &PlanOptions::default()).unwrap();
    let (nodes, edges) = parse_dot(&to_dot(&fused, &DotOptions::default()));
    assert_eq!((nodes.len(), edges.len()), (1, 0));
    assert_eq!(nodes[0].label, "inc+inc+inc+inc");

    let err = graph_to_dot(&graph, &[Key::single(Name::new("ghost"))], &DotOptions::default()).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidGraph);
}

#[test]
fn layers_to_dot_draws_one_box_per_layer_with_its_task_count() {
    let (graph, _) = fan_in_graph();
    let mut doubled = graph.clone();
    doubled.merge(&graph.clone());
    doubled.add_layer(graph.roots()[0].clone());
    let dot = layers_to_dot(&doubled);
    assert!(
        dot.contains("graph [rankdir=BT];") && dot.contains("node [shape=box];"),
        "{dot}"
    );
    let (nodes, edges) = parse_dot(&dot);
    let labels: Vec<&str> = nodes.iter().map(|n| n.label.as_str()).collect();
    assert_eq!(
        labels,
        ["xs\n4 tasks", "inc-#0\n4 tasks\nblockwise 4", "total-#1\n1 task"]
    );
    assert_eq!(quoted_attribute(&nodes[1].line, "tooltip").unwrap(), INC);
    assert_eq!(
        edges,
        BTreeSet::from([("l0".into(), "l1".into()), ("l1".into(), "l2".into())])
    );

    // A layer read twice (a diamond) is still one box with one edge per reader.
    let a = delayed(inc).call(1);
    let b = delayed(inc).call(&a);
    let c = delayed(inc).call(&b);
    let d = delayed(add).call(&b, &c);
    let (nodes, edges) = parse_dot(&layers_to_dot(&Graph::from_layer(d.layer().clone())));
    assert_eq!((nodes.len(), edges.len()), (4, 4));
    assert!(layers_to_dot(&Graph::new()).ends_with("node [shape=box];\n}\n"));
}

#[test]
fn dot_and_gv_files_need_no_graphviz() {
    let dir = scratch("dot-files");
    let (graph, output) = fan_in_graph();
    let dot = graph_to_dot(&graph, &[output], &DotOptions::default()).unwrap();
    for name in ["graph.dot", "graph.gv", "GRAPH.DOT"] {
        let path = dir.join(name);
        visualize::write_with(&dot, &path, &Graphviz::at("/nonexistent/graphviz/dot")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), dot, "{name}");
    }
    let path = dir.join("plain.dot");
    visualize::write(&dot, &path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), dot);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unknown_extension_is_an_error_listing_the_supported_ones() {
    let dir = scratch("extension");
    for name in ["graph.jpg", "graph", "graph.svg.bak"] {
        let path = dir.join(name);
        let err = visualize::write("digraph {}", &path).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidArgument, "{err}");
        let message = err.to_string();
        for extension in SUPPORTED_EXTENSIONS {
            assert!(message.contains(&format!(".{extension}")), "{message}");
        }
        assert!(message.contains(name), "{message}");
        assert!(!path.exists());
    }
    assert!(
        visualize::write("digraph {}", &dir.join("g"))
            .unwrap_err()
            .to_string()
            .contains("has no extension")
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn svg_from_graphviz_is_valid_and_shows_every_task() {
    let Some(_) = graphviz() else { return };
    let dir = scratch("svg");
    let (graph, output) = fan_in_graph();
    let plan = unfused(&graph, &[output]);
    let path = dir.join("fan-in.svg");
    visualize::write(&to_dot(&plan, &DotOptions::default()), &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    let texts = svg_texts(&svg);
    assert!(svg.contains("<svg"), "{svg}");
    assert_eq!(svg.matches("class=\"node\"").count(), 9, "one drawn node per task");
    assert_eq!(
        svg.matches("class=\"edge\"").count(),
        8,
        "one drawn edge per dependency"
    );
    for id in 0..plan.len() as u32 {
        let key = plan.key(id);
        let label = match key.name.as_str() {
            XS => format!("blockwise.identity ({})", key.index[0]),
            INC => format!("inc ({})", key.index[0]),
            _ => "total".to_string(),
        };
        assert!(texts.contains(&label), "{label:?} not among {texts:?}");
        assert!(svg.contains(&format!("<title>t{id}</title>")), "node t{id} missing");
    }
    // Circles, as Dask draws tasks.
    assert_eq!(svg.matches("<ellipse").count(), 9);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn png_and_pdf_are_rendered_by_graphviz() {
    let Some(_) = graphviz() else { return };
    let dir = scratch("images");
    let a = delayed(inc).call(1);
    let b = delayed(inc).call(2);
    let c = delayed(add).call(&a, &b);
    let d = delayed(add).call(&c, 10);
    let png = dir.join("delayed.png");
    visualize::visualize(&d, &png, &DotOptions::default()).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let colored = dir.join("delayed-order.png");
    visualize::visualize(
        &d,
        &colored,
        &DotOptions {
            color: Color::Order,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(std::fs::read(&colored).unwrap().starts_with(b"\x89PNG"));
    let pdf = dir.join("delayed.pdf");
    visualize::visualize(&d, &pdf, &DotOptions::default()).unwrap();
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF-"), "not a PDF");
    if std::env::var_os("BLOCKWISE_KEEP_PICTURES").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn graphviz_failure_carries_its_stderr_and_writes_nothing() {
    let Some(graphviz) = graphviz() else { return };
    let dir = scratch("failure");
    let path = dir.join("broken.svg");
    let err = visualize::write_with("digraph { a -> }", &path, &graphviz).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Io);
    let message = err.to_string();
    assert!(message.contains("syntax error"), "Graphviz's own words: {message}");
    assert!(message.contains("-Tsvg") && message.contains("broken.svg"), "{message}");
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(dir);
}

fn assert_names_the_fix(message: &str) {
    assert!(message.contains("Graphviz"), "{message}");
    assert!(message.contains("apt-get install graphviz"), "{message}");
    assert!(message.contains(".dot"), "says .dot works without it: {message}");
}

#[test]
fn missing_graphviz_is_a_clear_error() {
    let empty = scratch("no-graphviz");
    let err = Graphviz::find_in(empty.as_os_str()).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Io);
    assert_names_the_fix(&err.to_string());
    assert!(Graphviz::find_in("".as_ref()).is_err());

    let gone = Graphviz::at(empty.join("dot"));
    let err = gone.render("digraph {}", Format::Svg).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Io);
    assert_names_the_fix(&err.to_string());
    assert!(err.to_string().contains(&empty.join("dot").display().to_string()));
    // Not needed for DOT text.
    assert_eq!(gone.render("digraph {}", Format::Dot).unwrap(), b"digraph {}");
    let _ = std::fs::remove_dir_all(empty);
}

/// Runs in a child process of this test binary whose `PATH` holds no `dot`,
/// so `write` looks Graphviz up on a real, empty `PATH` without touching this
/// process's environment (which other tests share).
#[test]
fn write_without_dot_on_the_path_is_a_clear_error() {
    const CHILD: &str = "BLOCKWISE_VISUALIZE_TEST_CHILD";
    const NAME: &str = "write_without_dot_on_the_path_is_a_clear_error";
    if let Some(dir) = std::env::var_os(CHILD) {
        let dir = PathBuf::from(dir);
        assert!(Graphviz::find().is_err(), "the child's PATH holds no dot");
        let path = dir.join("picture.svg");
        let err = visualize::write("digraph { a -> b }", &path).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Io);
        let message = err.to_string();
        assert_names_the_fix(&message);
        assert!(
            message.contains("not on the PATH") && message.contains("picture.svg"),
            "{message}"
        );
        assert!(!path.exists());
        // The same picture as DOT text needs nothing.
        visualize::write("digraph { a -> b }", &dir.join("picture.dot")).unwrap();
        return;
    }
    let dir = scratch("child");
    let empty_path = dir.join("bin");
    std::fs::create_dir_all(&empty_path).unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--test-threads=1", "--nocapture"])
        .env("PATH", &empty_path)
        .env(CHILD, &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child ran the test:\n{stdout}");
    assert_eq!(
        std::fs::read_to_string(dir.join("picture.dot")).unwrap(),
        "digraph { a -> b }"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Writing DOT is linear: a 200 000-task plan is written in full (no cap),
/// every task and edge present. Not timed; a quadratic writer would not finish
/// in reasonable time.
#[test]
fn a_large_plan_is_drawn_in_full() {
    let n = 200_000u32;
    let name = Name::new("step");
    let keys: Vec<Key> = (0..n).map(|i| Key::new(name.clone(), &[i])).collect();
    let inc_op: Arc<dyn Op> = Arc::new(FnOp::new(inc, vec![None]));
    let ops = (0..n).map(|_| inc_op.clone()).collect();
    let inputs = (0..n)
        .map(|i| {
            if i == 0 {
                vec![Slot::Literal(Arc::new(0i64))]
            } else {
                vec![Slot::Task(i - 1)]
            }
        })
        .collect();
    let plan = Plan::from_parts(keys, ops, inputs, vec![n - 1]).unwrap();
    let dot = to_dot(
        &plan,
        &DotOptions {
            color: Color::Order,
            ..Default::default()
        },
    );
    let (nodes, edges) = parse_dot(&dot);
    assert_eq!(nodes.len(), n as usize);
    assert_eq!(edges.len(), n as usize - 1);
    assert_eq!(
        nodes[123_456].label,
        format!("inc (123456)\n#{}", plan.priorities()[123_456])
    );
}
