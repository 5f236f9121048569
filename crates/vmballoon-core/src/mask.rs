//! [`PageMask`]: one bit per page of a chunk (at most [`BATCH_CAPACITY`] pages), so the
//! outcome of a batch fits in 64 bytes instead of an array on a 24 KiB kernel stack.

use crate::protocol::BATCH_CAPACITY;

const WORDS: usize = BATCH_CAPACITY / 64;

/// A set of page indices `0..512` within one chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageMask {
    words: [u64; WORDS],
}

impl PageMask {
    /// The empty set.
    pub const EMPTY: Self = Self { words: [0; WORDS] };

    /// The set `0..n` (clamped to the capacity).
    #[must_use]
    pub fn first(n: usize) -> Self {
        let n = n.min(BATCH_CAPACITY);
        let mut m = Self::EMPTY;
        for (w, word) in m.words.iter_mut().enumerate() {
            let below = n.saturating_sub(w.saturating_mul(64));
            *word = match below {
                0 => 0,
                1..=63 => (1u64 << below).wrapping_sub(1),
                _ => u64::MAX,
            };
        }
        m
    }

    /// Adds page `i`; indices at or past the capacity are ignored.
    pub fn insert(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Removes page `i`.
    pub fn remove(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    /// Whether page `i` is in the set.
    #[must_use]
    pub fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Number of pages in the set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Pages in `self` or `other`.
    #[must_use]
    pub fn union(&self, other: &Self) -> Self {
        let mut m = *self;
        for (a, b) in m.words.iter_mut().zip(other.words.iter()) {
            *a |= *b;
        }
        m
    }

    /// Pages in `0..n` that are not in `self`.
    #[must_use]
    pub fn complement_within(&self, n: usize) -> Self {
        let mut m = Self::first(n);
        for (a, b) in m.words.iter_mut().zip(self.words.iter()) {
            *a &= !*b;
        }
        m
    }

    /// The indices in the set, ascending (one step per set bit, not per index).
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &bits)| Bits {
            bits,
            base: w.saturating_mul(64),
        })
    }
}

/// The set bits of one word, lowest first.
struct Bits {
    bits: u64,
    base: usize,
}

impl Iterator for Bits {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.bits == 0 {
            return None;
        }
        let bit = self.bits.trailing_zeros() as usize;
        self.bits &= self.bits.wrapping_sub(1);
        Some(self.base.saturating_add(bit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let mut m = PageMask::EMPTY;
        assert!(m.is_empty());
        m.insert(0);
        m.insert(63);
        m.insert(64);
        m.insert(511);
        m.insert(512); // ignored
        assert_eq!(m.len(), 4);
        assert!(m.contains(511) && !m.contains(512));
        m.remove(63);
        assert_eq!(m.iter().collect::<std::vec::Vec<_>>(), [0, 64, 511]);
        let c = m.complement_within(66);
        assert_eq!(c.len(), 64);
        assert!(!c.contains(0) && c.contains(1) && !c.contains(64) && c.contains(65));
        assert_eq!(PageMask::first(600).len(), 512);
        for n in [0, 1, 63, 64, 65, 127, 128, 300, 511, 512] {
            let f = PageMask::first(n);
            assert_eq!(f.len(), n);
            assert_eq!(
                f.iter().collect::<std::vec::Vec<_>>(),
                (0..n).collect::<std::vec::Vec<_>>()
            );
        }
        assert_eq!(m.union(&c).len(), 66 + 1);
    }
}
