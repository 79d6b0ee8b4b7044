//! The crate's import graph has layers: every `crate::` path in `src` is read
//! and any cycle between top-level modules (the first path component under
//! `src`: `coordinator`, `sessions`, `claude`, ...) fails the build's tests,
//! naming the files and the names that tie it. `super::` and `self::` paths
//! stay inside a module and are not arrows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One arrow between top-level modules, with what makes it.
#[derive(Debug, Default)]
struct Ties {
    /// file → the paths it names in the other module.
    by_file: BTreeMap<String, BTreeSet<String>>,
}

/// The source with comments, string and char literals blanked out, so only
/// code is searched for paths.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !b[..i].last().is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), or else a lifetime.
            if next == Some('\\') {
                i += 2;
                while i < b.len() && b[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Every path under `crate::` in `code`, whole (`crate::a::b::C`), with
/// grouped uses spread out: `crate::{a, b::{c, d}}` gives `a`, `b::c`, `b::d`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate") {
        let before = &rest[..at];
        let after = &rest[at + "crate".len()..];
        rest = after;
        if before.chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let after = after.trim_start();
        let Some(tail) = after.strip_prefix("::") else { continue };
        spread("", tail.trim_start(), &mut paths);
    }
    paths
}

/// Reads one path (or group) at the start of `text` under `prefix`.
fn spread(prefix: &str, text: &str, out: &mut Vec<String>) {
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut item = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    spread(prefix, item.trim(), out);
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        if !item.trim().is_empty() {
            spread(prefix, item.trim(), out);
        }
        return;
    }
    let name: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    if name.is_empty() {
        return;
    }
    let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}::{name}") };
    let rest = text[name.len()..].trim_start();
    match rest.strip_prefix("::") {
        Some(more) => spread(&path, more.trim_start(), out),
        None => out.push(path),
    }
}

/// The top-level module a file under `src` belongs to (`None` for the crate root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// module → module it imports → what ties them.
type Graph = BTreeMap<String, BTreeMap<String, Ties>>;

fn graph(src: &Path, files: &[(PathBuf, String)]) -> Graph {
    let mut graph = Graph::new();
    for (file, text) in files {
        let Some(from) = module_of(src, file) else { continue };
        graph.entry(from.clone()).or_default();
        for path in crate_paths(&code_only(text)) {
            let to = path.split("::").next().unwrap_or_default().to_string();
            if to == from || to.is_empty() {
                continue;
            }
            let shown = file.strip_prefix(src).unwrap_or(file).display().to_string();
            let ties = graph.entry(from.clone()).or_default().entry(to).or_default();
            ties.by_file.entry(format!("src/{shown}")).or_default().insert(path);
        }
    }
    graph
}

/// Every cycle's modules, one per strongly connected set of two or more
/// (Tarjan), as a path that returns to its start.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        sets: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut set = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                set.push(w);
                if w == v {
                    break;
                }
            }
            if set.len() > 1 {
                s.sets.push(set);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        sets: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    // Within each set, the shortest way from its first module back to itself.
    s.sets
        .iter()
        .map(|set| {
            let inside: BTreeSet<&str> = set.iter().copied().collect();
            let start = *inside.iter().next().unwrap_or(&"");
            let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut last = start;
            'search: while let Some(v) = queue.pop_front() {
                for w in graph.get(v).into_iter().flat_map(|m| m.keys()).map(String::as_str) {
                    if !inside.contains(w) {
                        continue;
                    }
                    if w == start {
                        last = v;
                        break 'search;
                    }
                    if !came_from.contains_key(w) {
                        came_from.insert(w, v);
                        queue.push_back(w);
                    }
                }
            }
            let mut path = vec![start.to_string()];
            let mut v = last;
            while v != start {
                path.push(v.to_string());
                v = came_from[v];
            }
            path.push(start.to_string());
            let end = path.len() - 1;
            path[1..end].reverse();
            path
        })
        .collect()
}

fn describe(graph: &Graph, cycle: &[String]) -> String {
    let mut text = format!("cycle: {}\n", cycle.join(" -> "));
    for pair in cycle.windows(2) {
        let ties = &graph[&pair[0]][&pair[1]];
        for (file, names) in &ties.by_file {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            text.push_str(&format!("  {} -> {}: {file}: {}\n", pair[0], pair[1], names.join(", ")));
        }
    }
    text
}

fn read_src(src: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (f, text)
        })
        .collect()
}

#[test]
fn no_cycle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_src(&src);
    assert!(files.len() > 20, "read only {} files under {}", files.len(), src.display());
    let graph = graph(&src, &files);
    let arrows: usize = graph.values().map(BTreeMap::len).sum();
    assert!(arrows > 20, "only {arrows} arrows found: the reading of paths is broken");
    let found = cycles(&graph);
    let text: Vec<String> = found.iter().map(|c| describe(&graph, c)).collect();
    assert!(found.is_empty(), "the module graph has {} cycle(s):\n{}", found.len(), text.join("\n"));
}

#[test]
fn paths_are_read_in_every_form_and_a_cycle_is_named_with_its_ties() {
    let src = Path::new("/x/src");
    let files = vec![
        (
            src.join("alpha/mod.rs"),
            "use crate::{beta::{One, two::Three}, gamma};\nuse super::x;\n// crate::delta::Nope\nfn f() { let s = \"crate::delta::No\"; }\n".to_string(),
        ),
        (src.join("beta.rs"), "fn g() -> crate::gamma::Four { todo!() }\nuse self::y::crate_like;".to_string()),
        (src.join("gamma/inner.rs"), "use crate::alpha\n    ::Five;\nuse crate::gamma::Six;".to_string()),
        (src.join("lib.rs"), "use crate::alpha::Seven;".to_string()),
    ];
    let graph = graph(src, &files);
    let ties = |a: &str, b: &str| -> Vec<String> {
        graph.get(a).and_then(|m| m.get(b)).map_or(Vec::new(), |t| t.by_file.values().flatten().cloned().collect())
    };
    assert_eq!(ties("alpha", "beta"), ["beta::One", "beta::two::Three"]);
    assert_eq!(ties("alpha", "gamma"), ["gamma"]);
    assert_eq!(ties("beta", "gamma"), ["gamma::Four"]);
    assert_eq!(ties("gamma", "alpha"), ["alpha::Five"]);
    assert!(graph.get("alpha").is_some_and(|m| !m.contains_key("delta")), "comments and strings are not code");
    assert!(!graph.contains_key("lib"), "the crate root is no module");
    let found = cycles(&graph);
    assert_eq!(found, [vec!["alpha", "gamma", "alpha"]], "the shortest way round");
    let text = describe(&graph, &found[0]);
    assert!(text.contains("alpha -> gamma: src/alpha/mod.rs: gamma"), "{text}");
    assert!(text.contains("gamma -> alpha: src/gamma/inner.rs: alpha::Five"), "{text}");
}
