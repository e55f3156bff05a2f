//! `simctl calibrate --check PROFILE`: does a profile still fit the machine it is used on?
//!
//! A handful of the calibration's own probes (three prefills from half the context up, decode
//! at one stream and at up to 16 streams) are
//! run once more against the engine and replayed in the simulator with the profile, as the
//! calibration's self-check replays its held-out probes. The profile fits when the mean
//! absolute error is within [`FIT_TOLERANCE_PCT`]; the report says by how much it is off,
//! per probe, and how the machine's load compares with the profile's.

use std::time::{Duration, Instant};

use simctl_engine::profile::{ProbeClass, Profile, SelfCheck};
use simctl_live::client::{ClientConfig, EngineClient};

use crate::calibrate::CalibrateError;
use crate::hardware;
use crate::plan::{EngineFacts, Plan, PlanOptions, Probe, ProbeKind, Rough};
use crate::run::{Driver, ProbeResult, RunError, median_sample};

/// Mean absolute error (simulated against measured, %) within which a profile still fits.
pub const FIT_TOLERANCE_PCT: f64 = 10.0;

/// Times each check probe runs (the median is compared).
const REPEATS: u32 = 2;

/// Mean absolute error (%) of the first probes past which the check stops: the profile does
/// not fit, whatever the rest say.
pub const FAR_OFF_PCT: f64 = 50.0;

/// Decode streams of the largest batch a check sends.
const MAX_CHECK_STREAMS: u32 = 16;

/// A check's result.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckReport {
    /// The engine checked.
    pub url: String,
    /// Each probe: measured, simulated with the profile, signed error.
    pub probes: Vec<SelfCheck>,
    /// Mean absolute error, %.
    pub mean_abs_error_pct: f64,
    /// Mean signed error, % (negative: the profile is faster than the machine now).
    pub mean_error_pct: f64,
    /// Whether the profile fits ([`FIT_TOLERANCE_PCT`]).
    pub fits: bool,
    /// The 1-minute load average now, before the probes, and the profile's before its own.
    pub load_now: Option<f64>,
    /// See `load_now`.
    pub load_then: Option<f64>,
    /// CPUs busy before the probes ([`hardware::background_busy_cpus`]), and the profile's (see
    /// [`ProfileConditions::busy_cpus_before`](simctl_engine::profile::ProfileConditions)).
    pub busy_now: Option<f64>,
    /// See `busy_now`.
    pub busy_then: Option<f64>,
    /// What differs between the engine and the profile (settings, KV cache, model).
    pub differences: Vec<String>,
    /// How long the probes took.
    pub elapsed: Duration,
    /// A probe that did not finish (the engine stalled past the limit), and why.
    pub failed: Option<String>,
    /// Whether the probes stopped once the first were off by more than [`FAR_OFF_PCT`].
    pub stopped_early: bool,
}

/// The probes of a check: from the quick plan for the profile's engine, the middle, upper
/// and largest prefill, and decode at one stream and at the most streams (at most
/// [`MAX_CHECK_STREAMS`], and only those `may_wait` admits: see [`first_token_wait_s`]), each
/// held out (replayed, not fitted).
pub fn check_probes(facts: &EngineFacts, budget: u32, may_wait: impl Fn(&Probe) -> bool) -> Vec<Probe> {
    let mut plan = Plan::new(facts, PlanOptions { quick: true, budget_hint: Some(budget) });
    plan.set_budget(budget);
    let prefill: Vec<&Probe> = plan.of(ProbeClass::Prefill).filter(|p| matches!(p.kind, ProbeKind::Prefill { .. })).collect();
    let decode: Vec<&Probe> = plan.of(ProbeClass::Decode).filter(|p| matches!(p.kind, ProbeKind::Decode { .. })).collect();
    let mut out: Vec<Probe> = Vec::new();
    let mut take = |p: Option<&&Probe>| {
        if let Some(p) = p
            && !out.iter().any(|q| q.kind == p.kind)
        {
            out.push(Probe { repeats: REPEATS, held_out: true, ..**p });
        }
    };
    // Prefills from the middle of the context up: a short prompt's TTFT is a few
    // milliseconds, where timing noise alone is tens of percent.
    take(prefill.get(prefill.len() / 2));
    take(prefill.get(prefill.len() * 3 / 4));
    take(prefill.last());
    let streams = |p: &&&Probe| if let ProbeKind::Decode { streams, .. } = p.kind { streams } else { 0 };
    take(decode.first());
    // A batch of a few streams: the largest batches take seconds on a slow engine.
    take(decode.iter().filter(|p| streams(p) <= MAX_CHECK_STREAMS && may_wait(p)).max_by_key(streams));
    // No mixed probe: whether its prefill lands in the step the streams' gaps show depends on
    // timing, which the calibration's three repeats and its fit absorb and two runs do not.
    out
}

/// Seconds the last stream of decode probe `p` waits for its first token at `rough` speed:
/// every stream's prompt is prefilled before it (16 prompts of 1,024 tokens are half a
/// minute on a small model on a CPU, past any stall limit a check can afford).
pub fn first_token_wait_s(p: &Probe, rough: &Rough) -> f64 {
    match p.kind {
        ProbeKind::Decode { streams, context, .. } => rough.prefill_s(u64::from(streams) * u64::from(context)) + rough.step_s(streams),
        _ => 0.0,
    }
}

/// Runs the check probes against the engine at `url` and replays them with `profile`.
pub async fn check(profile: &Profile, url: &str, client_config: ClientConfig, seed: u64) -> Result<CheckReport, CalibrateError> {
    let at = |what: &str| {
        let what = what.to_string();
        move |error| CalibrateError::Run(RunError::Request { what, error })
    };
    let client = EngineClient::new(url, client_config).map_err(at("endpoint"))?;
    let url = client.base_url().to_string();
    client.health().await.map_err(at("health check"))?;
    let models = client.models().await.map_err(at("listing models"))?;
    let want = &profile.model.name;
    let Some(model) = models.iter().find(|m| &m.id == want) else {
        return Err(CalibrateError::UnknownModel {
            url,
            model: want.clone(),
            served: models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", "),
        });
    };
    let mut differences = Vec::new();
    let max_model_len = match (model.max_model_len, profile.model.max_model_len) {
        (Some(now), Some(then)) if now != then => {
            differences.push(format!("max_model_len is {now}, the profile's {then}"));
            now
        }
        (Some(now), _) => now,
        (None, then) => then.unwrap_or(4096),
    };
    let metrics = client.metrics().await.map_err(at("reading /metrics"))?;
    if let Some(bs) = metrics.block_size()
        && bs != profile.engine.block_size
    {
        differences.push(format!("KV blocks hold {bs} tokens, the profile's {}", profile.engine.block_size));
    }
    if let Some(b) = metrics.num_gpu_blocks()
        && b != profile.kv_capacity_blocks
    {
        differences.push(format!("the KV cache has {b} blocks, the profile's {}", profile.kv_capacity_blocks));
    }
    let version = client.version().await.ok().flatten();
    if let (Some(now), Some(then)) = (&version, &profile.engine.version)
        && now != then
    {
        differences.push(format!("the engine is version {now}, the profile's {then}"));
    }
    let load_then = profile.conditions.as_ref().and_then(|c| c.load());
    let facts = EngineFacts {
        model: model.id.clone(),
        max_model_len,
        block_size: profile.engine.block_size,
        kv_blocks: profile.kv_capacity_blocks,
        max_seqs: profile.engine.max_seqs,
    };
    let started = Instant::now();
    let load_now = hardware::load_average().map(|l| l[0]);
    let busy_now = hardware::background_busy_cpus();
    let busy_then = profile.conditions.as_ref().and_then(|c| c.busy_cpus_before);
    let stall_s = client_config.stall_timeout.as_secs_f64();
    let mut driver = Driver::new(client, model.id.clone(), max_model_len, seed);
    let rough = driver.warm_up(max_model_len).await?;
    // A stall is an engine far off the profile only where the engine should have answered:
    // no decode probe whose last stream waits half the stall limit for its first token.
    let probes = check_probes(&facts, profile.engine.max_batch_tokens, |p| first_token_wait_s(p, &rough) < 0.5 * stall_s);
    let mut results = Vec::new();
    let mut failed = None;
    let mut stopped_early = false;
    'probes: for p in probes {
        let mut runs = Vec::new();
        for _ in 0..p.repeats {
            match driver.run_probe(&p, &rough).await {
                Ok(r) => runs.push(r),
                // An engine far slower than the profile stalls past the limit: it does not fit.
                Err(e) => {
                    failed = Some(format!("{}: {e}", p.label()));
                    break 'probes;
                }
            }
        }
        let sample = median_sample(&runs, true);
        results.push(ProbeResult { probe: p, runs, sample });
        // Far off after two probes: the verdict is in, and a slow engine need not run the rest.
        if results.len() >= 2
            && let Ok(lines) = crate::selfcheck::self_check(&results, profile)
            && lines.len() >= 2
            && lines.iter().map(|l| l.error_pct.abs()).sum::<f64>() / lines.len() as f64 > FAR_OFF_PCT
        {
            stopped_early = true;
            break;
        }
    }
    let elapsed = started.elapsed();
    let lines = crate::selfcheck::self_check(&results, profile).map_err(CalibrateError::SelfCheck)?;
    let n = lines.len().max(1) as f64;
    let mean_abs_error_pct = lines.iter().map(|l| l.error_pct.abs()).sum::<f64>() / n;
    let mean_error_pct = lines.iter().map(|l| l.error_pct).sum::<f64>() / n;
    Ok(CheckReport {
        url,
        fits: failed.is_none() && !lines.is_empty() && mean_abs_error_pct <= FIT_TOLERANCE_PCT,
        failed,
        stopped_early,
        probes: lines,
        mean_abs_error_pct,
        mean_error_pct,
        load_now,
        load_then,
        busy_now,
        busy_then,
        differences,
        elapsed,
    })
}

/// What else the machine is doing, as a profile records it and as it is now.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Background {
    /// CPUs busy before the probes ([`hardware::background_busy_cpus`]).
    pub busy_cpus: Option<f64>,
    /// The 1-minute load average then.
    pub load: Option<f64>,
}

impl Background {
    /// The machine now (blocks for 2.5 s: [`hardware::background_busy_cpus`]).
    pub fn now() -> Self {
        Background { busy_cpus: hardware::background_busy_cpus(), load: hardware::load_average().map(|l| l[0]) }
    }

    /// What a profile recorded before its probes.
    pub fn of(profile: &Profile) -> Self {
        let c = profile.conditions.as_ref();
        Background { busy_cpus: c.and_then(|c| c.busy_cpus_before), load: c.and_then(|c| c.load()) }
    }
}

/// Whether the machine now is busier or quieter than while the profile was measured, enough
/// to move its timings: CPUs busy when both sides have that figure (by more than half a CPU
/// and a quarter of the larger), otherwise the load average (by more than one busy core and
/// a quarter of the larger). A sentence saying so, or `None`.
pub fn background_differs(now: Background, then: Background) -> Option<String> {
    let (now, then, what, floor) = match (now.busy_cpus, then.busy_cpus) {
        (Some(a), Some(b)) => (a, b, "CPUs busy with other work", 0.5),
        _ => (now.load?, then.load?, "the machine's load average", 1.0),
    };
    let d = (now - then).abs();
    (d > floor && d > 0.25 * now.max(then)).then(|| {
        format!(
            "{what}: {now:.1} now and {then:.1} before the profile's probes: other processes take CPU time the profile did not price (or priced and is no longer there)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_runs_a_handful_of_distinct_held_out_probes() {
        let facts = EngineFacts { model: "m".into(), max_model_len: 4096, block_size: 16, kv_blocks: 65536, max_seqs: 16 };
        let p = check_probes(&facts, 2048, |_| true);
        assert!((4..=6).contains(&p.len()), "{p:?}");
        assert!(p.iter().all(|q| !matches!(q.kind, ProbeKind::Decode { streams, .. } if streams > MAX_CHECK_STREAMS)), "{p:?}");
        assert!(p.iter().all(|p| p.held_out && p.repeats == REPEATS));
        for class in [ProbeClass::Prefill, ProbeClass::Decode] {
            assert!(p.iter().any(|q| q.class == class), "{class:?} missing: {p:?}");
        }
        let prompts: Vec<u32> =
            p.iter().filter_map(|q| if let ProbeKind::Prefill { prompt } = q.kind { Some(prompt) } else { None }).collect();
        assert!(prompts.windows(2).all(|w| w[0] < w[1]) && prompts.len() >= 2, "{prompts:?}");
    }

    #[test]
    fn a_check_leaves_out_decode_batches_whose_first_token_would_come_near_the_stall_limit() {
        let facts = EngineFacts { model: "m".into(), max_model_len: 4096, block_size: 16, kv_blocks: 65536, max_seqs: 16 };
        let streams = |p: &[Probe]| {
            p.iter().filter_map(|q| if let ProbeKind::Decode { streams, .. } = q.kind { Some(streams) } else { None }).max().unwrap()
        };
        let all = check_probes(&facts, 2048, |_| true);
        // A small model on a CPU: 2.4 ms a prompt token, 20 ms a decode step.
        let rough = Rough { ttft_s: 0.05, prefill_token_s: 2.4e-3, decode_step_s: 0.02, decode_seq_s: 1e-3 };
        let stall_s = 15.0;
        let fits = check_probes(&facts, 2048, |p| first_token_wait_s(p, &rough) < 0.5 * stall_s);
        assert!(streams(&all) > 1, "{all:?}");
        // A filter that admits no batch: one stream only.
        assert_eq!(streams(&check_probes(&facts, 2048, |p| first_token_wait_s(p, &rough) < 1e-3)), 1);
        assert!(fits.iter().all(|p| first_token_wait_s(p, &rough) < 0.5 * stall_s), "{fits:?}");
        // The same prefills.
        let prefills = |p: &[Probe]| p.iter().filter(|q| q.class == ProbeClass::Prefill).count();
        assert_eq!(prefills(&fits), prefills(&all));
    }

    #[test]
    fn load_is_said_to_differ_only_by_more_than_a_core_and_by_a_good_share() {
        let load_differs =
            |now, then| background_differs(Background { busy_cpus: None, load: now }, Background { busy_cpus: None, load: then });
        assert_eq!(load_differs(Some(1.2), Some(0.8)), None);
        assert_eq!(load_differs(Some(9.0), Some(8.0)), None, "one core more on a busy machine");
        assert!(load_differs(Some(3.5), Some(0.5)).is_some());
        assert!(load_differs(Some(0.3), Some(4.0)).is_some());
        assert_eq!(load_differs(None, Some(4.0)), None);
    }

    #[test]
    fn busy_cpus_win_over_the_load_average_when_both_sides_have_them() {
        let b = |busy, load| Background { busy_cpus: busy, load };
        // A build finished a minute ago: the load average remembers it, the CPUs are idle.
        assert_eq!(background_differs(b(Some(0.1), Some(1.9)), b(Some(0.05), Some(0.3))), None);
        let w = background_differs(b(Some(1.2), Some(0.4)), b(Some(0.1), Some(0.4))).expect("a busy CPU more");
        assert!(w.contains("CPUs busy") && w.contains("1.2 now"), "{w}");
        // A profile without the figure falls back to the load average.
        assert!(background_differs(b(Some(0.1), Some(3.5)), b(None, Some(0.5))).unwrap().contains("load average"));
    }
}
