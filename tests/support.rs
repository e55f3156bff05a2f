//! Helpers shared by the integration test binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use simctl_engine::cost::FittedCost;
use simctl_engine::time::SimDuration;
use simctl_live::fake::{Batching, FakeSpec};

/// Runs the built `simctl` binary with `args`.
pub fn simctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simctl")).args(args).current_dir(repo_root()).output().expect("simctl runs")
}

/// The repository root (where `scenarios/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// A fresh, empty temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("simctl-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits for a `simctl` child, killing it and failing the test if it runs past `guard`: a
/// guard against hangs, not a timing assertion.
pub fn wait_guarded(mut child: std::process::Child, what: &[&str], guard: std::time::Duration) -> Output {
    let start = std::time::Instant::now();
    while child.try_wait().expect("simctl can be waited on").is_none() {
        if start.elapsed() > guard {
            let _ = child.kill();
            panic!("simctl {what:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("simctl output")
}

/// Runs `simctl` with `args` under [`wait_guarded`].
pub fn simctl_guarded(args: &[&str], guard: std::time::Duration) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_simctl"))
        .args(args)
        .current_dir(repo_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("simctl starts");
    wait_guarded(child, args, guard)
}

/// Text of stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Text of stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The fake's known step model. Each term adds tens of milliseconds to some probe, to stand
/// out of timing noise: an 80 ms frontend (HTTP overhead of a few hundred microseconds is well
/// within 2% of it), 5 ms per step, chunks of at most 2048 tokens (prompts up to 4095 take
/// two steps, so context attention shows without prefix probes too).
pub const TRUTH: [f64; 6] = [5e-3, 50e-6, 40e-9, 80e-9, 0.5e-3, 1e-6];
pub const FRONTEND_MS: u64 = 80;
/// Seconds per decode context token in prefix-cached blocks (a fifth of c5).
pub const CACHED_TRUTH: f64 = 0.2e-6;
pub const BUDGET: u32 = 2048;
pub const MAX_SEQS: u32 = 16;

pub fn batched(max_seqs: u32, max_batch_tokens: u32, max_model_len: u32) -> FakeSpec {
    let cost =
        FittedCost { c: TRUTH, frontend: SimDuration::from_millis(FRONTEND_MS), cached_context: Some(CACHED_TRUTH), beyond_cache: None };
    FakeSpec {
        model: "fake-model".into(),
        max_model_len,
        block_size: 16,
        num_blocks: 65536,
        batching: Some(Batching { cost: Arc::new(cost), max_batch_tokens, max_seqs }),
        ..FakeSpec::default()
    }
}

pub fn profile(path: &Path) -> simctl_engine::profile::Profile {
    simctl_calibration::read_profile(path).unwrap_or_else(|e| panic!("{e}"))
}
