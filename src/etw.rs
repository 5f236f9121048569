//! The `VmBalloon.Driver` TraceLogging provider and the thin layer that writes a
//! `vmballoon_nt::events::Event` as one ETW event (`docs/architecture.md`, "ETW";
//! `docs/windows-memory.md` §6).
//!
//! The provider's name, GUID, event names and keywords are portable data in
//! `vmballoon_nt::events`, tested on Linux; `define_provider!` needs the name as a literal,
//! which `tests/etw.rs` holds equal to `PROVIDER_NAME` (and `cargo xtask emulate`
//! checks the registration the driver makes). The provider id is derived from
//! the name (`Guid::from_name`, EventSource style), so a WPR profile can enable it as
//! `*VmBalloon.Driver`; `logman` needs the GUID, `vmballoon_nt::events::PROVIDER_GUID`. On
//! the driver target the `tracelogging` crate's `kernel_mode` feature binds `EtwRegister`
//! and `EtwWriteTransfer` from ntoskrnl.

use tracelogging as tlg;
use vmballoon_nt::events::{COUNTER_NAMES, Event, Events, keyword};

tlg::define_provider!(VMBALLOON, "VmBalloon.Driver");

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
        Event::Compacted { frames, balloon } => tlg::write_event!(
            VMBALLOON,
            "Compacted",
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
        Event::AccountingCalibrated {
            resident_available,
            commit,
            frames,
            resident_available_drop,
            commit_rise,
            tries,
        } => tlg::write_event!(
            VMBALLOON,
            "AccountingCalibrated",
            level(Informational),
            keyword(MEMORY),
            str8("ResidentAvailable", resident_available),
            str8("Commit", commit),
            u64("Frames", &frames.get()),
            u64("ResidentAvailableDrop", &resident_available_drop),
            u64("CommitRise", &commit_rise),
            u8("Tries", &tries),
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
