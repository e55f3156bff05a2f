//! `simctl`: simulate LLM inference clusters.

mod cmd;
mod grid;
mod scenario;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Simulate LLM inference clusters: prefill/decode pools, routers, KV caches and costs.
///
/// Scenarios are `.scn` files (see scenarios/README.md). With no file, commands use the
/// embedded default scenario, the flagship_vs_mid fleet.
#[derive(Debug, Parser)]
#[command(name = "simctl", version, about, long_about = None, propagate_version = true)]
#[command(
    after_help = "Examples:\n  simctl run\n  simctl run scenarios/mig_slices.scn --set arrival_rate=36/s --out out/mig\n  simctl sweep --grid arrival_rate=12/s..36/s:6/s --grid router.policy=round_robin,telemetry --seeds 3 --out out/sweep\n  simctl sweep --find-max arrival_rate --grid router.policy=round_robin,least_loaded --slo-attainment 0.9\n  simctl report out/sweep --html out/sweep/report.html\n  simctl compare out/base out/new --fail-if 'ttft_ms.p95>+10%'\n  simctl check scenarios/*.scn\n  simctl eval --endpoint http://127.0.0.1:8000 --allow-missing-metrics --out out/eval/dense\n  simctl scorecard out/eval/dense --plot score.png\n  simctl calibrate --model tiny-llama --endpoint http://127.0.0.1:8011 --out profiles/tiny.yaml\n  simctl topology"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(cmd::run::RunArgs),
    Sweep(cmd::sweep::SweepArgs),
    Report(cmd::report::ReportArgs),
    Compare(cmd::compare::CompareArgs),
    Check(cmd::check::CheckArgs),
    Trace(cmd::trace::TraceArgs),
    Eval(cmd::eval::EvalArgs),
    Scorecard(cmd::scorecard::ScorecardArgs),
    Calibrate(cmd::calibrate::CalibrateArgs),
    Topology(cmd::topology::TopologyArgs),
}

/// Exit status for bad input: a scenario or an override that does not check.
pub const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`simctl run | head`) panics;
    // the default action ends the process quietly, as for any Unix filter.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Sweep(a) => cmd::sweep::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Compare(a) => cmd::compare::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Trace(a) => cmd::trace::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Scorecard(a) => cmd::scorecard::run(a),
        Command::Calibrate(a) => cmd::calibrate::run(a),
        Command::Topology(a) => cmd::topology::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
