use super::*;
use crate::host::{HostModel, HostSpec};
use crate::world::{SharedWorld, World};
use vmballoon_core::fake::ManualClock;
use vmballoon_core::mask::PageMask;
use vmballoon_core::platform::{PageAllocator, Shelf, StorePosition, UnitKind};
use vmballoon_core::units::{Frames, Instant, PageSize, Pfn};

const MIB: u64 = 256;

fn spec(ram_mib: u64, os_mib: u64, pagefile_mib: u64, committed_mib: u64) -> GuestSpec {
    GuestSpec {
        ram: Frames::from_mib(ram_mib),
        os_locked: Frames::from_mib(os_mib),
        pagefile: Frames::from_mib(pagefile_mib),
        committed: Frames::from_mib(committed_mib),
        layout: PageableLayout::Packed,
    }
}

fn t(s: u64) -> Instant {
    Instant::from_nanos(s * 1_000_000_000)
}

fn shared(g: GuestModel) -> SharedWorld {
    let ram = g.total();
    World::new(
        g,
        HostModel::new(HostSpec::default(), ram),
        ManualClock::new(),
    )
}

/// The world and a peer model's page lists.
fn world(g: GuestModel) -> (SharedWorld, PeerPages) {
    let w = shared(g);
    let guest = PeerPages::new(w.clone());
    (w, guest)
}

/// The world and vmballoon's platform.
fn units(g: GuestModel) -> (SharedWorld, FakeGuest) {
    let w = shared(g);
    let guest = FakeGuest::new(w.clone());
    (w, guest)
}

/// START, then LOCK of every frame of `pfns` as 4 KiB pages (one batch of at most 512).
fn host_takes(w: &SharedWorld, pfns: &[u64]) {
    let mut wb = w.borrow_mut();
    let World {
        guest: g,
        host,
        checker,
        ..
    } = &mut *wb;
    let mut page = vmballoon_core::protocol::BatchPage::zeroed();
    let batch = g.batch_page_pfn();
    host.handle(g, checker, (&mut page, batch), 0, 0x0E, 0);
    for (i, p) in pfns.iter().enumerate() {
        page.entries[i] = (p << 12).to_le();
    }
    let n = pfns.len() as u64;
    assert_eq!(
        host.handle(g, checker, (&mut page, batch), 6, batch, n)
            .status,
        0
    );
}

#[test]
fn a_partial_mdl_free_is_a_contract_violation() {
    let mut g = GuestModel::new(spec(64, 2, 64, 0));
    let req = MdlRequest {
        frames: 512,
        whole_blocks: false,
        prefer_contiguous: true,
        below: None,
    };
    let pfns = g.mdl_allocate(req).unwrap();
    assert_eq!(pfns.len(), 512);
    let charged = g.balloon_frames();
    // Half of it: refused, nothing freed.
    let e = g.mdl_free(&pfns[..256]).unwrap_err();
    assert!(e.contains("modified MDL"), "{e}");
    assert_eq!(g.balloon_frames(), charged);
    // The same length with other pages: refused too.
    let mut other = pfns.clone();
    other.swap(0, 511);
    other[0] = pfns[0];
    other[511] = 63 * 512;
    assert!(g.mdl_free(&other).unwrap_err().contains("modified MDL"));
    // The whole, untouched MDL: freed. Twice: refused.
    g.mdl_free(&pfns).unwrap();
    assert_eq!(g.balloon_frames(), Frames::ZERO);
    assert!(g.mdl_free(&pfns).unwrap_err().contains("freed twice"));
    assert_eq!(g.outstanding_mdls(), 0);
    assert_eq!(g.self_check(), Vec::<String>::new());
}

#[test]
fn units_are_whole_blocks_or_scattered_pages_and_go_back_whole() {
    let (w, mut guest) = units(GuestModel::new(spec(64, 3, 64, 0)));
    let block = guest.allocate_block().unwrap();
    assert_eq!(block.kind(), UnitKind::Block);
    assert_eq!(guest.frames(&block), Frames::new(512));
    let first = block.pfns()[0];
    assert_eq!(first % 512, 0, "2 MiB-aligned");
    assert!(
        block.pfns().windows(2).all(|p| p[1] == p[0] + 1),
        "contiguous"
    );
    // Scattered pages fill the OS's partly used block first (MM_ALLOCATE_PREFER_CONTIGUOUS).
    let small = guest.allocate_scattered(100).unwrap();
    assert!(small.pfns().iter().all(|&p| p < 4 * 512));
    assert_eq!(w.borrow().guest.outstanding_mdls(), 2);
    guest.free(block);
    guest.free(small);
    assert_eq!(w.borrow().guest.outstanding_mdls(), 0);
    assert_eq!(w.borrow().contract.count(), 0);
    assert_eq!(w.borrow().guest.self_check(), Vec::<String>::new());
}

#[test]
fn a_unit_freed_or_stored_against_the_host_is_a_contract_violation() {
    let (w, mut guest) = units(GuestModel::new(spec(64, 2, 64, 0)));
    let unit = guest.allocate_scattered(4).unwrap();
    let pfns = unit.pfns().to_vec();
    // Stored although the host holds none of it.
    guest.store(Shelf::Scattered, unit, StorePosition::First);
    assert_eq!(w.borrow().contract.count(), 1);
    let unit = guest.take(Shelf::Scattered).unwrap();
    // The host takes it; freeing it now is a breach, and so is parking it as not held.
    host_takes(&w, &pfns);
    guest.park(unit, PageMask::EMPTY);
    assert_eq!(w.borrow().contract.count(), 2);
    let (unit, _) = guest.unpark().unwrap();
    guest.free(unit);
    let wb = w.borrow();
    assert_eq!(wb.contract.count(), 3);
    assert!(
        wb.contract
            .violations()
            .iter()
            .any(|v| v.message.contains("while the host still holds"))
    );
    assert_eq!(wb.checker.count(), 0, "the host saw nothing wrong");
}

#[test]
fn boot_accounting_follows_windows_memory_md() {
    let g = GuestModel::new(spec(4096, 300, 4096, 1024));
    assert_eq!(g.total().mib_floor(), 4096);
    // Pageable memory is not charged to resident available; the OS is.
    assert_eq!(g.resident_available().mib_floor(), 4096 - 300);
    assert_eq!(g.available().mib_floor(), 4096 - 300 - 1024);
    assert_eq!(g.commit_limit().mib_floor(), 8192);
    assert_eq!(g.committed().mib_floor(), 1024 + 300);
    assert_eq!(g.pinned().mib_floor(), 300);
    assert!(!g.low_memory());
    assert_eq!(g.self_check(), Vec::<String>::new());
    // The batch page is an OS frame.
    assert_eq!(g.owner_of(g.batch_page_pfn()), Some(Owner::Os));
}

#[test]
fn low_memory_thresholds_follow_the_documented_defaults() {
    // "approximately 32 MB per 4 GB, to a maximum of 64 MB"; high = 3x low.
    let low = |ram| {
        GuestModel::new(spec(ram, 0, 0, 0))
            .low_threshold()
            .mib_floor()
    };
    assert_eq!(low(2048), 16);
    assert_eq!(low(4096), 32);
    assert_eq!(low(8192), 64);
    assert_eq!(low(16384), 64);
    let g = GuestModel::new(spec(4096, 0, 0, 0));
    assert_eq!(g.high_threshold().mib_floor(), 96);
}

#[test]
fn pinning_charges_resident_available_and_commit_by_kind() {
    let mut g = GuestModel::new(spec(4096, 300, 4096, 0));
    assert_eq!(
        g.lock("sql", PinKind::Awe, Frames::from_mib(2048), t(0)),
        Outcome::Granted
    );
    assert_eq!(g.resident_available().mib_floor(), 4096 - 300 - 2048);
    assert_eq!(g.committed().mib_floor(), 300 + 2048);
    assert_eq!(g.pinned().mib_floor(), 2348);
    let snap = g.snapshot();
    assert_eq!(snap.pinned.awe, Some(Frames::from_mib(2048)));
    assert_eq!(snap.pinned.os_nonpaged, Some(Frames::from_mib(300)));
    assert_eq!(snap.pinned.virtual_lock, Some(Frames::ZERO));
    assert!(g.release("sql"));
    assert_eq!(g.resident_available().mib_floor(), 4096 - 300);
    assert_eq!(g.committed().mib_floor(), 300);
    assert!(!g.release("sql"), "released twice");
    assert_eq!(g.self_check(), Vec::<String>::new());
}

#[test]
fn a_pinned_request_trims_pageable_memory_it_needs() {
    // 1024 MiB free after the OS, all of it taken by pageable memory.
    let mut g = GuestModel::new(spec(2048, 1024, 2048, 1024));
    assert_eq!(g.available(), Frames::ZERO);
    assert_eq!(
        g.lock("a", PinKind::VirtualLock, Frames::from_mib(512), t(0)),
        Outcome::Granted
    );
    assert_eq!(g.pageable_resident().mib_floor(), 512);
    // Commit is kept: the trimmed pages are in the page file.
    assert_eq!(g.committed().mib_floor(), 1024 + 1024 + 512);
    assert_eq!(g.self_check(), Vec::<String>::new());
}

#[test]
fn failed_requests_count_once_per_attempt_and_retry_every_second() {
    let mut g = GuestModel::new(spec(1024, 100, 1024, 0));
    assert_eq!(
        g.lock("big", PinKind::VirtualLock, Frames::from_mib(2000), t(3)),
        Outcome::Failed
    );
    assert_eq!(g.alloc_failures(), 1);
    assert_eq!(g.next_retry(), Some(t(4)));
    g.retry_due(t(3)); // not due yet
    assert_eq!(g.alloc_failures(), 1);
    g.retry_due(t(4));
    assert_eq!(g.alloc_failures(), 2);
    assert_eq!(g.next_retry(), Some(t(5)));
    // Released while pending: cancelled, never retried again.
    assert!(g.release("big"));
    assert_eq!(g.next_retry(), None);
    // A request that fits once memory is freed succeeds on its retry.
    assert_eq!(
        g.lock("x", PinKind::Awe, Frames::from_mib(900), t(10)),
        Outcome::Granted
    );
    assert_eq!(
        g.lock("y", PinKind::Awe, Frames::from_mib(100), t(10)),
        Outcome::Failed
    );
    assert!(g.release("x"));
    g.retry_due(t(11));
    assert_eq!(g.next_retry(), None);
    assert_eq!(g.alloc_failures(), 3);
    assert_eq!(g.self_check(), Vec::<String>::new());
}

#[test]
fn pageable_commit_fails_only_on_the_commit_limit() {
    let mut g = GuestModel::new(spec(1024, 100, 0, 0));
    // Commit limit = RAM (no page file): 924 MiB of commit left.
    assert_eq!(g.commit("a", Frames::from_mib(900), t(0)), Outcome::Granted);
    assert_eq!(g.commit("b", Frames::from_mib(100), t(0)), Outcome::Failed);
    assert_eq!(g.alloc_failures(), 1);
    // More pageable commit than free RAM is fine with a page file.
    let mut g = GuestModel::new(spec(1024, 100, 4096, 0));
    assert_eq!(
        g.commit("a", Frames::from_mib(3000), t(0)),
        Outcome::Granted
    );
    assert_eq!(g.pageable_resident().mib_floor(), 924);
    assert_eq!(g.available(), Frames::ZERO);
    assert!(g.low_memory());
    // The working-set manager trims aged pages to the modified list, at most RAM/32 a
    // pass; the modified page writer makes them available (standby) as it writes them.
    g.balance_at(t(0));
    assert_eq!(g.modified_frames(), Frames::ZERO, "too young to trim");
    g.balance_at(t(1));
    assert_eq!(g.modified_frames(), g.high_threshold());
    assert_eq!(g.available(), Frames::ZERO, "not available until written");
    g.balance_at(t(2));
    assert_eq!(g.standby_frames(), g.high_threshold());
    assert_eq!(g.available(), g.high_threshold());
    assert!(!g.low_memory());
    assert_eq!(g.self_check(), Vec::<String>::new());
}

#[test]
fn mdl_allocation_charges_the_full_request_up_front() {
    let (w, mut guest) = world(GuestModel::new(spec(1024, 100, 1024, 0)));
    // 924 MiB resident available. Ask 512 pages: fine.
    let c = guest.allocate(PageSize::Small, 512).unwrap();
    assert_eq!(guest.page_count(&c), 512);
    assert_eq!(w.borrow().guest.resident_available().get(), 924 * MIB - 512);
    assert_eq!(w.borrow().guest.committed().get(), 100 * MIB + 512);
    guest.free(c);
    // Pin all but 100 frames of resident available: a 512-page request is refused whole
    // (the charge fails) even though 100 frames are free.
    let left = 924 * MIB - 100;
    w.borrow_mut()
        .guest
        .lock("p", PinKind::Awe, Frames::new(left), t(0));
    assert!(guest.allocate(PageSize::Small, 512).is_none());
    let c = guest.allocate(PageSize::Small, 100).unwrap();
    assert_eq!(guest.page_count(&c), 100);
    assert!(guest.allocate(PageSize::Small, 1).is_none());
    guest.free(c);
    assert_eq!(w.borrow().guest.self_check(), Vec::<String>::new());
    assert_eq!(w.borrow().checker.count(), 0);
}

#[test]
fn short_allocation_when_fewer_free_frames_than_asked() {
    let (w, mut guest) = world(GuestModel::new(spec(1024, 100, 4096, 0)));
    // Pageable memory fills all but 1 MiB of RAM; resident available stays high.
    w.borrow_mut()
        .guest
        .commit("apps", Frames::from_mib(923), t(0));
    let c = guest.allocate(PageSize::Small, 512).unwrap();
    assert_eq!(guest.page_count(&c), 256, "short: only the free frames");
    assert!(
        guest.allocate(PageSize::Small, 1).is_none(),
        "no free frame left"
    );
    guest.free(c);
}

#[test]
fn large_pages_need_whole_free_blocks_and_are_aligned() {
    // 64 MiB = 32 blocks. The OS takes block 0 and half of block 1; 8 MiB of pageable
    // memory (not charged to resident available) fills the rest of block 1, blocks 2-4
    // and half of block 5: 26 whole free blocks, 61 MiB resident available.
    let (w, mut guest) = world(GuestModel::new(spec(64, 3, 64, 8)));
    assert_eq!(w.borrow().guest.whole_free_blocks(), 26);
    // The charge (the full request) fits: a short chunk of the 26 whole blocks.
    let c = guest.allocate(PageSize::Large, 28).unwrap();
    assert_eq!(guest.page_count(&c), 26);
    for i in 0..26 {
        let pfn = guest.pfn(&c, i).unwrap();
        assert!(pfn.is_aligned_to(PageSize::Large));
        assert!(pfn.get() >= 6 * 512);
    }
    // No whole free block left: fails fast, although 4 KiB pages remain.
    assert!(guest.allocate(PageSize::Large, 1).is_none());
    let small = guest.allocate(PageSize::Small, 256).unwrap();
    assert_eq!(guest.page_count(&small), 256);
    // Resident available covers another request, but no frame is free: nothing.
    assert!(guest.allocate(PageSize::Small, 512).is_none());
    let (calls, failures) = w.borrow().guest.mdl_calls();
    assert_eq!((calls, failures), ([2, 2], [1, 1]));
    guest.free(c);
    guest.free(small);
    assert_eq!(w.borrow().guest.self_check(), Vec::<String>::new());
}

#[test]
fn small_pages_fill_the_most_used_block_first() {
    let (w, mut guest) = world(GuestModel::new(spec(16, 1, 16, 0)));
    // Block 0 has 256 OS frames: it is partially used, so it is filled first.
    let c = guest.allocate(PageSize::Small, 300).unwrap();
    let pfns: Vec<u64> = (0..300).map(|i| guest.pfn(&c, i).unwrap().get()).collect();
    assert!(pfns[..256].iter().all(|&p| p < 512), "block 0 first");
    assert!(pfns[256..].iter().all(|&p| (512..1024).contains(&p)));
    assert_eq!(w.borrow().guest.whole_free_blocks(), 6);
    guest.free(c);
    assert_eq!(w.borrow().guest.whole_free_blocks(), 7);
}

#[test]
fn balloon_fragmentation_can_fail_large_pages_with_memory_free() {
    // A guest whose pageable memory is scattered over every block: 4 KiB balloon pages then
    // land in every block, and once the pageable memory is gone, plenty of memory is free
    // but no 2 MiB block is whole: a large-page request fails (docs/scenario-format.md).
    let mut s = spec(256, 2, 256, 64);
    s.layout = PageableLayout::Scattered;
    let (w, mut guest) = world(GuestModel::new(s));
    assert_eq!(w.borrow().guest.whole_free_blocks(), 0);
    assert!(
        guest.allocate(PageSize::Large, 1).is_none(),
        "FAST_LARGE_PAGES fails fast"
    );
    let mut chunks = Vec::new();
    while let Some(c) = guest.allocate(PageSize::Small, 512) {
        chunks.push(c);
    }
    {
        let mut w = w.borrow_mut();
        assert!(w.guest.release("(boot)"));
        assert!(w.guest.resident_available().mib_floor() >= 64);
        assert_eq!(w.guest.large_page_blocks(), 0);
        assert_eq!(
            w.guest
                .lock("lp", PinKind::LargePages, Frames::from_mib(4), t(0)),
            Outcome::Failed
        );
        // A 4 KiB kind of the same size succeeds.
        assert_eq!(
            w.guest
                .lock("vl", PinKind::VirtualLock, Frames::from_mib(4), t(0)),
            Outcome::Granted
        );
    }
    for c in chunks {
        guest.free(c);
    }
    assert_eq!(w.borrow().guest.self_check(), Vec::<String>::new());
}

#[test]
fn large_pages_page_out_pageable_memory_but_not_locked_pages() {
    let mut g = GuestModel::new(spec(64, 2, 64, 40));
    // Pageable memory (movable) does not stop large pages.
    assert_eq!(
        g.lock("lp", PinKind::LargePages, Frames::from_mib(30), t(0)),
        Outcome::Granted
    );
    assert_eq!(g.pinned().mib_floor(), 2 + 30);
    assert_eq!(g.self_check(), Vec::<String>::new());
    // Rounded up to whole blocks.
    assert_eq!(
        g.lock("odd", PinKind::LargePages, Frames::from_mib(1), t(0)),
        Outcome::Granted
    );
    assert_eq!(g.pinned().mib_floor(), 2 + 30 + 2);
}

#[test]
fn retain_keeps_holds_and_frees_and_the_checker_sees_frees_of_held_pages() {
    let (w, mut guest) = world(GuestModel::new(spec(64, 2, 64, 0)));
    let mut chunk = guest.allocate(PageSize::Small, 4).unwrap();
    let pfns: Vec<u64> = (0..4)
        .map(|i| guest.pfn(&chunk, i).unwrap().get())
        .collect();
    {
        // The host takes every page (START, then one BATCHED_LOCK).
        let mut wb = w.borrow_mut();
        let World {
            guest: g,
            host,
            checker,
            ..
        } = &mut *wb;
        let mut page = vmballoon_core::protocol::BatchPage::zeroed();
        let batch = g.batch_page_pfn();
        host.handle(g, checker, (&mut page, batch), 0, 0x0E, 0);
        for (i, p) in pfns.iter().enumerate() {
            page.entries[i] = (p << 12).to_le();
        }
        assert_eq!(
            host.handle(g, checker, (&mut page, batch), 6, batch, 4)
                .status,
            0
        );
    }
    guest.store(chunk, StorePosition::First);
    assert_eq!(w.borrow().checker.count(), 0);
    chunk = guest.take(PageSize::Small).unwrap();
    assert!(guest.take(PageSize::Small).is_none());
    assert!(guest.take(PageSize::Large).is_none());
    // Keep page 0, hold page 1, free pages 2 and 3, which the host still holds: each
    // free is a violation (and so is holding a page the host holds).
    let mut keep = PageMask::EMPTY;
    keep.insert(0);
    let mut hold = PageMask::EMPTY;
    hold.insert(1);
    guest.retain(&mut chunk, &keep, &hold);
    assert_eq!(guest.page_count(&chunk), 1);
    assert_eq!(guest.pfn(&chunk, 0).map(Pfn::get), Some(pfns[0]));
    {
        let wb = w.borrow();
        assert_eq!(wb.checker.count(), 3);
        let msgs: Vec<&str> = wb
            .checker
            .violations()
            .iter()
            .map(|v| v.message.as_str())
            .collect();
        assert!(
            msgs.iter()
                .filter(|m| m.contains("while the host still holds it"))
                .count()
                == 2
        );
        assert!(msgs.iter().any(|m| m.contains("held pfn")));
        assert_eq!(wb.guest.balloon_frames().get(), 2);
        assert_eq!(wb.guest.owner_of(pfns[1]), Some(Owner::HeldRefused));
        assert_eq!(wb.guest.owner_of(pfns[2]), Some(Owner::Free));
    }
    guest.free_refused();
    assert_eq!(w.borrow().guest.balloon_frames().get(), 1);
    guest.free(chunk);
    assert_eq!(w.borrow().guest.balloon_frames().get(), 0);
    assert_eq!(w.borrow().guest.self_check(), Vec::<String>::new());
}

#[test]
fn store_positions_order_take() {
    let (w, mut guest) = world(GuestModel::new(spec(64, 2, 64, 0)));
    let a = guest.allocate(PageSize::Small, 1).unwrap();
    let b = guest.allocate(PageSize::Small, 1).unwrap();
    let c = guest.allocate(PageSize::Small, 1).unwrap();
    let (pa, pb, pc) = (guest.pfn(&a, 0), guest.pfn(&b, 0), guest.pfn(&c, 0));
    // The host holds none of them: storing is a contract violation, recorded, not fatal.
    guest.store(a, StorePosition::First);
    guest.store(b, StorePosition::Last);
    guest.store(c, StorePosition::First);
    assert_eq!(w.borrow().checker.count(), 3);
    assert_eq!(w.borrow().guest.stored_frames().get(), 3);
    let mut order = Vec::new();
    while let Some(ch) = guest.take(PageSize::Small) {
        order.push(guest.pfn(&ch, 0));
        guest.free(ch);
    }
    assert_eq!(order, vec![pc, pa, pb]);
    assert_eq!(w.borrow().guest.stored_frames(), Frames::ZERO);
}

#[test]
fn dropped_chunks_are_counted() {
    let (w, mut guest) = world(GuestModel::new(spec(64, 2, 64, 0)));
    let c = guest.allocate(PageSize::Small, 3).unwrap();
    drop(c);
    assert_eq!(w.borrow().guest.dropped_frames().get(), 3);
    assert_eq!(
        w.borrow().guest.balloon_frames().get(),
        3,
        "still charged: leaked"
    );
}

#[test]
fn spec_validation() {
    assert!(GuestModel::validate(&spec(4096, 300, 0, 0)).is_ok());
    assert!(GuestModel::validate(&spec(0, 0, 0, 0)).is_err());
    assert!(GuestModel::validate(&spec(4095, 0, 0, 0)).is_err());
    assert!(GuestModel::validate(&spec(4096, 4096, 0, 0)).is_err());
    assert!(GuestModel::validate(&spec(128 * 1024, 0, 0, 0)).is_err());
}

// ---- trimming, the modified list and standby (docs/windows-memory.md §3.6) -----------------

/// A 1 GiB guest whose pageable memory fills RAM: 100 MiB OS, 924 MiB resident pageable
/// of 2000 MiB committed, nothing available.
fn full_of_pageable(pagefile_mib: u64) -> GuestModel {
    let mut g = GuestModel::new(spec(1024, 100, pagefile_mib, 0));
    let want = if pagefile_mib == 0 { 900 } else { 2000 };
    assert_eq!(
        g.commit("app", Frames::from_mib(want), t(0)),
        Outcome::Granted
    );
    g
}

#[test]
fn trimmed_private_pages_wait_on_the_modified_list_until_written() {
    let mut g = full_of_pageable(4096);
    assert_eq!(g.available(), Frames::ZERO);
    g.balance_at(t(1));
    let trimmed = g.modified_frames();
    assert!(!trimmed.is_zero());
    assert_eq!(g.available(), Frames::ZERO, "dirty pages are not available");
    assert_eq!(g.resident_available().mib_floor(), 924, "still resident");
    // The writer writes 128 MiB/s: after 10 ms, 1.28 MiB (327 pages) are standby.
    g.balance_at(Instant::from_nanos(1_010_000_000));
    assert_eq!(g.standby_frames().get(), 128 * 1024 * 1024 / 100 / 4096);
    assert_eq!(g.available(), g.standby_frames(), "standby is available");
    assert_eq!(g.self_check(), Vec::<String>::new());
}

#[test]
fn standby_pages_are_available_and_repurposed_after_free_pages() {
    let mut g = full_of_pageable(4096);
    g.balance_at(t(1));
    g.balance_at(t(2));
    let standby = g.standby_frames();
    assert_eq!(
        standby,
        g.high_threshold(),
        "trimmed back to the high threshold"
    );
    // Free 8 MiB: an allocation takes the free pages first, then standby pages.
    g.release("app");
    let mut g = full_of_pageable(4096);
    g.balance_at(t(1));
    g.balance_at(t(2));
    g.lock("pin", PinKind::Awe, Frames::from_mib(8), t(2));
    assert_eq!(
        g.standby_frames(),
        standby.saturating_sub(Frames::from_mib(8)),
        "no free page: repurposed standby pages"
    );
    assert_eq!(g.self_check(), Vec::<String>::new());
}

#[test]
fn without_a_page_file_private_pages_are_never_trimmed() {
    let mut g = full_of_pageable(0);
    let resident = g.pageable_resident();
    for s in 1..10 {
        g.balance_at(t(s));
    }
    assert_eq!(g.pageable_resident(), resident);
    assert!(g.modified_frames().is_zero() && g.standby_frames().is_zero());
    // A lock that may wait for trimming still finds nothing to trim.
    let free = g.available();
    assert_eq!(
        g.lock(
            "vl",
            PinKind::VirtualLock,
            free.saturating_add(Frames::new(1)),
            t(10)
        ),
        Outcome::Failed
    );
    assert_eq!(
        g.lock("vl2", PinKind::VirtualLock, free, t(10)),
        Outcome::Granted
    );
}

#[test]
fn trimming_takes_the_least_recently_used_pages_and_is_bounded_per_pass() {
    // "old" becomes resident at 0 s, "new" at 5 s; a pass at 5.5 s may trim only "old"
    // (the pages of "new" are younger than TRIM_MIN_AGE), at most RAM/32 of it.
    let mut g = GuestModel::new(spec(1024, 100, 4096, 0));
    g.commit("old", Frames::from_mib(400), t(0));
    g.commit("new", Frames::from_mib(524), t(5));
    assert_eq!(g.available(), Frames::ZERO);
    g.advance(Instant::from_nanos(5_500_000_000));
    g.balance_at(Instant::from_nanos(5_500_000_000));
    let per_pass = Frames::from_mib(1024 / 32);
    assert_eq!(g.modified_frames(), per_pass.min(g.high_threshold()));
    let k_old = g.find("old").unwrap();
    let k_new = g.find("new").unwrap();
    let old_resident = g.requests.get(k_old).unwrap().resident;
    let new_resident = g.requests.get(k_new).unwrap().resident;
    assert_eq!(
        new_resident,
        Frames::from_mib(524).get(),
        "young pages stay"
    );
    assert_eq!(
        old_resident,
        Frames::from_mib(400).get() - g.modified_frames().get()
    );
}

#[test]
fn allocations_that_cannot_wait_take_available_pages_only() {
    for kind in [PinKind::Awe, PinKind::DriverLocked, PinKind::NonpagedPool] {
        let mut g = full_of_pageable(4096);
        assert_eq!(
            g.lock("x", kind, Frames::from_mib(8), t(0)),
            Outcome::Failed
        );
        assert_eq!(
            g.modified_frames(),
            Frames::ZERO,
            "{kind:?}: no synchronous trim"
        );
        // The shortfall makes the next working-set pass trim for it (above the high
        // threshold), and the retry a second later finds the pages written.
        g.balance_at(t(1));
        assert_eq!(
            g.modified_frames(),
            g.high_threshold().saturating_add(Frames::from_mib(8))
        );
        g.balance_at(t(2));
        g.retry_due(t(2));
        assert_eq!(g.alloc_failures(), 1, "{kind:?}");
        assert!(matches!(
            g.requests().find(|r| r.0 == "x").map(|r| r.3),
            Some(RequestState::Active)
        ));
    }
}

#[test]
fn allocations_that_wait_trim_and_write_what_they_need() {
    for kind in [PinKind::VirtualLock, PinKind::ProbeAndLock] {
        let mut g = full_of_pageable(4096);
        assert_eq!(
            g.lock("x", kind, Frames::from_mib(64), t(0)),
            Outcome::Granted,
            "{kind:?}"
        );
        assert_eq!(g.pageable_resident().mib_floor(), 924 - 64);
    }
}

#[test]
fn a_partial_ok_request_keeps_a_short_grant_and_fails_only_when_empty() {
    let mut g = full_of_pageable(4096);
    g.balance_at(t(1));
    g.balance_at(t(2));
    let avail = g.available();
    assert!(!avail.is_zero());
    let ask = avail.saturating_add(Frames::from_mib(4));
    assert_eq!(
        g.lock_partial("awe", PinKind::Awe, ask, true, t(2)),
        Outcome::Partial
    );
    assert_eq!((g.alloc_failures(), g.short_grants()), (0, 1));
    assert_eq!(g.available(), Frames::ZERO, "took what there was");
    // Nothing available at the retry: an empty grant is a failure.
    g.retry_due(t(3));
    assert_eq!((g.alloc_failures(), g.short_grants()), (1, 1));
    // Release while pending frees the partial grant.
    g.release("awe");
    assert_eq!(g.available(), avail);
    // partial_ok is ignored for kinds that cannot be granted partially.
    assert_eq!(
        g.lock_partial(
            "vl",
            PinKind::VirtualLock,
            Frames::from_mib(2000),
            true,
            t(3)
        ),
        Outcome::Failed
    );
    assert_eq!(g.self_check(), Vec::<String>::new());
}

#[test]
fn probe_and_lock_is_charged_to_resident_available_only() {
    let mut g = GuestModel::new(spec(1024, 100, 1024, 0));
    let (ra, c) = (g.resident_available(), g.committed());
    g.lock("io", PinKind::ProbeAndLock, Frames::from_mib(64), t(0));
    assert_eq!(
        g.resident_available(),
        ra.saturating_sub(Frames::from_mib(64))
    );
    assert_eq!(g.committed(), c);
    g.lock("dma", PinKind::DriverLocked, Frames::from_mib(64), t(0));
    assert_eq!(g.committed(), c.saturating_add(Frames::from_mib(64)));
}

#[test]
fn mdl_pages_go_first_fit_without_prefer_contiguous_and_best_fit_with_it() {
    // Block 0 is the OS's; a partly used block (21) high up, every block below it whole:
    // first fit takes the lowest free frame, only best fit prefers the partly used block.
    let mut g = GuestModel::new(spec(64, 2, 64, 0));
    g.lock("low", PinKind::VirtualLock, Frames::new(512 * 20), t(0));
    g.lock("dot", PinKind::VirtualLock, Frames::new(2), t(0));
    g.release("low");
    let dot_block = 21;
    let ff = g
        .mdl_allocate(MdlRequest {
            frames: 1,
            whole_blocks: false,
            prefer_contiguous: false,
            below: None,
        })
        .unwrap();
    assert_eq!(ff[0] / 512, 1, "first fit: the lowest free frame");
    let bf = g
        .mdl_allocate(MdlRequest {
            frames: 1,
            whole_blocks: false,
            prefer_contiguous: true,
            below: None,
        })
        .unwrap();
    assert_eq!(bf[0] / 512, dot_block, "best fit: the partly used block");
}

#[test]
fn not_charged_accounting_leaves_resident_available_and_commit_alone() {
    let s = spec(1024, 100, 1024, 0);
    let (w, mut guest) = world(GuestModel::new(s).with_mdl_accounting(MdlAccounting::NotCharged));
    let (ra, c, a) = {
        let g = &w.borrow().guest;
        (g.resident_available(), g.committed(), g.available())
    };
    let chunk = guest.allocate(PageSize::Small, 512).unwrap();
    {
        let g = &w.borrow().guest;
        assert_eq!(g.resident_available(), ra);
        assert_eq!(g.committed(), c);
        assert_eq!(
            g.available(),
            a.saturating_sub(Frames::new(512)),
            "the pages left the free lists"
        );
    }
    guest.free(chunk);
    let (w, mut guest) = world(GuestModel::new(s).with_mdl_accounting(MdlAccounting::Charged));
    let chunk = guest.allocate(PageSize::Small, 512).unwrap();
    assert_eq!(
        w.borrow().guest.resident_available(),
        ra.saturating_sub(Frames::new(512))
    );
    guest.free(chunk);
}
