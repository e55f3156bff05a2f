//! `simctl run`: simulate one scenario and summarise it.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use simctl_engine::Simulation;
use simctl_engine::record::DepthSeries;
use simctl_engine::rng::RunSeed;
use simctl_engine::time::SimDuration;
use simctl_reports::figures::RunSamples;
use simctl_reports::frame::float_text;
use simctl_reports::{RunRecorder, Summary, render_table};

use crate::scenario::{self, Loaded};

/// Run a scenario and print its summary.
///
/// With no SCENARIO, runs the embedded default (the flagship_vs_mid fleet).
/// Prints a table on stdout; `--json` prints the summary as JSON instead.
/// `--out DIR` also writes DIR/summary.json, DIR/requests.csv (one row per request),
/// DIR/queue_depth.csv (each pool's depth over time), Parquet copies (builds with
/// `--features parquet`), DIR/plots/ (TTFT/TPOT CDFs, queue depth over time), and
/// latency.jsonl, tps_goodput.json and sys_meta.json for `simctl scorecard DIR`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file; omit for the embedded default.
    #[arg(value_name = "SCENARIO.scn")]
    scenario: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override a parameter or a setting: `arrival_rate=36/s`, `router.policy=round_robin`.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Write summary.json, requests.csv and the scorecard's inputs into this folder
    /// (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// With --out, also write DIR/decisions.csv: every routing decision with each
    /// candidate's score, to see why the policy chose what it did.
    #[arg(long, requires = "out")]
    decisions: bool,
    /// Do not draw plots under --out.
    #[arg(long)]
    no_plots: bool,
    /// Replace the results simctl wrote before in --out (only its own files are removed).
    #[arg(long, requires = "out")]
    force: bool,
    /// Print nothing on stdout (errors still go to stderr); with --out, for scripts.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    let overrides = scenario::parse_overrides(&a.set)?;
    let spec = match scenario::load(a.scenario.as_deref(), &overrides)? {
        Loaded::Spec(s) => s,
        Loaded::Invalid => return Ok(ExitCode::from(crate::EXIT_BAD_INPUT)),
    };
    let seed = a.seed.unwrap_or(spec.seed);
    let mut rec = RunRecorder::for_spec(&spec);
    // Streamed files are written under temporary names and renamed once complete.
    let mut streamed = Vec::new();
    if let Some(dir) = &a.out {
        crate::out::prepare(dir, a.force)?;
        (rec, streamed) = open_streams(rec, dir, a.decisions)?;
    }
    let mut sim = Simulation::with_seed(&spec, RunSeed(seed))
        .map_err(|errs| anyhow::anyhow!(errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")))?;
    if a.out.is_some() {
        sim = sim.with_depth_series();
    }
    let started = Instant::now();
    let interrupted = step_with_progress(&mut sim, &mut rec, a.quiet);
    let totals = sim.finish(&mut rec);
    let wall = started.elapsed();
    finish_streams(&mut rec, a.out.as_deref(), &streamed)?;
    let samples = a.out.as_ref().map(|_| RunSamples {
        scenario: spec.name.clone(),
        ttft_ms: rec.ttft_samples().to_vec(),
        tpot_ms: rec.tpot_samples().to_vec(),
        depth: depth_points(&totals.depth_series),
        depth_bucket_s: totals.depth_series.first().map_or(0.0, |d| d.bucket.as_secs_f64()),
    });
    let mut summary = Summary::build(&spec, seed, &mut rec, &totals);
    if interrupted {
        summary.complete = false;
        summary.incomplete_reason =
            Some(format!("interrupted ({}) at {:.3} s simulated", crate::interrupt::signal_name(), totals.end.as_secs_f64()));
    }
    let mut written = Vec::new();
    if let Some(dir) = &a.out {
        let path = dir.join("summary.json");
        crate::out::write(&path, serde_json::to_string_pretty(&summary)? + "\n")?;
        written.push(path);
        written.extend(streamed.iter().cloned());
        // With latency.jsonl, what `simctl scorecard` needs to score a simulated run.
        written.extend(simctl_reports::scorecard::write_simulated_run_files(dir, &spec, &summary)?);
        let samples = samples.expect("made with --out");
        let path = dir.join("queue_depth.csv");
        write_depth_csv(&crate::out::partial(&path), &samples.depth).with_context(|| format!("cannot write `{}`", path.display()))?;
        crate::out::commit(&path)?;
        written.push(path);
        written.extend(crate::cmd::parquet_copies(dir, &["requests", "queue_depth"])?);
        if !a.no_plots {
            written.extend(simctl_reports::figures::run_figures(dir, &samples).map_err(|e| anyhow::anyhow!("cannot draw plots: {e}"))?);
        }
    }
    if let Some(e) = &totals.workload_error {
        eprintln!("error: the workload stopped early: {e}");
        eprintln!("hint: fix the line, or replay with `skip_invalid = true` to skip and count bad lines");
        return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
    }
    if let Some(why) = summary.incomplete_reason.as_deref().filter(|_| !summary.complete) {
        // The figures of what finished are written and printed, marked incomplete.
        eprintln!("error: the run stopped early: {why}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !a.quiet {
        print!("{}", render_table(&summary));
        let secs = wall.as_secs_f64().max(1e-9);
        println!("\nsimulated {} events in {:.3} s wall ({:.1} M events/s)", totals.events, secs, totals.events as f64 / secs / 1e6);
        if let Some(dir) = &a.out {
            println!("wrote {} files under {}/ ({})", written.len(), dir.display(), crate::cmd::sweep::list(dir, &written));
        }
    }
    Ok(if summary.complete { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Streams a run's per-request files into `dir` as the run goes (under temporary names until
/// [`finish_streams`]): requests.csv, latency.jsonl and, with `decisions`, decisions.csv.
/// Returns the recorder writing them and the files' final paths.
pub(crate) fn open_streams(mut rec: RunRecorder, dir: &std::path::Path, decisions: bool) -> Result<(RunRecorder, Vec<PathBuf>)> {
    let mut streamed = Vec::new();
    let create = |name: &str, streamed: &mut Vec<PathBuf>| -> Result<BufWriter<File>> {
        let path = dir.join(name);
        let f = File::create(crate::out::partial(&path)).with_context(|| format!("cannot create `{}`", path.display()))?;
        streamed.push(path);
        Ok(BufWriter::new(f))
    };
    rec = rec.with_csv(Box::new(create("requests.csv", &mut streamed)?)).context("cannot write requests.csv")?;
    rec = rec.with_latency_rows(Box::new(create(simctl_reports::scorecard::folder::LATENCY, &mut streamed)?));
    if decisions {
        rec = rec.with_decisions(Box::new(create("decisions.csv", &mut streamed)?)).context("cannot write decisions.csv")?;
    }
    Ok((rec, streamed))
}

/// Ends the files of [`open_streams`]: requests.csv is finished (latency columns without a
/// single value, every request rejected or failed, are filled so that each column keeps one
/// type whatever happened) and every file takes its final name.
pub(crate) fn finish_streams(rec: &mut RunRecorder, out: Option<&std::path::Path>, streamed: &[PathBuf]) -> Result<()> {
    rec.finish_csv().context("cannot write requests.csv")?;
    if let Some(dir) = out {
        let empty = rec.empty_float_columns();
        if !empty.is_empty() {
            let (path, tmp) = (crate::out::partial(&dir.join("requests.csv")), dir.join(".requests.csv.fill"));
            simctl_reports::frame::fill_empty_columns(&path, &tmp, &empty).context("cannot write requests.csv")?;
            std::fs::rename(&tmp, &path).context("cannot write requests.csv")?;
        }
    }
    for path in streamed {
        crate::out::commit(path)?;
    }
    Ok(())
}

/// Wall time before `simctl run` shows progress on a terminal.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// Steps the run to its end in chunks (which gives the same records as one run), showing
/// progress on a terminal once it has taken more than [`PROGRESS_AFTER`]; stops early on
/// Ctrl-C or SIGTERM. Returns whether it was interrupted.
fn step_with_progress(sim: &mut Simulation, rec: &mut RunRecorder, quiet: bool) -> bool {
    let show = !quiet && std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let interrupted = step_in_chunks(sim, rec, |sim, rec| {
        if show && started.elapsed() > PROGRESS_AFTER {
            let b = bar.get_or_insert_with(|| {
                let b = ProgressBar::new_spinner();
                b.set_style(ProgressStyle::with_template("{spinner} {msg}  {elapsed_precise}").expect("valid template"));
                b
            });
            b.set_message(format!("simulated {:.1} s  done {}  in flight {}", sim.now().as_secs_f64(), rec.recorded(), sim.in_flight()));
            b.tick();
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    interrupted
}

/// Steps a run to its end in chunks of simulated time (the same records as one run),
/// stopping early on Ctrl-C or SIGTERM. Returns whether it was interrupted.
pub(crate) fn step_interruptibly(sim: &mut Simulation, rec: &mut RunRecorder) -> bool {
    step_in_chunks(sim, rec, |_, _| {})
}

/// The step loop of [`step_with_progress`] and [`step_interruptibly`]: chunks of simulated
/// time sized to about 50 ms of wall time each, so that a signal is seen within a fraction
/// of a second; `after` runs after each chunk.
fn step_in_chunks(sim: &mut Simulation, rec: &mut RunRecorder, mut after: impl FnMut(&Simulation, &RunRecorder)) -> bool {
    crate::interrupt::install();
    let mut chunk = SimDuration::from_millis(10);
    while let Some(t) = sim.next_event_time() {
        if crate::interrupt::interrupted() {
            return true;
        }
        let t0 = Instant::now();
        sim.step_until(t + chunk, rec);
        let took = t0.elapsed();
        if took < Duration::from_millis(25) {
            chunk = SimDuration::from_nanos(chunk.as_nanos().saturating_mul(2));
        } else if took > Duration::from_millis(100) {
            chunk = SimDuration::from_nanos((chunk.as_nanos() / 2).max(1));
        }
        after(sim, rec);
    }
    crate::interrupt::interrupted()
}

/// Per pool, `(time s, depth)` at the start of each bucket.
pub(crate) fn depth_points(series: &[DepthSeries]) -> Vec<(String, Vec<(f64, f64)>)> {
    series
        .iter()
        .map(|d| {
            let w = d.bucket.as_secs_f64();
            (d.pool.clone(), d.peak.iter().enumerate().map(|(k, &v)| (k as f64 * w, f64::from(v))).collect())
        })
        .collect()
}

/// `time_s,pool,depth`: one row per pool and bucket (peak depth in the bucket).
pub(crate) fn write_depth_csv(path: &std::path::Path, depth: &[(String, Vec<(f64, f64)>)]) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = BufWriter::new(File::create(path)?);
    writeln!(w, "time_s,pool,depth")?;
    for (pool, pts) in depth {
        for (t, d) in pts {
            // Depths are whole request counts.
            writeln!(w, "{},{},{}", float_text(*t), simctl_reports::csv_text(pool), *d as u64)?;
        }
    }
    w.flush()
}
