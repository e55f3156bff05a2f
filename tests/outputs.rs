//! Outputs users can trust: measured windows, no data shown as no data, typed tables, bounded
//! work, overrides that cannot conflict silently, output folders that never mix or lose.

use std::path::Path;

use crate::{repo_root, simctl, stderr, stdout, temp_dir};

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", stdout(o)))
}

fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    (header, lines.map(|l| l.split(',').map(String::from).collect()).collect())
}

fn col(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"))
}

#[test]
fn throughput_divides_by_the_measured_window_and_cost_by_the_held_time() {
    // 100 requests of the default fleet finish in a few seconds of its 20 s run: the window is
    // first arrival to last completion, computed here by hand from requests.csv.
    let dir = temp_dir("window");
    let o = simctl(&["run", "--set", "run.requests=100", "--set", "run.duration=1h", "--out", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    let (h, rows) = csv_rows(&dir.join("requests.csv"));
    assert_eq!(rows.len(), 100);
    let f = |r: &Vec<String>, c: &str| r[col(&h, c)].parse::<f64>().unwrap();
    let first = rows.iter().map(|r| f(r, "arrival_s")).fold(f64::INFINITY, f64::min);
    let last = rows.iter().map(|r| f(r, "arrival_s") + f(r, "e2e_ms") / 1e3).fold(0.0, f64::max);
    let window = last - first;
    assert!(window < 10.0, "{window}");
    assert!((v["duration_s"].as_f64().unwrap() - window).abs() < 1e-6, "{} vs {window}", v["duration_s"]);
    assert!((v["throughput_rps"].as_f64().unwrap() - 100.0 / window).abs() < 1e-6);
    assert!((v["window_start_s"].as_f64().unwrap() - first).abs() < 1e-6);
    // The fleet is held from the start to the end of the run ($29/h here), not for an hour.
    let held = v["held_s"].as_f64().unwrap();
    assert!((held - last).abs() < 0.5, "{held} vs {last}");
    assert!((v["cost_usd"].as_f64().unwrap() - 29.0 * held / 3600.0).abs() < 1e-9);
}

const ALL_REJECTED: &str = "model = llama_3_1_8b
hardware g { prefill_rate = 10000 tok/s; decode_rate = 3000 tok/s; cost = 1 $/h; kv_capacity = 512 tok }
pool serve { role = mixed; instances = [g] }
workload { arrivals = poisson(20/s); prompt = uniform(1000, 2000); output = 16 }
run { requests = 50 }
";

#[test]
fn no_data_is_null_not_zero_and_the_gate_fails_on_it() {
    let dir = temp_dir("nodata");
    let scn = dir.join("rejected.scn");
    std::fs::write(&scn, ALL_REJECTED).unwrap();
    let b = dir.join("b");
    let o = simctl(&["run", scn.to_str().unwrap(), "--out", b.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["rejected"].as_u64(), Some(50));
    for k in ["p50", "p95", "mean"] {
        assert!(v["ttft_ms"][k].is_null(), "ttft_ms.{k} = {}", v["ttft_ms"][k]);
    }
    assert!(v["prefix_hit_rate"].is_null() && v["throughput_rps"].as_f64() == Some(0.0));
    let table = stdout(&simctl(&["run", scn.to_str().unwrap()]));
    assert!(table.lines().any(|l| l.starts_with("ttft_ms") && l.split_whitespace().skip(1).all(|x| x == "-")), "{table}");
    // A healthy baseline against the broken candidate: the gate fails, and says why.
    let a = dir.join("a");
    let ok = simctl(&["run", scn.to_str().unwrap(), "--set", "hardware.g.kv_capacity=100000 tok", "--out", a.to_str().unwrap(), "--quiet"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let gate = simctl(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--fail-if", "ttft_ms.p95>+10%"]);
    assert_eq!(gate.status.code(), Some(3), "{}", stdout(&gate));
    assert!(stdout(&gate).contains("B has no data"), "{}", stdout(&gate));
    let lax = simctl(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--fail-if", "ttft_ms.p95>+10%", "--allow-missing"]);
    assert_eq!(lax.status.code(), Some(0), "{}", stdout(&lax));
}

#[test]
fn a_truncated_sweep_fails_the_gate_and_is_labelled_incomplete() {
    let dir = temp_dir("truncated");
    let (a, b) = (dir.join("a"), dir.join("b"));
    for d in [&a, &b] {
        let o = simctl(&[
            "sweep",
            "--grid",
            "arrival_rate=12/s,24/s",
            "--seeds",
            "2",
            "--set",
            "run.duration=5s",
            "--no-plots",
            "--out",
            d.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // Keep half of B's runs, as a killed sweep leaves them.
    let text = std::fs::read_to_string(b.join("results.csv")).unwrap();
    let kept: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(b.join("results.csv"), kept.join("\n") + "\n").unwrap();
    let report = simctl(&["report", b.to_str().unwrap(), "--no-plots"]);
    assert!(stdout(&report).contains("INCOMPLETE"), "{}", stdout(&report));
    let gate = simctl(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--fail-if", "ttft_ms.p95>+50%"]);
    assert_eq!(gate.status.code(), Some(3), "{}", stdout(&gate));
    let out = stdout(&gate);
    assert!(out.contains("the sweep is incomplete: 2 of 4 runs") && out.contains("is in A but not in B"), "{out}");
}

#[cfg(feature = "parquet")]
#[test]
fn every_table_loads_in_polars_with_the_right_types() {
    use simctl_reports::parquet::csv_schema;
    let dir = temp_dir("polars");
    let dtype = |path: &Path, name: &str| {
        let schema = csv_schema(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        schema.into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{}: no column {name}", path.display())).1
    };
    // Two sweeps over different points: the same column has the same type in both.
    for (tag, grid) in [("s1", "arrival_rate=10/s,20/s"), ("s2", "arrival_rate=600/min,1800/min")] {
        let d = dir.join(tag);
        let o = simctl(&[
            "sweep",
            "--grid",
            grid,
            "--grid",
            "router.policy=round_robin,least_loaded",
            "--set",
            "run.duration=4s",
            "--no-plots",
            "--out",
            d.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        for f in ["results.csv", "points.csv"] {
            let p = d.join(f);
            assert_eq!(dtype(&p, "arrival_rate_per_s"), "f64", "{tag}/{f}: the axis is numeric, in its unit");
            assert_eq!(dtype(&p, "router.policy"), "str");
            for m in ["ttft_ms.p95", "slo_attainment", "cost_usd", "instances.dc_big.hourly_cost", "migrations"] {
                assert_eq!(dtype(&p, m), "f64", "{tag}/{f}: {m}");
            }
        }
        assert_eq!(dtype(&d.join("results.csv"), "seed"), "i64", "seeds are integers");
    }
    // 600/min is 10/s: the same number.
    let (h, rows) = csv_rows(&dir.join("s2/results.csv"));
    assert_eq!(rows[0][col(&h, "arrival_rate_per_s")], "10.0");
    // A run's tables, and an all-rejected run's, whose latency columns have no value at all.
    let run = dir.join("run");
    assert!(simctl(&["run", "--set", "run.duration=4s", "--out", run.to_str().unwrap(), "--decisions", "--quiet"]).status.success());
    let scn = dir.join("rejected.scn");
    std::fs::write(&scn, ALL_REJECTED).unwrap();
    let rej = dir.join("rejected");
    assert!(simctl(&["run", scn.to_str().unwrap(), "--out", rej.to_str().unwrap(), "--quiet"]).status.success());
    for d in [&run, &rej] {
        let p = d.join("requests.csv");
        for c in ["arrival_s", "ttft_ms", "tpot_ms", "e2e_ms", "max_itl_ms"] {
            assert_eq!(dtype(&p, c), "f64", "{}: {c}", p.display());
        }
        assert_eq!(dtype(&p, "prompt_tokens"), "i64");
        assert_eq!(dtype(&d.join("queue_depth.csv"), "time_s"), "f64");
        assert_eq!(dtype(&d.join("queue_depth.csv"), "depth"), "i64");
    }
    assert_eq!(dtype(&run.join("decisions.csv"), "time_s"), "f64");
}

#[test]
fn an_overloaded_run_stops_at_its_bound_with_a_clear_message() {
    // The default bound is a million requests in flight; reaching it takes a debug build
    // half a minute, so the run below lowers it (the bound is the same code either way).
    let text = std::fs::read_to_string(repo_root().join("scenarios/flagship_vs_mid.scn")).unwrap();
    assert_eq!(simctl_dsl::load("flagship_vs_mid.scn", &text, &[]).unwrap().run.max_in_flight, 1_000_000);
    let dir = temp_dir("overload");
    let o = simctl(&["run", "--set", "arrival_rate=1e9/s", "--set", "run.max_in_flight=20000", "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("more than 20000 requests in flight"), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["complete"], false);
    assert!(s["incomplete_reason"].as_str().unwrap().contains("max_in_flight"));
    // A bound of the scenario's own.
    let o = simctl(&["run", "--set", "run.max_in_flight=50", "--set", "arrival_rate=200/s", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["complete"], false);
    let o = simctl(&["run", "--set", "run.max_time=2s", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(json(&o)["incomplete_reason"].as_str().unwrap().contains("max_time"));
}

#[test]
fn deep_nesting_and_out_of_range_values_are_located_errors() {
    let dir = temp_dir("deep");
    let scn = dir.join("deep.scn");
    std::fs::write(&scn, format!("param x = {}1{}\n", "(".repeat(5000), ")".repeat(5000))).unwrap();
    let o = simctl(&["check", scn.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("nested at most 64 deep") && stderr(&o).contains("deep.scn:1:"), "{}", stderr(&o));
    for (set, msg) in [("seed=1e30", "larger than 2^53"), ("run.duration=1e12h", "longer than simulated time reaches")] {
        let o = simctl(&["check", "scenarios/flagship_vs_mid.scn", "--set", set]);
        assert_eq!(o.status.code(), Some(2), "{set}");
        assert!(stderr(&o).contains(msg), "{set}: {}", stderr(&o));
    }
    // A trace whose block ids disagree with its input length.
    std::fs::write(dir.join("t.jsonl"), "{\"timestamp\": 0, \"input_length\": 2000, \"output_length\": 4, \"hash_ids\": [1, 2]}\n")
        .unwrap();
    let t = dir.join("t.scn");
    std::fs::write(&t, "model = llama_3_1_8b\nhardware g { gpu = h100_sxm }\npool p { role = mixed; instances = [g] }\nworkload { arrivals = trace(\"t.jsonl\") }\n").unwrap();
    let o = simctl(&["check", t.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("t.jsonl:1: `hash_ids` holds 2 ids, but an `input_length` of 2000 tokens spans 4 blocks"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn overrides_cannot_conflict_and_string_params_take_bare_paths() {
    let o = simctl(&["run", "--set", "arrival_rate=10/s", "--set", "arrival_rate=20/s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`--set arrival_rate=10/s` and `--set arrival_rate=20/s` both set `arrival_rate`"), "{}", stderr(&o));
    let o = simctl(&["sweep", "--grid", "arrival_rate=10/s,20/s", "--grid", "arrival_rate=30/s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("both sweep `arrival_rate`"), "{}", stderr(&o));
    // A bare path, relative to the working directory (the repository root here), not to
    // the scenario's folder (scenarios/).
    let o = simctl(&[
        "run",
        "scenarios/mooncake_agg_round_robin.scn",
        "--set",
        "trace=traces/mooncake/synthetic_trace.jsonl",
        "--set",
        "run.requests=50",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["requests"].as_u64(), Some(50));
}

#[test]
fn output_folders_never_mix_two_results() {
    let dir = temp_dir("reuse");
    let d = dir.to_str().unwrap();
    assert!(simctl(&["run", "--set", "run.duration=2s", "--out", d, "--decisions", "--quiet"]).status.success());
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let o = simctl(&["run", "--set", "run.duration=2s", "--out", d, "--quiet"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already holds results") && stderr(&o).contains("--force"), "{}", stderr(&o));
    let o = simctl(&["sweep", "--grid", "arrival_rate=10/s", "--set", "run.duration=2s", "--out", d, "--quiet"]);
    assert_eq!(o.status.code(), Some(2), "a sweep into a run's folder is refused too");
    let o = simctl(&["run", "--set", "run.duration=2s", "--out", d, "--force", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!dir.join("decisions.csv").exists(), "the old run's decision log is gone");
    assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".partial")));
}

#[test]
fn ctrl_c_and_bad_trace_lines_leave_complete_files_marked_incomplete() {
    let dir = temp_dir("sigint");
    // A run of days: the signal always lands mid-run.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_simctl"))
        .args(["run", "--set", "run.duration=1000000s", "--out"])
        .arg(&dir)
        .current_dir(repo_root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = dir.join("requests.csv.partial");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 100_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["complete"], false);
    assert!(s["incomplete_reason"].as_str().unwrap().contains("interrupted"));
    let (_, rows) = csv_rows(&dir.join("requests.csv"));
    assert_eq!(rows.len() as u64, s["requests"].as_u64().unwrap(), "every request recorded, the cut-off ones as unfinished");
    assert!(!partial.exists());

    // A bad trace line: what ran is written, marked incomplete, and the exit says bad input.
    let t = temp_dir("badline");
    std::fs::write(t.join("t.jsonl"), "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 4}\n{oops\n").unwrap();
    let scn = t.join("t.scn");
    std::fs::write(&scn, "model = llama_3_1_8b\nhardware g { gpu = h100_sxm }\npool p { role = mixed; instances = [g] }\nworkload { arrivals = trace(\"t.jsonl\") }\n").unwrap();
    let out = t.join("out");
    let o = simctl(&["run", scn.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!((s["complete"].as_bool(), s["requests"].as_u64()), (Some(false), Some(1)));
    assert!(s["incomplete_reason"].as_str().unwrap().contains("t.jsonl:2"));
}

#[test]
fn a_fresh_clone_checks_every_scenario() {
    let root = repo_root();
    if !root.join(".git").exists() {
        eprintln!("skipping: not a git checkout");
        return;
    }
    let clone = temp_dir("clone");
    let o =
        std::process::Command::new("git").args(["clone", "-q", "--no-hardlinks"]).arg(&root).arg(clone.join("simctl")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let checkout = clone.join("simctl");
    let mut args = vec!["check".to_string()];
    let mut files: Vec<String> = std::fs::read_dir(checkout.join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "scn"))
        .map(|p| p.strip_prefix(&checkout).unwrap().display().to_string())
        .collect();
    files.sort();
    args.extend(files);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_simctl")).args(&args).current_dir(&checkout).output().unwrap();
    assert!(o.status.success(), "in a fresh clone:\n{}", stderr(&o));
}

#[test]
fn scripts_get_one_json_document_and_people_get_help_that_fits() {
    let dir = temp_dir("json");
    let sw = dir.join("sw");
    let o = simctl(&[
        "sweep",
        "--grid",
        "arrival_rate=10/s,20/s",
        "--set",
        "run.duration=3s",
        "--no-plots",
        "--out",
        sw.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["points"].as_array().unwrap().len(), 2);
    assert_eq!(json(&simctl(&["report", sw.to_str().unwrap(), "--json"]))["complete"], true);
    assert_eq!(json(&simctl(&["compare", sw.to_str().unwrap(), sw.to_str().unwrap(), "--json"]))["ok"], true);
    let c = json(&simctl(&["check", "scenarios/flagship_vs_mid.scn", "--json"]));
    assert_eq!(c["files"][0]["ok"], true);
    let t = json(&simctl(&["trace", "stats", "traces/mooncake/synthetic_trace.jsonl", "--json"]));
    assert!(t.is_object() || t.is_array());
    assert!(stdout(&simctl(&["run", "--quiet", "--set", "run.duration=2s"])).is_empty());
    // Examples never wrap inside a command on an 80-column terminal.
    for cmd in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["sweep", "--help"],
        vec!["compare", "--help"],
        vec!["eval", "--help"],
        vec!["scorecard", "--help"],
        vec!["live", "--help"],
        vec!["calibrate", "--help"],
        vec!["validate", "--help"],
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_simctl")).args(&cmd).env("COLUMNS", "1000").output().unwrap();
        let text = stdout(&o);
        let examples = text.split("Examples:").nth(1).unwrap_or("");
        for l in examples.lines() {
            assert!(l.chars().count() <= 78, "{cmd:?}: {} columns: {l}", l.chars().count());
        }
    }
}

#[test]
fn scenarios_readme_documents_every_key_the_parser_accepts() {
    // The parser's own lists (the ones its "unknown key" errors are checked against), so a
    // key added to a block without a line in the reference fails here.
    let doc = std::fs::read_to_string(repo_root().join("scenarios/README.md")).unwrap();
    let mut missing = Vec::new();
    for (block, keys) in simctl_dsl::accepted_keys() {
        assert!(!keys.is_empty(), "{block}");
        for k in keys {
            // Named on its own (`key`), or in a block's inline form (`link { from = ...; to = ... }`).
            let forms = [format!("`{k}`"), format!("`{k} ="), format!("{{ {k} ="), format!("; {k} =")];
            if !forms.iter().any(|f| doc.contains(f.as_str())) {
                missing.push(format!("{block}.{k}"));
            }
        }
    }
    assert!(missing.is_empty(), "scenarios/README.md does not document: {}", missing.join(", "));
}

#[test]
fn documented_defaults_are_the_binary_s_and_share_intervals_stay_in_range() {
    let doc = std::fs::read_to_string(repo_root().join("scenarios/README.md")).unwrap();
    let mfu = (simctl_engine::spec::DEFAULT_MFU * 100.0).round();
    let mbu = (simctl_engine::spec::DEFAULT_MBU * 100.0).round();
    assert!(doc.contains(&format!("defaults {mfu}%, {mbu}%")), "scenarios/README.md states mfu {mfu}% and mbu {mbu}%");
    let overhead = simctl_engine::spec::DEFAULT_STEP_OVERHEAD.as_nanos() / 1000;
    assert!(doc.contains(&format!("roofline default {overhead}us")), "scenarios/README.md states the step overhead");
    // Shares: mean ± interval within [0, 1] even when seeds disagree wildly.
    let dir = temp_dir("shares");
    let o = simctl(&[
        "sweep",
        "--grid",
        "arrival_rate=30/s",
        "--seeds",
        "3",
        "--set",
        "run.duration=4s",
        "--no-plots",
        "--out",
        dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (h, rows) = csv_rows(&dir.join("points.csv"));
    for share in h.iter().filter(|c| simctl_reports::sweep::is_share(c)) {
        let (m, ci) = (rows[0][col(&h, share)].parse::<f64>().unwrap(), rows[0][col(&h, &format!("{share}.ci95"))].parse::<f64>().unwrap());
        assert!(m - ci >= -1e-12 && m + ci <= 1.0 + 1e-12, "{share}: {m} ± {ci}");
    }
}
