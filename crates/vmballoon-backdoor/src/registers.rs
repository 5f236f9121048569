//! The register images of one backdoor call: what the guest loads before `in eax, dx`
//! ([`Request`]) and what it reads back afterwards ([`Registers`]).
//!
//! Pure data, so the packing is tested on any host. Only [`crate::port`] executes a call.

use vmballoon_core::protocol::{
    BACKDOOR_CMD_GETRAMSIZE, BACKDOOR_CMD_GETVERSION, BACKDOOR_MAGIC, BACKDOOR_PORT, BALLOON_MAGIC,
    BALLOON_PORT, RawReply,
};

/// The registers loaded before `in eax, dx` (`docs/protocol.md` §1.2 and §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// EAX: the magic of the port being called.
    pub eax: u32,
    /// RBX: argument 1 (a PFN, limit, capability mask or guest type for the balloon).
    pub rbx: u64,
    /// RCX: the command number, zero-extended.
    pub rcx: u64,
    /// RDX: the port, zero-extended. `in eax, dx` reads its port number from DX.
    pub rdx: u64,
    /// RSI: argument 2 (the batch entry count for the balloon, otherwise 0).
    pub rsi: u64,
}

impl Request {
    /// A balloon call: magic `0x456C6D6F` on port `0x5670` (`docs/protocol.md` §1.1, §2).
    #[must_use]
    pub fn balloon(command: u32, arg1: u64, arg2: u64) -> Self {
        Self::new(BALLOON_PORT, BALLOON_MAGIC, command, arg1, arg2)
    }

    /// A general-backdoor call: magic "VMXh" on port `0x5658`, `arg1` in RBX, RSI zero.
    #[must_use]
    pub fn backdoor(command: u32, arg1: u64) -> Self {
        Self::new(BACKDOOR_PORT, BACKDOOR_MAGIC, command, arg1, 0)
    }

    /// GETVERSION (command 10), the detection probe (`docs/protocol.md` §1.3).
    #[must_use]
    pub fn getversion() -> Self {
        // A backdoor proves it is there by echoing the magic into EBX. Start EBX at !magic
        // (as OVT does) so that a port that leaves EBX alone can never pass for one.
        //
        // OVT also puts 0xFFFF in ECX's high word to see whether the host wrote a product
        // type. We keep the upper bits zero instead (see `new`); a host that ignores ECX
        // then leaves 10 there, which decodes as an unknown product, not as a real one.
        Self::backdoor(BACKDOOR_CMD_GETVERSION, u64::from(!BACKDOOR_MAGIC))
    }

    /// GETRAMSIZE (command 20). Diagnostics only: QEMU answers with bytes truncated to
    /// 32 bits, VMware is usually described as answering in MB (`docs/protocol.md` §8).
    #[must_use]
    pub fn getramsize() -> Self {
        Self::backdoor(BACKDOOR_CMD_GETRAMSIZE, u64::from(!BACKDOOR_MAGIC))
    }

    fn new(port: u16, magic: u32, command: u32, arg1: u64, arg2: u64) -> Self {
        Self {
            eax: magic,
            // Full 64 bits: with the 64-bit-target capability, limits and PFNs use all of RBX.
            rbx: arg1,
            // VMware reads only CX (QEMU only CL), and OVT leaves the upper bits as garbage.
            // Linux loads the full value; so do we, zero-extended, so that no host can
            // mistake stale upper bits for part of the command (`docs/protocol.md` §1.2, §8).
            rcx: u64::from(command),
            // Same for the port: only DX matters to the `in`; the rest is zeroed.
            rdx: u64::from(port),
            rsi: arg2,
        }
    }
}

/// The registers read back after `in eax, dx` (`docs/protocol.md` §1.2).
///
/// RDX, RSI and RDI are clobbered by the call and deliberately not kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    /// EAX: the balloon status, or the version for GETVERSION. `in eax, dx` writes only
    /// 32 bits (zero-extending RAX), so this is a `u32` and FAILURE reads as `u32::MAX`.
    pub eax: u32,
    /// RBX: the balloon result (the new target), or the magic echo for GETVERSION.
    pub rbx: u64,
    /// RCX: the granted capabilities (balloon START), or the product type for GETVERSION.
    pub rcx: u64,
}

impl Registers {
    /// The reply in the shape the balloon core expects.
    #[must_use]
    pub const fn reply(self) -> RawReply {
        RawReply {
            status: self.eax,
            result: self.rbx,
            capabilities: self.rcx,
        }
    }

    /// EBX: the low half of RBX. GETVERSION's magic echo is a 32-bit value, and a
    /// hypervisor's emulation promises nothing about the upper half.
    #[must_use]
    pub const fn ebx(self) -> u32 {
        (self.rbx & 0xFFFF_FFFF) as u32
    }

    /// ECX: the low half of RCX (GETVERSION's product type is a 32-bit value).
    #[must_use]
    pub const fn ecx(self) -> u32 {
        (self.rcx & 0xFFFF_FFFF) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balloon_request_loads_magic_port_command_and_args() {
        let r = Request::balloon(6, 0x1234, 512);
        assert_eq!(
            r,
            Request {
                eax: 0x456C_6D6F,
                rbx: 0x1234,
                rcx: 6,
                rdx: 0x5670,
                rsi: 512,
            }
        );
    }

    #[test]
    fn rcx_and_rdx_upper_bits_are_zeroed() {
        let r = Request::balloon(u32::MAX, 0, 0);
        assert_eq!(r.rcx, 0x0000_0000_FFFF_FFFF);
        assert_eq!(r.rdx >> 16, 0);
        let g = Request::getversion();
        assert_eq!(g.rcx, 10);
        assert_eq!(g.rdx, 0x5658);
    }

    #[test]
    fn arg1_and_arg2_travel_as_full_64_bit_values() {
        // A 64-bit target limit or a PFN above 16 TiB must not be truncated to EBX.
        let r = Request::balloon(1, 0xFFFF_FFFF_0000_0001, 0x8000_0000_0000_0000);
        assert_eq!(r.rbx, 0xFFFF_FFFF_0000_0001);
        assert_eq!(r.rsi, 0x8000_0000_0000_0000);
    }

    #[test]
    fn getversion_ebx_starts_as_not_magic() {
        let g = Request::getversion();
        assert_eq!(g.eax, 0x564D_5868);
        assert_eq!(g.rbx, 0xA9B2_A797);
        assert_ne!(g.rbx & 0xFFFF_FFFF, u64::from(BACKDOOR_MAGIC));
        assert_eq!(g.rsi, 0);
    }

    #[test]
    fn getramsize_is_command_20_on_the_general_port() {
        let r = Request::getramsize();
        assert_eq!((r.eax, r.rcx, r.rdx), (0x564D_5868, 20, 0x5658));
    }

    #[test]
    fn reply_maps_eax_rbx_rcx_to_status_result_capabilities() {
        let regs = Registers {
            eax: 0x0300_0000,
            rbx: 0x1_0000_0000,
            rcx: 0x2E,
        };
        let reply = regs.reply();
        assert_eq!(reply.status, 0x0300_0000);
        assert_eq!(reply.result, 0x1_0000_0000);
        assert_eq!(reply.capabilities, 0x2E);
    }

    #[test]
    fn status_is_32_bits_so_failure_reads_as_u32_max() {
        let regs = Registers {
            eax: 0xFFFF_FFFF,
            ..Registers::default()
        };
        assert_eq!(regs.reply().status, u32::MAX);
    }

    #[test]
    fn ebx_and_ecx_are_the_low_halves() {
        let regs = Registers {
            eax: 0,
            rbx: 0xDEAD_BEEF_564D_5868,
            rcx: 0xFFFF_FFFF_0000_0004,
        };
        assert_eq!(regs.ebx(), 0x564D_5868);
        assert_eq!(regs.ecx(), 4);
    }
}
