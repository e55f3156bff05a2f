//! Sweep benchmark: a 64-point sweep of flagship_vs_mid (16 arrival rates x 4 policies,
//! one seed each) with `-j 1`, `-j 2` and all cores, through the `simctl` binary, with and
//! without writing results and plots under `--out`.
//!
//! `cargo bench --bench sweep` prints wall times and the speed-up over one thread.

use std::process::Command;
use std::time::Instant;

const GRID: [&str; 4] = ["--grid", "arrival_rate=6/s..36/s:2/s", "--grid", "router.policy=round_robin,least_loaded,power_of_two,telemetry"];
const REPEATS: usize = 3;

fn sweep(jobs: usize, out: Option<&std::path::Path>) -> f64 {
    let mut args: Vec<String> = vec!["sweep".into()];
    args.extend(GRID.iter().map(|s| s.to_string()));
    args.extend(["-j".into(), jobs.to_string()]);
    if let Some(o) = out {
        args.extend(["--out".into(), o.display().to_string()]);
    }
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_simctl")).args(&args).output().expect("simctl runs");
    let wall = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("64 runs (64 points x 1 seeds)"));
    wall
}

fn best(jobs: usize, out: Option<&std::path::Path>) -> f64 {
    (0..REPEATS).map(|_| sweep(jobs, out)).fold(f64::INFINITY, f64::min)
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = std::env::temp_dir().join(format!("simctl-bench-sweep-{}", std::process::id()));
    let mut jobs = vec![1, 2];
    if cores > 2 {
        jobs.push(cores);
    }
    println!("64-point sweep of flagship_vs_mid ({cores} cores available), best of {REPEATS}:");
    let base = best(1, None);
    let base_out = best(1, Some(&dir));
    for &j in &jobs {
        let (w, wo) = if j == 1 { (base, base_out) } else { (best(j, None), best(j, Some(&dir))) };
        println!(
            "  -j {j:<3} {w:>7.3} s (x{:.2})   with --out and plots: {wo:>7.3} s (x{:.2})   {:.1} runs/s",
            base / w,
            base_out / wo,
            64.0 / w
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
