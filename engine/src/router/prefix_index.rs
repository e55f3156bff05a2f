//! The router's prefix index: which instances hold which KV block, fed by the caches'
//! stored/evicted events (as Dynamo's indexer is fed by engine KV events), and the per-request
//! overlap query the prefix-aware policies read.
//!
//! Block hashes are chained, so hash `j` names the whole prefix up to block `j`, and each
//! cache's set of hashes is closed under prefixes (see [`crate::kv`]): an instance holding
//! block `j` of a prompt holds blocks `0..j` too. Along a prompt the holder sets therefore
//! shrink, `H₀ ⊇ H₁ ⊇ …`, and an instance's overlap is the first `j` whose set lacks it. A
//! query walks the prompt's hashes once and looks at holders only where the set shrinks
//! (equal sizes mean equal sets), so it costs O(prompt blocks + holders of the first block)
//! when the overlaps take few distinct values, the common case (a shared system prompt, a
//! conversation so far).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::kv::{BlockHash, IdentityHasher};

/// Block hash → instances holding it, for instances of one block size.
#[derive(Debug, Default)]
pub struct PrefixIndex {
    holders: HashMap<BlockHash, Vec<u32>, BuildHasherDefault<IdentityHasher>>,
    // Per-query scratch: a stamp per instance, the current holder set, the instances set.
    mark: Vec<u32>,
    stamp: u32,
    active: Vec<u32>,
}

impl PrefixIndex {
    /// An empty index over `instances` instances.
    pub fn new(instances: usize) -> Self {
        PrefixIndex { holders: HashMap::default(), mark: vec![0; instances], stamp: 0, active: Vec::new() }
    }

    /// Instance `i` now holds `hash`.
    pub fn stored(&mut self, i: u32, hash: BlockHash) {
        let h = self.holders.entry(hash).or_default();
        debug_assert!(!h.contains(&i), "instance {i} reported {hash:?} stored twice");
        h.push(i);
    }

    /// Instance `i` no longer holds `hash`.
    pub fn removed(&mut self, i: u32, hash: BlockHash) {
        if let Some(h) = self.holders.get_mut(&hash) {
            if let Some(k) = h.iter().position(|&x| x == i) {
                h.swap_remove(k);
            }
            if h.is_empty() {
                self.holders.remove(&hash);
            }
        }
    }

    /// Hashes held by at least one instance.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    /// Whether no instance holds anything.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// For the prompt whose leading block hashes are `hashes`, calls `hit(instance, blocks)`
    /// once for every instance holding at least its first block, with the number of leading
    /// blocks it holds. Instances not reported hold none.
    pub fn overlaps(&mut self, hashes: &[BlockHash], mut hit: impl FnMut(u32, u32)) {
        let PrefixIndex { holders, mark, stamp, active } = self;
        let Some(first) = hashes.first().and_then(|h| holders.get(h)) else { return };
        active.clear();
        active.extend_from_slice(first);
        for (j, h) in hashes.iter().enumerate().skip(1) {
            let next = holders.get(h).map_or(&[][..], Vec::as_slice);
            if next.len() == active.len() {
                // Nested and as large: the same instances all hold block j too.
                continue;
            }
            if cfg!(debug_assertions) {
                let s = next_stamp(mark, stamp);
                for &i in active.iter() {
                    mark[i as usize] = s;
                }
                debug_assert!(next.iter().all(|&i| mark[i as usize] == s), "prefix index not closed under prefixes at block {j}");
            }
            let s = next_stamp(mark, stamp);
            for &i in next {
                mark[i as usize] = s;
            }
            for &i in active.iter() {
                if mark[i as usize] != s {
                    hit(i, j as u32);
                }
            }
            active.clear();
            active.extend_from_slice(next);
            if active.is_empty() {
                return;
            }
        }
        for &i in active.iter() {
            hit(i, hashes.len() as u32);
        }
    }
}

// A fresh stamp for `mark` (cleared when the counter wraps).
fn next_stamp(mark: &mut [u32], stamp: &mut u32) -> u32 {
    *stamp = stamp.wrapping_add(1);
    if *stamp == 0 {
        mark.fill(0);
        *stamp = 1;
    }
    *stamp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: u64) -> BlockHash {
        BlockHash(x)
    }

    #[test]
    fn overlaps_follow_the_shrinking_holder_sets() {
        let mut ix = PrefixIndex::new(4);
        // Instance 0 holds a, b, c; 1 holds a, b; 2 holds a; 3 nothing.
        for (i, hs) in [(0, &[1, 2, 3][..]), (1, &[1, 2]), (2, &[1])] {
            for &x in hs {
                ix.stored(i, h(x));
            }
        }
        let mut got = Vec::new();
        ix.overlaps(&[h(1), h(2), h(3), h(4)], |i, n| got.push((i, n)));
        got.sort();
        assert_eq!(got, vec![(0, 3), (1, 2), (2, 1)]);
        // A prompt that diverges after its first block.
        got.clear();
        ix.overlaps(&[h(1), h(9)], |i, n| got.push((i, n)));
        got.sort();
        assert_eq!(got, vec![(0, 1), (1, 1), (2, 1)]);
        // Eviction of the tail of instance 0.
        ix.removed(0, h(3));
        got.clear();
        ix.overlaps(&[h(1), h(2), h(3)], |i, n| got.push((i, n)));
        got.sort();
        assert_eq!(got, vec![(0, 2), (1, 2), (2, 1)]);
        ix.removed(2, h(1));
        ix.removed(1, h(1));
        ix.removed(1, h(2));
        ix.removed(0, h(1));
        ix.removed(0, h(2));
        assert!(ix.is_empty());
    }
}
