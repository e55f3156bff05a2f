//! The standard figures of a sweep and of a single run, written under `plots/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::plot::{self, BarPanel, LineChart, PlotError, Series};
use crate::sweep::{HEADLINE, SweepResults};

/// Most bars in one bar chart: past that, labels stop being readable.
pub const MAX_BARS: usize = 16;

/// Splits `24/s` into `(24.0, "/s")`; `None` when the text does not start with a number.
pub fn numeric_value(s: &str) -> Option<(f64, String)> {
    simctl_engine::units::split_number(s).map(|(v, u)| (v, u.to_string()))
}

/// A value on a common scale: durations in any unit become milliseconds, so an axis such as
/// `0ms,10ms,100ms,1s` is numeric; other units stay as written. Units are read with the
/// scenario language's table ([`simctl_engine::units::unit`]).
fn scaled_value(s: &str) -> Option<(f64, String)> {
    let (v, u) = numeric_value(s)?;
    match simctl_engine::units::unit(&u) {
        Some((f, d)) if d == simctl_engine::units::Dim::TIME => Some((v * f * 1e3, "ms".into())),
        _ => Some((v, u)),
    }
}

fn unit_label(u: &str) -> String {
    match u {
        "" => String::new(),
        "/s" => " (per second)".into(),
        u => format!(" ({u})"),
    }
}

/// Writes the sweep's charts into `dir/plots`: each headline metric against the first
/// numeric axis (one line per combination of the other axes, 95% intervals over seeds),
/// and goodput per dollar and TTFT p95 bars across points when the grid is small.
pub fn sweep_figures(dir: &Path, r: &SweepResults) -> Result<Vec<PathBuf>, PlotError> {
    let out = dir.join("plots");
    std::fs::create_dir_all(&out).map_err(|e| PlotError(format!("cannot create `{}`: {e}", out.display())))?;
    let stats = r.point_stats();
    let numeric = r.numeric_columns();
    let metric = |name: &str| numeric.iter().position(|&c| r.header[c] == name);
    let axes = &r.manifest.grid;
    let mut files = Vec::new();

    // The x axis: the first axis with several values that all are numbers in one unit.
    let x_axis = axes.iter().position(|a| {
        a.values.len() > 1 && {
            let parsed: Vec<_> = a.values.iter().map(|v| scaled_value(v)).collect();
            parsed.iter().all(|p| p.is_some()) && parsed.iter().all(|p| p.as_ref().map(|q| &q.1) == parsed[0].as_ref().map(|q| &q.1))
        }
    });
    if let Some(xa) = x_axis {
        let unit = scaled_value(&axes[xa].values[0]).map(|p| p.1).unwrap_or_default();
        // Decade-spaced axes (1ms,10ms,100ms,1s; 1..1000) read better on a log scale.
        let xs: Vec<f64> = axes[xa].values.iter().filter_map(|v| scaled_value(v)).map(|p| p.0).collect();
        let (lo, hi) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let x_log = lo > 0.0 && hi / lo >= 50.0;
        for (col, label) in HEADLINE {
            let Some(m) = metric(col) else { continue };
            let mut lines: BTreeMap<String, Vec<(f64, f64, f64)>> = BTreeMap::new();
            let mut order: Vec<String> = Vec::new();
            for s in &stats {
                let key: Vec<String> =
                    s.values.iter().enumerate().filter(|&(i, _)| i != xa).map(|(i, v)| format!("{}={v}", axes[i].name)).collect();
                let key = key.join(", ");
                let x = scaled_value(&s.values[xa]).map_or(f64::NAN, |p| p.0);
                if !lines.contains_key(&key) {
                    order.push(key.clone());
                }
                lines.entry(key).or_default().push((x, s.metrics[m].0, s.metrics[m].1));
            }
            let series = order.iter().map(|k| Series { name: k.clone(), points: lines[k].clone() }).collect();
            let short = label.split(" (").next().unwrap_or(label);
            let chart = LineChart {
                title: format!("{short} vs {} — {}", axes[xa].name, r.manifest.scenario),
                x_label: format!("{}{}{}", axes[xa].name, unit_label(&unit), if x_log { ", log scale" } else { "" }),
                y_label: label.to_string(),
                series,
                intervals: r.manifest.seeds > 1,
                y_from_zero: true,
                x_log,
            };
            files.extend(plot::line_chart(&out.join(col.replace('.', "_")), &chart)?);
        }
    }

    // Bars across points when no axis is numeric (fleets, policies): the right-sizing view.
    // Labels carry no spaces: plotters breaks rotated labels at them.
    if x_axis.is_none() && stats.len() > 1 && stats.len() <= MAX_BARS {
        // Each value names what it sets when that is not obvious: `prefill=[2xh100]` and
        // `decode=[4xh100]` for split pools, `name=value` for several axes.
        let short = |name: &str| match name.strip_prefix("pool.").and_then(|r| r.strip_suffix(".instances")) {
            Some(pool) => pool.to_string(),
            None => name.rsplit('.').next().unwrap_or(name).to_string(),
        };
        let label = |s: &crate::sweep::PointStats| {
            let parts: Vec<String> = axes
                .iter()
                .zip(&s.values)
                .map(|(a, v)| if axes.len() == 1 && !a.name.starts_with("pool.") { v.clone() } else { format!("{}={v}", short(&a.name)) })
                .collect();
            parts.join(",").replace(' ', "")
        };
        let mut panels = Vec::new();
        for (col, title, unit) in
            [("goodput_tok_per_usd", "goodput per dollar", "good output tokens per $"), ("ttft_ms.p95", "TTFT p95", "milliseconds")]
        {
            if let Some(m) = metric(col) {
                panels.push(BarPanel {
                    title: title.into(),
                    y_label: unit.into(),
                    bars: stats.iter().map(|s| (label(s), s.metrics[m].0, s.metrics[m].1)).collect(),
                });
            }
        }
        if !panels.is_empty() {
            let names: Vec<&str> = axes.iter().map(|a| a.name.as_str()).collect();
            files.extend(plot::bar_chart(&out.join("bars"), &format!("{} across {}", r.manifest.scenario, names.join(" × ")), &panels)?);
        }
    }
    Ok(files)
}

/// A run's samples for its figures.
#[derive(Clone, Debug, Default)]
pub struct RunSamples {
    /// Scenario name, for titles.
    pub scenario: String,
    /// TTFT of finished requests, ms.
    pub ttft_ms: Vec<f64>,
    /// TPOT of finished requests with more than one output token, ms.
    pub tpot_ms: Vec<f64>,
    /// Per pool: `(name, [(time s, depth)])`.
    pub depth: Vec<(String, Vec<(f64, f64)>)>,
    /// Width of a depth bucket, seconds (for the label).
    pub depth_bucket_s: f64,
}

/// Writes a run's charts into `dir/plots`: TTFT and TPOT CDFs, queue depth over time.
pub fn run_figures(dir: &Path, s: &RunSamples) -> Result<Vec<PathBuf>, PlotError> {
    let out = dir.join("plots");
    std::fs::create_dir_all(&out).map_err(|e| PlotError(format!("cannot create `{}`: {e}", out.display())))?;
    let mut files = Vec::new();
    let cdf = |name: &str, xs: &[f64]| {
        let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        LineChart {
            title: format!("{name} CDF ({} requests)", v.len()),
            x_label: format!("{name} (ms)"),
            y_label: "share of requests at or below".into(),
            series: vec![Series { name: String::new(), points: plot::cdf_points(&v, 1000) }],
            intervals: false,
            y_from_zero: true,
            x_log: false,
        }
    };
    files.extend(plot::panels(&out.join("latency_cdf"), &[cdf("TTFT", &s.ttft_ms), cdf("TPOT", &s.tpot_ms)])?);
    if !s.depth.is_empty() {
        let chart = LineChart {
            title: format!("queue depth per pool — {}", s.scenario),
            x_label: "simulated time (s)".into(),
            y_label: format!("waiting + running requests (peak per {:.0} ms)", s.depth_bucket_s * 1000.0),
            series: s
                .depth
                .iter()
                .map(|(n, pts)| Series { name: n.clone(), points: pts.iter().map(|&(t, d)| (t, d, 0.0)).collect() })
                .collect(),
            intervals: false,
            y_from_zero: true,
            x_log: false,
        };
        files.extend(plot::line_chart(&out.join("queue_depth"), &chart)?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_values_keep_their_unit() {
        assert_eq!(numeric_value("24/s"), Some((24.0, "/s".into())));
        assert_eq!(numeric_value("1.5e3"), Some((1500.0, String::new())));
        assert_eq!(numeric_value("telemetry"), None);
        assert_eq!(numeric_value("10ms"), Some((10.0, "ms".into())));
        assert_eq!(scaled_value("1s"), Some((1000.0, "ms".into())));
        assert_eq!(scaled_value("24/s"), Some((24.0, "/s".into())));
    }
}
