//! [`Uncharged`]: which pages of a reservation the system does not charge the pool for.
//!
//! A page of a reservation is *charged* from the moment a block handed out covers part
//! of it until the pool decommits it; pages never handed out, and pages decommitted
//! since, are *uncharged*. The pool's `reserved` figure counts charged pages, which is
//! the most the reservation can add to the process's resident set.

/// One bit per page, set while the page is uncharged.
#[derive(Debug, Default)]
pub(crate) struct Uncharged {
    words: Vec<u64>,
}

impl Uncharged {
    /// Covers pages `0..pages`; pages added are uncharged.
    pub(crate) fn grow_to(&mut self, pages: usize) {
        let old = self.words.len() * 64;
        if pages <= old {
            return;
        }
        self.words.resize(pages.div_ceil(64), u64::MAX);
    }

    /// How many of pages `from..to` are uncharged.
    pub(crate) fn count(&self, from: usize, to: usize) -> usize {
        let mut n = 0;
        each_word(from, to, |word, mask| {
            n += (self.words[word] & mask).count_ones() as usize;
        });
        n
    }

    /// Marks pages `from..to` charged (`charge = true`) or uncharged.
    pub(crate) fn set(&mut self, from: usize, to: usize, charge: bool) {
        each_word(from, to, |word, mask| {
            let w = &mut self.words[word];
            if charge {
                *w &= !mask;
            } else {
                *w |= mask;
            }
        });
    }

    /// The maximal runs of pages in `from..to` that are uncharged (`uncharged = true`)
    /// or charged, in order, as `(first, end)` page ranges.
    pub(crate) fn runs(&self, from: usize, to: usize, uncharged: bool) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut page = from;
        while page < to {
            let word = self.words[page / 64];
            let bits = if uncharged { word } else { !word } >> (page % 64);
            if bits == 0 {
                // None of the rest of this word.
                page = (page / 64 + 1) * 64;
                continue;
            }
            let start = page + bits.trailing_zeros() as usize;
            if start >= to {
                break;
            }
            let len = (bits >> (start - page)).trailing_ones() as usize;
            let end = (start + len).min(to);
            match runs.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => runs.push((start, end)),
            }
            page = end;
        }
        runs
    }
}

/// Calls `f(word, mask)` for every word holding bits of pages `from..to`.
fn each_word(from: usize, to: usize, mut f: impl FnMut(usize, u64)) {
    let mut page = from;
    while page < to {
        let word = page / 64;
        let lo = page % 64;
        let hi = (to - word * 64).min(64);
        let mask = if hi - lo == 64 {
            u64::MAX
        } else {
            ((1u64 << (hi - lo)) - 1) << lo
        };
        f(word, mask);
        page = word * 64 + hi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sets_and_runs_agree_with_a_plain_model() {
        let mut bits = Uncharged::default();
        let mut model = vec![true; 300];
        bits.grow_to(300);
        let ops = [
            (3, 70, true),
            (64, 64, false),
            (100, 250, true),
            (120, 130, false),
        ];
        for (from, to, charge) in ops {
            bits.set(from, to, charge);
            model[from..to].fill(!charge);
            let uncharged = model.iter().filter(|&&u| u).count();
            assert_eq!(bits.count(0, 300), uncharged, "after {from}..{to} {charge}");
        }
        for (from, to) in [(0, 300), (5, 66), (63, 65), (119, 131), (64, 64)] {
            let uncharged = model[from..to].iter().filter(|&&u| u).count();
            assert_eq!(bits.count(from, to), uncharged, "{from}..{to}");
            for want in [true, false] {
                let mut runs = Vec::new();
                for (p, &uncharged) in model.iter().enumerate().take(to).skip(from) {
                    if uncharged == want {
                        match runs.last_mut() {
                            Some((_, end)) if *end == p => *end = p + 1,
                            _ => runs.push((p, p + 1)),
                        }
                    }
                }
                assert_eq!(bits.runs(from, to, want), runs, "{from}..{to} {want}");
            }
        }
    }
}
