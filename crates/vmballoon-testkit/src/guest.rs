//! The hostile guest: the simulator's Windows guest model as the engine's
//! `PageAllocator` ([`Pages`]) and `MemorySource` ([`Memory`]), with faults on demand
//! ([`Faults`]), and what the guest (or the host's scheduler, or the administrator) does
//! between ticks ([`GuestStep`]).
//!
//! [`Pages`] fails or shortens allocations as the faults say, and counts the frames out of
//! the store, so the oracle knows the balloon's footprint mid-tick; before every allocation
//! it checks that the engine has a fresh snapshot without `LowMemoryCondition` and does
//! not plan past `min(target, ceiling)`. [`Memory`] fails snapshots or forces
//! `LowMemoryCondition`.

use std::cell::RefCell;
use std::rc::Rc;

use vmballoon_core::config::Config;
use vmballoon_core::mask::PageMask;
use vmballoon_core::platform::{
    MemoryError, MemorySnapshot, MemorySource, PageAllocator, Shelf, StorePosition,
};
use vmballoon_core::protocol::BATCH_CAPACITY;
use vmballoon_core::units::{Frames, PageSize, Pfn};
use vmballoon_sim::guest::{FakeGuest, GuestSpec, GuestUnit, PageableLayout, PinKind};
use vmballoon_sim::world::SharedWorld;

use crate::oracle::{Oracle, safe_ceiling};

/// Guest-side faults, counted down as they fire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The next N snapshots fail.
    pub fail_snapshots: u32,
    /// The next N snapshots report `LowMemoryCondition` whatever the guest's state.
    pub force_low_memory: u32,
    /// The next N allocations of each kind (scattered 4 KiB, whole block) return nothing.
    pub fail_alloc: [u32; 2],
    /// The next N allocations of each size return about half of what was asked.
    pub short_alloc: [u32; 2],
}

impl Faults {
    /// Adds `other`'s faults to those still to fire.
    pub(crate) fn add(&mut self, other: &Self) {
        self.fail_snapshots = self.fail_snapshots.saturating_add(other.fail_snapshots);
        self.force_low_memory = self.force_low_memory.saturating_add(other.force_low_memory);
        for i in 0..2 {
            self.fail_alloc[i] = self.fail_alloc[i].saturating_add(other.fail_alloc[i]);
            self.short_alloc[i] = self.short_alloc[i].saturating_add(other.short_alloc[i]);
        }
    }
}

/// Something the guest (or the host's scheduler, or the administrator) does between ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestStep {
    /// Nothing happens.
    Idle,
    /// An application pins `mib` of `kind` (may fail and be retried every second).
    Lock {
        /// Kind of pinned memory.
        kind: PinKind,
        /// Size in MiB.
        mib: u64,
    },
    /// An application commits `mib` of pageable memory.
    Commit {
        /// Size in MiB.
        mib: u64,
    },
    /// The request made `n`-th (modulo the number made) is released or cancelled.
    Release(usize),
    /// Guest-side faults from now on.
    Faults(Faults),
    /// The registry is re-read with new values.
    Config(Config),
    /// The host's scheduled target, in frames (absurd values included).
    Target(u64),
}

/// The `PageAllocator`: the simulator's guest, with allocation faults and bookkeeping.
pub struct Pages {
    inner: FakeGuest,
    world: SharedWorld,
    oracle: Rc<RefCell<Oracle>>,
}

fn unit_frames(p: &FakeGuest, u: &GuestUnit) -> u64 {
    p.frames(u).get()
}

impl Pages {
    /// The simulator's guest of `world` as the engine's allocator, reporting to `oracle`.
    pub(crate) fn new(world: SharedWorld, oracle: Rc<RefCell<Oracle>>) -> Self {
        Self {
            inner: FakeGuest::new(world.clone()),
            world,
            oracle,
        }
    }

    /// The oracle's checks before an allocation of `want` frames (kind `size`: 4 KiB =
    /// scattered, 2 MiB = a whole block); `None` if a fault makes it fail, else how many
    /// pages to ask for.
    fn before_allocation(&mut self, size: PageSize, pages: usize) -> Option<usize> {
        let mut o = self.oracle.borrow_mut();
        match o.last_low {
            Some(false) => {}
            Some(true) => o.violation("allocation under LowMemoryCondition".to_owned()),
            None => o.violation("allocation without a memory snapshot".to_owned()),
        }
        if !(1..=BATCH_CAPACITY).contains(&pages) {
            o.violation(format!("allocate({pages}) outside 1..=512"));
        }
        let w = self.world.borrow();
        // The ceiling counts every frame the balloon has taken from the guest (stored,
        // staged, parked or in hand); the balloon that must stay under it is what the host
        // holds or will be offered: parked frames the host does not hold (refused pages
        // held back until the end of the tick) are not offered again.
        let footprint = w.guest.stored_frames().get().saturating_add(o.out);
        let offered = footprint.saturating_sub(w.guest.parked_unheld_frames().get());
        let snap = w.guest.snapshot();
        let t = o.t_known;
        let bound = safe_ceiling(t, footprint, &snap, &o.config).min(t);
        let want = (pages as u64).saturating_mul(size.frames().get());
        if offered.saturating_add(want) > bound {
            o.violation(format!(
                "allocation of {want} frames on a balloon of {offered}: past min(target \
                 {t}, ceiling) = {bound}"
            ));
        }
        drop(w);
        o.t_plan = t;
        let i = size.index();
        if o.faults.fail_alloc[i] > 0 {
            o.faults.fail_alloc[i] -= 1;
            return None;
        }
        if o.faults.short_alloc[i] > 0 {
            o.faults.short_alloc[i] -= 1;
            // A short block allocation is no block at all (whole chunks only).
            return (size == PageSize::Small).then(|| pages.div_ceil(2));
        }
        Some(pages)
    }

    /// An allocation through the inner allocator, judged first (`before_allocation`) and
    /// counted out after: `allocate` gets the pages to ask for.
    fn allocation(
        &mut self,
        size: PageSize,
        pages: usize,
        allocate: impl FnOnce(&mut FakeGuest, usize) -> Option<GuestUnit>,
    ) -> Option<GuestUnit> {
        let ask = self.before_allocation(size, pages)?;
        let unit = allocate(&mut self.inner, ask)?;
        self.out(unit_frames(&self.inner, &unit));
        Some(unit)
    }

    fn out(&self, f: u64) {
        self.oracle.borrow_mut().out += f;
    }

    fn back(&self, f: u64, what: &str) {
        let mut o = self.oracle.borrow_mut();
        if f > o.out {
            let m = format!("{what} of {f} frames with only {} out", o.out);
            o.violation(m);
        }
        o.out = o.out.saturating_sub(f);
    }
}

impl PageAllocator for Pages {
    type Unit = GuestUnit;

    fn allocate_block(&mut self) -> Option<GuestUnit> {
        self.allocation(PageSize::Large, 1, |inner, _| inner.allocate_block())
    }

    fn allocate_scattered(&mut self, pages: usize) -> Option<GuestUnit> {
        self.allocation(PageSize::Small, pages, |inner, ask| {
            inner.allocate_scattered(ask)
        })
    }

    fn allocate_scattered_below(&mut self, pages: usize, limit: Pfn) -> Option<GuestUnit> {
        self.allocation(PageSize::Small, pages, |inner, ask| {
            inner.allocate_scattered_below(ask, limit)
        })
    }

    fn frames(&self, unit: &GuestUnit) -> Frames {
        self.inner.frames(unit)
    }

    fn pfn(&self, unit: &GuestUnit, index: usize) -> Option<Pfn> {
        self.inner.pfn(unit, index)
    }

    fn free(&mut self, unit: GuestUnit) {
        self.back(unit_frames(&self.inner, &unit), "free");
        self.inner.free(unit);
    }

    fn store(&mut self, shelf: Shelf, unit: GuestUnit, position: StorePosition) {
        self.back(unit_frames(&self.inner, &unit), "store");
        self.inner.store(shelf, unit, position);
    }

    fn take(&mut self, shelf: Shelf) -> Option<GuestUnit> {
        let unit = self.inner.take(shelf)?;
        self.out(unit_frames(&self.inner, &unit));
        Some(unit)
    }

    fn stage(&mut self, unit: GuestUnit) {
        // Staged units are in the platform's keeping (and in the guest's stored frames).
        self.back(unit_frames(&self.inner, &unit), "stage");
        self.inner.stage(unit);
    }

    fn staged_pfn(&self, unit: usize, index: usize) -> Option<Pfn> {
        self.inner.staged_pfn(unit, index)
    }

    fn unstage(&mut self) -> Option<GuestUnit> {
        let unit = self.inner.unstage()?;
        self.out(unit_frames(&self.inner, &unit));
        Some(unit)
    }

    fn park(&mut self, unit: GuestUnit, held: PageMask) {
        let f = unit_frames(&self.inner, &unit);
        self.back(f, "park");
        self.oracle.borrow_mut().parked += f;
        self.inner.park(unit, held);
    }

    fn unpark(&mut self) -> Option<(GuestUnit, PageMask)> {
        let (unit, held) = self.inner.unpark()?;
        let f = unit_frames(&self.inner, &unit);
        {
            let mut o = self.oracle.borrow_mut();
            o.parked = o.parked.saturating_sub(f);
        }
        self.out(f);
        Some((unit, held))
    }

    fn parked(&self) -> usize {
        self.inner.parked()
    }
}

/// The `MemorySource`: the simulator's guest, with snapshot faults.
pub struct Memory {
    inner: FakeGuest,
    oracle: Rc<RefCell<Oracle>>,
}

impl Memory {
    /// The simulator's guest of `world` as the engine's memory source, reporting to
    /// `oracle`.
    pub(crate) fn new(world: SharedWorld, oracle: Rc<RefCell<Oracle>>) -> Self {
        Self {
            inner: FakeGuest::new(world),
            oracle,
        }
    }
}

impl MemorySource for Memory {
    fn snapshot(&mut self) -> Result<MemorySnapshot, MemoryError> {
        let mut o = self.oracle.borrow_mut();
        if o.faults.fail_snapshots > 0 {
            o.faults.fail_snapshots -= 1;
            o.last_low = None;
            return Err(MemoryError::Unavailable);
        }
        let mut s = self.inner.snapshot()?;
        if o.faults.force_low_memory > 0 {
            o.faults.force_low_memory -= 1;
            s.low_memory = true;
        }
        o.last_low = Some(s.low_memory);
        Ok(s)
    }
}

/// A guest spec from sizes in MiB (RAM rounded down to whole 2 MiB blocks, at least one;
/// OS memory below RAM), `scattered` for a long-running guest's pageable layout.
#[must_use]
pub fn guest_spec(
    ram_mib: u64,
    os_mib: u64,
    pagefile_mib: u64,
    committed_mib: u64,
    scattered: bool,
) -> GuestSpec {
    let ram = (ram_mib - ram_mib % 2).max(2);
    GuestSpec {
        ram: Frames::from_mib(ram),
        os_locked: Frames::from_mib(os_mib.min(ram - 1)),
        pagefile: Frames::from_mib(pagefile_mib),
        committed: Frames::from_mib(committed_mib),
        layout: if scattered {
            PageableLayout::Scattered
        } else {
            PageableLayout::Packed
        },
    }
}
