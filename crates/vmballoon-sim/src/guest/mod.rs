//! [`GuestModel`]: a model of the Windows memory manager, and [`FakeGuest`], the handle
//! that implements the core's [`PageAllocator`](vmballoon_core::platform::PageAllocator) and
//! [`MemorySource`](vmballoon_core::platform::MemorySource) over it.
//!
//! Every modelling rule cites its public source or says it is an assumption; the tables
//! with the sources are `docs/windows-memory.md` §3.6 (trimming), §3.7 (placement), §3.8
//! (allocations that wait and allocations that cannot) and §3.9 (the balloon's
//! accounting).
//!
//! # The model
//!
//! RAM is an array of 4 KiB frames grouped in 2 MiB blocks of 512 frames (PFN = frame
//! index, RAM starts at PFN 0, no holes). Every frame has exactly one [`Owner`]:
//!
//! | owner | what it models | available | resident available | commit |
//! |---|---|---|---|---|
//! | `Free` | free and zeroed lists | yes | counted | — |
//! | `Os` | kernel, drivers, nonpaged pool (`os_locked_mib`), the driver's batch page | — | charged | charged |
//! | `Pinned` | `VirtualLock`, AWE, large pages, other drivers' MDLs, nonpaged pool, `MmProbeAndLockPages` (`lock_mib`) | — | charged | charged (but `MmProbeAndLockPages`) |
//! | `Pageable` | working-set pages of pageable commit (`committed_mib`, `commit_mib`) | — | counted | charged (all of the commit, resident or not) |
//! | `Modified` | trimmed dirty pages not yet written (the modified list) | — | counted | charged |
//! | `Standby` | trimmed pages written to the page file (the standby list) | yes | counted | charged |
//! | `Balloon` | pages `MmAllocatePagesForMdlEx` gave the balloon (in flight or stored) | — | charged if `mdl_accounting = "charged"` | the same |
//! | `HeldRefused` | balloon pages the host refused, held until the end of the cycle | — | as `Balloon` | as `Balloon` |
//!
//! so, as `docs/windows-memory.md` §1.6, §3.1 and §3.9 describe:
//!
//! * available = free + standby (`MEMORYSTATUSEX`: "standby, free, and zero lists");
//! * resident available = RAM − OS − pinned − the balloon's charge;
//! * commit limit = RAM + page file; committed = pageable commit + OS + pinned (but
//!   `MmProbeAndLockPages`) + the balloon's charge.
//!
//! # Modelling rules
//!
//! * **Trimming** (§3.6). A working-set pass ([`GuestModel::balance`]; the runner calls it
//!   once a second and 10 ms after available memory falls below the low threshold — an
//!   assumption) first lets the **modified page writer** catch up (it writes modified
//!   pages to the page file at [`crate::cost::PAGE_WRITE_BYTES_PER_S`], a cost-model
//!   assumption, and each written page becomes a standby page), then, while available
//!   memory plus the modified list is below the high-memory threshold (plus what
//!   allocations that cannot wait found missing), trims working-set pages to the modified
//!   list: **least recently used first**, only pages at least [`TRIM_MIN_AGE`] old, at
//!   most RAM / [`spec::TRIM_PASS_DIVISOR`] per pass (assumptions). Pages are never
//!   touched again after they became resident, so their age is the time since then.
//!   **Without a page file no pageable (private) page is ever trimmed.** Trimmed pages
//!   stay their request's: a release frees them too.
//! * **Free before standby** (§3.6, assumption): every allocation takes free frames first
//!   and repurposes standby pages, oldest first, only when none is left.
//! * **Placement** (§3.7). `MmAllocatePagesForMdlEx` with `MM_ALLOCATE_PREFER_CONTIGUOUS`
//!   (vmballoon's scattered units) takes 4 KiB pages best-fit: the partly free 2 MiB block
//!   with the fewest free frames first, then whole free blocks. Every other 4 KiB
//!   allocation (the peers' MDLs, which pass no placement flag, and every `lock_mib` kind)
//!   takes the lowest free frame (first fit): the documentation promises nothing about
//!   placement. 2 MiB pages need whole free blocks (`MM_ALLOCATE_FAST_LARGE_PAGES`: no
//!   compaction, fail fast).
//! * **`MmAllocatePagesForMdlEx` for the balloons** (§1.3, §3.9). Under the charged
//!   accounting the full request is charged to resident available and to commit up front,
//!   and if either charge would fail the call returns nothing (`NULL`); under the
//!   not-charged one nothing is checked. Otherwise it returns what the available pages
//!   allow (a short chunk), or nothing. It never waits.
//! * **Waiting allocations** ([`PeerPages::allocate_waiting`], OVT's CANSLEEP only):
//!   charged like `MmAllocatePagesForMdlEx`, but when available pages are short the memory
//!   manager writes modified pages and trims working-set pages (least recently used first,
//!   whatever their age) for what is missing, and waits for the writes; the frames
//!   reclaimed are counted ([`GuestModel::balloon_trimmed_frames`]).
//! * **Pinned requests** (`lock_mib`, §3.8). `virtual-lock`, `probe-and-lock` and
//!   `large-pages` **wait**: when the available pages are short they reclaim what is
//!   missing as a waiting allocation does (large pages take whole blocks holding no
//!   unmovable page, paging out or moving the pageable pages in them). `awe`,
//!   `driver-locked` and `nonpaged-pool` **cannot wait**: they take available pages as they
//!   are, with no synchronous trimming, and a shortfall only makes the next pass trim for
//!   it (an assumption). A request is all or nothing unless it is `partial_ok` (only the
//!   kinds that cannot wait): then it keeps a short grant and retries for the rest. A
//!   failed attempt ([`GuestModel::alloc_failures`]: an all-or-nothing request that could
//!   not complete, or a `partial_ok` one that got nothing) or a short grant
//!   ([`GuestModel::short_grants`]) is retried every simulated second until the request is
//!   complete or released (`docs/scenario-format.md`).
//! * **Pageable requests** (`commit_mib`) fail only on commit; their pages become resident
//!   in available frames as far as they go, the rest starts out paged out. Paged-out pages
//!   stay in the page file: the model does not simulate applications touching them again.
//! * **LowMemoryCondition** is signalled while available memory is below the threshold of
//!   the older MSDN text of `CreateMemoryResourceNotification`, "approximately 32 MB per
//!   4 GB, to a maximum of 64 MB", i.e. RAM/128 capped at 64 MiB (`docs/windows-memory.md`
//!   §3.3: an assumption for the kernel event). It is a level, not a latch: there is a gap
//!   between the low and the high-memory thresholds (3× the low one) where neither event
//!   is signalled.
//! * **Cost.** Every allocation, free and snapshot through [`FakeGuest`] charges its
//!   modelled cost to the shared clock ([`crate::cost`]); [`GuestModel`] itself is free.
//!
//! # Layout
//!
//! | module | what |
//! |---|---|
//! | [`spec`] | the guest's configuration and the vocabulary: [`GuestSpec`], [`PinKind`], [`PageableLayout`], [`Owner`], the limits |
//! | `frames` | the frame table and its accounting: every frame's owner, the free-block indexes, resident available, commit, available, LowMemoryCondition, trimming, the snapshot |
//! | [`requests`] | the guest's own requests (`lock_mib`, `commit_mib`): placing, failing and retrying, releasing |
//! | [`mdl`] | `MmAllocatePagesForMdlEx` and `MmFreePagesFromMdl` for the balloons: the charging rule, whole 2 MiB chunks, the outstanding-MDL registry that judges every free |
//! | [`platform`] | [`FakeGuest`]: vmballoon's `PageAllocator` and `MemorySource`, holding the engine to the whole-unit contract |
//! | [`peer`] | [`PeerPages`]: the page lists of the peer models (page-granular, as Linux) |

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use vmballoon_core::fake::VecStore;
use vmballoon_core::units::PageSize;

mod frames;
pub mod mdl;
pub mod peer;
pub mod platform;
pub mod requests;
pub mod spec;

pub use mdl::{GuestUnit, MdlRequest};
pub use peer::{GuestChunk, PeerPages};
pub use platform::{FakeGuest, free_mdl_checked};
pub use requests::{Demand, Outcome, RequestOutcome, RequestState};
pub use spec::{
    BLOCK_FRAMES, GuestSpec, MAX_RAM, MdlAccounting, Owner, PEER_HELD_REFUSED, PageableLayout,
    PinKind, TRIM_MIN_AGE,
};

use mdl::Outstanding;
use requests::Request;

/// Compact frame owner: 0 free, 1 OS, 2 balloon, 3 held, then per request `n`:
/// 4 + 4n pinned, 5 + 4n pageable, 6 + 4n modified, 7 + 4n standby.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot(u32);

impl Slot {
    const FREE: Self = Self(0);

    fn encode(owner: Owner) -> Self {
        let req = |n: usize, k: u32| {
            u32::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(4))
                .and_then(|n| n.checked_add(4 + k))
                .unwrap_or(u32::MAX)
        };
        Self(match owner {
            Owner::Free => 0,
            Owner::Os => 1,
            Owner::Balloon => 2,
            Owner::HeldRefused => 3,
            Owner::Pinned(n) => req(n, 0),
            Owner::Pageable(n) => req(n, 1),
            Owner::Modified(n) => req(n, 2),
            Owner::Standby(n) => req(n, 3),
        })
    }

    fn decode(self) -> Owner {
        match self.0 {
            0 => Owner::Free,
            1 => Owner::Os,
            2 => Owner::Balloon,
            3 => Owner::HeldRefused,
            v => {
                let n = ((v - 4) / 4) as usize;
                match (v - 4) % 4 {
                    0 => Owner::Pinned(n),
                    1 => Owner::Pageable(n),
                    2 => Owner::Modified(n),
                    _ => Owner::Standby(n),
                }
            }
        }
    }
}

/// Per-block counts: free frames, unmovable frames (OS, pinned, balloon, held), and the
/// free count under which the block is filed in the free-block indexes.
#[derive(Clone, Copy, Debug)]
struct Block {
    free: u16,
    fixed: u16,
    filed: u16,
}

/// Where free frames are taken from for a 4 KiB allocation (`docs/windows-memory.md` §3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The most used partly free 2 MiB block first, then whole free blocks: what
    /// `MM_ALLOCATE_PREFER_CONTIGUOUS` ("minimizes system memory fragmentation") permits.
    BestFit,
    /// The lowest free frame, whatever block it is in: all an allocation without
    /// `MM_ALLOCATE_PREFER_CONTIGUOUS` may assume ("any free frame").
    FirstFit,
}

/// The Windows memory manager model. See the [module docs](self) for the rules.
#[derive(Debug)]
pub struct GuestModel {
    spec: GuestSpec,
    /// Whether the balloon's MDL pages are charged to resident available and commit.
    accounting: MdlAccounting,
    slots: Vec<Slot>,
    blocks: Vec<Block>,
    /// Blocks whose 512 frames are all free.
    whole_free: BTreeSet<u32>,
    /// Partially free blocks by (free frames, block): the first is the most used.
    partial: BTreeSet<(u16, u32)>,
    /// Every block with a free frame, by number (first-fit placement).
    with_free: BTreeSet<u32>,
    free: u64,
    os: u64,
    pinned: [u64; 6],
    pageable_resident: u64,
    modified: u64,
    standby: u64,
    pageable_commit: u64,
    balloon: u64,
    held_refused: u64,
    requests: Vec<Request>,
    /// Working-set pages in the order they became resident, with the time (ns): the
    /// least recently used first (entries whose frame left the working set are skipped).
    working_set: VecDeque<(u32, u64)>,
    /// The modified list, oldest first (entries no longer modified are skipped).
    modified_list: VecDeque<u32>,
    /// The standby list, oldest first (entries no longer on standby are skipped).
    standby_list: VecDeque<u32>,
    /// The model's clock (ns): the last instant the runner gave it.
    now: u64,
    /// When the modified page writer last ran (ns), and its carried progress
    /// (byte-nanoseconds not yet a whole page).
    written_at: u64,
    write_carry: u128,
    /// The modified page writer's rate ([`crate::cost::PAGE_WRITE_BYTES_PER_S`]).
    write_bytes_per_s: u64,
    /// Frames that allocations which cannot wait found missing since the last
    /// working-set pass: the pass trims for them too.
    demand: u64,
    stored: [VecDeque<GuestChunk>; 2],
    stored_frames: u64,
    held: Vec<(u64, PageSize)>,
    held_peak: usize,
    /// vmballoon's units, kept as the driver keeps them.
    units: VecStore<GuestUnit>,
    /// MDLs handed out to vmballoon and not yet freed, by first PFN.
    outstanding: BTreeMap<u64, Outstanding>,
    dropped: Rc<Cell<u64>>,
    alloc_failures: u64,
    short_grants: u64,
    min_resident_available: u64,
    mdl_calls: [u64; 2],
    mdl_failures: [u64; 2],
    batch_page: u64,
    balloon_trimmed: u64,
    trimmed_total: u64,
    written_total: u64,
}

#[cfg(test)]
mod tests;
