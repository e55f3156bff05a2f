//! Engine benchmark: events per second and simulated requests per wall second.
//!
//! `cargo bench --bench engine` runs
//! - flagship_vs_mid at 100x its default length (2000 s of simulated traffic), and
//! - the peer comparison: 10,000 Poisson requests (1024 in / 256 out) on one Llama-3.1-8B
//!   H100 instance (Vidur takes 28 s here, inference-lab 1.6 s).
//!
//! Each case runs `REPEATS` times; the best and median wall times are reported.

use std::time::Instant;

use simctl_engine::Simulation;
use simctl_engine::record::NullRecorder;
use simctl_reports::{RunRecorder, Summary};

const REPEATS: usize = 5;

fn case(name: &str, file: &str, text: &str, sets: &[(&str, &str)]) {
    let overrides: Vec<(String, String)> = sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let spec = simctl_dsl::load(file, text, &overrides).unwrap_or_else(|d| panic!("{d}"));
    let mut walls = Vec::new();
    let mut events = 0;
    let mut requests = 0;
    let mut peak = 0;
    for _ in 0..REPEATS {
        let sim = Simulation::new(&spec).expect("valid scenario");
        let t = Instant::now();
        let totals = sim.run(&mut NullRecorder);
        walls.push(t.elapsed().as_secs_f64());
        events = totals.events;
        requests = totals.arrived;
        peak = totals.peak_in_flight;
    }
    walls.sort_by(f64::total_cmp);
    let best = walls[0];
    let median = walls[walls.len() / 2];
    // One more run with the full summary recorder, as `simctl run` does.
    let mut rec = RunRecorder::new(spec.slo, Vec::new());
    let t = Instant::now();
    let totals = Simulation::new(&spec).unwrap().run(&mut rec);
    let summary = Summary::build(&spec, spec.seed, &mut rec, &totals);
    let with_metrics = t.elapsed().as_secs_f64();
    println!("{name}");
    println!("  requests {requests}, events {events}, peak in flight {peak}, simulated {:.0} s", summary.duration_s);
    println!(
        "  wall best {:.4} s, median {:.4} s  ({:.2} M events/s, {:.0} k requests/s)",
        best,
        median,
        events as f64 / best / 1e6,
        requests as f64 / best / 1e3
    );
    println!(
        "  with summary metrics: {:.4} s; ttft p50 {:.1} ms, tpot p50 {:.2} ms, completed {}",
        with_metrics, summary.ttft_ms.p50, summary.tpot_ms.p50, summary.completed
    );
}

fn main() {
    // `cargo test --benches` passes `--bench`-less flags; keep the run short there.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    case(
        "flagship_vs_mid x100 (2000 s)",
        "flagship_vs_mid.scn",
        include_str!("../scenarios/flagship_vs_mid.scn"),
        &[("run.duration", "2000s")],
    );
    case(
        "single H100, Llama-3.1-8B, 10k requests 1024/256",
        "single_h100_llama8b.scn",
        include_str!("../scenarios/single_h100_llama8b.scn"),
        &[],
    );
}
