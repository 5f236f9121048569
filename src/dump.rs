//! Ballooned pages out of crash dumps (`docs/windows-memory.md §9.5`): a bug-check reason
//! callback of type `KbCallbackRemovePages` hands the dump writer the ranges of
//! `vmballoon_nt::dump::RangeTable`, which `pages.rs` publishes when the pages are the
//! driver's and withdraws before it frees them.
//!
//! The callback runs at HIGH_LEVEL with the system halted: it reads the table (atomics in
//! the driver's nonpaged state, no lock, no allocation, no pageable code or data) and
//! writes the `KBUGCHECK_REMOVE_PAGES` it is given, nothing else.

use core::ptr;

use wdk_sys::ntddk::{KeDeregisterBugCheckReasonCallback, KeRegisterBugCheckReasonCallback};
use wdk_sys::{
    _KBUGCHECK_CALLBACK_REASON, KB_REMOVE_PAGES_FLAG_ADDITIONAL_RANGES_EXIST,
    KB_REMOVE_PAGES_FLAG_PHYSICAL_ADDRESS, KBUGCHECK_CALLBACK_REASON, KBUGCHECK_REMOVE_PAGES,
    PKBUGCHECK_REASON_CALLBACK_RECORD, PVOID, ULONG,
};

use crate::kernel::ulong_size_of;
use vmballoon_nt::dump::{RangeTable, SLOTS};

/// The table the callback reads and `pages.rs` writes.
pub type DumpTable = RangeTable<SLOTS>;

/// Storage for a `KBUGCHECK_REASON_CALLBACK_RECORD` (wdm.h: `LIST_ENTRY`, the routine, the
/// component, a checksum, the reason and a state byte: 48 bytes, 8-aligned on x64). The
/// bindings declare the structure opaque, so the driver supplies its storage; the kernel
/// owns its contents while it is registered.
#[repr(C, align(8))]
struct Record([u8; 48]);
const _: () = assert!(core::mem::size_of::<Record>() == 48);

/// The component name the kernel keeps with the record (a NUL-terminated ANSI string that
/// must stay valid while registered: a static of the image).
static COMPONENT: [u8; 10] = *b"vmballoon\0";

/// The callback registration and the table, in one nonpaged place: the record first, so the
/// callback finds the table from the record it is handed.
#[repr(C)]
pub struct DumpExclusion {
    record: Record,
    /// Whether the record is registered (DriverEntry and unload only).
    registered: bool,
    /// The ranges; written by the worker (`pages.rs`), read by the callback.
    pub table: DumpTable,
}

impl DumpExclusion {
    /// Builds it at `slot`, unregistered, every slot empty.
    ///
    /// # Safety
    /// `slot` is valid for writes, nonpaged, and known to no other thread.
    pub unsafe fn init(slot: *mut Self) {
        // In place, by zeroing: a 24 KiB value must never be built on the kernel stack. All
        // zero is a valid `Self`: the record zeroed (`KeInitializeCallbackRecord` only sets
        // `State` to `BufferEmpty`, 0; the register call fills the rest), `registered`
        // false, and every slot of the table empty (`RangeTable::new` is all zero).
        // SAFETY: our caller's contract: valid for writes of one `Self`, unused.
        unsafe { slot.write_bytes(0, 1) };
    }

    /// Registers the callback (any IRQL; PASSIVE_LEVEL here). `false` when the kernel
    /// refused: the balloon then runs with its pages in dumps.
    ///
    /// # Safety
    /// `this` is a `DumpExclusion` from [`DumpExclusion::init`] in nonpaged memory that is
    /// neither moved nor freed until [`DumpExclusion::deregister`] has run; called once,
    /// from DriverEntry.
    pub unsafe fn register(this: *mut Self) -> bool {
        // SAFETY: `this` is valid (our caller's contract); this only takes the address.
        let record = unsafe { &raw mut (*this).record }.cast();
        // SAFETY: a zeroed record in nonpaged memory that outlives the registration (our
        // caller's contract); the routine and the component are in the image.
        let ok = unsafe {
            KeRegisterBugCheckReasonCallback(
                record,
                Some(remove_pages),
                _KBUGCHECK_CALLBACK_REASON::KbCallbackRemovePages,
                COMPONENT.as_ptr().cast_mut(),
            )
        };
        // SAFETY: as above; only DriverEntry and unload touch `registered`.
        unsafe { (*this).registered = ok != 0 };
        ok != 0
    }

    /// Deregisters the callback if it is registered (unload).
    ///
    /// # Safety
    /// As for [`DumpExclusion::register`]; called from unload, once.
    pub unsafe fn deregister(this: *mut Self) {
        // SAFETY: `this` is valid (our caller's contract); only DriverEntry and unload touch
        // `registered`.
        if !unsafe { (*this).registered } {
            return;
        }
        // SAFETY: as above; this only takes the address.
        let record = unsafe { &raw mut (*this).record }.cast();
        // SAFETY: the record registered in `register`, deregistered once (the documented
        // duty of an unloadable driver, §9.5).
        let _ = unsafe { KeDeregisterBugCheckReasonCallback(record) };
        // SAFETY: as above.
        unsafe { (*this).registered = false };
    }
}

/// The `KbCallbackRemovePages` routine: one range per call, the cursor in `Context`
/// (NULL at the first call: slot 0), `ADDITIONAL_RANGES_EXIST` while another range
/// follows, `Count` 0 when there is none.
///
/// # Safety
/// Called by the kernel at HIGH_LEVEL with the record registered in
/// [`DumpExclusion::register`] and, for `KbCallbackRemovePages`, a `KBUGCHECK_REMOVE_PAGES`
/// of `length` bytes.
unsafe extern "C" fn remove_pages(
    reason: KBUGCHECK_CALLBACK_REASON,
    record: PKBUGCHECK_REASON_CALLBACK_RECORD,
    data: PVOID,
    length: ULONG,
) {
    if reason != _KBUGCHECK_CALLBACK_REASON::KbCallbackRemovePages
        || data.is_null()
        || length < const { ulong_size_of::<KBUGCHECK_REMOVE_PAGES>() }
    {
        return;
    }
    // The record is the first field of a `DumpExclusion` (`repr(C)`), so its address is
    // the `DumpExclusion`'s.
    let this = record.cast::<DumpExclusion>();
    // SAFETY: the record we registered, inside a live `DumpExclusion` (deregistered before
    // it is freed); only the atomics of the table are read.
    let table = unsafe { &(*this).table };
    let request = data.cast::<KBUGCHECK_REMOVE_PAGES>();
    // SAFETY: the kernel's request structure, `length` bytes checked above; only this
    // routine uses it during the call.
    let request = unsafe { &mut *request };
    let cursor = request.Context.addr();
    match table.next_range(cursor) {
        Some((run, next)) => {
            let more = table.next_range(next).is_some();
            request.Address = run.start.phys_addr();
            request.Count = run.count;
            request.Context = ptr::without_provenance_mut(next);
            request.Flags = if more {
                KB_REMOVE_PAGES_FLAG_PHYSICAL_ADDRESS | KB_REMOVE_PAGES_FLAG_ADDITIONAL_RANGES_EXIST
            } else {
                KB_REMOVE_PAGES_FLAG_PHYSICAL_ADDRESS
            };
        }
        None => {
            request.Count = 0;
            request.Flags = 0;
        }
    }
}
