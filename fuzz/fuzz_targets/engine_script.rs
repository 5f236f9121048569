//! (b) The engine driven by an adversarial host script: fuzz bytes → a guest, a host
//! capability set, the registry, per-call host replies and guest steps; the real engine
//! runs against the simulator through `vmballoon-testkit`'s harness, whose invariants (no
//! leak, no double free, no page freed while the host holds it, no LOCK of a held frame,
//! no UNLOCK of an unheld one, the inflation bound, the floors, recovery after the host
//! turns honest, unload returns every page) are asserted after every tick.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use vmballoon_fuzz::decode;
use vmballoon_testkit::harness;

/// Seconds of honest host at the end of each run.
const RECOVER_S: u64 = 30;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((setup, script, steps, target)) = decode::engine_run(&mut u) else {
        return;
    };
    if let Err(e) = harness::run(&setup, script, &steps, target, RECOVER_S) {
        panic!("{e}");
    }
});
