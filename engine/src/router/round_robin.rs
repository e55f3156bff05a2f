//! `round_robin`: the baseline. Rotates over candidates, separately for prefill and decode.

use super::{ClusterView, InstanceId, RouteError, RoutingPolicy, candidates};
use crate::request::Request;

/// Rotates over the candidates of each phase in id order.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    next_prefill: usize,
    next_decode: usize,
}

impl RoutingPolicy for RoundRobin {
    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn route_prefill(&mut self, view: &ClusterView, _req: &Request) -> Result<InstanceId, RouteError> {
        let c = candidates(view.prefill_candidates(), "prefill")?;
        let id = c[self.next_prefill % c.len()];
        self.next_prefill = (self.next_prefill + 1) % c.len();
        Ok(id)
    }

    fn route_decode(&mut self, view: &ClusterView, _req: &Request, _from: Option<InstanceId>) -> Result<InstanceId, RouteError> {
        let c = candidates(view.decode_candidates(), "decode")?;
        let id = c[self.next_decode % c.len()];
        self.next_decode = (self.next_decode + 1) % c.len();
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::view::tests::view;
    use crate::spec::Role;

    #[test]
    fn rotates_within_each_pool() {
        let v = view(&[Role::Prefill, Role::Prefill, Role::Decode, Role::Decode, Role::Decode]);
        let req = crate::router::view::tests::request();
        let mut rr = RoundRobin::default();
        let p: Vec<u32> = (0..4).map(|_| rr.route_prefill(&v, &req).unwrap().0).collect();
        let d: Vec<u32> = (0..4).map(|_| rr.route_decode(&v, &req, Some(InstanceId(0))).unwrap().0).collect();
        assert_eq!(p, vec![0, 1, 0, 1]);
        assert_eq!(d, vec![2, 3, 4, 2]);
        // No decode pool: an error, not an index out of bounds.
        let mixed = view(&[Role::Mixed]);
        assert_eq!(rr.route_decode(&mixed, &req, None), Err(RouteError::NoCandidate("decode")));
    }
}
