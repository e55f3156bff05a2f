//! Fuzzes the run-record checks that `simctl validate --replay` and `simctl report` apply to a
//! folder: a summary.json and a requests.csv, split at the first NUL byte of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (summary, requests) = text.split_once('\0').unwrap_or((&text, ""));
    if let Ok(s) = simctl_reports::records::check_run_texts(summary, requests) {
        // A record that checks holds one row per request of its summary.
        assert_eq!(requests.lines().count() as u64, s.requests + 1);
    }
});
