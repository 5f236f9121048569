//! (d) The driver's memory-snapshot parsers (`vmballoon_nt::memory`) on arbitrary byte
//! buffers and `ReturnLength` values, against the independent reading of
//! `docs/windows-memory.md` §3.2 in `vmballoon_testkit::memory`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmballoon_testkit::memory;

fuzz_target!(|data: &[u8]| {
    let (head, buf) = data.split_at(data.len().min(5));
    let mut b = [0u8; 5];
    b[..head.len()].copy_from_slice(head);
    // Half the time a documented size, so the field reads are reached.
    let sizes = [0x38u32, 0x40, 0x138, 0x148, 0x158, 0x178];
    let rl = if b[4] & 1 == 0 {
        sizes[usize::from(b[0]) % sizes.len()]
    } else {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    if let Err(e) = memory::check(buf, rl, b[4] & 2 != 0) {
        panic!("{e}");
    }
});
