//! `telemetry`: the original lab's score-based router.
//!
//! Per instance it keeps EWMAs of TTFT (prefill side), TPOT (decode side), queue depth, free
//! KV memory and prefix hit rate, and picks the highest score (ties: lowest instance id).
//!
//! The lab's weights are kept: prefill = 1.5·ttft + 0.5·speed + 1.0·memory + 0.5·queue,
//! decode = 0.5·ttft + 1.5·speed + 0.5·memory + 1.0·queue. Two departures, because the lab
//! mixed raw units (tokens/s next to GB next to 1/ms, so one term swamped the rest):
//! every term here lies in [0, 1] — TTFT as 1/(1 + seconds), decode speed as 1/TPOT divided
//! by the fastest candidate's, free memory as a share of the KV cache, queue as
//! urgency/(1 + depth). Prefill instances do not decode, so their speed term is replaced by
//! the prefix hit rate (what makes a prefill fast), and decode instances see no TTFT, so the
//! decode score has no TTFT term.
//!
//! The migration planner runs every `migration_interval`: it scores the decode instances and,
//! when best − worst ≥ `min_score_gap`, moves sequences off the lowest-scoring instances —
//! least important first (highest priority number), then most tokens remaining — to the
//! best-scoring other instance (KV-local targets get `kv_locality_boost`), at most
//! `max_per_call` per run and `budget` per sliding `window`. (The lab's sort key put the most
//! important first, contradicting its own comment; this follows the comment.)
//! Scores in the decision log: the scores (higher wins; ties go to the lowest id).

use std::collections::VecDeque;

use super::{ClusterView, DecodingSeq, InstanceId, Migration, RouteError, RoutingPolicy, candidates};
use crate::request::Request;
use crate::spec::TelemetryPolicySpec;
use crate::time::{SimDuration, SimTime};

// Score weights from the lab's default_scoring_fn.
const PREFILL_W_TTFT: f64 = 1.5;
const PREFILL_W_HIT: f64 = 0.5;
const PREFILL_W_MEM: f64 = 1.0;
const PREFILL_W_QUEUE: f64 = 0.5;
const DECODE_W_SPEED: f64 = 1.5;
const DECODE_W_MEM: f64 = 0.5;
const DECODE_W_QUEUE: f64 = 1.0;
// Below this, a cost penalty divisor would blow scores up (the lab clamps at 1e-6 too).
const MIN_COST_DIVISOR: f64 = 1e-6;

#[derive(Clone, Copy, Debug, Default)]
struct Ewma(Option<f64>);

impl Ewma {
    fn update(&mut self, alpha: f64, x: f64) {
        self.0 = Some(match self.0 {
            None => x,
            Some(v) => alpha * x + (1.0 - alpha) * v,
        });
    }
    fn get_or(self, default: f64) -> f64 {
        self.0.unwrap_or(default)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Smoothed {
    ttft_s: Ewma,
    tpot_s: Ewma,
    queue: Ewma,
    free: Ewma,
    hit: Ewma,
}

/// The lab's router; see the module documentation for the scores.
#[derive(Clone, Debug)]
pub struct TelemetryRouter {
    spec: TelemetryPolicySpec,
    per_instance: Vec<Smoothed>,
    scores: Vec<(InstanceId, f64)>,
    migrations: VecDeque<SimTime>,
}

impl TelemetryRouter {
    /// A router with the given parameters.
    pub fn new(spec: TelemetryPolicySpec) -> Self {
        TelemetryRouter { spec, per_instance: Vec::new(), scores: Vec::new(), migrations: VecDeque::new() }
    }

    fn observe(&mut self, view: &ClusterView, candidates: &[InstanceId]) {
        if self.per_instance.len() < view.instances.len() {
            self.per_instance.resize(view.instances.len(), Smoothed::default());
        }
        let a = self.spec.ewma_alpha;
        for &id in candidates {
            let iv = view.get(id);
            let s = &mut self.per_instance[id.index()];
            s.queue.update(a, f64::from(iv.assigned));
            s.free.update(a, iv.kv_free_fraction());
            s.hit.update(a, iv.prefix_hit_rate);
        }
    }

    fn queue_term(&self, s: &Smoothed) -> f64 {
        self.spec.queue_urgency / (1.0 + s.queue.get_or(0.0))
    }

    /// Prefill score of `id` (higher is better), from the current EWMAs.
    pub fn prefill_score(&self, id: InstanceId) -> f64 {
        let s = self.per_instance.get(id.index()).copied().unwrap_or_default();
        PREFILL_W_TTFT / (1.0 + s.ttft_s.get_or(0.0))
            + PREFILL_W_HIT * s.hit.get_or(0.0)
            + PREFILL_W_MEM * s.free.get_or(1.0)
            + PREFILL_W_QUEUE * self.queue_term(&s)
    }

    fn speed(&self, i: InstanceId) -> Option<f64> {
        self.per_instance.get(i.index()).and_then(|s| s.tpot_s.0).map(|t| 1.0 / t.max(1e-9))
    }

    /// The fastest decode speed (1 / TPOT) measured among `candidates`, 0 when none is.
    pub fn fastest(&self, candidates: &[InstanceId]) -> f64 {
        candidates.iter().filter_map(|&c| self.speed(c)).fold(0.0, f64::max)
    }

    /// Decode score of `id` (higher is better), its speed relative to `fastest` (from
    /// [`TelemetryRouter::fastest`] over the candidates, computed once per decision).
    pub fn decode_score(&self, view: &ClusterView, fastest: f64, id: InstanceId, kv_local: bool) -> f64 {
        // An instance never measured is assumed as fast as the fastest, so it gets tried.
        let speed_norm = match self.speed(id) {
            Some(v) if fastest > 0.0 => v / fastest,
            _ => 1.0,
        };
        let s = self.per_instance.get(id.index()).copied().unwrap_or_default();
        let mut score = DECODE_W_SPEED * speed_norm + DECODE_W_MEM * s.free.get_or(1.0) + DECODE_W_QUEUE * self.queue_term(&s);
        if kv_local {
            score += self.spec.kv_locality_boost;
        }
        if self.spec.decode_cost_penalty > 0.0 {
            score /= view.get(id).hourly_cost.powf(self.spec.decode_cost_penalty).max(MIN_COST_DIVISOR);
        }
        score
    }
}

/// The highest score (ties: the lowest id); `candidates` is not empty.
fn argmax(candidates: &[InstanceId], scores: &mut Vec<(InstanceId, f64)>, mut score: impl FnMut(InstanceId) -> f64) -> InstanceId {
    scores.clear();
    let mut best = candidates[0];
    let mut best_score = f64::NEG_INFINITY;
    for &c in candidates {
        let s = score(c);
        scores.push((c, s));
        if s > best_score {
            best = c;
            best_score = s;
        }
    }
    best
}

impl RoutingPolicy for TelemetryRouter {
    fn name(&self) -> &'static str {
        "telemetry"
    }

    fn route_prefill(&mut self, view: &ClusterView, _req: &Request) -> Result<InstanceId, RouteError> {
        let c = candidates(view.prefill_candidates(), "prefill")?;
        self.observe(view, c);
        let mut scores = std::mem::take(&mut self.scores);
        let best = argmax(c, &mut scores, |id| self.prefill_score(id));
        self.scores = scores;
        Ok(best)
    }

    fn route_decode(&mut self, view: &ClusterView, _req: &Request, from: Option<InstanceId>) -> Result<InstanceId, RouteError> {
        let c = candidates(view.decode_candidates(), "decode")?;
        self.observe(view, c);
        let fastest = self.fastest(c);
        let mut scores = std::mem::take(&mut self.scores);
        let best = argmax(c, &mut scores, |id| self.decode_score(view, fastest, id, Some(id) == from));
        self.scores = scores;
        Ok(best)
    }

    fn last_scores(&self) -> &[(InstanceId, f64)] {
        &self.scores
    }

    fn migration_interval(&self) -> Option<SimDuration> {
        self.spec.migration.then_some(self.spec.migration_interval)
    }

    fn plan_migrations(&mut self, view: &ClusterView, decoding: &[DecodingSeq], now: SimTime) -> Vec<Migration> {
        let c = view.decode_candidates();
        if c.len() < 2 {
            return Vec::new();
        }
        self.observe(view, c);
        let fastest = self.fastest(c);
        let scores: Vec<(InstanceId, f64)> = c.iter().map(|&i| (i, self.decode_score(view, fastest, i, false))).collect();
        let best = scores.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
        let worst = scores.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
        if best - worst < self.spec.min_score_gap {
            return Vec::new();
        }
        while self.migrations.front().is_some_and(|&t| t + self.spec.window <= now) {
            self.migrations.pop_front();
        }
        let mut budget = (self.spec.budget as usize).saturating_sub(self.migrations.len()).min(self.spec.max_per_call as usize);
        let mut order = scores.clone();
        // Lowest score first; ties by id for determinism.
        order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let mut out = Vec::new();
        // Sequences grouped by instance once, in the planner's order within each instance:
        // O(decoding · log decoding) per call, not per source.
        let mut by_instance: Vec<&DecodingSeq> = decoding.iter().collect();
        by_instance.sort_by(|a, b| {
            a.instance
                .cmp(&b.instance)
                .then(b.priority.cmp(&a.priority))
                .then(b.tokens_remaining.cmp(&a.tokens_remaining))
                .then(a.request.cmp(&b.request))
        });
        for &(src, _) in &order {
            if budget == 0 {
                break;
            }
            // The best target is the same for every sequence of `src`: the instance holding
            // their KV is `src` itself, so the locality boost only ever keeps them there.
            let dst = scores
                .iter()
                .map(|&(i, s)| (i, s + if i == src { self.spec.kv_locality_boost } else { 0.0 }))
                .fold((src, f64::NEG_INFINITY), |acc, (i, s)| if s > acc.1 { (i, s) } else { acc })
                .0;
            if dst == src {
                continue;
            }
            let start = by_instance.partition_point(|d| d.instance < src);
            let end = by_instance.partition_point(|d| d.instance <= src);
            for &seq in by_instance[start..end].iter().take(budget) {
                out.push(Migration { request: seq.request, from: src, to: dst });
                self.migrations.push_back(now);
            }
            budget -= (end - start).min(budget);
        }
        out
    }

    fn on_first_token(&mut self, instance: InstanceId, ttft: SimDuration) {
        if self.per_instance.len() <= instance.index() {
            self.per_instance.resize(instance.index() + 1, Smoothed::default());
        }
        self.per_instance[instance.index()].ttft_s.update(self.spec.ewma_alpha, ttft.as_secs_f64());
    }

    fn on_request_complete(&mut self, instance: InstanceId, tpot: Option<SimDuration>) {
        if let Some(t) = tpot {
            if self.per_instance.len() <= instance.index() {
                self.per_instance.resize(instance.index() + 1, Smoothed::default());
            }
            self.per_instance[instance.index()].tpot_s.update(self.spec.ewma_alpha, t.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::view::tests::{request, view};
    use crate::spec::Role;

    fn ms(x: u64) -> SimDuration {
        SimDuration::from_millis(x)
    }

    #[test]
    fn prefill_prefers_low_ttft_then_short_queue() {
        let mut v = view(&[Role::Prefill, Role::Prefill, Role::Decode]);
        let mut r = TelemetryRouter::new(TelemetryPolicySpec::default());
        // Equal everything: the lowest id wins.
        assert_eq!(r.route_prefill(&v, &request()).unwrap(), InstanceId(0));
        // Instance 0 reports a slow first token: 1.5/(1+1.0) < 1.5/(1+0.1).
        r.on_first_token(InstanceId(0), ms(1000));
        r.on_first_token(InstanceId(1), ms(100));
        assert_eq!(r.route_prefill(&v, &request()).unwrap(), InstanceId(1));
        // A long exact queue on 1 outweighs its TTFT edge once smoothed in.
        v.instances[1].assigned = 40;
        for _ in 0..10 {
            r.observe(&v, &[InstanceId(0), InstanceId(1)]);
        }
        // 0: 0.75 + 1 + 0.5/(1+0) = 2.25; 1: 1.364 + 1 + 0.5/41 = 2.376 -> still 1.
        assert_eq!(r.route_prefill(&v, &request()).unwrap(), InstanceId(1));
        let s0 = r.prefill_score(InstanceId(0));
        let s1 = r.prefill_score(InstanceId(1));
        assert!((s0 - 2.25).abs() < 1e-9, "{s0}");
        assert!(s1 > s0);
    }

    #[test]
    fn decode_prefers_faster_and_cost_penalty_prefers_cheaper() {
        let mut v = view(&[Role::Prefill, Role::Decode, Role::Decode]);
        v.instances[1].hourly_cost = 7.0;
        v.instances[2].hourly_cost = 3.0;
        let mut r = TelemetryRouter::new(TelemetryPolicySpec::default());
        r.on_request_complete(InstanceId(1), Some(ms(10)));
        r.on_request_complete(InstanceId(2), Some(ms(20)));
        // Speed 1.0 vs 0.5: the flagship wins without a cost penalty.
        assert_eq!(r.route_decode(&v, &request(), Some(InstanceId(0))).unwrap(), InstanceId(1));
        let mut cheap = TelemetryRouter::new(TelemetryPolicySpec { decode_cost_penalty: 1.0, ..Default::default() });
        cheap.on_request_complete(InstanceId(1), Some(ms(10)));
        cheap.on_request_complete(InstanceId(2), Some(ms(20)));
        // 3.0/7 = 0.43 < (0.75+0.5+1)/3 = 0.75: the mid-tier GPU wins per dollar.
        assert_eq!(cheap.route_decode(&v, &request(), Some(InstanceId(0))).unwrap(), InstanceId(2));
        let fastest = cheap.fastest(&[InstanceId(1), InstanceId(2)]);
        assert!((cheap.decode_score(&v, fastest, InstanceId(1), false) - 3.0 / 7.0).abs() < 1e-9);
        assert!((cheap.decode_score(&v, fastest, InstanceId(2), false) - 0.75).abs() < 1e-9);
    }

    fn decoding(n: u64, on: u32, priority: u8, remaining: u32) -> DecodingSeq {
        DecodingSeq { request: crate::request::RequestId(n), instance: InstanceId(on), priority, tokens_remaining: remaining }
    }

    fn imbalanced() -> (ClusterView, TelemetryRouter) {
        // Decode 1 is slow (TPOT 30 ms) and busy, decode 2 fast (10 ms) and idle:
        // scores 1.5/3 + 0.5 + 1/(1+4) = 1.2 and 1.5 + 0.5 + 1 = 3.0, a gap of 1.8.
        let mut v = view(&[Role::Prefill, Role::Decode, Role::Decode]);
        v.instances[1].assigned = 4;
        let mut r = TelemetryRouter::new(TelemetryPolicySpec { ewma_alpha: 1.0, ..Default::default() });
        r.on_request_complete(InstanceId(1), Some(ms(30)));
        r.on_request_complete(InstanceId(2), Some(ms(10)));
        (v, r)
    }

    #[test]
    fn migration_moves_least_important_longest_first_within_max_per_call() {
        let (v, mut r) = imbalanced();
        let seqs = [decoding(1, 1, 0, 500), decoding(2, 1, 2, 10), decoding(3, 1, 2, 300), decoding(4, 1, 1, 900), decoding(5, 2, 2, 999)];
        let m = r.plan_migrations(&v, &seqs, SimTime(0));
        // max_per_call = 2: priority 2 first, the longer (300 tokens left) before the shorter.
        let moved: Vec<(u64, u32, u32)> = m.iter().map(|m| (m.request.0, m.from.0, m.to.0)).collect();
        assert_eq!(moved, vec![(3, 1, 2), (2, 1, 2)]);
    }

    #[test]
    fn migration_respects_the_min_gap_and_the_sliding_budget() {
        let (v, mut r) = imbalanced();
        let seqs: Vec<DecodingSeq> = (0..100).map(|n| decoding(n, 1, 1, 100)).collect();
        // Budget 32 per second, 2 per call: 16 calls in the same second use it up.
        let mut total = 0;
        for k in 0..20 {
            total += r.plan_migrations(&v, &seqs, SimTime(k * 10_000_000)).len();
        }
        assert_eq!(total, 32, "budget exhausted within the window");
        // One second after the first migrations, budget frees up again.
        assert_eq!(r.plan_migrations(&v, &seqs, SimTime(1_000_000_000)).len(), 2);
        // A gap below min_score_gap moves nothing.
        let mut strict = TelemetryRouter::new(TelemetryPolicySpec { ewma_alpha: 1.0, min_score_gap: 2.0, ..Default::default() });
        strict.on_request_complete(InstanceId(1), Some(ms(30)));
        strict.on_request_complete(InstanceId(2), Some(ms(10)));
        assert!(strict.plan_migrations(&v, &seqs, SimTime(0)).is_empty());
    }

    #[test]
    fn kv_locality_boost_breaks_a_tie() {
        let v = view(&[Role::Prefill, Role::Decode, Role::Decode]);
        let mut r = TelemetryRouter::new(TelemetryPolicySpec::default());
        assert_eq!(r.route_decode(&v, &request(), Some(InstanceId(2))).unwrap(), InstanceId(2));
    }
}
