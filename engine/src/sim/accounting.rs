//! Accounting: gauges published to the router, queue depth over time, request records and
//! the run's totals.

use super::Simulation;
use super::cluster::{CaughtUp, Held};
use crate::instance::Instance;
use crate::record::{DepthSeries, InstanceStats, Outcome, PoolStats, Reason, Recorder, RequestRecord, RunTotals};
use crate::router::{Gauges, InstanceId, RouterHost};
use crate::seq::{NO_INSTANCE, Seq, SeqId};
use crate::time::SimTime;
use crate::units::Tokens;

/// What the run counts for its totals.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub first_arrival: Option<SimTime>,
    pub last_departure: Option<SimTime>,
    /// Requests admitted (workload and submitted).
    pub arrived: u64,
    /// Prompts a decode instance prefilled itself (conditional disaggregation).
    pub local_prefills: u64,
    pub migrations: u64,
    pub cancelled: u64,
    /// Each pool's queue depth over time, when asked for.
    pub depth_series: Option<Vec<DepthSeries>>,
}

/// Publishes `inst`'s gauges when the router sees every change.
pub(super) fn publish_gauges(host: &mut RouterHost, inst: &Instance) {
    if host.gauges_exact() {
        host.publish(inst.id, gauges(inst));
    }
}

fn gauges(inst: &Instance) -> Gauges {
    Gauges {
        waiting: (inst.waiting.len() + inst.inbound.len()) as u32,
        running: inst.running.len() as u32,
        kv_free_blocks: inst.kv.free(),
        prefix_hit_rate: inst.prefix_hit_rate(),
    }
}

impl Simulation {
    /// Publishes instance `h`'s gauges when the router sees every change.
    pub(super) fn publish(&mut self, h: &Held) {
        publish_gauges(&mut self.host, self.cluster.instances.get(h));
    }

    /// A telemetry refresh: every instance's gauges as they are now.
    pub(super) fn publish_all(&mut self, all: &CaughtUp) {
        for inst in self.cluster.instances.all(all) {
            self.host.publish(inst.id, gauges(inst));
        }
    }

    /// Queue-depth bookkeeping around a change of an instance's waiting/running lists:
    /// call before the change, and [`Simulation::end_change`] after it.
    pub(super) fn begin_change(&mut self, h: &Held) -> u32 {
        let now = self.now;
        let inst = self.cluster.instances.get_mut(h);
        inst.account(now);
        inst.depth()
    }

    pub(super) fn end_change(&mut self, h: &Held, before: u32) {
        let inst = self.cluster.instances.get_mut(h);
        inst.note_depth();
        let after = inst.depth();
        let pool = &mut self.cluster.pools[inst.pool];
        pool.depth = pool.depth + after - before;
        pool.depth_max = pool.depth_max.max(pool.depth);
        if let Some(series) = &mut self.tally.depth_series
            && after != before
        {
            series[inst.pool].note(self.now, pool.depth);
        }
    }

    pub(super) fn record(s: &Seq, outcome: Outcome, reason: Option<Reason>) -> RequestRecord {
        let inst = |i: InstanceId| (i != NO_INSTANCE).then_some(i);
        RequestRecord {
            id: s.req.id,
            arrival: s.req.arrival,
            first_token: s.first_token,
            finish: (outcome == Outcome::Finished).then_some(s.last_token + s.frontend),
            prompt_tokens: s.req.prompt_tokens,
            output_tokens: s.req.output_tokens,
            generated_tokens: Tokens(s.generated),
            priority: s.req.priority,
            prefill_instance: inst(s.prefill_on),
            decode_instance: inst(s.decode_on),
            preemptions: s.preemptions,
            cached_tokens: Tokens(s.cached_tokens),
            migrations: s.migrations,
            class: s.req.class,
            max_itl: s.max_gap,
            outcome,
            reason,
        }
    }

    /// Reports what is still in flight as unfinished and sums the run up to `end`.
    pub(super) fn close<R: Recorder>(mut self, end: SimTime, rec: &mut R) -> RunTotals {
        let all = self.catch_up_all(rec);
        // Requests still in flight are reported, never dropped, in arrival order; those
        // cancelled while a step or transfer held them were reported already.
        let mut live: Vec<SeqId> = self.seqs.live_ids().into_iter().filter(|&s| !self.seqs[s].cancelled).collect();
        live.sort_by_key(|&s| self.seqs[s].req.id);
        for sid in live {
            rec.on_request(&Self::record(&self.seqs[sid], Outcome::Unfinished, None));
        }
        let elapsed = end - SimTime::ZERO;
        let secs = elapsed.as_nanos().max(1) as f64;
        let mut pool_integral = vec![0u128; self.cluster.pools.len()];
        let mut instances = Vec::with_capacity(self.cluster.instances.len());
        for inst in self.cluster.instances.all_mut(&all) {
            inst.account(end);
            pool_integral[inst.pool] += inst.stats.depth_integral_ns;
            instances.push(InstanceStats {
                name: inst.name.clone(),
                pool: self.cluster.pools[inst.pool].name.clone(),
                role: inst.role,
                hardware: self.cluster.hardware_names[inst.hardware].clone(),
                gpus: inst.tp,
                hourly_cost: inst.hourly_cost,
                queue_depth_mean: inst.stats.depth_integral_ns as f64 / secs,
                queue_depth_max: inst.stats.depth_max,
                utilization: (inst.stats.busy_ns as f64 / secs).min(1.0),
                steps: inst.stats.steps,
                preemptions: inst.stats.preemptions,
                kv_capacity_blocks: inst.kv.capacity().as_u64(),
                kv_peak_usage: inst.stats.kv_peak_used as f64 / inst.kv.capacity().as_u64().max(1) as f64,
                prefix_hit_rate: inst.prefix_hit_rate(),
                migrations_out: inst.stats.migrations_out,
                migrations_in: inst.stats.migrations_in,
            });
        }
        let pools = self
            .cluster
            .pools
            .iter()
            .zip(pool_integral)
            .map(|(p, integral)| PoolStats {
                name: p.name.clone(),
                role: p.role,
                instances: p.instances,
                queue_depth_mean: integral as f64 / secs,
                queue_depth_max: p.depth_max,
            })
            .collect();
        let mut depth_series = self.tally.depth_series.take().unwrap_or_default();
        for d in &mut depth_series {
            d.close(end);
        }
        let workload = self.arrivals.workload.as_ref();
        let workload_error = workload.and_then(|w| w.error()).map(|e| e.to_string());
        RunTotals {
            complete: self.stopped.is_none() && workload_error.is_none(),
            stop_reason: self.stopped.clone(),
            first_arrival: self.tally.first_arrival,
            last_departure: self.tally.last_departure,
            end,
            depth_series,
            elapsed,
            events: self.queue.popped(),
            arrived: self.tally.arrived,
            local_prefills: self.tally.local_prefills,
            migrations: self.tally.migrations,
            cancelled: self.tally.cancelled,
            trace_skipped_lines: workload.map_or(0, |w| w.skipped()),
            workload_error,
            peak_in_flight: self.seqs.peak(),
            instances,
            pools,
        }
    }
}
