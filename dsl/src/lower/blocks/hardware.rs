//! `hardware NAME { ... }` blocks, their `engine { ... }` settings and calibration profiles.

use simctl_engine::catalogue;
use simctl_engine::cost::FittedCost;
use simctl_engine::spec::*;
use simctl_engine::time::SimDuration;

use crate::ast::Span;
use crate::value::{Dim, Val, ValKind};

use crate::lower::{Cx, VItem};

/// The settings an `engine { ... }` block gives; the rest keep the value from below (a
/// profile, the scenario's `engine` block, vLLM's defaults).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct EngineOverrides {
    max_batch_tokens: Option<u32>,
    max_seqs: Option<u32>,
    chunked_prefill: Option<bool>,
    block_size: Option<u32>,
    gpu_memory_utilization: Option<f64>,
    prefix_caching: Option<bool>,
    scheduler: Option<Scheduler>,
}

impl EngineOverrides {
    /// `base` with the settings given here.
    pub(crate) fn apply(&self, mut e: EngineSpec) -> EngineSpec {
        e.max_batch_tokens = self.max_batch_tokens.unwrap_or(e.max_batch_tokens);
        e.max_seqs = self.max_seqs.unwrap_or(e.max_seqs);
        e.chunked_prefill = self.chunked_prefill.unwrap_or(e.chunked_prefill);
        e.block_size = self.block_size.unwrap_or(e.block_size);
        e.gpu_memory_utilization = self.gpu_memory_utilization.unwrap_or(e.gpu_memory_utilization);
        e.prefix_caching = self.prefix_caching.unwrap_or(e.prefix_caching);
        e.scheduler = self.scheduler.unwrap_or(e.scheduler);
        e
    }
}

/// A hardware kind, and the engine settings of its profile when it has one: they are the
/// defaults of the pools that run it.
pub(crate) struct LoweredHardware {
    pub(crate) spec: HardwareSpec,
    pub(crate) profile_engine: Option<EngineSpec>,
}

/// Keys of an `engine` block.
pub(crate) const ENGINE_KEYS: &[&str] =
    &["max_batch_tokens", "max_seqs", "chunked_prefill", "block_size", "gpu_memory_utilization", "prefix_caching", "scheduler"];

/// Keys of a `hardware` block.
pub(crate) const HARDWARE_KEYS: &[&str] = &[
    "gpu",
    "prefill_rate",
    "decode_rate",
    "profile",
    "fitted",
    "frontend",
    "cached_context",
    "calibrated_tp",
    "cost",
    "memory",
    "kv_capacity",
    "kv_transfer",
    "mfu",
    "mbu",
    "step_overhead",
    "backend",
    "seq_overhead",
    "layer_overhead",
    "moe_efficiency",
    "moe_efficiency_fp4",
    "perf_model",
    "expert_parallel",
    "prefill_layer_overhead",
    "prefill_moe_layer_overhead",
];

impl Cx {
    pub(crate) fn engine_overrides(&mut self, items: &[VItem]) -> EngineOverrides {
        let s = self.settings("engine", items, ENGINE_KEYS);
        EngineOverrides {
            max_batch_tokens: s.get("max_batch_tokens").and_then(|v| self.count_u32(v, "max_batch_tokens")),
            max_seqs: s.get("max_seqs").and_then(|v| self.count_u32(v, "max_seqs")),
            chunked_prefill: s.get("chunked_prefill").and_then(|v| self.boolean(v, "chunked_prefill")),
            block_size: s.get("block_size").and_then(|v| self.count_u32(v, "block_size")),
            gpu_memory_utilization: s.get("gpu_memory_utilization").and_then(|v| self.fraction(v, "gpu_memory_utilization")),
            prefix_caching: s.get("prefix_caching").and_then(|v| self.boolean(v, "prefix_caching")),
            scheduler: s.get("scheduler").and_then(|v| {
                self.keyword(v, "scheduler", &[("auto", Scheduler::Auto), ("vllm", Scheduler::Vllm), ("sglang", Scheduler::Sglang)])
            }),
        }
    }

    pub(crate) fn hardware(&mut self, name: &str, items: &[VItem], span: Span) -> Option<LoweredHardware> {
        let what = format!("hardware `{name}`");
        let s = self.settings(&what, items, HARDWARE_KEYS);
        let gpu = match s.get("gpu") {
            Some(v) => {
                let n = self.name(v, "gpu")?;
                match catalogue::gpu(&n) {
                    Some(g) => Some(g),
                    None => {
                        let names: Vec<String> = catalogue::gpus().into_iter().map(|g| g.name.replace(['-', '.'], "_")).collect();
                        self.error(
                            v.src,
                            v.span,
                            format!("unknown gpu `{n}`"),
                            "not in the catalogue",
                            Some(format!("catalogue GPUs: {}", names.join(", "))),
                        );
                        return None;
                    }
                }
            }
            None => None,
        };
        let rate = |cx: &mut Self, k: &str| s.get(k).map(|v| cx.expect_dim(v, Dim::TOKEN_RATE, k));
        let (prefill, decode) = (rate(self, "prefill_rate"), rate(self, "decode_rate"));
        let overhead = s.get("step_overhead").map(|v| self.duration(v, "step_overhead"));
        // A fitted model (inline or from a profile) fixes the performance model; a profile
        // also gives defaults for the memory and the KV capacity.
        let mut mem_default = None;
        let mut kv_default = None;
        let mut profile_engine = None;
        let fitted = if let Some(v) = s.get("fitted") {
            let coefficients: Option<[f64; 6]> = match &v.kind {
                ValKind::List(xs) if xs.len() == 6 => {
                    let mut c = [0.0; 6];
                    for (k, x) in xs.iter().enumerate() {
                        c[k] = self.number(x, "fitted")?;
                    }
                    Some(c)
                }
                _ => None,
            };
            let Some(coefficients) = coefficients else {
                self.error(
                    v.src,
                    v.span,
                    "`fitted` takes six coefficients `[c0, c1, c2, c3, c4, c5]` in seconds".into(),
                    "not six numbers",
                    None,
                );
                return None;
            };
            let frontend = match s.get("frontend") {
                Some(f) => self.duration(f, "frontend")?,
                None => SimDuration::ZERO,
            };
            let tp = match s.get("calibrated_tp") {
                Some(t) => Some(self.count_u32(t, "calibrated_tp")?),
                None => None,
            };
            let cached_context = match s.get("cached_context") {
                Some(x) => Some(self.number(x, "cached_context")?),
                None => None,
            };
            Some(PerfSpec::Fitted { cost: FittedCost { c: coefficients, frontend, cached_context, beyond_cache: None }, tp })
        } else if let Some(v) = s.get("profile") {
            let path = self.name(v, "profile")?;
            let profile = self.load_profile(&path, v)?;
            kv_default = Some(profile.kv_capacity_blocks * u64::from(profile.engine.block_size));
            mem_default = profile.hardware.memory_bytes;
            profile_engine = Some(profile.engine_spec());
            Some(PerfSpec::Fitted { cost: profile.cost(), tp: Some(profile.hardware.gpus) })
        } else {
            None
        };
        // `frontend` goes with a written-out fitted model or a catalogue GPU (whose roofline
        // has one); `calibrated_tp` only with `fitted`.
        let stray = |k: &&&str| match **k {
            "frontend" => !s.contains_key("fitted") && !s.contains_key("gpu"),
            _ => !s.contains_key("fitted"),
        };
        if let Some((k, f)) = ["frontend", "cached_context", "calibrated_tp"].iter().filter(stray).find_map(|k| s.get(k).map(|v| (k, v))) {
            self.error(
                f.src,
                f.span,
                format!("`{k}` in {what} belongs with {}", if *k == "frontend" { "`fitted` or `gpu`" } else { "`fitted`" }),
                "no fitted or roofline model here",
                Some("a profile carries its own frontend latency; rate models have none".into()),
            );
            return None;
        }
        // A profile given on the command line stands in for the file's GPU, which then only
        // prices the hardware (`--set hardware.NAME.profile=FILE`).
        let cli_profile = s.get("profile").is_some_and(|v| v.src != 0) && s.get("gpu").is_some_and(|v| v.src == 0);
        if fitted.is_some() && !cli_profile && (gpu.is_some() || prefill.is_some() || decode.is_some()) {
            self.error(
                0,
                span,
                format!("{what} sets a fitted model (`fitted` or `profile`) together with `gpu` or token rates"),
                "choose one performance model",
                None,
            );
            return None;
        }
        let perf = match (&gpu, prefill, decode) {
            _ if fitted.is_some() => fitted.expect("checked"),
            (Some(g), None, None) => {
                // The catalogue's efficiencies for this GPU under the serving engine named by
                // `backend` (vLLM, whose scheduler the simulator follows, by default).
                let backend = match s.get("backend") {
                    Some(v) => {
                        let n = self.name(v, "backend")?;
                        let Some(b) = catalogue::Backend::parse(&n) else {
                            self.error(
                                v.src,
                                v.span,
                                format!("unknown backend `{n}`"),
                                "not a serving engine",
                                Some("backends: vllm, sglang, trtllm".into()),
                            );
                            return None;
                        };
                        b
                    }
                    None => catalogue::Backend::Vllm,
                };
                // The kernel-table model where the GPU has tables for the backend, unless
                // `perf_model = roofline` or a roofline-only key asks for the datasheet model.
                let roofline_keys = ["mfu", "mbu", "moe_efficiency", "moe_efficiency_fp4", "frontend"];
                let has_tables = simctl_engine::kernels::has_tables(&g.name, backend);
                let model = match s.get("perf_model") {
                    Some(v) => {
                        let n = self.name(v, "perf_model")?;
                        match n.as_str() {
                            "kernels" if !has_tables => {
                                let with: Vec<String> = simctl_engine::kernels::shipped()
                                    .filter(|(_, b)| *b == backend)
                                    .map(|(g, _)| g.replace('-', "_"))
                                    .collect();
                                self.error(
                                    v.src,
                                    v.span,
                                    format!("no kernel tables for `{}` under {}", g.name, backend.as_str()),
                                    "not measured",
                                    Some(format!("GPUs with {} tables: {}; or `perf_model = roofline`", backend.as_str(), with.join(", "))),
                                );
                                return None;
                            }
                            "kernels" | "roofline" => n,
                            _ => {
                                self.error(
                                    v.src,
                                    v.span,
                                    format!("unknown perf_model `{n}`"),
                                    "not a model",
                                    Some("`kernels` (measured kernel tables) or `roofline` (datasheet)".into()),
                                );
                                return None;
                            }
                        }
                    }
                    None if has_tables && !roofline_keys.iter().any(|k| s.contains_key(*k)) => "kernels".into(),
                    None => "roofline".into(),
                };
                if model == "kernels" {
                    if let Some((k, v)) = roofline_keys.iter().find_map(|k| s.get(*k).map(|v| (k, v))) {
                        self.error(
                            v.src,
                            v.span,
                            format!("`{k}` belongs to the roofline model, and {what} uses the measured kernel tables"),
                            "roofline only",
                            Some("add `perf_model = roofline` to use the datasheet roofline with this setting".into()),
                        );
                        return None;
                    }
                    let d = simctl_engine::kernels::default_overheads(backend);
                    let dur = |cx: &mut Self, k: &str, def: SimDuration| s.get(k).map_or(Some(def), |v| cx.duration(v, k));
                    let overheads = simctl_engine::kernels::KernelOverheads {
                        step: overhead.unwrap_or(Some(d.step))?,
                        per_layer: dur(self, "layer_overhead", d.per_layer)?,
                        per_seq: dur(self, "seq_overhead", d.per_seq)?,
                        prefill_per_layer: dur(self, "prefill_layer_overhead", d.prefill_per_layer)?,
                        prefill_per_moe_layer: dur(self, "prefill_moe_layer_overhead", d.prefill_per_moe_layer)?,
                    };
                    let expert_parallel = match s.get("expert_parallel") {
                        Some(v) => self.boolean(v, "expert_parallel")?,
                        None => false,
                    };
                    PerfSpec::Kernels { gpu: g.clone(), backend, overheads, expert_parallel }
                } else {
                    if let Some((k, v)) = ["prefill_layer_overhead", "prefill_moe_layer_overhead", "expert_parallel"]
                        .iter()
                        .find_map(|k| s.get(*k).map(|v| (k, v)))
                    {
                        let why = if has_tables {
                            "`perf_model = roofline` is set".to_string()
                        } else {
                            format!("{} has no kernel tables under {}", g.name, backend.as_str())
                        };
                        self.error(
                            v.src,
                            v.span,
                            format!("`{k}` belongs to the kernel-table model, and {what} uses the datasheet roofline"),
                            "kernel model only",
                            Some(format!("{why}; `simctl catalogue` lists which GPUs have tables")),
                        );
                        return None;
                    }
                    let d = catalogue::roofline_defaults(&g.name, backend);
                    let frac = |cx: &mut Self, k: &str, def: f64| s.get(k).map_or(Some(def), |v| cx.fraction(v, k));
                    let dur = |cx: &mut Self, k: &str, def: SimDuration| s.get(k).map_or(Some(def), |v| cx.duration(v, k));
                    let params = catalogue::RooflineParams {
                        mfu: frac(self, "mfu", d.mfu)?,
                        mbu: frac(self, "mbu", d.mbu)?,
                        step_overhead: overhead.unwrap_or(Some(d.step_overhead))?,
                        seq_overhead: dur(self, "seq_overhead", d.seq_overhead)?,
                        layer_overhead: dur(self, "layer_overhead", d.layer_overhead)?,
                        moe_efficiency: frac(self, "moe_efficiency", d.moe_efficiency)?,
                        moe_efficiency_fp4: frac(self, "moe_efficiency_fp4", d.moe_efficiency_fp4)?,
                        frontend: dur(self, "frontend", d.frontend)?,
                    };
                    PerfSpec::Roofline { gpu: g.clone(), params }
                }
            }
            (None, Some(p), Some(d)) => {
                PerfSpec::Rates { prefill_tok_s: p?, decode_tok_s: d?, step_overhead: overhead.unwrap_or(Some(SimDuration::ZERO))? }
            }
            (Some(_), _, _) => {
                self.error(
                    0,
                    span,
                    format!("{what} sets both `gpu` and token rates"),
                    "choose one performance model",
                    Some("use `gpu = ...` for the roofline model, or `prefill_rate` and `decode_rate` for fixed rates".into()),
                );
                return None;
            }
            (None, _, _) => {
                self.error(
                    0,
                    span,
                    format!("{what} has no performance model"),
                    "incomplete",
                    Some("add `gpu = h100_sxm` (roofline), both `prefill_rate = ... tok/s` and `decode_rate = ... tok/s`, or `profile = \"FILE.yaml\"`".into()),
                );
                return None;
            }
        };
        let cost = match (s.get("cost"), &gpu) {
            (Some(v), _) => self.expect_dim(v, Dim::MONEY_RATE, "cost")?,
            (None, Some(g)) => g.cost_per_hour,
            (None, None) => {
                self.error(0, span, format!("{what} has no price"), "incomplete", Some("add e.g. `cost = 3 $/h`".into()));
                return None;
            }
        };
        let memory = match s.get("memory") {
            Some(v) => Some(self.expect_dim(v, Dim::BYTES, "memory")? as u64),
            None => mem_default,
        };
        let kv_capacity = match s.get("kv_capacity") {
            Some(v) => Some(self.count(v, "kv_capacity")?),
            None => kv_default,
        };
        let kv_transfer = match s.get("kv_transfer") {
            Some(v) => Some(self.duration(v, "kv_transfer")?),
            None => None,
        };
        let spec = HardwareSpec {
            name: name.into(),
            cost_per_hour: cost,
            memory_bytes: memory,
            kv_capacity_tokens: kv_capacity,
            kv_transfer_latency: kv_transfer,
            perf,
        };
        Some(LoweredHardware { spec, profile_engine })
    }

    pub(crate) fn load_profile(&mut self, path: &str, v: &Val) -> Option<simctl_engine::profile::Profile> {
        let base = self.base_dir(v);
        let full = if std::path::Path::new(path).is_absolute() { std::path::PathBuf::from(path) } else { base.join(path) };
        let text = match std::fs::read_to_string(&full) {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    v.src,
                    v.span,
                    format!("cannot read profile `{}`: {e}", full.display()),
                    "profile not readable",
                    Some(self.path_help(v)),
                );
                return None;
            }
        };
        match serde_saphyr::from_str::<simctl_engine::profile::Profile>(&text).map_err(|e| e.to_string()).and_then(|p| p.checked(&text)) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(
                    v.src,
                    v.span,
                    format!("profile `{}` is not a valid profile: {e}", full.display()),
                    "invalid profile",
                    Some("the format is described in docs/profile.md".into()),
                );
                None
            }
        }
    }
}
