//! Lowering: evaluated items to a validated scenario ([`ValidSpec`]), with located errors.

use std::collections::BTreeMap;

use simctl_engine::catalogue;
use simctl_engine::spec::*;
use simctl_engine::time::SimDuration;

use crate::ast::{BinOp, Block, Expr, ExprKind, Ident, Item, Span, shift_items};
use crate::diag::{Diagnostic, Diagnostics};
use crate::parser::{self, SyntaxError};
use crate::value::{Dim, Val, ValKind, unit};

/// Parses, evaluates and lowers a scenario. `overrides` are `(name, value)` pairs from
/// `--set`: a parameter name, or a dotted path to a setting (`router.policy`).
pub fn load(file_name: &str, src: &str, overrides: &[(String, String)]) -> Result<ValidSpec, Diagnostics> {
    let mut cx = Cx {
        generated: Default::default(),
        diags: Diagnostics::default(),
        params: BTreeMap::new(),
        spans: BTreeMap::new(),
        files: vec![(0, 0)],
    };
    cx.diags.sources.push((file_name.to_string(), src.to_string()));
    let (items, syntax) = parser::parse_file(src);
    for e in syntax {
        cx.syntax(0, e);
    }
    let mut chain = vec![std::fs::canonicalize(file_name).unwrap_or_else(|_| file_name.into())];
    let items = cx.expand_includes(items, 0, &mut chain);
    // Parameters first (in order, each may use earlier ones), then command-line overrides.
    let mut override_vals = Vec::new();
    for (k, v) in overrides {
        let idx = cx.diags.sources.len();
        cx.diags.sources.push((format!("--set {k}"), v.clone()));
        match parser::parse_expr(v) {
            Ok(e) => override_vals.push((k.clone(), e, idx)),
            Err(e) => cx.syntax(idx, e),
        }
    }
    for it in &items {
        if let Item::Param { name, value } = it {
            let ov = override_vals.iter().find(|(k, _, _)| k == &name.name);
            let v = match ov {
                Some((_, e, idx)) => cx.eval(e, *idx),
                None => cx.eval(value, 0),
            };
            if let Some(v) = v {
                cx.params.insert(name.name.clone(), v);
            }
        }
    }
    let mut tree = cx.eval_items(&items, 0);
    for (k, e, idx) in &override_vals {
        if cx.params.contains_key(k) && items.iter().any(|i| matches!(i, Item::Param { name, .. } if &name.name == k)) {
            continue;
        }
        let Some(v) = cx.eval(e, *idx) else { continue };
        let path: Vec<&str> = k.split('.').collect();
        if !set_path(&mut tree, &path, v.clone(), true) {
            let params: Vec<&str> = cx.params.keys().map(String::as_str).collect();
            cx.error(
                *idx,
                Span::new(0, cx.diags.sources[*idx].1.len()),
                format!("`--set {k}` matches no parameter and no setting of this scenario"),
                "this value has nowhere to go",
                Some(if params.is_empty() {
                    "use a dotted path to a setting, e.g. `router.policy=round_robin`".into()
                } else {
                    format!("parameters here: {}; or use a dotted path such as `router.policy`", params.join(", "))
                }),
            );
        }
    }
    let stem = file_name.rsplit('/').next().unwrap_or(file_name).trim_end_matches(".scn").to_string();
    let spec = cx.lower(&tree, stem);
    if !cx.diags.items.is_empty() {
        cx.diags.items.sort_by_key(|d| (d.src, d.span.start));
        return Err(cx.diags);
    }
    let spec = spec.expect("lowering without diagnostics gives a spec");
    match spec.into_valid() {
        Ok(valid) => Ok(valid),
        Err(errs) => {
            for e in errs {
                let span = cx.span_for_path(&e.path);
                cx.error(0, span, format!("{}: {}", e.path, e.message), "declared here", None);
            }
            Err(cx.diags)
        }
    }
}

/// An evaluated item.
#[derive(Clone, Debug)]
enum VItem {
    Setting { key: Ident, value: Val },
    Block { kind: Ident, name: Option<Ident>, items: Vec<VItem>, span: Span },
}

fn set_path(items: &mut Vec<VItem>, path: &[&str], v: Val, top: bool) -> bool {
    match path {
        [] => false,
        [key] => {
            for it in items.iter_mut() {
                if let VItem::Setting { key: k, value } = it
                    && k.name == *key
                {
                    *value = v;
                    return true;
                }
            }
            // A key the file does not set: added, so `--set router.queue_urgency=2` works;
            // the unknown-key check then catches typos. At the top level only the
            // scenario's own settings qualify (a bare unknown name is a missing parameter).
            if top && !["name", "seed", "model"].contains(key) {
                return false;
            }
            items.push(VItem::Setting { key: Ident { name: key.to_string(), span: v.span }, value: v });
            true
        }
        [seg, rest @ ..] => {
            for it in items.iter_mut() {
                if let VItem::Block { kind, name, items: inner, .. } = it {
                    let kind_match = kind.name == *seg || format!("{}s", kind.name) == *seg;
                    if name.as_ref().is_some_and(|n| n.name == *seg) {
                        return set_path(inner, rest, v, false);
                    }
                    if kind_match && name.is_none() {
                        return set_path(inner, rest, v, false);
                    }
                    if kind_match
                        && let (Some(n), Some(next)) = (name.as_ref(), rest.first())
                        && n.name == *next
                    {
                        return set_path(inner, &rest[1..], v, false);
                    }
                }
            }
            // Unnamed blocks with defaults may be absent from the file: create them, so
            // `--set pool.decode.engine.max_seqs=64` works on a pool without an engine block.
            if UNNAMED_BLOCKS.contains(seg) && (top || *seg == "engine") {
                let kind = Ident { name: seg.to_string(), span: v.span };
                let span = v.span;
                let mut inner = Vec::new();
                let ok = set_path(&mut inner, rest, v, false);
                items.push(VItem::Block { kind, name: None, items: inner, span });
                return ok;
            }
            false
        }
    }
}

// Blocks that take no name and have defaults for every key.
const UNNAMED_BLOCKS: &[&str] = &["engine", "router", "telemetry", "slo", "run"];

/// Includes nest at most this deep (a cycle is reported before that).
const MAX_INCLUDE_DEPTH: usize = 16;

struct Cx {
    /// `(global offset, source index)` of every scenario file read (the main file at 0, then
    /// includes): their spans are shifted to be unique, and errors map back.
    files: Vec<(usize, usize)>,
    /// Instance names made by `N x NAME` replication.
    generated: std::collections::BTreeSet<String>,
    diags: Diagnostics,
    params: BTreeMap<String, Val>,
    spans: BTreeMap<String, Span>,
}

fn closest<'a>(word: &str, options: &[&'a str]) -> Option<&'a str> {
    options.iter().map(|o| (strsim::damerau_levenshtein(word, o), *o)).filter(|(d, o)| *d <= 2.max(o.len() / 3)).min().map(|(_, o)| o)
}

impl Cx {
    fn error(&mut self, src: usize, span: Span, message: String, label: &str, help: Option<String>) {
        // Spans of scenario files (source 0 and includes) are global offsets.
        let (src, span) = if src == 0 { self.locate(span) } else { (src, span) };
        self.diags.items.push(Diagnostic { src, span, message, label: label.into(), help });
    }

    fn locate(&self, span: Span) -> (usize, Span) {
        let &(base, src) = self.files.iter().rev().find(|(base, _)| *base <= span.start).unwrap_or(&(0, 0));
        (src, Span::new(span.start - base, span.end - base))
    }

    /// The folder relative paths in `v` are resolved against: its scenario file's, or the
    /// working directory for values given on the command line.
    fn base_dir(&self, v: &Val) -> std::path::PathBuf {
        if v.src != 0 {
            return std::path::PathBuf::new();
        }
        let (src, _) = self.locate(v.span);
        std::path::Path::new(&self.diags.sources[src].0).parent().map(|p| p.to_path_buf()).unwrap_or_default()
    }

    /// Replaces `include "file"` items by the file's items (recursively), each file's spans
    /// shifted to its own range of offsets.
    fn expand_includes(&mut self, items: Vec<Item>, src: usize, chain: &mut Vec<std::path::PathBuf>) -> Vec<Item> {
        let mut out = Vec::new();
        for it in items {
            let Item::Include { path, span } = it else {
                out.push(it);
                continue;
            };
            let dir = std::path::Path::new(&self.diags.sources[src].0).parent().map(|p| p.to_path_buf()).unwrap_or_default();
            let full = dir.join(&path);
            let canon = std::fs::canonicalize(&full).unwrap_or_else(|_| full.clone());
            let text = match std::fs::read_to_string(&full) {
                Ok(t) => t,
                Err(e) => {
                    self.error(
                        0,
                        span,
                        format!("cannot include `{}`: {e}", full.display()),
                        "not readable",
                        Some("include paths are relative to the including file".into()),
                    );
                    continue;
                }
            };
            if chain.contains(&canon) || chain.len() > MAX_INCLUDE_DEPTH {
                self.error(
                    0,
                    span,
                    format!("`{}` includes itself (through {} files)", full.display(), chain.len()),
                    "include cycle",
                    Some("remove one of the includes".into()),
                );
                continue;
            }
            let base = self.diags.sources.iter().map(|s| s.1.len() + 1).sum::<usize>() + self.files.last().map_or(0, |f| f.0);
            let idx = self.diags.sources.len();
            self.diags.sources.push((full.display().to_string(), text.clone()));
            self.files.push((base, idx));
            let (mut inner, syntax) = parser::parse_file(&text);
            for e in syntax {
                self.syntax(idx, e);
            }
            shift_items(&mut inner, base);
            chain.push(canon);
            out.extend(self.expand_includes(inner, idx, chain));
            chain.pop();
        }
        out
    }

    fn syntax(&mut self, src: usize, e: SyntaxError) {
        let text = &self.diags.sources[src].1;
        let end = text[e.offset.min(text.len())..].chars().next().map_or(e.offset, |c| e.offset + c.len_utf8());
        let found = text[e.offset.min(text.len())..]
            .split_whitespace()
            .next()
            .map(|w| format!("found `{}`", w.chars().take(20).collect::<String>()))
            .unwrap_or_else(|| "found the end of the input".into());
        self.error(src, Span::new(e.offset, end), format!("syntax error: expected {}", e.expected), &found, None);
    }

    fn span_for_path(&self, path: &str) -> Span {
        let mut p = path;
        loop {
            if let Some(s) = self.spans.get(p) {
                return *s;
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return self.spans.get(p).copied().unwrap_or_default(),
            }
        }
    }

    // ---- evaluation ----

    fn eval(&mut self, e: &Expr, src: usize) -> Option<Val> {
        let mk = |kind| Some(Val { kind, span: e.span, src });
        match &e.kind {
            ExprKind::Number { value, unit: None } => mk(ValKind::Num(*value, Dim::NONE)),
            ExprKind::Number { value, unit: Some(u) } => {
                let (f, d) = unit(u).expect("the parser only accepts known units");
                mk(ValKind::Num(value * f, d))
            }
            ExprKind::Str(s) => mk(ValKind::Str(s.clone())),
            ExprKind::Bool(b) => mk(ValKind::Bool(*b)),
            ExprKind::Ident(name) => match self.params.get(name) {
                Some(v) => Some(Val { span: e.span, src, ..v.clone() }),
                None => mk(ValKind::Ident(name.clone())),
            },
            ExprKind::List(items) => {
                let vals: Vec<Val> = items.iter().filter_map(|i| self.eval(i, src)).collect();
                mk(ValKind::List(vals))
            }
            ExprKind::Call { name, args } => {
                let mut out = Vec::new();
                for a in args {
                    out.push((a.name.as_ref().map(|n| n.name.clone()), self.eval(&a.value, src)?));
                }
                mk(ValKind::Call { name: name.name.clone(), args: out })
            }
            ExprKind::Replicate { count, of } => mk(ValKind::Replicate(*count, of.name.clone())),
            ExprKind::Neg(inner) => {
                let v = self.eval(inner, src)?;
                match v.kind {
                    ValKind::Num(x, d) => mk(ValKind::Num(-x, d)),
                    _ => {
                        self.error(src, e.span, format!("cannot negate {v}"), "not a number", None);
                        None
                    }
                }
            }
            ExprKind::Binary(op, a, b) => {
                let (va, vb) = (self.eval(a, src)?, self.eval(b, src)?);
                let (ValKind::Num(x, dx), ValKind::Num(y, dy)) = (&va.kind, &vb.kind) else {
                    let bad = if matches!(va.kind, ValKind::Num(..)) { &vb } else { &va };
                    self.error(src, bad.span, format!("arithmetic needs numbers, found {bad}"), "not a number", None);
                    return None;
                };
                let (x, y, dx, dy) = (*x, *y, *dx, *dy);
                let r = match op {
                    BinOp::Add | BinOp::Sub => {
                        if dx != dy {
                            self.error(
                                src,
                                e.span,
                                format!("cannot combine {} with {}", dx.describe(), dy.describe()),
                                "units differ",
                                Some("both sides of `+` and `-` need the same unit".into()),
                            );
                            return None;
                        }
                        (if *op == BinOp::Add { x + y } else { x - y }, dx)
                    }
                    BinOp::Mul => (x * y, dx.mul(dy)),
                    BinOp::Div => {
                        if y == 0.0 {
                            self.error(src, vb.span, "division by zero".into(), "this is zero", None);
                            return None;
                        }
                        (x / y, dx.div(dy))
                    }
                };
                mk(ValKind::Num(r.0, r.1))
            }
        }
    }

    fn eval_items(&mut self, items: &[Item], src: usize) -> Vec<VItem> {
        let mut out = Vec::new();
        for it in items {
            match it {
                Item::Param { .. } => {}
                Item::Setting { key, value } => {
                    if let Some(v) = self.eval(value, src) {
                        out.push(VItem::Setting { key: key.clone(), value: v });
                    }
                }
                Item::Block(Block { kind, name, items, span }) => {
                    let inner = self.eval_items(items, src);
                    out.push(VItem::Block { kind: kind.clone(), name: name.clone(), items: inner, span: *span });
                }
                Item::Include { span, .. } => {
                    self.error(0, *span, "`include` belongs at the top level of a file".into(), "not here", None);
                }
            }
        }
        out
    }

    fn load_profile(&mut self, path: &str, v: &Val) -> Option<simctl_engine::profile::Profile> {
        let base = self.base_dir(v);
        let full = if std::path::Path::new(path).is_absolute() { std::path::PathBuf::from(path) } else { base.join(path) };
        let text = match std::fs::read_to_string(&full) {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    v.src,
                    v.span,
                    format!("cannot read profile `{}`: {e}", full.display()),
                    "profile not readable",
                    Some("paths are relative to the scenario file".into()),
                );
                return None;
            }
        };
        match serde_saphyr::from_str::<simctl_engine::profile::Profile>(&text) {
            Ok(p) if p.format == simctl_engine::profile::PROFILE_FORMAT => Some(p),
            Ok(p) => {
                self.error(
                    v.src,
                    v.span,
                    format!(
                        "profile `{}` has format {}, this simctl reads format {}",
                        full.display(),
                        p.format,
                        simctl_engine::profile::PROFILE_FORMAT
                    ),
                    "unsupported format",
                    None,
                );
                None
            }
            Err(e) => {
                self.error(
                    v.src,
                    v.span,
                    format!("profile `{}` is not a valid profile: {e}", full.display()),
                    "invalid profile",
                    Some("the format is described in docs/profile.md".into()),
                );
                None
            }
        }
    }

    // ---- typed accessors ----

    fn expect_dim(&mut self, v: &Val, dim: Dim, key: &str) -> Option<f64> {
        match v.kind {
            ValKind::Num(x, d) if d == dim => Some(x),
            ValKind::Num(x, Dim::NONE) if dim != Dim::NONE => {
                let help = match dim {
                    Dim::TIME => format!("write `{x}ms` or `{x}s`"),
                    Dim::TOKEN_RATE => format!("write `{x} tok/s`"),
                    Dim::PER_TIME => format!("write `{x}/s`"),
                    Dim::MONEY_RATE => format!("write `{x} $/h`"),
                    Dim::BYTES => format!("write `{x} GB`"),
                    Dim::BANDWIDTH => format!("write `{x} GB/s`"),
                    _ => "add a unit".into(),
                };
                self.error(
                    v.src,
                    v.span,
                    format!("`{key}` expects {}, found `{x}` without a unit", dim.describe()),
                    "unit missing",
                    Some(help),
                );
                None
            }
            _ => {
                self.error(v.src, v.span, format!("`{key}` expects {}, found {v}", dim.describe()), "wrong kind of value", None);
                None
            }
        }
    }

    fn duration(&mut self, v: &Val, key: &str) -> Option<SimDuration> {
        let s = self.expect_dim(v, Dim::TIME, key)?;
        if s < 0.0 {
            self.error(v.src, v.span, format!("`{key}` must not be negative"), "negative", None);
            return None;
        }
        Some(SimDuration::from_secs_f64(s))
    }

    fn number(&mut self, v: &Val, key: &str) -> Option<f64> {
        self.expect_dim(v, Dim::NONE, key)
    }

    fn fraction(&mut self, v: &Val, key: &str) -> Option<f64> {
        let x = self.number(v, key)?;
        if !(0.0..=1.0).contains(&x) {
            self.error(v.src, v.span, format!("`{key}` must be between 0 and 1 (or 0% and 100%)"), "out of range", None);
            return None;
        }
        Some(x)
    }

    fn count(&mut self, v: &Val, key: &str) -> Option<u64> {
        let x = match v.kind {
            ValKind::Num(x, Dim::TOKENS) => x,
            _ => self.number(v, key)?,
        };
        if x < 0.0 || x.fract() != 0.0 || x > u64::MAX as f64 {
            self.error(v.src, v.span, format!("`{key}` must be a whole number, found `{x}`"), "not a whole number", None);
            return None;
        }
        Some(x as u64)
    }

    fn count_u32(&mut self, v: &Val, key: &str) -> Option<u32> {
        let n = self.count(v, key)?;
        u32::try_from(n).ok().or_else(|| {
            self.error(v.src, v.span, format!("`{key}` is too large"), "at most 4294967295", None);
            None
        })
    }

    fn boolean(&mut self, v: &Val, key: &str) -> Option<bool> {
        match v.kind {
            ValKind::Bool(b) => Some(b),
            _ => {
                self.error(v.src, v.span, format!("`{key}` expects `true` or `false`, found {v}"), "not a boolean", None);
                None
            }
        }
    }

    fn name(&mut self, v: &Val, key: &str) -> Option<String> {
        match &v.kind {
            ValKind::Ident(s) | ValKind::Str(s) => Some(s.clone()),
            _ => {
                self.error(v.src, v.span, format!("`{key}` expects a name, found {v}"), "not a name", None);
                None
            }
        }
    }

    fn keyword<T: Copy>(&mut self, v: &Val, key: &str, options: &[(&str, T)]) -> Option<T> {
        let n = self.name(v, key)?;
        if let Some((_, t)) = options.iter().find(|(o, _)| *o == n) {
            return Some(*t);
        }
        let names: Vec<&str> = options.iter().map(|(o, _)| *o).collect();
        let help = match closest(&n, &names) {
            Some(c) => format!("did you mean `{c}`? choices: {}", names.join(", ")),
            None => format!("choices: {}", names.join(", ")),
        };
        self.error(v.src, v.span, format!("unknown {key} `{n}`"), "not one of the choices", Some(help));
        None
    }

    /// Checks that every key of a block is known; returns the settings by key.
    fn settings<'t>(&mut self, what: &str, items: &'t [VItem], allowed: &[&str]) -> BTreeMap<&'t str, &'t Val> {
        let mut out = BTreeMap::new();
        for it in items {
            if let VItem::Setting { key, value } = it {
                if !allowed.contains(&key.name.as_str()) {
                    let help = match closest(&key.name, allowed) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("keys of {what}: {}", allowed.join(", ")),
                    };
                    let key_src = if key.span == value.span { value.src } else { 0 };
                    self.error(key_src, key.span, format!("unknown key `{}` in {what}", key.name), "unknown key", Some(help));
                    continue;
                }
                if out.insert(key.name.as_str(), value).is_some() {
                    self.error(
                        0,
                        key.span,
                        format!("`{}` is set twice in {what}", key.name),
                        "set again here",
                        Some("remove one of them".into()),
                    );
                }
            }
        }
        out
    }

    fn blocks<'t>(items: &'t [VItem], kind: &str) -> impl Iterator<Item = (&'t Ident, Option<&'t Ident>, &'t [VItem], Span)> {
        items.iter().filter_map(move |it| match it {
            VItem::Block { kind: k, name, items, span } if k.name == kind => Some((k, name.as_ref(), items.as_slice(), *span)),
            _ => None,
        })
    }

    // ---- lowering ----

    fn lower(&mut self, tree: &[VItem], default_name: String) -> Option<ScenarioSpec> {
        const TOP_BLOCKS: &[&str] =
            &["hardware", "pool", "link", "router", "telemetry", "workload", "slo", "run", "engine", "model", "sweep"];
        for it in tree {
            if let VItem::Block { kind, .. } = it
                && !TOP_BLOCKS.contains(&kind.name.as_str())
            {
                let help = closest(&kind.name, TOP_BLOCKS)
                    .map(|c| format!("did you mean `{c}`?"))
                    .unwrap_or_else(|| format!("blocks: {}", TOP_BLOCKS.join(", ")));
                self.error(0, kind.span, format!("unknown block `{}`", kind.name), "unknown block", Some(help));
            }
        }
        // Blocks that may appear once: a second one would otherwise be silently ignored.
        for kind in ["router", "telemetry", "workload", "slo", "run", "engine", "model", "sweep"] {
            let mut seen = false;
            for it in tree {
                if let VItem::Block { kind: k, .. } = it
                    && k.name == kind
                {
                    if seen {
                        self.error(
                            0,
                            k.span,
                            format!("`{kind}` is declared twice"),
                            "declared again here",
                            Some("merge the two blocks into one".into()),
                        );
                    }
                    seen = true;
                }
            }
        }
        let top = self.settings("the scenario", tree, &["name", "seed", "model"]);
        let name = match top.get("name") {
            Some(v) => self.name(v, "name"),
            None => Some(default_name),
        };
        let seed = match top.get("seed") {
            Some(v) => self.count(v, "seed"),
            None => Some(0),
        };
        let model_block = Self::blocks(tree, "model").next();
        let model = match (top.get("model"), model_block) {
            (Some(v), Some(_)) => {
                self.error(v.src, v.span, "the model is given twice: as `model = ...` and as a `model` block".into(), "remove one", None);
                None
            }
            (None, Some((_, name, items, span))) => self.model_block(name, items, span),
            (Some(v), None) => {
                let n = self.name(v, "model")?;
                catalogue::model(&n).or_else(|| {
                    let names: Vec<String> = catalogue::models().into_iter().map(|m| m.name).collect();
                    self.error(
                        v.src,
                        v.span,
                        format!("unknown model `{n}`"),
                        "not in the catalogue",
                        Some(format!("catalogue models: {}", names.join(", "))),
                    );
                    None
                })
            }
            (None, None) => {
                self.error(
                    0,
                    Span::default(),
                    "the scenario names no model".into(),
                    "expected `model = ...`",
                    Some("add e.g. `model = llama_3_1_8b`".into()),
                );
                None
            }
        };

        let global_engine = Self::blocks(tree, "engine").next().map(|(_, _, items, _)| items);
        let base_engine = match global_engine {
            Some(items) => self.engine(items, EngineSpec::default()),
            None => EngineSpec::default(),
        };

        let mut hardware = Vec::new();
        let mut hw_index = BTreeMap::new();
        for (_, name, items, span) in Self::blocks(tree, "hardware") {
            let Some(n) = name else {
                self.error(0, span, "a hardware block needs a name".into(), "unnamed", Some("write `hardware NAME { ... }`".into()));
                continue;
            };
            self.spans.insert(format!("hardware.{}", n.name), span);
            if let Some(hw) = self.hardware(&n.name, items, span) {
                if hw_index.insert(n.name.clone(), hardware.len()).is_some() {
                    self.error(0, n.span, format!("hardware `{}` is declared twice", n.name), "declared again", None);
                }
                hardware.push(hw);
            }
        }

        let mut pools = Vec::new();
        for (_, name, items, span) in Self::blocks(tree, "pool") {
            let Some(n) = name else {
                self.error(0, span, "a pool needs a name".into(), "unnamed", Some("write `pool NAME { ... }`".into()));
                continue;
            };
            self.spans.insert(format!("pools.{}", n.name), span);
            if let Some(p) = self.pool(&n.name, items, base_engine, &hw_index) {
                pools.push(p);
            }
        }
        // Replicated names that collide across pools take their pool's name as a prefix
        // (`prefill_h200_0`, `decode_h200_0`).
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for p in &pools {
            for i in &p.instances {
                *count.entry(i.name.clone()).or_default() += 1;
            }
        }
        let clash = |p: &PoolSpec| p.instances.iter().any(|i| count[&i.name] > 1 && self.generated.contains(&i.name));
        let clashing: Vec<bool> = pools.iter().map(clash).collect();
        for (p, c) in pools.iter_mut().zip(clashing) {
            if c {
                for i in &mut p.instances {
                    if self.generated.contains(&i.name) {
                        i.name = format!("{}_{}", p.name, i.name);
                    }
                }
            }
        }
        let pool_index: BTreeMap<String, usize> = pools.iter().enumerate().map(|(i, p)| (p.name.clone(), i)).collect();

        let mut links = Vec::new();
        for (i, (_, _, items, span)) in Self::blocks(tree, "link").enumerate() {
            self.spans.insert(format!("links[{i}]"), span);
            let s = self.settings("a link", items, &["from", "to", "latency", "bandwidth"]);
            let pool_ref = |cx: &mut Self, key: &str| -> Option<usize> {
                let Some(v) = s.get(key) else {
                    cx.error(0, span, format!("a link needs `{key}`"), "incomplete link", Some(format!("add `{key} = POOL`")));
                    return None;
                };
                let n = cx.name(v, key)?;
                pool_index.get(&n).copied().or_else(|| {
                    let names: Vec<&str> = pool_index.keys().map(String::as_str).collect();
                    let help = closest(&n, &names)
                        .map(|c| format!("did you mean `{c}`?"))
                        .unwrap_or_else(|| format!("pools: {}", names.join(", ")));
                    cx.error(v.src, v.span, format!("unknown pool `{n}`"), "no such pool", Some(help));
                    None
                })
            };
            let from = pool_ref(self, "from");
            let to = pool_ref(self, "to");
            let latency = s.get("latency").map_or(Some(SimDuration::ZERO), |v| self.duration(v, "latency"));
            let bandwidth = match s.get("bandwidth") {
                Some(v) => self.expect_dim(v, Dim::BANDWIDTH, "bandwidth").map(Some),
                None => Some(None),
            };
            if let (Some(from), Some(to), Some(latency), Some(bandwidth_bytes_s)) = (from, to, latency, bandwidth) {
                links.push(LinkSpec { from, to, latency, bandwidth_bytes_s });
            }
        }

        let router = match Self::blocks(tree, "router").next() {
            Some((_, _, items, span)) => {
                self.spans.insert("router".into(), span);
                self.router(items)
            }
            None => Some(RouterSpec::single(PolicySpec::RoundRobin)),
        };
        let telemetry = match Self::blocks(tree, "telemetry").next() {
            Some((_, _, items, _)) => {
                let s = self.settings("telemetry", items, &["interval"]);
                let interval = s.get("interval").map_or(Some(SimDuration::ZERO), |v| self.duration(v, "interval"));
                interval.map(|interval| TelemetrySpec { interval })
            }
            None => Some(TelemetrySpec::default()),
        };
        let workload = match Self::blocks(tree, "workload").next() {
            Some((_, _, items, span)) => {
                self.spans.insert("workload".into(), span);
                self.workload(items, span)
            }
            None => {
                self.error(
                    0,
                    Span::default(),
                    "the scenario has no workload".into(),
                    "expected `workload { ... }`",
                    Some("add e.g. `workload { arrivals = poisson(10/s); prompt = uniform(100, 1200); output = uniform(32, 256) }`".into()),
                );
                None
            }
        };
        let slo = Some(match Self::blocks(tree, "slo").next() {
            Some((_, _, items, _)) => self.slo_block(items, "slo"),
            None => SloSpec::default(),
        });
        let run = match Self::blocks(tree, "run").next() {
            Some((_, _, items, span)) => {
                self.spans.insert("run".into(), span);
                let s = self.settings("run", items, &["duration", "requests", "drain"]);
                let duration = s.get("duration").map(|v| self.duration(v, "duration"));
                let requests = s.get("requests").map(|v| self.count(v, "requests"));
                let drain = s.get("drain").map_or(Some(true), |v| self.boolean(v, "drain"));
                Some(RunSpec { duration: duration.flatten(), requests: requests.flatten(), drain: drain.unwrap_or(true) })
            }
            None => Some(RunSpec { duration: None, requests: None, drain: true }),
        };
        let sweep = match Self::blocks(tree, "sweep").next() {
            None => None,
            Some((_, _, items, span)) => {
                let s = self.settings("sweep", items, &["grid", "seeds"]);
                let mut grid = Vec::new();
                if let Some(v) = s.get("grid") {
                    let elems = match &v.kind {
                        ValKind::List(xs) => xs.clone(),
                        _ => vec![(*v).clone()],
                    };
                    for e in elems {
                        match &e.kind {
                            ValKind::Str(g) if g.contains('=') => grid.push(g.clone()),
                            _ => self.error(
                                e.src,
                                e.span,
                                format!("a sweep axis is a string like `\"arrival_rate=10/s..40/s:10/s\"`, found {e}"),
                                "not an axis",
                                None,
                            ),
                        }
                    }
                } else {
                    self.error(
                        0,
                        span,
                        "the sweep block has no `grid`".into(),
                        "incomplete",
                        Some("add e.g. `grid = [\"arrival_rate=10/s..40/s:10/s\", \"router.policy=round_robin,telemetry\"]`".into()),
                    );
                }
                let seeds = match s.get("seeds") {
                    Some(v) => self.count_u32(v, "seeds"),
                    None => None,
                };
                Some(SweepSpec { grid, seeds })
            }
        };
        if !self.diags.items.is_empty() {
            return None;
        }
        Some(ScenarioSpec {
            sweep,
            name: name?,
            seed: seed?,
            model: model?,
            hardware,
            pools,
            links,
            router: router?,
            telemetry: telemetry?,
            workload: workload?,
            slo: slo?,
            run: run?,
        })
    }

    /// `model NAME { base = CATALOGUE_MODEL; ... }` or a full architecture.
    fn model_block(&mut self, name: Option<&Ident>, items: &[VItem], span: Span) -> Option<catalogue::ModelSpec> {
        const KEYS: &[&str] = &[
            "base",
            "layers",
            "hidden",
            "heads",
            "kv_heads",
            "head_dim",
            "intermediate",
            "vocab",
            "experts",
            "active_experts",
            "dtype_bytes",
            "tied_embeddings",
        ];
        let s = self.settings("the model", items, KEYS);
        let mut m = match s.get("base") {
            Some(v) => {
                let n = self.name(v, "base")?;
                match catalogue::model(&n) {
                    Some(m) => m,
                    None => {
                        let names: Vec<String> = catalogue::models().into_iter().map(|m| m.name).collect();
                        self.error(
                            v.src,
                            v.span,
                            format!("unknown model `{n}`"),
                            "not in the catalogue",
                            Some(format!("catalogue models: {}", names.join(", "))),
                        );
                        return None;
                    }
                }
            }
            None => {
                let missing: Vec<&str> =
                    ["layers", "hidden", "heads", "kv_heads", "intermediate", "vocab"].into_iter().filter(|k| !s.contains_key(k)).collect();
                if !missing.is_empty() {
                    self.error(
                        0,
                        span,
                        format!("the model block lacks {}", missing.join(", ")),
                        "incomplete architecture",
                        Some("give every shape, or start from the catalogue with `base = llama_3_1_8b`".into()),
                    );
                    return None;
                }
                catalogue::ModelSpec {
                    name: String::new(),
                    layers: 0,
                    hidden: 0,
                    heads: 0,
                    kv_heads: 0,
                    head_dim: 0,
                    intermediate: 0,
                    vocab: 0,
                    experts: 1,
                    active_experts: 1,
                    dtype_bytes: 2,
                    tied_embeddings: false,
                }
            }
        };
        if let Some(n) = name {
            m.name = n.name.clone();
        }
        let set = |cx: &mut Self, k: &str, into: &mut u32| -> Option<()> {
            if let Some(v) = s.get(k) {
                *into = cx.count_u32(v, k)?;
                if *into == 0 {
                    cx.error(v.src, v.span, format!("`{k}` must be at least 1"), "zero", None);
                    return None;
                }
            }
            Some(())
        };
        set(self, "layers", &mut m.layers)?;
        set(self, "hidden", &mut m.hidden)?;
        set(self, "heads", &mut m.heads)?;
        set(self, "kv_heads", &mut m.kv_heads)?;
        set(self, "intermediate", &mut m.intermediate)?;
        set(self, "vocab", &mut m.vocab)?;
        set(self, "experts", &mut m.experts)?;
        set(self, "active_experts", &mut m.active_experts)?;
        set(self, "dtype_bytes", &mut m.dtype_bytes)?;
        if s.contains_key("head_dim") {
            set(self, "head_dim", &mut m.head_dim)?;
        } else if m.head_dim == 0 {
            m.head_dim = m.hidden / m.heads;
        }
        if let Some(v) = s.get("tied_embeddings") {
            m.tied_embeddings = self.boolean(v, "tied_embeddings")?;
        }
        if m.active_experts > m.experts {
            self.error(0, span, "`active_experts` exceeds `experts`".into(), "impossible", None);
            return None;
        }
        Some(m)
    }

    fn engine(&mut self, items: &[VItem], mut e: EngineSpec) -> EngineSpec {
        let s = self.settings(
            "engine",
            items,
            &["max_batch_tokens", "max_seqs", "chunked_prefill", "block_size", "gpu_memory_utilization", "prefix_caching"],
        );
        if let Some(v) = s.get("max_batch_tokens").and_then(|v| self.count_u32(v, "max_batch_tokens")) {
            e.max_batch_tokens = v;
        }
        if let Some(v) = s.get("max_seqs").and_then(|v| self.count_u32(v, "max_seqs")) {
            e.max_seqs = v;
        }
        if let Some(v) = s.get("chunked_prefill").and_then(|v| self.boolean(v, "chunked_prefill")) {
            e.chunked_prefill = v;
        }
        if let Some(v) = s.get("block_size").and_then(|v| self.count_u32(v, "block_size")) {
            e.block_size = v;
        }
        if let Some(v) = s.get("gpu_memory_utilization").and_then(|v| self.fraction(v, "gpu_memory_utilization")) {
            e.gpu_memory_utilization = v;
        }
        if let Some(v) = s.get("prefix_caching").and_then(|v| self.boolean(v, "prefix_caching")) {
            e.prefix_caching = v;
        }
        e
    }

    fn hardware(&mut self, name: &str, items: &[VItem], span: Span) -> Option<HardwareSpec> {
        let what = format!("hardware `{name}`");
        let s = self.settings(
            &what,
            items,
            &[
                "gpu",
                "prefill_rate",
                "decode_rate",
                "profile",
                "fitted",
                "cost",
                "memory",
                "kv_capacity",
                "kv_transfer",
                "mfu",
                "mbu",
                "step_overhead",
            ],
        );
        let gpu = match s.get("gpu") {
            Some(v) => {
                let n = self.name(v, "gpu")?;
                match catalogue::gpu(&n) {
                    Some(g) => Some(g),
                    None => {
                        let names: Vec<String> = catalogue::gpus().into_iter().map(|g| g.name).collect();
                        self.error(
                            v.src,
                            v.span,
                            format!("unknown gpu `{n}`"),
                            "not in the catalogue",
                            Some(format!("catalogue GPUs: {}", names.join(", "))),
                        );
                        return None;
                    }
                }
            }
            None => None,
        };
        let rate = |cx: &mut Self, k: &str| s.get(k).map(|v| cx.expect_dim(v, Dim::TOKEN_RATE, k));
        let (prefill, decode) = (rate(self, "prefill_rate"), rate(self, "decode_rate"));
        let overhead = s.get("step_overhead").map(|v| self.duration(v, "step_overhead"));
        // A fitted model (inline or from a profile) fixes the performance model; a profile
        // also gives defaults for the memory and the KV capacity.
        let mut mem_default = None;
        let mut kv_default = None;
        let fitted = if let Some(v) = s.get("fitted") {
            let coefficients: Option<[f64; 6]> = match &v.kind {
                ValKind::List(xs) if xs.len() == 6 => {
                    let mut c = [0.0; 6];
                    for (k, x) in xs.iter().enumerate() {
                        c[k] = self.number(x, "fitted")?;
                    }
                    Some(c)
                }
                _ => None,
            };
            let Some(coefficients) = coefficients else {
                self.error(
                    v.src,
                    v.span,
                    "`fitted` takes six coefficients `[c0, c1, c2, c3, c4, c5]` in seconds".into(),
                    "not six numbers",
                    None,
                );
                return None;
            };
            Some(PerfSpec::Fitted { coefficients })
        } else if let Some(v) = s.get("profile") {
            let path = self.name(v, "profile")?;
            let profile = self.load_profile(&path, v)?;
            kv_default = Some(profile.kv_capacity_blocks * u64::from(profile.engine.block_size));
            mem_default = profile.hardware.memory_bytes;
            Some(PerfSpec::Fitted { coefficients: profile.coefficients.as_array() })
        } else {
            None
        };
        if fitted.is_some() && (gpu.is_some() || prefill.is_some() || decode.is_some()) {
            self.error(
                0,
                span,
                format!("{what} sets a fitted model (`fitted` or `profile`) together with `gpu` or token rates"),
                "choose one performance model",
                None,
            );
            return None;
        }
        let perf = match (&gpu, prefill, decode) {
            _ if fitted.is_some() => fitted.expect("checked"),
            (Some(g), None, None) => {
                let mfu = s.get("mfu").map_or(Some(DEFAULT_MFU), |v| self.fraction(v, "mfu"))?;
                let mbu = s.get("mbu").map_or(Some(DEFAULT_MBU), |v| self.fraction(v, "mbu"))?;
                PerfSpec::Roofline { gpu: g.clone(), mfu, mbu, step_overhead: overhead.unwrap_or(Some(DEFAULT_STEP_OVERHEAD))? }
            }
            (None, Some(p), Some(d)) => {
                PerfSpec::Rates { prefill_tok_s: p?, decode_tok_s: d?, step_overhead: overhead.unwrap_or(Some(SimDuration::ZERO))? }
            }
            (Some(_), _, _) => {
                self.error(
                    0,
                    span,
                    format!("{what} sets both `gpu` and token rates"),
                    "choose one performance model",
                    Some("use `gpu = ...` for the roofline model, or `prefill_rate` and `decode_rate` for fixed rates".into()),
                );
                return None;
            }
            (None, _, _) => {
                self.error(
                    0,
                    span,
                    format!("{what} has no performance model"),
                    "incomplete",
                    Some("add `gpu = h100_sxm` (roofline), both `prefill_rate = ... tok/s` and `decode_rate = ... tok/s`, or `profile = \"FILE.yaml\"`".into()),
                );
                return None;
            }
        };
        let cost = match (s.get("cost"), &gpu) {
            (Some(v), _) => self.expect_dim(v, Dim::MONEY_RATE, "cost")?,
            (None, Some(g)) => g.cost_per_hour,
            (None, None) => {
                self.error(0, span, format!("{what} has no price"), "incomplete", Some("add e.g. `cost = 3 $/h`".into()));
                return None;
            }
        };
        let memory = match s.get("memory") {
            Some(v) => Some(self.expect_dim(v, Dim::BYTES, "memory")? as u64),
            None => mem_default,
        };
        let kv_capacity = match s.get("kv_capacity") {
            Some(v) => Some(self.count(v, "kv_capacity")?),
            None => kv_default,
        };
        let kv_transfer = match s.get("kv_transfer") {
            Some(v) => Some(self.duration(v, "kv_transfer")?),
            None => None,
        };
        Some(HardwareSpec {
            name: name.into(),
            cost_per_hour: cost,
            memory_bytes: memory,
            kv_capacity_tokens: kv_capacity,
            kv_transfer_latency: kv_transfer,
            perf,
        })
    }

    fn pool(&mut self, name: &str, items: &[VItem], base: EngineSpec, hw: &BTreeMap<String, usize>) -> Option<PoolSpec> {
        let what = format!("pool `{name}`");
        let s = self.settings(&what, items, &["role", "instances", "tp", "local_prefill", "local_prefill_threshold"]);
        for it in items {
            if let VItem::Block { kind, .. } = it
                && kind.name != "engine"
                && kind.name != "instance"
            {
                self.error(
                    0,
                    kind.span,
                    format!("unknown block `{}` in {what}", kind.name),
                    "unknown block",
                    Some("pools hold `engine { ... }` and `instance NAME { hardware = ... }` blocks".into()),
                );
            }
        }
        let role = match s.get("role") {
            Some(v) => self.keyword(v, "role", &[("prefill", Role::Prefill), ("decode", Role::Decode), ("mixed", Role::Mixed)])?,
            None => Role::Mixed,
        };
        let tp = s.get("tp").map_or(Some(1), |v| self.count_u32(v, "tp"))?;
        let engine = match Self::blocks(items, "engine").next() {
            Some((_, _, e, _)) => self.engine(e, base),
            None => base,
        };
        let mut instances = Vec::new();
        let hw_ref = |cx: &mut Self, n: &str, v: &Val| -> Option<usize> {
            hw.get(n).copied().or_else(|| {
                let names: Vec<&str> = hw.keys().map(String::as_str).collect();
                let help = closest(n, &names)
                    .map(|c| format!("did you mean `{c}`?"))
                    .unwrap_or_else(|| format!("hardware declared: {}", names.join(", ")));
                cx.error(v.src, v.span, format!("unknown hardware `{n}`"), "not declared", Some(help));
                None
            })
        };
        if let Some(v) = s.get("instances") {
            let elems: Vec<Val> = match &v.kind {
                ValKind::List(xs) => xs.clone(),
                _ => vec![(*v).clone()],
            };
            for e in elems {
                match &e.kind {
                    ValKind::Ident(n) | ValKind::Str(n) => {
                        if let Some(h) = hw_ref(self, n, &e) {
                            instances.push(InstanceSpec { name: n.clone(), hardware: h, tp });
                        }
                    }
                    ValKind::Replicate(k, n) => {
                        if let Some(h) = hw_ref(self, n, &e) {
                            for j in 0..*k {
                                // `3 x mid` -> mid0, mid1, mid2; a name ending in a digit gets a
                                // separator (`h200_0`).
                                let sep = if n.ends_with(|c: char| c.is_ascii_digit()) { "_" } else { "" };
                                let generated = format!("{n}{sep}{j}");
                                self.generated.insert(generated.clone());
                                instances.push(InstanceSpec { name: generated, hardware: h, tp });
                            }
                        }
                    }
                    _ => self.error(
                        e.src,
                        e.span,
                        format!("`instances` lists hardware names or `N x NAME`, found {e}"),
                        "not an instance",
                        Some("e.g. `instances = [dc_big, 3 x dc_mid]`".into()),
                    ),
                }
            }
        }
        for (_, iname, items, span) in Self::blocks(items, "instance") {
            let Some(iname) = iname else {
                self.error(
                    0,
                    span,
                    "an instance block needs a name".into(),
                    "unnamed",
                    Some("write `instance NAME { hardware = ... }`".into()),
                );
                continue;
            };
            let si = self.settings(&format!("instance `{}`", iname.name), items, &["hardware", "tp"]);
            let Some(hv) = si.get("hardware") else {
                self.error(
                    0,
                    span,
                    format!("instance `{}` names no hardware", iname.name),
                    "incomplete",
                    Some("add `hardware = NAME`".into()),
                );
                continue;
            };
            let Some(hn) = self.name(hv, "hardware") else {
                continue;
            };
            let Some(h) = hw_ref(self, &hn, hv) else {
                continue;
            };
            let itp = si.get("tp").map_or(Some(tp), |v| self.count_u32(v, "tp"));
            if let Some(itp) = itp {
                instances.push(InstanceSpec { name: iname.name.clone(), hardware: h, tp: itp });
            }
        }
        let local = match s.get("local_prefill") {
            Some(v) => self.boolean(v, "local_prefill")?,
            None => false,
        };
        let local_prefill_threshold = match s.get("local_prefill_threshold") {
            Some(v) => Some(self.count_u32(v, "local_prefill_threshold")?),
            None if local => Some(DEFAULT_LOCAL_PREFILL_THRESHOLD),
            None => None,
        };
        Some(PoolSpec { name: name.into(), role, engine, instances, local_prefill_threshold })
    }

    fn router(&mut self, items: &[VItem]) -> Option<RouterSpec> {
        // Which keys belong to which policy (a key must belong to a chosen policy).
        const PARAMS: &[(&str, &[&str])] = &[
            (
                "telemetry",
                &[
                    "ewma_alpha",
                    "queue_urgency",
                    "kv_locality_boost",
                    "decode_cost_penalty",
                    "migration",
                    "migration_interval",
                    "min_score_gap",
                    "budget",
                    "window",
                    "max_per_call",
                ],
            ),
            ("kv_aware", &["prefill_load_scale", "temperature"]),
            ("cache_aware", &["cache_threshold", "balance_abs", "balance_rel"]),
        ];
        const POLICIES: &[&str] = &["round_robin", "random", "least_loaded", "power_of_two", "telemetry", "kv_aware", "cache_aware"];
        let mut allowed = vec!["policy", "prefill", "decode"];
        for (_, keys) in PARAMS {
            allowed.extend_from_slice(keys);
        }
        let s = self.settings("router", items, &allowed);
        let opts: Vec<(&str, &str)> = POLICIES.iter().map(|p| (*p, *p)).collect();
        let pick = |cx: &mut Self, key: &str| -> Option<Option<(&'static str, bool)>> {
            match s.get(key) {
                None => Some(None),
                Some(v) => {
                    let name = cx.keyword(v, key, &opts)?;
                    let name = POLICIES.iter().find(|p| **p == name).copied().expect("a listed policy");
                    Some(Some((name, v.src != 0)))
                }
            }
        };
        let single = pick(self, "policy")?;
        let prefill = pick(self, "prefill")?;
        let decode = pick(self, "decode")?;
        if single.is_some() && (prefill.is_some() || decode.is_some()) {
            let v = s.get("prefill").or(s.get("decode")).expect("one is set");
            self.error(
                v.src,
                v.span,
                "`policy` sets both phases; it cannot be combined with `prefill` or `decode`".into(),
                "conflicts with `policy`",
                Some("use `policy = X` for both phases, or `prefill = X` and `decode = Y`".into()),
            );
            return None;
        }
        let prefill_name = single.or(prefill).unwrap_or(("round_robin", false));
        let decode_name = if single.is_some() { None } else { decode };
        // Policies switched from the command line leave the file's parameters of other
        // policies unused rather than in error, so one scenario compares policies.
        let switched = [Some(prefill_name), decode_name].iter().flatten().any(|(_, from_cli)| *from_cli);
        let chosen: Vec<&str> = [Some(prefill_name.0), decode_name.map(|d| d.0)].into_iter().flatten().collect();
        for (policy, keys) in PARAMS {
            if chosen.contains(policy) {
                continue;
            }
            for k in *keys {
                if let Some(v) = s.get(k).filter(|v| !switched || v.src != 0) {
                    self.error(
                        v.src,
                        v.span,
                        format!(
                            "`{k}` is a parameter of the `{policy}` policy, which this router does not use (it uses {})",
                            chosen.join(" and ")
                        ),
                        "not used by this router",
                        Some(format!("remove it, or choose `{policy}`")),
                    );
                }
            }
        }
        let prefill_spec = self.policy_spec(prefill_name.0, &s)?;
        let decode_spec = match decode_name {
            Some((d, _)) => Some(self.policy_spec(d, &s)?),
            None => None,
        };
        Some(RouterSpec { prefill: prefill_spec, decode: decode_spec })
    }

    fn policy_spec(&mut self, name: &str, s: &BTreeMap<&str, &Val>) -> Option<PolicySpec> {
        let num = |cx: &mut Self, k: &str, into: &mut f64| -> Option<()> {
            if let Some(v) = s.get(k) {
                *into = cx.number(v, k)?;
            }
            Some(())
        };
        Some(match name {
            "random" => PolicySpec::Random,
            "least_loaded" => PolicySpec::LeastLoaded,
            "power_of_two" => PolicySpec::PowerOfTwo,
            "telemetry" => {
                let mut t = TelemetryPolicySpec::default();
                num(self, "ewma_alpha", &mut t.ewma_alpha)?;
                num(self, "queue_urgency", &mut t.queue_urgency)?;
                num(self, "kv_locality_boost", &mut t.kv_locality_boost)?;
                num(self, "decode_cost_penalty", &mut t.decode_cost_penalty)?;
                num(self, "min_score_gap", &mut t.min_score_gap)?;
                if let Some(v) = s.get("migration") {
                    t.migration = self.boolean(v, "migration")?;
                }
                if let Some(v) = s.get("migration_interval") {
                    t.migration_interval = self.duration(v, "migration_interval")?;
                }
                if let Some(v) = s.get("window") {
                    t.window = self.duration(v, "window")?;
                }
                if let Some(v) = s.get("budget") {
                    t.budget = self.count_u32(v, "budget")?;
                }
                if let Some(v) = s.get("max_per_call") {
                    t.max_per_call = self.count_u32(v, "max_per_call")?;
                }
                PolicySpec::Telemetry(t)
            }
            "kv_aware" => {
                let mut k = KvAwarePolicySpec::default();
                num(self, "prefill_load_scale", &mut k.prefill_load_scale)?;
                num(self, "temperature", &mut k.temperature)?;
                PolicySpec::KvAware(k)
            }
            "cache_aware" => {
                let mut c = CacheAwarePolicySpec::default();
                num(self, "cache_threshold", &mut c.cache_threshold)?;
                num(self, "balance_abs", &mut c.balance_abs)?;
                num(self, "balance_rel", &mut c.balance_rel)?;
                PolicySpec::CacheAware(c)
            }
            _ => PolicySpec::RoundRobin,
        })
    }

    fn call<'v>(
        &mut self,
        v: &'v Val,
        key: &str,
        allowed: &[(&str, &[&str])],
    ) -> Option<(&'v str, Vec<&'v Val>, BTreeMap<&'v str, &'v Val>)> {
        let ValKind::Call { name, args } = &v.kind else {
            let names: Vec<String> = allowed.iter().map(|(n, _)| format!("{n}(...)")).collect();
            self.error(v.src, v.span, format!("`{key}` expects {}, found {v}", names.join(" or ")), "not a distribution", None);
            return None;
        };
        let Some((_, named_ok)) = allowed.iter().find(|(n, _)| n == name) else {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            let help =
                closest(name, &names).map(|c| format!("did you mean `{c}`?")).unwrap_or_else(|| format!("choices: {}", names.join(", ")));
            self.error(v.src, v.span, format!("`{key}` does not take `{name}(...)`"), "unknown here", Some(help));
            return None;
        };
        let mut pos = Vec::new();
        let mut named = BTreeMap::new();
        for (n, a) in args {
            match n {
                None => pos.push(a),
                Some(n) if named_ok.contains(&n.as_str()) => {
                    named.insert(n.as_str(), a);
                }
                Some(n) => {
                    let help = closest(n, named_ok).map(|c| format!("did you mean `{c}`?")).unwrap_or_else(|| {
                        format!("named arguments of `{name}`: {}", if named_ok.is_empty() { "none".into() } else { named_ok.join(", ") })
                    });
                    self.error(a.src, a.span, format!("`{name}` has no argument `{n}`"), "unknown argument", Some(help));
                    return None;
                }
            }
        }
        Some((name.as_str(), pos, named))
    }

    fn args_exact(&mut self, v: &Val, name: &str, pos: &[&Val], n: usize, usage: &str) -> bool {
        if pos.len() != n {
            self.error(
                v.src,
                v.span,
                format!("`{name}` takes {n} positional argument{}, found {}", if n == 1 { "" } else { "s" }, pos.len()),
                "wrong number of arguments",
                Some(format!("usage: {usage}")),
            );
            return false;
        }
        true
    }

    fn tokens_f64(&mut self, v: &Val, key: &str) -> Option<f64> {
        match v.kind {
            ValKind::Num(x, Dim::TOKENS) => Some(x),
            _ => self.number(v, key),
        }
    }

    /// A path argument: relative to the scenario file when written in it, relative to the
    /// working directory when given on the command line (`--set trace=...`).
    fn path(&mut self, v: &Val, key: &str) -> Option<std::path::PathBuf> {
        let p = self.name(v, key)?;
        let base = self.base_dir(v);
        Some(if std::path::Path::new(&p).is_absolute() { p.into() } else { base.join(p) })
    }

    fn empirical(&mut self, v: &Val, pos: &[&Val]) -> Option<LengthSpec> {
        if pos.len() != 2 {
            self.error(
                v.src,
                v.span,
                "`empirical` takes a file and a column".into(),
                "wrong arguments",
                Some("usage: empirical(\"lengths.csv\", num_prefill_tokens)".into()),
            );
            return None;
        }
        let path = self.path(pos[0], "file")?;
        let column = self.name(pos[1], "column")?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    pos[0].src,
                    pos[0].span,
                    format!("cannot read `{}`: {e}", path.display()),
                    "not readable",
                    Some("paths are relative to the scenario file".into()),
                );
                return None;
            }
        };
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split(',').map(str::trim).collect();
        let Some(col) = header.iter().position(|h| *h == column) else {
            let help = closest(&column, &header)
                .map(|c| format!("did you mean `{c}`?"))
                .unwrap_or_else(|| format!("columns: {}", header.join(", ")));
            self.error(pos[1].src, pos[1].span, format!("`{}` has no column `{column}`", path.display()), "no such column", Some(help));
            return None;
        };
        let mut values = Vec::new();
        for (n, line) in lines.enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let cell = line.split(',').nth(col).map(str::trim).unwrap_or("");
            match cell.parse::<f64>() {
                Ok(x) if x >= 1.0 && x.fract() == 0.0 && x <= f64::from(u32::MAX) => values.push(x as u32),
                _ => {
                    self.error(
                        pos[0].src,
                        pos[0].span,
                        format!("{}:{}: `{cell}` in column `{column}` is not a whole number of at least 1", path.display(), n + 2),
                        "bad value in file",
                        None,
                    );
                    return None;
                }
            }
        }
        if values.is_empty() {
            self.error(pos[0].src, pos[0].span, format!("`{}` has no rows", path.display()), "empty", None);
            return None;
        }
        Some(LengthSpec::Empirical(values.into()))
    }

    fn length(&mut self, v: &Val, key: &str) -> Option<LengthSpec> {
        if let ValKind::Num(..) = v.kind {
            return Some(LengthSpec::Constant(self.count_u32(v, key)?));
        }
        const CLAMP: &[&str] = &["min", "max"];
        let (name, pos, named) = self.call(
            v,
            key,
            &[("uniform", &[]), ("constant", &[]), ("exponential", CLAMP), ("normal", CLAMP), ("lognormal", CLAMP), ("empirical", CLAMP)],
        )?;
        let inner = match name {
            "uniform" => {
                if !self.args_exact(v, name, &pos, 2, "uniform(low, high)") {
                    return None;
                }
                LengthSpec::Uniform { lo: self.count_u32(pos[0], key)?, hi: self.count_u32(pos[1], key)? }
            }
            "constant" => {
                if !self.args_exact(v, name, &pos, 1, "constant(tokens)") {
                    return None;
                }
                LengthSpec::Constant(self.count_u32(pos[0], key)?)
            }
            "exponential" => {
                if !self.args_exact(v, name, &pos, 1, "exponential(mean)") {
                    return None;
                }
                LengthSpec::Exponential { mean: self.tokens_f64(pos[0], key)? }
            }
            "normal" | "lognormal" => {
                if !self.args_exact(v, name, &pos, 2, &format!("{name}(mean, std, min = ..., max = ...)")) {
                    return None;
                }
                let (mean, std) = (self.tokens_f64(pos[0], key)?, self.tokens_f64(pos[1], key)?);
                if name == "normal" { LengthSpec::Normal { mean, std } } else { LengthSpec::LogNormal { mean, std } }
            }
            _ => self.empirical(v, &pos)?,
        };
        if named.is_empty() {
            return Some(inner);
        }
        let min = match named.get("min") {
            Some(x) => self.count_u32(x, "min")?,
            None => 1,
        };
        let max = match named.get("max") {
            Some(x) => self.count_u32(x, "max")?,
            None => u32::MAX,
        };
        Some(LengthSpec::Clamped { inner: Box::new(inner), min, max })
    }

    fn priority(&mut self, v: &Val) -> Option<(u8, u8)> {
        match self.length(v, "priority")? {
            LengthSpec::Constant(n) => u8::try_from(n).ok().map(|n| (n, n)),
            LengthSpec::Uniform { lo, hi } => u8::try_from(lo).ok().zip(u8::try_from(hi).ok()),
            _ => None,
        }
        .or_else(|| {
            self.error(v.src, v.span, "`priority` takes `uniform(low, high)` or a constant between 0 and 255".into(), "bad priority", None);
            None
        })
    }

    fn prefix(&mut self, v: &Val) -> Option<PrefixSpec> {
        let (_, pos, named) = self.call(v, "prefix", &[("shared", &["groups", "tokens"])])?;
        let groups = named.get("groups").copied().or(pos.first().copied());
        let tokens = named.get("tokens").copied().or(pos.get(1).copied());
        match (groups, tokens) {
            (Some(g), Some(t)) => {
                let g = self.count_u32(g, "groups");
                let t = self.count_u32(t, "tokens");
                g.zip(t).map(|(groups, tokens)| PrefixSpec { groups, tokens })
            }
            _ => {
                self.error(
                    v.src,
                    v.span,
                    "`shared` needs `groups` and `tokens`".into(),
                    "incomplete",
                    Some("e.g. `prefix = shared(groups = 4, tokens = 1024)`".into()),
                );
                None
            }
        }
    }

    fn trace(&mut self, v: &Val, pos: &[&Val], named: &BTreeMap<&str, &Val>) -> Option<simctl_engine::trace::TraceSpec> {
        use simctl_engine::trace::{MOONCAKE_BLOCK_TOKENS, TraceFormat, TraceReader, TraceSpec};
        if pos.len() != 1 {
            self.error(
                v.src,
                v.span,
                "`trace` takes one file".into(),
                "wrong arguments",
                Some("usage: trace(\"file.jsonl\", format = mooncake, speedup = 2)".into()),
            );
            return None;
        }
        let path = self.path(pos[0], "file")?;
        let format = match named.get("format") {
            Some(f) => {
                self.keyword(f, "format", &[("mooncake", TraceFormat::Mooncake), ("azure", TraceFormat::Azure), ("csv", TraceFormat::Csv)])?
            }
            None => match TraceFormat::guess(&path) {
                Some(f) => f,
                None => {
                    self.error(
                        v.src,
                        v.span,
                        format!("cannot tell the format of `{}` from its name", path.display()),
                        "format unknown",
                        Some("add `format = mooncake`, `azure` or `csv`".into()),
                    );
                    return None;
                }
            },
        };
        let mut spec = TraceSpec {
            path,
            format,
            speedup: 1.0,
            start_ns: 0,
            end_ns: None,
            limit: None,
            looped: false,
            skip_invalid: false,
            block_tokens: MOONCAKE_BLOCK_TOKENS,
        };
        if let Some(x) = named.get("speedup") {
            spec.speedup = self.number(x, "speedup")?;
        }
        if let Some(x) = named.get("start") {
            spec.start_ns = self.duration(x, "start")?.as_nanos();
        }
        if let Some(x) = named.get("end") {
            spec.end_ns = Some(self.duration(x, "end")?.as_nanos());
        }
        if let Some(x) = named.get("limit") {
            spec.limit = Some(self.count(x, "limit")?);
        }
        if let Some(x) = named.get("loop") {
            spec.looped = self.boolean(x, "loop")?;
        }
        if let Some(x) = named.get("skip_invalid") {
            spec.skip_invalid = self.boolean(x, "skip_invalid")?;
        }
        if let Some(x) = named.get("block_tokens") {
            spec.block_tokens = self.count_u32(x, "block_tokens")?;
        }
        if let Err(e) = TraceReader::open(&spec.path, spec.format, spec.skip_invalid) {
            self.error(
                pos[0].src,
                pos[0].span,
                e.to_string(),
                "trace not usable",
                Some("paths are relative to the scenario file; pass another with `--set`".into()),
            );
            return None;
        }
        Some(spec)
    }

    fn arrivals(&mut self, v: &Val) -> Option<(ArrivalSpec, Option<simctl_engine::trace::TraceSpec>)> {
        let (name, pos, named) = self.call(
            v,
            "arrivals",
            &[
                ("poisson", &["burst_factor", "burst_probability", "burst_window"]),
                ("constant", &[]),
                ("gamma", &["cv"]),
                ("mmpp", &["low", "high", "low_for", "high_for"]),
                ("ramp", &[]),
                ("closed_loop", &["users", "think"]),
                ("trace", &["format", "speedup", "start", "end", "limit", "loop", "skip_invalid", "block_tokens"]),
            ],
        )?;
        let rate = |cx: &mut Self, x: &Val| cx.expect_dim(x, Dim::PER_TIME, "arrival rate");
        let need = |cx: &mut Self, k: &str| -> Option<&Val> {
            let got = named.get(k).copied();
            if got.is_none() {
                cx.error(v.src, v.span, format!("`{name}` needs `{k} = ...`"), "incomplete", None);
            }
            got
        };
        let spec = match name {
            "trace" => return Some((ArrivalSpec::Constant { rate_per_s: 1.0 }, Some(self.trace(v, &pos, &named)?))),
            "gamma" if pos.len() == 2 => ArrivalSpec::Gamma { rate_per_s: rate(self, pos[0])?, cv: self.number(pos[1], "cv")? },
            "poisson" | "constant" | "gamma" => {
                if !self.args_exact(v, name, &pos, 1, &format!("{name}(RATE) with a rate such as `24/s`")) {
                    return None;
                }
                let r = rate(self, pos[0])?;
                match name {
                    "constant" => ArrivalSpec::Constant { rate_per_s: r },
                    "gamma" => {
                        let cv = need(self, "cv")?;
                        ArrivalSpec::Gamma { rate_per_s: r, cv: self.number(cv, "cv")? }
                    }
                    _ => {
                        let mut burst = None;
                        if let Some(f) = named.get("burst_factor") {
                            let mut b = BurstSpec::lab(self.number(f, "burst_factor")?);
                            if let Some(p) = named.get("burst_probability") {
                                b.probability = self.fraction(p, "burst_probability")?;
                            }
                            if let Some(w) = named.get("burst_window") {
                                b.window = self.duration(w, "burst_window")?;
                            }
                            burst = Some(b);
                        }
                        ArrivalSpec::Poisson { rate_per_s: r, burst }
                    }
                }
            }
            "mmpp" => {
                let (lo, hi) = (need(self, "low")?, need(self, "high")?);
                let (lf, hf) = (need(self, "low_for")?, need(self, "high_for")?);
                ArrivalSpec::Mmpp {
                    rates: [rate(self, lo)?, rate(self, hi)?],
                    dwell: [self.duration(lf, "low_for")?, self.duration(hf, "high_for")?],
                }
            }
            "ramp" => {
                let mut points = Vec::new();
                for p in &pos {
                    match &p.kind {
                        ValKind::List(xs) if xs.len() == 2 => points.push((self.duration(&xs[0], "ramp time")?, rate(self, &xs[1])?)),
                        _ => {
                            self.error(
                                p.src,
                                p.span,
                                "each `ramp` point is `[time, rate]`".into(),
                                "not a point",
                                Some("e.g. `ramp([0s, 10/s], [1h, 40/s], [2h, 10/s])`".into()),
                            );
                            return None;
                        }
                    }
                }
                ArrivalSpec::Ramp { points }
            }
            _ => {
                let users = need(self, "users")?;
                let think = match named.get("think") {
                    Some(t) => self.duration(t, "think")?,
                    None => SimDuration::ZERO,
                };
                ArrivalSpec::ClosedLoop { users: self.count_u32(users, "users")?, think }
            }
        };
        Some((spec, None))
    }

    fn slo_block(&mut self, items: &[VItem], what: &str) -> SloSpec {
        let s = self.settings(what, items, &["ttft", "tpot", "e2e", "itl"]);
        let get = |cx: &mut Self, k: &str| s.get(k).and_then(|v| cx.duration(v, k));
        SloSpec { ttft: get(self, "ttft"), tpot: get(self, "tpot"), e2e: get(self, "e2e"), itl: get(self, "itl") }
    }

    fn workload(&mut self, items: &[VItem], span: Span) -> Option<WorkloadSpec> {
        let s = self.settings("workload", items, &["arrivals", "prompt", "output", "priority", "prefix"]);
        for it in items {
            if let VItem::Block { kind, .. } = it
                && kind.name != "class"
            {
                self.error(
                    0,
                    kind.span,
                    format!("unknown block `{}` in the workload", kind.name),
                    "unknown block",
                    Some("the workload holds `class NAME { ... }` blocks".into()),
                );
            }
        }
        let (arrivals, trace) = match s.get("arrivals") {
            Some(v) => self.arrivals(v)?,
            None => {
                self.error(
                    0,
                    span,
                    "the workload has no `arrivals`".into(),
                    "incomplete",
                    Some("add e.g. `arrivals = poisson(24/s)` or `arrivals = trace(\"file.jsonl\")`".into()),
                );
                return None;
            }
        };
        let mut classes = Vec::new();
        for (_, name, items, cspan) in Self::blocks(items, "class") {
            let Some(name) = name else {
                self.error(0, cspan, "a class needs a name".into(), "unnamed", Some("write `class chat { ... }`".into()));
                continue;
            };
            let what = format!("class `{}`", name.name);
            let c = self.settings(&what, items, &["weight", "prompt", "output", "priority", "prefix"]);
            let weight = c.get("weight").map_or(Some(1.0), |v| self.number(v, "weight"))?;
            let (Some(pv), Some(ov)) = (c.get("prompt"), c.get("output")) else {
                self.error(0, cspan, format!("{what} needs `prompt` and `output` lengths"), "incomplete", None);
                continue;
            };
            let prompt = self.length(pv, "prompt")?;
            let output = self.length(ov, "output")?;
            let priority = c.get("priority").map_or(Some((0, 0)), |v| self.priority(v))?;
            let prefix = match c.get("prefix") {
                Some(v) => Some(self.prefix(v)?),
                None => None,
            };
            let slo = Self::blocks(items, "slo").next().map(|(_, _, it, _)| self.slo_block(it, &format!("the SLO of {what}")));
            classes.push(ClassSpec { name: name.name.clone(), weight, prompt, output, priority, prefix, slo });
        }
        if classes.len() > 255 {
            self.error(0, span, "at most 255 request classes".into(), "too many classes", None);
            return None;
        }
        // Lengths are needed unless a trace or classes provide them.
        let optional = trace.is_some() || !classes.is_empty();
        let len = |cx: &mut Self, k: &str| match s.get(k) {
            Some(v) => cx.length(v, k),
            None if optional => Some(LengthSpec::Constant(1)),
            None => {
                cx.error(
                    0,
                    span,
                    format!("the workload has no `{k}` length"),
                    "incomplete",
                    Some(format!("add e.g. `{k} = uniform(100, 1200)`")),
                );
                None
            }
        };
        let prompt = len(self, "prompt");
        let output = len(self, "output");
        let priority = match s.get("priority") {
            None => Some((0, 0)),
            Some(v) => self.priority(v),
        };
        let prefix = match s.get("prefix") {
            None => Some(None),
            Some(v) => self.prefix(v).map(Some),
        };
        Some(WorkloadSpec { arrivals, prompt: prompt?, output: output?, priority: priority?, prefix: prefix?, classes, trace })
    }
}
