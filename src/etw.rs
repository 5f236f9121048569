//! The `VmBalloon.Driver` TraceLogging provider and the thin layer that writes an
//! [`crate::events::Event`] as one ETW event (`architecture.md`, "ETW";
//! `windows-memory.md` §6).
//!
//! The name carries a company-style prefix, as TraceLogging provider names should
//! (`Company.Component`), so it cannot collide with another vendor's `VmBalloon`. The
//! provider id is derived from the name (`Guid::from_name`, EventSource style), so a WPR
//! profile can enable it as `*VmBalloon.Driver`; `logman` needs the GUID, [`PROVIDER_GUID`].
//! Off Windows the `tracelogging` crate compiles every call to a no-op (its OS calls are
//! all under `cfg(all(windows, feature = "etw"))`), so this module builds and is tested on
//! Linux; on the driver target the `kernel_mode` feature binds `EtwRegister` and
//! `EtwWriteTransfer` from ntoskrnl.

use tracelogging as tlg;

use crate::events::{COUNTER_NAMES, Event, Events};

tlg::define_provider!(VMBALLOON, "VmBalloon.Driver");

/// The provider name: enable it in WPR as `*VmBalloon.Driver`.
pub const PROVIDER_NAME: &str = "VmBalloon.Driver";

/// The provider GUID, `Guid::from_name("VmBalloon.Driver")` (pinned by a test; the README,
/// `vmballoon.wprp` and the `logman` commands use it).
pub const PROVIDER_GUID: &str = "e92fcb9e-d7af-5d24-0966-82f058c99cd3";

/// Every event name the provider writes.
pub const EVENT_NAMES: [&str; 22] = [
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
    "Deflated",
    "CeilingClamped",
    "Refused",
    "HostReset",
    "LowMemoryDeflate",
    "AllocationFailed",
    "TickError",
    "MemoryInfoDegraded",
    "Stats",
];

/// Keyword bits, for filtering a session to a category.
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

/// Registers the provider (`EtwRegister`). Call once, in `DriverEntry` at PASSIVE_LEVEL.
///
/// # Safety
///
/// [`unregister`] must be called before the driver image unloads (the registration points
/// at this image's statics), and neither may run concurrently with the other.
pub unsafe fn register() -> u32 {
    // SAFETY: forwarded to the caller: unregister before unload, no concurrent calls.
    unsafe { VMBALLOON.register() }
}

/// Unregisters the provider (`EtwUnregister`); a no-op when not registered.
pub fn unregister() {
    let _ = VMBALLOON.unregister();
}

/// The provider's id as registered.
#[must_use]
pub fn provider_id() -> tlg::Guid {
    *VMBALLOON.id()
}

/// The provider's name as registered.
#[must_use]
pub fn provider_name() -> &'static str {
    VMBALLOON.name()
}

/// Writes every event of `events`.
pub fn write_all(events: &Events) {
    for e in events.iter() {
        write(e);
    }
}

/// Writes one event. Field values are evaluated only when a session listens.
#[allow(
    clippy::too_many_lines,
    reason = "one write_event! per event: a flat table is the readable form"
)]
pub fn write(event: &Event) {
    use keyword::{BALLOON, CONFIG, LIFECYCLE, MEMORY, STATS};
    let b = |v: bool| i32::from(v);
    match *event {
        Event::Loaded {
            backdoor_version,
            product,
        } => tlg::write_event!(
            VMBALLOON,
            "Loaded",
            level(Informational),
            keyword(LIFECYCLE),
            u32("BackdoorVersion", &backdoor_version),
            str8("Product", product),
        ),
        Event::LoadRefused { reason, status } => tlg::write_event!(
            VMBALLOON,
            "LoadRefused",
            level(Error),
            keyword(LIFECYCLE),
            str8("Reason", reason.name()),
            win_ntstatus("Status", &status),
        ),
        Event::Started {
            capabilities,
            batched,
            large_pages,
            guest_type,
        } => tlg::write_event!(
            VMBALLOON,
            "Started",
            level(Informational),
            keyword(LIFECYCLE),
            u32_hex("Capabilities", &capabilities),
            bool32("Batched", &b(batched)),
            bool32("LargePages", &b(large_pages)),
            u32("GuestType", &guest_type),
        ),
        Event::Stopped { freed, cause } => tlg::write_event!(
            VMBALLOON,
            "Stopped",
            level(Informational),
            keyword(LIFECYCLE),
            u64("FreedFrames", &freed.get()),
            str8("Cause", cause),
        ),
        Event::StoodDown { reason, freed } => tlg::write_event!(
            VMBALLOON,
            "StoodDown",
            level(Warning),
            keyword(LIFECYCLE),
            str8("Reason", reason),
            u64("FreedFrames", &freed.get()),
        ),
        Event::PowerResumed { empty_ms } => tlg::write_event!(
            VMBALLOON,
            "PowerResumed",
            level(Informational),
            keyword(LIFECYCLE),
            u64("EmptyMs", &empty_ms),
        ),
        Event::MemorySignal {
            condition,
            signalled,
        } => tlg::write_event!(
            VMBALLOON,
            "MemorySignal",
            level(Informational),
            keyword(MEMORY),
            str8("Condition", condition),
            bool32("Signalled", &b(signalled)),
        ),
        Event::MemoryLayout {
            os_major,
            os_minor,
            os_build,
            memory_usage_size,
            performance_size,
            basic_size,
        } => tlg::write_event!(
            VMBALLOON,
            "MemoryLayout",
            level(Informational),
            keyword(MEMORY),
            u32("OsMajor", &os_major),
            u32("OsMinor", &os_minor),
            u32("OsBuild", &os_build),
            u32_hex("MemoryUsageSize", &memory_usage_size),
            u32_hex("PerformanceSize", &performance_size),
            u32_hex("BasicSize", &basic_size),
        ),
        Event::ConfigLoaded {
            max_balloon_mb,
            max_balloon_percent,
            reserve_mb,
            poll_interval_ms,
            use_large_pages,
            deflate_on_low_memory,
        } => tlg::write_event!(
            VMBALLOON,
            "ConfigLoaded",
            level(Informational),
            keyword(CONFIG),
            u64("MaxBalloonMB", &max_balloon_mb),
            u32("MaxBalloonPercent", &max_balloon_percent),
            u64("ReserveMB", &reserve_mb),
            u64("PollIntervalMs", &poll_interval_ms),
            bool32("UseLargePages", &b(use_large_pages)),
            bool32("DeflateOnLowMemory", &b(deflate_on_low_memory)),
        ),
        Event::ConfigUnreadable { status } => tlg::write_event!(
            VMBALLOON,
            "ConfigUnreadable",
            level(Warning),
            keyword(CONFIG),
            win_ntstatus("Status", &status),
        ),
        Event::ConfigRejected {
            param,
            problem,
            value,
            used,
        } => tlg::write_event!(
            VMBALLOON,
            "ConfigRejected",
            level(Warning),
            keyword(CONFIG),
            str8("Value", param),
            str8("Problem", problem),
            u32("Read", &value),
            u32("Used", &used),
        ),
        Event::TargetChanged { target, previous } => tlg::write_event!(
            VMBALLOON,
            "TargetChanged",
            level(Informational),
            keyword(BALLOON),
            u64("TargetFrames", &target.get()),
            u64("PreviousFrames", &previous.get()),
        ),
        Event::Inflated { frames, balloon } => tlg::write_event!(
            VMBALLOON,
            "Inflated",
            level(Informational),
            keyword(BALLOON),
            u64("Frames", &frames.get()),
            u64("BalloonFrames", &balloon.get()),
        ),
        Event::Migrated { frames, balloon } => tlg::write_event!(
            VMBALLOON,
            "Migrated",
            level(Informational),
            keyword(BALLOON),
            u64("Frames", &frames.get()),
            u64("BalloonFrames", &balloon.get()),
        ),
        Event::Deflated {
            frames,
            balloon,
            reason,
        } => tlg::write_event!(
            VMBALLOON,
            "Deflated",
            level(Informational),
            keyword(BALLOON),
            u64("Frames", &frames.get()),
            u64("BalloonFrames", &balloon.get()),
            str8("Reason", reason),
        ),
        Event::CeilingClamped {
            reason,
            ceiling,
            target,
        } => tlg::write_event!(
            VMBALLOON,
            "CeilingClamped",
            level(Informational),
            keyword(BALLOON),
            str8("Reason", reason),
            u64("CeilingFrames", &ceiling.get()),
            u64("TargetFrames", &target.get()),
        ),
        Event::Refused { frames } => tlg::write_event!(
            VMBALLOON,
            "Refused",
            level(Warning),
            keyword(BALLOON),
            u64("Frames", &frames.get()),
        ),
        Event::HostReset { popped } => tlg::write_event!(
            VMBALLOON,
            "HostReset",
            level(Warning),
            keyword(BALLOON),
            u64("PoppedFrames", &popped.get()),
        ),
        Event::LowMemoryDeflate { frames, balloon } => tlg::write_event!(
            VMBALLOON,
            "LowMemoryDeflate",
            level(Warning),
            keyword(BALLOON),
            u64("Frames", &frames.get()),
            u64("BalloonFrames", &balloon.get()),
        ),
        Event::AllocationFailed { failures } => tlg::write_event!(
            VMBALLOON,
            "AllocationFailed",
            level(Warning),
            keyword(BALLOON),
            u32("Failures", &failures),
        ),
        Event::TickError {
            kind,
            command,
            value,
        } => tlg::write_event!(
            VMBALLOON,
            "TickError",
            level(Warning),
            keyword(BALLOON),
            str8("Kind", kind),
            str8("Command", command),
            u64_hex("Value", &value),
        ),
        Event::MemoryInfoDegraded { class, kind, value } => tlg::write_event!(
            VMBALLOON,
            "MemoryInfoDegraded",
            level(Warning),
            keyword(MEMORY),
            str8("Class", class),
            str8("Kind", kind),
            i64("Value", &value),
        ),
        Event::Stats {
            balloon,
            target,
            ceiling,
            resident_available,
            ref counters,
        } => tlg::write_event!(
            VMBALLOON,
            "Stats",
            level(Verbose),
            keyword(STATS),
            u64("BalloonFrames", &balloon.get()),
            u64("BalloonMB", &balloon.mib_floor()),
            u64("TargetFrames", &target.get()),
            u64("CeilingFrames", &ceiling.get()),
            u64("ResidentAvailableFrames", &resident_available),
            u64_slice("Counters", &counters[..]),
            str8("CounterNames", COUNTER_NAMES),
        ),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Refusal;
    use vmballoon_core::stats::Counter;
    use vmballoon_core::units::Frames;

    #[test]
    fn provider_name_and_guid_derived_from_it() {
        assert_eq!(provider_name(), PROVIDER_NAME);
        assert_eq!(provider_id(), tlg::Guid::from_name(PROVIDER_NAME));
        let text = provider_id().to_utf8_bytes();
        assert_eq!(core::str::from_utf8(&text).unwrap(), PROVIDER_GUID);
    }

    #[test]
    fn writing_is_a_harmless_no_op_off_windows_and_unregistered() {
        // Register / write / unregister must all be callable on Linux (the tracelogging
        // crate compiles them to no-ops there): this is what lets the driver's event code be
        // exercised here.
        let events = [
            Event::Loaded {
                backdoor_version: 6,
                product: "ESX",
            },
            Event::LoadRefused {
                reason: Refusal::NotVmware,
                status: -1_073_741_637,
            },
            Event::Stopped {
                freed: Frames::new(1),
                cause: "unload",
            },
            Event::ConfigUnreadable {
                status: -1_073_741_670,
            },
            Event::StoodDown {
                reason: "vmmemctl-loaded",
                freed: Frames::new(3),
            },
            Event::PowerResumed { empty_ms: 1500 },
            Event::MemorySignal {
                condition: "maximum-commit",
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
            Event::Stats {
                balloon: Frames::ZERO,
                target: Frames::ZERO,
                ceiling: Frames::ZERO,
                resident_available: 0,
                counters: [0; Counter::COUNT],
            },
        ];
        // SAFETY: unregistered below, on this thread only.
        let status = unsafe { register() };
        assert_eq!(status, 0);
        for e in &events {
            assert!(EVENT_NAMES.contains(&e.name()));
            write(e);
        }
        unregister();
    }
}
