//! The command line as a user meets it.

use crate::{simctl, stderr, stdout, temp_dir};

#[test]
fn run_without_a_file_runs_the_embedded_default() {
    let o = simctl(&["run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("scenario flagship_vs_mid"), "{out}");
    assert!(out.contains("ttft_ms") && out.contains("goodput") && out.contains("dc_mid2"), "{out}");
}

#[test]
fn json_summary_has_the_documented_keys() {
    let o = simctl(&["run", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    for k in [
        "scenario",
        "seed",
        "completed",
        "ttft_ms",
        "tpot_ms",
        "itl_ms",
        "e2e_ms",
        "throughput_rps",
        "output_tok_s",
        "goodput_rps",
        "goodput_tok_s",
        "slo_attainment",
        "cost_usd",
        "goodput_tok_per_usd",
        "pools",
        "instances",
    ] {
        assert!(v.get(k).is_some(), "missing key {k}");
    }
    for k in ["mean", "p50", "p90", "p95", "p99"] {
        assert!(v["ttft_ms"][k].is_f64(), "ttft_ms.{k}");
    }
    assert!(v["pools"]["decode"]["queue_depth_mean"].is_f64());
    assert!(v["pools"]["decode"]["queue_depth_max"].is_u64());
    assert!(v["instances"]["dc_big"]["queue_depth_max"].is_u64());
    // Every request of the default run completes (it drains), and metrics agree with counts.
    let completed = v["completed"].as_u64().unwrap();
    assert_eq!(completed, v["requests"].as_u64().unwrap());
    let dur = v["duration_s"].as_f64().unwrap();
    assert!((v["throughput_rps"].as_f64().unwrap() - completed as f64 / dur).abs() < 1e-9);
    // Cost: 2 x $7 + $6 + 3 x $3 = $29/h over the time the fleet is held.
    let held = v["held_s"].as_f64().unwrap();
    assert!(held >= dur);
    assert!((v["cost_usd"].as_f64().unwrap() - 29.0 * held / 3600.0).abs() < 1e-9);
}

#[test]
fn out_writes_summary_and_one_csv_row_per_request() {
    let dir = temp_dir("out");
    let o = simctl(&["run", "--out", dir.to_str().unwrap(), "--set", "arrival_rate=10/s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let csv = std::fs::read_to_string(dir.join("requests.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "request_id");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len() as u64, summary["requests"].as_u64().unwrap());
    assert!(rows.iter().all(|r| r.len() == header.len()));
    // The good column agrees with the summary's goodput.
    let good = rows.iter().filter(|r| r[header.iter().position(|h| *h == "good").unwrap()] == "1").count();
    let dur = summary["duration_s"].as_f64().unwrap();
    assert!((summary["goodput_rps"].as_f64().unwrap() - good as f64 / dur).abs() < 1e-9);
    // 10/s over 20 s: about 200 requests.
    assert!((150..250).contains(&rows.len()), "{}", rows.len());
}

#[test]
fn bad_overrides_and_files_fail_with_located_errors() {
    let o = simctl(&["run", "--set", "arival_rate=3/s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("matches no parameter"), "{}", stderr(&o));

    let dir = temp_dir("bad");
    let f = dir.join("bad.scn");
    std::fs::write(&f, "name = \"x\"\nmodel = llama_3_1_8b\nslo { ttft = 350 }\nrouter { polcy = telemetry }\n").unwrap();
    let o = simctl(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("`ttft` expects a duration such as `350ms`, found `350` without a unit"), "{err}");
    assert!(err.contains("bad.scn:3:"), "{err}");
    assert!(err.contains("did you mean `policy`?"), "{err}");
    assert!(err.contains("problems found"), "{err}");
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let o = simctl(&["run", "no/such/file.scn"]);
    assert_eq!(o.status.code(), Some(2), "bad input");
    assert!(stderr(&o).contains("cannot read scenario `no/such/file.scn`"), "{}", stderr(&o));
}

#[test]
fn set_reaches_nested_settings_even_without_the_block() {
    let base = simctl(&["run", "--json"]);
    let capped = simctl(&["run", "--json", "--set", "pool.decode.engine.max_seqs=1", "--set", "slo.ttft=1s"]);
    assert!(capped.status.success(), "{}", stderr(&capped));
    let a: serde_json::Value = serde_json::from_slice(&base.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&capped.stdout).unwrap();
    // One sequence at a time per decode GPU: decode queues grow.
    assert!(b["pools"]["decode"]["queue_depth_mean"].as_f64() > a["pools"]["decode"]["queue_depth_mean"].as_f64());
    let bad = simctl(&["run", "--set", "pool.decode.engine.max_seq=1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("did you mean `max_seqs`?"), "{}", stderr(&bad));
}

#[test]
fn a_closed_pipe_ends_the_run_quietly() {
    // `simctl run | head -0`: the reader is gone before simctl writes anything.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_simctl"))
        .args(["run", "--set", "run.duration=2s"])
        .current_dir(crate::repo_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && out.status.code() != Some(101), "{err}");
}

#[test]
fn catalogue_says_where_each_gpus_numbers_come_from_and_how_each_backend_batches() {
    let o = simctl(&["catalogue"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for (gpu, backend) in simctl_engine::kernels::shipped() {
        let line = text.lines().find(|l| l.starts_with(&format!("{gpu} "))).unwrap_or_else(|| panic!("no line for {gpu}:\n{text}"));
        assert!(line.contains(&format!("{} kernels", backend.as_str())), "{line}");
    }
    assert!(text.lines().any(|l| l.starts_with("h100-mig-1g") && l.contains("vllm roofline")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("sglang") && l.contains("sglang batching")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("vllm") && l.contains("vllm batching") && l.contains("(default)")), "{text}");
    let o = simctl(&["catalogue", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("catalogue --json is JSON");
    let backends = v["backends"].as_array().expect("backends");
    let sched = |n: &str| backends.iter().find(|b| b["name"] == n).map(|b| b["scheduler"].clone());
    assert_eq!(sched("sglang"), Some(serde_json::json!("sglang")));
    assert_eq!(sched("trtllm"), Some(serde_json::json!("vllm")));
}
