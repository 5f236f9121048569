//! `cargo xtask bench`: every balloon policy on the same scenarios in one run, plus the
//! core's CPU per frame, into `target/bench/report.md` and SVG charts.
//!
//! 1. criterion: `cargo bench -p vmballoon-core --features fake --bench engine`
//!    (medians land in `target/criterion/engine-1GiB/*/new/estimates.json`);
//! 2. callgrind: the `workload` example of `vmballoon-core` (current tree), 1 GiB of
//!    inflate and deflate with 4 KiB and 2 MiB pages, instructions of `measured` only;
//! 3. `vmballoon-bench` (the simulator's benchmark suite, release build): every policy on
//!    every benchmark scenario, the report with budgets, the charts, `results.json`.
//!
//! The instructions per frame before the per-frame cut (83.5 inflate, 76.2 deflate, 4 KiB)
//! are the recorded measurement the budget compares with; the old tree is not rebuilt.
//! Without valgrind the instruction counts are left out of the report (install it with
//! `apt-get install valgrind`); nothing else is optional.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::util;

/// The workloads of the callgrind harness: `(path, page size)`; files are named
/// `<path>-<size>`.
const WORKLOADS: [(&str, &str); 4] = [
    ("inflate", "4k"),
    ("deflate", "4k"),
    ("inflate", "2m"),
    ("deflate", "2m"),
];

/// MiB moved per workload (the lead's 1 GiB figure).
const WORKLOAD_MIB: &str = "1024";

/// The cargo target directory (`CARGO_TARGET_DIR` or `<root>/target`).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Runs `git args` in `root` and returns its stdout.
fn git(root: &Path, args: &[&str]) -> util::Result<Vec<u8>> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .map_err(|e| format!("git {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

fn git_text(root: &Path, args: &[&str]) -> util::Result<String> {
    Ok(String::from_utf8_lossy(&git(root, args)?).trim().to_owned())
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Counts the instructions of `measured` in one workload run into `out`.
fn callgrind(workload: &Path, path: &str, size: &str, out: &Path) -> util::Result {
    util::step(
        &format!("callgrind {path} {size} ({})", out.display()),
        Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg("--toggle-collect=*measured*")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(workload)
            .args([path, size, WORKLOAD_MIB])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
}

/// What the current tree is: the commit, and whether files differ from it.
fn current_label(root: &Path) -> String {
    let head = git_text(root, &["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let dirty = git(root, &["status", "--porcelain", "--untracked-files=no"])
        .map(|o| !o.is_empty())
        .unwrap_or(false);
    if dirty {
        format!("{head} + uncommitted changes")
    } else {
        head
    }
}

/// `cargo xtask bench`.
pub fn run() -> util::Result {
    let start = Instant::now();
    let root = super::root();
    let target = target_dir(&root);
    let out = target.join("bench");
    let cg = out.join("callgrind");
    std::fs::create_dir_all(&cg).map_err(|e| format!("{}: {e}", cg.display()))?;
    let cargo = util::cargo();

    // 1. Criterion medians of the engine's per-frame cost.
    util::step(
        "criterion: cargo bench -p vmballoon-core --features fake --bench engine",
        Command::new(&cargo).args([
            "bench",
            "-p",
            "vmballoon-core",
            "--features",
            "fake",
            "--bench",
            "engine",
        ]),
    )?;

    // 2. Instruction counts of the current tree.
    if have("valgrind") {
        util::step(
            "build the workload example (current tree)",
            Command::new(&cargo).args([
                "build",
                "--release",
                "-p",
                "vmballoon-core",
                "--features",
                "fake",
                "--example",
                "workload",
            ]),
        )?;
        let current = target.join("release/examples/workload");
        for (path, size) in WORKLOADS {
            callgrind(
                &current,
                path,
                size,
                &cg.join(format!("current-{path}-{size}.out")),
            )?;
        }
    } else {
        eprintln!(
            "xtask bench: valgrind not found (apt-get install valgrind): the report leaves out \
             instruction counts"
        );
    }

    // 3. The simulations, the report and the charts.
    util::step(
        "build vmballoon-bench (release)",
        Command::new(&cargo).args([
            "build",
            "--release",
            "-p",
            "vmballoon-sim",
            "--bin",
            "vmballoon-bench",
        ]),
    )?;
    let elapsed = start.elapsed().as_secs_f64();
    util::step(
        "vmballoon-bench: every policy on every benchmark scenario",
        Command::new(target.join("release/vmballoon-bench"))
            .arg("--scenarios")
            .arg(root.join("scenarios"))
            .arg("--out")
            .arg(&out)
            .arg("--criterion")
            .arg(target.join("criterion"))
            .arg("--callgrind")
            .arg(&cg)
            .arg("--current-label")
            .arg(current_label(&root))
            .arg("--elapsed-s")
            .arg(format!("{elapsed:.1}")),
    )?;
    eprintln!(
        "xtask bench: wrote {} in {:.0} s",
        out.join("report.md").display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
