//! `simctl eval`: the original lab's cheap eval against a real engine, written as a run
//! folder that `simctl scorecard` reads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use simctl_live::client::ClientConfig;
use simctl_live::eval::latency::{DECODE_LENGTHS, DEFAULT_PROMPT_TOKENS, DEFAULT_REPEATS, LatencyPlan, WARM_TAIL_TOKENS};
use simctl_live::eval::quality::{self, QualityItem};
use simctl_live::eval::{EvalOutcome, EvalSpec, Progress};
use simctl_reports::scorecard::folder::{self as layout, write_json, write_jsonl};
use simctl_reports::scorecard::{
    self, Baseline, DEFAULT_LATENCY_SLO_MS, DEFAULT_TTFT_SLO_MS, LatencyRow, QualityRow, RunFolder, Scorecard, Slos,
};

/// Run the lab's cheap eval against an OpenAI-compatible engine and score it.
///
/// Asks the quality slice (four built-in sets of ten questions: mmlu-mini, gsm8k-lite,
/// truthfulqa-lite, domain-slice; or your own with --quality) at temperature 0, scored by
/// normalised substring match; then, one request at a time, cold (new prefix) and warm
/// (cached prefix) requests with 128-, 512- and 2048-token outputs (`ignore_eos`, cut to fit
/// the engine's max_model_len). Writes the run folder: quality.jsonl, latency.jsonl,
/// tps_goodput.json, sys_meta.json, scorecard.json, and moe_router.jsonl /
/// moe_traffic.jsonl copied from --metrics-dir. vLLM publishes no MoE router data, so
/// without --metrics-dir those checks are missing: an error unless --allow-missing-metrics.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  simctl eval --endpoint http://127.0.0.1:8000 --allow-missing-metrics \\\n      --out out/eval/dense\n  simctl eval --endpoint http://gpu7:8000 --mode optimized \\\n      --metrics-dir moe/optimized --baseline out/eval/baseline/scorecard.json\n  simctl eval --endpoint http://127.0.0.1:8000 --allow-missing-metrics \\\n      --quality mine.jsonl --no-builtin-quality\n  simctl scorecard out/eval/dense --plot out/eval/dense/score.png"
)]
pub struct EvalArgs {
    /// Base URL of the engine (`http://host:port`, with or without /v1).
    #[arg(long, value_name = "URL")]
    endpoint: String,
    /// Run name, recorded in sys_meta.json and the default folder name.
    #[arg(long, value_name = "NAME", default_value = "eval")]
    mode: String,
    /// Served model to use (default: the first one /v1/models lists).
    #[arg(long)]
    model: Option<String>,
    /// Compare with this baseline: a scorecard.json (simctl's or the lab's) or a run folder.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Folder with moe_router.jsonl and moe_traffic.jsonl in the lab's formats.
    #[arg(long, value_name = "DIR")]
    metrics_dir: Option<PathBuf>,
    /// Score without MoE metrics: the drop-rate and imbalance checks show as missing.
    #[arg(long)]
    allow_missing_metrics: bool,
    /// Your own questions, JSONL lines {"question", "expected", "task"?, "accept"?: [...]};
    /// repeatable, added to the built-in sets.
    #[arg(long = "quality", value_name = "FILE.jsonl")]
    quality: Vec<PathBuf>,
    /// Leave out the four built-in task sets.
    #[arg(long)]
    no_builtin_quality: bool,
    /// Requests per decode length and cache case.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_REPEATS)]
    repeats: u32,
    /// Prompt length of the latency requests, in tokens.
    #[arg(long, value_name = "TOKENS", default_value_t = DEFAULT_PROMPT_TOKENS)]
    prompt_tokens: u32,
    /// TTFT SLO for goodput and the TTFT p95 check, recorded in sys_meta.json.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_TTFT_SLO_MS)]
    ttft_slo_ms: f64,
    /// Decode-time SLO for goodput and the decode p95 check, recorded in sys_meta.json.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_LATENCY_SLO_MS)]
    latency_slo_ms: f64,
    /// Seconds a request may go without any data before it counts as stalled.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
    /// Seconds a probe of an engine (/health, /v1/models, /version, /metrics) may take:
    /// an engine that accepts connections but does not answer is named within this time.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    probe_timeout: u64,
    /// Seed of the prompt token ids (default: the clock, so cold prompts are new to the
    /// engine's prefix cache, which outlives runs).
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder (default: out/eval/MODE_UNIXTIME).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the scorecard as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The MoE rows of `--metrics-dir`, checked, and their files' text to copy unchanged.
struct MoeMetrics {
    dir: PathBuf,
    router: String,
    traffic: String,
}

fn read_moe(dir: &Path, allow_missing: bool) -> Result<Option<MoeMetrics>> {
    let folder = RunFolder::read(dir).with_context(|| format!("cannot read --metrics-dir `{}`", dir.display()))?;
    let present = |rows: Option<usize>| rows.is_some_and(|n| n > 0);
    let (r, t) = (present(folder.moe_router.as_ref().map(Vec::len)), present(folder.moe_traffic.as_ref().map(Vec::len)));
    if !(r && t) {
        let which: Vec<&str> = [(!r).then_some(layout::MOE_ROUTER), (!t).then_some(layout::MOE_TRAFFIC)].into_iter().flatten().collect();
        if !allow_missing {
            bail!(
                "--metrics-dir `{}` has no rows in {}; add them, or pass --allow-missing-metrics to score without MoE metrics",
                dir.display(),
                which.join(" or ")
            );
        }
        if !r && !t {
            return Ok(None);
        }
    }
    // Checked here, before any request is sent.
    scorecard::drop_rate(&folder, folder.moe_router.as_deref().unwrap_or_default())?;
    let text = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    Ok(Some(MoeMetrics { dir: dir.to_path_buf(), router: text(layout::MOE_ROUTER), traffic: text(layout::MOE_TRAFFIC) }))
}

fn questions(a: &EvalArgs) -> Result<Vec<QualityItem>> {
    let mut items = if a.no_builtin_quality { Vec::new() } else { quality::builtin_items() };
    for path in &a.quality {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read --quality `{}`", path.display()))?;
        let task = path.file_stem().map_or_else(|| "custom".to_string(), |s| s.to_string_lossy().into_owned());
        items.extend(quality::parse_items(&text, &path.display().to_string(), &task)?);
    }
    if items.is_empty() {
        bail!("no quality questions: --no-builtin-quality needs at least one --quality FILE.jsonl");
    }
    Ok(items)
}

fn check_args(a: &EvalArgs) -> Result<()> {
    if a.mode.is_empty() || !a.mode.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
        bail!("--mode `{}` names the run folder: use letters, digits, `-`, `_` or `.`", a.mode);
    }
    if a.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    if a.prompt_tokens <= WARM_TAIL_TOKENS {
        bail!("--prompt-tokens must be more than {WARM_TAIL_TOKENS}: warm prompts share all but their last {WARM_TAIL_TOKENS} tokens");
    }
    for (flag, v) in [("--ttft-slo-ms", a.ttft_slo_ms), ("--latency-slo-ms", a.latency_slo_ms)] {
        if !(v.is_finite() && v > 0.0) {
            bail!("{flag} must be a positive number of milliseconds, not {v}");
        }
    }
    if a.timeout == 0 {
        bail!("--timeout must be at least 1 second");
    }
    if a.metrics_dir.is_none() && !a.allow_missing_metrics {
        bail!(
            "no MoE metrics: vLLM publishes no router or expert-traffic data, so the drop-rate and imbalance checks need \
             --metrics-dir DIR with moe_router.jsonl and moe_traffic.jsonl (the lab's formats); or pass \
             --allow-missing-metrics to score without them (those checks show as missing and the verdict is NO-SHIP)"
        );
    }
    Ok(())
}

fn now_unix() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn progress_bar() -> (indicatif::ProgressBar, impl FnMut(Progress)) {
    let bar = crate::cmd::sweep::progress(0, "requests (quality questions, then timed latency requests)");
    let b = bar.clone();
    let update = move |p: Progress| {
        b.set_length(p.total as u64);
        b.set_position(p.done as u64);
    };
    (bar, update)
}

fn sys_meta(
    a: &EvalArgs,
    out: &EvalOutcome,
    items: &[QualityItem],
    moe: Option<&MoeMetrics>,
    started: Duration,
    nonce: u64,
) -> serde_json::Value {
    let mut sets: Vec<&str> = items.iter().map(|i| i.task.as_str()).collect();
    sets.dedup();
    let cache = out.metrics_after.as_ref().or(out.metrics_before.as_ref());
    serde_json::json!({
        "mode": a.mode,
        "generator": format!("simctl {}", env!("CARGO_PKG_VERSION")),
        "source": "simctl eval",
        "endpoint": out.endpoint,
        "model": out.model,
        "max_model_len": out.max_model_len,
        "ttft_slo_ms": a.ttft_slo_ms,
        "latency_slo_ms": a.latency_slo_ms,
        "temperature": 0.0,
        "quality_sets": sets,
        "quality_questions": items.len(),
        "answer_max_tokens": quality::ANSWER_MAX_TOKENS,
        "decode_lengths": DECODE_LENGTHS,
        "prompt_tokens": out.samples.first().map(|s| s.prompt_tokens),
        "warm_tail_tokens": WARM_TAIL_TOKENS,
        "repeats": a.repeats,
        "request_count": out.samples.len(),
        "concurrency": 1,
        "seed": nonce,
        "token_counting": out.samples.first().map(|s| s.counted_by),
        "latency_window_s": out.latency_window_s,
        "prefix_hit_rate": out.prefix_hit_rate(),
        "block_size": cache.and_then(|m| m.block_size()),
        "num_gpu_blocks": cache.and_then(|m| m.num_gpu_blocks()),
        "moe_metrics_dir": moe.map(|m| m.dir.display().to_string()),
        "started_unix_s": started.as_secs(),
        "notes": out.notes,
    })
}

pub fn run(a: EvalArgs) -> Result<ExitCode> {
    check_args(&a)?;
    let moe = a.metrics_dir.as_deref().map(|d| read_moe(d, a.allow_missing_metrics)).transpose()?.flatten();
    let items = questions(&a)?;
    let baseline = a.baseline.as_deref().map(Baseline::load).transpose().context("cannot read the baseline")?;
    let started = now_unix();
    let nonce = a.seed.unwrap_or(started.as_nanos() as u64);
    let out_dir = a.out.clone().unwrap_or_else(|| PathBuf::from(format!("out/eval/{}_{}", a.mode, started.as_secs())));
    let spec = EvalSpec {
        endpoint: a.endpoint.clone(),
        model: a.model.clone(),
        client: ClientConfig {
            stall_timeout: Duration::from_secs(a.timeout),
            probe_timeout: Duration::from_secs(a.probe_timeout.max(1)),
            ..ClientConfig::default()
        },
        quality: items.clone(),
        latency: LatencyPlan { prompt_tokens: a.prompt_tokens, decode_lengths: DECODE_LENGTHS.to_vec(), repeats: a.repeats, nonce },
        stop: crate::interrupt::stop_flag(),
    };
    let (bar, mut update) = progress_bar();
    let result = simctl_live::eval::run(&spec, &mut update);
    bar.finish_and_clear();
    let out = result?;
    for n in &out.notes {
        eprintln!("note: {n}");
    }

    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create output folder `{}`", out_dir.display()))?;
    let mut written = Vec::new();
    let quality_rows: Vec<QualityRow> = out
        .answers
        .iter()
        .map(|q| QualityRow {
            task: q.item.task.clone(),
            prompt: Some(q.prompt.clone()),
            prediction: q.prediction.clone(),
            expected: q.item.expected.clone(),
            correct: q.correct,
        })
        .collect();
    let latency_rows: Vec<LatencyRow> = out
        .samples
        .iter()
        .map(|s| LatencyRow {
            request_id: Some(s.id.clone()),
            ttft_ms: s.ttft_ms,
            decode_ms: s.decode_ms,
            prompt_tokens: Some(s.prompt_tokens),
            output_tokens: s.output_tokens,
            case: s.case.as_str().to_string(),
        })
        .collect();
    let path = |name: &str| out_dir.join(name);
    write_jsonl(&path(layout::QUALITY), &quality_rows)?;
    write_jsonl(&path(layout::LATENCY), &latency_rows)?;
    written.extend([path(layout::QUALITY), path(layout::LATENCY)]);
    if let Some(m) = &moe {
        for (name, text) in [(layout::MOE_ROUTER, &m.router), (layout::MOE_TRAFFIC, &m.traffic)] {
            if !text.is_empty() {
                std::fs::write(path(name), text).with_context(|| format!("cannot write `{}`", path(name).display()))?;
                written.push(path(name));
            }
        }
    } else {
        // A previous run in the same folder must not lend this one its MoE metrics.
        for name in [layout::MOE_ROUTER, layout::MOE_TRAFFIC] {
            let _ = std::fs::remove_file(path(name));
        }
    }
    write_json(&path(layout::SYS_META), &sys_meta(&a, &out, &items, moe.as_ref(), started, nonce))?;
    written.push(path(layout::SYS_META));
    let _ = std::fs::remove_file(path(layout::TPS_GOODPUT));

    // Score what was written, so that eval and `simctl scorecard` agree by construction.
    let mut folder = RunFolder::read(&out_dir)?;
    let drop_rate = Scorecard::build(&folder, None)?.moe.token_drop_rate;
    let slos = Slos::of(&folder)?;
    let tps = scorecard::throughput_from_latency(&latency_rows, Some(out.latency_window_s), slos, drop_rate);
    write_json(&path(layout::TPS_GOODPUT), &tps)?;
    written.push(path(layout::TPS_GOODPUT));
    folder.tps_goodput = Some(tps);
    let card = Scorecard::build(&folder, baseline.as_ref())?;
    let card_path = crate::cmd::scorecard::scorecard_path(&out_dir);
    write_json(&card_path, &card)?;
    written.push(card_path);

    if out.interrupted {
        eprintln!(
            "interrupted ({}): wrote what finished under {}/ ({} questions, {} timed requests)",
            crate::interrupt::signal_name(),
            out_dir.display(),
            out.answers.len(),
            out.samples.len()
        );
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&card)?);
    } else {
        println!("{} on {} ({} questions, {} timed requests)\n", out.model, out.endpoint, out.answers.len(), out.samples.len());
        print!("{}", scorecard::render_card(&card));
        println!("\nwrote {} files under {}/ ({})", written.len(), out_dir.display(), crate::cmd::sweep::list(&out_dir, &written));
    }
    Ok(if out.interrupted { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
