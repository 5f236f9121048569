//! Mirror of `wdk-alloc` 0.4.2 for `cargo xtask check-windows` (see `../README.md`).
//! The glue allocates nothing through the global allocator, so no item is mirrored.
#![no_std]
