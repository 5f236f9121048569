//! The guest side: PID 1 of a QEMU machine. Gets port access with `iopl(3)`, performs the
//! backdoor calls through the real `vmballoon-backdoor` crate, prints one line per check
//! on the serial console and ends the machine through `isa-debug-exit`.
//!
//! The backdoor's `in` is the crate's own (`port.rs`). The probe has one instruction of
//! its own, the `out` to `isa-debug-exit` in [`exit_qemu`]: the kernel's `/dev/port`
//! would avoid it, but Debian's kernels are built without it (`CONFIG_DEVPORT` is not set).

use core::arch::asm;
use core::ptr::NonNull;
use std::io::Write;
use std::mem::MaybeUninit;

use vmballoon_backdoor::{
    Cpu, CpuidResult, RealCpu, Registers, VmwareBackdoor, detect, probe_getramsize,
    probe_getversion,
};
use vmballoon_core::protocol::{Backdoor, BatchPage, Command};
use vmballoon_core::units::Pfn;

use crate::checks::{self, Check};

/// The `isa-debug-exit` device's port (`-device isa-debug-exit,iobase=0xf4`).
const DEBUG_EXIT_PORT: u16 = 0xF4;

/// Written to `isa-debug-exit` when every check passed: QEMU exits with `(0x10 << 1) | 1`
/// = 33.
const EXIT_PASS: u8 = 0x10;

/// Written when a check failed: QEMU exits with 35.
const EXIT_FAIL: u8 = 0x11;

/// A frame number for the batch page. No batched command is ever sent (START cannot
/// succeed on an empty port), so no host ever reads it; the value is only carried.
const DUMMY_BATCH_PFN: u64 = 0xBA7C4;

/// Which machine xtask booted, from the kernel command line (`vmballoon_vmport=on|off`,
/// `vmballoon_ram_mib=N`): the kernel hands unknown `name=value` parameters without a dot
/// to init as environment variables.
struct Machine {
    vmport: bool,
    ram_mib: u64,
}

impl Machine {
    fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).map_err(|e| format!("{name}: {e}"));
        let vmport = match var("vmballoon_vmport")?.as_str() {
            "on" => true,
            "off" => false,
            other => return Err(format!("vmballoon_vmport={other}: expected on or off")),
        };
        let ram_mib = var("vmballoon_ram_mib")?
            .parse()
            .map_err(|e| format!("vmballoon_ram_mib: {e}"))?;
        Ok(Self { vmport, ram_mib })
    }
}

/// Runs every check for this machine, prints the verdicts and ends the machine.
pub fn run() -> ! {
    println!("vmballoon-qemu-probe: begin");
    // SAFETY: iopl changes only this process's I/O privilege (IOPL 3 lets it execute `in`
    // and `out` at CPL3); it touches no memory. We are PID 1 and root.
    let port_access = unsafe { libc::iopl(3) } == 0;
    let checks = if port_access {
        match Machine::from_env() {
            Ok(machine) => {
                println!(
                    "vmballoon-qemu-probe: vmport={}, -m {} MiB",
                    if machine.vmport { "on" } else { "off" },
                    machine.ram_mib
                );
                run_checks(&machine)
            }
            Err(e) => vec![Check::fail(
                "machine",
                "vmballoon_vmport and vmballoon_ram_mib on the kernel command line",
                &e,
            )],
        }
    } else {
        let err = std::io::Error::last_os_error();
        vec![Check::fail("iopl", "iopl(3) to succeed", &err.to_string())]
    };
    let passed = checks.iter().filter(|c| c.passed()).count();
    let all = passed == checks.len();
    println!(
        "RESULT {} {passed}/{}",
        if all { "pass" } else { "fail" },
        checks.len()
    );
    let code = if all { EXIT_PASS } else { EXIT_FAIL };
    if port_access {
        exit_qemu(code);
    }
    power_off()
}

fn run_checks(machine: &Machine) -> Vec<Check> {
    let mut out = Vec::new();
    let mut report = |check: Check| {
        println!("{check}");
        out.push(check);
    };

    // (c) first: detection over the real processor must refuse before any port is touched.
    let real = detect(&mut RealCpu);
    let mut watched = WatchedCpu::default();
    let watched_result = detect(&mut watched);
    report(checks::detect_refuses(
        &real,
        &watched_result,
        watched.getversion_calls,
    ));

    // (a)/(e) GETVERSION through the diagnostic path that skips CPUID.
    // SAFETY: this is the QEMU `pc` machine xtask booted: port 0x5658 is vmport (vmport=on)
    // or unassigned (vmport=off), where reading it has no effect. IOPL 3 allows the `in`.
    let version = unsafe { probe_getversion() };
    // SAFETY: as for GETVERSION.
    let ramsize = unsafe { probe_getramsize() };
    if machine.vmport {
        report(checks::getversion_present(&version));
        report(checks::getramsize_present(
            ramsize,
            machine.ram_mib,
            kernel_ram_bytes(),
        ));
    } else {
        report(checks::getversion_absent(&version));
        report(checks::getramsize_absent(ramsize));
    }

    // (d) The balloon port: QEMU has nothing at 0x5670 on either machine.
    let page = NonNull::from(Box::leak(Box::new(BatchPage::zeroed())));
    let pfn = Pfn::new(DUMMY_BATCH_PFN).unwrap_or(Pfn::MAX);
    // SAFETY: the constructor asks for VMware's balloon port at CPL0. Here port 0x5670 is
    // unassigned in the QEMU machine xtask booted, so an `in` there reads all ones and
    // has no other effect (that is what the checks below observe), and IOPL 3 allows the
    // `in`. The page is a leaked heap allocation (never freed; the machine ends after the
    // checks), aligned by `BatchPage`'s type, resident (this guest has no swap) and owned
    // by the backdoor alone. Its PFN is a dummy: no batched command can be sent because
    // START never succeeds, and `VmwareBackdoor` sends batched commands only for that PFN.
    let mut backdoor = unsafe { VmwareBackdoor::new(page, pfn) };
    let reply = backdoor.call(Command::Start.number(), checks::start_arg1(), 0);
    report(checks::balloon_port_empty(reply, checks::start_arg1()));
    report(checks::engine_no_host(backdoor, machine.ram_mib));
    out
}

/// The real processor, counting GETVERSION calls: proves `detect` touched no port.
#[derive(Default)]
struct WatchedCpu {
    getversion_calls: u32,
}

// SAFETY: `cpuid` returns exactly what the CPUID instruction reports (it is `RealCpu`'s).
unsafe impl Cpu for WatchedCpu {
    fn cpuid(&mut self, leaf: u32) -> CpuidResult {
        RealCpu.cpuid(leaf)
    }

    unsafe fn getversion(&mut self) -> Registers {
        self.getversion_calls = self.getversion_calls.saturating_add(1);
        // SAFETY: our caller's promise (port 0x5658 may be touched) is passed on unchanged.
        unsafe { RealCpu.getversion() }
    }
}

/// RAM the guest kernel manages (`sysinfo`'s `totalram`), in bytes.
fn kernel_ram_bytes() -> Option<u64> {
    let mut info = MaybeUninit::<libc::sysinfo>::zeroed();
    // SAFETY: sysinfo writes one `struct sysinfo` through the pointer, which is valid and
    // aligned for it.
    if unsafe { libc::sysinfo(info.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: the struct was zero-initialised (all zeroes is a valid `sysinfo`: plain
    // integers) and sysinfo filled it in.
    let info = unsafe { info.assume_init() };
    info.totalram.checked_mul(u64::from(info.mem_unit))
}

/// Ends the machine with `code` through `isa-debug-exit`: QEMU exits with
/// `(code << 1) | 1`. Call only once `iopl(3)` succeeded.
fn exit_qemu(code: u8) -> ! {
    // QEMU exits as soon as the byte reaches the port: let the console drain first.
    drain_console();
    // SAFETY: `iopl(3)` succeeded (our caller checks), so the `out` is allowed at CPL3.
    // Port 0xF4 is the isa-debug-exit device xtask adds to the machine: writing it ends
    // QEMU. The instruction reads and writes no memory and no stack.
    unsafe {
        asm!(
            "out dx, al",
            in("dx") DEBUG_EXIT_PORT,
            in("al") code,
            options(nomem, nostack, preserves_flags),
        );
    }
    // Newer QEMUs (10.x) turn the write into a shutdown request that the main loop serves
    // a moment later, while this vCPU keeps running: wait for it rather than race it.
    std::thread::sleep(std::time::Duration::from_secs(10));
    println!("vmballoon-qemu-probe: isa-debug-exit did not end the machine");
    power_off()
}

/// Ends the machine without a verdict in the exit status: QEMU exits 0, which xtask
/// reads as "no verdict".
fn power_off() -> ! {
    drain_console();
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: powering off is what we want; as PID 1 we hold CAP_SYS_BOOT.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    // PID 1 exiting panics the kernel; with `panic=-1` and `-no-reboot` QEMU then exits.
    std::process::exit(1)
}

/// Flushes stdout and waits until the serial line has sent it.
fn drain_console() {
    let _ = std::io::stdout().flush();
    // SAFETY: tcdrain only waits for fd 1's output to be sent; a bad fd returns an error.
    let _ = unsafe { libc::tcdrain(1) };
}
