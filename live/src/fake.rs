//! An in-process fake of an OpenAI-compatible engine, for tests of everything that talks to
//! real engines (`simctl eval`, calibration, live mode).
//!
//! It serves `/health`, `/v1/models`, `/metrics` (vLLM's names) and `/v1/completions`
//! (streamed as server-sent events, or not) on `127.0.0.1` at a free port, from its own
//! thread, so blocking tests and child processes can use it alike. Output tokens come out
//! with delays from a programmable step-cost function; a prefix cache of full blocks makes
//! repeated prefixes cheaper, as in vLLM. Faults can be injected: HTTP errors, streams that
//! stall, connections that drop midway.
//!
//! By default each request is timed on its own ([`FakeSpec::step_cost`]). With
//! [`FakeSpec::batching`], concurrent requests share steps as in a real engine, priced by a
//! step cost model of the batch shape ([`Batching`]): what calibration and live-mode tests
//! need.
//!
//! ```
//! use simctl_live::fake::{FakeEngine, FakeSpec};
//! let engine = FakeEngine::start(FakeSpec::default()).unwrap();
//! assert!(engine.url().starts_with("http://127.0.0.1:"));
//! ```

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::{Method, Request, Response, StatusCode};
use simctl_engine::rng::{fnv1a, mix};
use tokio::sync::{mpsc, oneshot};

mod batched;

pub use batched::Batching;
use batched::{Gauges, Job};

/// What a step costs: the fake sleeps this long before emitting the next output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The prompt's prefill, before the first token.
    Prefill {
        /// Prompt tokens.
        prompt_tokens: u32,
        /// Of which served from the prefix cache.
        cached_tokens: u32,
    },
    /// One decode step, producing output token `index` (1 for the second token, ...).
    Decode {
        /// Index of the token produced.
        index: u32,
    },
}

/// A step-cost function.
pub type StepCost = Arc<dyn Fn(Step) -> Duration + Send + Sync>;
/// What to answer a text prompt with (`None`: filler tokens).
pub type Answerer = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A fault injected into `/v1/completions` responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally: queued first, lets requests through before a later fault.
    Healthy,
    /// Answer with this HTTP status and body instead.
    Status {
        /// Status code.
        code: u16,
        /// Body text.
        body: String,
    },
    /// Send this many output tokens, then nothing more while keeping the connection open.
    StallAfter {
        /// Tokens sent before the stall.
        tokens: u32,
    },
    /// Send this many output tokens, then close the connection without `[DONE]`.
    DropAfter {
        /// Tokens sent before the drop.
        tokens: u32,
    },
}

/// How the fake engine behaves.
#[derive(Clone)]
pub struct FakeSpec {
    /// Served model name.
    pub model: String,
    /// Largest prompt plus output, as `/v1/models` reports it. Requests that ask for more
    /// are silently cut to fit, as the real engine does.
    pub max_model_len: u32,
    /// Prefix-cache block size in tokens (`vllm:cache_config_info`).
    pub block_size: u32,
    /// KV blocks (`vllm:cache_config_info`).
    pub num_blocks: u64,
    /// Output tokens per SSE chunk (vLLM sends one; more tests multi-token chunks).
    pub tokens_per_chunk: u32,
    /// Whether `return_token_ids` is honoured (vLLM >= 0.10.2).
    pub returns_token_ids: bool,
    /// Whether `stream_options.include_usage` is honoured.
    pub returns_usage: bool,
    /// Delay of each step.
    pub step_cost: StepCost,
    /// Answers for text prompts.
    pub answer: Answerer,
    /// Batch concurrent requests into shared steps priced by a step cost model (`None`:
    /// time each request alone with `step_cost`).
    pub batching: Option<Batching>,
}

impl Default for FakeSpec {
    fn default() -> Self {
        FakeSpec {
            model: "fake-model".into(),
            max_model_len: 4096,
            block_size: 16,
            num_blocks: 4096,
            tokens_per_chunk: 1,
            returns_token_ids: true,
            returns_usage: true,
            step_cost: Arc::new(|_| Duration::ZERO),
            answer: Arc::new(|_| None),
            batching: None,
        }
    }
}

impl std::fmt::Debug for FakeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSpec")
            .field("model", &self.model)
            .field("max_model_len", &self.max_model_len)
            .field("block_size", &self.block_size)
            .field("tokens_per_chunk", &self.tokens_per_chunk)
            .field("batching", &self.batching)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Faults {
    /// `(fault, requests left)`; `None` left: every request.
    queue: Vec<(Fault, Option<usize>)>,
}

struct State {
    spec: FakeSpec,
    faults: Mutex<Faults>,
    requests: Mutex<Vec<serde_json::Value>>,
    cache: Mutex<HashSet<u64>>,
    gauges: Arc<Gauges>,
    /// The batched mode's scheduler (dropped to stop it).
    scheduler: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    queries: AtomicU64,
    hits: AtomicU64,
    /// Stopped like a process under SIGSTOP: connections are accepted, nothing is answered
    /// and streams send nothing until it is resumed.
    paused: std::sync::atomic::AtomicBool,
}

/// Returns once the engine is not paused.
async fn while_paused(st: &State) {
    while st.paused.load(Ordering::Relaxed) {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge the server for the others.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake engine; stopped when dropped.
pub struct FakeEngine {
    addr: std::net::SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    scheduler: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FakeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeEngine").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl FakeEngine {
    /// Starts serving on `127.0.0.1` at a free port.
    pub fn start(spec: FakeSpec) -> std::io::Result<FakeEngine> {
        Self::start_on(spec, 0)
    }

    /// Starts serving on `127.0.0.1:port` (0: a free port).
    pub fn start_on(spec: FakeSpec, port: u16) -> std::io::Result<FakeEngine> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let gauges = Arc::new(Gauges::default());
        let (jobs, scheduler) = match &spec.batching {
            Some(b) => {
                let (tx, rx) = std::sync::mpsc::channel();
                let (b, g) = (b.clone(), gauges.clone());
                let t = std::thread::Builder::new().name("fake-engine-scheduler".into()).spawn(move || batched::run(b, rx, g))?;
                (Some(tx), Some(t))
            }
            None => (None, None),
        };
        let state = Arc::new(State {
            spec,
            faults: Mutex::default(),
            requests: Mutex::default(),
            cache: Mutex::default(),
            gauges,
            scheduler: Mutex::new(jobs),
            queries: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            paused: std::sync::atomic::AtomicBool::new(false),
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = oneshot::channel();
        let st = state.clone();
        let thread = std::thread::Builder::new().name("fake-engine".into()).spawn(move || {
            rt.block_on(serve(listener, st, stopped));
            // Dropping the runtime here cancels streams still running (stalled ones too).
        })?;
        Ok(FakeEngine { addr, state, stop: Some(stop), thread: Some(thread), scheduler })
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Injects `fault` into the next `times` completion requests (`None`: all of them).
    /// Faults queue up: the first with requests left applies.
    pub fn inject(&self, fault: Fault, times: Option<usize>) {
        lock(&self.state.faults).queue.push((fault, times));
    }

    /// Stops answering, as a process under SIGSTOP: connections are still accepted, but no
    /// request gets an answer and no stream a token until [`FakeEngine::resume`].
    pub fn pause(&self) {
        self.state.paused.store(true, Ordering::Relaxed);
    }

    /// Answers again, as a stopped process continued (SIGCONT).
    pub fn resume(&self) {
        self.state.paused.store(false, Ordering::Relaxed);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        lock(&self.state.faults).queue.clear();
    }

    /// The steps the batched mode ran so far, in order (empty without batching).
    pub fn steps(&self) -> Vec<simctl_engine::cost::BatchShape> {
        lock(&self.state.gauges.steps).clone()
    }

    /// The JSON bodies of the completion requests received so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        lock(&self.state.requests).clone()
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // With the server gone no stream is left; closing the queue ends the scheduler.
        lock(&self.state.scheduler).take();
        if let Some(t) = self.scheduler.take() {
            let _ = t.join();
        }
    }
}

async fn serve(listener: std::net::TcpListener, state: Arc<State>, mut stopped: oneshot::Receiver<()>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    loop {
        let conn = tokio::select! {
            _ = &mut stopped => return,
            c = listener.accept() => c,
        };
        let Ok((stream, _)) = conn else { continue };
        // As uvicorn (asyncio sets TCP_NODELAY on every TCP transport): without it, Nagle's
        // algorithm holds a stream's first token back until the client's delayed ACK, 40 ms.
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
        });
    }
}

/// A response body: all at once, or chunks from a channel (an `Err` aborts the connection).
enum FakeBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

impl http_body::Body for FakeBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            FakeBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            FakeBody::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<FakeBody> {
    let mut r = Response::new(FakeBody::Full(Some(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, content_type.parse().expect("a valid header value"));
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<FakeBody> {
    reply(status, "application/json", v.to_string())
}

fn error(status: StatusCode, message: &str) -> Response<FakeBody> {
    json(status, &serde_json::json!({"object": "error", "message": message, "type": "BadRequestError", "code": status.as_u16()}))
}

async fn handle(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Result<Response<FakeBody>, Infallible> {
    // The batched mode's frontend latency runs from here: reading and parsing a long
    // token-id body is part of it, as in a real engine's frontend.
    let received = std::time::Instant::now();
    while_paused(&state).await;
    let spec = &state.spec;
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => reply(StatusCode::OK, "text/plain", String::new()),
        (&Method::GET, "/v1/models") => json(
            StatusCode::OK,
            &serde_json::json!({"object": "list", "data": [{"id": spec.model, "object": "model", "max_model_len": spec.max_model_len}]}),
        ),
        (&Method::GET, "/version") => json(StatusCode::OK, &serde_json::json!({"version": "fake"})),
        (&Method::GET, "/metrics") => reply(StatusCode::OK, "text/plain; version=0.0.4", metrics_text(&state)),
        (&Method::POST, "/v1/completions") => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return Ok(error(StatusCode::BAD_REQUEST, &format!("cannot read the body: {e}"))),
            };
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) => complete(state.clone(), v, received),
                Err(e) => error(StatusCode::BAD_REQUEST, &format!("the body is not JSON: {e}")),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    })
}

fn metrics_text(state: &State) -> String {
    let spec = &state.spec;
    let running = state.gauges.running.load(Ordering::Relaxed);
    let waiting = state.gauges.waiting.load(Ordering::Relaxed);
    let labels = format!("engine=\"0\",model_name=\"{}\"", spec.model);
    let usage = (running as f64 * 4.0 / spec.num_blocks.max(1) as f64).min(1.0);
    format!(
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{{labels}}} {running}.0\n\
         vllm:num_requests_waiting{{{labels}}} {waiting}.0\n\
         vllm:kv_cache_usage_perc{{{labels}}} {usage}\n\
         vllm:prefix_cache_queries_total{{{labels}}} {}.0\n\
         vllm:prefix_cache_hits_total{{{labels}}} {}.0\n\
         vllm:cache_config_info{{block_size=\"{}\",enable_prefix_caching=\"True\",engine=\"0\",num_gpu_blocks=\"{}\"}} 1.0\n",
        state.queries.load(Ordering::Relaxed),
        state.hits.load(Ordering::Relaxed),
        spec.block_size,
        spec.num_blocks,
    )
}

/// The prompt as token ids: lists as given; text as one token per 4 bytes, hashed.
fn prompt_tokens(prompt: &serde_json::Value) -> Option<(Vec<u64>, Option<String>)> {
    match prompt {
        serde_json::Value::Array(a) => Some((a.iter().map(|x| x.as_u64()).collect::<Option<Vec<u64>>>()?, None)),
        serde_json::Value::String(s) => {
            let ids = s.as_bytes().chunks(4).map(fnv1a).collect();
            Some((ids, Some(s.clone())))
        }
        _ => None,
    }
}

/// Tokens served from the prefix cache: leading full blocks seen before (at most all but
/// one prompt token, as vLLM always recomputes the last); the prompt's blocks are cached.
fn lookup_prefix(state: &State, ids: &[u64]) -> u32 {
    let bs = state.spec.block_size.max(1) as usize;
    let mut cache = lock(&state.cache);
    // Each block's hash chains its parent's, so a block matches only after the same prefix.
    let (mut h, mut cached, mut hit_run) = (0u64, 0usize, true);
    for block in ids.chunks_exact(bs) {
        for &t in block {
            h = mix(h ^ t);
        }
        if hit_run && cache.contains(&h) {
            cached += bs;
        } else {
            hit_run = false;
            cache.insert(h);
        }
    }
    u32::try_from(cached.min(ids.len().saturating_sub(1))).unwrap_or(u32::MAX)
}

fn take_fault(state: &State) -> Option<Fault> {
    let mut f = lock(&state.faults);
    let i = f.queue.iter().position(|(_, left)| left.is_none_or(|n| n > 0))?;
    let (fault, left) = &mut f.queue[i];
    if let Some(n) = left {
        *n -= 1;
    }
    Some(fault.clone()).filter(|f| *f != Fault::Healthy)
}

fn complete(state: Arc<State>, body: serde_json::Value, received: std::time::Instant) -> Response<FakeBody> {
    lock(&state.requests).push(body.clone());
    let spec = &state.spec;
    if body.get("model").and_then(|m| m.as_str()).is_some_and(|m| m != spec.model) {
        return error(StatusCode::NOT_FOUND, &format!("The model `{}` does not exist.", body["model"].as_str().unwrap_or_default()));
    }
    let Some((ids, text)) = body.get("prompt").and_then(prompt_tokens) else {
        return error(StatusCode::BAD_REQUEST, "`prompt` must be a string or a list of token ids");
    };
    if ids.is_empty() || ids.len() >= spec.max_model_len as usize {
        return error(StatusCode::BAD_REQUEST, &format!("This model's maximum context length is {} tokens", spec.max_model_len));
    }
    let fault = take_fault(&state);
    if let Some(Fault::Status { code, body }) = &fault {
        return reply(StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "text/plain", body.clone());
    }
    let prompt_len = u32::try_from(ids.len()).unwrap_or(u32::MAX);
    let asked = body.get("max_tokens").and_then(|m| m.as_u64()).unwrap_or(16);
    // The real engine cuts output silently to fit the context.
    let room = u64::from(spec.max_model_len - prompt_len);
    let max_tokens = u32::try_from(asked.min(room)).unwrap_or(u32::MAX);
    let ignore_eos = body.get("ignore_eos").and_then(|b| b.as_bool()).unwrap_or(false);
    let answer = text.as_deref().and_then(|t| (spec.answer)(t));
    let outputs = generate(answer.as_deref(), max_tokens, ignore_eos);
    let cached = lookup_prefix(&state, &ids);
    state.queries.fetch_add(u64::from(prompt_len), Ordering::Relaxed);
    state.hits.fetch_add(u64::from(cached), Ordering::Relaxed);
    let stream = body.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
    let with_ids = spec.returns_token_ids && body.get("return_token_ids").and_then(|b| b.as_bool()).unwrap_or(false);
    let usage =
        spec.returns_usage && body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(|b| b.as_bool()).unwrap_or(false);
    if let Some(jobs) = lock(&state.scheduler).as_ref() {
        let (tokens, rx) = mpsc::unbounded_channel();
        let bs = spec.block_size.max(1) as usize;
        // The cached blocks as a hash chain: equal chains, equal blocks (the engine's view).
        let mut chain = 0u64;
        let cached_blocks = ids[..cached as usize]
            .chunks(bs)
            .map(|b| {
                chain = mix(chain ^ b.iter().fold(0u64, |h, &t| mix(h ^ t)));
                chain
            })
            .collect();
        let job = Job {
            prompt_tokens: prompt_len,
            cached_tokens: cached,
            cached_blocks,
            block_size: bs as u32,
            max_tokens: outputs.len() as u32,
            received,
            tokens,
        };
        if outputs.is_empty() || jobs.send(job).is_err() {
            drop(rx);
        } else {
            let (tx, body_rx) = mpsc::channel(16);
            let st = state.clone();
            let session = Session { outputs, max_tokens, prompt_tokens: prompt_len, with_ids, usage, fault, stream };
            tokio::spawn(async move {
                let _ = stream_batched(&st, &tx, rx, session).await;
            });
            let mut r = Response::new(FakeBody::Stream(body_rx));
            let kind = if stream { "text/event-stream" } else { "application/json" };
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, kind.parse().expect("a valid header value"));
            return r;
        }
    }
    if !stream && let Some(f @ (Fault::StallAfter { .. } | Fault::DropAfter { .. })) = &fault {
        // A plain answer sends nothing until it is done: stall or drop before any byte.
        let (tx, rx) = mpsc::channel(1);
        let drop = matches!(f, Fault::DropAfter { .. });
        tokio::spawn(async move {
            if drop {
                let _ = tx.send(Err(std::io::Error::other("fault: connection dropped"))).await;
            } else {
                // `tx` lives in this task, so the body stays open until the server stops.
                std::future::pending::<()>().await;
            }
        });
        return Response::new(FakeBody::Stream(rx));
    }
    if !stream {
        let text: String = outputs.iter().map(|o| o.1.as_str()).collect();
        let finish = if (outputs.len() as u32) < max_tokens { "stop" } else { "length" };
        return json(
            StatusCode::OK,
            &serde_json::json!({
                "id": "cmpl-fake", "object": "text_completion", "model": spec.model,
                "choices": [{"index": 0, "text": text, "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_len, "completion_tokens": outputs.len(), "total_tokens": prompt_len as usize + outputs.len()},
            }),
        );
    }
    let (tx, rx) = mpsc::channel(16);
    let st = state.clone();
    tokio::spawn(async move {
        st.gauges.running.fetch_add(1, Ordering::Relaxed);
        let _ = stream_tokens(&st, &tx, outputs, max_tokens, prompt_len, cached, with_ids, usage, fault).await;
        st.gauges.running.fetch_sub(1, Ordering::Relaxed);
    });
    let mut r = Response::new(FakeBody::Stream(rx));
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, "text/event-stream".parse().expect("a valid header value"));
    r
}

/// `(token id, text)` of each output token.
fn generate(answer: Option<&str>, max_tokens: u32, ignore_eos: bool) -> Vec<(u32, String)> {
    // First token ids the fake emits; any id works, these read well in failures.
    const FIRST_ID: u32 = 100;
    let mut out: Vec<(u32, String)> = match answer {
        Some(a) => a.split_inclusive(' ').enumerate().map(|(i, w)| (FIRST_ID + i as u32, w.to_string())).collect(),
        None => Vec::new(),
    };
    if answer.is_none() || ignore_eos {
        let mut i = out.len() as u32;
        while out.len() < max_tokens as usize {
            out.push((FIRST_ID + i % 50, format!(" t{}", i % 50)));
            i += 1;
        }
    }
    out.truncate(max_tokens as usize);
    out
}

#[allow(clippy::too_many_arguments)] // one streaming session's settings, used once
async fn stream_tokens(
    st: &State,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    outputs: Vec<(u32, String)>,
    max_tokens: u32,
    prompt_tokens: u32,
    cached_tokens: u32,
    with_ids: bool,
    usage: bool,
    fault: Option<Fault>,
) -> Result<(), mpsc::error::SendError<Result<Bytes, std::io::Error>>> {
    let spec = &st.spec;
    let send = |v: serde_json::Value| Ok(Bytes::from(format!("data: {v}\n\n")));
    tokio::time::sleep((spec.step_cost)(Step::Prefill { prompt_tokens, cached_tokens })).await;
    let n = outputs.len() as u32;
    let per_chunk = spec.tokens_per_chunk.max(1) as usize;
    let mut sent = 0u32;
    for group in outputs.chunks(per_chunk) {
        for k in 0..group.len() as u32 {
            let index = sent + k;
            if index > 0 {
                tokio::time::sleep((spec.step_cost)(Step::Decode { index })).await;
            }
            while_paused(st).await;
            match &fault {
                Some(Fault::StallAfter { tokens }) if index >= *tokens => {
                    std::future::pending::<()>().await;
                }
                Some(Fault::DropAfter { tokens }) if index >= *tokens => {
                    return tx.send(Err(std::io::Error::other("fault: connection dropped"))).await;
                }
                _ => {}
            }
        }
        sent += group.len() as u32;
        let finish = (sent == n).then_some(if n < max_tokens { "stop" } else { "length" });
        let mut choice =
            serde_json::json!({"index": 0, "text": group.iter().map(|g| g.1.as_str()).collect::<String>(), "finish_reason": finish});
        if with_ids {
            choice["token_ids"] = group.iter().map(|g| g.0).collect::<Vec<u32>>().into();
        }
        tx.send(send(serde_json::json!({"id": "cmpl-fake", "object": "text_completion", "choices": [choice]}))).await?;
    }
    if usage {
        let u = serde_json::json!({"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n});
        tx.send(send(serde_json::json!({"id": "cmpl-fake", "object": "text_completion", "choices": [], "usage": u}))).await?;
    }
    tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await
}

/// One batched request's response settings.
struct Session {
    outputs: Vec<(u32, String)>,
    max_tokens: u32,
    prompt_tokens: u32,
    with_ids: bool,
    usage: bool,
    fault: Option<Fault>,
    stream: bool,
}

/// Forwards the tokens the scheduler produces for one request: as SSE chunks (the tokens
/// that arrived together in one chunk, as vLLM coalesces them), or as one JSON answer.
async fn stream_batched(
    st: &State,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    mut tokens: mpsc::UnboundedReceiver<u32>,
    s: Session,
) -> Result<(), mpsc::error::SendError<Result<Bytes, std::io::Error>>> {
    let model = &st.spec.model;
    let n = s.outputs.len();
    let send = |v: serde_json::Value| Ok(Bytes::from(format!("data: {v}\n\n")));
    let finish_reason = if (n as u32) < s.max_tokens { "stop" } else { "length" };
    let mut sent = 0usize;
    while sent < n {
        let Some(first) = tokens.recv().await else { break };
        let mut got = vec![first];
        while let Ok(i) = tokens.try_recv() {
            got.push(i);
        }
        let limit = match &s.fault {
            Some(Fault::StallAfter { tokens: t } | Fault::DropAfter { tokens: t }) => Some(*t as usize),
            _ => None,
        };
        let take = limit.map_or(got.len(), |l| got.len().min(l.saturating_sub(sent)));
        let group = &s.outputs[sent..sent + take];
        sent += take;
        if s.stream && !group.is_empty() {
            let finish = (sent == n).then_some(finish_reason);
            let mut choice =
                serde_json::json!({"index": 0, "text": group.iter().map(|g| g.1.as_str()).collect::<String>(), "finish_reason": finish});
            if s.with_ids {
                choice["token_ids"] = group.iter().map(|g| g.0).collect::<Vec<u32>>().into();
            }
            tx.send(send(serde_json::json!({"id": "cmpl-fake", "object": "text_completion", "model": model, "choices": [choice]}))).await?;
        }
        if take < got.len() {
            match s.fault {
                Some(Fault::DropAfter { .. }) => return tx.send(Err(std::io::Error::other("fault: connection dropped"))).await,
                _ => std::future::pending::<()>().await,
            }
        }
    }
    if !s.stream {
        let text: String = s.outputs.iter().map(|o| o.1.as_str()).collect();
        let v = serde_json::json!({
            "id": "cmpl-fake", "object": "text_completion", "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": s.prompt_tokens, "completion_tokens": n, "total_tokens": s.prompt_tokens as usize + n},
        });
        return tx.send(Ok(Bytes::from(v.to_string()))).await;
    }
    if s.usage {
        let u = serde_json::json!({"prompt_tokens": s.prompt_tokens, "completion_tokens": n, "total_tokens": s.prompt_tokens as usize + n});
        tx.send(send(serde_json::json!({"id": "cmpl-fake", "object": "text_completion", "choices": [], "usage": u}))).await?;
    }
    tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientConfig, ClientError, CompletionRequest, EngineClient, Prompt, TokenCounting};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    fn quick() -> ClientConfig {
        ClientConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(20),
            stall_timeout: Duration::from_millis(300),
            probe_timeout: Duration::from_secs(2),
        }
    }

    fn tokens_request(max_tokens: u32) -> CompletionRequest {
        CompletionRequest {
            model: "fake-model".into(),
            prompt: Prompt::Tokens((10..74).collect()),
            max_tokens,
            temperature: 0.0,
            ignore_eos: true,
        }
    }

    #[test]
    fn models_health_and_metrics() {
        let e = FakeEngine::start(FakeSpec { max_model_len: 2048, block_size: 32, num_blocks: 99, ..FakeSpec::default() }).unwrap();
        let c = EngineClient::new(&e.url(), quick()).unwrap();
        block_on(async {
            c.health().await.unwrap();
            let m = c.models().await.unwrap();
            assert_eq!((m[0].id.as_str(), m[0].max_model_len), ("fake-model", Some(2048)));
            let m = c.metrics().await.unwrap();
            assert_eq!((m.block_size(), m.num_gpu_blocks(), m.requests_running()), (Some(32), Some(99), Some(0.0)));
        });
    }

    #[test]
    fn streams_count_tokens_from_ids_then_usage_then_chunks() {
        let cases = [(true, true, TokenCounting::TokenIds), (false, true, TokenCounting::Usage), (false, false, TokenCounting::Chunks)];
        for (ids, usage, counted) in cases {
            // Three tokens per chunk: only token ids or usage count them right.
            let per_chunk = if counted == TokenCounting::Chunks { 1 } else { 3 };
            let spec = FakeSpec { tokens_per_chunk: per_chunk, returns_token_ids: ids, returns_usage: usage, ..FakeSpec::default() };
            let e = FakeEngine::start(spec).unwrap();
            let c = EngineClient::new(&e.url(), quick()).unwrap();
            let out = block_on(c.complete_stream(&tokens_request(10))).unwrap();
            assert_eq!((out.output_tokens, out.counted_by), (10, counted));
            assert_eq!(out.timer.chunks(), 10_u32.div_ceil(per_chunk));
            assert_eq!(out.finish_reason.as_deref(), Some("length"));
            assert!(out.text.starts_with(" t0 t1"), "{}", out.text);
            let body = &e.requests()[0];
            assert_eq!(
                (body["stream"].as_bool(), body["ignore_eos"].as_bool(), body["max_tokens"].as_u64()),
                (Some(true), Some(true), Some(10))
            );
            assert_eq!(body["prompt"].as_array().map(Vec::len), Some(64));
        }
    }

    #[test]
    fn timing_follows_the_step_costs() {
        let spec = FakeSpec {
            step_cost: Arc::new(|s| match s {
                Step::Prefill { .. } => Duration::from_millis(60),
                Step::Decode { .. } => Duration::from_millis(10),
            }),
            ..FakeSpec::default()
        };
        let e = FakeEngine::start(spec).unwrap();
        let c = EngineClient::new(&e.url(), quick()).unwrap();
        let out = block_on(c.complete_stream(&tokens_request(5))).unwrap();
        // Sleeps last at least as long as asked: lower bounds only, no upper bound on timing.
        assert!(out.ttft().unwrap().as_millis_f64() >= 60.0);
        assert!(out.decode().unwrap().as_millis_f64() >= 40.0);
        assert_eq!(out.timer.itl.len(), 4);
    }

    #[test]
    fn the_prefix_cache_serves_repeated_prefixes() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let spec = FakeSpec {
            step_cost: Arc::new(move |s| {
                if let Step::Prefill { cached_tokens, .. } = s {
                    lock(&log).push(cached_tokens);
                }
                Duration::ZERO
            }),
            ..FakeSpec::default()
        };
        let e = FakeEngine::start(spec).unwrap();
        let c = EngineClient::new(&e.url(), quick()).unwrap();
        block_on(async {
            c.complete_stream(&tokens_request(1)).await.unwrap();
            c.complete_stream(&tokens_request(1)).await.unwrap();
            let m = c.metrics().await.unwrap();
            assert_eq!((m.prefix_cache_queries(), m.prefix_cache_hits()), (Some(128.0), Some(63.0)));
        });
        assert_eq!(*lock(&seen), vec![0, 63], "all but the last prompt token come from the cache");
    }

    #[test]
    fn output_is_cut_to_fit_the_context_silently() {
        let e = FakeEngine::start(FakeSpec { max_model_len: 100, ..FakeSpec::default() }).unwrap();
        let c = EngineClient::new(&e.url(), quick()).unwrap();
        assert_eq!(block_on(c.complete_stream(&tokens_request(500))).unwrap().output_tokens, 36);
    }

    #[test]
    fn text_prompts_get_the_programmed_answer() {
        let spec = FakeSpec { answer: Arc::new(|p| p.contains("capital").then(|| "Paris\n".to_string())), ..FakeSpec::default() };
        let e = FakeEngine::start(spec).unwrap();
        let c = EngineClient::new(&e.url(), quick()).unwrap();
        let req = |q: &str| CompletionRequest { prompt: Prompt::Text(q.into()), ignore_eos: false, ..tokens_request(8) };
        let out = block_on(c.complete(&req("the capital of France?"))).unwrap();
        assert_eq!((out.text.as_str(), out.completion_tokens, out.finish_reason.as_deref()), ("Paris\n", Some(1), Some("stop")));
        let out = block_on(c.complete(&req("something else"))).unwrap();
        assert_eq!(out.completion_tokens, Some(8));
    }

    #[test]
    fn http_errors_carry_the_body() {
        let e = FakeEngine::start(FakeSpec::default()).unwrap();
        e.inject(Fault::Status { code: 500, body: "engine core died".into() }, Some(1));
        let c = EngineClient::new(&e.url(), quick()).unwrap();
        let err = block_on(c.complete_stream(&tokens_request(4))).unwrap_err();
        assert!(matches!(&err, ClientError::Status { status: 500, body, .. } if body == "engine core died"), "{err}");
        assert!(err.to_string().contains("/v1/completions answered http 500: engine core died"), "{err}");
        // The fault was for one request only.
        assert_eq!(block_on(c.complete_stream(&tokens_request(4))).unwrap().output_tokens, 4);
        let wrong = CompletionRequest { model: "other".into(), ..tokens_request(4) };
        let err = block_on(c.complete(&wrong)).unwrap_err().to_string();
        assert!(err.contains("http 404: The model `other` does not exist."), "{err}");
    }

    #[test]
    fn stalled_streams_time_out() {
        let e = FakeEngine::start(FakeSpec::default()).unwrap();
        e.inject(Fault::StallAfter { tokens: 3 }, None);
        let c = EngineClient::new(&e.url(), quick()).unwrap();
        let err = block_on(c.complete_stream(&tokens_request(10))).unwrap_err();
        assert!(matches!(err, ClientError::Stalled { tokens: 3, .. }), "{err}");
        assert!(err.to_string().contains("stalled: nothing received for 300ms after 3 output tokens"), "{err}");
    }

    #[test]
    fn plain_requests_that_stall_or_drop_fail_in_time() {
        let e = FakeEngine::start(FakeSpec::default()).unwrap();
        let c = EngineClient::new(&e.url(), quick()).unwrap();
        let req = CompletionRequest { prompt: Prompt::Text("hi".into()), ignore_eos: false, ..tokens_request(4) };
        e.inject(Fault::StallAfter { tokens: 0 }, Some(1));
        let err = block_on(c.complete(&req)).unwrap_err();
        assert!(matches!(err, ClientError::Timeout { after, .. } if after == Duration::from_millis(300)), "{err}");
        assert!(err.to_string().contains("/v1/completions did not answer within 300ms"), "{err}");
        e.inject(Fault::DropAfter { tokens: 0 }, Some(1));
        let err = block_on(c.complete(&req)).unwrap_err();
        assert!(matches!(err, ClientError::Http { .. }), "{err}");
        assert!(err.to_string().contains("/v1/completions failed: error decoding response body: "), "{err}");
        assert_eq!(block_on(c.complete(&req)).unwrap().completion_tokens, Some(4), "the faults were for one request each");
    }

    #[test]
    fn dropped_streams_are_reported_with_what_arrived() {
        let e = FakeEngine::start(FakeSpec::default()).unwrap();
        e.inject(Fault::DropAfter { tokens: 2 }, None);
        let c = EngineClient::new(&e.url(), quick()).unwrap();
        let err = block_on(c.complete_stream(&tokens_request(10))).unwrap_err();
        assert!(matches!(err, ClientError::Dropped { tokens: 2, .. }), "{err}");
        assert!(err.to_string().contains("broke off after 2 output tokens, before `[DONE]`"), "{err}");
    }

    fn batched(max_batch_tokens: u32, c: [f64; 6], frontend_ms: u64) -> FakeSpec {
        let cost = simctl_engine::cost::FittedCost {
            c,
            frontend: simctl_engine::time::SimDuration::from_millis(frontend_ms),
            cached_context: None,
            beyond_cache: None,
        };
        FakeSpec { batching: Some(Batching { cost: Arc::new(cost), max_batch_tokens, max_seqs: 8 }), ..FakeSpec::default() }
    }

    #[test]
    fn batched_mode_chunks_long_prompts_at_the_token_budget() {
        let e = FakeEngine::start(batched(32, [1e-3, 0.0, 0.0, 0.0, 0.0, 0.0], 0)).unwrap();
        let c = EngineClient::new(&e.url(), quick()).unwrap();
        let req = CompletionRequest { prompt: Prompt::Tokens((0..100).collect()), ..tokens_request(3) };
        let out = block_on(c.complete_stream(&req)).unwrap();
        assert_eq!((out.output_tokens, out.counted_by), (3, TokenCounting::TokenIds));
        let mut want = Vec::new();
        for (chunk, ctx) in [(32, 0), (32, 32), (32, 64), (4, 96)] {
            let mut b = simctl_engine::cost::BatchShape::default();
            b.add_prefill_chunk(chunk, ctx);
            want.push(b);
        }
        for ctx in [100, 101] {
            let mut b = simctl_engine::cost::BatchShape::default();
            b.add_decode(ctx);
            want.push(b);
        }
        assert_eq!(e.steps(), want);
    }

    #[test]
    fn batched_mode_shares_steps_between_concurrent_requests() {
        // A 30 ms frontend lets all four requests reach the scheduler before its first step.
        let e = FakeEngine::start(batched(2048, [5e-3, 0.0, 0.0, 0.0, 0.0, 0.0], 30)).unwrap();
        let c = EngineClient::new(&e.url(), quick()).unwrap();
        let outs = block_on(async {
            let reqs: Vec<CompletionRequest> = (0..4u32)
                .map(|k| CompletionRequest { prompt: Prompt::Tokens((k * 1000..k * 1000 + 64).collect()), ..tokens_request(5) })
                .collect();
            let futs: Vec<_> = reqs.iter().map(|r| c.complete_stream(r)).collect();
            let mut outs = Vec::new();
            for f in futs {
                outs.push(f);
            }
            let mut done = Vec::new();
            for o in tokio_join_all(outs).await {
                done.push(o.unwrap());
            }
            done
        });
        assert!(outs.iter().all(|o| o.output_tokens == 5));
        let steps = e.steps();
        let decodes: u32 = steps.iter().map(|s| s.decode_seqs).sum();
        let prefills: u32 = steps.iter().map(|s| s.prefill_tokens).sum();
        assert_eq!((decodes, prefills), (4 * 4, 4 * 64), "{steps:?}");
        assert!(steps.iter().any(|s| s.decode_seqs == 4), "the streams decode in shared steps: {steps:?}");
        // The last chunk can reach the client before the engine has counted the request out:
        // the gauges settle to zero within moments.
        let mut gauges = (None, None);
        for _ in 0..200 {
            let m = block_on(c.metrics()).unwrap();
            gauges = (m.requests_running(), m.requests_waiting());
            if gauges == (Some(0.0), Some(0.0)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(gauges, (Some(0.0), Some(0.0)));
    }

    /// Polls futures together on one task (no extra dependency for `join_all`).
    async fn tokio_join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
        let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
        let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
                if o.is_none() {
                    match f.as_mut().poll(cx) {
                        Poll::Ready(v) => *o = Some(v),
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending { Poll::Pending } else { Poll::Ready(()) }
        })
        .await;
        out.into_iter().map(|o| o.expect("ready")).collect()
    }

    #[test]
    fn refused_connections_say_so() {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
        let c = EngineClient::new(&format!("http://127.0.0.1:{port}"), quick()).unwrap();
        let err = block_on(c.health()).unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
        assert!(err.to_string().starts_with(&format!("cannot connect to http://127.0.0.1:{port}/health")), "{err}");
    }
}
