//! The driver's state, in one nonpaged pool block: what every thread may touch
//! ([`Shared`]: kernel events) and what only the worker touches ([`Work`]:
//! the engine and its bookkeeping).

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use vmballoon_backdoor::VmwareBackdoor;
use vmballoon_core::config::{Validated, validate};
use vmballoon_core::engine::Balloon;
use vmballoon_core::platform::{Clock, MemorySource};
use vmballoon_core::units::Frames;
use wdk_sys::{NTSTATUS, WDFDRIVER};

use crate::batch::BatchMemory;
use crate::clock::KernelClock;
use crate::etw;
use crate::events::{Tracker, config_events, config_unreadable};
use crate::image_watch::ImageWatch;
use crate::kernel::{Event, EventKind, Thread, WaitBlocks, pool_alloc};
use crate::memory::KernelMemory;
use crate::pages::MdlPages;
use crate::power::Registration;
use crate::registry;
use crate::schedule::Schedule;

/// The engine on the NT platform.
pub type Engine = Balloon<VmwareBackdoor, MdlPages, KernelMemory, KernelClock>;

/// Shared by the worker, the callbacks and unload: only kernel events. Built in place by
/// [`Shared::init`] (kernel events must not move once initialised).
pub struct Shared {
    /// Notification event: unload asks the worker to end.
    pub stop: Event,
    /// Synchronization event: a callback (power, load-image) has recorded a notice in
    /// `image_watch::NOTICES` for the worker.
    pub notice: Event,
}

impl Shared {
    /// Builds the shared state at `slot`: every event initialised at its final address, so
    /// no `Event` ever exists uninitialised (`kernel::Event`'s invariant).
    ///
    /// # Safety
    /// `slot` is valid for writes, in nonpaged memory, and known to no other thread; it is
    /// neither moved nor freed while any thread may still use it.
    unsafe fn init(slot: *mut Self) {
        // SAFETY: `slot` is valid (our caller's contract); taking a field's address reads
        // nothing. (The same holds for every projection below.)
        let stop = unsafe { &raw mut (*slot).stop };
        // SAFETY: a nonpaged, unused field at its final address (our caller's contract).
        unsafe { Event::init(stop, EventKind::Notification) };
        // SAFETY: as above.
        let notice = unsafe { &raw mut (*slot).notice };
        // SAFETY: as above.
        unsafe { Event::init(notice, EventKind::Synchronization) };
    }
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
    /// How the last registry read failed (`None`: it succeeded), to trace a failure once.
    pub registry_error: Option<NTSTATUS>,
    /// Wait blocks for the worker's waits on more than `THREAD_WAIT_OBJECTS` objects, in
    /// this nonpaged state rather than on the worker's stack.
    pub wait_blocks: WaitBlocks,
}

impl Work {
    /// The worker's state around `engine`, before the first registry read.
    pub fn new(engine: Engine, wdf: WDFDRIVER) -> Self {
        let schedule = Schedule::new(engine.config());
        Self {
            engine,
            wdf,
            schedule,
            tracker: Tracker::new(),
            config: None,
            registry_error: None,
            wait_blocks: WaitBlocks::new(),
        }
    }

    /// Re-reads and validates the registry, traces what changed, and applies it. A registry
    /// that cannot be read keeps the settings in effect (traced once per failure status); if
    /// none has been read yet, the worker does not tick until one is.
    pub fn reload_config(&mut self) {
        let now = self.engine.clock().now();
        let ram = self
            .engine
            .memory_mut()
            .snapshot()
            .map_or(Frames::MAX, |s| s.total);
        let read = registry::read(self.wdf);
        // Until one read succeeds, the schedule runs no tick (the defaults have no cap).
        self.schedule.registry_read(now, read.is_ok());
        let raw = match read {
            Ok(raw) => raw,
            Err(status) => {
                if let Some(e) = config_unreadable(status, self.registry_error) {
                    etw::write(&e);
                }
                self.registry_error = Some(status);
                return;
            }
        };
        self.registry_error = None;
        let validated = validate(&raw, ram);
        etw::write_all(&config_events(&validated, self.config.as_ref()));
        self.engine.set_config(validated.config);
        self.schedule.set_config(&validated.config);
        self.config = Some(validated);
    }

    /// One engine tick, traced; returns the balloon's size after it.
    pub fn tick(&mut self) -> Frames {
        let report = self.engine.tick();
        self.schedule.ticked(&report);
        etw::write_all(&self.tracker.on_tick(&report, self.engine.stats()));
        report.balloon
    }
}

/// Everything the driver owns, in one nonpaged pool block ([`Driver::create`]). Fields drop
/// in order: the engine (and the backdoor that points at the batch page) before the batch
/// page.
///
/// Other threads see only parts of it: the worker gets `shared` and `work` by raw field
/// projection ([`Driver::worker_parts`]), the power callback gets `shared` and the
/// load-image routine `shared.notice`; no `&Driver` is ever formed while they run, because
/// unload writes `thread`, `power` and `image_watch` meanwhile.
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
    /// The worker thread, while it runs (written by DriverEntry and unload only).
    pub thread: Option<Thread>,
    /// The `\Callback\PowerState` registration, while registered (DriverEntry and unload).
    pub power: Option<Registration>,
    /// The load-image notify routine's registration, while registered (DriverEntry and
    /// unload).
    pub image_watch: Option<ImageWatch>,
}

// Pool blocks are 16-byte aligned on x64.
const _: () = assert!(core::mem::align_of::<Driver>() <= 16);

impl Driver {
    /// Allocates the driver state in nonpaged pool and builds it in place. `None` without
    /// pool; `work` and `batch` are then dropped (and free what they hold) here.
    pub fn create(work: Work, batch: BatchMemory) -> Option<NonNull<Self>> {
        let Some(block) = pool_alloc::<Self>(core::mem::size_of::<Self>()) else {
            // The engine (whose backdoor points at the batch page) before the page.
            drop(work);
            drop(batch);
            return None;
        };
        let d = block.as_ptr();
        // SAFETY: `d` is a fresh block sized and aligned for a Driver; taking a field's
        // address reads nothing. (The same holds for every projection below.)
        let shared = unsafe { &raw mut (*d).shared };
        // SAFETY: nonpaged, final address (the block never moves), known to no other
        // thread; teardown frees it only after every user is gone.
        unsafe { Shared::init(shared) };
        // SAFETY: as above.
        let work_slot = unsafe { &raw mut (*d).work };
        // SAFETY: valid for writes and unused.
        unsafe { work_slot.write(UnsafeCell::new(work)) };
        // SAFETY: as above.
        let batch_slot = unsafe { &raw mut (*d).batch };
        // SAFETY: as above.
        unsafe { batch_slot.write(batch) };
        // SAFETY: as above.
        let thread = unsafe { &raw mut (*d).thread };
        // SAFETY: as above.
        unsafe { thread.write(None) };
        // SAFETY: as above.
        let power = unsafe { &raw mut (*d).power };
        // SAFETY: as above.
        unsafe { power.write(None) };
        // SAFETY: as above.
        let image_watch = unsafe { &raw mut (*d).image_watch };
        // SAFETY: as above.
        unsafe { image_watch.write(None) };
        Some(block)
    }

    /// The parts of the driver state the worker uses, by raw field projection: no
    /// `&Driver` is formed, so unload may write `thread` and `power` while they are live.
    ///
    /// # Safety
    /// `d` points at a `Driver` built by [`Driver::create`] that outlives `'a`, and during
    /// `'a` only the caller uses `work` (the worker's invariant).
    pub unsafe fn worker_parts<'a>(d: *mut Self) -> (&'a Shared, &'a mut Work) {
        // SAFETY: `d` is valid (our caller's contract); this only takes the field's address.
        let shared = unsafe { &raw const (*d).shared };
        // SAFETY: initialised and alive for `'a`; `Shared` is only ever shared.
        let shared = unsafe { &*shared };
        // SAFETY: as above; this only takes the cell's address.
        let work = unsafe { UnsafeCell::raw_get(&raw const (*d).work) };
        // SAFETY: `Work`'s invariant makes this the only reference to it during `'a`.
        (shared, unsafe { &mut *work })
    }
}
