//! How well the zero-shot kernel model predicts measured serving runs on GPUs it was not
//! fitted on: replays NVIDIA AIConfigurator's measured rows (`silicon_sample.csv`,
//! Apache-2.0; `../shared/data/aiconfigurator_silicon_fit.csv`) with the measured kernel
//! tables, fits the per-backend engine overheads leave-one-GPU-out, and prints the held-out
//! error per GPU and backend.
//!
//! ```text
//! cargo run --release -p simctl-calibration --example zero_shot -- DATA.csv [options]
//!   --engine NAME        only vllm or sglang rows
//!   --no-fit             score the shipped overheads only (seconds, no search)
//!   --overheads S,L,Q,P[,M]  score step overhead S µs, L µs a layer every step, per-sequence Q µs,
//!                        prefill P µs a layer and M µs more a MoE layer (default 0), no search
//!   --evals N            simulations per fit (default 45)
//!   --search-rows N      a fit simulates at most N rows of each GPU (default 40)
//!   --rows FILE          write every scored row as CSV
//!   --notes              print, per deployment, where it leaves the measured tables
//! ```
//!
//! Held out means: for each GPU, the overheads are fitted on the rows of the backend's other
//! GPUs only, then that GPU's rows are scored. The kernel tables are measurements of the
//! GPU's kernels, not of these runs, so nothing of a held-out GPU's serving rows reaches
//! its prediction.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use simctl_calibration::silicon::{self, Client, Deployment, GpuModel, Scored, SiliconRow, Split};
use simctl_engine::catalogue::Backend;
use simctl_engine::kernels::{self, KernelOverheads};
use simctl_engine::time::SimDuration;

struct Args {
    csv: String,
    engine: Option<Backend>,
    fit: bool,
    overheads: Option<KernelOverheads>,
    evals: u32,
    search_rows: usize,
    rows: Option<String>,
    notes: bool,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args { csv: String::new(), engine: None, fit: true, overheads: None, evals: 45, search_rows: 40, rows: None, notes: false };
    while let Some(x) = it.next() {
        let mut val = |k: &str| it.next().ok_or_else(|| format!("{k} needs a value"));
        match x.as_str() {
            "--engine" => {
                let v = val("--engine")?;
                a.engine = Some(Backend::parse(&v).ok_or_else(|| format!("unknown engine `{v}`"))?);
            }
            "--no-fit" => a.fit = false,
            "--notes" => a.notes = true,
            "--overheads" => {
                let v = val("--overheads")?;
                let x: Vec<f64> = v
                    .split(',')
                    .map(|x| x.trim().parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| "--overheads takes STEP_US,LAYER_US,SEQ_US,PREFILL_LAYER_US[,PREFILL_MOE_LAYER_US]")?;
                let (s, l, q, p, m) = match x[..] {
                    [s, l, q, p] => (s, l, q, p, 0.0),
                    [s, l, q, p, m] => (s, l, q, p, m),
                    _ => {
                        return Err(
                            "--overheads takes four or five numbers: STEP_US,LAYER_US,SEQ_US,PREFILL_LAYER_US[,PREFILL_MOE_LAYER_US]"
                                .into(),
                        );
                    }
                };
                let us = |x: f64| SimDuration::from_secs_f64(x * 1e-6);
                a.overheads = Some(KernelOverheads {
                    step: us(s),
                    per_layer: us(l),
                    per_seq: us(q),
                    prefill_per_layer: us(p),
                    prefill_per_moe_layer: us(m),
                });
                a.fit = false;
            }
            "--evals" => a.evals = val("--evals")?.parse().map_err(|_| "--evals takes a number")?,
            "--search-rows" => a.search_rows = val("--search-rows")?.parse().map_err(|_| "--search-rows takes a number")?,
            "--rows" => a.rows = Some(val("--rows")?),
            _ if x.starts_with("--") => return Err(format!("unknown option `{x}`")),
            _ => a.csv = x,
        }
    }
    if a.csv.is_empty() {
        return Err(
            "usage: zero_shot DATA.csv [--engine NAME] [--no-fit] [--overheads S,L,Q,P[,M]] [--evals N] [--search-rows N] [--rows FILE]"
                .into(),
        );
    }
    Ok(a)
}

fn main() {
    let a = args().unwrap_or_else(|e| {
        eprintln!("zero_shot: {e}");
        std::process::exit(2);
    });
    let text = std::fs::read_to_string(&a.csv).unwrap_or_else(|e| {
        eprintln!("zero_shot: {}: {e}", a.csv);
        std::process::exit(2);
    });
    let rows = silicon::parse_csv(&text).unwrap_or_else(|e| {
        eprintln!("zero_shot: {}: {e}", a.csv);
        std::process::exit(2);
    });
    let client = Client::default();
    let mut by_backend: BTreeMap<Backend, BTreeMap<String, Vec<(SiliconRow, Deployment)>>> = BTreeMap::new();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows {
        if !matches!(r.backend, Backend::Vllm | Backend::Sglang) || a.engine.is_some_and(|e| e != r.backend) {
            continue;
        }
        // Attention data parallelism, stated or implied (fewer attention GPUs than expert
        // GPUs: `tp 1, moe_tp 2`), runs replicas of the attention the one-instance replay
        // does not have.
        let p = r.parallel;
        if p.attention_dp > 1 || p.tp.max(1) * p.attention_dp.max(1) < p.moe_tp.max(1) * p.moe_ep.max(1) {
            *skipped.entry(format!("attention data parallelism is not modelled ({})", r.backend.as_str())).or_default() += 1;
            continue;
        }
        match silicon::deployment(&r) {
            Ok(d) if kernels::tables(&d.gpu.name, r.backend).is_some() => {
                by_backend.entry(r.backend).or_default().entry(d.gpu.name.clone()).or_default().push((r, d));
            }
            Ok(d) => *skipped.entry(format!("no kernel tables for {} ({})", d.gpu.name, r.backend.as_str())).or_default() += 1,
            Err(why) => *skipped.entry(format!("{why} ({})", r.backend.as_str())).or_default() += 1,
        }
    }
    if a.notes {
        let mut seen = std::collections::BTreeSet::new();
        for (backend, gpus) in &by_backend {
            for (r, d) in gpus.values().flatten() {
                let key = format!(
                    "{} {} {} tp{} {}/{}/{}",
                    backend.as_str(),
                    d.gpu.name,
                    d.model.name,
                    d.gpus,
                    d.model.weights.as_str(),
                    d.model.expert_weights.as_str(),
                    d.model.kv_cache.as_str()
                );
                if seen.insert(key.clone()) {
                    let t = kernels::tables(&d.gpu.name, r.backend).expect("filtered");
                    let ep = r.parallel.moe_ep > 1 && r.parallel.moe_tp <= 1;
                    let c = kernels::KernelCost::new(&d.model, &d.gpu, d.gpus, t, KernelOverheads::ZERO, ep);
                    println!("{key}");
                    for n in c.extrapolations() {
                        println!("    {}: {}", n.kernel, n.detail);
                    }
                }
            }
        }
    }
    let mut all_scored = Vec::new();
    let mut table = String::from(
        "| backend | GPU | rows | fitted on | step | per layer | per seq | prefill/layer | + MoE layer | TTFT MdAPE | TTFT bias | TPOT MdAPE | TPOT bias |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut shipped = String::new();
    for (backend, gpus) in &by_backend {
        let subset = |except: Option<&str>| -> Vec<(SiliconRow, Deployment)> {
            gpus.iter()
                .filter(|(g, _)| Some(g.as_str()) != except)
                .flat_map(|(_, rows)| silicon::search_subset(rows, a.search_rows))
                .collect()
        };
        let fit = |rows: &[(SiliconRow, Deployment)]| -> KernelOverheads {
            if rows.is_empty() {
                return KernelOverheads::ZERO;
            }
            let (o, loss, n) = silicon::fit_overheads(rows, silicon::kernel_start(*backend), client, a.evals);
            eprintln!("  fit on {} rows: {} ({n} simulations of them, loss {loss:.3})", rows.len(), show(&o));
            o
        };
        if a.fit {
            eprintln!("{}: fit on every GPU (the constants to ship)", backend.as_str());
            let o = fit(&subset(None));
            let _ = writeln!(shipped, "{:<7} {}", backend.as_str(), show(&o));
        }
        for (gpu, rows) in gpus {
            let o = match (a.overheads, a.fit) {
                (Some(o), _) => o,
                (None, false) => kernels::default_overheads(*backend),
                (None, true) => {
                    eprintln!("{}: hold out {gpu}", backend.as_str());
                    fit(&subset(Some(gpu)))
                }
            };
            let others: Vec<&str> = gpus.keys().map(String::as_str).filter(|g| a.overheads.is_some() || !a.fit || g != gpu).collect();
            let scored = score(rows, &GpuModel::Kernels(o), client);
            let s = silicon::error_stats(&scored);
            let pct = |x: f64| format!("{:.1}%", x * 100.0);
            let signed = |x: f64| format!("{:+.1}%", x * 100.0);
            let _ = writeln!(
                table,
                "| {} | {gpu} | {} | {} | {:.0} µs | {:.1} µs | {:.1} µs | {:.0} µs | {:.0} µs | {} | {} | {} | {} |",
                backend.as_str(),
                s.n,
                if others.is_empty() { "-".to_string() } else { others.join(", ") },
                o.step.as_secs_f64() * 1e6,
                o.per_layer.as_secs_f64() * 1e6,
                o.per_seq.as_secs_f64() * 1e6,
                o.prefill_per_layer.as_secs_f64() * 1e6,
                o.prefill_per_moe_layer.as_secs_f64() * 1e6,
                pct(s.ttft_mdape),
                signed(s.ttft_bias),
                pct(s.tpot_mdape),
                signed(s.tpot_bias)
            );
            all_scored.extend(scored);
        }
    }
    println!("{table}");
    println!("per model (the same predictions):\n{}", silicon::table(&all_scored));
    if !shipped.is_empty() {
        println!("fitted on every GPU (the shipped defaults):\n{shipped}");
    }
    if !skipped.is_empty() {
        println!("rows not replayed:");
        for (why, n) in &skipped {
            println!("  {n:>5}  {why}");
        }
    }
    if let Some(path) = &a.rows
        && let Err(e) = std::fs::write(path, silicon::rows_csv(&all_scored))
    {
        eprintln!("zero_shot: {path}: {e}");
        std::process::exit(1);
    }
}

fn show(o: &KernelOverheads) -> String {
    format!(
        "step {:.0} us, {:.2} us a layer, per sequence {:.2} us, prefill {:.1} us a layer (+{:.1} a MoE layer)",
        o.step.as_secs_f64() * 1e6,
        o.per_layer.as_secs_f64() * 1e6,
        o.per_seq.as_secs_f64() * 1e6,
        o.prefill_per_layer.as_secs_f64() * 1e6,
        o.prefill_per_moe_layer.as_secs_f64() * 1e6
    )
}

fn score(rows: &[(SiliconRow, Deployment)], m: &GpuModel, client: Client) -> Vec<Scored> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = rows.len().div_ceil(threads).max(1);
    let mut out = Vec::new();
    std::thread::scope(|s| {
        let hs: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|(r, dep)| match silicon::predict(r, dep, m, client) {
                            Ok(p) => Some(Scored {
                                row: r.clone(),
                                gpu: dep.gpu.name.clone(),
                                model: dep.model.name.clone(),
                                split: Split::Held,
                                prediction: p,
                            }),
                            Err(e) => {
                                eprintln!("{}: {e}", r.id);
                                None
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in hs {
            out.extend(h.join().expect("replay thread"));
        }
    });
    out
}
