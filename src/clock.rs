//! [`KernelClock`]: the core `Clock` over the interrupt-time clock.
//!
//! `KeQueryInterruptTime` is a macro on x64 (a read of `KUSER_SHARED_DATA.InterruptTime`),
//! so bindgen has no function for it; `KeQueryInterruptTimePrecise` (Windows 8.1+) is the
//! exported function for the same clock: monotonic, 100 ns units, counting time asleep.

use vmballoon_core::platform::Clock;
use vmballoon_core::units::Instant;
use wdk_sys::ntddk::KeQueryInterruptTimePrecise;

/// Interrupt time as a core [`Instant`].
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelClock;

impl Clock for KernelClock {
    fn now(&self) -> Instant {
        let mut qpc: u64 = 0;
        // SAFETY: callable at any IRQL; `qpc` is a live local it writes the QPC value to.
        let ticks = unsafe { KeQueryInterruptTimePrecise(&mut qpc) };
        Instant::from_nanos(ticks.saturating_mul(100))
    }
}
