//! The simulated VM: one [`World`] holding the guest model, the host model and the
//! protocol checker, shared by every handle ([`crate::FakeHost`], [`crate::FakeGuest`],
//! the runner) through `Rc<RefCell<..>>`.
//!
//! Sharing one world lets each side check the other at the moment something happens: the
//! guest tells the checker when it frees a frame the host still holds, and the host checks
//! that a frame offered by LOCK really is a balloon page of the guest. Every trait method
//! borrows the world only for its own duration, so no borrow is ever held across a call
//! into the engine.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use vmballoon_core::config::{Param, RawConfig, RawValue};

use vmballoon_core::fake::ManualClock;
use vmballoon_core::platform::Clock;
use vmballoon_core::units::{Duration, Instant};

use crate::cost::{CostMeter, CostModel, Work};
use crate::guest::GuestModel;
use crate::host::HostModel;
use crate::scenario::Action;

/// One rule broken by the guest (the engine or a peer model), as the host model or the
/// platform contract saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Simulated time it happened.
    pub at: Instant,
    /// What was wrong, in one sentence.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.at.as_nanos() / 1_000_000;
        write!(f, "t={}.{:03}s: {}", ms / 1000, ms % 1000, self.message)
    }
}

/// The recorder of [`Violation`]s. It keeps the first [`Checker::KEPT`] messages and
/// counts all of them, so a guest that breaks a rule on every page cannot exhaust memory.
#[derive(Debug)]
pub struct Checker {
    clock: ManualClock,
    count: u64,
    kept: Vec<Violation>,
}

impl Checker {
    /// Messages kept for the report; later ones are only counted.
    pub const KEPT: usize = 64;

    /// A checker stamping violations with `clock`'s time.
    #[must_use]
    pub fn new(clock: ManualClock) -> Self {
        Self {
            clock,
            count: 0,
            kept: Vec::new(),
        }
    }

    /// Records one violation.
    pub fn record(&mut self, message: impl Into<String>) {
        self.count = self.count.saturating_add(1);
        if self.kept.len() < Self::KEPT {
            self.kept.push(Violation {
                at: self.clock.now(),
                message: message.into(),
            });
        }
    }

    /// Violations recorded so far.
    #[must_use]
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The first [`Checker::KEPT`] violations.
    #[must_use]
    pub fn violations(&self) -> &[Violation] {
        &self.kept
    }
}

/// Everything simulated about one VM.
#[derive(Debug)]
pub struct World {
    /// The Windows memory manager model.
    pub guest: GuestModel,
    /// The VMware host model.
    pub host: HostModel,
    /// Protocol violations: what the VMware host model rejected.
    pub checker: Checker,
    /// Platform-contract violations: breaches of the core's `PageAllocator` contract and of
    /// the Windows memory manager's documented contract (a free of anything but a whole MDL
    /// the model handed out, a unit stored that the host does not hold, ...). A run with
    /// any is failed like a run with a protocol violation.
    pub contract: Checker,
    /// Simulated time (shared with the engine's clock).
    pub clock: ManualClock,
    /// What each operation costs ([`crate::cost`]).
    pub cost: CostModel,
    /// Modelled time spent so far, by kind of work.
    pub meter: CostMeter,
    /// Whether the driver's page allocations are zeroed (no modelled driver does; the
    /// report uses it for the zeroing sensitivity).
    pub zeroing: bool,
    /// The driver's registry values as they are now: the scenario's `[config]`, changed by
    /// `config` events; vmballoon reads them at its next registry read.
    pub registry: RawConfig,
}

/// The shared handle on a [`World`].
pub type SharedWorld = Rc<RefCell<World>>;

impl World {
    /// A world from its two models; `clock` is the simulated time every handle reads.
    /// Nothing costs time in it ([`CostModel::free`]): time moves only when its owner
    /// advances the clock. The runner uses [`World::with_cost`].
    #[must_use]
    pub fn new(guest: GuestModel, host: HostModel, clock: ManualClock) -> SharedWorld {
        Self::with_cost(guest, host, clock, CostModel::free())
    }

    /// A world whose operations cost what `cost` says.
    #[must_use]
    pub fn with_cost(
        guest: GuestModel,
        host: HostModel,
        clock: ManualClock,
        cost: CostModel,
    ) -> SharedWorld {
        Rc::new(RefCell::new(Self {
            guest,
            host,
            checker: Checker::new(clock.clone()),
            contract: Checker::new(clock.clone()),
            clock,
            cost,
            meter: CostMeter::default(),
            zeroing: false,
            registry: RawConfig::new(),
        }))
    }

    /// Charges `ns` of modelled time to `work`: the shared clock moves on by as much.
    pub fn charge(&mut self, work: Work, ns: u64) {
        if ns == 0 {
            return;
        }
        self.meter.add(work, ns);
        self.clock.advance(Duration::from_nanos(ns));
    }

    /// Simulated time now.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Applies one scenario event now (`docs/scenario-format.md`, "Semantics the model
    /// follows"): the runner and the emulation server both apply events through it.
    pub fn apply(&mut self, action: &Action) {
        let now = self.clock.now();
        match action {
            Action::Target(t) => self.host.set_target(*t),
            Action::Lock {
                id,
                kind,
                size,
                partial_ok,
            } => {
                self.guest.lock_partial(id, *kind, *size, *partial_ok, now);
            }
            Action::Commit { id, size } => {
                self.guest.commit(id, *size, now);
            }
            Action::Release(id) => {
                self.guest.release(id);
            }
            Action::HostReset => self.host.inject_reset(),
            Action::HostBusy(n) => self.host.inject_busy(*n),
            Action::HostRefuse(n) => self.host.inject_refusals(*n),
            Action::HostEntryStatus { status, pages, on } => {
                self.host.inject_entry_status(*status, *pages, *on);
            }
            Action::HostTargetAfterLocks { locks, target } => {
                self.host.inject_target_after_locks(*locks, *target);
            }
            Action::Config(values) => {
                for param in Param::ALL {
                    let v = values.get(param);
                    if v != RawValue::Missing {
                        self.registry.set(param, v);
                    }
                }
            }
        }
    }
}
