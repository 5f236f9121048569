//! The cost model: what a real guest and host would pay, in time, for the work a balloon
//! does in the simulator, and in nonpaged memory for its bookkeeping.
//!
//! Every simulated operation that a real balloon pays for charges its modelled cost to the
//! shared clock (the engine's [`vmballoon_core::platform::Clock`] is the simulator's
//! `ManualClock`), so a long tick takes simulated time, other events wait for it, and the
//! engine's `TICK_BUDGET` (250 ms of `Clock::now`) really bounds a tick. Where it is
//! charged:
//!
//! | what | charged by | parameter |
//! |---|---|---|
//! | one backdoor call (VM exit, dispatch, VM entry) | [`crate::FakeHost`] | [`CostModel::call_ns`] |
//! | the host's work per page locked / unlocked | [`crate::FakeHost`] | `host_*_ns` |
//! | `MmAllocatePagesForMdlEx` per page, zeroing if the driver zeroes | [`crate::FakeGuest`] | `alloc_*_ns`, [`CostModel::zero_bytes_per_s`] |
//! | `MmFreePagesFromMdl` per page | [`crate::FakeGuest`] | `free_*_ns` |
//! | the MDL itself (pool allocation, free) per chunk | [`crate::FakeGuest`] | `mdl_*_ns` |
//! | a memory snapshot (`ZwQuerySystemInformation`) | [`crate::FakeGuest`] | [`CostModel::snapshot_ns`] |
//! | an allocation that waits for the working-set manager (OVT CANSLEEP) | [`crate::guest::PeerPages`] | `trim_wait_ns`, `page_out_ns` |
//!
//! Every figure is a parameter. None of them is a measurement of a real VMware host (its
//! balloon handler is closed source, and `docs/protocol.md` §11 forbids using leaked vmkernel
//! code); each default states its source or the reasoning behind it, and the benchmark
//! report shows how much each term contributes, so a reader can rescale. Every timing the
//! simulator derives from this model is labelled *modelled*.
//!
//! The engine's own CPU work (planning, batch encoding) is not charged here: it is
//! measured separately (criterion and callgrind in `vmballoon-core`, a few ns per frame)
//! and is two orders of magnitude below the per-frame costs modelled here.

use std::collections::BTreeMap;

use vmballoon_core::protocol::{BATCH_CAPACITY, Command};
use vmballoon_core::units::{Duration, PageSize};

/// The modelled costs. See each field for its source or assumption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostModel {
    /// One balloon backdoor call (`IN EAX, DX` on port 0x5670), whatever it carries: the
    /// VM exit and entry plus the host's dispatch to its balloon handler. **5 µs.**
    ///
    /// Hardware VM exit + entry alone is about 1,000–1,500 cycles, ≈ 0.5 µs at 3 GHz
    /// (Agesen et al., "Software Techniques for Avoiding Hardware Virtualization Exits",
    /// USENIX ATC 2012, VMware; a 2020 KVM measurement on LKML shows ≈ 1,350 cycles for the
    /// VMRUN round trip alone). A port-I/O exit on ESXi is decoded by the VMM and the balloon
    /// command is served by the host's memory scheduler, which takes locks and recomputes
    /// the target it returns in EBX: assumed ≈ 4.5 µs more (unmeasured; VMware's handler is
    /// closed source). Port-I/O exits handled outside the hypervisor core cost several µs
    /// on every hypervisor, so 5 µs is a middle-of-the-range figure.
    pub call_ns: u64,
    /// Host work per 4 KiB frame locked (LOCK or one BATCHED_LOCK entry): validate the
    /// PPN, drop its mapping, return the machine page to the host. **200 ns** (assumption:
    /// a page-table update and a free-list operation, a few hundred cycles each; the TLB
    /// flush is counted once per call in `call_ns`).
    pub host_lock_4k_ns: u64,
    /// Host work per 2 MiB page locked (one BATCHED_2M_LOCK entry): one large mapping and
    /// one large machine page. **2 µs** (assumption: 10 × the 4 KiB figure, not 512 ×).
    pub host_lock_2m_ns: u64,
    /// Host work per 4 KiB frame unlocked: mark it not ballooned; the host backs it again
    /// lazily at the guest's next touch, outside the balloon path. **100 ns** (assumption).
    pub host_unlock_4k_ns: u64,
    /// Host work per 2 MiB page unlocked. **1 µs** (assumption, as for lock).
    pub host_unlock_2m_ns: u64,
    /// Guest: `MmAllocatePagesForMdlEx` per 4 KiB page with `MM_DONT_ZERO_ALLOCATION`:
    /// take the page off a free or standby list, update its PFN entry, write the MDL's PFN
    /// slot. **100 ns** (assumption: a few PFN-database cache misses per page).
    pub alloc_4k_ns: u64,
    /// Guest: per 2 MiB page with `MM_ALLOCATE_FAST_LARGE_PAGES` (taken whole from the
    /// large-page cache; 512 PFN entries and 512 MDL slots written). **3 µs** (assumption:
    /// ≈ 6 ns per frame of sequential writes).
    pub alloc_2m_ns: u64,
    /// Guest memory bandwidth for zeroing pages, in bytes per second, when a driver asks
    /// for zeroed pages (plain `MmAllocatePagesForMdl` always zeroes). **10 GB/s**:
    /// single-core `memset` bandwidth of a current server core (DDR4/DDR5: 10–20 GB/s
    /// with non-temporal stores). 4 KiB then costs ≈ 410 ns, 2 MiB ≈ 210 µs. Zeroing a
    /// page the host had reclaimed also makes the host back it again (an EPT fault per
    /// page); that is not modelled. vmballoon (like virtio-win, `docs/windows-memory.md` §1.3)
    /// passes `MM_DONT_ZERO_ALLOCATION`; Linux's balloon allocations have no `__GFP_ZERO`
    /// (`docs/protocol.md` §6.3), and OVT's allocation types name no zeroing (§7): no modelled
    /// driver zeroes.
    pub zero_bytes_per_s: u64,
    /// Guest: `MmFreePagesFromMdl` per 4 KiB page. **60 ns** (assumption).
    pub free_4k_ns: u64,
    /// Guest: per 2 MiB page freed. **2 µs** (assumption).
    pub free_2m_ns: u64,
    /// Guest: allocating and initialising one MDL (nonpaged pool), per chunk, also for an
    /// allocation that returns nothing. **300 ns** (assumption: one pool allocation).
    pub mdl_alloc_ns: u64,
    /// Guest: freeing one MDL (`ExFreePool`). **200 ns** (assumption).
    pub mdl_free_ns: u64,
    /// Guest: one memory snapshot (`ZwQuerySystemInformation`, system performance
    /// information, plus reading `LowMemoryCondition`); vmballoon takes one before every
    /// batch. **2 µs** (assumption: a kernel-internal call that sums per-processor
    /// counters).
    pub snapshot_ns: u64,
    /// Guest: an allocation that waits for memory (OVT's CANSLEEP on this guest, like
    /// `MM_ALLOCATE_TRIM_IF_NECESSARY`, whose waiting is not documented) waits this long once
    /// when it had to trim. **10 ms** (an assumption).
    pub trim_wait_ns: u64,
    /// Guest: paging out one trimmed pageable page (written to the page file; half of them
    /// assumed dirty, 4 KiB at ≈ 400 MB/s). **5 µs** (assumption).
    pub page_out_ns: u64,
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            call_ns: 5_000,
            host_lock_4k_ns: 200,
            host_lock_2m_ns: 2_000,
            host_unlock_4k_ns: 100,
            host_unlock_2m_ns: 1_000,
            alloc_4k_ns: 100,
            alloc_2m_ns: 3_000,
            zero_bytes_per_s: 10_000_000_000,
            free_4k_ns: 60,
            free_2m_ns: 2_000,
            mdl_alloc_ns: 300,
            mdl_free_ns: 200,
            snapshot_ns: 2_000,
            trim_wait_ns: 10_000_000,
            page_out_ns: 5_000,
        }
    }
}

/// What a unit of modelled time was spent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Work {
    /// Backdoor calls: exit, dispatch, entry.
    Calls,
    /// Host work on locked pages.
    HostLock,
    /// Host work on unlocked pages.
    HostUnlock,
    /// Guest page allocation (without zeroing).
    Alloc,
    /// Zeroing allocated pages.
    Zero,
    /// Freeing pages.
    Free,
    /// MDL pool allocations and frees.
    Mdl,
    /// Memory snapshots.
    Snapshot,
    /// Waiting for trimming and paging out (CANSLEEP allocations).
    TrimWait,
}

impl Work {
    /// Every category, in report order.
    pub const ALL: [Self; 9] = [
        Self::Calls,
        Self::HostLock,
        Self::HostUnlock,
        Self::Alloc,
        Self::Zero,
        Self::Free,
        Self::Mdl,
        Self::Snapshot,
        Self::TrimWait,
    ];

    /// The name used in JSON and reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Calls => "calls",
            Self::HostLock => "host-lock",
            Self::HostUnlock => "host-unlock",
            Self::Alloc => "alloc",
            Self::Zero => "zero",
            Self::Free => "free",
            Self::Mdl => "mdl",
            Self::Snapshot => "snapshot",
            Self::TrimWait => "trim-wait",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Modelled time spent, per [`Work`] category.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CostMeter {
    ns: [u64; 9],
}

impl CostMeter {
    /// Adds `ns` to `work`.
    pub fn add(&mut self, work: Work, ns: u64) {
        if let Some(v) = self.ns.get_mut(work.index()) {
            *v = v.saturating_add(ns);
        }
    }

    /// Nanoseconds spent on `work`.
    #[must_use]
    pub fn get(&self, work: Work) -> u64 {
        self.ns.get(work.index()).copied().unwrap_or(0)
    }

    /// What was spent since `earlier` (a reading of the same meter).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let mut out = Self::default();
        for ((o, a), b) in out.ns.iter_mut().zip(self.ns).zip(earlier.ns) {
            *o = a.saturating_sub(b);
        }
        out
    }

    /// Nanoseconds spent in total.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.ns.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// Seconds per category (only categories with time), for JSON.
    #[must_use]
    pub fn seconds(&self) -> BTreeMap<String, f64> {
        Work::ALL
            .iter()
            .filter(|w| self.get(**w) > 0)
            .map(|w| (w.name().to_owned(), self.get(*w) as f64 / 1e9))
            .collect()
    }
}

/// Frames in a page of `size` (1 or 512).
fn frames(size: PageSize) -> u64 {
    size.frames().get()
}

impl CostModel {
    /// A model in which nothing costs time (the simulator before it had a cost model: every
    /// tick is instantaneous).
    #[must_use]
    pub const fn free() -> Self {
        Self {
            call_ns: 0,
            host_lock_4k_ns: 0,
            host_lock_2m_ns: 0,
            host_unlock_4k_ns: 0,
            host_unlock_2m_ns: 0,
            alloc_4k_ns: 0,
            alloc_2m_ns: 0,
            zero_bytes_per_s: 0,
            free_4k_ns: 0,
            free_2m_ns: 0,
            mdl_alloc_ns: 0,
            mdl_free_ns: 0,
            snapshot_ns: 0,
            trim_wait_ns: 0,
            page_out_ns: 0,
        }
    }

    /// The host's per-page work for `entries` pages moved by `command`, if it moves pages:
    /// `(category, ns)`.
    #[must_use]
    pub fn host_work(&self, command: Command, entries: u64) -> Option<(Work, u64)> {
        let entries = entries.min(BATCH_CAPACITY as u64);
        let (work, per) = match command {
            Command::Lock => return Some((Work::HostLock, self.host_lock_4k_ns)),
            Command::Unlock => return Some((Work::HostUnlock, self.host_unlock_4k_ns)),
            Command::BatchedLock => (Work::HostLock, self.host_lock_4k_ns),
            Command::BatchedUnlock => (Work::HostUnlock, self.host_unlock_4k_ns),
            Command::Batched2mLock => (Work::HostLock, self.host_lock_2m_ns),
            Command::Batched2mUnlock => (Work::HostUnlock, self.host_unlock_2m_ns),
            _ => return None,
        };
        Some((work, per.saturating_mul(entries)))
    }

    /// Allocating `pages` pages of `size` (without zeroing).
    #[must_use]
    pub fn alloc(&self, size: PageSize, pages: u64) -> u64 {
        let per = match size {
            PageSize::Small => self.alloc_4k_ns,
            PageSize::Large => self.alloc_2m_ns,
        };
        per.saturating_mul(pages)
    }

    /// Zeroing `pages` pages of `size` at [`CostModel::zero_bytes_per_s`].
    #[must_use]
    pub fn zero(&self, size: PageSize, pages: u64) -> u64 {
        if self.zero_bytes_per_s == 0 {
            return 0;
        }
        let bytes = u128::from(pages) * u128::from(size.bytes());
        let ns = bytes * 1_000_000_000 / u128::from(self.zero_bytes_per_s);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Freeing `pages` pages of `size`.
    #[must_use]
    pub fn free_pages(&self, size: PageSize, pages: u64) -> u64 {
        let per = match size {
            PageSize::Small => self.free_4k_ns,
            PageSize::Large => self.free_2m_ns,
        };
        per.saturating_mul(pages)
    }

    /// The modelled time of moving `frames` 4 KiB frames in pages of `size`, `per_call`
    /// pages per backdoor call, lock (`true`) or unlock, including the guest's allocation
    /// or free and the MDL work: the floor a driver can reach on this model (no snapshot,
    /// no TARGET). Used by the report to put measured times next to what the model allows.
    #[must_use]
    pub fn floor(&self, size: PageSize, frames_moved: u64, per_call: u64, lock: bool) -> Duration {
        let pages = frames_moved / frames(size).max(1);
        let calls = pages.div_ceil(per_call.max(1));
        let chunks = pages.div_ceil(BATCH_CAPACITY as u64);
        let host = self
            .host_work(
                match (lock, size) {
                    (true, PageSize::Small) => Command::BatchedLock,
                    (true, PageSize::Large) => Command::Batched2mLock,
                    (false, PageSize::Small) => Command::BatchedUnlock,
                    (false, PageSize::Large) => Command::Batched2mUnlock,
                },
                1,
            )
            .map_or(0, |(_, ns)| ns)
            .saturating_mul(pages);
        let guest = if lock {
            self.alloc(size, pages)
                .saturating_add(self.mdl_alloc_ns.saturating_mul(chunks))
        } else {
            self.free_pages(size, pages)
                .saturating_add(self.mdl_free_ns.saturating_mul(chunks))
        };
        Duration::from_nanos(
            self.call_ns
                .saturating_mul(calls)
                .saturating_add(host)
                .saturating_add(guest),
        )
    }
}

/// How nonpaged pool rounds an allocation (for the MDL bookkeeping figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolModel {
    /// The bytes asked for, no overhead (a lower bound).
    Raw,
    /// Windows 10 1903+ (the kernel pool is the segment heap): allocations up to
    /// [`SEGMENT_HEAP_SMALL_MAX`] come from variable-size or low-fragmentation segments with
    /// a 16-byte `POOL_HEADER` and a 16-byte chunk header, in 16-byte granules; larger ones
    /// are page-granular. This is the report's default.
    SegmentHeap,
    /// Page-rounded big-pool allocations (the pre-1903 pool, where anything over
    /// 4096 − 16 bytes is a whole number of pages): the sensitivity case. A 512-page 4 KiB
    /// chunk's 4,144-byte MDL then costs 8 KiB.
    PageRounded,
}

/// The largest segment-heap pool allocation not rounded to pages (≈ 508 KiB, the
/// variable-size/segment backends' limit in the kernel pool).
pub const SEGMENT_HEAP_SMALL_MAX: u64 = 508 * 1024;

/// The guest's modified page writer: bytes of dirty pages written to the page file per
/// second, after which they are standby pages, available again (the guest model's
/// trimming, `docs/windows-memory.md` §3.6). **128 MiB/s.** An assumption, not a measurement:
/// Microsoft documents only that the system "may start writing dirty transition pages to
/// their backing store as soon as such pages become available", not how fast; 128 MiB/s
/// is a modest sequential write rate for a virtual disk on SSD-backed storage (a
/// slower disk makes the guest free memory more slowly, so the figure is a parameter of
/// the model, not of any balloon). It is not a balloon cost: no balloon's modelled time
/// includes it.
pub const PAGE_WRITE_BYTES_PER_S: u64 = 128 * 1024 * 1024;

/// `sizeof(MDL)` on x64 (`docs/windows-memory.md` §1.5): the PFN array follows it.
pub const MDL_HEADER_BYTES: u64 = 0x30;

/// Bytes of one PFN entry on x64.
pub const PFN_ENTRY_BYTES: u64 = 8;

const fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to).saturating_mul(to)
}

impl PoolModel {
    /// Every model, in report order.
    pub const ALL: [Self; 3] = [Self::SegmentHeap, Self::PageRounded, Self::Raw];

    /// The name used in reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw bytes (no pool overhead)",
            Self::SegmentHeap => "segment heap (Windows 10 1903+)",
            Self::PageRounded => "page-rounded big pool",
        }
    }

    /// Nonpaged bytes consumed by one allocation of `request` bytes.
    #[must_use]
    pub const fn bytes(self, request: u64) -> u64 {
        match self {
            Self::Raw => request,
            Self::SegmentHeap => {
                if request <= SEGMENT_HEAP_SMALL_MAX {
                    round_up(request.saturating_add(32), 16)
                } else {
                    round_up(request, 4096)
                }
            }
            Self::PageRounded => {
                if request <= 4096 - 16 {
                    round_up(request.saturating_add(16), 16)
                } else {
                    round_up(request, 4096)
                }
            }
        }
    }
}

/// Bytes of an MDL describing `frames` 4 KiB frames (its header and PFN array).
#[must_use]
pub const fn mdl_bytes(frames: u64) -> u64 {
    MDL_HEADER_BYTES.saturating_add(frames.saturating_mul(PFN_ENTRY_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mdl_sizes_follow_the_x64_layout() {
        assert_eq!(mdl_bytes(512), 4144);
        assert_eq!(mdl_bytes(16), 176);
        assert_eq!(mdl_bytes(512 * 512), 2_097_200);
    }

    #[test]
    fn pool_models_round_as_documented() {
        assert_eq!(PoolModel::Raw.bytes(4144), 4144);
        assert_eq!(PoolModel::SegmentHeap.bytes(4144), 4176);
        assert_eq!(PoolModel::PageRounded.bytes(4144), 8192);
        assert_eq!(PoolModel::PageRounded.bytes(176), 192);
        // A 2 MiB-page chunk's MDL (1 GiB) is page-granular in both.
        assert_eq!(PoolModel::SegmentHeap.bytes(2_097_200), 2_101_248);
        assert_eq!(PoolModel::PageRounded.bytes(2_097_200), 2_101_248);
    }

    #[test]
    fn call_and_page_costs() {
        let m = CostModel::default();
        assert_eq!(m.host_work(Command::Target, 0), None);
        assert_eq!(
            m.host_work(Command::BatchedLock, 512),
            Some((Work::HostLock, 102_400))
        );
        assert_eq!(
            m.host_work(Command::Batched2mUnlock, 8),
            Some((Work::HostUnlock, 8_000))
        );
        assert_eq!(m.host_work(Command::Lock, 99), Some((Work::HostLock, 200)));
        assert_eq!(m.zero(PageSize::Small, 1), 409);
        assert_eq!(m.zero(PageSize::Large, 1), 209_715);
        assert_eq!(CostModel::free().zero(PageSize::Small, 10), 0);
        // 1 GiB of 4 KiB pages, batched: 512 calls + 262144 × (200 + 100) ns + 512 MDLs.
        let f = m.floor(PageSize::Small, 262_144, 512, true);
        assert_eq!(f.as_nanos(), 512 * 5_000 + 262_144 * 300 + 512 * 300);
    }

    #[test]
    fn meter_adds_up() {
        let mut m = CostMeter::default();
        m.add(Work::Calls, 5);
        m.add(Work::Alloc, 7);
        m.add(Work::Calls, u64::MAX);
        assert_eq!(m.get(Work::Calls), u64::MAX);
        assert_eq!(m.total(), u64::MAX);
        assert_eq!(m.seconds().len(), 2);
    }
}
