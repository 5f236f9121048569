//! Audited MDL accessors (`windows-memory.md` §1.5). `MmGetMdlPfnArray`,
//! `MmGetMdlByteCount` and `MmInitializeMdl` are macros in wdm.h, so bindgen has none of
//! them; these are their Rust forms, each a few lines with its contract.
//!
//! x64 layout: the fixed `MDL` header (0x30 bytes) is followed by the PFN array, one
//! `PFN_NUMBER` per 4 KiB page: `MmGetMdlPfnArray(m) == (PPFN_NUMBER)(m + 1)`.

use core::ptr::NonNull;

use wdk_sys::ntddk::MmFreePagesFromMdl;
use wdk_sys::{MDL, PFN_NUMBER};

use crate::kernel::pool_alloc;

/// Bytes in one x64 page.
pub const PAGE: usize = 4096;

/// The size field (`MDL.Size`) of an MDL with room for `pages` PFNs, or `None` if it does
/// not fit the `CSHORT`.
pub fn mdl_size(pages: usize) -> Option<i16> {
    let bytes = core::mem::size_of::<MDL>().checked_add(pages.checked_mul(8)?)?;
    i16::try_from(bytes).ok()
}

/// `MmGetMdlByteCount`.
///
/// # Safety
/// `mdl` points at a valid MDL.
pub unsafe fn byte_count(mdl: NonNull<MDL>) -> usize {
    // SAFETY: our caller guarantees a valid MDL; ByteCount is a plain ULONG.
    let bytes = unsafe { (*mdl.as_ptr()).ByteCount };
    bytes as usize
}

/// Sets `ByteCount` (shrinking an MDL after its PFN array was compacted).
///
/// # Safety
/// `mdl` points at a valid MDL owned by the caller, and its PFN array holds at least
/// `bytes / PAGE` valid entries.
pub unsafe fn set_byte_count(mdl: NonNull<MDL>, bytes: usize) {
    let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
    // SAFETY: our caller owns the MDL and vouches for the PFN entries.
    unsafe { (*mdl.as_ptr()).ByteCount = bytes };
}

/// `MmGetMdlPfnArray`, as a slice of `len` entries.
///
/// # Safety
/// `mdl` is a valid MDL owned by the caller whose PFN array has at least `len` entries
/// (its capacity: `(Size - sizeof(MDL)) / 8`), and no other reference to that array is
/// live while the slice is.
pub unsafe fn pfn_array<'a>(mdl: NonNull<MDL>, len: usize) -> &'a mut [PFN_NUMBER] {
    // The array starts right after the header: `(PPFN_NUMBER)(mdl + 1)`.
    // SAFETY: one past the header stays inside the MDL allocation (it holds the array).
    let first = unsafe { mdl.as_ptr().add(1) }.cast::<PFN_NUMBER>();
    // SAFETY: our caller guarantees `len` initialised entries and exclusive access.
    unsafe { core::slice::from_raw_parts_mut(first, len) }
}

/// Pages described by an MDL built by `MmAllocatePagesForMdlEx` (StartVa page-aligned,
/// ByteOffset 0, so `ADDRESS_AND_SIZE_TO_SPAN_PAGES` is ByteCount / PAGE).
///
/// # Safety
/// `mdl` points at a valid MDL.
pub unsafe fn pages(mdl: NonNull<MDL>) -> usize {
    // SAFETY: forwarded.
    let bytes = unsafe { byte_count(mdl) };
    bytes / PAGE
}

/// Makes `dst` describe the same kind of allocation as `src` (`MdlFlags`, `Process`,
/// `StartVa`, `ByteOffset`, `MappedSystemVa`), keeping its own `Size` and `Next`, with
/// no pages yet. Used to hand pages of `src` back to `MmFreePagesFromMdl` through a
/// scratch MDL that looks exactly like the one Mm built.
///
/// # Safety
/// Both point at valid MDLs; `dst` is owned by the caller and not in use.
pub unsafe fn copy_header(dst: NonNull<MDL>, src: NonNull<MDL>) {
    // SAFETY: our caller guarantees both are valid; `src` is only read.
    let s = unsafe { *src.as_ptr() };
    // SAFETY: `dst` is valid and exclusively ours.
    let d = unsafe { &mut *dst.as_ptr() };
    d.MdlFlags = s.MdlFlags;
    d.Process = s.Process;
    d.MappedSystemVa = s.MappedSystemVa;
    d.StartVa = s.StartVa;
    d.ByteOffset = s.ByteOffset;
    d.ByteCount = 0;
}

/// Initialises a driver-owned MDL of capacity `pages` at `mdl` (`MmInitializeMdl` with no
/// virtual range).
///
/// # Safety
/// `mdl` points at writable nonpaged memory of at least `mdl_size(pages)` bytes.
pub unsafe fn init_scratch(mdl: NonNull<MDL>, size: i16) {
    let header = MDL {
        Size: size,
        ..MDL::default()
    };
    // SAFETY: our caller guarantees the memory; this writes only the header.
    unsafe { mdl.as_ptr().write(header) };
}

/// The successor of `mdl` in a chain (`MDL.Next`).
///
/// # Safety
/// `mdl` points at a valid MDL.
pub unsafe fn next(mdl: NonNull<MDL>) -> Option<NonNull<MDL>> {
    // SAFETY: our caller guarantees a valid MDL.
    NonNull::new(unsafe { (*mdl.as_ptr()).Next })
}

/// Sets `MDL.Next`.
///
/// # Safety
/// `mdl` points at a valid MDL owned by the caller.
pub unsafe fn set_next(mdl: NonNull<MDL>, next: Option<NonNull<MDL>>) {
    let p = next.map_or(core::ptr::null_mut(), NonNull::as_ptr);
    // SAFETY: our caller owns the MDL.
    unsafe { (*mdl.as_ptr()).Next = p };
}

/// A driver-owned MDL used to hand pages back to Mm.
pub struct Scratch {
    mdl: NonNull<MDL>,
    capacity: usize,
    len: usize,
}

impl Scratch {
    /// A scratch MDL with room for `capacity` PFNs (nonpaged pool). `None` without pool.
    pub fn new(capacity: usize) -> Option<Self> {
        let size = mdl_size(capacity)?;
        let mdl = pool_alloc::<MDL>(usize::try_from(size).ok()?)?;
        // SAFETY: a fresh nonpaged block of exactly `size` bytes.
        unsafe { init_scratch(mdl, size) };
        Some(Self {
            mdl,
            capacity,
            len: 0,
        })
    }

    /// Adds one PFN taken from `from`; flushes to Mm first if full.
    pub fn push(&mut self, from: NonNull<MDL>, pfn: u64) {
        if self.len == self.capacity {
            self.flush();
        }
        if self.len == 0 {
            // SAFETY: both are valid MDLs; the scratch is ours and empty.
            unsafe { copy_header(self.mdl, from) };
        }
        // SAFETY: `len < capacity` entries of the scratch's own array; no other borrow.
        let array = unsafe { pfn_array(self.mdl, self.capacity) };
        if let Some(slot) = array.get_mut(self.len) {
            *slot = pfn;
            self.len += 1;
        }
    }

    /// Returns the collected pages to the OS (`MmFreePagesFromMdl`).
    pub fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: the first `len` entries hold pages taken out of Mm-built MDLs.
        unsafe { set_byte_count(self.mdl, self.len * PAGE) };
        // SAFETY: the scratch now describes exactly those pages, with the header of the MDL
        // Mm built for them; PASSIVE_LEVEL worker thread.
        unsafe { MmFreePagesFromMdl(self.mdl.as_ptr()) };
        self.len = 0;
    }

    /// Whether another page fits without a flush.
    pub fn has_room(&self) -> bool {
        self.len < self.capacity
    }

    /// The MDL itself (for freeing its pool block once empty).
    pub fn mdl(&self) -> NonNull<MDL> {
        self.mdl
    }
}
