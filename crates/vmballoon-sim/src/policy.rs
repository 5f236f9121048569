//! The seam between the runner and a balloon implementation: [`Policy`].
//!
//! A policy drives the same [`FakeHost`] / [`FakeGuest`] world through the core's traits,
//! so the host model counts its calls and checks its protocol the same way whatever the
//! policy. [`PolicyKind::Vmballoon`] is the product (the core engine);
//! [`PolicyKind::Naive`] is a pinned-page-unaware balloon for comparison;
//! [`PolicyKind::LinuxVmw`] and [`PolicyKind::OvtClassic`] model VMware's public drivers
//! ([`crate::peers`]). Each is one [`PolicyKind`] variant and one type implementing
//! [`Policy`].

use std::fmt;

use vmballoon_core::config::Config;
use vmballoon_core::engine::{Balloon, SessionState};
use vmballoon_core::fake::ManualClock;
use vmballoon_core::policy::{Ceiling, ClampReason};
use vmballoon_core::stats::Counter;
use vmballoon_core::units::{Duration, Frames};

use crate::guest::{FakeGuest, PeerPages};
use crate::host::FakeHost;
use crate::naive::NaivePolicy;
use crate::peers::{LinuxVmwPolicy, OvtClassicPolicy};
use crate::world::SharedWorld;

/// Which balloon implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum PolicyKind {
    /// vmballoon: the core engine with its safe ceiling.
    Vmballoon,
    /// A pinned-page-unaware balloon (VMware's stock behaviour, KB 340369).
    Naive,
    /// The current Linux `vmw_balloon` (`protocol.md` §6.3): no rate limit, batched
    /// 4 KiB and 2 MiB pages.
    LinuxVmw,
    /// open-vm-tools' classic balloon with adaptive rates (`protocol.md` §7).
    OvtClassic,
}

impl PolicyKind {
    /// Every policy, in report order.
    pub const ALL: [Self; 4] = [
        Self::Vmballoon,
        Self::LinuxVmw,
        Self::OvtClassic,
        Self::Naive,
    ];

    /// The default side-by-side comparison of the command line: vmballoon and the
    /// pinned-page-unaware balloon.
    pub const DEFAULT_PAIR: [Self; 2] = [Self::Vmballoon, Self::Naive];

    /// The name used on the command line and in reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Vmballoon => "vmballoon",
            Self::Naive => "naive",
            Self::LinuxVmw => "linux-vmw",
            Self::OvtClassic => "ovt-classic",
        }
    }

    /// Builds the policy over `world`, reading time from `clock`.
    #[must_use]
    pub fn build(
        self,
        world: &SharedWorld,
        clock: &ManualClock,
        config: Config,
    ) -> Box<dyn Policy> {
        let host = FakeHost::new(world.clone());
        let pages = PeerPages::new(world.clone());
        match self {
            Self::Vmballoon => Box::new(EnginePolicy::new(
                host,
                FakeGuest::new(world.clone()),
                clock.clone(),
                config,
            )),
            Self::Naive => Box::new(NaivePolicy::new(host, pages)),
            Self::LinuxVmw => Box::new(LinuxVmwPolicy::new(host, pages)),
            Self::OvtClassic => Box::new(OvtClassicPolicy::new(host, pages)),
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one tick of a policy did, in the terms the runner records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyTick {
    /// The host target the policy last heard.
    pub target: Frames,
    /// The policy's own ceiling (vmballoon), if it has one.
    pub ceiling: Option<Ceiling>,
    /// Balloon size after the tick (frames the host holds for this policy).
    pub balloon: Frames,
    /// What held the balloon below the host target, or reversed it, this tick.
    pub reason: Option<ClampReason>,
    /// Backdoor calls made.
    pub calls: u32,
    /// The policy stopped at its per-tick work bound: tick again at once.
    pub more_work: bool,
}

/// A balloon implementation the runner can drive.
pub trait Policy {
    /// Which one this is.
    fn kind(&self) -> PolicyKind;
    /// How often it polls the host.
    fn poll_interval(&self) -> Duration;
    /// Whether it is woken when `LowMemoryCondition` becomes signalled (the driver waits
    /// on the event; VMware's stock balloon does not).
    fn wakes_on_low_memory(&self) -> bool;
    /// One poll.
    fn tick(&mut self) -> PolicyTick;
    /// Unload: give every page back (the protocol's unload order).
    fn shutdown(&mut self);
    /// Frames the policy believes the host holds.
    fn balloon(&self) -> Frames;
    /// The policy's own counters, for the report (`name`, value).
    fn counters(&self) -> Vec<(&'static str, u64)>;
}

/// The product: the core's [`Balloon`] engine over the fakes.
pub struct EnginePolicy {
    engine: Balloon<FakeHost, FakeGuest, FakeGuest, ManualClock>,
}

impl EnginePolicy {
    /// The engine over `host` and `guest` (as both allocator and memory source).
    #[must_use]
    pub fn new(host: FakeHost, guest: FakeGuest, clock: ManualClock, config: Config) -> Self {
        Self {
            engine: Balloon::new(host, guest.clone(), guest, clock, config),
        }
    }
}

impl Policy for EnginePolicy {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Vmballoon
    }

    fn poll_interval(&self) -> Duration {
        self.engine.config().poll_interval
    }

    fn wakes_on_low_memory(&self) -> bool {
        true
    }

    fn tick(&mut self) -> PolicyTick {
        let r = self.engine.tick();
        PolicyTick {
            target: r.target,
            ceiling: r.ceiling,
            balloon: r.balloon,
            reason: r.reason,
            calls: r.calls,
            more_work: r.more_work,
        }
    }

    fn shutdown(&mut self) {
        let _ = self.engine.shutdown();
    }

    fn balloon(&self) -> Frames {
        self.engine.size()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let stats = self.engine.stats();
        let mut out: Vec<(&'static str, u64)> = Counter::ALL
            .iter()
            .map(|&c| (c.name(), stats.get(c)))
            .collect();
        out.push((
            "session-running",
            u64::from(self.engine.state() == SessionState::Running),
        ));
        out
    }
}
