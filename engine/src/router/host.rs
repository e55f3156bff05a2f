//! The router host: what runs around the policies, in the simulator and in live mode alike.
//!
//! It owns the [`ClusterView`] the policies read and keeps it as a real router would: engine
//! gauges (`/metrics`: waiting, running, free KV, prefix hit rate) as last published — every
//! change when the telemetry interval is zero, else whatever the last refresh saw — and the
//! router's own exact counters (requests in flight per instance, and the prefill tokens it
//! has sent there whose first token has not come back, which no engine publishes). It keeps
//! a [`PrefixIndex`] fed by KV stored/evicted events, fills each request's per-instance
//! overlap for the policies that ask, writes the decision log, and forwards request outcomes
//! to the policies' hooks.
//!
//! A decision costs O(candidates + prompt blocks) here (see [`PrefixIndex`]); what the policy
//! does with the view is the policy's.

use super::{ClusterView, DecodingSeq, InstanceId, Migration, PrefixIndex, RouteError, RoutingPolicy};
use crate::kv::{BlockHash, KvEvent};
use crate::record::{Decision, DecisionKind, Recorder};
use crate::request::{Request, RequestId};
use crate::rng::RunSeed;
use crate::spec::{RouterSpec, TelemetrySpec};
use crate::time::{SimDuration, SimTime};
use crate::units::{Blocks, Tokens};

/// Fleets up to this many instances are probed directly for prefix overlaps (cheaper than
/// keeping an index up to date with every KV event); larger ones use the prefix index.
/// Measured on the Mooncake replays (8 instances): the index costs 30% more than probing.
pub const PROBE_MAX_INSTANCES: usize = 64;

/// Where the simulator's own caches can be asked for overlaps directly.
pub trait PrefixProbe {
    /// Leading blocks of `hashes` (chained, of `id`'s block size) that instance `id` holds.
    fn held_blocks(&self, id: InstanceId, hashes: &[BlockHash]) -> u32;
}

/// An instance's gauges as its engine publishes them (vLLM's `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Gauges {
    /// `vllm:num_requests_waiting` (here including KV transfers queued for blocks).
    pub waiting: u32,
    /// `vllm:num_requests_running`.
    pub running: u32,
    /// Free KV blocks (free or evictable): `(1 − vllm:kv_cache_usage_perc) × blocks`.
    pub kv_free_blocks: Blocks,
    /// Prefix cache hits / queries so far.
    pub prefix_hit_rate: f64,
}

/// The policies, the view they read and the router's own bookkeeping.
pub struct RouterHost {
    prefill: Box<dyn RoutingPolicy>,
    decode: Option<Box<dyn RoutingPolicy>>,
    view: ClusterView,
    interval: SimDuration,
    /// One index per block size among the instances (hashes depend on the block size).
    indexes: Vec<(u32, PrefixIndex)>,
    wants_overlap: bool,
    /// Instances whose `cached_prefix_tokens` the last query set, to clear before the next.
    touched: Vec<u32>,
    /// The request `cached_prefix_tokens` was last filled for.
    filled_for: Option<RequestId>,
    hashes: Vec<BlockHash>,
    /// A split by prompt length: `(at, long candidates, short candidates)`; the list not in
    /// use waits here while the view holds the other.
    split: Option<(u32, Vec<InstanceId>, Vec<InstanceId>)>,
    /// Every candidate list as built, before instances taken out of routing are left out:
    /// `(prefill, decode, split long, split short)`.
    all: (Vec<InstanceId>, Vec<InstanceId>, Vec<InstanceId>, Vec<InstanceId>),
    /// Instances taken out of routing ([`RouterHost::set_routable`]).
    out: Vec<bool>,
}

impl std::fmt::Debug for RouterHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterHost").field("policy", &self.policy_name()).field("instances", &self.view.instances.len()).finish()
    }
}

impl RouterHost {
    /// A host for `instances` (in id order) running the policies of `router`, with gauges as
    /// fresh as `telemetry` says; `seed` feeds the policies that draw random numbers.
    /// Prefix overlaps come from an index fed by [`RouterHost::kv_event`] for fleets of
    /// more than [`PROBE_MAX_INSTANCES`], from a [`PrefixProbe`] of the caches otherwise
    /// (see [`RouterHost::use_index`]).
    pub fn new(router: &RouterSpec, telemetry: &TelemetrySpec, view: ClusterView, seed: RunSeed) -> Self {
        let prefill = super::build(&router.prefill, seed, crate::rng::stream::ROUTER);
        let decode = router.decode.as_ref().map(|d| super::build(d, seed, "router.decode"));
        let wants_overlap = prefill.wants_prefix_overlap() || decode.as_ref().is_some_and(|d| d.wants_prefix_overlap());
        let large = view.instances.len() > PROBE_MAX_INSTANCES;
        let mut host = RouterHost {
            prefill,
            decode,
            view,
            interval: telemetry.interval,
            indexes: Vec::new(),
            wants_overlap,
            touched: Vec::new(),
            filled_for: None,
            hashes: Vec::new(),
            split: None,
            all: Default::default(),
            out: Vec::new(),
        };
        if let Some(sp) = &router.split {
            let of = |pool: usize| -> Vec<InstanceId> {
                host.view.prefill_candidates().iter().copied().filter(|i| host.view.get(*i).pool == pool).collect()
            };
            let (long, short) = (of(sp.long_pool), of(sp.short_pool));
            host.all.2 = long.clone();
            host.all.3 = short.clone();
            host.split = Some((sp.at, long, short));
        }
        host.all.0 = host.view.prefill_candidates().to_vec();
        host.all.1 = host.view.decode_candidates().to_vec();
        host.out = vec![false; host.view.instances.len()];
        if wants_overlap && large {
            host.use_index();
        }
        host
    }

    /// Keeps a prefix index fed by KV events (what live mode does, and large simulated
    /// fleets), instead of probing the caches; call before any event.
    pub fn use_index(&mut self) {
        if !self.wants_overlap || !self.indexes.is_empty() {
            return;
        }
        let n = self.view.instances.len();
        for iv in &self.view.instances {
            if !self.indexes.iter().any(|(bs, _)| *bs == iv.block_size) {
                self.indexes.push((iv.block_size, PrefixIndex::new(n)));
            }
        }
    }

    /// Takes an instance out of routing (`false`: an engine that is down in live mode) or puts
    /// it back (`true`): the policies see only routable instances among their candidates, so
    /// none of them can pick one that is out.
    pub fn set_routable(&mut self, id: InstanceId, routable: bool) {
        let Some(o) = self.out.get_mut(id.index()) else { return };
        if *o != routable {
            return;
        }
        *o = !routable;
        let out = &self.out;
        let keep = |ids: &[InstanceId]| -> Vec<InstanceId> { ids.iter().copied().filter(|i| !out[i.index()]).collect() };
        let (prefill, decode) = (keep(&self.all.0), keep(&self.all.1));
        self.view.set_candidates(prefill, decode);
        if let Some((_, long, short)) = self.split.as_mut() {
            *long = keep(&self.all.2);
            *short = keep(&self.all.3);
        }
    }

    /// Whether an instance is routable (see [`RouterHost::set_routable`]).
    pub fn is_routable(&self, id: InstanceId) -> bool {
        !self.out.get(id.index()).copied().unwrap_or(true)
    }

    /// What the policies read.
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// The policy name for reports: `telemetry`, or `kv_aware+least_loaded`.
    pub fn policy_name(&self) -> String {
        match &self.decode {
            None => self.prefill.name().to_string(),
            Some(d) => format!("{}+{}", self.prefill.name(), d.name()),
        }
    }

    /// How often gauges are refreshed; zero: every change is seen at once.
    pub fn telemetry_interval(&self) -> SimDuration {
        self.interval
    }

    /// Whether gauges are exact (published on every change rather than on refreshes).
    pub fn gauges_exact(&self) -> bool {
        self.interval == SimDuration::ZERO
    }

    /// Whether a policy reads prefix overlaps, so the caches' KV events must be forwarded
    /// with [`RouterHost::kv_event`].
    pub fn wants_kv_events(&self) -> bool {
        !self.indexes.is_empty()
    }

    /// The engine of `id` published `g`.
    pub fn publish(&mut self, id: InstanceId, g: Gauges) {
        let v = &mut self.view.instances[id.index()];
        v.waiting = g.waiting;
        v.running = g.running;
        v.kv_free_blocks = g.kv_free_blocks;
        v.prefix_hit_rate = g.prefix_hit_rate;
    }

    /// A KV cache event of instance `id`.
    pub fn kv_event(&mut self, id: InstanceId, ev: KvEvent) {
        let bs = self.view.instances[id.index()].block_size;
        let Some((_, ix)) = self.indexes.iter_mut().find(|(b, _)| *b == bs) else { return };
        match ev {
            KvEvent::Stored(h) => ix.stored(id.0, h),
            KvEvent::Removed(h) => ix.removed(id.0, h),
        }
    }

    /// The request whose overlaps `view().cached_prefix_tokens` holds now.
    pub fn overlap_filled_for(&self) -> Option<RequestId> {
        self.filled_for
    }

    /// Leading prompt blocks of `req` that `id` holds, by the index (0 without one).
    pub fn cached_blocks(&mut self, id: InstanceId, req: &Request) -> Blocks {
        let bs = self.view.instances[id.index()].block_size;
        let Some(k) = self.indexes.iter().position(|(b, _)| *b == bs) else { return Blocks::ZERO };
        self.hashes.clear();
        self.hashes.extend(crate::seq::block_hashes(req, max_hit_blocks(req, bs), bs));
        let mut found = 0;
        self.indexes[k].1.overlaps(&self.hashes, |i, n| {
            if i == id.0 {
                found = n;
            }
        });
        Blocks(found)
    }

    fn fill_overlap(&mut self, req: &Request, decode: bool, probe: Option<&dyn PrefixProbe>) {
        for &i in &self.touched {
            self.view.cached_prefix_tokens[i as usize] = 0;
        }
        self.touched.clear();
        self.filled_for = Some(req.id);
        let (view, touched, hashes) = (&mut self.view, &mut self.touched, &mut self.hashes);
        if self.indexes.is_empty() {
            // A small fleet: ask each candidate's cache.
            let Some(probe) = probe else { return };
            fn candidates(v: &ClusterView, decode: bool) -> &[InstanceId] {
                if decode { v.decode_candidates() } else { v.prefill_candidates() }
            }
            let mut hashed_for = 0;
            for k in 0..candidates(view, decode).len() {
                let id = candidates(view, decode)[k];
                let bs = view.instances[id.index()].block_size;
                if bs != hashed_for {
                    hashes.clear();
                    hashes.extend(crate::seq::block_hashes(req, max_hit_blocks(req, bs), bs));
                    hashed_for = bs;
                }
                let n = probe.held_blocks(id, hashes);
                if n > 0 {
                    view.cached_prefix_tokens[id.index()] = n * bs;
                    touched.push(id.0);
                }
            }
            return;
        }
        for (bs, ix) in &mut self.indexes {
            let bs = *bs;
            hashes.clear();
            hashes.extend(crate::seq::block_hashes(req, max_hit_blocks(req, bs), bs));
            ix.overlaps(hashes, |i, n| {
                view.cached_prefix_tokens[i as usize] = n * bs;
                touched.push(i);
            });
        }
    }

    /// Where `req` prefills (or runs, in mixed pools); logged when `rec` wants decisions.
    ///
    /// `probe` answers overlap queries when the host keeps no index (small simulated fleets).
    pub fn route_prefill<R: Recorder>(
        &mut self,
        now: SimTime,
        req: &Request,
        probe: Option<&dyn PrefixProbe>,
        rec: &mut R,
    ) -> Result<InstanceId, RouteError> {
        self.view.now = now;
        // A split by prompt length: only the pool of this prompt's length is a candidate.
        let narrowed = match self.split.as_mut() {
            Some((at, long, short)) => {
                let pool = if req.prompt_tokens.get() >= *at { long } else { short };
                let all = self.view.swap_prefill_candidates(std::mem::take(pool));
                Some(all)
            }
            None => None,
        };
        if self.prefill.wants_prefix_overlap() {
            self.fill_overlap(req, false, probe);
        }
        let routed = self.prefill.route_prefill(&self.view, req);
        if let Some(all) = narrowed {
            let (at, long, short) = self.split.as_mut().expect("narrowed by the split");
            let pool = if req.prompt_tokens.get() >= *at { long } else { short };
            *pool = self.view.swap_prefill_candidates(all);
        }
        let p = routed?;
        debug_assert!(self.view.get(p).role.takes_prefill(), "policy returned a non-candidate");
        if rec.wants_decisions() {
            rec.on_decision(&Decision {
                at: now,
                request: req.id,
                kind: DecisionKind::Prefill,
                policy: self.prefill.name(),
                chosen: p,
                scores: self.prefill.last_scores(),
            });
        }
        Ok(p)
    }

    /// Where `req` decodes (`prefilled_on` set after a prefill elsewhere; unset on arrival
    /// under conditional disaggregation); logged when `rec` wants decisions.
    pub fn route_decode<R: Recorder>(
        &mut self,
        now: SimTime,
        req: &Request,
        prefilled_on: Option<InstanceId>,
        probe: Option<&dyn PrefixProbe>,
        rec: &mut R,
    ) -> Result<InstanceId, RouteError> {
        self.view.now = now;
        if self.decode_policy().wants_prefix_overlap() {
            self.fill_overlap(req, true, probe);
        }
        let policy = self.decode.as_mut().unwrap_or(&mut self.prefill);
        let d = policy.route_decode(&self.view, req, prefilled_on)?;
        debug_assert!(self.view.get(d).role == crate::spec::Role::Decode, "policy returned a non-candidate");
        if rec.wants_decisions() {
            rec.on_decision(&Decision {
                at: now,
                request: req.id,
                kind: DecisionKind::Decode,
                policy: policy.name(),
                chosen: d,
                scores: policy.last_scores(),
            });
        }
        Ok(d)
    }

    fn decode_policy(&self) -> &dyn RoutingPolicy {
        self.decode.as_deref().unwrap_or(&*self.prefill)
    }

    /// A request was sent to `id`. When it prefills there, the router counts its prompt,
    /// less the prefix the index says `id` holds, as queued prefill work until its first
    /// token comes back; returns what it counted, to give back to [`RouterHost::prefill_done`].
    pub fn dispatched(&mut self, id: InstanceId, req: &Request, prefills_here: bool) -> Tokens {
        let v = &mut self.view.instances[id.index()];
        v.assigned += 1;
        if !prefills_here {
            return Tokens::ZERO;
        }
        let cached = if self.filled_for == Some(req.id) { self.view.cached_prefix_tokens[id.index()] } else { 0 };
        let charged = req.prompt_tokens.saturating_sub(Tokens(cached));
        self.view.instances[id.index()].queued_prefill_tokens += charged.as_u64();
        charged
    }

    /// The first token of a request prefilled on `id` came back.
    pub fn prefill_done(&mut self, id: InstanceId, charged: Tokens) {
        let v = &mut self.view.instances[id.index()];
        v.queued_prefill_tokens -= charged.as_u64();
    }

    /// A request sent to `id` left it (finished, moved on, failed or cancelled).
    pub fn left(&mut self, id: InstanceId) {
        self.view.instances[id.index()].assigned -= 1;
    }

    fn policies(&mut self) -> impl Iterator<Item = &mut Box<dyn RoutingPolicy>> {
        std::iter::once(&mut self.prefill).chain(self.decode.as_mut())
    }

    /// A first token left `id` after `ttft`.
    pub fn on_first_token(&mut self, id: InstanceId, ttft: SimDuration) {
        for p in self.policies() {
            p.on_first_token(id, ttft);
        }
    }

    /// A request finished on `id`.
    pub fn on_request_complete(&mut self, id: InstanceId, tpot: Option<SimDuration>) {
        for p in self.policies() {
            p.on_request_complete(id, tpot);
        }
    }

    /// A request failed on `id` (rejected, an HTTP error, a timeout, a dropped stream).
    pub fn on_request_failed(&mut self, id: InstanceId) {
        for p in self.policies() {
            p.on_request_failed(id);
        }
    }

    /// A request on `id` was cancelled.
    pub fn on_request_cancelled(&mut self, id: InstanceId) {
        for p in self.policies() {
            p.on_request_cancelled(id);
        }
    }

    /// How often the migration planner runs, if the decode policy migrates.
    pub fn migration_interval(&self) -> Option<SimDuration> {
        if self.view.decode_candidates().is_empty() { None } else { self.decode_policy().migration_interval() }
    }

    /// The decode policy's planned moves of `decoding` sequences.
    pub fn plan_migrations(&mut self, now: SimTime, decoding: &[DecodingSeq]) -> Vec<Migration> {
        self.view.now = now;
        let policy = self.decode.as_mut().unwrap_or(&mut self.prefill);
        policy.plan_migrations(&self.view, decoding, now)
    }

    /// Logs the planned move of `request` to `to`.
    pub fn log_migration<R: Recorder>(&self, now: SimTime, request: RequestId, to: InstanceId, rec: &mut R) {
        if rec.wants_decisions() {
            rec.on_decision(&Decision {
                at: now,
                request,
                kind: DecisionKind::Migration,
                policy: self.decode_policy().name(),
                chosen: to,
                scores: &[],
            });
        }
    }

    /// A request moved from `from` to `to` (a migration carried out).
    pub fn moved(&mut self, from: InstanceId, to: InstanceId) {
        self.left(from);
        self.view.instances[to.index()].assigned += 1;
    }
}

/// Prompt blocks that can hit: vLLM always computes the last prompt token, so at most
/// (prompt − 1) / block size full blocks come from the cache.
pub fn max_hit_blocks(req: &Request, block_size: u32) -> u32 {
    req.prompt_tokens.get().saturating_sub(1) / block_size.max(1)
}

/// Hashes of the full prompt blocks of `req` at `block_size`, chained as the simulator's
/// caches and the prefix index chain them: what an engine with that block size caches once
/// it has prefilled the prompt (live mode's router keeps its own index from these).
pub fn prompt_block_hashes(req: &Request, block_size: u32) -> Vec<BlockHash> {
    let bs = block_size.max(1);
    crate::seq::block_hashes(req, req.prompt_tokens.get() / bs, bs).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NullRecorder;
    use crate::router::view::tests::{request, view};
    use crate::spec::{PolicySpec, PromptSplit, Role};

    fn host(roles: &[Role], split: Option<PromptSplit>) -> RouterHost {
        let router = RouterSpec { split, ..RouterSpec::single(PolicySpec::RoundRobin) };
        RouterHost::new(&router, &TelemetrySpec { interval: SimDuration::ZERO }, view(roles), RunSeed(0))
    }

    #[test]
    fn an_instance_out_of_routing_is_never_picked_and_comes_back_when_put_back() {
        let mut h = host(&[Role::Mixed, Role::Mixed, Role::Mixed], None);
        let req = request();
        let pick = |h: &mut RouterHost| h.route_prefill(SimTime::ZERO, &req, None, &mut NullRecorder).map(|i| i.0);
        h.set_routable(InstanceId(1), false);
        assert!(!h.is_routable(InstanceId(1)) && h.is_routable(InstanceId(0)));
        let picks: Vec<_> = (0..6).map(|_| pick(&mut h).unwrap()).collect();
        assert!(picks.iter().all(|&i| i != 1), "{picks:?}");
        assert!(picks.contains(&0) && picks.contains(&2), "{picks:?}");
        h.set_routable(InstanceId(0), false);
        h.set_routable(InstanceId(2), false);
        assert_eq!(pick(&mut h), Err(RouteError::NoCandidate("prefill")), "every instance out: no route");
        h.set_routable(InstanceId(1), true);
        assert_eq!((0..3).map(|_| pick(&mut h).unwrap()).collect::<Vec<_>>(), vec![1, 1, 1]);
    }

    #[test]
    fn a_split_keeps_each_pool_to_its_routable_instances() {
        // view(): Prefill instances are pool 0, Decode instances pool 1; long prompts (>= 50)
        // go to pool 0 here, short ones to pool 1.
        let split = PromptSplit { at: 50, long_pool: 0, short_pool: 1 };
        let mut h = host(&[Role::Prefill, Role::Prefill, Role::Decode], Some(split));
        let long = request(); // 100 tokens
        h.set_routable(InstanceId(0), false);
        for _ in 0..4 {
            assert_eq!(h.route_prefill(SimTime::ZERO, &long, None, &mut NullRecorder).unwrap(), InstanceId(1));
        }
        h.set_routable(InstanceId(1), false);
        assert!(h.route_prefill(SimTime::ZERO, &long, None, &mut NullRecorder).is_err(), "the long pool is all out");
        h.set_routable(InstanceId(0), true);
        assert_eq!(h.route_prefill(SimTime::ZERO, &long, None, &mut NullRecorder).unwrap(), InstanceId(0));
    }
}
