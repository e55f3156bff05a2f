//! Shared body of the trace reader targets: every row of a trace in one format, read from
//! the input as a file would be (the first byte chooses `skip_invalid`).

pub fn read_all(data: &[u8], format: simctl_engine::trace::TraceFormat) {
    let (skip, body) = match data.split_first() {
        Some((b, rest)) => (b & 1 == 1, rest),
        None => (false, data),
    };
    let source = Box::new(std::io::Cursor::new(body.to_vec()));
    let Ok(mut r) = simctl_engine::trace::TraceReader::from_reader("fuzz".into(), source, format, skip) else { return };
    let mut last = 0;
    while let Some(row) = r.next_row() {
        match row {
            Ok(row) => {
                // What the reader promises: arrivals in order, lengths of at least one token,
                // one block id per 512 tokens of prompt.
                assert!(row.arrival_ns >= last, "arrivals go backwards");
                assert!(row.prompt >= 1 && row.output >= 1);
                if let Some(ids) = &row.hash_ids {
                    assert_eq!(ids.len(), row.prompt.div_ceil(512) as usize);
                }
                last = row.arrival_ns;
            }
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
}
