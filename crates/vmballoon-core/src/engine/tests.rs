//! Engine tests: the scripted backdoor pins the protocol sequence; the fake world checks
//! that no page leaks (on drop, and explicitly with `assert_no_leaks`).

use super::*;
use crate::config::{Param, RawConfig, validate};
use crate::fake::{Expect, FakeMemory, FakePages, FakeWorld, ManualClock, ScriptedBackdoor};
use crate::protocol::{Command, Status};

/// Granted in START: everything vmballoon asks for (BASIC, BATCHED, BATCHED_2M, 64-bit).
const FULL: u64 = 0x2E;
/// Granted in START: BASIC and BATCHED, no 2 MiB pages.
const BATCHED_4K: u64 = 0x06;
/// A batch entry's status: the host cannot balloon this page.
const PINNED: u32 = Status::PpnPinned.raw();

/// 24 entries: the first 8 taken, the other 16 refused as pinned.
const REFUSE_AFTER_8: [u32; 24] = {
    let mut s = [PINNED; 24];
    let mut i = 0;
    while i < 8 {
        s[i] = Status::Success.raw();
        i += 1;
    }
    s
};

type Engine = Balloon<ScriptedBackdoor, FakePages, FakeMemory, ManualClock>;

struct Rig {
    host: ScriptedBackdoor,
    world: FakeWorld,
    clock: ManualClock,
    balloon: Engine,
}

impl Rig {
    fn new(ram_mib: u64, os_mib: u64, pagefile_mib: u64, config: Config) -> Self {
        let host = ScriptedBackdoor::new([]);
        let world = FakeWorld::new(ram_mib, os_mib, pagefile_mib);
        let clock = ManualClock::new();
        let balloon = Balloon::new(
            host.clone(),
            world.pages(),
            world.memory(),
            clock.clone(),
            config,
        );
        Self {
            host,
            world,
            clock,
            balloon,
        }
    }

    fn kb() -> Self {
        Self::new(4096, 300, 4096, Config::default())
    }

    fn expect(&self, script: impl IntoIterator<Item = Expect>) -> &Self {
        self.host.expect(script);
        self
    }

    /// Runs one tick (advancing the clock by one poll interval first) and checks that
    /// every expected call was made.
    fn tick(&mut self) -> TickReport {
        self.clock.advance(Duration::from_secs(1));
        let r = self.balloon.tick();
        assert_eq!(
            self.host_pending(),
            0,
            "expected calls not made; report: {r:?}"
        );
        self.world.assert_no_leaks();
        assert_eq!(
            self.world.balloon_frames(),
            self.balloon
                .size()
                .saturating_add(Frames::new(self.world.held_back_frames() as u64)),
            "accounting drift"
        );
        r
    }

    fn host_pending(&self) -> usize {
        self.host.pending()
    }

    fn finish(self) {
        self.host.done();
        self.world.assert_no_leaks();
    }
}

fn mib(n: u64) -> Frames {
    Frames::from_mib(n)
}

const KB_TARGET: u64 = 681_574; // 65 % of 4 GiB in frames

#[test]
fn kb_340369_balloon_stops_at_the_ceiling_and_follows_pinned_memory() {
    let mut rig = Rig::kb();
    let sql = rig.world.pin(2048).unwrap();
    // Resident available 1748 MiB, floor 488 MiB: ceiling 1260 MiB = 630 large pages.
    rig.expect(Expect::handshake(FULL)).expect([
        Expect::target(mib(4096), KB_TARGET),
        // The first 8 MiB allocated are the accounting calibration samples (measured on
        // the allocation, before the LOCK: no call of their own).
        Expect::batch(Command::Batched2mLock, 512, KB_TARGET),
        Expect::batch(Command::Batched2mLock, 118, KB_TARGET),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, mib(1260));
    assert!(
        r.balloon.mib_floor().abs_diff(1330) * 100 / 1330 < 6,
        "near the KB's 1330 MB"
    );
    assert_eq!(r.ceiling.unwrap().reason, ClampReason::ResidentAvailable);
    assert_eq!(r.reason, Some(ClampReason::ResidentAvailable));
    assert_eq!(r.target, Frames::new(KB_TARGET));
    assert!(r.started.is_some());

    // Steady state: nothing to do.
    rig.expect([Expect::target(mib(4096), KB_TARGET)]);
    let r = rig.tick();
    assert_eq!((r.inflated, r.deflated), (Frames::ZERO, Frames::ZERO));

    // SQL pins 256 MiB more: the floor is restored without waiting for the host.
    let more = rig.world.pin(256).unwrap();
    // 128 whole blocks, the most recent first, in one batch.
    rig.expect([
        Expect::target(mib(4096), KB_TARGET),
        Expect::batch(Command::Batched2mUnlock, 128, KB_TARGET),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, mib(1004));
    assert_eq!(r.deflated, mib(256));
    assert_eq!(r.reason, Some(ClampReason::ResidentAvailable));
    assert_eq!(rig.balloon.stats().get(Counter::GuardDeflates), 1);

    // Released again: the room must stay open for the hold-off before the balloon grows
    // back (pinned memory that comes and goes is not handed to the host every time).
    rig.world.unpin(more);
    rig.expect([Expect::target(mib(4096), KB_TARGET)]);
    let r = rig.tick();
    assert_eq!(r.inflated, Frames::ZERO);
    assert_eq!(r.reason, Some(ClampReason::PressureHold));
    rig.clock.advance(policy::HOLD_BASE);
    rig.expect([
        Expect::target(mib(4096), KB_TARGET),
        Expect::batch(Command::Batched2mLock, 128, KB_TARGET),
    ]);
    assert_eq!(rig.tick().balloon, mib(1260));

    // SQL Server stops: now the host target binds (65 %, rounded down to whole 2 MiB
    // pages then 4 KiB pages for the remainder).
    rig.world.unpin(sql);
    let rest = KB_TARGET - mib(1260).get();
    rig.expect([
        Expect::target(mib(4096), KB_TARGET),
        Expect::batch(Command::Batched2mLock, 512, KB_TARGET),
        Expect::batch(Command::Batched2mLock, rest / 512 - 512, KB_TARGET),
        Expect::batch(Command::BatchedLock, rest % 512, KB_TARGET),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::new(KB_TARGET));
    assert_eq!(r.reason, None);
    assert_eq!(r.ceiling.unwrap().reason, ClampReason::HostTarget);
    rig.finish();
}

#[test]
fn registry_cap_binds_and_a_lowered_cap_deflates() {
    let cfg = validate(&RawConfig::new().with(Param::MaxBalloonMb, 1000), mib(4096)).config;
    let mut rig = Rig::new(4096, 300, 4096, cfg);
    rig.expect(Expect::handshake(FULL)).expect([
        Expect::target(mib(4096), KB_TARGET),
        Expect::batch(Command::Batched2mLock, 500, KB_TARGET),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, mib(1000));
    assert_eq!(r.reason, Some(ClampReason::RegistryMax));
    // The administrator lowers the cap to 10 % (409 MiB): deflate at the next tick.
    let lower = validate(
        &RawConfig::new().with(Param::MaxBalloonPercent, 10),
        mib(4096),
    )
    .config;
    rig.balloon.set_config(lower);
    let over = mib(1000).get() - mib(4096).percent(10).get();
    rig.expect([
        Expect::target(mib(4096), KB_TARGET),
        Expect::batch(Command::Batched2mUnlock, over.div_ceil(512), KB_TARGET),
    ]);
    let r = rig.tick();
    assert!(r.balloon <= mib(4096).percent(10));
    assert_eq!(r.reason, Some(ClampReason::RegistryMax));
    rig.finish();
}

#[test]
fn commit_headroom_binds_on_a_small_page_file() {
    // No page file: commit limit = RAM. 2000 MiB of pageable commit in use.
    let mut rig = Rig::new(4096, 300, 0, Config::default());
    rig.world.commit(2000);
    // commit free = 4096 - 300 - 2000 = 1796 MiB; minus the 488 MiB floor = 1308 MiB.
    rig.expect(Expect::handshake(FULL)).expect([
        Expect::target(mib(4096), KB_TARGET),
        Expect::batch(Command::Batched2mLock, 512, KB_TARGET),
        Expect::batch(Command::Batched2mLock, 142, KB_TARGET),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, mib(1308));
    assert_eq!(r.reason, Some(ClampReason::Commit));
    rig.finish();
}

#[test]
fn low_memory_condition_deflates_a_step_and_pauses_inflation() {
    let mut rig = Rig::kb();
    rig.expect(Expect::handshake(FULL)).expect([
        Expect::target(mib(4096), 1024 * 256),
        Expect::batch(Command::Batched2mLock, 512, 1024 * 256),
    ]);
    assert_eq!(rig.tick().balloon, mib(1024));
    // A quiet tick: the balloon last grew 2 s ago, so a signal now is guest pressure.
    rig.expect([Expect::target(mib(4096), 1024 * 256)]);
    rig.tick();
    rig.world.set_low_memory(true);
    // 1/64 of 4 GiB = 64 MiB = 32 large pages, without waiting for the host target.
    rig.expect([
        Expect::target(mib(4096), 1024 * 256),
        Expect::batch(Command::Batched2mUnlock, 32, 1024 * 256),
    ]);
    let r = rig.tick();
    assert!(r.low_memory_deflate);
    assert_eq!(r.deflated, mib(64));
    assert_eq!(r.reason, Some(ClampReason::LowMemory));
    // Still signalled: one more step per tick, never an inflate.
    rig.expect([
        Expect::target(mib(4096), 1024 * 256),
        Expect::batch(Command::Batched2mUnlock, 32, 1024 * 256),
    ]);
    assert_eq!(rig.tick().balloon, mib(896));
    // Cleared, but inflation stays paused for LOW_MEMORY_HOLD.
    rig.world.set_low_memory(false);
    rig.expect([Expect::target(mib(4096), 1024 * 256)]);
    let r = rig.tick();
    assert_eq!(r.inflated, Frames::ZERO);
    assert_eq!(r.reason, Some(ClampReason::PressureHold));
    rig.clock.advance(policy::HOLD_BASE);
    rig.expect([
        Expect::target(mib(4096), 1024 * 256),
        Expect::batch(Command::Batched2mLock, 64, 1024 * 256),
    ]);
    assert_eq!(rig.tick().balloon, mib(1024));
    assert_eq!(rig.balloon.stats().get(Counter::LowMemoryDeflates), 2);
    assert_eq!(rig.balloon.stats().clamps(ClampReason::LowMemory), 2);
    assert_eq!(rig.balloon.stats().clamps(ClampReason::PressureHold), 1);
    rig.finish();
}

#[test]
fn low_memory_step_of_scattered_units_is_the_whole_step_not_one_unit() {
    // A balloon of 4 KiB units (no whole block was free): the step is still 1/64 of RAM
    // (64 MiB = 32 units of 2 MiB here, all of them), given back at the wake, not one unit
    // per wake.
    let mut rig = Rig::kb();
    rig.world.fail_allocations(PageSize::Large, 1);
    let mut script = std::vec![Expect::target(mib(4096), 8 * 512)];
    script.extend((0..8).map(|_| Expect::batch(Command::BatchedLock, 512, 8 * 512)));
    rig.expect(Expect::handshake(BATCHED_4K)).expect(script);
    assert_eq!(rig.tick().balloon, mib(16));
    assert_eq!(rig.balloon.held_on(Shelf::Scattered), mib(16));
    rig.expect([Expect::target(mib(4096), 8 * 512)]);
    rig.tick();
    rig.world.set_low_memory(true);
    let mut script = std::vec![Expect::target(mib(4096), 8 * 512)];
    script.extend((0..8).map(|_| Expect::batch(Command::BatchedUnlock, 512, 8 * 512)));
    rig.expect(script);
    let r = rig.tick();
    assert!(r.low_memory_deflate);
    assert_eq!((r.deflated, r.balloon), (mib(16), Frames::ZERO));
    assert_eq!(rig.balloon.stats().get(Counter::LowMemoryDeflates), 1);
    rig.finish();
}

#[test]
fn low_memory_from_the_balloons_own_growth_stops_inflation_without_deflating() {
    // Windows here signals LowMemoryCondition below 2500 MiB free (a threshold raised by
    // the administrator, so above the available floor the engine assumes). The balloon's
    // own allocations since the last calm snapshot explain the signal: stop growing, give
    // nothing back; it is guest pressure only if it outlasts a poll.
    let mut rig = Rig::kb();
    rig.world.low_memory_below(2500);
    rig.expect(Expect::handshake(FULL)).expect([
        Expect::target(mib(4096), KB_TARGET),
        Expect::batch(Command::Batched2mLock, 512, KB_TARGET),
        Expect::batch(Command::Batched2mLock, 512, KB_TARGET),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, mib(2048));
    assert!(!r.low_memory_deflate);
    assert_eq!(r.reason, Some(ClampReason::LowMemory));
    // A poll later the calm snapshot is still recent: still the balloon's doing.
    rig.expect([Expect::target(mib(4096), KB_TARGET)]);
    let r = rig.tick();
    assert_eq!((r.inflated, r.deflated), (Frames::ZERO, Frames::ZERO));
    // Outlasting a poll, it is the guest's: a low-memory step back.
    rig.expect([
        Expect::target(mib(4096), KB_TARGET),
        Expect::batch(Command::Batched2mUnlock, 32, KB_TARGET),
    ]);
    let r = rig.tick();
    assert!(r.low_memory_deflate);
    assert_eq!(r.deflated, mib(64));
    rig.finish();
}

#[test]
fn large_page_allocation_failure_falls_back_to_4k_in_the_same_tick() {
    let mut rig = Rig::kb();
    rig.world.fail_allocations(PageSize::Large, 1);
    // No whole block: scattered 4 KiB units for the rest of the tick.
    rig.expect(Expect::handshake(FULL)).expect([
        Expect::target(mib(4096), 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::new(1024));
    assert_eq!(r.alloc_failures, 1);
    assert_eq!(
        r.reason, None,
        "a 2 MiB failure is not a clamp: 4 KiB pages took over"
    );
    assert_eq!(rig.balloon.stats().get(Counter::AllocFail2m), 1);
    assert_eq!(rig.balloon.pages_held(PageSize::Small), 1024);
    rig.finish();
}

#[test]
fn large_pages_are_not_used_when_disabled_by_registry() {
    let cfg = validate(&RawConfig::new().with(Param::UseLargePages, 0), mib(4096)).config;
    let mut rig = Rig::new(4096, 300, 4096, cfg);
    rig.expect(Expect::handshake(FULL)).expect([
        Expect::target(mib(4096), 512),
        Expect::batch(Command::BatchedLock, 512, 512),
    ]);
    rig.tick();
    // Still a whole block (fragmentation-neutral), locked as 512 4 KiB pages.
    assert_eq!(rig.world.allocations(PageSize::Large), 1);
    assert_eq!(rig.balloon.pages_held(PageSize::Large), 0);
    assert_eq!(rig.balloon.held_on(Shelf::Block), Frames::new(512));
    rig.finish();
}

#[test]
fn small_allocation_failure_stops_and_backs_off() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.world.fail_allocations(PageSize::Small, 1);
    rig.expect(Expect::handshake(BATCHED_4K))
        .expect([Expect::target(mib(4096), 100)]);
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::ZERO);
    assert_eq!(r.reason, Some(ClampReason::AllocationFailed));
    // Back-off of one poll interval has passed at the next tick: it inflates.
    rig.expect([
        Expect::target(mib(4096), 100),
        Expect::batch(Command::BatchedLock, 100, 100),
    ]);
    assert_eq!(rig.tick().balloon, Frames::new(100));
    assert_eq!(rig.balloon.stats().clamps(ClampReason::AllocationFailed), 1);
    rig.finish();
}

#[test]
fn repeated_allocation_failures_back_off_exponentially() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.world.fail_allocations(PageSize::Small, 2);
    rig.expect(Expect::handshake(BATCHED_4K))
        .expect([Expect::target(mib(4096), 100)]);
    rig.tick();
    rig.expect([Expect::target(mib(4096), 100)]);
    rig.tick(); // second failure: back-off doubles to 2 s
    rig.expect([Expect::target(mib(4096), 100)]);
    let r = rig.tick(); // inside the back-off: no allocation attempted
    assert_eq!(r.reason, Some(ClampReason::AllocationFailed));
    assert_eq!(rig.world.allocations(PageSize::Small), 2);
    rig.expect([
        Expect::target(mib(4096), 100),
        Expect::batch(Command::BatchedLock, 100, 100),
    ]);
    assert_eq!(rig.tick().balloon, Frames::new(100));
    rig.finish();
}

#[test]
fn short_allocation_locks_what_it_got_then_backs_off() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.world.short_allocations(PageSize::Small, 1);
    // A whole block, then a scattered unit for the remaining 488 frames that comes back
    // with half of them.
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 1000),
        Expect::batch(Command::BatchedLock, 512, 1000),
        Expect::batch(Command::BatchedLock, 244, 1000),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::new(756));
    assert_eq!(r.reason, Some(ClampReason::AllocationFailed));
    assert_eq!(rig.balloon.stats().get(Counter::ShortAllocations), 1);
    rig.finish();
}

#[test]
fn refused_pages_are_held_for_the_cycle_then_returned() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    // The block with 3 refused pages stays whole (refused pages out of the OS's hands) until
    // the end of the tick, when its 509 accepted pages are unlocked and it is freed whole.
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 600),
        Expect::batch(Command::BatchedLock, 512, 600).entry_statuses(&[PINNED, 2, PINNED]),
        Expect::batch(Command::BatchedLock, 91, 600),
        Expect::batch(Command::BatchedUnlock, 509, 600),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::new(91));
    assert_eq!(r.refused, Frames::new(3));
    assert_eq!(
        rig.world.held_back_frames(),
        0,
        "held refused pages go back at the end of the tick"
    );
    assert_eq!(rig.world.parked_units(), 0);
    assert_eq!(rig.balloon.stats().get(Counter::Refused4k), 3);
    assert_eq!(rig.balloon.stats().get(Counter::RefusedHeld), 3);
    // Next tick: the rest, as scattered pages (less than a block is missing).
    rig.expect([
        Expect::target(mib(4096), 600),
        Expect::batch(Command::BatchedLock, 509, 600),
    ]);
    assert_eq!(rig.tick().balloon, Frames::new(600));
    rig.finish();
}

#[test]
fn sixteen_refused_pages_stop_the_cycle() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 1000),
        Expect::batch(Command::BatchedLock, 512, 1000).entry_statuses(&[PINNED; 20]),
        Expect::batch(Command::BatchedUnlock, 492, 1000),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::ZERO, "the block goes back whole");
    assert_eq!(r.refused, Frames::new(20));
    assert_eq!(
        rig.balloon.stats().get(Counter::RefusedHeld),
        20,
        "held inside their unit"
    );
    rig.finish();
}

#[test]
fn refused_large_pages_fall_back_to_small_pages() {
    let mut rig = Rig::kb();
    let target = 512 * 24;
    rig.expect(Expect::handshake(FULL)).expect([
        Expect::target(mib(4096), target),
        // The 8 calibration blocks and 16 more in one call; the host takes the first 8.
        Expect::batch(Command::Batched2mLock, 24, target).entry_statuses(&REFUSE_AFTER_8),
    ]);
    // Sixteen 2 MiB refusals: the rest of the cycle in 4 KiB pages, a block per batch.
    rig.expect((0..16).map(|_| Expect::batch(Command::BatchedLock, 512, target)));
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::new(target));
    assert_eq!(rig.balloon.pages_held(PageSize::Large), 8);
    assert_eq!(rig.balloon.stats().get(Counter::Refused2m), 16);
    rig.finish();
}

#[test]
fn host_not_needed_stops_inflating() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    // The block the host took 511 pages of is unlocked and freed whole at the end of the
    // tick (units are never split), so the balloon is back to 0 until the next tick.
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 1000),
        Expect::batch(Command::BatchedLock, 512, 1000).entry_statuses(&[0, 6]),
        Expect::batch(Command::BatchedUnlock, 511, 1000),
    ]);
    let r = rig.tick();
    assert_eq!(r.inflated, Frames::new(511));
    assert_eq!(r.deflated, Frames::new(511));
    assert_eq!(r.balloon, Frames::ZERO);
    assert_eq!(rig.balloon.stats().get(Counter::UnitsParked), 1);
    rig.finish();
}

#[test]
fn reset_mid_batch_pops_every_page_without_unlock_and_restarts() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 1000),
        Expect::batch(Command::BatchedLock, 512, 1000),
        Expect::any(Command::BatchedLock).with_status(Status::Reset),
    ]);
    let r = rig.tick();
    assert!(r.host_reset);
    assert_eq!(r.state, SessionState::ResetPending);
    // The host forgot every page: they go back to the OS at once, without UNLOCK, and
    // nothing stays stored that the host does not hold.
    assert_eq!(r.popped, Frames::new(512));
    assert_eq!(r.balloon, Frames::ZERO);
    assert_eq!(rig.world.stored_frames(), Frames::ZERO);
    // Next tick: START, GUEST_ID, TARGET, and inflate again.
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 1000),
        Expect::batch(Command::BatchedLock, 512, 1000),
        Expect::batch(Command::BatchedLock, 488, 1000),
    ]);
    let r = rig.tick();
    assert_eq!(r.popped, Frames::ZERO);
    assert!(r.started.is_some());
    assert_eq!(r.balloon, Frames::new(1000));
    assert_eq!(rig.balloon.stats().get(Counter::HostResets), 1);
    assert_eq!(rig.balloon.stats().get(Counter::FramesPopped), 512);
    rig.finish();
}

#[test]
fn reset_mid_single_page_chunk_stores_nothing_the_host_forgot() {
    // Legacy host: the first two LOCKs succeed, the third is answered RESET. The two pages
    // the host took are forgotten with everything else: freed, never stored.
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect([
        Expect::legacy_start(),
        Expect::guest_id(),
        Expect::target(mib(4096), 5),
        Expect::page(Command::Lock, 0, 5),
        Expect::page(Command::Lock, 1, 5),
        Expect::page(Command::Lock, 2, 0).with_status(Status::Reset),
    ]);
    let r = rig.tick();
    assert!(r.host_reset);
    assert_eq!(r.balloon, Frames::ZERO);
    assert_eq!(rig.world.balloon_frames(), Frames::ZERO);
    rig.finish();
}

#[test]
fn reset_on_unlock_frees_the_chunk_it_was_deflating() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
    ]);
    rig.tick();
    rig.expect([
        Expect::target(mib(4096), 0),
        Expect::any(Command::BatchedUnlock).with_status(Status::Reset),
    ]);
    let r = rig.tick();
    assert!(r.host_reset);
    assert_eq!(r.popped, Frames::new(1024));
    assert_eq!(r.balloon, Frames::ZERO);
    assert_eq!(rig.world.balloon_frames(), Frames::ZERO);
    rig.finish();
}

#[test]
fn reset_from_target_and_guest_id_restart_the_session() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect([
        Expect::start(BATCHED_4K),
        Expect::guest_id().with_status(Status::Reset),
    ]);
    let r = rig.tick();
    assert!(r.host_reset && r.started.is_none());
    rig.expect(Expect::handshake(BATCHED_4K))
        .expect([Expect::any(Command::Target).with_status(Status::Reset)]);
    assert!(rig.tick().host_reset);
    rig.expect(Expect::handshake(BATCHED_4K))
        .expect([Expect::target(mib(4096), 0)]);
    assert_eq!(rig.tick().state, SessionState::Running);
    rig.finish();
}

#[test]
fn busy_backs_off_and_recovers() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect(Expect::handshake(BATCHED_4K))
        .expect([Expect::any(Command::Target).with_status(Status::Busy)]);
    let r = rig.tick();
    assert!(r.error.unwrap().is_busy());
    // BUSY mid-inflation stops the tick's work; the next poll retries (Linux, OVT).
    rig.expect([
        Expect::target(mib(4096), 1000),
        Expect::batch(Command::BatchedLock, 512, 1000),
    ])
    .expect([Expect::any(Command::BatchedLock).with_status(Status::Busy)]);
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::new(512));
    assert!(r.error.unwrap().is_busy());
    rig.expect([
        Expect::target(mib(4096), 1000),
        Expect::batch(Command::BatchedLock, 488, 1000),
    ]);
    assert_eq!(rig.tick().balloon, Frames::new(1000));
    assert_eq!(rig.balloon.stats().get(Counter::HostBackoffs), 2);
    rig.finish();
}

#[test]
fn host_target_deflate_respects_the_2mib_slack() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 1000),
        Expect::batch(Command::BatchedLock, 512, 1000),
        Expect::batch(Command::BatchedLock, 488, 1000),
    ]);
    rig.tick();
    rig.expect([Expect::target(mib(4096), 600)]);
    assert_eq!(
        rig.tick().deflated,
        Frames::ZERO,
        "400 frames over target: within the slack"
    );
    rig.expect([
        Expect::target(mib(4096), 400),
        // The scattered unit (488 pages) goes; the block (512) would take the balloon below
        // the target, so it stays: host-target deflates round down to whole units.
        Expect::batch(Command::BatchedUnlock, 488, 400),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::new(512));
    assert_eq!(r.reason, None);
    rig.expect([
        Expect::target(mib(4096), 0),
        Expect::batch(Command::BatchedUnlock, 512, 0),
    ]);
    assert_eq!(rig.tick().balloon, Frames::ZERO);
    rig.finish();
}

#[test]
fn unlock_failure_keeps_pages_and_sets_the_chunk_aside() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
    ]);
    rig.tick();
    // Deflate to 0: the first page of the most recent block is not given back
    // (PPN_UNLOCKED). The pass stops; the block is parked with the page the host kept, and
    // the end-of-tick retry fails too.
    rig.expect([
        Expect::target(mib(4096), 0),
        Expect::batch(Command::BatchedUnlock, 512, 0).entry_statuses(&[4]),
        Expect::batch(Command::BatchedUnlock, 1, 0).entry_statuses(&[4]),
    ]);
    let r = rig.tick();
    assert_eq!(
        r.balloon,
        Frames::new(513),
        "the page the host kept stays ballooned"
    );
    assert_eq!(rig.balloon.stats().get(Counter::UnlockFailures), 1);
    assert_eq!(rig.world.parked_units(), 1);
    // Next tick the other block goes; the parked one's page comes back and the block is
    // freed whole.
    rig.expect([
        Expect::target(mib(4096), 0),
        Expect::batch(Command::BatchedUnlock, 512, 0),
        Expect::batch(Command::BatchedUnlock, 1, 0),
    ]);
    assert_eq!(rig.tick().balloon, Frames::ZERO);
    assert_eq!(rig.world.parked_units(), 0);
    rig.finish();
}

#[test]
fn legacy_host_uses_single_page_commands() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect([
        Expect::legacy_start(),
        Expect::guest_id(),
        Expect::target(mib(4096), 3),
        Expect::page(Command::Lock, 0, 3),
        Expect::page(Command::Lock, 1, 3),
        Expect::page(Command::Lock, 2, 3),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::new(3));
    assert_eq!(r.calls, 4);
    // 2 frames over a target of 1: within the slack, so nothing happens.
    rig.expect([Expect::target(mib(4096), 1)]);
    assert_eq!(rig.tick().deflated, Frames::ZERO);
    // A zero target empties it, one UNLOCK per page, most recent chunk first.
    rig.expect([
        Expect::target(mib(4096), 0),
        Expect::page(Command::Unlock, 0, 0),
        Expect::page(Command::Unlock, 1, 0),
        Expect::page(Command::Unlock, 2, 0),
    ]);
    assert_eq!(rig.tick().balloon, Frames::ZERO);
    rig.finish();
}

#[test]
fn no_balloon_host_touches_no_page() {
    // QEMU's vmport and bare metal read all ones from port 0x5670.
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    let no_host = || Expect::start(0).from_empty_port();
    rig.expect([no_host()]);
    let r = rig.tick();
    assert_eq!(r.state, SessionState::NoHost);
    assert_eq!(
        rig.world.allocations(PageSize::Small) + rig.world.allocations(PageSize::Large),
        0
    );
    // Exponential back-off: retried after 1 s, then after 2 s (one silent tick), ...
    rig.expect([no_host()]);
    rig.tick();
    assert_eq!(rig.tick().calls, 0);
    rig.expect([no_host()]);
    rig.tick();
    assert_eq!(rig.balloon.stats().get(Counter::StartFailures), 3);
    assert_eq!(rig.world.balloon_frames(), Frames::ZERO);
    rig.finish();
}

#[test]
fn batching_without_a_batch_page_sends_null_start() {
    let host = ScriptedBackdoor::without_batch_page([Expect::start(FULL), Expect::null_start()]);
    let world = FakeWorld::new(1024, 100, 0);
    let mut b = Balloon::new(
        host.clone(),
        world.pages(),
        world.memory(),
        ManualClock::new(),
        Config::default(),
    );
    let r = b.tick();
    assert_eq!(r.error, Some(Error::NoBatchPage));
    assert_eq!(r.state, SessionState::NoHost);
    host.done();
}

#[test]
fn unknown_memory_state_holds() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.world.fail_snapshots(true);
    rig.expect(Expect::handshake(BATCHED_4K));
    let r = rig.tick();
    assert_eq!(
        r.balloon,
        Frames::ZERO,
        "no snapshot yet: no TARGET, no inflation"
    );
    rig.world.fail_snapshots(false);
    rig.expect([
        Expect::target(mib(4096), 100),
        Expect::batch(Command::BatchedLock, 100, 100),
    ]);
    rig.tick();
    rig.world.fail_snapshots(true);
    rig.expect([Expect::target(mib(4096), 1000)]);
    let r = rig.tick();
    assert_eq!(r.error, Some(Error::MemoryUnavailable));
    assert_eq!(r.balloon, Frames::new(100));
    rig.finish();
}

#[test]
fn target_too_wide_for_32_bits_skips_the_tick() {
    // 16 TiB + of RAM without the 64-bit capability: Linux refuses to send TARGET.
    let host = ScriptedBackdoor::new(Expect::handshake(BATCHED_4K));
    let world = FakeWorld::new(64, 8, 0);
    let mut b = Balloon::new(
        host.clone(),
        world.pages(),
        BigMemory,
        ManualClock::new(),
        Config::default(),
    );
    let r = b.tick();
    assert!(matches!(r.error, Some(Error::TooWide { .. })));
    assert_eq!(r.balloon, Frames::ZERO);
    host.done();
}

struct BigMemory;

impl MemorySource for BigMemory {
    fn snapshot(&mut self) -> Result<MemorySnapshot, crate::platform::MemoryError> {
        Ok(MemorySnapshot {
            total: Frames::new(u64::from(u32::MAX) + 1),
            ..MemorySnapshot::default()
        })
    }
}

#[test]
fn shutdown_sends_null_start_first_and_returns_every_page() {
    let mut rig = Rig::kb();
    rig.expect(Expect::handshake(FULL)).expect([
        Expect::target(mib(4096), 513),
        Expect::batch(Command::Batched2mLock, 1, 513),
        Expect::batch(Command::BatchedLock, 1, 513),
    ]);
    rig.tick();
    assert_eq!(rig.world.balloon_frames(), Frames::new(513));
    rig.expect([Expect::null_start()]);
    let freed = rig.balloon.shutdown();
    assert_eq!(freed, Frames::new(513));
    assert_eq!(rig.world.balloon_frames(), Frames::ZERO);
    assert_eq!(rig.balloon.size(), Frames::ZERO);
    rig.finish();
}

#[test]
fn work_bound_splits_a_huge_inflate_across_immediate_ticks() {
    let mut rig = Rig::new(8192, 100, 8192, Config::default());
    let t = mib(4200).get();
    // 1024 batches of 512 small pages (2 GiB) per tick, then `more_work`.
    rig.expect(Expect::handshake(BATCHED_4K))
        .expect([Expect::target(mib(8192), t)]);
    rig.expect((0..MAX_BATCHES_PER_TICK).map(|_| Expect::batch(Command::BatchedLock, 512, t)));
    let r = rig.tick();
    assert!(r.more_work);
    assert_eq!(r.balloon, mib(2048));
    rig.expect([Expect::target(mib(8192), t)]);
    rig.expect((0..MAX_BATCHES_PER_TICK).map(|_| Expect::batch(Command::BatchedLock, 512, t)));
    assert!(rig.tick().more_work);
    rig.expect([Expect::target(mib(8192), t)])
        .expect((0..52).map(|_| Expect::batch(Command::BatchedLock, 512, t)));
    let r = rig.tick();
    assert!(!r.more_work);
    assert_eq!(r.balloon, mib(4200));
    assert_eq!(rig.balloon.stats().get(Counter::TicksContinued), 2);
    rig.finish();
}

#[test]
fn guest_id_failure_is_ignored() {
    // Linux and OVT log a failed GUEST_ID and carry on: it only informs the host.
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect([
        Expect::start(BATCHED_4K),
        Expect::guest_id().with_status(Status::CmdInvalid),
        Expect::target(mib(4096), 10),
        Expect::batch(Command::BatchedLock, 10, 10),
    ]);
    let r = rig.tick();
    assert_eq!(r.state, SessionState::Running);
    assert_eq!(r.balloon, Frames::new(10));
    rig.finish();
}

#[test]
fn deflate_starts_with_small_pages() {
    // Linux deflates 4 KiB pages first, keeping the cheaper-to-hold 2 MiB pages ballooned.
    let mut rig = Rig::kb();
    rig.expect(Expect::handshake(FULL)).expect([
        Expect::target(mib(4096), 1024 + 100),
        Expect::batch(Command::Batched2mLock, 2, 1024 + 100),
        Expect::batch(Command::BatchedLock, 100, 1024 + 100),
    ]);
    rig.tick();
    rig.expect([
        Expect::target(mib(4096), 0),
        Expect::batch(Command::BatchedUnlock, 100, 0),
        Expect::batch(Command::Batched2mUnlock, 2, 0),
    ]);
    assert_eq!(rig.tick().balloon, Frames::ZERO);
    rig.finish();
}

#[test]
fn whole_blocks_are_preferred_on_a_4k_host() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    // Two whole blocks (512 4 KiB entries each), then scattered pages for the rest.
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 1124),
        Expect::batch(Command::BatchedLock, 512, 1124),
        Expect::batch(Command::BatchedLock, 512, 1124),
        Expect::batch(Command::BatchedLock, 100, 1124),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::new(1124));
    assert_eq!(rig.world.allocations(PageSize::Large), 2);
    assert_eq!(rig.balloon.held_on(Shelf::Block), Frames::new(1024));
    assert_eq!(rig.balloon.held_on(Shelf::Scattered), Frames::new(100));
    assert_eq!(rig.balloon.stats().get(Counter::BlockUnits), 2);
    assert_eq!(rig.balloon.stats().get(Counter::ScatteredUnits), 1);
    rig.finish();
}

/// A 4 KiB-host balloon of two scattered units at [100, 104) MiB, the memory below them
/// pinned by another driver and 3000 MiB above them by an application (the fake guest's
/// OS memory is at the top, and the balloon takes the lowest free frames).
fn scattered_balloon_above_a_pinned_hole() -> (Rig, usize, usize) {
    let mut rig = Rig::new(4096, 100, 4096, Config::default());
    let below = rig.world.pin_range(0, 100).expect("free at boot");
    let above = rig.world.pin(3000).expect("free at boot");
    rig.world.fail_allocations(PageSize::Large, 2);
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
    ]);
    rig.tick();
    assert_eq!(rig.balloon.held_on(Shelf::Scattered), Frames::new(1024));
    (rig, below, above)
}

#[test]
fn compaction_moves_scattered_pages_below_the_zone_it_clears() {
    let (mut rig, below, above) = scattered_balloon_above_a_pinned_hole();
    // The driver and the application free their memory: the guest has freed far more than
    // RAM/32, which arms compaction. A first round finds the balloon's top; the zone is the
    // 64 MiB under it, [40, 104) MiB: each unit goes back and 512 pages are taken below
    // 40 MiB, in the hole the driver left. The next zone would reach the bottom of memory:
    // compaction ends.
    rig.world.unpin(below);
    rig.world.unpin(above);
    rig.expect([
        Expect::target(mib(4096), 1024),
        Expect::batch(Command::BatchedUnlock, 512, 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
        Expect::batch(Command::BatchedUnlock, 512, 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
    ]);
    let r = rig.tick();
    assert_eq!(r.compacted, Frames::new(1024));
    assert_eq!(rig.balloon.stats().get(Counter::Compactions), 1);
    assert_eq!(rig.balloon.stats().get(Counter::CompactedFrames), 1024);
    assert_eq!(r.balloon, Frames::new(1024));
    let low = mib(40).get();
    assert!(
        rig.world.frames_of_balloon().iter().all(|&f| f < low),
        "every ballooned page is below the zone"
    );
    // Nothing arms it again.
    rig.expect([Expect::target(mib(4096), 1024)]);
    assert_eq!(rig.tick().compacted, Frames::ZERO);
    rig.finish();
}

#[test]
fn compaction_ends_without_moving_a_page_while_the_balloon_is_above_its_goal() {
    let (mut rig, below, above) = scattered_balloon_above_a_pinned_hole();
    rig.world.unpin(below);
    rig.world.unpin(above);
    // The host lowers its target by less than the 2 MiB slack: the plan holds, the tick is
    // idle and compaction is armed, but the balloon is above min(target, ceiling): no page
    // moves, and the compaction ends rather than waiting there.
    rig.expect([Expect::target(mib(4096), 1000)]);
    let r = rig.tick();
    assert_eq!((r.compacted, r.deflated), (Frames::ZERO, Frames::ZERO));
    assert_eq!(rig.balloon.stats().get(Counter::Compactions), 1);
    assert!(rig.balloon.compaction.is_none(), "the compaction ended");
    // Back at its goal: a compaction left waiting would move pages now; none does.
    rig.expect([Expect::target(mib(4096), 1024)]);
    let r = rig.tick();
    assert_eq!(
        (r.calls, r.compacted, r.deflated),
        (1, Frames::ZERO, Frames::ZERO)
    );
    assert_eq!(rig.balloon.stats().get(Counter::Compactions), 1);
    rig.finish();
}

#[test]
fn compaction_waits_for_the_guest_to_free_memory_and_never_grows_the_balloon() {
    let (mut rig, below, _above) = scattered_balloon_above_a_pinned_hole();
    // 100 MiB freed on a 4 GiB guest is less than RAM/32 (128 MiB): not armed.
    rig.world.unpin(below);
    rig.expect([Expect::target(mib(4096), 1024)]);
    assert_eq!(rig.tick().compacted, Frames::ZERO);
    assert_eq!(rig.balloon.stats().get(Counter::Compactions), 0);
    rig.finish();
}

#[test]
fn guest_pressure_gives_back_whole_units_rounding_up() {
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect(Expect::handshake(BATCHED_4K)).expect([
        Expect::target(mib(4096), 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
        Expect::batch(Command::BatchedLock, 512, 1024),
    ]);
    rig.tick();
    // The administrator caps the balloon 100 frames lower: a whole block goes back.
    let cfg = validate(&RawConfig::new().with(Param::MaxBalloonMb, 3), mib(4096)).config;
    rig.balloon.set_config(cfg);
    rig.expect([
        Expect::target(mib(4096), 1024),
        Expect::batch(Command::BatchedUnlock, 512, 1024),
    ]);
    let r = rig.tick();
    assert_eq!(r.balloon, Frames::new(512));
    assert_eq!(r.reason, Some(ClampReason::RegistryMax));
    rig.finish();
}

#[test]
fn accounting_calibration_finds_the_same_ceiling_whether_or_not_windows_charges() {
    // No public source says whether the balloon's MDL pages are charged to resident
    // available memory and commit (docs/windows-memory.md §1.6): the first 8 MiB measure
    // it, and the ceiling comes out the same in both worlds.
    // Either answer takes two samples in a row.
    for (percent, verdict, tries) in [(100, Charge::Charged, 2), (0, Charge::NotCharged, 2)] {
        let mut rig = Rig::kb();
        rig.world.charge_mdl_pages(percent, percent);
        let _sql = rig.world.pin(2048).unwrap();
        rig.expect(Expect::handshake(FULL))
            .expect([Expect::target(mib(4096), KB_TARGET)]);
        // Both samples are the first 8 MiB allocated: no LOCK of their own.
        rig.expect([
            Expect::batch(Command::Batched2mLock, 512, KB_TARGET),
            Expect::batch(Command::Batched2mLock, 630 - 512, KB_TARGET),
        ]);
        let r = rig.tick();
        let c = r.calibrated.unwrap();
        assert_eq!((c.resident_available, c.commit), (verdict, verdict));
        assert_eq!((c.frames, c.tries), (mib(8), tries as u8));
        assert_eq!(r.balloon, mib(1260), "{percent} % charged");
        assert_eq!(rig.balloon.stats().get(Counter::Calibrations), 1);
        assert_eq!(rig.balloon.accounting().footprint, mib(1260));
        rig.finish();
    }
}

#[test]
fn undecided_accounting_is_measured_six_times_then_taken_as_not_charged() {
    // Half the frames showing up is neither answer (other guest activity moved the
    // figures): measured again, and after six tries the smaller ceiling is assumed.
    let mut rig = Rig::kb();
    rig.world.charge_mdl_pages(50, 50);
    let target = 32 * 512;
    rig.expect(Expect::handshake(FULL))
        .expect([Expect::target(mib(4096), target)]);
    // Six samples of 4 blocks each, all in the one LOCK of the 32.
    rig.expect([Expect::batch(Command::Batched2mLock, 32, target)]);
    let r = rig.tick();
    let c = r.calibrated.unwrap();
    assert_eq!(c.tries, CALIBRATION_TRIES);
    assert_eq!(
        (c.resident_available, c.commit),
        (Charge::NotCharged, Charge::NotCharged)
    );
    assert_eq!(r.balloon, mib(64));
    assert_eq!(rig.balloon.stats().get(Counter::Calibrations), 1);
    rig.finish();
}

#[test]
fn a_batch_that_took_nothing_is_not_a_calibration_try() {
    // Windows gives no block for the first sample: the balloon did not grow, nothing was
    // measured, and the cycle goes on in 4 KiB pages, measured from the start.
    let mut rig = Rig::kb();
    rig.world.fail_allocations(PageSize::Large, 1);
    let target = 32 * 512;
    rig.expect(Expect::handshake(FULL))
        .expect([Expect::target(mib(4096), target)]);
    rig.expect((0..32).map(|_| Expect::batch(Command::BatchedLock, 512, target)));
    let r = rig.tick();
    let c = r.calibrated.unwrap();
    assert_eq!((c.resident_available, c.tries), (Charge::Charged, 2));
    assert_eq!(r.balloon, mib(64));
    rig.finish();
}

#[test]
fn recurring_pinned_memory_doubles_the_re_inflation_hold_off() {
    let mut rig = Rig::kb();
    let _sql = rig.world.pin(2048).unwrap();
    rig.expect(Expect::handshake(FULL)).expect([
        Expect::target(mib(4096), KB_TARGET),
        Expect::batch(Command::Batched2mLock, 512, KB_TARGET),
        Expect::batch(Command::Batched2mLock, 118, KB_TARGET),
    ]);
    assert_eq!(rig.tick().balloon, mib(1260));
    // A job pins 256 MiB, unpins it, and pins it again as soon as the balloon is back.
    let cycle = |rig: &mut Rig, hold: Duration| {
        let job = rig.world.pin(256).unwrap();
        rig.expect([
            Expect::target(mib(4096), KB_TARGET),
            Expect::batch(Command::Batched2mUnlock, 128, KB_TARGET),
        ]);
        assert_eq!(rig.tick().balloon, mib(1004));
        assert_eq!(rig.balloon.damping().hold(), hold);
        rig.world.unpin(job);
        // The room opens now; it must stay open for the whole hold-off.
        rig.expect([Expect::target(mib(4096), KB_TARGET)]);
        assert_eq!(rig.tick().reason, Some(ClampReason::PressureHold));
        rig.clock
            .advance(hold.saturating_sub(Duration::from_secs(2)));
        rig.expect([Expect::target(mib(4096), KB_TARGET)]);
        assert_eq!(rig.tick().reason, Some(ClampReason::PressureHold));
        rig.expect([
            Expect::target(mib(4096), KB_TARGET),
            Expect::batch(Command::Batched2mLock, 128, KB_TARGET),
        ]);
        assert_eq!(rig.tick().balloon, mib(1260));
    };
    cycle(&mut rig, policy::HOLD_BASE);
    cycle(&mut rig, policy::HOLD_BASE.saturating_mul(2));
    cycle(&mut rig, policy::HOLD_BASE.saturating_mul(4));
    // After a quiet spell the hold-off halves again.
    rig.clock.advance(Duration::from_secs(60));
    cycle(&mut rig, policy::HOLD_BASE.saturating_mul(2));
    assert_eq!(rig.balloon.stats().get(Counter::PressureHolds), 4);
    assert_eq!(rig.balloon.stats().clamps(ClampReason::PressureHold), 8);
    rig.finish();
}

#[test]
fn a_fresh_snapshot_stands_in_for_the_next_while_the_room_is_wide() {
    // A 4 KiB host: one block per batch. Re-reading memory before each of 32 batches would
    // cost a system query each; with the ceiling far away the last one is reused.
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    let target = 32 * 512;
    rig.expect(Expect::handshake(BATCHED_4K))
        .expect([Expect::target(mib(4096), target)]);
    rig.expect((0..32).map(|_| Expect::batch(Command::BatchedLock, 512, target)));
    let r = rig.tick();
    assert_eq!(r.balloon, mib(64));
    let reused = rig.balloon.stats().get(Counter::SnapshotsReused);
    assert!(
        (20..32).contains(&reused),
        "{reused} of 33 plans on a kept snapshot"
    );
    rig.finish();
}

#[test]
fn single_page_refusal_ends_the_pass_on_a_legacy_host() {
    // Without batching every page is a call: once the host refuses one, the next ones of
    // this pass would most likely be refused too.
    let mut rig = Rig::new(4096, 300, 4096, Config::default());
    rig.expect([
        Expect::legacy_start(),
        Expect::guest_id(),
        Expect::target(mib(4096), 3),
        Expect::page(Command::Lock, 0, 3),
        Expect::page(Command::Lock, 1, 3).with_status(Status::PpnPinned),
        Expect::page(Command::Unlock, 0, 3),
    ]);
    let r = rig.tick();
    assert_eq!(r.refused, Frames::new(1));
    assert_eq!(r.balloon, Frames::ZERO);
    rig.finish();
}
