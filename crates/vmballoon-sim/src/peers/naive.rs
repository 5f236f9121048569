//! [`NaiveDriver`]: a pinned-page-unaware balloon, the behaviour VMware KB 340369
//! describes ("the balloon driver, vmmemctl, is unaware of pinned pages").
//!
//! It is modelled on the current Linux `vmw_balloon.c` (`docs/protocol.md` §6.3), minus the
//! optional shrinker (off by default there), ported to Windows' allocator as vmmemctl
//! would be:
//!
//! * every second: reset if needed (pop every page, START, GUEST_ID), TARGET with the
//!   guest's RAM as the limit, then inflate or deflate toward the target;
//! * inflation: 2 MiB pages while at least one whole 2 MiB page is still wanted and the
//!   host granted them, else 4 KiB pages, 512 per batch, until the target is reached or
//!   allocation fails. An allocation that returns nothing is retried with half as many
//!   pages, down to one (Linux allocates page by page, so it gets every page it can); a
//!   2 MiB failure falls back to 4 KiB pages. No other limit: no floor, no registry cap,
//!   no look at resident available memory, commit or `LowMemoryCondition`;
//! * refused pages: held (at most 16 per cycle) until the end of the tick, then freed;
//!   more than 16 refusals stop 4 KiB inflation or switch 2 MiB to 4 KiB;
//! * deflation only when the host lowers its target (by more than the 2 MiB slack, or to
//!   zero): 4 KiB pages first, never below the target. It never deflates for the guest;
//! * unload: START(0), then free every page without UNLOCK.
//!
//! It speaks the protocol through the core's [`Channel`], so the host model judges its
//! protocol exactly as it judges the engine's.

use vmballoon_core::channel::{Channel, Direction};
use vmballoon_core::mask::PageMask;
use vmballoon_core::platform::StorePosition;
use vmballoon_core::policy::{ClampReason, SLACK};
use vmballoon_core::protocol::{BATCH_CAPACITY, Backdoor, Capabilities, LockMode};
use vmballoon_core::units::{Duration, Frames, PageSize};

use crate::driver::{BalloonDriver, DriverKind, DriverTick};
use crate::guest::{PEER_HELD_REFUSED, PeerPages};
use crate::host::FakeHost;

/// Batches per tick before the naive balloon reports `more_work` (the runner ticks it
/// again at once: Linux has no per-tick limit, only `cond_resched`).
const MAX_BATCHES_PER_TICK: u32 = 1024;

/// Counters of the naive balloon.
#[derive(Clone, Copy, Debug, Default)]
struct NaiveStats {
    ticks: u64,
    inflated: [u64; 2],
    deflated: [u64; 2],
    refused: [u64; 2],
    alloc_failures: [u64; 2],
    resets: u64,
    popped_frames: u64,
}

/// A pinned-page-unaware balloon. See the [module docs](self).
pub struct NaiveDriver {
    channel: Channel<FakeHost>,
    guest: PeerPages,
    held: [u64; 2],
    stats: NaiveStats,
}

impl NaiveDriver {
    /// The naive balloon over `host` and `guest`.
    #[must_use]
    pub fn new(host: FakeHost, guest: PeerPages) -> Self {
        Self {
            channel: Channel::new(host),
            guest,
            held: [0; 2],
            stats: NaiveStats::default(),
        }
    }

    fn size(&self) -> Frames {
        let [small, large] = self.held;
        Frames::new(small).saturating_add(PageSize::Large.frames().saturating_mul(large))
    }

    fn add(&mut self, size: PageSize, pages: usize, inflate: bool) {
        if let Some(h) = self.held.get_mut(size.index()) {
            *h = if inflate {
                h.saturating_add(pages as u64)
            } else {
                h.saturating_sub(pages as u64)
            };
        }
    }

    fn pop_all(&mut self) {
        for size in PageSize::ALL {
            while let Some(chunk) = self.guest.take(size) {
                let n = self.guest.page_count(&chunk) as u64;
                self.stats.popped_frames = self
                    .stats
                    .popped_frames
                    .saturating_add(n.saturating_mul(size.frames().get()));
                self.guest.free(chunk);
            }
        }
        self.guest.free_refused();
        self.held = [0; 2];
    }

    /// The reset sequence; returns whether a session is running afterwards.
    fn reset(&mut self) -> bool {
        self.pop_all();
        self.stats.resets = self.stats.resets.saturating_add(1);
        let Ok(session) = self.channel.start(Capabilities::REQUESTED) else {
            return false;
        };
        if session.mode == LockMode::Batched && self.channel.backdoor_mut().batch_page().is_none() {
            let _ = self.channel.stop();
            return false;
        }
        let _ = self.channel.guest_id();
        self.channel.finish_reset();
        !self.channel.reset_pending()
    }

    /// One inflate batch. Returns whether to continue, and whether an allocation failed.
    fn inflate_batch(
        &mut self,
        want: Frames,
        large_ok: &mut bool,
        refused: &mut [usize; 2],
    ) -> (bool, bool) {
        let size = if *large_ok && want >= PageSize::Large.frames() {
            PageSize::Large
        } else {
            PageSize::Small
        };
        let mut ask = usize::try_from(want.whole_pages(size))
            .unwrap_or(BATCH_CAPACITY)
            .clamp(1, BATCH_CAPACITY);
        let chunk = loop {
            if let Some(c) = self.guest.allocate(size, ask) {
                break Some(c);
            }
            if let Some(f) = self.stats.alloc_failures.get_mut(size.index()) {
                *f = f.saturating_add(1);
            }
            if size == PageSize::Large || ask == 1 {
                break None;
            }
            ask /= 2;
        };
        let Some(mut chunk) = chunk else {
            if size == PageSize::Large {
                *large_ok = false;
                return (true, false);
            }
            return (false, true);
        };
        let got = self.guest.page_count(&chunk);
        let guest = &self.guest;
        let t = self
            .channel
            .transfer(Direction::Lock, size, got, |i| guest.pfn(&chunk, i));
        let done = t.done.len();
        let mut hold = PageMask::EMPTY;
        let already = refused.iter().sum::<usize>();
        if size == PageSize::Small {
            for i in t
                .refused
                .iter()
                .take(PEER_HELD_REFUSED.saturating_sub(already))
            {
                hold.insert(i);
            }
        }
        if let Some(r) = refused.get_mut(size.index()) {
            *r = r.saturating_add(t.refused.len());
        }
        if let Some(r) = self.stats.refused.get_mut(size.index()) {
            *r = r.saturating_add(t.refused.len() as u64);
        }
        self.guest.retain(&mut chunk, &t.done, &hold);
        if done == 0 {
            self.guest.free(chunk);
        } else {
            self.guest.store(chunk, StorePosition::First);
        }
        self.add(size, done, true);
        if let Some(s) = self.stats.inflated.get_mut(size.index()) {
            *s = s.saturating_add(done as u64);
        }
        if t.stop.is_some() || t.not_needed {
            return (false, false);
        }
        if refused.get(size.index()).copied().unwrap_or(0) >= PEER_HELD_REFUSED {
            *large_ok = false;
            return (size == PageSize::Large, false);
        }
        (done > 0 || !t.refused.is_empty(), false)
    }

    /// One deflate batch toward `surplus` fewer frames. Returns whether to continue.
    fn deflate_batch(&mut self, surplus: Frames) -> bool {
        let found = PageSize::ALL.into_iter().find_map(|size| {
            if surplus < size.frames() {
                return None;
            }
            self.guest.take(size).map(|c| (size, c))
        });
        let Some((size, mut chunk)) = found else {
            return false;
        };
        let count = self.guest.page_count(&chunk);
        let n = usize::try_from(surplus.whole_pages(size))
            .unwrap_or(BATCH_CAPACITY)
            .min(count)
            .min(BATCH_CAPACITY);
        let guest = &self.guest;
        let t = self
            .channel
            .transfer(Direction::Unlock, size, n, |i| guest.pfn(&chunk, i));
        let done = t.done.len();
        let keep = t.done.complement_within(count);
        self.guest.retain(&mut chunk, &keep, &PageMask::EMPTY);
        if self.guest.page_count(&chunk) == 0 {
            self.guest.free(chunk);
        } else {
            self.guest.store(chunk, StorePosition::First);
        }
        self.add(size, done, false);
        if let Some(s) = self.stats.deflated.get_mut(size.index()) {
            *s = s.saturating_add(done as u64);
        }
        t.stop.is_none() && done == n && done > 0
    }
}

impl BalloonDriver for NaiveDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Naive
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn wakes_on_low_memory(&self) -> bool {
        false
    }

    fn tick(&mut self) -> DriverTick {
        self.stats.ticks = self.stats.ticks.saturating_add(1);
        let calls_before = self.channel.stats().total();
        let mut out = DriverTick::default();
        let running = !self.channel.reset_pending() || self.reset();
        // RAM as Linux reads it (`totalram_pages()`), without a memory snapshot.
        let total = self.guest.total_frames();
        if running && self.channel.get_target(total).is_ok() {
            let mut large_ok = self.channel.session().is_some_and(|s| s.large_pages);
            let mut refused = [0usize; 2];
            let mut batches = 0u32;
            loop {
                if self.channel.reset_pending() {
                    break;
                }
                if batches >= MAX_BATCHES_PER_TICK {
                    out.more_work = true;
                    break;
                }
                batches += 1;
                // The host may change its target in any reply.
                let target = self.channel.target();
                let size = self.size();
                let go_on = if size < target {
                    let (go_on, failed) = self.inflate_batch(
                        target.saturating_sub(size),
                        &mut large_ok,
                        &mut refused,
                    );
                    if failed {
                        out.reason = Some(ClampReason::AllocationFailed);
                    }
                    go_on
                } else if size > target
                    && (target.is_zero() || size.saturating_sub(target) >= SLACK)
                {
                    self.deflate_batch(size.saturating_sub(target))
                } else {
                    false
                };
                if !go_on {
                    break;
                }
            }
        }
        self.guest.free_refused();
        out.target = self.channel.target();
        out.balloon = self.size();
        out.calls = u32::try_from(self.channel.stats().total().saturating_sub(calls_before))
            .unwrap_or(u32::MAX);
        out
    }

    fn shutdown(&mut self) {
        if self.channel.session().is_some() {
            let _ = self.channel.stop();
        }
        self.pop_all();
    }

    fn balloon(&self) -> Frames {
        self.size()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        vec![
            ("ticks", s.ticks),
            ("inflated-4k", s.inflated[0]),
            ("inflated-2m", s.inflated[1]),
            ("deflated-4k", s.deflated[0]),
            ("deflated-2m", s.deflated[1]),
            ("refused-4k", s.refused[0]),
            ("refused-2m", s.refused[1]),
            ("alloc-fail-4k", s.alloc_failures[0]),
            ("alloc-fail-2m", s.alloc_failures[1]),
            ("resets", s.resets),
            ("frames-popped", s.popped_frames),
        ]
    }
}
