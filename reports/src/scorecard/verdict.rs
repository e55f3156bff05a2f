//! The ship/no-ship rule: five checks, each passing, failing or missing.

/// Least quality accuracy to ship (the lab's `--min-acc`).
pub const MIN_ACCURACY: f64 = 0.6;
/// TTFT p95 limit when `sys_meta.json` gives no `ttft_slo_ms` (the lab's `--ttft-p95-max`).
pub const DEFAULT_TTFT_SLO_MS: f64 = 1300.0;
/// Decode p95 limit when `sys_meta.json` gives no `latency_slo_ms` (`--latency-p95-max`).
pub const DEFAULT_LATENCY_SLO_MS: f64 = 4500.0;
/// Largest MoE token-drop rate to ship (0.5%).
pub const MAX_DROP_RATE: f64 = 0.005;
/// Largest expert-imbalance coefficient of variation to ship.
pub const MAX_IMBALANCE_CV: f64 = 0.25;

/// Which side of the limit passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// value ≥ limit.
    AtLeast,
    /// value ≤ limit.
    AtMost,
}

/// A check's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Within the limit.
    Pass,
    /// Outside it.
    Fail,
    /// No data: the check cannot pass.
    Missing,
}

impl Status {
    /// `pass`, `FAIL`, `missing`, as tables print it.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Missing => "missing",
        }
    }
}

/// One gated check.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Check {
    /// `accuracy`, `ttft_p95_ms`, `decode_p95_ms`, `drop_rate`, `imbalance_cv`.
    pub name: &'static str,
    /// The measured value (`null`: missing).
    pub value: Option<f64>,
    /// The limit.
    pub limit: f64,
    /// Which side passes.
    pub rule: Rule,
    /// The outcome.
    pub status: Status,
    /// Where the limit comes from, or why the value is missing.
    pub note: String,
}

impl Check {
    /// Judges `value` against `limit` (the boundary passes).
    pub fn new(name: &'static str, value: Option<f64>, limit: f64, rule: Rule, note: String) -> Check {
        let status = match value {
            None => Status::Missing,
            Some(v) if v.is_nan() => Status::Fail,
            Some(v) => match rule {
                Rule::AtLeast if v >= limit => Status::Pass,
                Rule::AtMost if v <= limit => Status::Pass,
                _ => Status::Fail,
            },
        };
        Check { name, value, limit, rule, status, note }
    }

    /// A sentence for a check that does not pass; `None` when it passes.
    pub fn reason(&self) -> Option<String> {
        let what = self.name.replace('_', " ").replace(" ms", "");
        match (self.status, self.value) {
            (Status::Pass, _) => None,
            (Status::Missing, _) | (_, None) => Some(format!("{what} missing: {}", self.note)),
            (Status::Fail, Some(v)) => {
                let side = if self.rule == Rule::AtLeast { "below" } else { "above" };
                let (mut v_text, l) = (fmt_value(self.name, v), fmt_value(self.name, self.limit));
                if v_text == l {
                    // Just past the limit: show enough digits to see the difference.
                    v_text = format!("{v}{}", if self.name.ends_with("_ms") { " ms" } else { "" });
                }
                let v = v_text;
                let from = if self.note.is_empty() { String::new() } else { format!(" ({})", self.note) };
                Some(format!("{what} {v} is {side} {l}{from}"))
            }
        }
    }
}

/// A check's value as tables print it.
pub fn fmt_value(name: &str, v: f64) -> String {
    if name.ends_with("_ms") {
        format!("{v:.1} ms")
    } else if name == "drop_rate" {
        format!("{:.3}%", v * 100.0)
    } else {
        format!("{v:.3}")
    }
}

/// The verdict: SHIP iff every check passes.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Verdict {
    /// Whether to ship.
    pub ship: bool,
    /// `SHIP` or `NO-SHIP`.
    pub label: &'static str,
    /// The checks, in the lab's order.
    pub checks: Vec<Check>,
    /// Why not, one sentence per check that does not pass.
    pub reasons: Vec<String>,
}

impl Verdict {
    /// The verdict of these checks.
    pub fn of(checks: Vec<Check>) -> Verdict {
        let ship = checks.iter().all(|c| c.status == Status::Pass);
        let reasons = checks.iter().filter_map(Check::reason).collect();
        Verdict { ship, label: if ship { "SHIP" } else { "NO-SHIP" }, checks, reasons }
    }
}
