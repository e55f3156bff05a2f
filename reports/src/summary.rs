//! The run summary: DESIGN §4's metrics, one JSON object per run.

use std::collections::BTreeMap;

use simctl_engine::record::{InstanceStats, PoolStats, RunTotals};
use simctl_engine::spec::ScenarioSpec;

use crate::percentiles::Distribution;
use crate::recorder::RunRecorder;

const SECONDS_PER_HOUR: f64 = 3600.0;

fn yes() -> bool {
    true
}

/// Per-class results (workloads with `class` blocks).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassSummary {
    /// Requests of the class.
    pub requests: u64,
    /// Of which finished.
    pub completed: u64,
    /// Time to first token.
    pub ttft_ms: Distribution,
    /// Time per output token.
    pub tpot_ms: Distribution,
    /// End-to-end latency.
    pub e2e_ms: Distribution,
    /// Good requests per second (against the class's SLO; `None` when the class has none).
    pub goodput_rps: Option<f64>,
    /// Good output tokens per second.
    pub goodput_tok_s: Option<f64>,
    /// Good over all requests of the class (`None` without an SLO).
    pub slo_attainment: Option<f64>,
}

/// The summary of one run. Key names are a stable interface for scripts.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Seed of the run.
    pub seed: u64,
    /// Routing policy.
    pub policy: String,
    /// Requests that arrived.
    pub requests: u64,
    /// Requests that finished.
    pub completed: u64,
    /// Requests that could never fit in an instance's KV cache.
    pub rejected: u64,
    /// Rejected requests by reason (`exceeds_kv_capacity`, `no_route`; live: `exceeds_context`).
    #[serde(default)]
    pub rejected_reasons: BTreeMap<String, u64>,
    /// Requests cut off by the end of a run without drain.
    pub unfinished: u64,
    /// Requests cancelled before they finished.
    #[serde(default)]
    pub cancelled: u64,
    /// Live mode: requests the engine or the connection failed (never dropped from the
    /// figures: each is a row of requests.csv with its error).
    #[serde(default)]
    pub failed: u64,
    /// Failed requests by reason (`http_error`, `timeout`, `disconnected`).
    #[serde(default)]
    pub failed_reasons: BTreeMap<String, u64>,
    /// Whether the run reached its end (no bound of `run { }`, bad trace line or Ctrl-C
    /// stopped it early). An incomplete run's figures cover what finished before it stopped.
    #[serde(default = "yes")]
    pub complete: bool,
    /// Why it stopped early, when it did.
    #[serde(default)]
    pub incomplete_reason: Option<String>,
    /// The measured window in seconds: from the first arrival to the last completion when
    /// the run drains, to its stop time otherwise (as `vllm bench serve` and aiperf measure);
    /// throughputs and goodput divide by it.
    pub duration_s: f64,
    /// Start of the measured window, seconds after the start of the run.
    #[serde(default)]
    pub window_start_s: f64,
    /// End of the measured window.
    #[serde(default)]
    pub window_end_s: f64,
    /// Seconds the fleet is held: from the start of the run to its end (cost multiplies by this).
    #[serde(default)]
    pub held_s: f64,
    /// Time to first token.
    pub ttft_ms: Distribution,
    /// Time per output token after the first.
    pub tpot_ms: Distribution,
    /// Inter-token latency, pooled over all gaps (from a histogram with 0.1% resolution).
    pub itl_ms: Distribution,
    /// End-to-end latency.
    pub e2e_ms: Distribution,
    /// Completed requests per second of the window (`None` without a window).
    pub throughput_rps: Option<f64>,
    /// Output tokens of completed requests per second.
    pub output_tok_s: Option<f64>,
    /// Good requests per second (`None` when no SLO is given: nothing is judged).
    pub goodput_rps: Option<f64>,
    /// Output tokens of good requests per second.
    pub goodput_tok_s: Option<f64>,
    /// Good requests over the requests judged against an SLO (`None` without requests or
    /// without any SLO bound).
    pub slo_attainment: Option<f64>,
    /// Cost of the fleet over the time it is held, in dollars.
    pub cost_usd: f64,
    /// Good output tokens per dollar (`None` when the fleet costs nothing or without an SLO).
    pub goodput_tok_per_usd: Option<f64>,
    /// Share of prompt tokens (of requests that started) served from a prefix cache (`None`
    /// when no request started).
    pub prefix_hit_rate: Option<f64>,
    /// Requests that prefilled on their decode instance (conditional disaggregation).
    pub local_prefills: u64,
    /// Sequences moved between decode instances by the router.
    pub migrations: u64,
    /// Requests preempted at least once.
    pub preempted_requests: u64,
    /// Preemptions over all instances.
    pub preemptions: u64,
    /// Simulation events processed.
    pub events: u64,
    /// Most requests in flight at once.
    pub peak_in_flight: usize,
    /// Invalid trace lines skipped.
    pub trace_skipped_lines: u64,
    /// Per-class results by class name (empty without classes).
    pub classes: BTreeMap<String, ClassSummary>,
    /// Per-pool results by name.
    pub pools: BTreeMap<String, PoolStats>,
    /// Per-instance results by name.
    pub instances: BTreeMap<String, InstanceStats>,
    /// TTFT of the requests each pool prefilled and TPOT of those it decoded.
    #[serde(default)]
    pub latency_by_pool: BTreeMap<String, LatencyBreakdown>,
    /// The same per instance.
    #[serde(default)]
    pub latency_by_instance: BTreeMap<String, LatencyBreakdown>,
    /// Live mode only: how the run went against real engines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveInfo>,
}

/// TTFT and TPOT of the requests one pool or instance served.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyBreakdown {
    /// TTFT of the requests it prefilled.
    pub ttft_ms: Distribution,
    /// TPOT of the finished requests it decoded.
    pub tpot_ms: Distribution,
}

/// What a live run adds to its summary.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LiveInfo {
    /// `aggregated` (each engine serves whole requests), or `dual_pool` (split pools without
    /// KV transfer between engines: each request served whole in the pool its prompt length
    /// picks, the original lab's mode).
    pub mode: String,
    /// Prompt tokens from which a request went to the long-prompt pool (dual pools).
    pub split_at: Option<u32>,
    /// The served model.
    pub model: String,
    /// Engine URL of each instance.
    pub endpoints: BTreeMap<String, String>,
    /// How late the client sent requests against their scheduled times.
    pub send_lag_ms: Distribution,
    /// Set when the client fell behind its schedule (send lag p95 above 10 ms or max above
    /// 100 ms): the load the engines saw was lower than the scenario's.
    pub client_behind: Option<String>,
    /// Migrations the planner asked for: logged, not executed (vLLM cannot move a running
    /// sequence between engines).
    pub advisory_migrations: u64,
    /// Prompt tokens the router expected the engines' prefix caches to serve (from its own
    /// index of what it sent where).
    pub expected_prefix_hit_tokens: u64,
    /// What the engines report for the run (`vllm:prefix_cache_hits_total` delta).
    pub engine_prefix_hit_tokens: Option<u64>,
    /// `vllm:prefix_cache_queries_total` delta.
    pub engine_prefix_query_tokens: Option<u64>,
    /// `/metrics` scrapes, and how many failed.
    pub scrapes: u64,
    /// Failed scrapes (the router kept the last gauges it had).
    pub scrape_errors: u64,
    /// The last scrape error, if any.
    pub last_scrape_error: Option<String>,
    /// Whether Ctrl-C stopped sending before the workload's end.
    pub interrupted: bool,
    /// Requests still in flight when the grace period after Ctrl-C ran out (unfinished).
    pub abandoned: u64,
    /// The smallest context (prompt plus output tokens, vLLM's `max_model_len`) of the
    /// engines; `null` when none says.
    #[serde(default)]
    pub context_limit: Option<u32>,
    /// Requests sent shortened to fit it (`simctl live --clip`).
    #[serde(default)]
    pub clipped: u64,
    /// Requests checked against it before the first was sent.
    #[serde(default)]
    pub preflight_checked: u64,
    /// Whether that was every request of the run (not just the first million of an
    /// unbounded one).
    #[serde(default)]
    pub preflight_all: bool,
    /// Requests sent again to another engine after theirs refused, reset or answered 5xx
    /// before any output (each at most once; the record is the second attempt's).
    #[serde(default)]
    pub rerouted: u64,
    /// Each engine's availability: its share of the run in routing, and its outages.
    #[serde(default)]
    pub engines: BTreeMap<String, EngineAvailability>,
    /// Engines taken out of routing and put back, in order.
    #[serde(default)]
    pub health_events: Vec<HealthEvent>,
    /// What the scenario models that this live run does not measure (dual pools: the KV
    /// hand-off between pools).
    #[serde(default)]
    pub not_measured: Option<String>,
}

/// One engine's time in routing over a live run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EngineAvailability {
    /// Share of the run it was in routing, in [0, 1].
    pub availability: f64,
    /// Times it was taken out of routing.
    pub outages: u32,
    /// Seconds out of routing in all.
    pub out_s: f64,
    /// Why it was last taken out.
    pub last_reason: Option<String>,
}

/// An engine taken out of routing or put back.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HealthEvent {
    /// Seconds since the start of the run.
    pub at_s: f64,
    /// The instance bound to the engine.
    pub instance: String,
    /// What happened, and why.
    pub what: String,
}

impl Summary {
    /// Builds the summary of a finished run.
    pub fn build(spec: &ScenarioSpec, seed: u64, rec: &mut RunRecorder, totals: &RunTotals) -> Summary {
        let held = totals.elapsed.as_secs_f64();
        let window = totals.window(spec.run.drain);
        let (w0, w1) = window.map_or((0.0, 0.0), |(a, b)| (a.as_secs_f64(), b.as_secs_f64()));
        let secs = w1 - w0;
        // Rates over the window; none without one (nothing arrived, or all at one instant).
        let per_s = |x: u64| (secs > 0.0).then(|| x as f64 / secs);
        let share = |x: u64, of: u64| (of > 0).then(|| x as f64 / of as f64);
        let hourly: f64 = totals.instances.iter().map(|i| i.hourly_cost).sum();
        let cost = hourly * held / SECONDS_PER_HOUR;
        rec.flush_itl();
        let itl = itl_distribution(rec);
        // Without an SLO bound nothing is judged: no attainment, no goodput (not 100%).
        let judged = rec.has_slo();
        Summary {
            scenario: spec.name.clone(),
            seed,
            policy: spec.router.name(),
            requests: rec.requests,
            completed: rec.finished,
            rejected: rec.rejected,
            rejected_reasons: rec.rejected_reasons.clone(),
            unfinished: rec.unfinished,
            cancelled: rec.cancelled,
            failed: rec.failed,
            failed_reasons: rec.failed_reasons.clone(),
            complete: totals.complete,
            incomplete_reason: totals.stop_reason.clone().or_else(|| totals.workload_error.clone()),
            duration_s: secs,
            window_start_s: w0,
            window_end_s: w1,
            held_s: held,
            ttft_ms: Distribution::from_samples(&mut rec.ttft_ms),
            tpot_ms: Distribution::from_samples(&mut rec.tpot_ms),
            itl_ms: itl,
            e2e_ms: Distribution::from_samples(&mut rec.e2e_ms),
            throughput_rps: per_s(rec.finished),
            output_tok_s: per_s(rec.output_tokens),
            goodput_rps: judged.then(|| per_s(rec.good)).flatten(),
            goodput_tok_s: judged.then(|| per_s(rec.good_output_tokens)).flatten(),
            slo_attainment: judged.then(|| share(rec.good, rec.judged)).flatten(),
            cost_usd: cost,
            goodput_tok_per_usd: (judged && cost > 0.0).then(|| rec.good_output_tokens as f64 / cost),
            prefix_hit_rate: share(rec.cached_tokens, rec.prompt_tokens),
            local_prefills: totals.local_prefills,
            migrations: totals.migrations,
            preempted_requests: rec.preempted_requests,
            preemptions: totals.instances.iter().map(|i| i.preemptions).sum(),
            events: totals.events,
            peak_in_flight: totals.peak_in_flight,
            trace_skipped_lines: totals.trace_skipped_lines,
            classes: rec
                .classes
                .iter_mut()
                .map(|c| {
                    (
                        c.name.clone(),
                        ClassSummary {
                            requests: c.requests,
                            completed: c.finished,
                            ttft_ms: Distribution::from_samples(&mut c.ttft_ms),
                            tpot_ms: Distribution::from_samples(&mut c.tpot_ms),
                            e2e_ms: Distribution::from_samples(&mut c.e2e_ms),
                            goodput_rps: (!c.slo.is_empty()).then(|| per_s(c.good)).flatten(),
                            goodput_tok_s: (!c.slo.is_empty()).then(|| per_s(c.good_output_tokens)).flatten(),
                            slo_attainment: (!c.slo.is_empty()).then(|| share(c.good, c.judged)).flatten(),
                        },
                    )
                })
                .collect(),
            pools: totals.pools.iter().map(|p| (p.name.clone(), p.clone())).collect(),
            instances: totals.instances.iter().map(|i| (i.name.clone(), i.clone())).collect(),
            latency_by_pool: latency_by_pool(rec),
            latency_by_instance: totals
                .instances
                .iter()
                .enumerate()
                .map(|(k, i)| (i.name.clone(), breakdown(rec.by_instance.get(k).into_iter())))
                .collect(),
            live: None,
        }
    }
}

fn breakdown<'a>(of: impl Iterator<Item = &'a crate::recorder::InstanceLatency> + Clone) -> LatencyBreakdown {
    let mut ttft: Vec<f64> = of.clone().flat_map(|a| a.ttft_ms.iter().map(|&x| f64::from(x))).collect();
    let mut tpot: Vec<f64> = of.flat_map(|a| a.tpot_ms.iter().map(|&x| f64::from(x))).collect();
    LatencyBreakdown { ttft_ms: Distribution::from_samples(&mut ttft), tpot_ms: Distribution::from_samples(&mut tpot) }
}

fn latency_by_pool(rec: &RunRecorder) -> BTreeMap<String, LatencyBreakdown> {
    rec.pool_names
        .iter()
        .enumerate()
        .map(|(p, name)| {
            let of = rec.by_instance.iter().enumerate().filter(move |(k, _)| rec.instance_pools.get(*k) == Some(&p)).map(|(_, a)| a);
            (name.clone(), breakdown(of))
        })
        .collect()
}

fn itl_distribution(rec: &RunRecorder) -> Distribution {
    let h = &rec.itl;
    if h.is_empty() {
        return Distribution::default();
    }
    let ms = |ns: u64| Some(ns as f64 / 1e6);
    let n = h.len();
    Distribution {
        mean: Some(rec.itl_sum_ns as f64 / n as f64 / 1e6),
        std: Some(h.stdev() / 1e6),
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
        count: n,
    }
}
