//! Property tests: the real engine against a hostile host and a hostile guest, and the
//! decoders against arbitrary input.
//!
//! The engine properties drive `vmballoon_core::engine::Balloon` against the simulator's
//! host and Windows guest models through the adversarial wrappers of `vmballoon-testkit`
//! (see its docs for what "hostile" covers and why the oracle stays sound). After every
//! tick they check: no page leaked, freed twice or freed while the host holds it; no LOCK
//! of a frame the host holds and no UNLOCK of one it does not; the engine's, the guest's
//! and the host's counts agree; no inflation under `LowMemoryCondition`; a tick that
//! inflated leaves resident available and commit headroom at or above the floor; and the
//! inflation bound. Then the host turns honest and the guest quiet: the session must be
//! running again within the START back-off (8 s) plus two polls, and after 30 simulated
//! seconds the balloon must be within one 2 MiB page of min(target, ceiling) (or below it
//! only where the guest holds it back); then unload must return every page. The regression tests at the end keep the engine
//! bugs the properties found (F1, F2 in `docs/hostile-inputs.md`, fixed in the engine).
//!
//! **The inflation bound, precisely.** At every LOCK / BATCHED_LOCK / BATCHED_2M_LOCK (and
//! at every allocation before it), the frames the host holds plus the frames of that call
//! must not exceed min(T, C), where T is the target the engine had heard when it allocated
//! the chunk and C the safe ceiling recomputed by the test from the guest model (the chunk
//! in flight counted as balloon). That is "balloon ≤ min(target, ceiling) + one batch" with
//! the batch counted *before* it is sent: one batch is at most 512 pages, 512 frames of
//! 4 KiB or 512 × 512 frames of 2 MiB, and no part of it may overshoot. Measured against
//! the *newest* target at the end of a tick the bound cannot be "+ one batch": a host that
//! lowers its target in the reply to the k-th lock of a pass leaves k batches above it
//! until the next tick deflates (Linux and OVT behave the same), so the end-of-tick form is
//! checked only for ticks in which the host did not lower its target.
//!
//! Case counts: see [`cases`]. Failure persistence: proptest writes the seed of any failing
//! case to `tests/properties.proptest-regressions` (next to this file) and replays it first
//! on every later run; that file is meant to be committed, and a failure found this way is
//! also turned into a named regression test below.

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngAlgorithm};

use vmballoon_core::config::{Config, Param, RawConfig, RawValue, validate};
use vmballoon_core::protocol::Capabilities;
use vmballoon_core::units::Frames;
use vmballoon_sim::HostSpec;
use vmballoon_sim::guest::PinKind;

use vmballoon_testkit::channel::{self, EntryOp, TransferCase};
use vmballoon_testkit::guest::{Faults, GuestStep, guest_spec};
use vmballoon_testkit::harness::{self, Harness, Setup};
use vmballoon_testkit::host::{EntryReply, Reply, status};
use vmballoon_testkit::memory;

/// Cases per property: `VMBALLOON_PROPTEST_CASES=N` runs N cases of each engine property
/// and 10·N of each decoder property; without it, the defaults below: 1500 / 2000 / 1500
/// engine cases and 6000 of each decoder (the whole file: about 37 s wall, 66 s CPU in a
/// debug build on two cores). The long mode, `VMBALLOON_PROPTEST_CASES=10000 cargo test
/// --release --test properties`, runs 10,000 cases of each engine property (README,
/// "Reliability").
///
/// # Panics
/// When the variable is set to anything but a positive whole number.
fn cases(default: u32, scale: u32) -> u32 {
    match std::env::var("VMBALLOON_PROPTEST_CASES") {
        Err(std::env::VarError::NotPresent) => default,
        Ok(v) => match v.parse::<u32>() {
            Ok(n) if n > 0 => n.saturating_mul(scale),
            _ => panic!("VMBALLOON_PROPTEST_CASES must be a positive whole number, not {v:?}"),
        },
        Err(e) => panic!("VMBALLOON_PROPTEST_CASES: {e}"),
    }
}

fn config(default: u32, scale: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default, scale),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        max_shrink_iters: 4096,
        // ChaCha, the default, costs a quarter of the run time in a debug build.
        rng_algorithm: RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

// ---- strategies ----------------------------------------------------------------------

/// EAX values: every status class, 0x03000000 where it is not valid, undefined values.
fn eax() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(status::FAILURE),
        3 => Just(status::RESET),
        3 => Just(status::BUSY),
        3 => 1u32..=6,
        2 => Just(status::SUCCESS_WITH_CAPS),
        1 => Just(status::SUCCESS),
        1 => 9u32..=0xFFFF,
        1 => any::<u32>(),
    ]
}

/// Targets in frames, absurd ones included: 0, beyond RAM, u32::MAX, just past it,
/// u64::MAX, anything.
fn target(ram_mib: u64) -> impl Strategy<Value = u64> {
    let ram = Frames::from_mib(ram_mib).get();
    prop_oneof![
        4 => 0..=ram,
        1 => Just(0u64),
        1 => ram..=ram.saturating_mul(4),
        1 => Just(u64::from(u32::MAX)),
        1 => Just(u64::from(u32::MAX) + 1),
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

fn entry_reply() -> impl Strategy<Value = EntryReply> {
    prop_oneof![
        4 => Just(EntryReply::Honest),
        3 => any::<u8>().prop_map(EntryReply::Refuse),
        1 => (any::<u64>(), any::<u8>()).prop_map(|(xor, status)| EntryReply::Rewrite { xor, status }),
        1 => any::<u8>().prop_map(EntryReply::Reserved),
    ]
}

fn reply(ram_mib: u64) -> impl Strategy<Value = Reply> {
    prop_oneof![
        8 => Just(Reply::Honest),
        4 => (eax(), target(ram_mib), any::<u64>())
            .prop_map(|(status, rbx, rcx)| Reply::answer(status, rbx, rcx)),
        2 => target(ram_mib).prop_map(Reply::Target),
        1 => any::<u64>().prop_map(Reply::Caps),
        3 => (
            proptest::collection::vec(entry_reply(), 1..6),
            prop_oneof![3 => Just(0u64), 1 => any::<u64>()],
        )
            .prop_map(|(entries, tail)| Reply::entries(entries, tail)),
    ]
}

/// Host capability sets: legacy, BASIC only, no 2 MiB, batched only, everything, and any
/// subset of the four named bits (some with no lock command at all).
fn host_caps() -> impl Strategy<Value = Option<Capabilities>> {
    let c = Capabilities::from_bits;
    prop_oneof![
        2 => Just(None),
        2 => Just(Some(c(0x02))),
        2 => Just(Some(c(0x06))),
        1 => Just(Some(c(0x04))),
        3 => Just(Some(c(0x0E))),
        3 => Just(Some(c(0x2E))),
        2 => (0u32..16).prop_map(move |b| Some(c((b & 7) << 1 | (b & 8) << 2))),
    ]
}

fn raw_value(max: u32) -> impl Strategy<Value = RawValue> {
    prop_oneof![
        3 => Just(RawValue::Missing),
        1 => Just(RawValue::WrongType),
        4 => (0..=max).prop_map(RawValue::Dword),
        1 => any::<u32>().prop_map(RawValue::Dword),
    ]
}

/// Registry values as read (missing, wrong type, in or out of range), validated for `ram`.
fn registry(ram_mib: u64) -> impl Strategy<Value = Config> {
    let ram = u32::try_from(ram_mib).unwrap_or(u32::MAX);
    (
        raw_value(ram),
        raw_value(100),
        raw_value(ram / 2),
        prop_oneof![
            3 => Just(RawValue::Missing),
            2 => prop::sample::select(vec![250u32, 500, 1000, 2000, 5000, 10_000])
                .prop_map(RawValue::Dword),
            1 => any::<u32>().prop_map(RawValue::Dword),
            1 => Just(RawValue::WrongType),
        ],
        raw_value(1),
        raw_value(1),
    )
        .prop_map(move |(a, b, c, d, e, f)| {
            let mut raw = RawConfig::new();
            for (p, v) in Param::ALL.into_iter().zip([a, b, c, d, e, f]) {
                raw.set(p, v);
            }
            validate(&raw, Frames::from_mib(ram_mib)).config
        })
}

fn setup() -> impl Strategy<Value = Setup> {
    prop_oneof![2 => 16u64..=128, 2 => 128u64..=256, 1 => 256u64..=512]
        .prop_flat_map(|ram| {
            (
                Just(ram),
                0..=ram / 2,
                prop_oneof![Just(0u64), 0..=ram * 2],
                prop_oneof![Just(0u64), 0..=ram],
                any::<bool>(),
                host_caps(),
                prop_oneof![Just(65u8), Just(0u8), 0u8..=100],
                registry(ram),
            )
        })
        .prop_map(
            |(ram, os, pagefile, committed, scattered, caps, pct, config)| Setup {
                guest: guest_spec(ram, os, pagefile, committed, scattered),
                host: HostSpec {
                    capabilities: caps,
                    max_balloon_percent: pct,
                },
                config,
            },
        )
}

fn faults() -> impl Strategy<Value = Faults> {
    (0u32..3, 0u32..4, [0u32..3, 0u32..3], [0u32..4, 0u32..4]).prop_map(|(s, l, f, h)| Faults {
        fail_snapshots: s,
        force_low_memory: l,
        fail_alloc: f,
        short_alloc: h,
    })
}

fn pin_kind() -> impl Strategy<Value = PinKind> {
    prop::sample::select(PinKind::ALL.to_vec())
}

fn guest_step(ram_mib: u64) -> impl Strategy<Value = GuestStep> {
    prop_oneof![
        3 => Just(GuestStep::Idle),
        3 => (pin_kind(), 0..=ram_mib / 2).prop_map(|(kind, mib)| GuestStep::Lock { kind, mib }),
        1 => (pin_kind(), ram_mib / 2..=ram_mib * 2)
            .prop_map(|(kind, mib)| GuestStep::Lock { kind, mib }),
        2 => (0..=ram_mib).prop_map(|mib| GuestStep::Commit { mib }),
        3 => any::<usize>().prop_map(GuestStep::Release),
        2 => faults().prop_map(GuestStep::Faults),
        1 => registry(ram_mib).prop_map(GuestStep::Config),
        3 => target(ram_mib).prop_map(GuestStep::Target),
    ]
}

fn ram_of(s: &Setup) -> u64 {
    s.guest.ram.mib_floor()
}

/// A whole hostile run: setup, host script, guest steps, recovery target.
fn hostile_run() -> impl Strategy<Value = (Setup, Vec<Reply>, Vec<GuestStep>, u64)> {
    setup().prop_flat_map(|s| {
        let ram = ram_of(&s);
        (
            Just(s),
            proptest::collection::vec(reply(ram), 0..160),
            proptest::collection::vec(guest_step(ram), 1..24),
            target(ram),
        )
    })
}

/// RESET and BUSY storms: mostly RESET / BUSY at random points, the rest honest.
fn storm_run() -> impl Strategy<Value = (Setup, Vec<Reply>, Vec<GuestStep>, u64)> {
    setup().prop_flat_map(|s| {
        let ram = ram_of(&s);
        let storm = prop_oneof![
            3 => Just(Reply::Honest),
            3 => Just(Reply::status(status::RESET)),
            3 => Just(Reply::status(status::BUSY)),
            1 => eax().prop_map(Reply::status),
        ];
        (
            Just(s),
            proptest::collection::vec(storm, 1..200),
            proptest::collection::vec(
                prop_oneof![3 => target(ram).prop_map(GuestStep::Target), 1 => Just(GuestStep::Idle)],
                1..16,
            ),
            target(ram),
        )
    })
}

/// An honest host and a busy guest: pinning and releasing of every kind, pageable commit,
/// short and failed allocations, failing snapshots, `LowMemoryCondition`.
fn pressure_run() -> impl Strategy<Value = (Setup, Vec<GuestStep>, u64)> {
    setup().prop_flat_map(|s| {
        let ram = ram_of(&s);
        (
            Just(s),
            proptest::collection::vec(guest_step(ram), 1..30),
            target(ram),
        )
    })
}

/// Seconds of honest host and quiet guest at the end of each run.
const RECOVER_S: u64 = 30;

fn check_run(
    setup: &Setup,
    script: Vec<Reply>,
    steps: &[GuestStep],
    recover_target: u64,
) -> Result<(), TestCaseError> {
    harness::run(setup, script, steps, recover_target, RECOVER_S).map_err(TestCaseError::fail)
}

// ---- the engine ----------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1500, 1))]

    /// Random host replies (every status class on every command, per-entry statuses 0..31,
    /// rewritten addresses, reserved bits, garbage past the batch, absurd targets, garbage
    /// capability bits, RESET and BUSY anywhere) and random guest behaviour: no invariant
    /// breaks after any tick, the session recovers, unload returns every page.
    #[test]
    fn hostile_host_and_guest_never_break_page_safety(
        (setup, script, steps, recover) in hostile_run()
    ) {
        check_run(&setup, script, &steps, recover)?;
    }

    /// An honest host and a guest under pressure: pinning (every kind, large pages
    /// included), releasing, pageable commit, failed and short allocations, failing
    /// snapshots, LowMemoryCondition, registry changes. The balloon never takes resident
    /// available or commit below the floor and never inflates under LowMemoryCondition.
    #[test]
    fn guest_pressure_never_pushed_below_the_floor_by_the_balloon(
        (setup, steps, recover) in pressure_run()
    ) {
        check_run(&setup, Vec::new(), &steps, recover)?;
    }
}

proptest! {
    #![proptest_config(config(2000, 1))]

    /// RESET and BUSY storms at random points, from any command: the session is running
    /// again within the START back-off plus two polls of the storm ending, and the balloon
    /// reaches min(target, ceiling).
    #[test]
    fn reset_and_busy_storms_end_in_a_running_session_at_the_target(
        (setup, script, steps, recover) in storm_run()
    ) {
        check_run(&setup, script, &steps, recover)?;
    }
}

// ---- the decoders --------------------------------------------------------------------

fn entry_op() -> impl Strategy<Value = EntryOp> {
    prop_oneof![
        4 => Just(EntryOp::Keep),
        3 => (0u64..32).prop_map(EntryOp::Or),
        1 => (0u64..0x1000).prop_map(EntryOp::Or),
        1 => any::<u64>().prop_map(EntryOp::Or),
        1 => any::<u64>().prop_map(EntryOp::Raw),
    ]
}

fn pfn_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..0x10_0000,
        2 => (0u64..0x800).prop_map(|b| b * 512),
        1 => Just(u64::from(u32::MAX)),
        1 => Just(u64::from(u32::MAX) + 1),
        1 => Just(u64::MAX >> 12),
        1 => Just((u64::MAX >> 12) + 1),
        1 => any::<u64>(),
    ]
}

fn transfer_case() -> impl Strategy<Value = TransferCase> {
    (
        (
            prop_oneof![3 => Just(status::SUCCESS_WITH_CAPS), 1 => Just(0u32), 1 => eax()],
            prop_oneof![3 => any::<u8>().prop_map(u64::from), 1 => any::<u64>()],
        ),
        proptest::option::of((prop_oneof![3 => Just(0u32), 1 => eax()], target(4096))),
        prop_oneof![3 => 0u64..0x10_0000, 1 => any::<u64>()],
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(pfn_value(), 0..40),
        prop_oneof![4 => 0usize..40, 1 => 0usize..600],
        proptest::collection::vec(
            (
                prop_oneof![4 => Just(0u32), 2 => eax()],
                target(4096),
                any::<u64>(),
            ),
            1..6,
        ),
        proptest::collection::vec(entry_op(), 1..6),
        prop_oneof![3 => Just(0u64), 1 => any::<u64>()],
    )
        .prop_map(
            |(start, target, limit, lock, large, pfns, count, replies, ops, tail)| TransferCase {
                start,
                target,
                limit,
                lock,
                large,
                pfns,
                count,
                replies,
                ops,
                tail,
            },
        )
}

proptest! {
    #![proptest_config(config(6000, 10))]

    /// START's negotiation, TARGET's width rule and one transfer against any reply: the
    /// core's channel decodes exactly what the independent specification in
    /// `vmballoon_testkit::channel` says, and puts on the wire exactly the pages it should.
    #[test]
    fn channel_decodes_any_reply_as_specified(case in transfer_case()) {
        channel::check(&case).map_err(TestCaseError::fail)?;
    }

    /// The driver's memory-information parsers (`vmballoon_nt::memory`) on arbitrary buffers and return
    /// lengths: nothing is trusted beyond a documented size within the buffer, every field
    /// is read at its offset, negative resident available reads as zero.
    #[test]
    fn memsnap_trusts_nothing_it_cannot_vouch_for(
        buf in proptest::collection::vec(any::<u8>(), 0..0x200),
        rl in prop_oneof![
            4 => prop::sample::select(vec![0x38u32, 0x40, 0x138, 0x148, 0x158, 0x178]),
            1 => 0u32..0x200,
            1 => any::<u32>(),
        ],
        low in any::<bool>(),
    ) {
        memory::check(&buf, rl, low).map_err(TestCaseError::fail)?;
    }

    /// Registry values of any type and value, for any RAM size: validation never fails,
    /// every value used is in its range, and every value not used as read is reported.
    #[test]
    fn registry_values_always_validate_into_range(
        values in proptest::collection::vec(
            prop_oneof![
                Just(RawValue::Missing),
                Just(RawValue::WrongType),
                any::<u32>().prop_map(RawValue::Dword),
                (0u32..=2).prop_map(RawValue::Dword),
            ],
            6,
        ),
        ram in prop_oneof![Just(0u64), any::<u64>(), 0u64..=(1 << 26)],
    ) {
        let mut raw = RawConfig::new();
        for (p, v) in Param::ALL.into_iter().zip(values.iter().copied()) {
            raw.set(p, v);
        }
        let ram = Frames::new(ram);
        let v = validate(&raw, ram);
        let ram_mib = u32::try_from(ram.mib_floor()).unwrap_or(u32::MAX);
        for p in Param::ALL {
            let (min, max) = p.range(ram_mib);
            let issue = v.issues().find(|i| i.param == p);
            match raw.get(p) {
                RawValue::Missing => prop_assert!(issue.is_none()),
                RawValue::WrongType => {
                    prop_assert_eq!(issue.map(|i| i.used), Some(p.default_value()));
                }
                RawValue::Dword(x) if x < min || x > max => {
                    prop_assert_eq!(issue.map(|i| i.used), Some(x.clamp(min, max)));
                }
                RawValue::Dword(_) => prop_assert!(issue.is_none()),
            }
        }
        let c = v.config;
        prop_assert!(c.max_balloon.is_none_or(|m| m.mib_floor() <= u64::from(ram_mib)));
        prop_assert!(c.max_balloon_percent.is_none_or(|p| (1..=100).contains(&p)));
        prop_assert!(c.reserve.is_none_or(|r| r.mib_floor() <= u64::from(ram_mib)));
        let ms = c.poll_interval.as_millis();
        prop_assert!((100..=10_000).contains(&ms));
    }

    /// The scenario loader on TOML-shaped garbage: never a panic, and every error is one
    /// line that names a line of the file.
    #[test]
    fn scenario_loader_answers_garbage_with_one_line(text in scenario_text()) {
        match vmballoon_sim::Scenario::parse(&text, "f.toml") {
            Ok(_) => {}
            Err(e) => {
                let lines = text.split('\n').count().max(1);
                prop_assert!(e.line >= 1 && e.line <= lines, "line {} of {}: {}", e.line, lines, e);
                prop_assert!(!e.to_string().contains('\n'), "multi-line error: {:?}", e.to_string());
            }
        }
    }
}

/// Text made of scenario-format fragments, valid and not, in random order.
fn scenario_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("name = \"x\"\n".to_owned()),
        Just("duration_s = 10\n".to_owned()),
        Just("[guest]\n".to_owned()),
        Just("ram_mib = 64\n".to_owned()),
        Just("[host]\n".to_owned()),
        Just("capabilities = [\"basic\", \"batched-2m\"]\n".to_owned()),
        Just("[config]\n".to_owned()),
        Just("ReserveMB = 9999999\n".to_owned()),
        Just("[[events]]\n".to_owned()),
        Just("at_s = 1\n".to_owned()),
        Just("lock_mib = -5\n".to_owned()),
        Just("kind = \"hugepages\"\n".to_owned()),
        Just("release = \"nope\"\n".to_owned()),
        Just("target_mib = 18446744073709551615\n".to_owned()),
        Just("at_s = nan\n".to_owned()),
        Just("\u{0}\u{feff}é\r\n".to_owned()),
        "[a-z_]{1,12} = [0-9.e+-]{1,8}\n",
        "[\\[\\]{}=\"'#,.a-z0-9 \\n-]{0,40}",
    ];
    proptest::collection::vec(fragment, 0..20).prop_map(|v| v.concat())
}

// ---- regression tests ----------------------------------------------------------------
//
// Inputs found by the properties or the fuzzers, minimized, kept as plain tests.

/// A hand-made run: `steps` (one guest step, then one tick, each), then unload.
fn run_steps(setup: &Setup, script: Vec<Reply>, steps: &[GuestStep]) -> Result<(), String> {
    let mut h = Harness::new(setup, script);
    for step in steps {
        h.guest_step(step);
        h.tick()?;
    }
    h.shutdown()
}

fn small_setup(caps: Option<u32>) -> Setup {
    Setup {
        guest: guest_spec(64, 8, 64, 0, false),
        host: HostSpec {
            capabilities: caps.map(Capabilities::from_bits),
            max_balloon_percent: 0,
        },
        config: Config::default(),
    }
}

/// F1 (found by `hostile_host_and_guest_never_break_page_safety`, fixed in the engine):
/// the legacy host takes two pages of a chunk, then answers RESET to the third LOCK. RESET
/// means it forgot every page; the engine used to store the two (the platform contract: a
/// stored page is held by the host) and free them only at the next tick.
#[test]
fn f1_reset_mid_single_page_chunk_stores_no_forgotten_page() {
    let script = vec![
        Reply::Honest,                // START (legacy: SUCCESS)
        Reply::Honest,                // GUEST_ID
        Reply::Honest,                // TARGET: 8 frames
        Reply::Honest,                // LOCK page 0
        Reply::Honest,                // LOCK page 1
        Reply::status(status::RESET), // LOCK page 2
    ];
    run_steps(&small_setup(None), script, &[GuestStep::Target(8)]).unwrap();
}

/// F1, batched deflate: RESET answered to a BATCHED_UNLOCK made the engine store the whole
/// chunk again (set aside at the end), though the host had forgotten it.
#[test]
fn f1_reset_on_batched_unlock_stores_no_forgotten_page() {
    let mut script = vec![Reply::Honest; 5]; // START, GUEST_ID, TARGET, 2 x BATCHED_LOCK
    script.push(Reply::Honest); // TARGET: 0
    script.push(Reply::status(status::RESET)); // BATCHED_UNLOCK
    let steps = [GuestStep::Target(600), GuestStep::Target(0)];
    run_steps(&small_setup(Some(0x06)), script, &steps).unwrap();
}

/// F2 (found by `reset_and_busy_storms_end_in_a_running_session_at_the_target`, fixed in
/// the engine): START fails once while `PollIntervalMs` is 10000, then the registry lowers
/// it to 250 ms. The first back-off step used to be the poll interval at the failure
/// (10 s), not capped at `MAX_BACKOFF` (8 s), so the session restarted 10 s later instead
/// of within 8 s + two polls.
#[test]
fn f2_start_backoff_first_step_is_capped_at_8_s() {
    let slow = validate(
        &RawConfig::new().with(Param::PollIntervalMs, 10_000),
        Frames::from_mib(64),
    )
    .config;
    let fast = validate(
        &RawConfig::new().with(Param::PollIntervalMs, 250),
        Frames::from_mib(64),
    )
    .config;
    let setup = Setup {
        config: slow,
        ..small_setup(Some(0x0E))
    };
    let mut h = Harness::new(&setup, vec![Reply::status(status::FAILURE)]);
    h.tick().unwrap();
    h.guest_step(&GuestStep::Config(fast));
    h.recover(0, 30).unwrap();
    h.shutdown().unwrap();
}
