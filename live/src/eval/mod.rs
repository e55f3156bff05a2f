//! The original lab's cheap eval against one OpenAI-compatible endpoint: a quality slice
//! answered at temperature 0, then cold and warm requests at each decode length, one at a
//! time so that each latency is the engine's alone.
//!
//! This module measures; writing the run folder and scoring it belong to the caller
//! (`simctl eval` uses simctl-reports).

pub mod latency;
pub mod quality;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::client::{ClientConfig, ClientError, CompletionRequest, EngineClient, Prompt, TokenCounting};
use crate::metrics::EngineMetrics;
use latency::{CacheCase, LatencyPlan, PlannedRequest};
use quality::QualityItem;

/// What to run.
#[derive(Clone, Debug)]
pub struct EvalSpec {
    /// Base URL of the engine.
    pub endpoint: String,
    /// Served model to use; `None`: the first one `/v1/models` lists.
    pub model: Option<String>,
    /// Timeouts.
    pub client: ClientConfig,
    /// Questions of the quality slice (empty: no quality check).
    pub quality: Vec<QualityItem>,
    /// The latency matrix.
    pub latency: LatencyPlan,
    /// Raised (by Ctrl-C) to stop: the request in flight is abandoned and the outcome holds
    /// what finished before, with `interrupted` set.
    pub stop: Arc<AtomicBool>,
}

/// One answered question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QualityAnswer {
    /// The question.
    pub item: QualityItem,
    /// The prompt sent.
    pub prompt: String,
    /// The answer given (first line of the completion).
    pub prediction: String,
    /// Whether it matches.
    pub correct: bool,
}

/// One timed request.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySample {
    /// Request name (`cold-128-0`).
    pub id: String,
    /// Cache case.
    pub case: CacheCase,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Decode length it stands for.
    pub target_tokens: u32,
    /// Output tokens asked for.
    pub max_tokens: u32,
    /// Output tokens received.
    pub output_tokens: u32,
    /// How they were counted.
    pub counted_by: TokenCounting,
    /// Time to first token, ms.
    pub ttft_ms: f64,
    /// First to last token, ms.
    pub decode_ms: f64,
    /// Send to last token, ms.
    pub e2e_ms: f64,
}

/// What an eval measured.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalOutcome {
    /// The base URL used.
    pub endpoint: String,
    /// Served model used.
    pub model: String,
    /// Its context length, when `/v1/models` says.
    pub max_model_len: Option<u32>,
    /// Quality answers, in question order.
    pub answers: Vec<QualityAnswer>,
    /// Latency samples, in send order.
    pub samples: Vec<LatencySample>,
    /// Seconds from the first timed request's send to the last one's end.
    pub latency_window_s: f64,
    /// `/metrics` before the latency phase (`None`: the engine publishes none).
    pub metrics_before: Option<EngineMetrics>,
    /// `/metrics` after it.
    pub metrics_after: Option<EngineMetrics>,
    /// What was cut or could not be read, as sentences.
    pub notes: Vec<String>,
    /// Whether [`EvalSpec::stop`] ended the eval before every request was sent.
    pub interrupted: bool,
}

impl EvalOutcome {
    /// Prefix-cache hit rate over the latency phase, from the engine's counters.
    pub fn prefix_hit_rate(&self) -> Option<f64> {
        self.metrics_after.as_ref()?.prefix_hit_rate_since(self.metrics_before.as_ref()?)
    }
}

/// Why an eval stopped.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A request failed.
    #[error("{what}: {error}")]
    Request {
        /// What was being done (`latency request cold-128-0 (3 of 18)`).
        what: String,
        /// The client's error.
        error: ClientError,
    },
    /// The engine serves no model.
    #[error("{endpoint}/v1/models lists no model")]
    NoModel {
        /// The base URL.
        endpoint: String,
    },
    /// The model asked for is not served.
    #[error("the engine at {endpoint} does not serve `{model}`; it serves: {served}")]
    UnknownModel {
        /// The base URL.
        endpoint: String,
        /// What was asked.
        model: String,
        /// What is served, comma-separated.
        served: String,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Where an eval is, for progress displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// `quality` or `latency`.
    pub phase: &'static str,
    /// Requests of the phase done.
    pub done: usize,
    /// Requests of the phase in all.
    pub total: usize,
}

/// Runs the eval (blocking: it owns a single-threaded runtime); `progress` is called after
/// each request.
pub fn run(spec: &EvalSpec, progress: &mut dyn FnMut(Progress)) -> Result<EvalOutcome, EvalError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(EvalError::Runtime)?;
    rt.block_on(run_async(spec, progress))
}

/// `fut`, unless `stop` is raised first (checked every 50 ms): `None` then.
async fn or_stop<T>(stop: &AtomicBool, fut: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        r = fut => Some(r),
        _ = async { while !stop.load(Ordering::SeqCst) { tokio::time::sleep(std::time::Duration::from_millis(50)).await } } => None,
    }
}

fn at(what: impl Into<String>) -> impl FnOnce(ClientError) -> EvalError {
    let what = what.into();
    move |error| EvalError::Request { what, error }
}

/// [`run`] on the caller's runtime.
pub async fn run_async(spec: &EvalSpec, progress: &mut dyn FnMut(Progress)) -> Result<EvalOutcome, EvalError> {
    let client = EngineClient::new(&spec.endpoint, spec.client).map_err(at("endpoint"))?;
    let endpoint = client.base_url().to_string();
    client.health().await.map_err(at("health check"))?;
    let models = client.models().await.map_err(at("listing models"))?;
    let model = match &spec.model {
        None => models.first().cloned().ok_or_else(|| EvalError::NoModel { endpoint: endpoint.clone() })?,
        Some(name) => models.iter().find(|m| &m.id == name).cloned().ok_or_else(|| EvalError::UnknownModel {
            endpoint: endpoint.clone(),
            model: name.clone(),
            served: models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", "),
        })?,
    };
    let mut notes = Vec::new();
    if model.max_model_len.is_none() {
        notes.push("/v1/models gives no max_model_len: decode lengths were not checked against the context".to_string());
    }

    let mut answers = Vec::with_capacity(spec.quality.len());
    for (i, item) in spec.quality.iter().enumerate() {
        let prompt = quality::prompt(&item.question);
        let req = CompletionRequest {
            model: model.id.clone(),
            prompt: Prompt::Text(prompt.clone()),
            max_tokens: quality::ANSWER_MAX_TOKENS,
            temperature: 0.0,
            ignore_eos: false,
        };
        let Some(out) = or_stop(&spec.stop, client.complete(&req)).await else { break };
        let out = out.map_err(at(format!("quality question {} of {} ({})", i + 1, spec.quality.len(), item.task)))?;
        let prediction = quality::prediction(&out.text);
        let correct = quality::is_correct(item, &prediction);
        answers.push(QualityAnswer { item: item.clone(), prompt, prediction, correct });
        progress(Progress { phase: "quality", done: i + 1, total: spec.quality.len() });
    }

    let schedule = spec.latency.schedule(model.max_model_len);
    notes.extend(schedule.notes.iter().cloned());
    let metrics_before = scrape(&client, &mut notes).await;
    let stream = |r: &PlannedRequest| CompletionRequest {
        model: model.id.clone(),
        prompt: Prompt::Tokens(r.prompt.clone()),
        max_tokens: r.max_tokens,
        temperature: 0.0,
        ignore_eos: true,
    };
    let stopped = || spec.stop.load(Ordering::SeqCst);
    for p in schedule.priming.iter().take_while(|_| !stopped()) {
        if let Some(r) = or_stop(&spec.stop, client.complete_stream(&stream(p))).await {
            r.map_err(at("priming the warm prefix"))?;
        }
    }
    let total = schedule.requests.len();
    let mut samples = Vec::with_capacity(total);
    let started = Instant::now();
    for (i, r) in schedule.requests.iter().enumerate() {
        if stopped() {
            break;
        }
        let Some(out) = or_stop(&spec.stop, client.complete_stream(&stream(r))).await else { break };
        let out = out.map_err(at(format!("latency request {} ({} of {total})", r.id, i + 1)))?;
        let (Some(ttft), Some(e2e), Some(decode)) = (out.ttft(), out.e2e(), out.decode()) else {
            return Err(EvalError::Request {
                what: format!("latency request {} ({} of {total})", r.id, i + 1),
                error: ClientError::BadResponse {
                    url: format!("{endpoint}/v1/completions"),
                    reason: "the stream carried no output tokens".into(),
                },
            });
        };
        if out.output_tokens != r.max_tokens {
            notes.push(format!("{}: asked for {} tokens with ignore_eos, got {}", r.id, r.max_tokens, out.output_tokens));
        }
        samples.push(LatencySample {
            id: r.id.clone(),
            case: r.case,
            prompt_tokens: r.prompt.len() as u32,
            target_tokens: r.target_tokens,
            max_tokens: r.max_tokens,
            output_tokens: out.output_tokens,
            counted_by: out.counted_by,
            ttft_ms: ttft.as_millis_f64(),
            decode_ms: decode.as_millis_f64(),
            e2e_ms: e2e.as_millis_f64(),
        });
        progress(Progress { phase: "latency", done: i + 1, total });
    }
    let interrupted = stopped();
    if interrupted {
        notes.push(format!(
            "interrupted: {} of {} quality questions and {} of {total} latency requests finished; the figures cover them",
            answers.len(),
            spec.quality.len(),
            samples.len()
        ));
    }
    let latency_window_s = started.elapsed().as_secs_f64();
    let metrics_after = if metrics_before.is_some() { scrape(&client, &mut notes).await } else { None };
    Ok(EvalOutcome {
        endpoint,
        model: model.id,
        max_model_len: model.max_model_len,
        answers,
        samples,
        latency_window_s,
        metrics_before,
        metrics_after,
        notes,
        interrupted,
    })
}

/// `/metrics`, or a note saying why there is none (engines need not publish it).
async fn scrape(client: &EngineClient, notes: &mut Vec<String>) -> Option<EngineMetrics> {
    match client.metrics().await {
        Ok(m) => Some(m),
        Err(e) => {
            notes.push(format!("no engine metrics: {e}"));
            None
        }
    }
}
