//! Tests that measure real time: each runs with no other test beside it (a test binary
//! runs its tests in parallel, but binaries run one after another).

#[path = "support.rs"]
#[allow(dead_code)]
mod support;

use simctl_live::fake::FakeEngine;
use support::*;

/// A guard against hangs, not a timing assertion.
const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(300);

fn simctl_guarded(args: &[&str]) -> std::process::Output {
    support::simctl_guarded(args, HANG_GUARD)
}

#[test]
fn the_fit_recovers_the_fake_engines_step_model_within_two_percent() {
    // The fake sleeps for its steps, so a loaded machine adds latency it does not model
    // (late wake-ups, a descheduled client): this test has a binary of its own, so no other
    // test runs beside it, and a second attempt, on a fresh engine, when the first misses.
    let mut misses = Vec::new();
    let (e, dir, out, so, p) = loop {
        let e = FakeEngine::start(batched(MAX_SEQS, BUDGET, 4096)).unwrap();
        let dir = temp_dir(&format!("calibrate-fake-{}", misses.len()));
        let out = dir.join("fake.yaml");
        // The full plan: its repeats average out the timing noise of a busy test machine.
        let o =
            simctl_guarded(&["calibrate", "--model", "fake-model", "--endpoint", &e.url(), "--out", out.to_str().unwrap(), "--seed", "7"]);
        let (so, se) = (stdout(&o), stderr(&o));
        assert!(o.status.success(), "{so}\n{se}");
        let p = profile(&out);
        let got = p.coefficients.as_array();
        let mut miss: Vec<String> = got
            .iter()
            .zip(TRUTH)
            .enumerate()
            .filter(|(_, (g, w))| (*g / w - 1.0).abs() >= 0.02)
            .map(|(k, (g, w))| format!("c{k}: fitted {g:e}, truth {w:e}"))
            .collect();
        match p.coefficients.c6_decode_cached_context_s {
            Some(c6) if (c6 / CACHED_TRUTH - 1.0).abs() < 0.02 => {}
            c6 => miss.push(format!("c6: fitted {c6:?}, truth {CACHED_TRUTH:e}")),
        }
        let fe = p.coefficients.frontend_s;
        if (fe / (FRONTEND_MS as f64 / 1e3) - 1.0).abs() >= 0.02 {
            miss.push(format!("frontend {fe}"));
        }
        // The limits are measured too: the sequence cap by saturation, the budget by how
        // the longest prompt is chunked beside decoding streams.
        if (p.engine.max_seqs, p.engine.max_batch_tokens) != (MAX_SEQS, BUDGET) {
            miss.push(format!("limits: measured {:?}, truth {:?}", (p.engine.max_seqs, p.engine.max_batch_tokens), (MAX_SEQS, BUDGET)));
        }
        if miss.is_empty() {
            break (e, dir, out, so, p);
        }
        misses.push(format!("{}\n{so}", miss.join("\n")));
        assert!(misses.len() < 2, "two attempts missed the truth by 2% or more:\n{}", misses.join("\n---\n"));
    };
    assert!(so.contains(&format!("max_num_batched_tokens {BUDGET} (measured)")), "{so}");
    assert_eq!((p.kv_capacity_blocks, p.engine.block_size), (65536, 16));
    // Fit quality per class, in the profile and on screen.
    let classes: Vec<&str> = p.fit.classes.iter().map(|c| c.class.as_str()).collect();
    assert_eq!(classes, ["prefill", "decode", "mixed", "prefix"]);
    assert!(p.fit.classes.iter().all(|c| c.mape_pct < 5.0), "{:?}", p.fit.classes);
    for line in [
        "fit quality per probe class",
        "self-check (held-out probes replayed in the simulator)",
        "plan: ",
        "prefill ",
        "decode ",
        "mixed ",
        "prefix ",
    ] {
        assert!(so.contains(line), "missing `{line}` in\n{so}");
    }
    assert!(!p.fit.self_check.is_empty());
    assert!(p.fit.self_check.iter().all(|s| s.error_pct.abs() < 10.0), "{:?}\n{so}", p.fit.self_check);
    assert!(p.samples.iter().any(|s| s.held_out) && p.samples.len() >= 20);
    let png = std::fs::read(dir.join("fake.residuals.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // Every request kept prompt plus output within the context, and prompts never repeat
    // except where a prefix probe wants a hit.
    let reqs = e.requests();
    assert!(reqs.iter().all(|r| r["prompt"].as_array().unwrap().len() as u64 + r["max_tokens"].as_u64().unwrap() <= 4096));
    assert!(reqs.iter().all(|r| r["ignore_eos"] == true && r["stream"] == true));
    let firsts: Vec<&[serde_json::Value]> = reqs.iter().map(|r| &r["prompt"].as_array().unwrap()[..16]).collect();
    let mut distinct = firsts.clone();
    distinct.sort_by_key(|v| serde_json::to_string(v).unwrap());
    distinct.dedup();
    let prefix_runs = p.samples.iter().filter(|s| s.class == simctl_engine::profile::ProbeClass::Prefix).count();
    // Each shared-prefix decode run sends its prefix once alone and once per stream.
    let shared: usize = p.samples.iter().filter(|s| s.decode_cached_tokens > 0).map(|s| s.decode_seqs as usize).sum();
    assert!(shared > 0, "no shared-prefix decode sample");
    let repeats = firsts.len() - distinct.len();
    assert!(repeats >= prefix_runs + shared && repeats <= 3 * prefix_runs + 2 * shared, "{repeats} repeats");
    // The profile records the machine's state while it was measured.
    let c = p.conditions.as_ref().expect("conditions recorded");
    assert!(c.load_average_before.is_some() && c.load_average_after.is_some() && c.cpus_online >= Some(1), "{c:?}");
    // And it fits the engine it was measured on: `calibrate --check` says so, exit 0.
    let o = simctl_guarded(&["calibrate", "--check", out.to_str().unwrap(), "--endpoint", &e.url(), "--json"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["fits"], true, "{v}");
    assert!(v["mean_abs_error_pct"].as_f64() < Some(10.0), "{v}");
    assert!(v["probes"].as_array().unwrap().len() >= 4, "{v}");
}
