//! Diagnostics: file, line, column, a caret under the span, a label and a help line.

use std::fmt;

use ariadne::{Config, Label, Report, ReportKind, Source};

use crate::ast::Span;

/// One problem in a scenario or a command-line override.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Index of the source it points into.
    pub src: usize,
    /// The offending bytes.
    pub span: Span,
    /// What is wrong.
    pub message: String,
    /// Short text under the caret.
    pub label: String,
    /// What to do about it.
    pub help: Option<String>,
}

/// Every problem found, with the sources needed to show them.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    /// `(name, text)` of each source: the file first, then one per `--set`.
    pub sources: Vec<(String, String)>,
    /// The problems, in source order.
    pub items: Vec<Diagnostic>,
}

/// The largest char boundary of `text` at or before byte `b`.
fn floor_char_boundary(text: &str, b: usize) -> usize {
    let mut b = b.min(text.len());
    while !text.is_char_boundary(b) {
        b -= 1;
    }
    b
}

impl Diagnostics {
    /// Line and column (1-based) of a diagnostic's start.
    pub fn line_col(&self, d: &Diagnostic) -> (usize, usize) {
        let text = &self.sources[d.src].1;
        let before = &text[..floor_char_boundary(text, d.span.start)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// Renders every diagnostic; `color` for terminals, plain otherwise.
    pub fn render(&self, color: bool) -> String {
        let mut out = Vec::new();
        for d in &self.items {
            let (name, text) = &self.sources[d.src];
            let (line, col) = self.line_col(d);
            let len = text.len();
            // ariadne works in characters; scenario files may hold UTF-8 in comments and strings.
            let to_chars = |b: usize| text[..floor_char_boundary(text, b.min(len))].chars().count();
            let (s, e) = (to_chars(d.span.start), to_chars(d.span.end.max(d.span.start + 1)).max(to_chars(d.span.start) + 1));
            let mut r = Report::build(ReportKind::Error, (name.as_str(), s..e))
                .with_config(Config::default().with_color(color).with_compact(false))
                .with_message(format!("{} ({name}:{line}:{col})", d.message))
                .with_label(Label::new((name.as_str(), s..e)).with_message(&d.label));
            if let Some(h) = &d.help {
                r = r.with_help(h);
            }
            let _ = r.finish().write((name.as_str(), Source::from(text.as_str())), &mut out);
        }
        let n = self.items.len();
        out.extend_from_slice(format!("{n} problem{} found\n", if n == 1 { "" } else { "s" }).as_bytes());
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostics {}
