//! Fuzzes the scenario language: parsing, evaluation, lowering, validation and rendering of
//! diagnostics. The first line of the input, when it holds `=`, becomes a `--set` override.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (first, rest) = text.split_once('\n').unwrap_or(("", &text));
    let overrides = match first.split_once('=') {
        Some((k, v)) if !k.is_empty() && k.len() < 40 => vec![(k.trim().to_string(), v.trim().to_string())],
        _ => vec![],
    };
    if let Err(d) = simctl_dsl::load("fuzz.scn", rest, &overrides) {
        let _ = d.render(false);
    }
});
