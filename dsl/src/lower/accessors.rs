//! Typed accessors: a value as a duration, a count, a name, a call..., with located errors.

use std::collections::BTreeMap;

use simctl_engine::time::SimDuration;

use crate::ast::{Ident, Span};
use crate::value::{Dim, Val, ValKind};

use super::{Cx, VItem, closest};

/// Whole numbers are exact in a 64-bit float up to 2^53.
const MAX_EXACT_COUNT: f64 = 9_007_199_254_740_992.0;

/// Longest duration a scenario may give: 10^10 s (317 years), well inside the 584 years of
/// nanoseconds a 64-bit simulated clock holds.
const MAX_DURATION_S: f64 = 1e10;

impl Cx {
    pub(crate) fn expect_dim(&mut self, v: &Val, dim: Dim, key: &str) -> Option<f64> {
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

    pub(crate) fn duration(&mut self, v: &Val, key: &str) -> Option<SimDuration> {
        let s = self.expect_dim(v, Dim::TIME, key)?;
        if s < 0.0 {
            self.error(v.src, v.span, format!("`{key}` must not be negative"), "negative", None);
            return None;
        }
        if s > MAX_DURATION_S {
            self.error(
                v.src,
                v.span,
                format!("`{key}` of {s} s is longer than simulated time reaches (about 317 years)"),
                "too long",
                None,
            );
            return None;
        }
        Some(SimDuration::from_secs_f64(s))
    }

    pub(crate) fn number(&mut self, v: &Val, key: &str) -> Option<f64> {
        self.expect_dim(v, Dim::NONE, key)
    }

    pub(crate) fn fraction(&mut self, v: &Val, key: &str) -> Option<f64> {
        let x = self.number(v, key)?;
        if !(0.0..=1.0).contains(&x) {
            self.error(v.src, v.span, format!("`{key}` must be between 0 and 1 (or 0% and 100%)"), "out of range", None);
            return None;
        }
        Some(x)
    }

    pub(crate) fn count(&mut self, v: &Val, key: &str) -> Option<u64> {
        let x = match v.kind {
            ValKind::Num(x, Dim::TOKENS) => x,
            _ => self.number(v, key)?,
        };
        if x < 0.0 || x.fract() != 0.0 {
            self.error(v.src, v.span, format!("`{key}` must be a whole number, found `{x}`"), "not a whole number", None);
            return None;
        }
        // Numbers are 64-bit floats: above 2^53 whole numbers are no longer exact.
        if x > MAX_EXACT_COUNT {
            self.error(
                v.src,
                v.span,
                format!("`{key}` of {x} is larger than 2^53, beyond which whole numbers are not exact"),
                "too large",
                Some("give at most 9007199254740992 (a larger seed can be given with `--seed`)".into()),
            );
            return None;
        }
        Some(x as u64)
    }

    pub(crate) fn count_u32(&mut self, v: &Val, key: &str) -> Option<u32> {
        let n = self.count(v, key)?;
        u32::try_from(n).ok().or_else(|| {
            self.error(v.src, v.span, format!("`{key}` is too large"), "at most 4294967295", None);
            None
        })
    }

    /// A length in tokens: a whole number up to the engine's bound (validation rejects 0
    /// where a length needs at least a token; priorities reuse this and allow it).
    pub(crate) fn token_count(&mut self, v: &Val, key: &str) -> Option<u32> {
        let n = self.count(v, key)?;
        if n > u64::from(simctl_engine::units::MAX_TOKENS) {
            let m = simctl_engine::units::check_length(&format!("`{key}`"), n).expect_err("above the bound");
            self.error(v.src, v.span, m, "too long", Some("lengths are whole numbers of tokens from 1 to 16777216".into()));
            return None;
        }
        Some(n as u32)
    }

    pub(crate) fn boolean(&mut self, v: &Val, key: &str) -> Option<bool> {
        match v.kind {
            ValKind::Bool(b) => Some(b),
            _ => {
                self.error(v.src, v.span, format!("`{key}` expects `true` or `false`, found {v}"), "not a boolean", None);
                None
            }
        }
    }

    pub(crate) fn name(&mut self, v: &Val, key: &str) -> Option<String> {
        match &v.kind {
            ValKind::Ident(s) | ValKind::Str(s) => Some(s.clone()),
            _ => {
                self.error(v.src, v.span, format!("`{key}` expects a name, found {v}"), "not a name", None);
                None
            }
        }
    }

    pub(crate) fn keyword<T: Copy>(&mut self, v: &Val, key: &str, options: &[(&str, T)]) -> Option<T> {
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
    pub(crate) fn settings<'t>(&mut self, what: &str, items: &'t [VItem], allowed: &[&str]) -> BTreeMap<&'t str, &'t Val> {
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

    pub(crate) fn blocks<'t>(items: &'t [VItem], kind: &str) -> impl Iterator<Item = (&'t Ident, Option<&'t Ident>, &'t [VItem], Span)> {
        items.iter().filter_map(move |it| match it {
            VItem::Block { kind: k, name, items, span } if k.name == kind => Some((k, name.as_ref(), items.as_slice(), *span)),
            _ => None,
        })
    }

    pub(crate) fn call<'v>(
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

    pub(crate) fn args_exact(&mut self, v: &Val, name: &str, pos: &[&Val], n: usize, usage: &str) -> bool {
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

    pub(crate) fn tokens_f64(&mut self, v: &Val, key: &str) -> Option<f64> {
        match v.kind {
            ValKind::Num(x, Dim::TOKENS) => Some(x),
            _ => self.number(v, key),
        }
    }
}
