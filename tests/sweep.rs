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
    // A numeric axis carries its unit in its name and its values in it; a named axis is text.
    assert_eq!(&header[..5], ["point", "replicate", "seed", "arrival_rate_per_s", "router.policy"]);
    let unique: std::collections::HashSet<&&str> = header.iter().collect();
    assert_eq!(unique.len(), header.len(), "column names are unique (pandas, Parquet)");
    assert!(
        header.contains(&"ttft_ms.p95") && header.contains(&"goodput_tok_per_usd") && header.contains(&"pools.decode.queue_depth_mean")
    );
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 16);
    assert_eq!((rows[0][3], rows[0][4], rows[1][4], rows[2][4]), ("12.0", "round_robin", "round_robin", "telemetry"));
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
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("same unit"), "{}", stderr(&o));
    let o = simctl(&["sweep", "--grid", "router.policy=round_robin,teleme"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("at grid point router.policy=teleme"), "{}", stderr(&o));
    assert!(stderr(&o).contains("did you mean `telemetry`?"), "{}", stderr(&o));
}

fn sharded(tag: &str, shard: Option<&str>) -> std::path::PathBuf {
    let dir = temp_dir(tag);
    let mut args = vec![
        "sweep",
        "--grid",
        "arrival_rate=12/s,24/s,30/s",
        "--grid",
        "router.policy=round_robin,least_loaded",
        "--seeds",
        "2",
        "--set",
        "run.duration=5s",
        "--no-plots",
        "--out",
        dir.to_str().unwrap(),
    ];
    if let Some(s) = shard {
        args.extend(["--shard", s]);
    }
    let o = simctl(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    dir
}

#[test]
fn shards_merge_into_the_unsharded_result() {
    let whole = sharded("shard-whole", None);
    let parts: Vec<_> = (1..=3).map(|i| sharded(&format!("shard-{i}"), Some(&format!("{i}/3")))).collect();
    // Each shard holds a third of the 12 runs, none twice.
    let rows = |d: &std::path::Path| std::fs::read_to_string(d.join("results.csv")).unwrap().lines().count() - 1;
    assert_eq!(parts.iter().map(|p| rows(p)).collect::<Vec<_>>(), [4, 4, 4]);

    // Two of three shards: reported as incomplete, nothing written.
    let o = simctl(&["report", parts[0].to_str().unwrap(), parts[2].to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("8 of 12 runs"), "{}", stdout(&o));
    assert!(stderr(&o).contains("4 run(s) missing"), "{}", stderr(&o));

    let merged = temp_dir("shard-merged");
    let html = merged.join("report.html");
    let mut args = vec!["report"];
    let names: Vec<String> = parts.iter().rev().map(|p| p.to_str().unwrap().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    args.extend(["--out", merged.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    let o = simctl(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["results.csv", "points.csv", "manifest.json"] {
        assert_eq!(std::fs::read_to_string(whole.join(f)).unwrap(), std::fs::read_to_string(merged.join(f)).unwrap(), "{f} differs");
    }
    // The merge draws the plots the shards could not.
    let png = std::fs::read(merged.join("plots/ttft_ms_p95.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("least_loaded") && page.contains("ttft_ms.p95"), "HTML has tables and plots");

    // Shards of different sweeps do not merge.
    let other = temp_dir("shard-other");
    let o = simctl(&["sweep", "--grid", "arrival_rate=12/s", "--set", "run.duration=5s", "--no-plots", "--out", other.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = simctl(&["report", parts[0].to_str().unwrap(), other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "bad input");
    assert!(stderr(&o).contains("not parts of one sweep"), "{}", stderr(&o));
}

#[test]
fn sweep_plots_have_titles_axes_and_legends() {
    let dir = temp_dir("sweep-plots");
    let o = simctl(&[
        "sweep",
        "--grid",
        "arrival_rate=12/s,24/s",
        "--grid",
        "router.policy=round_robin,least_loaded",
        "--seeds",
        "2",
        "--set",
        "run.duration=5s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Parquet copies in `parquet` builds (the test command enables every feature); a note otherwise.
    if cfg!(feature = "parquet") {
        for f in ["results.parquet", "points.parquet"] {
            assert_eq!(&std::fs::read(dir.join(f)).unwrap()[..4], b"PAR1", "{f}");
        }
    } else {
        assert!(stderr(&o).contains("without the `parquet` feature"), "{}", stderr(&o));
    }
    for m in ["ttft_ms_p95", "tpot_ms_p95", "goodput_rps", "goodput_tok_per_usd"] {
        assert_eq!(&std::fs::read(dir.join(format!("plots/{m}.png"))).unwrap()[1..4], b"PNG", "{m}.png");
        let svg = std::fs::read_to_string(dir.join(format!("plots/{m}.svg"))).unwrap();
        assert!(svg.contains("arrival_rate (per second)"), "{m}: x label with unit");
        assert!(svg.contains("router.policy=least_loaded") && svg.contains("router.policy=round_robin"), "{m}: legend");
    }
    // A grid of categories only: bars across its points (the right-sizing view).
    let bars = temp_dir("sweep-bars");
    let o = simctl(&[
        "sweep",
        "--grid",
        "router.policy=round_robin,least_loaded,power_of_two",
        "--set",
        "run.duration=5s",
        "--out",
        bars.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(bars.join("plots/bars.svg")).unwrap();
    assert!(svg.contains("goodput per dollar") && svg.contains("TTFT p95") && svg.contains("power_of_two"));
    let np = temp_dir("sweep-noplots");
    let o = simctl(&[
        "sweep",
        "--grid",
        "router.policy=round_robin,least_loaded",
        "--set",
        "run.duration=5s",
        "--no-plots",
        "--out",
        np.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(np.join("results.csv").is_file() && !np.join("plots").exists());
}

#[test]
fn find_max_brackets_the_slo_edge() {
    let dir = temp_dir("find-max");
    let o = simctl(&[
        "sweep",
        "--find-max",
        "arrival_rate=5/s..60/s",
        "--slo-attainment",
        "0.9",
        "--tolerance",
        "0.02",
        "--set",
        "run.duration=10s",
        "--set",
        "router.policy=round_robin",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("find_max.json")).unwrap()).unwrap();
    let r = &v["results"][0];
    let max = r["max_value"].as_str().unwrap().to_string();
    let fail = r["first_failing_value"].as_str().unwrap().to_string();
    let (lo, hi) = (r["max_value_number"].as_f64().unwrap(), fail.trim_end_matches("/s").parse::<f64>().unwrap());
    assert!(lo < hi && hi - lo <= 0.02 * lo + 1e-9, "bracket {lo}..{hi} is within the tolerance");
    assert!(r["per_gpu"].as_f64().unwrap() > 0.0 && r["gpus"].as_u64().unwrap() > 0);
    // The edge is real: simctl run meets the target at the max and misses it just above.
    let att = |rate: &str| {
        let o = simctl(&[
            "run",
            "--json",
            "--set",
            &format!("arrival_rate={rate}"),
            "--set",
            "run.duration=10s",
            "--set",
            "router.policy=round_robin",
        ]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["slo_attainment"].as_f64().unwrap()
    };
    assert!(att(&max) >= 0.9, "meets the target at {max}");
    assert!(att(&fail) < 0.9, "misses it at {fail}");
}

#[test]
fn the_issue_command_sweeps_the_default_scenario_in_its_own_units() {
    // `param arrival_rate = 1.2 per 50ms`: bare numbers are requests per 50 ms, as written there.
    let o = simctl(&["sweep", "--grid", "arrival_rate=0.5..2.0", "--set", "run.duration=5s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("bare numbers take the unit"), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("7 runs (7 points x 1 seeds)"), "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("0.5 per 50ms"), "{out}");
    // The same point as an explicit rate: 0.5 per 50 ms = 10/s.
    let a = simctl(&["run", "--json", "--set", "arrival_rate=0.5 per 50ms", "--set", "run.duration=5s"]);
    let b = simctl(&["run", "--json", "--set", "arrival_rate=10/s", "--set", "run.duration=5s"]);
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_slice(&a.stdout).unwrap(), serde_json::from_slice(&b.stdout).unwrap());
    assert_eq!(a["ttft_ms"], b["ttft_ms"]);
}

#[test]
fn independent_seeding_gives_each_point_its_own_seed_and_still_ignores_threads() {
    let run = |tag: &str, jobs: &str| {
        let dir = temp_dir(tag);
        let o = simctl(&[
            "sweep",
            "--grid",
            "router.policy=round_robin,least_loaded,random",
            "--seeds",
            "2",
            "--seeding",
            "independent",
            "--set",
            "run.duration=5s",
            "--no-plots",
            "-j",
            jobs,
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read_to_string(dir.join("results.csv")).unwrap()
    };
    let (a, b) = (run("indep-j1", "1"), run("indep-j2", "2"));
    assert_eq!(a, b);
    let seeds: std::collections::HashSet<&str> = a.lines().skip(1).map(|l| l.split(',').nth(2).unwrap()).collect();
    assert_eq!(seeds.len(), 6, "3 points x 2 replicates, all different: {seeds:?}");
}

#[test]
fn a_killed_sweep_keeps_its_finished_runs() {
    let dir = temp_dir("killed");
    // 201 runs of 600 simulated seconds each: minutes of work, so the kill below always
    // lands mid-sweep however fast the machine is; what is asserted does not depend on when.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_simctl"))
        .args(["sweep", "--grid", "arrival_rate=10/s..30/s:0.1/s", "-j", "1", "--set", "run.duration=600s", "--no-plots", "--out"])
        .arg(&dir)
        .current_dir(crate::repo_root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for three finished rows (complete lines), then kill: harsher than Ctrl-C, no
    // chance to clean up. The bound only stops a broken sweep from hanging the suite.
    let rows = || std::fs::read_to_string(dir.join("results.csv")).map(|t| t.matches('\n').count().saturating_sub(1)).unwrap_or(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while rows() < 3 && std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = rows();
    assert!((3..201).contains(&kept), "{kept} rows kept of 201 (the sweep should have been killed mid-way)");
    let o = simctl(&["report", dir.to_str().unwrap(), "--no-plots"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("{kept} of 201 runs")), "{}", stdout(&o));
    assert!(stderr(&o).contains(&format!("{} run(s) missing", 201 - kept)), "{}", stderr(&o));
}

/// The columns a sweep writes come from the scenario alone: for every shipped scenario the
/// summary of a whole run has exactly them (less the per-reason counts), though no request
/// is simulated to find them.
#[test]
fn result_columns_are_those_of_every_run_without_running_one() {
    let root = crate::repo_root();
    let mut files: Vec<_> = ["scenarios", "validation/scenarios"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.extension().is_some_and(|x| x == "scn"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.to_string_lossy().into_owned();
        // Short runs: the columns, not the figures, are compared.
        let spec = simctl_dsl::load(&name, &text, &[("run.requests".into(), "300".into())]).unwrap_or_else(|d| panic!("{name}: {d}"));
        let mut rec = simctl_reports::RunRecorder::for_spec(&spec);
        let totals = simctl_engine::Simulation::new(&spec).unwrap().run(&mut rec);
        assert!(totals.arrived > 0, "{name}: nothing ran");
        let summary = simctl_reports::Summary::build(&spec, spec.seed, &mut rec, &totals);
        let ran: Vec<String> = simctl_reports::flatten_summary(&summary)
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !k.starts_with("rejected_reasons.") && !k.starts_with("failed_reasons."))
            .collect();
        assert_eq!(simctl_reports::sweep::summary_columns(&spec), ran, "{name}");
    }
}
