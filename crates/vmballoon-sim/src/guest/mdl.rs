//! `MmAllocatePagesForMdlEx` and `MmFreePagesFromMdl` for the balloons: the charging rule,
//! whole 2 MiB chunks, 4 KiB placement, and the registry of outstanding MDLs that judges
//! every free (`docs/windows-memory.md` §1.3, §1.4, §1.7).

use std::cell::Cell;
use std::rc::Rc;

use vmballoon_core::platform::UnitKind;
use vmballoon_core::units::PageSize;

use super::*;

/// A unit of vmballoon's balloon ([`FakeGuest`]): one MDL from `MmAllocatePagesForMdlEx`,
/// its 4 KiB frames in MDL order. It can only go back whole ([`PageAllocator::free`](vmballoon_core::platform::PageAllocator::free)).
/// Dropping one that still has pages is a leak; the model counts it.
#[derive(Debug)]
pub struct GuestUnit {
    pub(super) kind: UnitKind,
    pub(super) pfns: Vec<u64>,
    pub(super) dropped: Rc<Cell<u64>>,
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
/// (`docs/windows-memory.md` §1.2, §1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MdlRequest {
    /// 4 KiB frames asked for (`TotalBytes`), at most 512 for a balloon unit.
    pub frames: u64,
    /// `MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS` with a 2 MiB `SkipBytes` and
    /// `MM_ALLOCATE_FAST_LARGE_PAGES`: whole, aligned, already free 2 MiB blocks only.
    pub whole_blocks: bool,
    /// `MM_ALLOCATE_PREFER_CONTIGUOUS`: "in a way that minimizes system memory
    /// fragmentation" — the model takes 4 KiB pages from the most used partly free block
    /// first ([`Placement::BestFit`]); without it, the lowest free frame
    /// ([`Placement::FirstFit`]).
    pub prefer_contiguous: bool,
    /// `HighAddress` below the top of memory: only frames below this one (a frame number;
    /// `None`: anywhere). With `SkipBytes` = 0 the pages come from `[0, HighAddress]`
    /// (`docs/windows-memory.md` §1.4, "The fragmentation-neutral balloon").
    pub below: Option<u64>,
}

/// An MDL the model handed out and that has not come back: how many frames it describes
/// and a digest of its PFN array, so that a free of anything but that exact MDL is seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Outstanding {
    pub(super) frames: usize,
    pub(super) digest: u64,
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

impl GuestModel {
    // ---- the balloon's allocator -------------------------------------------------------

    /// Whether the charging rule lets a balloon MDL of `frames` through: under the
    /// charged accounting the whole request must fit in resident available memory and
    /// commit (else `NULL`); under the not-charged one nothing is checked.
    pub(super) fn balloon_charge_fits(&self, frames: u64) -> bool {
        !self.mdl_charged() || self.charges_fit(frames)
    }

    /// `MmAllocatePagesForMdlEx` for a peer model's balloon: up to `pages` (1..=512) pages of
    /// `size`, without `MM_ALLOCATE_PREFER_CONTIGUOUS` (the peers' Windows port passes no
    /// placement flag), so 4 KiB pages are placed first-fit. See the module docs for the
    /// charging rule.
    pub(super) fn allocate_balloon(&mut self, size: PageSize, pages: usize) -> Option<Vec<u64>> {
        if let Some(c) = self.mdl_calls.get_mut(size.index()) {
            *c = c.saturating_add(1);
        }
        let pages = pages.min(vmballoon_core::protocol::BATCH_CAPACITY) as u64;
        let charge = pages.saturating_mul(size.frames().get());
        let got = if pages == 0 || !self.balloon_charge_fits(charge) {
            Vec::new()
        } else {
            match size {
                PageSize::Small => self.take_available(pages, Owner::Balloon, Placement::FirstFit),
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
        let got = if !fits || !self.balloon_charge_fits(frames) {
            Vec::new()
        } else if req.whole_blocks {
            self.take_blocks_below(frames / BLOCK_FRAMES, Owner::Balloon, req.below)
                .into_iter()
                .flat_map(|first| first..first.saturating_add(BLOCK_FRAMES))
                .collect()
        } else {
            let placement = if req.prefer_contiguous {
                Placement::BestFit
            } else {
                Placement::FirstFit
            };
            self.take_available_below(frames, Owner::Balloon, placement, req.below)
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
    /// `MmAllocatePagesForMdlEx` returned, freed whole, once (`docs/windows-memory.md` §1.3).
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
    /// [`GuestModel::allocate_balloon`], but when available pages are short the memory
    /// manager first writes modified pages and trims working sets for what is missing
    /// ([`GuestModel::reclaim_now`], as an allocation that waits does). 4 KiB pages only,
    /// first-fit. Returns the frames and how many frames had to be reclaimed.
    pub(super) fn allocate_balloon_waiting(&mut self, pages: usize) -> (Option<Vec<u64>>, u64) {
        let size = PageSize::Small;
        if let Some(c) = self.mdl_calls.get_mut(size.index()) {
            *c = c.saturating_add(1);
        }
        let pages = pages.min(vmballoon_core::protocol::BATCH_CAPACITY) as u64;
        let mut trimmed = 0;
        let got = if pages == 0 || !self.balloon_charge_fits(pages) {
            Vec::new()
        } else {
            let mut got = self.take_available(pages, Owner::Balloon, Placement::FirstFit);
            let short = pages.saturating_sub(got.len() as u64);
            if short > 0 {
                trimmed = self.reclaim_now(short);
                self.balloon_trimmed = self.balloon_trimmed.saturating_add(trimmed);
                got.extend(self.take_available(short, Owner::Balloon, Placement::FirstFit));
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
    pub(super) fn page_frames(pfn: u64, size: PageSize) -> std::ops::Range<u64> {
        pfn..pfn.saturating_add(size.frames().get())
    }
}
