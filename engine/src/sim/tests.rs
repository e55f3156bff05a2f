//! Tests of the simulation core against independent computations.

use rand::{RngExt, SeedableRng};

use super::*;
use crate::catalogue;
use crate::record::{Outcome, RequestRecord};
use crate::request::RequestId;
use crate::router::InstanceId;
use crate::spec::*;
use crate::units::Tokens;

#[test]
fn events_stay_small() {
    // Heap entries are (time, order, event): 24 bytes keeps sifting cheap.
    assert!(std::mem::size_of::<Event>() <= 8, "{}", std::mem::size_of::<Event>());
}

fn rates(name: &str, prefill_tok_s: f64, decode_tok_s: f64, kv_tokens: u64) -> HardwareSpec {
    HardwareSpec {
        name: name.into(),
        cost_per_hour: 1.0,
        memory_bytes: None,
        kv_capacity_tokens: Some(kv_tokens),
        kv_transfer_latency: None,
        perf: PerfSpec::Rates { prefill_tok_s, decode_tok_s, step_overhead: SimDuration::ZERO },
    }
}

fn pool(name: &str, role: Role, hardware: usize, n: usize, engine: EngineSpec) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        role,
        engine,
        instances: (0..n).map(|i| InstanceSpec { name: format!("{name}{i}"), hardware, tp: 1 }).collect(),
        local_prefill_threshold: None,
    }
}

fn base_spec() -> ScenarioSpec {
    ScenarioSpec {
        name: "t".into(),
        seed: 7,
        model: catalogue::model("llama-3.1-8b").unwrap(),
        hardware: vec![],
        pools: vec![],
        links: vec![],
        router: RouterSpec::single(PolicySpec::RoundRobin),
        telemetry: TelemetrySpec::default(),
        workload: WorkloadSpec {
            arrivals: ArrivalSpec::Poisson { rate_per_s: 10.0, burst: None },
            prompt: LengthSpec::Uniform { lo: 100, hi: 1000 },
            output: LengthSpec::Constant(2),
            priority: (0, 0),
            prefix: None,
            classes: vec![],
            trace: None,
        },
        slo: SloSpec::default(),
        run: RunSpec::new(None, Some(1000)),
        sweep: None,
    }
}

#[derive(Default)]
struct Transfers(Vec<(SimTime, SimDuration, u64)>);
impl Recorder for Transfers {
    fn on_transfer(&mut self, _from: InstanceId, _to: InstanceId, start: SimTime, d: SimDuration, bytes: u64) {
        self.0.push((start, d, bytes));
    }
}

/// Equal-share processor sharing computed directly: at every start or end, every active
/// transfer's remaining bytes drop by the elapsed time × bandwidth / active count.
fn processor_sharing(starts: &[(f64, f64)], bw: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..starts.len()).collect();
    order.sort_by(|&a, &b| starts[a].0.total_cmp(&starts[b].0).then(a.cmp(&b)));
    let mut finish = vec![0.0; starts.len()];
    let mut active: Vec<(usize, f64)> = Vec::new();
    let (mut t, mut next) = (0.0f64, 0);
    while next < order.len() || !active.is_empty() {
        let share = if active.is_empty() { 0.0 } else { bw / active.len() as f64 };
        let to_end = active.iter().map(|a| a.1 / share).fold(f64::INFINITY, f64::min);
        let to_arrival = if next < order.len() { starts[order[next]].0 - t } else { f64::INFINITY };
        let dt = to_end.min(to_arrival).max(0.0);
        for a in &mut active {
            a.1 -= dt * share;
        }
        t += dt;
        if to_end <= to_arrival {
            // Everything within a nanosecond's worth of bytes of done finishes now.
            let eps = share * 1e-10;
            active.retain(|&(k, left)| {
                if left <= eps {
                    finish[k] = t;
                    false
                } else {
                    true
                }
            });
        } else {
            let k = order[next];
            next += 1;
            active.push((k, starts[k].1));
        }
    }
    finish
}

#[test]
fn a_saturated_link_shares_bandwidth_exactly_over_seventy_thousand_transfers() {
    // Prefill is nearly free and decode pools have room, so every transfer's time is the
    // link's: 10 GB/s against about 97% of its capacity (mean 550 tokens × 128 KiB).
    // 70,000 transfers re-planned one by one would wrap a 16-bit epoch many times over.
    const BW: f64 = 10e9;
    let mut spec = base_spec();
    spec.hardware = vec![rates("p", 1e12, 1e12, 1 << 31), rates("d", 1e12, 1e12, 1 << 31)];
    spec.pools = vec![pool("pf", Role::Prefill, 0, 4, EngineSpec::default()), pool("dc", Role::Decode, 1, 4, EngineSpec::default())];
    spec.links = vec![LinkSpec { from: 0, to: 1, latency: SimDuration::from_micros(50), bandwidth_bytes_s: Some(BW) }];
    let bytes_per_request = 550.0 * spec.model.kv_bytes_per_token() as f64;
    spec.workload.arrivals = ArrivalSpec::Poisson { rate_per_s: 0.97 * BW / bytes_per_request, burst: None };
    spec.run.requests = Some(70_000);
    let spec = spec.validate().unwrap();
    let mut rec = Transfers::default();
    let totals = Simulation::new(&spec).unwrap().run(&mut rec);
    assert_eq!(totals.arrived, 70_000);
    assert_eq!(rec.0.len(), 70_000, "every request crossed the link once");
    let starts: Vec<(f64, f64)> = rec.0.iter().map(|&(s, _, b)| (s.as_secs_f64(), b as f64)).collect();
    let expect = processor_sharing(&starts, BW);
    let mut worst: f64 = 0.0;
    for (k, &(s, d, _)) in rec.0.iter().enumerate() {
        let wire_end = (s + d).as_secs_f64() - 50e-6;
        worst = worst.max((wire_end - expect[k]).abs());
    }
    // Event times are whole nanoseconds; the error never accumulates past a few.
    assert!(worst < 20e-9, "largest difference from processor sharing: {worst:e} s");
    // The link really was shared: many transfers overlapped.
    let overlapped = rec.0.windows(2).filter(|w| w[1].0 < w[0].0 + w[0].1).count();
    assert!(overlapped > 10_000, "{overlapped}");
}

#[derive(Default)]
struct Rows(Vec<RequestRecord>, u64);
impl Recorder for Rows {
    fn on_request(&mut self, r: &RequestRecord) {
        self.0.push(*r);
    }
    // Pooled gaps are a multiset: fast-forward reports an instance's when it catches up.
    fn on_token_gap(&mut self, gap: SimDuration) {
        self.1 = self.1.wrapping_add(crate::rng::mix(gap.as_nanos()));
    }
}

/// A random small fleet that exercises the prefix index: shared prefixes, small caches
/// (evictions), mixed or split pools, conditional disaggregation, both prefix-aware policies.
fn random_prefix_spec(rng: &mut crate::rng::StreamRng) -> ScenarioSpec {
    let mut spec = base_spec();
    spec.seed = rng.random();
    let block_size = [4, 16, 32][rng.random_range(0..3)];
    let kv_tokens = rng.random_range(3_000..20_000);
    let engine = EngineSpec {
        block_size,
        max_batch_tokens: rng.random_range(256..4096),
        max_seqs: rng.random_range(4..64),
        chunked_prefill: rng.random(),
        ..EngineSpec::default()
    };
    spec.hardware = vec![rates("g", 50_000.0, 5_000.0, kv_tokens)];
    let n = rng.random_range(2..7);
    if rng.random() {
        spec.pools = vec![pool("m", Role::Mixed, 0, n, engine)];
    } else {
        let mut d = pool("d", Role::Decode, 0, n, engine);
        if rng.random() {
            d.local_prefill_threshold = Some(rng.random_range(100..1500));
        }
        spec.pools = vec![pool("p", Role::Prefill, 0, rng.random_range(1..4), engine), d];
        spec.links = vec![LinkSpec { from: 0, to: 1, latency: SimDuration::from_micros(100), bandwidth_bytes_s: Some(5e10) }];
    }
    spec.router = RouterSpec::single(if rng.random() {
        PolicySpec::KvAware(KvAwarePolicySpec { prefill_load_scale: rng.random_range(0.5..4.0), temperature: 0.0 })
    } else {
        PolicySpec::CacheAware(CacheAwarePolicySpec::default())
    });
    spec.workload.arrivals = ArrivalSpec::Poisson { rate_per_s: rng.random_range(5.0..60.0), burst: None };
    spec.workload.prompt = LengthSpec::Uniform { lo: 10, hi: 800 };
    spec.workload.output = LengthSpec::Uniform { lo: 1, hi: 64 };
    spec.workload.prefix = Some(PrefixSpec { groups: rng.random_range(1..12), tokens: rng.random_range(16..1200) });
    spec.run.requests = Some(600);
    spec
}

#[test]
fn the_prefix_index_equals_a_probe_of_every_cache() {
    let mut rng = crate::rng::StreamRng::seed_from_u64(11);
    for case in 0..24 {
        let spec = random_prefix_spec(&mut rng);
        let Ok(spec) = spec.validate() else { continue };
        // Panics at the first decision where the index and a probe of a cache disagree.
        let mut rows = Rows::default();
        let totals = Simulation::new(&spec).unwrap().with_index_check().run(&mut rows);
        assert_eq!(rows.0.len() as u64, totals.arrived, "case {case}");
        assert!(rows.0.iter().any(|r| r.cached_tokens > Tokens::ZERO), "case {case}: no prefix was ever reused");
    }
}

fn records(spec: &ValidSpec, chunk: Option<u64>) -> (Vec<RequestRecord>, u64, String) {
    let mut rows = Rows::default();
    let mut sim = Simulation::new(spec).unwrap();
    if let Some(ns) = chunk {
        let mut t = SimTime::ZERO;
        while sim.next_event_time().is_some() {
            t += SimDuration::from_nanos(ns);
            sim.step_until(t, &mut rows);
        }
    }
    let totals = sim.run(&mut rows);
    (rows.0, rows.1, format!("{totals:?}"))
}

#[test]
fn stepping_in_chunks_gives_the_records_of_one_run() {
    let mut rng = crate::rng::StreamRng::seed_from_u64(3);
    for _ in 0..6 {
        let spec = random_prefix_spec(&mut rng).validate().unwrap();
        let whole = records(&spec, None);
        for ns in [1_000_000, 37_000_123, 1_000_000_000] {
            assert_eq!(records(&spec, Some(ns)), whole, "chunks of {ns} ns");
        }
    }
}

#[test]
fn submitted_requests_run_and_cancelled_ones_free_everything() {
    let mut spec = base_spec();
    spec.hardware = vec![rates("p", 20_000.0, 2_000.0, 50_000), rates("d", 20_000.0, 2_000.0, 50_000)];
    spec.pools = vec![pool("pf", Role::Prefill, 0, 1, EngineSpec::default()), pool("dc", Role::Decode, 1, 1, EngineSpec::default())];
    spec.links = vec![LinkSpec { from: 0, to: 1, latency: SimDuration::from_millis(1), bandwidth_bytes_s: Some(1e9) }];
    let spec = spec.validate().unwrap();
    let mut sim = Simulation::new(&spec).unwrap().without_workload();
    let req = |id: u64, at_ms: u64| Request::plain(id, SimTime(at_ms * 1_000_000), 2000, 50);
    for id in 0..6 {
        sim.submit(req(id, id * 5)).unwrap();
    }
    let mut rows = Rows::default();
    // Request 0 prefills for 100 ms, then sends 256 MB over a 1 GB/s link.
    sim.step_until(SimTime(10_000_000), &mut rows);
    assert!(sim.cancel(RequestId(1), &mut rows), "queued behind request 0");
    sim.step_until(SimTime(150_000_000), &mut rows);
    assert!(sim.cancel(RequestId(0), &mut rows), "on the wire");
    assert!(!sim.cancel(RequestId(0), &mut rows), "already gone");
    assert!(sim.cancel(RequestId(5), &mut rows), "in the step in progress");
    assert_eq!(sim.submit(req(9, 1)), Err(SubmitError::InThePast { id: 9, arrival: SimTime(1_000_000), now: sim.now() }));
    let totals = sim.run(&mut rows);
    let outcome = |id: u64| rows.0.iter().find(|r| r.id.0 == id).map(|r| r.outcome);
    assert_eq!([0, 1, 5].map(outcome), [Some(Outcome::Cancelled); 3]);
    assert_eq!([2, 3, 4].map(outcome), [Some(Outcome::Finished); 3]);
    assert_eq!(totals.cancelled, 3);
    assert_eq!(rows.0.len(), 6, "each request reported once");
}

/// Every observation a recorder gets, in a canonical order (token gaps as a sorted list:
/// fast-forward reports the later gaps of a batch in bulk).
#[derive(Default)]
struct Everything {
    rows: Vec<String>,
    gaps: Vec<u64>,
    steps: Vec<(u32, u64, u64, u64)>,
}
impl Recorder for Everything {
    fn on_request(&mut self, r: &RequestRecord) {
        self.rows.push(format!("{r:?}"));
    }
    fn on_token_gap(&mut self, gap: SimDuration) {
        self.gaps.push(gap.as_nanos());
    }
    fn on_step(&mut self, i: InstanceId, start: SimTime, d: SimDuration, b: &crate::cost::BatchShape) {
        self.steps.push((i.0, start.as_nanos(), d.as_nanos(), b.decode_context_tokens));
    }
}

/// What a run shows: its per-request lines, token times, step rows and summary.
type Observed = (Vec<String>, Vec<u64>, Vec<(u32, u64, u64, u64)>, String);

fn observe(spec: &ValidSpec) -> Observed {
    let mut rec = Everything::default();
    let totals = Simulation::new(spec).unwrap().run(&mut rec);
    rec.gaps.sort_unstable();
    rec.steps.sort_unstable();
    (rec.rows, rec.gaps, rec.steps, format!("{totals:?}"))
}

/// Random fleets for the fast-forward contract: one to six instances, mixed or split pools,
/// chunked prefill or not, KV pressure (preemptions), prefix caching with shared prefixes,
/// conditional disaggregation, exact or stale telemetry, migrations, open or closed loops
/// (users with no think time send at the instant a request ends), and step costs that grow
/// with the context (roofline, a calibration fit with a frontend latency and a rate of its
/// own for prefix-cached context) or do not (rates:
/// equal batches take equal times, so step ends of different instances often fall on the
/// same nanosecond).
fn random_decode_spec(rng: &mut crate::rng::StreamRng) -> ScenarioSpec {
    let mut spec = random_prefix_spec(rng);
    spec.workload.output = LengthSpec::Uniform { lo: 1, hi: rng.random_range(2..400) };
    if rng.random() {
        spec.workload.prefix = None;
    }
    if rng.random_range(0..4) == 0 {
        // A single mixed instance.
        spec.pools.truncate(1);
        spec.pools[0].role = Role::Mixed;
        spec.pools[0].instances.truncate(1);
        spec.pools[0].local_prefill_threshold = None;
        spec.links.clear();
    }
    spec.hardware[0].perf = match rng.random_range(0..5) {
        // Fixed rates: equal batches take equal times.
        0 => PerfSpec::Rates { prefill_tok_s: 40_000.0, decode_tok_s: 4_000.0, step_overhead: SimDuration::from_micros(500) },
        // A calibration fit, with a frontend latency on every first token (and finish).
        1 => PerfSpec::Fitted {
            // Context in prefix-cached blocks at its own (lower) rate.
            cost: crate::cost::FittedCost {
                c: [4e-3, 5e-5, 1e-9, 2e-9, 2e-5, 3e-8],
                frontend: SimDuration::from_micros(1_700),
                cached_context: Some(7e-9),
                beyond_cache: None,
            },
            tp: None,
        },
        // A roofline GPU: decode steps grow with their context, so every step differs.
        _ => PerfSpec::Roofline { gpu: catalogue::gpu("h100-sxm").unwrap(), params: catalogue::RooflineParams::GENERIC },
    };
    spec.hardware[0].kv_capacity_tokens = Some(rng.random_range(2_000..40_000));
    spec.telemetry.interval = [SimDuration::ZERO, SimDuration::from_millis(10), SimDuration::from_millis(250)][rng.random_range(0..3)];
    match rng.random_range(0..5) {
        0 | 1 => {
            let t = TelemetryPolicySpec { migration_interval: SimDuration::from_millis(rng.random_range(20..300)), ..Default::default() };
            spec.router = RouterSpec::single(PolicySpec::Telemetry(t));
        }
        2 => spec.router = RouterSpec::single(if rng.random() { PolicySpec::RoundRobin } else { PolicySpec::LeastLoaded }),
        _ => {}
    }
    if rng.random_range(0..4) == 0 {
        let think = if rng.random() { SimDuration::ZERO } else { SimDuration::from_millis(rng.random_range(1..300)) };
        spec.workload.arrivals = ArrivalSpec::ClosedLoop { users: rng.random_range(2..24), think };
    }
    spec.run.requests = Some(400);
    spec
}

#[test]
fn fast_forward_gives_the_results_of_stepping_one_by_one() {
    let mut rng = crate::rng::StreamRng::seed_from_u64(17);
    let mut coverage = (0, 0, 0);
    for case in 0..40 {
        let mut spec = random_decode_spec(&mut rng);
        let Ok(on) = spec.validate() else { continue };
        spec.run.fast_forward = false;
        let off = spec.validate().unwrap();
        let (a, b) = (observe(&on), observe(&off));
        assert_eq!(a, b, "case {case}");
        // The shortcut really was taken: fewer events came out of the queue.
        let mut sim = Simulation::new(&on).unwrap();
        sim.step_until(SimTime::MAX, &mut crate::record::NullRecorder);
        let totals = sim.finish(&mut crate::record::NullRecorder);
        let preempted = totals.instances.iter().any(|i| i.preemptions > 0);
        let ff = sim_ff(&on);
        coverage.0 += usize::from(ff > 0);
        coverage.1 += usize::from(ff > 0 && preempted);
        coverage.2 += usize::from(ff > 0 && totals.migrations > 0);
    }
    // The shortcut really was taken, under KV pressure and with migrations too.
    assert!(coverage.0 > 25 && coverage.1 > 3 && coverage.2 > 3, "fast-forward, with preemptions, with migrations: {coverage:?} of 40");
}

/// What a run driven through the stepping API shows: chunks of random length, requests
/// submitted and cancelled between them (the same draws with fast-forward on and off).
fn observe_stepped(spec: &ValidSpec, seed: u64) -> Observed {
    let mut rng = crate::rng::StreamRng::seed_from_u64(seed);
    let mut rec = Everything::default();
    let mut sim = Simulation::new(spec).unwrap();
    let mut t = SimTime::ZERO;
    let mut extra = 0u64;
    while sim.next_event_time().is_some() {
        t += SimDuration::from_micros(rng.random_range(1..60_000));
        sim.step_until(t, &mut rec);
        // The stepping API sees the state at the end of each chunk: a gauge the router
        // publishes is part of what it shows.
        let view = sim.router().view();
        rec.rows.push(format!(
            "{} {:?}",
            sim.now().as_nanos(),
            view.instances.iter().map(|v| (v.kv_free_blocks, v.running, v.waiting)).collect::<Vec<_>>()
        ));
        match rng.random_range(0..4) {
            0 => {
                let id = RequestId(rng.random_range(0..400));
                let hit = sim.cancel(id, &mut rec);
                rec.rows.push(format!("cancel {} {hit}", id.0));
            }
            1 | 2 if extra < 80 => {
                extra += 1;
                let prompt = rng.random_range(10..600);
                // Some share a prefix, longer than their prompt at times: the sequence then
                // registers blocks as it decodes.
                let (prefix_group, prefix_tokens) =
                    if rng.random() { (rng.random_range(1..4), rng.random_range(1..2 * prompt)) } else { (0, 0) };
                let arrival = sim.now() + SimDuration::from_micros(rng.random_range(0..5_000));
                let req = Request {
                    prefix_group,
                    prefix_tokens: Tokens(prefix_tokens),
                    ..Request::plain(1_000_000 + extra, arrival, prompt, rng.random_range(1..200))
                };
                sim.submit(req).unwrap();
            }
            _ => {}
        }
    }
    let totals = sim.run(&mut rec);
    rec.gaps.sort_unstable();
    rec.steps.sort_unstable();
    (rec.rows, rec.gaps, rec.steps, format!("{totals:?}"))
}

#[test]
fn fast_forward_under_the_stepping_api_gives_the_results_of_stepping_one_by_one() {
    let mut rng = crate::rng::StreamRng::seed_from_u64(23);
    let mut taken = 0;
    for case in 0..16 {
        let mut spec = random_decode_spec(&mut rng);
        let Ok(on) = spec.validate() else { continue };
        spec.run.fast_forward = false;
        let off = spec.validate().unwrap();
        let seed = rng.random();
        assert_eq!(observe_stepped(&on, seed), observe_stepped(&off, seed), "case {case}");
        taken += usize::from(sim_ff(&on) > 0);
    }
    assert!(taken > 8, "fast-forward taken in {taken} of 16");
}

fn sim_ff(spec: &ValidSpec) -> u64 {
    let mut sim = Simulation::new(spec).unwrap();
    sim.step_until(SimTime::MAX, &mut crate::record::NullRecorder);
    sim.fast_forwarded_steps()
}

#[test]
fn fast_forward_stops_where_kv_blocks_run_out_and_the_step_preempts() {
    // Eight long decodes that cannot all fit: the cache runs out mid-decode, repeatedly.
    let mut spec = base_spec();
    spec.hardware = vec![HardwareSpec {
        perf: PerfSpec::Roofline { gpu: catalogue::gpu("h100-sxm").unwrap(), params: catalogue::RooflineParams::GENERIC },
        ..rates("g", 1.0, 1.0, 4_000)
    }];
    spec.pools = vec![pool("m", Role::Mixed, 0, 1, EngineSpec::default())];
    spec.workload.arrivals = ArrivalSpec::Poisson { rate_per_s: 1000.0, burst: None };
    spec.workload.prompt = LengthSpec::Uniform { lo: 50, hi: 300 };
    spec.workload.output = LengthSpec::Uniform { lo: 600, hi: 1500 };
    spec.run.requests = Some(8);
    let on = spec.clone().validate().unwrap();
    spec.run.fast_forward = false;
    let off = spec.validate().unwrap();
    assert_eq!(observe(&on), observe(&off));
    let mut sim = Simulation::new(&on).unwrap();
    sim.step_until(SimTime::MAX, &mut crate::record::NullRecorder);
    let ff = sim.fast_forwarded_steps();
    let totals = sim.finish(&mut crate::record::NullRecorder);
    assert!(totals.instances[0].preemptions >= 2, "{}", totals.instances[0].preemptions);
    assert!(ff > totals.instances[0].steps / 2, "most steps are fast-forwarded: {ff} of {}", totals.instances[0].steps);
}

#[test]
fn fast_forward_keeps_the_order_of_events_that_share_a_nanosecond() {
    // Token rates so high that every step lasts exactly its overhead: the instances tick on
    // one 500 µs grid from t = 0, so every step end, arrival of a closed-loop user without
    // think time, telemetry refresh and migration planning falls on the nanosecond of other
    // instances' (fast-forwarded) step ends.
    let mut rng = crate::rng::StreamRng::seed_from_u64(29);
    let mut taken = 0;
    for case in 0..12 {
        let mut spec = random_decode_spec(&mut rng);
        spec.hardware[0].perf = PerfSpec::Rates { prefill_tok_s: 1e13, decode_tok_s: 1e13, step_overhead: SimDuration::from_micros(500) };
        spec.workload.arrivals = ArrivalSpec::ClosedLoop { users: rng.random_range(2..40), think: SimDuration::ZERO };
        spec.telemetry.interval = [SimDuration::ZERO, SimDuration::from_millis(5)][rng.random_range(0..2)];
        if case % 3 == 0 {
            let t = TelemetryPolicySpec { migration_interval: SimDuration::from_millis(20), ..Default::default() };
            spec.router = RouterSpec::single(PolicySpec::Telemetry(t));
        }
        let Ok(on) = spec.validate() else { continue };
        spec.run.fast_forward = false;
        let off = spec.validate().unwrap();
        assert_eq!(observe(&on), observe(&off), "case {case}");
        let seed = rng.random();
        assert_eq!(observe_stepped(&on, seed), observe_stepped(&off, seed), "case {case}, stepped");
        taken += usize::from(sim_ff(&on) > 0);
    }
    assert!(taken > 6, "fast-forward taken in {taken} of 12");
}

#[test]
fn fast_forward_leaves_alone_sequences_whose_shared_prefix_outgrows_their_prompt() {
    // Request 0 shares an 8,000-token prefix but has a prompt of 32: as it decodes, its blocks
    // keep filling inside the prefix and are registered under the group's hashes. Request 1
    // of the group, 4,000 tokens, arrives while it decodes: KV-aware routing weighs the blocks
    // cached on request 0's instance against its load, and takes it only when the decoded
    // blocks are there to see.
    let mut spec = base_spec();
    spec.hardware = vec![HardwareSpec {
        perf: PerfSpec::Roofline { gpu: catalogue::gpu("h100-sxm").unwrap(), params: catalogue::RooflineParams::GENERIC },
        ..rates("g", 1.0, 1.0, 200_000)
    }];
    spec.pools = vec![pool("m", Role::Mixed, 0, 2, EngineSpec::default())];
    spec.router = RouterSpec::single(PolicySpec::KvAware(KvAwarePolicySpec { prefill_load_scale: 10.0, temperature: 0.0 }));
    let observed = |ff: bool| {
        let mut spec = spec.clone();
        spec.run.fast_forward = ff;
        let spec = spec.validate().unwrap();
        let mut sim = Simulation::new(&spec).unwrap().without_workload();
        for (id, at_ms, prompt) in [(0u64, 0u64, 32u32), (1, 10_000, 4_000)] {
            let req =
                Request { prefix_group: 1, prefix_tokens: Tokens(8_000), ..Request::plain(id, SimTime(at_ms * 1_000_000), prompt, 4_000) };
            sim.submit(req).unwrap();
        }
        let mut rec = Rows::default();
        let totals = sim.run(&mut rec);
        let rows: Vec<String> = rec.0.iter().map(|r| format!("{r:?}")).collect();
        (rec.0.iter().map(|r| (r.id.0, r.prefill_instance)).collect::<Vec<_>>(), rows, rec.1, format!("{totals:?}"))
    };
    let off = observed(false);
    let on = observed(true);
    // Stepping one by one, request 1 follows request 0 for its decoded prefix blocks.
    let instance_of = |id: u64| off.0.iter().find(|r| r.0 == id).map(|r| r.1);
    assert_eq!(instance_of(0), instance_of(1), "{:?}", off.1);
    assert_eq!(on, off);
}

/// Every step's (prefill sequences, prefill tokens, decode sequences), in order.
#[derive(Default)]
struct Shapes(Vec<(u32, u32, u32)>);
impl Recorder for Shapes {
    fn on_step(&mut self, _i: InstanceId, _start: SimTime, _d: SimDuration, b: &crate::cost::BatchShape) {
        self.0.push((b.prefill_seqs, b.prefill_tokens, b.decode_seqs));
    }
}

fn shapes(spec: ScenarioSpec) -> Vec<(u32, u32, u32)> {
    let mut rec = Shapes::default();
    Simulation::new(&spec.validate().unwrap()).unwrap().run(&mut rec);
    rec.0
}

fn with_scheduler(mut spec: ScenarioSpec, s: Scheduler) -> ScenarioSpec {
    for p in &mut spec.pools {
        p.engine.scheduler = s;
    }
    spec
}

#[test]
fn sglang_steps_are_prefill_batches_or_decode_batches_and_prefills_go_first() {
    let mut spec = base_spec();
    spec.hardware = vec![rates("g", 20_000.0, 2_000.0, 200_000)];
    spec.pools = vec![pool("m", Role::Mixed, 0, 1, EngineSpec { max_batch_tokens: 1024, ..EngineSpec::default() })];
    spec.workload.arrivals = ArrivalSpec::Poisson { rate_per_s: 40.0, burst: None };
    spec.workload.output = LengthSpec::Uniform { lo: 2, hi: 200 };
    spec.run.requests = Some(300);
    let mixed = |s: &[(u32, u32, u32)]| s.iter().filter(|&&(p, _, d)| p > 0 && d > 0).count();
    // vLLM's rule mixes them (the test can tell the rules apart) ...
    assert!(mixed(&shapes(with_scheduler(spec.clone(), Scheduler::Vllm))) > 50);
    // ... SGLang's never does, and a prefill batch never exceeds the token budget.
    let sg = shapes(with_scheduler(spec, Scheduler::Sglang));
    assert_eq!(mixed(&sg), 0);
    assert!(sg.iter().all(|&(_, t, _)| t <= 1024));
    assert!(sg.iter().filter(|&&(p, _, _)| p > 0).count() > 100 && sg.iter().filter(|&&(_, _, d)| d > 0).count() > 100);
}

#[test]
fn sglang_admits_a_request_only_when_its_whole_output_and_the_running_reservations_fit() {
    // 4,000 tokens of KV (250 blocks of 16), four requests of 100 prompt and 2,000 output
    // tokens at once. Worked by hand with SGLang's rule:
    // step 1: nothing runs; request 1 needs 100 + 2000 = 2100 < 4000: admitted; request 2
    //   then needs 2100, and 4000 − 2100 = 1900 is less: a prefill batch of one.
    // step 2: request 1 holds 7 blocks (101 tokens → 112) and will generate 1999 more,
    //   reserved at 0.7 (no decode step yet): room 3888 − 1399.3 = 2488.7 > 2100: request 2
    //   is prefilled, alone (prefills first, request 1 does not decode in it).
    // step 3: two hold 224 tokens and reserve 0.7 × 3998: room 977: a decode batch of 2.
    // After k more decode steps the room is about 3776 − 2k − 2(1999 − k)(0.7 − 0.001k):
    // above 2100 near k = 450, long before either finishes (2,000 steps).
    // vLLM's rule takes all four prompts (4 × 7 blocks) in step 1.
    let mut spec = base_spec();
    spec.hardware = vec![rates("g", 20_000.0, 2_000.0, 4_000)];
    spec.pools = vec![pool("m", Role::Mixed, 0, 1, EngineSpec { prefix_caching: false, ..EngineSpec::default() })];
    spec.workload.arrivals = ArrivalSpec::ClosedLoop { users: 4, think: SimDuration::ZERO };
    spec.workload.prompt = LengthSpec::Constant(100);
    spec.workload.output = LengthSpec::Constant(2000);
    spec.run.requests = Some(4);
    let sg = shapes(with_scheduler(spec.clone(), Scheduler::Sglang));
    assert_eq!(&sg[..3], &[(1, 100, 0), (1, 100, 0), (0, 0, 2)], "{:?}", &sg[..4]);
    let vl = shapes(with_scheduler(spec, Scheduler::Vllm));
    assert_eq!(vl[0], (4, 400, 0));
    // As the two decode, their reservation shrinks (fewer tokens left, a falling ratio) and
    // the third is admitted before either finishes: a later prefill batch of one, while two
    // are still decoding (the step after it decodes three).
    let third = 3 + sg[3..].iter().position(|&(p, _, _)| p == 1).expect("a third prefill");
    assert!(sg[3..third].iter().all(|&s| s == (0, 0, 2)), "{:?}", &sg[..third + 2]);
    assert!((400..500).contains(&third), "third admitted at step {third}");
    assert_eq!(sg[third + 1], (0, 0, 3));
}

#[test]
fn fast_forward_under_sglangs_rule_gives_the_results_of_stepping_one_by_one() {
    let mut rng = crate::rng::StreamRng::seed_from_u64(31);
    let mut taken = 0;
    for case in 0..24 {
        let mut spec = with_scheduler(random_decode_spec(&mut rng), Scheduler::Sglang);
        let Ok(on) = spec.validate() else { continue };
        spec.run.fast_forward = false;
        let off = spec.validate().unwrap();
        assert_eq!(observe(&on), observe(&off), "case {case}");
        taken += usize::from(sim_ff(&on) > 0);
    }
    assert!(taken > 12, "fast-forward taken in {taken} of 24");
}

#[test]
fn the_scheduler_follows_the_backend_unless_named() {
    let kernels = |b| PerfSpec::Kernels {
        gpu: catalogue::gpu("h100-sxm").unwrap(),
        backend: b,
        overheads: crate::kernels::KernelOverheads::ZERO,
        expert_parallel: false,
    };
    assert_eq!(Scheduler::Auto.resolve(&kernels(catalogue::Backend::Sglang)), Scheduler::Sglang);
    assert_eq!(Scheduler::Auto.resolve(&kernels(catalogue::Backend::Vllm)), Scheduler::Vllm);
    assert_eq!(Scheduler::Vllm.resolve(&kernels(catalogue::Backend::Sglang)), Scheduler::Vllm);
    assert_eq!(
        Scheduler::Sglang.resolve(&PerfSpec::Rates { prefill_tok_s: 1.0, decode_tok_s: 1.0, step_overhead: SimDuration::ZERO }),
        Scheduler::Sglang
    );
}

/// Instances are reached only through a proof that they are up to date (`Held`, `CaughtUp`),
/// and only fast-forward makes the proofs or reads an instance behind the event in process:
/// no other part of the simulation can see a stale instance.
#[test]
fn only_fast_forward_vouches_for_an_instance_or_reads_one_lazily() {
    let files: [(&str, &str); 11] = [
        ("accounting.rs", include_str!("accounting.rs")),
        ("arrivals.rs", include_str!("arrivals.rs")),
        ("build.rs", include_str!("build.rs")),
        ("cancel.rs", include_str!("cancel.rs")),
        ("link.rs", include_str!("link.rs")),
        ("migrate.rs", include_str!("migrate.rs")),
        ("mod.rs", include_str!("mod.rs")),
        ("steps.rs", include_str!("steps.rs")),
        ("transfer.rs", include_str!("transfer.rs")),
        ("cluster.rs", include_str!("cluster.rs")),
        ("fastforward.rs", include_str!("fastforward.rs")),
    ];
    let mut found = Vec::new();
    for (name, text) in files {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for what in ["vouch(", ".lazy(", ".lazy_mut(", "Held {", "CaughtUp("] {
                if code.contains(what) {
                    found.push((name, what, n + 1));
                }
            }
        }
    }
    let outside: Vec<_> = found
        .iter()
        .filter(|(name, what, _)| match *name {
            "fastforward.rs" | "cluster.rs" => false,
            // The instances are up to date before the first event.
            "build.rs" => *what != "vouch(",
            _ => true,
        })
        .collect();
    assert!(outside.is_empty(), "outside fast-forward: {outside:?}");
    // The scan sees what it looks for.
    assert!(found.iter().any(|(name, what, _)| *name == "fastforward.rs" && *what == "vouch("));
    assert!(found.iter().any(|(name, what, _)| *name == "fastforward.rs" && *what == ".lazy_mut("));
}
