//! A run folder's scorecard: the six checks' figures, the verdict, and the JSON layout the
//! lab's `scorecard.json` uses (simctl adds `verdict`, `run` and `generator`).

use std::collections::BTreeMap;
use std::path::Path;

use super::baseline::{Baseline, Comparison};
use super::folder::{FolderError, LatencyRow, MOE_ROUTER, MOE_TRAFFIC, RouterRow, RunFolder, TpsGoodput, TrafficRow};
use super::verdict::{Check, DEFAULT_LATENCY_SLO_MS, DEFAULT_TTFT_SLO_MS, MAX_DROP_RATE, MAX_IMBALANCE_CV, MIN_ACCURACY, Rule, Verdict};
use crate::percentiles::percentile;

/// The lab's decode lengths, as latency rows' `output_tokens`.
pub const DECODE_LENGTHS: [u32; 3] = [128, 512, 2048];
/// Goodput is scaled by max(0, 1 − this × drop rate): dropped tokens make MoE output unstable.
pub const GOODPUT_DROP_PENALTY: f64 = 5.0;

/// A median and a 95th percentile, ms.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct P50P95 {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
}

impl P50P95 {
    /// Of `xs`; `None` without samples.
    pub fn of(mut xs: Vec<f64>) -> Option<P50P95> {
        if xs.is_empty() {
            return None;
        }
        xs.sort_unstable_by(f64::total_cmp);
        Some(P50P95 { p50: percentile(&xs, 50.0), p95: percentile(&xs, 95.0) })
    }
}

/// Quality figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QualitySection {
    /// Correct answers over all answers (`null`: no quality rows).
    pub avg_accuracy: Option<f64>,
    /// Accuracy per task set.
    pub per_task: BTreeMap<String, f64>,
    /// Questions answered.
    pub answered: usize,
}

/// SLOs the latency checks use, ms.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Slos {
    /// TTFT p95 limit.
    pub ttft: f64,
    /// Decode p95 limit.
    pub latency: f64,
    /// Whether `ttft` came from `sys_meta.json` (else the default).
    #[serde(skip)]
    pub ttft_from_meta: bool,
    /// Whether `latency` came from `sys_meta.json`.
    #[serde(skip)]
    pub latency_from_meta: bool,
}

impl Slos {
    /// `ttft_slo_ms` and `latency_slo_ms` from `sys_meta.json`, else the defaults.
    pub fn of(folder: &RunFolder) -> Result<Slos, FolderError> {
        let (t, l) = (folder.meta_number("ttft_slo_ms")?, folder.meta_number("latency_slo_ms")?);
        Ok(Slos {
            ttft: t.unwrap_or(DEFAULT_TTFT_SLO_MS),
            latency: l.unwrap_or(DEFAULT_LATENCY_SLO_MS),
            ttft_from_meta: t.is_some(),
            latency_from_meta: l.is_some(),
        })
    }
}

/// Latency figures, ms.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LatencySection {
    /// TTFT over all requests.
    pub ttft: Option<P50P95>,
    /// TTFT of warm (cached prefix) requests.
    pub ttft_warm: Option<P50P95>,
    /// TTFT of cold requests.
    pub ttft_cold: Option<P50P95>,
    /// Decode time (first to last token) over all requests.
    pub decode: Option<P50P95>,
    /// Decode time per decode length.
    pub decode_by_tokens: BTreeMap<String, Option<P50P95>>,
    /// The SLOs.
    pub slo_ms: Slos,
    /// Requests measured.
    pub requests: usize,
}

/// MoE figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MoeSection {
    /// Dropped tokens over routed tokens.
    pub token_drop_rate: Option<f64>,
    /// Largest coefficient of variation of the per-expert histogram over the windows.
    pub expert_imbalance_cv: Option<f64>,
    /// Mean router entropy.
    pub router_entropy: Option<f64>,
    /// Mean gate margin.
    pub gate_margin: Option<f64>,
    /// The limits.
    pub targets: MoeTargets,
}

/// MoE limits.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct MoeTargets {
    /// Largest drop rate.
    pub token_drop_rate_max: f64,
    /// Largest imbalance CV.
    pub expert_imbalance_cv_max: f64,
}

/// Throughput and goodput, and where they come from.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ThroughputSection {
    /// The figures.
    #[serde(flatten)]
    pub figures: TpsGoodput,
    /// `tps_goodput.json`, or `latency.jsonl` when computed here.
    pub source: String,
}

/// The lab's reference for comparisons with a baseline.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct References {
    /// TTFT p95 may grow this much over the baseline.
    pub ttft_headroom_pct: f64,
    /// Decode p95 may grow this much over the baseline.
    pub decode_headroom_pct: f64,
    /// Growth past this is worth watching.
    pub watch_from_pct: f64,
}

/// A run's scorecard.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Scorecard {
    /// Run name (its folder's name).
    pub run: String,
    /// What wrote it.
    pub generator: String,
    /// Quality.
    pub quality: QualitySection,
    /// Latency.
    pub latency: LatencySection,
    /// MoE.
    pub moe: MoeSection,
    /// Throughput and goodput.
    pub throughput: ThroughputSection,
    /// Headroom references.
    pub references: References,
    /// The verdict.
    pub verdict: Verdict,
    /// The baseline compared against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_ref: Option<String>,
    /// Deltas and headroom against the baseline.
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub comparison: Option<Comparison>,
}

/// Why a folder cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum ScorecardError {
    /// A file of the folder.
    #[error(transparent)]
    Folder(#[from] FolderError),
}

fn bad(folder: &RunFolder, file: &str, line: Option<usize>, message: String) -> ScorecardError {
    ScorecardError::Folder(FolderError::Bad { path: folder.dir.join(file), line, message })
}

fn quality(folder: &RunFolder) -> QualitySection {
    let rows = folder.quality.as_deref().unwrap_or_default();
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in rows {
        let e = per.entry(r.task.clone()).or_default();
        e.0 += usize::from(r.correct);
        e.1 += 1;
    }
    let correct = rows.iter().filter(|r| r.correct).count();
    QualitySection {
        avg_accuracy: (!rows.is_empty()).then(|| correct as f64 / rows.len() as f64),
        per_task: per.into_iter().map(|(t, (c, n))| (t, c as f64 / n as f64)).collect(),
        answered: rows.len(),
    }
}

fn latency(rows: &[LatencyRow], slos: Slos) -> LatencySection {
    let ttft = |case: Option<&str>| P50P95::of(rows.iter().filter(|r| case.is_none_or(|c| r.case == c)).map(|r| r.ttft_ms).collect());
    LatencySection {
        ttft: ttft(None),
        ttft_warm: ttft(Some("warm")),
        ttft_cold: ttft(Some("cold")),
        decode: P50P95::of(rows.iter().map(|r| r.decode_ms).collect()),
        decode_by_tokens: DECODE_LENGTHS
            .iter()
            .map(|&n| (n.to_string(), P50P95::of(rows.iter().filter(|r| r.output_tokens == n).map(|r| r.decode_ms).collect())))
            .collect(),
        slo_ms: slos,
        requests: rows.len(),
    }
}

/// Dropped over routed tokens; with no `total_tokens` on any row, drops per window.
pub fn drop_rate(folder: &RunFolder, rows: &[RouterRow]) -> Result<Option<f64>, ScorecardError> {
    let with_totals = rows.iter().filter(|r| r.total_tokens.is_some()).count();
    if with_totals != 0 && with_totals != rows.len() {
        let line = rows.iter().position(|r| r.total_tokens.is_none()).map(|i| i + 1);
        return Err(bad(
            folder,
            MOE_ROUTER,
            line,
            "`total_tokens` is on some rows but not this one: give it on every row or on none".into(),
        ));
    }
    let drops: f64 = rows.iter().map(|r| r.drops).sum();
    let total: f64 = if with_totals == 0 { rows.len() as f64 } else { rows.iter().filter_map(|r| r.total_tokens).sum() };
    Ok((total > 0.0).then(|| drops / total))
}

/// Population coefficient of variation; `None` for an empty or all-zero histogram.
pub fn imbalance_cv(hist: &[f64]) -> Option<f64> {
    let n = hist.len() as f64;
    let mean = hist.iter().sum::<f64>() / n;
    if hist.is_empty() || mean <= 0.0 {
        return None;
    }
    let var = hist.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    Some(var.sqrt() / mean)
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

fn moe(folder: &RunFolder) -> Result<MoeSection, ScorecardError> {
    let router = folder.moe_router.as_deref().unwrap_or_default();
    let traffic: &[TrafficRow] = folder.moe_traffic.as_deref().unwrap_or_default();
    Ok(MoeSection {
        token_drop_rate: drop_rate(folder, router)?,
        // The worst window gates, as the lab's scorecard does.
        expert_imbalance_cv: traffic.iter().filter_map(|r| r.imbalance_cv.or_else(|| imbalance_cv(&r.expert_hist))).reduce(f64::max),
        router_entropy: mean(router.iter().filter_map(|r| r.entropy)),
        gate_margin: mean(router.iter().filter_map(|r| r.margin)),
        targets: MoeTargets { token_drop_rate_max: MAX_DROP_RATE, expert_imbalance_cv_max: MAX_IMBALANCE_CV },
    })
}

/// Throughput and goodput from latency rows: output tokens over `window_s` (the measured
/// window; `None`: the sum of the requests' latencies, right for requests sent one at a
/// time), goodput counting requests within both SLOs, scaled by the drop rate when known.
pub fn throughput_from_latency(rows: &[LatencyRow], window_s: Option<f64>, slos: Slos, drop_rate: Option<f64>) -> TpsGoodput {
    if rows.is_empty() {
        return TpsGoodput { drop_rate, ..TpsGoodput::default() };
    }
    let window = window_s.unwrap_or_else(|| rows.iter().map(|r| r.ttft_ms + r.decode_ms).sum::<f64>() / 1000.0);
    let good: Vec<&LatencyRow> = rows.iter().filter(|r| r.ttft_ms <= slos.ttft && r.decode_ms <= slos.latency).collect();
    let tokens = |rs: &mut dyn Iterator<Item = &LatencyRow>| rs.map(|r| f64::from(r.output_tokens)).sum::<f64>();
    let per_s = |t: f64| (window > 0.0).then(|| t / window);
    let scale = drop_rate.map_or(1.0, |d| (1.0 - GOODPUT_DROP_PENALTY * d).max(0.0));
    TpsGoodput {
        throughput_tps: per_s(tokens(&mut rows.iter())),
        goodput: per_s(tokens(&mut good.iter().copied())).map(|g| g * scale),
        slo_hit_rate: Some(good.len() as f64 / rows.len() as f64),
        drop_rate,
    }
}

fn missing_note(folder: &RunFolder, file: &str, present: bool, what: &str) -> String {
    let path = folder.dir.join(file);
    if present { format!("{} has no rows", path.display()) } else { format!("no {}{what}", path.display()) }
}

impl Scorecard {
    /// Scores a folder; `baseline` adds deltas and the headroom rule.
    pub fn build(folder: &RunFolder, baseline: Option<&Baseline>) -> Result<Scorecard, ScorecardError> {
        let slos = Slos::of(folder)?;
        let quality = quality(folder);
        let rows = folder.latency.as_deref().unwrap_or_default();
        let latency = latency(rows, slos);
        let moe = moe(folder)?;
        let throughput = match &folder.tps_goodput {
            Some(t) => ThroughputSection { figures: t.clone(), source: super::folder::TPS_GOODPUT.into() },
            None => ThroughputSection {
                figures: throughput_from_latency(rows, None, slos, moe.token_drop_rate),
                source: super::folder::LATENCY.into(),
            },
        };
        let slo_note = |from_meta: bool, key: &str| {
            if from_meta { format!("{key} from sys_meta.json") } else { format!("default; sys_meta.json has no {key}") }
        };
        let latency_missing = missing_note(folder, super::folder::LATENCY, folder.latency.is_some(), "");
        let simulated = folder.sys_meta.as_ref().and_then(|m| m.get("mode")).and_then(|m| m.as_str()) == Some("simulated");
        let moe_hint = if simulated {
            " (a simulation models no MoE router)"
        } else {
            " (vLLM publishes no MoE router data; `simctl eval` takes it from --metrics-dir)"
        };
        let checks = vec![
            Check::new(
                "accuracy",
                quality.avg_accuracy,
                MIN_ACCURACY,
                Rule::AtLeast,
                if quality.avg_accuracy.is_some() {
                    String::new()
                } else {
                    missing_note(folder, super::folder::QUALITY, folder.quality.is_some(), "")
                },
            ),
            Check::new(
                "ttft_p95_ms",
                latency.ttft.map(|p| p.p95),
                slos.ttft,
                Rule::AtMost,
                if latency.ttft.is_some() { slo_note(slos.ttft_from_meta, "ttft_slo_ms") } else { latency_missing.clone() },
            ),
            Check::new(
                "decode_p95_ms",
                latency.decode.map(|p| p.p95),
                slos.latency,
                Rule::AtMost,
                if latency.decode.is_some() { slo_note(slos.latency_from_meta, "latency_slo_ms") } else { latency_missing },
            ),
            Check::new(
                "drop_rate",
                moe.token_drop_rate,
                MAX_DROP_RATE,
                Rule::AtMost,
                if moe.token_drop_rate.is_some() {
                    String::new()
                } else {
                    missing_note(folder, MOE_ROUTER, folder.moe_router.is_some(), moe_hint)
                },
            ),
            Check::new(
                "imbalance_cv",
                moe.expert_imbalance_cv,
                MAX_IMBALANCE_CV,
                Rule::AtMost,
                if moe.expert_imbalance_cv.is_some() {
                    String::new()
                } else {
                    missing_note(folder, MOE_TRAFFIC, folder.moe_traffic.is_some(), moe_hint)
                },
            ),
        ];
        let mut card = Scorecard {
            run: folder.name(),
            generator: format!("simctl {}", env!("CARGO_PKG_VERSION")),
            quality,
            latency,
            moe,
            throughput,
            references: References {
                ttft_headroom_pct: super::baseline::HEADROOM_MAX,
                decode_headroom_pct: super::baseline::HEADROOM_MAX,
                watch_from_pct: super::baseline::HEADROOM_WATCH,
            },
            verdict: Verdict::of(checks),
            baseline_ref: None,
            comparison: None,
        };
        if let Some(b) = baseline {
            card.baseline_ref = Some(b.reference.clone());
            card.comparison = Some(Comparison::between(&Baseline::of(&card, ""), b));
        }
        Ok(card)
    }
}

// A baseline's figures from a scorecard live here, beside the scorecard (baseline.rs holds
// only the comparison, so that it needs nothing of this module).
impl Baseline {
    /// From a scorecard computed here.
    pub fn of(card: &Scorecard, reference: &str) -> Baseline {
        Baseline {
            reference: reference.to_string(),
            avg_accuracy: card.quality.avg_accuracy,
            ttft_p95: card.latency.ttft.map(|p| p.p95),
            decode_p95: card.latency.decode.map(|p| p.p95),
            drop_rate: card.moe.token_drop_rate,
            imbalance_cv: card.moe.expert_imbalance_cv,
            goodput: card.throughput.figures.goodput,
        }
    }

    /// From a `scorecard.json` file, or a run folder (scored here).
    pub fn load(path: &Path) -> Result<Baseline, ScorecardError> {
        let reference = path.display().to_string();
        if path.is_dir() {
            return Ok(Baseline::of(&Scorecard::build(&RunFolder::read(path)?, None)?, &reference));
        }
        let text = std::fs::read_to_string(path).map_err(|e| FolderError::Io { action: "read", path: path.to_path_buf(), error: e })?;
        let bad = |message: String| ScorecardError::Folder(FolderError::Bad { path: path.to_path_buf(), line: None, message });
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        Baseline::from_json(&v, &reference).ok_or_else(|| {
            bad("not a scorecard: it has no quality, latency, moe or throughput section; give a scorecard.json or a run folder".into())
        })
    }
}
