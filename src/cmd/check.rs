//! `simctl check`: validate scenarios without running them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::scenario::{self, Loaded};

/// Check scenario files and report every problem, without running them.
///
/// Exits 0 when every file is valid, 2 when any is not.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Scenario files to check.
    #[arg(required = true, value_name = "SCENARIO.scn")]
    files: Vec<PathBuf>,
    /// Override a parameter or setting while checking (as `simctl run --set`).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Print each scenario in canonical form: every value explicit, in base units, no
    /// parameters or includes. It lowers to the same scenario.
    #[arg(long)]
    print: bool,
    /// Print one JSON document on stdout: per file, ok or its problems, and its warnings.
    #[arg(long, conflicts_with = "print")]
    json: bool,
}

pub fn run(a: CheckArgs) -> Result<ExitCode> {
    let overrides = scenario::parse_overrides(&a.set)?;
    let mut bad = 0;
    let mut report = Vec::new();
    for f in &a.files {
        if a.json {
            // Diagnostics go into the document, not to stderr.
            let (name, text) = match scenario::read(Some(f)) {
                Ok(x) => x,
                Err(e) => {
                    bad += 1;
                    report.push(serde_json::json!({ "file": f.display().to_string(), "ok": false, "problems": format!("{e:#}") }));
                    continue;
                }
            };
            let entry = match simctl_dsl::load(&name, &text, &overrides) {
                Ok(spec) => match scan_trace(&spec) {
                    Ok(()) => serde_json::json!({
                        "file": f.display().to_string(),
                        "ok": true,
                        "pools": spec.pools.len(),
                        "instances": spec.instance_count(),
                        "policy": spec.router.name(),
                        "warnings": spec.warnings().iter().map(|w| w.to_string()).collect::<Vec<_>>(),
                    }),
                    Err(e) => {
                        bad += 1;
                        serde_json::json!({ "file": f.display().to_string(), "ok": false, "problems": e.to_string() })
                    }
                },
                Err(d) => {
                    bad += 1;
                    serde_json::json!({ "file": f.display().to_string(), "ok": false, "problems": d.render(false) })
                }
            };
            report.push(entry);
            continue;
        }
        match scenario::load(Some(f), &overrides)? {
            Loaded::Spec(spec) => {
                if let Err(e) = scan_trace(&spec) {
                    eprintln!("error: {}: {e}", f.display());
                    bad += 1;
                    continue;
                }
                if a.print {
                    print!("{}", simctl_dsl::print(&spec));
                } else {
                    println!(
                        "{}: ok ({} pools, {} instances, policy {})",
                        f.display(),
                        spec.pools.len(),
                        spec.instance_count(),
                        spec.router.name()
                    );
                }
            }
            Loaded::Invalid => bad += 1,
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "files": report, "ok": bad == 0 }))?);
    }
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_BAD_INPUT) })
}

/// Reads the whole trace a scenario replays, so a bad line is found now, with its file and
/// line, rather than in the middle of a run (lines are skipped and counted instead when the
/// scenario says `skip_invalid = true`).
fn scan_trace(spec: &simctl_engine::spec::ValidSpec) -> Result<(), simctl_engine::trace::TraceError> {
    let Some(t) = &spec.workload.trace else { return Ok(()) };
    let mut reader = simctl_engine::trace::TraceReader::open(&t.path, t.format, t.skip_invalid)?.with_block_tokens(t.block_tokens);
    while let Some(row) = reader.next_row() {
        row?;
    }
    Ok(())
}
