//! The batching rule: which sequences a step takes and how many tokens each computes. One
//! rule, used by the simulated engine ([`crate::instance`]), the fake engine of live mode's
//! tests and the calibration fit's model of its probes, so the three cannot drift apart.
//!
//! vLLM v1 builds a step under a token budget (`--max-num-batched-tokens`) and a sequence cap
//! (`--max-num-seqs`): the running sequences first, in admission order, each taking what it
//! has left to compute (one token when decoding; a prompt chunk of at most the budget left
//! with chunked prefill), then waiting sequences in arrival order while seats and tokens
//! last. Without chunked prefill a prompt runs whole or waits, and one longer than the whole
//! budget runs alone. SGLang's rule ([`crate::spec::Scheduler::Sglang`]) takes the same
//! chunks and caps; what it adds (prefill batches apart from decode batches, its KV
//! reservation) is the engine's ([`crate::instance`]).
//!
//! KV blocks are not the rule's: the engine checks them beside it (and preempts), the fake
//! and the fit have no KV limit.
//!
//! ```
//! use simctl_engine::batching::StepRule;
//! let rule = StepRule { max_batch_tokens: 2048, max_seqs: 256, chunked: true };
//! let mut step = rule.step();
//! assert_eq!(step.take_decodes(48), 48); // 48 decoding sequences, a token each
//! assert_eq!(step.take_running(3000, false), Some(2000)); // a prompt chunk: the budget left
//! assert!(!step.may_admit(49)); // no token left for a waiting sequence
//! ```

/// The limits of one step and whether prompts are chunked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepRule {
    /// Token budget of one step (`--max-num-batched-tokens`).
    pub max_batch_tokens: u32,
    /// Sequences in one step at most (`--max-num-seqs`).
    pub max_seqs: u32,
    /// Whether a prompt may be split across steps (`--enable-chunked-prefill`).
    pub chunked: bool,
}

impl StepRule {
    /// A step about to be built: its whole budget and every seat free.
    pub fn step(self) -> StepBudget {
        StepBudget { rule: self, tokens_left: self.max_batch_tokens, seqs: 0 }
    }

    /// The tokens a sequence with `remaining` tokens to compute takes of `budget` tokens
    /// left: one when decoding, else (chunked) as many as the budget allows, else (unchunked)
    /// all of them if they fit, or when it runs `alone` in an otherwise empty step. `None`:
    /// it does not run in this step.
    pub fn chunk(self, remaining: u32, budget: u32, alone: bool) -> Option<u32> {
        let chunk = if remaining == 1 || self.chunked {
            remaining.min(budget)
        } else if remaining <= budget || alone {
            remaining
        } else {
            return None;
        };
        (chunk > 0).then_some(chunk)
    }
}

/// What is left of one step's budget while it is built (see [`StepRule::step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepBudget {
    rule: StepRule,
    tokens_left: u32,
    seqs: u32,
}

impl StepBudget {
    /// Tokens not yet given to a sequence.
    pub fn tokens_left(&self) -> u32 {
        self.tokens_left
    }

    /// Sequences taken so far.
    pub fn seqs(&self) -> u32 {
        self.seqs
    }

    /// Whether the step has no sequence yet.
    pub fn is_empty(&self) -> bool {
        self.seqs == 0
    }

    /// The chunk a running sequence with `remaining` tokens to compute would take now
    /// (`None`: a seat or the tokens are lacking), without taking it. A running sequence
    /// runs `alone` only where the caller says so (the engine never lets an unchunked
    /// running prompt overrun the budget: it was admitted whole).
    pub fn offer_running(&self, remaining: u32, alone: bool) -> Option<u32> {
        if self.seqs >= self.rule.max_seqs {
            return None;
        }
        let chunk = self.rule.chunk(remaining, self.tokens_left, alone)?;
        (chunk <= self.tokens_left || alone).then_some(chunk)
    }

    /// Takes a running sequence with `remaining` tokens to compute: its chunk, charged to
    /// the step, or `None` (and nothing charged) when it does not run.
    pub fn take_running(&mut self, remaining: u32, alone: bool) -> Option<u32> {
        let chunk = self.offer_running(remaining, alone)?;
        self.charge(chunk);
        Some(chunk)
    }

    /// Takes up to `n` decoding sequences (a token each); returns how many run.
    pub fn take_decodes(&mut self, n: u32) -> u32 {
        let k = n.min(self.tokens_left).min(self.rule.max_seqs.saturating_sub(self.seqs));
        self.tokens_left -= k;
        self.seqs += k;
        k
    }

    /// Whether a waiting sequence may still be admitted, `running` sequences being admitted
    /// already (the cap counts admitted sequences, scheduled in this step or not).
    pub fn may_admit(&self, running: usize) -> bool {
        running < self.rule.max_seqs as usize && self.tokens_left > 0
    }

    /// The chunk a waiting sequence with `remaining` tokens to compute would take (`None`:
    /// it waits), without taking it; an unchunked prompt longer than the budget runs when
    /// the step is otherwise empty.
    pub fn offer_waiting(&self, remaining: u32) -> Option<u32> {
        self.rule.chunk(remaining, self.tokens_left, self.is_empty())
    }

    /// Charges an admitted sequence's chunk (see [`StepBudget::offer_waiting`]).
    pub fn charge(&mut self, chunk: u32) {
        self.tokens_left = self.tokens_left.saturating_sub(chunk);
        self.seqs += 1;
    }
}

/// Of the decodes of a step that read prefix-cached context, as `(sharing key, cached
/// tokens)`: the cached tokens that are read at the cached rate. The blocks of a shared
/// prefix come from memory once a step: the reader with the most cached tokens of each key
/// pays for them as for any context, the others at the cached rate
/// ([`crate::cost::BatchShape::decode_cached_tokens`] minus this). Sorts `readers`.
pub fn first_readers_tokens(readers: &mut [(u64, u32)]) -> u64 {
    readers.sort_unstable();
    let mut first = 0u64;
    for (k, w) in readers.iter().enumerate() {
        // Sorted by key, then cached tokens: the last of each key has the most.
        if readers.get(k + 1).is_none_or(|n| n.0 != w.0) {
            first += u64::from(w.1);
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: StepRule = StepRule { max_batch_tokens: 100, max_seqs: 4, chunked: true };

    #[test]
    fn decodes_take_a_token_and_prompts_the_budget_left() {
        let mut s = RULE.step();
        assert_eq!(s.take_decodes(2), 2);
        assert_eq!(s.take_running(500, false), Some(98));
        assert_eq!(s.tokens_left(), 0);
        assert_eq!(s.take_running(1, false), None, "no token left");
        assert!(!s.may_admit(3));
        assert_eq!(s.seqs(), 3);
    }

    #[test]
    fn the_sequence_cap_holds() {
        let mut s = RULE.step();
        assert_eq!(s.take_decodes(10), 4);
        assert_eq!(s.take_running(1, false), None);
        assert!(!s.may_admit(4));
        assert!(RULE.step().may_admit(3));
    }

    #[test]
    fn unchunked_prompts_run_whole_or_alone() {
        let rule = StepRule { chunked: false, ..RULE };
        let mut s = rule.step();
        assert_eq!(s.offer_waiting(150), Some(150), "longer than the budget: alone in an empty step");
        assert_eq!(s.take_decodes(1), 1);
        assert_eq!(s.offer_waiting(150), None, "not beside a decode");
        assert_eq!(s.offer_waiting(99), Some(99));
        s.charge(99);
        assert_eq!(s.tokens_left(), 0);
        assert_eq!(rule.chunk(1, 0, false), None, "a decode needs a token");
    }

    #[test]
    fn the_first_reader_of_each_prefix_pays_in_full() {
        let mut r = [(7, 100), (3, 50), (7, 300), (3, 20), (9, 5)];
        assert_eq!(first_readers_tokens(&mut r), 300 + 50 + 5);
        assert_eq!(first_readers_tokens(&mut []), 0);
    }
}
