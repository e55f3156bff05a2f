//! Step cost models: how long one engine step takes for a given batch.

use std::fmt::Debug;

use crate::catalogue::{GpuSpec, ModelSpec, NumberFormat, RooflineParams};
use crate::time::SimDuration;

/// What a step computes, summarised for cost models.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchShape {
    /// New prompt (or recomputed) tokens computed this step.
    pub prefill_tokens: u32,
    /// Sequences with a prefill chunk this step.
    pub prefill_seqs: u32,
    /// Attention work of the prefill chunks: Σ chunk × (cached context + (chunk + 1) / 2),
    /// the number of (query, key) pairs, causal.
    pub prefill_attention_pairs: u64,
    /// Σ chunk² over the prefill chunks: attention within a chunk grows with its square.
    pub prefill_chunk_sq: u64,
    /// Σ chunk × context over the prefill chunks, the context being the tokens of that
    /// sequence already in KV (a cached prefix, earlier chunks).
    pub prefill_context_pairs: u64,
    /// Sequences decoding one token this step.
    pub decode_seqs: u32,
    /// Σ context length (tokens in KV) over decoding sequences.
    pub decode_context_tokens: u64,
    /// Of `decode_context_tokens`, those in prefix-cached blocks that another decode of the
    /// step reads too: of the sequences sharing a prefix, all but the one with the most cached
    /// tokens (which reads the blocks from memory, as any context).
    pub decode_cached_tokens: u64,
}

impl BatchShape {
    /// Whether the step computes nothing.
    pub fn is_empty(&self) -> bool {
        self.prefill_tokens == 0 && self.decode_seqs == 0
    }

    /// Adds a prefill chunk of `chunk` new tokens to a sequence with `context` tokens in KV
    /// already. The scheduler, the fake engine and calibration all build shapes this way.
    pub fn add_prefill_chunk(&mut self, chunk: u32, context: u32) {
        let (c, ctx) = (u64::from(chunk), u64::from(context));
        self.prefill_seqs += 1;
        self.prefill_tokens += chunk;
        self.prefill_attention_pairs += c * (ctx + c.div_ceil(2));
        self.prefill_chunk_sq += c * c;
        self.prefill_context_pairs += c * ctx;
    }

    /// Adds a sequence decoding one token with `context` tokens in KV.
    pub fn add_decode(&mut self, context: u32) {
        self.decode_seqs += 1;
        self.decode_context_tokens += u64::from(context);
    }

    /// Adds a decoding sequence with `context` tokens in KV, `cached` of them found in the
    /// prefix cache (the batch builder then takes back one sharer's per prefix).
    pub fn add_decode_cached(&mut self, context: u32, cached: u32) {
        self.add_decode(context);
        self.decode_cached_tokens += u64::from(cached.min(context));
    }
}

/// Turns a batch into a step duration.
pub trait StepCostModel: Debug + Send + Sync {
    /// Duration of one step computing `batch`.
    fn step_time(&self, batch: &BatchShape) -> SimDuration;

    /// Latency every request pays once, on its first token, outside the steps: the
    /// engine's frontend (HTTP, input processing, streaming the output back). The output
    /// path is pipelined, so later tokens are shifted by the same amount and inter-token
    /// gaps do not change.
    fn request_latency(&self) -> SimDuration {
        SimDuration::ZERO
    }

    /// Whether [`BatchShape::decode_cached_tokens`] changes what a step costs. When it
    /// does not, the batch builder does not count it (nor work out, per step, which
    /// decode of each shared prefix reads it first).
    fn prices_cached_context(&self) -> bool {
        false
    }
}

/// Fixed token rates: prefill tokens at one rate, decode tokens at another, plus an overhead.
#[derive(Clone, Copy, Debug)]
pub struct RatesCost {
    /// Seconds per prefill token.
    pub sec_per_prefill_token: f64,
    /// Seconds per decoded token.
    pub sec_per_decode_token: f64,
    /// Fixed per-step cost.
    pub overhead: SimDuration,
}

impl StepCostModel for RatesCost {
    fn step_time(&self, b: &BatchShape) -> SimDuration {
        let s = f64::from(b.prefill_tokens) * self.sec_per_prefill_token + f64::from(b.decode_seqs) * self.sec_per_decode_token;
        SimDuration::from_secs_f64(s) + self.overhead
    }
}

/// Roofline: max(FLOPs / achieved FLOP/s, bytes / achieved bandwidth) + TP all-reduce + overhead.
///
/// Each matrix multiply runs at the tensor-core rate of its weights' format
/// ([`GpuSpec::peak_for`]: FP8 at twice BF16, FP4 on Blackwell at four times); attention and
/// the LM head run in BF16. Weights and KV cost the bytes of their formats.
#[derive(Clone, Debug)]
pub struct RooflineCost {
    /// Seconds of compute per token, per sequence and per attended (query, key) pair, at
    /// the efficiency given (the layers' and the experts' multiplies at their formats' rates).
    dense_sec_per_token: f64,
    expert_sec_per_token: f64,
    sec_per_seq: f64,
    sec_per_pair: f64,
    /// Sliding-window layers' attention: seconds per pair, and the window.
    window: Option<(f64, f64)>,
    /// Weights every step reads (all of a dense model; all but the experts of a MoE model).
    fixed_weight_bytes: f64,
    /// A MoE model's experts: `(experts, active per token, bytes of one across layers)`.
    moe: Option<(u32, u32, f64)>,
    /// KV bytes per token over the full-attention layers, and over the sliding ones.
    kv_bytes_per_token: f64,
    window_kv_bytes_per_token: f64,
    bytes_s: f64,
    allreduce_sec_per_token: f64,
    overhead: SimDuration,
    seq_overhead_s: f64,
    /// Fixed cost per layer per step (see [`RooflineParams::layer_overhead`]), × layers.
    layer_overhead_s: f64,
    /// 1 / [`RooflineParams::moe_efficiency`]: how much slower experts' GEMMs run than
    /// the dense ones at the same mfu and mbu.
    expert_slowdown: f64,
    frontend: SimDuration,
    layers: f64,
    four_bit_experts: bool,
}

impl RooflineCost {
    /// Builds the cost model of `model` on `tp` GPUs of kind `gpu`.
    pub fn new(model: &ModelSpec, gpu: &GpuSpec, tp: u32, mfu: f64, mbu: f64, overhead: SimDuration) -> Self {
        let tp_f = f64::from(tp.max(1));
        let q_dim = f64::from(model.heads * model.head_dim);
        let hidden = f64::from(model.hidden);
        // Two all-reduces per layer (after attention and after the MLP) of hidden × dtype bytes
        // per token; a ring moves 2 (tp − 1) / tp of the message per GPU. Their latency is
        // part of the per-layer overhead ([`RooflineParams::layer_overhead`]).
        let ar_tok = if tp > 1 && gpu.interconnect_bytes_s > 0.0 {
            let per_token_bytes = 2.0 * f64::from(model.layers) * hidden * f64::from(model.dtype_bytes);
            per_token_bytes * 2.0 * (tp_f - 1.0) / tp_f / gpu.interconnect_bytes_s
        } else {
            0.0
        };
        let achieved = |f: NumberFormat| gpu.peak_for(f) * mfu * tp_f;
        let bf16 = achieved(NumberFormat::Bf16);
        let expert_flops = 2.0 * f64::from(model.active_experts.min(model.experts)) * model.expert_params() as f64;
        // QKᵀ and AV: 2 matmuls × 2 FLOPs per multiply-add × q_dim, per layer and pair.
        let pair_flops = 4.0 * q_dim;
        let window = model.sliding_window.filter(|&(w, l)| w > 0 && l > 0);
        let kv_layer = model.kv_bytes_per_token_layer();
        RooflineCost {
            dense_sec_per_token: 2.0 * model.dense_layer_params() as f64 / achieved(model.weights),
            expert_sec_per_token: if model.experts > 1 { expert_flops / achieved(model.expert_weights) } else { 0.0 },
            sec_per_seq: 2.0 * f64::from(model.vocab) * hidden / bf16,
            sec_per_pair: pair_flops * f64::from(model.full_attention_layers()) / bf16,
            window: window.map(|(w, l)| (pair_flops * f64::from(l.min(model.layers)) / bf16, f64::from(w))),
            fixed_weight_bytes: model.weight_bytes() as f64 - f64::from(model.experts) * model.expert_bytes() as f64,
            moe: (model.experts > 1).then(|| (model.experts, model.active_experts, model.expert_bytes() as f64)),
            kv_bytes_per_token: model.kv_bytes_per_token() as f64,
            window_kv_bytes_per_token: window.map_or(0.0, |(_, l)| f64::from(l.min(model.layers)) * kv_layer),
            bytes_s: gpu.hbm_bytes_s * mbu * tp_f,
            allreduce_sec_per_token: ar_tok,
            overhead,
            seq_overhead_s: 0.0,
            layer_overhead_s: 0.0,
            expert_slowdown: 1.0,
            frontend: SimDuration::ZERO,
            layers: f64::from(model.layers),
            four_bit_experts: model.expert_weights.bytes() < 1.0,
        }
    }

    /// The same model with the overheads and MoE efficiency of `d` (its mfu, mbu and step
    /// overhead are the ones given to [`RooflineCost::new`]).
    pub fn with_overheads(mut self, d: &RooflineParams) -> Self {
        self.seq_overhead_s = d.seq_overhead.as_secs_f64();
        self.layer_overhead_s = d.layer_overhead.as_secs_f64() * self.layers;
        let eff = if self.four_bit_experts { d.moe_efficiency_fp4 } else { d.moe_efficiency };
        self.expert_slowdown = 1.0 / eff.clamp(1e-3, 1.0);
        self.frontend = d.frontend;
        self
    }

    /// The cost model of `model` on `tp` GPUs of kind `gpu` with a set of catalogue defaults.
    pub fn with_defaults(model: &ModelSpec, gpu: &GpuSpec, tp: u32, d: &RooflineParams) -> Self {
        RooflineCost::new(model, gpu, tp, d.mfu, d.mbu, d.step_overhead).with_overheads(d)
    }
}

impl StepCostModel for RooflineCost {
    fn step_time(&self, b: &BatchShape) -> SimDuration {
        if b.is_empty() {
            return self.overhead;
        }
        let tokens = f64::from(b.prefill_tokens) + f64::from(b.decode_seqs);
        let seqs = f64::from(b.prefill_seqs) + f64::from(b.decode_seqs);
        let pairs = b.prefill_attention_pairs as f64 + b.decode_context_tokens as f64;
        let mut compute = self.dense_sec_per_token * tokens
            + self.expert_sec_per_token * self.expert_slowdown * tokens
            + self.sec_per_seq * seqs
            + self.sec_per_pair * pairs;
        // Weights once per step (of a MoE model, only the experts its tokens touch); KV read
        // for every attended context token of decodes, and written once for every new token.
        let weights = match self.moe {
            None => self.fixed_weight_bytes,
            Some((e, k, per_expert)) => {
                self.fixed_weight_bytes + crate::catalogue::experts_touched(e, k, tokens) * per_expert * self.expert_slowdown
            }
        };
        let mut bytes = weights + self.kv_bytes_per_token * (b.decode_context_tokens as f64 + tokens);
        if let Some((sec_per_pair, w)) = self.window {
            // A windowed layer attends to at most `w` keys per query.
            compute += sec_per_pair * pairs.min(tokens * w);
            let read = (b.decode_context_tokens as f64).min(f64::from(b.decode_seqs) * w);
            bytes += self.window_kv_bytes_per_token * (read + tokens);
        }
        let memory = bytes / self.bytes_s;
        let comm = self.allreduce_sec_per_token * tokens;
        SimDuration::from_secs_f64(compute.max(memory) + comm + self.seq_overhead_s * seqs + self.layer_overhead_s) + self.overhead
    }
    fn request_latency(&self) -> SimDuration {
        self.frontend
    }
}

/// Number of step terms of the `fitted` model.
pub const FITTED_TERMS: usize = 6;

/// What each coefficient of [`FittedCost::c`] multiplies, in order.
pub const FITTED_TERM_NAMES: [&str; FITTED_TERMS] = [
    "c0 per step",
    "c1 per prefill token",
    "c2 per prefill token²",
    "c3 per prefill token × context",
    "c4 per decode sequence",
    "c5 per decode context token",
];

/// The `fitted` step cost model (DESIGN §2), coefficients from `simctl calibrate`:
///
/// `t = c0 + c1·p + c2·Σchunk² + c3·Σchunk·ctx + c4·d + c5·dctx`
///
/// where `p` is the prefill tokens of the step, `chunk` each sequence's prefill chunk and
/// `ctx` the tokens it already has in KV (for one sequence: `p²` and `p·ctx`), `d` the
/// decoding sequences and `dctx` their summed context. A request also pays
/// [`FittedCost::frontend`] once, on its first token.
///
/// Two optional terms refine the decode attention: [`FittedCost::cached_context`] (c6) and
/// [`FittedCost::beyond_cache`] (c7).
///
/// This is the one implementation: the simulator steps with it and calibration fits its
/// [`FittedCost::features`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FittedCost {
    /// The six step coefficients, in seconds per unit of their feature.
    pub c: [f64; FITTED_TERMS],
    /// Per-request latency outside the steps, paid once on the first token.
    pub frontend: SimDuration,
    /// Seconds per decode context token in prefix-cached blocks
    /// ([`BatchShape::decode_cached_tokens`]), in place of `c[5]`: blocks that several
    /// running sequences share are read from the CPU's caches or the GPU's L2 rather than
    /// from memory. `None`: priced as any context token.
    pub cached_context: Option<f64>,
    /// Decode attention past the caches: the context a step's decodes read from memory (all
    /// of it, less the prefix-cached blocks when `cached_context` prices those) beyond
    /// [`CacheKnee::tokens`] costs [`CacheKnee::extra_s`] more per token than `c[5]`. The KV
    /// of a small batch stays in the CPU's caches from one layer and step to the next; a
    /// large one streams from memory. `None`: one rate for every context token.
    pub beyond_cache: Option<CacheKnee>,
}

/// Where decode attention's working set leaves the caches, and what that costs
/// ([`FittedCost::beyond_cache`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CacheKnee {
    /// Decode context tokens per step the caches hold.
    pub tokens: u64,
    /// Extra seconds per decode context token beyond `tokens` (c7).
    pub extra_s: f64,
}

impl FittedCost {
    /// A model with these step coefficients and no frontend latency.
    pub fn new(c: [f64; FITTED_TERMS]) -> Self {
        FittedCost { c, frontend: SimDuration::ZERO, cached_context: None, beyond_cache: None }
    }

    /// The decode context tokens a step reads from memory rather than from blocks another
    /// decode of the step has just read (those count when no c6 prices them apart).
    pub fn memory_context(&self, b: &BatchShape) -> u64 {
        if self.cached_context.is_some() {
            b.decode_context_tokens - b.decode_cached_tokens.min(b.decode_context_tokens)
        } else {
            b.decode_context_tokens
        }
    }

    /// The tokens of a step's decode context past the caches' `tokens` (c7's feature).
    pub fn beyond(&self, b: &BatchShape, tokens: u64) -> u64 {
        self.memory_context(b).saturating_sub(tokens)
    }

    /// The features of a step, in coefficient order.
    pub fn features(b: &BatchShape) -> [f64; FITTED_TERMS] {
        [
            1.0,
            f64::from(b.prefill_tokens),
            b.prefill_chunk_sq as f64,
            b.prefill_context_pairs as f64,
            f64::from(b.decode_seqs),
            b.decode_context_tokens as f64,
        ]
    }

    /// The step time in seconds, before clamping at zero.
    pub fn step_secs(&self, b: &BatchShape) -> f64 {
        let mut t: f64 = Self::features(b).iter().zip(self.c).map(|(x, c)| x * c).sum();
        if let Some(c6) = self.cached_context
            && b.decode_cached_tokens > 0
        {
            t += (c6 - self.c[5]) * b.decode_cached_tokens as f64;
        }
        if let Some(k) = self.beyond_cache {
            t += k.extra_s * self.beyond(b, k.tokens) as f64;
        }
        t
    }
}

impl StepCostModel for FittedCost {
    fn step_time(&self, b: &BatchShape) -> SimDuration {
        SimDuration::from_secs_f64(self.step_secs(b).max(0.0))
    }
    fn prices_cached_context(&self) -> bool {
        self.cached_context.is_some()
    }
    fn request_latency(&self) -> SimDuration {
        self.frontend
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue;

    #[test]
    fn fitted_features_are_exact_for_odd_chunks_and_several_sequences() {
        let mut b = BatchShape::default();
        b.add_prefill_chunk(7, 100);
        b.add_prefill_chunk(3, 0);
        b.add_decode(50);
        b.add_decode(10);
        assert_eq!(FittedCost::features(&b), [1.0, 10.0, 49.0 + 9.0, 700.0, 2.0, 60.0]);
        assert_eq!(b.prefill_attention_pairs, 7 * (100 + 4) + 3 * 2);
        let m = FittedCost { frontend: SimDuration::from_millis(3), ..FittedCost::new([1e-3, 1e-5, 1e-8, 1e-9, 1e-4, 1e-7]) };
        let want = 1e-3 + 10.0 * 1e-5 + 58.0 * 1e-8 + 700.0 * 1e-9 + 2.0 * 1e-4 + 60.0 * 1e-7;
        assert_eq!(m.step_time(&b), SimDuration::from_secs_f64(want));
        assert_eq!(m.request_latency(), SimDuration::from_millis(3));
        assert_eq!(FittedCost::new([-1.0, 0.0, 0.0, 0.0, 0.0, 0.0]).step_time(&b), SimDuration::ZERO, "never negative");
    }

    #[test]
    fn cached_decode_context_is_priced_at_its_own_rate() {
        let mut b = BatchShape::default();
        b.add_decode_cached(1100, 1024);
        b.add_decode_cached(1100, 2000);
        b.add_decode(500);
        assert_eq!((b.decode_context_tokens, b.decode_cached_tokens), (2700, 2124));
        let c = [1e-3, 0.0, 0.0, 0.0, 1e-4, 5e-7];
        let plain = FittedCost::new(c);
        let shared = FittedCost { cached_context: Some(1e-7), ..plain };
        // Without the term, cached context costs as any: the old model, to the bit.
        assert_eq!(plain.step_secs(&b), 1e-3 + 3.0 * 1e-4 + 2700.0 * 5e-7);
        let want = 1e-3 + 3.0 * 1e-4 + (2700.0 - 2124.0) * 5e-7 + 2124.0 * 1e-7;
        assert!((shared.step_secs(&b) - want).abs() < 1e-15, "{}", shared.step_secs(&b));
    }

    #[test]
    fn decode_context_past_the_caches_pays_its_extra_rate() {
        let c = [1e-3, 0.0, 0.0, 0.0, 1e-4, 3e-7];
        let knee = CacheKnee { tokens: 4096, extra_s: 2e-7 };
        let m = FittedCost { beyond_cache: Some(knee), ..FittedCost::new(c) };
        let step = |ctx: &[u32]| {
            let mut b = BatchShape::default();
            ctx.iter().for_each(|&x| b.add_decode(x));
            b
        };
        // Within the caches: the linear model, to the bit.
        let small = step(&[1000, 3000]);
        assert_eq!(m.step_secs(&small), FittedCost::new(c).step_secs(&small));
        // 8,000 tokens: 3,904 of them past the knee.
        let big = step(&[4000, 4000]);
        let want = 1e-3 + 2.0 * 1e-4 + 8000.0 * 3e-7 + 3904.0 * 2e-7;
        assert!((m.step_secs(&big) - want).abs() < 1e-15, "{}", m.step_secs(&big));
        // Blocks a sharer has just read come from the caches when c6 prices them.
        let mut shared = BatchShape::default();
        shared.add_decode_cached(4000, 3000);
        shared.add_decode_cached(4000, 3000);
        shared.decode_cached_tokens -= 3000; // the first sharer reads them from memory
        let with_c6 = FittedCost { cached_context: Some(5e-8), ..m };
        assert_eq!(with_c6.beyond(&shared, knee.tokens), 5000 - 4096, "5,000 tokens from memory");
        assert_eq!(m.beyond(&shared, knee.tokens), 8000 - 4096, "without c6, every context token is from memory");
        // Prefill-only steps have no decode context: no extra cost.
        let mut p = BatchShape::default();
        p.add_prefill_chunk(2048, 8192);
        assert_eq!(m.step_secs(&p), FittedCost::new(c).step_secs(&p));
    }

    #[test]
    fn rates_add_prefill_and_decode_time() {
        let c = RatesCost { sec_per_prefill_token: 1e-4, sec_per_decode_token: 1e-3, overhead: SimDuration::from_micros(5) };
        let b = BatchShape { prefill_tokens: 1000, prefill_seqs: 1, decode_seqs: 4, ..Default::default() };
        assert_eq!(c.step_time(&b), SimDuration::from_micros(100_000 + 4_000 + 5));
    }

    #[test]
    fn roofline_decode_is_memory_bound_and_prefill_compute_bound() {
        let m = catalogue::model("llama-3.1-8b").unwrap();
        let g = catalogue::gpu("h100-sxm").unwrap();
        let c = RooflineCost::new(&m, &g, 1, 1.0, 1.0, SimDuration::ZERO);
        let decode = c.step_time(&BatchShape { decode_seqs: 1, decode_context_tokens: 1, ..Default::default() });
        let ideal = m.weight_bytes() as f64 / g.hbm_bytes_s;
        assert!((decode.as_secs_f64() / ideal - 1.0).abs() < 0.01, "{decode}");
        let n = 4096u32;
        let prefill = c.step_time(&BatchShape {
            prefill_tokens: n,
            prefill_seqs: 1,
            prefill_attention_pairs: u64::from(n) * u64::from(n + 1) / 2,
            ..Default::default()
        });
        let flops = 2.0 * m.active_layer_params() as f64 * f64::from(n);
        assert!(prefill.as_secs_f64() > flops / g.peak_flops);
        assert!(prefill.as_secs_f64() < 1.25 * flops / g.peak_flops, "{prefill}");
    }

    #[test]
    fn a_moe_decode_step_reads_only_the_experts_its_tokens_touch() {
        let m = catalogue::model("mixtral-8x7b").unwrap();
        let g = catalogue::gpu("h100-sxm").unwrap();
        let c = RooflineCost::new(&m, &g, 1, 1.0, 1.0, SimDuration::ZERO);
        let decode =
            |seqs: u32| c.step_time(&BatchShape { decode_seqs: seqs, decode_context_tokens: u64::from(seqs), ..Default::default() });
        // One token touches 2 of 8 experts: 6 experts' weights (~33 GB of 93 GB) stay unread.
        let per_expert = m.expert_bytes() as f64;
        let one = decode(1).as_secs_f64() * g.hbm_bytes_s;
        assert!((one - (m.weight_bytes() as f64 - 6.0 * per_expert)).abs() / one < 0.01, "{one:e}");
        assert!((m.experts_touched(1.0) - 2.0).abs() < 1e-12);
        // A large batch touches every expert: the whole model, as before.
        assert!((m.experts_touched(256.0) - 8.0).abs() < 1e-9);
        assert!(decode(256) > decode(4) && decode(4) > decode(1));
        // Dense models read everything at any batch.
        let d = catalogue::model("llama-3.1-8b").unwrap();
        assert_eq!(d.step_weight_bytes(1.0), d.weight_bytes() as f64);
    }

    #[test]
    fn tensor_parallel_splits_compute_and_adds_communication() {
        let m = catalogue::model("llama-3.1-70b").unwrap();
        let g = catalogue::gpu("h100-sxm").unwrap();
        let b = BatchShape { prefill_tokens: 2048, prefill_seqs: 1, prefill_attention_pairs: 2048 * 2049 / 2, ..Default::default() };
        let t1 = RooflineCost::new(&m, &g, 1, 0.5, 0.8, SimDuration::ZERO).step_time(&b);
        let t4 = RooflineCost::new(&m, &g, 4, 0.5, 0.8, SimDuration::ZERO).step_time(&b);
        assert!(t4.as_secs_f64() > t1.as_secs_f64() / 4.0);
        assert!(t4.as_secs_f64() < t1.as_secs_f64() / 3.0);
    }
}
