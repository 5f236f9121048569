//! The ETW plumbing outside the code: the provider GUID used by `vmballoon.wprp` (and the
//! README's `logman` commands) is the one the driver registers,
//! `Guid::from_name("VmBalloon.Driver")`, and the WPR profile is usable for a kernel-mode
//! provider. The event definitions themselves are unit-tested in
//! `crates/vmballoon-nt/src/events.rs`; the glue's `src/etw.rs` (Windows only) writes them.

use vmballoon_nt::events::{PROVIDER_GUID, PROVIDER_NAME};

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))).expect(rel)
}

fn guid() -> String {
    let bytes = tracelogging::Guid::from_name(PROVIDER_NAME).to_utf8_bytes();
    String::from_utf8(bytes.to_vec()).expect("ascii")
}

#[test]
fn provider_guid_is_derived_from_the_name() {
    // The EventSource name hash, checked independently of the crate once:
    // SHA-1(namespace 482C2DB2-C390-47C8-87F8-1A15BFC130FB + UTF-16BE("VMBALLOON.DRIVER")),
    // first 16 bytes, version nibble 5, the first three fields little-endian.
    assert_eq!(PROVIDER_NAME, "VmBalloon.Driver");
    assert_eq!(guid(), "e92fcb9e-d7af-5d24-0966-82f058c99cd3");
    assert_eq!(PROVIDER_GUID, guid());
    // The glue registers the provider under that name (a literal: a macro argument).
    let src = read("src/etw.rs");
    assert!(src.contains(&format!("define_provider!(VMBALLOON, \"{PROVIDER_NAME}\")")));
}

#[test]
fn wpr_profile_enables_the_kernel_mode_provider() {
    let wprp = read("vmballoon.wprp");
    let provider = wprp
        .lines()
        .find(|l| l.contains("<EventProvider "))
        .expect("an EventProvider");
    assert!(
        provider.contains(&format!("Name=\"{}\"", guid())),
        "{provider}"
    );
    // Required for providers that log from kernel mode (docs/windows-memory.md §6.4).
    assert!(provider.contains("NonPagedMemory=\"true\""), "{provider}");
    assert!(wprp.contains("<Level Value=\"5\" />"));
    assert!(wprp.contains("LoggingMode=\"File\""));
}
