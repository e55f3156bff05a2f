//! # simctl-live
//!
//! Live mode runs a scenario's workload against real OpenAI-compatible engines and measures
//! each request the way the simulator reports it. This crate holds the pieces that talk to
//! real engines:
//!
//! - [`sse`]: reading a streamed `/v1/completions` response (server-sent events) and turning
//!   token arrival times into TTFT, ITL and TPOT exactly as `vllm bench serve` does;
//! - [`client`]: an OpenAI-compatible client (streamed and plain completions with token-id
//!   prompts, `/v1/models`, `/metrics`, `/health`) with timeouts and clear errors;
//! - [`metrics`]: Prometheus text from `/metrics` and the vLLM figures in it;
//! - [`health`]: a circuit breaker per engine (out of routing when it fails, back when its
//!   probe answers) and each engine's availability;
//! - [`preflight`]: the scenario's requests checked against the engines' context before
//!   anything is sent (and `--clip`);
//! - [`eval`]: the original lab's cheap eval (a quality slice and a latency matrix) against
//!   one endpoint;
//! - [`fake`]: an in-process fake engine that tests drive all of the above against.
//!
//! ```no_run
//! use simctl_live::client::{ClientConfig, CompletionRequest, EngineClient, Prompt};
//! # async fn demo() -> Result<(), simctl_live::client::ClientError> {
//! let engine = EngineClient::new("http://127.0.0.1:8000", ClientConfig::default())?;
//! let model = engine.models().await?.remove(0);
//! let req = CompletionRequest { model: model.id, prompt: Prompt::Tokens(vec![11; 64]), max_tokens: 128, temperature: 0.0, ignore_eos: true };
//! let out = engine.complete_stream(&req).await?;
//! println!("{} tokens, ttft {:?}", out.output_tokens, out.ttft());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod client;
pub mod drive;
pub mod eval;
pub mod fake;
pub mod health;
pub mod metrics;
pub mod preflight;
pub mod prompt;
pub mod sse;

pub use sse::{SseError, StreamEvent, StreamTimer, parse_sse_line};
