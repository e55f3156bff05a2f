//! `simctl fake-engine`: an OpenAI-compatible stand-in for a vLLM engine, to try `simctl
//! live` and `simctl calibrate` without one, and for scripts and tests that launch engines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use simctl_engine::cost::FittedCost;
use simctl_engine::time::SimDuration;
use simctl_live::fake::{Batching, FakeEngine, FakeSpec};

/// Serve a fake engine: the vLLM HTTP API with a modelled GPU behind it.
///
/// Answers /health, /v1/models, /metrics (vLLM's gauges and counters: requests running and
/// waiting, KV usage, prefix cache queries and hits, cache_config_info) and streamed
/// /v1/completions with token-id prompts, `max_tokens`, `ignore_eos` and `return_token_ids`.
/// Requests are batched step by step like vLLM's scheduler (a token budget, a sequence cap,
/// chunked prefill, a prefix cache), each step lasting what a fitted step model says: the
/// one of --profile (a `simctl calibrate` profile, so the fake behaves like the measured
/// engine), or a small built-in one (about a tiny model on a CPU core). Output tokens are
/// filler. Runs until stopped (Ctrl-C, SIGTERM).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  simctl fake-engine --port 8011 &\n  simctl fake-engine --port 8012 &\n  simctl live --endpoint http://127.0.0.1:8011 \\\n      --endpoint http://127.0.0.1:8012\n  simctl fake-engine --port 8011 --profile profiles/tiny.yaml"
)]
pub struct FakeEngineArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8011)]
    port: u16,
    /// Served model name.
    #[arg(long, default_value = "fake-model")]
    model: String,
    /// Step model and scheduler limits from a `simctl calibrate` profile.
    #[arg(long, value_name = "FILE.yaml")]
    profile: Option<PathBuf>,
    /// Sequences in one step at most (`--max-num-seqs`; default: the profile's, else 64).
    #[arg(long)]
    max_seqs: Option<u32>,
    /// Token budget of one step (`--max-num-batched-tokens`; default: the profile's, else 2048).
    #[arg(long)]
    max_batch_tokens: Option<u32>,
    /// Tokens per KV block (default: the profile's, else 16).
    #[arg(long)]
    block_size: Option<u32>,
    /// KV blocks (default: the profile's, else 8192).
    #[arg(long)]
    blocks: Option<u64>,
    /// Longest prompt plus output.
    #[arg(long, default_value_t = 8192)]
    max_model_len: u32,
}

/// The built-in step model: 2 ms a step, 10 us a prefill token, 40 us a decoding sequence,
/// 1 ms of frontend per request (about the tiny model of real-engine.sh on one CPU core).
const BUILT_IN: FittedCost =
    FittedCost { c: [2e-3, 10e-6, 0.0, 0.0, 40e-6, 0.0], frontend: SimDuration(1_000_000), cached_context: None, beyond_cache: None };

pub fn run(a: FakeEngineArgs) -> Result<ExitCode> {
    let profile = match &a.profile {
        Some(p) => Some(simctl_calibration::read_profile(p).with_context(|| format!("cannot use the profile `{}`", p.display()))?),
        None => None,
    };
    let cost = profile.as_ref().map_or(BUILT_IN, |p| p.cost());
    let pick = |cli: Option<u32>, prof: Option<u32>, default: u32| cli.or(prof).unwrap_or(default).max(1);
    let spec = FakeSpec {
        model: a.model.clone(),
        max_model_len: a.max_model_len,
        block_size: pick(a.block_size, profile.as_ref().map(|p| p.engine.block_size), 16),
        num_blocks: a.blocks.or(profile.as_ref().map(|p| p.kv_capacity_blocks)).unwrap_or(8192).max(1),
        batching: Some(Batching {
            cost: Arc::new(cost),
            max_batch_tokens: pick(a.max_batch_tokens, profile.as_ref().map(|p| p.engine.max_batch_tokens), 2048),
            max_seqs: pick(a.max_seqs, profile.as_ref().map(|p| p.engine.max_seqs), 64),
        }),
        ..FakeSpec::default()
    };
    let engine = FakeEngine::start_on(spec, a.port).with_context(|| format!("cannot listen on 127.0.0.1:{}", a.port))?;
    eprintln!("fake engine serving `{}` on {} (Ctrl-C to stop)", a.model, engine.url());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
