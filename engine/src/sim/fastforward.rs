//! Fast-forward: steady decode steps completed in bulk, with the results of stepping one by
//! one, to the bit.
//!
//! Between two changes of an instance's batch — an arrival, a transfer landing, a sequence
//! finishing, a preemption, a gauge refresh, a planned migration, anything else in the event
//! queue — consecutive decode steps differ only by their growing context and the KV blocks
//! their sequences take at block boundaries. When a step ends and the next steps are such steps, this completes as many as
//! end before the next event in the queue: their durations are still computed one by one
//! with the same cost model and integer-nanosecond rounding, but no event is queued, no
//! batch is rebuilt, and each sequence is updated once for all of them. The recorder sees
//! the same observations (token gaps in bulk as value × count, one `on_step` per step), and
//! the event count includes the steps as if each had been an event.

use super::Simulation;
use crate::record::Recorder;
use crate::spec::Role;
use crate::time::{SimDuration, SimTime};

impl Simulation {
    /// At the end of a step of instance `i`, before its next step starts at `now`: when the
    /// coming steps are steady decode steps that nothing can change before the next queued
    /// event (or the end of the current `step_until`), completes them and moves `now` to the
    /// end of the last one. The caller then starts the next step as usual.
    pub(super) fn fast_forward<R: Recorder>(&mut self, i: usize, rec: &mut R) {
        if !self.run.fast_forward {
            return;
        }
        let inst = &self.cluster.instances[i];
        let n = inst.running.len();
        if inst.role == Role::Prefill
            || n == 0
            || inst.busy
            || inst.wake_pending
            || inst.migrations_pending > 0
            || n > inst.engine.max_seqs as usize
            || n > inst.engine.max_batch_tokens as usize
        {
            return;
        }
        // A waiting sequence (one preempted, or one the cache cannot take) must stay out of the
        // coming batches: it does not fit now, and free blocks only become fewer while no
        // sequence finishes.
        if let Some(&front) = inst.waiting.front() {
            let budget = inst.engine.max_batch_tokens - n as u32;
            if n < inst.engine.max_seqs as usize && budget > 0 && inst.admission(&self.seqs, front, budget, false).is_some() {
                return;
            }
        }
        // No step may finish a sequence: that step is a real one.
        let bs = inst.kv.block_size();
        let mut steps = u32::MAX;
        let (mut context, mut cached) = (0u64, 0u64);
        for &sid in &inst.running {
            let s = &self.seqs[sid];
            if !s.is_decoding() || s.cancelled || s.leaving || s.migrate_to.is_some() {
                return;
            }
            steps = steps.min((s.req.output_tokens.get() - s.generated).saturating_sub(1));
            context += u64::from(s.computed);
            cached += u64::from(s.cached_tokens.min(s.computed));
        }
        if steps == 0 {
            return;
        }
        // The steps end strictly before the next queued event, and within this stepping call,
        // the run's stop time and its time bound.
        let next = self.queue.peek_time().unwrap_or(SimTime::MAX);
        let mut last = self.horizon.min(SimTime::ZERO + self.run.max_time);
        if let Some(c) = self.cutoff {
            last = last.min(c);
        }
        let mut shape = crate::cost::BatchShape {
            decode_seqs: n as u32,
            decode_context_tokens: context,
            decode_cached_tokens: cached,
            ..Default::default()
        };
        let start = self.now;
        let mut t = start;
        self.ff_durations.clear();
        for _ in 0..steps {
            let d = inst.cost.step_time(&shape);
            let end = t + d;
            if end >= next || end > last {
                break;
            }
            self.ff_durations.push(d);
            t = end;
            shape.decode_context_tokens += n as u64;
        }
        let mut m = self.ff_durations.len() as u32;
        if m == 0 {
            return;
        }
        // KV blocks: a sequence crossing a block boundary takes a new block before that step,
        // in batch order, as the step's batch would take it. They come out of the free (and
        // evictable) blocks in that same order; a step whose blocks would run out is a real
        // one (it preempts), so the steps end before it.
        // Generated per sequence in batch order, then put in step order by a stable counting
        // sort on the step (steps are few; a comparison sort was a tenth of the run).
        self.ff_scratch.clear();
        for (idx, &sid) in inst.running.iter().enumerate() {
            let s = &self.seqs[sid];
            let slots = (s.blocks.len() as u32 * bs).saturating_sub(s.computed);
            let mut k = slots + 1;
            while k <= m {
                self.ff_scratch.push((k, idx as u32));
                k += bs;
            }
        }
        self.ff_allocations.clear();
        if !self.ff_scratch.is_empty() {
            self.ff_counts.clear();
            self.ff_counts.resize(m as usize + 2, 0);
            for &(k, _) in &self.ff_scratch {
                self.ff_counts[k as usize + 1] += 1;
            }
            for k in 1..self.ff_counts.len() {
                self.ff_counts[k] += self.ff_counts[k - 1];
            }
            self.ff_allocations.resize(self.ff_scratch.len(), (0, 0));
            for &(k, idx) in &self.ff_scratch {
                let at = &mut self.ff_counts[k as usize];
                self.ff_allocations[*at] = (k, idx);
                *at += 1;
            }
        }
        let free = inst.kv.free().get() as usize;
        if self.ff_allocations.len() > free {
            m = self.ff_allocations[free].0 - 1;
            self.ff_allocations.truncate(free);
            self.ff_allocations.retain(|&(k, _)| k <= m);
            self.ff_durations.truncate(m as usize);
            if m == 0 {
                return;
            }
            t = start + self.ff_durations.iter().fold(SimDuration::ZERO, |a, &d| a + d);
        }
        self.apply_fast_forward(i, start, context, cached, rec);
        self.sync_kv(i);
        self.queue.count_virtual(u64::from(m));
        self.fast_forwarded += u64::from(m);
        self.now = t;
        self.last_work = t;
    }

    /// Applies the steps whose durations are in `ff_durations`, from `start`, to instance `i`
    /// and its sequences, and tells `rec` what stepping one by one would have told it.
    fn apply_fast_forward<R: Recorder>(&mut self, i: usize, start: SimTime, context: u64, cached: u64, rec: &mut R) {
        let inst = &mut self.cluster.instances[i];
        let n = inst.running.len();
        let m = self.ff_durations.len() as u32;
        let first = self.ff_durations[0];
        let later_max = self.ff_durations[1..].iter().copied().max().unwrap_or(SimDuration::ZERO);
        let end = start + self.ff_durations.iter().fold(SimDuration::ZERO, |a, &d| a + d);
        let mut shape = crate::cost::BatchShape {
            decode_seqs: n as u32,
            decode_context_tokens: context,
            decode_cached_tokens: cached,
            ..Default::default()
        };
        let mut t = start;
        for &d in &self.ff_durations {
            rec.on_step(inst.id, t, d, &shape);
            inst.stats.steps += 1;
            inst.stats.busy_ns += d.as_nanos();
            shape.decode_context_tokens += n as u64;
            t += d;
        }
        for &(_, idx) in &self.ff_allocations {
            let s = &mut self.seqs[inst.running[idx as usize]];
            let ok = inst.kv.allocate(crate::units::Blocks(1), &mut s.blocks);
            debug_assert!(ok, "counted against the free blocks");
        }
        inst.stats.kv_peak_used = inst.stats.kv_peak_used.max(inst.kv.used().as_u64());
        let first_end = start + first;
        for &sid in &inst.running {
            let s = &mut self.seqs[sid];
            // The first gap is the sequence's own (from its last token); the later ones are
            // the step durations, shared by the whole batch.
            let gap = first_end - s.last_token;
            rec.on_token_gap(gap);
            s.max_gap = s.max_gap.max(gap).max(later_max);
            s.computed += m;
            s.generated += m;
            s.last_token = end;
        }
        for &d in &self.ff_durations[1..] {
            rec.on_token_gaps(d, n as u64);
        }
    }
}
