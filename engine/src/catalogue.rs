//! Built-in catalogue of GPUs and models, compiled into the binary.
//!
//! Every figure cites its source. Prices are approximate 2025 US on-demand cloud prices per
//! GPU-hour, meant as a starting point: scenarios override them with `cost = ... $/h`.

mod efficiency;

pub use efficiency::{Backend, DEFAULT_MBU, DEFAULT_MFU, DEFAULT_STEP_OVERHEAD, RooflineParams, roofline_defaults};

const GB: u64 = 1_000_000_000;
const TB_S: f64 = 1e12;
const GB_S: f64 = 1e9;
const TFLOPS: f64 = 1e12;

/// How a tensor's numbers are stored: what weights and KV cache cost in bytes, and which
/// tensor-core rate a matrix multiply over such weights runs at ([`GpuSpec::peak_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NumberFormat {
    /// 32-bit floats.
    Fp32,
    /// BF16 or FP16 (the native format of the catalogue's checkpoints).
    Bf16,
    /// FP8 (E4M3) with per-tensor scales.
    Fp8,
    /// FP8 (E4M3) with block scales (one FP32 per 128×128 block: negligible bytes), as the
    /// DeepSeek-style checkpoints (Qwen3 FP8, MiniMax-M2) ship; their GEMMs run other kernels.
    Fp8Block,
    /// NVFP4: 4-bit values and one FP8 scale per 16 (NVIDIA Blackwell).
    Nvfp4,
    /// MXFP4 (OCP microscaling): 4-bit values and one 8-bit scale per 32 (gpt-oss checkpoints).
    Mxfp4,
    /// INT4 weight-only, one BF16 scale per group of 128 (activations stay BF16).
    Int4,
}

impl NumberFormat {
    /// Bytes per element, scales included.
    pub fn bytes(self) -> f64 {
        match self {
            NumberFormat::Fp32 => 4.0,
            NumberFormat::Bf16 => 2.0,
            NumberFormat::Fp8 | NumberFormat::Fp8Block => 1.0,
            NumberFormat::Nvfp4 => 0.5 + 1.0 / 16.0,
            NumberFormat::Mxfp4 => 0.5 + 1.0 / 32.0,
            NumberFormat::Int4 => 0.5 + 2.0 / 128.0,
        }
    }
    /// Lowercase name as scenarios write it.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberFormat::Fp32 => "fp32",
            NumberFormat::Bf16 => "bf16",
            NumberFormat::Fp8 => "fp8",
            NumberFormat::Fp8Block => "fp8_block",
            NumberFormat::Nvfp4 => "nvfp4",
            NumberFormat::Mxfp4 => "mxfp4",
            NumberFormat::Int4 => "int4",
        }
    }
    /// Every format, for help texts.
    pub const ALL: [NumberFormat; 7] = [
        NumberFormat::Fp32,
        NumberFormat::Bf16,
        NumberFormat::Fp8,
        NumberFormat::Fp8Block,
        NumberFormat::Nvfp4,
        NumberFormat::Mxfp4,
        NumberFormat::Int4,
    ];
    /// Parses a format name; also the spellings of AIConfigurator's quant modes (`fp8_block`,
    /// `int4_wo`, `fp16`; an empty name is the native BF16).
    pub fn parse(s: &str) -> Option<NumberFormat> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "float32" => NumberFormat::Fp32,
            "" | "bf16" | "fp16" | "float16" | "bfloat16" => NumberFormat::Bf16,
            "fp8" | "fp8_e4m3" => NumberFormat::Fp8,
            "fp8_block" | "fp8block" => NumberFormat::Fp8Block,
            "nvfp4" | "fp4" => NumberFormat::Nvfp4,
            "mxfp4" => NumberFormat::Mxfp4,
            "int4" | "int4_wo" | "w4a16" => NumberFormat::Int4,
            _ => return None,
        })
    }
    /// The format of `bytes` bytes per element (`dtype_bytes` in scenarios): 4, 2 or 1.
    pub fn of_bytes(bytes: u32) -> Option<NumberFormat> {
        match bytes {
            4 => Some(NumberFormat::Fp32),
            2 => Some(NumberFormat::Bf16),
            1 => Some(NumberFormat::Fp8),
            _ => None,
        }
    }
}

/// A GPU as the roofline model sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuSpec {
    /// Catalogue name, e.g. `h100-sxm`.
    pub name: String,
    /// Dense BF16 tensor-core FLOP/s (no sparsity).
    pub peak_flops: f64,
    /// Dense FP8 tensor-core FLOP/s; 0 where the GPU has no FP8 tensor cores (A100).
    pub fp8_flops: f64,
    /// Dense FP4 tensor-core FLOP/s; 0 before Blackwell (4-bit weights are then
    /// dequantised and multiplied in BF16).
    pub fp4_flops: f64,
    /// HBM bandwidth in bytes per second.
    pub hbm_bytes_s: f64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// GPU-to-GPU bandwidth per direction used by tensor-parallel all-reduce, bytes per second.
    pub interconnect_bytes_s: f64,
    /// Default price per GPU-hour in dollars.
    pub cost_per_hour: f64,
}

impl GpuSpec {
    /// Dense tensor-core FLOP/s of a matrix multiply whose weights are stored as `f`:
    /// FP8 and FP4 run at their own rates where the GPU has them; 4-bit formats without
    /// FP4 tensor cores, INT4 weight-only and FP32 multiply in BF16.
    pub fn peak_for(&self, f: NumberFormat) -> f64 {
        let or_bf16 = |x: f64| if x > 0.0 { x } else { self.peak_flops };
        match f {
            NumberFormat::Fp8 | NumberFormat::Fp8Block => or_bf16(self.fp8_flops),
            NumberFormat::Nvfp4 | NumberFormat::Mxfp4 => or_bf16(self.fp4_flops),
            NumberFormat::Fp32 | NumberFormat::Bf16 | NumberFormat::Int4 => self.peak_flops,
        }
    }
}

// H100 SXM5 80 GB, NVIDIA H100 datasheet: 989 TFLOPS BF16 dense (1,979 with sparsity),
// 1,979 TFLOPS FP8 dense, 3.35 TB/s HBM3, NVLink 900 GB/s total (450 GB/s per direction).
const H100_PEAK: f64 = 989.4 * TFLOPS;
const H100_FP8: f64 = 1978.9 * TFLOPS;
const H100_BW: f64 = 3.35 * TB_S;
const H100_SMS: f64 = 132.0;
const H100_PRICE: f64 = 3.00;

/// Every GPU in the catalogue, by name.
pub fn gpus() -> Vec<GpuSpec> {
    // (name, [BF16, FP8, FP4] dense FLOP/s, HBM B/s, memory, NVLink B/s per direction, $/h)
    let g = |name: &str, [peak, fp8, fp4]: [f64; 3], bw: f64, mem: u64, ic: f64, cost: f64| GpuSpec {
        name: name.into(),
        peak_flops: peak,
        fp8_flops: fp8,
        fp4_flops: fp4,
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
        let f = sms / H100_SMS;
        g(name, [H100_PEAK * f, H100_FP8 * f, 0.0], H100_BW * mem_slices / 8.0, mem, 0.0, H100_PRICE * sevenths / 7.0)
    };
    vec![
        g("h100-sxm", [H100_PEAK, H100_FP8, 0.0], H100_BW, 80 * GB, 450.0 * GB_S, H100_PRICE),
        // H200 SXM, NVIDIA H200 datasheet: 989 TFLOPS BF16 and 1,979 FP8 dense, 4.8 TB/s
        // HBM3e, 141 GB, NVLink 900 GB/s.
        g("h200", [H100_PEAK, H100_FP8, 0.0], 4.8 * TB_S, 141 * GB, 450.0 * GB_S, 3.80),
        // A100 SXM 80 GB, NVIDIA A100 datasheet: 312 TFLOPS BF16 dense, no FP8, 2,039 GB/s,
        // NVLink 600 GB/s.
        g("a100-80gb", [312.0 * TFLOPS, 0.0, 0.0], 2.039 * TB_S, 80 * GB, 300.0 * GB_S, 1.80),
        // L40S, NVIDIA L40S datasheet: 362 TFLOPS BF16 dense (733 sparse), 733 FP8 dense,
        // 864 GB/s GDDR6, 48 GB, PCIe Gen4 x16 (32 GB/s per direction), no NVLink.
        g("l40s", [362.05 * TFLOPS, 733.0 * TFLOPS, 0.0], 864.0 * GB_S, 48 * GB, 32.0 * GB_S, 1.00),
        // B200 (HGX B200), NVIDIA HGX B200 datasheet, per GPU (the 8-GPU board's figures / 8):
        // 2.25 PFLOPS BF16, 4.5 FP8, 9 FP4 dense; 8 TB/s HBM3e, 180 GB; NVLink 5 1.8 TB/s total.
        g("b200", [2250.0 * TFLOPS, 4500.0 * TFLOPS, 9000.0 * TFLOPS], 8.0 * TB_S, 180 * GB, 900.0 * GB_S, 5.50),
        // B300 (HGX B300, Blackwell Ultra), NVIDIA HGX B300 datasheet, per GPU: 2.25 PFLOPS
        // BF16, 4.5 FP8, 13.5 FP4 dense (108 PFLOPS per board); 8 TB/s HBM3e, 288 GB; NVLink 5
        // 1.8 TB/s. Price: approximate, above B200.
        g("b300", [2250.0 * TFLOPS, 4500.0 * TFLOPS, 13500.0 * TFLOPS], 8.0 * TB_S, 288 * GB, 900.0 * GB_S, 6.50),
        // GB200 NVL72, NVIDIA GB200 NVL72 datasheet, per GPU (the rack's figures / 72):
        // 2.5 PFLOPS BF16, 5 FP8, 10 FP4 dense; 8 TB/s HBM3e, 186 GB (13.4 TB / 72); NVLink 5
        // 1.8 TB/s, all 72 GPUs in one NVLink domain. Price: approximate.
        g("gb200", [2500.0 * TFLOPS, 5000.0 * TFLOPS, 10000.0 * TFLOPS], 8.0 * TB_S, 186 * GB, 900.0 * GB_S, 6.00),
        // GB300 NVL72, NVIDIA GB300 NVL72 datasheet, per GPU: 2.5 PFLOPS BF16, 5 FP8, 15 FP4
        // dense (1,080 PFLOPS per rack); 8 TB/s HBM3e, 279 GB (20.1 TB / 72); NVLink 5 1.8 TB/s.
        // Price: approximate.
        g("gb300", [2500.0 * TFLOPS, 5000.0 * TFLOPS, 15000.0 * TFLOPS], 8.0 * TB_S, 279 * GB, 900.0 * GB_S, 7.50),
        // RTX PRO 6000 Blackwell Server Edition, NVIDIA datasheet: 96 GB GDDR7 at 1,597 GB/s,
        // PCIe Gen5 x16 (64 GB/s per direction), no NVLink; dense tensor rates as
        // AIConfigurator's system file gives them (467.8 TFLOPS BF16, 935.6 FP8, 1,871 FP4 at
        // 2,430 MHz). Price: approximate.
        g("rtx-pro-6000", [467.8 * TFLOPS, 935.6 * TFLOPS, 1871.2 * TFLOPS], 1.597 * TB_S, 96 * GB, 64.0 * GB_S, 1.80),
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
    /// Bytes per element of the native checkpoint (2 for BF16): activations, which the
    /// tensor-parallel all-reduce moves, and the embeddings and LM head, which quantised
    /// checkpoints keep in this format.
    pub dtype_bytes: u32,
    /// Whether input and output embeddings share weights.
    pub tied_embeddings: bool,
    /// Format of the dense linear weights (attention projections, dense MLPs).
    pub weights: NumberFormat,
    /// Format of the MoE experts' weights (unused for dense models).
    pub expert_weights: NumberFormat,
    /// Format of the KV cache.
    pub kv_cache: NumberFormat,
    /// Sliding-window attention: `(window tokens, layers that use it)`; those layers hold
    /// and read at most the window (gpt-oss alternates full and 128-token layers). A paged
    /// cache then grows per token with the full-attention layers only (vLLM's hybrid KV
    /// manager), so [`ModelSpec::kv_bytes_per_token`] counts those.
    pub sliding_window: Option<(u32, u32)>,
}

impl ModelSpec {
    fn attention_params(&self) -> u64 {
        let h = u64::from(self.hidden);
        let q = u64::from(self.heads * self.head_dim);
        let kv = u64::from(self.kv_heads * self.head_dim);
        h * (q + 2 * kv) + q * h
    }
    fn router_params(&self) -> u64 {
        if self.experts > 1 { u64::from(self.hidden) * u64::from(self.experts) } else { 0 }
    }
    fn mlp_params(&self, experts: u32) -> u64 {
        // gate, up and down projections (SwiGLU), per expert, plus the MoE router.
        3 * u64::from(self.hidden) * u64::from(self.intermediate) * u64::from(experts) + self.router_params()
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
    /// Parameters per token of the matrix multiplies in the `weights` format (attention
    /// projections, a dense model's MLP, the router), over all layers.
    pub fn dense_layer_params(&self) -> u64 {
        let mlp = if self.experts > 1 { self.router_params() } else { self.mlp_params(1) };
        u64::from(self.layers) * (self.attention_params() + mlp)
    }
    /// Parameters of one expert over all layers (0 for dense models).
    pub fn expert_params(&self) -> u64 {
        if self.experts <= 1 {
            return 0;
        }
        u64::from(self.layers) * 3 * u64::from(self.hidden) * u64::from(self.intermediate)
    }
    /// Bytes of weights, each part in its format.
    pub fn weight_bytes(&self) -> u64 {
        let dense = self.dense_layer_params() as f64 * self.weights.bytes();
        let experts = if self.experts > 1 { f64::from(self.experts) * self.expert_bytes() as f64 } else { 0.0 };
        let embeddings = self.embedding_params() as f64 * f64::from(self.dtype_bytes);
        (dense + experts + embeddings).round() as u64
    }
    /// Bytes of the weights of one expert across all layers (0 for dense models, whose MLP
    /// counts as always read).
    pub fn expert_bytes(&self) -> u64 {
        (self.expert_params() as f64 * self.expert_weights.bytes()).round() as u64
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
    /// Layers without a sliding window (all of them for most models).
    pub fn full_attention_layers(&self) -> u32 {
        self.layers - self.sliding_window.map_or(0, |(_, l)| l.min(self.layers))
    }
    /// Bytes of K and V of one token in one layer: 2 × kv heads × head dim × format bytes.
    pub fn kv_bytes_per_token_layer(&self) -> f64 {
        2.0 * f64::from(self.kv_heads) * f64::from(self.head_dim) * self.kv_cache.bytes()
    }
    /// Bytes of KV cache per token: K and V of every full-attention layer (2 × layers × kv
    /// heads × head dim × format bytes); sliding-window layers hold a bounded window.
    pub fn kv_bytes_per_token(&self) -> u64 {
        (f64::from(self.full_attention_layers()) * self.kv_bytes_per_token_layer()).round() as u64
    }
    /// The same model with weights, experts and KV cache in other formats.
    pub fn with_formats(mut self, weights: NumberFormat, expert_weights: NumberFormat, kv_cache: NumberFormat) -> Self {
        self.weights = weights;
        self.expert_weights = expert_weights;
        self.kv_cache = kv_cache;
        self
    }
}

/// Experts of `experts` (with `active` per token) that `tokens` tokens touch, routing spread
/// uniformly: `E · (1 − (1 − k/E)^tokens)`.
pub fn experts_touched(experts: u32, active: u32, tokens: f64) -> f64 {
    let (e, k) = (f64::from(experts), f64::from(active.min(experts)));
    e * (1.0 - (1.0 - k / e).powf(tokens))
}

/// Every model in the catalogue, in their native BF16 unless a comment says otherwise.
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
        weights: NumberFormat::Bf16,
        expert_weights: NumberFormat::Bf16,
        kv_cache: NumberFormat::Bf16,
        sliding_window: None,
    };
    let windowed = |mut m: ModelSpec, window: u32, layers: u32| {
        m.sliding_window = Some((window, layers));
        m
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
        // Qwen/Qwen3-235B-A22B config.json: 94 layers, hidden 4096, 64 heads, 4 KV heads,
        // head_dim 128, 128 experts of moe_intermediate 1536 in every layer, 8 active, no shared
        // expert, vocab 151936, untied (235 B total, 22 B active).
        m("qwen3-235b-a22b", 94, 4096, 64, 4, 128, 1536, 151936, 128, 8, false),
        // mistralai/Mixtral-8x7B-v0.1 config.json: 32 layers, hidden 4096, 32 heads, 8 KV heads,
        // 8 experts of intermediate 14336, 2 active, vocab 32000 (46.7 B total, 12.9 B active).
        m("mixtral-8x7b", 32, 4096, 32, 8, 128, 14336, 32000, 8, 2, false),
        // openai/gpt-oss-20b config.json: 24 layers, hidden 2880, 64 heads of 64, 8 KV heads,
        // 32 experts of intermediate 2880, 4 active, vocab 201088. (Shipped weights are MXFP4;
        // this entry counts BF16 bytes and full attention everywhere, an upper bound.)
        m("gpt-oss-20b", 24, 2880, 64, 8, 64, 2880, 201088, 32, 4, false),
        // openai/gpt-oss-120b config.json: 36 layers, hidden 2880, 64 heads of 64, 8 KV heads,
        // 128 experts of intermediate 2880, 4 active, vocab 201088, untied; layer_types
        // alternate sliding (window 128) and full attention: 18 sliding layers. The shipped
        // checkpoint has MXFP4 experts and BF16 attention (116.8 B parameters, ~63 GB).
        {
            let g = windowed(m("gpt-oss-120b", 36, 2880, 64, 8, 64, 2880, 201088, 128, 4, false), 128, 18);
            g.with_formats(NumberFormat::Bf16, NumberFormat::Mxfp4, NumberFormat::Bf16)
        },
        // MiniMaxAI/MiniMax-M2.5 config.json (architecture MiniMaxM2ForCausalLM, the shapes of
        // MiniMax-M2): 62 layers, hidden 3072, 48 heads, 8 KV heads, head_dim 128, 256 experts
        // of intermediate 1536, 8 active, no shared expert, vocab 200064, untied (229 B total,
        // 10 B active). The shipped checkpoint is FP8 (block scales).
        m("minimax-m2.5", 62, 3072, 48, 8, 128, 1536, 200064, 256, 8, false).with_formats(
            NumberFormat::Fp8Block,
            NumberFormat::Fp8Block,
            NumberFormat::Bf16,
        ),
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
        assert!((p("qwen3-235b-a22b") - 235.1).abs() < 1.0, "{}", p("qwen3-235b-a22b"));
        assert!((p("gpt-oss-120b") - 116.8).abs() < 0.5, "{}", p("gpt-oss-120b"));
        assert!((p("minimax-m2.5") - 228.7).abs() < 1.5, "{}", p("minimax-m2.5"));
        let m = model("Llama_3.1_8B").unwrap();
        assert_eq!(m.kv_bytes_per_token(), 131_072);
    }

    #[test]
    fn number_formats_set_the_bytes_of_weights_and_kv() {
        let bf16 = model("llama-3.1-70b").unwrap();
        let fp8 = bf16.clone().with_formats(NumberFormat::Fp8, NumberFormat::Fp8, NumberFormat::Fp8);
        // The layers halve; the embeddings and LM head stay in BF16 (2 × 1.05 B parameters).
        let emb = 2.0 * 128_256.0 * 8192.0 * 2.0;
        let layers = bf16.weight_bytes() as f64 - emb;
        assert!((fp8.weight_bytes() as f64 - (layers / 2.0 + emb)).abs() < 1e3);
        assert_eq!(fp8.kv_bytes_per_token() * 2, bf16.kv_bytes_per_token());
        // gpt-oss-120b ships MXFP4 experts: about 63 GB; half its layers hold a 128-token window.
        let g = model("gpt-oss-120b").unwrap();
        assert!((g.weight_bytes() as f64 / 1e9 - 63.0).abs() < 3.0, "{}", g.weight_bytes());
        assert_eq!(g.kv_bytes_per_token(), 18 * 2 * 8 * 64 * 2);
        // Tensor-core rates by format: FP8 doubles on Hopper; FP4 only exists from Blackwell.
        let h = gpu("h100-sxm").unwrap();
        assert!((h.peak_for(NumberFormat::Fp8) / h.peak_for(NumberFormat::Bf16) - 2.0).abs() < 1e-3);
        assert_eq!(h.peak_for(NumberFormat::Nvfp4), h.peak_flops);
        let b = gpu("b200").unwrap();
        assert_eq!(b.peak_for(NumberFormat::Nvfp4), 4.0 * b.peak_flops);
        assert_eq!(NumberFormat::parse("fp8_block"), Some(NumberFormat::Fp8Block));
        assert_eq!(NumberFormat::Fp8Block.bytes(), NumberFormat::Fp8.bytes());
        assert_eq!(NumberFormat::parse(""), Some(NumberFormat::Bf16));
        assert_eq!(NumberFormat::parse("int4_wo"), Some(NumberFormat::Int4));
    }

    #[test]
    fn lookups_are_forgiving_about_spelling() {
        assert!(gpu("H100_SXM").is_some());
        assert!(gpu("h100-mig-1g").unwrap().memory_bytes == 10 * GB);
        assert!(gpu("v100").is_none());
        for name in ["b300", "gb200", "gb300"] {
            let g = gpu(name).unwrap();
            assert!(g.fp4_flops > g.fp8_flops && g.fp8_flops > g.peak_flops, "{name}");
        }
    }
}
