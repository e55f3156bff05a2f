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

#[cfg(test)]
mod tests {
    use super::*;

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
