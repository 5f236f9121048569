//! Peer balloon algorithms: VMware's public drivers, modelled from `docs/protocol.md` so the
//! benchmark can run them side by side with vmballoon on the same simulated host and
//! guest ([`crate::bench`], `cargo xtask bench`).
//!
//! * [`LinuxVmwDriver`] (`--policy linux-vmw`): the current Linux `vmw_balloon.c`
//!   (`docs/protocol.md` §6.0, §6.3);
//! * [`OvtClassicDriver`] (`--policy ovt-classic`): open-vm-tools' shared `vmballoon.c`
//!   with its adaptive rates (`docs/protocol.md` §7).
//!
//! Both are ported to the simulated Windows guest the way the naive model is: they
//! allocate through the same [`PeerPages`] (`MmAllocatePagesForMdlEx` semantics: no
//! waiting, no zeroing, no placement flag, one MDL per allocation call) and talk to the
//! same [`FakeHost`](crate::FakeHost) through the core's `Channel`, which counts every call
//! and turns per-entry statuses into done / refused / not-needed as for the engine. The
//! host model's hostile mode answers per-entry PPN_PINNED, PPN_NOTNEEDED, BUSY and RESET
//! (`host_refuse_next`, `host_entry_status`), so the drivers' differences in handling
//! them show: Linux refuses every such page and ends the pass after 16
//! (`vmballoon_handle_one_result`), OVT frees RESET and NOTNEEDED pages and goes on
//! (`BalloonLockBatched`), both end a single-page pass at the first page not locked, and
//! OVT reads the per-entry statuses from the batch page itself, as it does.
//!
//! What the ports share (this module): the page counts per size ([`Held`]), the
//! uncoordinated pop ([`pop_all`]), page-at-a-time allocation over the MDL allocator
//! ([`allocate_pages`]) and taking ballooned pages back by count ([`dequeue`]).

pub mod linux_vmw;
pub mod naive;
pub mod ovt;

pub use linux_vmw::LinuxVmwDriver;
pub use naive::NaiveDriver;
pub use ovt::OvtClassicDriver;

use vmballoon_core::platform::StorePosition;
use vmballoon_core::units::{Frames, PageSize};

use crate::guest::{GuestChunk, PeerPages};

/// Pages the host holds, per page size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held([u64; 2]);

impl Held {
    /// Frames held (a 2 MiB page counts 512).
    #[must_use]
    pub fn frames(&self) -> Frames {
        let [small, large] = self.0;
        Frames::new(small).saturating_add(PageSize::Large.frames().saturating_mul(large))
    }

    /// Pages of `size` held.
    #[must_use]
    pub fn pages(&self, size: PageSize) -> u64 {
        self.0.get(size.index()).copied().unwrap_or(0)
    }

    /// `n` more pages of `size`.
    pub fn add(&mut self, size: PageSize, n: usize) {
        if let Some(h) = self.0.get_mut(size.index()) {
            *h = h.saturating_add(n as u64);
        }
    }

    /// `n` fewer pages of `size`.
    pub fn sub(&mut self, size: PageSize, n: usize) {
        if let Some(h) = self.0.get_mut(size.index()) {
            *h = h.saturating_sub(n as u64);
        }
    }

    /// Nothing held.
    pub fn clear(&mut self) {
        self.0 = [0; 2];
    }
}

/// Frees every stored page without UNLOCK (the host no longer holds them, or is told
/// first by START): Linux `vmballoon_pop`, OVT's reset. Returns the frames freed.
pub fn pop_all(guest: &mut PeerPages) -> u64 {
    let mut frames = 0u64;
    for size in PageSize::ALL {
        while let Some(chunk) = guest.take(size) {
            frames =
                frames.saturating_add((chunk.len() as u64).saturating_mul(size.frames().get()));
            guest.free(chunk);
        }
    }
    frames
}

/// How a page-at-a-time driver's allocation loop maps onto the MDL allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alloc {
    /// Take free pages only, never wait (Linux `__GFP_NORETRY`/no reclaim, OVT NOSLEEP
    /// and LPAGE, `MM_ALLOCATE_NO_WAIT`).
    NoWait,
    /// May wait for the working-set manager to page out pageable memory (OVT CANSLEEP).
    Waiting,
}

/// Allocates up to `pages` pages of `size` as a driver that allocates page by page until
/// the first failure would: as many as the guest can give. The MDL allocator charges the
/// whole request up front and returns nothing when the charge fails, so a request that
/// comes back empty is retried with half as many pages, down to one; a short chunk ends
/// the loop (free pages are exhausted). The pieces are merged into one chunk. `None` when
/// not one page could be had.
pub fn allocate_pages(
    guest: &mut PeerPages,
    size: PageSize,
    pages: usize,
    how: Alloc,
) -> Option<GuestChunk> {
    let mut out: Option<GuestChunk> = None;
    let mut want = pages;
    let mut ask = pages;
    while want > 0 && ask > 0 {
        let got = match (how, size) {
            (Alloc::Waiting, PageSize::Small) => guest.allocate_waiting(ask),
            _ => guest.allocate(size, ask),
        };
        let Some(chunk) = got else {
            ask /= 2;
            continue;
        };
        let n = chunk.len();
        want = want.saturating_sub(n);
        out = Some(match out {
            None => chunk,
            Some(mut acc) => {
                if let Err(c) = guest.append(&mut acc, chunk) {
                    // Same size by construction; never drop pages all the same.
                    guest.free(c);
                }
                acc
            }
        });
        if n < ask {
            break;
        }
        ask = want;
    }
    out
}

/// Takes up to `n` ballooned pages of `size` from the store (several stored chunks merged
/// into one; what is left of the last one is stored back first). `None` when none is
/// stored.
pub fn dequeue(guest: &mut PeerPages, size: PageSize, n: usize) -> Option<GuestChunk> {
    let mut out: Option<GuestChunk> = None;
    let mut want = n;
    while want > 0 {
        let Some(mut chunk) = guest.take(size) else {
            break;
        };
        let piece = if chunk.len() > want {
            let front = guest.take_front(&mut chunk, want);
            guest.store(chunk, StorePosition::First);
            front
        } else {
            chunk
        };
        want = want.saturating_sub(piece.len());
        out = Some(match out {
            None => piece,
            Some(mut acc) => {
                if let Err(p) = guest.append(&mut acc, piece) {
                    guest.store(p, StorePosition::First);
                }
                acc
            }
        });
    }
    out
}

/// Stores `chunk` if it has pages, frees it (its MDL) otherwise.
pub fn keep_or_free(guest: &mut PeerPages, chunk: GuestChunk, position: StorePosition) {
    if chunk.is_empty() {
        guest.free(chunk);
    } else {
        guest.store(chunk, position);
    }
}

/// A rig for the peer models' tests: one world, one driver, time by hand.
#[cfg(test)]
pub(crate) mod rig {
    use vmballoon_core::config::Config;
    use vmballoon_core::fake::ManualClock;
    use vmballoon_core::protocol::{Capabilities, Command};
    use vmballoon_core::units::{Duration, Frames};

    use crate::driver::{BalloonDriver, DriverKind};
    use crate::guest::{GuestModel, GuestSpec, PageableLayout};
    use crate::host::{HostModel, HostSpec};
    use crate::world::{SharedWorld, World};

    /// Hosts the tests run on.
    pub(crate) const LEGACY: Option<Capabilities> = None;
    pub(crate) const BATCHED_4K: Option<Capabilities> =
        Some(Capabilities::BASIC.union(Capabilities::BATCHED));
    pub(crate) const BATCHED_2M: Option<Capabilities> = Some(
        Capabilities::BASIC
            .union(Capabilities::BATCHED)
            .union(Capabilities::BATCHED_2M),
    );

    pub(crate) struct Rig {
        pub(crate) world: SharedWorld,
        pub(crate) clock: ManualClock,
        pub(crate) driver: Box<dyn BalloonDriver>,
    }

    impl Rig {
        /// A guest of `ram_mib` (2 MiB of OS memory, a page file as large as RAM) and a
        /// host granting `caps`, with no host-side cap.
        pub(crate) fn new(kind: DriverKind, ram_mib: u64, caps: Option<Capabilities>) -> Self {
            let guest = GuestModel::new(GuestSpec {
                ram: Frames::from_mib(ram_mib),
                os_locked: Frames::from_mib(2),
                pagefile: Frames::from_mib(ram_mib),
                committed: Frames::ZERO,
                layout: PageableLayout::Packed,
            });
            let ram = guest.total();
            let host = HostModel::new(
                HostSpec {
                    capabilities: caps,
                    max_balloon_percent: 0,
                },
                ram,
            );
            let clock = ManualClock::new();
            let world = World::new(guest, host, clock.clone());
            let driver = kind.build(&world, &clock, Config::default());
            Self {
                world,
                clock,
                driver,
            }
        }

        /// Sets the host's target (frames).
        pub(crate) fn target(&self, frames: u64) {
            self.world.borrow_mut().host.set_target(Frames::new(frames));
        }

        /// One tick, a second after the last. Returns the LOCK-family calls it made.
        pub(crate) fn tick(&mut self) -> u64 {
            let before = self.lock_calls();
            self.clock.advance(Duration::from_secs(1));
            self.driver.tick();
            self.lock_calls() - before
        }

        /// LOCK-family calls so far.
        pub(crate) fn lock_calls(&self) -> u64 {
            let w = self.world.borrow();
            [Command::Lock, Command::BatchedLock, Command::Batched2mLock]
                .into_iter()
                .map(|c| w.host.calls().calls(c))
                .sum()
        }

        /// Calls of `command` so far.
        pub(crate) fn calls(&self, command: Command) -> u64 {
            self.world.borrow().host.calls().calls(command)
        }

        /// The balloon (frames the driver believes the host holds).
        pub(crate) fn balloon(&self) -> u64 {
            self.driver.balloon().get()
        }

        /// A counter of the driver's.
        pub(crate) fn counter(&self, name: &str) -> u64 {
            self.driver
                .counters()
                .into_iter()
                .find(|(k, _)| *k == name)
                .map_or(0, |(_, v)| v)
        }

        /// Unloads and checks the protocol, the leak check and the models.
        pub(crate) fn finish(mut self) {
            self.driver.shutdown();
            let w = self.world.borrow();
            let v: Vec<String> = w
                .checker
                .violations()
                .iter()
                .map(ToString::to_string)
                .collect();
            assert!(v.is_empty(), "{v:#?}");
            assert!(w.guest.balloon_frames().is_zero(), "frames left charged");
            assert!(w.guest.dropped_frames().is_zero(), "dropped frames");
            assert_eq!(w.guest.self_check(), Vec::<String>::new());
            assert!(w.host.held_frames().is_zero());
        }
    }
}
