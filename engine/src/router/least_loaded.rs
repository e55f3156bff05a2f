//! `least_loaded`: join the shortest queue, by the engines' gauges (waiting + running, as
//! `/metrics` reports them), so stale telemetry misleads it as it would a real router.
//! Scores in the decision log: the load (lower wins; ties go to the lowest id).

use super::{ClusterView, InstanceId, RouteError, RoutingPolicy, argmin, candidates};
use crate::request::Request;

/// Picks the candidate with the fewest waiting + running requests.
#[derive(Debug, Default)]
pub struct LeastLoaded {
    scores: Vec<(InstanceId, f64)>,
}

impl RoutingPolicy for LeastLoaded {
    fn name(&self) -> &'static str {
        "least_loaded"
    }
    fn route_prefill(&mut self, view: &ClusterView, _req: &Request) -> Result<InstanceId, RouteError> {
        Ok(argmin(candidates(view.prefill_candidates(), "prefill")?, &mut self.scores, |i| f64::from(view.get(i).load())))
    }
    fn route_decode(&mut self, view: &ClusterView, _req: &Request, _from: Option<InstanceId>) -> Result<InstanceId, RouteError> {
        Ok(argmin(candidates(view.decode_candidates(), "decode")?, &mut self.scores, |i| f64::from(view.get(i).load())))
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
    fn picks_the_shortest_queue_lowest_id_on_ties() {
        let mut v = view(&[Role::Mixed; 3]);
        let mut p = LeastLoaded::default();
        assert_eq!(p.route_prefill(&v, &request()).unwrap(), InstanceId(0));
        v.instances[0].running = 3;
        v.instances[1].waiting = 1;
        v.instances[1].running = 1;
        v.instances[2].waiting = 2;
        assert_eq!(p.route_prefill(&v, &request()).unwrap(), InstanceId(1));
        assert_eq!(p.last_scores(), &[(InstanceId(0), 3.0), (InstanceId(1), 2.0), (InstanceId(2), 2.0)]);
        // The router's own counters do not matter to this policy: it reads gauges.
        v.instances[1].assigned = 50;
        assert_eq!(p.route_prefill(&v, &request()).unwrap(), InstanceId(1));
    }
}
