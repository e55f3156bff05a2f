//! `simctl scorecard`: the lab's own folders read as they are, baselines, simulated runs,
//! the figure, and bad folders.

use std::path::{Path, PathBuf};

use crate::{simctl, stderr, stdout, temp_dir};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// A run folder exactly as the lab's eval stack writes it (its field names, its extra fields,
/// integer histograms, per-window drops without totals, its own scorecard.json).
fn lab_folder(dir: &Path) -> Vec<(&'static str, String)> {
    let quality = [
        ("mmlu-mini", "paris", "paris", true),
        ("mmlu-mini", "orwell", "george orwell", false),
        ("gsm8k-lite", "10", "10", true),
        ("gsm8k-lite", "20", "20", true),
        ("truthfulqa-lite", "no", "no", true),
        ("truthfulqa-lite", "yes", "no", false),
        ("domain-slice", "200", "200", true),
        ("domain-slice", "pcie", "nvlink", false),
    ]
    .iter()
    .map(|(t, p, e, c)| format!(r#"{{"task": "{t}", "prompt": "synthetic", "expected": "{e}", "prediction": "{p}", "correct": {c}}}"#))
    .collect::<Vec<_>>()
    .join("\n")
        + "\n";
    let ttft = [400.0, 420.0, 380.0, 500.0, 450.0, 360.0, 410.0, 1200.0];
    let decode = [800.0, 900.0, 1000.0, 1100.0, 700.0, 1500.0, 1200.0, 950.0];
    let latency: String = (0..8)
        .map(|i| {
            format!(
                r#"{{"request_id": "req-{i}", "ttft_ms": {}, "decode_ms": {}, "prompt_tokens": {}, "output_tokens": {}, "case": "{}"}}"#,
                ttft[i],
                decode[i],
                64 + i * 100,
                [128, 512, 2048][i % 3],
                if i % 4 == 0 { "cold" } else { "warm" }
            ) + "\n"
        })
        .collect();
    let router: String = (0..4)
        .map(|w| format!(r#"{{"step": {}, "entropy": {}, "margin": 0.25, "drops": 0}}"#, 63 + 64 * w, 1.5 + 0.1 * w as f64) + "\n")
        .collect();
    let traffic = [
        (0, "[10, 12, 9, 11, 10, 8, 12, 8]", 0.12),
        (1, "[20, 25, 19, 22, 21, 16, 24, 13]", 0.2),
        (2, "[30, 36, 29, 33, 31, 25, 35, 21]", 0.18),
    ]
    .iter()
    .map(|(w, h, cv)| format!(r#"{{"window": {w}, "expert_hist": {h}, "imbalance_cv": {cv}}}"#) + "\n")
    .collect();
    let files = vec![
        ("quality.jsonl", quality),
        ("latency.jsonl", latency),
        ("moe_router.jsonl", router),
        ("moe_traffic.jsonl", traffic),
        ("tps_goodput.json", "{\n  \"throughput_tps\": 812.5,\n  \"goodput\": 640.25,\n  \"slo_hit_rate\": 0.875,\n  \"drop_rate\": 0.0\n}".to_string()),
        (
            "sys_meta.json",
            r#"{"mode": "full", "seed": 0, "experts": 8, "top_k": 2, "request_count": 48, "latency_slo_ms": 4200, "ttft_slo_ms": 1100, "run_dir": "artifacts/dynamic_router/cheap_eval/full_1", "model_path": "gpt-oss-20b/original", "used_vllm": false}"#.to_string(),
        ),
        ("scorecard.json", r#"{"quality": {"avg_accuracy": 0.625, "per_task": {}}, "latency": {"ttft": {"p50": 415.0, "p95": 955.0}}}"#.to_string()),
    ];
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    files
}

#[test]
fn a_lab_folder_is_read_as_it_is_and_left_unchanged() {
    let dir = temp_dir("lab").join("full_1");
    let files = lab_folder(&dir);
    let o = simctl(&["scorecard", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let row = out.lines().nth(1).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols, ["full_1", "0.625", "955", "ms", "1395", "ms", "0.00%", "0.200", "640.2", "SHIP"], "{out}");
    assert!(out.contains("ttft_slo_ms from sys_meta.json") && out.contains("<= 1100.0 ms") && out.contains("<= 4200.0 ms"), "{out}");
    assert!(out.contains("router         entropy 1.650   gate margin 0.250"), "{out}");
    assert!(out.contains("from tps_goodput.json"), "{out}");
    assert!(out.contains("verdict SHIP") && !out.contains("    - "), "no reasons for a SHIP: {out}");

    // The lab's files are untouched; its scorecard.json too: simctl's goes beside it.
    for (name, text) in &files {
        assert_eq!(&std::fs::read_to_string(dir.join(name)).unwrap(), text, "{name} unchanged");
    }
    let card = json(&dir.join("scorecard.simctl.json"));
    let near = |v: &serde_json::Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;
    // numpy.percentile(ttft, 95): 500 + 0.65 * (1200 - 500)
    assert!(near(&card["latency"]["ttft"]["p95"], 955.0), "{}", card["latency"]["ttft"]);
    assert!(near(&card["latency"]["decode"]["p95"], 1395.0), "{}", card["latency"]["decode"]);
    // sorted ttft 360 380 400 410 420 450 500 1200: p50 between 410 and 420
    assert_eq!(card["latency"]["ttft"]["p50"], 415.0);
    assert_eq!(card["latency"]["ttft_cold"]["p50"], 425.0, "cold requests: 400 and 450");
    assert_eq!(card["latency"]["slo_ms"]["ttft"], 1100.0);
    assert_eq!(card["moe"]["token_drop_rate"], 0.0);
    assert_eq!(card["moe"]["expert_imbalance_cv"], 0.2, "the worst window");
    assert_eq!(card["throughput"]["goodput"], 640.25);
    assert_eq!(card["quality"]["per_task"]["gsm8k-lite"], 1.0);
    assert_eq!(card["verdict"]["ship"], true);
    assert!(stderr(&o).contains("scorecard.simctl.json"), "{}", stderr(&o));

    // A second look overwrites simctl's own file only.
    let o = simctl(&["scorecard", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success());
    let cards: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(cards[0], card);
    assert_eq!(std::fs::read_to_string(dir.join("scorecard.json")).unwrap(), files[6].1);
}

fn variant(root: &Path, name: &str, ttft: f64, decode: f64, correct: bool) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let q = format!("{{\"task\": \"t\", \"prediction\": \"a\", \"expected\": \"a\", \"correct\": {correct}}}\n");
    std::fs::write(dir.join("quality.jsonl"), q.repeat(4)).unwrap();
    let l = format!("{{\"ttft_ms\": {ttft}, \"decode_ms\": {decode}, \"output_tokens\": 128, \"case\": \"cold\"}}\n");
    std::fs::write(dir.join("latency.jsonl"), l.repeat(5)).unwrap();
    std::fs::write(dir.join("moe_router.jsonl"), "{\"drops\": 1, \"total_tokens\": 1000}\n").unwrap();
    std::fs::write(dir.join("moe_traffic.jsonl"), "{\"expert_hist\": [10, 10, 10, 10]}\n").unwrap();
    dir
}

#[test]
fn baselines_give_deltas_headroom_and_check_exits() {
    let root = temp_dir("baseline");
    let base = variant(&root, "base", 1000.0, 2000.0, true);
    let edge = variant(&root, "edge", 1120.0, 2400.0, true);
    let bad = variant(&root, "bad", 900.0, 2000.0, false);
    let o = simctl(&["scorecard", base.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let base_card = base.join("scorecard.json");
    assert_eq!(json(&base_card)["generator"].as_str().map(|g| g.starts_with("simctl")), Some(true));

    let o = simctl(&["scorecard", edge.to_str().unwrap(), bad.to_str().unwrap(), "--baseline", base_card.to_str().unwrap(), "--check"]);
    assert_eq!(o.status.code(), Some(3), "bad is NO-SHIP: {}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("ttft p95 +120.0 ms (+12.0%, +10–15%: at the edge of the headroom)"), "{out}");
    assert!(out.contains("decode p95 +400.0 ms (+20.0%, past +15%: over the headroom)"), "{out}");
    assert!(out.contains("ttft p95 -100.0 ms (-10.0%, within +10%)"), "{out}");
    assert!(out.contains("accuracy -1.000"), "{out}");
    let edge_card = json(&edge.join("scorecard.json"));
    assert_eq!(edge_card["verdict"]["label"], "SHIP", "the headroom rule is shown, not gated");
    assert_eq!(edge_card["delta_vs_baseline"]["ttft_p95"], 120.0);
    assert_eq!(edge_card["delta_vs_baseline"]["drop_rate"], 0.0);
    assert_eq!(edge_card["headroom_vs_baseline"]["ttft_p95"]["status"], "watch");
    assert_eq!(edge_card["headroom_vs_baseline"]["decode_p95"]["status"], "over");
    assert_eq!(json(&bad.join("scorecard.json"))["verdict"]["reasons"][0], "accuracy 0.000 is below 0.600");

    // A run folder works as a baseline too, and without --check NO-SHIP still exits 0.
    let o = simctl(&["scorecard", edge.to_str().unwrap(), bad.to_str().unwrap(), "--baseline", base.to_str().unwrap(), "--no-write"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains(&format!("vs baseline {}", base.display())));
    let o = simctl(&["scorecard", edge.to_str().unwrap(), "--baseline", base.to_str().unwrap(), "--check"]);
    assert_eq!(o.status.code(), Some(0), "SHIP passes --check");
}

#[test]
fn a_simulated_run_can_be_scored_and_plotted() {
    let dir = temp_dir("sim-score");
    let o = simctl(&["run", "--set", "run.duration=5s", "--out", dir.to_str().unwrap(), "--no-plots"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["latency.jsonl", "tps_goodput.json", "sys_meta.json"] {
        assert!(stdout(&o).contains(f), "run lists {f}: {}", stdout(&o));
    }
    let summary = json(&dir.join("summary.json"));
    let rows = std::fs::read_to_string(dir.join("latency.jsonl")).unwrap();
    assert_eq!(rows.lines().count() as u64, summary["completed"].as_u64().unwrap(), "one row per finished request");
    let png = dir.join("score.png");
    let o = simctl(&["scorecard", dir.to_str().unwrap(), "--plot", png.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let card = json(&dir.join("scorecard.json"));
    let close = |a: &serde_json::Value, b: &serde_json::Value| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9;
    assert!(close(&card["latency"]["ttft"]["p95"], &summary["ttft_ms"]["p95"]), "the scorecard's TTFT p95 is the run's");
    assert!(close(&card["throughput"]["goodput"], &summary["goodput_tok_s"]));
    assert_eq!(card["latency"]["slo_ms"]["ttft"], 350.0, "the scenario's TTFT SLO");
    assert!(card["quality"]["avg_accuracy"].is_null() && card["moe"]["token_drop_rate"].is_null());
    assert_eq!(card["verdict"]["label"], "NO-SHIP");
    assert!(stdout(&o).contains("drop rate missing") && stdout(&o).contains("a simulation models no MoE router"), "{}", stdout(&o));
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    let svg = dir.join("score.svg");
    assert!(simctl(&["scorecard", dir.to_str().unwrap(), "--plot", svg.to_str().unwrap(), "--no-write"]).status.success());
    let text = std::fs::read_to_string(&svg).unwrap();
    for want in ["Quality accuracy", "TTFT p95", "Decode p95", "MoE drops and imbalance", "missing", "NO-SHIP"] {
        assert!(text.contains(want), "the figure shows {want}");
    }
}

#[test]
fn bad_folders_and_baselines_are_explained() {
    let root = temp_dir("scorecard-bad");
    let o = simctl(&["scorecard", root.join("nope").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope` is not a folder"), "{}", stderr(&o));

    let dir = root.join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("latency.jsonl"),
        "{\"ttft_ms\": 1, \"decode_ms\": 2, \"output_tokens\": 3, \"case\": \"cold\"}\n\n{\"ttft_ms\": 1}\n",
    )
    .unwrap();
    let o = simctl(&["scorecard", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("latency.jsonl` line 3: missing field `decode_ms`"), "{e}");
    assert!(!dir.join("scorecard.json").exists());

    std::fs::write(dir.join("latency.jsonl"), "").unwrap();
    let not_card = root.join("other.json");
    std::fs::write(&not_card, "{\"hello\": 1}").unwrap();
    let o = simctl(&["scorecard", dir.to_str().unwrap(), "--baseline", not_card.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a scorecard: it has no quality, latency, moe or throughput section"), "{}", stderr(&o));
}
