//! [`FakeGuest`]: vmballoon's platform in the simulator — the core's `PageAllocator` over the
//! model's MDL allocator, kept to the whole-unit contract, and its `MemorySource`.

use std::rc::Rc;

use vmballoon_core::mask::PageMask;
use vmballoon_core::platform::{
    MemoryError, MemorySnapshot, MemorySource, PageAllocator, Shelf, StorePosition, UnitKind,
};
use vmballoon_core::units::{Frames, PageSize, Pfn};

use crate::cost::Work;
use crate::world::{SharedWorld, World};

use super::*;

/// vmballoon's platform in the simulator: the core's [`PageAllocator`] (units from
/// `MmAllocatePagesForMdlEx`, each freed whole, kept in the driver's own lists) and
/// [`MemorySource`] over the shared [`crate::world::World`]. It holds the engine to the
/// `PageAllocator` contract and records every breach in the world's contract checker: a
/// free of anything but a whole unit it handed out (the guest model's
/// [`GuestModel::mdl_free`]), a unit freed while the host holds a page of it, a unit
/// stored that the host does not hold entirely, a unit parked with the wrong held frames.
/// Clones share the world: the engine gets one as its allocator and one as its memory
/// source.
#[derive(Clone, Debug)]
pub struct FakeGuest {
    world: SharedWorld,
}

impl FakeGuest {
    /// A handle on `world`.
    #[must_use]
    pub fn new(world: SharedWorld) -> Self {
        Self { world }
    }

    /// RAM in frames, read without a snapshot: not charged.
    #[must_use]
    pub fn total_frames(&self) -> Frames {
        self.world.borrow().guest.total()
    }

    fn allocate_unit(
        &mut self,
        kind: UnitKind,
        frames: u64,
        below: Option<u64>,
    ) -> Option<GuestUnit> {
        let req = MdlRequest {
            frames,
            whole_blocks: kind == UnitKind::Block,
            prefer_contiguous: kind == UnitKind::Scattered,
            below,
        };
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        let pfns = w.guest.mdl_allocate(req);
        let mdl = w.cost.mdl_alloc_ns;
        w.charge(Work::Mdl, mdl);
        let pfns = pfns?;
        let (size, pages) = match kind {
            UnitKind::Block => (PageSize::Large, 1),
            UnitKind::Scattered => (PageSize::Small, pfns.len()),
        };
        PeerPages::charge_allocation(w, size, pages);
        Some(GuestUnit {
            kind,
            pfns,
            dropped: Rc::clone(&w.guest.dropped),
        })
    }

    /// Whether the host holds frame `i` of `unit` (as a 4 KiB page or inside a 2 MiB one:
    /// the host model keeps one bit per frame).
    fn host_holds(w: &World, unit: &GuestUnit, i: usize) -> bool {
        unit.pfns
            .get(i)
            .is_some_and(|&p| w.host.holds_any(p, PageSize::Small))
    }

    /// The stored, staged and parked units' frames.
    #[must_use]
    pub fn unit_frames(&self) -> Frames {
        self.world.borrow().guest.unit_frames()
    }
}

/// `MmFreePagesFromMdl` + `ExFreePool` of the MDL whose PFN array is `pfns`, judged: a
/// page the host still holds, or a free of anything but a whole, untouched MDL the model
/// handed out ([`GuestModel::mdl_free`]), is recorded in the world's contract checker.
/// The driver's platform ([`FakeGuest`]) and the emulated kernel's memory manager
/// (`crate::serve`) both free through it.
pub fn free_mdl_checked(w: &mut World, pfns: &[u64]) {
    if let Some(&pfn) = pfns.iter().find(|&&p| w.host.holds_any(p, PageSize::Small)) {
        w.contract.record(format!(
            "freed a unit while the host still holds its page pfn {pfn:#x}"
        ));
    }
    if let Err(e) = w.guest.mdl_free(pfns) {
        w.contract.record(e);
    }
}

impl PageAllocator for FakeGuest {
    type Unit = GuestUnit;

    fn allocate_block(&mut self) -> Option<GuestUnit> {
        self.allocate_unit(UnitKind::Block, BLOCK_FRAMES, None)
    }

    fn allocate_scattered(&mut self, pages: usize) -> Option<GuestUnit> {
        self.allocate_unit(UnitKind::Scattered, pages as u64, None)
    }

    fn allocate_scattered_below(&mut self, pages: usize, limit: Pfn) -> Option<GuestUnit> {
        self.allocate_unit(UnitKind::Scattered, pages as u64, Some(limit.get()))
    }

    fn frames(&self, unit: &GuestUnit) -> Frames {
        Frames::new(unit.pfns.len() as u64)
    }

    fn pfn(&self, unit: &GuestUnit, index: usize) -> Option<Pfn> {
        unit.pfns.get(index).and_then(|&p| Pfn::new(p))
    }

    fn free(&mut self, mut unit: GuestUnit) {
        let pfns = std::mem::take(&mut unit.pfns);
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        let (size, pages) = match unit.kind {
            UnitKind::Block => (PageSize::Large, 1),
            UnitKind::Scattered => (PageSize::Small, pfns.len() as u64),
        };
        let ns = w.cost.free_pages(size, pages);
        w.charge(Work::Free, ns);
        let ns = w.cost.mdl_free_ns;
        w.charge(Work::Mdl, ns);
        free_mdl_checked(w, &pfns);
    }

    fn store(&mut self, shelf: Shelf, unit: GuestUnit, position: StorePosition) {
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        if unit.pfns.is_empty() || unit.kind != shelf.kind() {
            w.contract.record(format!(
                "stored a {:?} unit of {} frames on the {} shelf",
                unit.kind,
                unit.pfns.len(),
                shelf.name()
            ));
        }
        let held = match shelf.lock_size() {
            PageSize::Large => unit
                .pfns
                .first()
                .is_some_and(|&p| w.host.holds_all(p, PageSize::Large)),
            PageSize::Small => unit
                .pfns
                .iter()
                .all(|&p| w.host.holds_all(p, PageSize::Small)),
        };
        if !held {
            w.contract.record(format!(
                "stored a unit (first pfn {:#x}) on the {} shelf that the host does not hold \
                 entirely",
                unit.pfns.first().copied().unwrap_or(0),
                shelf.name()
            ));
        }
        w.guest.units.store(shelf, unit, position);
    }

    fn take(&mut self, shelf: Shelf) -> Option<GuestUnit> {
        self.world.borrow_mut().guest.units.take(shelf)
    }

    fn stage(&mut self, unit: GuestUnit) {
        self.world.borrow_mut().guest.units.stage(unit);
    }

    fn staged_pfn(&self, unit: usize, index: usize) -> Option<Pfn> {
        let w = self.world.borrow();
        let unit = w.guest.units.staged(unit)?;
        unit.pfns.get(index).and_then(|&p| Pfn::new(p))
    }

    fn unstage(&mut self) -> Option<GuestUnit> {
        self.world.borrow_mut().guest.units.unstage()
    }

    fn park(&mut self, unit: GuestUnit, held: PageMask) {
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        for i in 0..unit.pfns.len() {
            let holds = Self::host_holds(w, &unit, i);
            if holds != held.contains(i) {
                w.contract.record(format!(
                    "parked a unit whose frame {i} the host {} although the engine says it \
                     {}",
                    if holds { "holds" } else { "does not hold" },
                    if held.contains(i) { "does" } else { "does not" }
                ));
                break;
            }
        }
        if w.guest.units.parked() >= vmballoon_core::platform::PARK_CAPACITY {
            w.contract
                .record("more than PARK_CAPACITY units parked".to_owned());
        }
        w.guest.units.park(unit, held);
    }

    fn unpark(&mut self) -> Option<(GuestUnit, PageMask)> {
        self.world.borrow_mut().guest.units.unpark()
    }

    fn parked(&self) -> usize {
        self.world.borrow().guest.units.parked()
    }
}

impl MemorySource for FakeGuest {
    /// A snapshot, charged as one `ZwQuerySystemInformation` ([`crate::cost`]).
    fn snapshot(&mut self) -> Result<MemorySnapshot, MemoryError> {
        let mut w = self.world.borrow_mut();
        let ns = w.cost.snapshot_ns;
        w.charge(Work::Snapshot, ns);
        Ok(w.guest.snapshot())
    }
}
