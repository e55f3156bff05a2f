//! `simctl live` against in-process fake engines: binding, schedule, records, routing from
//! scraped gauges, failures, Ctrl-C and the dual-pool mode.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use simctl_live::fake::{FakeEngine, FakeSpec, Step};

use crate::{repo_root, stderr, stdout, temp_dir};

/// A guard against hangs, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn simctl_guarded(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_simctl"))
        .args(args)
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("simctl starts");
    let start = Instant::now();
    while child.try_wait().expect("simctl can be waited on").is_none() {
        if start.elapsed() > HANG_GUARD {
            let _ = child.kill();
            panic!("simctl {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("simctl output")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// A fake whose prefill costs `per_token` per uncached prompt token and whose decode steps
/// cost `decode`.
fn engine(per_token: Duration, decode: Duration) -> FakeEngine {
    FakeEngine::start(FakeSpec {
        step_cost: Arc::new(move |s| match s {
            Step::Prefill { prompt_tokens, cached_tokens } => per_token * (prompt_tokens - cached_tokens),
            Step::Decode { .. } => decode,
        }),
        ..FakeSpec::default()
    })
    .unwrap()
}

fn rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.last(), Some(&"error"));
    lines.map(|l| l.split(',').map(str::to_string).collect()).collect()
}

#[test]
fn live_sends_the_scenarios_requests_and_records_them_like_run() {
    let (a, b) = (engine(Duration::from_micros(20), Duration::from_millis(1)), engine(Duration::from_micros(20), Duration::from_millis(1)));
    let dir = temp_dir("live-basic");
    let out = dir.join("live");
    let o = simctl_guarded(&[
        "live",
        "--endpoint",
        &a.url(),
        "--endpoint",
        &b.url(),
        "--set",
        "requests=24",
        "--set",
        "arrival_rate=40/s",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let s = json(&out.join("summary.json"));
    assert_eq!(s["requests"], 24);
    assert_eq!(s["completed"], 24);
    assert_eq!(s["failed"], 0);
    assert_eq!(s["live"]["mode"], "aggregated");
    assert_eq!(s["live"]["model"], "fake-model");
    assert!(s["ttft_ms"]["p50"].as_f64().unwrap() > 0.0);
    let r = rows(&out.join("requests.csv"));
    assert_eq!(r.len(), 24);
    // Every engine got requests, with token-id prompts of the scheduled lengths.
    let sent: Vec<serde_json::Value> = a.requests().into_iter().chain(b.requests()).collect();
    assert_eq!(sent.len(), 24);
    assert!(!a.requests().is_empty() && !b.requests().is_empty());
    let mut lens: Vec<u64> = sent.iter().map(|q| q["prompt"].as_array().unwrap().len() as u64).collect();
    let mut want: Vec<u64> = r.iter().map(|row| row[2].parse().unwrap()).collect();
    lens.sort_unstable();
    want.sort_unstable();
    assert_eq!(lens, want);
    assert!(sent.iter().all(|q| q["ignore_eos"] == true && q["stream"] == true));
}

/// A fake with a default engine's context (4,096 tokens) and cheap steps.
fn long_engine() -> FakeEngine {
    context_engine(4096)
}

fn context_engine(max_model_len: u32) -> FakeEngine {
    FakeEngine::start(FakeSpec {
        max_model_len,
        step_cost: Arc::new(|s| match s {
            Step::Prefill { prompt_tokens, cached_tokens } => Duration::from_micros(5) * (prompt_tokens - cached_tokens),
            Step::Decode { .. } => Duration::from_micros(500),
        }),
        ..FakeSpec::default()
    })
    .unwrap()
}

#[test]
fn dual_pools_send_long_prompts_to_one_engine_and_short_ones_to_the_other() {
    let (long, short) = (long_engine(), long_engine());
    let dir = temp_dir("live-dual");
    let out = dir.join("split");
    let o = simctl_guarded(&[
        "live",
        "scenarios/dual_pool.scn",
        "--endpoint",
        &format!("prefill={}", long.url()),
        "--endpoint",
        &format!("decode={}", short.url()),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let lens = |e: &FakeEngine| -> Vec<usize> { e.requests().iter().map(|q| q["prompt"].as_array().unwrap().len()).collect() };
    assert_eq!(lens(&long), vec![4000; 6]);
    assert_eq!(lens(&short), vec![128; 96]);
    let s = json(&out.join("summary.json"));
    assert_eq!((s["live"]["mode"].as_str(), s["live"]["split_at"].as_u64()), (Some("dual_pool"), Some(2048)));
    assert!(s["live"]["not_measured"].as_str().is_some_and(|n| n.contains("KV hand-off")), "dual pools say what they do not measure: {s}");
    assert!(stdout(&o).contains("not measured: the KV hand-off between pools"), "{}", stdout(&o));
    // Per-pool results carry the scenario's pool names and roles.
    assert_eq!(s["pools"]["prefill"]["role"], "mixed");
    assert_eq!(s["completed"], 102);
    // Per-pool TTFT and per-engine TPOT, as the lab reports them.
    assert_eq!(s["latency_by_pool"]["prefill"]["ttft_ms"]["count"], 6);
    assert_eq!(s["latency_by_pool"]["decode"]["ttft_ms"]["count"], 96);
    assert_eq!(s["latency_by_instance"]["engine_short"]["tpot_ms"]["count"], 96);
    // Shared: both engines take both kinds.
    let (a, b) = (long_engine(), long_engine());
    let o = simctl_guarded(&[
        "live",
        "scenarios/dual_pool.scn",
        "--set",
        "router.split_at=0",
        "--endpoint",
        &format!("prefill={}", a.url()),
        "--endpoint",
        &format!("decode={}", b.url()),
        "--json",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(s["live"]["mode"], "aggregated");
    let kinds = |e: &FakeEngine| -> (usize, usize) {
        let l = lens(e);
        (l.iter().filter(|&&n| n == 4000).count(), l.iter().filter(|&&n| n == 128).count())
    };
    let (ka, kb) = (kinds(&a), kinds(&b));
    assert_eq!((ka.0 + kb.0, ka.1 + kb.1), (6, 96));
    assert!(ka.1 > 0 && kb.1 > 0, "{ka:?} {kb:?}");
}

#[test]
fn requests_that_exceed_the_engines_context_are_refused_before_anything_is_sent_or_clipped() {
    // dual_pool's 4000-token prompts and 32-token outputs against engines of 2,048 tokens.
    let (long, short) = (context_engine(2048), context_engine(4096));
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "live",
            "scenarios/dual_pool.scn",
            "--endpoint",
            &format!("prefill={}", long.url()),
            "--endpoint",
            &format!("decode={}", short.url()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let argv = args(&[]);
    let o = simctl_guarded(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let e = stderr(&o);
    for want in [
        "trace `",
        "dual_pool.jsonl`, request 1 (arrival 0.000 s) has a 4000-token prompt and 32 output tokens (4032 in all)",
        "the engine of instance `engine_long`",
        "holds at most 2048 (its max_model_len)",
        "5 more of the 102 requests checked do not fit either",
        "Nothing was sent",
        "--clip",
    ] {
        assert!(e.contains(want), "missing {want:?} in: {e}");
    }
    assert!(long.requests().is_empty() && short.requests().is_empty(), "nothing may be sent");

    // --clip: the six long requests go out shortened to fit 2,048 tokens, 0 failures.
    let dir = temp_dir("live-clip");
    let out = dir.join("clip");
    let argv = args(&["--clip", "--out", out.to_str().unwrap()]);
    let o = simctl_guarded(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("clipped: 6 of 102 requests sent shortened to fit the engines' context of 2048 tokens"), "{}", stdout(&o));
    let s = json(&out.join("summary.json"));
    assert_eq!((s["failed"].as_u64(), s["completed"].as_u64()), (Some(0), Some(102)));
    assert_eq!((s["live"]["clipped"].as_u64(), s["live"]["context_limit"].as_u64()), (Some(6), Some(2048)));
    assert_eq!((s["live"]["preflight_checked"].as_u64(), s["live"]["preflight_all"].as_bool()), (Some(102), Some(true)));
    // Outputs are kept whole (32 tokens), prompts cut to 2048 - 32; requests.csv says so.
    let lens = |e: &FakeEngine| -> Vec<(usize, u64)> {
        e.requests().iter().map(|q| (q["prompt"].as_array().unwrap().len(), q["max_tokens"].as_u64().unwrap())).collect()
    };
    assert_eq!(lens(&long), vec![(2016, 32); 6]);
    let rows = rows(&out.join("requests.csv"));
    let clipped = rows.iter().filter(|r| r[2] == "2016" && r[3] == "32").count();
    assert_eq!(clipped, 6, "requests.csv records the lengths sent");
}

#[test]
fn failed_requests_are_counted_with_their_errors_never_dropped() {
    use simctl_live::fake::Fault;
    let e = engine(Duration::from_micros(10), Duration::from_millis(1));
    e.inject(Fault::Status { code: 500, body: "boom".into() }, Some(3));
    e.inject(Fault::Healthy, Some(2));
    e.inject(Fault::DropAfter { tokens: 2 }, Some(2));
    e.inject(Fault::StallAfter { tokens: 1 }, Some(1));
    let dir = temp_dir("live-failures");
    let out = dir.join("live");
    let o = simctl_guarded(&[
        "live",
        "--endpoint",
        &e.url(),
        "--set",
        "requests=12",
        "--set",
        "arrival_rate=100/s",
        "--set",
        "router.policy=round_robin",
        "--stall-timeout",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    // Failures make the exit status non-zero, and everything is written.
    assert!(!o.status.success(), "{}", stdout(&o));
    let s = json(&out.join("summary.json"));
    assert_eq!(s["requests"], 12);
    assert_eq!(s["failed"], 6);
    assert_eq!(s["completed"], 6);
    assert_eq!(s["failed_reasons"], serde_json::json!({"http_error": 3, "disconnected": 2, "timeout": 1}));
    let r = rows(&out.join("requests.csv"));
    assert_eq!(r.len(), 12);
    let failed: Vec<&Vec<String>> = r.iter().filter(|row| row[17] == "failed").collect();
    assert_eq!(failed.len(), 6);
    assert!(failed.iter().all(|row| !row[19].is_empty()), "{failed:?}");
    assert!(failed.iter().any(|row| row[19].contains("500") && row[19].contains("boom")), "{failed:?}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_sending_waits_for_requests_in_flight_and_writes_everything() {
    let e = engine(Duration::from_micros(10), Duration::from_millis(2));
    let dir = temp_dir("live-ctrlc");
    let out = dir.join("live");
    let mut child = Command::new(env!("CARGO_BIN_EXE_simctl"))
        .args([
            "live",
            "--endpoint",
            &e.url(),
            "--set",
            "requests=100000",
            "--set",
            "arrival_rate=20/s",
            "--grace",
            "20",
            "--out",
            out.to_str().unwrap(),
        ])
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until requests are flowing, then interrupt.
    let start = Instant::now();
    while e.requests().len() < 10 {
        assert!(start.elapsed() < HANG_GUARD, "no requests reached the engine");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + HANG_GUARD;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "simctl live did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    let s = json(&out.join("summary.json"));
    assert_eq!(s["complete"], false);
    assert_eq!(s["live"]["interrupted"], true);
    assert!(s["incomplete_reason"].as_str().unwrap().contains("interrupted"));
    // Every request sent is a row; those in flight at Ctrl-C finished in the grace period.
    let sent = e.requests().len();
    let r = rows(&out.join("requests.csv"));
    assert_eq!(r.len(), sent);
    assert_eq!(s["requests"].as_u64().unwrap() as usize, sent);
    assert_eq!(s["completed"].as_u64().unwrap() as usize, sent);
}

/// Rows of a CSV file as maps from column to cell (no quoted commas in these files).
fn table(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    lines.map(|l| header.iter().cloned().zip(l.split(',').map(str::to_string)).collect()).collect()
}

#[test]
fn routing_decisions_follow_the_scraped_gauges_exactly() {
    // Slow decodes keep requests running, so the gauges differ between the engines.
    let (a, b) = (engine(Duration::from_micros(50), Duration::from_millis(8)), engine(Duration::from_micros(50), Duration::from_millis(8)));
    let dir = temp_dir("live-gauges");
    let out = dir.join("live");
    let o = simctl_guarded(&[
        "live",
        "--endpoint",
        &a.url(),
        "--endpoint",
        &b.url(),
        "--set",
        "router.policy=least_loaded",
        "--set",
        "telemetry.interval=50ms",
        "--set",
        "requests=60",
        "--set",
        "arrival_rate=40/s",
        "--min-scrape-ms",
        "50",
        "--decisions",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let gauges = table(&out.join("gauges.csv"));
    let decisions = table(&out.join("decisions.csv"));
    assert_eq!(decisions.len(), 60);
    assert!(gauges.len() >= 4, "{} scrapes", gauges.len());
    let secs = |r: &std::collections::HashMap<String, String>, k: &str| r[k].parse::<f64>().unwrap();
    let mut busy_views = 0;
    for d in &decisions {
        let t = secs(d, "time_s");
        // The load of each engine in the router's view: its last scrape published before.
        let load = |inst: &str| -> u32 {
            gauges
                .iter()
                .rev()
                .find(|g| g["instance"] == inst && secs(g, "published_s") <= t)
                .map_or(0, |g| g["waiting"].parse::<u32>().unwrap() + g["running"].parse::<u32>().unwrap())
        };
        let (l0, l1) = (load("gpu0"), load("gpu1"));
        assert_eq!(d["scores"], format!("gpu0={l0};gpu1={l1}"), "decision at {t} s");
        assert_eq!(d["chosen"], if l1 < l0 { "gpu1" } else { "gpu0" }, "decision at {t} s");
        busy_views += usize::from(l0 + l1 > 0);
    }
    // The check means something only if the gauges showed load.
    assert!(busy_views > 10, "{busy_views} decisions saw load");
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only probes whether the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn pids(dir: &Path, gpus: &[u32]) -> Vec<i32> {
    gpus.iter()
        .map(|g| {
            let f = dir.join(format!("{g}.pid"));
            let start = Instant::now();
            loop {
                if let Ok(t) = std::fs::read_to_string(&f)
                    && let Ok(p) = t.trim().parse()
                {
                    return p;
                }
                assert!(start.elapsed() < HANG_GUARD, "no pid file {}", f.display());
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .collect()
}

#[cfg(unix)]
#[test]
fn engines_started_on_gpus_are_stopped_at_the_end_and_on_ctrl_c() {
    let dir = temp_dir("live-launch");
    let launch = format!("echo $$ > {}/{{gpu}}.pid; exec {} fake-engine --port {{port}}", dir.display(), env!("CARGO_BIN_EXE_simctl"));
    let out = dir.join("out");
    let o = simctl_guarded(&[
        "live",
        "--decode-gpus",
        "0,1",
        "--launch",
        &launch,
        "--set",
        "requests=20",
        "--set",
        "arrival_rate=40/s",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let s = json(&out.join("summary.json"));
    assert_eq!((s["completed"].as_u64(), s["live"]["endpoints"].as_object().map(|e| e.len())), (Some(20), Some(2)));
    assert!(stderr(&o).contains("started an engine for pool `decode` on GPU 1"), "{}", stderr(&o));
    assert!(out.join("engines/gpu0.log").exists());
    for p in pids(&dir, &[0, 1]) {
        assert!(!alive(p), "engine {p} still runs after the run");
    }

    // Ctrl-C in the middle of a long run: the engines go too.
    for g in [0, 1] {
        let _ = std::fs::remove_file(dir.join(format!("{g}.pid")));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_simctl"))
        .args([
            "live",
            "--decode-gpus",
            "0,1",
            "--launch",
            &launch,
            "--set",
            "requests=100000",
            "--set",
            "arrival_rate=20/s",
            "--grace",
            "5",
        ])
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let engines = pids(&dir, &[0, 1]);
    assert!(engines.iter().all(|&p| alive(p)));
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signals the simctl this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + HANG_GUARD;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "simctl live did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert!(stdout(&o).contains("INCOMPLETE") || stderr(&o).contains("interrupted"), "{}{}", stdout(&o), stderr(&o));
    for p in engines {
        assert!(!alive(p), "engine {p} still runs after Ctrl-C");
    }

    // An engine that dies while starting: an error with its log, and the other one stopped.
    let dies = format!(
        "echo $$ > {}/{{gpu}}.pid; if [ {{gpu}} = 1 ]; then echo no GPU >&2; exit 3; fi; exec {} fake-engine --port {{port}}",
        dir.display(),
        env!("CARGO_BIN_EXE_simctl")
    );
    for g in [0, 1] {
        let _ = std::fs::remove_file(dir.join(format!("{g}.pid")));
    }
    let o = simctl_guarded(&["live", "--decode-gpus", "0,1", "--launch", &dies, "--set", "requests=5"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no GPU"), "{}", stderr(&o));
    for p in pids(&dir, &[0, 1]) {
        assert!(!alive(p), "engine {p} still runs after the failed start");
    }
}

/// Starts `simctl live` in the background against engines that the test then breaks.
fn spawn_live(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_simctl"))
        .args(args)
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("simctl starts")
}

fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < HANG_GUARD, "{what} never happened");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `(at_s, what)` of the health events of `instance` in a live summary.
fn health_events(s: &serde_json::Value, instance: &str) -> Vec<(f64, String)> {
    s["live"]["health_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["instance"] == instance)
        .map(|e| (e["at_s"].as_f64().unwrap(), e["what"].as_str().unwrap().to_string()))
        .collect()
}

/// Every request is finished, failed with a reason, rejected or unfinished: none is lost.
fn accounted(s: &serde_json::Value, rows: &[Vec<String>], requests: u64) {
    assert_eq!(s["requests"].as_u64(), Some(requests), "{s}");
    let sum: u64 = ["completed", "failed", "rejected", "unfinished"].iter().map(|k| s[k].as_u64().unwrap()).sum();
    assert_eq!(sum, requests, "{s}");
    assert_eq!(rows.len() as u64, requests, "one row per request");
    // Columns 17 and 18 are `outcome` and `reason` (the `error` text after them may hold commas).
    for r in rows {
        let outcome = &r[17];
        assert!(["finished", "failed", "rejected", "unfinished"].contains(&outcome.as_str()), "{r:?}");
        if outcome == "failed" {
            assert!(!r[18].is_empty(), "a failed request has its reason: {r:?}");
        }
    }
}

/// Two cheap fakes and `simctl live` started in the background against them, round robin,
/// `requests` at 50/s, writing into a fresh folder: `(engines, child, args, out)`.
fn two_engines_live(name: &str, requests: u32) -> ((FakeEngine, FakeEngine), std::process::Child, Vec<String>, std::path::PathBuf) {
    let (a, b) = (engine(Duration::from_micros(10), Duration::from_millis(2)), engine(Duration::from_micros(10), Duration::from_millis(2)));
    let out = temp_dir(name).join("live");
    let args: Vec<String> = [
        "live",
        "--endpoint",
        &a.url(),
        "--endpoint",
        &b.url(),
        "--set",
        &format!("requests={requests}"),
        "--set",
        "arrival_rate=50/s",
        "--set",
        "router.policy=round_robin",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let child = spawn_live(&args.iter().map(String::as_str).collect::<Vec<_>>());
    ((a, b), child, args, out)
}

#[test]
fn a_killed_engine_is_taken_out_of_routing_and_every_request_is_accounted_for() {
    let ((a, _b), child, args, out) = two_engines_live("live-kill", 200);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    wait_until("requests at the first engine", || a.requests().len() >= 20);
    drop(a); // killed: its streams are cut, its port refuses connections
    let o = crate::wait_guarded(child, &args, HANG_GUARD);
    assert!(o.status.code() == Some(0) || o.status.code() == Some(1), "{}", stderr(&o));
    let s = json(&out.join("summary.json"));
    let rows = rows(&out.join("requests.csv"));
    accounted(&s, &rows, 200);
    let e = &s["live"]["engines"]["gpu0"];
    assert!(e["outages"].as_u64() >= Some(1) && e["availability"].as_f64() < Some(1.0), "{s}");
    assert_eq!(s["live"]["engines"]["gpu1"]["outages"].as_u64(), Some(0), "{s}");
    let events = health_events(&s, "gpu0");
    let out_at = events.iter().find(|(_, w)| w.starts_with("out of routing")).map(|(t, _)| *t).expect("taken out");
    // Round robin sends every other request to gpu0 until then; nothing goes there after.
    let late_to_dead = rows.iter().filter(|r| r[6] == "gpu0" && r[1].parse::<f64>().unwrap() > out_at + 0.01).count();
    assert_eq!(late_to_dead, 0, "requests routed to the dead engine after it was taken out (at {out_at} s)");
    // The live engine took the rest, and finished them.
    let finished_on_b = rows.iter().filter(|r| r[6] == "gpu1" && r[17] == "finished").count();
    assert_eq!(finished_on_b, rows.iter().filter(|r| r[6] == "gpu1").count(), "the live engine finishes all it gets");
    assert!(finished_on_b > 100, "{finished_on_b}");
}

#[test]
fn a_stopped_engine_leaves_routing_comes_back_when_continued_and_loses_nothing() {
    let ((a, b), child, args, out) = two_engines_live("live-stop", 400);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    wait_until("requests at the first engine", || a.requests().len() >= 20);
    a.pause(); // SIGSTOP: connections accepted, nothing answered
    let at_pause = b.requests().len();
    // Long enough for the breaker (600 ms past the next scrape) many times over: 150
    // requests at b is at least 3 s of a 50/s schedule.
    wait_until("requests at the other engine", || b.requests().len() >= at_pause + 150);
    a.resume(); // SIGCONT
    let o = crate::wait_guarded(child, &args, HANG_GUARD);
    let s = json(&out.join("summary.json"));
    let rows = rows(&out.join("requests.csv"));
    accounted(&s, &rows, 400);
    assert_eq!(s["failed"].as_u64(), Some(0), "the requests held by the stopped engine finish once it is continued: {s}");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let events = health_events(&s, "gpu0");
    let out_at = events.iter().find(|(_, w)| w.contains("out of routing: no answer to its probes")).map(|(t, _)| *t).expect("taken out");
    let back_at = events.iter().find(|(t, w)| *t > out_at && w.starts_with("back in routing")).map(|(t, _)| *t).expect("put back");
    let sent_while_out = rows
        .iter()
        .filter(|r| r[6] == "gpu0")
        .map(|r| r[1].parse::<f64>().unwrap())
        .filter(|&t| t > out_at + 0.01 && t < back_at - 0.01)
        .count();
    assert_eq!(sent_while_out, 0, "out at {out_at} s, back at {back_at} s");
    assert!(rows.iter().any(|r| r[6] == "gpu0" && r[1].parse::<f64>().unwrap() > back_at), "routed to again once back");
    let e = &s["live"]["engines"]["gpu0"];
    assert!(e["outages"].as_u64() >= Some(1) && e["availability"].as_f64() < Some(1.0), "{s}");
}

#[test]
fn requests_an_engine_refuses_with_5xx_are_rerouted_and_none_is_lost() {
    use simctl_live::fake::Fault;
    let (bad, good) =
        (engine(Duration::from_micros(10), Duration::from_millis(1)), engine(Duration::from_micros(10), Duration::from_millis(1)));
    bad.inject(Fault::Status { code: 503, body: "overloaded".into() }, None);
    let dir = temp_dir("live-503");
    let out = dir.join("live");
    let o = simctl_guarded(&[
        "live",
        "--endpoint",
        &bad.url(),
        "--endpoint",
        &good.url(),
        "--set",
        "requests=40",
        "--set",
        "arrival_rate=50/s",
        "--set",
        "router.policy=round_robin",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let s = json(&out.join("summary.json"));
    assert_eq!((s["completed"].as_u64(), s["failed"].as_u64()), (Some(40), Some(0)), "{s}");
    let rerouted = s["live"]["rerouted"].as_u64().unwrap();
    // Every request the bad engine got was sent again to the good one, which served all 40.
    assert_eq!(rerouted as usize, bad.requests().len(), "{s}");
    assert!(rerouted >= 3, "{s}");
    assert_eq!(good.requests().len(), 40);
    let rows = rows(&out.join("requests.csv"));
    assert!(rows.iter().all(|r| r[6] == "gpu1" && r[17] == "finished"), "records name the engine that served them");
    assert!(s["live"]["engines"]["gpu0"]["outages"].as_u64() >= Some(1), "{s}");
    assert!(stdout(&o).contains(&format!("rerouted: {rerouted} requests")), "{}", stdout(&o));
}

#[test]
fn preflight_holds_requests_to_the_kv_cache_an_engine_reports_when_it_is_smaller_than_its_context() {
    // 50 blocks of 16 tokens: 800 tokens of KV under a 4,096-token context.
    let e = FakeEngine::start(FakeSpec { num_blocks: 50, block_size: 16, ..FakeSpec::default() }).unwrap();
    let o = simctl_guarded(&["live", "--endpoint", &e.url(), "--endpoint", &e.url(), "--set", "requests=50"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("holds at most 800 (its KV cache)"), "{}", stderr(&o));
    assert!(e.requests().is_empty());
}
