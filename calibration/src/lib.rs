//! # simctl-calibration
//!
//! Fits the `fitted` step cost model of DESIGN §2 from measured engine steps,
//! `t = c0 + c1·prefill_tokens + c2·prefill_tokens² + c3·prefill_tokens·context
//! `+ c4·decode_seqs + c5·decode_context_tokens`, by ordinary least squares.
//!
//! `simctl calibrate` (a later issue) drives a real engine to collect the samples; this
//! crate owns the fitting.
#![warn(missing_docs)]

mod fit;
pub mod silicon;

pub use fit::{FitError, FittedCoefficients, StepSample, fit_step_costs};

pub use simctl_engine::profile::Profile;

/// Writes a profile as YAML (the format scenarios read with `profile = "FILE.yaml"`).
pub fn profile_to_yaml(p: &Profile) -> Result<String, String> {
    serde_saphyr::to_string(p).map_err(|e| e.to_string())
}
