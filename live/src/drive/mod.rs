//! Live runs: a scenario's workload sent on schedule to real engines, placed by the same
//! policy objects through the same [`RouterHost`] as the simulator, and recorded through the
//! same [`Recorder`], so `requests.csv` and `summary.json` of a live run read like those of
//! `simctl run`.
//!
//! One control loop owns the router host, the recorder and every request's state; request
//! streams and `/metrics` scrapes run as tasks that report back to it over a channel, so the
//! policies see events one at a time, in order, as in the simulator:
//!
//! - **arrivals**: the workload generator of the scenario (arrival processes, trace replays
//!   with `speedup`, `start`, `end`, `limit`, classes, priorities, closed loops) gives each
//!   request and its scheduled time; the loop routes it when the time comes and a task sends
//!   it, streamed, with a token-id prompt of its exact length ([`crate::prompt`]),
//!   `max_tokens` and `ignore_eos`. How late each send is against its schedule is kept.
//! - **gauges**: every engine's `/metrics` is scraped every `telemetry.interval` (at most
//!   every [`LiveOptions::min_scrape`]) into the view the policies read; the router's own
//!   counters (requests in flight, prefill tokens queued) are exact, as in the simulator.
//! - **prefix overlaps**: the router keeps its own index of which prompt blocks it sent
//!   where (registered when it sends them: the engine schedules in arrival order, so a later
//!   request it schedules finds them computed; evicted least recently used beyond the
//!   engine's KV blocks), since vLLM publishes no KV events over HTTP.
//! - **split pools**: vLLM engines here cannot move KV between them, so a disaggregated
//!   scenario runs in the original lab's dual-pool mode: prompts at or above the decode
//!   pool's `local_prefill_threshold` go to the prefill pool, the rest to the decode pool,
//!   each served whole where it lands. Migrations the planner asks for are logged as
//!   advisory and counted, not carried out.
//! - **failures** (HTTP errors, timeouts, stalls, dropped streams) are recorded as failed
//!   requests with their error, never dropped; the policies hear of them. An engine that
//!   fails or goes silent is taken out of routing and put back when its probe answers
//!   ([`crate::health`]); a request it refused before any output is sent once more elsewhere.
//! - **context**: before the first request, every request is checked against the engines'
//!   `max_model_len` ([`crate::preflight`]).
//! - **stopping**: when the stop flag is raised (Ctrl-C), sending stops, requests in flight
//!   get [`LiveOptions::grace`] to finish, and whatever is still running then is recorded as
//!   unfinished.

mod engines;
mod requests;
mod setup;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use simctl_engine::record::{DepthSeries, Outcome, PoolStats, Reason, Recorder, RunTotals};
use simctl_engine::request::Request;
use simctl_engine::rng::RunSeed;
use simctl_engine::router::{ClusterView, DecodingSeq, InstanceId, RouteError, RouterHost};
use simctl_engine::spec::ValidSpec;
use simctl_engine::time::{SimDuration, SimTime};
use simctl_engine::units::Tokens;
use simctl_engine::workload::{Next, WorkloadGen};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::{ClientConfig, ClientError};
use crate::health::{Availability, Health, HealthConfig, engine_fault};
use crate::preflight;
use crate::prompt::PromptMaker;
use engines::{delta, gauges, instance_stats, instances};
use requests::{Flight, Msg, dispatch, note_change, reason_of, record, send};
use setup::{Connected, connect, live_router, views};

/// Scrapes no more often than this by default (a vLLM `/metrics` answer costs the engine a
/// few milliseconds of CPU).
pub const DEFAULT_MIN_SCRAPE: Duration = Duration::from_millis(100);
/// Time requests in flight get to finish after a stop, by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// A run whose send lag p95 passes this fell behind its schedule.
pub const LAG_P95_LIMIT: Duration = Duration::from_millis(10);
/// ... or whose largest send lag passes this.
pub const LAG_MAX_LIMIT: Duration = Duration::from_millis(100);
/// Sends are timed by sleeping to this much before their time, then yielding until it
/// comes (tokio's timers have millisecond granularity).
const SPIN: Duration = Duration::from_micros(1500);
/// How often the loop checks the stop flag and reports progress.
const TICK: Duration = Duration::from_millis(100);

/// One engine a scenario instance is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    /// The scenario's instance name.
    pub instance: String,
    /// Its base URL.
    pub url: String,
}

/// How a live run behaves.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// The served model to ask for; `None`: the first one the first engine lists.
    pub model: Option<String>,
    /// Client timeouts.
    pub client: ClientConfig,
    /// Time requests in flight get to finish after a stop.
    pub grace: Duration,
    /// Shortest time between two scrapes of one engine.
    pub min_scrape: Duration,
    /// How prompts become token ids.
    pub prompts: PromptMaker,
    /// The run's seed (workload draws, the policies' draws).
    pub seed: RunSeed,
    /// Raised to stop sending (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// What raised it, for the summary (`Ctrl-C`, `SIGTERM`), asked once it is raised.
    pub stop_cause: fn() -> &'static str,
    /// When an engine is taken out of routing ([`crate::health`]).
    pub health: HealthConfig,
    /// Send requests that exceed an engine's context shortened to fit
    /// ([`crate::preflight::clip`]) instead of refusing the run.
    pub clip: bool,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            model: None,
            client: ClientConfig::default(),
            grace: DEFAULT_GRACE,
            min_scrape: DEFAULT_MIN_SCRAPE,
            prompts: PromptMaker::default(),
            seed: RunSeed(0),
            stop: Arc::new(AtomicBool::new(false)),
            stop_cause: || "Ctrl-C",
            health: HealthConfig::default(),
            clip: false,
        }
    }
}

/// A progress report, about once a second.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Since the start.
    pub elapsed: Duration,
    /// Requests sent.
    pub sent: u64,
    /// Requests finished.
    pub finished: u64,
    /// Requests failed.
    pub failed: u64,
    /// Requests in flight.
    pub in_flight: usize,
    /// TTFT p50 and p95 of the last requests to get a first token, ms.
    pub ttft_p50_ms: Option<f64>,
    /// See `ttft_p50_ms`.
    pub ttft_p95_ms: Option<f64>,
    /// Whether sending has stopped (the workload is done, or a stop was asked for).
    pub stopping: bool,
}

/// What a live run adds to a summary, besides the records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveFigures {
    /// `aggregated`, or `dual_pool` (see the module docs).
    pub mode: &'static str,
    /// Prompt tokens from which a request went to the long-prompt pool.
    pub split_at: Option<u32>,
    /// The served model.
    pub model: String,
    /// Engine URL per instance name.
    pub endpoints: BTreeMap<String, String>,
    /// Send lag of every request, ms.
    pub send_lag_ms: Vec<f64>,
    /// Migrations planned and logged, not carried out.
    pub advisory_migrations: u64,
    /// Prompt tokens the router expected the prefix caches to serve.
    pub expected_prefix_hit_tokens: u64,
    /// `vllm:prefix_cache_hits_total` over the run, summed over engines.
    pub engine_prefix_hit_tokens: Option<u64>,
    /// `vllm:prefix_cache_queries_total` over the run.
    pub engine_prefix_query_tokens: Option<u64>,
    /// Scrapes done.
    pub scrapes: u64,
    /// Scrapes failed.
    pub scrape_errors: u64,
    /// The last scrape error.
    pub last_scrape_error: Option<String>,
    /// Whether a stop ended sending early.
    pub interrupted: bool,
    /// Requests still in flight when the grace period ran out.
    pub abandoned: u64,
    /// Every scrape the router used, in the order it used them.
    pub gauges: Vec<GaugeRow>,
    /// The smallest context (prompt plus output tokens) of the engines, when they say.
    pub context_limit: Option<u32>,
    /// Requests sent shortened to fit it (`--clip`).
    pub clipped: u64,
    /// Requests preflight checked against it, and whether that was all of the run's.
    pub preflight_checked: u64,
    /// See `preflight_checked`.
    pub preflight_all: bool,
    /// Requests sent again to another engine after theirs could not take them (refused,
    /// reset or 5xx before any output).
    pub rerouted: u64,
    /// Each engine's time in routing, by instance name (in instance order).
    pub availability: Vec<(String, Availability)>,
    /// Engines taken out of routing and put back: `(when, instance, what)`.
    pub health_events: Vec<(SimTime, String, String)>,
}

/// One engine's gauges as the router took them in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaugeRow {
    /// When the engine answered.
    pub scraped: SimTime,
    /// When the router put them in its view (the view decisions read from then on).
    pub published: SimTime,
    /// The instance.
    pub instance: InstanceId,
    /// `vllm:num_requests_waiting`.
    pub waiting: u32,
    /// `vllm:num_requests_running`.
    pub running: u32,
    /// `vllm:kv_cache_usage_perc` (a fraction).
    pub kv_usage: f64,
    /// Free KV blocks as the view holds them.
    pub kv_free_blocks: u32,
}

/// A finished live run.
#[derive(Clone, Debug)]
pub struct LiveResult {
    /// Totals in the simulator's shape (window, per-instance and per-pool statistics from
    /// the scraped gauges, queue depth over time).
    pub totals: RunTotals,
    /// What only a live run has.
    pub figures: LiveFigures,
}

/// Why a live run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// An engine did not answer as it should before the run.
    #[error("engine of instance `{instance}`: {error}")]
    Engine {
        /// The instance.
        instance: String,
        /// What went wrong.
        error: ClientError,
    },
    /// The scenario and the engines do not fit together.
    #[error("{0}")]
    Setup(String),
}

fn at_of(start: Instant, t: Instant) -> SimTime {
    SimTime(u64::try_from(t.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX))
}

fn instant_of(start: Instant, t: SimTime) -> Instant {
    start + Duration::from_nanos(t.0)
}

/// Runs `spec`'s workload against `engines` (one per instance, in instance order).
pub async fn run_live<R: Recorder>(
    spec: &ValidSpec,
    engines: &[Engine],
    opts: &LiveOptions,
    rec: &mut R,
    progress: &mut dyn FnMut(&Progress),
) -> Result<LiveResult, LiveError> {
    let insts = instances(spec);
    if engines.len() != insts.len() {
        return Err(LiveError::Setup(format!(
            "the scenario has {} instances ({}) but {} engines were given; bind one engine to each",
            insts.len(),
            insts.iter().map(|i| i.2.as_str()).collect::<Vec<_>>().join(", "),
            engines.len()
        )));
    }
    let (router, split_at) = live_router(spec)?;
    let Connected { clients, model, limits, mut accs } = connect(spec, engines, opts, &insts, &router).await?;
    // Every request the run will send fits the engines' context, or nothing is sent.
    let checked = match limits.smallest() {
        Some(_) => Some(preflight::check(spec, opts.seed, &limits, opts.clip).map_err(LiveError::Setup)?),
        None => None,
    };
    let context_limit = limits.smallest();

    let views = views(&insts, &accs);
    let mut host = RouterHost::new(&router, &spec.telemetry, ClusterView::new(views), opts.seed);
    host.use_index();
    let mut workload = WorkloadGen::new(&spec.workload, opts.seed).map_err(|e| LiveError::Setup(e.to_string()))?;
    let closed = workload.closed_loop();

    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let mut tasks = JoinSet::new();
    let interval = spec.telemetry.interval.as_nanos().max(u64::try_from(opts.min_scrape.as_nanos()).unwrap_or(u64::MAX));
    let scrape_every = Duration::from_nanos(interval);
    // Silence counts from when the next scrape was due.
    let mut health = Health::new(engines.len(), HealthConfig { silent_after: opts.health.silent_after + scrape_every }, start);
    let scrapers_stop = Arc::new(AtomicBool::new(false));
    // Raised while an engine is out of routing: its scraper probes /health instead.
    let out_flags: Vec<Arc<AtomicBool>> = (0..clients.len()).map(|_| Arc::new(AtomicBool::new(false))).collect();
    for (i, c) in clients.iter().enumerate() {
        let (c, tx, halt, out) = (c.clone(), tx.clone(), scrapers_stop.clone(), out_flags[i].clone());
        tokio::spawn(async move {
            let mut next = Instant::now();
            while !halt.load(Ordering::Relaxed) {
                let msg = if out.load(Ordering::Relaxed) {
                    Msg::Probe { i, at: Instant::now(), result: c.health().await }
                } else {
                    Msg::Scrape { i, at: Instant::now(), result: c.metrics().await }
                };
                if tx.send(msg).is_err() {
                    break;
                }
                next += scrape_every;
                let now = Instant::now();
                if next < now {
                    next = now;
                }
                tokio::time::sleep_until(next.into()).await;
            }
        });
    }

    let mut figures = LiveFigures {
        mode: if split_at.is_some() { "dual_pool" } else { "aggregated" },
        split_at,
        model: model.clone(),
        endpoints: engines.iter().map(|e| (e.instance.clone(), e.url.clone())).collect(),
        context_limit,
        preflight_checked: checked.as_ref().map_or(0, |c| c.checked),
        preflight_all: checked.as_ref().is_some_and(|c| c.all),
        ..Default::default()
    };
    let mut depth_series: Vec<DepthSeries> = spec.pools.iter().map(|p| DepthSeries::new(p.name.clone())).collect();
    let mut pool_depth_max = vec![0u32; spec.pools.len()];
    let mut flights: HashMap<u64, Flight> = HashMap::new();
    let mut use_clock = 0u64;
    let mut recent_ttft: std::collections::VecDeque<f64> = std::collections::VecDeque::new();
    let (mut sent, mut finished, mut failed, mut arrived, mut events) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut first_arrival, mut last_departure): (Option<SimTime>, Option<SimTime>) = (None, None);
    let mut peak = 0usize;
    let mut stopping = false;
    let mut grace_end: Option<Instant> = None;
    let mut last_progress = Instant::now();
    let migrate_every = host.migration_interval().map(|d| Duration::from_nanos(d.as_nanos()));
    let mut next_migrate = migrate_every.map(|d| start + d);

    // The next request of an open loop, or the closed-loop users' next sends.
    let mut pending: Option<Request> = None;
    let mut users: BinaryHeap<Reverse<(SimTime, u32)>> = BinaryHeap::new();
    if let Some((n, _)) = closed {
        for u in 0..n {
            users.push(Reverse((SimTime::ZERO, u)));
        }
    }
    let requests_cap = spec.run.requests;
    let mut exhausted = false;
    // The simulator's rule for when arrivals end.
    let next_open = |w: &mut WorkloadGen, arrived: u64| -> Option<Request> {
        match w.next_within(&spec.run, arrived) {
            Next::Send(r) => Some(r),
            Next::Over { .. } => None,
        }
    };
    if closed.is_none() {
        pending = next_open(&mut workload, 0);
        exhausted = pending.is_none();
    }

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let closed_open = |arrived: u64, at: SimTime| WorkloadGen::user_may_send(&spec.run, arrived, at).0;
        // A closed loop sends while its users are within the run's bounds (a user in flight
        // comes back when its request ends).
        if closed.is_some() {
            exhausted = !users
                .peek()
                .map_or(!flights.is_empty() && requests_cap.is_none_or(|n| arrived < n), |Reverse((t, _))| closed_open(arrived, *t));
        }
        let sending = !stopping && !exhausted;
        if !sending && flights.is_empty() {
            break;
        }
        let next_send: Option<SimTime> = if !sending {
            None
        } else if closed.is_some() {
            users.peek().map(|Reverse((t, _))| *t)
        } else {
            pending.as_ref().map(|r| r.arrival)
        };
        // Timers fire at millisecond granularity: sleep to within `SPIN` of the send time, then
        // go round the loop (serving messages) until it comes, so sends are not late by a
        // timer tick.
        let wake = next_send.map(|t| instant_of(start, t));
        let sleep_to = wake.map(|w| w.checked_sub(SPIN).unwrap_or(w));
        if let (Some(w), Some(s)) = (wake, sleep_to)
            && (s..w).contains(&Instant::now())
        {
            // The last stretch: let the other tasks run, then look again.
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            biased;
            Some(msg) = rx.recv() => {
                events += 1;
                match msg {
                    Msg::Sent { id, at } => {
                        if let Some(f) = flights.get_mut(&id)
                            && f.sent.is_none()
                        {
                            let t = at_of(start, at);
                            figures.send_lag_ms.push((t.0.saturating_sub(f.req.arrival.0)) as f64 / 1e6);
                            f.sent = Some(t);
                            first_arrival = Some(first_arrival.map_or(t, |a| a.min(t)));
                        }
                    }
                    Msg::First { id, at } => {
                        let Some(f) = flights.get_mut(&id) else { continue };
                        let t = at_of(start, at);
                        f.first = Some(t);
                        let ttft = t - f.sent.unwrap_or(t);
                        host.prefill_done(f.inst, std::mem::take(&mut f.charged));
                        host.on_first_token(f.inst, ttft);
                        recent_ttft.push_back(ttft.as_millis_f64());
                        if recent_ttft.len() > 200 {
                            recent_ttft.pop_front();
                        }
                    }
                    Msg::Done { id, result } => {
                        let Some(f) = flights.remove(&id) else { continue };
                        let now = at_of(start, Instant::now());
                        last_departure = Some(now);
                        if f.charged > Tokens::ZERO {
                            host.prefill_done(f.inst, f.charged);
                        }
                        host.left(f.inst);
                        let sent_at = f.sent.unwrap_or(now);
                        let mut r = record(&f.req, f.inst);
                        r.arrival = sent_at;
                        match result {
                            Ok(sc) => {
                                r.generated_tokens = Tokens(sc.output_tokens);
                                r.first_token = sc.ttft().map(|d| sent_at + d);
                                r.finish = sc.e2e().map(|d| sent_at + d);
                                r.max_itl = sc.timer.itl.iter().copied().max().unwrap_or(SimDuration::ZERO);
                                for &g in &sc.timer.itl {
                                    rec.on_token_gap(g);
                                }
                                if sc.output_tokens == 0 || r.first_token.is_none() {
                                    r.outcome = Outcome::Failed;
                                    r.reason = Some(Reason::HttpError);
                                    failed += 1;
                                    host.on_request_failed(f.inst);
                                    rec.on_request_error(&r, "the stream ended without output tokens");
                                } else {
                                    r.outcome = Outcome::Finished;
                                    finished += 1;
                                    health.on_request_ok(f.inst.index());
                                    host.on_request_complete(f.inst, r.tpot());
                                    rec.on_request(&r);
                                }
                            }
                            Err(e) => {
                                host.on_request_failed(f.inst);
                                let fault = engine_fault(&e);
                                if let Some(c) = health.on_request_error(f.inst.index(), Instant::now(), &e) {
                                    let k = f.inst.index();
                                    note_change(&mut host, &mut figures, &out_flags[k], f.inst, &engines[k].instance, c, now);
                                }
                                // Refused, reset or 5xx before any output: the request is sent
                                // once more, to an engine still in routing.
                                let again = if fault && f.first.is_none() && !f.rerouted && !stopping {
                                    // Anywhere but where it failed.
                                    let was = host.is_routable(f.inst);
                                    host.set_routable(f.inst, false);
                                    let to = host.route_prefill(now, &f.req, None, rec).ok();
                                    host.set_routable(f.inst, was);
                                    to
                                } else {
                                    None
                                };
                                if let Some(inst) = again {
                                    let charged = dispatch(&mut host, &mut accs[inst.index()], &mut figures, &mut use_clock, inst, &f.req);
                                    send(&mut tasks, clients[inst.index()].clone(), tx.clone(), opts.prompts, &model, &f.req);
                                    figures.rerouted += 1;
                                    flights.insert(id, Flight { inst, charged, rerouted: true, first: None, ..f });
                                    continue;
                                }
                                r.first_token = f.first;
                                r.outcome = Outcome::Failed;
                                r.reason = Some(reason_of(&e));
                                failed += 1;
                                rec.on_request_error(&r, &e.to_string());
                            }
                        }
                        if f.user != u32::MAX {
                            users.push(Reverse((now + workload.think_time(), f.user)));
                        }
                    }
                    Msg::Probe { i, at, result } => {
                        // An engine out of routing comes back when /health says it is healthy.
                        let change = match &result {
                            Err(e) => health.on_probe_error(i, at, e),
                            Ok(()) => health.on_answer(i, at),
                        };
                        if let Some(c) = change {
                            note_change(&mut host, &mut figures, &out_flags[i], InstanceId(i as u32), &engines[i].instance, c, at_of(start, at));
                        }
                    }
                    Msg::Scrape { i, at, result } => {
                        figures.scrapes += 1;
                        let change = match &result {
                            Err(e) => health.on_probe_error(i, at, e),
                            // While it is out, only /health puts it back.
                            Ok(_) if health.is_in(i) => health.on_answer(i, at),
                            Ok(_) => None,
                        };
                        if let Some(c) = change {
                            note_change(&mut host, &mut figures, &out_flags[i], InstanceId(i as u32), &engines[i].instance, c, at_of(start, at));
                        }
                        match result {
                            Err(e) => {
                                figures.scrape_errors += 1;
                                figures.last_scrape_error = Some(format!("{}: {e}", engines[i].instance));
                            }
                            Ok(m) => {
                                let t = at_of(start, at);
                                let g = gauges(&mut accs[i], &m, t);
                                host.publish(InstanceId(i as u32), g);
                                figures.gauges.push(GaugeRow {
                                    scraped: t,
                                    published: at_of(start, Instant::now()),
                                    instance: InstanceId(i as u32),
                                    waiting: g.waiting,
                                    running: g.running,
                                    kv_usage: m.kv_cache_usage().unwrap_or(0.0),
                                    kv_free_blocks: g.kv_free_blocks.get(),
                                });
                                let pool = insts[i].0;
                                let depth: u32 = (0..insts.len()).filter(|k| insts[*k].0 == pool).map(|k| accs[k].depth).sum();
                                depth_series[pool].note(t, depth);
                                pool_depth_max[pool] = pool_depth_max[pool].max(depth);
                            }
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(sleep_to.unwrap_or_else(Instant::now).into()), if wake.is_some() => {
                if wake.is_some_and(|w| Instant::now() < w) {
                    continue;
                }
                events += 1;
                let (req, user) = if closed.is_some() {
                    let Reverse((t, u)) = users.pop().expect("a user is ready");
                    (workload.request_at(t), u)
                } else {
                    let r = pending.take().expect("a request is due");
                    (r, u32::MAX)
                };
                arrived += 1;
                let now = at_of(start, Instant::now());
                match route_fail_open(&mut host, &health, now, &req, rec) {
                    Err(_) => {
                        let mut r = record(&req, InstanceId(u32::MAX));
                        (r.prefill_instance, r.decode_instance) = (None, None);
                        r.outcome = Outcome::Rejected;
                        r.reason = Some(Reason::NoRoute);
                        rec.on_request(&r);
                        if user != u32::MAX {
                            users.push(Reverse((now, user)));
                        }
                    }
                    Ok(inst) => {
                        // Routed by its own lengths; sent to fit the chosen engine's context
                        // (preflight let a request that does not fit through only under --clip;
                        // one past what preflight drew is held to the same rule).
                        let mut req = req;
                        if let Some(l) = limits.of(inst.index())
                            && !preflight::fits(&req, l)
                        {
                            if !opts.clip {
                                // Past what preflight drew (an unbounded run): refused, not sent.
                                let mut r = record(&req, inst);
                                r.outcome = Outcome::Rejected;
                                r.reason = Some(Reason::ExceedsContext);
                                rec.on_request(&r);
                                if user != u32::MAX {
                                    users.push(Reverse((now, user)));
                                }
                                if closed.is_none() {
                                    pending = next_open(&mut workload, arrived);
                                    exhausted = pending.is_none();
                                }
                                continue;
                            }
                            preflight::clip(&mut req, l);
                            figures.clipped += 1;
                        }
                        let charged = dispatch(&mut host, &mut accs[inst.index()], &mut figures, &mut use_clock, inst, &req);
                        send(&mut tasks, clients[inst.index()].clone(), tx.clone(), opts.prompts, &model, &req);
                        flights.insert(req.id.0, Flight { req, inst, sent: None, charged, first: None, user, rerouted: false });
                        sent += 1;
                        peak = peak.max(flights.len());
                    }
                }
                if closed.is_none() {
                    pending = next_open(&mut workload, arrived);
                    exhausted = pending.is_none();
                }
            }
            _ = tick.tick() => {
                let now_i = Instant::now();
                for (i, c) in health.check(now_i) {
                    note_change(&mut host, &mut figures, &out_flags[i], InstanceId(i as u32), &engines[i].instance, c, at_of(start, now_i));
                }
                if !stopping && opts.stop.load(Ordering::Relaxed) {
                    stopping = true;
                    figures.interrupted = true;
                    grace_end = Some(now_i + opts.grace);
                }
                if let (Some(every), Some(due)) = (migrate_every, next_migrate)
                    && now_i >= due
                {
                    next_migrate = Some(due + every);
                    let now = at_of(start, now_i);
                    let decoding: Vec<DecodingSeq> = flights
                        .values()
                        .filter(|f| f.first.is_some())
                        .map(|f| DecodingSeq { request: f.req.id, instance: f.inst, priority: f.req.priority, tokens_remaining: f.req.output_tokens.get() })
                        .collect();
                    for m in host.plan_migrations(now, &decoding) {
                        host.log_migration(now, m.request, m.to, rec);
                        figures.advisory_migrations += 1;
                    }
                }
                if grace_end.is_some_and(|g| now_i >= g) && !flights.is_empty() {
                    // The grace period is over: what is still running stays unfinished.
                    tasks.abort_all();
                    let now = at_of(start, now_i);
                    let mut left: Vec<Flight> = flights.drain().map(|(_, f)| f).collect();
                    left.sort_by_key(|f| f.req.id.0);
                    for f in left {
                        figures.abandoned += 1;
                        host.left(f.inst);
                        let mut r = record(&f.req, f.inst);
                        r.arrival = f.sent.unwrap_or(now);
                        r.first_token = f.first;
                        r.outcome = Outcome::Unfinished;
                        rec.on_request(&r);
                    }
                }
                if now_i.duration_since(last_progress) >= Duration::from_secs(1) {
                    last_progress = now_i;
                    let mut xs: Vec<f64> = recent_ttft.iter().copied().collect();
                    xs.sort_by(f64::total_cmp);
                    let q = |p: f64| (!xs.is_empty()).then(|| xs[((xs.len() - 1) as f64 * p).round() as usize]);
                    progress(&Progress {
                        elapsed: now_i - start,
                        sent,
                        finished,
                        failed,
                        in_flight: flights.len(),
                        ttft_p50_ms: q(0.5),
                        ttft_p95_ms: q(0.95),
                        stopping: stopping || exhausted,
                    });
                }
            }
        }
        // Reap finished tasks so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
    }
    scrapers_stop.store(true, Ordering::Relaxed);
    let end_i = Instant::now();
    let end = at_of(start, end_i);
    figures.availability = engines.iter().enumerate().map(|(k, e)| (e.instance.clone(), health.availability(k, end_i))).collect();

    // One last scrape for the counters over the whole run.
    let (mut hits, mut queries) = (None::<f64>, None::<f64>);
    for (k, c) in clients.iter().enumerate() {
        if let Ok(m) = c.metrics().await {
            let g = gauges(&mut accs[k], &m, end);
            host.publish(InstanceId(k as u32), g);
        }
        let a = &accs[k];
        if let Some(h) = delta(a.last.hits, a.base.hits) {
            hits = Some(hits.unwrap_or(0.0) + h);
        }
        if let Some(q) = delta(a.last.queries, a.base.queries) {
            queries = Some(queries.unwrap_or(0.0) + q);
        }
    }
    figures.engine_prefix_hit_tokens = hits.map(|h| h.round() as u64);
    figures.engine_prefix_query_tokens = queries.map(|q| q.round() as u64);
    for d in &mut depth_series {
        d.close(end);
    }
    let instance_stats = instance_stats(spec, &insts, &mut accs, end);
    let pools: Vec<PoolStats> = spec
        .pools
        .iter()
        .enumerate()
        .map(|(pi, p)| PoolStats {
            name: p.name.clone(),
            role: p.role,
            instances: p.instances.len() as u32,
            queue_depth_mean: instance_stats.iter().filter(|s| s.pool == p.name).map(|s| s.queue_depth_mean).sum(),
            queue_depth_max: pool_depth_max[pi],
        })
        .collect();
    let interrupted = figures.interrupted;
    let totals = RunTotals {
        complete: !interrupted && workload.error().is_none(),
        stop_reason: interrupted.then(|| {
            format!("interrupted ({}) after {:.1} s: sending stopped with {} requests sent", (opts.stop_cause)(), end.as_secs_f64(), sent)
        }),
        first_arrival,
        last_departure,
        end,
        elapsed: end - SimTime::ZERO,
        events,
        arrived,
        local_prefills: 0,
        migrations: 0,
        cancelled: 0,
        trace_skipped_lines: workload.skipped(),
        workload_error: workload.error().map(|e| e.to_string()),
        peak_in_flight: peak,
        instances: instance_stats,
        pools,
        depth_series,
    };
    Ok(LiveResult { totals, figures })
}

/// Routes `req` among the engines in routing; when none it could go to is in routing,
/// among all of them (the breaker never turns a request it could send into a rejection).
fn route_fail_open<R: Recorder>(
    host: &mut RouterHost,
    health: &Health,
    now: SimTime,
    req: &Request,
    rec: &mut R,
) -> Result<InstanceId, RouteError> {
    match host.route_prefill(now, req, None, rec) {
        Err(_) if health.any_out() => {
            let n = host.view().instances.len();
            let out: Vec<InstanceId> = (0..n).map(|k| InstanceId(k as u32)).filter(|i| !host.is_routable(*i)).collect();
            for &i in &out {
                host.set_routable(i, true);
            }
            let routed = host.route_prefill(now, req, None, rec);
            for &i in &out {
                host.set_routable(i, false);
            }
            routed
        }
        r => r,
    }
}

/// [`run_live`] on a single-threaded runtime of its own (blocking).
pub fn run_blocking<R: Recorder>(
    spec: &ValidSpec,
    engines: &[Engine],
    opts: &LiveOptions,
    rec: &mut R,
    progress: &mut dyn FnMut(&Progress),
) -> Result<LiveResult, LiveError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LiveError::Setup(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(run_live(spec, engines, opts, rec, progress))
}
