//! Pictures of task graphs: DOT text, and SVG through Graphviz `dot`.
