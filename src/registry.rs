//! The `Parameters` values (`architecture.md`, "Registry parameters") through
//! `WdfDriverOpenParametersRegistryKey` + `WdfRegistryQueryULong` (`windows-memory.md` §4),
//! into a core `RawConfig`; the core's `config::validate` decides what they mean.

use core::ptr;

use vmballoon_core::config::{Param, RawConfig, RawValue};
use wdk_sys::{
    KEY_READ, NTSTATUS, STATUS_OBJECT_NAME_NOT_FOUND, UNICODE_STRING, WDF_NO_OBJECT_ATTRIBUTES,
    WDFDRIVER, WDFKEY, call_unsafe_wdf_function_binding,
};

/// Longest value name, in UTF-16 units.
const NAME_MAX: usize = 32;

/// What one `WdfRegistryQueryULong` means for the validator: absent values take their
/// default silently, anything else unreadable is reported as a wrong type.
fn raw_value(status: NTSTATUS, value: u32) -> RawValue {
    match status {
        s if s >= 0 => RawValue::Dword(value),
        STATUS_OBJECT_NAME_NOT_FOUND => RawValue::Missing,
        _ => RawValue::WrongType,
    }
}

/// Reads every parameter (PASSIVE_LEVEL). `Err` only when the key cannot be opened.
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
    if status < 0 {
        return Err(status);
    }
    let mut raw = RawConfig::new();
    for param in Param::ALL {
        let mut wide = [0u16; NAME_MAX];
        let mut len = 0;
        for (slot, b) in wide.iter_mut().zip(param.name().bytes()) {
            *slot = u16::from(b);
            len += 1;
        }
        let bytes = u16::try_from(len * 2).unwrap_or(0);
        let name = UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: wide.as_mut_ptr(),
        };
        let mut value: u32 = 0;
        // SAFETY: `key` is open; `name` points at the live local `wide`; `value` is a live
        // local. PASSIVE_LEVEL worker or DriverEntry.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfRegistryQueryULong, key, &name, &mut value)
        };
        raw.set(param, raw_value(status, value));
    }
    // SAFETY: closes the key opened above, once.
    unsafe { call_unsafe_wdf_function_binding!(WdfRegistryClose, key) };
    Ok(raw)
}
