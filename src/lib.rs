//! `vmballoon.sys`: the KMDF glue of the vmballoon Windows balloon driver.
//!
//! Thin glue over `vmballoon-core` (the engine) and `vmballoon-nt` (the decisions about
//! what the kernel's answers mean): the modules here call the NT kernel and pass results
//! on, and hold no balloon policy (`docs/architecture.md`, "Layout"). Each glue file has
//! its portable counterpart in `vmballoon-nt`, unit-tested on Linux: `memory.rs` →
//! `vmballoon_nt::memory`, `registry.rs` → `vmballoon_nt::registry`, `vmmemctl.rs` and
//! `image_watch.rs` → `vmballoon_nt::vmmemctl`, `etw.rs` → `vmballoon_nt::events`,
//! `worker.rs` → `vmballoon_nt::schedule`, the callbacks → `vmballoon_nt::notices`,
//! `counters.rs` → `vmballoon_nt::counters`, `dump.rs` and `pages.rs` → `vmballoon_nt::dump`.
//!
//! The whole crate is `cfg(windows)`, the one gate below: off Windows it is empty, so the
//! workspace builds and tests on Linux, and `cargo xtask check-windows` type-checks and
//! lints it for `x86_64-pc-windows-msvc` against the WDK mirror.
#![cfg(windows)]
#![cfg_attr(not(test), no_std)]
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

#[cfg(not(test))]
extern crate wdk_panic;

mod batch;
mod clock;
mod counters;
mod driver;
mod dump;
mod etw;
mod image_watch;
mod kernel;
mod mdl;
mod memory;
mod pages;
mod power;
mod registry;
mod state;
mod vmmemctl;
mod worker;
