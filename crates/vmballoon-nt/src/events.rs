//! What the driver tells ETW, as plain data: the [`Event`]s and the pure decisions that
//! produce them from an engine [`TickReport`], a validated registry read, and the
//! driver's lifecycle, and the provider they are written to ([`PROVIDER_NAME`],
//! [`PROVIDER_GUID`], [`keyword`]). The glue's `src/etw.rs` turns each [`Event`] into one
//! TraceLogging event; everything here is portable and unit-tested on Linux.
//!
//! Per-tick events are de-duplicated by a [`Tracker`] so that a steady state (a clamp that
//! holds, a target that does not move, a registry that is re-read every 10 s) does not
//! write one event per poll.

use vmballoon_core::config::{ConfigIssue, Problem, Validated};
use vmballoon_core::error::Error;
use vmballoon_core::policy::{Ceiling, ClampReason};
use vmballoon_core::protocol::{GUEST_TYPE, LockMode, Session};
use vmballoon_core::stats::{Counter, Stats};
use vmballoon_core::units::{Duration, Frames, Instant};

use vmballoon_core::engine::TickReport;

use crate::memory::{Diagnostic, InfoClass, Layout};
use crate::schedule::Condition;

/// How often the periodic `Stats` event is written.
pub const STATS_PERIOD: Duration = Duration::from_secs(60);

/// Why `DriverEntry` refused to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// CPUID does not report the VMware hypervisor.
    NotVmware,
    /// The VMware backdoor did not answer.
    BackdoorAbsent,
    /// VMware's own balloon driver (`vmmemctl.sys`) is loaded: two balloon drivers would
    /// fight over the one host session.
    VmmemctlLoaded,
    /// The loaded-module list could not be read, or the load-image watch for a later
    /// `vmmemctl.sys` could not be registered, so whether `vmmemctl.sys` is (or will be)
    /// loaded is unknown: refusing is the safe side.
    VmmemctlUnknown,
    /// A kernel resource (pool, thread, event, the batch page) could not be obtained.
    Resources,
}

impl Refusal {
    /// Name used in the `LoadRefused` event.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotVmware => "not-vmware",
            Self::BackdoorAbsent => "backdoor-absent",
            Self::VmmemctlLoaded => "vmmemctl-loaded",
            Self::VmmemctlUnknown => "vmmemctl-unknown",
            Self::Resources => "resources",
        }
    }
}

/// One ETW event with its field values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "`Stats` carries every counter by value so an event is a plain copy; events live \
              in the driver context's fixed `Events` buffer, never on a kernel stack"
)]
pub enum Event {
    /// The driver loaded on a VMware guest (backdoor version and product).
    Loaded {
        /// GETVERSION's EAX.
        backdoor_version: u32,
        /// GETVERSION's product name.
        product: &'static str,
    },
    /// `DriverEntry` refused to start.
    LoadRefused {
        /// Why.
        reason: Refusal,
        /// The NTSTATUS returned.
        status: i32,
    },
    /// A host session started (START + GUEST_ID).
    Started {
        /// Capabilities granted.
        capabilities: u32,
        /// Batched (`true`) or single-page commands.
        batched: bool,
        /// 2 MiB pages allowed.
        large_pages: bool,
        /// The guest type sent in GUEST_ID.
        guest_type: u32,
    },
    /// The balloon was emptied and the session closed (unload, or before sleep/hibernate).
    Stopped {
        /// Frames returned to the OS.
        freed: Frames,
        /// `unload` or `power`.
        cause: &'static str,
    },
    /// The driver stood down for good while running: START(0), every page back to the OS,
    /// and no ballooning until unload.
    StoodDown {
        /// Why ([`StandDown::name`]).
        reason: &'static str,
        /// Frames returned to the OS.
        freed: Frames,
    },
    /// The system is back in S0 after a power transition emptied the balloon: ballooning
    /// resumes (a new host session at the next tick).
    PowerResumed {
        /// How long the balloon stayed empty, in milliseconds.
        empty_ms: u64,
    },
    /// A Windows memory signal changed state (as the engine's snapshot saw it).
    MemorySignal {
        /// [`Condition::name`].
        condition: &'static str,
        /// Whether it is now signalled.
        signalled: bool,
    },
    /// Once at start: the OS build and the `ZwQuerySystemInformation` layouts in use, by
    /// their size (`ReturnLength`; 0 = no field of that class is used).
    MemoryLayout {
        /// `RTL_OSVERSIONINFOW.dwMajorVersion`.
        os_major: u32,
        /// `dwMinorVersion`.
        os_minor: u32,
        /// `dwBuildNumber`.
        os_build: u32,
        /// `SYSTEM_MEMORY_USAGE_INFORMATION` (class 182).
        memory_usage_size: u32,
        /// `SYSTEM_PERFORMANCE_INFORMATION` (class 2).
        performance_size: u32,
        /// `SYSTEM_BASIC_INFORMATION` (class 0).
        basic_size: u32,
    },
    /// The registry values in effect (first read, and whenever they change).
    ConfigLoaded {
        /// `MaxBalloonMB` (0 = none).
        max_balloon_mb: u64,
        /// `MaxBalloonPercent` (0 = none).
        max_balloon_percent: u32,
        /// `ReserveMB` (0 = automatic).
        reserve_mb: u64,
        /// `PollIntervalMs`.
        poll_interval_ms: u64,
        /// `UseLargePages`.
        use_large_pages: bool,
        /// `DeflateOnLowMemory`.
        deflate_on_low_memory: bool,
    },
    /// The registry could not be read (the key could not be opened, or a value read failed
    /// other than as absent or of the wrong type): the settings in effect are kept.
    ConfigUnreadable {
        /// The NTSTATUS of the failed call.
        status: i32,
    },
    /// A registry value was clamped or replaced by its default.
    ConfigRejected {
        /// The value name.
        param: &'static str,
        /// `out-of-range` or `wrong-type`.
        problem: &'static str,
        /// The value read (0 for a wrong type).
        value: u32,
        /// The value used instead.
        used: u32,
    },
    /// The host's target moved.
    TargetChanged {
        /// The new target.
        target: Frames,
        /// The previous one.
        previous: Frames,
    },
    /// Pages were given to the host.
    Inflated {
        /// Frames locked this tick.
        frames: Frames,
        /// Balloon size after.
        balloon: Frames,
    },
    /// Compaction moved scattered 4 KiB pages out of the zone it clears, to make its blocks
    /// whole for the guest (`docs/architecture.md`, "Compaction").
    Compacted {
        /// Frames given back in the zone and taken again below it this tick.
        frames: Frames,
        /// Balloon size after.
        balloon: Frames,
    },
    /// Pages were taken back from the host (not for low memory).
    Deflated {
        /// Frames unlocked this tick.
        frames: Frames,
        /// Balloon size after.
        balloon: Frames,
        /// The bound that was restored, or `host-target`.
        reason: &'static str,
    },
    /// A guest-side bound holds the balloon below the host's target (written when the
    /// binding bound changes).
    CeilingClamped {
        /// The bound's name (`registry-max`, `resident-available`, `commit`, ...).
        reason: &'static str,
        /// The ceiling.
        ceiling: Frames,
        /// The host target.
        target: Frames,
    },
    /// The host refused pages.
    Refused {
        /// Frames refused this tick.
        frames: Frames,
    },
    /// The host reset the session; every ballooned page went back to the OS.
    HostReset {
        /// Frames returned without UNLOCK.
        popped: Frames,
    },
    /// `LowMemoryCondition` made the balloon deflate.
    LowMemoryDeflate {
        /// Frames returned this tick.
        frames: Frames,
        /// Balloon size after.
        balloon: Frames,
    },
    /// Page allocations came back empty (the OS had nothing to give without waiting).
    AllocationFailed {
        /// Empty allocations this tick.
        failures: u32,
    },
    /// A tick ended early on an error.
    TickError {
        /// The error kind.
        kind: &'static str,
        /// The command involved (`-` if none).
        command: &'static str,
        /// A status or value, when the kind has one.
        value: u64,
    },
    /// A memory-information reply was degraded (see [`crate::memory`]).
    MemoryInfoDegraded {
        /// The information class.
        class: &'static str,
        /// What was wrong.
        kind: &'static str,
        /// The raw value involved (status, length, count).
        value: i64,
    },
    /// A measurement of how Windows charges the balloon's pages closed
    /// (`docs/architecture.md`, "Accounting calibration"): written after each tick in which
    /// a sample closed, with that tick's last sample and the verdicts so far.
    AccountingCalibrated {
        /// Resident available memory: `unknown` (still measuring), `charged`, `not-charged`.
        resident_available: &'static str,
        /// Commit, the same way.
        commit: &'static str,
        /// Frames the balloon grew by in the sample.
        frames: Frames,
        /// How far resident available memory fell in the sample (`u64::MAX` unknown).
        resident_available_drop: u64,
        /// How far the commit charge rose in the sample (`u64::MAX` unknown).
        commit_rise: u64,
        /// Samples taken so far.
        tries: u8,
    },
    /// Periodic statistics.
    Stats {
        /// Balloon size.
        balloon: Frames,
        /// Host target.
        target: Frames,
        /// The ceiling (the target when unknown).
        ceiling: Frames,
        /// Resident available (`u64::MAX` when unknown).
        resident_available: u64,
        /// The engine counters, in [`Counter::ALL`] order ([`COUNTER_NAMES`]).
        counters: [u64; Counter::COUNT],
    },
}

/// The names of [`Event::Stats`]' `counters`, comma-separated, in [`Counter::ALL`] order.
pub const COUNTER_NAMES: &str = "ticks,inflated-4k,inflated-2m,deflated-4k,deflated-2m,\
refused-4k,refused-2m,refused-held,unlock-failures,alloc-fail-4k,alloc-fail-2m,\
short-allocations,sessions-started,start-failures,host-resets,frames-popped,\
low-memory-deflates,guard-deflates,host-backoffs,ticks-continued,block-units,scattered-units,\
compactions,compacted-frames,units-parked,pressure-holds,snapshots-reused,calibrations";

/// The provider name (`docs/architecture.md`, "ETW"): enable it in WPR as
/// `*VmBalloon.Driver`. The glue's `define_provider!` spells the same literal (a macro
/// argument cannot be a constant); `tests/etw.rs` holds the two equal.
///
/// The name carries a company-style prefix, as TraceLogging provider names should
/// (`Company.Component`), so it cannot collide with another vendor's `VmBalloon`.
pub const PROVIDER_NAME: &str = "VmBalloon.Driver";

/// The provider GUID, derived from [`PROVIDER_NAME`] EventSource-style
/// (`Guid::from_name`, checked by `tests/etw.rs`): `logman` and `vmballoon.wprp` name it.
pub const PROVIDER_GUID: &str = "e92fcb9e-d7af-5d24-0966-82f058c99cd3";

/// Every event name the provider writes: the [`Event::name`] of each variant.
pub const EVENT_NAMES: [&str; 24] = [
    "Loaded",
    "LoadRefused",
    "Started",
    "Stopped",
    "StoodDown",
    "PowerResumed",
    "MemorySignal",
    "MemoryLayout",
    "ConfigLoaded",
    "ConfigUnreadable",
    "ConfigRejected",
    "TargetChanged",
    "Inflated",
    "Compacted",
    "Deflated",
    "CeilingClamped",
    "Refused",
    "HostReset",
    "LowMemoryDeflate",
    "AllocationFailed",
    "TickError",
    "MemoryInfoDegraded",
    "AccountingCalibrated",
    "Stats",
];

/// Keyword bits of the provider, for filtering a session to a category.
pub mod keyword {
    /// Load, refusal, session start and stop, power.
    pub const LIFECYCLE: u64 = 0x1;
    /// Registry values.
    pub const CONFIG: u64 = 0x2;
    /// Inflate, deflate, target, clamps, refusals, resets.
    pub const BALLOON: u64 = 0x4;
    /// Memory-information problems.
    pub const MEMORY: u64 = 0x8;
    /// The periodic statistics.
    pub const STATS: u64 = 0x10;
}

impl Event {
    /// The TraceLogging event name.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Loaded { .. } => "Loaded",
            Self::LoadRefused { .. } => "LoadRefused",
            Self::Started { .. } => "Started",
            Self::Stopped { .. } => "Stopped",
            Self::StoodDown { .. } => "StoodDown",
            Self::PowerResumed { .. } => "PowerResumed",
            Self::MemorySignal { .. } => "MemorySignal",
            Self::MemoryLayout { .. } => "MemoryLayout",
            Self::ConfigLoaded { .. } => "ConfigLoaded",
            Self::ConfigUnreadable { .. } => "ConfigUnreadable",
            Self::ConfigRejected { .. } => "ConfigRejected",
            Self::TargetChanged { .. } => "TargetChanged",
            Self::Inflated { .. } => "Inflated",
            Self::Compacted { .. } => "Compacted",
            Self::Deflated { .. } => "Deflated",
            Self::CeilingClamped { .. } => "CeilingClamped",
            Self::Refused { .. } => "Refused",
            Self::HostReset { .. } => "HostReset",
            Self::LowMemoryDeflate { .. } => "LowMemoryDeflate",
            Self::AllocationFailed { .. } => "AllocationFailed",
            Self::TickError { .. } => "TickError",
            Self::MemoryInfoDegraded { .. } => "MemoryInfoDegraded",
            Self::AccountingCalibrated { .. } => "AccountingCalibrated",
            Self::Stats { .. } => "Stats",
        }
    }
}

/// Why the driver stood down while running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandDown {
    /// VMware's `vmmemctl.sys` loaded after vmballoon: two balloon drivers would reset each
    /// other's host session, so vmballoon gives everything back and stays idle.
    VmmemctlLoaded,
}

impl StandDown {
    /// Name used in the `StoodDown` event (the same words as the matching `LoadRefused`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::VmmemctlLoaded => Refusal::VmmemctlLoaded.name(),
        }
    }
}

/// The OS version `RtlGetVersion` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OsVersion {
    /// `dwMajorVersion`.
    pub major: u32,
    /// `dwMinorVersion`.
    pub minor: u32,
    /// `dwBuildNumber`.
    pub build: u32,
}

/// The once-at-start `MemoryLayout` event: the OS build and the reply sizes the memory
/// snapshot uses (`docs/windows-memory.md` §3.2: the layouts are not documented, so a trace of
/// a misbehaving guest must say which ones were trusted, and on which build).
#[must_use]
pub fn layout_event(os: OsVersion, layout: &Layout) -> Event {
    let size = |class| layout.size(class).unwrap_or(0);
    Event::MemoryLayout {
        os_major: os.major,
        os_minor: os.minor,
        os_build: os.build,
        memory_usage_size: size(InfoClass::MemoryUsage),
        performance_size: size(InfoClass::Performance),
        basic_size: size(InfoClass::Basic),
    }
}

/// The started-session event.
#[must_use]
pub fn started(session: &Session) -> Event {
    Event::Started {
        capabilities: session.capabilities.bits(),
        batched: session.mode == LockMode::Batched,
        large_pages: session.large_pages,
        guest_type: GUEST_TYPE as u32,
    }
}

/// The `TickError` fields of an engine error.
#[must_use]
pub fn error_event(error: Error) -> Event {
    let (kind, command, value) = match error {
        Error::Reset { command } => ("reset", command.name(), 0),
        Error::Busy { command } => ("busy", command.name(), 0),
        Error::Host { command, status } => ("host", command.name(), u64::from(status.raw())),
        Error::UnknownStatus { command, raw } => ("unknown-status", command.name(), raw.into()),
        Error::NotStarted { command } => ("not-started", command.name(), 0),
        Error::NotGranted { command } => ("not-granted", command.name(), 0),
        Error::TooWide { command, value } => ("too-wide", command.name(), value),
        Error::ReplyOutOfRange { command, value } => ("reply-out-of-range", command.name(), value),
        Error::NoBatchPage => ("no-batch-page", "-", 0),
        Error::MemoryUnavailable => ("memory-unavailable", "-", 0),
        _ => ("other", "-", 0),
    };
    Event::TickError {
        kind,
        command,
        value,
    }
}

/// The `MemoryInfoDegraded` event of a [`Diagnostic`].
#[must_use]
pub fn diagnostic_event(d: Diagnostic) -> Event {
    let (class, kind, value): (InfoClass, _, i64) = match d {
        Diagnostic::QueryFailed { class, status } => (class, "query-failed", status.into()),
        Diagnostic::UnknownSize {
            class,
            return_length,
        } => (class, "unknown-size", return_length.into()),
        Diagnostic::ShortBuffer {
            class,
            return_length,
            ..
        } => (class, "short-buffer", return_length.into()),
        Diagnostic::NegativeResidentAvailable { class, raw } => {
            (class, "negative-resident-available", raw)
        }
        Diagnostic::UnexpectedPageSize { page_size } => {
            (InfoClass::Basic, "unexpected-page-size", page_size.into())
        }
    };
    Event::MemoryInfoDegraded {
        class: class.name(),
        kind,
        value,
    }
}

/// At most this many events come out of one decision.
pub const MAX_EVENTS: usize = 14;

/// A short list of events (no heap in the kernel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    items: [Option<Event>; MAX_EVENTS],
    len: usize,
}

impl Events {
    /// Appends `e`; past [`MAX_EVENTS`] the event is dropped (never happens: each decision
    /// writes fewer, which the tests check).
    pub fn push(&mut self, e: Event) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(e);
            self.len = self.len.saturating_add(1);
        }
    }

    /// The events, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.items.iter().flatten()
    }

    /// How many.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the list in place (the driver keeps one `Events` in its pool block and
    /// refills it: at 2.4 KiB it must never live on a kernel stack).
    pub fn clear(&mut self) {
        self.items.iter_mut().for_each(|slot| *slot = None);
        self.len = 0;
    }
}

/// The config events for a registry read: `ConfigLoaded` when the values in effect differ
/// from the previous read (or on the first), and one `ConfigRejected` per bad value, again
/// only when the set of problems changed — so re-reading every 10 s is silent.
#[must_use]
pub fn config_events(now: &Validated, previous: Option<&Validated>) -> Events {
    let mut out = Events::default();
    config_events_into(now, previous, &mut out);
    out
}

/// [`config_events`], written into `out` (cleared first) instead of returned by value.
pub fn config_events_into(now: &Validated, previous: Option<&Validated>, out: &mut Events) {
    out.clear();
    let c = &now.config;
    if previous.is_none_or(|p| p.config != *c) {
        out.push(Event::ConfigLoaded {
            max_balloon_mb: c.max_balloon.map_or(0, Frames::mib_floor),
            max_balloon_percent: c.max_balloon_percent.map_or(0, u32::from),
            reserve_mb: c.reserve.map_or(0, Frames::mib_floor),
            poll_interval_ms: c.poll_interval.as_millis(),
            use_large_pages: c.use_large_pages,
            deflate_on_low_memory: c.deflate_on_low_memory,
        });
    }
    if previous.is_none_or(|p| p.issues != now.issues) {
        for issue in now.issues() {
            out.push(rejected(issue));
        }
    }
}

/// The event for a registry read that failed with `status`, when the previous read did not
/// fail the same way (`previous`: the last read's failure, `None` if it succeeded), so a
/// registry that stays unreadable is traced once, not every 10 s.
#[must_use]
pub fn config_unreadable(status: i32, previous: Option<i32>) -> Option<Event> {
    (previous != Some(status)).then_some(Event::ConfigUnreadable { status })
}

fn rejected(issue: &ConfigIssue) -> Event {
    let (problem, value) = match issue.problem {
        Problem::OutOfRange { value, .. } => ("out-of-range", value),
        Problem::WrongType => ("wrong-type", 0),
    };
    Event::ConfigRejected {
        param: issue.param.name(),
        problem,
        value,
        used: issue.used,
    }
}

/// Remembers what was last written, so per-tick events are written on change only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tracker {
    last_target: Option<Frames>,
    last_clamp: Option<ClampReason>,
    last_stats: Option<Instant>,
    /// Per [`Condition::ALL`]: the state last seen in a snapshot.
    last_signals: [Option<bool>; 2],
}

impl Tracker {
    /// Nothing written yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            last_target: None,
            last_clamp: None,
            last_stats: None,
            last_signals: [None; 2],
        }
    }

    /// The events one tick produces. `stats` are the engine's counters after the tick.
    pub fn on_tick(&mut self, r: &TickReport, stats: &Stats) -> Events {
        let mut out = Events::default();
        self.on_tick_into(r, stats, &mut out);
        out
    }

    /// [`Tracker::on_tick`], written into `out` (cleared first) instead of returned by
    /// value.
    pub fn on_tick_into(&mut self, r: &TickReport, stats: &Stats, out: &mut Events) {
        out.clear();
        if let Some(s) = &r.started {
            out.push(started(s));
        }
        if r.host_reset {
            out.push(Event::HostReset { popped: r.popped });
        }
        if self.last_target.is_some_and(|t| t != r.target) {
            out.push(Event::TargetChanged {
                target: r.target,
                previous: self.last_target.unwrap_or_default(),
            });
        }
        self.last_target = Some(r.target);
        if !r.inflated.is_zero() {
            out.push(Event::Inflated {
                frames: r.inflated,
                balloon: r.balloon,
            });
        }
        if !r.compacted.is_zero() {
            out.push(Event::Compacted {
                frames: r.compacted,
                balloon: r.balloon,
            });
        }
        if !r.deflated.is_zero() {
            out.push(if r.low_memory_deflate {
                Event::LowMemoryDeflate {
                    frames: r.deflated,
                    balloon: r.balloon,
                }
            } else {
                Event::Deflated {
                    frames: r.deflated,
                    balloon: r.balloon,
                    reason: r.reason.unwrap_or(ClampReason::HostTarget).name(),
                }
            });
        }
        if let Some(c) = &r.calibrated {
            out.push(Event::AccountingCalibrated {
                resident_available: c.resident_available.name(),
                commit: c.commit.name(),
                frames: c.frames,
                resident_available_drop: c.resident_available_drop.map_or(u64::MAX, Frames::get),
                commit_rise: c.commit_rise.map_or(u64::MAX, Frames::get),
                tries: c.tries,
            });
        }
        let clamp = r.reason.filter(|c| c.is_guest_bound());
        if clamp != self.last_clamp
            && let Some(reason) = clamp
        {
            let ceiling = r.ceiling.map_or(r.balloon, |c: Ceiling| c.value);
            out.push(Event::CeilingClamped {
                reason: reason.name(),
                ceiling,
                target: r.target,
            });
        }
        self.last_clamp = clamp;
        if !r.refused.is_zero() {
            out.push(Event::Refused { frames: r.refused });
        }
        if r.alloc_failures != 0 {
            out.push(Event::AllocationFailed {
                failures: r.alloc_failures,
            });
        }
        if let Some(e) = r.error {
            out.push(error_event(e));
        }
        if let Some(snapshot) = r.snapshot {
            for (last, condition) in self.last_signals.iter_mut().zip(Condition::ALL) {
                let signalled = condition.signalled(&snapshot);
                // The first snapshot reports a signal only if it is set.
                if *last != Some(signalled) && (last.is_some() || signalled) {
                    out.push(Event::MemorySignal {
                        condition: condition.name(),
                        signalled,
                    });
                }
                *last = Some(signalled);
            }
        }
        if self
            .last_stats
            .is_none_or(|t| r.at.saturating_since(t) >= STATS_PERIOD)
        {
            self.last_stats = Some(r.at);
            out.push(Event::Stats {
                balloon: r.balloon,
                target: r.target,
                ceiling: r.ceiling.map_or(r.target, |c| c.value),
                resident_available: r
                    .snapshot
                    .and_then(|s| s.resident_available)
                    .map_or(u64::MAX, Frames::get),
                counters: Counter::ALL.map(|c| stats.get(c)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmballoon_core::config::{Param, RawConfig, RawValue, validate};
    use vmballoon_core::engine::SessionState;
    use vmballoon_core::protocol::{Capabilities, Command, Status};

    fn report(at_s: u64) -> TickReport {
        TickReport {
            at: Instant::from_nanos(at_s * 1_000_000_000),
            state: SessionState::Running,
            target: Frames::from_mib(1000),
            balloon: Frames::from_mib(500),
            calls: 1,
            ..TickReport::default()
        }
    }

    fn names(e: &Events) -> Vec<&'static str> {
        e.iter().map(Event::name).collect()
    }

    #[test]
    fn counter_names_follow_counter_order() {
        let joined: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(COUNTER_NAMES, joined.join(","));
    }

    #[test]
    fn event_names_cover_architecture_md() {
        for required in [
            "Started",
            "Stopped",
            "ConfigLoaded",
            "ConfigRejected",
            "TargetChanged",
            "Inflated",
            "Deflated",
            "CeilingClamped",
            "Refused",
            "HostReset",
            "LowMemoryDeflate",
            "AllocationFailed",
            "Stats",
        ] {
            assert!(EVENT_NAMES.contains(&required), "{required}");
        }
        let mut all = EVENT_NAMES.to_vec();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), EVENT_NAMES.len(), "unique names");
    }

    /// One event of every variant, in declaration order. The `match` below stops compiling
    /// when a variant is added, until it is added here too.
    fn one_of_each() -> [Event; EVENT_NAMES.len()] {
        let f = Frames::new(1);
        let all = [
            Event::Loaded {
                backdoor_version: 6,
                product: "ESX",
            },
            Event::LoadRefused {
                reason: Refusal::NotVmware,
                status: -1,
            },
            Event::Started {
                capabilities: 0x2E,
                batched: true,
                large_pages: true,
                guest_type: 4,
            },
            Event::Stopped {
                freed: f,
                cause: "unload",
            },
            Event::StoodDown {
                reason: "vmmemctl-loaded",
                freed: f,
            },
            Event::PowerResumed { empty_ms: 1 },
            Event::MemorySignal {
                condition: "low-memory",
                signalled: true,
            },
            Event::MemoryLayout {
                os_major: 10,
                os_minor: 0,
                os_build: 26100,
                memory_usage_size: 0x38,
                performance_size: 0,
                basic_size: 0x40,
            },
            Event::ConfigLoaded {
                max_balloon_mb: 0,
                max_balloon_percent: 0,
                reserve_mb: 0,
                poll_interval_ms: 1000,
                use_large_pages: true,
                deflate_on_low_memory: true,
            },
            Event::ConfigUnreadable { status: -1 },
            Event::ConfigRejected {
                param: "ReserveMB",
                problem: "wrong-type",
                value: 0,
                used: 0,
            },
            Event::TargetChanged {
                target: f,
                previous: Frames::ZERO,
            },
            Event::Inflated {
                frames: f,
                balloon: f,
            },
            Event::Compacted {
                frames: f,
                balloon: f,
            },
            Event::Deflated {
                frames: f,
                balloon: Frames::ZERO,
                reason: "host-target",
            },
            Event::CeilingClamped {
                reason: "commit",
                ceiling: f,
                target: f,
            },
            Event::Refused { frames: f },
            Event::HostReset { popped: f },
            Event::LowMemoryDeflate {
                frames: f,
                balloon: Frames::ZERO,
            },
            Event::AllocationFailed { failures: 1 },
            Event::TickError {
                kind: "protocol",
                command: "-",
                value: 0,
            },
            Event::MemoryInfoDegraded {
                class: "basic",
                kind: "length",
                value: 0,
            },
            Event::AccountingCalibrated {
                resident_available: "charged",
                commit: "unknown",
                frames: f,
                resident_available_drop: 1,
                commit_rise: u64::MAX,
                tries: 1,
            },
            Event::Stats {
                balloon: f,
                target: f,
                ceiling: f,
                resident_available: 0,
                counters: [0; Counter::COUNT],
            },
        ];
        for e in &all {
            match e {
                Event::Loaded { .. }
                | Event::LoadRefused { .. }
                | Event::Started { .. }
                | Event::Stopped { .. }
                | Event::StoodDown { .. }
                | Event::PowerResumed { .. }
                | Event::MemorySignal { .. }
                | Event::MemoryLayout { .. }
                | Event::ConfigLoaded { .. }
                | Event::ConfigUnreadable { .. }
                | Event::ConfigRejected { .. }
                | Event::TargetChanged { .. }
                | Event::Inflated { .. }
                | Event::Compacted { .. }
                | Event::Deflated { .. }
                | Event::CeilingClamped { .. }
                | Event::Refused { .. }
                | Event::HostReset { .. }
                | Event::LowMemoryDeflate { .. }
                | Event::AllocationFailed { .. }
                | Event::TickError { .. }
                | Event::MemoryInfoDegraded { .. }
                | Event::AccountingCalibrated { .. }
                | Event::Stats { .. } => {}
            }
        }
        all
    }

    #[test]
    fn event_names_are_the_name_of_every_variant() {
        let names: Vec<&str> = one_of_each().iter().map(Event::name).collect();
        assert_eq!(names, EVENT_NAMES);
    }

    #[test]
    fn first_tick_writes_stats_then_only_every_minute() {
        let mut t = Tracker::new();
        let s = Stats::new();
        assert_eq!(names(&t.on_tick(&report(0), &s)), ["Stats"]);
        assert!(t.on_tick(&report(1), &s).is_empty());
        assert!(t.on_tick(&report(59), &s).is_empty());
        assert_eq!(names(&t.on_tick(&report(60), &s)), ["Stats"]);
    }

    #[test]
    fn busy_tick_maps_every_field() {
        let mut t = Tracker::new();
        let s = Stats::new();
        let _ = t.on_tick(&report(0), &s);
        let mut r = report(1);
        r.started = Session::negotiate(
            Capabilities::REQUESTED,
            Status::SuccessWithCapabilities,
            0x2E,
        );
        r.host_reset = true;
        r.popped = Frames::new(7);
        r.target = Frames::from_mib(1200);
        r.inflated = Frames::new(1024);
        r.refused = Frames::new(3);
        r.alloc_failures = 2;
        r.reason = Some(ClampReason::ResidentAvailable);
        r.ceiling = Some(Ceiling {
            value: Frames::from_mib(800),
            reason: ClampReason::ResidentAvailable,
        });
        r.error = Some(Error::Busy {
            command: Command::BatchedLock,
        });
        let e = t.on_tick(&r, &s);
        assert_eq!(
            names(&e),
            [
                "Started",
                "HostReset",
                "TargetChanged",
                "Inflated",
                "CeilingClamped",
                "Refused",
                "AllocationFailed",
                "TickError"
            ]
        );
        let v: Vec<Event> = e.iter().copied().collect();
        assert_eq!(
            v[0],
            Event::Started {
                capabilities: 0x2E,
                batched: true,
                large_pages: true,
                guest_type: 4
            }
        );
        assert_eq!(
            v[2],
            Event::TargetChanged {
                target: Frames::from_mib(1200),
                previous: Frames::from_mib(1000)
            }
        );
        assert_eq!(
            v[4],
            Event::CeilingClamped {
                reason: "resident-available",
                ceiling: Frames::from_mib(800),
                target: Frames::from_mib(1200)
            }
        );
        assert_eq!(
            v[7],
            Event::TickError {
                kind: "busy",
                command: "batched-lock",
                value: 0
            }
        );
        // The same clamp next tick is not repeated; a different one is.
        let mut r2 = r;
        r2.started = None;
        r2.host_reset = false;
        r2.inflated = Frames::ZERO;
        r2.refused = Frames::ZERO;
        r2.alloc_failures = 0;
        r2.error = None;
        assert!(t.on_tick(&r2, &s).is_empty());
        r2.reason = Some(ClampReason::Commit);
        assert_eq!(names(&t.on_tick(&r2, &s)), ["CeilingClamped"]);
        // Following the host again re-arms the clamp event.
        r2.reason = None;
        assert!(t.on_tick(&r2, &s).is_empty());
        r2.reason = Some(ClampReason::Commit);
        assert_eq!(names(&t.on_tick(&r2, &s)), ["CeilingClamped"]);
    }

    #[test]
    fn deflates_are_low_memory_or_plain() {
        let mut t = Tracker::new();
        let s = Stats::new();
        let _ = t.on_tick(&report(0), &s);
        let mut r = report(1);
        r.deflated = Frames::new(512);
        r.low_memory_deflate = true;
        r.reason = Some(ClampReason::LowMemory);
        let e: Vec<Event> = t.on_tick(&r, &s).iter().copied().collect();
        assert_eq!(
            e[0],
            Event::LowMemoryDeflate {
                frames: Frames::new(512),
                balloon: Frames::from_mib(500)
            }
        );
        assert_eq!(e[1].name(), "CeilingClamped");
        let mut r = report(2);
        r.deflated = Frames::new(256);
        let e: Vec<Event> = t.on_tick(&r, &s).iter().copied().collect();
        assert_eq!(
            e,
            [Event::Deflated {
                frames: Frames::new(256),
                balloon: Frames::from_mib(500),
                reason: "host-target"
            }]
        );
    }

    #[test]
    fn compaction_is_traced_between_the_locks_and_the_unlocks_it_made() {
        let mut t = Tracker::new();
        let s = Stats::new();
        let _ = t.on_tick(&report(0), &s);
        let mut r = report(1);
        r.compacted = Frames::new(1024);
        r.inflated = Frames::new(1024);
        r.deflated = Frames::new(1024);
        assert_eq!(
            names(&t.on_tick(&r, &s)),
            ["Inflated", "Compacted", "Deflated"]
        );
    }

    #[test]
    fn stats_event_carries_counters_and_unknown_resident_available() {
        let mut t = Tracker::new();
        let mut s = Stats::new();
        s.add(Counter::Inflated2m, 5);
        let e = t.on_tick(&report(0), &s);
        let Some(Event::Stats {
            counters,
            resident_available,
            ceiling,
            ..
        }) = e.iter().next().copied()
        else {
            panic!("no stats");
        };
        assert_eq!(counters[Counter::Inflated2m.index()], 5);
        assert_eq!(resident_available, u64::MAX);
        assert_eq!(ceiling, Frames::from_mib(1000));
    }

    #[test]
    fn config_events_only_on_change() {
        let ram = Frames::from_mib(4096);
        let a = validate(&RawConfig::new().with(Param::MaxBalloonMb, 1330), ram);
        let first = config_events(&a, None);
        assert_eq!(
            first.iter().copied().collect::<Vec<_>>(),
            [Event::ConfigLoaded {
                max_balloon_mb: 1330,
                max_balloon_percent: 0,
                reserve_mb: 0,
                poll_interval_ms: 1000,
                use_large_pages: true,
                deflate_on_low_memory: true
            }]
        );
        assert!(config_events(&a, Some(&a)).is_empty());
        let mut raw = RawConfig::new().with(Param::PollIntervalMs, 5);
        raw.set(Param::UseLargePages, RawValue::WrongType);
        let b = validate(&raw, ram);
        let e: Vec<Event> = config_events(&b, Some(&a)).iter().copied().collect();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[1],
            Event::ConfigRejected {
                param: "PollIntervalMs",
                problem: "out-of-range",
                value: 5,
                used: 100
            }
        );
        assert_eq!(
            e[2],
            Event::ConfigRejected {
                param: "UseLargePages",
                problem: "wrong-type",
                value: 0,
                used: 1
            }
        );
        assert!(config_events(&b, Some(&b)).is_empty());
    }

    #[test]
    fn errors_and_diagnostics_have_names() {
        assert_eq!(
            error_event(Error::Host {
                command: Command::Start,
                status: Status::Failure
            }),
            Event::TickError {
                kind: "host",
                command: "start",
                value: 0xFFFF_FFFF
            }
        );
        assert_eq!(
            diagnostic_event(Diagnostic::UnknownSize {
                class: InfoClass::Performance,
                return_length: 0x160
            }),
            Event::MemoryInfoDegraded {
                class: "SystemPerformanceInformation",
                kind: "unknown-size",
                value: 0x160
            }
        );
        assert_eq!(Refusal::VmmemctlLoaded.name(), "vmmemctl-loaded");
        assert_eq!(Refusal::VmmemctlUnknown.name(), "vmmemctl-unknown");
    }

    #[test]
    fn an_unreadable_registry_is_traced_once_per_status() {
        const NO_MEMORY: i32 = -1_073_741_670;
        const DENIED: i32 = -1_073_741_790;
        let e = config_unreadable(NO_MEMORY, None);
        assert_eq!(e, Some(Event::ConfigUnreadable { status: NO_MEMORY }));
        assert!(EVENT_NAMES.contains(&"ConfigUnreadable"));
        assert_eq!(config_unreadable(NO_MEMORY, Some(NO_MEMORY)), None);
        assert!(config_unreadable(DENIED, Some(NO_MEMORY)).is_some());
    }

    fn with_signals(mut r: TickReport, low_memory: bool, high_commit: bool) -> TickReport {
        r.snapshot = Some(vmballoon_core::platform::MemorySnapshot {
            low_memory,
            high_commit,
            ..Default::default()
        });
        r
    }

    fn signals(e: &Events) -> Vec<(&'static str, bool)> {
        e.iter()
            .filter_map(|e| match *e {
                Event::MemorySignal {
                    condition,
                    signalled,
                } => Some((condition, signalled)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn memory_signals_are_traced_when_they_change() {
        let mut t = Tracker::new();
        let s = Stats::new();
        // The first snapshot: a clear signal is not news, a set one is.
        let e = t.on_tick(&with_signals(report(0), false, true), &s);
        assert_eq!(signals(&e), [("maximum-commit", true)]);
        assert!(signals(&t.on_tick(&with_signals(report(1), false, true), &s)).is_empty());
        let e = t.on_tick(&with_signals(report(2), true, false), &s);
        assert_eq!(
            signals(&e),
            [("low-memory", true), ("maximum-commit", false)]
        );
        // A tick without a snapshot says nothing about them, and forgets nothing.
        assert!(signals(&t.on_tick(&report(3), &s)).is_empty());
        assert!(signals(&t.on_tick(&with_signals(report(4), true, false), &s)).is_empty());
        let e = t.on_tick(&with_signals(report(5), false, false), &s);
        assert_eq!(signals(&e), [("low-memory", false)]);
    }

    #[test]
    fn the_busiest_tick_fits_the_event_list() {
        let mut t = Tracker::new();
        let s = Stats::new();
        let _ = t.on_tick(&with_signals(report(0), false, false), &s);
        let mut r = with_signals(report(60), true, true);
        r.started = Session::negotiate(
            Capabilities::REQUESTED,
            Status::SuccessWithCapabilities,
            0x2E,
        );
        r.host_reset = true;
        r.target = Frames::from_mib(1);
        r.inflated = Frames::new(1);
        r.deflated = Frames::new(1);
        r.reason = Some(ClampReason::Commit);
        r.refused = Frames::new(1);
        r.alloc_failures = 1;
        r.error = Some(Error::NoBatchPage);
        let e = t.on_tick(&r, &s);
        assert_eq!(e.len(), 12);
        assert!(e.len() < MAX_EVENTS);
        assert_eq!(e.iter().count(), e.len());
    }

    #[test]
    fn stand_down_and_layout_events() {
        assert_eq!(StandDown::VmmemctlLoaded.name(), "vmmemctl-loaded");
        let mut layout = Layout::default();
        let mut usage = [0u8; crate::memory::MEMORY_USAGE_SIZE];
        usage[..8].copy_from_slice(&(1u64 << 32).to_le_bytes());
        let parsed = crate::memory::parse_memory_usage(&usage, 0x38);
        layout.record(InfoClass::MemoryUsage, 0x38, &parsed);
        let os = OsVersion {
            major: 10,
            minor: 0,
            build: 22631,
        };
        assert_eq!(
            layout_event(os, &layout),
            Event::MemoryLayout {
                os_major: 10,
                os_minor: 0,
                os_build: 22631,
                memory_usage_size: 0x38,
                performance_size: 0,
                basic_size: 0,
            }
        );
        for name in ["StoodDown", "PowerResumed", "MemorySignal", "MemoryLayout"] {
            assert!(EVENT_NAMES.contains(&name), "{name}");
        }
    }
}
