//! `simctl compare A B`: two runs or two sweeps side by side, with CI-friendly thresholds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use simctl_reports::sweep::{HEADLINE, fmt_metric};
use simctl_reports::{Cell, flatten_summary};

use crate::cmd::report::{Loaded, load};

/// Exit status when a `--fail-if` condition holds.
pub const EXIT_REGRESSION: u8 = 3;

/// Compare two runs or two sweeps, metric by metric, with the relative difference.
///
/// A and B are folders written by `simctl run --out` or `simctl sweep --out` (or a run's
/// summary.json). Sweeps are compared point by point, matching points by their axis values.
/// `--fail-if METRIC>+10%` exits with status 3 when B is more than 10% above A for that
/// metric (at any point of a sweep); `<-5%` for a drop; without `%` the threshold is an
/// absolute difference (`goodput_rps<-0.5`). Metric names are the summary's dotted keys
/// (`ttft_ms.p95`, `tpot_ms.p99`, `goodput_tok_per_usd`, `pools.decode.queue_depth_mean`).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  simctl compare out/baseline out/candidate\n  simctl compare sim/ live/ --metric ttft_ms.p50 --metric tpot_ms.p50\n  simctl compare base/ new/ --fail-if 'ttft_ms.p95>+10%' --fail-if 'goodput_rps<-5%'\n\nExit status: 0 all conditions pass, 3 a --fail-if condition holds, 2 bad input, 1 other errors."
)]
pub struct CompareArgs {
    /// Baseline folder.
    a: PathBuf,
    /// Candidate folder.
    b: PathBuf,
    /// Metrics to show (default: the headline ones); repeat.
    #[arg(long = "metric", value_name = "NAME")]
    metrics: Vec<String>,
    /// Show every numeric metric.
    #[arg(long, conflicts_with = "metrics")]
    all: bool,
    /// Fail (exit 3) when B differs from A past a threshold: METRIC>+10%, METRIC<-5%, METRIC>+20.
    #[arg(long = "fail-if", value_name = "COND")]
    fail_if: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Cond {
    metric: String,
    above: bool,
    threshold: f64,
    relative: bool,
    text: String,
}

fn parse_cond(s: &str) -> Result<Cond> {
    let Some(pos) = s.find(['>', '<']) else {
        bail!("--fail-if `{s}`: expected METRIC>+10% or METRIC<-5% (or an absolute threshold such as METRIC>+20)")
    };
    let metric = s[..pos].trim().to_string();
    let above = &s[pos..pos + 1] == ">";
    let mut rest = s[pos + 1..].trim();
    let relative = rest.ends_with('%');
    if relative {
        rest = rest[..rest.len() - 1].trim();
    }
    let v: f64 = rest.parse().map_err(|_| anyhow::anyhow!("--fail-if `{s}`: `{rest}` is not a number"))?;
    if metric.is_empty() {
        bail!("--fail-if `{s}`: no metric before the comparison");
    }
    Ok(Cond { metric, above, threshold: if relative { v / 100.0 } else { v }, relative, text: s.to_string() })
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else if a == 0.0 {
        f64::INFINITY.copysign(b)
    } else {
        (b - a) / a.abs()
    }
}

impl Cond {
    fn fails(&self, a: f64, b: f64) -> bool {
        let d = if self.relative { rel(a, b) } else { b - a };
        if self.above { d > self.threshold } else { d < self.threshold }
    }
}

/// Numeric metrics by name, in order.
type Metrics = Vec<(String, f64)>;

/// Compared units: the whole run, or each sweep point keyed by its axis values.
fn units(l: &Loaded) -> Vec<(String, Metrics)> {
    match l {
        Loaded::FindMax(v) => v["results"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        let key = crate::cmd::report::find_max_group(r);
                        let m = ["max_value_number", "rate_per_s", "per_gpu", "slo_attainment_at_max", "goodput_rps_at_max"]
                            .iter()
                            .filter_map(|k| Some((k.to_string(), r[*k].as_f64()?)))
                            .collect();
                        (key, m)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Loaded::Run(s) => {
            let m = flatten_summary(s).into_iter().filter_map(|(k, c)| if let Cell::Num(v) = c { Some((k, v)) } else { None }).collect();
            vec![(String::new(), m)]
        }
        Loaded::Sweep(r) => {
            let numeric = r.numeric_columns();
            r.point_stats()
                .into_iter()
                .map(|p| {
                    let key = r.manifest.grid.iter().zip(&p.values).map(|(a, v)| format!("{}={v}", a.name)).collect::<Vec<_>>().join(" ");
                    (key, numeric.iter().zip(&p.metrics).map(|(&c, m)| (r.header[c].clone(), m.0)).collect())
                })
                .collect()
        }
    }
}

pub fn run(a: CompareArgs) -> Result<ExitCode> {
    let conds: Vec<Cond> = a.fail_if.iter().map(|c| parse_cond(c)).collect::<Result<_>>()?;
    let (la, lb) = (load(&a.a)?, load(&a.b)?);
    if std::mem::discriminant(&la) != std::mem::discriminant(&lb) {
        bail!("compare two runs, two sweeps or two capacity searches, not one of each");
    }
    let (ua, ub) = (units(&la), units(&lb));
    let known: Vec<&str> = ua.first().map(|u| u.1.iter().map(|(k, _)| k.as_str()).collect()).unwrap_or_default();
    for c in &conds {
        if !known.contains(&c.metric.as_str()) {
            let hint = known.iter().filter(|k| k.contains(c.metric.split('.').next().unwrap_or(""))).take(6).cloned().collect::<Vec<_>>();
            eprintln!(
                "error: --fail-if `{}`: no numeric metric `{}`{}",
                c.text,
                c.metric,
                if hint.is_empty() { String::new() } else { format!("; close: {}", hint.join(", ")) }
            );
            return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
        }
    }
    let shown: Vec<String> = if a.all {
        known.iter().map(|s| s.to_string()).collect()
    } else if !a.metrics.is_empty() {
        for m in &a.metrics {
            if !known.contains(&m.as_str()) {
                eprintln!("error: no numeric metric `{m}` (try --all to list them)");
                return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
            }
        }
        a.metrics.clone()
    } else {
        let mut v: Vec<String> = if matches!(la, Loaded::FindMax(_)) {
            known.iter().map(|s| s.to_string()).collect()
        } else {
            HEADLINE.iter().map(|(c, _)| c.to_string()).filter(|c| known.contains(&c.as_str())).collect()
        };
        for c in &conds {
            if !v.contains(&c.metric) {
                v.push(c.metric.clone());
            }
        }
        v
    };

    let mut failures = Vec::new();
    let mut matched = 0;
    let w = shown.iter().map(|s| s.len()).max().unwrap_or(10).max(10);
    println!("A = {}\nB = {}\n", a.a.display(), a.b.display());
    for (key, ma) in &ua {
        let Some((_, mb)) = ub.iter().find(|(k, _)| k == key) else {
            eprintln!("note: point `{key}` is only in A");
            continue;
        };
        matched += 1;
        if !key.is_empty() {
            println!("[{key}]");
        }
        println!("{:<w$}  {:>14} {:>14} {:>14} {:>9}", "metric", "A", "B", "B - A", "change");
        let get = |m: &Metrics, k: &str| m.iter().find(|(n, _)| n == k).map(|p| p.1);
        for name in &shown {
            let (Some(x), Some(y)) = (get(ma, name), get(mb, name)) else { continue };
            let r = rel(x, y);
            let flag = if conds.iter().any(|c| &c.metric == name && c.fails(x, y)) { "  <- FAIL" } else { "" };
            println!("{name:<w$}  {:>14} {:>14} {:>14} {:>8.1}%{flag}", fmt_metric(x), fmt_metric(y), fmt_metric(y - x), r * 100.0);
        }
        for c in &conds {
            if let (Some(x), Some(y)) = (get(ma, &c.metric), get(mb, &c.metric))
                && c.fails(x, y)
            {
                let at = if key.is_empty() { String::new() } else { format!(" at [{key}]") };
                failures.push(format!("{}{at}: {} -> {} ({:+.1}%)", c.text, fmt_metric(x), fmt_metric(y), rel(x, y) * 100.0));
            }
        }
        println!();
    }
    for (key, _) in &ub {
        if !ua.iter().any(|(k, _)| k == key) {
            eprintln!("note: point `{key}` is only in B");
        }
    }
    if matched == 0 {
        bail!("the two sweeps share no point (compare sweeps over the same grid)");
    }
    if failures.is_empty() {
        if !conds.is_empty() {
            println!("ok: no --fail-if condition holds");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            println!("FAIL {f}");
        }
        Ok(ExitCode::from(EXIT_REGRESSION))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_and_apply() {
        let c = parse_cond("ttft_ms.p95>+10%").unwrap();
        assert_eq!((c.metric.as_str(), c.above, c.relative), ("ttft_ms.p95", true, true));
        assert!((c.threshold - 0.1).abs() < 1e-12);
        assert!(c.fails(100.0, 111.0) && !c.fails(100.0, 109.0) && !c.fails(100.0, 50.0));
        let d = parse_cond("goodput_rps<-0.5").unwrap();
        assert!(!d.relative && d.fails(10.0, 9.4) && !d.fails(10.0, 9.6));
        assert!(parse_cond("ttft_ms.p95=10%").is_err());
        assert!(parse_cond(">10%").is_err());
        assert!(parse_cond("x>ten%").is_err());
    }
}
