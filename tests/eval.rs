//! `simctl eval` against the in-process fake engine: the folder it writes, what it asks the
//! engine, MoE metrics from --metrics-dir, and clear errors when the engine fails.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use simctl_live::eval::quality::builtin_items;
use simctl_live::fake::{FakeEngine, FakeSpec, Fault};

use crate::{stderr, stdout, temp_dir};

/// A guard against hangs, not a timing assertion: a simctl that never returns fails the
/// test instead of blocking the suite.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn simctl_guarded(args: &[&str]) -> Output {
    crate::simctl_guarded(args, HANG_GUARD)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A fake that answers the mmlu-mini and domain-slice questions right and the rest wrong:
/// accuracy exactly 0.5.
fn half_right() -> FakeSpec {
    let answers: HashMap<String, String> = builtin_items()
        .into_iter()
        .filter(|i| i.task == "mmlu-mini" || i.task == "domain-slice")
        .map(|i| (i.question, i.expected))
        .collect();
    FakeSpec {
        answer: Arc::new(move |prompt| {
            // The question is the prompt's last `Question:` line.
            let q = prompt.rsplit("Question: ").next()?.lines().next()?;
            Some(answers.get(q).map_or_else(|| "I do not know\n".to_string(), |a| format!(" {a}\nQuestion: next")))
        }),
        ..FakeSpec::default()
    }
}

fn eval(engine: &FakeEngine, out: &Path, extra: &[&str]) -> Output {
    let url = engine.url();
    let mut args = vec!["eval", "--endpoint", &url, "--repeats", "1", "--seed", "7", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    simctl_guarded(&args)
}

#[test]
fn eval_writes_the_lab_folder_from_a_fake_engine() {
    let engine = FakeEngine::start(half_right()).unwrap();
    let dir = temp_dir("eval-fake");
    let o = eval(&engine, &dir, &["--allow-missing-metrics"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("fake-model on http://127.0.0.1:") && out.contains("verdict NO-SHIP"), "{out}");

    // Quality: 40 questions, the programmed half right, rows in the lab's layout.
    let q = jsonl(&dir.join("quality.jsonl"));
    assert_eq!(q.len(), 40);
    assert_eq!(q.iter().filter(|r| r["correct"] == true).count(), 20);
    let right = q.iter().find(|r| r["task"] == "mmlu-mini").unwrap();
    assert_eq!(
        (right["prediction"].as_str(), right["expected"].as_str(), right["correct"].as_bool()),
        (Some("au"), Some("au"), Some(true))
    );
    assert!(q.iter().filter(|r| r["task"] == "gsm8k-lite").all(|r| r["prediction"] == "I do not know" && r["correct"] == false));

    // Latency: a cold and a warm request per decode length, exact output lengths.
    let l = jsonl(&dir.join("latency.jsonl"));
    let shape: Vec<(String, u64)> =
        l.iter().map(|r| (r["case"].as_str().unwrap().to_string(), r["output_tokens"].as_u64().unwrap())).collect();
    let want: Vec<(String, u64)> = [128, 512, 2048].iter().flat_map(|&n| [("cold".to_string(), n), ("warm".to_string(), n)]).collect();
    assert_eq!(shape, want);
    assert!(
        l.iter().all(|r| r["ttft_ms"].as_f64().unwrap() >= 0.0 && r["decode_ms"].as_f64().unwrap() >= 0.0 && r["prompt_tokens"] == 512)
    );

    // What the engine was asked: text questions at temperature 0, then one priming request
    // and six timed token-id requests with ignore_eos; warm prompts share their prefix.
    let reqs = engine.requests();
    assert_eq!(reqs.len(), 40 + 1 + 6);
    assert!(reqs[..40].iter().all(|r| r["prompt"].is_string() && r["temperature"] == 0.0 && r["stream"] == false));
    let timed = &reqs[41..];
    assert!(
        timed.iter().all(|r| r["stream"] == true && r["ignore_eos"] == true && r["return_token_ids"] == true && r["temperature"] == 0.0)
    );
    let prompts: Vec<&Vec<serde_json::Value>> = timed.iter().map(|r| r["prompt"].as_array().unwrap()).collect();
    let prime = reqs[40]["prompt"].as_array().unwrap();
    assert_eq!(prompts[1][..496], prime[..496], "the warm request reuses the primed prefix");
    assert_ne!(prompts[0][..16], prime[..16], "the cold request starts anew");
    assert_eq!(timed.iter().map(|r| r["max_tokens"].as_u64().unwrap()).collect::<Vec<_>>(), [128, 128, 512, 512, 2048, 2048]);

    // No MoE metrics: none written, none invented.
    assert!(!dir.join("moe_router.jsonl").exists() && !dir.join("moe_traffic.jsonl").exists());
    let meta = json(&dir.join("sys_meta.json"));
    assert_eq!((meta["model"].as_str(), meta["max_model_len"].as_u64()), (Some("fake-model"), Some(4096)));
    assert_eq!(
        (meta["ttft_slo_ms"].as_f64(), meta["latency_slo_ms"].as_f64(), meta["seed"].as_u64()),
        (Some(1300.0), Some(4500.0), Some(7))
    );
    assert_eq!((meta["block_size"].as_u64(), meta["token_counting"].as_str()), (Some(16), Some("token_ids")));
    assert!(meta["prefix_hit_rate"].as_f64().unwrap() > 0.0, "warm requests hit the fake's prefix cache");
    let tps = json(&dir.join("tps_goodput.json"));
    assert!(tps["throughput_tps"].as_f64().unwrap() > 0.0);
    assert!(tps["drop_rate"].is_null(), "the drop rate is unknown, not zero");
    assert_eq!(tps["slo_hit_rate"], 1.0, "a fake without delays meets every SLO");

    let card = json(&dir.join("scorecard.json"));
    assert_eq!(card["quality"]["avg_accuracy"], 0.5);
    assert_eq!(card["quality"]["per_task"]["domain-slice"], 1.0);
    assert_eq!(card["quality"]["per_task"]["gsm8k-lite"], 0.0);
    assert!(card["moe"]["token_drop_rate"].is_null() && card["moe"]["expert_imbalance_cv"].is_null());
    assert_eq!(card["verdict"]["label"], "NO-SHIP");
    let reasons: Vec<&str> = card["verdict"]["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].starts_with("accuracy 0.500 is below 0.600"), "{reasons:?}");
    assert!(reasons[1].starts_with("drop rate missing") && reasons[2].starts_with("imbalance cv missing"), "{reasons:?}");

    // scorecard reads back what eval wrote and agrees with it.
    let o = simctl_guarded(&["scorecard", dir.to_str().unwrap(), "--json", "--no-write"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(again[0], card);
}

#[test]
fn eval_cuts_decode_lengths_to_the_engine_context() {
    let engine = FakeEngine::start(FakeSpec { max_model_len: 1024, ..FakeSpec::default() }).unwrap();
    let dir = temp_dir("eval-clamp");
    let o = eval(&engine, &dir, &["--allow-missing-metrics"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("note: prompts cut from 512 to 256 tokens: the engine's max_model_len is 1024"), "{}", stderr(&o));
    assert!(stderr(&o).contains("note: decode 2048 cut to 768 tokens"), "{}", stderr(&o));
    for r in engine.requests().iter().filter(|r| r["prompt"].is_array()) {
        let len = r["prompt"].as_array().unwrap().len() as u64;
        assert!(len + r["max_tokens"].as_u64().unwrap() <= 1024, "{len} + {} fits", r["max_tokens"]);
    }
    let card = json(&dir.join("scorecard.json"));
    assert!(card["latency"]["decode_by_tokens"]["2048"].is_null(), "no 2048-token outputs: missing, not invented");
    assert!(card["latency"]["decode_by_tokens"]["512"].is_object());
    assert_eq!(json(&dir.join("sys_meta.json"))["notes"].as_array().unwrap().len(), 2);
}

#[test]
fn eval_needs_moe_metrics_or_says_how_to_go_without() {
    let engine = FakeEngine::start(FakeSpec::default()).unwrap();
    let dir = temp_dir("eval-nomoe");
    let o = eval(&engine, &dir.join("out"), &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("no MoE metrics: vLLM publishes no router or expert-traffic data"), "{e}");
    assert!(e.contains("--metrics-dir DIR") && e.contains("--allow-missing-metrics"), "{e}");
    assert!(engine.requests().is_empty(), "it stops before sending anything");
    assert!(!dir.join("out").exists());

    let metrics = dir.join("metrics");
    std::fs::create_dir_all(&metrics).unwrap();
    std::fs::write(metrics.join("moe_router.jsonl"), "{\"entropy\": 1.2, \"margin\": 0.3, \"drops\": 0}\n").unwrap();
    let o = eval(&engine, &dir.join("out"), &["--metrics-dir", metrics.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has no rows in moe_traffic.jsonl"), "{}", stderr(&o));

    std::fs::write(metrics.join("moe_router.jsonl"), "{\"drops\": 1, \"total_tokens\": 10}\n{\"drops\": 0}\n").unwrap();
    std::fs::write(metrics.join("moe_traffic.jsonl"), "{\"expert_hist\": [1, 1]}\n").unwrap();
    let o = eval(&engine, &dir.join("out"), &["--metrics-dir", metrics.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("moe_router.jsonl` line 2: `total_tokens` is on some rows but not this one"), "{}", stderr(&o));
    assert!(engine.requests().is_empty());
}

#[test]
fn eval_copies_moe_metrics_and_scales_goodput_by_drops() {
    let engine = FakeEngine::start(FakeSpec::default()).unwrap();
    let dir = temp_dir("eval-moe");
    let metrics = dir.join("metrics");
    std::fs::create_dir_all(&metrics).unwrap();
    let router = "{\"step\": 63, \"entropy\": 1.5, \"margin\": 0.2, \"drops\": 2, \"total_tokens\": 100}\n{\"step\": 127, \"entropy\": 1.7, \"margin\": 0.4, \"drops\": 0, \"total_tokens\": 300}\n";
    let traffic = "{\"window\": 0, \"expert_hist\": [10, 30]}\n{\"window\": 1, \"expert_hist\": [20, 20], \"imbalance_cv\": 0.0}\n";
    std::fs::write(metrics.join("moe_router.jsonl"), router).unwrap();
    std::fs::write(metrics.join("moe_traffic.jsonl"), traffic).unwrap();
    let out = dir.join("run");
    let o = eval(&engine, &out, &["--metrics-dir", metrics.to_str().unwrap(), "--mode", "moe"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(out.join("moe_router.jsonl")).unwrap(), router, "copied unchanged");
    assert_eq!(std::fs::read_to_string(out.join("moe_traffic.jsonl")).unwrap(), traffic);
    let card = json(&out.join("scorecard.json"));
    assert_eq!(card["moe"]["token_drop_rate"], 0.005, "2 of 400 tokens");
    assert_eq!(card["moe"]["expert_imbalance_cv"], 0.5, "the worst window, computed from its histogram");
    assert_eq!((card["moe"]["router_entropy"].as_f64(), card["moe"]["gate_margin"].as_f64()), (Some(1.6), Some(0.30000000000000004)));
    let tps = json(&out.join("tps_goodput.json"));
    assert_eq!(tps["drop_rate"], 0.005);
    let (t, g) = (tps["throughput_tps"].as_f64().unwrap(), tps["goodput"].as_f64().unwrap());
    assert!((g - t * (1.0 - 5.0 * 0.005)).abs() < 1e-9 * t, "every request is good, so goodput is throughput x 0.975: {g} vs {t}");
    let checks = card["verdict"]["checks"].as_array().unwrap();
    let status = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap()["status"].as_str().unwrap().to_string();
    assert_eq!((status("drop_rate"), status("imbalance_cv")), ("pass".into(), "fail".into()));
    assert_eq!(json(&out.join("sys_meta.json"))["mode"], "moe");
}

#[test]
fn eval_against_a_baseline_records_deltas() {
    let engine = FakeEngine::start(half_right()).unwrap();
    let dir = temp_dir("eval-base");
    let base = dir.join("base.json");
    std::fs::write(
        &base,
        r#"{"quality": {"avg_accuracy": 0.75}, "latency": {"ttft": {"p50": 1, "p95": 2}, "decode": {"p50": 1, "p95": 2}}}"#,
    )
    .unwrap();
    let o = eval(&engine, &dir.join("run"), &["--allow-missing-metrics", "--baseline", base.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let card = json(&dir.join("run/scorecard.json"));
    assert_eq!(card["baseline_ref"], base.display().to_string());
    assert_eq!(card["delta_vs_baseline"]["avg_accuracy"], -0.25);
    assert!(card["delta_vs_baseline"]["drop_rate"].is_null());
    assert!(stdout(&o).contains("vs baseline") && stdout(&o).contains("accuracy -0.250"), "{}", stdout(&o));
}

#[test]
fn engine_failures_are_clear_errors_not_hangs() {
    // HTTP 500 on every request: the first question fails, nothing is written.
    let engine = FakeEngine::start(FakeSpec::default()).unwrap();
    engine.inject(Fault::Status { code: 500, body: "engine core died".into() }, None);
    let dir = temp_dir("eval-fail");
    let o = eval(&engine, &dir.join("500"), &["--allow-missing-metrics"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("error: quality question 1 of 40 (mmlu-mini): http://127.0.0.1:"), "{e}");
    assert!(e.contains("/v1/completions answered http 500: engine core died"), "{e}");
    assert_eq!(e.matches("engine core died").count(), 1, "said once: {e}");
    assert!(!dir.join("500").exists(), "no half-written folder");

    // An answer that never comes: a plain request sends nothing until done, so --timeout
    // bounds it as a whole.
    engine.clear_faults();
    engine.inject(Fault::StallAfter { tokens: 0 }, None);
    let o = eval(&engine, &dir.join("stall"), &["--allow-missing-metrics", "--timeout", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error: quality question 1 of 40 (mmlu-mini): http://127.0.0.1:"), "{}", stderr(&o));
    assert!(stderr(&o).contains("/v1/completions did not answer within 1s"), "{}", stderr(&o));

    // A stream that stalls after two tokens, once the 40 questions are answered.
    engine.clear_faults();
    engine.inject(Fault::Healthy, Some(40));
    engine.inject(Fault::StallAfter { tokens: 2 }, None);
    let o = eval(&engine, &dir.join("stall"), &["--allow-missing-metrics", "--timeout", "1"]);
    assert_eq!(o.status.code(), Some(1));
    // (The priming request asks for one token only, so the first timed request stalls.)
    assert!(stderr(&o).contains("error: latency request cold-128-0 (1 of 6): the stream from http://127.0.0.1:"), "{}", stderr(&o));
    assert!(stderr(&o).contains("stalled: nothing received for 1s after 2 output tokens"), "{}", stderr(&o));

    // A connection dropped midway through a timed stream.
    engine.clear_faults();
    engine.inject(Fault::Healthy, Some(41));
    engine.inject(Fault::DropAfter { tokens: 5 }, None);
    let o = eval(&engine, &dir.join("drop"), &["--allow-missing-metrics"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error: latency request cold-128-0 (1 of 6): the stream from"), "{}", stderr(&o));
    assert!(stderr(&o).contains("broke off after 5 output tokens, before `[DONE]`"), "{}", stderr(&o));

    // Nobody listening.
    let port = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let o = simctl_guarded(&["eval", "--endpoint", &url, "--allow-missing-metrics", "--out", dir.join("none").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("error: health check: cannot connect to {url}/health")), "{}", stderr(&o));
    assert!(stderr(&o).contains("is the engine running"), "{}", stderr(&o));

    // A model the engine does not serve.
    engine.clear_faults();
    let o = eval(&engine, &dir.join("model"), &["--allow-missing-metrics", "--model", "llama-9000"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not serve `llama-9000`; it serves: fake-model"), "{}", stderr(&o));
}

#[test]
fn own_quality_files_are_checked_and_used() {
    let engine = FakeEngine::start(FakeSpec { answer: Arc::new(|_| Some("blue\n".into())), ..FakeSpec::default() }).unwrap();
    let dir = temp_dir("eval-own");
    let mine = dir.join("colours.jsonl");
    std::fs::write(
        &mine,
        "{\"question\": \"Sky colour?\", \"expected\": \"Blue\"}\n{\"question\": \"Grass colour?\", \"expected\": \"green\"}\n",
    )
    .unwrap();
    let o = eval(&engine, &dir.join("run"), &["--allow-missing-metrics", "--no-builtin-quality", "--quality", mine.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let q = jsonl(&dir.join("run/quality.jsonl"));
    assert_eq!(
        q.iter().map(|r| (r["task"].as_str().unwrap(), r["correct"].as_bool().unwrap())).collect::<Vec<_>>(),
        [("colours", true), ("colours", false)]
    );

    std::fs::write(&mine, "{\"question\": \"Sky colour?\", \"answer\": \"blue\"}\n").unwrap();
    let o = eval(&engine, &dir.join("bad"), &["--allow-missing-metrics", "--quality", mine.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("colours.jsonl line 1: unknown field `answer`"), "{}", stderr(&o));
}
