//! `cargo xtask build-sys`: links the real `vmballoon.sys` on Linux and checks the image.
//!
//! 1. **Libraries** (`target/build-sys/lib`). Import libraries from the committed `.def`
//!    files in `xtask/link/` (export names only; written by `vmballoon-import-lib`, as the
//!    driver's build script writes the real link's `rpcrt4.lib`): `ntoskrnl.lib`, `hal.lib`,
//!    `WdfLdr.lib`, `wmilib.lib` and `rpcrt4.lib`. The **test-only** stand-ins for the WDK's
//!    static libraries `WdfDriverEntry.lib` and `aux_klib.lib` are compiled from
//!    `xtask/link/test-only/*.rs` with `clippy-driver` (so they are linted) into COFF
//!    objects and archived. `BufferOverflowFastFailK.lib` (the WDK's /GS failure routine)
//!    is an empty archive: Rust emits no /GS checks, and a symbol the image needed from it
//!    would fail the link as undefined.
//! 2. **Driver.** The crate is built for `x86_64-pc-windows-msvc` in release against the
//!    wdk mirror, on the throwaway workspace copy of `check-windows` (so the committed
//!    `Cargo.lock` is never rewritten; checked afterwards), and linked by rustup's
//!    `rust-lld` (lld-link) with the link arguments wdk-build gives a KMDF driver
//!    ([`LINK_ARGS`]; `/KERNEL` and `/IGNORE:` are MSVC-only and left out) and wdk-build's
//!    KMDF base libraries ([`BASE_LIBRARIES`]), plus `/RELEASE` so the PE checksum is set.
//! 3. **Checks** ([`crate::image`]): what a loader and a reviewer look at, and the stack
//!    budget. Any violation fails the command.
//!
//! Outputs in `target/build-sys/`: `vmballoon.sys`, `vmballoon.map`, `stack.txt` (the
//! budget report) and `facts.json` (addresses the emulator needs: the entry points, the
//! CPUID and `in` instructions, the aux_klib stand-in).

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use ar_archive_writer::{
    ArchiveKind, DEFAULT_OBJECT_READER, NewArchiveMember, write_archive_to_stream,
};
use vmballoon_import_lib::from_def;

use crate::image;
use crate::util::{self, Result};
use crate::windows::{self, TARGET};

/// The link arguments wdk-build (`configure_binary_build`, KMDF) gives the driver, less the
/// MSVC-only `/KERNEL`, `/IGNORE:4257` and `/MAPINFO:EXPORTS`; `/MAP:<file>` is added with
/// the path, and `/RELEASE` so the checksum is written (lld leaves it 0 otherwise).
pub const LINK_ARGS: [&str; 10] = [
    "/DRIVER",
    "/NODEFAULTLIB",
    "/SUBSYSTEM:NATIVE",
    "/ENTRY:FxDriverEntry",
    "/NXCOMPAT",
    "/DYNAMICBASE",
    "/OPT:REF,ICF",
    "/INTEGRITYCHECK",
    "/MANIFEST:NO",
    "/RELEASE",
];

/// wdk-build's base libraries for a KMDF driver (`base_libraries`), linked as static
/// libraries in this order.
pub const BASE_LIBRARIES: [&str; 6] = [
    "BufferOverflowFastFailK",
    "ntoskrnl",
    "hal",
    "wmilib",
    "WdfLdr",
    "WdfDriverEntry",
];

/// Import libraries made from `xtask/link/<def>`: (def file, library file).
const IMPORT_LIBRARIES: [(&str, &str); 5] = [
    ("ntoskrnl.def", "ntoskrnl.lib"),
    ("hal.def", "hal.lib"),
    ("wdfldr.def", "WdfLdr.lib"),
    ("wmilib.def", "wmilib.lib"),
    ("rpcrt4.def", "rpcrt4.lib"),
];

/// Test-only stand-ins: (source in `xtask/link/test-only/`, library file).
const STAND_INS: [(&str, &str); 2] = [
    ("wdf_driver_entry.rs", "WdfDriverEntry.lib"),
    ("aux_klib.rs", "aux_klib.lib"),
];

/// What `build-sys` produced.
pub struct Built {
    /// The driver image.
    pub sys: PathBuf,
    /// The facts the emulator reads.
    pub facts: PathBuf,
}

/// The import library of the `.def` file `def`, at `out` (`vmballoon_import_lib`: the same
/// bytes the driver's build script gives the real Windows link).
fn write_import_lib(def: &Path, out: &Path) -> Result {
    let text = fs::read_to_string(def).map_err(|e| format!("{}: {e}", def.display()))?;
    let bytes = from_def(&text).map_err(|e| format!("{}: {e}", def.display()))?;
    fs::write(out, bytes).map_err(|e| format!("{}: {e}", out.display()))
}

/// A COFF archive of `objects` (name, bytes) at `out` (empty when `objects` is).
fn write_archive(objects: &[(String, Vec<u8>)], out: &Path) -> Result {
    let members: Vec<NewArchiveMember<'_>> = objects
        .iter()
        .map(|(name, bytes)| {
            NewArchiveMember::new(bytes.as_slice(), &DEFAULT_OBJECT_READER, name.clone())
        })
        .collect();
    let mut buf = Cursor::new(Vec::new());
    write_archive_to_stream(&mut buf, &members, ArchiveKind::Coff, false, None)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    fs::write(out, buf.into_inner()).map_err(|e| format!("{}: {e}", out.display()))
}

/// Compiles a test-only stand-in with `clippy-driver` (lints as errors) into one object.
fn compile_stand_in(source: &Path, obj: &Path) -> Result {
    util::step(
        &format!("build-sys: test-only stand-in {}", source.display()),
        Command::new("clippy-driver")
            .args([
                "--edition",
                "2024",
                "--crate-type",
                "rlib",
                "--emit",
                "obj",
                "-C",
                "panic=abort",
                "-C",
                "opt-level=2",
                "--target",
                TARGET,
                "-D",
                "warnings",
                "-D",
                "clippy::undocumented_unsafe_blocks",
                "-o",
            ])
            .arg(obj)
            .arg(source),
    )
}

/// Makes every library of the link in `lib`.
fn libraries(root: &Path, lib: &Path) -> Result {
    fs::create_dir_all(lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    let link = root.join("xtask/link");
    for (def, out) in IMPORT_LIBRARIES {
        write_import_lib(&link.join(def), &lib.join(out))?;
    }
    for (source, out) in STAND_INS {
        let obj = lib.join(source.replace(".rs", ".obj"));
        compile_stand_in(&link.join("test-only").join(source), &obj)?;
        let bytes = fs::read(&obj).map_err(|e| format!("{}: {e}", obj.display()))?;
        let name = obj
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        write_archive(&[(name, bytes)], &lib.join(out))?;
    }
    write_archive(&[], &lib.join("BufferOverflowFastFailK.lib"))
}

/// rustup's `rust-lld`, next to the active toolchain's rustc.
fn rust_lld() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustc --print sysroot: {e}"))?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let host = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("rustc -vV: {e}"))?;
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .ok_or("rustc -vV: no host line")?;
    let lld = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(host)
        .join("bin/rust-lld");
    if lld.is_file() {
        Ok(lld)
    } else {
        Err(format!("{} is missing (rustup's rust-lld)", lld.display()))
    }
}

/// `cargo xtask build-sys`.
pub fn build_sys() -> Result<Built> {
    let root = crate::root();
    util::ensure_targets()?;
    let dir = root.join("target/build-sys");
    let lib = dir.join("lib");
    libraries(&root, &lib)?;
    let lock_before = fs::read(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let ws = windows::stage_workspace(&root, &dir)?;
    let map = dir.join("vmballoon.map");
    let mut cmd = windows::cargo_on_copy(&root, &ws, &dir.join("target"), "rustc");
    cmd.args(["--lib", "--release", "--"])
        .arg("-C")
        .arg(format!("linker={}", rust_lld()?.display()))
        .arg("-L")
        .arg(format!("native={}", lib.display()));
    for name in BASE_LIBRARIES {
        cmd.arg("-l").arg(format!("static={name}"));
    }
    for arg in LINK_ARGS {
        cmd.arg("-C").arg(format!("link-arg={arg}"));
    }
    cmd.arg("-C")
        .arg(format!("link-arg=/MAP:{}", map.display()));
    util::step(
        "build-sys: cargo rustc (release, rust-lld, KMDF link)",
        &mut cmd,
    )?;
    let lock_after = fs::read(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    if lock_before != lock_after {
        return Err("build-sys: the workspace Cargo.lock changed during the build".into());
    }
    let dll = dir
        .join("target")
        .join(TARGET)
        .join("release/vmballoon.dll");
    let sys = dir.join("vmballoon.sys");
    fs::copy(&dll, &sys).map_err(|e| format!("{}: {e}", dll.display()))?;
    let image = fs::read(&sys).map_err(|e| format!("{}: {e}", sys.display()))?;
    let map_text = fs::read_to_string(&map).map_err(|e| format!("{}: {e}", map.display()))?;
    let report = image::check(&image, &map_text)?;
    let stack = dir.join("stack.txt");
    fs::write(&stack, report.stack_text()).map_err(|e| format!("{}: {e}", stack.display()))?;
    let facts = dir.join("facts.json");
    fs::write(&facts, report.facts_json()).map_err(|e| format!("{}: {e}", facts.display()))?;
    eprint!("{}", report.summary());
    if !report.violations.is_empty() {
        return Err(format!(
            "build-sys: {} image check(s) failed:\n  {}",
            report.violations.len(),
            report.violations.join("\n  ")
        ));
    }
    eprintln!(
        "build-sys: {} ({} bytes) passes every image check",
        sys.display(),
        image.len()
    );
    Ok(Built { sys, facts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn def_files_parse_and_every_committed_one_is_valid() {
        let (library, exports) =
            vmballoon_import_lib::parse("; c\nLIBRARY a.sys\nEXPORTS\n  X ; y\n  Y\n").unwrap();
        assert_eq!(library, "a.sys");
        assert_eq!(exports, ["X", "Y"]);
        for bad in [
            "EXPORTS\n X\n",
            "LIBRARY a\n",
            "LIBRARY a\nEXPORTS\n X = Y\n",
        ] {
            assert!(vmballoon_import_lib::parse(bad).is_err(), "{bad:?}");
        }
        for (file, _) in IMPORT_LIBRARIES {
            let path = crate::root().join("xtask/link").join(file);
            from_def(&fs::read_to_string(&path).unwrap()).unwrap();
        }
    }
}
