//! `simctl sweep`: run a scenario over a grid of parameter values, in parallel.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use simctl_engine::Simulation;
use simctl_engine::rng::RunSeed;
use simctl_engine::spec::ScenarioSpec;
use simctl_reports::{Cell, RunRecorder, Summary, csv_text, flatten_summary, mean_ci95};

use crate::grid::{self, Axis};
use crate::scenario;

/// Run a scenario over a grid of parameter values, in parallel.
///
/// Each `--grid NAME=SPEC` adds an axis; several form their cartesian product. SPEC is
/// `a..b` (7 points, ends included), `a..b:step`, or a list `x,y,z`; values may carry units
/// (`10/s..40/s:10/s`, `0ms,10ms,100ms,1s`) or be whole values (`router.policy=round_robin,telemetry`).
/// NAME is a `param` of the scenario or a dotted path to a setting, as with `--set`.
///
/// Every point runs `--seeds` times. Replicate k uses the same seed at every point (common
/// random numbers: points differ only by what the grid changes), so results never depend on
/// `-j`. With one seed a point equals `simctl run --set ...` with the scenario's seed.
///
/// Prints one line per point; `--out DIR` writes results.csv (one row per point and seed),
/// points.csv (mean and 95% interval over seeds) and manifest.json. Rows are appended to
/// results.csv as runs finish, so an interrupted sweep keeps what it finished.
#[derive(Debug, Args)]
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
    /// Write results.csv, points.csv and manifest.json into this folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

struct Job {
    point: usize,
    replicate: u32,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

pub fn run(a: SweepArgs) -> Result<ExitCode> {
    let fixed = scenario::parse_overrides(&a.set)?;
    let (name, text) = scenario::read(a.scenario.as_deref())?;
    // The scenario's own sweep block, when the command line gives no grid.
    let block = match simctl_dsl::load(&name, &text, &fixed) {
        Ok(s) => s.sweep,
        Err(d) => {
            eprint!("{}", d.render(std::io::stderr().is_terminal()));
            return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
        }
    };
    let grid_args = if a.grid.is_empty() { block.as_ref().map(|b| b.grid.clone()).unwrap_or_default() } else { a.grid.clone() };
    if grid_args.is_empty() {
        anyhow::bail!(
            "nothing to sweep: give `--grid NAME=SPEC` (e.g. `--grid arrival_rate=10/s..40/s:10/s`) or a `sweep {{ grid = [...] }}` block in the scenario"
        );
    }
    let seeds = a.seeds.or(block.as_ref().and_then(|b| b.seeds)).unwrap_or(1);
    let axes: Vec<Axis> = grid_args.iter().map(|g| grid::parse_axis(g)).collect::<Result<_>>()?;
    let points = grid::points(&axes);

    // Lower every point first: a bad value fails the sweep before anything runs.
    let mut specs: Vec<ScenarioSpec> = Vec::with_capacity(points.len());
    for p in &points {
        let mut ov = fixed.clone();
        ov.extend(p.iter().cloned());
        match simctl_dsl::load(&name, &text, &ov) {
            Ok(s) => specs.push(s),
            Err(d) => {
                let at: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
                eprintln!("at grid point {}:", at.join(" "));
                eprint!("{}", d.render(std::io::stderr().is_terminal()));
                return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
            }
        }
    }
    let base = a.seed.unwrap_or(specs[0].seed);
    let seed_of = |r: u32| if r == 0 { base } else { RunSeed(base).derive(u64::from(r)).0 };
    let jobs: Vec<Job> = (0..points.len()).flat_map(|p| (0..seeds).map(move |r| Job { point: p, replicate: r })).collect();

    let header: Vec<String> = {
        let probe = simulate(&specs[0], base, true);
        let mut h = vec!["point".to_string(), "replicate".to_string(), "seed".to_string()];
        h.extend(axes.iter().map(|x| x.name.clone()));
        h.extend(flatten_summary(&probe).into_iter().map(|(k, _)| k));
        h
    };
    let csv = match &a.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create output folder `{}`", dir.display()))?;
            let path = dir.join("results.csv");
            let mut w = BufWriter::new(File::create(&path).with_context(|| format!("cannot create `{}`", path.display()))?);
            writeln!(w, "{}", header.iter().map(|h| csv_text(h)).collect::<Vec<_>>().join(","))?;
            w.flush()?;
            Some(Mutex::new(w))
        }
        None => None,
    };

    let bar = ProgressBar::new(jobs.len() as u64);
    if std::io::stderr().is_terminal() {
        bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} runs  {elapsed_precise} (eta {eta})").expect("valid template"));
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let threads = a.jobs.map(|j| j as usize).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("cannot start worker threads")?;
    let started = Instant::now();
    let total = jobs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let rows: Vec<Result<Vec<Cell>>> = pool.install(|| {
        jobs.par_iter()
            .map(|job| {
                let seed = seed_of(job.replicate);
                let summary = simulate(&specs[job.point], seed, false);
                let mut row = vec![Cell::Num(job.point as f64), Cell::Num(f64::from(job.replicate)), Cell::Text(seed.to_string())];
                row.extend(points[job.point].iter().map(|(_, v)| Cell::Text(v.clone())));
                row.extend(flatten_summary(&summary).into_iter().map(|(_, c)| c));
                if let Some(w) = &csv {
                    let mut w = w.lock().expect("no panics while writing");
                    writeln!(w, "{}", row.iter().map(Cell::to_csv).collect::<Vec<_>>().join(","))?;
                    w.flush()?;
                }
                bar.inc(1);
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if !std::io::stderr().is_terminal() && (n == total || n.is_multiple_of((total / 10).max(1))) {
                    eprintln!("sweep: {n}/{total} runs done");
                }
                Ok(row)
            })
            .collect()
    });
    bar.finish_and_clear();
    let rows: Vec<Vec<Cell>> = rows.into_iter().collect::<Result<_>>().context("cannot write results.csv")?;
    let wall = started.elapsed().as_secs_f64();

    // Rewrite results.csv in point order (it was written in completion order), then the
    // per-point aggregates and the manifest.
    if let Some(dir) = &a.out {
        let mut w = BufWriter::new(File::create(dir.join("results.csv"))?);
        writeln!(w, "{}", header.iter().map(|h| csv_text(h)).collect::<Vec<_>>().join(","))?;
        for r in &rows {
            writeln!(w, "{}", r.iter().map(Cell::to_csv).collect::<Vec<_>>().join(","))?;
        }
        w.flush()?;
        write_points(dir, &header, &axes, &rows, seeds as usize)?;
        let manifest = serde_json::json!({
            "simctl_version": env!("CARGO_PKG_VERSION"),
            "scenario": specs[0].name,
            "scenario_source": name,
            "scenario_fnv1a64": format!("{:016x}", fnv(text.as_bytes())),
            "grid": axes,
            "set": fixed.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "seeds": seeds,
            "base_seed": base,
            "points": points.len(),
            "runs": total,
        });
        std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(&manifest)? + "\n")?;
    }

    // One line per point: the axes and the headline metrics (means over seeds).
    let col = |name: &str| header.iter().position(|h| h == name);
    let shown = ["ttft_ms.p95", "tpot_ms.p95", "goodput_rps", "slo_attainment", "goodput_tok_per_usd"];
    let mut line = String::new();
    for ax in &axes {
        line.push_str(&format!("{:>16} ", ax.name));
    }
    for m in shown {
        line.push_str(&format!("{m:>20}"));
    }
    println!("{line}");
    for (p, point) in points.iter().enumerate() {
        let mut line = String::new();
        for (_, v) in point {
            line.push_str(&format!("{v:>16} "));
        }
        for m in shown {
            let Some(c) = col(m) else { continue };
            let xs: Vec<f64> = rows
                .iter()
                .filter(|r| matches!(r[0], Cell::Num(x) if x as usize == p))
                .filter_map(|r| if let Cell::Num(v) = r[c] { Some(v) } else { None })
                .collect();
            let (mean, ci) = mean_ci95(&xs);
            if seeds > 1 { line.push_str(&format!("{:>12.2} ±{:>6.2}", mean, ci)) } else { line.push_str(&format!("{mean:>20.2}")) }
        }
        println!("{line}");
    }
    println!("\n{total} runs ({} points x {} seeds) in {wall:.2} s on {threads} threads", points.len(), seeds);
    if let Some(dir) = &a.out {
        println!("wrote {0}/results.csv, {0}/points.csv and {0}/manifest.json", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn simulate(spec: &ScenarioSpec, seed: u64, probe: bool) -> Summary {
    let mut rec = RunRecorder::for_spec(spec);
    let mut s = spec.clone();
    if probe {
        // Only the column names are needed: a tiny run suffices.
        s.run.duration = Some(simctl_engine::time::SimDuration::from_millis(1));
        s.run.requests = Some(1);
    }
    let totals = Simulation::with_seed(&s, RunSeed(seed)).expect("validated when lowered").run(&mut rec);
    Summary::build(&s, seed, &mut rec, &totals)
}

fn write_points(dir: &std::path::Path, header: &[String], axes: &[Axis], rows: &[Vec<Cell>], seeds: usize) -> Result<()> {
    let first_metric = 3 + axes.len();
    let mut w = BufWriter::new(File::create(dir.join("points.csv"))?);
    let mut cols = vec!["point".to_string(), "seeds".to_string()];
    cols.extend(axes.iter().map(|a| a.name.clone()));
    let numeric: Vec<usize> = (first_metric..header.len()).filter(|&c| rows.iter().all(|r| matches!(r[c], Cell::Num(_)))).collect();
    for &c in &numeric {
        cols.push(header[c].clone());
        cols.push(format!("{}.ci95", header[c]));
    }
    writeln!(w, "{}", cols.iter().map(|c| csv_text(c)).collect::<Vec<_>>().join(","))?;
    let mut by_point: BTreeMap<usize, Vec<&Vec<Cell>>> = BTreeMap::new();
    for r in rows {
        if let Cell::Num(p) = r[0] {
            by_point.entry(p as usize).or_default().push(r);
        }
    }
    for (p, rs) in by_point {
        let mut out = vec![p.to_string(), seeds.to_string()];
        out.extend(rs[0][3..first_metric].iter().map(Cell::to_csv));
        for &c in &numeric {
            let xs: Vec<f64> = rs.iter().filter_map(|r| if let Cell::Num(v) = r[c] { Some(v) } else { None }).collect();
            let (m, h) = mean_ci95(&xs);
            out.push(format!("{m}"));
            out.push(format!("{h}"));
        }
        writeln!(w, "{}", out.join(","))?;
    }
    w.flush()?;
    Ok(())
}
