//! The lab's run folder: file names, row types, reading and writing.
//!
//! ```text
//! quality.jsonl      task, prediction, expected, correct          one row per question
//! latency.jsonl      ttft_ms, decode_ms, output_tokens, case      one row per request
//! moe_router.jsonl   entropy, margin, drops, total_tokens?        one row per window
//! moe_traffic.jsonl  expert_hist, imbalance_cv?                   one row per window
//! tps_goodput.json   throughput_tps, goodput, slo_hit_rate, drop_rate   (optional)
//! sys_meta.json      SLOs (ttft_slo_ms, latency_slo_ms) and run settings
//! scorecard.json     the scorecard
//! ```
//!
//! Rows keep the lab's field names; fields the lab writes that simctl does not use (`prompt`,
//! `source`, `request_id`, `step`, `window`) are accepted.

use std::io::Write;
use std::path::{Path, PathBuf};

/// `quality.jsonl`.
pub const QUALITY: &str = "quality.jsonl";
/// `latency.jsonl`.
pub const LATENCY: &str = "latency.jsonl";
/// `moe_router.jsonl`.
pub const MOE_ROUTER: &str = "moe_router.jsonl";
/// `moe_traffic.jsonl`.
pub const MOE_TRAFFIC: &str = "moe_traffic.jsonl";
/// `tps_goodput.json`.
pub const TPS_GOODPUT: &str = "tps_goodput.json";
/// `sys_meta.json`.
pub const SYS_META: &str = "sys_meta.json";
/// `scorecard.json`.
pub const SCORECARD: &str = "scorecard.json";

/// One answered question.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QualityRow {
    /// Task set (`mmlu-mini`, ...).
    #[serde(default = "unknown_task")]
    pub task: String,
    /// The prompt sent (the lab writes it; optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The answer given.
    #[serde(default)]
    pub prediction: String,
    /// The answer expected.
    #[serde(default)]
    pub expected: String,
    /// Whether the answer counts as correct.
    pub correct: bool,
}

fn unknown_task() -> String {
    "unknown".into()
}

/// One timed request.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyRow {
    /// Request name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Time to first token, ms.
    pub ttft_ms: f64,
    /// First token to last token, ms.
    pub decode_ms: f64,
    /// Prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    /// Output tokens.
    pub output_tokens: u32,
    /// `warm` (cached prefix) or `cold`.
    pub case: String,
}

/// One window of MoE router statistics.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RouterRow {
    /// Router entropy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
    /// Gate margin (top-1 minus top-2 probability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// Dropped tokens in the window.
    pub drops: f64,
    /// Tokens routed in the window; without it, `drops` is per window (0 or 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<f64>,
}

/// One snapshot of per-expert token counts.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrafficRow {
    /// Tokens per expert.
    pub expert_hist: Vec<f64>,
    /// Coefficient of variation of `expert_hist`, when the writer computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imbalance_cv: Option<f64>,
}

/// `tps_goodput.json`: throughput and goodput in output tokens per second.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TpsGoodput {
    /// Output tokens per second.
    #[serde(default)]
    pub throughput_tps: Option<f64>,
    /// Output tokens per second of requests within both SLOs, times max(0, 1 − 5 × drop rate).
    #[serde(default)]
    pub goodput: Option<f64>,
    /// Requests within both SLOs over all requests.
    #[serde(default)]
    pub slo_hit_rate: Option<f64>,
    /// MoE token-drop rate used to scale goodput (`null`: unknown, goodput not scaled).
    #[serde(default)]
    pub drop_rate: Option<f64>,
}

/// A file of a run folder that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// The folder itself is missing.
    #[error("`{0}` is not a folder")]
    NotAFolder(PathBuf),
    /// A file cannot be read or written.
    #[error("cannot {action} `{path}`: {error}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// A line or file that is not what the layout says.
    #[error("`{path}`{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Bad {
        /// The file.
        path: PathBuf,
        /// 1-based line of a JSONL file.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

/// Everything a run folder holds; `None` for a file that is not there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFolder {
    /// The folder.
    pub dir: PathBuf,
    /// `quality.jsonl`.
    pub quality: Option<Vec<QualityRow>>,
    /// `latency.jsonl`.
    pub latency: Option<Vec<LatencyRow>>,
    /// `moe_router.jsonl`.
    pub moe_router: Option<Vec<RouterRow>>,
    /// `moe_traffic.jsonl`.
    pub moe_traffic: Option<Vec<TrafficRow>>,
    /// `tps_goodput.json`.
    pub tps_goodput: Option<TpsGoodput>,
    /// `sys_meta.json`, as written.
    pub sys_meta: Option<serde_json::Map<String, serde_json::Value>>,
}

fn read_optional(path: &Path) -> Result<Option<String>, FolderError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FolderError::Io { action: "read", path: path.to_path_buf(), error: e }),
    }
}

/// Reads the rows of a JSONL file; blank lines are skipped, any other bad line is an error.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<Vec<T>>, FolderError> {
    let Some(text) = read_optional(path)? else { return Ok(None) };
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(line).map_err(|e| FolderError::Bad {
            path: path.to_path_buf(),
            line: Some(i + 1),
            message: e.to_string(),
        })?;
        rows.push(row);
    }
    Ok(Some(rows))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, FolderError> {
    let Some(text) = read_optional(path)? else { return Ok(None) };
    serde_json::from_str(&text).map(Some).map_err(|e| FolderError::Bad { path: path.to_path_buf(), line: None, message: e.to_string() })
}

/// Writes rows as JSONL.
pub fn write_jsonl<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<(), FolderError> {
    let io = |e| FolderError::Io { action: "write", path: path.to_path_buf(), error: e };
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for r in rows {
        let line =
            serde_json::to_string(r).map_err(|e| FolderError::Bad { path: path.to_path_buf(), line: None, message: e.to_string() })?;
        writeln!(w, "{line}").map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Writes a value as pretty JSON with a final newline.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), FolderError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| FolderError::Bad {
        path: path.to_path_buf(),
        line: None,
        message: e.to_string(),
    })?;
    std::fs::write(path, text + "\n").map_err(|e| FolderError::Io { action: "write", path: path.to_path_buf(), error: e })
}

impl RunFolder {
    /// Reads whatever of the layout `dir` holds.
    pub fn read(dir: &Path) -> Result<RunFolder, FolderError> {
        if !dir.is_dir() {
            return Err(FolderError::NotAFolder(dir.to_path_buf()));
        }
        let sys_meta = read_json::<serde_json::Value>(&dir.join(SYS_META))?
            .map(|v| match v {
                serde_json::Value::Object(m) => Ok(m),
                _ => Err(FolderError::Bad { path: dir.join(SYS_META), line: None, message: "not a JSON object".into() }),
            })
            .transpose()?;
        Ok(RunFolder {
            dir: dir.to_path_buf(),
            quality: read_jsonl(&dir.join(QUALITY))?,
            latency: read_jsonl(&dir.join(LATENCY))?,
            moe_router: read_jsonl(&dir.join(MOE_ROUTER))?,
            moe_traffic: read_jsonl(&dir.join(MOE_TRAFFIC))?,
            tps_goodput: read_json(&dir.join(TPS_GOODPUT))?,
            sys_meta,
        })
    }

    /// The run's name: its folder's name.
    pub fn name(&self) -> String {
        self.dir.file_name().map_or_else(|| self.dir.display().to_string(), |n| n.to_string_lossy().into_owned())
    }

    /// A number from `sys_meta.json`: `Ok(None)` when absent or null, an error when it is
    /// there but not a number.
    pub fn meta_number(&self, key: &str) -> Result<Option<f64>, FolderError> {
        match self.sys_meta.as_ref().and_then(|m| m.get(key)) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| FolderError::Bad {
                path: self.dir.join(SYS_META),
                line: None,
                message: format!("`{key}` is {v}, not a number of milliseconds"),
            }),
        }
    }
}
