//! A client for OpenAI-compatible engines (vLLM, SGLang and others): streamed and plain
//! `/v1/completions`, `/v1/models`, `/metrics` and `/health`, with timeouts and errors
//! that say what went wrong where.

use std::time::{Duration, Instant};

use simctl_engine::time::{SimDuration, SimTime};

use crate::metrics::{EngineMetrics, MetricsError};
use crate::sse::{SseData, SseError, StreamTimer, parse_sse_data};

/// Waiting for a TCP connection longer than this means nobody is listening usefully.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most time a whole non-streamed request, or a streamed one from send to `[DONE]`, may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Most time a stream may go without sending a byte (a first token after a long prefill
/// on a CPU engine takes seconds, not minutes).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Default limit of a probe (`/health`, `/v1/models`, `/version`, `/metrics`): an engine
/// that accepts the connection but does not answer is reported within seconds, not after a
/// request's timeout.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Error bodies are cut to this many characters in messages.
const MAX_BODY_CHARS: usize = 400;

/// Timeouts of an [`EngineClient`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Connecting to the engine.
    pub connect_timeout: Duration,
    /// A whole request.
    pub request_timeout: Duration,
    /// Silence: inside a stream, before its response headers, or for a whole plain
    /// (non-streamed) request, which sends nothing until it is complete.
    pub stall_timeout: Duration,
    /// A whole probe: `/health`, `/v1/models`, `/version`, `/metrics`.
    pub probe_timeout: Duration,
}

impl ClientConfig {
    /// The limit of a plain request: the stall limit, within the request limit.
    fn plain_timeout(&self) -> Duration {
        self.stall_timeout.min(self.request_timeout)
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }
}

/// What went wrong talking to an engine.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not an http(s) URL.
    #[error("invalid endpoint `{url}`: {reason}; give a base URL such as http://127.0.0.1:8000")]
    BadUrl {
        /// What was given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Nothing accepted the connection.
    #[error("cannot connect to {url}: {reason} (is the engine running and listening there?)")]
    Connect {
        /// The URL asked.
        url: String,
        /// The underlying error.
        reason: String,
    },
    /// No complete answer in time.
    #[error("{url} did not answer within {after:?}")]
    Timeout {
        /// The URL asked.
        url: String,
        /// The limit that passed.
        after: Duration,
    },
    /// The engine answered with an HTTP error.
    #[error("{url} answered http {status}: {body}")]
    Status {
        /// The URL asked.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The error message in the body (cut if long).
        body: String,
    },
    /// A stream went silent.
    #[error("the stream from {url} stalled: nothing received for {after:?} after {tokens} output tokens")]
    Stalled {
        /// The URL asked.
        url: String,
        /// The stall limit.
        after: Duration,
        /// Output tokens received before it stalled.
        tokens: u32,
    },
    /// A stream ended before `data: [DONE]`.
    #[error("the stream from {url} broke off after {tokens} output tokens, before `[DONE]`: {reason}")]
    Dropped {
        /// The URL asked.
        url: String,
        /// Output tokens received before it ended.
        tokens: u32,
        /// What the connection said.
        reason: String,
    },
    /// A stream chunk that is not a completion chunk, or an error the engine streamed.
    #[error("bad stream from {url}: {error}")]
    Stream {
        /// The URL asked.
        url: String,
        /// The parse error.
        error: SseError,
    },
    /// An answer that is not what the API defines.
    #[error("unexpected answer from {url}: {reason}")]
    BadResponse {
        /// The URL asked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another transport error.
    #[error("request to {url} failed: {reason}")]
    Http {
        /// The URL asked.
        url: String,
        /// The underlying error.
        reason: String,
    },
    /// `/metrics` is not Prometheus text.
    #[error("cannot read {url}: {error}")]
    Metrics {
        /// The URL asked.
        url: String,
        /// The parse error.
        error: MetricsError,
    },
}

/// A prompt: text, or token ids (which keep prompt lengths exact).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// Text, tokenised by the engine.
    Text(String),
    /// Token ids, passed as they are.
    Tokens(Vec<u32>),
}

/// A `/v1/completions` request.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionRequest {
    /// Served model name.
    pub model: String,
    /// The prompt.
    pub prompt: Prompt,
    /// Most output tokens.
    pub max_tokens: u32,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// Keep generating past end-of-sequence, so that output length is `max_tokens`.
    pub ignore_eos: bool,
}

impl CompletionRequest {
    fn body(&self, stream: bool) -> serde_json::Value {
        let prompt = match &self.prompt {
            Prompt::Text(t) => serde_json::Value::from(t.as_str()),
            Prompt::Tokens(ids) => serde_json::Value::from(ids.clone()),
        };
        let mut b = serde_json::json!({
            "model": self.model,
            "prompt": prompt,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "ignore_eos": self.ignore_eos,
            "stream": stream,
        });
        if stream {
            // vLLM (>= 0.10.2) returns each chunk's token ids, so chunks carrying several
            // tokens are counted right; usage in the last chunk is the fallback.
            b["return_token_ids"] = true.into();
            b["stream_options"] = serde_json::json!({ "include_usage": true });
        }
        b
    }
}

/// How a stream's output tokens were counted, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenCounting {
    /// From the token ids in the chunks.
    TokenIds,
    /// From `usage.completion_tokens`.
    Usage,
    /// One token per chunk with text (engines that return neither).
    Chunks,
}

/// A finished streamed completion and its timing.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamedCompletion {
    /// The generated text.
    pub text: String,
    /// Output tokens.
    pub output_tokens: u32,
    /// How `output_tokens` was counted.
    pub counted_by: TokenCounting,
    /// `usage.completion_tokens`, when the engine sent it.
    pub reported_tokens: Option<u32>,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
    /// Chunk arrival times: TTFT, ITL and E2E.
    pub timer: StreamTimer,
    /// Output tokens of each chunk with output, in order (from token ids; 1 per chunk
    /// without them), so per-token arrival times can be told even when chunks carry several.
    pub chunk_tokens: Vec<u32>,
}

impl StreamedCompletion {
    /// Time to first token.
    pub fn ttft(&self) -> Option<SimDuration> {
        self.timer.ttft()
    }
    /// End-to-end latency.
    pub fn e2e(&self) -> Option<SimDuration> {
        self.timer.e2e()
    }
    /// First token to last token (the lab's `decode_ms`).
    pub fn decode(&self) -> Option<SimDuration> {
        Some(SimDuration(self.e2e()?.as_nanos().saturating_sub(self.ttft()?.as_nanos())))
    }
}

/// A finished non-streamed completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// `usage.completion_tokens`.
    pub completion_tokens: Option<u32>,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
}

/// One served model, from `/v1/models`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// Served model name.
    pub id: String,
    /// Prompt plus output tokens the engine accepts (vLLM's `max_model_len`).
    pub max_model_len: Option<u32>,
}

/// A client for one engine.
#[derive(Clone, Debug)]
pub struct EngineClient {
    base: String,
    http: reqwest::Client,
    cfg: ClientConfig,
}

/// Makes ring rustls's process-wide crypto provider: reqwest is built without one (aws-lc
/// needs a C build). Later calls, or a provider installed by the host, leave it in place.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The message of an error and its sources, without repeats.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}

fn cut(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= MAX_BODY_CHARS { s.to_string() } else { format!("{}…", s.chars().take(MAX_BODY_CHARS).collect::<String>()) }
}

/// The message in an OpenAI-style error body (`{"error": {"message": ...}}` or vLLM's
/// `{"message": ...}`), or the body itself.
fn error_message(body: &str) -> String {
    let msg = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| {
        let m = v.get("error").and_then(|e| e.get("message").or(Some(e))).or_else(|| v.get("message"))?;
        m.as_str().map(str::to_string)
    });
    let text = msg.unwrap_or_else(|| body.to_string());
    if text.trim().is_empty() { "(empty body)".into() } else { cut(&text) }
}

impl EngineClient {
    /// A client for the engine at `endpoint` (`http://host:port`, with or without `/v1`).
    pub fn new(endpoint: &str, cfg: ClientConfig) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl { url: endpoint.to_string(), reason: reason.to_string() };
        let url = reqwest::Url::parse(endpoint.trim()).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(&format!("the scheme is `{}`, not http or https", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("it has no host"));
        }
        let mut base = url.as_str().trim_end_matches('/').to_string();
        if let Some(b) = base.strip_suffix("/v1") {
            base = b.to_string();
        }
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .build()
            .map_err(|e| ClientError::Http { url: base.clone(), reason: chain(&e) })?;
        Ok(EngineClient { base, http, cfg })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn transport(&self, url: &str, e: reqwest::Error, after: Duration) -> ClientError {
        // The URL leads every message already.
        let e = e.without_url();
        if e.is_connect() {
            ClientError::Connect { url: url.to_string(), reason: chain(&e) }
        } else if e.is_timeout() {
            ClientError::Timeout { url: url.to_string(), after }
        } else {
            ClientError::Http { url: url.to_string(), reason: chain(&e) }
        }
    }

    /// Sends a request and returns the response if its status is a success.
    async fn send(&self, url: &str, req: reqwest::RequestBuilder, wait: Duration) -> Result<reqwest::Response, ClientError> {
        let resp = match tokio::time::timeout(wait, req.send()).await {
            Err(_) => return Err(ClientError::Timeout { url: url.to_string(), after: wait }),
            Ok(r) => r.map_err(|e| self.transport(url, e, wait))?,
        };
        let status = resp.status();
        if !status.is_success() {
            let body = tokio::time::timeout(wait, resp.text()).await.ok().and_then(Result::ok).unwrap_or_default();
            return Err(ClientError::Status { url: url.to_string(), status: status.as_u16(), body: error_message(&body) });
        }
        Ok(resp)
    }

    async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = self.url(path);
        let wait = self.cfg.probe_timeout.min(self.cfg.plain_timeout());
        let resp = self.send(&url, self.http.get(&url).timeout(wait), wait).await?;
        resp.text().await.map_err(|e| self.transport(&url, e, wait))
    }

    async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value, ClientError> {
        let url = self.url(path);
        let wait = self.cfg.plain_timeout();
        let req = self.http.post(&url).timeout(wait).header("content-type", "application/json").body(body.to_string());
        let text = self.send(&url, req, wait).await?.text().await.map_err(|e| self.transport(&url, e, wait))?;
        serde_json::from_str(&text).map_err(|e| ClientError::BadResponse { url, reason: format!("not JSON ({e}): {}", cut(&text)) })
    }

    /// `GET /health`: Ok when the engine answers with a success status.
    pub async fn health(&self) -> Result<(), ClientError> {
        self.get_text("/health").await.map(|_| ())
    }

    /// `GET /version` (vLLM's): the engine's version, `None` when it has no such endpoint
    /// or the answer carries none.
    pub async fn version(&self) -> Result<Option<String>, ClientError> {
        match self.get_text("/version").await {
            Ok(text) => {
                Ok(serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v.get("version")?.as_str().map(str::to_string)))
            }
            Err(ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/models`: the served models.
    pub async fn models(&self) -> Result<Vec<ModelInfo>, ClientError> {
        let url = self.url("/v1/models");
        let text = self.get_text("/v1/models").await?;
        let bad = |reason: String| ClientError::BadResponse { url: url.clone(), reason };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e}): {}", cut(&text))))?;
        let data = v.get("data").and_then(|d| d.as_array()).ok_or_else(|| bad("no `data` list of models".into()))?;
        data.iter()
            .map(|m| {
                let id = m.get("id").and_then(|i| i.as_str()).ok_or_else(|| bad("a model without an `id`".into()))?;
                let max_model_len = m.get("max_model_len").and_then(|n| n.as_u64()).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
                Ok(ModelInfo { id: id.to_string(), max_model_len })
            })
            .collect()
    }

    /// `GET /metrics`: the engine's Prometheus metrics.
    pub async fn metrics(&self) -> Result<EngineMetrics, ClientError> {
        let text = self.get_text("/metrics").await?;
        EngineMetrics::parse(&text).map_err(|error| ClientError::Metrics { url: self.url("/metrics"), error })
    }

    /// `POST /v1/completions` without streaming.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ClientError> {
        let url = self.url("/v1/completions");
        let v = self.post_json("/v1/completions", &req.body(false)).await?;
        let choice = v
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| ClientError::BadResponse { url: url.clone(), reason: format!("no `choices` in {}", cut(&v.to_string())) })?;
        Ok(Completion {
            text: choice.get("text").and_then(|t| t.as_str()).unwrap_or_default().to_string(),
            completion_tokens: v
                .get("usage")
                .and_then(|u| u.get("completion_tokens"))
                .and_then(|n| n.as_u64())
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            finish_reason: choice.get("finish_reason").and_then(|f| f.as_str()).map(str::to_string),
        })
    }

    /// `POST /v1/completions` with `stream: true`, timing every chunk as it arrives.
    pub async fn complete_stream(&self, req: &CompletionRequest) -> Result<StreamedCompletion, ClientError> {
        self.complete_stream_observed(req, || {}).await
    }

    /// [`EngineClient::complete_stream`], calling `on_first` as soon as the first output
    /// arrives (live mode's router hears of first tokens while the stream goes on).
    pub async fn complete_stream_observed(
        &self,
        req: &CompletionRequest,
        on_first: impl FnOnce(),
    ) -> Result<StreamedCompletion, ClientError> {
        let mut on_first = Some(on_first);
        let url = self.url("/v1/completions");
        let http_req = self.http.post(&url).header("content-type", "application/json").body(req.body(true).to_string());
        // Timed from the send: building the body (long token-id prompts) is the client's work.
        let started = Instant::now();
        let at = || SimTime(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let mut resp = self.send(&url, http_req, self.cfg.stall_timeout).await?;
        let mut timer = StreamTimer::new(SimTime::ZERO);
        let (mut text, mut ids, mut saw_ids, mut reported, mut finish) = (String::new(), 0u32, false, None, None);
        let mut chunk_tokens = Vec::new();
        let mut pending = crate::sse::LineBuffer::default();
        let tokens = |ids: u32, saw_ids: bool, timer: &StreamTimer| if saw_ids { ids } else { timer.chunks() };
        loop {
            let remaining = self.cfg.request_timeout.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(ClientError::Timeout { url, after: self.cfg.request_timeout });
            }
            let wait = self.cfg.stall_timeout.min(remaining);
            let piece = match tokio::time::timeout(wait, resp.chunk()).await {
                Err(_) if wait < self.cfg.stall_timeout => return Err(ClientError::Timeout { url, after: self.cfg.request_timeout }),
                Err(_) => return Err(ClientError::Stalled { url, after: self.cfg.stall_timeout, tokens: tokens(ids, saw_ids, &timer) }),
                Ok(Err(e)) => {
                    return Err(ClientError::Dropped { url, tokens: tokens(ids, saw_ids, &timer), reason: chain(&e.without_url()) });
                }
                Ok(Ok(None)) => {
                    return Err(ClientError::Dropped { url, tokens: tokens(ids, saw_ids, &timer), reason: "the connection closed".into() });
                }
                Ok(Ok(Some(b))) => b,
            };
            let now = at();
            pending.push(&piece);
            // Events end at a newline; a piece may hold several, or part of one.
            while let Some(line) = pending.next_line() {
                let line = line.map_err(|error| ClientError::Stream { url: url.clone(), error })?;
                let Some(parsed) = parse_sse_data(&line) else { continue };
                match parsed.map_err(|error| ClientError::Stream { url: url.clone(), error })? {
                    SseData::Done => {
                        let (output_tokens, counted_by) = if saw_ids {
                            (ids, TokenCounting::TokenIds)
                        } else if let Some(n) = reported {
                            (n, TokenCounting::Usage)
                        } else {
                            (timer.chunks(), TokenCounting::Chunks)
                        };
                        return Ok(StreamedCompletion {
                            text,
                            output_tokens,
                            counted_by,
                            reported_tokens: reported,
                            finish_reason: finish,
                            timer,
                            chunk_tokens,
                        });
                    }
                    SseData::Chunk(c) => {
                        if c.has_output() {
                            if let Some(f) = on_first.take() {
                                f();
                            }
                            timer.on_output(now);
                            chunk_tokens.push(c.token_ids.as_ref().map_or(1, |t| u32::try_from(t.len()).unwrap_or(u32::MAX)));
                        }
                        if let Some(t) = &c.token_ids {
                            saw_ids = true;
                            ids = ids.saturating_add(u32::try_from(t.len()).unwrap_or(u32::MAX));
                        }
                        text.push_str(&c.text);
                        reported = c.completion_tokens.or(reported);
                        finish = c.finish_reason.or(finish);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised_and_bad_ones_explained() {
        let c = EngineClient::new("http://127.0.0.1:8000/v1/", ClientConfig::default()).unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8000");
        assert_eq!(EngineClient::new("http://h:1", ClientConfig::default()).unwrap().base_url(), "http://h:1");
        let e = EngineClient::new("127.0.0.1:8000", ClientConfig::default()).unwrap_err().to_string();
        assert!(e.starts_with("invalid endpoint `127.0.0.1:8000`") && e.contains("http://127.0.0.1:8000"), "{e}");
        let e = EngineClient::new("ftp://h", ClientConfig::default()).unwrap_err().to_string();
        assert!(e.contains("scheme is `ftp`"), "{e}");
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(error_message(r#"{"error":{"message":"prompt too long","code":400}}"#), "prompt too long");
        assert_eq!(error_message(r#"{"object":"error","message":"no such model"}"#), "no such model");
        assert_eq!(error_message("Internal Server Error"), "Internal Server Error");
        assert_eq!(error_message(""), "(empty body)");
        assert_eq!(error_message(&"x".repeat(1000)).chars().count(), MAX_BODY_CHARS + 1);
    }

    #[test]
    fn streamed_requests_ask_for_token_ids_and_usage() {
        let r =
            CompletionRequest { model: "m".into(), prompt: Prompt::Tokens(vec![5, 6]), max_tokens: 3, temperature: 0.0, ignore_eos: true };
        let b = r.body(true);
        assert_eq!(b["prompt"], serde_json::json!([5, 6]));
        assert_eq!(
            (b["stream"].as_bool(), b["return_token_ids"].as_bool(), b["ignore_eos"].as_bool()),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!(b["stream_options"]["include_usage"], true);
        let b = CompletionRequest { prompt: Prompt::Text("hi".into()), ..r }.body(false);
        assert_eq!((b["prompt"].as_str(), b.get("return_token_ids")), (Some("hi"), None));
    }
}
