//! `DriverEntry` and `EvtDriverUnload`: a non-PnP KMDF driver (`docs/windows-memory.md` §5.2)
//! started as a primitive driver's service. It refuses to start, with an NTSTATUS and a
//! `LoadRefused` ETW error, when the CPU does not report VMware, when the balloon backdoor
//! does not answer, or when VMware's `vmmemctl.sys` is loaded (or the module list that
//! would rule it out cannot be read, or a later load could not be watched for). A
//! `vmmemctl.sys` that loads later makes the running driver stand down (`image_watch.rs`).

use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};

use vmballoon_backdoor::{DetectError, RealCpu, VmwareBackdoor, detect};
use wdk_sys::{
    _WDF_DRIVER_INIT_FLAGS, DRIVER_OBJECT, NTSTATUS, PCUNICODE_STRING,
    STATUS_DEVICE_DOES_NOT_EXIST, STATUS_INSUFFICIENT_RESOURCES, STATUS_NOT_SUPPORTED,
    STATUS_SHARING_VIOLATION, STATUS_SUCCESS, ULONG, WDF_DRIVER_CONFIG, WDF_NO_OBJECT_ATTRIBUTES,
    WDFDRIVER, call_unsafe_wdf_function_binding,
};

use crate::batch::BatchMemory;
use crate::counters::PerfCounters;
use crate::dump::DumpExclusion;
use crate::etw;
use crate::image_watch::ImageWatch;
use crate::kernel::{POOL_TAG, Thread, pool_free, ulong_size_of};
use crate::memory::KernelMemory;
use crate::pages::MdlPages;
use crate::power::Registration;
use crate::state::{Driver, EngineParts};
use crate::vmmemctl;
use crate::worker::worker_main;
use vmballoon_nt::events::{Event, Refusal};
use vmballoon_nt::ntstatus::nt_result;

/// `WdfDriverInitNonPnpDriver` as the `ULONG` flag word of `WDF_DRIVER_CONFIG`.
const NON_PNP_DRIVER: ULONG = 1;
const _: () = assert!(_WDF_DRIVER_INIT_FLAGS::WdfDriverInitNonPnpDriver == 1);

/// The one driver state of this image, for `EvtDriverUnload` (which gets only the
/// WDFDRIVER). Null before start and after unload.
static DRIVER: AtomicPtr<Driver> = AtomicPtr::new(ptr::null_mut());

type Refused = (Refusal, NTSTATUS);

/// The driver's entry point.
///
/// # Safety
/// Called once by the I/O manager at PASSIVE_LEVEL with a valid driver object and path.
// SAFETY: "DriverEntry" is the entry symbol the kernel loader calls; nothing else in this
// image exports that name.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: &mut DRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: unregistered below on failure, and in unload on success.
    let _ = unsafe { etw::register() };
    match start(driver, registry_path) {
        Ok(()) => STATUS_SUCCESS,
        Err((reason, status)) => {
            etw::write(&Event::LoadRefused { reason, status });
            etw::unregister();
            status
        }
    }
}

fn start(driver: &mut DRIVER_OBJECT, registry_path: PCUNICODE_STRING) -> Result<(), Refused> {
    // CPUID before any port is touched (vmballoon-backdoor's `detect`).
    let detected = detect(&mut RealCpu).map_err(|e| match e {
        DetectError::BackdoorAbsent { .. } => {
            (Refusal::BackdoorAbsent, STATUS_DEVICE_DOES_NOT_EXIST)
        }
        _ => (Refusal::NotVmware, STATUS_NOT_SUPPORTED),
    })?;
    // Two balloon drivers would reset each other's session. Watch for a vmmemctl.sys that
    // loads from now on first, then list what is loaded already: no load falls between.
    // Without the watch a later vmmemctl would go unnoticed, so its failure refuses too,
    // like a module list that cannot be read. On every `Err` below, `watch` is dropped,
    // which removes the routine.
    let watch = ImageWatch::register().map_err(|s| (Refusal::VmmemctlUnknown, s))?;
    match vmmemctl::loaded() {
        Ok(false) => {}
        Ok(true) => return Err((Refusal::VmmemctlLoaded, STATUS_SHARING_VIOLATION)),
        Err(status) => return Err((Refusal::VmmemctlUnknown, status)),
    }
    let wdf = create_wdf_driver(driver, registry_path).map_err(|s| (Refusal::Resources, s))?;
    // From here on every resource is an RAII value until `Driver::create` owns them all, so
    // each `?` below frees what was obtained before it.
    let resources = (Refusal::Resources, STATUS_INSUFFICIENT_RESOURCES);
    let batch = BatchMemory::new().ok_or(resources)?;
    let pages = MdlPages::new().ok_or(resources)?;
    let memory = KernelMemory::open().map_err(|s| (Refusal::Resources, s))?;
    let (page, pfn) = batch.parts();
    // SAFETY: VMware was detected; the batch page is resident, 4 KiB aligned, below 4 GiB,
    // used by nothing else, and freed only after the engine (field order of `Driver`).
    let backdoor = unsafe { VmwareBackdoor::new(page, pfn) };
    let parts = EngineParts {
        backdoor,
        pages,
        memory,
    };
    let block = Driver::create(parts, wdf, batch).ok_or(resources)?;
    launch(block, watch, detected.version, detected.product.name()).inspect_err(|_| {
        // SAFETY: the block holds a Driver from `Driver::create`; `launch` failed, so it is
        // not published and unload will never see it.
        unsafe { teardown(block, "start-failed") };
    })
}

/// Hands the image watch to the state, reads the registry, starts the worker, hooks power,
/// publishes the state for unload. On `Err` the caller tears down whatever was started.
fn launch(
    block: NonNull<Driver>,
    watch: ImageWatch,
    version: u32,
    product: &'static str,
) -> Result<(), Refused> {
    let d = block.as_ptr();
    // SAFETY: `d` is a live Driver; this only takes the field's address.
    let notice = unsafe { &raw const (*d).shared.notice };
    // SAFETY: the event lives in the state, which teardown frees only after dropping the
    // watch (first thing it does).
    unsafe { watch.arm(notice) };
    // SAFETY: `image_watch` is written only by this thread and unload (which cannot run
    // before DRIVER is published below); nothing else reads it.
    unsafe { (*d).image_watch = Some(watch) };
    // SAFETY: `d` is a live Driver; this only takes the cell's address.
    let work = unsafe { UnsafeCell::raw_get(&raw const (*d).work) };
    // SAFETY: the worker does not exist yet, so this thread is `Work`'s only user.
    unsafe { &mut *work }.reload_config();
    // Performance counters (docs/windows-memory.md §9.6) before the worker's first update.
    // Optional: without them the balloon runs the same.
    // SAFETY: `d` is a live Driver; this only takes the field's address.
    let block = unsafe { &raw const (*d).shared.counters };
    // SAFETY: the block is in the nonpaged driver state, which teardown frees only after
    // dropping the registration; PASSIVE_LEVEL (DriverEntry).
    let perf = unsafe { PerfCounters::register(block) }.ok();
    // SAFETY: `perf` is written only by this thread and unload (which cannot run before
    // DRIVER is published below); the worker never forms a `&Driver`.
    unsafe { (*d).perf = perf };
    // Ballooned pages out of crash dumps (docs/windows-memory.md §9.5), before the worker
    // allocates any. Optional too: if the kernel refuses, pages stay in dumps.
    // SAFETY: `d` is a live Driver; this only takes the field's address.
    let dump = unsafe { &raw mut (*d).dump };
    // SAFETY: built by `Driver::create`, nonpaged, freed only after teardown deregisters;
    // registered once, here.
    if unsafe { DumpExclusion::register(dump) } {
        // SAFETY: `d` is a live Driver; this only takes the field's address.
        let table = unsafe { &raw mut (*dump).table };
        if let Some(table) = NonNull::new(table) {
            // SAFETY: the worker does not exist yet, so this thread is `Work`'s only user.
            let pages = unsafe { &mut *work }.engine.pages_mut();
            // SAFETY: the table is in the same block, after the engine (dropped after it),
            // and only the allocator writes it.
            unsafe { pages.set_dump_table(table) };
        }
    }
    // SAFETY: the state outlives the thread: teardown joins it before freeing the block, and
    // `worker_main` ends with PsTerminateSystemThread. On `Err` no thread was created.
    let thread = unsafe { Thread::spawn(Some(worker_main), d.cast()) }
        .map_err(|s| (Refusal::Resources, s))?;
    // SAFETY: `thread` and `power` are written only by this thread and unload (which cannot
    // run before DRIVER is published below); the worker never forms a `&Driver`.
    unsafe { (*d).thread = Some(thread) };
    // SAFETY: `d` is a live Driver; this only takes the field's address.
    let shared = unsafe { &raw const (*d).shared };
    // SAFETY: `shared` lives until teardown, which drops the registration (waiting out the
    // callback's run-down) before it frees anything; DriverEntry registers only once.
    let registration =
        unsafe { Registration::register(shared) }.map_err(|s| (Refusal::Resources, s))?;
    // SAFETY: as for `thread` above.
    unsafe { (*d).power = Some(registration) };
    DRIVER.store(d, Ordering::Release);
    etw::write(&Event::Loaded {
        backdoor_version: version,
        product,
    });
    Ok(())
}

fn create_wdf_driver(
    driver: &mut DRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> Result<WDFDRIVER, NTSTATUS> {
    let mut config = WDF_DRIVER_CONFIG {
        Size: const { ulong_size_of::<WDF_DRIVER_CONFIG>() },
        // Mandatory for a non-PnP driver, else it cannot be unloaded (§5.2).
        EvtDriverUnload: Some(evt_driver_unload),
        DriverInitFlags: NON_PNP_DRIVER,
        // The framework tags its allocations for this driver with ours, so pool tools
        // attribute them to vmballoon instead of to "FxDr".
        DriverPoolTag: POOL_TAG,
        ..WDF_DRIVER_CONFIG::default()
    };
    let mut wdf: WDFDRIVER = ptr::null_mut();
    // SAFETY: `driver` and `registry_path` come from DriverEntry; `config` and `wdf` are
    // live locals; no object attributes.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            ptr::from_mut(driver),
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &mut config,
            &mut wdf,
        )
    };
    nt_result(status).map(|()| wdf)
}

/// `EvtDriverUnload`: stops the worker, returns every page, frees everything.
extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    if let Some(block) = NonNull::new(DRIVER.swap(ptr::null_mut(), Ordering::AcqRel)) {
        // SAFETY: the state DriverEntry published; nothing else frees it.
        unsafe { teardown(block, "unload") };
    }
    etw::unregister();
}

/// Callbacks off first (the load-image routine, then the power hook, each waiting until no
/// callback uses the shared state), then the worker, then the performance counters (the
/// instance closed, then the set unregistered), then the engine shuts down (START(0),
/// every page back to the OS), then the state is dropped and freed.
///
/// # Safety
/// `block` holds a `Driver` from [`Driver::create`] and is not used by anyone after this
/// call.
unsafe fn teardown(block: NonNull<Driver>, cause: &'static str) {
    let d = block.as_ptr();
    // SAFETY: our caller's contract; only `image_watch` is touched (the routine and the
    // worker use `shared` and `work`, never a `&Driver`). Dropping it removes the routine,
    // which waits for a running one to return (documented).
    drop(unsafe { (*d).image_watch.take() });
    // SAFETY: as above, for `power`. Dropping the registration unregisters and then waits
    // for the callback's run-down protection to be released.
    drop(unsafe { (*d).power.take() });
    // SAFETY: as above; `shared` is only ever shared.
    let shared = unsafe { &raw const (*d).shared };
    // SAFETY: the state is alive until the free below.
    unsafe { &*shared }.stop.set();
    // SAFETY: as for `power` above. Joining waits for the worker to end.
    if let Some(thread) = unsafe { (*d).thread.take() } {
        thread.join();
    }
    // SAFETY: our caller's contract; this only takes the cell's address.
    let work = unsafe { UnsafeCell::raw_get(&raw const (*d).work) };
    // SAFETY: the worker has ended (or never started): this thread is `Work`'s only user.
    let work = unsafe { &mut *work };
    // SAFETY: as for `power` above. The worker, the block's only writer, has ended;
    // dropping closes the instance, then unregisters, after which PCW no longer reads the
    // block, which the free below releases.
    drop(unsafe { (*d).perf.take() });
    let freed = work.engine.shutdown();
    etw::write(&Event::Stopped { freed, cause });
    // SAFETY: our caller's contract; this only takes the field's address.
    let dump = unsafe { &raw mut (*d).dump };
    // SAFETY: registered in `launch` (or not: then a no-op), deregistered once, here,
    // before the block is freed below.
    unsafe { DumpExclusion::deregister(dump) };
    // SAFETY: initialised, unused from here on; drops the engine before the batch page.
    unsafe { ptr::drop_in_place(d) };
    // SAFETY: the pool block from `Driver::create`, now holding nothing to drop.
    unsafe { pool_free(block) };
}
