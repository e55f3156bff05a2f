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

pub use crate::seq::trace_block_hashes;
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
struct IdentityHasher(u64);
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

#[derive(Clone, Copy, Debug)]
struct Block {
    hash: Option<BlockHash>,
    refs: u32,
    prev: u32,
    next: u32,
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
    prefix_caching: bool,
}

impl KvCache {
    /// A cache of `capacity` blocks of `block_size` tokens. With `prefix_caching`, released
    /// full blocks stay reusable until evicted.
    pub fn new(block_size: u32, capacity: u64, prefix_caching: bool) -> Self {
        KvCache {
            block_size: block_size.max(1),
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX - 1),
            blocks: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            lru_head: NIL,
            lru_tail: NIL,
            used: 0,
            cached: 0,
            prefix_caching,
        }
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: u32) -> u32 {
        tokens.div_ceil(self.block_size)
    }
    /// Tokens per block.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }
    /// Total blocks.
    pub fn capacity(&self) -> u64 {
        u64::from(self.capacity)
    }
    /// Blocks referenced by running or transferring sequences.
    pub fn used(&self) -> u64 {
        u64::from(self.used)
    }
    /// Unreferenced blocks that still hold reusable KV.
    pub fn cached(&self) -> u64 {
        u64::from(self.cached)
    }
    /// Blocks that can be handed out now: free ones plus evictable cached ones.
    pub fn free(&self) -> u64 {
        u64::from(self.capacity - self.used)
    }
    /// Whether released full blocks are kept for reuse.
    pub fn prefix_caching(&self) -> bool {
        self.prefix_caching
    }

    /// How many leading blocks of `hashes` are in the cache, and how many of those are
    /// cached (unreferenced), which a reuse would take out of the evictable pool.
    pub fn probe(&self, hashes: impl Iterator<Item = BlockHash>) -> (u32, u32) {
        if !self.prefix_caching {
            return (0, 0);
        }
        let (mut hits, mut idle) = (0, 0);
        for h in hashes {
            match self.index.get(&h) {
                Some(&b) => {
                    hits += 1;
                    if self.blocks[b as usize].refs == 0 {
                        idle += 1;
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
    pub fn allocate(&mut self, n: u32, out: &mut Vec<BlockId>) -> bool {
        if n == 0 {
            return true;
        }
        self.allocate_slow(n, out)
    }

    fn allocate_slow(&mut self, n: u32, out: &mut Vec<BlockId>) -> bool {
        if u64::from(n) > self.free() {
            return false;
        }
        for _ in 0..n {
            let b = if let Some(b) = self.free.pop() {
                b
            } else if (self.blocks.len() as u32) < self.capacity {
                // Never-used ids are created lazily, so a large cache costs nothing upfront.
                self.blocks.push(Block { hash: None, refs: 0, prev: NIL, next: NIL });
                (self.blocks.len() - 1) as u32
            } else {
                self.evict_lru()
            };
            let blk = &mut self.blocks[b as usize];
            blk.refs = 1;
            blk.hash = None;
            self.used += 1;
            out.push(BlockId(b));
        }
        true
    }

    fn evict_lru(&mut self) -> u32 {
        let b = self.lru_head;
        debug_assert!(b != NIL, "free() promised an evictable block");
        self.lru_unlink(b);
        self.cached -= 1;
        if let Some(h) = self.blocks[b as usize].hash.take() {
            self.index.remove(&h);
        }
        b
    }

    /// Records that `block` now holds the full block with content `hash`, so that it can be
    /// reused. A hash already present (the same content computed twice) keeps the first.
    pub fn register(&mut self, block: BlockId, hash: BlockHash) {
        if !self.prefix_caching {
            return;
        }
        let blk = &mut self.blocks[block.0 as usize];
        if blk.hash.is_some() {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.index.entry(hash) {
            e.insert(block.0);
            self.blocks[block.0 as usize].hash = Some(hash);
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
                if blk.hash.is_some() {
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
        debug_assert_eq!(
            self.free.len() + never_issued + self.used as usize + self.cached as usize,
            self.capacity as usize,
            "KV blocks not conserved: free {} + unissued {} + used {} + cached {} != capacity {}",
            self.free.len(),
            never_issued,
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

    fn h(x: u64) -> BlockHash {
        BlockHash(x)
    }

    #[test]
    fn allocation_respects_capacity() {
        let mut kv = KvCache::new(16, 4, true);
        let mut a = Vec::new();
        assert_eq!(kv.blocks_for(33), 3);
        assert!(kv.allocate(3, &mut a));
        assert!(!kv.allocate(2, &mut a));
        assert_eq!(a.len(), 3);
        kv.release(&mut a);
        assert_eq!(kv.free(), 4);
        kv.check_conservation();
    }

    #[test]
    fn released_full_blocks_are_reused_until_evicted() {
        let mut kv = KvCache::new(16, 4, true);
        let mut a = Vec::new();
        kv.allocate(3, &mut a);
        for (i, &b) in a.iter().enumerate() {
            kv.register(b, h(100 + i as u64));
        }
        kv.release(&mut a);
        assert_eq!((kv.used(), kv.cached(), kv.free()), (0, 3, 4));
        // Same prefix: all three hit; a different second block: one hit.
        assert_eq!(kv.probe([h(100), h(101), h(102)].into_iter()), (3, 3));
        assert_eq!(kv.probe([h(100), h(999), h(102)].into_iter()), (1, 1));
        let mut b = Vec::new();
        kv.reuse(h(100), &mut b);
        kv.reuse(h(101), &mut b);
        assert_eq!((kv.used(), kv.cached()), (2, 1));
        // Two new blocks: one never issued, then the LRU victim is the only cached block (102).
        assert!(kv.allocate(2, &mut b));
        assert_eq!(kv.probe([h(100), h(101), h(102)].into_iter()), (2, 0));
        kv.check_conservation();
        kv.release(&mut b);
        kv.check_conservation();
        assert_eq!(kv.free(), 4);
    }

    #[test]
    fn eviction_order_is_least_recently_released_tail_first() {
        let mut kv = KvCache::new(1, 3, true);
        let mut a = Vec::new();
        kv.allocate(3, &mut a);
        for (i, &b) in a.iter().enumerate() {
            kv.register(b, h(i as u64));
        }
        kv.release(&mut a); // released tail first: 2, 1, 0 -> LRU order 2, 1, 0
        let mut b = Vec::new();
        kv.allocate(1, &mut b);
        assert_eq!(kv.probe([h(0), h(1)].into_iter()).0, 2, "block 2 (the tail) went first");
        assert_eq!(kv.probe([h(2)].into_iter()).0, 0);
    }

    #[test]
    fn without_prefix_caching_nothing_is_kept() {
        let mut kv = KvCache::new(16, 2, false);
        let mut a = Vec::new();
        kv.allocate(2, &mut a);
        kv.register(a[0], h(1));
        kv.release(&mut a);
        assert_eq!(kv.probe([h(1)].into_iter()), (0, 0));
        assert_eq!(kv.cached(), 0);
    }
}
