//! `kv_aware`: Dynamo's KV router. For each candidate
//! `cost = prefill_load_scale × max(request blocks + queued prefill blocks − cached blocks, 0) + active KV blocks`,
//! where the cached blocks are the request's prefix already in that instance's cache (from
//! the router's prefix index), the queued prefill blocks are the router's own count of
//! prompt tokens it sent there whose first token has not come back (as Dynamo's
//! `ActiveSequences` counts them: engines publish no such gauge), and the active blocks the
//! engine's KV usage gauge.
//!
//! The lowest cost wins at `temperature = 0`; otherwise a candidate is drawn with probability
//! proportional to exp(−normalised cost / temperature) from the policy's seeded stream, costs
//! normalised to [0, 1] over the candidates. Scores in the decision log: the costs.

use rand::RngExt;

use super::{ClusterView, InstanceId, RouteError, RoutingPolicy, argmin, candidates};
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
        cost(&self.spec, view, req, id)
    }

    fn choose(&mut self, view: &ClusterView, req: &Request, c: &[InstanceId], phase: &'static str) -> Result<InstanceId, RouteError> {
        let c = candidates(c, phase)?;
        let spec = self.spec;
        let best = argmin(c, &mut self.scores, |i| cost(&spec, view, req, i));
        if self.spec.temperature <= 0.0 || c.len() == 1 {
            return Ok(best);
        }
        // The costs are the scores, in candidate order.
        let (lo, hi) = self.scores.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, x)| (a.min(x), b.max(x)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let weight = |x: f64| (-(x - lo) / span / self.spec.temperature).exp();
        let total: f64 = self.scores.iter().map(|&(_, x)| weight(x)).sum();
        let mut u = self.rng.random::<f64>() * total;
        for &(id, x) in &self.scores {
            let w = weight(x);
            if u < w {
                return Ok(id);
            }
            u -= w;
        }
        Ok(c[c.len() - 1])
    }
}

/// Dynamo's cost of sending `req` to `id` (see the module documentation).
fn cost(spec: &KvAwarePolicySpec, view: &ClusterView, req: &Request, id: InstanceId) -> f64 {
    let iv = view.get(id);
    let bs = u64::from(iv.block_size.max(1));
    let request_blocks = req.prompt_tokens.as_u64().div_ceil(bs);
    let queued_blocks = iv.queued_prefill_tokens.div_ceil(bs);
    let cached_blocks = u64::from(view.cached_tokens(id)) / bs;
    let prefill = (request_blocks + queued_blocks).saturating_sub(cached_blocks);
    spec.prefill_load_scale * prefill as f64 + iv.kv_used_blocks().as_u64() as f64
}

impl RoutingPolicy for KvAware {
    fn name(&self) -> &'static str {
        "kv_aware"
    }
    fn route_prefill(&mut self, view: &ClusterView, req: &Request) -> Result<InstanceId, RouteError> {
        self.choose(view, req, view.prefill_candidates(), "prefill")
    }
    fn route_decode(&mut self, view: &ClusterView, req: &Request, _from: Option<InstanceId>) -> Result<InstanceId, RouteError> {
        self.choose(view, req, view.decode_candidates(), "decode")
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
    use crate::units::Blocks;

    fn setup() -> ClusterView {
        let mut v = view(&[Role::Mixed; 3]);
        // Request: 100 tokens = 7 blocks of 16.
        // 0: nothing cached, idle.            cost = 7 + 0          = 7
        // 1: 96 tokens cached (6 blocks), 40 blocks active.   cost = 1 + 40 = 41
        // 2: 96 cached, 2 active, 160 queued prefill tokens.  cost = (7 + 10 − 6) + 2 = 13
        v.cached_prefix_tokens = vec![0, 96, 96];
        v.instances[1].kv_free_blocks = Blocks(60);
        v.instances[2].kv_free_blocks = Blocks(98);
        v.instances[2].queued_prefill_tokens = 160;
        v
    }

    #[test]
    fn lowest_cost_wins_at_zero_temperature() {
        let v = setup();
        let mut p = KvAware::new(KvAwarePolicySpec::default(), RunSeed(1).stream("router"));
        assert_eq!(p.route_prefill(&v, &request()).unwrap(), InstanceId(0));
        assert_eq!(p.last_scores(), &[(InstanceId(0), 7.0), (InstanceId(1), 41.0), (InstanceId(2), 13.0)]);
        // Weighting prefill 10x makes the cached instance with little decode load the best:
        // 0: 70, 1: 10 + 40 = 50, 2: 110 + 2 = 112.
        let mut heavy = KvAware::new(KvAwarePolicySpec { prefill_load_scale: 10.0, temperature: 0.0 }, RunSeed(1).stream("router"));
        assert_eq!(heavy.route_prefill(&v, &request()).unwrap(), InstanceId(1));
    }

    #[test]
    fn temperature_samples_by_softmax_from_the_seeded_stream() {
        let v = setup();
        let mut counts = [0u32; 3];
        let mut p = KvAware::new(KvAwarePolicySpec { prefill_load_scale: 1.0, temperature: 0.5 }, RunSeed(5).stream("router"));
        for _ in 0..3000 {
            counts[p.route_prefill(&v, &request()).unwrap().index()] += 1;
        }
        // Normalised costs 0, 1, 0.176: weights 1, e^-2 = 0.135, e^-0.353 = 0.703 (sum 1.838).
        let expect = [1.0 / 1.838, 0.135 / 1.838, 0.703 / 1.838];
        for k in 0..3 {
            assert!((f64::from(counts[k]) / 3000.0 - expect[k]).abs() < 0.03, "{counts:?}");
        }
        // Same seed, same sequence of choices.
        let mut a = KvAware::new(KvAwarePolicySpec { prefill_load_scale: 1.0, temperature: 0.5 }, RunSeed(5).stream("router"));
        let mut b = KvAware::new(KvAwarePolicySpec { prefill_load_scale: 1.0, temperature: 0.5 }, RunSeed(5).stream("router"));
        let sa: Vec<_> = (0..50).map(|_| a.route_prefill(&v, &request()).unwrap()).collect();
        let sb: Vec<_> = (0..50).map(|_| b.route_prefill(&v, &request()).unwrap()).collect();
        assert_eq!(sa, sb);
    }
}
