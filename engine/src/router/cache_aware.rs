//! `cache_aware`: SGLang's cache-aware router. When load is imbalanced (`max − min >
//! balance_abs` and `max > balance_rel × min`, load = requests the router has in flight on
//! each instance, as SGLang's router counts them), the least loaded instance; otherwise the
//! instance with the longest cached prefix of the request if its match ratio exceeds
//! `cache_threshold`, else the least loaded. Defaults from SGLang's router documentation:
//! `cache_threshold` 0.5, `balance_abs_threshold` 32, `balance_rel_threshold` 1.0001.
//! Scores in the decision log: the match ratio of each candidate.

use super::{ClusterView, InstanceId, RouteError, RoutingPolicy, candidates};
use crate::request::Request;
use crate::spec::CacheAwarePolicySpec;

/// SGLang-style cache-aware routing.
#[derive(Debug)]
pub struct CacheAware {
    spec: CacheAwarePolicySpec,
    scores: Vec<(InstanceId, f64)>,
}

impl CacheAware {
    /// A router with the given parameters.
    pub fn new(spec: CacheAwarePolicySpec) -> Self {
        CacheAware { spec, scores: Vec::new() }
    }

    fn choose(&mut self, view: &ClusterView, req: &Request, c: &[InstanceId], phase: &'static str) -> Result<InstanceId, RouteError> {
        let c = candidates(c, phase)?;
        let load = |i: InstanceId| f64::from(view.get(i).assigned);
        let least = *c.iter().min_by(|&&a, &&b| load(a).total_cmp(&load(b)).then(a.cmp(&b))).expect("candidates");
        let (lo, hi) = c.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &i| (a.min(load(i)), b.max(load(i))));
        self.scores.clear();
        let prompt = f64::from(req.prompt_tokens.get().max(1));
        for &i in c {
            self.scores.push((i, f64::from(view.cached_tokens(i)) / prompt));
        }
        if hi - lo > self.spec.balance_abs && hi > self.spec.balance_rel * lo {
            return Ok(least);
        }
        // Longest match; ties go to the less loaded, then the lower id.
        let best = *c
            .iter()
            .max_by(|&&a, &&b| view.cached_tokens(a).cmp(&view.cached_tokens(b)).then(load(b).total_cmp(&load(a))).then(b.cmp(&a)))
            .expect("candidates");
        Ok(if f64::from(view.cached_tokens(best)) / prompt > self.spec.cache_threshold { best } else { least })
    }
}

impl RoutingPolicy for CacheAware {
    fn name(&self) -> &'static str {
        "cache_aware"
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
    use crate::router::view::tests::{request, view};
    use crate::spec::Role;

    #[test]
    fn cache_match_above_threshold_wins_when_balanced() {
        let mut v = view(&[Role::Mixed; 3]);
        let mut p = CacheAware::new(CacheAwarePolicySpec::default());
        v.instances[0].assigned = 5;
        v.instances[1].assigned = 9;
        v.instances[2].assigned = 7;
        // Request of 100 tokens; instance 1 holds 64 of them (0.64 > 0.5).
        v.cached_prefix_tokens = vec![16, 64, 32];
        assert_eq!(p.route_prefill(&v, &request()).unwrap(), InstanceId(1));
        assert_eq!(p.last_scores()[1], (InstanceId(1), 0.64));
        // Below the threshold (0.48): the least loaded instead.
        v.cached_prefix_tokens = vec![16, 48, 32];
        assert_eq!(p.route_prefill(&v, &request()).unwrap(), InstanceId(0));
    }

    #[test]
    fn imbalance_overrides_the_cache() {
        let mut v = view(&[Role::Mixed; 3]);
        let mut p = CacheAware::new(CacheAwarePolicySpec::default());
        v.cached_prefix_tokens = vec![0, 96, 0];
        v.instances[0].assigned = 10;
        v.instances[1].assigned = 43; // 43 − 10 = 33 > 32 and 43 > 1.0001 × 10
        v.instances[2].assigned = 12;
        assert_eq!(p.route_prefill(&v, &request()).unwrap(), InstanceId(0));
        // 42 − 10 = 32 is not above 32: the cache wins again.
        v.instances[1].assigned = 42;
        assert_eq!(p.route_prefill(&v, &request()).unwrap(), InstanceId(1));
        // A relative threshold of 5 keeps the cache even at 43 vs 10.
        let mut lax = CacheAware::new(CacheAwarePolicySpec { balance_rel: 5.0, ..Default::default() });
        v.instances[1].assigned = 43;
        assert_eq!(lax.route_prefill(&v, &request()).unwrap(), InstanceId(1));
    }
}
