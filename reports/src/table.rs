//! The human-readable summary printed by `simctl run`.

use std::fmt::Write;

use crate::percentiles::Distribution;
use crate::summary::Summary;

/// A number with `prec` decimals, or `-` when there is no data.
pub fn num(x: Option<f64>, prec: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "-".into(),
    }
}

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
        "requests {}  completed {}  rejected {}{reasons}  unfinished {}{cancelled}  window {:.2} s\n",
        s.requests, s.completed, s.rejected, s.unfinished, s.duration_s
    );
    if !s.complete {
        let _ = writeln!(o, "INCOMPLETE: {}\n", s.incomplete_reason.as_deref().unwrap_or("the run stopped early"));
    }
    let _ = writeln!(o, "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}", "latency", "mean", "p50", "p90", "p95", "p99", "std");
    let row = |o: &mut String, name: &str, d: &Distribution| {
        let f = |x: Option<f64>| num(x, 2);
        let _ =
            writeln!(o, "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}", name, f(d.mean), f(d.p50), f(d.p90), f(d.p95), f(d.p99), f(d.std));
    };
    row(&mut o, "ttft_ms", &s.ttft_ms);
    row(&mut o, "tpot_ms", &s.tpot_ms);
    row(&mut o, "itl_ms", &s.itl_ms);
    row(&mut o, "e2e_ms", &s.e2e_ms);
    let _ = writeln!(o);
    let _ = writeln!(o, "throughput      {:>10} req/s   {:>10} tok/s", num(s.throughput_rps, 2), num(s.output_tok_s, 1));
    let _ = writeln!(o, "goodput         {:>10} req/s   {:>10} tok/s", num(s.goodput_rps, 2), num(s.goodput_tok_s, 1));
    let _ = writeln!(o, "slo attainment  {:>10} %", num(s.slo_attainment.map(|x| x * 100.0), 1));
    let _ = writeln!(o, "cost            {:>10.4} $       {:>10} good tok/$", s.cost_usd, num(s.goodput_tok_per_usd, 0));
    let _ = writeln!(o, "preemptions     {:>10}       {:>10} requests", s.preemptions, s.preempted_requests);
    let _ = writeln!(o, "prefix hits     {:>10} %", num(s.prefix_hit_rate.map(|x| x * 100.0), 1));
    if s.trace_skipped_lines > 0 {
        let _ = writeln!(o, "trace lines skipped {:>6} (invalid)", s.trace_skipped_lines);
    }
    if !s.classes.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "{:<12} {:>9} {:>10} {:>10} {:>10} {:>10}", "class", "requests", "ttft_p95", "tpot_p95", "goodput/s", "slo%");
        for (name, c) in &s.classes {
            let _ = writeln!(
                o,
                "{:<12} {:>9} {:>10} {:>10} {:>10} {:>10}",
                name,
                c.requests,
                num(c.ttft_ms.p95, 2),
                num(c.tpot_ms.p95, 2),
                num(c.goodput_rps, 2),
                num(c.slo_attainment.map(|x| x * 100.0), 1)
            );
        }
    }
    if s.migrations > 0 {
        let _ = writeln!(o, "migrations      {:>10}", s.migrations);
    }
    if s.local_prefills > 0 {
        let _ = writeln!(o, "local prefills  {:>10}", s.local_prefills);
    }
    if s.failed > 0 {
        let why: Vec<String> = s.failed_reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(o, "failed          {:>10}       ({})", s.failed, why.join(", "));
    }
    let _ = writeln!(o);
    // Columns as wide as the longest name in them.
    let wi = s.instances.keys().map(String::len).chain([8]).max().unwrap_or(8);
    let wp = s.instances.values().map(|i| i.pool.len()).chain(s.pools.keys().map(String::len)).chain([6]).max().unwrap_or(6);
    let wh = s.instances.values().map(|i| i.hardware.len()).chain([8]).max().unwrap_or(8);
    let _ = writeln!(
        o,
        "{:<wi$} {:<wp$} {:<wh$} {:>6} {:>7} {:>7} {:>7} {:>8} {:>6} {:>7} {:>9} {:>9}",
        "instance", "pool", "hardware", "$/h", "q_mean", "q_max", "util%", "kv_peak%", "hit%", "preempt", "ttft_p95", "tpot_p50"
    );
    for (name, i) in &s.instances {
        let lat = s.latency_by_instance.get(name);
        let _ = writeln!(
            o,
            "{:<wi$} {:<wp$} {:<wh$} {:>6.2} {:>7.2} {:>7} {:>7.1} {:>8.1} {:>6.1} {:>7} {:>9} {:>9}",
            name,
            i.pool,
            i.hardware,
            i.hourly_cost,
            i.queue_depth_mean,
            i.queue_depth_max,
            i.utilization * 100.0,
            i.kv_peak_usage * 100.0,
            i.prefix_hit_rate * 100.0,
            i.preemptions,
            num(lat.and_then(|l| l.ttft_ms.p95), 2),
            num(lat.and_then(|l| l.tpot_ms.p50), 2)
        );
    }
    for (name, p) in &s.pools {
        let lat = s.latency_by_pool.get(name);
        let _ = writeln!(
            o,
            "pool {:<wp$} {:<8} instances {:>3}  queue depth mean {:>7.2}  max {:>5}  ttft p50 {} p95 {}",
            name,
            p.role.as_str(),
            p.instances,
            p.queue_depth_mean,
            p.queue_depth_max,
            num(lat.and_then(|l| l.ttft_ms.p50), 2),
            num(lat.and_then(|l| l.ttft_ms.p95), 2)
        );
    }
    o
}
