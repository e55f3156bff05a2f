//! Validation records (`simctl validate --out`): the loads a scenario was run at, live and
//! simulated, and the signed error of the simulation per metric against its targets. The
//! record is `validation.json` ([`Record`]); `validation.csv` holds its error rows ([`csv`]).
//! `simctl validate --replay` reads a record, simulates its loads again and recomputes the
//! errors with [`errors`].

use serde::{Deserialize, Serialize};

use crate::{Distribution, Summary};

/// The record's file in a validation folder.
pub const RECORD_FILE: &str = "validation.json";
/// The latency metrics compared, as summary fields and as shown.
pub const METRICS: [(&str, &str); 4] = [("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E")];

/// Error targets, in percent (absolute value of the signed error).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Targets {
    /// Medians.
    pub p50_pct: f64,
    /// 90th percentiles.
    pub p90_pct: f64,
    /// 95th percentiles.
    pub p95_pct: f64,
    /// Throughput (requests and output tokens per second).
    pub throughput_pct: f64,
    /// Why the targets differ from the defaults, where they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Default for Targets {
    /// The targets: p50 within 5%, p90 and p95 within 10%, throughput within 3%.
    fn default() -> Self {
        Targets { p50_pct: 5.0, p90_pct: 10.0, p95_pct: 10.0, throughput_pct: 3.0, note: None }
    }
}

/// One load of a validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRecord {
    /// As given: `30%`.
    pub label: String,
    /// The load as a fraction of the capacity.
    pub fraction: f64,
    /// Its arrival rate, requests/s.
    pub rate_rps: f64,
    /// Folders relative to the validation folder.
    pub live: String,
    /// The simulated run's folder.
    pub sim: String,
}

/// One signed error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorRow {
    /// The load's label.
    pub load: String,
    /// Summary field: `ttft_ms`, `throughput_rps`, ...
    pub metric: String,
    /// `p50`, `p90`, `p95`, `p99` or `value`.
    pub stat: String,
    /// The simulation's figure.
    pub sim: Option<f64>,
    /// The live run's.
    pub live: Option<f64>,
    /// (sim − live) / live, in percent.
    pub error_pct: Option<f64>,
    /// The target, in percent (none: not judged).
    pub target_pct: Option<f64>,
    /// Whether the error is within the target.
    pub within: Option<bool>,
}

/// A validation record: `validation.json` in a validation folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Format version.
    pub format: u32,
    /// The scenario as given.
    pub scenario_path: String,
    /// Its copy in the folder.
    pub scenario: String,
    /// The profile's copy in the folder, if one was given.
    pub profile: Option<String>,
    /// The user's `--set` overrides.
    pub sets: Vec<String>,
    /// The seed given, if any.
    pub seed: Option<u64>,
    /// The parameter that sets the arrival rate.
    pub rate_param: String,
    /// With `--speedup`: the trace's arrival rate at speedup 1 (the rate parameter is then
    /// the load's rate over this).
    #[serde(default)]
    pub base_rate_rps: Option<f64>,
    /// The engines' capacity, requests/s.
    pub capacity_rps: f64,
    /// Measured (a burst) or given.
    pub capacity_source: String,
    /// The simulation's throughput on the same burst, if measured.
    pub sim_capacity_rps: Option<f64>,
    /// The served model.
    pub model: Option<String>,
    /// The engines, as given.
    pub endpoints: Vec<String>,
    /// The machine's 1-minute load average when the record was made.
    pub load_1min: Option<f64>,
    /// The error targets.
    pub targets: Targets,
    /// The loads run.
    pub loads: Vec<LoadRecord>,
    /// The signed errors, per load, metric and statistic.
    pub errors: Vec<ErrorRow>,
}

/// The folder of a load under a validation folder: `30%` -> `load-30`.
pub fn label_dir(label: &str) -> String {
    format!("load-{}", label.trim().trim_end_matches('%').replace('.', "_"))
}

/// The signed errors of the simulation against the live run at one load: TTFT, TPOT, ITL
/// and E2E at p50/p90/p95/p99 (p99 not judged), throughput and output tokens per second,
/// each against its target.
pub fn errors(load: &str, sim: &Summary, live: &Summary, t: &Targets) -> Vec<ErrorRow> {
    let mut rows = Vec::new();
    let dist = |s: &Summary, m: &str| -> Distribution {
        match m {
            "ttft_ms" => s.ttft_ms,
            "tpot_ms" => s.tpot_ms,
            "itl_ms" => s.itl_ms,
            _ => s.e2e_ms,
        }
    };
    let mut push = |metric: &str, stat: &str, a: Option<f64>, b: Option<f64>, target: Option<f64>| {
        let error_pct = match (a, b) {
            (Some(a), Some(b)) if b.abs() > 0.0 => Some((a - b) / b * 100.0),
            _ => None,
        };
        rows.push(ErrorRow {
            load: load.into(),
            metric: metric.into(),
            stat: stat.into(),
            sim: a,
            live: b,
            error_pct,
            target_pct: target,
            within: target.zip(error_pct).map(|(t, e)| e.abs() <= t),
        });
    };
    for (m, _) in METRICS {
        let (a, b) = (dist(sim, m), dist(live, m));
        push(m, "p50", a.p50, b.p50, Some(t.p50_pct));
        push(m, "p90", a.p90, b.p90, Some(t.p90_pct));
        push(m, "p95", a.p95, b.p95, Some(t.p95_pct));
        push(m, "p99", a.p99, b.p99, None);
    }
    push("throughput_rps", "value", sim.throughput_rps, live.throughput_rps, Some(t.throughput_pct));
    push("output_tok_s", "value", sim.output_tok_s, live.output_tok_s, Some(t.throughput_pct));
    rows
}

/// `validation.csv`: one row per load, metric and statistic.
pub fn csv(rows: &[ErrorRow]) -> String {
    let mut s = String::from("load,metric,stat,sim,live,error_pct,target_pct,within\n");
    let f = |x: Option<f64>| x.map(crate::csv::float_text).unwrap_or_default();
    for r in rows {
        s += &format!(
            "{},{},{},{},{},{},{},{}\n",
            r.load,
            r.metric,
            r.stat,
            f(r.sim),
            f(r.live),
            f(r.error_pct),
            f(r.target_pct),
            r.within.map(|w| w.to_string()).unwrap_or_default()
        );
    }
    s
}

/// The table of one load's errors, as `simctl validate` prints it (`*`: outside its target).
pub fn render(load: &LoadRecord, rows: &[ErrorRow]) -> String {
    let mut s = format!("load {} ({:.2} req/s): signed error of the simulation, (sim - live) / live\n", load.label, load.rate_rps);
    s += &format!("  {:<6} {:>22} {:>22} {:>22} {:>22}\n", "metric", "p50", "p90", "p95", "p99");
    let cell = |r: Option<&ErrorRow>| -> String {
        match r {
            Some(r) => match (r.sim, r.live, r.error_pct) {
                (Some(a), Some(b), Some(e)) => {
                    format!("{:>7} {:>7} {:>+6.1}%{}", num(a), num(b), e, if r.within == Some(false) { "*" } else { " " })
                }
                _ => "-".into(),
            },
            None => "-".into(),
        }
    };
    for (m, name) in METRICS {
        let get = |stat: &str| rows.iter().find(|r| r.load == load.label && r.metric == m && r.stat == stat);
        s +=
            &format!("  {:<6} {:>22} {:>22} {:>22} {:>22}\n", name, cell(get("p50")), cell(get("p90")), cell(get("p95")), cell(get("p99")));
    }
    for (m, name) in [("throughput_rps", "throughput (req/s)"), ("output_tok_s", "output (tok/s)")] {
        let r = rows.iter().find(|r| r.load == load.label && r.metric == m);
        s += &format!("  {name:<19} {}\n", cell(r).trim_start());
    }
    s
}

fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

impl Record {
    /// Errors judged against a target, and those outside it.
    pub fn tally(&self) -> (usize, Vec<&ErrorRow>) {
        let judged = self.errors.iter().filter(|r| r.within.is_some()).count();
        (judged, self.errors.iter().filter(|r| r.within == Some(false)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = "../validation/records/poisson_uniform-tiny-xeon";

    fn summary(load: &str, side: &str) -> Summary {
        let path = format!("{RECORD}/{load}/{side}/summary.json");
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn errors_are_signed_relative_to_live_and_judged_by_their_targets() {
        let (sim, live) = (summary("load-30", "live"), summary("load-60", "live"));
        let t = Targets::default();
        let rows = errors("30%", &sim, &live, &t);
        // Four statistics of four latency metrics, and two rates.
        assert_eq!(rows.len(), METRICS.len() * 4 + 2);
        let ttft = rows.iter().find(|r| r.metric == "ttft_ms" && r.stat == "p50").unwrap();
        let (a, b) = (sim.ttft_ms.p50.unwrap(), live.ttft_ms.p50.unwrap());
        assert_eq!(ttft.error_pct, Some((a - b) / b * 100.0));
        assert_eq!(ttft.within, Some(((a - b) / b * 100.0).abs() <= 5.0));
        let p99 = rows.iter().find(|r| r.stat == "p99").unwrap();
        assert_eq!((p99.target_pct, p99.within), (None, None), "p99 is shown, not judged");
        // The same run against itself: every error zero, every judged one within.
        let same = errors("30%", &live, &live, &t);
        assert!(same.iter().all(|r| r.error_pct.is_none_or(|e| e == 0.0) && r.within != Some(false)));
    }

    #[test]
    fn the_recorded_errors_are_what_errors_computes_and_csv_writes() {
        let m: Record = serde_json::from_str(&std::fs::read_to_string(format!("{RECORD}/{RECORD_FILE}")).unwrap()).unwrap();
        let (judged, outside) = m.tally();
        assert_eq!(judged, m.errors.iter().filter(|r| r.target_pct.is_some()).count());
        assert!(outside.iter().all(|r| r.error_pct.unwrap().abs() > r.target_pct.unwrap()));
        let csv_text = csv(&m.errors);
        assert!(csv_text.starts_with("load,metric,stat,sim,live,error_pct,target_pct,within\n"));
        assert_eq!(csv_text.lines().count(), m.errors.len() + 1);
        assert_eq!(label_dir("30%"), "load-30");
        assert_eq!(label_dir("12.5%"), "load-12_5");
        // The table marks what is outside its target.
        let l = &m.loads[0];
        let table = render(l, &m.errors);
        assert!(table.starts_with(&format!("load {} (", l.label)));
        assert_eq!(table.matches('*').count(), m.errors.iter().filter(|r| r.load == l.label && r.within == Some(false)).count());
    }
}
