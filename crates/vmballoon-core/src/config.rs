//! The administrator's settings: the registry values under
//! `HKLM\SYSTEM\CurrentControlSet\Services\vmballoon\Parameters` (all `REG_DWORD`), their
//! defaults and ranges (`docs/architecture.md`, "Registry parameters"), and the validator that
//! turns whatever the registry holds into a [`Config`] without ever failing.

use crate::units::{Duration, Frames};

/// One registry parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Param {
    /// Hard cap on the balloon in MiB (0 = none): the guest-side `sched.mem.maxmemctl`.
    MaxBalloonMb,
    /// Cap as a percentage of guest RAM (0 = none).
    MaxBalloonPercent,
    /// Resident-available floor the balloon must leave, in MiB (0 = automatic).
    ReserveMb,
    /// How often the host target is read, in milliseconds.
    PollIntervalMs,
    /// Use 2 MiB balloon pages when the host grants them (0 / 1).
    UseLargePages,
    /// Deflate when `LowMemoryCondition` is signalled (0 / 1).
    DeflateOnLowMemory,
}

impl Param {
    /// Number of parameters.
    pub const COUNT: usize = 6;

    /// Every parameter, in table order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::MaxBalloonMb,
        Self::MaxBalloonPercent,
        Self::ReserveMb,
        Self::PollIntervalMs,
        Self::UseLargePages,
        Self::DeflateOnLowMemory,
    ];

    /// The registry value name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::MaxBalloonMb => "MaxBalloonMB",
            Self::MaxBalloonPercent => "MaxBalloonPercent",
            Self::ReserveMb => "ReserveMB",
            Self::PollIntervalMs => "PollIntervalMs",
            Self::UseLargePages => "UseLargePages",
            Self::DeflateOnLowMemory => "DeflateOnLowMemory",
        }
    }

    /// Looks a parameter up by its registry name (exact, case-sensitive).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Index for tables.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The value used when the registry has none.
    #[must_use]
    pub const fn default_value(self) -> u32 {
        match self {
            Self::MaxBalloonMb | Self::MaxBalloonPercent | Self::ReserveMb => 0,
            Self::PollIntervalMs => 1000,
            Self::UseLargePages | Self::DeflateOnLowMemory => 1,
        }
    }

    /// The accepted range, inclusive. `ram_mib` bounds the size parameters ("0 – RAM").
    #[must_use]
    pub const fn range(self, ram_mib: u32) -> (u32, u32) {
        match self {
            Self::MaxBalloonMb | Self::ReserveMb => (0, ram_mib),
            Self::MaxBalloonPercent => (0, 100),
            Self::PollIntervalMs => (100, 10_000),
            Self::UseLargePages | Self::DeflateOnLowMemory => (0, 1),
        }
    }
}

/// A registry value as the platform read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RawValue {
    /// No such value: the default applies silently.
    #[default]
    Missing,
    /// A `REG_DWORD`.
    Dword(u32),
    /// A value of another type (`STATUS_OBJECT_TYPE_MISMATCH`).
    WrongType,
}

/// Every parameter as read, before validation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawConfig {
    values: [RawValue; Param::COUNT],
}

impl RawConfig {
    /// Nothing set: every default.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            values: [RawValue::Missing; Param::COUNT],
        }
    }

    /// Sets what was read for `param`.
    pub fn set(&mut self, param: Param, value: RawValue) {
        if let Some(v) = self.values.get_mut(param.index()) {
            *v = value;
        }
    }

    /// Builder form of [`RawConfig::set`] with a DWORD.
    #[must_use]
    pub fn with(mut self, param: Param, value: u32) -> Self {
        self.set(param, RawValue::Dword(value));
        self
    }

    /// What was read for `param`.
    #[must_use]
    pub fn get(&self, param: Param) -> RawValue {
        self.values.get(param.index()).copied().unwrap_or_default()
    }
}

/// What was wrong with one value and what the validator used instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The parameter.
    pub param: Param,
    /// What the registry held.
    pub problem: Problem,
    /// The value used instead.
    pub used: u32,
}

/// The kind of a bad registry value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A DWORD outside the range: clamped to the nearest bound.
    OutOfRange {
        /// The value read.
        value: u32,
        /// Lowest accepted value.
        min: u32,
        /// Highest accepted value.
        max: u32,
    },
    /// Not a DWORD: the default is used.
    WrongType,
}

/// The validated settings the engine runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Cap on the balloon (`MaxBalloonMB`), `None` for no cap.
    pub max_balloon: Option<Frames>,
    /// Cap as a percentage of RAM (`MaxBalloonPercent`), `None` for no cap.
    pub max_balloon_percent: Option<u8>,
    /// Resident-available floor (`ReserveMB`), `None` for the automatic RAM-based floor.
    pub reserve: Option<Frames>,
    /// Polling period (`PollIntervalMs`).
    pub poll_interval: Duration,
    /// Use 2 MiB pages when granted (`UseLargePages`).
    pub use_large_pages: bool,
    /// Deflate on `LowMemoryCondition` (`DeflateOnLowMemory`).
    pub deflate_on_low_memory: bool,
}

impl Default for Config {
    fn default() -> Self {
        validate(&RawConfig::new(), Frames::MAX).config
    }
}

/// The outcome of [`validate`]: a usable config plus one entry per rejected value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validated {
    /// The settings to run with.
    pub config: Config,
    /// Every value that was clamped or replaced, for `ConfigRejected` ETW warnings.
    pub issues: [Option<ConfigIssue>; Param::COUNT],
}

impl Validated {
    /// The issues found, in parameter order.
    pub fn issues(&self) -> impl Iterator<Item = &ConfigIssue> {
        self.issues.iter().flatten()
    }
}

/// Turns raw registry values into a [`Config`], clamping out-of-range values and replacing
/// wrongly typed ones by the default, and reports each. Never fails: the driver never
/// refuses to load over a registry value. `ram` bounds the size parameters.
#[must_use]
pub fn validate(raw: &RawConfig, ram: Frames) -> Validated {
    let ram_mib = u32::try_from(ram.mib_floor()).unwrap_or(u32::MAX);
    let mut issues = [None; Param::COUNT];
    let mut used = [0u32; Param::COUNT];
    for param in Param::ALL {
        let (min, max) = param.range(ram_mib);
        let (value, issue) = match raw.get(param) {
            RawValue::Missing => (param.default_value(), None),
            RawValue::WrongType => (param.default_value(), Some(Problem::WrongType)),
            RawValue::Dword(v) if v < min || v > max => (
                v.clamp(min, max),
                Some(Problem::OutOfRange { value: v, min, max }),
            ),
            RawValue::Dword(v) => (v, None),
        };
        if let Some(slot) = used.get_mut(param.index()) {
            *slot = value;
        }
        if let (Some(slot), Some(problem)) = (issues.get_mut(param.index()), issue) {
            *slot = Some(ConfigIssue {
                param,
                problem,
                used: value,
            });
        }
    }
    let get = |p: Param| used.get(p.index()).copied().unwrap_or(p.default_value());
    let nonzero_mib = |v: u32| (v != 0).then(|| Frames::from_mib(u64::from(v)));
    let config = Config {
        max_balloon: nonzero_mib(get(Param::MaxBalloonMb)),
        max_balloon_percent: u8::try_from(get(Param::MaxBalloonPercent))
            .ok()
            .filter(|&p| p != 0),
        reserve: nonzero_mib(get(Param::ReserveMb)),
        poll_interval: Duration::from_millis(u64::from(get(Param::PollIntervalMs))),
        use_large_pages: get(Param::UseLargePages) != 0,
        deflate_on_low_memory: get(Param::DeflateOnLowMemory) != 0,
    };
    Validated { config, issues }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM_4G: Frames = Frames::from_mib(4096);

    #[test]
    fn names_defaults_and_ranges_match_architecture_md() {
        let table = [
            (Param::MaxBalloonMb, "MaxBalloonMB", 0, (0, 4096)),
            (Param::MaxBalloonPercent, "MaxBalloonPercent", 0, (0, 100)),
            (Param::ReserveMb, "ReserveMB", 0, (0, 4096)),
            (Param::PollIntervalMs, "PollIntervalMs", 1000, (100, 10_000)),
            (Param::UseLargePages, "UseLargePages", 1, (0, 1)),
            (Param::DeflateOnLowMemory, "DeflateOnLowMemory", 1, (0, 1)),
        ];
        for (p, name, default, range) in table {
            assert_eq!(p.name(), name);
            assert_eq!(p.default_value(), default);
            assert_eq!(p.range(4096), range);
            assert_eq!(Param::from_name(name), Some(p));
        }
        assert_eq!(Param::from_name("maxballoonmb"), None);
    }

    #[test]
    fn missing_values_take_defaults_silently() {
        let v = validate(&RawConfig::new(), RAM_4G);
        assert_eq!(v.issues().count(), 0);
        assert_eq!(v.config.max_balloon, None);
        assert_eq!(v.config.max_balloon_percent, None);
        assert_eq!(v.config.reserve, None);
        assert_eq!(v.config.poll_interval, Duration::from_millis(1000));
        assert!(v.config.use_large_pages && v.config.deflate_on_low_memory);
        assert_eq!(Config::default(), v.config);
    }

    #[test]
    fn good_values_are_used() {
        let raw = RawConfig::new()
            .with(Param::MaxBalloonMb, 1330)
            .with(Param::MaxBalloonPercent, 50)
            .with(Param::ReserveMb, 600)
            .with(Param::PollIntervalMs, 250)
            .with(Param::UseLargePages, 0)
            .with(Param::DeflateOnLowMemory, 0);
        let v = validate(&raw, RAM_4G);
        assert_eq!(v.issues().count(), 0);
        assert_eq!(v.config.max_balloon, Some(Frames::from_mib(1330)));
        assert_eq!(v.config.max_balloon_percent, Some(50));
        assert_eq!(v.config.reserve, Some(Frames::from_mib(600)));
        assert_eq!(v.config.poll_interval, Duration::from_millis(250));
        assert!(!v.config.use_large_pages && !v.config.deflate_on_low_memory);
    }

    #[test]
    fn out_of_range_values_are_clamped_and_reported() {
        let raw = RawConfig::new()
            .with(Param::MaxBalloonMb, 9999)
            .with(Param::MaxBalloonPercent, 250)
            .with(Param::PollIntervalMs, 5)
            .with(Param::UseLargePages, 7);
        let v = validate(&raw, RAM_4G);
        let issues: std::vec::Vec<_> = v.issues().copied().collect();
        assert_eq!(issues.len(), 4);
        assert_eq!(
            issues[0],
            ConfigIssue {
                param: Param::MaxBalloonMb,
                problem: Problem::OutOfRange {
                    value: 9999,
                    min: 0,
                    max: 4096
                },
                used: 4096
            }
        );
        assert_eq!(v.config.max_balloon, Some(Frames::from_mib(4096)));
        assert_eq!(v.config.max_balloon_percent, Some(100));
        assert_eq!(v.config.poll_interval, Duration::from_millis(100));
        assert!(v.config.use_large_pages);
        let raw = RawConfig::new().with(Param::PollIntervalMs, u32::MAX);
        assert_eq!(
            validate(&raw, RAM_4G).config.poll_interval,
            Duration::from_millis(10_000)
        );
    }

    #[test]
    fn wrong_type_takes_default_and_is_reported() {
        let mut raw = RawConfig::new();
        raw.set(Param::DeflateOnLowMemory, RawValue::WrongType);
        raw.set(Param::PollIntervalMs, RawValue::WrongType);
        let v = validate(&raw, RAM_4G);
        assert_eq!(v.issues().count(), 2);
        assert!(v.config.deflate_on_low_memory);
        assert_eq!(v.config.poll_interval, Duration::from_millis(1000));
        assert!(v.issues().all(|i| i.problem == Problem::WrongType));
    }

    #[test]
    fn tiny_or_unknown_ram_still_validates() {
        let raw = RawConfig::new().with(Param::ReserveMb, 10);
        let v = validate(&raw, Frames::ZERO);
        assert_eq!(v.config.reserve, None);
        assert_eq!(v.issues().count(), 1);
    }
}
