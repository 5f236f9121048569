//! A small guest for engine tests: [`FakeWorld`], RAM as a frame bitmap with OS-locked and
//! pinned memory taken from the top and the balloon allocating from the bottom, and its two
//! handles, [`FakePages`] (the [`PageAllocator`]) and [`FakeMemory`] (the [`MemorySource`]).
//!
//! It keeps the books a real guest would: resident available and commit are charged as
//! Windows charges MDL allocations (`docs/windows-memory.md` §1.6), 2 MiB pages come only
//! from whole free aligned blocks (§1.4), and allocations can be scripted to fail or come
//! back short. It checks the platform contract as it goes (no unit stored on the wrong
//! shelf, no more than [`PARK_CAPACITY`] parked, no double free) and, on drop and in
//! [`FakeWorld::assert_no_leaks`], that no page leaked.
//!
//! Test code: a broken contract panics, which is its job.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test double: a broken contract must fail the test loudly"
)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use crate::mask::PageMask;
use crate::platform::{
    MemoryError, MemorySnapshot, MemorySource, PARK_CAPACITY, PageAllocator, PinnedBreakdown,
    Shelf, StorePosition, UnitKind,
};
use crate::protocol::BATCH_CAPACITY;
use crate::units::{Frames, PageSize, Pfn};

use super::VecStore;

/// A unit handed out by [`FakePages`]: its 4 KiB frames. Dropping one that still has pages
/// is a leak, which the world reports.
#[derive(Debug)]
pub struct FakeUnit {
    kind: UnitKind,
    frames: Vec<u64>,
    leaks: Rc<Cell<u64>>,
}

impl FakeUnit {
    /// Its kind.
    #[must_use]
    pub const fn kind(&self) -> UnitKind {
        self.kind
    }

    /// Its frames.
    #[must_use]
    pub fn frames(&self) -> &[u64] {
        &self.frames
    }
}

impl Drop for FakeUnit {
    fn drop(&mut self) {
        self.leaks.set(self.leaks.get() + self.frames.len() as u64);
    }
}

#[derive(Debug)]
struct World {
    /// `true` = free.
    free: Vec<bool>,
    free_count: u64,
    /// No free frame below this index (a scan hint).
    low_free: usize,
    os_locked: u64,
    pinned: Vec<(u64, u64)>,
    committed_base: u64,
    commit_limit: u64,
    low_memory: bool,
    /// `LowMemoryCondition` also signals while fewer frames than this are free.
    low_memory_below: Option<u64>,
    /// How much of the balloon's frames Windows charges: (resident available, commit), in
    /// percent.
    charge_percent: (u64, u64),
    snapshot_fails: bool,
    /// Per [`PageSize`]: 4 KiB = scattered allocations, 2 MiB = whole blocks.
    fail_allocations: [u32; 2],
    short_allocations: [u32; 2],
    store: VecStore<FakeUnit>,
    /// Frames taken from the free pool by the balloon (in flight, stored or parked).
    balloon_out: u64,
    leaks: Rc<Cell<u64>>,
    allocations: [u64; 2],
}

/// A simple guest for engine tests: RAM as a frame bitmap, OS-locked and pinned memory
/// taken from the top, the balloon allocating from the bottom (2 MiB pages from whole free
/// aligned blocks), resident available and commit charged exactly like Windows charges
/// MDL allocations (`docs/windows-memory.md` §1.6). Handles share one world.
#[derive(Clone, Debug)]
pub struct FakeWorld {
    world: Rc<RefCell<World>>,
}

/// The [`PageAllocator`] handle of a [`FakeWorld`].
#[derive(Clone, Debug)]
pub struct FakePages(FakeWorld);

/// The [`MemorySource`] handle of a [`FakeWorld`].
#[derive(Clone, Debug)]
pub struct FakeMemory(FakeWorld);

impl FakeWorld {
    /// A guest with `ram_mib` of RAM, `os_locked_mib` of it nonpaged OS memory, and a
    /// commit limit of RAM + `pagefile_mib`.
    #[must_use]
    pub fn new(ram_mib: u64, os_locked_mib: u64, pagefile_mib: u64) -> Self {
        let total = Frames::from_mib(ram_mib).get();
        let os = Frames::from_mib(os_locked_mib).get();
        let mut free = vec![true; total as usize];
        for f in free.iter_mut().rev().take(os as usize) {
            *f = false;
        }
        Self {
            world: Rc::new(RefCell::new(World {
                free,
                free_count: total - os,
                low_free: 0,
                os_locked: os,
                pinned: Vec::new(),
                committed_base: os,
                commit_limit: total + Frames::from_mib(pagefile_mib).get(),
                low_memory: false,
                low_memory_below: None,
                charge_percent: (100, 100),
                snapshot_fails: false,
                fail_allocations: [0; 2],
                short_allocations: [0; 2],
                store: VecStore::new(),
                balloon_out: 0,
                leaks: Rc::new(Cell::new(0)),
                allocations: [0; 2],
            })),
        }
    }

    /// The allocator handle.
    #[must_use]
    pub fn pages(&self) -> FakePages {
        FakePages(self.clone())
    }

    /// The memory-source handle.
    #[must_use]
    pub fn memory(&self) -> FakeMemory {
        FakeMemory(self.clone())
    }

    /// Pins `mib` (taken from the highest free frames). Returns an id for [`FakeWorld::unpin`],
    /// or `None` if there are not enough free frames (an application's out-of-memory).
    pub fn pin(&self, mib: u64) -> Option<usize> {
        let mut w = self.world.borrow_mut();
        let n = Frames::from_mib(mib).get();
        if w.free_count < n {
            return None;
        }
        let mut taken = 0;
        let mut first = 0;
        for (i, f) in w.free.iter_mut().enumerate().rev() {
            if taken == n {
                break;
            }
            if *f {
                *f = false;
                taken += 1;
                first = i as u64;
            }
        }
        w.free_count -= n;
        w.pinned.push((first, n));
        Some(w.pinned.len() - 1)
    }

    /// Pins `mib` starting at `first_mib` (every frame of the range must be free). Returns an
    /// id for [`FakeWorld::unpin`], or `None` if a frame of the range is not free.
    pub fn pin_range(&self, first_mib: u64, mib: u64) -> Option<usize> {
        let mut w = self.world.borrow_mut();
        let first = Frames::from_mib(first_mib).get() as usize;
        let n = Frames::from_mib(mib).get() as usize;
        let range = w.free.get_mut(first..first + n)?;
        if !range.iter().all(|f| *f) {
            return None;
        }
        range.iter_mut().for_each(|f| *f = false);
        w.free_count -= n as u64;
        w.pinned.push((first as u64, n as u64));
        Some(w.pinned.len() - 1)
    }

    /// Releases pinned memory `id` (its frames become free).
    pub fn unpin(&self, id: usize) {
        let mut w = self.world.borrow_mut();
        let (first, n) = std::mem::take(&mut w.pinned[id]);
        let mut released = 0;
        for f in w.free.iter_mut().skip(first as usize) {
            if released == n {
                break;
            }
            if !*f {
                *f = true;
                released += 1;
            }
        }
        w.free_count += released;
        w.low_free = w.low_free.min(first as usize);
    }

    /// Sets `LowMemoryCondition`.
    pub fn set_low_memory(&self, on: bool) {
        self.world.borrow_mut().low_memory = on;
    }

    /// Signals `LowMemoryCondition` whenever fewer than `mib` are free (as Windows does
    /// below its threshold), on top of [`set_low_memory`](Self::set_low_memory).
    pub fn low_memory_below(&self, mib: u64) {
        self.world.borrow_mut().low_memory_below = Some(Frames::from_mib(mib).get());
    }

    /// How much of the balloon's MDL pages the resident-available and commit figures are
    /// charged, in percent (100 = charged like `docs/windows-memory.md` §1.6 describes, 0 = not
    /// at all). The engine measures this rather than assuming it.
    pub fn charge_mdl_pages(&self, resident_percent: u64, commit_percent: u64) {
        self.world.borrow_mut().charge_percent = (resident_percent, commit_percent);
    }

    /// Adds pageable commit.
    pub fn commit(&self, mib: u64) {
        self.world.borrow_mut().committed_base += Frames::from_mib(mib).get();
    }

    /// Makes snapshots fail (or work again).
    pub fn fail_snapshots(&self, fail: bool) {
        self.world.borrow_mut().snapshot_fails = fail;
    }

    /// The next `n` allocations of `size` return nothing.
    pub fn fail_allocations(&self, size: PageSize, n: u32) {
        self.world.borrow_mut().fail_allocations[size.index()] = n;
    }

    /// The next `n` allocations of `size` return half of what was asked.
    pub fn short_allocations(&self, size: PageSize, n: u32) {
        self.world.borrow_mut().short_allocations[size.index()] = n;
    }

    /// Allocation calls made, per size.
    #[must_use]
    pub fn allocations(&self, size: PageSize) -> u64 {
        self.world.borrow().allocations[size.index()]
    }

    /// Frames the balloon has taken from the OS (staged, stored or parked).
    #[must_use]
    pub fn balloon_frames(&self) -> Frames {
        Frames::new(self.world.borrow().balloon_out)
    }

    /// Frames of every unit the platform keeps (on a shelf, staged or parked).
    #[must_use]
    pub fn stored_frames(&self) -> Frames {
        let w = self.world.borrow();
        Frames::new(w.store.all().map(|u| u.frames.len() as u64).sum())
    }

    /// Frames of parked units that the host does not hold (refused pages held back from the
    /// OS until the end of the cycle, and the like).
    #[must_use]
    pub fn held_back_frames(&self) -> usize {
        let w = self.world.borrow();
        w.store
            .parked_units()
            .map(|(u, held)| u.frames.len() - held.len())
            .sum()
    }

    /// Units parked.
    #[must_use]
    pub fn parked_units(&self) -> usize {
        self.world.borrow().store.parked()
    }

    /// The PFNs of every unit the platform keeps.
    #[must_use]
    pub fn frames_of_balloon(&self) -> Vec<u64> {
        let w = self.world.borrow();
        w.store
            .all()
            .flat_map(|u| u.frames.iter().copied())
            .collect()
    }

    /// Frames on `shelf`.
    #[must_use]
    pub fn shelf_frames(&self, shelf: Shelf) -> Frames {
        let w = self.world.borrow();
        Frames::new(w.store.shelf(shelf).map(|u| u.frames.len() as u64).sum())
    }

    /// Asserts that every frame that left the allocator is kept by the platform (nothing
    /// dropped, nothing staged between ticks).
    pub fn assert_no_leaks(&self) {
        let w = self.world.borrow();
        assert_eq!(w.leaks.get(), 0, "units dropped with pages in them");
        assert!(
            w.store.staged(0).is_none(),
            "a unit left staged after a tick"
        );
        let kept: u64 = w.store.all().map(|u| u.frames.len() as u64).sum();
        assert_eq!(
            w.balloon_out, kept,
            "balloon frames neither stored, parked nor freed"
        );
    }

    fn snapshot(&self) -> MemorySnapshot {
        let w = self.world.borrow();
        let total = w.free.len() as u64;
        let pinned: u64 = w.pinned.iter().map(|p| p.1).sum();
        let charged = |percent: u64| w.balloon_out * percent / 100;
        let resident = total.saturating_sub(w.os_locked + pinned + charged(w.charge_percent.0));
        let low = w.low_memory || w.low_memory_below.is_some_and(|t| w.free_count < t);
        MemorySnapshot {
            total: Frames::new(total),
            resident_available: Some(Frames::new(resident)),
            available: Some(Frames::new(w.free_count)),
            commit_limit: Some(Frames::new(w.commit_limit)),
            committed: Some(Frames::new(
                w.committed_base + pinned + charged(w.charge_percent.1),
            )),
            low_memory: low,
            high_commit: false,
            pinned: PinnedBreakdown {
                virtual_lock: Some(Frames::new(pinned)),
                os_nonpaged: Some(Frames::new(w.os_locked)),
                ..PinnedBreakdown::default()
            },
        }
    }
}

impl Drop for FakeWorld {
    fn drop(&mut self) {
        // The last handle checks that no chunk was dropped with pages in it.
        if Rc::strong_count(&self.world) == 1 && !std::thread::panicking() {
            let leaked = self.world.borrow().leaks.get();
            assert_eq!(
                leaked, 0,
                "FakeWorld: {leaked} frames leaked in dropped chunks"
            );
        }
    }
}

impl World {
    /// Up to `n` free 4 KiB frames, lowest first.
    /// The lowest `n` free frames below `limit`.
    fn take_frames_below(&mut self, n: usize, limit: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let end = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .min(self.free.len());
        for (i, f) in self.free[..end].iter_mut().enumerate().skip(self.low_free) {
            if out.len() == n {
                break;
            }
            if *f {
                *f = false;
                out.push(i as u64);
                self.low_free = i + 1;
            }
        }
        self.free_count -= out.len() as u64;
        self.balloon_out += out.len() as u64;
        out
    }

    /// The lowest whole free aligned block's 512 frames.
    fn take_block(&mut self) -> Option<Vec<u64>> {
        let blocks = self.free.len() / 512;
        let b = (0..blocks).find(|b| self.free[b * 512..(b + 1) * 512].iter().all(|f| *f))?;
        self.free[b * 512..(b + 1) * 512]
            .iter_mut()
            .for_each(|f| *f = false);
        self.free_count -= 512;
        self.balloon_out += 512;
        Some((b as u64 * 512..(b as u64 + 1) * 512).collect())
    }

    fn give_back(&mut self, frame: u64) {
        let f = &mut self.free[frame as usize];
        assert!(!*f, "double free of pfn {frame:#x}");
        *f = true;
        self.free_count += 1;
        self.balloon_out -= 1;
        self.low_free = self.low_free.min(frame as usize);
    }

    /// Counts one allocation call of `size`; `None` if it is scripted to fail, else how many
    /// pages of `want` it may return.
    fn scripted(&mut self, size: PageSize, want: usize) -> Option<usize> {
        let i = size.index();
        self.allocations[i] += 1;
        if self.fail_allocations[i] > 0 {
            self.fail_allocations[i] -= 1;
            return None;
        }
        if self.short_allocations[i] > 0 {
            self.short_allocations[i] -= 1;
            return Some(want.div_ceil(2));
        }
        Some(want)
    }
}

impl FakePages {
    /// The lowest `pages` free frames below `limit`, as the script allows.
    fn scattered(&mut self, pages: usize, limit: u64) -> Option<FakeUnit> {
        assert!(
            (1..=BATCH_CAPACITY).contains(&pages),
            "a scattered allocation of {pages} pages is out of 1..=512"
        );
        let mut w = self.0.world.borrow_mut();
        let want = w.scripted(PageSize::Small, pages)?;
        let frames = w.take_frames_below(want, limit);
        if frames.is_empty() {
            return None;
        }
        Some(self.unit(&w, UnitKind::Scattered, frames))
    }

    fn unit(&self, w: &World, kind: UnitKind, frames: Vec<u64>) -> FakeUnit {
        FakeUnit {
            kind,
            frames,
            leaks: Rc::clone(&w.leaks),
        }
    }
}

impl PageAllocator for FakePages {
    type Unit = FakeUnit;

    fn allocate_block(&mut self) -> Option<FakeUnit> {
        let mut w = self.0.world.borrow_mut();
        // A short block allocation is no block at all (whole chunks only, §1.4).
        if w.scripted(PageSize::Large, 1)? == 0 {
            return None;
        }
        let frames = w.take_block()?;
        Some(self.unit(&w, UnitKind::Block, frames))
    }

    fn allocate_scattered(&mut self, pages: usize) -> Option<FakeUnit> {
        self.scattered(pages, u64::MAX)
    }

    fn allocate_scattered_below(&mut self, pages: usize, limit: Pfn) -> Option<FakeUnit> {
        self.scattered(pages, limit.get())
    }

    fn frames(&self, unit: &FakeUnit) -> Frames {
        Frames::new(unit.frames.len() as u64)
    }

    fn pfn(&self, unit: &FakeUnit, index: usize) -> Option<Pfn> {
        unit.frames.get(index).and_then(|&p| Pfn::new(p))
    }

    fn free(&mut self, mut unit: FakeUnit) {
        let mut w = self.0.world.borrow_mut();
        for frame in std::mem::take(&mut unit.frames) {
            w.give_back(frame);
        }
    }

    fn store(&mut self, shelf: Shelf, unit: FakeUnit, position: StorePosition) {
        assert!(!unit.frames.is_empty(), "empty unit stored");
        assert_eq!(unit.kind, shelf.kind(), "unit stored on the wrong shelf");
        self.0.world.borrow_mut().store.store(shelf, unit, position);
    }

    fn take(&mut self, shelf: Shelf) -> Option<FakeUnit> {
        self.0.world.borrow_mut().store.take(shelf)
    }

    fn stage(&mut self, unit: FakeUnit) {
        self.0.world.borrow_mut().store.stage(unit);
    }

    fn staged_pfn(&self, unit: usize, index: usize) -> Option<Pfn> {
        let w = self.0.world.borrow();
        let unit = w.store.staged(unit)?;
        self.pfn(unit, index)
    }

    fn unstage(&mut self) -> Option<FakeUnit> {
        self.0.world.borrow_mut().store.unstage()
    }

    fn park(&mut self, unit: FakeUnit, held: PageMask) {
        let mut w = self.0.world.borrow_mut();
        assert!(
            w.store.parked() < PARK_CAPACITY,
            "more than PARK_CAPACITY units parked"
        );
        w.store.park(unit, held);
    }

    fn unpark(&mut self) -> Option<(FakeUnit, PageMask)> {
        self.0.world.borrow_mut().store.unpark()
    }

    fn parked(&self) -> usize {
        self.0.world.borrow().store.parked()
    }
}

impl MemorySource for FakeMemory {
    fn snapshot(&mut self) -> Result<MemorySnapshot, MemoryError> {
        if self.0.world.borrow().snapshot_fails {
            return Err(MemoryError::Unavailable);
        }
        Ok(self.0.snapshot())
    }
}
