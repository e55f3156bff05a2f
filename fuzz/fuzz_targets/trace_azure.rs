//! Fuzzes the azure trace reader: any bytes, read row by row to the end.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "trace.rs"]
mod trace;

fuzz_target!(|data: &[u8]| trace::read_all(data, simctl_engine::trace::TraceFormat::Azure));
