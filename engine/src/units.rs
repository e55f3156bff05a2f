//! Counted quantities as types: tokens, KV blocks and bytes (STYLE habit 1).
//!
//! Lengths are bounded where they enter (scenario values, trace lines, submitted requests):
//! a prompt or an output of at most [`MAX_TOKENS`] tokens keeps every sum the engine forms
//! (prompt + output, blocks × block size, tokens × bytes per token) far from overflow, so
//! arithmetic inside the engine never wraps.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

/// Largest prompt, and largest output, the engine accepts: 2^24 = 16,777,216 tokens, above
/// the longest context of any model served today (10 M for Llama 4 Scout) and small
/// enough that prompt + output fits a `u32` many times over.
pub const MAX_TOKENS: u32 = 1 << 24;

macro_rules! counted {
    ($(#[$doc:meta])* $name:ident($inner:ty), $unit:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// None of it.
            pub const ZERO: $name = $name(0);
            /// The count as a plain integer.
            #[inline]
            pub const fn get(self) -> $inner {
                self.0
            }
            /// `self − other`, or zero when `other` is larger.
            #[inline]
            pub fn saturating_sub(self, other: $name) -> $name {
                $name(self.0.saturating_sub(other.0))
            }
            /// `self + other`, or `None` on overflow.
            #[inline]
            pub fn checked_add(self, other: $name) -> Option<$name> {
                self.0.checked_add(other.0).map($name)
            }
        }
        impl Add for $name {
            type Output = $name;
            #[inline]
            fn add(self, o: $name) -> $name {
                $name(self.0 + o.0)
            }
        }
        impl AddAssign for $name {
            #[inline]
            fn add_assign(&mut self, o: $name) {
                self.0 += o.0;
            }
        }
        impl Sub for $name {
            type Output = $name;
            #[inline]
            fn sub(self, o: $name) -> $name {
                $name(self.0 - o.0)
            }
        }
        impl SubAssign for $name {
            #[inline]
            fn sub_assign(&mut self, o: $name) {
                self.0 -= o.0;
            }
        }
        impl From<$name> for u64 {
            #[inline]
            fn from(x: $name) -> u64 {
                x.0 as u64
            }
        }
        impl From<$name> for f64 {
            #[inline]
            fn from(x: $name) -> f64 {
                x.0 as f64
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {}", self.0, $unit)
            }
        }
    };
}

counted!(
    /// A number of tokens (of a prompt, an output, a context).
    Tokens(u32),
    "tokens"
);
counted!(
    /// A number of KV-cache blocks.
    Blocks(u32),
    "blocks"
);
counted!(
    /// A number of bytes (of KV moved over a link, of memory).
    Bytes(u64),
    "bytes"
);

impl Tokens {
    /// Blocks of `block_size` tokens needed to hold this many tokens.
    #[inline]
    pub fn blocks(self, block_size: u32) -> Blocks {
        Blocks(self.0.div_ceil(block_size.max(1)))
    }
    /// As a `u64`, for sums over many requests.
    #[inline]
    pub fn as_u64(self) -> u64 {
        u64::from(self.0)
    }
}

impl Blocks {
    /// Tokens these blocks hold when full.
    #[inline]
    pub fn tokens(self, block_size: u32) -> Tokens {
        Tokens(self.0 * block_size)
    }
    /// As a `u64`.
    #[inline]
    pub fn as_u64(self) -> u64 {
        u64::from(self.0)
    }
}

impl Bytes {
    /// The KV bytes of `tokens` tokens at `per_token` bytes each.
    #[inline]
    pub fn of_kv(tokens: Tokens, per_token: u64) -> Bytes {
        Bytes(tokens.as_u64() * per_token)
    }
}

/// Why a length is out of bounds, for located errors at the input edge.
pub fn check_length(what: &str, tokens: u64) -> Result<Tokens, String> {
    if tokens == 0 {
        Err(format!("{what} must be at least 1 token"))
    } else if tokens > u64::from(MAX_TOKENS) {
        Err(format!("{what} of {tokens} tokens is above the limit of {MAX_TOKENS} tokens (2^24); no model serves contexts that long"))
    } else {
        Ok(Tokens(tokens as u32))
    }
}

/// Exponents of the base dimensions: seconds, tokens, bytes, dollars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dim {
    /// Exponent of seconds.
    pub time: i8,
    /// Exponent of tokens.
    pub tokens: i8,
    /// Exponent of bytes.
    pub bytes: i8,
    /// Exponent of dollars.
    pub money: i8,
}

impl Dim {
    /// A plain number.
    pub const NONE: Dim = Dim { time: 0, tokens: 0, bytes: 0, money: 0 };
    /// A duration.
    pub const TIME: Dim = Dim { time: 1, tokens: 0, bytes: 0, money: 0 };
    /// A rate of events (requests per second).
    pub const PER_TIME: Dim = Dim { time: -1, tokens: 0, bytes: 0, money: 0 };
    /// A token count.
    pub const TOKENS: Dim = Dim { time: 0, tokens: 1, bytes: 0, money: 0 };
    /// Tokens per second.
    pub const TOKEN_RATE: Dim = Dim { time: -1, tokens: 1, bytes: 0, money: 0 };
    /// A size.
    pub const BYTES: Dim = Dim { time: 0, tokens: 0, bytes: 1, money: 0 };
    /// Bytes per second.
    pub const BANDWIDTH: Dim = Dim { time: -1, tokens: 0, bytes: 1, money: 0 };
    /// Dollars per hour (kept per hour, as prices are quoted).
    pub const MONEY_RATE: Dim = Dim { time: -1, tokens: 0, bytes: 0, money: 1 };

    fn combine(self, o: Dim, sign: i8) -> Dim {
        Dim {
            time: self.time + sign * o.time,
            tokens: self.tokens + sign * o.tokens,
            bytes: self.bytes + sign * o.bytes,
            money: self.money + sign * o.money,
        }
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

impl std::ops::Mul for Dim {
    type Output = Dim;
    /// The dimension of a product.
    fn mul(self, o: Dim) -> Dim {
        self.combine(o, 1)
    }
}

impl std::ops::Div for Dim {
    type Output = Dim;
    /// The dimension of a quotient.
    fn div(self, o: Dim) -> Dim {
        self.combine(o, -1)
    }
}

/// A unit of the scenario language: its factor to base units and its dimension. The one
/// unit table: the DSL, sweep axes and reports all read units through it.
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

/// Splits text such as `24/s` into its leading number and the rest (`(24.0, "/s")`);
/// `None` when it does not start with a number.
pub fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e')).unwrap_or(s.len());
    let end = if end > 0 && s[..end].ends_with('e') { end - 1 } else { end };
    let v: f64 = s[..end].trim().parse().ok()?;
    Some((v, s[end..].trim()))
}

/// A number with a unit of the scenario language (`350ms`, `10 GB/s`, `24/s`) in base units
/// (seconds, tokens, bytes, dollars per hour) with its dimension; a bare number is
/// dimensionless. `None` for text that is not such a quantity.
pub fn quantity(s: &str) -> Option<(f64, Dim)> {
    let (v, u) = split_number(s)?;
    if u.is_empty() {
        return Some((v, Dim::NONE));
    }
    let (f, d) = unit(u)?;
    Some((v * f, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_through_the_one_unit_table() {
        let (v, d) = quantity("350ms").unwrap();
        assert!((v - 0.35).abs() < 1e-15 && d == Dim::TIME);
        assert_eq!(quantity("10/s").map(|q| q.1), quantity("600/min").map(|q| q.1));
        assert!((quantity("600/min").unwrap().0 - 10.0).abs() < 1e-12);
        assert_eq!(quantity("50 GB/s"), Some((50e9, Dim::BANDWIDTH)));
        assert_eq!(quantity("3"), Some((3.0, Dim::NONE)));
        assert_eq!(quantity("round_robin"), None);
        assert_eq!(split_number("24/s"), Some((24.0, "/s")));
    }

    #[test]
    fn blocks_round_up_and_bounds_are_checked() {
        assert_eq!(Tokens(33).blocks(16), Blocks(3));
        assert_eq!(Tokens(32).blocks(16), Blocks(2));
        assert_eq!(Blocks(3).tokens(16), Tokens(48));
        assert_eq!(Bytes::of_kv(Tokens(10), 131_072), Bytes(1_310_720));
        assert_eq!(check_length("the prompt", u64::from(MAX_TOKENS)), Ok(Tokens(MAX_TOKENS)));
        assert!(check_length("the prompt", u64::from(u32::MAX)).unwrap_err().contains("above the limit"));
        assert!(check_length("the output", 0).is_err());
        // The largest request the engine admits cannot overflow a u32 sum.
        assert!(MAX_TOKENS.checked_add(MAX_TOKENS).is_some());
    }
}
