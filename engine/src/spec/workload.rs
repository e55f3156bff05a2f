//! Workload settings: arrival processes, request shapes, classes and prefixes.

use super::SloSpec;
use crate::time::SimDuration;

/// Arrivals and request shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    /// The arrival process.
    pub arrivals: ArrivalSpec,
    /// Prompt length in tokens.
    pub prompt: LengthSpec,
    /// Output length in tokens (at least 1).
    pub output: LengthSpec,
    /// Priorities drawn uniformly from this inclusive range (0 is most important).
    pub priority: (u8, u8),
    /// Shared prefixes (system prompts), if any.
    pub prefix: Option<PrefixSpec>,
    /// Request classes; when given, each request draws a class by weight and takes its
    /// lengths, priority, prefix and SLO from it (the fields above are then unused).
    pub classes: Vec<ClassSpec>,
    /// Replay a trace instead of generating arrivals and lengths.
    pub trace: Option<crate::trace::TraceSpec>,
}

/// One class of requests in a mixed workload (e.g. 70% chat, 30% long-context RAG).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassSpec {
    /// Name, for per-class metrics.
    pub name: String,
    /// Relative weight (share of requests).
    pub weight: f64,
    /// Prompt length.
    pub prompt: LengthSpec,
    /// Output length.
    pub output: LengthSpec,
    /// Priority range.
    pub priority: (u8, u8),
    /// Shared prefixes of this class.
    pub prefix: Option<PrefixSpec>,
    /// The class's own SLO (the scenario's when `None`).
    pub slo: Option<SloSpec>,
}

/// Shared prefixes: each request starts with one of `groups` shared prompts of `tokens`
/// tokens (drawn uniformly), followed by its own prompt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrefixSpec {
    /// Distinct shared prefixes.
    pub groups: u32,
    /// Tokens in each shared prefix.
    pub tokens: u32,
}

/// The lab's burst knob: per window, with probability `probability`, the rate is multiplied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurstSpec {
    /// Rate multiplier inside a burst window.
    pub factor: f64,
    /// Probability that a window is a burst.
    pub probability: f64,
    /// Window length.
    pub window: SimDuration,
}

impl BurstSpec {
    /// The original lab: 50 ms ticks, a burst with probability 0.2.
    pub fn lab(factor: f64) -> Self {
        BurstSpec { factor, probability: 0.2, window: SimDuration::from_millis(50) }
    }
}

/// Arrival processes.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrivalSpec {
    /// Poisson arrivals at `rate_per_s`, optionally modulated by bursts.
    Poisson {
        /// Mean requests per second outside bursts.
        rate_per_s: f64,
        /// Burst modulation, if any.
        burst: Option<BurstSpec>,
    },
    /// Evenly spaced arrivals.
    Constant {
        /// Requests per second.
        rate_per_s: f64,
    },
    /// A renewal process with gamma inter-arrival times: mean 1/rate, coefficient of
    /// variation `cv` (1 is Poisson, above 1 bursty, below 1 regular).
    Gamma {
        /// Mean requests per second.
        rate_per_s: f64,
        /// Coefficient of variation of the gaps.
        cv: f64,
    },
    /// A two-state Markov-modulated Poisson process: rate `rates[k]` while in state k, each
    /// stay exponential with mean `dwell[k]`; starts in state 0.
    Mmpp {
        /// Rates of the two states, requests per second.
        rates: [f64; 2],
        /// Mean time in each state.
        dwell: [SimDuration; 2],
    },
    /// Poisson with a piecewise-linear rate through `(time, rate per second)` points
    /// (diurnal shapes); constant before the first and after the last point.
    Ramp {
        /// The points, in time order.
        points: Vec<(SimDuration, f64)>,
    },
    /// Closed loop: `users` users each send a request, wait for it to finish, think, and
    /// send the next.
    ClosedLoop {
        /// Concurrent users.
        users: u32,
        /// Mean think time (exponential; zero for none).
        think: SimDuration,
    },
}

impl ArrivalSpec {
    /// Long-run mean rate, requests per second (`None` for closed loops).
    pub fn mean_rate(&self) -> Option<f64> {
        match self {
            ArrivalSpec::Poisson { rate_per_s, burst } => {
                Some(rate_per_s * burst.map_or(1.0, |b| 1.0 - b.probability + b.probability * b.factor))
            }
            ArrivalSpec::Constant { rate_per_s } | ArrivalSpec::Gamma { rate_per_s, .. } => Some(*rate_per_s),
            ArrivalSpec::Mmpp { rates, dwell } => {
                let (d0, d1) = (dwell[0].as_secs_f64(), dwell[1].as_secs_f64());
                Some((rates[0] * d0 + rates[1] * d1) / (d0 + d1))
            }
            ArrivalSpec::Ramp { points } => points.last().map(|p| p.1),
            ArrivalSpec::ClosedLoop { .. } => None,
        }
    }
}

/// Token-length distributions (integers, at least 1).
#[derive(Clone, Debug, PartialEq)]
pub enum LengthSpec {
    /// Always the same length.
    Constant(u32),
    /// Uniform over the inclusive range.
    Uniform {
        /// Smallest length.
        lo: u32,
        /// Largest length.
        hi: u32,
    },
    /// Exponential with the given mean, rounded up to whole tokens.
    Exponential {
        /// Mean length in tokens.
        mean: f64,
    },
    /// Normal, rounded to whole tokens (truncated when clamped).
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Lognormal with the given mean and standard deviation of the lengths themselves.
    LogNormal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Values drawn uniformly from a column of real lengths (a CSV file's).
    Empirical(std::sync::Arc<[u32]>),
    /// Another distribution restricted to `[min, max]`: continuous ones are truncated (drawn
    /// again), the rest clamped.
    Clamped {
        /// The distribution.
        inner: Box<LengthSpec>,
        /// Smallest length.
        min: u32,
        /// Largest length.
        max: u32,
    },
}
