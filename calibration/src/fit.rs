//! Ordinary least squares over the six features of a step.

use simctl_engine::cost::{BatchShape, StepCostModel};
use simctl_engine::time::SimDuration;

/// One measured step: its shape and how long it took.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepSample {
    /// New prefill tokens in the step.
    pub prefill_tokens: u32,
    /// Cached context the prefill chunks attended to (Σ over chunks, tokens).
    pub prefill_context_tokens: u64,
    /// Sequences decoding one token.
    pub decode_seqs: u32,
    /// Σ context of the decoding sequences (tokens).
    pub decode_context_tokens: u64,
    /// Measured step time in seconds.
    pub seconds: f64,
}

const FEATURES: usize = 6;

fn features(s: &StepSample) -> [f64; FEATURES] {
    let p = f64::from(s.prefill_tokens);
    [1.0, p, p * p, p * s.prefill_context_tokens as f64, f64::from(s.decode_seqs), s.decode_context_tokens as f64]
}

/// Fitted coefficients, in seconds per unit of each feature, with the fit's quality.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FittedCoefficients {
    /// `[c0, c1, c2, c3, c4, c5]`.
    pub c: [f64; FEATURES],
    /// Coefficient of determination on the samples.
    pub r2: f64,
    /// Root mean square error, seconds.
    pub rmse_s: f64,
    /// Samples used.
    pub samples: usize,
}

/// Why a fit failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FitError {
    /// Fewer samples than coefficients.
    #[error("need at least {FEATURES} step samples to fit, got {0}")]
    TooFewSamples(usize),
    /// The samples do not vary enough to separate the terms.
    #[error("the samples do not vary enough to separate the cost terms (vary prompt lengths, batch sizes and context lengths)")]
    Singular,
}

/// Fits the six coefficients by least squares (normal equations, Gaussian elimination with
/// partial pivoting; features are scaled first so the system stays well conditioned).
pub fn fit_step_costs(samples: &[StepSample]) -> Result<FittedCoefficients, FitError> {
    if samples.len() < FEATURES {
        return Err(FitError::TooFewSamples(samples.len()));
    }
    let mut scale = [0.0f64; FEATURES];
    for s in samples {
        for (k, x) in features(s).iter().enumerate() {
            scale[k] = scale[k].max(x.abs());
        }
    }
    // A feature that is zero in every sample gets coefficient 0 (kept out of the system).
    let active: Vec<usize> = (0..FEATURES).filter(|&k| scale[k] > 0.0).collect();
    let n = active.len();
    let mut a = vec![vec![0.0; n + 1]; n];
    for s in samples {
        let f = features(s);
        let x: Vec<f64> = active.iter().map(|&k| f[k] / scale[k]).collect();
        for i in 0..n {
            for j in 0..n {
                a[i][j] += x[i] * x[j];
            }
            a[i][n] += x[i] * s.seconds;
        }
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).expect("non-empty range");
        if a[pivot][col].abs() < 1e-12 {
            return Err(FitError::Singular);
        }
        a.swap(col, pivot);
        for row in 0..n {
            if row != col {
                let f = a[row][col] / a[col][col];
                let pivot_row = a[col].clone();
                for (x, p) in a[row][col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * p;
                }
            }
        }
    }
    let mut c = [0.0; FEATURES];
    for (i, &k) in active.iter().enumerate() {
        c[k] = a[i][n] / a[i][i] / scale[k];
    }
    let mean = samples.iter().map(|s| s.seconds).sum::<f64>() / samples.len() as f64;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for s in samples {
        let pred: f64 = features(s).iter().zip(c).map(|(x, ck)| x * ck).sum();
        ss_res += (s.seconds - pred).powi(2);
        ss_tot += (s.seconds - mean).powi(2);
    }
    Ok(FittedCoefficients {
        c,
        r2: if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { 1.0 },
        rmse_s: (ss_res / samples.len() as f64).sqrt(),
        samples: samples.len(),
    })
}

impl StepCostModel for FittedCoefficients {
    fn step_time(&self, b: &BatchShape) -> SimDuration {
        // Mean cached context per prefill token, from the attention pairs of the batch.
        let p = f64::from(b.prefill_tokens);
        let ctx = if b.prefill_tokens > 0 { (b.prefill_attention_pairs as f64 / p - p / 2.0).max(0.0) } else { 0.0 };
        let x = [1.0, p, p * p, p * ctx, f64::from(b.decode_seqs), b.decode_context_tokens as f64];
        SimDuration::from_secs_f64(x.iter().zip(self.c).map(|(x, c)| x * c).sum::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_known_coefficients_exactly() {
        let truth = [2e-3, 5e-5, 1e-9, 2e-10, 3e-5, 4e-8];
        let mut samples = Vec::new();
        for &p in &[0u32, 128, 512, 1024, 2048, 4096] {
            for &ctx in &[0u64, 1024, 8192] {
                for (&d, &per_seq) in [0u32, 1, 8, 32, 128].iter().zip(&[0u64, 300, 2000, 900, 4000]) {
                    let dctx = u64::from(d) * per_seq;
                    let mut s = StepSample {
                        prefill_tokens: p,
                        prefill_context_tokens: ctx,
                        decode_seqs: d,
                        decode_context_tokens: dctx,
                        seconds: 0.0,
                    };
                    s.seconds = features(&s).iter().zip(truth).map(|(x, c)| x * c).sum();
                    samples.push(s);
                }
            }
        }
        let fit = fit_step_costs(&samples).unwrap();
        for (got, want) in fit.c.iter().zip(truth) {
            assert!((got / want - 1.0).abs() < 1e-6, "{got} vs {want}");
        }
        assert!(fit.r2 > 0.999_999);
    }

    #[test]
    fn too_few_or_degenerate_samples_are_errors() {
        let s = StepSample { prefill_tokens: 1, prefill_context_tokens: 0, decode_seqs: 1, decode_context_tokens: 1, seconds: 1.0 };
        assert_eq!(fit_step_costs(&[s; 3]), Err(FitError::TooFewSamples(3)));
        assert_eq!(fit_step_costs(&[s; 10]), Err(FitError::Singular));
    }
}
