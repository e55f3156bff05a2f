//! Token-id prompts for live runs: each request of a scenario becomes a list of token ids of
//! exactly its prompt length, whose content is shared exactly where the simulator's block
//! hashes say it is.
//!
//! Real engines cache prefixes by content (vLLM hashes each full block of token ids with its
//! parent's hash), so the reuse a live run sees is the reuse its prompts carry. The
//! simulator decides reuse by block hashes ([`simctl_engine`]'s `block_hash`): a shared
//! prefix group's blocks hash by (group, position), a trace's blocks by its `hash_ids`, and
//! everything else by (request, position). This module writes the same identities into
//! token ids:
//!
//! - tokens inside a request's shared prefix (`prefix_tokens` of group `g`) depend on
//!   `(g, position)` only;
//! - tokens of a trace prompt depend on the id of the trace block they fall in (Mooncake's
//!   512-token `hash_ids`) and their position, so two prompts with the same leading ids have
//!   the same leading tokens (aiperf replays Mooncake traces the same way);
//! - every other token depends on `(request id, position)`, so it is shared with nobody.
//!
//! Token ids are drawn from `[TOKEN_LO, TOKEN_LO + range)`, clear of the low ids where
//! tokenizers keep special tokens; the default range fits a 4,096-token vocabulary (the
//! tiny test model of `real-engine.sh`), and a long random block of such ids never repeats
//! by accident.

use simctl_engine::request::Request;
use simctl_engine::rng::mix;

/// Lowest token id used: ids below are left to a tokenizer's special tokens.
pub const TOKEN_LO: u32 = 256;
/// Default number of distinct ids, `[256, 4000)`: fits every vocabulary of 4,096 or more.
pub const DEFAULT_TOKEN_RANGE: u32 = 3744;

const PREFIX_SALT: u64 = 0x5052_4546_4958_0000; // "PREFIX"
const TRACE_SALT: u64 = 0x5452_4143_4500_0000; // "TRACE"
const UNIQUE_SALT: u64 = 0x554e_4951_5545_0000; // "UNIQUE"

/// Makes the token ids of requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromptMaker {
    range: u32,
    salt: u64,
}

impl Default for PromptMaker {
    fn default() -> Self {
        PromptMaker { range: DEFAULT_TOKEN_RANGE, salt: 0 }
    }
}

impl PromptMaker {
    /// Ids drawn from `[TOKEN_LO, TOKEN_LO + range)`; `range` is at least 2.
    pub fn with_range(range: u32) -> Self {
        PromptMaker { range: range.max(2), salt: 0 }
    }

    /// The same sharing, other content: an engine's prefix cache outlives runs (vLLM has no
    /// reset), so a run that must start cold uses a salt no earlier run used.
    pub fn with_salt(self, salt: u64) -> Self {
        PromptMaker { salt, ..self }
    }

    /// The largest id used, plus one: the vocabulary must be at least this big.
    pub fn vocab_needed(&self) -> u32 {
        TOKEN_LO + self.range
    }

    fn id(&self, salt: u64, key: u64, pos: u64) -> u32 {
        let h = mix(mix(mix(salt ^ self.salt) ^ key) ^ pos);
        TOKEN_LO + (h % u64::from(self.range)) as u32
    }

    /// The prompt of `req`: exactly `req.prompt_tokens` ids.
    pub fn prompt(&self, req: &Request) -> Vec<u32> {
        let n = req.prompt_tokens.get();
        let mut out = Vec::with_capacity(n as usize);
        for p in 0..n {
            out.push(self.token(req, p));
        }
        out
    }

    /// Token `p` of the prompt of `req`.
    pub fn token(&self, req: &Request, p: u32) -> u32 {
        let pos = u64::from(p);
        if let Some(ids) = &req.trace_blocks {
            let per = u64::from(req.trace_block_tokens.max(1));
            if let Some(&id) = ids.get((pos / per) as usize) {
                return self.id(TRACE_SALT, id, pos);
            }
        } else if req.prefix_group != 0 && p < req.prefix_tokens.get() {
            return self.id(PREFIX_SALT, u64::from(req.prefix_group), pos);
        }
        self.id(UNIQUE_SALT, req.id.0, pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simctl_engine::time::SimTime;
    use simctl_engine::units::Tokens;
    use std::sync::Arc;

    fn req(id: u64, prompt: u32) -> Request {
        Request { priority: 1, ..Request::plain(id, SimTime::ZERO, prompt, 8) }
    }

    #[test]
    fn prompts_have_exactly_their_length_and_stay_in_range() {
        let m = PromptMaker::default();
        for n in [1, 2, 127, 128, 129, 5000] {
            let p = m.prompt(&req(3, n));
            assert_eq!(p.len(), n as usize);
            assert!(p.iter().all(|&t| (TOKEN_LO..m.vocab_needed()).contains(&t)));
        }
        assert!(m.vocab_needed() <= 4096);
        // Deterministic: the same request gives the same ids; another salt, other ids.
        assert_eq!(m.prompt(&req(3, 300)), m.prompt(&req(3, 300)));
        assert_ne!(m.with_salt(1).prompt(&req(3, 300)), m.prompt(&req(3, 300)));
    }

    #[test]
    fn shared_prefixes_share_tokens_and_nothing_else_does() {
        let m = PromptMaker::default();
        let mut a = req(1, 600);
        let mut b = req(2, 900);
        (a.prefix_group, a.prefix_tokens) = (7, Tokens(512));
        (b.prefix_group, b.prefix_tokens) = (7, Tokens(512));
        let (pa, pb) = (m.prompt(&a), m.prompt(&b));
        assert_eq!(pa[..512], pb[..512]);
        // After the prefix, nothing in common block by block.
        assert_ne!(pa[512..600], pb[512..600]);
        let c = req(3, 600);
        assert_ne!(m.prompt(&c)[..128], pa[..128]);
    }

    #[test]
    fn trace_prompts_share_tokens_exactly_as_far_as_their_hash_ids_agree() {
        let m = PromptMaker::default();
        let mut a = req(1, 1500);
        let mut b = req(2, 1300);
        a.trace_blocks = Some(Arc::from(vec![10u64, 11, 12]));
        b.trace_blocks = Some(Arc::from(vec![10u64, 11, 99]));
        (a.trace_block_tokens, b.trace_block_tokens) = (512, 512);
        let (pa, pb) = (m.prompt(&a), m.prompt(&b));
        assert_eq!(pa[..1024], pb[..1024]);
        assert_ne!(pa[1024..1300], pb[1024..1300]);
        // Past the ids a trace gives, tokens are the request's own.
        let mut c = req(3, 2000);
        c.trace_blocks = Some(Arc::from(vec![10u64]));
        c.trace_block_tokens = 512;
        let pc = m.prompt(&c);
        assert_eq!(pc[..512], pa[..512]);
        assert_ne!(pc[512..1024], pa[512..1024]);
    }
}
