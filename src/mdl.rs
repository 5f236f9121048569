//! Audited MDL accessors (`windows-memory.md` §1.5). `MmGetMdlPfnArray`,
//! `MmGetMdlByteCount` and `MmInitializeMdl` are macros in wdm.h, so bindgen has none of
//! them; these are their Rust forms, each a few lines with its contract.
//!
//! x64 layout: the fixed `MDL` header (0x30 bytes) is followed by the PFN array, one
//! `PFN_NUMBER` per 4 KiB page: `MmGetMdlPfnArray(m) == (PPFN_NUMBER)(m + 1)`.

use core::ptr::NonNull;

use wdk_sys::ntddk::MmFreePagesFromMdl;
use wdk_sys::{MDL, PFN_NUMBER};

use crate::kernel::{pool_alloc, pool_free};

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

/// The first entry of the PFN array: `MmGetMdlPfnArray(m) == (PPFN_NUMBER)(m + 1)`.
fn pfn_base(mdl: NonNull<MDL>) -> *mut PFN_NUMBER {
    // One past the header: `wrapping_add` only computes the address; every dereference is
    // under the callers' contracts.
    mdl.as_ptr().wrapping_add(1).cast::<PFN_NUMBER>()
}

/// `MmGetMdlPfnArray`, as a mutable slice of `len` entries.
///
/// # Safety
/// `mdl` is a valid MDL owned by the caller whose PFN array holds at least `len`
/// initialised entries — for an Mm-built MDL, `len <= ByteCount / PAGE` (the array of a
/// 2 MiB-page MDL can be larger than the `CSHORT` `Size` could describe, so `Size` is not
/// the bound); for a [`Scratch`], `len <=` its capacity — and no other reference to that
/// array is live while the slice is (`'a` is the caller's borrow of the MDL's owner).
pub unsafe fn pfn_array<'a>(mdl: NonNull<MDL>, len: usize) -> &'a mut [PFN_NUMBER] {
    // SAFETY: our caller guarantees `len` initialised entries and exclusive access.
    unsafe { core::slice::from_raw_parts_mut(pfn_base(mdl), len) }
}

/// `MmGetMdlPfnArray`, as a shared slice of `len` entries.
///
/// # Safety
/// As [`pfn_array`], except that other shared slices of the array may be live; no mutable
/// one is.
pub unsafe fn pfn_slice<'a>(mdl: NonNull<MDL>, len: usize) -> &'a [PFN_NUMBER] {
    // SAFETY: our caller guarantees `len` initialised entries and no live mutable borrow.
    unsafe { core::slice::from_raw_parts(pfn_base(mdl), len) }
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
/// scratch MDL with the same header fields as the one Mm built.
///
/// **Outside the documented contract** (`windows-memory.md` §1.3; the module docs of
/// `pages.rs`):
/// `MmFreePagesFromMdl` is documented only for MDLs built by `MmAllocatePagesForMdl(Ex)`.
/// Freeing through a driver-built MDL relies on the undocumented invariant that
/// `MmFreePagesFromMdl` frees per PFN from `StartVa`/`ByteOffset`/`ByteCount` with no
/// per-MDL state [rev: WRK/ReactOS; to verify under Driver Verifier]. This is the top risk
/// to validate on a Windows guest.
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
            // SAFETY: both are valid MDLs; the scratch is ours and empty. The header makes
            // the later free look like one of `from`'s, which is all the undocumented
            // invariant of `copy_header` (MmFreePagesFromMdl frees per PFN from
            // StartVa/ByteOffset/ByteCount with no per-MDL state [rev: WRK/ReactOS; to
            // verify under Driver Verifier]) needs.
            unsafe { copy_header(self.mdl, from) };
        }
        // SAFETY: the scratch's own array of `capacity` entries (zero-filled pool, so every
        // entry is initialised); `&mut self` means no other borrow of it.
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
        // SAFETY: the scratch describes exactly those pages (StartVa/ByteOffset copied from
        // an Mm-built MDL, ByteCount = len pages), each owned by us and freed once. That this
        // driver-built MDL is freed correctly is NOT documented (the docs allow only MDLs
        // from MmAllocatePagesForMdl(Ex)): it relies on MmFreePagesFromMdl freeing per PFN
        // from StartVa/ByteOffset/ByteCount with no per-MDL state [rev: WRK/ReactOS; to
        // verify under Driver Verifier]. PASSIVE_LEVEL (worker, or unload after the join).
        unsafe { MmFreePagesFromMdl(self.mdl.as_ptr()) };
        self.len = 0;
    }

    /// Whether another page fits without a flush.
    pub fn has_room(&self) -> bool {
        self.len < self.capacity
    }
}

impl Drop for Scratch {
    /// Returns any collected pages, then frees the MDL's pool block. Also runs when a
    /// later allocation in `MdlPages::new` fails, so DriverEntry's error path leaks no pool.
    fn drop(&mut self) {
        self.flush();
        // SAFETY: the block came from pool_alloc in `new`, holds no pages after the flush,
        // and nothing uses it after this.
        unsafe { pool_free(self.mdl) };
    }
}
