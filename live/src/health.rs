//! Engine health in a live run: a circuit breaker per engine.
//!
//! An engine is taken out of routing when
//! - a probe (the `/metrics` scrapes the router makes anyway) or a request cannot connect or
//!   is reset: at once; it answers HTTP 5xx to [`FAULTS_IN_A_ROW`] requests in a row (one 5xx
//!   may be one request's bad luck);
//! - no probe has answered for [`HealthConfig::silent_after`] (a hung or stopped engine
//!   accepts connections and says nothing): when the loop next looks, within a tick.
//!
//! While it is out its scraper probes `/health` instead of `/metrics`: the first success
//! puts it back, half open (one more 5xx takes it out again).
//! When every engine a request could go to is out, the driver routes it among all of them
//! anyway (fail open): the breaker never turns a request it could have sent into a rejection.
//! Requests in flight on an engine that goes out are left to finish or to fail with their
//! own reason (a stopped engine that is continued finishes them). The breaker keeps each
//! engine's time out of routing for the summary's availability.

use std::time::{Duration, Instant};

use crate::client::ClientError;

/// How soon an engine is taken out of routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// An engine whose probes have not answered for this long is out of routing.
    pub silent_after: Duration,
}

/// The default: out 600 ms past the next scrape's due time without an answer (with a 200 ms
/// scrape interval and the 100 ms loop tick, within a second of the last answer).
pub const DEFAULT_SILENT_AFTER: Duration = Duration::from_millis(600);

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig { silent_after: DEFAULT_SILENT_AFTER }
    }
}

/// HTTP 5xx answers in a row that take an engine out of routing.
pub const FAULTS_IN_A_ROW: u32 = 3;

/// A change of one engine's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Taken out of routing, and why.
    Out(String),
    /// Put back.
    Back,
}

/// Whether an error says the engine cannot be reached: it refused or reset the connection.
pub fn unreachable(e: &ClientError) -> bool {
    matches!(e, ClientError::Connect { .. } | ClientError::Dropped { .. } | ClientError::Http { .. })
}

/// Whether an error says the engine itself is unwell (as opposed to this one request being
/// bad): it cannot be reached, it reset the connection, or it answered 5xx.
pub fn engine_fault(e: &ClientError) -> bool {
    match e {
        ClientError::Connect { .. } | ClientError::Dropped { .. } | ClientError::Http { .. } => true,
        ClientError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

#[derive(Clone, Debug)]
struct Engine {
    out_since: Option<Instant>,
    out_total: Duration,
    outs: u32,
    last_answer: Instant,
    last_reason: Option<String>,
    faults_in_a_row: u32,
}

/// The breakers of a run's engines.
#[derive(Clone, Debug)]
pub struct Health {
    config: HealthConfig,
    start: Instant,
    engines: Vec<Engine>,
}

/// One engine's availability over a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Availability {
    /// Share of the run it was in routing, in [0, 1].
    pub share: f64,
    /// Times it was taken out.
    pub outages: u32,
    /// Seconds out of routing in all.
    pub out_s: f64,
    /// Why it was last taken out.
    pub last_reason: Option<String>,
}

impl Health {
    /// `n` engines, all in routing at `start`.
    pub fn new(n: usize, config: HealthConfig, start: Instant) -> Self {
        let e = Engine { out_since: None, out_total: Duration::ZERO, outs: 0, last_answer: start, last_reason: None, faults_in_a_row: 0 };
        Health { config, start, engines: vec![e; n] }
    }

    /// Whether engine `i` is in routing.
    pub fn is_in(&self, i: usize) -> bool {
        self.engines[i].out_since.is_none()
    }

    fn take_out(&mut self, i: usize, now: Instant, why: String) -> Option<Change> {
        let e = &mut self.engines[i];
        if e.out_since.is_some() {
            return None;
        }
        e.out_since = Some(now);
        e.outs += 1;
        e.last_reason = Some(why.clone());
        Some(Change::Out(why))
    }

    /// A probe of engine `i` answered at `now`.
    pub fn on_answer(&mut self, i: usize, now: Instant) -> Option<Change> {
        let e = &mut self.engines[i];
        e.last_answer = e.last_answer.max(now);
        let since = e.out_since.take()?;
        e.out_total += now.saturating_duration_since(since);
        // Half open: a probe says the server is up, not that it serves; one more 5xx and it
        // is out again.
        e.faults_in_a_row = FAULTS_IN_A_ROW - 1;
        Some(Change::Back)
    }

    /// A probe of engine `i` failed at `now`.
    pub fn on_probe_error(&mut self, i: usize, now: Instant, e: &ClientError) -> Option<Change> {
        if engine_fault(e) { self.take_out(i, now, e.to_string()) } else { None }
    }

    /// A request to engine `i` failed at `now`.
    pub fn on_request_error(&mut self, i: usize, now: Instant, e: &ClientError) -> Option<Change> {
        if unreachable(e) {
            return self.take_out(i, now, e.to_string());
        }
        if !engine_fault(e) {
            return None;
        }
        let n = &mut self.engines[i].faults_in_a_row;
        *n += 1;
        if *n < FAULTS_IN_A_ROW {
            return None;
        }
        *n = 0;
        self.take_out(i, now, format!("{FAULTS_IN_A_ROW} answers 5xx in a row, the last: {e}"))
    }

    /// A request to engine `i` finished.
    pub fn on_request_ok(&mut self, i: usize) {
        self.engines[i].faults_in_a_row = 0;
    }

    /// Whether any engine is out of routing.
    pub fn any_out(&self) -> bool {
        self.engines.iter().any(|e| e.out_since.is_some())
    }

    /// Engines whose probes have been silent too long, taken out at `now`.
    pub fn check(&mut self, now: Instant) -> Vec<(usize, Change)> {
        let limit = self.config.silent_after;
        let mut changes = Vec::new();
        for i in 0..self.engines.len() {
            let silent = now.saturating_duration_since(self.engines[i].last_answer);
            if silent > limit
                && let Some(c) = self.take_out(i, now, format!("no answer to its probes for {:.1} s", silent.as_secs_f64()))
            {
                changes.push((i, c));
            }
        }
        changes
    }

    /// Engine `i`'s availability from the start to `end`.
    pub fn availability(&self, i: usize, end: Instant) -> Availability {
        let e = &self.engines[i];
        let out = e.out_total + e.out_since.map_or(Duration::ZERO, |s| end.saturating_duration_since(s));
        let run = end.saturating_duration_since(self.start).as_secs_f64();
        Availability {
            share: if run > 0.0 { (1.0 - out.as_secs_f64() / run).clamp(0.0, 1.0) } else { 1.0 },
            outages: e.outs,
            out_s: out.as_secs_f64(),
            last_reason: e.last_reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> ClientError {
        ClientError::Connect { url: "http://127.0.0.1:1/metrics".into(), reason: "connection refused".into() }
    }

    #[test]
    fn a_refused_connection_takes_an_engine_out_at_once_and_an_answer_puts_it_back() {
        let t0 = Instant::now();
        let mut h = Health::new(2, HealthConfig::default(), t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(matches!(h.on_request_error(1, at(100), &refused()), Some(Change::Out(_))));
        assert!(!h.is_in(1) && h.is_in(0));
        assert_eq!(h.on_request_error(1, at(150), &refused()), None, "already out");
        assert_eq!(h.on_answer(1, at(1100)), Some(Change::Back));
        assert!(h.is_in(1));
        let a = h.availability(1, at(2000));
        assert_eq!(a.outages, 1);
        assert!((a.out_s - 1.0).abs() < 1e-9 && (a.share - 0.5).abs() < 1e-9, "{a:?}");
        assert_eq!(h.availability(0, at(2000)).share, 1.0);
    }

    #[test]
    fn a_silent_engine_is_taken_out_after_the_limit_and_a_bad_request_is_not_a_fault() {
        let t0 = Instant::now();
        let mut h = Health::new(2, HealthConfig { silent_after: Duration::from_millis(500) }, t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        h.on_answer(0, at(400));
        h.on_answer(1, at(400));
        assert!(h.check(at(800)).is_empty(), "400 ms of silence is within the limit");
        h.on_answer(0, at(850));
        let out = h.check(at(950));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 1);
        assert!(matches!(&out[0].1, Change::Out(why) if why.contains("no answer to its probes")), "{out:?}");
        // A 400 is this request's fault, a 503 the engine's.
        let bad = ClientError::Status { url: "u".into(), status: 400, body: "too long".into() };
        let busy = ClientError::Status { url: "u".into(), status: 503, body: "overloaded".into() };
        assert_eq!(h.on_request_error(0, at(1000), &bad), None);
        assert!(h.is_in(0));
        assert_eq!(h.on_request_error(0, at(1000), &busy), None, "one 5xx may be bad luck");
        assert_eq!(h.on_request_error(0, at(1000), &busy), None);
        h.on_request_ok(0);
        assert_eq!(h.on_request_error(0, at(1000), &busy), None, "a success in between starts the count again");
        assert_eq!(h.on_request_error(0, at(1000), &busy), None);
        assert!(matches!(h.on_request_error(0, at(1000), &busy), Some(Change::Out(why)) if why.contains("3 answers 5xx in a row")));
        assert!(!h.is_in(0) && h.any_out());
    }
}
