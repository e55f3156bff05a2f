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

/// One `data:` payload of a streamed completion, with what the client needs to count tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunk {
    /// Generated text in this chunk (may be empty).
    pub text: String,
    /// Token ids in this chunk, when the engine returns them (vLLM's `return_token_ids`).
    /// One chunk can carry several tokens.
    pub token_ids: Option<Vec<u32>>,
    /// `usage.completion_tokens`, present in the last chunk when usage is asked for.
    pub completion_tokens: Option<u32>,
    /// Why generation stopped (`length`, `stop`), in the chunk that ends a choice.
    pub finish_reason: Option<String>,
}

impl Chunk {
    /// Whether the chunk carries output: text or token ids.
    pub fn has_output(&self) -> bool {
        !self.text.is_empty() || self.token_ids.as_ref().is_some_and(|t| !t.is_empty())
    }
}

/// What one `data:` line holds: a chunk, or the end of the stream.
#[derive(Clone, Debug, PartialEq)]
pub enum SseData {
    /// A completion chunk.
    Chunk(Chunk),
    /// `data: [DONE]`.
    Done,
}

/// Parses one line of an SSE stream into a [`Chunk`]; `None` for lines that carry no data
/// (comments, blank lines, `event:` fields).
pub fn parse_sse_data(line: &str) -> Option<Result<SseData, SseError>> {
    let data = line.strip_prefix("data:")?.trim();
    if data == "[DONE]" {
        return Some(Ok(SseData::Done));
    }
    let v: serde_json::Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => return Some(Err(SseError::NotJson(e.to_string()))),
    };
    if let Some(err) = v.get("error") {
        let msg = err.get("message").and_then(|m| m.as_str()).or_else(|| err.as_str()).unwrap_or("unknown");
        return Some(Err(SseError::Engine(msg.to_string())));
    }
    let choice = v.get("choices").and_then(|c| c.get(0));
    // /v1/completions streams `text`; /v1/chat/completions streams `delta.content`.
    let text = choice.and_then(|c| c.get("text").or_else(|| c.get("delta").and_then(|d| d.get("content")))).and_then(|t| t.as_str());
    let token_ids = choice
        .and_then(|c| c.get("token_ids"))
        .and_then(|t| t.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| u32::try_from(x).unwrap_or(u32::MAX)).collect());
    let completion_tokens =
        v.get("usage").and_then(|u| u.get("completion_tokens")).and_then(|n| n.as_u64()).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let finish_reason = choice.and_then(|c| c.get("finish_reason")).and_then(|f| f.as_str()).map(str::to_string);
    Some(Ok(SseData::Chunk(Chunk { text: text.unwrap_or_default().to_string(), token_ids, completion_tokens, finish_reason })))
}

/// Longest SSE line accepted: an engine that streams more without a newline is broken (or
/// hostile), and buffering it would grow without bound.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Splits a byte stream into SSE lines: pieces arrive as the network cuts them (a piece may
/// hold several lines, or part of one, or split a UTF-8 character).
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
    /// Bytes of `pending` already searched for a newline.
    searched: usize,
}

impl LineBuffer {
    /// Appends a piece of the stream.
    pub fn push(&mut self, piece: &[u8]) {
        self.pending.extend_from_slice(piece);
    }

    /// The next complete line, without its `\r\n` or `\n` (invalid UTF-8 replaced);
    /// `None` until one is complete; an error when a line passes [`MAX_LINE_BYTES`].
    pub fn next_line(&mut self) -> Option<Result<String, SseError>> {
        match self.pending[self.searched..].iter().position(|&b| b == b'\n') {
            Some(k) => {
                let nl = self.searched + k;
                let line = String::from_utf8_lossy(&self.pending[..nl]).trim_end_matches('\r').to_string();
                self.pending.drain(..=nl);
                self.searched = 0;
                Some(Ok(line))
            }
            None if self.pending.len() > MAX_LINE_BYTES => {
                let n = self.pending.len();
                self.pending.clear();
                self.searched = 0;
                Some(Err(SseError::NotJson(format!("a stream line runs past {n} bytes without a newline"))))
            }
            None => {
                self.searched = self.pending.len();
                None
            }
        }
    }
}

/// Parses one line of an SSE stream; `None` for lines that carry no data (comments, blank
/// lines, `event:` fields).
pub fn parse_sse_line(line: &str) -> Option<Result<StreamEvent, SseError>> {
    Some(parse_sse_data(line)?.map(|d| match d {
        SseData::Done => StreamEvent::Done,
        SseData::Chunk(c) if !c.text.is_empty() => StreamEvent::Text(c.text),
        SseData::Chunk(_) => StreamEvent::Empty,
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
            self.on_output(at);
        }
    }
    /// Feeds one chunk with output (text or token ids) received at `at`.
    pub fn on_output(&mut self, at: SimTime) {
        match self.last {
            None => self.first = Some(at),
            Some(prev) => self.itl.push(at - prev),
        }
        self.last = Some(at);
        self.chunks += 1;
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
    #[test]
    fn lines_come_whole_however_the_network_cuts_the_stream() {
        let stream = "data: {\"choices\":[{\"text\":\"h\u{e9}\"}]}\r\n\ndata: [DONE]\n";
        let bytes = stream.as_bytes();
        for cut in 1..bytes.len() {
            let mut b = LineBuffer::default();
            let mut lines = Vec::new();
            for piece in [&bytes[..cut], &bytes[cut..]] {
                b.push(piece);
                while let Some(l) = b.next_line() {
                    lines.push(l.unwrap());
                }
            }
            assert_eq!(lines, ["data: {\"choices\":[{\"text\":\"h\u{e9}\"}]}", "", "data: [DONE]"], "cut at {cut}");
        }
    }

    #[test]
    fn a_line_without_end_is_an_error_not_unbounded_memory() {
        let mut b = LineBuffer::default();
        let chunk = vec![b'x'; 1 << 20];
        let mut err = None;
        for _ in 0..20 {
            b.push(&chunk);
            if let Some(r) = b.next_line() {
                err = Some(r.unwrap_err());
                break;
            }
        }
        assert!(err.unwrap().to_string().contains("without a newline"));
        b.push(b"data: [DONE]\n");
        assert_eq!(b.next_line().unwrap().unwrap(), "data: [DONE]");
    }

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
    fn chunks_carry_token_ids_usage_and_finish_reason() {
        let c = parse_sse_data(r#"data: {"choices":[{"text":"ab","token_ids":[7,8],"finish_reason":null}]}"#);
        let Some(Ok(SseData::Chunk(c))) = c else { panic!("a chunk") };
        assert_eq!((c.text.as_str(), c.token_ids.as_deref(), c.finish_reason.as_deref()), ("ab", Some(&[7, 8][..]), None));
        assert!(c.has_output());
        // The usage chunk that ends a stream with include_usage has no choices.
        let c = parse_sse_data(r#"data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":9}}"#);
        let Some(Ok(SseData::Chunk(c))) = c else { panic!("a chunk") };
        assert_eq!(c.completion_tokens, Some(9));
        assert!(!c.has_output());
        // Token ids without text (tokens that decode to nothing) still count as output.
        let c = parse_sse_data(r#"data: {"choices":[{"text":"","token_ids":[3],"finish_reason":"length"}]}"#);
        let Some(Ok(SseData::Chunk(c))) = c else { panic!("a chunk") };
        assert!(c.has_output());
        assert_eq!(c.finish_reason.as_deref(), Some("length"));
        assert_eq!(parse_sse_data(r#"data: {"error":"boom"}"#), Some(Err(SseError::Engine("boom".into()))));
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
