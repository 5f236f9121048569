//! `cargo xtask`: the project's automation. `cargo xtask ci` is the Linux gate that CI runs.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

mod bench;
mod emulate;
mod fuzz;
mod golden;
mod image;
#[cfg(test)]
mod lane;
mod qemu;
mod real;
mod sys;
mod util;
mod windows;

/// vmballoon project automation: `cargo xtask ci` is the Linux gate CI runs. (The
/// simulator is not an xtask: `cargo run -p vmballoon-sim`.)
#[derive(Parser)]
#[command(name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The Linux gate: fmt, clippy, tests, the QEMU backdoor peer, a fuzz smoke, no_std and
    /// Windows-target builds, check-windows, the linked driver's image checks and emulated
    /// run, docs.
    Ci,
    /// Install the Rust targets the checks need (rustup does not auto-install here).
    Setup,
    /// Type-check and lint the driver glue for x86_64-pc-windows-msvc against the wdk mirror
    /// (checked against xtask/mirror/golden.txt), or with --wdk-headers against the real
    /// bindings generated from a WDK include tree.
    CheckWindows {
        /// A WDK content root (real WDK, or public header mirrors laid out like one).
        #[arg(long, value_name = "DIR")]
        wdk_headers: Option<PathBuf>,
        /// With --wdk-headers: rewrite xtask/mirror/golden.txt from the real bindings.
        #[arg(long, requires = "wdk_headers")]
        update_golden: bool,
    },
    /// Link the real vmballoon.sys on Linux (rust-lld, KMDF link arguments) and check the
    /// image: loader requirements, imports and the stack budget.
    BuildSys,
    /// Run the real vmballoon.sys in an emulated Windows kernel (speakeasy) against the
    /// simulator's host and guest models: every scenario of xtask/emulate/scenarios.toml,
    /// or the ones named.
    Emulate {
        /// Scenario names (default: all).
        names: Vec<String>,
    },
    /// Windows only: stage inf/vmballoon.inx as ./vmballoon.inx, run `cargo wdk build
    /// --profile release --target-arch amd64 --target-platform windows --locked` and check
    /// the package (vmballoon.sys, .inf, .cat).
    Package {
        /// Arguments appended to `cargo wdk build` (e.g. `--sign-mode off`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The backdoor against a real peer: QEMU's vmport, booted with a probe as /init.
    QemuPeer,
    /// Every balloon policy on the benchmark scenarios, plus core CPU per frame:
    /// target/bench/report.md and SVG charts.
    Bench,
    /// Fuzz every cargo-fuzz target in fuzz/, or the ones named, for N seconds each
    /// (nightly, libFuzzer).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Targets to run (default: all): channel_reply, engine_script, scenario_parse,
        /// memsnap.
        targets: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Ci => ci(),
        Task::Setup => util::ensure_targets(),
        Task::CheckWindows {
            wdk_headers: Some(dir),
            update_golden,
        } => real::check(&dir, update_golden),
        Task::CheckWindows { .. } => windows::check_windows(),
        Task::BuildSys => sys::build_sys().map(|_| ()),
        Task::Emulate { names } => emulate::run(&names),
        Task::Package { args } => windows::package(&args),
        Task::QemuPeer => qemu::run(),
        Task::Bench => bench::run(),
        Task::Fuzz { seconds, targets } => fuzz::run(seconds, &targets),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of `xtask/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn ci() -> util::Result {
    util::ensure_targets()?;
    let cargo = util::cargo();
    util::step(
        "fmt",
        Command::new(&cargo).args(["fmt", "--all", "--", "--check"]),
    )?;
    util::step(
        "clippy",
        Command::new(&cargo).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    util::step("test", Command::new(&cargo).args(["test", "--workspace"]))?;
    qemu::run()?;
    fuzz::smoke()?;
    for target in util::CROSS_TARGETS {
        util::step(
            &format!("build core+backdoor for {target}"),
            Command::new(&cargo).args([
                "build",
                "-p",
                "vmballoon-core",
                "-p",
                "vmballoon-backdoor",
                "--target",
                target,
            ]),
        )?;
    }
    windows::check_windows()?;
    // Links vmballoon.sys (build-sys, with its image checks) and runs it in the emulated
    // kernel against the simulator's models.
    emulate::run(&[])?;
    util::step(
        "doc",
        Command::new(&cargo)
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every `cargo xtask <word>` in `text` (the word after the prefix).
    fn advertised(text: &str) -> Vec<&str> {
        text.match_indices("cargo xtask ")
            .filter_map(|(i, m)| text.get(i + m.len()..))
            .filter_map(|rest| {
                rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .next()
            })
            .filter(|w| !w.is_empty() && !w.starts_with('-'))
            .collect()
    }

    #[test]
    fn xtask_help_advertises_only_existing_commands() {
        let mut cmd = super::Cli::command();
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        assert!(names.iter().any(|n| n == "ci"), "{names:?}");
        let help = cmd.render_long_help().to_string();
        assert!(!help.contains("| sim"), "{help}");
        let readme = include_str!("../../README.md");
        for (what, text) in [
            ("--help", help.as_str()),
            ("the package description", env!("CARGO_PKG_DESCRIPTION")),
            ("README.md", readme),
        ] {
            for word in advertised(text) {
                assert!(
                    names.iter().any(|n| n == word),
                    "{what} advertises `cargo xtask {word}`, which does not exist ({names:?})"
                );
            }
        }
        // Each command's one-line help is there.
        for name in &names {
            assert!(help.contains(name.as_str()), "--help lacks {name}");
        }
    }
}
