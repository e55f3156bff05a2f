//! Evaluated values: quantities with physical dimensions, checked when they combine.

use std::fmt;

use crate::ast::Span;

pub use simctl_engine::units::{Dim, unit};

/// An evaluated value and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Val {
    pub kind: ValKind,
    pub span: Span,
    /// Index of the source (0 is the scenario file, then each `--set`).
    pub src: usize,
}

/// Evaluated value forms.
#[derive(Clone, Debug, PartialEq)]
pub enum ValKind {
    /// A number in base units with its dimension.
    Num(f64, Dim),
    Str(String),
    Bool(bool),
    Ident(String),
    List(Vec<Val>),
    Call {
        name: String,
        args: Vec<(Option<String>, Val)>,
    },
    Replicate(u32, String),
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ValKind::Num(v, d) if *d == Dim::NONE => write!(f, "the number `{v}`"),
            ValKind::Num(_, d) => write!(f, "{}", d.describe().split(" such as").next().unwrap_or("a quantity")),
            ValKind::Str(s) => write!(f, "the string \"{s}\""),
            ValKind::Bool(b) => write!(f, "`{b}`"),
            ValKind::Ident(s) => write!(f, "the name `{s}`"),
            ValKind::List(_) => write!(f, "a list"),
            ValKind::Call { name, .. } => write!(f, "a call of `{name}(...)`"),
            ValKind::Replicate(n, s) => write!(f, "`{n} x {s}`"),
        }
    }
}
