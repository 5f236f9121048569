//! The platform traits besides [`crate::protocol::Backdoor`]: [`PageAllocator`] (guest
//! pages, and the storage of ballooned ones), [`MemorySource`] (a snapshot of guest
//! memory) and [`Clock`]. Methods take `self`, so each fake world is a value, not a global.

use crate::mask::PageMask;
use crate::units::{Frames, Instant, PageSize, Pfn};

/// Where [`PageAllocator::store`] puts a chunk in the order [`PageAllocator::take`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorePosition {
    /// Taken first (a stack: the most recently ballooned chunk deflates first).
    First,
    /// Taken after every other chunk of its size (a chunk whose unlock partly failed is
    /// set aside, so one page the host will not return cannot block every deflate).
    Last,
}

/// Guest pages for the balloon, and the storage of the ones the host holds.
///
/// Pages come in chunks of up to 512 pages of one [`PageSize`] (in the driver: one MDL from
/// `MmAllocatePagesForMdlEx`). The platform keeps ballooned chunks ([`store`], [`take`]) so
/// the core needs no heap and no 4-million-entry vector for a 16 GiB balloon.
///
/// Every page that leaves the allocator must come back through [`free`], [`retain`] (+
/// [`free_refused`]), or be stored; the engine never drops a chunk.
///
/// [`store`]: PageAllocator::store
/// [`take`]: PageAllocator::take
/// [`free`]: PageAllocator::free
/// [`retain`]: PageAllocator::retain
/// [`free_refused`]: PageAllocator::free_refused
pub trait PageAllocator {
    /// A handle on a chunk of pages (an MDL in the driver).
    type Chunk;

    /// Allocates up to `pages` (1..=512) pages of `size`, without zeroing them and without
    /// waiting for memory. `None` when nothing could be allocated; a short chunk (fewer
    /// pages than asked) is a normal answer. 2 MiB pages are 2 MiB-aligned and physically
    /// contiguous.
    fn allocate(&mut self, size: PageSize, pages: usize) -> Option<Self::Chunk>;

    /// Pages in `chunk`.
    fn page_count(&self, chunk: &Self::Chunk) -> usize;

    /// The size of the pages in `chunk`.
    fn page_size(&self, chunk: &Self::Chunk) -> PageSize;

    /// The PFN of page `index` of `chunk` (for a 2 MiB page, its first frame).
    fn pfn(&self, chunk: &Self::Chunk, index: usize) -> Option<Pfn>;

    /// Splits `chunk` three ways: the pages in `keep` stay in the chunk, in their order
    /// (page indices shift down to `0..keep.len()`); the pages in `hold` (4 KiB pages the
    /// host refused) move to a holding area so the OS does not hand them out again this
    /// cycle, until [`PageAllocator::free_refused`]; every other page returns to the OS.
    /// Pages the host holds are always in `keep`. `keep` and `hold` are disjoint. Must not
    /// fail: the platform holds at least [`HELD_REFUSED_CAPACITY`] pages per cycle, and the
    /// engine never asks for more. (In the driver this splits an MDL from
    /// `MmAllocatePagesForMdlEx`; `src/pages.rs` says what that relies on.)
    fn retain(&mut self, chunk: &mut Self::Chunk, keep: &PageMask, hold: &PageMask);

    /// Returns every page of `chunk` to the OS and releases the chunk itself (also for an
    /// empty chunk).
    fn free(&mut self, chunk: Self::Chunk);

    /// Returns every held refused page to the OS.
    fn free_refused(&mut self);

    /// Keeps `chunk`, every page of which the host now holds. Must not fail (the driver
    /// chains MDLs through `MDL.Next`, which needs no memory).
    fn store(&mut self, chunk: Self::Chunk, position: StorePosition);

    /// Takes back a stored chunk of `size`, in the order [`StorePosition`] describes.
    fn take(&mut self, size: PageSize) -> Option<Self::Chunk>;
}

/// How many refused 4 KiB pages a [`PageAllocator`] must be able to hold per cycle: the
/// refused-page limit of every VMware driver (`VMW_BALLOON_MAX_REFUSED`,
/// `BALLOON_ERROR_PAGES`: 16).
pub const HELD_REFUSED_CAPACITY: usize = 16;

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
    /// page, and every ballooned page, is charged to it (`windows-memory.md` §3.1).
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
    /// the commit limit (`windows-memory.md` §3). Treated like `low_memory`: guest
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
