//! Preflight: before the first request is sent, every request the scenario will send is
//! checked against the context the engines accept (vLLM's `max_model_len`, from
//! `/v1/models`). vLLM refuses a request whose prompt plus `max_tokens` exceeds it (HTTP 400),
//! so a run that would send one either stops here with the request, its class or trace, its
//! sizes and the limit, or — with `--clip` — sends it shortened by [`clip`] and counts it.
//! A request is held to the engines it can land on: under a dual-pool split, those of the
//! pool its prompt length picks; the driver routes it by its own lengths first and clips it
//! to the chosen engine's context after, so clipping never changes where it goes.
//!
//! The requests are those the live driver will draw: the same workload generator with the
//! same seed, up to the run's request count or duration (an arrival-driven run), the first
//! [`PREFLIGHT_MAX_REQUESTS`] otherwise. Closed loops draw the same shapes in the same order
//! whatever the timing, so their shapes are known too; only their number is not, when just a
//! duration bounds them.

use simctl_engine::request::Request;
use simctl_engine::rng::RunSeed;
use simctl_engine::spec::{PromptSplit, ValidSpec};
use simctl_engine::time::SimTime;
use simctl_engine::units::Tokens;
use simctl_engine::workload::WorkloadGen;

/// Requests preflight draws at most (a run with neither a request count nor a duration, or a
/// closed loop bounded only by its duration).
pub const PREFLIGHT_MAX_REQUESTS: u64 = 1_000_000;

/// The context one engine accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextLimit {
    /// Prompt plus output tokens the engine accepts.
    pub tokens: u32,
    /// What sets it: `its max_model_len`, or `its KV cache` when that holds fewer tokens.
    pub what: &'static str,
    /// The scenario instance bound to that engine.
    pub instance: String,
    /// Its URL.
    pub url: String,
}

/// The engines' contexts, and which engines a request can land on: those of the pool its
/// prompt length picks under a dual-pool split, every engine otherwise.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Per instance (in the scenario's order): its engine's context, when it says.
    pub per_instance: Vec<Option<ContextLimit>>,
    /// Per instance: its pool's index.
    pub pool_of: Vec<usize>,
    /// The dual-pool split, if the run has one.
    pub split: Option<PromptSplit>,
}

impl Limits {
    /// The smallest context among the engines `req` can be sent to (`None`: none says).
    pub fn for_request(&self, req: &Request) -> Option<&ContextLimit> {
        let pool = self.split.map(|s| if req.prompt_tokens.get() >= s.at { s.long_pool } else { s.short_pool });
        self.per_instance
            .iter()
            .zip(&self.pool_of)
            .filter(|(_, p)| pool.is_none_or(|want| **p == want))
            .filter_map(|(l, _)| l.as_ref())
            .min_by_key(|l| l.tokens)
    }

    /// The context of instance `k`'s engine.
    pub fn of(&self, k: usize) -> Option<u32> {
        self.per_instance.get(k).and_then(|l| l.as_ref()).map(|l| l.tokens)
    }

    /// The smallest context of any engine.
    pub fn smallest(&self) -> Option<u32> {
        self.per_instance.iter().filter_map(|l| l.as_ref()).map(|l| l.tokens).min()
    }
}

/// What preflight found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preflight {
    /// Requests checked.
    pub checked: u64,
    /// Whether that was every request of the run (`false`: the first
    /// [`PREFLIGHT_MAX_REQUESTS`] of an unbounded run).
    pub all: bool,
    /// Requests that do not fit the context (sent shortened under `--clip`).
    pub too_long: u64,
}

/// Whether a request's prompt plus output fit `limit` tokens of context.
pub fn fits(req: &Request, limit: u32) -> bool {
    u64::from(req.prompt_tokens.get()) + u64::from(req.output_tokens.get()) <= u64::from(limit)
}

/// Shortens a request to fit `limit` tokens of context: the output is kept whole when it
/// takes at most half the context (the prompt is cut to make room), else it is cut to half;
/// a shared prefix is cut with the prompt. Returns whether it changed anything.
pub fn clip(req: &mut Request, limit: u32) -> bool {
    if fits(req, limit) {
        return false;
    }
    let (p, o) = (req.prompt_tokens.get(), req.output_tokens.get());
    let limit = limit.max(2);
    let output = o.min(limit / 2).max(1);
    let prompt = p.min(limit - output).max(1);
    req.prompt_tokens = Tokens(prompt);
    req.output_tokens = Tokens(output);
    req.prefix_tokens = Tokens(req.prefix_tokens.get().min(prompt));
    true
}

/// Where a request comes from, for the error: its class, or the trace and its row.
fn origin(spec: &ValidSpec, req: &Request) -> String {
    match &spec.workload.trace {
        Some(t) => format!("trace `{}`, request {} (arrival {:.3} s)", t.path.display(), req.id.0 + 1, req.arrival.as_secs_f64()),
        None => match spec.workload.classes.get(usize::from(req.class)) {
            Some(c) => format!("class `{}`, request {} of the run", c.name, req.id.0 + 1),
            None => format!("the workload's request {} of the run", req.id.0 + 1),
        },
    }
}

/// Checks the requests of `spec` (drawn with `seed`) against `limit`. Without `clip`, the
/// first request that does not fit is an error naming it, its sizes and the limit, and how
/// many more do not; with `clip`, those requests are only counted (the driver shortens them
/// with [`clip`] as it sends them).
pub fn check(spec: &ValidSpec, seed: RunSeed, limits: &Limits, clip_them: bool) -> Result<Preflight, String> {
    let mut draws = WorkloadGen::new(&spec.workload, seed).map_err(|e| e.to_string())?;
    let closed = draws.closed_loop().is_some();
    let cap = spec.run.requests.unwrap_or(u64::MAX);
    let by_time = spec.run.duration.filter(|_| !closed);
    let mut out = Preflight { all: true, ..Preflight::default() };
    let mut first: Option<(String, u32, u32, ContextLimit)> = None;
    loop {
        if out.checked >= cap {
            break;
        }
        if out.checked >= PREFLIGHT_MAX_REQUESTS {
            out.all = false;
            break;
        }
        let req = if closed {
            draws.request_at(SimTime::ZERO)
        } else {
            match draws.next_request() {
                Some(r) => r,
                None => break,
            }
        };
        if by_time.is_some_and(|d| req.arrival >= SimTime::ZERO + d) {
            break;
        }
        out.checked += 1;
        let Some(limit) = limits.for_request(&req) else { continue };
        if !fits(&req, limit.tokens) {
            out.too_long += 1;
            if first.is_none() {
                first = Some((origin(spec, &req), req.prompt_tokens.get(), req.output_tokens.get(), limit.clone()));
            }
        }
    }
    if let Some(e) = draws.error() {
        return Err(e.to_string());
    }
    match first {
        Some((from, p, o, limit)) if !clip_them => {
            let more = match out.too_long - 1 {
                0 => String::new(),
                n => format!("; {n} more of the {} requests checked do not fit either", out.checked),
            };
            Err(format!(
                "{from} has a {p}-token prompt and {o} output tokens ({} in all), but the engine of instance `{}` ({}) holds at most {} ({}){more}. Nothing was sent. Shorten the workload's lengths, start the engine with a larger --max-model-len (or KV cache), or pass --clip to send such requests shortened to fit",
                u64::from(p) + u64::from(o),
                limit.instance,
                limit.url,
                limit.tokens,
                limit.what
            ))
        }
        _ => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_outputs_whole_and_fits_the_context() {
        let mut r = Request::plain(0, SimTime::ZERO, 4096, 32);
        assert!(clip(&mut r, 4096));
        assert_eq!((r.prompt_tokens.get(), r.output_tokens.get()), (4064, 32));
        // An output longer than half the context is cut to half.
        let mut r = Request::plain(0, SimTime::ZERO, 100, 5000);
        assert!(clip(&mut r, 2048));
        assert_eq!((r.prompt_tokens.get(), r.output_tokens.get()), (100, 1024));
        let mut r = Request::plain(0, SimTime::ZERO, 3000, 3000);
        assert!(clip(&mut r, 2048));
        assert_eq!((r.prompt_tokens.get(), r.output_tokens.get()), (1024, 1024));
        // What fits is left alone, exactly at the limit too.
        let mut r = Request::plain(0, SimTime::ZERO, 4000, 96);
        assert!(!clip(&mut r, 4096));
        assert_eq!((r.prompt_tokens.get(), r.output_tokens.get()), (4000, 96));
        // A shared prefix never outgrows its prompt.
        let mut r = Request { prefix_group: 1, prefix_tokens: Tokens(4000), ..Request::plain(0, SimTime::ZERO, 4090, 64) };
        assert!(clip(&mut r, 2048));
        assert!(r.prefix_tokens <= r.prompt_tokens);
        for limit in [2, 3, 17, 2048, 4096] {
            for (p, o) in [(1, 1), (1, 100_000), (100_000, 1), (70_000, 70_000)] {
                let mut r = Request::plain(0, SimTime::ZERO, p, o);
                clip(&mut r, limit);
                assert!(r.prompt_tokens.get() + r.output_tokens.get() <= limit.max(2), "{p}+{o} at {limit}");
                assert!(r.prompt_tokens.get() >= 1 && r.output_tokens.get() >= 1);
            }
        }
    }
}
