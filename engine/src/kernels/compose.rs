//! A step's time composed from measured kernel times, the way AIConfigurator composes a
//! forward pass, precomputed per instance so that a step costs a handful of lookups.

use super::curve::Curve;
use super::tables::{AttnKey, BatchTable, KernelTables, MoeKey};
use crate::catalogue::{Backend, GpuSpec, ModelSpec, NumberFormat};
use crate::cost::{BatchShape, StepCostModel};
use crate::time::SimDuration;

/// The engine's own time per step, outside the kernels: the per-backend constants of the
/// kernel model (fitted on the public serving measurements, see `docs/zero-shot.md`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelOverheads {
    /// Every step: scheduling, input preparation, launching the forward pass.
    pub step: SimDuration,
    /// Every layer of every step: the layer's small kernels the tables do not time (rotary
    /// embedding, the KV-cache write, activation quantisation, residual adds: a few
    /// microseconds each, graph-replayed or not).
    pub per_layer: SimDuration,
    /// Every sequence in a step: its share of input preparation, sampling and output
    /// processing.
    pub per_seq: SimDuration,
    /// Every layer of a step that computes prompt tokens: launching its kernels from the CPU.
    /// The engines replay decode-only steps from captured CUDA graphs, but run steps with
    /// prefill (at least their attention) eagerly, and the kernel tables, measured in
    /// isolation, do not see that dispatch (AIConfigurator adds the same term to TTFT for
    /// vLLM, `_prefill_dispatch_overhead_ms`, 0.8 ms a layer).
    pub prefill_per_layer: SimDuration,
    /// Every MoE layer of a step that computes prompt tokens, on top of `prefill_per_layer`:
    /// what an eager MoE layer launches around the expert GEMMs the tables time (routing
    /// top-k, token sorting and alignment, permuting tokens to their experts and back), one
    /// kernel after another from the CPU.
    pub prefill_per_moe_layer: SimDuration,
}

impl KernelOverheads {
    /// No overhead: the kernels alone.
    pub const ZERO: KernelOverheads = KernelOverheads {
        step: SimDuration::ZERO,
        per_layer: SimDuration::ZERO,
        per_seq: SimDuration::ZERO,
        prefill_per_layer: SimDuration::ZERO,
        prefill_per_moe_layer: SimDuration::ZERO,
    };
}

/// The per-backend defaults, fitted on every GPU of the shared silicon measurements by
/// `cargo run --release -p simctl-calibration --example zero_shot -- DATA.csv` (which also
/// fits and scores them leave-one-GPU-out; `docs/zero-shot.md` shows the held-out errors). Source data: NVIDIA
/// AIConfigurator's `silicon_sample.csv` (Apache-2.0).
pub fn default_overheads(backend: Backend) -> KernelOverheads {
    // (step µs, µs per layer, per-sequence µs, prefill µs per layer, prefill µs per MoE
    // layer); TensorRT-LLM has no tables (its GPUs use the roofline), so its entry is vLLM's.
    let (step, layer, seq, prefill, prefill_moe) = match backend {
        Backend::Vllm | Backend::Trtllm => VLLM,
        Backend::Sglang => SGLANG,
    };
    let us = |x: f64| SimDuration::from_nanos((x * 1e3).round() as u64);
    KernelOverheads {
        step: us(step),
        per_layer: us(layer),
        per_seq: us(seq),
        prefill_per_layer: us(prefill),
        prefill_per_moe_layer: us(prefill_moe),
    }
}

const VLLM: (f64, f64, f64, f64, f64) = (0.0, 13.80, 10.74, 146.9, 318.8);
const SGLANG: (f64, f64, f64, f64, f64) = (27.0, 0.0, 20.87, 1000.0, 0.0);

/// Where a lookup leaves the measured range: what, and by how much.
#[derive(Clone, Debug, PartialEq)]
pub struct Extrapolation {
    /// The kernel (`GEMM qkv`, `prefill attention`, `MoE`, ...).
    pub kernel: String,
    /// What lies outside the tables and the rule used.
    pub detail: String,
}

/// Step cost from kernel tables (see the module docs and `docs/zero-shot.md`).
///
/// `t = F(tokens) + G(sequences) + prefill attention + decode attention + step + per_seq ×
/// sequences`, where `F` sums over the layers the GEMMs (QKV, output projection, MLP or the
/// MoE router), the MoE experts, the element-wise kernels (add + norm twice, the gated
/// activation), the tensor-parallel all-reduces (two per layer) and the embedding; and `G` is
/// the LM head over one token per sequence. Both are built once, on the union of their
/// measured points, so the sum is exact wherever every part is interpolated.
#[derive(Clone, Debug)]
pub struct KernelCost {
    tokens: Curve,
    seqs: Curve,
    /// `tokens` and `seqs` at 0, 1, ..., [`DENSE`] − 1: decode steps and small prefills read
    /// an array instead of searching the curves (the same values: the curves evaluated there).
    tokens_at: Vec<f64>,
    seqs_at: Vec<f64>,
    ctx: Option<BatchTable>,
    ctx_window: Option<BatchTable>,
    gen_full: Option<BatchTable>,
    gen_window: Option<BatchTable>,
    full_layers: f64,
    window_layers: f64,
    window: f64,
    step_s: f64,
    seq_s: f64,
    prefill_step_s: f64,
    notes: Vec<Extrapolation>,
}

/// Whole token and sequence counts whose costs are kept in arrays.
const DENSE: usize = 1024;

fn dense(c: &Curve) -> Vec<f64> {
    (0..DENSE).map(|x| if x == 0 { 0.0 } else { c.at(x as f64) }).collect()
}

fn quadratic(r: f64) -> f64 {
    r * r
}
fn linear(r: f64) -> f64 {
    r
}

/// AIConfigurator's names of the GEMM formats to try for weights in `f`, best first.
fn gemm_dtypes(f: NumberFormat, backend: Backend) -> &'static [&'static str] {
    match (f, backend) {
        (NumberFormat::Fp8Block, _) => &["fp8_block", "fp8"],
        (NumberFormat::Fp8, Backend::Sglang) => &["fp8_block", "fp8"],
        (NumberFormat::Fp8, _) => &["fp8", "fp8_block"],
        (NumberFormat::Nvfp4 | NumberFormat::Mxfp4, _) => &["nvfp4"],
        _ => &["bfloat16"],
    }
}

/// The same for MoE experts.
fn moe_dtypes(f: NumberFormat, backend: Backend) -> &'static [&'static str] {
    match (f, backend) {
        (NumberFormat::Fp8Block, _) => &["fp8_block", "fp8"],
        (NumberFormat::Fp8, Backend::Sglang) => &["fp8_block", "fp8"],
        (NumberFormat::Fp8, _) => &["fp8", "fp8_block"],
        (NumberFormat::Nvfp4, _) => &["nvfp4", "w4a8_mxfp4_mxfp8", "w4a16_mxfp4"],
        (NumberFormat::Mxfp4, _) => &["w4a16_mxfp4", "w4a8_mxfp4_mxfp8", "nvfp4"],
        (NumberFormat::Int4, _) => &["int4_wo"],
        _ => &["bfloat16"],
    }
}

fn kv_dtype(f: NumberFormat) -> &'static str {
    if f.bytes() <= 1.0 { "fp8" } else { "bfloat16" }
}

/// Datasheet roofline of one GEMM: `max(2mnk / peak, bytes / bandwidth)`, activations in
/// BF16 and weights in `f`.
fn gemm_roofline(gpu: &GpuSpec, f: NumberFormat, m: f64, n: f64, k: f64) -> f64 {
    let flops = 2.0 * m * n * k / gpu.peak_for(f);
    let bytes = 2.0 * (m * k + m * n) + n * k * f.bytes();
    flops.max(bytes / gpu.hbm_bytes_s)
}

struct Builder<'a> {
    t: &'a KernelTables,
    gpu: &'a GpuSpec,
    notes: Vec<Extrapolation>,
}

impl Builder<'_> {
    fn note(&mut self, kernel: &str, detail: String) {
        if !self.notes.iter().any(|n| n.kernel == kernel && n.detail == detail) {
            self.notes.push(Extrapolation { kernel: kernel.into(), detail });
        }
    }

    /// Latency over `m` of one `(n, k)` GEMM with weights in `f`: the measured curve, or —
    /// outside the measured shapes or formats — the nearest measured one scaled by the
    /// roofline ratio of the two shapes at every `m`.
    fn gemm(&mut self, name: &str, f: NumberFormat, n: u32, k: u32) -> Curve {
        // A GEMM wider or deeper than any measured one is the sum of equal parts that are not
        // (column tiles along n; partial products along k): the LM head of a 128k vocabulary
        // is two GEMMs of 64k columns.
        let limits = gemm_dtypes(f, self.t.backend).iter().chain(&["bfloat16"]).find_map(|d| self.t.gemm_limits(d));
        if let Some((n_max, k_max)) = limits {
            let (pn, pk) = (n.div_ceil(n_max.max(1)), k.div_ceil(k_max.max(1)));
            if pn * pk > 1 {
                let part = self.gemm_part(name, f, n.div_ceil(pn), k.div_ceil(pk));
                return part.map(|_, y| y * f64::from(pn * pk));
            }
        }
        self.gemm_part(name, f, n, k)
    }

    fn gemm_part(&mut self, name: &str, f: NumberFormat, n: u32, k: u32) -> Curve {
        let backend = self.t.backend;
        let found = gemm_dtypes(f, backend).iter().find_map(|d| self.t.gemm_curve(d, n, k).map(|c| (c, f)));
        let (curve, (nc, kc), used) = match found {
            Some(((c, at), f)) => (c, at, f),
            None => {
                let Some((c, at)) = self.t.gemm_curve("bfloat16", n, k) else {
                    self.note(name, format!("no measured GEMM near n={n} k={k}: datasheet roofline"));
                    let pts = [1.0, 16.0, 256.0, 4096.0, 32768.0];
                    return Curve::new(pts.iter().map(|&m| (m, gemm_roofline(self.gpu, f, m, f64::from(n), f64::from(k)))).collect());
                };
                self.note(name, format!("{} GEMMs not measured here: BF16 table scaled by the roofline ratio", f.as_str()));
                (c, at, NumberFormat::Bf16)
            }
        };
        if (nc, kc) != (n, k) {
            self.note(name, format!("n={n} k={k} outside the measured {nc}x{kc}: scaled by the roofline ratio"));
        }
        if (nc, kc) == (n, k) && used == f {
            return curve;
        }
        let (gpu, fl, nf, kf, ncf, kcf) = (self.gpu, f, f64::from(n), f64::from(k), f64::from(nc), f64::from(kc));
        curve.map(|m, y| y * gemm_roofline(gpu, fl, m, nf, kf) / gemm_roofline(gpu, used, m, ncf, kcf))
    }

    /// An element-wise kernel moving `bytes_per_token` per token: AIConfigurator's memory-op
    /// formula, `bytes / (bandwidth × fraction) + fixed latency`, on the points `xs`.
    fn mem_op(&self, bytes_per_token: f64, fraction: f64, xs: &[f64]) -> Curve {
        let bw = self.t.mem_bw * fraction;
        Curve::new(xs.iter().map(|&m| (m, m * bytes_per_token / bw + self.t.mem_latency)).collect())
    }

    fn attention(&mut self, kind: &str, key: &AttnKey, decode: bool) -> Option<BatchTable> {
        let look = |k: &AttnKey| if decode { self.t.gen_attn(k) } else { self.t.ctx(k) };
        if let Some(t) = look(key) {
            return Some(t);
        }
        let bf16 = AttnKey { kv_dtype: "bfloat16".into(), ..key.clone() };
        if let Some(t) = look(&bf16) {
            self.note(kind, format!("{} KV not measured for this head shape: BF16 KV table", key.kv_dtype));
            return Some(t);
        }
        // The nearest measured head shape (same window), scaled by the ratio of the work:
        // query heads × head dim for prefill (FLOPs), KV heads × head dim for decode (bytes).
        let work = |k: &AttnKey| f64::from(if decode { k.kv_heads } else { k.heads }) * f64::from(k.head_dim);
        let keys: Vec<&AttnKey> = if decode { self.t.gen_keys().collect() } else { self.t.ctx_keys().collect() };
        let same = |k: &&AttnKey| k.window == key.window && (k.kv_dtype == key.kv_dtype || k.kv_dtype == "bfloat16");
        let dist = |k: &AttnKey| {
            (f64::from(k.heads) / f64::from(key.heads)).ln().abs()
                + (f64::from(k.kv_heads) / f64::from(key.kv_heads)).ln().abs()
                + 2.0 * (f64::from(k.head_dim) / f64::from(key.head_dim)).ln().abs()
                + if k.kv_dtype == key.kv_dtype { 0.0 } else { 0.1 }
        };
        // Ties broken by the shape itself: the tables are hash maps, the choice must not be.
        let order = |k: &AttnKey| (k.heads, k.kv_heads, k.head_dim, k.kv_dtype.clone());
        let Some(near) =
            keys.into_iter().filter(same).min_by(|a, b| dist(a).total_cmp(&dist(b)).then_with(|| order(a).cmp(&order(b)))).cloned()
        else {
            self.note(
                kind,
                format!("head shape {}/{}x{} not measured and nothing near it: left out", key.heads, key.kv_heads, key.head_dim),
            );
            return None;
        };
        let r = work(key) / work(&near);
        self.note(
            kind,
            format!(
                "head shape {}/{}x{} not measured: {}/{}x{} scaled by the work ratio {r:.2}",
                key.heads, key.kv_heads, key.head_dim, near.heads, near.kv_heads, near.head_dim
            ),
        );
        let t = look(&near).expect("listed key");
        Some(BatchTable { rows: t.rows.iter().map(|(b, c)| (*b, c.map(|_, y| y * r))).collect() })
    }
}

impl KernelCost {
    /// Builds the cost of `model` (in its formats) on `tp` GPUs described by `tables` and
    /// `gpu`, with the engine `overheads`.
    pub fn new(
        model: &ModelSpec,
        gpu: &GpuSpec,
        tp: u32,
        tables: &KernelTables,
        overheads: KernelOverheads,
        expert_parallel: bool,
    ) -> KernelCost {
        let tp = tp.max(1);
        let mut b = Builder { t: tables, gpu, notes: Vec::new() };
        let (h, layers) = (model.hidden, f64::from(model.layers));
        let heads = (model.heads / tp).max(1);
        let kvh = (model.kv_heads / tp).max(1);
        let hd = model.head_dim;
        let w = model.weights;
        // Per layer: QKV and output projections; a dense MLP (gate+up, down) or the MoE
        // router (BF16) and experts.
        let mut per_layer = b.gemm("GEMM qkv", w, (heads + 2 * kvh) * hd, h);
        per_layer = per_layer.plus(&b.gemm("GEMM attention output", w, h, heads * hd), 1.0);
        let inter = model.intermediate / tp;
        let moe = model.experts > 1;
        if moe {
            per_layer = per_layer.plus(&b.gemm("GEMM MoE router", NumberFormat::Bf16, model.experts, h), 1.0);
            per_layer = per_layer.plus(&moe_curve(&mut b, model, tp, expert_parallel), 1.0);
        } else {
            per_layer = per_layer.plus(&b.gemm("GEMM MLP gate+up", w, 2 * inter, h), 1.0);
            per_layer = per_layer.plus(&b.gemm("GEMM MLP down", w, h, inter), 1.0);
        }
        let xs: Vec<f64> = per_layer.xs().to_vec();
        // Element-wise kernels (AIConfigurator's llama composition): add + RMSNorm before
        // attention and before the MLP (2h in, 2h out, BF16), and the gated activation of a
        // dense MLP (2·inter in, inter out); 80% of the memory bandwidth.
        let hf = f64::from(h);
        let norm = b.mem_op(2.0 * (2.0 * hf + 2.0 * hf), 0.8, &xs);
        per_layer = per_layer.plus(&norm, 2.0);
        if !moe {
            let act = b.mem_op(2.0 * (2.0 * f64::from(inter) + f64::from(inter)), 0.8, &xs);
            per_layer = per_layer.plus(&act, 1.0);
        }
        // Tensor parallelism: two all-reduces of the hidden state (BF16) per layer.
        if tp > 1 {
            match tables.allreduce(tp) {
                Some((mut ar, g)) => {
                    if g != tp {
                        let ring = |g: f64| 2.0 * (g - 1.0) / g;
                        let r = ring(f64::from(tp)) / ring(f64::from(g));
                        b.note("all-reduce", format!("{tp} GPUs not measured: {g}-GPU table scaled by the ring's traffic ({r:.2}x)"));
                        ar = ar.map(|_, y| y * r);
                    }
                    // The tables are keyed by the message's element count (AIConfigurator's
                    // collector all-reduces a `[size / 4096, 4096]` BF16 tensor): a step of
                    // `m` tokens reduces `m × hidden` elements.
                    let on_tokens = Curve::new(xs.iter().map(|&m| (m, ar.at(m * hf))).collect());
                    per_layer = per_layer.plus(&on_tokens, 2.0);
                }
                None => b.note("all-reduce", "not measured here: left out".into()),
            }
        }
        // The embedding gather once per step (AIConfigurator: 30% of the bandwidth).
        let embedding = b.mem_op(2.0 * hf, 0.3, &xs);
        let tokens = per_layer.map(|_, y| y * layers).plus(&embedding, 1.0);
        // LM head: one token per sequence (BF16, vocabulary split over TP).
        let seqs = b.gemm("GEMM LM head", NumberFormat::Bf16, model.vocab / tp, h);

        let kv = kv_dtype(model.kv_cache).to_string();
        let key = |window: u32| AttnKey { heads, kv_heads: kvh, head_dim: hd, window, kv_dtype: kv.clone() };
        let (window, window_layers) = model.sliding_window.filter(|&(w, l)| w > 0 && l > 0).unwrap_or((0, 0));
        let full_layers = model.layers - window_layers.min(model.layers);
        let ctx = b.attention("prefill attention", &key(0), false);
        let gen_full = b.attention("decode attention", &key(0), true);
        let (ctx_window, gen_window) = if window_layers > 0 {
            (b.attention("prefill attention (window)", &key(window), false), b.attention("decode attention (window)", &key(window), true))
        } else {
            (None, None)
        };
        KernelCost {
            tokens_at: dense(&tokens),
            seqs_at: dense(&seqs),
            tokens,
            seqs,
            ctx,
            ctx_window,
            gen_full,
            gen_window,
            full_layers: f64::from(full_layers),
            window_layers: f64::from(window_layers),
            window: f64::from(window),
            step_s: overheads.step.as_secs_f64() + overheads.per_layer.as_secs_f64() * layers,
            seq_s: overheads.per_seq.as_secs_f64(),
            prefill_step_s: (overheads.prefill_per_layer.as_secs_f64()
                + if moe { overheads.prefill_per_moe_layer.as_secs_f64() } else { 0.0 })
                * layers,
            notes: b.notes,
        }
    }

    /// Where the instance's shapes leave the measured tables (and the rule used instead).
    pub fn extrapolations(&self) -> &[Extrapolation] {
        &self.notes
    }

    /// Where steps of up to `max_tokens` tokens, `max_seqs` sequences and `max_context`
    /// tokens of context would read past the measured ranges.
    pub fn range_extrapolations(&self, max_tokens: u32, max_seqs: u32, max_context: u32) -> Vec<Extrapolation> {
        let mut out = Vec::new();
        let (_, m_hi) = self.tokens.range();
        if f64::from(max_tokens) > m_hi {
            out.push(Extrapolation {
                kernel: "GEMMs".into(),
                detail: format!("steps of up to {max_tokens} tokens, measured to {m_hi}: scaled in proportion past it"),
            });
        }
        let mut check = |kind: &str, t: &Option<BatchTable>, rule: &str| {
            if let Some(t) = t {
                let (b, l) = t.limits();
                if f64::from(max_seqs) > b || f64::from(max_context) > l {
                    out.push(Extrapolation {
                        kernel: kind.into(),
                        detail: format!(
                            "up to {max_seqs} sequences of {max_context} tokens, measured to {b} of {l}: in proportion to the batch, {rule} in the length"
                        ),
                    });
                }
            }
        };
        check("prefill attention", &self.ctx, "quadratic");
        check("decode attention", &self.gen_full, "linear");
        out
    }

    fn attention_s(&self, b: &BatchShape) -> f64 {
        let mut t = 0.0;
        if b.prefill_seqs > 0 {
            let n = f64::from(b.prefill_seqs);
            let chunk = f64::from(b.prefill_tokens) / n;
            // AIConfigurator's rule for a cached prefix: the table at the whole length,
            // times the share of its (query, key) pairs the chunk computes.
            let prefix = b.prefill_context_pairs as f64 / f64::from(b.prefill_tokens.max(1));
            let full = chunk + prefix;
            let share = if full > 0.0 { (full * full - prefix * prefix) / (full * full) } else { 1.0 };
            if let Some(c) = &self.ctx {
                t += self.full_layers * c.at(n, full, quadratic) * share;
            }
            if self.window_layers > 0.0 {
                if let Some(c) = &self.ctx_window {
                    t += self.window_layers * c.at(n, full, quadratic) * share;
                } else if let Some(c) = &self.ctx {
                    // A window of w keys: about `w` pairs per query, as a full sequence of
                    // length w, for every w tokens of the chunk.
                    let w = self.window.min(full);
                    t += self.window_layers * c.at(n, w, quadratic) * (chunk / w.max(1.0)).max(1.0);
                }
            }
        }
        if b.decode_seqs > 0 {
            let n = f64::from(b.decode_seqs);
            let ctx = b.decode_context_tokens as f64 / n;
            if let Some(g) = &self.gen_full {
                t += self.full_layers * g.at(n, ctx, linear);
            }
            if self.window_layers > 0.0 {
                if let Some(g) = &self.gen_window {
                    t += self.window_layers * g.at(n, ctx, linear);
                } else if let Some(g) = &self.gen_full {
                    t += self.window_layers * g.at(n, ctx.min(self.window), linear);
                }
            }
        }
        t
    }

    /// The step's time in seconds.
    pub fn step_secs(&self, b: &BatchShape) -> f64 {
        if b.is_empty() {
            return self.step_s;
        }
        let tokens = (b.prefill_tokens + b.decode_seqs) as usize;
        let seqs = (b.prefill_seqs + b.decode_seqs) as usize;
        let f = self.tokens_at.get(tokens).copied().unwrap_or_else(|| self.tokens.at(tokens as f64));
        let g = self.seqs_at.get(seqs).copied().unwrap_or_else(|| self.seqs.at(seqs as f64));
        let dispatch = if b.prefill_tokens > 0 { self.prefill_step_s } else { 0.0 };
        f + g + self.attention_s(b) + self.step_s + self.seq_s * seqs as f64 + dispatch
    }
}

/// The MoE layer's latency over tokens: the measured table of the model's expert shape and
/// format at MoE TP = `tp` (EP = `tp` with expert parallelism; the other where only that one
/// was measured); otherwise the nearest measured MoE shape here, scaled by the ratio of the
/// two shapes' expert FLOPs per GPU.
fn moe_curve(b: &mut Builder, model: &ModelSpec, tp: u32, expert_parallel: bool) -> Curve {
    let t = b.t;
    let want = |dtype: &str, tp_, ep| MoeKey {
        dtype: dtype.into(),
        hidden: model.hidden,
        inter: model.intermediate,
        topk: model.active_experts,
        experts: model.experts,
        tp: tp_,
        ep,
    };
    let (first, second) = if expert_parallel { ((1, tp), (tp, 1)) } else { ((tp, 1), (1, tp)) };
    for d in moe_dtypes(model.expert_weights, t.backend) {
        if let Some(c) = t.moe(&want(d, first.0, first.1)) {
            return c;
        }
        if let Some(c) = t.moe(&want(d, second.0, second.1)) {
            let (a, o) = if expert_parallel { ("expert parallelism", "MoE TP") } else { ("MoE TP", "expert parallelism") };
            b.note("MoE", format!("{a} {tp} not measured for this shape: {o} {tp} instead"));
            return c;
        }
    }
    // Nearest measured shape in a format of the experts, at this parallelism.
    let work = |k: &MoeKey| f64::from(k.hidden) * f64::from(k.inter) * f64::from(k.topk) / f64::from(k.tp * k.ep);
    let target = work(&want("", first.0, first.1));
    let formats = moe_dtypes(model.expert_weights, t.backend);
    let nearest = t.moe_keys().filter(|k| formats.contains(&k.dtype.as_str()) || k.dtype == "bfloat16").min_by(|a, c| {
        let key = |k: &MoeKey| (k.dtype.clone(), k.hidden, k.inter, k.topk, k.experts, k.tp, k.ep);
        (work(a) / target).ln().abs().total_cmp(&(work(c) / target).ln().abs()).then_with(|| key(a).cmp(&key(c)))
    });
    match nearest {
        Some(k) => {
            let r = target / work(k);
            b.note(
                "MoE",
                format!(
                    "expert shape {}x{} top-{} of {} in {} not measured: {}x{} top-{} of {} ({}) scaled by the FLOP ratio {r:.2}",
                    model.hidden,
                    model.intermediate,
                    model.active_experts,
                    model.experts,
                    model.expert_weights.as_str(),
                    k.hidden,
                    k.inter,
                    k.topk,
                    k.experts,
                    k.dtype
                ),
            );
            t.moe(k).expect("listed key").map(|_, y| y * r)
        }
        None => {
            b.note("MoE", "no MoE table here: expert GEMMs at the datasheet roofline".into());
            let per_token =
                2.0 * 3.0 * f64::from(model.hidden) * f64::from(model.intermediate) * f64::from(model.active_experts) / f64::from(tp);
            let peak = b.gpu.peak_for(model.expert_weights);
            Curve::new([1.0, 16384.0].iter().map(|&m| (m, m * per_token / peak)).collect())
        }
    }
}

impl StepCostModel for KernelCost {
    fn step_time(&self, b: &BatchShape) -> SimDuration {
        SimDuration::from_secs_f64(self.step_secs(b).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{parse, tables};

    /// A two-layer dense model whose every GEMM shape is a measured one in [`TABLES`].
    fn small_model() -> ModelSpec {
        let mut m = crate::catalogue::model("llama-3.1-8b").unwrap();
        (m.layers, m.hidden, m.heads, m.kv_heads, m.head_dim, m.intermediate, m.vocab) = (2, 64, 4, 2, 16, 128, 256);
        m
    }

    const TABLES: &str = "system\ttest\th100-sxm\nbackend\tvllm\t0\nmemory\t1e12\t0.8\t3e-6\n\
        gemmaxes\tbfloat16\t64,128,256\t64,128\n\
        gemm\tbfloat16\t128\t64\t1:10 100:109\n\
        gemm\tbfloat16\t64\t64\t1:5 100:104\n\
        gemm\tbfloat16\t256\t64\t1:20 100:218\n\
        gemm\tbfloat16\t64\t128\t1:8 100:206\n\
        ctx\t4\t2\t16\t0\tbfloat16\t1\t1:4 100:103\n\
        ctx\t4\t2\t16\t0\tbfloat16\t4\t1:8 100:404\n\
        gen\t4\t2\t16\t0\tbfloat16\t1\t1:2 1000:1001\n\
        gen\t4\t2\t16\t0\tbfloat16\t4\t1:3 1000:3000\n";

    fn lin(x: f64, (x0, y0): (f64, f64), (x1, y1): (f64, f64)) -> f64 {
        (y0 + (y1 - y0) * (x - x0) / (x1 - x0)) * 1e-6
    }

    #[test]
    fn a_step_costs_the_sum_of_its_table_lookups() {
        let t = parse(TABLES).unwrap();
        let gpu = crate::catalogue::gpu("h100-sxm").unwrap();
        let m = small_model();
        let o = KernelOverheads {
            step: SimDuration::from_micros(100),
            per_layer: SimDuration::from_micros(3),
            per_seq: SimDuration::from_micros(7),
            prefill_per_layer: SimDuration::from_micros(50),
            // A dense model has no MoE layer to pay it.
            prefill_per_moe_layer: SimDuration::from_micros(40),
        };
        let c = KernelCost::new(&m, &gpu, 1, &t, o, false);
        assert!(c.extrapolations().is_empty(), "{:?}", c.extrapolations());
        let mut b = BatchShape::default();
        b.add_prefill_chunk(10, 0);
        b.add_decode(50);
        b.add_decode(50);
        let (tok, seqs) = (12.0, 3.0);
        // GEMMs: qkv (128 x 64), output (64 x 64), gate+up (256 x 64), down (64 x 128).
        let gemms = lin(tok, (1.0, 10.0), (100.0, 109.0))
            + lin(tok, (1.0, 5.0), (100.0, 104.0))
            + lin(tok, (1.0, 20.0), (100.0, 218.0))
            + lin(tok, (1.0, 8.0), (100.0, 206.0));
        let mem = |bytes_per_token: f64, fraction: f64| tok * bytes_per_token / (1e12 * fraction) + 3e-6;
        let elementwise = 2.0 * mem(2.0 * (4.0 * 64.0), 0.8) + mem(2.0 * (3.0 * 128.0), 0.8);
        let embedding = mem(2.0 * 64.0, 0.3);
        // LM head (256 x 64) over one token per sequence.
        let lm = lin(seqs, (1.0, 20.0), (100.0, 218.0));
        // Prefill attention: one sequence of 10; decode: two at 50 (between batches 1 and 4).
        let prefill = lin(10.0, (1.0, 4.0), (100.0, 103.0));
        let (d1, d4) = (lin(50.0, (1.0, 2.0), (1000.0, 1001.0)), lin(50.0, (1.0, 3.0), (1000.0, 3000.0)));
        let decode = d1 + (d4 - d1) / 3.0;
        let want = 2.0 * (gemms + elementwise + prefill + decode) + embedding + lm + 100e-6 + 2.0 * 3e-6 + 3.0 * 7e-6 + 2.0 * 50e-6;
        let got = c.step_secs(&b);
        assert!((got - want).abs() < 1e-12, "{got} != {want}");
    }

    #[test]
    fn every_moe_layer_of_a_step_with_prompt_tokens_pays_the_moe_dispatch() {
        let gpu = crate::catalogue::gpu("h200").unwrap();
        let m = crate::catalogue::model("gpt-oss-120b").unwrap();
        let t = tables("h200", Backend::Vllm).unwrap();
        let with = |us: u64| {
            let o = KernelOverheads { prefill_per_moe_layer: SimDuration::from_micros(us), ..KernelOverheads::ZERO };
            KernelCost::new(&m, &gpu, 2, t, o, false)
        };
        let (base, moe) = (with(0), with(500));
        let mut prefill = BatchShape::default();
        prefill.add_prefill_chunk(1000, 0);
        prefill.add_decode(300);
        let extra = moe.step_secs(&prefill) - base.step_secs(&prefill);
        assert!((extra - f64::from(m.layers) * 500e-6).abs() < 1e-12, "{extra}");
        // Decode-only steps are replayed from CUDA graphs: nothing to dispatch.
        let mut decode = BatchShape::default();
        decode.add_decode(300);
        assert_eq!(moe.step_secs(&decode), base.step_secs(&decode));
    }

    #[test]
    fn the_all_reduce_is_read_at_the_steps_element_count() {
        // At TP 2 the small model's GEMMs halve their n or k, which the table also measures;
        // the all-reduce table is keyed by elements, as AIConfigurator's collector measures it
        // (a `[size / 4096, 4096]` BF16 tensor): 12 tokens of hidden 64 are 768 elements.
        let tp2 = format!(
            "{TABLES}gemm\tbfloat16\t64\t64\t1:5 100:104\ngemm\tbfloat16\t128\t64\t1:10 100:109\n\
             gemm\tbfloat16\t64\t32\t1:3 100:52\ngemm\tbfloat16\t64\t64\t1:5 100:104\n\
             allreduce\t2\t64:2 6400:12\n"
        );
        let with = parse(&tp2).unwrap();
        let without = parse(&tp2.replace("allreduce\t2\t64:2 6400:12\n", "")).unwrap();
        let gpu = crate::catalogue::gpu("h100-sxm").unwrap();
        let step = |t: &KernelTables| {
            let c = KernelCost::new(&small_model(), &gpu, 2, t, KernelOverheads::ZERO, false);
            let mut b = BatchShape::default();
            b.add_prefill_chunk(12, 0);
            c.step_secs(&b)
        };
        // Two all-reduces a layer, two layers, each at 768 elements on the 2-GPU curve (whose
        // points, 64 and 6400 elements, are the GEMMs' 1 and 100 tokens).
        let want = 4.0 * lin(768.0, (64.0, 2.0), (6400.0, 12.0));
        let got = step(&with) - step(&without);
        assert!((got - want).abs() < 1e-12, "{got} != {want}");
    }

    #[test]
    fn a_cached_prefix_costs_the_share_of_the_whole_length_it_computes() {
        let t = parse(TABLES).unwrap();
        let gpu = crate::catalogue::gpu("h100-sxm").unwrap();
        let c = KernelCost::new(&small_model(), &gpu, 1, &t, KernelOverheads::ZERO, false);
        let step = |chunk: u32, ctx: u32| {
            let mut b = BatchShape::default();
            b.add_prefill_chunk(chunk, ctx);
            c.step_secs(&b)
        };
        let (cold, warm) = (step(20, 0), step(20, 60));
        // 20 new tokens after 60 cached: the table at 80, times (80² − 60²) / 80².
        let want =
            2.0 * (lin(80.0, (1.0, 4.0), (100.0, 103.0)) * (80.0f64.powi(2) - 3600.0) / 6400.0 - lin(20.0, (1.0, 4.0), (100.0, 103.0)));
        assert!(((warm - cold) - want).abs() < 1e-12, "{} vs {want}", warm - cold);
    }

    #[test]
    fn shipped_tables_give_steps_that_grow_with_the_batch_and_context() {
        let gpu = crate::catalogue::gpu("h100-sxm").unwrap();
        let m = crate::catalogue::model("llama-3.1-70b").unwrap();
        let t = tables("h100-sxm", Backend::Vllm).unwrap();
        let c = KernelCost::new(&m, &gpu, 4, t, KernelOverheads::ZERO, false);
        assert!(c.extrapolations().is_empty(), "{:?}", c.extrapolations());
        let decode = |n: u32, ctx: u32| {
            let mut b = BatchShape::default();
            (0..n).for_each(|_| b.add_decode(ctx));
            c.step_secs(&b)
        };
        // Measured kernels are not exactly monotone at small batches (the GEMMs of 1 and 2
        // rows take the same time, within noise): never 1% faster with more sequences.
        let mut last = 0.0;
        for n in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] {
            let t = decode(n, 2048);
            assert!(t > 0.99 * last, "batch {n}: {t} < {last}");
            last = t;
        }
        assert!(decode(512, 2048) > 2.0 * decode(1, 2048));
        assert!(decode(64, 8192) > decode(64, 1024));
        // One decode of Llama-3.1-70B (BF16) at TP4 reads 35 GB per H100: about 10 ms at 3.35 TB/s.
        let one = decode(1, 1024);
        assert!((10e-3..25e-3).contains(&one), "{one}");
        // The four B200s do the same step faster than the four H100s.
        let b200 = KernelCost::new(
            &m,
            &crate::catalogue::gpu("b200").unwrap(),
            4,
            tables("b200", Backend::Vllm).unwrap(),
            KernelOverheads::ZERO,
            false,
        );
        let mut b = BatchShape::default();
        b.add_prefill_chunk(4096, 0);
        assert!(b200.step_secs(&b) < c.step_secs(&b));
    }

    #[test]
    fn wide_gemms_are_split_into_measured_parts() {
        let t = parse(TABLES).unwrap();
        let gpu = crate::catalogue::gpu("h100-sxm").unwrap();
        let mut b = Builder { t: &t, gpu: &gpu, notes: Vec::new() };
        // n = 512 is twice the widest measured 256: two GEMMs of 256 columns.
        let wide = b.gemm("wide", NumberFormat::Bf16, 512, 64);
        assert!(b.notes.is_empty(), "{:?}", b.notes);
        assert!((wide.at(1.0) - 40e-6).abs() < 1e-15);
        // A format with no table reads the BF16 one scaled by the roofline ratio, and says so.
        let _ = b.gemm("fp8", NumberFormat::Fp8, 128, 64);
        assert_eq!(b.notes.len(), 1, "{:?}", b.notes);
    }
}
