//! `vmballoon-core`: the VMware balloon protocol, the pinned-page-aware policy and the
//! balloon engine of the vmballoon Windows driver.
//!
//! `no_std`, no `unsafe`, no heap, no panics. The core talks to the world only through
//! four traits with methods on `self`: [`protocol::Backdoor`] (one hypervisor call plus the
//! batch page), [`platform::PageAllocator`], [`platform::MemorySource`] and
//! [`platform::Clock`]. The driver implements them over the NT kernel; the simulator over
//! models of a VMware host and the Windows memory manager; tests use the doubles in
//! `fake` (feature `fake`).
//!
//! Layout: [`units`] (typed `Frames`, `Pfn`, `PageSize`), [`protocol`] (wire format),
//! [`channel`] (the one choke point for host calls), [`config`] (registry values and
//! their validation), [`policy`] (the safe ceiling and the per-tick plan, pure functions),
//! [`engine`] (the state machine), [`stats`], [`error`].
//!
//! # Example
//!
//! The construction order the driver and the simulator use: platform first, then the
//! engine, then one `tick` per poll interval.
//!
//! ```
//! # #[cfg(feature = "fake")] {
//! use vmballoon_core::config::Config;
//! use vmballoon_core::engine::{Balloon, SessionState};
//! use vmballoon_core::fake::{Expect, FakeWorld, ManualClock, ScriptedBackdoor};
//! use vmballoon_core::protocol::Command;
//! use vmballoon_core::units::Frames;
//!
//! // A host that grants everything and asks for 64 MiB (16384 frames).
//! let host = ScriptedBackdoor::new([
//!     Expect::start(0x2E),                                // START: everything granted
//!     Expect::guest_id(),                                 // GUEST_ID: Windows
//!     Expect::target(Frames::from_mib(4096), 16384),      // TARGET: limit = the guest's RAM
//!     // 32 × 2 MiB pages in one call; the first 8 MiB allocated measured the accounting
//!     // and the next 8 MiB confirmed it, before the call.
//!     Expect::batch(Command::Batched2mLock, 32, 16384),
//! ]);
//! let guest = FakeWorld::new(4096, 300, 4096); // 4 GiB RAM, 300 MiB OS, 4 GiB page file
//! let mut balloon =
//!     Balloon::new(host.clone(), guest.pages(), guest.memory(), ManualClock::new(), Config::default());
//!
//! let report = balloon.tick();
//! assert_eq!(report.state, SessionState::Running);
//! assert_eq!(report.balloon, Frames::from_mib(64));
//! host.done();
//! # }
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
// Overflow and lossy casts are panics or silent bugs in a kernel: none outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        clippy::cast_sign_loss
    )
)]

#[cfg(any(test, feature = "fake"))]
extern crate std;

pub mod channel;
pub mod config;
pub mod engine;
pub mod error;
pub mod mask;
pub mod platform;
pub mod policy;
pub mod protocol;
pub mod stats;
pub mod units;

#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(feature = "fake")]
pub mod workload;

pub use error::{Error, Result};
