//! Error tables: median and 90th-percentile absolute percentage error and signed bias per group.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::fit::Split;
use super::replay::Prediction;
use super::row::SiliconRow;

/// A row with its prediction.
#[derive(Clone, Debug)]
pub struct Scored {
    /// The measured row.
    pub row: SiliconRow,
    /// Catalogue GPU name.
    pub gpu: String,
    /// Catalogue model name.
    pub model: String,
    /// Which side of the split the row is on.
    pub split: Split,
    /// What the simulator predicts.
    pub prediction: Prediction,
}

impl Scored {
    /// Signed relative error of TTFT: predicted / measured − 1.
    pub fn ttft_error(&self) -> f64 {
        self.prediction.ttft_ms / self.row.ttft_ms - 1.0
    }
    /// Signed relative error of TPOT.
    pub fn tpot_error(&self) -> f64 {
        self.prediction.tpot_ms / self.row.tpot_ms - 1.0
    }
}

/// Errors over a set of rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorStats {
    /// Rows.
    pub n: usize,
    /// Median absolute percentage error of TTFT (a fraction).
    pub ttft_mdape: f64,
    /// Median absolute percentage error of TPOT.
    pub tpot_mdape: f64,
    /// 90th percentile of the absolute error of TTFT.
    pub ttft_p90: f64,
    /// 90th percentile of the absolute error of TPOT.
    pub tpot_p90: f64,
    /// Median signed error of TTFT (positive: the simulator predicts too slow).
    pub ttft_bias: f64,
    /// Median signed error of TPOT.
    pub tpot_bias: f64,
}

/// The `q` quantile (nearest rank) of `x`.
fn quantile(mut x: Vec<f64>, q: f64) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.sort_by(f64::total_cmp);
    x[((q * x.len() as f64).ceil() as usize).clamp(1, x.len()) - 1]
}

fn median(mut x: Vec<f64>) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.sort_by(f64::total_cmp);
    let m = x.len() / 2;
    if x.len() % 2 == 1 { x[m] } else { (x[m - 1] + x[m]) / 2.0 }
}

/// The errors of `rows`.
pub fn error_stats<'a>(rows: impl IntoIterator<Item = &'a Scored>) -> ErrorStats {
    let rows: Vec<&Scored> = rows.into_iter().collect();
    let e = |f: fn(&Scored) -> f64, abs: bool| median(rows.iter().map(|r| if abs { f(r).abs() } else { f(r) }).collect());
    ErrorStats {
        n: rows.len(),
        ttft_mdape: e(Scored::ttft_error, true),
        tpot_mdape: e(Scored::tpot_error, true),
        ttft_p90: quantile(rows.iter().map(|r| r.ttft_error().abs()).collect(), 0.9),
        tpot_p90: quantile(rows.iter().map(|r| r.tpot_error().abs()).collect(), 0.9),
        ttft_bias: e(Scored::ttft_error, false),
        tpot_bias: e(Scored::tpot_error, false),
    }
}

/// The per-group table: one line per (engine, GPU, model) and split, then per engine and
/// split, errors in percent.
pub fn table(scored: &[Scored]) -> String {
    let mut groups: BTreeMap<(String, String, String, Split), Vec<&Scored>> = BTreeMap::new();
    for s in scored {
        let key = (s.row.backend.as_str().to_string(), s.gpu.clone(), s.model.clone(), s.split);
        groups.entry(key.clone()).or_default().push(s);
        groups.entry((key.0.clone(), "all".into(), "all".into(), s.split)).or_default().push(s);
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<7} {:<9} {:<16} {:<5} {:>4}  {:>10} {:>8} {:>9}  {:>10} {:>8} {:>9}",
        "engine", "gpu", "model", "split", "rows", "TTFT MdAPE", "p90", "bias", "TPOT MdAPE", "p90", "bias"
    );
    for ((engine, gpu, model, split), rows) in &groups {
        let st = error_stats(rows.iter().copied());
        let _ = writeln!(
            o,
            "{:<7} {:<9} {:<16} {:<5} {:>4}  {:>9.1}% {:>7.1}% {:>+8.1}%  {:>9.1}% {:>7.1}% {:>+8.1}%",
            engine,
            gpu,
            model,
            split.as_str(),
            st.n,
            st.ttft_mdape * 100.0,
            st.ttft_p90 * 100.0,
            st.ttft_bias * 100.0,
            st.tpot_mdape * 100.0,
            st.tpot_p90 * 100.0,
            st.tpot_bias * 100.0
        );
    }
    o
}

/// Every scored row as CSV (header included): the row, its split, the measured and the
/// predicted means.
pub fn rows_csv(scored: &[Scored]) -> String {
    let mut o = String::from("id,engine,gpu,model,split,isl,osl,concurrency,gpus,ttft_ms,ttft_pred_ms,tpot_ms,tpot_pred_ms\n");
    for s in scored {
        let r = &s.row;
        let _ = writeln!(
            o,
            "{},{},{},{},{},{},{},{},{},{:.3},{:.3},{:.4},{:.4}",
            r.id,
            r.backend.as_str(),
            s.gpu,
            s.model,
            s.split.as_str(),
            r.isl,
            r.osl,
            r.concurrency,
            r.parallel.gpus(),
            r.ttft_ms,
            s.prediction.ttft_ms,
            r.tpot_ms,
            s.prediction.tpot_ms
        );
    }
    o
}
