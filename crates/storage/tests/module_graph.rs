//! The storage crate's modules depend one way: a concern on the plumbing, never the plumbing on
//! a concern, and no circle between concerns. This test reads the module graph from the sources
//! and holds the circles to what `module_cycles.txt` lists — nothing, since the last
//! `backend_operations!` bodies left `backend` — so an import that closes a circle fails here
//! with the circle it closes. (The list was the ratchet of the refactor: 104 imports on circles
//! when it began; each edge the refactor took off a circle had to leave it.)

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The modules a source text names through `crate::…` (paths and `use crate::{…}` groups).
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[i..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                        names.insert(identifier(&group[i..]).to_owned());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(identifier(rest).to_owned());
        }
    }
    names
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// `module -> modules it imports`, for the crate's top-level modules (tests left out).
fn module_graph(src: &Path) -> Graph {
    let files: Vec<_> = std::fs::read_dir(src)
        .expect("src")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    let modules: BTreeSet<String> = files
        .iter()
        .map(|path| {
            path.file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name != "lib")
        .collect();
    let mut graph = Graph::new();
    for path in &files {
        let name = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        if name == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("source");
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        let imports = referenced(code)
            .into_iter()
            .filter(|m| modules.contains(m) && *m != name)
            .collect();
        graph.insert(name, imports);
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn circles(graph: &Graph) -> Vec<BTreeSet<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(walk: &mut Walk<'a>, v: &'a str) {
        let i = walk.index.len();
        walk.index.insert(v, i);
        walk.low.insert(v, i);
        walk.stack.push(v);
        for w in &walk.graph[v] {
            let w = w.as_str();
            if !walk.index.contains_key(w) {
                visit(walk, w);
                let low = walk.low[v].min(walk.low[w]);
                walk.low.insert(v, low);
            } else if walk.stack.contains(&w) {
                let low = walk.low[v].min(walk.index[w]);
                walk.low.insert(v, low);
            }
        }
        if walk.low[v] == walk.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = walk.stack.pop() {
                component.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                walk.found.push(component);
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            visit(&mut walk, v);
        }
    }
    walk.found
}

/// The imports that lie on a circle, as `from -> to`.
fn edges_in_circles(graph: &Graph) -> BTreeSet<String> {
    let mut edges = BTreeSet::new();
    for circle in circles(graph) {
        for from in &circle {
            for to in graph[from].intersection(&circle) {
                edges.insert(format!("{from} -> {to}"));
            }
        }
    }
    edges
}

/// A shortest way back from `to` to `from`: the circle an import `from -> to` closes.
fn way_back(graph: &Graph, from: &str, to: &str) -> String {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([to]);
    while let Some(v) = queue.pop_front() {
        if v == from {
            let mut path = vec![from];
            let mut at = from;
            while at != to {
                at = came_from[at];
                path.push(at);
            }
            path.reverse();
            return format!("{from} -> {}", path.join(" -> "));
        }
        for w in &graph[v] {
            if w != to && !came_from.contains_key(w.as_str()) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    format!("{from} -> {to}")
}

#[test]
fn the_modules_circles_only_shrink() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = module_graph(&root.join("src"));
    let listed: BTreeSet<String> = std::fs::read_to_string(root.join("tests/module_cycles.txt"))
        .expect("the list")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let now = edges_in_circles(&graph);
    let new: Vec<String> = now
        .difference(&listed)
        .map(|edge| {
            let (from, to) = edge.split_once(" -> ").expect("edge");
            format!("  {edge}   (closes {})", way_back(&graph, from, to))
        })
        .collect();
    let gone: Vec<&String> = listed.difference(&now).collect();
    assert!(
        new.is_empty(),
        "imports that close a circle between storage modules (a concern depends on the plumbing, \
         never the plumbing on a concern):\n{}",
        new.join("\n")
    );
    assert!(
        gone.is_empty(),
        "no longer on a circle — take them out of tests/module_cycles.txt so the list stays \
         tight:\n{gone:#?}"
    );
}

#[test]
fn the_reader_finds_paths_groups_and_macro_paths() {
    let text = "use crate::dialect::{Sql, on_dialect};\nuse crate::{backend::Backend, error::Result, rows};\n\
                let x = crate::quarantine::forget(); $crate::stats::record(1);";
    let found: Vec<String> = referenced(text).into_iter().collect();
    assert_eq!(
        found,
        ["backend", "dialect", "error", "quarantine", "rows", "stats"]
    );
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_owned()].into());
    graph.insert("b".into(), ["c".to_owned()].into());
    graph.insert("c".into(), ["a".to_owned(), "d".to_owned()].into());
    graph.insert("d".into(), BTreeSet::new());
    assert_eq!(
        edges_in_circles(&graph),
        ["a -> b", "b -> c", "c -> a"].map(str::to_owned).into()
    );
    assert_eq!(way_back(&graph, "c", "a"), "c -> a -> b -> c");
}
