//! A whole calibration: start or reach the engine, read what it says about itself, warm it
//! up, measure its limits, run the plan, fit, self-check, and build the profile.

use std::time::{Duration, Instant};

use simctl_engine::profile::*;
use simctl_engine::spec::DEFAULT_GPU_MEMORY_UTILIZATION;
use simctl_live::client::{ClientConfig, EngineClient};

use crate::fit::{Fit, FitError, detect_budget, fit};
use crate::hardware;
use crate::launch::{LaunchError, LaunchSpec, LaunchedEngine};
use crate::plan::{EngineFacts, Plan, PlanOptions, ProbeKind, Rough};
use crate::run::{Driver, MaxSeqs, ProbeResult, RunError, median_sample};

/// Most concurrent requests the `max_num_seqs` measurement sends: vLLM's largest default
/// (1024, on the largest GPUs).
pub const MAX_SEQS_PROBE_CAP: u32 = 1024;

/// The engine to calibrate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One already running at this base URL.
    Endpoint(String),
    /// One to start, and stop at the end.
    Launch(LaunchSpec),
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrateSpec {
    /// Served model name.
    pub model: String,
    /// The engine.
    pub target: Target,
    /// GPUs the engine uses (NVML indices); empty: every GPU NVML lists, at most one
    /// for an engine given by URL.
    pub gpus: Vec<u32>,
    /// The quick plan.
    pub quick: bool,
    /// Time the probes may take; the quick plan is used when the full one would take longer,
    /// and probes stop when it is spent.
    pub budget: Option<Duration>,
    /// Seed of the prompts (a new one per run keeps them new to the prefix cache).
    pub seed: u64,
    /// `max_num_seqs`, when known (otherwise measured).
    pub max_seqs: Option<u32>,
    /// `max_num_batched_tokens`, when known (otherwise measured from where prefill times
    /// jump by a step).
    pub max_batch_tokens: Option<u32>,
    /// Client timeouts.
    pub client: ClientConfig,
    /// How long a launched engine may take to answer `/health`.
    pub launch_timeout: Duration,
}

/// What a calibration tells its caller as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// The engine is up (launched and healthy, or reached).
    EngineReady {
        /// Its URL.
        url: &'a str,
        /// Seconds it took to start, when launched.
        started_in: Option<Duration>,
    },
    /// The plan, once the engine's limits are known, with its estimated time.
    Plan {
        /// The plan.
        plan: &'a Plan,
        /// Its estimated time.
        estimate: Duration,
        /// Where max_num_seqs came from.
        max_seqs: &'a MaxSeqs,
    },
    /// A probe run finished.
    Progress {
        /// Requests done.
        done: u32,
        /// Requests in all.
        total: u32,
        /// The probe.
        label: String,
    },
    /// A probe's median sample, as it goes into the fit (what an interrupted calibration
    /// can still keep).
    Measured(ProfileSample),
    /// Something the user should know.
    Note(String),
}

/// Why a calibration failed.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// Starting the engine failed.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// Talking to it failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The fit refused.
    #[error(transparent)]
    Fit(#[from] FitError),
    /// The engine serves another model.
    #[error("the engine at {url} does not serve `{model}`; it serves: {served} (pass one of those to --model)")]
    UnknownModel {
        /// Its URL.
        url: String,
        /// What was asked.
        model: String,
        /// What it serves.
        served: String,
    },
    /// A launched engine exited while it was being calibrated.
    #[error("{error}\nthe launched engine exited ({status}); last lines of its log {}:\n{tail}", log.display())]
    EngineDied {
        /// Exit status.
        status: String,
        /// Its log.
        log: std::path::PathBuf,
        /// The log's last lines.
        tail: String,
        /// What failed first.
        error: Box<CalibrateError>,
    },
    /// The self-check could not run.
    #[error("the self-check could not replay the held-out probes: {0}")]
    SelfCheck(String),
}

/// The result.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// The profile to write.
    pub profile: Profile,
    /// The fit, with every sample's residual.
    pub fit: Fit,
    /// The plan that ran.
    pub plan: Plan,
    /// Each probe's runs.
    pub results: Vec<ProbeResult>,
    /// The warm-up's rough model.
    pub rough: Rough,
    /// How `max_num_seqs` was found.
    pub max_seqs: MaxSeqs,
    /// Time from the first probe to the last.
    pub probe_time: Duration,
    /// What the user should know.
    pub notes: Vec<String>,
}

/// The engine's step budget, where it came from, and what the user should know: a given
/// one wins; otherwise the candidate whose chunking of the longest prompt matches the long
/// steps the decode streams saw, else the smallest with a one-step jump in TTFT, else the
/// max model length.
fn step_budget(plan: &Plan, results: &[ProbeResult], given: Option<u32>, decode_step_s: f64) -> (u32, SettingSource, Option<String>) {
    let all = &plan.budget_candidates;
    let tested = &all[..all.len() - 1];
    let mut counts: Vec<f64> = Vec::new();
    let mut chunked = None;
    for r in results {
        if let ProbeKind::Chunks { streams, prompt, .. } = r.probe.kind {
            chunked = Some((streams, prompt));
            counts.extend(r.runs.iter().filter_map(|run| run.long_steps.map(f64::from)));
        }
    }
    let by_chunks = match (chunked, crate::median(&mut counts)) {
        (Some((n, p)), Some(k)) => {
            let k = k.round() as u32;
            let fits: Vec<u32> = all
                .iter()
                .copied()
                .filter(|&b| (crate::plan::chunk_steps(p, b, n).0..=crate::plan::chunk_steps(p, b, n).1).contains(&k))
                .collect();
            (fits.len() == 1).then(|| (fits[0], format!("a {p}-token prompt took {k} long steps beside {n} decoding streams")))
        }
        _ => None,
    };
    let by_jump = || {
        detect_budget(&run_ttfts(results), tested, decode_step_s)
            .map(|b| (b, format!("TTFT jumps by a step from {b} to {} prompt tokens", b + 1)))
    };
    let measured = by_chunks.or_else(by_jump);
    match (given, measured) {
        (Some(g), Some((m, _))) if g != m => {
            (g, SettingSource::Given, Some(format!("--max-batch-tokens {g} given, but the probes point to {m}: using {g}")))
        }
        (Some(g), _) => (g, SettingSource::Given, None),
        (None, Some((m, why))) => (m, SettingSource::Measured, Some(format!("max_num_batched_tokens {m} measured: {why}"))),
        (None, None) => {
            let last = *all.last().expect("the no-chunking candidate");
            (
                last,
                SettingSource::Assumed,
                Some(format!(
                    "no probe shows a step budget among {tested:?} tokens: max_num_batched_tokens is taken as at least the max model length ({last})"
                )),
            )
        }
    }
}

/// Every run's TTFT of the fresh single-prompt probes, by prompt length.
fn run_ttfts(results: &[ProbeResult]) -> impl Fn(u32) -> Vec<f64> + '_ {
    move |p| {
        results
            .iter()
            .filter(|r| r.probe.class == ProbeClass::Prefill && r.probe.kind == ProbeKind::Prefill { prompt: p })
            .flat_map(|r| r.runs.iter().filter_map(|run| run.sample.map(|s| s.seconds)))
            .collect()
    }
}

/// Identity of the hardware the engine runs on.
pub fn hardware_identity(gpus: &[u32], endpoint_given: bool) -> ProfileHardware {
    let inv = hardware::gpus();
    let mut devices: Vec<ProfileGpu> = if gpus.is_empty() {
        let mut all = inv.gpus.clone();
        // An engine given by URL: which GPUs it uses is unknown; one is assumed.
        if endpoint_given {
            all.truncate(1);
        }
        all
    } else {
        inv.gpus.iter().filter(|g| gpus.contains(&g.index)).cloned().collect()
    };
    devices.sort_by_key(|g| g.index);
    let cpu = hardware::cpu();
    match devices.first() {
        Some(first) => ProfileHardware {
            name: first.name.clone(),
            gpus: devices.len() as u32,
            memory_bytes: first.memory_bytes,
            driver_version: inv.driver_version.clone(),
            cuda_version: inv.cuda_version.clone(),
            devices: devices.clone(),
            cpu: Some(cpu),
            note: None,
        },
        None => ProfileHardware {
            name: format!("cpu: {}", cpu.model),
            gpus: if gpus.is_empty() { 1 } else { gpus.len() as u32 },
            memory_bytes: None,
            driver_version: None,
            cuda_version: None,
            devices: Vec::new(),
            cpu: Some(cpu),
            note: Some(format!(
                "{}; recording the CPU instead",
                inv.note.unwrap_or_else(|| format!("none of the GPUs {gpus:?} is listed by NVML"))
            )),
        },
    }
}

/// Runs a calibration. A launched engine is stopped at the end, on error, and when the
/// future is dropped (the caller's Ctrl-C).
pub async fn calibrate(spec: &CalibrateSpec, hardware: ProfileHardware, on: &mut dyn FnMut(Event)) -> Result<Calibration, CalibrateError> {
    let (url, mut engine) = match &spec.target {
        Target::Endpoint(u) => (u.clone(), None),
        Target::Launch(l) => {
            let started = Instant::now();
            let mut e = LaunchedEngine::start(l)?;
            let client = EngineClient::new(e.url(), spec.client)
                .map_err(|error| RunError::Request { what: "the launched engine's URL".into(), error })?;
            e.wait_healthy(&client, spec.launch_timeout).await?;
            on(Event::EngineReady { url: e.url(), started_in: Some(started.elapsed()) });
            (e.url().to_string(), Some(e))
        }
    };
    let result = calibrate_at(spec, &url, hardware, on).await;
    match (result, engine.as_mut()) {
        (Err(error), Some(e)) => match e.exited() {
            // The launched engine died under the probes: its log says why.
            Some(status) => Err(CalibrateError::EngineDied {
                status,
                log: e.log().to_path_buf(),
                tail: crate::launch::tail(e.log(), crate::launch::LOG_TAIL_LINES),
                error: Box::new(error),
            }),
            None => Err(error),
        },
        (r, _) => r,
    }
}

async fn calibrate_at(
    spec: &CalibrateSpec,
    url: &str,
    hardware: ProfileHardware,
    on: &mut dyn FnMut(Event),
) -> Result<Calibration, CalibrateError> {
    let mut notes = Vec::new();
    let mut note = |on: &mut dyn FnMut(Event), n: String| {
        on(Event::Note(n.clone()));
        notes.push(n);
    };
    let at = |what: &str| {
        let what = what.to_string();
        move |error| CalibrateError::Run(RunError::Request { what, error })
    };
    let client = EngineClient::new(url, spec.client).map_err(at("endpoint"))?;
    let url = client.base_url().to_string();
    client.health().await.map_err(at("health check"))?;
    if matches!(spec.target, Target::Endpoint(_)) {
        on(Event::EngineReady { url: &url, started_in: None });
    }
    let models = client.models().await.map_err(at("listing models"))?;
    let Some(model) = models.iter().find(|m| m.id == spec.model) else {
        return Err(CalibrateError::UnknownModel {
            url,
            model: spec.model.clone(),
            served: models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", "),
        });
    };
    let Some(max_model_len) = model.max_model_len else {
        return Err(RunError::Engine(format!(
            "{url}/v1/models gives no max_model_len for `{}`: the plan must keep prompt plus output within it",
            model.id
        ))
        .into());
    };
    let metrics = client.metrics().await.map_err(at("reading /metrics"))?;
    let cfg = metrics.cache_config();
    let (Some(block_size), Some(kv_blocks)) = (metrics.block_size(), metrics.num_gpu_blocks()) else {
        return Err(RunError::Engine(format!(
            "{url}/metrics has no vllm:cache_config_info with block_size and num_gpu_blocks: calibration needs the KV block size and count (vLLM publishes them)"
        ))
        .into());
    };
    let prefix_caching = cfg.get("enable_prefix_caching").is_none_or(|v| v.eq_ignore_ascii_case("true"));
    let gpu_memory_utilization = cfg.get("gpu_memory_utilization").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_GPU_MEMORY_UTILIZATION);
    let version = client.version().await.map_err(at("reading /version"))?;
    // What else the machine does, before anything is sent: the engine is idle only now (the
    // max_num_seqs waves leave it busy with their aborts for a while).
    let load_before = hardware::load_average();
    let busy_before = hardware::background_busy_cpus();

    let mut driver = Driver::new(client.clone(), model.id.clone(), max_model_len, spec.seed);
    let rough = driver.warm_up(max_model_len).await?;
    let max_seqs = match spec.max_seqs {
        Some(n) => MaxSeqs { value: n, source: SettingSource::Given, note: format!("max_num_seqs {n} given") },
        None => driver.measure_max_seqs(MAX_SEQS_PROBE_CAP, max_model_len, kv_blocks * u64::from(block_size), &rough).await?,
    };
    let facts = EngineFacts { model: model.id.clone(), max_model_len, block_size, kv_blocks, max_seqs: max_seqs.value };
    let mut plan = Plan::new(&facts, PlanOptions { quick: spec.quick, budget_hint: spec.max_batch_tokens });
    let mut estimate = plan.estimate(&rough);
    if let Some(b) = spec.budget
        && !spec.quick
        && estimate > b
    {
        let quick = Plan::new(&facts, PlanOptions { quick: true, budget_hint: spec.max_batch_tokens });
        note(
            on,
            format!(
                "the full plan would take about {:.0} s, more than the --budget of {:.0} s: running the quick plan",
                estimate.as_secs_f64(),
                b.as_secs_f64()
            ),
        );
        plan = quick;
        estimate = plan.estimate(&rough);
    }
    on(Event::Plan { plan: &plan, estimate, max_seqs: &max_seqs });

    let started = Instant::now();
    let total = plan.requests();
    let mut done = 0;
    let mut results = Vec::new();
    let mut skipped = 0;
    let mut measured_budget = None;
    for i in 0..plan.probes.len() {
        let p = plan.probes[i].clone();
        // Once the prefill probes are in, the step budget is known: the later probes are
        // sized for it (mixed prefills within one step).
        let budget_phase = p.class == ProbeClass::Prefill || matches!(p.kind, ProbeKind::Chunks { .. });
        if !budget_phase && measured_budget.is_none() {
            let b = step_budget(&plan, &results, spec.max_batch_tokens, rough.decode_step_s).0;
            measured_budget = Some(b);
            plan.set_budget(b);
        }
        let p = if budget_phase { p } else { plan.probes[i].clone() };
        let mut runs = Vec::new();
        for _ in 0..p.repeats {
            if spec.budget.is_some_and(|b| started.elapsed() > b) {
                skipped += 1;
                continue;
            }
            let run = driver.run_probe(&p, &rough).await?;
            let chunks = matches!(p.kind, ProbeKind::Chunks { .. });
            if (!chunks && run.sample.is_none()) || (chunks && run.long_steps.is_none()) {
                note(on, format!("{}: one run gave no sample (the streams did not overlap as planned)", p.label()));
            }
            runs.push(run);
            done += p.requests();
            on(Event::Progress { done, total, label: p.label() });
        }
        let sample = median_sample(&runs, p.held_out);
        if let Some(s) = sample {
            on(Event::Measured(s));
        }
        results.push(ProbeResult { probe: p.clone(), runs, sample });
    }
    if skipped > 0 {
        note(on, format!("the --budget ran out: {skipped} probe runs were skipped"));
    }
    let probe_time = started.elapsed();

    let samples: Vec<ProfileSample> = results.iter().filter_map(|r| r.sample).collect();
    let (budget, budget_source, budget_note) = step_budget(&plan, &results, spec.max_batch_tokens, rough.decode_step_s);
    if let Some(n) = budget_note {
        note(on, n);
    }
    let fit = fit(&samples, budget, true)?;
    let profile = Profile {
        format: PROFILE_FORMAT,
        created: Some(format!("{} by simctl {}", crate::utc_timestamp(std::time::SystemTime::now()), env!("CARGO_PKG_VERSION"))),
        hardware,
        model: ProfileModel { name: model.id.clone(), dtype: None, max_model_len: Some(max_model_len) },
        engine: ProfileEngine {
            name: if version.is_some() { "vllm".into() } else { "openai-compatible".into() },
            version,
            block_size,
            max_batch_tokens: fit.max_batch_tokens,
            max_seqs: max_seqs.value,
            gpu_memory_utilization,
            chunked_prefill: true,
            prefix_caching,
            sources: Some(ProfileSources { max_batch_tokens: budget_source, max_seqs: max_seqs.source, kv_cache: SettingSource::Reported }),
        },
        kv_capacity_blocks: kv_blocks,
        coefficients: ProfileCoefficients::of(&fit.cost),
        fit: ProfileFit {
            r2: fit.r2,
            rmse_s: fit.rmse_s,
            samples: fit.samples as u64,
            classes: fit.classes.clone(),
            self_check: Vec::new(),
        },
        samples,
        conditions: Some(ProfileConditions {
            load_average_before: load_before,
            load_average_after: hardware::load_average(),
            cpus_online: hardware::cpus_online(),
            busy_cpus_before: busy_before,
        }),
    };
    let mut profile = profile;
    profile.fit.self_check = crate::selfcheck::self_check(&results, &profile).map_err(CalibrateError::SelfCheck)?;
    Ok(Calibration { profile, fit, plan, results, rough, max_seqs, probe_time, notes })
}
