//! Workload traces, read a line at a time (never whole): Mooncake JSONL, the Azure LLM
//! inference CSV, and a plain CSV of arrival, prompt and output tokens.
//!
//! This is the one place the engine touches the file system (DESIGN says sans-IO): traces
//! are streamed lazily while the run consumes them, and opening them inside the workload
//! keeps a spec a value that sweeps can clone across threads. Nothing else does IO.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A Mooncake row's timestamp (ms), prompt and output lengths, and block ids.
type MooncakeFields = (f64, f64, f64, Option<Arc<[u64]>>);

/// A Mooncake row as the trace writes it (extra fields ignored, as the slow path does; a
/// `hash_ids` that is present must be a list of integers).
#[derive(serde::Deserialize)]
struct MooncakeRow {
    timestamp: f64,
    input_length: f64,
    output_length: f64,
    #[serde(default, deserialize_with = "some_ids")]
    hash_ids: Option<Vec<u64>>,
}

fn some_ids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<u64>>, D::Error> {
    <Vec<u64> as serde::Deserialize>::deserialize(d).map(Some)
}

/// Longest line a trace may hold (a Mooncake row of a million-token prompt is under 20 MB).
pub const MAX_LINE_BYTES: usize = 32 << 20;

/// Trace file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceFormat {
    /// Mooncake JSONL: `timestamp` (ms), `input_length`, `output_length`, `hash_ids`.
    Mooncake,
    /// Azure LLM inference trace CSV: `TIMESTAMP` (wall clock), `ContextTokens`,
    /// `GeneratedTokens`.
    Azure,
    /// A CSV with a header naming an arrival column (`arrival_s`, `arrived_at` in seconds, or
    /// `arrival_ms`, `timestamp` in ms) and the prompt and output token columns
    /// (`prompt_tokens`/`input_length`/`num_prefill_tokens`, `output_tokens`/`output_length`/
    /// `num_decode_tokens`).
    Csv,
}

impl TraceFormat {
    /// Guesses the format from a file name: `.jsonl` is Mooncake, a name with "azure" is Azure,
    /// other `.csv` files are plain CSV.
    pub fn guess(path: &Path) -> Option<TraceFormat> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".jsonl") || name.ends_with(".json") {
            Some(TraceFormat::Mooncake)
        } else if name.contains("azure") && name.ends_with(".csv") {
            Some(TraceFormat::Azure)
        } else if name.ends_with(".csv") {
            Some(TraceFormat::Csv)
        } else {
            None
        }
    }
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceFormat::Mooncake => "mooncake",
            TraceFormat::Azure => "azure",
            TraceFormat::Csv => "csv",
        }
    }
}

/// One request of a trace, its arrival relative to the trace's first request.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRow {
    /// Nanoseconds since the first row.
    pub arrival_ns: u64,
    /// Prompt tokens.
    pub prompt: u32,
    /// Output tokens.
    pub output: u32,
    /// Prefix block ids (Mooncake).
    pub hash_ids: Option<Arc<[u64]>>,
}

/// A problem with a trace: which file and line, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceError {
    /// The file.
    pub path: String,
    /// 1-based line (0: the file as a whole).
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.path, self.message),
            n => write!(f, "{}:{n}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for TraceError {}

/// Opens a trace and reads its first row: a missing file, a CSV without the needed columns,
/// a first line that does not parse and a trace without any request fail here, before a run.
pub fn check_opens(t: &TraceSpec) -> Result<(), TraceError> {
    match TraceReader::open(&t.path, t.format, t.skip_invalid)?.with_block_tokens(t.block_tokens).next_row() {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy, Debug)]
enum TimeUnit {
    Seconds,
    Millis,
}

#[derive(Clone, Copy, Debug)]
struct CsvColumns {
    arrival: usize,
    unit: TimeUnit,
    prompt: usize,
    output: usize,
}

/// Streams the rows of a trace file.
pub struct TraceReader {
    path: String,
    format: TraceFormat,
    source: Box<dyn BufRead + Send>,
    /// The line being read, reused from line to line.
    buf: Vec<u8>,
    line_no: u64,
    /// Rows returned so far (a trace without any is an error at its end).
    rows: u64,
    /// Whether the end of the trace was reached (and reported, when it held no request).
    ended: bool,
    csv: Option<CsvColumns>,
    first: Option<i128>,
    last_ns: u64,
    skip_invalid: bool,
    skipped: u64,
    block_tokens: u32,
}

impl std::fmt::Debug for TraceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader").field("path", &self.path).field("line", &self.line_no).finish_non_exhaustive()
    }
}

impl TraceReader {
    /// Opens `path`; CSV formats read their header line here.
    pub fn open(path: &Path, format: TraceFormat, skip_invalid: bool) -> Result<Self, TraceError> {
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|e| TraceError { path: shown.clone(), line: 0, message: format!("cannot open trace: {e}") })?;
        Self::from_reader(shown, Box::new(BufReader::with_capacity(1 << 16, file)), format, skip_invalid)
    }

    /// Reads a trace from any buffered source, named `name` in errors (tests, fuzzing).
    pub fn from_reader(name: String, source: Box<dyn BufRead + Send>, format: TraceFormat, skip_invalid: bool) -> Result<Self, TraceError> {
        let mut r = TraceReader {
            path: name,
            format,
            source,
            buf: Vec::new(),
            line_no: 0,
            rows: 0,
            ended: false,
            csv: None,
            first: None,
            last_ns: 0,
            skip_invalid,
            skipped: 0,
            block_tokens: MOONCAKE_BLOCK_TOKENS,
        };
        if format != TraceFormat::Mooncake {
            let header = loop {
                match r.next_line()? {
                    None => return Err(r.err(1, "the file is empty; expected a header line and at least one request".into())),
                    Some(l) if l.trim().is_empty() => continue,
                    Some(l) => break l,
                }
            };
            r.csv = Some(r.columns(&header)?);
        }
        Ok(r)
    }

    /// Tokens per prefix block id (Mooncake's 512 unless the replay says otherwise): a row's
    /// `hash_ids` must hold one id per block of its `input_length`.
    pub fn with_block_tokens(mut self, tokens: u32) -> Self {
        self.block_tokens = tokens.max(1);
        self
    }

    /// Lines skipped as invalid so far (with `skip_invalid`).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn err(&self, line: u64, message: String) -> TraceError {
        TraceError { path: self.path.clone(), line, message }
    }

    fn next_line(&mut self) -> Result<Option<String>, TraceError> {
        self.buf.clear();
        // At most MAX_LINE_BYTES + 1 bytes: a file without newlines is an error, not a read
        // of the whole file into memory.
        let n = (&mut self.source).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut self.buf);
        match n {
            Ok(0) => Ok(None),
            Ok(_) if self.buf.len() > MAX_LINE_BYTES && self.buf.last() != Some(&b'\n') => {
                Err(self.err(self.line_no + 1, format!("the line runs past {} MiB without a newline", MAX_LINE_BYTES >> 20)))
            }
            Ok(_) => {
                self.line_no += 1;
                if self.buf.last() == Some(&b'\n') {
                    self.buf.pop();
                    if self.buf.last() == Some(&b'\r') {
                        self.buf.pop();
                    }
                }
                match std::str::from_utf8(&self.buf) {
                    Ok(t) => Ok(Some(t.to_string())),
                    Err(e) => Err(self.err(self.line_no, format!("cannot read: the line is not UTF-8 text ({e})"))),
                }
            }
            Err(e) => Err(self.err(self.line_no + 1, format!("cannot read: {e}"))),
        }
    }

    fn columns(&self, header: &str) -> Result<CsvColumns, TraceError> {
        let names: Vec<String> = header.trim_start_matches('\u{feff}').split(',').map(|s| s.trim().to_ascii_lowercase()).collect();
        let find = |opts: &[&str]| names.iter().position(|n| opts.contains(&n.as_str()));
        let (arrival, unit) = match self.format {
            TraceFormat::Azure => (find(&["timestamp"]), TimeUnit::Seconds),
            _ => match find(&["arrival_s", "arrived_at", "arrival_time"]) {
                Some(i) => (Some(i), TimeUnit::Seconds),
                None => (find(&["arrival_ms", "timestamp"]), TimeUnit::Millis),
            },
        };
        let prompt = find(&["prompt_tokens", "input_length", "contexttokens", "num_prefill_tokens", "input_tokens"]);
        let output = find(&["output_tokens", "output_length", "generatedtokens", "num_decode_tokens"]);
        match (arrival, prompt, output) {
            (Some(arrival), Some(prompt), Some(output)) => Ok(CsvColumns { arrival, unit, prompt, output }),
            _ => Err(self.err(
                1,
                format!(
                    "header `{header}` lacks an arrival, a prompt or an output column; expected e.g. `arrival_s,prompt_tokens,output_tokens`{}",
                    if self.format == TraceFormat::Azure { " or Azure's `TIMESTAMP,ContextTokens,GeneratedTokens`" } else { "" }
                ),
            )),
        }
    }

    /// The next row, `None` at the end. Invalid lines are errors, or skipped and counted
    /// with `skip_invalid`.
    pub fn next_row(&mut self) -> Option<Result<TraceRow, TraceError>> {
        loop {
            if self.ended {
                return None;
            }
            let line = match self.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => {
                    self.ended = true;
                    if self.rows > 0 {
                        return None;
                    }
                    // One rule for every format: a replay of nothing is an error, not a run
                    // of zero requests.
                    let skipped = if self.skipped > 0 { format!(" ({} invalid lines skipped)", self.skipped) } else { String::new() };
                    return Some(Err(self.err(0, format!("the trace holds no requests{skipped}; a replay needs at least one"))));
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            match self.parse(&line) {
                Ok(row) => {
                    self.rows += 1;
                    return Some(Ok(row));
                }
                Err(message) if self.skip_invalid => {
                    let _ = message;
                    self.skipped += 1;
                }
                Err(message) => return Some(Err(self.err(self.line_no, message))),
            }
        }
    }

    /// A Mooncake row through a JSON value: the errors name the field that is wrong.
    fn parse_mooncake_slowly(line: &str) -> Result<MooncakeFields, String> {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
        let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).ok_or_else(|| format!("missing or non-numeric `{k}`"));
        let ts = num("timestamp")?;
        let ids: Option<Arc<[u64]>> = match v.get("hash_ids") {
            Some(serde_json::Value::Array(xs)) => Some(
                xs.iter()
                    .map(|x| x.as_u64().ok_or_else(|| "`hash_ids` holds a non-integer".to_string()))
                    .collect::<Result<Vec<_>, _>>()?
                    .into(),
            ),
            Some(_) => return Err("`hash_ids` is not a list".into()),
            None => None,
        };
        Ok((ts, num("input_length")?, num("output_length")?, ids))
    }

    fn parse(&mut self, line: &str) -> Result<TraceRow, String> {
        let (stamp_ns, prompt, output, hash_ids) = match self.format {
            TraceFormat::Mooncake => {
                // Well-formed rows parse straight into their fields; anything else goes the slow
                // way, which says what is wrong.
                let object = line.trim_start().starts_with('{');
                let row = if let Some(r) = object.then(|| serde_json::from_str::<MooncakeRow>(line).ok()).flatten() {
                    (r.timestamp, r.input_length, r.output_length, r.hash_ids.map(Into::into))
                } else {
                    Self::parse_mooncake_slowly(line)?
                };
                if !(row.0.is_finite() && row.0 >= 0.0) {
                    return Err(format!("`timestamp` {} must be a finite number of milliseconds >= 0", row.0));
                }
                ((row.0 * 1e6).round() as i128, row.1, row.2, row.3)
            }
            _ => {
                let c = self.csv.expect("CSV columns read at open");
                let fields: Vec<&str> = line.split(',').map(str::trim).collect();
                let get = |i: usize, what: &str| {
                    fields.get(i).copied().filter(|s| !s.is_empty()).ok_or_else(|| format!("missing {what} (column {})", i + 1))
                };
                let ts_text = get(c.arrival, "arrival")?;
                let ts = if self.format == TraceFormat::Azure {
                    parse_wall_clock_ns(ts_text)
                        .ok_or_else(|| format!("`{ts_text}` is not a timestamp like `2023-11-16 18:17:03.9799600`"))?
                } else {
                    let x: f64 = ts_text.parse().map_err(|_| format!("arrival `{ts_text}` is not a number"))?;
                    if !(x.is_finite() && x >= 0.0) {
                        return Err(format!(
                            "arrival `{ts_text}` must be a finite time >= 0 ({})",
                            match c.unit {
                                TimeUnit::Seconds => "seconds",
                                TimeUnit::Millis => "milliseconds",
                            }
                        ));
                    }
                    match c.unit {
                        TimeUnit::Seconds => (x * 1e9).round() as i128,
                        TimeUnit::Millis => (x * 1e6).round() as i128,
                    }
                };
                let num = |i: usize, what: &str| -> Result<f64, String> {
                    let t = get(i, what)?;
                    t.parse::<f64>().map_err(|_| format!("{what} `{t}` is not a number"))
                };
                (ts, num(c.prompt, "prompt tokens")?, num(c.output, "output tokens")?, None)
            }
        };
        let tokens = |x: f64, what: &str| -> Result<u32, String> {
            if x.fract() != 0.0 || x < 1.0 || !x.is_finite() {
                Err(format!("{what} must be a whole number of at least 1, found {x}"))
            } else {
                crate::units::check_length(what, if x > u64::MAX as f64 { u64::MAX } else { x as u64 }).map(|t| t.get())
            }
        };
        let prompt = tokens(prompt, "the prompt length")?;
        let output = tokens(output, "the output length")?;
        if let Some(ids) = &hash_ids {
            let need = prompt.div_ceil(self.block_tokens) as usize;
            if ids.len() != need {
                return Err(format!(
                    "`hash_ids` holds {} ids, but an `input_length` of {prompt} tokens spans {need} blocks of {} tokens",
                    ids.len(),
                    self.block_tokens
                ));
            }
        }
        let first = *self.first.get_or_insert(stamp_ns);
        let rel = stamp_ns - first;
        if rel < 0 {
            return Err("this request is earlier than the first one; traces must start with their earliest request".into());
        }
        // Simulated time counts nanoseconds in 64 bits (584 years): a later arrival would wrap.
        if rel > i128::from(MAX_TRACE_NS) {
            return Err(format!(
                "this request arrives more than {} years after the first; simulated time does not reach that far",
                MAX_TRACE_NS / NS_PER_YEAR
            ));
        }
        let rel = rel as u64;
        if rel < self.last_ns {
            return Err("timestamps go backwards; traces must be sorted by arrival".into());
        }
        self.last_ns = rel;
        Ok(TraceRow { arrival_ns: rel, prompt, output, hash_ids })
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fraction]` (no time zone) to nanoseconds since 1970.
pub fn parse_wall_clock_ns(s: &str) -> Option<i128> {
    let s = s.trim().trim_end_matches("+00:00");
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, dd) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (h, mi, se) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&dd) || h > 23 || mi > 59 || se > 60 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut ns_frac: i128 = 0;
    for (k, c) in frac.chars().take(9).enumerate() {
        ns_frac += i128::from(c.to_digit(10)? as u8) * 10i128.pow(8 - k as u32);
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((i128::from(days) * 86_400 + i128::from(h * 3600 + mi * 60 + se)) * 1_000_000_000 + ns_frac)
}

/// Summary statistics of a trace (what `simctl trace stats` prints).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TraceStats {
    /// The file.
    pub path: String,
    /// Its format.
    pub format: TraceFormat,
    /// Requests.
    pub requests: u64,
    /// Invalid lines skipped.
    pub skipped_lines: u64,
    /// Last arrival minus the first, seconds.
    pub duration_s: f64,
    /// Requests per second over the duration.
    pub mean_rate_per_s: f64,
    /// Most requests in one minute (minutes counted from the first request).
    pub peak_per_minute: u64,
    /// Fewest requests in one minute.
    pub min_per_minute: u64,
    /// Input lengths.
    pub input: LengthStats,
    /// Output lengths.
    pub output: LengthStats,
    /// Block statistics, for traces with prefix block ids.
    pub blocks: Option<BlockStats>,
}

/// Mean and nearest-rank percentiles of a length.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LengthStats {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u32,
    /// 90th percentile.
    pub p90: u32,
    /// 99th percentile.
    pub p99: u32,
    /// Smallest.
    pub min: u32,
    /// Largest.
    pub max: u32,
    /// Sum.
    pub total: u64,
}

/// Prefix-block reuse of a trace.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BlockStats {
    /// Block references over all requests.
    pub total: u64,
    /// Distinct block ids.
    pub unique: u64,
    /// Share of distinct blocks that appear in more than one request.
    pub shared_unique_fraction: f64,
    /// Share of references that repeat an id seen in an earlier request: the hit rate of an
    /// infinite prefix cache.
    pub repeat_fraction: f64,
}

fn length_stats(mut xs: Vec<u32>) -> LengthStats {
    if xs.is_empty() {
        return LengthStats::default();
    }
    xs.sort_unstable();
    let n = xs.len();
    // Nearest rank: the smallest value with at least p% of the data at or below it.
    let rank = |p: f64| xs[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
    let total: u64 = xs.iter().map(|&x| u64::from(x)).sum();
    LengthStats { mean: total as f64 / n as f64, p50: rank(50.0), p90: rank(90.0), p99: rank(99.0), min: xs[0], max: xs[n - 1], total }
}

/// Reads a whole trace once and summarises it.
pub fn stats(path: &Path, format: TraceFormat, skip_invalid: bool) -> Result<TraceStats, TraceError> {
    let mut r = TraceReader::open(path, format, skip_invalid)?;
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    // Arrivals per minute, only of minutes that have some (a trace may span centuries).
    let mut per_minute: HashMap<u64, u64> = HashMap::new();
    let mut last = 0u64;
    // Block id -> (requests it appears in, last request index that counted it).
    let mut seen: HashMap<u64, (u32, u64)> = HashMap::new();
    let (mut total_refs, mut repeats, mut has_blocks) = (0u64, 0u64, false);
    let mut idx = 0u64;
    while let Some(row) = r.next_row() {
        let row = row?;
        inputs.push(row.prompt);
        outputs.push(row.output);
        last = row.arrival_ns;
        *per_minute.entry(row.arrival_ns / 60_000_000_000).or_default() += 1;
        if let Some(ids) = &row.hash_ids {
            has_blocks = true;
            for &id in ids.iter() {
                total_refs += 1;
                let e = seen.entry(id).or_insert((0, u64::MAX));
                if e.0 > 0 && e.1 != idx {
                    repeats += 1;
                }
                if e.1 != idx {
                    e.0 += 1;
                    e.1 = idx;
                }
            }
        }
        idx += 1;
    }
    let n = inputs.len() as u64;
    let duration_s = last as f64 / 1e9;
    let blocks = has_blocks.then(|| BlockStats {
        total: total_refs,
        unique: seen.len() as u64,
        shared_unique_fraction: if seen.is_empty() { 0.0 } else { seen.values().filter(|v| v.0 > 1).count() as f64 / seen.len() as f64 },
        repeat_fraction: if total_refs == 0 { 0.0 } else { repeats as f64 / total_refs as f64 },
    });
    Ok(TraceStats {
        path: path.display().to_string(),
        format,
        requests: n,
        skipped_lines: r.skipped(),
        duration_s,
        mean_rate_per_s: if duration_s > 0.0 { n as f64 / duration_s } else { 0.0 },
        peak_per_minute: per_minute.values().copied().max().unwrap_or(0),
        // A minute between the first and the last arrival without any counts as 0.
        min_per_minute: if (per_minute.len() as u64) <= last / 60_000_000_000 {
            0
        } else {
            per_minute.values().copied().min().unwrap_or(0)
        },
        input: length_stats(inputs),
        output: length_stats(outputs),
        blocks,
    })
}

/// Where a trace replay comes from and how it is replayed.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSpec {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: TraceFormat,
    /// Time compression: arrivals happen `speedup` times sooner.
    pub speedup: f64,
    /// Requests arriving (in trace time) before this are skipped.
    pub start_ns: u64,
    /// Requests arriving (in trace time) at or after this are not replayed.
    pub end_ns: Option<u64>,
    /// At most this many requests.
    pub limit: Option<u64>,
    /// Start over at the end (until the run's own limits stop it).
    pub looped: bool,
    /// Skip invalid lines (counted) instead of failing.
    pub skip_invalid: bool,
    /// Tokens per prefix block id (Mooncake: 512).
    pub block_tokens: u32,
    /// Prompts longer than this are cut to it, and their block ids with them (to replay a
    /// trace against a model with a shorter context); `None`: as the trace says.
    pub max_prompt: Option<u32>,
    /// Outputs longer than this are cut to it; `None`: as the trace says.
    pub max_output: Option<u32>,
}

/// Latest arrival a trace may carry, in nanoseconds from its first (about 317 years: far
/// below the 584 years of simulated time, so shifted and sped-up times stay in range).
const MAX_TRACE_NS: u64 = 10_000_000_000 * 1_000_000_000;
const NS_PER_YEAR: u64 = 365 * 24 * 3600 * 1_000_000_000;

/// Mooncake's prefix block size in tokens.
pub const MOONCAKE_BLOCK_TOKENS: u32 = 512;

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("simctl-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn mooncake_rows_and_their_errors() {
        let p = file(
            "m.jsonl",
            "{\"timestamp\": 0, \"input_length\": 1000, \"output_length\": 10, \"hash_ids\": [0, 1]}\n\
             {\"timestamp\": 1500, \"input_length\": 600, \"output_length\": 5, \"hash_ids\": [0, 2]}\n\
             not json\n\
             {\"timestamp\": 3000, \"input_length\": 0, \"output_length\": 5, \"hash_ids\": [0]}\n\
             {\"timestamp\": 1000, \"input_length\": 5, \"output_length\": 5, \"hash_ids\": [9]}\n",
        );
        let mut r = TraceReader::open(&p, TraceFormat::Mooncake, false).unwrap();
        let a = r.next_row().unwrap().unwrap();
        assert_eq!((a.arrival_ns, a.prompt, a.output), (0, 1000, 10));
        assert_eq!(a.hash_ids.as_deref(), Some(&[0u64, 1][..]));
        assert_eq!(r.next_row().unwrap().unwrap().arrival_ns, 1_500_000_000);
        let e = r.next_row().unwrap().unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().contains("m.jsonl:3: not a JSON object"), "{e}");
        // With skip_invalid: the bad JSON, the zero-length prompt and the backwards time
        // are skipped and counted.
        let mut r = TraceReader::open(&p, TraceFormat::Mooncake, true).unwrap();
        let mut n = 0;
        while let Some(row) = r.next_row() {
            row.unwrap();
            n += 1;
        }
        assert_eq!((n, r.skipped()), (2, 3));
    }

    #[test]
    fn mooncake_rows_read_alike_the_fast_way_and_the_slow_way() {
        // Each line: what the direct parse gives, or the slow path's error.
        let lines = [
            r#"{"timestamp": 12.5, "input_length": 600, "output_length": 3, "hash_ids": [1, 18446744073709551615], "extra": {"x": [1]}}"#,
            r#"{"output_length": 3.0, "input_length": 7, "timestamp": 2}"#,
            r#"{"timestamp": 1, "timestamp": 2, "input_length": 7, "output_length": 3}"#,
            r#"{"timestamp": 1, "input_length": 7, "output_length": 3, "hash_ids": null}"#,
            r#"{"timestamp": 1, "input_length": 7, "output_length": 3, "hash_ids": [1.0]}"#,
            r#"{"timestamp": 1, "input_length": 7, "output_length": 3, "hash_ids": [-1]}"#,
            r#"{"timestamp": "1", "input_length": 7, "output_length": 3}"#,
            r#"[1, 7, 3]"#,
        ];
        for line in lines {
            let slow = TraceReader::parse_mooncake_slowly(line);
            // Arrivals count from the first row's.
            let p = file("alike.jsonl", &format!("{{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1}}\n{line}\n"));
            let mut r = TraceReader::open(&p, TraceFormat::Mooncake, false).unwrap();
            r.next_row().unwrap().unwrap();
            match (r.next_row().unwrap(), slow) {
                (Ok(row), Ok((ts, prompt, output, ids))) => {
                    let ns = (ts * 1e6).round() as i128;
                    assert_eq!((i128::from(row.arrival_ns), f64::from(row.prompt), f64::from(row.output)), (ns, prompt, output), "{line}");
                    assert_eq!(row.hash_ids, ids, "{line}");
                }
                (Err(e), Err(message)) => assert!(e.to_string().contains(&message), "{line}: {e} / {message}"),
                (fast, slow) => panic!("{line}: {fast:?} against {slow:?}"),
            }
        }
    }

    #[test]
    fn azure_wall_clock_timestamps_become_relative() {
        let p = file(
            "azure_conv.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.0000000,396,109\n2023-11-17 00:00:00.0,1,1\n2023-11-16 99:00:00,3,3\n",
        );
        assert_eq!(TraceFormat::guess(&p), Some(TraceFormat::Azure));
        let mut r = TraceReader::open(&p, TraceFormat::Azure, false).unwrap();
        assert_eq!(r.next_row().unwrap().unwrap().arrival_ns, 0);
        let b = r.next_row().unwrap().unwrap();
        assert_eq!((b.arrival_ns, b.prompt, b.output), (3_319_410_000, 396, 109));
        assert_eq!(r.next_row().unwrap().unwrap().arrival_ns, (5 * 3600 + 44 * 60 + 13) * 1_000_000_000 + 319_410_000);
        let e = r.next_row().unwrap().unwrap_err();
        assert_eq!(e.line, 5);
        assert!(e.message.contains("not a timestamp"));
        assert_eq!(parse_wall_clock_ns("1970-01-02 00:00:01"), Some(86_401_000_000_000));
    }

    #[test]
    fn plain_csv_headers_and_missing_columns() {
        let p = file("t.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0.5,100,20\n1.25,200,x\n");
        let mut r = TraceReader::open(&p, TraceFormat::Csv, false).unwrap();
        assert_eq!(r.next_row().unwrap().unwrap().arrival_ns, 0);
        let e = r.next_row().unwrap().unwrap_err();
        assert!(e.message.contains("output tokens `x` is not a number"), "{e}");
        let bad = file("bad.csv", "when,a,b\n1,2,3\n");
        assert!(TraceReader::open(&bad, TraceFormat::Csv, false).unwrap_err().message.contains("lacks an arrival"));
    }

    #[test]
    fn stats_count_block_reuse_like_an_infinite_cache() {
        let p = file(
            "s.jsonl",
            "{\"timestamp\": 0, \"input_length\": 1024, \"output_length\": 1, \"hash_ids\": [0, 1]}\n\
             {\"timestamp\": 60000, \"input_length\": 1536, \"output_length\": 3, \"hash_ids\": [0, 1, 2]}\n\
             {\"timestamp\": 61000, \"input_length\": 512, \"output_length\": 2, \"hash_ids\": [0]}\n",
        );
        let s = stats(&p, TraceFormat::Mooncake, false).unwrap();
        assert_eq!(s.requests, 3);
        assert_eq!((s.peak_per_minute, s.min_per_minute), (2, 1));
        let b = s.blocks.unwrap();
        assert_eq!((b.total, b.unique), (6, 3));
        assert!((b.repeat_fraction - 3.0 / 6.0).abs() < 1e-12);
        assert!((b.shared_unique_fraction - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((s.input.p50, s.input.max, s.output.total), (1024, 1536, 6));
    }
}
