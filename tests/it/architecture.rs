//! The module layers of docs/architecture.md, read from `src/`: every `crate::x`
//! reference of a top-level module points to its own layer or one below, and the
//! module graph has no cycle (so `cli` never imports `commands`, nor `train` `rundir`'s
//! users).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// docs/architecture.md's table, bottom first.
const LAYERS: &[&[&str]] = &[
    &[
        "io",
        "rng",
        "progress",
        "logging",
        "plot",
        "pickle",
        "dist",
        "device",
        "tensorboard",
        "viz",
    ],
    &["data", "torchpt", "checkpoint"],
    &["model", "stream", "augment", "masking"],
    &["config"],
    &["method", "optim"],
    &["train", "rundir", "preflight", "bench"],
    &["eval", "export", "report", "verify"],
    &["cli", "commands"],
];

/// The top-level modules each top-level module refers to (`crate::x`, `crate::{x, ..}`),
/// outside comments and `#[cfg(test)]` code.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let top = rel.iter().next().unwrap().to_string_lossy();
            let top = top.trim_end_matches(".rs").to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let targets = graph.entry(top.clone()).or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + "crate::".len()..];
                    let names: Vec<&str> = match rest.strip_prefix('{') {
                        Some(group) => group.split(',').map(str::trim).collect(),
                        None => vec![rest],
                    };
                    for name in names {
                        let id: String = name
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !id.is_empty() && id != top {
                            targets.insert(id);
                        }
                    }
                }
            }
        }
    }
    graph
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// A cycle through `start`, if any (depth-first search).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if next == start {
                let mut c = path.clone();
                c.push(next.clone());
                return Some(c);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push(p);
            }
        }
    }
    None
}

#[test]
fn modules_form_layers_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.contains_key("method") && graph.contains_key("commands"));
    let mut problems = Vec::new();
    for (from, targets) in &graph {
        let Some(lf) = layer_of(from) else {
            problems.push(format!(
                "module `{from}` is in no layer of docs/architecture.md"
            ));
            continue;
        };
        for to in targets {
            match layer_of(to) {
                Some(lt) if lt > lf => {
                    problems.push(format!("`{from}` (layer {lf}) imports `{to}` (layer {lt})"))
                }
                None if graph.contains_key(to) => {
                    problems.push(format!("module `{to}` is in no layer"))
                }
                _ => {}
            }
        }
        if let Some(c) = cycle_from(&graph, from) {
            problems.push(format!("import cycle: {}", c.join(" -> ")));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_layer_check_sees_an_upward_import_and_a_cycle() {
    // The checker itself: a graph with an upward edge and a cycle is reported.
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("cli".into()).or_default().insert("commands".into());
    g.entry("commands".into()).or_default().insert("cli".into());
    g.entry("io".into()).or_default().insert("train".into());
    assert!(cycle_from(&g, "cli").is_some());
    assert!(cycle_from(&g, "io").is_none());
    assert!(layer_of("train").unwrap() > layer_of("io").unwrap());
}
