//! `simctl live`: a scenario's workload against real engines, routed by the scenario's
//! policy, recorded like `simctl run`.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use simctl_engine::rng::RunSeed;
use simctl_engine::spec::{InstanceSpec, ValidSpec};
use simctl_live::client::ClientConfig;
use simctl_live::drive::{self, Engine, LiveOptions, Progress};
use simctl_live::prompt::PromptMaker;
use simctl_reports::figures::RunSamples;
use simctl_reports::{Distribution, EngineAvailability, HealthEvent, LiveInfo, RunRecorder, Summary, render_table};

use crate::bad;
use crate::scenario::{self, Loaded};

/// The scenario `simctl live` runs without one: two engines behind the telemetry router.
pub const DEFAULT_NAME: &str = "dynamic_router.scn (embedded)";
/// Its text.
pub const DEFAULT_TEXT: &str = include_str!("../../scenarios/dynamic_router.scn");

/// Run a scenario's workload against real engines, routed by its policy.
///
/// Each instance of the scenario is bound to a running OpenAI-compatible engine (vLLM):
/// `--endpoint POOL=URL` binds the pool's instances in order (`INSTANCE=URL` one instance,
/// a bare URL the only pool). Requests are sent on the scenario's schedule (arrival process or
/// trace replay) with token-id prompts of their exact length, shared prefixes and Mooncake
/// hash_ids as shared token blocks, `max_tokens` and `ignore_eos`; the router reads each
/// engine's /metrics every telemetry.interval. Split prefill/decode pools run as dual pools
/// (each request served whole on the pool its prompt length picks): vLLM engines do not move
/// KV between them here. Writes what `simctl run` writes, plus each request's status and
/// error; `simctl compare SIM LIVE` compares the two. Ctrl-C stops sending, waits --grace for
/// requests in flight, and writes everything. Without SCENARIO: the embedded dynamic_router
/// scenario with one engine per --endpoint.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  simctl live --endpoint http://127.0.0.1:8011 \\\n      --endpoint http://127.0.0.1:8012\n  simctl live scenarios/dual_pool.scn \\\n      --endpoint prefill=http://127.0.0.1:8011 \\\n      --endpoint decode=http://127.0.0.1:8012 --out out/live/split\n  simctl live scenarios/dynamic_router.scn --set router.policy=round_robin \\\n      --endpoint decode=http://127.0.0.1:8011 \\\n      --endpoint decode=http://127.0.0.1:8012 --out out/live/rr\n  simctl compare out/sim/rr out/live/rr"
)]
pub struct LiveArgs {
    /// Scenario file; omit for the embedded dynamic_router scenario.
    #[arg(value_name = "SCENARIO.scn")]
    scenario: Option<PathBuf>,
    /// An engine: `POOL=URL` (the pool's next instance), `INSTANCE=URL`, or `URL` when the
    /// scenario has one pool; repeat for every instance.
    #[arg(long = "endpoint", value_name = "POOL=URL")]
    endpoints: Vec<String>,
    /// GPUs to start one engine each on with --launch, for the decode pool (the pool named
    /// `decode`, else the only decode or only pool): `--decode-gpus 0,1`.
    #[arg(long, value_name = "GPUS", value_delimiter = ',')]
    decode_gpus: Vec<u32>,
    /// The same for the prefill pool (named `prefill`, else the only prefill pool).
    #[arg(long, value_name = "GPUS", value_delimiter = ',')]
    prefill_gpus: Vec<u32>,
    /// Command starting one engine for --decode-gpus / --prefill-gpus: `{port}` (required, a
    /// free port), `{model}`, `{gpu}`; CUDA_VISIBLE_DEVICES is set to the GPU and the engine
    /// pinned to the CPUs of the GPU's NUMA node. Engines are stopped at the end, on error
    /// and on Ctrl-C.
    #[arg(long, value_name = "CMD", default_value = "vllm serve {model} --port {port}")]
    launch: String,
    /// Seconds a launched engine may take to answer /health.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    launch_timeout: u64,
    /// Served model to ask for (default: the first one the first engine lists); `{model}` of
    /// --launch.
    #[arg(long)]
    model: Option<String>,
    /// Override a parameter or a setting: `arrival_rate=4/s`, `router.policy=round_robin`.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Override the scenario's seed (workload draws and the policies' draws).
    #[arg(long)]
    seed: Option<u64>,
    /// Write summary.json, requests.csv, queue_depth.csv and plots into this folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// With --out, also write decisions.csv (every routing decision and its scores).
    #[arg(long, requires = "out")]
    decisions: bool,
    /// Do not draw plots under --out.
    #[arg(long)]
    no_plots: bool,
    /// Replace the results simctl wrote before in --out.
    #[arg(long, requires = "out")]
    force: bool,
    /// Print nothing on stdout but errors (and no progress).
    #[arg(long, short)]
    quiet: bool,
    /// Seconds requests in flight get to finish after Ctrl-C.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    grace: u64,
    /// Seconds a stream may go without a byte before it counts as timed out.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    stall_timeout: u64,
    /// Seconds a whole request may take.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    request_timeout: u64,
    /// Seconds a probe of an engine (/health, /v1/models, /version, /metrics) may take:
    /// an engine that accepts connections but does not answer is named within this time.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    probe_timeout: u64,
    /// Shortest time between two /metrics scrapes of one engine, in ms (the scenario's
    /// telemetry.interval when longer).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    min_scrape_ms: u64,
    /// Salt of the prompts' token ids (default: the clock, so every run starts with cold
    /// prefix caches, which outlive runs on vLLM); give one to resend the same prompts.
    #[arg(long, value_name = "N")]
    prompt_salt: Option<u64>,
    /// Distinct token ids prompts use, from id 256 (the model's vocabulary must hold
    /// 256 + this many).
    #[arg(long, value_name = "N", default_value_t = simctl_live::prompt::DEFAULT_TOKEN_RANGE)]
    token_range: u32,
    /// Send requests whose prompt plus output exceeds an engine's context (its
    /// max_model_len, read from /v1/models before anything is sent) shortened to fit, and
    /// count them in the summary (`live.clipped`), instead of refusing the run. The output is
    /// kept whole when it takes at most half the context, and the prompt cut to make room;
    /// requests.csv records the lengths sent.
    #[arg(long)]
    clip: bool,
    /// Milliseconds an engine's probes (the /metrics scrapes) may go unanswered, past the
    /// next scrape's due time, before it is taken out of routing; an engine that refuses
    /// or resets connections is taken out at once, one that answers 5xx three times in a row
    /// then. While it is out /health is probed at the scrape interval and puts it back when it
    /// answers; a request it refused before any output is sent once more to another engine.
    /// The summary gives each engine's availability.
    #[arg(long, value_name = "MS", default_value_t = 600)]
    health_timeout_ms: u64,
}

pub fn run(a: LiveArgs) -> Result<ExitCode> {
    let overrides = scenario::parse_overrides(&a.set)?;
    let default = a.scenario.is_none();
    let spec = match &a.scenario {
        Some(p) => match scenario::load(Some(p), &overrides)? {
            Loaded::Spec(s) => *s,
            Loaded::Invalid => return Ok(ExitCode::from(crate::EXIT_BAD_INPUT)),
        },
        None => match scenario::load_text(DEFAULT_NAME, DEFAULT_TEXT, &overrides)? {
            Loaded::Spec(s) => *s,
            Loaded::Invalid => return Ok(ExitCode::from(crate::EXIT_BAD_INPUT)),
        },
    };
    if a.endpoints.is_empty() && a.decode_gpus.is_empty() && a.prefill_gpus.is_empty() {
        bad!(
            "give the engines to run against: `--endpoint POOL=URL` for each instance (e.g. `--endpoint decode=http://127.0.0.1:8011`), or GPUs to start them on (`--decode-gpus 0,1 --launch 'CMD'`)"
        );
    }
    crate::interrupt::install();
    if let Some(dir) = &a.out {
        crate::out::prepare(dir, a.force)?;
    }
    // Engines started here live as long as this function: dropped, they are stopped.
    let (launched, launched_endpoints) = launch_engines(&a, &spec)?;
    let endpoints: Vec<String> = a.endpoints.iter().cloned().chain(launched_endpoints).collect();
    let (spec, engines) = bind(spec, &endpoints, default)?;
    let seed = a.seed.unwrap_or(spec.seed);

    let mut rec = RunRecorder::for_spec(&spec);
    let mut streamed = Vec::new();
    if let Some(dir) = &a.out {
        (rec, streamed) = super::run::open_streams(rec, dir, a.decisions)?;
    }

    // Ctrl-C raises the stop flag; the run stops sending and waits for what is in flight.
    let stop = crate::interrupt::stop_flag();
    let opts = LiveOptions {
        model: a.model.clone(),
        client: ClientConfig {
            stall_timeout: Duration::from_secs(a.stall_timeout.max(1)),
            request_timeout: Duration::from_secs(a.request_timeout.max(1)),
            probe_timeout: Duration::from_secs(a.probe_timeout.max(1)),
            ..ClientConfig::default()
        },
        grace: Duration::from_secs(a.grace),
        min_scrape: Duration::from_millis(a.min_scrape_ms.max(1)),
        prompts: PromptMaker::with_range(a.token_range).with_salt(a.prompt_salt.unwrap_or_else(clock_salt)),
        seed: RunSeed(seed),
        stop,
        stop_cause: crate::interrupt::signal_name,
        health: simctl_live::health::HealthConfig { silent_after: Duration::from_millis(a.health_timeout_ms.max(1)) },
        clip: a.clip,
    };
    let show = !a.quiet && !a.json;
    let mut progress = |p: &Progress| {
        if show {
            let ttft = match (p.ttft_p50_ms, p.ttft_p95_ms) {
                (Some(a), Some(b)) => format!("ttft p50 {a:.0} ms p95 {b:.0} ms"),
                _ => "ttft -".into(),
            };
            eprintln!(
                "live {:>6.1} s  sent {}  done {}  failed {}  in flight {}  {ttft}{}",
                p.elapsed.as_secs_f64(),
                p.sent,
                p.finished,
                p.failed,
                p.in_flight,
                if p.stopping { "  (draining)" } else { "" }
            );
        }
    };
    let result = match drive::run_blocking(&spec, &engines, &opts, &mut rec, &mut progress) {
        Ok(r) => r,
        // The scenario and the engines do not fit together: bad input, exit status 2.
        Err(e @ drive::LiveError::Setup(_)) => bad!("{e}"),
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    };
    let totals = result.totals;
    super::run::finish_streams(&mut rec, a.out.as_deref(), &streamed)?;
    let samples = a.out.as_ref().map(|_| RunSamples {
        scenario: spec.name.clone(),
        ttft_ms: rec.ttft_samples().to_vec(),
        tpot_ms: rec.tpot_samples().to_vec(),
        depth: super::run::depth_points(&totals.depth_series),
        depth_bucket_s: totals.depth_series.first().map_or(0.0, |d| d.bucket.as_secs_f64()),
    });
    let mut summary = Summary::build(&spec, seed, &mut rec, &totals);
    summary.events = totals.events;
    let mut f = result.figures;
    let f_gauges = std::mem::take(&mut f.gauges);
    // Engines do not say per request what their prefix cache served; their counters say it
    // for the run.
    if let (Some(h), Some(q)) = (f.engine_prefix_hit_tokens, f.engine_prefix_query_tokens) {
        summary.prefix_hit_rate = (q > 0).then(|| h as f64 / q as f64);
    }
    let mut lag = f.send_lag_ms.clone();
    let send_lag_ms = Distribution::from_samples(&mut lag);
    let behind = match (send_lag_ms.p95, send_lag_ms.max) {
        (Some(p95), _) if p95 > drive::LAG_P95_LIMIT.as_secs_f64() * 1e3 => {
            Some(format!("send lag p95 {p95:.1} ms: the client fell behind its schedule; pin it to a core of its own (taskset)"))
        }
        (_, Some(max)) if max > drive::LAG_MAX_LIMIT.as_secs_f64() * 1e3 => {
            Some(format!("largest send lag {max:.1} ms: the client fell behind its schedule at least once"))
        }
        _ => None,
    };
    summary.live = Some(LiveInfo {
        mode: f.mode.to_string(),
        split_at: f.split_at,
        model: f.model,
        endpoints: f.endpoints,
        send_lag_ms,
        client_behind: behind.clone(),
        advisory_migrations: f.advisory_migrations,
        expected_prefix_hit_tokens: f.expected_prefix_hit_tokens,
        engine_prefix_hit_tokens: f.engine_prefix_hit_tokens,
        engine_prefix_query_tokens: f.engine_prefix_query_tokens,
        scrapes: f.scrapes,
        scrape_errors: f.scrape_errors,
        last_scrape_error: f.last_scrape_error,
        interrupted: f.interrupted,
        abandoned: f.abandoned,
        context_limit: f.context_limit,
        clipped: f.clipped,
        preflight_checked: f.preflight_checked,
        preflight_all: f.preflight_all,
        rerouted: f.rerouted,
        not_measured: (f.mode == "dual_pool").then(|| {
            format!(
                "the KV hand-off between pools: each request is served whole on the pool its prompt length picks (prompts of {} tokens or more on one, the rest on the other); these engines do not move KV between pools, so no TTFT or TPOT here includes a transfer (`simctl run` models it)",
                f.split_at.unwrap_or_default()
            )
        }),
        engines: f
            .availability
            .iter()
            .map(|(name, a)| {
                let e =
                    EngineAvailability { availability: a.share, outages: a.outages, out_s: a.out_s, last_reason: a.last_reason.clone() };
                (name.clone(), e)
            })
            .collect(),
        health_events: f
            .health_events
            .iter()
            .map(|(t, i, w)| HealthEvent { at_s: t.as_secs_f64(), instance: i.clone(), what: w.clone() })
            .collect(),
    });
    let mut written = Vec::new();
    if let Some(dir) = &a.out {
        let path = dir.join("summary.json");
        crate::out::write(&path, serde_json::to_string_pretty(&summary)? + "\n")?;
        written.push(path);
        written.extend(streamed.iter().cloned());
        written.extend(simctl_reports::scorecard::write_simulated_run_files(dir, &spec, &summary)?);
        let samples = samples.expect("made with --out");
        let path = dir.join("gauges.csv");
        write_gauges_csv(&crate::out::partial(&path), &f_gauges, &engines).with_context(|| format!("cannot write `{}`", path.display()))?;
        crate::out::commit(&path)?;
        written.push(path);
        let path = dir.join("queue_depth.csv");
        super::run::write_depth_csv(&crate::out::partial(&path), &samples.depth)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        crate::out::commit(&path)?;
        written.push(path);
        written.extend(crate::cmd::parquet_copies(dir, &["requests", "queue_depth", "gauges"])?);
        if !a.no_plots {
            written.extend(simctl_reports::figures::run_figures(dir, &samples).map_err(|e| anyhow::anyhow!("cannot draw plots: {e}"))?);
        }
    }
    if let Some(why) = summary.incomplete_reason.as_deref().filter(|_| !summary.complete) {
        eprintln!("warning: {why}");
    }
    if let Some(b) = &behind {
        eprintln!("warning: {b}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !a.quiet {
        print!("{}", render_table(&summary));
        let live = summary.live.as_ref().expect("set above");
        println!(
            "\nlive: {} against {} engines ({}), model {}; send lag p50 {} ms p95 {} ms",
            live.mode,
            live.endpoints.len(),
            live.endpoints.values().cloned().collect::<Vec<_>>().join(", "),
            live.model,
            opt_ms(live.send_lag_ms.p50),
            opt_ms(live.send_lag_ms.p95)
        );
        if let Some(n) = &live.not_measured {
            println!("not measured: {n}");
        }
        if live.clipped > 0 {
            println!(
                "clipped: {} of {} requests sent shortened to fit the engines' context of {} tokens (--clip)",
                live.clipped,
                summary.requests,
                live.context_limit.unwrap_or_default()
            );
        }
        for (name, e) in live.engines.iter().filter(|(_, e)| e.outages > 0) {
            println!(
                "engine {name}: out of routing {} time{}, {:.1} s in all (available {:.1}% of the run); last: {}",
                e.outages,
                if e.outages == 1 { "" } else { "s" },
                e.out_s,
                e.availability * 100.0,
                e.last_reason.as_deref().unwrap_or("-")
            );
        }
        if live.rerouted > 0 {
            println!("rerouted: {} requests sent again to another engine after theirs refused them", live.rerouted);
        }
        if live.advisory_migrations > 0 {
            println!("migrations: {} planned, logged as advisory (vLLM cannot move a running sequence)", live.advisory_migrations);
        }
        if let (Some(h), Some(q)) = (live.engine_prefix_hit_tokens, live.engine_prefix_query_tokens) {
            println!("prefix cache: engines hit {h} of {q} prompt tokens; the router expected {}", live.expected_prefix_hit_tokens);
        }
        if let Some(dir) = &a.out {
            println!("wrote {} files under {}/ ({})", written.len(), dir.display(), crate::cmd::sweep::list(dir, &written));
        }
    }
    drop(launched);
    Ok(if summary.complete && summary.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The pool `--decode-gpus` (`role` decode) or `--prefill-gpus` binds: the pool of that name,
/// else the only pool of that role, else (decode) the only pool.
fn pool_for(spec: &ValidSpec, name: &str, role: simctl_engine::spec::Role) -> Result<String> {
    if let Some(p) = spec.pools.iter().find(|p| p.name == name) {
        return Ok(p.name.clone());
    }
    let of_role: Vec<&str> = spec.pools.iter().filter(|p| p.role == role).map(|p| p.name.as_str()).collect();
    match (of_role.as_slice(), spec.pools.len()) {
        ([one], _) => Ok(one.to_string()),
        (_, 1) if role == simctl_engine::spec::Role::Decode => Ok(spec.pools[0].name.clone()),
        _ => bad!(
            "`--{name}-gpus`: the scenario has no pool named `{name}` and {} {} pools; bind engines with `--endpoint POOL=URL` instead",
            of_role.len(),
            role.as_str()
        ),
    }
}

/// CPUs of a list such as `0-7,16-23`.
fn cpu_list(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// Starts one engine per GPU of --decode-gpus and --prefill-gpus from --launch, waits for
/// each to answer /health, and returns them with their `POOL=URL` bindings.
fn launch_engines(a: &LiveArgs, spec: &ValidSpec) -> Result<(Vec<simctl_calibration::launch::LaunchedEngine>, Vec<String>)> {
    use simctl_calibration::launch::{LaunchSpec, LaunchedEngine, free_port};
    use simctl_engine::spec::Role;
    let mut wanted = Vec::new();
    if !a.decode_gpus.is_empty() {
        let pool = pool_for(spec, "decode", Role::Decode)?;
        wanted.extend(a.decode_gpus.iter().map(|&g| (pool.clone(), g)));
    }
    if !a.prefill_gpus.is_empty() {
        let pool = pool_for(spec, "prefill", Role::Prefill)?;
        wanted.extend(a.prefill_gpus.iter().map(|&g| (pool.clone(), g)));
    }
    if wanted.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    if a.launch.contains("{model}") && a.model.is_none() {
        bad!("--launch `{}` needs `{{model}}`: give the model to serve with --model", a.launch);
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some((_, g)) = wanted.iter().find(|(_, g)| !seen.insert(*g)) {
        bad!("GPU {g} is listed twice; give each engine a GPU of its own");
    }
    // Each engine on its GPU's NUMA node, when the topology says where that is.
    let topo = simctl_calibration::hardware::topology(String::new());
    let logs = match &a.out {
        Some(d) => d.join("engines"),
        None => std::env::temp_dir().join(format!("simctl-live-{}", std::process::id())),
    };
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create `{}`", logs.display()))?;
    let mut engines = Vec::new();
    let mut endpoints = Vec::new();
    for (pool, gpu) in &wanted {
        let cpus = topo
            .gpu_numa
            .get(*gpu as usize)
            .copied()
            .flatten()
            .and_then(|n| topo.numa_nodes.iter().find(|x| x.node == n))
            .map(|n| cpu_list(&n.cpus))
            .unwrap_or_default();
        let spec = LaunchSpec {
            template: a.launch.replace("{gpu}", "{gpus}"),
            model: a.model.clone().unwrap_or_default(),
            gpus: vec![*gpu],
            port: free_port().context("cannot find a free port for an engine")?,
            log: logs.join(format!("gpu{gpu}.log")),
            cpus: cpus.clone(),
        };
        let e = LaunchedEngine::start(&spec).map_err(|e| anyhow::anyhow!("--launch: {e}"))?;
        let pinned =
            if cpus.is_empty() { "not pinned: no NUMA node known for it".to_string() } else { format!("CPUs {}", cpu_ranges(&cpus)) };
        if !a.quiet {
            eprintln!("started an engine for pool `{pool}` on GPU {gpu} at {} ({pinned}; log {})", e.url(), e.log().display());
        }
        endpoints.push(format!("{pool}={}", e.url()));
        engines.push(e);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let timeout = Duration::from_secs(a.launch_timeout.max(1));
    for e in &mut engines {
        let client = simctl_live::client::EngineClient::new(e.url(), ClientConfig::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let ready = rt.block_on(async {
            tokio::select! {
                r = e.wait_healthy(&client, timeout) => Some(r),
                _ = async { while !crate::interrupt::interrupted() { tokio::time::sleep(Duration::from_millis(50)).await } } => None,
            }
        });
        match ready {
            None => {
                drop(engines);
                eprintln!("interrupted while the engines started; they were stopped");
                std::process::exit(130);
            }
            Some(Err(err)) => return Err(anyhow::anyhow!("{err}")),
            Some(Ok(())) => {}
        }
    }
    Ok((engines, endpoints))
}

fn cpu_ranges(cpus: &[u32]) -> String {
    let mut mask = vec![0u64; cpus.iter().max().map_or(1, |&m| m as usize / 64 + 1)];
    for &c in cpus {
        mask[c as usize / 64] |= 1 << (c % 64);
    }
    simctl_calibration::hardware::cpu_list(&mask)
}

/// `scraped_s,published_s,instance,waiting,running,kv_usage,kv_free_blocks`: every scrape the
/// router used, in the order it used them (decisions at `time_s` read the last row of each
/// instance published before it).
fn write_gauges_csv(path: &std::path::Path, rows: &[drive::GaugeRow], engines: &[Engine]) -> std::io::Result<()> {
    use simctl_reports::frame::float_text;
    use std::io::Write;
    let mut w = BufWriter::new(File::create(path)?);
    writeln!(w, "scraped_s,published_s,instance,waiting,running,kv_usage,kv_free_blocks")?;
    for r in rows {
        writeln!(
            w,
            "{},{},{},{},{},{},{}",
            float_text(r.scraped.as_secs_f64()),
            float_text(r.published.as_secs_f64()),
            simctl_reports::csv_text(&engines[r.instance.index()].instance),
            r.waiting,
            r.running,
            float_text(r.kv_usage),
            r.kv_free_blocks
        )?;
    }
    w.flush()
}

/// A salt no earlier run used: the clock in nanoseconds.
fn clock_salt() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn opt_ms(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2}"))
}

/// Binds `--endpoint` arguments to the scenario's instances, in instance order. For the
/// embedded default, the pool takes as many instances as engines are given.
fn bind(spec: ValidSpec, endpoints: &[String], default: bool) -> Result<(ValidSpec, Vec<Engine>)> {
    // `KEY=URL`, where KEY is a pool or an instance; a bare URL has no key.
    let parsed: Vec<(Option<String>, String)> = endpoints
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, url)) if !k.contains([':', '/']) => (Some(k.trim().to_string()), url.trim().to_string()),
            _ => (None, e.trim().to_string()),
        })
        .collect();
    let mut spec = spec;
    if default {
        // One pool: it gets one instance per engine, named after the first.
        let n = parsed.len();
        let mut s = spec.into_spec();
        let p = &mut s.pools[0];
        let first = p.instances[0].clone();
        let base = first.name.trim_end_matches(|c: char| c.is_ascii_digit()).to_string();
        p.instances = (0..n).map(|k| InstanceSpec { name: format!("{base}{k}"), ..first.clone() }).collect();
        spec = match s.validate() {
            Ok(v) => v,
            Err(errs) => bad!("{}", errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")),
        };
    }
    let names: Vec<(String, String)> =
        spec.pools.iter().flat_map(|p| p.instances.iter().map(|i| (p.name.clone(), i.name.clone()))).collect();
    let mut urls: Vec<Option<String>> = vec![None; names.len()];
    for (key, url) in &parsed {
        let slot = match key {
            None if spec.pools.len() == 1 => urls.iter().position(Option::is_none),
            None => bad!(
                "`--endpoint {url}`: the scenario has {} pools ({}); say which: `--endpoint POOL={url}`",
                spec.pools.len(),
                spec.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Some(k) => {
                if let Some(i) = names.iter().position(|(_, inst)| inst == k) {
                    if urls[i].is_some() {
                        bad!("`--endpoint {k}={url}`: instance `{k}` is bound twice");
                    }
                    Some(i)
                } else if spec.pools.iter().any(|p| p.name == *k) {
                    (0..names.len()).find(|&i| names[i].0 == *k && urls[i].is_none())
                } else {
                    bad!(
                        "`--endpoint {k}={url}`: no pool or instance `{k}` in the scenario (pools: {})",
                        spec.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                    );
                }
            }
        };
        let Some(i) = slot else {
            let pool = key.clone().unwrap_or_else(|| spec.pools[0].name.clone());
            let n = names.iter().filter(|(p, _)| *p == pool).count();
            bad!(
                "`--endpoint {}`: pool `{pool}` has {n} instances and all are bound already",
                endpoints[parsed.iter().position(|p| p.1 == *url).unwrap_or(0)]
            );
        };
        if let Err(e) = simctl_live::client::EngineClient::new(url, ClientConfig::default()) {
            bad!("`--endpoint {}`: {e}", endpoints[parsed.iter().position(|p| p.1 == *url).unwrap_or(0)]);
        }
        urls[i] = Some(url.clone());
    }
    let unbound: Vec<&str> = names.iter().zip(&urls).filter(|(_, u)| u.is_none()).map(|((_, i), _)| i.as_str()).collect();
    if !unbound.is_empty() {
        bad!(
            "instances without an engine: {}; give `--endpoint POOL=URL` for each (the scenario's pools: {})",
            unbound.join(", "),
            spec.pools.iter().map(|p| format!("{} with {}", p.name, p.instances.len())).collect::<Vec<_>>().join(", ")
        );
    }
    let engines = names.into_iter().zip(urls).map(|((_, instance), url)| Engine { instance, url: url.expect("all bound") }).collect();
    Ok((spec, engines))
}
