//! Paged KV cache: a capacity in blocks of `block_size` tokens.

/// Blocks of KV cache on one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvCache {
    block_size: u32,
    capacity: u64,
    used: u64,
}

impl KvCache {
    /// A cache of `capacity` blocks of `block_size` tokens.
    pub fn new(block_size: u32, capacity: u64) -> Self {
        KvCache { block_size: block_size.max(1), capacity, used: 0 }
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
        self.capacity
    }
    /// Blocks in use.
    pub fn used(&self) -> u64 {
        self.used
    }
    /// Blocks free.
    pub fn free(&self) -> u64 {
        self.capacity - self.used
    }
    /// Takes `n` blocks if that many are free.
    pub fn try_allocate(&mut self, n: u32) -> bool {
        if u64::from(n) <= self.free() {
            self.used += u64::from(n);
            true
        } else {
            false
        }
    }
    /// Returns `n` blocks.
    pub fn release(&mut self, n: u32) {
        debug_assert!(u64::from(n) <= self.used, "releasing more KV blocks than are in use");
        self.used -= u64::from(n).min(self.used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_respects_capacity() {
        let mut kv = KvCache::new(16, 4);
        assert_eq!(kv.blocks_for(33), 3);
        assert!(kv.try_allocate(3));
        assert!(!kv.try_allocate(2));
        kv.release(3);
        assert_eq!(kv.free(), 4);
    }
}
