//! Cancelling a request in flight (a client that disconnects, a co-simulation driver).

use super::Simulation;
use super::cluster::CaughtUp;
use crate::record::{Outcome, Recorder};
use crate::request::RequestId;
use crate::seq::{NO_INSTANCE, SeqId};

impl Simulation {
    /// Cancels request `id` now, wherever it is: queued, running, waiting for KV blocks at
    /// its decode instance, or crossing a link. It is recorded at once as cancelled; KV that
    /// a step or a transfer in progress still uses is freed when that ends. A request
    /// submitted but not yet arrived is dropped too. Returns false when no such request is
    /// in flight (finished, or never seen). Costs O(requests in flight).
    pub fn cancel<R: Recorder>(&mut self, id: RequestId, rec: &mut R) -> bool {
        if let Some(k) = self.arrivals.submitted.iter().position(|r| r.as_ref().is_some_and(|r| r.id == id)) {
            // Its arrival event finds the slot empty. The slot is not reused before then.
            self.arrivals.submitted[k] = None;
            self.tally.cancelled += 1;
            return true;
        }
        // Its record reads the sequence as it is now, wherever it runs.
        let all = self.catch_up_all(rec);
        let Some(sid) = self.seqs.live_ids().into_iter().find(|&s| self.seqs[s].req.id == id && !self.seqs[s].cancelled) else {
            return false;
        };
        self.tally.cancelled += 1;
        self.uncharge(sid);
        let s = &self.seqs[sid];
        rec.on_request(&Self::record(s, Outcome::Cancelled, None));
        let (holder, assigned, user) = (s.holder, s.assigned_to, s.user);
        self.departed();
        if assigned != NO_INSTANCE {
            self.host.left(assigned);
            self.host.on_request_cancelled(assigned);
        }
        self.seqs[sid].migrate_to = None;
        if holder == NO_INSTANCE {
            self.seqs.remove(sid);
        } else if self.seqs[sid].decode_on != NO_INSTANCE && self.seqs[sid].decode_on != holder && self.in_handoff(sid, &all) {
            self.cancel_in_transfer(sid, rec);
        } else {
            self.cancel_at(holder.index(), sid, rec);
        }
        self.user_done(user);
        true
    }

    /// Whether `sid` has left its prefill instance's lists for a decode instance (queued for
    /// blocks there, on the wire, or paying the link's latency).
    fn in_handoff(&self, sid: SeqId, all: &CaughtUp) -> bool {
        let s = &self.seqs[sid];
        let h = self.cluster.instances.read(all, s.holder.index());
        !h.running.contains(&sid) && !h.waiting.contains(&sid)
    }

    /// `sid` is waiting or running on instance `i`.
    fn cancel_at<R: Recorder>(&mut self, i: usize, sid: SeqId, rec: &mut R) {
        let h = self.touch(i, rec);
        let d0 = self.begin_change(&h);
        let inst = self.cluster.instances.get_mut(&h);
        inst.waiting.retain(|&x| x != sid);
        inst.running.retain(|&x| x != sid);
        let in_step = inst.busy && inst.batch.iter().any(|&(x, _)| x == sid);
        self.end_change(&h, d0);
        if in_step {
            // The step in progress computes its tokens; its end frees the sequence.
            self.seqs[sid].cancelled = true;
        } else {
            let s = &mut self.seqs[sid];
            self.cluster.instances.get_mut(&h).kv.release(&mut s.blocks);
            self.seqs.remove(sid);
        }
        self.publish(&h);
        self.wake(&h);
    }

    /// `sid` moves its KV from its holder to its decode instance.
    fn cancel_in_transfer<R: Recorder>(&mut self, sid: SeqId, rec: &mut R) {
        let (from, to) = (self.seqs[sid].holder.index(), self.seqs[sid].decode_on.index());
        let from = self.touch(from, rec);
        let to = self.touch(to, rec);
        let inbound = &mut self.cluster.instances.get_mut(&to).inbound;
        if let Some(k) = inbound.iter().position(|&x| x == sid) {
            inbound.remove(k);
        } else if self.seqs[sid].on_wire {
            self.abort_transfer(sid);
        } else {
            // Paying the link's latency: its landing frees it.
            self.seqs[sid].cancelled = true;
            return;
        }
        let s = &mut self.seqs[sid];
        let src = self.cluster.instances.get_mut(&from);
        src.kv.release(&mut s.blocks);
        src.kv.unreserve(std::mem::take(&mut s.held));
        let dest = self.cluster.instances.get_mut(&to);
        dest.kv.release(&mut s.staged);
        dest.kv.unreserve(std::mem::take(&mut s.reserved));
        self.seqs.remove(sid);
        for h in [&from, &to] {
            self.publish(h);
            self.wake(h);
        }
        self.drain_inbound(&to, rec);
    }
}
