//! Fitting the `fitted` step model ([`FittedCost`]) to measured probes.
//!
//! Each sample describes what was sent (prompt, cached prefix, decodes running) and what
//! was measured: a TTFT on an idle engine (the frontend latency plus every step of the
//! prefill, chunked at the token budget) or one step. The steps a sample spans are built
//! with the engine's own [`BatchShape`] arithmetic and priced with [`FittedCost::features`],
//! so the fit and the simulator share one model. The coefficients minimise the squared
//! *relative* error (TTFTs of long prompts would otherwise drown the millisecond decode
//! steps), subject to every coefficient being non-negative (a negative cost has no physical
//! meaning and would make some step shapes free).

use simctl_engine::batching::StepRule;
use simctl_engine::cost::{BatchShape, CacheKnee, FITTED_TERM_NAMES, FITTED_TERMS, FittedCost};
use simctl_engine::profile::{ClassFit, ProbeClass, ProfileSample, SampleMetric};
use simctl_engine::time::SimDuration;

/// Unknowns of the fit: the frontend latency, then the six step coefficients.
pub const TERMS: usize = FITTED_TERMS + 1;

/// Names of the unknowns, in order.
pub fn term_name(k: usize) -> &'static str {
    if k == 0 { "frontend latency" } else { FITTED_TERM_NAMES[k - 1] }
}

/// Which probes pin a term down, for refusals.
fn term_hint(k: usize) -> &'static str {
    match k {
        0 => "prefill probes (TTFT on an idle engine) together with decode probes (steps without a frontend)",
        1 => {
            "steps of different sizes: decode probes at several batch sizes and prefill probes, or prompts longer than the token budget (several steps per TTFT)"
        }
        2 => "prefill probes at several prompt lengths",
        3 => "prefill probes at long prompt lengths",
        4 => "prefix probes (a cached prefix) or prompts longer than max_num_batched_tokens",
        5 => "decode probes at more than one batch size (an engine with max_num_seqs > 1)",
        _ => "decode probes at more than one context length",
    }
}

/// Why a fit failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FitError {
    /// Fewer samples than unknowns.
    #[error(
        "need at least {TERMS} samples to fit the {TERMS} terms of the step model, got {0}; run the full plan (without --quick) or a larger --budget"
    )]
    TooFewSamples(usize),
    /// Some term cannot be told apart from the others.
    #[error("the samples cannot determine the step model: {term} cannot be told apart from {others}; it needs {hint}")]
    Undetermined {
        /// The term.
        term: &'static str,
        /// The terms it is confounded with (or `the rest: it never varies`).
        others: String,
        /// Which probes would pin it down.
        hint: &'static str,
    },
    /// A sample is not a positive, finite time.
    #[error("sample {index} ({class}) measured {seconds} s: times must be positive and finite")]
    BadSample {
        /// Index in the sample list.
        index: usize,
        /// Its class.
        class: &'static str,
        /// What it measured.
        seconds: f64,
    },
}

/// The steps a sample spans when the step budget is `max_batch_tokens`, as the engine's
/// batching rule ([`StepRule`]) builds them: each step carries the sample's decodes (running,
/// they take their tokens of the budget first) and the next chunk of the prompt's uncached
/// tokens; a decode-only step when there is no prompt. An unchunked prompt that does not fit
/// beside the decodes runs alone. (The probes' few sequences never reach a sequence cap.)
pub fn sample_steps(s: &ProfileSample, max_batch_tokens: u32, chunked: bool) -> Vec<BatchShape> {
    let decodes = |b: &mut BatchShape| {
        b.decode_seqs = s.decode_seqs;
        b.decode_context_tokens = s.decode_context_tokens;
        b.decode_cached_tokens = s.decode_cached_tokens;
    };
    if s.prompt_tokens == 0 {
        let mut b = BatchShape::default();
        decodes(&mut b);
        return vec![b];
    }
    let rule = StepRule { max_batch_tokens, max_seqs: u32::MAX, chunked };
    // vLLM recomputes at least the last prompt token, even when all of it is cached.
    let cached = s.cached_tokens.min(s.prompt_tokens - 1);
    let (mut ctx, mut left) = (cached, s.prompt_tokens - cached);
    let mut steps = Vec::new();
    while left > 0 {
        let mut step = rule.step();
        let mut b = BatchShape::default();
        step.take_decodes(s.decode_seqs);
        let chunk = match step.offer_waiting(left) {
            Some(chunk) => {
                decodes(&mut b);
                chunk
            }
            // No room beside the decodes (an unchunked prompt, or decodes that fill the
            // budget): the prompt's next step runs without them.
            None => rule.step().offer_waiting(left).expect("an empty step takes a prompt"),
        };
        b.add_prefill_chunk(chunk, ctx);
        steps.push(b);
        ctx += chunk;
        left -= chunk;
    }
    steps
}

/// The features of a sample: `[frontend, c0..c5]`. A TTFT pays the frontend once and every
/// step of the prefill; a step sample is the last of its steps.
pub fn sample_features(s: &ProfileSample, max_batch_tokens: u32, chunked: bool) -> [f64; TERMS] {
    let steps = sample_steps(s, max_batch_tokens, chunked);
    let mut x = [0.0; TERMS];
    let add = |x: &mut [f64; TERMS], b: &BatchShape| {
        for (k, f) in FittedCost::features(b).iter().enumerate() {
            x[k + 1] += f;
        }
    };
    match s.metric {
        SampleMetric::Ttft => {
            x[0] = 1.0;
            for b in &steps {
                add(&mut x, b);
            }
        }
        SampleMetric::Step => add(&mut x, steps.last().expect("at least one step")),
    }
    x
}

/// What the model predicts a sample measured, in seconds: the simulator's price of each step
/// the sample spans ([`FittedCost::step_secs`], every optional term included), and the
/// frontend once for a TTFT.
pub fn predict(cost: &FittedCost, s: &ProfileSample, max_batch_tokens: u32, chunked: bool) -> f64 {
    let steps = sample_steps(s, max_batch_tokens, chunked);
    match s.metric {
        SampleMetric::Ttft => cost.frontend.as_secs_f64() + steps.iter().map(|b| cost.step_secs(b)).sum::<f64>(),
        SampleMetric::Step => cost.step_secs(steps.last().expect("at least one step")),
    }
}

/// One sample against the fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Residual {
    /// Probe class.
    pub class: ProbeClass,
    /// Measured seconds.
    pub measured_s: f64,
    /// Predicted seconds.
    pub predicted_s: f64,
    /// Whether it was held out of the fit.
    pub held_out: bool,
}

/// A fitted model and its quality.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    /// The cost model.
    pub cost: FittedCost,
    /// The step budget the chunking assumed.
    pub max_batch_tokens: u32,
    /// Coefficient of determination over the fitted samples.
    pub r2: f64,
    /// Root mean square error, seconds.
    pub rmse_s: f64,
    /// Samples fitted.
    pub samples: usize,
    /// Sum of squared relative errors (what the fit minimises).
    pub sse_rel: f64,
    /// Quality per class, over the fitted samples.
    pub classes: Vec<ClassFit>,
    /// Every sample, fitted or held out, against the model.
    pub residuals: Vec<Residual>,
}

/// Fits the model to the samples not held out, assuming a step budget of `max_batch_tokens`.
pub fn fit(samples: &[ProfileSample], max_batch_tokens: u32, chunked: bool) -> Result<Fit, FitError> {
    for (index, s) in samples.iter().enumerate() {
        if !(s.seconds > 0.0 && s.seconds.is_finite()) {
            return Err(FitError::BadSample { index, class: s.class.as_str(), seconds: s.seconds });
        }
    }
    // Shared-prefix decode samples price one more term, from the rest of the fit (below).
    let used: Vec<&ProfileSample> = samples.iter().filter(|s| !s.held_out && s.decode_cached_tokens == 0).collect();
    if used.len() < TERMS {
        return Err(FitError::TooFewSamples(used.len()));
    }
    let rows = relative_rows(&used, max_batch_tokens, chunked);
    identifiable(&scale_columns(&rows).0)?;
    let (c, sse_linear) = nnls_relative(&rows);
    let mut cost = FittedCost { frontend: SimDuration::from_secs_f64(c[0]), ..FittedCost::new(std::array::from_fn(|k| c[k + 1])) };
    // Decode attention past the caches (c7): kept only where it earns its two parameters.
    if let Some((knee, c, sse)) = best_knee(&used, &rows, max_batch_tokens, chunked)
        && knee.extra_s > 0.0
        && sse < (1.0 - KNEE_GAIN) * sse_linear
        && sse_linear - sse > KNEE_FLOOR
    {
        cost = FittedCost {
            frontend: SimDuration::from_secs_f64(c[0]),
            beyond_cache: Some(knee),
            ..FittedCost::new(std::array::from_fn(|k| c[k + 1]))
        };
    }
    cost.cached_context = cached_context(&cost, samples, max_batch_tokens, chunked);
    Ok(quality(cost, samples, max_batch_tokens, chunked))
}

/// Seconds per decode context token in prefix-cached blocks, from the shared-prefix decode
/// samples: what each step took beyond what the rest of the model prices (its uncached
/// context at c5, and past the caches at c7), per cached token; the median over the samples, at least zero. `None`
/// without such samples.
pub fn cached_context(cost: &FittedCost, samples: &[ProfileSample], max_batch_tokens: u32, chunked: bool) -> Option<f64> {
    let mut per_token: Vec<f64> = samples
        .iter()
        .filter(|s| !s.held_out && s.decode_cached_tokens > 0)
        .map(|s| {
            // The step as if its cached context were not there: the rest of the model.
            let uncached = ProfileSample {
                decode_context_tokens: s.decode_context_tokens - s.decode_cached_tokens.min(s.decode_context_tokens),
                decode_cached_tokens: 0,
                ..*s
            };
            let without = predict(cost, &uncached, max_batch_tokens, chunked);
            ((s.seconds - without) / s.decode_cached_tokens as f64).max(0.0)
        })
        .collect();
    crate::median(&mut per_token)
}

/// Share of a one-sequence decode step that one more step must add to a TTFT: a step
/// costs at least its fixed overhead, which a one-sequence decode step is mostly made of.
pub const BUDGET_JUMP: f64 = 0.5;
/// Share of (run at `B + 1`, run at `B`) pairs in which the longer prompt must be the slower
/// (a one-sided rank test: with 7 runs each, 80% happens by chance about once in a hundred).
pub const BUDGET_PAIRS: f64 = 0.8;

/// The engine's step budget from where prefill times jump by one step: the smallest
/// candidate `B` whose prompts of `B + 1` tokens take at least [`BUDGET_JUMP`] ×
/// `decode_step_s` longer (medians) than prompts of `B` tokens, consistently over the runs
/// ([`BUDGET_PAIRS`]). `ttfts(p)` gives the TTFTs measured at prompt length `p`. `None` when
/// no candidate shows a jump.
pub fn detect_budget(ttfts: &dyn Fn(u32) -> Vec<f64>, candidates: &[u32], decode_step_s: f64) -> Option<u32> {
    candidates.iter().copied().find(|&b| {
        let (mut at, mut past) = (ttfts(b), ttfts(b + 1));
        let (Some(m0), Some(m1)) = (crate::median(&mut at), crate::median(&mut past)) else { return false };
        let pairs = at.len() * past.len();
        let slower = past.iter().map(|y| at.iter().filter(|x| y > x).count()).sum::<usize>();
        m1 - m0 >= BUDGET_JUMP * decode_step_s && slower as f64 >= BUDGET_PAIRS * pairs as f64
    })
}

/// The TTFTs of single fresh prompts of each length, from samples.
pub fn sample_ttfts(samples: &[ProfileSample]) -> impl Fn(u32) -> Vec<f64> + '_ {
    move |p| {
        samples
            .iter()
            .filter(|s| {
                s.class == ProbeClass::Prefill
                    && s.metric == SampleMetric::Ttft
                    && s.prompt_tokens == p
                    && s.cached_tokens == 0
                    && s.decode_seqs == 0
            })
            .map(|s| s.seconds)
            .collect()
    }
}

/// Among candidate step budgets, the fit whose chunking explains the samples best (the
/// budget shows as a jump in TTFT one token past it: one more step).
pub fn fit_best_budget(samples: &[ProfileSample], candidates: &[u32], chunked: bool) -> Result<Fit, FitError> {
    let mut best: Option<Fit> = None;
    for &b in candidates {
        let f = fit(samples, b, chunked)?;
        // Ties (no prompt reached either budget) go to the larger budget.
        if best.as_ref().is_none_or(|x| f.sse_rel < x.sse_rel * (1.0 - 1e-9) || (f.sse_rel <= x.sse_rel && b > x.max_batch_tokens)) {
            best = Some(f);
        }
    }
    best.ok_or(FitError::TooFewSamples(0))
}

/// Columns scaled to a largest entry of 1 (the normal equations of features spanning twelve
/// orders of magnitude are otherwise singular in floating point), and the scales.
fn scale_columns<const N: usize>(rows: &[[f64; N]]) -> (Vec<[f64; N]>, [f64; N]) {
    let mut scale = [0.0f64; N];
    for r in rows {
        for k in 0..N {
            scale[k] = scale[k].max(r[k].abs());
        }
    }
    let scaled = rows.iter().map(|r| std::array::from_fn(|k| if scale[k] > 0.0 { r[k] / scale[k] } else { 0.0 })).collect();
    (scaled, scale)
}

/// The samples' features divided by what each measured: least squares on these rows
/// minimises the relative errors.
fn relative_rows(used: &[&ProfileSample], max_batch_tokens: u32, chunked: bool) -> Vec<[f64; TERMS]> {
    used.iter()
        .map(|s| {
            let mut x = sample_features(s, max_batch_tokens, chunked);
            x.iter_mut().for_each(|v| *v /= s.seconds);
            x
        })
        .collect()
}

/// Non-negative least squares of rows already divided by their measurement (`min Σ (1 −
/// x·c)²`): the coefficients and the sum of squared relative errors.
fn nnls_relative<const N: usize>(rows: &[[f64; N]]) -> ([f64; N], f64) {
    let (scaled, scale) = scale_columns(rows);
    let mut g = [[0.0; N]; N];
    let mut b = [0.0; N];
    for r in &scaled {
        for i in 0..N {
            for j in 0..N {
                g[i][j] += r[i] * r[j];
            }
            b[i] += r[i];
        }
    }
    let (beta, sse) = nnls(&g, &b, scaled.len() as f64);
    (std::array::from_fn(|k| if scale[k] > 0.0 { beta[k] / scale[k] } else { 0.0 }), sse)
}

/// How much less squared relative error the decode cache knee (c7 and where it starts) must
/// leave than the linear model, over the same samples, to be kept: two more parameters must
/// explain more than noise. On the vLLM CPU engine on an Intel Xeon (2 MiB L2 per core) it
/// leaves about half; on an AMD EPYC, where decode steps grow linearly with context to
/// 138,000 tokens, a few percent, and the profile keeps one rate (docs/profile.md).
pub const KNEE_GAIN: f64 = 0.15;

/// Least squared relative error the knee must remove outright (0.1% on one sample): on
/// exact, noise-free samples of a linear engine both fits leave rounding error only.
const KNEE_FLOOR: f64 = 1e-6;

/// Fewest fitted samples with decode context on each side of a candidate knee.
const KNEE_SIDE: usize = 3;

/// Candidate knees: decode context tokens per step, 512 to 131,072 by factors of √2.
fn knee_candidates() -> impl Iterator<Item = u64> {
    (18..=34).map(|k| (2f64.powf(f64::from(k) / 2.0)).round() as u64)
}

/// The best decode cache knee for these samples: the candidate (with at least
/// [`KNEE_SIDE`] decode samples within it and beyond it) whose fit with c7 leaves the least
/// squared relative error; the knee, the other coefficients (`[frontend, c0..c5]`), and that
/// error. `None` when the decode samples do not span any candidate. `rows` are the samples'
/// [`relative_rows`].
fn best_knee(
    used: &[&ProfileSample],
    rows: &[[f64; TERMS]],
    max_batch_tokens: u32,
    chunked: bool,
) -> Option<(CacheKnee, [f64; TERMS], f64)> {
    let mut best: Option<(CacheKnee, [f64; TERMS], f64)> = None;
    let linear = FittedCost::new([0.0; FITTED_TERMS]);
    let steps: Vec<Vec<BatchShape>> = used.iter().map(|s| sample_steps(s, max_batch_tokens, chunked)).collect();
    for w in knee_candidates() {
        let within = used.iter().filter(|s| s.decode_seqs > 0 && s.decode_context_tokens <= w).count();
        let beyond = used.iter().filter(|s| s.decode_context_tokens > w).count();
        if within < KNEE_SIDE || beyond < KNEE_SIDE {
            continue;
        }
        let with_knee: Vec<[f64; TERMS + 1]> = used
            .iter()
            .zip(&steps)
            .zip(rows)
            .map(|((s, steps), lin)| {
                let past = |b: &BatchShape| linear.beyond(b, w) as f64;
                let x = match s.metric {
                    SampleMetric::Ttft => steps.iter().map(past).sum(),
                    SampleMetric::Step => past(steps.last().expect("at least one step")),
                };
                std::array::from_fn(|k| if k < TERMS { lin[k] } else { x / s.seconds })
            })
            .collect();
        let (c, sse) = nnls_relative(&with_knee);
        if best.as_ref().is_none_or(|b| sse < b.2 - 1e-15) {
            best = Some((CacheKnee { tokens: w, extra_s: c[TERMS] }, std::array::from_fn(|k| c[k]), sse));
        }
    }
    best
}

/// Refuses when a column is (numerically) a combination of the others: modified
/// Gram-Schmidt in term order.
fn identifiable<const N: usize>(rows: &[[f64; N]]) -> Result<(), FitError> {
    // Below this share of its own norm left after projecting out the other terms, a term is
    // taken as determined by them (noise-free collinear columns leave ~1e-15).
    const INDEPENDENT: f64 = 1e-6;
    let n = rows.len();
    let cols: Vec<Vec<f64>> = (0..N).map(|k| rows.iter().map(|r| r[k]).collect()).collect();
    let mut basis: Vec<(usize, Vec<f64>)> = Vec::new();
    for (k, col) in cols.iter().enumerate() {
        let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 {
            return Err(FitError::Undetermined {
                term: term_name(k),
                others: "the rest: it is zero in every sample".into(),
                hint: term_hint(k),
            });
        }
        let mut v = col.clone();
        let mut involved = Vec::new();
        for (j, q) in &basis {
            let d: f64 = (0..n).map(|i| v[i] * q[i]).sum();
            if (d / norm).abs() > INDEPENDENT {
                involved.push(*j);
            }
            for i in 0..n {
                v[i] -= d * q[i];
            }
        }
        let left = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if left / norm < INDEPENDENT {
            let others: Vec<&str> = involved.iter().map(|&j| term_name(j)).collect();
            return Err(FitError::Undetermined { term: term_name(k), others: others.join(", "), hint: term_hint(k) });
        }
        basis.push((k, v.iter().map(|x| x / left).collect()));
    }
    Ok(())
}

/// Non-negative least squares of `min Σ (1 − x·β)²` given the normal equations `g β = b`,
/// by trying every set of free terms (2^N small systems: 128, or 256 with c7) and keeping
/// the best feasible one: exact, and deterministic. The coefficients and their sum of
/// squares.
fn nnls<const N: usize>(g: &[[f64; N]; N], b: &[f64; N], yy: f64) -> ([f64; N], f64) {
    let mut best = ([0.0; N], yy);
    for mask in 1u32..(1 << N) {
        let idx: Vec<usize> = (0..N).filter(|k| mask & (1 << k) != 0).collect();
        let Some(sol) = solve(g, b, &idx) else { continue };
        if sol.iter().any(|&v| v < 0.0) {
            continue;
        }
        let mut beta = [0.0; N];
        for (&k, &v) in idx.iter().zip(&sol) {
            beta[k] = v;
        }
        // Σ(1 − xβ)² = yy − 2βb + βGβ
        let mut sse = yy;
        for i in 0..N {
            sse -= 2.0 * beta[i] * b[i];
            for j in 0..N {
                sse += beta[i] * g[i][j] * beta[j];
            }
        }
        if sse < best.1 - 1e-15 {
            best = (beta, sse);
        }
    }
    best
}

/// Solves the normal equations restricted to `idx` (Gaussian elimination with partial
/// pivoting); `None` when singular.
fn solve<const N: usize>(g: &[[f64; N]; N], b: &[f64; N], idx: &[usize]) -> Option<Vec<f64>> {
    let n = idx.len();
    let mut a: Vec<Vec<f64>> = idx.iter().map(|&i| idx.iter().map(|&j| g[i][j]).chain([b[i]]).collect()).collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-13 {
            return None;
        }
        a.swap(col, pivot);
        for row in 0..n {
            if row != col {
                let f = a[row][col] / a[col][col];
                let p = a[col].clone();
                for (x, y) in a[row][col..].iter_mut().zip(&p[col..]) {
                    *x -= f * y;
                }
            }
        }
    }
    Some((0..n).map(|i| a[i][n] / a[i][i]).collect())
}

/// A model's quality on samples (what [`fit`] reports for the model it fits).
pub fn quality(cost: FittedCost, samples: &[ProfileSample], max_batch_tokens: u32, chunked: bool) -> Fit {
    let residuals: Vec<Residual> = samples
        .iter()
        .map(|s| Residual {
            class: s.class,
            measured_s: s.seconds,
            predicted_s: predict(&cost, s, max_batch_tokens, chunked),
            held_out: s.held_out,
        })
        .collect();
    let fitted: Vec<&Residual> = residuals.iter().filter(|r| !r.held_out).collect();
    let (r2, rmse_s) = r2_rmse(&fitted).unwrap_or((1.0, 0.0));
    let sse_rel = fitted.iter().map(|r| ((r.predicted_s - r.measured_s) / r.measured_s).powi(2)).sum();
    let classes = ProbeClass::ALL
        .iter()
        .filter_map(|&c| {
            let rs: Vec<&Residual> = fitted.iter().copied().filter(|r| r.class == c).collect();
            if rs.is_empty() {
                return None;
            }
            let mape = 100.0 * rs.iter().map(|r| ((r.predicted_s - r.measured_s) / r.measured_s).abs()).sum::<f64>() / rs.len() as f64;
            Some(ClassFit { class: c.as_str().into(), samples: rs.len() as u64, r2: r2_rmse(&rs).map(|x| x.0), mape_pct: mape })
        })
        .collect();
    Fit { cost, max_batch_tokens, r2, rmse_s, samples: fitted.len(), sse_rel, classes, residuals }
}

/// R² and RMSE; `None` when fewer than two values or they do not vary.
fn r2_rmse(rs: &[&Residual]) -> Option<(f64, f64)> {
    if rs.len() < 2 {
        return None;
    }
    let mean = rs.iter().map(|r| r.measured_s).sum::<f64>() / rs.len() as f64;
    let ss_res: f64 = rs.iter().map(|r| (r.measured_s - r.predicted_s).powi(2)).sum();
    let ss_tot: f64 = rs.iter().map(|r| (r.measured_s - mean).powi(2)).sum();
    (ss_tot > 0.0).then(|| (1.0 - ss_res / ss_tot, (ss_res / rs.len() as f64).sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use simctl_engine::cost::StepCostModel;

    const TRUTH: [f64; FITTED_TERMS] = [2e-3, 5e-5, 1e-9, 2e-9, 3e-4, 4e-8];

    fn sample(class: ProbeClass, metric: SampleMetric, prompt: u32, cached: u32, d: u32, dctx: u64) -> ProfileSample {
        ProfileSample::new(class, metric, prompt, cached, d, dctx, 0.0)
    }

    fn plan() -> Vec<ProfileSample> {
        let mut v = Vec::new();
        for p in [16, 100, 511, 512, 1000, 1024, 1025, 2048, 2049, 3001, 4095] {
            v.push(sample(ProbeClass::Prefill, SampleMetric::Ttft, p, 0, 0, 0));
        }
        for n in [1, 4, 16, 64] {
            for ctx in [32u64, 1500] {
                v.push(sample(ProbeClass::Decode, SampleMetric::Step, 0, 0, n, u64::from(n) * ctx));
            }
        }
        for (n, p) in [(4, 300), (16, 1000)] {
            v.push(sample(ProbeClass::Mixed, SampleMetric::Step, p, 0, n, u64::from(n) * 100));
        }
        for pre in [512, 2048] {
            v.push(sample(ProbeClass::Prefix, SampleMetric::Ttft, pre + 64, pre, 0, 0));
        }
        v
    }

    /// Samples measured exactly by the simulator's own model (the one implementation).
    fn measured(truth: &FittedCost, budget: u32) -> Vec<ProfileSample> {
        plan()
            .into_iter()
            .map(|mut s| {
                let steps = sample_steps(&s, budget, true);
                s.seconds = match s.metric {
                    SampleMetric::Ttft => {
                        truth.request_latency().as_secs_f64() + steps.iter().map(|b| truth.step_time(b).as_secs_f64()).sum::<f64>()
                    }
                    SampleMetric::Step => truth.step_time(steps.last().unwrap()).as_secs_f64(),
                };
                s
            })
            .collect()
    }

    #[test]
    fn recovers_known_coefficients_and_the_budget() {
        let truth = FittedCost { frontend: SimDuration::from_micros(7500), ..FittedCost::new(TRUTH) };
        let samples = measured(&truth, 2048);
        let fit = fit_best_budget(&samples, &[512, 1024, 2048, 4096], true).unwrap();
        assert_eq!(fit.max_batch_tokens, 2048);
        // The step that prompt 2049 needs more than 2048 shows: a budget of 2048.
        let one_seq_step = truth.c[0] + truth.c[4];
        assert_eq!(detect_budget(&sample_ttfts(&samples), &[512, 1024, 2048], one_seq_step), Some(2048));
        assert_eq!(detect_budget(&sample_ttfts(&samples), &[512, 1024], one_seq_step), None);
        // A jump in the medians that the runs do not bear out is noise.
        let noisy = |p: u32| match p {
            512 => vec![10.0, 11.0, 12.0, 13.0, 14.0],
            513 => vec![9.0, 12.9, 13.0, 13.1, 20.0],
            _ => vec![],
        };
        assert_eq!(detect_budget(&noisy, &[512], 0.001), None);
        let clear = |p: u32| if p == 512 { vec![10.0, 10.1, 10.2] } else { vec![11.0, 11.1, 11.2] };
        assert_eq!(detect_budget(&clear, &[512], 1.0), Some(512));
        for (got, want) in fit.cost.c.iter().zip(TRUTH) {
            assert!((got / want - 1.0).abs() < 1e-4, "{got} vs {want}");
        }
        assert!((fit.cost.frontend.as_secs_f64() / 7.5e-3 - 1.0).abs() < 1e-4);
        assert!(fit.r2 > 0.999_999);
        let classes: Vec<&str> = fit.classes.iter().map(|c| c.class.as_str()).collect();
        assert_eq!(classes, ["prefill", "decode", "mixed", "prefix"]);
        assert!(fit.classes.iter().all(|c| c.mape_pct < 1e-3));
        assert_eq!(fit.cost.beyond_cache, None, "a linear engine gets no knee");
    }

    #[test]
    fn a_decode_cache_knee_is_found_where_the_steps_bend() {
        // Past 4,096 tokens of decode context a step pays 3e-7 s more per token (c5 4e-8).
        let knee = CacheKnee { tokens: 4096, extra_s: 3e-7 };
        let truth = FittedCost { frontend: SimDuration::from_micros(7500), beyond_cache: Some(knee), ..FittedCost::new(TRUTH) };
        let samples = measured(&truth, 2048);
        let fit = fit(&samples, 2048, true).unwrap();
        let got = fit.cost.beyond_cache.expect("the knee");
        assert_eq!(got.tokens, 4096);
        assert!((got.extra_s / knee.extra_s - 1.0).abs() < 1e-6, "{got:?}");
        for (got, want) in fit.cost.c.iter().zip(TRUTH) {
            assert!((got / want - 1.0).abs() < 1e-4, "{got} vs {want}");
        }
        assert!(fit.classes.iter().all(|c| c.mape_pct < 1e-3), "{:?}", fit.classes);
        // The linear model alone misses the long decode steps: that is what the knee earns.
        let linear = fit_linear_only(&samples);
        assert!(linear.classes.iter().find(|c| c.class == "decode").unwrap().mape_pct > 5.0, "{:?}", linear.classes);
    }

    /// The fit without the knee (every candidate refused), for comparison.
    fn fit_linear_only(samples: &[ProfileSample]) -> Fit {
        let used: Vec<&ProfileSample> = samples.iter().filter(|s| !s.held_out).collect();
        let (c, _) = nnls_relative(&relative_rows(&used, 2048, true));
        let cost = FittedCost { frontend: SimDuration::from_secs_f64(c[0]), ..FittedCost::new(std::array::from_fn(|k| c[k + 1])) };
        quality(cost, samples, 2048, true)
    }

    #[test]
    fn the_fit_prices_steps_exactly_as_the_simulator_does() {
        // Odd chunks, a cached prefix and decodes in one step: the fit's prediction of a step
        // sample is the engine's step time of the same shape.
        let truth = FittedCost::new(TRUTH);
        let s = ProfileSample { seconds: 1.0, ..sample(ProbeClass::Mixed, SampleMetric::Step, 777, 129, 3, 901) };
        let mut b = BatchShape::default();
        b.add_decode(300);
        b.add_decode(300);
        b.add_decode(301);
        b.add_prefill_chunk(777 - 129, 129);
        assert_eq!(sample_steps(&s, 8192, true), vec![b]);
        assert_eq!(predict(&truth, &s, 8192, true), truth.step_secs(&b));
    }

    #[test]
    fn negative_coefficients_are_not_fitted() {
        let truth = FittedCost { frontend: SimDuration::from_millis(3), ..FittedCost::new([2e-3, 5e-5, 0.0, 2e-9, 3e-4, 4e-8]) };
        let mut samples = measured(&truth, 2048);
        // Noise that pulls the quadratic term below zero in plain least squares.
        for (i, s) in samples.iter_mut().enumerate() {
            if s.class == ProbeClass::Prefill {
                s.seconds *= if i % 2 == 0 { 0.99 } else { 1.0 };
            }
        }
        let fit = fit(&samples, 2048, true).unwrap();
        assert!(fit.cost.c.iter().all(|&c| c >= 0.0), "{:?}", fit.cost.c);
    }

    #[test]
    fn samples_that_cannot_determine_the_model_are_refused() {
        let truth = FittedCost::new(TRUTH);
        let mut samples = measured(&truth, 8192);
        // One batch size only (max_num_seqs 1), no mixed steps: the per-sequence cost merges
        // with the step cost and the frontend.
        samples.retain(|s| {
            matches!(s.class, ProbeClass::Prefill | ProbeClass::Prefix) || (s.class == ProbeClass::Decode && s.decode_seqs == 1)
        });
        let err = fit(&samples, 8192, true).unwrap_err();
        assert!(matches!(err, FitError::Undetermined { term: "c4 per decode sequence", .. }), "{err}");
        assert!(err.to_string().contains("decode probes at more than one batch size"), "{err}");
        assert_eq!(fit(&samples[..3], 8192, true).unwrap_err(), FitError::TooFewSamples(3));
        let mut bad = samples.clone();
        bad[0].seconds = f64::NAN;
        assert!(matches!(fit(&bad, 8192, true), Err(FitError::BadSample { index: 0, .. })));
    }
}
