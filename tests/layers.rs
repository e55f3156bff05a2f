//! The module structure: no crate has an import cycle between its modules, and the engine's
//! modules import only the layers below their own (the order is written out here, lowest
//! first). A module's dependencies are the `crate::` and `super::` paths its non-test code
//! names (in `use` items, braces expanded, and inline); a dependency on a module's own
//! ancestor or descendant does not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The engine's layers, lowest first: a module may import its own layer's modules (no cycle
/// allowed) and those of the layers below.
const ENGINE_LAYERS: &[&[&str]] = &[
    &["units", "time", "rng", "ids"],
    &["request", "trace"],
    &["kv"],
    &["seq"],
    &["catalogue"],
    &["cost", "batching"],
    &["kernels"],
    &["spec"],
    &["profile", "inventory", "examples", "workload"],
    &["record", "queue"],
    &["instance"],
    &["router"],
    &["sim"],
];

const CRATES: &[&str] = &["engine/src", "dsl/src", "calibration/src", "live/src", "reports/src", "src"];

/// Module path (`a::b`, the crate root `""`) -> file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, src, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src).unwrap().with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    parts.pop();
                }
                out.insert(parts.join("::"), p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The code without comments and without an inline `#[cfg(test)] mod tests { … }`.
fn code(text: &str) -> String {
    let text = text.find("#[cfg(test)]\nmod tests {").map_or(text, |i| &text[..i]);
    text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

/// `a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e`.
fn expand(path: &str, out: &mut Vec<String>) {
    let path: String = path.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = path.find('{') else {
        out.push(path);
        return;
    };
    let (prefix, inner) = (&path[..open], &path[open + 1..path.len() - 1]);
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&format!("{prefix}{}", &inner[start..i]), out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        expand(&format!("{prefix}{}", &inner[start..]), out);
    }
}

/// The paths (`crate::…`, absolute within the crate) a module's code names.
fn named_paths(module: &str, code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        let item = &after[..end];
        let word_start = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric() && rest.as_bytes()[i - 1] != b'_';
        if word_start && (item.starts_with("crate::") || item.starts_with("super::")) {
            let mut e = Vec::new();
            expand(item, &mut e);
            for p in e {
                if let Some(tail) = p.strip_prefix("super::") {
                    let mut base: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
                    base.pop();
                    base.push(tail);
                    paths.push(format!("crate::{}", base.join("::")));
                } else {
                    paths.push(p);
                }
            }
        }
        rest = &after[end..];
    }
    // Inline paths: `crate::a::b::f(…)`.
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
        paths.push(tail[..end].trim_end_matches(':').to_string());
        rest = &tail[end..];
    }
    paths
}

/// Module -> the modules it depends on (at full depth, or by top-level module with `top`).
fn graph(src: &Path, top: bool) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, file) in &mods {
        if m.split("::").any(|s| s == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for p in named_paths(m, &code(&text)) {
            let segs: Vec<&str> = p.split("::").skip(1).collect();
            let Some(dep) = (1..=segs.len()).rev().map(|k| segs[..k].join("::")).find(|c| mods.contains_key(c)) else {
                continue;
            };
            let related = dep == *m || m.starts_with(&format!("{dep}::")) || dep.starts_with(&format!("{m}::")) || m.is_empty();
            if related {
                continue;
            }
            let (a, b) = if top {
                (m.split("::").next().unwrap().to_string(), dep.split("::").next().unwrap().to_string())
            } else {
                (m.clone(), dep)
            };
            if a != b {
                g.entry(a).or_default().insert(b);
            }
        }
    }
    g
}

/// A cycle of `g`, if it has one.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        v: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(v.to_string(), 1);
        stack.push(v.to_string());
        for w in g.get(v).into_iter().flatten() {
            match state.get(w.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == w).unwrap();
                    let mut c = stack[at..].to_vec();
                    c.push(w.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(w, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(v.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in g.keys() {
        if !state.contains_key(v.as_str())
            && let Some(c) = visit(v, g, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_crate_has_an_import_cycle() {
    for c in CRATES {
        for top in [false, true] {
            let g = graph(&root().join(c), top);
            assert!(!g.is_empty() || *c == "dsl/src" || *c == "src", "{c}: no dependencies found: the scanner is broken");
            if let Some(cyc) = cycle(&g) {
                panic!("{c}: an import cycle between {}: {}", if top { "top-level modules" } else { "modules" }, cyc.join(" -> "));
            }
        }
    }
}

#[test]
fn engine_modules_import_only_lower_layers() {
    let src = root().join("engine/src");
    let layer = |m: &str| ENGINE_LAYERS.iter().position(|l| l.contains(&m));
    let tops: BTreeSet<String> =
        modules(&src).keys().filter(|m| !m.is_empty()).map(|m| m.split("::").next().unwrap().to_string()).collect();
    for t in &tops {
        assert!(layer(t).is_some(), "engine module `{t}` is in no layer: add it to ENGINE_LAYERS in tests/layers.rs");
    }
    let mut upward = Vec::new();
    for (a, deps) in graph(&src, true) {
        for b in deps {
            if layer(&b) > layer(&a) {
                upward.push(format!("{a} -> {b}"));
            }
        }
    }
    assert!(upward.is_empty(), "engine imports that point up its layers: {upward:?}");
}

#[test]
fn the_scanner_sees_imports_cycles_and_layers() {
    let mut e = Vec::new();
    expand("crate::a::{b, c::{d, e}}", &mut e);
    assert_eq!(e, ["crate::a::b", "crate::a::c::d", "crate::a::c::e"]);
    let p = named_paths("x::y", &code("use super::z::W;\nfn f() { crate::q::r(); } // crate::commented\n"));
    assert_eq!(p, ["crate::x::z::W", "crate::q::r"]);
    assert_eq!(code("a // crate::b\nc"), "a \nc");
    let g: BTreeMap<String, BTreeSet<String>> =
        [("a", "b"), ("b", "c"), ("c", "a")].iter().map(|(x, y)| (x.to_string(), BTreeSet::from([y.to_string()]))).collect();
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    // The engine scan finds known edges (so an empty graph cannot pass for "no cycles").
    let g = graph(&root().join("engine/src"), true);
    assert!(g["sim"].contains("instance") && g["kernels"].contains("cost"), "{g:?}");
}

#[test]
fn the_readme_explains_every_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let how = &readme[readme.find("## How it works").expect("a How it works section")..];
    let how = &how[..how[3..].find("\n## ").map_or(how.len(), |i| i + 3)];
    let o = crate::simctl(&["--help"]);
    let help = crate::stdout(&o);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 14, "{commands:?}");
    let missing: Vec<&&str> = commands.iter().filter(|c| !how.contains(&format!("`simctl {c}`"))).collect();
    assert!(missing.is_empty(), "README's How it works does not explain: {missing:?}");
}
