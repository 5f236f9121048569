//! `\Callback\PowerState` (`docs/windows-memory.md` §3.3, §5.2): before the system leaves S0 —
//! sleep, hibernate or shutdown, which the notification does not tell apart — the balloon
//! is emptied and the host session closed, so no page stays charged to a session that will
//! not survive (a resumed hibernation image or the next boot starts a new one). A non-PnP
//! driver has no D0Exit; this callback is its hook.
//!
//! The callback never stalls the transition: it records the notification
//! (`vmballoon_nt::notices`) and signals the worker's notice event, then returns. The worker
//! empties the balloon as fast as it can (START(0), every page freed at once) and does not
//! balloon again until the "back in S0" notification (`Argument2` TRUE) has come. The
//! callback may run at any IRQL up to DISPATCH_LEVEL ("Using a System-Defined Callback
//! Object"); setting an event with `Wait` FALSE and storing atomics are allowed there.
//!
//! The callback reaches the driver state only under run-down protection ([`GATE`], a
//! static of this image): unregistering waits for the run-down to be released before the
//! state can be freed, which is documented (wdm.h run-down routines), where
//! `ExUnregisterCallback` waiting for a running callback is not.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::{self, NonNull};

use wdk_sys::ntddk::{
    ExAcquireRundownProtection, ExCreateCallback, ExInitializeRundownProtection,
    ExRegisterCallback, ExReleaseRundownProtection, ExUnregisterCallback,
    ExWaitForRundownProtectionRelease, ObfDereferenceObject,
};
use wdk_sys::{
    EX_RUNDOWN_REF, NTSTATUS, OBJ_CASE_INSENSITIVE, PCALLBACK_OBJECT, PO_CB_SYSTEM_STATE_LOCK,
    PVOID, STATUS_UNSUCCESSFUL,
};

use crate::image_watch::NOTICES;
use crate::kernel::{NT_FALSE, NT_TRUE, object_attributes, unicode_string, utf16};
use crate::state::Shared;
use vmballoon_nt::notices::power_notice;
use vmballoon_nt::ntstatus::nt_result;

// The portable decoder's constant is the WDK's.
const _: () =
    assert!(vmballoon_nt::notices::PO_CB_SYSTEM_STATE_LOCK == PO_CB_SYSTEM_STATE_LOCK as usize);

const NAME: &str = r"\Callback\PowerState";
static POWER_STATE: [u16; NAME.len()] = utf16(NAME);

/// Run-down protection for the callback's context: an `EX_RUNDOWN_REF` in this image's
/// (nonpaged) data, so even a callback that has not yet acquired it touches nothing the
/// driver frees.
struct Gate(UnsafeCell<EX_RUNDOWN_REF>);

// SAFETY: the EX_RUNDOWN_REF is only ever accessed through the Ex*RundownProtection
// routines, which synchronise with interlocked operations.
unsafe impl Sync for Gate {}

/// The one gate (one registration per image load: DriverEntry registers once).
// SAFETY: EX_RUNDOWN_REF is an integer/pointer union, for which all-zero is a valid value;
// ExInitializeRundownProtection still runs before any use.
static GATE: Gate = Gate(UnsafeCell::new(unsafe { core::mem::zeroed() }));

impl Gate {
    /// Enters the protected region; `None` once the run-down has started.
    ///
    /// # Safety
    /// [`Registration::register`] has initialised the gate.
    unsafe fn enter(&self) -> Option<Pass<'_>> {
        // SAFETY: initialised (our caller's contract), nonpaged: callable at <= DISPATCH_LEVEL.
        let acquired = unsafe { ExAcquireRundownProtection(self.0.get()) };
        (acquired != 0).then_some(Pass(self))
    }
}

/// Proof of run-down protection on [`GATE`]; released when dropped.
struct Pass<'a>(&'a Gate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        // SAFETY: releases the protection `enter` acquired, once; <= DISPATCH_LEVEL.
        unsafe { ExReleaseRundownProtection(self.0.0.get()) };
    }
}

/// A registration on `\Callback\PowerState`; dropping it unregisters and waits until no
/// callback uses the context any more.
pub struct Registration {
    object: NonNull<c_void>,
    handle: NonNull<c_void>,
}

impl Registration {
    /// Registers [`power_state_callback`] with `shared` as its context (PASSIVE_LEVEL).
    ///
    /// # Safety
    /// `shared` stays valid until the registration is dropped, and this is called at most
    /// once per image load (the run-down gate cannot be re-armed once run down).
    pub unsafe fn register(shared: *const Shared) -> Result<Self, NTSTATUS> {
        // SAFETY: the callback, the only other user of the gate, is not registered yet.
        unsafe { ExInitializeRundownProtection(GATE.0.get()) };
        let mut name = unicode_string(&POWER_STATE);
        let mut attrs = object_attributes(&mut name, OBJ_CASE_INSENSITIVE);
        let mut object: PCALLBACK_OBJECT = ptr::null_mut();
        // SAFETY: live locals; open only (Create = FALSE): the system defines this object
        // and drivers "should not request that the callback object be created".
        let status = unsafe { ExCreateCallback(&mut object, &mut attrs, NT_FALSE, NT_TRUE) };
        // Keep the real error; a success status without an object is still a failure.
        nt_result(status)?;
        let object = NonNull::new(object.cast::<c_void>()).ok_or(STATUS_UNSUCCESSFUL)?;
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
        // SAFETY: our registration, removed once: no callback starts after this returns.
        unsafe { ExUnregisterCallback(self.handle.as_ptr()) };
        // SAFETY: the gate was initialised by `register`. After this returns no callback is
        // inside its protected region and none can enter it (documented), so the context
        // may be freed. What is left — a callback between its return from the region and
        // its `ret`, or between entry and its failed acquire — runs only this image's code
        // and touches only GATE; that the image stays mapped for those few instructions is
        // not documented for ExUnregisterCallback (README, "Known limits"), the residual of
        // every unloadable client of a callback object. PASSIVE_LEVEL (unload or
        // DriverEntry).
        unsafe { ExWaitForRundownProtectionRelease(GATE.0.get()) };
        // SAFETY: the reference from ExCreateCallback, released once.
        let _ = unsafe { ObfDereferenceObject(self.object.as_ptr()) };
    }
}

/// `PCALLBACK_FUNCTION` for `\Callback\PowerState`: records a system state change
/// (`PO_CB_SYSTEM_STATE_LOCK`; `Argument2` FALSE = about to leave S0, TRUE = back in S0)
/// and wakes the worker. Other notifications (AC/DC, power policy, lid) are ignored. Never
/// waits: the transition and every other client of the callback object go on at once.
unsafe extern "C" fn power_state_callback(context: PVOID, argument1: PVOID, argument2: PVOID) {
    let Some(notice) = power_notice(argument1 as usize, argument2 as usize) else {
        return;
    };
    // SAFETY: we are registered, so `register` has initialised the gate.
    let Some(_pass) = (unsafe { GATE.enter() }) else {
        return;
    };
    NOTICES.record_power(notice);
    // SAFETY: the context is the driver's Shared state, which unload frees only after the
    // run-down this pass holds off.
    let shared = unsafe { &*context.cast::<Shared>() };
    shared.notice.set();
}
