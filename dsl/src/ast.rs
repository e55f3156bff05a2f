//! Syntax tree of a scenario file; every node carries its byte span.

/// Byte range in a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The range `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// A name with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The text.
    pub name: String,
    /// Where it is.
    pub span: Span,
}

/// A statement of a file or block.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `param NAME = EXPR`: a knob with a default, overridable from the command line.
    Param {
        /// Its name.
        name: Ident,
        /// Its default.
        value: Expr,
    },
    /// `KEY = EXPR`.
    Setting {
        /// The key.
        key: Ident,
        /// The value.
        value: Expr,
    },
    /// `KIND [NAME] { ITEMS }`.
    Block(Block),
    /// `include "file.scn"`: the file's items, as if written here.
    Include {
        /// The path as written (relative to the including file).
        path: String,
        /// The whole statement.
        span: Span,
    },
}

impl Span {
    fn shift(&mut self, by: usize) {
        self.start += by;
        self.end += by;
    }
}

/// Moves every span of `items` by `by` bytes (included files live at their own offset).
pub fn shift_items(items: &mut [Item], by: usize) {
    for it in items {
        match it {
            Item::Param { name, value } => {
                name.span.shift(by);
                shift_expr(value, by);
            }
            Item::Setting { key, value } => {
                key.span.shift(by);
                shift_expr(value, by);
            }
            Item::Block(b) => {
                b.kind.span.shift(by);
                if let Some(n) = &mut b.name {
                    n.span.shift(by);
                }
                b.span.shift(by);
                shift_items(&mut b.items, by);
            }
            Item::Include { span, .. } => span.shift(by),
        }
    }
}

fn shift_expr(e: &mut Expr, by: usize) {
    e.span.shift(by);
    match &mut e.kind {
        ExprKind::List(xs) => xs.iter_mut().for_each(|x| shift_expr(x, by)),
        ExprKind::Call { name, args } => {
            name.span.shift(by);
            for a in args {
                if let Some(n) = &mut a.name {
                    n.span.shift(by);
                }
                shift_expr(&mut a.value, by);
            }
        }
        ExprKind::Replicate { of, .. } => of.span.shift(by),
        ExprKind::Neg(x) => shift_expr(x, by),
        ExprKind::Binary(_, a, b) => {
            shift_expr(a, by);
            shift_expr(b, by);
        }
        _ => {}
    }
}

/// `KIND [NAME] { ITEMS }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// What it declares (`pool`, `hardware`, ...).
    pub kind: Ident,
    /// Its name, for blocks that have one.
    pub name: Option<Ident>,
    /// Its contents.
    pub items: Vec<Item>,
    /// From the kind to the closing brace.
    pub span: Span,
}

/// An expression with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is.
    pub span: Span,
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

/// Expression forms.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A number with an optional unit, e.g. `350ms`, `10000 tok/s`, `85%`.
    Number {
        /// The literal value.
        value: f64,
        /// The unit as written, if any.
        unit: Option<String>,
    },
    /// `"text"`.
    Str(String),
    /// `true` / `false`.
    Bool(bool),
    /// A name: a parameter, a declared entity, or a keyword value such as `mixed`.
    Ident(String),
    /// `[a, b, c]`.
    List(Vec<Expr>),
    /// `name(arg, key = arg)`.
    Call {
        /// The function.
        name: Ident,
        /// Its arguments.
        args: Vec<Arg>,
    },
    /// `N x NAME`: N copies of NAME.
    Replicate {
        /// How many.
        count: u32,
        /// Of what.
        of: Ident,
    },
    /// `-e`.
    Neg(Box<Expr>),
    /// `a op b`.
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

/// A call argument, positional or named.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// The name, for `key = value` arguments.
    pub name: Option<Ident>,
    /// The value.
    pub value: Expr,
}
