//! `cargo xtask check-windows` and `cargo xtask package`.
//!
//! **check-windows** type-checks (and lints) the whole driver crate, every `cfg(windows)`
//! glue module included, for `x86_64-pc-windows-msvc` on a Linux host
//! (`docs/architecture.md`, "Verification without Windows" §3). The real `wdk*` crates cannot
//! build off Windows (wdk-build's `compile_error!`), so Cargo's `[patch]` swaps in the
//! mirror in `xtask/mirror/` — exactly the WDK items the glue uses, in bindgen's shape — via
//! `--config 'patch.crates-io.<crate>.path=...'`, without touching `Cargo.toml`.
//!
//! A patch rewrites the lock file, so the check runs on a throwaway copy of the workspace
//! sources under `target/check-windows/ws` (its own `Cargo.lock` copy), with its own
//! `CARGO_TARGET_DIR`: the committed `Cargo.lock` is never written, even if another cargo
//! runs at the same time. The check verifies that afterwards.
//!
//! Before it builds, the check enforces the mirror README's "No data imports" rule, which a
//! type check cannot see (a C `extern` variable becomes a Rust extern static that type-checks
//! but does not link): no `static` in an `extern` block of the glue, none in the mirror's but
//! the WDF stub globals, and no known ntoskrnl data export named in the glue.
//!
//! Before the driver, the check type-checks every *other* workspace member for the driver's
//! target too: `cargo wdk build` has no `-p` and builds every member of the workspace for it
//! (README, "Build and package (on Windows)"), so a member that stopped compiling for
//! `x86_64-pc-windows-msvc` would fail the Windows lane.
//!
//! **package** (Windows) stages `inf/vmballoon.inx` as `./vmballoon.inx`, where cargo-wdk
//! looks for `<package>.inx` (beside the package's `Cargo.toml`), runs windows-drivers-rs's
//! `cargo wdk build` ([`CARGO_WDK_BUILD`]: build, stampinf, inf2cat, infverif, test-signing)
//! and checks that the package holds the driver, its INF and its catalog. The Windows lane
//! (`.github/workflows/windows.yml`) runs the same command line; a test holds them equal.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::golden;
use crate::util::{self, Result};

/// The driver's target.
pub const TARGET: &str = "x86_64-pc-windows-msvc";

/// The mirrored crates, each patched in from `xtask/mirror/<name>`: the driver's WDK
/// dependencies (`Cargo.toml`). The mirror's wdk-panic does not depend on `wdk` (the real
/// one does, for a debug break the glue never reaches), so `wdk` needs no mirror.
pub const MIRRORED: [&str; 2] = ["wdk-sys", "wdk-panic"];

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
pub fn stage_workspace(root: &Path, dir: &Path) -> Result<PathBuf> {
    let ws = dir.join("ws");
    if ws.exists() {
        fs::remove_dir_all(&ws).map_err(|e| format!("clean {}: {e}", ws.display()))?;
    }
    copy_tree(root, &ws).map_err(|e| format!("copy the workspace to {}: {e}", ws.display()))?;
    Ok(ws)
}

/// `cargo <verb> -p vmballoon --target x86_64-pc-windows-msvc` on the copy, with the mirror.
pub fn cargo_on_copy(root: &Path, ws: &Path, target_dir: &Path, verb: &str) -> Command {
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

/// ntoskrnl data exports declared by the WDK headers wdk-sys binds (wdm.h, ntddk.h,
/// ntifs.h). bindgen turns each into a plain extern static, which references `X` where
/// `ntoskrnl.lib` exports only `__imp_X`: the link fails (windows-drivers-rs#338). Not
/// exhaustive; the extern-block rules of [`data_import_findings`] catch the rest.
pub const DATA_EXPORTS: &[&str] = &[
    "CmKeyObjectType",
    "ExDesktopObjectType",
    "ExEventObjectType",
    "ExSemaphoreObjectType",
    "ExWindowStationObjectType",
    "FsRtlLegalAnsiCharacterArray",
    "HalDispatchTable",
    "HalPrivateDispatchTable",
    "InitSafeBootMode",
    "IoDeviceObjectType",
    "IoDriverObjectType",
    "IoFileObjectType",
    "KdDebuggerEnabled",
    "KdDebuggerNotPresent",
    "KeNumberProcessors",
    "MmBadPointer",
    "MmHighestUserAddress",
    "MmSystemRangeStart",
    "MmUserProbeAddress",
    "NlsMbCodePageTag",
    "NlsMbOemCodePageTag",
    "NlsOemLeadByteInfo",
    "PsInitialSystemProcess",
    "PsJobType",
    "PsProcessType",
    "PsThreadType",
    "SeExports",
    "SeTokenObjectType",
    "TmEnlistmentObjectType",
    "TmResourceManagerObjectType",
    "TmTransactionManagerObjectType",
    "TmTransactionObjectType",
];

/// The only extern statics the mirror may declare: the WDF stub library's globals, linked
/// statically (WdfDriverEntry.lib), used only by `call_unsafe_wdf_function_binding!`.
pub const ALLOWED_MIRROR_STATICS: [&str; 3] =
    ["WdfFunctions", "WdfDriverGlobals", "WdfFunctionCount"];

/// Which rules apply to a source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The driver glue (`src/`): no extern statics, no known data export named.
    Glue,
    /// The wdk-sys mirror: extern statics only from [`ALLOWED_MIRROR_STATICS`].
    Mirror,
}

/// The code part of a line: `//` comments (doc comments included) removed. Good enough for
/// this code base, whose string literals hold no `//`.
fn code_of(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether `code` names `ident` as a whole identifier.
fn names(code: &str, ident: &str) -> bool {
    code.match_indices(ident).any(|(i, _)| {
        let before = code.as_bytes().get(i.wrapping_sub(1)).copied();
        let after = code.as_bytes().get(i + ident.len()).copied();
        !before.is_some_and(is_ident_byte) && !after.is_some_and(is_ident_byte)
    })
}

/// The name a `static` item declares, if `code` declares one.
fn static_name(code: &str) -> Option<&str> {
    let mut words = code
        .split_whitespace()
        .skip_while(|w| matches!(*w, "pub" | "pub(crate)" | "pub(super)" | "safe" | "unsafe"));
    if words.next()? != "static" {
        return None;
    }
    let word = words.find(|w| *w != "mut")?;
    let name = word.split(':').next()?;
    (!name.is_empty()).then_some(name)
}

/// Violations of the "No data imports" rule in one file's `text`, as `line: message`.
#[must_use]
pub fn data_import_findings(text: &str, source: Source) -> Vec<String> {
    let mut out = Vec::new();
    // Brace depth inside an `extern` block, if in one.
    let mut depth: Option<i32> = None;
    for (n, line) in text.lines().enumerate() {
        let code = code_of(line);
        let n = n + 1;
        let opens_block = code.trim_end().ends_with('{') && !names(code, "fn");
        if depth.is_none() && names(code, "extern") && opens_block {
            depth = Some(0);
        }
        if let Some(d) = depth.as_mut() {
            if let Some(name) = static_name(code) {
                let allowed = source == Source::Mirror && ALLOWED_MIRROR_STATICS.contains(&name);
                if !allowed {
                    out.push(format!("{n}: extern static `{name}` (a data import)"));
                }
            }
            for b in code.bytes() {
                match b {
                    b'{' => *d += 1,
                    b'}' => *d -= 1,
                    _ => {}
                }
            }
            if *d <= 0 {
                depth = None;
            }
        }
        if source == Source::Glue {
            for export in DATA_EXPORTS.iter().filter(|e| names(code, e)) {
                out.push(format!("{n}: `{export}` is an ntoskrnl data export"));
            }
        }
    }
    out
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The mirror README's "No data imports" rule over the glue (`src/`) and the wdk-sys
/// mirror. The driver's other crates cannot break it: `vmballoon-core` and `vmballoon-nt`
/// are `forbid(unsafe_code)` (an `extern` block is unsafe) and do not depend on `wdk-sys`,
/// and `vmballoon-backdoor` declares no `extern` block.
fn check_no_data_imports(root: &Path) -> Result {
    eprintln!("==> check-windows: no data imports (xtask/mirror/README.md)");
    let mut findings = Vec::new();
    for (dir, source) in [
        (root.join("src"), Source::Glue),
        (root.join("xtask/mirror/wdk-sys/src"), Source::Mirror),
    ] {
        let mut files = Vec::new();
        rust_files(&dir, &mut files).map_err(|e| format!("{}: {e}", dir.display()))?;
        for file in files {
            let text = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            for f in data_import_findings(&text, source) {
                findings.push(format!("{}:{f}", file.display()));
            }
        }
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "check-windows: data imports do not link (xtask/mirror/README.md, \"No data \
             imports\"):\n  {}",
            findings.join("\n  ")
        ))
    }
}

/// Compares the mirror's signatures, values, types, derives and fields with the real
/// bindings' (`xtask/mirror/golden.txt`), and adds to the copy's `src/lib.rs` compile-time
/// assertions that its sizes, alignments and field offsets are the real ones.
fn stage_layout_asserts(root: &Path, ws: &Path) -> Result {
    let golden_path = root.join(golden::GOLDEN);
    let golden_text =
        fs::read_to_string(&golden_path).map_err(|e| format!("{}: {e}", golden_path.display()))?;
    let mirror = golden::mirror_facts(&root.join("xtask/mirror/wdk-sys/src"))?;
    let diff = golden::compare(&mirror, &golden_text);
    if !diff.is_empty() {
        return Err(format!(
            "check-windows: the mirror differs from the real bindings ({}):\n  {}",
            golden::GOLDEN,
            diff.join("\n  ")
        ));
    }
    let asserts = golden::layout_asserts(&mirror, &golden_text);
    let lib = ws.join("src/lib.rs");
    let mut text = fs::read_to_string(&lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    text.push_str("\n#[cfg(windows)]\nmod mirror_layout {\n");
    text.push_str(&asserts);
    text.push_str("}\n");
    fs::write(&lib, text).map_err(|e| format!("{}: {e}", lib.display()))
}

/// `cargo xtask check-windows`.
pub fn check_windows() -> Result {
    let root = crate::root();
    check_no_data_imports(&root)?;
    util::ensure_targets()?;
    util::step(
        "check-windows: cargo check of every other member (x86_64-pc-windows-msvc; cargo wdk \
         build builds them all)",
        Command::new(util::cargo()).args([
            "check",
            "--locked",
            "--workspace",
            "--exclude",
            "vmballoon",
            "--target",
            TARGET,
        ]),
    )?;
    let dir = root.join("target/check-windows");
    let lock_before = fs::read(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let ws = stage_workspace(&root, &dir)?;
    stage_layout_asserts(&root, &ws)?;
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

/// The Windows build: `cargo wdk build` (cargo-wdk [`CARGO_WDK_VERSION`]) for the release
/// profile, amd64 and InfVerif's Windows Driver rules (`/w`), with the committed `Cargo.lock`.
/// cargo-wdk builds every workspace member for `x86_64-pc-windows-msvc` and packages the one
/// with WDK metadata and a cdylib, the driver.
pub const CARGO_WDK_BUILD: [&str; 9] = [
    "wdk",
    "build",
    "--profile",
    "release",
    "--target-arch",
    "amd64",
    "--target-platform",
    "windows",
    "--locked",
];

/// The cargo-wdk release the build is written for (`cargo install cargo-wdk --version ..
/// --locked`).
pub const CARGO_WDK_VERSION: &str = "0.2.0";

/// The INF source, and where cargo-wdk reads it: `<package name>.inx` beside the driver's
/// `Cargo.toml` (gitignored).
pub const INX: (&str, &str) = ("inf/vmballoon.inx", "vmballoon.inx");

/// The package cargo-wdk writes, relative to the target directory: `<package>_package` next
/// to the driver's DLL, which it renames `.sys`.
pub const PACKAGE_DIR: &str = "x86_64-pc-windows-msvc/release/vmballoon_package";

/// What a package must hold: the driver, its stamped INF and its catalog.
pub const PACKAGE_FILES: [&str; 3] = ["vmballoon.sys", "vmballoon.inf", "vmballoon.cat"];

/// The files of [`PACKAGE_FILES`] missing or empty in `dir`, as messages.
#[must_use]
pub fn package_findings(dir: &Path) -> Vec<String> {
    PACKAGE_FILES
        .iter()
        .filter_map(|name| {
            let path = dir.join(name);
            match fs::metadata(&path) {
                Ok(m) if m.is_file() && m.len() > 0 => None,
                Ok(_) => Some(format!("{} is empty or not a file", path.display())),
                Err(e) => Some(format!("{}: {e}", path.display())),
            }
        })
        .collect()
}

/// `cargo xtask package [cargo wdk build args]` (Windows, WDK installed): stages the INF
/// source, runs [`CARGO_WDK_BUILD`] with `extra` appended (e.g. `--sign-mode off`) and checks
/// the package.
pub fn package(extra: &[String]) -> Result {
    if !cfg!(windows) {
        return Err(
            "package: cargo wdk build needs a Windows host with the WDK (README, \"Build and \
             package (on Windows)\")"
                .into(),
        );
    }
    let root = crate::root();
    let install = format!("cargo install cargo-wdk --version {CARGO_WDK_VERSION} --locked");
    let version = Command::new(util::cargo())
        .args(["wdk", "--version"])
        .output()
        .map_err(|e| format!("package: cannot run `cargo wdk --version` ({e}): {install}"))?;
    let said = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    if !version.status.success() || !said.contains(CARGO_WDK_VERSION) {
        return Err(format!(
            "package: `cargo wdk --version` says {said:?}, not cargo-wdk {CARGO_WDK_VERSION}: \
             {install}"
        ));
    }
    let (source, staged) = (root.join(INX.0), root.join(INX.1));
    fs::copy(&source, &staged).map_err(|e| format!("stage {}: {e}", staged.display()))?;
    eprintln!("staged {} as {}", INX.0, staged.display());
    util::step(
        &format!("cargo {}", CARGO_WDK_BUILD.join(" ")),
        Command::new(util::cargo())
            .args(CARGO_WDK_BUILD)
            .args(extra),
    )?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let dir = root.join(target).join(PACKAGE_DIR);
    let findings = package_findings(&dir);
    if !findings.is_empty() {
        return Err(format!(
            "package: cargo wdk build left no complete package:\n  {}",
            findings.join("\n  ")
        ));
    }
    eprintln!("package: {}", dir.display());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        eprintln!("  {name}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_export_named_in_glue_code_is_found_but_not_in_comments() {
        let text = "// PsThreadType is a data export\n\
                    /// no `PsThreadType` here either\n\
                    let t = unsafe { *wdk_sys::PsThreadType }; // PsThreadType\n\
                    let p = PsThreadTypeLike;\n";
        assert_eq!(
            data_import_findings(text, Source::Glue),
            ["3: `PsThreadType` is an ntoskrnl data export"]
        );
        assert!(data_import_findings(text, Source::Mirror).is_empty());
    }

    #[test]
    fn extern_statics_are_rejected_in_the_glue_and_limited_in_the_mirror() {
        let text = "unsafe extern \"C\" {\n\
                    \x20   pub static mut WdfFunctions: *const WDFFUNC;\n\
                    \x20   pub static mut KeTickCount: KSYSTEM_TIME;\n\
                    \x20   fn ZwClose(h: HANDLE) -> NTSTATUS;\n\
                    }\n\
                    static POWER_STATE: [u16; 3] = [0; 3];\n";
        assert_eq!(
            data_import_findings(text, Source::Mirror),
            ["3: extern static `KeTickCount` (a data import)"]
        );
        assert_eq!(
            data_import_findings(text, Source::Glue),
            [
                "2: extern static `WdfFunctions` (a data import)",
                "3: extern static `KeTickCount` (a data import)"
            ]
        );
    }

    #[test]
    fn a_package_lacking_a_file_or_with_an_empty_one_is_reported() {
        let dir = std::env::temp_dir().join(format!("vmballoon-package-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(package_findings(&dir).len(), PACKAGE_FILES.len());
        for name in PACKAGE_FILES {
            fs::write(dir.join(name), b"MZ").unwrap();
        }
        assert!(package_findings(&dir).is_empty());
        fs::write(dir.join("vmballoon.sys"), b"").unwrap();
        fs::remove_file(dir.join("vmballoon.cat")).unwrap();
        let findings = package_findings(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(
            findings[0].contains("vmballoon.sys is empty"),
            "{findings:?}"
        );
        assert!(findings[1].contains("vmballoon.cat"), "{findings:?}");
    }

    #[test]
    fn the_glue_and_the_mirror_follow_the_rule() {
        check_no_data_imports(&crate::root()).unwrap();
    }
}
