//! The engine at fleet scale and under hostile input: one validation for every command,
//! lengths bounded at the input edge, the steppable engine, and routing decisions pinned.

use simctl_engine::Simulation;
use simctl_engine::record::{Recorder, RequestRecord};
use simctl_engine::time::{SimDuration, SimTime};

use crate::{simctl, stderr, temp_dir};

// Two prefill pools, only one linked to the decode pool (what `../shared/repro/twopf.scn`
// reproduces): `check` used to accept it, `run` exited 1 and `sweep` panicked.
const TWO_PREFILL_POOLS: &str = "model = llama_3_1_8b
param arrival_rate = 10/s
hardware ga { prefill_rate = 10000 tok/s; decode_rate = 3000 tok/s; cost = 1 $/h; kv_capacity = 100000 tok }
hardware gd { prefill_rate = 10000 tok/s; decode_rate = 3000 tok/s; cost = 1 $/h; kv_capacity = 100000 tok }
pool pa { role = prefill; instances = [ga] }
pool pb { role = prefill; instances = [ga] }
pool decode { role = decode; instances = [gd] }
link { from = pa; to = decode; latency = 1ms }
workload { arrivals = poisson(arrival_rate); prompt = uniform(100, 500); output = uniform(10, 50) }
run { duration = 5s }
";

#[test]
fn an_unlinked_prefill_pool_is_bad_input_for_check_run_and_sweep() {
    let dir = temp_dir("twopf");
    let scn = dir.join("twopf.scn");
    std::fs::write(&scn, TWO_PREFILL_POOLS).unwrap();
    let f = scn.to_str().unwrap();
    for args in
        [vec!["check", f], vec!["run", f], vec!["sweep", f, "--grid", "arrival_rate=5/s,10/s", "--out", dir.join("sw").to_str().unwrap()]]
    {
        let o = simctl(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("prefill pool `pb` has no link to decode pool `decode`"), "{args:?}: {err}");
        assert!(err.contains("twopf.scn:6:1"), "the caret is on pool pb: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn an_overlong_trace_line_is_a_located_error_not_a_wrap() {
    let dir = temp_dir("huge");
    std::fs::write(
        dir.join("huge.jsonl"),
        "{\"timestamp\": 0, \"input_length\": 4294967295, \"output_length\": 2}\n{\"timestamp\": 10, \"input_length\": 100, \"output_length\": 2}\n",
    )
    .unwrap();
    let scn = dir.join("huge.scn");
    std::fs::write(
        &scn,
        "model = llama_3_1_8b\nhardware g { prefill_rate = 10000 tok/s; decode_rate = 3000 tok/s; cost = 1 $/h; kv_capacity = 100000 tok }\n\
         pool serve { role = mixed; instances = [g] }\nworkload { arrivals = trace(\"huge.jsonl\") }\n",
    )
    .unwrap();
    for cmd in ["check", "run"] {
        let o = simctl(&[cmd, scn.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("huge.jsonl:1: the prompt length of 4294967295 tokens is above the limit of 16777216 tokens"), "{cmd}: {err}");
    }
    // A scenario value above the bound is located too.
    let big = dir.join("big.scn");
    std::fs::write(
        &big,
        "model = llama_3_1_8b\nhardware g { prefill_rate = 10000 tok/s; decode_rate = 3000 tok/s; cost = 1 $/h; kv_capacity = 100000 tok }\n\
         pool serve { role = mixed; instances = [g] }\nworkload { arrivals = poisson(1/s); prompt = 20000000; output = 1 }\nrun { requests = 1 }\n",
    )
    .unwrap();
    let o = simctl(&["check", big.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("above the limit of 16777216 tokens"), "{}", stderr(&o));
}

#[test]
fn requests_that_can_never_fit_are_warned_about_and_counted_by_reason() {
    let dir = temp_dir("nofit");
    let scn = dir.join("nofit.scn");
    std::fs::write(
        &scn,
        "model = llama_3_1_8b\nhardware g { prefill_rate = 10000 tok/s; decode_rate = 3000 tok/s; cost = 1 $/h; kv_capacity = 4096 tok }\n\
         pool serve { role = mixed; instances = [g] }\nworkload { arrivals = poisson(5/s); prompt = uniform(1000, 6000); output = 16 }\nrun { requests = 200 }\n",
    )
    .unwrap();
    let o = simctl(&["check", scn.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning:") && stderr(&o).contains("exceeds_kv_capacity"), "{}", stderr(&o));
    let o = simctl(&["run", scn.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rejected = v["rejected"].as_u64().unwrap();
    assert!(rejected > 50, "{rejected}");
    assert_eq!(v["rejected_reasons"]["exceeds_kv_capacity"].as_u64(), Some(rejected));
}

/// Request records in order; token gaps as a multiset (pooled ITL: fast-forward reports an
/// instance's gaps when it catches up, not in their order among other instances').
#[derive(Default)]
struct Log(Vec<String>, Vec<u64>);
impl Recorder for Log {
    fn on_request(&mut self, r: &RequestRecord) {
        self.0.push(format!("{r:?}"));
    }
    fn on_token_gap(&mut self, gap: SimDuration) {
        self.1.push(gap.as_nanos());
    }
}

#[test]
fn stepping_every_shipped_scenario_in_chunks_gives_the_records_of_one_run() {
    for entry in std::fs::read_dir(crate::repo_root().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "scn") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Short runs keep the test quick; traces that a checkout lacks are skipped.
        let short = [("run.duration".to_string(), "8s".to_string())];
        let Ok(spec) =
            simctl_dsl::load(path.to_str().unwrap(), &text, &short).or_else(|_| simctl_dsl::load(path.to_str().unwrap(), &text, &[]))
        else {
            continue;
        };
        let mut one = Log::default();
        let t1 = format!("{:?}", Simulation::new(&spec).unwrap().run(&mut one));
        let mut chunked = Log::default();
        let mut sim = Simulation::new(&spec).unwrap();
        let mut t = SimTime::ZERO;
        while sim.next_event_time().is_some() {
            t += SimDuration::from_millis(7);
            sim.step_until(t, &mut chunked);
        }
        let t2 = format!("{:?}", sim.run(&mut chunked));
        assert_eq!(one.0, chunked.0, "{}", path.display());
        one.1.sort_unstable();
        chunked.1.sort_unstable();
        assert_eq!(one.1, chunked.1, "{}", path.display());
        assert_eq!(t1, t2, "{}", path.display());
    }
}

/// What a reviewer reads of the decision log of `simctl run ARGS --decisions`: its length,
/// its FNV-1a (any change shows) and how many decisions of each kind chose each instance
/// (where a change moved requests).
fn decision_digest(name: &str, args: &[&str]) -> String {
    let dir = temp_dir(&format!("pin-{name}"));
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend(["--out", dir.to_str().unwrap(), "--decisions", "--no-plots"]);
    let o = simctl(&all);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    let log = std::fs::read_to_string(dir.join("decisions.csv")).unwrap();
    let mut chosen: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for line in log.lines().skip(1) {
        let f: Vec<&str> = line.splitn(6, ',').collect();
        *chosen.entry((f[2].to_string(), f[4].to_string())).or_default() += 1;
    }
    let mut s = format!(
        "{name}: simctl run {}
",
        args.join(" ")
    );
    s += &format!(
        "  {} decisions, log fnv1a {:#018x}
",
        log.lines().count() - 1,
        simctl_engine::rng::fnv1a(log.as_bytes())
    );
    for ((kind, inst), n) in chosen {
        s += &format!("  {kind:<8} {inst:<16} {n}\n");
    }
    s
}

/// The routing tests' runs, decision by decision, against `tests/golden/routing_decisions.txt`
/// (the one golden file of the routing tests; `SIMCTL_BLESS=1 cargo test --test cli
/// routing_decisions` rewrites it after a deliberate change, and its diff shows which
/// decisions moved where). History: the decisions were those of the engine before the router
/// host and prefix index were built (83249a1); kv_aware's changed on purpose when its
/// queued-prefill term became the router's own count (Dynamo's); those that read the load of
/// `gpu = h100_sxm` changed with the kernel-table step times and again with the all-reduce
/// tables read by element count.
#[test]
fn routing_decisions_match_the_golden_file() {
    let cases: [(&str, &[&str]); 10] = [
        ("pa_rr", &["scenarios/prefix_affinity.scn", "--set", "run.duration=120s", "--set", "router.policy=round_robin"]),
        ("pa_ca", &["scenarios/prefix_affinity.scn", "--set", "run.duration=120s", "--set", "router.policy=cache_aware"]),
        ("pa_kv", &["scenarios/prefix_affinity.scn", "--set", "run.duration=120s", "--set", "router.policy=kv_aware"]),
        ("st_0", &["scenarios/stale_telemetry.scn", "--set", "run.duration=60s", "--set", "staleness=0ms"]),
        ("st_1", &["scenarios/stale_telemetry.scn", "--set", "run.duration=60s", "--set", "staleness=1s"]),
        ("p2c", &["scenarios/stale_telemetry.scn", "--set", "run.duration=60s", "--set", "router.policy=power_of_two"]),
        ("fvm", &["scenarios/flagship_vs_mid.scn"]),
        ("fvm_nomig", &["scenarios/flagship_vs_mid.scn", "--set", "router.migration=false"]),
        (
            "kvs",
            &[
                "scenarios/kv_starved_decode.scn",
                "--set",
                "run.duration=30s",
                "--set",
                "pool.decode.instances=[2 x decode_gpu]",
                "--set",
                "router.prefill=kv_aware",
                "--set",
                "router.decode=least_loaded",
            ],
        ),
        ("mig", &["scenarios/mig_slices.scn"]),
    ];
    let got: String = cases.iter().map(|&(name, args)| decision_digest(name, args)).collect();
    let path = crate::repo_root().join("tests/golden/routing_decisions.txt");
    if std::env::var_os("SIMCTL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if got != want {
        let diff: Vec<String> = got
            .lines()
            .zip(want.lines().chain(std::iter::repeat("")))
            .filter(|(g, w)| g != w)
            .take(20)
            .map(|(g, w)| format!("  now:    {g}\n  golden: {w}"))
            .collect();
        panic!(
            "routing decisions differ from {} (rerun with SIMCTL_BLESS=1 after a deliberate change and review the diff):\n{}",
            path.display(),
            diff.join("\n")
        );
    }
}

#[test]
fn fast_forward_changes_no_byte_of_any_shipped_scenario_s_results() {
    for path in shipped_scenarios() {
        // The validation set has a mooncake_slice too: the folder keeps the names apart.
        let folder = path.parent().and_then(|p| p.parent()).and_then(|p| p.file_name()).unwrap().to_string_lossy().to_string();
        let name = format!("{folder}-{}", path.file_stem().unwrap().to_string_lossy());
        let run = |ff: &str| {
            let dir = temp_dir(&format!("ff-{name}-{ff}"));
            let o = simctl(&[
                "run",
                path.to_str().unwrap(),
                "--set",
                &format!("run.fast_forward={ff}"),
                // The first 3,000 requests are plenty, and keep the trace replays short.
                "--set",
                "run.requests=3000",
                "--out",
                dir.to_str().unwrap(),
                "--no-plots",
                "--quiet",
            ]);
            assert!(o.status.success(), "{name}: {}", stderr(&o));
            dir
        };
        let (on, off) = (run("true"), run("false"));
        for f in ["requests.csv", "summary.json", "queue_depth.csv", "latency.jsonl"] {
            assert!(std::fs::read(on.join(f)).unwrap() == std::fs::read(off.join(f)).unwrap(), "{name}: {f} differs with fast-forward");
        }
    }
}

#[test]
fn fast_forward_changes_no_itl_bucket_nor_summary_of_any_shipped_scenario() {
    // The library path of `simctl run`: the recorder's pooled ITL histogram, bucket by bucket,
    // and the summary, with fast-forward on and off (the files are compared above).
    let mut taken = 0;
    for path in shipped_scenarios() {
        let text = std::fs::read_to_string(&path).unwrap();
        let run = |ff: bool| {
            let sets = [("run.fast_forward".to_string(), ff.to_string()), ("run.requests".to_string(), "3000".to_string())];
            let spec = simctl_dsl::load(path.to_str().unwrap(), &text, &sets).unwrap_or_else(|d| panic!("{d}"));
            let mut rec = simctl_reports::RunRecorder::for_spec(&spec);
            let mut sim = Simulation::new(&spec).unwrap();
            sim.step_until(SimTime::MAX, &mut rec);
            let taken = sim.fast_forwarded_steps();
            let totals = sim.finish(&mut rec);
            let summary = serde_json::to_string(&simctl_reports::Summary::build(&spec, spec.seed, &mut rec, &totals)).unwrap();
            (rec.itl_buckets(), summary, taken)
        };
        let (on, off) = (run(true), run(false));
        assert_eq!(off.2, 0, "{}: fast-forward off takes no step in bulk", path.display());
        taken += usize::from(on.2 > 0);
        assert!(on.0 == off.0, "{}: the ITL histogram differs with fast-forward", path.display());
        assert!(on.1 == off.1, "{}: summary differs with fast-forward", path.display());
    }
    assert!(taken >= 8, "fast-forward taken in {taken} scenarios");
}

/// The scenarios a checkout ships: `scenarios/` and the validation set's.
fn shipped_scenarios() -> Vec<std::path::PathBuf> {
    let mut all = Vec::new();
    for dir in ["scenarios", "validation/scenarios"] {
        for entry in std::fs::read_dir(crate::repo_root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "scn") {
                all.push(path);
            }
        }
    }
    all.sort();
    all
}
