//! The cluster: instances grouped into pools, and the links that carry KV between pools.

use super::link::Link;
use crate::instance::Instance;
use crate::kv::BlockHash;
use crate::router::{InstanceId, PrefixProbe};
use crate::spec::Role;
use crate::time::SimDuration;

/// What the router's policies probe of the instances' caches: only made of a fleet every
/// instance of which is caught up.
pub(crate) struct Probe<'a>(&'a [Instance]);

impl PrefixProbe for Probe<'_> {
    fn held_blocks(&self, id: InstanceId, hashes: &[BlockHash]) -> u32 {
        self.0[id.index()].kv.probe(hashes.iter().copied()).0.get()
    }
}

/// Proof that instance `index` is caught up to the event in process and takes no more steps
/// lazily (its fast-forward run, if it had one, ended): it may be read and changed. Only
/// fast-forward makes one ([`Simulation::touch`](super::Simulation), `end_run`); it is not
/// `Clone`, and [`Simulation::on_try_step`](super::Simulation), which may start a new run,
/// takes it by value.
#[derive(Debug)]
pub(crate) struct Held {
    index: usize,
}

impl Held {
    /// Only `fastforward` vouches (a test checks it): after catching the instance up and
    /// ending its run.
    pub(super) fn vouch(index: usize) -> Held {
        Held { index }
    }
    /// The instance's index.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// Proof that every instance is caught up to the event in process: each may be read (the
/// router's view, caches, per-sequence state of the running sets). Made by `catch_up_all`.
#[derive(Debug)]
pub(crate) struct CaughtUp(());

impl CaughtUp {
    /// Only `fastforward` vouches (a test checks it).
    pub(super) fn vouch() -> CaughtUp {
        CaughtUp(())
    }
}

/// The instances. Fast-forward leaves some of them behind the event in process (their
/// steady steps are applied when something reads or changes them), so an instance is reached
/// only with a proof that it is up to date — [`Held`] to read and change one, [`CaughtUp`] to
/// read every one — or for its configuration, which no step changes. Fast-forward itself
/// reads and applies the lazy steps through [`Fleet::lazy`] and [`Fleet::lazy_mut`].
#[derive(Debug)]
pub(crate) struct Fleet(Vec<Instance>);

impl Fleet {
    pub fn new(instances: Vec<Instance>) -> Fleet {
        Fleet(instances)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Instance `h`, up to date.
    pub fn get(&self, h: &Held) -> &Instance {
        &self.0[h.index]
    }
    /// Instance `h`, up to date, to change.
    pub fn get_mut(&mut self, h: &Held) -> &mut Instance {
        &mut self.0[h.index]
    }
    /// Two different instances to change at once.
    pub fn pair_mut(&mut self, a: &Held, b: &Held) -> (&mut Instance, &mut Instance) {
        assert_ne!(a.index, b.index, "two different instances");
        if a.index < b.index {
            let (lo, hi) = self.0.split_at_mut(b.index);
            (&mut lo[a.index], &mut hi[0])
        } else {
            let (lo, hi) = self.0.split_at_mut(a.index);
            (&mut hi[0], &mut lo[b.index])
        }
    }
    /// Every instance, caught up.
    pub fn all(&self, _: &CaughtUp) -> &[Instance] {
        &self.0
    }
    /// Instance `i`, caught up with every other.
    pub fn read(&self, _: &CaughtUp, i: usize) -> &Instance {
        &self.0[i]
    }
    /// Every instance to change, at the end of the run (no more steps) or while the
    /// simulation is built (none yet).
    pub fn all_mut(&mut self, _: &CaughtUp) -> &mut [Instance] {
        &mut self.0
    }
    /// The router's cache probe over every instance.
    pub fn probe(&self, _: &CaughtUp) -> Probe<'_> {
        Probe(&self.0)
    }
    /// Configuration, which no step changes: the role of instance `i`.
    pub fn role(&self, i: usize) -> Role {
        self.0[i].role
    }
    /// Configuration: the pool of instance `i`.
    pub fn pool(&self, i: usize) -> usize {
        self.0[i].pool
    }
    /// Configuration: whether `tokens` of KV can ever fit instance `i`'s cache.
    pub fn fits(&self, i: usize, tokens: crate::units::Tokens) -> bool {
        let kv = &self.0[i].kv;
        kv.blocks_for(tokens) <= kv.capacity()
    }
    /// Instance `i` as it is, possibly behind the event in process: for fast-forward only.
    pub(super) fn lazy(&self, i: usize) -> &Instance {
        &self.0[i]
    }
    /// Instance `i` as it is, to apply its lazy steps: for fast-forward only.
    pub(super) fn lazy_mut(&mut self, i: usize) -> &mut Instance {
        &mut self.0[i]
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
    pub instances: Fleet,
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
