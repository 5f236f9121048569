//! The checks: pure functions from what the probe observed to a verdict.
//!
//! Nothing here touches a port, so every expectation (and every way a reply can be
//! wrong, such as a swapped output register) is unit-tested on the host. The guest side
//! (`guest.rs`) only performs the calls and feeds the results in.

use core::fmt;

use vmballoon_backdoor::{DetectError, Detected, Registers, VmxType};
use vmballoon_core::config::Config;
use vmballoon_core::engine::{Balloon, SessionState};
use vmballoon_core::error::Error;
use vmballoon_core::fake::{FakeWorld, ManualClock};
use vmballoon_core::protocol::{BACKDOOR_MAGIC, Backdoor, Capabilities, Command, RawReply, Status};
use vmballoon_core::units::{Duration, Frames, PageSize};

/// GETVERSION's EAX from QEMU's vmport: its `vmware-vmx-version` property, default 6.
pub const QEMU_VMX_VERSION: u32 = 6;

/// GETVERSION's ECX from QEMU's vmport: `vmware-vmx-type`, default 2 (ESX).
pub const QEMU_VMX_TYPE: VmxType = VmxType::Esx;

/// GETRAMSIZE's EBX from QEMU's vmport (`vmport_cmd_ram_size` in `hw/i386/vmport.c`).
pub const QEMU_GETRAMSIZE_EBX: u64 = 0x1177;

/// What the backdoor crate loads into EBX for GETVERSION and GETRAMSIZE: `!magic`. A port
/// that answers nothing leaves it there.
pub const NOT_MAGIC: u64 = !BACKDOOR_MAGIC as u64;

/// Engine ticks run against the empty balloon port.
pub const NO_HOST_TICKS: u32 = 3;

/// One verdict: `PASS name: details` or `FAIL name: expected .. got ..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Short name, stable: `cargo xtask qemu-peer` matches on it.
    pub name: &'static str,
    /// `Ok(details)` on a pass, `Err(what was expected and what came)` on a failure.
    pub outcome: Result<String, String>,
}

impl Check {
    /// A pass with these details.
    #[must_use]
    pub const fn pass(name: &'static str, details: String) -> Self {
        Self {
            name,
            outcome: Ok(details),
        }
    }

    /// A failure: what was expected, and what came instead.
    #[must_use]
    pub fn fail(name: &'static str, expected: &str, got: &str) -> Self {
        Self {
            name,
            outcome: Err(format!("expected {expected}; got {got}")),
        }
    }

    /// Whether the check passed.
    #[must_use]
    pub const fn passed(&self) -> bool {
        self.outcome.is_ok()
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(details) => write!(f, "PASS {}: {details}", self.name),
            Err(why) => write!(f, "FAIL {}: {why}", self.name),
        }
    }
}

/// The register images a decoded GETVERSION result stands for, for messages.
fn describe_getversion(result: &Result<Detected, DetectError>) -> String {
    match result {
        Ok(d) => format!(
            "eax={} ebx={BACKDOOR_MAGIC:#010x} ecx={} ({d})",
            d.version,
            d.product.raw()
        ),
        Err(DetectError::BackdoorAbsent { eax, ebx }) => {
            format!("no backdoor: eax={eax:#010x} ebx={ebx:#010x}")
        }
        Err(e) => format!("error: {e}"),
    }
}

/// (a) GETVERSION through `probe_getversion` on a vmport machine: version 6, the magic
/// echoed in EBX, product type 2 in ECX.
#[must_use]
pub fn getversion_present(result: &Result<Detected, DetectError>) -> Check {
    const NAME: &str = "getversion";
    let expected = format!(
        "eax={QEMU_VMX_VERSION} ebx={BACKDOOR_MAGIC:#010x} ecx={} ({QEMU_VMX_TYPE})",
        QEMU_VMX_TYPE.raw()
    );
    let got = describe_getversion(result);
    match result {
        Ok(d) if d.version == QEMU_VMX_VERSION && d.product == QEMU_VMX_TYPE => {
            Check::pass(NAME, got)
        }
        _ => Check::fail(NAME, &expected, &got),
    }
}

/// (e) GETVERSION on a machine without vmport: nothing answers, so EAX reads all ones
/// and EBX keeps the `!magic` we loaded. Detection must fail.
#[must_use]
pub fn getversion_absent(result: &Result<Detected, DetectError>) -> Check {
    const NAME: &str = "getversion-absent";
    let expected =
        format!("detection fails: eax=0xffffffff ebx={NOT_MAGIC:#010x} (our !magic, unchanged)");
    let got = describe_getversion(result);
    match result {
        Err(DetectError::BackdoorAbsent { eax, ebx })
            if *eax == u32::MAX && u64::from(*ebx) == NOT_MAGIC =>
        {
            Check::pass(NAME, format!("detection fails ({got})"))
        }
        _ => Check::fail(NAME, &expected, &got),
    }
}

fn describe_regs(r: Registers) -> String {
    format!("eax={:#010x} rbx={:#x} rcx={:#x}", r.eax, r.rbx, r.rcx)
}

/// (b) GETRAMSIZE (command 20) on a vmport machine: QEMU answers the machine's RAM size
/// in bytes, truncated to 32 bits, in EAX and `0x1177` in EBX. `kernel_total` is the RAM
/// the guest kernel reports (`sysinfo`), which must be at most that and more than half.
#[must_use]
pub fn getramsize_present(regs: Registers, ram_mib: u64, kernel_total: Option<u64>) -> Check {
    const NAME: &str = "getramsize";
    let ram_bytes = ram_mib.saturating_mul(1 << 20);
    let want_eax = u32::try_from(ram_bytes & 0xFFFF_FFFF).unwrap_or(u32::MAX);
    let expected = format!(
        "eax={want_eax:#010x} (-m {ram_mib} in bytes, low 32 bits) rbx={QEMU_GETRAMSIZE_EBX:#x}, \
         kernel RAM in (eax/2, eax]"
    );
    let kernel = kernel_total.map_or_else(
        || "kernel RAM unknown".to_owned(),
        |k| format!("kernel sees {} KiB", k / 1024),
    );
    let got = format!("{}, {kernel}", describe_regs(regs));
    let kernel_ok =
        kernel_total.is_some_and(|k| k <= u64::from(regs.eax) && k > u64::from(regs.eax) / 2);
    if regs.eax == want_eax && regs.rbx == QEMU_GETRAMSIZE_EBX && kernel_ok {
        Check::pass(
            NAME,
            format!(
                "eax={:#010x} = {} MiB = -m {ram_mib}, rbx={:#x}; {kernel}",
                regs.eax,
                regs.eax >> 20,
                regs.rbx
            ),
        )
    } else {
        Check::fail(NAME, &expected, &got)
    }
}

/// GETRAMSIZE without vmport: all ones in EAX, EBX left at our `!magic`.
#[must_use]
pub fn getramsize_absent(regs: Registers) -> Check {
    const NAME: &str = "getramsize-absent";
    if regs.eax == u32::MAX && regs.rbx == NOT_MAGIC {
        Check::pass(NAME, format!("no answer ({})", describe_regs(regs)))
    } else {
        Check::fail(
            NAME,
            &format!("eax=0xffffffff rbx={NOT_MAGIC:#x} (unchanged)"),
            &describe_regs(regs),
        )
    }
}

/// (c) `detect` over the real processor must refuse QEMU (its CPUID says TCG or KVM, not
/// VMware) before touching a port. `real` is `detect(&mut RealCpu)`; `watched` is the
/// same detection over a wrapper of the real processor that counts GETVERSION calls.
#[must_use]
pub fn detect_refuses(
    real: &Result<Detected, DetectError>,
    watched: &Result<Detected, DetectError>,
    watched_getversion_calls: u32,
) -> Check {
    const NAME: &str = "detect";
    let expected = "refusal from CPUID (NoHypervisor or NotVmware), no port touched";
    let got = format!(
        "{} (watched run: {}, {watched_getversion_calls} GETVERSION calls)",
        describe_getversion(real),
        describe_getversion(watched)
    );
    match real {
        Err(e @ (DetectError::NoHypervisor | DetectError::NotVmware { .. }))
            if watched == real && watched_getversion_calls == 0 =>
        {
            let variant = if matches!(e, DetectError::NoHypervisor) {
                "NoHypervisor"
            } else {
                "NotVmware"
            };
            Check::pass(
                NAME,
                format!("refused from CPUID, 0 GETVERSION calls: {variant}: {e}"),
            )
        }
        _ => Check::fail(NAME, expected, &got),
    }
}

/// START sent straight through the backdoor to the empty balloon port: EAX reads all
/// ones (FAILURE) and RBX / RCX come back as we loaded them (argument 1 and the command).
#[must_use]
pub fn balloon_port_empty(reply: RawReply, sent_arg1: u64) -> Check {
    const NAME: &str = "balloon-port";
    let want = RawReply {
        status: u32::MAX,
        result: sent_arg1,
        capabilities: u64::from(Command::Start.number()),
    };
    let show = |r: RawReply| {
        format!(
            "eax={:#010x} rbx={:#x} rcx={:#x}",
            r.status, r.result, r.capabilities
        )
    };
    if reply == want {
        Check::pass(
            NAME,
            format!(
                "START on 0x5670: {} (FAILURE, RBX and RCX unchanged)",
                show(reply)
            ),
        )
    } else {
        Check::fail(NAME, &show(want), &show(reply))
    }
}

/// The capability mask [`balloon_port_empty`]'s START carries.
#[must_use]
pub const fn start_arg1() -> u64 {
    Capabilities::REQUESTED.bits() as u64
}

/// (d) The real engine driven by `backdoor` against a host without a balloon: every
/// START fails, the session stays in [`SessionState::NoHost`], and no page is ever
/// allocated. The pages, memory and clock are the core's fakes; `ram_mib` sizes them.
pub fn engine_no_host<B: Backdoor>(backdoor: B, ram_mib: u64) -> Check {
    const NAME: &str = "balloon-no-host";
    let world = FakeWorld::new(ram_mib, ram_mib / 8, ram_mib);
    let clock = ManualClock::new();
    let mut balloon = Balloon::new(
        backdoor,
        world.pages(),
        world.memory(),
        clock.clone(),
        Config::default(),
    );
    let start_failed = Error::Host {
        command: Command::Start,
        status: Status::Failure,
    };
    let mut problems = Vec::new();
    for tick in 1..=NO_HOST_TICKS {
        let report = balloon.tick();
        if report.state != SessionState::NoHost {
            problems.push(format!("tick {tick}: state {}", report.state.name()));
        }
        if report.error != Some(start_failed) {
            problems.push(format!("tick {tick}: error {:?}", report.error));
        }
        if report.balloon != Frames::ZERO || report.inflated != Frames::ZERO {
            problems.push(format!(
                "tick {tick}: balloon {} inflated {}",
                report.balloon, report.inflated
            ));
        }
        // Past any back-off, so the next tick tries START again.
        clock.advance(Duration::from_secs(60));
    }
    let stats = balloon.channel().stats().clone();
    let starts = stats.count(Command::Start, Status::Failure);
    let total = stats.total();
    let state = balloon.state();
    let size = balloon.size();
    let freed = balloon.shutdown();
    let after_shutdown = balloon.channel().stats().total();
    let allocs = [PageSize::Small, PageSize::Large].map(|s| world.allocations(s));
    let taken = world.balloon_frames();
    drop(balloon);
    let want_calls = u64::from(NO_HOST_TICKS);
    let summary = format!(
        "{NO_HOST_TICKS} ticks, {total} calls ({starts} START -> FAILURE), state {}, balloon {size}, \
         allocations 4K={} 2M={}, taken from the OS {taken}, shutdown freed {freed} with {} calls",
        state.name(),
        allocs[0],
        allocs[1],
        after_shutdown.saturating_sub(total)
    );
    if starts != want_calls || total != want_calls {
        problems.push(format!("{total} calls, {starts} of them START -> FAILURE"));
    }
    if state != SessionState::NoHost {
        problems.push(format!("final state {}", state.name()));
    }
    if size != Frames::ZERO || taken != Frames::ZERO || freed != Frames::ZERO {
        problems.push(format!("balloon {size}, taken {taken}, freed {freed}"));
    }
    if allocs != [0, 0] {
        problems.push(format!("allocations {allocs:?}"));
    }
    if after_shutdown != total {
        problems.push("shutdown called the host without a session".to_owned());
    }
    if problems.is_empty() {
        Check::pass(NAME, summary)
    } else {
        Check::fail(
            NAME,
            &format!(
                "state no-host, {want_calls} START -> FAILURE and nothing else, no allocation, balloon 0"
            ),
            &format!("{} [{summary}]", problems.join("; ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use vmballoon_core::protocol::BatchPage;
    use vmballoon_core::units::Pfn;

    use super::*;

    fn qemu_getversion() -> Result<Detected, DetectError> {
        vmballoon_backdoor::decode_getversion(Registers {
            eax: 6,
            rbx: u64::from(BACKDOOR_MAGIC),
            rcx: 2,
        })
    }

    #[test]
    fn qemu_getversion_passes() {
        let c = getversion_present(&qemu_getversion());
        assert!(c.passed(), "{c}");
        assert_eq!(
            c.to_string(),
            "PASS getversion: eax=6 ebx=0x564d5868 ecx=2 (VMware ESX, backdoor version 6)"
        );
    }

    #[test]
    fn swapped_rbx_rcx_fails_getversion() {
        let swapped = vmballoon_backdoor::decode_getversion(Registers {
            eax: 6,
            rbx: 2,
            rcx: u64::from(BACKDOOR_MAGIC),
        });
        let c = getversion_present(&swapped);
        assert!(!c.passed());
        assert!(
            c.to_string().starts_with("FAIL getversion: expected"),
            "{c}"
        );
    }

    #[test]
    fn wrong_product_or_version_fails_getversion() {
        for (eax, rcx) in [(6, 4), (7, 2)] {
            let r = vmballoon_backdoor::decode_getversion(Registers {
                eax,
                rbx: u64::from(BACKDOOR_MAGIC),
                rcx,
            });
            assert!(!getversion_present(&r).passed());
        }
    }

    #[test]
    fn absent_getversion_needs_all_ones_and_untouched_ebx() {
        let absent = |eax, ebx| Err(DetectError::BackdoorAbsent { eax, ebx });
        assert!(getversion_absent(&absent(u32::MAX, 0xA9B2_A797)).passed());
        assert!(!getversion_absent(&absent(u32::MAX, 10)).passed());
        assert!(!getversion_absent(&absent(6, 2)).passed());
        assert!(!getversion_absent(&qemu_getversion()).passed());
    }

    #[test]
    fn getramsize_matches_the_machine_size_in_bytes() {
        let regs = Registers {
            eax: 256 << 20,
            rbx: 0x1177,
            rcx: 20,
        };
        assert!(getramsize_present(regs, 256, Some(230 << 20)).passed());
        // In MB, as VMware is described to answer, it would not match QEMU.
        assert!(!getramsize_present(Registers { eax: 256, ..regs }, 256, Some(230 << 20)).passed());
        assert!(!getramsize_present(Registers { rbx: 20, ..regs }, 256, Some(230 << 20)).passed());
        // The kernel cannot see more RAM than the machine has.
        assert!(!getramsize_present(regs, 256, Some(300 << 20)).passed());
        assert!(!getramsize_present(regs, 256, None).passed());
        // 4 GiB truncates to zero in 32 bits; then no kernel size can be consistent.
        let big = Registers { eax: 0, ..regs };
        assert!(!getramsize_present(big, 4096, Some(1 << 30)).passed());
    }

    #[test]
    fn absent_getramsize() {
        let regs = Registers {
            eax: u32::MAX,
            rbx: NOT_MAGIC,
            rcx: 20,
        };
        assert!(getramsize_absent(regs).passed());
        assert!(
            !getramsize_absent(Registers {
                rbx: 0x1177,
                ..regs
            })
            .passed()
        );
    }

    #[test]
    fn detect_must_refuse_from_cpuid_without_a_port_call() {
        let tcg = Err(DetectError::NotVmware {
            vendor: *b"TCGTCGTCGTCG",
        });
        let c = detect_refuses(&tcg, &tcg, 0);
        assert!(c.passed(), "{c}");
        assert!(c.to_string().contains("TCGTCGTCGTCG"), "{c}");
        assert!(!detect_refuses(&tcg, &tcg, 1).passed());
        let absent = Err(DetectError::BackdoorAbsent { eax: 0, ebx: 0 });
        assert!(!detect_refuses(&absent, &absent, 0).passed());
        assert!(!detect_refuses(&qemu_getversion(), &qemu_getversion(), 0).passed());
    }

    /// The empty balloon port as QEMU presents it: all ones in EAX, RBX and RCX untouched.
    struct EmptyPort {
        page: Box<BatchPage>,
        calls: Vec<u32>,
    }

    impl Backdoor for EmptyPort {
        fn call(&mut self, command: u32, arg1: u64, _arg2: u64) -> RawReply {
            self.calls.push(command);
            RawReply {
                status: u32::MAX,
                result: arg1,
                capabilities: u64::from(command),
            }
        }

        fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)> {
            Some((&mut self.page, Pfn::new(0x1000)?))
        }
    }

    #[test]
    fn empty_port_reply_passes_and_swapped_fails() {
        let ok = RawReply {
            status: u32::MAX,
            result: start_arg1(),
            capabilities: 0,
        };
        assert!(balloon_port_empty(ok, start_arg1()).passed());
        let swapped = RawReply {
            result: 0,
            capabilities: start_arg1(),
            ..ok
        };
        assert!(!balloon_port_empty(swapped, start_arg1()).passed());
    }

    #[test]
    fn engine_reaches_no_host_on_an_empty_port() {
        let port = EmptyPort {
            page: Box::new(BatchPage::zeroed()),
            calls: Vec::new(),
        };
        let c = engine_no_host(port, 256);
        assert!(c.passed(), "{c}");
    }

    /// A host that grants a session: the engine must not end in NoHost, and the check
    /// must say so.
    struct GrantingHost;

    impl Backdoor for GrantingHost {
        fn call(&mut self, command: u32, _arg1: u64, _arg2: u64) -> RawReply {
            match command {
                0 => RawReply {
                    status: 0x0300_0000,
                    result: 0,
                    capabilities: 0x2,
                },
                _ => RawReply::default(),
            }
        }

        fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)> {
            None
        }
    }

    #[test]
    fn engine_check_fails_when_a_host_answers() {
        let c = engine_no_host(GrantingHost, 256);
        assert!(!c.passed(), "{c}");
    }
}
