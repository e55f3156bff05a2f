//! Server-sent events of an OpenAI-style streaming completion, and per-request timing.

use simctl_engine::time::{SimDuration, SimTime};

/// What one `data:` line of a streamed completion says.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// A chunk with generated text (one or more tokens; vLLM sends one per chunk).
    Text(String),
    /// A chunk without text (role header, usage, finish reason only).
    Empty,
    /// `data: [DONE]`: the stream is over.
    Done,
}

/// A line that is not valid server-sent-event data of a completion.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SseError {
    /// The payload is not JSON.
    #[error("stream chunk is not JSON: {0}")]
    NotJson(String),
    /// The engine reported an error inside the stream.
    #[error("engine error in stream: {0}")]
    Engine(String),
}

/// Parses one line of an SSE stream; `None` for lines that carry no data (comments, blank
/// lines, `event:` fields).
pub fn parse_sse_line(line: &str) -> Option<Result<StreamEvent, SseError>> {
    let data = line.strip_prefix("data:")?.trim();
    if data == "[DONE]" {
        return Some(Ok(StreamEvent::Done));
    }
    let v: serde_json::Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => return Some(Err(SseError::NotJson(e.to_string()))),
    };
    if let Some(err) = v.get("error") {
        return Some(Err(SseError::Engine(err.get("message").and_then(|m| m.as_str()).unwrap_or("unknown").to_string())));
    }
    let choice = v.get("choices").and_then(|c| c.get(0));
    // /v1/completions streams `text`; /v1/chat/completions streams `delta.content`.
    let text = choice.and_then(|c| c.get("text").or_else(|| c.get("delta").and_then(|d| d.get("content")))).and_then(|t| t.as_str());
    Some(Ok(match text {
        Some(t) if !t.is_empty() => StreamEvent::Text(t.to_string()),
        _ => StreamEvent::Empty,
    }))
}

/// Times one streamed request as `vllm bench serve` does: TTFT at the first chunk with text,
/// an ITL sample for every later chunk, TPOT = (E2E − TTFT) / (output tokens − 1).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamTimer {
    sent: SimTime,
    first: Option<SimTime>,
    last: Option<SimTime>,
    chunks: u32,
    /// Gaps between consecutive chunks with text.
    pub itl: Vec<SimDuration>,
}

impl StreamTimer {
    /// A timer for a request sent at `sent` (times on any monotonic clock, in ns).
    pub fn new(sent: SimTime) -> Self {
        StreamTimer { sent, first: None, last: None, chunks: 0, itl: Vec::new() }
    }
    /// Feeds one event received at `at`.
    pub fn on_event(&mut self, ev: &StreamEvent, at: SimTime) {
        if let StreamEvent::Text(_) = ev {
            match self.last {
                None => self.first = Some(at),
                Some(prev) => self.itl.push(at - prev),
            }
            self.last = Some(at);
            self.chunks += 1;
        }
    }
    /// Time to first token.
    pub fn ttft(&self) -> Option<SimDuration> {
        self.first.map(|f| f - self.sent)
    }
    /// End-to-end latency.
    pub fn e2e(&self) -> Option<SimDuration> {
        self.last.map(|l| l - self.sent)
    }
    /// Time per output token given the output token count the engine reported.
    pub fn tpot(&self, output_tokens: u32) -> Option<SimDuration> {
        match (self.first, self.last) {
            (Some(f), Some(l)) if output_tokens > 1 => Some(SimDuration((l - f).as_nanos() / u64::from(output_tokens - 1))),
            _ => None,
        }
    }
    /// Chunks with text seen.
    pub fn chunks(&self) -> u32 {
        self.chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_completion_and_chat_chunks() {
        assert_eq!(parse_sse_line(r#"data: {"choices":[{"text":" hi","index":0}]}"#), Some(Ok(StreamEvent::Text(" hi".into()))));
        assert_eq!(parse_sse_line(r#"data: {"choices":[{"delta":{"content":"x"}}]}"#), Some(Ok(StreamEvent::Text("x".into()))));
        assert_eq!(parse_sse_line(r#"data: {"choices":[{"delta":{"role":"assistant"}}]}"#), Some(Ok(StreamEvent::Empty)));
        assert_eq!(parse_sse_line("data: [DONE]"), Some(Ok(StreamEvent::Done)));
        assert_eq!(parse_sse_line(": keep-alive"), None);
        assert_eq!(parse_sse_line(""), None);
        assert!(matches!(parse_sse_line("data: {oops"), Some(Err(SseError::NotJson(_)))));
        assert_eq!(parse_sse_line(r#"data: {"error":{"message":"too long"}}"#), Some(Err(SseError::Engine("too long".into()))));
    }

    #[test]
    fn timer_follows_the_metric_definitions() {
        let mut t = StreamTimer::new(SimTime(1_000));
        t.on_event(&StreamEvent::Empty, SimTime(2_000));
        for at in [11_000, 15_000, 21_000] {
            t.on_event(&StreamEvent::Text("a".into()), SimTime(at));
        }
        assert_eq!(t.ttft(), Some(SimDuration(10_000)));
        assert_eq!(t.e2e(), Some(SimDuration(20_000)));
        assert_eq!(t.itl, vec![SimDuration(4_000), SimDuration(6_000)]);
        assert_eq!(t.tpot(3), Some(SimDuration(5_000)));
        assert_eq!(t.tpot(1), None);
    }
}
