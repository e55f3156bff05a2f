//! What the catalogue holds and where each GPU's numbers come from: the data behind
//! `simctl catalogue`.

use serde::Serialize;

use crate::catalogue::{self, Backend};
use crate::kernels;

/// The catalogue: GPUs with the source of their numbers per backend, models, backends.
#[derive(Clone, Debug, Serialize)]
pub struct Inventory {
    /// Every catalogue GPU.
    pub gpus: Vec<GpuEntry>,
    /// Every catalogue model.
    pub models: Vec<ModelEntry>,
    /// Every serving backend a scenario can name.
    pub backends: Vec<BackendEntry>,
}

/// One GPU.
#[derive(Clone, Debug, Serialize)]
pub struct GpuEntry {
    /// Catalogue name (scenarios may write `-` as `_`).
    pub name: String,
    /// Dense BF16, FP8 and FP4 tensor-core TFLOP/s (0: none).
    pub bf16_tflops: f64,
    /// See [`GpuEntry::bf16_tflops`].
    pub fp8_tflops: f64,
    /// See [`GpuEntry::bf16_tflops`].
    pub fp4_tflops: f64,
    /// Memory bandwidth, TB/s.
    pub memory_tb_s: f64,
    /// Memory, GB.
    pub memory_gb: f64,
    /// GPU-to-GPU bandwidth per direction, GB/s.
    pub interconnect_gb_s: f64,
    /// Default price, $ per GPU-hour.
    pub cost_per_hour: f64,
    /// Where the step times come from, per backend.
    pub sources: Vec<Source>,
}

/// Where a GPU's step times under one backend come from.
#[derive(Clone, Debug, Serialize)]
pub struct Source {
    /// The backend.
    pub backend: &'static str,
    /// `kernels` (measured tables) or `roofline` (datasheet).
    pub model: &'static str,
    /// For `kernels`: the engine version of the tables, per kind of kernel.
    pub versions: Vec<(String, String)>,
    /// For `kernels`: AIConfigurator's system name the tables come from.
    pub system: Option<String>,
}

/// One model.
#[derive(Clone, Debug, Serialize)]
pub struct ModelEntry {
    /// Catalogue name.
    pub name: String,
    /// Parameters, billions.
    pub params_b: f64,
    /// Parameters active per token, billions.
    pub active_params_b: f64,
    /// Layers.
    pub layers: u32,
    /// Hidden size.
    pub hidden: u32,
    /// Query heads, KV heads, head dimension.
    pub heads: u32,
    /// See [`ModelEntry::heads`].
    pub kv_heads: u32,
    /// See [`ModelEntry::heads`].
    pub head_dim: u32,
    /// Experts and experts per token (1 and 1: dense).
    pub experts: u32,
    /// See [`ModelEntry::experts`].
    pub active_experts: u32,
    /// Sliding window `(tokens, layers)`, if any.
    pub sliding_window: Option<(u32, u32)>,
    /// Formats of the dense weights, the experts and the KV cache.
    pub weights: &'static str,
    /// See [`ModelEntry::weights`].
    pub expert_weights: &'static str,
    /// See [`ModelEntry::weights`].
    pub kv_cache: &'static str,
}

/// One backend.
#[derive(Clone, Debug, Serialize)]
pub struct BackendEntry {
    /// Name as scenarios write it.
    pub name: &'static str,
    /// Whether a scenario without `backend` gets it.
    pub default: bool,
    /// The kernel model's engine overheads for it, µs per step, per layer of every step, per
    /// sequence, per layer of a step with prefill and per MoE layer of one (on top); `None`
    /// for a backend without kernel tables (its GPUs use the datasheet roofline).
    pub step_overhead_us: Option<f64>,
    /// See [`BackendEntry::step_overhead_us`].
    pub layer_overhead_us: Option<f64>,
    /// See [`BackendEntry::step_overhead_us`].
    pub seq_overhead_us: Option<f64>,
    /// See [`BackendEntry::step_overhead_us`].
    pub prefill_layer_overhead_us: Option<f64>,
    /// See [`BackendEntry::step_overhead_us`].
    pub prefill_moe_layer_overhead_us: Option<f64>,
    /// The batching rule its pools follow unless their `engine { scheduler }` says otherwise
    /// (`vllm` or `sglang`; TensorRT-LLM's is not modelled: vLLM's).
    pub scheduler: &'static str,
}

/// The catalogue as it is compiled in.
pub fn inventory() -> Inventory {
    let gpus = catalogue::gpus()
        .into_iter()
        .map(|g| {
            let sources = Backend::ALL
                .iter()
                .map(|&b| match kernels::tables(&g.name, b) {
                    Some(t) => {
                        Source { backend: b.as_str(), model: "kernels", versions: t.versions.clone(), system: Some(t.system.clone()) }
                    }
                    None => Source { backend: b.as_str(), model: "roofline", versions: Vec::new(), system: None },
                })
                .collect();
            GpuEntry {
                bf16_tflops: g.peak_flops / 1e12,
                fp8_tflops: g.fp8_flops / 1e12,
                fp4_tflops: g.fp4_flops / 1e12,
                memory_tb_s: g.hbm_bytes_s / 1e12,
                memory_gb: g.memory_bytes as f64 / 1e9,
                interconnect_gb_s: g.interconnect_bytes_s / 1e9,
                cost_per_hour: g.cost_per_hour,
                name: g.name,
                sources,
            }
        })
        .collect();
    let models = catalogue::models()
        .into_iter()
        .map(|m| ModelEntry {
            params_b: m.total_params() as f64 / 1e9,
            active_params_b: m.active_layer_params() as f64 / 1e9,
            layers: m.layers,
            hidden: m.hidden,
            heads: m.heads,
            kv_heads: m.kv_heads,
            head_dim: m.head_dim,
            experts: m.experts,
            active_experts: m.active_experts,
            sliding_window: m.sliding_window,
            weights: m.weights.as_str(),
            expert_weights: m.expert_weights.as_str(),
            kv_cache: m.kv_cache.as_str(),
            name: m.name,
        })
        .collect();
    let backends = Backend::ALL
        .iter()
        .map(|&b| {
            let o = kernels::default_overheads(b);
            let tables = kernels::shipped().any(|(_, x)| x == b);
            let us = |d: crate::time::SimDuration| tables.then(|| d.as_nanos() as f64 / 1e3);
            BackendEntry {
                name: b.as_str(),
                default: b == Backend::Vllm,
                step_overhead_us: us(o.step),
                layer_overhead_us: us(o.per_layer),
                seq_overhead_us: us(o.per_seq),
                prefill_layer_overhead_us: us(o.prefill_per_layer),
                prefill_moe_layer_overhead_us: us(o.prefill_per_moe_layer),
                scheduler: crate::spec::Scheduler::of_backend(b).as_str(),
            }
        })
        .collect();
    Inventory { gpus, models, backends }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gpu_with_tables_says_so_and_mig_slices_fall_back_to_the_roofline() {
        let inv = inventory();
        let src = |gpu: &str, b: &str| {
            let g = inv.gpus.iter().find(|g| g.name == gpu).unwrap_or_else(|| panic!("{gpu}"));
            g.sources.iter().find(|s| s.backend == b).expect("every backend").model
        };
        for gpu in ["h100-sxm", "h200", "b200", "b300", "gb200", "gb300", "a100-80gb", "l40s", "rtx-pro-6000"] {
            assert_eq!(src(gpu, "vllm"), "kernels", "{gpu}");
            assert_eq!(src(gpu, "sglang"), "kernels", "{gpu}");
            assert_eq!(src(gpu, "trtllm"), "roofline", "{gpu}");
        }
        assert_eq!(src("h100-mig-1g", "vllm"), "roofline");
        assert!(inv.backends.iter().filter(|b| b.default).count() == 1);
        let trt = inv.backends.iter().find(|b| b.name == "trtllm").unwrap();
        assert_eq!(trt.step_overhead_us, None, "no tables, no kernel-model overheads");
        assert!(serde_json::to_string(&inv).unwrap().contains("\"versions\""));
    }
}
