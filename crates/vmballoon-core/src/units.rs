//! Typed units: every size in the balloon is counted in 4 KiB [`Frames`], every physical
//! page is named by a [`Pfn`], and the two balloon page sizes are a [`PageSize`].
//!
//! Arithmetic never panics: additions saturate, subtractions saturate at zero, and
//! conversions that can lose information are checked (`Option`).

use core::fmt;

/// Bytes in one 4 KiB frame, the protocol's unit of size.
pub const FRAME_BYTES: u64 = 4096;
/// log2 of [`FRAME_BYTES`].
pub const FRAME_SHIFT: u32 = 12;
/// log2 of the frames in a 2 MiB page.
const LARGE_SHIFT: u32 = 9;
/// Frames in one MiB.
const FRAMES_PER_MIB: u64 = (1024 * 1024) / FRAME_BYTES;

/// A number of 4 KiB guest frames: the unit of every balloon size and target
/// (`docs/protocol.md` §2.2: "the unit stays 4 KiB frames even when 2 MiB pages are in use").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frames(u64);

impl Frames {
    /// No frames.
    pub const ZERO: Self = Self(0);
    /// The largest representable count.
    pub const MAX: Self = Self(u64::MAX);

    /// `n` frames.
    #[must_use]
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// `mib` MiB expressed in frames (saturating).
    #[must_use]
    pub const fn from_mib(mib: u64) -> Self {
        Self(mib.saturating_mul(FRAMES_PER_MIB))
    }

    /// Frames covering `bytes` bytes, rounded down.
    #[must_use]
    pub const fn from_bytes_floor(bytes: u64) -> Self {
        Self(bytes >> FRAME_SHIFT)
    }

    /// The raw count.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The size in whole MiB, rounded down.
    #[must_use]
    pub const fn mib_floor(self) -> u64 {
        self.0 / FRAMES_PER_MIB
    }

    /// The size in whole MiB, rounded up.
    #[must_use]
    pub const fn mib_ceil(self) -> u64 {
        self.0.div_ceil(FRAMES_PER_MIB)
    }

    /// The size in bytes (saturating).
    #[must_use]
    pub const fn bytes(self) -> u64 {
        self.0.saturating_mul(FRAME_BYTES)
    }

    /// `self + rhs`, saturating at [`Frames::MAX`].
    #[must_use]
    pub const fn saturating_add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }

    /// `self - rhs`, saturating at zero.
    #[must_use]
    pub const fn saturating_sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }

    /// `self * n`, saturating.
    #[must_use]
    pub const fn saturating_mul(self, n: u64) -> Self {
        Self(self.0.saturating_mul(n))
    }

    /// `self - rhs`, or `None` when `rhs > self`.
    #[must_use]
    pub const fn checked_sub(self, rhs: Self) -> Option<Self> {
        match self.0.checked_sub(rhs.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `percent` % of `self`, rounded down, computed without overflow.
    #[must_use]
    pub const fn percent(self, percent: u8) -> Self {
        // (a / 100) * p + (a % 100) * p / 100 is exact and, for p <= 100, cannot exceed a;
        // saturation only matters for p > 100.
        let p = percent as u64;
        let whole = (self.0 / 100).saturating_mul(p);
        let part = (self.0 % 100).saturating_mul(p) / 100;
        Self(whole.saturating_add(part))
    }

    /// `self / divisor`, rounded down; zero when `divisor` is zero.
    #[must_use]
    pub const fn div_floor(self, divisor: u64) -> Self {
        match self.0.checked_div(divisor) {
            Some(v) => Self(v),
            None => Self(0),
        }
    }

    /// Whole pages of `size` that fit in `self`.
    #[must_use]
    pub const fn whole_pages(self, size: PageSize) -> u64 {
        match size {
            PageSize::Small => self.0,
            PageSize::Large => self.0 >> LARGE_SHIFT,
        }
    }

    /// Whether the count is zero.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Frames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} frames ({} MiB)", self.0, self.mib_floor())
    }
}

/// A guest physical page frame number: the physical address shifted right by 12.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pfn(u64);

impl Pfn {
    /// The largest PFN whose physical address still fits in 64 bits.
    pub const MAX: Self = Self(u64::MAX >> FRAME_SHIFT);

    /// A PFN, or `None` if its physical address would not fit in 64 bits.
    #[must_use]
    pub const fn new(pfn: u64) -> Option<Self> {
        if pfn <= Self::MAX.0 {
            Some(Self(pfn))
        } else {
            None
        }
    }

    /// The PFN of the frame containing physical address `pa`.
    #[must_use]
    pub const fn containing(pa: u64) -> Self {
        Self(pa >> FRAME_SHIFT)
    }

    /// The raw frame number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The physical address of the frame's first byte.
    #[must_use]
    pub const fn phys_addr(self) -> u64 {
        // Cannot overflow: the constructor keeps pfn <= u64::MAX >> 12.
        self.0 << FRAME_SHIFT
    }

    /// The PFN as a 32-bit value, or `None` if it does not fit (a frame at or above 16 TiB).
    #[must_use]
    pub fn to_u32(self) -> Option<u32> {
        u32::try_from(self.0).ok()
    }

    /// Whether this frame starts a 2 MiB-aligned run (the first frame of a large page).
    #[must_use]
    pub const fn is_aligned_to(self, size: PageSize) -> bool {
        match size {
            PageSize::Small => true,
            PageSize::Large => self.0 & ((1 << LARGE_SHIFT) - 1) == 0,
        }
    }

    /// The PFN `n` frames after this one, or `None` on overflow.
    #[must_use]
    pub const fn checked_add(self, n: u64) -> Option<Self> {
        match self.0.checked_add(n) {
            Some(v) => Self::new(v),
            None => None,
        }
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pfn {:#x}", self.0)
    }
}

/// The two page sizes a balloon can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// A 4 KiB page: one frame.
    Small = 0,
    /// A 2 MiB page: 512 physically contiguous, 2 MiB-aligned frames.
    Large = 1,
}

impl PageSize {
    /// Both sizes, small first: the deflate order (`docs/protocol.md` §6.3: deflate starts with 4K).
    pub const ALL: [Self; 2] = [Self::Small, Self::Large];

    /// Frames in one page of this size.
    #[must_use]
    pub const fn frames(self) -> Frames {
        match self {
            Self::Small => Frames(1),
            Self::Large => Frames(1 << LARGE_SHIFT),
        }
    }

    /// Bytes in one page of this size.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        self.frames().bytes()
    }

    /// Index for enum-indexed tables.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Short name for logs and tables: `4k` or `2m`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Small => "4k",
            Self::Large => "2m",
        }
    }
}

/// A point in monotonic time, in nanoseconds since an arbitrary epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// An instant `ns` nanoseconds after the epoch.
    #[must_use]
    pub const fn from_nanos(ns: u64) -> Self {
        Self(ns)
    }

    /// Nanoseconds since the epoch.
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating.
    #[must_use]
    pub const fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.0))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub const fn saturating_since(self, earlier: Self) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

/// A span of time in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(u64);

impl Duration {
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// `ns` nanoseconds.
    #[must_use]
    pub const fn from_nanos(ns: u64) -> Self {
        Self(ns)
    }

    /// `ms` milliseconds (saturating).
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1_000_000))
    }

    /// `s` seconds (saturating).
    #[must_use]
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1_000_000_000))
    }

    /// Whole nanoseconds.
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole milliseconds, rounded down.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// `self + rhs`, saturating.
    #[must_use]
    pub const fn saturating_add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }

    /// `self - rhs`, zero if `rhs` is longer.
    #[must_use]
    pub const fn saturating_sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }

    /// `self * n`, saturating.
    #[must_use]
    pub const fn saturating_mul(self, n: u64) -> Self {
        Self(self.0.saturating_mul(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mib_conversions_round_trip() {
        assert_eq!(Frames::from_mib(1).get(), 256);
        assert_eq!(Frames::from_mib(1330).mib_floor(), 1330);
        assert_eq!(Frames::new(257).mib_floor(), 1);
        assert_eq!(Frames::new(257).mib_ceil(), 2);
        assert_eq!(Frames::from_mib(u64::MAX), Frames::MAX);
    }

    #[test]
    fn percent_is_exact_and_cannot_overflow() {
        assert_eq!(Frames::from_mib(4096).percent(65), Frames::new(681_574));
        assert_eq!(Frames::MAX.percent(100), Frames::MAX);
        assert!(Frames::MAX.percent(255).get() > 0);
        assert_eq!(Frames::new(99).percent(50), Frames::new(49));
    }

    #[test]
    fn saturating_arithmetic_never_wraps() {
        assert_eq!(Frames::new(3).saturating_sub(Frames::new(5)), Frames::ZERO);
        assert_eq!(Frames::MAX.saturating_add(Frames::new(1)), Frames::MAX);
        assert_eq!(Frames::new(3).checked_sub(Frames::new(5)), None);
        assert_eq!(Frames::new(10).div_floor(0), Frames::ZERO);
    }

    #[test]
    fn large_page_is_512_frames() {
        assert_eq!(PageSize::Large.frames(), Frames::new(512));
        assert_eq!(PageSize::Large.bytes(), 2 * 1024 * 1024);
        assert_eq!(PageSize::Small.bytes(), 4096);
        assert_eq!(Frames::new(1535).whole_pages(PageSize::Large), 2);
    }

    #[test]
    fn pfn_bounds_are_checked() {
        assert!(Pfn::new(u64::MAX >> 12).is_some());
        assert!(Pfn::new((u64::MAX >> 12) + 1).is_none());
        let p = Pfn::new(0x1_0000_0000).unwrap();
        assert_eq!(p.to_u32(), None);
        assert_eq!(Pfn::new(0xFFFF_FFFF).unwrap().to_u32(), Some(u32::MAX));
        assert_eq!(Pfn::new(0x200).unwrap().phys_addr(), 0x20_0000);
        assert!(Pfn::new(0x400).unwrap().is_aligned_to(PageSize::Large));
        assert!(!Pfn::new(0x401).unwrap().is_aligned_to(PageSize::Large));
        assert_eq!(Pfn::MAX.checked_add(1), None);
    }

    #[test]
    fn durations() {
        let t = Instant::from_nanos(5).saturating_add(Duration::from_millis(2));
        assert_eq!(t.as_nanos(), 2_000_005);
        assert_eq!(Instant::from_nanos(1).saturating_since(t), Duration::ZERO);
        assert_eq!(Duration::from_secs(3).as_millis(), 3000);
    }
}
