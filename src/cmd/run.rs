//! `simctl run`: simulate one scenario and summarise it.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use simctl_engine::Simulation;
use simctl_engine::record::DepthSeries;
use simctl_engine::rng::RunSeed;
use simctl_reports::figures::RunSamples;
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
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    let overrides = scenario::parse_overrides(&a.set)?;
    let spec = match scenario::load(a.scenario.as_deref(), &overrides)? {
        Loaded::Spec(s) => s,
        Loaded::Invalid => return Ok(ExitCode::from(crate::EXIT_BAD_INPUT)),
    };
    let seed = a.seed.unwrap_or(spec.seed);
    let mut rec = RunRecorder::for_spec(&spec);
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create output folder `{}`", dir.display()))?;
        let path = dir.join("requests.csv");
        let f = File::create(&path).with_context(|| format!("cannot create `{}`", path.display()))?;
        rec = rec.with_csv(Box::new(BufWriter::new(f))).with_context(|| format!("cannot write `{}`", path.display()))?;
        let path = dir.join(simctl_reports::scorecard::folder::LATENCY);
        let f = File::create(&path).with_context(|| format!("cannot create `{}`", path.display()))?;
        rec = rec.with_latency_rows(Box::new(BufWriter::new(f)));
        if a.decisions {
            let path = dir.join("decisions.csv");
            let f = File::create(&path).with_context(|| format!("cannot create `{}`", path.display()))?;
            rec = rec.with_decisions(Box::new(BufWriter::new(f))).with_context(|| format!("cannot write `{}`", path.display()))?;
        }
    }
    let mut sim = Simulation::with_seed(&spec, RunSeed(seed))
        .map_err(|errs| anyhow::anyhow!(errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")))?;
    if a.out.is_some() {
        sim = sim.with_depth_series();
    }
    let started = Instant::now();
    let totals = sim.run(&mut rec);
    let wall = started.elapsed();
    rec.finish_csv().context("cannot write requests.csv")?;
    let samples = a.out.as_ref().map(|_| RunSamples {
        scenario: spec.name.clone(),
        ttft_ms: rec.ttft_samples().to_vec(),
        tpot_ms: rec.tpot_samples().to_vec(),
        depth: depth_points(&totals.depth_series),
        depth_bucket_s: totals.depth_series.first().map_or(0.0, |d| d.bucket.as_secs_f64()),
    });
    let summary = Summary::build(&spec, seed, &mut rec, &totals);
    let mut written = Vec::new();
    if let Some(dir) = &a.out {
        let path = dir.join("summary.json");
        let text = serde_json::to_string_pretty(&summary)?;
        std::fs::write(&path, text + "\n").with_context(|| format!("cannot write `{}`", path.display()))?;
        written.extend([path, dir.join("requests.csv"), dir.join(simctl_reports::scorecard::folder::LATENCY)]);
        // With latency.jsonl, what `simctl scorecard` needs to score a simulated run.
        written.extend(simctl_reports::scorecard::write_simulated_run_files(dir, &spec, &summary)?);
        let samples = samples.expect("made with --out");
        let path = dir.join("queue_depth.csv");
        write_depth_csv(&path, &samples.depth).with_context(|| format!("cannot write `{}`", path.display()))?;
        written.push(path);
        if a.decisions {
            written.push(dir.join("decisions.csv"));
        }
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
    if let Some(why) = &totals.stop_reason {
        // The figures of what finished are written and printed, marked incomplete.
        eprintln!("error: the run stopped early: {why}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render_table(&summary));
        let secs = wall.as_secs_f64().max(1e-9);
        println!("\nsimulated {} events in {:.3} s wall ({:.1} M events/s)", totals.events, secs, totals.events as f64 / secs / 1e6);
        if let Some(dir) = &a.out {
            println!("wrote {} files under {}/ ({})", written.len(), dir.display(), crate::cmd::sweep::list(dir, &written));
        }
    }
    Ok(if totals.complete { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Per pool, `(time s, depth)` at the start of each bucket.
fn depth_points(series: &[DepthSeries]) -> Vec<(String, Vec<(f64, f64)>)> {
    series
        .iter()
        .map(|d| {
            let w = d.bucket.as_secs_f64();
            (d.pool.clone(), d.peak.iter().enumerate().map(|(k, &v)| (k as f64 * w, f64::from(v))).collect())
        })
        .collect()
}

/// `time_s,pool,depth`: one row per pool and bucket (peak depth in the bucket).
fn write_depth_csv(path: &std::path::Path, depth: &[(String, Vec<(f64, f64)>)]) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = BufWriter::new(File::create(path)?);
    writeln!(w, "time_s,pool,depth")?;
    for (pool, pts) in depth {
        for (t, d) in pts {
            writeln!(w, "{t},{},{d}", simctl_reports::csv_text(pool))?;
        }
    }
    w.flush()
}
