//! Rows of `docs/hostile-inputs.md` that no other test showed one by one: every status on
//! every command, every per-entry status, absurd targets, targets too wide for a 32-bit
//! session, capability garbage, and every registry parameter missing, mistyped and out of
//! range. The random versions of the same inputs are in `tests/properties.rs`.

use vmballoon_core::channel::{Channel, Direction};
use vmballoon_core::config::{Config, Param, Problem, RawConfig, RawValue, validate};
use vmballoon_core::engine::SessionState;
use vmballoon_core::error::Error;
use vmballoon_core::protocol::{Backdoor, BatchPage, Capabilities, Command, RawReply, Status};
use vmballoon_core::units::{Frames, PageSize, Pfn};
use vmballoon_sim::HostSpec;
use vmballoon_testkit::guest::{GuestStep, guest_spec};
use vmballoon_testkit::harness::{Harness, Setup};
use vmballoon_testkit::host::{Reply, status};
use vmballoon_testkit::oracle::safe_ceiling;

/// Answers START with everything granted (or `start`), then `reply` to every call, ORing
/// `entry_status` into every batch entry.
struct Fixed {
    start: RawReply,
    reply: RawReply,
    entry_status: u64,
    page: Box<BatchPage>,
}

impl Fixed {
    fn new(status: u32, entry_status: u64) -> Self {
        Self {
            start: RawReply {
                status: 0x0300_0000,
                result: 0,
                capabilities: 0x2E,
            },
            reply: RawReply {
                status,
                result: 77,
                capabilities: 0,
            },
            entry_status,
            page: Box::new(BatchPage::zeroed()),
        }
    }
}

impl Backdoor for Fixed {
    fn call(&mut self, command: u32, _arg1: u64, arg2: u64) -> RawReply {
        if command == 0 {
            return self.start;
        }
        if (6..=9).contains(&command) {
            for e in self.page.entries.iter_mut().take(arg2 as usize) {
                *e = (u64::from_le(*e) | self.entry_status).to_le();
            }
        }
        self.reply
    }

    fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)> {
        Some((&mut self.page, Pfn::new(0xBA7)?))
    }
}

/// The statuses tried on every command.
const STATUSES: [u32; 15] = [
    0,
    0x0300_0000,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    31,
    0x1234,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
];

/// What a status means for a command other than START (`docs/protocol.md` §3).
fn class(command: Command, raw: u32) -> Option<Error> {
    match raw {
        0 => None,
        7 => Some(Error::Reset { command }),
        8 => Some(Error::Busy { command }),
        1..=6 | 0xFFFF_FFFF => Some(Error::Host {
            command,
            status: Status::from_raw(raw),
        }),
        raw => Some(Error::UnknownStatus { command, raw }),
    }
}

#[test]
fn every_status_on_every_command_is_classified() {
    for raw in STATUSES {
        // START answered with it.
        let mut ch = Channel::new(Fixed {
            start: RawReply {
                status: raw,
                result: 0,
                capabilities: 0x2E,
            },
            ..Fixed::new(0, 0)
        });
        let r = ch.start(Capabilities::REQUESTED);
        match raw {
            0 | 0x0300_0000 => assert!(r.is_ok(), "START {raw:#x}: {r:?}"),
            _ => {
                let want = class(Command::Start, raw).unwrap();
                assert_eq!(r, Err(want), "START {raw:#x}");
                assert!(ch.session().is_none() && ch.reset_pending());
            }
        }

        // TARGET and GUEST_ID answered with it (0x03000000 is undefined here).
        let mut ch = Channel::new(Fixed::new(raw, 0));
        ch.start(Capabilities::REQUESTED).unwrap();
        ch.finish_reset();
        let want = match raw {
            0x0300_0000 => Some(Error::UnknownStatus {
                command: Command::Target,
                raw,
            }),
            _ => class(Command::Target, raw),
        };
        assert_eq!(
            ch.get_target(Frames::new(1000)).err(),
            want,
            "TARGET {raw:#x}"
        );
        assert_eq!(ch.target().get(), if raw == 0 { 77 } else { 0 });
        assert_eq!(ch.reset_pending(), raw == 7, "TARGET {raw:#x}");
        let mut ch = Channel::new(Fixed::new(raw, 0));
        ch.start(Capabilities::REQUESTED).unwrap();
        ch.finish_reset();
        let want = match raw {
            0x0300_0000 => Some(Error::UnknownStatus {
                command: Command::GuestId,
                raw,
            }),
            _ => class(Command::GuestId, raw),
        };
        assert_eq!(ch.guest_id().err(), want, "GUEST_ID {raw:#x}");

        // Every page command answered with it: batched (4 KiB and 2 MiB, lock and unlock),
        // and single-page on a BASIC-only session.
        for (caps, size, direction) in [
            (0x2E, PageSize::Small, Direction::Lock),
            (0x2E, PageSize::Small, Direction::Unlock),
            (0x2E, PageSize::Large, Direction::Lock),
            (0x2E, PageSize::Large, Direction::Unlock),
            (0x02, PageSize::Small, Direction::Lock),
            (0x02, PageSize::Small, Direction::Unlock),
        ] {
            let mut host = Fixed::new(raw, 0);
            host.start.capabilities = caps;
            let mut ch = Channel::new(host);
            ch.start(Capabilities::REQUESTED).unwrap();
            ch.finish_reset();
            let s = ch.session().unwrap();
            let command = match direction {
                Direction::Lock => s.lock_command(size),
                Direction::Unlock => s.unlock_command(size),
            };
            let t = ch.transfer(direction, size, 3, |i| Pfn::new(0x400 + 512 * i as u64));
            let what = format!("{command:?} answered {raw:#x}");
            match class(command, raw) {
                None => assert_eq!(t.done.len(), 3, "{what}: {t:?}"),
                Some(e) => {
                    assert!(t.done.is_empty(), "{what}: nothing is done: {t:?}");
                    match e {
                        // Single-page PPN errors are per page: the chunk goes on (except
                        // NOTNEEDED, which stops inflating).
                        Error::Host { .. } if caps == 0x02 => {
                            assert_eq!(t.stop, None, "{what}");
                            let refusal = matches!(raw, 2 | 3 | 5) && direction == Direction::Lock;
                            // The first page not taken ends a single-page pass
                            // (`docs/protocol.md` §3).
                            assert_eq!(t.calls, 1, "{what}");
                            assert_eq!(t.refused.len(), usize::from(refusal), "{what}");
                            assert_eq!(
                                t.not_needed,
                                raw == 6 && direction == Direction::Lock,
                                "{what}"
                            );
                        }
                        e => {
                            assert_eq!(t.stop, Some(e), "{what}");
                            assert_eq!(t.calls, 1, "{what}: one call, then stop");
                            assert!(t.refused.is_empty(), "{what}");
                        }
                    }
                    assert_eq!(ch.reset_pending(), raw == 7, "{what}");
                }
            }
        }
    }
}

#[test]
fn every_entry_status_0_to_31_on_batched_lock_and_unlock() {
    for s in 0u64..32 {
        for direction in [Direction::Lock, Direction::Unlock] {
            let mut ch = Channel::new(Fixed::new(0, s));
            ch.start(Capabilities::REQUESTED).unwrap();
            ch.finish_reset();
            let t = ch.transfer(direction, PageSize::Small, 2, |i| {
                Pfn::new(0x100 + i as u64)
            });
            let what = format!("entry status {s} on {direction:?}");
            assert_eq!(t.stop, None, "{what}");
            let (done, refused, not_needed) = match (s, direction) {
                (0, _) => (2, 0, false),
                (_, Direction::Unlock) => (0, 0, false),
                // PPN_INVALID, PPN_LOCKED, PPN_PINNED: held until the end of the cycle.
                (2 | 3 | 5, Direction::Lock) => (0, 2, false),
                // PPN_NOTNEEDED: freed, and inflation stops.
                (6, Direction::Lock) => (0, 0, true),
                // CMD_INVALID, PPN_UNLOCKED, RESET, BUSY per entry and 9..=31 (undefined):
                // the host does not hold the page, which goes back to the OS.
                _ => (0, 0, false),
            };
            assert_eq!(t.done.len(), done, "{what}");
            assert_eq!(t.refused.len(), refused, "{what}");
            assert_eq!(t.not_needed, not_needed, "{what}");
            // Only RESET in EAX resets the session; a per-entry 7 does not.
            assert!(!ch.reset_pending(), "{what}");
        }
    }
}

fn setup(caps: u32) -> Setup {
    Setup {
        guest: guest_spec(256, 16, 256, 0, false),
        host: HostSpec {
            capabilities: Some(Capabilities::from_bits(caps)),
            max_balloon_percent: 0,
        },
        config: Config::default(),
    }
}

/// START, GUEST_ID honest; TARGET and every reply after it that carries the target
/// answered `t` (a pass is several batches, each reply updating the target).
fn with_target(t: u64) -> Vec<Reply> {
    let mut script = vec![Reply::Honest, Reply::Honest];
    script.extend(std::iter::repeat_n(Reply::Target(t), 64));
    script
}

#[test]
fn absurd_targets_are_bounded_by_the_ceiling_or_rejected() {
    let ram = Frames::from_mib(256).get();
    for wide in [false, true] {
        let caps = if wide { 0x2E } else { 0x0E };
        for t in [
            0,
            1,
            ram + 1,
            ram * 4,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            let s = setup(caps);
            let mut h = Harness::new(&s, with_target(t));
            let r = h.tick().unwrap();
            let what = format!("target {t:#x}, 64-bit session {wide}");
            assert_eq!(r.state, SessionState::Running, "{what}");
            if !wide && t > u64::from(u32::MAX) {
                assert!(
                    matches!(r.error, Some(Error::ReplyOutOfRange { value, .. }) if value == t),
                    "{what}: {r:?}"
                );
                assert!(r.balloon.is_zero() && r.target.is_zero(), "{what}");
            } else {
                // Inflated exactly to min(target, ceiling): never past RAM or the floor.
                let snap = h.world.borrow().guest.snapshot();
                let c = safe_ceiling(t, r.balloon.get(), &snap, &Config::default());
                assert_eq!(r.balloon.get(), c.min(t), "{what}: {r:?}");
                assert!(r.balloon.get() < ram, "{what}");
            }
            // The honest host's target is 0: the next tick empties the balloon, however
            // small it is (no 2 MiB slack at a zero target).
            h.engine.backdoor_mut().set_script([]);
            let r = h.tick().unwrap();
            assert_eq!((r.target.get(), r.balloon.get()), (0, 0), "{what} then 0");
            h.recover(100, 20).unwrap();
            h.shutdown().unwrap();
        }
    }
}

#[test]
fn lock_reply_target_too_wide_for_a_32_bit_session_keeps_the_pages() {
    // START, GUEST_ID, TARGET (1024 frames), then the first BATCHED_LOCK's RBX = 2^32.
    let script = vec![
        Reply::Honest,
        Reply::Honest,
        Reply::Target(1024),
        Reply::Target(1 << 32),
    ];
    let s = setup(0x06);
    let mut h = Harness::new(&s, script);
    let r = h.tick().unwrap();
    assert!(
        matches!(
            r.error,
            Some(Error::ReplyOutOfRange {
                command: Command::BatchedLock,
                ..
            })
        ),
        "{r:?}"
    );
    // The pages the host took are kept (it holds them); the target is not updated.
    assert_eq!(r.balloon.get(), 512);
    assert_eq!(r.target.get(), 1024);
    assert_eq!(h.world.borrow().host.held_frames().get(), 512);
    h.recover(1024, 20).unwrap();
    h.shutdown().unwrap();
}

#[test]
fn capability_garbage_is_ignored() {
    // Every bit set in RCX: only what the host model granted and vmballoon requested is
    // used (the host model would flag any command it did not grant).
    for caps in [0x02u32, 0x06, 0x0E, 0x2E] {
        let script = vec![Reply::Caps(u64::MAX)];
        let s = setup(caps);
        let mut h = Harness::new(&s, script);
        h.guest_step(&GuestStep::Target(4096));
        let r = h.tick().unwrap();
        let session = r.started.unwrap();
        assert_eq!(
            u64::from(session.capabilities.bits()),
            u64::from(caps),
            "{caps:#x}"
        );
        assert_eq!(r.balloon.get(), 4096, "{caps:#x}");
        h.shutdown().unwrap();
    }
    // A START reply of 0x03000000 whose RCX grants nothing usable: no session.
    let s = setup(0x20);
    let mut h = Harness::new(&s, vec![]);
    let r = h.tick().unwrap();
    assert_eq!(r.state, SessionState::NoHost);
    assert!(matches!(r.error, Some(Error::NotGranted { .. })), "{r:?}");
    h.shutdown().unwrap();
}

#[test]
fn reset_and_busy_from_every_command_recover() {
    // RESET then BUSY answered to the n-th call, for every call of two ticks (START,
    // GUEST_ID, TARGET, the batches...), on a batched and a single-page host.
    for caps in [0x0E, 0x02] {
        for eax in [status::RESET, status::BUSY] {
            for n in 0..12 {
                let mut script = vec![Reply::Honest; n];
                script.push(Reply::status(eax));
                let mut s = setup(caps);
                s.guest = guest_spec(64, 8, 64, 0, false);
                let mut h = Harness::new(&s, script);
                h.guest_step(&GuestStep::Target(600));
                h.tick().unwrap();
                h.guest_step(&GuestStep::Target(100));
                h.tick().unwrap();
                h.recover(700, 30).unwrap();
                h.shutdown().unwrap();
            }
        }
    }
}

#[test]
fn every_registry_parameter_missing_mistyped_and_out_of_range() {
    let ram = Frames::from_mib(4096);
    for p in Param::ALL {
        let (min, max) = p.range(4096);
        // Missing: the default, silently.
        let v = validate(&RawConfig::new(), ram);
        assert_eq!(v.issues().count(), 0);
        // Wrong type: the default, reported.
        let mut raw = RawConfig::new();
        raw.set(p, RawValue::WrongType);
        let v = validate(&raw, ram);
        let issue = v.issues().next().copied().unwrap();
        assert_eq!(
            (issue.param, issue.problem, issue.used),
            (p, Problem::WrongType, p.default_value()),
            "{p:?}"
        );
        // Out of range, above and (where there is room) below: clamped, reported.
        let mut bad = vec![max.saturating_add(1), u32::MAX];
        if min > 0 {
            bad.push(min - 1);
            bad.push(0);
        }
        for value in bad {
            let v = validate(&RawConfig::new().with(p, value), ram);
            let issue = v.issues().next().copied().unwrap();
            assert_eq!(issue.param, p);
            assert_eq!(
                issue.problem,
                Problem::OutOfRange { value, min, max },
                "{p:?}"
            );
            assert_eq!(issue.used, value.clamp(min, max), "{p:?} = {value}");
        }
        // In range at both ends: used as is.
        for value in [min, max] {
            assert_eq!(
                validate(&RawConfig::new().with(p, value), ram)
                    .issues()
                    .count(),
                0
            );
        }
    }
    // RAM unknown (0): the size parameters' range is 0..=0, so any size is clamped away.
    let v = validate(
        &RawConfig::new().with(Param::MaxBalloonMb, 100),
        Frames::ZERO,
    );
    assert_eq!(v.config.max_balloon, None);
}
