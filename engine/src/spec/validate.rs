//! The one validation pass. Every check the engine relies on lives here, and its result,
//! [`ValidSpec`], is the only value a [`crate::Simulation`] accepts: `simctl check`, `run`
//! and `sweep` therefore agree on what is valid.

use std::ops::Deref;

use super::*;
use crate::time::SimDuration;
use crate::units::MAX_TOKENS;

/// A scenario that passed [`ScenarioSpec::validate`], with what validation computed on the
/// way (each instance's KV capacity) and its warnings.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    spec: ScenarioSpec,
    kv_blocks: Vec<u64>,
    warnings: Vec<SpecWarning>,
}

/// Something valid but probably not what the author meant (requests that can never fit a
/// KV cache, for example): reported by `simctl check` and `simctl run`, never fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecWarning {
    /// Dotted path of the field concerned.
    pub path: String,
    /// What will happen and what to do.
    pub message: String,
}

impl std::fmt::Display for SpecWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Deref for ValidSpec {
    type Target = ScenarioSpec;
    fn deref(&self) -> &ScenarioSpec {
        &self.spec
    }
}

impl ValidSpec {
    /// The scenario.
    pub fn spec(&self) -> &ScenarioSpec {
        &self.spec
    }
    /// The scenario, to change and validate again.
    pub fn into_spec(self) -> ScenarioSpec {
        self.spec
    }
    /// KV capacity in blocks of each instance, in declaration order across pools.
    pub fn kv_blocks(&self) -> &[u64] {
        &self.kv_blocks
    }
    /// Warnings found while validating.
    pub fn warnings(&self) -> &[SpecWarning] {
        &self.warnings
    }
}

impl ScenarioSpec {
    /// Checks everything the engine relies on and returns every problem, not just the
    /// first; on success, the validated scenario.
    pub fn validate(&self) -> Result<ValidSpec, Vec<SpecError>> {
        self.clone().into_valid()
    }

    /// [`ScenarioSpec::validate`] without a copy.
    pub fn into_valid(self) -> Result<ValidSpec, Vec<SpecError>> {
        let errs = self.problems();
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut kv_blocks = Vec::with_capacity(self.instance_count());
        for pool in &self.pools {
            for inst in &pool.instances {
                let hw = &self.hardware[inst.hardware];
                kv_blocks.push(self.kv_capacity_blocks(hw, inst.tp, &pool.engine).expect("checked by problems()"));
            }
        }
        let mut warnings = self.kv_fit_warnings(&kv_blocks);
        warnings.extend(self.kernel_warnings());
        warnings.extend(self.fitted_warnings());
        Ok(ValidSpec { spec: self, kv_blocks, warnings })
    }

    fn problems(&self) -> Vec<SpecError> {
        let mut errs = Vec::new();
        let mut e = |p: String, m: String| errs.push(SpecError::new(p, m));

        if self.pools.is_empty() {
            e("pools".into(), "a scenario needs at least one pool; add `pool NAME { role = mixed ... }`".into());
        }
        let has = |r: Role| self.pools.iter().any(|p| p.role == r);
        let (pf, dc, mx) = (has(Role::Prefill), has(Role::Decode), has(Role::Mixed));
        if mx && (pf || dc) {
            e("pools".into(), "mixing `mixed` pools with `prefill`/`decode` pools is not supported; for local prefills in a disaggregated fleet give the decode pool `local_prefill = true`".into());
        }
        if pf && !dc {
            e("pools".into(), "there is a prefill pool but no decode pool to hand sequences to".into());
        }
        if dc && !pf {
            e("pools".into(), "there is a decode pool but no prefill pool feeding it".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for pool in &self.pools {
            let pp = format!("pools.{}", pool.name);
            if pool.instances.is_empty() {
                e(format!("{pp}.instances"), "a pool needs at least one instance".into());
            }
            let eng = &pool.engine;
            if eng.max_batch_tokens == 0 {
                e(format!("{pp}.engine.max_batch_tokens"), "must be at least 1".into());
            }
            if eng.max_seqs == 0 {
                e(format!("{pp}.engine.max_seqs"), "must be at least 1".into());
            }
            if eng.block_size == 0 {
                e(format!("{pp}.engine.block_size"), "must be at least 1 token".into());
            }
            if !(eng.gpu_memory_utilization > 0.0 && eng.gpu_memory_utilization <= 1.0) {
                e(format!("{pp}.engine.gpu_memory_utilization"), "must be in (0%, 100%]".into());
            }
            for inst in &pool.instances {
                if !names.insert(inst.name.clone()) {
                    e(format!("{pp}.instances"), format!("instance name `{}` is used twice; names must be unique across pools", inst.name));
                }
                if inst.tp == 0 {
                    e(format!("{pp}.instances.{}.tp", inst.name), "must be at least 1".into());
                }
                match self.hardware.get(inst.hardware) {
                    None => e(format!("{pp}.instances.{}", inst.name), "refers to unknown hardware".into()),
                    Some(hw) => {
                        if let Err(m) = self.kv_capacity_blocks(hw, inst.tp, eng) {
                            e(format!("{pp}.instances.{}", inst.name), m);
                        }
                        if let PerfSpec::Fitted { tp: Some(measured), .. } = hw.perf
                            && measured != inst.tp
                        {
                            e(
                                format!("{pp}.instances.{}.tp", inst.name),
                                format!(
                                    "hardware `{}` was calibrated at tp {measured} (its profile's hardware.gpus), but instance `{}` runs at tp {}; \
                                     a fitted step model does not carry over to another tensor-parallel degree: calibrate at tp {} (simctl calibrate --gpus with {} GPUs) or set `tp = {measured}`",
                                    hw.name, inst.name, inst.tp, inst.tp, inst.tp
                                ),
                            );
                        }
                    }
                }
            }
        }
        for (i, l) in self.links.iter().enumerate() {
            if l.from >= self.pools.len() || l.to >= self.pools.len() {
                e(format!("links[{i}]"), "refers to an unknown pool".into());
            }
            if let Some(bw) = l.bandwidth_bytes_s
                && !(bw > 0.0 && bw.is_finite())
            {
                e(format!("links[{i}].bandwidth"), "must be positive".into());
            }
        }
        for hw in &self.hardware {
            let hp = format!("hardware.{}", hw.name);
            if !(hw.cost_per_hour >= 0.0 && hw.cost_per_hour.is_finite()) {
                e(format!("{hp}.cost"), "must be a non-negative price such as `3 $/h`".into());
            }
            match &hw.perf {
                PerfSpec::Rates { prefill_tok_s, decode_tok_s, .. } => {
                    if !(*prefill_tok_s > 0.0 && prefill_tok_s.is_finite()) {
                        e(format!("{hp}.prefill_rate"), "must be a positive rate such as `10000 tok/s`".into());
                    }
                    if !(*decode_tok_s > 0.0 && decode_tok_s.is_finite()) {
                        e(format!("{hp}.decode_rate"), "must be a positive rate such as `3400 tok/s`".into());
                    }
                }
                PerfSpec::Fitted { cost, .. } => {
                    if let Some(k) = cost.c.iter().chain(&cost.cached_context).position(|c| !(c.is_finite() && *c >= 0.0)) {
                        let x = cost.c.get(k).or(cost.cached_context.as_ref()).copied().unwrap_or(f64::NAN);
                        e(
                            format!("{hp}.fitted"),
                            format!(
                                "coefficient c{k} is {x}: every step coefficient must be a finite number of seconds >= 0 (a negative cost lowers latencies silently)"
                            ),
                        );
                    }
                }
                PerfSpec::Kernels { gpu, backend, .. } => {
                    if !crate::kernels::has_tables(&gpu.name, *backend) {
                        e(format!("{hp}.backend"), format!("no kernel tables for {} under {}", gpu.name, backend.as_str()));
                    }
                }
                PerfSpec::Roofline { params, .. } => {
                    if !(params.mfu > 0.0 && params.mfu <= 1.0) {
                        e(format!("{hp}.mfu"), "must be in (0%, 100%]".into());
                    }
                    if !(params.mbu > 0.0 && params.mbu <= 1.0) {
                        e(format!("{hp}.mbu"), "must be in (0%, 100%]".into());
                    }
                    if !(params.moe_efficiency > 0.0 && params.moe_efficiency <= 1.0) {
                        e(format!("{hp}.moe_efficiency"), "must be in (0%, 100%]".into());
                    }
                    if !(params.moe_efficiency_fp4 > 0.0 && params.moe_efficiency_fp4 <= 1.0) {
                        e(format!("{hp}.moe_efficiency_fp4"), "must be in (0%, 100%]".into());
                    }
                }
            }
        }
        for pool in &self.pools {
            if pool.local_prefill_threshold.is_some() && pool.role != Role::Decode {
                e(format!("pools.{}.local_prefill", pool.name), "only decode pools can prefill short prompts locally".into());
            }
        }
        let w = &self.workload;
        if let Some(p) = w.prefix
            && (p.groups == 0 || p.tokens == 0)
        {
            e("workload.prefix".into(), "shared prefixes need at least one group of at least one token".into());
        }
        let positive = |x: f64| x > 0.0 && x.is_finite();
        match &w.arrivals {
            ArrivalSpec::Poisson { rate_per_s, burst } => {
                if !positive(*rate_per_s) {
                    e("workload.arrivals".into(), "the arrival rate must be positive, e.g. `poisson(24/s)`".into());
                }
                if let Some(b) = burst {
                    if !positive(b.factor) {
                        e("workload.arrivals.burst_factor".into(), "must be positive".into());
                    }
                    if !(0.0..=1.0).contains(&b.probability) {
                        e("workload.arrivals.burst_probability".into(), "must be in [0, 1]".into());
                    }
                    if b.window == SimDuration::ZERO {
                        e("workload.arrivals.burst_window".into(), "must be longer than zero".into());
                    }
                }
            }
            ArrivalSpec::Constant { rate_per_s } => {
                if !positive(*rate_per_s) {
                    e("workload.arrivals".into(), "the arrival rate must be positive".into());
                }
            }
            ArrivalSpec::Gamma { rate_per_s, cv } => {
                if !positive(*rate_per_s) || !positive(*cv) {
                    e("workload.arrivals".into(), "`gamma(rate, cv)` needs a positive rate and a positive coefficient of variation".into());
                }
            }
            ArrivalSpec::Mmpp { rates, dwell } => {
                if !(rates.iter().all(|r| *r >= 0.0 && r.is_finite()) && rates.iter().any(|r| *r > 0.0))
                    || dwell.contains(&SimDuration::ZERO)
                {
                    e("workload.arrivals".into(), "`mmpp` needs non-negative rates (not both zero) and stays longer than zero".into());
                }
            }
            ArrivalSpec::Ramp { points } => {
                if points.is_empty()
                    || points.iter().any(|p| !(p.1 >= 0.0 && p.1.is_finite()))
                    || points.windows(2).any(|w| w[1].0 < w[0].0)
                    || points.iter().all(|p| p.1 == 0.0)
                {
                    e(
                        "workload.arrivals".into(),
                        "`ramp` needs points `[time, rate]` in time order with non-negative rates, not all zero".into(),
                    );
                }
            }
            ArrivalSpec::ClosedLoop { users, .. } => {
                if *users == 0 {
                    e("workload.arrivals".into(), "`closed_loop` needs at least one user".into());
                }
            }
        }
        fn bad_length(l: &LengthSpec) -> bool {
            match l {
                LengthSpec::Constant(n) => *n == 0,
                LengthSpec::Uniform { lo, hi } => *lo == 0 || lo > hi,
                LengthSpec::Exponential { mean } => !(*mean >= 1.0 && mean.is_finite()),
                LengthSpec::Normal { mean, std } | LengthSpec::LogNormal { mean, std } => {
                    !(mean.is_finite() && *mean > 0.0 && *std >= 0.0 && std.is_finite())
                }
                LengthSpec::Empirical(v) => v.is_empty() || v.contains(&0),
                LengthSpec::Clamped { inner, min, max } => *min == 0 || min > max || bad_length(inner),
            }
        }
        let mut lengths: Vec<(String, &LengthSpec, (u8, u8))> =
            vec![("workload.prompt".into(), &w.prompt, w.priority), ("workload.output".into(), &w.output, w.priority)];
        for c in &w.classes {
            lengths.push((format!("workload.class.{}.prompt", c.name), &c.prompt, c.priority));
            lengths.push((format!("workload.class.{}.output", c.name), &c.output, c.priority));
            if !(c.weight > 0.0 && c.weight.is_finite()) {
                e(format!("workload.class.{}.weight", c.name), "must be positive".into());
            }
        }
        for (name, l, pr) in lengths {
            if bad_length(l) {
                e(name.clone(), "lengths must be at least 1 token (`uniform(a, b)` and `min`/`max` need a <= b; means positive)".into());
            }
            if pr.0 > pr.1 {
                e(name, "the priority's lower bound is above its upper bound".into());
            }
        }
        if let Some(t) = &w.trace
            && !positive(t.speedup)
        {
            e("workload.trace.speedup".into(), "must be positive".into());
        }
        let bounded_by_trace = w.trace.as_ref().is_some_and(|t| !t.looped);
        if self.run.duration.is_none() && self.run.requests.is_none() && !bounded_by_trace {
            e("run".into(), "say how long to run: `duration = 60s` or `requests = 10000`".into());
        }

        for p in std::iter::once(&self.router.prefill).chain(self.router.decode.as_ref()) {
            match p {
                PolicySpec::Telemetry(t) => {
                    if !(t.ewma_alpha > 0.0 && t.ewma_alpha <= 1.0) {
                        e("router.ewma_alpha".into(), "must be in (0, 1]".into());
                    }
                    if t.migration && (t.migration_interval == SimDuration::ZERO || t.window == SimDuration::ZERO) {
                        e("router.migration_interval".into(), "the migration interval and window must be longer than zero".into());
                    }
                }
                PolicySpec::KvAware(k) if !(k.temperature >= 0.0 && k.temperature.is_finite() && k.prefill_load_scale >= 0.0) => {
                    e("router.temperature".into(), "`temperature` and `prefill_load_scale` must be non-negative".into());
                }
                PolicySpec::CacheAware(c) if !(0.0..=1.0).contains(&c.cache_threshold) => {
                    e("router.cache_threshold".into(), "must be between 0 and 1".into());
                }
                _ => {}
            }
        }
        if let Some(sp) = &self.router.split {
            for (key, i) in [("router.long_pool", sp.long_pool), ("router.short_pool", sp.short_pool)] {
                match self.pools.get(i) {
                    None => errs.push(SpecError::new(key, "names no pool of the scenario")),
                    Some(p) if !p.role.takes_prefill() => errs.push(SpecError::new(
                        key,
                        format!("pool `{}` is a decode pool, where no request starts; name a mixed or prefill pool", p.name),
                    )),
                    Some(_) => {}
                }
            }
            if self.pools.iter().any(|p| p.local_prefill_threshold.is_some()) {
                errs.push(SpecError::new(
                    "router.split_at",
                    "a split by prompt length and conditional disaggregation (`local_prefill`) both choose where a request starts; keep one",
                ));
            }
        }
        if self.run.max_in_flight == 0 {
            errs.push(SpecError::new("run.max_in_flight", "must be at least 1"));
        }
        if self.run.max_time == SimDuration::ZERO {
            errs.push(SpecError::new("run.max_time", "must be longer than zero"));
        }
        self.check_links(&mut errs);
        self.check_lengths(&mut errs);
        self.check_trace(&mut errs);
        errs
    }

    /// Every prefill pool must reach every decode pool: the router may pick any decode
    /// instance for a sequence prefilled anywhere.
    fn check_links(&self, errs: &mut Vec<SpecError>) {
        let linked = |a: usize, b: usize| self.links.iter().any(|l| l.from == a && l.to == b);
        for (a, pa) in self.pools.iter().enumerate() {
            for (b, pb) in self.pools.iter().enumerate() {
                if pa.role == Role::Prefill && pb.role == Role::Decode && !linked(a, b) {
                    errs.push(SpecError::new(
                        format!("pools.{}.links", pa.name),
                        format!(
                            "prefill pool `{}` has no link to decode pool `{}`, where the router may send its sequences; add `link {{ from = {}; to = {} }}`",
                            pa.name, pb.name, pa.name, pb.name
                        ),
                    ));
                }
            }
        }
    }

    /// Lengths written in the scenario stay within [`MAX_TOKENS`].
    fn check_lengths(&self, errs: &mut Vec<SpecError>) {
        fn largest_constant(l: &LengthSpec) -> u64 {
            match l {
                LengthSpec::Constant(n) => u64::from(*n),
                LengthSpec::Uniform { hi, .. } => u64::from(*hi),
                LengthSpec::Empirical(v) => v.iter().copied().max().map_or(0, u64::from),
                LengthSpec::Clamped { inner, max, .. } => u64::from(*max).max(largest_constant(inner).min(u64::from(*max))),
                LengthSpec::Exponential { mean } | LengthSpec::Normal { mean, .. } | LengthSpec::LogNormal { mean, .. } => {
                    if mean.is_finite() { *mean as u64 } else { u64::MAX }
                }
            }
        }
        let w = &self.workload;
        let mut lengths = vec![("workload.prompt".to_string(), &w.prompt), ("workload.output".to_string(), &w.output)];
        for c in &w.classes {
            lengths.push((format!("workload.class.{}.prompt", c.name), &c.prompt));
            lengths.push((format!("workload.class.{}.output", c.name), &c.output));
        }
        for (path, l) in lengths {
            let n = largest_constant(l);
            if n > u64::from(MAX_TOKENS) {
                errs.push(SpecError::new(path, format!("a length of {n} tokens is above the limit of {MAX_TOKENS} tokens (2^24)")));
            }
        }
        let prefixes = std::iter::once(("workload.prefix".to_string(), w.prefix))
            .chain(w.classes.iter().map(|c| (format!("workload.class.{}.prefix", c.name), c.prefix)));
        for (path, p) in prefixes {
            if let Some(p) = p
                && p.tokens > MAX_TOKENS
            {
                errs.push(SpecError::new(
                    path,
                    format!("a shared prefix of {} tokens is above the limit of {MAX_TOKENS} tokens", p.tokens),
                ));
            }
        }
    }

    /// The trace file opens (a missing file or a CSV without the needed columns fails here,
    /// not in the middle of a run or a sweep).
    fn check_trace(&self, errs: &mut Vec<SpecError>) {
        if let Some(t) = &self.workload.trace
            && let Err(e) = crate::trace::check_opens(t)
        {
            errs.push(SpecError::new("workload.trace", e.to_string()));
        }
    }

    /// Fitted step costs that are valid but degenerate: steps that cost nothing.
    fn fitted_warnings(&self) -> Vec<SpecWarning> {
        let mut out = Vec::new();
        for hw in &self.hardware {
            if let PerfSpec::Fitted { cost, .. } = &hw.perf {
                let c = &cost.c;
                let message = if c.iter().all(|&x| x == 0.0) {
                    "every step coefficient is 0: steps take no time, so TTFT and TPOT come out as 0 ms"
                } else if c[0] == 0.0 && c[4] == 0.0 && c[5] == 0.0 {
                    "c0, c4 and c5 are 0: a step of decodes alone takes no time, so TPOT comes out as 0 ms"
                } else {
                    continue;
                };
                out.push(SpecWarning { path: format!("hardware.{}", hw.name), message: message.into() });
            }
        }
        out
    }

    /// Where instances on the kernel-table model lean on extrapolation: shapes the tables do
    /// not hold, and steps or contexts beyond the measured ranges (one warning per hardware,
    /// parallelism and engine limits).
    fn kernel_warnings(&self) -> Vec<SpecWarning> {
        let mut seen: Vec<(usize, u32, u32, u32)> = Vec::new();
        let mut out = Vec::new();
        let longest = self.longest_request();
        for pool in &self.pools {
            for inst in &pool.instances {
                let hw = &self.hardware[inst.hardware];
                let PerfSpec::Kernels { gpu, backend, overheads, expert_parallel } = &hw.perf else { continue };
                let key = (inst.hardware, inst.tp, pool.engine.max_batch_tokens, pool.engine.max_seqs);
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                let Some(t) = crate::kernels::tables(&gpu.name, *backend) else { continue };
                let c = crate::kernels::KernelCost::new(&self.model, gpu, inst.tp, t, *overheads, *expert_parallel);
                let max_context = longest.map_or(0, |n| n.min(u64::from(u32::MAX)) as u32);
                let notes = c.extrapolations().iter().cloned().chain(c.range_extrapolations(
                    pool.engine.max_batch_tokens,
                    pool.engine.max_seqs,
                    max_context,
                ));
                for n in notes {
                    out.push(SpecWarning {
                        path: format!("hardware.{}", hw.name),
                        message: format!(
                            "{} (tp {}, pool {}): {}; zero-shot times there are extrapolated",
                            n.kernel, inst.tp, pool.name, n.detail
                        ),
                    });
                }
            }
        }
        out
    }

    /// The longest prompt plus output the workload can send, when its lengths are bounded.
    fn longest_request(&self) -> Option<u64> {
        let w = &self.workload;
        if w.trace.is_some() {
            return None;
        }
        let one = |p: &LengthSpec, o: &LengthSpec, prefix: Option<u64>| Some(bound(p)? + bound(o)? + prefix.unwrap_or(0));
        if w.classes.is_empty() {
            one(&w.prompt, &w.output, w.prefix.map(|x| u64::from(x.tokens)))
        } else {
            w.classes
                .iter()
                .map(|c| one(&c.prompt, &c.output, c.prefix.map(|x| u64::from(x.tokens))))
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .max()
        }
    }

    /// Instances whose KV cache cannot hold the longest request the workload can send them.
    fn kv_fit_warnings(&self, kv_blocks: &[u64]) -> Vec<SpecWarning> {
        let w = &self.workload;
        if w.trace.is_some() {
            return Vec::new();
        }
        let shapes: Vec<(Option<u64>, Option<u64>)> = if w.classes.is_empty() {
            vec![(bound(&w.prompt).map(|p| p + w.prefix.map_or(0, |x| u64::from(x.tokens))), bound(&w.output))]
        } else {
            w.classes
                .iter()
                .map(|c| (bound(&c.prompt).map(|p| p + c.prefix.map_or(0, |x| u64::from(x.tokens))), bound(&c.output)))
                .collect()
        };
        let mut warnings = Vec::new();
        let mut k = 0;
        for pool in &self.pools {
            for inst in &pool.instances {
                let capacity = kv_blocks[k] * u64::from(pool.engine.block_size.max(1));
                k += 1;
                // What one sequence holds at most there (the last output token is never fed back).
                let need = shapes
                    .iter()
                    .filter_map(|&(p, o)| match pool.role {
                        Role::Prefill => p,
                        Role::Decode | Role::Mixed => Some(p? + o? - 1),
                    })
                    .max();
                if let Some(need) = need
                    && need > capacity
                {
                    warnings.push(SpecWarning {
                        path: format!("pools.{}.instances.{}", pool.name, inst.name),
                        message: format!(
                            "its KV cache holds {capacity} tokens, but requests of up to {need} tokens can be routed here; they will be rejected (reason `exceeds_kv_capacity`). Give it more memory or KV capacity, or shorten the requests"
                        ),
                    });
                }
            }
        }
        warnings
    }
}

/// The longest length `l` can produce, when it is bounded.
fn bound(l: &LengthSpec) -> Option<u64> {
    match l {
        LengthSpec::Constant(n) => Some(u64::from(*n)),
        LengthSpec::Uniform { hi, .. } => Some(u64::from(*hi)),
        LengthSpec::Empirical(v) => v.iter().copied().max().map(u64::from),
        LengthSpec::Clamped { max, .. } => Some(u64::from(*max)),
        _ => None,
    }
}
