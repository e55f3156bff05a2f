//! CSV text: quoting a field, writing a float so it reads back as one, splitting a line.

/// Quotes a CSV field if it holds a comma, a quote or a newline.
pub fn csv_text(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// A float as CSV text that always reads back as a float: `0.0`, `1.5`, `1e-7`; empty when
/// it is not finite (no data).
pub fn float_text(x: f64) -> String {
    if x.is_finite() { format!("{x:?}") } else { String::new() }
}

/// Splits one CSV line into fields (RFC 4180 quoting; no embedded newlines in our files).
pub(crate) fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}
