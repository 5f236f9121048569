//! What the kernel's callbacks tell the worker, and what the worker does about it.
//!
//! Two callbacks run on threads that are not the worker's and must return at once:
//! * `\Callback\PowerState` (`docs/windows-memory.md` §5.2), at IRQL <= DISPATCH_LEVEL, before
//!   the system set-power IRP of a sleep, hibernate or shutdown, and again when the system
//!   is back in S0;
//! * the load-image notify routine (`PsSetLoadImageNotifyRoutineEx`), at PASSIVE_LEVEL in
//!   the loading thread, for every image mapped, when VMware's `vmmemctl.sys` loads.
//!
//! Each only records its notice here (atomics: callable at any IRQL, no lock, no wait) and
//! signals the worker's notice event; the worker then asks [`Notices::take`] what to do.
//! Portable, so the decoding of the callback arguments and the worker's decisions are
//! unit-tested on Linux.

use core::sync::atomic::{AtomicBool, Ordering};

/// `PO_CB_SYSTEM_STATE_LOCK` (wdm.h): the `Argument1` of a `\Callback\PowerState`
/// notification of a system power state change.
pub const PO_CB_SYSTEM_STATE_LOCK: usize = 3;

/// A `\Callback\PowerState` notification the driver acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerNotice {
    /// The system is about to leave S0 (sleep, hibernate or shutdown; the notification does
    /// not tell them apart).
    LeavingS0,
    /// The system has just re-entered S0.
    BackInS0,
}

/// Decodes a `\Callback\PowerState` notification (WDK, `ExRegisterCallback`):
/// `Argument1 == PO_CB_SYSTEM_STATE_LOCK` with `Argument2` FALSE (0) when the system is
/// about to leave S0 and TRUE (non-zero) when it has just re-entered S0. Every other
/// `Argument1` (`PO_CB_AC_STATUS`, `PO_CB_SYSTEM_POWER_POLICY`, `PO_CB_LID_SWITCH_STATE`,
/// ...) is none of the driver's business: `None`.
#[must_use]
pub const fn power_notice(argument1: usize, argument2: usize) -> Option<PowerNotice> {
    match (argument1, argument2) {
        (PO_CB_SYSTEM_STATE_LOCK, 0) => Some(PowerNotice::LeavingS0),
        (PO_CB_SYSTEM_STATE_LOCK, _) => Some(PowerNotice::BackInS0),
        _ => None,
    }
}

/// What the worker does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive {
    /// `vmmemctl.sys` has loaded: stand down for good (START(0), every page back to the
    /// OS) and stay idle until unload. Wins over everything else.
    StandDown,
    /// The system is leaving (or has left) S0 since the worker last looked: empty the
    /// balloon and close the session now.
    PowerDown,
    /// The balloon was emptied for a power transition and the system is not back in S0
    /// yet: do not balloon; wait for the next notice.
    AwaitS0,
    /// Balloon as usual.
    Run,
}

/// The callbacks' notices: written by the callbacks, read by the worker.
///
/// "Leaving S0" is latched until the worker takes it, so a transition whose "back in S0"
/// arrives before the worker has run still empties the balloon once; the worker balloons
/// again only after a "back in S0" that followed the last "leaving S0" (never on a guess
/// that the transition is over).
#[derive(Debug)]
pub struct Notices {
    vmmemctl: AtomicBool,
    leave_pending: AtomicBool,
    in_s0: AtomicBool,
}

impl Default for Notices {
    fn default() -> Self {
        Self::new()
    }
}

impl Notices {
    /// No notice yet: the system runs in S0 (a driver loads only there).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            vmmemctl: AtomicBool::new(false),
            leave_pending: AtomicBool::new(false),
            in_s0: AtomicBool::new(true),
        }
    }

    /// Records a power notification (the `\Callback\PowerState` callback).
    pub fn record_power(&self, notice: PowerNotice) {
        match notice {
            PowerNotice::LeavingS0 => {
                self.in_s0.store(false, Ordering::SeqCst);
                self.leave_pending.store(true, Ordering::SeqCst);
            }
            PowerNotice::BackInS0 => self.in_s0.store(true, Ordering::SeqCst),
        }
    }

    /// Records that `vmmemctl.sys` has loaded (the load-image notify routine). Sticky.
    pub fn record_vmmemctl(&self) {
        self.vmmemctl.store(true, Ordering::SeqCst);
    }

    /// Whether `vmmemctl.sys` has been seen loading.
    #[must_use]
    pub fn vmmemctl_seen(&self) -> bool {
        self.vmmemctl.load(Ordering::SeqCst)
    }

    /// What the worker does now; takes a pending "leaving S0" (so it powers down once per
    /// notification).
    pub fn take(&self) -> Directive {
        if self.vmmemctl_seen() {
            Directive::StandDown
        } else if self.leave_pending.swap(false, Ordering::SeqCst) {
            Directive::PowerDown
        } else if !self.in_s0.load(Ordering::SeqCst) {
            Directive::AwaitS0
        } else {
            Directive::Run
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PO_CB_SYSTEM_POWER_POLICY: usize = 0;
    const PO_CB_AC_STATUS: usize = 1;
    const PO_CB_LID_SWITCH_STATE: usize = 4;

    #[test]
    fn only_system_state_lock_is_decoded() {
        assert_eq!(
            power_notice(PO_CB_SYSTEM_STATE_LOCK, 0),
            Some(PowerNotice::LeavingS0)
        );
        assert_eq!(
            power_notice(PO_CB_SYSTEM_STATE_LOCK, 1),
            Some(PowerNotice::BackInS0)
        );
        // TRUE is any non-zero value.
        assert_eq!(
            power_notice(PO_CB_SYSTEM_STATE_LOCK, usize::MAX),
            Some(PowerNotice::BackInS0)
        );
        for other in [
            PO_CB_SYSTEM_POWER_POLICY,
            PO_CB_AC_STATUS,
            PO_CB_LID_SWITCH_STATE,
            2,
            5,
            usize::MAX,
        ] {
            assert_eq!(power_notice(other, 0), None);
            assert_eq!(power_notice(other, 1), None);
        }
    }

    #[test]
    fn a_transition_powers_down_once_then_waits_for_s0() {
        let n = Notices::new();
        assert_eq!(n.take(), Directive::Run);
        n.record_power(PowerNotice::LeavingS0);
        assert_eq!(n.take(), Directive::PowerDown);
        // No re-inflation before the system is back in S0, however often the worker looks.
        for _ in 0..3 {
            assert_eq!(n.take(), Directive::AwaitS0);
        }
        n.record_power(PowerNotice::BackInS0);
        assert_eq!(n.take(), Directive::Run);
        assert_eq!(n.take(), Directive::Run);
    }

    #[test]
    fn a_transition_the_worker_did_not_see_still_empties_the_balloon_once() {
        let n = Notices::new();
        n.record_power(PowerNotice::LeavingS0);
        n.record_power(PowerNotice::BackInS0);
        assert_eq!(n.take(), Directive::PowerDown);
        assert_eq!(n.take(), Directive::Run);
    }

    #[test]
    fn a_second_leave_while_waiting_powers_down_again_and_a_stray_resume_changes_nothing() {
        let n = Notices::new();
        n.record_power(PowerNotice::BackInS0);
        assert_eq!(n.take(), Directive::Run);
        n.record_power(PowerNotice::LeavingS0);
        assert_eq!(n.take(), Directive::PowerDown);
        n.record_power(PowerNotice::LeavingS0);
        assert_eq!(n.take(), Directive::PowerDown);
        assert_eq!(n.take(), Directive::AwaitS0);
        n.record_power(PowerNotice::BackInS0);
        assert_eq!(n.take(), Directive::Run);
    }

    #[test]
    fn vmmemctl_wins_over_power_and_is_sticky() {
        let n = Notices::new();
        n.record_power(PowerNotice::LeavingS0);
        n.record_vmmemctl();
        assert!(n.vmmemctl_seen());
        for _ in 0..3 {
            assert_eq!(n.take(), Directive::StandDown);
        }
        n.record_power(PowerNotice::BackInS0);
        assert_eq!(n.take(), Directive::StandDown);
    }

    #[test]
    fn notices_from_other_threads_are_seen() {
        let n = std::sync::Arc::new(Notices::new());
        let m = std::sync::Arc::clone(&n);
        std::thread::spawn(move || {
            m.record_power(PowerNotice::LeavingS0);
            m.record_vmmemctl();
        })
        .join()
        .unwrap();
        assert_eq!(n.take(), Directive::StandDown);
    }
}
