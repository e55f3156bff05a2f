//! One engine replica: a vLLM v1-like continuous-batching scheduler over a paged KV cache
//! with prefix caching.

use std::collections::VecDeque;

use crate::batching::{StepBudget, StepRule, blocks_read_again};
use crate::cost::{BatchShape, StepCostModel};
use crate::ids::InstanceId;
use crate::kv::KvCache;
use crate::seq::{SeqId, SeqSlab};
use crate::spec::{EngineSpec, Role, Scheduler};
use crate::time::SimTime;
use crate::units::{Blocks, Tokens};

/// An engine replica and its scheduler state.
#[derive(Debug)]
pub(crate) struct Instance {
    pub id: InstanceId,
    pub name: String,
    pub pool: usize,
    pub role: Role,
    pub hardware: usize,
    pub tp: u32,
    pub hourly_cost: f64,
    pub engine: EngineSpec,
    pub cost: std::sync::Arc<dyn StepCostModel>,
    pub kv: KvCache,
    /// FCFS queue of sequences not yet admitted (preempted ones go back to the front).
    pub waiting: VecDeque<SeqId>,
    /// Admitted sequences in admission order (the last is preempted first).
    pub running: Vec<SeqId>,
    /// Sequences routed here whose KV transfer waits for blocks to reserve (back-pressure).
    pub inbound: VecDeque<SeqId>,
    /// The batch of the step in flight: sequence and tokens computed for it.
    pub batch: Vec<(SeqId, u32)>,
    /// Scratch of [`Instance::build_batch`]: the step's decodes that read prefix-cached
    /// blocks.
    pub readers: Vec<SeqId>,
    /// Whether its cost model prices decode context in prefix-cached blocks apart
    /// ([`StepCostModel::prices_cached_context`]): otherwise the batch builder skips it.
    pub prices_cached: bool,
    pub busy: bool,
    pub wake_pending: bool,
    /// Sequences here with a migration requested.
    pub migrations_pending: u32,
    pub stats: InstanceCounters,
    /// SGLang's estimate of how much of their output running sequences will still generate
    /// (only read under [`Scheduler::Sglang`]).
    pub sglang: NewTokenRatio,
}

/// SGLang's `new_token_ratio` defaults (`SGLANG_INIT_NEW_TOKEN_RATIO`,
/// `SGLANG_MIN_NEW_TOKEN_RATIO_FACTOR`, `SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS`,
/// `SGLANG_CLIP_MAX_NEW_TOKENS`, `SGLANG_RETRACT_DECODE_STEPS`; sgl-project/sglang,
/// Apache-2.0).
const SGLANG_INIT_NEW_TOKEN_RATIO: f64 = 0.7;
const SGLANG_MIN_NEW_TOKEN_RATIO: f64 = SGLANG_INIT_NEW_TOKEN_RATIO * 0.14;
const SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS: f64 = 600.0;
const SGLANG_CLIP_MAX_NEW_TOKENS: u32 = 4096;
const SGLANG_RETRACT_DECODE_STEPS: u64 = 20;

/// Output tokens `s` may still generate, as SGLang's admission counts them (clipped).
fn future_tokens(s: &crate::seq::Seq) -> u32 {
    (s.req.output_tokens.get() - s.generated).min(SGLANG_CLIP_MAX_NEW_TOKENS)
}

/// SGLang's `new_token_ratio`: the share of their remaining output the KV cache keeps free
/// for running sequences when admitting more. It falls linearly with every decode step from
/// where it was last set (0.7 when idle, an estimate after a retraction) to 0.098. Kept as a
/// function of the decode steps taken, so steps applied in bulk (fast-forward) leave it
/// where stepping one by one would.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewTokenRatio {
    base: f64,
    since: u64,
}

impl Default for NewTokenRatio {
    fn default() -> Self {
        NewTokenRatio { base: SGLANG_INIT_NEW_TOKEN_RATIO, since: 0 }
    }
}

impl NewTokenRatio {
    fn reset(&mut self, decode_steps: u64, ratio: f64) {
        *self = NewTokenRatio { base: ratio, since: decode_steps };
    }
    fn ratio(&self, decode_steps: u64) -> f64 {
        let decay = (SGLANG_INIT_NEW_TOKEN_RATIO - SGLANG_MIN_NEW_TOKEN_RATIO) / SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS;
        (self.base - decay * (decode_steps - self.since) as f64).max(SGLANG_MIN_NEW_TOKEN_RATIO)
    }
}

/// Which running sequences [`Instance::schedule_running`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phases {
    All,
    /// Those with prompt tokens left.
    Prefill,
    /// Those decoding.
    Decode,
}

impl Phases {
    fn takes(self, s: &crate::seq::Seq) -> bool {
        match self {
            Phases::All => true,
            Phases::Prefill => !s.is_decoding(),
            Phases::Decode => s.is_decoding(),
        }
    }
}

/// How a waiting sequence joins a batch (see [`Instance::admission`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Admission {
    /// Leading blocks served from the prefix cache.
    pub hits: u32,
    /// Tokens whose KV it has once those are reused.
    pub computed: u32,
    /// Tokens it computes this step.
    pub chunk: u32,
    /// Fresh blocks it takes.
    pub need: Blocks,
}

/// Running totals kept while simulating.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InstanceCounters {
    pub depth_integral_ns: u128,
    pub depth_max: u32,
    pub last_change: SimTime,
    pub busy_ns: u64,
    pub steps: u64,
    /// Steps that were prefill batches (SGLang's rule only).
    pub prefill_steps: u64,
    pub preemptions: u64,
    pub kv_peak_used: u64,
    /// Prompt tokens looked up in the prefix cache at admission, and how many hit.
    pub prefix_queried: u64,
    pub prefix_hit: u64,
    pub migrations_out: u64,
    pub migrations_in: u64,
}

impl Instance {
    /// Requests at this instance: waiting plus running.
    pub fn depth(&self) -> u32 {
        (self.waiting.len() + self.running.len()) as u32
    }

    /// Integrates queue depth up to `now`; call before changing `waiting` or `running`.
    pub fn account(&mut self, now: SimTime) {
        let dt = now.since(self.stats.last_change).as_nanos();
        self.stats.depth_integral_ns += u128::from(dt) * u128::from(self.depth());
        self.stats.last_change = now;
    }

    /// Records the current depth as a candidate maximum; call after changing the queues.
    pub fn note_depth(&mut self) {
        self.stats.depth_max = self.stats.depth_max.max(self.depth());
    }

    /// Share of looked-up prompt tokens served from the prefix cache so far.
    pub fn prefix_hit_rate(&self) -> f64 {
        if self.stats.prefix_queried == 0 { 0.0 } else { self.stats.prefix_hit as f64 / self.stats.prefix_queried as f64 }
    }

    /// Builds the next step's batch into `self.batch` under the instance's
    /// [`Scheduler`]: vLLM's rule ([`Instance::build_mixed`]) or SGLang's
    /// ([`Instance::build_sglang`]).
    pub fn build_batch(&mut self, seqs: &mut SeqSlab, preempted: &mut Vec<SeqId>) -> BatchShape {
        self.batch.clear();
        let mut shape = BatchShape::default();
        if self.engine.scheduler == Scheduler::Sglang {
            self.build_sglang(seqs, preempted, &mut shape);
        } else {
            self.build_mixed(seqs, preempted, &mut shape);
        }
        self.stats.kv_peak_used = self.stats.kv_peak_used.max(self.kv.used().as_u64());
        if shape.decode_cached_tokens > 0 {
            self.first_readers_pay_in_full(seqs, &mut shape);
        }
        shape
    }

    /// vLLM v1: running sequences first (preempting the most recently admitted when KV
    /// blocks run out), then waiting ones in FCFS order under the token budget, the sequence
    /// cap and free KV blocks; a newly admitted sequence first reuses its longest cached
    /// prefix.
    fn build_mixed(&mut self, seqs: &mut SeqSlab, preempted: &mut Vec<SeqId>, shape: &mut BatchShape) {
        let mut step = self.rule().step();
        self.schedule_running(seqs, preempted, shape, &mut step, Phases::All);
        // vLLM v1 admits no new request in a step that had to preempt.
        if preempted.is_empty() {
            self.admit_waiting(seqs, shape, &mut step, None);
        }
    }

    /// SGLang: a prefill batch when there is prompt work it can schedule (the chunk of a
    /// partly prefilled sequence, then waiting sequences in FCFS order under the token
    /// budget and the KV reservation of [`Instance::admit_waiting`]), else a decode batch of
    /// every running sequence (retracting the most recently admitted when KV blocks run
    /// out). The two never mix:
    /// SGLang's default (`--enable-mixed-chunk` off) runs decodes only when no prefill can.
    fn build_sglang(&mut self, seqs: &mut SeqSlab, preempted: &mut Vec<SeqId>, shape: &mut BatchShape) {
        if self.running.is_empty() {
            // An idle SGLang scheduler starts its estimate over.
            self.sglang.reset(self.decode_steps(), SGLANG_INIT_NEW_TOKEN_RATIO);
        }
        let mut step = self.rule().step();
        self.schedule_running(seqs, preempted, shape, &mut step, Phases::Prefill);
        let ratio = self.sglang.ratio(self.decode_steps());
        let mut reserved = 0.0;
        for &sid in &self.running {
            reserved += f64::from(future_tokens(&seqs[sid])) * ratio;
        }
        self.admit_waiting(seqs, shape, &mut step, Some(reserved));
        if !self.batch.is_empty() {
            self.stats.prefill_steps += 1;
            return;
        }
        // A decode batch has no token budget: every running sequence, up to the cap.
        let mut decode = StepRule { max_batch_tokens: u32::MAX, ..self.rule() }.step();
        self.schedule_running(seqs, preempted, shape, &mut decode, Phases::Decode);
        if !preempted.is_empty() {
            // SGLang's `retract_decode`: the estimate becomes what the batch left has
            // generated so far, plus a margin of 20 steps a sequence, of what it may generate.
            let (mut done, mut most) = (0u64, 0u64);
            for &sid in &self.running {
                let s = &seqs[sid];
                done += u64::from(s.generated);
                most += u64::from(s.req.output_tokens.get());
            }
            let n = self.running.len() as u64;
            let r = ((done + SGLANG_RETRACT_DECODE_STEPS * n) as f64 / (most + 1) as f64).min(1.0);
            self.sglang.reset(self.decode_steps(), r);
        }
    }

    /// The instance's batching rule: its token budget, sequence cap and chunking.
    fn rule(&self) -> StepRule {
        StepRule { max_batch_tokens: self.engine.max_batch_tokens, max_seqs: self.engine.max_seqs, chunked: self.engine.chunked_prefill }
    }

    /// Decode steps taken so far (every step that was not a prefill batch).
    fn decode_steps(&self) -> u64 {
        self.stats.steps - self.stats.prefill_steps
    }

    /// Schedules the running sequences of `phases` (preempting the most recently admitted
    /// when KV blocks run out) under the step's budget.
    fn schedule_running(
        &mut self,
        seqs: &mut SeqSlab,
        preempted: &mut Vec<SeqId>,
        shape: &mut BatchShape,
        step: &mut StepBudget,
        phases: Phases,
    ) {
        let max_seqs = self.engine.max_seqs;
        let mut i = 0;
        'running: while i < self.running.len() && step.seqs() < max_seqs {
            let sid = self.running[i];
            let s = &seqs[sid];
            if !phases.takes(s) {
                i += 1;
                continue;
            }
            let Some(chunk) = step.offer_running(s.known() - s.computed) else {
                i += 1;
                continue;
            };
            // Multiplying beats dividing here: this runs for every sequence of every step.
            let held = s.blocks.len() as u32;
            let need = if s.computed + chunk <= held * self.kv.block_size() {
                Blocks::ZERO
            } else {
                self.kv.blocks_for(Tokens(s.computed + chunk)) - Blocks(held)
            };
            while need > self.kv.free() {
                let Some(victim) = self.running.pop() else { break 'running };
                self.register_full_blocks(seqs, victim, true);
                let v = &mut seqs[victim];
                self.kv.release(&mut v.blocks);
                v.computed = 0;
                v.reset_chain();
                v.preemptions += 1;
                self.stats.preemptions += 1;
                self.waiting.push_front(victim);
                preempted.push(victim);
                if victim == sid {
                    break 'running;
                }
            }
            let s = &mut seqs[sid];
            let ok = self.kv.allocate(need, &mut s.blocks);
            debug_assert!(ok, "checked above");
            self.add_to_batch(seqs, sid, chunk, shape);
            step.charge(chunk);
            i += 1;
        }
    }

    /// Admits waiting sequences in FCFS order under the step's budget, the sequence cap and
    /// free KV blocks; with `reserved` (SGLang), only while the KV cache also holds, besides
    /// `reserved` tokens for the running sequences, the rest of each admitted sequence's
    /// prompt and its whole output.
    fn admit_waiting(&mut self, seqs: &mut SeqSlab, shape: &mut BatchShape, step: &mut StepBudget, mut reserved: Option<f64>) {
        while step.may_admit(self.running.len()) {
            let Some(&sid) = self.waiting.front() else { break };
            let Some(Admission { hits, computed, chunk, need }) = self.admission(seqs, sid, step) else {
                break;
            };
            let bs = self.kv.block_size();
            let s = &seqs[sid];
            if let Some(r) = reserved.as_mut() {
                // SGLang's `PrefillAdder`: the request's input still to compute and its output
                // (clipped) must fit in what the reservations leave.
                let total = f64::from(s.known() - computed + future_tokens(s));
                let room = f64::from(self.kv.free().get() * bs) - *r;
                if total >= room {
                    break;
                }
                *r += total;
            }
            self.waiting.pop_front();
            self.running.push(sid);
            let fresh = s.blocks.is_empty() && s.computed == 0;
            let s = &mut seqs[sid];
            if fresh {
                let prompt = s.req.prompt_tokens.get();
                self.stats.prefix_queried += u64::from(prompt);
                self.stats.prefix_hit += u64::from((hits * bs).min(prompt));
                if s.preemptions == 0 {
                    s.cached_tokens = (hits * bs).min(prompt);
                }
                let mut prev = s.chain;
                for j in 0..hits {
                    prev = s.block_hash(prev, j, bs);
                    self.kv.reuse(prev, &mut s.blocks);
                }
                s.chain = prev;
                s.hashed = hits;
                s.computed = computed;
            }
            let ok = self.kv.allocate(need, &mut s.blocks);
            debug_assert!(ok, "checked above");
            self.add_to_batch(seqs, sid, chunk, shape);
            step.charge(chunk);
        }
    }

    /// Cached context is cheap only when another sequence of the step reads the same blocks:
    /// of the decodes that read a cached block, one pays for it as for any context (the block
    /// comes from memory once), the others at the cached rate
    /// ([`BatchShape::decode_cached_tokens`], [`blocks_read_again`]). Sequences that share only
    /// the start of their cached prefixes (a trace's conversations, say) share only that.
    fn first_readers_pay_in_full(&mut self, seqs: &SeqSlab, shape: &mut BatchShape) {
        let bs = self.kv.block_size();
        self.readers.clear();
        let mut cached_tokens = 0u64;
        for &(sid, _) in &self.batch {
            let s = &seqs[sid];
            let cached = s.cached_tokens.min(s.computed);
            if s.is_decoding() && cached > 0 {
                self.readers.push(sid);
                cached_tokens += u64::from(cached);
            }
        }
        let cached_blocks = |sid: &SeqId| {
            let s = &seqs[*sid];
            let n = (s.cached_tokens.min(s.computed) / bs) as usize;
            &s.blocks[..n.min(s.blocks.len())]
        };
        let again = blocks_read_again(&mut self.readers, cached_blocks) * u64::from(bs);
        shape.decode_cached_tokens -= cached_tokens - again.min(cached_tokens);
    }

    /// How waiting sequence `sid` would join the step: its cached prefix, where it resumes,
    /// its chunk and the blocks it needs; `None` when it does not fit (a longer prompt
    /// without chunking, or too few free blocks).
    pub fn admission(&self, seqs: &SeqSlab, sid: SeqId, step: &StepBudget) -> Option<Admission> {
        let bs = self.kv.block_size();
        let s = &seqs[sid];
        // A fresh (or preempted) sequence first looks up its prefix; at least one token is
        // always computed, to produce logits (vLLM caps hits at known − 1).
        let (Blocks(hits), idle) = if s.blocks.is_empty() && s.computed == 0 {
            let max_hit_blocks = (s.known() - 1) / bs;
            self.kv.probe(s.block_hashes(max_hit_blocks, bs))
        } else {
            (Blocks::ZERO, Blocks::ZERO)
        };
        let computed = if hits > 0 { hits * bs } else { s.computed };
        let chunk = step.offer_waiting(s.known() - computed)?;
        let held = Blocks(s.blocks.len() as u32 + hits);
        let need = self.kv.blocks_for(Tokens(computed + chunk)).saturating_sub(held);
        if need + idle > self.kv.free() {
            return None;
        }
        Some(Admission { hits, computed, chunk, need })
    }

    fn add_to_batch(&mut self, seqs: &SeqSlab, sid: SeqId, chunk: u32, shape: &mut BatchShape) {
        let s = &seqs[sid];
        if s.is_decoding() {
            if self.prices_cached {
                shape.add_decode_cached(s.computed, s.cached_tokens);
            } else {
                shape.add_decode(s.computed);
            }
        } else {
            shape.add_prefill_chunk(chunk, s.computed);
        }
        self.batch.push((sid, chunk));
    }

    /// Registers the hashes of shareable blocks of `sid` that became full, so later
    /// requests can reuse them; with `all`, every full block (before a preemption, so the
    /// recompute finds its own KV).
    #[inline]
    pub fn register_full_blocks(&mut self, seqs: &mut SeqSlab, sid: SeqId, all: bool) {
        // Fast path: prefix caching off, or nothing shareable in this request.
        if !self.kv.prefix_caching() || (!all && seqs[sid].req.prefix_group == 0 && seqs[sid].req.trace_blocks.is_none()) {
            return;
        }
        self.register_slow(seqs, sid, all);
    }

    fn register_slow(&mut self, seqs: &mut SeqSlab, sid: SeqId, all: bool) {
        let bs = self.kv.block_size();
        let s = &mut seqs[sid];
        let mut full = (s.computed / bs).min(s.blocks.len() as u32);
        if !all {
            full = full.min(crate::seq::shareable_blocks(&s.req, bs));
        }
        while s.hashed < full {
            let h = s.block_hash(s.chain, s.hashed, bs);
            self.kv.register(s.blocks[s.hashed as usize], h);
            s.chain = h;
            s.hashed += 1;
        }
    }

    /// Debug-build invariant checks after a step.
    pub fn check_invariants(&self, seqs: &SeqSlab) {
        if cfg!(debug_assertions) {
            self.kv.check_conservation();
            // Shared prefix blocks are held by several sequences: count distinct ids.
            let mut held: Vec<_> = self.running.iter().flat_map(|&s| seqs[s].blocks.iter().copied()).collect();
            held.sort_unstable();
            held.dedup();
            debug_assert!(held.len() as u64 <= self.kv.used().as_u64(), "{}: running sequences hold more blocks than are used", self.name);
            if self.running.len() + self.waiting.len() <= 512 {
                debug_assert!(
                    self.waiting.iter().all(|w| !self.running.contains(w)),
                    "{}: a sequence is both waiting and running",
                    self.name
                );
            }
            debug_assert!(self.waiting.iter().all(|&w| seqs[w].blocks.is_empty()), "{}: a waiting sequence holds KV blocks", self.name);
            for &r in &self.running {
                let s = &seqs[r];
                debug_assert!(s.computed <= s.known(), "{}: computed beyond known tokens", self.name);
                debug_assert!(s.generated <= s.req.output_tokens.get(), "{}: generated beyond the output length", self.name);
                debug_assert!(
                    Blocks(s.blocks.len() as u32) >= self.kv.blocks_for(Tokens(s.computed)),
                    "{}: computed KV without blocks",
                    self.name
                );
            }
        }
    }
}
