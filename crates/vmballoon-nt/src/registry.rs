//! What one `WdfRegistryQueryULong` answer means for the core's config validator
//! (`docs/windows-memory.md` §4). Portable, so it is unit-tested on Linux; the glue's `src/registry.rs`
//! calls it with the real NTSTATUS.

use vmballoon_core::config::RawValue;

use crate::ntstatus::nt_result;

/// `STATUS_OBJECT_NAME_NOT_FOUND`: the value does not exist.
pub const STATUS_OBJECT_NAME_NOT_FOUND: i32 = 0xC000_0034_u32.cast_signed();
/// `STATUS_OBJECT_TYPE_MISMATCH`: the value is not a `REG_DWORD`.
pub const STATUS_OBJECT_TYPE_MISMATCH: i32 = 0xC000_0024_u32.cast_signed();

/// An absent value takes its default silently; a value that is not a `REG_DWORD`
/// (`STATUS_OBJECT_TYPE_MISMATCH`, which KMDF returns for every other type, larger ones
/// included [src: KMDF `FxRegKey::_QueryULong`]) is reported as a wrong type. Any other
/// failure (`STATUS_INSUFFICIENT_RESOURCES`, `STATUS_ACCESS_DENIED`, ...) says nothing about
/// the value, so the read as a whole fails (`Err`) and the settings in effect stay: a
/// transient error must not replace an administrator's cap with the default (no cap).
///
/// # Errors
/// The NTSTATUS of a failure that says nothing about the value.
pub fn raw_value(status: i32, value: u32) -> Result<RawValue, i32> {
    match nt_result(status) {
        Ok(()) => Ok(RawValue::Dword(value)),
        Err(STATUS_OBJECT_NAME_NOT_FOUND) => Ok(RawValue::Missing),
        Err(STATUS_OBJECT_TYPE_MISMATCH) => Ok(RawValue::WrongType),
        Err(s) => Err(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_the_dword_read() {
        assert_eq!(raw_value(0, 1330), Ok(RawValue::Dword(1330)));
        // Informational and warning statuses are successes too (NT_SUCCESS).
        assert_eq!(raw_value(0x4000_0000, 7), Ok(RawValue::Dword(7)));
    }

    #[test]
    fn absent_value_is_missing_and_other_type_is_wrong_type() {
        assert_eq!(
            raw_value(STATUS_OBJECT_NAME_NOT_FOUND, 99),
            Ok(RawValue::Missing)
        );
        assert_eq!(
            raw_value(STATUS_OBJECT_TYPE_MISMATCH, 99),
            Ok(RawValue::WrongType)
        );
    }

    #[test]
    fn transient_errors_keep_the_settings_in_effect() {
        let insufficient = 0xC000_009A_u32 as i32;
        let access_denied = 0xC000_0022_u32 as i32;
        assert_eq!(raw_value(insufficient, 0), Err(insufficient));
        assert_eq!(raw_value(access_denied, 0), Err(access_denied));
    }
}
