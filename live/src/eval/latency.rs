//! The latency matrix: cold (new prefix) and warm (cached prefix) requests at each decode
//! length, with token-id prompts and `ignore_eos` so that lengths are exact.

use simctl_engine::rng::mix;

/// The lab's decode lengths.
pub const DECODE_LENGTHS: [u32; 3] = [128, 512, 2048];
/// Prompt length of the latency requests: four of vLLM's 128-token CPU blocks, 32 of its
/// 16-token GPU blocks.
pub const DEFAULT_PROMPT_TOKENS: u32 = 512;
/// The part of a warm prompt that is new; the rest is the shared, cached prefix.
pub const WARM_TAIL_TOKENS: u32 = 16;
/// Requests per decode length and cache case.
pub const DEFAULT_REPEATS: u32 = 3;
/// Prompt token ids are drawn from this range: past the special tokens every tokenizer puts
/// first, and inside any real model's vocabulary.
const TOKEN_IDS: std::ops::Range<u32> = 10..1000;

/// Whether a request's prefix is new to the engine or cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CacheCase {
    /// A prompt no earlier request shared.
    Cold,
    /// A prompt whose prefix an earlier request left in the prefix cache.
    Warm,
}

impl CacheCase {
    /// `cold` or `warm`, as latency rows write it.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheCase::Cold => "cold",
            CacheCase::Warm => "warm",
        }
    }
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyPlan {
    /// Prompt tokens of every request (cut to a quarter of the context when it is small).
    pub prompt_tokens: u32,
    /// Output lengths to measure.
    pub decode_lengths: Vec<u32>,
    /// Requests per length and case.
    pub repeats: u32,
    /// Seeds the prompts. The engine's prefix cache outlives a run and cannot be reset, so a
    /// new nonce per run keeps cold prompts cold.
    pub nonce: u64,
}

impl Default for LatencyPlan {
    fn default() -> Self {
        LatencyPlan { prompt_tokens: DEFAULT_PROMPT_TOKENS, decode_lengths: DECODE_LENGTHS.to_vec(), repeats: DEFAULT_REPEATS, nonce: 0 }
    }
}

/// One request of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRequest {
    /// `cold-128-0`, ...
    pub id: String,
    /// Cache case.
    pub case: CacheCase,
    /// The decode length it stands for.
    pub target_tokens: u32,
    /// Output tokens asked for (the target, or less to fit the context).
    pub max_tokens: u32,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
}

/// The requests to send, in order, and what had to change to fit the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Untimed requests that put the warm prefix into the cache.
    pub priming: Vec<PlannedRequest>,
    /// Timed requests.
    pub requests: Vec<PlannedRequest>,
    /// What was cut to fit `max_model_len`, as sentences.
    pub notes: Vec<String>,
}

/// `n` prompt token ids drawn from `seed`: a new seed gives a prompt that shares no block
/// with earlier ones (the engine's prefix cache outlives runs). Calibration uses them too.
pub fn prompt_token_ids(seed: u64, n: u32) -> Vec<u32> {
    let span = u64::from(TOKEN_IDS.end - TOKEN_IDS.start);
    (0..u64::from(n)).map(|i| TOKEN_IDS.start + (mix(seed ^ mix(i)) % span) as u32).collect()
}

impl LatencyPlan {
    /// The schedule for an engine whose context holds `max_model_len` tokens (`None`:
    /// unknown, nothing is cut). Each repeat sends, per length, a cold then a warm request.
    pub fn schedule(&self, max_model_len: Option<u32>) -> Schedule {
        let mut notes = Vec::new();
        let mut prompt_len = self.prompt_tokens.max(WARM_TAIL_TOKENS + 1);
        if let Some(m) = max_model_len {
            let cap = (m / 4).max(2);
            if prompt_len > cap {
                notes.push(format!("prompts cut from {prompt_len} to {cap} tokens: the engine's max_model_len is {m}"));
                prompt_len = cap;
            }
        }
        let tail = WARM_TAIL_TOKENS.min(prompt_len / 2);
        let shared = prompt_token_ids(mix(self.nonce ^ 0x5741_524d), prompt_len - tail);
        let warm_prompt = |k: u64| [shared.clone(), prompt_token_ids(mix(self.nonce ^ mix(k) ^ 0x7461_696c), tail)].concat();
        let cold_prompt = |k: u64| prompt_token_ids(mix(self.nonce ^ mix(k) ^ 0x636f_6c64), prompt_len);
        let mut requests = Vec::new();
        let mut k = 0u64;
        for &target in &self.decode_lengths {
            let room = max_model_len.map_or(u32::MAX, |m| m.saturating_sub(prompt_len));
            if target > room {
                notes.push(format!(
                    "decode {target} cut to {room} tokens: the prompt ({prompt_len}) plus {target} exceeds max_model_len {}",
                    max_model_len.unwrap_or_default()
                ));
            }
        }
        for r in 0..self.repeats {
            for &target in &self.decode_lengths {
                let room = max_model_len.map_or(u32::MAX, |m| m.saturating_sub(prompt_len));
                let max_tokens = target.min(room).max(1);
                for (case, prompt) in [(CacheCase::Cold, cold_prompt(k)), (CacheCase::Warm, warm_prompt(k))] {
                    requests.push(PlannedRequest {
                        id: format!("{}-{target}-{r}", case.as_str()),
                        case,
                        target_tokens: target,
                        max_tokens,
                        prompt,
                    });
                }
                k += 1;
            }
        }
        let priming = if requests.iter().any(|r| r.case == CacheCase::Warm) {
            vec![PlannedRequest {
                id: "prime".into(),
                case: CacheCase::Warm,
                target_tokens: 1,
                max_tokens: 1,
                prompt: warm_prompt(u64::MAX),
            }]
        } else {
            Vec::new()
        };
        Schedule { priming, requests, notes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_prompts_share_a_prefix_and_cold_ones_share_nothing() {
        let s = LatencyPlan { nonce: 7, ..LatencyPlan::default() }.schedule(Some(4096));
        assert_eq!(s.requests.len(), 3 * 3 * 2);
        assert!(s.notes.is_empty(), "{:?}", s.notes);
        let shared = (DEFAULT_PROMPT_TOKENS - WARM_TAIL_TOKENS) as usize;
        let warm: Vec<_> = s.requests.iter().filter(|r| r.case == CacheCase::Warm).collect();
        let cold: Vec<_> = s.requests.iter().filter(|r| r.case == CacheCase::Cold).collect();
        assert!(warm.iter().all(|r| r.prompt[..shared] == s.priming[0].prompt[..shared] && r.prompt.len() == 512));
        assert!(warm.windows(2).all(|w| w[0].prompt != w[1].prompt), "tails differ");
        for (i, a) in cold.iter().enumerate() {
            assert_ne!(a.prompt[..16], s.priming[0].prompt[..16]);
            for b in &cold[i + 1..] {
                assert_ne!(a.prompt[..16], b.prompt[..16], "{} and {} share a first block", a.id, b.id);
            }
        }
        assert!(s.requests.iter().flat_map(|r| &r.prompt).all(|t| TOKEN_IDS.contains(t)));
        assert_eq!(s.requests.iter().map(|r| r.max_tokens).collect::<Vec<_>>()[..6], [128, 128, 512, 512, 2048, 2048]);
        let other = LatencyPlan { nonce: 8, ..LatencyPlan::default() }.schedule(Some(4096));
        assert_ne!(other.requests[0].prompt, s.requests[0].prompt, "a new nonce gives new prompts");
    }

    #[test]
    fn lengths_are_cut_to_fit_the_context() {
        let s = LatencyPlan::default().schedule(Some(2048));
        assert!(s.requests.iter().all(|r| r.prompt.len() as u32 + r.max_tokens <= 2048));
        let long: Vec<_> = s.requests.iter().filter(|r| r.target_tokens == 2048).collect();
        assert!(long.iter().all(|r| r.max_tokens == 2048 - 512));
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
        assert!(s.notes[0].contains("decode 2048 cut to 1536"), "{:?}", s.notes);
        let tiny = LatencyPlan::default().schedule(Some(400));
        assert!(tiny.requests.iter().all(|r| r.prompt.len() == 100 && r.prompt.len() as u32 + r.max_tokens <= 400));
        assert!(tiny.notes[0].contains("prompts cut from 512 to 100"), "{:?}", tiny.notes);
        let unknown = LatencyPlan::default().schedule(None);
        assert!(unknown.requests.iter().all(|r| r.max_tokens == r.target_tokens) && unknown.notes.is_empty());
    }
}
