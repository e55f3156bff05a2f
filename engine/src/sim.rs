//! The simulation loop: arrivals, routing, steps and KV transfers over one event queue.

use std::collections::VecDeque;

use crate::cluster::{Cluster, Link, Pool};
use crate::cost;
use crate::instance::{Instance, InstanceCounters};
use crate::kv::BlockHash;
use crate::kv::KvCache;
use crate::queue::{EventQueue, Phase};
use crate::record::{Decision, DecisionKind, DepthSeries, InstanceStats, Outcome, PoolStats, Recorder, RequestRecord, RunTotals};
use crate::request::Request;
use crate::rng::RunSeed;
use crate::router::{self, ClusterView, DecodingSeq, InstanceId, InstanceView, RoutingPolicy};
use crate::seq::{self, NO_INSTANCE, Seq, SeqId, SeqSlab};
use crate::spec::{Role, RunSpec, ScenarioSpec, SpecError};
use crate::time::{SimDuration, SimTime};
use crate::workload::WorkloadGen;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    Arrival,
    TryStep(u32),
    StepFinished(u32),
    /// The bytes of a transfer are across its link (if the epoch is still current; a
    /// 16-bit epoch keeps events at 8 bytes, and a plan is never 65,536 re-plans stale).
    WireDone(SeqId, u16),
    /// The KV of a sequence landed at its decode instance.
    TransferDone(SeqId),
    TelemetryTick,
    /// The router's migration planner runs.
    Migrate,
    /// A closed-loop user sends its next request.
    UserReady(u32),
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
    think_rng: crate::rng::StreamRng,
    pending: Option<Request>,
    arrived: u64,
    local_prefills: u64,
    migrations: u64,
    prefill_router: Box<dyn RoutingPolicy>,
    /// The decode-phase policy when it differs from the prefill one.
    decode_router: Option<Box<dyn RoutingPolicy>>,
    migration_interval: Option<SimDuration>,
    hash_buf: Vec<BlockHash>,
    next_epoch: u16,
    view: ClusterView,
    telemetry_interval: SimDuration,
    preempted: Vec<SeqId>,
    finished: Vec<SeqId>,
    handoffs: Vec<SeqId>,
    depth_series: Option<Vec<DepthSeries>>,
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
        let mut local_prefill_threshold = Vec::new();
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
                    block_size: pool.engine.block_size,
                    queued_prefill_tokens: 0,
                    waiting: 0,
                    running: 0,
                    kv_free_blocks: blocks,
                    kv_total_blocks: blocks,
                    prefix_hit_rate: 0.0,
                    assigned: 0,
                });
                kv_latency_override.push(hw.kv_transfer_latency);
                local_prefill_threshold.push(pool.local_prefill_threshold.unwrap_or(0));
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
                    kv: KvCache::new(pool.engine.block_size, blocks, pool.engine.prefix_caching),
                    waiting: VecDeque::new(),
                    running: Vec::new(),
                    inbound: VecDeque::new(),
                    batch: Vec::new(),
                    busy: false,
                    wake_pending: false,
                    pending_prefill: 0,
                    migrations_pending: 0,
                    stats: InstanceCounters::default(),
                });
            }
            pools.push(Pool { name: pool.name.clone(), role: pool.role, instances: pool.instances.len() as u32, depth: 0, depth_max: 0 });
        }
        let mut link_of = vec![vec![None; spec.pools.len()]; spec.pools.len()];
        let mut links = Vec::new();
        for l in &spec.links {
            link_of[l.from][l.to] = Some(links.len());
            links.push(Link { latency: l.latency, bandwidth_bytes_s: l.bandwidth_bytes_s, active: Vec::new(), updated: SimTime::ZERO });
        }
        let mut missing = Vec::new();
        for (a, pa) in spec.pools.iter().enumerate() {
            for (b, pb) in spec.pools.iter().enumerate() {
                if pa.role == Role::Prefill && pb.role == Role::Decode && link_of[a][b].is_none() {
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
        let conditional = local_prefill_threshold.iter().any(|&t| t > 0);
        let prefill_router = router::build(&spec.router.prefill, seed, crate::rng::stream::ROUTER);
        let decode_router = spec.router.decode.as_ref().map(|d| router::build(d, seed, "router.decode"));
        let migration_interval = decode_router.as_ref().unwrap_or(&prefill_router).migration_interval();
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
                links,
                link_of,
                local_prefill_threshold,
                conditional,
                kv_bytes_per_token: spec.model.kv_bytes_per_token(),
            },
            seqs: SeqSlab::default(),
            workload: WorkloadGen::new(&spec.workload, seed)
                .map_err(|e| vec![SpecError { path: "workload.trace".into(), message: e.to_string() }])?,
            think_rng: seed.stream(crate::rng::stream::THINK),
            pending: None,
            arrived: 0,
            local_prefills: 0,
            migrations: 0,
            prefill_router,
            decode_router,
            migration_interval,
            hash_buf: Vec::new(),
            next_epoch: 0,
            view: ClusterView::new(views),
            telemetry_interval: spec.telemetry.interval,
            preempted: Vec::new(),
            finished: Vec::new(),
            handoffs: Vec::new(),
            depth_series: None,
        })
    }

    /// Also records each pool's queue depth over time (bounded buckets), returned in
    /// [`RunTotals::depth_series`]; for plots of a single run.
    pub fn with_depth_series(mut self) -> Self {
        self.depth_series = Some(self.cluster.pools.iter().map(|p| DepthSeries::new(p.name.clone())).collect());
        self
    }

    fn push(&mut self, at: SimTime, phase: Phase, ev: Event) {
        if !matches!(ev, Event::TelemetryTick | Event::Migrate) {
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
        if let Some(m) = self.migration_interval
            && !self.view.decode_candidates().is_empty()
        {
            self.queue.push(SimTime::ZERO + m, Phase::Control, Event::Migrate);
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
            if !matches!(ev, Event::TelemetryTick | Event::Migrate) {
                self.work_events -= 1;
                last_work = t;
            }
            match ev {
                Event::Arrival => {
                    if let Some(req) = self.pending.take() {
                        self.admit(req, u32::MAX, rec);
                        self.schedule_next_arrival();
                    }
                }
                Event::UserReady(u) => {
                    let open =
                        self.run.requests.is_none_or(|n| self.arrived < n) && self.run.duration.is_none_or(|d| t < SimTime::ZERO + d);
                    if open {
                        let req = self.workload.request_at(t);
                        self.admit(req, u, rec);
                    }
                }
                Event::TryStep(i) => self.on_try_step(i as usize, rec),
                Event::StepFinished(i) => self.on_step_finished(i as usize, rec),
                Event::WireDone(s, epoch) => self.on_wire_done(s, epoch),
                Event::TransferDone(s) => self.on_transfer_done(s),
                Event::TelemetryTick => {
                    self.publish_all();
                    if self.work_events > 0 {
                        self.push(t + self.telemetry_interval, Phase::Control, Event::TelemetryTick);
                    }
                }
                Event::Migrate => {
                    self.on_migrate(rec);
                    if self.work_events > 0
                        && let Some(m) = self.migration_interval
                    {
                        self.queue.push(t + m, Phase::Control, Event::Migrate);
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
        if let Some((users, _)) = self.workload.closed_loop() {
            if self.arrived == 0 && self.pending.is_none() {
                for u in 0..users {
                    self.push(SimTime::ZERO, Phase::Arrival, Event::UserReady(u));
                }
            }
            return;
        }
        let Some(req) = self.workload.next_request() else { return };
        if self.run.duration.is_some_and(|d| req.arrival >= SimTime::ZERO + d) {
            return;
        }
        let at = req.arrival;
        self.pending = Some(req);
        self.push(at, Phase::Arrival, Event::Arrival);
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
        v.waiting = (inst.waiting.len() + inst.inbound.len()) as u32;
        v.running = inst.running.len() as u32;
        v.kv_free_blocks = inst.kv.free();
        v.prefix_hit_rate = inst.prefix_hit_rate();
        v.queued_prefill_tokens = inst.pending_prefill;
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
        if let Some(series) = &mut self.depth_series
            && after != before
        {
            series[inst.pool].note(self.now, pool.depth);
        }
    }

    fn max_kv_tokens(req: &Request, role: Role) -> u32 {
        // The last output token is never fed back, so a sequence holds at most P + O − 1.
        match role {
            Role::Prefill => req.prompt_tokens,
            Role::Decode | Role::Mixed => req.prompt_tokens + req.output_tokens - 1,
        }
    }

    fn fits(&self, i: usize, req: &Request, role: Role) -> bool {
        let inst = &self.cluster.instances[i];
        u64::from(inst.kv.blocks_for(Self::max_kv_tokens(req, role))) <= inst.kv.capacity()
    }

    fn reject<R: Recorder>(&mut self, sid: SeqId, rec: &mut R) {
        let s = self.seqs.remove(sid);
        rec.on_request(&record(&s, Outcome::Rejected));
        self.user_done(s.user);
    }

    /// A fresh request joins instance `i`'s waiting queue.
    fn enqueue(&mut self, i: usize, sid: SeqId) {
        let s = &mut self.seqs[sid];
        s.holder = InstanceId(i as u32);
        let prompt = u64::from(s.req.prompt_tokens);
        let d0 = self.begin_change(i);
        self.cluster.instances[i].pending_prefill += prompt;
        self.cluster.instances[i].waiting.push_back(sid);
        self.end_change(i, d0);
        self.publish(i);
        self.wake(i);
    }

    /// Fills the view's per-instance cached prefix of `req` for policies that read it.
    fn fill_overlap(&mut self, req: &Request, candidates: &[InstanceId]) {
        let mut buf = std::mem::take(&mut self.hash_buf);
        let mut buf_bs = 0;
        for &c in candidates {
            let kv = &self.cluster.instances[c.index()].kv;
            let bs = kv.block_size();
            if bs != buf_bs {
                buf.clear();
                buf.extend(seq::block_hashes(req, req.prompt_tokens.saturating_sub(1) / bs, bs));
                buf_bs = bs;
            }
            let (hits, _) = kv.probe(buf.iter().copied());
            self.view.cached_prefix_tokens[c.index()] = hits * bs;
        }
        self.hash_buf = buf;
    }

    fn route_prefill<R: Recorder>(&mut self, req: &Request, rec: &mut R) -> InstanceId {
        if self.prefill_router.wants_prefix_overlap() {
            let c = self.view.prefill_candidates().to_vec();
            self.fill_overlap(req, &c);
        }
        let p = self.prefill_router.route_prefill(&self.view, req);
        debug_assert!(self.view.prefill_candidates().contains(&p), "policy returned a non-candidate");
        if rec.wants_decisions() {
            let policy = self.prefill_router.name();
            rec.on_decision(&Decision {
                at: self.now,
                request: req.id,
                kind: DecisionKind::Prefill,
                policy,
                chosen: p,
                scores: self.prefill_router.last_scores(),
            });
        }
        p
    }

    fn route_decode<R: Recorder>(&mut self, req: &Request, from: Option<InstanceId>, rec: &mut R) -> InstanceId {
        let wants = self.decode_router.as_ref().unwrap_or(&self.prefill_router).wants_prefix_overlap();
        if wants {
            let c = self.view.decode_candidates().to_vec();
            self.fill_overlap(req, &c);
        }
        let policy = self.decode_router.as_mut().unwrap_or(&mut self.prefill_router);
        let d = policy.route_decode(&self.view, req, from);
        debug_assert!(self.view.decode_candidates().contains(&d), "policy returned a non-candidate");
        if rec.wants_decisions() {
            rec.on_decision(&Decision {
                at: self.now,
                request: req.id,
                kind: DecisionKind::Decode,
                policy: policy.name(),
                chosen: d,
                scores: policy.last_scores(),
            });
        }
        d
    }

    fn policies(&mut self) -> impl Iterator<Item = &mut Box<dyn RoutingPolicy>> {
        std::iter::once(&mut self.prefill_router).chain(self.decode_router.as_mut())
    }

    /// A closed-loop user's request left the system: the user thinks, then sends the next.
    fn user_done(&mut self, user: u32) {
        if user == u32::MAX {
            return;
        }
        let think = self.workload.closed_loop().map_or(SimDuration::ZERO, |c| c.1);
        let wait = if think == SimDuration::ZERO {
            SimDuration::ZERO
        } else {
            let u: f64 = 1.0 - rand::RngExt::random::<f64>(&mut self.think_rng);
            SimDuration::from_secs_f64(-u.ln() * think.as_secs_f64())
        };
        self.push(self.now + wait, Phase::Arrival, Event::UserReady(user));
    }

    /// A request enters: route it, or reject it if it can never fit.
    fn admit<R: Recorder>(&mut self, req: Request, user: u32, rec: &mut R) {
        self.arrived += 1;
        let sid = self.seqs.insert(req.clone());
        self.seqs[sid].user = user;

        // Conditional disaggregation: pick the decode instance first; it prefills the
        // request itself when the prompt's uncached part is short enough.
        if self.cluster.conditional {
            let d = self.route_decode(&req, None, rec);
            let di = d.index();
            let threshold = self.cluster.local_prefill_threshold[di];
            let kv = &self.cluster.instances[di].kv;
            let (hits, _) = kv.probe(seq::block_hashes(&req, (req.prompt_tokens.max(1) - 1) / kv.block_size(), kv.block_size()));
            let uncached = req.prompt_tokens - (hits * kv.block_size()).min(req.prompt_tokens);
            self.seqs[sid].decode_on = d;
            if uncached < threshold {
                let s = &mut self.seqs[sid];
                s.prefill_on = d;
                if !self.fits(di, &req, Role::Decode) {
                    return self.reject(sid, rec);
                }
                self.local_prefills += 1;
                self.view.instances[di].assigned += 1;
                return self.enqueue(di, sid);
            }
        }

        let p = self.route_prefill(&req, rec);
        let i = p.index();
        let role = self.cluster.instances[i].role;
        let s = &mut self.seqs[sid];
        s.prefill_on = p;
        if role == Role::Mixed {
            s.decode_on = p;
        }
        if !self.fits(i, &req, role) {
            return self.reject(sid, rec);
        }
        self.view.instances[i].assigned += 1;
        self.enqueue(i, sid);
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
            debug_assert!(chunk > 0, "a step computes at least one token of every scheduled sequence");
            if !self.seqs[sid].is_decoding() {
                inst.pending_prefill -= u64::from(chunk);
            }
            self.seqs[sid].computed += chunk;
            inst.register_full_blocks(&mut self.seqs, sid, false);
            let s = &mut self.seqs[sid];
            if s.computed < s.known() {
                continue;
            }
            s.generated += 1;
            if s.generated == 1 {
                s.first_token = Some(now);
                let ttft = now - s.req.arrival;
                self.prefill_router.on_first_token(id, ttft);
                if let Some(d) = self.decode_router.as_mut() {
                    d.on_first_token(id, ttft);
                }
            } else {
                let gap = now - s.last_token;
                s.max_gap = s.max_gap.max(gap);
                rec.on_token_gap(gap);
            }
            s.last_token = now;
            if s.generated >= s.req.output_tokens {
                inst.kv.release(&mut s.blocks);
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
            let s = self.seqs.remove(sid);
            let r = record(&s, Outcome::Finished);
            for p in self.policies() {
                p.on_request_complete(id, r.tpot());
            }
            self.view.instances[i].assigned -= 1;
            rec.on_request(&r);
            self.user_done(s.user);
        }
        self.finished.clear();
        for k in 0..self.handoffs.len() {
            let sid = self.handoffs[k];
            self.start_handoff(sid, i, rec);
        }
        self.handoffs.clear();
        if self.cluster.instances[i].migrations_pending > 0 {
            self.execute_migrations(i);
        }
        self.drain_inbound(i, rec);
        self.publish(i);
        // The next step starts now. When nothing else happens at this instant it starts
        // directly (same order as through the queue, one event fewer per step).
        let inst = &self.cluster.instances[i];
        if !inst.wake_pending && inst.depth() > 0 && self.queue.peek_time().is_none_or(|t| t > now) {
            self.on_try_step(i, rec);
        } else {
            self.wake(i);
        }
    }

    /// A prefill finished on `from`: pick the decode instance (unless chosen on arrival),
    /// then reserve its blocks and send the KV, or queue for blocks there.
    fn start_handoff<R: Recorder>(&mut self, sid: SeqId, from: usize, rec: &mut R) {
        let req = self.seqs[sid].req.clone();
        let to = match self.seqs[sid].decode_on {
            NO_INSTANCE => self.route_decode(&req, Some(InstanceId(from as u32)), rec),
            chosen => chosen,
        };
        let t = to.index();
        self.view.instances[from].assigned -= 1;
        self.seqs[sid].decode_on = to;
        if !self.fits(t, &req, Role::Decode) {
            let s = &mut self.seqs[sid];
            self.cluster.instances[from].kv.release(&mut s.blocks);
            self.reject(sid, rec);
            self.publish(from);
            self.drain_inbound(from, rec);
            return;
        }
        self.view.instances[t].assigned += 1;
        let inst = &mut self.cluster.instances[t];
        if inst.inbound.is_empty() && self.try_send(sid) {
            return;
        }
        self.cluster.instances[t].inbound.push_back(sid);
        self.publish(t);
    }

    /// Reserves blocks for `sid` at its decode instance (reusing what that instance has
    /// cached of the prompt) and puts the uncached part on the link. False if the decode
    /// instance lacks free blocks (back-pressure).
    fn try_send(&mut self, sid: SeqId) -> bool {
        let s = &self.seqs[sid];
        let (from, to) = (s.holder.index(), s.decode_on.index());
        let dest = &mut self.cluster.instances[to];
        let bs = dest.kv.block_size();
        let tokens = s.computed;
        let (hits, idle) = dest.kv.probe(s.block_hashes(tokens / bs, bs));
        let need = dest.kv.blocks_for(tokens).saturating_sub(hits);
        if u64::from(need) + u64::from(idle) > dest.kv.free() {
            return false;
        }
        let s = &mut self.seqs[sid];
        for h in seq::block_hashes(&s.req, hits, bs) {
            dest.kv.reuse(h, &mut s.staged);
        }
        let ok = dest.kv.allocate(need, &mut s.staged);
        debug_assert!(ok, "checked above");
        let bytes = (tokens - (hits * bs).min(tokens)) as f64 * self.cluster.kv_bytes_per_token as f64;
        let link = self.link_between(from, to);
        let latency = self.cluster.kv_latency_override[to].unwrap_or(self.cluster.links[link].latency);
        self.publish(to);
        match self.cluster.links[link].bandwidth_bytes_s {
            Some(_) if bytes > 0.0 => {
                self.advance_link(link);
                self.seqs[sid].transfer_left = bytes;
                self.cluster.links[link].active.push(sid);
                self.replan_link(link);
            }
            _ => self.push(self.now + latency, Phase::Arrival, Event::TransferDone(sid)),
        }
        true
    }

    /// Brings the remaining bytes of every transfer on `link` up to now.
    fn advance_link(&mut self, link: usize) {
        let l = &mut self.cluster.links[link];
        let bw = l.bandwidth_bytes_s.unwrap_or(f64::INFINITY);
        let dt = (self.now - l.updated).as_secs_f64();
        l.updated = self.now;
        if l.active.is_empty() || dt == 0.0 {
            return;
        }
        let moved = dt * bw / l.active.len() as f64;
        for &sid in &l.active {
            let s = &mut self.seqs[sid];
            s.transfer_left = (s.transfer_left - moved).max(0.0);
        }
    }

    /// Re-plans completion of every transfer on `link` at its equal share of the bandwidth.
    fn replan_link(&mut self, link: usize) {
        let l = &self.cluster.links[link];
        let Some(bw) = l.bandwidth_bytes_s else { return };
        let share = bw / l.active.len().max(1) as f64;
        for k in 0..self.cluster.links[link].active.len() {
            let sid = self.cluster.links[link].active[k];
            let s = &mut self.seqs[sid];
            self.next_epoch = self.next_epoch.wrapping_add(1);
            s.transfer_epoch = self.next_epoch;
            let at = self.now + SimDuration::from_secs_f64(s.transfer_left / share);
            let ev = Event::WireDone(sid, s.transfer_epoch);
            self.push(at, Phase::Completion, ev);
        }
    }

    fn on_wire_done(&mut self, sid: SeqId, epoch: u16) {
        // Re-planned since, or the sequence is gone (its slot may even hold another one now:
        // epochs come from one run-wide counter, so a stale event never matches it).
        let Some(s) = self.seqs.get(sid) else { return };
        if s.transfer_epoch != epoch || s.holder == s.decode_on {
            return;
        }
        let link = self.link_between(s.holder.index(), s.decode_on.index());
        if !self.cluster.links[link].active.contains(&sid) {
            return;
        }
        let s = &self.seqs[sid];
        let (from, to) = (s.holder.index(), s.decode_on.index());
        let link = self.link_between(from, to);
        self.advance_link(link);
        let l = &mut self.cluster.links[link];
        if let Some(pos) = l.active.iter().position(|&x| x == sid) {
            l.active.swap_remove(pos);
        }
        // Keep a deterministic order for re-planning.
        l.active.sort_unstable();
        self.seqs[sid].transfer_left = 0.0;
        self.replan_link(link);
        let latency = self.cluster.kv_latency_override[to].unwrap_or(self.cluster.links[link].latency);
        self.push(self.now + latency, Phase::Arrival, Event::TransferDone(sid));
    }

    fn on_transfer_done(&mut self, sid: SeqId) {
        let s = &mut self.seqs[sid];
        let from = s.holder.index();
        let to = s.decode_on.index();
        s.holder = s.decode_on;
        self.cluster.instances[from].kv.release(&mut s.blocks);
        std::mem::swap(&mut s.blocks, &mut s.staged);
        s.reset_chain();
        s.leaving = false;
        self.cluster.instances[to].register_full_blocks(&mut self.seqs, sid, false);
        self.publish(from);
        self.wake(from);
        // The sequence holds its KV, so it joins the running set (last admitted, first to be
        // preempted) rather than the waiting queue: parked in `waiting` with blocks it could
        // neither run nor give them back, and a full cache would deadlock.
        let d0 = self.begin_change(to);
        self.cluster.instances[to].running.push(sid);
        self.end_change(to, d0);
        self.publish(to);
        self.wake(to);
    }

    /// The link KV takes from instance `from` to instance `to`: the one between their pools,
    /// or (for migrations inside a decode pool) the link into the destination's pool.
    fn link_between(&self, from: usize, to: usize) -> usize {
        let (pf, pt) = (self.cluster.instances[from].pool, self.cluster.instances[to].pool);
        self.cluster.link_of[pf][pt]
            .or_else(|| (0..self.cluster.link_of.len()).find_map(|p| self.cluster.link_of[p][pt]))
            .expect("every decode pool has an incoming link (checked when the simulation is built)")
    }

    fn on_migrate<R: Recorder>(&mut self, rec: &mut R) {
        let mut decoding = Vec::new();
        let mut sids = Vec::new();
        for &d in self.view.decode_candidates() {
            for &sid in &self.cluster.instances[d.index()].running {
                let s = &self.seqs[sid];
                if s.is_decoding() && !s.leaving && s.migrate_to.is_none() {
                    decoding.push(DecodingSeq {
                        request: s.req.id,
                        instance: d,
                        priority: s.req.priority,
                        tokens_remaining: s.req.output_tokens - s.generated,
                    });
                    sids.push(sid);
                }
            }
        }
        if decoding.is_empty() {
            return;
        }
        let now = self.now;
        let policy = self.decode_router.as_mut().unwrap_or(&mut self.prefill_router);
        let plan = policy.plan_migrations(&self.view, &decoding, now);
        let name = policy.name();
        for m in plan {
            let Some(k) = decoding.iter().position(|d| d.request == m.request && d.instance == m.from) else { continue };
            let sid = sids[k];
            let req = self.seqs[sid].req.clone();
            if m.to == m.from || !self.view.decode_candidates().contains(&m.to) || !self.fits(m.to.index(), &req, Role::Decode) {
                continue;
            }
            if rec.wants_decisions() {
                rec.on_decision(&Decision {
                    at: now,
                    request: req.id,
                    kind: DecisionKind::Migration,
                    policy: name,
                    chosen: m.to,
                    scores: &[],
                });
            }
            self.seqs[sid].migrate_to = Some(m.to);
            let from = m.from.index();
            self.cluster.instances[from].migrations_pending += 1;
            if !self.cluster.instances[from].busy {
                self.execute_migrations(from);
            }
        }
    }

    /// Moves every sequence of instance `i` with a migration requested: out of the running
    /// set, then like a prefill handoff (reserve at the destination, move the uncached KV).
    fn execute_migrations(&mut self, i: usize) {
        let d0 = self.begin_change(i);
        let mut moving = Vec::new();
        let inst = &mut self.cluster.instances[i];
        inst.migrations_pending = 0;
        for &sid in inst.waiting.iter() {
            // Preempted since the plan: it no longer holds KV to move.
            self.seqs[sid].migrate_to = None;
        }
        let seqs = &mut self.seqs;
        inst.running.retain(|&sid| {
            let s = &mut seqs[sid];
            match s.migrate_to.take() {
                Some(to) if !s.leaving && s.is_decoding() => {
                    moving.push((sid, to));
                    false
                }
                _ => true,
            }
        });
        self.end_change(i, d0);
        for (sid, to) in moving {
            let s = &mut self.seqs[sid];
            s.decode_on = to;
            s.migrations += 1;
            self.migrations += 1;
            self.cluster.instances[i].stats.migrations_out += 1;
            self.cluster.instances[to.index()].stats.migrations_in += 1;
            self.view.instances[i].assigned -= 1;
            self.view.instances[to.index()].assigned += 1;
            if self.cluster.instances[to.index()].inbound.is_empty() && self.try_send(sid) {
                continue;
            }
            self.cluster.instances[to.index()].inbound.push_back(sid);
            self.publish(to.index());
        }
        self.publish(i);
        self.wake(i);
    }

    /// Starts queued transfers into `i` while its blocks allow, in arrival order.
    fn drain_inbound<R: Recorder>(&mut self, i: usize, _rec: &mut R) {
        while let Some(&sid) = self.cluster.instances[i].inbound.front() {
            if !self.try_send(sid) {
                break;
            }
            self.cluster.instances[i].inbound.pop_front();
        }
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
        let mut depth_series = self.depth_series.take().unwrap_or_default();
        for d in &mut depth_series {
            d.close(end);
        }
        RunTotals {
            depth_series,
            elapsed,
            events: self.queue.popped(),
            arrived: self.arrived,
            local_prefills: self.local_prefills,
            migrations: self.migrations,
            trace_skipped_lines: self.workload.skipped(),
            workload_error: self.workload.error().map(|e| e.to_string()),
            peak_in_flight: self.seqs.peak(),
            instances,
            pools,
        }
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
        cached_tokens: s.cached_tokens,
        migrations: s.migrations,
        class: s.req.class,
        max_itl: s.max_gap,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stay_small() {
        // Heap entries are (time, order, event): 24 bytes keeps sifting cheap.
        assert!(std::mem::size_of::<Event>() <= 8, "{}", std::mem::size_of::<Event>());
    }
}
