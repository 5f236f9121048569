//! [`GuestModel`]: a model of the Windows memory manager, and [`FakeGuest`], the handle
//! that implements the core's [`PageAllocator`] and [`MemorySource`] over it.
//!
//! # The model
//!
//! RAM is an array of 4 KiB frames grouped in 2 MiB blocks of 512 frames (PFN = frame
//! index, RAM starts at PFN 0, no holes). Every frame has exactly one [`Owner`]:
//!
//! | owner | what it models | resident available | commit |
//! |---|---|---|---|
//! | `Free` | free + zeroed + standby lists ("Available") | counted | — |
//! | `Os` | kernel, drivers, nonpaged pool (`os_locked_mib`), the driver's batch page | charged | charged |
//! | `Pinned` | `VirtualLock`, AWE, large pages, driver-locked MDLs (`lock_mib`) | charged | charged |
//! | `Pageable` | resident pages of pageable commit (`committed_mib`, `commit_mib`) | counted | charged (all of the commit, resident or not) |
//! | `Balloon` | pages `MmAllocatePagesForMdlEx` gave the balloon (in flight or stored) | charged | charged |
//! | `HeldRefused` | balloon pages the host refused, held until the end of the cycle | charged | charged |
//!
//! so, as `windows-memory.md` §1.6 and §3.1 describe (the balloon and pinned memory are
//! charged alike):
//!
//! * resident available = RAM − OS − pinned − balloon − held refused
//!   (= free + resident pageable frames: pageable pages can always be trimmed);
//! * commit limit = RAM + page file; committed = pageable commit + OS + pinned + balloon +
//!   held refused;
//! * available = free frames.
//!
//! # Modelling assumptions
//!
//! * **Trimming.** Pageable pages occupy free frames when they are committed, as far as
//!   free frames go; the rest starts out paged out. Once per simulated second (the
//!   balance-set manager's period), and shortly after available memory falls below the
//!   low-memory threshold (the memory manager wakes it when the free lists run short), the
//!   working-set manager trims pageable pages (pages them out) until available memory is
//!   back at the high-memory threshold, if it is below it ([`GuestModel::balance`], called
//!   by the runner). Resident pageable pages are all in working sets (no standby cache is
//!   modelled), so they are not available until trimmed.
//!   A pinned request trims at once whatever it needs (`VirtualLock` and friends wait for
//!   pages; the MDL allocator, which the balloon uses without `MM_ALLOCATE_TRIM_IF_NECESSARY`
//!   and without waiting, never trims: it takes free frames only). Paged-out pages stay in
//!   the page file: the model does not simulate applications touching them again.
//!   Trimming takes the oldest request's most recently placed pages first.
//! * **`MmAllocatePagesForMdlEx`.** The full request is charged to resident available and
//!   to commit up front; if either charge would fail the call returns nothing (`NULL`),
//!   otherwise it returns what free frames allow (a short chunk), or nothing if there are
//!   none. 4 KiB pages come from the partially used 2 MiB block with the fewest free
//!   frames first, then from whole free blocks (a best-fit choice that keeps whole blocks
//!   whole, so 4 KiB balloon pages fragment the large-page pool as little as possible;
//!   Windows' own choice is not documented). 2 MiB pages need whole free blocks
//!   (`MM_ALLOCATE_FAST_LARGE_PAGES`: no compaction, fail fast).
//! * **Waiting allocations** ([`PeerPages::allocate_waiting`], OVT's CANSLEEP type only):
//!   charged like `MmAllocatePagesForMdlEx`, but when free frames are short the
//!   working-set manager first pages out resident pageable pages for them (as
//!   `MM_ALLOCATE_TRIM_IF_NECESSARY` waits for trimming); the frames trimmed are counted
//!   ([`GuestModel::balloon_trimmed_frames`]).
//! * **Cost.** Every allocation, free and snapshot through [`FakeGuest`] charges its
//!   modelled cost to the shared clock ([`crate::cost`]); [`GuestModel`] itself is free.
//! * **Pinned requests** (`lock_mib`) charge resident available and commit. `virtual-lock`,
//!   `awe` and `driver-locked` take 4 KiB frames anywhere; `large-pages` needs whole 2 MiB
//!   blocks holding no unmovable page (only free or pageable frames: Windows can page out
//!   or move pageable pages to build a large page, but not locked ones, and the balloon's
//!   pages are locked). A request that cannot be satisfied fails, counts once in
//!   [`GuestModel::alloc_failures`], and is retried every simulated second until it
//!   succeeds or is released (`scenario-format.md`).
//! * **Pageable requests** (`commit_mib`) fail only on commit.
//! * **LowMemoryCondition** is signalled while available memory is below the documented
//!   default threshold, "approximately 32 MB per 4 GB, to a maximum of 64 MB"
//!   (`CreateMemoryResourceNotification`), i.e. RAM/128 capped at 64 MiB. It is a level,
//!   not a latch: as the documentation says, there is a gap between the low and the
//!   high-memory thresholds (3× the low one) where neither event is signalled.

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

/// Where free frames are taken from for a 4 KiB allocation (`windows-memory.md` §3.7).
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
