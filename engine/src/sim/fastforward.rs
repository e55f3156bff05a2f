//! Fast-forward: steady decode steps taken lazily, per instance, with the results of stepping
//! one by one, to the bit.
//!
//! Between two changes of an instance's batch, consecutive decode steps differ only by their
//! growing context and the KV blocks their sequences take at block boundaries. When an
//! instance starts such a step, it starts a *run*: the step and the steady steps after it,
//! up to the first whose end is not steady (it finishes a sequence, or the batch after it
//! would need more blocks than there are, or a zero-length step), are not queued one by one.
//! The run has one entry among the step ends of the event queue, at the end of the last step
//! computed so far: a checkpoint, where more durations are computed (in growing chunks, with
//! the same cost model and integer-nanosecond rounding as stepping), or the run's last step,
//! whose end is a real event. Meanwhile other events go on, and the instance is *caught up*
//! only when something reads or changes it: the steps that end before the event in process
//! are applied in bulk (each sequence updated once, token gaps as value × count, one
//! `on_step` per step, KV blocks taken in the order the batches would take them), and the
//! event counter counts them as if each had been an event.
//!
//! # Why this is exact
//!
//! *A steady step touches only its instance.* Its end emits one token per sequence, finishes
//! none, hands none off, releases and registers no block (decoding sequences have every
//! shareable block registered since their prefill; a run does not take a sequence whose
//! shared prefix is longer than its prompt), and the batch decided after it is the
//! same set of sequences: a waiting sequence (or an inbound transfer) that the first batch of
//! the run could not admit stays out, because free blocks only decrease, the token budget and
//! sequence count stay the same, and the cache's contents do not change — with a waiting
//! sequence or an inbound transfer, a run takes only blocks that hold no KV (it stops before
//! the first step that would evict), so no probe answers differently. What it changes is the
//! instance's own state and what the router could see of it: its free blocks (a gauge) and,
//! through evictions when nothing waits, its cache. So nothing outside the instance needs
//! the steps applied before it reads or changes the instance, and everything that does
//! catches it up first: routing decisions and migration planning (every instance: policies
//! read every gauge, probe caches, or read per-sequence state), telemetry refreshes (every
//! instance), requests joining a queue, transfers reserving blocks or landing, KV released
//! by a finished transfer or a cancellation, migrations, and the stepping API at the end of
//! each [`Simulation::step_until`] (the run is bounded by that call's end, the run's stop
//! time and its time bound, so that every event the loop would see up to them is applied).
//! A change ends the run at the step in flight, which then ends as a real event.
//!
//! *No caller can skip the catching up.* The instances are reached only through a proof that
//! they are up to date: [`Held`] (from [`Simulation::touch`] and the end of a run) to read and
//! change one, [`CaughtUp`] (from [`Simulation::catch_up_all`]) to read them all, and this
//! module alone makes the proofs or reads an instance behind the event in process (a test
//! checks it); the configuration no step changes (role, pool, cache capacity) is read freely.
//!
//! *Catching up lands exactly where stepping would be.* The queue orders step ends before
//! every other event of their time, in instance order, and batch decisions (`TryStep`, the
//! last phase of an instant) in instance order too: neither depends on when it was queued.
//! So the place of a virtual step end or batch decision relative to the event in process
//! (its [`Cursor`]) is known without queuing it: a step end of instance `i` at time `t`
//! precedes an event of a later time, any non-step event of time `t`, and the step end of a
//! higher instance at `t`; the batch decided after it precedes only what comes after the
//! schedule phase of `i` at `t`. Caught up to the cursor, the instance has applied exactly
//! the step ends and batches that precede it: either a step is in flight (the run ends with
//! it as a real event if the instance is changed), or a step ended at exactly the cursor's
//! time and the next batch is not yet decided — there the instance is idle with its
//! `TryStep` pending, as stepping would leave it, and a change queues that `TryStep` (its
//! rank puts it where stepping would have). A step that started directly rather than through
//! `TryStep` (nothing else happening at that instant) decides the same batch at the same
//! point; every step start counts as one event either way, so counts do not depend on which.
//! The events that are queued keep their relative order, since they are queued by the same
//! real events in the same order with fast-forward on and off.

use super::cluster::{CaughtUp, Held};
use super::{Event, Simulation};
use crate::cost::BatchShape;
use crate::queue::Phase;
use crate::record::Recorder;
use crate::spec::{Role, Scheduler};
use crate::time::{SimDuration, SimTime};
use crate::units::Blocks;

/// Steps a checkpoint computes at least; each computes as many more as the run has, up to
/// [`MAX_CHUNK`]. A run's first chunk goes as far as the next queued event (the next arrival,
/// most often, which may end it) and no further: durations past the end of a run are wasted.
const MIN_CHUNK: u32 = 8;
const MAX_CHUNK: u32 = 1024;

/// Where the event in process sits in the event order, for catching up lazy instances.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cursor {
    time: SimTime,
    /// Step ends at `time` of instances below this index come before the event.
    ends_below: u32,
    /// Batches decided at `time` by instances below this index come before the event.
    builds_below: u32,
}

impl Cursor {
    /// An event that is neither a step end nor a batch decision, at `time`.
    pub fn event(time: SimTime) -> Self {
        Cursor { time, ends_below: u32::MAX, builds_below: 0 }
    }
    /// The step end of instance `i` at `time`.
    pub fn step_end(time: SimTime, i: u32) -> Self {
        Cursor { time, ends_below: i, builds_below: 0 }
    }
    /// The batch decision of instance `i` at `time`.
    pub fn try_step(time: SimTime, i: u32) -> Self {
        Cursor { time, ends_below: u32::MAX, builds_below: i }
    }
    /// After every event at or before `time`.
    pub fn after(time: SimTime) -> Self {
        Cursor { time, ends_below: u32::MAX, builds_below: u32::MAX }
    }
}

/// An instance's steady steps taken lazily (see the module documentation). Steps are
/// numbered from 1, the run's first (a real batch); the batch of every later one is the same
/// set of sequences, one token each.
#[derive(Debug, Default)]
pub(super) struct Run {
    pub active: bool,
    n: u32,
    /// When step 1 started, and its decode context tokens (of which in prefix-cached
    /// blocks: the same in every step of the run).
    start: SimTime,
    context: u64,
    cached: u64,
    /// Most steps the run may have (the first output to finish, the KV blocks there are).
    cap: u32,
    /// The run's last step once known (its end is a real event); 0 until then.
    last: u32,
    /// Virtual step ends stay at or before this.
    bound: SimTime,
    /// `ends[j - 1]`: when step `j` ends, for the steps computed so far.
    ends: Vec<SimTime>,
    /// Steps whose ends are applied, and steps whose batches are (`ended` or `ended + 1`).
    ended: u32,
    built: u32,
    /// Per batch position: the first step whose batch takes a new block for that sequence
    /// (then every `block_size` steps).
    first_block: Vec<u32>,
}

impl Run {
    fn end_of(&self, j: u32) -> SimTime {
        if j == 0 { self.start } else { self.ends[j as usize - 1] }
    }
    fn duration(&self, j: u32) -> SimDuration {
        self.end_of(j) - self.end_of(j - 1)
    }
    /// Whether the entry in the queue is a checkpoint rather than the run's last step end.
    pub fn at_checkpoint(&self) -> bool {
        self.active && self.last == 0
    }
    /// Blocks the batches of steps `2..=j` take.
    fn blocks_through(&self, j: u32, block_size: u32) -> u64 {
        if block_size.is_power_of_two() {
            let shift = block_size.trailing_zeros();
            self.first_block.iter().map(|&f| if j >= f { u64::from((j - f) >> shift) + 1 } else { 0 }).sum()
        } else {
            self.first_block.iter().map(|&f| if j >= f { u64::from((j - f) / block_size) + 1 } else { 0 }).sum()
        }
    }
}

/// Fast-forward's state.
#[derive(Debug)]
pub(super) struct FastForward {
    /// Per instance: its steady steps taken lazily, if any.
    pub runs: Vec<Run>,
    /// Where the event in process sits in the event order.
    pub cursor: Cursor,
    /// KV blocks fast-forwarded batches take, as `(step, position in the batch)`, and a
    /// counting sort's buffers (reused).
    scratch: Vec<(u32, u32)>,
    sorted: Vec<(u32, u32)>,
    counts: Vec<usize>,
    /// Steps completed by fast-forward so far.
    pub forwarded: u64,
}

impl FastForward {
    /// No run yet, for `instances` instances.
    pub fn new(instances: usize) -> FastForward {
        FastForward {
            runs: (0..instances).map(|_| Run::default()).collect(),
            cursor: Cursor::after(SimTime::ZERO),
            scratch: Vec::new(),
            sorted: Vec::new(),
            counts: Vec::new(),
            forwarded: 0,
        }
    }
}

impl Simulation {
    /// Instance `i` just decided a batch of `shape`, lasting `dur`, that starts now: starts a
    /// run when the batch is steady. Returns when the instance's step-end entry is due (the
    /// step's own end when no run starts).
    pub(super) fn start_run(&mut self, h: Held, dur: SimDuration, shape: &BatchShape) -> SimTime {
        let i = h.index();
        let end = self.now + dur;
        let inst = self.cluster.instances.lazy(i);
        let n = inst.running.len();
        if !self.run.fast_forward
            || dur == SimDuration::ZERO
            || shape.prefill_seqs > 0
            || inst.role == Role::Prefill
            || n == 0
            || inst.batch.len() != n
            || shape.decode_seqs as usize != n
            || inst.migrations_pending > 0
            || !self.scratch.preempted.is_empty()
            // SGLang's admission reserves a share of the running sequences' remaining output
            // that shrinks as they decode: a waiting sequence may fit after any step.
            || (inst.engine.scheduler == Scheduler::Sglang && !(inst.waiting.is_empty() && inst.inbound.is_empty()))
        {
            return end;
        }
        let mut bound = self.horizon.min(SimTime::ZERO + self.run.max_time);
        if let Some(c) = self.cutoff {
            bound = bound.min(c);
        }
        if end > bound {
            return end;
        }
        let bs = inst.kv.block_size();
        let run = &mut self.ff.runs[i];
        run.first_block.clear();
        let mut remaining = u32::MAX;
        for &sid in &inst.running {
            let s = &self.seqs[sid];
            // A shared prefix longer than the prompt goes on registering blocks as the
            // sequence decodes: its steps are not steady.
            if s.migrate_to.is_some() || (s.req.prefix_group != 0 && s.req.prefix_tokens > s.req.prompt_tokens) {
                return end;
            }
            remaining = remaining.min(s.req.output_tokens.get() - s.generated);
            // Step 1's batch holds `computed + 1` tokens; step j's needs `computed + j`.
            run.first_block.push(s.blocks.len() as u32 * bs - s.computed + 1);
        }
        // The step that emits the first sequence's last token ends the run.
        let mut cap = remaining;
        // Blocks the later batches may take: any free one, unless something waits for
        // blocks here, whose admission an eviction could change.
        let avail = if inst.waiting.is_empty() && inst.inbound.is_empty() { inst.kv.free() } else { inst.kv.unclaimed() };
        let avail = u64::from(avail.get());
        // Each sequence takes at most one block per `bs` steps: most runs have plenty.
        let most = n as u64 * (u64::from(cap / bs) + 1);
        if most > avail && run.blocks_through(cap, bs) > avail {
            // The last step whose batch still gets its blocks (step 1's took its own).
            let (mut lo, mut hi) = (1, cap);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if run.blocks_through(mid, bs) <= avail { lo = mid } else { hi = mid }
            }
            cap = lo;
        }
        if cap < 2 {
            return end;
        }
        *run = Run {
            active: true,
            n: n as u32,
            start: self.now,
            context: shape.decode_context_tokens,
            cached: shape.decode_cached_tokens,
            cap,
            last: 0,
            bound,
            ends: std::mem::take(&mut run.ends),
            ended: 0,
            built: 1,
            first_block: std::mem::take(&mut run.first_block),
        };
        run.ends.clear();
        run.ends.push(end);
        let hint = self.queue.peek_queued_time().unwrap_or(SimTime::MAX);
        self.extend_run(i, hint);
        let run = &mut self.ff.runs[i];
        if run.last == 1 {
            run.active = false;
            return end;
        }
        *run.ends.last().expect("step 1")
    }

    /// Computes more step durations of instance `i`'s run, until its last step is known, a
    /// chunk is done, or (the first chunk) a step ends at or after `hint`.
    fn extend_run(&mut self, i: usize, hint: SimTime) {
        let inst = self.cluster.instances.lazy(i);
        let run = &mut self.ff.runs[i];
        let c = run.ends.len() as u32;
        let chunk = if hint < SimTime::MAX { MAX_CHUNK } else { c.clamp(MIN_CHUNK, MAX_CHUNK) };
        let target = (c + chunk).min(run.cap);
        let n = u64::from(run.n);
        let mut shape = BatchShape {
            decode_seqs: run.n,
            decode_context_tokens: run.context + u64::from(c) * n,
            decode_cached_tokens: run.cached,
            ..Default::default()
        };
        let mut t = run.end_of(c);
        for j in c + 1..=target {
            let d = inst.cost.step_time(&shape);
            if d == SimDuration::ZERO {
                // A step of no time ends at its own start: taken one by one.
                run.last = j - 1;
                return;
            }
            t += d;
            run.ends.push(t);
            if t > run.bound || j == run.cap {
                run.last = j;
                return;
            }
            if t >= hint {
                return;
            }
            shape.decode_context_tokens += n;
        }
        if c == run.cap {
            run.last = c;
        }
    }

    /// The entry of instance `k` in the queue is a checkpoint of its run: computes on, and
    /// moves the entry. False when the checkpoint turned out to be the run's last step end.
    pub(super) fn pass_checkpoint(&mut self, k: usize) -> bool {
        let before = self.ff.runs[k].ends.len() as u32;
        self.extend_run(k, SimTime::MAX);
        let run = &self.ff.runs[k];
        if run.last == before {
            return false;
        }
        self.queue.schedule_key(k as u32, *run.ends.last().expect("computed"));
        true
    }

    /// Catches every instance up to the event in process (see [`Simulation::catch_up`]).
    pub(super) fn catch_up_all<R: Recorder>(&mut self, rec: &mut R) -> CaughtUp {
        for i in 0..self.ff.runs.len() {
            if self.ff.runs[i].active {
                self.catch_up(i, rec);
            }
        }
        CaughtUp::vouch()
    }

    /// Applies the steps of instance `i`'s run that precede the event in process: its state,
    /// gauges and statistics become what stepping one by one would have made them.
    fn catch_up<R: Recorder>(&mut self, i: usize, rec: &mut R) {
        let run = &self.ff.runs[i];
        if !run.active {
            return;
        }
        let cur = self.ff.cursor;
        let me = i as u32;
        let before = |e: SimTime, below: u32| e < cur.time || (e == cur.time && me < below);
        // The end of the last step computed is the queue entry, never virtual.
        let known = run.ends.len() as u32;
        let mut ended = run.ended;
        while ended + 1 < known && before(run.ends[ended as usize], cur.ends_below) {
            ended += 1;
        }
        let built = if ended > 0 && before(run.end_of(ended), cur.builds_below) { ended + 1 } else { ended.max(1) };
        let built = built.max(run.built);
        if ended > run.ended {
            self.apply_ends(i, ended, rec);
        }
        if built > self.ff.runs[i].built {
            self.apply_batches(i, built, rec);
        }
    }

    /// Applies the ends of steps `ended + 1..=to` of instance `i`'s run to its sequences.
    fn apply_ends<R: Recorder>(&mut self, i: usize, to: u32, rec: &mut R) {
        let run = &self.ff.runs[i];
        let inst = self.cluster.instances.lazy(i);
        let from = run.ended;
        let k = to - from;
        let first_end = run.end_of(from + 1);
        let end = run.end_of(to);
        let mut later_max = SimDuration::ZERO;
        for j in from + 2..=to {
            let d = run.duration(j);
            later_max = later_max.max(d);
        }
        // The first gap is each sequence's own (from its last token) in the run's first step;
        // after that, every sequence's is the step's duration.
        let mut gaps = super::steps::GapRun::default();
        for &sid in &inst.running {
            let s = &mut self.seqs[sid];
            let gap = first_end - s.last_token;
            gaps.push(gap, rec);
            s.max_gap = s.max_gap.max(gap).max(later_max);
            s.computed += k;
            s.generated += k;
            s.last_token = end;
        }
        gaps.flush(rec);
        let n = u64::from(run.n);
        for j in from + 2..=to {
            rec.on_token_gaps(run.duration(j), n);
        }
        self.ff.runs[i].ended = to;
        self.queue.count_virtual(u64::from(k));
        self.ff.forwarded += u64::from(k);
        self.last_work = self.last_work.max(end);
        self.now = self.now.max(end);
    }

    /// Applies the batches of steps `built + 1..=to` of instance `i`'s run: the KV blocks they
    /// take, in the order the batches would take them, and the steps' observations.
    fn apply_batches<R: Recorder>(&mut self, i: usize, to: u32, rec: &mut R) {
        let run = &self.ff.runs[i];
        let inst = self.cluster.instances.lazy_mut(i);
        let from = run.built;
        let n = u64::from(run.n);
        for j in from + 1..=to {
            let d = run.duration(j);
            let shape = BatchShape {
                decode_seqs: run.n,
                decode_context_tokens: run.context + u64::from(j - 1) * n,
                decode_cached_tokens: run.cached,
                ..Default::default()
            };
            rec.on_step(inst.id, run.end_of(j - 1), d, &shape);
            inst.stats.steps += 1;
            inst.stats.busy_ns += d.as_nanos();
        }
        // Blocks: sequence by sequence the steps whose batches take one, then in step order
        // by a stable counting sort on the step (batch order within a step).
        let bs = inst.kv.block_size();
        let lo = from + 1;
        self.ff.scratch.clear();
        for (idx, &f) in run.first_block.iter().enumerate() {
            if f > to {
                continue;
            }
            let mut j = if f >= lo { f } else { f + (lo - f).div_ceil(bs) * bs };
            while j <= to {
                self.ff.scratch.push((j, idx as u32));
                j += bs;
            }
        }
        if !self.ff.scratch.is_empty() {
            if self.ff.scratch.len() > 1 && to > lo {
                let span = (to - lo + 1) as usize;
                self.ff.counts.clear();
                self.ff.counts.resize(span + 1, 0);
                for &(j, _) in &self.ff.scratch {
                    self.ff.counts[(j - lo) as usize + 1] += 1;
                }
                for k in 1..self.ff.counts.len() {
                    self.ff.counts[k] += self.ff.counts[k - 1];
                }
                self.ff.sorted.clear();
                self.ff.sorted.resize(self.ff.scratch.len(), (0, 0));
                for &(j, idx) in &self.ff.scratch {
                    let at = &mut self.ff.counts[(j - lo) as usize];
                    self.ff.sorted[*at] = (j, idx);
                    *at += 1;
                }
                std::mem::swap(&mut self.ff.scratch, &mut self.ff.sorted);
            }
            for &(_, idx) in &self.ff.scratch {
                let s = &mut self.seqs[inst.running[idx as usize]];
                let ok = inst.kv.allocate(Blocks(1), &mut s.blocks);
                debug_assert!(ok, "counted against the free blocks when the run started");
            }
            inst.stats.kv_peak_used = inst.stats.kv_peak_used.max(inst.kv.used().as_u64());
        }
        let took = !self.ff.scratch.is_empty();
        self.ff.runs[i].built = to;
        self.queue.count_virtual(u64::from(to - from));
        if took {
            let inst = self.cluster.instances.lazy_mut(i);
            super::steps::forward_kv_events(&mut self.host, inst);
            super::accounting::publish_gauges(&mut self.host, inst);
        }
    }

    /// Something is about to read or change instance `i`: catches it up and ends its run,
    /// so that the step in flight ends as a real event (or, between two steps, its `TryStep`
    /// is queued). The only way to reach an instance (see [`Held`]); a no-op for one that is
    /// not fast-forwarding.
    pub(super) fn touch<R: Recorder>(&mut self, i: usize, rec: &mut R) -> Held {
        if !self.ff.runs[i].active {
            return Held::vouch(i);
        }
        self.catch_up(i, rec);
        let run = &mut self.ff.runs[i];
        run.active = false;
        if run.built == run.ended {
            // Step `ended` ended at the cursor's time; the next batch is decided after it.
            let at = run.end_of(run.ended);
            let inst = self.cluster.instances.lazy_mut(i);
            inst.busy = false;
            inst.wake_pending = true;
            self.queue.cancel_key(i as u32);
            self.push_ranked(at, Phase::Schedule, i as u32, Event::TryStep(i as u32));
        } else {
            let at = run.end_of(run.built);
            self.queue.schedule_key(i as u32, at);
        }
        Held::vouch(i)
    }

    /// Instance `i`'s entry came out of the queue as a step end: a run's last step ends
    /// (when it had one), and the instance is up to date.
    pub(super) fn end_run<R: Recorder>(&mut self, i: usize, rec: &mut R) -> Held {
        if !self.ff.runs[i].active {
            return Held::vouch(i);
        }
        self.catch_up(i, rec);
        let run = &mut self.ff.runs[i];
        debug_assert!(run.last > 0 && run.ended + 1 == run.last && run.built == run.last, "a run ends after all its steps");
        run.active = false;
        Held::vouch(i)
    }
}
