//! `cargo xtask check-windows` and `cargo xtask package`.
//!
//! **check-windows** type-checks (and lints) the whole driver crate, every `cfg(windows)`
//! glue module included, for `x86_64-pc-windows-msvc` on a Linux host
//! (`architecture.md`, "Verification without Windows" §3). The real `wdk*` crates cannot
//! build off Windows (wdk-build's `compile_error!`), so Cargo's `[patch]` swaps in the
//! mirror in `xtask/mirror/` — exactly the WDK items the glue uses, in bindgen's shape — via
//! `--config 'patch.crates-io.<crate>.path=...'`, without touching `Cargo.toml`.
//!
//! A patch rewrites the lock file, so the check runs on a throwaway copy of the workspace
//! sources under `target/check-windows/ws` (its own `Cargo.lock` copy), with its own
//! `CARGO_TARGET_DIR`: the committed `Cargo.lock` is never written, even if another cargo
//! runs at the same time. The check verifies that afterwards.
//!
//! **package** (Windows) stages `inf/vmballoon.inx` as `./vmballoon.inx`, where cargo-make's
//! `copy-inx-to-output` and cargo-wdk look for `<package>.inx`, then runs `cargo make`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, Result};

/// The driver's target.
pub const TARGET: &str = "x86_64-pc-windows-msvc";

/// The mirrored crates, each patched in from `xtask/mirror/<name>`.
pub const MIRRORED: [&str; 4] = ["wdk-sys", "wdk", "wdk-alloc", "wdk-panic"];

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            let name = entry.file_name();
            if name == "target" || name == ".git" {
                continue;
            }
            copy_tree(&entry.path(), &to.join(name))?;
        }
        Ok(())
    } else {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(from, to).map(|_| ())
    }
}

/// A fresh copy of the workspace (everything but `target/` and `.git`, so every member
/// manifest is there) under `target/check-windows/ws`.
fn stage_workspace(root: &Path, dir: &Path) -> Result<PathBuf> {
    let ws = dir.join("ws");
    if ws.exists() {
        fs::remove_dir_all(&ws).map_err(|e| format!("clean {}: {e}", ws.display()))?;
    }
    copy_tree(root, &ws).map_err(|e| format!("copy the workspace to {}: {e}", ws.display()))?;
    Ok(ws)
}

/// `cargo <verb> -p vmballoon --target x86_64-pc-windows-msvc` on the copy, with the mirror.
fn cargo_on_copy(root: &Path, ws: &Path, target_dir: &Path, verb: &str) -> Command {
    let mut cmd = Command::new(util::cargo());
    cmd.arg(verb)
        .arg("--manifest-path")
        .arg(ws.join("Cargo.toml"))
        .args(["-p", "vmballoon", "--target", TARGET]);
    for name in MIRRORED {
        let path = root.join("xtask/mirror").join(name);
        cmd.arg("--config").arg(format!(
            "patch.crates-io.{name}.path={}",
            toml_string(&path.display().to_string())
        ));
    }
    cmd.env("CARGO_TARGET_DIR", target_dir);
    cmd
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `cargo xtask check-windows`.
pub fn check_windows() -> Result {
    let root = crate::root();
    util::ensure_targets()?;
    let dir = root.join("target/check-windows");
    let lock_before = fs::read(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let ws = stage_workspace(&root, &dir)?;
    let target_dir = dir.join("target");
    util::step(
        "check-windows: cargo check (x86_64-pc-windows-msvc, wdk mirror)",
        &mut cargo_on_copy(&root, &ws, &target_dir, "check"),
    )?;
    util::step(
        "check-windows: cargo clippy -D warnings (x86_64-pc-windows-msvc, wdk mirror)",
        cargo_on_copy(&root, &ws, &target_dir, "clippy").args(["--", "-D", "warnings"]),
    )?;
    let lock_after = fs::read(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    if lock_before != lock_after {
        return Err("check-windows: the workspace Cargo.lock changed during the check".into());
    }
    eprintln!("check-windows: the driver glue type-checks for {TARGET} against the wdk mirror");
    Ok(())
}

/// `cargo xtask package [cargo-make args]` (Windows, WDK installed).
pub fn package(args: &[String]) -> Result {
    let root = crate::root();
    let staged = root.join("vmballoon.inx");
    fs::copy(root.join("inf/vmballoon.inx"), &staged)
        .map_err(|e| format!("stage {}: {e}", staged.display()))?;
    eprintln!("staged inf/vmballoon.inx as {}", staged.display());
    if !cfg!(windows) {
        return Err("package: cargo make needs a Windows host with the WDK".into());
    }
    util::step(
        "cargo make",
        Command::new(util::cargo()).arg("make").args(args),
    )
}
