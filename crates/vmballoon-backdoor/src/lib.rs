//! `vmballoon-backdoor`: the VMware backdoor call and VMware detection, the only inline
//! assembly in vmballoon.
//!
//! # Two ports
//!
//! VMware has two backdoors, both reached with a single `in eax, dx` (`docs/protocol.md` §1.1):
//!
//! | port | magic in EAX | used for |
//! |---|---|---|
//! | `0x5658` | `0x564D5868` ("VMXh") | detection: GETVERSION (10), and GETRAMSIZE (20) for diagnostics |
//! | `0x5670` | `0x456C6D6F` ("Elmo") | every balloon command, through [`VmwareBackdoor`] |
//!
//! Both go through one private primitive that loads a [`Request`], executes the `in` and
//! returns the [`Registers`]. Packing and decoding are plain functions, tested on any host.
//!
//! # Detection order
//!
//! [`detect`] checks CPUID leaf 1 ECX bit 31 (a hypervisor is present), then the vendor
//! signature at leaf `0x40000000` ("VMwareVMware"), and only then sends GETVERSION, which
//! must answer EAX ≠ `0xFFFFFFFF` and echo the magic in EBX. CPUID is harmless everywhere;
//! an I/O port is not: on bare metal or under another hypervisor `0x5658` and `0x5670`
//! are not VMware's and may belong to a device. So a failed CPUID check returns an error
//! without touching any port.
//!
//! QEMU's vmport answers GETVERSION but reports KVM or TCG in CPUID (`docs/protocol.md` §8),
//! so [`detect`] rejects it. [`probe_getversion`] skips the CPUID checks for diagnostics
//! and QEMU tests; its caller promises the port may be touched.
//!
//! # Example
//!
//! Detection is generic over [`Cpu`], so it runs here over a fake VMware processor. The
//! driver passes [`RealCpu`].
//!
//! ```
//! use vmballoon_backdoor::{detect, Cpu, CpuidResult, DetectError, Registers, VmxType};
//!
//! /// A VMware ESX guest, as CPUID and GETVERSION describe it.
//! struct FakeEsx {
//!     getversion_calls: u32,
//! }
//!
//! // SAFETY: `getversion` touches no port; it only counts and returns a fixed reply.
//! unsafe impl Cpu for FakeEsx {
//!     fn cpuid(&mut self, leaf: u32) -> CpuidResult {
//!         match leaf {
//!             1 => CpuidResult { ecx: 1 << 31, ..Default::default() },
//!             0x4000_0000 => CpuidResult {
//!                 eax: 0x4000_0010,
//!                 ebx: u32::from_le_bytes(*b"VMwa"),
//!                 ecx: u32::from_le_bytes(*b"reVM"),
//!                 edx: u32::from_le_bytes(*b"ware"),
//!             },
//!             _ => CpuidResult::default(),
//!         }
//!     }
//!
//!     unsafe fn getversion(&mut self) -> Registers {
//!         self.getversion_calls += 1;
//!         Registers { eax: 6, rbx: 0x564D_5868, rcx: 2 }
//!     }
//! }
//!
//! let mut cpu = FakeEsx { getversion_calls: 0 };
//! let found = detect(&mut cpu)?;
//! assert_eq!(found.product, VmxType::Esx);
//! assert_eq!(found.to_string(), "VMware ESX, backdoor version 6");
//! assert_eq!(cpu.getversion_calls, 1);
//! # Ok::<(), DetectError>(())
//! ```
//!
//! In the driver, the backdoor is built only after detection succeeded (compiled, not run:
//! it executes `in`):
//!
//! ```no_run
//! use core::ptr::NonNull;
//! use vmballoon_backdoor::{detect, DetectError, RealCpu, VmwareBackdoor};
//! use vmballoon_core::protocol::BatchPage;
//! use vmballoon_core::units::Pfn;
//!
//! /// `page` is a zeroed, resident page below 4 GiB that lives as long as the session.
//! fn open(page: NonNull<BatchPage>, pfn: Pfn) -> Result<VmwareBackdoor, DetectError> {
//!     let found = detect(&mut RealCpu)?;
//!     let _ = found; // logged by the glue
//!     // SAFETY: `detect` established VMware, so 0x5670 is the balloon port; the page
//!     // contract is the caller's (see `VmwareBackdoor::new`).
//!     Ok(unsafe { VmwareBackdoor::new(page, pfn) })
//! }
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    missing_docs
)]

mod detect;
mod registers;

#[cfg(target_arch = "x86_64")]
mod balloon;
#[cfg(target_arch = "x86_64")]
mod port;

#[cfg(target_arch = "x86_64")]
pub use balloon::VmwareBackdoor;
pub use detect::{
    Cpu, CpuidResult, DetectError, Detected, HYPERVISOR_VENDOR_LEAF, VMWARE_VENDOR, VmxType,
    decode_getversion, detect,
};
#[cfg(target_arch = "x86_64")]
pub use detect::{RealCpu, probe_getramsize, probe_getversion};
pub use registers::{Registers, Request};
