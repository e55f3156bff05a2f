//! Default roofline efficiencies and overheads per GPU and serving engine.

use crate::time::SimDuration;

/// The serving engine whose measured behaviour a set of defaults reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// vLLM (the engine the simulator's scheduler follows).
    Vllm,
    /// SGLang.
    Sglang,
    /// TensorRT-LLM.
    Trtllm,
}

impl Backend {
    /// Lowercase name, as AIConfigurator's data and scenarios write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Vllm => "vllm",
            Backend::Sglang => "sglang",
            Backend::Trtllm => "trtllm",
        }
    }
    /// Parses `vllm`, `sglang` or `trtllm` (also `tensorrt-llm`).
    pub fn parse(s: &str) -> Option<Backend> {
        match s.trim().to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "vllm" => Some(Backend::Vllm),
            "sglang" => Some(Backend::Sglang),
            "trtllm" | "tensorrtllm" => Some(Backend::Trtllm),
            _ => None,
        }
    }
    /// Every backend.
    pub const ALL: [Backend; 3] = [Backend::Vllm, Backend::Sglang, Backend::Trtllm];
}

/// What the roofline model needs besides the GPU's and the model's datasheet numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RooflineParams {
    /// Fraction of the tensor-core peak (of the weights' format) achieved.
    pub mfu: f64,
    /// Fraction of HBM bandwidth achieved.
    pub mbu: f64,
    /// Fixed cost of every engine step.
    pub step_overhead: SimDuration,
    /// Cost of every sequence in a step: the engine's per-request CPU work (inputs,
    /// sampling, detokenising, streaming), which grows steps with the batch.
    pub seq_overhead: SimDuration,
    /// Fixed cost of every layer in every step: the kernels' launch and tail latency and,
    /// with tensor parallelism, the latency of the layer's two all-reduces.
    pub layer_overhead: SimDuration,
    /// Fraction of the dense GEMMs' mfu and mbu that MoE experts' grouped GEMMs reach
    /// (1: as fast; routing, permutation and small per-expert batches make them slower).
    pub moe_efficiency: f64,
    /// The same for experts stored in 4-bit formats (NVFP4, MXFP4, INT4), whose kernels
    /// differ (the data shows them much nearer the dense rate than FP8 experts).
    pub moe_efficiency_fp4: f64,
    /// Latency every request pays once, on its first token, outside the steps (HTTP,
    /// tokenisation, streaming back).
    pub frontend: SimDuration,
}

impl RooflineParams {
    /// The generic roofline: the datasheet model with [`crate::spec::DEFAULT_MFU`],
    /// [`crate::spec::DEFAULT_MBU`] and [`crate::spec::DEFAULT_STEP_OVERHEAD`] and no other
    /// overhead. GPUs and engines without measurements in the catalogue get these.
    pub const GENERIC: RooflineParams = RooflineParams {
        mfu: crate::spec::DEFAULT_MFU,
        mbu: crate::spec::DEFAULT_MBU,
        step_overhead: crate::spec::DEFAULT_STEP_OVERHEAD,
        seq_overhead: SimDuration::ZERO,
        layer_overhead: SimDuration::ZERO,
        moe_efficiency: 1.0,
        moe_efficiency_fp4: 1.0,
        frontend: SimDuration::ZERO,
    };
}

/// Constants fitted to measured serving rows, per engine and catalogue GPU.
///
/// Source: NVIDIA AIConfigurator's `silicon_sample.csv` (github.com/ai-dynamo/aiconfigurator,
/// commit 095f58a51c4ca8e61b66ec108d86f223f8d559ce, Apache-2.0), the `agg` rows whose model
/// the catalogue has, fitted on three quarters of each group's deployments by
/// `cargo run --release -p simctl-calibration --example fit_silicon` (see
/// `docs/zero-shot.md`, which also lists the errors on the quarter held out).
/// The search and its residuals: `docs/zero-shot.md`. An `mbu` of 1 is the search's bound:
/// the decode steps of these deployments read at the datasheet bandwidth or the model
/// counts more bytes than they read (see the doc's caveats).
const FITTED: &[(Backend, &str, RooflineParams)] = &[
    // vLLM on b200: fitted on 377 rows.
    (Backend::Vllm, "b200", fitted(0.228, 1.0, 960, 27.9, 69.5, 0.58, 0.919, 52.6)),
    // vLLM on b300: fitted on 74 rows.
    (Backend::Vllm, "b300", fitted(0.263, 1.0, 191, 52.2, 94.9, 0.772, 1.0, 61.3)),
    // vLLM on h100-sxm: fitted on 96 rows.
    (Backend::Vllm, "h100-sxm", fitted(0.581, 0.92, 705, 94.2, 61.5, 0.387, 0.675, 34.1)),
    // vLLM on h200: fitted on 243 rows.
    (Backend::Vllm, "h200", fitted(0.469, 1.0, 938, 21.1, 63.8, 0.263, 0.617, 41.6)),
];

/// `(mfu, mbu, step µs, per-sequence µs, per-layer µs, MoE efficiency, 4-bit MoE
/// efficiency, frontend ms)` as `fit_silicon` prints them.
#[allow(clippy::too_many_arguments)]
const fn fitted(mfu: f64, mbu: f64, step_us: u64, seq_us: f64, layer_us: f64, moe: f64, moe_fp4: f64, frontend_ms: f64) -> RooflineParams {
    RooflineParams {
        mfu,
        mbu,
        step_overhead: SimDuration::from_micros(step_us),
        seq_overhead: SimDuration::from_nanos((seq_us * 1e3) as u64),
        layer_overhead: SimDuration::from_nanos((layer_us * 1e3) as u64),
        moe_efficiency: moe,
        moe_efficiency_fp4: moe_fp4,
        frontend: SimDuration::from_nanos((frontend_ms * 1e6) as u64),
    }
}

/// The defaults for `gpu` (a catalogue name) served by `backend`: the fitted constants
/// where the data has that engine on that GPU, [`RooflineParams::GENERIC`] otherwise.
pub fn roofline_defaults(gpu: &str, backend: Backend) -> RooflineParams {
    FITTED.iter().find(|(b, g, _)| *b == backend && *g == gpu).map_or(RooflineParams::GENERIC, |(_, _, p)| *p)
}
