//! The original lab's ship/no-ship scorecard over run folders.
//!
//! A run folder holds what its eval measured in the lab's layout ([`folder`]): quality
//! answers, per-request latencies, MoE router and expert-traffic windows, throughput and
//! goodput, and the run's SLOs. [`Scorecard::build`] turns it into the six checks' figures
//! and the verdict:
//!
//! SHIP iff accuracy ≥ 0.6, TTFT p95 ≤ the TTFT SLO (`sys_meta.json`'s `ttft_slo_ms`, else
//! 1300 ms), decode p95 ≤ the latency SLO (`latency_slo_ms`, else 4500 ms), token-drop rate
//! ≤ 0.5% and expert-imbalance CV ≤ 0.25. A figure a folder does not have is *missing*: the
//! check cannot pass, and the reason says which file was absent. Goodput is shown, not gated.
//! Against a baseline, deltas and the p95 headroom rule (+10% watch, +15% over) are shown.
//!
//! ```
//! use simctl_reports::scorecard::{LatencyRow, QualityRow, RunFolder, Scorecard};
//! let folder = RunFolder {
//!     quality: Some(vec![QualityRow { task: "t".into(), prompt: None, prediction: "4".into(), expected: "4".into(), correct: true }]),
//!     latency: Some(vec![LatencyRow { request_id: None, ttft_ms: 200.0, decode_ms: 900.0, prompt_tokens: None, output_tokens: 128, case: "cold".into() }]),
//!     ..RunFolder::default()
//! };
//! let card = Scorecard::build(&folder, None).unwrap();
//! assert!(!card.verdict.ship, "no MoE metrics: those checks are missing");
//! assert_eq!(card.verdict.reasons.len(), 2);
//! ```

mod baseline;
mod card;
mod chart;
pub mod folder;
mod render;
mod sim;
mod verdict;

pub use baseline::{Baseline, Comparison, Deltas, HEADROOM_MAX, HEADROOM_WATCH, Headroom, HeadroomCheck, HeadroomStatus};
pub use card::{
    DECODE_LENGTHS, GOODPUT_DROP_PENALTY, LatencySection, MoeSection, P50P95, QualitySection, Scorecard, ScorecardError, Slos,
    ThroughputSection, drop_rate, imbalance_cv, throughput_from_latency,
};
pub use chart::scorecard_chart;
pub use folder::{FolderError, LatencyRow, QualityRow, RouterRow, RunFolder, TpsGoodput, TrafficRow};
pub use render::{render_card, render_summary};
pub use sim::write_simulated_run_files;
pub use verdict::{
    Check, DEFAULT_LATENCY_SLO_MS, DEFAULT_TTFT_SLO_MS, MAX_DROP_RATE, MAX_IMBALANCE_CV, MIN_ACCURACY, Rule, Status, Verdict,
};

#[cfg(test)]
mod tests;
