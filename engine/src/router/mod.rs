//! Routing policies, shared by the simulator and live mode.
//!
//! A policy is a `&mut self` state machine: it reads a [`ClusterView`] (what a router would
//! see of each instance) and a request, and returns the instance to use. It knows nothing of
//! engine internals, so live mode can drive the same objects against real endpoints.

mod round_robin;
mod telemetry;
mod view;

pub use round_robin::RoundRobin;
pub use telemetry::TelemetryRouter;
pub use view::{ClusterView, InstanceId, InstanceView};

use crate::request::Request;
use crate::spec::PolicySpec;
use crate::time::SimDuration;

/// A routing policy. Hooks other than the two decisions default to no-ops.
pub trait RoutingPolicy: Send {
    /// Policy name as written in scenarios.
    fn name(&self) -> &'static str;

    /// Where a new request prefills: one of `view.prefill_candidates()`.
    fn route_prefill(&mut self, view: &ClusterView, req: &Request) -> InstanceId;

    /// Where a request decodes: one of `view.decode_candidates()`. Only called when prefill
    /// and decode pools are split: after its prefill (`prefilled_on` is set), or on arrival
    /// when decode pools may prefill short prompts locally (conditional disaggregation).
    fn route_decode(&mut self, view: &ClusterView, req: &Request, prefilled_on: Option<InstanceId>) -> InstanceId;

    /// A first token left `instance` after `ttft`.
    fn on_first_token(&mut self, _instance: InstanceId, _ttft: SimDuration) {}

    /// A request finished decoding on `instance`; `tpot` is its time per output token when
    /// it produced more than one token.
    fn on_request_complete(&mut self, _instance: InstanceId, _tpot: Option<SimDuration>) {}
}

/// Builds the policy a spec names.
pub fn build(spec: &PolicySpec) -> Box<dyn RoutingPolicy> {
    match spec {
        PolicySpec::RoundRobin => Box::new(RoundRobin::default()),
        PolicySpec::Telemetry(t) => Box::new(TelemetryRouter::new(*t)),
    }
}
