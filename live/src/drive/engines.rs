//! What the loop keeps per engine: the gauges it scraped, the statistics they give (queue
//! depth over time, utilisation, KV peak, counters over the run), and the router's own record
//! of which prompt blocks the engine caches.

use std::collections::{BTreeMap, HashMap};

use simctl_engine::kv::{BlockHash, KvEvent};
use simctl_engine::record::InstanceStats;
use simctl_engine::request::Request;
use simctl_engine::router::{Gauges, InstanceId, RouterHost, prompt_block_hashes};
use simctl_engine::spec::ValidSpec;
use simctl_engine::time::{SimDuration, SimTime};
use simctl_engine::units::Blocks;

use crate::metrics::EngineMetrics;

/// One instance: `(pool index, pool name, instance name, hardware name, tp, $/h)`.
pub(super) type Instance = (usize, String, String, String, u32, f64);

/// The instances of `spec` in id order: `(pool index, pool name, instance name, hardware
/// name, tp, $/h)`.
pub(super) fn instances(spec: &ValidSpec) -> Vec<Instance> {
    let mut out = Vec::new();
    for (pi, p) in spec.pools.iter().enumerate() {
        for i in &p.instances {
            let hw = &spec.hardware[i.hardware];
            out.push((pi, p.name.clone(), i.name.clone(), hw.name.clone(), i.tp, hw.cost_per_hour * f64::from(i.tp)));
        }
    }
    out
}

/// What the loop keeps per engine from its scrapes.
#[derive(Default, Clone)]
pub(super) struct EngineAcc {
    pub(super) block_size: u32,
    pub(super) blocks: u64,
    pub(super) base: Counters,
    pub(super) last: Counters,
    pub(super) depth: u32,
    pub(super) depth_at: SimTime,
    pub(super) depth_integral: f64,
    pub(super) depth_max: u32,
    pub(super) busy: SimDuration,
    pub(super) kv_peak: f64,
    pub(super) running: u32,
    // The router's own record of what this engine caches: hash -> last use, and use -> hash.
    pub(super) cached: HashMap<BlockHash, u64>,
    pub(super) by_use: BTreeMap<u64, BlockHash>,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Counters {
    pub(super) hits: Option<f64>,
    pub(super) queries: Option<f64>,
    pub(super) preemptions: Option<f64>,
    pub(super) steps: Option<f64>,
}

impl Counters {
    pub(super) fn of(m: &EngineMetrics) -> Self {
        Counters {
            hits: m.prefix_cache_hits(),
            queries: m.prefix_cache_queries(),
            preemptions: m.value("vllm:num_preemptions_total"),
            steps: m.value("vllm:iteration_tokens_total_count"),
        }
    }
}

pub(super) fn delta(now: Option<f64>, base: Option<f64>) -> Option<f64> {
    Some((now? - base.unwrap_or(0.0)).max(0.0))
}

/// The router's record that `inst` caches the full prompt blocks of `req` now, evicting the
/// least recently used beyond the engine's blocks.
pub(super) fn remember_prompt(host: &mut RouterHost, a: &mut EngineAcc, inst: InstanceId, req: &Request, clock: &mut u64) {
    for h in prompt_block_hashes(req, a.block_size) {
        *clock += 1;
        match a.cached.insert(h, *clock) {
            Some(old) => {
                a.by_use.remove(&old);
            }
            None => host.kv_event(inst, KvEvent::Stored(h)),
        }
        a.by_use.insert(*clock, h);
    }
    while a.cached.len() as u64 > a.blocks.max(1) {
        let Some((_, h)) = a.by_use.pop_first() else { break };
        a.cached.remove(&h);
        host.kv_event(inst, KvEvent::Removed(h));
    }
}

pub(super) fn close_depth(a: &mut EngineAcc, at: SimTime) {
    let dt = (at - a.depth_at).as_secs_f64();
    a.depth_integral += f64::from(a.depth) * dt;
    if a.running > 0 {
        a.busy += at - a.depth_at;
    }
    a.depth_at = at;
}

/// Gauges of one scrape, and the engine's statistics brought up to `at`.
pub(super) fn gauges(a: &mut EngineAcc, m: &EngineMetrics, at: SimTime) -> Gauges {
    close_depth(a, at);
    let running = m.requests_running().unwrap_or(0.0).max(0.0) as u32;
    let waiting = m.requests_waiting().unwrap_or(0.0).max(0.0) as u32;
    let usage = m.kv_cache_usage().unwrap_or(0.0).clamp(0.0, 1.0);
    a.depth = running + waiting;
    a.running = running;
    a.depth_max = a.depth_max.max(a.depth);
    a.kv_peak = a.kv_peak.max(usage);
    a.last = Counters::of(m);
    let hit_rate = match (delta(a.last.hits, a.base.hits), delta(a.last.queries, a.base.queries)) {
        (Some(h), Some(q)) if q > 0.0 => h / q,
        _ => 0.0,
    };
    let free = ((1.0 - usage) * a.blocks as f64).round() as u32;
    Gauges { waiting, running, kv_free_blocks: Blocks(free), prefix_hit_rate: hit_rate }
}

/// Each engine's statistics over the run ending at `end`, in the simulator's shape: queue
/// depth and utilisation from the scraped gauges, steps, preemptions and prefix hits from the
/// engine's counters.
pub(super) fn instance_stats(spec: &ValidSpec, insts: &[Instance], accs: &mut [EngineAcc], end: SimTime) -> Vec<InstanceStats> {
    let secs = end.as_secs_f64().max(1e-9);
    insts
        .iter()
        .enumerate()
        .map(|(k, (pool, pool_name, name, hw, tp, cost))| {
            let a = &mut accs[k];
            close_depth(a, end);
            let hit = match (delta(a.last.hits, a.base.hits), delta(a.last.queries, a.base.queries)) {
                (Some(h), Some(q)) if q > 0.0 => h / q,
                _ => 0.0,
            };
            InstanceStats {
                name: name.clone(),
                pool: pool_name.clone(),
                role: spec.pools[*pool].role,
                hardware: hw.clone(),
                gpus: *tp,
                hourly_cost: *cost,
                queue_depth_mean: a.depth_integral / secs,
                queue_depth_max: a.depth_max,
                utilization: a.busy.as_secs_f64() / secs,
                steps: delta(a.last.steps, a.base.steps).map_or(0, |s| s.round() as u64),
                preemptions: delta(a.last.preemptions, a.base.preemptions).map_or(0, |p| p.round() as u64),
                kv_capacity_blocks: a.blocks,
                kv_peak_usage: a.kv_peak,
                prefix_hit_rate: hit,
                migrations_out: 0,
                migrations_in: 0,
            }
        })
        .collect()
}
