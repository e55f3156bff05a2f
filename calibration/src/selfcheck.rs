//! The self-check: probes held out of the fit, replayed in the simulator with the new
//! profile (the same requests at the same send times), against what the engine measured.

use simctl_engine::prelude::*;
use simctl_engine::profile::{ProbeClass, Profile, SelfCheck};
use simctl_engine::record::Recorder;
use simctl_engine::request::Request;
use simctl_engine::spec::*;
use simctl_engine::units::Tokens;

use crate::run::{ProbeResult, RequestTiming};

/// A one-instance scenario that runs like the profiled engine: its step model, scheduler
/// settings and KV cache.
pub fn engine_scenario(profile: &Profile) -> ScenarioSpec {
    let hw = HardwareSpec {
        name: "profiled".into(),
        cost_per_hour: 0.0,
        memory_bytes: None,
        kv_capacity_tokens: Some(profile.kv_capacity_blocks * u64::from(profile.engine.block_size)),
        kv_transfer_latency: None,
        perf: PerfSpec::Fitted { cost: profile.cost(), tp: None },
    };
    // The arrivals are never drawn: the replay submits its own requests.
    let arrivals = ArrivalSpec::Poisson { rate_per_s: 1.0, burst: None };
    simctl_engine::examples::one_instance(hw, profile.engine_spec(), arrivals, LengthSpec::Constant(1), RunSpec::new(None, Some(0)))
}

struct Collect(Vec<RequestRecord>);

impl Recorder for Collect {
    fn on_request(&mut self, r: &RequestRecord) {
        self.0.push(*r);
    }
}

/// Simulates requests sent at the given times; records in the same order.
fn simulate(spec: &ValidSpec, reqs: &[RequestTiming]) -> Result<Vec<RequestRecord>, String> {
    let mut sim = Simulation::new(spec).map_err(|e| joined(&e))?.without_workload();
    let prefix_probe = reqs.iter().any(|o| o.shared_prefix > 0);
    for (i, r) in reqs.iter().enumerate() {
        // A prefix probe's second request shares the first one's whole prompt.
        let shared = if r.shared_prefix > 0 {
            r.shared_prefix
        } else if prefix_probe {
            r.prompt
        } else {
            0
        };
        let arrival = SimTime::ZERO + SimDuration::from_secs_f64(r.sent_s.max(0.0));
        sim.submit(Request {
            prefix_group: u32::from(shared > 0),
            prefix_tokens: Tokens(shared.min(r.prompt)),
            ..Request::plain(i as u64, arrival, r.prompt, r.output.max(1))
        })
        .map_err(|e| e.to_string())?;
    }
    let mut rec = Collect(Vec::new());
    sim.run(&mut rec);
    rec.0.sort_by_key(|r| r.id);
    if rec.0.len() != reqs.len() || rec.0.iter().any(|r| r.outcome != Outcome::Finished) {
        return Err("the simulator did not finish every replayed request".into());
    }
    Ok(rec.0)
}

fn joined(errs: &[SpecError]) -> String {
    errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

/// What a probe class compares, measured and simulated, for one run.
fn compare(class: ProbeClass, measured: &[RequestTiming], simulated: &[RequestRecord]) -> Option<(&'static str, f64, f64)> {
    let secs = |d: Option<SimDuration>| d.map(|d| d.as_secs_f64());
    match class {
        ProbeClass::Prefill => Some(("ttft", measured.first()?.ttft_s, secs(simulated.first()?.ttft())?)),
        ProbeClass::Prefix => Some(("ttft", measured.last()?.ttft_s, secs(simulated.last()?.ttft())?)),
        ProbeClass::Decode => {
            Some(("tpot", mean(measured.iter().filter_map(|m| m.tpot_s))?, mean(simulated.iter().filter_map(|r| secs(r.tpot())))?))
        }
        // The step that carried the prefill: read from the streams' gaps as the fit reads
        // it, and in the simulator the decode streams' largest gap (the longest step).
        ProbeClass::Mixed => {
            let n = measured.len().checked_sub(1)?;
            Some(("mixed_step", crate::run::mixed_step(measured)?.0, mean(simulated[..n].iter().map(|r| r.max_itl.as_secs_f64()))?))
        }
    }
}

/// Replays every held-out probe; one line per probe, means over its runs.
pub fn self_check(results: &[ProbeResult], profile: &Profile) -> Result<Vec<SelfCheck>, String> {
    let spec = engine_scenario(profile).validate().map_err(|e| joined(&e))?;
    let mut out = Vec::new();
    for r in results.iter().filter(|r| r.probe.held_out) {
        let mut pairs = Vec::new();
        let mut metric = "";
        for run in r.runs.iter().filter(|run| run.sample.is_some()) {
            let sim = simulate(&spec, &run.requests)?;
            if let Some((m, a, b)) = compare(r.probe.class, &run.requests, &sim) {
                metric = m;
                pairs.push((a, b));
            }
        }
        let (Some(measured_s), Some(simulated_s)) = (mean(pairs.iter().map(|p| p.0)), mean(pairs.iter().map(|p| p.1))) else { continue };
        out.push(SelfCheck {
            class: r.probe.class.as_str().into(),
            probe: r.probe.label(),
            metric: metric.into(),
            measured_s,
            simulated_s,
            error_pct: 100.0 * (simulated_s - measured_s) / measured_s,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_prefix_probe_hits_the_cache() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../profiles/example_h100_llama8b.yaml")).unwrap();
        let profile: Profile = serde_saphyr::from_str(&text).unwrap();
        let spec = engine_scenario(&profile).validate().unwrap();
        let t = |sent_s: f64, prompt: u32, shared_prefix: u32| RequestTiming {
            sent_s,
            prompt,
            shared_prefix,
            output: 1,
            ttft_s: 0.0,
            tpot_s: None,
            max_itl_s: 0.0,
            chunks: vec![],
        };
        let recs = simulate(&spec, &[t(0.0, 992, 0), t(0.115, 1056, 992)]).unwrap();
        assert_eq!(recs[1].cached_tokens.get(), 992, "{recs:?}");
    }
}
