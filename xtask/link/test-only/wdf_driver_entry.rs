//! **TEST-ONLY.** A stand-in for the WDK's KMDF stub library `WdfDriverEntry.lib`, so that
//! `cargo xtask build-sys` can link `vmballoon.sys` on Linux, where the WDK does not exist.
//! It is never part of the real build: on Windows, wdk-build links the WDK's own library.
//!
//! What it provides is what a KMDF 1.31 client image expects from the stub library (the
//! public KMDF headers, `wdffuncenum.h` and the loader's `WDF_BIND_INFO`):
//!
//! * the globals `WdfFunctions_01031` (the function table, filled by the loader),
//!   `WdfDriverGlobals`, `WdfClientVersionHigherThanFramework`, `WdfFunctionCount` (458
//!   functions in KMDF 1.31) and `WdfStructureCount` (81 structures);
//! * `WdfBindInfo`: component `KmdfLibrary`, version 1.31, the function count, and the
//!   address of `WdfFunctions_01031` for the loader to fill in;
//! * `FxDriverEntry`, the image entry point: binds to the framework with
//!   `WdfVersionBind` (WDFLDR.SYS), calls the driver's `DriverEntry`, unbinds if it fails,
//!   and otherwise wraps `DRIVER_OBJECT.DriverUnload` (which the framework set in
//!   `WdfDriverCreate`) so that unload ends with `WdfVersionUnbind`.
//!
//! Built by `cargo xtask build-sys` with `clippy-driver` into one COFF object (an rlib's
//! code, so no panic handler or core copy of its own) and archived as
//! `WdfDriverEntry.lib`.
#![no_std]
#![allow(
    non_upper_case_globals,
    non_snake_case,
    non_camel_case_types,
    clippy::upper_case_acronyms
)]

use core::ffi::c_void;
use core::ptr;

type NTSTATUS = i32;
type PVOID = *mut c_void;
type WDFFUNC = Option<unsafe extern "C" fn()>;
type DRIVER_UNLOAD = Option<unsafe extern "C" fn(DriverObject: PVOID)>;

/// `UNICODE_STRING` (ntdef.h).
#[repr(C)]
pub struct UNICODE_STRING {
    Length: u16,
    MaximumLength: u16,
    Buffer: *mut u16,
}

/// `WDF_VERSION` (the loader's header): major, minor, build.
#[repr(C)]
pub struct WDF_VERSION {
    Major: u32,
    Minor: u32,
    Build: u32,
}

/// `WDF_BIND_INFO` (version 1 of the loader's bind record).
#[repr(C)]
pub struct WDF_BIND_INFO {
    Size: u32,
    Component: *const u16,
    Version: WDF_VERSION,
    FuncCount: u32,
    FuncTable: *mut *const WDFFUNC,
    Module: PVOID,
}

const _: () = assert!(core::mem::size_of::<WDF_BIND_INFO>() == 48);

/// `WdfFunctionTableNumEntries` in KMDF 1.31's `wdffuncenum.h`.
const FUNCTION_COUNT: u32 = 458;
/// `WDF_STRUCTURE_TABLE_NUM_ENTRIES` in KMDF 1.31's `wdffuncenum.h`.
const STRUCTURE_COUNT: u32 = 81;
/// `DRIVER_OBJECT.DriverUnload` on x64 (wdm.h).
const DRIVER_UNLOAD_OFFSET: usize = 0x68;
/// Longest registry path kept for `WdfVersionUnbind`, in UTF-16 units.
const PATH_MAX: usize = 256;

const fn component() -> [u16; 12] {
    let name = b"KmdfLibrary\0";
    let mut out = [0u16; 12];
    let mut i = 0;
    while i < name.len() {
        out[i] = name[i] as u16;
        i += 1;
    }
    out
}

static COMPONENT: [u16; 12] = component();

/// The KMDF function table; `WdfVersionBind` writes its address here.
#[unsafe(no_mangle)]
pub static mut WdfFunctions_01031: *const WDFFUNC = ptr::null();
/// The driver's framework globals, from `WdfVersionBind`.
#[unsafe(no_mangle)]
pub static mut WdfDriverGlobals: PVOID = ptr::null_mut();
/// Whether the client was built for a newer framework than the one it runs on (never, for
/// this stand-in: the emulated loader is 1.31).
#[unsafe(no_mangle)]
pub static mut WdfClientVersionHigherThanFramework: u8 = 0;
/// Usable functions in the table.
#[unsafe(no_mangle)]
pub static mut WdfFunctionCount: u32 = FUNCTION_COUNT;
/// Usable structures.
#[unsafe(no_mangle)]
pub static mut WdfStructureCount: u32 = STRUCTURE_COUNT;

/// The bind record passed to the loader.
#[unsafe(no_mangle)]
pub static mut WdfBindInfo: WDF_BIND_INFO = WDF_BIND_INFO {
    Size: core::mem::size_of::<WDF_BIND_INFO>() as u32,
    Component: COMPONENT.as_ptr(),
    Version: WDF_VERSION {
        Major: 1,
        Minor: 31,
        Build: 0,
    },
    FuncCount: FUNCTION_COUNT,
    FuncTable: &raw mut WdfFunctions_01031,
    Module: ptr::null_mut(),
};

/// The framework's unload routine, called by [`fx_driver_unload`] before unbinding.
static mut FRAMEWORK_UNLOAD: DRIVER_UNLOAD = None;
/// A copy of the registry path (DriverEntry's is valid only during DriverEntry).
static mut PATH_BUFFER: [u16; PATH_MAX] = [0; PATH_MAX];
static mut REGISTRY_PATH: UNICODE_STRING = UNICODE_STRING {
    Length: 0,
    MaximumLength: 0,
    Buffer: ptr::null_mut(),
};

unsafe extern "C" {
    fn WdfVersionBind(
        DriverObject: PVOID,
        RegistryPath: *mut UNICODE_STRING,
        BindInfo: *mut WDF_BIND_INFO,
        ComponentGlobals: *mut PVOID,
    ) -> NTSTATUS;
    fn WdfVersionUnbind(
        RegistryPath: *mut UNICODE_STRING,
        BindInfo: *mut WDF_BIND_INFO,
        ComponentGlobals: PVOID,
    ) -> NTSTATUS;
    /// The driver's own entry point.
    fn DriverEntry(DriverObject: PVOID, RegistryPath: *mut UNICODE_STRING) -> NTSTATUS;
}

/// Copies `path` into [`PATH_BUFFER`] and points [`REGISTRY_PATH`] at it.
///
/// # Safety
/// `path` is null or a valid `UNICODE_STRING`; called once, before any unload.
unsafe fn keep_registry_path(path: *const UNICODE_STRING) {
    if path.is_null() {
        return;
    }
    // SAFETY: a valid UNICODE_STRING (our caller's contract).
    let (len, buffer) = unsafe { ((*path).Length as usize / 2, (*path).Buffer) };
    let len = len.min(PATH_MAX);
    let dst = &raw mut PATH_BUFFER;
    if !buffer.is_null() {
        // SAFETY: `buffer` holds `Length` bytes; `len` entries fit the static buffer, which
        // nothing else uses while DriverEntry runs.
        unsafe { ptr::copy_nonoverlapping(buffer, dst.cast::<u16>(), len) };
    }
    let bytes = (len * 2) as u16;
    // SAFETY: single-threaded here (DriverEntry); the static is ours.
    unsafe {
        REGISTRY_PATH = UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: dst.cast::<u16>(),
        }
    };
}

/// The image entry point (`/ENTRY:FxDriverEntry`).
///
/// # Safety
/// Called once by the I/O manager with a valid driver object and registry path.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FxDriverEntry(
    DriverObject: PVOID,
    RegistryPath: *mut UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: our caller's contract.
    unsafe { keep_registry_path(RegistryPath) };
    // SAFETY: the loader's contract: valid driver object, path and bind record; it writes
    // the globals pointer and fills WdfFunctions_01031 through BindInfo.FuncTable.
    let status = unsafe {
        WdfVersionBind(
            DriverObject,
            RegistryPath,
            &raw mut WdfBindInfo,
            &raw mut WdfDriverGlobals,
        )
    };
    if status < 0 {
        return status;
    }
    // SAFETY: bound; DriverEntry's contract is our caller's.
    let status = unsafe { DriverEntry(DriverObject, RegistryPath) };
    if status < 0 {
        // SAFETY: bound above, not yet unbound.
        let _ = unsafe {
            WdfVersionUnbind(
                &raw mut REGISTRY_PATH,
                &raw mut WdfBindInfo,
                WdfDriverGlobals,
            )
        };
        return status;
    }
    let slot = DriverObject
        .cast::<u8>()
        .wrapping_add(DRIVER_UNLOAD_OFFSET)
        .cast::<DRIVER_UNLOAD>();
    // SAFETY: a valid DRIVER_OBJECT; its DriverUnload field is at DRIVER_UNLOAD_OFFSET.
    let framework = unsafe { slot.read() };
    if framework.is_some() {
        // SAFETY: single-threaded (still in the entry point); both are ours or the
        // driver object's.
        unsafe {
            FRAMEWORK_UNLOAD = framework;
            slot.write(Some(fx_driver_unload));
        }
    }
    status
}

/// The unload routine installed by [`FxDriverEntry`]: the framework's, then unbind.
///
/// # Safety
/// Called once by the I/O manager, after a successful [`FxDriverEntry`].
unsafe extern "C" fn fx_driver_unload(DriverObject: PVOID) {
    // SAFETY: written once in FxDriverEntry, before this can run.
    if let Some(unload) = unsafe { FRAMEWORK_UNLOAD } {
        // SAFETY: the framework's unload routine for this driver object.
        unsafe { unload(DriverObject) };
    }
    // SAFETY: bound in FxDriverEntry; unbound once, here.
    let _ = unsafe {
        WdfVersionUnbind(
            &raw mut REGISTRY_PATH,
            &raw mut WdfBindInfo,
            WdfDriverGlobals,
        )
    };
}
