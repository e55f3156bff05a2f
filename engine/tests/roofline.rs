//! The roofline model against physics, with the default efficiencies users get.

use simctl_engine::catalogue;
use simctl_engine::cost::{BatchShape, RooflineCost, StepCostModel};
use simctl_engine::spec::{DEFAULT_MBU, DEFAULT_MFU, DEFAULT_STEP_OVERHEAD};

fn h100_llama8b(tp: u32) -> (RooflineCost, catalogue::ModelSpec, catalogue::GpuSpec) {
    let m = catalogue::model("llama-3.1-8b").unwrap();
    let g = catalogue::gpu("h100-sxm").unwrap();
    (RooflineCost::new(&m, &g, tp, DEFAULT_MFU, DEFAULT_MBU, DEFAULT_STEP_OVERHEAD), m, g)
}

#[test]
fn decode_at_batch_one_is_within_25_percent_of_weights_over_bandwidth() {
    let (c, m, g) = h100_llama8b(1);
    let t = c.step_time(&BatchShape { decode_seqs: 1, decode_context_tokens: 1024, ..Default::default() }).as_secs_f64();
    let ideal = m.weight_bytes() as f64 / g.hbm_bytes_s;
    eprintln!("decode b=1: {:.3} ms vs weights/bandwidth {:.3} ms ({:+.1}%)", t * 1e3, ideal * 1e3, (t / ideal - 1.0) * 100.0);
    assert!(t >= ideal && t <= 1.25 * ideal);
}

#[test]
fn prefill_of_4096_tokens_is_compute_bound_and_within_25_percent() {
    let (c, m, g) = h100_llama8b(1);
    let n = 4096u64;
    let b = BatchShape { prefill_tokens: n as u32, prefill_seqs: 1, prefill_attention_pairs: n * n.div_ceil(2), ..Default::default() };
    let t = c.step_time(&b).as_secs_f64();
    // Linear layers, the LM head for the one sampled token, causal attention (QK and AV).
    let flops = 2.0 * m.active_layer_params() as f64 * n as f64
        + 2.0 * f64::from(m.vocab) * f64::from(m.hidden)
        + 4.0 * f64::from(m.layers * m.heads * m.head_dim) * (n * n.div_ceil(2)) as f64;
    let compute = flops / (g.peak_flops * DEFAULT_MFU);
    let memory = (m.weight_bytes() + m.kv_bytes_per_token() * n) as f64 / (g.hbm_bytes_s * DEFAULT_MBU);
    eprintln!("prefill 4096: {:.2} ms vs FLOPs/(peak x MFU) {:.2} ms; memory bound {:.2} ms", t * 1e3, compute * 1e3, memory * 1e3);
    assert!(compute > 5.0 * memory, "compute-bound");
    assert!(t >= compute && t <= 1.25 * compute);
}

#[test]
fn attention_grows_with_context() {
    let (c, ..) = h100_llama8b(1);
    // Decode: linear in cached context once attention reads dominate.
    let d = |ctx: u64| c.step_time(&BatchShape { decode_seqs: 64, decode_context_tokens: 64 * ctx, ..Default::default() }).as_secs_f64();
    assert!(d(32_000) > d(1_000));
    let (a, b, cc) = (d(16_000), d(32_000), d(64_000));
    assert!(((cc - b) / (b - a) - 2.0).abs() < 0.01, "linear in context");
    // Prefill: quadratic in the chunk.
    let p = |n: u64| {
        c.step_time(&BatchShape {
            prefill_tokens: n as u32,
            prefill_seqs: 1,
            prefill_attention_pairs: n * n.div_ceil(2),
            ..Default::default()
        })
        .as_secs_f64()
    };
    assert!(p(32_768) / p(16_384) > 2.2, "superlinear");
}

#[test]
fn moe_uses_active_parameters_for_compute_and_touched_experts_for_memory() {
    let m = catalogue::model("mixtral-8x7b").unwrap();
    let g = catalogue::gpu("h200").unwrap();
    assert!(m.active_layer_params() * 3 < m.total_params(), "2 of 8 experts active");
    let c = RooflineCost::new(&m, &g, 1, 1.0, 1.0, simctl_engine::time::SimDuration::ZERO);
    let decode = |seqs: u32| {
        c.step_time(&BatchShape { decode_seqs: seqs, decode_context_tokens: u64::from(seqs), ..Default::default() }).as_secs_f64()
    };
    // One token reads the shared weights and 2 of the 8 experts; 256 tokens read them all.
    let two_experts = m.weight_bytes() as f64 - 6.0 * m.expert_bytes() as f64;
    assert!((decode(1) / (two_experts / g.hbm_bytes_s) - 1.0).abs() < 0.01, "memory: the touched experts' weights");
    assert!((decode(256) / (m.weight_bytes() as f64 / g.hbm_bytes_s) - 1.0).abs() < 0.05, "memory: every expert's weights");
    let n = 8192u64;
    let prefill = c.step_time(&BatchShape { prefill_tokens: n as u32, prefill_seqs: 1, ..Default::default() }).as_secs_f64();
    let active = 2.0 * m.active_layer_params() as f64 * n as f64 / g.peak_flops;
    assert!(prefill < 1.1 * active && prefill > active, "compute: active experts only");
}

#[test]
fn tensor_parallelism_splits_work_and_pays_all_reduce() {
    let m = catalogue::model("llama-3.1-70b").unwrap();
    let g = catalogue::gpu("h100-sxm").unwrap();
    let mk = |tp| RooflineCost::new(&m, &g, tp, DEFAULT_MFU, DEFAULT_MBU, DEFAULT_STEP_OVERHEAD);
    let decode = BatchShape { decode_seqs: 8, decode_context_tokens: 8 * 2000, ..Default::default() };
    let (t1, t4) = (mk(1).step_time(&decode).as_secs_f64(), mk(4).step_time(&decode).as_secs_f64());
    assert!(t4 < t1 / 2.0, "tp4 decode {t4} vs tp1 {t1}");
    assert!(t4 > t1 / 4.0, "all-reduce and overhead keep tp4 above a perfect split");
}
