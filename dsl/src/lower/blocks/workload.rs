//! `workload { ... }`: arrivals, lengths, priorities, prefixes, classes, traces, SLOs.

use std::collections::BTreeMap;

use simctl_engine::spec::*;
use simctl_engine::time::SimDuration;

use crate::ast::Span;
use crate::value::{Dim, Val, ValKind};

use crate::lower::{Cx, VItem, closest};

/// Keys of the `workload` block.
pub(crate) const WORKLOAD_KEYS: &[&str] = &["arrivals", "prompt", "output", "priority", "prefix"];

/// Keys of a workload `class` block.
pub(crate) const CLASS_KEYS: &[&str] = &["weight", "prompt", "output", "priority", "prefix"];

/// Keys of an `slo` block.
pub(crate) const SLO_KEYS: &[&str] = &["ttft", "tpot", "e2e", "itl", "max_itl"];

impl Cx {
    pub(crate) fn workload(&mut self, items: &[VItem], span: Span) -> Option<WorkloadSpec> {
        let s = self.settings("workload", items, WORKLOAD_KEYS);
        for it in items {
            if let VItem::Block { kind, .. } = it
                && kind.name != "class"
            {
                self.error(
                    0,
                    kind.span,
                    format!("unknown block `{}` in the workload", kind.name),
                    "unknown block",
                    Some("the workload holds `class NAME { ... }` blocks".into()),
                );
            }
        }
        let (arrivals, trace) = match s.get("arrivals") {
            Some(v) => self.arrivals(v)?,
            None => {
                self.error(
                    0,
                    span,
                    "the workload has no `arrivals`".into(),
                    "incomplete",
                    Some("add e.g. `arrivals = poisson(24/s)` or `arrivals = trace(\"file.jsonl\")`".into()),
                );
                return None;
            }
        };
        let mut classes = Vec::new();
        for (_, name, items, cspan) in Self::blocks(items, "class") {
            let Some(name) = name else {
                self.error(0, cspan, "a class needs a name".into(), "unnamed", Some("write `class chat { ... }`".into()));
                continue;
            };
            let what = format!("class `{}`", name.name);
            let c = self.settings(&what, items, CLASS_KEYS);
            let weight = c.get("weight").map_or(Some(1.0), |v| self.number(v, "weight"))?;
            let (Some(pv), Some(ov)) = (c.get("prompt"), c.get("output")) else {
                self.error(0, cspan, format!("{what} needs `prompt` and `output` lengths"), "incomplete", None);
                continue;
            };
            let prompt = self.length(pv, "prompt")?;
            let output = self.length(ov, "output")?;
            let priority = c.get("priority").map_or(Some((0, 0)), |v| self.priority(v))?;
            let prefix = match c.get("prefix") {
                Some(v) => Some(self.prefix(v)?),
                None => None,
            };
            let slo = Self::blocks(items, "slo").next().map(|(_, _, it, _)| self.slo_block(it, &format!("the SLO of {what}")));
            classes.push(ClassSpec { name: name.name.clone(), weight, prompt, output, priority, prefix, slo });
        }
        if classes.len() > 255 {
            self.error(0, span, "at most 255 request classes".into(), "too many classes", None);
            return None;
        }
        // Lengths are needed unless a trace or classes provide them.
        let optional = trace.is_some() || !classes.is_empty();
        let len = |cx: &mut Self, k: &str| match s.get(k) {
            Some(v) => cx.length(v, k),
            None if optional => Some(LengthSpec::Constant(1)),
            None => {
                cx.error(
                    0,
                    span,
                    format!("the workload has no `{k}` length"),
                    "incomplete",
                    Some(format!("add e.g. `{k} = uniform(100, 1200)`")),
                );
                None
            }
        };
        let prompt = len(self, "prompt");
        let output = len(self, "output");
        let priority = match s.get("priority") {
            None => Some((0, 0)),
            Some(v) => self.priority(v),
        };
        let prefix = match s.get("prefix") {
            None => Some(None),
            Some(v) => self.prefix(v).map(Some),
        };
        Some(WorkloadSpec { arrivals, prompt: prompt?, output: output?, priority: priority?, prefix: prefix?, classes, trace })
    }

    pub(crate) fn arrivals(&mut self, v: &Val) -> Option<(ArrivalSpec, Option<simctl_engine::trace::TraceSpec>)> {
        let (name, pos, named) = self.call(
            v,
            "arrivals",
            &[
                ("poisson", &["burst_factor", "burst_probability", "burst_window"]),
                ("constant", &[]),
                ("gamma", &["cv"]),
                ("mmpp", &["low", "high", "low_for", "high_for"]),
                ("ramp", &[]),
                ("closed_loop", &["users", "think"]),
                (
                    "trace",
                    &["format", "speedup", "start", "end", "limit", "loop", "skip_invalid", "block_tokens", "max_prompt", "max_output"],
                ),
            ],
        )?;
        let rate = |cx: &mut Self, x: &Val| cx.expect_dim(x, Dim::PER_TIME, "arrival rate");
        let need = |cx: &mut Self, k: &str| -> Option<&Val> {
            let got = named.get(k).copied();
            if got.is_none() {
                cx.error(v.src, v.span, format!("`{name}` needs `{k} = ...`"), "incomplete", None);
            }
            got
        };
        let spec = match name {
            "trace" => return Some((ArrivalSpec::Constant { rate_per_s: 1.0 }, Some(self.trace(v, &pos, &named)?))),
            "gamma" if pos.len() == 2 => ArrivalSpec::Gamma { rate_per_s: rate(self, pos[0])?, cv: self.number(pos[1], "cv")? },
            "poisson" | "constant" | "gamma" => {
                if !self.args_exact(v, name, &pos, 1, &format!("{name}(RATE) with a rate such as `24/s`")) {
                    return None;
                }
                let r = rate(self, pos[0])?;
                match name {
                    "constant" => ArrivalSpec::Constant { rate_per_s: r },
                    "gamma" => {
                        let cv = need(self, "cv")?;
                        ArrivalSpec::Gamma { rate_per_s: r, cv: self.number(cv, "cv")? }
                    }
                    _ => {
                        let mut burst = None;
                        if let Some(f) = named.get("burst_factor") {
                            let mut b = BurstSpec::lab(self.number(f, "burst_factor")?);
                            if let Some(p) = named.get("burst_probability") {
                                b.probability = self.fraction(p, "burst_probability")?;
                            }
                            if let Some(w) = named.get("burst_window") {
                                b.window = self.duration(w, "burst_window")?;
                            }
                            burst = Some(b);
                        }
                        ArrivalSpec::Poisson { rate_per_s: r, burst }
                    }
                }
            }
            "mmpp" => {
                let (lo, hi) = (need(self, "low")?, need(self, "high")?);
                let (lf, hf) = (need(self, "low_for")?, need(self, "high_for")?);
                ArrivalSpec::Mmpp {
                    rates: [rate(self, lo)?, rate(self, hi)?],
                    dwell: [self.duration(lf, "low_for")?, self.duration(hf, "high_for")?],
                }
            }
            "ramp" => {
                let mut points = Vec::new();
                for p in &pos {
                    match &p.kind {
                        ValKind::List(xs) if xs.len() == 2 => points.push((self.duration(&xs[0], "ramp time")?, rate(self, &xs[1])?)),
                        _ => {
                            self.error(
                                p.src,
                                p.span,
                                "each `ramp` point is `[time, rate]`".into(),
                                "not a point",
                                Some("e.g. `ramp([0s, 10/s], [1h, 40/s], [2h, 10/s])`".into()),
                            );
                            return None;
                        }
                    }
                }
                ArrivalSpec::Ramp { points }
            }
            _ => {
                let users = need(self, "users")?;
                let think = match named.get("think") {
                    Some(t) => self.duration(t, "think")?,
                    None => SimDuration::ZERO,
                };
                ArrivalSpec::ClosedLoop { users: self.count_u32(users, "users")?, think }
            }
        };
        Some((spec, None))
    }

    pub(crate) fn trace(&mut self, v: &Val, pos: &[&Val], named: &BTreeMap<&str, &Val>) -> Option<simctl_engine::trace::TraceSpec> {
        use simctl_engine::trace::{MOONCAKE_BLOCK_TOKENS, TraceFormat, TraceSpec};
        if pos.len() != 1 {
            self.error(
                v.src,
                v.span,
                "`trace` takes one file".into(),
                "wrong arguments",
                Some("usage: trace(\"file.jsonl\", format = mooncake, speedup = 2)".into()),
            );
            return None;
        }
        let path = self.path(pos[0], "file")?;
        let format = match named.get("format") {
            Some(f) => {
                self.keyword(f, "format", &[("mooncake", TraceFormat::Mooncake), ("azure", TraceFormat::Azure), ("csv", TraceFormat::Csv)])?
            }
            None => match TraceFormat::guess(&path) {
                Some(f) => f,
                None => {
                    self.error(
                        v.src,
                        v.span,
                        format!("cannot tell the format of `{}` from its name", path.display()),
                        "format unknown",
                        Some("add `format = mooncake`, `azure` or `csv`".into()),
                    );
                    return None;
                }
            },
        };
        let mut spec = TraceSpec {
            path,
            format,
            speedup: 1.0,
            start_ns: 0,
            end_ns: None,
            limit: None,
            looped: false,
            skip_invalid: false,
            block_tokens: MOONCAKE_BLOCK_TOKENS,
            max_prompt: None,
            max_output: None,
        };
        if let Some(x) = named.get("speedup") {
            spec.speedup = self.number(x, "speedup")?;
        }
        if let Some(x) = named.get("start") {
            spec.start_ns = self.duration(x, "start")?.as_nanos();
        }
        if let Some(x) = named.get("end") {
            spec.end_ns = Some(self.duration(x, "end")?.as_nanos());
        }
        if let Some(x) = named.get("limit") {
            spec.limit = Some(self.count(x, "limit")?);
        }
        if let Some(x) = named.get("loop") {
            spec.looped = self.boolean(x, "loop")?;
        }
        if let Some(x) = named.get("skip_invalid") {
            spec.skip_invalid = self.boolean(x, "skip_invalid")?;
        }
        if let Some(x) = named.get("block_tokens") {
            spec.block_tokens = self.count_u32(x, "block_tokens")?;
        }
        if let Some(x) = named.get("max_prompt") {
            spec.max_prompt = Some(self.token_count(x, "max_prompt")?.max(1));
        }
        if let Some(x) = named.get("max_output") {
            spec.max_output = Some(self.token_count(x, "max_output")?.max(1));
        }
        if let Err(e) = simctl_engine::trace::check_opens(&spec) {
            self.error(
                pos[0].src,
                pos[0].span,
                e.to_string(),
                "trace not usable",
                Some("paths are relative to the scenario file; pass another with `--set`".into()),
            );
            return None;
        }
        Some(spec)
    }

    pub(crate) fn length(&mut self, v: &Val, key: &str) -> Option<LengthSpec> {
        if let ValKind::Num(..) = v.kind {
            return Some(LengthSpec::Constant(self.token_count(v, key)?));
        }
        const CLAMP: &[&str] = &["min", "max"];
        let (name, pos, named) = self.call(
            v,
            key,
            &[("uniform", &[]), ("constant", &[]), ("exponential", CLAMP), ("normal", CLAMP), ("lognormal", CLAMP), ("empirical", CLAMP)],
        )?;
        let inner = match name {
            "uniform" => {
                if !self.args_exact(v, name, &pos, 2, "uniform(low, high)") {
                    return None;
                }
                LengthSpec::Uniform { lo: self.token_count(pos[0], key)?, hi: self.token_count(pos[1], key)? }
            }
            "constant" => {
                if !self.args_exact(v, name, &pos, 1, "constant(tokens)") {
                    return None;
                }
                LengthSpec::Constant(self.token_count(pos[0], key)?)
            }
            "exponential" => {
                if !self.args_exact(v, name, &pos, 1, "exponential(mean)") {
                    return None;
                }
                LengthSpec::Exponential { mean: self.tokens_f64(pos[0], key)? }
            }
            "normal" | "lognormal" => {
                if !self.args_exact(v, name, &pos, 2, &format!("{name}(mean, std, min = ..., max = ...)")) {
                    return None;
                }
                let (mean, std) = (self.tokens_f64(pos[0], key)?, self.tokens_f64(pos[1], key)?);
                if name == "normal" { LengthSpec::Normal { mean, std } } else { LengthSpec::LogNormal { mean, std } }
            }
            _ => self.empirical(v, &pos)?,
        };
        if named.is_empty() {
            return Some(inner);
        }
        let min = match named.get("min") {
            Some(x) => self.token_count(x, "min")?,
            None => 1,
        };
        let max = match named.get("max") {
            Some(x) => self.token_count(x, "max")?,
            None => simctl_engine::units::MAX_TOKENS,
        };
        Some(LengthSpec::Clamped { inner: Box::new(inner), min, max })
    }

    pub(crate) fn empirical(&mut self, v: &Val, pos: &[&Val]) -> Option<LengthSpec> {
        if pos.len() != 2 {
            self.error(
                v.src,
                v.span,
                "`empirical` takes a file and a column".into(),
                "wrong arguments",
                Some("usage: empirical(\"lengths.csv\", num_prefill_tokens)".into()),
            );
            return None;
        }
        let path = self.path(pos[0], "file")?;
        let column = self.name(pos[1], "column")?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    pos[0].src,
                    pos[0].span,
                    format!("cannot read `{}`: {e}", path.display()),
                    "not readable",
                    Some(self.path_help(pos[0])),
                );
                return None;
            }
        };
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split(',').map(str::trim).collect();
        let Some(col) = header.iter().position(|h| *h == column) else {
            let help = closest(&column, &header)
                .map(|c| format!("did you mean `{c}`?"))
                .unwrap_or_else(|| format!("columns: {}", header.join(", ")));
            self.error(pos[1].src, pos[1].span, format!("`{}` has no column `{column}`", path.display()), "no such column", Some(help));
            return None;
        };
        let mut values = Vec::new();
        for (n, line) in lines.enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let cell = line.split(',').nth(col).map(str::trim).unwrap_or("");
            match cell.parse::<f64>() {
                Ok(x) if x >= 1.0 && x.fract() == 0.0 && x <= f64::from(simctl_engine::units::MAX_TOKENS) => values.push(x as u32),
                _ => {
                    self.error(
                        pos[0].src,
                        pos[0].span,
                        format!(
                            "{}:{}: `{cell}` in column `{column}` is not a whole number of tokens from 1 to 16777216",
                            path.display(),
                            n + 2
                        ),
                        "bad value in file",
                        None,
                    );
                    return None;
                }
            }
        }
        if values.is_empty() {
            self.error(pos[0].src, pos[0].span, format!("`{}` has no rows", path.display()), "empty", None);
            return None;
        }
        Some(LengthSpec::Empirical(values.into()))
    }

    pub(crate) fn priority(&mut self, v: &Val) -> Option<(u8, u8)> {
        match self.length(v, "priority")? {
            LengthSpec::Constant(n) => u8::try_from(n).ok().map(|n| (n, n)),
            LengthSpec::Uniform { lo, hi } => u8::try_from(lo).ok().zip(u8::try_from(hi).ok()),
            _ => None,
        }
        .or_else(|| {
            self.error(v.src, v.span, "`priority` takes `uniform(low, high)` or a constant between 0 and 255".into(), "bad priority", None);
            None
        })
    }

    pub(crate) fn prefix(&mut self, v: &Val) -> Option<PrefixSpec> {
        let (_, pos, named) = self.call(v, "prefix", &[("shared", &["groups", "tokens"])])?;
        let groups = named.get("groups").copied().or(pos.first().copied());
        let tokens = named.get("tokens").copied().or(pos.get(1).copied());
        match (groups, tokens) {
            (Some(g), Some(t)) => {
                let g = self.count_u32(g, "groups");
                let t = self.token_count(t, "tokens");
                g.zip(t).map(|(groups, tokens)| PrefixSpec { groups, tokens })
            }
            _ => {
                self.error(
                    v.src,
                    v.span,
                    "`shared` needs `groups` and `tokens`".into(),
                    "incomplete",
                    Some("e.g. `prefix = shared(groups = 4, tokens = 1024)`".into()),
                );
                None
            }
        }
    }

    pub(crate) fn slo_block(&mut self, items: &[VItem], what: &str) -> SloSpec {
        let s = self.settings(what, items, SLO_KEYS);
        let get = |cx: &mut Self, k: &str| s.get(k).and_then(|v| cx.duration(v, k));
        SloSpec {
            ttft: get(self, "ttft"),
            tpot: get(self, "tpot"),
            e2e: get(self, "e2e"),
            itl: get(self, "itl"),
            max_itl: get(self, "max_itl"),
        }
    }
}
