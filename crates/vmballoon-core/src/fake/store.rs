//! [`VecStore`]: the storage of units that the [`PageAllocator`] contract asks of a platform
//! (three shelves, the batch under way, the parked units), kept in plain `VecDeque`s for the
//! test doubles and the simulator. The driver keeps the same things in its MDL chains.

#![allow(
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test double: a broken contract must fail the test loudly"
)]

use std::collections::VecDeque;

use crate::mask::PageMask;
#[cfg(doc)]
use crate::platform::{PARK_CAPACITY, PageAllocator};
use crate::platform::{Shelf, StorePosition};
use crate::protocol::BATCH_CAPACITY;

/// The storage of units the [`PageAllocator`] contract asks of a platform, for the test
/// doubles and the simulator: three shelves, the batch under way and the parked units.
/// It checks the engine's side of the contract (no more than a batch of staged units) by
/// panicking, like every test double here; [`PARK_CAPACITY`] is the caller's to check.
#[derive(Debug)]
pub struct VecStore<U> {
    shelves: [VecDeque<U>; Shelf::COUNT],
    staged: VecDeque<U>,
    parked: VecDeque<(U, PageMask)>,
}

impl<U> Default for VecStore<U> {
    fn default() -> Self {
        Self {
            shelves: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            staged: VecDeque::new(),
            parked: VecDeque::new(),
        }
    }
}

impl<U> VecStore<U> {
    /// Empty.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// [`PageAllocator::store`].
    pub fn store(&mut self, shelf: Shelf, unit: U, position: StorePosition) {
        let list = &mut self.shelves[shelf.index()];
        match position {
            StorePosition::First => list.push_front(unit),
            StorePosition::Last => list.push_back(unit),
        }
    }

    /// [`PageAllocator::take`].
    pub fn take(&mut self, shelf: Shelf) -> Option<U> {
        self.shelves[shelf.index()].pop_front()
    }

    /// [`PageAllocator::stage`].
    ///
    /// # Panics
    /// If a whole batch of units is already staged.
    pub fn stage(&mut self, unit: U) {
        assert!(
            self.staged.len() < BATCH_CAPACITY,
            "more than a batch of units staged"
        );
        self.staged.push_back(unit);
    }

    /// Staged unit `i`.
    #[must_use]
    pub fn staged(&self, i: usize) -> Option<&U> {
        self.staged.get(i)
    }

    /// [`PageAllocator::unstage`].
    pub fn unstage(&mut self) -> Option<U> {
        self.staged.pop_front()
    }

    /// [`PageAllocator::park`]. Never refuses: the caller checks [`PARK_CAPACITY`].
    pub fn park(&mut self, unit: U, held: PageMask) {
        self.parked.push_back((unit, held));
    }

    /// [`PageAllocator::unpark`].
    pub fn unpark(&mut self) -> Option<(U, PageMask)> {
        self.parked.pop_front()
    }

    /// [`PageAllocator::parked`].
    #[must_use]
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// The units on `shelf`, in take order.
    pub fn shelf(&self, shelf: Shelf) -> impl Iterator<Item = &U> {
        self.shelves[shelf.index()].iter()
    }

    /// The parked units and what the host holds of each.
    pub fn parked_units(&self) -> impl Iterator<Item = &(U, PageMask)> {
        self.parked.iter()
    }

    /// Every unit: on a shelf, staged or parked.
    pub fn all(&self) -> impl Iterator<Item = &U> {
        self.shelves
            .iter()
            .flatten()
            .chain(self.staged.iter())
            .chain(self.parked.iter().map(|(u, _)| u))
    }
}
