//! # simctl-live
//!
//! Live mode runs a scenario's workload against real OpenAI-compatible engines and measures
//! each request the way the simulator reports it. This crate starts with the part that must
//! match `vllm bench serve` exactly: reading a streamed `/v1/completions` response
//! (server-sent events) and turning token arrival times into TTFT, ITL and TPOT.
#![warn(missing_docs)]

mod sse;

pub use sse::{SseError, StreamEvent, StreamTimer, parse_sse_line};
