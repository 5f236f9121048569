//! Is `vmmemctl.sys` loaded? Lists the loaded kernel modules with
//! `AuxKlibQueryModuleInformation` (documented, aux_klib.h) and matches them with the
//! portable `vmballoon_nt::vmmemctl`.
//!
//! Checked once, in `DriverEntry`, after the load-image notify routine is registered
//! (`image_watch.rs`), which catches a `vmmemctl.sys` that loads later (a VMware Tools
//! install or upgrade, or an auto-start `vmmemctl` service the SCM starts after ours).

use core::ffi::c_void;
use core::ptr::{self, NonNull};

use wdk_sys::{NTSTATUS, PVOID, STATUS_BUFFER_TOO_SMALL, STATUS_INSUFFICIENT_RESOURCES, ULONG};

use crate::kernel::{pool_alloc, pool_free};
use vmballoon_nt::ntstatus::nt_result;
use vmballoon_nt::vmmemctl::{RECORD_SIZE, lists_vmmemctl};

#[link(name = "aux_klib", kind = "static")]
unsafe extern "system" {
    /// Must precede any other AuxKlib call (PASSIVE_LEVEL).
    fn AuxKlibInitialize() -> NTSTATUS;
    /// With a null `QueryInfo`, writes the bytes needed to `BufferSize`; otherwise fills
    /// `QueryInfo` with `AUX_MODULE_EXTENDED_INFO` records of `ElementSize` bytes, or
    /// returns `STATUS_BUFFER_TOO_SMALL` when `BufferSize` bytes are not enough.
    fn AuxKlibQueryModuleInformation(
        BufferSize: *mut ULONG,
        ElementSize: ULONG,
        QueryInfo: PVOID,
    ) -> NTSTATUS;
}

/// Size/query rounds before giving up when modules keep loading between the two calls.
const ATTEMPTS: usize = 3;

/// Spare records allocated beyond the size query's answer, for drivers that load between
/// the two calls.
const SPARE_RECORDS: usize = 8;

/// Whether `vmmemctl.sys` is loaded; `Err` when the module list cannot be read (the
/// caller then refuses to start: it cannot rule vmmemctl out).
pub fn loaded() -> Result<bool, NTSTATUS> {
    // SAFETY: PASSIVE_LEVEL (DriverEntry).
    nt_result(unsafe { AuxKlibInitialize() })?;
    for _ in 0..ATTEMPTS {
        match query() {
            Err(STATUS_BUFFER_TOO_SMALL) => {}
            done => return done,
        }
    }
    Err(STATUS_BUFFER_TOO_SMALL)
}

/// One size query plus module query. `Err(STATUS_BUFFER_TOO_SMALL)` when the list grew
/// past the spare room between the two calls (documented as possible): worth a retry.
fn query() -> Result<bool, NTSTATUS> {
    let element = ULONG::try_from(RECORD_SIZE).unwrap_or(ULONG::MAX);
    let mut size: ULONG = 0;
    // SAFETY: size query: null buffer, `size` is a live local.
    let status = unsafe { AuxKlibQueryModuleInformation(&mut size, element, ptr::null_mut()) };
    nt_result(status)?;
    let bytes = (size as usize).saturating_add(SPARE_RECORDS * RECORD_SIZE);
    let buf: NonNull<c_void> = pool_alloc(bytes).ok_or(STATUS_INSUFFICIENT_RESOURCES)?;
    let mut filled = ULONG::try_from(bytes).unwrap_or(ULONG::MAX);
    // SAFETY: `buf` holds `filled` writable bytes; `filled` is a live local.
    let status = unsafe { AuxKlibQueryModuleInformation(&mut filled, element, buf.as_ptr()) };
    let found = nt_result(status).map(|()| {
        // Whether `BufferSize` is updated on output is not documented for the WDK routine
        // (the older DevNotes page says it receives the size needed). Either way, at most
        // `bytes` bytes are records, and the rest of the block is zero (pool_alloc zero-fills
        // it): a zero record has an empty file name, which never matches.
        let len = (filled as usize).min(bytes);
        // SAFETY: the first `len` bytes of our zero-filled block of `bytes` bytes, written by
        // AuxKlib or still zero; no other reference to the block exists.
        let records = unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
        lists_vmmemctl(records)
    });
    // SAFETY: our block, not used after this (the slice above has ended).
    unsafe { pool_free(buf) };
    found
}
