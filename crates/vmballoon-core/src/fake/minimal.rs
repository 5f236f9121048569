//! The cheapest platform, for benchmarks: [`OpenHost`], an always-willing host;
//! [`RangePages`], a range allocator with an endless supply; and [`StaticMemory`], a fixed,
//! roomy snapshot. Each does the least work its contract allows, so a measurement of the
//! engine over them sees the engine's own work (`crate::workload`, `cargo xtask bench`).
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "benchmark double: endless supply, counters that cannot overflow in a run"
)]

use std::boxed::Box;

use crate::mask::PageMask;
use crate::platform::{
    MemoryError, MemorySnapshot, MemorySource, PageAllocator, Shelf, StorePosition,
};
use crate::protocol::{Backdoor, BatchPage, Command, RawReply, Status};
use crate::units::{Frames, Pfn};

use super::VecStore;

/// A host that grants `capabilities`, answers every command with SUCCESS and the target
/// it was given, and leaves every batch entry's status at SUCCESS. Minimal work per call.
#[derive(Debug)]
pub struct OpenHost {
    capabilities: u64,
    target: u64,
    page: Box<BatchPage>,
    calls: u64,
}

impl OpenHost {
    /// A host granting `capabilities` (e.g. `0x2E`) with target `target` frames.
    #[must_use]
    pub fn new(capabilities: u64, target: Frames) -> Self {
        Self {
            capabilities,
            target: target.get(),
            page: Box::new(BatchPage::zeroed()),
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
        const START: u32 = Command::Start.number();
        self.calls += 1;
        match command {
            START => RawReply {
                status: Status::SuccessWithCapabilities.raw(),
                result: 0,
                capabilities: self.capabilities,
            },
            _ => RawReply {
                status: Status::Success.raw(),
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
