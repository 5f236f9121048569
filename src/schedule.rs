//! When the worker thread ticks the engine, re-reads the registry and watches
//! `LowMemoryCondition`: the timing decisions of the worker as a small portable state
//! machine, so the kernel loop in `worker.rs` only waits and dispatches.
//!
//! Rules (issue 5, "Worker"):
//! * tick every `PollIntervalMs`, and at once when the last tick reported more work;
//! * wake within 100 ms of `LowMemoryCondition`: it is one of the wait objects, so the
//!   wake-up latency is the scheduler's, not a poll;
//! * never spin while it stays signalled (a notification event stays signalled while the
//!   condition holds, `windows-memory.md` §3.3): after a low-memory wake it is left out of
//!   the wait for [`LOW_MEMORY_HOLD_OFF`] (or the poll interval, if shorter);
//! * re-read the registry at least every [`REGISTRY_PERIOD`]: the wait never outlasts it.

use vmballoon_core::units::{Duration, Instant};

/// The longest time between two registry reads (`architecture.md`: "at least every 10 s").
pub const REGISTRY_PERIOD: Duration = Duration::from_secs(10);

/// How long `LowMemoryCondition` is left out of the wait after it woke the worker.
pub const LOW_MEMORY_HOLD_OFF: Duration = Duration::from_millis(250);

/// Why the worker woke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The timeout elapsed.
    Timeout,
    /// `LowMemoryCondition` is signalled.
    LowMemory,
}

/// What to wait for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// Include `LowMemoryCondition` in the wait.
    pub watch_low_memory: bool,
    /// Relative timeout.
    pub timeout: Duration,
}

/// What to do after a wake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Re-read the registry (before ticking, so a new value applies to this tick).
    pub read_registry: bool,
    /// Run the engine's tick.
    pub tick: bool,
}

/// The worker's timing state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    poll: Duration,
    last_tick: Option<Instant>,
    last_registry: Option<Instant>,
    hold_until: Option<Instant>,
    more_work: bool,
}

impl Schedule {
    /// A schedule that ticks and reads the registry at the first wake.
    #[must_use]
    pub const fn new(poll: Duration) -> Self {
        Self {
            poll,
            last_tick: None,
            last_registry: None,
            hold_until: None,
            more_work: false,
        }
    }

    /// Sets the poll interval (after a registry read).
    pub fn set_poll(&mut self, poll: Duration) {
        self.poll = poll;
    }

    fn due(last: Option<Instant>, period: Duration, now: Instant) -> Duration {
        last.map_or(Duration::ZERO, |t| {
            let elapsed = now.saturating_since(t);
            Duration::from_nanos(period.as_nanos().saturating_sub(elapsed.as_nanos()))
        })
    }

    /// What to wait for at `now`.
    #[must_use]
    pub fn next_wait(&self, now: Instant) -> Wait {
        let holding = self.hold_until.is_some_and(|t| now < t);
        let mut timeout = if self.more_work {
            Duration::ZERO
        } else {
            Self::due(self.last_tick, self.poll, now)
        };
        timeout = timeout.min(Self::due(self.last_registry, REGISTRY_PERIOD, now));
        if let Some(until) = self.hold_until.filter(|_| holding) {
            // Wake when the hold-off ends, to watch the event again.
            timeout = timeout.min(until.saturating_since(now));
        }
        Wait {
            watch_low_memory: !holding,
            timeout,
        }
    }

    /// What to do after waking at `now` for `wake`.
    pub fn on_wake(&mut self, now: Instant, wake: Wake) -> Actions {
        if wake == Wake::LowMemory {
            self.hold_until = Some(now.saturating_add(self.poll.min(LOW_MEMORY_HOLD_OFF)));
        }
        Actions {
            read_registry: Self::due(self.last_registry, REGISTRY_PERIOD, now) == Duration::ZERO,
            tick: wake == Wake::LowMemory
                || self.more_work
                || Self::due(self.last_tick, self.poll, now) == Duration::ZERO,
        }
    }

    /// Records a registry read at `now`.
    pub fn registry_read(&mut self, now: Instant) {
        self.last_registry = Some(now);
    }

    /// Records a tick at `now` whose report said `more_work`.
    pub fn ticked(&mut self, now: Instant, more_work: bool) {
        self.last_tick = Some(now);
        self.more_work = more_work;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn first_wake_reads_registry_and_ticks() {
        let s = Schedule::new(ms(1000));
        let w = s.next_wait(at_ms(0));
        assert_eq!(w.timeout, Duration::ZERO);
        assert!(w.watch_low_memory);
        let mut s = s;
        let a = s.on_wake(at_ms(0), Wake::Timeout);
        assert!(a.read_registry && a.tick);
    }

    #[test]
    fn polls_at_the_interval_and_reads_registry_every_10_s() {
        let mut s = Schedule::new(ms(1000));
        s.registry_read(at_ms(0));
        s.ticked(at_ms(0), false);
        assert_eq!(s.next_wait(at_ms(0)).timeout, ms(1000));
        assert_eq!(s.next_wait(at_ms(400)).timeout, ms(600));
        let a = s.on_wake(at_ms(1000), Wake::Timeout);
        assert_eq!(
            a,
            Actions {
                read_registry: false,
                tick: true
            }
        );
        s.ticked(at_ms(1000), false);
        assert!(s.on_wake(at_ms(10_000), Wake::Timeout).read_registry);
    }

    #[test]
    fn wait_never_outlasts_the_registry_period() {
        let mut s = Schedule::new(ms(10_000));
        s.registry_read(at_ms(0));
        s.ticked(at_ms(9_990), false);
        // The next tick is due at 19.99 s, but the registry is due at 10 s.
        assert_eq!(s.next_wait(at_ms(9_990)).timeout, ms(10));
        let a = s.on_wake(at_ms(10_000), Wake::Timeout);
        assert_eq!(
            a,
            Actions {
                read_registry: true,
                tick: false
            }
        );
    }

    #[test]
    fn more_work_ticks_again_at_once() {
        let mut s = Schedule::new(ms(1000));
        s.registry_read(at_ms(0));
        s.ticked(at_ms(0), true);
        assert_eq!(s.next_wait(at_ms(0)).timeout, Duration::ZERO);
        assert!(s.on_wake(at_ms(0), Wake::Timeout).tick);
        s.ticked(at_ms(1), false);
        assert_eq!(s.next_wait(at_ms(1)).timeout, ms(1000));
    }

    #[test]
    fn low_memory_wakes_a_tick_then_is_held_off_without_spinning() {
        let mut s = Schedule::new(ms(1000));
        s.registry_read(at_ms(0));
        s.ticked(at_ms(0), false);
        assert!(s.next_wait(at_ms(100)).watch_low_memory);
        let a = s.on_wake(at_ms(100), Wake::LowMemory);
        assert!(a.tick && !a.read_registry);
        s.ticked(at_ms(100), false);
        // Still signalled: not watched for the hold-off, so the wait blocks.
        let w = s.next_wait(at_ms(100));
        assert!(!w.watch_low_memory);
        assert_eq!(w.timeout, LOW_MEMORY_HOLD_OFF);
        // At the end of the hold-off the event is watched again (and wakes at once if still
        // signalled: one tick per hold-off, never a spin).
        let w = s.next_wait(at_ms(350));
        assert!(w.watch_low_memory);
        assert_eq!(w.timeout, ms(750));
        // A timeout wake at the end of the hold-off does not tick early.
        assert!(!s.on_wake(at_ms(350), Wake::Timeout).tick);
    }

    #[test]
    fn hold_off_is_no_longer_than_the_poll_interval() {
        let mut s = Schedule::new(ms(100));
        s.registry_read(at_ms(0));
        let _ = s.on_wake(at_ms(0), Wake::LowMemory);
        s.ticked(at_ms(0), false);
        let w = s.next_wait(at_ms(0));
        assert_eq!(w.timeout, ms(100));
        assert!(s.next_wait(at_ms(100)).watch_low_memory);
    }
}
