//! The run summary: DESIGN §4's metrics, one JSON object per run.

use std::collections::BTreeMap;

use simctl_engine::record::{InstanceStats, PoolStats, RunTotals};
use simctl_engine::spec::ScenarioSpec;

use crate::percentiles::Distribution;
use crate::recorder::RunRecorder;

const SECONDS_PER_HOUR: f64 = 3600.0;

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
    /// Good requests per second (against the class's SLO).
    pub goodput_rps: f64,
    /// Good output tokens per second.
    pub goodput_tok_s: f64,
    /// Good over all requests of the class.
    pub slo_attainment: f64,
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
    /// Rejected requests by reason (`exceeds_kv_capacity`, `no_route`).
    #[serde(default)]
    pub rejected_reasons: BTreeMap<String, u64>,
    /// Requests cut off by the end of a run without drain.
    pub unfinished: u64,
    /// Requests cancelled before they finished.
    #[serde(default)]
    pub cancelled: u64,
    /// Simulated seconds covered (throughputs and cost divide or multiply by this).
    pub duration_s: f64,
    /// Time to first token.
    pub ttft_ms: Distribution,
    /// Time per output token after the first.
    pub tpot_ms: Distribution,
    /// Inter-token latency, pooled over all gaps (from a histogram with 0.1% resolution).
    pub itl_ms: Distribution,
    /// End-to-end latency.
    pub e2e_ms: Distribution,
    /// Completed requests per second.
    pub throughput_rps: f64,
    /// Output tokens of completed requests per second.
    pub output_tok_s: f64,
    /// Good requests per second.
    pub goodput_rps: f64,
    /// Output tokens of good requests per second.
    pub goodput_tok_s: f64,
    /// Good requests over all requests.
    pub slo_attainment: f64,
    /// Cost of the fleet over the run, in dollars.
    pub cost_usd: f64,
    /// Good output tokens per dollar.
    pub goodput_tok_per_usd: f64,
    /// Share of prompt tokens (of requests that started) served from a prefix cache.
    pub prefix_hit_rate: f64,
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
}

impl Summary {
    /// Builds the summary of a finished run.
    pub fn build(spec: &ScenarioSpec, seed: u64, rec: &mut RunRecorder, totals: &RunTotals) -> Summary {
        let secs = totals.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let per_s = |x: u64| x as f64 / secs;
        let hourly: f64 = totals.instances.iter().map(|i| i.hourly_cost).sum();
        let cost = hourly * secs / SECONDS_PER_HOUR;
        rec.flush_itl();
        let itl = itl_distribution(rec);
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
            duration_s: secs,
            ttft_ms: Distribution::from_samples(&mut rec.ttft_ms),
            tpot_ms: Distribution::from_samples(&mut rec.tpot_ms),
            itl_ms: itl,
            e2e_ms: Distribution::from_samples(&mut rec.e2e_ms),
            throughput_rps: per_s(rec.finished),
            output_tok_s: per_s(rec.output_tokens),
            goodput_rps: per_s(rec.good),
            goodput_tok_s: per_s(rec.good_output_tokens),
            slo_attainment: if rec.requests == 0 { 0.0 } else { rec.good as f64 / rec.requests as f64 },
            cost_usd: cost,
            goodput_tok_per_usd: if cost > 0.0 { rec.good_output_tokens as f64 / cost } else { 0.0 },
            prefix_hit_rate: if rec.prompt_tokens == 0 { 0.0 } else { rec.cached_tokens as f64 / rec.prompt_tokens as f64 },
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
                            goodput_rps: c.good as f64 / secs,
                            goodput_tok_s: c.good_output_tokens as f64 / secs,
                            slo_attainment: if c.requests == 0 { 0.0 } else { c.good as f64 / c.requests as f64 },
                        },
                    )
                })
                .collect(),
            pools: totals.pools.iter().map(|p| (p.name.clone(), p.clone())).collect(),
            instances: totals.instances.iter().map(|i| (i.name.clone(), i.clone())).collect(),
        }
    }
}

fn itl_distribution(rec: &RunRecorder) -> Distribution {
    let h = &rec.itl;
    if h.is_empty() {
        return Distribution::default();
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    let n = h.len();
    Distribution {
        mean: rec.itl_sum_ns as f64 / n as f64 / 1e6,
        std: h.stdev() / 1e6,
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
        count: n,
    }
}
