//! Calibration profiles: what `simctl calibrate` writes and scenarios reference by path
//! (`hardware h100 { profile = "profiles/h100_llama8b.yaml" }`). The format is described
//! in docs/profile.md.
//!
//! A profile pins the identity of what was measured (hardware, model, engine and its
//! settings), the KV capacity the engine reported, the fitted step cost model with its fit
//! quality per probe class, and the raw samples, so a fit can be audited and redone.

use serde::{Deserialize, Serialize};

use crate::cost::{CacheKnee, FITTED_TERMS, FittedCost};
use crate::spec::EngineSpec;
use crate::time::SimDuration;

/// Current profile format version. Format 1 (before `simctl calibrate` existed) had no
/// frontend latency and step-level samples; it is not read.
pub const PROFILE_FORMAT: u32 = 2;

/// A calibration profile (YAML on disk).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Format version ([`PROFILE_FORMAT`]).
    pub format: u32,
    /// When it was measured (RFC 3339, UTC), and by what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
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
    /// The measurements the fit used (and those it held out for the self-check).
    #[serde(default)]
    pub samples: Vec<ProfileSample>,
    /// The machine's state while it was measured (what `simctl calibrate --check` and
    /// `simctl validate` compare against).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<ProfileConditions>,
}

/// The machine's state during a calibration: a profile measured on a busy machine prices
/// steps with the time other processes took.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConditions {
    /// Load average (1, 5, 15 minutes, `/proc/loadavg`) before the first request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_average_before: Option<[f64; 3]>,
    /// ... and when they ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_average_after: Option<[f64; 3]>,
    /// Logical CPUs online.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_online: Option<u32>,
    /// CPUs busy (`/proc/stat`) before the first request, the engine idle (the least of five
    /// half-second readings): what
    /// else the machine was doing then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_cpus_before: Option<f64>,
}

impl ProfileConditions {
    /// The machine's background load while it was measured: the 1-minute load average when
    /// the probes started, with the engine idle (or at the end, when that is all there is).
    /// Not the mean over the probes: those keep the engine busy and raise the average by
    /// the engine's own work, which a later comparison on an idle engine would read as a
    /// busier machine.
    pub fn load(&self) -> Option<f64> {
        self.load_average_before.or(self.load_average_after).map(|l| l[0])
    }
}

impl Profile {
    /// The fitted cost model.
    pub fn cost(&self) -> FittedCost {
        self.coefficients.cost()
    }

    /// The engine settings, as the simulator's scheduler takes them.
    pub fn engine_spec(&self) -> EngineSpec {
        let e = &self.engine;
        EngineSpec {
            max_batch_tokens: e.max_batch_tokens,
            max_seqs: e.max_seqs,
            chunked_prefill: e.chunked_prefill,
            block_size: e.block_size,
            gpu_memory_utilization: e.gpu_memory_utilization,
            prefix_caching: e.prefix_caching,
            // The engine the profile was measured on batches as it does (vLLM's rule, the
            // default, unless it was SGLang).
            scheduler: if e.name.eq_ignore_ascii_case("sglang") { crate::spec::Scheduler::Sglang } else { crate::spec::Scheduler::Auto },
        }
    }
}

/// A field of a profile outside what the simulator can use.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{field} = {value}: {allowed}")]
pub struct ProfileProblem {
    /// Dotted path of the field (`coefficients.c4_decode_seq_s`, `samples[3].seconds`).
    pub field: String,
    /// The value found.
    pub value: String,
    /// What the field may hold.
    pub allowed: &'static str,
}

/// Seconds a step coefficient may cost at most per unit of its term: anything above is a
/// typo (a step of one token would take longer than a minute).
const MAX_STEP_S: f64 = 60.0;

impl Profile {
    /// Every field the simulator would use wrongly: coefficients and numbers that are not
    /// finite, negative, or outside a physical range. Empty when the profile can be used.
    pub fn problems(&self) -> Vec<ProfileProblem> {
        let mut out = Vec::new();
        let mut seconds = |field: String, x: f64| {
            if !(x.is_finite() && (0.0..=MAX_STEP_S).contains(&x)) {
                out.push(ProfileProblem { field, value: shown(x), allowed: "must be a finite number of seconds from 0 to 60" });
            }
        };
        let c = &self.coefficients;
        for (name, x) in [
            ("c0_step_s", c.c0_step_s),
            ("c1_prefill_token_s", c.c1_prefill_token_s),
            ("c2_prefill_token_sq_s", c.c2_prefill_token_sq_s),
            ("c3_prefill_context_s", c.c3_prefill_context_s),
            ("c4_decode_seq_s", c.c4_decode_seq_s),
            ("c5_decode_context_s", c.c5_decode_context_s),
            ("frontend_s", c.frontend_s),
        ] {
            seconds(format!("coefficients.{name}"), x);
        }
        if let Some(x) = c.c6_decode_cached_context_s {
            seconds("coefficients.c6_decode_cached_context_s".into(), x);
        }
        if let Some(x) = c.c7_decode_context_beyond_cache_s {
            seconds("coefficients.c7_decode_context_beyond_cache_s".into(), x);
        }
        for (k, s) in self.samples.iter().enumerate() {
            seconds(format!("samples[{k}].seconds"), s.seconds);
        }
        match (c.c7_decode_context_beyond_cache_s, c.decode_cache_tokens) {
            (Some(_), None) => out.push(ProfileProblem {
                field: "coefficients.c7_decode_context_beyond_cache_s".into(),
                value: shown(c.c7_decode_context_beyond_cache_s.unwrap_or_default()),
                allowed: "needs coefficients.decode_cache_tokens (where it starts)",
            }),
            (None, Some(t)) => out.push(ProfileProblem {
                field: "coefficients.decode_cache_tokens".into(),
                value: t.to_string(),
                allowed: "needs coefficients.c7_decode_context_beyond_cache_s (what it costs)",
            }),
            (Some(_), Some(0)) => out.push(ProfileProblem {
                field: "coefficients.decode_cache_tokens".into(),
                value: "0".into(),
                allowed: "must be at least 1",
            }),
            _ => {}
        }
        let mut at_least_one = |field: &str, x: u64| {
            if x == 0 {
                out.push(ProfileProblem { field: field.into(), value: "0".into(), allowed: "must be at least 1" });
            }
        };
        at_least_one("kv_capacity_blocks", self.kv_capacity_blocks);
        at_least_one("hardware.gpus", self.hardware.gpus.into());
        at_least_one("engine.block_size", self.engine.block_size.into());
        at_least_one("engine.max_batch_tokens", self.engine.max_batch_tokens.into());
        at_least_one("engine.max_seqs", self.engine.max_seqs.into());
        let u = self.engine.gpu_memory_utilization;
        if !(u > 0.0 && u <= 1.0) {
            out.push(ProfileProblem {
                field: "engine.gpu_memory_utilization".into(),
                value: format!("{u}"),
                allowed: "must be a share in (0, 1]",
            });
        }
        let f = &self.fit;
        if !f.r2.is_finite() || f.r2 > 1.0 {
            out.push(ProfileProblem {
                field: "fit.r2".into(),
                value: format!("{}", f.r2),
                allowed: "must be a finite number of at most 1",
            });
        }
        if !(f.rmse_s.is_finite() && f.rmse_s >= 0.0) {
            out.push(ProfileProblem {
                field: "fit.rmse_s".into(),
                value: format!("{}", f.rmse_s),
                allowed: "must be a finite number >= 0",
            });
        }
        if let Some(c) = &self.conditions {
            for (name, l) in [("before", c.load_average_before), ("after", c.load_average_after)] {
                for (k, x) in l.into_iter().flatten().enumerate() {
                    if !(x.is_finite() && x >= 0.0) {
                        out.push(ProfileProblem {
                            field: format!("conditions.load_average_{name}[{k}]"),
                            value: shown(x),
                            allowed: "must be a finite load average >= 0",
                        });
                    }
                }
            }
            if let Some(x) = c.busy_cpus_before
                && !(x.is_finite() && x >= 0.0)
            {
                out.push(ProfileProblem {
                    field: "conditions.busy_cpus_before".into(),
                    value: shown(x),
                    allowed: "must be a finite number of CPUs >= 0",
                });
            }
        }
        out
    }

    /// Checks a profile parsed from `text`: its format version and every field
    /// ([`Profile::problems`]); the error names the line of each field where it can be found.
    pub fn checked(self, text: &str) -> Result<Profile, String> {
        let p = self;
        if p.format != PROFILE_FORMAT {
            return Err(format!(
                "it has format {}, this simctl reads format {PROFILE_FORMAT}; measure it again with `simctl calibrate` (the format is described in docs/profile.md)",
                p.format
            ));
        }
        let problems = p.problems();
        if problems.is_empty() {
            return Ok(p);
        }
        Err(problems
            .iter()
            .map(|q| match field_line(text, &q.field) {
                Some(line) => format!("line {line}: {q}"),
                None => q.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// The 1-based line where the last key of `field` (`coefficients.c4_decode_seq_s`) is set
/// in a YAML text: each key is looked for inside the block of its parent (deeper indented
/// lines after it); `samples[3].seconds` looks in the fourth item of the list `samples`.
fn field_line(text: &str, field: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
    // The block being searched: lines from..to, deeper than `depth` (None: top level).
    let (mut from, mut to, mut depth): (usize, usize, Option<usize>) = (0, lines.len(), None);
    for part in field.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let is_key = |l: &str| {
            let t = l.trim_start().trim_start_matches("- ");
            t.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':'))
        };
        let level = |l: &str| match depth {
            None => indent(l) == 0,
            Some(d) => indent(l) > d,
        };
        let at = from + lines[from..to].iter().position(|l| is_key(l) && level(l))?;
        let own = indent(lines[at]);
        // The key's block: the deeper lines that follow it.
        let end = at
            + 1
            + lines[at + 1..to]
                .iter()
                .position(|l| !l.trim().is_empty() && indent(l) <= own && !l.trim_start().starts_with("- "))
                .unwrap_or(to - at - 1);
        (from, to, depth) = (at, end, Some(own));
        if let Some(i) = index {
            let items: Vec<usize> =
                (at + 1..end).filter(|&n| lines[n].trim_start().starts_with("- ") && indent_of_dash(lines[n]) <= own + 2).collect();
            let start = *items.get(i)?;
            let stop = items.get(i + 1).copied().unwrap_or(end);
            (from, to, depth) = (start, stop, Some(indent_of_dash(lines[start])));
            // The item's first key sits on its `- ` line, at the dash's depth.
            depth = depth.map(|d| d.saturating_sub(1));
        }
    }
    Some(from + 1)
}

/// A number as a user wrote it: `1e308` rather than 309 digits.
fn shown(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-4..1e6).contains(&x.abs()) { format!("{x:e}") } else { format!("{x}") }
}

/// Spaces before a list item's dash.
fn indent_of_dash(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

/// Hardware identity: NVML's view of the GPUs, or the CPU when there are none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileHardware {
    /// Device name, e.g. `NVIDIA H100 80GB HBM3`, or `cpu: MODEL` without GPUs.
    pub name: String,
    /// GPUs the engine spanned (its tensor-parallel degree; 1 for a CPU engine).
    pub gpus: u32,
    /// Memory per GPU in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// NVIDIA driver version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// CUDA version the driver supports, e.g. `12.4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_version: Option<String>,
    /// Each GPU used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<ProfileGpu>,
    /// The host CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<ProfileCpu>,
    /// Why there is no GPU identity, when there is none (`NVML: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One GPU, as NVML reports it; fields NVML could not read are absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileGpu {
    /// NVML index.
    pub index: u32,
    /// Device name.
    pub name: String,
    /// UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// PCI bus id, e.g. `00000000:18:00.0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// Total memory in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Largest SM clock, MHz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sm_clock_mhz: Option<u32>,
    /// Largest memory clock, MHz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory_clock_mhz: Option<u32>,
    /// Enforced power limit, watts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_limit_w: Option<f64>,
    /// PCIe generation of the link (the device's maximum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcie_generation: Option<u32>,
    /// PCIe lanes (the device's maximum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcie_width: Option<u32>,
    /// NUMA node the GPU is attached to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<u32>,
    /// CPUs close to the GPU, as a list (`0-15,32-47`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_affinity: Option<String>,
    /// PCI bus ids at the far end of the GPU's active NVLinks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nvlink_peers: Vec<String>,
}

/// The host CPU.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileCpu {
    /// Model name (`/proc/cpuinfo`).
    pub model: String,
    /// Logical CPUs online.
    pub cores: u32,
    /// NUMA nodes (`/sys/devices/system/node`).
    pub numa_nodes: u32,
}

/// Model identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileModel {
    /// Model name as served, e.g. `meta-llama/Llama-3.1-8B-Instruct`.
    pub name: String,
    /// Weight dtype, e.g. `bfloat16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Prompt plus output tokens the engine accepts (`/v1/models`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_len: Option<u32>,
}

/// Where a setting of the profile came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingSource {
    /// Read from the engine (`/metrics`, `/v1/models`).
    Reported,
    /// Measured by probes (saturation, a chunk boundary in the fit).
    Measured,
    /// Given on the command line (`simctl calibrate --max-seqs`, the launch command).
    Given,
    /// Not determined: vLLM's default is assumed.
    Assumed,
}

/// Engine identity and settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileEngine {
    /// Engine name, e.g. `vllm`.
    pub name: String,
    /// Engine version (`/version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Tokens per KV block.
    pub block_size: u32,
    /// `--max-num-batched-tokens`: the token budget of one step.
    pub max_batch_tokens: u32,
    /// `--max-num-seqs`: sequences in one step at most.
    pub max_seqs: u32,
    /// `--gpu-memory-utilization`.
    pub gpu_memory_utilization: f64,
    /// Whether long prompts are split across steps at `max_batch_tokens`.
    #[serde(default = "yes")]
    pub chunked_prefill: bool,
    /// Whether the prefix cache is on.
    #[serde(default = "yes")]
    pub prefix_caching: bool,
    /// Where `max_batch_tokens`, `max_seqs` and the KV figures came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<ProfileSources>,
}

fn yes() -> bool {
    true
}

/// Where the engine settings of a profile came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSources {
    /// Of `max_batch_tokens`.
    pub max_batch_tokens: SettingSource,
    /// Of `max_seqs`.
    pub max_seqs: SettingSource,
    /// Of `block_size` and `kv_capacity_blocks`.
    pub kv_cache: SettingSource,
}

/// The fitted model: `t = c0 + c1·p + c2·Σchunk² + c3·Σchunk·ctx + c4·d + c5·dctx` seconds
/// per step ([`FittedCost`]), plus a frontend latency per request.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileCoefficients {
    /// Fixed seconds per step.
    pub c0_step_s: f64,
    /// Seconds per prefill token.
    pub c1_prefill_token_s: f64,
    /// Seconds per squared prefill chunk token (attention within the chunk).
    pub c2_prefill_token_sq_s: f64,
    /// Seconds per prefill token × context token already in KV.
    pub c3_prefill_context_s: f64,
    /// Seconds per decoding sequence.
    pub c4_decode_seq_s: f64,
    /// Seconds per context token of decoding sequences.
    pub c5_decode_context_s: f64,
    /// Seconds a request pays once, on its first token, outside the steps.
    #[serde(default)]
    pub frontend_s: f64,
    /// Seconds per decode context token found in the prefix cache, in place of
    /// `c5_decode_context_s` (measured by the shared-prefix decode probes; absent: as c5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c6_decode_cached_context_s: Option<f64>,
    /// Extra seconds per decode context token past `decode_cache_tokens` in a step: the
    /// decode KV no longer fits the caches and streams from memory (measured by the decode
    /// probes at long contexts; absent: one rate, c5, for every context token). Set with
    /// `decode_cache_tokens` or not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c7_decode_context_beyond_cache_s: Option<f64>,
    /// Decode context tokens per step the caches hold (where c7 starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_cache_tokens: Option<u64>,
}

impl ProfileCoefficients {
    /// The step coefficients as the array [`FittedCost::c`] takes.
    pub fn as_array(&self) -> [f64; FITTED_TERMS] {
        [
            self.c0_step_s,
            self.c1_prefill_token_s,
            self.c2_prefill_token_sq_s,
            self.c3_prefill_context_s,
            self.c4_decode_seq_s,
            self.c5_decode_context_s,
        ]
    }

    /// The cost model.
    pub fn cost(&self) -> FittedCost {
        FittedCost {
            c: self.as_array(),
            frontend: SimDuration::from_secs_f64(self.frontend_s.max(0.0)),
            cached_context: self.c6_decode_cached_context_s.map(|c| c.max(0.0)),
            beyond_cache: match (self.c7_decode_context_beyond_cache_s, self.decode_cache_tokens) {
                (Some(extra_s), Some(tokens)) => Some(CacheKnee { tokens, extra_s: extra_s.max(0.0) }),
                _ => None,
            },
        }
    }

    /// From a cost model.
    pub fn of(cost: &FittedCost) -> Self {
        let c = cost.c;
        ProfileCoefficients {
            c0_step_s: c[0],
            c1_prefill_token_s: c[1],
            c2_prefill_token_sq_s: c[2],
            c3_prefill_context_s: c[3],
            c4_decode_seq_s: c[4],
            c5_decode_context_s: c[5],
            frontend_s: cost.frontend.as_secs_f64(),
            c6_decode_cached_context_s: cost.cached_context,
            c7_decode_context_beyond_cache_s: cost.beyond_cache.map(|k| k.extra_s),
            decode_cache_tokens: cost.beyond_cache.map(|k| k.tokens),
        }
    }
}

/// Fit quality over all samples used, per probe class, and the self-check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFit {
    /// Coefficient of determination over the samples fitted.
    pub r2: f64,
    /// Root mean square error in seconds.
    pub rmse_s: f64,
    /// Samples used.
    pub samples: u64,
    /// Per probe class (`prefill`, `decode`, `mixed`, `prefix`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassFit>,
    /// Held-out probes replayed in the simulator with this profile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub self_check: Vec<SelfCheck>,
}

/// Fit quality of one probe class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassFit {
    /// Probe class.
    pub class: String,
    /// Samples of the class fitted.
    pub samples: u64,
    /// Coefficient of determination within the class (`null` when its values do not vary).
    pub r2: Option<f64>,
    /// Mean absolute percentage error, in percent.
    pub mape_pct: f64,
}

/// One held-out probe replayed in the simulator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfCheck {
    /// Probe class.
    pub class: String,
    /// The probe (`prefill p=1000`, `decode n=8 ctx=512`).
    pub probe: String,
    /// What is compared: `ttft` or `tpot`.
    pub metric: String,
    /// Measured on the engine, seconds (mean over the probe's requests).
    pub measured_s: f64,
    /// Simulated with the profile, seconds.
    pub simulated_s: f64,
    /// (simulated − measured) / measured, percent.
    pub error_pct: f64,
}

/// What a sample's `seconds` measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleMetric {
    /// Time to first token of a request that arrived at an idle engine: the frontend
    /// latency plus every step of its prefill (chunked at `max_batch_tokens`).
    Ttft,
    /// One step: the last step of the sample's prefill (if any) with its decodes.
    Step,
}

/// One measurement, described by what was sent so the steps it spans can be recomputed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSample {
    /// Probe class: `prefill`, `decode`, `mixed` or `prefix`.
    pub class: ProbeClass,
    /// What `seconds` measured.
    pub metric: SampleMetric,
    /// Prompt tokens of the request prefilling (0: none).
    pub prompt_tokens: u32,
    /// Of which served from the prefix cache.
    pub cached_tokens: u32,
    /// Sequences decoding in the measured step(s).
    pub decode_seqs: u32,
    /// Σ context of the decoding sequences.
    pub decode_context_tokens: u64,
    /// Of which in blocks the sequences found in the prefix cache (shared-prefix decode
    /// probes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub decode_cached_tokens: u64,
    /// Measured seconds (the median of the probe's repeats).
    pub seconds: f64,
    /// Held out of the fit for the self-check.
    #[serde(default)]
    pub held_out: bool,
}

impl ProfileSample {
    /// A sample not held out.
    pub fn new(
        class: ProbeClass,
        metric: SampleMetric,
        prompt_tokens: u32,
        cached_tokens: u32,
        decode_seqs: u32,
        decode_context_tokens: u64,
        seconds: f64,
    ) -> Self {
        ProfileSample {
            class,
            metric,
            prompt_tokens,
            cached_tokens,
            decode_seqs,
            decode_context_tokens,
            decode_cached_tokens: 0,
            seconds,
            held_out: false,
        }
    }
}

/// The kinds of probes a calibration runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeClass {
    /// A single request on an idle engine: TTFT against the prompt length.
    Prefill,
    /// N concurrent streams: step time against batch size and context.
    Decode,
    /// A prefill arriving while N streams decode: the step that carries both.
    Mixed,
    /// A prompt whose prefix an earlier one left in the cache: the price of a hit.
    Prefix,
}

impl ProbeClass {
    /// Every class, in plan order.
    pub const ALL: [ProbeClass; 4] = [ProbeClass::Prefill, ProbeClass::Decode, ProbeClass::Mixed, ProbeClass::Prefix];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeClass::Prefill => "prefill",
            ProbeClass::Decode => "decode",
            ProbeClass::Mixed => "mixed",
            ProbeClass::Prefix => "prefix",
        }
    }
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_background_load_is_the_idle_engines_not_the_probes() {
        // The probes kept the engine busy: the average at the end counts its own work.
        let c = ProfileConditions {
            load_average_before: Some([0.4, 1.3, 0.9]),
            load_average_after: Some([2.8, 2.2, 1.4]),
            cpus_online: Some(2),
            busy_cpus_before: Some(0.1),
        };
        assert_eq!(c.load(), Some(0.4));
        let after_only = ProfileConditions { load_average_before: None, ..c };
        assert_eq!(after_only.load(), Some(2.8));
        assert_eq!(ProfileConditions::default().load(), None);
    }

    #[test]
    fn fields_are_found_at_their_line() {
        let text = "format: 2\nhardware:\n  gpus: 1\ncoefficients:\n  c0_step_s: 1\n  c4_decode_seq_s: -1\nsamples:\n- class: prefill\n  seconds: 1\n- class: decode\n  seconds: -2\n";
        // A nested key of the same name before the one meant (`fit.samples`).
        let nested = "fit:\n  samples: 3\n  classes:\n  - class: prefill\n    seconds: 9\nsamples:\n  - class: prefill\n    seconds: 1\n  - class: decode\n    seconds: -2\n";
        assert_eq!(field_line(nested, "samples[1].seconds"), Some(10));
        assert_eq!(field_line(nested, "fit.samples"), Some(2));
        assert_eq!(field_line(text, "coefficients.c4_decode_seq_s"), Some(6));
        assert_eq!(field_line(text, "hardware.gpus"), Some(3));
        assert_eq!(field_line(text, "samples[1].seconds"), Some(11));
        assert_eq!(field_line(text, "samples[0].class"), Some(8));
        assert_eq!(field_line(text, "fit.r2"), None);
    }

    #[test]
    fn coefficients_round_trip_through_the_cost_model() {
        let cost = FittedCost {
            c: [1e-3, 2e-5, 3e-9, 4e-10, 5e-5, 6e-8],
            frontend: SimDuration::from_micros(4500),
            cached_context: Some(1e-8),
            beyond_cache: Some(CacheKnee { tokens: 5792, extra_s: 3e-7 }),
        };
        let p = ProfileCoefficients::of(&cost);
        assert_eq!(p.cost(), cost);
        assert_eq!(p.frontend_s, 0.0045);
    }
}
