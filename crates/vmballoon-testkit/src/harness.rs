//! The harness: one simulated VM running the real engine
//! (`vmballoon_core::engine::Balloon`) against the hostile host ([`crate::host`]) and the
//! hostile guest ([`crate::guest`]), with the oracle ([`crate::oracle`]) watching.
//!
//! [`Harness::tick`] checks after every tick that no page leaked, was freed twice or while
//! the host held it, that the engine's, the guest's and the host's counts agree, and that a
//! tick that inflated left the resident-available and commit floors intact; the host
//! model's own checker (LOCK of a held frame, UNLOCK of one it does not hold, malformed
//! batches, commands before START...) must stay at zero. [`Harness::recover`] then turns
//! the host honest and the guest quiet and checks that the balloon settles;
//! [`Harness::shutdown`] checks that unload gives every page back. [`run`] is the three in
//! a row, as the engine properties (`tests/properties.rs`) and the `engine_script` fuzz
//! target use them.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;

use vmballoon_core::config::Config;
use vmballoon_core::engine::{Balloon, Calibration, SessionState, TickReport};
use vmballoon_core::fake::ManualClock;
use vmballoon_core::platform::Clock;
use vmballoon_core::policy::{self, ClampReason, SLACK};
use vmballoon_core::units::{Frames, Instant};
use vmballoon_sim::guest::{GuestModel, GuestSpec, RequestState};
use vmballoon_sim::host::{HostModel, HostSpec};
use vmballoon_sim::world::{SharedWorld, World};

use crate::guest::{Faults, GuestStep, Memory, Pages};
use crate::host::{BASIC, BATCHED, Hostile, REQUESTED, Reply};
use crate::oracle::{Oracle, safe_ceiling};

/// What is simulated: the guest, the host, and the driver's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// The Windows guest.
    pub guest: GuestSpec,
    /// The host model (capabilities, `Mem.CtlMaxPercent`).
    pub host: HostSpec,
    /// The validated registry settings.
    pub config: Config,
}

impl Setup {
    /// Whether START can give a session that locks pages (legacy, BASIC or BATCHED).
    #[must_use]
    pub fn usable_host(&self) -> bool {
        self.host
            .capabilities
            .is_none_or(|c| u64::from(c.bits()) & REQUESTED & (BASIC | BATCHED) != 0)
    }
}

/// The engine under test.
pub type Engine = Balloon<Hostile, Pages, Memory, ManualClock>;

/// Simulated time per tick group bound: ticks run again at once while `more_work`.
const MAX_TICKS_PER_POLL: u32 = 64;

const SECOND: u64 = 1_000_000_000;

/// One run: the world, the engine, the oracle, and the checks.
pub struct Harness {
    /// Simulated time.
    pub clock: ManualClock,
    /// The simulator's world (guest model, host model, protocol checker).
    pub world: SharedWorld,
    /// The oracle.
    pub oracle: Rc<RefCell<Oracle>>,
    /// The engine.
    pub engine: Engine,
    /// The setup.
    pub setup: Setup,
    ids: Vec<String>,
    next_second: u64,
    /// Engine ticks run.
    pub ticks: u64,
    /// The last tick's report.
    pub last: Option<TickReport>,
    /// Every accounting measurement the engine reported, in order.
    pub calibrations: Vec<Calibration>,
}

/// A broken invariant, with the context to reproduce it.
pub type Failure = String;

impl Harness {
    /// A fresh VM: the engine has not ticked yet; the host answers as `script` says, then
    /// honestly.
    #[must_use]
    pub fn new(setup: &Setup, script: Vec<Reply>) -> Self {
        let clock = ManualClock::new();
        let guest = GuestModel::new(setup.guest);
        let host = HostModel::new(setup.host, guest.total());
        let world = World::new(guest, host, clock.clone());
        let oracle = Rc::new(RefCell::new(Oracle {
            config: setup.config,
            ..Oracle::default()
        }));
        let host = Hostile::new(world.clone(), script, oracle.clone());
        let pages = Pages::new(world.clone(), oracle.clone());
        let memory = Memory::new(world.clone(), oracle.clone());
        let engine = Balloon::new(host, pages, memory, clock.clone(), setup.config);
        Self {
            clock,
            world,
            oracle,
            engine,
            setup: *setup,
            ids: Vec::new(),
            next_second: SECOND,
            ticks: 0,
            last: None,
            calibrations: Vec::new(),
        }
    }

    /// Applies one guest step (between ticks).
    pub fn guest_step(&mut self, step: &GuestStep) {
        let now = self.clock.now();
        match step {
            GuestStep::Idle => {}
            GuestStep::Lock { kind, mib } => {
                let id = format!("r{}", self.ids.len());
                self.world
                    .borrow_mut()
                    .guest
                    .lock(&id, *kind, Frames::from_mib(*mib), now);
                self.ids.push(id);
            }
            GuestStep::Commit { mib } => {
                let id = format!("r{}", self.ids.len());
                self.world
                    .borrow_mut()
                    .guest
                    .commit(&id, Frames::from_mib(*mib), now);
                self.ids.push(id);
            }
            GuestStep::Release(n) => {
                if !self.ids.is_empty() {
                    let id = &self.ids[n % self.ids.len()];
                    self.world.borrow_mut().guest.release(id);
                }
            }
            GuestStep::Faults(f) => self.oracle.borrow_mut().faults.add(f),
            GuestStep::Config(c) => {
                self.engine.set_config(*c);
                self.oracle.borrow_mut().config = *c;
            }
            GuestStep::Target(t) => self.world.borrow_mut().host.set_target(Frames::new(*t)),
        }
    }

    /// Advances simulated time by one poll interval (the guest retries failed requests and
    /// trims working sets on every whole second), then ticks (again at once while the
    /// engine reports more work) and checks every invariant after each tick.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn tick(&mut self) -> Result<TickReport, Failure> {
        let poll = self.engine.config().poll_interval;
        self.clock.advance(poll);
        let now = self.clock.now().as_nanos();
        {
            let mut w = self.world.borrow_mut();
            while self.next_second <= now {
                w.guest.retry_due(Instant::from_nanos(self.next_second));
                w.guest.balance();
                self.next_second += SECOND;
            }
        }
        let mut report = None;
        for _ in 0..MAX_TICKS_PER_POLL {
            self.oracle.borrow_mut().t_dropped = false;
            let r = self.engine.tick();
            self.ticks += 1;
            self.check(&r)?;
            if let Some(c) = r.calibrated {
                self.calibrations.push(c);
            }
            self.last = Some(r);
            report = Some(r);
            if !r.more_work {
                break;
            }
        }
        report.ok_or_else(|| "no tick ran".to_owned())
    }

    fn context(&self, r: Option<&TickReport>) -> String {
        let w = self.world.borrow();
        let mut s = String::new();
        let _ = write!(
            s,
            "\n  t={:.3}s ticks={} state={:?} balloon={} host_held={} stored={} guest_balloon={} \
             target_known={} scripted_left={} setup={:?}\n  calibrations: {:?}",
            self.clock.now().as_nanos() as f64 / 1e9,
            self.ticks,
            self.engine.state(),
            self.engine.size().get(),
            w.host.held_frames().get(),
            w.guest.stored_frames().get(),
            w.guest.balloon_frames().get(),
            self.oracle.borrow().t_known,
            self.engine.channel().backdoor().scripted(),
            self.setup,
            self.calibrations,
        );
        if let Some(r) = r {
            let _ = write!(s, "\n  report: {r:?}");
        }
        s
    }

    /// Every invariant that must hold after any tick.
    fn check(&self, r: &TickReport) -> Result<(), Failure> {
        let fail = |what: String| Err(format!("{what}{}", self.context(Some(r))));
        let w = self.world.borrow();
        if w.checker.count() > 0 {
            let v: Vec<String> = w
                .checker
                .violations()
                .iter()
                .map(ToString::to_string)
                .collect();
            return fail(format!(
                "{} protocol / platform violations: {v:?}",
                w.checker.count()
            ));
        }
        let o = self.oracle.borrow();
        if !o.violations.is_empty() {
            return fail(format!("oracle violations: {:?}", o.violations));
        }
        let size = self.engine.size().get();
        let stored = w.guest.stored_frames().get();
        let dropped = w.guest.dropped_frames().get();
        if dropped != 0 {
            return fail(format!("{dropped} frames leaked in dropped chunks"));
        }
        if o.out != 0 {
            return fail(format!(
                "after the tick {} frames still out of the store",
                o.out
            ));
        }
        if w.guest.balloon_frames().get() != stored {
            return fail(format!(
                "leak: the guest charges {} frames to the balloon, {stored} are stored",
                w.guest.balloon_frames().get()
            ));
        }
        let unheld = w.guest.parked_unheld_frames().get();
        if size.saturating_add(unheld) != stored || r.balloon.get() != size {
            return fail(format!(
                "accounting: engine size {size}, report {}, stored {stored} (of which {unheld} \
                 parked and not held)",
                r.balloon.get()
            ));
        }
        if w.contract.count() > 0 {
            let v: Vec<String> = w
                .contract
                .violations()
                .iter()
                .map(ToString::to_string)
                .collect();
            return fail(format!("{} contract violations: {v:?}", w.contract.count()));
        }
        let host = w.host.held_frames().get();
        let pending = self.engine.channel().reset_pending();
        if pending && host != 0 {
            return fail(format!("reset pending but the host holds {host} frames"));
        }
        if !pending && host != size {
            return fail(format!("the host holds {host} frames, the engine {size}"));
        }
        if self.engine.channel().target().get() != o.t_known {
            return fail(format!(
                "the engine's target {} is not the one the host last reported ({})",
                self.engine.channel().target().get(),
                o.t_known
            ));
        }
        if r.state == SessionState::Running && self.engine.channel().session().is_none() {
            return fail("running without a session".to_owned());
        }
        if !r.inflated.is_zero() {
            // A tick that inflated leaves both floors intact: the guest does nothing during
            // a tick here, so anything below a floor would be the balloon's doing.
            let snap = w.guest.snapshot();
            let floor = policy::reserve(&o.config, snap.total).get();
            let ra = w.guest.resident_available().get();
            let commit_free = w
                .guest
                .commit_limit()
                .get()
                .saturating_sub(w.guest.committed().get());
            if ra < floor || commit_free < floor {
                return fail(format!(
                    "inflating left resident available {ra} / commit headroom {commit_free} \
                     below the floor {floor}"
                ));
            }
            // The literal form: when the host did not lower its target during the tick,
            // an inflating tick ends within min(target, ceiling).
            let t = o.t_known;
            let c = safe_ceiling(t, size, &snap, &o.config).min(t);
            if !o.t_dropped && size > c {
                return fail(format!(
                    "inflating ended at {size} frames, above min(target, ceiling) = {c}"
                ));
            }
        }
        Ok(())
    }

    /// Makes the host honest and the guest quiet (pending guest requests cancelled, faults
    /// cleared), sets the host's target to `target` frames, runs `seconds` of simulated
    /// time, and checks that the session is running again (within the START back-off, 8 s,
    /// plus two polls of the host turning honest) and that the balloon settled within one
    /// 2 MiB page of min(target, ceiling), or below it only where the guest keeps it there
    /// (allocation failures or `LowMemoryCondition`).
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn recover(&mut self, target: u64, seconds: u64) -> Result<(), Failure> {
        self.engine.backdoor_mut().set_script([]);
        self.oracle.borrow_mut().faults = Faults::default();
        {
            let mut w = self.world.borrow_mut();
            let pending: Vec<String> = w
                .guest
                .requests()
                .filter(|(_, _, _, s)| matches!(s, RequestState::Pending { .. }))
                .map(|(id, ..)| id.to_owned())
                .collect();
            for id in pending {
                w.guest.release(&id);
            }
            w.host.set_target(Frames::new(target));
        }
        let start = self.clock.now().as_nanos();
        let mut end = start.saturating_add(seconds.saturating_mul(SECOND));
        let poll = self.engine.config().poll_interval.as_nanos();
        // Re-inflation after guest pressure waits for the damping hold-off
        // (`docs/architecture.md`, "Guest pressure, damping and memory signals"): the run is
        // extended by a hold-off in force, never by more than the longest one.
        let latest = end
            .saturating_add(policy::HOLD_MAX.as_nanos())
            .saturating_add(2 * poll);
        // START back-off is capped at 8 s; then one poll, and one more for a tick that
        // lands just before the back-off ends.
        let backoff = vmballoon_core::engine::MAX_BACKOFF.as_nanos();
        let running_by = start.saturating_add(backoff).saturating_add(2 * poll);
        let usable = self.setup.usable_host();
        while self.clock.now().as_nanos() < end {
            let r = self.tick()?;
            let now = self.clock.now().as_nanos();
            let damping = self.engine.damping();
            if damping.armed() {
                let released = now
                    .saturating_add(damping.hold().as_nanos())
                    .saturating_add(2 * poll);
                end = end.max(released.min(latest));
            }
            if usable && now >= running_by && r.state != SessionState::Running {
                return Err(format!(
                    "the session is not running {:.1}s after the host turned honest{}",
                    (now - start) as f64 / 1e9,
                    self.context(Some(&r))
                ));
            }
        }
        let r = self.last.unwrap_or_default();
        if !usable {
            if self.engine.state() == SessionState::Running || !self.engine.size().is_zero() {
                return Err(format!(
                    "a host without a lock command gave a session{}",
                    self.context(Some(&r))
                ));
            }
            return Ok(());
        }
        let w = self.world.borrow();
        let snap = w.guest.snapshot();
        let limit = snap.total.get();
        let t = w.host.effective_target().get().min(limit);
        let b = self.engine.size().get();
        let goal = safe_ceiling(t, b, &snap, &self.oracle.borrow().config).min(t);
        let slack = SLACK.get();
        if b >= goal.saturating_add(slack) {
            return Err(format!(
                "after {seconds}s with an honest host the balloon is {b} frames, above \
                 min(target, ceiling) = {goal} by a 2 MiB page or more{}",
                self.context(Some(&r))
            ));
        }
        let guest_limited = w.guest.low_memory()
            || matches!(
                r.reason,
                Some(ClampReason::AllocationFailed | ClampReason::LowMemory)
            );
        if b.saturating_add(slack) <= goal && !guest_limited {
            return Err(format!(
                "after {:.1}s with an honest host the balloon is {b} frames, below \
                 min(target, ceiling) = {goal} by a 2 MiB page or more, and the guest does not \
                 hold it back (damping hold-off {:?}, armed {}){}",
                (self.clock.now().as_nanos() - start) as f64 / 1e9,
                self.engine.damping().hold(),
                self.engine.damping().armed(),
                self.context(Some(&r))
            ));
        }
        Ok(())
    }

    /// Unloads the driver and checks that every page went back: nothing charged to the
    /// balloon, nothing stored, nothing held by the host, no violation, a consistent model.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn shutdown(mut self) -> Result<(), Failure> {
        let before = self.engine.size();
        let popped = self.engine.shutdown();
        let ctx = self.context(None);
        let w = self.world.borrow();
        let o = self.oracle.borrow();
        let mut problems = Vec::new();
        if popped != before {
            problems.push(format!(
                "shutdown popped {popped:?}, the balloon was {before:?}"
            ));
        }
        if !w.guest.balloon_frames().is_zero() || !w.guest.stored_frames().is_zero() {
            problems.push(format!(
                "after shutdown {} frames still charged to the balloon",
                w.guest.balloon_frames().get()
            ));
        }
        if !w.host.held_frames().is_zero() {
            problems.push(format!(
                "after shutdown the host holds {} frames",
                w.host.held_frames().get()
            ));
        }
        if !self.engine.size().is_zero() || self.engine.state() != SessionState::Unstarted {
            problems.push("the engine still has a balloon or a session".to_owned());
        }
        if w.checker.count() > 0 || w.contract.count() > 0 {
            let v: Vec<String> = w
                .checker
                .violations()
                .iter()
                .chain(w.contract.violations())
                .map(ToString::to_string)
                .collect();
            problems.push(format!("violations: {v:?}"));
        }
        if !o.violations.is_empty() {
            problems.push(format!("oracle violations: {:?}", o.violations));
        }
        if !w.guest.dropped_frames().is_zero() {
            problems.push("dropped chunks".to_owned());
        }
        problems.extend(w.guest.self_check());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{problems:?}{ctx}"))
        }
    }
}

/// One whole run: `steps` (one guest step, then one tick, each), then `recover_s` seconds
/// of an honest host and a quiet guest with target `recover_target`, then unload.
///
/// # Errors
/// The first broken invariant.
pub fn run(
    setup: &Setup,
    script: Vec<Reply>,
    steps: &[GuestStep],
    recover_target: u64,
    recover_s: u64,
) -> Result<(), Failure> {
    let mut h = Harness::new(setup, script);
    for step in steps {
        h.guest_step(step);
        h.tick()?;
    }
    h.recover(recover_target, recover_s)?;
    h.shutdown()
}
