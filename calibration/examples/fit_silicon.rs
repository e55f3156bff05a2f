//! Fits the catalogue's roofline efficiencies to NVIDIA AIConfigurator's measured serving
//! rows and prints the error per engine, GPU and model, on the rows fitted and on the rows
//! held out.
//!
//! ```text
//! cargo run --release -p simctl-calibration --example fit_silicon -- DATA.csv [options]
//!   --catalogue        no fit: score the catalogue's constants as they are
//!   --engine NAME      only rows of vllm, sglang or trtllm
//!   --lomo             also leave one model out per engine and GPU: fit on the others
//!   --ramp MODE        burst-then-steady (default), staggered or burst
//!   --per-user N       requests per user the measured means cover (default 8)
//!   --constants MFU,MBU,STEP_US,SEQ_US,FRONTEND_MS,LAYER_US,MOE_EFF,MOE_EFF_FP4   score these constants, no fit
//!   --model NAME, --gpu NAME   only rows of this catalogue model / GPU
//!   --evals N          simulations per group fit (default 80)
//!   --search-rows N    the search simulates at most N of a group's fit rows (default 120,
//!                      an even stride over them); the tables score every row
//!   --rows FILE        write every scored row as CSV
//! ```
//!
//! The data: AIConfigurator's `silicon_sample.csv` (github.com/ai-dynamo/aiconfigurator,
//! Apache-2.0); see `calibration/tests/data/README.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use simctl_calibration::silicon::{self, Client, Deployment, Ramp, Scored, SiliconRow, Split};
use simctl_engine::catalogue::{self, Backend, RooflineParams};

struct Args {
    csv: String,
    catalogue: bool,
    engine: Option<Backend>,
    lomo: bool,
    client: Client,
    evals: u32,
    rows: Option<String>,
    constants: Option<RooflineParams>,
    model: Option<String>,
    gpu: Option<String>,
    search_rows: usize,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        csv: String::new(),
        catalogue: false,
        engine: None,
        lomo: false,
        client: Client::default(),
        evals: 80,
        rows: None,
        constants: None,
        model: None,
        gpu: None,
        search_rows: 120,
    };
    while let Some(x) = it.next() {
        let mut val = |k: &str| it.next().ok_or_else(|| format!("{k} needs a value"));
        match x.as_str() {
            "--catalogue" => a.catalogue = true,
            "--lomo" => a.lomo = true,
            "--engine" => {
                let v = val("--engine")?;
                a.engine = Some(Backend::parse(&v).ok_or_else(|| format!("unknown engine `{v}`"))?);
            }
            "--ramp" => {
                a.client.ramp = match val("--ramp")?.as_str() {
                    "burst" => Ramp::Burst,
                    "staggered" => Ramp::Staggered,
                    "burst-then-steady" => Ramp::BurstThenSteady,
                    v => return Err(format!("unknown ramp `{v}`: burst or staggered")),
                }
            }
            "--per-user" => a.client.requests_per_user = val("--per-user")?.parse().map_err(|_| "--per-user takes a number")?,
            "--rounds" => a.client.rounds = val("--rounds")?.parse().map_err(|_| "--rounds takes a number")?,
            "--warmup" => a.client.warmup = val("--warmup")?.parse().map_err(|_| "--warmup takes a number")?,
            "--search-rows" => a.search_rows = val("--search-rows")?.parse().map_err(|_| "--search-rows takes a number")?,
            "--evals" => a.evals = val("--evals")?.parse().map_err(|_| "--evals takes a number")?,
            "--rows" => a.rows = Some(val("--rows")?),
            "--model" => a.model = Some(val("--model")?),
            "--gpu" => a.gpu = Some(val("--gpu")?),
            "--constants" => {
                let v = val("--constants")?;
                let x: Vec<f64> = v
                    .split(',')
                    .map(|x| x.trim().parse::<f64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| "--constants takes MFU,MBU,STEP_US,SEQ_US,FRONTEND_MS,LAYER_US,MOE_EFF,MOE_EFF_FP4")?;
                let [mfu, mbu, o, q, f, l, moe, moe4] = x[..] else { return Err("--constants takes eight numbers".into()) };
                a.constants = Some(RooflineParams {
                    mfu,
                    mbu,
                    step_overhead: simctl_engine::time::SimDuration::from_secs_f64(o * 1e-6),
                    seq_overhead: simctl_engine::time::SimDuration::from_secs_f64(q * 1e-6),
                    frontend: simctl_engine::time::SimDuration::from_secs_f64(f * 1e-3),
                    layer_overhead: simctl_engine::time::SimDuration::from_secs_f64(l * 1e-6),
                    moe_efficiency: moe,
                    moe_efficiency_fp4: moe4,
                });
            }
            _ if x.starts_with("--") => return Err(format!("unknown option `{x}`")),
            _ => a.csv = x,
        }
    }
    if a.csv.is_empty() {
        return Err("usage: fit_silicon DATA.csv [--catalogue] [--engine NAME] [--lomo] [--ramp MODE] [--evals N] [--rows FILE]".into());
    }
    Ok(a)
}

type Group = (Backend, String);

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fit_silicon: {e}");
            std::process::exit(2);
        }
    };
    let text = std::fs::read_to_string(&a.csv).unwrap_or_else(|e| {
        eprintln!("fit_silicon: {}: {e}", a.csv);
        std::process::exit(2);
    });
    let rows = silicon::parse_csv(&text).unwrap_or_else(|e| {
        eprintln!("fit_silicon: {}: {e}", a.csv);
        std::process::exit(2);
    });
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut usable: Vec<(SiliconRow, Deployment)> = Vec::new();
    for r in rows.into_iter().filter(|r| a.engine.is_none_or(|e| r.backend == e)) {
        match silicon::deployment(&r) {
            Ok(d) if a.model.as_ref().is_some_and(|m| *m != d.model.name) || a.gpu.as_ref().is_some_and(|g| *g != d.gpu.name) => {}
            Ok(d) => usable.push((r, d)),
            Err(why) => *skipped.entry(format!("{} ({})", why, r.backend.as_str())).or_default() += 1,
        }
    }
    let mut groups: BTreeMap<Group, Vec<(SiliconRow, Deployment)>> = BTreeMap::new();
    for (r, d) in usable {
        groups.entry(silicon::group_key(&r, &d)).or_default().push((r, d));
    }
    let mut scored = Vec::new();
    let mut constants = String::new();
    for ((backend, gpu), rows) in &groups {
        let start = catalogue::roofline_defaults(gpu, *backend);
        let fit_rows: Vec<_> = rows.iter().filter(|(r, _)| silicon::split_of(r) == Split::Fit).cloned().collect();
        let search_rows = silicon::search_subset(&fit_rows, a.search_rows);
        let d = if let Some(c) = a.constants {
            c
        } else if a.catalogue || fit_rows.is_empty() {
            start
        } else {
            let f = silicon::fit_group(&search_rows, silicon::START, a.client, a.evals);
            eprintln!("fitted {} {gpu}: {} rows, {} evaluations, loss {:.3}", backend.as_str(), fit_rows.len(), f.evaluations, f.loss);
            f.defaults
        };
        let _ = writeln!(constants, "{:<7} {:<9} {} (fitted on {} rows)", backend.as_str(), gpu, show(&d), fit_rows.len());
        scored.extend(score(rows, &d, a.client, silicon::split_of));
    }
    println!("{}", silicon::table(&scored));
    println!("constants:\n{constants}");
    if a.lomo {
        let mut lomo = Vec::new();
        for ((backend, gpu), rows) in &groups {
            let models: std::collections::BTreeSet<&str> = rows.iter().map(|(_, d)| d.model.name.as_str()).collect();
            if models.len() < 2 {
                continue;
            }
            for m in &models {
                let others: Vec<_> = rows.iter().filter(|(_, d)| d.model.name != *m).cloned().collect();
                let mine: Vec<_> = rows.iter().filter(|(_, d)| d.model.name == *m).cloned().collect();
                let f = silicon::fit_group(&silicon::search_subset(&others, a.search_rows), silicon::START, a.client, a.evals);
                eprintln!("leave {m} out of {} {gpu}: {}", backend.as_str(), show(&f.defaults));
                lomo.extend(score(&mine, &f.defaults, a.client, |_| Split::Held));
            }
        }
        println!("leave one model out (fit on the group's other models, scored on this one):\n{}", silicon::table(&lomo));
    }
    if !skipped.is_empty() {
        println!("rows not replayed:");
        for (why, n) in &skipped {
            println!("  {n:>5}  {why}");
        }
    }
    if let Some(path) = &a.rows
        && let Err(e) = std::fs::write(path, silicon::rows_csv(&scored))
    {
        eprintln!("fit_silicon: {path}: {e}");
        std::process::exit(1);
    }
}

fn show(d: &RooflineParams) -> String {
    format!(
        "mfu {:.3}, mbu {:.3}, step_overhead {:.0} us, seq_overhead {:.1} us, frontend {:.1} ms, layer_overhead {:.1} us, moe_efficiency {:.3}, fp4 {:.3}",
        d.mfu,
        d.mbu,
        d.step_overhead.as_secs_f64() * 1e6,
        d.seq_overhead.as_secs_f64() * 1e6,
        d.frontend.as_secs_f64() * 1e3,
        d.layer_overhead.as_secs_f64() * 1e6,
        d.moe_efficiency,
        d.moe_efficiency_fp4
    )
}

fn score(rows: &[(SiliconRow, Deployment)], d: &RooflineParams, client: Client, split: impl Fn(&SiliconRow) -> Split) -> Vec<Scored> {
    rows.iter()
        .filter_map(|(r, dep)| match silicon::predict(r, dep, &silicon::GpuModel::Roofline(*d), client) {
            Ok(p) => {
                Some(Scored { row: r.clone(), gpu: dep.gpu.name.clone(), model: dep.model.name.clone(), split: split(r), prediction: p })
            }
            Err(e) => {
                eprintln!("{}: {e}", r.id);
                None
            }
        })
        .collect()
}
