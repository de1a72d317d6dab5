//! No import cycles between modules of `engine`, `server` and `app`.
//!
//! A plain text scan, no parser: every `.rs` file under a crate's `src/` is a module
//! (`jobs/mod.rs` is `jobs`, `jobs/runner.rs` is `jobs::runner`, inline `mod x { .. }` blocks
//! are modules too). Each `crate::..` and `super::..` path outside comments and string
//! literals, including the branches of `use crate::{a, b::{c, d}}` trees, is an edge to the
//! deepest module it names.
//!
//! Edges are checked level by level, the way a reader meets the tree: for an edge A -> B,
//! take the nearest module that contains both and lift A and B to its children. So
//! `jobs::runner -> restore::verify` is the edge `jobs -> restore` among the crate's top-level
//! modules, and `components::upload_dialog -> pages::backups` is `components -> pages`. An
//! edge between a module and one of its own ancestors (a child using its parent's types,
//! `mod.rs` calling its child) is containment, not a dependency between siblings, and is not
//! counted. Every level must be acyclic.
//!
//! Edges still to remove are listed in `PENDING`; the list may only shrink.
//!
//! Run with `--nocapture` to see every edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// The crates checked, by directory relative to the workspace root.
const CRATES: &[&str] = &["server/engine", "server", "app"];

/// Top-level edges not yet removed, left out of the cycle check: these engine modules still
/// hold `impl Engine` blocks (methods not yet moved into the facade in `instance.rs`), so
/// they name the `Engine` type that `instance` builds from them. The test fails when one of
/// these edges no longer exists, so the list can only shrink; nothing may be added to it.
const PENDING: &[(&str, &str, &str)] = &[];

#[test]
fn module_graphs_of_engine_server_and_app_have_no_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut report = String::new();
    let mut cycles = Vec::new();
    let mut stale = Vec::new();
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let edges = crate_edges(&src);
        assert!(
            !edges.is_empty(),
            "no module edges found under {}",
            src.display()
        );
        report.push_str(&format!("== {krate}\n"));
        for (level, mut graph) in levels(&edges) {
            if level.is_empty() {
                for (_, from, to) in PENDING.iter().filter(|(k, _, _)| k == krate) {
                    let removed = graph.get_mut(*from).is_some_and(|tos| tos.remove(*to));
                    if removed {
                        report.push_str(&format!("  [crate] {from} -> {to} (pending)\n"));
                    } else {
                        stale.push(format!("{krate}: {from} -> {to}"));
                    }
                }
            }
            for (from, tos) in &graph {
                for to in tos {
                    report.push_str(&format!("  [{}] {from} -> {to}\n", show(&level)));
                }
            }
            for cycle in find_cycles(&graph) {
                cycles.push(format!(
                    "{krate} [{}]: {}",
                    show(&level),
                    cycle.join(" -> ")
                ));
            }
        }
    }
    println!("{report}");
    assert!(
        cycles.is_empty(),
        "module import cycles:\n{}",
        cycles.join("\n")
    );
    assert!(
        stale.is_empty(),
        "edges in PENDING that are gone (remove them from the list):\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_scan_sees_use_trees_super_paths_and_inline_modules() {
    let text = r#"
        //! Doc about crate::ignored_in_comment.
        use crate::{alpha::{One, two::Three}, beta};
        use super::gamma::G;
        fn f() { let _ = "crate::ignored_in_string"; let _c = '{'; crate::delta::run(); }
        #[cfg(test)]
        mod tests { use super::*; use crate::epsilon::E; }
    "#;
    let known: BTreeSet<Module> = [
        "alpha",
        "alpha::two",
        "beta",
        "delta",
        "epsilon",
        "x",
        "x::gamma",
        "x::y",
    ]
    .iter()
    .map(|m| m.split("::").map(str::to_owned).collect())
    .collect();
    let here: Module = vec!["x".into(), "y".into()];
    let found: Vec<String> = file_refs(&here, text, &known)
        .into_iter()
        .map(|(from, to)| format!("{} -> {}", show(&from), show(&to)))
        .collect();
    assert_eq!(
        found,
        [
            "x::y -> alpha",
            "x::y -> alpha::two",
            "x::y -> beta",
            "x::y -> x::gamma",
            "x::y -> delta",
            "x::y::tests -> x::y",
            "x::y::tests -> epsilon",
        ]
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert_eq!(find_cycles(&graph), [vec!["a", "b", "a"]]);
}

fn show(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

/// Every file-to-module edge of one crate, with modules as paths from the crate root.
fn crate_edges(src: &Path) -> BTreeSet<(Module, Module)> {
    let mut files = Vec::new();
    collect_files(src, &mut files);
    let modules: Vec<(Module, PathBuf)> = files
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "main.rs"))
        .map(|f| (module_of(src, &f), f))
        .collect();
    let mut known: BTreeSet<Module> = modules.iter().map(|(m, _)| m.clone()).collect();
    let texts: Vec<(Module, String)> = modules
        .into_iter()
        .map(|(m, f)| {
            let text = strip(&std::fs::read_to_string(&f).expect("read a source file"));
            (m, text)
        })
        .collect();
    for (module, text) in &texts {
        for inline in inline_modules(text) {
            let mut path = module.clone();
            path.extend(inline);
            known.insert(path);
        }
    }
    let mut reexports = Reexports::new();
    for (module, text) in &texts {
        reexports_of(module, text, &known, &mut reexports);
    }
    texts
        .iter()
        .flat_map(|(module, text)| file_refs_stripped(module, text, &known, &reexports))
        .collect()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read a source directory")
        .map(|e| e.expect("read a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Module = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The source with comments, string and char literals blanked (newlines kept).
fn strip(text: &str) -> String {
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
            && (next == Some('#') || next == Some('"'))
            && !ident_char(b.get(i.wrapping_sub(1)))
        {
            // Raw string r#"..."#: find the matching closing quote and hashes.
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
            'raw: while j < b.len() {
                if b[j] == '"' && (0..hashes).all(|h| b.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            // Escaped char literal '\n', '\'', '\u{..}'.
            i += 2;
            while i < b.len() && b[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == '\'' && b.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

fn file_refs(module: &Module, text: &str, known: &BTreeSet<Module>) -> Vec<(Module, Module)> {
    file_refs_stripped(module, &strip(text), known, &Reexports::new())
}

/// Tokens: identifiers, `::`, and single punctuation characters.
fn tokens(text: &str) -> Vec<String> {
    let b: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(b[start..i].iter().collect());
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

/// Inline `mod name { .. }` blocks of one (stripped) file, as paths relative to the file.
fn inline_modules(text: &str) -> Vec<Module> {
    let toks = tokens(text);
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t.as_str() {
            "{" => {
                if i >= 2 && toks[i - 2] == "mod" {
                    stack.push((toks[i - 1].clone(), depth));
                    out.push(stack.iter().map(|(n, _)| n.clone()).collect());
                }
                depth += 1;
            }
            "}" => {
                depth -= 1;
                if stack.last().is_some_and(|(_, d)| *d == depth) {
                    stack.pop();
                }
            }
            _ => {}
        }
    }
    out
}

fn file_refs_stripped(
    file_module: &Module,
    text: &str,
    known: &BTreeSet<Module>,
    reexports: &Reexports,
) -> Vec<(Module, Module)> {
    let toks = tokens(text);
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut out: Vec<(Module, Module)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let current = || {
            let mut m = file_module.clone();
            m.extend(stack.iter().map(|(n, _)| n.clone()));
            m
        };
        let t = toks[i].as_str();
        let prev_is_path = i > 0 && toks[i - 1] == "::";
        match t {
            "{" => {
                if i >= 2 && toks[i - 2] == "mod" {
                    stack.push((toks[i - 1].clone(), depth));
                }
                depth += 1;
                i += 1;
            }
            "}" => {
                depth -= 1;
                if stack.last().is_some_and(|(_, d)| *d == depth) {
                    stack.pop();
                }
                i += 1;
            }
            "crate" | "super" if !prev_is_path => {
                let here = current();
                let mut base: Module = if t == "crate" {
                    Vec::new()
                } else {
                    here.clone()
                };
                let mut j = i;
                // `super::super::..` climbs once per `super`.
                if t == "super" {
                    base.pop();
                    j += 1;
                    while toks.get(j).map(String::as_str) == Some("::")
                        && toks.get(j + 1).map(String::as_str) == Some("super")
                    {
                        base.pop();
                        j += 2;
                    }
                } else {
                    j += 1;
                }
                let mut paths = Vec::new();
                if toks.get(j).map(String::as_str) == Some("::") {
                    j = use_tree(&toks, j + 1, base.clone(), &mut paths);
                } else {
                    paths.push(base.clone());
                }
                for path in paths {
                    if let Some(target) = resolve(&path, known, reexports)
                        && target != here
                        && !out.contains(&(here.clone(), target.clone()))
                    {
                        out.push((here.clone(), target));
                    }
                }
                i = j.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

/// Parses a path or `{..}` tree starting at `toks[j]`; pushes every full path. Returns the
/// index after it.
fn use_tree(toks: &[String], mut j: usize, mut prefix: Module, out: &mut Vec<Module>) -> usize {
    loop {
        match toks.get(j).map(String::as_str) {
            Some("{") => {
                j += 1;
                loop {
                    match toks.get(j).map(String::as_str) {
                        Some("}") => return j + 1,
                        Some(",") => j += 1,
                        None => return j,
                        _ => {
                            let after = use_tree(toks, j, prefix.clone(), out);
                            j = after.max(j + 1);
                        }
                    }
                }
            }
            Some(seg) if seg.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                if seg != "self" {
                    prefix.push(seg.to_owned());
                }
                j += 1;
                if toks.get(j).map(String::as_str) == Some("::") {
                    j += 1;
                    continue;
                }
                if toks.get(j).map(String::as_str) == Some("as") {
                    j += 2;
                }
                out.push(prefix);
                return j;
            }
            Some("*") => {
                out.push(prefix);
                return j + 1;
            }
            _ => {
                out.push(prefix);
                return j;
            }
        }
    }
}

/// The module a path names: the deepest known module on it, following `pub use`
/// re-exports so that `crate::Engine` counts as an edge to `instance`, not to the crate root.
fn resolve(path: &Module, known: &BTreeSet<Module>, reexports: &Reexports) -> Option<Module> {
    let mut path = path.clone();
    for _ in 0..8 {
        let module = (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| known.contains(p))?;
        let Some(name) = path.get(module.len()) else {
            return Some(module);
        };
        match reexports.get(&(module.clone(), name.clone())) {
            Some(target) if *target != path[..=module.len()] => {
                let mut next = target.clone();
                next.extend_from_slice(&path[module.len() + 1..]);
                path = next;
            }
            _ => return Some(module),
        }
    }
    None
}

/// `(module, name) -> full path` for every `pub use` / `pub(crate) use` of a crate-local item.
type Reexports = BTreeMap<(Module, String), Module>;

fn reexports_of(module: &Module, text: &str, known: &BTreeSet<Module>, out: &mut Reexports) {
    let toks = tokens(text);
    for i in 0..toks.len() {
        let public = i >= 1
            && toks[i] == "use"
            && (toks[i - 1] == "pub"
                || (toks[i - 1] == ")" && toks[..i].iter().rev().take(4).any(|t| t == "pub")));
        if !public {
            continue;
        }
        let Some(first) = toks.get(i + 1) else {
            continue;
        };
        let mut base = module.clone();
        let mut j = i + 1;
        match first.as_str() {
            "crate" => base.clear(),
            "self" => {}
            "super" => {
                base.pop();
            }
            child => {
                let mut local = module.clone();
                local.push(child.to_owned());
                if !known.contains(&local) {
                    continue; // another crate
                }
                // `pub use child::Item`: the child's name is the first segment.
                let mut paths = Vec::new();
                use_tree(&toks, i + 1, module.clone(), &mut paths);
                insert_reexports(module, paths, out);
                continue;
            }
        }
        j += 1;
        if toks.get(j).map(String::as_str) != Some("::") {
            continue;
        }
        let mut paths = Vec::new();
        use_tree(&toks, j + 1, std::mem::take(&mut base), &mut paths);
        insert_reexports(module, paths, out);
    }
}

fn insert_reexports(module: &Module, paths: Vec<Module>, out: &mut Reexports) {
    for path in paths {
        if let Some(name) = path.last() {
            out.insert((module.clone(), name.clone()), path.clone());
        }
    }
}

/// Groups edges by level: the nearest common ancestor, with both ends lifted to its children.
fn levels(
    edges: &BTreeSet<(Module, Module)>,
) -> BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> {
    let mut out: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, to) in edges {
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        if common == from.len() || common == to.len() {
            continue; // one contains the other
        }
        out.entry(from[..common].to_vec())
            .or_default()
            .entry(from[common].clone())
            .or_default()
            .insert(to[common].clone());
    }
    out
}

/// One representative cycle per strongly connected part of the graph (depth-first search).
fn find_cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            found.push(cycle);
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, found);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}
