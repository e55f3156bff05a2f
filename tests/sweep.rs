//! `simctl sweep`: grids, parallelism that never changes results, result files.

use crate::{simctl, stderr, stdout, temp_dir};

fn sweep(tag: &str, jobs: &str) -> std::path::PathBuf {
    let dir = temp_dir(tag);
    let o = simctl(&[
        "sweep",
        "--grid",
        "arrival_rate=12/s..30/s:6/s",
        "--grid",
        "router.policy=round_robin,telemetry",
        "--seeds",
        "2",
        "-j",
        jobs,
        "--set",
        "run.duration=10s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("16 runs (8 points x 2 seeds)"), "{}", stdout(&o));
    dir
}

#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let a = sweep("sweep-j1", "1");
    let b = sweep("sweep-j4", "4");
    for f in ["results.csv", "points.csv", "manifest.json"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f} differs");
    }
    let csv = std::fs::read_to_string(a.join("results.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(&header[..5], ["point", "replicate", "seed", "arrival_rate", "router.policy"]);
    assert!(
        header.contains(&"ttft_ms.p95") && header.contains(&"goodput_tok_per_usd") && header.contains(&"pools.decode.queue_depth_mean")
    );
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 16);
    assert_eq!((rows[0][3], rows[0][4], rows[1][4], rows[2][4]), ("12/s", "round_robin", "round_robin", "telemetry"));
    // Common random numbers: replicate 0 of every point uses the same seed.
    assert!(rows.iter().filter(|r| r[1] == "0").all(|r| r[2] == rows[0][2]));
}

#[test]
fn a_point_with_one_seed_equals_simctl_run() {
    let dir = temp_dir("sweep-vs-run");
    let o = simctl(&["sweep", "--grid", "arrival_rate=18/s", "--set", "run.duration=10s", "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = simctl(&["run", "--json", "--set", "arrival_rate=18/s", "--set", "run.duration=10s"]);
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let at = |k: &str| row[header.iter().position(|h| *h == k).unwrap()].parse::<f64>().unwrap();
    assert_eq!(at("ttft_ms.p95"), v["ttft_ms"]["p95"].as_f64().unwrap());
    assert_eq!(at("completed"), v["completed"].as_f64().unwrap());
}

#[test]
fn bad_grids_fail_before_running() {
    let o = simctl(&["sweep", "--grid", "arrival_rate=1/s..2ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("same unit"), "{}", stderr(&o));
    let o = simctl(&["sweep", "--grid", "router.policy=round_robin,teleme"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("at grid point router.policy=teleme"), "{}", stderr(&o));
    assert!(stderr(&o).contains("did you mean `telemetry`?"), "{}", stderr(&o));
}
