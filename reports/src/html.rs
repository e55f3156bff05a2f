//! A single self-contained HTML page: tables and inline SVG charts, no scripts, no links.

/// One table: caption, columns, rows (already formatted).
pub struct Table {
    /// Caption.
    pub caption: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders the page. `svgs` are `(caption, SVG document text)`; they are inlined.
pub fn page(title: &str, intro: &[String], tables: &[Table], svgs: &[(String, String)]) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str(&format!("<title>{}</title>\n", esc(title)));
    h.push_str(
        "<style>body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em;color:#222}\
         table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}\
         th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}\
         figure svg{max-width:100%;height:auto;border:1px solid #eee}</style>\n</head><body>\n",
    );
    h.push_str(&format!("<h1>{}</h1>\n", esc(title)));
    for p in intro {
        h.push_str(&format!("<p>{}</p>\n", esc(p)));
    }
    for t in tables {
        h.push_str(&format!("<table><caption>{}</caption>\n<tr>", esc(&t.caption)));
        for c in &t.columns {
            h.push_str(&format!("<th>{}</th>", esc(c)));
        }
        h.push_str("</tr>\n");
        for r in &t.rows {
            h.push_str("<tr>");
            for c in r {
                h.push_str(&format!("<td>{}</td>", esc(c)));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }
    for (cap, svg) in svgs {
        // Drop any XML prolog: the SVG element is embedded in HTML.
        let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
        h.push_str(&format!("<figure>{body}<figcaption>{}</figcaption></figure>\n", esc(cap)));
    }
    h.push_str("</body></html>\n");
    h
}
