//! Prometheus text from an engine's `/metrics`, and the vLLM gauges and counters that live
//! mode and calibration read.

use std::collections::BTreeMap;

/// Requests in the running batch (gauge).
pub const RUNNING: &str = "vllm:num_requests_running";
/// Requests waiting to be scheduled (gauge).
pub const WAITING: &str = "vllm:num_requests_waiting";
/// KV cache in use, as a fraction of 1 despite the name (gauge).
pub const KV_CACHE_USAGE: &str = "vllm:kv_cache_usage_perc";
/// Prompt tokens looked up in the prefix cache (counter).
pub const PREFIX_CACHE_QUERIES: &str = "vllm:prefix_cache_queries_total";
/// Prompt tokens found in the prefix cache (counter).
pub const PREFIX_CACHE_HITS: &str = "vllm:prefix_cache_hits_total";
/// Cache settings as labels (`block_size`, `num_gpu_blocks`, ...), value 1.
pub const CACHE_CONFIG_INFO: &str = "vllm:cache_config_info";

/// A line of `/metrics` that is not Prometheus text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}: `{text}`")]
pub struct MetricsError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// The line.
    pub text: String,
}

/// One sample: a metric name, its labels and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(labels);
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return Err(format!("label `{}` has no quoted value", name.trim()));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(format!("label `{}` has an unterminated value", name.trim())),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => return Err("a label value ends in `\\`".into()),
                },
                Some(c) => value.push(c),
            }
        }
        labels.insert(name.trim().to_string(), value);
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses Prometheus text exposition: comments and blank lines are skipped, any other line
/// must be `name{labels} value [timestamp]`.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, MetricsError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| MetricsError { line: i + 1, message, text: line.to_string() };
        let (name, labels, rest) = match line.find(['{', ' ']) {
            Some(p) if line.as_bytes()[p] == b'{' => {
                let close = line.rfind('}').ok_or_else(|| err("`{` without `}`".into()))?;
                (&line[..p], parse_labels(&line[p + 1..close]).map_err(err)?, &line[close + 1..])
            }
            Some(p) => (&line[..p], BTreeMap::new(), &line[p..]),
            None => return Err(err("no value".into())),
        };
        let value = rest.split_whitespace().next().ok_or_else(|| err("no value".into()))?;
        let value = parse_value(value).ok_or_else(|| err(format!("`{value}` is not a number")))?;
        out.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(out)
}

/// What an engine's `/metrics` says, with the vLLM figures simctl uses picked out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineMetrics {
    /// Every sample, in the order given.
    pub samples: Vec<Sample>,
}

impl EngineMetrics {
    /// Parses `/metrics` text.
    pub fn parse(text: &str) -> Result<Self, MetricsError> {
        Ok(EngineMetrics { samples: parse_prometheus(text)? })
    }

    /// The sum of `name` over its label sets (engines, models); `None` when absent.
    pub fn value(&self, name: &str) -> Option<f64> {
        let mut it = self.samples.iter().filter(|s| s.name == name).peekable();
        it.peek()?;
        Some(it.map(|s| s.value).sum())
    }

    /// Requests running.
    pub fn requests_running(&self) -> Option<f64> {
        self.value(RUNNING)
    }
    /// Requests waiting.
    pub fn requests_waiting(&self) -> Option<f64> {
        self.value(WAITING)
    }
    /// KV cache in use, a fraction (the largest over engines).
    pub fn kv_cache_usage(&self) -> Option<f64> {
        self.samples.iter().filter(|s| s.name == KV_CACHE_USAGE).map(|s| s.value).reduce(f64::max)
    }
    /// Prefix-cache lookups, in prompt tokens, since the engine started.
    pub fn prefix_cache_queries(&self) -> Option<f64> {
        self.value(PREFIX_CACHE_QUERIES)
    }
    /// Prefix-cache hits, in prompt tokens, since the engine started.
    pub fn prefix_cache_hits(&self) -> Option<f64> {
        self.value(PREFIX_CACHE_HITS)
    }
    /// The labels of `vllm:cache_config_info` (first engine), empty when absent.
    pub fn cache_config(&self) -> BTreeMap<String, String> {
        self.samples.iter().find(|s| s.name == CACHE_CONFIG_INFO).map(|s| s.labels.clone()).unwrap_or_default()
    }
    /// KV block size in tokens.
    pub fn block_size(&self) -> Option<u32> {
        self.cache_config().get("block_size")?.parse().ok()
    }
    /// KV blocks of the engine.
    pub fn num_gpu_blocks(&self) -> Option<u64> {
        self.cache_config().get("num_gpu_blocks")?.parse().ok()
    }
    /// Prefix-cache hit rate between `earlier` and this scrape; `None` without lookups
    /// (the counters only grow, and the cache has no reset, so rates come from differences).
    pub fn prefix_hit_rate_since(&self, earlier: &EngineMetrics) -> Option<f64> {
        let q = self.prefix_cache_queries()? - earlier.prefix_cache_queries()?;
        let h = self.prefix_cache_hits()? - earlier.prefix_cache_hits()?;
        (q > 0.0).then(|| h / q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny-llama"} 2.0
vllm:num_requests_waiting{engine="0",model_name="tiny-llama"} 1.0
vllm:kv_cache_usage_perc{engine="0",model_name="tiny-llama"} 0.125
vllm:prefix_cache_queries_total{engine="0",model_name="tiny-llama"} 1024.0
vllm:prefix_cache_queries_created{engine="0",model_name="tiny-llama"} 1.7e9
vllm:prefix_cache_hits_total{engine="0",model_name="tiny-llama"} 384.0
vllm:cache_config_info{block_size="128",cache_dtype="auto",enable_prefix_caching="True",engine="0",num_gpu_blocks="1820"} 1.0
http_requests_total{handler="/v1/completions",method="POST",status="2xx"} 7 1700000000000
process_start_time_seconds 1.7e9
weird{msg="a \"quoted\" \\ value, with comma"} NaN
"#;

    #[test]
    fn reads_the_vllm_figures() {
        let m = EngineMetrics::parse(VLLM).unwrap();
        assert_eq!(m.requests_running(), Some(2.0));
        assert_eq!(m.requests_waiting(), Some(1.0));
        assert_eq!(m.kv_cache_usage(), Some(0.125));
        assert_eq!((m.prefix_cache_queries(), m.prefix_cache_hits()), (Some(1024.0), Some(384.0)));
        assert_eq!((m.block_size(), m.num_gpu_blocks()), (Some(128), Some(1820)));
        assert_eq!(m.value("http_requests_total"), Some(7.0));
        assert_eq!(m.value("process_start_time_seconds"), Some(1.7e9));
        let w = m.samples.iter().find(|s| s.name == "weird").unwrap();
        assert_eq!(w.labels["msg"], r#"a "quoted" \ value, with comma"#);
        assert!(w.value.is_nan());
        assert_eq!(m.value("vllm:nope"), None);
    }

    #[test]
    fn hit_rate_comes_from_counter_differences() {
        let a = EngineMetrics::parse("vllm:prefix_cache_queries_total 100\nvllm:prefix_cache_hits_total 10\n").unwrap();
        let b = EngineMetrics::parse("vllm:prefix_cache_queries_total 300\nvllm:prefix_cache_hits_total 110\n").unwrap();
        assert_eq!(b.prefix_hit_rate_since(&a), Some(0.5));
        assert_eq!(a.prefix_hit_rate_since(&a), None);
        assert_eq!(b.prefix_hit_rate_since(&EngineMetrics::default()), None);
    }

    #[test]
    fn bad_lines_are_located() {
        let e = EngineMetrics::parse("# ok\nfoo{a=\"1\"} 1\nbar{a=1} 2\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().contains("no quoted value"), "{e}");
        assert!(EngineMetrics::parse("foo abc").unwrap_err().to_string().contains("`abc` is not a number"));
        assert!(EngineMetrics::parse("foo").unwrap_err().to_string().contains("no value"));
    }
}
