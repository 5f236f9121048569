//! [`PeerPages`]: the page lists of the peer models (`crate::peers`, `crate::naive`), with
//! the page-granular semantics of the drivers they model.

use std::cell::Cell;
use std::rc::Rc;

use vmballoon_core::mask::PageMask;
use vmballoon_core::platform::StorePosition;
use vmballoon_core::units::{Frames, PageSize, Pfn};

use crate::cost::Work;
use crate::world::{SharedWorld, World};

use super::*;

/// A chunk of balloon pages of a peer model ([`PeerPages`]): a page list the peer may split
/// and free page by page, as Linux frees single pages. Dropping a chunk that still has
/// pages is a leak; the model counts it (see [`GuestModel::dropped_frames`]).
#[derive(Debug)]
pub struct GuestChunk {
    pub(super) size: PageSize,
    pub(super) pfns: Vec<u64>,
    /// Pages the MDL was built for (its PFN array's capacity, in pages of `size`): what
    /// `MmAllocatePagesForMdlEx` was asked for. The array keeps this size for the chunk's
    /// life, even when `retain` compacts it.
    pub(super) mdl_pages: usize,
    pub(super) dropped: Rc<Cell<u64>>,
}

impl GuestChunk {
    pub(super) fn frames(&self) -> u64 {
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

/// The page lists of the peer models ([`crate::peers`], [`crate::peers::naive`]): the page-granular
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

    pub(super) fn charge_allocation(w: &mut World, size: PageSize, pages: usize) {
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

    /// An empty chunk of `size` (for drivers that gather pages from several chunks).
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
    /// `vmballoon_split_refused_pages`, `docs/protocol.md` §6.3). A 4 KiB chunk comes back as
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
