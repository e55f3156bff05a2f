//! Integration tests of simctl: one test binary, one module per concern.

mod binding;
mod calibrate;
mod cli;
mod determinism;
mod engine_scale;
mod eval;
mod fidelity;
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

/// Text of stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Text of stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
