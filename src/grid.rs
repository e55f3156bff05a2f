//! Sweep grids: `--grid NAME=SPEC` axes and their cartesian product.
//!
//! SPEC is `a..b` (7 evenly spaced points, both ends included), `a..b:step`, or a list
//! `x,y,z`. Numbers may carry a unit (`0.5/s..2/s`, `0ms,10ms,1s`); list items may be any
//! value the scenario language accepts (`round_robin,telemetry`). Each point becomes `--set`
//! overrides, parsed by the scenario language itself.

use anyhow::Result;

use crate::bad;
use simctl_reports::figures::numeric_value;

/// Points of a range without a step.
pub const DEFAULT_RANGE_POINTS: usize = 7;

pub use simctl_reports::sweep::Axis;

fn number(s: &str, whole: &str) -> Result<(f64, String)> {
    match numeric_value(s.trim()) {
        Some((v, u)) if v.is_finite() => Ok((v, u)),
        _ => bad!("`--grid {whole}`: `{s}` is not a number (with an optional unit, like `0.5` or `24/s`)"),
    }
}

fn fmt(v: f64) -> String {
    // Trim float noise from stepping (0.30000000000000004 -> 0.3).
    let r = (v * 1e9).round() / 1e9;
    format!("{r}")
}

/// Splits a list at commas outside brackets and quotes, so whole values such as fleets
/// (`[dc_big, 3 x dc_mid],[4 x dc_mid]`) stay in one piece.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut quoted, mut start) = (Vec::new(), 0i32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' | '(' | '{' if !quoted => depth += 1,
            ']' | ')' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Parses `NAME=SPEC`.
pub fn parse_axis(arg: &str) -> Result<Axis> {
    let Some((name, spec)) = arg.split_once('=') else {
        bad!(
            "`--grid {arg}`: expected NAME=SPEC, e.g. `arrival_rate=0.5..2.0`, `arrival_rate=10/s..40/s:10/s` or `router.policy=round_robin,telemetry`"
        );
    };
    let (name, spec) = (name.trim(), spec.trim());
    if name.is_empty() || spec.is_empty() {
        bad!("`--grid {arg}`: both NAME and SPEC are needed");
    }
    let values = if let Some((a, rest)) = spec.split_once("..") {
        let (b, step) = match rest.split_once(':') {
            Some((b, s)) => (b, Some(s)),
            None => (rest, None),
        };
        let (lo, ua) = number(a, arg)?;
        let (hi, ub) = number(b, arg)?;
        if ua != ub {
            bad!("`--grid {arg}`: both ends need the same unit (`{ua}` vs `{ub}`)");
        }
        if hi < lo {
            bad!("`--grid {arg}`: the range runs backwards ({lo} > {hi})");
        }
        let points: Vec<f64> = match step {
            None => (0..DEFAULT_RANGE_POINTS).map(|k| lo + (hi - lo) * k as f64 / (DEFAULT_RANGE_POINTS - 1) as f64).collect(),
            Some(st) => {
                let (d, us) = number(st, arg)?;
                if !us.is_empty() && us != ua {
                    bad!("`--grid {arg}`: the step's unit `{us}` differs from the range's `{ua}`");
                }
                if d <= 0.0 {
                    bad!("`--grid {arg}`: the step must be positive");
                }
                let n = ((hi - lo) / d + 1e-9).floor() as usize + 1;
                if n > 100_000 {
                    bad!("`--grid {arg}`: {n} points is more than a sweep should have; use a larger step");
                }
                (0..n).map(|k| lo + d * k as f64).collect()
            }
        };
        points.into_iter().map(|v| format!("{}{ua}", fmt(v))).collect()
    } else {
        split_top_level(spec).into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>()
    };
    if values.is_empty() {
        bad!("`--grid {arg}`: no values");
    }
    Ok(Axis { name: name.to_string(), values })
}

/// The cartesian product of the axes, first axis slowest, as `(name, value)` overrides.
pub fn points(axes: &[Axis]) -> Vec<Vec<(String, String)>> {
    let mut out = vec![Vec::new()];
    for axis in axes {
        let mut next = Vec::with_capacity(out.len() * axis.values.len());
        for p in &out {
            for v in &axis.values {
                let mut q = p.clone();
                q.push((axis.name.clone(), v.clone()));
                next.push(q);
            }
        }
        out = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_steps_lists_and_units() {
        assert_eq!(parse_axis("arrival_rate=0.5..2.0").unwrap().values, ["0.5", "0.75", "1", "1.25", "1.5", "1.75", "2"]);
        assert_eq!(parse_axis("arrival_rate=10/s..40/s:10/s").unwrap().values, ["10/s", "20/s", "30/s", "40/s"]);
        assert_eq!(parse_axis("x=0.1..0.3:0.1").unwrap().values, ["0.1", "0.2", "0.3"]);
        assert_eq!(parse_axis("staleness=0ms,10ms,100ms,1s").unwrap().values, ["0ms", "10ms", "100ms", "1s"]);
        assert_eq!(parse_axis("router.policy=round_robin, telemetry").unwrap().values, ["round_robin", "telemetry"]);
        assert_eq!(
            parse_axis("pool.decode.instances=[dc_big, 3 x dc_mid],[4 x dc_mid]").unwrap().values,
            ["[dc_big, 3 x dc_mid]", "[4 x dc_mid]"]
        );
        assert!(parse_axis("x=1/s..2ms").is_err());
        assert!(parse_axis("x=2..1").is_err());
        assert!(parse_axis("x").is_err());
        assert!(parse_axis("x=1..2:0").is_err());
    }

    #[test]
    fn product_is_first_axis_slowest() {
        let a = parse_axis("a=1,2").unwrap();
        let b = parse_axis("b=x,y,z").unwrap();
        let p = points(&[a, b]);
        assert_eq!(p.len(), 6);
        assert_eq!(p[1], vec![("a".to_string(), "1".to_string()), ("b".to_string(), "y".to_string())]);
        assert_eq!(p[3][0].1, "2");
    }
}
