//! One row's workload in the simulator: the deployment, a closed-loop client, the means.

use simctl_engine::Simulation;
use simctl_engine::catalogue::{self, GpuSpec, ModelSpec, NumberFormat, RooflineParams};
use simctl_engine::cost::BatchShape;
use simctl_engine::examples;
use simctl_engine::kernels::KernelOverheads;
use simctl_engine::record::{Outcome, Recorder, RequestRecord};
use simctl_engine::request::Request;
use simctl_engine::spec::{ArrivalSpec, EngineSpec, LengthSpec, PerfSpec, RunSpec, ScenarioSpec};
use simctl_engine::time::{SimDuration, SimTime};

use super::row::{Mode, SiliconRow};

/// vLLM's `--max-num-seqs` on GPUs with 70 GiB or more since v0.10 (`arg_utils.py` raises
/// the online-serving default from 256 to 1024 there); the rows' engines run defaults.
const MAX_SEQS: u32 = 1024;
/// `--max-num-batched-tokens` of vLLM's online serving on such GPUs (8192), which is also
/// SGLang's `chunked_prefill_size` and TensorRT-LLM's `max_num_tokens` defaults on H100.
const MAX_BATCH_TOKENS: u32 = 8192;

/// How the closed-loop client starts its users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ramp {
    /// Every user sends at time zero, and every request counts: identical requests then
    /// stay in lockstep (cohorts that prefill together finish together) for the whole run.
    Burst,
    /// User `u` of `N` first sends at `u / N` of one request's estimated latency, so the loop
    /// starts near its steady state with phases spread; the warm-up requests are left out.
    Staggered,
    /// What a benchmark at fixed concurrency reports: every user sends at time zero (the
    /// first wave queues behind itself), then the users drift apart and the loop runs in
    /// its spread steady state; the mean weighs the first wave as one request per user in
    /// [`Client::requests_per_user`].
    BurstThenSteady,
}

/// The closed-loop client: how it ramps, how many requests each user sends, which count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// How users start.
    pub ramp: Ramp,
    /// Requests each user sends in the steady-state simulation, one after the other with
    /// no think time.
    pub rounds: u32,
    /// Leading requests of each user left out of the steady-state means.
    pub warmup: u32,
    /// Requests per user of the measured benchmark ([`Ramp::BurstThenSteady`]): the first
    /// wave is one of them.
    pub requests_per_user: u32,
}

/// Requests per user the measured benchmarks' means cover, fitted to the vLLM rows' TTFT
/// growth with concurrency (a first wave that weighs as 1 in this many); see
/// `docs/zero-shot.md`.
pub const REQUESTS_PER_USER: u32 = 8;

impl Default for Client {
    /// A burst, then the steady state of 4 requests per user with the first left out.
    fn default() -> Self {
        Client { ramp: Ramp::BurstThenSteady, rounds: 4, warmup: 1, requests_per_user: REQUESTS_PER_USER }
    }
}

/// A row the simulator can reproduce: the model in the row's formats, the GPU, the
/// instance's GPUs.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// The model with the row's number formats.
    pub model: ModelSpec,
    /// The GPU.
    pub gpu: GpuSpec,
    /// GPUs of the one instance (tensor parallel over all of them).
    pub gpus: u32,
}

/// The catalogue model of a Hugging Face path, if the catalogue has its architecture.
pub fn catalogue_model(model_path: &str) -> Option<&'static str> {
    let name = model_path.rsplit('/').next().unwrap_or(model_path).to_ascii_lowercase();
    let name = name.trim_end_matches("-instruct").trim_end_matches("-fp8").trim_end_matches("-nvfp4").trim_end_matches("-instruct");
    Some(match name {
        "llama-3.1-8b" => "llama-3.1-8b",
        "llama-3.1-70b" => "llama-3.1-70b",
        "qwen3-32b" => "qwen3-32b",
        "qwen3-235b-a22b" => "qwen3-235b-a22b",
        "gpt-oss-120b" => "gpt-oss-120b",
        "gpt-oss-20b" => "gpt-oss-20b",
        "minimax-m2.5" => "minimax-m2.5",
        _ => return None,
    })
}

/// The catalogue GPU of an AIConfigurator system name.
pub fn catalogue_gpu(system: &str) -> Option<&'static str> {
    Some(match system {
        "h100_sxm" => "h100-sxm",
        "h200_sxm" => "h200",
        "b200_sxm" => "b200",
        "b300_sxm" => "b300",
        "gb200" | "gb200_sxm" => "gb200",
        "gb300" | "gb300_sxm" => "gb300",
        "a100_sxm" => "a100-80gb",
        "l40s" => "l40s",
        _ => return None,
    })
}

/// The row's number formats: dense GEMMs from `gemm_quant_mode`, experts from
/// `moe_quant_mode`, and the KV cache in FP8 for FP8 and FP4 deployments, BF16 otherwise.
/// The data does not record the KV format; quantised recipes of all three engines store
/// FP8 KV, and the KV capacity the rows' queueing shows agrees (see `docs/zero-shot.md`).
pub fn formats(row: &SiliconRow) -> Result<(NumberFormat, NumberFormat, NumberFormat), String> {
    let f = |s: &str| NumberFormat::parse(s).ok_or_else(|| format!("unknown number format `{s}`"));
    let weights = f(&row.gemm_quant)?;
    let experts = if row.moe_quant.is_empty() { weights } else { f(&row.moe_quant)? };
    let kv = match row.precision.as_str() {
        "fp8" | "fp4" => NumberFormat::Fp8,
        _ => NumberFormat::Bf16,
    };
    Ok((weights, experts, kv))
}

/// What the simulator runs for `row`, or why it cannot.
pub fn deployment(row: &SiliconRow) -> Result<Deployment, String> {
    let Some(name) = catalogue_model(&row.model_path) else {
        return Err(format!("model `{}` is not in the catalogue", row.model_path));
    };
    let Some(gpu) = catalogue_gpu(&row.system) else { return Err(format!("system `{}` is not in the catalogue", row.system)) };
    if row.mode == Mode::Disagg {
        return Err("disaggregated rows are not replayed yet".into());
    }
    if row.parallel.pp > 1 {
        return Err("pipeline parallelism is not modelled".into());
    }
    let (mut w, e, kv) = formats(row)?;
    let base = catalogue::model(name).expect("mapped name is in the catalogue");
    // gpt-oss checkpoints ship MXFP4 experts and BF16 attention, whatever the row's quant
    // modes call them (`nvfp4`).
    let mut e = e;
    if name.starts_with("gpt-oss") {
        w = base.weights;
        e = base.expert_weights;
    }
    // FP8 checkpoints with block scales (MiniMax-M2.5's; Qwen3's `-FP8` releases, "fine-grained
    // FP8 with block size 128" per their model cards) run block-scaled FP8 kernels, whichever
    // name the row gives the quant mode.
    let block = name == "minimax-m2.5" || (name.starts_with("qwen3") && row.model_path.to_ascii_uppercase().ends_with("-FP8"));
    if block {
        let blockwise = |f: NumberFormat| if f == NumberFormat::Fp8 { NumberFormat::Fp8Block } else { f };
        w = blockwise(w);
        e = blockwise(e);
    }
    let model = base.with_formats(w, e, kv);
    let gpu = catalogue::gpu(gpu).expect("mapped GPU is in the catalogue");
    Ok(Deployment { model, gpu, gpus: row.parallel.gpus() })
}

/// The GPU model a replay runs: the datasheet roofline with its constants, or the measured
/// kernel tables of the row's GPU and engine with the engine's overheads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GpuModel {
    /// [`PerfSpec::Roofline`] with these constants.
    Roofline(RooflineParams),
    /// [`PerfSpec::Kernels`] with these overheads.
    Kernels(KernelOverheads),
}

impl GpuModel {
    /// Latency each request pays before it reaches the engine (the roofline's fitted
    /// `frontend`; the kernel model has none).
    fn frontend(&self) -> SimDuration {
        match self {
            GpuModel::Roofline(p) => p.frontend,
            GpuModel::Kernels(_) => SimDuration::ZERO,
        }
    }

    /// The hardware's performance model for `row` on `dep`.
    pub fn perf(&self, row: &SiliconRow, dep: &Deployment) -> PerfSpec {
        match self {
            // The replay adds the frontend latency itself (it delays the arrival at the engine).
            GpuModel::Roofline(eff) => {
                PerfSpec::Roofline { gpu: dep.gpu.clone(), params: RooflineParams { frontend: SimDuration::ZERO, ..*eff } }
            }
            GpuModel::Kernels(o) => PerfSpec::Kernels {
                gpu: dep.gpu.clone(),
                backend: row.backend,
                overheads: *o,
                expert_parallel: row.parallel.moe_ep > 1 && row.parallel.moe_tp <= 1,
            },
        }
    }
}

/// Predicted means of one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Mean TTFT, ms (the frontend latency included).
    pub ttft_ms: f64,
    /// Mean TPOT, ms.
    pub tpot_ms: f64,
    /// Requests the means are over.
    pub requests: u32,
}

struct Collect(Vec<RequestRecord>);
impl Recorder for Collect {
    fn on_request(&mut self, r: &RequestRecord) {
        self.0.push(*r);
    }
}

/// The share of GPU memory the engine's default takes for weights and KV: vLLM's
/// `--gpu-memory-utilization` (0.9); SGLang's `--mem-fraction-static`, which its
/// `server_args.py` sets by tensor-parallel size (0.88 at TP1, 0.87 at TP2, 0.85 at TP4,
/// 0.81 at TP8 and more; sgl-project/sglang, Apache-2.0).
fn memory_fraction(backend: catalogue::Backend, tp: u32) -> f64 {
    match (backend, tp) {
        (catalogue::Backend::Sglang, 8..) => 0.81,
        (catalogue::Backend::Sglang, 4..) => 0.85,
        (catalogue::Backend::Sglang, 2..) => 0.87,
        (catalogue::Backend::Sglang, _) => 0.88,
        _ => EngineSpec::default().gpu_memory_utilization,
    }
}

/// The scenario of one instance of `dep` with `eff`, serving `row`'s lengths.
pub fn scenario(row: &SiliconRow, dep: &Deployment, model: &GpuModel) -> ScenarioSpec {
    let mut spec = examples::single_server(0.5, 1.0, true, 1);
    spec.name = row.id.clone();
    spec.model = dep.model.clone();
    let hw = &mut spec.hardware[0];
    hw.name = dep.gpu.name.clone();
    hw.cost_per_hour = dep.gpu.cost_per_hour;
    hw.kv_capacity_tokens = None;
    hw.perf = model.perf(row, dep);
    let pool = &mut spec.pools[0];
    pool.engine = EngineSpec {
        max_batch_tokens: MAX_BATCH_TOKENS,
        max_seqs: MAX_SEQS,
        chunked_prefill: true,
        // Benchmark prompts are random tokens: nothing to reuse.
        prefix_caching: false,
        gpu_memory_utilization: memory_fraction(row.backend, dep.gpus),
        ..EngineSpec::default()
    };
    pool.instances[0].tp = dep.gpus;
    spec.workload.arrivals = ArrivalSpec::ClosedLoop { users: row.concurrency, think: SimDuration::ZERO };
    spec.workload.prompt = LengthSpec::Constant(row.isl);
    spec.workload.output = LengthSpec::Constant(row.osl);
    spec.run = RunSpec::new(None, Some(u64::MAX));
    spec
}

/// Unloaded latency of one request while `users` decode together: its prefill alone, then
/// `osl` decode steps of `users` sequences at mid context. Only spreads the ramp.
fn latency_estimate(row: &SiliconRow, dep: &Deployment, model: &GpuModel) -> SimDuration {
    let c = model.perf(row, dep).cost_model(&dep.model, dep.gpus);
    let isl = u64::from(row.isl);
    let prefill = c.step_time(&BatchShape {
        prefill_tokens: row.isl,
        prefill_seqs: 1,
        prefill_attention_pairs: isl * isl.div_ceil(2),
        ..Default::default()
    });
    let ctx = u64::from(row.isl) + u64::from(row.osl) / 2;
    let decode = c.step_time(&BatchShape {
        decode_seqs: row.concurrency.min(MAX_SEQS),
        decode_context_tokens: u64::from(row.concurrency.min(MAX_SEQS)) * ctx,
        ..Default::default()
    });
    prefill + SimDuration::from_nanos(decode.as_nanos() * u64::from(row.osl))
}

/// Simulates `row` on `dep` with `eff` under `client`: the mean TTFT (plus the frontend
/// latency) and TPOT, as `vllm bench serve` and aiperf report them.
///
/// The frontend latency delays each request's arrival at the engine (the API server takes
/// it in first) and counts in its TTFT; the next request of a user leaves when the last
/// token of the previous one arrives.
pub fn predict(row: &SiliconRow, dep: &Deployment, eff: &GpuModel, client: Client) -> Result<Prediction, String> {
    match client.ramp {
        Ramp::Burst | Ramp::Staggered => simulate(row, dep, eff, client.ramp, client.rounds, client.warmup),
        Ramp::BurstThenSteady => {
            let first = simulate(row, dep, eff, Ramp::Burst, 1, 0)?;
            let steady = simulate(row, dep, eff, Ramp::Staggered, client.rounds, client.warmup)?;
            let k = f64::from(client.requests_per_user.max(1));
            let blend = |a: f64, b: f64| (a + (k - 1.0) * b) / k;
            Ok(Prediction {
                ttft_ms: blend(first.ttft_ms, steady.ttft_ms),
                tpot_ms: blend(first.tpot_ms, steady.tpot_ms),
                requests: first.requests + steady.requests,
            })
        }
    }
}

fn simulate(row: &SiliconRow, dep: &Deployment, eff: &GpuModel, ramp: Ramp, rounds: u32, warmup: u32) -> Result<Prediction, String> {
    let valid = scenario(row, dep, eff).validate().map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))?;
    let mut sim = Simulation::new(&valid).map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))?.without_workload();
    let users = u64::from(row.concurrency);
    let spread = if ramp == Ramp::Staggered { latency_estimate(row, dep, eff) } else { SimDuration::ZERO };
    let frontend = eff.frontend();
    let request = |id: u64, sent: SimTime| Request::plain(id, sent + frontend, row.isl, row.osl.max(1));
    let submit = |sim: &mut Simulation, id: u64, sent: SimTime| sim.submit(request(id, sent)).map_err(|e| e.to_string());
    for u in 0..users {
        submit(&mut sim, u, SimTime::ZERO + SimDuration::from_nanos(spread.as_nanos() * u / users))?;
    }
    let mut rec = Collect(Vec::new());
    let (mut ttft, mut tpot, mut n) = (0.0, 0.0, 0u32);
    let rounds = u64::from(rounds.max(warmup + 1));
    while let Some(t) = sim.next_event_time() {
        sim.step_until(t, &mut rec);
        for r in rec.0.drain(..) {
            if r.outcome != Outcome::Finished {
                return Err(format!("a request did not finish: {:?}", r.reason));
            }
            let (round, id) = (r.id.0 / users, r.id.0);
            if round >= u64::from(warmup) {
                let first = (r.first_token.expect("finished") - r.arrival) + frontend;
                ttft += first.as_secs_f64();
                if let Some(x) = r.tpot() {
                    tpot += x.as_secs_f64();
                }
                n += 1;
            }
            if round + 1 < rounds {
                let now = sim.now();
                submit(&mut sim, id + users, now)?;
            }
        }
    }
    if let Some(why) = sim.stopped() {
        return Err(why.to_string());
    }
    if n == 0 {
        return Err("no request finished".into());
    }
    let mean = |x: f64| x / f64::from(n) * 1e3;
    Ok(Prediction { ttft_ms: mean(ttft), tpot_ms: mean(tpot), requests: n })
}
