//! `cargo xtask fuzz --seconds N [TARGET...]`: builds the cargo-fuzz project in `fuzz/` and
//! runs each target (or the ones named) for N seconds, one after the other (libFuzzer,
//! nightly toolchain), then prints the executions per target. `cargo xtask ci` runs a
//! [`SMOKE_SECONDS`] smoke of every target.
//!
//! * Each target is built with the instrumentation it needs ([`Target`]): AddressSanitizer
//!   and comparison tracing by default (cargo-fuzz's defaults), and neither for
//!   `engine_script`, whose runs are long enough that they cost it most of its speed and
//!   whose code under test has no `unsafe` for the sanitizer to watch (see
//!   [`ENGINE_SCRIPT_FLAGS`]). Debug assertions and overflow checks stay on everywhere.
//!
//! * Needs the nightly toolchain (`-Zsanitizer=address`); rustup does not install
//!   anything by itself on these machines (`RUSTUP_AUTO_INSTALL=0`), so a missing nightly
//!   is installed explicitly (`rustup toolchain install nightly --profile minimal`).
//! * Installs `cargo-fuzz` from crates.io (`cargo install cargo-fuzz --locked`) when
//!   `cargo +nightly fuzz` is missing.
//! * Each target starts from `fuzz/seeds/<target>` (committed) and grows
//!   `fuzz/corpus/<target>` (ignored by git, kept between runs on one machine). A crash
//!   stops the task with the input libFuzzer saved under `fuzz/artifacts/<target>/`;
//!   minimize it with `cargo +nightly fuzz tmin <target> <input>` and keep it as a
//!   regression test (`tests/properties.rs`). Logs: `target/fuzz/<target>.log`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::util::{self, Result};

/// One fuzz target (`fuzz/fuzz_targets/<name>.rs`) and how it is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// `cargo fuzz build` / `cargo fuzz run` options beyond cargo-fuzz's defaults (release,
    /// debug assertions and overflow checks, AddressSanitizer, comparison tracing).
    pub flags: &'static [&'static str],
}

/// `engine_script`'s build: no sanitizer, no comparison tracing, in its own target
/// directory (`fuzz/target/engine-script`, so that switching flags never rebuilds the other
/// targets).
///
/// * AddressSanitizer watches memory accesses the compiler cannot prove safe; every crate
///   the target runs (`vmballoon-core`, `vmballoon-sim`, `vmballoon-testkit`) is
///   `forbid(unsafe_code)` or free of `unsafe`, and the standard library is not rebuilt
///   with the sanitizer, so it has nothing to watch here. It made each run about four
///   times slower.
/// * Comparison tracing (`-sanitizer-coverage-trace-compares`) hooked every comparison of
///   the simulator's per-frame loops: 70 % of the run time in a profile. The target's
///   bytes reach the engine only through `Unstructured`'s range mapping, where a traced
///   constant cannot be copied into the input as it is; without the tracing the target
///   reached as much coverage in the same number of runs.
pub const ENGINE_SCRIPT_FLAGS: [&str; 5] = [
    "--sanitizer",
    "none",
    "--no-trace-compares",
    "--target-dir",
    "target/engine-script",
];

/// The fuzz targets.
pub const TARGETS: [Target; 4] = [
    Target {
        name: "channel_reply",
        flags: &[],
    },
    Target {
        name: "engine_script",
        flags: &ENGINE_SCRIPT_FLAGS,
    },
    Target {
        name: "scenario_parse",
        flags: &[],
    },
    Target {
        name: "memsnap",
        flags: &[],
    },
];

/// Seconds per target of the smoke in `cargo xtask ci`.
pub const SMOKE_SECONDS: u64 = 10;

/// What one target did.
struct Outcome {
    target: &'static str,
    executions: u64,
    seconds: f64,
    corpus: usize,
}

/// The targets named in `names` (every target when `names` is empty), in [`TARGETS`]
/// order; an unknown name is an error that lists the targets.
pub fn select(names: &[String]) -> Result<Vec<Target>> {
    if let Some(unknown) = names
        .iter()
        .find(|n| !TARGETS.iter().any(|t| t.name == n.as_str()))
    {
        let known: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        return Err(format!(
            "fuzz: no target `{unknown}` (targets: {})",
            known.join(", ")
        ));
    }
    Ok(TARGETS
        .into_iter()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == t.name))
        .collect())
}

/// Runs the targets named in `names` (every target when it is empty) for `seconds` each.
pub fn run(seconds: u64, names: &[String]) -> Result {
    if seconds == 0 {
        return Err("fuzz: --seconds must be at least 1".to_owned());
    }
    let targets = select(names)?;
    let root = crate::root();
    ensure_nightly()?;
    ensure_cargo_fuzz()?;
    for target in &targets {
        util::step_in(
            &root.join("fuzz"),
            &format!("cargo fuzz build {}", target.name),
            nightly_cargo()
                .args(["fuzz", "build"])
                .args(target.flags)
                .arg(target.name),
        )?;
    }
    let logs = root.join("target").join("fuzz");
    fs::create_dir_all(&logs).map_err(|e| format!("create {}: {e}", logs.display()))?;
    let mut outcomes = Vec::new();
    for target in targets {
        outcomes.push(run_target(&root, &logs, target, seconds)?);
    }
    eprintln!(
        "\n  {:<16} {:>12} {:>9} {:>10} {:>8}",
        "target", "executions", "seconds", "exec/s", "corpus"
    );
    for o in &outcomes {
        eprintln!(
            "  {:<16} {:>12} {:>9.1} {:>10.0} {:>8}",
            o.target,
            o.executions,
            o.seconds,
            o.executions as f64 / o.seconds.max(0.001),
            o.corpus
        );
    }
    Ok(())
}

/// The CI smoke: [`SMOKE_SECONDS`] per target.
pub fn smoke() -> Result {
    run(SMOKE_SECONDS, &[])
}

/// `cargo +nightly` without what the outer (stable) cargo put in the environment, so
/// that rustup picks the nightly toolchain for cargo-fuzz and the builds it starts.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly");
    for var in [
        "CARGO",
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn ensure_nightly() -> Result {
    let out = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map_err(|e| format!("rustup: {e}"))?;
    let list = String::from_utf8_lossy(&out.stdout);
    if list.lines().any(|l| l.starts_with("nightly")) {
        return Ok(());
    }
    // rustup installs nothing by itself here (RUSTUP_AUTO_INSTALL=0): ask for it.
    util::step(
        "rustup toolchain install nightly (cargo-fuzz needs -Zsanitizer)",
        Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]),
    )
}

fn ensure_cargo_fuzz() -> Result {
    let present = nightly_cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    util::step(
        "cargo install cargo-fuzz",
        Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]),
    )
}

fn run_target(root: &Path, logs: &Path, target: Target, seconds: u64) -> Result<Outcome> {
    let Target {
        name: target,
        flags,
    } = target;
    let fuzz = root.join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    let seeds = fuzz.join("seeds").join(target);
    fs::create_dir_all(&corpus).map_err(|e| format!("create {}: {e}", corpus.display()))?;
    let mut cmd = nightly_cargo();
    cmd.current_dir(&fuzz)
        .args(["fuzz", "run"])
        .args(flags)
        .arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // A run of one input past a minute is a hang: a finding too.
        .arg("-timeout=60")
        .arg("-print_final_stats=1");
    let dict = fuzz.join(format!("{target}.dict"));
    if dict.exists() {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    eprintln!("==> fuzz {target} for {seconds}s");
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("fuzz {target}: cannot run cargo fuzz: {e}"))?;
    let elapsed = start.elapsed().as_secs_f64();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = logs.join(format!("{target}.log"));
    fs::write(&log, &text).map_err(|e| format!("write {}: {e}", log.display()))?;
    if !out.status.success() {
        let artifact = text
            .lines()
            .find_map(|l| l.split("Test unit written to ").nth(1))
            .map_or_else(|| "no input saved".to_owned(), |p| p.trim().to_owned());
        let cause = text
            .lines()
            .find(|l| l.contains("panicked at") || l.contains("ERROR: libFuzzer"))
            .unwrap_or("see the log");
        return Err(format!(
            "fuzz target {target} failed ({}): {cause}\n  input: {artifact}\n  log: {}",
            out.status,
            log.display()
        ));
    }
    let executions = stat(&text, "stat::number_of_executed_units:")
        .ok_or_else(|| format!("fuzz {target}: no execution count in {}", log.display()))?;
    eprintln!("    {target}: {executions} executions in {elapsed:.1}s");
    Ok(Outcome {
        target,
        executions,
        seconds: elapsed,
        corpus: count_files(&corpus),
    })
}

fn stat(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

fn count_files(dir: &PathBuf) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.filter_map(std::result::Result::ok).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_its_source_and_names_select_them() {
        for t in TARGETS {
            let source = crate::root()
                .join("fuzz/fuzz_targets")
                .join(format!("{}.rs", t.name));
            assert!(source.is_file(), "{}", source.display());
        }
        assert_eq!(select(&[]).unwrap(), TARGETS);
        let one = select(&["engine_script".to_owned()]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].flags, ENGINE_SCRIPT_FLAGS);
        let err = select(&["engine".to_owned()]).unwrap_err();
        assert!(err.contains("engine_script"), "{err}");
    }
}
