//! The one `in eax, dx`: the only inline assembly in the driver (the QEMU test probe in
//! `xtask/qemu-probe` has one `out` of its own, to exit the test VM).
//!
//! Both ports go through [`port_call`]: the balloon port (`0x5670`) for every balloon
//! command, and the general backdoor port (`0x5658`) for the GETVERSION and GETRAMSIZE
//! probes. Which port and magic is decided by the [`Request`].

use core::arch::asm;

use vmballoon_core::protocol::BatchPage;

use crate::registers::{Registers, Request};

/// Executes one backdoor call: loads `request`, runs `in eax, dx`, returns EAX, RBX, RCX.
///
/// Run it at CPL0 (the driver does). Elsewhere the `in` faults (#GP) unless the
/// hypervisor allows the port, which ends the program but is not memory-unsafe.
///
/// `shared` travels in RDI only to tell the compiler that the host may read and write
/// that memory during the call; the host itself ignores RDI. Pass the batch page for
/// balloon calls that have one, null otherwise.
///
/// # Safety
///
/// * The port in `request.rdx` is VMware's backdoor at that port (established with
///   [`crate::detect`]), or the caller otherwise knows that reading it is harmless (a
///   QEMU test machine with vmport). On bare metal or another hypervisor it may be a
///   device register.
/// * Every guest page the command names (the batch page's PFN for batched balloon
///   commands) is `shared`, and `shared` is null or points to a valid, resident
///   [`BatchPage`] that no Rust reference aliases during the call: the host writes it.
pub(crate) unsafe fn port_call(request: Request, shared: *mut BatchPage) -> Registers {
    let eax: u32;
    let rbx: u64;
    let rcx: u64;
    // SAFETY: the caller promises the port is VMware's backdoor (or harmless to read). The
    // only memory the host touches is the batch page, which the caller promises is valid
    // and unaliased and which we name in RDI. The register contract is spelled out operand by operand below:
    //
    // * RBX carries argument 1 in and the result out, but LLVM reserves RBX (it can be the
    //   base pointer of a realigned frame), so Rust rejects it as an operand. As in
    //   virtio-drivers' x86_64 `hypercalls.rs`, argument 1 goes in a scratch register the
    //   compiler picks and is swapped into RBX around the `in`; the second `xchg` restores
    //   the compiler's RBX and leaves the result in the scratch register. We swap instead
    //   of push/pop so the stack is untouched. The scratch cannot be RAX, RCX, RDX, RSI or
    //   RDI (named below), RBX, RSP or RBP (reserved), so it is one of R8-R15, which the
    //   backdoor never touches: the protocol is defined on the six legacy GPRs only.
    // * EAX: magic in, status (or version) out. IN writes 32 bits and zero-extends RAX.
    // * RCX: command in, capabilities (START) or product type (GETVERSION) out.
    // * RDX, RSI: port and argument 2 in, clobbered out (`docs/protocol.md` §1.2).
    // * RDI: unused by the protocol, but OVT saves all six GPRs around the call because the
    //   host may change EDI, so it is clobbered too.
    unsafe {
        asm!(
            "xchg {arg1}, rbx",
            "in eax, dx",
            "xchg {arg1}, rbx",
            arg1 = inout(reg) request.rbx => rbx,
            inout("eax") request.eax => eax,
            inout("rcx") request.rcx => rcx,
            inout("rdx") request.rdx => _,
            inout("rsi") request.rsi => _,
            inout("rdi") shared => _,
            // No `nomem` or `readonly`: the host writes the batch page during the IN, so the
            // asm must be a full compiler barrier (Linux uses a "memory" clobber).
            // No `preserves_flags`: the hypervisor's emulation of IN promises nothing about
            // RFLAGS. `nostack`: nothing above pushes, and the host does not use our stack.
            options(nostack),
        );
    }
    Registers { eax, rbx, rcx }
}
