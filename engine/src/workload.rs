//! Workload generation: arrival processes and request shapes, drawn lazily one at a time so
//! memory does not grow with the length of the run.

use rand::RngExt;
use rand_distr::{Distribution, Exp};

use crate::request::{Request, RequestId};
use crate::rng::{RunSeed, StreamRng, stream};
use crate::spec::{ArrivalSpec, BurstSpec, LengthSpec, WorkloadSpec};
use crate::time::{SimDuration, SimTime};

/// Produces requests in arrival order.
#[derive(Debug)]
pub struct WorkloadGen {
    spec: WorkloadSpec,
    arrivals: ArrivalGen,
    lengths: StreamRng,
    prefixes: StreamRng,
    next_id: u64,
}

impl WorkloadGen {
    /// A generator for `spec` drawing from the run's substreams.
    pub fn new(spec: &WorkloadSpec, seed: RunSeed) -> Self {
        WorkloadGen {
            spec: spec.clone(),
            arrivals: ArrivalGen::new(spec.arrivals, seed.stream(stream::ARRIVALS)),
            lengths: seed.stream(stream::LENGTHS),
            prefixes: seed.stream(stream::PREFIXES),
            next_id: 0,
        }
    }

    /// The next request.
    pub fn next_request(&mut self) -> Request {
        let arrival = self.arrivals.next_arrival();
        let prompt = draw_length(&self.spec.prompt, &mut self.lengths);
        let output = draw_length(&self.spec.output, &mut self.lengths);
        let (lo, hi) = self.spec.priority;
        let priority = if lo == hi { lo } else { self.lengths.random_range(lo..=hi) };
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let (prefix_group, prefix_tokens) = match self.spec.prefix {
            Some(p) => (self.prefixes.random_range(1..=p.groups), p.tokens),
            None => (0, 0),
        };
        Request {
            id,
            arrival,
            prompt_tokens: prompt.saturating_add(prefix_tokens),
            output_tokens: output.max(1),
            priority,
            prefix_group,
            prefix_tokens,
            class: 0,
            trace_blocks: None,
            trace_block_tokens: 0,
        }
    }
}

/// Draws one length in tokens (at least 1).
pub fn draw_length(spec: &LengthSpec, rng: &mut StreamRng) -> u32 {
    let n = match *spec {
        LengthSpec::Constant(n) => n,
        LengthSpec::Uniform { lo, hi } => rng.random_range(lo..=hi),
        LengthSpec::Exponential { mean } => {
            let x = Exp::new(1.0 / mean).map(|d| d.sample(rng)).unwrap_or(mean);
            x.ceil().min(f64::from(u32::MAX)) as u32
        }
    };
    n.max(1)
}

/// Arrival times of one process.
#[derive(Debug)]
struct ArrivalGen {
    spec: ArrivalSpec,
    rng: StreamRng,
    now: SimTime,
    window_end: SimTime,
    window_rate: f64,
}

impl ArrivalGen {
    fn new(spec: ArrivalSpec, rng: StreamRng) -> Self {
        let rate = match spec {
            ArrivalSpec::Poisson { rate_per_s, .. } | ArrivalSpec::Constant { rate_per_s } => rate_per_s,
        };
        let mut g = ArrivalGen { spec, rng, now: SimTime::ZERO, window_end: SimTime::ZERO, window_rate: rate };
        if let ArrivalSpec::Poisson { burst: Some(b), .. } = spec {
            g.open_window(rate, b);
        }
        g
    }

    fn open_window(&mut self, base: f64, b: BurstSpec) {
        let burst = self.rng.random_bool(b.probability);
        self.window_rate = if burst { base * b.factor } else { base };
        self.window_end += b.window;
    }

    fn next_arrival(&mut self) -> SimTime {
        match self.spec {
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
        }
        self.now
    }
}

fn exp_gap(rng: &mut StreamRng, rate_per_s: f64) -> SimDuration {
    // Inverse CDF on (0, 1]: never a zero-length log.
    let u: f64 = 1.0 - rng.random::<f64>();
    SimDuration::from_secs_f64(-u.ln() / rate_per_s)
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
        }
    }

    #[test]
    fn poisson_rate_and_uniform_lengths_match_their_means() {
        let mut g = WorkloadGen::new(&spec(ArrivalSpec::Poisson { rate_per_s: 24.0, burst: None }), RunSeed(7));
        let n = 100_000;
        let (mut last, mut psum, mut osum) = (SimTime::ZERO, 0u64, 0u64);
        let mut pri = [0u32; 3];
        for _ in 0..n {
            let r = g.next_request();
            assert!((100..=1200).contains(&r.prompt_tokens) && (32..=256).contains(&r.output_tokens));
            psum += u64::from(r.prompt_tokens);
            osum += u64::from(r.output_tokens);
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
        let mut g = WorkloadGen::new(&s, RunSeed(3));
        let n = 200_000;
        let mut last = SimTime::ZERO;
        for _ in 0..n {
            last = g.next_request().arrival;
        }
        let rate = n as f64 / last.as_secs_f64();
        assert!((rate / 33.6 - 1.0).abs() < 0.01, "rate {rate}");
    }
}
