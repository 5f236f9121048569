//! `vmballoon-sim`: the vmballoon engine (and peer balloon drivers) against a simulated
//! VMware host and a simulated Windows memory manager.
//!
//! This is how vmballoon is judged without a Windows VM, and the harness of the
//! end-to-end tests and benchmarks:
//!
//! * [`FakeHost`] ([`host`]): the VMware host side of the balloon protocol, with a
//!   protocol checker;
//! * [`FakeGuest`] ([`guest`]): the Windows memory manager (RAM in 2 MiB blocks, resident
//!   available and commit accounting, `MmAllocatePagesForMdlEx`, pinned memory by kind,
//!   `LowMemoryCondition`);
//! * [`Scenario`] ([`scenario`]): the TOML scenario format of `docs/scenario-format.md`;
//! * [`runner`]: simulated time, events and ticks; [`report`]: summary and timeline;
//!   [`plot`]: the SVG; [`cli`]: the `vmballoon-sim` command line;
//! * [`BalloonDriver`] ([`driver`]): the seam for a balloon driver under test: the engine
//!   ([`DriverKind::Vmballoon`]) or a peer model ([`peers`]: a pinned-page-unaware balloon
//!   and models of VMware's Linux and open-vm-tools drivers);
//! * [`serve`]: the host and guest models as a server for `cargo xtask emulate`, which
//!   runs the real `vmballoon.sys` in an emulated Windows kernel;
//! * [`cost`]: the cost model behind every *modelled* timing (VM exits, host page work,
//!   allocation, zeroing, MDL bookkeeping);
//! * [`mod@bench`]: the benchmark suite behind `cargo xtask bench` (every driver on the same
//!   scenarios, a markdown report with budgets, SVG charts).
//!
//! ```
//! use vmballoon_sim::{DriverKind, Scenario, runner};
//!
//! let scenario = Scenario::builtin();
//! let run = runner::run(&scenario, DriverKind::Vmballoon);
//! let naive = runner::run(&scenario, DriverKind::Naive);
//! assert!(run.summary.guest_alloc_failures < naive.summary.guest_alloc_failures);
//! assert_eq!(run.summary.protocol_violations, 0);
//! assert_eq!(run.summary.contract_violations, 0);
//! ```
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod bench;
pub mod cli;
pub mod cost;
pub mod driver;
pub mod guest;
pub mod host;
pub mod peers;
pub mod plot;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod serve;
pub mod world;

pub use driver::{BalloonDriver, DriverKind};
pub use guest::{FakeGuest, GuestModel, GuestSpec, PinKind};
pub use host::{FakeHost, HostModel, HostSpec};
pub use report::{Summary, TimelineRow};
pub use runner::{RunResult, run, run_with};
pub use scenario::{Scenario, ScenarioError};
pub use vmballoon_core::fake::ManualClock;

/// `serde_json`, re-exported for tools and tests that read `--json` output.
pub use serde_json;
