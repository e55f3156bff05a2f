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
/// A metric with no data shows as `-`; with --fail-if, B lacking data or points that A has,
/// or B being incomplete, fails the gate too (unless --allow-missing).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  simctl compare out/baseline out/candidate\n  simctl compare sim/ live/ --metric ttft_ms.p50 --metric tpot_ms.p50\n  simctl compare base/ new/ \\\n      --fail-if 'ttft_ms.p95>+10%' --fail-if 'goodput_rps<-5%'\n\nExit status: 0 all conditions pass, 3 a --fail-if condition holds (or B lacks\ndata that A has), 2 bad input, 1 other errors."
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
    /// A metric B has no data for, a point B lacks, or an incomplete B fails too.
    #[arg(long = "fail-if", value_name = "COND")]
    fail_if: Vec<String>,
    /// With --fail-if: compare what is there when B lacks data, points or runs, instead of
    /// failing.
    #[arg(long)]
    allow_missing: bool,
    /// Print one JSON document on stdout instead of the tables.
    #[arg(long)]
    json: bool,
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
        crate::bad!("--fail-if `{s}`: expected METRIC>+10% or METRIC<-5% (or an absolute threshold such as METRIC>+20)")
    };
    let metric = s[..pos].trim().to_string();
    let above = &s[pos..pos + 1] == ">";
    let mut rest = s[pos + 1..].trim();
    let relative = rest.ends_with('%');
    if relative {
        rest = rest[..rest.len() - 1].trim();
    }
    let Ok(v) = rest.parse::<f64>() else { crate::bad!("--fail-if `{s}`: `{rest}` is not a number") };
    if metric.is_empty() {
        crate::bad!("--fail-if `{s}`: no metric before the comparison");
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

/// Metrics by name, in order; `None` where a metric has no data (a null).
type Metrics = Vec<(String, Option<f64>)>;

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

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
                            .map(|k| (k.to_string(), r[*k].as_f64()))
                            .collect();
                        (key, m)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Loaded::Run(s) => {
            let m = flatten_summary(s)
                .into_iter()
                .filter_map(|(k, c)| if let Cell::Num(v) = c { Some((k, finite(v))) } else { None })
                .collect();
            vec![(String::new(), m)]
        }
        Loaded::Sweep(r) => {
            let numeric = r.numeric_columns();
            r.point_stats()
                .into_iter()
                .map(|p| {
                    let key = r.manifest.grid.iter().zip(&p.values).map(|(a, v)| format!("{}={v}", a.name)).collect::<Vec<_>>().join(" ");
                    (key, numeric.iter().zip(&p.metrics).map(|(&c, m)| (r.header[c].clone(), finite(m.0))).collect())
                })
                .collect()
        }
    }
}

/// Why a folder is incomplete, if it is: a run that stopped early, a sweep missing runs.
fn incomplete(l: &Loaded) -> Option<String> {
    match l {
        Loaded::Run(s) if !s.complete => {
            Some(format!("the run is incomplete ({})", s.incomplete_reason.as_deref().unwrap_or("stopped early")))
        }
        Loaded::Sweep(r) => {
            let missing = r.missing().len();
            (missing > 0).then(|| format!("the sweep is incomplete: {} of {} runs", r.manifest.runs - missing, r.manifest.runs))
        }
        _ => None,
    }
}

fn num_text(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), fmt_metric)
}

pub fn run(a: CompareArgs) -> Result<ExitCode> {
    let conds: Vec<Cond> = a.fail_if.iter().map(|c| parse_cond(c)).collect::<Result<_>>()?;
    let (la, lb) = (load(&a.a)?, load(&a.b)?);
    if std::mem::discriminant(&la) != std::mem::discriminant(&lb) {
        bail!("compare two runs, two sweeps or two capacity searches, not one of each");
    }
    let (ua, ub) = (units(&la), units(&lb));
    // Metric names of either side (a metric absent from B is missing data, not a typo).
    let mut known: Vec<&str> = Vec::new();
    for (_, m) in ua.iter().take(1).chain(ub.iter().take(1)) {
        for (k, _) in m {
            if !known.contains(&k.as_str()) {
                known.push(k);
            }
        }
    }
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

    // Failures of the gate: thresholds crossed, and (unless --allow-missing) data or points
    // that A has and B lacks, and an incomplete B: a broken candidate must not pass.
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let gate = !conds.is_empty() && !a.allow_missing;
    for (side, l) in [("A", &la), ("B", &lb)] {
        if let Some(why) = incomplete(l) {
            if side == "B" && gate {
                failures.push(format!("B: {why} (pass --allow-missing to compare what is there)"));
            } else {
                notes.push(format!("{side}: {why}"));
            }
        }
    }
    let get = |m: &Metrics, k: &str| m.iter().find(|(n, _)| n == k).and_then(|p| p.1);
    let mut points = Vec::new();
    let mut matched = 0;
    for (key, ma) in &ua {
        let at = if key.is_empty() { String::new() } else { format!(" at [{key}]") };
        let Some((_, mb)) = ub.iter().find(|(k, _)| k == key) else {
            if gate {
                failures.push(format!("point [{key}] is in A but not in B"));
            } else {
                notes.push(format!("point `{key}` is only in A"));
            }
            continue;
        };
        matched += 1;
        let rows: Vec<serde_json::Value> = shown
            .iter()
            .map(|name| {
                let (x, y) = (get(ma, name), get(mb, name));
                let change = x.zip(y).map(|(x, y)| rel(x, y));
                let fail = conds.iter().any(|c| &c.metric == name && x.zip(y).is_some_and(|(x, y)| c.fails(x, y)));
                serde_json::json!({ "metric": name, "a": x, "b": y, "diff": x.zip(y).map(|(x, y)| y - x), "change": change.filter(|c| c.is_finite()), "fail": fail })
            })
            .collect();
        for c in &conds {
            match (get(ma, &c.metric), get(mb, &c.metric)) {
                (Some(x), Some(y)) if c.fails(x, y) => {
                    failures.push(format!("{}{at}: {} -> {} ({:+.1}%)", c.text, fmt_metric(x), fmt_metric(y), rel(x, y) * 100.0))
                }
                (Some(x), None) if gate => failures.push(format!("{}{at}: A has {} but B has no data", c.text, fmt_metric(x))),
                _ => {}
            }
        }
        points.push(serde_json::json!({ "point": key, "metrics": rows }));
    }
    for (key, _) in &ub {
        if !ua.iter().any(|(k, _)| k == key) {
            notes.push(format!("point `{key}` is only in B"));
        }
    }
    if matched == 0 {
        bail!("the two sweeps share no point (compare sweeps over the same grid)");
    }
    let ok = failures.is_empty();
    if a.json {
        let doc = serde_json::json!({
            "a": a.a.display().to_string(),
            "b": a.b.display().to_string(),
            "points": points,
            "notes": notes,
            "failures": failures,
            "ok": ok,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let w = shown.iter().map(|s| s.len()).max().unwrap_or(10).max(10);
        println!("A = {}\nB = {}\n", a.a.display(), a.b.display());
        for p in &points {
            let key = p["point"].as_str().unwrap_or("");
            if !key.is_empty() {
                println!("[{key}]");
            }
            println!("{:<w$}  {:>14} {:>14} {:>14} {:>9}", "metric", "A", "B", "B - A", "change");
            for r in p["metrics"].as_array().into_iter().flatten() {
                let f = |k: &str| r[k].as_f64();
                let change = f("change").map_or_else(|| "-".to_string(), |c| format!("{:.1}%", c * 100.0));
                let flag = if r["fail"].as_bool() == Some(true) { "  <- FAIL" } else { "" };
                println!(
                    "{:<w$}  {:>14} {:>14} {:>14} {:>9}{flag}",
                    r["metric"].as_str().unwrap_or(""),
                    num_text(f("a")),
                    num_text(f("b")),
                    num_text(f("diff")),
                    change
                );
            }
            println!();
        }
        for n in &notes {
            eprintln!("note: {n}");
        }
        if ok {
            if !conds.is_empty() {
                println!("ok: no --fail-if condition holds");
            }
        } else {
            for f in &failures {
                println!("FAIL {f}");
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(EXIT_REGRESSION) })
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
