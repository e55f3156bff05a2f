//! Small ready-made specs for documentation, tests and benchmarks.

use crate::catalogue;
use crate::spec::*;
use crate::time::SimDuration;

// Prefill rate of the single-server example: service time = tokens / rate.
const SINGLE_SERVER_TOK_S: f64 = 100_000.0;

/// A single server queue: one mixed instance with `max_seqs = 1`, the `rates` cost model,
/// one output token per request, Poisson arrivals at load `rho`, and service times with
/// mean `mean_service_s` that are exponential (M/M/1) or, with `deterministic`, constant
/// (M/D/1). Runs `requests` requests and drains.
pub fn single_server(rho: f64, mean_service_s: f64, deterministic: bool, requests: u64) -> ScenarioSpec {
    let mean_tokens = mean_service_s * SINGLE_SERVER_TOK_S;
    let prompt =
        if deterministic { LengthSpec::Constant(mean_tokens.round() as u32) } else { LengthSpec::Exponential { mean: mean_tokens } };
    let hw = HardwareSpec {
        name: "server".into(),
        cost_per_hour: 1.0,
        memory_bytes: None,
        kv_capacity_tokens: Some(u64::from(u32::MAX)),
        kv_transfer_latency: None,
        perf: PerfSpec::Rates { prefill_tok_s: SINGLE_SERVER_TOK_S, decode_tok_s: SINGLE_SERVER_TOK_S, step_overhead: SimDuration::ZERO },
    };
    let engine = EngineSpec { max_batch_tokens: u32::MAX, max_seqs: 1, chunked_prefill: false, ..EngineSpec::default() };
    let mut spec = one_instance(
        hw,
        engine,
        ArrivalSpec::Poisson { rate_per_s: rho / mean_service_s, burst: None },
        prompt,
        RunSpec::new(None, Some(requests)),
    );
    spec.name = if deterministic { "m_d_1".into() } else { "m_m_1".into() };
    spec.seed = 1;
    spec
}

/// One mixed instance of `hw` with scheduler settings `engine`, round-robin routing,
/// arrivals and prompts as given, one output token per request. Replay drivers (the
/// calibration self-check) use it with `Simulation::without_workload` and submit their own
/// requests.
pub fn one_instance(hw: HardwareSpec, engine: EngineSpec, arrivals: ArrivalSpec, prompt: LengthSpec, run: RunSpec) -> ScenarioSpec {
    ScenarioSpec {
        name: "one_instance".into(),
        seed: 0,
        model: catalogue::model("llama-3.1-8b").expect("catalogue model"),
        pools: vec![PoolSpec {
            name: hw.name.clone(),
            role: Role::Mixed,
            engine,
            instances: vec![InstanceSpec { name: "s0".into(), hardware: 0, tp: 1 }],
            local_prefill_threshold: None,
        }],
        hardware: vec![hw],
        links: vec![],
        router: RouterSpec::single(PolicySpec::RoundRobin),
        telemetry: TelemetrySpec::default(),
        workload: WorkloadSpec {
            arrivals,
            prompt,
            output: LengthSpec::Constant(1),
            priority: (0, 0),
            prefix: None,
            classes: vec![],
            trace: None,
        },
        slo: SloSpec::default(),
        run,
        sweep: None,
    }
}
