//! The batch page: one physically contiguous 4 KiB page below 4 GiB, mapped and resident,
//! kept for the whole session and shared with the host by its PFN (`docs/protocol.md` §5). Below
//! 4 GiB so its PFN fits a 32-bit register on hosts without the 64-bit capability.
//!
//! Allocated with `MmAllocateContiguousNodeMemory(..., PAGE_READWRITE, MM_ANY_NODE_OK)`:
//! read/write, **no-execute**, fully cached. The older `MmAllocateContiguousMemory*`
//! routines always map their memory executable, which HVCI and Driver Verifier's code
//! integrity checks flag (the WDK page of `MmAllocateContiguousNodeMemory`: "a driver should
//! allocate NX memory unless the driver explicitly requires the ability to execute
//! instructions"). Freed with `MmFreeContiguousMemory`, the release that page names.

use core::ptr::{self, NonNull};

use vmballoon_core::protocol::BatchPage;
use vmballoon_core::units::Pfn;
use wdk_sys::ntddk::{
    MmAllocateContiguousNodeMemory, MmFreeContiguousMemory, MmGetPhysicalAddress,
};
use wdk_sys::{LARGE_INTEGER, MM_ANY_NODE_OK, PAGE_READWRITE};

/// The highest physical address the page may have: below 4 GiB.
const BELOW_4_GIB: i64 = 0xFFFF_FFFF;

/// The mapped batch page and its frame number.
pub struct BatchMemory {
    page: NonNull<BatchPage>,
    pfn: Pfn,
}

impl BatchMemory {
    /// Allocates and zeroes the page (PASSIVE_LEVEL). `None` when no such page is free.
    pub fn new() -> Option<Self> {
        let bytes = core::mem::size_of::<BatchPage>() as u64;
        let lowest = LARGE_INTEGER { QuadPart: 0 };
        let highest = LARGE_INTEGER {
            QuadPart: BELOW_4_GIB,
        };
        // No boundary restriction: one page never crosses a page boundary.
        let boundary = LARGE_INTEGER { QuadPart: 0 };
        // SAFETY: PASSIVE_LEVEL (DriverEntry; the routine allows <= DISPATCH_LEVEL); plain
        // value arguments: exactly one of PAGE_READWRITE / PAGE_EXECUTE_READWRITE, neither
        // PAGE_NOCACHE nor PAGE_WRITECOMBINE (fully cached), any node. The block is
        // page-aligned (documented), so it is the 4 KiB-aligned BatchPage the backdoor needs.
        let va = unsafe {
            MmAllocateContiguousNodeMemory(
                bytes,
                lowest,
                highest,
                boundary,
                PAGE_READWRITE,
                MM_ANY_NODE_OK,
            )
        };
        let page = NonNull::new(va.cast::<BatchPage>())?;
        // SAFETY: `page` is a fresh, mapped, resident, page-aligned block of one page
        // (uninitialised, as documented); all-zero is a valid BatchPage
        // (`BatchPage::zeroed`). Zeroed in place: no 4 KiB temporary on DriverEntry's stack.
        unsafe { ptr::write_bytes(page.as_ptr(), 0, 1) };
        // SAFETY: `va` is a valid nonpaged system address.
        let pa = unsafe { MmGetPhysicalAddress(va) };
        // SAFETY: reading the 64-bit view of the LARGE_INTEGER union, always initialised.
        let pa = unsafe { pa.QuadPart };
        let Some(pfn) = u64::try_from(pa).ok().map(Pfn::containing) else {
            // SAFETY: the block from above, unused.
            unsafe { MmFreeContiguousMemory(va) };
            return None;
        };
        Some(Self { page, pfn })
    }

    /// The page and its PFN, for `VmwareBackdoor::new`.
    pub fn parts(&self) -> (NonNull<BatchPage>, Pfn) {
        (self.page, self.pfn)
    }
}

impl Drop for BatchMemory {
    fn drop(&mut self) {
        // SAFETY: the block came from MmAllocateContiguousNodeMemory, whose documented release
        // is MmFreeContiguousMemory (PASSIVE_LEVEL: unload or DriverEntry); the backdoor that
        // used it is dropped before this (field order in the driver state).
        unsafe { MmFreeContiguousMemory(self.page.as_ptr().cast()) };
    }
}
