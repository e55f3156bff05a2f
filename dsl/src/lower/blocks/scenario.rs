//! The scenario as a whole: top-level settings and every block, in order.

use std::collections::BTreeMap;

use simctl_engine::catalogue;
use simctl_engine::spec::*;
use simctl_engine::time::SimDuration;

use crate::ast::Span;
use crate::value::{Dim, ValKind};

use crate::lower::{Cx, VItem, closest};

/// Top-level keys of a scenario.
pub(crate) const SCENARIO_KEYS: &[&str] = &["name", "seed", "model"];

/// Keys of a `link` block.
pub(crate) const LINK_KEYS: &[&str] = &["from", "to", "latency", "bandwidth"];

/// Keys of the `telemetry` block.
pub(crate) const TELEMETRY_KEYS: &[&str] = &["interval"];

/// Keys of the `run` block.
pub(crate) const RUN_KEYS: &[&str] = &["duration", "requests", "drain", "max_in_flight", "max_time", "fast_forward"];

/// Keys of the `sweep` block.
pub(crate) const SWEEP_KEYS: &[&str] = &["grid", "seeds"];

impl Cx {
    pub(crate) fn lower(&mut self, tree: &[VItem], default_name: String) -> Option<ScenarioSpec> {
        const TOP_BLOCKS: &[&str] =
            &["hardware", "pool", "link", "router", "telemetry", "workload", "slo", "run", "engine", "model", "sweep"];
        for it in tree {
            if let VItem::Block { kind, .. } = it
                && !TOP_BLOCKS.contains(&kind.name.as_str())
            {
                let help = closest(&kind.name, TOP_BLOCKS)
                    .map(|c| format!("did you mean `{c}`?"))
                    .unwrap_or_else(|| format!("blocks: {}", TOP_BLOCKS.join(", ")));
                self.error(0, kind.span, format!("unknown block `{}`", kind.name), "unknown block", Some(help));
            }
        }
        // Blocks that may appear once: a second one would otherwise be silently ignored.
        for kind in ["router", "telemetry", "workload", "slo", "run", "engine", "model", "sweep"] {
            let mut seen = false;
            for it in tree {
                if let VItem::Block { kind: k, .. } = it
                    && k.name == kind
                {
                    if seen {
                        self.error(
                            0,
                            k.span,
                            format!("`{kind}` is declared twice"),
                            "declared again here",
                            Some("merge the two blocks into one".into()),
                        );
                    }
                    seen = true;
                }
            }
        }
        let top = self.settings("the scenario", tree, SCENARIO_KEYS);
        let name = match top.get("name") {
            Some(v) => self.name(v, "name"),
            None => Some(default_name),
        };
        let seed = match top.get("seed") {
            Some(v) => self.count(v, "seed"),
            None => Some(0),
        };
        let model_block = Self::blocks(tree, "model").next();
        let model = match (top.get("model"), model_block) {
            (Some(v), Some(_)) => {
                self.error(v.src, v.span, "the model is given twice: as `model = ...` and as a `model` block".into(), "remove one", None);
                None
            }
            (None, Some((_, name, items, span))) => self.model_block(name, items, span),
            (Some(v), None) => {
                let n = self.name(v, "model")?;
                catalogue::model(&n).or_else(|| {
                    let names: Vec<String> = catalogue::models().into_iter().map(|m| m.name).collect();
                    self.error(
                        v.src,
                        v.span,
                        format!("unknown model `{n}`"),
                        "not in the catalogue",
                        Some(format!("catalogue models: {}", names.join(", "))),
                    );
                    None
                })
            }
            (None, None) => {
                self.error(
                    0,
                    Span::default(),
                    "the scenario names no model".into(),
                    "expected `model = ...`",
                    Some("add e.g. `model = llama_3_1_8b`".into()),
                );
                None
            }
        };

        let global_engine = Self::blocks(tree, "engine").next().map(|(_, _, items, _)| items);
        let global_engine = match global_engine {
            Some(items) => self.engine_overrides(items),
            None => Default::default(),
        };

        let mut hardware = Vec::new();
        let mut profile_engines = Vec::new();
        let mut hw_index = BTreeMap::new();
        for (_, name, items, span) in Self::blocks(tree, "hardware") {
            let Some(n) = name else {
                self.error(0, span, "a hardware block needs a name".into(), "unnamed", Some("write `hardware NAME { ... }`".into()));
                continue;
            };
            self.spans.insert(format!("hardware.{}", n.name), span);
            if let Some(hw) = self.hardware(&n.name, items, span) {
                if hw_index.insert(n.name.clone(), hardware.len()).is_some() {
                    self.error(0, n.span, format!("hardware `{}` is declared twice", n.name), "declared again", None);
                }
                hardware.push(hw.spec);
                profile_engines.push(hw.profile_engine);
            } else {
                self.broken_hardware.insert(n.name.clone());
            }
        }

        let mut pools = Vec::new();
        for (_, name, items, span) in Self::blocks(tree, "pool") {
            let Some(n) = name else {
                self.error(0, span, "a pool needs a name".into(), "unnamed", Some("write `pool NAME { ... }`".into()));
                continue;
            };
            self.spans.insert(format!("pools.{}", n.name), span);
            if let Some(p) = self.pool(&n.name, items, &global_engine, &hw_index, &profile_engines) {
                pools.push(p);
            }
        }
        // Replicated names that collide across pools take their pool's name as a prefix
        // (`prefill_h200_0`, `decode_h200_0`).
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for p in &pools {
            for i in &p.instances {
                *count.entry(i.name.clone()).or_default() += 1;
            }
        }
        let clash = |p: &PoolSpec| p.instances.iter().any(|i| count[&i.name] > 1 && self.generated.contains(&i.name));
        let clashing: Vec<bool> = pools.iter().map(clash).collect();
        for (p, c) in pools.iter_mut().zip(clashing) {
            if c {
                for i in &mut p.instances {
                    if self.generated.contains(&i.name) {
                        i.name = format!("{}_{}", p.name, i.name);
                    }
                }
            }
        }
        let pool_index: BTreeMap<String, usize> = pools.iter().enumerate().map(|(i, p)| (p.name.clone(), i)).collect();

        let mut links = Vec::new();
        for (i, (_, _, items, span)) in Self::blocks(tree, "link").enumerate() {
            self.spans.insert(format!("links[{i}]"), span);
            let s = self.settings("a link", items, LINK_KEYS);
            let pool_ref = |cx: &mut Self, key: &str| -> Option<usize> {
                let Some(v) = s.get(key) else {
                    cx.error(0, span, format!("a link needs `{key}`"), "incomplete link", Some(format!("add `{key} = POOL`")));
                    return None;
                };
                let n = cx.name(v, key)?;
                pool_index.get(&n).copied().or_else(|| {
                    let names: Vec<&str> = pool_index.keys().map(String::as_str).collect();
                    let help = closest(&n, &names)
                        .map(|c| format!("did you mean `{c}`?"))
                        .unwrap_or_else(|| format!("pools: {}", names.join(", ")));
                    cx.error(v.src, v.span, format!("unknown pool `{n}`"), "no such pool", Some(help));
                    None
                })
            };
            let from = pool_ref(self, "from");
            let to = pool_ref(self, "to");
            let latency = s.get("latency").map_or(Some(SimDuration::ZERO), |v| self.duration(v, "latency"));
            let bandwidth = match s.get("bandwidth") {
                Some(v) => self.expect_dim(v, Dim::BANDWIDTH, "bandwidth").map(Some),
                None => Some(None),
            };
            if let (Some(from), Some(to), Some(latency), Some(bandwidth_bytes_s)) = (from, to, latency, bandwidth) {
                links.push(LinkSpec { from, to, latency, bandwidth_bytes_s });
            }
        }

        let router = match Self::blocks(tree, "router").next() {
            Some((_, _, items, span)) => {
                self.spans.insert("router".into(), span);
                self.router(items, &pool_index)
            }
            None => Some(RouterSpec::single(PolicySpec::RoundRobin)),
        };
        let telemetry = match Self::blocks(tree, "telemetry").next() {
            Some((_, _, items, _)) => {
                let s = self.settings("telemetry", items, TELEMETRY_KEYS);
                let interval = s.get("interval").map_or(Some(SimDuration::ZERO), |v| self.duration(v, "interval"));
                interval.map(|interval| TelemetrySpec { interval })
            }
            None => Some(TelemetrySpec::default()),
        };
        let workload = match Self::blocks(tree, "workload").next() {
            Some((_, _, items, span)) => {
                self.spans.insert("workload".into(), span);
                self.workload(items, span)
            }
            None => {
                self.error(
                    0,
                    Span::default(),
                    "the scenario has no workload".into(),
                    "expected `workload { ... }`",
                    Some("add e.g. `workload { arrivals = poisson(10/s); prompt = uniform(100, 1200); output = uniform(32, 256) }`".into()),
                );
                None
            }
        };
        let slo = Some(match Self::blocks(tree, "slo").next() {
            Some((_, _, items, _)) => self.slo_block(items, "slo"),
            None => SloSpec::default(),
        });
        let run = match Self::blocks(tree, "run").next() {
            Some((_, _, items, span)) => {
                self.spans.insert("run".into(), span);
                let s = self.settings("run", items, RUN_KEYS);
                let duration = s.get("duration").map(|v| self.duration(v, "duration"));
                let requests = s.get("requests").map(|v| self.count(v, "requests"));
                // A run of nothing measures nothing: a careless `0`, not a request.
                for (key, zero) in [
                    ("duration", duration.flatten() == Some(simctl_engine::time::SimDuration::ZERO)),
                    ("requests", requests.flatten() == Some(0)),
                ] {
                    if zero && let Some(v) = s.get(key) {
                        self.error(
                            v.src,
                            v.span,
                            format!("`run.{key}` must be more than 0: a run of nothing measures nothing"),
                            "zero",
                            None,
                        );
                    }
                }
                let drain = s.get("drain").map_or(Some(true), |v| self.boolean(v, "drain"));
                let mut run = RunSpec::new(duration.flatten(), requests.flatten());
                run.drain = drain.unwrap_or(true);
                if let Some(v) = s.get("max_in_flight") {
                    run.max_in_flight = self.count(v, "max_in_flight")?;
                }
                if let Some(v) = s.get("max_time") {
                    run.max_time = self.duration(v, "max_time")?;
                }
                if let Some(v) = s.get("fast_forward") {
                    run.fast_forward = self.boolean(v, "fast_forward")?;
                }
                Some(run)
            }
            None => Some(RunSpec::new(None, None)),
        };
        let sweep = match Self::blocks(tree, "sweep").next() {
            None => None,
            Some((_, _, items, span)) => {
                let s = self.settings("sweep", items, SWEEP_KEYS);
                let mut grid = Vec::new();
                if let Some(v) = s.get("grid") {
                    let elems = match &v.kind {
                        ValKind::List(xs) => xs.clone(),
                        _ => vec![(*v).clone()],
                    };
                    for e in elems {
                        match &e.kind {
                            ValKind::Str(g) if g.contains('=') => grid.push(g.clone()),
                            _ => self.error(
                                e.src,
                                e.span,
                                format!("a sweep axis is a string like `\"arrival_rate=10/s..40/s:10/s\"`, found {e}"),
                                "not an axis",
                                None,
                            ),
                        }
                    }
                } else {
                    self.error(
                        0,
                        span,
                        "the sweep block has no `grid`".into(),
                        "incomplete",
                        Some("add e.g. `grid = [\"arrival_rate=10/s..40/s:10/s\", \"router.policy=round_robin,telemetry\"]`".into()),
                    );
                }
                let seeds = match s.get("seeds") {
                    Some(v) => self.count_u32(v, "seeds"),
                    None => None,
                };
                Some(SweepSpec { grid, seeds })
            }
        };
        if !self.diags.items.is_empty() {
            return None;
        }
        Some(ScenarioSpec {
            sweep,
            name: name?,
            seed: seed?,
            model: model?,
            hardware,
            pools,
            links,
            router: router?,
            telemetry: telemetry?,
            workload: workload?,
            slo: slo?,
            run: run?,
        })
    }
}
