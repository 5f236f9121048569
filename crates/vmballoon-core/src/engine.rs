//! The balloon engine: the state machine that runs the protocol against the platform.
//!
//! Each [`Balloon::tick`] (once per `PollIntervalMs`, and whenever the driver is woken by
//! `LowMemoryCondition`):
//!
//! 1. If a reset is pending (at load, or after RESET from any command): give every
//!    ballooned page back to the OS without UNLOCK (the host has forgotten them), then
//!    START → batch page → GUEST_ID (`docs/protocol.md` §3 rule 1, Linux `vmballoon_reset`).
//! 2. TARGET with the guest's RAM in frames.
//! 3. Batches of up to 512 pages, each preceded by a fresh memory snapshot, the safe
//!    ceiling and the plan ([`crate::policy`]), until the plan holds or a bound is hit:
//!    2 MiB pages while at least 512 frames remain and the host granted them, 4 KiB pages
//!    for the rest and when 2 MiB allocations fail; refused pages held (at most 16 per
//!    cycle) and returned to the OS at the end of the tick.
//!
//! The engine never sleeps and never allocates memory of its own; it reports what it did
//! and why in a [`TickReport`]. It runs on a 24 KiB kernel stack, where the driver's image
//! check allows no frame above 1 KiB: each step that holds a batch's outcome (two 64-byte
//! page masks and more) is `#[inline(never)]`, so their frames follow one another instead
//! of adding up in one.

use crate::channel::{Channel, Direction};
use crate::config::Config;
use crate::error::Error;
use crate::mask::PageMask;
use crate::platform::{
    Clock, MemorySnapshot, MemorySource, PARK_CAPACITY, PageAllocator, Shelf, StorePosition,
};
use crate::policy::{
    self, Accounting, Ceiling, Charge, ClampReason, Damping, Motion, Plan, Pressure, SLACK,
};
use crate::protocol::{BATCH_CAPACITY, Backdoor, Capabilities, LockMode, Session};
use crate::stats::{Counter, Stats};
use crate::units::{Duration, Frames, Instant, PageSize, Pfn};

/// Refused pages of one size per cycle after which inflation stops (4 KiB) or falls back
/// to 4 KiB pages (2 MiB): `VMW_BALLOON_MAX_REFUSED`, OVT `BALLOON_ERROR_PAGES`.
pub const MAX_REFUSED_PER_CYCLE: usize = 16;

/// Scattered frames compaction moves per tick: 512 MiB, at most 256 UNLOCK and 256 LOCK
/// batches of 4 KiB pages (a tick also stops at [`TICK_BUDGET`], which is what bounds it on
/// a single-page host).
pub const COMPACTION_FRAMES_PER_TICK: Frames = Frames::from_mib(512);

/// Units compaction looks at per tick (each a read of its PFN array): bounds the CPU work of
/// a tick on a balloon of many units.
pub const COMPACTION_VISITS_PER_TICK: u32 = 16_384;

/// How much the zone compaction clears grows per round over the balloon: 64 MiB.
pub const COMPACTION_STEP: Frames = Frames::from_mib(64);

/// Batches per tick before the engine returns with [`TickReport::more_work`] set, so the
/// driver's worker can notice an unload or a low-memory wake between them. 1024 batches
/// are 2 GiB of 4 KiB pages or 1 TiB of 2 MiB pages: no rate limit in practice.
pub const MAX_BATCHES_PER_TICK: u32 = 1024;

/// Wall-clock budget of one tick, for the same reason.
pub const TICK_BUDGET: Duration = Duration::from_millis(250);

/// The largest inflation batch while the accounting is being measured (8 MiB): big enough
/// to stand out of the noise of a busy guest, small enough that the conservative ceiling
/// used until then costs nothing.
pub const CALIBRATION_FRAMES: Frames = Frames::from_mib(8);

/// Batches the accounting is measured on before the engine settles for the conservative
/// answer (not charged).
pub const CALIBRATION_TRIES: u8 = 6;

/// The least net growth a calibration sample must show to count as a try (1 MiB): below it,
/// another process's allocations in the same instant would weigh too much.
pub const CALIBRATION_MIN: Frames = Frames::new(256);

/// How long a memory snapshot may stand in for a fresh one within an inflation pass, when
/// it leaves room for two more batches ([`Balloon::tick`]).
pub const FRESH_SNAPSHOT: Duration = Duration::from_millis(50);

/// Longest back-off after repeated BUSY, host errors or allocation failures. Short: Linux
/// and OVT simply retry at the next tick, and a RESET must not wait long for an answer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Where the session stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionState {
    /// No START has succeeded yet.
    #[default]
    Unstarted,
    /// START failed: no balloon host answers (all ones on the port), or it refused.
    NoHost,
    /// The host reset the session; the next tick restarts it.
    ResetPending,
    /// A session is running.
    Running,
}

impl SessionState {
    /// Name for traces and reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unstarted => "unstarted",
            Self::NoHost => "no-host",
            Self::ResetPending => "reset-pending",
            Self::Running => "running",
        }
    }
}

/// What one tick did and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// When the tick started.
    pub at: Instant,
    /// The session state after the tick.
    pub state: SessionState,
    /// A session was (re)started this tick, with these parameters.
    pub started: Option<Session>,
    /// The host reset the session during this tick.
    pub host_reset: bool,
    /// Frames given back to the OS without UNLOCK (after a reset).
    pub popped: Frames,
    /// The host's target (the last one it reported).
    pub target: Frames,
    /// The ceiling at the last check of the tick.
    pub ceiling: Option<Ceiling>,
    /// Balloon size after the tick.
    pub balloon: Frames,
    /// Frames locked this tick.
    pub inflated: Frames,
    /// Frames unlocked this tick.
    pub deflated: Frames,
    /// Frames compaction moved this tick (given back in the zone it clears and taken again
    /// below it).
    pub compacted: Frames,
    /// Frames the host refused this tick.
    pub refused: Frames,
    /// What held the balloon below the host target or reversed it this tick, if anything
    /// did (`None`: the balloon follows the host).
    pub reason: Option<ClampReason>,
    /// A deflate triggered by `LowMemoryCondition` happened.
    pub low_memory_deflate: bool,
    /// Allocations that returned nothing.
    pub alloc_failures: u32,
    /// Backdoor calls made.
    pub calls: u32,
    /// The error that ended the tick's work early, if any.
    pub error: Option<Error>,
    /// The tick stopped at its work bound: call `tick` again at once.
    pub more_work: bool,
    /// The last memory snapshot taken.
    pub snapshot: Option<MemorySnapshot>,
    /// The accounting was measured this tick (once, or once more after inconclusive tries).
    pub calibrated: Option<Calibration>,
}

/// What the engine measured of how Windows charges the balloon's pages
/// (`docs/windows-memory.md` §1.6: nothing public says): the snapshots before and after one
/// of its own batches, against the frames the batch took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calibration {
    /// The verdict for resident available memory.
    pub resident_available: Charge,
    /// The verdict for commit.
    pub commit: Charge,
    /// Frames the balloon took between the two snapshots.
    pub frames: Frames,
    /// How much resident available memory fell (`None`: not reported by Windows).
    pub resident_available_drop: Option<Frames>,
    /// How much commit rose (`None`: not reported).
    pub commit_rise: Option<Frames>,
    /// Tries so far.
    pub tries: u8,
}

/// A memory snapshot kept to stand in for a fresh one, with what the balloon was then.
#[derive(Clone, Copy, Debug)]
struct Cached {
    snap: MemorySnapshot,
    at: Instant,
    balloon: Frames,
    footprint: Frames,
}

/// The last snapshot in which Windows signalled no memory pressure, for telling the
/// balloon's own doing from the guest's ([`Balloon::pressure`]).
#[derive(Clone, Copy, Debug)]
struct Calm {
    at: Instant,
    allocated: u64,
}

/// A calibration sample under way: the snapshot before a batch.
#[derive(Clone, Copy, Debug)]
struct Sample {
    snap: MemorySnapshot,
    at: Instant,
    footprint: Frames,
}

impl TickReport {
    fn new(at: Instant) -> Self {
        Self {
            at,
            ..Self::default()
        }
    }
}

/// Exponential back-off starting at one poll interval.
#[derive(Clone, Copy, Debug, Default)]
struct Backoff {
    until: Instant,
    step: Duration,
}

impl Backoff {
    fn active(&self, now: Instant) -> bool {
        now < self.until
    }

    fn fail(&mut self, now: Instant, base: Duration) {
        self.fail_up_to(now, base, MAX_BACKOFF);
    }

    fn fail_up_to(&mut self, now: Instant, base: Duration, max: Duration) {
        self.step = if self.step == Duration::ZERO {
            base.min(max)
        } else {
            self.step.saturating_mul(2).min(max)
        };
        self.until = now.saturating_add(self.step);
    }

    /// A fixed pause: nothing before `now + d` (BUSY: retry at the next poll, as Linux and
    /// OVT do; the call costs one VM exit, so doubling it would only delay the balloon).
    fn pause(&mut self, now: Instant, d: Duration) {
        self.until = now.saturating_add(d);
    }

    fn succeed(&mut self) {
        self.step = Duration::ZERO;
    }
}

/// Per-tick bookkeeping of one inflate or deflate pass.
#[derive(Clone, Copy, Debug, Default)]
struct Cycle {
    batches: u32,
    /// 2 MiB LOCKs are allowed (granted, enabled, and not refused too often this cycle).
    large_ok: bool,
    /// Whole-block allocations are worth trying (none has failed this cycle).
    blocks_ok: bool,
    /// Refused pages this cycle, per lock size.
    refused: [usize; 2],
    direction: Option<Direction>,
    low_memory_step_done: bool,
}

/// What became of the units of one batch.
#[derive(Clone, Copy, Debug, Default)]
struct Outcome {
    /// Frames that changed hands (locked or unlocked).
    moved: Frames,
    /// Frames whose UNLOCK failed (still held).
    failed: Frames,
    /// 4 KiB entries the host refused (LOCK).
    refused: usize,
    /// The host said it needs no more pages (PPN_NOTNEEDED).
    not_needed: bool,
}

/// Compaction under way ([`Balloon::compact`]): the balloon's scattered pages at or above
/// `zone` are moved below it, one round over the scattered shelf per zone.
#[derive(Clone, Copy, Debug)]
struct Compaction {
    /// The lowest frame of the zone being cleared (block-aligned); `None` in the first
    /// round, which only finds the top of the balloon.
    zone: Option<u64>,
    /// The highest frame of a scattered unit seen this round.
    top: u64,
    /// Frames of the scattered shelf still to visit this round.
    left: Frames,
}

/// The balloon: the engine and the platform it runs on.
pub struct Balloon<B, P: PageAllocator, M, C> {
    channel: Channel<B>,
    pages: P,
    memory: M,
    clock: C,
    config: Config,
    /// Frames the host holds of the units on each [`Shelf`].
    held: [Frames; Shelf::COUNT],
    /// Frames the host holds of parked units.
    parked_held: Frames,
    /// Guest RAM from the last snapshot (TARGET's limit).
    total: Frames,
    state: SessionState,
    /// After BUSY or a host error: no host call before the next poll.
    host_backoff: Backoff,
    /// After a failed START (no balloon host, no batch page): exponential, up to
    /// [`MAX_BACKOFF`].
    start_backoff: Backoff,
    /// After an allocation failure: exponential, up to [`MAX_BACKOFF`].
    alloc_backoff: Backoff,
    /// The re-inflation hold-off after guest pressure.
    damping: Damping,
    /// Compaction under way, if any.
    compaction: Option<Compaction>,
    /// The lowest memory the guest left unused (available plus the balloon) since
    /// compaction was last armed or the balloon last grew, and the balloon's footprint then.
    unused_low: Option<(Frames, Frames)>,
    /// Frames of parked units (held by the host or not).
    parked_total: Frames,
    /// Frames staged for a 2 MiB LOCK that has not been made yet (taken from Windows, not
    /// yet held by the host).
    in_flight: Frames,
    /// Frames the balloon has allocated since the start (a running count).
    allocated: u64,
    /// How Windows charges the balloon's pages, as measured.
    charges: (Charge, Charge),
    /// Per figure, the last sample's verdict and how many samples in a row gave it (two
    /// settle it).
    votes: ((Charge, u8), (Charge, u8)),
    calibration_tries: u8,
    sample: Option<Sample>,
    cached: Option<Cached>,
    calm: Option<Calm>,
    stats: Stats,
}

impl<B: Backdoor, P: PageAllocator, M: MemorySource, C: Clock> Balloon<B, P, M, C> {
    /// A balloon with no session: the first [`Balloon::tick`] starts one.
    pub fn new(backdoor: B, pages: P, memory: M, clock: C, config: Config) -> Self {
        Self {
            channel: Channel::new(backdoor),
            pages,
            memory,
            clock,
            config,
            held: [Frames::ZERO; Shelf::COUNT],
            parked_held: Frames::ZERO,
            total: Frames::ZERO,
            state: SessionState::Unstarted,
            host_backoff: Backoff::default(),
            start_backoff: Backoff::default(),
            alloc_backoff: Backoff::default(),
            damping: Damping::default(),
            compaction: None,
            unused_low: None,
            parked_total: Frames::ZERO,
            in_flight: Frames::ZERO,
            allocated: 0,
            charges: (Charge::Unknown, Charge::Unknown),
            votes: ((Charge::Unknown, 0), (Charge::Unknown, 0)),
            calibration_tries: 0,
            sample: None,
            cached: None,
            calm: None,
            stats: Stats::new(),
        }
    }

    /// Frames the host holds.
    #[must_use]
    pub fn size(&self) -> Frames {
        self.held
            .iter()
            .fold(self.parked_held, |sum, h| sum.saturating_add(*h))
    }

    /// Frames the balloon has taken from Windows: what the host holds, the frames of
    /// parked units it does not (refused pages held back until the end of the tick), and
    /// blocks staged for a LOCK not made yet.
    #[must_use]
    pub fn footprint(&self) -> Frames {
        self.size()
            .saturating_add(self.parked_total.saturating_sub(self.parked_held))
            .saturating_add(self.in_flight)
    }

    /// What the engine knows of the accounting, with its footprint now.
    ///
    /// While it is being measured an unknown figure is taken as charged: the balloon can
    /// only grow in calibration steps then (at most [`CALIBRATION_TRIES`] of
    /// [`CALIBRATION_FRAMES`], each measured), so if the pages turn out not to be charged
    /// the ceiling was overstated by at most that much, which the reserve absorbs, and the
    /// next snapshot corrects it. Taking it as not charged instead could leave no room for
    /// the very batch that would tell.
    #[must_use]
    pub fn accounting(&self) -> Accounting {
        let measuring = |c: Charge| {
            if c == Charge::Unknown && self.calibration_tries < CALIBRATION_TRIES {
                Charge::Charged
            } else {
                c
            }
        };
        Accounting {
            resident_available: measuring(self.charges.0),
            commit: measuring(self.charges.1),
            footprint: self.footprint(),
        }
    }

    /// What has been measured of the accounting (`Unknown` while it is being measured).
    #[must_use]
    pub const fn charges(&self) -> (Charge, Charge) {
        self.charges
    }

    /// The re-inflation hold-off state.
    #[must_use]
    pub const fn damping(&self) -> &Damping {
        &self.damping
    }

    /// Frames the host holds of the units on `shelf` (parked units not included).
    #[must_use]
    pub fn held_on(&self, shelf: Shelf) -> Frames {
        self.held
            .get(shelf.index())
            .copied()
            .unwrap_or(Frames::ZERO)
    }

    /// Pages of `size` the host holds (4 KiB: every frame held as a 4 KiB page, parked
    /// units included; 2 MiB: the blocks held as 2 MiB pages).
    #[must_use]
    pub fn pages_held(&self, size: PageSize) -> u64 {
        match size {
            PageSize::Small => self
                .held_on(Shelf::Scattered)
                .saturating_add(self.held_on(Shelf::Block))
                .saturating_add(self.parked_held)
                .get(),
            PageSize::Large => self.held_on(Shelf::Large).whole_pages(PageSize::Large),
        }
    }

    /// The session state.
    #[must_use]
    pub const fn state(&self) -> SessionState {
        self.state
    }

    /// The settings in effect.
    #[must_use]
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the settings (the driver re-reads the registry while running). Takes effect
    /// at the next batch: a lowered cap deflates at the next tick.
    pub fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    /// Engine counters.
    #[must_use]
    pub const fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The protocol channel (its call statistics, the session).
    #[must_use]
    pub const fn channel(&self) -> &Channel<B> {
        &self.channel
    }

    /// The backdoor, mutably (the simulator injects host behaviour).
    pub fn backdoor_mut(&mut self) -> &mut B {
        self.channel.backdoor_mut()
    }

    /// The page allocator.
    #[must_use]
    pub const fn pages(&self) -> &P {
        &self.pages
    }

    /// The page allocator, mutably.
    pub fn pages_mut(&mut self) -> &mut P {
        &mut self.pages
    }

    /// The memory source, mutably.
    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.memory
    }

    /// The clock.
    #[must_use]
    pub const fn clock(&self) -> &C {
        &self.clock
    }

    /// Hands the platform back.
    pub fn into_parts(self) -> (B, P, M, C) {
        (
            self.channel.into_backdoor(),
            self.pages,
            self.memory,
            self.clock,
        )
    }

    /// One poll: reset if needed, TARGET, then inflate or deflate batch by batch, then
    /// migrate scattered units to whole blocks, then settle the units parked this tick.
    pub fn tick(&mut self) -> TickReport {
        let now = self.clock.now();
        let mut report = TickReport::new(now);
        self.stats.add(Counter::Ticks, 1);
        let snapshot = self.fresh_snapshot(&mut report);
        if let Some(s) = snapshot {
            self.total = s.total;
        }
        report.snapshot = snapshot;
        if self.channel.reset_pending() {
            self.reset(now, &mut report);
        }
        if !self.channel.reset_pending() {
            self.run(now, &mut report);
        }
        if !self.channel.reset_pending() {
            self.settle_parked(now, &mut report);
        }
        self.finish(&mut report);
        report
    }

    /// Returns every page to the OS: START(0) first, so the host ends the session before
    /// the guest touches pages it just freed (Linux unload order, `docs/protocol.md` §3 rule
    /// 5), then frees every unit without UNLOCK. Returns the frames freed.
    pub fn shutdown(&mut self) -> Frames {
        if self.channel.session().is_some() {
            // Failure is irrelevant: the pages are freed either way, and a host that did not
            // hear START(0) resets the session at the next START.
            let _ = self.channel.stop();
        }
        self.state = SessionState::Unstarted;
        self.pop_all()
    }

    /// Frees every unit — stored, staged or parked — without UNLOCK (the host no longer
    /// holds any of them). Returns the frames the host held.
    fn pop_all(&mut self) -> Frames {
        let popped = self.size();
        for shelf in Shelf::ALL {
            while let Some(unit) = self.pages.take(shelf) {
                self.pages.free(unit);
            }
        }
        self.free_staged();
        while let Some((unit, _)) = self.unpark() {
            self.pages.free(unit);
        }
        self.held = [Frames::ZERO; Shelf::COUNT];
        self.parked_held = Frames::ZERO;
        self.parked_total = Frames::ZERO;
        self.compaction = None;
        self.unused_low = None;
        self.stats.add(Counter::FramesPopped, popped.get());
        popped
    }

    /// Frees every staged unit (none of which the host holds).
    fn free_staged(&mut self) {
        while let Some(unit) = self.pages.unstage() {
            self.pages.free(unit);
        }
    }

    /// The reset sequence (`docs/protocol.md` §3 rule 1; Linux `vmballoon_reset`).
    #[inline(never)]
    fn reset(&mut self, now: Instant, report: &mut TickReport) {
        // The host has forgotten every page (or never had any): give them back at once, even
        // while backing off, since the guest may need the memory.
        report.popped = self.pop_all();
        if self.start_backoff.active(now) {
            return;
        }
        match self.channel.start(Capabilities::REQUESTED) {
            Ok(session) => {
                // With batching granted the batch page is required; without one, close the
                // session with START(0) and retry next tick (docs/protocol.md §4 step 3).
                if session.mode == LockMode::Batched
                    && self.channel.backdoor_mut().batch_page().is_none()
                {
                    let _ = self.channel.stop();
                    report.error = Some(Error::NoBatchPage);
                    self.state = SessionState::NoHost;
                    self.start_backoff.fail(now, self.config.poll_interval);
                    return;
                }
                // GUEST_ID failures are logged and otherwise ignored (Linux, OVT), except
                // RESET, which restarts the sequence next tick.
                match self.channel.guest_id() {
                    Err(e) if e.is_reset() => {
                        self.note_error(now, e, report);
                        return;
                    }
                    Err(e) => report.error = Some(e),
                    Ok(()) => {}
                }
                self.channel.finish_reset();
                self.start_backoff.succeed();
                self.state = SessionState::Running;
                self.stats.add(Counter::SessionsStarted, 1);
                report.started = Some(session);
            }
            Err(e) => {
                self.stats.add(Counter::StartFailures, 1);
                self.state = SessionState::NoHost;
                self.start_backoff.fail(now, self.config.poll_interval);
                report.error = Some(e);
            }
        }
    }

    /// TARGET, then the batches, then migration.
    fn run(&mut self, now: Instant, report: &mut TickReport) {
        if self.host_backoff.active(now) && !self.guest_needs_memory(report.snapshot) {
            return;
        }
        // TARGET's limit is the guest's RAM in frames: every open driver sends it
        // (docs/protocol.md §2.2). Without a snapshot yet, skip the tick.
        if self.total.is_zero() {
            return;
        }
        report.calls = report.calls.saturating_add(1);
        if let Err(e) = self.channel.get_target(self.total) {
            self.note_error(now, e, report);
            if !self.guest_needs_memory(report.snapshot) {
                return;
            }
        }
        let mut cycle = Cycle {
            large_ok: self.large_pages_granted(),
            blocks_ok: true,
            ..Cycle::default()
        };
        let settled = self.pass(now, &mut cycle, report);
        // The last snapshot with the footprint at the moment it was taken (not after the
        // batch that followed it).
        if let Some(c) = self.cached {
            self.arm_compaction(&c.snap, c.footprint);
        }
        // Compaction runs on idle ticks only: not while the balloon moves for the host or
        // the guest.
        // An exchange that gave a unit back and found nothing free below the zone is refilled
        // at once, wherever Windows has pages.
        if settled
            && cycle.direction.is_none()
            && !report.more_work
            && self.compact(now, &mut cycle, report)
        {
            let mut refill = Cycle {
                large_ok: cycle.large_ok,
                ..Cycle::default()
            };
            self.pass(now, &mut refill, report);
        }
    }

    /// Batches until the plan holds or a bound is hit. Returns whether the pass ended
    /// settled: the plan holds with no pressure and no error.
    #[inline(never)]
    fn pass(&mut self, now: Instant, cycle: &mut Cycle, report: &mut TickReport) -> bool {
        let deadline = now.saturating_add(TICK_BUDGET);
        let mut settled = false;
        loop {
            if self.channel.reset_pending() {
                break;
            }
            if self.tick_bound_hit(cycle, deadline, report) {
                break;
            }
            // The ceiling is re-checked before every batch (from a fresh snapshot, or one
            // that is fresh enough with room to spare: `plan_input`).
            let Some((snap, ceiling)) = self.plan_input(cycle, report) else {
                report.error.get_or_insert(Error::MemoryUnavailable);
                break;
            };
            report.snapshot = Some(snap);
            let balloon = self.size();
            report.ceiling = Some(ceiling);
            self.damping
                .observe(self.clock.now(), ceiling.value.saturating_sub(balloon));
            let motion = match cycle.direction {
                None => Motion::Idle,
                Some(Direction::Lock) => Motion::Inflating,
                Some(Direction::Unlock) => Motion::Deflating,
            };
            let pressure = self.pressure(&snap);
            let plan = policy::plan(balloon, ceiling, &snap, &self.config, motion, pressure);
            let keep_going = match plan {
                Plan::Hold => {
                    if Self::signalled(&snap) && ceiling.value > balloon {
                        report.reason = Some(ClampReason::LowMemory);
                    }
                    settled = pressure == Pressure::None && report.error.is_none();
                    false
                }
                Plan::Inflate(frames) => self.inflate_batch(now, frames, cycle, report),
                Plan::Deflate(frames, reason) => {
                    self.deflate_batch(now, frames, reason, cycle, report)
                }
            };
            if !keep_going {
                break;
            }
            cycle.batches = cycle.batches.saturating_add(1);
        }
        // A calibration sample left open by a pass that ended (allocation short, ceiling,
        // back-off) is closed now, while it is fresh: closed at the next tick it would also
        // show whatever the guest did in between, and tell nothing.
        if self.sample.is_some() {
            let _ = self.fresh_snapshot(report);
        }
        settled
    }

    /// Whether the session grants 2 MiB pages and the settings allow them.
    fn large_pages_granted(&self) -> bool {
        self.channel.session().is_some_and(|s| s.large_pages) && self.config.use_large_pages
    }

    /// Whether Windows signals memory pressure (LowMemoryCondition or
    /// MaximumCommitCondition) in `snap`.
    const fn signalled(snap: &MemorySnapshot) -> bool {
        snap.low_memory || snap.high_commit
    }

    /// Whether the guest needs memory back regardless of the host (low memory, or a
    /// guest-side bound below the balloon): such deflates are not delayed by a host back-off.
    fn guest_needs_memory(&self, snapshot: Option<MemorySnapshot>) -> bool {
        let Some(snap) = snapshot else { return false };
        let balloon = self.size();
        if balloon.is_zero() {
            return false;
        }
        let c = policy::ceiling_with(
            Frames::MAX,
            balloon,
            &snap,
            &self.config,
            &self.accounting(),
        );
        let low = self.pressure(&snap) == Pressure::Guest;
        (low && self.config.deflate_on_low_memory) || c.value < balloon
    }

    /// What a signalled `LowMemoryCondition` / `MaximumCommitCondition` means in `snap`.
    ///
    /// The balloon's own doing only when its allocations since the last snapshot in which
    /// Windows signalled nothing explain the shortfall — available memory now, plus those
    /// allocations, would be above the low-memory threshold by a batch — and that calm
    /// snapshot is no older than a poll. Anything else is the guest's need, answered at
    /// once. `MaximumCommitCondition` is always the guest's: the commit term keeps the
    /// balloon's own commit a reserve away from the limit.
    fn pressure(&self, snap: &MemorySnapshot) -> Pressure {
        if !Self::signalled(snap) {
            return Pressure::None;
        }
        if snap.high_commit {
            return Pressure::Guest;
        }
        let now = self.clock.now();
        let recent = self.calm.filter(|c| {
            now.saturating_since(c.at) <= self.config.poll_interval.saturating_add(TICK_BUDGET)
        });
        let Some(calm) = recent else {
            return Pressure::Guest;
        };
        let taken = Frames::new(self.allocated.saturating_sub(calm.allocated));
        let explained = snap.available.is_some_and(|a| {
            a.saturating_add(taken)
                >= policy::low_memory_threshold(snap.total).saturating_add(SLACK)
        });
        if !taken.is_zero() && explained {
            Pressure::SelfInduced
        } else {
            Pressure::Guest
        }
    }

    /// A fresh snapshot: kept to stand in for the next ones while it is fresh, taken as the
    /// calm reference when nothing is signalled, and closing a calibration sample.
    fn fresh_snapshot(&mut self, report: &mut TickReport) -> Option<MemorySnapshot> {
        let snap = self.memory.snapshot().ok()?;
        let now = self.clock.now();
        if !Self::signalled(&snap) {
            self.calm = Some(Calm {
                at: now,
                allocated: self.allocated,
            });
        }
        self.cached = Some(Cached {
            snap,
            at: now,
            balloon: self.size(),
            footprint: self.footprint(),
        });
        if let Some(sample) = self.sample.take() {
            self.calibrate(&sample, &snap, report);
        }
        Some(snap)
    }

    /// The snapshot to plan the next batch on, and the ceiling: the kept one while an
    /// inflation pass is under way, it is younger than [`FRESH_SNAPSHOT`], signals nothing,
    /// and leaves room for two more batches of the largest size this pass can lock (the
    /// guarantee "held + batch ≤ ceiling at every LOCK" then holds with a batch to spare);
    /// else a fresh one. Its ceiling is computed as of the moment it was taken (the balloon
    /// and footprint then), which is the ceiling now if the guest has not changed.
    fn plan_input(
        &mut self,
        cycle: &Cycle,
        report: &mut TickReport,
    ) -> Option<(MemorySnapshot, Ceiling)> {
        let target = self.channel.target();
        if cycle.direction == Some(Direction::Lock)
            && self.sample.is_none()
            && let Some(c) = self.cached
            && self.clock.now().saturating_since(c.at) < FRESH_SNAPSHOT
            && !Self::signalled(&c.snap)
        {
            let acct = Accounting {
                footprint: c.footprint,
                ..self.accounting()
            };
            let mut stale = policy::ceiling_with(target, c.balloon, &c.snap, &self.config, &acct);
            // Frames taken from Windows since the snapshot but not held by the host (refused
            // pages parked until the end of the cycle, blocks in flight) left Windows' free
            // memory without growing the balloon: they are not room.
            let withheld = |balloon: Frames, footprint: Frames| footprint.saturating_sub(balloon);
            let grown = withheld(self.size(), self.footprint())
                .saturating_sub(withheld(c.balloon, c.footprint));
            stale.value = stale.value.saturating_sub(grown);
            let batch = if cycle.large_ok && cycle.blocks_ok {
                PageSize::Large
                    .frames()
                    .saturating_mul(BATCH_CAPACITY as u64)
            } else {
                PageSize::Large.frames()
            };
            if stale.value >= self.size().saturating_add(batch.saturating_mul(2)) {
                self.stats.add(Counter::SnapshotsReused, 1);
                return Some((c.snap, stale));
            }
        }
        let snap = self.fresh_snapshot(report)?;
        let c = policy::ceiling_with(target, self.size(), &snap, &self.config, &self.accounting());
        Some((snap, c))
    }

    /// Whether the accounting is still being measured.
    const fn calibrating(&self) -> bool {
        matches!(self.charges.0, Charge::Unknown) || matches!(self.charges.1, Charge::Unknown)
    }

    /// Closes a calibration sample with the snapshot after the batch: a figure that moved
    /// by at least ¾ of the frames taken is charged, one that moved by at most ¼ is not
    /// (each settled by two such samples in a row); in between is noise, and another batch
    /// is measured (up to [`CALIBRATION_TRIES`], after which an undecided figure stays not
    /// charged: the smaller ceiling).
    ///
    /// Every sample in which the balloon grew by [`CALIBRATION_MIN`] or more counts as a try, also one that says nothing:
    /// closed late (a snapshot failed), it also shows whatever the guest did meanwhile.
    fn calibrate(&mut self, sample: &Sample, after: &MemorySnapshot, report: &mut TickReport) {
        let frames = self.footprint().saturating_sub(sample.footprint);
        let fresh = self.clock.now().saturating_since(sample.at) < FRESH_SNAPSHOT;
        let verdict = |moved: Option<Frames>| match moved {
            Some(m) if m.saturating_mul(4) >= frames.saturating_mul(3) => Charge::Charged,
            Some(m) if m.saturating_mul(4) <= frames => Charge::NotCharged,
            _ => Charge::Unknown,
        };
        let ra_drop = match (sample.snap.resident_available, after.resident_available) {
            (Some(b), Some(a)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let commit_rise = match (sample.snap.committed, after.committed) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        // Either answer takes two samples in a row: another process locking, committing or
        // freeing memory between two snapshots could fake one. A wrong "charged" overstates
        // the ceiling by the whole balloon; a wrong "not charged" makes the ceiling fall as
        // the balloon grows (an oscillation only the damping slows down).
        let vote = |charge: &mut Charge, votes: &mut (Charge, u8), moved: Option<Frames>| {
            if *charge != Charge::Unknown {
                return;
            }
            let v = verdict(moved);
            *votes = match (v, *votes) {
                (Charge::Unknown, _) => (Charge::Unknown, 0),
                (v, (last, n)) if v == last => (v, n.saturating_add(1)),
                (v, _) => (v, 1),
            };
            if votes.1 >= 2 {
                *charge = v;
            }
        };
        if frames < CALIBRATION_MIN {
            // The balloon kept (almost) nothing (refused, allocation failed or short): not a
            // try. Pages it took and gave back within the sample (refusals) are not in
            // `frames`, nor in what Windows shows: the net growth is what is compared.
            return;
        }
        if fresh {
            vote(&mut self.charges.0, &mut self.votes.0, ra_drop);
            vote(&mut self.charges.1, &mut self.votes.1, commit_rise);
        } else {
            self.votes = ((Charge::Unknown, 0), (Charge::Unknown, 0));
        }
        self.calibration_tries = self.calibration_tries.saturating_add(1);
        if self.calibration_tries >= CALIBRATION_TRIES {
            // Undecided after every try: the conservative answer.
            for c in [&mut self.charges.0, &mut self.charges.1] {
                if *c == Charge::Unknown {
                    *c = Charge::NotCharged;
                }
            }
        }
        if !self.calibrating() || self.calibration_tries >= CALIBRATION_TRIES {
            self.stats.add(Counter::Calibrations, 1);
        }
        report.calibrated = Some(Calibration {
            resident_available: self.charges.0,
            commit: self.charges.1,
            frames,
            resident_available_drop: ra_drop,
            commit_rise,
            tries: self.calibration_tries,
        });
    }

    /// Whether another unit may be parked (a 4 KiB transfer can leave one partly held).
    fn can_park(&self) -> bool {
        self.pages.parked() < PARK_CAPACITY
    }

    /// One inflate batch toward `frames` more. Returns whether to continue.
    ///
    /// Whole blocks first, on every host (as one 2 MiB page each when the host grants them,
    /// else as 512 4 KiB pages): a balloon of whole blocks gives back whole blocks. Scattered
    /// 4 KiB pages only for less than a block, or when no whole block is free.
    fn inflate_batch(
        &mut self,
        now: Instant,
        frames: Frames,
        cycle: &mut Cycle,
        report: &mut TickReport,
    ) -> bool {
        if *cycle.direction.get_or_insert(Direction::Lock) != Direction::Lock {
            return false;
        }
        if self.damping.holds(self.clock.now()) {
            report.reason = Some(ClampReason::PressureHold);
            return false;
        }
        if self.alloc_backoff.active(now) {
            report.reason = Some(ClampReason::AllocationFailed);
            return false;
        }
        if self.host_backoff.active(now) || !self.can_park() {
            return false;
        }
        // Until the accounting is measured, small batches, each measured: the snapshot right
        // before it, against the next fresh one (`calibrate`). 2 MiB pages are measured on
        // their allocation instead, within one batch (`inflate_large`).
        let large = cycle.large_ok && cycle.blocks_ok;
        let frames = if !large && self.calibrating() && self.calibration_tries < CALIBRATION_TRIES {
            self.open_sample();
            frames.min(CALIBRATION_FRAMES)
        } else {
            frames
        };
        let blocks = frames.whole_pages(PageSize::Large);
        if cycle.blocks_ok && blocks > 0 {
            if cycle.large_ok {
                return self.inflate_large(now, blocks, cycle, report);
            }
            let Some(block) = self.take_block() else {
                self.block_allocation_failed(cycle, report);
                return true;
            };
            self.stats.add(Counter::BlockUnits, 1);
            return self.lock_small(now, Shelf::Block, block, cycle, report);
        }
        let want = usize::try_from(frames.get())
            .unwrap_or(BATCH_CAPACITY)
            .min(BATCH_CAPACITY);
        let Some(unit) = self.take_scattered(want) else {
            return self.allocation_failed(now, report);
        };
        let got = self.unit_len(&unit);
        if got == 0 {
            self.pages.free(unit);
            return self.allocation_failed(now, report);
        }
        self.stats.add(Counter::ScatteredUnits, 1);
        if !self.lock_small(now, Shelf::Scattered, unit, cycle, report) {
            return false;
        }
        if got < want {
            self.stats.add(Counter::ShortAllocations, 1);
            return self.allocation_failed(now, report);
        }
        self.alloc_backoff.succeed();
        true
    }

    /// A whole-block allocation failed: the rest of this cycle uses scattered pages. Not a
    /// clamp: scattered pages take over.
    fn block_allocation_failed(&mut self, cycle: &mut Cycle, report: &mut TickReport) {
        cycle.blocks_ok = false;
        report.alloc_failures = report.alloc_failures.saturating_add(1);
        self.stats.add(Counter::AllocFail2m, 1);
    }

    /// Frames in `unit`, as an entry count (at most 512 for every unit the contract allows).
    fn unit_len(&self, unit: &P::Unit) -> usize {
        usize::try_from(self.pages.frames(unit).get()).unwrap_or(usize::MAX)
    }

    /// Up to `blocks` whole blocks (at most one batch) locked as 2 MiB pages.
    #[inline(never)]
    fn inflate_large(
        &mut self,
        now: Instant,
        blocks: u64,
        cycle: &mut Cycle,
        report: &mut TickReport,
    ) -> bool {
        let want = usize::try_from(blocks)
            .unwrap_or(BATCH_CAPACITY)
            .min(BATCH_CAPACITY);
        let mut want = want;
        let mut staged = 0usize;
        let mut short = false;
        // Until the accounting is measured, each [`CALIBRATION_FRAMES`] of blocks is a sample
        // of its own: Windows charges pages when they are allocated, so the snapshot after
        // the allocation tells, and the blocks go to the host in this batch's one LOCK call.
        let tries = self.calibration_tries;
        let step = usize::try_from(CALIBRATION_FRAMES.whole_pages(PageSize::Large)).unwrap_or(1);
        while self.calibrating() && self.calibration_tries < CALIBRATION_TRIES && staged < want {
            if !self.open_sample() {
                break;
            }
            let goal = staged.saturating_add(step).min(want);
            short = !self.stage_blocks(&mut staged, goal);
            // Closes the sample (`calibrate`).
            let _ = self.fresh_snapshot(report);
            if short {
                break;
            }
        }
        if self.calibration_tries != tries && !short {
            // The batch was planned before the accounting was known: what it may still take
            // is the room under a fresh ceiling computed with what was learned (the staged
            // blocks are already in it, charged or subtracted as their footprint).
            let more = self.room().map_or(0, |r| {
                usize::try_from(r.whole_pages(PageSize::Large)).unwrap_or(0)
            });
            want = want.min(staged.saturating_add(more));
        }
        if !short {
            short = !self.stage_blocks(&mut staged, want);
        }
        self.stats.add(Counter::BlockUnits, staged as u64);
        if short {
            self.block_allocation_failed(cycle, report);
        }
        if staged == 0 {
            return true;
        }
        let error_before = report.error;
        // From here the staged blocks are the host's or go back to Windows.
        self.in_flight = Frames::ZERO;
        let Some(out) = self.transfer_large(now, Direction::Lock, staged, report) else {
            return false;
        };
        self.count_refused(PageSize::Large, out.refused, cycle, report);
        self.note_inflated(PageSize::Large, out.moved, report);
        if report.error != error_before || out.not_needed {
            return false;
        }
        if cycle
            .refused
            .get(PageSize::Large.index())
            .copied()
            .unwrap_or(0)
            >= MAX_REFUSED_PER_CYCLE
        {
            // Too many refusals: go on with blocks held as 4 KiB pages.
            cycle.large_ok = false;
        }
        if !out.moved.is_zero() {
            self.alloc_backoff.succeed();
        }
        // The host took nothing and refused nothing: no progress.
        !out.moved.is_zero() || out.refused > 0
    }

    /// Moves the `count` staged blocks as 2 MiB pages (LOCK or UNLOCK) and puts each where
    /// it now belongs: LOCK taken → the Large shelf, LOCK refused or not done → back to the
    /// OS (2 MiB refusals are not held: `docs/protocol.md` §3 rule 3); UNLOCK done → back to the
    /// OS, UNLOCK failed → set aside on the Large shelf. `None` after a RESET (every unit
    /// has then been freed).
    #[inline(never)]
    fn transfer_large(
        &mut self,
        now: Instant,
        direction: Direction,
        count: usize,
        report: &mut TickReport,
    ) -> Option<Outcome> {
        let pages = &self.pages;
        let t = self
            .channel
            .transfer(direction, PageSize::Large, count, |i| {
                pages.staged_pfn(i, 0)
            });
        report.calls = report.calls.saturating_add(t.calls);
        if let Some(e) = t.stop.filter(|e| e.is_reset()) {
            // The host has forgotten every page, these included: none may be stored.
            self.free_staged();
            self.note_error(now, e, report);
            return None;
        }
        let per = PageSize::Large.frames();
        let mut out = Outcome {
            refused: t.refused.len(),
            ..Outcome::default()
        };
        for i in 0..count {
            let Some(unit) = self.pages.unstage() else {
                break;
            };
            let done = t.done.contains(i);
            match (direction, done) {
                (Direction::Lock, true) => {
                    self.pages.store(Shelf::Large, unit, StorePosition::First);
                    self.add_held(Shelf::Large, per, true);
                    out.moved = out.moved.saturating_add(per);
                }
                (Direction::Lock, false) => self.pages.free(unit),
                (Direction::Unlock, true) => {
                    self.pages.free(unit);
                    self.add_held(Shelf::Large, per, false);
                    out.moved = out.moved.saturating_add(per);
                }
                (Direction::Unlock, false) => {
                    self.pages.store(Shelf::Large, unit, StorePosition::Last);
                    out.failed = out.failed.saturating_add(per);
                }
            }
        }
        // Anything still staged (a count the store could not match) goes back to the OS:
        // none of it is held.
        self.free_staged();
        out.not_needed = t.not_needed;
        if let Some(e) = t.stop {
            self.note_error(now, e, report);
        }
        Some(out)
    }

    /// Locks one unit as 4 KiB pages and puts it where it belongs: all taken → `shelf`;
    /// some refused, or only part taken → parked until the end of the tick (refused pages
    /// stay out of the OS's hands for the cycle, and the accepted ones are unlocked before
    /// the unit is freed whole); nothing taken and nothing refused → back to the OS.
    /// Returns whether to continue.
    #[inline(never)]
    fn lock_small(
        &mut self,
        now: Instant,
        shelf: Shelf,
        unit: P::Unit,
        cycle: &mut Cycle,
        report: &mut TickReport,
    ) -> bool {
        self.lock_small_at(now, shelf, unit, StorePosition::First, cycle, report)
    }

    /// [`Balloon::lock_small`], storing a fully taken unit at `position` on its shelf.
    fn lock_small_at(
        &mut self,
        now: Instant,
        shelf: Shelf,
        unit: P::Unit,
        position: StorePosition,
        cycle: &mut Cycle,
        report: &mut TickReport,
    ) -> bool {
        let len = self.unit_len(&unit).min(BATCH_CAPACITY);
        self.pages.stage(unit);
        let pages = &self.pages;
        let held = self.size().get();
        // Single-page mode re-reads the target from every LOCK reply: a lowered one ends the
        // pass before it is overshot (Linux re-reads it before every page, docs/protocol.md
        // §6.3). A batch is one call and does not ask.
        let t = self.channel.transfer_until(
            Direction::Lock,
            PageSize::Small,
            len,
            |i| pages.staged_pfn(0, i),
            |done, target| held.saturating_add(done as u64) >= target.get(),
        );
        report.calls = report.calls.saturating_add(t.calls);
        if let Some(e) = t.stop.filter(|e| e.is_reset()) {
            self.free_staged();
            self.note_error(now, e, report);
            return false;
        }
        let Some(unit) = self.pages.unstage() else {
            return false;
        };
        let done = t.done.len();
        let single = self
            .channel
            .session()
            .is_some_and(|s| s.mode == LockMode::Single);
        let taken = Frames::new(done as u64);
        if done == len {
            self.pages.store(shelf, unit, position);
            self.add_held(shelf, taken, true);
        } else if done == 0 && t.refused.is_empty() {
            self.pages.free(unit);
        } else {
            self.park(unit, t.done);
            self.stats.add(Counter::RefusedHeld, t.refused.len() as u64);
        }
        self.count_refused(PageSize::Small, t.refused.len(), cycle, report);
        self.note_inflated(PageSize::Small, taken, report);
        if let Some(e) = t.stop {
            self.note_error(now, e, report);
            return false;
        }
        // NOTNEEDED ends the pass (LNX-old, OVT); so do too many refusals this cycle
        // (`VMW_BALLOON_MAX_REFUSED`), a batch the host took nothing of, and in single-page
        // mode any page the host did not take (Linux and OVT stop at the first).
        let refused = cycle.refused.get(PageSize::Small.index()).copied();
        !t.not_needed
            && refused.unwrap_or(0) < MAX_REFUSED_PER_CYCLE
            && done > 0
            && !(single && done < len)
    }

    /// Parks `unit`, of which the host holds `held` (a new partial unit).
    fn park(&mut self, unit: P::Unit, held: PageMask) {
        self.stats.add(Counter::UnitsParked, 1);
        self.park_again(unit, held);
    }

    /// Parks `unit` (new or unparked a moment ago), keeping the parked counts.
    fn park_again(&mut self, unit: P::Unit, held: PageMask) {
        self.parked_total = self.parked_total.saturating_add(self.pages.frames(&unit));
        self.parked_held = self
            .parked_held
            .saturating_add(Frames::new(held.len() as u64));
        self.pages.park(unit, held);
    }

    /// Takes back the oldest parked unit, keeping the parked counts.
    fn unpark(&mut self) -> Option<(P::Unit, PageMask)> {
        let (unit, held) = self.pages.unpark()?;
        self.parked_total = self.parked_total.saturating_sub(self.pages.frames(&unit));
        self.parked_held = self
            .parked_held
            .saturating_sub(Frames::new(held.len() as u64));
        Some((unit, held))
    }

    /// Stages whole blocks for this batch's 2 MiB LOCK until `staged` reaches `goal`; their
    /// frames count in the footprint until the call is made. Returns `false` when Windows
    /// had no whole block left.
    fn stage_blocks(&mut self, staged: &mut usize, goal: usize) -> bool {
        while *staged < goal {
            let Some(block) = self.take_block() else {
                return false;
            };
            self.in_flight = self.in_flight.saturating_add(self.pages.frames(&block));
            self.pages.stage(block);
            *staged = staged.saturating_add(1);
        }
        true
    }

    /// Opens a calibration sample: the snapshot before the balloon's next allocation.
    /// Returns `false` (no sample) when no snapshot could be taken.
    fn open_sample(&mut self) -> bool {
        let Ok(snap) = self.memory.snapshot() else {
            return false;
        };
        self.sample = Some(Sample {
            snap,
            at: self.clock.now(),
            footprint: self.footprint(),
        });
        true
    }

    /// Whether this tick has reached its work bound ([`MAX_BATCHES_PER_TICK`] batches or
    /// `deadline`); if so it reports more work, to be continued at once.
    fn tick_bound_hit(
        &mut self,
        cycle: &Cycle,
        deadline: Instant,
        report: &mut TickReport,
    ) -> bool {
        let hit = cycle.batches >= MAX_BATCHES_PER_TICK || self.clock.now() >= deadline;
        if hit {
            report.more_work = true;
            self.stats.add(Counter::TicksContinued, 1);
        }
        hit
    }

    /// [`PageAllocator::allocate_block`], counted.
    fn take_block(&mut self) -> Option<P::Unit> {
        let unit = self.pages.allocate_block();
        self.counted(unit)
    }

    /// [`PageAllocator::allocate_scattered_below`], counted.
    fn take_scattered_below(&mut self, pages: usize, limit: Pfn) -> Option<P::Unit> {
        let unit = self.pages.allocate_scattered_below(pages, limit);
        self.counted(unit)
    }

    /// [`PageAllocator::allocate_scattered`], counted.
    fn take_scattered(&mut self, pages: usize) -> Option<P::Unit> {
        let unit = self.pages.allocate_scattered(pages);
        self.counted(unit)
    }

    /// Adds a new unit's frames to the running count of frames allocated.
    fn counted(&mut self, unit: Option<P::Unit>) -> Option<P::Unit> {
        let unit = unit?;
        self.allocated = self
            .allocated
            .saturating_add(self.pages.frames(&unit).get());
        Some(unit)
    }

    fn count_refused(
        &mut self,
        size: PageSize,
        refused: usize,
        cycle: &mut Cycle,
        report: &mut TickReport,
    ) {
        if let Some(r) = cycle.refused.get_mut(size.index()) {
            *r = r.saturating_add(refused);
        }
        self.stats
            .add(Counter::for_size(Counter::Refused4k, size), refused as u64);
        report.refused = report
            .refused
            .saturating_add(size.frames().saturating_mul(refused as u64));
    }

    fn note_inflated(&mut self, size: PageSize, frames: Frames, report: &mut TickReport) {
        if frames.is_zero() {
            return;
        }
        self.stats.add(
            Counter::for_size(Counter::Inflated4k, size),
            frames.whole_pages(size),
        );
        report.inflated = report.inflated.saturating_add(frames);
    }

    /// A 4 KiB allocation failure (or a short one) ends the inflation and backs off.
    fn allocation_failed(&mut self, now: Instant, report: &mut TickReport) -> bool {
        report.alloc_failures = report.alloc_failures.saturating_add(1);
        self.stats.add(Counter::AllocFail4k, 1);
        self.alloc_backoff.fail(now, self.config.poll_interval);
        report.reason = Some(ClampReason::AllocationFailed);
        false
    }

    /// One deflate batch toward `frames` fewer. Returns whether to continue.
    ///
    /// Only whole units go back. Following the host (`HostTarget`), the balloon never goes
    /// below the target: a unit larger than what is left is not taken (round down).
    /// Protecting the guest, at least `frames` go back (round up).
    fn deflate_batch(
        &mut self,
        now: Instant,
        frames: Frames,
        reason: ClampReason,
        cycle: &mut Cycle,
        report: &mut TickReport,
    ) -> bool {
        let first = cycle.direction.is_none();
        if *cycle.direction.get_or_insert(Direction::Unlock) != Direction::Unlock {
            return false;
        }
        report.reason = reason.is_guest_bound().then_some(reason).or(report.reason);
        if reason == ClampReason::LowMemory {
            // One step per wake: LowMemoryCondition lags behind what the balloon gives back.
            if cycle.low_memory_step_done {
                return false;
            }
            cycle.low_memory_step_done = true;
            report.low_memory_deflate = true;
            self.stats.add(Counter::LowMemoryDeflates, 1);
        } else if reason.is_guest_bound() {
            if first {
                self.stats.add(Counter::GuardDeflates, 1);
            }
        } else if self.host_backoff.active(now) {
            return false;
        }
        if reason.is_guest_pressure() && first {
            self.damping.pressure(self.clock.now());
            self.stats.add(Counter::PressureHolds, 1);
        }
        let exact = reason == ClampReason::HostTarget;
        let Some(mut out) = self.unlock_some(now, frames, exact, report) else {
            return false;
        };
        if reason == ClampReason::LowMemory {
            // The step is the planned frames, not one unit: with scattered units a unit is
            // 2 MiB, and the next step waits for the next wake. Within the tick's bounds: a
            // step cut short continues at once (`more_work`).
            let mut given = out.moved;
            let deadline = now.saturating_add(TICK_BUDGET);
            while given < frames && out.failed.is_zero() && report.error.is_none() {
                cycle.batches = cycle.batches.saturating_add(1);
                if self.tick_bound_hit(cycle, deadline, report) {
                    break;
                }
                let Some(more) = self.unlock_some(now, frames.saturating_sub(given), exact, report)
                else {
                    break;
                };
                given = given.saturating_add(more.moved);
                out.failed = more.failed;
                if more.moved.is_zero() {
                    break;
                }
            }
            out.moved = given;
        }
        // A batch with UNLOCK failures ends the pass: the next tick starts with other units
        // (this one was set aside or parked), so a page the host keeps never spins the loop.
        out.failed.is_zero()
            && !out.moved.is_zero()
            && report.error.is_none()
            && reason != ClampReason::LowMemory
    }

    /// Unlocks the next unit(s) toward `frames` (one 4 KiB unit, or up to a batch of 2 MiB
    /// pages), scattered units first. `None` when nothing could be taken.
    fn unlock_some(
        &mut self,
        now: Instant,
        frames: Frames,
        exact: bool,
        report: &mut TickReport,
    ) -> Option<Outcome> {
        for shelf in Shelf::ALL {
            if shelf == Shelf::Large {
                let n = if exact {
                    frames.whole_pages(PageSize::Large)
                } else {
                    frames.get().div_ceil(PageSize::Large.frames().get())
                };
                let n = usize::try_from(n)
                    .unwrap_or(BATCH_CAPACITY)
                    .min(BATCH_CAPACITY);
                let mut staged = 0usize;
                while staged < n {
                    let Some(unit) = self.pages.take(Shelf::Large) else {
                        break;
                    };
                    self.pages.stage(unit);
                    staged = staged.saturating_add(1);
                }
                if staged == 0 {
                    continue;
                }
                let out = self.transfer_large(now, Direction::Unlock, staged, report)?;
                self.note_deflated(PageSize::Large, out, report);
                return Some(out);
            }
            // A 4 KiB UNLOCK can fail in part, leaving a unit to park.
            if !self.can_park() {
                continue;
            }
            let Some(unit) = self.pages.take(shelf) else {
                continue;
            };
            if exact && self.pages.frames(&unit) > frames {
                self.pages.store(shelf, unit, StorePosition::First);
                continue;
            }
            let out = self.unlock_small(now, shelf, unit, report)?;
            self.note_deflated(PageSize::Small, out, report);
            return Some(out);
        }
        None
    }

    /// Unlocks every frame of one stored 4 KiB unit from `shelf`: all given back → back to
    /// the OS; none → set aside on its shelf; some → parked with the frames the host still
    /// holds. `None` after a RESET.
    #[inline(never)]
    fn unlock_small(
        &mut self,
        now: Instant,
        shelf: Shelf,
        unit: P::Unit,
        report: &mut TickReport,
    ) -> Option<Outcome> {
        let len = self.unit_len(&unit).min(BATCH_CAPACITY);
        self.pages.stage(unit);
        let pages = &self.pages;
        let t = self
            .channel
            .transfer(Direction::Unlock, PageSize::Small, len, |i| {
                pages.staged_pfn(0, i)
            });
        report.calls = report.calls.saturating_add(t.calls);
        if let Some(e) = t.stop.filter(|e| e.is_reset()) {
            // The host has forgotten every page: the whole unit goes back to the OS.
            self.free_staged();
            self.note_error(now, e, report);
            return None;
        }
        let unit = self.pages.unstage()?;
        let done = t.done.len();
        let all = Frames::new(len as u64);
        let moved = Frames::new(done as u64);
        if done == 0 {
            self.pages.store(shelf, unit, StorePosition::Last);
        } else {
            self.add_held(shelf, all, false);
            if done == len {
                self.pages.free(unit);
            } else {
                // Off the shelf, into the park: the host still holds the rest.
                self.park(unit, t.done.complement_within(len));
            }
        }
        if let Some(e) = t.stop {
            self.note_error(now, e, report);
        }
        Some(Outcome {
            moved,
            failed: all.saturating_sub(moved),
            ..Outcome::default()
        })
    }

    fn note_deflated(&mut self, size: PageSize, out: Outcome, report: &mut TickReport) {
        self.stats.add(
            Counter::for_size(Counter::Deflated4k, size),
            out.moved.whole_pages(size),
        );
        self.stats
            .add(Counter::UnlockFailures, out.failed.whole_pages(size));
        report.deflated = report.deflated.saturating_add(out.moved);
    }

    /// Ends the tick's business with parked units: one whose host holds nothing goes back
    /// to the OS; one the host holds part of is unlocked (what the host still holds), then
    /// freed whole. An UNLOCK that fails again leaves it parked for the next tick.
    #[inline(never)]
    fn settle_parked(&mut self, now: Instant, report: &mut TickReport) {
        let parked = self.pages.parked();
        for _ in 0..parked {
            let Some((unit, held)) = self.unpark() else {
                return;
            };
            if held.is_empty() {
                self.pages.free(unit);
                continue;
            }
            if self.host_backoff.active(now) || self.channel.reset_pending() {
                self.park_again(unit, held);
                continue;
            }
            // Only the frames the host holds are named, densely: entry k is the k-th frame
            // of `held` (a single-page pass ends at its first gap otherwise).
            self.pages.stage(unit);
            let pages = &self.pages;
            let t = self
                .channel
                .transfer(Direction::Unlock, PageSize::Small, held.len(), |k| {
                    held.iter().nth(k).and_then(|i| pages.staged_pfn(0, i))
                });
            report.calls = report.calls.saturating_add(t.calls);
            if let Some(e) = t.stop.filter(|e| e.is_reset()) {
                self.free_staged();
                self.note_error(now, e, report);
                return;
            }
            let Some(unit) = self.pages.unstage() else {
                return;
            };
            let mut left = held;
            for k in t.done.iter() {
                if let Some(i) = held.iter().nth(k) {
                    left.remove(i);
                }
            }
            let moved = Frames::new(held.len().saturating_sub(left.len()) as u64);
            if left.is_empty() {
                self.pages.free(unit);
            } else {
                self.park_again(unit, left);
            }
            self.stats.add(Counter::Deflated4k, moved.get());
            report.deflated = report.deflated.saturating_add(moved);
            if let Some(e) = t.stop {
                self.note_error(now, e, report);
                return;
            }
        }
    }

    /// Room under a fresh ceiling (the host's current target included), or `None` when the
    /// balloon is above it, Windows signals memory pressure, or no snapshot can be taken.
    fn room(&mut self) -> Option<Frames> {
        let mut scratch = TickReport::default();
        let snap = self.fresh_snapshot(&mut scratch)?;
        if Self::signalled(&snap) {
            return None;
        }
        let balloon = self.size();
        let c = policy::ceiling_with(
            self.channel.target(),
            balloon,
            &snap,
            &self.config,
            &self.accounting(),
        );
        c.value.checked_sub(balloon)
    }

    /// Arms compaction when memory the guest does not use (available memory plus the
    /// balloon) has grown by a thirty-second of RAM (64 MiB to 1 GiB) since its lowest point
    /// while the balloon did not grow: the guest freed memory, so blocks where the balloon's
    /// scattered pages sit may now hold nothing else. A deflate changes both terms alike;
    /// growth re-bases the measure (memory the balloon took from trimmed working sets is not
    /// memory the guest freed).
    fn arm_compaction(&mut self, snap: &MemorySnapshot, footprint: Frames) {
        let Some(avail) = snap.available else { return };
        let unused = avail.saturating_add(footprint);
        if self.compaction.is_some() {
            // While one runs (and right after), the measure starts again from here.
            self.unused_low = Some((unused, footprint));
            return;
        }
        let grew = self.unused_low.is_some_and(|(_, f)| footprint > f);
        let low = match self.unused_low {
            Some((low, _)) if !grew => low.min(unused),
            _ => unused,
        };
        self.unused_low = Some((low, footprint));
        let trigger = Frames::new(snap.total.get() / 32)
            .max(Frames::from_mib(64))
            .min(Frames::from_mib(1024));
        if unused >= low.saturating_add(trigger) && !self.held_on(Shelf::Scattered).is_zero() {
            self.unused_low = Some((unused, footprint));
            self.compaction = Some(Compaction {
                zone: None,
                top: 0,
                left: self.held_on(Shelf::Scattered),
            });
            self.stats.add(Counter::Compactions, 1);
        }
    }

    /// The highest frame of `unit`.
    fn top_frame(&self, unit: &P::Unit) -> u64 {
        (0..self.unit_len(unit).min(BATCH_CAPACITY))
            .filter_map(|i| self.pages.pfn(unit, i))
            .map(Pfn::get)
            .max()
            .unwrap_or(0)
    }

    /// Compaction: moves the balloon's scattered pages out of a zone at the top of physical
    /// memory, growing downward by [`COMPACTION_STEP`] per round over the scattered shelf,
    /// so the zone's blocks become whole for the guest (large pages, contiguous
    /// allocations). Each unit with a page in the zone is given back (UNLOCK, freed whole)
    /// and as many pages are taken again below the zone with `MM_ALLOCATE_PREFER_CONTIGUOUS`
    /// (which fills the holes of the blocks Windows uses most) and locked: the balloon never
    /// holds more than before, and the ceiling is checked before every exchange. It ends
    /// when nothing is left free below the zone (the guest's free memory is then in the
    /// zone), when the zone reaches the bottom, or when no scattered unit is left. Linux
    /// balloon pages are movable in the same spirit (`docs/protocol.md` §6).
    #[inline(never)]
    fn compact(&mut self, now: Instant, cycle: &mut Cycle, report: &mut TickReport) -> bool {
        let mut moved = Frames::ZERO;
        let mut visits = 0u32;
        let deadline = now.saturating_add(TICK_BUDGET);
        while let Some(mut c) = self.compaction {
            if moved >= COMPACTION_FRAMES_PER_TICK
                || visits >= COMPACTION_VISITS_PER_TICK
                || self.clock.now() >= deadline
            {
                return false;
            }
            if c.left.is_zero() {
                // A round is over: the next zone is one step lower (the first round only
                // found the top).
                let block = PageSize::Large.frames().get();
                let step = COMPACTION_STEP.get();
                let zone = match c.zone {
                    None => c
                        .top
                        .checked_div(block)
                        .unwrap_or(0)
                        .saturating_add(1)
                        .saturating_mul(block),
                    Some(z) => z,
                };
                if zone <= step {
                    self.compaction = None;
                    return false;
                }
                c.zone = Some(zone.saturating_sub(step));
                c.left = self.held_on(Shelf::Scattered);
                self.compaction = Some(c);
                continue;
            }
            visits = visits.saturating_add(1);
            let Some(unit) = self.pages.take(Shelf::Scattered) else {
                self.compaction = None;
                return false;
            };
            let len = self.unit_len(&unit);
            c.left = c.left.saturating_sub(self.pages.frames(&unit));
            let top = self.top_frame(&unit);
            c.top = c.top.max(top);
            self.compaction = Some(c);
            let Some(zone) = c.zone.filter(|&z| top >= z) else {
                self.pages
                    .store(Shelf::Scattered, unit, StorePosition::Last);
                continue;
            };
            if !self.can_park() || self.host_backoff.active(now) {
                // The park is full (the tick settles it) or the host asked for a pause: the
                // next idle tick resumes with this unit.
                c.left = c.left.saturating_add(self.pages.frames(&unit));
                self.pages
                    .store(Shelf::Scattered, unit, StorePosition::First);
                self.compaction = Some(c);
                return false;
            }
            if self.room().is_none() {
                // Pressure, or the balloon above its ceiling (within the slack the plan
                // holds in): not the time to move pages; it ends here.
                self.pages
                    .store(Shelf::Scattered, unit, StorePosition::First);
                self.compaction = None;
                return false;
            }
            let Some(out) = self.unlock_small(now, Shelf::Scattered, unit, report) else {
                return false;
            };
            self.note_deflated(PageSize::Small, out, report);
            if !out.failed.is_zero() || report.error.is_some() {
                return false;
            }
            moved = moved.saturating_add(out.moved);
            // The UNLOCK's reply may have lowered the target: take again only what a fresh
            // ceiling leaves room for (nothing: the balloon simply stays smaller).
            let room = self
                .room()
                .map_or(0, |r| usize::try_from(r.get()).unwrap_or(BATCH_CAPACITY));
            let len = len.min(room);
            if len == 0 {
                self.compaction = None;
                return false;
            }
            let fresh = Pfn::new(zone).and_then(|limit| self.take_scattered_below(len, limit));
            let Some(fresh) = fresh else {
                // Nothing free below the zone: done, and what was given back is refilled
                // wherever Windows has pages.
                self.compaction = None;
                return true;
            };
            let got = self.unit_len(&fresh);
            if got == 0 {
                self.pages.free(fresh);
                self.compaction = None;
                return true;
            }
            self.stats.add(Counter::ScatteredUnits, 1);
            let before = self.size();
            let ok = self.lock_small_at(
                now,
                Shelf::Scattered,
                fresh,
                StorePosition::Last,
                cycle,
                report,
            );
            let locked = self.size().saturating_sub(before);
            self.stats.add(Counter::CompactedFrames, locked.get());
            report.compacted = report.compacted.saturating_add(locked);
            if got < len {
                self.compaction = None;
                return ok;
            }
            if !ok {
                return false;
            }
        }
        false
    }

    fn add_held(&mut self, shelf: Shelf, frames: Frames, inflate: bool) {
        if let Some(h) = self.held.get_mut(shelf.index()) {
            *h = if inflate {
                h.saturating_add(frames)
            } else {
                h.saturating_sub(frames)
            };
        }
    }

    /// Records a host error: RESET schedules the reset sequence, BUSY and other host errors
    /// back off, local refusals are reported only.
    fn note_error(&mut self, now: Instant, e: Error, report: &mut TickReport) {
        report.error = Some(e);
        match e {
            Error::Reset { .. } => {
                report.host_reset = true;
                self.state = SessionState::ResetPending;
                self.stats.add(Counter::HostResets, 1);
                // The host has forgotten every page: give them all back now, without
                // UNLOCK, rather than at the next tick, so no stored page is one the host
                // does not hold (the `store` contract) and the guest gets its memory sooner.
                let popped = self.pop_all();
                report.popped = report.popped.saturating_add(popped);
            }
            Error::Busy { .. }
            | Error::Host { .. }
            | Error::UnknownStatus { .. }
            | Error::ReplyOutOfRange { .. } => {
                self.stats.add(Counter::HostBackoffs, 1);
                self.host_backoff.pause(now, self.config.poll_interval);
            }
            _ => {}
        }
    }

    fn finish(&mut self, report: &mut TickReport) {
        report.balloon = self.size();
        report.target = self.channel.target();
        report.state = if self.channel.reset_pending() && self.state == SessionState::Running {
            SessionState::ResetPending
        } else {
            self.state
        };
        if report.reason.is_none()
            && let Some(c) = report.ceiling
            && c.reason.is_guest_bound()
            && c.value < report.target
        {
            report.reason = Some(c.reason);
        }
        if let Some(reason) = report.reason {
            self.stats.clamp(reason);
        }
    }
}

#[cfg(test)]
mod tests;
