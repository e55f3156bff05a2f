//! Routing policies end to end: per-phase policies, migrations, the decision log, and the
//! effects the policies exist for.

use simctl_engine::Simulation;
use simctl_reports::{RunRecorder, Summary};

use crate::{simctl, stderr, temp_dir};

fn summary_of(file: &str, sets: &[(&str, &str)]) -> Summary {
    let text = std::fs::read_to_string(crate::repo_root().join(file)).unwrap();
    let overrides: Vec<(String, String)> = sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let spec = simctl_dsl::load(file, &text, &overrides).unwrap_or_else(|d| panic!("{d}"));
    let mut rec = RunRecorder::new(spec.slo, Vec::new());
    let totals = Simulation::new(&spec).unwrap().run(&mut rec);
    Summary::build(&spec, spec.seed, &mut rec, &totals)
}

#[test]
fn prefix_aware_policies_beat_round_robin_when_prefixes_do_not_all_fit() {
    let shorter = [("run.duration", "120s")];
    let rr = summary_of("scenarios/prefix_affinity.scn", &[shorter[0], ("router.policy", "round_robin")]);
    let ca = summary_of("scenarios/prefix_affinity.scn", &[shorter[0], ("router.policy", "cache_aware")]);
    let kv = summary_of("scenarios/prefix_affinity.scn", &[shorter[0], ("router.policy", "kv_aware")]);
    assert!(
        ca.prefix_hit_rate.unwrap() > rr.prefix_hit_rate.unwrap() + 0.2,
        "{} vs {}",
        ca.prefix_hit_rate.unwrap(),
        rr.prefix_hit_rate.unwrap()
    );
    assert!(ca.ttft_ms.mean.unwrap() < rr.ttft_ms.mean.unwrap() / 2.0, "{} vs {}", ca.ttft_ms.mean.unwrap(), rr.ttft_ms.mean.unwrap());
    assert!(kv.ttft_ms.mean.unwrap() < rr.ttft_ms.mean.unwrap(), "{} vs {}", kv.ttft_ms.mean.unwrap(), rr.ttft_ms.mean.unwrap());
}

#[test]
fn stale_gauges_degrade_least_loaded() {
    let run = |st: &str| summary_of("scenarios/stale_telemetry.scn", &[("run.duration", "60s"), ("staleness", st)]);
    let exact = run("0ms");
    let stale = run("1s");
    assert!(
        stale.ttft_ms.p95.unwrap() > 3.0 * exact.ttft_ms.p95.unwrap(),
        "{} vs {}",
        stale.ttft_ms.p95.unwrap(),
        exact.ttft_ms.p95.unwrap()
    );
    let max_q = |s: &Summary| s.instances.values().map(|i| i.queue_depth_max).max().unwrap();
    assert!(max_q(&stale) > max_q(&exact), "herding onto the instance that looked emptiest");
}

#[test]
fn telemetry_router_migrates_within_its_budget() {
    let s = summary_of("scenarios/flagship_vs_mid.scn", &[]);
    assert!(s.migrations > 0);
    // 32 per second at most over the run.
    assert!(s.migrations as f64 <= 32.0 * s.duration_s.ceil());
    let moved_out: u64 = s.instances.values().map(|i| i.migrations_out).sum();
    let moved_in: u64 = s.instances.values().map(|i| i.migrations_in).sum();
    assert_eq!((moved_out, moved_in), (s.migrations, s.migrations));
    assert_eq!(s.completed, s.requests, "migrated sequences still finish");
    let off = summary_of("scenarios/flagship_vs_mid.scn", &[("router.migration", "false")]);
    assert_eq!(off.migrations, 0);
}

#[test]
fn each_phase_can_have_its_own_policy() {
    let s = summary_of(
        "scenarios/kv_starved_decode.scn",
        &[
            ("run.duration", "30s"),
            ("pool.decode.instances", "[2 x decode_gpu]"),
            ("router.prefill", "kv_aware"),
            ("router.decode", "least_loaded"),
        ],
    );
    assert_eq!(s.policy, "kv_aware+least_loaded");
    assert_eq!(s.completed, s.requests);
    // Least loaded spreads decodes over both decode GPUs.
    assert!(s.instances["decode_gpu0"].steps > 0 && s.instances["decode_gpu1"].steps > 0);
}

#[test]
fn decision_log_explains_every_choice() {
    let dir = temp_dir("decisions");
    let o = simctl(&["run", "--out", dir.to_str().unwrap(), "--decisions", "--set", "run.duration=5s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(dir.join("decisions.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("time_s,request_id,kind,policy,chosen,scores"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let requests = std::fs::read_to_string(dir.join("requests.csv")).unwrap().lines().count() - 1;
    // One prefill and one decode decision per request (every request finishes here).
    assert_eq!(rows.iter().filter(|r| r[2] == "prefill").count(), requests);
    assert_eq!(rows.iter().filter(|r| r[2] == "decode").count(), requests);
    for r in rows.iter().filter(|r| r[2] != "migration") {
        // The chosen instance has the best score (telemetry: highest).
        let scores: Vec<(&str, f64)> =
            r[5].split(';').map(|kv| kv.split_once('=').unwrap()).map(|(k, v)| (k, v.parse().unwrap())).collect();
        let best = scores.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
        let chosen = scores.iter().find(|s| s.0 == r[4]).unwrap().1;
        assert_eq!(chosen, best, "{r:?}");
    }
}

#[test]
fn router_parameters_must_belong_to_a_chosen_policy() {
    let dir = temp_dir("router-params");
    let f = dir.join("r.scn");
    let text = std::fs::read_to_string(crate::repo_root().join("scenarios/prefix_affinity.scn"))
        .unwrap()
        .replace("router { policy = kv_aware }", "router { policy = kv_aware\n  cache_threshold = 0.3 }");
    std::fs::write(&f, text).unwrap();
    let o = simctl(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`cache_threshold` is a parameter of the `cache_aware` policy"), "{}", stderr(&o));
}
