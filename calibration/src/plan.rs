//! The probe plan: which requests a calibration sends, in which order, and how long that
//! should take.
//!
//! Every length is exact: prompts are token-id lists and `ignore_eos` with `max_tokens`
//! fixes the output. Prompt plus output always stays within the engine's max model length
//! (beyond it vLLM silently cuts the output short), concurrent probes stay within half of
//! the KV cache (no preemption), and each request gets a prompt of its own from the run's
//! seed, since the engine's prefix cache outlives runs and has no reset.

use std::time::Duration;

use simctl_engine::profile::ProbeClass;

/// Shortest prompt of the prefill probes, in tokens.
pub const MIN_PROMPT: u32 = 16;
/// Shared prefix of the shared-prefix decode probes, in tokens (rounded down to whole
/// blocks, at most a quarter of the context).
pub const SHARED_PREFIX: u32 = 1024;
/// Tokens of each stream's own after the shared prefix.
pub const SHARED_SUFFIX: u32 = 16;
/// Context of the short-context decode probes, in tokens.
pub const SHORT_CONTEXT: u32 = 32;
/// Longest context of the long-context decode probes: long enough that attention over the
/// KV cache shows next to the per-sequence cost, short enough for a CPU engine.
pub const LONG_CONTEXT: u32 = 1024;
/// New tokens after the cached prefix of a prefix probe.
pub const PREFIX_SUFFIX: u32 = 64;
/// New tokens after the cached prefix of the long-tail prefix probes: enough that attention of
/// the new tokens over the prefix (`c3`, per new token × context) shows beside the per-token
/// cost, which a 64-token tail does not separate from the quadratic term of long chunks.
pub const PREFIX_LONG_SUFFIX: u32 = 512;
/// Smallest step budget considered: below it an engine would be unusable for serving.
pub const MIN_BUDGET_CANDIDATE: u32 = 256;
/// vLLM v1's `max_num_batched_tokens` when none is given (the CPU backend and the OpenAI
/// server on smaller GPUs use 2048): the provisional budget of a plan.
pub const VLLM_DEFAULT_BATCH_TOKENS: u32 = 2048;
/// Repeats of the prompts either side of a candidate step budget: the jump of one step
/// is a few percent of the TTFT, so its medians need more runs than other points.
pub const BUDGET_REPEATS: u32 = 7;
/// Decode streams beside the chunking probe's prompt (two, so one late token does not decide).
pub const CHUNK_STREAMS: u32 = 2;
/// Share of the KV cache concurrent probes may fill, so that nothing is preempted.
const KV_SHARE: f64 = 0.5;

/// What the plan needs to know about the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineFacts {
    /// Served model.
    pub model: String,
    /// Prompt plus output tokens at most.
    pub max_model_len: u32,
    /// Tokens per KV block.
    pub block_size: u32,
    /// KV blocks.
    pub kv_blocks: u64,
    /// Sequences per step at most.
    pub max_seqs: u32,
}

/// How big a plan to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Fewer points and repeats (a few minutes on a CPU engine).
    pub quick: bool,
    /// A step budget given on the command line, tested along with the usual candidates.
    pub budget_hint: Option<u32>,
}

/// What a probe sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// One request of `prompt` tokens and one output token on an idle engine.
    Prefill {
        /// Prompt tokens.
        prompt: u32,
    },
    /// `streams` requests at once, each `context` prompt tokens and `output` output tokens.
    Decode {
        /// Concurrent streams.
        streams: u32,
        /// Prompt tokens of each.
        context: u32,
        /// Output tokens of each.
        output: u32,
    },
    /// Decode streams as above, then one request of `prompt` tokens once they all decode.
    Mixed {
        /// Concurrent streams.
        streams: u32,
        /// Prompt tokens of each stream.
        context: u32,
        /// Output tokens of each stream.
        output: u32,
        /// Prompt tokens of the request that arrives.
        prompt: u32,
    },
    /// Decode streams, then the longest prompt: how many long steps its prefill takes (seen
    /// in the streams' gaps) tells how the engine chunks it, so where its step budget is.
    Chunks {
        /// Concurrent streams.
        streams: u32,
        /// Prompt tokens of each stream.
        context: u32,
        /// Prompt tokens of the request that arrives.
        prompt: u32,
    },
    /// A request of `prefix` tokens (left in the prefix cache), then `streams` requests at
    /// once of that prefix plus `suffix` tokens of their own, `output` tokens each: the price
    /// of decode context that many sequences read from the same blocks.
    SharedDecode {
        /// Concurrent streams.
        streams: u32,
        /// Shared tokens (whole KV blocks).
        prefix: u32,
        /// Tokens of each stream's own.
        suffix: u32,
        /// Output tokens of each.
        output: u32,
    },
    /// A request of `prefix` tokens, then one of the same `prefix` plus `suffix` new tokens.
    Prefix {
        /// Shared tokens (whole KV blocks).
        prefix: u32,
        /// New tokens of the second request.
        suffix: u32,
    },
}

/// One probe point, repeated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Class.
    pub class: ProbeClass,
    /// What it sends.
    pub kind: ProbeKind,
    /// Times it is run (the median is kept).
    pub repeats: u32,
    /// Kept out of the fit for the self-check.
    pub held_out: bool,
}

impl Probe {
    /// A short description, e.g. `decode n=8 ctx=32 out=64`.
    pub fn label(&self) -> String {
        match self.kind {
            ProbeKind::Prefill { prompt } => format!("prefill p={prompt}"),
            ProbeKind::Decode { streams, context, output } => format!("decode n={streams} ctx={context} out={output}"),
            ProbeKind::Mixed { streams, context, prompt, .. } => format!("mixed n={streams} ctx={context} p={prompt}"),
            ProbeKind::Chunks { streams, prompt, .. } => format!("chunks n={streams} p={prompt}"),
            ProbeKind::Prefix { prefix, suffix } => format!("prefix cached={prefix} new={suffix}"),
            ProbeKind::SharedDecode { streams, prefix, suffix, output } => {
                format!("shared-decode n={streams} prefix={prefix} new={suffix} out={output}")
            }
        }
    }

    /// Requests one run of the probe sends.
    pub fn requests(&self) -> u32 {
        match self.kind {
            ProbeKind::Prefill { .. } => 1,
            ProbeKind::Decode { streams, .. } => streams,
            ProbeKind::Mixed { streams, .. } | ProbeKind::Chunks { streams, .. } => streams + 1,
            ProbeKind::Prefix { .. } => 2,
            ProbeKind::SharedDecode { streams, .. } => streams + 1,
        }
    }
}

/// A rough time model from the warm-up, for estimates and for pacing mixed probes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rough {
    /// TTFT of a minimal prompt, seconds.
    pub ttft_s: f64,
    /// Seconds per prefill token.
    pub prefill_token_s: f64,
    /// One decode step of one sequence, seconds.
    pub decode_step_s: f64,
    /// Extra seconds per decode step and sequence.
    pub decode_seq_s: f64,
}

impl Rough {
    /// Estimated time to prefill `tokens` prompt tokens.
    pub fn prefill_s(&self, tokens: u64) -> f64 {
        self.ttft_s + self.prefill_token_s * tokens as f64
    }
    /// Estimated decode step of `n` sequences.
    pub fn step_s(&self, n: u32) -> f64 {
        self.decode_step_s + self.decode_seq_s * f64::from(n)
    }
}

/// The probes, in the order they run.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Probes, by class in plan order.
    pub probes: Vec<Probe>,
    /// Step budgets the fit chooses from (the budget is measured as the one whose chunking
    /// explains the prefill times best).
    pub budget_candidates: Vec<u32>,
    /// Output tokens of decode and mixed probes beyond the steps their prefills take.
    pub window: u32,
    /// The engine's facts the plan was made for.
    pub facts: EngineFacts,
}

/// `n` values from `lo` to `hi`, evenly spaced on a log scale, rounded and distinct.
fn log_spaced(lo: u32, hi: u32, n: usize) -> Vec<u32> {
    let (a, b) = (f64::from(lo.max(1)).ln(), f64::from(hi.max(lo)).ln());
    let mut v: Vec<u32> = (0..n).map(|i| (a + (b - a) * i as f64 / (n.max(2) - 1) as f64).exp().round() as u32).collect();
    v.dedup();
    v
}

/// The number of steps a prompt of `prompt` tokens takes next to `streams` decodes when the
/// step budget is `budget`: chunks of `budget − streams` tokens, the last one possibly so
/// small that its step looks like a decode step; so `(full chunks, all chunks)`.
pub fn chunk_steps(prompt: u32, budget: u32, streams: u32) -> (u32, u32) {
    let chunk = budget.saturating_sub(streams).max(1);
    (prompt / chunk, prompt.div_ceil(chunk))
}

impl Plan {
    /// The plan for an engine.
    pub fn new(facts: &EngineFacts, opt: PlanOptions) -> Plan {
        let f = facts.clone();
        let max_prompt = f.max_model_len.saturating_sub(1).max(MIN_PROMPT);
        let mut probes = Vec::new();
        let repeats = 3;

        // Prefill: log-spaced prompt lengths, and each candidate budget with one token more
        // (a budget shows as one more step one token past it).
        let points = log_spaced(MIN_PROMPT, max_prompt, if opt.quick { 7 } else { 12 });
        let held = |i: usize| if opt.quick { i == 2 } else { i % 4 == 2 };
        for (i, &p) in points.iter().enumerate() {
            probes.push(Probe { class: ProbeClass::Prefill, kind: ProbeKind::Prefill { prompt: p }, repeats, held_out: held(i) });
        }
        let mut budget_candidates: Vec<u32> =
            std::iter::successors(Some(MIN_BUDGET_CANDIDATE), |b| b.checked_mul(2)).take_while(|&b| b < max_prompt).collect();
        if let Some(h) = opt.budget_hint.filter(|&h| h > 0 && h < max_prompt) {
            budget_candidates.push(h);
        }
        budget_candidates.sort_unstable();
        budget_candidates.dedup();
        for &b in &budget_candidates {
            for p in [b, b + 1] {
                if let Some(i) = points.iter().position(|&x| x == p) {
                    // Needed for the budget: not held out, and repeated as much.
                    let probe = probes.iter_mut().filter(|q| q.class == ProbeClass::Prefill).nth(i).expect("one probe per point");
                    probe.held_out = false;
                    probe.repeats = BUDGET_REPEATS;
                } else {
                    probes.push(Probe {
                        class: ProbeClass::Prefill,
                        kind: ProbeKind::Prefill { prompt: p },
                        repeats: BUDGET_REPEATS,
                        held_out: false,
                    });
                }
            }
        }
        // "No chunking within the context" is a candidate too.
        budget_candidates.push(f.max_model_len.max(max_prompt + 1));
        // How a long prompt is chunked, seen from streams decoding beside it. Its length,
        // the no-chunking budget less the streams and 2, splits into whole chunks at every
        // power-of-two budget (the last chunk is never a token or two that looks like a
        // decode step), so each candidate predicts its own number of long steps.
        if f.max_seqs >= 2 {
            let prompt = max_prompt.min(budget_candidates.last().copied().unwrap_or(max_prompt).saturating_sub(CHUNK_STREAMS + 2));
            let kind = ProbeKind::Chunks { streams: CHUNK_STREAMS, context: SHORT_CONTEXT.min(f.max_model_len / 8).max(1), prompt };
            probes.push(Probe { class: ProbeClass::Mixed, kind, repeats, held_out: false });
        }

        // Decode: batch sizes log-spaced to max_num_seqs, short and long contexts.
        let window = if opt.quick { 24 } else { 48 };
        let mut sizes: Vec<u32> =
            std::iter::successors(Some(1u32), |n| n.checked_mul(if opt.quick { 4 } else { 2 })).take_while(|&n| n < f.max_seqs).collect();
        sizes.push(f.max_seqs.max(1));
        sizes.dedup();
        let kv_tokens = (f.kv_blocks as f64 * f64::from(f.block_size) * KV_SHARE) as u64;
        let mut decode = Vec::new();
        for &n in &sizes {
            let long = LONG_CONTEXT.min(f.max_model_len / 4).min((kv_tokens / u64::from(n)).saturating_sub(u64::from(window) * 4) as u32);
            let mut contexts = vec![SHORT_CONTEXT.min(f.max_model_len / 8).max(1)];
            if long > 4 * contexts[0] {
                contexts.push(long);
            }
            for ctx in contexts {
                decode.push(ProbeKind::Decode { streams: n, context: ctx, output: 0 });
            }
        }
        let mid = sizes[sizes.len() / 2];
        let n_decode = decode.len();
        for kind in decode {
            let held_out =
                n_decode >= 4 && matches!(kind, ProbeKind::Decode { streams, context, .. } if streams == mid && context <= SHORT_CONTEXT);
            probes.push(Probe { class: ProbeClass::Decode, kind, repeats: if opt.quick { 1 } else { 2 }, held_out });
        }
        // Shared-prefix decode: streams whose context is mostly one cached prefix (whole
        // blocks), at a few batch sizes: what reading shared blocks costs.
        let prefix = (SHARED_PREFIX.min(f.max_model_len / 4) / f.block_size.max(1)) * f.block_size.max(1);
        if prefix > 0 {
            let mut ns: Vec<u32> = if opt.quick { vec![32] } else { vec![8, 32, 128] };
            ns.iter_mut().for_each(|n| *n = (*n).min(f.max_seqs.max(1)));
            ns.dedup();
            for n in ns {
                let kind = ProbeKind::SharedDecode { streams: n, prefix, suffix: SHARED_SUFFIX, output: 0 };
                probes.push(Probe { class: ProbeClass::Decode, kind, repeats: if opt.quick { 1 } else { 2 }, held_out: false });
            }
        }

        // Mixed: a prefill arriving while streams decode, when the engine batches at all.
        if f.max_seqs >= 2 {
            // At least two streams: the step is read from each stream's gaps, and one
            // stream alone is at the mercy of one late token.
            let mut ns = vec![(f.max_seqs / 4).max(2)];
            if !opt.quick {
                ns.insert(0, (f.max_seqs / 16).max(2));
            }
            ns.dedup();
            let prompts: Vec<u32> = [256, 1024].into_iter().map(|p: u32| p.min(f.max_model_len / 4).max(MIN_PROMPT)).collect();
            let mut mixed = Vec::new();
            for &n in &ns {
                for &p in &prompts {
                    mixed.push(ProbeKind::Mixed { streams: n, context: SHORT_CONTEXT, output: 0, prompt: p });
                }
            }
            mixed.dedup();
            let k = mixed.len();
            for (i, kind) in mixed.into_iter().enumerate() {
                probes.push(Probe { class: ProbeClass::Mixed, kind, repeats: 3, held_out: !opt.quick && k >= 3 && i == k - 1 });
            }
        }

        // Prefix: a cached prefix of whole blocks, then a short new tail.
        let bs = f.block_size.max(1);
        let room = max_prompt.saturating_sub(PREFIX_SUFFIX);
        let align = |t: u32| (t / bs) * bs;
        let mut prefixes: Vec<u32> =
            if opt.quick { vec![align(room / 8), align(room / 2)] } else { vec![align(room / 8), align(room / 4), align(room / 2)] };
        prefixes.retain(|&p| p >= bs);
        prefixes.dedup();
        let k = prefixes.len();
        for (i, prefix) in prefixes.into_iter().enumerate() {
            probes.push(Probe {
                class: ProbeClass::Prefix,
                kind: ProbeKind::Prefix { prefix, suffix: PREFIX_SUFFIX },
                repeats,
                held_out: k >= 3 && i == 1,
            });
        }
        // Then two long tails, at two prefix lengths: a cached prefix followed by a prompt's
        // worth of new tokens, as requests behind a shared system prompt send (the shared-prefix
        // validation measured such prefills 10-25% faster than a fit without them priced them).
        if !opt.quick {
            let room = max_prompt.saturating_sub(PREFIX_LONG_SUFFIX);
            let mut long: Vec<u32> = vec![align(room / 4), align(room / 2)];
            long.retain(|&p| p >= bs);
            long.dedup();
            for prefix in long {
                probes.push(Probe {
                    class: ProbeClass::Prefix,
                    kind: ProbeKind::Prefix { prefix, suffix: PREFIX_LONG_SUFFIX },
                    repeats,
                    held_out: false,
                });
            }
        }
        let mut plan = Plan { probes, budget_candidates, window, facts: f };
        plan.set_budget(opt.budget_hint.unwrap_or(VLLM_DEFAULT_BATCH_TOKENS));
        plan
    }

    /// Sets the output lengths of decode and mixed probes for a step budget of `budget`
    /// (enough for every stream's prefill plus [`Plan::window`] steps with all of them
    /// decoding, within the max model length), and keeps each mixed probe's prefill within
    /// one step. Called again once the budget is measured.
    pub fn set_budget(&mut self, budget: u32) {
        let (window, len) = (self.window, self.facts.max_model_len);
        let output = |n: u32, ctx: u32, extra: u32| {
            let prefill_steps = (u64::from(n) * u64::from(ctx)).div_ceil(u64::from(budget.max(1))) as u32;
            (prefill_steps + window + extra).min(len.saturating_sub(ctx + 1)).max(2)
        };
        for p in &mut self.probes {
            match &mut p.kind {
                ProbeKind::Decode { streams, context, output: o } => *o = output(*streams, *context, 0),
                ProbeKind::SharedDecode { streams, prefix, suffix, output: o } => {
                    *o = output(*streams, *suffix, 0).min(len.saturating_sub(*prefix + *suffix + 1)).max(2)
                }
                // The arriving prefill fits one step with the decodes, so that the step read
                // from the streams' gaps is the whole of it; it waits a few steps first.
                ProbeKind::Mixed { streams, context, output: o, prompt } => {
                    *prompt = (*prompt).min(budget.saturating_sub(*streams)).max(1);
                    *o = output(*streams, *context, 8)
                }
                _ => {}
            }
        }
    }

    /// Estimated run time of the plan.
    pub fn estimate(&self, r: &Rough) -> Duration {
        let mut s = 0.0;
        for p in &self.probes {
            let once = match p.kind {
                ProbeKind::Prefill { prompt } => r.prefill_s(u64::from(prompt)),
                ProbeKind::Decode { streams, context, output } | ProbeKind::Mixed { streams, context, output, .. } => {
                    r.prefill_s(u64::from(streams) * u64::from(context)) + f64::from(output) * r.step_s(streams)
                }
                ProbeKind::Prefix { prefix, suffix } => r.prefill_s(u64::from(prefix)) + r.prefill_s(u64::from(suffix)),
                ProbeKind::Chunks { prompt, .. } => 2.0 * r.prefill_s(u64::from(prompt)),
                ProbeKind::SharedDecode { streams, prefix, suffix, output } => {
                    r.prefill_s(u64::from(prefix))
                        + r.prefill_s(u64::from(streams) * u64::from(suffix))
                        + f64::from(output) * r.step_s(streams)
                }
            };
            s += once * f64::from(p.repeats);
        }
        Duration::from_secs_f64(s)
    }

    /// Requests the plan sends.
    pub fn requests(&self) -> u32 {
        self.probes.iter().map(|p| p.requests() * p.repeats).sum()
    }

    /// Probes of a class.
    pub fn of(&self, class: ProbeClass) -> impl Iterator<Item = &Probe> {
        self.probes.iter().filter(move |p| p.class == class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vllm_cpu() -> EngineFacts {
        EngineFacts { model: "tiny-llama".into(), max_model_len: 4096, block_size: 128, kv_blocks: 4096, max_seqs: 128 }
    }

    #[test]
    fn every_request_fits_the_context_and_half_the_kv_cache() {
        for quick in [false, true] {
            let f = vllm_cpu();
            let plan = Plan::new(&f, PlanOptions { quick, budget_hint: None });
            for p in &plan.probes {
                let (tokens, longest) = match p.kind {
                    ProbeKind::Prefill { prompt } => (u64::from(prompt) + 1, prompt + 1),
                    ProbeKind::Decode { streams, context, output } => (u64::from(streams) * u64::from(context + output), context + output),
                    ProbeKind::Mixed { streams, context, output, prompt } => {
                        (u64::from(streams) * u64::from(context + output) + u64::from(prompt) + 1, (context + output).max(prompt + 1))
                    }
                    ProbeKind::Prefix { prefix, suffix } => (u64::from(prefix + suffix) + 1, prefix + suffix + 1),
                    ProbeKind::SharedDecode { streams, prefix, suffix, output } => {
                        (u64::from(prefix) + u64::from(streams) * u64::from(suffix + output), prefix + suffix + output)
                    }
                    // Its streams' outputs are set when it runs, within the context.
                    ProbeKind::Chunks { streams, prompt, .. } => {
                        (u64::from(streams) * u64::from(f.max_model_len) + u64::from(prompt) + 1, prompt + 1)
                    }
                };
                assert!(longest <= f.max_model_len, "{}", p.label());
                assert!(tokens <= f.kv_blocks * u64::from(f.block_size) / 2, "{}", p.label());
                assert!(p.repeats >= 1);
                if let ProbeKind::Prefix { prefix, .. } = p.kind {
                    assert_eq!(prefix % f.block_size, 0, "whole blocks are cached");
                }
            }
            // Attention of new tokens over a cached prefix is measured apart from the quadratic
            // term: long tails behind two prefix lengths (not in the quick plan of `--check`).
            let long: Vec<u32> = plan
                .of(ProbeClass::Prefix)
                .filter_map(|p| match p.kind {
                    ProbeKind::Prefix { prefix, suffix } if suffix == PREFIX_LONG_SUFFIX => Some(prefix),
                    _ => None,
                })
                .collect();
            assert_eq!(long.len(), if quick { 0 } else { 2 }, "{long:?}");
            for c in ProbeClass::ALL {
                assert!(plan.of(c).count() >= 2, "{c:?}");
                assert!(plan.of(c).any(|p| !p.held_out));
            }
            assert!(plan.of(ProbeClass::Prefill).all(|p| p.repeats >= 3), "the issue asks for three repeats at least");
            // Both sides of the vLLM CPU default budget are measured.
            let prompts: Vec<u32> = plan
                .of(ProbeClass::Prefill)
                .filter_map(|p| if let ProbeKind::Prefill { prompt } = p.kind { Some(prompt) } else { None })
                .collect();
            assert!(prompts.contains(&2048) && prompts.contains(&2049) && prompts.contains(&4095) && prompts.contains(&16));
            assert_eq!(plan.budget_candidates, [256, 512, 1024, 2048, 4096]);
        }
        let full = Plan::new(&vllm_cpu(), PlanOptions { quick: false, budget_hint: None });
        let quick = Plan::new(&vllm_cpu(), PlanOptions { quick: true, budget_hint: None });
        assert!(quick.requests() < full.requests());
    }

    #[test]
    fn each_candidate_budget_chunks_the_longest_prompt_into_a_different_number_of_steps() {
        let plan = Plan::new(&vllm_cpu(), PlanOptions { quick: true, budget_hint: None });
        let Some(ProbeKind::Chunks { streams, prompt, .. }) =
            plan.probes.iter().map(|p| p.kind).find(|k| matches!(k, ProbeKind::Chunks { .. }))
        else {
            panic!("no chunking probe")
        };
        assert_eq!(chunk_steps(prompt, 2048, streams), (2, 2));
        let ranges: Vec<(u32, u32)> = plan.budget_candidates.iter().map(|&b| chunk_steps(prompt, b, streams)).collect();
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                assert!(a.1 < b.0 || b.1 < a.0, "{ranges:?}");
            }
        }
    }

    #[test]
    fn decode_outputs_cover_the_prefills_and_the_window() {
        let mut plan = Plan::new(&vllm_cpu(), PlanOptions { quick: false, budget_hint: None });
        plan.set_budget(256);
        let big = plan.of(ProbeClass::Decode).find_map(|p| match p.kind {
            ProbeKind::Decode { streams: 128, context, output } if context > SHORT_CONTEXT => Some((context, output)),
            _ => None,
        });
        let (ctx, out) = big.unwrap();
        assert!(out >= (128 * ctx).div_ceil(256) + plan.window, "{ctx} {out}");
    }
}
