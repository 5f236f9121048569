//! The worker: a system thread at PASSIVE_LEVEL (page allocation and the backdoor need a
//! low IRQL and may take a while) that waits on {stop, power, LowMemoryCondition} and
//! ticks the engine. When to wait for what is [`crate::schedule`]'s decision.

use core::ptr;
use core::sync::atomic::Ordering;

use wdk_sys::ntddk::{KeWaitForMultipleObjects, PsTerminateSystemThread};
use wdk_sys::{
    _KWAIT_REASON, _WAIT_TYPE, PVOID, STATUS_SUCCESS, STATUS_WAIT_0, STATUS_WAIT_1, STATUS_WAIT_2,
};

use crate::etw;
use crate::events::Event;
use crate::kernel::{KERNEL_MODE, NT_FALSE, relative_timeout};
use crate::schedule::{RESUME_TIMEOUT, Wake};
use crate::state::{Driver, Shared, Work};

/// `KSTART_ROUTINE` of the worker thread; `context` is the [`Driver`], of which the
/// worker only ever sees `shared` and `work` (never a `&Driver`: unload writes other
/// fields while this runs).
///
/// # Safety
/// `context` points at a driver state from `Driver::create`, alive until unload has
/// joined this thread.
pub unsafe extern "C" fn worker_main(context: PVOID) {
    // SAFETY: our caller's contract; `Work`'s invariant: DriverEntry is done with it before
    // starting us, and unload touches it only after joining us.
    let (shared, work) = unsafe { Driver::worker_parts(context.cast::<Driver>()) };
    run(shared, work);
    // SAFETY: ends this system thread, as a system thread must; nothing runs after it.
    let _ = unsafe { PsTerminateSystemThread(STATUS_SUCCESS) };
}

/// Waits for any of `objects` (at most 3: no wait-block array needed).
fn wait_any(objects: &mut [PVOID], timeout: Option<vmballoon_core::units::Duration>) -> i32 {
    let mut t = timeout.map(relative_timeout);
    let t_ptr = t.as_mut().map_or(ptr::null_mut(), ptr::from_mut);
    let count = u32::try_from(objects.len().min(3)).unwrap_or(3);
    // SAFETY: every object is an initialised dispatcher object that outlives the wait;
    // count <= THREAD_WAIT_OBJECTS (3), so the thread's built-in wait blocks are used.
    unsafe {
        KeWaitForMultipleObjects(
            count,
            objects.as_mut_ptr(),
            _WAIT_TYPE::WaitAny,
            _KWAIT_REASON::Executive,
            KERNEL_MODE,
            NT_FALSE,
            t_ptr,
            ptr::null_mut(),
        )
    }
}

fn run(shared: &Shared, work: &mut Work) {
    let low_memory = work.engine.memory_mut().low_memory_object();
    loop {
        let now = vmballoon_core::platform::Clock::now(work.engine.clock());
        let plan = work.schedule.next_wait(now);
        let mut objects = [shared.stop.object(), shared.power.object(), low_memory];
        let watched = if plan.watch_low_memory { 3 } else { 2 };
        let watched = objects.get_mut(..watched).unwrap_or_default();
        let wake = match wait_any(watched, Some(plan.timeout)) {
            STATUS_WAIT_0 => return,
            STATUS_WAIT_1 => {
                if !power(shared, work) {
                    return;
                }
                continue;
            }
            STATUS_WAIT_2 => Wake::LowMemory,
            // STATUS_TIMEOUT, or anything unexpected: treated as a poll.
            _ => Wake::Timeout,
        };
        let now = vmballoon_core::platform::Clock::now(work.engine.clock());
        let actions = work.schedule.on_wake(now, wake);
        if actions.read_registry {
            work.reload_config();
        }
        if actions.tick {
            shared.publish_balloon(work.tick());
        }
    }
}

/// A power notification. Leaving S0: empty the balloon and close the session, tell the
/// callback, then wait for S0 (or unload) without polling. Returns `false` on unload.
fn power(shared: &Shared, work: &mut Work) -> bool {
    if !shared.leaving_s0.load(Ordering::SeqCst) {
        return true;
    }
    let freed = work.engine.shutdown();
    shared.publish_balloon(work.engine.size());
    etw::write(&Event::Stopped {
        freed,
        cause: "power",
    });
    shared.power_done.set();
    loop {
        let mut objects = [shared.stop.object(), shared.power.object()];
        match wait_any(&mut objects, Some(RESUME_TIMEOUT)) {
            STATUS_WAIT_0 => return false,
            STATUS_WAIT_1 if shared.leaving_s0.load(Ordering::SeqCst) => {
                // Another "leaving S0" before any resume: the balloon is still empty (no
                // tick ran since), so release the callback at once.
                shared.power_done.set();
            }
            // Back in S0: the next tick starts a new session.
            STATUS_WAIT_1 => return true,
            // No resume notification within RESUME_TIMEOUT (an aborted transition that never
            // sends one, or the system slept and resumed without it): balloon again rather
            // than stay empty until unload. A later "leaving S0" empties it again.
            _ => return true,
        }
    }
}
