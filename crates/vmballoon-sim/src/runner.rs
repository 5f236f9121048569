//! The scenario runner: simulated time, events, ticks, and the numbers of a run.
//!
//! Time advances from one instant to the next of: a driver tick (every `PollIntervalMs`),
//! a scenario event, a pending guest request's retry, and the guest's once-a-second
//! working-set manager. At each instant, in this order:
//!
//! 1. the scenario's events due now apply, in file order;
//! 2. failed guest requests due for a retry are retried;
//! 3. on whole seconds, and [`TRIM_WAKE_DELAY`] after available memory fell below the
//!    low-memory threshold, the working-set manager trims pageable memory
//!    ([`crate::guest::GuestModel::balance`]). Windows' balance-set manager waits on a
//!    one-second timer and on the working-set-manager event, which the memory manager
//!    signals when the free lists run short (Windows Internals, "Balance set manager");
//!    it is a separate thread, hence the delay;
//! 4. the driver ticks if its poll is due, or if `LowMemoryCondition` has become signalled
//!    since the driver last looked (the driver waits on the event, so it is woken between
//!    polls; at most one extra wake per instant). A tick that reports `more_work` is run
//!    again at once: if the tick took modelled time, as the next instant (so events that
//!    fell due meanwhile apply first, as they would while a real worker runs); if it took
//!    none, at the same instant, up to [`MAX_TICKS_PER_INSTANT`] times;
//! 5. one timeline row is recorded per instant at which the driver ran, stamped with the
//!    poll (or wake) that started its work, continuations included, and with the modelled
//!    time its work ended.
//!
//! Resident available memory is sampled at every instant, after the events, retries and
//! trimming (before the driver runs) and again after the driver ran; each row carries the
//! lowest sample since the previous row ([`TimelineRow::resident_available_low`]), so a
//! dip that the next tick repairs still shows in the timeline, the plot and the summary's
//! minimum, which is the lowest of those samples. If the guest changed after the last
//! tick, a last row at the end of the run (the driver did not run: no calls, no reason)
//! records it.
//!
//! `seconds_to_target` is the time from the host's request (the first `target_mib` event
//! that asks for a balloon) to the first row at which the balloon is within 2 MiB of its
//! own goal: min(target, ceiling) for vmballoon, the host's target (after the host's own
//! cap) for drivers without a ceiling; `None` if there was no request or the balloon
//! never got there.
//!
//! Time advances during a tick by the modelled cost of its work ([`crate::cost`]): every
//! backdoor call, allocation, free and snapshot charges the shared clock, which is the
//! engine's clock, so the engine's `TICK_BUDGET` bounds a tick in modelled time.
//! [`run_with`] takes the [`CostModel`]; [`run`] uses the default one.
//!
//! At the end the driver unloads (START(0), every page freed), and the leak check counts
//! frames still charged to the balloon that it does not store.

use vmballoon_core::fake::ManualClock;
use vmballoon_core::platform::Clock;
use vmballoon_core::policy::{self, ClampReason, SLACK};
use vmballoon_core::units::{Duration, Frames, Instant};
use vmballoon_nt::counters::CounterData;
use vmballoon_nt::schedule::{Condition, Wake};

use crate::cost::CostModel;
use crate::driver::{BalloonDriver, DriverKind, DriverTick};
use crate::guest::GuestModel;
use crate::host::HostModel;
use crate::report::{ChunkCount, RequestReport, Summary, TimelineRow};
use crate::scenario::{Action, Scenario};
use crate::world::{SharedWorld, World};

/// Ticks at one instant before the runner moves on even if the driver still has work.
pub const MAX_TICKS_PER_INSTANT: u32 = 64;

/// How long after available memory falls below the low-memory threshold the woken
/// working-set manager trims.
pub const TRIM_WAKE_DELAY: Duration = Duration::from_millis(10);

/// Everything one run produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The summary (`--json`).
    pub summary: Summary,
    /// One row per instant at which the driver ran (`--timeline`, `--svg`).
    pub timeline: Vec<TimelineRow>,
    /// The driver's `VM Balloon` performance counters at the end of the run, before
    /// unload (`--counters`; vmballoon only: `docs/windows-memory.md §9.6`).
    pub counters: Option<CounterData>,
}

/// Runs `scenario` with `kind` under the default [`CostModel`] and returns its summary
/// and timeline.
#[must_use]
pub fn run(scenario: &Scenario, kind: DriverKind) -> RunResult {
    Runner::new(scenario, kind).run()
}

/// Runs `scenario` with `kind`, each operation costing what `cost` says.
#[must_use]
pub fn run_with(scenario: &Scenario, kind: DriverKind, cost: CostModel) -> RunResult {
    Runner::with_cost(scenario, kind, cost).run()
}

/// One run in progress.
pub struct Runner<'a> {
    scenario: &'a Scenario,
    clock: ManualClock,
    world: SharedWorld,
    policy: Box<dyn BalloonDriver>,
    timeline: Vec<TimelineRow>,
    low_seen: bool,
    wakes: u64,
    ticks: u64,
    tick_bound_hits: u64,
    /// The reason the driver reported at its last tick.
    last_reason: Option<ClampReason>,
    /// The driver reported more work after a tick that took modelled time: run it again
    /// as the next instant.
    continue_now: bool,
    /// The largest balloon recorded so far, and the stored chunks at that moment.
    peak: (Frames, Vec<ChunkCount>),
    /// The poll (or wake) instant whose work is still being continued.
    chain: Option<u64>,
    /// The lowest resident available memory sampled since the last row (`None`: nothing
    /// sampled since).
    low_water: Option<Frames>,
    /// When the host first asked for a balloon (a non-zero target).
    requested_at: Option<u64>,
    /// The guest's all-time lowest resident available memory at the last sample.
    seen_min: Frames,
    /// Time-weighted figures since the start ([`Runner::account`]).
    spans: Spans,
}

/// The running time integrals of a run: seconds with `LowMemoryCondition` signalled while
/// the balloon inflated, and the balloon over time (for its mean). The state between two
/// instants is the state the first one left.
#[derive(Clone, Copy, Debug, Default)]
struct Spans {
    /// Where the integrals stop (ns).
    mark: u64,
    /// `LowMemoryCondition` was signalled when the last instant ended.
    low: bool,
    /// The balloon when the last instant ended.
    balloon: Frames,
    /// When the balloon last grew (the end of the instant at which it did), ns.
    grew_at: Option<u64>,
    /// Nanoseconds with `LowMemoryCondition` signalled within one poll interval of the
    /// balloon's last growth.
    low_inflating_ns: u64,
    /// The integral of the balloon over time, frame-nanoseconds.
    balloon_ns: u128,
}

/// A ceiling rule of the core's policy (`ceiling_with`, `settled_ceiling`).
type CeilingRule = fn(
    Frames,
    Frames,
    &vmballoon_core::platform::MemorySnapshot,
    &vmballoon_core::config::Config,
    &policy::Accounting,
) -> policy::Ceiling;
impl<'a> Runner<'a> {
    /// Builds the world and the driver for `scenario`, under the default [`CostModel`].
    #[must_use]
    pub fn new(scenario: &'a Scenario, kind: DriverKind) -> Self {
        Self::with_cost(scenario, kind, CostModel::default())
    }

    /// Builds the world and the driver for `scenario`, each operation costing what `cost`
    /// says.
    #[must_use]
    pub fn with_cost(scenario: &'a Scenario, kind: DriverKind, cost: CostModel) -> Self {
        let clock = ManualClock::new();
        let guest = GuestModel::new(scenario.guest).with_mdl_accounting(scenario.mdl_accounting);
        let host = HostModel::new(scenario.host, guest.total());
        let world = World::with_cost(guest, host, clock.clone(), cost);
        world.borrow_mut().registry = scenario.raw_config;
        let policy = kind.build(&world, &clock, scenario.config);
        let low_seen = world.borrow().guest.low_memory();
        Self {
            scenario,
            clock,
            world,
            policy,
            timeline: Vec::new(),
            low_seen,
            wakes: 0,
            ticks: 0,
            tick_bound_hits: 0,
            last_reason: None,
            continue_now: false,
            peak: (Frames::ZERO, Vec::new()),
            chain: None,
            low_water: None,
            requested_at: None,
            seen_min: Frames::MAX,
            spans: Spans::default(),
        }
    }

    /// The shared world (for tests that inspect the models).
    #[must_use]
    pub fn world(&self) -> &SharedWorld {
        &self.world
    }

    fn now(&self) -> u64 {
        self.clock.now().as_nanos()
    }

    fn advance_to(&self, t: u64) {
        let now = self.now();
        if t > now {
            self.clock.advance(Duration::from_nanos(t - now));
        }
    }

    /// Runs to the end of the scenario, unloads the driver and returns the numbers.
    #[must_use]
    pub fn run(mut self) -> RunResult {
        const SECOND: u64 = 1_000_000_000;
        let end = self.scenario.duration.as_nanos();
        let poll = self.policy.poll_interval().as_nanos().max(1_000_000);
        let events = &self.scenario.events;
        let mut next_event = 0usize;
        let mut next_tick = 0u64;
        let mut next_second = SECOND;
        let mut trim_wake: Option<u64> = None;
        loop {
            let retry = self
                .world
                .borrow()
                .guest
                .next_retry()
                .map(Instant::as_nanos);
            let event = events.get(next_event).map(|e| e.at.as_nanos());
            let t = [Some(next_tick), Some(next_second), event, retry, trim_wake]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u64::MAX)
                // A tick that took modelled time may have run past instants: they happen now.
                .max(self.now());
            if t > end {
                break;
            }
            self.account(t);
            self.advance_to(t);
            while let Some(e) = events.get(next_event)
                && e.at.as_nanos() <= t
            {
                self.apply(&e.action);
                next_event += 1;
            }
            {
                let mut w = self.world.borrow_mut();
                w.guest.retry_due(Instant::from_nanos(t));
                if t >= next_second || trim_wake.is_some_and(|w| w <= t) {
                    w.guest.balance_at(Instant::from_nanos(t));
                    trim_wake = None;
                }
                if t >= next_second {
                    next_second = t - t % SECOND + SECOND;
                }
            }
            self.sample();
            let due = t >= next_tick;
            if due {
                next_tick = t - t % poll + poll;
            }
            self.instant(self.chain.unwrap_or(t), due);
            // A driver on the real worker's schedule says when it wakes next (its poll,
            // the registry period, the end of a memory signal's hold-off, or at once).
            if let Some(wait) = self.policy.next_wait(self.clock.now()) {
                next_tick = self.now().saturating_add(wait.timeout.as_nanos());
            }
            if std::mem::take(&mut self.continue_now) {
                self.chain.get_or_insert(t);
                next_tick = self.now();
            } else {
                self.chain = None;
            }
            self.settle();
            let w = self.world.borrow();
            if trim_wake.is_none() && w.guest.low_memory() && !w.guest.pageable_resident().is_zero()
            {
                trim_wake = Some(t.saturating_add(TRIM_WAKE_DELAY.as_nanos()));
            }
        }
        self.account(end);
        self.advance_to(end);
        // The guest changed after the last tick: record the state at the end, so the
        // timeline (and the minimum drawn from it) covers the whole run.
        if self.low_water.is_some() && self.timeline.last().is_none_or(|r| r.t.as_nanos() < end) {
            let row = self.row(end, None, false, 0);
            self.timeline.push(row);
        }
        self.finish()
    }

    /// Closes the time integrals up to `until` (ns) with the state the last instant left:
    /// `LowMemoryCondition` signalled within one poll interval of the balloon's last growth
    /// counts toward `low_memory_inflating_s` (`docs/scenario-format.md`), and the balloon
    /// toward its mean.
    fn account(&mut self, until: u64) {
        let sp = &mut self.spans;
        if until <= sp.mark {
            return;
        }
        let poll = self.policy.poll_interval().as_nanos();
        if sp.low
            && let Some(g) = sp.grew_at
        {
            let stop = until.min(g.saturating_add(poll));
            sp.low_inflating_ns = sp
                .low_inflating_ns
                .saturating_add(stop.saturating_sub(sp.mark));
        }
        sp.balloon_ns = sp.balloon_ns.saturating_add(
            u128::from(sp.balloon.get()).saturating_mul(u128::from(until - sp.mark)),
        );
        sp.mark = until;
    }

    /// Records the state an instant left, for [`Runner::account`].
    fn settle(&mut self) {
        let balloon = self.policy.balloon();
        let now = self.now();
        let low = self.world.borrow().guest.low_memory();
        let sp = &mut self.spans;
        if balloon > sp.balloon {
            sp.grew_at = Some(now);
        }
        sp.balloon = balloon;
        sp.low = low;
    }

    /// Samples resident available memory into the low-water mark of the next row: the
    /// value now, and the guest's all-time minimum if it fell since the last sample (a dip
    /// inside a tick or an instant that the state now no longer shows).
    fn sample(&mut self) {
        let (now, all_time) = {
            let g = &self.world.borrow().guest;
            (g.resident_available(), g.min_resident_available())
        };
        let mut low = now;
        if all_time < self.seen_min {
            low = low.min(all_time);
            self.seen_min = all_time;
        }
        self.low_water = Some(self.low_water.map_or(low, |l| l.min(low)));
    }

    fn apply(&mut self, action: &Action) {
        let now = self.clock.now();
        let mut w = self.world.borrow_mut();
        w.apply(action);
        if matches!(
            action,
            Action::Target(_) | Action::HostTargetAfterLocks { .. }
        ) && self.requested_at.is_none()
            && !w.host.effective_target().is_zero()
        {
            self.requested_at = Some(now.as_nanos());
        }
    }

    /// Runs the driver now if its poll is due or a low-memory wake is, and records the row
    /// stamped `t` (the instant, or the poll that started the work it continues).
    fn instant(&mut self, t: u64, due: bool) {
        let mut ran = false;
        let mut woke = false;
        let mut calls = 0u64;
        let mut last = DriverTick::default();
        let mut poll_due = due;
        for _pass in 0..2 {
            let Some(wake) = self.wake_now(poll_due) else {
                break;
            };
            if matches!(wake, Wake::Signal(_)) {
                self.wakes += 1;
                woke = true;
            }
            poll_due = false;
            let Some(r) = self.wake_policy(wake) else {
                continue;
            };
            calls = calls.saturating_add(u64::from(r.calls));
            last = r;
            ran = true;
        }
        if ran {
            self.last_reason = last.reason;
            self.sample();
            let row = self.row(t, last.reason, woke, calls);
            self.low_water = None;
            if row.balloon > self.peak.0 {
                self.peak = (row.balloon, self.census());
            }
            self.timeline.push(row);
        }
    }

    /// The stored chunks now, for the bookkeeping figures.
    fn census(&self) -> Vec<ChunkCount> {
        self.world
            .borrow()
            .guest
            .chunk_census()
            .into_iter()
            .map(|(size, mdl_frames, chunks)| ChunkCount {
                page_size: size.name().to_owned(),
                mdl_frames,
                chunks,
            })
            .collect()
    }

    /// One driver tick, repeated at once while it reports more work and took no modelled
    /// time (bounded); after a tick that took time and left work, the runner continues at
    /// the next instant ([`Runner::continue_now`]).
    /// Why the driver wakes now, if it does. A driver on the real worker's schedule waits
    /// as `src/worker.rs` does: a watched memory signal that is set ends the wait at once,
    /// else its timeout; the others wake on their poll grid, and (vmballoon's stock peers
    /// never do) on a `LowMemoryCondition` that has just become set.
    fn wake_now(&mut self, poll_due: bool) -> Option<Wake> {
        let (low, commit) = {
            let g = &self.world.borrow().guest;
            (g.low_memory(), g.high_commit())
        };
        match self.policy.next_wait(self.clock.now()) {
            Some(wait) => {
                if wait.watches(Condition::LowMemory) && low {
                    Some(Wake::Signal(Condition::LowMemory))
                } else if wait.watches(Condition::MaximumCommit) && commit {
                    Some(Wake::Signal(Condition::MaximumCommit))
                } else if poll_due || wait.timeout == Duration::ZERO {
                    Some(Wake::Timeout)
                } else {
                    None
                }
            }
            None => {
                let edge = low && !self.low_seen && self.policy.wakes_on_low_memory();
                self.low_seen = low;
                if edge {
                    Some(Wake::Signal(Condition::LowMemory))
                } else {
                    poll_due.then_some(Wake::Timeout)
                }
            }
        }
    }

    /// Wakes the driver for `wake` and continues its work while it reports more and no
    /// modelled time has passed; `None` if the wake did not tick.
    fn wake_policy(&mut self, wake: Wake) -> Option<DriverTick> {
        let mut last = DriverTick::default();
        let mut calls = 0u32;
        let start = self.now();
        let mut wake = wake;
        for pass in 0..MAX_TICKS_PER_INSTANT {
            last = match self.policy.wake(self.clock.now(), wake) {
                Some(r) => r,
                None if pass == 0 => return None,
                None => {
                    last.calls = calls;
                    return Some(last);
                }
            };
            // Work left over is continued like a poll (the schedule waits 0 for it).
            wake = Wake::Timeout;
            self.ticks += 1;
            calls = calls.saturating_add(last.calls);
            if !last.more_work {
                last.calls = calls;
                return Some(last);
            }
            if self.now() > start {
                self.continue_now = true;
                last.calls = calls;
                return Some(last);
            }
        }
        self.tick_bound_hits += 1;
        last.calls = calls;
        Some(last)
    }

    /// vmballoon's ceiling without the available-memory term (its goal).
    fn settled_ceiling(&self) -> Option<Frames> {
        self.ceiling_by(policy::settled_ceiling).map(|c| c.value)
    }

    /// The vmballoon ceiling for the state now, exactly as the engine computes it before
    /// each batch; `None` for drivers without one.
    fn ceiling(&self) -> Option<policy::Ceiling> {
        self.ceiling_by(policy::ceiling_with)
    }

    /// `rule` applied to the state now as the driver sees it: its settings and the
    /// accounting its calibration found; `None` for drivers without a ceiling.
    fn ceiling_by(&self, rule: CeilingRule) -> Option<policy::Ceiling> {
        let accounting = self.policy.accounting()?;
        let w = self.world.borrow();
        let snap = w.guest.snapshot();
        Some(rule(
            w.host.effective_target(),
            self.policy.balloon(),
            &snap,
            &self.policy.settings().unwrap_or(self.scenario.config),
            &accounting,
        ))
    }

    /// The row for the state now, stamped `t`; its low-water mark covers the samples since
    /// the previous row and the state now.
    fn row(&self, t: u64, reason: Option<ClampReason>, woke: bool, calls: u64) -> TimelineRow {
        let ceiling = self.ceiling();
        let settled_ceiling = self.settled_ceiling();
        let w = self.world.borrow();
        let g = &w.guest;
        let resident_available = g.resident_available();
        TimelineRow {
            t: Duration::from_nanos(t),
            t_end: Duration::from_nanos(self.now()),
            cost: w.meter,
            target: w.host.effective_target(),
            balloon: self.policy.balloon(),
            ceiling: ceiling.map(|c| c.value),
            ceiling_reason: ceiling.map(|c| c.reason),
            settled_ceiling,
            resident_available,
            resident_available_low: self
                .low_water
                .map_or(resident_available, |low| low.min(resident_available)),
            available: g.available(),
            pinned: g.pinned(),
            committed: g.committed(),
            commit_limit: g.commit_limit(),
            low_memory: g.low_memory(),
            hypercalls: w.host.total_calls(),
            guest_alloc_failures: g.alloc_failures(),
            reason,
            woke,
            calls,
        }
    }

    /// The balloon's own goal at a row: min(target, ceiling) where the driver has a
    /// ceiling (the settled one: the available-memory term only paces the way there), the
    /// host's target otherwise.
    fn goal(r: &TimelineRow) -> Frames {
        r.settled_ceiling.map_or(r.target, |c| c.min(r.target))
    }

    /// The first row, at or after the host's request, at which the balloon was within
    /// 2 MiB of its goal; `None` without a request or if it never got there.
    fn reached_goal(&self) -> Option<&TimelineRow> {
        let asked = self.requested_at?;
        self.timeline.iter().find(|r| {
            let g = Self::goal(r);
            r.t.as_nanos() >= asked && r.balloon.max(g).saturating_sub(r.balloon.min(g)) <= SLACK
        })
    }

    fn finish(mut self) -> RunResult {
        let final_ceiling = self.ceiling();
        let final_balloon = self.policy.balloon();
        let reached = self.reached_goal();
        let asked = self.requested_at.unwrap_or(0);
        let since_request = |t: Duration| t.as_nanos().saturating_sub(asked) as f64 / 1e9;
        let seconds_to_target = reached.map(|r| since_request(r.t));
        let modelled_seconds_to_target = reached.map(|r| since_request(r.t_end));
        let goal_mib = reached.map(|r| Self::goal(r).mib_floor());
        let goal = if self.policy.kind() == DriverKind::Vmballoon {
            "min(target, ceiling)"
        } else {
            "target"
        };
        let min_resident_available = self.timeline.iter().map(|r| r.resident_available_low).min();
        let counters = self.policy.perf_counters();
        self.policy.shutdown();
        let w = self.world.borrow();
        let g = &w.guest;
        let after = g.balloon_frames();
        let leaked = after.saturating_sub(g.stored_frames());
        let mut model_errors = g.self_check();
        // The timeline samples every new all-time low, so its minimum is the guest's.
        if let Some(sampled) = min_resident_available
            && g.min_resident_available() != Frames::MAX
            && sampled != g.min_resident_available()
        {
            model_errors.push(format!(
                "the timeline's lowest resident available ({} frames) is not the guest's ({})",
                sampled.get(),
                g.min_resident_available().get()
            ));
        }
        if !w.host.held_frames().is_zero() {
            model_errors.push(format!(
                "the host still holds {} frames after unload",
                w.host.held_frames().get()
            ));
        }
        let max_balloon = self
            .timeline
            .iter()
            .map(|r| r.balloon)
            .max()
            .unwrap_or(Frames::ZERO)
            .max(final_balloon);
        let final_reason = match final_ceiling {
            Some(c) => Some(c.reason),
            None => self.last_reason,
        };
        let calls_by_command = w
            .host
            .calls()
            .iter()
            .map(|(c, s, n)| (format!("{}/{}", c.name(), s.name()), n))
            .collect();
        let frames_moved = w
            .host
            .frames_locked()
            .saturating_add(w.host.frames_unlocked());
        let final_gib = final_balloon.get() as f64 / 262_144.0;
        let duration_ns = self.scenario.duration.as_nanos().max(1);
        let (trimmed, written) = g.paging_totals();
        let summary = Summary {
            scenario: self.scenario.name.clone(),
            policy: self.policy.kind().name().to_owned(),
            max_balloon_mib: max_balloon.mib_floor(),
            final_balloon_mib: final_balloon.mib_floor(),
            final_target_mib: w.host.effective_target().mib_floor(),
            final_ceiling_mib: final_ceiling.map(|c| c.value.mib_floor()),
            final_ceiling_reason: final_reason.map(|r| r.name().to_owned()),
            min_resident_available_mib: min_resident_available
                .unwrap_or_else(|| g.resident_available())
                .mib_floor(),
            guest_alloc_failures: g.alloc_failures(),
            hypercalls: w.host.total_calls(),
            frames_locked: w.host.frames_locked(),
            frames_unlocked: w.host.frames_unlocked(),
            seconds_to_target,
            frames_moved,
            frames_moved_per_final_gib: (final_balloon.get() > 0)
                .then(|| frames_moved as f64 / final_gib),
            low_memory_inflating_s: self.spans.low_inflating_ns as f64 / 1e9,
            mean_balloon_mib: (self.spans.balloon_ns / u128::from(duration_ns)) as f64 / 256.0,
            guest_short_grants: g.short_grants(),
            mdl_accounting: if g.mdl_charged() {
                "charged"
            } else {
                "not-charged"
            }
            .to_owned(),
            guest_trimmed_mib: trimmed / 256,
            guest_written_mib: written / 256,
            protocol_violations: w.checker.count(),
            contract_violations: w.contract.count(),
            leaked_frames: leaked.get(),
            duration_s: self.scenario.duration.as_nanos() as f64 / 1e9,
            ticks: self.ticks,
            low_memory_wakes: self.wakes,
            tick_bound_hits: self.tick_bound_hits,
            host_resets: w.host.resets_answered(),
            host_busy_answers: w.host.busy_answered(),
            host_refused_pages: w.host.refused_pages(),
            balloon_frames_after_shutdown: after.get(),
            violations: w
                .checker
                .violations()
                .iter()
                .map(ToString::to_string)
                .chain(
                    w.contract
                        .violations()
                        .iter()
                        .map(|v| format!("contract: {v}")),
                )
                .collect(),
            model_errors,
            calls_by_command,
            policy_counters: self
                .policy
                .counters()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            goal: goal.to_owned(),
            goal_mib,
            target_requested_at_s: self.requested_at.map(|t| t as f64 / 1e9),
            modelled_seconds_to_target,
            modelled_busy_seconds: w.meter.total() as f64 / 1e9,
            modelled_cost_seconds: w.meter.seconds(),
            balloon_trimmed_mib: g.balloon_trimmed_frames().mib_floor(),
            peak_balloon_frames: self.peak.0.get(),
            peak_chunks: self.peak.1.clone(),
            guest_requests: g
                .request_outcomes()
                .into_iter()
                .map(|r| RequestReport {
                    id: r.id,
                    pinned: r.pinned,
                    asked_at_s: r.asked_at.as_nanos() as f64 / 1e9,
                    failures: r.failures,
                    short_grants: r.short_grants,
                    satisfied_at_s: r.satisfied_at.map(|t| t.as_nanos() as f64 / 1e9),
                })
                .collect(),
        };
        drop(w);
        RunResult {
            summary,
            timeline: self.timeline,
            counters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_text(text: &str) -> [RunResult; 2] {
        let s = Scenario::parse(text, "t").unwrap();
        DriverKind::DEFAULT_PAIR.map(|k| run(&s, k))
    }

    #[test]
    fn extreme_but_valid_scenarios_run_without_panic() {
        // The largest sizes a scenario may hold (crate::scenario::MAX_SIZE_MIB).
        let huge = crate::scenario::MAX_SIZE_MIB;
        let count = u64::MAX / 2;
        let text = format!(
            "name = \"x\"\nduration_s = 20\n[guest]\nram_mib = 2\n\
             [config]\nPollIntervalMs = 100\nReserveMB = 2\n\
             [[events]]\nat_s = 0\ntarget_mib = {huge}\n\
             [[events]]\nat_s = 0\nlock_mib = {huge}\nkind = \"large-pages\"\n\
             [[events]]\nat_s = 0.0001\nlock_mib = {huge}\n\
             [[events]]\nat_s = 1\ncommit_mib = {huge}\n\
             [[events]]\nat_s = 1\nhost_busy_calls = {count}\n\
             [[events]]\nat_s = 2\nhost_refuse_next = {count}\n\
             [[events]]\nat_s = 3\nhost_reset = true\n\
             [[events]]\nat_s = 20\ntarget_mib = 0\n"
        );
        for r in run_text(&text) {
            let s = &r.summary;
            assert_eq!(s.protocol_violations, 0, "{:?}", s.violations);
            assert_eq!(s.leaked_frames, 0);
            assert!(s.model_errors.is_empty(), "{:?}", s.model_errors);
            assert!(s.guest_alloc_failures > 0);
        }
    }

    #[test]
    fn a_silent_host_and_an_idle_guest() {
        // No target ever: nothing to do, nothing broken, and no time to a goal nobody set.
        for r in run_text("name = \"idle\"\nduration_s = 5\n[guest]\nram_mib = 1024\n") {
            assert_eq!(r.summary.max_balloon_mib, 0);
            assert_eq!(r.summary.target_requested_at_s, None);
            assert_eq!(r.summary.seconds_to_target, None);
            assert_eq!(r.timeline.len(), 6, "ticks at 0..=5 s");
        }
    }

    #[test]
    fn low_memory_while_inflating_counts_only_when_the_balloon_grew() {
        // The naive balloon inflates into a guest with no room to spare: LowMemoryCondition
        // is signalled while it grows, and that is counted.
        let grow = "name = \"g\"\nduration_s = 20\n[guest]\nram_mib = 1024\npagefile_mib = 1024\n\
                    committed_mib = 512\n[[events]]\nat_s = 1\ntarget_mib = 1000\n";
        let s = Scenario::parse(grow, "g").unwrap();
        let naive = run(&s, DriverKind::Naive).summary;
        assert!(
            naive.low_memory_inflating_s > 0.0,
            "{}",
            naive.low_memory_inflating_s
        );
        assert!(naive.low_memory_inflating_s <= 20.0);
        // Pressure that is not the balloon's: the balloon is full and steady when an
        // application commits more than the guest has; LowMemoryCondition is signalled
        // for seconds, none of them counted.
        let steady = "name = \"s\"\nduration_s = 40\n[guest]\nram_mib = 1024\npagefile_mib = 4096\n\
                      [[events]]\nat_s = 0\ntarget_mib = 256\n\
                      [[events]]\nat_s = 20\ncommit_mib = 3000\n";
        let s = Scenario::parse(steady, "s").unwrap();
        let r = run(&s, DriverKind::Naive);
        assert!(
            r.timeline
                .iter()
                .any(|row| row.low_memory && row.t.as_nanos() >= 20_000_000_000),
            "the guest is in low memory"
        );
        assert_eq!(r.summary.max_balloon_mib, 256);
        assert_eq!(r.summary.low_memory_inflating_s, 0.0);
    }

    #[test]
    fn churn_and_mean_balloon() {
        // 256 MiB from 0 s to 10 s of a 20 s run, then nothing: 512 MiB moved, a mean of
        // about 128 MiB, no final balloon to divide by.
        let text = "name = \"c\"\nduration_s = 20\n[guest]\nram_mib = 1024\npagefile_mib = 1024\n\
                    [[events]]\nat_s = 0\ntarget_mib = 256\n[[events]]\nat_s = 10\ntarget_mib = 0\n";
        let s = Scenario::parse(text, "c").unwrap();
        let r = run(&s, DriverKind::LinuxVmw).summary;
        assert_eq!(r.frames_moved, r.frames_locked + r.frames_unlocked);
        assert_eq!(r.frames_moved, 2 * 256 * 256);
        assert_eq!(r.frames_moved_per_final_gib, None);
        assert!(
            (r.mean_balloon_mib - 128.0).abs() < 2.0,
            "{}",
            r.mean_balloon_mib
        );
    }

    #[test]
    fn low_memory_wakes_vmballoon_between_polls() {
        // A pageable burst at 2.5 s drains available memory: the driver is woken at once,
        // not at the next poll.
        let text = "name = \"w\"\nduration_s = 6\n[guest]\nram_mib = 2048\npagefile_mib = 4096\n\
                    [config]\nPollIntervalMs = 1000\n\
                    [[events]]\nat_s = 0\ntarget_mib = 1024\n\
                    [[events]]\nat_s = 2.5\ncommit_mib = 2000\n";
        let [vm, naive] = run_text(text);
        assert!(vm.summary.low_memory_wakes >= 1);
        assert!(
            vm.timeline
                .iter()
                .any(|r| r.woke && r.t.as_nanos() == 2_500_000_000)
        );
        assert_eq!(
            naive.summary.low_memory_wakes, 0,
            "the stock balloon does not listen"
        );
    }
}
