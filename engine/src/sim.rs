//! The simulation loop: arrivals, routing, steps and KV transfers over one event queue.

use crate::cluster::{Cluster, Link, Pool};
use crate::cost;
use crate::instance::{Instance, InstanceCounters};
use crate::kv::KvCache;
use crate::queue::{EventQueue, Phase};
use crate::record::{InstanceStats, Outcome, PoolStats, Recorder, RequestRecord, RunTotals};
use crate::request::Request;
use crate::rng::RunSeed;
use crate::router::{self, ClusterView, InstanceId, InstanceView, RoutingPolicy};
use crate::seq::{NO_INSTANCE, Seq, SeqId, SeqSlab};
use crate::spec::{Role, RunSpec, ScenarioSpec, SpecError};
use crate::time::{SimDuration, SimTime};
use crate::workload::WorkloadGen;

#[derive(Clone, Copy, Debug)]
enum Event {
    Arrival,
    TryStep(u32),
    StepFinished(u32),
    TransferDone(SeqId),
    TelemetryTick,
}

/// One simulation run of a validated scenario.
pub struct Simulation {
    run: RunSpec,
    now: SimTime,
    queue: EventQueue<Event>,
    work_events: u64,
    cluster: Cluster,
    seqs: SeqSlab,
    workload: WorkloadGen,
    pending: Option<Request>,
    arrived: u64,
    router: Box<dyn RoutingPolicy>,
    view: ClusterView,
    telemetry_interval: SimDuration,
    preempted: Vec<SeqId>,
    finished: Vec<SeqId>,
    handoffs: Vec<SeqId>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation").field("now", &self.now).field("instances", &self.cluster.instances.len()).finish_non_exhaustive()
    }
}

impl Simulation {
    /// Builds a run of `spec` with its own seed; fails with every validation problem.
    pub fn new(spec: &ScenarioSpec) -> Result<Self, Vec<SpecError>> {
        Self::with_seed(spec, RunSeed(spec.seed))
    }

    /// Builds a run of `spec` with an explicit seed.
    pub fn with_seed(spec: &ScenarioSpec, seed: RunSeed) -> Result<Self, Vec<SpecError>> {
        spec.validate()?;
        let mut instances = Vec::new();
        let mut kv_latency_override = Vec::new();
        let mut views = Vec::new();
        let mut pools = Vec::new();
        for (pi, pool) in spec.pools.iter().enumerate() {
            for inst in &pool.instances {
                let hw = &spec.hardware[inst.hardware];
                let blocks = spec
                    .kv_capacity_blocks(hw, inst.tp, &pool.engine)
                    .map_err(|m| vec![SpecError { path: format!("pools.{}.instances.{}", pool.name, inst.name), message: m }])?;
                let id = InstanceId(instances.len() as u32);
                let hourly_cost = hw.cost_per_hour * f64::from(inst.tp);
                views.push(InstanceView {
                    id,
                    pool: pi,
                    role: pool.role,
                    hourly_cost,
                    waiting: 0,
                    running: 0,
                    kv_free_blocks: blocks,
                    kv_total_blocks: blocks,
                    prefix_hit_rate: 0.0,
                    assigned: 0,
                });
                kv_latency_override.push(hw.kv_transfer_latency);
                instances.push(Instance {
                    id,
                    name: inst.name.clone(),
                    pool: pi,
                    role: pool.role,
                    hardware: inst.hardware,
                    tp: inst.tp,
                    hourly_cost,
                    engine: pool.engine,
                    cost: cost::build(&hw.perf, &spec.model, inst.tp),
                    kv: KvCache::new(pool.engine.block_size, blocks),
                    waiting: Default::default(),
                    running: Vec::new(),
                    batch: Vec::new(),
                    busy: false,
                    wake_pending: false,
                    stats: InstanceCounters::default(),
                });
            }
            pools.push(Pool { name: pool.name.clone(), role: pool.role, instances: pool.instances.len() as u32, depth: 0, depth_max: 0 });
        }
        let mut routes = vec![vec![None; spec.pools.len()]; spec.pools.len()];
        for l in &spec.links {
            routes[l.from][l.to] = Some(Link { latency: l.latency, bandwidth_bytes_s: l.bandwidth_bytes_s });
        }
        let mut missing = Vec::new();
        for (a, pa) in spec.pools.iter().enumerate() {
            for (b, pb) in spec.pools.iter().enumerate() {
                if pa.role == Role::Prefill && pb.role == Role::Decode && routes[a][b].is_none() {
                    missing.push(SpecError {
                        path: "links".into(),
                        message: format!(
                            "no link from prefill pool `{}` to decode pool `{}`; add `link {{ from = {}; to = {} }}`",
                            pa.name, pb.name, pa.name, pb.name
                        ),
                    });
                }
            }
        }
        if !missing.is_empty() {
            return Err(missing);
        }
        Ok(Simulation {
            run: spec.run,
            now: SimTime::ZERO,
            queue: EventQueue::new(),
            work_events: 0,
            cluster: Cluster {
                instances,
                hardware_names: spec.hardware.iter().map(|h| h.name.clone()).collect(),
                kv_latency_override,
                pools,
                links: routes,
                kv_bytes_per_token: spec.model.kv_bytes_per_token(),
            },
            seqs: SeqSlab::default(),
            workload: WorkloadGen::new(&spec.workload, seed),
            pending: None,
            arrived: 0,
            router: router::build(&spec.router),
            view: ClusterView::new(views),
            telemetry_interval: spec.telemetry.interval,
            preempted: Vec::new(),
            finished: Vec::new(),
            handoffs: Vec::new(),
        })
    }

    fn push(&mut self, at: SimTime, phase: Phase, ev: Event) {
        if !matches!(ev, Event::TelemetryTick) {
            self.work_events += 1;
        }
        self.queue.push(at, phase, ev);
    }

    /// Runs to the end and returns the totals; requests go to `rec` as they leave.
    pub fn run<R: Recorder>(mut self, rec: &mut R) -> RunTotals {
        self.schedule_next_arrival();
        if self.telemetry_interval > SimDuration::ZERO {
            self.push(SimTime::ZERO + self.telemetry_interval, Phase::Control, Event::TelemetryTick);
        }
        let cutoff = if self.run.drain { None } else { self.run.duration.map(|d| SimTime::ZERO + d) };
        let mut last_work = SimTime::ZERO;
        let mut cut = false;
        while let Some((t, ev)) = self.queue.pop() {
            if let Some(c) = cutoff
                && t > c
            {
                cut = true;
                break;
            }
            self.now = t;
            self.view.now = t;
            if !matches!(ev, Event::TelemetryTick) {
                self.work_events -= 1;
                last_work = t;
            }
            match ev {
                Event::Arrival => self.on_arrival(rec),
                Event::TryStep(i) => self.on_try_step(i as usize, rec),
                Event::StepFinished(i) => self.on_step_finished(i as usize, rec),
                Event::TransferDone(s) => self.on_transfer_done(s),
                Event::TelemetryTick => {
                    self.publish_all();
                    if self.work_events > 0 {
                        self.push(t + self.telemetry_interval, Phase::Control, Event::TelemetryTick);
                    }
                }
            }
        }
        let end = match (cut, cutoff) {
            (true, Some(c)) => c,
            _ => last_work.max(SimTime::ZERO + self.run.duration.unwrap_or(SimDuration::ZERO)),
        };
        self.finish(end, rec)
    }

    fn schedule_next_arrival(&mut self) {
        if self.run.requests.is_some_and(|n| self.arrived + u64::from(self.pending.is_some()) >= n) {
            return;
        }
        let req = self.workload.next_request();
        if self.run.duration.is_some_and(|d| req.arrival >= SimTime::ZERO + d) {
            return;
        }
        self.pending = Some(req);
        self.push(req.arrival, Phase::Arrival, Event::Arrival);
    }

    fn wake(&mut self, i: usize) {
        let inst = &mut self.cluster.instances[i];
        if !inst.busy && !inst.wake_pending && inst.depth() > 0 {
            inst.wake_pending = true;
            self.push(self.now, Phase::Schedule, Event::TryStep(i as u32));
        }
    }

    fn publish(&mut self, i: usize) {
        if self.telemetry_interval == SimDuration::ZERO {
            Self::copy_gauges(&self.cluster.instances[i], &mut self.view.instances[i]);
        }
    }

    fn publish_all(&mut self) {
        for (inst, v) in self.cluster.instances.iter().zip(self.view.instances.iter_mut()) {
            Self::copy_gauges(inst, v);
        }
    }

    fn copy_gauges(inst: &Instance, v: &mut InstanceView) {
        v.waiting = inst.waiting.len() as u32;
        v.running = inst.running.len() as u32;
        v.kv_free_blocks = inst.kv.free();
    }

    // Queue-depth bookkeeping around a change of an instance's waiting/running lists.
    fn begin_change(&mut self, i: usize) -> u32 {
        let now = self.now;
        let inst = &mut self.cluster.instances[i];
        inst.account(now);
        inst.depth()
    }
    fn end_change(&mut self, i: usize, before: u32) {
        let inst = &mut self.cluster.instances[i];
        inst.note_depth();
        let after = inst.depth();
        let pool = &mut self.cluster.pools[inst.pool];
        pool.depth = pool.depth + after - before;
        pool.depth_max = pool.depth_max.max(pool.depth);
    }

    fn max_kv_tokens(req: &Request, role: Role) -> u32 {
        // The last output token is never fed back, so a sequence holds at most P + O − 1.
        match role {
            Role::Prefill => req.prompt_tokens,
            Role::Decode | Role::Mixed => req.prompt_tokens + req.output_tokens - 1,
        }
    }

    fn fits(&self, i: usize, req: &Request) -> bool {
        let inst = &self.cluster.instances[i];
        u64::from(inst.kv.blocks_for(Self::max_kv_tokens(req, inst.role))) <= inst.kv.capacity()
    }

    fn on_arrival<R: Recorder>(&mut self, rec: &mut R) {
        let Some(req) = self.pending.take() else {
            return;
        };
        self.arrived += 1;
        self.schedule_next_arrival();
        let p = self.router.route_prefill(&self.view, &req);
        debug_assert!(self.view.prefill_candidates().contains(&p), "policy returned a non-candidate");
        let i = p.index();
        let mut seq = Seq::new(req);
        seq.prefill_on = p;
        if self.cluster.instances[i].role == Role::Mixed {
            seq.decode_on = p;
        }
        if !self.fits(i, &req) {
            rec.on_request(&record(&seq, Outcome::Rejected));
            return;
        }
        let sid = self.seqs.insert(seq);
        self.view.instances[i].assigned += 1;
        let d0 = self.begin_change(i);
        self.cluster.instances[i].waiting.push_back(sid);
        self.end_change(i, d0);
        self.publish(i);
        self.wake(i);
    }

    fn on_try_step<R: Recorder>(&mut self, i: usize, rec: &mut R) {
        let now = self.now;
        let inst = &mut self.cluster.instances[i];
        inst.wake_pending = false;
        if inst.busy {
            return;
        }
        self.preempted.clear();
        let shape = inst.build_batch(&mut self.seqs, &mut self.preempted);
        for _ in 0..self.preempted.len() {
            rec.on_preemption(inst.id, now);
        }
        if inst.batch.is_empty() {
            self.publish(i);
            return;
        }
        let dur = inst.cost.step_time(&shape);
        inst.busy = true;
        inst.stats.steps += 1;
        inst.stats.busy_ns += dur.as_nanos();
        rec.on_step(inst.id, now, dur, &shape);
        self.push(now + dur, Phase::Completion, Event::StepFinished(i as u32));
        self.publish(i);
    }

    fn on_step_finished<R: Recorder>(&mut self, i: usize, rec: &mut R) {
        let now = self.now;
        let d0 = self.begin_change(i);
        let inst = &mut self.cluster.instances[i];
        inst.busy = false;
        let role = inst.role;
        let id = inst.id;
        for k in 0..inst.batch.len() {
            let (sid, chunk) = inst.batch[k];
            let s = &mut self.seqs[sid];
            s.computed += chunk;
            if s.computed < s.known() {
                continue;
            }
            s.generated += 1;
            if s.generated == 1 {
                s.first_token = Some(now);
                self.router.on_first_token(id, now - s.req.arrival);
            } else {
                rec.on_token_gap(now - s.last_token);
            }
            s.last_token = now;
            if s.generated >= s.req.output_tokens {
                inst.kv.release(s.blocks);
                s.blocks = 0;
                s.leaving = true;
                self.finished.push(sid);
            } else if role == Role::Prefill && s.generated == 1 {
                s.leaving = true;
                self.handoffs.push(sid);
            }
        }
        if !self.finished.is_empty() || !self.handoffs.is_empty() {
            let seqs = &self.seqs;
            inst.running.retain(|&s| !seqs[s].leaving);
        }
        inst.check_invariants(&self.seqs);
        self.end_change(i, d0);

        for k in 0..self.finished.len() {
            let sid = self.finished[k];
            let s = self.seqs[sid];
            let r = record(&s, Outcome::Finished);
            self.router.on_request_complete(id, r.tpot());
            self.view.instances[i].assigned -= 1;
            rec.on_request(&r);
            self.seqs.remove(sid);
        }
        self.finished.clear();
        for k in 0..self.handoffs.len() {
            let sid = self.handoffs[k];
            self.start_transfer(sid, i, rec);
        }
        self.handoffs.clear();
        self.publish(i);
        self.wake(i);
    }

    fn start_transfer<R: Recorder>(&mut self, sid: SeqId, from: usize, rec: &mut R) {
        let req = self.seqs[sid].req;
        let to = self.router.route_decode(&self.view, &req, InstanceId(from as u32));
        debug_assert!(self.view.decode_candidates().contains(&to), "policy returned a non-candidate");
        let t = to.index();
        self.view.instances[from].assigned -= 1;
        if !self.fits(t, &req) {
            let s = &mut self.seqs[sid];
            self.cluster.instances[from].kv.release(s.blocks);
            s.blocks = 0;
            s.decode_on = to;
            rec.on_request(&record(s, Outcome::Rejected));
            self.seqs.remove(sid);
            self.publish(from);
            return;
        }
        self.view.instances[t].assigned += 1;
        let route = self.cluster.links[self.cluster.instances[from].pool][self.cluster.instances[t].pool]
            .expect("links are checked when the simulation is built");
        let s = &mut self.seqs[sid];
        s.decode_on = to;
        let bytes = self.cluster.kv_bytes_per_token * u64::from(s.computed);
        let latency = self.cluster.kv_latency_override[t].unwrap_or(route.latency);
        let wire = route.bandwidth_bytes_s.map_or(SimDuration::ZERO, |bw| SimDuration::from_secs_f64(bytes as f64 / bw));
        let dur = latency + wire;
        rec.on_transfer(InstanceId(from as u32), to, self.now, dur, bytes);
        self.push(self.now + dur, Phase::Arrival, Event::TransferDone(sid));
    }

    fn on_transfer_done(&mut self, sid: SeqId) {
        let s = &mut self.seqs[sid];
        let from = s.prefill_on.index();
        let to = s.decode_on.index();
        self.cluster.instances[from].kv.release(s.blocks);
        s.blocks = 0;
        s.leaving = false;
        self.publish(from);
        self.wake(from);
        let d0 = self.begin_change(to);
        self.cluster.instances[to].waiting.push_back(sid);
        self.end_change(to, d0);
        self.publish(to);
        self.wake(to);
    }

    fn finish<R: Recorder>(mut self, end: SimTime, rec: &mut R) -> RunTotals {
        // Requests still in flight are reported, never dropped, in arrival order.
        let mut live: Vec<SeqId> = self.seqs.live_ids();
        live.sort_by_key(|&s| self.seqs[s].req.id);
        for sid in live {
            rec.on_request(&record(&self.seqs[sid], Outcome::Unfinished));
        }
        let elapsed = end - SimTime::ZERO;
        let secs = elapsed.as_nanos().max(1) as f64;
        let mut pool_integral = vec![0u128; self.cluster.pools.len()];
        let mut instances = Vec::with_capacity(self.cluster.instances.len());
        for inst in &mut self.cluster.instances {
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
                kv_capacity_blocks: inst.kv.capacity(),
                kv_peak_usage: inst.stats.kv_peak_used as f64 / inst.kv.capacity().max(1) as f64,
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
        RunTotals { elapsed, events: self.queue.popped(), arrived: self.arrived, peak_in_flight: self.seqs.peak(), instances, pools }
    }
}

fn record(s: &Seq, outcome: Outcome) -> RequestRecord {
    let inst = |i: InstanceId| (i != NO_INSTANCE).then_some(i);
    RequestRecord {
        id: s.req.id,
        arrival: s.req.arrival,
        first_token: s.first_token,
        finish: (outcome == Outcome::Finished).then_some(s.last_token),
        prompt_tokens: s.req.prompt_tokens,
        output_tokens: s.req.output_tokens,
        generated_tokens: s.generated,
        priority: s.req.priority,
        prefill_instance: inst(s.prefill_on),
        decode_instance: inst(s.decode_on),
        preemptions: s.preemptions,
        outcome,
    }
}
