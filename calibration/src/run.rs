//! Running a probe plan against an OpenAI-compatible engine and turning what comes back
//! into samples.

use std::time::{Duration, Instant};

use simctl_engine::profile::{ProfileSample, SampleMetric, SettingSource};
use simctl_engine::rng::mix;
use simctl_live::client::{ClientError, CompletionRequest, EngineClient, Prompt, StreamedCompletion};
use simctl_live::eval::latency::prompt_token_ids;
use simctl_live::metrics::EngineMetrics;

use crate::plan::{Probe, ProbeKind, Rough};

/// Why a calibration run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A request failed.
    #[error("{what}: {error}")]
    Request {
        /// What was being done.
        what: String,
        /// The client's error.
        error: ClientError,
    },
    /// The engine does not say something calibration needs.
    #[error("{0}")]
    Engine(String),
}

/// One request of a probe run, timed.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestTiming {
    /// Sent this long after the probe run started, seconds.
    pub sent_s: f64,
    /// Prompt tokens.
    pub prompt: u32,
    /// Of which shared with the request before it (prefix probes), tokens.
    pub shared_prefix: u32,
    /// Output tokens received.
    pub output: u32,
    /// Time to first token, seconds.
    pub ttft_s: f64,
    /// Time per output token after the first, seconds.
    pub tpot_s: Option<f64>,
    /// Largest gap between two chunks, seconds.
    pub max_itl_s: f64,
    /// Arrival of each chunk after the probe run started, seconds, with its tokens.
    pub chunks: Vec<(f64, u32)>,
}

/// One run of a probe.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeRun {
    /// Every request, in send order (the decode streams first, then a mixed probe's prefill).
    pub requests: Vec<RequestTiming>,
    /// The measured sample, when the run gave one.
    pub sample: Option<ProfileSample>,
    /// Chunking probes: the long steps the prompt's prefill took, as the streams saw them.
    pub long_steps: Option<u32>,
}

/// A probe with its runs and the sample kept (the median over runs).
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    /// The probe.
    pub probe: Probe,
    /// Its runs.
    pub runs: Vec<ProbeRun>,
    /// The median sample, when any run gave one.
    pub sample: Option<ProfileSample>,
}

/// A measured `max_num_seqs`.
#[derive(Clone, Debug, PartialEq)]
pub struct MaxSeqs {
    /// The value.
    pub value: u32,
    /// Measured (requests waited while this many ran), or assumed.
    pub source: SettingSource,
    /// What was seen, as a sentence.
    pub note: String,
}

/// Talks to one engine for a calibration: prompts unique to the run, timing on one clock.
#[derive(Debug)]
pub struct Driver {
    client: EngineClient,
    model: String,
    max_model_len: u32,
    seed: u64,
    counter: u64,
}

impl Driver {
    /// A driver for `model` (whose context holds `max_model_len` tokens) on `client`;
    /// `seed` makes the run's prompts new to the engine.
    pub fn new(client: EngineClient, model: String, max_model_len: u32, seed: u64) -> Self {
        Driver { client, model, max_model_len, seed, counter: 0 }
    }

    /// The client.
    pub fn client(&self) -> &EngineClient {
        &self.client
    }

    /// A prompt no earlier request of this run (or, with a new seed, of another run) sent.
    fn fresh(&mut self, n: u32) -> Vec<u32> {
        self.counter += 1;
        prompt_token_ids(mix(self.seed ^ mix(self.counter)), n)
    }

    /// Most output tokens a request with a prompt of `prompt` tokens may ask for.
    fn max_output(&self, prompt: u32) -> u32 {
        self.max_model_len.saturating_sub(prompt + 1).max(1)
    }

    fn fresh_request(&mut self, prompt: u32, max_tokens: u32) -> CompletionRequest {
        let p = self.fresh(prompt);
        self.request(p, max_tokens)
    }

    fn request(&self, prompt: Vec<u32>, max_tokens: u32) -> CompletionRequest {
        CompletionRequest { model: self.model.clone(), prompt: Prompt::Tokens(prompt), max_tokens, temperature: 0.0, ignore_eos: true }
    }

    /// `/metrics`, or `None` when the engine publishes none.
    pub async fn metrics(&self) -> Option<EngineMetrics> {
        self.client.metrics().await.ok()
    }

    /// Sends requests, each after its delay from now, all concurrently; returns their
    /// timings on one clock, in the order given.
    async fn send_all(&self, reqs: Vec<(Duration, CompletionRequest)>, what: &str) -> Result<Vec<RequestTiming>, RunError> {
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for (i, (delay, req)) in reqs.into_iter().enumerate() {
            let c = self.client.clone();
            set.spawn(async move {
                tokio::time::sleep_until(tokio::time::Instant::from_std(start + delay)).await;
                let sent = start.elapsed().as_secs_f64();
                let prompt = match &req.prompt {
                    Prompt::Tokens(t) => t.len() as u32,
                    Prompt::Text(_) => 0,
                };
                (i, sent, prompt, req.max_tokens, c.complete_stream(&req).await)
            });
        }
        let mut out: Vec<Option<RequestTiming>> = vec![None; set.len()];
        let mut first_err = None;
        while let Some(j) = set.join_next().await {
            let Ok((i, sent, prompt, asked, r)) = j else { continue };
            match r {
                Ok(c) => {
                    if c.output_tokens != asked && first_err.is_none() {
                        first_err = Some(RunError::Engine(format!(
                            "{what}: asked for {asked} output tokens with ignore_eos, got {}; the engine cut the output (is prompt plus output over its max model length?)",
                            c.output_tokens
                        )));
                    }
                    out[i] = Some(timing(sent, prompt, &c));
                }
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(RunError::Request { what: what.to_string(), error: e });
                        // One failed stream spoils the probe; the others are dropped (aborted).
                        set.abort_all();
                    }
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok(out.into_iter().map(|t| t.expect("every request answered")).collect())
    }

    /// Untimed requests that let the engine compile and allocate, and the rough time model
    /// the estimate and the pacing of mixed probes use.
    pub async fn warm_up(&mut self, max_model_len: u32) -> Result<Rough, RunError> {
        let long = (max_model_len / 2).max(32);
        let ttft = |t: &RequestTiming| t.ttft_s;
        for _ in 0..2 {
            let r = self.fresh_request(16, 1);
            self.send_all(vec![(Duration::ZERO, r)], "warm-up").await?;
        }
        let short_req = self.fresh_request(16, 1);
        let short = self.send_all(vec![(Duration::ZERO, short_req)], "warm-up").await?;
        let long_req = self.fresh_request(long, 1);
        let longr = self.send_all(vec![(Duration::ZERO, long_req)], "warm-up").await?;
        let one_req = self.fresh_request(16, 32);
        let one = self.send_all(vec![(Duration::ZERO, one_req)], "warm-up").await?;
        let eight: Vec<_> = (0..8).map(|_| (Duration::ZERO, self.fresh_request(16, 32))).collect();
        let eight = self.send_all(eight, "warm-up").await?;
        let (t0, t1) = (ttft(&short[0]), ttft(&longr[0]));
        let step1 = one[0].tpot_s.unwrap_or(t0);
        let step8 = eight.iter().filter_map(|t| t.tpot_s).fold(0.0, f64::max).max(step1);
        Ok(Rough {
            ttft_s: t0,
            prefill_token_s: ((t1 - t0) / f64::from(long - 16)).max(0.0),
            decode_step_s: step1,
            decode_seq_s: ((step8 - step1) / 7.0).max(0.0),
        })
    }

    /// Measures `max_num_seqs`: waves of long-running requests until some wait while the
    /// others run (`vllm:num_requests_running` then stops at the limit), up to `cap`
    /// requests; then aborts them all. When requests end before the engine saturates (a slow
    /// engine), it tries again with half as many, twice as long ones.
    pub async fn measure_max_seqs(&mut self, cap: u32, max_model_len: u32, kv_tokens: u64, rough: &Rough) -> Result<MaxSeqs, RunError> {
        const PROMPT: u32 = 16;
        // Outputs long enough to outlast the waves (the requests are aborted once read).
        const MIN_OUTPUT: u32 = 64;
        // Attempts with ever fewer, longer requests.
        const ATTEMPTS: u32 = 3;
        let Some(_) = self.metrics().await else {
            return Ok(MaxSeqs {
                value: crate::DEFAULT_MAX_SEQS,
                source: SettingSource::Assumed,
                note: format!("the engine publishes no /metrics: max_num_seqs assumed to be vLLM's default {}", crate::DEFAULT_MAX_SEQS),
            });
        };
        // All of them within half the KV cache (no preemption) and the context.
        let mut cap = cap.min((kv_tokens / 2 / u64::from(PROMPT + MIN_OUTPUT)).min(u64::from(u32::MAX)) as u32);
        let mut last = None;
        for _ in 0..ATTEMPTS {
            if cap < 2 {
                break;
            }
            let output =
                ((kv_tokens / 2 / u64::from(cap)).saturating_sub(u64::from(PROMPT)) as u32).min(max_model_len - PROMPT - 1).min(2048);
            let (result, ended_early) = self.saturate(cap, PROMPT, output, rough).await?;
            self.drained().await?;
            if result.source == SettingSource::Measured || !ended_early {
                return Ok(result);
            }
            last = Some(result);
            cap /= 2;
        }
        last.ok_or_else(|| {
            RunError::Engine(format!(
                "the KV cache ({kv_tokens} tokens) is too small to run concurrent requests while measuring max_num_seqs; give --max-seqs"
            ))
        })
    }

    /// One attempt of [`Driver::measure_max_seqs`]: the result, and whether some request
    /// ended before it was read (too short for this engine).
    async fn saturate(&mut self, cap: u32, prompt: u32, output: u32, rough: &Rough) -> Result<(MaxSeqs, bool), RunError> {
        let mut set = tokio::task::JoinSet::new();
        let (mut sent, mut wave, mut seen_max, mut ended) = (0u32, 8u32.min(cap), 0u32, 0u32);
        let result = loop {
            for _ in 0..wave {
                let c = self.client.clone();
                let r = self.fresh_request(prompt, output);
                set.spawn(async move { c.complete_stream(&r).await });
            }
            sent += wave;
            // Wait until the engine has seen them all (running + waiting + ended), then read.
            let deadline = Instant::now() + Duration::from_secs(30);
            let (mut running, mut waiting) = (0u32, 0u32);
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                while let Some(done) = set.try_join_next() {
                    match done {
                        Ok(Err(e)) => {
                            set.abort_all();
                            return Err(RunError::Request { what: "measuring max_num_seqs".into(), error: e });
                        }
                        _ => ended += 1,
                    }
                }
                if let Some(m) = self.metrics().await {
                    running = m.requests_running().unwrap_or(0.0) as u32;
                    waiting = m.requests_waiting().unwrap_or(0.0) as u32;
                    if running + waiting + ended >= sent {
                        break;
                    }
                }
            }
            // Requests that reach the scheduler during a step wait until it ends: read again
            // a few steps later, when admission has caught up.
            let settle = Duration::from_secs_f64((4.0 * rough.step_s(sent)).max(0.05));
            tokio::time::sleep(settle).await;
            if let Some(m) = self.metrics().await {
                running = m.requests_running().unwrap_or(0.0) as u32;
                waiting = m.requests_waiting().unwrap_or(0.0) as u32;
            }
            seen_max = seen_max.max(running);
            if waiting > 0 && running > 0 {
                break MaxSeqs {
                    value: running,
                    source: SettingSource::Measured,
                    note: format!("{running} requests ran while {waiting} waited ({sent} sent at once)"),
                };
            }
            if sent >= cap || ended > 0 {
                break MaxSeqs {
                    value: seen_max.max(1),
                    source: SettingSource::Assumed,
                    note: format!(
                        "{sent} concurrent requests never waited: max_num_seqs is at least {seen_max}, taken as that (give --max-seqs to probe more)"
                    ),
                };
            }
            wave = sent.min(cap - sent);
        };
        set.abort_all();
        while set.join_next().await.is_some() {}
        Ok((result, ended > 0))
    }

    /// Waits until the engine has let go of the aborted requests (it aborts those whose
    /// client went away).
    async fn drained(&self) -> Result<(), RunError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(m) = self.metrics().await
                && m.requests_running().unwrap_or(0.0) + m.requests_waiting().unwrap_or(0.0) == 0.0
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(RunError::Engine("the engine still runs requests a minute after they were aborted; is another client using it?".into()))
    }

    /// Runs one probe once. `rough` paces mixed probes (when their prefill is sent).
    pub async fn run_probe(&mut self, p: &Probe, rough: &Rough) -> Result<ProbeRun, RunError> {
        let what = p.label();
        match p.kind {
            ProbeKind::Prefill { prompt } => {
                let r = self.fresh_request(prompt, 1);
                let t = self.send_all(vec![(Duration::ZERO, r)], &what).await?;
                let sample = ProfileSample::new(p.class, SampleMetric::Ttft, prompt, 0, 0, 0, t[0].ttft_s);
                Ok(ProbeRun { requests: t, sample: Some(sample), long_steps: None })
            }
            ProbeKind::Decode { streams, context, output } => {
                let reqs = (0..streams).map(|_| (Duration::ZERO, self.fresh_request(context, output))).collect();
                let t = self.send_all(reqs, &what).await?;
                let sample = decode_window(&t).map(|(s, ctx)| ProfileSample::new(p.class, SampleMetric::Step, 0, 0, streams, ctx, s));
                Ok(ProbeRun { requests: t, sample, long_steps: None })
            }
            ProbeKind::Mixed { streams, context, output, prompt } => {
                // Sent once every stream should be decoding, a few steps in.
                let delay = rough.prefill_s(u64::from(streams) * u64::from(context)) * 1.5 + 4.0 * rough.step_s(streams);
                let mut reqs: Vec<_> = (0..streams).map(|_| (Duration::ZERO, self.fresh_request(context, output))).collect();
                reqs.push((Duration::from_secs_f64(delay), self.fresh_request(prompt, 1)));
                let t = self.send_all(reqs, &what).await?;
                let sample = mixed_step(&t).map(|(s, ctx)| ProfileSample::new(p.class, SampleMetric::Step, prompt, 0, streams, ctx, s));
                Ok(ProbeRun { requests: t, sample, long_steps: None })
            }
            ProbeKind::Chunks { streams, context, prompt } => {
                let delay = rough.prefill_s(u64::from(streams) * u64::from(context)) * 1.5 + 4.0 * rough.step_s(streams);
                // The streams decode one token a step: enough for the steps before the prompt
                // arrives, every chunk of it (at most one per candidate-budget's worth), and some.
                let output = ((delay / rough.step_s(streams)) as u32 + prompt.div_ceil(crate::plan::MIN_BUDGET_CANDIDATE / 2) + 32)
                    .min(self.max_output(context));
                let mut reqs: Vec<_> = (0..streams).map(|_| (Duration::ZERO, self.fresh_request(context, output))).collect();
                reqs.push((Duration::from_secs_f64(delay), self.fresh_request(prompt, 1)));
                let t = self.send_all(reqs, &what).await?;
                let long_steps = long_steps(&t);
                Ok(ProbeRun { requests: t, sample: None, long_steps })
            }
            ProbeKind::SharedDecode { streams, prefix, suffix, output } => {
                // The prefix first, alone, so every stream finds it in the cache.
                let shared = self.fresh(prefix);
                let first = self.request(shared.clone(), 1);
                let start = Instant::now();
                let mut t = self.send_all(vec![(Duration::ZERO, first)], &what).await?;
                let before = self.metrics().await;
                let reqs = (0..streams)
                    .map(|_| {
                        let tail = self.fresh(suffix);
                        (Duration::ZERO, self.request([shared.clone(), tail].concat(), output))
                    })
                    .collect();
                let offset = start.elapsed().as_secs_f64();
                let mut t2 = self.send_all(reqs, &what).await?;
                let after = self.metrics().await;
                for r in &mut t2 {
                    r.sent_s += offset;
                    r.chunks.iter_mut().for_each(|c| c.0 += offset);
                    r.shared_prefix = prefix;
                }
                // The hit, as the engine counted it; the whole prefix for every stream otherwise.
                let cached = match (before.and_then(|m| m.prefix_cache_hits()), after.and_then(|m| m.prefix_cache_hits())) {
                    (Some(b), Some(a)) if a >= b => (a - b) as u64,
                    _ => u64::from(streams) * u64::from(prefix),
                };
                let sample = decode_window(&t2).map(|(s, ctx)| {
                    let mut x = ProfileSample::new(p.class, SampleMetric::Step, 0, 0, streams, ctx, s);
                    // One stream reads the prefix as any context (from memory); the others
                    // read blocks it brought in: the engine's rule (Instance::build_batch).
                    x.decode_cached_tokens = (cached - cached / u64::from(streams.max(1))).min(ctx);
                    x
                });
                t.append(&mut t2);
                Ok(ProbeRun { requests: t, sample, long_steps: None })
            }
            ProbeKind::Prefix { prefix, suffix } => {
                let shared = self.fresh(prefix);
                let first = self.request(shared.clone(), 1);
                let start = Instant::now();
                let mut t = self.send_all(vec![(Duration::ZERO, first)], &what).await?;
                let before = self.metrics().await;
                let tail = self.fresh(suffix);
                let second = self.request([shared, tail].concat(), 1);
                let offset = start.elapsed().as_secs_f64();
                let mut t2 = self.send_all(vec![(Duration::ZERO, second)], &what).await?;
                // One clock for both requests: the second was sent after the first ended.
                for r in &mut t2 {
                    r.sent_s += offset;
                    r.chunks.iter_mut().for_each(|c| c.0 += offset);
                }
                let after = self.metrics().await;
                // The hit, as the engine counted it; whole blocks of the prefix otherwise.
                let cached = match (before.and_then(|m| m.prefix_cache_hits()), after.and_then(|m| m.prefix_cache_hits())) {
                    (Some(b), Some(a)) if a >= b => (a - b) as u32,
                    _ => prefix,
                };
                t2[0].shared_prefix = prefix;
                let sample = ProfileSample::new(p.class, SampleMetric::Ttft, prefix + suffix, cached, 0, 0, t2[0].ttft_s);
                t.append(&mut t2);
                Ok(ProbeRun { requests: t, sample: Some(sample), long_steps: None })
            }
        }
    }
}

fn timing(sent_s: f64, prompt: u32, c: &StreamedCompletion) -> RequestTiming {
    let secs = |d: simctl_engine::time::SimDuration| d.as_secs_f64();
    let ttft = c.ttft().map_or(0.0, secs);
    let mut t = sent_s + ttft;
    let mut chunks = Vec::with_capacity(c.chunk_tokens.len());
    for (i, &n) in c.chunk_tokens.iter().enumerate() {
        if i > 0 {
            t += c.timer.itl.get(i - 1).map_or(0.0, |d| secs(*d));
        }
        chunks.push((t, n));
    }
    RequestTiming {
        sent_s,
        prompt,
        shared_prefix: 0,
        output: c.output_tokens,
        ttft_s: ttft,
        tpot_s: c.timer.tpot(c.output_tokens).map(secs),
        max_itl_s: c.timer.itl.iter().map(|d| secs(*d)).fold(0.0, f64::max),
        chunks,
    }
}

/// Token index (0-based) of each chunk's last token.
fn last_token_index(chunks: &[(f64, u32)]) -> Vec<u32> {
    let mut k = 0u32;
    chunks
        .iter()
        .map(|&(_, n)| {
            k += n;
            k - 1
        })
        .collect()
}

/// Fewest tokens a decode window must span to give a step time.
const MIN_WINDOW_TOKENS: u32 = 4;

/// The mean step time while every stream decodes (after the last first token, before the
/// first stream ends), and the summed context at the middle of that window.
pub fn decode_window(streams: &[RequestTiming]) -> Option<(f64, u64)> {
    let start = streams.iter().filter_map(|s| s.chunks.first().map(|c| c.0)).fold(f64::MIN, f64::max);
    let end = streams.iter().filter_map(|s| s.chunks.last().map(|c| c.0)).fold(f64::MAX, f64::min);
    if end <= start {
        return None;
    }
    let mid = (start + end) / 2.0;
    let (mut steps, mut ctx) = (Vec::new(), 0u64);
    for s in streams {
        let idx = last_token_index(&s.chunks);
        let inside: Vec<usize> = (0..s.chunks.len()).filter(|&i| s.chunks[i].0 >= start && s.chunks[i].0 <= end).collect();
        let (&a, &b) = (inside.first()?, inside.last()?);
        let tokens = idx[b] - idx[a];
        if tokens < MIN_WINDOW_TOKENS {
            return None;
        }
        steps.push((s.chunks[b].0 - s.chunks[a].0) / f64::from(tokens));
        let m = (0..s.chunks.len()).min_by(|&i, &j| (s.chunks[i].0 - mid).abs().total_cmp(&(s.chunks[j].0 - mid).abs()))?;
        // The step producing token k attends to the prompt and the k − 1 tokens before it.
        ctx += u64::from(s.prompt) + u64::from(idx[m].saturating_sub(1));
    }
    Some((steps.iter().sum::<f64>() / steps.len() as f64, ctx))
}

/// Share of a stream's typical gap by which a decode token may arrive after the prefill's
/// first token and still count as the same step (an engine sends both at the end of it).
const SAME_STEP: f64 = 0.1;
/// Shortest plausible mixed step, as a share of the stream's typical decode gap (timing
/// jitter aside, it carries the same decodes plus prefill tokens).
const MIN_MIXED_GAP: f64 = 0.95;

/// The step that carried a mixed probe's prefill (its last chunk) with the decodes: for
/// each stream, the last gap ending by the prefill's first token (which the engine sends
/// with, or a frontend latency after, the decode tokens of that step), read together with
/// the gap after it. `None` when the
/// prefill came before every stream decoded, or no stream shows the step cleanly.
pub fn mixed_step(reqs: &[RequestTiming]) -> Option<(f64, u64)> {
    let (prefill, streams) = reqs.split_last()?;
    let first = prefill.chunks.first()?.0;
    if streams.iter().any(|s| s.chunks.first().is_none_or(|c| c.0 >= prefill.sent_s)) {
        return None;
    }
    let (mut gaps, mut ctx) = (Vec::new(), 0u64);
    for s in streams {
        let idx = last_token_index(&s.chunks);
        let mut all: Vec<f64> = s.chunks.windows(2).map(|w| w[1].0 - w[0].0).collect();
        let typical = crate::median(&mut all)?;
        let i = (1..s.chunks.len()).rev().find(|&i| s.chunks[i].0 <= first + SAME_STEP * typical)?;
        // The step must have ended after the prefill was sent, a chunk of several tokens
        // spans several steps, and a step with a prefill chunk is no shorter than the
        // stream's pure decode steps (a shorter gap is a late token before it).
        // The step's own tokens may come late (its output takes longer to process) without
        // delaying the next step: the gap before the next token makes up for it, so the
        // step is the two gaps less a typical one.
        let Some(&(next, next_tokens)) = s.chunks.get(i + 1) else { continue };
        let gap = next - s.chunks[i - 1].0 - typical;
        if s.chunks[i].0 > prefill.sent_s && s.chunks[i].1 == 1 && next_tokens == 1 && gap >= MIN_MIXED_GAP * typical {
            gaps.push(gap);
        }
        ctx += u64::from(s.prompt) + u64::from(idx[i].saturating_sub(1));
    }
    if gaps.len() * 2 < streams.len() {
        return None;
    }
    Some((crate::median(&mut gaps)?, ctx))
}

/// A gap this many times a stream's typical one is a step that carried prefill tokens.
const LONG_STEP: f64 = 2.0;
/// Share of a stream's typical gap by which its token of the last chunk's step may reach
/// the client after the prompt's first token.
const CHUNK_SLACK: f64 = 0.5;
/// Shortest chunk step, as a share of the longest one of the same prompt: a 254-token chunk
/// against the last of sixteen beside a 3,840-token context is about 0.28 on the CPU engine.
const MIN_CHUNK_SHARE: f64 = 0.1;

/// The long steps a chunking probe's prompt took: for each stream, the gaps longer than
/// [`LONG_STEP`] typical ones that end after the prompt was sent and by its first token
/// (give or take [`CHUNK_SLACK`]), and that are at least [`MIN_CHUNK_SHARE`] of the
/// longest of them; the median over the streams.
///
/// On vLLM's CPU engine, where the server and the engine share a core, two steps beside
/// the chunks come out long too: the one in which the prompt arrives (its token ids are
/// parsed) and the one after its first token (the request finishes). Measured: 2-4 typical
/// steps against 45-100 for 2,046-token chunks. The first is told apart by its length, the
/// second by its end, a whole step after the first token. The slack takes the decode token
/// of the last chunk's step reaching the client some milliseconds after the prompt's first
/// token (a busy machine).
pub fn long_steps(reqs: &[RequestTiming]) -> Option<u32> {
    let (prefill, streams) = reqs.split_last()?;
    let first = prefill.chunks.first()?.0;
    let mut counts: Vec<f64> = Vec::new();
    for s in streams {
        let mut all: Vec<f64> = s.chunks.windows(2).map(|w| w[1].0 - w[0].0).collect();
        let typical = crate::median(&mut all)?;
        // The streams must go on decoding past the prompt's first token.
        if s.chunks.last()?.0 <= first {
            return None;
        }
        let gaps: Vec<f64> = s
            .chunks
            .windows(2)
            .filter(|w| w[1].0 > prefill.sent_s && w[1].0 <= first + CHUNK_SLACK * typical)
            .map(|w| w[1].0 - w[0].0)
            .collect();
        let longest = gaps.iter().copied().fold(0.0, f64::max);
        let n = gaps.iter().filter(|&&g| g > LONG_STEP * typical && g >= MIN_CHUNK_SHARE * longest).count();
        counts.push(n as f64);
    }
    crate::median(&mut counts).map(|m| m.round() as u32)
}

/// The median sample of a probe's runs (contexts from the run closest to the median).
pub fn median_sample(runs: &[ProbeRun], held_out: bool) -> Option<ProfileSample> {
    let mut ok: Vec<ProfileSample> = runs.iter().filter_map(|r| r.sample).collect();
    if ok.is_empty() {
        return None;
    }
    ok.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let mut s = ok[(ok.len() - 1) / 2];
    let mut secs: Vec<f64> = ok.iter().map(|s| s.seconds).collect();
    s.seconds = crate::median(&mut secs)?;
    s.held_out = held_out;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(prompt: u32, sent: f64, times: &[f64]) -> RequestTiming {
        RequestTiming {
            sent_s: sent,
            prompt,
            shared_prefix: 0,
            output: times.len() as u32,
            ttft_s: times[0] - sent,
            tpot_s: None,
            max_itl_s: 0.0,
            chunks: times.iter().map(|&t| (t, 1)).collect(),
        }
    }

    #[test]
    fn the_decode_window_starts_after_the_last_first_token() {
        // Two streams, steps of 10 ms; the second starts two steps late.
        let a: Vec<f64> = (0..20).map(|k| 0.1 + 0.01 * f64::from(k)).collect();
        let b: Vec<f64> = (0..20).map(|k| 0.12 + 0.01 * f64::from(k)).collect();
        let (step, ctx) = decode_window(&[stream(100, 0.0, &a), stream(50, 0.0, &b)]).unwrap();
        assert!((step - 0.01).abs() < 1e-9, "{step}");
        // Window 0.12..0.29, middle 0.205: tokens 10/11 of a (ctx 100 + 10 − 1 or + 11 − 1)
        // and 8/9 of b.
        assert!((100 + 9 + 50 + 7..=100 + 11 + 50 + 9).contains(&ctx), "{ctx}");
        assert_eq!(decode_window(&[stream(1, 0.0, &a[..3]), stream(1, 0.0, &b[..3])]), None, "too short a window");
    }

    #[test]
    fn a_chunked_prompt_shows_as_long_steps_in_the_streams() {
        // 10 ms decode steps; a prompt sent at 0.105 is chunked into three 50 ms steps.
        let mut t: Vec<f64> = (0..11).map(|k| 0.01 * f64::from(k)).collect();
        t.extend([0.15, 0.20, 0.25, 0.26, 0.27, 0.28]);
        let s = stream(32, 0.0, &t[1..]);
        assert_eq!(long_steps(&[s.clone(), s.clone(), stream(4095, 0.105, &[0.2502])]), Some(3));
        assert_eq!(long_steps(&[s.clone(), stream(4095, 0.105, &[0.30])]), None, "the stream ended first");
        // The streams' tokens of the last chunk's step reach the client 4 ms after the
        // prompt's first token (a busy client): still three.
        let late: Vec<f64> = t[1..].iter().map(|&x| if x > 0.2 { x + 0.004 } else { x }).collect();
        let l = stream(32, 0.0, &late);
        assert_eq!(long_steps(&[l.clone(), l.clone(), stream(4095, 0.105, &[0.2502])]), Some(3));
        // As on vLLM's CPU engine: the step in which the prompt arrives and the one after
        // its first token are 2.5 typical steps long, the two chunks 47 and 95.
        let mut t: Vec<f64> = (0..11).map(|k| 0.01 * f64::from(k)).collect();
        t.extend([0.125, 0.60, 1.55, 1.575]);
        t.extend((1..20).map(|k| 1.575 + 0.01 * f64::from(k)));
        let s = stream(32, 0.0, &t[1..]);
        assert_eq!(long_steps(&[s.clone(), s.clone(), stream(4095, 0.105, &[1.5502])]), Some(2));
    }

    #[test]
    fn the_mixed_step_is_the_gap_ending_with_the_prefill() {
        let mut t: Vec<f64> = (0..10).map(|k| 0.1 + 0.01 * f64::from(k)).collect();
        // The step after 0.19 carries the prefill: 40 ms, then decodes go on.
        t.extend((0..5).map(|k| 0.23 + 0.01 * f64::from(k)));
        // Its tokens come 2 ms late; the next ones on time.
        let mut late = t.clone();
        late[10] += 0.002;
        let s1 = stream(32, 0.0, &t);
        let s2 = stream(32, 0.0, &t);
        // The prefill's first token comes with the decode tokens of its step, or a frontend
        // latency after them (but before the next step's).
        for at in [0.2301, 0.2299, 0.2340] {
            let prefill = stream(256, 0.195, &[at]);
            let (gap, ctx) = mixed_step(&[s1.clone(), s2.clone(), prefill]).unwrap();
            assert!((gap - 0.04).abs() < 1e-9, "{at}: {gap}");
            assert_eq!(ctx, 2 * (32 + 9));
        }
        let (gap, _) = mixed_step(&[stream(32, 0.0, &late), stream(32, 0.0, &late), stream(256, 0.195, &[0.2321])]).unwrap();
        assert!((gap - 0.04).abs() < 1e-9, "{gap}");
        let early = stream(256, 0.05, &[0.2301]);
        assert_eq!(mixed_step(&[s1, s2, early]), None, "sent before the streams decoded");
    }
}
