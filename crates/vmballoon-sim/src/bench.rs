//! The benchmark suite behind `cargo xtask bench`: every driver (vmballoon, `linux-vmw`,
//! `ovt-classic`, naive) on the same scenarios in one run, per host capability set
//! (legacy, batched 4 KiB, batched 2 MiB), and the numbers the report is made of.
//!
//! * `scenarios/bench/inflate-8g-*.toml`: an idle 16 GiB guest; the host asks for 8 GiB
//!   at [`INFLATE_AT`], for nothing at [`DEFLATE_AT`]: backdoor calls per GiB inflated and
//!   deflated, modelled time to inflate 8 GiB, the MDL bookkeeping at the peak.
//! * `scenarios/bench/give-back-2g-*.toml`: the guest pins 2 GiB more at [`GIVE_BACK_AT`]
//!   (and the host lowers its target by 2 GiB at the same moment): modelled time until the
//!   balloon has given 2 GiB back, and the pin's failed attempts.
//! * the pinned-memory scenarios of `scenarios/` ([`PINNED`]), each run with the host's
//!   capabilities replaced by each set: guest allocation failures.
//! * `scenarios/bench/pinned-oscillation.toml`: a driver locks and frees 1 GiB every 6 s
//!   for three minutes on an 8 GiB guest whose host wants 7 GiB (batched 2 MiB host only):
//!   page traffic (frames locked + unlocked), per GiB of the final balloon, guest failures
//!   and the mean balloon, against the undamped engine's figures recorded in
//!   [`OSCILLATION_TODAY`].
//!
//! Every timing is modelled ([`crate::cost`]); call counts, failures and bookkeeping are
//! exact counts of the simulation. The report ([`markdown`]) and the charts ([`charts`])
//! are written by the `vmballoon-bench` binary, which `cargo xtask bench` runs after
//! measuring the core's CPU per frame (criterion, callgrind: [`CpuMeasurements`]).

mod budgets;
mod charts;
mod markdown;

pub use budgets::budgets;
pub use charts::charts;
pub use markdown::{CHARTS, markdown};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use vmballoon_core::protocol::Capabilities;
use vmballoon_core::units::{Frames, PageSize};

use crate::cost::{CostMeter, CostModel, PoolModel, mdl_bytes};
use crate::driver::DriverKind;
use crate::report::{Summary, TimelineRow};
use crate::runner::{RunResult, run_with};
use crate::scenario::Scenario;

/// Frames in one GiB.
pub const GIB_FRAMES: u64 = 262_144;

/// When the inflate benchmark's host asks for 8 GiB (seconds).
pub const INFLATE_AT: f64 = 5.0;
/// When it asks for nothing (seconds).
pub const DEFLATE_AT: f64 = 200.0;
/// The inflate benchmark's target.
pub const INFLATE_TARGET: Frames = Frames::from_mib(8192);
/// When the give-back benchmark's guest pins 2 GiB more (seconds).
pub const GIVE_BACK_AT: f64 = 200.0;
/// How much the give-back benchmark's balloon must give back.
pub const GIVE_BACK: Frames = Frames::from_mib(2048);
/// The give-back benchmark's pin request.
pub const GIVE_BACK_PIN: &str = "db-grow";
/// Within this many frames counts as "reached" (the 2 MiB slack: Linux's 2 MiB pages
/// overshoot by up to 511 frames, and its single-page deflate stops 511 frames above).
pub const REACHED_SLACK: u64 = 512;

/// The oscillation benchmark's scenario (in `scenarios/bench/`).
pub const OSCILLATION_FILE: &str = "pinned-oscillation.toml";

/// The capability set the oscillation benchmark runs on (index into [`CAP_SETS`]: batched
/// 2 MiB, the scenario's own).
pub const OSCILLATION_CAP: usize = 2;

/// The undamped engine on `pinned-oscillation` (the engine before damping, on the guest
/// model with aged trimming through the modified list; measured with `vmballoon-sim
/// scenarios/bench/pinned-oscillation.toml --policy vmballoon --json`): frames moved and
/// the mean balloon (MiB). The churn budget is ≥ 5 × less traffic than this, with the
/// mean balloon within 10 % of it.
pub const OSCILLATION_TODAY: (u64, f64) = (17_344_512, 5_778.0);

/// A host capability set the suite runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapSet {
    /// Short key (file-name suffix).
    pub key: &'static str,
    /// Name in the report.
    pub label: &'static str,
    /// What START grants (`None`: a legacy host answering START with 0).
    pub capabilities: Option<Capabilities>,
    /// The largest page the protocol moves on it.
    pub page: PageSize,
    /// Entries per page-moving call at best.
    pub per_call: u64,
}

impl CapSet {
    /// The call floor: page-moving backdoor calls per GiB at best (1 call per 512 entries
    /// when batched; one per 4 KiB page on a legacy host).
    #[must_use]
    pub fn floor_calls_per_gib(&self) -> f64 {
        let pages = GIB_FRAMES / self.page.frames().get().max(1);
        pages as f64 / self.per_call.max(1) as f64
    }

    /// Whether page-moving calls are batched on this host.
    #[must_use]
    pub const fn batched(&self) -> bool {
        self.per_call > 1
    }
}

/// The three capability sets, in report order.
pub const CAP_SETS: [CapSet; 3] = [
    CapSet {
        key: "legacy",
        label: "legacy (single-page LOCK/UNLOCK)",
        capabilities: None,
        page: PageSize::Small,
        per_call: 1,
    },
    CapSet {
        key: "4k",
        label: "batched 4 KiB",
        capabilities: Some(Capabilities::BASIC.union(Capabilities::BATCHED)),
        page: PageSize::Small,
        per_call: 512,
    },
    CapSet {
        key: "2m",
        label: "batched 2 MiB",
        capabilities: Some(
            Capabilities::BASIC
                .union(Capabilities::BATCHED)
                .union(Capabilities::BATCHED_2M),
        ),
        page: PageSize::Large,
        per_call: 512,
    },
];

/// The pinned-memory scenarios of `scenarios/` and whether vmballoon can keep the guest
/// free of allocation failures in each (as `tests/scenarios.rs` records it).
pub const PINNED: [(&str, bool); 7] = [
    ("kb-340369.toml", true),
    ("pinned-grows.toml", true),
    ("pinned-released.toml", true),
    ("small-pagefile.toml", true),
    ("large-pages.toml", true),
    ("large-pages-fragmentation.toml", true),
    ("big-guest-16g.toml", true),
];

/// What a run measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BenchKind {
    /// `inflate-8g-*`.
    Inflate,
    /// `give-back-2g-*`.
    GiveBack,
    /// A pinned-memory scenario (file name), and whether it is satisfiable.
    Pinned(String, bool),
    /// `pinned-oscillation`.
    Oscillation,
}

/// One run of the suite.
#[derive(Clone, Debug)]
pub struct BenchRun {
    /// What it measures.
    pub kind: BenchKind,
    /// Index into [`CAP_SETS`].
    pub cap: usize,
    /// The driver.
    pub policy: DriverKind,
    /// The run.
    pub result: RunResult,
}

/// One run to do.
#[derive(Clone, Debug)]
pub struct Job {
    /// What it measures.
    pub kind: BenchKind,
    /// Index into [`CAP_SETS`].
    pub cap: usize,
    /// The driver.
    pub policy: DriverKind,
    /// The scenario (capabilities already set).
    pub scenario: Scenario,
}

/// Everything the suite ran.
#[derive(Clone, Debug)]
pub struct Suite {
    /// The cost model of every run.
    pub cost: CostModel,
    /// Every run, in job order.
    pub runs: Vec<BenchRun>,
}

fn load(path: &Path) -> Result<Scenario, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    Scenario::parse(&text, &name).map_err(|e| e.to_string())
}

/// The suite's jobs from the scenario directory (`scenarios/`, with `bench/` in it): every
/// driver on every benchmark scenario and every capability set of every pinned-memory
/// scenario.
///
/// # Errors
/// A scenario file that is missing or does not parse.
pub fn jobs(scenarios: &Path) -> Result<Vec<Job>, String> {
    let mut out = Vec::new();
    for (cap, set) in CAP_SETS.iter().enumerate() {
        for (kind, stem) in [
            (BenchKind::Inflate, "inflate-8g"),
            (BenchKind::GiveBack, "give-back-2g"),
        ] {
            let file = scenarios
                .join("bench")
                .join(format!("{stem}-{}.toml", set.key));
            let scenario = load(&file)?;
            if scenario.host.capabilities != set.capabilities {
                return Err(format!(
                    "{}: [host] capabilities do not match the {} set",
                    file.display(),
                    set.key
                ));
            }
            for policy in DriverKind::ALL {
                out.push(Job {
                    kind: kind.clone(),
                    cap,
                    policy,
                    scenario: scenario.clone(),
                });
            }
        }
    }
    let file = scenarios.join("bench").join(OSCILLATION_FILE);
    let scenario = load(&file)?;
    if scenario.host.capabilities
        != CAP_SETS
            .get(OSCILLATION_CAP)
            .and_then(|c| c.capabilities)
            .map(Some)
            .unwrap_or_default()
    {
        return Err(format!(
            "{}: [host] capabilities are not the batched 2 MiB set",
            file.display()
        ));
    }
    for policy in DriverKind::ALL {
        out.push(Job {
            kind: BenchKind::Oscillation,
            cap: OSCILLATION_CAP,
            policy,
            scenario: scenario.clone(),
        });
    }
    for (file, satisfiable) in PINNED {
        let base = load(&scenarios.join(file))?;
        for (cap, set) in CAP_SETS.iter().enumerate() {
            let mut scenario = base.clone();
            scenario.host.capabilities = set.capabilities;
            for policy in DriverKind::ALL {
                out.push(Job {
                    kind: BenchKind::Pinned(file.to_owned(), satisfiable),
                    cap,
                    policy,
                    scenario: scenario.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Runs `jobs` on `threads` threads (each run is independent and deterministic), in job
/// order.
#[must_use]
pub fn run_suite(jobs: Vec<Job>, cost: CostModel, threads: usize) -> Suite {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, BenchRun)>> = Mutex::new(Vec::with_capacity(jobs.len()));
    let jobs = &jobs;
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let result = run_with(&job.scenario, job.policy, cost);
                    let run = BenchRun {
                        kind: job.kind.clone(),
                        cap: job.cap,
                        policy: job.policy,
                        result,
                    };
                    if let Ok(mut d) = done.lock() {
                        d.push((i, run));
                    }
                }
            });
        }
    });
    let mut runs = done.into_inner().unwrap_or_default();
    runs.sort_by_key(|(i, _)| *i);
    Suite {
        cost,
        runs: runs.into_iter().map(|(_, r)| r).collect(),
    }
}

impl Suite {
    /// The run of `policy` for `kind` on capability set `cap`.
    #[must_use]
    pub fn find(&self, kind: &BenchKind, cap: usize, policy: DriverKind) -> Option<&BenchRun> {
        self.runs
            .iter()
            .find(|r| &r.kind == kind && r.cap == cap && r.policy == policy)
    }
}

fn secs(d: vmballoon_core::units::Duration) -> f64 {
    d.as_nanos() as f64 / 1e9
}

/// The last row strictly before `at` seconds.
fn last_before(rows: &[TimelineRow], at: f64) -> Option<&TimelineRow> {
    rows.iter().rfind(|r| secs(r.t) < at)
}

/// The first row at or after `at` seconds that satisfies `f`.
fn first_from(
    rows: &[TimelineRow],
    at: f64,
    f: impl Fn(&TimelineRow) -> bool,
) -> Option<&TimelineRow> {
    rows.iter().find(|r| secs(r.t) >= at && f(r))
}

/// Page-moving calls of a run by direction: `(lock, unlock)`, every answer counted.
#[must_use]
pub fn page_calls(s: &Summary) -> (u64, u64) {
    let mut lock = 0u64;
    let mut unlock = 0u64;
    for (key, n) in &s.calls_by_command {
        let cmd = key.split('/').next().unwrap_or("");
        match cmd {
            "lock" | "batched-lock" | "batched-2m-lock" => lock = lock.saturating_add(*n),
            "unlock" | "batched-unlock" | "batched-2m-unlock" => {
                unlock = unlock.saturating_add(*n);
            }
            _ => {}
        }
    }
    (lock, unlock)
}

/// One phase (inflate to 8 GiB, or deflate to 0) of the inflate benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Phase {
    /// Modelled seconds from the host's request to the end of the work that reached it.
    pub modelled_s: Option<f64>,
    /// Simulated poll time: seconds from the request to the poll whose work reached it.
    pub poll_s: Option<f64>,
    /// Every backdoor call from the request until it was reached (TARGET included).
    pub calls: Option<u64>,
    /// Page-moving calls (LOCK family for inflate, UNLOCK family for deflate) in the run.
    pub page_calls: u64,
    /// GiB moved in that direction in the run.
    pub gib: f64,
    /// Modelled time by kind of work from the request until it was reached.
    pub cost: CostMeter,
}

impl Phase {
    /// Page-moving calls per GiB.
    #[must_use]
    pub fn page_calls_per_gib(&self) -> Option<f64> {
        (self.gib > 0.0).then(|| self.page_calls as f64 / self.gib)
    }

    /// Every call (TARGET, START, GUEST_ID included) per GiB, up to the target.
    #[must_use]
    pub fn calls_per_gib(&self) -> Option<f64> {
        match self.calls {
            Some(c) if self.gib > 0.0 => Some(c as f64 / self.gib),
            _ => None,
        }
    }
}

fn phase(rows: &[TimelineRow], at: f64, reached: impl Fn(&TimelineRow) -> bool) -> Phase {
    let before = last_before(rows, at);
    let calls_before = before.map_or(0, |r| r.hypercalls);
    let cost_before = before.map_or_else(CostMeter::default, |r| r.cost);
    let hit = first_from(rows, at, reached);
    Phase {
        modelled_s: hit.map(|r| secs(r.t_end) - at),
        poll_s: hit.map(|r| secs(r.t) - at),
        calls: hit.map(|r| r.hypercalls.saturating_sub(calls_before)),
        cost: hit.map_or_else(CostMeter::default, |r| r.cost.since(&cost_before)),
        ..Phase::default()
    }
}

/// The inflate benchmark's figures for one run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct InflateMetrics {
    /// 0 → 8 GiB.
    pub inflate: Phase,
    /// 8 GiB → 0.
    pub deflate: Phase,
}

/// The inflate benchmark's figures.
#[must_use]
pub fn inflate_metrics(r: &RunResult) -> InflateMetrics {
    let s = &r.summary;
    let near = |a: Frames, b: Frames| a.max(b).saturating_sub(a.min(b)).get() <= REACHED_SLACK;
    let mut inflate = phase(&r.timeline, INFLATE_AT, |row| {
        near(row.balloon, INFLATE_TARGET)
    });
    let mut deflate = phase(&r.timeline, DEFLATE_AT, |row| row.balloon.is_zero());
    let (lock, unlock) = page_calls(s);
    inflate.page_calls = lock;
    inflate.gib = s.frames_locked as f64 / GIB_FRAMES as f64;
    deflate.page_calls = unlock;
    deflate.gib = s.frames_unlocked as f64 / GIB_FRAMES as f64;
    InflateMetrics { inflate, deflate }
}

/// The give-back benchmark's figures for one run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GiveBackMetrics {
    /// Balloon before the pin (MiB).
    pub before_mib: u64,
    /// Modelled seconds from the pin until the balloon had given back 2 GiB.
    pub modelled_s: Option<f64>,
    /// Simulated poll time of the same.
    pub poll_s: Option<f64>,
    /// Failed attempts of the pin.
    pub pin_failures: u64,
    /// Seconds from the pin until it succeeded (simulated; attempts are 1 s apart).
    pub pin_satisfied_s: Option<f64>,
    /// Guest allocation failures in the whole run.
    pub failures: u64,
}

/// The give-back benchmark's figures.
#[must_use]
pub fn give_back_metrics(r: &RunResult) -> GiveBackMetrics {
    let before = last_before(&r.timeline, GIVE_BACK_AT).map_or(Frames::ZERO, |row| row.balloon);
    let goal = before
        .saturating_sub(GIVE_BACK)
        .saturating_add(Frames::new(REACHED_SLACK));
    let hit = if before >= GIVE_BACK {
        first_from(&r.timeline, GIVE_BACK_AT, |row| row.balloon <= goal)
    } else {
        None
    };
    let pin = r
        .summary
        .guest_requests
        .iter()
        .find(|q| q.id == GIVE_BACK_PIN);
    GiveBackMetrics {
        before_mib: before.mib_floor(),
        modelled_s: hit.map(|row| secs(row.t_end) - GIVE_BACK_AT),
        poll_s: hit.map(|row| secs(row.t) - GIVE_BACK_AT),
        pin_failures: pin.map_or(0, |q| q.failures),
        pin_satisfied_s: pin.and_then(|q| q.satisfied_at_s).map(|t| t - GIVE_BACK_AT),
        failures: r.summary.guest_alloc_failures,
    }
}

/// The oscillation benchmark's figures for one run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OscillationMetrics {
    /// Frames locked + unlocked.
    pub frames_moved: u64,
    /// Per GiB of the final balloon (`None`: it ended empty).
    pub per_final_gib: Option<f64>,
    /// Guest allocation failures.
    pub failures: u64,
    /// The balloon's time-weighted mean (MiB).
    pub mean_balloon_mib: f64,
    /// The final balloon (MiB).
    pub final_mib: u64,
    /// Seconds with `LowMemoryCondition` signalled while the balloon inflated.
    pub low_memory_inflating_s: f64,
}

/// The oscillation benchmark's figures.
#[must_use]
pub fn oscillation_metrics(r: &RunResult) -> OscillationMetrics {
    let s = &r.summary;
    OscillationMetrics {
        frames_moved: s.frames_moved,
        per_final_gib: s.frames_moved_per_final_gib,
        failures: s.guest_alloc_failures,
        mean_balloon_mib: s.mean_balloon_mib,
        final_mib: s.final_balloon_mib,
        low_memory_inflating_s: s.low_memory_inflating_s,
    }
}

/// The driver's fixed nonpaged bookkeeping besides the units (`src/pages.rs`): the staging
/// array of one batch (512 pointers) and the parking array (`PARK_CAPACITY` entries of a
/// pointer and a 64-byte page mask), allocated at start.
pub const FIXED_BOOKKEEPING_BYTES: [u64; 2] = [
    512 * 8,
    vmballoon_core::platform::PARK_CAPACITY as u64 * (8 + 64),
];

/// The driver's own list node per unit (an MDL is never modified, so units are not chained
/// through `MDL.Next`): the next pointer and the MDL pointer.
pub const UNIT_NODE_BYTES: u64 = 16;

/// Nonpaged bookkeeping of a balloon in the driver's MDL layout.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bookkeeping {
    /// Balloon size it was taken at (GiB).
    pub balloon_gib: f64,
    /// Chunk MDLs.
    pub chunks: u64,
    /// Bytes of the chunk MDLs.
    pub chunk_bytes: u64,
    /// Bytes of the fixed arrays (staging and parking).
    pub fixed_bytes: u64,
    /// Everything per ballooned GiB.
    pub per_gib: f64,
    /// Overhead over the floor (8 bytes per 4 KiB frame), in percent.
    pub over_floor_pct: f64,
}

/// The floor: 8 bytes per 4 KiB frame, 2 MiB per GiB.
pub const BOOKKEEPING_FLOOR_PER_GIB: f64 = (GIB_FRAMES * 8) as f64;

/// The bookkeeping at a run's largest balloon, under `pool`: one MDL per stored unit
/// (header 0x30 + 8 bytes per frame) and its list node, plus the fixed staging and parking
/// arrays.
#[must_use]
pub fn bookkeeping(s: &Summary, pool: PoolModel) -> Option<Bookkeeping> {
    if s.peak_balloon_frames == 0 {
        return None;
    }
    let mut chunks = 0u64;
    let mut chunk_bytes = 0u64;
    for c in &s.peak_chunks {
        chunks = chunks.saturating_add(c.chunks);
        let unit = pool
            .bytes(mdl_bytes(c.mdl_frames))
            .saturating_add(pool.bytes(UNIT_NODE_BYTES));
        chunk_bytes = chunk_bytes.saturating_add(unit.saturating_mul(c.chunks));
    }
    let fixed_bytes = FIXED_BOOKKEEPING_BYTES
        .iter()
        .map(|&b| pool.bytes(b))
        .sum::<u64>();
    let balloon_gib = s.peak_balloon_frames as f64 / GIB_FRAMES as f64;
    let per_gib = (chunk_bytes.saturating_add(fixed_bytes)) as f64 / balloon_gib;
    Some(Bookkeeping {
        balloon_gib,
        chunks,
        chunk_bytes,
        fixed_bytes,
        per_gib,
        over_floor_pct: (per_gib / BOOKKEEPING_FLOOR_PER_GIB - 1.0) * 100.0,
    })
}

/// The core's CPU per frame, measured by `cargo xtask bench` (criterion and callgrind on
/// `vmballoon-core`'s minimal-cost platform, a 1 GiB workload).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuMeasurements {
    /// Criterion median per workload (ns per 1 GiB run), keyed `inflate-4k`, `deflate-4k`,
    /// `inflate-2m`, `deflate-2m`.
    pub criterion_ns: BTreeMap<String, f64>,
    /// Callgrind instructions (Ir) of the measured part, current tree, same keys.
    pub ir_current: BTreeMap<String, u64>,
    /// The same before the per-frame cut (the baseline tree), same keys.
    pub ir_baseline: BTreeMap<String, u64>,
    /// What the current tree is (a commit and whether the work tree was dirty).
    pub current_label: String,
    /// What the baseline tree is.
    pub baseline_label: String,
    /// Frames per workload (1 GiB: 262,144).
    pub frames: u64,
}

/// The per-frame figures the lead measured before and after the cut (commit 4e80fec,
/// "cut per-frame instructions"), 1 GiB workload: `(key, before, after)` Ir per frame.
pub const LEAD_IR_PER_FRAME: [(&str, f64, f64); 2] =
    [("inflate-4k", 83.5, 62.2), ("deflate-4k", 76.2, 65.8)];

impl CpuMeasurements {
    /// Criterion median ns per frame for `key`.
    #[must_use]
    pub fn ns_per_frame(&self, key: &str) -> Option<f64> {
        let frames = self.frames.max(1) as f64;
        self.criterion_ns.get(key).map(|ns| ns / frames)
    }

    /// Ir per frame for `key` (current tree, or the baseline).
    #[must_use]
    pub fn ir_per_frame(&self, key: &str, baseline: bool) -> Option<f64> {
        let map = if baseline {
            &self.ir_baseline
        } else {
            &self.ir_current
        };
        let frames = self.frames.max(1) as f64;
        map.get(key).map(|&ir| ir as f64 / frames)
    }
}

/// A performance budget (README, "Performance"), next to the measured value.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    /// What is budgeted.
    pub name: String,
    /// The goal.
    pub goal: String,
    /// What was measured.
    pub measured: String,
    /// Met, not met, or not measured (`None`).
    pub met: Option<bool>,
    /// Why, in one or two sentences.
    pub reason: String,
}

#[cfg(test)]
mod tests;
