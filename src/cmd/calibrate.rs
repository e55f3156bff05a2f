//! `simctl calibrate`: measure a real engine and write the profile scenarios use.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use simctl_calibration::calibrate::{CalibrateSpec, Calibration, Event, Target, hardware_identity};
use simctl_calibration::launch::{LaunchSpec, free_port};
use simctl_calibration::plan::ProbeKind;
use simctl_engine::profile::{ProbeClass, SettingSource};
use simctl_live::client::ClientConfig;
use simctl_reports::residuals::{ResidualPoint, residual_plot};

/// Seconds a `--check` probe may stall at most (less with --timeout).
const CHECK_STALL_S: u64 = 15;

/// Exit status after Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

/// Calibrate the simulator's GPU model on a real engine and write a profile.
///
/// Drives an OpenAI-compatible engine (vLLM) that is running (--endpoint) or that simctl
/// starts from a command (--launch, stopped at the end, on error and on Ctrl-C) with a
/// planned set of probes: prefill (single requests, prompt lengths log-spaced to the max
/// model length, 3 repeats), decode (N concurrent streams up to max_num_seqs, short and long
/// contexts), mixed (a prefill arriving while streams decode) and prefix (a cached prefix).
/// Fits the `fitted` step model with a per-request frontend latency, prints the fit quality
/// per probe class and a self-check (held-out probes replayed in the simulator), and writes
/// the profile (docs/profile.md), a residual plot and the engine's log when launched.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  simctl calibrate --model tiny-llama --endpoint http://127.0.0.1:8011 \\\n      --out profiles/tiny.yaml\n  simctl calibrate --model tiny-llama --quick \\\n      --launch 'FOREGROUND=1 CPU_CORE=1 real-engine.sh {port}'\n  simctl calibrate --model meta-llama/Llama-3.1-8B-Instruct --gpus 0,1 \\\n      --launch 'vllm serve {model} --port {port} -tp 2' --budget 20m\n\nPlaceholders of --launch: {port} (a free port, required), {model}, {gpus};\nCUDA_VISIBLE_DEVICES is set to --gpus."
)]
pub struct CalibrateArgs {
    /// Served model name.
    #[arg(long, required_unless_present = "check")]
    model: Option<String>,
    /// Base URL of a running engine (`http://host:port`).
    #[arg(long, value_name = "URL", conflicts_with = "launch")]
    endpoint: Option<String>,
    /// Check that a profile still fits this machine instead of measuring a new one: a
    /// handful of its probes (three prefills from half the context up, decode at one stream
    /// and at up to 16, twice each: seconds on a CPU engine) run against --endpoint and
    /// replayed with the profile. Prints each probe's error and the mean; exit status 0 when
    /// the mean absolute error is within 10%, 3 when it is not. Also compares the engine's
    /// settings and the machine's load with the profile's.
    #[arg(long, value_name = "PROFILE", requires = "endpoint", conflicts_with_all = ["launch", "quick", "budget"])]
    check: Option<PathBuf>,
    /// Command that starts the engine, with `{port}` (and optionally `{model}`, `{gpus}`).
    #[arg(long, value_name = "CMD", required_unless_present = "endpoint")]
    launch: Option<String>,
    /// GPUs the engine uses (NVML indices), e.g. `0,1`; their count is the TP degree.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    gpus: Vec<u32>,
    /// Where to write the profile.
    #[arg(long, value_name = "FILE", default_value = "profile.yaml")]
    out: PathBuf,
    /// Most time the probes may take (`10m`, `90s`); the quick plan is used when the full
    /// one would take longer.
    #[arg(long, value_name = "DURATION")]
    budget: Option<String>,
    /// Fewer probe points (minutes on a CPU engine).
    #[arg(long)]
    quick: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// The engine's max_num_seqs, if known (otherwise measured).
    #[arg(long, value_name = "N")]
    max_seqs: Option<u32>,
    /// The engine's max_num_batched_tokens, if known (otherwise measured).
    #[arg(long, value_name = "TOKENS")]
    max_batch_tokens: Option<u32>,
    /// Port for --launch (default: a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Seconds a launched engine may take to answer /health.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    launch_timeout: u64,
    /// Seconds a request may go without any data before it counts as stalled.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
    /// Seconds a probe of an engine (/health, /v1/models, /version, /metrics) may take:
    /// an engine that accepts connections but does not answer is named within this time.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    probe_timeout: u64,
    /// Seed of the prompt token ids (default: the clock, so prompts are new to the engine's
    /// prefix cache, which outlives runs).
    #[arg(long)]
    seed: Option<u64>,
}

/// A duration such as `10m`, `90s`, `1h`, `500ms` (`m` is minutes).
fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let t = if t.ends_with('m') && !t.ends_with("ms") { format!("{}min", &t[..t.len() - 1]) } else { t.to_string() };
    match simctl_engine::units::quantity(&t) {
        Some((v, d)) if d == simctl_engine::units::Dim::TIME && v > 0.0 && v.is_finite() => Ok(Duration::from_secs_f64(v)),
        Some((v, d)) if d == simctl_engine::units::Dim::NONE && v > 0.0 => Ok(Duration::from_secs_f64(v)),
        _ => bail!("--budget `{s}` is not a duration: write e.g. `10m`, `90s` or `1h`"),
    }
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let stem = out.file_stem().map_or_else(|| "profile".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}{suffix}"))
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 { format!("{}m{:02.0}s", (s / 60.0).floor(), s % 60.0) } else { format!("{s:.1}s") }
}

fn source(s: SettingSource) -> &'static str {
    match s {
        SettingSource::Reported => "reported by the engine",
        SettingSource::Measured => "measured",
        SettingSource::Given => "given",
        SettingSource::Assumed => "assumed",
    }
}

fn describe_plan(plan: &simctl_calibration::plan::Plan) -> Vec<String> {
    let mut lines = Vec::new();
    for class in ProbeClass::ALL {
        let probes: Vec<_> = plan.of(class).collect();
        if probes.is_empty() {
            continue;
        }
        let held = probes.iter().filter(|p| p.held_out).count();
        let reqs: u32 = probes.iter().map(|p| p.requests() * p.repeats).sum();
        let what = match class {
            ProbeClass::Prefill => {
                let ps: Vec<u32> =
                    probes.iter().filter_map(|p| if let ProbeKind::Prefill { prompt } = p.kind { Some(prompt) } else { None }).collect();
                format!(
                    "single requests, prompts {}..{} tokens (log-spaced, and one token either side of each candidate step budget {:?})",
                    ps.iter().min().unwrap_or(&0),
                    ps.iter().max().unwrap_or(&0),
                    &plan.budget_candidates[..plan.budget_candidates.len() - 1]
                )
            }
            ProbeClass::Decode => {
                let mut ns: Vec<u32> = probes
                    .iter()
                    .filter_map(|p| if let ProbeKind::Decode { streams, .. } = p.kind { Some(streams) } else { None })
                    .collect();
                ns.dedup();
                let mut ctx: Vec<u32> = probes
                    .iter()
                    .filter_map(|p| if let ProbeKind::Decode { context, .. } = p.kind { Some(context) } else { None })
                    .collect();
                ctx.sort_unstable();
                ctx.dedup();
                let shared: Vec<(u32, u32)> = probes
                    .iter()
                    .filter_map(
                        |p| if let ProbeKind::SharedDecode { streams, prefix, .. } = p.kind { Some((streams, prefix)) } else { None },
                    )
                    .collect();
                let mut what = format!("concurrent streams n = {ns:?} × contexts {ctx:?} tokens");
                if let Some(&(_, prefix)) = shared.first() {
                    let sn: Vec<u32> = shared.iter().map(|s| s.0).collect();
                    what += &format!("; n = {sn:?} behind one cached {prefix}-token prefix");
                }
                what
            }
            ProbeClass::Mixed => probes.iter().map(|p| p.label()).collect::<Vec<_>>().join(", "),
            ProbeClass::Prefix => probes.iter().map(|p| p.label()).collect::<Vec<_>>().join(", "),
        };
        let repeats = probes.iter().map(|p| p.repeats).max().unwrap_or(1);
        lines.push(format!("  {:<8} {:>3} probes x{repeats}, {reqs:>5} requests, {held} held out: {what}", class.as_str(), probes.len()));
    }
    lines
}

/// `simctl calibrate --check PROFILE --endpoint URL`.
fn check(a: &CalibrateArgs, path: &Path) -> Result<ExitCode> {
    let profile = match simctl_calibration::read_profile(path) {
        Ok(p) => p,
        Err(e) => crate::bad!("{e}"),
    };
    if let Some(m) = &a.model
        && m != &profile.model.name
    {
        crate::bad!("--model `{m}` is not the profile's model `{}`; leave --model out to check the profile's", profile.model.name);
    }
    let url = a.endpoint.clone().expect("clap requires --endpoint with --check");
    let seed = a.seed.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64);
    // A probe that stalls this long is an engine far off the profile: the check says so
    // rather than wait the calibration's minute.
    let client = ClientConfig {
        stall_timeout: Duration::from_secs(a.timeout.clamp(1, CHECK_STALL_S)),
        probe_timeout: Duration::from_secs(a.probe_timeout.max(1)),
        ..ClientConfig::default()
    };
    if !a.json {
        eprintln!("checking {} against {url}: a handful of its probes, twice each", path.display());
    }
    let outcome = until_interrupted(simctl_calibration::check::check(&profile, &url, client, seed))?;
    let Some(result) = outcome else {
        eprintln!("interrupted: the check did not finish, nothing to say");
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    };
    let r = result?;
    let load = simctl_calibration::check::background_differs(
        simctl_calibration::check::Background { busy_cpus: r.busy_now, load: r.load_now },
        simctl_calibration::check::Background { busy_cpus: r.busy_then, load: r.load_then },
    );
    if a.json {
        let probes: Vec<serde_json::Value> = r
            .probes
            .iter()
            .map(|p| {
                serde_json::json!({"class": p.class, "probe": p.probe, "metric": p.metric, "measured_s": p.measured_s, "simulated_s": p.simulated_s, "error_pct": p.error_pct})
            })
            .collect();
        let v = serde_json::json!({
            "profile": path.display().to_string(),
            "endpoint": r.url,
            "fits": r.fits,
            "tolerance_pct": simctl_calibration::check::FIT_TOLERANCE_PCT,
            "mean_abs_error_pct": r.mean_abs_error_pct,
            "mean_error_pct": r.mean_error_pct,
            "probes": probes,
            "load_now": r.load_now,
            "load_then": r.load_then,
            "busy_cpus_now": r.busy_now,
            "busy_cpus_then": r.busy_then,
            "load_warning": load,
            "differences": r.differences,
            "failed": r.failed,
            "stopped_early": r.stopped_early,
            "elapsed_s": r.elapsed.as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{:<8} {:<34} {:<10} {:>11} {:>11} {:>8}", "class", "probe", "metric", "measured", "profile", "error");
        for p in &r.probes {
            println!(
                "{:<8} {:<34} {:<10} {:>8.2} ms {:>8.2} ms {:>+7.1}%",
                p.class,
                p.probe,
                p.metric,
                p.measured_s * 1e3,
                p.simulated_s * 1e3,
                p.error_pct
            );
        }
        if let Some(f) = &r.failed {
            println!("a probe did not finish: {f}");
        }
        if r.stopped_early {
            println!(
                "(stopped after {} probes: they were off by more than {:.0}%)",
                r.probes.len(),
                simctl_calibration::check::FAR_OFF_PCT
            );
        }
        for d in &r.differences {
            println!("note: {d}");
        }
        if let Some(l) = &load {
            println!("note: {l}");
        }
        let off = if r.mean_error_pct < 0.0 { "faster" } else { "slower" };
        if r.fits {
            println!(
                "\nthe profile fits this machine: mean |error| {:.1}% (within {:.0}%); the profile is {:.1}% {off} than the engine on average ({:.1} s of probes)",
                r.mean_abs_error_pct,
                simctl_calibration::check::FIT_TOLERANCE_PCT,
                r.mean_error_pct.abs(),
                r.elapsed.as_secs_f64()
            );
        } else if r.failed.is_some() {
            println!(
                "\nthe profile no longer fits this machine: a probe did not finish in time (above), where the profile expects it to (the probes that finished: mean |error| {:.1}%). Measure a new one: simctl calibrate --model {} --endpoint {}",
                r.mean_abs_error_pct, profile.model.name, r.url
            );
        } else {
            println!(
                "\nthe profile no longer fits this machine: mean |error| {:.1}% (more than {:.0}%); the profile is {:.1}% {off} than the engine on average. Measure a new one: simctl calibrate --model {} --endpoint {}",
                r.mean_abs_error_pct,
                simctl_calibration::check::FIT_TOLERANCE_PCT,
                r.mean_error_pct.abs(),
                profile.model.name,
                r.url
            );
        }
    }
    Ok(if r.fits { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// Runs `work` on a runtime of its own until it ends (`Some`) or Ctrl-C or SIGTERM comes
/// first (`None`; the future is dropped, and a launched engine with it).
fn until_interrupted<T>(work: impl std::future::Future<Output = T>) -> Result<Option<T>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(async {
        let stop = interrupted()?;
        anyhow::Ok(tokio::select! {
            biased;
            _ = stop => None,
            r = work => Some(r),
        })
    })
}

/// A future that ends on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called (inside the runtime), before the engine starts, so no signal is missed.
fn interrupted() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?;
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

pub fn run(a: CalibrateArgs) -> Result<ExitCode> {
    if let Some(p) = &a.check {
        return check(&a, p);
    }
    let model = a.model.clone().expect("clap requires --model without --check");
    let t0 = Instant::now();
    let budget = a.budget.as_deref().map(parse_duration).transpose()?;
    if a.out.is_dir() {
        bail!("--out `{}` is a folder: give the profile's file name, e.g. {}/profile.yaml", a.out.display(), a.out.display());
    }
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let target = match (&a.endpoint, &a.launch) {
        (Some(u), _) => Target::Endpoint(u.clone()),
        (None, Some(cmd)) => {
            let port = match a.port {
                Some(p) => p,
                None => free_port().context("cannot find a free port for --launch")?,
            };
            Target::Launch(LaunchSpec {
                template: cmd.clone(),
                model: model.clone(),
                gpus: a.gpus.clone(),
                port,
                log: sibling(&a.out, ".engine.log"),
                cpus: Vec::new(),
            })
        }
        (None, None) => bail!("give the engine: --endpoint URL (running) or --launch 'CMD' (simctl starts it)"),
    };
    if let Target::Launch(l) = &target {
        l.command()?;
    }
    let seed = a.seed.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64);
    let spec = CalibrateSpec {
        model: model.clone(),
        target: target.clone(),
        gpus: a.gpus.clone(),
        quick: a.quick,
        budget,
        seed,
        max_seqs: a.max_seqs,
        max_batch_tokens: a.max_batch_tokens,
        client: ClientConfig {
            stall_timeout: Duration::from_secs(a.timeout.max(1)),
            probe_timeout: Duration::from_secs(a.probe_timeout.max(1)),
            ..ClientConfig::default()
        },
        launch_timeout: Duration::from_secs(a.launch_timeout.max(1)),
    };

    let hardware = hardware_identity(&a.gpus, matches!(target, Target::Endpoint(_)));
    if let Some(n) = &hardware.note {
        eprintln!("note: {n}");
    }
    let quiet = a.json;
    let bar = crate::cmd::sweep::progress(0, "probe requests");
    let b = bar.clone();
    // The probes measured so far: an interrupted calibration writes them (not a profile).
    let measured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let kept = measured.clone();
    let started = std::time::Instant::now();
    let mut last_label = String::new();
    let mut on = move |ev: Event| match ev {
        Event::Measured(s) => kept.borrow_mut().push(s),
        Event::EngineReady { url, started_in } => {
            if !quiet {
                match started_in {
                    Some(d) => eprintln!("engine started at {url} in {}", secs(d)),
                    None => eprintln!("engine at {url}"),
                }
            }
        }
        Event::Plan { plan, estimate, max_seqs } => {
            b.set_length(u64::from(plan.requests()));
            if !quiet {
                let f = &plan.facts;
                b.suspend(|| {
                    println!(
                        "engine: model {}, max_model_len {}, KV {} blocks of {} tokens (reported), max_num_seqs {} ({}: {})",
                        f.model,
                        f.max_model_len,
                        f.kv_blocks,
                        f.block_size,
                        max_seqs.value,
                        source(max_seqs.source),
                        max_seqs.note
                    );
                    println!("plan: {} probe requests, estimated {} (from the warm-up)", plan.requests(), secs(estimate));
                    for l in describe_plan(plan) {
                        println!("{l}");
                    }
                });
            }
        }
        Event::Progress { done, total, label } => {
            // Without a terminal (a log, CI, `nohup`) the bar is hidden: a line per probe
            // says how far the calibration is instead.
            if !quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr()) && label != last_label {
                eprintln!("progress: {done}/{total} probe requests, {} elapsed: {label}", secs(started.elapsed()));
            }
            last_label.clone_from(&label);
            b.set_position(u64::from(done));
            b.set_message(label);
        }
        Event::Note(n) => b.suspend(|| eprintln!("note: {n}")),
    };
    let outcome = until_interrupted(simctl_calibration::calibrate(&spec, hardware, &mut on))?;
    bar.finish_and_clear();
    let Some(result) = outcome else {
        // The calibration's future is gone, and a launched engine with it (stopped).
        let stopped = if matches!(target, Target::Launch(_)) { "; the launched engine was stopped" } else { "" };
        let samples = measured.borrow();
        if samples.is_empty() {
            eprintln!("interrupted: no probe had finished, nothing written{stopped}");
        } else {
            // Not a profile: a fit needs every probe class. The samples are kept for the record.
            let path = sibling(&a.out, ".interrupted.yaml");
            simctl_calibration::write_interrupted(&samples, &path)?;
            eprintln!(
                "interrupted: no profile written (a fit needs every probe); the {} probes measured are in {}{stopped}",
                samples.len(),
                path.display()
            );
        }
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    };
    let cal = result?;
    simctl_calibration::write_profile(&cal.profile, &a.out)?;
    let plot = sibling(&a.out, ".residuals.png");
    let points: Vec<ResidualPoint> = cal
        .fit
        .residuals
        .iter()
        .map(|r| ResidualPoint {
            class: r.class.as_str().into(),
            measured_ms: r.measured_s * 1e3,
            predicted_ms: r.predicted_s * 1e3,
            held_out: r.held_out,
        })
        .collect();
    residual_plot(&plot, &format!("{}: fit residuals", cal.profile.model.name), &points)
        .map_err(|e| anyhow::anyhow!("cannot draw the residual plot: {e}"))?;
    let total = t0.elapsed();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json(&cal, &a.out, &plot, total))?);
    } else {
        print_report(&cal, &a.out, &plot, total, &target);
    }
    Ok(ExitCode::SUCCESS)
}

fn json(cal: &Calibration, out: &Path, plot: &Path, total: Duration) -> serde_json::Value {
    let p = &cal.profile;
    serde_json::json!({
        "profile": out.display().to_string(),
        "residual_plot": plot.display().to_string(),
        "model": p.model.name,
        "hardware": p.hardware.name,
        "engine": {"name": p.engine.name, "version": p.engine.version, "max_batch_tokens": p.engine.max_batch_tokens, "max_seqs": p.engine.max_seqs, "block_size": p.engine.block_size, "kv_blocks": p.kv_capacity_blocks, "sources": p.engine.sources},
        "plan": {"requests": cal.plan.requests(), "probes": cal.plan.probes.len(), "estimate_s": cal.plan.estimate(&cal.rough).as_secs_f64()},
        "probe_time_s": cal.probe_time.as_secs_f64(),
        "total_time_s": total.as_secs_f64(),
        "coefficients": p.coefficients,
        "fit": p.fit,
        "notes": cal.notes,
    })
}

fn print_report(cal: &Calibration, out: &Path, plot: &Path, total: Duration, target: &Target) {
    let p = &cal.profile;
    let c = &p.coefficients;
    println!(
        "\nfit: max_num_batched_tokens {} ({}), {} samples, R² {:.4}, RMSE {:.2} ms",
        p.engine.max_batch_tokens,
        p.engine.sources.map_or("measured", |s| source(s.max_batch_tokens)),
        p.fit.samples,
        p.fit.r2,
        p.fit.rmse_s * 1e3
    );
    println!("  frontend latency            {:>10.3} ms per request (TTFT pays it once)", c.frontend_s * 1e3);
    println!("  c0 per step                 {:>10.3} ms", c.c0_step_s * 1e3);
    println!("  c1 per prefill token        {:>10.3} us", c.c1_prefill_token_s * 1e6);
    println!("  c2 per prefill token²       {:>10.3} ns", c.c2_prefill_token_sq_s * 1e9);
    println!("  c3 per prefill token × ctx  {:>10.3} ns", c.c3_prefill_context_s * 1e9);
    println!("  c4 per decode sequence      {:>10.3} us", c.c4_decode_seq_s * 1e6);
    println!("  c5 per decode context token {:>10.3} ns", c.c5_decode_context_s * 1e9);
    match c.c6_decode_cached_context_s {
        Some(c6) => println!("  c6 per cached context token {:>10.3} ns (decode context in prefix-cached blocks)", c6 * 1e9),
        None => println!("  c6 per cached context token          - (no shared-prefix decode samples: priced as c5)"),
    }
    match (c.c7_decode_context_beyond_cache_s, c.decode_cache_tokens) {
        (Some(c7), Some(w)) => {
            println!("  c7 per context token past {w} {:>7.3} ns more than c5 (a step's decode KV beyond what the caches hold)", c7 * 1e9)
        }
        _ => println!(
            "  c7 past the caches                    - (one rate, c5, for all decode context: a knee would not cut the fit's error by {:.0}%)",
            simctl_calibration::fit::KNEE_GAIN * 100.0
        ),
    }
    println!("\nfit quality per probe class (samples fitted):");
    println!("  {:<8} {:>7} {:>8} {:>8}", "class", "samples", "R²", "MAPE");
    for k in &p.fit.classes {
        let r2 = k.r2.map_or("-".to_string(), |r| format!("{r:.4}"));
        println!("  {:<8} {:>7} {:>8} {:>7.2}%", k.class, k.samples, r2, k.mape_pct);
    }
    if p.fit.self_check.is_empty() {
        println!("\nself-check: no held-out probe gave a sample");
    } else {
        println!("\nself-check (held-out probes replayed in the simulator):");
        println!("  {:<34} {:<8} {:>11} {:>11} {:>8}", "probe", "metric", "measured", "simulated", "error");
        for s in &p.fit.self_check {
            println!(
                "  {:<34} {:<8} {:>8.2} ms {:>8.2} ms {:>+7.1}%",
                s.probe,
                s.metric,
                s.measured_s * 1e3,
                s.simulated_s * 1e3,
                s.error_pct
            );
        }
        let mean_abs = p.fit.self_check.iter().map(|s| s.error_pct.abs()).sum::<f64>() / p.fit.self_check.len() as f64;
        println!("  mean absolute error {mean_abs:.1}%");
    }
    println!("\ntime: probes {} (estimated {}), total {}", secs(cal.probe_time), secs(cal.plan.estimate(&cal.rough)), secs(total));
    let mut files = vec![out.display().to_string(), plot.display().to_string()];
    if let Target::Launch(l) = target {
        files.push(format!("{} (engine log)", l.log.display()));
    }
    println!("wrote {}", files.join(", "));
    println!("use it: hardware NAME {{ profile = \"{}\"  cost = ... $/h }}", out.display());
}
