//! `simctl scorecard`: the lab's ship/no-ship table over run folders.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use simctl_reports::scorecard::{self, Baseline, RunFolder, Scorecard};

/// Exit status of `--check` when a run is NO-SHIP (the same as `compare --fail-if`).
pub const EXIT_NO_SHIP: u8 = crate::cmd::compare::EXIT_REGRESSION;

/// Score run folders: the original lab's six checks and a SHIP/NO-SHIP verdict.
///
/// Reads each DIR in the lab's layout (quality.jsonl, latency.jsonl, moe_router.jsonl,
/// moe_traffic.jsonl, tps_goodput.json, sys_meta.json), written by `simctl eval`, by
/// `simctl run --out`, or by the lab itself, and prints one summary row per run, then each
/// run's checks, details and reasons. SHIP iff accuracy >= 0.6, TTFT p95 <= the TTFT SLO
/// (sys_meta.json's ttft_slo_ms, else 1300 ms), decode p95 <= the latency SLO
/// (latency_slo_ms, else 4500 ms), drop rate <= 0.5% and expert-imbalance CV <= 0.25. A
/// figure a folder lacks is shown as missing and blocks SHIP. Goodput is shown, not gated.
///
/// Writes DIR/scorecard.json (DIR/scorecard.simctl.json when DIR holds a scorecard.json
/// that simctl did not write, which is left as it is).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  simctl scorecard out/eval/baseline_1733000000\n  simctl scorecard out/eval/* \\\n      --baseline out/eval/baseline_1733000000/scorecard.json --plot score.png\n  simctl run --out out/sim && simctl scorecard out/sim --json\n  # exit 3 on NO-SHIP\n  simctl scorecard out/eval/new --baseline out/eval/old --check"
)]
pub struct ScorecardArgs {
    /// Run folders.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Baseline to compare against: a scorecard.json (simctl's or the lab's) or a run folder.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Draw the 2x2 figure (accuracy, TTFT p95, decode p95, drops and imbalance) here:
    /// PNG, or SVG for a name ending in .svg.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// Print the scorecards as a JSON list instead of tables.
    #[arg(long)]
    json: bool,
    /// Exit with status 3 when any run is NO-SHIP.
    #[arg(long)]
    check: bool,
    /// Do not write scorecard.json into the folders.
    #[arg(long)]
    no_write: bool,
}

/// Where a folder's scorecard goes: `scorecard.json`, unless one is there that simctl did
/// not write (the lab's own), which is kept.
pub fn scorecard_path(dir: &Path) -> PathBuf {
    let path = dir.join(scorecard::folder::SCORECARD);
    let foreign = std::fs::read_to_string(&path).ok().is_some_and(|t| {
        let generator = serde_json::from_str::<serde_json::Value>(&t).ok().and_then(|v| v.get("generator")?.as_str().map(str::to_string));
        !generator.is_some_and(|g| g.starts_with("simctl"))
    });
    if foreign { dir.join("scorecard.simctl.json") } else { path }
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub fn run(a: ScorecardArgs) -> Result<ExitCode> {
    let baseline = a.baseline.as_deref().map(Baseline::load).transpose().context("cannot read the baseline")?;
    let mut cards = Vec::with_capacity(a.dirs.len());
    let mut written = Vec::new();
    for dir in &a.dirs {
        let folder = RunFolder::read(dir).with_context(|| format!("cannot read run folder `{}`", dir.display()))?;
        // The baseline folder itself is not compared with itself.
        let base = baseline.as_ref().filter(|_| !a.baseline.as_deref().is_some_and(|b| same_path(b, dir)));
        let card = Scorecard::build(&folder, base).with_context(|| format!("cannot score `{}`", dir.display()))?;
        if !a.no_write {
            let path = scorecard_path(dir);
            scorecard::folder::write_json(&path, &card)?;
            written.push(path);
        }
        cards.push(card);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&cards)?);
    } else {
        print!("{}", scorecard::render_summary(&cards));
        for c in &cards {
            println!();
            print!("{}", scorecard::render_card(c));
        }
    }
    if let Some(p) = &a.plot {
        if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        scorecard::scorecard_chart(p, &cards).map_err(|e| anyhow::anyhow!("cannot draw `{}`: {e}", p.display()))?;
        written.push(p.clone());
    }
    for w in &written {
        eprintln!("wrote {}", w.display());
    }
    if a.check && cards.iter().any(|c| !c.verdict.ship) {
        return Ok(ExitCode::from(EXIT_NO_SHIP));
    }
    Ok(ExitCode::SUCCESS)
}
