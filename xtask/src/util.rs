//! Small helpers shared by the xtask commands.

use std::process::Command;
use std::time::Instant;

/// Result of an xtask step: an error message on failure.
pub type Result<T = ()> = std::result::Result<T, String>;

/// Targets the portable crates are also built for.
pub const CROSS_TARGETS: [&str; 2] = ["x86_64-pc-windows-msvc", "x86_64-unknown-none"];

/// The cargo that runs us.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Runs `cmd` in the workspace root, printing a header and the time it took.
pub fn step(name: &str, cmd: &mut Command) -> Result {
    step_in(&super::root(), name, cmd)
}

/// Runs `cmd` in `dir`, printing a header and the time it took.
pub fn step_in(dir: &std::path::Path, name: &str, cmd: &mut Command) -> Result {
    eprintln!("==> {name}");
    let start = Instant::now();
    let status = cmd
        .current_dir(dir)
        .status()
        .map_err(|e| format!("{name}: cannot run {cmd:?}: {e}"))?;
    eprintln!("    {name}: {:.1}s", start.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

/// Installs the cross targets with rustup when they are missing. rustup does not install
/// anything on its own on these machines (`RUSTUP_AUTO_INSTALL=0`).
pub fn ensure_targets() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup: {e}"))?;
    let installed = String::from_utf8_lossy(&installed.stdout);
    let missing: Vec<&str> = CROSS_TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(
        "rustup target add",
        Command::new("rustup")
            .arg("target")
            .arg("add")
            .args(&missing),
    )
}
