//! (a) Batch-page and reply decoding: START's negotiation, TARGET's width rule and one
//! transfer (batched or single-page, lock or unlock, 4 KiB or 2 MiB) against a host that
//! answers any EAX / RBX / RCX and writes anything into the batch page. The core's channel
//! must decode exactly what `vmballoon_testkit::channel` specifies.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use vmballoon_fuzz::decode;
use vmballoon_testkit::channel;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(case) = decode::transfer_case(&mut u)
        && let Err(e) = channel::check(&case)
    {
        panic!("{e}");
    }
});
