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

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use vmballoon_core::fake::VecStore;
use vmballoon_core::mask::PageMask;
use vmballoon_core::platform::{
    MemoryError, MemorySnapshot, MemorySource, PageAllocator, PinnedBreakdown, Shelf,
    StorePosition, UnitKind,
};
use vmballoon_core::units::{Duration, Frames, Instant, PageSize, Pfn};

use crate::cost::Work;
use crate::world::{SharedWorld, World};

/// Frames in one 2 MiB block.
pub const BLOCK_FRAMES: u64 = 512;

/// How many refused 4 KiB pages a peer model holds per cycle ([`PeerPages::retain`]): the
/// refused-page limit of every VMware driver (`VMW_BALLOON_MAX_REFUSED`,
/// `BALLOON_ERROR_PAGES`: 16, `protocol.md` §3 rule 3).
pub const PEER_HELD_REFUSED: usize = 16;

/// The largest guest the model accepts: 64 GiB (16 Mi frames, 64 MiB of frame table).
pub const MAX_RAM: Frames = Frames::from_mib(64 * 1024);

/// The four kinds of pinned memory a scenario can request (`lock_mib` + `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinKind {
    /// `VirtualLock` (charged through the working-set minimum).
    VirtualLock,
    /// AWE `AllocateUserPhysicalPages`.
    Awe,
    /// `VirtualAlloc(MEM_LARGE_PAGES)`: whole 2 MiB blocks.
    LargePages,
    /// Another driver's MDL allocation or `MmProbeAndLockPages`.
    DriverLocked,
}

impl PinKind {
    /// Every kind, in table order.
    pub const ALL: [Self; 4] = [
        Self::VirtualLock,
        Self::Awe,
        Self::LargePages,
        Self::DriverLocked,
    ];

    /// The name used in scenario files.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::VirtualLock => "virtual-lock",
            Self::Awe => "awe",
            Self::LargePages => "large-pages",
            Self::DriverLocked => "driver-locked",
        }
    }

    /// The kind named `name` in a scenario file.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Where resident pageable pages land in RAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PageableLayout {
    /// Packed into as few 2 MiB blocks as possible, like the balloon's 4 KiB pages (a
    /// freshly booted guest).
    #[default]
    Packed,
    /// Spread evenly over every block with free frames (a guest that has run for a while:
    /// working sets are scattered over physical memory, so few 2 MiB blocks stay whole).
    Scattered,
}

/// The guest's configuration (`[guest]` of a scenario).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestSpec {
    /// RAM; a whole number of 2 MiB blocks.
    pub ram: Frames,
    /// Nonpaged OS memory, pinned from t = 0.
    pub os_locked: Frames,
    /// Page-file size: commit limit = RAM + page file.
    pub pagefile: Frames,
    /// Pageable commit already in use at t = 0.
    pub committed: Frames,
    /// Where resident pageable pages land (at boot and for later `commit_mib`).
    pub layout: PageableLayout,
}

/// Who owns a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Free, zeroed or standby: available.
    Free,
    /// The OS's nonpaged memory.
    Os,
    /// Allocated to the balloon (in flight in the engine, or stored).
    Balloon,
    /// A balloon page the host refused, held until the end of the cycle.
    HeldRefused,
    /// Pinned by request number `n`.
    Pinned(usize),
    /// A resident pageable page of request number `n`.
    Pageable(usize),
}

/// Compact frame owner: 0 free, 1 OS, 2 balloon, 3 held, 4 + 2n pinned n, 5 + 2n pageable n.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot(u32);

impl Slot {
    const FREE: Self = Self(0);

    fn encode(owner: Owner) -> Self {
        let req = |n: usize, odd: u32| {
            u32::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(2))
                .and_then(|n| n.checked_add(4 + odd))
                .unwrap_or(u32::MAX)
        };
        Self(match owner {
            Owner::Free => 0,
            Owner::Os => 1,
            Owner::Balloon => 2,
            Owner::HeldRefused => 3,
            Owner::Pinned(n) => req(n, 0),
            Owner::Pageable(n) => req(n, 1),
        })
    }

    fn decode(self) -> Owner {
        match self.0 {
            0 => Owner::Free,
            1 => Owner::Os,
            2 => Owner::Balloon,
            3 => Owner::HeldRefused,
            v => {
                let n = ((v - 4) / 2) as usize;
                if v % 2 == 0 {
                    Owner::Pinned(n)
                } else {
                    Owner::Pageable(n)
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

/// What a guest request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demand {
    /// Pinned memory of a kind.
    Pin(PinKind),
    /// Pageable commit.
    Pageable,
}

/// Where a guest request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestState {
    /// Failed; retried at `next_retry`.
    Pending {
        /// When the next attempt is due.
        next_retry: Instant,
    },
    /// Satisfied and in use.
    Active,
    /// Released (or cancelled while pending).
    Released,
}

#[derive(Debug)]
struct Request {
    id: String,
    demand: Demand,
    /// Frames asked for.
    frames: u64,
    /// Frames charged while active (large pages round up to whole blocks).
    charged: u64,
    state: RequestState,
    /// Frames held: every frame for pinned memory; resident frames for pageable memory
    /// (lazily: entries whose slot no longer belongs to this request are skipped).
    frames_held: Vec<u32>,
    resident: u64,
    /// When the request was made.
    asked_at: Instant,
    /// Failed attempts.
    failures: u64,
    /// When it was first satisfied.
    satisfied_at: Option<Instant>,
}

/// What became of one guest request, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestOutcome {
    /// The request's id.
    pub id: String,
    /// Pinned (`true`) or pageable memory.
    pub pinned: bool,
    /// When it was made.
    pub asked_at: Instant,
    /// Failed attempts (each counts in [`GuestModel::alloc_failures`]).
    pub failures: u64,
    /// When it was first satisfied, if it was.
    pub satisfied_at: Option<Instant>,
}

/// The outcome of a guest request at the moment it is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Satisfied at once.
    Granted,
    /// Failed (counted); retried every second.
    Failed,
}

/// A chunk of balloon pages of a peer model ([`PeerPages`]): a page list the peer may split
/// and free page by page, as Linux frees single pages. Dropping a chunk that still has
/// pages is a leak; the model counts it (see [`GuestModel::dropped_frames`]).
#[derive(Debug)]
pub struct GuestChunk {
    size: PageSize,
    pfns: Vec<u64>,
    /// Pages the MDL was built for (its PFN array's capacity, in pages of `size`): what
    /// `MmAllocatePagesForMdlEx` was asked for. The array keeps this size for the chunk's
    /// life, even when `retain` compacts it.
    mdl_pages: usize,
    dropped: Rc<Cell<u64>>,
}

impl GuestChunk {
    fn frames(&self) -> u64 {
        (self.pfns.len() as u64).saturating_mul(self.size.frames().get())
    }

    /// The size of its pages.
    #[must_use]
    pub const fn size(&self) -> PageSize {
        self.size
    }

    /// Pages in it.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pfns.len()
    }

    /// Whether it holds no page.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pfns.is_empty()
    }

    /// Frames its MDL describes at most (the PFN array's capacity).
    #[must_use]
    pub fn mdl_frames(&self) -> u64 {
        (self.mdl_pages as u64).saturating_mul(self.size.frames().get())
    }
}

impl Drop for GuestChunk {
    fn drop(&mut self) {
        let frames = self.frames();
        self.dropped.set(self.dropped.get().saturating_add(frames));
    }
}

/// A unit of vmballoon's balloon ([`FakeGuest`]): one MDL from `MmAllocatePagesForMdlEx`,
/// its 4 KiB frames in MDL order. It can only go back whole ([`PageAllocator::free`]).
/// Dropping one that still has pages is a leak; the model counts it.
#[derive(Debug)]
pub struct GuestUnit {
    kind: UnitKind,
    pfns: Vec<u64>,
    dropped: Rc<Cell<u64>>,
}

impl GuestUnit {
    /// Its kind.
    #[must_use]
    pub const fn kind(&self) -> UnitKind {
        self.kind
    }

    /// Its 4 KiB frames, in MDL order.
    #[must_use]
    pub fn pfns(&self) -> &[u64] {
        &self.pfns
    }
}

impl Drop for GuestUnit {
    fn drop(&mut self) {
        let frames = self.pfns.len() as u64;
        self.dropped.set(self.dropped.get().saturating_add(frames));
    }
}

/// The parts of an `MmAllocatePagesForMdlEx` call the model distinguishes
/// (`windows-memory.md` §1.2, §1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MdlRequest {
    /// 4 KiB frames asked for (`TotalBytes`), at most 512 for a balloon unit.
    pub frames: u64,
    /// `MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS` with a 2 MiB `SkipBytes` and
    /// `MM_ALLOCATE_FAST_LARGE_PAGES`: whole, aligned, already free 2 MiB blocks only.
    pub whole_blocks: bool,
    /// `MM_ALLOCATE_PREFER_CONTIGUOUS`: "so as to minimise fragmentation" — the model takes
    /// 4 KiB pages from the most used partly free block first.
    pub prefer_contiguous: bool,
}

/// An MDL the model handed out and that has not come back: how many frames it describes
/// and a digest of its PFN array, so that a free of anything but that exact MDL is seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outstanding {
    frames: usize,
    digest: u64,
}

/// FNV-1a over the PFN array.
fn digest(pfns: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in pfns {
        for b in p.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
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
    free: u64,
    os: u64,
    pinned: [u64; 4],
    pageable_resident: u64,
    pageable_commit: u64,
    balloon: u64,
    held_refused: u64,
    requests: Vec<Request>,
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
    min_resident_available: u64,
    mdl_calls: [u64; 2],
    mdl_failures: [u64; 2],
    batch_page: u64,
    balloon_trimmed: u64,
}

impl GuestModel {
    /// A guest booted as `spec` says: OS memory in the lowest frames (the driver's batch
    /// page is its last frame; at least one frame is OS memory for it), then the initial
    /// pageable commit placed by `spec.layout`.
    ///
    /// `spec` must have been validated ([`GuestModel::validate`]); out-of-range values are
    /// clamped, never a panic.
    #[must_use]
    pub fn new(spec: GuestSpec) -> Self {
        let ram = spec.ram.min(MAX_RAM).get();
        let ram = ram - ram % BLOCK_FRAMES;
        let nblocks = (ram / BLOCK_FRAMES) as usize;
        let mut g = Self {
            spec,
            slots: vec![Slot::FREE; ram as usize],
            blocks: vec![
                Block {
                    free: BLOCK_FRAMES as u16,
                    fixed: 0,
                    filed: BLOCK_FRAMES as u16,
                };
                nblocks
            ],
            whole_free: (0..nblocks as u32).collect(),
            partial: BTreeSet::new(),
            free: ram,
            os: 0,
            pinned: [0; 4],
            pageable_resident: 0,
            pageable_commit: 0,
            balloon: 0,
            held_refused: 0,
            requests: Vec::new(),
            stored: [VecDeque::new(), VecDeque::new()],
            stored_frames: 0,
            held: Vec::new(),
            held_peak: 0,
            units: VecStore::new(),
            outstanding: BTreeMap::new(),
            dropped: Rc::new(Cell::new(0)),
            alloc_failures: 0,
            min_resident_available: u64::MAX,
            mdl_calls: [0; 2],
            mdl_failures: [0; 2],
            batch_page: 0,
            balloon_trimmed: 0,
        };
        let os = spec.os_locked.get().clamp(1, ram.max(1));
        for f in 0..os.min(ram) {
            g.set(f, Owner::Os);
        }
        g.refile_range(0, os.min(ram));
        g.batch_page = os.saturating_sub(1);
        let committed = spec.committed.get();
        if committed > 0 {
            let k = g.requests.len();
            g.requests.push(Request {
                id: "(boot)".to_owned(),
                demand: Demand::Pageable,
                frames: committed,
                charged: committed,
                state: RequestState::Active,
                frames_held: Vec::new(),
                resident: 0,
                asked_at: Instant::default(),
                failures: 0,
                satisfied_at: Some(Instant::default()),
            });
            g.pageable_commit = committed;
            let fit = committed.min(g.free);
            g.place_pageable(fit, k);
        }
        g.note_resident();
        g
    }

    /// Checks a spec: RAM a positive whole number of 2 MiB blocks up to [`MAX_RAM`], OS
    /// memory below RAM. Returns the problem in words.
    ///
    /// # Errors
    /// A one-line description of what is wrong.
    pub fn validate(spec: &GuestSpec) -> Result<(), String> {
        if spec.ram.is_zero() || !spec.ram.get().is_multiple_of(BLOCK_FRAMES) {
            return Err("must be a positive multiple of 2 (whole 2 MiB blocks)".to_owned());
        }
        if spec.ram > MAX_RAM {
            return Err(format!(
                "must be at most {} (the model's limit)",
                MAX_RAM.mib_floor()
            ));
        }
        if spec.os_locked >= spec.ram {
            return Err("os_locked_mib must be below ram_mib".to_owned());
        }
        Ok(())
    }

    // ---- frame table -------------------------------------------------------------------

    fn owner(&self, frame: u64) -> Option<Owner> {
        self.slots.get(frame as usize).map(|s| s.decode())
    }

    /// The owner of the frame at `pfn`, or `None` outside RAM.
    #[must_use]
    pub fn owner_of(&self, pfn: u64) -> Option<Owner> {
        self.owner(pfn)
    }

    fn counter(&mut self, owner: Owner) -> Option<&mut u64> {
        match owner {
            Owner::Free => Some(&mut self.free),
            Owner::Os => Some(&mut self.os),
            Owner::Balloon => Some(&mut self.balloon),
            Owner::HeldRefused => Some(&mut self.held_refused),
            Owner::Pinned(n) => {
                let kind = match self.requests.get(n).map(|r| r.demand) {
                    Some(Demand::Pin(kind)) => kind,
                    _ => PinKind::DriverLocked,
                };
                self.pinned.get_mut(kind.index())
            }
            Owner::Pageable(_) => Some(&mut self.pageable_resident),
        }
    }

    const fn unmovable(owner: Owner) -> bool {
        !matches!(owner, Owner::Free | Owner::Pageable(_))
    }

    /// Gives `frame` to `owner`, keeping every counter and the block counts in step (the
    /// free-block indexes are updated by [`GuestModel::refile`]).
    fn set(&mut self, frame: u64, owner: Owner) {
        let Some(old) = self.owner(frame) else { return };
        if old == owner {
            return;
        }
        if let Some(c) = self.counter(old) {
            *c = c.saturating_sub(1);
        }
        if let Some(c) = self.counter(owner) {
            *c = c.saturating_add(1);
        }
        if let Owner::Pageable(n) = old
            && let Some(r) = self.requests.get_mut(n)
        {
            r.resident = r.resident.saturating_sub(1);
        }
        if let Owner::Pageable(n) = owner
            && let Some(r) = self.requests.get_mut(n)
        {
            r.resident = r.resident.saturating_add(1);
            r.frames_held.push(frame as u32);
        }
        if let Owner::Pinned(n) = owner
            && let Some(r) = self.requests.get_mut(n)
        {
            r.frames_held.push(frame as u32);
        }
        if let Some(s) = self.slots.get_mut(frame as usize) {
            *s = Slot::encode(owner);
        }
        let b = (frame / BLOCK_FRAMES) as usize;
        if let Some(block) = self.blocks.get_mut(b) {
            if old == Owner::Free {
                block.free = block.free.saturating_sub(1);
            }
            if owner == Owner::Free {
                block.free = block.free.saturating_add(1);
            }
            if Self::unmovable(old) {
                block.fixed = block.fixed.saturating_sub(1);
            }
            if Self::unmovable(owner) {
                block.fixed = block.fixed.saturating_add(1);
            }
        }
    }

    /// Re-files block `b` in the free-block indexes after its free count changed.
    fn refile(&mut self, b: u32) {
        let Some(block) = self.blocks.get_mut(b as usize) else {
            return;
        };
        if block.filed == block.free {
            return;
        }
        let (old, new) = (block.filed, block.free);
        block.filed = new;
        let full = BLOCK_FRAMES as u16;
        if old == full {
            self.whole_free.remove(&b);
        } else if old > 0 {
            self.partial.remove(&(old, b));
        }
        if new == full {
            self.whole_free.insert(b);
        } else if new > 0 {
            self.partial.insert((new, b));
        }
    }

    fn refile_range(&mut self, first_frame: u64, end_frame: u64) {
        if end_frame <= first_frame {
            return;
        }
        let first = first_frame / BLOCK_FRAMES;
        let last = (end_frame - 1) / BLOCK_FRAMES;
        for b in first..=last {
            self.refile(b as u32);
        }
    }

    /// Sets the owner of each frame in `frames`, re-filing each touched block once per run
    /// of frames in the same block.
    fn set_all(&mut self, frames: impl IntoIterator<Item = u64>, owner: Owner) {
        let mut last: Option<u64> = None;
        for f in frames {
            let b = f / BLOCK_FRAMES;
            if let Some(l) = last
                && l != b
            {
                self.refile(l as u32);
            }
            last = Some(b);
            self.set(f, owner);
        }
        if let Some(l) = last {
            self.refile(l as u32);
        }
    }

    /// Takes up to `n` free frames for `owner`: the most used partially free block first,
    /// then whole free blocks. Returns the frames taken.
    fn take_small(&mut self, n: u64, owner: Owner) -> Vec<u64> {
        let mut out = Vec::new();
        while (out.len() as u64) < n {
            let block = self
                .partial
                .iter()
                .next()
                .map(|&(_, b)| b)
                .or_else(|| self.whole_free.iter().next().copied());
            let Some(b) = block else { break };
            let base = u64::from(b) * BLOCK_FRAMES;
            for f in base..base + BLOCK_FRAMES {
                if out.len() as u64 >= n {
                    break;
                }
                if self.owner(f) == Some(Owner::Free) {
                    self.set(f, owner);
                    out.push(f);
                }
            }
            let before = self.blocks.get(b as usize).map(|x| x.filed);
            self.refile(b);
            if before == self.blocks.get(b as usize).map(|x| x.filed) {
                // No frame was free after all: the indexes are out of step. Never loop.
                break;
            }
        }
        out
    }

    /// Takes up to `n` whole free blocks for `owner`; returns their first frames.
    fn take_blocks(&mut self, n: u64, owner: Owner) -> Vec<u64> {
        let chosen: Vec<u32> = self.whole_free.iter().take(n as usize).copied().collect();
        let mut out = Vec::with_capacity(chosen.len());
        for b in chosen {
            let base = u64::from(b) * BLOCK_FRAMES;
            self.set_all(base..base + BLOCK_FRAMES, owner);
            out.push(base);
        }
        out
    }

    /// Places `n` frames for `owner` spread evenly over every block with free frames: one
    /// frame per block per round.
    fn scatter(&mut self, n: u64, owner: Owner) {
        let mut blocks: Vec<u32> = self
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.free > 0)
            .map(|(i, _)| i as u32)
            .collect();
        let mut cursor = vec![0u64; self.blocks.len()];
        let mut placed = 0u64;
        while placed < n && !blocks.is_empty() {
            blocks.retain(|&b| {
                if placed >= n {
                    return true;
                }
                let base = u64::from(b) * BLOCK_FRAMES;
                let Some(c) = cursor.get_mut(b as usize) else {
                    return false;
                };
                while *c < BLOCK_FRAMES {
                    let f = base + *c;
                    *c += 1;
                    if self.owner(f) == Some(Owner::Free) {
                        self.set(f, owner);
                        placed += 1;
                        return true;
                    }
                }
                false
            });
        }
        let end = self.ram();
        self.refile_range(0, end);
    }

    /// Makes `n` frames of pageable request `k` resident, as the layout says.
    fn place_pageable(&mut self, n: u64, k: usize) {
        match self.spec.layout {
            PageableLayout::Packed => {
                self.take_small(n, Owner::Pageable(k));
            }
            PageableLayout::Scattered => self.scatter(n, Owner::Pageable(k)),
        }
    }

    fn release_frames(&mut self, frames: &[u64]) {
        self.set_all(frames.iter().copied(), Owner::Free);
    }

    /// Pages out up to `n` resident pageable frames (oldest request first, its most
    /// recently placed frames first). Returns the frames trimmed.
    fn trim(&mut self, n: u64) -> u64 {
        let mut trimmed = 0u64;
        let mut freed = Vec::new();
        for k in 0..self.requests.len() {
            while trimmed < n {
                let Some(r) = self.requests.get_mut(k) else {
                    break;
                };
                if r.demand != Demand::Pageable || r.resident == 0 {
                    break;
                }
                let Some(f) = r.frames_held.pop() else { break };
                if self.owner(u64::from(f)) == Some(Owner::Pageable(k)) {
                    // Set now so the request's resident count stays exact.
                    self.set(u64::from(f), Owner::Free);
                    freed.push(u64::from(f));
                    trimmed += 1;
                }
            }
        }
        freed.sort_unstable();
        freed.dedup();
        let mut last = None;
        for f in freed {
            let b = f / BLOCK_FRAMES;
            if last != Some(b) {
                self.refile(b as u32);
                last = Some(b);
            }
        }
        trimmed
    }

    // ---- accounting --------------------------------------------------------------------

    fn ram(&self) -> u64 {
        self.slots.len() as u64
    }

    fn pinned_total(&self) -> u64 {
        self.pinned.iter().sum()
    }

    /// Resident available: RAM − OS − pinned − balloon − held refused.
    #[must_use]
    pub fn resident_available(&self) -> Frames {
        Frames::new(
            self.ram()
                .saturating_sub(self.os)
                .saturating_sub(self.pinned_total())
                .saturating_sub(self.balloon)
                .saturating_sub(self.held_refused),
        )
    }

    /// Commit limit: RAM + page file.
    #[must_use]
    pub fn commit_limit(&self) -> Frames {
        Frames::new(self.ram().saturating_add(self.spec.pagefile.get()))
    }

    /// Commit charge: pageable commit + OS + pinned + balloon + held refused.
    #[must_use]
    pub fn committed(&self) -> Frames {
        Frames::new(
            self.pageable_commit
                .saturating_add(self.os)
                .saturating_add(self.pinned_total())
                .saturating_add(self.balloon)
                .saturating_add(self.held_refused),
        )
    }

    fn commit_free(&self) -> u64 {
        self.commit_limit()
            .get()
            .saturating_sub(self.committed().get())
    }

    /// Available memory: free frames.
    #[must_use]
    pub fn available(&self) -> Frames {
        Frames::new(self.free)
    }

    /// Pinned memory other than the balloon: OS nonpaged memory plus every pinned kind.
    #[must_use]
    pub fn pinned(&self) -> Frames {
        Frames::new(self.os.saturating_add(self.pinned_total()))
    }

    /// Frames allocated to the balloon (in flight in the engine, stored, or held refused).
    #[must_use]
    pub fn balloon_frames(&self) -> Frames {
        Frames::new(self.balloon.saturating_add(self.held_refused))
    }

    /// Frames the balloon keeps: the peers' stored chunks and vmballoon's units (on a
    /// shelf, staged or parked).
    #[must_use]
    pub fn stored_frames(&self) -> Frames {
        Frames::new(self.stored_frames).saturating_add(self.unit_frames())
    }

    /// Frames of vmballoon's units (on a shelf, staged or parked).
    #[must_use]
    pub fn unit_frames(&self) -> Frames {
        Frames::new(self.units.all().map(|u| u.pfns.len() as u64).sum())
    }

    /// Frames of vmballoon's parked units that the host does not hold.
    #[must_use]
    pub fn parked_unheld_frames(&self) -> Frames {
        Frames::new(
            self.units
                .parked_units()
                .map(|(u, held)| (u.pfns.len() as u64).saturating_sub(held.len() as u64))
                .sum(),
        )
    }

    /// Resident pageable frames.
    #[must_use]
    pub const fn pageable_resident(&self) -> Frames {
        Frames::new(self.pageable_resident)
    }

    /// RAM.
    #[must_use]
    pub fn total(&self) -> Frames {
        Frames::new(self.ram())
    }

    /// The LowMemoryCondition threshold: RAM/128 ("about 32 MB per 4 GB"), at most 64 MiB.
    #[must_use]
    pub fn low_threshold(&self) -> Frames {
        Frames::new(self.ram() / 128).min(Frames::from_mib(64))
    }

    /// The HighMemoryCondition threshold: three times the low one.
    #[must_use]
    pub fn high_threshold(&self) -> Frames {
        self.low_threshold().saturating_mul(3)
    }

    /// Whether `\KernelObjects\LowMemoryCondition` is signalled.
    #[must_use]
    pub fn low_memory(&self) -> bool {
        self.available() < self.low_threshold()
    }

    /// Whether `\KernelObjects\MaximumCommitCondition` is signalled. The documentation says
    /// only "near the maximum commit limit"; the model signals it while less commit than the
    /// LowMemoryCondition threshold is left (an assumption: the simulator's scenarios must
    /// hold whether it fires earlier or later).
    #[must_use]
    pub fn high_commit(&self) -> bool {
        self.commit_free() < self.low_threshold().get()
    }

    /// The lowest resident available memory seen so far.
    #[must_use]
    pub fn min_resident_available(&self) -> Frames {
        Frames::new(self.min_resident_available)
    }

    /// Guest allocation failures (each failed attempt of a `lock_mib` / `commit_mib`).
    #[must_use]
    pub const fn alloc_failures(&self) -> u64 {
        self.alloc_failures
    }

    /// Frames in balloon chunks that were dropped instead of freed or stored.
    #[must_use]
    pub fn dropped_frames(&self) -> Frames {
        Frames::new(self.dropped.get())
    }

    /// `MmAllocatePagesForMdlEx` calls for the balloon, and those that returned nothing,
    /// per page size.
    #[must_use]
    pub const fn mdl_calls(&self) -> ([u64; 2], [u64; 2]) {
        (self.mdl_calls, self.mdl_failures)
    }

    /// The most refused pages held at once.
    #[must_use]
    pub const fn held_peak(&self) -> usize {
        self.held_peak
    }

    /// The PFN of the driver's batch page (an OS frame).
    #[must_use]
    pub const fn batch_page_pfn(&self) -> u64 {
        self.batch_page
    }

    /// Whole free 2 MiB blocks.
    #[must_use]
    pub fn whole_free_blocks(&self) -> u64 {
        self.whole_free.len() as u64
    }

    /// Blocks a large-page request could use (no unmovable frame).
    #[must_use]
    pub fn large_page_blocks(&self) -> u64 {
        self.blocks.iter().filter(|b| b.fixed == 0).count() as u64
    }

    fn note_resident(&mut self) {
        let r = self.resident_available().get();
        self.min_resident_available = self.min_resident_available.min(r);
    }

    /// A snapshot as the driver's `MemorySource` reports it.
    #[must_use]
    pub fn snapshot(&self) -> MemorySnapshot {
        let kind = |k: PinKind| {
            Some(Frames::new(
                self.pinned.get(k.index()).copied().unwrap_or(0),
            ))
        };
        MemorySnapshot {
            total: self.total(),
            resident_available: Some(self.resident_available()),
            available: Some(self.available()),
            commit_limit: Some(self.commit_limit()),
            committed: Some(self.committed()),
            low_memory: self.low_memory(),
            high_commit: self.high_commit(),
            pinned: PinnedBreakdown {
                virtual_lock: kind(PinKind::VirtualLock),
                awe: kind(PinKind::Awe),
                large_pages: kind(PinKind::LargePages),
                driver_locked: kind(PinKind::DriverLocked),
                os_nonpaged: Some(Frames::new(self.os)),
            },
        }
    }

    // ---- the balloon's allocator -------------------------------------------------------

    /// `MmAllocatePagesForMdlEx` for the balloon: up to `pages` (1..=512) pages of `size`.
    /// See the module docs for the charging rule.
    fn allocate_balloon(&mut self, size: PageSize, pages: usize) -> Option<Vec<u64>> {
        if let Some(c) = self.mdl_calls.get_mut(size.index()) {
            *c = c.saturating_add(1);
        }
        let pages = pages.min(vmballoon_core::protocol::BATCH_CAPACITY) as u64;
        let charge = pages.saturating_mul(size.frames().get());
        let got = if pages == 0
            || self.resident_available().get() < charge
            || self.commit_free() < charge
        {
            Vec::new()
        } else {
            match size {
                PageSize::Small => self.take_small(pages, Owner::Balloon),
                PageSize::Large => self.take_blocks(pages, Owner::Balloon),
            }
        };
        if got.is_empty() {
            if let Some(c) = self.mdl_failures.get_mut(size.index()) {
                *c = c.saturating_add(1);
            }
            return None;
        }
        self.note_resident();
        Some(got)
    }

    /// `MmAllocatePagesForMdlEx` for vmballoon's balloon (see [`MdlRequest`]), charged as
    /// the module docs say. Returns the PFN array of the MDL, which stays outstanding until
    /// [`GuestModel::mdl_free`] gets exactly it back.
    pub fn mdl_allocate(&mut self, req: MdlRequest) -> Option<Vec<u64>> {
        let size = if req.whole_blocks {
            PageSize::Large
        } else {
            PageSize::Small
        };
        if let Some(c) = self.mdl_calls.get_mut(size.index()) {
            *c = c.saturating_add(1);
        }
        let cap = vmballoon_core::protocol::BATCH_CAPACITY as u64;
        let frames = req.frames.min(cap);
        // Whole chunks only: TotalBytes a multiple of SkipBytes (§1.4).
        let fits = if req.whole_blocks {
            frames > 0 && frames.is_multiple_of(BLOCK_FRAMES)
        } else {
            frames > 0
        };
        let got = if !fits || !self.charges_fit(frames) {
            Vec::new()
        } else if req.whole_blocks {
            self.take_blocks(frames / BLOCK_FRAMES, Owner::Balloon)
                .into_iter()
                .flat_map(|first| first..first.saturating_add(BLOCK_FRAMES))
                .collect()
        } else {
            // PREFER_CONTIGUOUS or not, the model places 4 KiB pages best-fit (the module
            // docs): the most used partly free block first.
            let _ = req.prefer_contiguous;
            self.take_small(frames, Owner::Balloon)
        };
        let Some(&first) = got.first() else {
            if let Some(c) = self.mdl_failures.get_mut(size.index()) {
                *c = c.saturating_add(1);
            }
            return None;
        };
        self.outstanding.insert(
            first,
            Outstanding {
                frames: got.len(),
                digest: digest(&got),
            },
        );
        self.note_resident();
        Some(got)
    }

    /// `MmFreePagesFromMdl` and `ExFreePool` of an MDL: documented only for an MDL that
    /// `MmAllocatePagesForMdlEx` returned, freed whole, once (`windows-memory.md` §1.3).
    /// Anything else — an MDL the model did not hand out or already took back, or one
    /// whose PFN array changed (a part of it, other pages) — is a contract breach: it is
    /// described in the `Err` and nothing is freed (what Windows would do is undefined).
    ///
    /// # Errors
    /// The breach, in one sentence.
    pub fn mdl_free(&mut self, pfns: &[u64]) -> Result<(), String> {
        let Some(&first) = pfns.first() else {
            return Err("MmFreePagesFromMdl on an empty MDL".to_owned());
        };
        let Some(out) = self.outstanding.get(&first).copied() else {
            return Err(format!(
                "MmFreePagesFromMdl on an MDL the memory manager did not hand out, or freed \
                 twice (first pfn {first:#x}, {} frames)",
                pfns.len()
            ));
        };
        if out.frames != pfns.len() || out.digest != digest(pfns) {
            return Err(format!(
                "MmFreePagesFromMdl on a modified MDL (first pfn {first:#x}: {} frames, \
                 handed out with {}): only whole, untouched MDLs may be freed",
                pfns.len(),
                out.frames
            ));
        }
        self.outstanding.remove(&first);
        let mut frames = pfns.to_vec();
        frames.sort_unstable();
        self.release_frames(&frames);
        Ok(())
    }

    /// MDLs handed out to vmballoon and not yet freed.
    #[must_use]
    pub fn outstanding_mdls(&self) -> usize {
        self.outstanding.len()
    }

    /// An allocation that may wait for memory (OVT's CANSLEEP on this guest): charged like
    /// [`GuestModel::allocate_balloon`], but when free frames are short and resident
    /// pageable pages exist, the working-set manager pages out what is missing first (as
    /// `MM_ALLOCATE_TRIM_IF_NECESSARY` waits for trimming, `windows-memory.md` §1.2).
    /// 4 KiB pages only. Returns the frames and how many pageable frames were trimmed.
    fn allocate_balloon_waiting(&mut self, pages: usize) -> (Option<Vec<u64>>, u64) {
        let size = PageSize::Small;
        if let Some(c) = self.mdl_calls.get_mut(size.index()) {
            *c = c.saturating_add(1);
        }
        let pages = pages.min(vmballoon_core::protocol::BATCH_CAPACITY) as u64;
        let mut trimmed = 0;
        let got = if pages == 0
            || self.resident_available().get() < pages
            || self.commit_free() < pages
        {
            Vec::new()
        } else {
            let mut got = self.take_small(pages, Owner::Balloon);
            let short = pages.saturating_sub(got.len() as u64);
            if short > 0 && self.pageable_resident > 0 {
                trimmed = self.trim(short);
                self.balloon_trimmed = self.balloon_trimmed.saturating_add(trimmed);
                got.extend(self.take_small(short, Owner::Balloon));
            }
            got
        };
        if got.is_empty() {
            if let Some(c) = self.mdl_failures.get_mut(size.index()) {
                *c = c.saturating_add(1);
            }
            return (None, trimmed);
        }
        self.note_resident();
        (Some(got), trimmed)
    }

    /// Frames of the page at `pfn` of `size`.
    fn page_frames(pfn: u64, size: PageSize) -> std::ops::Range<u64> {
        pfn..pfn.saturating_add(size.frames().get())
    }

    // ---- guest requests ----------------------------------------------------------------

    fn find(&self, id: &str) -> Option<usize> {
        self.requests
            .iter()
            .position(|r| r.id == id && r.state != RequestState::Released)
    }

    /// Pins `size` of `kind` for request `id` (`lock_mib`).
    pub fn lock(&mut self, id: &str, kind: PinKind, size: Frames, now: Instant) -> Outcome {
        self.add_request(id, Demand::Pin(kind), size, now)
    }

    /// Commits `size` of pageable memory for request `id` (`commit_mib`).
    pub fn commit(&mut self, id: &str, size: Frames, now: Instant) -> Outcome {
        self.add_request(id, Demand::Pageable, size, now)
    }

    fn add_request(&mut self, id: &str, demand: Demand, size: Frames, now: Instant) -> Outcome {
        let k = self.requests.len();
        self.requests.push(Request {
            id: id.to_owned(),
            demand,
            frames: size.get(),
            charged: 0,
            state: RequestState::Pending { next_retry: now },
            frames_held: Vec::new(),
            resident: 0,
            asked_at: now,
            failures: 0,
            satisfied_at: None,
        });
        self.attempt(k, now)
    }

    /// Frees what request `id` holds (or cancels it while it is pending). Returns whether
    /// such a request existed.
    pub fn release(&mut self, id: &str) -> bool {
        let Some(k) = self.find(id) else { return false };
        let Some(r) = self.requests.get_mut(k) else {
            return false;
        };
        let was_active = r.state == RequestState::Active;
        r.state = RequestState::Released;
        let demand = r.demand;
        let charged = r.charged;
        r.charged = 0;
        let held = std::mem::take(&mut r.frames_held);
        if was_active {
            let mine: Vec<u64> = held
                .into_iter()
                .map(u64::from)
                .filter(|&f| {
                    matches!(self.owner(f), Some(Owner::Pinned(n) | Owner::Pageable(n)) if n == k)
                })
                .collect();
            let mut mine = mine;
            mine.sort_unstable();
            mine.dedup();
            self.release_frames(&mine);
            if demand == Demand::Pageable {
                self.pageable_commit = self.pageable_commit.saturating_sub(charged);
            }
        }
        true
    }

    /// One attempt at request `k`: returns the outcome and counts a failure.
    fn attempt(&mut self, k: usize, now: Instant) -> Outcome {
        let ok = match self.requests.get(k).map(|r| (r.demand, r.frames)) {
            Some((Demand::Pin(PinKind::LargePages), n)) => self.try_pin_large(k, n),
            Some((Demand::Pin(_), n)) => self.try_pin_small(k, n),
            Some((Demand::Pageable, n)) => self.try_commit(k, n),
            None => false,
        };
        let Some(r) = self.requests.get_mut(k) else {
            return Outcome::Failed;
        };
        if ok {
            r.state = RequestState::Active;
            r.satisfied_at.get_or_insert(now);
            self.note_resident();
            Outcome::Granted
        } else {
            r.state = RequestState::Pending {
                next_retry: now.saturating_add(Duration::from_secs(1)),
            };
            r.failures = r.failures.saturating_add(1);
            self.alloc_failures = self.alloc_failures.saturating_add(1);
            Outcome::Failed
        }
    }

    fn charges_fit(&self, n: u64) -> bool {
        self.resident_available().get() >= n && self.commit_free() >= n
    }

    fn try_pin_small(&mut self, k: usize, n: u64) -> bool {
        if !self.charges_fit(n) {
            return false;
        }
        let mut got = self.take_small(n, Owner::Pinned(k)).len() as u64;
        if got < n {
            // Resident available covers free + resident pageable frames: trim the rest.
            self.trim(n - got);
            got += self.take_small(n - got, Owner::Pinned(k)).len() as u64;
        }
        if let Some(r) = self.requests.get_mut(k) {
            r.charged = got;
        }
        if got < n {
            // Cannot happen while the accounting holds; undo rather than half-pin.
            self.undo_pin(k);
            return false;
        }
        true
    }

    fn try_pin_large(&mut self, k: usize, n: u64) -> bool {
        let blocks = n.div_ceil(BLOCK_FRAMES);
        let need = blocks.saturating_mul(BLOCK_FRAMES);
        if !self.charges_fit(need) {
            return false;
        }
        // Whole free blocks first, then those whose pageable pages must be paged out.
        let mut eligible: Vec<(u16, u32)> = self
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.fixed == 0)
            .map(|(i, b)| (b.free, i as u32))
            .collect();
        if (eligible.len() as u64) < blocks {
            return false;
        }
        eligible.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, b) in eligible.iter().take(blocks as usize) {
            let base = u64::from(b) * BLOCK_FRAMES;
            // Page out the block's pageable pages (their requests keep the commit).
            self.set_all(base..base + BLOCK_FRAMES, Owner::Free);
            self.set_all(base..base + BLOCK_FRAMES, Owner::Pinned(k));
        }
        if let Some(r) = self.requests.get_mut(k) {
            r.charged = need;
        }
        true
    }

    fn undo_pin(&mut self, k: usize) {
        let held = self
            .requests
            .get_mut(k)
            .map(|r| std::mem::take(&mut r.frames_held))
            .unwrap_or_default();
        let mut mine: Vec<u64> = held
            .into_iter()
            .map(u64::from)
            .filter(|&f| self.owner(f) == Some(Owner::Pinned(k)))
            .collect();
        mine.sort_unstable();
        self.release_frames(&mine);
        if let Some(r) = self.requests.get_mut(k) {
            r.charged = 0;
        }
    }

    fn try_commit(&mut self, k: usize, n: u64) -> bool {
        if self.commit_free() < n {
            return false;
        }
        self.pageable_commit = self.pageable_commit.saturating_add(n);
        if let Some(r) = self.requests.get_mut(k) {
            r.charged = n;
        }
        let fit = n.min(self.free);
        self.place_pageable(fit, k);
        true
    }

    /// The time of the earliest pending retry, if any.
    #[must_use]
    pub fn next_retry(&self) -> Option<Instant> {
        self.requests
            .iter()
            .filter_map(|r| match r.state {
                RequestState::Pending { next_retry } => Some(next_retry),
                _ => None,
            })
            .min()
    }

    /// Retries every pending request due at `now` (in request order).
    pub fn retry_due(&mut self, now: Instant) {
        for k in 0..self.requests.len() {
            if let Some(Request {
                state: RequestState::Pending { next_retry },
                ..
            }) = self.requests.get(k)
                && *next_retry <= now
            {
                self.attempt(k, now);
            }
        }
    }

    /// The once-a-second working-set manager: trims pageable pages until available memory
    /// is back at the high-memory threshold.
    pub fn balance(&mut self) {
        let high = self.high_threshold().get();
        if self.free < high && self.pageable_resident > 0 {
            self.trim(high - self.free);
        }
    }

    /// Requests, for reports: `(id, demand, frames asked, state)`.
    pub fn requests(&self) -> impl Iterator<Item = (&str, Demand, Frames, RequestState)> {
        self.requests
            .iter()
            .map(|r| (r.id.as_str(), r.demand, Frames::new(r.frames), r.state))
    }

    /// What became of every request (the boot commit excluded), in request order.
    #[must_use]
    pub fn request_outcomes(&self) -> Vec<RequestOutcome> {
        self.requests
            .iter()
            .filter(|r| r.id != "(boot)")
            .map(|r| RequestOutcome {
                id: r.id.clone(),
                pinned: matches!(r.demand, Demand::Pin(_)),
                asked_at: r.asked_at,
                failures: r.failures,
                satisfied_at: r.satisfied_at,
            })
            .collect()
    }

    /// The stored balloon chunks by page size and MDL capacity: `(size, MDL capacity in
    /// frames, chunks)`, sorted. The nonpaged bookkeeping of the driver's layout is one MDL
    /// per chunk ([`crate::cost::mdl_bytes`]).
    #[must_use]
    pub fn chunk_census(&self) -> Vec<(PageSize, u64, u64)> {
        let mut census: std::collections::BTreeMap<(usize, u64), u64> =
            std::collections::BTreeMap::new();
        for chunk in self.stored.iter().flatten() {
            let n = census
                .entry((chunk.size.index(), chunk.mdl_frames()))
                .or_insert(0);
            *n = n.saturating_add(1);
        }
        // vmballoon's units: one MDL each, as many frames as the unit (a block held as one
        // 2 MiB page is filed under 2 MiB pages).
        for shelf in Shelf::ALL {
            for unit in self.units.shelf(shelf) {
                let n = census
                    .entry((shelf.lock_size().index(), unit.pfns.len() as u64))
                    .or_insert(0);
                *n = n.saturating_add(1);
            }
        }
        census
            .into_iter()
            .map(|((i, frames), n)| {
                let size = if i == PageSize::Large.index() {
                    PageSize::Large
                } else {
                    PageSize::Small
                };
                (size, frames, n)
            })
            .collect()
    }

    /// Pageable frames the balloon's waiting allocations made the working-set manager page
    /// out (OVT's CANSLEEP): memory applications lose to the balloon without a failure.
    #[must_use]
    pub const fn balloon_trimmed_frames(&self) -> Frames {
        Frames::new(self.balloon_trimmed)
    }

    /// Recounts every frame's owner and compares with the running counters; returns a
    /// description of each mismatch (empty: the model is consistent).
    #[must_use]
    pub fn self_check(&self) -> Vec<String> {
        let mut count = [0u64; 6];
        let mut pinned = [0u64; 4];
        let mut blocks_free = vec![0u16; self.blocks.len()];
        for (f, s) in self.slots.iter().enumerate() {
            let o = s.decode();
            let i = match o {
                Owner::Free => {
                    if let Some(b) = blocks_free.get_mut(f / BLOCK_FRAMES as usize) {
                        *b += 1;
                    }
                    0
                }
                Owner::Os => 1,
                Owner::Balloon => 2,
                Owner::HeldRefused => 3,
                Owner::Pinned(n) => {
                    if let Some(Demand::Pin(kind)) = self.requests.get(n).map(|r| r.demand)
                        && let Some(p) = pinned.get_mut(kind.index())
                    {
                        *p += 1;
                    }
                    4
                }
                Owner::Pageable(_) => 5,
            };
            if let Some(c) = count.get_mut(i) {
                *c += 1;
            }
        }
        let mut problems = Vec::new();
        let expect = [
            ("free", self.free),
            ("os", self.os),
            ("balloon", self.balloon),
            ("held-refused", self.held_refused),
            ("pinned", self.pinned_total()),
            ("pageable", self.pageable_resident),
        ];
        for ((name, want), got) in expect.iter().zip(count) {
            if *want != got {
                problems.push(format!("{name}: counter {want}, frames {got}"));
            }
        }
        if pinned != self.pinned {
            problems.push(format!(
                "pinned by kind: counters {:?}, frames {pinned:?}",
                self.pinned
            ));
        }
        for (i, (b, free)) in self.blocks.iter().zip(&blocks_free).enumerate() {
            if b.free != *free || b.filed != b.free {
                problems.push(format!("block {i}: free {} counted {free}", b.free));
                break;
            }
        }
        let in_store: u64 = self.stored.iter().flatten().map(GuestChunk::frames).sum();
        if in_store != self.stored_frames {
            problems.push(format!(
                "stored: counter {}, chunks {in_store}",
                self.stored_frames
            ));
        }
        problems
    }
}

/// vmballoon's platform in the simulator: the core's [`PageAllocator`] (units from
/// `MmAllocatePagesForMdlEx`, each freed whole, kept in the driver's own lists) and
/// [`MemorySource`] over the shared [`crate::world::World`]. It holds the engine to the
/// `PageAllocator` contract and records every breach in the world's contract checker: a
/// free of anything but a whole unit it handed out (the guest model's
/// [`GuestModel::mdl_free`]), a unit freed while the host holds a page of it, a unit
/// stored that the host does not hold entirely, a unit parked with the wrong held frames.
/// Clones share the world: the engine gets one as its allocator and one as its memory
/// source.
#[derive(Clone, Debug)]
pub struct FakeGuest {
    world: SharedWorld,
}

impl FakeGuest {
    /// A handle on `world`.
    #[must_use]
    pub fn new(world: SharedWorld) -> Self {
        Self { world }
    }

    /// RAM in frames, read without a snapshot: not charged.
    #[must_use]
    pub fn total_frames(&self) -> Frames {
        self.world.borrow().guest.total()
    }

    fn allocate_unit(&mut self, kind: UnitKind, frames: u64) -> Option<GuestUnit> {
        let req = MdlRequest {
            frames,
            whole_blocks: kind == UnitKind::Block,
            prefer_contiguous: kind == UnitKind::Scattered,
        };
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        let pfns = w.guest.mdl_allocate(req);
        let mdl = w.cost.mdl_alloc_ns;
        w.charge(Work::Mdl, mdl);
        let pfns = pfns?;
        let (size, pages) = match kind {
            UnitKind::Block => (PageSize::Large, 1),
            UnitKind::Scattered => (PageSize::Small, pfns.len()),
        };
        PeerPages::charge_allocation(w, size, pages);
        Some(GuestUnit {
            kind,
            pfns,
            dropped: Rc::clone(&w.guest.dropped),
        })
    }

    /// Whether the host holds frame `i` of `unit` (as a 4 KiB page or inside a 2 MiB one:
    /// the host model keeps one bit per frame).
    fn host_holds(w: &World, unit: &GuestUnit, i: usize) -> bool {
        unit.pfns
            .get(i)
            .is_some_and(|&p| w.host.holds_any(p, PageSize::Small))
    }

    /// The stored, staged and parked units' frames.
    #[must_use]
    pub fn unit_frames(&self) -> Frames {
        self.world.borrow().guest.unit_frames()
    }
}

/// `MmFreePagesFromMdl` + `ExFreePool` of the MDL whose PFN array is `pfns`, judged: a
/// page the host still holds, or a free of anything but a whole, untouched MDL the model
/// handed out ([`GuestModel::mdl_free`]), is recorded in the world's contract checker.
/// The driver's platform ([`FakeGuest`]) and the emulated kernel's memory manager
/// (`crate::serve`) both free through it.
pub fn free_mdl_checked(w: &mut World, pfns: &[u64]) {
    if let Some(&pfn) = pfns.iter().find(|&&p| w.host.holds_any(p, PageSize::Small)) {
        w.contract.record(format!(
            "freed a unit while the host still holds its page pfn {pfn:#x}"
        ));
    }
    if let Err(e) = w.guest.mdl_free(pfns) {
        w.contract.record(e);
    }
}

impl PageAllocator for FakeGuest {
    type Unit = GuestUnit;

    fn allocate_block(&mut self) -> Option<GuestUnit> {
        self.allocate_unit(UnitKind::Block, BLOCK_FRAMES)
    }

    fn allocate_scattered(&mut self, pages: usize) -> Option<GuestUnit> {
        self.allocate_unit(UnitKind::Scattered, pages as u64)
    }

    fn frames(&self, unit: &GuestUnit) -> Frames {
        Frames::new(unit.pfns.len() as u64)
    }

    fn pfn(&self, unit: &GuestUnit, index: usize) -> Option<Pfn> {
        unit.pfns.get(index).and_then(|&p| Pfn::new(p))
    }

    fn free(&mut self, mut unit: GuestUnit) {
        let pfns = std::mem::take(&mut unit.pfns);
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        let (size, pages) = match unit.kind {
            UnitKind::Block => (PageSize::Large, 1),
            UnitKind::Scattered => (PageSize::Small, pfns.len() as u64),
        };
        let ns = w.cost.free_pages(size, pages);
        w.charge(Work::Free, ns);
        let ns = w.cost.mdl_free_ns;
        w.charge(Work::Mdl, ns);
        free_mdl_checked(w, &pfns);
    }

    fn store(&mut self, shelf: Shelf, unit: GuestUnit, position: StorePosition) {
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        if unit.pfns.is_empty() || unit.kind != shelf.kind() {
            w.contract.record(format!(
                "stored a {:?} unit of {} frames on the {} shelf",
                unit.kind,
                unit.pfns.len(),
                shelf.name()
            ));
        }
        let held = match shelf.lock_size() {
            PageSize::Large => unit
                .pfns
                .first()
                .is_some_and(|&p| w.host.holds_all(p, PageSize::Large)),
            PageSize::Small => unit
                .pfns
                .iter()
                .all(|&p| w.host.holds_all(p, PageSize::Small)),
        };
        if !held {
            w.contract.record(format!(
                "stored a unit (first pfn {:#x}) on the {} shelf that the host does not hold \
                 entirely",
                unit.pfns.first().copied().unwrap_or(0),
                shelf.name()
            ));
        }
        w.guest.units.store(shelf, unit, position);
    }

    fn take(&mut self, shelf: Shelf) -> Option<GuestUnit> {
        self.world.borrow_mut().guest.units.take(shelf)
    }

    fn stage(&mut self, unit: GuestUnit) {
        self.world.borrow_mut().guest.units.stage(unit);
    }

    fn staged_pfn(&self, unit: usize, index: usize) -> Option<Pfn> {
        let w = self.world.borrow();
        let unit = w.guest.units.staged(unit)?;
        unit.pfns.get(index).and_then(|&p| Pfn::new(p))
    }

    fn unstage(&mut self) -> Option<GuestUnit> {
        self.world.borrow_mut().guest.units.unstage()
    }

    fn park(&mut self, unit: GuestUnit, held: PageMask) {
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        for i in 0..unit.pfns.len() {
            let holds = Self::host_holds(w, &unit, i);
            if holds != held.contains(i) {
                w.contract.record(format!(
                    "parked a unit whose frame {i} the host {} although the engine says it \
                     {}",
                    if holds { "holds" } else { "does not hold" },
                    if held.contains(i) { "does" } else { "does not" }
                ));
                break;
            }
        }
        if w.guest.units.parked() >= vmballoon_core::platform::PARK_CAPACITY {
            w.contract
                .record("more than PARK_CAPACITY units parked".to_owned());
        }
        w.guest.units.park(unit, held);
    }

    fn unpark(&mut self) -> Option<(GuestUnit, PageMask)> {
        self.world.borrow_mut().guest.units.unpark()
    }

    fn parked(&self) -> usize {
        self.world.borrow().guest.units.parked()
    }
}

/// The page lists of the peer models ([`crate::peers`], [`crate::naive`]): the page-granular
/// allocator semantics of the drivers they model (Linux allocates and frees single pages).
/// Not the Windows MDL contract, which only vmballoon ([`FakeGuest`]) is held to: a peer
/// may split a chunk and free part of it. Clones share the world.
#[derive(Clone, Debug)]
pub struct PeerPages {
    world: SharedWorld,
}

impl PeerPages {
    /// A handle on `world`.
    #[must_use]
    pub fn new(world: SharedWorld) -> Self {
        Self { world }
    }

    fn charge_allocation(w: &mut World, size: PageSize, pages: usize) {
        let pages = pages as u64;
        let ns = w.cost.alloc(size, pages);
        w.charge(Work::Alloc, ns);
        if w.zeroing {
            let ns = w.cost.zero(size, pages);
            w.charge(Work::Zero, ns);
        }
    }

    /// RAM in frames, read without a snapshot (Linux's `totalram_pages()`): not charged.
    #[must_use]
    pub fn total_frames(&self) -> Frames {
        self.world.borrow().guest.total()
    }

    /// An allocation of up to `pages` 4 KiB pages that may wait for the working-set
    /// manager to page out pageable memory ([`GuestModel`]'s CANSLEEP rule): OVT's
    /// CANSLEEP allocation type. Charged like an allocation plus, when it had to trim,
    /// one wait and the page-outs ([`crate::cost::CostModel::trim_wait_ns`]).
    pub fn allocate_waiting(&mut self, pages: usize) -> Option<GuestChunk> {
        let mut w = self.world.borrow_mut();
        let (pfns, trimmed) = w.guest.allocate_balloon_waiting(pages);
        let mdl = w.cost.mdl_alloc_ns;
        w.charge(Work::Mdl, mdl);
        if trimmed > 0 {
            let ns = w
                .cost
                .trim_wait_ns
                .saturating_add(w.cost.page_out_ns.saturating_mul(trimmed));
            w.charge(Work::TrimWait, ns);
        }
        let pfns = pfns?;
        Self::charge_allocation(&mut w, PageSize::Small, pfns.len());
        Some(GuestChunk {
            size: PageSize::Small,
            mdl_pages: pages.clamp(1, vmballoon_core::protocol::BATCH_CAPACITY),
            pfns,
            dropped: Rc::clone(&w.guest.dropped),
        })
    }

    /// An empty chunk of `size` (for policies that gather pages from several chunks).
    #[must_use]
    pub fn empty_chunk(&self, size: PageSize) -> GuestChunk {
        GuestChunk {
            size,
            pfns: Vec::new(),
            mdl_pages: 0,
            dropped: Rc::clone(&self.world.borrow().guest.dropped),
        }
    }

    /// Moves the pages of `chunk` whose indices are in `mask` into a new chunk of the same
    /// size, in order (a list operation for the peer models: no page changes owner).
    pub fn split_off(&self, chunk: &mut GuestChunk, mask: &PageMask) -> GuestChunk {
        let all = std::mem::take(&mut chunk.pfns);
        let mut out = self.empty_chunk(chunk.size);
        for (i, pfn) in all.into_iter().enumerate() {
            if mask.contains(i) {
                out.pfns.push(pfn);
            } else {
                chunk.pfns.push(pfn);
            }
        }
        out.mdl_pages = out.pfns.len();
        out
    }

    /// Moves the first `n` pages of `chunk` into a new chunk of the same size.
    pub fn take_front(&self, chunk: &mut GuestChunk, n: usize) -> GuestChunk {
        let n = n.min(chunk.pfns.len());
        let rest = chunk.pfns.split_off(n);
        let front = std::mem::replace(&mut chunk.pfns, rest);
        let mut out = self.empty_chunk(chunk.size);
        out.pfns = front;
        out.mdl_pages = n;
        out
    }

    /// Appends every page of `src` to `dst` (pages of the same size; a `src` of the other
    /// size is returned unchanged as `Err`).
    ///
    /// # Errors
    /// `src` back when its page size differs from `dst`'s.
    pub fn append(&self, dst: &mut GuestChunk, mut src: GuestChunk) -> Result<(), GuestChunk> {
        if src.size != dst.size {
            return Err(src);
        }
        dst.pfns.append(&mut src.pfns);
        dst.mdl_pages = dst.mdl_pages.saturating_add(src.mdl_pages);
        Ok(())
    }

    /// Splits every 2 MiB page of `chunk` into its 512 4 KiB pages (Linux's
    /// `vmballoon_split_refused_pages`, `protocol.md` §6.3). A 4 KiB chunk comes back as
    /// it is.
    pub fn split_large(&self, mut chunk: GuestChunk) -> GuestChunk {
        if chunk.size == PageSize::Small {
            return chunk;
        }
        let per = PageSize::Large.frames().get();
        let mut out = self.empty_chunk(PageSize::Small);
        for pfn in std::mem::take(&mut chunk.pfns) {
            out.pfns.extend(pfn..pfn.saturating_add(per));
        }
        out.mdl_pages = out.pfns.len();
        out
    }

    /// Returns `pfns` (pages of `size`, owned by the balloon) to the OS, recording a
    /// violation for each page the host still holds or that is not a balloon page. Charges
    /// the modelled cost of freeing them.
    fn release(&self, size: PageSize, pfns: &[u64], what: &str) {
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        let ns = w.cost.free_pages(size, pfns.len() as u64);
        w.charge(Work::Free, ns);
        let mut frames = Vec::with_capacity(pfns.len());
        for &pfn in pfns {
            for f in GuestModel::page_frames(pfn, size) {
                match w.guest.owner(f) {
                    Some(Owner::Balloon | Owner::HeldRefused) => frames.push(f),
                    other => w.checker.record(format!(
                        "guest {what} pfn {f:#x}, which is not a balloon page ({other:?})"
                    )),
                }
            }
            if w.host.holds_any(pfn, size) {
                w.checker.record(format!(
                    "guest {what} {} page pfn {pfn:#x} while the host still holds it",
                    size.name()
                ));
            }
        }
        w.guest.release_frames(&frames);
    }
}

impl PeerPages {
    /// Allocates up to `pages` (1..=512) pages of `size` without waiting
    /// (`MmAllocatePagesForMdlEx` charging; page-granular, see the type docs).
    pub fn allocate(&mut self, size: PageSize, pages: usize) -> Option<GuestChunk> {
        let mut w = self.world.borrow_mut();
        let pfns = w.guest.allocate_balloon(size, pages);
        let mdl = w.cost.mdl_alloc_ns;
        w.charge(Work::Mdl, mdl);
        let pfns = pfns?;
        Self::charge_allocation(&mut w, size, pfns.len());
        Some(GuestChunk {
            size,
            mdl_pages: pages.clamp(1, vmballoon_core::protocol::BATCH_CAPACITY),
            pfns,
            dropped: Rc::clone(&w.guest.dropped),
        })
    }

    #[allow(
        missing_docs,
        reason = "the chunk operations of the peer models; see the type docs"
    )]
    pub fn page_count(&self, chunk: &GuestChunk) -> usize {
        chunk.pfns.len()
    }

    #[allow(
        missing_docs,
        reason = "the chunk operations of the peer models; see the type docs"
    )]
    pub fn page_size(&self, chunk: &GuestChunk) -> PageSize {
        chunk.size
    }

    #[allow(
        missing_docs,
        reason = "the chunk operations of the peer models; see the type docs"
    )]
    pub fn pfn(&self, chunk: &GuestChunk, index: usize) -> Option<Pfn> {
        chunk.pfns.get(index).and_then(|&p| Pfn::new(p))
    }

    #[allow(
        missing_docs,
        reason = "the chunk operations of the peer models; see the type docs"
    )]
    pub fn retain(&mut self, chunk: &mut GuestChunk, keep: &PageMask, hold: &PageMask) {
        let all = std::mem::take(&mut chunk.pfns);
        let mut freed = Vec::new();
        let mut held = Vec::new();
        for (i, pfn) in all.into_iter().enumerate() {
            if keep.contains(i) {
                chunk.pfns.push(pfn);
            } else if hold.contains(i) {
                held.push(pfn);
            } else {
                freed.push(pfn);
            }
        }
        if !freed.is_empty() {
            self.release(chunk.size, &freed, "freed");
        }
        if held.is_empty() {
            return;
        }
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        for pfn in held {
            let frames: Vec<u64> = GuestModel::page_frames(pfn, chunk.size).collect();
            w.guest.set_all(frames, Owner::HeldRefused);
            w.guest.held.push((pfn, chunk.size));
            if w.host.holds_any(pfn, chunk.size) {
                w.checker.record(format!(
                    "guest held pfn {pfn:#x} as refused although the host holds it"
                ));
            }
        }
        w.guest.held_peak = w.guest.held_peak.max(w.guest.held.len());
        if w.guest.held.len() > PEER_HELD_REFUSED {
            let n = w.guest.held.len();
            w.checker.record(format!(
                "platform contract: {n} refused pages held, more than PEER_HELD_REFUSED ({PEER_HELD_REFUSED})"
            ));
        }
    }

    #[allow(
        missing_docs,
        reason = "the chunk operations of the peer models; see the type docs"
    )]
    pub fn free(&mut self, mut chunk: GuestChunk) {
        let pfns = std::mem::take(&mut chunk.pfns);
        self.release(chunk.size, &pfns, "freed");
        let mut w = self.world.borrow_mut();
        let ns = w.cost.mdl_free_ns;
        w.charge(Work::Mdl, ns);
    }

    #[allow(
        missing_docs,
        reason = "the chunk operations of the peer models; see the type docs"
    )]
    pub fn free_refused(&mut self) {
        let held = std::mem::take(&mut self.world.borrow_mut().guest.held);
        for (pfn, size) in held {
            self.release(size, &[pfn], "freed held refused");
        }
    }

    #[allow(
        missing_docs,
        reason = "the chunk operations of the peer models; see the type docs"
    )]
    pub fn store(&mut self, chunk: GuestChunk, position: StorePosition) {
        let mut w = self.world.borrow_mut();
        let w = &mut *w;
        if chunk.pfns.is_empty() {
            w.checker
                .record("platform contract: an empty chunk was stored (free it instead)");
        }
        for &pfn in &chunk.pfns {
            if !w.host.holds_all(pfn, chunk.size) {
                w.checker.record(format!(
                    "platform contract: stored {} page pfn {pfn:#x}, which the host does not hold",
                    chunk.size.name()
                ));
            }
        }
        w.guest.stored_frames = w.guest.stored_frames.saturating_add(chunk.frames());
        let Some(queue) = w.guest.stored.get_mut(chunk.size.index()) else {
            return;
        };
        match position {
            StorePosition::First => queue.push_front(chunk),
            StorePosition::Last => queue.push_back(chunk),
        }
    }

    #[allow(
        missing_docs,
        reason = "the chunk operations of the peer models; see the type docs"
    )]
    pub fn take(&mut self, size: PageSize) -> Option<GuestChunk> {
        let mut w = self.world.borrow_mut();
        let chunk = w.guest.stored.get_mut(size.index())?.pop_front()?;
        w.guest.stored_frames = w.guest.stored_frames.saturating_sub(chunk.frames());
        Some(chunk)
    }
}

impl MemorySource for FakeGuest {
    /// A snapshot, charged as one `ZwQuerySystemInformation` ([`crate::cost`]).
    fn snapshot(&mut self) -> Result<MemorySnapshot, MemoryError> {
        let mut w = self.world.borrow_mut();
        let ns = w.cost.snapshot_ns;
        w.charge(Work::Snapshot, ns);
        Ok(w.guest.snapshot())
    }
}

#[cfg(test)]
mod tests;
