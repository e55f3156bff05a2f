//! # simctl-calibration
//!
//! `simctl calibrate` measures a real engine and fits the `fitted` step cost model of
//! DESIGN §2 ([`simctl_engine::cost::FittedCost`], the one implementation the simulator
//! steps with) into a profile that scenarios use:
//!
//! - [`hardware`]: GPU identity and topology through NVML (loaded at run time: without a
//!   driver, one line says so and the CPU is recorded), NUMA nodes from sysfs;
//! - [`launch`]: starting an engine from a command template, always stopping it;
//! - [`plan`]: the probes (prefill, decode, mixed, prefix) and their estimated time;
//! - [`run`]: driving the engine and turning streams into samples;
//! - [`fit`]: the fit (relative least squares, non-negative, with a refusal when the
//!   samples cannot determine the model) and its quality per probe class;
//! - [`selfcheck`]: held-out probes replayed in the simulator;
//! - [`calibrate()`]: all of it, giving a [`Profile`];
//! - [`check`]: `simctl calibrate --check`, a handful of probes replayed with a profile to
//!   say whether it still fits the machine;
//! - [`silicon`]: the catalogue's zero-shot roofline params, fitted to public measured
//!   serving rows (AIConfigurator's, Apache-2.0) and scored on rows held out.
//!
//! ```
//! use simctl_calibration::fit::{fit, sample_steps};
//! use simctl_engine::cost::{FittedCost, StepCostModel};
//! use simctl_engine::profile::{ProbeClass, ProfileSample, SampleMetric};
//!
//! // A prompt of 5000 tokens on an engine with a 2048-token step budget: three steps.
//! let s = ProfileSample::new(ProbeClass::Prefill, SampleMetric::Ttft, 5000, 0, 0, 0, 0.1);
//! let steps = sample_steps(&s, 2048, true);
//! assert_eq!(steps.iter().map(|b| b.prefill_tokens).collect::<Vec<_>>(), [2048, 2048, 904]);
//! assert_eq!(steps[2].prefill_context_pairs, 904 * 4096);
//! ```
#![warn(missing_docs)]

pub mod calibrate;
pub mod check;
pub mod fit;
pub mod hardware;
pub mod launch;
pub mod plan;
pub mod run;
pub mod selfcheck;
pub mod silicon;

pub use calibrate::{CalibrateError, CalibrateSpec, Calibration, Event, Target, calibrate};
pub use simctl_engine::profile::Profile;

/// vLLM's default `--max-num-seqs`, assumed when an engine publishes no metrics to measure
/// it with.
pub const DEFAULT_MAX_SEQS: u32 = simctl_engine::spec::DEFAULT_MAX_SEQS;

/// Why a profile could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read or written.
    #[error("cannot {action} `{}`: {error}", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// It is not a profile.
    #[error("`{}` is not a valid profile: {message} (the format is described in docs/profile.md)", path.display())]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A profile as YAML (the format scenarios read with `profile = "FILE.yaml"`).
pub fn profile_to_yaml(p: &Profile) -> Result<String, String> {
    serde_saphyr::to_string(p).map_err(|e| e.to_string())
}

/// Writes a profile.
pub fn write_profile(p: &Profile, path: &std::path::Path) -> Result<(), ProfileError> {
    let text = profile_to_yaml(p).map_err(|message| ProfileError::Invalid { path: path.to_path_buf(), message })?;
    std::fs::write(path, text).map_err(|error| ProfileError::Io { action: "write", path: path.to_path_buf(), error })
}

/// What an interrupted calibration keeps: the samples of the probes that finished.
#[derive(serde::Serialize, serde::Deserialize)]
struct Interrupted {
    note: String,
    samples: Vec<simctl_engine::profile::ProfileSample>,
}

/// Writes the samples of an interrupted calibration (YAML, the profile's sample format under
/// `samples:`); not a profile: a fit needs every probe class.
pub fn write_interrupted(samples: &[simctl_engine::profile::ProfileSample], path: &std::path::Path) -> Result<(), ProfileError> {
    let doc = Interrupted {
        note: "an interrupted `simctl calibrate`: the probes measured before it stopped; not a profile (a fit needs every probe class)"
            .into(),
        samples: samples.to_vec(),
    };
    let text = serde_saphyr::to_string(&doc).map_err(|e| ProfileError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
    std::fs::write(path, text).map_err(|error| ProfileError::Io { action: "write", path: path.to_path_buf(), error })
}

/// Reads a profile.
pub fn read_profile(path: &std::path::Path) -> Result<Profile, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|error| ProfileError::Io { action: "read", path: path.to_path_buf(), error })?;
    serde_saphyr::from_str::<Profile>(&text)
        .map_err(|e| e.to_string())
        .and_then(|p| p.checked(&text))
        .map_err(|message| ProfileError::Invalid { path: path.to_path_buf(), message })
}

/// The median of some values (the mean of the middle two for an even count); `None` for
/// none.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// `t` as RFC 3339 in UTC, to the second (`2026-12-01T13:14:01Z`).
pub fn utc_timestamp(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let t = |s: u64| utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(t(0), "1970-01-01T00:00:00Z");
        assert_eq!(t(951_782_400 + 3661), "2000-02-29T01:01:01Z");
        assert_eq!(t(1_796_130_841), "2026-12-01T13:14:01Z");
    }

    #[test]
    fn the_shipped_example_profile_reads() {
        let p = read_profile(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/example_h100_llama8b.yaml")).unwrap();
        assert_eq!((p.format, p.hardware.gpus, p.engine.max_seqs), (simctl_engine::profile::PROFILE_FORMAT, 1, 256));
        let again: Profile = serde_saphyr::from_str(&profile_to_yaml(&p).unwrap()).unwrap();
        assert_eq!(again, p);
    }
}
