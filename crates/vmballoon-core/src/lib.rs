//! `vmballoon-core`: the VMware balloon protocol, the pinned-page-aware policy and the
//! balloon engine of the vmballoon Windows driver.
//!
//! `no_std`, no `unsafe`, no heap, no panics. The core talks to the world only through
//! four traits with methods on `self`: [`protocol::Backdoor`] (one hypervisor call plus the
//! batch page), `PageAllocator`, `MemorySource` and `Clock`. The driver implements them
//! over the NT kernel; the simulator implements them over models; tests use the doubles
//! in `fake` (feature `fake`).
//!
//! Layout: [`units`] (typed `Frames`, `Pfn`, `PageSize`), [`protocol`] (wire format),
//! [`channel`] (the one choke point for host calls), [`stats`], [`error`].
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

pub use error::{Error, Result};
