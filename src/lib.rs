//! `vmballoon.sys`: the KMDF glue of the vmballoon Windows balloon driver.
//!
//! Everything that touches the NT kernel is behind `cfg(windows)`; off Windows this crate
//! builds to an empty library so the workspace builds and tests on Linux.
#![cfg_attr(all(windows, not(test)), no_std)]
