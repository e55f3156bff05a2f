//! `power_of_two`: two distinct random candidates from the policy's seeded stream; the one
//! with fewer waiting + running requests (gauges) wins, the lower id on a tie.

use rand::RngExt;

use super::{ClusterView, InstanceId, RouteError, RoutingPolicy, candidates};
use crate::request::Request;
use crate::rng::StreamRng;

/// The power of two choices.
#[derive(Debug)]
pub struct PowerOfTwo {
    rng: StreamRng,
    scores: Vec<(InstanceId, f64)>,
}

impl PowerOfTwo {
    /// A policy drawing from `rng`.
    pub fn new(rng: StreamRng) -> Self {
        PowerOfTwo { rng, scores: Vec::new() }
    }

    fn pick(&mut self, view: &ClusterView, c: &[InstanceId], phase: &'static str) -> Result<InstanceId, RouteError> {
        self.scores.clear();
        let c = candidates(c, phase)?;
        if c.len() == 1 {
            return Ok(c[0]);
        }
        let i = self.rng.random_range(0..c.len());
        let mut j = self.rng.random_range(0..c.len() - 1);
        if j >= i {
            j += 1;
        }
        let (a, b) = (c[i.min(j)], c[i.max(j)]);
        let (la, lb) = (view.get(a).load(), view.get(b).load());
        self.scores.extend([(a, f64::from(la)), (b, f64::from(lb))]);
        Ok(if lb < la { b } else { a })
    }
}

impl RoutingPolicy for PowerOfTwo {
    fn name(&self) -> &'static str {
        "power_of_two"
    }
    fn route_prefill(&mut self, view: &ClusterView, _req: &Request) -> Result<InstanceId, RouteError> {
        self.pick(view, view.prefill_candidates(), "prefill")
    }
    fn route_decode(&mut self, view: &ClusterView, _req: &Request, _from: Option<InstanceId>) -> Result<InstanceId, RouteError> {
        self.pick(view, view.decode_candidates(), "decode")
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

    #[test]
    fn the_less_loaded_of_two_distinct_samples_wins() {
        let mut v = view(&[Role::Mixed; 4]);
        for (i, load) in [5, 1, 9, 3].into_iter().enumerate() {
            v.instances[i].running = load;
        }
        let mut p = PowerOfTwo::new(RunSeed(11).stream("router"));
        for _ in 0..200 {
            let got = p.route_prefill(&v, &request()).unwrap();
            let s = p.last_scores().to_vec();
            assert_eq!(s.len(), 2);
            assert_ne!(s[0].0, s[1].0, "two distinct candidates");
            let best = if s[1].1 < s[0].1 { s[1].0 } else { s[0].0 };
            assert_eq!(got, best);
            // The most loaded instance (2) can only win against... nobody: it never wins.
            assert_ne!(got, InstanceId(2));
        }
        // One candidate: no draw needed.
        let single = view(&[Role::Prefill, Role::Decode]);
        assert_eq!(p.route_decode(&single, &request(), None), Ok(InstanceId(1)));
    }
}
