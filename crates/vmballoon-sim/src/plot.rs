//! `--svg`: the timeline drawn with plotters' SVG backend (no system fonts needed: the
//! SVG backend writes text as `<text>` elements, and plotters' built-in size estimate lays
//! it out).
//!
//! The plot shows, over time (s) in MiB: the host target, the balloon, the safe ceiling,
//! pinned memory and resident available memory of the main run; with a comparison run
//! (the naive balloon), its balloon and resident available memory dashed. On top:
//!
//! * **failures**: a cross near the time axis at each row where a run's guest allocation
//!   failures grew, for every run drawn (one colour and height per run);
//! * **events**: each scenario event (host request, guest lock or commit, release, host
//!   reset / BUSY / refusals) as a triangle on the time axis and a dotted vertical line,
//!   labelled at the top (events closer than a label's width share one label);
//! * the **ceiling** is a wide pale band drawn under the balloon, so the balloon stays
//!   visible where it equals the ceiling;
//! * **resident available** is drawn through each row's low-water sample
//!   ([`TimelineRow::resident_available_low`]) as well as its value, so a dip repaired
//!   within a tick shows, and the lowest point drawn is the summary's
//!   `min_resident_available_mib`.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::TimelineRow;
use crate::scenario::{Action, Scenario};

/// Reads one value (MiB) of a row, if the row has it.
type Pick = fn(&TimelineRow) -> Option<f64>;

/// Plot size in pixels.
const SIZE: (u32, u32) = (1100, 680);

/// The colour of the main run's failure crosses (crimson: not the pinned line's red).
pub const FAILURE_MAIN: RGBColor = RGBColor(220, 20, 60);

/// The colour of the comparison run's failure crosses (its balloon's purple).
pub const FAILURE_COMPARE: RGBColor = RGBColor(140, 60, 170);

/// Characters of an event label at most (the labels hang from the top of the plot).
const LABEL_CHARS: usize = 26;

/// Pixels between two event lines below which they share one label.
const LABEL_GAP_PX: i32 = 15;

fn mib(f: vmballoon_core::units::Frames) -> f64 {
    f.get() as f64 / 256.0
}

fn secs(r: &TimelineRow) -> f64 {
    r.t.as_nanos() as f64 / 1e9
}

/// A run to draw: its label and rows.
pub struct Series<'a> {
    /// Policy name shown in the legend.
    pub label: &'a str,
    /// Its timeline.
    pub rows: &'a [TimelineRow],
}

/// What kind of scenario event a mark stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    /// `target_mib`: the host asks for a balloon size.
    HostRequest,
    /// `lock_mib`: the guest pins memory.
    Lock,
    /// `commit_mib`: the guest commits pageable memory.
    Commit,
    /// `release`: the guest frees a request.
    Release,
    /// `host_reset`, `host_busy_calls`, `host_refuse_next`: the host misbehaves.
    Host,
}

impl MarkKind {
    /// Every kind, in legend order.
    pub const ALL: [Self; 5] = [
        Self::HostRequest,
        Self::Lock,
        Self::Commit,
        Self::Release,
        Self::Host,
    ];

    /// The colour of the kind's marks.
    #[must_use]
    pub const fn color(self) -> RGBColor {
        match self {
            Self::HostRequest => RGBColor(60, 60, 60),
            Self::Lock => RGBColor(190, 30, 30),
            Self::Commit => RGBColor(170, 110, 20),
            Self::Release => RGBColor(20, 140, 90),
            Self::Host => RGBColor(90, 60, 160),
        }
    }

    fn legend(self) -> &'static str {
        match self {
            Self::HostRequest => "event: host target (target_mib)",
            Self::Lock => "event: guest pins (lock_mib)",
            Self::Commit => "event: guest commits (commit_mib)",
            Self::Release => "event: release",
            Self::Host => "event: host reset / BUSY / refusals",
        }
    }
}

/// A scenario event on the time axis.
#[derive(Clone, Debug, PartialEq)]
pub struct EventMark {
    /// When (simulated seconds).
    pub t_s: f64,
    /// What kind of event.
    pub kind: MarkKind,
    /// A short label ("host asks 2662 MiB", "lock sql 2048 MiB").
    pub label: String,
}

/// The marks of every event of `scenario`, in time order.
#[must_use]
pub fn event_marks(scenario: &Scenario) -> Vec<EventMark> {
    scenario
        .events
        .iter()
        .map(|e| {
            let (kind, label) = match &e.action {
                Action::Target(t) => (
                    MarkKind::HostRequest,
                    format!("host asks {} MiB", t.mib_floor()),
                ),
                Action::Lock { id, kind, size, .. } => (
                    MarkKind::Lock,
                    format!("{} {id} {} MiB", kind.name(), size.mib_floor()),
                ),
                Action::Commit { id, size } => (
                    MarkKind::Commit,
                    format!("commit {id} {} MiB", size.mib_floor()),
                ),
                Action::Release(id) => (MarkKind::Release, format!("release {id}")),
                Action::HostReset => (MarkKind::Host, "host RESET".to_owned()),
                Action::HostBusy(n) => (MarkKind::Host, format!("host BUSY x{n}")),
                Action::HostRefuse(n) => (MarkKind::Host, format!("host refuses {n} pages")),
                Action::HostEntryStatus { status, pages, on } => (
                    MarkKind::Host,
                    format!(
                        "host answers {} to {pages} pages ({})",
                        status.name(),
                        match on {
                            crate::host::EntryDirection::Lock => "lock",
                            crate::host::EntryDirection::Unlock => "unlock",
                        }
                    ),
                ),
                Action::HostTargetAfterLocks { locks, target } => (
                    MarkKind::Host,
                    format!("host asks {} MiB at lock {locks}", target.mib_floor()),
                ),
                Action::Config(values) => (
                    MarkKind::Host,
                    format!(
                        "registry: {}",
                        vmballoon_core::config::Param::ALL
                            .iter()
                            .filter_map(|&p| match values.get(p) {
                                vmballoon_core::config::RawValue::Dword(v) => {
                                    Some(format!("{} = {v}", p.name()))
                                }
                                _ => None,
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            };
            EventMark {
                t_s: e.at.as_nanos() as f64 / 1e9,
                kind,
                label,
            }
        })
        .collect()
}

/// Draws `main` (and `compare`, if any) and the scenario's `events` as an SVG document.
///
/// # Errors
/// A description of a drawing failure (plotters' error, as text).
pub fn svg(
    title: &str,
    duration_s: f64,
    main: &Series<'_>,
    compare: Option<&Series<'_>>,
    events: &[EventMark],
) -> Result<String, String> {
    let mut out = String::new();
    draw(&mut out, title, duration_s, main, compare, events).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The resident available line of a run, as drawn: each row's low-water sample (where it
/// is below the row's value) and then its value, at the row's time (s, MiB).
#[must_use]
pub fn resident_line(rows: &[TimelineRow]) -> Vec<(f64, f64)> {
    let mut points = Vec::with_capacity(rows.len().saturating_mul(2));
    for r in rows {
        if r.resident_available_low < r.resident_available {
            points.push((secs(r), mib(r.resident_available_low)));
        }
        points.push((secs(r), mib(r.resident_available)));
    }
    points
}

/// The times (s) of the rows at which a run's guest allocation failures grew.
#[must_use]
pub fn failure_times(rows: &[TimelineRow]) -> Vec<f64> {
    let mut before = 0u64;
    let mut times = Vec::new();
    for r in rows {
        if r.guest_alloc_failures > before {
            times.push(secs(r));
        }
        before = r.guest_alloc_failures;
    }
    times
}

fn draw(
    out: &mut String,
    title: &str,
    duration_s: f64,
    main: &Series<'_>,
    compare: Option<&Series<'_>>,
    events: &[EventMark],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let all = main.rows.iter().chain(compare.map_or(&[][..], |c| c.rows));
    let y_max = all
        .map(|r| {
            [r.target, r.balloon, r.pinned, r.resident_available]
                .into_iter()
                .chain(r.ceiling)
                .map(mib)
                .fold(0.0f64, f64::max)
        })
        .fold(0.0f64, f64::max)
        .max(64.0)
        // Headroom above the data for the legend (upper right) and the event labels.
        * 1.7;
    let x_max = duration_s.max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("simulated time (s)")
        .y_desc("MiB")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;

    let grey = RGBColor(110, 110, 110);
    let blue = RGBColor(31, 100, 200);
    let green = RGBColor(30, 150, 60);
    let red = RGBColor(200, 40, 40);
    let orange = RGBColor(230, 140, 20);
    let purple = RGBColor(140, 60, 170);

    // Events first, under the data: a dotted line each.
    for e in events {
        let c = e.kind.color().mix(0.45);
        chart.draw_series(DashedLineSeries::new(
            [(e.t_s, 0.0), (e.t_s, y_max)],
            2,
            4,
            c.stroke_width(1),
        ))?;
    }

    let line = |rows: &[TimelineRow], f: Pick| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| f(r).map(|v| (secs(r), v)))
            .collect()
    };
    let main_label = main.label;

    // The host target, dashed so that a balloon on it leaves it visible.
    let target = line(main.rows, |r| Some(mib(r.target)));
    if !target.is_empty() {
        chart
            .draw_series(DashedLineSeries::new(target, 10, 4, grey.stroke_width(2)))?
            .label("host target")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2))
            });
    }
    // The ceiling: a wide pale band under the balloon, which stays visible on it.
    let ceiling = line(main.rows, |r| r.ceiling.map(mib));
    if !ceiling.is_empty() {
        let band = green.mix(0.35);
        chart
            .draw_series(LineSeries::new(ceiling, band.stroke_width(9)))?
            .label(format!("safe ceiling ({main_label})"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], band.stroke_width(9))
            });
    }
    let plain: [(String, RGBColor, u32, Pick); 2] = [
        (format!("balloon ({main_label})"), blue, 3, |r| {
            Some(mib(r.balloon))
        }),
        ("pinned (OS + applications)".to_owned(), red, 2, |r| {
            Some(mib(r.pinned))
        }),
    ];
    for (label, color, width, f) in plain {
        let points = line(main.rows, f);
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(width)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
    }
    let resident = resident_line(main.rows);
    if !resident.is_empty() {
        chart
            .draw_series(LineSeries::new(resident, orange.stroke_width(2)))?
            .label(format!("resident available ({main_label})"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], orange.stroke_width(2))
            });
    }
    if let Some(c) = compare {
        let balloon = line(c.rows, |r| Some(mib(r.balloon)));
        chart
            .draw_series(DashedLineSeries::new(balloon, 8, 5, purple.stroke_width(2)))?
            .label(format!("balloon ({})", c.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 8, y)], purple.stroke_width(2))
            });
        chart
            .draw_series(DashedLineSeries::new(
                resident_line(c.rows),
                8,
                5,
                orange.stroke_width(2),
            ))?
            .label(format!("resident available ({})", c.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 8, y)], orange.stroke_width(2))
            });
    }

    // Guest allocation failures of every run, each at its own height and colour.
    let runs = [
        Some((main, FAILURE_MAIN, 0.03)),
        compare.map(|c| (c, FAILURE_COMPARE, 0.055)),
    ];
    for (run, color, height) in runs.into_iter().flatten() {
        let crosses = failure_times(run.rows);
        if crosses.is_empty() {
            continue;
        }
        chart
            .draw_series(
                crosses
                    .into_iter()
                    .map(|t| Cross::new((t, y_max * height), 4, color.stroke_width(2))),
            )?
            .label(format!("guest allocation failure ({})", run.label))
            .legend(move |(x, y)| Cross::new((x + 10, y), 4, color.stroke_width(2)));
    }

    // The events on the time axis, one legend entry per kind present.
    for kind in MarkKind::ALL {
        let marks: Vec<(f64, f64)> = events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| (e.t_s, 0.0))
            .collect();
        if marks.is_empty() {
            continue;
        }
        let color = kind.color();
        chart
            .draw_series(
                marks
                    .into_iter()
                    .map(|p| TriangleMarker::new(p, 6, color.filled())),
            )?
            .label(kind.legend())
            .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, color.filled()));
    }
    draw_event_labels(&root, &chart, events, y_max)?;
    draw_legend(&mut chart)?;
    root.present()?;
    Ok(())
}

/// Labels the events at the top of the plot, reading downwards beside their lines. Events
/// closer than [`LABEL_GAP_PX`] share the first one's label ("+N").
fn draw_event_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    chart: &ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    events: &[EventMark],
    y_max: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut sorted: Vec<&EventMark> = events.iter().collect();
    sorted.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    let mut groups: Vec<(i32, i32, Vec<&EventMark>)> = Vec::new();
    for e in sorted {
        let (x, y) = chart.backend_coord(&(e.t_s, y_max));
        match groups.last_mut() {
            Some((gx, _, members)) if x - *gx < LABEL_GAP_PX => members.push(e),
            _ => groups.push((x, y, vec![e])),
        }
    }
    for (x, y, members) in groups {
        let Some(first) = members.first() else {
            continue;
        };
        let mut label: String = first.label.chars().take(LABEL_CHARS).collect();
        if first.label.chars().count() > LABEL_CHARS {
            label.push_str("...");
        }
        if members.len() > 1 {
            label.push_str(&format!(" (+{})", members.len() - 1));
        }
        let style = ("sans-serif", 12)
            .into_font()
            .transform(FontTransform::Rotate90)
            .color(&first.kind.color())
            .pos(Pos::new(HPos::Left, VPos::Top));
        root.draw(&Text::new(label, (x + 14, y + 6), style))?;
    }
    Ok(())
}

/// The legend every chart of the simulator uses: upper right, on a translucent white box.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 14))
        .draw()
}
