//! [`OvtClassicDriver`]: open-vm-tools' shared `modules/shared/vmmemctl/vmballoon.c`, the
//! classic VMware balloon with adaptive rates (`protocol.md` §7; the same design as
//! LNX-old, §6.1), ported to the simulated Windows guest.
//!
//! Every second (§7 "Polling"): reset if required, TARGET, then `BalloonAdjustSize`: inflate
//! while the balloon is below the target; deflate only when the target is 0 or the balloon
//! exceeds it by more than [`HYSTERESIS_FRAMES`] (§7 "Hysteresis").
//!
//! * **Inflate** (§7 "Inflate"), counting *entries* (a 2 MiB page is one allocation):
//!   1. start with LPAGE (2 MiB, no sleep) when 2 MiB pages were granted, else NOSLEEP
//!      (4 KiB, no sleep); 2 MiB pages only while a whole one still fits below the target
//!      ("keeps pending entries from overshooting target − size"), then 4 KiB;
//!   2. per-tick cap [`NOSLEEP_ALLOC_MAX`] entries, or `rateAlloc` while slow cycles are
//!      pending (the slow-cycle counter drops by one per inflating tick);
//!   3. LPAGE failure: lock what was allocated, go on with NOSLEEP (fragmentation is not
//!      pressure);
//!   4. NOSLEEP failure: [`SLOW_PAGE_ALLOCATION_CYCLES`] slow cycles; stop if `rateAlloc`
//!      allocations were made already, else switch to CANSLEEP with cap `rateAlloc`;
//!   5. CANSLEEP failure: `rateAlloc` = max(`rateAlloc` / 2, [`RATE_ALLOC_MIN`]), stop;
//!   6. after a cycle without allocation failure that made at least `rateAlloc`
//!      allocations: `rateAlloc` += [`RATE_ALLOC_INC`] × (allocations / `rateAlloc`), at
//!      most [`RATE_ALLOC_MAX`].
//!
//!   Both rates start at their maximum. Pages are locked in batches of 512 entries (one
//!   call), or one LOCK per page without batching.
//! * **Lock results** (§7 "Lock results"): batched, per entry, PPN_PINNED / PPN_INVALID go
//!   to the error list (at most [`BALLOON_ERROR_PAGES`] per page size, the rest freed),
//!   anything else is freed; a whole-batch failure frees the batch and stops. Without
//!   batching the first refused page is kept as an error page and stops the inflation.
//!   PPN_NOTNEEDED frees the page and stops (§3). Error pages are freed at the end of every
//!   inflate.
//! * **Deflate** (§7 "Deflate"): 4 KiB pages first, then 2 MiB pages, each at most
//!   `rateFree` pages of that size per tick (2 MiB pages only while a whole one is above
//!   the target, unless the target is 0), in batches of 512. A clean pass adds
//!   [`RATE_FREE_INC`] to `rateFree` (at most [`RATE_FREE_MAX`]); an UNLOCK failure halves
//!   it (at least [`RATE_FREE_MIN`]), re-stores the page and stops.
//! * **Reset** (§7 "Reset"): free everything without UNLOCK, START, batch page (START(0)
//!   on failure), GUEST_ID; the tick then goes on with TARGET.
//! * **Unload** (§7 "Cleanup"): START with its normal capabilities (which resets the
//!   session) *then* free every page.
//!
//! **CANSLEEP on this guest.** OVT's CANSLEEP allocation may block and reclaim. The
//! simulated guest models it as an allocation that, when free frames run short, waits for
//! the working-set manager to page out resident pageable memory
//! ([`PeerPages::allocate_waiting`], like `MM_ALLOCATE_TRIM_IF_NECESSARY`,
//! `windows-memory.md` §1.2), charged one 10 ms wait plus the page-outs by the cost model.
//! It still fails when resident available memory or commit cannot cover the request.
//!
//! Port details: START asks for `0x0E` (BASIC | BATCHED | BATCHED_2M: OVT on a 64-bit
//! Linux or macOS, §4 table); 2 MiB pages are used only with batching (the core's session
//! rule; OVT checks the 2M bit alone, a difference only on a host granting 2M without
//! batching); GUEST_ID sends the Windows value; the yield every
//! `BALLOON_ALLOC_YIELD_THRESHOLD` allocations costs nothing here.

use vmballoon_core::channel::{Channel, Direction};
use vmballoon_core::mask::PageMask;
use vmballoon_core::platform::StorePosition;
use vmballoon_core::policy::ClampReason;
use vmballoon_core::protocol::{BATCH_CAPACITY, Backdoor, Capabilities, LockMode};
use vmballoon_core::units::{Duration, Frames, PageSize};

use super::{Alloc, Held, allocate_pages, dequeue, keep_or_free, pop_all};
use crate::driver::{BalloonDriver, DriverKind, DriverTick};
use crate::guest::{GuestChunk, PeerPages};
use crate::host::FakeHost;

/// `BALLOON_POLL_PERIOD`: one second (`protocol.md` §7 "Polling").
pub const POLL: Duration = Duration::from_secs(1);
/// `BALLOON_NOSLEEP_ALLOC_MAX`: entries per tick without memory pressure (§7 constants).
pub const NOSLEEP_ALLOC_MAX: u64 = 16_384;
/// `BALLOON_RATE_ALLOC_MIN` (§7 constants).
pub const RATE_ALLOC_MIN: u64 = 512;
/// `BALLOON_RATE_ALLOC_MAX` (§7 constants); `rateAlloc` starts here.
pub const RATE_ALLOC_MAX: u64 = 2_048;
/// `BALLOON_RATE_ALLOC_INC` (§7 constants).
pub const RATE_ALLOC_INC: u64 = 16;
/// `BALLOON_RATE_FREE_MIN` (§7 constants).
pub const RATE_FREE_MIN: u64 = 512;
/// `BALLOON_RATE_FREE_MAX` (§7 constants); `rateFree` starts here.
pub const RATE_FREE_MAX: u64 = 16_384;
/// `BALLOON_RATE_FREE_INC` (§7 constants).
pub const RATE_FREE_INC: u64 = 16;
/// `SLOW_PAGE_ALLOCATION_CYCLES` (§7 constants).
pub const SLOW_PAGE_ALLOCATION_CYCLES: u32 = 4;
/// `BALLOON_ERROR_PAGES`: refused pages kept per page size per inflate (§7 constants).
pub const BALLOON_ERROR_PAGES: usize = 16;
/// `BalloonAdjustSize`'s hysteresis: deflate only above target + 511 frames (§7).
pub const HYSTERESIS_FRAMES: u64 = 511;
/// What OVT requests in START on a 64-bit Linux or macOS guest (§4 table).
pub const CAPABILITIES: Capabilities = Capabilities::from_bits(0x0E);

/// OVT's allocation types (§7 constants: LPAGE, NOSLEEP, CANSLEEP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AllocType {
    /// 2 MiB, no sleep.
    Lpage,
    /// 4 KiB, no sleep.
    NoSleep,
    /// 4 KiB, may sleep (wait for the working-set manager here).
    CanSleep,
}

/// Counters of the OVT model (its `BalloonStats` names, §7 "Stats").
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    timer: u64,
    start: u64,
    prim_alloc: [u64; 3],
    prim_alloc_fail: [u64; 3],
    error_pages: [u64; 2],
    locked: [u64; 2],
    unlocked: [u64; 2],
    unlock_fail: u64,
    popped_frames: u64,
}

fn bump(a: &mut [u64], i: usize, n: u64) {
    if let Some(v) = a.get_mut(i) {
        *v = v.saturating_add(n);
    }
}

/// The classic open-vm-tools balloon. See the [module docs](self).
pub struct OvtClassicDriver {
    channel: Channel<FakeHost>,
    guest: PeerPages,
    held: Held,
    rate_alloc: u64,
    rate_free: u64,
    slow_cycles: u32,
    stats: Stats,
}

/// One inflate's error pages, per page size.
#[derive(Default)]
struct ErrorPages([Option<GuestChunk>; 2]);

impl OvtClassicDriver {
    /// The OVT balloon over `host` and `guest`.
    #[must_use]
    pub fn new(host: FakeHost, guest: PeerPages) -> Self {
        Self {
            channel: Channel::new(host),
            guest,
            held: Held::default(),
            rate_alloc: RATE_ALLOC_MAX,
            rate_free: RATE_FREE_MAX,
            slow_cycles: 0,
            stats: Stats::default(),
        }
    }

    fn batched(&self) -> bool {
        self.channel
            .session()
            .is_some_and(|s| s.mode == LockMode::Batched)
    }

    /// The reset (§7 "Reset"). Returns whether a session is running.
    fn reset(&mut self) -> bool {
        self.stats.popped_frames = self
            .stats
            .popped_frames
            .saturating_add(pop_all(&mut self.guest));
        self.held.clear();
        self.stats.start = self.stats.start.saturating_add(1);
        let Ok(session) = self.channel.start(CAPABILITIES) else {
            return false;
        };
        if session.mode == LockMode::Batched && self.channel.backdoor_mut().batch_page().is_none() {
            let _ = self.channel.stop();
            return false;
        }
        self.channel.finish_reset();
        let _ = self.channel.guest_id();
        !self.channel.reset_pending()
    }

    /// Keeps `chunk` as error pages up to [`BALLOON_ERROR_PAGES`] of its size; frees the
    /// rest.
    fn keep_errors(&mut self, errors: &mut ErrorPages, mut chunk: GuestChunk) {
        let size = chunk.size();
        let Some(slot) = errors.0.get_mut(size.index()) else {
            self.guest.free(chunk);
            return;
        };
        let have = slot.as_ref().map_or(0, GuestChunk::len);
        let room = BALLOON_ERROR_PAGES.saturating_sub(have);
        let kept = self.guest.take_front(&mut chunk, room);
        bump(&mut self.stats.error_pages, size.index(), kept.len() as u64);
        self.guest.free(chunk);
        if kept.is_empty() {
            self.guest.free(kept);
            return;
        }
        match slot.as_mut() {
            None => *slot = Some(kept),
            Some(list) => {
                if let Err(k) = self.guest.append(list, kept) {
                    self.guest.free(k);
                }
            }
        }
    }

    /// Locks `chunk`. Returns whether the inflation must stop (a whole-batch failure,
    /// RESET, NOTNEEDED, or a refused page without batching).
    fn lock(&mut self, errors: &mut ErrorPages, mut chunk: GuestChunk) -> bool {
        let size = chunk.size();
        let count = chunk.len();
        let (done, refused, stop) = if self.batched() {
            let guest = &self.guest;
            let t = self
                .channel
                .transfer(Direction::Lock, size, count, |i| guest.pfn(&chunk, i));
            (t.done, t.refused, t.stop.is_some() || t.not_needed)
        } else {
            // One LOCK per page; the first refused page ends the inflation (§7).
            let mut done = PageMask::EMPTY;
            let mut refused = PageMask::EMPTY;
            let mut stop = false;
            for i in 0..count {
                let guest = &self.guest;
                let t = self
                    .channel
                    .transfer(Direction::Lock, size, 1, |_| guest.pfn(&chunk, i));
                if t.done.contains(0) {
                    done.insert(i);
                    continue;
                }
                if t.refused.contains(0) {
                    refused.insert(i);
                }
                stop = true;
                break;
            }
            (done, refused, stop)
        };
        let taken = self.guest.split_off(&mut chunk, &done);
        let n = taken.len();
        self.held.add(size, n);
        bump(&mut self.stats.locked, size.index(), n as u64);
        keep_or_free(&mut self.guest, taken, StorePosition::First);
        let refused = self.guest.split_off(&mut chunk, &refused);
        self.keep_errors(errors, refused);
        // Everything else (not-needed, reset, whole-batch failure, never offered) is freed.
        self.guest.free(chunk);
        stop
    }

    /// `BalloonInflate` (§7 "Inflate"). Returns whether an allocation failed.
    fn inflate(&mut self, target: Frames) -> bool {
        let mut cap = if self.slow_cycles > 0 {
            self.slow_cycles -= 1;
            self.rate_alloc
        } else {
            NOSLEEP_ALLOC_MAX
        };
        let large = self.channel.session().is_some_and(|s| s.large_pages);
        let mut ty = if large {
            AllocType::Lpage
        } else {
            AllocType::NoSleep
        };
        let mut allocations = 0u64;
        let mut failed = false;
        let mut errors = ErrorPages::default();
        loop {
            if self.channel.reset_pending() || allocations >= cap {
                break;
            }
            let goal = target.saturating_sub(self.held.frames()).get();
            if goal == 0 {
                break;
            }
            let (size, per) = match ty {
                AllocType::Lpage => (PageSize::Large, PageSize::Large.frames().get()),
                _ => (PageSize::Small, 1),
            };
            let whole = goal / per;
            if whole == 0 {
                // No whole 2 MiB entry fits below the target: the rest in 4 KiB pages.
                ty = AllocType::NoSleep;
                continue;
            }
            let n = whole
                .min(cap.saturating_sub(allocations))
                .min(BATCH_CAPACITY as u64) as usize;
            let how = if ty == AllocType::CanSleep {
                Alloc::Waiting
            } else {
                Alloc::NoWait
            };
            let got = allocate_pages(&mut self.guest, size, n, how);
            let k = got.as_ref().map_or(0, GuestChunk::len);
            let ti = ty as usize;
            bump(&mut self.stats.prim_alloc, ti, k as u64);
            allocations = allocations.saturating_add(k as u64);
            let stop = match got {
                Some(chunk) => self.lock(&mut errors, chunk),
                None => false,
            };
            if stop {
                break;
            }
            if k < n {
                bump(&mut self.stats.prim_alloc_fail, ti, 1);
                failed = true;
                match ty {
                    AllocType::Lpage => ty = AllocType::NoSleep,
                    AllocType::NoSleep => {
                        self.slow_cycles = SLOW_PAGE_ALLOCATION_CYCLES;
                        if allocations >= self.rate_alloc {
                            break;
                        }
                        ty = AllocType::CanSleep;
                        cap = self.rate_alloc;
                    }
                    AllocType::CanSleep => {
                        self.rate_alloc = (self.rate_alloc / 2).max(RATE_ALLOC_MIN);
                        break;
                    }
                }
            }
        }
        if !failed && allocations >= self.rate_alloc {
            let mult = allocations / self.rate_alloc.max(1);
            self.rate_alloc = self
                .rate_alloc
                .saturating_add(RATE_ALLOC_INC.saturating_mul(mult))
                .min(RATE_ALLOC_MAX);
        }
        for chunk in errors.0.into_iter().flatten() {
            self.guest.free(chunk);
        }
        failed
    }

    /// `BalloonDeflate` (§7 "Deflate").
    fn deflate(&mut self, target: Frames) {
        let batched = self.batched();
        let mut error = false;
        'sizes: for size in PageSize::ALL {
            let per = size.frames().get();
            let surplus = self.held.frames().saturating_sub(target).get();
            let pages = if target.is_zero() {
                surplus.div_ceil(per)
            } else {
                surplus / per
            };
            let mut left = pages.min(self.rate_free);
            while left > 0 {
                let n = left.min(BATCH_CAPACITY as u64) as usize;
                let Some(mut chunk) = dequeue(&mut self.guest, size, n) else {
                    break;
                };
                let count = chunk.len();
                let done_mask = if batched {
                    let guest = &self.guest;
                    self.channel
                        .transfer(Direction::Unlock, size, count, |i| guest.pfn(&chunk, i))
                        .done
                } else {
                    // One UNLOCK per page, stopping at the first failure.
                    let mut done = PageMask::EMPTY;
                    for i in 0..count {
                        let guest = &self.guest;
                        let t = self
                            .channel
                            .transfer(Direction::Unlock, size, 1, |_| guest.pfn(&chunk, i));
                        if !t.done.contains(0) {
                            break;
                        }
                        done.insert(i);
                    }
                    done
                };
                let done = self.guest.split_off(&mut chunk, &done_mask);
                let k = done.len();
                self.held.sub(size, k);
                bump(&mut self.stats.unlocked, size.index(), k as u64);
                self.guest.free(done);
                // The failed pages are re-stored.
                keep_or_free(&mut self.guest, chunk, StorePosition::First);
                left = left.saturating_sub(count as u64);
                if k < count {
                    self.stats.unlock_fail = self.stats.unlock_fail.saturating_add(1);
                    error = true;
                    break 'sizes;
                }
            }
        }
        self.rate_free = if error {
            (self.rate_free / 2).max(RATE_FREE_MIN)
        } else {
            self.rate_free
                .saturating_add(RATE_FREE_INC)
                .min(RATE_FREE_MAX)
        };
    }
}

impl BalloonDriver for OvtClassicDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::OvtClassic
    }

    fn poll_interval(&self) -> Duration {
        POLL
    }

    fn wakes_on_low_memory(&self) -> bool {
        false
    }

    fn tick(&mut self) -> DriverTick {
        self.stats.timer = self.stats.timer.saturating_add(1);
        let calls_before = self.channel.stats().total();
        let mut out = DriverTick::default();
        let running = !self.channel.reset_pending() || self.reset();
        let total = self.guest.total_frames();
        if running && self.channel.get_target(total).is_ok() {
            let target = self.channel.target();
            let size = self.held.frames();
            if size < target {
                if self.inflate(target) {
                    out.reason = Some(ClampReason::AllocationFailed);
                }
            } else if target.is_zero()
                || size.get() > target.get().saturating_add(HYSTERESIS_FRAMES)
            {
                self.deflate(target);
            }
        }
        out.target = self.channel.target();
        out.balloon = self.held.frames();
        out.calls = u32::try_from(self.channel.stats().total().saturating_sub(calls_before))
            .unwrap_or(u32::MAX);
        out
    }

    fn shutdown(&mut self) {
        // "reset connection before deallocating memory" (§7 "Cleanup / unload").
        if self.channel.session().is_some() {
            let _ = self.channel.start(CAPABILITIES);
        }
        self.stats.popped_frames = self
            .stats
            .popped_frames
            .saturating_add(pop_all(&mut self.guest));
        self.held.clear();
    }

    fn balloon(&self) -> Frames {
        self.held.frames()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        vec![
            ("timer", s.timer),
            ("start", s.start),
            ("rateAlloc", self.rate_alloc),
            ("rateFree", self.rate_free),
            ("slowPageAllocationCycles", u64::from(self.slow_cycles)),
            ("primAlloc-lpage", s.prim_alloc[0]),
            ("primAlloc-nosleep", s.prim_alloc[1]),
            ("primAlloc-cansleep", s.prim_alloc[2]),
            ("primAllocFail-lpage", s.prim_alloc_fail[0]),
            ("primAllocFail-nosleep", s.prim_alloc_fail[1]),
            ("primAllocFail-cansleep", s.prim_alloc_fail[2]),
            ("primErrorPageAlloc-4k", s.error_pages[0]),
            ("primErrorPageAlloc-2m", s.error_pages[1]),
            ("lock-4k", s.locked[0]),
            ("lock-2m", s.locked[1]),
            ("unlock-4k", s.unlocked[0]),
            ("unlock-2m", s.unlocked[1]),
            ("unlockFail", s.unlock_fail),
            ("frames-popped", s.popped_frames),
        ]
    }
}
