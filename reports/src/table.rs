//! The human-readable summary printed by `simctl run`.

use std::fmt::Write;

use crate::percentiles::Distribution;
use crate::summary::Summary;

/// Renders a summary as aligned text tables.
pub fn render_table(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "scenario {}  policy {}  seed {}", s.scenario, s.policy, s.seed);
    let reasons = if s.rejected_reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", s.rejected_reasons.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
    };
    let cancelled = if s.cancelled > 0 { format!("  cancelled {}", s.cancelled) } else { String::new() };
    let _ = writeln!(
        o,
        "requests {}  completed {}  rejected {}{reasons}  unfinished {}{cancelled}  simulated {:.2} s\n",
        s.requests, s.completed, s.rejected, s.unfinished, s.duration_s
    );
    let _ = writeln!(o, "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}", "latency", "mean", "p50", "p90", "p95", "p99", "std");
    let row = |o: &mut String, name: &str, d: &Distribution| {
        let _ = writeln!(o, "{:<10} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}", name, d.mean, d.p50, d.p90, d.p95, d.p99, d.std);
    };
    row(&mut o, "ttft_ms", &s.ttft_ms);
    row(&mut o, "tpot_ms", &s.tpot_ms);
    row(&mut o, "itl_ms", &s.itl_ms);
    row(&mut o, "e2e_ms", &s.e2e_ms);
    let _ = writeln!(o);
    let _ = writeln!(o, "throughput      {:>10.2} req/s   {:>10.1} tok/s", s.throughput_rps, s.output_tok_s);
    let _ = writeln!(o, "goodput         {:>10.2} req/s   {:>10.1} tok/s", s.goodput_rps, s.goodput_tok_s);
    let _ = writeln!(o, "slo attainment  {:>10.1} %", s.slo_attainment * 100.0);
    let _ = writeln!(o, "cost            {:>10.4} $       {:>10.0} good tok/$", s.cost_usd, s.goodput_tok_per_usd);
    let _ = writeln!(o, "preemptions     {:>10}       {:>10} requests", s.preemptions, s.preempted_requests);
    let _ = writeln!(o, "prefix hits     {:>10.1} %", s.prefix_hit_rate * 100.0);
    if s.trace_skipped_lines > 0 {
        let _ = writeln!(o, "trace lines skipped {:>6} (invalid)", s.trace_skipped_lines);
    }
    if !s.classes.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "{:<12} {:>9} {:>10} {:>10} {:>10} {:>10}", "class", "requests", "ttft_p95", "tpot_p95", "goodput/s", "slo%");
        for (name, c) in &s.classes {
            let _ = writeln!(
                o,
                "{:<12} {:>9} {:>10.2} {:>10.2} {:>10.2} {:>10.1}",
                name,
                c.requests,
                c.ttft_ms.p95,
                c.tpot_ms.p95,
                c.goodput_rps,
                c.slo_attainment * 100.0
            );
        }
    }
    if s.migrations > 0 {
        let _ = writeln!(o, "migrations      {:>10}", s.migrations);
    }
    if s.local_prefills > 0 {
        let _ = writeln!(o, "local prefills  {:>10}", s.local_prefills);
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<10} {:<8} {:<9} {:>6} {:>7} {:>7} {:>7} {:>8} {:>6} {:>7}",
        "instance", "pool", "hardware", "$/h", "q_mean", "q_max", "util%", "kv_peak%", "hit%", "preempt"
    );
    for (name, i) in &s.instances {
        let _ = writeln!(
            o,
            "{:<10} {:<8} {:<9} {:>6.2} {:>7.2} {:>7} {:>7.1} {:>8.1} {:>6.1} {:>7}",
            name,
            i.pool,
            i.hardware,
            i.hourly_cost,
            i.queue_depth_mean,
            i.queue_depth_max,
            i.utilization * 100.0,
            i.kv_peak_usage * 100.0,
            i.prefix_hit_rate * 100.0,
            i.preemptions
        );
    }
    for (name, p) in &s.pools {
        let _ = writeln!(
            o,
            "pool {:<10} {:<8} instances {:>3}  queue depth mean {:>7.2}  max {:>5}",
            name,
            p.role.as_str(),
            p.instances,
            p.queue_depth_mean,
            p.queue_depth_max
        );
    }
    o
}
