//! The simulation: a steppable discrete-event engine over one event queue.
//!
//! [`Simulation::run`] is a thin loop over the stepping API — [`Simulation::submit`],
//! [`Simulation::next_event_time`], [`Simulation::step_until`], [`Simulation::cancel`] — so
//! live mode, closed-loop drivers and co-simulation reuse the same core, and stepping in
//! chunks gives the same records as one run.
//!
//! The parts: `build` (from a validated spec), `arrivals` (admission and routing through the
//! [`RouterHost`]), `steps` (instance steps), `transfer` and `link` (KV transfers over
//! processor-sharing links), `migrate`, `cancel`, and `accounting` (gauges, queue depth,
//! records and totals).

mod accounting;
mod arrivals;
mod build;
mod cancel;
mod cluster;
mod fastforward;
pub(crate) mod link;
mod migrate;
mod steps;
mod transfer;

use crate::queue::{EventQueue, Phase, Popped};
use crate::record::{Recorder, RunTotals};
use crate::request::Request;
use crate::router::RouterHost;
use crate::seq::{SeqId, SeqSlab};
use crate::spec::RunSpec;
use crate::time::{SimDuration, SimTime};
use crate::units::check_length;
use cluster::Cluster;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    /// The workload's next request arrives.
    Arrival,
    /// A request given to [`Simulation::submit`] arrives (its slot).
    Submitted(u32),
    /// Instance `i` decides its next batch (ranked by instance: see [`crate::queue`]).
    TryStep(u32),
    /// The live completion of a link is due (stale when the link expects another time).
    LinkDone(u32),
    /// The KV of a sequence landed at its decode instance.
    TransferDone(SeqId),
    TelemetryTick,
    /// The router's migration planner runs.
    Migrate,
    /// A closed-loop user sends its next request.
    UserReady(u32),
}

impl Event {
    /// Periodic control events do not keep a run alive.
    fn is_work(&self) -> bool {
        !matches!(self, Event::TelemetryTick | Event::Migrate)
    }
}

/// Why [`Simulation::submit`] refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// It arrives before the simulation's current time.
    #[error("request {id} arrives at {arrival}, before the simulation's current time {now}")]
    InThePast {
        /// The request.
        id: u64,
        /// Its arrival.
        arrival: SimTime,
        /// The simulation's time.
        now: SimTime,
    },
    /// A length is out of bounds.
    #[error("request {id}: {message}")]
    Length {
        /// The request.
        id: u64,
        /// What is wrong.
        message: String,
    },
}

/// One simulation run of a validated scenario.
pub struct Simulation {
    run: RunSpec,
    now: SimTime,
    queue: EventQueue<Event>,
    /// Work events (not periodic control) waiting in the queue.
    work_events: u64,
    last_work: SimTime,
    /// Arrivals stop being processed after this time (runs that do not drain).
    cutoff: Option<SimTime>,
    cut: bool,
    /// Why the run stopped before its end, if it did (a bound of `run { }` was passed).
    stopped: Option<String>,
    /// Whether arrivals stopped at the run's duration (rather than at its request count or
    /// the end of a trace): the fleet is then held at least that long.
    held_for_duration: bool,
    cluster: Cluster,
    seqs: SeqSlab,
    /// Where requests come from: the workload and submitted requests.
    arrivals: arrivals::Arrivals,
    /// What the run counts for its totals.
    tally: accounting::Tally,
    host: RouterHost,
    /// The periodic control events: telemetry refreshes and migration planning.
    control: Control,
    /// Lists an event fills and empties again (reused, so that events allocate nothing).
    scratch: Scratch,
    check_index: bool,
    /// The time the current `step_until` runs to (fast-forward stops there).
    horizon: SimTime,
    /// Fast-forward's state: per instance, its steady steps taken lazily (see `fastforward`).
    ff: fastforward::FastForward,
}

/// The periodic control events: whether each is queued, and how often migrations are
/// planned (the telemetry interval is the router host's).
#[derive(Debug, Default)]
struct Control {
    migration_interval: Option<SimDuration>,
    telemetry_armed: bool,
    migrate_armed: bool,
}

/// Per-event lists, empty between events.
#[derive(Debug, Default)]
struct Scratch {
    /// Sequences the batch being built preempted.
    preempted: Vec<SeqId>,
    /// Sequences the step that ended finished, or handed off to a decode instance.
    finished: Vec<SeqId>,
    handoffs: Vec<SeqId>,
    /// Transfers whose bytes crossed a link.
    landed: Vec<SeqId>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation").field("now", &self.now).field("instances", &self.cluster.instances.len()).finish_non_exhaustive()
    }
}

impl Simulation {
    fn push(&mut self, at: SimTime, phase: Phase, ev: Event) {
        if ev.is_work() {
            self.work_events += 1;
        }
        self.queue.push(at, phase, ev);
    }

    fn push_ranked(&mut self, at: SimTime, phase: Phase, rank: u32, ev: Event) {
        if ev.is_work() {
            self.work_events += 1;
        }
        self.queue.push_ranked(at, phase, rank, ev);
    }

    /// Whether work (not periodic control) is still pending: queued events or steps.
    fn work_pending(&self) -> bool {
        self.work_events > 0 || self.queue.keyed_live() > 0
    }

    /// The current simulated time: that of the last event processed.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Steps completed in bulk by fast-forward so far (each is also counted as an event).
    pub fn fast_forwarded_steps(&self) -> u64 {
        self.ff.forwarded
    }

    /// The router host (its view, counters and prefix index), for inspection.
    pub fn router(&self) -> &RouterHost {
        &self.host
    }

    /// Requests in flight: arrived, not yet finished, rejected or cancelled.
    pub fn in_flight(&self) -> usize {
        self.seqs.live()
    }

    /// When the next event happens; `None` when the run has nothing left to do (or passed
    /// its stop time without draining).
    pub fn next_event_time(&self) -> Option<SimTime> {
        if self.cut || self.stopped.is_some() {
            return None;
        }
        let t = self.queue.peek_time()?;
        if self.cutoff.is_some_and(|c| t > c) { None } else { Some(t) }
    }

    /// Adds a request from outside the workload (a co-simulation, a replay driver). It
    /// arrives at `req.arrival`, which must not be before [`Simulation::now`]; its id should
    /// be unique within the run ([`Simulation::cancel`] finds requests by id).
    pub fn submit(&mut self, req: Request) -> Result<(), SubmitError> {
        if req.arrival < self.now {
            return Err(SubmitError::InThePast { id: req.id.0, arrival: req.arrival, now: self.now });
        }
        for (what, n) in [("the prompt", req.prompt_tokens), ("the output", req.output_tokens)] {
            check_length(what, n.as_u64()).map_err(|message| SubmitError::Length { id: req.id.0, message })?;
        }
        let at = req.arrival;
        let slot = match self.arrivals.submitted_free.pop() {
            Some(k) => {
                self.arrivals.submitted[k as usize] = Some(req);
                k
            }
            None => {
                self.arrivals.submitted.push(Some(req));
                (self.arrivals.submitted.len() - 1) as u32
            }
        };
        self.push(at, Phase::Arrival, Event::Submitted(slot));
        self.cut = false;
        self.arm_telemetry(self.now);
        self.arm_migrate(self.now);
        Ok(())
    }

    /// Processes every event at or before `until` (and before the stop time of a run that
    /// does not drain). Returns whether events remain. Stepping to `t1` then `t2` gives the
    /// same records as stepping to `t2` at once.
    pub fn step_until<R: Recorder>(&mut self, until: SimTime, rec: &mut R) -> bool {
        self.horizon = until;
        // Fast-forwarded steps are bounded by `until`, the stop time and `max_time`: when the
        // loop stops at one of them, catching every instance up to it applies them all.
        while let Some(t) = self.queue.peek_time() {
            if self.stopped.is_some() {
                return false;
            }
            if t > until {
                self.settle(until, rec);
                return true;
            }
            if let Some(c) = self.cutoff
                && t > c
            {
                self.cut = true;
                self.settle(c, rec);
                return false;
            }
            let max_time = SimTime::ZERO + self.run.max_time;
            if t > max_time {
                self.settle(max_time, rec);
                self.stopped = Some(format!(
                    "simulated time passed run.max_time ({}) with {} requests in flight; raise `max_time` in `run {{ }}` to go on",
                    self.run.max_time,
                    self.seqs.live()
                ));
                return false;
            }
            if let Some((_, k)) = self.queue.peek_key()
                && self.ff.runs[k as usize].at_checkpoint()
                && self.pass_checkpoint(k as usize)
            {
                continue;
            }
            let (t, popped) = self.queue.pop().expect("peeked");
            self.now = t;
            match popped {
                Popped::Key(i) => {
                    self.last_work = t;
                    self.ff.cursor = fastforward::Cursor::step_end(t, i);
                    let h = self.end_run(i as usize, rec);
                    self.on_step_finished(h, rec);
                }
                Popped::Event(ev) => {
                    if ev.is_work() {
                        self.work_events -= 1;
                        self.last_work = t;
                    }
                    self.ff.cursor = match ev {
                        Event::TryStep(i) => fastforward::Cursor::try_step(t, i),
                        _ => fastforward::Cursor::event(t),
                    };
                    self.dispatch(ev, rec);
                }
            }
        }
        false
    }

    /// Catches every instance up to after the events at or before `t`.
    fn settle<R: Recorder>(&mut self, t: SimTime, rec: &mut R) {
        self.ff.cursor = fastforward::Cursor::after(t);
        self.catch_up_all(rec);
    }

    fn dispatch<R: Recorder>(&mut self, ev: Event, rec: &mut R) {
        let t = self.now;
        match ev {
            Event::Arrival => {
                if let Some(req) = self.arrivals.pending.take() {
                    self.admit(req, u32::MAX, rec);
                    self.schedule_next_arrival();
                }
            }
            Event::Submitted(slot) => {
                self.arrivals.submitted_free.push(slot);
                // Empty when it was cancelled before it arrived.
                if let Some(req) = self.arrivals.submitted[slot as usize].take() {
                    self.admit(req, u32::MAX, rec);
                }
            }
            Event::UserReady(u) => {
                let (open, in_time) = crate::workload::WorkloadGen::user_may_send(&self.run, self.tally.arrived, t);
                self.held_for_duration |= !in_time;
                if open && let Some(w) = self.arrivals.workload.as_mut() {
                    let req = w.request_at(t);
                    self.admit(req, u, rec);
                }
            }
            Event::TryStep(i) => {
                let h = self.touch(i as usize, rec);
                self.on_try_step(h, rec);
            }
            Event::LinkDone(l) => self.on_link_done(l as usize),
            Event::TransferDone(s) => self.on_transfer_done(s, rec),
            Event::TelemetryTick => {
                let all = self.catch_up_all(rec);
                self.publish_all(&all);
                self.control.telemetry_armed = false;
                // Refreshes stop with the work; a later submission restarts them.
                if self.work_pending() {
                    self.arm_telemetry(t);
                }
            }
            Event::Migrate => {
                self.on_migrate(rec);
                self.control.migrate_armed = false;
                if self.work_pending() {
                    self.arm_migrate(t);
                }
            }
        }
    }

    /// Schedules the next gauge refresh one interval after `t`, unless one is pending.
    fn arm_telemetry(&mut self, t: SimTime) {
        let interval = self.host.telemetry_interval();
        if interval > SimDuration::ZERO && !self.control.telemetry_armed {
            self.control.telemetry_armed = true;
            self.push(t + interval, Phase::Control, Event::TelemetryTick);
        }
    }

    /// Schedules the next migration planning one interval after `t`, unless one is pending.
    fn arm_migrate(&mut self, t: SimTime) {
        if let Some(m) = self.control.migration_interval
            && !self.control.migrate_armed
        {
            self.control.migrate_armed = true;
            self.push(t + m, Phase::Control, Event::Migrate);
        }
    }

    /// Runs to the end and returns the totals; requests go to `rec` as they leave.
    pub fn run<R: Recorder>(mut self, rec: &mut R) -> RunTotals {
        self.step_until(SimTime::MAX, rec);
        self.finish(rec)
    }

    /// Ends the run now: requests still in flight are reported as unfinished; returns the
    /// totals over the run's window.
    pub fn finish<R: Recorder>(self, rec: &mut R) -> RunTotals {
        let end = match (self.cut, self.cutoff) {
            _ if self.stopped.is_some() => self.now,
            (true, Some(c)) => c,
            _ if self.held_for_duration => self.last_work.max(SimTime::ZERO + self.run.duration.unwrap_or(SimDuration::ZERO)),
            _ => self.last_work,
        };
        self.close(end, rec)
    }

    /// Why the run stopped before its end, when a bound of `run { }` was passed.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// A request left the system now (finished, rejected or cancelled).
    fn departed(&mut self) {
        self.tally.last_departure = Some(self.now);
    }
}

#[cfg(test)]
mod tests;
