//! `simctl validate` against in-process fake engines: capacity, the runs of every load, the
//! error tables and files, `--replay` of a record, `--strict`, bad input.

use std::path::Path;
use std::time::Duration;

use simctl_live::fake::FakeEngine;

use crate::{stderr, stdout, temp_dir};

/// A guard against hangs, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(300);

fn simctl_guarded(args: &[&str]) -> std::process::Output {
    crate::simctl_guarded(args, HANG_GUARD)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn validate_measures_capacity_runs_each_load_both_ways_and_replays_the_record() {
    let (a, b) = (FakeEngine::start(Default::default()).unwrap(), FakeEngine::start(Default::default()).unwrap());
    let dir = temp_dir("validate");
    std::fs::write(dir.join("p.yaml"), crate::calibrate::PROFILE).unwrap();
    let out = dir.join("v");
    let (p, o) = (dir.join("p.yaml").display().to_string(), out.display().to_string());
    let args = [
        "validate",
        "--profile",
        &p,
        "--endpoint",
        &a.url(),
        "--endpoint",
        &b.url(),
        "--set",
        "requests=20",
        "--loads",
        "50%,0.9",
        "--out",
        &o,
    ];
    let r = simctl_guarded(&args);
    let (so, se) = (stdout(&r), stderr(&r));
    assert!(r.status.success(), "{so}{se}");
    for line in [
        "load 50% (",
        "load 0.9 (",
        "signed error of the simulation",
        "TTFT",
        "TPOT",
        "ITL",
        "E2E",
        "throughput (req/s)",
        "errors within target",
    ] {
        assert!(so.contains(line), "missing `{line}` in\n{so}");
    }
    assert!(se.contains("capacity: ") && se.contains(" req/s live"), "{se}");
    let m = json(&out.join("validation.json"));
    let cap = m["capacity_rps"].as_f64().unwrap();
    assert!(cap > 0.0, "{m}");
    assert_eq!(m["loads"].as_array().unwrap().len(), 2);
    assert!((m["loads"][0]["rate_rps"].as_f64().unwrap() - 0.5 * cap).abs() < 1e-9 * cap);
    assert!((m["loads"][1]["rate_rps"].as_f64().unwrap() - 0.9 * cap).abs() < 1e-9 * cap);
    assert_eq!(m["profile"], "profile.yaml");
    assert!(out.join("profile.yaml").is_file() && out.join("scenario.scn").is_file());
    // Every run is a folder `simctl compare` reads, live with its engines, sim with the profile.
    for d in ["capacity/live", "capacity/sim", "load-50/live", "load-50/sim", "load-0_9/live", "load-0_9/sim"] {
        let s = json(&out.join(d).join("summary.json"));
        assert_eq!(s["requests"], 20, "{d}");
        assert_eq!(s["live"].is_object(), d.ends_with("live"), "{d}");
    }
    // The simulated runs used the profile (its hardware default of block size 128).
    let sim = std::fs::read_to_string(out.join("load-50/sim/summary.json")).unwrap();
    assert!(sim.contains("\"requests\": 20"));
    // One row per load, metric and statistic, typed as pandas would read them.
    let csv = std::fs::read_to_string(out.join("validation.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("load,metric,stat,sim,live,error_pct,target_pct,within"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * (4 * 4 + 2));
    let ttft = rows.iter().find(|r| r[0] == "50%" && r[1] == "ttft_ms" && r[2] == "p50").unwrap();
    let (s, l, e): (f64, f64, f64) = (ttft[3].parse().unwrap(), ttft[4].parse().unwrap(), ttft[5].parse().unwrap());
    assert!(((s - l) / l * 100.0 - e).abs() < 1e-6, "{ttft:?}");
    assert_eq!(ttft[6], "5.0");
    assert_eq!(ttft[7], (e.abs() <= 5.0).to_string());

    // The record replays without engines: the same simulation, the same errors.
    drop((a, b));
    let r = simctl_guarded(&["validate", "--replay", &o, "--json"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let again: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(again["errors"], m["errors"], "a replay simulates exactly what was recorded");
    // --strict: status 3 when an error leaves its target.
    let mut strict = m.clone();
    for k in ["p50_pct", "p90_pct", "p95_pct", "throughput_pct"] {
        strict["targets"][k] = serde_json::json!(1e9);
    }
    std::fs::write(out.join("validation.json"), serde_json::to_string(&strict).unwrap()).unwrap();
    assert_eq!(simctl_guarded(&["validate", "--replay", &o, "--strict", "--quiet"]).status.code(), Some(0));
    for k in ["p50_pct", "p90_pct", "p95_pct", "throughput_pct"] {
        strict["targets"][k] = serde_json::json!(0.0);
    }
    strict["targets"]["note"] = serde_json::json!("impossible on purpose");
    std::fs::write(out.join("validation.json"), serde_json::to_string(&strict).unwrap()).unwrap();
    let r = simctl_guarded(&["validate", "--replay", &o, "--strict"]);
    assert_eq!(r.status.code(), Some(3), "{}", stdout(&r));
    assert!(stdout(&r).contains("targets: impossible on purpose") && stdout(&r).contains("  outside: load 50% "), "{}", stdout(&r));

    // An existing validation is not overwritten without --force.
    let r = simctl_guarded(&args);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("already holds a validation"), "{}", stderr(&r));
}

#[test]
fn validate_refuses_bad_input_before_sending_anything() {
    let dir = temp_dir("validate-bad");
    let o = dir.join("v").display().to_string();
    let r = simctl_guarded(&["validate", "--out", &o]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("give the engines to validate against"), "{}", stderr(&r));
    let r = simctl_guarded(&["validate", "--endpoint", "http://127.0.0.1:9", "--loads", "lots", "--out", &o]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("`--loads lots`: expected a fraction of capacity"), "{}", stderr(&r));
    // A folder that is not a validation record is bad input.
    let r = simctl_guarded(&["validate", "--replay", &dir.display().to_string()]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("validation.json"), "{}", stderr(&r));
}
