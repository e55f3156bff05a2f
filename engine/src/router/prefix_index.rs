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

/// The instances holding one hash: usually one (content unique to a request or a
/// conversation), so the common case needs no allocation.
#[derive(Debug)]
enum Holders {
    One(u32),
    Many(Vec<u32>),
}

impl Holders {
    fn as_slice(&self) -> &[u32] {
        match self {
            Holders::One(x) => std::slice::from_ref(x),
            Holders::Many(v) => v,
        }
    }
}

type HashMapOf<V> = HashMap<BlockHash, V, BuildHasherDefault<IdentityHasher>>;

/// Fleets of at most this many instances keep each hash's holders as a bit mask: one word
/// per hash, no allocation, and set operations in one instruction.
const MASK_INSTANCES: usize = 64;

/// Block hash → instances holding it, for instances of one block size.
#[derive(Debug, Default)]
pub struct PrefixIndex {
    /// Holders as bit masks (fleets of at most [`MASK_INSTANCES`]) ...
    masks: Option<HashMapOf<u64>>,
    /// ... or as lists.
    holders: HashMapOf<Holders>,
    // Per-query scratch: a stamp per instance, the current holder set, the instances set.
    mark: Vec<u32>,
    stamp: u32,
    active: Vec<u32>,
}

impl PrefixIndex {
    /// An empty index over `instances` instances.
    pub fn new(instances: usize) -> Self {
        let masks = (instances <= MASK_INSTANCES).then(HashMap::default);
        PrefixIndex { masks, holders: HashMap::default(), mark: vec![0; instances], stamp: 0, active: Vec::new() }
    }

    /// Instance `i` now holds `hash`.
    pub fn stored(&mut self, i: u32, hash: BlockHash) {
        if let Some(m) = &mut self.masks {
            let bits = m.entry(hash).or_insert(0);
            debug_assert!(*bits & (1 << i) == 0, "instance {i} reported {hash:?} stored twice");
            *bits |= 1 << i;
            return;
        }
        match self.holders.entry(hash) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Holders::One(i));
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let h = e.get_mut();
                debug_assert!(!h.as_slice().contains(&i), "instance {i} reported {hash:?} stored twice");
                match h {
                    Holders::One(x) => *h = Holders::Many(vec![*x, i]),
                    Holders::Many(v) => v.push(i),
                }
            }
        }
    }

    /// Instance `i` no longer holds `hash`.
    pub fn removed(&mut self, i: u32, hash: BlockHash) {
        if let Some(m) = &mut self.masks {
            if let std::collections::hash_map::Entry::Occupied(mut e) = m.entry(hash) {
                *e.get_mut() &= !(1u64 << i);
                if *e.get() == 0 {
                    e.remove();
                }
            }
            return;
        }
        let std::collections::hash_map::Entry::Occupied(mut e) = self.holders.entry(hash) else { return };
        match e.get_mut() {
            Holders::One(x) if *x == i => {
                e.remove();
            }
            Holders::One(_) => {}
            Holders::Many(v) => {
                if let Some(k) = v.iter().position(|&x| x == i) {
                    v.swap_remove(k);
                }
                if v.len() == 1 {
                    *e.get_mut() = Holders::One(v[0]);
                }
            }
        }
    }

    /// Hashes held by at least one instance.
    pub fn len(&self) -> usize {
        self.masks.as_ref().map_or(self.holders.len(), HashMap::len)
    }

    /// Whether no instance holds anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For the prompt whose leading block hashes are `hashes`, calls `hit(instance, blocks)`
    /// once for every instance holding at least its first block, with the number of leading
    /// blocks it holds. Instances not reported hold none.
    pub fn overlaps(&mut self, hashes: &[BlockHash], mut hit: impl FnMut(u32, u32)) {
        if let Some(masks) = &self.masks {
            // Exact intersections, closed under prefixes or not.
            let Some(&first) = hashes.first().and_then(|h| masks.get(h)) else { return };
            let mut active = first;
            for (j, h) in hashes.iter().enumerate().skip(1) {
                let next = active & masks.get(h).copied().unwrap_or(0);
                let mut dropped = active & !next;
                while dropped != 0 {
                    hit(dropped.trailing_zeros(), j as u32);
                    dropped &= dropped - 1;
                }
                active = next;
                if active == 0 {
                    return;
                }
            }
            while active != 0 {
                hit(active.trailing_zeros(), hashes.len() as u32);
                active &= active - 1;
            }
            return;
        }
        let PrefixIndex { holders, mark, stamp, active, .. } = self;
        let Some(first) = hashes.first().and_then(|h| holders.get(h)) else { return };
        active.clear();
        active.extend_from_slice(first.as_slice());
        for (j, h) in hashes.iter().enumerate().skip(1) {
            let next = holders.get(h).map_or(&[][..], Holders::as_slice);
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
        // Masks (small fleets) and lists (large ones) answer alike.
        for n in [4, 100] {
            shrinking_holder_sets(PrefixIndex::new(n));
        }
    }

    fn shrinking_holder_sets(mut ix: PrefixIndex) {
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
