//! One engine replica: a vLLM v1-like continuous-batching scheduler over a paged KV cache.

use std::collections::VecDeque;

use crate::cost::{BatchShape, StepCostModel};
use crate::kv::KvCache;
use crate::router::InstanceId;
use crate::seq::{SeqId, SeqSlab};
use crate::spec::{EngineSpec, Role};
use crate::time::SimTime;

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
    pub cost: Box<dyn StepCostModel>,
    pub kv: KvCache,
    /// FCFS queue of sequences not yet admitted (preempted ones go back to the front).
    pub waiting: VecDeque<SeqId>,
    /// Admitted sequences in admission order (the last is preempted first).
    pub running: Vec<SeqId>,
    /// The batch of the step in flight: sequence and tokens computed for it.
    pub batch: Vec<(SeqId, u32)>,
    pub busy: bool,
    pub wake_pending: bool,
    pub stats: InstanceCounters,
}

/// Running totals kept while simulating.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InstanceCounters {
    pub depth_integral_ns: u128,
    pub depth_max: u32,
    pub last_change: SimTime,
    pub busy_ns: u64,
    pub steps: u64,
    pub preemptions: u64,
    pub kv_peak_used: u64,
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

    /// Builds the next step's batch into `self.batch`: running sequences first (preempting
    /// the most recently admitted when KV blocks run out), then waiting ones in FCFS order
    /// under the token budget, the sequence cap and free KV blocks.
    pub fn build_batch(&mut self, seqs: &mut SeqSlab, preempted: &mut Vec<SeqId>) -> BatchShape {
        self.batch.clear();
        let mut shape = BatchShape::default();
        let mut budget = self.engine.max_batch_tokens;
        let chunked = self.engine.chunked_prefill;

        let mut i = 0;
        'running: while i < self.running.len() {
            let sid = self.running[i];
            let s = &seqs[sid];
            let remaining = s.known() - s.computed;
            let chunk = if remaining == 1 || chunked { remaining.min(budget) } else { remaining };
            if chunk == 0 || chunk > budget {
                i += 1;
                continue;
            }
            let need = self.kv.blocks_for(s.computed + chunk).saturating_sub(s.blocks);
            while u64::from(need) > self.kv.free() {
                let Some(victim) = self.running.pop() else {
                    break 'running;
                };
                let v = &mut seqs[victim];
                self.kv.release(v.blocks);
                v.blocks = 0;
                v.computed = 0;
                v.preemptions += 1;
                self.stats.preemptions += 1;
                self.waiting.push_front(victim);
                preempted.push(victim);
                if victim == sid {
                    break 'running;
                }
            }
            self.admit_chunk(seqs, sid, chunk, need, &mut shape);
            budget -= chunk;
            i += 1;
        }

        // vLLM v1 admits no new request in a step that had to preempt.
        if preempted.is_empty() {
            while self.running.len() < self.engine.max_seqs as usize && budget > 0 {
                let Some(&sid) = self.waiting.front() else {
                    break;
                };
                let s = &seqs[sid];
                let remaining = s.known() - s.computed;
                let chunk = if remaining == 1 || chunked {
                    remaining.min(budget)
                } else if remaining <= budget || self.batch.is_empty() {
                    // Without chunking, a prompt longer than the budget runs alone.
                    remaining
                } else {
                    break;
                };
                let need = self.kv.blocks_for(s.computed + chunk).saturating_sub(s.blocks);
                if u64::from(need) > self.kv.free() {
                    break;
                }
                self.waiting.pop_front();
                self.running.push(sid);
                self.admit_chunk(seqs, sid, chunk, need, &mut shape);
                budget = budget.saturating_sub(chunk);
            }
        }
        self.stats.kv_peak_used = self.stats.kv_peak_used.max(self.kv.used());
        shape
    }

    fn admit_chunk(&mut self, seqs: &mut SeqSlab, sid: SeqId, chunk: u32, need: u32, shape: &mut BatchShape) {
        let ok = self.kv.try_allocate(need);
        debug_assert!(ok, "allocation checked by the caller");
        let s = &mut seqs[sid];
        s.blocks += need;
        if s.is_decoding() {
            shape.decode_seqs += 1;
            shape.decode_context_tokens += u64::from(s.computed);
        } else {
            shape.prefill_seqs += 1;
            shape.prefill_tokens += chunk;
            shape.prefill_attention_pairs += u64::from(chunk) * (u64::from(s.computed) + u64::from(chunk).div_ceil(2));
        }
        self.batch.push((sid, chunk));
    }

    /// Debug-build invariant checks after a step.
    pub fn check_invariants(&self, seqs: &SeqSlab) {
        if cfg!(debug_assertions) {
            let held: u64 = self.running.iter().map(|&s| u64::from(seqs[s].blocks)).sum();
            debug_assert!(held <= self.kv.used(), "{}: running sequences hold more blocks than are used", self.name);
            debug_assert!(self.waiting.iter().all(|w| !self.running.contains(w)), "{}: a sequence is both waiting and running", self.name);
            debug_assert!(self.waiting.iter().all(|&w| seqs[w].blocks == 0), "{}: a waiting sequence holds blocks", self.name);
        }
    }
}
