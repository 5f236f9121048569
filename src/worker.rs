//! The worker: a system thread at PASSIVE_LEVEL (page allocation and the backdoor need a
//! low IRQL and may take a while) that waits on {stop, notice, LowMemoryCondition,
//! MaximumCommitCondition} and ticks the engine. When to wait for what is
//! `vmballoon_nt::schedule`'s decision; what the callbacks' notices mean is
//! `vmballoon_nt::notices`'.

use vmballoon_core::platform::Clock;
use vmballoon_core::units::Instant;
use wdk_sys::ntddk::PsTerminateSystemThread;
use wdk_sys::{PVOID, STATUS_SUCCESS};

use crate::etw;
use crate::image_watch::NOTICES;
use crate::kernel::{WAIT_OBJECTS, Waitable};
use crate::state::{Driver, Shared, Work};
use vmballoon_nt::events::{Event, StandDown};
use vmballoon_nt::notices::Directive;
use vmballoon_nt::schedule::{Condition, Wake};

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

/// What ended a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Woke {
    /// Unload asks the worker to end.
    Stop,
    /// A callback recorded a notice.
    Notice,
    /// A memory signal is set.
    Signal(Condition),
}

fn run(shared: &Shared, work: &mut Work) {
    // When the balloon was emptied for a power transition, while it waits for S0.
    let mut emptied_at: Option<Instant> = None;
    loop {
        match NOTICES.take() {
            Directive::StandDown => {
                stand_down(shared, work);
                return;
            }
            Directive::PowerDown => {
                let freed = work.engine.shutdown();
                etw::write(&Event::Stopped {
                    freed,
                    cause: "power",
                });
                emptied_at.get_or_insert(work.engine.clock().now());
            }
            // Not before the system is back in S0: only a notice (or unload) moves on.
            Directive::AwaitS0 => {
                let objects = [shared.stop.waitable(), shared.notice.waitable()];
                if work.wait_blocks.wait_any(&objects, None) == Some(0) {
                    return;
                }
            }
            Directive::Run => {
                if let Some(since) = emptied_at.take() {
                    let empty = work.engine.clock().now().saturating_since(since);
                    etw::write(&Event::PowerResumed {
                        empty_ms: empty.as_millis(),
                    });
                }
                if !step(shared, work) {
                    return;
                }
            }
        }
    }
}

/// One wait of the running balloon and what follows it. `false` on unload.
fn step(shared: &Shared, work: &mut Work) -> bool {
    let now = work.engine.clock().now();
    let plan = work.schedule.next_wait(now);
    let memory = work.engine.memory_mut();
    let candidates: [Option<(Waitable<'_>, Woke)>; WAIT_OBJECTS] = [
        Some((shared.stop.waitable(), Woke::Stop)),
        Some((shared.notice.waitable(), Woke::Notice)),
        plan.watches(Condition::LowMemory)
            .then(|| (memory.low_memory(), Woke::Signal(Condition::LowMemory))),
        plan.watches(Condition::MaximumCommit).then(|| {
            (
                memory.maximum_commit(),
                Woke::Signal(Condition::MaximumCommit),
            )
        }),
    ];
    let mut objects = [shared.stop.waitable(); WAIT_OBJECTS];
    let mut meaning = [Woke::Stop; WAIT_OBJECTS];
    let count = objects
        .iter_mut()
        .zip(meaning.iter_mut())
        .zip(candidates.iter().flatten())
        .map(|((object, woke), &(w, k))| {
            *object = w;
            *woke = k;
        })
        .count();
    let watched = objects.get(..count).unwrap_or_default();
    let index = work.wait_blocks.wait_any(watched, Some(plan.timeout));
    let wake = match index.and_then(|i| meaning.get(i).copied()) {
        Some(Woke::Stop) => return false,
        // The caller looks at the notice before anything else.
        Some(Woke::Notice) => return true,
        Some(Woke::Signal(condition)) => Wake::Signal(condition),
        // STATUS_TIMEOUT, or anything unexpected: treated as a poll.
        None => Wake::Timeout,
    };
    let now = work.engine.clock().now();
    let actions = work.schedule.on_wake(now, wake);
    if actions.read_registry {
        work.reload_config();
    }
    if actions.tick {
        let _balloon = work.tick();
        shared.counters.publish(&work.counters.values());
    }
    true
}

/// `vmmemctl.sys` has loaded: START(0), every page back to the OS, traced; then idle until
/// unload (only the stop event ends the wait).
fn stand_down(shared: &Shared, work: &mut Work) {
    let freed = work.engine.shutdown();
    etw::write(&Event::StoodDown {
        reason: StandDown::VmmemctlLoaded.name(),
        freed,
    });
    let _ = shared.stop.wait(None);
}
