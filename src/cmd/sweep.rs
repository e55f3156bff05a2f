//! `simctl sweep`: run a scenario over a grid of parameter values, in parallel.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use simctl_engine::Simulation;
use simctl_engine::rng::RunSeed;
use simctl_engine::spec::ValidSpec;
use simctl_reports::capacity;
use simctl_reports::figures::numeric_value;
use simctl_reports::sweep::{Manifest, Shard, SweepResults, render_points};
use simctl_reports::{Cell, RunRecorder, Summary, csv_text, flatten_summary};

use crate::grid::{self, Axis};
use crate::scenario;

/// Run a scenario over a grid of parameter values, in parallel.
///
/// Each `--grid NAME=SPEC` adds an axis; several form their cartesian product. SPEC is
/// `a..b` (7 points, ends included), `a..b:step`, or a list `x,y,z`; values may carry units
/// (`10/s..40/s:10/s`, `0ms,10ms,100ms,1s`) or be whole values (`router.policy=round_robin,telemetry`).
/// NAME is a `param` of the scenario or a dotted path to a setting, as with `--set`.
///
/// Every point runs `--seeds` times. By default replicate k uses the same seed at every point
/// (common random numbers: points differ only by what the grid changes; with one seed a point
/// equals `simctl run --set ...`); `--seeding independent` derives a seed per point and
/// replicate from the base seed and the point index. Either way a run's seed depends only on
/// its place in the grid, so results never depend on `-j` or on sharding.
///
/// `--out DIR` writes results.csv (one row per point and seed, appended as runs finish, so
/// an interrupted sweep keeps what it finished), points.csv (mean and 95% interval over
/// seeds), manifest.json, Parquet copies (builds with `--features parquet`) and plots/.
///
/// `--find-max NAME` searches instead: for each combination of the grid's axes (policies,
/// fleets), the largest value of NAME (e.g. arrival_rate) whose SLO attainment, averaged over
/// seeds, stays at or above `--slo-attainment`, by doubling/halving from the scenario's value
/// and then bisection (DistServe's per-GPU goodput).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # a param without a unit takes the scenario's (0.5..2.0 per 50 ms), 7 points
  simctl sweep --grid arrival_rate=0.5..2.0
  simctl sweep --grid arrival_rate=12/s..36/s:6/s \\
      --grid router.policy=round_robin,telemetry --seeds 3 --out out/sweep
  simctl sweep scenarios/stale_telemetry.scn \\
      --grid staleness=0ms,10ms,100ms,1s -j 2
  simctl sweep --out out/fleets \\
      --grid 'pool.decode.instances=[dc_big, 3 x dc_mid],[4 x dc_mid]'
  simctl sweep --find-max arrival_rate --slo-attainment 0.9 \\
      --grid router.policy=round_robin,least_loaded
  # slice 3 of 16 on a batch system; then: simctl report shards/* --out m
  simctl sweep --grid arrival_rate=6/s..60/s:2/s --shard 3/16 --out shards/3")]
pub struct SweepArgs {
    /// Scenario file; omit for the embedded default.
    #[arg(value_name = "SCENARIO.scn")]
    scenario: Option<PathBuf>,
    /// An axis: NAME=a..b, NAME=a..b:step or NAME=x,y,z. Repeat for a product.
    /// With no --grid, the scenario's `sweep { grid = [...] }` block is used.
    #[arg(long = "grid", value_name = "NAME=SPEC")]
    grid: Vec<String>,
    /// Fixed overrides for every point (as `simctl run --set`).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Runs per point, with different seeds.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    seeds: Option<u32>,
    /// Base seed (default: the scenario's).
    #[arg(long)]
    seed: Option<u64>,
    /// Parallel runs (default: all cores).
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,
    /// Write results, aggregates, manifest and plots into this folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Do not draw plots under --out.
    #[arg(long)]
    no_plots: bool,
    /// Replace the results simctl wrote before in --out (only its own files are removed).
    #[arg(long, requires = "out")]
    force: bool,
    /// Print the per-point table as one JSON document on stdout instead.
    #[arg(long)]
    json: bool,
    /// Print nothing on stdout (errors and notes still go to stderr).
    #[arg(long, short, conflicts_with = "json")]
    quiet: bool,
    /// Run only slice I of N (1-based) of the grid's runs, for batch systems; merge the
    /// slices' folders with `simctl report DIR... --out MERGED`.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<Shard>,
    /// Find the largest value of this parameter that meets --slo-attainment, per
    /// combination of the other axes. NAME alone starts from the scenario's value;
    /// NAME=LO..HI bisects inside that range.
    #[arg(long, value_name = "NAME[=LO..HI]", conflicts_with = "shard")]
    find_max: Option<String>,
    /// How runs get their seeds: `common` (replicate k has the same seed at every point, so
    /// points differ only by what the grid changes) or `independent` (a seed per point and
    /// replicate, derived from the base seed and the point index).
    #[arg(long, value_enum, default_value_t = Seeding::Common, conflicts_with = "find_max")]
    seeding: Seeding,
    /// Target SLO attainment for --find-max (share of requests meeting every SLO).
    #[arg(long, default_value_t = 0.9, requires = "find_max")]
    slo_attainment: f64,
    /// Stop bisecting when the bracket is narrower than this share of its value.
    #[arg(long, default_value_t = 0.01, requires = "find_max")]
    tolerance: f64,
}

fn parse_shard(s: &str) -> std::result::Result<Shard, String> {
    let bad = || format!("`{s}`: expected I/N with 1 <= I <= N, e.g. 3/8");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (index, count): (u32, u32) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if index == 0 || index > count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

struct Job {
    k: usize,
    point: usize,
    replicate: u32,
}

use simctl_engine::rng::fnv1a as fnv;

/// How runs get their seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Seeding {
    /// Replicate k has the same seed at every point (common random numbers): differences
    /// between points come from the grid, not from the draw. Replicate 0 is the base seed.
    Common,
    /// Every point × replicate has its own seed, derived from the base seed, the point index
    /// and the replicate: points are statistically independent.
    Independent,
}

impl Seeding {
    fn name(self) -> &'static str {
        match self {
            Seeding::Common => "common",
            Seeding::Independent => "independent",
        }
    }
}

/// Derived seeds keep 63 bits, so the `seed` column reads as a signed 64-bit integer in
/// every table tool (pandas, polars), as the scenario's own seeds do.
const DERIVED_SEED_MASK: u64 = u64::MAX >> 1;

fn seed_of(base: u64, seeding: Seeding, point: usize, r: u32) -> u64 {
    match seeding {
        Seeding::Common if r == 0 => base,
        Seeding::Common => RunSeed(base).derive(u64::from(r)).0 & DERIVED_SEED_MASK,
        Seeding::Independent => RunSeed(RunSeed(base).derive(1 << 32 | point as u64).0).derive(u64::from(r)).0 & DERIVED_SEED_MASK,
    }
}

/// Lowers the scenario with `ov`; prints the diagnostics and returns None when it fails.
fn lower(name: &str, text: &str, ov: &[(String, String)], context: &str) -> Option<ValidSpec> {
    match simctl_dsl::load(name, text, ov) {
        Ok(s) => Some(s),
        Err(d) => {
            if !context.is_empty() {
                eprintln!("{context}:");
            }
            eprint!("{}", d.render(std::io::stderr().is_terminal()));
            None
        }
    }
}

fn threads(jobs: Option<u32>) -> usize {
    jobs.map(|j| j as usize).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

pub(crate) fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if std::io::stderr().is_terminal() {
        let t = format!("{{bar:40}} {{pos}}/{{len}} {what}  {{elapsed_precise}} (eta {{eta}})");
        bar.set_style(ProgressStyle::with_template(&t).expect("valid template"));
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

pub fn run(a: SweepArgs) -> Result<ExitCode> {
    let fixed = scenario::parse_overrides(&a.set)?;
    let (name, text) = scenario::read(a.scenario.as_deref())?;
    // The scenario's own sweep block, when the command line gives no grid.
    let Some(base_spec) = lower(&name, &text, &fixed, "") else { return Ok(ExitCode::from(crate::EXIT_BAD_INPUT)) };
    let block = base_spec.sweep.clone();
    let grid_args = if a.grid.is_empty() { block.as_ref().map(|b| b.grid.clone()).unwrap_or_default() } else { a.grid.clone() };
    let seeds = a.seeds.or(block.as_ref().and_then(|b| b.seeds)).unwrap_or(1);
    let mut axes: Vec<Axis> = grid_args.iter().map(|g| grid::parse_axis(g)).collect::<Result<_>>()?;
    for (k, axis) in axes.iter().enumerate() {
        if let Some(first) = axes[..k].iter().position(|x| x.name == axis.name) {
            crate::bad!("`--grid {}` and `--grid {}` both sweep `{}`; give one axis per name", grid_args[first], grid_args[k], axis.name);
        }
        if let Some((key, _)) = fixed.iter().find(|(key, _)| *key == axis.name) {
            crate::bad!("`{key}` is both a --grid axis and a --set override; drop one");
        }
    }
    for axis in &mut axes {
        adopt_default_unit(axis, &text);
    }
    let base = a.seed.unwrap_or(base_spec.seed);
    let manifest = Manifest {
        simctl_version: env!("CARGO_PKG_VERSION").into(),
        scenario: base_spec.name.clone(),
        scenario_source: name.clone(),
        scenario_fnv1a64: format!("{:016x}", fnv(text.as_bytes())),
        grid: axes.clone(),
        set: fixed.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        seeds,
        base_seed: base,
        seeding: a.seeding.name().into(),
        points: 0,
        runs: 0,
        shard: a.shard,
        incomplete_reason: None,
    };
    if let Some(target) = &a.find_max {
        return find_max(&a, target, &name, &text, &fixed, manifest);
    }
    if grid_args.is_empty() {
        bail!(
            "nothing to sweep: give `--grid NAME=SPEC` (e.g. `--grid arrival_rate=10/s..40/s:10/s`) or a `sweep {{ grid = [...] }}` block in the scenario"
        );
    }
    let points = grid::points(&axes);

    // Lower every point first: a bad value fails the sweep before anything runs.
    let mut specs: Vec<ValidSpec> = Vec::with_capacity(points.len());
    for p in &points {
        let mut ov = fixed.clone();
        ov.extend(p.iter().cloned());
        let at: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match lower(&name, &text, &ov, &format!("at grid point {}", at.join(" "))) {
            Some(s) => specs.push(s),
            None => return Ok(ExitCode::from(crate::EXIT_BAD_INPUT)),
        }
    }
    let all: Vec<Job> = (0..points.len())
        .flat_map(|p| (0..seeds).map(move |r| (p, r)))
        .enumerate()
        .map(|(k, (point, replicate))| Job { k, point, replicate })
        .collect();
    let total_runs = all.len();
    let jobs: Vec<Job> = all.into_iter().filter(|j| a.shard.is_none_or(|s| s.owns(j.k))).collect();
    let manifest = Manifest { points: points.len(), runs: total_runs, ..manifest };

    // Columns from the scenarios alone (simctl_reports::sweep::result_columns); cells go by name.
    let axis_names: Vec<String> = axes.iter().map(|x| x.name.clone()).collect();
    let header = simctl_reports::sweep::result_columns(&axis_names, &specs);
    let metric_col: std::collections::HashMap<&str, usize> = header.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let lead = simctl_reports::sweep::LEAD_COLUMNS.len() + axes.len();
    // The manifest first and rows as they finish: an interrupted sweep's folder can still
    // be reported on (`simctl report` lists what is missing).
    let csv = match &a.out {
        Some(dir) => {
            crate::out::prepare(dir, a.force)?;
            std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(&manifest)? + "\n")
                .with_context(|| format!("cannot write `{}`", dir.join("manifest.json").display()))?;
            let path = dir.join("results.csv");
            let mut w = BufWriter::new(File::create(&path).with_context(|| format!("cannot create `{}`", path.display()))?);
            writeln!(w, "{}", header.iter().map(|h| csv_text(h)).collect::<Vec<_>>().join(","))?;
            w.flush()?;
            Some(Mutex::new(w))
        }
        None => None,
    };

    let bar = progress(jobs.len() as u64, "runs");
    let threads = threads(a.jobs);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("cannot start worker threads")?;
    let started = Instant::now();
    let total = jobs.len();
    let done = AtomicUsize::new(0);
    let rows: Vec<Result<Option<Vec<Cell>>>> = pool.install(|| {
        jobs.par_iter()
            .map(|job| {
                if crate::interrupt::interrupted() {
                    return Ok(None);
                }
                let seed = seed_of(base, a.seeding, job.point, job.replicate);
                let Some(summary) = simulate(&specs[job.point], seed) else { return Ok(None) };
                let mut row = vec![Cell::Num(job.point as f64), Cell::Num(f64::from(job.replicate)), Cell::Text(seed.to_string())];
                row.extend(points[job.point].iter().map(|(_, v)| Cell::Text(v.clone())));
                row.resize(header.len(), Cell::Text(String::new()));
                for (k, c) in flatten_summary(&summary) {
                    if let Some(&i) = metric_col.get(k.as_str())
                        && i >= lead
                    {
                        row[i] = c;
                    }
                }
                if let Some(w) = &csv {
                    let mut w = w.lock().expect("no panics while writing");
                    writeln!(w, "{}", row.iter().map(Cell::to_csv).collect::<Vec<_>>().join(","))?;
                    w.flush()?;
                }
                bar.inc(1);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if !std::io::stderr().is_terminal() && (n == total || n.is_multiple_of((total / 10).max(1))) {
                    eprintln!("sweep: {n}/{total} runs done");
                }
                Ok(Some(row))
            })
            .collect()
    });
    bar.finish_and_clear();
    let rows: Vec<Option<Vec<Cell>>> = rows.into_iter().collect::<Result<_>>().context("cannot write results.csv")?;
    let rows: Vec<Vec<Cell>> = rows.into_iter().flatten().collect();
    let mut manifest = manifest;
    if crate::interrupt::interrupted() {
        let why = format!("interrupted ({}): {} of {total} runs finished", crate::interrupt::signal_name(), rows.len());
        eprintln!("{why}; the folder keeps them (`simctl report` lists the missing runs)");
        manifest.incomplete_reason = Some(why);
    }
    let wall = started.elapsed().as_secs_f64();
    drop(csv);
    let results = SweepResults { manifest, header, rows };
    let incomplete = incomplete_runs(&results);
    for (point, replicate, why) in &incomplete {
        eprintln!("warning: run {point}/{replicate} is incomplete: {why}");
    }
    let files = match &a.out {
        Some(dir) => write_folder(dir, &results, !a.no_plots)?,
        None => Vec::new(),
    };
    if a.json {
        let doc = serde_json::json!({
            "points": results.points_json(),
            "runs": total,
            "incomplete_runs": incomplete.len(),
            "threads": threads,
            "wall_s": wall,
            "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if !a.quiet {
        print!("{}", render_points(&results));
        let shard = a.shard.map(|s| format!(", shard {}/{}", s.index, s.count)).unwrap_or_default();
        println!("\n{total} runs ({} points x {} seeds{shard}) in {wall:.2} s on {threads} threads", points.len(), seeds);
        if !incomplete.is_empty() {
            println!("{} of {total} runs are INCOMPLETE (see the warnings); their figures cover what finished", incomplete.len());
        }
        if let Some(dir) = &a.out {
            println!("wrote {} files under {}/ ({})", files.len(), dir.display(), list(dir, &files));
        }
    }
    let stopped = results.manifest.incomplete_reason.is_some();
    Ok(if incomplete.is_empty() && !stopped { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs whose summary says they stopped early: `(point, replicate, why)`.
fn incomplete_runs(r: &SweepResults) -> Vec<(usize, u32, String)> {
    let (Some(c), Some(w)) = (r.column("complete"), r.column("incomplete_reason")) else { return Vec::new() };
    r.rows
        .iter()
        .filter(|row| row[c] == Cell::Num(0.0))
        .map(|row| {
            let n = |k: usize| if let Cell::Num(x) = row[k] { x } else { 0.0 };
            let why = if let Cell::Text(t) = &row[w] { t.clone() } else { String::new() };
            (n(0) as usize, n(1) as u32, why)
        })
        .collect()
}

/// Names of `files` relative to `dir`, comma-separated.
pub fn list(dir: &Path, files: &[PathBuf]) -> String {
    files.iter().map(|f| f.strip_prefix(dir).unwrap_or(f).display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Writes a sweep's folder: results (sorted), aggregates, manifest, and plots unless told not to.
pub fn write_folder(dir: &Path, results: &SweepResults, plots: bool) -> Result<Vec<PathBuf>> {
    let mut files = results.write(dir).with_context(|| format!("cannot write results into `{}`", dir.display()))?;
    if !cfg!(feature = "parquet") {
        eprintln!("note: no Parquet files: this simctl was built without the `parquet` feature (cargo build --release --features parquet)");
    }
    if plots {
        let missing = results.missing();
        if results.manifest.shard.is_some() || !missing.is_empty() {
            eprintln!("note: no plots for a partial sweep; `simctl report` draws them once the shards are merged");
        } else {
            files.extend(simctl_reports::figures::sweep_figures(dir, results).map_err(|e| anyhow::anyhow!("cannot draw plots: {e}"))?);
        }
    }
    Ok(files)
}

/// One run of a sweep; `None` when Ctrl-C (or SIGTERM) stopped it before its end: a sweep
/// keeps only runs that finished.
fn simulate(spec: &ValidSpec, seed: u64) -> Option<Summary> {
    let mut rec = RunRecorder::for_spec(spec);
    let mut sim = Simulation::with_seed(spec, RunSeed(seed)).expect("validated when lowered");
    if super::run::step_interruptibly(&mut sim, &mut rec) {
        return None;
    }
    let totals = sim.finish(&mut rec);
    Some(Summary::build(spec, seed, &mut rec, &totals))
}

/// The default text of `param NAME = ...` in the scenario, if it has one.
fn param_default(text: &str, param: &str) -> Option<String> {
    let (items, _) = simctl_dsl::parser::parse_file(text);
    items.iter().find_map(|it| match it {
        simctl_dsl::ast::Item::Param { name, value } if name.name == param => {
            Some(text[value.span.start..value.span.end].trim().to_string())
        }
        _ => None,
    })
}

/// Bare numbers on an axis whose `param` default carries a unit take that unit as written:
/// with `param arrival_rate = 1.2 per 50ms`, `--grid arrival_rate=0.5..2.0` sweeps
/// 0.5 to 2.0 requests per 50 ms (the lab's per-tick rate), as a user reading the scenario
/// would expect. Says so on stderr.
fn adopt_default_unit(axis: &mut Axis, text: &str) {
    if !axis.values.iter().all(|v| v.trim().parse::<f64>().is_ok()) {
        return;
    }
    let Some(default) = param_default(text, &axis.name) else { return };
    let Some((_, unit)) = numeric_value(&default) else { return };
    if unit.is_empty() || unit.contains(['(', ')', '*', '+']) {
        return;
    }
    let sep = if unit.starts_with('/') { "" } else { " " };
    for v in &mut axis.values {
        *v = format!("{}{sep}{unit}", v.trim());
    }
    eprintln!(
        "note: {}: bare numbers take the unit of the scenario's `param {} = {default}`: {}",
        axis.name,
        axis.name,
        axis.values.join(", ")
    );
}

/// How the searched value is written for a factor or an absolute value.
enum Scale {
    /// `x` in a unit: the value is written `{x}{unit}`.
    Absolute { lo: f64, hi: f64, unit: String },
    /// A factor of the scenario's default expression: `{f} * ({expr})`, shown as
    /// `f × base` when the default is a plain number.
    Factor { expr: String, base: Option<(f64, String)> },
}

impl Scale {
    fn text(&self, x: f64) -> String {
        match self {
            Scale::Absolute { unit, .. } => format!("{}{unit}", round9(x)),
            Scale::Factor { expr, base: Some((v, u)) } => {
                let _ = expr;
                format!("{}{u}", round9(v * x))
            }
            Scale::Factor { expr, base: None } => format!("{} * ({expr})", round9(x)),
        }
    }
    fn number(&self, x: f64) -> Option<f64> {
        match self {
            Scale::Absolute { .. } => Some(x),
            Scale::Factor { base: Some((v, _)), .. } => Some(v * x),
            Scale::Factor { base: None, .. } => None,
        }
    }
}

fn round9(v: f64) -> f64 {
    let m = 10f64.powi(9 - v.abs().log10().ceil().max(-300.0) as i32);
    if m.is_finite() && m > 0.0 { (v * m).round() / m } else { v }
}

#[derive(serde::Serialize)]
struct Found {
    group: Vec<(String, String)>,
    max_value: Option<String>,
    max_value_number: Option<f64>,
    gpus: u32,
    /// Mean arrival rate of the workload at the max value, requests/s.
    rate_per_s: Option<f64>,
    /// That rate over the fleet's GPUs (DistServe's per-GPU goodput).
    per_gpu: Option<f64>,
    slo_attainment_at_max: Option<f64>,
    goodput_rps_at_max: Option<f64>,
    first_failing_value: Option<String>,
    runs: usize,
    note: String,
}

/// A capacity search stopped by Ctrl-C or SIGTERM.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Stopped {}

fn find_max(a: &SweepArgs, target: &str, name: &str, text: &str, fixed: &[(String, String)], manifest: Manifest) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&a.slo_attainment) {
        bail!("--slo-attainment {} is not a share between 0 and 1 (e.g. 0.9)", a.slo_attainment);
    }
    if a.tolerance <= 0.0 {
        bail!("--tolerance must be positive");
    }
    let (param, range) = match target.split_once('=') {
        Some((p, r)) => (p.trim().to_string(), Some(r.trim().to_string())),
        None => (target.trim().to_string(), None),
    };
    let scale = match range {
        Some(r) => {
            let Some((lo, hi)) = r.split_once("..") else {
                bail!("--find-max {target}: expected NAME or NAME=LO..HI, e.g. arrival_rate=5/s..80/s")
            };
            let (Some((lo, ua)), Some((hi, ub))) = (numeric_value(lo.trim()), numeric_value(hi.trim())) else {
                bail!("--find-max {target}: LO and HI must be numbers with an optional unit, e.g. 5/s..80/s")
            };
            if ua != ub || !(lo > 0.0 && hi > lo) {
                bail!("--find-max {target}: need 0 < LO < HI in one unit");
            }
            Scale::Absolute { lo, hi, unit: ua }
        }
        None => {
            let Some(expr) = param_default(text, &param) else {
                bail!("--find-max {param}: the scenario has no `param {param} = ...`; give a range instead: --find-max {param}=LO..HI")
            };
            Scale::Factor { base: numeric_value(&expr).filter(|(v, u)| *v > 0.0 && !u.contains(' ')), expr }
        }
    };
    if a.grid.iter().any(|g| g.split_once('=').is_some_and(|(n, _)| n.trim() == param)) {
        bail!("--find-max {param}: {param} is also a --grid axis; the search chooses its values");
    }
    let axes = manifest.grid.clone();
    let groups = grid::points(&axes);
    let seeds = manifest.seeds;
    let base = manifest.base_seed;
    let threads = threads(a.jobs);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("cannot start worker threads")?;
    let started = Instant::now();

    // Check every group lowers at the starting value before searching.
    let start = match &scale {
        Scale::Absolute { lo, .. } => *lo,
        Scale::Factor { .. } => capacity::Range::FromOne.start(),
    };
    let with = |g: &[(String, String)], x: f64| {
        let mut ov = fixed.to_vec();
        ov.extend(g.iter().cloned());
        ov.push((param.clone(), scale.text(x)));
        ov
    };
    let mut gpus = Vec::new();
    for g in &groups {
        let at: Vec<String> = g.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match lower(name, text, &with(g, start), &format!("at {} {param}={}", at.join(" "), scale.text(start))) {
            Some(s) if !s.slo.is_empty() || s.workload.classes.iter().any(|c| c.slo.is_some_and(|c| !c.is_empty())) => {
                gpus.push(s.pools.iter().flat_map(|p| p.instances.iter()).map(|i| i.tp).sum::<u32>())
            }
            Some(_) => crate::bad!(
                "--find-max searches for the largest {param} that meets an SLO, and the scenario gives none{}; add e.g. `slo {{ ttft = 500ms; tpot = 50ms }}`, or `--set slo.ttft=500ms`",
                if at.is_empty() { String::new() } else { format!(" at {}", at.join(" ")) }
            ),
            None => return Ok(ExitCode::from(crate::EXIT_BAD_INPUT)),
        }
    }
    eprintln!(
        "find-max: {param} for SLO attainment >= {} over {} group(s), {} seed(s) each, tolerance {}%",
        a.slo_attainment,
        groups.len(),
        seeds,
        a.tolerance * 100.0
    );
    let evals = AtomicUsize::new(0);
    // Mean SLO attainment and goodput over seeds at value x.
    let eval = |g: &[(String, String)], x: f64| -> Result<(f64, f64)> {
        let spec =
            simctl_dsl::load(name, text, &with(g, x)).map_err(|d| anyhow::anyhow!("{param}={}: {}", scale.text(x), d.render(false)))?;
        let sums: Vec<(f64, f64)> = (0..seeds)
            .into_par_iter()
            .map(|r| {
                let s = simulate(&spec, seed_of(base, Seeding::Common, 0, r))?;
                Some((s.slo_attainment.unwrap_or(0.0), s.goodput_rps.unwrap_or(0.0)))
            })
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow::Error::new(Stopped))?;
        evals.fetch_add(seeds as usize, Ordering::Relaxed);
        let n = f64::from(seeds);
        Ok((sums.iter().map(|p| p.0).sum::<f64>() / n, sums.iter().map(|p| p.1).sum::<f64>() / n))
    };
    let bar = progress(groups.len() as u64, "groups searched");
    let found: Vec<Result<Found>> = pool.install(|| {
        groups
            .par_iter()
            .zip(&gpus)
            .map(|(g, &gpus)| {
                let range = match &scale {
                    Scale::Absolute { lo, hi, .. } => capacity::Range::Between { lo: *lo, hi: *hi },
                    Scale::Factor { .. } => capacity::Range::FromOne,
                };
                // Ctrl-C stops a group's search with the bracket found so far (the highest
                // value that met the target is still a valid lower bound).
                let s = capacity::search(range, a.slo_attainment, a.tolerance, |x| eval(g, x));
                let (runs, mut note) = (s.evals, s.note);
                match s.stopped_by {
                    None => {}
                    Some(e) if e.is::<Stopped>() => {
                        note = format!("interrupted ({}): not narrowed to the tolerance", crate::interrupt::signal_name());
                    }
                    Some(e) => return Err(e),
                }
                let pass = s.pass.map(|p| (p.x, p.attainment, p.goodput));
                let fail = s.fail;
                bar.inc(1);
                let number = pass.and_then(|p| scale.number(p.0));
                let rate =
                    pass.and_then(|p| simctl_dsl::load(name, text, &with(g, p.0)).ok()).and_then(|s| s.workload.arrivals.mean_rate());
                Ok(Found {
                    group: g.clone(),
                    max_value: pass.map(|p| scale.text(p.0)),
                    max_value_number: number,
                    gpus,
                    rate_per_s: rate,
                    per_gpu: rate.map(|v| v / f64::from(gpus.max(1))),
                    slo_attainment_at_max: pass.map(|p| p.1),
                    goodput_rps_at_max: pass.map(|p| p.2),
                    first_failing_value: fail.map(|f| scale.text(f)),
                    runs: runs * seeds as usize,
                    note,
                })
            })
            .collect()
    });
    bar.finish_and_clear();
    let found: Vec<Found> = found.into_iter().collect::<Result<_>>()?;
    let wall = started.elapsed().as_secs_f64();

    // Table.
    let group_name = |f: &Found| {
        if f.group.is_empty() {
            "(scenario)".to_string()
        } else {
            f.group.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
        }
    };
    let w = found.iter().map(|f| group_name(f).len()).max().unwrap_or(10).max(10);
    let head = format!("max {param}");
    let v = found.iter().filter_map(|f| f.max_value.as_ref().map(String::len)).max().unwrap_or(4).max(head.len());
    println!(
        "{:<w$}  {:>v$} {:>10} {:>5} {:>13} {:>11} {:>12}  first failing",
        "group", head, "req/s", "gpus", "req/s per GPU", "attainment", "goodput_rps"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), simctl_reports::sweep::fmt_metric);
    for f in &found {
        println!(
            "{:<w$}  {:>v$} {:>10} {:>5} {:>13} {:>11} {:>12}  {}{}",
            group_name(f),
            f.max_value.clone().unwrap_or_else(|| "none".into()),
            opt(f.rate_per_s),
            f.gpus,
            opt(f.per_gpu),
            opt(f.slo_attainment_at_max),
            opt(f.goodput_rps_at_max),
            f.first_failing_value.clone().unwrap_or_else(|| "-".into()),
            if f.note.is_empty() { String::new() } else { format!("  ({})", f.note) }
        );
    }
    println!(
        "\n{} runs in {wall:.2} s on {threads} threads (target SLO attainment {}, tolerance {}%)",
        evals.load(Ordering::Relaxed),
        a.slo_attainment,
        a.tolerance * 100.0
    );
    if let Some(dir) = &a.out {
        crate::out::prepare(dir, a.force)?;
        let mut w = BufWriter::new(File::create(dir.join("find_max.csv"))?);
        let mut cols: Vec<String> = axes.iter().map(|x| x.name.clone()).collect();
        cols.extend(
            [
                "max_value",
                "max_value_number",
                "rate_per_s",
                "gpus",
                "rate_per_s_per_gpu",
                "slo_attainment_at_max",
                "goodput_rps_at_max",
                "first_failing_value",
                "runs",
                "note",
            ]
            .map(String::from),
        );
        writeln!(w, "{}", cols.iter().map(|c| csv_text(c)).collect::<Vec<_>>().join(","))?;
        let o = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x}"));
        for f in &found {
            let mut r: Vec<String> = f.group.iter().map(|(_, v)| csv_text(v)).collect();
            r.extend([
                csv_text(f.max_value.as_deref().unwrap_or("")),
                o(f.max_value_number),
                o(f.rate_per_s),
                f.gpus.to_string(),
                o(f.per_gpu),
                o(f.slo_attainment_at_max),
                o(f.goodput_rps_at_max),
                csv_text(f.first_failing_value.as_deref().unwrap_or("")),
                f.runs.to_string(),
                csv_text(&f.note),
            ]);
            writeln!(w, "{}", r.join(","))?;
        }
        w.flush()?;
        let json = serde_json::json!({
            "manifest": manifest,
            "complete": !crate::interrupt::interrupted(),
            "param": param,
            "slo_attainment_target": a.slo_attainment,
            "tolerance": a.tolerance,
            "results": found,
        });
        std::fs::write(dir.join("find_max.json"), serde_json::to_string_pretty(&json)? + "\n")?;
        let mut files = vec![dir.join("find_max.csv"), dir.join("find_max.json")];
        if !a.no_plots && found.len() > 1 && found.iter().all(|f| f.per_gpu.is_some()) {
            let out = dir.join("plots");
            std::fs::create_dir_all(&out)?;
            let panel = |title: &str, unit: &str, v: &dyn Fn(&Found) -> f64| simctl_reports::plot::BarPanel {
                title: title.into(),
                y_label: unit.into(),
                bars: found.iter().map(|f| (group_name(f), v(f), 0.0)).collect(),
            };
            let panels = [
                panel("max arrival rate", "requests per second", &|f| f.rate_per_s.unwrap_or(f64::NAN)),
                panel("max arrival rate per GPU", "requests per second per GPU", &|f| f.per_gpu.unwrap_or(f64::NAN)),
            ];
            files.extend(
                simctl_reports::plot::bar_chart(
                    &out.join("find_max"),
                    &format!("capacity at SLO attainment {}", a.slo_attainment),
                    &panels,
                )
                .map_err(|e| anyhow::anyhow!("cannot draw plots: {e}"))?,
            );
        }
        println!("wrote {}", list(dir, &files));
    }
    if crate::interrupt::interrupted() {
        eprintln!(
            "interrupted ({}): the brackets found so far are kept; a group marked interrupted is not narrowed to the tolerance",
            crate::interrupt::signal_name()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
