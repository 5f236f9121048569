//! Mirror of `wdk` 0.5.0 for `cargo xtask check-windows` (see `../README.md`).
#![no_std]

pub use wdk_sys::NT_SUCCESS as nt_success;
