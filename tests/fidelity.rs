//! Serving-model fidelity, pinned with exact numbers on small hand-computed cases.

use simctl_engine::Simulation;
use simctl_engine::record::{Recorder, RequestRecord};
use simctl_engine::time::SimDuration;

#[derive(Default)]
struct Rows(Vec<RequestRecord>);
impl Recorder for Rows {
    fn on_request(&mut self, r: &RequestRecord) {
        self.0.push(*r);
    }
}

fn run(src: &str, sets: &[(&str, &str)]) -> (Vec<RequestRecord>, simctl_engine::record::RunTotals) {
    let overrides: Vec<(String, String)> = sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let spec = simctl_dsl::load("test.scn", src, &overrides).unwrap_or_else(|d| panic!("{d}"));
    let mut rows = Rows::default();
    let totals = Simulation::new(&spec).unwrap().run(&mut rows);
    rows.0.sort_by_key(|r| r.id);
    (rows.0, totals)
}

fn ms(d: Option<SimDuration>) -> f64 {
    d.unwrap().as_secs_f64() * 1e3
}

// Two requests 1 s apart, each a 1024-token shared system prompt plus 1024 tokens of its own,
// on a server that prefills 10,240 tokens/s, one sequence at a time.
const SHARED_PREFIX: &str = r#"
model = llama_3_1_8b
hardware gpu { prefill_rate = 10240 tok/s; decode_rate = 1000 tok/s; cost = 1 $/h; kv_capacity = 100000 tok }
pool serve { role = mixed; instances = [gpu]; engine { max_seqs = 1 } }
workload {
  arrivals = constant(1/s)
  prompt = constant(1024)
  output = constant(1)
  prefix = shared(groups = 1, tokens = 1024)
}
run { requests = 2 }
"#;

#[test]
fn a_shared_prefix_halves_the_second_prefill() {
    let (rows, totals) = run(SHARED_PREFIX, &[]);
    // First: 2048 tokens / 10240 tok/s = 200 ms. Second: the 1024 shared tokens (64 blocks of
    // 16) come from the cache, so only 1024 are computed: 100 ms.
    assert_eq!(rows[0].ttft(), Some(SimDuration::from_millis(200)));
    assert_eq!(rows[1].ttft(), Some(SimDuration::from_millis(100)));
    assert_eq!((rows[0].cached_tokens.get(), rows[1].cached_tokens.get()), (0, 1024));
    assert!((totals.instances[0].prefix_hit_rate - 0.25).abs() < 1e-12, "1024 of 4096 prompt tokens hit");
    // Without prefix caching both take 200 ms.
    let (rows, _) = run(SHARED_PREFIX, &[("engine.prefix_caching", "false")]);
    assert_eq!(rows[1].ttft(), Some(SimDuration::from_millis(200)));
}

// Two 16-token prompts that each generate 40 tokens, arriving together, in a KV cache of
// 4 blocks of 16 tokens (prefix caching off so the count is easy to follow by hand).
const TIGHT_KV: &str = r#"
model = llama_3_1_8b
param kv = 64 tok
hardware gpu { prefill_rate = 10000 tok/s; decode_rate = 1000 tok/s; cost = 1 $/h; kv_capacity = kv }
pool serve { role = mixed; instances = [gpu]; engine { block_size = 16; prefix_caching = false } }
workload { arrivals = constant(1000000000/s); prompt = constant(16); output = constant(40) }
run { requests = 2 }
"#;

#[test]
fn a_tight_kv_budget_preempts_exactly_as_computed_by_hand() {
    // Both admitted (1 block each), both grow to 2 blocks at token 17. When the first needs
    // a third block at token 33, the cache is full, so the most recently admitted request is
    // preempted (its 2 blocks freed). The survivor finishes in 4 blocks; the victim is then
    // recomputed (33 tokens in 3 blocks) and finishes: exactly one preemption.
    let (rows, totals) = run(TIGHT_KV, &[]);
    assert_eq!(totals.instances[0].preemptions, 1);
    assert_eq!((rows[0].preemptions, rows[1].preemptions), (0, 1));
    assert!(rows.iter().all(|r| r.generated_tokens.get() == 40));
    assert!(rows[1].e2e() > rows[0].e2e());
    // Twice the cache: no preemption at all.
    let (_, totals) = run(TIGHT_KV, &[("kv", "128 tok")]);
    assert_eq!(totals.instances[0].preemptions, 0);
}

// A prefill GPU that needs 1 s for a 1000-token prompt and a link that moves one prompt's KV
// (1000 tokens x 128 KiB for Llama-3.1-8B) in 100 ms. Requests 1 ns apart: the first
// prefills alone, the next two together, so their transfers start at the same instant.
const LINK: &str = r#"
model = llama_3_1_8b
hardware pf { prefill_rate = 1000 tok/s; decode_rate = 1000 tok/s; cost = 1 $/h; kv_capacity = 1000000 tok }
hardware dc { prefill_rate = 1000 tok/s; decode_rate = 1000000000000 tok/s; cost = 1 $/h; kv_capacity = 1000000 tok }
pool prefill { role = prefill; instances = [pf] }
pool decode { role = decode; instances = [dc] }
link { from = prefill; to = decode; latency = 0ms; bandwidth = 1310.72 MB/s }
workload { arrivals = constant(1000000000/s); prompt = constant(1000); output = constant(2) }
run { requests = 3 }
"#;

#[test]
fn two_transfers_on_one_link_each_take_twice_as_long_as_one() {
    let (rows, _) = run(LINK, &[]);
    let gap = |r: &RequestRecord| r.e2e().unwrap().as_secs_f64() - r.ttft().unwrap().as_secs_f64();
    // Alone on the link: 131,072,000 bytes at 1,310,720,000 B/s = 100 ms (decoding is free).
    assert!((gap(&rows[0]) - 0.100).abs() < 1e-6, "{}", gap(&rows[0]));
    // Two at once share the bandwidth: 200 ms each.
    assert!((gap(&rows[1]) - 0.200).abs() < 1e-6, "{}", gap(&rows[1]));
    assert!((gap(&rows[2]) - 0.200).abs() < 1e-6, "{}", gap(&rows[2]));
    assert_eq!(rows[1].first_token, rows[2].first_token, "prefilled in the same step");
}

#[test]
fn only_blocks_missing_at_the_destination_cross_the_link() {
    // The same prompt twice (a shared 1008-token prefix = 63 blocks): the second transfer
    // moves only the last, unshared block's tokens.
    let src = LINK
        .replace("prompt = constant(1000)", "prompt = constant(16)\n  prefix = shared(groups = 1, tokens = 1008)")
        .replace("run { requests = 3 }", "run { requests = 2 }")
        .replace("constant(1000000000/s)", "constant(1/min)");
    let (rows, _) = run(&src, &[]);
    let gap = |r: &RequestRecord| r.e2e().unwrap().as_secs_f64() - r.ttft().unwrap().as_secs_f64();
    assert!((gap(&rows[0]) - 0.1024).abs() < 1e-6, "1024 tokens: {}", gap(&rows[0]));
    assert!((gap(&rows[1]) - 0.0016).abs() < 1e-6, "16 tokens: {}", gap(&rows[1]));
}

#[test]
fn back_pressure_holds_transfers_until_the_decode_instance_has_blocks() {
    // Decode KV holds one sequence (1001 tokens -> 63 blocks of 16; 1024 tokens = 64 blocks):
    // the second transfer waits for the first sequence to finish decoding.
    let src = LINK.replace(
        "decode_rate = 1000000000000 tok/s; cost = 1 $/h; kv_capacity = 1000000 tok",
        "decode_rate = 10 tok/s; cost = 1 $/h; kv_capacity = 1024 tok",
    );
    let (rows, _) = run(&src, &[]);
    assert!(rows.iter().all(|r| r.outcome == simctl_engine::record::Outcome::Finished));
    // Request 0 lands at 1.1 s, decodes its second token 0.1 s later (1 seq at 10 tok/s),
    // freeing the blocks at 1.2 s; requests 1 and 2 finished prefill at 3 s, so by then the
    // decode side is free again, but holds only one: request 2 waits for request 1.
    let e = |i: usize| rows[i].e2e().unwrap().as_secs_f64();
    assert!(e(2) > e(1) + 0.09, "{} vs {}", e(2), e(1));
}

const CONDITIONAL: &str = r#"
model = llama_3_1_8b
hardware pf { prefill_rate = 10000 tok/s; decode_rate = 1000 tok/s; cost = 1 $/h; kv_capacity = 1000000 tok }
hardware dc { prefill_rate = 5000 tok/s; decode_rate = 1000 tok/s; cost = 1 $/h; kv_capacity = 1000000 tok }
pool prefill { role = prefill; instances = [pf] }
pool decode { role = decode; instances = [dc]; local_prefill = true }
link { from = prefill; to = decode; latency = 1ms }
workload { arrivals = constant(1/s); prompt = uniform(100, 4000); output = constant(4) }
run { requests = 200 }
"#;

#[test]
fn short_prompts_prefill_locally_on_the_decode_instance() {
    let (rows, totals) = run(CONDITIONAL, &[]);
    // Default threshold 2048 tokens (the lab's prefill_ctx_thresh).
    for r in &rows {
        let local = r.prefill_instance == r.decode_instance;
        assert_eq!(local, r.prompt_tokens.get() < 2048, "request {} with {}", r.id.0, r.prompt_tokens);
    }
    assert_eq!(totals.local_prefills, rows.iter().filter(|r| r.prompt_tokens.get() < 2048).count() as u64);
    let (rows, totals) = run(CONDITIONAL, &[("pool.decode.local_prefill_threshold", "0")]);
    assert_eq!(totals.local_prefills, 0);
    assert!(rows.iter().all(|r| r.prefill_instance != r.decode_instance));
}

#[test]
fn fitted_profiles_drive_step_times() {
    let dir = crate::temp_dir("profile");
    let profile = simctl_engine::profile::Profile {
        format: simctl_engine::profile::PROFILE_FORMAT,
        created: None,
        hardware: simctl_engine::profile::ProfileHardware {
            name: "NVIDIA H100 80GB HBM3".into(),
            gpus: 1,
            memory_bytes: Some(80_000_000_000),
            driver_version: None,
            cuda_version: None,
            devices: vec![],
            cpu: None,
            note: None,
        },
        model: simctl_engine::profile::ProfileModel {
            name: "meta-llama/Llama-3.1-8B".into(),
            dtype: Some("bfloat16".into()),
            max_model_len: None,
        },
        engine: simctl_engine::profile::ProfileEngine {
            name: "vllm".into(),
            version: None,
            block_size: 16,
            max_batch_tokens: 8192,
            max_seqs: 256,
            gpu_memory_utilization: 0.9,
            chunked_prefill: true,
            prefix_caching: true,
            sources: None,
        },
        kv_capacity_blocks: 1000,
        coefficients: simctl_engine::profile::ProfileCoefficients::of(&simctl_engine::cost::FittedCost::new([
            0.005, 0.0001, 0.0, 0.0, 0.001, 0.0,
        ])),
        fit: simctl_engine::profile::ProfileFit { r2: 1.0, rmse_s: 0.0, samples: 0, classes: vec![], self_check: vec![] },
        samples: vec![],
        conditions: None,
    };
    std::fs::write(dir.join("p.yaml"), simctl_calibration::profile_to_yaml(&profile).unwrap()).unwrap();
    let scn = dir.join("s.scn");
    std::fs::write(
        &scn,
        "model = llama_3_1_8b\nhardware h { profile = \"p.yaml\"; cost = 2 $/h }\npool p { role = mixed; instances = [h]; engine { max_seqs = 1 } }\nworkload { arrivals = constant(1/s); prompt = constant(1000); output = constant(3) }\nrun { requests = 2 }\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&scn).unwrap();
    let spec = simctl_dsl::load(scn.to_str().unwrap(), &text, &[]).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(spec.kv_capacity_blocks(&spec.hardware[0], 1, &spec.pools[0].engine), Ok(1000));
    let mut rows = Rows::default();
    Simulation::new(&spec).unwrap().run(&mut rows);
    // Prefill step: 5 ms + 1000 x 0.1 ms = 105 ms; each decode step 5 + 1 = 6 ms.
    assert!((ms(rows.0[0].ttft()) - 105.0).abs() < 1e-6);
    assert!((ms(rows.0[0].tpot()) - 6.0).abs() < 1e-6);
}

#[test]
fn a_starved_decode_pool_preempts_but_never_deadlocks() {
    // Decode KV for about three sequences, prompts that arrive faster than that drains:
    // reservations, back-pressure and preemptions interleave, and every request finishes.
    let src = r#"
model = llama_3_1_8b
param decode_kv = 6000 tok
hardware pf { prefill_rate = 20000 tok/s; decode_rate = 1000 tok/s; cost = 1 $/h; kv_capacity = 8000 tok }
hardware dc { prefill_rate = 20000 tok/s; decode_rate = 400 tok/s; cost = 1 $/h; kv_capacity = decode_kv }
pool prefill { role = prefill; instances = [pf] }
pool decode { role = decode; instances = [dc] }
link { from = prefill; to = decode; latency = 1ms; bandwidth = 10 GB/s }
workload { arrivals = poisson(4/s); prompt = uniform(500, 1500); output = uniform(100, 400) }
run { duration = 60s }
"#;
    let (rows, totals) = run(src, &[]);
    assert!(rows.iter().all(|r| r.outcome == simctl_engine::record::Outcome::Finished));
    assert!(totals.instances[1].preemptions > 0, "the decode pool is starved");
    let roomy = run(src, &[("decode_kv", "1000000 tok")]).1;
    assert_eq!(roomy.instances[1].preemptions, 0);
}
