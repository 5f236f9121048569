//! (c) The scenario loader (`vmballoon_sim::Scenario::parse`) on arbitrary UTF-8: never a
//! panic; an error is one line naming a line of the file; an accepted scenario is
//! consistent (events sorted and within the run, a valid guest). Small accepted scenarios
//! are also run (vmballoon policy): no protocol violation, no leak. The CLI path
//! (`cli::run`) adds only file I/O and argument parsing on top of this and is not fuzzed
//! (each run would simulate a whole scenario).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmballoon_sim::guest::GuestModel;
use vmballoon_sim::{PolicyKind, Scenario, runner};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Scenario::parse(text, "fuzz.toml") {
        Err(e) => {
            let lines = text.split('\n').count().max(1);
            assert!(
                e.line >= 1 && e.line <= lines,
                "line {} of {lines}: {e}",
                e.line
            );
            let shown = e.to_string();
            assert!(!shown.contains('\n'), "multi-line error: {shown:?}");
            assert!(
                shown.starts_with("fuzz.toml:"),
                "error without the file: {shown:?}"
            );
        }
        Ok(s) => {
            assert!(
                GuestModel::validate(&s.guest).is_ok(),
                "accepted an invalid guest"
            );
            assert!(
                s.events.windows(2).all(|w| w[0].at <= w[1].at),
                "events not sorted"
            );
            let end = s.duration.as_nanos();
            assert!(
                s.events.iter().all(|e| e.at.as_nanos() <= end),
                "event after the end"
            );
            // Small scenarios also run: the engine must not break the protocol.
            if s.guest.ram.mib_floor() <= 64 && end <= 20_000_000_000 {
                let r = runner::run(&s, PolicyKind::Vmballoon);
                assert_eq!(
                    r.summary.protocol_violations, 0,
                    "violations: {:?}",
                    r.summary.violations
                );
                assert_eq!(r.summary.leaked_frames, 0, "leak");
                assert!(
                    r.summary.model_errors.is_empty(),
                    "{:?}",
                    r.summary.model_errors
                );
            }
        }
    }
});
