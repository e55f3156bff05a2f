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
//! assert_eq!(step.take_running(3000), Some(2000)); // a prompt chunk: the budget left
//! assert!(!step.may_admit(49)); // no token left for a waiting sequence
//! ```
//!
//! Decodes that read the same prefix-cached blocks in a step pay for them once
//! ([`blocks_read_again`]).

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
    /// never overruns the budget (an unchunked prompt was admitted whole, alone if need be).
    pub fn offer_running(&self, remaining: u32) -> Option<u32> {
        if self.seqs >= self.rule.max_seqs {
            return None;
        }
        self.rule.chunk(remaining, self.tokens_left, false)
    }

    /// Takes a running sequence with `remaining` tokens to compute: its chunk, charged to
    /// the step, or `None` (and nothing charged) when it does not run.
    pub fn take_running(&mut self, remaining: u32) -> Option<u32> {
        let chunk = self.offer_running(remaining)?;
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

/// Of the decodes of a step that read prefix-cached context, the cached blocks read more
/// than once. Prefix caching gives every sequence with a cached prefix the very blocks that
/// hold it, so a block several decodes read comes from memory once a step: its first read is
/// priced as any context, each further read at the cached rate
/// ([`crate::cost::BatchShape::decode_cached_tokens`]). `blocks(r)` are reader `r`'s cached
/// blocks in order; a block fixes every block before it (a prefix chain), so the distinct
/// blocks are those of a trie of the readers and the blocks read again are the sum of the
/// common prefixes of neighbours in sorted order. Sorts `readers`.
pub fn blocks_read_again<'a, R, T: Ord + 'a>(readers: &mut [R], blocks: impl Fn(&R) -> &'a [T]) -> u64 {
    readers.sort_unstable_by(|a, b| blocks(a).cmp(blocks(b)));
    readers.windows(2).map(|w| blocks(&w[0]).iter().zip(blocks(&w[1])).take_while(|(x, y)| x == y).count() as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: StepRule = StepRule { max_batch_tokens: 100, max_seqs: 4, chunked: true };

    #[test]
    fn decodes_take_a_token_and_prompts_the_budget_left() {
        let mut s = RULE.step();
        assert_eq!(s.take_decodes(2), 2);
        assert_eq!(s.take_running(500), Some(98));
        assert_eq!(s.tokens_left(), 0);
        assert_eq!(s.take_running(1), None, "no token left");
        assert!(!s.may_admit(3));
        assert_eq!(s.seqs(), 3);
    }

    #[test]
    fn the_sequence_cap_holds() {
        let mut s = RULE.step();
        assert_eq!(s.take_decodes(10), 4);
        assert_eq!(s.take_running(1), None);
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
    fn a_cached_block_read_by_several_decodes_is_read_again_by_all_but_one() {
        // Three readers of one 4-block prefix: 8 blocks read again.
        let mut r: Vec<&[u32]> = vec![&[1, 2, 3, 4], &[1, 2, 3, 4], &[1, 2, 3, 4]];
        assert_eq!(blocks_read_again(&mut r, |b| *b), 8);
        // Readers that share only their first block with each other, and one of its own:
        // [1,2,3] [1,2,9] [1,5] [7,8] -> the trie has 1,2,3,9,5,7,8: 7 distinct of 10 read.
        let mut r: Vec<&[u32]> = vec![&[1, 5], &[7, 8], &[1, 2, 9], &[1, 2, 3]];
        assert_eq!(blocks_read_again(&mut r, |b| *b), 3);
        // A shorter prefix of a longer one: the longer pays for the shared blocks once.
        let mut r: Vec<&[u32]> = vec![&[1, 2, 3, 4, 5], &[1, 2]];
        assert_eq!(blocks_read_again(&mut r, |b| *b), 2);
        let mut none: Vec<&[u32]> = Vec::new();
        assert_eq!(blocks_read_again(&mut none, |b| *b), 0);
    }
}
