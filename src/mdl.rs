//! Read-only MDL accessors (`docs/windows-memory.md` §1.5). `MmGetMdlPfnArray` and
//! `MmGetMdlByteCount` are macros in wdm.h, so bindgen has neither; these are their Rust
//! forms. Nothing here writes to an MDL: the driver never modifies an MDL that
//! `MmAllocatePagesForMdlEx` built (PREfast C28145, `docs/windows-memory.md` §1.7).
//!
//! x64 layout: the fixed `MDL` header (0x30 bytes) is followed by the PFN array, one
//! `PFN_NUMBER` per 4 KiB page: `MmGetMdlPfnArray(m) == (PPFN_NUMBER)(m + 1)`.

use core::ptr::NonNull;

use wdk_sys::{MDL, PFN_NUMBER};

/// Bytes in one x64 page.
pub const PAGE: usize = 4096;

/// `MmGetMdlByteCount`.
///
/// # Safety
/// `mdl` points at a valid MDL.
pub unsafe fn byte_count(mdl: NonNull<MDL>) -> usize {
    // SAFETY: our caller guarantees a valid MDL; ByteCount is a plain ULONG, only read.
    let bytes = unsafe { (*mdl.as_ptr()).ByteCount };
    usize::try_from(bytes).unwrap_or(0)
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

/// `MmGetMdlPfnArray`, as a shared slice of the MDL's [`pages`] entries.
///
/// # Safety
/// `mdl` is a valid MDL built by `MmAllocatePagesForMdlEx` (its PFN array holds `pages`
/// initialised entries), nothing writes to it while the slice lives, and it outlives `'a`.
pub unsafe fn pfns<'a>(mdl: NonNull<MDL>) -> &'a [PFN_NUMBER] {
    // SAFETY: forwarded.
    let len = unsafe { pages(mdl) };
    // One past the header: `wrapping_add` only computes the address.
    let base = mdl.as_ptr().wrapping_add(1).cast::<PFN_NUMBER>();
    // SAFETY: our caller guarantees `len` initialised entries after the header, alive and
    // unwritten for `'a`.
    unsafe { core::slice::from_raw_parts(base, len) }
}
