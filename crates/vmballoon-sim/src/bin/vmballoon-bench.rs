//! `vmballoon-bench`: runs the benchmark suite ([`vmballoon_sim::bench`]) and writes the
//! report, the charts and every run's summary. `cargo xtask bench` runs it after measuring
//! the core's CPU per frame; it can also run alone (the CPU rows are then empty).
//!
//! ```text
//! vmballoon-bench --scenarios scenarios --out target/bench
//!                 [--criterion target/criterion] [--callgrind target/bench/callgrind]
//!                 [--current-label TEXT] [--baseline-label TEXT]
//!                 [--elapsed-s SECONDS] [--threads N]
//! ```
//!
//! Exit status 0 when the report was written (whatever the budgets say), 2 on bad
//! arguments or unreadable scenarios, 1 when the results could not be written.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use vmballoon_sim::bench::{self, CpuMeasurements, GIB_FRAMES};
use vmballoon_sim::cost::CostModel;
use vmballoon_sim::serde_json::{self, Value, json};

/// Run every balloon driver on the benchmark scenarios and write the report.
#[derive(Debug, Parser)]
#[command(name = "vmballoon-bench", version, about)]
struct Args {
    /// The scenario directory (with `bench/` in it).
    #[arg(long, default_value = "scenarios")]
    scenarios: PathBuf,
    /// Where report.md, the charts and results.json go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Criterion's output directory (with `engine-1GiB/` in it).
    #[arg(long)]
    criterion: Option<PathBuf>,
    /// Directory with `current-<path>-<size>.out` and `baseline-<path>-<size>.out`
    /// callgrind files.
    #[arg(long)]
    callgrind: Option<PathBuf>,
    /// What the current tree is (shown in the report).
    #[arg(long, default_value = "the working tree")]
    current_label: String,
    /// What the baseline tree is.
    #[arg(long, default_value = "")]
    baseline_label: String,
    /// Wall time already spent by the caller (seconds), added to the report's figure.
    #[arg(long)]
    elapsed_s: Option<f64>,
    /// Simulation threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

const WORKLOADS: [&str; 4] = ["inflate-4k", "deflate-4k", "inflate-2m", "deflate-2m"];

/// Criterion's median (ns per iteration) of `engine-1GiB/<key>`.
fn criterion_median(dir: &Path, key: &str) -> Option<f64> {
    let path = dir.join("engine-1GiB").join(key).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("median")?.get("point_estimate")?.as_f64()
}

/// The `totals:` (or `summary:`) line of a callgrind output file: instructions collected.
fn callgrind_total(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn cpu(args: &Args) -> CpuMeasurements {
    let mut criterion_ns = BTreeMap::new();
    let mut ir_current = BTreeMap::new();
    let mut ir_baseline = BTreeMap::new();
    for key in WORKLOADS {
        if let Some(dir) = &args.criterion
            && let Some(ns) = criterion_median(dir, key)
        {
            criterion_ns.insert(key.to_owned(), ns);
        }
        if let Some(dir) = &args.callgrind {
            if let Some(ir) = callgrind_total(&dir.join(format!("current-{key}.out"))) {
                ir_current.insert(key.to_owned(), ir);
            }
            if let Some(ir) = callgrind_total(&dir.join(format!("baseline-{key}.out"))) {
                ir_baseline.insert(key.to_owned(), ir);
            }
        }
    }
    CpuMeasurements {
        criterion_ns,
        ir_current,
        ir_baseline,
        current_label: args.current_label.clone(),
        baseline_label: args.baseline_label.clone(),
        frames: GIB_FRAMES,
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let jobs = match bench::jobs(&args.scenarios) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("vmballoon-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let n = jobs.len();
    let suite = bench::run_suite(jobs, CostModel::default(), args.threads);
    let sim_s = start.elapsed().as_secs_f64();
    eprintln!("vmballoon-bench: {n} simulation runs in {sim_s:.1} s");
    let cpu = cpu(&args);
    let elapsed = args.elapsed_s.map(|e| e + start.elapsed().as_secs_f64());
    let md = bench::markdown(&suite, &cpu, elapsed);
    let (svgs, chart_errors) = bench::charts(&suite);
    let results: Vec<Value> = suite
        .runs
        .iter()
        .map(|r| {
            json!({
                "benchmark": match &r.kind {
                    bench::BenchKind::Inflate => "inflate-8g".to_owned(),
                    bench::BenchKind::GiveBack => "give-back-2g".to_owned(),
                    bench::BenchKind::Pinned(f, _) => f.clone(),
                    bench::BenchKind::Oscillation => "pinned-oscillation".to_owned(),
                },
                "host": bench::CAP_SETS.get(r.cap).map_or("?", |c| c.key),
                "policy": r.policy.name(),
                "summary": r.result.summary,
            })
        })
        .collect();
    let outcome = (|| -> Result<(), String> {
        std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
        write(&args.out.join("report.md"), &md)?;
        for (name, svg) in &svgs {
            write(&args.out.join(name), svg)?;
        }
        let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
        write(&args.out.join("results.json"), &json)
    })();
    if let Err(e) = outcome {
        eprintln!("vmballoon-bench: {e}");
        return ExitCode::FAILURE;
    }
    for e in &chart_errors {
        eprintln!("vmballoon-bench: chart not drawn: {e}");
    }
    for b in bench::budgets(&suite, &cpu) {
        let r = match b.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        println!("{r:>12}  {}: {}", b.name, b.measured);
    }
    println!(
        "wrote {} ({} charts, results.json)",
        args.out.join("report.md").display(),
        svgs.len()
    );
    ExitCode::SUCCESS
}
