//! `cargo xtask qemu-peer`: the backdoor against a real peer, QEMU's `vmport` device
//! (`docs/protocol.md` §8).
//!
//! 1. Installs `qemu-system-x86` with apt-get if it is missing (`sudo -n` unless root;
//!    never removing a package; from backports when `qemu-utils` came from there).
//! 2. Fetches a Debian cloud kernel without installing it: `apt-get download` of the
//!    package `linux-image-cloud-amd64` depends on, `dpkg-deb -x`, keep `boot/vmlinuz-*`
//!    as `target/qemu-peer/vmlinuz` (cached there; delete it to refresh).
//! 3. Builds `vmballoon-qemu-probe` (`xtask/qemu-probe`) for `x86_64-unknown-linux-musl`
//!    (a static binary) and packs it as `/init` into a newc initramfs written here in
//!    Rust, with the `/dev/console` node it needs (no `cpio` tool, no mknod).
//! 4. Boots it twice under TCG, `-machine pc,vmport=on` and `vmport=off`, each with a
//!    timeout. The probe prints `PASS name: ..` / `FAIL name: ..` per check and ends the
//!    machine through `isa-debug-exit` (QEMU exits with `(code << 1) | 1`).
//! 5. Requires both: exit status 33 (the probe's pass code) and a PASS line for every
//!    expected check, no FAIL line. Serial logs are kept as `target/qemu-peer/boot-*.log`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{self, Result};

/// The probe's target: a static binary needs nothing from the initramfs.
const PROBE_TARGET: &str = "x86_64-unknown-linux-musl";
/// The probe's package and binary name.
const PROBE: &str = "vmballoon-qemu-probe";
/// The meta-package whose dependency names the current Debian cloud kernel.
const KERNEL_META: &str = "linux-image-cloud-amd64";
/// Guest RAM (`-m`), also what GETRAMSIZE must report.
const RAM_MIB: u32 = 256;
/// One boot takes a few seconds under TCG; this only stops a hung machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// QEMU's exit status when the probe writes its pass code 0x10 to isa-debug-exit.
const EXIT_PASS: i32 = (0x10 << 1) | 1;
/// QEMU's exit status for the probe's fail code 0x11.
const EXIT_FAIL: i32 = (0x11 << 1) | 1;

/// One machine and the checks the probe must pass on it.
struct Boot {
    vmport: bool,
    checks: &'static [&'static str],
}

const BOOTS: [Boot; 2] = [
    Boot {
        vmport: true,
        checks: &[
            "detect",
            "getversion",
            "getramsize",
            "balloon-port",
            "balloon-no-host",
        ],
    },
    Boot {
        vmport: false,
        checks: &[
            "detect",
            "getversion-absent",
            "getramsize-absent",
            "balloon-port",
            "balloon-no-host",
        ],
    },
];

/// Runs the whole task; `Err` on any missing tool, failed boot or mismatch.
pub fn run() -> Result {
    let start = Instant::now();
    let target = target_dir();
    let dir = target.join("qemu-peer");
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;

    let qemu = ensure_qemu(&dir)?;
    let kernel = ensure_kernel(&dir)?;
    ensure_probe_target()?;
    util::step(
        "build qemu probe",
        Command::new(util::cargo()).args([
            "build",
            "-p",
            PROBE,
            "--release",
            "--target",
            PROBE_TARGET,
        ]),
    )?;
    let probe = target.join(PROBE_TARGET).join("release").join(PROBE);
    let probe = fs::read(&probe).map_err(|e| format!("read {}: {e}", probe.display()))?;
    let initrd = dir.join("initramfs.cpio");
    fs::write(&initrd, newc_initramfs(&probe))
        .map_err(|e| format!("write {}: {e}", initrd.display()))?;

    let mut failures = Vec::new();
    let mut passed = 0;
    for boot in &BOOTS {
        match run_boot(&qemu, &kernel, &initrd, &dir, boot) {
            Ok(n) => passed += n,
            Err(e) => failures.push(e),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if failures.is_empty() {
        eprintln!(
            "qemu-peer: all {passed} checks passed on {} boots ({secs:.1}s)",
            BOOTS.len()
        );
        Ok(())
    } else {
        Err(format!(
            "qemu-peer failed ({secs:.1}s):\n  {}",
            failures.join("\n  ")
        ))
    }
}

/// `CARGO_TARGET_DIR` if set (relative to the workspace root), else `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| super::root().join("target"), |d| super::root().join(d))
}

// ---------------------------------------------------------------------------------------
// Host tools: QEMU, the kernel, the musl target.
// ---------------------------------------------------------------------------------------

/// `qemu-system-x86_64`, installed with apt-get if missing.
///
/// These machines ship `qemu-utils` (`qemu-img`) from `bookworm-backports`, which breaks
/// the `qemu-system-common` of bookworm itself: a plain install would silently remove
/// it. So apt-get never removes anything here (`--no-remove`), and when `qemu-utils`
/// came from backports, QEMU comes from the same backports suite.
fn ensure_qemu(dir: &Path) -> Result<PathBuf> {
    const QEMU: &str = "qemu-system-x86_64";
    const PACKAGE: &str = "qemu-system-x86";
    let works = || {
        Command::new(QEMU)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works() {
        return Ok(PathBuf::from(QEMU));
    }
    let utils = installed_version("qemu-utils");
    match utils.as_deref().filter(|v| v.contains("~bpo")) {
        Some(version) => {
            eprintln!("    qemu-utils {version} is from backports: installing QEMU from there");
            install_from_backports(&dir.join("apt"), PACKAGE)?;
        }
        None => apt_install(PACKAGE)?,
    }
    if works() {
        Ok(PathBuf::from(QEMU))
    } else {
        Err(format!("{QEMU} still missing after installing {PACKAGE}"))
    }
}

/// The installed version of `package`, if it is installed.
fn installed_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}|${Version}", package])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (status, version) = text.split_once('|')?;
    (status.starts_with("ii") && !version.is_empty()).then(|| version.to_owned())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// An apt-get command, through `sudo -n` (never prompting) unless we are root. Waits for
/// the dpkg lock instead of failing when another apt-get holds it, and retries downloads.
fn apt_get(privileged: bool) -> Command {
    let mut cmd = if privileged && !is_root() {
        let mut c = Command::new("sudo");
        c.args(["-n", "apt-get"]);
        c
    } else {
        Command::new("apt-get")
    };
    cmd.env("DEBIAN_FRONTEND", "noninteractive").args([
        "-q",
        "-o",
        "DPkg::Lock::Timeout=300",
        "-o",
        "Acquire::Retries=3",
    ]);
    cmd
}

/// The install arguments: never a recommended package, never a removal.
const INSTALL: [&str; 4] = ["install", "-y", "--no-install-recommends", "--no-remove"];

/// `apt-get install` from the system's sources, refreshing the package lists once if the
/// first attempt fails (stale lists on a fresh machine give 404s or unknown packages).
fn apt_install(package: &str) -> Result {
    let install = || {
        util::step(
            &format!("apt-get install {package}"),
            apt_get(true).args(INSTALL).arg(package),
        )
    };
    install().or_else(|first| {
        eprintln!("    {first}; refreshing the package lists and retrying");
        apt_update()?;
        install()
    })
}

fn apt_update() -> Result {
    util::step("apt-get update", apt_get(true).arg("update"))
}

/// `apt-get install -t <codename>-backports` through a private apt configuration in
/// `apt_dir` (sources, lists, archives), so the system's sources stay as they are.
fn install_from_backports(apt_dir: &Path, package: &str) -> Result {
    let release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_owned())
        .filter(|c| !c.is_empty())
        .ok_or("no VERSION_CODENAME in /etc/os-release")?;
    for sub in ["lists/partial", "archives/partial"] {
        fs::create_dir_all(apt_dir.join(sub))
            .map_err(|e| format!("create {}: {e}", apt_dir.display()))?;
    }
    let sources = apt_dir.join("sources.list");
    let mirror = "http://deb.debian.org";
    fs::write(
        &sources,
        format!(
            "deb {mirror}/debian {codename} main\n\
             deb {mirror}/debian {codename}-updates main\n\
             deb {mirror}/debian-security {codename}-security main\n\
             deb {mirror}/debian {codename}-backports main\n"
        ),
    )
    .map_err(|e| format!("write {}: {e}", sources.display()))?;
    let private = |cmd: &mut Command| {
        let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
        cmd.args([
            "-o",
            &opt("Dir::Etc::sourcelist", &sources),
            "-o",
            "Dir::Etc::sourceparts=-",
            "-o",
            &opt("Dir::State::lists", &apt_dir.join("lists")),
            "-o",
            &opt("Dir::Cache::archives", &apt_dir.join("archives")),
            // apt's `_apt` download user may not be able to write under target/.
            "-o",
            "APT::Sandbox::User=root",
        ]);
    };
    let mut update = apt_get(true);
    private(&mut update);
    util::step(
        &format!("apt-get update ({codename} + backports, private lists)"),
        update.arg("update"),
    )?;
    let mut install = apt_get(true);
    private(&mut install);
    let suite = format!("{codename}-backports");
    util::step(
        &format!("apt-get install -t {suite} {package}"),
        install.args(INSTALL).args(["-t", &suite, package]),
    )?;
    // The downloaded .debs are of no further use.
    let _ = fs::remove_dir_all(apt_dir.join("archives"));
    Ok(())
}

/// The Debian cloud kernel image, cached as `dir/vmlinuz`.
fn ensure_kernel(dir: &Path) -> Result<PathBuf> {
    let kernel = dir.join("vmlinuz");
    if fs::metadata(&kernel).is_ok_and(|m| m.len() > 0) {
        return Ok(kernel);
    }
    let fetch = || -> Result<PathBuf> {
        let package = kernel_package()?;
        fetch_kernel(dir, &package, &kernel)?;
        Ok(kernel.clone())
    };
    fetch().or_else(|first| {
        eprintln!("    {first}; refreshing the package lists and retrying");
        apt_update()?;
        fetch()
    })
}

/// The kernel package `linux-image-cloud-amd64` depends on (`apt-cache depends`).
fn kernel_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", KERNEL_META])
        .output()
        .map_err(|e| format!("apt-cache: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_kernel_dependency(&text).ok_or_else(|| {
        format!(
            "apt-cache depends {KERNEL_META} names no linux-image package ({}{})",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// The first `Depends: linux-image-*` line of `apt-cache depends` output.
fn parse_kernel_dependency(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && !p.contains(['<', ' ']))
        .map(str::to_owned)
}

/// `apt-get download` of `package` (no installation), then extracts `boot/vmlinuz-*` to
/// `kernel`.
fn fetch_kernel(dir: &Path, package: &str, kernel: &Path) -> Result {
    let work = dir.join("kernel-download");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
    let mut download = apt_get(false);
    if is_root() {
        // As root apt-get drops to `_apt` for downloads and warns that it cannot write here.
        download.args(["-o", "APT::Sandbox::User=root"]);
    }
    util::step_in(
        &work,
        &format!("apt-get download {package}"),
        download.arg("download").arg(package),
    )
    .map_err(|e| format!("{e} (the kernel comes from the Debian mirror: network needed once)"))?;
    let deb = fs::read_dir(&work)
        .map_err(|e| format!("read {}: {e}", work.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download left no .deb in {}", work.display()))?;
    let tree = work.join("tree");
    util::step(
        "dpkg-deb -x (kernel)",
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree),
    )?;
    let boot = tree.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .map_err(|e| format!("read {}: {e}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("{} has no boot/vmlinuz-*", deb.display()))?;
    let partial = kernel.with_extension("part");
    fs::copy(&vmlinuz, &partial).map_err(|e| format!("copy {}: {e}", vmlinuz.display()))?;
    fs::rename(&partial, kernel).map_err(|e| format!("rename to {}: {e}", kernel.display()))?;
    let name = vmlinuz
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    fs::write(
        dir.join("vmlinuz.version"),
        format!("{package} {}\n", name.unwrap_or_default()),
    )
    .map_err(|e| format!("write vmlinuz.version: {e}"))?;
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

/// `rustup target add x86_64-unknown-linux-musl` if missing (`RUSTUP_AUTO_INSTALL=0`).
fn ensure_probe_target() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == PROBE_TARGET)
    {
        return Ok(());
    }
    util::step(
        "rustup target add (qemu probe)",
        Command::new("rustup").args(["target", "add", PROBE_TARGET]),
    )
}

// ---------------------------------------------------------------------------------------
// The initramfs.
// ---------------------------------------------------------------------------------------

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFREG: u32 = 0o100_000;

/// One file of the initramfs.
struct Entry<'a> {
    name: &'a str,
    mode: u32,
    /// Major and minor number of a device node.
    rdev: (u32, u32),
    data: &'a [u8],
}

/// A newc ("070701") cpio archive: `/dev` with `console` (5, 1), and `init`, the
/// probe. The kernel unpacks it over its built-in initramfs.
fn newc_initramfs(init: &[u8]) -> Vec<u8> {
    let node = |name, mode, rdev| Entry {
        name,
        mode,
        rdev,
        data: &[],
    };
    let entries = [
        node("dev", S_IFDIR | 0o755, (0, 0)),
        node("dev/console", S_IFCHR | 0o600, (5, 1)),
        Entry {
            name: "init",
            mode: S_IFREG | 0o755,
            rdev: (0, 0),
            data: init,
        },
    ];
    let mut out = Vec::with_capacity(init.len() + 1024);
    for (ino, entry) in (1u32..).zip(&entries) {
        newc_entry(&mut out, ino, entry);
    }
    newc_entry(&mut out, 0, &node("TRAILER!!!", 0, (0, 0)));
    out
}

fn newc_entry(out: &mut Vec<u8>, ino: u32, entry: &Entry<'_>) {
    let Entry {
        name,
        mode,
        rdev,
        data,
    } = *entry;
    let nlink = if mode & S_IFMT == S_IFDIR { 2 } else { 1 };
    let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let name_size = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check.
    let fields = [
        ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

// ---------------------------------------------------------------------------------------
// Booting and reading the verdict.
// ---------------------------------------------------------------------------------------

/// Boots one machine; `Ok(number of checks passed)` or `Err(what went wrong)`.
fn run_boot(qemu: &Path, kernel: &Path, initrd: &Path, dir: &Path, boot: &Boot) -> Result<usize> {
    let label = format!("vmport={}", if boot.vmport { "on" } else { "off" });
    eprintln!("==> qemu-peer: boot {label}");
    let start = Instant::now();
    let append =
        format!("console=ttyS0 panic=-1 quiet vmballoon_{label} vmballoon_ram_mib={RAM_MIB}");
    let mut child = Command::new(qemu)
        .args(["-machine", &format!("pc,{label}")])
        // TCG explicitly: KVM hangs on these machines, and the backdoor must be QEMU's.
        .args(["-accel", "tcg", "-m", &RAM_MIB.to_string()])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{label}: cannot start {}: {e}", qemu.display()))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < BOOT_TIMEOUT => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => return Err(format!("{label}: waiting for QEMU: {e}")),
        }
    };
    let serial = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
    let errors = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    let log = dir.join(format!(
        "boot-{}.log",
        if boot.vmport { "on" } else { "off" }
    ));
    let _ = fs::write(&log, format!("{serial}\n--- qemu stderr ---\n{errors}"));
    let secs = start.elapsed().as_secs_f64();

    let verdict = judge(&serial, status.and_then(|s| s.code()), boot);
    for line in &verdict.lines {
        eprintln!("    {line}");
    }
    let exit = match status {
        None => format!("timed out after {}s", BOOT_TIMEOUT.as_secs()),
        Some(s) => s
            .code()
            .map_or_else(|| s.to_string(), |c| format!("QEMU exit {c}")),
    };
    eprintln!(
        "    {label}: {exit}, {secs:.1}s, serial log {}",
        log.display()
    );
    if verdict.problems.is_empty() {
        return Ok(verdict.passed);
    }
    eprintln!("    {label}: last serial lines:");
    let tail: Vec<&str> = serial.lines().collect();
    for line in &tail[tail.len().saturating_sub(30)..] {
        eprintln!("      | {}", line.trim_end_matches('\r'));
    }
    if !errors.trim().is_empty() {
        eprintln!("      qemu stderr: {}", errors.trim());
    }
    Err(format!("{label}: {}", verdict.problems.join("; ")))
}

/// Reads a child's pipe to the end on a thread, so QEMU never blocks on a full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// What one boot showed.
#[derive(Debug, Default)]
struct Verdict {
    /// The probe's PASS / FAIL / RESULT lines, in order.
    lines: Vec<String>,
    /// Expected checks that passed.
    passed: usize,
    /// Everything wrong; empty means the boot passed.
    problems: Vec<String>,
}

/// Compares the serial output and QEMU's exit code with what `boot` expects.
fn judge(serial: &str, exit: Option<i32>, boot: &Boot) -> Verdict {
    let mut v = Verdict::default();
    let mut seen: Vec<(String, bool)> = Vec::new();
    let mut result = None;
    for raw in serial.lines() {
        // A verdict may share its line with firmware or kernel output printed before it.
        let Some(at) = ["PASS ", "FAIL ", "RESULT "]
            .iter()
            .filter_map(|m| raw.find(m))
            .min()
        else {
            continue;
        };
        let line = raw[at..].trim_end_matches('\r').trim();
        if let Some((pass, rest)) = line
            .strip_prefix("PASS ")
            .map(|r| (true, r))
            .or_else(|| line.strip_prefix("FAIL ").map(|r| (false, r)))
        {
            let name = rest.split(':').next().unwrap_or(rest).trim().to_owned();
            if !pass {
                v.problems.push(line.to_owned());
            }
            seen.push((name, pass));
            v.lines.push(line.to_owned());
        } else if let Some(r) = line.strip_prefix("RESULT ") {
            result = Some(r.starts_with("pass"));
            v.lines.push(line.to_owned());
        }
    }
    for want in boot.checks {
        match seen.iter().filter(|(n, _)| n == want).count() {
            0 => v.problems.push(format!("no verdict for check `{want}`")),
            1 => {}
            n => v
                .problems
                .push(format!("check `{want}` reported {n} times")),
        }
    }
    for (name, _) in &seen {
        if !boot.checks.contains(&name.as_str()) {
            v.problems.push(format!("unexpected check `{name}`"));
        }
    }
    v.passed = boot
        .checks
        .iter()
        .filter(|w| seen.iter().any(|(n, p)| n == *w && *p))
        .count();
    match (exit, result) {
        (Some(EXIT_PASS), Some(true)) => {}
        (Some(EXIT_PASS), r) => v.problems.push(format!(
            "QEMU exit {EXIT_PASS} (probe pass) but the serial verdict is {r:?}"
        )),
        (Some(EXIT_FAIL), _) => v.problems.push(format!(
            "the probe reported failure (QEMU exit {EXIT_FAIL})"
        )),
        (Some(c), _) => v.problems.push(format!(
            "QEMU exit {c}: the machine ended without the probe's verdict (probe crashed or \
             the kernel panicked; expected {EXIT_PASS})"
        )),
        (None, _) => v
            .problems
            .push("QEMU did not exit by itself (timeout or signal)".to_owned()),
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dependency_is_parsed_from_apt_cache_depends() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-48-cloud-amd64\n";
        assert_eq!(
            parse_kernel_dependency(out).as_deref(),
            Some("linux-image-6.1.0-48-cloud-amd64")
        );
        assert_eq!(parse_kernel_dependency("linux-image-cloud-amd64\n"), None);
        let virtual_dep =
            "x\n  Depends: <linux-image-foo>\n |Depends: linux-image-6.1.0-1-cloud-amd64\n";
        assert_eq!(
            parse_kernel_dependency(virtual_dep).as_deref(),
            Some("linux-image-6.1.0-1-cloud-amd64")
        );
    }

    #[test]
    fn newc_archive_layout() {
        let a = newc_initramfs(b"ELF!x");
        assert_eq!(&a[..6], b"070701");
        assert_eq!(a.len() % 4, 0);
        // First entry: `dev`, a directory: mode field is the second 8-digit field.
        assert_eq!(&a[14..22], b"000041ED");
        // The name follows the 110-byte header.
        assert_eq!(&a[110..114], b"dev\0");
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("dev/console\0"));
        assert!(text.contains("init\0"));
        assert!(text.contains("ELF!x"));
        assert!(text.contains("TRAILER!!!\0"));
        // Every header starts on a 4-byte boundary.
        for (i, _) in text.match_indices("070701") {
            assert_eq!(i % 4, 0);
        }
    }

    const GOOD_ON: &str = "\
vmballoon-qemu-probe: begin\r
Booting from ROM..\x1b[2J\x1b[0m.PASS detect: refused\r
PASS getversion: eax=6\r
PASS getramsize: eax=0x10000000\r
PASS balloon-port: START\r
PASS balloon-no-host: 3 ticks\r
RESULT pass 5/5\r
";

    #[test]
    fn a_clean_boot_passes() {
        let v = judge(GOOD_ON, Some(EXIT_PASS), &BOOTS[0]);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.passed, 5);
        assert_eq!(v.lines.len(), 6);
    }

    #[test]
    fn failures_missing_checks_and_bad_exits_are_reported() {
        let failing = GOOD_ON.replace("PASS getversion: eax=6", "FAIL getversion: expected");
        assert!(
            !judge(&failing, Some(EXIT_FAIL), &BOOTS[0])
                .problems
                .is_empty()
        );
        // A FAIL line wins even if the exit status claims a pass.
        assert!(
            !judge(&failing, Some(EXIT_PASS), &BOOTS[0])
                .problems
                .is_empty()
        );
        let missing = GOOD_ON.replace("PASS getramsize: eax=0x10000000\r\n", "");
        assert!(
            !judge(&missing, Some(EXIT_PASS), &BOOTS[0])
                .problems
                .is_empty()
        );
        // Kernel panic (exit 0), timeout, and the other machine's expectations.
        assert!(!judge(GOOD_ON, Some(0), &BOOTS[0]).problems.is_empty());
        assert!(!judge(GOOD_ON, None, &BOOTS[0]).problems.is_empty());
        assert!(
            !judge(GOOD_ON, Some(EXIT_PASS), &BOOTS[1])
                .problems
                .is_empty()
        );
    }
}
