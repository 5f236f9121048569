//! The driver's state, in one nonpaged pool block: what every thread may touch
//! ([`Shared`]: kernel events) and what only the worker touches ([`Work`]:
//! the engine and its bookkeeping).

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use vmballoon_backdoor::VmwareBackdoor;
use vmballoon_core::config::{Config, Validated, validate};
use vmballoon_core::engine::{Balloon, TickReport};
use vmballoon_core::platform::{Clock, MemorySource};
use vmballoon_core::units::Frames;
use wdk_sys::{NTSTATUS, WDFDRIVER};

use crate::batch::BatchMemory;
use crate::clock::KernelClock;
use crate::counters::{CounterBlock, PerfCounters};
use crate::dump::DumpExclusion;
use crate::etw;
use crate::image_watch::ImageWatch;
use crate::kernel::{Event, EventKind, Thread, WaitBlocks, pool_alloc};
use crate::memory::KernelMemory;
use crate::pages::MdlPages;
use crate::power::Registration;
use crate::registry;
use vmballoon_nt::counters::CounterData;
use vmballoon_nt::events::{Events, Tracker, config_events_into, config_unreadable};
use vmballoon_nt::schedule::Schedule;

/// The engine on the NT platform.
pub type Engine = Balloon<VmwareBackdoor, MdlPages, KernelMemory, KernelClock>;

/// Shared by the worker, the callbacks, unload and PCW: kernel events and the counters'
/// data block. Built in place by [`Shared::init`] (kernel events must not move once
/// initialised, nor the data block while PCW may read it).
pub struct Shared {
    /// Notification event: unload asks the worker to end.
    pub stop: Event,
    /// Synchronization event: a callback (power, load-image) has recorded a notice in
    /// `image_watch::NOTICES` for the worker.
    pub notice: Event,
    /// The performance counters' data block: PCW reads it, the worker writes it after
    /// each tick (`counters.rs`: no lock).
    pub counters: CounterBlock,
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
        // SAFETY: as above.
        let counters = unsafe { &raw mut (*slot).counters };
        // SAFETY: valid for writes and unused (our caller's contract).
        unsafe { counters.write(CounterBlock::new()) };
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
    /// The events of the last decision, refilled in place: at 2.4 KiB an [`Events`] must
    /// not live on the kernel stack (24 KiB for the whole call chain, the kernel's own
    /// calls included; `cargo xtask build-sys` fails on any frame above 1 KiB).
    pub events: Events,
    /// The last tick's report, written in place by [`engine_tick`] (for the same reason).
    pub report: TickReport,
    /// Wait blocks for the worker's waits on more than `THREAD_WAIT_OBJECTS` objects, in
    /// this nonpaged state rather than on the worker's stack.
    pub wait_blocks: WaitBlocks,
    /// The performance counters as folded from every tick so far
    /// (`vmballoon_nt::counters`), published to [`Shared::counters`] by the worker.
    pub counters: CounterData,
}

/// `engine.tick()` into `out`. Never inlined, so the engine's tick has a frame of its own
/// and its report is built straight into `out` (in the pool block), not in a temporary
/// that is then copied (`cargo xtask build-sys` budgets every frame at 1 KiB).
#[inline(never)]
fn engine_tick(engine: &mut Engine, out: &mut TickReport) {
    *out = engine.tick();
}

impl Work {
    /// Builds the worker's state at `slot` around the engine made from `parts`, before the
    /// first registry read. Field by field, so the engine (and the rest) is written
    /// straight into the pool block and no `Work`-sized value is built on the stack.
    ///
    /// # Safety
    /// `slot` is valid for writes and known to no other thread.
    unsafe fn init(slot: *mut Self, parts: EngineParts, wdf: WDFDRIVER) {
        let EngineParts {
            backdoor,
            pages,
            memory,
        } = parts;
        // SAFETY: `slot` is valid (our caller's contract); taking a field's address reads
        // nothing. (The same holds for every projection below.)
        let engine = unsafe { &raw mut (*slot).engine };
        // SAFETY: valid for writes and unused.
        unsafe {
            engine.write(Balloon::new(
                backdoor,
                pages,
                memory,
                KernelClock,
                Config::default(),
            ));
        };
        // SAFETY: the engine was written just above.
        let schedule = Schedule::new(unsafe { (*engine).config() });
        // SAFETY: as above.
        let schedule_slot = unsafe { &raw mut (*slot).schedule };
        // SAFETY: valid for writes and unused. (The same holds for every write below.)
        unsafe { schedule_slot.write(schedule) };
        // SAFETY: as above.
        let wdf_slot = unsafe { &raw mut (*slot).wdf };
        // SAFETY: as above.
        unsafe { wdf_slot.write(wdf) };
        // SAFETY: as above.
        let tracker = unsafe { &raw mut (*slot).tracker };
        // SAFETY: as above.
        unsafe { tracker.write(Tracker::new()) };
        // SAFETY: as above.
        let config = unsafe { &raw mut (*slot).config };
        // SAFETY: as above.
        unsafe { config.write(None) };
        // SAFETY: as above.
        let registry_error = unsafe { &raw mut (*slot).registry_error };
        // SAFETY: as above.
        unsafe { registry_error.write(None) };
        // SAFETY: as above.
        let events = unsafe { &raw mut (*slot).events };
        // SAFETY: as above.
        unsafe { events.write(Events::default()) };
        // SAFETY: as above.
        let report = unsafe { &raw mut (*slot).report };
        // SAFETY: as above.
        unsafe { report.write(TickReport::default()) };
        // SAFETY: as above.
        let wait_blocks = unsafe { &raw mut (*slot).wait_blocks };
        // SAFETY: as above.
        unsafe { wait_blocks.write(WaitBlocks::new()) };
        // SAFETY: as above.
        let counters = unsafe { &raw mut (*slot).counters };
        // SAFETY: as above.
        unsafe { counters.write(CounterData::new()) };
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
        config_events_into(&validated, self.config.as_ref(), &mut self.events);
        etw::write_all(&self.events);
        self.engine.set_config(validated.config);
        self.schedule.set_config(&validated.config);
        self.config = Some(validated);
    }

    /// One engine tick, traced; returns the balloon's size after it.
    pub fn tick(&mut self) -> Frames {
        engine_tick(&mut self.engine, &mut self.report);
        self.counters
            .update(&self.report, self.engine.stats(), self.engine.config());
        self.schedule.ticked(&self.report);
        self.tracker
            .on_tick_into(&self.report, self.engine.stats(), &mut self.events);
        etw::write_all(&self.events);
        self.report.balloon
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
    /// The performance-counter registration over `shared.counters`, while registered
    /// (DriverEntry and unload).
    pub perf: Option<PerfCounters>,
    /// The crash-dump range table and its bug-check callback (`dump.rs`). Last, so it
    /// outlives the engine, whose allocator withdraws ranges from it until it drops.
    pub dump: DumpExclusion,
}

// Pool blocks are 16-byte aligned on x64.
const _: () = assert!(core::mem::align_of::<Driver>() <= 16);

/// What the engine is made of, handed to [`Driver::create`], which builds the engine in
/// place in the driver's pool block.
pub struct EngineParts {
    /// The backdoor, over the batch page handed to `create` alongside.
    pub backdoor: VmwareBackdoor,
    /// The page allocator.
    pub pages: MdlPages,
    /// The memory source.
    pub memory: KernelMemory,
}

impl Driver {
    /// Allocates the driver state in nonpaged pool and builds it in place (the engine and
    /// the worker's state included: nothing of `Driver`'s size is built on the stack).
    /// `None` without pool; `parts` and `batch` are then dropped (and free what they hold)
    /// here.
    pub fn create(parts: EngineParts, wdf: WDFDRIVER, batch: BatchMemory) -> Option<NonNull<Self>> {
        let Some(block) = pool_alloc::<Self>(core::mem::size_of::<Self>()) else {
            // The backdoor (which points at the batch page) before the page.
            drop(parts);
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
        // SAFETY: as above; `UnsafeCell<Work>` has `Work`'s layout, so this is its address.
        let work_slot = UnsafeCell::raw_get(unsafe { &raw const (*d).work });
        // SAFETY: valid for writes, unused, known to no other thread.
        unsafe { Work::init(work_slot, parts, wdf) };
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
        // SAFETY: as above.
        let perf = unsafe { &raw mut (*d).perf };
        // SAFETY: as above.
        unsafe { perf.write(None) };
        // SAFETY: as above.
        let dump = unsafe { &raw mut (*d).dump };
        // SAFETY: as above.
        unsafe { DumpExclusion::init(dump) };
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
