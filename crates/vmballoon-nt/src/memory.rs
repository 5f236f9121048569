//! Parsing of the `ZwQuerySystemInformation` memory classes into a core
//! [`MemorySnapshot`] (`docs/windows-memory.md` §3.2). Portable: the glue hands over the raw
//! buffer and `ReturnLength`, and everything here is tested on Linux with byte buffers for
//! each Windows size variant.
//!
//! Trust rules ("no inflation beyond what is known to be safe"):
//! * a field is used only if `ReturnLength` covers it;
//! * a `ReturnLength` that is not one of the documented sizes of the class makes every
//!   field of that reply unknown (`None`), because the layout can no longer be vouched for;
//! * a negative resident-available count (the field is a signed `LONGLONG`) reads as zero;
//! * every degradation is reported as a [`Diagnostic`] that the glue traces.
//!
//! The core policy treats an unknown bound as "no room", so a degraded reply can only
//! stop inflation, never allow more of it.

use vmballoon_core::platform::{MemoryError, MemorySnapshot};
use vmballoon_core::units::{FRAME_BYTES, Frames};

/// An information class this module parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfoClass {
    /// `SystemBasicInformation` (0): `SYSTEM_BASIC_INFORMATION`.
    Basic,
    /// `SystemPerformanceInformation` (2): `SYSTEM_PERFORMANCE_INFORMATION`.
    Performance,
    /// `SystemMemoryUsageInformation` (182): `SYSTEM_MEMORY_USAGE_INFORMATION`.
    MemoryUsage,
}

impl InfoClass {
    /// The class number passed to `ZwQuerySystemInformation` (phnt `ntexapi.h`).
    #[must_use]
    pub const fn number(self) -> u32 {
        match self {
            Self::Basic => 0,
            Self::Performance => 2,
            Self::MemoryUsage => 182,
        }
    }

    /// Every `ReturnLength` this class is documented to produce on x64, smallest first.
    #[must_use]
    pub const fn known_sizes(self) -> &'static [usize] {
        match self {
            Self::Basic => &[BASIC_SIZE],
            // 0x138 NT 3.10–6.0, 0x148 6.1, 0x158 6.2+ (Windows 8), 0x178 Windows 11 24H2.
            Self::Performance => &[0x138, 0x148, 0x158, PERFORMANCE_MAX_SIZE],
            Self::MemoryUsage => &[MEMORY_USAGE_SIZE],
        }
    }

    /// The buffer the glue passes: the largest known size.
    #[must_use]
    pub const fn buffer_size(self) -> usize {
        match self {
            Self::Basic => BASIC_SIZE,
            Self::Performance => PERFORMANCE_MAX_SIZE,
            Self::MemoryUsage => MEMORY_USAGE_SIZE,
        }
    }

    /// Name for traces.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Basic => "SystemBasicInformation",
            Self::Performance => "SystemPerformanceInformation",
            Self::MemoryUsage => "SystemMemoryUsageInformation",
        }
    }
}

/// `sizeof(SYSTEM_BASIC_INFORMATION)` on x64.
pub const BASIC_SIZE: usize = 0x40;
/// The largest `SYSTEM_PERFORMANCE_INFORMATION` known (Windows 11 24H2).
pub const PERFORMANCE_MAX_SIZE: usize = 0x178;
/// `sizeof(SYSTEM_MEMORY_USAGE_INFORMATION)`.
pub const MEMORY_USAGE_SIZE: usize = 0x38;

/// Field offsets (x64), `docs/windows-memory.md` §3.2.
mod off {
    /// `SYSTEM_BASIC_INFORMATION.PageSize` (ULONG).
    pub const BASIC_PAGE_SIZE: usize = 0x08;
    /// `SYSTEM_BASIC_INFORMATION.NumberOfPhysicalPages` (ULONG).
    pub const BASIC_PHYSICAL_PAGES: usize = 0x0C;
    /// `SYSTEM_PERFORMANCE_INFORMATION.AvailablePages` (ULONG).
    pub const PERF_AVAILABLE: usize = 0x2C;
    /// `SYSTEM_PERFORMANCE_INFORMATION.CommittedPages` (ULONG).
    pub const PERF_COMMITTED: usize = 0x30;
    /// `SYSTEM_PERFORMANCE_INFORMATION.CommitLimit` (ULONG).
    pub const PERF_COMMIT_LIMIT: usize = 0x34;
    /// `SYSTEM_PERFORMANCE_INFORMATION.ResidentAvailablePages` (LONGLONG, since 6.2).
    pub const PERF_RESIDENT_AVAILABLE: usize = 0x148;
    /// `SYSTEM_MEMORY_USAGE_INFORMATION.TotalPhysicalBytes`.
    pub const USAGE_TOTAL: usize = 0x00;
    /// `SYSTEM_MEMORY_USAGE_INFORMATION.AvailableBytes`.
    pub const USAGE_AVAILABLE: usize = 0x08;
    /// `SYSTEM_MEMORY_USAGE_INFORMATION.ResidentAvailableBytes` (LONGLONG).
    pub const USAGE_RESIDENT_AVAILABLE: usize = 0x10;
    /// `SYSTEM_MEMORY_USAGE_INFORMATION.CommittedBytes`.
    pub const USAGE_COMMITTED: usize = 0x18;
    /// `SYSTEM_MEMORY_USAGE_INFORMATION.CommitLimitBytes`.
    pub const USAGE_COMMIT_LIMIT: usize = 0x28;
}

/// Why (part of) a reply was not used. The glue traces each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diagnostic {
    /// The query failed (`status` is the NTSTATUS).
    QueryFailed {
        /// The class queried.
        class: InfoClass,
        /// Its NTSTATUS.
        status: i32,
    },
    /// `ReturnLength` is not a documented size of the class: nothing from it is used.
    UnknownSize {
        /// The class queried.
        class: InfoClass,
        /// The `ReturnLength` reported.
        return_length: u32,
    },
    /// `ReturnLength` claims more than the buffer holds: nothing from it is used.
    ShortBuffer {
        /// The class queried.
        class: InfoClass,
        /// The `ReturnLength` reported.
        return_length: u32,
        /// The bytes actually available.
        buffer_len: usize,
    },
    /// Resident available was negative (over-committed): read as zero.
    NegativeResidentAvailable {
        /// The class that reported it.
        class: InfoClass,
        /// The raw value (pages or bytes, per class).
        raw: i64,
    },
    /// `SYSTEM_BASIC_INFORMATION.PageSize` is not 4096: its page counts are not used.
    UnexpectedPageSize {
        /// The page size reported.
        page_size: u32,
    },
}

/// Every field one reply can contribute, each `None` unless trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Partial {
    /// RAM the OS manages.
    pub total: Option<Frames>,
    /// Resident available.
    pub resident_available: Option<Frames>,
    /// Available (free + zeroed + standby).
    pub available: Option<Frames>,
    /// Commit limit.
    pub commit_limit: Option<Frames>,
    /// Commit charge.
    pub committed: Option<Frames>,
}

impl Partial {
    /// Fields of `self`, each completed from `other` where `self` does not know it.
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        Self {
            total: self.total.or(other.total),
            resident_available: self.resident_available.or(other.resident_available),
            available: self.available.or(other.available),
            commit_limit: self.commit_limit.or(other.commit_limit),
            committed: self.committed.or(other.committed),
        }
    }

    /// Whether every field is known (then no other class needs to be queried).
    #[must_use]
    pub const fn is_complete(&self) -> bool {
        self.total.is_some()
            && self.resident_available.is_some()
            && self.available.is_some()
            && self.commit_limit.is_some()
            && self.committed.is_some()
    }

    /// The snapshot, or [`MemoryError::Unavailable`] when not even the RAM size is known.
    ///
    /// # Errors
    /// [`MemoryError::Unavailable`] without a total.
    pub fn into_snapshot(
        self,
        low_memory: bool,
        high_commit: bool,
    ) -> Result<MemorySnapshot, MemoryError> {
        let total = self.total.ok_or(MemoryError::Unavailable)?;
        Ok(MemorySnapshot {
            total,
            resident_available: self.resident_available,
            available: self.available,
            commit_limit: self.commit_limit,
            committed: self.committed,
            low_memory,
            high_commit,
            // Windows gives only the aggregate (resident available), no breakdown (§3.2).
            pinned: Default::default(),
        })
    }
}

/// The result of parsing one reply: the trusted fields and at most one diagnostic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Trusted fields.
    pub fields: Partial,
    /// What was degraded, if anything.
    pub diagnostic: Option<Diagnostic>,
}

/// The bytes of `buf` that `ReturnLength` vouches for, or why none are usable.
fn covered(class: InfoClass, buf: &[u8], return_length: u32) -> Result<&[u8], Diagnostic> {
    let len = usize::try_from(return_length).unwrap_or(usize::MAX);
    if !class.known_sizes().contains(&len) {
        return Err(Diagnostic::UnknownSize {
            class,
            return_length,
        });
    }
    buf.get(..len).ok_or(Diagnostic::ShortBuffer {
        class,
        return_length,
        buffer_len: buf.len(),
    })
}

fn bytes_at<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    bytes_at(buf, at).map(u32::from_le_bytes)
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    bytes_at(buf, at).map(u64::from_le_bytes)
}

fn i64_at(buf: &[u8], at: usize) -> Option<i64> {
    bytes_at(buf, at).map(i64::from_le_bytes)
}

/// Page counts of class 2 are in 4 KiB pages on x64: one page is one frame.
fn pages(n: u32) -> Frames {
    Frames::new(u64::from(n))
}

/// A signed resident-available count, clamped at zero with a diagnostic when negative.
fn non_negative(
    class: InfoClass,
    raw: Option<i64>,
    to_frames: fn(u64) -> Frames,
) -> (Option<Frames>, Option<Diagnostic>) {
    match raw {
        None => (None, None),
        Some(v) => match u64::try_from(v) {
            Ok(v) => (Some(to_frames(v)), None),
            Err(_) => (
                Some(Frames::ZERO),
                Some(Diagnostic::NegativeResidentAvailable { class, raw: v }),
            ),
        },
    }
}

/// Parses `SYSTEM_BASIC_INFORMATION` (class 0): the RAM size.
#[must_use]
pub fn parse_basic(buf: &[u8], return_length: u32) -> Parsed {
    let class = InfoClass::Basic;
    let data = match covered(class, buf, return_length) {
        Ok(d) => d,
        Err(d) => return degraded(d),
    };
    match u32_at(data, off::BASIC_PAGE_SIZE) {
        Some(4096) => Parsed {
            fields: Partial {
                total: u32_at(data, off::BASIC_PHYSICAL_PAGES).map(pages),
                ..Partial::default()
            },
            diagnostic: None,
        },
        other => degraded(Diagnostic::UnexpectedPageSize {
            page_size: other.unwrap_or(0),
        }),
    }
}

/// Parses `SYSTEM_PERFORMANCE_INFORMATION` (class 2) at any of its sizes.
#[must_use]
pub fn parse_performance(buf: &[u8], return_length: u32) -> Parsed {
    let class = InfoClass::Performance;
    let data = match covered(class, buf, return_length) {
        Ok(d) => d,
        Err(d) => return degraded(d),
    };
    // `ResidentAvailablePages` exists only from 6.2 (0x158 bytes); `data` ends at
    // ReturnLength, so `i64_at` returns None for the 0x138 and 0x148 layouts.
    let (resident_available, diagnostic) = non_negative(
        class,
        i64_at(data, off::PERF_RESIDENT_AVAILABLE),
        Frames::new,
    );
    Parsed {
        fields: Partial {
            total: None,
            resident_available,
            available: u32_at(data, off::PERF_AVAILABLE).map(pages),
            commit_limit: u32_at(data, off::PERF_COMMIT_LIMIT).map(pages),
            committed: u32_at(data, off::PERF_COMMITTED).map(pages),
        },
        diagnostic,
    }
}

/// Parses `SYSTEM_MEMORY_USAGE_INFORMATION` (class 182, all counts in bytes).
#[must_use]
pub fn parse_memory_usage(buf: &[u8], return_length: u32) -> Parsed {
    let class = InfoClass::MemoryUsage;
    let data = match covered(class, buf, return_length) {
        Ok(d) => d,
        Err(d) => return degraded(d),
    };
    let bytes = |at| u64_at(data, at).map(Frames::from_bytes_floor);
    let (resident_available, diagnostic) = non_negative(
        class,
        i64_at(data, off::USAGE_RESIDENT_AVAILABLE),
        Frames::from_bytes_floor,
    );
    Parsed {
        fields: Partial {
            total: bytes(off::USAGE_TOTAL),
            resident_available,
            available: bytes(off::USAGE_AVAILABLE),
            commit_limit: bytes(off::USAGE_COMMIT_LIMIT),
            committed: bytes(off::USAGE_COMMITTED),
        },
        diagnostic,
    }
}

/// A reply the glue could not make (`ZwQuerySystemInformation` failed).
#[must_use]
pub const fn failed(class: InfoClass, status: i32) -> Parsed {
    degraded(Diagnostic::QueryFailed { class, status })
}

const fn degraded(diagnostic: Diagnostic) -> Parsed {
    Parsed {
        fields: Partial {
            total: None,
            resident_available: None,
            available: None,
            commit_limit: None,
            committed: None,
        },
        diagnostic: Some(diagnostic),
    }
}

// One frame per x64 page: the page-count conversions above rely on it.
const _: () = assert!(FRAME_BYTES == 4096);

/// Which layout of each class the snapshots use: the `ReturnLength` of the last reply
/// from which at least one field was trusted. For the once-at-start `MemoryLayout` trace
/// (the layouts are not documented, so a trace must say which ones were relied on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    sizes: [Option<u32>; 3],
}

impl Layout {
    const fn slot(class: InfoClass) -> usize {
        match class {
            InfoClass::Basic => 0,
            InfoClass::Performance => 1,
            InfoClass::MemoryUsage => 2,
        }
    }

    /// Records the reply of `class` with `return_length` that parsed to `parsed`: its size
    /// is in use if any field of it was trusted; a reply that contributed nothing (failed,
    /// unknown size, short buffer, unexpected page size) leaves the class's entry as it was.
    pub fn record(&mut self, class: InfoClass, return_length: u32, parsed: &Parsed) {
        if parsed.fields != Partial::default()
            && let Some(slot) = self.sizes.get_mut(Self::slot(class))
        {
            *slot = Some(return_length);
        }
    }

    /// The size of `class`'s layout in use, if any.
    #[must_use]
    pub fn size(&self, class: InfoClass) -> Option<u32> {
        self.sizes.get(Self::slot(class)).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A class-2 reply of `size` bytes for a 4 GiB guest.
    fn perf(size: usize, resident: i64) -> Vec<u8> {
        let mut b = vec![0xAAu8; PERFORMANCE_MAX_SIZE];
        put(&mut b, 0x2C, &300_000u32.to_le_bytes()); // AvailablePages
        put(&mut b, 0x30, &500_000u32.to_le_bytes()); // CommittedPages
        put(&mut b, 0x34, &1_400_000u32.to_le_bytes()); // CommitLimit
        if size >= 0x150 {
            put(&mut b, 0x148, &resident.to_le_bytes());
        }
        b
    }

    #[test]
    fn class_numbers_and_sizes_match_windows_memory_md() {
        assert_eq!(InfoClass::Basic.number(), 0);
        assert_eq!(InfoClass::Performance.number(), 2);
        assert_eq!(InfoClass::MemoryUsage.number(), 182);
        assert_eq!(
            InfoClass::Performance.known_sizes(),
            &[0x138, 0x148, 0x158, 0x178]
        );
        assert_eq!(InfoClass::Basic.buffer_size(), 0x40);
        assert_eq!(InfoClass::MemoryUsage.buffer_size(), 0x38);
    }

    #[test]
    fn basic_information_gives_total_ram() {
        let mut b = vec![0u8; BASIC_SIZE];
        put(&mut b, 0x08, &4096u32.to_le_bytes());
        put(&mut b, 0x0C, &1_048_576u32.to_le_bytes());
        let p = parse_basic(&b, 0x40);
        assert_eq!(p.diagnostic, None);
        assert_eq!(p.fields.total, Some(Frames::from_mib(4096)));
        assert_eq!(p.fields.resident_available, None);
    }

    #[test]
    fn basic_information_with_odd_page_size_or_size_is_not_trusted() {
        let mut b = vec![0u8; BASIC_SIZE];
        put(&mut b, 0x08, &8192u32.to_le_bytes());
        put(&mut b, 0x0C, &1000u32.to_le_bytes());
        let p = parse_basic(&b, 0x40);
        assert_eq!(p.fields.total, None);
        assert_eq!(
            p.diagnostic,
            Some(Diagnostic::UnexpectedPageSize { page_size: 8192 })
        );
        // The x86 size (0x2C) is not an x64 layout.
        let p = parse_basic(&b, 0x2C);
        assert_eq!(p.fields, Partial::default());
        assert!(matches!(
            p.diagnostic,
            Some(Diagnostic::UnknownSize {
                return_length: 0x2C,
                ..
            })
        ));
    }

    #[test]
    fn performance_0x178_windows_11_24h2() {
        let p = parse_performance(&perf(0x178, 700_000), 0x178);
        assert_eq!(p.diagnostic, None);
        assert_eq!(p.fields.resident_available, Some(Frames::new(700_000)));
        assert_eq!(p.fields.available, Some(Frames::new(300_000)));
        assert_eq!(p.fields.committed, Some(Frames::new(500_000)));
        assert_eq!(p.fields.commit_limit, Some(Frames::new(1_400_000)));
        assert_eq!(p.fields.total, None);
    }

    #[test]
    fn performance_0x158_windows_8_and_later() {
        let p = parse_performance(&perf(0x158, 123_456), 0x158);
        assert_eq!(p.diagnostic, None);
        assert_eq!(p.fields.resident_available, Some(Frames::new(123_456)));
        assert_eq!(p.fields.commit_limit, Some(Frames::new(1_400_000)));
    }

    #[test]
    fn performance_0x148_windows_7_has_no_resident_available() {
        // The buffer still holds bytes at 0x148 (the 0xAA fill); ReturnLength does not cover
        // them, so they are not read.
        let p = parse_performance(&perf(0x148, 0), 0x148);
        assert_eq!(p.diagnostic, None);
        assert_eq!(p.fields.resident_available, None);
        assert_eq!(p.fields.available, Some(Frames::new(300_000)));
    }

    #[test]
    fn performance_0x138_vista_has_commit_but_no_resident_available() {
        let p = parse_performance(&perf(0x138, 0), 0x138);
        assert_eq!(p.diagnostic, None);
        assert_eq!(p.fields.resident_available, None);
        assert_eq!(p.fields.committed, Some(Frames::new(500_000)));
    }

    #[test]
    fn negative_resident_available_clamps_to_zero() {
        let p = parse_performance(&perf(0x158, -42), 0x158);
        assert_eq!(p.fields.resident_available, Some(Frames::ZERO));
        assert_eq!(
            p.diagnostic,
            Some(Diagnostic::NegativeResidentAvailable {
                class: InfoClass::Performance,
                raw: -42
            })
        );
    }

    #[test]
    fn unknown_performance_size_trusts_nothing() {
        for len in [0u32, 0x30, 0x150, 0x160, 0x170, 0x180] {
            let p = parse_performance(&perf(0x178, 1), len);
            assert_eq!(p.fields, Partial::default(), "{len:#x}");
            assert_eq!(
                p.diagnostic,
                Some(Diagnostic::UnknownSize {
                    class: InfoClass::Performance,
                    return_length: len
                })
            );
        }
    }

    #[test]
    fn return_length_past_the_buffer_trusts_nothing() {
        let b = perf(0x178, 1);
        let p = parse_performance(&b[..0x158], 0x178);
        assert_eq!(p.fields, Partial::default());
        assert_eq!(
            p.diagnostic,
            Some(Diagnostic::ShortBuffer {
                class: InfoClass::Performance,
                return_length: 0x178,
                buffer_len: 0x158
            })
        );
    }

    fn usage(resident: i64) -> Vec<u8> {
        let mut b = vec![0u8; MEMORY_USAGE_SIZE];
        put(&mut b, 0x00, &(4 * GIB).to_le_bytes());
        put(&mut b, 0x08, &GIB.to_le_bytes());
        put(&mut b, 0x10, &resident.to_le_bytes());
        put(&mut b, 0x18, &(2 * GIB).to_le_bytes());
        put(&mut b, 0x20, &12345u64.to_le_bytes());
        put(&mut b, 0x28, &(5 * GIB).to_le_bytes());
        put(&mut b, 0x30, &(3 * GIB).to_le_bytes());
        b
    }

    #[test]
    fn memory_usage_class_182_in_bytes() {
        let p = parse_memory_usage(&usage(1_500 * 1024 * 1024 + 4095), 0x38);
        assert_eq!(p.diagnostic, None);
        assert!(p.fields.is_complete());
        assert_eq!(p.fields.total, Some(Frames::from_mib(4096)));
        // Bytes round down to whole frames.
        assert_eq!(p.fields.resident_available, Some(Frames::from_mib(1500)));
        assert_eq!(p.fields.available, Some(Frames::from_mib(1024)));
        assert_eq!(p.fields.committed, Some(Frames::from_mib(2048)));
        assert_eq!(p.fields.commit_limit, Some(Frames::from_mib(5120)));
        let p = parse_memory_usage(&usage(-4096), 0x38);
        assert_eq!(p.fields.resident_available, Some(Frames::ZERO));
        assert!(matches!(
            p.diagnostic,
            Some(Diagnostic::NegativeResidentAvailable { raw: -4096, .. })
        ));
        assert_eq!(
            parse_memory_usage(&usage(1), 0x30).fields,
            Partial::default()
        );
    }

    #[test]
    fn merge_prefers_the_first_source_and_needs_a_total() {
        let usage = parse_memory_usage(&usage(GIB as i64), 0x38).fields;
        let perf = parse_performance(&perf(0x158, 7), 0x158).fields;
        let merged = usage.or(perf);
        assert_eq!(merged.resident_available, Some(Frames::from_mib(1024)));
        let fallback = failed(InfoClass::MemoryUsage, -1).fields.or(perf);
        assert!(!fallback.is_complete());
        assert_eq!(
            fallback.into_snapshot(false, false),
            Err(MemoryError::Unavailable)
        );
        let mut basic = vec![0u8; BASIC_SIZE];
        put(&mut basic, 0x08, &4096u32.to_le_bytes());
        put(&mut basic, 0x0C, &1_048_576u32.to_le_bytes());
        let snap = parse_basic(&basic, 0x40)
            .fields
            .or(fallback)
            .into_snapshot(true, false)
            .unwrap();
        assert_eq!(snap.total, Frames::from_mib(4096));
        assert_eq!(snap.resident_available, Some(Frames::new(7)));
        assert!(snap.low_memory);
    }

    #[test]
    fn layout_records_only_replies_that_contributed_a_field() {
        let mut layout = Layout::default();
        assert_eq!(layout.size(InfoClass::Performance), None);
        // Windows 8+ performance reply: used.
        let mut perf = vec![0u8; 0x158];
        put(&mut perf, 0x148, &1000i64.to_le_bytes());
        let parsed = parse_performance(&perf, 0x158);
        layout.record(InfoClass::Performance, 0x158, &parsed);
        assert_eq!(layout.size(InfoClass::Performance), Some(0x158));
        // An unknown size, a failure and a wrong page size contribute nothing and change
        // nothing.
        let unknown = parse_performance(&perf, 0x160);
        layout.record(InfoClass::Performance, 0x160, &unknown);
        layout.record(
            InfoClass::MemoryUsage,
            0,
            &failed(InfoClass::MemoryUsage, -1),
        );
        let mut basic = vec![0u8; BASIC_SIZE];
        put(&mut basic, 0x08, &8192u32.to_le_bytes());
        let odd_page = parse_basic(&basic, BASIC_SIZE as u32);
        layout.record(InfoClass::Basic, BASIC_SIZE as u32, &odd_page);
        assert_eq!(layout.size(InfoClass::Performance), Some(0x158));
        assert_eq!(layout.size(InfoClass::MemoryUsage), None);
        assert_eq!(layout.size(InfoClass::Basic), None);
        let usage = parse_memory_usage(&[0u8; MEMORY_USAGE_SIZE], MEMORY_USAGE_SIZE as u32);
        layout.record(InfoClass::MemoryUsage, MEMORY_USAGE_SIZE as u32, &usage);
        assert_eq!(layout.size(InfoClass::MemoryUsage), Some(0x38));
    }
}
