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

use super::{ClusterView, InstanceId, RoutingPolicy};
use crate::request::Request;
use crate::spec::TelemetryPolicySpec;
use crate::time::SimDuration;

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
}

impl TelemetryRouter {
    /// A router with the given parameters.
    pub fn new(spec: TelemetryPolicySpec) -> Self {
        TelemetryRouter { spec, per_instance: Vec::new() }
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

    /// Decode score of `id` among `candidates` (higher is better).
    pub fn decode_score(&self, view: &ClusterView, candidates: &[InstanceId], id: InstanceId, kv_local: bool) -> f64 {
        let speed = |i: InstanceId| self.per_instance.get(i.index()).and_then(|s| s.tpot_s.0).map(|t| 1.0 / t.max(1e-9));
        let fastest = candidates.iter().filter_map(|&c| speed(c)).fold(0.0, f64::max);
        // An instance never measured is assumed as fast as the fastest, so it gets tried.
        let speed_norm = match speed(id) {
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

fn argmax(candidates: &[InstanceId], mut score: impl FnMut(InstanceId) -> f64) -> InstanceId {
    let mut best = candidates[0];
    let mut best_score = f64::NEG_INFINITY;
    for &c in candidates {
        let s = score(c);
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

    fn route_prefill(&mut self, view: &ClusterView, _req: &Request) -> InstanceId {
        let c = view.prefill_candidates();
        self.observe(view, c);
        argmax(c, |id| self.prefill_score(id))
    }

    fn route_decode(&mut self, view: &ClusterView, _req: &Request, from: Option<InstanceId>) -> InstanceId {
        let c = view.decode_candidates();
        self.observe(view, c);
        argmax(c, |id| self.decode_score(view, c, id, Some(id) == from))
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
        assert_eq!(r.route_prefill(&v, &request()), InstanceId(0));
        // Instance 0 reports a slow first token: 1.5/(1+1.0) < 1.5/(1+0.1).
        r.on_first_token(InstanceId(0), ms(1000));
        r.on_first_token(InstanceId(1), ms(100));
        assert_eq!(r.route_prefill(&v, &request()), InstanceId(1));
        // A long exact queue on 1 outweighs its TTFT edge once smoothed in.
        v.instances[1].assigned = 40;
        for _ in 0..10 {
            r.observe(&v, &[InstanceId(0), InstanceId(1)]);
        }
        // 0: 0.75 + 1 + 0.5/(1+0) = 2.25; 1: 1.364 + 1 + 0.5/41 = 2.376 -> still 1.
        assert_eq!(r.route_prefill(&v, &request()), InstanceId(1));
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
        assert_eq!(r.route_decode(&v, &request(), Some(InstanceId(0))), InstanceId(1));
        let mut cheap = TelemetryRouter::new(TelemetryPolicySpec { decode_cost_penalty: 1.0, ..Default::default() });
        cheap.on_request_complete(InstanceId(1), Some(ms(10)));
        cheap.on_request_complete(InstanceId(2), Some(ms(20)));
        // 3.0/7 = 0.43 < (0.75+0.5+1)/3 = 0.75: the mid-tier GPU wins per dollar.
        assert_eq!(cheap.route_decode(&v, &request(), Some(InstanceId(0))), InstanceId(2));
        let c = [InstanceId(1), InstanceId(2)];
        assert!((cheap.decode_score(&v, &c, InstanceId(1), false) - 3.0 / 7.0).abs() < 1e-9);
        assert!((cheap.decode_score(&v, &c, InstanceId(2), false) - 0.75).abs() < 1e-9);
    }

    #[test]
    fn kv_locality_boost_breaks_a_tie() {
        let v = view(&[Role::Prefill, Role::Decode, Role::Decode]);
        let mut r = TelemetryRouter::new(TelemetryPolicySpec::default());
        assert_eq!(r.route_decode(&v, &request(), Some(InstanceId(2))), InstanceId(2));
    }
}
