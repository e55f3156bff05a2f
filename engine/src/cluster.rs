//! The cluster: instances grouped into pools, and the links that carry KV between pools.

use crate::instance::Instance;
use crate::spec::Role;
use crate::time::SimDuration;

/// A KV-transfer path between two pools.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Link {
    pub latency: SimDuration,
    pub bandwidth_bytes_s: Option<f64>,
}

/// A named group of instances with one role, and its running queue-depth totals.
#[derive(Debug)]
pub(crate) struct Pool {
    pub name: String,
    pub role: Role,
    pub instances: u32,
    /// Waiting + running requests over the pool's instances now.
    pub depth: u32,
    pub depth_max: u32,
}

/// Everything that serves requests.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// Instances in declaration order (their index is their `InstanceId`).
    pub instances: Vec<Instance>,
    /// Hardware names by hardware index.
    pub hardware_names: Vec<String>,
    /// Per instance: KV-transfer latency into it, overriding the link's.
    pub kv_latency_override: Vec<Option<SimDuration>>,
    /// Pools in declaration order.
    pub pools: Vec<Pool>,
    /// `links[from_pool][to_pool]`.
    pub links: Vec<Vec<Option<Link>>>,
    /// KV bytes per token of the served model.
    pub kv_bytes_per_token: u64,
}
