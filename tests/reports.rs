//! `simctl run --out` figures, `simctl report` on runs, `simctl compare` and its exit status.

use crate::{simctl, stderr, stdout, temp_dir};

fn run_into(tag: &str, policy: &str) -> std::path::PathBuf {
    let dir = temp_dir(tag);
    let o = simctl(&["run", "--set", &format!("router.policy={policy}"), "--set", "run.duration=10s", "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    dir
}

#[test]
fn a_run_writes_queue_depth_and_plots_and_report_redraws_them() {
    let dir = run_into("run-plots", "round_robin");
    let depth = std::fs::read_to_string(dir.join("queue_depth.csv")).unwrap();
    assert_eq!(depth.lines().next(), Some("time_s,pool,depth"));
    assert!(depth.lines().any(|l| l.contains(",prefill,")) && depth.lines().any(|l| l.contains(",decode,")));
    // The depth series agrees with the summary's peak.
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let peak =
        depth.lines().filter(|l| l.contains(",decode,")).map(|l| l.rsplit(',').next().unwrap().parse::<f64>().unwrap()).fold(0.0, f64::max);
    assert_eq!(peak, summary["pools"]["decode"]["queue_depth_max"].as_f64().unwrap());
    if cfg!(feature = "parquet") {
        for f in ["requests.parquet", "queue_depth.parquet"] {
            assert_eq!(&std::fs::read(dir.join(f)).unwrap()[..4], b"PAR1", "{f}");
        }
    }
    for f in ["latency_cdf", "queue_depth"] {
        assert_eq!(&std::fs::read(dir.join(format!("plots/{f}.png"))).unwrap()[1..4], b"PNG");
    }
    let svg = std::fs::read_to_string(dir.join("plots/latency_cdf.svg")).unwrap();
    assert!(svg.contains("TTFT (ms)") && svg.contains("TPOT (ms)") && svg.contains("share of requests"));

    std::fs::remove_dir_all(dir.join("plots")).unwrap();
    let html = dir.join("page.html");
    let o = simctl(&["report", dir.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("ttft_ms") && stdout(&o).contains("policy round_robin"), "the run's table: {}", stdout(&o));
    assert!(dir.join("plots/queue_depth.svg").is_file(), "plots redrawn from the CSV files");
    assert!(std::fs::read_to_string(&html).unwrap().matches("<svg").count() >= 2);
}

#[test]
fn compare_reports_differences_and_fails_on_thresholds() {
    let a = run_into("cmp-a", "round_robin");
    let b = run_into("cmp-b", "random");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let o = simctl(&["compare", a, a, "--fail-if", "ttft_ms.p95>+1%"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("0.0%"));

    let o = simctl(&["compare", a, b]);
    assert!(o.status.success());
    let line = stdout(&o).lines().find(|l| l.starts_with("ttft_ms.p95")).unwrap().to_string();
    let cols: Vec<&str> = line.split_whitespace().collect();
    let (x, y): (f64, f64) = (cols[1].parse().unwrap(), cols[2].parse().unwrap());
    assert_ne!(x, y, "different policies, different tails");
    // A threshold in the direction of the change fails (exit 3), the other way passes.
    let (worse, better) = if y > x { ("ttft_ms.p95>+0%", "ttft_ms.p95<-0%") } else { ("ttft_ms.p95<-0%", "ttft_ms.p95>+0%") };
    let o = simctl(&["compare", a, b, "--fail-if", worse]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(stdout(&o).contains("FAIL ttft_ms.p95"));
    let o = simctl(&["compare", a, b, "--fail-if", better]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // Unknown metrics are bad input, with close names.
    let o = simctl(&["compare", a, b, "--fail-if", "ttft.p95>+10%"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("ttft_ms.p95"), "{}", stderr(&o));
}

#[test]
fn a_capacity_search_folder_reports_and_compares() {
    let dir = temp_dir("fm-report");
    let o = simctl(&[
        "sweep",
        "--find-max",
        "arrival_rate=5/s..60/s",
        "--tolerance",
        "0.05",
        "--grid",
        "router.policy=round_robin,least_loaded",
        "--set",
        "run.duration=5s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.join("find_max.csv").is_file() && dir.join("plots/find_max.png").is_file());
    let o = simctl(&["report", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("router.policy=least_loaded") && stdout(&o).contains("req/s per GPU"), "{}", stdout(&o));
    let o = simctl(&["compare", dir.to_str().unwrap(), dir.to_str().unwrap(), "--fail-if", "per_gpu<-1%"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}
