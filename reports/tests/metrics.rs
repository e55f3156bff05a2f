//! The metric definitions of the README's Metrics section, computed on hand-made request
//! records whose answers are worked out by hand: TTFT, TPOT, pooled ITL and E2E as
//! `vllm bench serve` defines them, goodput with aiperf's per-request `inter_token_latency`
//! bound (`slo.itl`), and the every-gap bound under its own name (`slo.max_itl`). Sim and live
//! both feed [`RunRecorder`], so these are the definitions of both.

use simctl_engine::prelude::*;
use simctl_engine::request::RequestId;
use simctl_engine::spec::SloSpec;
use simctl_engine::units::Tokens;
use simctl_reports::{RunRecorder, Summary};

const MS: u64 = 1_000_000;

fn ms(x: u64) -> SimDuration {
    SimDuration(x * MS)
}

/// A finished request: arrives at `arrival_ms`, its tokens come at `token_ms` (absolute).
fn request(id: u64, arrival_ms: u64, token_ms: &[u64]) -> (RequestRecord, Vec<SimDuration>) {
    let gaps: Vec<SimDuration> = token_ms.windows(2).map(|w| ms(w[1] - w[0])).collect();
    let r = RequestRecord {
        id: RequestId(id),
        arrival: SimTime(arrival_ms * MS),
        first_token: Some(SimTime(token_ms[0] * MS)),
        finish: Some(SimTime(token_ms[token_ms.len() - 1] * MS)),
        prompt_tokens: Tokens(100),
        output_tokens: Tokens(token_ms.len() as u32),
        generated_tokens: Tokens(token_ms.len() as u32),
        priority: 0,
        prefill_instance: None,
        decode_instance: None,
        preemptions: 0,
        cached_tokens: Tokens(0),
        migrations: 0,
        class: 0,
        max_itl: gaps.iter().copied().max().unwrap_or(SimDuration::ZERO),
        outcome: Outcome::Finished,
        reason: None,
    };
    (r, gaps)
}

/// Three requests:
/// - A: arrives 0, tokens at 100, 110, 120, 130, 140 ms: TTFT 100, TPOT (140−100)/4 = 10,
///   gaps 10,10,10,10 (largest 10), E2E 140.
/// - B: arrives 0, tokens at 200, 205, 210, 275 ms: TTFT 200, TPOT 75/3 = 25, gaps 5,5,65
///   (largest 65), E2E 275.
/// - C: arrives 50, one token at 80 ms: TTFT 30, no TPOT, no gap, E2E 30.
fn three() -> Vec<(RequestRecord, Vec<SimDuration>)> {
    vec![request(0, 0, &[100, 110, 120, 130, 140]), request(1, 0, &[200, 205, 210, 275]), request(2, 50, &[80])]
}

fn record(slo: SloSpec) -> RunRecorder {
    let mut rec = RunRecorder::new(slo, vec![]);
    for (r, gaps) in three() {
        for g in gaps {
            rec.on_token_gap(g);
        }
        rec.on_request(&r);
    }
    rec
}

fn summary(slo: SloSpec) -> Summary {
    let mut spec = simctl_engine::examples::single_server(0.5, 1.0, true, 3);
    spec.slo = slo;
    spec.run.drain = true;
    let totals = RunTotals {
        complete: true,
        stop_reason: None,
        first_arrival: Some(SimTime(0)),
        last_departure: Some(SimTime(275 * MS)),
        end: SimTime(275 * MS),
        elapsed: ms(275),
        events: 0,
        arrived: 3,
        local_prefills: 0,
        migrations: 0,
        cancelled: 0,
        trace_skipped_lines: 0,
        workload_error: None,
        peak_in_flight: 3,
        instances: vec![],
        pools: vec![],
        depth_series: vec![],
    };
    Summary::build(&spec, 0, &mut record(slo), &totals)
}

fn close(got: Option<f64>, want: f64) -> bool {
    got.is_some_and(|g| (g - want).abs() < 1e-6 * want.abs().max(1.0))
}

#[test]
fn latencies_are_the_vllm_bench_serve_definitions() {
    let s = summary(SloSpec::default());
    // TTFT over all three: 100, 200, 30.
    assert!(close(s.ttft_ms.mean, 110.0), "{:?}", s.ttft_ms);
    assert_eq!(s.ttft_ms.count, 3);
    // TPOT only for outputs longer than one token: 10 and 25.
    assert_eq!(s.tpot_ms.count, 2);
    assert!(close(s.tpot_ms.mean, 17.5), "{:?}", s.tpot_ms);
    // ITL pooled over every gap of every request: 10,10,10,10,5,5,65 (7 gaps, sum 115).
    assert_eq!(s.itl_ms.count, 7);
    assert!(close(s.itl_ms.mean, 115.0 / 7.0), "{:?}", s.itl_ms);
    // Gap percentiles come from an HDR histogram kept to 0.1%.
    assert!(s.itl_ms.max.is_some_and(|m| (m / 65.0 - 1.0).abs() < 1e-3), "{:?}", s.itl_ms);
    assert!(s.itl_ms.p50.is_some_and(|m| (m / 10.0 - 1.0).abs() < 1e-3), "{:?}", s.itl_ms);
    // E2E: 140, 275, 30.
    assert!(close(s.e2e_ms.mean, 445.0 / 3.0), "{:?}", s.e2e_ms);
    // Throughput over the window 0..275 ms.
    assert!(close(s.throughput_rps, 3.0 / 0.275));
    // No SLO: nothing judged.
    assert_eq!(s.slo_attainment, None);
    assert_eq!(s.goodput_rps, None);
}

#[test]
fn itl_bounds_each_requests_mean_gap_as_aiperf_does() {
    // aiperf `--goodput inter_token_latency:20`: A's mean ITL 10 passes, B's 25 fails, C has no
    // inter_token_latency (one output token), so aiperf does not count it good.
    let slo = SloSpec { itl: Some(ms(20)), ..SloSpec::default() };
    let rec = record(slo);
    let good: Vec<_> = three().iter().map(|(r, _)| rec.is_good(r)).collect();
    assert_eq!(good, [Some(true), Some(false), Some(false)]);
    let s = summary(slo);
    assert!(close(s.slo_attainment, 1.0 / 3.0), "{:?}", s.slo_attainment);
    assert!(close(s.goodput_rps, 1.0 / 0.275));
    // Output tokens of the good requests: A's 5.
    assert!(close(s.goodput_tok_s, 5.0 / 0.275));
    // The same bound at 25 ms takes B in as well (the bound is inclusive).
    let s = summary(SloSpec { itl: Some(ms(25)), ..SloSpec::default() });
    assert!(close(s.slo_attainment, 2.0 / 3.0));
}

#[test]
fn max_itl_bounds_every_gap() {
    // Every gap at most 20 ms: A's largest gap is 10 (good); B's 65 ms stall fails it even
    // though its mean (25) would pass a 30 ms `itl` bound; C has no gap and passes.
    let slo = SloSpec { max_itl: Some(ms(20)), ..SloSpec::default() };
    let rec = record(slo);
    let good: Vec<_> = three().iter().map(|(r, _)| rec.is_good(r)).collect();
    assert_eq!(good, [Some(true), Some(false), Some(true)]);
    let lenient_mean = SloSpec { itl: Some(ms(30)), ..SloSpec::default() };
    let rec = record(lenient_mean);
    assert_eq!(rec.is_good(&three()[1].0), Some(true), "B's mean ITL is 25 ms");
}

#[test]
fn tpot_bound_counts_one_token_outputs_as_vllm_does() {
    // `vllm bench serve --goodput tpot:20` takes a one-token output's TPOT as 0: C is good.
    let slo = SloSpec { tpot: Some(ms(20)), ..SloSpec::default() };
    let rec = record(slo);
    let good: Vec<_> = three().iter().map(|(r, _)| rec.is_good(r)).collect();
    assert_eq!(good, [Some(true), Some(false), Some(true)]);
    // Bounds combine: TTFT at most 90 ms as well drops A (100 ms) and keeps C (30 ms).
    let slo = SloSpec { tpot: Some(ms(20)), ttft: Some(ms(90)), ..SloSpec::default() };
    let rec = record(slo);
    let good: Vec<_> = three().iter().map(|(r, _)| rec.is_good(r)).collect();
    assert_eq!(good, [Some(false), Some(false), Some(true)]);
}

#[test]
fn a_request_that_did_not_finish_is_never_good() {
    let slo = SloSpec { e2e: Some(ms(1_000)), ..SloSpec::default() };
    let rec = RunRecorder::new(slo, vec![]);
    let (mut r, _) = request(0, 0, &[100, 110]);
    r.outcome = Outcome::Unfinished;
    r.finish = None;
    assert_eq!(rec.is_good(&r), Some(false));
    r.outcome = Outcome::Rejected;
    assert_eq!(rec.is_good(&r), Some(false));
}
