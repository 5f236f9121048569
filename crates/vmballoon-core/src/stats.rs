//! Enum-indexed counters with name tables: adding a counter is one enum variant and one
//! name, and printing them all is one loop (the vmw_balloon debugfs habit).

use crate::protocol::{Command, Status};

/// Calls by command and by the status the host returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallStats {
    counts: [[u64; Status::COUNT]; Command::COUNT],
}

impl Default for CallStats {
    fn default() -> Self {
        Self::new()
    }
}

impl CallStats {
    /// All zero.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            counts: [[0; Status::COUNT]; Command::COUNT],
        }
    }

    /// Counts one call of `command` answered with `status`.
    pub fn record(&mut self, command: Command, status: Status) {
        if let Some(c) = self
            .counts
            .get_mut(command.index())
            .and_then(|row| row.get_mut(status.index()))
        {
            *c = c.saturating_add(1);
        }
    }

    /// Calls of `command` answered with `status` (all undefined statuses count together).
    #[must_use]
    pub fn count(&self, command: Command, status: Status) -> u64 {
        self.counts
            .get(command.index())
            .and_then(|row| row.get(status.index()))
            .copied()
            .unwrap_or(0)
    }

    /// Calls of `command`, whatever the answer.
    #[must_use]
    pub fn calls(&self, command: Command) -> u64 {
        self.counts
            .get(command.index())
            .map_or(0, |row| row.iter().fold(0u64, |a, &b| a.saturating_add(b)))
    }

    /// Calls of `command` that did not succeed.
    #[must_use]
    pub fn failures(&self, command: Command) -> u64 {
        self.calls(command)
            .saturating_sub(self.count(command, Status::Success))
            .saturating_sub(self.count(command, Status::SuccessWithCapabilities))
    }

    /// Every backdoor call made.
    #[must_use]
    pub fn total(&self) -> u64 {
        Command::ALL
            .iter()
            .fold(0u64, |a, &c| a.saturating_add(self.calls(c)))
    }

    /// `(command, status, count)` for every non-zero cell, for traces and reports.
    pub fn iter(&self) -> impl Iterator<Item = (Command, Status, u64)> + '_ {
        Command::ALL.into_iter().flat_map(move |c| {
            Status::ALL
                .into_iter()
                .map(move |s| (c, s, self.count(c, s)))
                .filter(|&(_, _, n)| n != 0)
        })
    }
}

/// Engine counters (the `Stats` ETW event and the simulator's report print them all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Ticks run.
    Ticks,
    /// 4 KiB pages locked into the balloon.
    Inflated4k,
    /// 2 MiB pages locked into the balloon.
    Inflated2m,
    /// 4 KiB pages unlocked and returned to the OS.
    Deflated4k,
    /// 2 MiB pages unlocked and returned to the OS.
    Deflated2m,
    /// 4 KiB pages the host refused.
    Refused4k,
    /// 2 MiB pages the host refused.
    Refused2m,
    /// Refused 4 KiB pages held back from the OS until the end of the cycle (inside their
    /// unit, which is parked).
    RefusedHeld,
    /// Pages whose UNLOCK failed (kept in the balloon).
    UnlockFailures,
    /// 4 KiB allocations that returned nothing.
    AllocFail4k,
    /// Whole-block allocations that returned nothing (then scattered 4 KiB pages are used).
    AllocFail2m,
    /// Allocations that returned fewer pages than asked.
    ShortAllocations,
    /// Sessions started (START + GUEST_ID completed).
    SessionsStarted,
    /// START calls that failed (no balloon host, or a host error).
    StartFailures,
    /// RESETs received from the host.
    HostResets,
    /// Frames freed without UNLOCK (reset, shutdown).
    FramesPopped,
    /// Deflates triggered by `LowMemoryCondition`.
    LowMemoryDeflates,
    /// Deflates that restored a guest-side bound (resident available, commit, registry).
    GuardDeflates,
    /// Times the engine backed off the host (BUSY or a host error).
    HostBackoffs,
    /// Ticks cut short by the per-tick work bound (continued at once).
    TicksContinued,
    /// Units allocated as whole 2 MiB blocks.
    BlockUnits,
    /// Units allocated as scattered 4 KiB pages (no whole block was free).
    ScatteredUnits,
    /// Compactions started (the guest freed memory while the balloon held scattered pages).
    Compactions,
    /// Frames compaction moved out of the zone it clears.
    CompactedFrames,
    /// Units parked because the host held only part of them.
    UnitsParked,
    /// Deflates the guest caused that armed the re-inflation hold-off.
    PressureHolds,
    /// Batches planned on a kept memory snapshot instead of a fresh one.
    SnapshotsReused,
    /// Accounting measurements concluded.
    Calibrations,
}

impl Counter {
    /// Number of counters.
    pub const COUNT: usize = 28;

    /// Every counter, in table order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::Ticks,
        Self::Inflated4k,
        Self::Inflated2m,
        Self::Deflated4k,
        Self::Deflated2m,
        Self::Refused4k,
        Self::Refused2m,
        Self::RefusedHeld,
        Self::UnlockFailures,
        Self::AllocFail4k,
        Self::AllocFail2m,
        Self::ShortAllocations,
        Self::SessionsStarted,
        Self::StartFailures,
        Self::HostResets,
        Self::FramesPopped,
        Self::LowMemoryDeflates,
        Self::GuardDeflates,
        Self::HostBackoffs,
        Self::TicksContinued,
        Self::BlockUnits,
        Self::ScatteredUnits,
        Self::Compactions,
        Self::CompactedFrames,
        Self::UnitsParked,
        Self::PressureHolds,
        Self::SnapshotsReused,
        Self::Calibrations,
    ];

    /// The counter's name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ticks => "ticks",
            Self::Inflated4k => "inflated-4k",
            Self::Inflated2m => "inflated-2m",
            Self::Deflated4k => "deflated-4k",
            Self::Deflated2m => "deflated-2m",
            Self::Refused4k => "refused-4k",
            Self::Refused2m => "refused-2m",
            Self::RefusedHeld => "refused-held",
            Self::UnlockFailures => "unlock-failures",
            Self::AllocFail4k => "alloc-fail-4k",
            Self::AllocFail2m => "alloc-fail-2m",
            Self::ShortAllocations => "short-allocations",
            Self::SessionsStarted => "sessions-started",
            Self::StartFailures => "start-failures",
            Self::HostResets => "host-resets",
            Self::FramesPopped => "frames-popped",
            Self::LowMemoryDeflates => "low-memory-deflates",
            Self::GuardDeflates => "guard-deflates",
            Self::HostBackoffs => "host-backoffs",
            Self::TicksContinued => "ticks-continued",
            Self::BlockUnits => "block-units",
            Self::ScatteredUnits => "scattered-units",
            Self::Compactions => "compactions",
            Self::CompactedFrames => "compacted-frames",
            Self::UnitsParked => "units-parked",
            Self::PressureHolds => "pressure-holds",
            Self::SnapshotsReused => "snapshots-reused",
            Self::Calibrations => "calibrations",
        }
    }

    /// Index into enum-indexed tables.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The per-size counter of a family (`Inflated4k` / `Inflated2m` and so on).
    #[must_use]
    pub const fn for_size(small: Self, size: crate::units::PageSize) -> Self {
        match (small, size) {
            (Self::Inflated4k, crate::units::PageSize::Large) => Self::Inflated2m,
            (Self::Deflated4k, crate::units::PageSize::Large) => Self::Deflated2m,
            (Self::Refused4k, crate::units::PageSize::Large) => Self::Refused2m,
            (Self::AllocFail4k, crate::units::PageSize::Large) => Self::AllocFail2m,
            (c, _) => c,
        }
    }
}

/// The engine's statistics: counters, clamps by reason, and calls by command and status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    counters: [u64; Counter::COUNT],
    clamps: [u64; crate::policy::ClampReason::COUNT],
}

impl Stats {
    /// All zero.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            counters: [0; Counter::COUNT],
            clamps: [0; crate::policy::ClampReason::COUNT],
        }
    }

    /// Adds `n` to `counter`.
    pub fn add(&mut self, counter: Counter, n: u64) {
        if let Some(c) = self.counters.get_mut(counter.index()) {
            *c = c.saturating_add(n);
        }
    }

    /// The value of `counter`.
    #[must_use]
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters.get(counter.index()).copied().unwrap_or(0)
    }

    /// Counts one tick that ended clamped (or stopped) by `reason`.
    pub fn clamp(&mut self, reason: crate::policy::ClampReason) {
        if let Some(c) = self.clamps.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
    }

    /// Ticks that ended clamped by `reason`.
    #[must_use]
    pub fn clamps(&self, reason: crate::policy::ClampReason) -> u64 {
        self.clamps.get(reason.index()).copied().unwrap_or(0)
    }

    /// `(name, value)` of every counter, then `clamp-<reason>` for every reason.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Counter::ALL
            .into_iter()
            .map(|c| (c.name(), self.get(c)))
            .chain(
                crate::policy::ClampReason::ALL
                    .into_iter()
                    .map(|r| (r.name(), self.clamps(r))),
            )
    }
}
