//! [`FreeIndex`]: the free blocks of one class in `(size, address)` order, for best fit.
//!
//! Blocks are binned by size into classes, eight per doubling above 8 KiB and one per
//! 512-byte step below, each class a vector sorted by `(size, address)`, with a bitmap
//! of the classes that hold any. Classes partition the sizes in order, so walking the
//! classes up from a size's own and each class's vector from the first key at least
//! that size visits the blocks in exactly the `(size, address)` order of one sorted
//! set. A lookup is a bitmap scan and a binary search in a short vector, and an insert
//! or remove moves only the part of one class's vector after the key: cheaper than a
//! B-tree for the few hundred free blocks a pool holds.

use crate::arena::MIN_BLOCK;

/// Classes: 16 below 8 KiB, then 8 per doubling up to `usize::MAX`.
const CLASSES: usize = 16 + (usize::BITS as usize - 4) * 8;
const WORDS: usize = CLASSES.div_ceil(64);

/// The key of a free block: its size, then its address.
fn key(size: usize, addr: usize) -> u128 {
    ((size as u128) << 64) | addr as u128
}

/// The class of a size (a multiple of [`MIN_BLOCK`], at least one): classes are ordered
/// as the sizes they hold.
fn class_of(size: usize) -> usize {
    let units = (size / MIN_BLOCK).max(1);
    if units < 16 {
        return units;
    }
    let top = (usize::BITS - 1 - units.leading_zeros()) as usize;
    16 + (top - 4) * 8 + ((units >> (top - 3)) & 7)
}

/// Free blocks as `(size, address) -> node`, in order.
#[derive(Debug)]
pub(crate) struct FreeIndex {
    classes: Vec<Vec<(u128, u32)>>,
    /// Bit `c` set while class `c` holds a block.
    occupied: [u64; WORDS],
    len: usize,
}

impl Default for FreeIndex {
    fn default() -> Self {
        Self {
            classes: vec![Vec::new(); CLASSES],
            occupied: [0; WORDS],
            len: 0,
        }
    }
}

impl FreeIndex {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn insert(&mut self, size: usize, addr: usize, node: u32) {
        let class = class_of(size);
        let k = key(size, addr);
        let blocks = &mut self.classes[class];
        let at = blocks.partition_point(|&(b, _)| b < k);
        debug_assert!(blocks.get(at).is_none_or(|&(b, _)| b != k), "indexed once");
        blocks.insert(at, (k, node));
        self.occupied[class / 64] |= 1 << (class % 64);
        self.len += 1;
    }

    /// Removes the block of this size at this address; its node, if it was indexed.
    pub(crate) fn remove(&mut self, size: usize, addr: usize) -> Option<u32> {
        let class = class_of(size);
        let blocks = &mut self.classes[class];
        let at = blocks
            .binary_search_by_key(&key(size, addr), |&(k, _)| k)
            .ok()?;
        let (_, node) = blocks.remove(at);
        if blocks.is_empty() {
            self.occupied[class / 64] &= !(1 << (class % 64));
        }
        self.len -= 1;
        Some(node)
    }

    /// The node of the block of this size at this address, if indexed.
    pub(crate) fn get(&self, size: usize, addr: usize) -> Option<u32> {
        let blocks = &self.classes[class_of(size)];
        let at = blocks
            .binary_search_by_key(&key(size, addr), |&(k, _)| k)
            .ok()?;
        Some(blocks[at].1)
    }

    /// The blocks of `min..=max` bytes, smallest first and lowest address first among
    /// equals.
    pub(crate) fn range(&self, min: usize, max: usize) -> impl Iterator<Item = u32> + '_ {
        let class = class_of(min);
        let from = key(min, 0);
        let at = self.classes[class].partition_point(|&(k, _)| k < from);
        Range {
            index: self,
            class: Some(class),
            at,
            upper: key(max, usize::MAX),
        }
    }

    /// The largest free block's size.
    pub(crate) fn largest(&self) -> Option<usize> {
        let word = self.occupied.iter().rposition(|&w| w != 0)?;
        let class = word * 64 + 63 - self.occupied[word].leading_zeros() as usize;
        self.classes[class].last().map(|&(k, _)| (k >> 64) as usize)
    }

    /// Every indexed node, in order.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = u32> + '_ {
        self.classes.iter().flatten().map(|&(_, node)| node)
    }

    /// The first class at or after `class` that holds a block.
    fn next_occupied(&self, class: usize) -> Option<usize> {
        let mut word = class / 64;
        if word >= WORDS {
            return None;
        }
        let mut bits = self.occupied[word] & (u64::MAX << (class % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + bits.trailing_zeros() as usize);
            }
            word += 1;
            bits = *self.occupied.get(word)?;
        }
    }
}

/// The walk of [`FreeIndex::range`].
struct Range<'a> {
    index: &'a FreeIndex,
    /// The class being walked (`None` once past the last).
    class: Option<usize>,
    at: usize,
    upper: u128,
}

impl Iterator for Range<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        loop {
            let class = self.class?;
            if let Some(&(k, node)) = self.index.classes[class].get(self.at) {
                if k > self.upper {
                    self.class = None;
                    return None;
                }
                self.at += 1;
                return Some(node);
            }
            self.class = self.index.next_occupied(class + 1);
            self.at = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn classes_are_ordered_as_their_sizes() {
        let mut last = 0;
        for units in 1..100_000usize {
            let class = class_of(units * MIN_BLOCK);
            assert!(class >= last && class <= last + 1, "{units}");
            last = class;
        }
        assert!(class_of(usize::MAX / MIN_BLOCK * MIN_BLOCK) < CLASSES);
    }

    #[test]
    fn walks_like_a_sorted_map() {
        let mut index = FreeIndex::default();
        let mut model = BTreeMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..4000u32 {
            let size = (MIN_BLOCK * (1 + (next() % 4096) as usize)) << (next() % 4);
            let addr = (next() % 64) as usize * MIN_BLOCK;
            if next() % 3 == 0 && !model.is_empty() {
                let (&(s, a), &n) = model
                    .iter()
                    .nth(next() as usize % model.len())
                    .expect("an index below the length");
                assert_eq!(index.remove(s, a), Some(n));
                model.remove(&(s, a));
            } else if let std::collections::btree_map::Entry::Vacant(slot) =
                model.entry((size, addr))
            {
                index.insert(size, addr, step);
                slot.insert(step);
            }
            assert_eq!(index.len(), model.len());
            let (min, max) = {
                let a = MIN_BLOCK * (1 + (next() % 8192) as usize);
                let b = MIN_BLOCK * (1 + (next() % 8192) as usize);
                (a.min(b), a.max(b))
            };
            let want: Vec<u32> = model
                .range((min, 0)..=(max, usize::MAX))
                .map(|(_, &n)| n)
                .take(70)
                .collect();
            let got: Vec<u32> = index.range(min, max).take(70).collect();
            assert_eq!(got, want, "step {step}: {min}..={max}");
            assert_eq!(index.largest(), model.keys().last().map(|&(s, _)| s));
        }
        let all: Vec<u32> = index.nodes().collect();
        assert_eq!(all, model.values().copied().collect::<Vec<_>>());
    }
}
