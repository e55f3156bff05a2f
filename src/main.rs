//! `simctl`: simulate LLM inference clusters.

mod cmd;
mod grid;
mod interrupt;
mod out;
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
    after_help = "Examples:\n  simctl run\n  simctl run scenarios/mig_slices.scn --set arrival_rate=36/s --out out/mig\n  simctl sweep --grid arrival_rate=12/s..36/s:6/s \\\n      --grid router.policy=round_robin,telemetry --seeds 3 --out out/sweep\n  simctl sweep --find-max arrival_rate --slo-attainment 0.9 \\\n      --grid router.policy=round_robin,least_loaded\n  simctl report out/sweep --html out/sweep/report.html\n  simctl compare out/base out/new --fail-if 'ttft_ms.p95>+10%'\n  simctl check scenarios/*.scn\n  simctl calibrate --model tiny-llama --endpoint http://127.0.0.1:8011 \\\n      --out profiles/tiny.yaml\n  simctl live --endpoint http://127.0.0.1:8011 \\\n      --endpoint http://127.0.0.1:8012\n  simctl topology\n  simctl catalogue\n  simctl eval --endpoint http://127.0.0.1:8000 --allow-missing-metrics \\\n      --out out/eval/dense\n  simctl scorecard out/eval/dense --plot score.png"
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
    Live(cmd::live::LiveArgs),
    FakeEngine(cmd::fake_engine::FakeEngineArgs),
    Eval(cmd::eval::EvalArgs),
    Scorecard(cmd::scorecard::ScorecardArgs),
    Calibrate(cmd::calibrate::CalibrateArgs),
    Topology(cmd::topology::TopologyArgs),
    Catalogue(cmd::catalogue::CatalogueArgs),
    Validate(cmd::validate::ValidateArgs),
}

/// Exit status for bad input: a scenario or an override that does not check.
pub const EXIT_BAD_INPUT: u8 = 2;

/// An error in what the user gave (a file, an argument, an override): exit status 2.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Returns early with a [`BadInput`] error: `bad!("`--grid {arg}`: no values")`.
#[macro_export]
macro_rules! bad {
    ($($t:tt)*) => {
        return Err(anyhow::Error::new($crate::BadInput(format!($($t)*))))
    };
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`simctl run | head`) panics;
    // the default action ends the process quietly, as for any Unix filter.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // Long commands take Ctrl-C and SIGTERM from the start (a signal during start-up is not
    // lost, also in the background where Ctrl-C comes in ignored); short ones keep the
    // default and end at once.
    if matches!(cli.command, Command::Run(_) | Command::Sweep(_) | Command::Live(_) | Command::Validate(_) | Command::Eval(_)) {
        interrupt::install();
    }
    let result = match cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Sweep(a) => cmd::sweep::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Compare(a) => cmd::compare::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Trace(a) => cmd::trace::run(a),
        Command::Live(a) => cmd::live::run(a),
        Command::FakeEngine(a) => cmd::fake_engine::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Scorecard(a) => cmd::scorecard::run(a),
        Command::Calibrate(a) => cmd::calibrate::run(a),
        Command::Topology(a) => cmd::topology::run(a),
        Command::Catalogue(a) => cmd::catalogue::run(a),
        Command::Validate(a) => cmd::validate::run(a),
    };
    // Whatever failed before its files were finished leaves no `.partial` file behind.
    interrupt::remove_partials();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.chain().any(|c| c.is::<BadInput>()) { ExitCode::from(EXIT_BAD_INPUT) } else { ExitCode::FAILURE }
        }
    }
}
