//! Validated input: what a scenario declares, in engine units.
//!
//! The DSL lowers a `.scn` file into a [`ScenarioSpec`]; [`ScenarioSpec::validate`] is a
//! separate pass that names the offending field. The engine only ever runs a validated spec.

use crate::catalogue::{GpuSpec, ModelSpec};
use crate::time::SimDuration;

/// vLLM's default KV block size in tokens (`--block-size`, vLLM 0.6+ on CUDA).
pub const DEFAULT_BLOCK_SIZE: u32 = 16;
/// vLLM's default `--gpu-memory-utilization`.
pub const DEFAULT_GPU_MEMORY_UTILIZATION: f64 = 0.90;
/// vLLM v1's default `--max-num-batched-tokens` for online serving on large GPUs.
pub const DEFAULT_MAX_BATCH_TOKENS: u32 = 8192;
/// vLLM's default `--max-num-seqs`.
pub const DEFAULT_MAX_SEQS: u32 = 256;

/// Default model FLOPs utilisation of the roofline model. Assumed: dense prefill kernels
/// on Hopper reach 50-60% of peak in vLLM (a calibrated profile replaces this).
pub const DEFAULT_MFU: f64 = 0.55;
/// Default memory bandwidth utilisation of the roofline model (decode GEMVs reach 80-90%
/// of HBM bandwidth; assumed, calibrate to replace).
pub const DEFAULT_MBU: f64 = 0.85;
/// Default fixed cost of one engine step: scheduling, sampling and launches with CUDA
/// graphs (assumed order of magnitude for vLLM v1; calibrate to replace).
pub const DEFAULT_STEP_OVERHEAD: SimDuration = SimDuration::from_micros(200);

/// A whole scenario, ready to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioSpec {
    /// Name shown in reports.
    pub name: String,
    /// Base seed of the run.
    pub seed: u64,
    /// The served model (KV bytes per token, weights, roofline shapes).
    pub model: ModelSpec,
    /// Hardware kinds the pools refer to by index.
    pub hardware: Vec<HardwareSpec>,
    /// Pools of instances, in declaration order.
    pub pools: Vec<PoolSpec>,
    /// KV-transfer paths between pools.
    pub links: Vec<LinkSpec>,
    /// The routing policies.
    pub router: RouterSpec,
    /// How fresh the router's gauges are.
    pub telemetry: TelemetrySpec,
    /// Arrivals and request shapes.
    pub workload: WorkloadSpec,
    /// Service-level objectives that define a good request.
    pub slo: SloSpec,
    /// How long to run.
    pub run: RunSpec,
    /// The scenario's own sweep (used by `simctl sweep` when no `--grid` is given).
    pub sweep: Option<SweepSpec>,
}

/// Axes and replication of a sweep, as `simctl sweep` takes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepSpec {
    /// Axes in `--grid` syntax: `NAME=a..b`, `NAME=a..b:step`, `NAME=x,y,z`.
    pub grid: Vec<String>,
    /// Runs per point.
    pub seeds: Option<u32>,
}

/// One hardware kind: cost, memory and a performance model.
#[derive(Clone, Debug, PartialEq)]
pub struct HardwareSpec {
    /// Name used by pools.
    pub name: String,
    /// Price of one GPU of this kind per hour, in dollars.
    pub cost_per_hour: f64,
    /// GPU memory in bytes (per GPU), if known.
    pub memory_bytes: Option<u64>,
    /// Explicit KV capacity in tokens per instance, overriding the memory-derived one.
    pub kv_capacity_tokens: Option<u64>,
    /// KV-transfer latency to this hardware, overriding the link's latency.
    pub kv_transfer_latency: Option<SimDuration>,
    /// How step times are computed.
    pub perf: PerfSpec,
}

/// The step cost model of a hardware kind.
#[derive(Clone, Debug, PartialEq)]
pub enum PerfSpec {
    /// Fixed token rates, as the original lab's virtual GPUs.
    Rates {
        /// Prompt tokens per second.
        prefill_tok_s: f64,
        /// Decode tokens per second (all sequences of a step together).
        decode_tok_s: f64,
        /// Fixed cost added to every step.
        step_overhead: SimDuration,
    },
    /// Roofline from a GPU's datasheet and the model's shapes.
    Roofline {
        /// The GPU.
        gpu: GpuSpec,
        /// Fraction of peak FLOP/s achieved (model FLOPs utilisation).
        mfu: f64,
        /// Fraction of HBM bandwidth achieved (memory bandwidth utilisation).
        mbu: f64,
        /// Fixed cost of every step (scheduling, kernel launches, sampling).
        step_overhead: SimDuration,
    },
    /// Coefficients fitted from measurements (a calibration profile).
    Fitted {
        /// Seconds: `[c0, c1·prefill_tokens, c2·prefill_tokens², c3·prefill_tokens·context,
        /// c4·decode_seqs, c5·decode_context_tokens]`.
        coefficients: [f64; 6],
    },
}

/// Role of a pool and of its instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs prefills only; finished prefills move to a decode pool.
    Prefill,
    /// Runs decodes of sequences prefilled elsewhere.
    Decode,
    /// Runs both phases of a request (aggregated serving).
    Mixed,
}

impl Role {
    /// Lowercase name as written in scenarios.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Prefill => "prefill",
            Role::Decode => "decode",
            Role::Mixed => "mixed",
        }
    }
    /// Whether new requests may start here.
    pub fn takes_prefill(self) -> bool {
        matches!(self, Role::Prefill | Role::Mixed)
    }
}

/// Scheduler settings of an engine replica (vLLM names).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineSpec {
    /// Token budget of one step (`--max-num-batched-tokens`).
    pub max_batch_tokens: u32,
    /// Sequences in one step at most (`--max-num-seqs`).
    pub max_seqs: u32,
    /// Whether long prefills are split across steps (`--enable-chunked-prefill`).
    pub chunked_prefill: bool,
    /// Tokens per KV block (`--block-size`).
    pub block_size: u32,
    /// Share of GPU memory the engine may use (`--gpu-memory-utilization`).
    pub gpu_memory_utilization: f64,
    /// Whether released full KV blocks are kept for reuse (`--enable-prefix-caching`, on by
    /// default in vLLM v1).
    pub prefix_caching: bool,
}

impl Default for EngineSpec {
    fn default() -> Self {
        EngineSpec {
            max_batch_tokens: DEFAULT_MAX_BATCH_TOKENS,
            max_seqs: DEFAULT_MAX_SEQS,
            chunked_prefill: true,
            block_size: DEFAULT_BLOCK_SIZE,
            gpu_memory_utilization: DEFAULT_GPU_MEMORY_UTILIZATION,
            prefix_caching: true,
        }
    }
}

/// A named group of instances with one role.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    /// Pool name.
    pub name: String,
    /// What its instances do.
    pub role: Role,
    /// Scheduler settings of its instances.
    pub engine: EngineSpec,
    /// Its instances.
    pub instances: Vec<InstanceSpec>,
    /// Decode pools only: a request whose uncached prompt is shorter than this many tokens
    /// prefills on its decode instance instead of a prefill pool (conditional
    /// disaggregation, Dynamo's `max_local_prefill_length`). `None`: always disaggregate.
    pub local_prefill_threshold: Option<u32>,
}

/// The original lab's `prefill_ctx_thresh` default for conditional disaggregation, in tokens.
pub const DEFAULT_LOCAL_PREFILL_THRESHOLD: u32 = 2048;

/// One engine replica.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSpec {
    /// Unique name across the cluster.
    pub name: String,
    /// Index into [`ScenarioSpec::hardware`].
    pub hardware: usize,
    /// Tensor-parallel degree: GPUs this instance spans.
    pub tp: u32,
}

/// A KV-transfer path from one pool to another.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkSpec {
    /// Source pool index.
    pub from: usize,
    /// Destination pool index.
    pub to: usize,
    /// Fixed latency of one transfer.
    pub latency: SimDuration,
    /// Bytes per second; `None` means only the latency counts.
    pub bandwidth_bytes_s: Option<f64>,
}

/// The router: one policy for both phases, or one per phase where pools are split.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterSpec {
    /// Places new requests (prefill, or the whole request in mixed pools).
    pub prefill: PolicySpec,
    /// Places prefilled requests on decode instances; `None`: the prefill policy decides both.
    pub decode: Option<PolicySpec>,
}

impl RouterSpec {
    /// The same policy for both phases.
    pub fn single(p: PolicySpec) -> Self {
        RouterSpec { prefill: p, decode: None }
    }
    /// A short name: `telemetry`, or `kv_aware+least_loaded` for split policies.
    pub fn name(&self) -> String {
        match &self.decode {
            None => self.prefill.name().to_string(),
            Some(d) => format!("{}+{}", self.prefill.name(), d.name()),
        }
    }
}

/// A routing policy and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicySpec {
    /// Rotate over candidates; in a shared pool a request stays where it lands.
    RoundRobin,
    /// A uniformly random candidate.
    Random,
    /// The candidate with the fewest waiting + running requests (join the shortest queue).
    LeastLoaded,
    /// Two random candidates; the less loaded wins.
    PowerOfTwo,
    /// The original lab's score-based router with its migration planner.
    Telemetry(TelemetryPolicySpec),
    /// Dynamo-style KV-overlap-aware cost.
    KvAware(KvAwarePolicySpec),
    /// SGLang-style cache-aware routing with a load-balance override.
    CacheAware(CacheAwarePolicySpec),
}

impl PolicySpec {
    /// Policy name as written in scenarios.
    pub fn name(&self) -> &'static str {
        match self {
            PolicySpec::RoundRobin => "round_robin",
            PolicySpec::Random => "random",
            PolicySpec::LeastLoaded => "least_loaded",
            PolicySpec::PowerOfTwo => "power_of_two",
            PolicySpec::Telemetry(_) => "telemetry",
            PolicySpec::KvAware(_) => "kv_aware",
            PolicySpec::CacheAware(_) => "cache_aware",
        }
    }
}

/// Parameters of the telemetry router (defaults from the original lab's router).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TelemetryPolicySpec {
    /// EWMA smoothing factor in (0, 1].
    pub ewma_alpha: f64,
    /// Weight of the queue-depth term.
    pub queue_urgency: f64,
    /// Score bonus for an instance that already holds the sequence's KV.
    pub kv_locality_boost: f64,
    /// Decode scores are divided by `hourly_cost ^ decode_cost_penalty`.
    pub decode_cost_penalty: f64,
    /// Whether the migration planner runs.
    pub migration: bool,
    /// How often the planner runs.
    pub migration_interval: SimDuration,
    /// Best minus worst decode score needed before anything moves.
    pub min_score_gap: f64,
    /// Migrations allowed per sliding `window`.
    pub budget: u32,
    /// The sliding window of the budget.
    pub window: SimDuration,
    /// Migrations planned per run of the planner at most.
    pub max_per_call: u32,
}

/// The lab router's `ewma_alpha`.
pub const TELEMETRY_EWMA_ALPHA: f64 = 0.3;
/// The lab router's `kv_locality_boost`.
pub const TELEMETRY_KV_LOCALITY_BOOST: f64 = 0.3;
/// The lab router's `migration_min_score_gap`.
pub const TELEMETRY_MIN_SCORE_GAP: f64 = 0.5;
/// The lab router's `migration_budget_per_window`.
pub const TELEMETRY_MIGRATION_BUDGET: u32 = 32;
/// The lab router's `migration_window_seconds` (1 s).
pub const TELEMETRY_MIGRATION_WINDOW: SimDuration = SimDuration::from_secs(1);
/// The lab driver's `plan_migrations(..., max_per_call=2)`.
pub const TELEMETRY_MAX_PER_CALL: u32 = 2;
/// The lab driver plans migrations every 5 ticks of 50 ms.
pub const TELEMETRY_MIGRATION_INTERVAL: SimDuration = SimDuration::from_millis(250);

impl Default for TelemetryPolicySpec {
    fn default() -> Self {
        TelemetryPolicySpec {
            ewma_alpha: TELEMETRY_EWMA_ALPHA,
            queue_urgency: 1.0,
            kv_locality_boost: TELEMETRY_KV_LOCALITY_BOOST,
            decode_cost_penalty: 0.0,
            migration: true,
            migration_interval: TELEMETRY_MIGRATION_INTERVAL,
            min_score_gap: TELEMETRY_MIN_SCORE_GAP,
            budget: TELEMETRY_MIGRATION_BUDGET,
            window: TELEMETRY_MIGRATION_WINDOW,
            max_per_call: TELEMETRY_MAX_PER_CALL,
        }
    }
}

/// Parameters of the KV-aware router (Dynamo's KV router).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvAwarePolicySpec {
    /// Weight of prefill blocks against decode blocks (Dynamo's `--kv-overlap-score-weight`,
    /// default 1.0).
    pub prefill_load_scale: f64,
    /// 0: lowest cost wins; above 0: softmax sampling over normalised costs (Dynamo's
    /// `--router-temperature`, default 0.0).
    pub temperature: f64,
}

impl Default for KvAwarePolicySpec {
    fn default() -> Self {
        KvAwarePolicySpec { prefill_load_scale: 1.0, temperature: 0.0 }
    }
}

/// Parameters of the cache-aware router (SGLang's router; defaults from its documentation:
/// `cache_threshold` 0.5, `balance_abs_threshold` 32, `balance_rel_threshold` 1.0001).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CacheAwarePolicySpec {
    /// Prefix match ratio above which the best-matching instance is used.
    pub cache_threshold: f64,
    /// Load imbalance (max − min requests) above which the least loaded instance is used...
    pub balance_abs: f64,
    /// ...provided max > balance_rel × min too.
    pub balance_rel: f64,
}

impl Default for CacheAwarePolicySpec {
    fn default() -> Self {
        CacheAwarePolicySpec { cache_threshold: 0.5, balance_abs: 32.0, balance_rel: 1.0001 }
    }
}

/// How fresh the router's view of instance gauges is.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TelemetrySpec {
    /// Refresh period of gauges; zero means the router sees exact values.
    pub interval: SimDuration,
}

/// Arrivals and request shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    /// The arrival process.
    pub arrivals: ArrivalSpec,
    /// Prompt length in tokens.
    pub prompt: LengthSpec,
    /// Output length in tokens (at least 1).
    pub output: LengthSpec,
    /// Priorities drawn uniformly from this inclusive range (0 is most important).
    pub priority: (u8, u8),
    /// Shared prefixes (system prompts), if any.
    pub prefix: Option<PrefixSpec>,
    /// Request classes; when given, each request draws a class by weight and takes its
    /// lengths, priority, prefix and SLO from it (the fields above are then unused).
    pub classes: Vec<ClassSpec>,
    /// Replay a trace instead of generating arrivals and lengths.
    pub trace: Option<crate::trace::TraceSpec>,
}

/// One class of requests in a mixed workload (e.g. 70% chat, 30% long-context RAG).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassSpec {
    /// Name, for per-class metrics.
    pub name: String,
    /// Relative weight (share of requests).
    pub weight: f64,
    /// Prompt length.
    pub prompt: LengthSpec,
    /// Output length.
    pub output: LengthSpec,
    /// Priority range.
    pub priority: (u8, u8),
    /// Shared prefixes of this class.
    pub prefix: Option<PrefixSpec>,
    /// The class's own SLO (the scenario's when `None`).
    pub slo: Option<SloSpec>,
}

/// Shared prefixes: each request starts with one of `groups` shared prompts of `tokens`
/// tokens (drawn uniformly), followed by its own prompt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrefixSpec {
    /// Distinct shared prefixes.
    pub groups: u32,
    /// Tokens in each shared prefix.
    pub tokens: u32,
}

/// The lab's burst knob: per window, with probability `probability`, the rate is multiplied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurstSpec {
    /// Rate multiplier inside a burst window.
    pub factor: f64,
    /// Probability that a window is a burst.
    pub probability: f64,
    /// Window length.
    pub window: SimDuration,
}

impl BurstSpec {
    /// The original lab: 50 ms ticks, a burst with probability 0.2.
    pub fn lab(factor: f64) -> Self {
        BurstSpec { factor, probability: 0.2, window: SimDuration::from_millis(50) }
    }
}

/// Arrival processes.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrivalSpec {
    /// Poisson arrivals at `rate_per_s`, optionally modulated by bursts.
    Poisson {
        /// Mean requests per second outside bursts.
        rate_per_s: f64,
        /// Burst modulation, if any.
        burst: Option<BurstSpec>,
    },
    /// Evenly spaced arrivals.
    Constant {
        /// Requests per second.
        rate_per_s: f64,
    },
    /// A renewal process with gamma inter-arrival times: mean 1/rate, coefficient of
    /// variation `cv` (1 is Poisson, above 1 bursty, below 1 regular).
    Gamma {
        /// Mean requests per second.
        rate_per_s: f64,
        /// Coefficient of variation of the gaps.
        cv: f64,
    },
    /// A two-state Markov-modulated Poisson process: rate `rates[k]` while in state k, each
    /// stay exponential with mean `dwell[k]`; starts in state 0.
    Mmpp {
        /// Rates of the two states, requests per second.
        rates: [f64; 2],
        /// Mean time in each state.
        dwell: [SimDuration; 2],
    },
    /// Poisson with a piecewise-linear rate through `(time, rate per second)` points
    /// (diurnal shapes); constant before the first and after the last point.
    Ramp {
        /// The points, in time order.
        points: Vec<(SimDuration, f64)>,
    },
    /// Closed loop: `users` users each send a request, wait for it to finish, think, and
    /// send the next.
    ClosedLoop {
        /// Concurrent users.
        users: u32,
        /// Mean think time (exponential; zero for none).
        think: SimDuration,
    },
}

impl ArrivalSpec {
    /// Long-run mean rate, requests per second (`None` for closed loops).
    pub fn mean_rate(&self) -> Option<f64> {
        match self {
            ArrivalSpec::Poisson { rate_per_s, burst } => {
                Some(rate_per_s * burst.map_or(1.0, |b| 1.0 - b.probability + b.probability * b.factor))
            }
            ArrivalSpec::Constant { rate_per_s } | ArrivalSpec::Gamma { rate_per_s, .. } => Some(*rate_per_s),
            ArrivalSpec::Mmpp { rates, dwell } => {
                let (d0, d1) = (dwell[0].as_secs_f64(), dwell[1].as_secs_f64());
                Some((rates[0] * d0 + rates[1] * d1) / (d0 + d1))
            }
            ArrivalSpec::Ramp { points } => points.last().map(|p| p.1),
            ArrivalSpec::ClosedLoop { .. } => None,
        }
    }
}

/// Token-length distributions (integers, at least 1).
#[derive(Clone, Debug, PartialEq)]
pub enum LengthSpec {
    /// Always the same length.
    Constant(u32),
    /// Uniform over the inclusive range.
    Uniform {
        /// Smallest length.
        lo: u32,
        /// Largest length.
        hi: u32,
    },
    /// Exponential with the given mean, rounded up to whole tokens.
    Exponential {
        /// Mean length in tokens.
        mean: f64,
    },
    /// Normal, rounded to whole tokens (truncated when clamped).
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Lognormal with the given mean and standard deviation of the lengths themselves.
    LogNormal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Values drawn uniformly from a column of real lengths (a CSV file's).
    Empirical(std::sync::Arc<[u32]>),
    /// Another distribution restricted to `[min, max]`: continuous ones are truncated (drawn
    /// again), the rest clamped.
    Clamped {
        /// The distribution.
        inner: Box<LengthSpec>,
        /// Smallest length.
        min: u32,
        /// Largest length.
        max: u32,
    },
}

/// Service-level objectives; a request is good when it meets every one given.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SloSpec {
    /// Time to first token at most.
    pub ttft: Option<SimDuration>,
    /// Time per output token at most.
    pub tpot: Option<SimDuration>,
    /// End-to-end latency at most.
    pub e2e: Option<SimDuration>,
    /// Every gap between two consecutive output tokens at most (the request's largest ITL).
    pub itl: Option<SimDuration>,
}

/// Run length.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunSpec {
    /// Arrivals stop after this much simulated time.
    pub duration: Option<SimDuration>,
    /// Arrivals stop after this many requests.
    pub requests: Option<u64>,
    /// Whether to keep running until every admitted request finishes.
    pub drain: bool,
}

/// A problem found by [`ScenarioSpec::validate`]: the field path and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecError {
    /// Dotted path of the offending field, e.g. `pools.decode.engine.max_seqs`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl SpecError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError { path: path.into(), message: message.into() }
    }
}

impl ScenarioSpec {
    /// Checks everything the engine relies on; returns every problem, not just the first.
    pub fn validate(&self) -> Result<(), Vec<SpecError>> {
        let mut errs = Vec::new();
        let mut e = |p: String, m: String| errs.push(SpecError::new(p, m));

        if self.pools.is_empty() {
            e("pools".into(), "a scenario needs at least one pool; add `pool NAME { role = mixed ... }`".into());
        }
        let has = |r: Role| self.pools.iter().any(|p| p.role == r);
        let (pf, dc, mx) = (has(Role::Prefill), has(Role::Decode), has(Role::Mixed));
        if mx && (pf || dc) {
            e("pools".into(), "mixing `mixed` pools with `prefill`/`decode` pools is not supported; for local prefills in a disaggregated fleet give the decode pool `local_prefill = true`".into());
        }
        if pf && !dc {
            e("pools".into(), "there is a prefill pool but no decode pool to hand sequences to".into());
        }
        if dc && !pf {
            e("pools".into(), "there is a decode pool but no prefill pool feeding it".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for pool in &self.pools {
            let pp = format!("pools.{}", pool.name);
            if pool.instances.is_empty() {
                e(format!("{pp}.instances"), "a pool needs at least one instance".into());
            }
            let eng = &pool.engine;
            if eng.max_batch_tokens == 0 {
                e(format!("{pp}.engine.max_batch_tokens"), "must be at least 1".into());
            }
            if eng.max_seqs == 0 {
                e(format!("{pp}.engine.max_seqs"), "must be at least 1".into());
            }
            if eng.block_size == 0 {
                e(format!("{pp}.engine.block_size"), "must be at least 1 token".into());
            }
            if !(eng.gpu_memory_utilization > 0.0 && eng.gpu_memory_utilization <= 1.0) {
                e(format!("{pp}.engine.gpu_memory_utilization"), "must be in (0%, 100%]".into());
            }
            for inst in &pool.instances {
                if !names.insert(inst.name.clone()) {
                    e(format!("{pp}.instances"), format!("instance name `{}` is used twice; names must be unique across pools", inst.name));
                }
                if inst.tp == 0 {
                    e(format!("{pp}.instances.{}.tp", inst.name), "must be at least 1".into());
                }
                match self.hardware.get(inst.hardware) {
                    None => e(format!("{pp}.instances.{}", inst.name), "refers to unknown hardware".into()),
                    Some(hw) => {
                        if let Err(m) = self.kv_capacity_blocks(hw, inst.tp, eng) {
                            e(format!("{pp}.instances.{}", inst.name), m);
                        }
                    }
                }
            }
            if pool.role == Role::Decode
                && !self.links.iter().any(|l| l.to == self.pools.iter().position(|p| p.name == pool.name).unwrap_or(usize::MAX))
            {
                e(pp.clone(), "decode pool has no link from a prefill pool; add `link { from = PREFILL_POOL; to = ... }`".into());
            }
        }
        for (i, l) in self.links.iter().enumerate() {
            if l.from >= self.pools.len() || l.to >= self.pools.len() {
                e(format!("links[{i}]"), "refers to an unknown pool".into());
            }
            if let Some(bw) = l.bandwidth_bytes_s
                && !(bw > 0.0 && bw.is_finite())
            {
                e(format!("links[{i}].bandwidth"), "must be positive".into());
            }
        }
        for hw in &self.hardware {
            let hp = format!("hardware.{}", hw.name);
            if !(hw.cost_per_hour >= 0.0 && hw.cost_per_hour.is_finite()) {
                e(format!("{hp}.cost"), "must be a non-negative price such as `3 $/h`".into());
            }
            match &hw.perf {
                PerfSpec::Rates { prefill_tok_s, decode_tok_s, .. } => {
                    if !(*prefill_tok_s > 0.0 && prefill_tok_s.is_finite()) {
                        e(format!("{hp}.prefill_rate"), "must be a positive rate such as `10000 tok/s`".into());
                    }
                    if !(*decode_tok_s > 0.0 && decode_tok_s.is_finite()) {
                        e(format!("{hp}.decode_rate"), "must be a positive rate such as `3400 tok/s`".into());
                    }
                }
                PerfSpec::Fitted { coefficients } => {
                    if coefficients.iter().any(|c| !c.is_finite()) || coefficients[0] < 0.0 {
                        e(format!("{hp}.profile"), "the profile's coefficients must be finite, with c0 >= 0".into());
                    }
                }
                PerfSpec::Roofline { mfu, mbu, .. } => {
                    if !(*mfu > 0.0 && *mfu <= 1.0) {
                        e(format!("{hp}.mfu"), "must be in (0%, 100%]".into());
                    }
                    if !(*mbu > 0.0 && *mbu <= 1.0) {
                        e(format!("{hp}.mbu"), "must be in (0%, 100%]".into());
                    }
                }
            }
        }
        for pool in &self.pools {
            if pool.local_prefill_threshold.is_some() && pool.role != Role::Decode {
                e(format!("pools.{}.local_prefill", pool.name), "only decode pools can prefill short prompts locally".into());
            }
        }
        let w = &self.workload;
        if let Some(p) = w.prefix
            && (p.groups == 0 || p.tokens == 0)
        {
            e("workload.prefix".into(), "shared prefixes need at least one group of at least one token".into());
        }
        let positive = |x: f64| x > 0.0 && x.is_finite();
        match &w.arrivals {
            ArrivalSpec::Poisson { rate_per_s, burst } => {
                if !positive(*rate_per_s) {
                    e("workload.arrivals".into(), "the arrival rate must be positive, e.g. `poisson(24/s)`".into());
                }
                if let Some(b) = burst {
                    if !positive(b.factor) {
                        e("workload.arrivals.burst_factor".into(), "must be positive".into());
                    }
                    if !(0.0..=1.0).contains(&b.probability) {
                        e("workload.arrivals.burst_probability".into(), "must be in [0, 1]".into());
                    }
                    if b.window == SimDuration::ZERO {
                        e("workload.arrivals.burst_window".into(), "must be longer than zero".into());
                    }
                }
            }
            ArrivalSpec::Constant { rate_per_s } => {
                if !positive(*rate_per_s) {
                    e("workload.arrivals".into(), "the arrival rate must be positive".into());
                }
            }
            ArrivalSpec::Gamma { rate_per_s, cv } => {
                if !positive(*rate_per_s) || !positive(*cv) {
                    e("workload.arrivals".into(), "`gamma(rate, cv)` needs a positive rate and a positive coefficient of variation".into());
                }
            }
            ArrivalSpec::Mmpp { rates, dwell } => {
                if !(rates.iter().all(|r| *r >= 0.0 && r.is_finite()) && rates.iter().any(|r| *r > 0.0))
                    || dwell.contains(&SimDuration::ZERO)
                {
                    e("workload.arrivals".into(), "`mmpp` needs non-negative rates (not both zero) and stays longer than zero".into());
                }
            }
            ArrivalSpec::Ramp { points } => {
                if points.is_empty()
                    || points.iter().any(|p| !(p.1 >= 0.0 && p.1.is_finite()))
                    || points.windows(2).any(|w| w[1].0 < w[0].0)
                    || points.iter().all(|p| p.1 == 0.0)
                {
                    e(
                        "workload.arrivals".into(),
                        "`ramp` needs points `[time, rate]` in time order with non-negative rates, not all zero".into(),
                    );
                }
            }
            ArrivalSpec::ClosedLoop { users, .. } => {
                if *users == 0 {
                    e("workload.arrivals".into(), "`closed_loop` needs at least one user".into());
                }
            }
        }
        fn bad_length(l: &LengthSpec) -> bool {
            match l {
                LengthSpec::Constant(n) => *n == 0,
                LengthSpec::Uniform { lo, hi } => *lo == 0 || lo > hi,
                LengthSpec::Exponential { mean } => !(*mean >= 1.0 && mean.is_finite()),
                LengthSpec::Normal { mean, std } | LengthSpec::LogNormal { mean, std } => {
                    !(mean.is_finite() && *mean > 0.0 && *std >= 0.0 && std.is_finite())
                }
                LengthSpec::Empirical(v) => v.is_empty() || v.contains(&0),
                LengthSpec::Clamped { inner, min, max } => *min == 0 || min > max || bad_length(inner),
            }
        }
        let mut lengths: Vec<(String, &LengthSpec, (u8, u8))> =
            vec![("workload.prompt".into(), &w.prompt, w.priority), ("workload.output".into(), &w.output, w.priority)];
        for c in &w.classes {
            lengths.push((format!("workload.class.{}.prompt", c.name), &c.prompt, c.priority));
            lengths.push((format!("workload.class.{}.output", c.name), &c.output, c.priority));
            if !(c.weight > 0.0 && c.weight.is_finite()) {
                e(format!("workload.class.{}.weight", c.name), "must be positive".into());
            }
        }
        for (name, l, pr) in lengths {
            if bad_length(l) {
                e(name.clone(), "lengths must be at least 1 token (`uniform(a, b)` and `min`/`max` need a <= b; means positive)".into());
            }
            if pr.0 > pr.1 {
                e(name, "the priority's lower bound is above its upper bound".into());
            }
        }
        if let Some(t) = &w.trace
            && !positive(t.speedup)
        {
            e("workload.trace.speedup".into(), "must be positive".into());
        }
        let bounded_by_trace = w.trace.as_ref().is_some_and(|t| !t.looped);
        if self.run.duration.is_none() && self.run.requests.is_none() && !bounded_by_trace {
            e("run".into(), "say how long to run: `duration = 60s` or `requests = 10000`".into());
        }
        for p in std::iter::once(&self.router.prefill).chain(self.router.decode.as_ref()) {
            match p {
                PolicySpec::Telemetry(t) => {
                    if !(t.ewma_alpha > 0.0 && t.ewma_alpha <= 1.0) {
                        e("router.ewma_alpha".into(), "must be in (0, 1]".into());
                    }
                    if t.migration && (t.migration_interval == SimDuration::ZERO || t.window == SimDuration::ZERO) {
                        e("router.migration_interval".into(), "the migration interval and window must be longer than zero".into());
                    }
                }
                PolicySpec::KvAware(k) if !(k.temperature >= 0.0 && k.temperature.is_finite() && k.prefill_load_scale >= 0.0) => {
                    e("router.temperature".into(), "`temperature` and `prefill_load_scale` must be non-negative".into());
                }
                PolicySpec::CacheAware(c) if !(0.0..=1.0).contains(&c.cache_threshold) => {
                    e("router.cache_threshold".into(), "must be between 0 and 1".into());
                }
                _ => {}
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// KV capacity of an instance in blocks: an explicit capacity, or
    /// (memory × utilisation − weights) / bytes per block.
    pub fn kv_capacity_blocks(&self, hw: &HardwareSpec, tp: u32, eng: &EngineSpec) -> Result<u64, String> {
        let bs = u64::from(eng.block_size.max(1));
        if let Some(tokens) = hw.kv_capacity_tokens {
            let blocks = tokens / bs;
            return if blocks == 0 { Err("kv_capacity is smaller than one KV block".into()) } else { Ok(blocks) };
        }
        let mem = match (&hw.perf, hw.memory_bytes) {
            (_, Some(m)) => m,
            (PerfSpec::Roofline { gpu, .. }, None) => gpu.memory_bytes,
            (PerfSpec::Rates { .. } | PerfSpec::Fitted { .. }, None) => {
                return Err(format!("hardware `{}` has neither `memory` nor `kv_capacity`; give one so the KV cache has a size", hw.name));
            }
        };
        let usable = (mem as f64 * f64::from(tp) * eng.gpu_memory_utilization) as u64;
        let weights = self.model.weight_bytes();
        let per_block = self.model.kv_bytes_per_token() * bs;
        if usable <= weights || (usable - weights) / per_block == 0 {
            return Err(format!(
                "model `{}` ({:.1} GB of weights) leaves no room for KV cache on {} x `{}` ({:.1} GB usable); use more GPUs (tp) or set `kv_capacity`",
                self.model.name,
                weights as f64 / 1e9,
                tp,
                hw.name,
                usable as f64 / 1e9
            ));
        }
        Ok((usable - weights) / per_block)
    }

    /// Number of instances over all pools.
    pub fn instance_count(&self) -> usize {
        self.pools.iter().map(|p| p.instances.len()).sum()
    }
}
