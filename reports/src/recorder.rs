//! A recorder that keeps what the summary needs and streams per-request rows to CSV.

use crate::csv::{csv_text, float_text};
use std::io::{self, Write};

use hdrhistogram::Histogram;
use simctl_engine::record::{Outcome, Recorder, RequestRecord};
use simctl_engine::spec::SloSpec;
use simctl_engine::time::SimDuration;

// ITL histogram: nanoseconds from 1 ns to an hour at 3 significant digits (0.1% error).
const ITL_MAX_NS: u64 = 3_600_000_000_000;
const ITL_SIGFIGS: u8 = 3;

/// Per-class samples and counts.
#[derive(Debug, Default)]
pub(crate) struct ClassAcc {
    pub name: String,
    /// The name as a `requests.csv` cell (quoted where it must be).
    pub csv_name: String,
    pub slo: SloSpec,
    pub ttft_ms: Vec<f64>,
    pub tpot_ms: Vec<f64>,
    pub e2e_ms: Vec<f64>,
    pub requests: u64,
    pub finished: u64,
    /// Requests judged against an SLO (those of a class with at least one bound).
    pub judged: u64,
    pub good: u64,
    pub good_output_tokens: u64,
}

/// Latency samples of one instance (f32: percentiles in ms need no more, and a million
/// requests cost 8 MB rather than 16).
#[derive(Debug, Default, Clone)]
pub(crate) struct InstanceLatency {
    pub ttft_ms: Vec<f32>,
    pub tpot_ms: Vec<f32>,
}

/// Collects a run's per-request metrics; optionally writes `requests.csv` as requests leave.
pub struct RunRecorder {
    slo: SloSpec,
    pub(crate) classes: Vec<ClassAcc>,
    instance_names: Vec<String>,
    pub(crate) ttft_ms: Vec<f64>,
    pub(crate) tpot_ms: Vec<f64>,
    pub(crate) e2e_ms: Vec<f64>,
    pub(crate) itl: Histogram<u64>,
    pub(crate) itl_sum_ns: u128,
    // Run-length coalescing of equal gaps (all decodes of one step share a gap), flushed
    // into the histogram when the gap changes: one histogram update per run, not per token.
    itl_run_value: u64,
    itl_run_count: u64,
    pub(crate) requests: u64,
    pub(crate) finished: u64,
    /// Whether each optional float column of requests.csv (TTFT, TPOT, E2E, max ITL) got a value.
    float_seen: [bool; 4],
    /// The `requests.csv` line being written, reused from request to request.
    line: String,
    pub(crate) rejected: u64,
    pub(crate) rejected_reasons: std::collections::BTreeMap<String, u64>,
    pub(crate) unfinished: u64,
    pub(crate) cancelled: u64,
    pub(crate) failed: u64,
    pub(crate) failed_reasons: std::collections::BTreeMap<String, u64>,
    /// The error text of the request being recorded (live mode), for its `error` cell.
    error: Option<String>,
    /// Per instance: TTFT of the requests it prefilled and TPOT of those it decoded, ms.
    pub(crate) by_instance: Vec<InstanceLatency>,
    /// Pool index of each instance, and the pools' names (empty when not known).
    pub(crate) instance_pools: Vec<usize>,
    pub(crate) pool_names: Vec<String>,
    /// Requests judged against an SLO: good ones count towards goodput, the others against
    /// attainment. Requests without any SLO bound are not judged at all.
    pub(crate) judged: u64,
    pub(crate) good: u64,
    pub(crate) good_output_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) preempted_requests: u64,
    pub(crate) prompt_tokens: u64,
    pub(crate) cached_tokens: u64,
    csv: Option<Box<dyn Write>>,
    csv_error: Option<io::Error>,
    decisions: Option<Box<dyn Write>>,
    latency_rows: Option<Box<dyn Write>>,
}

/// Column names of `decisions.csv`.
pub const DECISION_COLUMNS: &str = "time_s,request_id,kind,policy,chosen,scores";

/// Column names of `requests.csv`.
pub const REQUEST_COLUMNS: &str = "request_id,arrival_s,prompt_tokens,output_tokens,generated_tokens,priority,prefill_instance,decode_instance,class,cached_tokens,ttft_ms,tpot_ms,e2e_ms,max_itl_ms,preemptions,migrations,good,outcome,reason,error";

/// Writes the header line of `requests.csv`.
pub fn write_requests_csv_header(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{REQUEST_COLUMNS}")
}

impl RunRecorder {
    /// TTFT of every finished request so far, ms, in completion order.
    pub fn ttft_samples(&self) -> &[f64] {
        &self.ttft_ms
    }

    /// TPOT of every finished request with two or more output tokens so far, ms.
    pub fn tpot_samples(&self) -> &[f64] {
        &self.tpot_ms
    }

    /// A recorder judging requests against `slo`; `instance_names` label CSV rows.
    pub fn new(slo: SloSpec, instance_names: Vec<String>) -> Self {
        RunRecorder {
            slo,
            classes: Vec::new(),
            instance_names,
            ttft_ms: Vec::new(),
            tpot_ms: Vec::new(),
            e2e_ms: Vec::new(),
            itl: Histogram::new_with_bounds(1, ITL_MAX_NS, ITL_SIGFIGS).expect("valid histogram bounds"),
            itl_sum_ns: 0,
            itl_run_value: 0,
            itl_run_count: 0,
            requests: 0,
            finished: 0,
            float_seen: [false; 4],
            line: String::new(),
            rejected: 0,
            rejected_reasons: Default::default(),
            unfinished: 0,
            cancelled: 0,
            failed: 0,
            failed_reasons: Default::default(),
            error: None,
            by_instance: Vec::new(),
            instance_pools: Vec::new(),
            pool_names: Vec::new(),
            judged: 0,
            good: 0,
            good_output_tokens: 0,
            output_tokens: 0,
            preempted_requests: 0,
            prompt_tokens: 0,
            cached_tokens: 0,
            csv: None,
            csv_error: None,
            decisions: None,
            latency_rows: None,
        }
    }

    /// A recorder for `spec`: its SLO, instance names and request classes.
    pub fn for_spec(spec: &simctl_engine::spec::ScenarioSpec) -> Self {
        let names = spec.pools.iter().flat_map(|p| p.instances.iter().map(|i| i.name.clone())).collect();
        let classes = spec.workload.classes.iter().map(|c| (c.name.clone(), c.slo.unwrap_or(spec.slo))).collect();
        let mut rec = RunRecorder::new(spec.slo, names).with_classes(classes);
        rec.instance_pools = spec.pools.iter().enumerate().flat_map(|(k, p)| std::iter::repeat_n(k, p.instances.len())).collect();
        rec.pool_names = spec.pools.iter().map(|p| p.name.clone()).collect();
        rec
    }

    /// Keeps per-class metrics for these classes (name and SLO, in class order).
    pub fn with_classes(mut self, classes: Vec<(String, SloSpec)>) -> Self {
        self.classes =
            classes.into_iter().map(|(name, slo)| ClassAcc { csv_name: csv_text(&name), name, slo, ..Default::default() }).collect();
        self
    }

    /// Streams one CSV row per request to `w` (after writing the header).
    pub fn with_csv(mut self, mut w: Box<dyn Write>) -> io::Result<Self> {
        write_requests_csv_header(&mut *w)?;
        self.csv = Some(w);
        Ok(self)
    }

    /// Writes one row per routing decision to `w` (after the header): the candidates'
    /// scores as `instance=score` pairs separated by `;`.
    pub fn with_decisions(mut self, mut w: Box<dyn Write>) -> io::Result<Self> {
        writeln!(w, "{DECISION_COLUMNS}")?;
        self.decisions = Some(w);
        Ok(self)
    }

    /// Writes one `latency.jsonl` row (the scorecard's layout) per finished request to `w`:
    /// TTFT, decode time (first to last token), output tokens, and `warm` when part of the
    /// prompt came from a prefix cache, else `cold`.
    pub fn with_latency_rows(mut self, w: Box<dyn Write>) -> Self {
        self.latency_rows = Some(w);
        self
    }

    /// Flushes the CSV files and reports the first write error, if any.
    pub fn finish_csv(&mut self) -> io::Result<()> {
        if let Some(e) = self.csv_error.take() {
            return Err(e);
        }
        for w in [self.csv.as_mut(), self.decisions.as_mut(), self.latency_rows.as_mut()].into_iter().flatten() {
            w.flush()?;
        }
        Ok(())
    }

    /// The pooled ITL histogram, bucket by bucket: `(highest value of the bucket in ns, count)`
    /// for every non-empty bucket, in value order (what its percentiles are read from).
    pub fn itl_buckets(&mut self) -> Vec<(u64, u64)> {
        self.flush_itl();
        self.itl.iter_recorded().map(|v| (self.itl.highest_equivalent(v.value_iterated_to()), v.count_at_value())).collect()
    }

    /// Moves the pending run of equal gaps into the histogram.
    pub(crate) fn flush_itl(&mut self) {
        if self.itl_run_count > 0 {
            let _ = self.itl.record_n(self.itl_run_value, self.itl_run_count);
            self.itl_run_count = 0;
        }
    }

    /// Float columns of requests.csv that no row gave a value (all-rejected runs): written
    /// empty, they would read back as text; [`crate::frame::fill_empty_columns`] fixes them.
    pub fn empty_float_columns(&self) -> Vec<&'static str> {
        ["ttft_ms", "tpot_ms", "e2e_ms", "max_itl_ms"].into_iter().zip(self.float_seen).filter(|(_, seen)| !seen).map(|(c, _)| c).collect()
    }

    /// Requests recorded so far (finished, rejected, cut off or cancelled).
    pub fn recorded(&self) -> u64 {
        self.requests
    }

    /// The SLO a request is judged by: its class's, else the scenario's.
    fn slo_of(&self, r: &RequestRecord) -> &SloSpec {
        self.classes.get(usize::from(r.class)).map_or(&self.slo, |c| &c.slo)
    }

    /// Whether any request can be judged: the scenario or one of its classes gives an SLO
    /// bound. Without one a run has no SLO attainment and no goodput (`null`, not 100%).
    pub fn has_slo(&self) -> bool {
        !self.slo.is_empty() || self.classes.iter().any(|c| !c.slo.is_empty())
    }

    /// Whether a request meets every SLO bound of its class; `None` when it has none.
    pub fn is_good(&self, r: &RequestRecord) -> Option<bool> {
        let slo = self.slo_of(r);
        if slo.is_empty() {
            return None;
        }
        if r.outcome != Outcome::Finished {
            return Some(false);
        }
        // `vacuous`: whether a request without the metric (a one-token output has no TPOT
        // and no gap) meets its bound. `vllm bench serve` counts its TPOT as 0, so it meets a
        // TPOT bound; aiperf has no `inter_token_latency` for it, so it fails an ITL bound.
        let within = |got: Option<SimDuration>, limit: Option<SimDuration>, vacuous: bool| match (got, limit) {
            (_, None) => true,
            (None, Some(_)) => vacuous,
            (Some(g), Some(l)) => g <= l,
        };
        Some(
            within(r.ttft(), slo.ttft, false)
                && within(r.tpot(), slo.tpot, true)
                && within(r.e2e(), slo.e2e, false)
                && within(r.mean_itl(), slo.itl, false)
                && within(r.largest_itl(), slo.max_itl, true),
        )
    }

    fn name(&self, i: Option<simctl_engine::router::InstanceId>) -> &str {
        i.and_then(|i| self.instance_names.get(i.index())).map_or("", String::as_str)
    }

    fn write_row(&mut self, r: &RequestRecord, good: Option<bool>) -> io::Result<()> {
        use std::fmt::Write as _;
        // Floats always read back as floats (`0.0`); a missing value is an empty field.
        let itl = r.largest_itl();
        for (seen, v) in self.float_seen.iter_mut().zip([r.ttft(), r.tpot(), r.e2e(), itl]) {
            *seen |= v.is_some();
        }
        // One line buffer for the whole run: no allocation per request.
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let _ = write!(line, "{},", r.id.0);
        push_float(&mut line, r.arrival.as_secs_f64());
        let _ = write!(
            line,
            ",{},{},{},{},{},{},",
            r.prompt_tokens.get(),
            r.output_tokens.get(),
            r.generated_tokens.get(),
            r.priority,
            self.name(r.prefill_instance),
            self.name(r.decode_instance),
        );
        if let Some(c) = self.classes.get(usize::from(r.class)) {
            line.push_str(&c.csv_name);
        }
        let _ = write!(line, ",{}", r.cached_tokens.get());
        for d in [r.ttft(), r.tpot(), r.e2e(), itl] {
            line.push(',');
            if let Some(d) = d {
                push_float(&mut line, d.as_millis_f64());
            }
        }
        let _ = write!(
            line,
            ",{},{},{},{},{},",
            r.preemptions,
            r.migrations,
            good.map_or("", |g| if g { "1" } else { "0" }),
            r.outcome.as_str(),
            r.reason.map_or("", |x| x.as_str())
        );
        if let Some(e) = &self.error {
            line.push_str(&csv_text(e));
        }
        line.push('\n');
        let out = match self.csv.as_mut() {
            Some(w) => w.write_all(line.as_bytes()),
            None => Ok(()),
        };
        self.line = line;
        out
    }

    fn write_latency_row(&mut self, r: &RequestRecord) -> io::Result<()> {
        let (Some(w), Outcome::Finished, Some(ttft), Some(e2e)) = (self.latency_rows.as_mut(), r.outcome, r.ttft(), r.e2e()) else {
            return Ok(());
        };
        let row = crate::scorecard::LatencyRow {
            request_id: Some(r.id.0.to_string()),
            ttft_ms: ttft.as_millis_f64(),
            decode_ms: SimDuration(e2e.as_nanos().saturating_sub(ttft.as_nanos())).as_millis_f64(),
            prompt_tokens: Some(r.prompt_tokens.get()),
            output_tokens: r.generated_tokens.get(),
            case: if r.cached_tokens.get() > 0 { "warm" } else { "cold" }.into(),
        };
        serde_json::to_writer(&mut *w, &row).map_err(io::Error::other)?;
        w.write_all(b"\n")
    }
}

/// Appends `x` as [`float_text`] writes it, without allocating.
fn push_float(out: &mut String, x: f64) {
    use std::fmt::Write as _;
    if x.is_finite() {
        let _ = write!(out, "{x:?}");
    }
}

impl Recorder for RunRecorder {
    fn wants_decisions(&self) -> bool {
        self.decisions.is_some()
    }

    fn on_decision(&mut self, d: &simctl_engine::record::Decision<'_>) {
        if self.csv_error.is_some() {
            return;
        }
        let mut scores = String::new();
        for (k, (i, s)) in d.scores.iter().enumerate() {
            if k > 0 {
                scores.push(';');
            }
            scores.push_str(&format!("{}={}", self.name(Some(*i)), s));
        }
        let line = format!(
            "{},{},{},{},{},{}\n",
            float_text(d.at.as_secs_f64()),
            d.request.0,
            d.kind.as_str(),
            d.policy,
            self.name(Some(d.chosen)),
            scores
        );
        if let Some(w) = self.decisions.as_mut()
            && let Err(e) = w.write_all(line.as_bytes())
        {
            self.csv_error = Some(e);
        }
    }

    fn on_request(&mut self, r: &RequestRecord) {
        self.requests += 1;
        let good = self.is_good(r);
        match r.outcome {
            Outcome::Finished => self.finished += 1,
            Outcome::Rejected => {
                self.rejected += 1;
                let why = r.reason.map_or("unknown", |x| x.as_str());
                *self.rejected_reasons.entry(why.to_string()).or_default() += 1;
            }
            Outcome::Unfinished => self.unfinished += 1,
            Outcome::Cancelled => self.cancelled += 1,
            Outcome::Failed => {
                self.failed += 1;
                let why = r.reason.map_or("unknown", |x| x.as_str());
                *self.failed_reasons.entry(why.to_string()).or_default() += 1;
            }
        }
        let n = self.instance_names.len();
        if self.by_instance.len() < n {
            self.by_instance.resize(n, InstanceLatency::default());
        }
        if let (Some(t), Some(i)) = (r.ttft(), r.prefill_instance)
            && let Some(acc) = self.by_instance.get_mut(i.index())
        {
            acc.ttft_ms.push(t.as_millis_f64() as f32);
        }
        if let (Outcome::Finished, Some(t), Some(i)) = (r.outcome, r.tpot(), r.decode_instance)
            && let Some(acc) = self.by_instance.get_mut(i.index())
        {
            acc.tpot_ms.push(t.as_millis_f64() as f32);
        }
        if let Some(t) = r.ttft() {
            self.ttft_ms.push(t.as_millis_f64());
        }
        if r.outcome == Outcome::Finished {
            self.output_tokens += u64::from(r.generated_tokens);
            if let Some(t) = r.tpot() {
                self.tpot_ms.push(t.as_millis_f64());
            }
            if let Some(t) = r.e2e() {
                self.e2e_ms.push(t.as_millis_f64());
            }
        }
        if r.first_token.is_some() {
            self.prompt_tokens += u64::from(r.prompt_tokens);
            self.cached_tokens += u64::from(r.cached_tokens);
        }
        if r.preemptions > 0 {
            self.preempted_requests += 1;
        }
        if good.is_some() {
            self.judged += 1;
        }
        if good == Some(true) {
            self.good += 1;
            self.good_output_tokens += u64::from(r.generated_tokens);
        }
        if let Some(c) = self.classes.get_mut(usize::from(r.class)) {
            c.requests += 1;
            if let Some(t) = r.ttft() {
                c.ttft_ms.push(t.as_millis_f64());
            }
            if r.outcome == Outcome::Finished {
                c.finished += 1;
                if let Some(t) = r.tpot() {
                    c.tpot_ms.push(t.as_millis_f64());
                }
                if let Some(t) = r.e2e() {
                    c.e2e_ms.push(t.as_millis_f64());
                }
            }
            if good.is_some() {
                c.judged += 1;
            }
            if good == Some(true) {
                c.good += 1;
                c.good_output_tokens += u64::from(r.generated_tokens);
            }
        }
        if self.csv.is_some()
            && self.csv_error.is_none()
            && let Err(e) = self.write_row(r, good)
        {
            self.csv_error = Some(e);
        }
        if self.csv_error.is_none()
            && let Err(e) = self.write_latency_row(r)
        {
            self.csv_error = Some(e);
        }
    }

    fn on_request_error(&mut self, r: &RequestRecord, error: &str) {
        self.error = Some(error.to_string());
        self.on_request(r);
        self.error = None;
    }

    fn on_token_gaps(&mut self, gap: SimDuration, count: u64) {
        if count == 0 {
            return;
        }
        let ns = gap.as_nanos().max(1);
        self.itl_sum_ns += u128::from(gap.as_nanos()) * u128::from(count);
        if ns == self.itl_run_value {
            self.itl_run_count += count;
        } else {
            self.flush_itl();
            self.itl_run_value = ns;
            self.itl_run_count = count;
        }
    }

    fn on_token_gap(&mut self, gap: SimDuration) {
        let ns = gap.as_nanos().max(1);
        self.itl_sum_ns += u128::from(gap.as_nanos());
        if ns == self.itl_run_value {
            self.itl_run_count += 1;
        } else {
            self.flush_itl();
            self.itl_run_value = ns;
            self.itl_run_count = 1;
        }
    }
}
