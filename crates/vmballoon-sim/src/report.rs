//! What a run reports: the [`Summary`] (`--json`, the stdout table) and the
//! [`TimelineRow`]s (`--timeline` CSV), in the shapes `docs/scenario-format.md` fixes.
//!
//! Sizes are whole MiB, rounded down (the format's unit); times are seconds. Timings
//! derived from the cost model ([`crate::cost`]) are labelled *modelled* (`modelled_*`
//! keys, "(modelled)" in the table).
//!
//! `seconds_to_target` is measured from the host's request (the first `target_mib` event
//! asking for a balloon, `target_requested_at_s`) to the first poll at which the balloon
//! was within 2 MiB of its own goal, which `goal` names: `min(target, ceiling)` for
//! vmballoon, `target` (what the host asks, after its own cap) for a driver without a
//! ceiling. `goal_mib` is that goal when it was reached. `null` if the host never asked or
//! the balloon never got there.
//!
//! `min_resident_available_mib` is the lowest of the samples the timeline carries
//! (`resident_available_low_mib`, every instant before and after the driver ran), so the
//! summary, the CSV and the plot show the same minimum.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use vmballoon_core::policy::ClampReason;
use vmballoon_core::units::{Duration, Frames};

use crate::cost::CostMeter;

/// The summary of one run. The first fifteen fields are the keys `docs/scenario-format.md`
/// requires, in its order; the rest are extras.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// The scenario's name.
    pub scenario: String,
    /// `vmballoon` or `naive`.
    pub policy: String,
    /// Largest balloon size reached.
    pub max_balloon_mib: u64,
    /// Balloon size at the end (before unload).
    pub final_balloon_mib: u64,
    /// Host target at the end.
    pub final_target_mib: u64,
    /// The driver's ceiling at the end (`null` for `naive`).
    pub final_ceiling_mib: Option<u64>,
    /// The reason of the ceiling at the end (vmballoon), or what held the naive balloon
    /// below its target at its last tick (`allocation-failed`), or `null`.
    pub final_ceiling_reason: Option<String>,
    /// Lowest resident available memory sampled (the minimum of the timeline's
    /// `resident_available_low`: every instant, before and after the driver ran).
    pub min_resident_available_mib: u64,
    /// Failed attempts of guest `lock_mib` / `commit_mib` requests.
    pub guest_alloc_failures: u64,
    /// Balloon backdoor calls received by the host.
    pub hypercalls: u64,
    /// 4 KiB frames handed to the host.
    pub frames_locked: u64,
    /// 4 KiB frames taken back from the host.
    pub frames_unlocked: u64,
    /// Simulated seconds from the host's request (`target_requested_at_s`) until the
    /// balloon first came within 2 MiB of its goal (`goal`); `null` if the host never
    /// asked or the balloon never got there.
    pub seconds_to_target: Option<f64>,
    /// Extra: page traffic, `frames_locked` + `frames_unlocked` (every frame the host had to
    /// unmap or back again).
    pub frames_moved: u64,
    /// Extra: `frames_moved` per GiB of the final balloon; `null` when the balloon ends
    /// empty.
    pub frames_moved_per_final_gib: Option<f64>,
    /// Extra: simulated seconds during which `LowMemoryCondition` was signalled and the
    /// balloon had grown within the last poll interval (`docs/scenario-format.md`).
    pub low_memory_inflating_s: f64,
    /// Extra: the balloon's time-weighted mean over the run (MiB).
    pub mean_balloon_mib: f64,
    /// Extra: attempts of `partial_ok` requests that got some but not all of what was
    /// missing (not failures; the rest was retried).
    pub guest_short_grants: u64,
    /// Extra: the guest's `mdl_accounting` (`charged` or `not-charged`).
    pub mdl_accounting: String,
    /// Extra: working-set pages the guest trimmed over the run (MiB).
    pub guest_trimmed_mib: u64,
    /// Extra: modified pages the guest's modified page writer wrote (MiB).
    pub guest_written_mib: u64,
    /// Guest behaviour the host model rejected.
    pub protocol_violations: u64,
    /// Extra: breaches of the platform contract (the core's `PageAllocator` contract and
    /// the Windows memory manager's: a free of anything but a whole MDL it handed out, a
    /// unit freed while the host holds it, ...). Must be 0, like `protocol_violations`.
    pub contract_violations: u64,
    /// Frames allocated by the balloon and neither stored nor freed after unload.
    pub leaked_frames: u64,
    /// Extra: the run's length.
    pub duration_s: f64,
    /// Extra: driver ticks run (re-ticks for more work included).
    pub ticks: u64,
    /// Extra: wakes between polls on `LowMemoryCondition`.
    pub low_memory_wakes: u64,
    /// Extra: instants where the driver still had work after the per-instant tick bound.
    pub tick_bound_hits: u64,
    /// Extra: RESET answers the host gave.
    pub host_resets: u64,
    /// Extra: BUSY answers the host gave.
    pub host_busy_answers: u64,
    /// Extra: pages the host refused.
    pub host_refused_pages: u64,
    /// Extra: frames still charged to the balloon after unload (must be 0).
    pub balloon_frames_after_shutdown: u64,
    /// Extra: the first violations (protocol, then contract), with their times.
    pub violations: Vec<String>,
    /// Extra: inconsistencies of the simulator's own models (must be empty).
    pub model_errors: Vec<String>,
    /// Extra: host calls by `command/answer`.
    pub calls_by_command: BTreeMap<String, u64>,
    /// Extra: the driver's own counters.
    pub policy_counters: BTreeMap<String, u64>,
    /// Extra: what `seconds_to_target` measures the balloon against: `min(target,
    /// ceiling)` (vmballoon) or `target` (drivers without a ceiling).
    pub goal: String,
    /// Extra: the goal when the balloon reached it; `null` if it never did.
    pub goal_mib: Option<u64>,
    /// Extra: when the host first asked for a balloon (the first `target_mib` event with
    /// a non-zero target, after the host's cap); `null` if it never did.
    pub target_requested_at_s: Option<f64>,
    /// Extra: like `seconds_to_target`, but to when the modelled work of that tick ended
    /// (the time the balloon actually got there under the cost model); `null` if never.
    pub modelled_seconds_to_target: Option<f64>,
    /// Extra: modelled time spent on balloon work over the whole run.
    pub modelled_busy_seconds: f64,
    /// Extra: that time by kind of work (calls, host-lock, alloc, ...).
    pub modelled_cost_seconds: BTreeMap<String, f64>,
    /// Extra: pageable memory the balloon's waiting allocations had paged out.
    pub balloon_trimmed_mib: u64,
    /// Extra: the largest balloon recorded (frames), at which `peak_chunks` was taken.
    pub peak_balloon_frames: u64,
    /// Extra: the stored chunks (one MDL each in the driver) at the largest balloon.
    pub peak_chunks: Vec<ChunkCount>,
    /// Extra: what became of each `lock_mib` / `commit_mib` request.
    pub guest_requests: Vec<RequestReport>,
}

/// Stored balloon chunks of one page size and MDL capacity.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ChunkCount {
    /// `4k` or `2m`.
    pub page_size: String,
    /// Frames the chunk's MDL was built for (its PFN array's capacity).
    pub mdl_frames: u64,
    /// Chunks of this kind.
    pub chunks: u64,
}

/// What became of one guest request.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RequestReport {
    /// Its id.
    pub id: String,
    /// Pinned memory (`lock_mib`) rather than pageable commit.
    pub pinned: bool,
    /// When it was made (simulated seconds).
    pub asked_at_s: f64,
    /// Failed attempts.
    pub failures: u64,
    /// Short grants (`partial_ok` requests only).
    pub short_grants: u64,
    /// When it was first satisfied in full, if it was.
    pub satisfied_at_s: Option<f64>,
}

impl Summary {
    /// The summary as one pretty-printed JSON object.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// One row of the timeline: the state at an instant at which the driver ran.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimelineRow {
    /// Simulated time: the instant (poll, wake or continuation) at which the driver ran.
    pub t: Duration,
    /// Modelled time at which that instant's work ended (`t` plus the modelled cost).
    pub t_end: Duration,
    /// Modelled time spent on balloon work so far, by kind (running totals).
    pub cost: CostMeter,
    /// The host's target (what TARGET answers now).
    pub target: Frames,
    /// Balloon size.
    pub balloon: Frames,
    /// vmballoon's safe ceiling for the state now (`None` for naive).
    pub ceiling: Option<Frames>,
    /// The bound that sets the ceiling.
    pub ceiling_reason: Option<ClampReason>,
    /// vmballoon's ceiling without the available-memory term, which only paces inflation:
    /// where the balloon settles once Windows has trimmed what it can (`None` for the
    /// peers).
    pub settled_ceiling: Option<Frames>,
    /// Resident available memory (after the driver ran).
    pub resident_available: Frames,
    /// The lowest resident available memory sampled since the previous row, this row's
    /// instant included (before and after the driver ran): dips that a tick repaired.
    pub resident_available_low: Frames,
    /// Available memory (free frames).
    pub available: Frames,
    /// Pinned memory other than the balloon (OS nonpaged + pinned requests).
    pub pinned: Frames,
    /// Commit charge.
    pub committed: Frames,
    /// Commit limit.
    pub commit_limit: Frames,
    /// `LowMemoryCondition`.
    pub low_memory: bool,
    /// Host calls so far.
    pub hypercalls: u64,
    /// Guest allocation failures so far.
    pub guest_alloc_failures: u64,
    /// What held back or reversed the balloon this tick.
    pub reason: Option<ClampReason>,
    /// The driver was woken by `LowMemoryCondition`.
    pub woke: bool,
    /// Host calls made at this instant.
    pub calls: u64,
}

/// The CSV header: the format's columns, then extras.
pub const TIMELINE_HEADER: &str = "t_s,target_mib,balloon_mib,ceiling_mib,resident_available_mib,\
pinned_mib,committed_mib,commit_limit_mib,low_memory,hypercalls,guest_alloc_failures,\
available_mib,ceiling_reason,reason,low_memory_wake,modelled_end_s,resident_available_low_mib,\
settled_ceiling_mib";

/// The timeline as CSV: [`TIMELINE_HEADER`] and one line per row.
#[must_use]
pub fn timeline_csv(rows: &[TimelineRow]) -> String {
    let mut out = String::with_capacity(rows.len().saturating_mul(96).saturating_add(256));
    out.push_str(TIMELINE_HEADER);
    out.push('\n');
    for r in rows {
        let ns = r.t.as_nanos();
        let _ = writeln!(
            out,
            "{}.{:03},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.6},{},{}",
            ns / 1_000_000_000,
            (ns / 1_000_000) % 1000,
            r.target.mib_floor(),
            r.balloon.mib_floor(),
            r.ceiling
                .map(|c| c.mib_floor().to_string())
                .unwrap_or_default(),
            r.resident_available.mib_floor(),
            r.pinned.mib_floor(),
            r.committed.mib_floor(),
            r.commit_limit.mib_floor(),
            u8::from(r.low_memory),
            r.hypercalls,
            r.guest_alloc_failures,
            r.available.mib_floor(),
            r.ceiling_reason.map(ClampReason::name).unwrap_or_default(),
            r.reason.map(ClampReason::name).unwrap_or_default(),
            u8::from(r.woke),
            r.t_end.as_nanos() as f64 / 1e9,
            r.resident_available_low.mib_floor(),
            r.settled_ceiling
                .map(|c| c.mib_floor().to_string())
                .unwrap_or_default(),
        );
    }
    out
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A time to the goal, or why there is none: the host never asked, or the balloon never
/// got there.
fn time_to_goal(s: &Summary, t: Option<String>) -> String {
    match (s.target_requested_at_s, t) {
        (None, _) => "no request".to_owned(),
        (Some(_), None) => "never".to_owned(),
        (Some(_), Some(t)) => t,
    }
}

/// One row of the stdout table: its label and how to format a summary's cell.
type TableRow = (&'static str, fn(&Summary) -> String);

/// The stdout table: one column per summary, the format's keys as rows.
#[must_use]
pub fn table(title: &str, description: &str, runs: &[&Summary]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    for line in wrap(description, 88) {
        let _ = writeln!(out, "  {line}");
    }
    out.push('\n');
    let rows: [TableRow; 19] = [
        ("max balloon (MiB)", |s| s.max_balloon_mib.to_string()),
        ("final balloon (MiB)", |s| s.final_balloon_mib.to_string()),
        ("final target (MiB)", |s| s.final_target_mib.to_string()),
        ("final ceiling (MiB)", |s| opt(s.final_ceiling_mib)),
        ("ceiling reason", |s| opt(s.final_ceiling_reason.clone())),
        ("min resident available (MiB)", |s| {
            s.min_resident_available_mib.to_string()
        }),
        ("guest alloc failures", |s| {
            s.guest_alloc_failures.to_string()
        }),
        ("balloon goal", |s| s.goal.clone()),
        ("seconds to goal after request", |s| {
            time_to_goal(s, s.seconds_to_target.map(|t| format!("{t:.1}")))
        }),
        ("seconds to goal (modelled)", |s| {
            time_to_goal(s, s.modelled_seconds_to_target.map(|t| format!("{t:.3}")))
        }),
        ("balloon work (s, modelled)", |s| {
            format!("{:.3}", s.modelled_busy_seconds)
        }),
        ("hypercalls", |s| s.hypercalls.to_string()),
        ("frames locked", |s| s.frames_locked.to_string()),
        ("frames unlocked", |s| s.frames_unlocked.to_string()),
        ("frames moved", |s| s.frames_moved.to_string()),
        ("frames moved per final GiB", |s| {
            opt(s.frames_moved_per_final_gib.map(|v| format!("{v:.0}")))
        }),
        ("low memory while inflating (s)", |s| {
            format!("{:.1}", s.low_memory_inflating_s)
        }),
        ("protocol violations", |s| s.protocol_violations.to_string()),
        ("leaked frames", |s| s.leaked_frames.to_string()),
    ];
    let label_w = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let cells: Vec<Vec<String>> = runs
        .iter()
        .map(|s| rows.iter().map(|(_, f)| f(s)).collect())
        .collect();
    let col_w: Vec<usize> = runs
        .iter()
        .zip(&cells)
        .map(|(s, c)| {
            c.iter()
                .map(String::len)
                .chain([s.policy.len()])
                .max()
                .unwrap_or(0)
                .max(10)
        })
        .collect();
    let _ = write!(out, "{:label_w$}", "");
    for (s, w) in runs.iter().zip(&col_w) {
        let _ = write!(out, "  {:>w$}", s.policy);
    }
    out.push('\n');
    for (i, (label, _)) in rows.iter().enumerate() {
        let _ = write!(out, "{label:label_w$}");
        for (c, w) in cells.iter().zip(&col_w) {
            let _ = write!(out, "  {:>w$}", c.get(i).map_or("", String::as_str));
        }
        out.push('\n');
    }
    out
}

/// Splits `text` into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
