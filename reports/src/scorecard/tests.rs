use super::*;

fn quality(correct: usize, of: usize) -> Vec<QualityRow> {
    (0..of)
        .map(|i| QualityRow {
            task: if i % 2 == 0 { "a".into() } else { "b".into() },
            prompt: None,
            prediction: String::new(),
            expected: "x".into(),
            correct: i < correct,
        })
        .collect()
}

fn latency(ttft_ms: f64, decode_ms: f64, n: usize) -> Vec<LatencyRow> {
    (0..n)
        .map(|i| LatencyRow {
            request_id: None,
            ttft_ms,
            decode_ms,
            prompt_tokens: None,
            output_tokens: DECODE_LENGTHS[i % 3],
            case: if i % 2 == 0 { "cold".into() } else { "warm".into() },
        })
        .collect()
}

/// A folder exactly at every limit.
fn at_limits() -> RunFolder {
    RunFolder {
        quality: Some(quality(3, 5)),
        latency: Some(latency(DEFAULT_TTFT_SLO_MS, DEFAULT_LATENCY_SLO_MS, 6)),
        moe_router: Some(vec![RouterRow { entropy: Some(1.0), margin: Some(0.2), drops: 5.0, total_tokens: Some(1000.0) }]),
        moe_traffic: Some(vec![TrafficRow { expert_hist: vec![1.0, 1.0], imbalance_cv: Some(MAX_IMBALANCE_CV) }]),
        ..RunFolder::default()
    }
}

fn verdict(f: &RunFolder) -> Verdict {
    Scorecard::build(f, None).unwrap().verdict
}

fn failing(f: &RunFolder) -> Vec<&'static str> {
    verdict(f).checks.iter().filter(|c| c.status != Status::Pass).map(|c| c.name).collect()
}

#[test]
fn every_limit_is_inclusive_and_one_step_past_it_fails() {
    let v = verdict(&at_limits());
    assert!(v.ship, "{:?}", v.reasons);
    assert_eq!((v.label, v.reasons.len()), ("SHIP", 0));

    let mut f = at_limits();
    f.quality = Some(quality(599, 1000));
    assert_eq!(failing(&f), ["accuracy"]);
    assert_eq!(verdict(&f).reasons, ["accuracy 0.599 is below 0.600"]);

    let mut f = at_limits();
    f.latency = Some(latency(DEFAULT_TTFT_SLO_MS + 0.01, DEFAULT_LATENCY_SLO_MS, 6));
    assert_eq!(failing(&f), ["ttft_p95_ms"]);
    assert_eq!(verdict(&f).reasons, ["ttft p95 1300.01 ms is above 1300.0 ms (default; sys_meta.json has no ttft_slo_ms)"]);

    let mut f = at_limits();
    f.latency = Some(latency(DEFAULT_TTFT_SLO_MS, DEFAULT_LATENCY_SLO_MS + 0.01, 6));
    assert_eq!(failing(&f), ["decode_p95_ms"]);

    let mut f = at_limits();
    f.moe_router = Some(vec![RouterRow { entropy: None, margin: None, drops: 5.01, total_tokens: Some(1000.0) }]);
    assert_eq!(failing(&f), ["drop_rate"]);
    assert_eq!(verdict(&f).reasons, ["drop rate 0.501% is above 0.500%"]);

    let mut f = at_limits();
    f.moe_traffic = Some(vec![TrafficRow { expert_hist: vec![], imbalance_cv: Some(0.2501) }]);
    assert_eq!(failing(&f), ["imbalance_cv"]);
}

#[test]
fn slos_come_from_sys_meta_when_given() {
    let mut f = at_limits();
    f.latency = Some(latency(1000.0, 2000.0, 6));
    let meta = serde_json::json!({"ttft_slo_ms": 1000, "latency_slo_ms": 2000});
    f.sys_meta = meta.as_object().cloned();
    let card = Scorecard::build(&f, None).unwrap();
    assert!(card.verdict.ship, "{:?}", card.verdict.reasons);
    assert_eq!((card.latency.slo_ms.ttft, card.latency.slo_ms.latency), (1000.0, 2000.0));
    f.latency = Some(latency(1000.5, 2000.0, 6));
    assert_eq!(verdict(&f).reasons, ["ttft p95 1000.5 ms is above 1000.0 ms (ttft_slo_ms from sys_meta.json)"]);
    f.sys_meta = serde_json::json!({"ttft_slo_ms": "fast"}).as_object().cloned();
    let e = Scorecard::build(&f, None).unwrap_err().to_string();
    assert!(e.contains("sys_meta.json") && e.contains("`ttft_slo_ms` is \"fast\", not a number"), "{e}");
}

#[test]
fn missing_files_are_missing_checks_never_zeros() {
    let f = RunFolder { dir: "runs/sim".into(), latency: Some(latency(100.0, 200.0, 3)), ..RunFolder::default() };
    let card = Scorecard::build(&f, None).unwrap();
    assert_eq!(failing(&f), ["accuracy", "drop_rate", "imbalance_cv"]);
    assert!(
        card.verdict.checks.iter().filter(|c| c.name != "ttft_p95_ms" && c.name != "decode_p95_ms").all(|c| c.status == Status::Missing)
    );
    assert_eq!((card.quality.avg_accuracy, card.moe.token_drop_rate, card.moe.expert_imbalance_cv), (None, None, None));
    assert_eq!((card.moe.router_entropy, card.moe.gate_margin), (None, None));
    let r = &card.verdict.reasons;
    assert!(r[0].starts_with("accuracy missing: no runs/sim/quality.jsonl"), "{r:?}");
    assert!(r[1].starts_with("drop rate missing: no runs/sim/moe_router.jsonl (vLLM publishes no MoE router data"), "{r:?}");
    assert!(r[2].starts_with("imbalance cv missing: no runs/sim/moe_traffic.jsonl"), "{r:?}");
    let json = serde_json::to_value(&card).unwrap();
    assert!(json["moe"]["token_drop_rate"].is_null() && json["quality"]["avg_accuracy"].is_null());
    assert_eq!(json["verdict"]["label"], "NO-SHIP");
    // Present but empty is missing too, with its own reason.
    let f = RunFolder { dir: "d".into(), quality: Some(vec![]), ..RunFolder::default() };
    assert!(verdict(&f).reasons[0].starts_with("accuracy missing: d/quality.jsonl has no rows"));
    // Goodput from latency rows is not scaled by an unknown drop rate.
    assert_eq!(card.throughput.figures.drop_rate, None);
    assert_eq!(card.throughput.source, "latency.jsonl");
}

#[test]
fn drop_rate_is_per_token_with_totals_and_per_window_without() {
    let f = RunFolder::default();
    let row = |drops: f64, total: Option<f64>| RouterRow { entropy: None, margin: None, drops, total_tokens: total };
    assert_eq!(drop_rate(&f, &[row(1.0, Some(100.0)), row(3.0, Some(300.0))]).unwrap(), Some(0.01));
    assert_eq!(drop_rate(&f, &[row(1.0, None), row(0.0, None), row(0.0, None), row(0.0, None)]).unwrap(), Some(0.25));
    assert_eq!(drop_rate(&f, &[]).unwrap(), None);
    assert_eq!(drop_rate(&f, &[row(0.0, Some(0.0))]).unwrap(), None, "no tokens routed: no rate");
    let e = drop_rate(&f, &[row(1.0, Some(10.0)), row(1.0, None)]).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("give it on every row or on none"), "{e}");
}

#[test]
fn imbalance_is_the_worst_window_and_computed_when_absent() {
    assert_eq!(imbalance_cv(&[2.0, 2.0, 2.0]), Some(0.0));
    // mean 2, population std 1
    assert_eq!(imbalance_cv(&[1.0, 3.0]), Some(0.5));
    assert_eq!((imbalance_cv(&[]), imbalance_cv(&[0.0, 0.0])), (None, None));
    let f = RunFolder {
        moe_traffic: Some(vec![
            TrafficRow { expert_hist: vec![1.0, 3.0], imbalance_cv: None },
            TrafficRow { expert_hist: vec![9.0, 9.0], imbalance_cv: Some(0.1) },
        ]),
        ..RunFolder::default()
    };
    assert_eq!(Scorecard::build(&f, None).unwrap().moe.expert_imbalance_cv, Some(0.5));
}

#[test]
fn goodput_counts_tokens_within_both_slos_scaled_by_drops() {
    let slos = Slos { ttft: 100.0, latency: 1000.0, ttft_from_meta: true, latency_from_meta: true };
    let mut rows = latency(50.0, 950.0, 2); // 128 + 512 tokens, both good
    rows.push(LatencyRow { ttft_ms: 150.0, ..rows[0].clone() }); // 128 tokens, too slow to start
    let t = throughput_from_latency(&rows, Some(2.0), slos, Some(0.02));
    assert_eq!(t.throughput_tps, Some((128.0 + 512.0 + 128.0) / 2.0));
    assert_eq!(t.goodput, Some((128.0 + 512.0) / 2.0 * (1.0 - 5.0 * 0.02)));
    assert_eq!(t.slo_hit_rate, Some(2.0 / 3.0));
    // Without a window, the requests' own latencies (sent one at a time) make it.
    let t = throughput_from_latency(&rows, None, slos, None);
    assert_eq!(t.throughput_tps, Some(768.0 / 3.1));
    assert_eq!(throughput_from_latency(&rows, None, slos, Some(0.3)).goodput, Some(0.0), "max(0, ...)");
    assert_eq!(throughput_from_latency(&[], None, slos, None).throughput_tps, None);
}

#[test]
fn latency_splits_warm_cold_and_decode_lengths() {
    let mut rows = latency(100.0, 1000.0, 6);
    rows[0].ttft_ms = 300.0; // a cold one
    rows[0].decode_ms = 2000.0; // a 128-token one
    rows.push(LatencyRow { output_tokens: 77, ..rows[1].clone() });
    let f = RunFolder { latency: Some(rows), ..RunFolder::default() };
    let l = Scorecard::build(&f, None).unwrap().latency;
    assert_eq!(l.ttft_warm.unwrap().p95, 100.0);
    // cold: [300, 100, 100] -> p50 100, p95 = 100 + 0.9 * 200
    assert_eq!(l.ttft_cold.unwrap(), P50P95 { p50: 100.0, p95: 280.0 });
    assert_eq!(l.decode_by_tokens["128"].unwrap().p50, 1500.0);
    assert_eq!(l.decode_by_tokens["512"].unwrap().p95, 1000.0);
    assert_eq!(l.requests, 7, "lengths outside the three still count overall");
}

#[test]
fn baselines_give_deltas_and_the_headroom_rule() {
    let base = Baseline {
        reference: "base/scorecard.json".into(),
        avg_accuracy: Some(0.5),
        ttft_p95: Some(1000.0),
        decode_p95: Some(4000.0),
        drop_rate: None,
        imbalance_cv: Some(0.2),
        goodput: Some(10.0),
    };
    let mut f = at_limits();
    f.latency = Some(latency(1100.0, 4400.0, 6));
    let card = Scorecard::build(&f, Some(&base)).unwrap();
    let c = card.comparison.as_ref().unwrap();
    assert!((c.delta_vs_baseline.avg_accuracy.unwrap() - 0.1).abs() < 1e-12);
    assert_eq!((c.delta_vs_baseline.ttft_p95, c.delta_vs_baseline.decode_p95), (Some(100.0), Some(400.0)));
    assert_eq!(c.delta_vs_baseline.drop_rate, None, "the baseline has no drop rate");
    assert!((c.delta_vs_baseline.expert_imbalance_cv.unwrap() - 0.05).abs() < 1e-12);
    // Exactly +10% is within; the verdict is not changed by the headroom rule.
    assert_eq!(
        (c.headroom_vs_baseline.ttft_p95.status, c.headroom_vs_baseline.decode_p95.status),
        (HeadroomStatus::Within, HeadroomStatus::Within)
    );
    assert!(card.verdict.ship);
    let json = serde_json::to_value(&card).unwrap();
    assert_eq!(json["baseline_ref"], "base/scorecard.json");
    assert_eq!(json["delta_vs_baseline"]["ttft_p95"], 100.0);
    assert_eq!(json["headroom_vs_baseline"]["ttft_p95"]["status"], "within");

    assert_eq!(HeadroomCheck::new(Some(1000.0), Some(1100.01)).status, HeadroomStatus::Watch);
    assert_eq!(HeadroomCheck::new(Some(1000.0), Some(1150.0)).status, HeadroomStatus::Watch);
    assert_eq!(HeadroomCheck::new(Some(1000.0), Some(1150.01)).status, HeadroomStatus::Over);
    assert_eq!(HeadroomCheck::new(Some(1000.0), Some(800.0)).status, HeadroomStatus::Within);
    assert_eq!(HeadroomCheck::new(None, Some(800.0)).status, HeadroomStatus::Missing);
    assert_eq!(HeadroomCheck::new(Some(0.0), Some(800.0)).status, HeadroomStatus::Missing);
}

#[test]
fn a_lab_scorecard_json_is_a_baseline() {
    let lab = serde_json::json!({
        "quality": {"avg_accuracy": 0.74, "per_task": {}},
        "latency": {"ttft": {"p50": 300.0, "p95": 420.0}, "decode": {"p50": 700.0, "p95": 1200.0}},
        "moe": {"token_drop_rate": 0.001, "expert_imbalance_cv": 0.12},
        "throughput": {"throughput_tps": 100.0, "goodput": 80.0}
    });
    let b = Baseline::from_json(&lab, "lab").unwrap();
    assert_eq!(
        (b.avg_accuracy, b.ttft_p95, b.decode_p95, b.drop_rate, b.imbalance_cv, b.goodput),
        (Some(0.74), Some(420.0), Some(1200.0), Some(0.001), Some(0.12), Some(80.0))
    );
    assert_eq!(Baseline::from_json(&serde_json::json!({"hello": 1}), "x"), None);
    // A simctl scorecard is read back the same way.
    let card = Scorecard::build(&at_limits(), None).unwrap();
    let again = Baseline::from_json(&serde_json::to_value(&card).unwrap(), "again").unwrap();
    assert_eq!(again, Baseline::of(&card, "again"));
}

#[test]
fn text_and_chart_show_missing_as_missing() {
    let f = RunFolder { dir: "runs/sim".into(), latency: Some(latency(100.0, 200.0, 3)), ..RunFolder::default() };
    let card = Scorecard::build(&f, None).unwrap();
    let s = render_summary(std::slice::from_ref(&card));
    assert!(s.lines().nth(1).unwrap().starts_with("sim ") && s.contains("missing") && s.contains("NO-SHIP"), "{s}");
    let t = render_card(&card);
    assert!(t.contains("drop rate") && t.contains("verdict NO-SHIP") && t.contains("- accuracy missing"), "{t}");
    let dir = std::env::temp_dir().join(format!("simctl-scorecard-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Scorecard::build(&at_limits(), None).unwrap();
    let svg = scorecard_chart(&dir.join("score.svg"), &[card.clone(), ok]).unwrap();
    let text = std::fs::read_to_string(svg).unwrap();
    for want in ["Quality accuracy", "TTFT p95", "Decode p95", "MoE drops and imbalance", "missing", "sim NO-SHIP", "SHIP"] {
        assert!(text.contains(want), "the chart shows {want}");
    }
    let png = scorecard_chart(&dir.join("score.png"), &[card]).unwrap();
    assert_eq!(&std::fs::read(png).unwrap()[1..4], b"PNG");
    std::fs::remove_dir_all(&dir).unwrap();
}
