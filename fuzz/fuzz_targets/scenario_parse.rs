//! (c) The scenario loader (`vmballoon_sim::Scenario::parse`) on arbitrary UTF-8: never a
//! panic; an error is one line naming a line of the file; an accepted scenario is
//! consistent and within the loader's limits: a run above 0 and at most one simulated day
//! (so no file can make the simulator run longer), events sorted and within the run, at
//! most `MAX_EXPANDED_EVENTS` of them once repeated events are expanded, a guest that can boot (RAM up to the model's limit,
//! OS + committed within RAM + page file), every size within `MAX_SIZE_MIB` (nothing
//! saturated), and every release after its request and only once. Small accepted
//! scenarios are also run (vmballoon policy): no protocol violation, no leak, and a
//! summary minimum that is the timeline's. The dictionary (`scenario_parse.dict`) carries
//! times and sizes at the numeric extremes and at the limits. The CLI path (`cli::run`)
//! adds only file I/O and argument parsing on top of this and is not fuzzed (each run
//! would simulate a whole scenario).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmballoon_sim::guest::{GuestModel, MAX_RAM};
use vmballoon_sim::scenario::{Action, MAX_DURATION_S, MAX_EXPANDED_EVENTS, MAX_SIZE_MIB};
use vmballoon_sim::{DriverKind, Scenario, runner};

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
                end > 0 && end <= (MAX_DURATION_S as u64) * 1_000_000_000,
                "duration {end} ns outside (0, one day]"
            );
            assert!(
                s.events.iter().all(|e| e.at.as_nanos() <= end),
                "event after the end"
            );
            assert!(
                s.events.len() <= MAX_EXPANDED_EVENTS,
                "{} events",
                s.events.len()
            );
            let g = &s.guest;
            assert!(g.ram <= MAX_RAM, "RAM over the model's limit");
            for size in [g.os_locked, g.pagefile, g.committed] {
                assert!(size.mib_floor() <= MAX_SIZE_MIB, "saturated guest size");
            }
            assert!(
                g.os_locked.get() + g.committed.get() <= g.ram.get() + g.pagefile.get(),
                "accepted a guest that cannot boot"
            );
            let mut requested: Vec<&str> = Vec::new();
            let mut released: Vec<&str> = Vec::new();
            for e in &s.events {
                match &e.action {
                    Action::Target(size)
                    | Action::Lock { size, .. }
                    | Action::Commit { size, .. }
                    | Action::HostTargetAfterLocks { target: size, .. } => {
                        assert!(size.mib_floor() <= MAX_SIZE_MIB, "saturated event size");
                        if let Action::Lock { id, .. } | Action::Commit { id, .. } = &e.action {
                            requested.push(id);
                        }
                    }
                    Action::Release(id) => {
                        assert!(
                            requested.contains(&id.as_str()),
                            "release before its request"
                        );
                        assert!(!released.contains(&id.as_str()), "released twice");
                        released.push(id);
                    }
                    _ => {}
                }
            }
            // Small scenarios also run: the engine must not break the protocol.
            if s.guest.ram.mib_floor() <= 64 && end <= 20_000_000_000 {
                let r = runner::run(&s, DriverKind::Vmballoon);
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
                let lowest = r
                    .timeline
                    .iter()
                    .map(|row| row.resident_available_low)
                    .min();
                assert_eq!(
                    lowest.map(|f| f.mib_floor()),
                    Some(r.summary.min_resident_available_mib),
                    "the summary's minimum is not the timeline's"
                );
            }
        }
    }
});
