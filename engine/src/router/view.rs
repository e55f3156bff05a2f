//! What a router may read of the cluster.

use crate::spec::Role;
use crate::time::SimTime;
use crate::units::Blocks;

pub use crate::ids::InstanceId;

/// One instance as a router sees it. Gauges are what the engine's `/metrics` would show,
/// refreshed every `telemetry.interval` (exact when it is 0); `assigned` and
/// `queued_prefill_tokens` are the router's own counts and always exact.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceView {
    /// Identifier.
    pub id: InstanceId,
    /// Index of its pool.
    pub pool: usize,
    /// Its role.
    pub role: Role,
    /// Dollars per hour for the whole instance (all its GPUs).
    pub hourly_cost: f64,
    /// Tokens per KV block.
    pub block_size: u32,
    /// Gauge: requests waiting to be scheduled (including KV transfers queued for blocks).
    pub waiting: u32,
    /// Gauge: requests running.
    pub running: u32,
    /// Exact: prompt tokens the router sent here to prefill (less the prefix it expected
    /// cached) whose first token has not come back yet. No engine publishes this, so the
    /// router keeps it, as Dynamo's router does.
    pub queued_prefill_tokens: u64,
    /// Gauge: free KV blocks (free or evictable).
    pub kv_free_blocks: Blocks,
    /// KV blocks in all.
    pub kv_total_blocks: Blocks,
    /// Gauge: share of prompt tokens served from the prefix cache so far.
    pub prefix_hit_rate: f64,
    /// Exact: requests the router sent here that have not left yet.
    pub assigned: u32,
}

impl InstanceView {
    /// Share of KV blocks free, in [0, 1].
    pub fn kv_free_fraction(&self) -> f64 {
        if self.kv_total_blocks == Blocks::ZERO {
            0.0
        } else {
            f64::from(self.kv_free_blocks.get()) / f64::from(self.kv_total_blocks.get())
        }
    }
    /// KV blocks in use.
    pub fn kv_used_blocks(&self) -> Blocks {
        self.kv_total_blocks.saturating_sub(self.kv_free_blocks)
    }
    /// Gauge load: waiting + running requests.
    pub fn load(&self) -> u32 {
        self.waiting + self.running
    }
}

/// The cluster as the router sees it.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// When this view is read.
    pub now: SimTime,
    /// Every instance, indexed by [`InstanceId`].
    pub instances: Vec<InstanceView>,
    /// For the request being routed: tokens of its prompt already cached on each instance
    /// (filled only for policies that ask, see `RoutingPolicy::wants_prefix_overlap`).
    pub cached_prefix_tokens: Vec<u32>,
    prefill: Vec<InstanceId>,
    decode: Vec<InstanceId>,
}

impl ClusterView {
    /// A view over `instances`; candidate lists follow their roles.
    pub fn new(instances: Vec<InstanceView>) -> Self {
        let prefill = instances.iter().filter(|i| i.role.takes_prefill()).map(|i| i.id).collect();
        let decode = instances.iter().filter(|i| i.role == Role::Decode).map(|i| i.id).collect();
        let n = instances.len();
        ClusterView { now: SimTime::ZERO, instances, cached_prefix_tokens: vec![0; n], prefill, decode }
    }
    /// Instances where a new request may prefill, in id order.
    pub fn prefill_candidates(&self) -> &[InstanceId] {
        &self.prefill
    }
    /// Puts `ids` in place of the prefill candidates and returns the ones they replace
    /// (the router host narrows the candidates to one pool for a split by prompt length).
    pub(crate) fn swap_prefill_candidates(&mut self, ids: Vec<InstanceId>) -> Vec<InstanceId> {
        std::mem::replace(&mut self.prefill, ids)
    }
    /// Replaces both candidate lists (the router host leaves out instances taken out of
    /// routing).
    pub(crate) fn set_candidates(&mut self, prefill: Vec<InstanceId>, decode: Vec<InstanceId>) {
        self.prefill = prefill;
        self.decode = decode;
    }
    /// Instances of decode pools, in id order.
    pub fn decode_candidates(&self) -> &[InstanceId] {
        &self.decode
    }
    /// One instance.
    pub fn get(&self, id: InstanceId) -> &InstanceView {
        &self.instances[id.index()]
    }
    /// Cached prompt tokens of the request being routed on `id`.
    pub fn cached_tokens(&self, id: InstanceId) -> u32 {
        self.cached_prefix_tokens.get(id.index()).copied().unwrap_or(0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::request::Request;

    pub(crate) fn view(roles: &[Role]) -> ClusterView {
        ClusterView::new(
            roles
                .iter()
                .enumerate()
                .map(|(i, &role)| InstanceView {
                    id: InstanceId(i as u32),
                    pool: usize::from(role == Role::Decode),
                    role,
                    hourly_cost: 1.0,
                    block_size: 16,
                    waiting: 0,
                    running: 0,
                    queued_prefill_tokens: 0,
                    kv_free_blocks: Blocks(100),
                    kv_total_blocks: Blocks(100),
                    prefix_hit_rate: 0.0,
                    assigned: 0,
                })
                .collect(),
        )
    }

    pub(crate) fn request() -> Request {
        Request { priority: 1, ..Request::plain(0, SimTime::ZERO, 100, 10) }
    }
}
