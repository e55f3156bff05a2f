//! Flat rows of a summary: one column per metric, for CSV tables of sweeps.

use crate::csv::csv_text;
use crate::summary::Summary;

/// A cell of a flat row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// A number.
    Num(f64),
    /// Text.
    Text(String),
}

impl Cell {
    /// As CSV text (quoted when needed).
    pub fn to_csv(&self) -> String {
        match self {
            Cell::Num(v) => crate::csv::float_text(*v),
            Cell::Text(s) => csv_text(s),
        }
    }
}

/// Summary fields that are text when present and null otherwise.
pub(crate) const TEXT_FIELDS: &[&str] = &["incomplete_reason"];

/// The summary as `(column, cell)` pairs in a fixed order: nested objects become dotted
/// names (`ttft_ms.p95`, `pools.decode.queue_depth_mean`).
pub fn flatten_summary(s: &Summary) -> Vec<(String, Cell)> {
    let v = serde_json::to_value(s).expect("summaries serialise");
    let mut out = Vec::new();
    walk("", &v, &mut out);
    out
}

fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, Cell)>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                walk(&name, x, out);
            }
        }
        Value::Number(n) => out.push((prefix.to_string(), Cell::Num(n.as_f64().unwrap_or(f64::NAN)))),
        Value::String(t) => out.push((prefix.to_string(), Cell::Text(t.clone()))),
        Value::Bool(b) => out.push((prefix.to_string(), Cell::Num(f64::from(u8::from(*b))))),
        // Text that may be absent stays text, so its column keeps one type.
        Value::Null if TEXT_FIELDS.contains(&prefix) => out.push((prefix.to_string(), Cell::Text(String::new()))),
        // A metric with no data: a missing number, written as an empty field (null).
        Value::Null => out.push((prefix.to_string(), Cell::Num(f64::NAN))),
        Value::Array(xs) => {
            for (k, x) in xs.iter().enumerate() {
                walk(&format!("{prefix}.{k}"), x, out);
            }
        }
    }
}

/// Mean and half-width of the 95% confidence interval (Student's t) of `xs`.
pub fn mean_ci95(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if mean.is_nan() {
        // A metric some run did not have (goodput without an SLO): no mean, no interval.
        return (f64::NAN, f64::NAN);
    }
    if n == 1 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, t975(n - 1) * (var / n as f64).sqrt())
}

// Two-sided 95% critical values of Student's t by degrees of freedom.
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
        2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    if df == 0 { f64::NAN } else { T.get(df - 1).copied().unwrap_or(1.96) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_interval_uses_students_t() {
        let (m, h) = mean_ci95(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        // s = 1, n = 3: 4.303 / sqrt(3)
        assert!((h - 4.303 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(mean_ci95(&[5.0]), (5.0, 0.0));
        assert_eq!(csv_text("a,b"), "\"a,b\"");
    }
}
