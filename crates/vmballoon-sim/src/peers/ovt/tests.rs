//! One test per rule of `BalloonInflate`, `BalloonLockBatched`, `BalloonLock`,
//! `BalloonDeflateInt` and `Balloon_QueryAndExecute` the model follows (`docs/protocol.md` §7).

use vmballoon_core::protocol::{Command, Status};
use vmballoon_core::units::{Frames, Instant};

use crate::driver::DriverKind;
use crate::guest::PinKind;
use crate::host::EntryDirection;
use crate::peers::rig::{BATCHED_2M, BATCHED_4K, LEGACY, Rig};

const OVT: DriverKind = DriverKind::OvtClassic;

#[test]
fn two_mib_inflate_overshoots_by_less_than_one_2mib_page_without_4k_tail() {
    // BalloonInflate: LPAGE entries are allocated while the pending frames are below
    // target - size, so 1000 frames take two 2 MiB pages (1024 frames), no 4 KiB page.
    let mut r = Rig::new(OVT, 512, BATCHED_2M);
    r.target(1000);
    r.tick();
    assert_eq!(r.balloon(), 1024);
    assert_eq!(r.calls(Command::BatchedLock), 0, "no 4 KiB tail");
    assert_eq!(r.calls(Command::Batched2mLock), 1);
    // The overshoot is within the hysteresis: no deflate at the next tick.
    r.tick();
    assert_eq!(r.balloon(), 1024);
    assert_eq!(r.calls(Command::Batched2mUnlock), 0);
    r.finish();
}

#[test]
fn batched_per_entry_notneeded_and_reset_free_the_page_and_the_pass_goes_on() {
    // BalloonLockBatched: RESET and PPN_NOTNEEDED entries are freed, then `continue`; the
    // call succeeded, so BalloonInflate goes on and reaches the target in the same tick.
    let mut r = Rig::new(OVT, 256, BATCHED_4K);
    r.target(2048);
    {
        let mut w = r.world.borrow_mut();
        w.host
            .inject_entry_status(Status::PpnNotNeeded, 10, EntryDirection::Lock);
        w.host
            .inject_entry_status(Status::Reset, 5, EntryDirection::Lock);
    }
    r.tick();
    assert_eq!(r.balloon(), 2048, "the pass went on to the target");
    assert_eq!(r.world.borrow().host.refused_pages(), 15);
    assert_eq!(r.counter("primErrorPageAlloc-4k"), 0, "freed, not kept");
    assert_eq!(
        r.world.borrow().host.resets_answered(),
        0,
        "a per-entry RESET is no reset"
    );
    r.finish();
}

#[test]
fn per_entry_busy_is_a_driver_bug_the_model_frees_and_counts() {
    // BalloonLockBatched: `default: ASSERT(FALSE)` — OVT loses the page in a release
    // build; the model frees it (no leak) and counts it.
    let mut r = Rig::new(OVT, 256, BATCHED_4K);
    r.target(1024);
    r.world
        .borrow_mut()
        .host
        .inject_entry_status(Status::Busy, 7, EntryDirection::Lock);
    r.tick();
    assert_eq!(r.counter("driverBug"), 7);
    assert_eq!(r.balloon(), 1024, "the pass goes on");
    r.finish();
}

#[test]
fn a_nosleep_failure_slows_exactly_the_three_ticks_after_it() {
    // Balloon_QueryAndExecute decrements slowPageAllocationCycles on every tick before
    // BalloonInflate reads it; a NOSLEEP failure sets it to 4: three slow ticks follow.
    let mut r = Rig::new(OVT, 512, BATCHED_4K);
    r.world.borrow_mut().guest.lock(
        "hog",
        PinKind::VirtualLock,
        Frames::from_mib(460),
        Instant::default(),
    );
    r.target(Frames::from_mib(500).get());
    r.tick();
    let first = r.balloon();
    assert!(first > 0 && first < 16_384, "NOSLEEP ran out: {first}");
    assert_eq!(r.counter("primAllocFail-nosleep"), 1);
    r.world.borrow_mut().guest.release("hog");
    let rate = r.counter("rateAlloc");
    let mut grew = Vec::new();
    for _ in 0..4 {
        let before = r.balloon();
        r.tick();
        grew.push(r.balloon() - before);
    }
    assert_eq!(
        &grew[..3],
        &[rate, rate, rate],
        "three slow ticks at rateAlloc"
    );
    assert_eq!(grew[3], 16_384, "then NOSLEEP_ALLOC_MAX again");
    r.finish();
}

#[test]
fn after_a_2mib_failure_the_pass_stops_at_the_allocation_cap() {
    // BalloonInflate: after an LPAGE failure, `if (allocations >= b->rateAlloc) break;`
    // — 2,100 2 MiB entries (more than rateAlloc = 2048) end the pass; no 4 KiB page.
    let mut r = Rig::new(OVT, 8192, BATCHED_2M);
    {
        let mut w = r.world.borrow_mut();
        let g = &mut w.guest;
        let t = Instant::default();
        // Blocks 1..=2100 pinned (block 0 is the OS's), then one frame pinned in every
        // other block, then blocks 1..=2100 freed: 2,100 whole free blocks, the rest
        // partly free.
        g.lock("low", PinKind::VirtualLock, Frames::new(2100 * 512), t);
        for b in 2101..4096u64 {
            g.lock(&format!("dot{b}"), PinKind::VirtualLock, Frames::new(1), t);
            g.lock(
                &format!("fill{b}"),
                PinKind::VirtualLock,
                Frames::new(511),
                t,
            );
        }
        for b in 2101..4096u64 {
            g.release(&format!("fill{b}"));
        }
        g.release("low");
        assert_eq!(g.whole_free_blocks(), 2100);
    }
    r.target(Frames::from_mib(8000).get());
    r.tick();
    assert_eq!(r.counter("primAllocFail-lpage"), 1);
    assert_eq!(
        r.balloon(),
        2100 * 512,
        "stopped at the cap, no 4 KiB pages"
    );
    assert_eq!(r.calls(Command::BatchedLock), 0);
    r.finish();
}

#[test]
fn single_page_refusal_ends_the_pass() {
    // BalloonLock returns the error; with batchMaxEntries = 1 BalloonInflate breaks.
    let mut r = Rig::new(OVT, 64, LEGACY);
    r.target(10);
    assert_eq!(r.tick(), 10);
    r.target(100);
    r.world.borrow_mut().host.inject_refusals(1);
    assert_eq!(r.tick(), 1, "one LOCK: the refused page ends the pass");
    assert_eq!(r.balloon(), 10);
    assert_eq!(r.tick(), 90, "the next tick goes on");
    r.finish();
}

#[test]
fn single_page_not_needed_frees_the_page_and_ends_the_pass() {
    let mut r = Rig::new(OVT, 64, LEGACY);
    r.target(100);
    r.world
        .borrow_mut()
        .host
        .inject_entry_status(Status::PpnNotNeeded, 1, EntryDirection::Lock);
    assert_eq!(r.tick(), 1);
    assert_eq!(r.balloon(), 0);
    assert_eq!(
        r.counter("primErrorPageAlloc-4k"),
        0,
        "freed, not an error page"
    );
    r.finish();
}

#[test]
fn single_page_lowered_target_is_not_overshot() {
    // Each LOCK passes &target: the loop re-reads it before the next page.
    let mut r = Rig::new(OVT, 64, LEGACY);
    r.target(100);
    r.world
        .borrow_mut()
        .host
        .inject_target_after_locks(5, Frames::new(3));
    assert_eq!(r.tick(), 5, "the 5th reply lowered the target to 3");
    assert_eq!(r.balloon(), 5);
    r.finish();
}

#[test]
fn batched_lowered_target_is_read_after_each_full_batch() {
    // The reply of a full batch's lock overwrites `target`.
    let mut r = Rig::new(OVT, 256, BATCHED_4K);
    r.target(4096);
    r.world
        .borrow_mut()
        .host
        .inject_target_after_locks(2, Frames::new(1000));
    assert_eq!(r.tick(), 2);
    assert_eq!(
        r.balloon(),
        1024,
        "two batches of 512, then the lowered target held"
    );
    r.finish();
}

#[test]
fn two_mib_deflate_unlocks_a_whole_batch_however_small_the_surplus() {
    // BalloonDeflateInt compares entries (nPages) with frames (b->nPages - target): for
    // 2 MiB pages it gathers a full batch of 512 entries before the size changes.
    let mut r = Rig::new(OVT, 2048, BATCHED_2M);
    r.target(600 * 512);
    r.tick();
    assert_eq!(r.balloon(), 600 * 512);
    r.target(600 * 512 - 600);
    r.tick();
    assert_eq!(r.calls(Command::Batched2mUnlock), 1);
    assert_eq!(
        r.balloon(),
        88 * 512,
        "512 pages (1 GiB) unlocked for 600 frames"
    );
    r.finish();
}

#[test]
fn batched_per_entry_unlock_failure_is_not_an_error() {
    // BalloonUnlockBatched returns the call's status; a failed entry is put back and
    // BalloonDeflateInt neither stops nor halves rateFree.
    let mut r = Rig::new(OVT, 256, BATCHED_4K);
    r.target(2048);
    r.tick();
    r.world
        .borrow_mut()
        .host
        .inject_entry_status(Status::Busy, 3, EntryDirection::Unlock);
    let rate = r.counter("rateFree");
    r.target(0);
    r.tick();
    assert_eq!(r.counter("unlockFail"), 0);
    assert!(r.counter("rateFree") >= rate, "not halved");
    // The three pages were put back; at most a later tick gives them back.
    assert!(r.balloon() <= 3);
    r.tick();
    assert_eq!(r.balloon(), 0);
    r.finish();
}
