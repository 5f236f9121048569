//! The benchmark's SVG charts (plotters' SVG backend, like [`crate::plot`]): grouped bars
//! per host and driver on log scales, and balloon timelines over modelled time.

use plotters::prelude::*;

use super::{BenchKind, CAP_SETS, PINNED, Suite, give_back_metrics, inflate_metrics};
use crate::driver::DriverKind;

/// Chart size in pixels.
const SIZE: (u32, u32) = (1000, 560);

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Line width per driver in timelines: wider lines first, so lines that coincide show as
/// nested colours.
fn width(p: DriverKind) -> u32 {
    match p {
        DriverKind::Vmballoon => 8,
        DriverKind::LinuxVmw => 5,
        DriverKind::OvtClassic => 3,
        DriverKind::Naive => 2,
    }
}

fn color(p: DriverKind) -> RGBColor {
    match p {
        DriverKind::Vmballoon => RGBColor(31, 100, 200),
        DriverKind::LinuxVmw => RGBColor(30, 150, 60),
        DriverKind::OvtClassic => RGBColor(230, 140, 20),
        DriverKind::Naive => RGBColor(140, 60, 170),
    }
}

/// Every chart: `(file name, SVG)`. A chart that cannot be drawn is left out and its
/// error returned in the second list.
#[must_use]
pub fn charts(suite: &Suite) -> (Vec<(String, String)>, Vec<String>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    let mut add = |name: &str, r: DrawResult<String>| match r {
        Ok(svg) => ok.push((name.to_owned(), svg)),
        Err(e) => errors.push(format!("{name}: {e}")),
    };
    add("calls-per-gib.svg", calls_chart(suite));
    add("inflate-time.svg", time_chart(suite));
    add(
        "inflate-4k-timeline.svg",
        timeline_chart(
            suite,
            &BenchKind::Inflate,
            0.0,
            400.0,
            "inflate 8 GiB, then 0",
        ),
    );
    add(
        "give-back-4k-timeline.svg",
        timeline_chart(
            suite,
            &BenchKind::GiveBack,
            super::GIVE_BACK_AT - 5.0,
            super::GIVE_BACK_AT + 45.0,
            "the guest pins 2 GiB more at 200 s (host lowers its target by 2 GiB)",
        ),
    );
    add("pinned-failures.svg", failures_chart(suite));
    (ok, errors)
}

/// Grouped bars on a log scale: one group per host, one bar per driver, an optional
/// dashed reference per group.
fn grouped_log_bars(
    title: &str,
    y_desc: &str,
    range: (f64, f64),
    value: &dyn Fn(usize, DriverKind) -> Option<f64>,
    reference: &dyn Fn(usize) -> Option<(f64, &'static str)>,
) -> DrawResult<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let groups = CAP_SETS.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..groups, (range.0..range.1).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_desc)
            .y_label_formatter(&|v| {
                if *v >= 1.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v}")
                }
            })
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let n = DriverKind::ALL.len() as f64;
        let width = 0.8 / n;
        for (i, p) in DriverKind::ALL.into_iter().enumerate() {
            let c = color(p);
            let bars: Vec<Rectangle<(f64, f64)>> = (0..CAP_SETS.len())
                .filter_map(|g| {
                    let v = value(g, p)?.clamp(range.0, range.1);
                    let x0 = g as f64 + 0.1 + i as f64 * width;
                    Some(Rectangle::new(
                        [(x0, range.0), (x0 + width * 0.9, v)],
                        c.filled(),
                    ))
                })
                .collect();
            chart
                .draw_series(bars)?
                .label(p.name())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
        }
        for g in 0..CAP_SETS.len() {
            if let Some((v, label)) = reference(g) {
                let x0 = g as f64 + 0.05;
                chart.draw_series(DashedLineSeries::new(
                    vec![(x0, v), (x0 + 0.9, v)],
                    6,
                    4,
                    BLACK.stroke_width(2),
                ))?;
                chart.draw_series(std::iter::once(Text::new(
                    label.to_owned(),
                    (x0, v * 1.15),
                    ("sans-serif", 13),
                )))?;
            }
        }
        let at: Vec<((i32, i32), &str)> = CAP_SETS
            .iter()
            .enumerate()
            .map(|(g, s)| (chart.backend_coord(&(g as f64 + 0.1, range.0)), s.label))
            .collect();
        for ((px, py), label) in at {
            root.draw(&Text::new(label, (px, py + 8), ("sans-serif", 14)))?;
        }
        crate::plot::draw_legend(&mut chart)?;
        root.present()?;
    }
    Ok(out)
}

fn calls_chart(suite: &Suite) -> DrawResult<String> {
    grouped_log_bars(
        "Page-moving backdoor calls per GiB inflated (floor dashed)",
        "calls per GiB (log)",
        (0.3, 1e6),
        &|g, p| {
            suite
                .find(&BenchKind::Inflate, g, p)
                .and_then(|r| inflate_metrics(&r.result).inflate.page_calls_per_gib())
        },
        &|g| CAP_SETS.get(g).map(|s| (s.floor_calls_per_gib(), "floor")),
    )
}

fn time_chart(suite: &Suite) -> DrawResult<String> {
    grouped_log_bars(
        "Modelled time to inflate 8 GiB on a 16 GiB guest",
        "seconds, modelled (log)",
        (1e-3, 1e3),
        &|g, p| {
            suite
                .find(&BenchKind::Inflate, g, p)
                .and_then(|r| inflate_metrics(&r.result).inflate.modelled_s)
        },
        &|_| None,
    )
}

fn timeline_chart(
    suite: &Suite,
    kind: &BenchKind,
    from: f64,
    to: f64,
    what: &str,
) -> DrawResult<String> {
    let cap = 1; // batched 4 KiB
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let y_max = DriverKind::ALL
            .iter()
            .filter_map(|&p| suite.find(kind, cap, p))
            .flat_map(|r| r.result.timeline.iter().map(|row| row.balloon.get()))
            .max()
            .unwrap_or(0) as f64
            / 256.0
            * 1.3
            + 64.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Balloon over modelled time, batched 4 KiB host: {what}"),
                ("sans-serif", 18),
            )
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(from..to, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("modelled time (s)")
            .y_desc("balloon (MiB)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for p in DriverKind::ALL {
            let Some(r) = suite.find(kind, cap, p) else {
                continue;
            };
            let c = color(p);
            // A step line: the balloon holds its size until the end of the next work.
            let mut points = Vec::new();
            let mut last = 0.0f64;
            for row in &r.result.timeline {
                let t = row.t_end.as_nanos() as f64 / 1e9;
                let v = row.balloon.get() as f64 / 256.0;
                if t < from || t > to {
                    last = v;
                    continue;
                }
                points.push((t, last));
                points.push((t, v));
                last = v;
            }
            if points.is_empty() {
                continue;
            }
            let mut label = p.name().to_owned();
            if *kind == BenchKind::GiveBack {
                let m = give_back_metrics(&r.result);
                label = format!("{label} (pin failed {}×)", m.pin_failures);
            }
            let w = width(p);
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(w)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(w))
                });
        }
        crate::plot::draw_legend(&mut chart)?;
        root.present()?;
    }
    Ok(out)
}

fn failures_chart(suite: &Suite) -> DrawResult<String> {
    let cap = 2; // batched 2 MiB
    let value = |file: &str, sat: bool, p: DriverKind| {
        suite
            .find(&BenchKind::Pinned(file.to_owned(), sat), cap, p)
            .map_or(0, |r| r.result.summary.guest_alloc_failures)
    };
    let y_max = PINNED
        .iter()
        .flat_map(|&(f, s)| DriverKind::ALL.map(|p| value(f, s, p)))
        .max()
        .unwrap_or(0) as f64
        * 1.25
        + 5.0;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let groups = PINNED.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Guest allocation failures, pinned-memory scenarios (batched 2 MiB host)",
                ("sans-serif", 18),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..groups, 0.0..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("failed allocation attempts")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let width = 0.8 / DriverKind::ALL.len() as f64;
        for (i, p) in DriverKind::ALL.into_iter().enumerate() {
            let c = color(p);
            let bars: Vec<Rectangle<(f64, f64)>> = PINNED
                .iter()
                .enumerate()
                .map(|(g, &(f, s))| {
                    let x0 = g as f64 + 0.1 + i as f64 * width;
                    Rectangle::new(
                        [(x0, 0.0), (x0 + width * 0.9, value(f, s, p) as f64)],
                        c.filled(),
                    )
                })
                .collect();
            chart
                .draw_series(bars)?
                .label(p.name())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
        }
        let at: Vec<((i32, i32), i32, &str)> = PINNED
            .iter()
            .enumerate()
            .map(|(g, &(f, _))| {
                let p = chart.backend_coord(&(g as f64 + 0.05, 0.0));
                (p, 6 + (g % 2) as i32 * 16, f.trim_end_matches(".toml"))
            })
            .collect();
        for ((px, py), dy, label) in at {
            root.draw(&Text::new(label, (px, py + dy), ("sans-serif", 13)))?;
        }
        crate::plot::draw_legend(&mut chart)?;
        root.present()?;
    }
    Ok(out)
}
