//! The fake engine's batched mode: one scheduler thread runs steps as vLLM v1 does, so
//! concurrent requests share steps whose durations come from a known step cost model of
//! the batch shape. Calibration tests check that a fit recovers that model.
//!
//! Each step follows the engine's batching rule ([`simctl_engine::batching`], chunked
//! prefill on): the running sequences in admission order (a token for each decode, the next
//! chunk of a prompt), then waiting ones in arrival order under the token budget and the
//! sequence cap; a request reaches the scheduler after the model's
//! [`StepCostModel::request_latency`] (the frontend). Steps follow a virtual clock: a step
//! that starts late (the thread overslept) does not delay the ones after it, so averages
//! over many steps keep the model's durations. There is no KV capacity limit and no
//! preemption.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use simctl_engine::batching::{StepRule, blocks_read_again};
use simctl_engine::cost::{BatchShape, StepCostModel};

/// How the batched fake schedules and prices its steps.
#[derive(Clone, Debug)]
pub struct Batching {
    /// Step durations (and the frontend latency, [`StepCostModel::request_latency`]).
    pub cost: Arc<dyn StepCostModel>,
    /// Token budget of one step (`--max-num-batched-tokens`).
    pub max_batch_tokens: u32,
    /// Sequences in one step at most (`--max-num-seqs`).
    pub max_seqs: u32,
}

/// A request handed to the scheduler.
pub(super) struct Job {
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    /// Its cached prefix's blocks, as a hash chain (equal values: the same blocks).
    pub cached_blocks: Vec<u64>,
    /// Tokens per block.
    pub block_size: u32,
    pub max_tokens: u32,
    pub received: Instant,
    /// Output token indices, sent at the end of the step that produced them.
    pub tokens: tokio::sync::mpsc::UnboundedSender<u32>,
}

/// The scheduler's gauges, which `/metrics` publishes, and its log of steps.
#[derive(Debug, Default)]
pub(super) struct Gauges {
    pub running: AtomicU64,
    pub waiting: AtomicU64,
    pub steps: std::sync::Mutex<Vec<BatchShape>>,
}

struct Seq {
    job: Job,
    ready: Instant,
    /// Tokens in KV (prompt tokens computed so far, then generated ones).
    computed: u32,
    emitted: u32,
}

impl Seq {
    fn prefilling(&self) -> bool {
        self.computed < self.job.prompt_tokens
    }

    /// Tokens the next step would compute for it: the rest of its prompt, else one.
    fn remaining(&self) -> u32 {
        if self.prefilling() { self.job.prompt_tokens - self.computed } else { 1 }
    }
}

/// The last stretch of a wait is spun rather than slept: a sleeping thread wakes up to a
/// millisecond late on a busy machine, and token times are what calibration measures.
const SPIN: Duration = Duration::from_micros(1500);

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now + SPIN {
        std::thread::sleep(t - now - SPIN);
    }
    while Instant::now() < t {
        std::thread::yield_now();
    }
}

/// Runs until every sender of `jobs` is gone and no request is left.
pub(super) fn run(b: Batching, jobs: mpsc::Receiver<Job>, gauges: Arc<Gauges>) {
    let frontend = b.cost.request_latency();
    let frontend = Duration::from_nanos(frontend.as_nanos());
    let mut pending: VecDeque<Seq> = VecDeque::new();
    let mut waiting: VecDeque<Seq> = VecDeque::new();
    let mut running: Vec<Seq> = Vec::new();
    let mut clock = Instant::now();
    let mut open = true;
    let rule = StepRule { max_batch_tokens: b.max_batch_tokens, max_seqs: b.max_seqs.max(1), chunked: true };
    let seq = |job: Job| {
        let ready = job.received + frontend;
        Seq { computed: job.cached_tokens.min(job.prompt_tokens.saturating_sub(1)), emitted: 0, ready, job }
    };
    loop {
        if running.is_empty() && waiting.is_empty() {
            if pending.is_empty() {
                if !open {
                    return;
                }
                match jobs.recv() {
                    Ok(j) => pending.push_back(seq(j)),
                    Err(_) => return,
                }
            }
            // Idle: the next step starts when the first pending request is ready.
            let first = pending.iter().map(|s| s.ready).min().expect("one pending");
            sleep_until(first);
            clock = clock.max(first);
        }
        loop {
            match jobs.try_recv() {
                Ok(j) => pending.push_back(seq(j)),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // Requests ready by the step's start join the queue in the order they became ready.
        let mut ready: Vec<Seq> = Vec::new();
        let mut k = 0;
        while k < pending.len() {
            if pending[k].ready <= clock { ready.push(pending.remove(k).expect("in range")) } else { k += 1 }
        }
        ready.sort_by_key(|s| s.ready);
        waiting.extend(ready);
        if running.is_empty() && waiting.is_empty() {
            continue;
        }

        // Build the step: the running sequences, then admissions, under the engine's rule.
        let mut shape = BatchShape::default();
        let mut step = rule.step();
        let mut work: Vec<(usize, u32)> = Vec::new();
        for (i, s) in running.iter().enumerate() {
            if let Some(chunk) = step.take_running(s.remaining()) {
                if s.prefilling() {
                    shape.add_prefill_chunk(chunk, s.computed);
                } else {
                    shape.add_decode_cached(s.computed, s.job.cached_tokens);
                }
                work.push((i, chunk));
            }
        }
        while step.may_admit(running.len()) {
            let Some(chunk) = waiting.front().and_then(|s| step.offer_waiting(s.remaining())) else { break };
            let s = waiting.pop_front().expect("just seen");
            step.charge(chunk);
            shape.add_prefill_chunk(chunk, s.computed);
            work.push((running.len(), chunk));
            running.push(s);
        }
        // Cached blocks read by several decodes are cheap for all but one (the engine's rule,
        // [`blocks_read_again`]).
        if shape.decode_cached_tokens > 0 {
            let mut readers: Vec<&[u64]> = running
                .iter()
                .filter(|s| !s.prefilling() && s.job.cached_tokens.min(s.computed) > 0)
                .map(|s| s.job.cached_blocks.as_slice())
                .collect();
            let total: u64 = running.iter().filter(|s| !s.prefilling()).map(|s| u64::from(s.job.cached_tokens.min(s.computed))).sum();
            let bs = running.first().map_or(1, |s| s.job.block_size.max(1));
            let again = blocks_read_again(&mut readers, |b| *b) * u64::from(bs);
            shape.decode_cached_tokens -= total - again.min(total);
        }
        // As vLLM's gauges: requests still in the frontend count in neither.
        gauges.running.store(running.len() as u64, Ordering::Relaxed);
        gauges.waiting.store(waiting.len() as u64, Ordering::Relaxed);
        super::lock(&gauges.steps).push(shape);
        let dur = b.cost.step_time(&shape);
        let end = clock + Duration::from_nanos(dur.as_nanos());
        sleep_until(end);
        clock = end;

        // The step ends: chunks advance, finished prefills and decodes emit a token.
        let mut gone = vec![false; running.len()];
        for (i, chunk) in work {
            let s = &mut running[i];
            let was_prefill = s.prefilling();
            s.computed += chunk;
            if was_prefill && s.prefilling() {
                continue;
            }
            if s.job.tokens.send(s.emitted).is_err() {
                // The client went away: vLLM aborts the request.
                gone[i] = true;
                continue;
            }
            s.emitted += 1;
            if s.emitted >= s.job.max_tokens {
                gone[i] = true;
            }
        }
        let mut i = 0;
        running.retain(|_| {
            i += 1;
            !gone[i - 1]
        });
        gauges.running.store(running.len() as u64, Ordering::Relaxed);
    }
}
