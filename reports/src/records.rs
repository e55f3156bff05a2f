//! Checks of a run folder's records (`simctl run --out`, `simctl live --out`) before anything
//! reads figures from them: `simctl validate --replay` and `simctl report` refuse a folder
//! whose files were deleted, cut short or edited into nonsense, rather than print figures
//! from its summary alone.

use std::path::Path;

use crate::Summary;
use crate::csv::split_csv;
use crate::recorder::REQUEST_COLUMNS;

/// The outcomes a `requests.csv` row may name.
const OUTCOMES: [&str; 5] = ["finished", "rejected", "unfinished", "cancelled", "failed"];

/// Reads and checks a run folder: summary.json, requests.csv (every row, and their count
/// against the summary), and the other files simctl writes there when present (JSON files
/// parse, JSON Lines parse line by line, CSV rows have their header's field count). The
/// error names the file, the line and the field.
pub fn check_run_dir(dir: &Path) -> Result<Summary, String> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| format!("`{}`: cannot read: {e}", p.display()))
    };
    let summary = read("summary.json")?;
    let requests = read("requests.csv")?;
    let s = check_run_texts(&summary, &requests).map_err(|e| format!("{}{e}", dir.display()))?;
    for name in ["sys_meta.json", "tps_goodput.json"] {
        if dir.join(name).is_file() {
            serde_json::from_str::<serde_json::Value>(&read(name)?)
                .map_err(|e| format!("`{}`: not JSON: {e}", dir.join(name).display()))?;
        }
    }
    if dir.join("latency.jsonl").is_file() {
        for (k, line) in read("latency.jsonl")?.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            serde_json::from_str::<serde_json::Value>(line)
                .map_err(|e| format!("`{}`:{}: not JSON: {e}", dir.join("latency.jsonl").display(), k + 1))?;
        }
    }
    for name in ["queue_depth.csv", "gauges.csv"] {
        if dir.join(name).is_file() {
            check_csv_shape(&read(name)?).map_err(|e| format!("{}{e}", dir.join(name).display()))?;
        }
    }
    Ok(s)
}

/// Every row of a CSV has as many fields as its header (the file may not be cut short).
fn check_csv_shape(text: &str) -> Result<(), String> {
    let mut lines = text.lines();
    let n = split_csv(lines.next().ok_or(": the file is empty")?).len();
    if !text.ends_with('\n') {
        return Err(": the last line is cut short (no newline at the end)".into());
    }
    for (k, line) in lines.enumerate() {
        let got = split_csv(line).len();
        if got != n {
            return Err(format!(":{}: {got} fields, the header has {n}", k + 2));
        }
    }
    Ok(())
}

/// Checks a summary (JSON) and its `requests.csv` text together; errors start with
/// `/FILE:LINE:` so that a caller can put the folder in front.
pub fn check_run_texts(summary_json: &str, requests_csv: &str) -> Result<Summary, String> {
    let s: Summary = serde_json::from_str(summary_json).map_err(|e| format!("/summary.json: not a simctl summary: {e}"))?;
    let at = |line: usize, what: String| format!("/requests.csv:{line}: {what}");
    let mut lines = requests_csv.lines();
    let header = lines.next().ok_or_else(|| at(1, "the file is empty; expected the header".into()))?;
    if header.trim_end_matches('\r') != REQUEST_COLUMNS {
        return Err(at(1, format!("the header is not simctl's (`{REQUEST_COLUMNS}`)")));
    }
    if !requests_csv.ends_with('\n') {
        return Err(at(requests_csv.lines().count(), "the last line is cut short (no newline at the end)".into()));
    }
    let cols: Vec<&str> = REQUEST_COLUMNS.split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name).expect("a column of REQUEST_COLUMNS");
    let (outcome_c, good_c) = (col("outcome"), col("good"));
    let latency = ["ttft_ms", "tpot_ms", "e2e_ms", "max_itl_ms"].map(col);
    let counts =
        ["request_id", "prompt_tokens", "output_tokens", "generated_tokens", "cached_tokens", "preemptions", "migrations"].map(col);
    let (mut rows, mut finished) = (0u64, 0u64);
    // A latency column may be NaN throughout (no request had a value), never in places.
    let mut nan = [(0u64, 0u64); 4];
    for (k, line) in lines.enumerate() {
        let n = k + 2;
        let f = split_csv(line);
        if f.len() != cols.len() {
            return Err(at(n, format!("{} fields, the header has {}", f.len(), cols.len())));
        }
        for &c in &counts {
            if f[c].parse::<u64>().is_err() {
                return Err(at(n, format!("`{}` is `{}`, not a whole number >= 0", cols[c], f[c])));
            }
        }
        let arrival: f64 =
            f[col("arrival_s")].parse().map_err(|_| at(n, format!("`arrival_s` is `{}`, not a number", f[col("arrival_s")])))?;
        if !(arrival.is_finite() && arrival >= 0.0) {
            return Err(at(n, format!("`arrival_s` is {arrival}, not a finite time >= 0")));
        }
        let outcome = f[outcome_c].as_str();
        if !OUTCOMES.contains(&outcome) {
            return Err(at(n, format!("`outcome` is `{outcome}`, not one of {}", OUTCOMES.join(", "))));
        }
        if !["", "0", "1"].contains(&f[good_c].as_str()) {
            return Err(at(n, format!("`good` is `{}`, not 0, 1 or empty (no SLO)", f[good_c])));
        }
        for (j, &c) in latency.iter().enumerate() {
            let v = f[c].as_str();
            if v.is_empty() {
                continue;
            }
            let x: f64 = v.parse().map_err(|_| at(n, format!("`{}` is `{v}`, not a number", cols[c])))?;
            nan[j].1 += 1;
            if x.is_nan() {
                nan[j].0 += 1;
            } else if !(x.is_finite() && x >= 0.0) {
                return Err(at(n, format!("`{}` is {x}, not a finite time >= 0", cols[c])));
            }
            if x.is_nan() && nan[j].0 != nan[j].1 {
                return Err(at(n, format!("`{}` is NaN where other rows have values", cols[c])));
            }
        }
        if outcome == "finished" {
            finished += 1;
            for c in [latency[0], latency[2]] {
                if f[c].is_empty() || f[c] == "NaN" {
                    return Err(at(n, format!("a finished request without `{}`", cols[c])));
                }
            }
        }
        rows += 1;
    }
    if let Some(j) = (0..4).find(|&j| nan[j].0 > 0 && nan[j].0 != nan[j].1) {
        return Err(format!("/requests.csv: `{}` is NaN in some rows and a number in others", cols[latency[j]]));
    }
    if rows != s.requests {
        return Err(format!(
            "/requests.csv: {rows} requests, but summary.json says {} (a file cut short, or from another run)",
            s.requests
        ));
    }
    if finished != s.completed {
        return Err(format!("/requests.csv: {finished} finished requests, but summary.json says {}", s.completed));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(requests: u64, completed: u64) -> String {
        // The smallest summary serde accepts: the required fields.
        let mut v: serde_json::Value = serde_json::from_str(include_str!("../tests/data/summary_min.json")).unwrap();
        v["requests"] = requests.into();
        v["completed"] = completed.into();
        v.to_string()
    }

    fn row(id: u64, ttft: &str, outcome: &str) -> String {
        format!("{id},0.5,100,10,10,0,a,a,,0,{ttft},2.0,30.0,3.0,0,0,1,{outcome},,\n")
    }

    #[test]
    fn a_record_checks_row_by_row_against_its_summary() {
        let head = format!("{REQUEST_COLUMNS}\n");
        let ok = format!("{head}{}{}", row(1, "5.0", "finished"), row(2, "", "rejected"));
        assert!(check_run_texts(&summary(2, 1), &ok).is_ok());
        let e = |csv: &str, s: String| check_run_texts(&s, csv).unwrap_err();
        assert!(e(&ok, summary(3, 1)).contains("2 requests, but summary.json says 3"));
        assert!(e(&ok, summary(2, 2)).contains("1 finished requests, but summary.json says 2"));
        assert!(e(&ok[..ok.len() - 1], summary(2, 1)).contains("cut short"));
        let nan = format!("{head}{}{}", row(1, "5.0", "finished"), row(2, "NaN", "finished"));
        assert!(e(&nan, summary(2, 2)).contains("requests.csv:3: `ttft_ms` is NaN where other rows have values"));
        let neg = format!("{head}{}", row(1, "-5.0", "finished"));
        assert!(e(&neg, summary(1, 1)).contains("`ttft_ms` is -5"));
        let odd = format!("{head}{}", row(1, "5.0", "exploded"));
        assert!(e(&odd, summary(1, 1)).contains("`outcome` is `exploded`"));
        // All rejected: the latency columns are NaN throughout, which is allowed.
        let all_nan = format!("{head}{}", row(1, "NaN", "rejected"));
        assert!(check_run_texts(&summary(1, 0), &all_nan).is_ok());
    }
}
