//! Is this a VMware guest? CPUID first, then the GETVERSION backdoor call
//! (`docs/protocol.md` §1.3).
//!
//! The decision logic ([`detect`], [`decode_getversion`]) runs over a [`Cpu`], so it is
//! tested on Linux with fakes; [`RealCpu`] is the processor itself.

use core::fmt;

use vmballoon_core::protocol::BACKDOOR_MAGIC;

use crate::registers::Registers;

/// CPUID leaf 1, ECX bit 31: "running under a hypervisor". Real processors report 0.
const HYPERVISOR_PRESENT: u32 = 1 << 31;

/// The CPUID leaf whose EBX, ECX, EDX hold the hypervisor's vendor signature.
pub const HYPERVISOR_VENDOR_LEAF: u32 = 0x4000_0000;

/// VMware's hypervisor vendor signature.
pub const VMWARE_VENDOR: [u8; 12] = *b"VMwareVMware";

/// The four registers CPUID returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

impl CpuidResult {
    /// The 12-byte signature of the hypervisor leaf: EBX, ECX, EDX in that order.
    /// (Leaf 0's CPU vendor uses EBX, EDX, ECX instead.)
    #[must_use]
    pub fn hypervisor_vendor(self) -> [u8; 12] {
        let [a, b, c, d] = self.ebx.to_le_bytes();
        let [e, f, g, h] = self.ecx.to_le_bytes();
        let [i, j, k, l] = self.edx.to_le_bytes();
        [a, b, c, d, e, f, g, h, i, j, k, l]
    }
}

/// What detection needs from the processor: CPUID and the GETVERSION backdoor call.
///
/// [`RealCpu`] is the processor; tests implement it with fakes.
///
/// # Implementation safety
///
/// [`detect`] is a safe function that calls [`Cpu::getversion`] once [`Cpu::cpuid`] has
/// reported VMware. An implementation whose `getversion` touches real I/O ports must
/// therefore return from `cpuid` exactly what the processor reports. A fake whose
/// `getversion` has no effect outside `self` may return anything.
pub unsafe trait Cpu {
    /// Executes CPUID for `leaf` (sub-leaf 0).
    fn cpuid(&mut self, leaf: u32) -> CpuidResult;

    /// Sends GETVERSION (command 10) to the general backdoor port `0x5658`.
    ///
    /// # Safety
    ///
    /// Touching port `0x5658` must be acceptable: CPUID reported "VMwareVMware", or the
    /// caller knows by other means that the port is a backdoor (a QEMU machine with
    /// vmport). Outside CPL0 the `in` may fault (#GP) if the hypervisor does not allow
    /// it; that ends the program but is not memory-unsafe.
    unsafe fn getversion(&mut self) -> Registers;
}

/// The VMware product reported by GETVERSION in ECX (`vm_vmx_type.h`, `docs/protocol.md` §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxType {
    /// 0: the host did not set a product type.
    Unset,
    /// 1: VMware Express (deprecated).
    Express,
    /// 2: ESX / ESXi ("scalable server"). QEMU's vmport also reports this by default.
    Esx,
    /// 3: VMware Server (deprecated).
    Server,
    /// 4: Workstation (and Fusion).
    Workstation,
    /// 5: ACE (deprecated).
    Ace,
    /// Any other value.
    Unknown(u32),
}

impl VmxType {
    /// Decodes ECX.
    #[must_use]
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Self::Unset,
            1 => Self::Express,
            2 => Self::Esx,
            3 => Self::Server,
            4 => Self::Workstation,
            5 => Self::Ace,
            other => Self::Unknown(other),
        }
    }

    /// The value in ECX.
    #[must_use]
    pub const fn raw(self) -> u32 {
        match self {
            Self::Unset => 0,
            Self::Express => 1,
            Self::Esx => 2,
            Self::Server => 3,
            Self::Workstation => 4,
            Self::Ace => 5,
            Self::Unknown(v) => v,
        }
    }

    /// Name for logs.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unset => "unset",
            Self::Express => "Express",
            Self::Esx => "ESX",
            Self::Server => "Server",
            Self::Workstation => "Workstation",
            Self::Ace => "ACE",
            Self::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for VmxType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(v) => write!(f, "unknown product ({v})"),
            known => f.write_str(known.name()),
        }
    }
}

/// A VMware backdoor that answered GETVERSION.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detected {
    /// EAX of GETVERSION: the backdoor (VMX) version. QEMU's vmport reports 6.
    pub version: u32,
    /// ECX of GETVERSION: the product.
    pub product: VmxType,
}

impl fmt::Display for Detected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VMware {}, backdoor version {}",
            self.product, self.version
        )
    }
}

/// Why detection decided this is not a VMware guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DetectError {
    /// `CPUID.1:ECX[31]` is clear: bare metal (or a hypervisor that hides itself).
    NoHypervisor,
    /// A hypervisor whose CPUID signature is not "VMwareVMware" (KVM, TCG, Hyper-V, ...).
    NotVmware {
        /// The signature from leaf `0x40000000` (EBX, ECX, EDX).
        vendor: [u8; 12],
    },
    /// GETVERSION got no backdoor answer: EAX was all ones or EBX did not echo the magic.
    BackdoorAbsent {
        /// EAX of the reply.
        eax: u32,
        /// EBX of the reply.
        ebx: u32,
    },
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHypervisor => f.write_str("no hypervisor (CPUID.1:ECX[31] is clear)"),
            Self::NotVmware { vendor } => {
                f.write_str("hypervisor vendor \"")?;
                // Signatures are NUL-padded ASCII ("KVMKVMKVM\0\0\0"): drop the padding,
                // escape anything else that is not printable.
                let len = vendor.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                for &b in vendor.iter().take(len) {
                    write!(f, "{}", core::ascii::escape_default(b))?;
                }
                f.write_str("\" is not VMwareVMware")
            }
            Self::BackdoorAbsent { eax, ebx } => write!(
                f,
                "VMware backdoor did not answer GETVERSION (eax {eax:#010x}, ebx {ebx:#010x})"
            ),
        }
    }
}

/// Detects VMware: CPUID leaf 1, then CPUID leaf `0x40000000`, then GETVERSION.
///
/// The order matters. The backdoor ports are VMware's only under VMware: on bare metal or
/// another hypervisor port `0x5658` may belong to a device, and even QEMU's vmport (which
/// answers GETVERSION) has no balloon behind port `0x5670`. So the two CPUID checks, which
/// are harmless everywhere, must both pass before any port is touched. GETVERSION then
/// confirms that the backdoor answers, and reports the version and product for the log.
///
/// # Errors
///
/// [`DetectError::NoHypervisor`] or [`DetectError::NotVmware`] without touching any port;
/// [`DetectError::BackdoorAbsent`] if GETVERSION got no valid answer.
pub fn detect(cpu: &mut impl Cpu) -> Result<Detected, DetectError> {
    if cpu.cpuid(1).ecx & HYPERVISOR_PRESENT == 0 {
        return Err(DetectError::NoHypervisor);
    }
    let vendor = cpu.cpuid(HYPERVISOR_VENDOR_LEAF).hypervisor_vendor();
    if vendor != VMWARE_VENDOR {
        return Err(DetectError::NotVmware { vendor });
    }
    // SAFETY: CPUID reported the hypervisor bit and the "VMwareVMware" signature, and `Cpu`'s
    // implementation-safety contract makes that report truthful for any `getversion` that
    // touches hardware; so port 0x5658 is VMware's backdoor.
    let reply = unsafe { cpu.getversion() };
    decode_getversion(reply)
}

/// Decodes a GETVERSION reply: valid if EAX is not all ones and EBX echoes the magic.
///
/// # Errors
///
/// [`DetectError::BackdoorAbsent`] otherwise.
pub fn decode_getversion(reply: Registers) -> Result<Detected, DetectError> {
    // An unclaimed port reads all ones (QEMU with vmport=off: `docs/protocol.md` §8), and leaves
    // EBX at the !magic we loaded. Linux's test is the same: eax != ~0 && ebx == magic.
    // Both are 32-bit values, so only EBX, not all of RBX, is compared.
    let (eax, ebx) = (reply.eax, reply.ebx());
    if eax == u32::MAX || ebx != BACKDOOR_MAGIC {
        return Err(DetectError::BackdoorAbsent { eax, ebx });
    }
    Ok(Detected {
        version: eax,
        product: VmxType::from_raw(reply.ecx()),
    })
}

#[cfg(target_arch = "x86_64")]
pub use real::{RealCpu, probe_getramsize, probe_getversion};

#[cfg(target_arch = "x86_64")]
mod real {
    use core::ptr;

    use super::{Cpu, CpuidResult, DetectError, Detected, decode_getversion};
    use crate::port::port_call;
    use crate::registers::{Registers, Request};

    /// The processor this code runs on: `__cpuid` and the real port call.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct RealCpu;

    // SAFETY: `cpuid` returns exactly what the CPUID instruction reports.
    unsafe impl Cpu for RealCpu {
        fn cpuid(&mut self, leaf: u32) -> CpuidResult {
            // `__cpuid` is an unsafe fn before Rust ~1.94 (the workspace MSRV is 1.91) and a
            // safe one after, where this block is redundant.
            #[allow(
                unused_unsafe,
                reason = "__cpuid is unsafe on the MSRV, safe on newer Rust"
            )]
            // SAFETY: CPUID exists on every x86_64 processor, and any leaf may be queried:
            // out-of-range leaves return other leaves' data, never fault.
            let r = unsafe { core::arch::x86_64::__cpuid(leaf) };
            CpuidResult {
                eax: r.eax,
                ebx: r.ebx,
                ecx: r.ecx,
                edx: r.edx,
            }
        }

        unsafe fn getversion(&mut self) -> Registers {
            // SAFETY: our caller promises port 0x5658 may be touched. GETVERSION names no
            // guest memory, so nothing is shared (null RDI).
            unsafe { port_call(Request::getversion(), ptr::null_mut()) }
        }
    }

    /// GETVERSION without the CPUID checks, decoded: for diagnostics and for testing
    /// under QEMU, whose vmport answers GETVERSION but whose CPUID says "KVMKVMKVM" or
    /// "TCGTCGTCGTCG" (`docs/protocol.md` §8).
    ///
    /// # Errors
    ///
    /// [`DetectError::BackdoorAbsent`] if nothing answered.
    ///
    /// # Safety
    ///
    /// Reading port `0x5658` must be acceptable on this machine: it is VMware, or a QEMU
    /// machine with vmport, or the caller otherwise knows no device sits behind it.
    /// (Outside CPL0 the `in` may also fault, as for [`Cpu::getversion`].)
    pub unsafe fn probe_getversion() -> Result<Detected, DetectError> {
        // SAFETY: our caller gives exactly the promise `getversion` asks for.
        let reply = unsafe { RealCpu.getversion() };
        decode_getversion(reply)
    }

    /// GETRAMSIZE (command 20), raw. Diagnostics only: the unit differs between QEMU
    /// (bytes, truncated to 32 bits, EBX = `0x1177`) and VMware (`docs/protocol.md` §8).
    ///
    /// # Safety
    ///
    /// As for [`probe_getversion`].
    pub unsafe fn probe_getramsize() -> Registers {
        // SAFETY: our caller promises port 0x5658 may be touched. GETRAMSIZE names no
        // guest memory, so nothing is shared (null RDI).
        unsafe { port_call(Request::getramsize(), ptr::null_mut()) }
    }
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::ToString;
    use std::vec::Vec;

    use super::*;

    /// Answers the two CPUID leaves detection reads (every other leaf reads zero) and
    /// records every call, so tests can prove that no port was touched.
    struct FakeCpu {
        leaf1_ecx: u32,
        vendor: [u8; 12],
        getversion_reply: Registers,
        log: Vec<&'static str>,
    }

    impl FakeCpu {
        /// A VMware Workstation guest whose backdoor answers version 6.
        fn vmware() -> Self {
            Self {
                leaf1_ecx: HYPERVISOR_PRESENT,
                vendor: VMWARE_VENDOR,
                getversion_reply: Registers {
                    eax: 6,
                    rbx: u64::from(BACKDOOR_MAGIC),
                    rcx: 4,
                },
                log: Vec::new(),
            }
        }

        fn with_vendor(vendor: &[u8; 12]) -> Self {
            Self {
                vendor: *vendor,
                ..Self::vmware()
            }
        }

        fn touched_port(&self) -> bool {
            self.log.contains(&"getversion")
        }
    }

    // SAFETY: `getversion` only returns a stored value; it never touches a port.
    unsafe impl Cpu for FakeCpu {
        fn cpuid(&mut self, leaf: u32) -> CpuidResult {
            match leaf {
                1 => {
                    self.log.push("cpuid 1");
                    CpuidResult {
                        ecx: self.leaf1_ecx,
                        ..CpuidResult::default()
                    }
                }
                HYPERVISOR_VENDOR_LEAF => {
                    self.log.push("cpuid 0x40000000");
                    let word = |i: usize| {
                        let mut w = [0; 4];
                        w.copy_from_slice(&self.vendor[i..i + 4]);
                        u32::from_le_bytes(w)
                    };
                    CpuidResult {
                        eax: 0x4000_0010,
                        ebx: word(0),
                        ecx: word(4),
                        edx: word(8),
                    }
                }
                _ => {
                    self.log.push("cpuid other");
                    CpuidResult::default()
                }
            }
        }

        unsafe fn getversion(&mut self) -> Registers {
            self.log.push("getversion");
            self.getversion_reply
        }
    }

    #[test]
    fn vmware_present_is_detected() {
        let mut cpu = FakeCpu::vmware();
        assert_eq!(
            detect(&mut cpu),
            Ok(Detected {
                version: 6,
                product: VmxType::Workstation
            })
        );
    }

    #[test]
    fn detection_order_is_hypervisor_bit_then_vendor_then_getversion() {
        let mut cpu = FakeCpu::vmware();
        detect(&mut cpu).unwrap();
        assert_eq!(cpu.log, ["cpuid 1", "cpuid 0x40000000", "getversion"]);
    }

    #[test]
    fn hypervisor_bit_clear_touches_no_port() {
        // Bare metal: port 0x5658 may be a device; even the vendor leaf is not read.
        let mut cpu = FakeCpu {
            leaf1_ecx: 0x7FFF_FFFF,
            ..FakeCpu::vmware()
        };
        assert_eq!(detect(&mut cpu), Err(DetectError::NoHypervisor));
        assert!(!cpu.touched_port());
        assert_eq!(cpu.log, ["cpuid 1"]);
    }

    #[test]
    fn other_hypervisors_touch_no_port() {
        for vendor in [
            b"KVMKVMKVM\0\0\0",
            b"TCGTCGTCGTCG",
            b"Microsoft Hv",
            b"XenVMMXenVMM",
            b"\0\0\0\0\0\0\0\0\0\0\0\0",
            b"vmwarevmware",
        ] {
            let mut cpu = FakeCpu::with_vendor(vendor);
            assert_eq!(
                detect(&mut cpu),
                Err(DetectError::NotVmware { vendor: *vendor })
            );
            assert!(!cpu.touched_port(), "{vendor:?}");
        }
    }

    #[test]
    fn qemu_vmport_without_vmware_cpuid_is_not_detected() {
        // QEMU's vmport answers GETVERSION perfectly, but CPUID says KVM: detect() must
        // refuse; only the explicit probe (not run here: it executes `in`) trusts it.
        let mut cpu = FakeCpu::with_vendor(b"KVMKVMKVM\0\0\0");
        assert!(matches!(
            detect(&mut cpu),
            Err(DetectError::NotVmware { .. })
        ));
        assert!(!cpu.touched_port());
        assert!(decode_getversion(cpu.getversion_reply).is_ok());
    }

    #[test]
    fn getversion_all_ones_means_backdoor_absent() {
        let mut cpu = FakeCpu::vmware();
        cpu.getversion_reply.eax = u32::MAX;
        assert_eq!(
            detect(&mut cpu),
            Err(DetectError::BackdoorAbsent {
                eax: u32::MAX,
                ebx: BACKDOOR_MAGIC,
            })
        );
    }

    #[test]
    fn untouched_ebx_is_not_a_magic_echo() {
        // An unassigned port reads all ones and leaves EBX at the !magic we loaded.
        let mut cpu = FakeCpu::vmware();
        cpu.getversion_reply = Registers {
            eax: u32::MAX,
            rbx: u64::from(!BACKDOOR_MAGIC),
            rcx: 10,
        };
        assert_eq!(
            detect(&mut cpu),
            Err(DetectError::BackdoorAbsent {
                eax: u32::MAX,
                ebx: !BACKDOOR_MAGIC,
            })
        );
    }

    #[test]
    fn wrong_magic_echo_means_backdoor_absent() {
        let mut cpu = FakeCpu::vmware();
        cpu.getversion_reply.rbx = 0x1177;
        assert_eq!(
            detect(&mut cpu),
            Err(DetectError::BackdoorAbsent {
                eax: 6,
                ebx: 0x1177
            })
        );
    }

    #[test]
    fn magic_echo_is_compared_in_ebx_not_rbx() {
        let mut cpu = FakeCpu::vmware();
        cpu.getversion_reply.rbx = 0xFFFF_FFFF_0000_0000 | u64::from(BACKDOOR_MAGIC);
        assert!(detect(&mut cpu).is_ok());
    }

    #[test]
    fn each_product_type_decodes() {
        let expected = [
            (0, VmxType::Unset),
            (1, VmxType::Express),
            (2, VmxType::Esx),
            (3, VmxType::Server),
            (4, VmxType::Workstation),
            (5, VmxType::Ace),
            (6, VmxType::Unknown(6)),
            // A host that ignored ECX leaves our command number there.
            (10, VmxType::Unknown(10)),
        ];
        for (raw, product) in expected {
            let mut cpu = FakeCpu::vmware();
            cpu.getversion_reply.rcx = u64::from(raw);
            assert_eq!(detect(&mut cpu).unwrap().product, product);
            assert_eq!(product.raw(), raw);
            assert_eq!(VmxType::from_raw(raw), product);
        }
    }

    #[test]
    fn product_type_is_read_from_ecx_low_half() {
        let mut cpu = FakeCpu::vmware();
        cpu.getversion_reply.rcx = 0xFFFF_FFFF_0000_0002;
        assert_eq!(detect(&mut cpu).unwrap().product, VmxType::Esx);
    }

    #[test]
    fn hypervisor_vendor_is_ebx_ecx_edx_order() {
        let leaf = CpuidResult {
            eax: 0x4000_0010,
            ebx: u32::from_le_bytes(*b"VMwa"),
            ecx: u32::from_le_bytes(*b"reVM"),
            edx: u32::from_le_bytes(*b"ware"),
        };
        assert_eq!(leaf.hypervisor_vendor(), VMWARE_VENDOR);
    }

    #[test]
    fn real_cpuid_leaf0_reports_a_vendor() {
        // CPUID is harmless anywhere; leaf 0 gives the max basic leaf and the CPU vendor
        // (EBX, EDX, ECX order there). No port is touched.
        let leaf0 = RealCpu.cpuid(0);
        assert!(leaf0.eax >= 1, "max basic leaf {}", leaf0.eax);
        let vendor = [leaf0.ebx, leaf0.edx, leaf0.ecx].map(u32::to_le_bytes);
        assert!(
            vendor.as_flattened().iter().all(u8::is_ascii_graphic),
            "{vendor:?}"
        );
    }

    #[test]
    fn error_display_texts() {
        assert_eq!(
            DetectError::NoHypervisor.to_string(),
            "no hypervisor (CPUID.1:ECX[31] is clear)"
        );
        assert_eq!(
            DetectError::NotVmware {
                vendor: *b"KVMKVMKVM\0\0\0"
            }
            .to_string(),
            "hypervisor vendor \"KVMKVMKVM\" is not VMwareVMware"
        );
        assert_eq!(
            DetectError::NotVmware {
                vendor: *b"Bad\x01Vendor\0X"
            }
            .to_string(),
            "hypervisor vendor \"Bad\\x01Vendor\\x00X\" is not VMwareVMware"
        );
        assert_eq!(
            DetectError::BackdoorAbsent {
                eax: u32::MAX,
                ebx: !BACKDOOR_MAGIC
            }
            .to_string(),
            "VMware backdoor did not answer GETVERSION (eax 0xffffffff, ebx 0xa9b2a797)"
        );
    }

    #[test]
    fn detected_display() {
        let d = Detected {
            version: 6,
            product: VmxType::Esx,
        };
        assert_eq!(d.to_string(), "VMware ESX, backdoor version 6");
        let u = Detected {
            version: 7,
            product: VmxType::Unknown(9),
        };
        assert_eq!(
            format!("{u}"),
            "VMware unknown product (9), backdoor version 7"
        );
    }
}
