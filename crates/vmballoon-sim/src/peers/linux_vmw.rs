//! [`LinuxVmwDriver`]: the current Linux `drivers/misc/vmw_balloon.c` (the ≈v4.20 rework
//! and its v5.x additions), `docs/protocol.md` §6.0 and §6.3, ported to the simulated Windows
//! guest.
//!
//! Every second (§6.0 "Worker"): reset if required, TARGET with the guest's RAM, then
//! `change` (§6.0 "Tick" table: 0 during a reset; 0 when the balloon is above a non-zero
//! target by less than 512 frames, the 2 MiB slack; otherwise target − size), and inflate
//! when it is positive, deflate when negative.
//!
//! * **Inflate** (§6.3 "Inflate loop"): no rate limit and no sleeping allocation: loop
//!   while `change` > 0, starting at the largest page size the session allows (2 MiB when
//!   BATCHED and BATCHED_2M are granted, §4 rule 4). Each iteration allocates
//!   `min(batch, ⌈change / frames per page⌉)` pages (so 2 MiB pages overshoot by up to
//!   511 frames, §6.3 step 6), 4 KiB pages taken first from the *preallocated* list, then
//!   locks them in one call (`vmballoon_lock`). Batched, every page the host did not
//!   accept goes to the refused list whatever its per-entry status
//!   (`vmballoon_handle_one_result`: NOTNEEDED, BUSY and RESET included, and a per-entry
//!   RESET does not reset the session); a whole-batch error (RESET, BUSY, ...) refuses
//!   them all and stops. An allocation shortfall, or [`MAX_REFUSED`] refused pages, stops
//!   at 4 KiB; at 2 MiB it splits every refused 2 MiB page into 512 4 KiB pages on the
//!   preallocated list and goes on at 4 KiB. At the end the refused and unused
//!   preallocated pages are freed.
//! * **Single-page mode** (`batch_max_pages` = 1, §6.3, §3 rule 3): one page per
//!   iteration, so `vmballoon_change` re-reads the target — which each LOCK reply updates —
//!   before every LOCK (a target lowered in a reply is never overshot), and the page's
//!   status is the call's: the first page not locked, whatever the status, is refused and
//!   `vmballoon_inflate` ends the pass (`if (lock_error) break`).
//! * **Allocation** (§6.3 "Allocation"): no reclaim, never the OOM killer or reserves: on
//!   this guest, free frames only ([`Alloc::NoWait`]); it fails when there are none.
//! * **Deflate** (§6.3 "Deflate loop"): 4 KiB pages first, in chunks of up to the batch
//!   size, `⌈−change / frames per page⌉` pages each (so 2 MiB pages can go up to 511 frames
//!   below the target); pages the host gave back are freed, the others re-queued; a chunk
//!   not fully deflated (too few pages of that size, or failures) moves on to 2 MiB, and
//!   after 2 MiB the deflate stops.
//! * **Reset** (§6.3 "Reset sequence"): pop every page without UNLOCK, START, batch page
//!   (START(0) on failure), GUEST_ID. The doorbell steps are left out: the simulated host
//!   has no VMCI (Linux's unconditional doorbell-unset is a harmless failed call there,
//!   one call per reset).
//! * **Unload** (§6.0): START(0), then free every page without UNLOCK.
//!
//! Port details (documented deviations): START requests the core's capability set (the
//! host never grants the doorbell bit Linux adds), GUEST_ID sends the Windows value; in
//! single-page mode the pages come from one MDL of up to 512 pages (a Windows port would
//! not build one MDL per page) and are locked one call per page, re-reading the target
//! before each, so the host sees exactly Linux's calls (pages the pass never reaches are
//! freed); the simulator bounds one tick at [`MAX_BATCHES_PER_TICK`] batches and ticks
//! again at once (Linux has no bound, only `cond_resched`).

use vmballoon_core::channel::{Channel, Direction, Transfer};
use vmballoon_core::mask::PageMask;
use vmballoon_core::platform::StorePosition;
use vmballoon_core::policy::ClampReason;
use vmballoon_core::protocol::{BATCH_CAPACITY, Backdoor, Capabilities, LockMode};
use vmballoon_core::units::{Duration, Frames, PageSize};

use super::{Alloc, Held, allocate_pages, dequeue, keep_or_free, pop_all};
use crate::driver::{BalloonDriver, DriverKind, DriverTick};
use crate::guest::{GuestChunk, PeerPages};
use crate::host::FakeHost;

/// Refused pages per page size and inflate cycle after which Linux stops (4 KiB) or splits
/// and falls back to 4 KiB (2 MiB): `VMW_BALLOON_MAX_REFUSED` (`docs/protocol.md` §6.0).
pub const MAX_REFUSED: usize = 16;

/// The 2 MiB slack of `vmballoon_change`: a balloon above a non-zero target by less than
/// this many frames is not deflated (`docs/protocol.md` §6.0, §6.3 step 6).
pub const SLACK_FRAMES: u64 = 512;

/// The worker's period: `round_jiffies_relative(HZ)`, about one second (`docs/protocol.md` §6.0).
pub const POLL: Duration = Duration::from_secs(1);

/// Loop iterations per tick before the model reports more work: a simulator safety bound
/// only (Linux has none), high enough never to bind in a benchmark (32 GiB of 4 KiB
/// pages batched, 256 MiB page by page).
pub const MAX_BATCHES_PER_TICK: u32 = 65_536;

/// Counters of the Linux model (its debugfs names, §6.3 "debugfs").
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    timer: u64,
    reset: u64,
    alloc: [u64; 2],
    alloc_fail: [u64; 2],
    refused: [u64; 2],
    inflated: [u64; 2],
    deflated: [u64; 2],
    split: u64,
    popped_frames: u64,
}

fn bump(a: &mut [u64; 2], size: PageSize, n: usize) {
    if let Some(v) = a.get_mut(size.index()) {
        *v = v.saturating_add(n as u64);
    }
}

/// The current Linux balloon. See the [module docs](self).
pub struct LinuxVmwDriver {
    channel: Channel<FakeHost>,
    guest: PeerPages,
    held: Held,
    stats: Stats,
}

/// One inflate cycle's transient lists (Linux `struct vmballoon_ctl`).
struct Ctl {
    page_size: PageSize,
    refused: Option<GuestChunk>,
    n_refused: usize,
    prealloc: Option<GuestChunk>,
}

impl LinuxVmwDriver {
    /// The Linux balloon over `host` and `guest`.
    #[must_use]
    pub fn new(host: FakeHost, guest: PeerPages) -> Self {
        Self {
            channel: Channel::new(host),
            guest,
            held: Held::default(),
            stats: Stats::default(),
        }
    }

    fn batched(&self) -> bool {
        self.channel
            .session()
            .is_some_and(|s| s.mode == LockMode::Batched)
    }

    fn max_page_size(&self) -> PageSize {
        if self.channel.session().is_some_and(|s| s.large_pages) {
            PageSize::Large
        } else {
            PageSize::Small
        }
    }

    /// `vmballoon_change` (`docs/protocol.md` §6.0): frames to inflate (> 0) or deflate (< 0).
    fn change(&self) -> i128 {
        if self.channel.reset_pending() {
            return 0;
        }
        let size = i128::from(self.held.frames().get());
        let target = i128::from(self.channel.target().get());
        if target < size && target != 0 && size - target < i128::from(SLACK_FRAMES) {
            return 0;
        }
        target - size
    }

    /// `vmballoon_reset` (`docs/protocol.md` §6.3 "Reset sequence").
    fn reset(&mut self) {
        self.stats.popped_frames = self
            .stats
            .popped_frames
            .saturating_add(pop_all(&mut self.guest));
        self.held.clear();
        let Ok(session) = self.channel.start(Capabilities::REQUESTED) else {
            return;
        };
        if session.mode == LockMode::Batched && self.channel.backdoor_mut().batch_page().is_none() {
            // "inform the monitor about it by sending a null capability"; retry next tick.
            let _ = self.channel.stop();
            return;
        }
        self.stats.reset = self.stats.reset.saturating_add(1);
        // GUEST_ID failures are only logged (§2.4).
        let _ = self.channel.guest_id();
        self.channel.finish_reset();
    }

    /// Allocates `n` pages of the cycle's size, preallocated 4 KiB pages first
    /// (`vmballoon_alloc_page_list`). Returns the pages and whether the allocation fell
    /// short.
    fn alloc_page_list(&mut self, ctl: &mut Ctl, n: usize) -> (Option<GuestChunk>, bool) {
        let size = ctl.page_size;
        let mut pages: Option<GuestChunk> = None;
        if size == PageSize::Small
            && let Some(pre) = ctl.prealloc.as_mut()
        {
            let front = self.guest.take_front(pre, n);
            if front.is_empty() {
                self.guest.free(front);
            } else {
                pages = Some(front);
            }
        }
        let have = pages.as_ref().map_or(0, GuestChunk::len);
        let need = n.saturating_sub(have);
        let mut short = false;
        if need > 0 {
            let got = allocate_pages(&mut self.guest, size, need, Alloc::NoWait);
            let n_got = got.as_ref().map_or(0, GuestChunk::len);
            bump(&mut self.stats.alloc, size, n_got);
            if n_got < need {
                short = true;
                bump(&mut self.stats.alloc_fail, size, 1);
            }
            if let Some(g) = got {
                pages = Some(match pages {
                    None => g,
                    Some(mut acc) => {
                        if let Err(g) = self.guest.append(&mut acc, g) {
                            self.guest.free(g);
                        }
                        acc
                    }
                });
            }
        }
        (pages, short)
    }

    /// Adds `chunk`'s pages to the cycle's refused list.
    fn refuse(&mut self, ctl: &mut Ctl, chunk: GuestChunk) {
        if chunk.is_empty() {
            self.guest.free(chunk);
            return;
        }
        ctl.n_refused = ctl.n_refused.saturating_add(chunk.len());
        bump(&mut self.stats.refused, chunk.size(), chunk.len());
        match ctl.refused.as_mut() {
            None => ctl.refused = Some(chunk),
            Some(list) => {
                if let Err(c) = self.guest.append(list, chunk) {
                    self.guest.free(c);
                }
            }
        }
    }

    /// `vmballoon_lock` for an inflate batch: stores what the host took, refuses the rest.
    /// Returns whether the batch failed as a whole (the loop stops).
    fn lock(&mut self, ctl: &mut Ctl, mut chunk: GuestChunk) -> bool {
        let size = chunk.size();
        let count = chunk.len();
        if self.batched() {
            let guest = &self.guest;
            let t = self
                .channel
                .transfer(Direction::Lock, size, count, |i| guest.pfn(&chunk, i));
            let done = self.guest.split_off(&mut chunk, &t.done);
            self.took(size, done);
            self.refuse(ctl, chunk);
            return t.stop.is_some();
        }
        // Single-page mode (`batch_max_pages` = 1, `docs/protocol.md` §6.3): one page per
        // iteration of `vmballoon_inflate`, so the target — which every LOCK reply may
        // have changed — is re-read (`vmballoon_change`) before each LOCK, and a lowered
        // target is never overshot. `vmballoon_status_page` leaves the page's status to
        // the call's, `vmballoon_lock` then returns -EIO for any non-SUCCESS and
        // `vmballoon_inflate` breaks on it: the first page not locked, whatever the
        // status, is refused and ends the pass.
        let mut accepted = PageMask::EMPTY;
        let mut refused = PageMask::EMPTY;
        let mut stop = false;
        for i in 0..count {
            if self.change() <= 0 {
                break;
            }
            let guest = &self.guest;
            let t: Transfer = self
                .channel
                .transfer(Direction::Lock, size, 1, |_| guest.pfn(&chunk, i));
            if t.done.contains(0) {
                accepted.insert(i);
                // Counted at once so the next `change` sees it.
                self.held.add(size, 1);
                continue;
            }
            refused.insert(i);
            stop = true;
            break;
        }
        self.held.sub(size, accepted.len());
        let done = self.guest.split_off(&mut chunk, &accepted);
        self.took(size, done);
        let no = self.guest.split_off(&mut chunk, &refused);
        self.refuse(ctl, no);
        // Pages the loop never reached go back to the OS (Linux would not have allocated
        // them: it allocates one page per iteration).
        self.guest.free(chunk);
        stop
    }

    /// Stores pages the host now holds.
    fn took(&mut self, size: PageSize, done: GuestChunk) {
        let n = done.len();
        self.held.add(size, n);
        bump(&mut self.stats.inflated, size, n);
        keep_or_free(&mut self.guest, done, StorePosition::First);
    }

    /// `vmballoon_inflate` (`docs/protocol.md` §6.3 "Inflate loop"). Returns whether the
    /// simulator's batch bound cut it short, and whether an allocation failed.
    fn inflate(&mut self) -> (bool, bool) {
        let mut ctl = Ctl {
            page_size: self.max_page_size(),
            refused: None,
            n_refused: 0,
            prealloc: None,
        };
        let batch = if self.batched() { BATCH_CAPACITY } else { 1 };
        let mut batches = 0u32;
        let mut more = false;
        let mut alloc_failed = false;
        loop {
            let change = self.change();
            if change <= 0 {
                break;
            }
            if batches >= MAX_BATCHES_PER_TICK {
                more = true;
                break;
            }
            batches = batches.saturating_add(1);
            let per = i128::from(ctl.page_size.frames().get());
            let want = usize::try_from((change + per - 1) / per).unwrap_or(usize::MAX);
            // Single-page mode: one MDL for up to 512 pages, locked page by page.
            let n = want.min(if batch == 1 { BATCH_CAPACITY } else { batch });
            let (pages, short) = self.alloc_page_list(&mut ctl, n);
            alloc_failed |= short;
            let failed_batch = match pages {
                Some(p) => self.lock(&mut ctl, p),
                None => false,
            };
            if failed_batch {
                break;
            }
            if short || ctl.n_refused >= MAX_REFUSED {
                if ctl.page_size == PageSize::Small {
                    break;
                }
                // vmballoon_split_refused_pages: refused 2 MiB pages become 4 KiB pages
                // for the 4 KiB pass; the refused count starts again.
                if let Some(r) = ctl.refused.take() {
                    self.stats.split = self.stats.split.saturating_add(r.len() as u64);
                    let small = self.guest.split_large(r);
                    match ctl.prealloc.as_mut() {
                        None => ctl.prealloc = Some(small),
                        Some(p) => {
                            if let Err(s) = self.guest.append(p, small) {
                                self.guest.free(s);
                            }
                        }
                    }
                }
                ctl.n_refused = 0;
                ctl.page_size = PageSize::Small;
            }
        }
        // vmballoon_release_refused_pages and the unused preallocated pages.
        for chunk in [ctl.refused.take(), ctl.prealloc.take()]
            .into_iter()
            .flatten()
        {
            self.guest.free(chunk);
        }
        (more, alloc_failed)
    }

    /// `vmballoon_deflate(b, 0, true)` (`docs/protocol.md` §6.3 "Deflate loop"). Returns
    /// whether the simulator's batch bound cut it short.
    fn deflate(&mut self) -> bool {
        let max = self.max_page_size();
        let mut page_size = PageSize::Small;
        let mut batches = 0u32;
        loop {
            let to_deflate = -self.change();
            if to_deflate <= 0 {
                return false;
            }
            if batches >= MAX_BATCHES_PER_TICK {
                return true;
            }
            batches = batches.saturating_add(1);
            let per = i128::from(page_size.frames().get());
            // Single-page mode takes up to a batch of pages at once and unlocks them one call
            // per page (see `unlock`), which is Linux's one-page iterations.
            let n = usize::try_from((to_deflate + per - 1) / per)
                .unwrap_or(usize::MAX)
                .min(BATCH_CAPACITY);
            let unlocked = match dequeue(&mut self.guest, page_size, n) {
                Some(chunk) => self.unlock(page_size, chunk),
                None => 0,
            };
            // "If we failed to unlock all the pages, move to next size." (Single-page mode
            // also stops short when the slack is reached: then the loop ends above.)
            if unlocked != n && -self.change() > 0 {
                if page_size == max {
                    return false;
                }
                page_size = PageSize::Large;
            }
        }
    }

    /// UNLOCKs `chunk`: frees what the host gave back, re-queues the rest. Returns the
    /// pages unlocked. Without batching, one UNLOCK per page, re-evaluating `change` before
    /// each (Linux's one-page iterations) and stopping at the first page not given back.
    fn unlock(&mut self, size: PageSize, mut chunk: GuestChunk) -> usize {
        let count = chunk.len();
        let done_mask = if self.batched() {
            let guest = &self.guest;
            self.channel
                .transfer(Direction::Unlock, size, count, |i| guest.pfn(&chunk, i))
                .done
        } else {
            let mut done = PageMask::EMPTY;
            for i in 0..count {
                if -self.change() <= 0 {
                    break;
                }
                let guest = &self.guest;
                let t = self
                    .channel
                    .transfer(Direction::Unlock, size, 1, |_| guest.pfn(&chunk, i));
                if !t.done.contains(0) {
                    break;
                }
                done.insert(i);
                self.held.sub(size, 1);
            }
            self.held.add(size, done.len());
            done
        };
        let done = self.guest.split_off(&mut chunk, &done_mask);
        let n = done.len();
        self.held.sub(size, n);
        bump(&mut self.stats.deflated, size, n);
        self.guest.free(done);
        // "Return the refused pages to the ballooned list."
        keep_or_free(&mut self.guest, chunk, StorePosition::First);
        n
    }
}

impl BalloonDriver for LinuxVmwDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::LinuxVmw
    }

    fn poll_interval(&self) -> Duration {
        POLL
    }

    fn wakes_on_low_memory(&self) -> bool {
        // The optional shrinker is off by default (§6.3 "Memory pressure / OOM").
        false
    }

    fn tick(&mut self) -> DriverTick {
        self.stats.timer = self.stats.timer.saturating_add(1);
        let calls_before = self.channel.stats().total();
        let mut out = DriverTick::default();
        if self.channel.reset_pending() {
            self.reset();
        }
        let total: Frames = self.guest.total_frames();
        if !self.channel.reset_pending() && self.channel.get_target(total).is_ok() {
            let change = self.change();
            if change > 0 {
                let (more, failed) = self.inflate();
                out.more_work = more;
                if failed {
                    out.reason = Some(ClampReason::AllocationFailed);
                }
            } else if change < 0 {
                out.more_work = self.deflate();
            }
        }
        out.target = self.channel.target();
        out.balloon = self.held.frames();
        out.calls = u32::try_from(self.channel.stats().total().saturating_sub(calls_before))
            .unwrap_or(u32::MAX);
        out
    }

    fn shutdown(&mut self) {
        if self.channel.session().is_some() {
            let _ = self.channel.stop();
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
            ("reset", s.reset),
            ("4k-alloc", s.alloc[0]),
            ("2m-alloc", s.alloc[1]),
            ("4k-allocFail", s.alloc_fail[0]),
            ("2m-allocFail", s.alloc_fail[1]),
            ("4k-errAlloc", s.refused[0]),
            ("2m-errAlloc", s.refused[1]),
            ("4k-inflated", s.inflated[0]),
            ("2m-inflated", s.inflated[1]),
            ("4k-free", s.deflated[0]),
            ("2m-free", s.deflated[1]),
            ("2m-split", s.split),
            ("frames-popped", s.popped_frames),
        ]
    }
}

#[cfg(test)]
mod tests;
