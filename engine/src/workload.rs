//! Workload generation: arrival processes and request shapes, drawn lazily one at a time so
//! memory does not grow with the length of the run.

use rand::RngExt;
use rand_distr::{Distribution, Exp, Gamma, LogNormal, Normal};

use crate::request::{Request, RequestId};
use crate::rng::{RunSeed, StreamRng, stream};
use crate::spec::{ArrivalSpec, BurstSpec, LengthSpec, PrefixSpec, RunSpec, WorkloadSpec};
use crate::time::{SimDuration, SimTime};
use crate::trace::{TraceError, TraceReader, TraceSpec};
use crate::units::{MAX_TOKENS, Tokens};

/// The next request of an open-loop run, as [`WorkloadGen::next_within`] gives it.
#[derive(Debug)]
pub enum Next {
    /// Send this one at its arrival time.
    Send(Request),
    /// Arrivals are over: the run's request count or the end of the trace (`by_duration`
    /// false), or its duration (true: the fleet is held for all of it).
    Over {
        /// Whether the run's duration ended them.
        by_duration: bool,
    },
}

/// Produces requests in arrival order, lazily: memory does not grow with the run.
#[derive(Debug)]
pub struct WorkloadGen {
    spec: WorkloadSpec,
    arrivals: Option<ArrivalGen>,
    trace: Option<TraceReplay>,
    lengths: StreamRng,
    prefixes: StreamRng,
    classes: StreamRng,
    think: StreamRng,
    class_cdf: Vec<f64>,
    next_id: u64,
}

impl WorkloadGen {
    /// A generator for `spec` drawing from the run's substreams; opens the trace, if any.
    pub fn new(spec: &WorkloadSpec, seed: RunSeed) -> Result<Self, TraceError> {
        let total: f64 = spec.classes.iter().map(|c| c.weight).sum();
        let mut acc = 0.0;
        let class_cdf = spec
            .classes
            .iter()
            .map(|c| {
                acc += c.weight / total;
                acc
            })
            .collect();
        let trace = match &spec.trace {
            Some(t) => Some(TraceReplay::open(t)?),
            None => None,
        };
        let arrivals = match (&spec.trace, &spec.arrivals) {
            (None, ArrivalSpec::ClosedLoop { .. }) | (Some(_), _) => None,
            (None, a) => Some(ArrivalGen::new(a.clone(), seed.stream(stream::ARRIVALS))),
        };
        Ok(WorkloadGen {
            spec: spec.clone(),
            arrivals,
            trace,
            lengths: seed.stream(stream::LENGTHS),
            prefixes: seed.stream(stream::PREFIXES),
            classes: seed.stream(stream::CLASSES),
            think: seed.stream(stream::THINK),
            class_cdf,
            next_id: 0,
        })
    }

    /// `(users, mean think time)` for closed-loop workloads.
    pub fn closed_loop(&self) -> Option<(u32, SimDuration)> {
        match (&self.spec.trace, &self.spec.arrivals) {
            (None, ArrivalSpec::ClosedLoop { users, think }) => Some((*users, *think)),
            _ => None,
        }
    }

    /// The next open-loop request within the bounds of `run`, `sent` requests having been
    /// drawn so far: the one rule of the simulator and the live driver for when arrivals end.
    pub fn next_within(&mut self, run: &RunSpec, sent: u64) -> Next {
        if run.requests.is_some_and(|n| sent >= n) {
            return Next::Over { by_duration: false };
        }
        match self.next_request() {
            Some(r) if run.duration.is_some_and(|d| r.arrival >= SimTime::ZERO + d) => Next::Over { by_duration: true },
            Some(r) => Next::Send(r),
            None => Next::Over { by_duration: false },
        }
    }

    /// Whether a closed-loop user ready at `at` may send within the bounds of `run`, `sent`
    /// requests having been sent: `(may send, within the duration)`.
    pub fn user_may_send(run: &RunSpec, sent: u64, at: SimTime) -> (bool, bool) {
        let in_time = run.duration.is_none_or(|d| at < SimTime::ZERO + d);
        (run.requests.is_none_or(|n| sent < n) && in_time, in_time)
    }

    /// How long a closed-loop user thinks before sending its next request: exponential with
    /// the workload's mean think time (zero when it is zero or the workload is open). The
    /// simulator and the live driver both draw it here, from the run's think substream.
    pub fn think_time(&mut self) -> SimDuration {
        let think = self.closed_loop().map_or(SimDuration::ZERO, |c| c.1);
        if think == SimDuration::ZERO {
            return SimDuration::ZERO;
        }
        let u: f64 = 1.0 - self.think.random::<f64>();
        SimDuration::from_secs_f64(-u.ln() * think.as_secs_f64())
    }

    /// The next request in arrival order; `None` when a trace is exhausted, or on a trace
    /// error (see [`WorkloadGen::error`]). Closed loops use [`WorkloadGen::request_at`].
    pub fn next_request(&mut self) -> Option<Request> {
        if let Some(t) = self.trace.as_mut() {
            let row = t.next()?;
            let block_tokens = t.block_tokens;
            let id = RequestId(self.next_id);
            self.next_id += 1;
            let priority = self.draw_priority(self.spec.priority);
            return Some(Request {
                id,
                arrival: row.0,
                prompt_tokens: Tokens(row.1),
                output_tokens: Tokens(row.2),
                priority,
                prefix_group: 0,
                prefix_tokens: Tokens::ZERO,
                class: 0,
                trace_blocks: row.3,
                trace_block_tokens: block_tokens,
            });
        }
        let at = self.arrivals.as_mut()?.next_arrival();
        Some(self.request_at(at))
    }

    /// A synthetic request arriving at `at`.
    pub fn request_at(&mut self, at: SimTime) -> Request {
        let class = if self.class_cdf.is_empty() {
            0
        } else {
            let u: f64 = self.classes.random();
            self.class_cdf.iter().position(|&c| u < c).unwrap_or(self.class_cdf.len() - 1)
        };
        let (prompt_spec, output_spec, priority, prefix) = match self.spec.classes.get(class) {
            Some(c) => (c.prompt.clone(), c.output.clone(), c.priority, c.prefix),
            None => (self.spec.prompt.clone(), self.spec.output.clone(), self.spec.priority, self.spec.prefix),
        };
        let prompt = draw_length(&prompt_spec, &mut self.lengths);
        let output = draw_length(&output_spec, &mut self.lengths);
        let priority = self.draw_priority(priority);
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let (prefix_group, prefix_tokens) = match prefix {
            // Groups are numbered per class so two classes never share a prefix by accident.
            Some(PrefixSpec { groups, tokens }) => ((class as u32) << 24 | self.prefixes.random_range(1..=groups), tokens),
            None => (0, 0),
        };
        Request {
            id,
            arrival: at,
            prompt_tokens: Tokens(prompt.saturating_add(prefix_tokens).min(MAX_TOKENS)),
            output_tokens: Tokens(output.max(1)),
            priority,
            prefix_group,
            prefix_tokens: Tokens(prefix_tokens),
            class: class as u8,
            trace_blocks: None,
            trace_block_tokens: 0,
        }
    }

    fn draw_priority(&mut self, (lo, hi): (u8, u8)) -> u8 {
        if lo == hi { lo } else { self.lengths.random_range(lo..=hi) }
    }

    /// Trace lines skipped as invalid so far.
    pub fn skipped(&self) -> u64 {
        self.trace.as_ref().map_or(0, |t| t.reader.skipped() + t.skipped_before)
    }

    /// The trace error that ended the arrivals, if one did.
    pub fn error(&self) -> Option<&TraceError> {
        self.trace.as_ref().and_then(|t| t.error.as_ref())
    }
}

/// Draws one length in tokens (at least 1, at most [`MAX_TOKENS`]).
pub fn draw_length(spec: &LengthSpec, rng: &mut StreamRng) -> u32 {
    let tokens = |x: f64| x.round().clamp(1.0, f64::from(MAX_TOKENS)) as u32;
    let n = match spec {
        LengthSpec::Constant(n) => *n,
        LengthSpec::Uniform { lo, hi } => rng.random_range(*lo..=*hi),
        LengthSpec::Exponential { mean } => {
            let x = Exp::new(1.0 / mean).map(|d| d.sample(rng)).unwrap_or(*mean);
            x.ceil().clamp(1.0, f64::from(MAX_TOKENS)) as u32
        }
        LengthSpec::Normal { mean, std } => tokens(Normal::new(*mean, *std).map(|d| d.sample(rng)).unwrap_or(*mean)),
        LengthSpec::LogNormal { mean, std } => {
            // Parameters of the underlying normal from the mean and std of the lengths.
            let s2 = (1.0 + (std / mean).powi(2)).ln();
            let mu = mean.ln() - s2 / 2.0;
            tokens(LogNormal::new(mu, s2.sqrt()).map(|d| d.sample(rng)).unwrap_or(*mean))
        }
        LengthSpec::Empirical(values) => values[rng.random_range(0..values.len())],
        LengthSpec::Clamped { inner, min, max } => {
            let continuous = matches!(**inner, LengthSpec::Normal { .. } | LengthSpec::LogNormal { .. } | LengthSpec::Exponential { .. });
            // Truncate continuous distributions by drawing again (bounded tries, then clamp).
            let mut x = draw_length(inner, rng);
            if continuous {
                for _ in 0..64 {
                    if (*min..=*max).contains(&x) {
                        break;
                    }
                    x = draw_length(inner, rng);
                }
            }
            x.clamp(*min, *max)
        }
    };
    n.clamp(1, MAX_TOKENS)
}

/// Arrival times of one open-loop process.
#[derive(Debug)]
struct ArrivalGen {
    spec: ArrivalSpec,
    rng: StreamRng,
    now: SimTime,
    window_end: SimTime,
    window_rate: f64,
    state: usize,
}

impl ArrivalGen {
    fn new(spec: ArrivalSpec, rng: StreamRng) -> Self {
        let mut g = ArrivalGen { spec: spec.clone(), rng, now: SimTime::ZERO, window_end: SimTime::ZERO, window_rate: 0.0, state: 0 };
        match spec {
            ArrivalSpec::Poisson { rate_per_s, burst: Some(b) } => {
                g.window_rate = rate_per_s;
                g.open_window(rate_per_s, b);
            }
            ArrivalSpec::Mmpp { rates, dwell } => {
                g.window_rate = rates[0];
                g.window_end = SimTime::ZERO + exp_gap(&mut g.rng, 1.0 / dwell[0].as_secs_f64());
            }
            _ => {}
        }
        g
    }

    fn open_window(&mut self, base: f64, b: BurstSpec) {
        let burst = self.rng.random_bool(b.probability);
        self.window_rate = if burst { base * b.factor } else { base };
        self.window_end += b.window;
    }

    fn next_arrival(&mut self) -> SimTime {
        match self.spec.clone() {
            ArrivalSpec::Constant { rate_per_s } => {
                self.now += SimDuration::from_secs_f64(1.0 / rate_per_s);
            }
            ArrivalSpec::Poisson { rate_per_s, burst: None } => {
                self.now += exp_gap(&mut self.rng, rate_per_s);
            }
            ArrivalSpec::Poisson { rate_per_s, burst: Some(b) } => loop {
                // Piecewise-constant rate: the exponential is memoryless, so a gap that
                // crosses the window's end restarts at the boundary with the next rate.
                let gap = exp_gap(&mut self.rng, self.window_rate);
                let t = self.now + gap;
                if t < self.window_end {
                    self.now = t;
                    break;
                }
                self.now = self.window_end;
                self.open_window(rate_per_s, b);
            },
            ArrivalSpec::Gamma { rate_per_s, cv } => {
                let shape = 1.0 / (cv * cv);
                let scale = 1.0 / (rate_per_s * shape);
                let gap = Gamma::new(shape, scale).map(|d| d.sample(&mut self.rng)).unwrap_or(1.0 / rate_per_s);
                self.now += SimDuration::from_secs_f64(gap);
            }
            ArrivalSpec::Mmpp { rates, dwell } => loop {
                let gap = if self.window_rate > 0.0 { exp_gap(&mut self.rng, self.window_rate) } else { SimDuration(u64::MAX / 4) };
                let t = self.now + gap;
                if t < self.window_end {
                    self.now = t;
                    break;
                }
                self.now = self.window_end;
                self.state = 1 - self.state;
                self.window_rate = rates[self.state];
                self.window_end = self.now + exp_gap(&mut self.rng, 1.0 / dwell[self.state].as_secs_f64());
            },
            ArrivalSpec::Ramp { points } => {
                // Thinning (Lewis and Shedler): candidates at the peak rate, each kept with
                // probability rate(t) / peak.
                let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
                loop {
                    self.now += exp_gap(&mut self.rng, peak);
                    if self.rng.random::<f64>() * peak < ramp_rate(&points, self.now) {
                        break;
                    }
                }
            }
            ArrivalSpec::ClosedLoop { .. } => unreachable!("closed loops are driven by completions"),
        }
        self.now
    }
}

/// The rate of a piecewise-linear ramp at `t`.
fn ramp_rate(points: &[(SimDuration, f64)], t: SimTime) -> f64 {
    let x = t.as_nanos();
    match points.iter().position(|p| p.0.as_nanos() > x) {
        None => points.last().map_or(0.0, |p| p.1),
        Some(0) => points[0].1,
        Some(i) => {
            let (a, b) = (points[i - 1], points[i]);
            let f = (x - a.0.as_nanos()) as f64 / (b.0.as_nanos() - a.0.as_nanos()).max(1) as f64;
            a.1 + (b.1 - a.1) * f
        }
    }
}

fn exp_gap(rng: &mut StreamRng, rate_per_s: f64) -> SimDuration {
    // Inverse CDF on (0, 1]: never a zero-length log.
    let u: f64 = 1.0 - rng.random::<f64>();
    SimDuration::from_secs_f64(-u.ln() / rate_per_s)
}

/// A trace replayed in time: window, speedup, limit and looping.
#[derive(Debug)]
struct TraceReplay {
    spec: TraceSpec,
    reader: TraceReader,
    block_tokens: u32,
    produced: u64,
    offset_ns: u64,
    last_ns: u64,
    produced_this_pass: u64,
    skipped_before: u64,
    error: Option<TraceError>,
    done: bool,
}

impl TraceReplay {
    fn open(spec: &TraceSpec) -> Result<Self, TraceError> {
        Ok(TraceReplay {
            reader: TraceReader::open(&spec.path, spec.format, spec.skip_invalid)?.with_block_tokens(spec.block_tokens),
            block_tokens: spec.block_tokens,
            spec: spec.clone(),
            produced: 0,
            offset_ns: 0,
            last_ns: 0,
            produced_this_pass: 0,
            skipped_before: 0,
            error: None,
            done: false,
        })
    }

    /// `(arrival, prompt, output, block ids)` of the next replayed request.
    #[allow(clippy::type_complexity)]
    fn next(&mut self) -> Option<(SimTime, u32, u32, Option<std::sync::Arc<[u64]>>)> {
        loop {
            if self.done || self.spec.limit.is_some_and(|n| self.produced >= n) {
                return None;
            }
            let row = match self.reader.next_row() {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    self.error = Some(e);
                    self.done = true;
                    return None;
                }
                None => {
                    if !self.spec.looped || self.produced_this_pass == 0 {
                        self.done = true;
                        return None;
                    }
                    self.restart()?;
                    continue;
                }
            };
            if row.arrival_ns < self.spec.start_ns {
                continue;
            }
            if self.spec.end_ns.is_some_and(|e| row.arrival_ns >= e) {
                if !self.spec.looped || self.produced_this_pass == 0 {
                    self.done = true;
                    return None;
                }
                self.restart()?;
                continue;
            }
            let rel = ((row.arrival_ns - self.spec.start_ns) as f64 / self.spec.speedup) as u64;
            self.last_ns = rel;
            self.produced += 1;
            self.produced_this_pass += 1;
            let (mut prompt, mut ids) = (row.prompt, row.hash_ids);
            if let Some(max) = self.spec.max_prompt
                && prompt > max
            {
                prompt = max;
                let keep = max.div_ceil(self.block_tokens.max(1)) as usize;
                ids = ids.map(|v| std::sync::Arc::from(&v[..keep.min(v.len())]));
            }
            let output = self.spec.max_output.map_or(row.output, |m| row.output.min(m));
            return Some((SimTime(self.offset_ns + rel), prompt, output, ids));
        }
    }

    // The next pass starts one mean gap (last arrival / (requests − 1)) after this pass's
    // last request.
    fn restart(&mut self) -> Option<()> {
        let gap = self.last_ns / self.produced_this_pass.saturating_sub(1).max(1);
        self.offset_ns += self.last_ns + gap.max(1);
        self.skipped_before += self.reader.skipped();
        match TraceReader::open(&self.spec.path, self.spec.format, self.spec.skip_invalid) {
            Ok(r) => self.reader = r.with_block_tokens(self.spec.block_tokens),
            Err(e) => {
                self.error = Some(e);
                self.done = true;
                return None;
            }
        }
        self.produced_this_pass = 0;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(arrivals: ArrivalSpec) -> WorkloadSpec {
        WorkloadSpec {
            arrivals,
            prompt: LengthSpec::Uniform { lo: 100, hi: 1200 },
            output: LengthSpec::Uniform { lo: 32, hi: 256 },
            priority: (0, 2),
            prefix: None,
            classes: vec![],
            trace: None,
        }
    }

    #[test]
    fn poisson_rate_and_uniform_lengths_match_their_means() {
        let mut g = WorkloadGen::new(&spec(ArrivalSpec::Poisson { rate_per_s: 24.0, burst: None }), RunSeed(7)).unwrap();
        let n = 100_000;
        let (mut last, mut psum, mut osum) = (SimTime::ZERO, 0u64, 0u64);
        let mut pri = [0u32; 3];
        for _ in 0..n {
            let r = g.next_request().unwrap();
            assert!((100..=1200).contains(&r.prompt_tokens.get()) && (32..=256).contains(&r.output_tokens.get()));
            psum += r.prompt_tokens.as_u64();
            osum += r.output_tokens.as_u64();
            pri[usize::from(r.priority)] += 1;
            last = r.arrival;
        }
        let rate = n as f64 / last.as_secs_f64();
        assert!((rate / 24.0 - 1.0).abs() < 0.01, "rate {rate}");
        assert!((psum as f64 / n as f64 - 650.0).abs() < 3.0);
        assert!((osum as f64 / n as f64 - 144.0).abs() < 1.0);
        assert!(pri.iter().all(|&c| (c as f64 / n as f64 - 1.0 / 3.0).abs() < 0.01));
    }

    #[test]
    fn burst_knob_raises_the_mean_rate_by_the_expected_factor() {
        // With probability 0.2 a window runs at 3x: mean rate = 24 * (0.8 + 0.2 * 3) = 33.6/s.
        let s = spec(ArrivalSpec::Poisson { rate_per_s: 24.0, burst: Some(BurstSpec::lab(3.0)) });
        let mut g = WorkloadGen::new(&s, RunSeed(3)).unwrap();
        let n = 200_000;
        let mut last = SimTime::ZERO;
        for _ in 0..n {
            last = g.next_request().unwrap().arrival;
        }
        let rate = n as f64 / last.as_secs_f64();
        assert!((rate / 33.6 - 1.0).abs() < 0.01, "rate {rate}");
    }

    fn gaps(arrivals: ArrivalSpec, n: usize, seed: u64) -> Vec<f64> {
        let mut g = WorkloadGen::new(&spec(arrivals), RunSeed(seed)).unwrap();
        let mut last = 0.0;
        (0..n)
            .map(|_| {
                let t = g.next_request().unwrap().arrival.as_secs_f64();
                let d = t - last;
                last = t;
                d
            })
            .collect()
    }

    fn mean_cv(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
        (m, v.sqrt() / m)
    }

    #[test]
    fn gamma_gaps_have_the_asked_mean_and_cv() {
        for cv in [0.5, 1.0, 3.0] {
            let (m, c) = mean_cv(&gaps(ArrivalSpec::Gamma { rate_per_s: 20.0, cv }, 200_000, 11));
            assert!((m * 20.0 - 1.0).abs() < 0.02, "cv {cv}: mean gap {m}");
            assert!((c / cv - 1.0).abs() < 0.03, "cv {cv}: got {c}");
        }
    }

    #[test]
    fn mmpp_mean_rate_weights_the_states_by_their_stays() {
        // 10/s for 30 s on average, 50/s for 5 s: (10*30 + 50*5) / 35 = 15.71/s.
        let a = ArrivalSpec::Mmpp { rates: [10.0, 50.0], dwell: [SimDuration::from_secs(30), SimDuration::from_secs(5)] };
        let want = a.mean_rate().unwrap();
        assert!((want - 550.0 / 35.0).abs() < 1e-9);
        let g = gaps(a, 300_000, 5);
        let rate = g.len() as f64 / g.iter().sum::<f64>();
        assert!((rate / want - 1.0).abs() < 0.03, "{rate} vs {want}");
        // Burstier than Poisson.
        assert!(mean_cv(&g).1 > 1.2);
    }

    #[test]
    fn ramp_follows_the_rate_through_its_points() {
        // 0 -> 100/s over 100 s: the expected count in [0, 100 s] is 5000, in [0, 50 s] 1250.
        let a = ArrivalSpec::Ramp { points: vec![(SimDuration::ZERO, 0.0), (SimDuration::from_secs(100), 100.0)] };
        let mut g = WorkloadGen::new(&spec(a), RunSeed(2)).unwrap();
        let (mut first_half, mut all) = (0, 0);
        loop {
            let t = g.next_request().unwrap().arrival.as_secs_f64();
            if t > 100.0 {
                break;
            }
            all += 1;
            if t <= 50.0 {
                first_half += 1;
            }
        }
        assert!((f64::from(all) / 5000.0 - 1.0).abs() < 0.05, "{all}");
        assert!((f64::from(first_half) / 1250.0 - 1.0).abs() < 0.1, "{first_half}");
    }

    #[test]
    fn length_distributions_hit_their_moments_and_clamps() {
        let mut rng = RunSeed(9).stream("lengths");
        let draw = |s: &LengthSpec, rng: &mut StreamRng| (0..100_000).map(|_| f64::from(draw_length(s, rng))).collect::<Vec<_>>();
        let (m, c) = mean_cv(&draw(&LengthSpec::Normal { mean: 1000.0, std: 100.0 }, &mut rng));
        assert!((m - 1000.0).abs() < 2.0 && (c * m - 100.0).abs() < 2.0, "{m} {c}");
        let (m, c) = mean_cv(&draw(&LengthSpec::LogNormal { mean: 800.0, std: 600.0 }, &mut rng));
        assert!((m / 800.0 - 1.0).abs() < 0.02 && (c * m / 600.0 - 1.0).abs() < 0.05, "{m} {}", c * m);
        let (m, _) = mean_cv(&draw(&LengthSpec::Exponential { mean: 300.0 }, &mut rng));
        assert!((m / 300.5 - 1.0).abs() < 0.02, "{m}");
        let clamped = LengthSpec::Clamped { inner: Box::new(LengthSpec::Normal { mean: 100.0, std: 200.0 }), min: 50, max: 150 };
        let xs = draw(&clamped, &mut rng);
        assert!(xs.iter().all(|&x| (50.0..=150.0).contains(&x)));
        // Truncation redraws, so the bounds are not piled up as a clamp would.
        let at_bounds = xs.iter().filter(|&&x| x == 50.0 || x == 150.0).count();
        assert!(at_bounds < 2_000, "{at_bounds}");
        let emp = LengthSpec::Empirical(vec![5u32, 7, 9].into());
        let xs = draw(&emp, &mut rng);
        assert!(xs.iter().all(|&x| x == 5.0 || x == 7.0 || x == 9.0));
        assert!((mean_cv(&xs).0 - 7.0).abs() < 0.02);
    }

    #[test]
    fn classes_are_drawn_by_weight_with_their_own_shapes() {
        let mut w = spec(ArrivalSpec::Poisson { rate_per_s: 10.0, burst: None });
        let class = |name: &str, weight: f64, n: u32| crate::spec::ClassSpec {
            name: name.into(),
            weight,
            prompt: LengthSpec::Constant(n),
            output: LengthSpec::Constant(1),
            priority: (0, 0),
            prefix: None,
            slo: None,
        };
        w.classes = vec![class("chat", 0.7, 100), class("rag", 0.3, 8000)];
        let mut g = WorkloadGen::new(&w, RunSeed(4)).unwrap();
        let mut rag = 0;
        for _ in 0..100_000 {
            let r = g.next_request().unwrap();
            assert_eq!(r.prompt_tokens.get(), if r.class == 1 { 8000 } else { 100 });
            rag += usize::from(r.class);
        }
        assert!((rag as f64 / 100_000.0 - 0.3).abs() < 0.005, "{rag}");
    }
}

#[cfg(test)]
mod bounds {
    use super::*;

    fn poisson() -> WorkloadGen {
        let spec = WorkloadSpec {
            arrivals: ArrivalSpec::Poisson { rate_per_s: 10.0, burst: None },
            prompt: LengthSpec::Constant(100),
            output: LengthSpec::Constant(10),
            priority: (0, 0),
            prefix: None,
            classes: vec![],
            trace: None,
        };
        WorkloadGen::new(&spec, RunSeed(3)).unwrap()
    }

    #[test]
    fn arrivals_end_at_the_request_count_or_the_duration_and_say_which() {
        let mut g = poisson();
        let by_count = RunSpec::new(None, Some(5));
        let sent = (0..10).take_while(|&k| matches!(g.next_within(&by_count, k), Next::Send(_))).count();
        assert_eq!(sent, 5);
        assert!(matches!(g.next_within(&by_count, 5), Next::Over { by_duration: false }));
        // 10/s for 2 s: about 20, and the first past 2 s ends them, by duration.
        let mut g = poisson();
        let by_time = RunSpec::new(Some(SimDuration::from_secs_f64(2.0)), None);
        let mut n = 0;
        let over = loop {
            match g.next_within(&by_time, n) {
                Next::Send(r) => {
                    assert!(r.arrival < SimTime::ZERO + SimDuration::from_secs_f64(2.0));
                    n += 1;
                }
                o => break o,
            }
        };
        assert!(matches!(over, Next::Over { by_duration: true }));
        assert!((10..=35).contains(&n), "{n}");
        // Closed-loop users: within both bounds.
        let both = RunSpec::new(Some(SimDuration::from_secs_f64(1.0)), Some(3));
        assert_eq!(WorkloadGen::user_may_send(&both, 2, SimTime::ZERO), (true, true));
        assert_eq!(WorkloadGen::user_may_send(&both, 3, SimTime::ZERO), (false, true));
        assert_eq!(WorkloadGen::user_may_send(&both, 0, SimTime::ZERO + SimDuration::from_secs_f64(1.0)), (false, false));
    }
}
