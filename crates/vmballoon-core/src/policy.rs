//! The balloon policy, as pure functions: the safe ceiling (`docs/architecture.md`, "The safe
//! ceiling") and the per-tick plan.
//!
//! Every ballooned page is charged by Windows to *resident available* memory and to
//! *commit*, exactly like pinned memory (`docs/windows-memory.md` §1.6, §3). So the balloon may
//! grow only while both keep a floor:
//!
//! ```text
//! ceiling = min( host target,
//!                MaxBalloonMB, MaxBalloonPercent of RAM,
//!                balloon + (ResidentAvailable - reserve),
//!                balloon + (CommitLimit - Committed - reserve),
//!                balloon + (Available - available floor) )
//! ```
//!
//! (the first two memory terms subtract the balloon's footprint explicitly when Windows
//! turns out not to charge its pages to them: [`Accounting`]).

use crate::config::Config;
use crate::platform::MemorySnapshot;
use crate::units::{Duration, Frames, Instant, PageSize};

/// Why the balloon is where it is: the bound that binds the ceiling, or what stopped or
/// reversed the balloon this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClampReason {
    /// The host's target is the binding bound (no guest-side clamp).
    HostTarget,
    /// `MaxBalloonMB` or `MaxBalloonPercent`.
    RegistryMax,
    /// The resident-available floor: pinned memory leaves no more room.
    ResidentAvailable,
    /// The commit headroom.
    Commit,
    /// Windows signalled `LowMemoryCondition`.
    LowMemory,
    /// Page allocation failed (the OS had no free pages to give without waiting).
    AllocationFailed,
    /// The available-memory floor: the balloon takes only memory Windows has free or on
    /// standby above [`available_floor`], never what it would have to trim from working
    /// sets, so allocations that cannot wait (AWE, other drivers' MDLs, nonpaged pool) find
    /// it.
    Available,
    /// Re-inflation held off after the guest needed memory back ([`Damping`]).
    PressureHold,
}

impl ClampReason {
    /// Number of reasons.
    pub const COUNT: usize = 8;

    /// Every reason, in table order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::HostTarget,
        Self::RegistryMax,
        Self::ResidentAvailable,
        Self::Commit,
        Self::LowMemory,
        Self::AllocationFailed,
        Self::Available,
        Self::PressureHold,
    ];

    /// The name used in ETW, the simulator and reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::HostTarget => "host-target",
            Self::RegistryMax => "registry-max",
            Self::ResidentAvailable => "resident-available",
            Self::Commit => "commit",
            Self::LowMemory => "low-memory",
            Self::AllocationFailed => "allocation-failed",
            Self::Available => "available",
            Self::PressureHold => "pressure-hold",
        }
    }

    /// Index into enum-indexed tables.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether this bound protects the guest (anything but the host's own target).
    #[must_use]
    pub const fn is_guest_bound(self) -> bool {
        !matches!(self, Self::HostTarget)
    }

    /// Whether a deflate for this reason means the guest needed memory back (it arms the
    /// re-inflation hold-off, [`Damping`]): its own memory bounds and Windows' signals, not
    /// the host's target nor the administrator's cap.
    #[must_use]
    pub const fn is_guest_pressure(self) -> bool {
        matches!(
            self,
            Self::ResidentAvailable | Self::Commit | Self::LowMemory | Self::Available
        )
    }
}

/// Whether Windows charges the balloon's MDL pages to a memory figure the ceiling reads.
/// No public source says either way (`docs/windows-memory.md` §1.6), so the engine
/// measures it ([`Accounting`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Charge {
    /// Not measured yet: the engine grows only in small measured batches meanwhile, and
    /// settles for [`Charge::NotCharged`] (the smaller ceiling) if the measurements never
    /// agree.
    #[default]
    Unknown,
    /// The figure drops by what the balloon allocates (resident available, commit).
    Charged,
    /// The figure ignores the balloon: its frames are subtracted explicitly.
    NotCharged,
}

impl Charge {
    /// Name for traces and reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Charged => "charged",
            Self::NotCharged => "not-charged",
        }
    }

    const fn charged(self) -> bool {
        matches!(self, Self::Charged)
    }
}

/// What the engine knows of how Windows charges its pages, and the frames the balloon has
/// taken from Windows (held by the host, parked or in flight): the ceiling subtracts those
/// explicitly from a figure that does not charge them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Resident available memory.
    pub resident_available: Charge,
    /// Commit.
    pub commit: Charge,
    /// Frames the balloon has taken from Windows (its footprint).
    pub footprint: Frames,
}

impl Accounting {
    /// Both figures charged (the simulator's default guest; tests).
    #[must_use]
    pub const fn charged() -> Self {
        Self {
            resident_available: Charge::Charged,
            commit: Charge::Charged,
            footprint: Frames::ZERO,
        }
    }
}

/// The largest balloon allowed right now, and the bound that sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ceiling {
    /// The ceiling in frames.
    pub value: Frames,
    /// The binding bound.
    pub reason: ClampReason,
}

/// The "2 MiB slack" (Linux `vmballoon_change`, OVT `BalloonAdjustSize`): a host target
/// below the balloon by less than one large page does not trigger a deflate, so 2 MiB
/// granularity never ping-pongs. vmballoon also uses it as the hysteresis band under a
/// guest-side bound: it re-inflates only once the room has grown by this much.
pub const SLACK: Frames = PageSize::Large.frames();

/// The automatic resident-available floor for a guest with `total` RAM: the Linux
/// `hv_balloon` piecewise-linear floor (`docs/windows-memory.md` §7.1). 488 MiB at 4 GiB,
/// 1000 MiB at 16 GiB.
#[must_use]
pub const fn auto_reserve(total: Frames) -> Frames {
    let mib = total.mib_floor();
    let floor_mib = if mib < 128 {
        (mib / 2).saturating_add(8)
    } else if mib < 512 {
        (mib / 4).saturating_add(40)
    } else if mib < 2048 {
        (mib / 8).saturating_add(104)
    } else if mib < 8192 {
        (mib / 16).saturating_add(232)
    } else {
        (mib / 32).saturating_add(488)
    };
    Frames::from_mib(floor_mib)
}

/// The resident-available (and commit) floor in effect: `ReserveMB` if set, else automatic.
#[must_use]
pub fn reserve(config: &Config, total: Frames) -> Frames {
    config.reserve.unwrap_or_else(|| auto_reserve(total))
}

/// The `LowMemoryCondition` threshold assumed for a guest with `total` RAM: "approximately
/// 32 MB per 4 GB, to a maximum of 64 MB" (the default the `CreateMemoryResourceNotification`
/// documentation gave; the kernel event's own threshold is "system-defined",
/// `docs/windows-memory.md` §3.3). An assumption: the floor built on it stays well above.
#[must_use]
pub const fn low_memory_threshold(total: Frames) -> Frames {
    let t = total.div_floor(128);
    let cap = Frames::from_mib(64);
    if t.get() < cap.get() { t } else { cap }
}

/// The available-memory floor for a guest with `total` RAM: `LowMemoryCondition`'s threshold
/// plus one batch of 4 KiB pages (2 MiB), so the balloon's own allocations never signal low
/// memory. It sits below `HighMemoryCondition`'s threshold (three times the low one, same
/// source), so the balloon's growth lets Windows trim working sets toward that threshold at
/// its own pace, and the balloon takes what trimming frees, no faster. What stays available
/// serves allocations that cannot wait for trimming (`docs/windows-memory.md` §3.2; Linux
/// `hv_balloon` keeps a floor on available memory the same way); when one finds too little,
/// the ceiling falls below the balloon and the balloon gives pages back.
#[must_use]
pub const fn available_floor(total: Frames) -> Frames {
    low_memory_threshold(total).saturating_add(Frames::new(512))
}

/// The registry cap (`MaxBalloonMB`, `MaxBalloonPercent`), if any.
#[must_use]
pub fn registry_cap(config: &Config, total: Frames) -> Option<Frames> {
    let percent = config.max_balloon_percent.map(|p| total.percent(p));
    match (config.max_balloon, percent) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The safe ceiling for a balloon of `balloon` frames facing host `target`, given a fresh
/// memory snapshot, with both figures charged ([`ceiling_with`]).
#[must_use]
pub fn ceiling(target: Frames, balloon: Frames, snap: &MemorySnapshot, config: &Config) -> Ceiling {
    ceiling_with(target, balloon, snap, config, &Accounting::charged())
}

/// The safe ceiling for a balloon of `balloon` frames (held by the host) facing host
/// `target`, given a fresh memory snapshot and what is known of the accounting. An unknown
/// bound (a `None` field) gives no room above the current balloon: vmballoon never
/// inflates beyond what it knows to be safe.
///
/// * resident available and commit: `balloon + (free − reserve)` when Windows charges the
///   balloon's pages to the figure, `balloon + (free − footprint − reserve)` when it does
///   not (or is not known to); for commit the reserve is at least [`available_floor`];
/// * available memory: `balloon + (available − available_floor)` (pages always leave the
///   free lists, so this one needs no calibration).
#[must_use]
pub fn ceiling_with(
    target: Frames,
    balloon: Frames,
    snap: &MemorySnapshot,
    config: &Config,
    acct: &Accounting,
) -> Ceiling {
    bounded(target, balloon, snap, config, acct, true)
}

/// The ceiling the balloon settles at once Windows has trimmed what it can: [`ceiling_with`]
/// without the available-memory term, which only paces the way there (the simulator's time
/// to the goal is measured against it).
#[must_use]
pub fn settled_ceiling(
    target: Frames,
    balloon: Frames,
    snap: &MemorySnapshot,
    config: &Config,
    acct: &Accounting,
) -> Ceiling {
    bounded(target, balloon, snap, config, acct, false)
}

/// The lowest of the bounds, the available-memory term only `with_available`.
fn bounded(
    target: Frames,
    balloon: Frames,
    snap: &MemorySnapshot,
    config: &Config,
    acct: &Accounting,
    with_available: bool,
) -> Ceiling {
    let floor = reserve(config, snap.total);
    // balloon + (free - floor), where free - floor may be negative: pinned memory that grew
    // after inflation puts the ceiling below the balloon, and the plan deflates the deficit.
    let room = |free: Option<Frames>, charge: Charge, floor: Frames| match free {
        Some(free) => {
            let free = if charge.charged() {
                free
            } else {
                free.saturating_sub(acct.footprint)
            };
            balloon.saturating_add(free).saturating_sub(floor)
        }
        None => balloon,
    };
    let commit_free = match (snap.commit_limit, snap.committed) {
        (Some(limit), Some(used)) => Some(limit.saturating_sub(used)),
        _ => None,
    };
    let bounds = [
        (Some(target), ClampReason::HostTarget),
        (registry_cap(config, snap.total), ClampReason::RegistryMax),
        (
            Some(room(
                snap.resident_available,
                acct.resident_available,
                floor,
            )),
            ClampReason::ResidentAvailable,
        ),
        (
            // `MaximumCommitCondition` is documented only as "near the maximum commit
            // limit": the balloon also keeps the available floor's worth of commit free, so
            // on a guest whose reserve is smaller its own growth does not signal it.
            Some(room(
                commit_free,
                acct.commit,
                floor.max(available_floor(snap.total)),
            )),
            ClampReason::Commit,
        ),
        (
            with_available
                .then(|| room(snap.available, Charge::Charged, available_floor(snap.total))),
            ClampReason::Available,
        ),
    ];
    let mut best = Ceiling {
        value: target,
        reason: ClampReason::HostTarget,
    };
    for (bound, reason) in bounds {
        if let Some(value) = bound {
            // Strictly lower only: on a tie the earlier bound (the host target first) binds.
            if value < best.value {
                best = Ceiling { value, reason };
            }
        }
    }
    best
}

/// The first re-inflation hold-off after the guest needed memory back: Linux `vmw_balloon`'s
/// `VMBALLOON_SHRINK_DELAY` (`docs/protocol.md` §6.3).
pub const HOLD_BASE: Duration = Duration::from_secs(5);

/// The longest hold-off: recurring pressure doubles it up to this (Xen's balloon doubles
/// its retry delay the same way, up to 32 s, `docs/architecture.md`, "Damping").
pub const HOLD_MAX: Duration = Duration::from_secs(64);

/// Damping after guest pressure: a deflate the guest caused (its memory bounds, or Windows'
/// memory signals) holds off re-inflation, and the balloon grows again only once the room
/// has been there, unbroken, for the whole hold-off — so memory the guest takes and frees
/// periodically is not handed to the host and back every period. The hold-off doubles while
/// the pressure keeps recurring (within twice the hold-off of the last re-inflation) and
/// halves, down to [`HOLD_BASE`], when it comes back after a quiet spell. Safety is never
/// delayed: the ceiling, the floors and pressure deflates do not look at it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Damping {
    hold: Duration,
    armed: bool,
    room_since: Option<Instant>,
    released_at: Option<Instant>,
}

impl Damping {
    /// The guest needed memory back at `now` (a deflate for a pressure reason).
    pub fn pressure(&mut self, now: Instant) {
        let recurring = self
            .released_at
            .is_some_and(|r| now.saturating_since(r) < self.hold.saturating_mul(2));
        self.hold = if self.hold == Duration::ZERO {
            HOLD_BASE
        } else if self.armed {
            self.hold
        } else if recurring {
            self.hold.saturating_mul(2).min(HOLD_MAX)
        } else {
            Duration::from_nanos(self.hold.as_nanos() / 2).max(HOLD_BASE)
        };
        self.armed = true;
        self.room_since = None;
    }

    /// The room under the ceiling at `now`: re-inflation needs it at a 2 MiB page or more,
    /// unbroken, for the whole hold-off.
    pub fn observe(&mut self, now: Instant, room: Frames) {
        if !self.armed {
            return;
        }
        if room >= SLACK {
            self.room_since.get_or_insert(now);
        } else {
            self.room_since = None;
        }
    }

    /// Whether re-inflation is held off at `now`. When the hold-off has run out it is
    /// released (and the release time kept, to see whether pressure recurs).
    pub fn holds(&mut self, now: Instant) -> bool {
        if !self.armed {
            return false;
        }
        if self
            .room_since
            .is_some_and(|t| now.saturating_since(t) >= self.hold)
        {
            self.armed = false;
            self.released_at = Some(now);
            return false;
        }
        true
    }

    /// The current hold-off (zero before any pressure).
    #[must_use]
    pub const fn hold(&self) -> Duration {
        self.hold
    }

    /// Whether a hold-off is in force.
    #[must_use]
    pub const fn armed(&self) -> bool {
        self.armed
    }
}

/// What the balloon should do this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do (at the ceiling, or within the slack).
    Hold,
    /// Grow by this many frames.
    Inflate(Frames),
    /// Shrink by this many frames, for this reason.
    Deflate(Frames, ClampReason),
}

/// How much to give back at once when Windows signals `LowMemoryCondition`: 1/64 of RAM,
/// at least 16 MiB (64 MiB on a 4 GiB guest, twice the default low-memory threshold of
/// "about 32 MB per 4 GB", per the `CreateMemoryResourceNotification` documentation).
#[must_use]
pub fn low_memory_step(total: Frames) -> Frames {
    total.div_floor(64).max(Frames::from_mib(16))
}

/// Whether the balloon is already moving in this tick. The slack and the hysteresis decide
/// whether to *start* moving; once a pass has started it goes all the way to the ceiling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Motion {
    /// No batch yet this tick.
    #[default]
    Idle,
    /// Inflating this tick.
    Inflating,
    /// Deflating this tick.
    Deflating,
}

/// What a signalled `LowMemoryCondition` means this tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pressure {
    /// Not signalled.
    #[default]
    None,
    /// Signalled shortly after the balloon grew: most likely its own allocations took the
    /// free pages before Windows trimmed working sets (the balance-set manager runs once a
    /// second). Inflation stops; nothing is given back.
    SelfInduced,
    /// Signalled while the balloon is not growing: the guest needs memory.
    Guest,
}

/// The per-tick plan for a balloon of `balloon` frames under `ceiling`.
///
/// * Guest memory pressure (`LowMemoryCondition`, when `DeflateOnLowMemory`) deflates at
///   least one [`low_memory_step`] without waiting for the host; any signalled
///   `LowMemoryCondition` blocks inflation.
/// * Above a guest-side bound (registry cap, resident available, commit) the balloon
///   deflates exactly to the bound: the floor is restored at once.
/// * Above the host target it deflates only past the 2 MiB [`SLACK`] (or to zero when the
///   target is zero), as every VMware driver does.
/// * Below the host target it inflates exactly to it; below a guest-side bound it
///   available memory do not make it flap.
/// * Once a pass is under way (`motion`), it continues to the ceiling exactly.
#[must_use]
pub fn plan(
    balloon: Frames,
    ceiling: Ceiling,
    snap: &MemorySnapshot,
    config: &Config,
    motion: Motion,
    pressure: Pressure,
) -> Plan {
    if pressure == Pressure::Guest && config.deflate_on_low_memory {
        if balloon.is_zero() {
            return Plan::Hold;
        }
        let over = balloon.saturating_sub(ceiling.value);
        let step = low_memory_step(snap.total).max(over).min(balloon);
        return Plan::Deflate(step, ClampReason::LowMemory);
    }
    if balloon > ceiling.value {
        let over = balloon.saturating_sub(ceiling.value);
        return match ceiling.reason {
            ClampReason::HostTarget
                if motion == Motion::Idle && !ceiling.value.is_zero() && over < SLACK =>
            {
                Plan::Hold
            }
            // Available memory moves all the time (file cache, other allocations); a
            // shortfall of less than a 2 MiB page still leaves it above HighMemoryCondition's
            // threshold (`available_floor` keeps one batch of margin): no page moves for it.
            ClampReason::Available if motion == Motion::Idle && over < SLACK => Plan::Hold,
            reason => Plan::Deflate(over, reason),
        };
    }
    // Never inflate while Windows reports low memory, whatever its cause.
    if pressure != Pressure::None {
        return Plan::Hold;
    }
    let room = ceiling.value.saturating_sub(balloon);
    let hysteresis = motion == Motion::Idle && ceiling.reason.is_guest_bound() && room < SLACK;
    if room.is_zero() || hysteresis {
        Plan::Hold
    } else {
        Plan::Inflate(room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Param, RawConfig, validate};

    const GIB: u64 = 1024;

    /// The plan of an idle tick, where a signalled snapshot counts as guest pressure.
    fn idle(balloon: Frames, c: Ceiling, s: &MemorySnapshot, config: &Config) -> Plan {
        plan(balloon, c, s, config, Motion::Idle, pressure(s))
    }

    /// A signalled snapshot counts as guest pressure in these tests.
    fn pressure(s: &MemorySnapshot) -> Pressure {
        if s.low_memory {
            Pressure::Guest
        } else {
            Pressure::None
        }
    }

    fn snap(total_mib: u64, resident_mib: u64) -> MemorySnapshot {
        MemorySnapshot {
            total: Frames::from_mib(total_mib),
            resident_available: Some(Frames::from_mib(resident_mib)),
            available: Some(Frames::from_mib(resident_mib)),
            commit_limit: Some(Frames::from_mib(2 * total_mib)),
            committed: Some(Frames::from_mib(total_mib / 4)),
            ..MemorySnapshot::default()
        }
    }

    #[test]
    fn auto_reserve_follows_hv_balloon_floor() {
        assert_eq!(auto_reserve(Frames::from_mib(64)).mib_floor(), 8 + 32);
        assert_eq!(auto_reserve(Frames::from_mib(256)).mib_floor(), 40 + 64);
        assert_eq!(auto_reserve(Frames::from_mib(GIB)).mib_floor(), 104 + 128);
        assert_eq!(auto_reserve(Frames::from_mib(4 * GIB)).mib_floor(), 488);
        assert_eq!(auto_reserve(Frames::from_mib(16 * GIB)).mib_floor(), 1000);
        assert_eq!(auto_reserve(Frames::from_mib(64 * GIB)).mib_floor(), 2536);
        assert_eq!(auto_reserve(Frames::ZERO).mib_floor(), 8);
    }

    #[test]
    fn kb_340369_ceiling_is_near_the_hand_computed_1330_mb() {
        // 4 GiB guest, 300 MiB OS nonpaged, 2 GiB pinned by SQL Server, empty balloon:
        // resident available = 4096 - 300 - 2048 = 1748 MiB. Host asks 65 % = 2662 MiB.
        let config = Config::default();
        let s = snap(4 * GIB, 1748);
        let target = Frames::from_mib(4 * GIB).percent(65);
        let c = ceiling(target, Frames::ZERO, &s, &config);
        assert_eq!(c.reason, ClampReason::ResidentAvailable);
        assert_eq!(c.value.mib_floor(), 1748 - 488);
        // Within 6 % of the KB's hand-computed sched.mem.maxmemctl of 1330 MB.
        assert!(c.value.mib_floor().abs_diff(1330) * 100 / 1330 < 6);
        // Half-way inflated, the ceiling stays put (the balloon is charged like pinned memory).
        let half = Frames::from_mib(630);
        let c2 = ceiling(target, half, &snap(4 * GIB, 1748 - 630), &config);
        assert_eq!(c2, c);
        // The ceiling follows the pinned amount: SQL pins 512 MiB more.
        let c3 = ceiling(target, Frames::ZERO, &snap(4 * GIB, 1748 - 512), &config);
        assert_eq!(c3.value.mib_floor(), 1260 - 512);
        // ... and releases all 2 GiB: the host target binds again.
        let c4 = ceiling(target, Frames::ZERO, &snap(4 * GIB, 1748 + 2048), &config);
        assert_eq!(
            c4,
            Ceiling {
                value: target,
                reason: ClampReason::HostTarget
            }
        );
    }

    #[test]
    fn each_clamp_reason_binds_when_lowest() {
        let config = Config::default();
        let big = snap(4 * GIB, 4000);
        let t = Frames::from_mib(1000);
        assert_eq!(
            ceiling(t, Frames::ZERO, &big, &config).reason,
            ClampReason::HostTarget
        );
        let capped = validate(
            &RawConfig::new().with(Param::MaxBalloonMb, 500),
            Frames::from_mib(4 * GIB),
        )
        .config;
        let c = ceiling(t, Frames::ZERO, &big, &capped);
        assert_eq!(
            (c.reason, c.value.mib_floor()),
            (ClampReason::RegistryMax, 500)
        );
        let pct = validate(
            &RawConfig::new().with(Param::MaxBalloonPercent, 10),
            Frames::from_mib(4 * GIB),
        )
        .config;
        let c = ceiling(t, Frames::ZERO, &big, &pct);
        assert_eq!(
            (c.reason, c.value.mib_floor()),
            (ClampReason::RegistryMax, 409)
        );
        let both = validate(
            &RawConfig::new()
                .with(Param::MaxBalloonPercent, 10)
                .with(Param::MaxBalloonMb, 300),
            Frames::from_mib(4 * GIB),
        )
        .config;
        assert_eq!(ceiling(t, Frames::ZERO, &big, &both).value.mib_floor(), 300);
        let tight = snap(4 * GIB, 700);
        let c = ceiling(t, Frames::ZERO, &tight, &config);
        assert_eq!(
            (c.reason, c.value.mib_floor()),
            (ClampReason::ResidentAvailable, 212)
        );
        let mut commit = big;
        commit.commit_limit = Some(Frames::from_mib(5000));
        commit.committed = Some(Frames::from_mib(4200));
        let c = ceiling(t, Frames::ZERO, &commit, &config);
        assert_eq!((c.reason, c.value.mib_floor()), (ClampReason::Commit, 312));
    }

    #[test]
    fn pinned_growth_after_inflation_puts_ceiling_below_balloon() {
        // Balloon of 1260 MiB at the ceiling; then 256 MiB more gets pinned: resident
        // available drops to 232 MiB, 256 MiB under the 488 MiB floor.
        let config = Config::default();
        let balloon = Frames::from_mib(1260);
        let target = Frames::from_mib(2662);
        let c = ceiling(target, balloon, &snap(4 * GIB, 232), &config);
        assert_eq!(
            c,
            Ceiling {
                value: Frames::from_mib(1004),
                reason: ClampReason::ResidentAvailable
            }
        );
        assert_eq!(
            plan(
                balloon,
                c,
                &snap(4 * GIB, 232),
                &config,
                Motion::Idle,
                Pressure::None
            ),
            Plan::Deflate(Frames::from_mib(256), ClampReason::ResidentAvailable)
        );
        // Resident available at zero still yields a defined ceiling.
        let c = ceiling(target, Frames::from_mib(100), &snap(4 * GIB, 0), &config);
        assert_eq!(c.value, Frames::ZERO);
    }

    #[test]
    fn unknown_bounds_allow_no_growth() {
        let config = Config::default();
        let mut s = snap(4 * GIB, 4000);
        s.resident_available = None;
        let balloon = Frames::from_mib(100);
        let c = ceiling(Frames::from_mib(1000), balloon, &s, &config);
        assert_eq!(
            c,
            Ceiling {
                value: balloon,
                reason: ClampReason::ResidentAvailable
            }
        );
        assert_eq!(idle(balloon, c, &s, &config), Plan::Hold);
        let mut s = snap(4 * GIB, 4000);
        s.committed = None;
        let c = ceiling(Frames::from_mib(1000), balloon, &s, &config);
        assert_eq!(c.reason, ClampReason::Commit);
        assert_eq!(idle(balloon, c, &s, &config), Plan::Hold);
    }

    #[test]
    fn registry_reserve_overrides_automatic_floor() {
        let config = validate(
            &RawConfig::new().with(Param::ReserveMb, 100),
            Frames::from_mib(4 * GIB),
        )
        .config;
        let c = ceiling(
            Frames::from_mib(3000),
            Frames::ZERO,
            &snap(4 * GIB, 1748),
            &config,
        );
        assert_eq!(c.value.mib_floor(), 1648);
    }

    #[test]
    fn plan_inflates_exactly_to_host_target() {
        let config = Config::default();
        let s = snap(4 * GIB, 4000);
        let c = Ceiling {
            value: Frames::new(1000),
            reason: ClampReason::HostTarget,
        };
        assert_eq!(
            idle(Frames::new(999), c, &s, &config),
            Plan::Inflate(Frames::new(1))
        );
        assert_eq!(idle(Frames::new(1000), c, &s, &config), Plan::Hold);
    }

    #[test]
    fn two_mib_slack_prevents_flapping_on_host_target() {
        let config = Config::default();
        let s = snap(4 * GIB, 4000);
        let c = Ceiling {
            value: Frames::new(1000),
            reason: ClampReason::HostTarget,
        };
        assert_eq!(idle(Frames::new(1511), c, &s, &config), Plan::Hold);
        assert_eq!(
            idle(Frames::new(1512), c, &s, &config),
            Plan::Deflate(Frames::new(512), ClampReason::HostTarget)
        );
        // A zero target always empties the balloon, slack or not.
        let zero = Ceiling {
            value: Frames::ZERO,
            reason: ClampReason::HostTarget,
        };
        assert_eq!(
            idle(Frames::new(3), zero, &s, &config),
            Plan::Deflate(Frames::new(3), ClampReason::HostTarget)
        );
    }

    #[test]
    fn a_pass_under_way_goes_to_the_ceiling_exactly() {
        let config = Config::default();
        let s = snap(4 * GIB, 4000);
        let host = Ceiling {
            value: Frames::new(1000),
            reason: ClampReason::HostTarget,
        };
        assert_eq!(
            plan(
                Frames::new(1100),
                host,
                &s,
                &config,
                Motion::Deflating,
                Pressure::None
            ),
            Plan::Deflate(Frames::new(100), ClampReason::HostTarget)
        );
        let guest = Ceiling {
            value: Frames::new(1000),
            reason: ClampReason::ResidentAvailable,
        };
        assert_eq!(
            plan(
                Frames::new(900),
                guest,
                &s,
                &config,
                Motion::Inflating,
                Pressure::None
            ),
            Plan::Inflate(Frames::new(100))
        );
    }

    #[test]
    fn guest_bound_deflates_exactly_and_reinflates_past_slack() {
        let config = Config::default();
        let s = snap(4 * GIB, 4000);
        let c = Ceiling {
            value: Frames::new(10_000),
            reason: ClampReason::ResidentAvailable,
        };
        assert_eq!(
            idle(Frames::new(10_001), c, &s, &config),
            Plan::Deflate(Frames::new(1), ClampReason::ResidentAvailable)
        );
        assert_eq!(idle(Frames::new(9_489), c, &s, &config), Plan::Hold);
        assert_eq!(
            idle(Frames::new(9_488), c, &s, &config),
            Plan::Inflate(Frames::new(512))
        );
    }

    #[test]
    fn low_memory_deflates_a_step_and_never_inflates() {
        let config = Config::default();
        let mut s = snap(4 * GIB, 4000);
        s.low_memory = true;
        let c = Ceiling {
            value: Frames::from_mib(2000),
            reason: ClampReason::HostTarget,
        };
        assert_eq!(
            idle(Frames::from_mib(1000), c, &s, &config),
            Plan::Deflate(Frames::from_mib(64), ClampReason::LowMemory)
        );
        assert_eq!(
            idle(Frames::from_mib(10), c, &s, &config),
            Plan::Deflate(Frames::from_mib(10), ClampReason::LowMemory)
        );
        assert_eq!(idle(Frames::ZERO, c, &s, &config), Plan::Hold);
        // A larger deficit to a guest bound is restored whole.
        let tight = Ceiling {
            value: Frames::from_mib(500),
            reason: ClampReason::ResidentAvailable,
        };
        assert_eq!(
            idle(Frames::from_mib(1000), tight, &s, &config),
            Plan::Deflate(Frames::from_mib(500), ClampReason::LowMemory)
        );
        // With DeflateOnLowMemory = 0 the signal does not deflate, but still blocks inflation.
        let off = validate(
            &RawConfig::new().with(Param::DeflateOnLowMemory, 0),
            Frames::from_mib(4 * GIB),
        )
        .config;
        assert_eq!(idle(Frames::from_mib(1000), c, &s, &off), Plan::Hold);
        assert_eq!(
            idle(Frames::from_mib(1000), tight, &s, &off),
            Plan::Deflate(Frames::from_mib(500), ClampReason::ResidentAvailable)
        );
    }

    #[test]
    fn self_induced_low_memory_blocks_inflation_without_deflating() {
        let config = Config::default();
        let s = snap(4 * GIB, 4000);
        let c = Ceiling {
            value: Frames::from_mib(2000),
            reason: ClampReason::HostTarget,
        };
        assert_eq!(
            plan(
                Frames::from_mib(1000),
                c,
                &s,
                &config,
                Motion::Inflating,
                Pressure::SelfInduced
            ),
            Plan::Hold
        );
        // A guest-side bound below the balloon still deflates.
        let tight = Ceiling {
            value: Frames::from_mib(500),
            reason: ClampReason::Commit,
        };
        assert_eq!(
            plan(
                Frames::from_mib(1000),
                tight,
                &s,
                &config,
                Motion::Idle,
                Pressure::SelfInduced
            ),
            Plan::Deflate(Frames::from_mib(500), ClampReason::Commit)
        );
    }

    #[test]
    fn absurd_snapshots_do_not_panic() {
        let config = Config::default();
        let s = MemorySnapshot {
            total: Frames::MAX,
            resident_available: Some(Frames::MAX),
            available: Some(Frames::MAX),
            commit_limit: Some(Frames::ZERO),
            committed: Some(Frames::MAX),
            low_memory: true,
            ..MemorySnapshot::default()
        };
        let c = ceiling(Frames::MAX, Frames::MAX, &s, &config);
        let _ = idle(Frames::MAX, c, &s, &config);
        let z = MemorySnapshot::default();
        let c = ceiling(Frames::ZERO, Frames::ZERO, &z, &config);
        assert_eq!(
            plan(Frames::ZERO, c, &z, &config, Motion::Idle, Pressure::None),
            Plan::Hold
        );
    }
}
