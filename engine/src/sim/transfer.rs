//! KV transfers: a prefilled sequence (or a migrating one) reserves blocks at its decode
//! instance, sends the part of its KV not cached there over the link between the two pools
//! (processor sharing, see [`super::link`]), pays the link's latency, and joins the decode
//! instance's running set. A destination without room queues the sequence (back-pressure).

use super::cluster::Held;
use super::{Event, Simulation};
use crate::queue::Phase;
use crate::record::{Reason, Recorder};
use crate::router::InstanceId;
use crate::seq::{self, NO_INSTANCE, SeqId};
use crate::spec::Role;
use crate::units::{Bytes, Tokens};

impl Simulation {
    /// A prefill finished on `from`: pick the decode instance (unless chosen on arrival),
    /// then reserve its blocks and send the KV, or queue for blocks there.
    pub(super) fn start_handoff<R: Recorder>(&mut self, sid: SeqId, from: &Held, rec: &mut R) {
        let req = self.seqs[sid].req.clone();
        let source = InstanceId(from.index() as u32);
        let to = match self.seqs[sid].decode_on {
            NO_INSTANCE => {
                // The router reads every instance: fast-forwarded ones catch up.
                let all = self.catch_up_all(rec);
                match self.host.route_decode(self.now, &req, Some(source), Some(&self.cluster.instances.probe(&all)), rec) {
                    Ok(d) => {
                        self.check_index(&req, &all);
                        d
                    }
                    Err(_) => {
                        self.host.left(source);
                        let s = &mut self.seqs[sid];
                        self.cluster.instances.get_mut(from).kv.release(&mut s.blocks);
                        return self.reject(sid, Reason::NoRoute, rec);
                    }
                }
            }
            chosen => chosen,
        };
        let t = to.index();
        self.host.left(source);
        self.seqs[sid].decode_on = to;
        if !self.fits(t, &req, Role::Decode) {
            let s = &mut self.seqs[sid];
            self.cluster.instances.get_mut(from).kv.release(&mut s.blocks);
            self.reject(sid, Reason::ExceedsKvCapacity, rec);
            self.publish(from);
            self.drain_inbound(from, rec);
            return;
        }
        self.host.dispatched(to, &req, false);
        self.seqs[sid].assigned_to = to;
        // Its inbound queue is retried at every step end: a change of the destination.
        let dest = self.touch(t, rec);
        if self.cluster.instances.get(&dest).inbound.is_empty() && self.try_send(sid, rec) {
            return;
        }
        self.cluster.instances.get_mut(&dest).inbound.push_back(sid);
        self.publish(&dest);
    }

    /// Reserves blocks for `sid` at its decode instance (reusing what that instance has
    /// cached of the prompt) and puts the uncached part on the link. False if the decode
    /// instance lacks free blocks (back-pressure).
    pub(super) fn try_send<R: Recorder>(&mut self, sid: SeqId, rec: &mut R) -> bool {
        let to = self.touch(self.seqs[sid].decode_on.index(), rec);
        let from = self.touch(self.seqs[sid].holder.index(), rec);
        let s = &self.seqs[sid];
        let dest = self.cluster.instances.get_mut(&to);
        let bs = dest.kv.block_size();
        let tokens = Tokens(s.computed);
        let (hits, idle) = dest.kv.probe(s.block_hashes(tokens.get() / bs, bs));
        let need = dest.kv.blocks_for(tokens).saturating_sub(hits);
        if need + idle > dest.kv.free() {
            return false;
        }
        let s = &mut self.seqs[sid];
        for h in seq::block_hashes(&s.req, hits.get(), bs) {
            dest.kv.reuse(h, &mut s.staged);
        }
        let ok = dest.kv.reserve(need);
        debug_assert!(ok, "checked above");
        s.reserved = need;
        s.held = self.cluster.instances.get_mut(&from).kv.hold(&mut s.blocks, s.hashed as usize);
        let bytes = Bytes::of_kv(tokens.saturating_sub(hits.tokens(bs)), self.cluster.kv_bytes_per_token);
        s.transfer_bytes = bytes;
        s.transfer_start = self.now;
        if s.blocks.is_empty() {
            // Nothing named is left at the source: the list goes back to the spares now, for
            // the prompts admitted while this KV is on the wire (a saturated link holds
            // thousands), rather than being held for the transfer's whole length.
            let v = std::mem::take(&mut s.blocks);
            self.seqs.give_spare(v);
        }
        self.sync_kv(&to);
        let link = self.link_between(from.index(), to.index());
        self.publish(&to);
        match self.cluster.links[link].bandwidth_bytes_s {
            Some(_) if bytes > Bytes::ZERO => {
                self.seqs[sid].on_wire = true;
                let now = self.now;
                let (ticket, due) = self.cluster.links[link].start(now, sid, bytes);
                self.seqs[sid].link_ticket = ticket;
                if let Some(at) = due {
                    self.push(at, Phase::Completion, Event::LinkDone(link as u32));
                }
            }
            _ => {
                let latency = self.latency_into(link, to.index());
                self.push(self.now + latency, Phase::Arrival, Event::TransferDone(sid));
            }
        }
        true
    }

    fn latency_into(&self, link: usize, to: usize) -> crate::time::SimDuration {
        self.cluster.kv_latency_override[to].unwrap_or(self.cluster.links[link].latency)
    }

    /// A link's completion is due: the transfers whose bytes are across pay the latency.
    pub(super) fn on_link_done(&mut self, link: usize) {
        let now = self.now;
        if !self.cluster.links[link].is_due(now) {
            return;
        }
        let mut done = std::mem::take(&mut self.scratch.landed);
        if let Some(at) = self.cluster.links[link].complete(now, &mut done) {
            self.push(at, Phase::Completion, Event::LinkDone(link as u32));
        }
        for &sid in &done {
            let s = &mut self.seqs[sid];
            s.on_wire = false;
            let to = s.decode_on.index();
            let latency = self.latency_into(link, to);
            self.push(now + latency, Phase::Arrival, Event::TransferDone(sid));
        }
        done.clear();
        self.scratch.landed = done;
    }

    pub(super) fn on_transfer_done<R: Recorder>(&mut self, sid: SeqId, rec: &mut R) {
        let now = self.now;
        let (from, to) = (self.seqs[sid].holder.index(), self.seqs[sid].decode_on.index());
        // Blocks go back at the source (a migration's may be fast-forwarding) and the
        // sequence joins the destination.
        let from = self.touch(from, rec);
        let to = self.touch(to, rec);
        let s = &mut self.seqs[sid];
        rec.on_transfer(s.holder, s.decode_on, s.transfer_start, now - s.transfer_start, s.transfer_bytes.get());
        let src = self.cluster.instances.get_mut(&from);
        src.kv.release(&mut s.blocks);
        src.kv.unreserve(std::mem::take(&mut s.held));
        let reserved = std::mem::take(&mut s.reserved);
        if s.cancelled {
            let dest = self.cluster.instances.get_mut(&to);
            dest.kv.release(&mut s.staged);
            dest.kv.unreserve(reserved);
            self.seqs.remove(sid);
            self.publish(&from);
            self.wake(&from);
            self.publish(&to);
            self.drain_inbound(&to, rec);
            return;
        }
        s.holder = s.decode_on;
        self.seqs.ensure_staged(sid);
        let s = &mut self.seqs[sid];
        let dest = self.cluster.instances.get_mut(&to);
        dest.kv.take_reserved(reserved, &mut s.staged);
        std::mem::swap(&mut s.blocks, &mut s.staged);
        s.reset_chain();
        s.leaving = false;
        dest.register_full_blocks(&mut self.seqs, sid, false);
        self.sync_kv(&to);
        self.publish(&from);
        self.wake(&from);
        // The sequence holds its KV, so it joins the running set (last admitted, first to be
        // preempted) rather than the waiting queue: parked in `waiting` with blocks it could
        // neither run nor give them back, and a full cache would deadlock.
        let d0 = self.begin_change(&to);
        self.cluster.instances.get_mut(&to).running.push(sid);
        self.end_change(&to, d0);
        self.publish(&to);
        self.wake(&to);
    }

    /// The link KV takes from instance `from` to instance `to`: the one between their pools,
    /// or (for migrations inside a decode pool) the link into the destination's pool.
    pub(super) fn link_between(&self, from: usize, to: usize) -> usize {
        let (pf, pt) = (self.cluster.instances.pool(from), self.cluster.instances.pool(to));
        self.cluster.link_of[pf][pt]
            .or_else(|| (0..self.cluster.link_of.len()).find_map(|p| self.cluster.link_of[p][pt]))
            .expect("every decode pool has an incoming link (checked by validation)")
    }

    /// Starts queued transfers into `i` while its blocks allow, in arrival order.
    pub(super) fn drain_inbound<R: Recorder>(&mut self, h: &Held, rec: &mut R) {
        while let Some(&sid) = self.cluster.instances.get(h).inbound.front() {
            if !self.try_send(sid, rec) {
                break;
            }
            self.cluster.instances.get_mut(h).inbound.pop_front();
        }
    }

    /// Takes a transfer of `sid` off its link (a cancellation), giving its share back.
    pub(super) fn abort_transfer(&mut self, sid: SeqId) {
        let s = &self.seqs[sid];
        let link = self.link_between(s.holder.index(), s.decode_on.index());
        let now = self.now;
        if let Some(at) = self.cluster.links[link].remove(now, s.link_ticket) {
            self.push(at, Phase::Completion, Event::LinkDone(link as u32));
        }
        self.seqs[sid].on_wire = false;
    }
}
