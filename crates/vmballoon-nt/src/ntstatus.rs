//! NTSTATUS handling shared by every kernel call of the glue: one [`nt_result`] with the
//! `NT_SUCCESS` rule instead of open-coded sign tests, and [`wait_index`] for the
//! `STATUS_WAIT_n` answers of `KeWaitForMultipleObjects`. Portable, so the rules are
//! unit-tested on Linux.

/// An NTSTATUS (`LONG`).
pub type NtStatus = i32;

/// `STATUS_WAIT_0`: the first object of a `WaitAny` wait is signalled.
pub const STATUS_WAIT_0: NtStatus = 0;

/// `MAXIMUM_WAIT_OBJECTS`: the most objects one `KeWaitForMultipleObjects` may wait on
/// (`STATUS_WAIT_0` to `STATUS_WAIT_63`).
pub const MAXIMUM_WAIT_OBJECTS: usize = 64;

/// `NT_SUCCESS(status)` as a `Result`: success and informational statuses (`>= 0`) are
/// `Ok`, warnings and errors (`< 0`) are `Err` with the status.
///
/// # Errors
/// `status` itself when it is not a success.
pub const fn nt_result(status: NtStatus) -> Result<(), NtStatus> {
    if status >= 0 { Ok(()) } else { Err(status) }
}

/// The index of the signalled object when a `WaitAny` wait on `count` objects returned
/// `status` (`STATUS_WAIT_0 + index`); `None` for a timeout, an alert, an APC or anything
/// else (the documented returns of `KeWaitForMultipleObjects`).
#[must_use]
pub fn wait_index(status: NtStatus, count: usize) -> Option<usize> {
    let index = usize::try_from(status.checked_sub(STATUS_WAIT_0)?).ok()?;
    (index < count.min(MAXIMUM_WAIT_OBJECTS)).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_TIMEOUT: NtStatus = 0x102;
    const STATUS_ALERTED: NtStatus = 0x101;
    const STATUS_USER_APC: NtStatus = 0xC0;
    const STATUS_ABANDONED_WAIT_0: NtStatus = 0x80;

    #[test]
    fn nt_success_semantics() {
        assert_eq!(nt_result(0), Ok(()));
        // Informational (0x4...) statuses and STATUS_TIMEOUT are successes for NT_SUCCESS.
        assert_eq!(nt_result(0x4000_0000), Ok(()));
        assert_eq!(nt_result(STATUS_TIMEOUT), Ok(()));
        // Warnings (0x8...) and errors (0xC...) are not.
        let buffer_overflow = 0x8000_0005_u32.cast_signed();
        let insufficient = 0xC000_009A_u32.cast_signed();
        assert_eq!(nt_result(buffer_overflow), Err(buffer_overflow));
        assert_eq!(nt_result(insufficient), Err(insufficient));
        assert_eq!(nt_result(i32::MIN), Err(i32::MIN));
        assert_eq!(nt_result(-1), Err(-1));
    }

    #[test]
    fn wait_index_names_the_signalled_object_only() {
        assert_eq!(wait_index(STATUS_WAIT_0, 5), Some(0));
        assert_eq!(wait_index(4, 5), Some(4));
        assert_eq!(wait_index(5, 5), None);
        assert_eq!(wait_index(63, 64), Some(63));
        assert_eq!(wait_index(63, 100), Some(63));
        for other in [
            STATUS_TIMEOUT,
            STATUS_ALERTED,
            STATUS_USER_APC,
            STATUS_ABANDONED_WAIT_0,
            -1,
            i32::MIN,
        ] {
            assert_eq!(wait_index(other, 5), None, "{other:#x}");
        }
    }
}
