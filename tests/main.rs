//! Integration tests of simctl: one test binary, one module per concern.

mod binding;
mod calibrate;
mod cli;
mod determinism;
mod engine_scale;
mod eval;
mod fidelity;
mod live;
mod outputs;
mod reports;
mod routing;
mod scenarios;
mod scorecard;
mod sweep;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
