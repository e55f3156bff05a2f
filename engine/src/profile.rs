//! Calibration profiles: what `simctl calibrate` writes and scenarios reference by path
//! (`hardware h100 { profile = "profiles/h100_llama8b.yaml" }`).
//!
//! A profile pins the identity of what was measured (hardware, model, engine and its
//! settings), the KV capacity the engine reported, the fitted step cost coefficients with
//! their fit quality, and the raw samples, so a fit can be audited and redone.

use serde::{Deserialize, Serialize};

/// Current profile format version.
pub const PROFILE_FORMAT: u32 = 1;

/// A calibration profile (YAML on disk).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Format version ([`PROFILE_FORMAT`]).
    pub format: u32,
    /// What was measured on.
    pub hardware: ProfileHardware,
    /// The model served.
    pub model: ProfileModel,
    /// The engine and its scheduler settings during the measurement.
    pub engine: ProfileEngine,
    /// KV cache size the engine reported, in blocks of `engine.block_size` tokens
    /// (vLLM: `num_gpu_blocks` of `vllm:cache_config_info`).
    pub kv_capacity_blocks: u64,
    /// The fitted step cost model.
    pub coefficients: ProfileCoefficients,
    /// How well the model fits the samples.
    pub fit: ProfileFit,
    /// The measured steps the fit used.
    #[serde(default)]
    pub samples: Vec<ProfileSample>,
}

/// Hardware identity, as NVML reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileHardware {
    /// Device name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// GPUs the engine spanned (tensor parallelism).
    pub gpus: u32,
    /// Memory per GPU in bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
}

/// Model identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileModel {
    /// Model name as served, e.g. `meta-llama/Llama-3.1-8B-Instruct`.
    pub name: String,
    /// Weight dtype, e.g. `bfloat16`.
    #[serde(default)]
    pub dtype: Option<String>,
}

/// Engine identity and settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileEngine {
    /// Engine name, e.g. `vllm`.
    pub name: String,
    /// Engine version.
    #[serde(default)]
    pub version: Option<String>,
    /// Tokens per KV block.
    pub block_size: u32,
    /// `--max-num-batched-tokens`.
    pub max_batch_tokens: u32,
    /// `--max-num-seqs`.
    pub max_seqs: u32,
    /// `--gpu-memory-utilization`.
    pub gpu_memory_utilization: f64,
}

/// Coefficients of `t = c0 + c1·p + c2·p² + c3·p·ctx + c4·d + c5·dctx` in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileCoefficients {
    /// Fixed seconds per step.
    pub c0_step_s: f64,
    /// Seconds per prefill token.
    pub c1_prefill_token_s: f64,
    /// Seconds per squared prefill token (attention within the chunk).
    pub c2_prefill_token_sq_s: f64,
    /// Seconds per prefill token × cached context token.
    pub c3_prefill_context_s: f64,
    /// Seconds per decoding sequence.
    pub c4_decode_seq_s: f64,
    /// Seconds per context token of decoding sequences.
    pub c5_decode_context_s: f64,
}

impl ProfileCoefficients {
    /// As the array the `fitted` cost model takes.
    pub fn as_array(&self) -> [f64; 6] {
        [
            self.c0_step_s,
            self.c1_prefill_token_s,
            self.c2_prefill_token_sq_s,
            self.c3_prefill_context_s,
            self.c4_decode_seq_s,
            self.c5_decode_context_s,
        ]
    }
    /// From that array.
    pub fn from_array(c: [f64; 6]) -> Self {
        ProfileCoefficients {
            c0_step_s: c[0],
            c1_prefill_token_s: c[1],
            c2_prefill_token_sq_s: c[2],
            c3_prefill_context_s: c[3],
            c4_decode_seq_s: c[4],
            c5_decode_context_s: c[5],
        }
    }
}

/// Fit quality.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFit {
    /// Coefficient of determination.
    pub r2: f64,
    /// Root mean square error in seconds.
    pub rmse_s: f64,
    /// Samples used.
    pub samples: u64,
}

/// One measured step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSample {
    /// New prefill tokens.
    pub prefill_tokens: u32,
    /// Cached context those prefill tokens attended to.
    pub prefill_context_tokens: u64,
    /// Sequences decoding.
    pub decode_seqs: u32,
    /// Σ context of the decoding sequences.
    pub decode_context_tokens: u64,
    /// Measured seconds.
    pub seconds: f64,
}
