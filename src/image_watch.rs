//! `vmmemctl.sys` loading at any time: a load-image notify routine
//! (`PsSetLoadImageNotifyRoutineEx`, Windows 10 1709+) sees every image that loads after
//! `DriverEntry` registered it. The module-list check in `DriverEntry` (`vmmemctl.rs`)
//! covers what loaded before; registering first and listing second leaves no gap.
//!
//! The routine stays inside its documented contract (`PLOAD_IMAGE_NOTIFY_ROUTINE`): it
//! runs at PASSIVE_LEVEL in the loading thread, inside a critical region with kernel APCs
//! disabled, so it only matches the name (`vmballoon_nt::vmmemctl::is_vmmemctl_image`), records
//! the notice in [`NOTICES`] and sets the worker's notice event. The worker does the rest
//! (START(0), every page back to the OS, a `StoodDown` event) on its own thread.
//!
//! The routine has no context argument, so what it touches are statics of this image:
//! [`NOTICES`] and [`WAKE`], a pointer to the worker's notice event that is null until the
//! driver state exists ([`ImageWatch::arm`]). `PsRemoveLoadImageNotifyRoutine` "waits until
//! the callback routine exits" when it is running (documented), so once [`ImageWatch`] is
//! dropped no routine runs, and the event it pointed at may be freed.

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use wdk_sys::ntddk::{PsRemoveLoadImageNotifyRoutine, PsSetLoadImageNotifyRoutineEx};
use wdk_sys::{HANDLE, NTSTATUS, PIMAGE_INFO, PUNICODE_STRING, ULONG_PTR};

use crate::kernel::Event;
use vmballoon_nt::notices::Notices;
use vmballoon_nt::ntstatus::nt_result;
use vmballoon_nt::vmmemctl::is_vmmemctl_image;

/// What the callbacks have told the worker (power transitions, `vmmemctl.sys`). Atomics
/// only: written at any IRQL by the callbacks, read by the worker.
pub static NOTICES: Notices = Notices::new();

/// The worker's notice event, once the driver state exists; null before and after.
static WAKE: AtomicPtr<Event> = AtomicPtr::new(ptr::null_mut());

/// `PsSetLoadImageNotifyRoutineEx` flags: none (native-architecture images only, which
/// every kernel driver is).
const NO_FLAGS: ULONG_PTR = 0;

/// The registration of [`load_image_notify`]; dropping it removes the routine and waits
/// for a running one to return, then disarms [`WAKE`].
pub struct ImageWatch(());

impl ImageWatch {
    /// Registers the routine (PASSIVE_LEVEL, DriverEntry, once per image load). From here
    /// on a loading `vmmemctl.sys` is recorded in [`NOTICES`].
    pub fn register() -> Result<Self, NTSTATUS> {
        // SAFETY: the routine is nonpaged code of this image; it is removed in `drop`
        // before the image can unload (the value lives in the driver state, dropped at
        // unload, or is dropped on every DriverEntry failure path).
        nt_result(unsafe { PsSetLoadImageNotifyRoutineEx(Some(load_image_notify), NO_FLAGS) })?;
        Ok(Self(()))
    }

    /// Points the routine at the worker's notice event, so a later load wakes the worker.
    ///
    /// # Safety
    /// `event` stays valid until this `ImageWatch` is dropped.
    pub unsafe fn arm(&self, event: *const Event) {
        WAKE.store(event.cast_mut(), Ordering::SeqCst);
    }
}

impl Drop for ImageWatch {
    fn drop(&mut self) {
        // SAFETY: our registration, removed once; PASSIVE_LEVEL (unload or DriverEntry),
        // never from the routine itself. A failure (STATUS_PROCEDURE_NOT_FOUND) would mean
        // it was not registered, which `register` rules out.
        let _ = unsafe { PsRemoveLoadImageNotifyRoutine(Some(load_image_notify)) };
        // No routine runs any more (documented): nothing can read WAKE after this.
        WAKE.store(ptr::null_mut(), Ordering::SeqCst);
    }
}

/// `PLOAD_IMAGE_NOTIFY_ROUTINE`: records a loading `vmmemctl.sys` and wakes the worker.
/// Nothing else: no allocation, no wait, no call into the image's memory.
unsafe extern "C" fn load_image_notify(
    full_image_name: PUNICODE_STRING,
    process_id: HANDLE,
    _image_info: PIMAGE_INFO,
) {
    // SAFETY: the system passes a valid counted string for the duration of the call, or
    // NULL when it has no name.
    let name = unsafe { full_image_name.as_ref() }.and_then(|s| {
        let units = usize::from(s.Length / 2);
        (!s.Buffer.is_null()).then(|| {
            // SAFETY: `Buffer` holds `Length` bytes (`Length / 2` UTF-16 units) of the
            // string, valid for the call; read only.
            unsafe { core::slice::from_raw_parts(s.Buffer.cast_const(), units) }
        })
    });
    // ProcessId is zero for a driver image (documented).
    if !is_vmmemctl_image(name, process_id.is_null()) {
        return;
    }
    // Flag first, then the pointer: a worker armed before this load sees the event; one
    // not yet armed sees the flag when it starts.
    NOTICES.record_vmmemctl();
    let event = WAKE.load(Ordering::SeqCst);
    // SAFETY: non-null only between `arm` and the drop of the registration, during which
    // the event is alive (`arm`'s contract) and this routine may run.
    if let Some(event) = unsafe { event.as_ref() } {
        event.set();
    }
}
