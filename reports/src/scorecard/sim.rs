//! What a simulated run adds to its `--out` folder so that `simctl scorecard` can score it:
//! `sys_meta.json` and `tps_goodput.json` (`latency.jsonl` is written by the recorder as
//! requests finish, see [`crate::RunRecorder::with_latency_rows`]). A simulation has no
//! quality answers and no MoE router: those checks show as missing.

use std::path::{Path, PathBuf};

use simctl_engine::spec::ScenarioSpec;
use simctl_engine::time::SimDuration;

use super::folder::{FolderError, SYS_META, TPS_GOODPUT, TpsGoodput, write_json};
use crate::Summary;

/// Writes `sys_meta.json` (the scenario's TTFT SLO as `ttft_slo_ms`, its whole SLO block,
/// the run settings) and `tps_goodput.json` (output and good output tokens per second of
/// the simulated window, goodput against the scenario's SLOs) into `dir`.
pub fn write_simulated_run_files(dir: &Path, spec: &ScenarioSpec, summary: &Summary) -> Result<Vec<PathBuf>, FolderError> {
    let ms = |d: Option<SimDuration>| d.map(SimDuration::as_millis_f64);
    let mut meta = serde_json::json!({
        "mode": "simulated",
        "source": "simctl run",
        "generator": format!("simctl {}", env!("CARGO_PKG_VERSION")),
        "scenario": summary.scenario,
        "seed": summary.seed,
        "policy": summary.policy,
        "requests": summary.requests,
        "duration_s": summary.duration_s,
        "scenario_slo_ms": {"ttft": ms(spec.slo.ttft), "tpot": ms(spec.slo.tpot), "e2e": ms(spec.slo.e2e), "itl": ms(spec.slo.itl), "max_itl": ms(spec.slo.max_itl)},
        "goodput": "output tokens per second of requests meeting every SLO of the scenario",
        "notes": ["a simulation answers no quality questions and models no MoE router: those checks are missing"],
    });
    // The scorecard's decode p95 limit is a decode-time SLO, which scenarios do not state:
    // it stays at the scorecard's default rather than being derived from e2e or TPOT.
    if let Some(t) = ms(spec.slo.ttft) {
        meta["ttft_slo_ms"] = t.into();
    }
    let tps = TpsGoodput {
        throughput_tps: summary.output_tok_s,
        goodput: summary.goodput_tok_s,
        slo_hit_rate: summary.slo_attainment,
        drop_rate: None,
    };
    let (m, t) = (dir.join(SYS_META), dir.join(TPS_GOODPUT));
    write_json(&m, &meta)?;
    write_json(&t, &tps)?;
    Ok(vec![m, t])
}
