//! The oracle: what the engine must know and may do, computed independently of it.
//!
//! [`Oracle`] follows the target the engine has heard (by the protocol's rules, from the
//! host's replies), the frames in the engine's hands, the guest-side faults still to fire,
//! and collects broken invariants. [`safe_ceiling`] recomputes the safe ceiling of
//! `docs/architecture.md`, "The safe ceiling", from its formula rather than with the
//! engine's own `policy::ceiling`. The host ([`crate::host`]) checks the inflation bound
//! with it at every LOCK, the allocator ([`crate::guest`]) at every allocation, and the
//! harness ([`crate::harness`]) after every tick.

use vmballoon_core::config::Config;
use vmballoon_core::platform::MemorySnapshot;
use vmballoon_core::policy;
use vmballoon_core::units::Frames;

use crate::guest::Faults;

/// What the oracle knows and has seen. Shared by the host, the allocator, the memory
/// source and the harness.
#[derive(Debug, Default)]
pub struct Oracle {
    /// The settings the engine runs with.
    pub config: Config,
    /// The target the engine knows, by the protocol's rules (the last SUCCESS reply of a
    /// command that carries one, if it fits the session's width).
    pub t_known: u64,
    /// The target the engine knew when it allocated the chunk being locked.
    pub t_plan: u64,
    /// The known target went down during this tick.
    pub t_dropped: bool,
    /// The session negotiated 64-bit targets.
    pub wide: bool,
    /// Frames taken out of the allocator and not stored or returned (allocated or taken
    /// chunks in the engine's hands).
    pub out: u64,
    /// Frames of units parked (the host holds part of them, or none: refused pages held
    /// back from the OS until the end of the cycle).
    pub parked: u64,
    /// Whether the last snapshot the engine got said `LowMemoryCondition` (`None`: it failed).
    pub last_low: Option<bool>,
    /// Faults still to fire.
    pub faults: Faults,
    /// Broken invariants.
    pub violations: Vec<String>,
    /// Backdoor calls seen.
    pub calls: u64,
}

impl Oracle {
    /// Records a broken invariant (the first 32 are kept).
    pub(crate) fn violation(&mut self, message: String) {
        if self.violations.len() < 32 {
            self.violations.push(message);
        }
    }
}

/// The safe ceiling of `docs/architecture.md`, recomputed here from the formula (not with the
/// engine's `policy::ceiling`), in frames:
/// `min(target, MaxBalloonMB, MaxBalloonPercent of RAM, balloon + (ResidentAvailable −
/// reserve), balloon + (CommitLimit − Committed − max(reserve, available floor)),
/// balloon + (Available − available floor))`; an unknown bound gives no room above the
/// balloon.
#[must_use]
pub fn safe_ceiling(target: u64, balloon: u64, snap: &MemorySnapshot, config: &Config) -> u64 {
    let reserve = policy::reserve(config, snap.total).get();
    let available_floor = policy::available_floor(snap.total).get();
    // balloon + (free − floor); an unknown figure gives no room.
    let room = |free: Option<u64>, floor: u64| {
        free.map_or(balloon, |f| balloon.saturating_add(f).saturating_sub(floor))
    };
    let commit_free = match (snap.commit_limit, snap.committed) {
        (Some(l), Some(c)) => Some(l.get().saturating_sub(c.get())),
        _ => None,
    };
    let mut c = target;
    if let Some(m) = config.max_balloon {
        c = c.min(m.get());
    }
    if let Some(p) = config.max_balloon_percent {
        c = c.min(snap.total.percent(p).get());
    }
    // Resident available stays above the reserve, commit above the reserve and at least
    // the available floor, free memory above the available floor (`docs/architecture.md`,
    // "The safe ceiling").
    c.min(room(snap.resident_available.map(Frames::get), reserve))
        .min(room(commit_free, reserve.max(available_floor)))
        .min(room(snap.available.map(Frames::get), available_floor))
}
