//! Routing policies, shared by the simulator and live mode.
//!
//! A policy is a `&mut self` state machine: it reads a [`ClusterView`] (what a router would
//! see of each instance) and a request, and returns the instance to use. It knows nothing of
//! engine internals, so live mode can drive the same objects against real endpoints. One
//! file per policy; each is built only from its `PolicySpec`.

mod cache_aware;
mod host;
mod kv_aware;
mod least_loaded;
mod power_of_two;
mod prefix_index;
mod random;
mod round_robin;
mod telemetry;
mod view;

pub use cache_aware::CacheAware;
pub use host::{Gauges, PROBE_MAX_INSTANCES, PrefixProbe, RouterHost, max_hit_blocks, prompt_block_hashes};
pub use kv_aware::KvAware;
pub use least_loaded::LeastLoaded;
pub use power_of_two::PowerOfTwo;
pub use prefix_index::PrefixIndex;
pub use random::RandomPolicy;
pub use round_robin::RoundRobin;
pub use telemetry::TelemetryRouter;
pub use view::{ClusterView, InstanceId, InstanceView};

use crate::request::{Request, RequestId};
use crate::rng::RunSeed;
use crate::spec::PolicySpec;
use crate::time::{SimDuration, SimTime};

/// A decoding sequence, as a migration planner sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodingSeq {
    /// The request.
    pub request: RequestId,
    /// Where it decodes now (and holds its KV).
    pub instance: InstanceId,
    /// Its priority (0 is most important).
    pub priority: u8,
    /// Output tokens still to produce.
    pub tokens_remaining: u32,
}

/// A planned move of a decoding sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The request to move.
    pub request: RequestId,
    /// From.
    pub from: InstanceId,
    /// To.
    pub to: InstanceId,
}

/// Why a policy could not decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The view has no instance for this phase (no pool of that role, or every endpoint of
    /// it is down in live mode).
    #[error("no {0} instance to route to")]
    NoCandidate(&'static str),
}

/// The candidates, or [`RouteError::NoCandidate`] when there are none.
pub(crate) fn candidates<'a>(c: &'a [InstanceId], phase: &'static str) -> Result<&'a [InstanceId], RouteError> {
    if c.is_empty() { Err(RouteError::NoCandidate(phase)) } else { Ok(c) }
}

/// A routing policy. Hooks other than the two decisions default to no-ops.
pub trait RoutingPolicy: Send {
    /// Policy name as written in scenarios.
    fn name(&self) -> &'static str;

    /// Where a new request prefills: one of `view.prefill_candidates()`.
    fn route_prefill(&mut self, view: &ClusterView, req: &Request) -> Result<InstanceId, RouteError>;

    /// Where a request decodes: one of `view.decode_candidates()`. Only called when prefill
    /// and decode pools are split: after its prefill (`prefilled_on` is set), or on arrival
    /// when decode pools may prefill short prompts locally (conditional disaggregation; the
    /// decode instance then decides whether to prefill itself).
    fn route_decode(&mut self, view: &ClusterView, req: &Request, prefilled_on: Option<InstanceId>) -> Result<InstanceId, RouteError>;

    /// Whether the policy reads `view.cached_prefix_tokens` (computing it costs a lookup in
    /// every candidate's prefix cache).
    fn wants_prefix_overlap(&self) -> bool {
        false
    }

    /// The candidates' scores of the last decision, for the decision log (each policy's
    /// documentation says what its numbers mean).
    fn last_scores(&self) -> &[(InstanceId, f64)] {
        &[]
    }

    /// A first token left `instance` after `ttft`.
    fn on_first_token(&mut self, _instance: InstanceId, _ttft: SimDuration) {}

    /// A request finished decoding on `instance`; `tpot` is its time per output token when
    /// it produced more than one token.
    fn on_request_complete(&mut self, _instance: InstanceId, _tpot: Option<SimDuration>) {}

    /// A request sent to `instance` failed there: rejected, or (live) an HTTP error, a
    /// timeout or a dropped stream.
    fn on_request_failed(&mut self, _instance: InstanceId) {}

    /// A request on `instance` was cancelled before it finished.
    fn on_request_cancelled(&mut self, _instance: InstanceId) {}

    /// How often `plan_migrations` should run; `None` for policies that never migrate.
    fn migration_interval(&self) -> Option<SimDuration> {
        None
    }

    /// Moves of decoding sequences to make now.
    fn plan_migrations(&mut self, _view: &ClusterView, _decoding: &[DecodingSeq], _now: SimTime) -> Vec<Migration> {
        Vec::new()
    }
}

/// Builds the policy a spec names; `seed` feeds policies that draw random numbers.
pub fn build(spec: &PolicySpec, seed: RunSeed, stream: &str) -> Box<dyn RoutingPolicy> {
    match spec {
        PolicySpec::RoundRobin => Box::new(RoundRobin::default()),
        PolicySpec::Random => Box::new(RandomPolicy::new(seed.stream(stream))),
        PolicySpec::LeastLoaded => Box::new(LeastLoaded::default()),
        PolicySpec::PowerOfTwo => Box::new(PowerOfTwo::new(seed.stream(stream))),
        PolicySpec::Telemetry(t) => Box::new(TelemetryRouter::new(*t)),
        PolicySpec::KvAware(k) => Box::new(KvAware::new(*k, seed.stream(stream))),
        PolicySpec::CacheAware(c) => Box::new(CacheAware::new(*c)),
    }
}

/// The candidate with the lowest value (ties: the lowest id); fills `scores`. `candidates`
/// is not empty.
pub(crate) fn argmin(
    candidates: &[InstanceId],
    scores: &mut Vec<(InstanceId, f64)>,
    mut value: impl FnMut(InstanceId) -> f64,
) -> InstanceId {
    scores.clear();
    let mut best = candidates[0];
    let mut best_v = f64::INFINITY;
    for &c in candidates {
        let v = value(c);
        scores.push((c, v));
        if v < best_v {
            best = c;
            best_v = v;
        }
    }
    best
}
