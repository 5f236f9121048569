//! The frame table and its accounting: every 4 KiB frame's [`Owner`], the per-block counts
//! and free-block indexes, resident available memory, commit, available memory,
//! LowMemoryCondition and MaximumCommitCondition, trimming, and the snapshot the driver's
//! `MemorySource` reports (the rules are in the [module docs](super)).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use vmballoon_core::fake::VecStore;
use vmballoon_core::platform::{MemorySnapshot, PinnedBreakdown, Shelf};
use vmballoon_core::units::{Frames, Instant, PageSize};

use super::*;

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
            accounting: MdlAccounting::Charged,
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
            with_free: (0..nblocks as u32).collect(),
            free: ram,
            os: 0,
            pinned: [0; 6],
            pageable_resident: 0,
            modified: 0,
            standby: 0,
            pageable_commit: 0,
            balloon: 0,
            held_refused: 0,
            requests: Vec::new(),
            working_set: VecDeque::new(),
            modified_list: VecDeque::new(),
            standby_list: VecDeque::new(),
            now: 0,
            written_at: 0,
            write_carry: 0,
            write_bytes_per_s: crate::cost::PAGE_WRITE_BYTES_PER_S,
            demand: 0,
            stored: [VecDeque::new(), VecDeque::new()],
            stored_frames: 0,
            held: Vec::new(),
            held_peak: 0,
            units: VecStore::new(),
            outstanding: BTreeMap::new(),
            dropped: Rc::new(Cell::new(0)),
            alloc_failures: 0,
            short_grants: 0,
            min_resident_available: u64::MAX,
            mdl_calls: [0; 2],
            mdl_failures: [0; 2],
            batch_page: 0,
            balloon_trimmed: 0,
            trimmed_total: 0,
            written_total: 0,
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
                partial_ok: false,
                granted: 0,
                short_grants: 0,
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

    pub(super) fn owner(&self, frame: u64) -> Option<Owner> {
        self.slots.get(frame as usize).map(|s| s.decode())
    }

    /// The owner of the frame at `pfn`, or `None` outside RAM.
    #[must_use]
    pub fn owner_of(&self, pfn: u64) -> Option<Owner> {
        self.owner(pfn)
    }

    pub(super) fn counter(&mut self, owner: Owner) -> Option<&mut u64> {
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
            Owner::Modified(_) => Some(&mut self.modified),
            Owner::Standby(_) => Some(&mut self.standby),
        }
    }

    /// Frames Windows cannot page out or move to build a large page: OS, pinned and
    /// balloon memory. Working-set, modified and standby pages can be.
    pub(super) const fn unmovable(owner: Owner) -> bool {
        !matches!(
            owner,
            Owner::Free | Owner::Pageable(_) | Owner::Modified(_) | Owner::Standby(_)
        )
    }

    /// Gives `frame` to `owner`, keeping every counter and the block counts in step (the
    /// free-block indexes are updated by [`GuestModel::refile`]).
    pub(super) fn set(&mut self, frame: u64, owner: Owner) {
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
            if !matches!(old, Owner::Modified(m) | Owner::Standby(m) if m == n) {
                r.frames_held.push(frame as u32);
            }
            self.working_set.push_back((frame as u32, self.now));
        }
        match owner {
            Owner::Modified(_) => self.modified_list.push_back(frame as u32),
            Owner::Standby(_) => self.standby_list.push_back(frame as u32),
            _ => {}
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
    pub(super) fn refile(&mut self, b: u32) {
        let Some(block) = self.blocks.get_mut(b as usize) else {
            return;
        };
        if block.filed == block.free {
            return;
        }
        let (old, new) = (block.filed, block.free);
        block.filed = new;
        if new > 0 {
            self.with_free.insert(b);
        } else {
            self.with_free.remove(&b);
        }
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

    pub(super) fn refile_range(&mut self, first_frame: u64, end_frame: u64) {
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
    pub(super) fn set_all(&mut self, frames: impl IntoIterator<Item = u64>, owner: Owner) {
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
    /// then whole free blocks ([`Placement::BestFit`]). Returns the frames taken.
    pub(super) fn take_small(&mut self, n: u64, owner: Owner) -> Vec<u64> {
        self.take_free(n, owner, Placement::BestFit)
    }

    /// Takes up to `n` free frames for `owner`, placed as `placement` says. Returns the
    /// frames taken.
    pub(super) fn take_free(&mut self, n: u64, owner: Owner, placement: Placement) -> Vec<u64> {
        self.take_free_below(n, owner, placement, None)
    }

    /// [`GuestModel::take_free`] from frames below `below` only (`None`: anywhere).
    pub(super) fn take_free_below(
        &mut self,
        n: u64,
        owner: Owner,
        placement: Placement,
        below: Option<u64>,
    ) -> Vec<u64> {
        let limit = below.unwrap_or(u64::MAX);
        // Blocks wholly or partly below the limit.
        let end_block = u32::try_from(limit.div_ceil(BLOCK_FRAMES)).unwrap_or(u32::MAX);
        let mut out = Vec::new();
        let mut skip: BTreeSet<u32> = BTreeSet::new();
        while (out.len() as u64) < n {
            let eligible = |b: &u32| *b < end_block && !skip.contains(b);
            let block = match placement {
                Placement::BestFit => self
                    .partial
                    .iter()
                    .map(|&(_, b)| b)
                    .find(eligible)
                    .or_else(|| self.whole_free.iter().copied().find(eligible)),
                Placement::FirstFit => self.with_free.iter().copied().find(eligible),
            };
            let Some(b) = block else { break };
            let base = u64::from(b) * BLOCK_FRAMES;
            let mut took = false;
            for f in base..(base + BLOCK_FRAMES).min(limit) {
                if out.len() as u64 >= n {
                    break;
                }
                if self.owner(f) == Some(Owner::Free) {
                    self.set(f, owner);
                    out.push(f);
                    took = true;
                }
            }
            let before = self.blocks.get(b as usize).map(|x| x.filed);
            self.refile(b);
            if !took {
                // Its free frames are all at or above the limit (or the indexes are out of
                // step): not this block again. Never loop.
                skip.insert(b);
            } else if before == self.blocks.get(b as usize).map(|x| x.filed) {
                break;
            }
        }
        out
    }

    /// Repurposes up to `n` standby pages for `owner`, oldest first. Their contents are in
    /// the page file already (the page is simply reused). Returns the frames taken.
    pub(super) fn take_standby(&mut self, n: u64, owner: Owner) -> Vec<u64> {
        self.take_standby_below(n, owner, None)
    }

    /// [`GuestModel::take_standby`] from frames below `below` only (`None`: anywhere).
    pub(super) fn take_standby_below(
        &mut self,
        n: u64,
        owner: Owner,
        below: Option<u64>,
    ) -> Vec<u64> {
        let limit = below.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut passed = VecDeque::new();
        while (out.len() as u64) < n {
            let Some(f) = self.standby_list.pop_front() else {
                break;
            };
            let frame = u64::from(f);
            if !matches!(self.owner(frame), Some(Owner::Standby(_))) {
                continue;
            }
            if frame >= limit {
                passed.push_back(f);
                continue;
            }
            self.set(frame, owner);
            out.push(frame);
        }
        // Pages above the limit keep their place at the head of the list.
        while let Some(f) = passed.pop_back() {
            self.standby_list.push_front(f);
        }
        out
    }

    /// Takes up to `n` available frames for `owner`: free frames as `placement` says, then
    /// standby pages (Windows repurposes its standby cache only once the free and zeroed
    /// lists are empty: an assumption, `docs/windows-memory.md` §3.6). Returns the frames taken.
    pub(super) fn take_available(
        &mut self,
        n: u64,
        owner: Owner,
        placement: Placement,
    ) -> Vec<u64> {
        self.take_available_below(n, owner, placement, None)
    }

    /// [`GuestModel::take_available`] from frames below `below` only (`None`: anywhere).
    pub(super) fn take_available_below(
        &mut self,
        n: u64,
        owner: Owner,
        placement: Placement,
        below: Option<u64>,
    ) -> Vec<u64> {
        let mut out = self.take_free_below(n, owner, placement, below);
        let short = n.saturating_sub(out.len() as u64);
        if short > 0 && self.standby > 0 {
            out.extend(self.take_standby_below(short, owner, below));
        }
        out
    }

    /// Takes up to `n` whole free blocks for `owner`; returns their first frames.
    pub(super) fn take_blocks(&mut self, n: u64, owner: Owner) -> Vec<u64> {
        self.take_blocks_below(n, owner, None)
    }

    /// [`GuestModel::take_blocks`] from blocks wholly below `below` only (`None`: anywhere).
    pub(super) fn take_blocks_below(
        &mut self,
        n: u64,
        owner: Owner,
        below: Option<u64>,
    ) -> Vec<u64> {
        let end = below.map_or(u64::MAX, |l| l / BLOCK_FRAMES);
        let chosen: Vec<u32> = self
            .whole_free
            .iter()
            .copied()
            .filter(|&b| u64::from(b) < end)
            .take(n as usize)
            .collect();
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
    pub(super) fn scatter(&mut self, n: u64, owner: Owner) {
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

    /// Makes up to `n` frames of pageable request `k` resident: free frames as the layout
    /// says, then standby pages. Returns the frames placed.
    pub(super) fn place_pageable(&mut self, n: u64, k: usize) -> u64 {
        let before = self.pageable_resident;
        match self.spec.layout {
            PageableLayout::Packed => {
                self.take_small(n, Owner::Pageable(k));
            }
            PageableLayout::Scattered => self.scatter(n, Owner::Pageable(k)),
        }
        let placed = self.pageable_resident.saturating_sub(before);
        let short = n.saturating_sub(placed);
        if short > 0 {
            self.take_standby(short, Owner::Pageable(k));
        }
        self.pageable_resident.saturating_sub(before)
    }

    pub(super) fn release_frames(&mut self, frames: &[u64]) {
        self.set_all(frames.iter().copied(), Owner::Free);
    }

    /// Whether private (pageable-commit) pages can leave memory at all: only with a page
    /// file to write them to ("Page files enable the system to remove infrequently
    /// accessed modified pages from physical memory", `docs/windows-memory.md` §3.6). Every
    /// pageable page of the model is private, so without a page file none is trimmed.
    pub(super) fn can_page_out(&self) -> bool {
        !self.spec.pagefile.is_zero()
    }

    /// One working-set pass's trimming: moves up to `n` working-set pages that are at
    /// least [`TRIM_MIN_AGE`] old to the modified list, least recently used first. Returns
    /// the frames trimmed.
    pub(super) fn trim_aged(&mut self, n: u64) -> u64 {
        if !self.can_page_out() {
            return 0;
        }
        let mut trimmed = 0u64;
        while trimmed < n {
            let Some(&(f, since)) = self.working_set.front() else {
                break;
            };
            if since.saturating_add(TRIM_MIN_AGE.as_nanos()) > self.now {
                break;
            }
            self.working_set.pop_front();
            if let Some(Owner::Pageable(k)) = self.owner(u64::from(f)) {
                self.set(u64::from(f), Owner::Modified(k));
                trimmed += 1;
            }
        }
        self.trimmed_total = self.trimmed_total.saturating_add(trimmed);
        trimmed
    }

    /// What an allocation that waits gets from the memory manager when available pages
    /// run short: modified pages written at once, then working-set pages trimmed (least
    /// recently used first, whatever their age) and written, up to `n` frames, all made
    /// free. Nothing without a page file. Returns the frames freed.
    pub(super) fn reclaim_now(&mut self, n: u64) -> u64 {
        if !self.can_page_out() {
            return 0;
        }
        let mut freed = Vec::new();
        while (freed.len() as u64) < n {
            let Some(f) = self.modified_list.pop_front() else {
                break;
            };
            if matches!(self.owner(u64::from(f)), Some(Owner::Modified(_))) {
                self.set(u64::from(f), Owner::Free);
                freed.push(u64::from(f));
            }
        }
        let mut trimmed = 0u64;
        while (freed.len() as u64) < n {
            let Some((f, _)) = self.working_set.pop_front() else {
                break;
            };
            if matches!(self.owner(u64::from(f)), Some(Owner::Pageable(_))) {
                self.set(u64::from(f), Owner::Free);
                freed.push(u64::from(f));
                trimmed += 1;
            }
        }
        self.trimmed_total = self.trimmed_total.saturating_add(trimmed);
        self.written_total = self.written_total.saturating_add(freed.len() as u64);
        freed.sort_unstable();
        let mut last = None;
        for &f in &freed {
            let b = f / BLOCK_FRAMES;
            if last != Some(b) {
                self.refile(b as u32);
                last = Some(b);
            }
        }
        freed.len() as u64
    }

    /// The modified page writer, from its last run to `now`: writes modified pages to the
    /// page file at [`crate::cost::PAGE_WRITE_BYTES_PER_S`] (a cost-model assumption),
    /// oldest first; a written page moves to the standby list (available). "The system may
    /// start writing dirty transition pages to their backing store as soon as such pages
    /// become available" (`docs/windows-memory.md` §3.6).
    pub(super) fn write_modified(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.written_at);
        self.written_at = self.written_at.max(now);
        if self.modified == 0 {
            self.write_carry = 0;
            return;
        }
        const PAGE: u128 = 4096 * 1_000_000_000;
        let credit = self
            .write_carry
            .saturating_add(u128::from(elapsed).saturating_mul(u128::from(self.write_bytes_per_s)));
        let mut pages = u64::try_from(credit / PAGE).unwrap_or(u64::MAX);
        self.write_carry = credit % PAGE;
        let mut written = 0u64;
        while pages > 0 {
            let Some(f) = self.modified_list.pop_front() else {
                break;
            };
            if let Some(Owner::Modified(k)) = self.owner(u64::from(f)) {
                self.set(u64::from(f), Owner::Standby(k));
                pages -= 1;
                written += 1;
            }
        }
        if self.modified == 0 {
            self.write_carry = 0;
        }
        self.written_total = self.written_total.saturating_add(written);
    }

    /// Moves the model's clock to `now` (never back) and lets the modified page writer
    /// catch up.
    pub(super) fn advance(&mut self, now: Instant) {
        let now = now.as_nanos();
        if now > self.now {
            self.now = now;
        }
        self.write_modified(self.now);
    }

    // ---- accounting --------------------------------------------------------------------

    pub(super) fn ram(&self) -> u64 {
        self.slots.len() as u64
    }

    pub(super) fn pinned_total(&self) -> u64 {
        self.pinned.iter().sum()
    }

    /// Pinned frames charged to commit (every kind but `MmProbeAndLockPages`).
    pub(super) fn pinned_commit(&self) -> u64 {
        PinKind::ALL
            .iter()
            .filter(|k| k.charges_commit())
            .map(|k| self.pinned.get(k.index()).copied().unwrap_or(0))
            .sum()
    }

    /// The balloon's frames as resident available memory and commit see them: all of
    /// them under [`MdlAccounting::Charged`], none under [`MdlAccounting::NotCharged`].
    pub(super) fn balloon_charge(&self) -> u64 {
        match self.accounting {
            MdlAccounting::Charged => self.balloon.saturating_add(self.held_refused),
            MdlAccounting::NotCharged => 0,
        }
    }

    /// Whether the balloon's MDL allocations are charged (`[guest] mdl_accounting`).
    #[must_use]
    pub fn mdl_charged(&self) -> bool {
        self.accounting == MdlAccounting::Charged
    }

    /// The same guest with the balloon's MDL pages accounted as `accounting` says
    /// (`[guest] mdl_accounting`, `docs/windows-memory.md` §3.9; [`GuestModel::new`] charges
    /// them).
    #[must_use]
    pub const fn with_mdl_accounting(mut self, accounting: MdlAccounting) -> Self {
        self.accounting = accounting;
        self
    }

    /// How the balloon's MDL pages are accounted.
    #[must_use]
    pub const fn mdl_accounting(&self) -> MdlAccounting {
        self.accounting
    }

    /// Resident available: RAM − OS − pinned − the balloon's charge (the balloon and its
    /// held refused pages under the charged accounting, nothing otherwise).
    #[must_use]
    pub fn resident_available(&self) -> Frames {
        Frames::new(
            self.ram()
                .saturating_sub(self.os)
                .saturating_sub(self.pinned_total())
                .saturating_sub(self.balloon_charge()),
        )
    }

    /// Commit limit: RAM + page file.
    #[must_use]
    pub fn commit_limit(&self) -> Frames {
        Frames::new(self.ram().saturating_add(self.spec.pagefile.get()))
    }

    /// Commit charge: pageable commit + OS + pinned (but `MmProbeAndLockPages`) + the
    /// balloon's charge.
    #[must_use]
    pub fn committed(&self) -> Frames {
        Frames::new(
            self.pageable_commit
                .saturating_add(self.os)
                .saturating_add(self.pinned_commit())
                .saturating_add(self.balloon_charge()),
        )
    }

    pub(super) fn commit_free(&self) -> u64 {
        self.commit_limit()
            .get()
            .saturating_sub(self.committed().get())
    }

    /// Available memory: free and standby pages (`MEMORYSTATUSEX.ullAvailPhys`: "the sum
    /// of the size of the standby, free, and zero lists").
    #[must_use]
    pub fn available(&self) -> Frames {
        Frames::new(self.free.saturating_add(self.standby))
    }

    /// Free and zeroed pages only.
    #[must_use]
    pub const fn free_frames(&self) -> Frames {
        Frames::new(self.free)
    }

    /// Pages on the standby list (available).
    #[must_use]
    pub const fn standby_frames(&self) -> Frames {
        Frames::new(self.standby)
    }

    /// Pages on the modified list (not available until written).
    #[must_use]
    pub const fn modified_frames(&self) -> Frames {
        Frames::new(self.modified)
    }

    /// Working-set pages trimmed so far (by the working-set manager or for allocations
    /// that wait), and pages the modified page writer wrote.
    #[must_use]
    pub const fn paging_totals(&self) -> (u64, u64) {
        (self.trimmed_total, self.written_total)
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

    /// Guest allocation failures (each failed attempt of a `lock_mib` / `commit_mib`; a
    /// `partial_ok` request fails only when an attempt gets nothing).
    #[must_use]
    pub const fn alloc_failures(&self) -> u64 {
        self.alloc_failures
    }

    /// Short grants: attempts of `partial_ok` requests that got some of what was missing
    /// but not all of it (not failures; the rest is retried).
    #[must_use]
    pub const fn short_grants(&self) -> u64 {
        self.short_grants
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

    /// Blocks holding at least one balloon frame.
    #[must_use]
    pub fn blocks_with_balloon_pages(&self) -> u64 {
        (0..self.blocks.len() as u64)
            .filter(|b| {
                (b * BLOCK_FRAMES..(b + 1) * BLOCK_FRAMES)
                    .any(|f| self.owner(f) == Some(Owner::Balloon))
            })
            .count() as u64
    }

    /// Blocks a large-page request could use (no unmovable frame).
    #[must_use]
    pub fn large_page_blocks(&self) -> u64 {
        self.blocks.iter().filter(|b| b.fixed == 0).count() as u64
    }

    pub(super) fn note_resident(&mut self) {
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
                driver_locked: kind(PinKind::DriverLocked)
                    .zip(kind(PinKind::ProbeAndLock))
                    .map(|(a, b)| a.saturating_add(b)),
                os_nonpaged: kind(PinKind::NonpagedPool)
                    .map(|p| p.saturating_add(Frames::new(self.os))),
            },
        }
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
        let mut count = [0u64; 8];
        let mut pinned = [0u64; 6];
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
                Owner::Modified(_) => 6,
                Owner::Standby(_) => 7,
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
            ("modified", self.modified),
            ("standby", self.standby),
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
            if (b.free > 0) != self.with_free.contains(&(i as u32)) {
                problems.push(format!("block {i}: first-fit index out of step"));
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
