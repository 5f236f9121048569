//! The `VM Balloon` performance-counter set (`docs/windows-memory.md §9.6`): its fixed
//! layout, each counter's name, PCW type and meaning, and the mapping from the engine's
//! [`TickReport`] and [`Stats`] to one [`CounterData`] block.
//!
//! The glue (`src/counters.rs`) registers the set with PCW, hands it a data block of
//! [`COUNT`] 8-byte values in [`PerfCounter::ALL`] order and, after each tick, folds the
//! report into a [`CounterData`] with [`CounterData::update`] and stores its values into the
//! block. The counter manifest (`inf/vmballoon-counters.man`) describes the same set and is
//! checked against [`PerfCounter::ALL`] by `tests/counters_manifest.rs`. The simulator's
//! `--counters` prints a [`CounterData`] folded by this same mapping.
//!
//! Every counter is 8 bytes (`perf_counter_large_rawcount` or `perf_counter_bulk_count`),
//! so counter `i` sits at byte offset `8 * i` and each is one aligned 8-byte store for the
//! writer: a reader never sees half a counter. Sizes are MiB (rounded down); frames are
//! 4 KiB pages.

use vmballoon_core::config::Config;
use vmballoon_core::engine::TickReport;
use vmballoon_core::policy::{self, Charge, ClampReason};
use vmballoon_core::stats::{Counter, Stats};
use vmballoon_core::units::{Frames, PageSize};

/// The counter set's name: the PCW registration name and the manifest's `counterSet`
/// `name`, and what `Get-Counter '\VM Balloon\*'` names.
pub const COUNTER_SET_NAME: &str = "VM Balloon";

/// The counter-set GUID of the manifest's `counterSet` (fixed: consumers key on it).
pub const COUNTER_SET_GUID: &str = "04a5a791-c622-4905-8bad-371efc4d831f";

/// The provider GUID of the manifest's `provider` (fixed).
pub const PROVIDER_GUID: &str = "5a55827a-aaf5-4b1b-95a5-6a8a4f343f3e";

/// The single instance's name (the set has one instance: the driver).
pub const INSTANCE_NAME: &str = "vmballoon";

/// Number of counters.
pub const COUNT: usize = 16;

/// Bytes of one counter value.
pub const VALUE_BYTES: usize = 8;

/// Bytes of the data block PCW reads.
pub const BLOCK_BYTES: usize = 128;
const _: () = assert!(BLOCK_BYTES == COUNT * VALUE_BYTES && BLOCK_BYTES <= u16::MAX as usize);
const _: () = assert!(VALUE_BYTES == 8);

/// How Windows reads and shows a counter: the manifest's `type` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PcwType {
    /// `perf_counter_large_rawcount`: a 64-bit value shown as it is.
    LargeRawcount,
    /// `perf_counter_bulk_count`: a 64-bit running total that consumers show as a rate
    /// per second (the difference of two samples over the time between them).
    BulkCount,
}

impl PcwType {
    /// The manifest spelling.
    #[must_use]
    pub const fn manifest_name(self) -> &'static str {
        match self {
            Self::LargeRawcount => "perf_counter_large_rawcount",
            Self::BulkCount => "perf_counter_bulk_count",
        }
    }
}

/// One counter of the set, in data-block order. The value of [`PerfCounter::ClampReason`]
/// is [`clamp_reason_number`]; those of the two accountings are [`charge_number`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PerfCounter {
    /// Balloon size after the last tick, MiB.
    BalloonMib,
    /// The host's target as last reported, MiB.
    HostTargetMib,
    /// The safe ceiling at the last check, MiB (0 before the first).
    SafeCeilingMib,
    /// What held the balloon below the host target or reversed it at the last tick
    /// ([`clamp_reason_number`]).
    ClampReason,
    /// The resident-available reserve in force (registry or automatic), MiB.
    ReserveMib,
    /// Resident available memory as last measured, MiB.
    ResidentAvailableMib,
    /// Commit limit minus commit charge as last measured, MiB.
    CommitHeadroomMib,
    /// 4 KiB frames locked into the balloon (running total; shown per second).
    FramesLocked,
    /// 4 KiB frames unlocked and returned to Windows (running total; shown per second).
    FramesUnlocked,
    /// 4 KiB frames the host refused.
    RefusedFrames,
    /// RESETs received from the host.
    HostResets,
    /// Page allocations that returned nothing (4 KiB and 2 MiB).
    AllocationFailures,
    /// Deflates the guest's memory pressure caused (`LowMemoryCondition` and the
    /// guest-side bounds).
    PressureDeflates,
    /// Backdoor calls made.
    BackdoorCalls,
    /// How Windows charges the balloon to resident available memory, as last measured
    /// ([`charge_number`]).
    ResidentAvailableAccounting,
    /// How Windows charges the balloon to commit, as last measured ([`charge_number`]).
    CommitAccounting,
}

impl PerfCounter {
    /// Every counter, in data-block order (counter `i` has id `i` and offset `8 * i`).
    pub const ALL: [Self; COUNT] = [
        Self::BalloonMib,
        Self::HostTargetMib,
        Self::SafeCeilingMib,
        Self::ClampReason,
        Self::ReserveMib,
        Self::ResidentAvailableMib,
        Self::CommitHeadroomMib,
        Self::FramesLocked,
        Self::FramesUnlocked,
        Self::RefusedFrames,
        Self::HostResets,
        Self::AllocationFailures,
        Self::PressureDeflates,
        Self::BackdoorCalls,
        Self::ResidentAvailableAccounting,
        Self::CommitAccounting,
    ];

    /// Index in the data block, and the counter's id in the manifest and in PCW.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The counter's id (the manifest's `id`, PCW's `PCW_COUNTER_DESCRIPTOR.Id`).
    #[must_use]
    pub const fn id(self) -> u16 {
        self as u16
    }

    /// Byte offset of the value in the data block (`PCW_COUNTER_DESCRIPTOR.Offset`).
    #[must_use]
    pub const fn offset(self) -> u16 {
        // At most 8 * 15: BLOCK_BYTES fits a u16 (asserted below).
        (self as u16).saturating_mul(8)
    }

    /// The name consumers show (`\VM Balloon\<name>`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::BalloonMib => "Balloon MB",
            Self::HostTargetMib => "Host Target MB",
            Self::SafeCeilingMib => "Safe Ceiling MB",
            Self::ClampReason => "Clamp Reason",
            Self::ReserveMib => "Reserve MB",
            Self::ResidentAvailableMib => "Resident Available MB",
            Self::CommitHeadroomMib => "Commit Headroom MB",
            Self::FramesLocked => "Frames Locked/sec",
            Self::FramesUnlocked => "Frames Unlocked/sec",
            Self::RefusedFrames => "Refused Frames",
            Self::HostResets => "Host Resets",
            Self::AllocationFailures => "Allocation Failures",
            Self::PressureDeflates => "Pressure Deflates",
            Self::BackdoorCalls => "Backdoor Calls",
            Self::ResidentAvailableAccounting => "Resident Available Accounting",
            Self::CommitAccounting => "Commit Accounting",
        }
    }

    /// The manifest's `uri` (unique, stable).
    #[must_use]
    pub const fn uri(self) -> &'static str {
        match self {
            Self::BalloonMib => "VmBalloon.BalloonMB",
            Self::HostTargetMib => "VmBalloon.HostTargetMB",
            Self::SafeCeilingMib => "VmBalloon.SafeCeilingMB",
            Self::ClampReason => "VmBalloon.ClampReason",
            Self::ReserveMib => "VmBalloon.ReserveMB",
            Self::ResidentAvailableMib => "VmBalloon.ResidentAvailableMB",
            Self::CommitHeadroomMib => "VmBalloon.CommitHeadroomMB",
            Self::FramesLocked => "VmBalloon.FramesLocked",
            Self::FramesUnlocked => "VmBalloon.FramesUnlocked",
            Self::RefusedFrames => "VmBalloon.RefusedFrames",
            Self::HostResets => "VmBalloon.HostResets",
            Self::AllocationFailures => "VmBalloon.AllocationFailures",
            Self::PressureDeflates => "VmBalloon.PressureDeflates",
            Self::BackdoorCalls => "VmBalloon.BackdoorCalls",
            Self::ResidentAvailableAccounting => "VmBalloon.ResidentAvailableAccounting",
            Self::CommitAccounting => "VmBalloon.CommitAccounting",
        }
    }

    /// The PCW type.
    #[must_use]
    pub const fn pcw_type(self) -> PcwType {
        match self {
            Self::FramesLocked | Self::FramesUnlocked => PcwType::BulkCount,
            _ => PcwType::LargeRawcount,
        }
    }
}

/// The documented number of a clamp reason: 0 when nothing held the balloon (it follows
/// the host), otherwise [`ClampReason::index`] + 1: 1 host-target, 2 registry-max,
/// 3 resident-available, 4 commit, 5 low-memory, 6 allocation-failed, 7 available,
/// 8 pressure-hold.
#[must_use]
pub fn clamp_reason_number(reason: Option<ClampReason>) -> u64 {
    reason.map_or(0, |r| {
        u64::try_from(r.index())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    })
}

/// The documented number of an accounting verdict: 0 unknown (not measured yet),
/// 1 charged, 2 not charged.
#[must_use]
pub const fn charge_number(charge: Charge) -> u64 {
    match charge {
        Charge::Unknown => 0,
        Charge::Charged => 1,
        Charge::NotCharged => 2,
    }
}

/// The set's values, in [`PerfCounter::ALL`] order: what the data block holds.
///
/// A fold over the ticks: values the last report does not carry (no snapshot, no ceiling,
/// no calibration) keep what was last measured, and [`PerfCounter::BackdoorCalls`] adds up
/// every report's calls. Everything else comes from the last report and the engine's
/// cumulative [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CounterData {
    values: [u64; COUNT],
}

/// `4k + 512 * 2m` frames of a per-size counter pair.
fn frames_of(stats: &Stats, small: Counter, large: Counter) -> u64 {
    let large_frames = PageSize::Large.frames().get();
    stats
        .get(small)
        .saturating_add(stats.get(large).saturating_mul(large_frames))
}

impl CounterData {
    /// All zero (before the first tick).
    #[must_use]
    pub const fn new() -> Self {
        Self { values: [0; COUNT] }
    }

    /// The value of `counter`.
    #[must_use]
    pub fn get(&self, counter: PerfCounter) -> u64 {
        self.values.get(counter.index()).copied().unwrap_or(0)
    }

    /// Every value, in [`PerfCounter::ALL`] order.
    #[must_use]
    pub const fn values(&self) -> [u64; COUNT] {
        self.values
    }

    /// `(name, value)` of every counter, for printing.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        PerfCounter::ALL
            .into_iter()
            .map(|c| (c.name(), self.get(c)))
    }

    fn set(&mut self, counter: PerfCounter, value: u64) {
        if let Some(v) = self.values.get_mut(counter.index()) {
            *v = value;
        }
    }

    fn set_mib(&mut self, counter: PerfCounter, frames: Frames) {
        self.set(counter, frames.mib_floor());
    }

    /// Folds one tick into the set: `report` is the tick's, `stats` the engine's after it,
    /// `config` the settings it ran with (for the reserve).
    pub fn update(&mut self, report: &TickReport, stats: &Stats, config: &Config) {
        use PerfCounter as P;
        self.set_mib(P::BalloonMib, report.balloon);
        self.set_mib(P::HostTargetMib, report.target);
        if let Some(ceiling) = report.ceiling {
            self.set_mib(P::SafeCeilingMib, ceiling.value);
        }
        self.set(P::ClampReason, clamp_reason_number(report.reason));
        if let Some(snap) = &report.snapshot {
            self.set_mib(P::ReserveMib, policy::reserve(config, snap.total));
            if let Some(ra) = snap.resident_available {
                self.set_mib(P::ResidentAvailableMib, ra);
            }
            if let (Some(limit), Some(committed)) = (snap.commit_limit, snap.committed) {
                self.set_mib(P::CommitHeadroomMib, limit.saturating_sub(committed));
            }
        }
        self.set(
            P::FramesLocked,
            frames_of(stats, Counter::Inflated4k, Counter::Inflated2m),
        );
        self.set(
            P::FramesUnlocked,
            frames_of(stats, Counter::Deflated4k, Counter::Deflated2m),
        );
        self.set(
            P::RefusedFrames,
            frames_of(stats, Counter::Refused4k, Counter::Refused2m),
        );
        self.set(P::HostResets, stats.get(Counter::HostResets));
        self.set(
            P::AllocationFailures,
            stats
                .get(Counter::AllocFail4k)
                .saturating_add(stats.get(Counter::AllocFail2m)),
        );
        self.set(
            P::PressureDeflates,
            stats
                .get(Counter::LowMemoryDeflates)
                .saturating_add(stats.get(Counter::GuardDeflates)),
        );
        let calls = self
            .get(P::BackdoorCalls)
            .saturating_add(u64::from(report.calls));
        self.set(P::BackdoorCalls, calls);
        if let Some(cal) = report.calibrated {
            self.set(
                P::ResidentAvailableAccounting,
                charge_number(cal.resident_available),
            );
            self.set(P::CommitAccounting, charge_number(cal.commit));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmballoon_core::engine::Calibration;
    use vmballoon_core::platform::MemorySnapshot;
    use vmballoon_core::policy::Ceiling;

    fn mib(n: u64) -> Frames {
        Frames::from_mib(n)
    }

    fn snapshot() -> MemorySnapshot {
        MemorySnapshot {
            total: mib(4096),
            resident_available: Some(mib(1500)),
            commit_limit: Some(mib(6000)),
            committed: Some(mib(2500)),
            ..MemorySnapshot::default()
        }
    }

    #[test]
    fn layout_is_dense_unique_and_fits_pcw_descriptors() {
        for (i, c) in PerfCounter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(usize::from(c.id()), i);
            assert_eq!(usize::from(c.offset()), i * VALUE_BYTES);
        }
        let mut names: Vec<_> = PerfCounter::ALL.iter().map(|c| c.name()).collect();
        let mut uris: Vec<_> = PerfCounter::ALL.iter().map(|c| c.uri()).collect();
        names.sort_unstable();
        names.dedup();
        uris.sort_unstable();
        uris.dedup();
        assert_eq!(names.len(), COUNT);
        assert_eq!(uris.len(), COUNT);
        assert_eq!(core::mem::size_of::<CounterData>(), BLOCK_BYTES);
        assert!(u16::try_from(BLOCK_BYTES).is_ok());
    }

    #[test]
    fn only_the_frame_totals_are_rates() {
        let rates: Vec<_> = PerfCounter::ALL
            .into_iter()
            .filter(|c| c.pcw_type() == PcwType::BulkCount)
            .collect();
        assert_eq!(
            rates,
            [PerfCounter::FramesLocked, PerfCounter::FramesUnlocked]
        );
        assert!(rates.iter().all(|c| c.name().ends_with("/sec")));
    }

    #[test]
    fn clamp_reason_numbers_are_documented_and_distinct() {
        assert_eq!(clamp_reason_number(None), 0);
        let numbers: Vec<_> = ClampReason::ALL
            .into_iter()
            .map(|r| clamp_reason_number(Some(r)))
            .collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(clamp_reason_number(Some(ClampReason::Commit)), 4);
        assert_eq!(clamp_reason_number(Some(ClampReason::PressureHold)), 8);
    }

    #[test]
    fn one_tick_maps_every_counter() {
        let mut stats = Stats::new();
        stats.add(Counter::Inflated4k, 10);
        stats.add(Counter::Inflated2m, 2);
        stats.add(Counter::Deflated4k, 3);
        stats.add(Counter::Deflated2m, 1);
        stats.add(Counter::Refused4k, 5);
        stats.add(Counter::Refused2m, 1);
        stats.add(Counter::HostResets, 2);
        stats.add(Counter::AllocFail4k, 4);
        stats.add(Counter::AllocFail2m, 1);
        stats.add(Counter::LowMemoryDeflates, 1);
        stats.add(Counter::GuardDeflates, 2);
        let report = TickReport {
            balloon: mib(1024),
            target: mib(2048),
            ceiling: Some(Ceiling {
                value: mib(1200),
                reason: ClampReason::ResidentAvailable,
            }),
            reason: Some(ClampReason::ResidentAvailable),
            snapshot: Some(snapshot()),
            calls: 7,
            calibrated: Some(Calibration {
                resident_available: Charge::Charged,
                commit: Charge::NotCharged,
                ..Calibration::default()
            }),
            ..TickReport::default()
        };
        let config = Config {
            reserve: Some(mib(300)),
            ..Config::default()
        };
        let mut data = CounterData::new();
        data.update(&report, &stats, &config);
        use PerfCounter as P;
        let expected = [
            (P::BalloonMib, 1024),
            (P::HostTargetMib, 2048),
            (P::SafeCeilingMib, 1200),
            (P::ClampReason, 3),
            (P::ReserveMib, 300),
            (P::ResidentAvailableMib, 1500),
            (P::CommitHeadroomMib, 3500),
            (P::FramesLocked, 10 + 2 * 512),
            (P::FramesUnlocked, 3 + 512),
            (P::RefusedFrames, 5 + 512),
            (P::HostResets, 2),
            (P::AllocationFailures, 5),
            (P::PressureDeflates, 3),
            (P::BackdoorCalls, 7),
            (P::ResidentAvailableAccounting, 1),
            (P::CommitAccounting, 2),
        ];
        assert_eq!(expected.len(), COUNT);
        for (c, v) in expected {
            assert_eq!(data.get(c), v, "{}", c.name());
        }
    }

    #[test]
    fn automatic_reserve_follows_the_guest_size() {
        let report = TickReport {
            snapshot: Some(snapshot()),
            ..TickReport::default()
        };
        let mut data = CounterData::new();
        data.update(&report, &Stats::new(), &Config::default());
        assert_eq!(
            data.get(PerfCounter::ReserveMib),
            policy::auto_reserve(mib(4096)).mib_floor()
        );
    }

    #[test]
    fn unmeasured_values_keep_the_last_measurement_and_calls_add_up() {
        let config = Config::default();
        let stats = Stats::new();
        let first = TickReport {
            ceiling: Some(Ceiling {
                value: mib(900),
                reason: ClampReason::Commit,
            }),
            reason: Some(ClampReason::Commit),
            snapshot: Some(snapshot()),
            calls: 4,
            calibrated: Some(Calibration {
                resident_available: Charge::NotCharged,
                commit: Charge::Charged,
                ..Calibration::default()
            }),
            ..TickReport::default()
        };
        // A tick without a snapshot, ceiling or calibration (the host did not answer).
        let second = TickReport {
            calls: 1,
            ..TickReport::default()
        };
        let mut data = CounterData::new();
        data.update(&first, &stats, &config);
        let before = data;
        data.update(&second, &stats, &config);
        use PerfCounter as P;
        for c in [
            P::SafeCeilingMib,
            P::ReserveMib,
            P::ResidentAvailableMib,
            P::CommitHeadroomMib,
            P::ResidentAvailableAccounting,
            P::CommitAccounting,
        ] {
            assert_eq!(data.get(c), before.get(c), "{}", c.name());
        }
        assert_eq!(data.get(P::BackdoorCalls), 5);
        // The clamp reason is the last tick's, not kept: nothing held the balloon.
        assert_eq!(data.get(P::ClampReason), 0);
    }

    #[test]
    fn commit_headroom_is_zero_past_the_limit_and_counts_saturate() {
        let snap = MemorySnapshot {
            commit_limit: Some(mib(1000)),
            committed: Some(mib(1200)),
            ..snapshot()
        };
        let report = TickReport {
            snapshot: Some(snap),
            calls: u32::MAX,
            ..TickReport::default()
        };
        let mut stats = Stats::new();
        stats.add(Counter::Inflated2m, u64::MAX);
        let mut data = CounterData {
            values: [u64::MAX; COUNT],
        };
        data.update(&report, &stats, &Config::default());
        assert_eq!(data.get(PerfCounter::CommitHeadroomMib), 0);
        assert_eq!(data.get(PerfCounter::FramesLocked), u64::MAX);
        assert_eq!(data.get(PerfCounter::BackdoorCalls), u64::MAX);
    }

    #[test]
    fn iter_names_every_value_in_order() {
        let data = CounterData::new();
        let names: Vec<_> = data.iter().map(|(n, _)| n).collect();
        let expected: Vec<_> = PerfCounter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names, expected);
    }
}
