//! Paged KV cache with prefix caching, as vLLM v1 keeps it.
//!
//! Every block is free, in use (reference count > 0), or cached: unreferenced but still
//! holding the KV of a full block whose content hash is known, so that a later request with
//! the same prefix reuses it. Cached blocks are evicted least recently released first when a
//! block is needed and none is free. `free + used + cached = capacity` at all times.
//!
//! The LRU is an intrusive doubly linked list over block ids (O(1) for every operation, no
//! allocation) rather than the `priority-queue` crate DESIGN §9 suggests: it sits on the
//! per-step path, where an indexed heap would add a log factor and a hash per operation.
//!
//! As in vLLM v1 (its `BlockHashToBlockMap`), several physical blocks may hold the same
//! content hash (two requests with one prefix prefilled at once): every one stays cached, and
//! a hash leaves the cache only with its last block. This keeps the set of cached hashes
//! closed under prefixes — a block's parent is always released after it, so it is evicted
//! after it — which the router's prefix index relies on.
//!
//! With events on ([`KvCache::track_events`]), the cache reports each hash that enters or
//! leaves it ([`KvEvent`]), as vLLM's KV-cache events feed Dynamo's indexer.
//!
//! Blocks can also be held as a count rather than by id, which is how KV transfers hold
//! them: the destination [`KvCache::reserve`]s its blocks when the transfer starts and
//! [`KvCache::take_reserved`] issues them when the KV lands; the source [`KvCache::hold`]s
//! the blocks nothing can reuse as a count until then. A reservation counts as used and
//! evicts, when it is made, exactly what an allocation would; only no block record is
//! touched until the blocks are needed, which keeps thousands of transfers on a saturated
//! link out of the CPU's caches and out of memory.

use crate::units::{Blocks, Tokens};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Content hash of a full KV block, chained over every block before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u64);

/// Identifier of a physical block within one cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub u32);

// Block hashes are already well mixed: the map uses them as they are.
#[derive(Default)]
pub(crate) struct IdentityHasher(u64);
impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const NIL: u32 = u32::MAX;

// 24 bytes: one of these per KV block of every instance, so its size is the engine's memory.
#[derive(Clone, Copy, Debug)]
struct Block {
    /// Content hash; `NO_HASH` when the block holds none (yet).
    hash: u64,
    refs: u32,
    // The LRU list of cached blocks.
    prev: u32,
    next: u32,
    // The next block holding the same hash (a list headed by the index entry; usually one).
    dup_next: u32,
}

// Chained block hashes are never 0 (see `seq::block_hash`), so 0 means "no hash".
const NO_HASH: u64 = 0;

impl Block {
    const FRESH: Block = Block { hash: NO_HASH, refs: 0, prev: NIL, next: NIL, dup_next: NIL };
    fn has_hash(&self) -> bool {
        self.hash != NO_HASH
    }
}

/// A change of the set of hashes a cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvEvent {
    /// The first block with this hash was registered.
    Stored(BlockHash),
    /// The last block with this hash was evicted.
    Removed(BlockHash),
}

/// Blocks of KV cache on one instance.
#[derive(Clone, Debug)]
pub struct KvCache {
    block_size: u32,
    capacity: u32,
    blocks: Vec<Block>,
    free: Vec<u32>,
    index: HashMap<BlockHash, u32, BuildHasherDefault<IdentityHasher>>,
    lru_head: u32,
    lru_tail: u32,
    used: u32,
    cached: u32,
    /// Blocks counted in `used` that no id stands for yet ([`KvCache::reserve`]).
    reserved: u32,
    prefix_caching: bool,
    track_events: bool,
    events: Vec<KvEvent>,
}

impl KvCache {
    /// A cache of `capacity` blocks of `block_size` tokens. With `prefix_caching`, released
    /// full blocks stay reusable until evicted.
    pub fn new(block_size: u32, capacity: Blocks, prefix_caching: bool) -> Self {
        KvCache {
            block_size: block_size.max(1),
            capacity: capacity.0,
            blocks: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            lru_head: NIL,
            lru_tail: NIL,
            used: 0,
            cached: 0,
            reserved: 0,
            prefix_caching,
            track_events: false,
            events: Vec::new(),
        }
    }

    /// Records [`KvEvent`]s from now on, to drain with [`KvCache::drain_events`].
    pub fn track_events(&mut self) {
        self.track_events = self.prefix_caching;
    }
    /// Whether events are waiting to be drained.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }
    /// The events since the last drain, oldest first.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, KvEvent> {
        self.events.drain(..)
    }
    /// Whether a block with `hash` is cached or in use.
    pub fn contains(&self, hash: BlockHash) -> bool {
        self.index.contains_key(&hash)
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: Tokens) -> Blocks {
        tokens.blocks(self.block_size)
    }
    /// Tokens per block.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }
    /// Total blocks.
    pub fn capacity(&self) -> Blocks {
        Blocks(self.capacity)
    }
    /// Blocks referenced by running or transferring sequences.
    pub fn used(&self) -> Blocks {
        Blocks(self.used)
    }
    /// Unreferenced blocks that still hold reusable KV.
    pub fn cached(&self) -> Blocks {
        Blocks(self.cached)
    }
    /// Blocks that can be handed out now: free ones plus evictable cached ones.
    pub fn free(&self) -> Blocks {
        Blocks(self.capacity - self.used)
    }
    /// Blocks that hold no KV at all (free or never issued): taking them evicts nothing.
    pub fn unclaimed(&self) -> Blocks {
        Blocks(self.idle_ids() - self.reserved)
    }
    /// Whether released full blocks are kept for reuse.
    pub fn prefix_caching(&self) -> bool {
        self.prefix_caching
    }

    /// How many leading blocks of `hashes` are in the cache, and how many of those are
    /// cached (unreferenced), which a reuse would take out of the evictable pool.
    pub fn probe(&self, hashes: impl Iterator<Item = BlockHash>) -> (Blocks, Blocks) {
        if !self.prefix_caching {
            return (Blocks::ZERO, Blocks::ZERO);
        }
        let (mut hits, mut idle) = (Blocks::ZERO, Blocks::ZERO);
        for h in hashes {
            match self.index.get(&h) {
                Some(&b) => {
                    hits.0 += 1;
                    if self.blocks[b as usize].refs == 0 {
                        idle.0 += 1;
                    }
                }
                None => break,
            }
        }
        (hits, idle)
    }

    /// Takes a reference on the cached block holding `hash` (which `probe` found) and
    /// appends it to `out`.
    pub fn reuse(&mut self, hash: BlockHash, out: &mut Vec<BlockId>) {
        let b = *self.index.get(&hash).expect("probe found this block");
        let blk = &mut self.blocks[b as usize];
        if blk.refs == 0 {
            self.lru_unlink(b);
            self.cached -= 1;
            self.used += 1;
        }
        self.blocks[b as usize].refs += 1;
        out.push(BlockId(b));
    }

    /// Appends `n` fresh blocks to `out`, evicting cached blocks as needed. Returns false
    /// (and takes nothing) if fewer than `n` can be had.
    #[inline]
    pub fn allocate(&mut self, n: Blocks, out: &mut Vec<BlockId>) -> bool {
        if n == Blocks::ZERO {
            return true;
        }
        self.allocate_slow(n.0, out)
    }

    fn allocate_slow(&mut self, n: u32, out: &mut Vec<BlockId>) -> bool {
        if n > self.capacity - self.used {
            return false;
        }
        for _ in 0..n {
            // Free and never-issued ids first, short of those that reservations will take;
            // then the least recently released cached block.
            let b = if self.idle_ids() > self.reserved { self.idle_id() } else { self.evict_lru() };
            let blk = &mut self.blocks[b as usize];
            debug_assert!(!blk.has_hash() && blk.dup_next == NIL);
            blk.refs = 1;
            self.used += 1;
            out.push(BlockId(b));
        }
        true
    }

    /// Ids that hold no KV: free ones and never-issued ones.
    fn idle_ids(&self) -> u32 {
        self.free.len() as u32 + (self.capacity - self.blocks.len() as u32)
    }

    /// A free id, else a never-issued one (there must be one).
    fn idle_id(&mut self) -> u32 {
        if let Some(b) = self.free.pop() {
            b
        } else {
            // Never-used ids are created lazily, so a large cache costs nothing upfront.
            debug_assert!((self.blocks.len() as u32) < self.capacity);
            self.blocks.push(Block::FRESH);
            (self.blocks.len() - 1) as u32
        }
    }

    /// Counts `n` blocks as used without naming them yet: a KV transfer's destination
    /// holds its blocks from the transfer's start, and [`KvCache::take_reserved`] issues
    /// them when the KV lands. What the cache evicts, and when, is what
    /// [`KvCache::allocate`] would have evicted now; only no id is touched until then (a
    /// saturated link holds thousands of transfers, whose blocks would otherwise sit cold
    /// in memory for seconds of simulated time). Returns false (and reserves nothing) if
    /// fewer than `n` can be had.
    pub fn reserve(&mut self, n: Blocks) -> bool {
        if n.0 > self.capacity - self.used {
            return false;
        }
        while self.idle_ids() < self.reserved + n.0 {
            let b = self.evict_lru();
            self.free.push(b);
        }
        self.used += n.0;
        self.reserved += n.0;
        true
    }

    /// Issues `n` blocks of an earlier [`KvCache::reserve`], appending them to `out`.
    pub fn take_reserved(&mut self, n: Blocks, out: &mut Vec<BlockId>) {
        assert!(n.0 <= self.reserved, "taking more blocks than were reserved");
        self.reserved -= n.0;
        out.reserve(n.0 as usize);
        for _ in 0..n.0 {
            let b = self.idle_id();
            let blk = &mut self.blocks[b as usize];
            debug_assert!(blk.refs == 0 && !blk.has_hash() && blk.dup_next == NIL);
            blk.refs = 1;
            out.push(BlockId(b));
        }
    }

    /// Turns the blocks of `blocks` that hold no hash and that nothing else references into
    /// a reservation of as many blocks, which [`KvCache::unreserve`] gives back; the rest
    /// stay in `blocks`, in order. The source of a KV transfer holds its blocks until the KV
    /// has landed, but only the hashed ones (which go to the LRU when released) need their
    /// ids: the others are counted, not named, while the transfer is on the wire. Counts,
    /// evictions and the LRU are as if every block were held.
    /// The first `skip` blocks are known to be hashed (the sequence's registered prefix)
    /// and are kept without a look.
    pub fn hold(&mut self, blocks: &mut Vec<BlockId>, skip: usize) -> Blocks {
        let start = skip.min(blocks.len());
        let mut kept = start;
        for i in start..blocks.len() {
            let b = blocks[i];
            let blk = &mut self.blocks[b.0 as usize];
            if blk.refs == 1 && !blk.has_hash() {
                blk.refs = 0;
                self.free.push(b.0);
            } else {
                blocks[kept] = b;
                kept += 1;
            }
        }
        let n = (blocks.len() - kept) as u32;
        blocks.truncate(kept);
        self.reserved += n;
        Blocks(n)
    }

    /// Gives back `n` blocks of an earlier [`KvCache::reserve`] or [`KvCache::hold`].
    pub fn unreserve(&mut self, n: Blocks) {
        assert!(n.0 <= self.reserved, "giving back more blocks than were reserved");
        self.reserved -= n.0;
        self.used -= n.0;
    }

    fn evict_lru(&mut self) -> u32 {
        let b = self.lru_head;
        debug_assert!(b != NIL, "free() promised an evictable block");
        self.lru_unlink(b);
        self.cached -= 1;
        self.forget_hash(b);
        b
    }

    // Takes block `b` out of its hash's list; the hash leaves the cache with its last block.
    fn forget_hash(&mut self, b: u32) {
        let raw = std::mem::replace(&mut self.blocks[b as usize].hash, NO_HASH);
        if raw == NO_HASH {
            return;
        }
        let next = std::mem::replace(&mut self.blocks[b as usize].dup_next, NIL);
        let key = BlockHash(raw);
        // One lookup: the entry holds the head of the hash's blocks.
        let std::collections::hash_map::Entry::Occupied(mut e) = self.index.entry(key) else { unreachable!("a hashed block is indexed") };
        let head = *e.get();
        if head == b {
            if next == NIL {
                e.remove();
                if self.track_events {
                    self.events.push(KvEvent::Removed(key));
                }
            } else {
                *e.get_mut() = next;
            }
        } else {
            // Duplicates are rare and their lists short: walk to the predecessor.
            let mut p = head;
            while self.blocks[p as usize].dup_next != b {
                p = self.blocks[p as usize].dup_next;
            }
            self.blocks[p as usize].dup_next = next;
        }
    }

    /// Records that `block` now holds the full block with content `hash`, so that it can be
    /// reused. The same content computed twice is kept twice (reuse takes the first block).
    pub fn register(&mut self, block: BlockId, hash: BlockHash) {
        if !self.prefix_caching {
            return;
        }
        let b = block.0;
        if self.blocks[b as usize].has_hash() {
            return;
        }
        debug_assert!(hash.0 != NO_HASH, "block hashes are never 0");
        self.blocks[b as usize].hash = hash.0;
        match self.index.entry(hash) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(b);
                if self.track_events {
                    self.events.push(KvEvent::Stored(hash));
                }
            }
            std::collections::hash_map::Entry::Occupied(e) => {
                // Second in the list: the head stays the block reuse takes.
                let head = *e.get();
                self.blocks[b as usize].dup_next = self.blocks[head as usize].dup_next;
                self.blocks[head as usize].dup_next = b;
            }
        }
    }

    /// Drops one reference on each block, last block first (so a sequence's tail is evicted
    /// before its shared prefix, as vLLM does), and clears `blocks`.
    pub fn release(&mut self, blocks: &mut Vec<BlockId>) {
        while let Some(BlockId(b)) = blocks.pop() {
            let blk = &mut self.blocks[b as usize];
            debug_assert!(blk.refs > 0, "releasing a block that is not in use");
            blk.refs -= 1;
            if blk.refs == 0 {
                self.used -= 1;
                if blk.has_hash() {
                    self.cached += 1;
                    self.lru_push_back(b);
                } else {
                    self.free.push(b);
                }
            }
        }
    }

    fn lru_unlink(&mut self, b: u32) {
        let Block { prev, next, .. } = self.blocks[b as usize];
        if prev == NIL {
            self.lru_head = next
        } else {
            self.blocks[prev as usize].next = next
        }
        if next == NIL {
            self.lru_tail = prev
        } else {
            self.blocks[next as usize].prev = prev
        }
        let blk = &mut self.blocks[b as usize];
        blk.prev = NIL;
        blk.next = NIL;
    }

    fn lru_push_back(&mut self, b: u32) {
        let tail = self.lru_tail;
        {
            let blk = &mut self.blocks[b as usize];
            blk.prev = tail;
            blk.next = NIL;
        }
        if tail == NIL {
            self.lru_head = b
        } else {
            self.blocks[tail as usize].next = b
        }
        self.lru_tail = b;
    }

    /// Debug check: free + used + cached = capacity, and the LRU holds exactly the cached
    /// blocks.
    pub fn check_conservation(&self) {
        let never_issued = self.capacity as usize - self.blocks.len();
        debug_assert!(self.idle_ids() >= self.reserved, "reservations exceed the idle ids");
        debug_assert_eq!(
            self.free.len() + never_issued - self.reserved as usize + self.used as usize + self.cached as usize,
            self.capacity as usize,
            "KV blocks not conserved: free {} + unissued {} - reserved {} + used {} + cached {} != capacity {}",
            self.free.len(),
            never_issued,
            self.reserved,
            self.used,
            self.cached,
            self.capacity
        );
        if cfg!(debug_assertions) && self.blocks.len() <= 4096 {
            let mut n = 0;
            let mut b = self.lru_head;
            while b != NIL {
                debug_assert_eq!(self.blocks[b as usize].refs, 0);
                n += 1;
                b = self.blocks[b as usize].next;
            }
            debug_assert_eq!(n, self.cached as usize, "LRU length differs from the cached count");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Block hashes are never 0.
    fn h(x: u64) -> BlockHash {
        BlockHash(x + 1)
    }

    /// A transfer's blocks handled two ways on twin caches: named at its start (allocate
    /// at the destination, keep every source block) or counted (reserve and hold, named
    /// when it lands). Random transfers, sequences and shared prefixes on small caches, so
    /// that evictions happen; every count and every probe must agree after every operation.
    #[test]
    #[allow(clippy::needless_range_loop)] // k indexes twin caches and their block lists together
    fn reserved_and_held_blocks_evict_and_count_as_named_ones() {
        use crate::rng::mix;
        struct Xfer {
            src: [Vec<BlockId>; 2],
            dst: [Vec<BlockId>; 2],
            need: Blocks,
            held: Blocks,
        }
        for seed in 0..200u64 {
            let mut r = mix(seed + 1);
            let mut next = |n: u64| {
                r = mix(r);
                r % n
            };
            // [named, counted] × [source, destination]
            let mut src = [KvCache::new(1, Blocks(24), true), KvCache::new(1, Blocks(24), true)];
            let mut dst = [KvCache::new(1, Blocks(24), true), KvCache::new(1, Blocks(24), true)];
            let mut flights: Vec<Xfer> = Vec::new();
            for step in 0..300 {
                match next(4) {
                    // A prefilled sequence starts a transfer: blocks at the source, some hashed
                    // (a prefix from a small set of groups), then reserved at the destination.
                    0 | 1 => {
                        let (group, len, hashed) = (next(3), 1 + next(6) as u32, next(4) as u32);
                        let hashes: Vec<BlockHash> = (0..len.min(hashed)).map(|j| h(group * 100 + u64::from(j))).collect();
                        let (hits, _) = dst[0].probe(hashes.iter().copied());
                        assert_eq!((hits, dst[0].free()), (dst[1].probe(hashes.iter().copied()).0, dst[1].free()));
                        let need = Blocks(len - hits.0);
                        if src[0].free() < Blocks(len) || dst[0].free() < need + Blocks(hits.0) {
                            continue;
                        }
                        let mut x = Xfer { src: [Vec::new(), Vec::new()], dst: [Vec::new(), Vec::new()], need, held: Blocks::ZERO };
                        for k in 0..2 {
                            assert!(src[k].allocate(Blocks(len), &mut x.src[k]));
                            for (j, &hh) in hashes.iter().enumerate() {
                                src[k].register(x.src[k][j], hh);
                            }
                            for &hh in &hashes[..hits.0 as usize] {
                                dst[k].reuse(hh, &mut x.dst[k]);
                            }
                        }
                        assert!(dst[0].allocate(need, &mut x.dst[0]));
                        assert!(dst[1].reserve(need));
                        x.held = src[1].hold(&mut x.src[1], next(2) as usize * hashed.min(len) as usize);
                        flights.push(x);
                    }
                    // A transfer lands (or is cancelled): the source lets go, the destination
                    // names its blocks and the sequence later finishes there.
                    2 if !flights.is_empty() => {
                        let mut x = flights.swap_remove(next(flights.len() as u64) as usize);
                        let cancelled = next(5) == 0;
                        for k in 0..2 {
                            src[k].release(&mut x.src[k]);
                        }
                        src[1].unreserve(x.held);
                        if cancelled {
                            dst[1].unreserve(x.need);
                        } else {
                            dst[1].take_reserved(x.need, &mut x.dst[1]);
                            for k in 0..2 {
                                if let Some(&b) = x.dst[k].last() {
                                    dst[k].register(b, h(10_000 + seed * 1000 + step));
                                }
                            }
                        }
                        for k in 0..2 {
                            dst[k].release(&mut x.dst[k]);
                        }
                    }
                    // Other work on either cache: a sequence that comes and goes.
                    _ => {
                        let n = Blocks(1 + next(5) as u32);
                        let c = next(2) as usize;
                        for pair in [&mut src, &mut dst] {
                            let mut v = [Vec::new(), Vec::new()];
                            let ok = [pair[0].allocate(n, &mut v[0]), pair[1].allocate(n, &mut v[1])];
                            assert_eq!(ok[0], ok[1], "seed {seed} step {step}");
                            for k in 0..2 {
                                if c == 1 && !v[k].is_empty() {
                                    pair[k].register(v[k][0], h(50 + step));
                                }
                                pair[k].release(&mut v[k]);
                            }
                        }
                    }
                }
                for pair in [&src, &dst] {
                    let probe: Vec<BlockHash> = (0..300).map(h).collect();
                    assert_eq!(
                        (pair[0].used(), pair[0].cached(), pair[0].unclaimed()),
                        (pair[1].used(), pair[1].cached(), pair[1].unclaimed()),
                        "seed {seed} step {step}"
                    );
                    for g in 0..3 {
                        assert_eq!(
                            pair[0].probe(probe[g * 100..g * 100 + 4].iter().copied()),
                            pair[1].probe(probe[g * 100..g * 100 + 4].iter().copied())
                        );
                    }
                    pair[1].check_conservation();
                }
            }
        }
    }

    #[test]
    fn allocation_respects_capacity() {
        let mut kv = KvCache::new(16, Blocks(4), true);
        let mut a = Vec::new();
        assert_eq!(kv.blocks_for(Tokens(33)), Blocks(3));
        assert!(kv.allocate(Blocks(3), &mut a));
        assert!(!kv.allocate(Blocks(2), &mut a));
        assert_eq!(a.len(), 3);
        kv.release(&mut a);
        assert_eq!(kv.free(), Blocks(4));
        kv.check_conservation();
    }

    #[test]
    fn released_full_blocks_are_reused_until_evicted() {
        let mut kv = KvCache::new(16, Blocks(4), true);
        let mut a = Vec::new();
        kv.allocate(Blocks(3), &mut a);
        for (i, &b) in a.iter().enumerate() {
            kv.register(b, h(100 + i as u64));
        }
        kv.release(&mut a);
        assert_eq!((kv.used(), kv.cached(), kv.free()), (Blocks(0), Blocks(3), Blocks(4)));
        // Same prefix: all three hit; a different second block: one hit.
        assert_eq!(kv.probe([h(100), h(101), h(102)].into_iter()), (Blocks(3), Blocks(3)));
        assert_eq!(kv.probe([h(100), h(999), h(102)].into_iter()), (Blocks(1), Blocks(1)));
        let mut b = Vec::new();
        kv.reuse(h(100), &mut b);
        kv.reuse(h(101), &mut b);
        assert_eq!((kv.used(), kv.cached()), (Blocks(2), Blocks(1)));
        // Two new blocks: one never issued, then the LRU victim is the only cached block (102).
        assert!(kv.allocate(Blocks(2), &mut b));
        assert_eq!(kv.probe([h(100), h(101), h(102)].into_iter()), (Blocks(2), Blocks(0)));
        kv.check_conservation();
        kv.release(&mut b);
        kv.check_conservation();
        assert_eq!(kv.free(), Blocks(4));
    }

    #[test]
    fn eviction_order_is_least_recently_released_tail_first() {
        let mut kv = KvCache::new(1, Blocks(3), true);
        let mut a = Vec::new();
        kv.allocate(Blocks(3), &mut a);
        for (i, &b) in a.iter().enumerate() {
            kv.register(b, h(i as u64));
        }
        kv.release(&mut a); // released tail first: 2, 1, 0 -> LRU order 2, 1, 0
        let mut b = Vec::new();
        kv.allocate(Blocks(1), &mut b);
        assert_eq!(kv.probe([h(0), h(1)].into_iter()).0, Blocks(2), "block 2 (the tail) went first");
        assert_eq!(kv.probe([h(2)].into_iter()).0, Blocks(0));
    }

    #[test]
    fn without_prefix_caching_nothing_is_kept() {
        let mut kv = KvCache::new(16, Blocks(2), false);
        let mut a = Vec::new();
        kv.allocate(Blocks(2), &mut a);
        kv.register(a[0], h(1));
        kv.release(&mut a);
        assert_eq!(kv.probe([h(1)].into_iter()), (Blocks(0), Blocks(0)));
        assert_eq!(kv.cached(), Blocks(0));
    }

    #[test]
    fn a_hash_computed_twice_stays_until_its_last_block_goes() {
        let mut kv = KvCache::new(1, Blocks(3), true);
        kv.track_events();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        kv.allocate(Blocks(1), &mut a);
        kv.allocate(Blocks(1), &mut b);
        kv.register(a[0], h(7));
        kv.register(b[0], h(7));
        // One hash entered the cache, once.
        assert_eq!(kv.drain_events().collect::<Vec<_>>(), vec![KvEvent::Stored(h(7))]);
        kv.release(&mut a);
        kv.release(&mut b);
        assert_eq!(kv.cached(), Blocks(2), "both copies stay cached, as in vLLM v1");
        // Evicting the older copy keeps the hash; the second eviction removes it.
        let mut c = Vec::new();
        kv.allocate(Blocks(2), &mut c);
        assert!(kv.contains(h(7)));
        assert!(!kv.has_events());
        kv.allocate(Blocks(1), &mut c);
        assert!(!kv.contains(h(7)));
        assert_eq!(kv.drain_events().collect::<Vec<_>>(), vec![KvEvent::Removed(h(7))]);
        kv.check_conservation();
    }
}
