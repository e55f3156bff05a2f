//! Comparing a run with a baseline: deltas and the lab's p95 headroom rule (TTFT and decode
//! p95 within +10–15% of the baseline's).

/// Growth of a p95 over the baseline past which it is worth watching.
pub const HEADROOM_WATCH: f64 = 0.10;
/// Growth of a p95 over the baseline past which the change eats the headroom.
pub const HEADROOM_MAX: f64 = 0.15;

/// The baseline's figures (any may be missing).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Baseline {
    /// Where they come from.
    pub reference: String,
    /// Accuracy.
    pub avg_accuracy: Option<f64>,
    /// TTFT p95, ms.
    pub ttft_p95: Option<f64>,
    /// Decode p95, ms.
    pub decode_p95: Option<f64>,
    /// Token-drop rate.
    pub drop_rate: Option<f64>,
    /// Expert imbalance CV.
    pub imbalance_cv: Option<f64>,
    /// Goodput, tokens/s.
    pub goodput: Option<f64>,
}

fn pick(v: &serde_json::Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

impl Baseline {
    /// From a `scorecard.json` (the lab's or simctl's: same keys).
    pub fn from_json(v: &serde_json::Value, reference: &str) -> Option<Baseline> {
        if !["quality", "latency", "moe", "throughput"].iter().any(|k| v.get(k).is_some_and(serde_json::Value::is_object)) {
            return None;
        }
        Some(Baseline {
            reference: reference.to_string(),
            avg_accuracy: pick(v, &["quality", "avg_accuracy"]),
            ttft_p95: pick(v, &["latency", "ttft", "p95"]),
            decode_p95: pick(v, &["latency", "decode", "p95"]),
            drop_rate: pick(v, &["moe", "token_drop_rate"]),
            imbalance_cv: pick(v, &["moe", "expert_imbalance_cv"]),
            goodput: pick(v, &["throughput", "goodput"]),
        })
    }
}

/// Current minus baseline, where both are known.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Deltas {
    /// Accuracy.
    pub avg_accuracy: Option<f64>,
    /// TTFT p95, ms.
    pub ttft_p95: Option<f64>,
    /// Decode p95, ms.
    pub decode_p95: Option<f64>,
    /// Drop rate.
    pub drop_rate: Option<f64>,
    /// Imbalance CV.
    pub expert_imbalance_cv: Option<f64>,
    /// Goodput, tokens/s.
    pub goodput: Option<f64>,
}

/// Where a p95 stands against the baseline's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadroomStatus {
    /// At most +10%.
    Within,
    /// Between +10% and +15%: at the edge of the headroom.
    Watch,
    /// Past +15%.
    Over,
    /// One side is missing (or the baseline is zero).
    Missing,
}

/// The headroom rule for one p95.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct HeadroomCheck {
    /// The baseline's p95, ms.
    pub baseline: Option<f64>,
    /// This run's p95, ms.
    pub current: Option<f64>,
    /// Relative change (0.12 = +12%).
    pub change: Option<f64>,
    /// The outcome.
    pub status: HeadroomStatus,
}

impl HeadroomCheck {
    /// Judges `current` against `baseline` (boundaries are within their band).
    pub fn new(baseline: Option<f64>, current: Option<f64>) -> HeadroomCheck {
        let change = match (baseline, current) {
            (Some(b), Some(c)) if b > 0.0 => Some(c / b - 1.0),
            _ => None,
        };
        // Compared as products, so that exactly +10% of 1000 ms (1100 ms) is within.
        let status = match (baseline, current, change) {
            (Some(b), Some(c), Some(_)) if c <= b * (1.0 + HEADROOM_WATCH) => HeadroomStatus::Within,
            (Some(b), Some(c), Some(_)) if c <= b * (1.0 + HEADROOM_MAX) => HeadroomStatus::Watch,
            (_, _, Some(_)) => HeadroomStatus::Over,
            _ => HeadroomStatus::Missing,
        };
        HeadroomCheck { baseline, current, change, status }
    }
}

/// The p95 headroom rule.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Headroom {
    /// TTFT p95.
    pub ttft_p95: HeadroomCheck,
    /// Decode p95.
    pub decode_p95: HeadroomCheck,
}

/// Deltas and headroom against a baseline.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Current minus baseline.
    pub delta_vs_baseline: Deltas,
    /// The p95 headroom rule (shown, not part of the SHIP rule).
    pub headroom_vs_baseline: Headroom,
}

impl Comparison {
    /// The figures `now` against the baseline's, `b`.
    pub fn between(now: &Baseline, b: &Baseline) -> Comparison {
        let d = |x: Option<f64>, y: Option<f64>| Some(x? - y?);
        Comparison {
            delta_vs_baseline: Deltas {
                avg_accuracy: d(now.avg_accuracy, b.avg_accuracy),
                ttft_p95: d(now.ttft_p95, b.ttft_p95),
                decode_p95: d(now.decode_p95, b.decode_p95),
                drop_rate: d(now.drop_rate, b.drop_rate),
                expert_imbalance_cv: d(now.imbalance_cv, b.imbalance_cv),
                goodput: d(now.goodput, b.goodput),
            },
            headroom_vs_baseline: Headroom {
                ttft_p95: HeadroomCheck::new(b.ttft_p95, now.ttft_p95),
                decode_p95: HeadroomCheck::new(b.decode_p95, now.decode_p95),
            },
        }
    }
}
