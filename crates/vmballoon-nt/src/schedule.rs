//! When the worker thread ticks the engine, re-reads the registry and watches Windows'
//! memory signals: the timing decisions of the worker as a small portable state machine,
//! so the kernel loop in the glue's `src/worker.rs` only waits and dispatches.
//!
//! The signals are two documented standard event objects (`docs/windows-memory.md` §3.3):
//! `\KernelObjects\LowMemoryCondition` (free physical memory is low) and
//! `\KernelObjects\MaximumCommitCondition` (the commit charge is near the maximum commit
//! limit, which the page file can no longer grow). Both are notification events that stay
//! signalled while their condition holds, and both get the same rules ([`Condition`]).
//!
//! Rules:
//! * tick every `PollIntervalMs`, and at once when the last tick reported more work;
//! * tick every [`PACE_INTERVAL`] (or the poll interval, if shorter) while the balloon is
//!   below the host's target only because Windows has too little available memory free
//!   (the ceiling's available term binds, `docs/architecture.md`, "The safe ceiling"): the
//!   balloon then takes memory at the pace the modified page writer and the working-set
//!   manager free it, a quarter-second at a time, instead of a poll behind them;
//! * wake within 100 ms of either signal: each is one of the wait objects, so the wake-up
//!   latency is the scheduler's, not a poll — but only with `DeflateOnLowMemory`, the only
//!   setting under which a wake on memory pressure can do anything a poll would not (any
//!   tick sees both conditions in its snapshot and stops inflating);
//! * never spin while a signal stays set: after a wake on it, that signal is left out of
//!   the wait for a hold-off, [`LOW_MEMORY_HOLD_OFF`] (or the poll interval, if shorter);
//!   while it stays signalled and its wakes deflate nothing (balloon empty, or the
//!   condition is self-induced), the hold-off doubles up to [`LOW_MEMORY_HOLD_OFF_MAX`], so
//!   a condition that lasts for hours costs a tick every few seconds, not four a second;
//!   a deflating wake, or any tick that sees the condition cleared, resets it. Each signal
//!   has its own hold-off: one held off never delays a wake on the other;
//! * re-read the registry at least every [`REGISTRY_PERIOD`]: the wait never outlasts it;
//! * never tick before one registry read has succeeded: until then the settings in effect
//!   would be the defaults (no cap), which a transient registry error must not impose over
//!   an administrator's cap; the read is retried every [`UNCONFIGURED_RETRY`] meanwhile.

use vmballoon_core::config::Config;
use vmballoon_core::engine::TickReport;
use vmballoon_core::platform::MemorySnapshot;
use vmballoon_core::policy::ClampReason;
use vmballoon_core::units::{Duration, Instant};

/// The longest time between two registry reads (`docs/architecture.md`: "at least every 10 s").
pub const REGISTRY_PERIOD: Duration = Duration::from_secs(10);

/// The tick period while the balloon waits for Windows to free available memory (see the
/// module docs): a snapshot and a TARGET call four times a second, only while inflating.
pub const PACE_INTERVAL: Duration = Duration::from_millis(250);

/// How often the registry is retried while no read has succeeded yet (no tick runs).
pub const UNCONFIGURED_RETRY: Duration = Duration::from_secs(1);

/// How long a memory signal is left out of the wait after it woke the worker.
pub const LOW_MEMORY_HOLD_OFF: Duration = Duration::from_millis(250);

/// The longest hold-off while the condition stays signalled and nothing changes.
pub const LOW_MEMORY_HOLD_OFF_MAX: Duration = Duration::from_secs(8);

/// Doublings of [`LOW_MEMORY_HOLD_OFF`] that reach [`LOW_MEMORY_HOLD_OFF_MAX`].
const MAX_BACKOFF: u32 = 5;

/// A memory signal Windows gives as a standard event object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `\KernelObjects\LowMemoryCondition`.
    LowMemory,
    /// `\KernelObjects\MaximumCommitCondition`.
    MaximumCommit,
}

impl Condition {
    /// Both, in the order the worker waits on them.
    pub const ALL: [Self; 2] = [Self::LowMemory, Self::MaximumCommit];

    /// Name for traces.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::LowMemory => "low-memory",
            Self::MaximumCommit => "maximum-commit",
        }
    }

    /// Whether `snapshot` has this condition signalled.
    #[must_use]
    pub const fn signalled(self, snapshot: &MemorySnapshot) -> bool {
        match self {
            Self::LowMemory => snapshot.low_memory,
            Self::MaximumCommit => snapshot.high_commit,
        }
    }

    /// Whether the tick of `report` gave memory back to the guest for this condition.
    /// `LowMemoryCondition` has its own flag in the report; for the commit condition any
    /// deflate counts (it lowers the commit charge, whatever bound asked for it).
    const fn deflated(self, report: &TickReport) -> bool {
        match self {
            Self::LowMemory => report.low_memory_deflate,
            Self::MaximumCommit => !report.deflated.is_zero(),
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::LowMemory => 0,
            Self::MaximumCommit => 1,
        }
    }
}

/// Why the worker woke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The timeout elapsed.
    Timeout,
    /// A memory signal is set.
    Signal(Condition),
}

/// What to wait for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// Include `LowMemoryCondition` in the wait.
    pub watch_low_memory: bool,
    /// Include `MaximumCommitCondition` in the wait.
    pub watch_high_commit: bool,
    /// Relative timeout.
    pub timeout: Duration,
}

impl Wait {
    /// Whether `condition` is part of the wait.
    #[must_use]
    pub const fn watches(&self, condition: Condition) -> bool {
        match condition {
            Condition::LowMemory => self.watch_low_memory,
            Condition::MaximumCommit => self.watch_high_commit,
        }
    }
}

/// What to do after a wake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Re-read the registry (before ticking, so a new value applies to this tick).
    pub read_registry: bool,
    /// Run the engine's tick.
    pub tick: bool,
}

/// The hold-off state of one memory signal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Watch {
    hold_until: Option<Instant>,
    /// Doublings of the hold-off (0 ..= [`MAX_BACKOFF`]).
    backoff: u32,
    /// The tick about to run was started by this signal.
    woke: bool,
}

impl Watch {
    fn holding(&self, now: Instant) -> bool {
        self.hold_until.is_some_and(|t| now < t)
    }

    /// The current hold-off: `base` doubled `backoff` times, at most
    /// [`LOW_MEMORY_HOLD_OFF_MAX`] (or `base`, if that is longer).
    fn hold_off(&self, base: Duration) -> Duration {
        base.saturating_mul(1 << self.backoff.min(MAX_BACKOFF))
            .min(LOW_MEMORY_HOLD_OFF_MAX.max(base))
    }

    fn woke_at(&mut self, now: Instant, base: Duration) {
        self.woke = true;
        self.hold_until = Some(now.saturating_add(self.hold_off(base)));
    }

    /// After a tick: `cleared` (the snapshot shows the condition clear), `deflated` (the
    /// tick gave memory back for it).
    fn ticked(&mut self, at: Instant, cleared: bool, deflated: bool, base: Duration) {
        let woke = core::mem::replace(&mut self.woke, false);
        if cleared {
            // Cleared: react at once to the next one.
            self.backoff = 0;
            self.hold_until = None;
            return;
        }
        if deflated {
            self.backoff = 0;
        } else if woke {
            // Still signalled and this wake changed nothing: wake less often.
            self.backoff = self.backoff.saturating_add(1).min(MAX_BACKOFF);
        }
        if woke {
            self.hold_until = Some(at.saturating_add(self.hold_off(base)));
        }
    }
}

/// The worker's timing state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    poll: Duration,
    /// Watch the memory signals at all (`DeflateOnLowMemory`).
    watch_signals: bool,
    last_tick: Option<Instant>,
    last_registry: Option<Instant>,
    /// A registry read has succeeded: the settings in effect are the administrator's.
    configured: bool,
    /// Per [`Condition`], in [`Condition::index`] order.
    watches: [Watch; 2],
    more_work: bool,
    /// The last tick stopped below the host's target at the available-memory bound.
    pacing: bool,
}

impl Schedule {
    /// A schedule that reads the registry at the first wake, and ticks once a read has
    /// succeeded.
    #[must_use]
    pub const fn new(config: &Config) -> Self {
        Self {
            poll: config.poll_interval,
            watch_signals: config.deflate_on_low_memory,
            last_tick: None,
            last_registry: None,
            configured: false,
            watches: [Watch {
                hold_until: None,
                backoff: 0,
                woke: false,
            }; 2],
            more_work: false,
            pacing: false,
        }
    }

    /// Applies the settings of a registry read: the poll interval, and whether the memory
    /// signals are watched at all (`DeflateOnLowMemory`).
    pub fn set_config(&mut self, config: &Config) {
        self.poll = config.poll_interval;
        self.watch_signals = config.deflate_on_low_memory;
    }

    fn due(last: Option<Instant>, period: Duration, now: Instant) -> Duration {
        last.map_or(Duration::ZERO, |t| {
            let elapsed = now.saturating_since(t);
            Duration::from_nanos(period.as_nanos().saturating_sub(elapsed.as_nanos()))
        })
    }

    /// The tick period now: the poll interval, or [`PACE_INTERVAL`] while pacing.
    fn period(&self) -> Duration {
        if self.pacing {
            self.poll.min(PACE_INTERVAL)
        } else {
            self.poll
        }
    }

    /// The base hold-off: 250 ms, or the poll interval if shorter.
    fn base_hold_off(&self) -> Duration {
        self.poll.min(LOW_MEMORY_HOLD_OFF)
    }

    fn watch(&self, condition: Condition) -> Watch {
        self.watches
            .get(condition.index())
            .copied()
            .unwrap_or_default()
    }

    fn watch_mut(&mut self, condition: Condition) -> Option<&mut Watch> {
        self.watches.get_mut(condition.index())
    }

    /// What to wait for at `now`.
    #[must_use]
    pub fn next_wait(&self, now: Instant) -> Wait {
        if !self.configured {
            return Wait {
                watch_low_memory: false,
                watch_high_commit: false,
                timeout: Self::due(self.last_registry, UNCONFIGURED_RETRY, now),
            };
        }
        let mut timeout = if self.more_work {
            Duration::ZERO
        } else {
            Self::due(self.last_tick, self.period(), now)
        };
        timeout = timeout.min(Self::due(self.last_registry, REGISTRY_PERIOD, now));
        let mut watched = [false; 2];
        for (slot, condition) in watched.iter_mut().zip(Condition::ALL) {
            let w = self.watch(condition);
            let holding = w.holding(now);
            *slot = self.watch_signals && !holding;
            if let Some(until) = w.hold_until.filter(|_| holding && self.watch_signals) {
                // Wake when the hold-off ends, to watch the event again.
                timeout = timeout.min(until.saturating_since(now));
            }
        }
        let [watch_low_memory, watch_high_commit] = watched;
        Wait {
            watch_low_memory,
            watch_high_commit,
            timeout,
        }
    }

    /// What to do after waking at `now` for `wake`.
    pub fn on_wake(&mut self, now: Instant, wake: Wake) -> Actions {
        let base = self.base_hold_off();
        if let Wake::Signal(condition) = wake
            && let Some(w) = self.watch_mut(condition)
        {
            w.woke_at(now, base);
        }
        let registry_period = if self.configured {
            REGISTRY_PERIOD
        } else {
            UNCONFIGURED_RETRY
        };
        Actions {
            read_registry: Self::due(self.last_registry, registry_period, now) == Duration::ZERO,
            tick: self.configured
                && (matches!(wake, Wake::Signal(_))
                    || self.more_work
                    || Self::due(self.last_tick, self.period(), now) == Duration::ZERO),
        }
    }

    /// Records a registry read at `now`, and whether it succeeded.
    pub fn registry_read(&mut self, now: Instant, ok: bool) {
        self.last_registry = Some(now);
        self.configured |= ok;
    }

    /// Records a tick: when it ran, whether it stopped at its work bound, and what it saw
    /// of each memory signal (for the hold-offs' back-off).
    pub fn ticked(&mut self, report: &TickReport) {
        self.last_tick = Some(report.at);
        self.more_work = report.more_work;
        self.pacing = report.balloon < report.target
            && report
                .ceiling
                .is_some_and(|c| c.reason == ClampReason::Available && c.value < report.target);
        let base = self.base_hold_off();
        for condition in Condition::ALL {
            let cleared = report.snapshot.is_some_and(|s| !condition.signalled(&s));
            let deflated = condition.deflated(report);
            if let Some(w) = self.watch_mut(condition) {
                w.ticked(report.at, cleared, deflated, base);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmballoon_core::units::Frames;

    const LOW: Wake = Wake::Signal(Condition::LowMemory);
    const COMMIT: Wake = Wake::Signal(Condition::MaximumCommit);

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
        assert!(w.watch_low_memory && w.watch_high_commit);
        let a = s.on_wake(at_ms(0), Wake::Timeout);
        assert!(!a.read_registry && a.tick);
    }

    #[test]
    fn no_tick_until_a_registry_read_succeeds_and_later_failures_keep_ticking() {
        let mut s = schedule(1000);
        s.registry_read(at_ms(0), false);
        for t in [0, 500, 999] {
            let w = s.next_wait(at_ms(t));
            assert!(!w.watch_low_memory && !w.watch_high_commit);
            assert_eq!(w.timeout, ms(1000 - t));
            assert!(!s.on_wake(at_ms(t), Wake::Timeout).tick);
        }
        // Retried every second, still no tick while it fails.
        let a = s.on_wake(at_ms(1000), Wake::Timeout);
        assert!(a.read_registry && !a.tick);
        s.registry_read(at_ms(1000), false);
        assert!(!s.on_wake(at_ms(1500), LOW).tick);
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

    /// A tick at `at` that stopped with the balloon at `balloon` MiB under a ceiling of
    /// `ceiling` MiB bound by `reason`, the host asking for `target` MiB.
    fn bound_tick(
        at: Instant,
        balloon: u64,
        ceiling: u64,
        reason: ClampReason,
        target: u64,
    ) -> TickReport {
        TickReport {
            balloon: Frames::from_mib(balloon),
            target: Frames::from_mib(target),
            ceiling: Some(vmballoon_core::policy::Ceiling {
                value: Frames::from_mib(ceiling),
                reason,
            }),
            ..tick(at, false)
        }
    }

    /// A configured schedule of `poll_ms` whose first tick stopped below the host's target
    /// at the available-memory bound.
    fn paced(poll_ms: u64) -> Schedule {
        let mut s = schedule(poll_ms);
        s.registry_read(at_ms(0), true);
        s.ticked(&bound_tick(
            at_ms(0),
            690,
            690,
            ClampReason::Available,
            2662,
        ));
        s
    }

    #[test]
    fn paces_at_a_quarter_second_while_available_memory_holds_the_balloon_below_target() {
        let mut s = paced(1000);
        assert_eq!(s.next_wait(at_ms(0)).timeout, PACE_INTERVAL);
        assert!(!s.on_wake(at_ms(200), Wake::Timeout).tick);
        assert!(s.on_wake(at_ms(250), Wake::Timeout).tick);
        // Any other bound, or the target reached: back to the poll interval.
        for (balloon, ceiling, reason, target) in [
            (1260, 1260, ClampReason::ResidentAvailable, 2662),
            (700, 700, ClampReason::HostTarget, 700),
            (700, 800, ClampReason::Available, 700),
            (690, 690, ClampReason::PressureHold, 2662),
        ] {
            s.ticked(&bound_tick(at_ms(250), balloon, ceiling, reason, target));
            assert_eq!(s.next_wait(at_ms(250)).timeout, ms(1000), "{reason:?}");
            assert!(!s.on_wake(at_ms(500), Wake::Timeout).tick);
        }
        // A poll interval shorter than the pace is kept.
        let s = paced(100);
        assert_eq!(s.next_wait(at_ms(0)).timeout, ms(100));
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
        let a = s.on_wake(at_ms(100), LOW);
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
        let _ = s.on_wake(at_ms(0), LOW);
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
            let _ = s.on_wake(at_ms(now), LOW);
            s.ticked(&low_tick(at_ms(now), false));
            let w = s.next_wait(at_ms(now));
            assert!(!w.watch_low_memory);
            let until = s.watch(Condition::LowMemory).hold_until.expect("held off");
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
        let _ = s.on_wake(at_ms(20_000), LOW);
        s.ticked(&low_tick(at_ms(20_000), true));
        assert_eq!(s.next_wait(at_ms(20_000)).timeout, LOW_MEMORY_HOLD_OFF);
        let _ = s.on_wake(at_ms(20_250), LOW);
        s.ticked(&low_tick(at_ms(20_250), true));
        assert_eq!(s.next_wait(at_ms(20_250)).timeout, LOW_MEMORY_HOLD_OFF);
    }

    #[test]
    fn a_tick_that_sees_the_condition_cleared_watches_again_at_once() {
        let mut s = schedule(1000);
        s.registry_read(at_ms(0), true);
        let _ = persistent_wakes(&mut s, 0, 5);
        // A poll tick in the middle of a long hold-off sees the condition cleared.
        let now = s
            .watch(Condition::LowMemory)
            .hold_until
            .expect("held off")
            .as_nanos()
            / 1_000_000
            - 3000;
        s.registry_read(at_ms(now), true);
        let _ = s.on_wake(at_ms(now), Wake::Timeout);
        s.ticked(&tick(at_ms(now), false));
        assert!(s.next_wait(at_ms(now)).watch_low_memory);
        // The next condition gets the base hold-off again.
        let _ = s.on_wake(at_ms(now + 10), LOW);
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
        let _ = s.on_wake(at_ms(20), LOW);
        s.ticked(&low_tick(at_ms(20), false));
        assert!(!s.next_wait(at_ms(20)).watch_low_memory);
        assert_eq!(s.next_wait(at_ms(20)).timeout, ms(1000));
    }

    /// A tick at `at` that saw `MaximumCommitCondition` signalled, and deflated `frames`.
    fn commit_tick(at: Instant, frames: u64) -> TickReport {
        TickReport {
            at,
            deflated: Frames::new(frames),
            snapshot: Some(MemorySnapshot {
                high_commit: true,
                ..MemorySnapshot::default()
            }),
            ..TickReport::default()
        }
    }

    #[test]
    fn maximum_commit_wakes_a_tick_and_is_held_off_on_its_own() {
        let mut s = schedule(1000);
        s.registry_read(at_ms(0), true);
        s.ticked(&tick(at_ms(0), false));
        let w = s.next_wait(at_ms(100));
        assert!(w.watch_high_commit && w.watch_low_memory);
        let a = s.on_wake(at_ms(100), COMMIT);
        assert!(a.tick && !a.read_registry);
        s.ticked(&commit_tick(at_ms(100), 512));
        // Still signalled: left out of the wait for the hold-off; LowMemoryCondition is not.
        let w = s.next_wait(at_ms(100));
        assert!(!w.watch_high_commit && w.watch_low_memory);
        assert_eq!(w.timeout, LOW_MEMORY_HOLD_OFF);
        // A low-memory wake inside the commit hold-off still ticks at once.
        assert!(s.on_wake(at_ms(150), LOW).tick);
        let mut both = low_tick(at_ms(150), true);
        both.snapshot = both.snapshot.map(|snap| MemorySnapshot {
            high_commit: true,
            ..snap
        });
        s.ticked(&both);
        let w = s.next_wait(at_ms(150));
        assert!(!w.watch_high_commit && !w.watch_low_memory);
        // Each hold-off ends on its own.
        let w = s.next_wait(at_ms(350));
        assert!(w.watch_high_commit && !w.watch_low_memory);
        assert_eq!(w.timeout, ms(50));
        let w = s.next_wait(at_ms(400));
        assert!(w.watch_high_commit && w.watch_low_memory);
    }

    #[test]
    fn a_persistent_commit_condition_that_changes_nothing_backs_off_exponentially() {
        let mut s = schedule(1000);
        s.registry_read(at_ms(0), true);
        s.ticked(&tick(at_ms(0), false));
        let mut now = 100;
        let mut holds = Vec::new();
        for _ in 0..8 {
            let _ = s.on_wake(at_ms(now), COMMIT);
            s.ticked(&commit_tick(at_ms(now), 0));
            assert!(!s.next_wait(at_ms(now)).watch_high_commit);
            let until = s
                .watch(Condition::MaximumCommit)
                .hold_until
                .expect("held off");
            let hold = until.saturating_since(at_ms(now)).as_millis();
            holds.push(hold);
            now += hold;
            assert!(s.next_wait(at_ms(now)).watch_high_commit);
        }
        assert_eq!(holds, [500, 1000, 2000, 4000, 8000, 8000, 8000, 8000]);
        // The low-memory watch is untouched by it.
        assert_eq!(s.watch(Condition::LowMemory), Watch::default());
        // A deflating wake resets the back-off; a tick that sees the condition cleared
        // watches again at once.
        s.registry_read(at_ms(now), true);
        let _ = s.on_wake(at_ms(now), COMMIT);
        s.ticked(&commit_tick(at_ms(now), 1));
        assert_eq!(s.next_wait(at_ms(now)).timeout, LOW_MEMORY_HOLD_OFF);
        s.ticked(&tick(at_ms(now + 10), false));
        assert!(s.next_wait(at_ms(now + 10)).watch_high_commit);
        assert_eq!(s.watch(Condition::MaximumCommit), Watch::default());
    }

    #[test]
    fn maximum_commit_is_not_watched_without_deflate_on_low_memory() {
        let mut s = Schedule::new(&config(1000, false));
        s.registry_read(at_ms(0), true);
        s.ticked(&tick(at_ms(0), false));
        assert!(!s.next_wait(at_ms(0)).watch_high_commit);
        s.set_config(&config(1000, true));
        assert!(s.next_wait(at_ms(0)).watch_high_commit);
    }

    #[test]
    fn condition_names_and_snapshot_flags() {
        assert_eq!(Condition::LowMemory.name(), "low-memory");
        assert_eq!(Condition::MaximumCommit.name(), "maximum-commit");
        let snap = MemorySnapshot {
            high_commit: true,
            ..MemorySnapshot::default()
        };
        assert!(Condition::MaximumCommit.signalled(&snap));
        assert!(!Condition::LowMemory.signalled(&snap));
        let w = Wait {
            watch_low_memory: true,
            watch_high_commit: false,
            timeout: Duration::ZERO,
        };
        assert!(w.watches(Condition::LowMemory) && !w.watches(Condition::MaximumCommit));
    }
}
