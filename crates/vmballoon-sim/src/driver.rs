//! The seam between the runner and a balloon driver under test: [`BalloonDriver`].
//!
//! A driver under test drives the same [`FakeHost`] / [`FakeGuest`] world, so the host
//! model counts its calls and checks its protocol the same way whatever the driver.
//! [`DriverKind::Vmballoon`] is the product (the core engine); the others are the peer
//! models ([`crate::peers`]): [`DriverKind::Naive`], a pinned-page-unaware balloon for
//! comparison, and [`DriverKind::LinuxVmw`] and [`DriverKind::OvtClassic`], models of
//! VMware's public drivers. Each is one [`DriverKind`] variant and one type implementing
//! [`BalloonDriver`]. (The CLI flag and the JSON key keep the historical name `policy`.)

use std::fmt;

use vmballoon_core::config::{Config, validate};
use vmballoon_core::engine::{Balloon, SessionState};
use vmballoon_core::fake::ManualClock;
use vmballoon_core::policy::{Accounting, Ceiling, ClampReason};
use vmballoon_core::stats::Counter;
use vmballoon_core::units::{Duration, Frames, Instant};
use vmballoon_nt::counters::CounterData;
use vmballoon_nt::schedule::{Schedule, Wait, Wake};

use crate::guest::{FakeGuest, PeerPages};
use crate::host::FakeHost;
use crate::peers::naive::NaiveDriver;
use crate::peers::{LinuxVmwDriver, OvtClassicDriver};
use crate::world::SharedWorld;

/// Which balloon implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum DriverKind {
    /// vmballoon: the core engine with its safe ceiling.
    Vmballoon,
    /// A pinned-page-unaware balloon (VMware's stock behaviour, KB 340369).
    Naive,
    /// The current Linux `vmw_balloon` (`docs/protocol.md` §6.3): no rate limit, batched
    /// 4 KiB and 2 MiB pages.
    LinuxVmw,
    /// open-vm-tools' classic balloon with adaptive rates (`docs/protocol.md` §7).
    OvtClassic,
}

impl DriverKind {
    /// Every driver, in report order.
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

    /// Builds the driver over `world`, reading time from `clock`.
    #[must_use]
    pub fn build(
        self,
        world: &SharedWorld,
        clock: &ManualClock,
        config: Config,
    ) -> Box<dyn BalloonDriver> {
        let host = FakeHost::new(world.clone());
        let pages = PeerPages::new(world.clone());
        match self {
            Self::Vmballoon => Box::new(
                EngineDriver::new(host, FakeGuest::new(world.clone()), clock.clone(), config)
                    .with_registry(world.clone()),
            ),
            Self::Naive => Box::new(NaiveDriver::new(host, pages)),
            Self::LinuxVmw => Box::new(LinuxVmwDriver::new(host, pages)),
            Self::OvtClassic => Box::new(OvtClassicDriver::new(host, pages)),
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one tick of a driver did, in the terms the runner records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverTick {
    /// The host target the driver last heard.
    pub target: Frames,
    /// The driver's own ceiling (vmballoon), if it has one.
    pub ceiling: Option<Ceiling>,
    /// Balloon size after the tick (frames the host holds for this driver).
    pub balloon: Frames,
    /// What held the balloon below the host target, or reversed it, this tick.
    pub reason: Option<ClampReason>,
    /// Backdoor calls made.
    pub calls: u32,
    /// The driver stopped at its per-tick work bound: tick again at once.
    pub more_work: bool,
}

/// A balloon implementation the runner can drive.
pub trait BalloonDriver {
    /// Which one this is.
    fn kind(&self) -> DriverKind;
    /// How often it polls the host.
    fn poll_interval(&self) -> Duration;
    /// Whether it is woken when `LowMemoryCondition` becomes signalled (the driver waits
    /// on the event; VMware's stock balloon does not).
    fn wakes_on_low_memory(&self) -> bool;
    /// One poll.
    fn tick(&mut self) -> DriverTick;
    /// Unload: give every page back (the protocol's unload order).
    fn shutdown(&mut self);
    /// Frames the driver believes the host holds.
    fn balloon(&self) -> Frames;
    /// The driver's own counters, for the report (`name`, value).
    fn counters(&self) -> Vec<(&'static str, u64)>;
    /// How the driver accounts its pages in its ceiling (vmballoon: what its calibration
    /// found), if it computes one.
    fn accounting(&self) -> Option<Accounting> {
        None
    }
    /// What the driver's worker waits for next, for a driver that runs on the real
    /// driver's [`Schedule`] (vmballoon); `None` for one that polls on a fixed grid.
    fn next_wait(&self, _now: Instant) -> Option<Wait> {
        None
    }
    /// The settings the driver runs with now (vmballoon: as last read from the registry).
    fn settings(&self) -> Option<Config> {
        None
    }
    /// The worker woke at `now` for `wake`: what the schedule says to do (re-read the
    /// registry, tick), done. `None` if it did not tick. A driver without a schedule ticks.
    fn wake(&mut self, _now: Instant, _wake: Wake) -> Option<DriverTick> {
        Some(self.tick())
    }
    /// The `VM Balloon` performance counters as the driver would publish them now
    /// (vmballoon only: the same `vmballoon_nt::counters` mapping the Windows glue uses).
    fn perf_counters(&self) -> Option<CounterData> {
        None
    }
}

/// The product: the core's [`Balloon`] engine over the fakes.
pub struct EngineDriver {
    engine: Balloon<FakeHost, FakeGuest, FakeGuest, ManualClock>,
    /// The worker's timing decisions, as the driver's `src/worker.rs` makes them.
    schedule: Schedule,
    /// Where the registry values are read from (`None`: the settings given stay).
    registry: Option<SharedWorld>,
    /// The performance counters, folded after each tick as the glue does.
    counters: CounterData,
}

impl EngineDriver {
    /// The engine over `host` and `guest` (as both allocator and memory source).
    #[must_use]
    pub fn new(host: FakeHost, guest: FakeGuest, clock: ManualClock, config: Config) -> Self {
        Self {
            engine: Balloon::new(host, guest.clone(), guest, clock, config),
            schedule: Schedule::new(&config),
            registry: None,
            counters: CounterData::new(),
        }
    }

    /// Reads its settings from `world`'s registry values at each registry read the
    /// schedule asks for, validated as the driver validates them.
    #[must_use]
    pub fn with_registry(mut self, world: SharedWorld) -> Self {
        self.registry = Some(world);
        self
    }

    /// One registry read: the values as they are now, validated against the guest's RAM.
    fn read_registry(&mut self, now: Instant) {
        if let Some(world) = &self.registry {
            let (raw, ram) = {
                let w = world.borrow();
                (w.registry, w.guest.total())
            };
            let config = validate(&raw, ram).config;
            self.engine.set_config(config);
            self.schedule.set_config(&config);
        }
        self.schedule.registry_read(now, true);
    }
}

impl BalloonDriver for EngineDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Vmballoon
    }

    fn poll_interval(&self) -> Duration {
        self.engine.config().poll_interval
    }

    fn wakes_on_low_memory(&self) -> bool {
        true
    }

    fn tick(&mut self) -> DriverTick {
        let r = self.engine.tick();
        self.schedule.ticked(&r);
        self.counters
            .update(&r, self.engine.stats(), self.engine.config());
        DriverTick {
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

    fn accounting(&self) -> Option<Accounting> {
        Some(self.engine.accounting())
    }

    fn next_wait(&self, now: Instant) -> Option<Wait> {
        Some(self.schedule.next_wait(now))
    }

    fn settings(&self) -> Option<Config> {
        Some(*self.engine.config())
    }

    fn wake(&mut self, now: Instant, wake: Wake) -> Option<DriverTick> {
        let actions = self.schedule.on_wake(now, wake);
        if actions.read_registry {
            self.read_registry(now);
        }
        if !actions.tick {
            return None;
        }
        let tick = self.tick();
        Some(tick)
    }

    fn perf_counters(&self) -> Option<CounterData> {
        Some(self.counters)
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
