//! [`MdlPages`]: the core's `PageAllocator` over `MmAllocatePagesForMdlEx`
//! (`docs/windows-memory.md` §1).
//!
//! **One unit is one MDL, and it goes back whole.** A unit is either one whole, aligned
//! 2 MiB block (`MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS` with a 2 MiB skip and
//! `MM_ALLOCATE_FAST_LARGE_PAGES`, §1.4) or up to 512 scattered 4 KiB pages
//! (`MM_ALLOCATE_PREFER_CONTIGUOUS`), never zeroed and never waiting for memory (§1.2). It is
//! returned exactly once with `MmFreePagesFromMdl` and then `ExFreePool` of the MDL, the
//! documented pair for an MDL that `MmAllocatePagesForMdlEx` returned (§1.3, §1.7). No field
//! of an MDL is ever written: the driver keeps its units in lists of its own [`Node`]s (one
//! small pool block per unit, allocated with it), and the batch under way and the parked
//! units in two arrays allocated once at start, so storing, staging and parking never
//! fail.

use core::cell::Cell;
use core::ptr::NonNull;

use vmballoon_core::mask::PageMask;
use vmballoon_core::platform::{PARK_CAPACITY, PageAllocator, Shelf, StorePosition};
use vmballoon_core::protocol::BATCH_CAPACITY;
use vmballoon_core::units::{Frames, Pfn};
use vmballoon_nt::dump::{Ticket, longest_run};
use wdk_sys::ntddk::{ExFreePool, MmAllocatePagesForMdlEx, MmFreePagesFromMdl};
use wdk_sys::{
    _MEMORY_CACHING_TYPE, LARGE_INTEGER, MDL, MM_ALLOCATE_FAST_LARGE_PAGES, MM_ALLOCATE_NO_WAIT,
    MM_ALLOCATE_PREFER_CONTIGUOUS, MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS, MM_DONT_ZERO_ALLOCATION,
};

use crate::dump::DumpTable;
use crate::kernel::{pool_alloc, pool_free};
use crate::mdl::{self, PAGE};

/// Bytes in one 2 MiB block.
const BLOCK_BYTES: usize = 512 * PAGE;

/// The driver's own list node for one unit: the MDL is never chained through `MDL.Next`.
pub struct Node {
    next: Option<NonNull<Node>>,
    mdl: NonNull<MDL>,
    /// The unit's range in the crash-dump table, while published (`dump.rs`).
    dump: Option<Ticket>,
}

/// One unit: the node that owns an MDL from `MmAllocatePagesForMdlEx`. Invariant: the
/// node and the MDL are live, owned by this value, and the MDL is untouched since Mm built
/// it.
#[derive(Debug)]
pub struct Unit(NonNull<Node>);

impl Unit {
    /// The unit's MDL.
    fn mdl(&self) -> NonNull<MDL> {
        // SAFETY: the node is live and ours (the type's invariant); only read.
        unsafe { (*self.0.as_ptr()).mdl }
    }

    /// The PFN array, for as long as `self` is borrowed.
    fn pfns(&self) -> &[u64] {
        // SAFETY: an untouched MDL from MmAllocatePagesForMdlEx that outlives the borrow of
        // `self` (the type's invariant); nothing writes to it.
        unsafe { mdl::pfns(self.mdl()) }
    }

    /// Sets the node's link (the node is the driver's; the MDL is not touched).
    fn set_next(&mut self, next: Option<NonNull<Node>>) {
        // SAFETY: the node is live and exclusively ours (the type's invariant).
        unsafe { (*self.0.as_ptr()).next = next };
    }

    /// The node's link.
    fn next(&self) -> Option<NonNull<Node>> {
        // SAFETY: as above; only read.
        unsafe { (*self.0.as_ptr()).next }
    }
}

/// A FIFO/LIFO list of units through their nodes.
#[derive(Default)]
struct List {
    head: Option<NonNull<Node>>,
    tail: Option<NonNull<Node>>,
}

impl List {
    fn push_front(&mut self, mut unit: Unit) {
        unit.set_next(self.head);
        if self.tail.is_none() {
            self.tail = Some(unit.0);
        }
        self.head = Some(unit.0);
    }

    fn push_back(&mut self, mut unit: Unit) {
        unit.set_next(None);
        match self.tail {
            // SAFETY: the tail is a live node of this list, which owns it.
            Some(tail) => unsafe { (*tail.as_ptr()).next = Some(unit.0) },
            None => self.head = Some(unit.0),
        }
        self.tail = Some(unit.0);
    }

    fn pop_front(&mut self) -> Option<Unit> {
        let head = self.head?;
        let mut unit = Unit(head);
        self.head = unit.next();
        if self.head.is_none() {
            self.tail = None;
        }
        unit.set_next(None);
        Some(unit)
    }
}

/// The parked units and the frames the host holds of each, in a ring allocated at start.
struct Park {
    units: [Option<NonNull<Node>>; PARK_CAPACITY],
    held: [PageMask; PARK_CAPACITY],
    head: usize,
    len: usize,
}

/// Ballooned units: one list per shelf, the batch under way, the parked units.
pub struct MdlPages {
    scattered: List,
    blocks: List,
    large: List,
    staged: List,
    /// Units parked past [`PARK_CAPACITY`], which the engine never does: kept (their held
    /// frames unknown, so never freed while a session runs) until `Drop`, after the engine's
    /// shutdown has ended the session.
    overflow: List,
    /// The last staged unit looked up by index, so a batch's sequential lookups are O(1).
    cursor: Cell<Option<(usize, NonNull<Node>)>>,
    park: NonNull<Park>,
    /// The crash-dump table (`dump.rs`), once DriverEntry has set it: each unit's longest
    /// run of pages is published there after allocation and withdrawn before the free
    /// (`docs/windows-memory.md §9.5`).
    dump: Option<NonNull<DumpTable>>,
}

impl MdlPages {
    /// Allocates the parking ring (PASSIVE_LEVEL, DriverEntry). `None` without pool.
    pub fn new() -> Option<Self> {
        let park = pool_alloc::<Park>(core::mem::size_of::<Park>())?;
        let p = park.as_ptr();
        // SAFETY: `p` is a fresh nonpaged block sized and aligned for a Park; taking a field's
        // address reads nothing. (The same holds for every projection below.)
        let units = unsafe { &raw mut (*p).units };
        // SAFETY: valid for writes and unused; every field is written in place before any
        // read, so no Park value is ever built on the stack.
        unsafe { units.write([None; PARK_CAPACITY]) };
        // SAFETY: as above.
        let held = unsafe { &raw mut (*p).held }.cast::<PageMask>();
        // One mask at a time: a 2 KiB array value would sit on the kernel stack.
        for i in 0..PARK_CAPACITY {
            // SAFETY: element `i` of the array field, in bounds (`wrapping_add` only
            // computes the address); valid for writes and unused.
            unsafe { held.wrapping_add(i).write(PageMask::EMPTY) };
        }
        // SAFETY: as above.
        let head = unsafe { &raw mut (*p).head };
        // SAFETY: as above.
        unsafe { head.write(0) };
        // SAFETY: as above.
        let len = unsafe { &raw mut (*p).len };
        // SAFETY: as above.
        unsafe { len.write(0) };
        Some(Self {
            scattered: List::default(),
            blocks: List::default(),
            large: List::default(),
            staged: List::default(),
            overflow: List::default(),
            cursor: Cell::new(None),
            park,
            dump: None,
        })
    }

    /// Publishes every unit allocated from now on in `table` (DriverEntry, before the
    /// worker starts).
    ///
    /// # Safety
    /// `table` is nonpaged and outlives `self` (it is in the driver state, after the
    /// engine), and only this allocator writes it.
    pub unsafe fn set_dump_table(&mut self, table: NonNull<DumpTable>) {
        self.dump = Some(table);
    }

    fn dump_table(&self) -> Option<&DumpTable> {
        // SAFETY: `set_dump_table`'s contract: alive as long as `self`; the table is only
        // atomics, shared with the bug-check callback.
        self.dump.map(|t| unsafe { &*t.as_ptr() })
    }

    fn shelf(&mut self, shelf: Shelf) -> &mut List {
        match shelf {
            Shelf::Scattered => &mut self.scattered,
            Shelf::Block => &mut self.blocks,
            Shelf::Large => &mut self.large,
        }
    }

    fn park_mut(&mut self) -> &mut Park {
        // SAFETY: the ring is ours, initialised in `new`, freed only in Drop; `&mut self`
        // makes this the only reference.
        unsafe { &mut *self.park.as_ptr() }
    }

    fn park_ref(&self) -> &Park {
        // SAFETY: as above, shared.
        unsafe { &*self.park.as_ptr() }
    }

    /// `MmAllocatePagesForMdlEx` for `bytes` with `skip` and `flags`, from physical pages
    /// below `below` (a frame number; `None`: anywhere), never zeroed and never waiting; the
    /// MDL and a node, or nothing (an MDL that describes no page, or whose node cannot be
    /// allocated, goes straight back whole).
    fn allocate(
        &mut self,
        bytes: usize,
        skip: usize,
        flags: u32,
        below: Option<Pfn>,
    ) -> Option<Unit> {
        let flags = flags | MM_DONT_ZERO_ALLOCATION | MM_ALLOCATE_NO_WAIT;
        let low = LARGE_INTEGER { QuadPart: 0 };
        // HighAddress is the last byte a page may hold (docs/windows-memory.md §1.2): the
        // byte before frame `below`, or all of memory.
        let high = match below {
            None => LARGE_INTEGER { QuadPart: -1 },
            Some(limit) => {
                let end = limit.get().checked_mul(PAGE as u64)?.checked_sub(1)?;
                LARGE_INTEGER {
                    QuadPart: i64::try_from(end).ok()?,
                }
            }
        };
        let skip = LARGE_INTEGER {
            QuadPart: i64::try_from(skip).ok()?,
        };
        let total = u64::try_from(bytes).ok()?;
        // SAFETY: PASSIVE_LEVEL worker thread (docs/windows-memory.md §1.3); every argument is a
        // plain value within the documented ranges (skip a power of two with total a
        // multiple of it, or 0).
        let raw = unsafe {
            MmAllocatePagesForMdlEx(
                low,
                high,
                skip,
                total,
                _MEMORY_CACHING_TYPE::MmCached,
                flags,
            )
        };
        let mdl = NonNull::new(raw)?;
        // SAFETY: an MDL Mm just built.
        let got = unsafe { mdl::byte_count(mdl) };
        let Some(node) = pool_alloc::<Node>(core::mem::size_of::<Node>()).filter(|_| got > 0)
        else {
            // SAFETY: the untouched MDL Mm just built, freed whole once (§1.3).
            unsafe { free_mdl(mdl) };
            return None;
        };
        // The pages are the driver's now: their longest run may leave the dump.
        // SAFETY: an MDL Mm just built, not written while read.
        let run = longest_run(
            unsafe { mdl::pfns(mdl) }
                .iter()
                .filter_map(|&p| Pfn::new(p)),
        );
        let dump = run.and_then(|r| self.dump_table()?.publish(r));
        // SAFETY: a fresh nonpaged block sized and aligned for a Node.
        unsafe {
            node.as_ptr().write(Node {
                next: None,
                mdl,
                dump,
            });
        };
        Some(Unit(node))
    }
}

/// `MmFreePagesFromMdl`, then `ExFreePool` of the MDL.
///
/// # Safety
/// `mdl` is an MDL that `MmAllocatePagesForMdlEx` returned, untouched since, not freed
/// before, and used by nothing after this; PASSIVE_LEVEL.
unsafe fn free_mdl(mdl: NonNull<MDL>) {
    // SAFETY: the documented case: an unmodified MDL from MmAllocatePagesForMdlEx, whole,
    // once (docs/windows-memory.md §1.3, §1.7).
    unsafe { MmFreePagesFromMdl(mdl.as_ptr()) };
    // SAFETY: the MDL structure is pool memory the caller owns after the free.
    unsafe { ExFreePool(mdl.as_ptr().cast()) };
}

impl PageAllocator for MdlPages {
    type Unit = Unit;

    fn allocate_block(&mut self) -> Option<Unit> {
        let unit = self.allocate(
            BLOCK_BYTES,
            BLOCK_BYTES,
            MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS | MM_ALLOCATE_FAST_LARGE_PAGES,
            None,
        )?;
        // Chunks come whole (§1.4); anything else is not a block and goes back whole.
        if unit.pfns().len() != BLOCK_BYTES / PAGE {
            self.free(unit);
            return None;
        }
        Some(unit)
    }

    fn allocate_scattered(&mut self, pages: usize) -> Option<Unit> {
        let pages = pages.clamp(1, BATCH_CAPACITY);
        self.allocate(
            pages.saturating_mul(PAGE),
            0,
            MM_ALLOCATE_PREFER_CONTIGUOUS,
            None,
        )
    }

    fn allocate_scattered_below(&mut self, pages: usize, limit: Pfn) -> Option<Unit> {
        let pages = pages.clamp(1, BATCH_CAPACITY);
        let unit = self.allocate(
            pages.saturating_mul(PAGE),
            0,
            MM_ALLOCATE_PREFER_CONTIGUOUS,
            Some(limit),
        )?;
        // Pages at or above the limit would defeat the compaction that asked: back whole.
        if unit.pfns().iter().any(|&p| p >= limit.get()) {
            self.free(unit);
            return None;
        }
        Some(unit)
    }

    fn frames(&self, unit: &Unit) -> Frames {
        Frames::new(u64::try_from(unit.pfns().len()).unwrap_or(0))
    }

    fn pfn(&self, unit: &Unit, index: usize) -> Option<Pfn> {
        Pfn::new(*unit.pfns().get(index)?)
    }

    fn free(&mut self, unit: Unit) {
        let node = unit.0;
        // Out of the dump table before the pages go back to Windows (§9.5).
        // SAFETY: the node is live and ours (the unit's invariant).
        if let Some(ticket) = unsafe { (*node.as_ptr()).dump.take() }
            && let Some(table) = self.dump_table()
        {
            table.withdraw(ticket);
        }
        // SAFETY: the unit's MDL, untouched since Mm built it (the type's invariant); the
        // unit is consumed, so nothing uses it after this.
        unsafe { free_mdl(unit.mdl()) };
        // SAFETY: the node from pool_alloc, owned by the consumed unit, holding nothing.
        unsafe { pool_free(node) };
    }

    fn store(&mut self, shelf: Shelf, unit: Unit, position: StorePosition) {
        let list = self.shelf(shelf);
        match position {
            StorePosition::First => list.push_front(unit),
            StorePosition::Last => list.push_back(unit),
        }
    }

    fn take(&mut self, shelf: Shelf) -> Option<Unit> {
        self.shelf(shelf).pop_front()
    }

    fn stage(&mut self, unit: Unit) {
        self.staged.push_back(unit);
    }

    fn staged_pfn(&self, unit: usize, index: usize) -> Option<Pfn> {
        let start = match self.cursor.get() {
            Some((i, node)) if i <= unit => (i, node),
            _ => (0, self.staged.head?),
        };
        let (mut i, mut node) = start;
        while i < unit {
            // SAFETY: a live node of the staged list, which owns it; only read.
            node = unsafe { (*node.as_ptr()).next }?;
            i = i.saturating_add(1);
        }
        self.cursor.set(Some((i, node)));
        // SAFETY: as above; the node's MDL is untouched and lives while it is staged.
        let mdl = unsafe { (*node.as_ptr()).mdl };
        // SAFETY: an untouched MDL from MmAllocatePagesForMdlEx, not written while read.
        Pfn::new(*unsafe { mdl::pfns(mdl) }.get(index)?)
    }

    fn unstage(&mut self) -> Option<Unit> {
        self.cursor.set(None);
        self.staged.pop_front()
    }

    fn park(&mut self, unit: Unit, held: PageMask) {
        if self.park_ref().len >= PARK_CAPACITY {
            self.overflow.push_back(unit);
            return;
        }
        let park = self.park_mut();
        let slot = park.head.saturating_add(park.len) % PARK_CAPACITY;
        if let (Some(u), Some(h)) = (park.units.get_mut(slot), park.held.get_mut(slot)) {
            *u = Some(unit.0);
            *h = held;
            park.len = park.len.saturating_add(1);
        }
    }

    fn unpark(&mut self) -> Option<(Unit, PageMask)> {
        let park = self.park_mut();
        if park.len == 0 {
            return None;
        }
        let slot = park.head;
        let node = park.units.get_mut(slot)?.take()?;
        let held = park.held.get(slot).copied().unwrap_or(PageMask::EMPTY);
        park.head = park.head.saturating_add(1) % PARK_CAPACITY;
        park.len = park.len.saturating_sub(1);
        Some((Unit(node), held))
    }

    fn parked(&self) -> usize {
        self.park_ref().len
    }
}

impl Drop for MdlPages {
    fn drop(&mut self) {
        // The engine's shutdown empties everything; free anything left all the same (the
        // host has ended the session by then, or never had these pages).
        for shelf in Shelf::ALL {
            while let Some(unit) = self.take(shelf) {
                self.free(unit);
            }
        }
        while let Some(unit) = self.staged.pop_front() {
            self.free(unit);
        }
        while let Some((unit, _)) = self.unpark() {
            self.free(unit);
        }
        while let Some(unit) = self.overflow.pop_front() {
            self.free(unit);
        }
        // SAFETY: the ring from pool_alloc in `new`, empty now, used by nothing after this.
        unsafe { pool_free(self.park) };
    }
}
