//! Test doubles for the core's traits (feature `fake`): [`ScriptedBackdoor`], an
//! embedded-hal-mock style backdoor whose expected calls are listed up front and checked
//! by [`ScriptedBackdoor::done`] (and on drop); [`FakeWorld`], a small guest whose
//! [`FakePages`] and [`FakeMemory`] handles implement the page allocator and the memory
//! source and which checks on drop that no page leaked; and [`ManualClock`].
//!
//! These are test code: they panic on a broken expectation, which is their job.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test double: a broken expectation must fail the test loudly"
)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use crate::protocol::{BATCH_CAPACITY, Backdoor, BatchPage, RawReply};
use crate::units::Pfn;

/// One expected backdoor call and the reply to give.
#[derive(Clone, Debug)]
pub struct Expect {
    command: u32,
    args: Option<(u64, u64)>,
    entries_in: Option<Vec<u64>>,
    entry_statuses: Vec<u32>,
    overwrites: Vec<(usize, u64)>,
    reply: RawReply,
}

impl Expect {
    /// Expect `command` with exactly these RBX / RSI arguments.
    #[must_use]
    pub fn call(command: u32, arg1: u64, arg2: u64) -> Self {
        Self {
            args: Some((arg1, arg2)),
            ..Self::command(command)
        }
    }

    /// Expect `command` with any arguments.
    #[must_use]
    pub fn command(command: u32) -> Self {
        Self {
            command,
            args: None,
            entries_in: None,
            entry_statuses: Vec::new(),
            overwrites: Vec::new(),
            reply: RawReply::default(),
        }
    }

    /// Expect the batch page to hold exactly these entries (raw values) before the call.
    #[must_use]
    pub fn entries_in(mut self, raw: &[u64]) -> Self {
        self.entries_in = Some(raw.to_vec());
        self
    }

    /// OR these statuses into entries 0.. of the batch page during the call.
    #[must_use]
    pub fn entry_statuses(mut self, statuses: &[u32]) -> Self {
        self.entry_statuses = statuses.to_vec();
        self
    }

    /// Overwrite entry `index` with `raw` during the call (a host rewriting addresses).
    #[must_use]
    pub fn overwrite_entry(mut self, index: usize, raw: u64) -> Self {
        self.overwrites.push((index, raw));
        self
    }

    /// Reply with these EAX / RBX / RCX values.
    #[must_use]
    pub fn replies(mut self, status: u32, result: u64, capabilities: u64) -> Self {
        self.reply = RawReply {
            status,
            result,
            capabilities,
        };
        self
    }
}

#[derive(Debug)]
struct State {
    expected: VecDeque<Expect>,
    made: usize,
    done_called: bool,
    has_page: bool,
}

/// A backdoor that replays a script. Clones share the script, so a test keeps a handle
/// after moving one into the engine, then calls [`ScriptedBackdoor::done`].
#[derive(Debug)]
pub struct ScriptedBackdoor {
    state: Rc<RefCell<State>>,
    // Each handle has its own page: only the one inside the engine is ever used.
    page: Option<std::boxed::Box<BatchPage>>,
}

impl Clone for ScriptedBackdoor {
    fn clone(&self) -> Self {
        let has_page = self.state.borrow().has_page;
        Self {
            state: Rc::clone(&self.state),
            page: has_page.then(|| std::boxed::Box::new(BatchPage::zeroed())),
        }
    }
}

impl ScriptedBackdoor {
    /// The PFN the fake batch page claims to have.
    pub const BATCH_PFN: u64 = 0xB_A7C4;

    /// A backdoor expecting exactly `script`, in order, with a batch page.
    pub fn new(script: impl IntoIterator<Item = Expect>) -> Self {
        Self::build(script, true)
    }

    /// A backdoor expecting `script`, on a platform that has no batch page.
    pub fn without_batch_page(script: impl IntoIterator<Item = Expect>) -> Self {
        Self::build(script, false)
    }

    fn build(script: impl IntoIterator<Item = Expect>, page: bool) -> Self {
        Self {
            state: Rc::new(RefCell::new(State {
                expected: script.into_iter().collect(),
                made: 0,
                done_called: false,
                has_page: page,
            })),
            page: page.then(|| std::boxed::Box::new(BatchPage::zeroed())),
        }
    }

    /// Appends more expectations.
    pub fn expect(&self, more: impl IntoIterator<Item = Expect>) {
        self.state.borrow_mut().expected.extend(more);
    }

    /// Expected calls not made yet.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.state.borrow().expected.len()
    }

    /// Calls made so far.
    #[must_use]
    pub fn calls_made(&self) -> usize {
        self.state.borrow().made
    }

    /// Asserts that every expected call was made.
    pub fn done(&self) {
        let mut s = self.state.borrow_mut();
        s.done_called = true;
        assert!(
            s.expected.is_empty(),
            "expected calls not made: {:?}",
            s.expected
        );
    }
}

impl Drop for ScriptedBackdoor {
    fn drop(&mut self) {
        // The last handle checks that the test called `done()` (embedded-hal-mock style).
        if Rc::strong_count(&self.state) == 1 && !std::thread::panicking() {
            let s = self.state.borrow();
            assert!(s.done_called, "ScriptedBackdoor dropped without done()");
        }
    }
}

impl Backdoor for ScriptedBackdoor {
    fn call(&mut self, command: u32, arg1: u64, arg2: u64) -> RawReply {
        let mut s = self.state.borrow_mut();
        s.made += 1;
        let n = s.made;
        let e = s.expected.pop_front().unwrap_or_else(|| {
            panic!("unexpected call #{n}: command {command} ({arg1:#x}, {arg2:#x})")
        });
        assert_eq!(command, e.command, "call #{n}: wrong command");
        if let Some((a1, a2)) = e.args {
            assert_eq!(
                (arg1, arg2),
                (a1, a2),
                "call #{n} (command {command}): wrong arguments"
            );
        }
        drop(s);
        if let Some(page) = self.page.as_mut() {
            if let Some(want) = &e.entries_in {
                let count = usize::try_from(arg2).unwrap().min(BATCH_CAPACITY);
                let got: Vec<u64> = page.entries[..count]
                    .iter()
                    .map(|v| u64::from_le(*v))
                    .collect();
                assert_eq!(&got, want, "call #{n}: wrong batch entries");
            }
            for (i, st) in e.entry_statuses.iter().enumerate() {
                page.entries[i] = (u64::from_le(page.entries[i]) | u64::from(*st)).to_le();
            }
            for &(i, raw) in &e.overwrites {
                page.entries[i] = raw.to_le();
            }
        }
        e.reply
    }

    fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)> {
        let pfn = Pfn::new(Self::BATCH_PFN)?;
        self.page.as_deref_mut().map(|p| (p, pfn))
    }
}

// ---------------------------------------------------------------------------------------
// A small guest: pages, memory snapshots and a clock.
// ---------------------------------------------------------------------------------------

use std::cell::Cell;

use crate::mask::PageMask;
use crate::platform::{
    Clock, MemoryError, MemorySnapshot, MemorySource, PARK_CAPACITY, PageAllocator, Shelf,
    StorePosition, UnitKind,
};
use crate::units::{Duration, Frames, Instant, PageSize};

/// A clock that moves only when told to. Clones share the time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Rc<Cell<u64>>,
}

impl ManualClock {
    /// A clock at time zero.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.nanos
            .set(self.nanos.get().saturating_add(d.as_nanos()));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.nanos.get())
    }
}

/// The storage of units the [`PageAllocator`] contract asks of a platform, for the test
/// doubles and the simulator: three shelves, the batch under way and the parked units.
/// It checks the engine's side of the contract (no more than [`PARK_CAPACITY`] parked
/// units) by panicking, like every test double here.
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
/// MDL allocations (`windows-memory.md` §1.6). Handles share one world.
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
        let resident = total.saturating_sub(w.os_locked + pinned + w.balloon_out);
        MemorySnapshot {
            total: Frames::new(total),
            resident_available: Some(Frames::new(resident)),
            available: Some(Frames::new(w.free_count)),
            commit_limit: Some(Frames::new(w.commit_limit)),
            committed: Some(Frames::new(w.committed_base + pinned + w.balloon_out)),
            low_memory: w.low_memory,
            high_commit: false,
            pinned: crate::platform::PinnedBreakdown {
                virtual_lock: Some(Frames::new(pinned)),
                os_nonpaged: Some(Frames::new(w.os_locked)),
                ..crate::platform::PinnedBreakdown::default()
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
    fn take_frames(&mut self, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for (i, f) in self.free.iter_mut().enumerate().skip(self.low_free) {
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
        assert!(
            (1..=BATCH_CAPACITY).contains(&pages),
            "allocate_scattered({pages}) out of 1..=512"
        );
        let mut w = self.0.world.borrow_mut();
        let want = w.scripted(PageSize::Small, pages)?;
        let frames = w.take_frames(want);
        if frames.is_empty() {
            return None;
        }
        Some(self.unit(&w, UnitKind::Scattered, frames))
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

// ---------------------------------------------------------------------------------------
// Minimal-cost platform for benchmarks: an always-willing host, a range allocator and a
// fixed memory snapshot, so that a measurement sees the engine's own work.
// ---------------------------------------------------------------------------------------

/// A host that grants `capabilities`, answers every command with SUCCESS and the target
/// it was given, and leaves every batch entry's status at SUCCESS. Minimal work per call.
#[derive(Debug)]
pub struct OpenHost {
    capabilities: u64,
    target: u64,
    page: std::boxed::Box<BatchPage>,
    calls: u64,
}

impl OpenHost {
    /// A host granting `capabilities` (e.g. `0x2E`) with target `target` frames.
    #[must_use]
    pub fn new(capabilities: u64, target: Frames) -> Self {
        Self {
            capabilities,
            target: target.get(),
            page: std::boxed::Box::new(BatchPage::zeroed()),
            calls: 0,
        }
    }

    /// Changes the target.
    pub fn set_target(&mut self, target: Frames) {
        self.target = target.get();
    }

    /// Calls made.
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.calls
    }
}

impl Backdoor for OpenHost {
    fn call(&mut self, command: u32, _arg1: u64, _arg2: u64) -> RawReply {
        self.calls += 1;
        match command {
            0 => RawReply {
                status: 0x0300_0000,
                result: 0,
                capabilities: self.capabilities,
            },
            _ => RawReply {
                status: 0,
                result: self.target,
                capabilities: 0,
            },
        }
    }

    fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)> {
        Some((&mut self.page, Pfn::new(1)?))
    }
}

/// A unit of [`RangePages`]: a run of consecutive frames.
#[derive(Debug)]
pub struct RangeUnit {
    first: u64,
    frames: u64,
}

/// An allocator that hands out consecutive frame ranges (blocks 2 MiB-aligned) from an
/// endless supply and stores units in plain vectors: the cheapest possible platform.
#[derive(Debug, Default)]
pub struct RangePages {
    next: u64,
    store: VecStore<RangeUnit>,
    out_frames: u64,
}

impl RangePages {
    /// An empty allocator.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames handed out and not freed.
    #[must_use]
    pub fn out_frames(&self) -> u64 {
        self.out_frames
    }

    fn range(&mut self, align: u64, frames: u64) -> RangeUnit {
        self.next = self.next.div_ceil(align) * align;
        let first = self.next;
        self.next += frames;
        self.out_frames += frames;
        RangeUnit { first, frames }
    }
}

impl PageAllocator for RangePages {
    type Unit = RangeUnit;

    fn allocate_block(&mut self) -> Option<RangeUnit> {
        Some(self.range(512, 512))
    }

    fn allocate_scattered(&mut self, pages: usize) -> Option<RangeUnit> {
        Some(self.range(1, pages as u64))
    }

    fn frames(&self, unit: &RangeUnit) -> Frames {
        Frames::new(unit.frames)
    }

    fn pfn(&self, unit: &RangeUnit, index: usize) -> Option<Pfn> {
        if index as u64 >= unit.frames {
            return None;
        }
        Pfn::new(unit.first + index as u64)
    }

    fn free(&mut self, unit: RangeUnit) {
        self.out_frames -= unit.frames;
    }

    fn store(&mut self, shelf: Shelf, unit: RangeUnit, position: StorePosition) {
        self.store.store(shelf, unit, position);
    }

    fn take(&mut self, shelf: Shelf) -> Option<RangeUnit> {
        self.store.take(shelf)
    }

    fn stage(&mut self, unit: RangeUnit) {
        self.store.stage(unit);
    }

    fn staged_pfn(&self, unit: usize, index: usize) -> Option<Pfn> {
        self.pfn(self.store.staged(unit)?, index)
    }

    fn unstage(&mut self) -> Option<RangeUnit> {
        self.store.unstage()
    }

    fn park(&mut self, unit: RangeUnit, held: PageMask) {
        self.store.park(unit, held);
    }

    fn unpark(&mut self) -> Option<(RangeUnit, PageMask)> {
        self.store.unpark()
    }

    fn parked(&self) -> usize {
        self.store.parked()
    }
}

/// A memory source that always reports the same, roomy snapshot.
#[derive(Clone, Copy, Debug)]
pub struct StaticMemory(pub MemorySnapshot);

impl StaticMemory {
    /// A guest with `total` RAM, all of it resident available and uncommitted.
    #[must_use]
    pub fn roomy(total: Frames) -> Self {
        Self(MemorySnapshot {
            total,
            resident_available: Some(total),
            available: Some(total),
            commit_limit: Some(total.saturating_mul(2)),
            committed: Some(Frames::ZERO),
            ..MemorySnapshot::default()
        })
    }
}

impl MemorySource for StaticMemory {
    fn snapshot(&mut self) -> Result<MemorySnapshot, MemoryError> {
        Ok(self.0)
    }
}
