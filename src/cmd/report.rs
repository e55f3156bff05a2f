//! `simctl report`: reload result folders, merge sweep shards, print, redraw, `--html`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use simctl_reports::figures::{RunSamples, run_figures, sweep_figures};
use simctl_reports::html::{Table, page};
use simctl_reports::sweep::{HEADLINE, SweepResults, fmt_metric, read_csv_columns, read_csv_text_columns, render_points};
use simctl_reports::{Summary, render_table};

/// Reload result folders: print their tables, redraw their plots, merge sweep shards.
///
/// DIR is a `simctl run --out` folder or a `simctl sweep --out` folder. Several sweep
/// folders are the shards (or partial re-runs) of one sweep: they are merged into exactly
/// the results an unsharded run writes (`--out MERGED` writes them, with plots). Missing
/// runs are listed. `--html FILE` writes one self-contained page with the tables and the
/// SVG plots inline.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  simctl report out/sweep\n  simctl report shards/* --out out/merged --html out/merged/report.html")]
pub struct ReportArgs {
    /// Result folders.
    #[arg(value_name = "DIR", required = true)]
    dirs: Vec<PathBuf>,
    /// Write the merged sweep (results, aggregates, manifest, plots) into this folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Do not redraw plots.
    #[arg(long)]
    no_plots: bool,
    /// Also write a self-contained HTML page with the tables and plots.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Print one JSON document on stdout instead of the tables (runs: their summaries; a
    /// sweep: its points, runs and missing runs; a capacity search: its results).
    #[arg(long)]
    json: bool,
    /// Replace the results simctl wrote before in --out.
    #[arg(long, requires = "out")]
    force: bool,
}

/// What a folder holds.
pub enum Loaded {
    Run(Box<Summary>),
    Sweep(Box<SweepResults>),
    /// `simctl sweep --find-max` results (find_max.json).
    FindMax(Box<serde_json::Value>),
}

/// Reads a run or a sweep folder (or a run's summary.json).
pub fn load(dir: &Path) -> Result<Loaded> {
    if dir.is_file() {
        let text = std::fs::read_to_string(dir).with_context(|| format!("cannot read `{}`", dir.display()))?;
        let s: Summary = serde_json::from_str(&text).with_context(|| format!("`{}` is not a simctl summary.json", dir.display()))?;
        return Ok(Loaded::Run(Box::new(s)));
    }
    if dir.join("manifest.json").is_file() {
        return SweepResults::read(dir).map(|r| Loaded::Sweep(Box::new(r))).map_err(|e| anyhow::anyhow!(e));
    }
    let summary = dir.join("summary.json");
    if summary.is_file() {
        // A run folder: every file is checked, not just its summary.
        return match simctl_reports::records::check_run_dir(dir) {
            Ok(s) => Ok(Loaded::Run(Box::new(s))),
            Err(e) => crate::bad!("{e}"),
        };
    }
    let fm = dir.join("find_max.json");
    if fm.is_file() {
        let text = std::fs::read_to_string(&fm).with_context(|| format!("cannot read `{}`", fm.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", fm.display()))?;
        return Ok(Loaded::FindMax(Box::new(v)));
    }
    if !dir.exists() {
        crate::bad!("`{}` does not exist", dir.display());
    }
    crate::bad!(
        "`{}` holds neither manifest.json (a sweep) nor summary.json (a run); give a folder written by `simctl sweep --out` or `simctl run --out`",
        dir.display()
    )
}

fn svgs(files: &[PathBuf]) -> Vec<(String, String)> {
    files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "svg"))
        .filter_map(|f| Some((f.file_stem()?.to_string_lossy().replace('_', " "), std::fs::read_to_string(f).ok()?)))
        .collect()
}

fn plots_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir.join("plots")).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.sort();
    v
}

/// A run's figures from its folder's requests.csv and queue_depth.csv.
fn run_samples(dir: &Path, scenario: &str) -> Result<RunSamples> {
    let cols = read_csv_columns(&dir.join("requests.csv"), &["ttft_ms", "tpot_ms"]).map_err(|e| anyhow::anyhow!(e))?;
    let mut depth: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut bucket = 0.0;
    let qd = dir.join("queue_depth.csv");
    if qd.is_file() {
        let t = read_csv_columns(&qd, &["time_s", "depth"]).map_err(|e| anyhow::anyhow!(e))?;
        let pools = read_csv_text_columns(&qd, &["pool"]).map_err(|e| anyhow::anyhow!(e))?;
        for ((time, d), pool) in t[0].iter().zip(&t[1]).zip(&pools[0]) {
            match depth.iter_mut().find(|(n, _)| n == pool) {
                Some((_, v)) => {
                    if bucket == 0.0
                        && let Some(last) = v.last()
                    {
                        bucket = time - last.0;
                    }
                    v.push((*time, *d));
                }
                None => depth.push((pool.clone(), vec![(*time, *d)])),
            }
        }
    }
    let finite = |c: &Vec<f64>| c.iter().copied().filter(|x| x.is_finite()).collect::<Vec<f64>>();
    Ok(RunSamples { scenario: scenario.to_string(), ttft_ms: finite(&cols[0]), tpot_ms: finite(&cols[1]), depth, depth_bucket_s: bucket })
}

fn points_table(r: &SweepResults) -> Table {
    let stats = r.point_stats();
    let numeric = r.numeric_columns();
    let mut columns: Vec<String> = r.manifest.grid.iter().map(|a| a.name.clone()).collect();
    let shown: Vec<usize> = HEADLINE.iter().filter_map(|(c, _)| numeric.iter().position(|&n| r.header[n] == *c)).collect::<Vec<_>>();
    columns.extend(shown.iter().map(|&m| r.header[numeric[m]].clone()));
    let rows = stats
        .iter()
        .map(|s| {
            let mut row = s.values.clone();
            for &m in &shown {
                let (v, h) = s.metrics[m];
                row.push(if r.manifest.seeds > 1 { format!("{} ± {}", fmt_metric(v), fmt_metric(h)) } else { fmt_metric(v) });
            }
            row
        })
        .collect();
    let seeds = if r.manifest.seeds > 1 { format!(", mean ± 95% interval over {} seeds", r.manifest.seeds) } else { String::new() };
    Table { caption: format!("per point{seeds}"), columns, rows }
}

/// A find_max.json result's group as `name=value ...` (empty for a search without axes).
pub fn find_max_group(r: &serde_json::Value) -> String {
    r["group"]
        .as_array()
        .map(|g| g.iter().filter_map(|kv| Some(format!("{}={}", kv[0].as_str()?, kv[1].as_str()?))).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The capacity-search table of a find_max.json.
fn find_max_table(v: &serde_json::Value) -> Table {
    let param = v["param"].as_str().unwrap_or("value");
    let columns: Vec<String> = ["group", &format!("max {param}"), "req/s", "gpus", "req/s per GPU", "attainment", "first failing"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let num = |x: &serde_json::Value| x.as_f64().map_or("-".to_string(), fmt_metric);
    let rows = v["results"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let group = Some(find_max_group(r)).filter(|g| !g.is_empty()).unwrap_or_else(|| "(scenario)".into());
                    vec![
                        group,
                        r["max_value"].as_str().unwrap_or("none").to_string(),
                        num(&r["rate_per_s"]),
                        r["gpus"].as_u64().map_or("-".into(), |g| g.to_string()),
                        num(&r["per_gpu"]),
                        num(&r["slo_attainment_at_max"]),
                        r["first_failing_value"].as_str().unwrap_or("-").to_string(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let target = v["slo_attainment_target"].as_f64().unwrap_or(f64::NAN);
    Table { caption: format!("largest {param} with SLO attainment >= {target}"), columns, rows }
}

fn print_table(t: &Table) {
    let widths: Vec<usize> =
        (0..t.columns.len()).map(|c| t.rows.iter().map(|r| r[c].len()).chain([t.columns[c].len()]).max().unwrap_or(4)).collect();
    println!("{}", t.caption);
    let line = |cells: &[String]| cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ");
    println!("{}", line(&t.columns));
    for r in &t.rows {
        println!("{}", line(r));
    }
}

pub fn run(a: ReportArgs) -> Result<ExitCode> {
    let loaded: Vec<(PathBuf, Loaded)> = a.dirs.iter().map(|d| load(d).map(|l| (d.clone(), l))).collect::<Result<_>>()?;
    if loaded.iter().any(|(_, l)| matches!(l, Loaded::FindMax(_))) {
        if loaded.len() > 1 {
            crate::bad!("give one capacity-search folder at a time");
        }
        let (dir, Loaded::FindMax(v)) = &loaded[0] else { unreachable!("checked above") };
        if a.json {
            println!("{}", serde_json::to_string_pretty(v)?);
            return Ok(ExitCode::SUCCESS);
        }
        let table = find_max_table(v);
        print_table(&table);
        if let Some(html) = &a.html {
            let text = page("simctl capacity search", &[], &[table], &svgs(&plots_in(dir)));
            std::fs::write(html, text).with_context(|| format!("cannot write `{}`", html.display()))?;
            println!("wrote {}", html.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let sweeps = loaded.iter().filter(|(_, l)| matches!(l, Loaded::Sweep(_))).count();
    if sweeps > 0 && sweeps < loaded.len() {
        crate::bad!("give either sweep folders (to merge) or run folders, not both");
    }
    if sweeps > 0 {
        let parts: Vec<SweepResults> = loaded
            .into_iter()
            .map(|(_, l)| match l {
                Loaded::Sweep(s) => *s,
                Loaded::Run(_) | Loaded::FindMax(_) => unreachable!("checked above"),
            })
            .collect();
        let n = parts.len();
        let merged = match SweepResults::merge(parts) {
            Ok(m) => m,
            Err(e) => crate::bad!("{e}"),
        };
        let missing = merged.missing();
        if a.json {
            let doc = serde_json::json!({
                "manifest": merged.manifest,
                "complete": missing.is_empty(),
                "runs_found": merged.rows.len(),
                "missing_runs": missing.iter().map(|(p, r)| serde_json::json!({"point": p, "replicate": r})).collect::<Vec<_>>(),
                "points": merged.points_json(),
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
            if let Some(dir) = &a.out {
                crate::out::prepare(dir, a.force)?;
                crate::cmd::sweep::write_folder(dir, &merged, !a.no_plots)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        print!("{}", render_points(&merged));
        println!(
            "\n{} of {} runs ({} points x {} seeds) from {n} folder(s){}",
            merged.rows.len(),
            merged.manifest.runs,
            merged.manifest.points,
            merged.manifest.seeds,
            if missing.is_empty() { "" } else { " — INCOMPLETE" }
        );
        if !missing.is_empty() {
            let shown: Vec<String> = missing.iter().take(10).map(|(p, r)| format!("point {p} seed #{r}")).collect();
            eprintln!("warning: {} run(s) missing: {}{}", missing.len(), shown.join(", "), if missing.len() > 10 { ", ..." } else { "" });
        }
        // Where results and plots go: --out, or the folder itself when there is one.
        let target: Option<PathBuf> = a.out.clone().or_else(|| (n == 1).then(|| a.dirs[0].clone()));
        let mut plots = Vec::new();
        match &target {
            Some(dir) if a.out.is_some() => {
                crate::out::prepare(dir, a.force)?;
                let files = crate::cmd::sweep::write_folder(dir, &merged, !a.no_plots)?;
                println!("wrote {} files under {}/ ({})", files.len(), dir.display(), crate::cmd::sweep::list(dir, &files));
                plots = plots_in(dir);
            }
            Some(dir) => {
                if !a.no_plots && missing.is_empty() {
                    let files = sweep_figures(dir, &merged).map_err(|e| anyhow::anyhow!("cannot draw plots: {e}"))?;
                    println!("redrew {} plots under {}/plots", files.len(), dir.display());
                }
                plots = plots_in(dir);
            }
            None => eprintln!("note: give --out DIR to write the merged results and plots"),
        }
        if let Some(html) = &a.html {
            let m = &merged.manifest;
            let intro = vec![
                format!("scenario {} ({}, fnv1a64 {}), simctl {}", m.scenario, m.scenario_source, m.scenario_fnv1a64, m.simctl_version),
                format!("grid: {}", m.grid.iter().map(|x| format!("{} = {}", x.name, x.values.join(", "))).collect::<Vec<_>>().join("; ")),
                format!(
                    "{}{} of {} runs, {} seed(s) from base seed {}; fixed overrides: {}",
                    if missing.is_empty() { "" } else { "INCOMPLETE: " },
                    merged.rows.len(),
                    m.runs,
                    m.seeds,
                    m.base_seed,
                    if m.set.is_empty() { "none".to_string() } else { m.set.join(" ") }
                ),
            ];
            let text = page(&format!("simctl sweep: {}", m.scenario), &intro, &[points_table(&merged)], &svgs(&plots));
            std::fs::write(html, text).with_context(|| format!("cannot write `{}`", html.display()))?;
            println!("wrote {}", html.display());
        }
        return Ok(ExitCode::SUCCESS);
    }

    // Runs: each folder's table, its plots redrawn, and one HTML page for them all.
    if a.out.is_some() {
        crate::bad!("--out merges sweeps; for runs, the plots are redrawn inside each folder");
    }
    if a.json {
        let runs: Vec<serde_json::Value> = loaded
            .iter()
            .map(|(dir, l)| {
                let Loaded::Run(s) = l else { unreachable!("runs only here") };
                serde_json::json!({ "folder": dir.display().to_string(), "summary": s })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "runs": runs }))?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut columns = vec!["metric".to_string()];
    let mut figures = Vec::new();
    let mut summaries = Vec::new();
    for (dir, l) in &loaded {
        let Loaded::Run(s) = l else { unreachable!("runs only here") };
        println!("== {}", dir.display());
        print!("{}", render_table(s));
        println!();
        let folder = if dir.is_file() { dir.parent().unwrap_or(Path::new(".")).to_path_buf() } else { dir.clone() };
        if !a.no_plots && folder.join("requests.csv").is_file() {
            let samples = run_samples(&folder, &s.scenario)?;
            let files = run_figures(&folder, &samples).map_err(|e| anyhow::anyhow!("cannot draw plots: {e}"))?;
            println!("redrew {} plots under {}/plots\n", files.len(), folder.display());
        }
        for (cap, svg) in svgs(&plots_in(&folder)) {
            figures.push((format!("{}: {cap}", dir.display()), svg));
        }
        columns.push(dir.display().to_string());
        summaries.push(simctl_reports::flatten_summary(s));
    }
    if let Some(html) = &a.html {
        let names: Vec<String> = summaries[0].iter().map(|(k, _)| k.clone()).collect();
        let rows = names
            .iter()
            .map(|k| {
                let mut row = vec![k.clone()];
                for s in &summaries {
                    row.push(match s.iter().find(|(n, _)| n == k).map(|(_, c)| c) {
                        Some(simctl_reports::Cell::Num(v)) => fmt_metric(*v),
                        Some(simctl_reports::Cell::Text(t)) => t.clone(),
                        None => String::new(),
                    });
                }
                row
            })
            .collect();
        let table = Table { caption: "summary".into(), columns, rows };
        let text = page("simctl runs", &[], &[table], &figures);
        std::fs::write(html, text).with_context(|| format!("cannot write `{}`", html.display()))?;
        println!("wrote {}", html.display());
    }
    Ok(ExitCode::SUCCESS)
}
