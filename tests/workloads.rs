//! Workloads end to end: closed loops, trace replay and its options, trace statistics.

use std::path::PathBuf;

use simctl_engine::Simulation;
use simctl_engine::record::{Outcome, Recorder, RequestRecord};
use simctl_reports::{RunRecorder, Summary};

use crate::{repo_root, simctl, stderr, stdout, temp_dir};

#[derive(Default)]
struct Rows(Vec<RequestRecord>);
impl Recorder for Rows {
    fn on_request(&mut self, r: &RequestRecord) {
        self.0.push(*r);
    }
}

fn run_src(name: &str, src: &str) -> (Vec<RequestRecord>, Summary) {
    let spec = simctl_dsl::load(name, src, &[]).unwrap_or_else(|d| panic!("{d}"));
    let mut rows = Rows::default();
    Simulation::new(&spec).unwrap().run(&mut rows);
    let mut rec = RunRecorder::for_spec(&spec);
    let totals = Simulation::new(&spec).unwrap().run(&mut rec);
    rows.0.sort_by_key(|r| r.id);
    (rows.0, Summary::build(&spec, spec.seed, &mut rec, &totals))
}

const SERVER: &str = "model = llama_3_1_8b\nhardware gpu { prefill_rate = 20000 tok/s; decode_rate = 2000 tok/s; cost = 1 $/h; kv_capacity = 1000000 tok }\npool p { role = mixed; instances = [gpu] }\n";

#[test]
fn closed_loop_users_never_exceed_their_number() {
    let src = format!(
        "{SERVER}workload {{ arrivals = closed_loop(users = 5, think = 100ms); prompt = uniform(100, 500); output = uniform(10, 50) }}\nrun {{ duration = 60s }}\n"
    );
    let (rows, s) = run_src("closed.scn", &src);
    assert!(s.peak_in_flight <= 5, "{}", s.peak_in_flight);
    assert!(rows.len() > 100);
    assert!(rows.iter().all(|r| r.outcome == Outcome::Finished));
    // One user without think time: each request arrives when the previous one finished.
    let src = format!(
        "{SERVER}workload {{ arrivals = closed_loop(users = 1); prompt = constant(100); output = constant(5) }}\nrun {{ requests = 20 }}\n"
    );
    let (rows, _) = run_src("serial.scn", &src);
    assert_eq!(rows.len(), 20);
    for w in rows.windows(2) {
        assert_eq!(w[1].arrival, w[0].finish.unwrap());
    }
}

fn mooncake_fixture(dir: &std::path::Path) -> PathBuf {
    // Four conversations' turns: each later turn extends an earlier prompt (same leading ids).
    let p = dir.join("fixture.jsonl");
    std::fs::write(
        &p,
        "{\"timestamp\": 0, \"input_length\": 1024, \"output_length\": 4, \"hash_ids\": [0, 1]}\n\
         {\"timestamp\": 2000, \"input_length\": 1536, \"output_length\": 4, \"hash_ids\": [0, 1, 2]}\n\
         {\"timestamp\": 4000, \"input_length\": 1000, \"output_length\": 4, \"hash_ids\": [0, 7]}\n\
         {\"timestamp\": 6000, \"input_length\": 2048, \"output_length\": 4, \"hash_ids\": [0, 1, 2, 3]}\n",
    )
    .unwrap();
    p
}

#[test]
fn mooncake_prefix_ids_reach_the_prefix_cache() {
    let dir = temp_dir("mooncake-fixture");
    let trace = mooncake_fixture(&dir);
    let src = format!("{SERVER}workload {{ arrivals = trace(\"{}\") }}\n", trace.display());
    let (rows, s) = run_src("trace.scn", &src);
    assert_eq!(rows.len(), 4);
    // 512-token trace blocks on 16-token engine blocks: turn 2 reuses turn 1's 1024 tokens,
    // turn 3 only the shared first block (512), turn 4 turn 2's 1536.
    let cached: Vec<u32> = rows.iter().map(|r| r.cached_tokens.get()).collect();
    assert_eq!(cached, vec![0, 1024, 512, 1536]);
    assert_eq!(rows[1].arrival.as_nanos(), 2_000_000_000);
    assert!((s.prefix_hit_rate.unwrap() - 3072.0 / 5608.0).abs() < 1e-12);
}

#[test]
fn replay_options_speedup_window_limit_and_loop() {
    let dir = temp_dir("replay-options");
    let trace = mooncake_fixture(&dir);
    let arrivals = |opts: &str| {
        let src = format!("{SERVER}workload {{ arrivals = trace(\"{}\"{opts}) }}\n", trace.display());
        run_src("t.scn", &src).0.iter().map(|r| r.arrival.as_nanos() / 1_000_000).collect::<Vec<u64>>()
    };
    assert_eq!(arrivals(""), vec![0, 2000, 4000, 6000]);
    assert_eq!(arrivals(", speedup = 2"), vec![0, 1000, 2000, 3000]);
    assert_eq!(arrivals(", start = 2s, end = 6s"), vec![0, 2000]);
    assert_eq!(arrivals(", limit = 3"), vec![0, 2000, 4000]);
    // Looping: the next pass starts one mean gap (2 s) after the last request.
    let looped = format!("{SERVER}workload {{ arrivals = trace(\"{}\", loop = true) }}\nrun {{ requests = 6 }}\n", trace.display());
    let a: Vec<u64> = run_src("l.scn", &looped).0.iter().map(|r| r.arrival.as_nanos() / 1_000_000).collect();
    assert_eq!(a, vec![0, 2000, 4000, 6000, 8000, 10000]);
}

#[test]
fn bad_trace_lines_stop_the_run_or_are_counted() {
    let dir = temp_dir("bad-trace");
    let trace = dir.join("bad.jsonl");
    std::fs::write(&trace, "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 4}\n{oops\n{\"timestamp\": 5, \"input_length\": 100, \"output_length\": 4}\n").unwrap();
    let scn = dir.join("s.scn");
    std::fs::write(&scn, format!("{SERVER}param skip = false\nworkload {{ arrivals = trace(\"bad.jsonl\", skip_invalid = skip) }}\n"))
        .unwrap();
    // A bad line is bad input: `check` finds it without running, `run` stops at it.
    for cmd in ["check", "run"] {
        let o = simctl(&[cmd, scn.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
        assert!(stderr(&o).contains("bad.jsonl:2: not a JSON object"), "{}", stderr(&o));
    }
    let o = simctl(&["run", scn.to_str().unwrap(), "--set", "skip=true", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["requests"].as_u64(), v["trace_skipped_lines"].as_u64()), (Some(2), Some(1)));
}

#[test]
fn per_class_metrics_use_each_class_slo() {
    let src = format!(
        "{SERVER}workload {{\n  arrivals = poisson(4/s)\n  class chat {{ weight = 3; prompt = constant(200); output = constant(20) }}\n  class batch {{ weight = 1; prompt = constant(4000); output = constant(20); slo {{ ttft = 1ms }} }}\n}}\nslo {{ ttft = 10s }}\nrun {{ duration = 120s }}\n"
    );
    let (_, s) = run_src("classes.scn", &src);
    let (chat, batch) = (&s.classes["chat"], &s.classes["batch"]);
    assert_eq!(chat.requests + batch.requests, s.requests);
    assert!((chat.requests as f64 / s.requests as f64 - 0.75).abs() < 0.05);
    assert_eq!(chat.slo_attainment.unwrap(), 1.0, "10 s is easy");
    assert_eq!(batch.slo_attainment.unwrap(), 0.0, "a 4000-token prefill takes 200 ms > 1 ms");
}

/// A trace shipped in `traces/` (always there: they are part of the repository).
fn shared_trace(rel: &str) -> Option<PathBuf> {
    let p = repo_root().join("traces").join(rel);
    assert!(p.exists(), "{} is missing from the repository", p.display());
    Some(p)
}

#[test]
fn trace_stats_match_the_published_figures() {
    let Some(mooncake) = shared_trace("mooncake/conversation_trace.jsonl") else { return };
    let o = simctl(&["trace", "stats", "--json", mooncake.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v[0];
    assert_eq!(s["requests"], 12031);
    assert_eq!(
        (s["input"]["p50"].as_u64(), s["input"]["p90"].as_u64(), s["input"]["p99"].as_u64()),
        (Some(6909), Some(27367), Some(85401))
    );
    assert_eq!((s["blocks"]["total"].as_u64(), s["blocks"]["unique"].as_u64()), (Some(288_500), Some(182_790)));
    assert!((s["blocks"]["repeat_fraction"].as_f64().unwrap() - 105_710.0 / 288_500.0).abs() < 1e-9);
    assert_eq!((s["peak_per_minute"].as_u64(), s["min_per_minute"].as_u64()), (Some(247), Some(144)));
    let Some(azure) = shared_trace("azure_llm_2023/AzureLLMInferenceTrace_conv.csv") else { return };
    let o = simctl(&["trace", "stats", "--json", azure.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["requests"], 19366);
    assert!((v[0]["mean_rate_per_s"].as_f64().unwrap() - 5.53).abs() < 0.01);
    assert_eq!(v[0]["peak_per_minute"], 507);
}

#[test]
fn empirical_lengths_from_sharegpt() {
    let Some(csv) = shared_trace("sharegpt/sharegpt_8k_filtered_stats_llama2_tokenizer.csv") else { return };
    let src = format!(
        "{SERVER}workload {{ arrivals = poisson(50/s); prompt = empirical(\"{0}\", num_prefill_tokens); output = empirical(\"{0}\", num_decode_tokens) }}\nrun {{ requests = 20000 }}\n",
        csv.display()
    );
    let spec = simctl_dsl::load("e.scn", &src, &[]).unwrap_or_else(|d| panic!("{d}"));
    // Only the draws matter here: take them from the workload generator directly.
    let mut g = simctl_engine::workload::WorkloadGen::new(&spec.workload, simctl_engine::rng::RunSeed(1)).unwrap();
    let reqs: Vec<_> = (0..20_000).map(|_| g.next_request().unwrap()).collect();
    let mean = |f: fn(&simctl_engine::request::Request) -> u32| reqs.iter().map(|r| f64::from(f(r))).sum::<f64>() / reqs.len() as f64;
    // The file's means: 2,340 prompt and 439 output tokens.
    assert!((mean(|r| r.prompt_tokens.get()) / 2340.0 - 1.0).abs() < 0.03);
    assert!((mean(|r| r.output_tokens.get()) / 439.0 - 1.0).abs() < 0.03);
}
