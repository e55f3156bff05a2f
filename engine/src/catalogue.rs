//! Built-in catalogue of GPUs and models, compiled into the binary.
//!
//! Every figure cites its source. Prices are approximate 2025 US on-demand cloud prices per
//! GPU-hour, meant as a starting point: scenarios override them with `cost = ... $/h`.

const GB: u64 = 1_000_000_000;
const TB_S: f64 = 1e12;
const GB_S: f64 = 1e9;
const TFLOPS: f64 = 1e12;

/// A GPU as the roofline model sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuSpec {
    /// Catalogue name, e.g. `h100-sxm`.
    pub name: String,
    /// Dense BF16 tensor-core FLOP/s (no sparsity).
    pub peak_flops: f64,
    /// HBM bandwidth in bytes per second.
    pub hbm_bytes_s: f64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// GPU-to-GPU bandwidth per direction used by tensor-parallel all-reduce, bytes per second.
    pub interconnect_bytes_s: f64,
    /// Default price per GPU-hour in dollars.
    pub cost_per_hour: f64,
}

// H100 SXM5 80 GB, NVIDIA H100 datasheet: 989 TFLOPS BF16 dense (1,979 with sparsity),
// 3.35 TB/s HBM3, NVLink 900 GB/s total (450 GB/s per direction).
const H100_PEAK: f64 = 989.4 * TFLOPS;
const H100_BW: f64 = 3.35 * TB_S;
const H100_SMS: f64 = 132.0;
const H100_PRICE: f64 = 3.00;

/// Every GPU in the catalogue, by name.
pub fn gpus() -> Vec<GpuSpec> {
    let g = |name: &str, peak: f64, bw: f64, mem: u64, ic: f64, cost: f64| GpuSpec {
        name: name.into(),
        peak_flops: peak,
        hbm_bytes_s: bw,
        memory_bytes: mem,
        interconnect_bytes_s: ic,
        cost_per_hour: cost,
    };
    // MIG slices (NVIDIA MIG user guide, H100 profiles): 1g.10gb has 16 of 132 SMs and 1 of 8
    // memory slices, 2g.20gb 32 SMs and 2/8, 3g.40gb 60 SMs and 4/8. Compute scales with SMs,
    // bandwidth with memory slices; slices have no NVLink, so tp stays 1. Price: the GPU's
    // price split by the 7 compute slices.
    let mig = |name: &str, sms: f64, mem_slices: f64, mem: u64, sevenths: f64| {
        g(name, H100_PEAK * sms / H100_SMS, H100_BW * mem_slices / 8.0, mem, 0.0, H100_PRICE * sevenths / 7.0)
    };
    vec![
        g("h100-sxm", H100_PEAK, H100_BW, 80 * GB, 450.0 * GB_S, H100_PRICE),
        // H200 SXM, NVIDIA H200 datasheet: 989 TFLOPS BF16 dense, 4.8 TB/s HBM3e, 141 GB.
        g("h200", 989.4 * TFLOPS, 4.8 * TB_S, 141 * GB, 450.0 * GB_S, 3.80),
        // A100 SXM 80 GB, NVIDIA A100 datasheet: 312 TFLOPS BF16 dense, 2,039 GB/s, NVLink 600 GB/s.
        g("a100-80gb", 312.0 * TFLOPS, 2.039 * TB_S, 80 * GB, 300.0 * GB_S, 1.80),
        // L40S, NVIDIA L40S datasheet: 362 TFLOPS BF16 dense (733 sparse), 864 GB/s GDDR6,
        // 48 GB, PCIe Gen4 x16 (32 GB/s per direction), no NVLink.
        g("l40s", 362.05 * TFLOPS, 864.0 * GB_S, 48 * GB, 32.0 * GB_S, 1.00),
        // B200 (HGX B200), NVIDIA Blackwell datasheet: 2.25 PFLOPS BF16 dense, 8 TB/s, 180 GB,
        // NVLink 5 1.8 TB/s total.
        g("b200", 2250.0 * TFLOPS, 8.0 * TB_S, 180 * GB, 900.0 * GB_S, 5.50),
        mig("h100-mig-1g", 16.0, 1.0, 10 * GB, 1.0),
        mig("h100-mig-2g", 32.0, 2.0, 20 * GB, 2.0),
        mig("h100-mig-3g", 60.0, 4.0, 40 * GB, 3.0),
    ]
}

/// Looks a GPU up by name (case-insensitive; `_` and `-` are the same).
pub fn gpu(name: &str) -> Option<GpuSpec> {
    let key = normalise(name);
    gpus().into_iter().find(|g| normalise(&g.name) == key)
}

/// A transformer's shapes, enough for KV sizing and roofline costs.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Catalogue or user name.
    pub name: String,
    /// Transformer layers.
    pub layers: u32,
    /// Hidden size.
    pub hidden: u32,
    /// Attention (query) heads.
    pub heads: u32,
    /// Key/value heads (GQA).
    pub kv_heads: u32,
    /// Dimension of one head.
    pub head_dim: u32,
    /// MLP intermediate size (per expert for MoE).
    pub intermediate: u32,
    /// Vocabulary size.
    pub vocab: u32,
    /// Experts per MoE layer (1 for dense models).
    pub experts: u32,
    /// Experts active per token (1 for dense models).
    pub active_experts: u32,
    /// Bytes per weight and per KV element (2 for BF16).
    pub dtype_bytes: u32,
    /// Whether input and output embeddings share weights.
    pub tied_embeddings: bool,
}

impl ModelSpec {
    fn attention_params(&self) -> u64 {
        let h = u64::from(self.hidden);
        let q = u64::from(self.heads * self.head_dim);
        let kv = u64::from(self.kv_heads * self.head_dim);
        h * (q + 2 * kv) + q * h
    }
    fn mlp_params(&self, experts: u32) -> u64 {
        // gate, up and down projections (SwiGLU), per expert, plus the MoE router.
        let router = if self.experts > 1 { u64::from(self.hidden) * u64::from(self.experts) } else { 0 };
        3 * u64::from(self.hidden) * u64::from(self.intermediate) * u64::from(experts) + router
    }
    fn embedding_params(&self) -> u64 {
        let e = u64::from(self.vocab) * u64::from(self.hidden);
        if self.tied_embeddings { e } else { 2 * e }
    }
    /// All parameters (what must sit in memory).
    pub fn total_params(&self) -> u64 {
        u64::from(self.layers) * (self.attention_params() + self.mlp_params(self.experts)) + self.embedding_params()
    }
    /// Parameters touched per token in the layers (what costs FLOPs), without embeddings.
    pub fn active_layer_params(&self) -> u64 {
        u64::from(self.layers) * (self.attention_params() + self.mlp_params(self.active_experts))
    }
    /// Bytes of weights.
    pub fn weight_bytes(&self) -> u64 {
        self.total_params() * u64::from(self.dtype_bytes)
    }
    /// Bytes of the weights of one expert across all layers (0 for dense models, whose MLP
    /// counts as always read).
    pub fn expert_bytes(&self) -> u64 {
        if self.experts <= 1 {
            return 0;
        }
        u64::from(self.layers) * 3 * u64::from(self.hidden) * u64::from(self.intermediate) * u64::from(self.dtype_bytes)
    }
    /// Experts a step of `tokens` tokens reads in each MoE layer: with routing spread
    /// uniformly, `E · (1 − (1 − k/E)^tokens)` for E experts and k active per token — at most
    /// `tokens × k` and at most E (every expert only for large batches).
    pub fn experts_touched(&self, tokens: f64) -> f64 {
        if self.experts <= 1 { 0.0 } else { experts_touched(self.experts, self.active_experts, tokens) }
    }
    /// Bytes of weights a step of `tokens` tokens reads: everything but the experts, plus
    /// the experts its tokens touch.
    pub fn step_weight_bytes(&self, tokens: f64) -> f64 {
        let all = self.weight_bytes() as f64;
        if self.experts <= 1 {
            return all;
        }
        let experts = self.expert_bytes() as f64;
        all - f64::from(self.experts) * experts + self.experts_touched(tokens) * experts
    }
    /// Bytes of KV cache per token: 2 (K and V) × layers × kv heads × head dim × dtype bytes.
    pub fn kv_bytes_per_token(&self) -> u64 {
        2 * u64::from(self.layers) * u64::from(self.kv_heads) * u64::from(self.head_dim) * u64::from(self.dtype_bytes)
    }
}

/// Experts of `experts` (with `active` per token) that `tokens` tokens touch, routing spread
/// uniformly: `E · (1 − (1 − k/E)^tokens)`.
pub fn experts_touched(experts: u32, active: u32, tokens: f64) -> f64 {
    let (e, k) = (f64::from(experts), f64::from(active.min(experts)));
    e * (1.0 - (1.0 - k / e).powf(tokens))
}

/// Every model in the catalogue.
pub fn models() -> Vec<ModelSpec> {
    #[allow(clippy::too_many_arguments)]
    let m = |name: &str, layers, hidden, heads, kv_heads, head_dim, inter, vocab, experts, active, tied| ModelSpec {
        name: String::from(name),
        layers,
        hidden,
        heads,
        kv_heads,
        head_dim,
        intermediate: inter,
        vocab,
        experts,
        active_experts: active,
        dtype_bytes: 2,
        tied_embeddings: tied,
    };
    vec![
        // meta-llama/Llama-3.1-8B config.json: 32 layers, hidden 4096, 32 heads, 8 KV heads,
        // intermediate 14336, vocab 128256, untied embeddings (8.03 B parameters).
        m("llama-3.1-8b", 32, 4096, 32, 8, 128, 14336, 128256, 1, 1, false),
        // meta-llama/Llama-3.1-70B config.json: 80 layers, hidden 8192, 64 heads, 8 KV heads,
        // intermediate 28672 (70.6 B parameters).
        m("llama-3.1-70b", 80, 8192, 64, 8, 128, 28672, 128256, 1, 1, false),
        // meta-llama/Llama-3.1-405B config.json: 126 layers, hidden 16384, 128 heads, 8 KV heads,
        // intermediate 53248.
        m("llama-3.1-405b", 126, 16384, 128, 8, 128, 53248, 128256, 1, 1, false),
        // Qwen/Qwen3-32B config.json: 64 layers, hidden 5120, 64 heads, 8 KV heads, head_dim 128,
        // intermediate 25600, vocab 151936, untied (32.8 B parameters).
        m("qwen3-32b", 64, 5120, 64, 8, 128, 25600, 151936, 1, 1, false),
        // mistralai/Mixtral-8x7B-v0.1 config.json: 32 layers, hidden 4096, 32 heads, 8 KV heads,
        // 8 experts of intermediate 14336, 2 active, vocab 32000 (46.7 B total, 12.9 B active).
        m("mixtral-8x7b", 32, 4096, 32, 8, 128, 14336, 32000, 8, 2, false),
        // openai/gpt-oss-20b config.json: 24 layers, hidden 2880, 64 heads of 64, 8 KV heads,
        // 32 experts of intermediate 2880, 4 active, vocab 201088. (Shipped weights are MXFP4;
        // this entry counts BF16 bytes, an upper bound.)
        m("gpt-oss-20b", 24, 2880, 64, 8, 64, 2880, 201088, 32, 4, false),
    ]
}

/// Looks a model up by name (case-insensitive; `_`, `.` and `-` are the same).
pub fn model(name: &str) -> Option<ModelSpec> {
    let key = normalise(name);
    models().into_iter().find(|m| normalise(&m.name) == key)
}

fn normalise(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_model_cards() {
        let p = |n: &str| model(n).unwrap().total_params() as f64 / 1e9;
        assert!((p("llama-3.1-8b") - 8.03).abs() < 0.05, "{}", p("llama-3.1-8b"));
        assert!((p("llama-3.1-70b") - 70.6).abs() < 0.5, "{}", p("llama-3.1-70b"));
        assert!((p("qwen3-32b") - 32.8).abs() < 0.5, "{}", p("qwen3-32b"));
        assert!((p("mixtral-8x7b") - 46.7).abs() < 0.5, "{}", p("mixtral-8x7b"));
        let m = model("Llama_3.1_8B").unwrap();
        assert_eq!(m.kv_bytes_per_token(), 131_072);
    }

    #[test]
    fn lookups_are_forgiving_about_spelling() {
        assert!(gpu("H100_SXM").is_some());
        assert!(gpu("h100-mig-1g").unwrap().memory_bytes == 10 * GB);
        assert!(gpu("v100").is_none());
    }
}
