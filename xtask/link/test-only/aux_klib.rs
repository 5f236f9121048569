//! **TEST-ONLY.** A stand-in for the WDK's static library `aux_klib.lib`, so that
//! `cargo xtask build-sys` can link `vmballoon.sys` on Linux. Never part of the real build:
//! on Windows the WDK's own library (km/x64) is linked.
//!
//! It only gives the two functions the driver calls (aux_klib.h) a definition. It does not
//! list modules: `AuxKlibQueryModuleInformation` answers `STATUS_NOT_IMPLEMENTED`, so an
//! image linked with it and run anywhere but under `cargo xtask emulate` refuses to start
//! (it cannot rule `vmmemctl.sys` out). The emulation harness answers the call itself — it
//! intercepts this function's address, taken from the link map — with the module list of
//! the scenario (`xtask/emulate/README.md`).
//!
//! The bodies differ so that `/OPT:ICF` cannot fold the two functions into one address.
#![no_std]
#![allow(non_snake_case)]

use core::ffi::c_void;

/// `STATUS_NOT_IMPLEMENTED` (ntstatus.h).
const STATUS_NOT_IMPLEMENTED: i32 = 0xC000_0002_u32 as i32;

/// `AuxKlibInitialize`: nothing to initialise in the stand-in.
#[unsafe(no_mangle)]
pub extern "system" fn AuxKlibInitialize() -> i32 {
    0
}

/// `AuxKlibQueryModuleInformation`: answered by the emulation harness; see the module docs.
#[unsafe(no_mangle)]
pub extern "system" fn AuxKlibQueryModuleInformation(
    _buffer_size: *mut u32,
    _element_size: u32,
    _query_info: *mut c_void,
) -> i32 {
    STATUS_NOT_IMPLEMENTED
}
