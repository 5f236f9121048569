//! `vmballoon-nt`: the decisions of the driver's Windows glue that are not kernel calls,
//! portable and unit-tested on Linux.
//!
//! The glue (`src/` of the `vmballoon` package, built only for Windows) calls the NT
//! kernel and hands what it got to this crate; everything that depends on what those
//! answers mean lives here (`docs/architecture.md`, "Layout": "as soon as a decision
//! depends on the balloon's state, that decision moves into portable, tested code"). Each
//! module is named after the glue file it serves:
//!
//! | module | serves | what it decides |
//! |---|---|---|
//! | [`memory`] | `src/memory.rs` | `ZwQuerySystemInformation` replies → the core's `MemorySnapshot`, with the fail-closed trust rules, and which layouts are in use |
//! | [`registry`] | `src/registry.rs` | what one `WdfRegistryQueryULong` answer means for the config validator |
//! | [`vmmemctl`] | `src/vmmemctl.rs`, `src/image_watch.rs` | is VMware's `vmmemctl.sys` loaded, or is the image loading now it? |
//! | [`counters`] | `src/counters.rs` | the `VM Balloon` performance-counter set: layout, names, PCW types, and the mapping from the engine's tick reports and statistics (`docs/windows-memory.md §9.6`) |
//! | [`dump`] | `src/dump.rs` | the table of ballooned page ranges the bug-check callback hands the dump writer: a seqlock per slot, consistent for a reader that stops the writer anywhere (`docs/windows-memory.md §9.5`) |
//! | [`events`] | `src/etw.rs` | the `VmBalloon.Driver` ETW events as plain data, the provider's name, GUID and keywords, and when each event is written |
//! | [`schedule`] | `src/worker.rs` | how long the worker waits, when it re-reads the registry, when it watches `LowMemoryCondition` and `MaximumCommitCondition` |
//! | [`notices`] | `src/power.rs`, `src/image_watch.rs`, `src/worker.rs` | what the power and load-image callbacks tell the worker, and what it does about it |
//! | [`ntstatus`] | every glue file | `NT_SUCCESS` as a `Result`, and the `STATUS_WAIT_n` of a multi-object wait |
//!
//! `no_std`, no `unsafe`, no heap, no panics on any input: the core's discipline
//! (`crates/vmballoon-core/src/lib.rs`), because all of it runs in the kernel.
#![cfg_attr(not(test), no_std)]
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

pub mod counters;
pub mod dump;
pub mod events;
pub mod memory;
pub mod notices;
pub mod ntstatus;
pub mod registry;
pub mod schedule;
pub mod vmmemctl;
