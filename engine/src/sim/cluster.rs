//! The cluster: instances grouped into pools, and the links that carry KV between pools.

use super::link::Link;
use crate::instance::Instance;
use crate::kv::BlockHash;
use crate::router::{InstanceId, PrefixProbe};
use crate::spec::Role;
use crate::time::SimDuration;

impl PrefixProbe for Cluster {
    fn held_blocks(&self, id: InstanceId, hashes: &[BlockHash]) -> u32 {
        self.instances[id.index()].kv.probe(hashes.iter().copied()).0.get()
    }
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
    /// Links, and `link_of[from_pool][to_pool]` indexing them.
    pub links: Vec<Link>,
    pub link_of: Vec<Vec<Option<usize>>>,
    /// Decode instances prefill prompts shorter than this locally (per instance; 0: never).
    pub local_prefill_threshold: Vec<u32>,
    /// Whether any decode pool prefills locally (routing then picks the decode side first).
    pub conditional: bool,
    /// KV bytes per token of the served model.
    pub kv_bytes_per_token: u64,
}
