//! `\Callback\PowerState` (`windows-memory.md` §3.3, §5.2): before the system leaves S0 —
//! sleep, hibernate or shutdown, which the notification does not tell apart — the balloon
//! is emptied and the host session closed, so no page stays charged to a session that will
//! not survive (a resumed hibernation image or the next boot starts a new one). A non-PnP
//! driver has no D0Exit; this callback is its hook.

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;

use vmballoon_core::units::Duration;
use wdk_sys::ntddk::{
    ExCreateCallback, ExRegisterCallback, ExUnregisterCallback, KeGetCurrentIrql,
    ObfDereferenceObject,
};
use wdk_sys::{
    FALSE, NTSTATUS, OBJ_CASE_INSENSITIVE, PASSIVE_LEVEL, PCALLBACK_OBJECT,
    PO_CB_SYSTEM_STATE_LOCK, PVOID, STATUS_UNSUCCESSFUL, TRUE,
};

use crate::kernel::{object_attributes, unicode_string, utf16};
use crate::state::Shared;

const NAME: &str = r"\Callback\PowerState";
static POWER_STATE: [u16; NAME.len()] = utf16(NAME);

/// How long the callback waits for the worker to empty the balloon before letting the
/// transition go on regardless (a hung host must not block shutdown).
const DEFLATE_TIMEOUT: Duration = Duration::from_secs(30);

/// A registration on `\Callback\PowerState`; dropping it unregisters.
pub struct Registration {
    object: NonNull<c_void>,
    handle: NonNull<c_void>,
}

impl Registration {
    /// Registers [`power_state_callback`] with `shared` as its context (PASSIVE_LEVEL).
    ///
    /// # Safety
    /// `shared` stays valid until the registration is dropped.
    pub unsafe fn register(shared: *const Shared) -> Result<Self, NTSTATUS> {
        let mut name = unicode_string(&POWER_STATE);
        let mut attrs = object_attributes(&mut name, OBJ_CASE_INSENSITIVE);
        let mut object: PCALLBACK_OBJECT = ptr::null_mut();
        // SAFETY: live locals; open only (Create = FALSE): the system defines this object
        // and drivers "should not request that the callback object be created".
        let status = unsafe { ExCreateCallback(&mut object, &mut attrs, FALSE as u8, TRUE as u8) };
        let object = match NonNull::new(object.cast::<c_void>()) {
            Some(o) if status >= 0 => o,
            _ => return Err(status.min(STATUS_UNSUCCESSFUL)),
        };
        // SAFETY: `object` is the referenced callback object; the routine is nonpageable
        // code of this image; the context contract is our caller's.
        let handle = unsafe {
            ExRegisterCallback(
                object.as_ptr().cast(),
                Some(power_state_callback),
                shared.cast_mut().cast(),
            )
        };
        match NonNull::new(handle) {
            Some(handle) => Ok(Self { object, handle }),
            None => {
                // SAFETY: drops the reference ExCreateCallback took.
                let _ = unsafe { ObfDereferenceObject(object.as_ptr()) };
                Err(STATUS_UNSUCCESSFUL)
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: our registration, removed once; the kernel waits for a callback in
        // progress to return before ExUnregisterCallback does.
        unsafe { ExUnregisterCallback(self.handle.as_ptr()) };
        // SAFETY: the reference from ExCreateCallback, released once.
        let _ = unsafe { ObfDereferenceObject(self.object.as_ptr()) };
    }
}

/// `PCALLBACK_FUNCTION` for `\Callback\PowerState`. Argument1 `PO_CB_SYSTEM_STATE_LOCK`:
/// Argument2 0 = about to leave S0, 1 = back in S0. Other notifications are ignored.
unsafe extern "C" fn power_state_callback(context: PVOID, argument1: PVOID, argument2: PVOID) {
    if argument1 as usize != PO_CB_SYSTEM_STATE_LOCK as usize {
        return;
    }
    // SAFETY: the context is the driver's Shared state, alive while we are registered.
    let shared = unsafe { &*context.cast::<Shared>() };
    let leaving = argument2.is_null();
    shared.leaving_s0.store(leaving, Ordering::SeqCst);
    if leaving {
        shared.power_done.clear();
    }
    shared.power.set();
    // Block only where blocking is allowed; the notifications for system state changes come
    // at PASSIVE_LEVEL [inf], but callbacks in general may run up to DISPATCH_LEVEL.
    // SAFETY: KeGetCurrentIrql has no preconditions.
    if leaving && u32::from(unsafe { KeGetCurrentIrql() }) == PASSIVE_LEVEL {
        let _ = shared.power_done.wait(Some(DEFLATE_TIMEOUT));
    }
}
