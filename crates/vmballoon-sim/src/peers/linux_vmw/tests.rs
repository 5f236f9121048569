//! One test per rule of `vmballoon_inflate` / `vmballoon_lock` the model follows
//! (`docs/protocol.md` §6.3).

use vmballoon_core::protocol::Status;
use vmballoon_core::units::Frames;

use crate::driver::DriverKind;
use crate::host::EntryDirection;
use crate::peers::rig::{BATCHED_4K, LEGACY, Rig};

const LNX: DriverKind = DriverKind::LinuxVmw;

#[test]
fn single_page_refusal_ends_the_pass() {
    // vmballoon_lock returns -EIO for a non-SUCCESS single page; vmballoon_inflate breaks.
    let mut r = Rig::new(LNX, 64, LEGACY);
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
fn single_page_not_needed_busy_and_reset_end_the_pass_too() {
    for status in [Status::PpnNotNeeded, Status::Busy, Status::Reset] {
        let mut r = Rig::new(LNX, 64, LEGACY);
        r.target(100);
        r.world
            .borrow_mut()
            .host
            .inject_entry_status(status, 1, EntryDirection::Lock);
        assert_eq!(r.tick(), 1, "{status:?}");
        assert_eq!(r.balloon(), 0);
        r.finish();
    }
}

#[test]
fn single_page_lowered_target_is_not_overshot() {
    // vmballoon_change re-reads the target (updated from every LOCK reply) before each
    // one-page iteration.
    let mut r = Rig::new(LNX, 64, LEGACY);
    r.target(100);
    r.world
        .borrow_mut()
        .host
        .inject_target_after_locks(5, Frames::new(3));
    assert_eq!(r.tick(), 5);
    assert_eq!(
        r.balloon(),
        5,
        "nothing locked after the reply that lowered the target"
    );
    r.finish();
}

#[test]
fn batched_per_entry_statuses_are_all_refusals_and_sixteen_end_the_pass() {
    // vmballoon_handle_one_result: every per-entry status but SUCCESS is a refused page;
    // 16 refused pages end the 4 KiB pass (VMW_BALLOON_MAX_REFUSED).
    let mut r = Rig::new(LNX, 256, BATCHED_4K);
    r.target(4096);
    {
        let mut w = r.world.borrow_mut();
        w.host
            .inject_entry_status(Status::PpnNotNeeded, 8, EntryDirection::Lock);
        w.host
            .inject_entry_status(Status::Busy, 4, EntryDirection::Lock);
        w.host
            .inject_entry_status(Status::Reset, 4, EntryDirection::Lock);
    }
    assert_eq!(r.tick(), 1, "one batch, then the refused limit");
    assert_eq!(r.balloon(), 512 - 16);
    assert_eq!(r.counter("4k-errAlloc"), 16);
    assert_eq!(
        r.world.borrow().host.resets_answered(),
        0,
        "a per-entry RESET is no reset"
    );
    r.finish();
}
