//! The driver's state, in one nonpaged pool block: what every thread may touch
//! ([`Shared`]: kernel events and an atomic) and what only the worker touches ([`Work`]:
//! the engine and its bookkeeping).

use core::cell::UnsafeCell;
use core::sync::atomic::AtomicBool;

use vmballoon_backdoor::VmwareBackdoor;
use vmballoon_core::config::{Validated, validate};
use vmballoon_core::engine::Balloon;
use vmballoon_core::platform::{Clock, MemorySource};
use vmballoon_core::units::Frames;
use wdk_sys::WDFDRIVER;

use crate::batch::BatchMemory;
use crate::clock::KernelClock;
use crate::etw;
use crate::events::{Tracker, config_events};
use crate::kernel::{Event, Thread};
use crate::memory::KernelMemory;
use crate::pages::MdlPages;
use crate::power::Registration;
use crate::registry;
use crate::schedule::Schedule;

/// The engine on the NT platform.
pub type Engine = Balloon<VmwareBackdoor, MdlPages, KernelMemory, KernelClock>;

/// Shared by the worker, the power callback and unload: only self-synchronised objects.
pub struct Shared {
    /// Notification event: unload asks the worker to end.
    pub stop: Event,
    /// Synchronization event: the power callback asks the worker to look at `leaving_s0`.
    pub power: Event,
    /// Notification event: the worker has emptied the balloon for a power transition.
    pub power_done: Event,
    /// The system is leaving S0 (set by the power callback).
    pub leaving_s0: AtomicBool,
}

/// The worker's own state. Invariant: only one thread at a time uses it — DriverEntry
/// before the worker starts, the worker while it runs, unload after it has ended.
pub struct Work {
    /// The balloon engine.
    pub engine: Engine,
    /// Our WDF driver object (for the registry key).
    pub wdf: WDFDRIVER,
    /// When to tick and re-read the registry.
    pub schedule: Schedule,
    /// What ETW has been told.
    pub tracker: Tracker,
    /// The last validated registry read.
    pub config: Option<Validated>,
}

impl Work {
    /// Re-reads and validates the registry, traces what changed, and applies it. A key
    /// that cannot be opened keeps the settings in effect.
    pub fn reload_config(&mut self) {
        let now = self.engine.clock().now();
        self.schedule.registry_read(now);
        let ram = self
            .engine
            .memory_mut()
            .snapshot()
            .map_or(Frames::MAX, |s| s.total);
        let Ok(raw) = registry::read(self.wdf) else {
            return;
        };
        let validated = validate(&raw, ram);
        etw::write_all(&config_events(&validated, self.config.as_ref()));
        self.engine.set_config(validated.config);
        self.schedule.set_poll(validated.config.poll_interval);
        self.config = Some(validated);
    }

    /// One engine tick, traced.
    pub fn tick(&mut self) {
        let report = self.engine.tick();
        self.schedule.ticked(report.at, report.more_work);
        etw::write_all(&self.tracker.on_tick(&report, self.engine.stats()));
    }
}

/// Everything the driver owns. Fields drop in order: the engine (and the backdoor that
/// points at the batch page) before the batch page.
pub struct Driver {
    /// Cross-thread signalling.
    pub shared: Shared,
    /// The worker's state (see [`Work`]'s invariant).
    pub work: UnsafeCell<Work>,
    /// The batch page the backdoor uses. Only its `Drop` matters here (after the engine's).
    #[allow(
        dead_code,
        reason = "owned for its Drop, which frees the page after the engine"
    )]
    pub batch: BatchMemory,
    /// The worker thread, while it runs.
    pub thread: Option<Thread>,
    /// The `\Callback\PowerState` registration, while registered.
    pub power: Option<Registration>,
}
