//! The balloon engine: the state machine that runs the protocol against the platform.
//!
//! Each [`Balloon::tick`] (once per `PollIntervalMs`, and whenever the driver is woken by
//! `LowMemoryCondition`):
//!
//! 1. If a reset is pending (at load, or after RESET from any command): give every
//!    ballooned page back to the OS without UNLOCK (the host has forgotten them), then
//!    START → batch page → GUEST_ID (`protocol.md` §3 rule 1, Linux `vmballoon_reset`).
//! 2. TARGET with the guest's RAM in frames.
//! 3. Batches of up to 512 pages, each preceded by a fresh memory snapshot, the safe
//!    ceiling and the plan ([`crate::policy`]), until the plan holds or a bound is hit:
//!    2 MiB pages while at least 512 frames remain and the host granted them, 4 KiB pages
//!    for the rest and when 2 MiB allocations fail; refused pages held (at most 16 per
//!    cycle) and returned to the OS at the end of the tick.
//!
//! The engine never sleeps and never allocates memory of its own; it reports what it did
//! and why in a [`TickReport`].

use crate::channel::{Channel, Direction};
use crate::config::Config;
use crate::error::Error;
use crate::mask::PageMask;
use crate::platform::{
    Clock, HELD_REFUSED_CAPACITY, MemorySnapshot, MemorySource, PageAllocator, StorePosition,
};
use crate::policy::{self, Ceiling, ClampReason, Motion, Plan, Pressure};
use crate::protocol::{BATCH_CAPACITY, Backdoor, Capabilities, LockMode, Session};
use crate::stats::{Counter, Stats};
use crate::units::{Duration, Frames, Instant, PageSize};

/// Refused pages of one size per cycle after which inflation stops (4 KiB) or falls back
/// to 4 KiB pages (2 MiB): `VMW_BALLOON_MAX_REFUSED`, OVT `BALLOON_ERROR_PAGES`.
pub const MAX_REFUSED_PER_CYCLE: usize = HELD_REFUSED_CAPACITY;

/// Batches per tick before the engine returns with [`TickReport::more_work`] set, so the
/// driver's worker can notice an unload or a low-memory wake between them. 1024 batches
/// are 2 GiB of 4 KiB pages or 1 TiB of 2 MiB pages: no rate limit in practice.
pub const MAX_BATCHES_PER_TICK: u32 = 1024;

/// Wall-clock budget of one tick, for the same reason.
pub const TICK_BUDGET: Duration = Duration::from_millis(250);

/// After a low-memory deflate, inflation pauses this long (Linux `VMBALLOON_SHRINK_DELAY`).
pub const LOW_MEMORY_HOLD: Duration = Duration::from_secs(5);

/// Longest back-off after repeated BUSY, host errors or allocation failures. Short: Linux
/// and OVT simply retry at the next tick, and a RESET must not wait long for an answer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// `LowMemoryCondition` signalled within this time of the balloon growing is attributed to
/// the balloon's own allocations (Windows' balance-set manager trims working sets once a
/// second): inflation stops but nothing is deflated. Signalled later, it is guest pressure.
pub const SELF_INDUCED_WINDOW: Duration = Duration::from_secs(2);

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
        self.step = if self.step == Duration::ZERO {
            base.min(MAX_BACKOFF)
        } else {
            self.step.saturating_mul(2).min(MAX_BACKOFF)
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
    large_ok: bool,
    refused: [usize; 2],
    held: usize,
    direction: Option<Direction>,
    low_memory_step_done: bool,
}

/// The balloon: the engine and the platform it runs on.
pub struct Balloon<B, P: PageAllocator, M, C> {
    channel: Channel<B>,
    pages: P,
    memory: M,
    clock: C,
    config: Config,
    /// Pages held by the host, per [`PageSize`].
    held: [u64; 2],
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
    inflate_hold_until: Instant,
    /// When the balloon last grew (for [`SELF_INDUCED_WINDOW`]).
    last_growth: Option<Instant>,
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
            held: [0; 2],
            total: Frames::ZERO,
            state: SessionState::Unstarted,
            host_backoff: Backoff::default(),
            start_backoff: Backoff::default(),
            alloc_backoff: Backoff::default(),
            inflate_hold_until: Instant::default(),
            last_growth: None,
            stats: Stats::new(),
        }
    }

    /// Frames the host holds.
    #[must_use]
    pub fn size(&self) -> Frames {
        let [small, large] = self.held;
        PageSize::Small
            .frames()
            .saturating_mul(small)
            .saturating_add(PageSize::Large.frames().saturating_mul(large))
    }

    /// Pages of `size` the host holds.
    #[must_use]
    pub fn pages_held(&self, size: PageSize) -> u64 {
        self.held.get(size.index()).copied().unwrap_or(0)
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

    /// One poll: reset if needed, TARGET, then inflate or deflate batch by batch.
    pub fn tick(&mut self) -> TickReport {
        let now = self.clock.now();
        let mut report = TickReport::new(now);
        self.stats.add(Counter::Ticks, 1);
        let snapshot = self.memory.snapshot().ok();
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
        self.pages.free_refused();
        self.finish(&mut report);
        report
    }

    /// Returns every page to the OS: START(0) first, so the host ends the session before
    /// the guest touches pages it just freed (Linux unload order, `protocol.md` §3 rule
    /// 5), then frees every page without UNLOCK. Returns the frames freed.
    pub fn shutdown(&mut self) -> Frames {
        if self.channel.session().is_some() {
            // Failure is irrelevant: the pages are freed either way, and a host that did not
            // hear START(0) resets the session at the next START.
            let _ = self.channel.stop();
        }
        self.state = SessionState::Unstarted;
        self.pop_all()
    }

    /// Frees every ballooned page without UNLOCK (the host no longer holds them).
    fn pop_all(&mut self) -> Frames {
        let mut popped = Frames::ZERO;
        for size in PageSize::ALL {
            while let Some(chunk) = self.pages.take(size) {
                let n = self.pages.page_count(&chunk);
                popped = popped.saturating_add(size.frames().saturating_mul(n as u64));
                self.pages.free(chunk);
            }
        }
        self.pages.free_refused();
        self.held = [0; 2];
        self.stats.add(Counter::FramesPopped, popped.get());
        popped
    }

    /// The reset sequence (`protocol.md` §3 rule 1; Linux `vmballoon_reset`).
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
                // session with START(0) and retry next tick (protocol.md §4 step 3).
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

    /// TARGET, then the batches.
    fn run(&mut self, now: Instant, report: &mut TickReport) {
        if self.host_backoff.active(now) && !self.guest_needs_memory(now, report.snapshot) {
            return;
        }
        // TARGET's limit is the guest's RAM in frames: every open driver sends it
        // (protocol.md §2.2). Without a snapshot yet, skip the tick.
        if self.total.is_zero() {
            return;
        }
        if let Err(e) = self.channel.get_target(self.total) {
            report.calls = report.calls.saturating_add(1);
            self.note_error(now, e, report);
            if !self.guest_needs_memory(now, report.snapshot) {
                return;
            }
        } else {
            report.calls = report.calls.saturating_add(1);
        }
        let mut cycle = Cycle {
            large_ok: self.channel.session().is_some_and(|s| s.large_pages)
                && self.config.use_large_pages,
            ..Cycle::default()
        };
        let deadline = now.saturating_add(TICK_BUDGET);
        loop {
            if self.channel.reset_pending() {
                break;
            }
            if cycle.batches >= MAX_BATCHES_PER_TICK || self.clock.now() >= deadline {
                report.more_work = true;
                self.stats.add(Counter::TicksContinued, 1);
                break;
            }
            // The ceiling is re-checked before every batch from a fresh snapshot.
            let Ok(snap) = self.memory.snapshot() else {
                report.error.get_or_insert(Error::MemoryUnavailable);
                break;
            };
            report.snapshot = Some(snap);
            let balloon = self.size();
            let ceiling = policy::ceiling(self.channel.target(), balloon, &snap, &self.config);
            report.ceiling = Some(ceiling);
            let motion = match cycle.direction {
                None => Motion::Idle,
                Some(Direction::Lock) => Motion::Inflating,
                Some(Direction::Unlock) => Motion::Deflating,
            };
            let pressure = self.pressure(now, &snap);
            let plan = policy::plan(balloon, ceiling, &snap, &self.config, motion, pressure);
            let keep_going = match plan {
                Plan::Hold => {
                    if snap.low_memory && ceiling.value > balloon {
                        report.reason = Some(ClampReason::LowMemory);
                    }
                    false
                }
                Plan::Inflate(frames) => self.inflate_batch(now, frames, &mut cycle, report),
                Plan::Deflate(frames, reason) => {
                    self.deflate_batch(now, frames, reason, &mut cycle, report)
                }
            };
            if !keep_going {
                break;
            }
            cycle.batches = cycle.batches.saturating_add(1);
        }
    }

    /// Whether the guest needs memory back regardless of the host (low memory, or a
    /// guest-side bound below the balloon): such deflates are not delayed by a host back-off.
    fn guest_needs_memory(&self, now: Instant, snapshot: Option<MemorySnapshot>) -> bool {
        let Some(snap) = snapshot else { return false };
        let balloon = self.size();
        if balloon.is_zero() {
            return false;
        }
        let c = policy::ceiling(Frames::MAX, balloon, &snap, &self.config);
        let low = self.pressure(now, &snap) == Pressure::Guest;
        (low && self.config.deflate_on_low_memory) || c.value < balloon
    }

    /// What a signalled `LowMemoryCondition` means now (see [`SELF_INDUCED_WINDOW`]).
    fn pressure(&self, now: Instant, snap: &MemorySnapshot) -> Pressure {
        if !snap.low_memory {
            return Pressure::None;
        }
        match self.last_growth {
            Some(t) if now.saturating_since(t) < SELF_INDUCED_WINDOW => Pressure::SelfInduced,
            _ => Pressure::Guest,
        }
    }

    /// One inflate batch toward `frames` more. Returns whether to continue.
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
        if now < self.inflate_hold_until {
            report.reason = Some(ClampReason::LowMemory);
            return false;
        }
        if self.alloc_backoff.active(now) {
            report.reason = Some(ClampReason::AllocationFailed);
            return false;
        }
        if self.host_backoff.active(now) {
            return false;
        }
        // 2 MiB pages only while a whole one fits: inflation never overshoots the ceiling.
        let size = if cycle.large_ok && frames >= PageSize::Large.frames() {
            PageSize::Large
        } else {
            PageSize::Small
        };
        let want = usize::try_from(frames.whole_pages(size))
            .unwrap_or(BATCH_CAPACITY)
            .min(BATCH_CAPACITY);
        let Some(mut chunk) = self.pages.allocate(size, want) else {
            return self.allocation_failed(now, size, cycle, report);
        };
        let got = self.pages.page_count(&chunk).min(want);
        if got == 0 {
            self.pages.free(chunk);
            return self.allocation_failed(now, size, cycle, report);
        }
        let pages = &self.pages;
        let t = self
            .channel
            .transfer(Direction::Lock, size, got, |i| pages.pfn(&chunk, i));
        report.calls = report.calls.saturating_add(t.calls);
        if let Some(e) = t.stop.filter(|e| e.is_reset()) {
            // The host has forgotten every page, these included: none may be stored.
            self.pages.free(chunk);
            self.note_error(now, e, report);
            return false;
        }

        // Refused 4 KiB pages are held until the end of the cycle so the allocator does not
        // hand them straight back (protocol.md §3 rule 3); 2 MiB ones are freed at once.
        let mut hold = PageMask::EMPTY;
        if size == PageSize::Small {
            for i in t
                .refused
                .iter()
                .take(HELD_REFUSED_CAPACITY.saturating_sub(cycle.held))
            {
                hold.insert(i);
            }
            cycle.held = cycle.held.saturating_add(hold.len());
            self.stats.add(Counter::RefusedHeld, hold.len() as u64);
        }
        let refused = t.refused.len();
        if let Some(r) = cycle.refused.get_mut(size.index()) {
            *r = r.saturating_add(refused);
        }
        self.stats
            .add(Counter::for_size(Counter::Refused4k, size), refused as u64);
        report.refused = report
            .refused
            .saturating_add(size.frames().saturating_mul(refused as u64));

        let done = t.done.len();
        self.pages.retain(&mut chunk, &t.done, &hold);
        if done == 0 {
            self.pages.free(chunk);
        } else {
            self.pages.store(chunk, StorePosition::First);
        }
        self.add_held(size, done, true);
        if done > 0 {
            self.last_growth = Some(now);
        }
        self.stats
            .add(Counter::for_size(Counter::Inflated4k, size), done as u64);
        report.inflated = report
            .inflated
            .saturating_add(size.frames().saturating_mul(done as u64));

        if let Some(e) = t.stop {
            self.note_error(now, e, report);
            return false;
        }
        if t.not_needed {
            return false;
        }
        let refused_so_far = cycle.refused.get(size.index()).copied().unwrap_or(0);
        if refused_so_far >= MAX_REFUSED_PER_CYCLE {
            // Too many refusals: 2 MiB falls back to 4 KiB; 4 KiB stops for this cycle.
            cycle.large_ok = false;
            return size == PageSize::Large;
        }
        if got < want {
            self.stats.add(Counter::ShortAllocations, 1);
            return self.allocation_failed(now, size, cycle, report);
        }
        if done == 0 {
            // The host took nothing and refused nothing we could hold: no progress.
            return false;
        }
        self.alloc_backoff.succeed();
        true
    }

    /// A 2 MiB allocation failure falls back to 4 KiB pages in the same tick; a 4 KiB one
    /// ends the inflation and backs off.
    fn allocation_failed(
        &mut self,
        now: Instant,
        size: PageSize,
        cycle: &mut Cycle,
        report: &mut TickReport,
    ) -> bool {
        report.alloc_failures = report.alloc_failures.saturating_add(1);
        self.stats
            .add(Counter::for_size(Counter::AllocFail4k, size), 1);
        if size == PageSize::Large {
            cycle.large_ok = false;
            return true;
        }
        self.alloc_backoff.fail(now, self.config.poll_interval);
        report.reason = Some(ClampReason::AllocationFailed);
        false
    }

    /// One deflate batch toward `frames` fewer. Returns whether to continue.
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
            self.inflate_hold_until = now.saturating_add(LOW_MEMORY_HOLD);
        } else if reason.is_guest_bound() {
            if first {
                self.stats.add(Counter::GuardDeflates, 1);
            }
        } else if self.host_backoff.active(now) {
            return false;
        }
        // Following the host, never go below its target: 2 MiB pages only while a whole one
        // is surplus. Protecting the guest, round up: give back at least what is needed.
        let exact = reason == ClampReason::HostTarget;
        let Some((size, mut chunk)) = self.take_for_deflate(frames, exact) else {
            return false;
        };
        let count = self.pages.page_count(&chunk);
        let per_page = size.frames().get();
        let needed = if exact {
            frames.whole_pages(size)
        } else {
            frames.get().div_ceil(per_page)
        };
        let n = usize::try_from(needed)
            .unwrap_or(usize::MAX)
            .min(count)
            .min(BATCH_CAPACITY);
        if n == 0 {
            self.pages.store(chunk, StorePosition::First);
            return false;
        }
        let pages = &self.pages;
        let t = self
            .channel
            .transfer(Direction::Unlock, size, n, |i| pages.pfn(&chunk, i));
        report.calls = report.calls.saturating_add(t.calls);
        if let Some(e) = t.stop.filter(|e| e.is_reset()) {
            // The host has forgotten every page: the whole chunk goes back to the OS.
            let frames = size.frames().saturating_mul(count as u64);
            report.popped = report.popped.saturating_add(frames);
            self.stats.add(Counter::FramesPopped, frames.get());
            self.add_held(size, count, false);
            self.pages.free(chunk);
            self.note_error(now, e, report);
            return false;
        }
        let done = t.done.len();
        // Only pages the host gave back are freed; the rest stay ballooned.
        let keep = t.done.complement_within(count);
        self.pages.retain(&mut chunk, &keep, &PageMask::EMPTY);
        let failed = n.saturating_sub(done);
        if self.pages.page_count(&chunk) == 0 {
            self.pages.free(chunk);
        } else if failed > 0 {
            // Set aside, so one page the host will not return cannot block every deflate.
            self.pages.store(chunk, StorePosition::Last);
        } else {
            self.pages.store(chunk, StorePosition::First);
        }
        self.add_held(size, done, false);
        self.stats
            .add(Counter::for_size(Counter::Deflated4k, size), done as u64);
        self.stats.add(Counter::UnlockFailures, failed as u64);
        report.deflated = report
            .deflated
            .saturating_add(size.frames().saturating_mul(done as u64));
        if let Some(e) = t.stop {
            self.note_error(now, e, report);
            return false;
        }
        // A batch with UNLOCK failures ends the pass: the next tick starts with other chunks
        // (this one was set aside), so a page the host keeps never spins the loop.
        failed == 0 && done > 0 && reason != ClampReason::LowMemory
    }

    /// The next chunk to deflate: 4 KiB pages first, then 2 MiB (Linux deflate order), a
    /// 2 MiB page only when `exact` allows a whole one.
    fn take_for_deflate(&mut self, frames: Frames, exact: bool) -> Option<(PageSize, P::Chunk)> {
        for size in PageSize::ALL {
            if exact && frames < size.frames() {
                continue;
            }
            if let Some(chunk) = self.pages.take(size) {
                return Some((size, chunk));
            }
        }
        None
    }

    fn add_held(&mut self, size: PageSize, pages: usize, inflate: bool) {
        if let Some(h) = self.held.get_mut(size.index()) {
            *h = if inflate {
                h.saturating_add(pages as u64)
            } else {
                h.saturating_sub(pages as u64)
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
