//! Lowering: evaluated items to a validated scenario ([`ValidSpec`]), with located errors.
//!
//! `load` (here) parses, expands includes (`includes`), evaluates parameters and
//! expressions (`expr`), applies `--set` overrides (`overrides`), reads typed values
//! (`accessors`) and lowers each block kind (`blocks::*`), then runs the engine's one
//! validation pass and maps its errors back onto the file.

use std::collections::BTreeMap;

use simctl_engine::spec::*;

use crate::ast::{Expr, ExprKind, Ident, Item, Span};
use crate::diag::{Diagnostic, Diagnostics};
use crate::parser::{self, SyntaxError};
use crate::value::Val;

mod accessors;
pub(crate) mod blocks;
mod expr;
mod includes;
mod overrides;

use overrides::set_path;

/// Parses, evaluates and lowers a scenario. `overrides` are `(name, value)` pairs from
/// `--set`: a parameter name, or a dotted path to a setting (`router.policy`).
pub fn load(file_name: &str, src: &str, overrides: &[(String, String)]) -> Result<ValidSpec, Diagnostics> {
    let mut cx = Cx {
        generated: Default::default(),
        broken_hardware: Default::default(),
        diags: Diagnostics::default(),
        params: BTreeMap::new(),
        spans: BTreeMap::new(),
        files: vec![(0, 0)],
    };
    cx.diags.sources.push((file_name.to_string(), src.to_string()));
    let (items, syntax) = parser::parse_file(src);
    // Too deep to parse: that is the one problem to report.
    let unparsed = syntax.iter().any(parser::is_nesting_error);
    for e in syntax {
        cx.syntax(0, e);
    }
    if unparsed {
        return Err(cx.diags);
    }
    let mut chain = vec![std::fs::canonicalize(file_name).unwrap_or_else(|_| file_name.into())];
    let items = cx.expand_includes(items, 0, &mut chain);
    // Parameters first (in order, each may use earlier ones), then command-line overrides.
    let mut override_vals = Vec::new();
    for (k, v) in overrides {
        let idx = cx.diags.sources.len();
        cx.diags.sources.push((format!("--set {k}"), v.clone()));
        // A string parameter takes a bare value (`--set trace=my_trace.jsonl`): no quotes
        // needed on a shell command line.
        let string_param =
            items.iter().any(|i| matches!(i, Item::Param { name, value } if &name.name == k && matches!(value.kind, ExprKind::Str(_))));
        // So does a profile (`--set hardware.gpu.profile=profiles/tiny.yaml`).
        let path_setting = k.rsplit('.').next() == Some("profile");
        if (string_param || path_setting) && !v.trim_start().starts_with('"') {
            override_vals.push((k.clone(), Expr { kind: ExprKind::Str(v.trim().to_string()), span: Span::new(0, v.len()) }, idx));
            continue;
        }
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
        // A profile given on the command line replaces the file's performance model of that
        // hardware (as a policy switched there leaves the other policy's settings unused).
        if let [hw, name, "profile"] = path.as_slice()
            && (*hw == "hardware" || *hw == "hardwares")
        {
            overrides::clear_perf(&mut tree, name);
        }
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
pub(crate) enum VItem {
    Setting { key: Ident, value: Val },
    Block { kind: Ident, name: Option<Ident>, items: Vec<VItem>, span: Span },
}

pub(crate) struct Cx {
    /// `(global offset, source index)` of every scenario file read (the main file at 0, then
    /// includes): their spans are shifted to be unique, and errors map back.
    pub(crate) files: Vec<(usize, usize)>,
    /// Instance names made by `N x NAME` replication.
    pub(crate) generated: std::collections::BTreeSet<String>,
    /// Hardware blocks that failed to lower (already reported): pools naming them say nothing more.
    pub(crate) broken_hardware: std::collections::BTreeSet<String>,
    pub(crate) diags: Diagnostics,
    pub(crate) params: BTreeMap<String, Val>,
    pub(crate) spans: BTreeMap<String, Span>,
}

pub(crate) fn closest<'a>(word: &str, options: &[&'a str]) -> Option<&'a str> {
    options.iter().map(|o| (strsim::damerau_levenshtein(word, o), *o)).filter(|(d, o)| *d <= 2.max(o.len() / 3)).min().map(|(_, o)| o)
}

impl Cx {
    pub(crate) fn error(&mut self, src: usize, span: Span, message: String, label: &str, help: Option<String>) {
        // Spans of scenario files (source 0 and includes) are global offsets.
        let (src, span) = if src == 0 { self.locate(span) } else { (src, span) };
        self.diags.items.push(Diagnostic { src, span, message, label: label.into(), help });
    }

    pub(crate) fn locate(&self, span: Span) -> (usize, Span) {
        let &(base, src) = self.files.iter().rev().find(|(base, _)| *base <= span.start).unwrap_or(&(0, 0));
        (src, Span::new(span.start - base, span.end - base))
    }

    pub(crate) fn span_for_path(&self, path: &str) -> Span {
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

    pub(crate) fn syntax(&mut self, src: usize, e: SyntaxError) {
        let text = &self.diags.sources[src].1;
        let end = text[e.offset.min(text.len())..].chars().next().map_or(e.offset, |c| e.offset + c.len_utf8());
        let found = text[e.offset.min(text.len())..]
            .split_whitespace()
            .next()
            .map(|w| format!("found `{}`", w.chars().take(20).collect::<String>()))
            .unwrap_or_else(|| "found the end of the input".into());
        self.error(src, Span::new(e.offset, end), format!("syntax error: expected {}", e.expected), &found, None);
    }
}
