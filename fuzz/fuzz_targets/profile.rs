//! Fuzzes the calibration profile loader: YAML parsing, the field checks, and the cost model
//! of a profile that passes them (every step cost finite and non-negative).
#![no_main]

use libfuzzer_sys::fuzz_target;
use simctl_engine::profile::Profile;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(p) = serde_saphyr::from_str::<Profile>(&text) else { return };
    let Ok(p) = p.checked(&text) else { return };
    let cost = p.cost();
    assert!(cost.c.iter().all(|c| c.is_finite() && *c >= 0.0), "a checked profile has a negative or non-finite coefficient");
    let _ = p.engine_spec();
});
