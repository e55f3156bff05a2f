//! Migrations: the decode policy's planner moves decoding sequences between decode
//! instances; a move happens at the end of the source's step and pays its KV transfer.

use super::Simulation;
use super::cluster::Held;
use crate::record::Recorder;
use crate::router::DecodingSeq;
use crate::spec::Role;

impl Simulation {
    pub(super) fn on_migrate<R: Recorder>(&mut self, rec: &mut R) {
        // The planner reads every decoding sequence and the router's view.
        let all = self.catch_up_all(rec);
        let mut decoding = Vec::new();
        let mut sids = Vec::new();
        for &d in self.host.view().decode_candidates() {
            for &sid in &self.cluster.instances.read(&all, d.index()).running {
                let s = &self.seqs[sid];
                if s.is_decoding() && !s.leaving && s.migrate_to.is_none() && !s.cancelled {
                    decoding.push(DecodingSeq {
                        request: s.req.id,
                        instance: d,
                        priority: s.req.priority,
                        tokens_remaining: s.req.output_tokens.get() - s.generated,
                    });
                    sids.push(sid);
                }
            }
        }
        if decoding.is_empty() {
            return;
        }
        let now = self.now;
        let plan = self.host.plan_migrations(now, &decoding);
        for m in plan {
            // The plan names at most `max_per_call` sequences: a scan per move is fine.
            let Some(k) = decoding.iter().position(|d| d.request == m.request && d.instance == m.from) else { continue };
            let sid = sids[k];
            let req = self.seqs[sid].req.clone();
            let to_ok = self.host.view().instances.get(m.to.index()).is_some_and(|v| v.role == Role::Decode);
            if m.to == m.from || !to_ok || !self.fits(m.to.index(), &req, Role::Decode) {
                continue;
            }
            self.host.log_migration(now, req.id, m.to, rec);
            let from = m.from.index();
            // The move happens at the end of the step in flight, which must be a real one.
            let h = self.touch(from, rec);
            self.seqs[sid].migrate_to = Some(m.to);
            let inst = self.cluster.instances.get_mut(&h);
            inst.migrations_pending += 1;
            if !inst.busy {
                self.execute_migrations(&h, rec);
            }
        }
    }

    /// Moves every sequence of instance `i` with a migration requested: out of the running
    /// set, then like a prefill handoff (reserve at the destination, move the uncached KV).
    pub(super) fn execute_migrations<R: Recorder>(&mut self, h: &Held, rec: &mut R) {
        let d0 = self.begin_change(h);
        let mut moving = Vec::new();
        let inst = self.cluster.instances.get_mut(h);
        inst.migrations_pending = 0;
        for &sid in inst.waiting.iter() {
            // Preempted since the plan: it no longer holds KV to move.
            self.seqs[sid].migrate_to = None;
        }
        let seqs = &mut self.seqs;
        inst.running.retain(|&sid| {
            let s = &mut seqs[sid];
            match s.migrate_to.take() {
                Some(to) if !s.leaving && s.is_decoding() => {
                    moving.push((sid, to));
                    false
                }
                _ => true,
            }
        });
        self.end_change(h, d0);
        for (sid, to) in moving {
            let s = &mut self.seqs[sid];
            s.decode_on = to;
            s.migrations += 1;
            self.tally.migrations += 1;
            let dest = self.touch(to.index(), rec);
            let (src, dst) = self.cluster.instances.pair_mut(h, &dest);
            src.stats.migrations_out += 1;
            dst.stats.migrations_in += 1;
            self.host.moved(src.id, to);
            self.seqs[sid].assigned_to = to;
            if self.cluster.instances.get(&dest).inbound.is_empty() && self.try_send(sid, rec) {
                continue;
            }
            self.cluster.instances.get_mut(&dest).inbound.push_back(sid);
            self.publish(&dest);
        }
        self.publish(h);
        self.wake(h);
    }
}
