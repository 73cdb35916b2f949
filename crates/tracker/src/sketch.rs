//! [`Sketch`]: how often each key was seen lately, in four bits per counter.
//!
//! A count-min sketch: each key maps to four 4-bit counters, one in each quarter of a
//! table of `u64` words (sixteen counters a word); its estimate is the smallest of the
//! four. Counters saturate at 15, and after ten additions per word the whole table is
//! halved, so what was popular long ago fades: frequency ages, as TinyLFU needs. The table
//! has at least as many words as keys tracked and grows (starting afresh) when the
//! tracker outgrows it.

/// Halve every counter after this many additions per word.
const SAMPLE_PER_WORD: u64 = 10;
/// The smallest table, in words.
const MIN_WORDS: usize = 64;
/// Every counter's low bit.
const LOW_BITS: u64 = 0x1111_1111_1111_1111;
/// What is left of every counter after a right shift by one.
const HALF_MASK: u64 = 0x7777_7777_7777_7777;

/// Odd multipliers that give each of the four probes its own hash.
const SEEDS: [u64; 4] = [
    0xc3a5_c85c_97cb_3127,
    0xb492_b66f_be98_f273,
    0x9ae1_6a3b_2f90_404f,
    0xcbf2_9ce4_8422_2325,
];

#[derive(Debug, Clone)]
pub(crate) struct Sketch {
    table: Vec<u64>,
    /// Additions since the last halving (only those that raised a counter).
    additions: u64,
}

impl Sketch {
    pub(crate) fn new() -> Self {
        Sketch {
            table: vec![0; MIN_WORDS],
            additions: 0,
        }
    }

    /// Makes room for `keys` keys: a table of at least that many words. A larger table
    /// starts empty (what was counted cannot be spread over the new layout).
    pub(crate) fn reserve(&mut self, keys: usize) {
        if keys > self.table.len() {
            let words = keys.next_power_of_two();
            self.table = vec![0; words];
            self.additions = 0;
        }
    }

    /// The word and the bit offset of the counter probe `i` of `hash` uses.
    fn probe(&self, hash: u64, i: usize) -> (usize, u32) {
        let mut h = hash.wrapping_add(SEEDS[i]).wrapping_mul(SEEDS[i]);
        h ^= h >> 32;
        let word = h as usize & (self.table.len() - 1);
        // Each probe uses its own quarter of the word's sixteen counters; which counter
        // of the quarter comes from bits the word index did not use.
        let counter = (i as u32) * 4 + ((h >> 61) as u32 & 3);
        (word, counter * 4)
    }

    /// The estimate of how often `hash` was seen lately, `0..=15`.
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        (0..4)
            .map(|i| {
                let (word, shift) = self.probe(hash, i);
                ((self.table[word] >> shift) & 0xf) as u8
            })
            .min()
            .unwrap_or(0)
    }

    /// Counts one sighting of `hash`.
    pub(crate) fn increment(&mut self, hash: u64) {
        let mut added = false;
        for i in 0..4 {
            let (word, shift) = self.probe(hash, i);
            if (self.table[word] >> shift) & 0xf != 0xf {
                self.table[word] += 1 << shift;
                added = true;
            }
        }
        if added {
            self.additions += 1;
            if self.additions >= SAMPLE_PER_WORD * self.table.len() as u64 {
                self.halve();
            }
        }
    }

    /// Halves every counter (rounding down).
    fn halve(&mut self) {
        let mut odd = 0u64;
        for word in &mut self.table {
            odd += u64::from((*word & LOW_BITS).count_ones());
            *word = (*word >> 1) & HALF_MASK;
        }
        // Each addition raised four counters; the odd ones lost half a count each.
        self.additions = (self.additions - (odd / 4).min(self.additions)) / 2;
    }
}

#[cfg(test)]
mod tests {
    use super::Sketch;

    fn mix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn counts_up_to_fifteen_and_never_under() {
        let mut s = Sketch::new();
        for n in 1..=20u8 {
            s.increment(mix(7));
            assert_eq!(s.frequency(mix(7)), n.min(15));
        }
        // Others stay low: a count-min sketch may over-count, never under-count.
        let others = (100..164).filter(|&k| s.frequency(mix(k)) > 0).count();
        assert!(others < 8, "{others} unseen keys look seen");
    }

    #[test]
    fn halving_ages_what_was_popular() {
        let mut s = Sketch::new();
        for _ in 0..15 {
            s.increment(mix(1));
        }
        assert_eq!(s.frequency(mix(1)), 15);
        // Enough other traffic to pass the sample size: key 1 fades.
        for k in 0..(10 * 64 + 10) {
            s.increment(mix(1000 + k));
        }
        assert!(s.frequency(mix(1)) <= 7, "{}", s.frequency(mix(1)));
    }

    #[test]
    fn a_larger_table_starts_empty() {
        let mut s = Sketch::new();
        s.increment(mix(3));
        s.reserve(64);
        assert_eq!(s.frequency(mix(3)), 1, "no growth at the current size");
        s.reserve(65);
        assert_eq!(s.frequency(mix(3)), 0);
        assert_eq!(s.table.len(), 128);
    }
}
