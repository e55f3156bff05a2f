//! `kv_aware`: Dynamo's KV router. For each candidate
//! `cost = prefill_load_scale × max(request blocks + queued prefill blocks − cached blocks, 0) + active KV blocks`,
//! where the cached blocks are the request's prefix already in that instance's cache.
//!
//! The lowest cost wins at `temperature = 0`; otherwise a candidate is drawn with probability
//! proportional to exp(−normalised cost / temperature) from the policy's seeded stream, costs
//! normalised to [0, 1] over the candidates. Scores in the decision log: the costs.

use rand::RngExt;

use super::{ClusterView, InstanceId, RoutingPolicy, argmin};
use crate::request::Request;
use crate::rng::StreamRng;
use crate::spec::KvAwarePolicySpec;

/// Dynamo-style KV-overlap-aware routing.
#[derive(Debug)]
pub struct KvAware {
    spec: KvAwarePolicySpec,
    rng: StreamRng,
    scores: Vec<(InstanceId, f64)>,
}

impl KvAware {
    /// A router with the given parameters drawing from `rng` when `temperature > 0`.
    pub fn new(spec: KvAwarePolicySpec, rng: StreamRng) -> Self {
        KvAware { spec, rng, scores: Vec::new() }
    }

    /// The cost of sending `req` to `id`.
    pub fn cost(&self, view: &ClusterView, req: &Request, id: InstanceId) -> f64 {
        let iv = view.get(id);
        let bs = u64::from(iv.block_size.max(1));
        let request_blocks = u64::from(req.prompt_tokens).div_ceil(bs);
        let queued_blocks = iv.queued_prefill_tokens.div_ceil(bs);
        let cached_blocks = u64::from(view.cached_tokens(id)) / bs;
        let prefill = (request_blocks + queued_blocks).saturating_sub(cached_blocks);
        self.spec.prefill_load_scale * prefill as f64 + iv.kv_used_blocks() as f64
    }

    fn choose(&mut self, view: &ClusterView, req: &Request, c: &[InstanceId]) -> InstanceId {
        let costs: Vec<f64> = c.iter().map(|&i| self.cost(view, req, i)).collect();
        let best = argmin(c, &mut self.scores, |i| costs[c.iter().position(|&x| x == i).unwrap_or(0)]);
        if self.spec.temperature <= 0.0 || c.len() == 1 {
            return best;
        }
        let (lo, hi) = costs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let weights: Vec<f64> = costs.iter().map(|&x| (-(x - lo) / span / self.spec.temperature).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut u = self.rng.random::<f64>() * total;
        for (k, w) in weights.iter().enumerate() {
            if u < *w {
                return c[k];
            }
            u -= w;
        }
        c[c.len() - 1]
    }
}

impl RoutingPolicy for KvAware {
    fn name(&self) -> &'static str {
        "kv_aware"
    }
    fn route_prefill(&mut self, view: &ClusterView, req: &Request) -> InstanceId {
        self.choose(view, req, view.prefill_candidates())
    }
    fn route_decode(&mut self, view: &ClusterView, req: &Request, _from: Option<InstanceId>) -> InstanceId {
        self.choose(view, req, view.decode_candidates())
    }
    fn wants_prefix_overlap(&self) -> bool {
        true
    }
    fn last_scores(&self) -> &[(InstanceId, f64)] {
        &self.scores
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::RunSeed;
    use crate::router::view::tests::{request, view};
    use crate::spec::Role;

    fn setup() -> ClusterView {
        let mut v = view(&[Role::Mixed; 3]);
        // Request: 100 tokens = 7 blocks of 16.
        // 0: nothing cached, idle.            cost = 7 + 0          = 7
        // 1: 96 tokens cached (6 blocks), 40 blocks active.   cost = 1 + 40 = 41
        // 2: 96 cached, 2 active, 160 queued prefill tokens.  cost = (7 + 10 − 6) + 2 = 13
        v.cached_prefix_tokens = vec![0, 96, 96];
        v.instances[1].kv_free_blocks = 60;
        v.instances[2].kv_free_blocks = 98;
        v.instances[2].queued_prefill_tokens = 160;
        v
    }

    #[test]
    fn lowest_cost_wins_at_zero_temperature() {
        let v = setup();
        let mut p = KvAware::new(KvAwarePolicySpec::default(), RunSeed(1).stream("router"));
        assert_eq!(p.route_prefill(&v, &request()), InstanceId(0));
        assert_eq!(p.last_scores(), &[(InstanceId(0), 7.0), (InstanceId(1), 41.0), (InstanceId(2), 13.0)]);
        // Weighting prefill 10x makes the cached instance with little decode load the best:
        // 0: 70, 1: 10 + 40 = 50, 2: 110 + 2 = 112.
        let mut heavy = KvAware::new(KvAwarePolicySpec { prefill_load_scale: 10.0, temperature: 0.0 }, RunSeed(1).stream("router"));
        assert_eq!(heavy.route_prefill(&v, &request()), InstanceId(1));
    }

    #[test]
    fn temperature_samples_by_softmax_from_the_seeded_stream() {
        let v = setup();
        let mut counts = [0u32; 3];
        let mut p = KvAware::new(KvAwarePolicySpec { prefill_load_scale: 1.0, temperature: 0.5 }, RunSeed(5).stream("router"));
        for _ in 0..3000 {
            counts[p.route_prefill(&v, &request()).index()] += 1;
        }
        // Normalised costs 0, 1, 0.176: weights 1, e^-2 = 0.135, e^-0.353 = 0.703 (sum 1.838).
        let expect = [1.0 / 1.838, 0.135 / 1.838, 0.703 / 1.838];
        for k in 0..3 {
            assert!((f64::from(counts[k]) / 3000.0 - expect[k]).abs() < 0.03, "{counts:?}");
        }
        // Same seed, same sequence of choices.
        let mut a = KvAware::new(KvAwarePolicySpec { prefill_load_scale: 1.0, temperature: 0.5 }, RunSeed(5).stream("router"));
        let mut b = KvAware::new(KvAwarePolicySpec { prefill_load_scale: 1.0, temperature: 0.5 }, RunSeed(5).stream("router"));
        let sa: Vec<_> = (0..50).map(|_| a.route_prefill(&v, &request())).collect();
        let sb: Vec<_> = (0..50).map(|_| b.route_prefill(&v, &request())).collect();
        assert_eq!(sa, sb);
    }
}
