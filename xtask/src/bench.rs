//! `cargo xtask bench`: every balloon policy on the same scenarios in one run, plus the
//! core's CPU per frame, into `target/bench/report.md` and SVG charts.
//!
//! 1. criterion: `cargo bench -p vmballoon-core --features fake --bench engine`
//!    (medians land in `target/criterion/engine-1GiB/*/new/estimates.json`);
//! 2. callgrind: the `workload` example of `vmballoon-core` (current tree), 1 GiB of
//!    inflate and deflate with 4 KiB and 2 MiB pages, instructions of `measured` only;
//! 3. the same for the baseline: the commit that cut per-frame instructions (4e80fec)
//!    with `channel.rs` and `mask.rs` taken from its parent, i.e. the bench harness on the
//!    pre-cut core, extracted with `git show` into `target/bench/baseline/` and built
//!    there in its own target directory (cached: rebuilt only when the commits change);
//! 4. `vmballoon-bench` (the simulator's benchmark suite, release build): every policy on
//!    every benchmark scenario, the report with budgets, the charts, `results.json`.
//!
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

/// The subject of the commit that cut the per-frame instructions.
const CUT_SUBJECT: &str = "core: minimal-cost bench platform";

/// Its hash when the log cannot be searched.
const CUT_FALLBACK: &str = "4e80fecb27152819df1ad6043fb39da13f613c98";

/// The files the cut changed in the engine's hot path: the baseline takes them from the
/// cut's parent.
const CUT_FILES: [&str; 2] = [
    "crates/vmballoon-core/src/channel.rs",
    "crates/vmballoon-core/src/mask.rs",
];

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

/// The commit that cut the instructions, and its parent.
fn cut_commits(root: &Path) -> util::Result<(String, String)> {
    let log = git_text(root, &["log", "--format=%H%x09%s"]).unwrap_or_default();
    let cut = log
        .lines()
        .find_map(|l| {
            let (hash, subject) = l.split_once('\t')?;
            subject.starts_with(CUT_SUBJECT).then(|| hash.to_owned())
        })
        .unwrap_or_else(|| CUT_FALLBACK.to_owned());
    let parent = git_text(root, &["rev-parse", &format!("{cut}^")])?;
    Ok((cut, parent))
}

/// The baseline's stand-alone workspace manifest: the core crate alone, the root's release
/// profile (LTO, abort), so its code is built exactly as the current one.
const BASELINE_MANIFEST: &str = r#"# Written by `cargo xtask bench`: the pre-cut core with its bench harness.
[workspace]
members = ["crates/vmballoon-core"]
resolver = "3"

[workspace.package]
version = "0.1.0"
edition = "2024"
rust-version = "1.91"
license = "MIT OR Apache-2.0"
publish = false

[workspace.lints.rust]

[profile.release]
panic = "abort"
lto = true
"#;

/// The core crate's manifest without criterion (the example needs no dev-dependency, and
/// the baseline must build offline and fast).
fn strip_bench(manifest: &str) -> String {
    let mut out = String::new();
    let mut skip = false;
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            skip = t == "[dev-dependencies]" || t == "[[bench]]";
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Extracts and builds the baseline's `workload` example; returns it and its label.
fn baseline(root: &Path, dir: &Path) -> util::Result<(PathBuf, String)> {
    let (cut, parent) = cut_commits(root)?;
    let label = format!(
        "{} with {} from {} (before the cut)",
        &cut[..cut.len().min(7)],
        CUT_FILES
            .iter()
            .map(|f| f.rsplit('/').next().unwrap_or(f))
            .collect::<Vec<_>>()
            .join(" and "),
        &parent[..parent.len().min(7)]
    );
    let stamp = format!("{cut} {parent}\n");
    let stamp_file = dir.join("STAMP");
    let target = dir.join("target");
    let bin = target.join("release/examples/workload");
    let fresh = std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp);
    if !fresh {
        let _ = std::fs::remove_dir_all(dir.join("crates"));
        let files = git_text(
            root,
            &[
                "ls-tree",
                "-r",
                "--name-only",
                &cut,
                "crates/vmballoon-core",
            ],
        )?;
        for file in files.lines() {
            let rev = if CUT_FILES.contains(&file) {
                &parent
            } else {
                &cut
            };
            let mut text = git(root, &["show", &format!("{rev}:{file}")])?;
            if file.ends_with("Cargo.toml") {
                text = strip_bench(&String::from_utf8_lossy(&text)).into_bytes();
            }
            let path = dir.join(file);
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
            }
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        std::fs::write(dir.join("Cargo.toml"), BASELINE_MANIFEST)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    util::step(
        "build the baseline workload (pre-cut core)",
        Command::new(util::cargo())
            .args([
                "build",
                "--release",
                "--features",
                "fake",
                "--example",
                "workload",
            ])
            .arg("--manifest-path")
            .arg(dir.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target),
    )?;
    std::fs::write(&stamp_file, stamp).map_err(|e| format!("{}: {e}", stamp_file.display()))?;
    Ok((bin, label))
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

    // 2./3. Instruction counts, current tree and baseline.
    let mut baseline_label = String::new();
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
        match baseline(&root, &out.join("baseline")) {
            Ok((bin, label)) => {
                for (path, size) in WORKLOADS {
                    callgrind(
                        &bin,
                        path,
                        size,
                        &cg.join(format!("baseline-{path}-{size}.out")),
                    )?;
                }
                baseline_label = label;
            }
            Err(e) => eprintln!("xtask bench: no baseline instruction counts: {e}"),
        }
    } else {
        eprintln!(
            "xtask bench: valgrind not found (apt-get install valgrind): the report leaves out \
             instruction counts"
        );
    }

    // 4. The simulations, the report and the charts.
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
            .arg("--baseline-label")
            .arg(&baseline_label)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_manifest_loses_criterion_only() {
        let m = "[package]\nname = \"c\"\n\n[features]\nfake = []\n\n[dev-dependencies]\n\
                 criterion = \"0.8\"\n\n[[bench]]\nname = \"engine\"\nharness = false\n\n\
                 [[example]]\nname = \"workload\"\n\n[lints]\nworkspace = true\n";
        let s = strip_bench(m);
        assert!(!s.contains("criterion") && !s.contains("[[bench]]"));
        assert!(s.contains("[[example]]") && s.contains("fake = []") && s.contains("[lints]"));
    }
}
