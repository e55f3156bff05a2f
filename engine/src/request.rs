//! Requests and their identifiers.

use crate::time::SimTime;
use crate::units::Tokens;

/// Identifier of a request, unique within a run, in arrival order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct RequestId(pub u64);

/// A request as the workload produces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Identifier.
    pub id: RequestId,
    /// Arrival time.
    pub arrival: SimTime,
    /// Prompt tokens (at most [`crate::units::MAX_TOKENS`]).
    pub prompt_tokens: Tokens,
    /// Output tokens to generate (at least 1, at most [`crate::units::MAX_TOKENS`]).
    pub output_tokens: Tokens,
    /// Priority, 0 is most important.
    pub priority: u8,
    /// Shared-prefix group (0: none). Requests of one group share their first
    /// `prefix_tokens` tokens (a system prompt, a few-shot header, a conversation so far).
    pub prefix_group: u32,
    /// Length of the shared prefix.
    pub prefix_tokens: Tokens,
    /// Request class (index into the workload's classes; 0 when there is one).
    pub class: u8,
    /// Prefix identity from a trace: one id per `trace_block_tokens` tokens of the prompt
    /// (Mooncake's `hash_ids`); equal ids mean equal content.
    pub trace_blocks: Option<std::sync::Arc<[u64]>>,
    /// Tokens per trace block (Mooncake: 512).
    pub trace_block_tokens: u32,
}

impl Request {
    /// A request of `prompt` and `output` tokens arriving at `arrival`: priority 0, class 0,
    /// no shared prefix, no trace blocks (set those with struct update syntax).
    pub fn plain(id: u64, arrival: SimTime, prompt: u32, output: u32) -> Self {
        Request {
            id: RequestId(id),
            arrival,
            prompt_tokens: Tokens(prompt),
            output_tokens: Tokens(output),
            priority: 0,
            prefix_group: 0,
            prefix_tokens: Tokens::ZERO,
            class: 0,
            trace_blocks: None,
            trace_block_tokens: 0,
        }
    }
}
