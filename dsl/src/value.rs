//! Evaluated values: quantities with physical dimensions, checked when they combine.

use std::fmt;

use crate::ast::Span;

/// Exponents of the base dimensions: seconds, tokens, bytes, dollars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dim {
    pub time: i8,
    pub tokens: i8,
    pub bytes: i8,
    pub money: i8,
}

impl Dim {
    pub const NONE: Dim = Dim { time: 0, tokens: 0, bytes: 0, money: 0 };
    pub const TIME: Dim = Dim { time: 1, tokens: 0, bytes: 0, money: 0 };
    pub const PER_TIME: Dim = Dim { time: -1, tokens: 0, bytes: 0, money: 0 };
    pub const TOKENS: Dim = Dim { time: 0, tokens: 1, bytes: 0, money: 0 };
    pub const TOKEN_RATE: Dim = Dim { time: -1, tokens: 1, bytes: 0, money: 0 };
    pub const BYTES: Dim = Dim { time: 0, tokens: 0, bytes: 1, money: 0 };
    pub const BANDWIDTH: Dim = Dim { time: -1, tokens: 0, bytes: 1, money: 0 };
    pub const MONEY_RATE: Dim = Dim { time: -1, tokens: 0, bytes: 0, money: 1 };

    fn combine(self, o: Dim, sign: i8) -> Dim {
        Dim {
            time: self.time + sign * o.time,
            tokens: self.tokens + sign * o.tokens,
            bytes: self.bytes + sign * o.bytes,
            money: self.money + sign * o.money,
        }
    }
    pub fn mul(self, o: Dim) -> Dim {
        self.combine(o, 1)
    }
    pub fn div(self, o: Dim) -> Dim {
        self.combine(o, -1)
    }

    /// What a value of this dimension is called, with an example.
    pub fn describe(self) -> &'static str {
        match self {
            Dim::NONE => "a plain number such as `0.5`",
            Dim::TIME => "a duration such as `350ms`",
            Dim::PER_TIME => "a request rate such as `24/s`",
            Dim::TOKENS => "a token count such as `4096 tok`",
            Dim::TOKEN_RATE => "a token rate such as `10000 tok/s`",
            Dim::BYTES => "a size such as `80 GB`",
            Dim::BANDWIDTH => "a bandwidth such as `50 GB/s`",
            Dim::MONEY_RATE => "a price such as `7 $/h`",
            _ => "a quantity of an unusual unit",
        }
    }
}

/// A unit's factor to base units and its dimension.
pub fn unit(u: &str) -> Option<(f64, Dim)> {
    const K: f64 = 1e3;
    const KI: f64 = 1024.0;
    let bw = |f: f64| Some((f, Dim::BANDWIDTH));
    let size = |f: f64| Some((f, Dim::BYTES));
    let time = |f: f64| Some((f, Dim::TIME));
    match u {
        "ns" => time(1e-9),
        "us" => time(1e-6),
        "ms" => time(1e-3),
        "s" => time(1.0),
        "min" => time(60.0),
        "h" => time(3600.0),
        "tok" => Some((1.0, Dim::TOKENS)),
        "tok/s" => Some((1.0, Dim::TOKEN_RATE)),
        "/s" => Some((1.0, Dim::PER_TIME)),
        "/min" => Some((1.0 / 60.0, Dim::PER_TIME)),
        "/h" => Some((1.0 / 3600.0, Dim::PER_TIME)),
        // Prices are kept in dollars per hour (exactly as written; nobody quotes $/s).
        "$/h" => Some((1.0, Dim::MONEY_RATE)),
        "B" => size(1.0),
        "KB" => size(K),
        "MB" => size(K * K),
        "GB" => size(K * K * K),
        "TB" => size(K * K * K * K),
        "KiB" => size(KI),
        "MiB" => size(KI * KI),
        "GiB" => size(KI * KI * KI),
        "TiB" => size(KI * KI * KI * KI),
        "B/s" => bw(1.0),
        "KB/s" => bw(K),
        "MB/s" => bw(K * K),
        "GB/s" => bw(K * K * K),
        "TB/s" => bw(K * K * K * K),
        "MiB/s" => bw(KI * KI),
        "GiB/s" => bw(KI * KI * KI),
        "Mbit/s" => bw(K * K / 8.0),
        "Gbit/s" => bw(K * K * K / 8.0),
        "%" => Some((0.01, Dim::NONE)),
        _ => None,
    }
}

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
