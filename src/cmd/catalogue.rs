//! `simctl catalogue`: the GPUs, models and backends built in, and where each GPU's numbers
//! come from.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use simctl_engine::inventory::{Inventory, inventory};

/// List the catalogue: every GPU (datasheet figures, price) with the source of its step
/// times under each serving backend — measured kernel tables (AIConfigurator's, with their
/// engine versions) or the datasheet roofline — every model, and the backends.
///
/// Scenarios name these in `hardware x { gpu = h100_sxm; backend = sglang }` and
/// `model = llama_3_1_70b`; see docs/zero-shot.md for how the kernel model works.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  simctl catalogue\n  simctl catalogue --json | jq '.gpus[] | select(.name == \"b200\")'")]
pub struct CatalogueArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(a: CatalogueArgs) -> Result<ExitCode> {
    let inv = inventory();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&inv)?);
    } else {
        print!("{}", text(&inv));
    }
    Ok(ExitCode::SUCCESS)
}

fn text(inv: &Inventory) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "GPUs (dense TFLOP/s; step times per backend: kernels = measured tables, roofline = datasheet)");
    let _ =
        writeln!(o, "{:<13} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>6}  sources", "gpu", "bf16", "fp8", "fp4", "TB/s", "GB", "link", "$/h");
    for g in &inv.gpus {
        let src: Vec<String> = g
            .sources
            .iter()
            .map(|s| match s.model {
                "kernels" => {
                    let gemm = s.versions.iter().find(|(k, _)| k == "gemm").map_or("?", |(_, v)| v.as_str());
                    format!("{} kernels {gemm}", s.backend)
                }
                m => format!("{} {m}", s.backend),
            })
            .collect();
        let _ = writeln!(
            o,
            "{:<13} {:>6.0} {:>6.0} {:>6.0} {:>6.2} {:>6.0} {:>7} {:>6.2}  {}",
            g.name,
            g.bf16_tflops,
            g.fp8_tflops,
            g.fp4_tflops,
            g.memory_tb_s,
            g.memory_gb,
            format!("{:.0}", g.interconnect_gb_s),
            g.cost_per_hour,
            src.join(", ")
        );
    }
    let _ = writeln!(o, "\nmodels");
    let _ = writeln!(
        o,
        "{:<16} {:>7} {:>7} {:>6} {:>6} {:>9} {:>8}  formats (weights/experts/kv)",
        "model", "params", "active", "layers", "hidden", "heads", "experts"
    );
    for m in &inv.models {
        let window = m.sliding_window.map_or(String::new(), |(w, l)| format!(", {l} layers windowed to {w}"));
        let _ = writeln!(
            o,
            "{:<16} {:>6.1}B {:>6.1}B {:>6} {:>6} {:>9} {:>8}  {}/{}/{}{window}",
            m.name,
            m.params_b,
            m.active_params_b,
            m.layers,
            m.hidden,
            format!("{}/{}x{}", m.heads, m.kv_heads, m.head_dim),
            if m.experts > 1 { format!("{}/{}", m.active_experts, m.experts) } else { "-".into() },
            m.weights,
            m.expert_weights,
            m.kv_cache
        );
    }
    let _ = writeln!(o, "\nbackends (engine time outside the kernels; the batching rule its pools follow)");
    for b in &inv.backends {
        let default = if b.default { "  (default)" } else { "" };
        match (b.step_overhead_us, b.layer_overhead_us, b.seq_overhead_us, b.prefill_layer_overhead_us, b.prefill_moe_layer_overhead_us) {
            (Some(s), Some(y), Some(q), Some(l), Some(m)) => {
                let _ = writeln!(
                    o,
                    "{:<7} {s:>5.0} us a step, {y:>4.1} us a layer, {q:>5.1} us a sequence, {l:>5.0} us a prefill layer (+{m:.0} a MoE one); {} batching{default}",
                    b.name, b.scheduler
                );
            }
            _ => {
                let _ = writeln!(o, "{:<7} no kernel tables: the datasheet roofline; {} batching{default}", b.name, b.scheduler);
            }
        }
    }
    let _ = writeln!(
        o,
        "\nKernel tables: NVIDIA AIConfigurator (github.com/ai-dynamo/aiconfigurator, Apache-2.0); see engine/kernels/README.md."
    );
    o
}
