//! The `Parameters` values (`docs/architecture.md`, "Registry parameters") through
//! `WdfDriverOpenParametersRegistryKey` + `WdfRegistryQueryULong` (`docs/windows-memory.md` §4),
//! into a core `RawConfig`; the core's `config::validate` decides what they mean.

use core::ptr;

use vmballoon_core::config::{Param, RawConfig};
use wdk_sys::{
    KEY_READ, NTSTATUS, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_OBJECT_TYPE_MISMATCH, UNICODE_STRING,
    WDF_NO_OBJECT_ATTRIBUTES, WDFDRIVER, WDFKEY, call_unsafe_wdf_function_binding,
};

/// Longest value name, in UTF-16 units.
const NAME_MAX: usize = 32;

use vmballoon_nt::ntstatus::nt_result;
use vmballoon_nt::registry::raw_value;

// The portable decoder's constants are the WDK's.
const _: () =
    assert!(vmballoon_nt::registry::STATUS_OBJECT_NAME_NOT_FOUND == STATUS_OBJECT_NAME_NOT_FOUND);
const _: () =
    assert!(vmballoon_nt::registry::STATUS_OBJECT_TYPE_MISMATCH == STATUS_OBJECT_TYPE_MISMATCH);

/// Reads every parameter (PASSIVE_LEVEL). `Err` when the key cannot be opened or a value
/// cannot be read (see [`vmballoon_nt::registry::raw_value`]); the caller then keeps the settings in effect.
pub fn read(driver: WDFDRIVER) -> Result<RawConfig, NTSTATUS> {
    let mut key: WDFKEY = ptr::null_mut();
    // SAFETY: `driver` is our live WDFDRIVER; `key` is a live local; KEY_READ is what
    // WdfRegistryQueryULong needs. The framework creates the key if it is missing.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverOpenParametersRegistryKey,
            driver,
            KEY_READ,
            WDF_NO_OBJECT_ATTRIBUTES,
            &mut key,
        )
    };
    nt_result(status)?;
    let raw = read_values(key);
    // SAFETY: closes the key opened above, once, on every path.
    unsafe { call_unsafe_wdf_function_binding!(WdfRegistryClose, key) };
    raw
}

/// Every parameter from the open `key`; stops at the first value that cannot be read.
fn read_values(key: WDFKEY) -> Result<RawConfig, NTSTATUS> {
    let mut raw = RawConfig::new();
    for param in Param::ALL {
        let mut wide = [0u16; NAME_MAX];
        let len = wide
            .iter_mut()
            .zip(param.name().bytes())
            .map(|(slot, b)| *slot = u16::from(b))
            .count();
        // At most NAME_MAX units: the byte count fits a USHORT.
        let bytes = len
            .checked_mul(2)
            .and_then(|b| u16::try_from(b).ok())
            .unwrap_or(0);
        let name = UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: wide.as_mut_ptr(),
        };
        let mut value: u32 = 0;
        // SAFETY: `key` is open (our caller closes it after this returns); `name` points at
        // the live local `wide`; `value` is a live local. PASSIVE_LEVEL worker or DriverEntry.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfRegistryQueryULong, key, &name, &mut value)
        };
        raw.set(param, raw_value(status, value)?);
    }
    Ok(raw)
}
