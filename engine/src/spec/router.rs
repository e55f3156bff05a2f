//! Router and telemetry settings.

use crate::time::SimDuration;

/// The router: one policy for both phases, or one per phase where pools are split.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterSpec {
    /// Places new requests (prefill, or the whole request in mixed pools).
    pub prefill: PolicySpec,
    /// Places prefilled requests on decode instances; `None`: the prefill policy decides both.
    pub decode: Option<PolicySpec>,
    /// Sends prompts of at least so many tokens to one pool and shorter ones to another
    /// (the original lab's dual pools); `None`: every prefill-capable instance is a candidate.
    pub split: Option<PromptSplit>,
}

/// Which pool a new request may start in, by its prompt length: long prompts (at least `at`
/// tokens) go to `long_pool`, the others to `short_pool`; the policy picks within the pool.
/// Each request is then served where it lands, as in the original lab's dual-pool mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromptSplit {
    /// Prompt tokens from which a request is long.
    pub at: u32,
    /// Index of the pool of long prompts.
    pub long_pool: usize,
    /// Index of the pool of short prompts.
    pub short_pool: usize,
}

impl RouterSpec {
    /// The same policy for both phases.
    pub fn single(p: PolicySpec) -> Self {
        RouterSpec { prefill: p, decode: None, split: None }
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
