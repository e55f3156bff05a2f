//! Instance steps: building a batch, and what happens when its step ends.

use super::cluster::Held;
use super::{Event, Simulation};
use crate::queue::Phase;
use crate::record::{Outcome, Recorder};
use crate::spec::Role;
use crate::time::SimDuration;

/// Token gaps on their way to the recorder, a run of equal ones as one value × count.
#[derive(Default)]
pub(super) struct GapRun {
    gap: SimDuration,
    count: u64,
}

impl GapRun {
    /// Adds one gap; a different one first hands the run so far to `rec`.
    pub(super) fn push<R: Recorder>(&mut self, gap: SimDuration, rec: &mut R) {
        if gap == self.gap {
            self.count += 1;
        } else {
            self.flush(rec);
            *self = GapRun { gap, count: 1 };
        }
    }
    /// Hands the run so far to `rec`.
    pub(super) fn flush<R: Recorder>(&mut self, rec: &mut R) {
        if self.count > 0 {
            rec.on_token_gaps(self.gap, self.count);
            self.count = 0;
        }
    }
}

/// Forwards `inst`'s KV-cache events to the router's prefix index.
pub(super) fn forward_kv_events(host: &mut crate::router::RouterHost, inst: &mut crate::instance::Instance) {
    if inst.kv.has_events() {
        let id = inst.id;
        for ev in inst.kv.drain_events() {
            host.kv_event(id, ev);
        }
    }
}

impl Simulation {
    /// Asks instance `h` to start a step now, unless it is busy or already asked.
    pub(super) fn wake(&mut self, h: &Held) {
        let i = h.index();
        let inst = self.cluster.instances.get_mut(h);
        if !inst.busy && !inst.wake_pending && inst.depth() > 0 {
            inst.wake_pending = true;
            self.push_ranked(self.now, Phase::Schedule, i as u32, Event::TryStep(i as u32));
        }
    }

    /// Forwards instance `h`'s KV-cache events to the router's prefix index.
    pub(super) fn sync_kv(&mut self, h: &Held) {
        forward_kv_events(&mut self.host, self.cluster.instances.get_mut(h));
    }

    /// Instance `h` decides its next batch and starts its step (which may start a
    /// fast-forward run: the proof is used up).
    pub(super) fn on_try_step<R: Recorder>(&mut self, h: Held, rec: &mut R) {
        let now = self.now;
        let i = h.index();
        let inst = self.cluster.instances.get_mut(&h);
        inst.wake_pending = false;
        if inst.busy {
            return;
        }
        self.scratch.preempted.clear();
        let shape = inst.build_batch(&mut self.seqs, &mut self.scratch.preempted);
        for _ in 0..self.scratch.preempted.len() {
            rec.on_preemption(inst.id, now);
        }
        if inst.batch.is_empty() {
            self.sync_kv(&h);
            self.publish(&h);
            return;
        }
        let dur = inst.cost.step_time(&shape);
        inst.busy = true;
        inst.stats.steps += 1;
        inst.stats.busy_ns += dur.as_nanos();
        rec.on_step(inst.id, now, dur, &shape);
        self.sync_kv(&h);
        self.publish(&h);
        // Its end, or (steady decode steps) the end of the run it starts.
        let due = self.start_run(h, dur, &shape);
        self.queue.schedule_key(i as u32, due);
    }

    pub(super) fn on_step_finished<R: Recorder>(&mut self, h: Held, rec: &mut R) {
        let now = self.now;
        let d0 = self.begin_change(&h);
        let inst = self.cluster.instances.get_mut(&h);
        inst.busy = false;
        let role = inst.role;
        let id = inst.id;
        let frontend = inst.cost.request_latency();
        let mut cancelled = false;
        // Gaps come in runs of one length (every sequence of the last step has the same): they
        // go to the recorder as value × count.
        let mut gaps = GapRun::default();
        // With many instances interleaved, the batch's sequences are rarely in the CPU's
        // caches: one tight pass that reads each first lets their memory loads overlap,
        // where the work below would take them one after another.
        let mut warm = 0u32;
        for &(sid, _) in &inst.batch {
            warm = warm.wrapping_add(self.seqs[sid].computed);
        }
        std::hint::black_box(warm);
        for k in 0..inst.batch.len() {
            let (sid, chunk) = inst.batch[k];
            debug_assert!(chunk > 0, "a step computes at least one token of every scheduled sequence");
            if self.seqs[sid].cancelled {
                cancelled = true;
                continue;
            }
            self.seqs[sid].computed += chunk;
            inst.register_full_blocks(&mut self.seqs, sid, false);
            let s = &mut self.seqs[sid];
            if s.computed < s.known() {
                continue;
            }
            s.generated += 1;
            if s.generated == 1 {
                // The frontend latency shifts what the client sees, not the engine's steps.
                s.frontend = frontend;
                s.first_token = Some(now + frontend);
                let ttft = now + frontend - s.req.arrival;
                let charged = std::mem::take(&mut s.charged);
                self.host.prefill_done(s.prefill_on, charged);
                self.host.on_first_token(id, ttft);
            } else {
                let gap = now - s.last_token;
                s.max_gap = s.max_gap.max(gap);
                gaps.push(gap, rec);
            }
            s.last_token = now;
            if s.generated >= s.req.output_tokens.get() {
                inst.kv.release(&mut s.blocks);
                s.leaving = true;
                self.scratch.finished.push(sid);
            } else if role == Role::Prefill && s.generated == 1 {
                s.leaving = true;
                self.scratch.handoffs.push(sid);
            }
        }
        gaps.flush(rec);
        if cancelled {
            // Sequences cancelled during the step: recorded already; free them now.
            for k in 0..inst.batch.len() {
                let sid = inst.batch[k].0;
                if self.seqs.get(sid).is_some_and(|s| s.cancelled) {
                    let s = &mut self.seqs[sid];
                    inst.kv.release(&mut s.blocks);
                    self.seqs.remove(sid);
                }
            }
        }
        if !self.scratch.finished.is_empty() || !self.scratch.handoffs.is_empty() {
            let seqs = &self.seqs;
            inst.running.retain(|&s| !seqs[s].leaving);
        }
        inst.check_invariants(&self.seqs);
        self.end_change(&h, d0);
        self.sync_kv(&h);

        for k in 0..self.scratch.finished.len() {
            let sid = self.scratch.finished[k];
            let s = self.seqs.remove(sid);
            let r = Self::record(&s, Outcome::Finished, None);
            self.host.on_request_complete(id, r.tpot());
            self.host.left(id);
            rec.on_request(&r);
            self.departed();
            self.user_done(s.user);
        }
        self.scratch.finished.clear();
        for k in 0..self.scratch.handoffs.len() {
            let sid = self.scratch.handoffs[k];
            self.start_handoff(sid, &h, rec);
        }
        self.scratch.handoffs.clear();
        if self.cluster.instances.get(&h).migrations_pending > 0 {
            self.execute_migrations(&h, rec);
        }
        self.drain_inbound(&h, rec);
        self.publish(&h);
        // The next step starts now. When nothing else happens at this instant it starts
        // directly (the same order as through the queue; counted as an event all the same).
        let inst = self.cluster.instances.get(&h);
        if !inst.wake_pending && inst.depth() > 0 && self.queue.peek_time().is_none_or(|t| t > now) {
            self.queue.count_virtual(1);
            self.on_try_step(h, rec);
        } else {
            self.wake(&h);
        }
    }
}
