//! Is `vmmemctl.sys` loaded? Lists the loaded kernel modules with
//! `AuxKlibQueryModuleInformation` (documented, aux_klib.h) and matches them with the
//! portable [`crate::modules`].

use core::ffi::c_void;
use core::ptr::{self, NonNull};

use wdk_sys::{NTSTATUS, PVOID, ULONG};

use crate::kernel::{pool_alloc, pool_free};
use crate::modules;

#[link(name = "aux_klib")]
unsafe extern "system" {
    /// Must precede any other AuxKlib call (PASSIVE_LEVEL).
    fn AuxKlibInitialize() -> NTSTATUS;
    /// With a null `QueryInfo`, writes the bytes needed to `BufferSize`; otherwise fills
    /// `QueryInfo` with `AUX_MODULE_EXTENDED_INFO` records of `ElementSize` bytes.
    fn AuxKlibQueryModuleInformation(
        BufferSize: *mut ULONG,
        ElementSize: ULONG,
        QueryInfo: PVOID,
    ) -> NTSTATUS;
}

/// Whether `vmmemctl.sys` is loaded; `Err` when the module list cannot be read.
pub fn loaded() -> Result<bool, NTSTATUS> {
    // SAFETY: PASSIVE_LEVEL (DriverEntry).
    let status = unsafe { AuxKlibInitialize() };
    if status < 0 {
        return Err(status);
    }
    let element = modules::RECORD_SIZE as ULONG;
    let mut size: ULONG = 0;
    // SAFETY: size query: null buffer, `size` is a live local.
    let status = unsafe { AuxKlibQueryModuleInformation(&mut size, element, ptr::null_mut()) };
    if status < 0 {
        return Err(status);
    }
    // A driver may load between the two calls: leave room for a few more records.
    let bytes = (size as usize).saturating_add(8 * modules::RECORD_SIZE);
    let buf: NonNull<c_void> = pool_alloc(bytes).ok_or(wdk_sys::STATUS_INSUFFICIENT_RESOURCES)?;
    let mut filled = ULONG::try_from(bytes).unwrap_or(ULONG::MAX);
    // SAFETY: `buf` holds `filled` writable bytes; `filled` is a live local.
    let status = unsafe { AuxKlibQueryModuleInformation(&mut filled, element, buf.as_ptr()) };
    let found = (status >= 0).then(|| {
        let len = (filled as usize).min(bytes);
        // SAFETY: AuxKlib wrote `filled` bytes of records into our block of `bytes` bytes.
        let records = unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
        modules::lists_vmmemctl(records)
    });
    // SAFETY: our block, not used after this (the slice above has ended).
    unsafe { pool_free(buf) };
    found.ok_or(status)
}
