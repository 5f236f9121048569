use super::*;
use crate::guest::{GuestSpec, PageableLayout};
use vmballoon_core::fake::ManualClock;
use vmballoon_core::protocol::Status;

const START: u32 = 0;
const TARGET: u32 = 1;
const LOCK: u32 = 2;
const UNLOCK: u32 = 3;
const GUEST_ID: u32 = 4;
const BLOCK: u32 = 6;
const BUNLOCK: u32 = 7;
const B2M_LOCK: u32 = 8;
const B2M_UNLOCK: u32 = 9;
const OK: u32 = 0;
const OK_CAPS: u32 = 0x0300_0000;

fn setup(spec: HostSpec) -> (SharedWorld, FakeHost, crate::guest::PeerPages) {
    let guest = GuestModel::new(GuestSpec {
        ram: Frames::from_mib(64),
        os_locked: Frames::from_mib(2),
        pagefile: Frames::from_mib(64),
        committed: Frames::ZERO,
        layout: PageableLayout::Packed,
    });
    let ram = guest.total();
    let w = World::new(guest, HostModel::new(spec, ram), ManualClock::new());
    let host = FakeHost::new(w.clone());
    let g = crate::guest::PeerPages::new(w.clone());
    (w, host, g)
}

fn violations(w: &SharedWorld) -> Vec<String> {
    w.borrow()
        .checker
        .violations()
        .iter()
        .map(|v| v.message.clone())
        .collect()
}

fn batch(host: &mut FakeHost, cmd: u32, pfns: &[u64]) -> (RawReply, Vec<u64>) {
    let (page, pfn) = host.batch_page().unwrap();
    let pfn = pfn.get();
    for (i, p) in pfns.iter().enumerate() {
        page.entries[i] = (p << 12).to_le();
    }
    let r = host.call(cmd, pfn, pfns.len() as u64);
    let (page, _) = host.batch_page().unwrap();
    let statuses = page.entries[..pfns.len()]
        .iter()
        .map(|e| u64::from_le(*e) & 0x1F)
        .collect();
    (r, statuses)
}

#[test]
fn start_grants_the_intersection_in_rcx() {
    let (w, mut host, _) = setup(HostSpec::default());
    let r = host.call(START, 0x2E, 0);
    assert_eq!(r.status, OK_CAPS);
    assert_eq!(r.capabilities, 0x0E);
    assert_eq!(host.call(GUEST_ID, 4, 0).status, OK);
    assert_eq!(w.borrow().host.guest_type(), Some(4));
    assert!(violations(&w).is_empty());
}

#[test]
fn legacy_host_answers_start_with_zero() {
    let (w, mut host, _) = setup(HostSpec {
        capabilities: None,
        max_balloon_percent: 0,
    });
    assert_eq!(host.call(START, 0x2E, 0).status, OK);
    // Batched commands were not granted: a violation, answered CMD_INVALID.
    let (r, _) = batch(&mut host, BLOCK, &[0x500]);
    assert_eq!(r.status, 1);
    assert_eq!(violations(&w).len(), 1);
    assert!(violations(&w)[0].contains("without its capability"));
}

#[test]
fn commands_before_start_or_after_reset_are_violations() {
    let (w, mut host, _) = setup(HostSpec::default());
    assert_eq!(host.call(TARGET, 0, 0).status, 7);
    assert!(violations(&w)[0].contains("before START"));
    host.call(START, 0x0E, 0);
    w.borrow_mut().host.inject_reset();
    assert_eq!(host.call(TARGET, 0, 0).status, 7, "answered RESET");
    assert_eq!(
        violations(&w).len(),
        1,
        "the RESET answer itself is no violation"
    );
    assert_eq!(host.call(GUEST_ID, 4, 0).status, 7);
    assert!(violations(&w)[1].contains("after RESET before START"));
    assert_eq!(host.call(START, 0x0E, 0).status, OK_CAPS);
    assert_eq!(host.call(TARGET, 0, 0).status, OK);
    assert_eq!(w.borrow().host.resets_answered(), 1);
}

#[test]
fn target_is_capped_by_the_host_percentage_and_the_limit() {
    let (w, mut host, _) = setup(HostSpec::default());
    host.call(START, 0x0E, 0);
    w.borrow_mut().host.set_target(Frames::from_mib(60));
    // 65 % of 64 MiB.
    let cap = Frames::from_mib(64).percent(65).get();
    assert_eq!(host.call(TARGET, 0, 0).result, cap);
    assert_eq!(host.call(TARGET, 100, 0).result, 100);
    w.borrow_mut().host.set_target(Frames::new(7));
    assert_eq!(host.call(TARGET, 16384, 0).result, 7);
}

#[test]
fn batched_lock_and_unlock_write_statuses_and_track_frames() {
    let (w, mut host, mut guest) = setup(HostSpec::default());
    host.call(START, 0x0E, 0);
    w.borrow_mut().host.set_target(Frames::new(1000));
    let c = guest
        .allocate(vmballoon_core::units::PageSize::Small, 3)
        .unwrap();
    let pfns: Vec<u64> = (0..3).map(|i| guest.pfn(&c, i).unwrap().get()).collect();
    let (r, st) = batch(&mut host, BLOCK, &pfns);
    assert_eq!((r.status, r.result), (OK, 1000));
    assert_eq!(st, vec![0, 0, 0]);
    assert_eq!(w.borrow().host.held_frames().get(), 3);
    // Locking one again: PPN_LOCKED and a violation.
    let (_, st) = batch(&mut host, BLOCK, &pfns[..1]);
    assert_eq!(st, vec![3]);
    assert!(violations(&w)[0].contains("already holds"));
    let (_, st) = batch(&mut host, BUNLOCK, &pfns);
    assert_eq!(st, vec![0, 0, 0]);
    // Unlocking what the host does not hold: PPN_UNLOCKED and a violation.
    let (_, st) = batch(&mut host, BUNLOCK, &pfns[..1]);
    assert_eq!(st, vec![4]);
    assert!(violations(&w)[1].contains("does not hold"));
    assert_eq!(w.borrow().host.frames_locked(), 3);
    assert_eq!(w.borrow().host.frames_unlocked(), 3);
    guest.free(c);
    assert_eq!(violations(&w).len(), 2);
}

#[test]
fn two_mib_pages_count_512_frames_and_must_be_aligned() {
    let (w, mut host, mut guest) = setup(HostSpec::default());
    host.call(START, 0x0E, 0);
    let c = guest
        .allocate(vmballoon_core::units::PageSize::Large, 2)
        .unwrap();
    let pfns: Vec<u64> = (0..2).map(|i| guest.pfn(&c, i).unwrap().get()).collect();
    let (r, st) = batch(&mut host, B2M_LOCK, &pfns);
    assert_eq!(r.status, OK);
    assert_eq!(st, vec![0, 0]);
    assert_eq!(w.borrow().host.frames_locked(), 1024);
    // A 4 KiB unlock of part of a 2 MiB page is a violation.
    let (_, st) = batch(&mut host, BUNLOCK, &[pfns[0] + 1]);
    assert_eq!(st, vec![2]);
    // A misaligned 2 MiB entry is a violation.
    let (_, st) = batch(&mut host, B2M_UNLOCK, &[pfns[0] + 1]);
    assert_eq!(st, vec![2]);
    assert_eq!(violations(&w).len(), 2);
    let (_, st) = batch(&mut host, B2M_UNLOCK, &pfns);
    assert_eq!(st, vec![0, 0]);
    assert_eq!(w.borrow().host.frames_unlocked(), 1024);
    guest.free(c);
    assert_eq!(violations(&w).len(), 2);
}

#[test]
fn malformed_batches_are_violations() {
    let (w, mut host, mut guest) = setup(HostSpec::default());
    host.call(START, 0x0E, 0);
    let c = guest
        .allocate(vmballoon_core::units::PageSize::Small, 1)
        .unwrap();
    let pfn = guest.pfn(&c, 0).unwrap().get();
    let batch_pfn = host.batch_page().unwrap().1.get();
    // Count 0 and 513.
    assert_eq!(host.call(BLOCK, batch_pfn, 0).status, 0xFFFF_FFFF);
    assert_eq!(host.call(BLOCK, batch_pfn, 513).status, 0xFFFF_FFFF);
    // The wrong page.
    assert_eq!(host.call(BLOCK, batch_pfn + 1, 1).status, 0xFFFF_FFFF);
    // Reserved bits and status bits set by the guest.
    host.batch_page().unwrap().0.entries[0] = ((pfn << 12) | 0x20).to_le();
    host.call(BLOCK, batch_pfn, 1);
    host.batch_page().unwrap().0.entries[0] = ((pfn << 12) | 0x01).to_le();
    host.call(BUNLOCK, batch_pfn, 1);
    let v = violations(&w);
    assert_eq!(v.len(), 5, "{v:?}");
    assert!(v[0].contains("0 entries"));
    assert!(v[1].contains("513 entries"));
    assert!(v[2].contains("not the batch page"));
    assert!(v[3].contains("reserved bits"));
    assert!(v[4].contains("status bits"));
    guest.free(c);
}

#[test]
fn lock_of_a_page_the_guest_did_not_allocate_is_a_violation() {
    let (w, mut host, _) = setup(HostSpec::default());
    host.call(START, 0x0E, 0);
    // PFN 0 is OS memory; PFN 1 << 40 is outside RAM.
    assert_eq!(host.call(LOCK, 0, 0).status, 2);
    assert_eq!(host.call(LOCK, 1 << 30, 0).status, 2);
    let v = violations(&w);
    assert!(v[0].contains("not a balloon page"));
    assert!(v[1].contains("outside guest RAM"));
}

#[test]
fn single_page_commands() {
    let (w, mut host, mut guest) = setup(HostSpec {
        capabilities: None,
        max_balloon_percent: 0,
    });
    host.call(START, 0, 0);
    w.borrow_mut().host.set_target(Frames::new(9));
    let c = guest
        .allocate(vmballoon_core::units::PageSize::Small, 1)
        .unwrap();
    let pfn = guest.pfn(&c, 0).unwrap().get();
    let r = host.call(LOCK, pfn, 0);
    assert_eq!((r.status, r.result), (OK, 9));
    assert_eq!(host.call(UNLOCK, pfn, 0).status, OK);
    assert_eq!(host.call(UNLOCK, pfn, 0).status, 4);
    guest.free(c);
    assert_eq!(violations(&w).len(), 1);
}

#[test]
fn busy_and_refusals_are_injected() {
    let (w, mut host, mut guest) = setup(HostSpec::default());
    host.call(START, 0x0E, 0);
    w.borrow_mut().host.inject_busy(2);
    assert_eq!(host.call(TARGET, 0, 0).status, 8);
    // START and GUEST_ID are never answered BUSY.
    assert_eq!(host.call(GUEST_ID, 4, 0).status, OK);
    assert_eq!(host.call(TARGET, 0, 0).status, 8);
    assert_eq!(host.call(TARGET, 0, 0).status, OK);
    assert_eq!(w.borrow().host.busy_answered(), 2);
    w.borrow_mut().host.inject_refusals(2);
    let c = guest
        .allocate(vmballoon_core::units::PageSize::Small, 3)
        .unwrap();
    let pfns: Vec<u64> = (0..3).map(|i| guest.pfn(&c, i).unwrap().get()).collect();
    let (_, st) = batch(&mut host, BLOCK, &pfns);
    assert_eq!(st, vec![5, 5, 0]);
    assert_eq!(w.borrow().host.refused_pages(), 2);
    // START forgets every page, so the guest may free them afterwards.
    host.call(START, 0, 0);
    guest.free(c);
    assert!(violations(&w).is_empty());
}

#[test]
fn undefined_commands_are_violations() {
    let (w, mut host, _) = setup(HostSpec::default());
    host.call(START, 0x0E, 0);
    assert_eq!(host.call(5, 0, 0).status, 1);
    assert_eq!(host.call(10, 0, 0).status, 1);
    assert_eq!(host.call(77, 0, 0).status, 1);
    assert_eq!(violations(&w).len(), 3);
    assert_eq!(w.borrow().host.total_calls(), 4);
}

#[test]
fn a_2m_command_in_a_session_without_batched_is_a_violation() {
    // Guest-conformance rule: 2 MiB pages travel only in batches (Linux
    // vmballoon_send_start), and a guest without BATCHED has no batch page.
    let (w, mut host, mut guest) = setup(HostSpec {
        capabilities: Some(Capabilities::BASIC.union(Capabilities::BATCHED_2M)),
        max_balloon_percent: 0,
    });
    host.call(START, 0x0A, 0);
    let c = guest
        .allocate(vmballoon_core::units::PageSize::Large, 1)
        .unwrap();
    let pfn = guest.pfn(&c, 0).unwrap().get();
    let (r, _) = batch(&mut host, B2M_LOCK, &[pfn]);
    assert_eq!(r.status, 1, "CMD_INVALID");
    let v = violations(&w);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("without BATCHED"), "{v:?}");
    assert!(w.borrow().host.held_frames().is_zero());
    guest.free(c);
}

#[test]
fn a_target_limit_wider_than_32_bits_without_64_bit_targets_is_a_violation() {
    // Guest-conformance rule: Linux vmballoon_send_get_target refuses to send it.
    let (w, mut host, _) = setup(HostSpec::default());
    host.call(START, 0x0E, 0);
    host.call(TARGET, 1 << 32, 0);
    let v = violations(&w);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("wider than 32 bits"), "{v:?}");
    // With the capability it is fine.
    let (w, mut host, _) = setup(HostSpec {
        capabilities: Some(Capabilities::BASIC.union(Capabilities::TARGET_64BIT)),
        max_balloon_percent: 0,
    });
    host.call(START, 0x22, 0);
    assert_eq!(host.call(TARGET, 1 << 32, 0).status, OK);
    assert!(violations(&w).is_empty());
}

#[test]
fn per_entry_answers_are_injected_in_order() {
    let (w, mut host, mut guest) = setup(HostSpec::default());
    host.call(START, 0x0E, 0);
    {
        let mut wb = w.borrow_mut();
        wb.host
            .inject_entry_status(Status::PpnNotNeeded, 1, EntryDirection::Lock);
        wb.host
            .inject_entry_status(Status::Busy, 1, EntryDirection::Lock);
        wb.host
            .inject_entry_status(Status::Reset, 1, EntryDirection::Lock);
        wb.host.inject_refusals(1);
    }
    let c = guest
        .allocate(vmballoon_core::units::PageSize::Small, 6)
        .unwrap();
    let pfns: Vec<u64> = (0..6).map(|i| guest.pfn(&c, i).unwrap().get()).collect();
    let (r, st) = batch(&mut host, BLOCK, &pfns[..5]);
    assert_eq!(
        r.status, OK,
        "the call succeeds; the entries carry the answers"
    );
    assert_eq!(st, vec![6, 8, 7, 5, 0]);
    assert_eq!(w.borrow().host.held_frames().get(), 1);
    assert_eq!(
        w.borrow().host.resets_answered(),
        0,
        "a per-entry RESET is no reset"
    );
    assert_eq!(w.borrow().host.refused_pages(), 4);
    // Unlock answers: the page stays held.
    w.borrow_mut()
        .host
        .inject_entry_status(Status::Busy, 1, EntryDirection::Unlock);
    let (_, st) = batch(&mut host, BUNLOCK, &pfns[4..5]);
    assert_eq!(st, vec![8]);
    assert_eq!(w.borrow().host.held_frames().get(), 1);
    let (_, st) = batch(&mut host, BUNLOCK, &pfns[4..5]);
    assert_eq!(st, vec![0]);
    guest.free(c);
    assert!(violations(&w).is_empty(), "{:?}", violations(&w));
}

#[test]
fn a_single_page_reset_answer_is_a_real_reset() {
    // In single-page mode the page's answer is the call's status: RESET makes the host
    // forget every page and want START, so a guest that drops its pages is right.
    let (w, mut host, mut guest) = setup(HostSpec {
        capabilities: None,
        max_balloon_percent: 0,
    });
    host.call(START, 0, 0);
    let c = guest
        .allocate(vmballoon_core::units::PageSize::Small, 2)
        .unwrap();
    let pfns: Vec<u64> = (0..2).map(|i| guest.pfn(&c, i).unwrap().get()).collect();
    assert_eq!(host.call(LOCK, pfns[0], 0).status, OK);
    w.borrow_mut()
        .host
        .inject_entry_status(Status::Reset, 1, EntryDirection::Lock);
    assert_eq!(host.call(LOCK, pfns[1], 0).status, 7);
    assert_eq!(w.borrow().host.resets_answered(), 1);
    assert!(w.borrow().host.held_frames().is_zero(), "forgot every page");
    guest.free(c);
    assert_eq!(host.call(TARGET, 0, 0).status, 7, "only START now");
    assert_eq!(violations(&w).len(), 1);
}

#[test]
fn the_kth_lock_reply_carries_the_injected_target() {
    let (w, mut host, mut guest) = setup(HostSpec {
        capabilities: None,
        max_balloon_percent: 0,
    });
    host.call(START, 0, 0);
    w.borrow_mut().host.set_target(Frames::new(100));
    w.borrow_mut()
        .host
        .inject_target_after_locks(2, Frames::new(1));
    let c = guest
        .allocate(vmballoon_core::units::PageSize::Small, 3)
        .unwrap();
    let pfns: Vec<u64> = (0..3).map(|i| guest.pfn(&c, i).unwrap().get()).collect();
    assert_eq!(host.call(LOCK, pfns[0], 0).result, 100);
    assert_eq!(
        host.call(LOCK, pfns[1], 0).result,
        1,
        "the 2nd LOCK's reply"
    );
    assert_eq!(host.call(TARGET, 0, 0).result, 1, "and from then on");
    host.call(START, 0, 0);
    guest.free(c);
}
