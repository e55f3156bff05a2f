//! What a run reports: per-request rows, events for recorders, per-instance statistics.

use crate::cost::BatchShape;
use crate::ids::InstanceId;
use crate::request::RequestId;
use crate::spec::Role;
use crate::time::{SimDuration, SimTime};
use crate::units::Tokens;

/// How a request left the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every output token was produced.
    Finished,
    /// It left without finishing, for the [`Reason`] its record gives.
    Rejected,
    /// The run stopped (no drain) before it finished.
    Unfinished,
    /// It was cancelled ([`crate::Simulation::cancel`]) before it finished.
    Cancelled,
    /// Live mode: the engine failed it (an HTTP error, a timeout, a dropped stream); its
    /// record's [`Reason`] says which.
    Failed,
}

/// Why a request was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Prompt plus output need more KV blocks than the instance it was routed to has in all.
    ExceedsKvCapacity,
    /// The router had no instance to send it to.
    NoRoute,
    /// Live mode: the engine answered with an HTTP error.
    HttpError,
    /// Live mode: no complete answer in time (or the stream stalled).
    Timeout,
    /// Live mode: the connection failed or the stream broke off.
    Disconnected,
    /// Live mode: prompt plus output exceed the context of the engine it was routed to (not
    /// sent; `simctl live --clip` sends such requests shortened).
    ExceedsContext,
}

impl Reason {
    /// Snake-case name for tables, CSV and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ExceedsKvCapacity => "exceeds_kv_capacity",
            Reason::NoRoute => "no_route",
            Reason::HttpError => "http_error",
            Reason::Timeout => "timeout",
            Reason::Disconnected => "disconnected",
            Reason::ExceedsContext => "exceeds_context",
        }
    }
}

impl Outcome {
    /// Lowercase name for tables and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Finished => "finished",
            Outcome::Rejected => "rejected",
            Outcome::Unfinished => "unfinished",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
        }
    }
}

/// One request's life, written when it leaves the system.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestRecord {
    /// Identifier (arrival order).
    pub id: RequestId,
    /// Arrival time.
    pub arrival: SimTime,
    /// When the first output token was produced.
    pub first_token: Option<SimTime>,
    /// When the last output token was produced (finished requests).
    pub finish: Option<SimTime>,
    /// Prompt tokens.
    pub prompt_tokens: Tokens,
    /// Output tokens asked for.
    pub output_tokens: Tokens,
    /// Output tokens produced.
    pub generated_tokens: Tokens,
    /// Priority (0 is most important).
    pub priority: u8,
    /// Instance that ran the prefill.
    pub prefill_instance: Option<InstanceId>,
    /// Instance that ran the decode (the same as prefill in aggregated pools).
    pub decode_instance: Option<InstanceId>,
    /// Times it was preempted and recomputed.
    pub preemptions: u32,
    /// Prompt tokens served from the prefix cache when it was first admitted.
    pub cached_tokens: Tokens,
    /// Times it was moved between decode instances by the router.
    pub migrations: u32,
    /// Its request class.
    pub class: u8,
    /// Its largest gap between two consecutive output tokens.
    pub max_itl: SimDuration,
    /// How it left.
    pub outcome: Outcome,
    /// Why, when it was rejected.
    pub reason: Option<Reason>,
}

impl RunTotals {
    /// The measured window of throughputs, as `vllm bench serve` measures it: from the first
    /// arrival to the last completion when the run drained, to its end otherwise. `None`
    /// when nothing arrived.
    pub fn window(&self, drained: bool) -> Option<(SimTime, SimTime)> {
        let start = self.first_arrival?;
        let end = if drained { self.last_departure.unwrap_or(self.end) } else { self.end };
        Some((start, end.max(start)))
    }
}

impl RequestRecord {
    /// Time to first token.
    pub fn ttft(&self) -> Option<SimDuration> {
        self.first_token.map(|t| t - self.arrival)
    }
    /// End-to-end latency.
    pub fn e2e(&self) -> Option<SimDuration> {
        self.finish.map(|t| t - self.arrival)
    }
    /// Time per output token after the first: (E2E − TTFT) / (output − 1), for output > 1.
    pub fn tpot(&self) -> Option<SimDuration> {
        match (self.first_token, self.finish) {
            (Some(f), Some(l)) if self.generated_tokens.get() > 1 => {
                Some(SimDuration((l - f).as_nanos() / u64::from(self.generated_tokens.get() - 1)))
            }
            _ => None,
        }
    }
    /// Its mean inter-token latency as aiperf's `inter_token_latency` defines it:
    /// (E2E − TTFT) / (output − 1) — by definition the same number as [`Self::tpot`].
    pub fn mean_itl(&self) -> Option<SimDuration> {
        self.tpot()
    }
    /// Its largest gap between two consecutive output tokens, for outputs longer than one
    /// token (a one-token output has no gap).
    pub fn largest_itl(&self) -> Option<SimDuration> {
        (self.generated_tokens.get() > 1 && self.first_token.is_some()).then_some(self.max_itl)
    }
}

/// What a routing decision was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionKind {
    /// Where a new request prefills (or runs, in mixed pools).
    Prefill,
    /// Where a request decodes.
    Decode,
    /// A running sequence moved to another decode instance.
    Migration,
}

impl DecisionKind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Prefill => "prefill",
            DecisionKind::Decode => "decode",
            DecisionKind::Migration => "migration",
        }
    }
}

/// One routing decision and why it was made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision<'a> {
    /// When.
    pub at: SimTime,
    /// For which request.
    pub request: RequestId,
    /// What was decided.
    pub kind: DecisionKind,
    /// The policy that decided.
    pub policy: &'static str,
    /// The instance chosen.
    pub chosen: InstanceId,
    /// Every candidate's score as the policy computed it (see the policy's documentation).
    pub scores: &'a [(InstanceId, f64)],
}

/// Receives what happens during a run. Every hook defaults to doing nothing.
pub trait Recorder {
    /// Whether `on_decision` should be called (building decisions costs a little).
    fn wants_decisions(&self) -> bool {
        false
    }
    /// A routing decision.
    fn on_decision(&mut self, _d: &Decision<'_>) {}
    /// A request left the system (finished, rejected or cut off at the end).
    fn on_request(&mut self, _rec: &RequestRecord) {}
    /// Live mode: a request left with an error the engine or the connection gave
    /// (`error` is its text); by default, recorded like any other.
    fn on_request_error(&mut self, rec: &RequestRecord, _error: &str) {
        self.on_request(rec)
    }
    /// A gap between two consecutive output tokens of one request (pooled ITL). Gaps are a
    /// multiset: those of fast-forwarded steps come when their instance is next caught up,
    /// not in time order among other instances' observations.
    fn on_token_gap(&mut self, _gap: SimDuration) {}
    /// `count` gaps of one length (the sequences of a batch fast-forwarded together).
    fn on_token_gaps(&mut self, gap: SimDuration, count: u64) {
        for _ in 0..count {
            self.on_token_gap(gap);
        }
    }
    /// An instance ran a step (fast-forwarded steps come in bulk when their instance is next
    /// caught up: steps are a multiset too).
    fn on_step(&mut self, _instance: InstanceId, _start: SimTime, _duration: SimDuration, _batch: &BatchShape) {}
    /// KV moved between instances.
    fn on_transfer(&mut self, _from: InstanceId, _to: InstanceId, _start: SimTime, _duration: SimDuration, _bytes: u64) {}
    /// A running sequence was preempted on `instance`.
    fn on_preemption(&mut self, _instance: InstanceId, _at: SimTime) {}
}

/// A recorder that keeps nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullRecorder;
impl Recorder for NullRecorder {}

impl<R: Recorder + ?Sized> Recorder for &mut R {
    fn wants_decisions(&self) -> bool {
        (**self).wants_decisions()
    }
    fn on_decision(&mut self, d: &Decision<'_>) {
        (**self).on_decision(d)
    }
    fn on_request(&mut self, rec: &RequestRecord) {
        (**self).on_request(rec)
    }
    fn on_token_gap(&mut self, gap: SimDuration) {
        (**self).on_token_gap(gap)
    }
    fn on_request_error(&mut self, rec: &RequestRecord, error: &str) {
        (**self).on_request_error(rec, error)
    }
    fn on_token_gaps(&mut self, gap: SimDuration, count: u64) {
        (**self).on_token_gaps(gap, count)
    }
    fn on_step(&mut self, i: InstanceId, s: SimTime, d: SimDuration, b: &BatchShape) {
        (**self).on_step(i, s, d, b)
    }
    fn on_transfer(&mut self, f: InstanceId, t: InstanceId, s: SimTime, d: SimDuration, b: u64) {
        (**self).on_transfer(f, t, s, d, b)
    }
    fn on_preemption(&mut self, i: InstanceId, at: SimTime) {
        (**self).on_preemption(i, at)
    }
}

/// Statistics of one instance over a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstanceStats {
    /// Instance name.
    pub name: String,
    /// Pool name.
    pub pool: String,
    /// Role.
    pub role: Role,
    /// Hardware name.
    pub hardware: String,
    /// GPUs (tensor-parallel degree).
    pub gpus: u32,
    /// Dollars per hour for the instance.
    pub hourly_cost: f64,
    /// Time-weighted mean of waiting + running requests.
    pub queue_depth_mean: f64,
    /// Largest waiting + running count.
    pub queue_depth_max: u32,
    /// Share of the run spent in steps.
    pub utilization: f64,
    /// Steps run.
    pub steps: u64,
    /// Preemptions.
    pub preemptions: u64,
    /// KV capacity in blocks.
    pub kv_capacity_blocks: u64,
    /// Most KV blocks in use at once, as a share of capacity.
    pub kv_peak_usage: f64,
    /// Share of admitted prompt tokens served from the prefix cache.
    pub prefix_hit_rate: f64,
    /// Sequences the router moved away from this instance.
    pub migrations_out: u64,
    /// Sequences the router moved onto this instance.
    pub migrations_in: u64,
}

/// Statistics of one pool over a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PoolStats {
    /// Pool name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Instances in the pool.
    pub instances: u32,
    /// Time-weighted mean of the pool's total waiting + running requests.
    pub queue_depth_mean: f64,
    /// Largest total waiting + running count.
    pub queue_depth_max: u32,
}

/// Totals of a finished run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunTotals {
    /// Whether the run reached its end: no bound of `run { }` stopped it and the trace had
    /// no bad line.
    pub complete: bool,
    /// Why it stopped early, when a bound of `run { }` stopped it.
    pub stop_reason: Option<String>,
    /// When the first request arrived.
    pub first_arrival: Option<SimTime>,
    /// When the last request left (finished, rejected or cancelled).
    pub last_departure: Option<SimTime>,
    /// When the run ended: the last event when it drains, the stop time otherwise.
    pub end: SimTime,
    /// Simulated time the fleet is held: from the start to `end` (the billing window).
    pub elapsed: SimDuration,
    /// Events processed.
    pub events: u64,
    /// Requests that arrived.
    pub arrived: u64,
    /// Requests that prefilled on their decode instance (conditional disaggregation).
    pub local_prefills: u64,
    /// Sequences moved between decode instances by the router.
    pub migrations: u64,
    /// Requests cancelled ([`crate::Simulation::cancel`]).
    pub cancelled: u64,
    /// Invalid trace lines skipped (`skip_invalid`).
    pub trace_skipped_lines: u64,
    /// The trace error that stopped arrivals early, if any.
    pub workload_error: Option<String>,
    /// Most requests in flight at once.
    pub peak_in_flight: usize,
    /// Per-instance statistics, in instance order.
    pub instances: Vec<InstanceStats>,
    /// Per-pool statistics, in pool order.
    pub pools: Vec<PoolStats>,
    /// Queue depth over time per pool, when asked for ([`crate::Simulation::with_depth_series`]).
    pub depth_series: Vec<DepthSeries>,
}

/// Buckets a [`DepthSeries`] keeps at most; past that, neighbouring buckets merge.
pub const DEPTH_SERIES_MAX_BUCKETS: usize = 2048;

/// A pool's queue depth over time, bounded in memory: the largest waiting + running count
/// in each bucket of `bucket` width. Buckets start at 10 ms and double (merging pairs by
/// their maximum) whenever the run outgrows [`DEPTH_SERIES_MAX_BUCKETS`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DepthSeries {
    /// Pool name.
    pub pool: String,
    /// Width of a bucket.
    pub bucket: SimDuration,
    /// Peak depth in each bucket, from time zero.
    pub peak: Vec<u32>,
    #[serde(skip)]
    last: u32,
}

impl DepthSeries {
    /// An empty series for `pool`.
    pub fn new(pool: String) -> Self {
        DepthSeries { pool, bucket: SimDuration::from_millis(10), peak: Vec::new(), last: 0 }
    }

    fn halve(&mut self) {
        self.bucket = SimDuration::from_nanos(self.bucket.as_nanos() * 2);
        let merged: Vec<u32> = self.peak.chunks(2).map(|c| c.iter().copied().max().unwrap_or(0)).collect();
        self.peak = merged;
    }

    /// The depth became `depth` at `at`.
    pub fn note(&mut self, at: SimTime, depth: u32) {
        let t = (at - SimTime::ZERO).as_nanos();
        let mut b = (t / self.bucket.as_nanos()) as usize;
        while b >= DEPTH_SERIES_MAX_BUCKETS {
            self.halve();
            b = (t / self.bucket.as_nanos()) as usize;
        }
        // Buckets without a change hold the depth carried from before.
        while self.peak.len() <= b {
            self.peak.push(self.last);
        }
        self.peak[b] = self.peak[b].max(depth);
        self.last = depth;
    }

    /// Extends the series to `end` with the current depth.
    pub fn close(&mut self, end: SimTime) {
        let d = self.last;
        self.note(end, d);
    }
}
