//! Scorecards as text: one summary row per run, then each run's checks and details.

use std::fmt::Write;

use super::baseline::{HeadroomCheck, HeadroomStatus};
use super::card::{DECODE_LENGTHS, P50P95, Scorecard};
use super::verdict::{Rule, fmt_value};

const MISSING: &str = "missing";

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| MISSING.to_string(), f)
}

fn pair(p: Option<P50P95>) -> String {
    p.map_or_else(|| MISSING.to_string(), |p| format!("{:.1}/{:.1} ms", p.p50, p.p95))
}

fn signed(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| MISSING.to_string(), |x| if x >= 0.0 { format!("+{}", f(x)) } else { f(x) })
}

fn headroom(h: &HeadroomCheck) -> String {
    let pct = h.change.map_or_else(String::new, |c| format!("{:+.1}%, ", c * 100.0));
    let what = match h.status {
        HeadroomStatus::Within => "within +10%",
        HeadroomStatus::Watch => "+10–15%: at the edge of the headroom",
        HeadroomStatus::Over => "past +15%: over the headroom",
        HeadroomStatus::Missing => "no comparison",
    };
    format!("({pct}{what})")
}

/// One line per run: accuracy, the p95s, drop rate, imbalance, goodput and the verdict.
pub fn render_summary(cards: &[Scorecard]) -> String {
    let mut o = String::new();
    let w = cards.iter().map(|c| c.run.chars().count()).max().unwrap_or(3).max(3);
    let _ = writeln!(
        o,
        "{:<w$}  {:>7}  {:>11}  {:>11}  {:>8}  {:>9}  {:>13}  verdict",
        "run", "acc", "ttft_p95", "decode_p95", "drop %", "imbalance", "goodput tok/s"
    );
    for c in cards {
        let _ = writeln!(
            o,
            "{:<w$}  {:>7}  {:>11}  {:>11}  {:>8}  {:>9}  {:>13}  {}",
            c.run,
            opt(c.quality.avg_accuracy, |v| format!("{v:.3}")),
            opt(c.latency.ttft.map(|p| p.p95), |v| format!("{v:.0} ms")),
            opt(c.latency.decode.map(|p| p.p95), |v| format!("{v:.0} ms")),
            opt(c.moe.token_drop_rate, |v| format!("{:.2}%", v * 100.0)),
            opt(c.moe.expert_imbalance_cv, |v| format!("{v:.3}")),
            opt(c.throughput.figures.goodput, |v| format!("{v:.1}")),
            c.verdict.label
        );
    }
    o
}

/// A run's checks, details, comparison with the baseline and verdict with reasons.
pub fn render_card(c: &Scorecard) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", c.run);
    let _ = writeln!(o, "  {:<14} {:>12}  {:>14}  {:<8} note", "check", "value", "limit", "status");
    for k in &c.verdict.checks {
        let limit = format!("{} {}", if k.rule == Rule::AtLeast { ">=" } else { "<=" }, fmt_value(k.name, k.limit));
        let name = k.name.replace('_', " ").replace(" ms", "");
        let note = if k.value.is_some() { k.note.as_str() } else { "" };
        let line =
            format!("  {:<14} {:>12}  {:>14}  {:<8} {}", name, opt(k.value, |v| fmt_value(k.name, v)), limit, k.status.label(), note);
        let _ = writeln!(o, "{}", line.trim_end());
    }
    let q = &c.quality;
    let tasks: Vec<String> = q.per_task.iter().map(|(t, a)| format!("{t} {a:.3}")).collect();
    if q.answered == 0 {
        let _ = writeln!(o, "  {:<14} {MISSING}", "quality");
    } else {
        let _ = writeln!(o, "  {:<14} {} answers: {}", "quality", q.answered, tasks.join(", "));
    }
    let l = &c.latency;
    let _ = writeln!(o, "  {:<14} p50/p95 {}   warm {}   cold {}", "ttft", pair(l.ttft), pair(l.ttft_warm), pair(l.ttft_cold));
    // In numeric order (the JSON map's keys sort as text).
    let by: Vec<String> =
        DECODE_LENGTHS.iter().map(|n| format!("{n} tok {}", pair(l.decode_by_tokens.get(&n.to_string()).copied().flatten()))).collect();
    let _ = writeln!(o, "  {:<14} p50/p95 {}   {}", "decode", pair(l.decode), by.join("   "));
    let _ = writeln!(
        o,
        "  {:<14} entropy {}   gate margin {}",
        "router",
        opt(c.moe.router_entropy, |v| format!("{v:.3}")),
        opt(c.moe.gate_margin, |v| format!("{v:.3}"))
    );
    let t = &c.throughput.figures;
    let scaled = match t.drop_rate {
        Some(d) => format!("goodput scaled by max(0, 1 - 5 x drop rate {d:.4})"),
        None => "drop rate unknown, goodput not scaled".into(),
    };
    let _ = writeln!(
        o,
        "  {:<14} {} tok/s   goodput {} tok/s   slo hits {}   (from {}; {scaled}; not gated)",
        "throughput",
        opt(t.throughput_tps, |v| format!("{v:.1}")),
        opt(t.goodput, |v| format!("{v:.1}")),
        opt(t.slo_hit_rate, |v| format!("{:.1}%", v * 100.0)),
        c.throughput.source
    );
    if let (Some(r), Some(cmp)) = (&c.baseline_ref, &c.comparison) {
        let d = &cmp.delta_vs_baseline;
        let h = &cmp.headroom_vs_baseline;
        let _ = writeln!(o, "  vs baseline {r}");
        let _ = writeln!(
            o,
            "    accuracy {}   goodput {} tok/s",
            signed(d.avg_accuracy, |v| format!("{v:.3}")),
            signed(d.goodput, |v| format!("{v:.1}"))
        );
        let _ = writeln!(o, "    ttft p95 {} {}", signed(d.ttft_p95, |v| format!("{v:.1} ms")), headroom(&h.ttft_p95));
        let _ = writeln!(o, "    decode p95 {} {}", signed(d.decode_p95, |v| format!("{v:.1} ms")), headroom(&h.decode_p95));
        let _ = writeln!(
            o,
            "    drop rate {}   imbalance cv {}",
            signed(d.drop_rate, |v| format!("{:.3}%", v * 100.0)),
            signed(d.expert_imbalance_cv, |v| format!("{v:.3}"))
        );
    }
    let _ = writeln!(o, "  verdict {}", c.verdict.label);
    for r in &c.verdict.reasons {
        let _ = writeln!(o, "    - {r}");
    }
    o
}
