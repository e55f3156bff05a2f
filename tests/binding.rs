//! The KV capacity and the batch token budget bind: tightening them moves TTFT the
//! expected way.

use simctl_engine::Simulation;
use simctl_reports::{RunRecorder, Summary};

fn summary(src: &str, sets: &[(&str, &str)]) -> Summary {
    let overrides: Vec<(String, String)> = sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let spec = simctl_dsl::load("test.scn", src, &overrides).unwrap_or_else(|d| panic!("{d}"));
    let mut rec = RunRecorder::new(spec.slo, Vec::new());
    let totals = Simulation::new(&spec).unwrap().run(&mut rec);
    Summary::build(&spec, spec.seed, &mut rec, &totals)
}

const KV_SCENARIO: &str = r#"
model = llama_3_1_8b
param kv = 2000000 tok
hardware gpu { prefill_rate = 40000 tok/s; decode_rate = 6000 tok/s; cost = 2 $/h; kv_capacity = kv }
pool serve { role = mixed; instances = [gpu] }
workload { arrivals = poisson(12/s); prompt = uniform(500, 1500); output = constant(200) }
run { duration = 60s }
"#;

#[test]
fn kv_capacity_binds() {
    let roomy = summary(KV_SCENARIO, &[]);
    let tight = summary(KV_SCENARIO, &[("kv", "4000 tok")]);
    assert_eq!(roomy.completed, roomy.requests);
    assert_eq!(tight.completed, tight.requests);
    // Plenty of KV: every sequence is admitted at once; the peak use stays under capacity.
    assert!(roomy.instances["gpu"].kv_peak_usage < 0.5);
    assert_eq!(roomy.preemptions, 0);
    // Tight KV: admission waits for blocks, so TTFT rises, and decodes that outgrow the
    // cache get preempted.
    assert!(tight.instances["gpu"].kv_peak_usage > 0.95, "{}", tight.instances["gpu"].kv_peak_usage);
    assert!(
        tight.ttft_ms.mean.unwrap() > 2.0 * roomy.ttft_ms.mean.unwrap(),
        "tight {} vs roomy {}",
        tight.ttft_ms.mean.unwrap(),
        roomy.ttft_ms.mean.unwrap()
    );
    assert!(tight.instances["gpu"].queue_depth_mean < roomy.instances["gpu"].queue_depth_mean * 10.0);
}

const BUDGET_SCENARIO: &str = r#"
model = llama_3_1_8b
param budget = 8192
hardware h100 { gpu = h100_sxm }
pool serve { role = mixed; instances = [h100]; engine { max_batch_tokens = budget; chunked_prefill = true } }
workload { arrivals = poisson(4/s); prompt = constant(2000); output = constant(64) }
run { duration = 60s }
"#;

#[test]
fn batch_token_budget_binds() {
    let wide = summary(BUDGET_SCENARIO, &[]);
    let narrow = summary(BUDGET_SCENARIO, &[("budget", "64")]);
    assert_eq!(wide.completed, wide.requests);
    // With a 64-token budget a 2000-token prompt takes 32 steps, each paying the weight
    // read and the step overhead, instead of one compute-bound step.
    assert!(
        narrow.ttft_ms.p50.unwrap() > 2.0 * wide.ttft_ms.p50.unwrap(),
        "narrow {} vs wide {}",
        narrow.ttft_ms.p50.unwrap(),
        wide.ttft_ms.p50.unwrap()
    );
}

#[test]
fn max_seqs_one_serialises_requests() {
    let src = BUDGET_SCENARIO.replace("chunked_prefill = true", "chunked_prefill = true; max_seqs = 1");
    let serial = summary(&src, &[]);
    let batched = summary(BUDGET_SCENARIO, &[]);
    assert!(serial.ttft_ms.mean.unwrap() > batched.ttft_ms.mean.unwrap());
    assert!(serial.instances["h100"].queue_depth_max >= batched.instances["h100"].queue_depth_max);
}

const STALL_SCENARIO: &str = r#"
model = llama_3_1_8b
param bound = 40ms
hardware gpu { prefill_rate = 20000 tok/s; decode_rate = 4000 tok/s; cost = 2 $/h; kv_capacity = 2000000 tok }
pool serve { role = mixed; instances = [gpu] }
workload { arrivals = poisson(6/s); prompt = uniform(200, 4000); output = uniform(2, 300) }
run { requests = 400 }
"#;

/// `itl` bounds each request's mean gap (aiperf's `inter_token_latency`, the same number as
/// TPOT) and `max_itl` every gap: long prefills batched with decodes stall some gaps, so the
/// every-gap bound is the stricter one at the same limit.
#[test]
fn mean_and_every_gap_itl_bounds_judge_differently() {
    let by = |key: &str| {
        let src = format!("{STALL_SCENARIO}slo {{ {key} = bound }}\n");
        summary(&src, &[]).slo_attainment.expect("an SLO is given")
    };
    let (itl, tpot, max_itl) = (by("itl"), by("tpot"), by("max_itl"));
    // No one-token outputs here, so the mean-gap and TPOT bounds agree exactly.
    assert_eq!(itl, tpot);
    assert!(max_itl < itl, "every gap within 40 ms ({max_itl}) must be rarer than a mean within 40 ms ({itl})");
    assert!(itl > 0.0 && itl < 1.0 && max_itl > 0.0, "itl {itl}, max_itl {max_itl}: the bound should split the requests");
}

#[test]
fn the_engine_block_names_the_scheduler_and_it_changes_the_batches() {
    let load = |sched: &str| {
        let src = BUDGET_SCENARIO.replace("chunked_prefill = true", &format!("chunked_prefill = true; scheduler = {sched}"));
        simctl_dsl::load("test.scn", &src, &[]).map(|s| s.pools[0].engine.scheduler)
    };
    use simctl_engine::spec::Scheduler;
    assert_eq!(load("sglang").unwrap(), Scheduler::Sglang);
    assert_eq!(load("vllm").unwrap(), Scheduler::Vllm);
    // Unset, it follows the hardware's backend (resolved when the simulation is built).
    assert_eq!(simctl_dsl::load("test.scn", BUDGET_SCENARIO, &[]).unwrap().pools[0].engine.scheduler, Scheduler::Auto);
    let err = load("orca").unwrap_err().to_string();
    assert!(err.contains("scheduler") && err.contains("sglang") && err.contains("test.scn:5:"), "{err}");
    // SGLang's rule runs prefills apart from decodes: at 4 req/s of 2000-token prompts the
    // decodes wait for every prefill batch, so TPOT differs from vLLM's mixed steps.
    let sg = summary(&BUDGET_SCENARIO.replace("chunked_prefill = true", "chunked_prefill = true; scheduler = sglang"), &[]);
    let vl = summary(BUDGET_SCENARIO, &[]);
    assert_eq!(sg.completed, sg.requests);
    assert_ne!(sg.tpot_ms.mean, vl.tpot_ms.mean);
}
