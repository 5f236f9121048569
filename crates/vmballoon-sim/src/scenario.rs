//! Scenario files (`docs/scenario-format.md`): loading, validation, and one-line errors that
//! name the file, the line and the key.
//!
//! The file is parsed into toml's spanned document tree ([`toml::de::DeTable`]) and read
//! key by key, so every error, syntactic or semantic, points at a line. Unknown keys are
//! errors (the format requires it); optional keys the format leaves open get documented
//! defaults:
//!
//! | key | default |
//! |---|---|
//! | `description` | empty |
//! | `duration_s` | the last event + 60 s (at least 60 s) |
//! | `[guest] os_locked_mib`, `pagefile_mib`, `committed_mib` | 0 |
//! | `[guest] pageable_layout` (extra) | `"packed"` (or `"scattered"`) |
//! | `[guest] mdl_accounting` | `"charged"` (or `"not-charged"`) |
//! | `[host] capabilities` | `["basic", "batched", "batched-2m"]` |
//! | `[host] max_balloon_percent` | 65 (`Mem.CtlMaxPercent`'s default) |
//! | `[config]` values | the registry defaults |
//! | `[[events]] kind` | `"virtual-lock"` |
//! | `[[events]] id` | `"<kind>@<line>"` (then it cannot be released) |
//! | `[[events]] partial_ok` | `false` |
//! | `[[events]] repeat_count` / `repeat_every_s` | no repetition |
//! | `host_entry_status` `on` | `"lock"` |
//!
//! Decisions where the format is silent:
//!
//! * Times: `at_s` and `duration_s` are finite, non-negative and at most
//!   [`MAX_DURATION_S`] (one simulated day); `duration_s` is above 0; every `at_s` lies
//!   within `0..=duration_s`, and without `duration_s` the derived "last event + 60 s"
//!   must stay within the day too (the error names the last event's line).
//! * Sizes: `ram_mib` is a whole number of 2 MiB blocks up to [`MAX_RAM_MIB`] (the guest
//!   model's limit); every other size is at most [`MAX_SIZE_MIB`], so no size saturates
//!   when converted to frames and every number reported is the one written. A guest that
//!   could not boot is an error: `os_locked_mib` + `committed_mib` (its commit charge at
//!   t = 0) must fit in its commit limit, `ram_mib` + `pagefile_mib`.
//! * At most [`MAX_EVENTS`] `[[events]]` in the file, and at most
//!   [`MAX_EXPANDED_EVENTS`] once repeated events are expanded (each failing request is
//!   retried every simulated second, so this and the one-day limit bound the work of a
//!   run). Events at the same time apply in file order (the order they take effect); the
//!   occurrences of a repeated event are sorted in with the others by time.
//! * A repeated event (`repeat_count` N ≥ 1 with `repeat_every_s` P > 0, both or neither)
//!   happens at `at_s` + k·P for k = 0..N, every occurrence within the run. The request of
//!   occurrence k + 1 of a repeated `lock_mib` / `commit_mib` is named `<id>#<k + 1>`; a
//!   repeated `release` of such an id releases `<id>#<k + 1>` at its own occurrence k + 1
//!   (the usual release rules then apply to each occurrence), and a single `release` may
//!   name one occurrence (`"<id>#3"`).
//! * Ids are unique. A `release` names the explicit `id` of a `lock_mib` / `commit_mib`
//!   that takes effect before it (an earlier time, or the same time and earlier in the
//!   file), wherever it is written in the file; each id is released at most once. A
//!   `release` before its request, of an unknown id, or of an id already released is an
//!   error naming the `release`'s line.
//! * `[config]` values outside the registry ranges are errors (the driver would clamp
//!   them, but a scenario should say what it means).

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};
use vmballoon_core::config::{Config, Param, RawConfig, RawValue, validate};
use vmballoon_core::protocol::{Capabilities, Status};
use vmballoon_core::units::{Duration, Frames, Instant};

use crate::guest::{GuestModel, GuestSpec, MdlAccounting, PageableLayout, PinKind};
use crate::host::{CAPABILITY_NAMES, EntryDirection, HostSpec};

/// The longest run a scenario may ask for, and the latest `at_s`: one simulated day.
pub const MAX_DURATION_S: f64 = 86_400.0;

/// The largest `ram_mib`: the guest model's limit ([`crate::guest::MAX_RAM`], 64 GiB).
pub const MAX_RAM_MIB: u64 = crate::guest::MAX_RAM.mib_floor();

/// The largest value of every other size (`os_locked_mib`, `pagefile_mib`,
/// `committed_mib`, `target_mib`, `lock_mib`, `commit_mib`): 1 TiB, 16 times the largest
/// guest, so a request that can never be met can still be written, and no size saturates
/// when converted to frames.
pub const MAX_SIZE_MIB: u64 = 1 << 20;

/// The most `[[events]]` a scenario may have. Every failing request is retried each
/// simulated second, so this and [`MAX_DURATION_S`] bound the work of a run.
pub const MAX_EVENTS: usize = 1000;

/// The most events a scenario may have once repeated events are expanded.
pub const MAX_EXPANDED_EVENTS: usize = 10_000;

/// Seconds the run lasts after the last event when `duration_s` is not given.
pub const DEFAULT_TAIL_S: f64 = 60.0;

/// The built-in scenario: VMware KB 340369.
pub const KB_340369: &str = include_str!("../../../scenarios/kb-340369.toml");

/// A bad scenario: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file as named on the command line.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong, naming the key.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// What an event does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The host's balloon target from now on (`target_mib`).
    Target(Frames),
    /// The guest pins memory (`lock_mib` + `kind`).
    Lock {
        /// Request id (for `release`).
        id: String,
        /// Kind of pinned memory.
        kind: PinKind,
        /// Size.
        size: Frames,
        /// A short grant is kept and the rest retried (`partial_ok`).
        partial_ok: bool,
    },
    /// The guest commits pageable memory (`commit_mib`).
    Commit {
        /// Request id (for `release`).
        id: String,
        /// Size.
        size: Frames,
    },
    /// The memory of request `id` is freed (`release`).
    Release(String),
    /// The host resets the session (`host_reset = true`).
    HostReset,
    /// The host answers BUSY to the next N calls (`host_busy_calls`).
    HostBusy(u64),
    /// The host refuses the next N pages offered (`host_refuse_next`).
    HostRefuse(u64),
    /// The host answers the next `pages` pages offered (or asked back) with `status`
    /// (`host_entry_status`).
    HostEntryStatus {
        /// PPN_NOTNEEDED, BUSY or RESET.
        status: Status,
        /// How many pages.
        pages: u64,
        /// Pages offered (LOCK) or asked back (UNLOCK).
        on: EntryDirection,
    },
    /// The reply to the `locks`-th LOCK-family call from now carries `target`
    /// (`host_target_after_locks`).
    HostTargetAfterLocks {
        /// Which LOCK-family call (1 = the next one).
        locks: u64,
        /// The new target.
        target: Frames,
    },
    /// Registry values change (`config = { MaxBalloonMB = 700 }`); the others keep theirs.
    /// vmballoon sees them at its next registry read (`docs/architecture.md`, "Registry
    /// parameters": at least every 10 s).
    Config(RawConfig),
}

/// The per-entry answers `host_entry_status` may inject, by name.
pub const ENTRY_STATUS_NAMES: [(&str, Status); 3] = [
    ("notneeded", Status::PpnNotNeeded),
    ("busy", Status::Busy),
    ("reset", Status::Reset),
];

/// One `[[events]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When it happens.
    pub at: Instant,
    /// Its line in the file (of the `[[events]]` header).
    pub line: usize,
    /// What happens.
    pub action: Action,
}

/// A loaded, validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: String,
    /// `duration_s`.
    pub duration: Duration,
    /// `[guest]`.
    pub guest: GuestSpec,
    /// `[guest] mdl_accounting`: how the guest accounts the balloon's MDL pages.
    pub mdl_accounting: MdlAccounting,
    /// `[host]`.
    pub host: HostSpec,
    /// `[config]`, as the driver would read it from the registry.
    pub raw_config: RawConfig,
    /// `[config]`, validated.
    pub config: Config,
    /// `[[events]]`, sorted by time (file order within a time).
    pub events: Vec<Event>,
}

impl Scenario {
    /// Loads a scenario from `text`; `file` names it in errors.
    ///
    /// # Errors
    /// The first problem found, with its line.
    pub fn parse(text: &str, file: &str) -> Result<Self, ScenarioError> {
        let src = Source { text, file };
        let doc = DeTable::parse(text).map_err(|e| {
            let line = e.span().map_or(1, |s| src.line(s.start));
            let mut msg = e.message().trim().replace('\n', "; ");
            // toml says only "duplicate key"; its span is the repeated key: name it.
            if msg == "duplicate key"
                && let Some(key) = e.span().and_then(|s| src.text.get(s)).map(str::trim)
                && !key.is_empty()
                && !key.contains('\n')
            {
                msg = format!("duplicate key `{key}` (each key once per table)");
            }
            src.error_at_line(line, format!("invalid TOML: {msg}"))
        })?;
        Loader { src }.scenario(doc.get_ref())
    }

    /// The built-in KB 340369 scenario.
    #[must_use]
    pub fn builtin() -> Self {
        // The embedded file is checked by the tests; a broken one yields an empty run
        // rather than a panic.
        Self::parse(KB_340369, "kb-340369.toml (built-in)").unwrap_or_else(|_| Self {
            name: "kb-340369".to_owned(),
            description: String::new(),
            duration: Duration::from_secs(1),
            guest: GuestSpec {
                ram: Frames::from_mib(4096),
                os_locked: Frames::ZERO,
                pagefile: Frames::ZERO,
                committed: Frames::ZERO,
                layout: PageableLayout::Packed,
            },
            mdl_accounting: MdlAccounting::Charged,
            host: HostSpec::default(),
            raw_config: RawConfig::new(),
            config: Config::default(),
            events: Vec::new(),
        })
    }
}

struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text
            .as_bytes()
            .get(..end)
            .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
            + 1
    }

    fn error(&self, span: &Range<usize>, message: impl Into<String>) -> ScenarioError {
        self.error_at_line(self.line(span.start), message)
    }

    fn error_at_line(&self, line: usize, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: self.file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

type Value<'i> = Spanned<DeValue<'i>>;

/// One table being read: the keys it may hold, and where it starts.
struct Table<'s, 'i> {
    src: &'s Source<'s>,
    table: &'s DeTable<'i>,
    span: Range<usize>,
    name: String,
}

impl<'s, 'i> Table<'s, 'i> {
    /// Reads `table`, rejecting any key not in `known` (the first in file order).
    fn new(
        src: &'s Source<'s>,
        table: &'s DeTable<'i>,
        span: Range<usize>,
        name: impl Into<String>,
        known: &[&str],
    ) -> Result<Self, ScenarioError> {
        let name = name.into();
        let mut unknown: Vec<_> = table
            .iter()
            .filter(|(k, _)| !known.contains(&k.get_ref().as_ref()))
            .map(|(k, _)| (k.span(), k.get_ref().to_string()))
            .collect();
        unknown.sort_by_key(|(span, _)| span.start);
        if let Some((span, key)) = unknown.first() {
            let hint = known
                .iter()
                .find(|k| k.eq_ignore_ascii_case(key) || similar(k, key))
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            return Err(src.error(span, format!("unknown key `{key}` in {name}{hint}")));
        }
        Ok(Self {
            src,
            table,
            span,
            name,
        })
    }

    fn get(&self, key: &str) -> Option<&'s Value<'i>> {
        self.table.get(key)
    }

    fn key_span(&self, key: &str) -> Range<usize> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map_or_else(|| self.span.clone(), |(k, _)| k.span())
    }

    fn err(&self, key: &str, message: impl Into<String>) -> ScenarioError {
        self.src.error(&self.key_span(key), message)
    }

    fn missing(&self, key: &str) -> ScenarioError {
        self.src.error(
            &self.span,
            format!("missing required key `{key}` in {}", self.name),
        )
    }

    fn type_error(&self, key: &str, want: &str, v: &DeValue<'_>) -> ScenarioError {
        self.err(key, format!("`{key}` must be {want}, not {}", v.type_str()))
    }

    /// The value of `key` as written in the file (for messages), shortened if long.
    fn written(&self, v: &Value<'_>) -> String {
        let text = self.src.text.get(v.span()).map_or("", str::trim);
        let mut chars = text.chars();
        let head: String = chars.by_ref().take(40).collect();
        if chars.next().is_some() {
            format!("{head}...")
        } else {
            head
        }
    }

    /// A non-negative integer up to `max`; `limit` says what the limit is, in words.
    fn bounded(
        &self,
        key: &str,
        unit: &str,
        max: u64,
        limit: &str,
    ) -> Result<Option<u64>, ScenarioError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let DeValue::Integer(i) = v.get_ref() else {
            return Err(self.type_error(key, &format!("an integer ({unit})"), v.get_ref()));
        };
        let parsed = i128::from_str_radix(i.as_str(), i.radix());
        let shown = self.written(v);
        match parsed {
            Ok(n) if n < 0 => Err(self.err(key, format!("`{key}` must not be negative (got {n})"))),
            Err(_) if shown.starts_with('-') => {
                Err(self.err(key, format!("`{key}` must not be negative (got {shown})")))
            }
            Ok(n) if n <= i128::from(max) => Ok(u64::try_from(n).ok()),
            _ => Err(self.err(key, format!("`{key}` = {shown} is over {limit}"))),
        }
    }

    /// A non-negative integer that fits in 64 bits (a count).
    fn uint(&self, key: &str, unit: &str) -> Result<Option<u64>, ScenarioError> {
        self.bounded(
            key,
            unit,
            u64::MAX,
            "the largest 64-bit count (18446744073709551615)",
        )
    }

    /// A size in MiB up to [`MAX_SIZE_MIB`].
    fn mib(&self, key: &str) -> Result<Option<Frames>, ScenarioError> {
        Ok(self
            .bounded(
                key,
                "MiB",
                MAX_SIZE_MIB,
                &format!("the limit of {MAX_SIZE_MIB} MiB (1 TiB)"),
            )?
            .map(Frames::from_mib))
    }

    /// A number of seconds (integer or float): finite, non-negative and at most
    /// [`MAX_DURATION_S`] (one simulated day).
    fn seconds(&self, key: &str) -> Result<Option<f64>, ScenarioError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let shown = self.written(v);
        let special = matches!(shown.trim_start_matches(['+', '-']), "inf" | "nan");
        let n = match v.get_ref() {
            DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => n as f64,
                // Beyond 128 bits: over any limit, with its sign.
                Err(_) if shown.starts_with('-') => f64::NEG_INFINITY,
                Err(_) => f64::INFINITY,
            },
            // A literal beyond f64 (`1e400`) parses to infinity: over the limit.
            DeValue::Float(f) => f
                .as_str()
                .replace('_', "")
                .parse::<f64>()
                .unwrap_or(f64::NAN),
            other => return Err(self.type_error(key, "a number (seconds)", other)),
        };
        if special || n.is_nan() {
            Err(self.err(
                key,
                format!("`{key}` must be a finite number of seconds (got {shown})"),
            ))
        } else if n < 0.0 {
            Err(self.err(key, format!("`{key}` must not be negative (got {shown})")))
        } else if n > MAX_DURATION_S {
            Err(self.err(
                key,
                format!(
                    "`{key}` = {shown} is over the limit of {MAX_DURATION_S} s (one simulated day)"
                ),
            ))
        } else {
            Ok(Some(n))
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, ScenarioError> {
        match self.get(key).map(Spanned::get_ref) {
            None => Ok(None),
            Some(DeValue::String(s)) => Ok(Some(s.to_string())),
            Some(other) => Err(self.type_error(key, "a string", other)),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ScenarioError> {
        match self.get(key).map(Spanned::get_ref) {
            None => Ok(None),
            Some(DeValue::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(self.type_error(key, "true or false", other)),
        }
    }

    /// The inline table of `key` (`key = { ... }`), its keys checked against `known`.
    fn inline(&self, key: &str, known: &[&str]) -> Result<Option<Table<'s, 'i>>, ScenarioError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Table(t) => {
                Table::new(self.src, t, v.span(), format!("`{key}`"), known).map(Some)
            }
            other => Err(self.type_error(key, "an inline table ({ ... })", other)),
        }
    }

    fn subtable(&self, key: &str, known: &[&str]) -> Result<Option<Table<'s, 'i>>, ScenarioError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Table(t) => {
                Table::new(self.src, t, v.span(), format!("[{key}]"), known).map(Some)
            }
            other => Err(self.type_error(key, "a table", other)),
        }
    }
}

/// Whether two key names differ by one edit or only in `_mib` / `_mb` style suffixes.
fn similar(a: &str, b: &str) -> bool {
    let strip = |s: &str| {
        s.to_ascii_lowercase()
            .trim_end_matches("_mib")
            .trim_end_matches("_mb")
            .trim_end_matches("mb")
            .to_owned()
    };
    strip(a) == strip(b)
}

const EVENT_ACTIONS: [&str; 10] = [
    "target_mib",
    "lock_mib",
    "commit_mib",
    "release",
    "host_reset",
    "host_busy_calls",
    "host_refuse_next",
    "host_entry_status",
    "host_target_after_locks",
    "config",
];

/// One event as read, before sorting: its time in seconds and the lines of its `at_s`
/// and action keys, for errors found after the events are in time order.
struct Parsed {
    at: f64,
    at_line: usize,
    action_line: usize,
    /// Occurrence (1-based) of a repeated event, and the number of occurrences.
    occurrence: Option<(u64, u64)>,
    event: Event,
}

struct Loader<'a> {
    src: Source<'a>,
}

impl Loader<'_> {
    fn scenario(&self, doc: &DeTable<'_>) -> Result<Scenario, ScenarioError> {
        let top = Table::new(
            &self.src,
            doc,
            0..0,
            "the top level",
            &[
                "name",
                "description",
                "duration_s",
                "guest",
                "host",
                "config",
                "events",
            ],
        )?;
        let name = top.string("name")?.ok_or_else(|| top.missing("name"))?;
        if name.trim().is_empty() {
            return Err(top.err("name", "`name` must not be empty"));
        }
        let description = top.string("description")?.unwrap_or_default();
        let duration_s = top.seconds("duration_s")?;
        if let Some(d) = duration_s
            && secs(d) == Duration::ZERO
        {
            return Err(top.err(
                "duration_s",
                format!(
                    "`duration_s` must be above 0 and at most {MAX_DURATION_S} (got {})",
                    top.get("duration_s")
                        .map(|v| top.written(v))
                        .unwrap_or_default()
                ),
            ));
        }

        let (guest, mdl_accounting) = self.guest(&top)?;
        let host = self.host(&top)?;
        let (raw_config, config) = self.config(&top, guest.ram)?;
        let (mut events, auto_ids) = self.events(&top, guest.ram)?;
        let last = events
            .iter()
            .max_by(|a, b| a.at.total_cmp(&b.at).then(a.at_line.cmp(&b.at_line)));
        let duration_s = match (duration_s, last) {
            (Some(d), _) => d,
            (None, None) => DEFAULT_TAIL_S,
            (None, Some(p)) => {
                let at = p.at;
                let d = at + DEFAULT_TAIL_S;
                if d > MAX_DURATION_S {
                    let what = match p.occurrence {
                        Some((n, count)) => {
                            format!("occurrence {n} of {count} of this repeated event is at {at} s")
                        }
                        None => format!("`at_s` = {at}"),
                    };
                    return Err(self.src.error_at_line(
                        p.at_line,
                        format!(
                            "{what}: without `duration_s` the run would last {d} s \
                             (last event + {DEFAULT_TAIL_S} s), over the limit of \
                             {MAX_DURATION_S} s (one simulated day); set `duration_s`"
                        ),
                    ));
                }
                d
            }
        };
        for p in &events {
            let at = p.at;
            if at > duration_s {
                let what = match p.occurrence {
                    Some((n, count)) => {
                        format!("occurrence {n} of {count} of this repeated event, at {at} s,")
                    }
                    None => format!("`at_s` = {at}"),
                };
                return Err(self.src.error_at_line(
                    p.at_line,
                    format!("{what} is after the end of the run (duration_s = {duration_s})"),
                ));
            }
        }
        // Stable: events at the same time keep their file order, the order they apply in.
        events.sort_by(|a, b| a.at.total_cmp(&b.at));
        self.check_releases(&events, &auto_ids)?;
        let events: Vec<Event> = events.into_iter().map(|p| p.event).collect();
        Ok(Scenario {
            name,
            description,
            duration: secs(duration_s),
            guest,
            mdl_accounting,
            host,
            raw_config,
            config,
            events,
        })
    }

    fn guest(&self, top: &Table<'_, '_>) -> Result<(GuestSpec, MdlAccounting), ScenarioError> {
        let g = top
            .subtable(
                "guest",
                &[
                    "ram_mib",
                    "os_locked_mib",
                    "pagefile_mib",
                    "committed_mib",
                    "pageable_layout",
                    "mdl_accounting",
                ],
            )?
            .ok_or_else(|| self.src.error_at_line(1, "missing required table [guest]"))?;
        let layout = match g.string("pageable_layout")?.as_deref() {
            None | Some("packed") => PageableLayout::Packed,
            Some("scattered") => PageableLayout::Scattered,
            Some(other) => {
                return Err(g.err(
                    "pageable_layout",
                    format!(
                        "unknown `pageable_layout` \"{other}\" (expected \"packed\" or \"scattered\")"
                    ),
                ));
            }
        };
        let mdl_accounting = match g.string("mdl_accounting")? {
            None => MdlAccounting::Charged,
            Some(name) => MdlAccounting::from_name(&name).ok_or_else(|| {
                g.err(
                    "mdl_accounting",
                    format!(
                        "unknown `mdl_accounting` \"{name}\" (expected \"charged\" or \"not-charged\")"
                    ),
                )
            })?,
        };
        let ram_mib = g
            .bounded(
                "ram_mib",
                "MiB",
                MAX_RAM_MIB,
                &format!(
                    "the model's limit of {MAX_RAM_MIB} MiB ({} GiB)",
                    MAX_RAM_MIB / 1024
                ),
            )?
            .ok_or_else(|| g.missing("ram_mib"))?;
        let os_locked_mib = g.mib("os_locked_mib")?.unwrap_or(Frames::ZERO);
        let pagefile_mib = g.mib("pagefile_mib")?.unwrap_or(Frames::ZERO);
        let committed_mib = g.mib("committed_mib")?.unwrap_or(Frames::ZERO);
        let spec = GuestSpec {
            ram: Frames::from_mib(ram_mib),
            os_locked: os_locked_mib,
            pagefile: pagefile_mib,
            committed: committed_mib,
            layout,
        };
        GuestModel::validate(&spec).map_err(|m| {
            let key = if m.starts_with("os_locked") {
                "os_locked_mib"
            } else {
                "ram_mib"
            };
            if key == "ram_mib" {
                g.err(key, format!("`ram_mib` {m}"))
            } else {
                g.err(key, m)
            }
        })?;
        // The guest must be able to boot: its commit charge at t = 0 (nonpaged OS memory
        // plus the pageable commit in use) fits in its commit limit (RAM + page file).
        // Every size is at most MAX_SIZE_MIB, so these sums cannot overflow.
        let charge = spec.os_locked.mib_floor() + spec.committed.mib_floor();
        let limit = ram_mib + spec.pagefile.mib_floor();
        if charge > limit {
            let key = if g.get("committed_mib").is_some() {
                "committed_mib"
            } else {
                "os_locked_mib"
            };
            return Err(g.err(
                key,
                format!(
                    "the guest cannot boot: os_locked_mib + committed_mib = {charge} MiB is \
                     over its commit limit ram_mib + pagefile_mib = {limit} MiB"
                ),
            ));
        }
        Ok((spec, mdl_accounting))
    }

    fn host(&self, top: &Table<'_, '_>) -> Result<HostSpec, ScenarioError> {
        let mut spec = HostSpec::default();
        let Some(h) = top.subtable("host", &["capabilities", "max_balloon_percent"])? else {
            return Ok(spec);
        };
        if let Some(p) = h.uint("max_balloon_percent", "percent")? {
            spec.max_balloon_percent =
                u8::try_from(p).ok().filter(|p| *p <= 100).ok_or_else(|| {
                    h.err(
                        "max_balloon_percent",
                        format!("`max_balloon_percent` = {p} is out of range 0..=100"),
                    )
                })?;
        }
        if let Some(v) = h.get("capabilities") {
            let DeValue::Array(items) = v.get_ref() else {
                return Err(h.type_error("capabilities", "an array of strings", v.get_ref()));
            };
            let mut caps = Capabilities::NONE;
            for item in items.iter() {
                let DeValue::String(s) = item.get_ref() else {
                    return Err(self.src.error(
                        &item.span(),
                        format!(
                            "`capabilities` entries must be strings, not {}",
                            item.get_ref().type_str()
                        ),
                    ));
                };
                let Some((_, bit)) = CAPABILITY_NAMES.iter().find(|(n, _)| *n == s.as_ref()) else {
                    let names: Vec<&str> = CAPABILITY_NAMES.iter().map(|(n, _)| *n).collect();
                    return Err(self.src.error(
                        &item.span(),
                        format!(
                            "unknown capability \"{s}\" in `capabilities` (expected {})",
                            names.join(", ")
                        ),
                    ));
                };
                caps = caps.union(*bit);
            }
            spec.capabilities = (!items.is_empty()).then_some(caps);
        }
        Ok(spec)
    }

    fn config(
        &self,
        top: &Table<'_, '_>,
        ram: Frames,
    ) -> Result<(RawConfig, Config), ScenarioError> {
        let names: Vec<&str> = Param::ALL.iter().map(|p| p.name()).collect();
        let raw = match top.subtable("config", &names)? {
            Some(c) => Self::registry_values(&c, ram)?,
            None => RawConfig::new(),
        };
        let config = validate(&raw, ram).config;
        Ok((raw, config))
    }

    /// The registry values of a `[config]` table or a `config` event: each a DWORD in its
    /// range (the driver would clamp, a scenario is told).
    fn registry_values(c: &Table<'_, '_>, ram: Frames) -> Result<RawConfig, ScenarioError> {
        let mut raw = RawConfig::new();
        let ram_mib = u32::try_from(ram.mib_floor()).unwrap_or(u32::MAX);
        for p in Param::ALL {
            let (min, max) = p.range(ram_mib);
            let range = format!("its range {min}..={max}");
            let Some(v) = c.bounded(p.name(), "a registry DWORD", u64::MAX, &range)? else {
                continue;
            };
            match u32::try_from(v) {
                Ok(v) if (min..=max).contains(&v) => {
                    raw = raw.with(p, v);
                }
                _ => {
                    return Err(c.err(
                        p.name(),
                        format!("`{}` = {v} is out of range {min}..={max}", p.name()),
                    ));
                }
            }
        }
        Ok(raw)
    }

    /// Checks every `release` against the events in time order (file order within a
    /// time): its id names an explicit `id` of a request that takes effect before it, and
    /// was not released already. The error names the `release`'s line.
    fn check_releases(&self, events: &[Parsed], auto_ids: &[String]) -> Result<(), ScenarioError> {
        // Requests with an explicit id that took effect so far, and the line of the
        // release that freed each.
        let mut seen: Vec<(&str, Option<usize>)> = Vec::new();
        for (k, p) in events.iter().enumerate() {
            let ev = &p.event;
            match &ev.action {
                Action::Lock { id, .. } | Action::Commit { id, .. } if !auto_ids.contains(id) => {
                    seen.push((id.as_str(), None));
                }
                Action::Release(id) => {
                    let at = secs_f64(ev.at);
                    if let Some((_, released)) = seen.iter_mut().find(|(i, _)| *i == id.as_str()) {
                        if let Some(first) = released {
                            return Err(self.src.error_at_line(
                                p.action_line,
                                format!(
                                    "`release` = \"{id}\" frees id \"{id}\" a second time \
                                     (already released on line {first}); each id is released once"
                                ),
                            ));
                        }
                        *released = Some(p.action_line);
                        continue;
                    }
                    let later = events.iter().skip(k + 1).map(|l| &l.event).find(|l| {
                        matches!(&l.action,
                            Action::Lock { id: i, .. } | Action::Commit { id: i, .. }
                                if i == id && !auto_ids.contains(i))
                    });
                    return Err(match later {
                        Some(req) => self.src.error_at_line(
                            p.action_line,
                            format!(
                                "`release` = \"{id}\" at {at} s comes before its request \
                                 (line {}, at {} s); a release must take effect after its \
                                 lock_mib / commit_mib",
                                req.line,
                                secs_f64(req.at)
                            ),
                        ),
                        None => self.src.error_at_line(
                            p.action_line,
                            format!(
                                "`release` names unknown id \"{id}\" (no lock_mib or \
                                 commit_mib event has that id)"
                            ),
                        ),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `repeat_count` and `repeat_every_s` of an event: both or neither; `(count, every)`.
    fn repeat(&self, e: &Table<'_, '_>) -> Result<Option<(u64, f64)>, ScenarioError> {
        let count = e.bounded(
            "repeat_count",
            "occurrences",
            MAX_EXPANDED_EVENTS as u64,
            &format!("the limit of {MAX_EXPANDED_EVENTS} events"),
        )?;
        let every = e.seconds("repeat_every_s")?;
        match (count, every) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(e.err(
                "repeat_count",
                "`repeat_count` needs `repeat_every_s` in the same event",
            )),
            (None, Some(_)) => Err(e.err(
                "repeat_every_s",
                "`repeat_every_s` needs `repeat_count` in the same event",
            )),
            (Some(0), _) => Err(e.err(
                "repeat_count",
                "`repeat_count` must be at least 1 (the number of occurrences)",
            )),
            (Some(_), Some(p)) if secs(p) == Duration::ZERO => Err(e.err(
                "repeat_every_s",
                format!(
                    "`repeat_every_s` must be above 0 (got {})",
                    e.get("repeat_every_s")
                        .map(|v| e.written(v))
                        .unwrap_or_default()
                ),
            )),
            (Some(n), Some(p)) => Ok(Some((n, p))),
        }
    }

    /// `host_entry_status = { status = "notneeded" | "busy" | "reset", pages = N,
    /// on = "lock" | "unlock" }`.
    fn entry_status(&self, e: &Table<'_, '_>) -> Result<Action, ScenarioError> {
        let t = e
            .inline("host_entry_status", &["status", "pages", "on"])?
            .ok_or_else(|| e.missing("host_entry_status"))?;
        let name = t.string("status")?.ok_or_else(|| t.missing("status"))?;
        let status = ENTRY_STATUS_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                let names: Vec<&str> = ENTRY_STATUS_NAMES.iter().map(|(n, _)| *n).collect();
                t.err(
                    "status",
                    format!(
                        "unknown `status` \"{name}\" (expected {})",
                        names.join(", ")
                    ),
                )
            })?;
        let pages = t
            .uint("pages", "pages")?
            .ok_or_else(|| t.missing("pages"))?;
        let on = match t.string("on")?.as_deref() {
            None | Some("lock") => EntryDirection::Lock,
            Some("unlock") => EntryDirection::Unlock,
            Some(other) => {
                return Err(t.err(
                    "on",
                    format!("unknown `on` \"{other}\" (expected \"lock\" or \"unlock\")"),
                ));
            }
        };
        Ok(Action::HostEntryStatus { status, pages, on })
    }

    /// `host_target_after_locks = { locks = K, target_mib = M }`.
    fn target_after_locks(&self, e: &Table<'_, '_>) -> Result<Action, ScenarioError> {
        let t = e
            .inline("host_target_after_locks", &["locks", "target_mib"])?
            .ok_or_else(|| e.missing("host_target_after_locks"))?;
        let locks = t
            .uint("locks", "calls")?
            .ok_or_else(|| t.missing("locks"))?;
        if locks == 0 {
            return Err(t.err(
                "locks",
                "`locks` must be at least 1 (1 = the next LOCK call's reply)",
            ));
        }
        let target = t
            .mib("target_mib")?
            .ok_or_else(|| t.missing("target_mib"))?;
        Ok(Action::HostTargetAfterLocks { locks, target })
    }

    /// The `[[events]]`, in file order with their times, and the automatic ids given to
    /// requests without `id` (which no `release` may name).
    fn events(
        &self,
        top: &Table<'_, '_>,
        ram: Frames,
    ) -> Result<(Vec<Parsed>, Vec<String>), ScenarioError> {
        let Some(v) = top.get("events") else {
            return Ok((Vec::new(), Vec::new()));
        };
        let DeValue::Array(items) = v.get_ref() else {
            return Err(top.type_error("events", "an array of tables ([[events]])", v.get_ref()));
        };
        if items.len() > MAX_EVENTS {
            let line = items
                .get(MAX_EVENTS)
                .map_or(1, |item| self.src.line(item.span().start));
            return Err(self.src.error_at_line(
                line,
                format!(
                    "too many [[events]]: {} (the limit is {MAX_EVENTS}; this is the first one over it)",
                    items.len()
                ),
            ));
        }
        let mut known = vec![
            "at_s",
            "id",
            "kind",
            "partial_ok",
            "repeat_every_s",
            "repeat_count",
        ];
        known.extend(EVENT_ACTIONS);
        let mut ids: Vec<(String, usize)> = Vec::new();
        let mut auto: Vec<String> = Vec::new();
        // Ids of repeated requests: a repeated `release` of one releases its occurrences.
        let mut repeated_ids: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for item in items.iter() {
            let DeValue::Table(t) = item.get_ref() else {
                return Err(self.src.error(
                    &item.span(),
                    format!(
                        "`events` entries must be tables ([[events]]), not {}",
                        item.get_ref().type_str()
                    ),
                ));
            };
            let e = Table::new(&self.src, t, item.span(), "[[events]]", &known)?;
            let line = self.src.line(item.span().start);
            let at = e.seconds("at_s")?.ok_or_else(|| e.missing("at_s"))?;
            let mut present: Vec<(usize, &str)> = EVENT_ACTIONS
                .iter()
                .filter(|k| e.get(k).is_some())
                .map(|k| (e.key_span(k).start, *k))
                .collect();
            present.sort_unstable();
            let action_key = match present.as_slice() {
                [] => {
                    return Err(self.src.error_at_line(
                        line,
                        format!(
                            "[[events]] has no action (one of {})",
                            EVENT_ACTIONS.join(", ")
                        ),
                    ));
                }
                [(_, one)] => *one,
                [(_, first), (_, second), ..] => {
                    return Err(e.err(
                        second,
                        format!(
                            "[[events]] has two actions, `{first}` and `{second}` (one per event)"
                        ),
                    ));
                }
            };
            if action_key != "lock_mib" && e.get("kind").is_some() {
                return Err(e.err("kind", "`kind` needs `lock_mib` in the same event"));
            }
            if action_key != "lock_mib" && e.get("partial_ok").is_some() {
                return Err(e.err(
                    "partial_ok",
                    "`partial_ok` needs `lock_mib` in the same event",
                ));
            }
            let repeat = self.repeat(&e)?;
            if !matches!(action_key, "lock_mib" | "commit_mib") && e.get("id").is_some() {
                return Err(e.err(
                    "id",
                    "`id` names a `lock_mib` or `commit_mib` request; use `release = \"...\"` to free one",
                ));
            }
            let action = match action_key {
                "target_mib" => Action::Target(e.mib("target_mib")?.unwrap_or(Frames::ZERO)),
                "lock_mib" | "commit_mib" => {
                    let size = e.mib(action_key)?.unwrap_or(Frames::ZERO);
                    let kind = match e.string("kind")? {
                        None => PinKind::VirtualLock,
                        Some(k) => PinKind::from_name(&k).ok_or_else(|| {
                            let names: Vec<&str> = PinKind::ALL.iter().map(|k| k.name()).collect();
                            e.err(
                                "kind",
                                format!("unknown `kind` \"{k}\" (expected {})", names.join(", ")),
                            )
                        })?,
                    };
                    let label = if action_key == "lock_mib" {
                        kind.name()
                    } else {
                        "commit"
                    };
                    let id = match e.string("id")? {
                        Some(id) if id.trim().is_empty() => {
                            return Err(e.err("id", "`id` must not be empty"));
                        }
                        Some(id) if id.contains('#') => {
                            return Err(e.err(
                                "id",
                                format!(
                                    "`id` \"{id}\" contains `#`, which names the occurrences \
                                     of a repeated event"
                                ),
                            ));
                        }
                        Some(id) => {
                            if let Some((_, first)) = ids.iter().find(|(i, _)| *i == id) {
                                return Err(e.err(
                                    "id",
                                    format!("duplicate id \"{id}\" (first used on line {first})"),
                                ));
                            }
                            ids.push((id.clone(), line));
                            id
                        }
                        None => {
                            let id = format!("{label}@{line}");
                            auto.push(id.clone());
                            id
                        }
                    };
                    if repeat.is_some() && !auto.contains(&id) {
                        repeated_ids.push(id.clone());
                    }
                    if action_key == "lock_mib" {
                        let partial_ok = e.boolean("partial_ok")?.unwrap_or(false);
                        if partial_ok && !kind.may_be_partial() {
                            return Err(e.err(
                                "partial_ok",
                                format!(
                                    "`partial_ok` needs a `kind` that may be granted \
                                     partially (awe, driver-locked, nonpaged-pool), not \
                                     \"{}\"",
                                    kind.name()
                                ),
                            ));
                        }
                        Action::Lock {
                            id,
                            kind,
                            size,
                            partial_ok,
                        }
                    } else {
                        Action::Commit { id, size }
                    }
                }
                // Whether the id exists and comes before this release is checked once the
                // events are in time order (`Loader::check_releases`).
                "release" => Action::Release(e.string("release")?.unwrap_or_default()),
                "host_reset" => match e.boolean("host_reset")? {
                    Some(true) => Action::HostReset,
                    _ => {
                        return Err(e.err(
                            "host_reset",
                            "`host_reset` must be true (leave the event out otherwise)",
                        ));
                    }
                },
                "host_busy_calls" => {
                    Action::HostBusy(e.uint("host_busy_calls", "calls")?.unwrap_or(0))
                }
                "host_entry_status" => self.entry_status(&e)?,
                "host_target_after_locks" => self.target_after_locks(&e)?,
                "config" => {
                    let names: Vec<&str> = Param::ALL.iter().map(|p| p.name()).collect();
                    let Some(c) = e.subtable("config", &names)? else {
                        return Err(e.err("config", "`config` needs a table of registry values"));
                    };
                    let values = Self::registry_values(&c, ram)?;
                    if Param::ALL
                        .iter()
                        .all(|&p| values.get(p) == RawValue::Missing)
                    {
                        return Err(e.err(
                            "config",
                            "`config` changes nothing: name at least one registry value",
                        ));
                    }
                    Action::Config(values)
                }
                _ => Action::HostRefuse(e.uint("host_refuse_next", "pages")?.unwrap_or(0)),
            };
            let at_line = self.src.line(e.key_span("at_s").start);
            let action_line = self.src.line(e.key_span(action_key).start);
            let (count, every) = repeat.unwrap_or((1, 0.0));
            if out
                .len()
                .saturating_add(usize::try_from(count).unwrap_or(usize::MAX))
                > MAX_EXPANDED_EVENTS
            {
                return Err(self.src.error_at_line(
                    line,
                    format!(
                        "too many events once repeated events are expanded (the limit is \
                         {MAX_EXPANDED_EVENTS}; this event takes the total over it)"
                    ),
                ));
            }
            for k in 0..count {
                let at_k = at + k as f64 * every;
                let mut action = action.clone();
                if repeat.is_some() {
                    let n = k + 1;
                    match &mut action {
                        Action::Lock { id, .. } | Action::Commit { id, .. } => {
                            *id = format!("{id}#{n}");
                        }
                        _ => {}
                    }
                }
                out.push(Parsed {
                    at: at_k,
                    at_line,
                    action_line,
                    occurrence: repeat.map(|_| (k + 1, count)),
                    event: Event {
                        at: Instant::from_nanos(0).saturating_add(secs(at_k)),
                        line,
                        action,
                    },
                });
            }
        }
        // Automatic ids of repeated requests carry their occurrence too.
        let mut auto_expanded = Vec::with_capacity(auto.len());
        for p in &out {
            if let Action::Lock { id, .. } | Action::Commit { id, .. } = &p.event.action {
                let base = id.split('#').next().unwrap_or(id);
                if auto.iter().any(|a| a == base) && !auto_expanded.contains(id) {
                    auto_expanded.push(id.clone());
                }
            }
        }
        // A repeated release of a repeated request's id releases the same occurrence.
        for p in &mut out {
            if let (Some((n, _)), Action::Release(id)) = (p.occurrence, &mut p.event.action)
                && repeated_ids.contains(id)
            {
                *id = format!("{id}#{n}");
            }
        }
        let auto = auto_expanded;
        // An unnamed request's id is `<kind>@<line>`: no explicit id may take it.
        if let Some((id, line)) = ids.iter().find(|(id, _)| auto.contains(id)) {
            return Err(self.src.error_at_line(
                *line,
                format!(
                    "duplicate id \"{id}\" (the automatic id of the request without `id` on \
                     line {})",
                    id.rsplit('@').next().unwrap_or("?")
                ),
            ));
        }
        Ok((out, auto))
    }
}

/// An instant as seconds since the start of the run.
fn secs_f64(t: Instant) -> f64 {
    t.as_nanos() as f64 / 1e9
}

/// `s` seconds as a [`Duration`], to the nanosecond.
fn secs(s: f64) -> Duration {
    let ns = (s * 1e9).round();
    if ns.is_finite() && ns >= 0.0 && ns < u64::MAX as f64 {
        Duration::from_nanos(ns as u64)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests;
