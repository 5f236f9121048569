//! `vmballoon.sys`: the KMDF glue of the vmballoon Windows balloon driver.
//!
//! Thin glue over `vmballoon-core`: every module that touches the NT kernel is behind
//! `cfg(windows)` and holds no balloon policy. The decisions the glue needs that are not
//! kernel calls are portable modules, built and unit-tested on Linux:
//!
//! * [`memsnap`]: `ZwQuerySystemInformation` replies → core `MemorySnapshot`, and which
//!   layouts are in use;
//! * [`events`] and [`etw`]: the `VmBalloon.Driver` ETW events and when they are written;
//! * [`modules`]: is VMware's `vmmemctl.sys` loaded, or is the image loading now it?
//! * [`notices`]: what the power and load-image callbacks tell the worker, and what the
//!   worker does about it (stand down, power down, wait for S0, run);
//! * [`ntstatus`]: `NT_SUCCESS` as a `Result`, and the `STATUS_WAIT_n` of a multi-object
//!   wait;
//! * [`regvalue`]: what a registry read's NTSTATUS means for the config validator;
//! * [`schedule`]: how long the worker waits, when it re-reads the registry, and when it
//!   watches `LowMemoryCondition` and `MaximumCommitCondition`.
//!
//! Off Windows this crate is an ordinary library of those modules, so the workspace builds
//! and tests on Linux; `cargo xtask check-windows` type-checks the `cfg(windows)` glue.
#![cfg_attr(all(windows, not(test)), no_std)]
// The core's discipline (`crates/vmballoon-core/src/lib.rs`): no panics on any input, and
// no silent overflow or lossy cast, in kernel code.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        clippy::cast_sign_loss
    )
)]

pub mod etw;
pub mod events;
pub mod memsnap;
pub mod modules;
pub mod notices;
pub mod ntstatus;
pub mod regvalue;
pub mod schedule;

#[cfg(all(windows, not(test)))]
extern crate wdk_panic;

#[cfg(windows)]
mod batch;
#[cfg(windows)]
mod clock;
#[cfg(windows)]
mod driver;
#[cfg(windows)]
mod image_watch;
#[cfg(windows)]
mod kernel;
#[cfg(windows)]
mod mdl;
#[cfg(windows)]
mod memory;
#[cfg(windows)]
mod pages;
#[cfg(windows)]
mod power;
#[cfg(windows)]
mod registry;
#[cfg(windows)]
mod state;
#[cfg(windows)]
mod vmmemctl;
#[cfg(windows)]
mod worker;
