//! `cargo xtask emulate [SCENARIO...]`: runs the real `vmballoon.sys` in an emulated Windows
//! kernel against the simulator's host and guest models (`xtask/emulate/README.md`).
//!
//! 1. `build-sys` links and checks the image (and writes the facts the harness needs);
//! 2. `vmballoon-serve` (the simulator's models as a JSON-lines server) is built in release;
//! 3. a Python virtual environment in `target/emulate/venv` gets the pinned packages of
//!    `xtask/emulate/requirements.txt` (speakeasy-emulator 1.5.11 over unicorn 1.0.2),
//!    reinstalled only when that file changes; Debian's `python3-venv` is installed with
//!    apt if `venv` is missing;
//! 4. `xtask/emulate/harness.py` runs every scenario of `xtask/emulate/scenarios.toml`
//!    (or the ones named) and prints one JSON line each, with its verdict.
//!
//! Each scenario is printed: DriverEntry's status, the balloon calls by command, frames
//! locked and freed, the peak balloon, the registry cap and whether it held, the memory
//! signals that woke the worker, the ETW events the driver wrote, what happened at each
//! power notification and image load, the harness's contract checks and the model's
//! violations. Any failed check or expectation of any scenario fails the command.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::sys;
use crate::util::{self, Result};

/// Python 3.11 or newer (`tomllib`), as `python3.11` or `python3`.
fn find_python() -> Result<String> {
    for candidate in ["python3.11", "python3.12", "python3.13", "python3"] {
        let ok = Command::new(candidate)
            .args([
                "-c",
                "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(candidate.to_owned());
        }
    }
    Err("emulate: no Python 3.11 or newer (apt-get install python3)".into())
}

/// The virtual environment with the pinned packages; returns its interpreter.
fn venv(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/emulate/venv");
    let python = dir.join("bin/python");
    let requirements = root.join("xtask/emulate/requirements.txt");
    let wanted = fs::read(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    let stamp = dir.join("requirements.installed");
    if python.is_file() && fs::read(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    let system = find_python()?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let made = Command::new(&system)
        .args(["-m", "venv"])
        .arg(&dir)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        util::step(
            "emulate: apt-get install python3-venv",
            Command::new("apt-get").args(["install", "-y", "python3-venv"]),
        )?;
        util::step(
            "emulate: python -m venv",
            Command::new(&system).args(["-m", "venv"]).arg(&dir),
        )?;
    }
    util::step(
        "emulate: pip install -r xtask/emulate/requirements.txt",
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
    )?;
    fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

fn mib(frames: &Value) -> f64 {
    frames.as_f64().unwrap_or(0.0) / 256.0
}

/// What happened at one power notification.
fn power_line(p: &Value) -> String {
    let at = p["at_s"].as_f64().unwrap_or(0.0);
    let blocked = p["returned_blocked"].as_array().map_or(0, Vec::len);
    let callback = if blocked == 0 {
        "callback returned without blocking".to_owned()
    } else {
        format!("callback BLOCKED {blocked} time(s)")
    };
    match p["event"].as_str() {
        Some("sleep") => format!(
            "leaving S0 at {at:.1} s: {callback}; idle at {:.1} s with the host holding {} \
             frames, the driver {}",
            p["idle_at_s"].as_f64().unwrap_or(f64::NAN),
            p["held_when_idle"],
            p["owned_when_idle"]
        ),
        _ => format!(
            "back in S0 at {at:.1} s (balloon before: host {} frames, driver {}): {callback}",
            p["held_before"], p["owned_before"]
        ),
    }
}

/// What happened when one image loaded.
fn image_line(i: &Value) -> String {
    let path = i["path"].as_str().unwrap_or("(no name)");
    let outcome = if i["stand_down"].as_bool() == Some(true) {
        match i["stood_down_at_s"].as_f64() {
            Some(t) => format!(
                "stood down at {t:.1} s (host {} frames, driver {} when idle)",
                i["held_when_idle"], i["owned_when_idle"]
            ),
            None => "did NOT stand down".to_owned(),
        }
    } else {
        "ignored".to_owned()
    };
    format!(
        "{path} (process {}) at {:.1} s with {:.1} MiB ballooned: {outcome}",
        i["pid"],
        i["at_s"].as_f64().unwrap_or(0.0),
        mib(&i["held_before"])
    )
}

/// One scenario's lines for the terminal.
fn describe(r: &Value) -> String {
    let mut out = String::new();
    let report = &r["report"];
    let status = r["status"]
        .as_u64()
        .map_or_else(|| "-".to_owned(), |s| format!("{s:#010x}"));
    let calls: Vec<String> = r["backdoor_calls"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{:<20} {:<15} DriverEntry {status}  {:.1} s",
        r["name"].as_str().unwrap_or("?"),
        r["verdict"].as_str().unwrap_or("?").to_uppercase(),
        r["seconds"].as_f64().unwrap_or(0.0)
    );
    let _ = writeln!(
        out,
        "    calls: {}",
        if calls.is_empty() {
            "none".to_owned()
        } else {
            calls.join(", ")
        }
    );
    let cap = match r["cap_mib"].as_u64() {
        Some(cap) => format!(
            "; MaxBalloonMB {cap}: {}",
            if mib(&report["peak_held_frames"]) <= cap as f64 {
                "honoured"
            } else {
                "IGNORED"
            }
        ),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "    frames locked {} / unlocked {}; peak balloon {:.1} MiB, at the end {:.1} MiB{cap}",
        report["frames_locked"],
        report["frames_unlocked"],
        mib(&report["peak_held_frames"]),
        mib(&report["final_held_frames"]),
    );
    let mm = &r["mm"];
    let _ = writeln!(
        out,
        "    host: {} RESET, {} BUSY, {} refused; Mm: {} MDLs ({} short, {} none)",
        report["resets_answered"],
        report["busy_answered"],
        report["refused_pages"],
        mm["mdls"],
        mm["short"],
        mm["none"],
    );
    let waits = &r["multi_waits"];
    let _ = writeln!(
        out,
        "    waits: {} on several objects (up to {}; {} on more than THREAD_WAIT_OBJECTS, \
         {} with a WaitBlockArray); wakes by LowMemoryCondition {}, MaximumCommitCondition {}",
        waits["calls"],
        waits["max_count"],
        waits["over_thread_wait_objects"],
        waits["with_blocks"],
        r["wakes"]["low_memory"],
        r["wakes"]["high_commit"],
    );
    let mut events: Vec<(&String, u64)> = r["etw_counts"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    events.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let listed: Vec<String> = events.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "    ETW: {} events{}{}",
        r["etw_writes"],
        if listed.is_empty() { "" } else { ": " },
        listed.join(", ")
    );
    if let Some(values) = r["pcw_closed"]["values"].as_array() {
        let v = |i: usize| values.get(i).and_then(|x| x.as_u64()).unwrap_or(0);
        let _ = writeln!(
            out,
            "    counters at close ({}): Balloon MB {}, Frames Locked {}, Backdoor Calls {}; \
             bug-check callback {}",
            r["pcw_closed"]["name"].as_str().unwrap_or("?"),
            v(0),
            v(7),
            v(13),
            if r["bugcheck_registered"].as_bool() == Some(true) {
                "registered"
            } else {
                "not registered"
            }
        );
    }
    for d in r["dumps"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "    dump at {} s: {} range(s), {} frames left out of {} the host held",
            d["at_s"], d["ranges"], d["frames"], d["held"]
        );
    }
    for p in r["power"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "    power: {}", power_line(p));
    }
    for i in r["images"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "    image: {}", image_line(i));
    }
    let stacks: Vec<String> = r["stacks"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {v} B")).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "    violations {} (model) + {} (harness); leaked frames {}; kernel calls {}; stack used: {}",
        report["violations"],
        r["failures"].as_array().map_or(0, Vec::len),
        report["leaked_frames"],
        r["api_calls"],
        if stacks.is_empty() {
            "-".to_owned()
        } else {
            stacks.join(", ")
        }
    );
    if let Some(problems) = r["problems"].as_array() {
        let mut seen = Vec::new();
        for p in problems.iter().filter_map(Value::as_str) {
            if !seen.contains(&p) {
                seen.push(p);
            }
        }
        for p in seen.iter().take(6) {
            let _ = writeln!(out, "    ! {p}");
        }
        if seen.len() > 6 {
            let _ = writeln!(out, "    ! ... {} more", seen.len() - 6);
        }
    }
    out
}

/// `cargo xtask emulate [names]`.
pub fn run(names: &[String]) -> Result {
    let start = Instant::now();
    let root = crate::root();
    let built = sys::build_sys()?;
    util::step(
        "emulate: build vmballoon-serve (release)",
        Command::new(util::cargo()).args([
            "build",
            "--release",
            "-p",
            "vmballoon-sim",
            "--bin",
            "vmballoon-serve",
        ]),
    )?;
    let serve = root.join("target/release/vmballoon-serve");
    let python = venv(&root)?;
    eprintln!("==> emulate: the scenarios of xtask/emulate/scenarios.toml");
    let run_start = Instant::now();
    let out = Command::new(&python)
        .arg(root.join("xtask/emulate/harness.py"))
        .arg(&root)
        .arg(&serve)
        .arg(&built.sys)
        .arg(&built.facts)
        .arg(root.join("xtask/emulate/scenarios.toml"))
        .args(names)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("emulate: cannot run the harness: {e}"))?;
    if !out.status.success() {
        return Err(format!("emulate: the harness failed ({})", out.status));
    }
    let mut ran = 0usize;
    let mut bad = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let r: Value =
            serde_json::from_str(line).map_err(|e| format!("emulate: bad harness line: {e}"))?;
        eprint!("{}", describe(&r));
        ran += 1;
        if r["verdict"].as_str() != Some("pass") {
            bad.push(r["name"].as_str().unwrap_or("?").to_owned());
        }
    }
    eprintln!(
        "emulate: {ran} scenarios: {} passed, {} failed; harness {:.1} s, total {:.1} s",
        ran - bad.len(),
        bad.len(),
        run_start.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    if ran == 0 {
        return Err("emulate: no scenario ran".into());
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("emulate: failed: {}", bad.join(", ")))
    }
}
