//! `simctl calibrate` against the batched fake engine (whose steps cost a known fitted
//! model), `--launch` failures and interruptions, `simctl topology` without a GPU, and
//! profiles used by scenarios.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use simctl_live::fake::{FakeEngine, Fault};

use crate::{simctl, stderr, stdout, temp_dir};

/// A guard against hangs, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(300);

fn simctl_guarded(args: &[&str]) -> Output {
    crate::simctl_guarded(args, HANG_GUARD)
}

use crate::support::{BUDGET, MAX_SEQS, batched};

#[test]
fn samples_that_cannot_determine_the_model_are_refused_with_what_to_do() {
    // One sequence per step and no chunking within the context: the per-sequence decode
    // cost cannot be told from the step cost and the frontend.
    let e = FakeEngine::start(batched(1, 8192, 2048)).unwrap();
    let dir = temp_dir("calibrate-refuse");
    let out = dir.join("p.yaml");
    let o = simctl_guarded(&["calibrate", "--model", "fake-model", "--endpoint", &e.url(), "--quick", "--out", out.to_str().unwrap()]);
    let se = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{se}");
    assert!(se.contains("error: the samples cannot determine the step model: c4 per decode sequence cannot be told apart from"), "{se}");
    assert!(se.contains("it needs decode probes at more than one batch size"), "{se}");
    assert!(!out.exists(), "no profile is written");
}

#[test]
fn engine_errors_and_stalls_give_clear_errors() {
    let e = FakeEngine::start(batched(MAX_SEQS, BUDGET, 4096)).unwrap();
    e.inject(Fault::Status { code: 500, body: "engine core died".into() }, None);
    let dir = temp_dir("calibrate-errors");
    let out = dir.join("p.yaml");
    let (url, outs) = (e.url(), out.display().to_string());
    let args = |extra: &[&'static str]| {
        let mut v: Vec<&str> = vec!["calibrate", "--model", "fake-model", "--endpoint", &url, "--quick", "--out", &outs];
        v.extend_from_slice(extra);
        v
    };
    let o = simctl_guarded(&args(&[]));
    let se = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(se.contains("error: warm-up: ") && se.contains("/v1/completions answered http 500: engine core died"), "{se}");
    e.clear_faults();
    e.inject(Fault::StallAfter { tokens: 0 }, None);
    let o = simctl_guarded(&args(&["--timeout", "1"]));
    let se = stderr(&o);
    assert!(se.contains("stalled: nothing received for 1s after 0 output tokens"), "{se}");
    let o = simctl_guarded(&["calibrate", "--model", "other", "--endpoint", &e.url(), "--out", out.to_str().unwrap()]);
    assert!(stderr(&o).contains("does not serve `other`; it serves: fake-model (pass one of those to --model)"), "{}", stderr(&o));
    let port = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
    let o =
        simctl_guarded(&["calibrate", "--model", "m", "--endpoint", &format!("http://127.0.0.1:{port}"), "--out", out.to_str().unwrap()]);
    assert!(stderr(&o).contains(&format!("health check: cannot connect to http://127.0.0.1:{port}/health")), "{}", stderr(&o));
    assert!(!out.exists());
}

/// Whether a process is alive (signal 0 only checks).
fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 sends nothing.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn read_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Ok(t) = std::fs::read_to_string(path)
            && let Ok(p) = t.trim().parse()
        {
            return p;
        }
        assert!(Instant::now() < deadline, "no pid file {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_launched_engine_that_dies_is_reported_with_its_log_and_leaves_nothing_behind() {
    let dir = temp_dir("calibrate-launch-dies");
    let out = dir.join("p.yaml");
    let pidfile = dir.join("child.pid");
    // The engine leaves a child in its process group and dies during start-up.
    let cmd = format!(
        "sleep 300 & echo $! > {}; echo loading {{model}} on port {{port}}; echo CUDA out of memory >&2; exit 3",
        pidfile.display()
    );
    let o = simctl_guarded(&["calibrate", "--model", "m", "--launch", &cmd, "--port", "18977", "--out", out.to_str().unwrap()]);
    let se = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{se}");
    assert!(
        se.contains("error: the engine exited (exit status: 3) before http://127.0.0.1:18977/health answered; last lines of its log"),
        "{se}"
    );
    assert!(se.contains("  loading m on port 18977\n  CUDA out of memory"), "{se}");
    assert!(!alive(read_pid(&pidfile)), "the engine's child was stopped with it");
    assert!(dir.join("p.engine.log").exists());
    let o = simctl_guarded(&["calibrate", "--model", "m", "--launch", "serve --port 8000", "--out", out.to_str().unwrap()]);
    assert!(stderr(&o).contains("--launch: the command `serve --port 8000` has no `{port}`"), "{}", stderr(&o));
}

#[test]
fn ctrl_c_while_waiting_for_a_launched_engine_stops_it() {
    let dir = temp_dir("calibrate-launch-ctrl-c");
    let out = dir.join("p.yaml");
    let pidfile = dir.join("engine.pid");
    // Never healthy: simctl waits for /health until interrupted.
    let cmd = format!("sleep 300 & echo $! > {}; wait # {{port}}", pidfile.display());
    let args = ["calibrate", "--model", "m", "--launch", cmd.as_str(), "--out", out.to_str().unwrap()];
    let child = Command::new(env!("CARGO_BIN_EXE_simctl")).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let engine = read_pid(&pidfile);
    assert!(alive(engine));
    // SAFETY: signals simctl, the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = crate::wait_guarded(child, &args, HANG_GUARD);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing written; the launched engine was stopped"), "{}", stderr(&o));
    assert!(!alive(engine), "the engine is gone");
    assert!(!out.exists());
}

#[test]
fn topology_without_a_gpu_says_so_in_one_line_and_shows_numa() {
    let dir = temp_dir("topology");
    let file = dir.join("topology.json");
    let o = simctl(&["topology", "--out", file.to_str().unwrap()]);
    let so = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for k in ["gpu_numa", "distance", "timestamp", "numa_nodes", "gpus", "cpu"] {
        assert!(v.get(k).is_some(), "{k} missing in {v}");
    }
    if v["gpus"].as_array().unwrap().is_empty() {
        let notes: Vec<&str> = so.lines().filter(|l| l.starts_with("note: no NVIDIA GPU found")).collect();
        assert_eq!(notes.len(), 1, "{so}");
        assert!(notes[0].ends_with("; showing the NUMA part only"), "{so}");
        assert!(so.contains("numa nodes (distance, 10 = local):"), "{so}");
    }
    let o = simctl(&["topology", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["distance"].as_array().is_some());
}

pub(crate) const PROFILE: &str = r#"format: 2
hardware: {name: "cpu: test", gpus: 1}
model: {name: tiny-llama, max_model_len: 4096}
engine: {name: vllm, version: 0.32.0, block_size: 128, max_batch_tokens: 2048, max_seqs: 128, gpu_memory_utilization: 0.92, chunked_prefill: true, prefix_caching: true}
kv_capacity_blocks: 4096
coefficients: {c0_step_s: 0.0013, c1_prefill_token_s: 2.5e-5, c2_prefill_token_sq_s: 9.0e-9, c3_prefill_context_s: 3.0e-8, c4_decode_seq_s: 6.4e-5, c5_decode_context_s: 3.5e-7, frontend_s: 0.003}
fit: {r2: 0.99, rmse_s: 0.003, samples: 30}
samples: []
"#;

fn scenario(dir: &Path, pool: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("p.yaml"), PROFILE).unwrap();
    let scn = format!(
        "model = llama_3_1_8b\nhardware cpu {{ profile = \"p.yaml\"\n cost = 1 $/h }}\npool serve {{ role = mixed\n instances = [1 x cpu]\n {pool} }}\nworkload {{ arrivals = poisson(2/s)\n prompt = uniform(100, 400)\n output = uniform(10, 40) }}\nrun {{ requests = 20 }}\n"
    );
    let f = dir.join("s.scn");
    std::fs::write(&f, scn).unwrap();
    f
}

#[test]
fn a_profile_gives_its_hardware_the_engine_settings_it_was_measured_with() {
    let dir = temp_dir("profile-defaults");
    let f = scenario(&dir, "");
    let o = simctl(&["check", "--print", f.to_str().unwrap()]);
    let so = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(so.contains("engine { max_batch_tokens = 2048; max_seqs = 128; chunked_prefill = true; block_size = 128; gpu_memory_utilization = 0.92; prefix_caching = true }"), "{so}");
    assert!(so.contains("frontend = 3000000ns") && so.contains("calibrated_tp = 1"), "{so}");
    // The scenario's own settings win.
    let f = scenario(&dir, "engine { max_seqs = 8 }");
    let so = stdout(&simctl(&["check", "--print", f.to_str().unwrap()]));
    assert!(so.contains("engine { max_batch_tokens = 2048; max_seqs = 8; chunked_prefill = true; block_size = 128;"), "{so}");
    let o = simctl(&["run", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_profile_measured_at_another_tp_degree_is_an_error() {
    let dir = temp_dir("profile-tp");
    let f = scenario(&dir, "tp = 2");
    let o = simctl(&["check", f.to_str().unwrap()]);
    let se = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{se}");
    assert!(se.contains("hardware `cpu` was calibrated at tp 1 (its profile's hardware.gpus), but instance `cpu0` runs at tp 2"), "{se}");
    assert!(se.contains("calibrate at tp 2"), "{se}");
}

#[test]
fn a_format_1_profile_is_refused_with_what_to_do() {
    let dir = temp_dir("profile-v1");
    let f = scenario(&dir, "");
    std::fs::write(dir.join("p.yaml"), PROFILE.replace("format: 2", "format: 1")).unwrap();
    let se = stderr(&simctl(&["check", f.to_str().unwrap()]));
    assert!(se.contains("has format 1, this simctl reads format 2") && se.contains("measure it again with `simctl calibrate`"), "{se}");
}

#[test]
fn a_profile_set_on_the_command_line_replaces_the_hardwares_performance_model() {
    let dir = temp_dir("profile-set");
    std::fs::write(dir.join("p.yaml"), PROFILE).unwrap();
    let scn = dir.join("s.scn");
    std::fs::write(
        &scn,
        "model = llama_3_1_8b\nhardware gpu { gpu = h100_sxm\n mfu = 0.5 }\npool serve { role = mixed\n instances = [1 x gpu] }\nworkload { arrivals = poisson(2/s)\n prompt = uniform(100, 400)\n output = uniform(10, 40) }\nrun { requests = 20 }\n",
    )
    .unwrap();
    let p = dir.join("p.yaml");
    let set = format!("hardware.gpu.profile={}", p.display());
    let o = simctl(&["check", "--print", scn.to_str().unwrap(), "--set", &set]);
    let so = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    // The profile's engine settings and step model, not the roofline's efficiencies.
    assert!(so.contains("calibrated_tp = 1") && so.contains("frontend = 3000000ns"), "{so}");
    assert!(!so.contains("mfu"), "{so}");
    // A path given with --set is relative to the working directory, and the error says so.
    let o = simctl(&["check", scn.to_str().unwrap(), "--set", "hardware.gpu.profile=no/such.yaml"]);
    let se = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{se}");
    assert!(se.contains("relative to the working directory"), "{se}");
    assert!(se.contains("1 problem found"), "one error, no cascade: {se}");
}

#[test]
fn calibrate_check_says_a_profile_no_longer_fits_an_engine_ten_times_slower() {
    use simctl_live::fake::{Batching, FakeSpec};
    let root = crate::repo_root();
    let tiny = root.join("validation/profiles/tiny-vllm-cpu.yaml");
    let small = crate::support::profile(&root.join("validation/profiles/small-vllm-cpu.yaml"));
    // The engine steps like the `small` preset (about ten times slower than `tiny`).
    let e = FakeEngine::start(FakeSpec {
        model: "tiny-llama".into(),
        block_size: small.engine.block_size,
        num_blocks: small.kv_capacity_blocks,
        batching: Some(Batching {
            cost: std::sync::Arc::new(small.cost()),
            max_batch_tokens: small.engine.max_batch_tokens,
            max_seqs: small.engine.max_seqs,
        }),
        ..FakeSpec::default()
    })
    .unwrap();
    let o = simctl_guarded(&["calibrate", "--check", tiny.to_str().unwrap(), "--endpoint", &e.url()]);
    let so = stdout(&o);
    assert_eq!(o.status.code(), Some(3), "{so}\n{}", stderr(&o));
    assert!(so.contains("the profile no longer fits this machine") && so.contains("faster than the engine"), "{so}");
    assert!(so.contains("stopped after"), "far off after the first probes: {so}");
    assert!(so.contains("note: the KV cache has"), "settings that differ are named: {so}");
    // A profile of another model is refused before anything is sent.
    let o = simctl_guarded(&["calibrate", "--check", tiny.to_str().unwrap(), "--endpoint", &e.url(), "--model", "other"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
