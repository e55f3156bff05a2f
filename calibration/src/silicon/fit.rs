//! Fitting one group's roofline efficiencies to its rows.

use simctl_engine::catalogue::{Backend, RooflineParams};
use simctl_engine::kernels::KernelOverheads;
use simctl_engine::time::SimDuration;

use super::replay::{Client, Deployment, GpuModel, predict};
use super::row::SiliconRow;

/// Which side of the deterministic split a row is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// Rows the constants are fitted on.
    Fit,
    /// Rows held out: errors reported, never fitted.
    Held,
}

impl Split {
    /// `fit` or `held`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Fit => "fit",
            Split::Held => "held",
        }
    }
}

/// One row in four is held out, by a hash (FNV-1a) of its deployment and workload (every
/// column but the concurrency), so a held-out concurrency sweep is wholly unseen.
pub fn split_of(row: &SiliconRow) -> Split {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in row.config.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    if h.is_multiple_of(4) { Split::Held } else { Split::Fit }
}

/// The group a row's constants belong to: its engine and catalogue GPU.
pub fn group_key(row: &SiliconRow, dep: &Deployment) -> (Backend, String) {
    (row.backend, dep.gpu.name.clone())
}

/// A group's fitted constants and how well they fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitResult {
    /// The constants.
    pub defaults: RooflineParams,
    /// The loss at them: the trimmed mean of |ln(predicted / measured)| over TTFT and TPOT.
    pub loss: f64,
    /// Simulations of the whole group the search ran.
    pub evaluations: u32,
}

// Bounds of the search, in the units of `RooflineParams`.
const MFU: (f64, f64) = (0.05, 1.0);
const MBU: (f64, f64) = (0.2, 1.0);
const OVERHEAD_S: (f64, f64) = (10e-6, 50e-3);
const SEQ_OVERHEAD_S: (f64, f64) = (1e-6, 2e-3);
const FRONTEND_S: (f64, f64) = (0.1e-3, 0.5);
const LAYER_OVERHEAD_S: (f64, f64) = (0.1e-6, 1e-3);
const MOE_EFFICIENCY: (f64, f64) = (0.05, 1.0);
const DIMS: usize = 8;
// Share of the worst errors the loss ignores: rows whose queueing the model gets wrong
// (KV capacity, preemption) should not pull every other row's constants.
const TRIM: f64 = 0.1;

fn clamp_exp(x: f64, (lo, hi): (f64, f64)) -> f64 {
    x.exp().clamp(lo, hi)
}

fn decode(x: &[f64; DIMS]) -> RooflineParams {
    RooflineParams {
        mfu: clamp_exp(x[0], MFU),
        mbu: clamp_exp(x[1], MBU),
        step_overhead: SimDuration::from_secs_f64(clamp_exp(x[2], OVERHEAD_S)),
        seq_overhead: SimDuration::from_secs_f64(clamp_exp(x[3], SEQ_OVERHEAD_S)),
        frontend: SimDuration::from_secs_f64(clamp_exp(x[4], FRONTEND_S)),
        layer_overhead: SimDuration::from_secs_f64(clamp_exp(x[5], LAYER_OVERHEAD_S)),
        moe_efficiency: clamp_exp(x[6], MOE_EFFICIENCY),
        moe_efficiency_fp4: clamp_exp(x[7], MOE_EFFICIENCY),
    }
}

fn encode(d: &RooflineParams) -> [f64; DIMS] {
    [
        d.mfu.ln(),
        d.mbu.ln(),
        d.step_overhead.as_secs_f64().max(OVERHEAD_S.0).ln(),
        d.seq_overhead.as_secs_f64().max(SEQ_OVERHEAD_S.0).ln(),
        d.frontend.as_secs_f64().max(FRONTEND_S.0).ln(),
        d.layer_overhead.as_secs_f64().max(LAYER_OVERHEAD_S.0).ln(),
        d.moe_efficiency.clamp(MOE_EFFICIENCY.0, MOE_EFFICIENCY.1).ln(),
        d.moe_efficiency_fp4.clamp(MOE_EFFICIENCY.0, MOE_EFFICIENCY.1).ln(),
    ]
}

/// Where every group's search starts: middling efficiencies and overheads of the order the
/// engines' own profiles show (about a millisecond a step, tens of microseconds a layer).
pub const START: RooflineParams = RooflineParams {
    mfu: 0.45,
    mbu: 0.7,
    step_overhead: SimDuration::from_micros(1000),
    seq_overhead: SimDuration::from_micros(30),
    layer_overhead: SimDuration::from_micros(20),
    moe_efficiency: 0.5,
    moe_efficiency_fp4: 0.8,
    frontend: SimDuration::from_millis(20),
};

/// At most `n` of `rows`, an even stride over them (the rows keep their order), so a
/// search over a large group costs what one over `n` rows does.
pub fn search_subset(rows: &[(SiliconRow, Deployment)], n: usize) -> Vec<(SiliconRow, Deployment)> {
    if rows.len() <= n.max(1) {
        return rows.to_vec();
    }
    (0..n).map(|i| rows[i * rows.len() / n].clone()).collect()
}

/// Log errors of every row under `d` (TTFT then TPOT per row); a row that cannot run
/// counts as a large error.
pub fn log_errors(rows: &[(SiliconRow, Deployment)], d: &GpuModel, client: Client) -> Vec<f64> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(rows.len().max(1));
    let chunk = rows.len().div_ceil(threads.max(1)).max(1);
    let mut out = Vec::with_capacity(rows.len() * 2);
    std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut e = Vec::with_capacity(part.len() * 2);
                    for (row, dep) in part {
                        match predict(row, dep, d, client) {
                            Ok(p) => {
                                e.push((p.ttft_ms / row.ttft_ms).ln());
                                e.push((p.tpot_ms / row.tpot_ms).ln());
                            }
                            Err(_) => e.extend([5.0, 5.0]),
                        }
                    }
                    e
                })
            })
            .collect();
        for h in handles {
            out.extend(h.join().expect("replay thread"));
        }
    });
    out
}

fn loss(errors: &[f64]) -> f64 {
    let mut a: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    a.sort_by(f64::total_cmp);
    let keep = ((a.len() as f64) * (1.0 - TRIM)).ceil().max(1.0) as usize;
    a.iter().take(keep).sum::<f64>() / keep as f64
}

/// Fits a group's constants to `rows` from `start` by a Nelder-Mead search over their
/// logarithms (at most `max_evaluations` simulations of the group).
pub fn fit_group(rows: &[(SiliconRow, Deployment)], start: RooflineParams, client: Client, max_evaluations: u32) -> FitResult {
    let at = |x: &[f64]| -> [f64; DIMS] { x.try_into().expect("DIMS coordinates") };
    let f = |x: &[f64]| loss(&log_errors(rows, &GpuModel::Roofline(decode(&at(x))), client));
    let (x, loss, evaluations) = nelder_mead(f, &encode(&start), max_evaluations);
    FitResult { defaults: decode(&at(&x)), loss, evaluations }
}

/// Bounds of the kernel model's two engine overheads: at most a few milliseconds a step and
/// a few hundred microseconds a sequence (their physical range: an engine's CPU work).
const KERNEL_STEP_S: (f64, f64) = (1e-6, 5e-3);
const KERNEL_SEQ_S: (f64, f64) = (0.1e-6, 200e-6);
/// A layer's untimed small kernels, every step: a few launches of a few microseconds.
const KERNEL_LAYER_S: (f64, f64) = (0.1e-6, 100e-6);
/// Launching one layer's kernels from the CPU: a fraction of a microsecond to a millisecond
/// (AIConfigurator's own vLLM figure is 0.8 ms a layer per request).
const KERNEL_PREFILL_LAYER_S: (f64, f64) = (0.1e-6, 1e-3);

/// Where the overhead search of `backend` starts: a tenth of a millisecond a step or ten
/// microseconds a layer, tens of microseconds a sequence, a few hundred microseconds a prefill
/// layer (the order engine profiles show). A constant that starts at zero is not searched.
///
/// vLLM's time outside the kernels every step is a per-layer constant, not a per-step one:
/// held out by GPU, its TPOT error is 6.2-11.1% with a per-layer constant and 9.2-12.8%
/// with a per-step one (with both, 6.5-11.2%), and the fitted per-layer value is stable
/// (8-17 µs over the folds, where the per-step one moved between 0.2 and 1 ms). SGLang's two
/// GPUs with data, from two harnesses, do not tell the two apart (a per-layer constant: H100
/// TPOT 20.5% instead of 13.3%), so it keeps the per-step one.
pub fn kernel_start(backend: Backend) -> KernelOverheads {
    let (step, per_layer) = match backend {
        Backend::Sglang => (SimDuration::from_micros(100), SimDuration::ZERO),
        Backend::Vllm | Backend::Trtllm => (SimDuration::ZERO, SimDuration::from_micros(10)),
    };
    // SGLang's MoE rows (one model on one GPU) cannot tell a MoE layer's dispatch from the
    // rest: it stays at zero there, not fitted.
    let prefill_per_moe_layer = match backend {
        Backend::Sglang => SimDuration::ZERO,
        Backend::Vllm | Backend::Trtllm => SimDuration::from_micros(300),
    };
    KernelOverheads {
        step,
        per_layer,
        per_seq: SimDuration::from_micros(20),
        prefill_per_layer: SimDuration::from_micros(300),
        prefill_per_moe_layer,
    }
}

/// The kernel model's engine overheads fitted to `rows` (a Nelder-Mead search over the
/// logarithms of those not zero in `start`, from `start`, at most `max_evaluations`
/// simulations of the rows), and the loss at them.
pub fn fit_overheads(
    rows: &[(SiliconRow, Deployment)],
    start: KernelOverheads,
    client: Client,
    max_evaluations: u32,
) -> (KernelOverheads, f64, u32) {
    let bounds = [KERNEL_STEP_S, KERNEL_LAYER_S, KERNEL_SEQ_S, KERNEL_PREFILL_LAYER_S, KERNEL_PREFILL_LAYER_S];
    let at = [start.step, start.per_layer, start.per_seq, start.prefill_per_layer, start.prefill_per_moe_layer];
    let free: Vec<usize> = (0..at.len()).filter(|&k| at[k] > SimDuration::ZERO).collect();
    let decode = |x: &[f64]| {
        let mut v = at;
        for (&k, &x) in free.iter().zip(x) {
            v[k] = SimDuration::from_secs_f64(clamp_exp(x, bounds[k]));
        }
        KernelOverheads { step: v[0], per_layer: v[1], per_seq: v[2], prefill_per_layer: v[3], prefill_per_moe_layer: v[4] }
    };
    let x0: Vec<f64> = free.iter().map(|&k| at[k].as_secs_f64().max(bounds[k].0).ln()).collect();
    let f = |x: &[f64]| loss(&log_errors(rows, &GpuModel::Kernels(decode(x)), client));
    if x0.is_empty() {
        return (start, f(&[]), 1);
    }
    let (x, l, n) = nelder_mead(f, &x0, max_evaluations);
    (decode(&x), l, n)
}

/// Minimises `f` from `x0` (Nelder-Mead, a first simplex a factor of 2 along each axis in log
/// space) with at most `max_evaluations` calls; the best point, its value and the calls made.
fn nelder_mead(f: impl Fn(&[f64]) -> f64, x0: &[f64], max_evaluations: u32) -> (Vec<f64>, f64, u32) {
    let d = x0.len();
    let mut simplex: Vec<(Vec<f64>, f64)> = vec![(x0.to_vec(), f(x0))];
    for k in 0..d {
        let mut x = x0.to_vec();
        x[k] += 0.7;
        let fx = f(&x);
        simplex.push((x, fx));
    }
    let mut evaluations = d as u32 + 1;
    while evaluations < max_evaluations {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        if simplex[d].1 - simplex[0].1 < 1e-4 {
            break;
        }
        let mut centroid = vec![0.0; d];
        for (x, _) in &simplex[..d] {
            for k in 0..d {
                centroid[k] += x[k] / d as f64;
            }
        }
        let towards = |t: f64| -> Vec<f64> { (0..d).map(|k| centroid[k] + t * (simplex[d].0[k] - centroid[k])).collect() };
        let xr = towards(-1.0);
        let fr = f(&xr);
        evaluations += 1;
        if fr < simplex[0].1 {
            let xe = towards(-2.0);
            let fe = f(&xe);
            evaluations += 1;
            simplex[d] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < simplex[d - 1].1 {
            simplex[d] = (xr, fr);
        } else {
            let xc = towards(0.5);
            let fc = f(&xc);
            evaluations += 1;
            if fc < simplex[d].1 {
                simplex[d] = (xc, fc);
            } else {
                let best = simplex[0].0.clone();
                for s in simplex.iter_mut().skip(1) {
                    for (x, b) in s.0.iter_mut().zip(&best) {
                        *x = b + 0.5 * (*x - b);
                    }
                    s.1 = f(&s.0);
                    evaluations += 1;
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (x, l) = simplex.swap_remove(0);
    (x, l, evaluations)
}
