//! The platform traits besides [`crate::protocol::Backdoor`]: [`PageAllocator`] (guest
//! memory in whole units, and their storage), [`MemorySource`] (a snapshot of guest memory) and [`Clock`]. Methods take `self`, so each
//! fake world is a value, not a global.

use crate::mask::PageMask;
use crate::units::{Frames, Instant, PageSize, Pfn};

/// Where [`PageAllocator::store`] puts a unit in the order [`PageAllocator::take`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorePosition {
    /// Taken first (a stack: the most recently ballooned unit deflates first).
    First,
    /// Taken after every other unit on its shelf (a unit whose UNLOCK failed is set aside,
    /// so one page the host will not return cannot block every deflate).
    Last,
}

/// What a unit of balloon memory is. The unit of allocation is the unit of freeing: in the
/// driver one MDL from `MmAllocatePagesForMdlEx`, which goes back to Windows whole, exactly
/// once, and is never modified (`docs/windows-memory.md` §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    /// One whole 2 MiB block: 512 frames, physically contiguous and 2 MiB-aligned. A balloon
    /// of blocks fragments nothing: every block it gives back is whole again.
    Block,
    /// 1 to 512 4 KiB pages anywhere: what the balloon takes when no whole block is free.
    Scattered,
}

/// Where a ballooned unit is kept, which is also how the host holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shelf {
    /// Scattered 4 KiB pages, each held as a 4 KiB page.
    Scattered,
    /// A whole block held as 512 4 KiB pages (the host did not grant 2 MiB pages, or
    /// refused them this cycle).
    Block,
    /// A whole block held as one 2 MiB page.
    Large,
}

impl Shelf {
    /// Number of shelves.
    pub const COUNT: usize = 3;

    /// Every shelf, in deflation order: scattered units first (giving them back is what
    /// un-fragments the guest), then blocks held as 4 KiB pages, then 2 MiB pages (Linux
    /// `vmballoon_deflate` also gives 4 KiB pages back before 2 MiB ones).
    pub const ALL: [Self; Self::COUNT] = [Self::Scattered, Self::Block, Self::Large];

    /// Index into shelf-indexed tables.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The page size the host holds units of this shelf in.
    #[must_use]
    pub const fn lock_size(self) -> PageSize {
        match self {
            Self::Large => PageSize::Large,
            Self::Scattered | Self::Block => PageSize::Small,
        }
    }

    /// The kind of the units on this shelf.
    #[must_use]
    pub const fn kind(self) -> UnitKind {
        match self {
            Self::Scattered => UnitKind::Scattered,
            Self::Block | Self::Large => UnitKind::Block,
        }
    }

    /// Name for traces and reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Scattered => "scattered",
            Self::Block => "block",
            Self::Large => "large",
        }
    }
}

/// How many partly held units a [`PageAllocator`] must be able to park at once.
pub const PARK_CAPACITY: usize = 32;

/// Guest memory for the balloon, in units ([`UnitKind`]).
///
/// The contract, which the driver keeps with the Windows memory manager and the simulator's
/// guest model enforces:
///
/// * every unit is returned whole, exactly once, through [`PageAllocator::free`] — there is
///   no way to free part of a unit, and nothing modifies a unit between allocation and free
///   (in the driver: `MmFreePagesFromMdl` then `ExFreePool` on the untouched MDL that
///   `MmAllocatePagesForMdlEx` returned, `docs/windows-memory.md` §1.3);
/// * a unit is freed only when the host holds none of its pages;
/// * a unit is either in the engine's hands (staged for one batch), or stored by the
///   platform (on a shelf when the host holds all of it, parked when it holds part of it):
///   the engine never drops one.
pub trait PageAllocator {
    /// A handle on one unit (in the driver: a node of the driver's own list, pointing at an
    /// MDL).
    type Unit;

    /// Allocates one whole, 2 MiB-aligned 2 MiB block, not zeroed, without waiting and
    /// without making Windows build one (`MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS` with a
    /// 2 MiB skip, `MM_ALLOCATE_FAST_LARGE_PAGES`, `docs/windows-memory.md` §1.4). `None` when no
    /// whole block is free.
    fn allocate_block(&mut self) -> Option<Self::Unit>;

    /// Allocates up to `pages` (1..=512) 4 KiB pages, not zeroed, without waiting, packed
    /// into as few 2 MiB blocks as Windows can (`MM_ALLOCATE_PREFER_CONTIGUOUS`). A short
    /// unit (fewer pages than asked) is a normal answer; `None` when nothing was free.
    fn allocate_scattered(&mut self, pages: usize) -> Option<Self::Unit>;

    /// [`PageAllocator::allocate_scattered`] from physical pages below `limit` only
    /// (`HighAddress` = `limit`'s address − 1, `docs/windows-memory.md` §1.4): how
    /// compaction moves the balloon's pages down and out of the blocks it is clearing.
    /// `None` when nothing below `limit` was free; the default, for a platform that cannot
    /// bound where pages come from, is always `None` (the balloon then does not compact).
    fn allocate_scattered_below(&mut self, pages: usize, limit: Pfn) -> Option<Self::Unit> {
        let _ = (pages, limit);
        None
    }

    /// 4 KiB frames in `unit` (512 for a block).
    fn frames(&self, unit: &Self::Unit) -> Frames;

    /// The PFN of 4 KiB frame `index` of `unit` (frame 0 of a block is also the PFN of its
    /// 2 MiB page). `None` past the end.
    fn pfn(&self, unit: &Self::Unit, index: usize) -> Option<Pfn>;

    /// Returns every page of `unit` to the OS and releases the unit itself.
    fn free(&mut self, unit: Self::Unit);

    // ---- storage between and during batches (so the core needs no heap). None of these
    // may fail: the driver keeps its units in lists of nodes allocated with each unit, and
    // in arrays allocated at start.

    /// Keeps `unit`, every page of which the host now holds, on `shelf`.
    fn store(&mut self, shelf: Shelf, unit: Self::Unit, position: StorePosition);

    /// Takes back a stored unit from `shelf`, in the order [`StorePosition`] describes.
    fn take(&mut self, shelf: Shelf) -> Option<Self::Unit>;

    /// Appends `unit` to the batch under way (at most
    /// [`BATCH_CAPACITY`](crate::protocol::BATCH_CAPACITY) units: one per 2 MiB entry).
    fn stage(&mut self, unit: Self::Unit);

    /// The PFN of frame `index` of staged unit `unit` (see [`PageAllocator::pfn`]).
    fn staged_pfn(&self, unit: usize, index: usize) -> Option<Pfn>;

    /// Takes the batch's first unit (a batch's units come back in staging order).
    fn unstage(&mut self) -> Option<Self::Unit>;

    /// Sets aside a unit of which the host holds exactly the 4 KiB frames in `held` (a
    /// LOCK that was partly refused, an UNLOCK that partly failed), until the engine
    /// unlocks the rest and frees it. The engine parks only while fewer than
    /// [`PARK_CAPACITY`] units are parked.
    fn park(&mut self, unit: Self::Unit, held: PageMask);

    /// Takes back the oldest parked unit and the frames the host holds of it.
    fn unpark(&mut self) -> Option<(Self::Unit, PageMask)>;

    /// Units parked.
    fn parked(&self) -> usize;
}

/// Pinned memory by kind, where the platform can tell (the simulator can; Windows gives
/// only the aggregate in resident available).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinnedBreakdown {
    /// `VirtualLock`ed memory.
    pub virtual_lock: Option<Frames>,
    /// AWE (`AllocateUserPhysicalPages`).
    pub awe: Option<Frames>,
    /// Large pages (`VirtualAlloc(MEM_LARGE_PAGES)`).
    pub large_pages: Option<Frames>,
    /// Memory locked by other drivers (MDLs, `MmProbeAndLockPages`).
    pub driver_locked: Option<Frames>,
    /// The OS's own nonpaged memory (kernel, drivers, nonpaged pool).
    pub os_nonpaged: Option<Frames>,
}

/// A snapshot of guest memory. `None` fields are unknown on this platform or this call;
/// the policy treats an unknown bound as "no room" (it never inflates beyond what it knows
/// to be safe).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemorySnapshot {
    /// RAM the OS manages (ballooned pages included).
    pub total: Frames,
    /// Resident available: pages that could still be made non-pageable. Every pinned
    /// page, and every ballooned page, is charged to it (`docs/windows-memory.md` §3.1).
    pub resident_available: Option<Frames>,
    /// Available pages (free + zeroed + standby).
    pub available: Option<Frames>,
    /// Commit limit (RAM + page files).
    pub commit_limit: Option<Frames>,
    /// Commit charge (ballooned pages included).
    pub committed: Option<Frames>,
    /// `\KernelObjects\LowMemoryCondition` is signalled.
    pub low_memory: bool,
    /// `\KernelObjects\MaximumCommitCondition` is signalled: the commit charge is near
    /// the commit limit (`docs/windows-memory.md` §3). Treated like `low_memory`: guest
    /// pressure that the balloon answers by deflating.
    pub high_commit: bool,
    /// Pinned memory by kind, where known.
    pub pinned: PinnedBreakdown,
}

/// Why a [`MemorySnapshot`] could not be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The platform could not read guest memory state.
    Unavailable,
}

/// A source of [`MemorySnapshot`]s.
pub trait MemorySource {
    /// A fresh snapshot.
    ///
    /// # Errors
    /// [`MemoryError::Unavailable`] when nothing could be read; the engine then holds
    /// (no inflation) until a snapshot succeeds.
    fn snapshot(&mut self) -> Result<MemorySnapshot, MemoryError>;
}

/// Monotonic time.
pub trait Clock {
    /// Now.
    fn now(&self) -> Instant;
}

impl<T: MemorySource + ?Sized> MemorySource for &mut T {
    fn snapshot(&mut self) -> Result<MemorySnapshot, MemoryError> {
        (**self).snapshot()
    }
}

impl<T: Clock + ?Sized> Clock for &T {
    fn now(&self) -> Instant {
        (**self).now()
    }
}
