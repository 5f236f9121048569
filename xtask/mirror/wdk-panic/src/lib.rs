//! Mirror of `wdk-panic` 0.5.0 for `cargo xtask check-windows` (see `../README.md`): the
//! kernel panic handler (a bugcheck `RPNC`), which a `no_std` cdylib needs to type-check.
#![no_std]

#[allow(non_snake_case)]
unsafe extern "system" {
    fn KeBugCheckEx(code: u32, p1: usize, p2: usize, p3: usize, p4: usize) -> !;
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: KeBugCheckEx has no preconditions (mirror; never linked).
    unsafe { KeBugCheckEx(u32::from_be_bytes(*b"RPNC"), 0, 0, 0, 0) }
}
