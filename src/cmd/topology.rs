//! `simctl topology`: which GPU sits on which NUMA node, and how far the nodes are apart.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::Args;

/// Show the GPU → NUMA node map, the NUMA distance matrix, and each GPU's PCI bus id, CPU
/// affinity and NVLink peers (NVML, loaded at run time; sysfs).
///
/// Without an NVIDIA driver it says so in one line and shows the NUMA part.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  simctl topology\n  simctl topology --json --out topology.json")]
pub struct TopologyArgs {
    /// Print JSON (the original lab's topology.json fields `gpu_numa`, `distance`,
    /// `timestamp`, and more).
    #[arg(long)]
    json: bool,
    /// Also write the JSON to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(a: TopologyArgs) -> Result<ExitCode> {
    let t = simctl_calibration::hardware::topology(simctl_calibration::utc_timestamp(SystemTime::now()));
    let text = serde_json::to_string_pretty(&t)?;
    if let Some(out) = &a.out {
        std::fs::write(out, format!("{text}\n")).with_context(|| format!("cannot write `{}`", out.display()))?;
    }
    if a.json {
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = &t.note {
        println!("note: {n}");
    }
    println!("cpu: {} ({} CPUs, {} NUMA nodes)", t.cpu.model, t.cpu.cores, t.cpu.numa_nodes);
    if let Some(v) = &t.driver_version {
        println!("driver {v}, CUDA {}", t.cuda_version.as_deref().unwrap_or("-"));
    }
    for g in &t.gpus {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "gpu {}: {}  pci {}  numa {}  cpus {}  memory {}  nvlink peers {}",
            g.index,
            g.name,
            opt(g.pci_bus_id.clone()),
            opt(g.numa_node.map(|n| n.to_string())),
            opt(g.cpu_affinity.clone()),
            opt(g.memory_bytes.map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64))),
            if g.nvlink_peers.is_empty() { "-".to_string() } else { g.nvlink_peers.join(", ") }
        );
    }
    if !t.numa_nodes.is_empty() {
        println!("numa nodes (distance, 10 = local):");
        let header: Vec<String> = t.numa_nodes.iter().map(|n| format!("{:>5}", format!("n{}", n.node))).collect();
        println!("  {:<6} {:<16} {}", "node", "cpus", header.join(""));
        for n in &t.numa_nodes {
            let d: Vec<String> = n.distance.iter().map(|x| format!("{x:>5}")).collect();
            println!("  {:<6} {:<16} {}", format!("n{}", n.node), n.cpus, d.join(""));
        }
    }
    if let Some(out) = &a.out {
        println!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
