//! When the worker thread ticks the engine, re-reads the registry and watches
//! `LowMemoryCondition`, and how long the power transition may wait for it: the timing
//! decisions of the worker as a small portable state machine, so the kernel loop in
//! `worker.rs` and the callback in `power.rs` only wait and dispatch.
//!
//! Rules (issue 5, "Worker"):
//! * tick every `PollIntervalMs`, and at once when the last tick reported more work;
//! * wake within 100 ms of `LowMemoryCondition`: it is one of the wait objects, so the
//!   wake-up latency is the scheduler's, not a poll — but only with `DeflateOnLowMemory`,
//!   the only setting under which a low-memory wake can do anything a poll would not (any
//!   tick sees the condition in its snapshot and stops inflating);
//! * never spin while it stays signalled (a notification event stays signalled while the
//!   condition holds, `windows-memory.md` §3.3): after a low-memory wake it is left out of
//!   the wait for a hold-off, [`LOW_MEMORY_HOLD_OFF`] (or the poll interval, if shorter);
//!   while it stays signalled and its wakes deflate nothing (balloon empty, or the
//!   condition is self-induced), the hold-off doubles up to [`LOW_MEMORY_HOLD_OFF_MAX`], so
//!   a condition that lasts for hours costs a tick every few seconds, not four a second;
//!   a deflating wake, or any tick that sees the condition cleared, resets it;
//! * re-read the registry at least every [`REGISTRY_PERIOD`]: the wait never outlasts it;
//! * never tick before one registry read has succeeded: until then the settings in effect
//!   would be the defaults (no cap), which a transient registry error must not impose over
//!   an administrator's cap; the read is retried every [`UNCONFIGURED_RETRY`] meanwhile.

use vmballoon_core::config::Config;
use vmballoon_core::engine::TickReport;
use vmballoon_core::units::{Duration, Frames, Instant};

/// The longest time between two registry reads (`architecture.md`: "at least every 10 s").
pub const REGISTRY_PERIOD: Duration = Duration::from_secs(10);

/// How often the registry is retried while no read has succeeded yet (no tick runs).
pub const UNCONFIGURED_RETRY: Duration = Duration::from_secs(1);

/// How long `LowMemoryCondition` is left out of the wait after it woke the worker.
pub const LOW_MEMORY_HOLD_OFF: Duration = Duration::from_millis(250);

/// The longest hold-off while the condition stays signalled and nothing changes.
pub const LOW_MEMORY_HOLD_OFF_MAX: Duration = Duration::from_secs(8);

/// Doublings of [`LOW_MEMORY_HOLD_OFF`] that reach [`LOW_MEMORY_HOLD_OFF_MAX`].
const MAX_BACKOFF: u32 = 5;

/// How long the worker, with the balloon emptied for a power transition, waits for the
/// "back in S0" notification before assuming it will not come (an aborted transition that
/// skips it) and ballooning again.
pub const RESUME_TIMEOUT: Duration = Duration::from_secs(60);

/// The power callback's wait for the worker, at least: finishing the tick in progress
/// (bounded by the engine at 250 ms plus its backdoor calls) and START(0).
pub const DEFLATE_TIMEOUT_BASE: Duration = Duration::from_secs(2);

/// Added per GiB of balloon: returning pages to Mm takes well under a second per GiB (inferred, not measured).
pub const DEFLATE_TIMEOUT_PER_GIB: Duration = Duration::from_millis(250);

/// The most the power callback waits: it holds up the transition (and every other
/// `\Callback\PowerState` client), so an unfinished deflate is let go — the worker keeps
/// freeing pages, and the host session is already closed by then.
pub const DEFLATE_TIMEOUT_MAX: Duration = Duration::from_secs(10);

/// How long the power callback waits for the worker to empty a balloon of `balloon`
/// frames before letting the transition go on.
#[must_use]
pub fn deflate_timeout(balloon: Frames) -> Duration {
    let gib = balloon.mib_ceil().div_ceil(1024);
    Duration::from_nanos(
        DEFLATE_TIMEOUT_BASE
            .as_nanos()
            .saturating_add(DEFLATE_TIMEOUT_PER_GIB.saturating_mul(gib).as_nanos()),
    )
    .min(DEFLATE_TIMEOUT_MAX)
}

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
    watch_low_memory: bool,
    last_tick: Option<Instant>,
    last_registry: Option<Instant>,
    /// A registry read has succeeded: the settings in effect are the administrator's.
    configured: bool,
    hold_until: Option<Instant>,
    /// Doublings of the hold-off (0 ..= [`MAX_BACKOFF`]).
    backoff: u32,
    /// The tick about to run was started by `LowMemoryCondition`.
    low_memory_wake: bool,
    more_work: bool,
}

impl Schedule {
    /// A schedule that reads the registry at the first wake, and ticks once a read has
    /// succeeded.
    #[must_use]
    pub const fn new(config: &Config) -> Self {
        Self {
            poll: config.poll_interval,
            watch_low_memory: config.deflate_on_low_memory,
            last_tick: None,
            last_registry: None,
            configured: false,
            hold_until: None,
            backoff: 0,
            low_memory_wake: false,
            more_work: false,
        }
    }

    /// Applies the settings of a registry read: the poll interval, and whether
    /// `LowMemoryCondition` is watched at all (`DeflateOnLowMemory`).
    pub fn set_config(&mut self, config: &Config) {
        self.poll = config.poll_interval;
        self.watch_low_memory = config.deflate_on_low_memory;
    }

    fn due(last: Option<Instant>, period: Duration, now: Instant) -> Duration {
        last.map_or(Duration::ZERO, |t| {
            let elapsed = now.saturating_since(t);
            Duration::from_nanos(period.as_nanos().saturating_sub(elapsed.as_nanos()))
        })
    }

    /// The current hold-off: the base (250 ms, or the poll interval if shorter), doubled
    /// `backoff` times, at most [`LOW_MEMORY_HOLD_OFF_MAX`].
    fn hold_off(&self) -> Duration {
        let base = self.poll.min(LOW_MEMORY_HOLD_OFF);
        base.saturating_mul(1 << self.backoff.min(MAX_BACKOFF))
            .min(LOW_MEMORY_HOLD_OFF_MAX.max(base))
    }

    /// What to wait for at `now`.
    #[must_use]
    pub fn next_wait(&self, now: Instant) -> Wait {
        if !self.configured {
            return Wait {
                watch_low_memory: false,
                timeout: Self::due(self.last_registry, UNCONFIGURED_RETRY, now),
            };
        }
        let holding = self.hold_until.is_some_and(|t| now < t);
        let mut timeout = if self.more_work {
            Duration::ZERO
        } else {
            Self::due(self.last_tick, self.poll, now)
        };
        timeout = timeout.min(Self::due(self.last_registry, REGISTRY_PERIOD, now));
        let watch = self.watch_low_memory && !holding;
        if let Some(until) = self.hold_until.filter(|_| holding && self.watch_low_memory) {
            // Wake when the hold-off ends, to watch the event again.
            timeout = timeout.min(until.saturating_since(now));
        }
        Wait {
            watch_low_memory: watch,
            timeout,
        }
    }

    /// What to do after waking at `now` for `wake`.
    pub fn on_wake(&mut self, now: Instant, wake: Wake) -> Actions {
        if wake == Wake::LowMemory {
            self.low_memory_wake = true;
            self.hold_until = Some(now.saturating_add(self.hold_off()));
        }
        let registry_period = if self.configured {
            REGISTRY_PERIOD
        } else {
            UNCONFIGURED_RETRY
        };
        Actions {
            read_registry: Self::due(self.last_registry, registry_period, now) == Duration::ZERO,
            tick: self.configured
                && (wake == Wake::LowMemory
                    || self.more_work
                    || Self::due(self.last_tick, self.poll, now) == Duration::ZERO),
        }
    }

    /// Records a registry read at `now`, and whether it succeeded.
    pub fn registry_read(&mut self, now: Instant, ok: bool) {
        self.last_registry = Some(now);
        self.configured |= ok;
    }

    /// Records a tick: when it ran, whether it stopped at its work bound, and what it saw
    /// of `LowMemoryCondition` (for the hold-off's back-off).
    pub fn ticked(&mut self, report: &TickReport) {
        self.last_tick = Some(report.at);
        self.more_work = report.more_work;
        let low_memory_wake = core::mem::replace(&mut self.low_memory_wake, false);
        if report.snapshot.is_some_and(|s| !s.low_memory) {
            // Cleared: react at once to the next one.
            self.backoff = 0;
            self.hold_until = None;
            return;
        }
        if report.low_memory_deflate {
            self.backoff = 0;
        } else if low_memory_wake {
            // Still signalled and this wake changed nothing: wake less often.
            self.backoff = self.backoff.saturating_add(1).min(MAX_BACKOFF);
        }
        if low_memory_wake {
            self.hold_until = Some(report.at.saturating_add(self.hold_off()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmballoon_core::platform::MemorySnapshot;

    fn at_ms(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn config(poll_ms: u64, deflate_on_low_memory: bool) -> Config {
        Config {
            poll_interval: ms(poll_ms),
            deflate_on_low_memory,
            ..Config::default()
        }
    }

    fn schedule(poll_ms: u64) -> Schedule {
        Schedule::new(&config(poll_ms, true))
    }

    /// A tick at `at` that saw no low memory.
    fn tick(at: Instant, more_work: bool) -> TickReport {
        TickReport {
            at,
            more_work,
            snapshot: Some(MemorySnapshot::default()),
            ..TickReport::default()
        }
    }

    /// A tick at `at` that saw `LowMemoryCondition` signalled, and deflated or not.
    fn low_tick(at: Instant, deflated: bool) -> TickReport {
        TickReport {
            at,
            low_memory_deflate: deflated,
            snapshot: Some(MemorySnapshot {
                low_memory: true,
                ..MemorySnapshot::default()
            }),
            ..TickReport::default()
        }
    }

    #[test]
    fn first_wake_reads_registry_then_ticks() {
        let mut s = schedule(1000);
        let w = s.next_wait(at_ms(0));
        assert_eq!(w.timeout, Duration::ZERO);
        let a = s.on_wake(at_ms(0), Wake::Timeout);
        assert!(a.read_registry && !a.tick);
        s.registry_read(at_ms(0), true);
        // The tick follows at once, at the next wake.
        let w = s.next_wait(at_ms(0));
        assert_eq!(w.timeout, Duration::ZERO);
        assert!(w.watch_low_memory);
        let a = s.on_wake(at_ms(0), Wake::Timeout);
        assert!(!a.read_registry && a.tick);
    }

    #[test]
    fn no_tick_until_a_registry_read_succeeds_and_later_failures_keep_ticking() {
        let mut s = schedule(1000);
        s.registry_read(at_ms(0), false);
        for t in [0, 500, 999] {
            let w = s.next_wait(at_ms(t));
            assert!(!w.watch_low_memory);
            assert_eq!(w.timeout, ms(1000 - t));
            assert!(!s.on_wake(at_ms(t), Wake::Timeout).tick);
        }
        // Retried every second, still no tick while it fails.
        let a = s.on_wake(at_ms(1000), Wake::Timeout);
        assert!(a.read_registry && !a.tick);
        s.registry_read(at_ms(1000), false);
        assert!(!s.on_wake(at_ms(1500), Wake::LowMemory).tick);
        assert!(s.on_wake(at_ms(2000), Wake::Timeout).read_registry);
        s.registry_read(at_ms(2000), true);
        assert!(s.on_wake(at_ms(2000), Wake::Timeout).tick);
        s.ticked(&tick(at_ms(2000), false));
        // Once configured, a failed read keeps the settings in effect and the ticks going.
        s.registry_read(at_ms(12_000), false);
        assert_eq!(s.next_wait(at_ms(12_000)).timeout, ms(0));
        assert!(s.on_wake(at_ms(12_000), Wake::Timeout).tick);
        s.ticked(&tick(at_ms(12_000), false));
        assert_eq!(s.next_wait(at_ms(12_000)).timeout, ms(1000));
    }

    #[test]
    fn polls_at_the_interval_and_reads_registry_every_10_s() {
        let mut s = schedule(1000);
        s.registry_read(at_ms(0), true);
        s.ticked(&tick(at_ms(0), false));
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
        s.ticked(&tick(at_ms(1000), false));
        assert!(s.on_wake(at_ms(10_000), Wake::Timeout).read_registry);
    }

    #[test]
    fn wait_never_outlasts_the_registry_period() {
        let mut s = schedule(10_000);
        s.registry_read(at_ms(0), true);
        s.ticked(&tick(at_ms(9_990), false));
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
        let mut s = schedule(1000);
        s.registry_read(at_ms(0), true);
        s.ticked(&tick(at_ms(0), true));
        assert_eq!(s.next_wait(at_ms(0)).timeout, Duration::ZERO);
        assert!(s.on_wake(at_ms(0), Wake::Timeout).tick);
        s.ticked(&tick(at_ms(1), false));
        assert_eq!(s.next_wait(at_ms(1)).timeout, ms(1000));
    }

    #[test]
    fn low_memory_wakes_a_tick_then_is_held_off_without_spinning() {
        let mut s = schedule(1000);
        s.registry_read(at_ms(0), true);
        s.ticked(&tick(at_ms(0), false));
        assert!(s.next_wait(at_ms(100)).watch_low_memory);
        let a = s.on_wake(at_ms(100), Wake::LowMemory);
        assert!(a.tick && !a.read_registry);
        s.ticked(&low_tick(at_ms(100), true));
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
        let mut s = schedule(100);
        s.registry_read(at_ms(0), true);
        let _ = s.on_wake(at_ms(0), Wake::LowMemory);
        s.ticked(&low_tick(at_ms(0), true));
        let w = s.next_wait(at_ms(0));
        assert_eq!(w.timeout, ms(100));
        assert!(s.next_wait(at_ms(100)).watch_low_memory);
    }

    /// Drives low-memory wakes that deflate nothing, each as soon as the event is watched
    /// again, from `start` ms; returns the hold-offs seen.
    fn persistent_wakes(s: &mut Schedule, start: u64, wakes: usize) -> Vec<u64> {
        let mut now = start;
        let mut holds = Vec::new();
        for _ in 0..wakes {
            let _ = s.on_wake(at_ms(now), Wake::LowMemory);
            s.ticked(&low_tick(at_ms(now), false));
            let w = s.next_wait(at_ms(now));
            assert!(!w.watch_low_memory);
            let until = s.hold_until.expect("held off");
            let hold = until.saturating_since(at_ms(now)).as_millis();
            holds.push(hold);
            now += hold;
            assert!(s.next_wait(at_ms(now)).watch_low_memory);
        }
        holds
    }

    #[test]
    fn a_persistent_condition_that_changes_nothing_backs_off_exponentially() {
        let mut s = schedule(1000);
        s.registry_read(at_ms(0), true);
        s.ticked(&tick(at_ms(0), false));
        let holds = persistent_wakes(&mut s, 100, 8);
        assert_eq!(holds, [500, 1000, 2000, 4000, 8000, 8000, 8000, 8000]);
        // Wakes within any 60 s of a condition that lasts for hours: at most 60 / 8 + 1.
        let holds = persistent_wakes(&mut s, 100_000, 20);
        let in_a_minute = holds
            .iter()
            .scan(0, |t, h| {
                *t += h;
                Some(*t)
            })
            .take_while(|t| *t <= 60_000)
            .count();
        assert!(in_a_minute <= 8, "{in_a_minute}");
    }

    #[test]
    fn a_deflating_wake_keeps_the_short_hold_off() {
        let mut s = schedule(1000);
        s.registry_read(at_ms(0), true);
        let _ = persistent_wakes(&mut s, 0, 4);
        // The balloon gives memory back: the next steps follow at the base hold-off.
        s.registry_read(at_ms(20_000), true);
        let _ = s.on_wake(at_ms(20_000), Wake::LowMemory);
        s.ticked(&low_tick(at_ms(20_000), true));
        assert_eq!(s.next_wait(at_ms(20_000)).timeout, LOW_MEMORY_HOLD_OFF);
        let _ = s.on_wake(at_ms(20_250), Wake::LowMemory);
        s.ticked(&low_tick(at_ms(20_250), true));
        assert_eq!(s.next_wait(at_ms(20_250)).timeout, LOW_MEMORY_HOLD_OFF);
    }

    #[test]
    fn a_tick_that_sees_the_condition_cleared_watches_again_at_once() {
        let mut s = schedule(1000);
        s.registry_read(at_ms(0), true);
        let _ = persistent_wakes(&mut s, 0, 5);
        // A poll tick in the middle of a long hold-off sees the condition cleared.
        let now = s.hold_until.expect("held off").as_nanos() / 1_000_000 - 3000;
        s.registry_read(at_ms(now), true);
        let _ = s.on_wake(at_ms(now), Wake::Timeout);
        s.ticked(&tick(at_ms(now), false));
        assert!(s.next_wait(at_ms(now)).watch_low_memory);
        // The next condition gets the base hold-off again.
        let _ = s.on_wake(at_ms(now + 10), Wake::LowMemory);
        s.ticked(&low_tick(at_ms(now + 10), false));
        assert_eq!(s.next_wait(at_ms(now + 10)).timeout, ms(500));
    }

    #[test]
    fn low_memory_is_not_watched_without_deflate_on_low_memory() {
        let mut s = Schedule::new(&config(1000, false));
        s.registry_read(at_ms(0), true);
        s.ticked(&tick(at_ms(0), false));
        for t in [0, 250, 999, 5000] {
            assert!(!s.next_wait(at_ms(t)).watch_low_memory);
        }
        // A poll tick still happens (it blocks inflation from the snapshot).
        assert_eq!(s.next_wait(at_ms(0)).timeout, ms(1000));
        // Turned back on by a registry read.
        s.set_config(&config(1000, true));
        assert!(s.next_wait(at_ms(10)).watch_low_memory);
        s.set_config(&config(1000, false));
        let _ = s.on_wake(at_ms(20), Wake::LowMemory);
        s.ticked(&low_tick(at_ms(20), false));
        assert!(!s.next_wait(at_ms(20)).watch_low_memory);
        assert_eq!(s.next_wait(at_ms(20)).timeout, ms(1000));
    }

    #[test]
    fn deflate_timeout_grows_with_the_balloon_and_is_capped() {
        assert_eq!(deflate_timeout(Frames::ZERO), DEFLATE_TIMEOUT_BASE);
        assert_eq!(deflate_timeout(Frames::new(1)), ms(2250));
        assert_eq!(deflate_timeout(Frames::from_mib(1024)), ms(2250));
        assert_eq!(deflate_timeout(Frames::from_mib(16 * 1024)), ms(6000));
        assert_eq!(
            deflate_timeout(Frames::from_mib(64 * 1024)),
            DEFLATE_TIMEOUT_MAX
        );
        assert_eq!(deflate_timeout(Frames::MAX), DEFLATE_TIMEOUT_MAX);
        assert!(DEFLATE_TIMEOUT_MAX < Duration::from_secs(30));
        assert!(RESUME_TIMEOUT > DEFLATE_TIMEOUT_MAX);
    }
}
