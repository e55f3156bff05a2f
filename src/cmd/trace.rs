//! `simctl trace`: look at workload traces.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use simctl_engine::trace::{self, TraceFormat};

/// Inspect workload traces (Mooncake JSONL, Azure LLM inference CSV, plain CSV).
#[derive(Debug, Args)]
pub struct TraceArgs {
    #[command(subcommand)]
    command: TraceCommand,
}

#[derive(Debug, Subcommand)]
enum TraceCommand {
    /// Requests, duration, rates, length percentiles (nearest rank) and prefix-block reuse.
    ///
    /// Block reuse (traces with `hash_ids`): the share of distinct blocks that appear in more
    /// than one request, and the share of all block references that repeat an id seen in an
    /// earlier request — the hit rate of an infinite prefix cache.
    Stats(StatsArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Mooncake,
    Azure,
    Csv,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// Trace files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Format (default: from the file name: .jsonl is Mooncake, *azure*.csv Azure, other .csv plain CSV).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Skip invalid lines (and count them) instead of stopping at the first.
    #[arg(long)]
    skip_invalid: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: TraceArgs) -> Result<ExitCode> {
    let TraceCommand::Stats(a) = a.command;
    let mut all = Vec::new();
    for f in &a.files {
        let format = match a.format {
            Some(Format::Mooncake) => TraceFormat::Mooncake,
            Some(Format::Azure) => TraceFormat::Azure,
            Some(Format::Csv) => TraceFormat::Csv,
            None => match TraceFormat::guess(f) {
                Some(g) => g,
                None => crate::bad!("cannot tell the format of `{}` from its name; pass --format mooncake|azure|csv", f.display()),
            },
        };
        let t = Instant::now();
        // A trace that cannot be read or has a bad line is bad input.
        let s = match trace::stats(f, format, a.skip_invalid) {
            Ok(s) => s,
            Err(e) => crate::bad!("{e}"),
        };
        let wall = t.elapsed().as_secs_f64();
        if a.json {
            all.push(s);
            continue;
        }
        println!("{} ({})", s.path, s.format.as_str());
        println!(
            "  requests        {:>12}{}",
            s.requests,
            if s.skipped_lines > 0 { format!("   ({} invalid lines skipped)", s.skipped_lines) } else { String::new() }
        );
        println!("  duration        {:>12.1} s  ({:.1} min)", s.duration_s, s.duration_s / 60.0);
        println!("  mean rate       {:>12.2} req/s", s.mean_rate_per_s);
        println!("  per minute      {:>12} peak, {} lowest", s.peak_per_minute, s.min_per_minute);
        println!("  {:<14} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>14}", "tokens", "mean", "p50", "p90", "p99", "min", "max", "total");
        for (name, l) in [("input", &s.input), ("output", &s.output)] {
            println!("  {:<14} {:>10.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>14}", name, l.mean, l.p50, l.p90, l.p99, l.min, l.max, l.total);
        }
        if let Some(b) = &s.blocks {
            println!("  blocks          {:>12} references, {} unique", b.total, b.unique);
            println!("  shared blocks   {:>12.3} of unique blocks appear in more than one request", b.shared_unique_fraction);
            println!("  repeat share    {:>12.3} of references repeat an earlier block (infinite-cache hit rate)", b.repeat_fraction);
        }
        println!("  read in {:.3} s\n", wall);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(ExitCode::SUCCESS)
}
