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

/// Default model FLOPs utilisation of the roofline model. Assumed: dense prefill kernels
/// on Hopper reach 50-60% of peak in vLLM (a calibrated profile replaces this).
pub const DEFAULT_MFU: f64 = 0.55;
/// Default memory bandwidth utilisation of the roofline model (decode GEMVs reach 80-90%
/// of HBM bandwidth; assumed, calibrate to replace).
pub const DEFAULT_MBU: f64 = 0.85;
/// Default fixed cost of one engine step: scheduling, sampling and launches with CUDA
/// graphs (assumed order of magnitude for vLLM v1; calibrate to replace).
pub const DEFAULT_STEP_OVERHEAD: SimDuration = SimDuration::from_micros(200);

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
    /// The generic roofline: the datasheet model with [`DEFAULT_MFU`],
    /// [`DEFAULT_MBU`] and [`DEFAULT_STEP_OVERHEAD`] and no other
    /// overhead. GPUs and engines without measurements in the catalogue get these.
    pub const GENERIC: RooflineParams = RooflineParams {
        mfu: DEFAULT_MFU,
        mbu: DEFAULT_MBU,
        step_overhead: DEFAULT_STEP_OVERHEAD,
        seq_overhead: SimDuration::ZERO,
        layer_overhead: SimDuration::ZERO,
        moe_efficiency: 1.0,
        moe_efficiency_fp4: 1.0,
        frontend: SimDuration::ZERO,
    };
}

/// The roofline's defaults for `gpu` (a catalogue name) served by `backend`:
/// [`RooflineParams::GENERIC`] for every GPU and engine.
///
/// The roofline is the fallback for GPUs and engines without measured kernel tables (MIG
/// slices, TensorRT-LLM) and what `perf_model = roofline` asks for. Per-GPU constants fitted
/// to serving measurements used to be the defaults here; they fitted their own rows and
/// missed independent runs badly (issue 22), so the zero-shot model is now composed from
/// measured kernel times ([`crate::kernels`]) and the roofline keeps datasheet-level
/// efficiencies.
pub fn roofline_defaults(_gpu: &str, _backend: Backend) -> RooflineParams {
    RooflineParams::GENERIC
}
