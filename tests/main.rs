//! Integration tests of simctl: one test binary, one module per concern.

mod binding;
mod calibrate;
mod cli;
mod determinism;
mod engine_scale;
mod eval;
mod fidelity;
mod hostile;
mod layers;
mod live;
mod outputs;
mod reports;
mod routing;
mod scenarios;
mod scorecard;
mod sweep;
mod validate;
mod validation;
mod workloads;

#[path = "support.rs"]
#[allow(dead_code)]
mod support;
pub use support::*;
