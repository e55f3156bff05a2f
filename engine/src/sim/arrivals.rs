//! Requests entering: routing through the router host, admission, rejection, closed-loop users.

use super::Simulation;
use super::cluster::CaughtUp;
use crate::queue::Phase;
use crate::record::{Outcome, Reason, Recorder};
use crate::request::Request;
use crate::router::InstanceId;
use crate::seq::{self, SeqId};
use crate::spec::Role;
use crate::time::SimDuration;
use crate::units::{Blocks, Tokens};
use crate::workload::WorkloadGen;

/// Where requests come from: the scenario's workload (its next request waiting for its
/// arrival event) and requests given to [`Simulation::submit`], by slot until they arrive.
#[derive(Debug, Default)]
pub(super) struct Arrivals {
    pub workload: Option<WorkloadGen>,
    pub pending: Option<Request>,
    /// Submitted requests by slot (`None` once arrived, or cancelled before), and free slots.
    pub submitted: Vec<Option<Request>>,
    pub submitted_free: Vec<u32>,
}

impl Simulation {
    /// Tokens of KV a sequence of `req` holds at most in an instance of `role` (the last
    /// output token is never fed back).
    pub(super) fn max_kv_tokens(req: &Request, role: Role) -> Tokens {
        match role {
            Role::Prefill => req.prompt_tokens,
            Role::Decode | Role::Mixed => req.prompt_tokens + req.output_tokens - Tokens(1),
        }
    }

    /// Whether `req` can ever fit instance `i`'s KV cache.
    pub(super) fn fits(&self, i: usize, req: &Request, role: Role) -> bool {
        self.cluster.instances.fits(i, Self::max_kv_tokens(req, role))
    }

    /// The sequence leaves without finishing, for `reason`.
    pub(super) fn reject<R: Recorder>(&mut self, sid: SeqId, reason: Reason, rec: &mut R) {
        self.uncharge(sid);
        let s = self.seqs.remove(sid);
        if s.prefill_on != seq::NO_INSTANCE {
            self.host.on_request_failed(s.prefill_on);
        }
        rec.on_request(&Self::record(&s, Outcome::Rejected, Some(reason)));
        self.departed();
        self.user_done(s.user);
    }

    /// Gives back the prefill tokens the router counted for `sid`, if it still has them.
    pub(super) fn uncharge(&mut self, sid: SeqId) {
        let s = &mut self.seqs[sid];
        if s.charged > Tokens::ZERO {
            let (on, charged) = (s.prefill_on, s.charged);
            s.charged = Tokens::ZERO;
            self.host.prefill_done(on, charged);
        }
    }

    /// A fresh request joins instance `i`'s waiting queue.
    fn enqueue<R: Recorder>(&mut self, i: usize, sid: SeqId, rec: &mut R) {
        let h = self.touch(i, rec);
        self.seqs[sid].holder = InstanceId(i as u32);
        let d0 = self.begin_change(&h);
        self.cluster.instances.get_mut(&h).waiting.push_back(sid);
        self.end_change(&h, d0);
        self.publish(&h);
        self.wake(&h);
    }

    /// The router sends `sid` to `i`, where it prefills.
    fn dispatch_prefill<R: Recorder>(&mut self, i: usize, sid: SeqId, rec: &mut R) {
        let charged = self.host.dispatched(InstanceId(i as u32), &self.seqs[sid].req, true);
        self.seqs[sid].charged = charged;
        self.seqs[sid].assigned_to = InstanceId(i as u32);
        self.enqueue(i, sid, rec);
    }

    /// A closed-loop user's request left the system: the user thinks, then sends the next.
    pub(super) fn user_done(&mut self, user: u32) {
        if user == u32::MAX {
            return;
        }
        let wait = self.arrivals.workload.as_mut().map_or(SimDuration::ZERO, |w| w.think_time());
        self.push(self.now + wait, Phase::Arrival, super::Event::UserReady(user));
    }

    /// A request enters: route it, or reject it if it can never fit.
    pub(super) fn admit<R: Recorder>(&mut self, req: Request, user: u32, rec: &mut R) {
        // The router reads every instance (gauges, caches): fast-forwarded ones catch up.
        let all = self.catch_up_all(rec);
        self.tally.arrived += 1;
        self.tally.first_arrival.get_or_insert(self.now);
        let sid = self.seqs.insert(req.clone());
        self.seqs[sid].user = user;
        if self.seqs.live() as u64 > self.run.max_in_flight {
            self.stopped = Some(format!(
                "more than {} requests in flight at {} simulated: arrivals outpace the fleet, whose queues would grow until memory runs out; raise `max_in_flight` in `run {{ }}` to go on",
                self.run.max_in_flight, self.now
            ));
        }

        // Conditional disaggregation: pick the decode instance first; it prefills the
        // request itself when the prompt's uncached part is short enough.
        if self.cluster.conditional {
            let Ok(d) = self.host.route_decode(self.now, &req, None, Some(&self.cluster.instances.probe(&all)), rec) else {
                return self.reject(sid, Reason::NoRoute, rec);
            };
            self.check_index(&req, &all);
            let di = d.index();
            let threshold = self.cluster.local_prefill_threshold[di];
            let kv = &self.cluster.instances.read(&all, di).kv;
            let bs = kv.block_size();
            let (hits, _) = kv.probe(seq::block_hashes(&req, (req.prompt_tokens.get().max(1) - 1) / bs, bs));
            let uncached = req.prompt_tokens.saturating_sub(hits.tokens(bs));
            self.seqs[sid].decode_on = d;
            if uncached.get() < threshold {
                self.seqs[sid].prefill_on = d;
                if !self.fits(di, &req, Role::Decode) {
                    return self.reject(sid, Reason::ExceedsKvCapacity, rec);
                }
                self.tally.local_prefills += 1;
                return self.dispatch_prefill(di, sid, rec);
            }
        }

        let Ok(p) = self.host.route_prefill(self.now, &req, Some(&self.cluster.instances.probe(&all)), rec) else {
            return self.reject(sid, Reason::NoRoute, rec);
        };
        self.check_index(&req, &all);
        let i = p.index();
        let role = self.cluster.instances.role(i);
        let s = &mut self.seqs[sid];
        s.prefill_on = p;
        if role == Role::Mixed {
            s.decode_on = p;
        }
        if !self.fits(i, &req, role) {
            return self.reject(sid, Reason::ExceedsKvCapacity, rec);
        }
        self.dispatch_prefill(i, sid, rec);
    }

    /// With [`Simulation::with_index_check`]: the overlaps the router's prefix index gave
    /// the policy equal a probe of every instance's cache.
    pub(super) fn check_index(&self, req: &Request, all: &CaughtUp) {
        if !self.check_index || self.host.overlap_filled_for() != Some(req.id) {
            return;
        }
        let view = self.host.view();
        for inst in self.cluster.instances.all(all) {
            let bs = inst.kv.block_size();
            let (hits, _) = inst.kv.probe(seq::block_hashes(req, crate::router::max_hit_blocks(req, bs), bs));
            assert_eq!(
                Blocks(view.cached_tokens(inst.id) / bs),
                hits,
                "prefix index disagrees with {}'s cache for request {}",
                inst.name,
                req.id.0
            );
        }
    }
}
