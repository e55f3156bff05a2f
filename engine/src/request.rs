//! Requests and their identifiers.

use crate::time::SimTime;

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
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Output tokens to generate (at least 1).
    pub output_tokens: u32,
    /// Priority, 0 is most important.
    pub priority: u8,
    /// Shared-prefix group (0: none). Requests of one group share their first
    /// `prefix_tokens` tokens (a system prompt, a few-shot header, a conversation so far).
    pub prefix_group: u32,
    /// Length of the shared prefix in tokens.
    pub prefix_tokens: u32,
    /// Request class (index into the workload's classes; 0 when there is one).
    pub class: u8,
    /// Prefix identity from a trace: one id per `trace_block_tokens` tokens of the prompt
    /// (Mooncake's `hash_ids`); equal ids mean equal content.
    pub trace_blocks: Option<std::sync::Arc<[u64]>>,
    /// Tokens per trace block (Mooncake: 512).
    pub trace_block_tokens: u32,
}
