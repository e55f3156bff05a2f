//! Fuzzes live mode's stream parser: bytes cut into pieces where the input says (a 0xFF byte
//! ends a piece, as the network cuts a stream), split into lines, each parsed as SSE data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use simctl_live::sse::{LineBuffer, parse_sse_data};

fuzz_target!(|data: &[u8]| {
    let mut buf = LineBuffer::default();
    for piece in data.split(|&b| b == 0xFF) {
        buf.push(piece);
        while let Some(line) = buf.next_line() {
            if let Ok(line) = line {
                assert!(!line.contains('\n'));
                let _ = parse_sse_data(&line);
            }
        }
    }
});
