//! Per-request state while a request is in the system, in a slab reused as requests leave,
//! so memory follows the requests in flight, not the length of the run.

use std::ops::{Index, IndexMut};

use crate::ids::InstanceId;
use crate::kv::{BlockHash, BlockId};
use crate::request::Request;
use crate::rng::mix;
use crate::time::{SimDuration, SimTime};
use crate::units::{Blocks, Bytes, Tokens};

/// Slot of an in-flight sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqId(pub u32);

/// No instance yet.
pub(crate) const NO_INSTANCE: InstanceId = InstanceId(u32::MAX);

// Chain seed of block hashes (the first block's "previous" hash).
const HASH_SEED: u64 = 0x5157_4c5f_4b56_0001;
// Marks content unique to one request, so it never collides with a shared prefix group.
const UNIQUE_SALT: u64 = 1 << 63;

/// Hash of block `j` of `req` given the hash of block `j − 1`: blocks inside the request's
/// shared prefix hash by (group, position), all others by (request, position), so equal
/// prefixes give equal chains and everything after a divergence is unique.
pub(crate) fn block_hash(req: &Request, prev: BlockHash, j: u32, block_size: u32) -> BlockHash {
    let end = (u64::from(j) + 1) * u64::from(block_size);
    let salt = if let Some(ids) = &req.trace_blocks {
        // The trace block holding this engine block's last token (see `trace_block_hashes`).
        let k = ((end - 1) / u64::from(req.trace_block_tokens.max(1))) as usize;
        ids.get(k).map_or(UNIQUE_SALT | req.id.0, |id| id & !UNIQUE_SALT)
    } else if req.prefix_group != 0 && end <= req.prefix_tokens.as_u64() {
        u64::from(req.prefix_group)
    } else {
        UNIQUE_SALT | req.id.0
    };
    chain(prev, salt, j)
}

/// The hash of block `j` with content `salt` after `prev`; never 0 (the KV cache's "no hash").
fn chain(prev: BlockHash, salt: u64, j: u32) -> BlockHash {
    let h = mix(prev.0 ^ mix(salt ^ (u64::from(j) << 40)));
    BlockHash(h.max(1))
}

/// Hashes of the first `n` engine blocks of a prompt described by a trace's block ids
/// (Mooncake: one id per 512-token block; equal ids mean equal content). Engine block `j`
/// covers tokens `[j·bs, (j+1)·bs)` and takes the id of the trace block holding its last
/// token, chained with its position, so two prompts share engine blocks exactly as far as
/// their trace ids agree, whatever the two block sizes. (The property tests' reference.)
#[cfg(test)]
fn trace_block_hashes(ids: &[u64], trace_block_tokens: u32, n: u32, block_size: u32) -> impl Iterator<Item = BlockHash> + '_ {
    let mut prev = BlockHash(HASH_SEED);
    (0..n).map_while(move |j| {
        let last_token = (u64::from(j) + 1) * u64::from(block_size) - 1;
        let k = (last_token / u64::from(trace_block_tokens.max(1))) as usize;
        let id = *ids.get(k)?;
        prev = chain(prev, id & !UNIQUE_SALT, j);
        Some(prev)
    })
}

/// Leading blocks of `req` whose content other requests may share (its shared prefix).
/// Only these are registered when they fill: a block of content unique to one request can
/// only ever be hit by that request's own recompute, so it is registered on preemption
/// instead (and, released to the free list, it is reused first, as a cached tail would be).
pub(crate) fn shareable_blocks(req: &Request, block_size: u32) -> u32 {
    if let Some(ids) = &req.trace_blocks {
        let covered = (ids.len() as u64 * u64::from(req.trace_block_tokens)).min(req.prompt_tokens.as_u64());
        (covered / u64::from(block_size)) as u32
    } else if req.prefix_group == 0 {
        0
    } else {
        req.prefix_tokens.get() / block_size
    }
}

/// Hashes of blocks `0..n` of `req`, in order.
pub(crate) fn block_hashes(req: &Request, n: u32, block_size: u32) -> impl Iterator<Item = BlockHash> + '_ {
    let mut prev = BlockHash(HASH_SEED);
    (0..n).map(move |j| {
        prev = block_hash(req, prev, j, block_size);
        prev
    })
}

/// A request being served.
#[derive(Clone, Debug)]
pub(crate) struct Seq {
    pub req: Request,
    /// Tokens whose KV is computed on the current instance.
    pub computed: u32,
    /// Output tokens emitted so far.
    pub generated: u32,
    /// KV blocks held on the instance that holds this sequence's KV.
    pub blocks: Vec<BlockId>,
    /// Blocks held at the destination of a KV transfer in flight: the cached ones it
    /// reuses there, then (when the KV lands) the `reserved` ones.
    pub staged: Vec<BlockId>,
    /// Blocks reserved at the destination of a KV transfer in flight and not issued yet
    /// ([`crate::kv::KvCache::reserve`]).
    pub reserved: Blocks,
    /// Blocks still counted as used on the holder while its KV is on the way to the
    /// destination, whose ids went back ([`crate::kv::KvCache::hold`]).
    pub held: Blocks,
    /// Leading blocks whose hashes are registered in the holder's cache.
    pub hashed: u32,
    /// Hash of the last registered block (the chain so far).
    pub chain: BlockHash,
    /// When the client sees the first token: the engine's time plus `frontend`.
    pub first_token: Option<SimTime>,
    /// When the engine produced the last token (engine time, without `frontend`).
    pub last_token: SimTime,
    /// Frontend latency of the instance that produced the first token, which shifts every
    /// token the client sees ([`crate::cost::StepCostModel::request_latency`]).
    pub frontend: SimDuration,
    pub prefill_on: InstanceId,
    pub decode_on: InstanceId,
    /// The instance whose cache holds this sequence's KV now (the source of a transfer).
    pub holder: InstanceId,
    /// A migration the router asked for, carried out at the end of the holder's step.
    pub migrate_to: Option<InstanceId>,
    pub migrations: u32,
    /// The closed-loop user who sent it (`u32::MAX`: open loop).
    pub user: u32,
    /// Largest gap between two of its output tokens so far.
    pub max_gap: SimDuration,
    pub preemptions: u32,
    /// Prompt tokens served from a prefix cache at admission.
    pub cached_tokens: u32,
    /// Set when the sequence leaves its instance's running list at the end of a step.
    pub leaving: bool,
    /// The KV transfer in progress: bytes put on the link and when they started.
    pub transfer_bytes: Bytes,
    pub transfer_start: SimTime,
    /// Whether its bytes are crossing a link now (it is in that link's active set).
    pub on_wire: bool,
    /// Its transfer's ticket on that link (to cancel it with).
    pub link_ticket: u64,
    /// Prefill tokens the router counted for it on its prefill instance, until its first token.
    pub charged: Tokens,
    /// The instance the router counts it on (its in-flight counter).
    pub assigned_to: InstanceId,
    /// Cancelled while a step or a transfer still held it: recorded already, cleaned up when
    /// that step or transfer ends.
    pub cancelled: bool,
}

impl Seq {
    pub fn new(req: Request, blocks: Vec<BlockId>, staged: Vec<BlockId>) -> Self {
        let arrival = req.arrival;
        Seq {
            req,
            computed: 0,
            generated: 0,
            blocks,
            staged,
            reserved: Blocks::ZERO,
            held: Blocks::ZERO,
            hashed: 0,
            chain: BlockHash(HASH_SEED),
            first_token: None,
            last_token: arrival,
            frontend: SimDuration::ZERO,
            prefill_on: NO_INSTANCE,
            decode_on: NO_INSTANCE,
            holder: NO_INSTANCE,
            migrate_to: None,
            migrations: 0,
            user: u32::MAX,
            max_gap: SimDuration::ZERO,
            preemptions: 0,
            cached_tokens: 0,
            leaving: false,
            transfer_bytes: Bytes::ZERO,
            transfer_start: arrival,
            on_wire: false,
            link_ticket: 0,
            charged: Tokens::ZERO,
            assigned_to: NO_INSTANCE,
            cancelled: false,
        }
    }
    /// Tokens known so far: the prompt and every emitted output token.
    pub fn known(&self) -> u32 {
        self.req.prompt_tokens.get() + self.generated
    }
    /// Whether the next step for this sequence is a single decode token.
    pub fn is_decoding(&self) -> bool {
        self.generated > 0 && self.known() - self.computed == 1
    }
    /// Hash of block `j` given the hash of block `j − 1`.
    pub fn block_hash(&self, prev: BlockHash, j: u32, block_size: u32) -> BlockHash {
        block_hash(&self.req, prev, j, block_size)
    }
    /// Hashes of blocks `0..n`, in order.
    pub fn block_hashes(&self, n: u32, block_size: u32) -> impl Iterator<Item = BlockHash> + '_ {
        block_hashes(&self.req, n, block_size)
    }
    /// Forgets the hash chain (the sequence's KV moved or was dropped).
    pub fn reset_chain(&mut self) {
        self.hashed = 0;
        self.chain = BlockHash(HASH_SEED);
    }
}

/// Slots of in-flight sequences with a free list; block vectors are recycled.
#[derive(Debug, Default)]
pub(crate) struct SeqSlab {
    slots: Vec<Option<Seq>>,
    free: Vec<u32>,
    spare_vecs: Vec<Vec<BlockId>>,
    live: usize,
    peak: usize,
}

impl SeqSlab {
    /// A fresh sequence for `req`, reusing spare block vectors.
    pub fn insert(&mut self, req: Request) -> SeqId {
        // A spare list (with its memory) for the blocks it takes at admission; the list of a
        // transfer's destination is sized when the KV lands, so it starts empty.
        let blocks = self.spare_vecs.pop().unwrap_or_default();
        let s = Seq::new(req, blocks, Vec::new());
        self.live += 1;
        self.peak = self.peak.max(self.live);
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = Some(s);
            SeqId(i)
        } else {
            self.slots.push(Some(s));
            SeqId((self.slots.len() - 1) as u32)
        }
    }
    /// Frees a slot; its (emptied) block vectors are kept for reuse, up to one per live
    /// sequence.
    pub fn remove(&mut self, id: SeqId) -> Seq {
        self.live -= 1;
        self.free.push(id.0);
        let mut s = self.slots[id.0 as usize].take().expect("removing a live sequence");
        for v in [std::mem::take(&mut s.blocks), std::mem::take(&mut s.staged)] {
            debug_assert!(v.is_empty() && s.reserved == Blocks::ZERO && s.held == Blocks::ZERO, "a leaving sequence still holds KV blocks");
            self.give_spare(v);
        }
        s
    }
    /// Keeps an emptied block list for the sequences to come: no more spares than there
    /// are live sequences (a drain after a saturated link would otherwise keep every
    /// finished list).
    pub fn give_spare(&mut self, mut v: Vec<BlockId>) {
        if v.capacity() > 0 && self.spare_vecs.len() < self.live {
            v.clear();
            self.spare_vecs.push(v);
        }
    }
    /// Gives `sid` a list for the blocks of its transfer's destination, a spare one if there
    /// is one, when it has none with room yet.
    pub fn ensure_staged(&mut self, sid: SeqId) {
        if self[sid].staged.capacity() == 0
            && let Some(v) = self.spare_vecs.pop()
        {
            let old = std::mem::replace(&mut self[sid].staged, v);
            debug_assert!(old.is_empty());
        }
    }
    /// The sequence in slot `id`, if the slot is live.
    pub fn get(&self, id: SeqId) -> Option<&Seq> {
        self.slots.get(id.0 as usize).and_then(Option::as_ref)
    }
    /// Sequences in flight now.
    pub fn live(&self) -> usize {
        self.live
    }
    /// Most sequences in flight at once.
    pub fn peak(&self) -> usize {
        self.peak
    }
    /// Ids of sequences still in flight, in slot order.
    pub fn live_ids(&self) -> Vec<SeqId> {
        (0..self.slots.len() as u32).filter(|&i| self.slots[i as usize].is_some()).map(SeqId).collect()
    }
}

impl Index<SeqId> for SeqSlab {
    type Output = Seq;
    #[inline]
    fn index(&self, id: SeqId) -> &Seq {
        self.slots[id.0 as usize].as_ref().expect("live sequence")
    }
}
impl IndexMut<SeqId> for SeqSlab {
    #[inline]
    fn index_mut(&mut self, id: SeqId) -> &mut Seq {
        self.slots[id.0 as usize].as_mut().expect("live sequence")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_blocks_map_onto_engine_blocks_deterministically() {
        // Two Mooncake prompts sharing their first two 512-token blocks.
        let a = [0u64, 7, 9];
        let b = [0u64, 7, 11];
        let ha: Vec<_> = trace_block_hashes(&a, 512, 96, 16).collect();
        let hb: Vec<_> = trace_block_hashes(&b, 512, 96, 16).collect();
        assert_eq!(ha.len(), 96);
        // 1024 shared tokens = 64 engine blocks of 16 agree; the rest differ.
        assert_eq!(ha[..64], hb[..64]);
        assert!(ha[64..].iter().zip(&hb[64..]).all(|(x, y)| x != y));
        // Same ids, same hashes, every time; engine blocks of 64 share 16 blocks.
        assert_eq!(ha, trace_block_hashes(&a, 512, 96, 16).collect::<Vec<_>>());
        let ca: Vec<_> = trace_block_hashes(&a, 512, 24, 64).collect();
        let cb: Vec<_> = trace_block_hashes(&b, 512, 24, 64).collect();
        assert_eq!(ca[..16], cb[..16]);
        assert_ne!(ca[16], cb[16]);
        // No more blocks than the ids cover.
        assert_eq!(trace_block_hashes(&a, 512, 1000, 16).count(), 96);
    }
}
