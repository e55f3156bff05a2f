//! Building a simulation from a validated scenario.

use std::collections::VecDeque;

use super::Simulation;
use super::accounting::Tally;
use super::arrivals::Arrivals;
use super::cluster::{CaughtUp, Cluster, Fleet, Pool};
use super::fastforward::FastForward;
use super::link::Link;
use crate::cost;
use crate::instance::{Instance, InstanceCounters};
use crate::kv::KvCache;
use crate::queue::{EventQueue, Phase};
use crate::record::DepthSeries;
use crate::rng::RunSeed;
use crate::router::{ClusterView, InstanceId, InstanceView, RouterHost};
use crate::seq::SeqSlab;
use crate::spec::{EngineSpec, SpecError, ValidSpec};
use crate::time::SimTime;
use crate::units::Blocks;
use crate::workload::{Next, WorkloadGen};

impl Simulation {
    /// Builds a run of `spec` with its own seed.
    pub fn new(spec: &ValidSpec) -> Result<Self, Vec<SpecError>> {
        Self::with_seed(spec, RunSeed(spec.seed))
    }

    /// Builds a run of `spec` with an explicit seed. Fails only when the trace the scenario
    /// replays can no longer be opened (validation opened it once already).
    pub fn with_seed(spec: &ValidSpec, seed: RunSeed) -> Result<Self, Vec<SpecError>> {
        let mut instances = Vec::new();
        let mut costs: Vec<(usize, u32, std::sync::Arc<dyn cost::StepCostModel>)> = Vec::new();
        let mut kv_latency_override = Vec::new();
        let mut local_prefill_threshold = Vec::new();
        let mut views = Vec::new();
        let mut pools = Vec::new();
        let kv_blocks = spec.kv_blocks();
        for (pi, pool) in spec.pools.iter().enumerate() {
            for inst in &pool.instances {
                let hw = &spec.hardware[inst.hardware];
                let blocks = Blocks(u32::try_from(kv_blocks[instances.len()]).unwrap_or(u32::MAX - 1));
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
                // Instances of one hardware at one TP share one cost model: a kernel-table
                // model is built once for a fleet of a thousand, not a thousand times.
                let cost = match costs.iter().find(|(h, tp, _)| *h == inst.hardware && *tp == inst.tp) {
                    Some((_, _, c)) => std::sync::Arc::clone(c),
                    None => {
                        let c: std::sync::Arc<dyn cost::StepCostModel> = hw.perf.cost_model(&spec.model, inst.tp).into();
                        costs.push((inst.hardware, inst.tp, std::sync::Arc::clone(&c)));
                        c
                    }
                };
                let prices_cached = cost.prices_cached_context();
                instances.push(Instance {
                    id,
                    name: inst.name.clone(),
                    pool: pi,
                    role: pool.role,
                    hardware: inst.hardware,
                    tp: inst.tp,
                    hourly_cost,
                    engine: EngineSpec { scheduler: pool.engine.scheduler.resolve(&hw.perf), ..pool.engine },
                    cost,
                    kv: KvCache::new(pool.engine.block_size, blocks, pool.engine.prefix_caching),
                    waiting: VecDeque::new(),
                    running: Vec::new(),
                    inbound: VecDeque::new(),
                    batch: Vec::new(),
                    readers: Vec::new(),
                    prices_cached,
                    busy: false,
                    wake_pending: false,
                    migrations_pending: 0,
                    stats: InstanceCounters::default(),
                    sglang: Default::default(),
                });
            }
            pools.push(Pool { name: pool.name.clone(), role: pool.role, instances: pool.instances.len() as u32, depth: 0, depth_max: 0 });
        }
        let mut link_of = vec![vec![None; spec.pools.len()]; spec.pools.len()];
        let mut links = Vec::new();
        for l in &spec.links {
            link_of[l.from][l.to] = Some(links.len());
            links.push(Link::new(l.latency, l.bandwidth_bytes_s));
        }
        let host = RouterHost::new(&spec.router, &spec.telemetry, ClusterView::new(views), seed);
        if host.wants_kv_events() {
            for inst in &mut instances {
                inst.kv.track_events();
            }
        }
        let conditional = local_prefill_threshold.iter().any(|&t| t > 0);
        let migration_interval = host.migration_interval();
        let workload = WorkloadGen::new(&spec.workload, seed)
            .map_err(|e| vec![SpecError { path: "workload.trace".into(), message: e.to_string() }])?;
        let cutoff = if spec.run.drain { None } else { spec.run.duration.map(|d| SimTime::ZERO + d) };
        let instance_count = instances.len();
        let mut sim = Simulation {
            run: spec.run,
            now: SimTime::ZERO,
            queue: EventQueue::new(),
            work_events: 0,
            last_work: SimTime::ZERO,
            cutoff,
            cut: false,
            stopped: None,
            held_for_duration: false,
            cluster: Cluster {
                instances: Fleet::new(instances),
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
            arrivals: Arrivals { workload: Some(workload), ..Arrivals::default() },
            tally: Tally::default(),
            host,
            control: super::Control { migration_interval, ..super::Control::default() },
            scratch: super::Scratch::default(),
            check_index: false,
            horizon: SimTime::MAX,
            ff: FastForward::new(instance_count),
        };
        sim.schedule_next_arrival();
        sim.arm_telemetry(SimTime::ZERO);
        sim.arm_migrate(SimTime::ZERO);
        Ok(sim)
    }

    /// Also records each pool's queue depth over time (bounded buckets), returned in
    /// [`crate::record::RunTotals::depth_series`]; for plots of a single run.
    pub fn with_depth_series(mut self) -> Self {
        self.tally.depth_series = Some(self.cluster.pools.iter().map(|p| DepthSeries::new(p.name.clone())).collect());
        self
    }

    /// Checks, at every routing decision, that the router's prefix index gives the overlap a
    /// probe of every instance's cache gives (panics otherwise). For tests: it costs a probe
    /// of every cache per decision.
    #[doc(hidden)]
    pub fn with_index_check(mut self) -> Self {
        self.check_index = true;
        // Small fleets are probed directly: force the index, which is what is checked.
        self.host.use_index();
        if self.host.wants_kv_events() {
            // Nothing has stepped yet: every instance is up to date.
            for inst in self.cluster.instances.all_mut(&CaughtUp::vouch()) {
                inst.kv.track_events();
            }
        }
        self
    }

    /// Drops the scenario's own arrivals: only requests given to [`Simulation::submit`] run
    /// (a replay driver or a co-simulation brings its own).
    pub fn without_workload(mut self) -> Self {
        // The pending arrival's event stays queued and finds nothing to admit.
        self.arrivals.pending = None;
        self.arrivals.workload = None;
        self
    }

    pub(super) fn schedule_next_arrival(&mut self) {
        let sent = self.tally.arrived + u64::from(self.arrivals.pending.is_some());
        let Some(w) = self.arrivals.workload.as_mut() else { return };
        if let Some((users, _)) = w.closed_loop() {
            if self.run.requests.is_none_or(|n| sent < n) && self.tally.arrived == 0 && self.arrivals.pending.is_none() {
                for u in 0..users {
                    self.push(SimTime::ZERO, Phase::Arrival, crate::sim::Event::UserReady(u));
                }
            }
            return;
        }
        match w.next_within(&self.run, sent) {
            Next::Send(req) => {
                let at = req.arrival;
                self.arrivals.pending = Some(req);
                self.push(at, Phase::Arrival, crate::sim::Event::Arrival);
            }
            // The run's duration, not its request count, ended the arrivals: the fleet is
            // held for all of it.
            Next::Over { by_duration } => self.held_for_duration |= by_duration,
        }
    }
}
