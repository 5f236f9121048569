//! [`OvtClassicDriver`]: open-vm-tools' shared `modules/shared/vmmemctl/vmballoon.c`, the
//! classic VMware balloon with adaptive rates (`docs/protocol.md` §7; the same design as
//! LNX-old, §6.1), ported to the simulated Windows guest. Every behaviour below names the
//! OVT function it follows; `docs/protocol.md` §7 describes each one.
//!
//! * **Tick** (`Balloon_QueryAndExecute`, §7 "Polling"): reset if flagged; TARGET; then,
//!   on every tick whatever TARGET answered, the slow-cycle counter drops by one; then
//!   `BalloonAdjustSize` if TARGET succeeded: inflate while the balloon is below the
//!   target, deflate only when the target is 0 or the balloon exceeds it by more than
//!   [`HYSTERESIS_FRAMES`] (§7 "Hysteresis").
//! * **Inflate** (`BalloonInflate`, §7 "Inflate"), one entry at a time (a 2 MiB page is one
//!   entry):
//!   1. LPAGE (2 MiB, no sleep) when 2 MiB pages were granted, else NOSLEEP (4 KiB);
//!   2. the per-tick cap is [`NOSLEEP_ALLOC_MAX`] entries, or `rateAlloc` while slow
//!      cycles are pending; since the counter was already decremented by this tick, a
//!      NOSLEEP failure (counter set to [`SLOW_PAGE_ALLOCATION_CYCLES`]) slows exactly the
//!      three ticks after it;
//!   3. the loop runs while the balloon is below the target *and the frames of the entries
//!      allocated but not yet locked are below target − size*: the last 2 MiB entry is
//!      allocated whenever a frame is still missing, so a pass ends up to 511 frames above
//!      the target (the overshoot `BalloonAdjustSize`'s hysteresis absorbs); no 4 KiB tail;
//!   4. entries are locked when the batch is full (512 batched, 1 single-page), and the
//!      reply's target is the one the loop checks from then on; a lock that fails as a
//!      whole ends the pass; a final partial batch is locked after the loop, its reply's
//!      target dropped;
//!   5. LPAGE failure (fragmentation, not pressure): lock the partial large batch now, go
//!      on with NOSLEEP; NOSLEEP failure (pressure): [`SLOW_PAGE_ALLOCATION_CYCLES`] slow
//!      cycles, the cap becomes `rateAlloc`, go on with CANSLEEP; CANSLEEP failure:
//!      `rateAlloc` = max(`rateAlloc` / 2, [`RATE_ALLOC_MIN`]) and stop; after an LPAGE or
//!      a NOSLEEP failure the pass also stops once `rateAlloc` entries were allocated;
//!   6. `rateAlloc` grows by [`RATE_ALLOC_INC`] × (allocations / `rateAlloc`) (at most
//!      [`RATE_ALLOC_MAX`]) when at least `rateAlloc` entries were allocated and the pass's
//!      `status` — the *last* value assigned to it: an allocation failure, or the result of
//!      a full-batch or partial-LPAGE lock — is SUCCESS, so a later good lock clears an
//!      earlier allocation failure.
//! * **Lock results.** Batched (`BalloonLockBatched`), per entry after a successful call:
//!   PPN_PINNED / PPN_INVALID go to the error list (at most [`BALLOON_ERROR_PAGES`] per
//!   page size, the rest freed); RESET and PPN_NOTNEEDED free the page and the batch and
//!   the pass go on; anything else is "definitively a bug in the driver" (`ASSERT(FALSE)`):
//!   OVT then neither stores nor frees the page (lost to the guest until unload), which
//!   the simulator's leak check forbids, so the model frees it and counts it in
//!   `driverBug` (a documented deviation). A call that fails as a whole frees every page
//!   of the batch and ends the pass. Single-page (`BalloonLock`): RESET or NOTNEEDED frees
//!   the page; any other refusal stores it as an error page (freed if the list is full);
//!   either way the call's error ends the pass. Error pages are freed at the end of every
//!   inflate (`BalloonErrorPagesFree`).
//! * **Deflate** (`BalloonDeflate` = `BalloonDeflateInt` for 4 KiB, then for 2 MiB, each
//!   with the tick's target): entries are taken while the balloon is above the target and
//!   *the entries gathered for the current batch are fewer than the frames above the
//!   target* — for 2 MiB pages that compares entries with frames, so the 2 MiB pass
//!   unlocks a whole batch (512 entries, 1 GiB) or every 2 MiB page there is, however
//!   small the surplus (then the next tick inflates again: the reference code as written,
//!   not observed on a real host); at most `rateFree` entries per size and tick; a full
//!   batch is unlocked at once and its reply's target is used from then on; the final
//!   partial batch's reply target is dropped. Batched (`BalloonUnlockBatched`): only a
//!   call that fails as a whole is an error (it ends the size's pass and halves
//!   `rateFree`); a page whose entry failed is put back and the pass goes on. Single-page
//!   (`BalloonUnlock`): a failed UNLOCK is a failed call. Each size's pass then adjusts
//!   `rateFree`: +[`RATE_FREE_INC`] (at most [`RATE_FREE_MAX`]) after a clean pass, halved
//!   (at least [`RATE_FREE_MIN`]) after an error.
//! * **Reset** (`BalloonReset`): free everything without UNLOCK, START, batch page
//!   (START(0) on failure), GUEST_ID; the tick then goes on with TARGET (which the channel
//!   refuses locally while no session is open, where OVT would send it anyway).
//! * **Unload** (`Balloon_Cleanup`): START with its normal capabilities (which resets the
//!   session) *then* free every page.
//!
//! **CANSLEEP on this guest.** OVT's CANSLEEP allocation may block and reclaim. The
//! simulated guest models it as an allocation that, when available pages run short, waits
//! for the memory manager to write modified pages and trim working sets
//! ([`PeerPages::allocate_waiting`], `docs/windows-memory.md` §3.6), charged one 10 ms wait plus
//! the page-outs by the cost model. It still fails when resident available memory or
//! commit cannot cover the request.
//!
//! Port details: START asks for `0x0E` (BASIC | BATCHED | BATCHED_2M: OVT on a 64-bit
//! Linux or macOS, §4 table); 2 MiB pages are used only with batching (the core's session
//! rule; OVT checks the 2M bit alone, a difference only on a host granting 2M without
//! batching, which the host model's checker rejects); GUEST_ID sends the Windows value;
//! in single-page mode the pages come from one MDL of up to 512 pages and are locked one
//! call per page (a Windows port would not build one MDL per page; the pages the loop
//! never reaches are freed); the target of a failed reply is not taken (OVT's
//! `BackdoorCmd` writes it whatever the status; the pass ends on such a reply anyway);
//! the yield every `BALLOON_ALLOC_YIELD_THRESHOLD` allocations costs nothing here.

use vmballoon_core::channel::{Channel, Direction};
use vmballoon_core::error::Error;
use vmballoon_core::mask::PageMask;
use vmballoon_core::platform::StorePosition;
use vmballoon_core::policy::ClampReason;
use vmballoon_core::protocol::{
    BATCH_CAPACITY, Backdoor, BatchEntry, Capabilities, LockMode, Status,
};
use vmballoon_core::units::{Duration, Frames, PageSize};

use super::{Alloc, Held, allocate_pages, dequeue, keep_or_free, pop_all};
use crate::driver::{BalloonDriver, DriverKind, DriverTick};
use crate::guest::{GuestChunk, PeerPages};
use crate::host::FakeHost;

/// `BALLOON_POLL_PERIOD`: one second (`docs/protocol.md` §7 "Polling").
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
/// `SLOW_PAGE_ALLOCATION_CYCLES` (§7 constants): set on a NOSLEEP failure and decremented
/// at every tick before `BalloonInflate` reads it, so three slow ticks follow.
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
    /// 4 KiB, may sleep (wait for the memory manager here).
    CanSleep,
}

impl AllocType {
    const fn size(self) -> PageSize {
        match self {
            Self::Lpage => PageSize::Large,
            Self::NoSleep | Self::CanSleep => PageSize::Small,
        }
    }
}

/// Counters of the OVT model (its `BalloonStats` names, §7 "Stats"), plus `driverBug`.
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
    /// Pages whose per-entry LOCK status `BalloonLockBatched` treats as a driver bug
    /// (`ASSERT(FALSE)`): lost in OVT, freed here (module docs).
    driver_bug: u64,
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
    /// Single-page mode: pages locked one by one in this pass, kept together (one MDL of
    /// up to 512 pages, as they were allocated) until the pass ends.
    run: Option<GuestChunk>,
}

/// One inflate's error pages, per page size.
#[derive(Default)]
struct ErrorPages([Option<GuestChunk>; 2]);

/// Pages allocated for single-page mode and not yet offered: one MDL of up to 512 pages,
/// handed out one page at a time (module docs, "Port details"). `short` is set when the
/// MDL came back short: the allocation after its last page fails.
#[derive(Default)]
struct Buffer {
    pages: Option<GuestChunk>,
    short: bool,
}

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
            run: None,
        }
    }

    /// Stores the single-page run (module docs, "Port details").
    fn flush_run(&mut self) {
        if let Some(run) = self.run.take() {
            keep_or_free(&mut self.guest, run, StorePosition::First);
        }
    }

    fn batched(&self) -> bool {
        self.channel
            .session()
            .is_some_and(|s| s.mode == LockMode::Batched)
    }

    /// `b->batchMaxEntries`: 512 batched, 1 single-page.
    fn batch_max(&self) -> usize {
        if self.batched() { BATCH_CAPACITY } else { 1 }
    }

    /// `BalloonReset` (§7 "Reset").
    fn reset(&mut self) {
        self.stats.popped_frames = self
            .stats
            .popped_frames
            .saturating_add(pop_all(&mut self.guest));
        self.held.clear();
        self.stats.start = self.stats.start.saturating_add(1);
        let Ok(session) = self.channel.start(CAPABILITIES) else {
            return;
        };
        if session.mode == LockMode::Batched && self.channel.backdoor_mut().batch_page().is_none() {
            let _ = self.channel.stop();
            return;
        }
        self.channel.finish_reset();
        let _ = self.channel.guest_id();
    }

    /// `BalloonErrorPageStore` for every page of `chunk`: kept as error pages up to
    /// [`BALLOON_ERROR_PAGES`] of its size, the rest freed.
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

    /// The per-entry statuses the host wrote into the first `count` entries of the batch
    /// page (`Balloon_BatchGetStatus`).
    fn entry_statuses(&mut self, count: usize) -> Vec<Status> {
        match self.channel.backdoor_mut().batch_page() {
            Some((page, _)) => page
                .entries
                .iter()
                .take(count)
                .map(|e| BatchEntry::from_raw(u64::from_le(*e)).status())
                .collect(),
            None => vec![Status::Failure; count],
        }
    }

    /// Stores the pages of `chunk` in `done` (the host holds them now); returns the rest.
    fn keep_locked(&mut self, mut chunk: GuestChunk, done: &PageMask) -> GuestChunk {
        let size = chunk.size();
        let taken = self.guest.split_off(&mut chunk, done);
        let n = taken.len();
        self.held.add(size, n);
        bump(&mut self.stats.locked, size.index(), n as u64);
        if self.batched() || taken.is_empty() {
            keep_or_free(&mut self.guest, taken, StorePosition::First);
        } else {
            // Single-page mode: gather the pages of one pass into runs of up to 512.
            let taken = match self.run.take() {
                None => taken,
                Some(mut run) => {
                    if let Err(t) = self.guest.append(&mut run, taken) {
                        keep_or_free(&mut self.guest, t, StorePosition::First);
                    }
                    run
                }
            };
            if taken.len() >= BATCH_CAPACITY {
                keep_or_free(&mut self.guest, taken, StorePosition::First);
            } else {
                self.run = Some(taken);
            }
        }
        chunk
    }

    /// `balloonOps->lock`: `BalloonLockBatched` or, without batching, `BalloonLock`.
    /// Returns whether the call succeeded (the `status` `BalloonInflate` sees).
    fn lock(&mut self, errors: &mut ErrorPages, chunk: GuestChunk) -> bool {
        let size = chunk.size();
        let count = chunk.len();
        if count == 0 {
            self.guest.free(chunk);
            return true;
        }
        if self.batched() {
            let guest = &self.guest;
            let t = self
                .channel
                .transfer(Direction::Lock, size, count, |i| guest.pfn(&chunk, i));
            if t.stop.is_some() && t.done.is_empty() {
                // The call failed as a whole: every page of the batch is freed.
                self.guest.free(chunk);
                return false;
            }
            let statuses = self.entry_statuses(count);
            let mut chunk = self.keep_locked(chunk, &t.done);
            // What is left are the entries the host did not lock, in order; sort them by
            // their status as `BalloonLockBatched` does.
            let mut store = PageMask::EMPTY;
            let mut bug = 0u64;
            let left: Vec<usize> = (0..count).filter(|&i| !t.done.contains(i)).collect();
            for (j, i) in left.iter().enumerate() {
                match statuses.get(*i).copied().unwrap_or(Status::Failure) {
                    Status::PpnPinned | Status::PpnInvalid => store.insert(j),
                    Status::Reset | Status::PpnNotNeeded => {}
                    _ => bug += 1,
                }
            }
            self.stats.driver_bug = self.stats.driver_bug.saturating_add(bug);
            let errs = self.guest.split_off(&mut chunk, &store);
            self.keep_errors(errors, errs);
            // RESET, NOTNEEDED and the driver-bug statuses: freed.
            self.guest.free(chunk);
            return t.stop.is_none();
        }
        // BalloonLock: one page per call.
        let guest = &self.guest;
        let t = self
            .channel
            .transfer(Direction::Lock, size, 1, |_| guest.pfn(&chunk, 0));
        let chunk = self.keep_locked(chunk, &t.done);
        if t.done.contains(0) {
            self.guest.free(chunk);
            return true;
        }
        let freed = t.not_needed || matches!(t.stop, Some(Error::Reset { .. }));
        if freed {
            self.guest.free(chunk);
        } else {
            // "place on list of non-balloonable pages" (freed when the list is full).
            self.keep_errors(errors, chunk);
        }
        false
    }

    /// Up to `want` pages of `ty` for the pass: allocated at once when batched; in
    /// single-page mode taken from `buffer`, refilled with one MDL of up to `refill`
    /// pages. Fewer than `want` means the allocation after the last one failed.
    fn allocate(
        &mut self,
        ty: AllocType,
        want: usize,
        refill: usize,
        buffer: &mut Buffer,
    ) -> Option<GuestChunk> {
        let how = if ty == AllocType::CanSleep {
            Alloc::Waiting
        } else {
            Alloc::NoWait
        };
        if self.batched() {
            return allocate_pages(&mut self.guest, ty.size(), want, how);
        }
        if buffer.pages.as_ref().is_none_or(GuestChunk::is_empty) {
            if let Some(empty) = buffer.pages.take() {
                self.guest.free(empty);
            }
            if std::mem::take(&mut buffer.short) {
                return None;
            }
            let ask = refill.clamp(1, BATCH_CAPACITY);
            buffer.pages = allocate_pages(&mut self.guest, ty.size(), ask, how);
            buffer.short = buffer.pages.as_ref().map_or(0, GuestChunk::len) < ask;
        }
        let pages = buffer.pages.as_mut()?;
        Some(self.guest.take_front(pages, want))
    }

    /// `BalloonInflate` (§7 "Inflate"). Returns whether an allocation failed.
    fn inflate(&mut self, mut target: Frames) -> bool {
        let large = self.channel.session().is_some_and(|s| s.large_pages);
        let mut ty = if large {
            AllocType::Lpage
        } else {
            AllocType::NoSleep
        };
        let mut rate = if self.slow_cycles > 0 {
            self.rate_alloc
        } else {
            NOSLEEP_ALLOC_MAX
        };
        let batch_max = self.batch_max();
        let mut allocations = 0u64;
        // BalloonInflate's `status`: the last value assigned to it.
        let mut status_ok = true;
        let mut failed = false;
        let mut errors = ErrorPages::default();
        let mut pending: Option<GuestChunk> = None;
        let mut buffer = Buffer::default();
        loop {
            if self.channel.reset_pending() {
                break;
            }
            let per = ty.size().frames().get();
            let size = self.held.frames().get();
            let n_pending = pending.as_ref().map_or(0, GuestChunk::len) as u64;
            // while (b->nPages < target && nEntries * numPagesPerEntry < target - b->nPages)
            let gap = target.get().saturating_sub(size);
            if size >= target.get() || n_pending.saturating_mul(per) >= gap {
                break;
            }
            let to_gap = gap
                .saturating_sub(n_pending.saturating_mul(per))
                .div_ceil(per);
            let room = (batch_max as u64).saturating_sub(n_pending);
            let want = to_gap.min(room).min(rate.saturating_sub(allocations));
            if want == 0 {
                break;
            }
            let refill = to_gap.min(rate.saturating_sub(allocations));
            let got = self.allocate(ty, want as usize, refill as usize, &mut buffer);
            let k = got.as_ref().map_or(0, GuestChunk::len) as u64;
            bump(&mut self.stats.prim_alloc, ty as usize, k);
            allocations = allocations.saturating_add(k);
            if let Some(chunk) = got {
                pending = Some(match pending.take() {
                    None => chunk,
                    Some(mut acc) => {
                        if let Err(c) = self.guest.append(&mut acc, chunk) {
                            self.guest.free(c);
                        }
                        acc
                    }
                });
            }
            if pending.as_ref().map_or(0, GuestChunk::len) >= batch_max {
                let batch = pending.take();
                status_ok = batch.is_none_or(|b| self.lock(&mut errors, b));
                target = self.channel.target();
                if !status_ok {
                    break;
                }
            }
            if k < want {
                // The allocation after the k-th failed.
                bump(&mut self.stats.prim_alloc_fail, ty as usize, 1);
                status_ok = false;
                failed = true;
                match ty {
                    AllocType::Lpage => {
                        // Lock the partial set of large pages now: a batch holds one size.
                        if let Some(batch) = pending.take() {
                            status_ok = self.lock(&mut errors, batch);
                            target = self.channel.target();
                        }
                        ty = AllocType::NoSleep;
                    }
                    AllocType::NoSleep => {
                        self.slow_cycles = SLOW_PAGE_ALLOCATION_CYCLES;
                        rate = self.rate_alloc;
                        ty = AllocType::CanSleep;
                    }
                    AllocType::CanSleep => {
                        self.rate_alloc = (self.rate_alloc / 2).max(RATE_ALLOC_MIN);
                        break;
                    }
                }
                if allocations >= self.rate_alloc {
                    break;
                }
                continue;
            }
            if allocations >= rate {
                break;
            }
        }
        if let Some(batch) = pending.take() {
            // The final partial batch; its status is not assigned (target = NULL).
            let _ = self.lock(&mut errors, batch);
        }
        if let Some(rest) = buffer.pages.take() {
            // Single-page port: pages the loop never offered go back to the OS.
            self.guest.free(rest);
        }
        self.flush_run();
        if status_ok && allocations >= self.rate_alloc {
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

    /// `balloonOps->unlock`: `BalloonUnlockBatched` or `BalloonUnlock`. Frees the pages
    /// the host gave back, puts the others back. Returns whether the call succeeded.
    fn unlock(&mut self, mut chunk: GuestChunk) -> bool {
        let size = chunk.size();
        let count = chunk.len();
        if count == 0 {
            self.guest.free(chunk);
            return true;
        }
        let t = if self.batched() {
            let guest = &self.guest;
            self.channel
                .transfer(Direction::Unlock, size, count, |i| guest.pfn(&chunk, i))
        } else {
            let guest = &self.guest;
            self.channel
                .transfer(Direction::Unlock, size, 1, |_| guest.pfn(&chunk, 0))
        };
        let done = self.guest.split_off(&mut chunk, &t.done);
        let k = done.len();
        self.held.sub(size, k);
        bump(&mut self.stats.unlocked, size.index(), k as u64);
        self.guest.free(done);
        // Pages the host did not give back are put back (`BalloonPageStore`).
        keep_or_free(&mut self.guest, chunk, StorePosition::First);
        // Batched: only a call that failed as a whole is an error; per-entry failures are
        // not. Single-page: the page's status is the call's.
        let ok = if self.batched() {
            t.stop.is_none()
        } else {
            t.done.contains(0)
        };
        if !ok {
            self.stats.unlock_fail = self.stats.unlock_fail.saturating_add(1);
        }
        ok
    }

    /// `BalloonDeflateInt` for pages of `size` (§7 "Deflate").
    fn deflate_int(&mut self, mut target: Frames, size: PageSize) {
        let batch_max = self.batch_max() as u64;
        let mut deallocations = 0u64;
        let mut pending: Option<GuestChunk> = None;
        let mut status_ok = true;
        let stored = |s: &Self| s.held.pages(size);
        if stored(self) == 0 {
            return;
        }
        loop {
            let n_pages = pending.as_ref().map_or(0, GuestChunk::len) as u64;
            let held = self.held.frames().get();
            // while (nChunks > 0 && b->nPages > target && nPages < b->nPages - target):
            // `nPages` counts entries, `b->nPages` frames.
            if stored(self) <= n_pages || held <= target.get() {
                break;
            }
            let surplus = held - target.get();
            if n_pages >= surplus {
                break;
            }
            let want = (surplus - n_pages)
                .min(batch_max.saturating_sub(n_pages))
                .min(self.rate_free.saturating_sub(deallocations))
                .min(stored(self).saturating_sub(n_pages));
            if want == 0 {
                break;
            }
            let Some(chunk) = dequeue(&mut self.guest, size, want as usize) else {
                break;
            };
            deallocations = deallocations.saturating_add(chunk.len() as u64);
            pending = Some(match pending.take() {
                None => chunk,
                Some(mut acc) => {
                    if let Err(c) = self.guest.append(&mut acc, chunk) {
                        self.guest.store(c, StorePosition::First);
                    }
                    acc
                }
            });
            if pending.as_ref().map_or(0, GuestChunk::len) as u64 >= batch_max {
                if let Some(batch) = pending.take() {
                    status_ok = self.unlock(batch);
                }
                target = self.channel.target();
                if !status_ok {
                    break;
                }
            }
            if deallocations >= self.rate_free {
                break;
            }
        }
        if let Some(batch) = pending.take() {
            // The final partial batch (target = NULL, status not assigned).
            let _ = self.unlock(batch);
        }
        self.rate_free = if status_ok {
            self.rate_free
                .saturating_add(RATE_FREE_INC)
                .min(RATE_FREE_MAX)
        } else {
            (self.rate_free / 2).max(RATE_FREE_MIN)
        };
    }

    /// `BalloonDeflate` (§7 "Deflate"): small pages first, then large pages, each with the
    /// tick's target.
    fn deflate(&mut self, target: Frames) {
        for size in PageSize::ALL {
            self.deflate_int(target, size);
        }
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

    /// `Balloon_QueryAndExecute`.
    fn tick(&mut self) -> DriverTick {
        self.stats.timer = self.stats.timer.saturating_add(1);
        let calls_before = self.channel.stats().total();
        let mut out = DriverTick::default();
        if self.channel.reset_pending() {
            self.reset();
        }
        let total = self.guest.total_frames();
        let got = self.channel.get_target(total);
        // Decremented on every tick, whatever TARGET answered, before BalloonInflate
        // reads it.
        self.slow_cycles = self.slow_cycles.saturating_sub(1);
        if got.is_ok() {
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
            ("driverBug", s.driver_bug),
            ("frames-popped", s.popped_frames),
        ]
    }
}

#[cfg(test)]
mod tests;
