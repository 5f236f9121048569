//! `vmballoon-qemu-probe`: the guest half of `cargo xtask qemu-peer`.
//!
//! The one implementation of the VMware backdoor we can run in CI is QEMU's `vmport`
//! device (`docs/protocol.md` §8). `cargo xtask qemu-peer` builds this crate as a static
//! `x86_64-unknown-linux-musl` binary, boots it as `/init` (PID 1) of a Debian cloud
//! kernel in `qemu-system-x86_64 -machine pc,vmport=on|off -accel tcg` and reads the
//! verdict from the serial console and from QEMU's exit status.
//!
//! The probe calls the real `vmballoon-backdoor` crate (the `in eax, dx` of `port.rs`)
//! after `iopl(3)`, and prints one line per check:
//!
//! | check | machine | expectation |
//! |---|---|---|
//! | `detect` | both | `detect(&mut RealCpu)` refuses from CPUID (QEMU does not say "VMwareVMware") without a port call |
//! | `getversion` | vmport=on | `probe_getversion`: EAX = 6, EBX = `0x564D5868`, ECX = 2 (ESX) |
//! | `getramsize` | vmport=on | `probe_getramsize`: EAX = `-m` in bytes (low 32 bits), EBX = `0x1177`, consistent with the kernel's RAM |
//! | `getversion-absent` | vmport=off | detection fails: EAX = `0xFFFFFFFF`, EBX still our `!magic` |
//! | `getramsize-absent` | vmport=off | EAX = `0xFFFFFFFF`, EBX unchanged |
//! | `balloon-port` | both | START on `0x5670` through `VmwareBackdoor`: EAX all ones, RBX and RCX unchanged |
//! | `balloon-no-host` | both | the real engine over `VmwareBackdoor` (pages, memory and clock from the core's fakes) ends in `NoHost` after failed STARTs, with no page allocated |
//!
//! Each line reads `PASS name: details` or `FAIL name: expected .. got ..`, then
//! `RESULT pass|fail n/m`; the probe ends the machine through `isa-debug-exit` with code
//! `0x10` (pass, QEMU exits 33) or `0x11` (fail, QEMU exits 35).
//!
//! Run anywhere else (not as PID 1, or not on x86_64 Linux) it prints what it is for and
//! does nothing. The verdict logic lives in `checks` and is unit-tested on the host.

#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64")),
    allow(dead_code, reason = "the checks run only in the x86_64 Linux guest")
)]
mod checks;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod guest;

use std::process::ExitCode;

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if std::process::id() == 1 {
        guest::run();
    }
    eprintln!(
        "vmballoon-qemu-probe runs only as /init (PID 1) of the QEMU guest that \
         `cargo xtask qemu-peer` boots; it does nothing here."
    );
    ExitCode::from(2)
}
