//! Validated input: what a scenario declares, in engine units.
//!
//! The DSL lowers a `.scn` file into a [`ScenarioSpec`]; [`ScenarioSpec::validate`] is the
//! one separate pass that names the offending field and yields a [`ValidSpec`], the only
//! value a [`crate::Simulation`] runs.

use crate::catalogue::{GpuSpec, ModelSpec};
use crate::cost::{RatesCost, RooflineCost, StepCostModel};
use crate::time::SimDuration;

mod router;
mod validate;
mod workload;

pub use router::*;
pub use validate::{SpecWarning, ValidSpec};
pub use workload::*;

/// vLLM's default KV block size in tokens (`--block-size`, vLLM 0.6+ on CUDA).
pub const DEFAULT_BLOCK_SIZE: u32 = 16;
/// vLLM's default `--gpu-memory-utilization`.
pub const DEFAULT_GPU_MEMORY_UTILIZATION: f64 = 0.90;
/// vLLM v1's default `--max-num-batched-tokens` for online serving on large GPUs.
pub const DEFAULT_MAX_BATCH_TOKENS: u32 = 8192;
/// vLLM's default `--max-num-seqs`.
pub const DEFAULT_MAX_SEQS: u32 = 256;

pub use crate::catalogue::{DEFAULT_MBU, DEFAULT_MFU, DEFAULT_STEP_OVERHEAD};

/// A whole scenario, ready to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioSpec {
    /// Name shown in reports.
    pub name: String,
    /// Base seed of the run.
    pub seed: u64,
    /// The served model (KV bytes per token, weights, roofline shapes).
    pub model: ModelSpec,
    /// Hardware kinds the pools refer to by index.
    pub hardware: Vec<HardwareSpec>,
    /// Pools of instances, in declaration order.
    pub pools: Vec<PoolSpec>,
    /// KV-transfer paths between pools.
    pub links: Vec<LinkSpec>,
    /// The routing policies.
    pub router: RouterSpec,
    /// How fresh the router's gauges are.
    pub telemetry: TelemetrySpec,
    /// Arrivals and request shapes.
    pub workload: WorkloadSpec,
    /// Service-level objectives that define a good request.
    pub slo: SloSpec,
    /// How long to run.
    pub run: RunSpec,
    /// The scenario's own sweep (used by `simctl sweep` when no `--grid` is given).
    pub sweep: Option<SweepSpec>,
}

/// Axes and replication of a sweep, as `simctl sweep` takes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepSpec {
    /// Axes in `--grid` syntax: `NAME=a..b`, `NAME=a..b:step`, `NAME=x,y,z`.
    pub grid: Vec<String>,
    /// Runs per point.
    pub seeds: Option<u32>,
}

/// One hardware kind: cost, memory and a performance model.
#[derive(Clone, Debug, PartialEq)]
pub struct HardwareSpec {
    /// Name used by pools.
    pub name: String,
    /// Price of one GPU of this kind per hour, in dollars.
    pub cost_per_hour: f64,
    /// GPU memory in bytes (per GPU), if known.
    pub memory_bytes: Option<u64>,
    /// Explicit KV capacity in tokens per instance, overriding the memory-derived one.
    pub kv_capacity_tokens: Option<u64>,
    /// KV-transfer latency to this hardware, overriding the link's latency.
    pub kv_transfer_latency: Option<SimDuration>,
    /// How step times are computed.
    pub perf: PerfSpec,
}

/// The step cost model of a hardware kind.
#[derive(Clone, Debug, PartialEq)]
pub enum PerfSpec {
    /// Fixed token rates, as the original lab's virtual GPUs.
    Rates {
        /// Prompt tokens per second.
        prefill_tok_s: f64,
        /// Decode tokens per second (all sequences of a step together).
        decode_tok_s: f64,
        /// Fixed cost added to every step.
        step_overhead: SimDuration,
    },
    /// Roofline from a GPU's datasheet and the model's shapes.
    Roofline {
        /// The GPU.
        gpu: GpuSpec,
        /// Efficiencies and overheads (the catalogue's for the GPU and engine unless the
        /// scenario sets them).
        params: crate::catalogue::RooflineParams,
    },
    /// Step times composed from measured kernel times (the catalogue's zero-shot model
    /// where the GPU has tables for the backend, [`crate::kernels`]).
    Kernels {
        /// The GPU.
        gpu: GpuSpec,
        /// The serving engine whose tables are read.
        backend: crate::catalogue::Backend,
        /// The engine's time outside the kernels.
        overheads: crate::kernels::KernelOverheads,
        /// Experts spread over the instance's GPUs (expert parallelism, vLLM's
        /// `--enable-expert-parallel`) rather than split by tensor parallelism.
        expert_parallel: bool,
    },
    /// Coefficients fitted from measurements (a calibration profile).
    Fitted {
        /// The fitted step cost model and its per-request frontend latency.
        cost: crate::cost::FittedCost,
        /// Tensor-parallel degree the coefficients were measured at (a profile's
        /// `hardware.gpus`); instances at another degree are an error. `None`: any.
        tp: Option<u32>,
    },
}

impl PerfSpec {
    /// The step cost model of an instance of this hardware at tensor-parallel degree `tp`.
    pub fn cost_model(&self, model: &ModelSpec, tp: u32) -> Box<dyn StepCostModel> {
        match self {
            PerfSpec::Rates { prefill_tok_s, decode_tok_s, step_overhead } => Box::new(RatesCost {
                sec_per_prefill_token: 1.0 / prefill_tok_s,
                sec_per_decode_token: 1.0 / decode_tok_s,
                overhead: *step_overhead,
            }),
            PerfSpec::Roofline { gpu, params } => Box::new(RooflineCost::with_defaults(model, gpu, tp, params)),
            PerfSpec::Kernels { gpu, backend, overheads, expert_parallel } => match crate::kernels::tables(&gpu.name, *backend) {
                Some(t) => Box::new(crate::kernels::KernelCost::new(model, gpu, tp, t, *overheads, *expert_parallel)),
                // Validation refuses kernel models without tables; the datasheet roofline else.
                None => Box::new(RooflineCost::with_defaults(model, gpu, tp, &crate::catalogue::RooflineParams::GENERIC)),
            },
            PerfSpec::Fitted { cost, .. } => Box::new(*cost),
        }
    }
}

/// Role of a pool and of its instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs prefills only; finished prefills move to a decode pool.
    Prefill,
    /// Runs decodes of sequences prefilled elsewhere.
    Decode,
    /// Runs both phases of a request (aggregated serving).
    Mixed,
}

impl Role {
    /// Lowercase name as written in scenarios.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Prefill => "prefill",
            Role::Decode => "decode",
            Role::Mixed => "mixed",
        }
    }
    /// Whether new requests may start here.
    pub fn takes_prefill(self) -> bool {
        matches!(self, Role::Prefill | Role::Mixed)
    }
}

/// Scheduler settings of an engine replica (vLLM names).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineSpec {
    /// Token budget of one step (`--max-num-batched-tokens`).
    pub max_batch_tokens: u32,
    /// Sequences in one step at most (`--max-num-seqs`).
    pub max_seqs: u32,
    /// Whether long prefills are split across steps (`--enable-chunked-prefill`).
    pub chunked_prefill: bool,
    /// Tokens per KV block (`--block-size`).
    pub block_size: u32,
    /// Share of GPU memory the engine may use (`--gpu-memory-utilization`).
    pub gpu_memory_utilization: f64,
    /// Whether released full KV blocks are kept for reuse (`--enable-prefix-caching`, on by
    /// default in vLLM v1).
    pub prefix_caching: bool,
    /// Which engine's batching rule its instances follow.
    pub scheduler: Scheduler,
}

/// The batching rule of an engine replica ([`crate::instance`] implements both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheduler {
    /// The serving engine the hardware's performance model names (`backend = sglang` picks
    /// [`Scheduler::Sglang`]); vLLM's rule otherwise.
    #[default]
    Auto,
    /// vLLM v1: decodes first, then chunked prefills, in one step under one token budget;
    /// admission needs only the blocks of the step.
    Vllm,
    /// SGLang: a step is either a prefill batch (chunks of waiting requests, up to the token
    /// budget) or a decode batch, prefills first; a request is admitted only when the KV
    /// cache also holds its whole output and a decaying share of what the running requests
    /// still have to generate.
    Sglang,
}

impl Scheduler {
    /// Lowercase name, as scenarios write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduler::Auto => "auto",
            Scheduler::Vllm => "vllm",
            Scheduler::Sglang => "sglang",
        }
    }
    /// Parses `auto`, `vllm` or `sglang`.
    pub fn parse(s: &str) -> Option<Scheduler> {
        match s {
            "auto" => Some(Scheduler::Auto),
            "vllm" => Some(Scheduler::Vllm),
            "sglang" => Some(Scheduler::Sglang),
            _ => None,
        }
    }
    /// The rule pools on `backend` follow by default (TensorRT-LLM's is not modelled: vLLM's).
    pub fn of_backend(backend: crate::catalogue::Backend) -> Scheduler {
        match backend {
            crate::catalogue::Backend::Sglang => Scheduler::Sglang,
            crate::catalogue::Backend::Vllm | crate::catalogue::Backend::Trtllm => Scheduler::Vllm,
        }
    }
    /// The rule an instance on hardware with `perf` follows.
    pub fn resolve(self, perf: &PerfSpec) -> Scheduler {
        match (self, perf) {
            (Scheduler::Auto, PerfSpec::Kernels { backend, .. }) => Scheduler::of_backend(*backend),
            (Scheduler::Auto, _) => Scheduler::Vllm,
            (s, _) => s,
        }
    }
}

impl Default for EngineSpec {
    fn default() -> Self {
        EngineSpec {
            max_batch_tokens: DEFAULT_MAX_BATCH_TOKENS,
            max_seqs: DEFAULT_MAX_SEQS,
            chunked_prefill: true,
            block_size: DEFAULT_BLOCK_SIZE,
            gpu_memory_utilization: DEFAULT_GPU_MEMORY_UTILIZATION,
            prefix_caching: true,
            scheduler: Scheduler::Auto,
        }
    }
}

/// A named group of instances with one role.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    /// Pool name.
    pub name: String,
    /// What its instances do.
    pub role: Role,
    /// Scheduler settings of its instances.
    pub engine: EngineSpec,
    /// Its instances.
    pub instances: Vec<InstanceSpec>,
    /// Decode pools only: a request whose uncached prompt is shorter than this many tokens
    /// prefills on its decode instance instead of a prefill pool (conditional
    /// disaggregation, Dynamo's `max_local_prefill_length`). `None`: always disaggregate.
    pub local_prefill_threshold: Option<u32>,
}

/// The original lab's `prefill_ctx_thresh` default for conditional disaggregation, in tokens.
pub const DEFAULT_LOCAL_PREFILL_THRESHOLD: u32 = 2048;

/// One engine replica.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSpec {
    /// Unique name across the cluster.
    pub name: String,
    /// Index into [`ScenarioSpec::hardware`].
    pub hardware: usize,
    /// Tensor-parallel degree: GPUs this instance spans.
    pub tp: u32,
}

/// A KV-transfer path from one pool to another.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkSpec {
    /// Source pool index.
    pub from: usize,
    /// Destination pool index.
    pub to: usize,
    /// Fixed latency of one transfer.
    pub latency: SimDuration,
    /// Bytes per second; `None` means only the latency counts.
    pub bandwidth_bytes_s: Option<f64>,
}

/// Service-level objectives; a request is good when it meets every one given.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SloSpec {
    /// Time to first token at most.
    pub ttft: Option<SimDuration>,
    /// Time per output token at most.
    pub tpot: Option<SimDuration>,
    /// End-to-end latency at most.
    pub e2e: Option<SimDuration>,
    /// The request's mean inter-token latency at most, as aiperf's `inter_token_latency`
    /// bound: (E2E − TTFT) / (output − 1), the same quantity as TPOT.
    pub itl: Option<SimDuration>,
    /// Every gap between two consecutive output tokens at most (the request's largest ITL).
    pub max_itl: Option<SimDuration>,
}

impl SloSpec {
    /// Whether no bound is given: no request can be judged good or bad, so a run has no SLO
    /// attainment and no goodput.
    pub fn is_empty(&self) -> bool {
        self.ttft.is_none() && self.tpot.is_none() && self.e2e.is_none() && self.itl.is_none() && self.max_itl.is_none()
    }
}

/// Run length, and the bounds that stop a run that would not end by itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunSpec {
    /// Arrivals stop after this much simulated time.
    pub duration: Option<SimDuration>,
    /// Arrivals stop after this many requests.
    pub requests: Option<u64>,
    /// Whether to keep running until every admitted request finishes.
    pub drain: bool,
    /// The run stops (incomplete) when more requests than this are in flight at once: an
    /// overloaded fleet whose queues would grow until memory runs out.
    pub max_in_flight: u64,
    /// The run stops (incomplete) past this much simulated time.
    pub max_time: SimDuration,
    /// Whether steady decode steps are advanced in bulk (same results to the bit; off only
    /// to check that, or to time the engine step by step).
    pub fast_forward: bool,
}

/// Default of `run.max_in_flight`: a million requests in flight (about 2 GB of simulator
/// state); the shipped scenarios peak below 20,000.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 1_000_000;
/// Default of `run.max_time`: a week of simulated time; the shipped scenarios simulate an
/// hour at most.
pub const DEFAULT_MAX_TIME: SimDuration = SimDuration::from_secs(7 * 24 * 3600);

impl RunSpec {
    /// A run of `duration` and/or `requests`, draining, with the default bounds.
    pub fn new(duration: Option<SimDuration>, requests: Option<u64>) -> Self {
        RunSpec { duration, requests, drain: true, max_in_flight: DEFAULT_MAX_IN_FLIGHT, max_time: DEFAULT_MAX_TIME, fast_forward: true }
    }
}

/// A problem found by [`ScenarioSpec::validate`]: the field path and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecError {
    /// Dotted path of the offending field, e.g. `pools.decode.engine.max_seqs`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl SpecError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError { path: path.into(), message: message.into() }
    }
}

impl ScenarioSpec {
    /// KV capacity of an instance in blocks: an explicit capacity, or
    /// (memory × utilisation − weights) / bytes per block.
    pub fn kv_capacity_blocks(&self, hw: &HardwareSpec, tp: u32, eng: &EngineSpec) -> Result<u64, String> {
        let bs = u64::from(eng.block_size.max(1));
        if let Some(tokens) = hw.kv_capacity_tokens {
            let blocks = tokens / bs;
            return if blocks == 0 { Err("kv_capacity is smaller than one KV block".into()) } else { Ok(blocks) };
        }
        let mem = match (&hw.perf, hw.memory_bytes) {
            (_, Some(m)) => m,
            (PerfSpec::Roofline { gpu, .. } | PerfSpec::Kernels { gpu, .. }, None) => gpu.memory_bytes,
            (PerfSpec::Rates { .. } | PerfSpec::Fitted { .. }, None) => {
                return Err(format!("hardware `{}` has neither `memory` nor `kv_capacity`; give one so the KV cache has a size", hw.name));
            }
        };
        let usable = (mem as f64 * f64::from(tp) * eng.gpu_memory_utilization) as u64;
        let weights = self.model.weight_bytes();
        let per_block = self.model.kv_bytes_per_token() * bs;
        if usable <= weights || (usable - weights) / per_block == 0 {
            return Err(format!(
                "model `{}` ({:.1} GB of weights) leaves no room for KV cache on {} x `{}` ({:.1} GB usable); use more GPUs (tp) or set `kv_capacity`",
                self.model.name,
                weights as f64 / 1e9,
                tp,
                hw.name,
                usable as f64 / 1e9
            ));
        }
        Ok((usable - weights) / per_block)
    }

    /// Number of instances over all pools.
    pub fn instance_count(&self) -> usize {
        self.pools.iter().map(|p| p.instances.len()).sum()
    }
}
