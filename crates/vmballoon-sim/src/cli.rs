//! The `vmballoon-sim` command line (`docs/scenario-format.md`, "Command line"), as a library
//! function so tests run it in-process with arguments and captured output.
//!
//! ```text
//! vmballoon-sim [SCENARIO.toml] [--policy vmballoon|naive|linux-vmw|ovt-classic]
//!               [--json SUMMARY.json] [--timeline TIMELINE.csv] [--svg PLOT.svg]
//!               [--counters]
//! ```
//!
//! `--counters` prints vmballoon's `VM Balloon` performance-counter set as it stood at the
//! end of the run, before unload: the same counters, computed by the same mapping
//! (`vmballoon_nt::counters`), that the driver publishes to Windows
//! (`docs/windows-memory.md §9.6`).
//!
//! Timings are modelled ([`crate::cost`]): the table's "(modelled)" rows and the JSON's
//! `modelled_*` keys. Without `--policy` vmballoon and the naive balloon run and stdout
//! compares them side by side; `--json`
//! and `--timeline` then describe the vmballoon run (the JSON object carries the naive
//! run's summary under an extra `comparison` key) and `--svg` draws both. Exit status: 0
//! after a completed run, 2 on a bad scenario file or bad arguments, with one line on
//! stderr naming the file, the line and the key.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Parser;

use vmballoon_nt::counters::{COUNTER_SET_NAME, PcwType, PerfCounter};

use crate::driver::DriverKind;
use crate::plot::{self, Series};
use crate::report::{self, Summary};
use crate::runner::{self, RunResult};
use crate::scenario::Scenario;

/// Exit status of a completed run.
pub const EXIT_OK: u8 = 0;
/// Exit status for a bad scenario file or bad arguments.
pub const EXIT_USAGE: u8 = 2;

/// Simulate the vmballoon driver (and a pinned-page-unaware balloon) against a model of a
/// VMware host and a Windows guest.
#[derive(Debug, Parser)]
#[command(name = "vmballoon-sim", version, about, long_about = None)]
pub struct Cli {
    /// Scenario file (TOML, see docs/scenario-format.md); none runs the built-in KB 340369
    /// scenario.
    #[arg(value_name = "SCENARIO.toml")]
    pub scenario: Option<PathBuf>,
    /// Run one driver only (default: vmballoon and naive, side by side).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub policy: Option<DriverKind>,
    /// Write the run's summary as one JSON object.
    #[arg(long, value_name = "SUMMARY.json")]
    pub json: Option<PathBuf>,
    /// Write the timeline as CSV, one row per tick.
    #[arg(long, value_name = "TIMELINE.csv")]
    pub timeline: Option<PathBuf>,
    /// Draw target, balloon, ceiling, pinned and resident available memory as SVG.
    #[arg(long, value_name = "PLOT.svg")]
    pub svg: Option<PathBuf>,
    /// Print vmballoon's performance counters (`\VM Balloon\*`) at the end of the run.
    #[arg(long)]
    pub counters: bool,
}

/// Runs the command line with `args` (the first is the program name), writing the report
/// to `out` and errors to `err`. Returns the exit status.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = write!(out, "{}", e.render());
                return EXIT_OK;
            }
            let _ = writeln!(err, "{}", one_line(&e));
            return EXIT_USAGE;
        }
    };
    if let Err(message) = distinct_files(&cli) {
        let _ = writeln!(err, "error: {message}");
        return EXIT_USAGE;
    }
    match execute(&cli, out) {
        Ok(()) => EXIT_OK,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_USAGE
        }
    }
}

/// clap's error as one line: its first line, plus the valid values when a value was
/// invalid (clap puts them on a line of their own).
fn one_line(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let rendered = e.render().to_string();
    let mut line = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("error: bad arguments")
        .to_owned();
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        line.push_str(&format!(" (possible values: {})", valid.join(", ")));
    }
    line
}

/// The file a path names, as far as it can be told before writing: the canonical path of
/// the file or, when it does not exist yet, of its directory plus its name.
fn identity(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    match (std::fs::canonicalize(dir), path.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// Refuses two outputs naming one file (one would overwrite the other), or an output
/// naming the scenario file (it would overwrite its own input).
fn distinct_files(cli: &Cli) -> Result<(), String> {
    let named: Vec<(&str, &Path)> = [
        ("the scenario", cli.scenario.as_deref()),
        ("--json", cli.json.as_deref()),
        ("--timeline", cli.timeline.as_deref()),
        ("--svg", cli.svg.as_deref()),
    ]
    .into_iter()
    .filter_map(|(what, p)| p.map(|p| (what, p)))
    .collect();
    for (i, (a, pa)) in named.iter().enumerate() {
        for (b, pb) in named.iter().skip(i + 1) {
            if identity(pa) == identity(pb) {
                return Err(format!(
                    "{a} and {b} name the same file ({}); give each output its own file",
                    pb.display()
                ));
            }
        }
    }
    Ok(())
}

fn load(path: Option<&Path>) -> Result<Scenario, String> {
    let Some(path) = path else {
        return Ok(Scenario::builtin());
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    Scenario::parse(&text, &name).map_err(|e| e.to_string())
}

fn write_file(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

fn execute(cli: &Cli, out: &mut dyn Write) -> Result<(), String> {
    let scenario = load(cli.scenario.as_deref())?;
    let kinds: Vec<DriverKind> = cli
        .policy
        .map_or_else(|| DriverKind::DEFAULT_PAIR.to_vec(), |k| vec![k]);
    let results: Vec<(DriverKind, RunResult)> = kinds
        .iter()
        .map(|&k| (k, runner::run(&scenario, k)))
        .collect();
    let Some((main_kind, main)) = results.first() else {
        return Ok(());
    };
    let compare = results.get(1);

    let title = format!("scenario {}", scenario.name);
    let summaries: Vec<&Summary> = results.iter().map(|(_, r)| &r.summary).collect();
    let mut text = report::table(&title, &scenario.description, &summaries);
    text.push_str(&verdict(&summaries));
    for s in &summaries {
        if s.protocol_violations > 0 || s.contract_violations > 0 || !s.model_errors.is_empty() {
            text.push_str(&format!(
                "\n{}: {} protocol violations, {} contract violations, {} model errors:\n",
                s.policy,
                s.protocol_violations,
                s.contract_violations,
                s.model_errors.len()
            ));
            for v in s.violations.iter().chain(&s.model_errors).take(10) {
                text.push_str(&format!("  {v}\n"));
            }
        }
    }

    if cli.counters {
        text.push_str(&counters(&results));
    }

    if let Some(path) = &cli.json {
        let mut value = serde_json::to_value(&main.summary).map_err(|e| e.to_string())?;
        if let (Some(obj), Some((_, c))) = (value.as_object_mut(), compare) {
            let c = serde_json::to_value(&c.summary).map_err(|e| e.to_string())?;
            obj.insert("comparison".to_owned(), c);
        }
        let json = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
        write_file(path, &format!("{json}\n"))?;
        text.push_str(&format!(
            "\nwrote summary ({main_kind}) to {}\n",
            path.display()
        ));
    }
    if let Some(path) = &cli.timeline {
        write_file(path, &report::timeline_csv(&main.timeline))?;
        text.push_str(&format!(
            "wrote timeline ({main_kind}) to {}\n",
            path.display()
        ));
    }
    if let Some(path) = &cli.svg {
        let main_series = Series {
            label: main_kind.name(),
            rows: &main.timeline,
        };
        let other = compare.map(|(k, r)| Series {
            label: k.name(),
            rows: &r.timeline,
        });
        let plot_title = match compare {
            Some((k, _)) => format!("{}: {main_kind} vs {k} balloon", scenario.name),
            None => format!("{}: {main_kind}", scenario.name),
        };
        let svg = plot::svg(
            &plot_title,
            scenario.duration.as_nanos() as f64 / 1e9,
            &main_series,
            other.as_ref(),
            &plot::event_marks(&scenario),
        )
        .map_err(|e| format!("{}: cannot draw: {e}", path.display()))?;
        write_file(path, &svg)?;
        text.push_str(&format!("wrote plot to {}\n", path.display()));
    }
    out.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

/// The `VM Balloon` counter set of the vmballoon run, as `Get-Counter` names the counters.
fn counters(results: &[(DriverKind, RunResult)]) -> String {
    let Some(data) = results.iter().find_map(|(_, r)| r.counters) else {
        return "\ncounters: only the vmballoon driver publishes performance counters\n".to_owned();
    };
    let mut text = format!(
        "\nperformance counters at the end of the run (simulated), \\{}\\*:\n",
        COUNTER_SET_NAME
    );
    for c in PerfCounter::ALL {
        let note = match c.pcw_type() {
            PcwType::BulkCount => "  (running total: Windows shows its rate)",
            PcwType::LargeRawcount => "",
        };
        text.push_str(&format!("  {:<30} {:>12}{note}\n", c.name(), data.get(c)));
    }
    text
}

/// One line per driver on what happened to the guest.
fn verdict(runs: &[&Summary]) -> String {
    let mut text = String::from("\n");
    for s in runs {
        let outcome = if s.guest_alloc_failures == 0 {
            "the guest never failed an allocation".to_owned()
        } else {
            format!(
                "the guest failed {} allocation attempts (out of memory)",
                s.guest_alloc_failures
            )
        };
        text.push_str(&format!(
            "{:>9}: balloon peaked at {} MiB, resident available fell to {} MiB; {outcome}.\n",
            s.policy, s.max_balloon_mib, s.min_resident_available_mib
        ));
    }
    text
}
