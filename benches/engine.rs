//! Engine benchmark: events per second and simulated requests per wall second.
//!
//! `cargo bench --bench engine` runs
//! - flagship_vs_mid at 100x its default length (2000 s of simulated traffic),
//! - the peer comparison: 10,000 Poisson requests (1024 in / 256 out) on one Llama-3.1-8B
//!   H100 instance (Vidur takes 28 s here, inference-lab 1.6 s),
//! - a fleet of 1,000 instances (`benches/scenarios/big.scn`, 200k requests) under every
//!   routing policy, and 512 decode instances under the telemetry router (`dec.scn`),
//! - a saturated KV link (`link.scn` at 40 GB/s) from 1k to 20k requests, whose time per
//!   request should stay flat.
//!
//! Each case runs `REPEATS` times (fewer for the long ones); the best and median wall
//! times are reported. `cargo bench --bench engine -- NAME` runs the cases whose name
//! contains NAME.

use std::time::Instant;

use simctl_engine::Simulation;
use simctl_engine::record::NullRecorder;
use simctl_reports::{RunRecorder, Summary};

const REPEATS: usize = 5;

/// Runs `f` when no filter was given or the filter matches `name`.
fn selected(name: &str) -> bool {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()))
}

fn case(name: &str, file: &str, text: &str, sets: &[(&str, &str)]) {
    case_n(name, file, text, sets, REPEATS);
}

fn case_n(name: &str, file: &str, text: &str, sets: &[(&str, &str)], repeats: usize) -> f64 {
    if !selected(name) {
        return 0.0;
    }
    let overrides: Vec<(String, String)> = sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let spec = simctl_dsl::load(file, text, &overrides).unwrap_or_else(|d| panic!("{d}"));
    let mut walls = Vec::new();
    let mut events = 0;
    let mut requests = 0;
    let mut peak = 0;
    for _ in 0..repeats {
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
        with_metrics,
        summary.ttft_ms.p50.unwrap_or(f64::NAN),
        summary.tpot_ms.p50.unwrap_or(f64::NAN),
        summary.completed
    );
    median
}

/// Parses and lowers a generated scenario of about 10,000 lines (1,650 hardware kinds of six
/// lines each, a pool of all of them, and the rest).
fn parse_10k_lines() {
    if !selected("parse") {
        return;
    }
    let mut text = String::from("# generated\nmodel = llama_3_1_8b\nparam rate = 2 per 100ms\n");
    let n = 1650;
    for i in 0..n {
        text.push_str(&format!(
            "hardware h{i} {{\n  prefill_rate = {} tok/s   # a comment\n  decode_rate = (1000 + {i}) * 1 tok/s\n  cost = 1.5 $/h\n  kv_capacity = 100000 tok\n}}\n",
            5000 + i
        ));
    }
    let names: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
    text.push_str(&format!("pool p {{ role = mixed; instances = [{}] }}\n", names.join(", ")));
    text.push_str("workload { arrivals = poisson(rate); prompt = uniform(10, 100); output = 10 }\nrun { duration = 1s }\n");
    let lines = text.lines().count();
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let t = Instant::now();
        let spec = simctl_dsl::load("big.scn", &text, &[]).unwrap_or_else(|d| panic!("{d}"));
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(spec.instance_count(), n);
    }
    println!("parse + lower a {lines}-line scenario ({} KB)", text.len() / 1024);
    println!("  wall best {:.4} s ({:.0} k lines/s)", best, lines as f64 / best / 1e3);
}

fn main() {
    // `cargo test --benches` passes `--bench`-less flags; keep the run short there.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    parse_10k_lines();
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
    let big = include_str!("scenarios/big.scn");
    let mut rr = 0.0;
    for policy in ["round_robin", "least_loaded", "power_of_two", "telemetry", "cache_aware", "kv_aware"] {
        let t = case_n(&format!("big.scn (1,000 instances, 200k requests) {policy}"), "big.scn", big, &[("router.policy", policy)], 3);
        if policy == "round_robin" {
            rr = t;
        } else if rr > 0.0 && t > 0.0 {
            println!("  {:.2}x round robin", t / rr);
        }
    }
    let dec = include_str!("scenarios/dec.scn");
    case_n("dec.scn (512 decode instances) round_robin", "dec.scn", dec, &[], 3);
    case_n("dec.scn (512 decode instances) telemetry", "dec.scn", dec, &[("router.policy", "telemetry")], 3);
    let link = include_str!("scenarios/link.scn");
    for n in ["1000", "2000", "4000", "10000", "20000"] {
        let name = format!("link.scn at 40 GB/s, {n} requests");
        let t = case_n(&name, "link.scn", link, &[("bw", "40 GB/s"), ("run.requests", n)], 9);
        if t > 0.0 {
            println!("  {:.2} us per request", t / n.parse::<f64>().unwrap() * 1e6);
        }
    }
}
