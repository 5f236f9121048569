//! `--svg`: the timeline drawn with plotters' SVG backend (no system fonts needed: the
//! SVG backend writes text as `<text>` elements, and plotters' built-in size estimate lays
//! it out).
//!
//! The plot shows, over time (s) in MiB: the host target, the balloon, the safe ceiling,
//! pinned memory and resident available memory of the main run; with a comparison run
//! (the naive balloon), its balloon and resident available memory dashed, and a cross on
//! the time axis at each of its guest allocation failures.

use plotters::prelude::*;

use crate::report::TimelineRow;

/// Reads one value (MiB) of a row, if the row has it.
type Pick = fn(&TimelineRow) -> Option<f64>;

/// Plot size in pixels.
const SIZE: (u32, u32) = (1100, 620);

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

/// Draws `main` (and `compare`, if any) as an SVG document.
///
/// # Errors
/// A description of a drawing failure (plotters' error, as text).
pub fn svg(
    title: &str,
    duration_s: f64,
    main: &Series<'_>,
    compare: Option<&Series<'_>>,
) -> Result<String, String> {
    let mut out = String::new();
    draw(&mut out, title, duration_s, main, compare).map_err(|e| e.to_string())?;
    Ok(out)
}

fn draw(
    out: &mut String,
    title: &str,
    duration_s: f64,
    main: &Series<'_>,
    compare: Option<&Series<'_>>,
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
        // Headroom above the data for the legend (upper right).
        * 1.5;
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

    let line = |rows: &[TimelineRow], f: Pick| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| f(r).map(|v| (secs(r), v)))
            .collect()
    };
    let main_label = main.label;
    let plain: [(String, RGBColor, u32, Pick); 5] = [
        ("host target".to_owned(), grey, 2, |r| Some(mib(r.target))),
        (format!("balloon ({main_label})"), blue, 3, |r| {
            Some(mib(r.balloon))
        }),
        (format!("safe ceiling ({main_label})"), green, 2, |r| {
            r.ceiling.map(mib)
        }),
        ("pinned (OS + applications)".to_owned(), red, 2, |r| {
            Some(mib(r.pinned))
        }),
        (
            format!("resident available ({main_label})"),
            orange,
            2,
            |r| Some(mib(r.resident_available)),
        ),
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
    if let Some(c) = compare {
        let dashed: [(String, RGBColor, Pick); 2] = [
            (format!("balloon ({})", c.label), purple, |r| {
                Some(mib(r.balloon))
            }),
            (format!("resident available ({})", c.label), orange, |r| {
                Some(mib(r.resident_available))
            }),
        ];
        for (label, color, f) in dashed {
            let points = line(c.rows, f);
            chart
                .draw_series(DashedLineSeries::new(points, 8, 5, color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(2))
                });
        }
        let mut before = 0u64;
        let mut crosses = Vec::new();
        for r in c.rows {
            if r.guest_alloc_failures > before {
                crosses.push((secs(r), y_max * 0.015));
            }
            before = r.guest_alloc_failures;
        }
        if !crosses.is_empty() {
            chart
                .draw_series(
                    crosses
                        .into_iter()
                        .map(|p| Cross::new(p, 4, red.stroke_width(2))),
                )?
                .label(format!("guest allocation failure ({})", c.label))
                .legend(move |(x, y)| Cross::new((x + 10, y), 4, red.stroke_width(2)));
        }
    }
    draw_legend(&mut chart)?;
    root.present()?;
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
