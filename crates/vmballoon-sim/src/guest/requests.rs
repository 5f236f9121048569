//! The guest's own requests: pinned memory (`lock_mib`) and pageable commit (`commit_mib`),
//! placed, failed and retried every second, and released (the rules are in the
//! [module docs](super)).

use vmballoon_core::units::{Duration, Frames, Instant};

use super::*;

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
pub(super) struct Request {
    pub(super) id: String,
    pub(super) demand: Demand,
    /// Frames asked for.
    pub(super) frames: u64,
    /// Frames charged while active (large pages round up to whole blocks).
    pub(super) charged: u64,
    /// A short grant is kept and the rest retried (`partial_ok`; AWE, driver MDLs and
    /// nonpaged pool only).
    pub(super) partial_ok: bool,
    /// Pinned frames held so far (a `partial_ok` request may hold some while pending).
    pub(super) granted: u64,
    /// Attempts that got some but not all of what was missing.
    pub(super) short_grants: u64,
    pub(super) state: RequestState,
    /// Frames held: every frame for pinned memory; resident frames for pageable memory
    /// (lazily: entries whose slot no longer belongs to this request are skipped).
    pub(super) frames_held: Vec<u32>,
    pub(super) resident: u64,
    /// When the request was made.
    pub(super) asked_at: Instant,
    /// Failed attempts.
    pub(super) failures: u64,
    /// When it was first satisfied.
    pub(super) satisfied_at: Option<Instant>,
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
    /// Short grants of a `partial_ok` request ([`GuestModel::short_grants`]).
    pub short_grants: u64,
    /// When it was first satisfied in full, if it was.
    pub satisfied_at: Option<Instant>,
}

/// The outcome of one attempt at a guest request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Satisfied in full.
    Granted,
    /// A `partial_ok` request got some of what was missing, not all: kept, the rest is
    /// retried every second (counted as a short grant, not a failure).
    Partial,
    /// Failed (counted); retried every second.
    Failed,
}

impl GuestModel {
    // ---- guest requests ----------------------------------------------------------------

    pub(super) fn find(&self, id: &str) -> Option<usize> {
        self.requests
            .iter()
            .position(|r| r.id == id && r.state != RequestState::Released)
    }

    /// Pins `size` of `kind` for request `id` (`lock_mib`), all or nothing.
    pub fn lock(&mut self, id: &str, kind: PinKind, size: Frames, now: Instant) -> Outcome {
        self.add_request(id, Demand::Pin(kind), size, false, now)
    }

    /// Pins `size` of `kind` for request `id`; with `partial_ok` (honoured for kinds that
    /// [`PinKind::may_be_partial`]) a short grant is kept and the rest retried.
    pub fn lock_partial(
        &mut self,
        id: &str,
        kind: PinKind,
        size: Frames,
        partial_ok: bool,
        now: Instant,
    ) -> Outcome {
        let partial_ok = partial_ok && kind.may_be_partial();
        self.add_request(id, Demand::Pin(kind), size, partial_ok, now)
    }

    /// Commits `size` of pageable memory for request `id` (`commit_mib`).
    pub fn commit(&mut self, id: &str, size: Frames, now: Instant) -> Outcome {
        self.add_request(id, Demand::Pageable, size, false, now)
    }

    pub(super) fn add_request(
        &mut self,
        id: &str,
        demand: Demand,
        size: Frames,
        partial_ok: bool,
        now: Instant,
    ) -> Outcome {
        self.advance(now);
        let k = self.requests.len();
        self.requests.push(Request {
            id: id.to_owned(),
            demand,
            frames: size.get(),
            charged: 0,
            partial_ok,
            granted: 0,
            short_grants: 0,
            state: RequestState::Pending { next_retry: now },
            frames_held: Vec::new(),
            resident: 0,
            asked_at: now,
            failures: 0,
            satisfied_at: None,
        });
        self.attempt(k, now)
    }

    /// Frees what request `id` holds (or cancels it while it is pending, freeing a partial
    /// grant). Returns whether such a request existed.
    pub fn release(&mut self, id: &str) -> bool {
        let Some(k) = self.find(id) else { return false };
        let Some(r) = self.requests.get_mut(k) else {
            return false;
        };
        let was_active = r.state == RequestState::Active;
        r.state = RequestState::Released;
        let demand = r.demand;
        let charged = r.charged;
        let held_any = was_active || r.granted > 0;
        r.charged = 0;
        r.granted = 0;
        let held = std::mem::take(&mut r.frames_held);
        if held_any {
            let mut mine: Vec<u64> = held
                .into_iter()
                .map(u64::from)
                .filter(|&f| {
                    matches!(self.owner(f),
                        Some(Owner::Pinned(n) | Owner::Pageable(n) | Owner::Modified(n)
                            | Owner::Standby(n)) if n == k)
                })
                .collect();
            mine.sort_unstable();
            mine.dedup();
            self.release_frames(&mine);
            if demand == Demand::Pageable && was_active {
                self.pageable_commit = self.pageable_commit.saturating_sub(charged);
            }
        }
        true
    }

    /// One attempt at request `k`: returns the outcome and counts a failure (or a short
    /// grant).
    pub(super) fn attempt(&mut self, k: usize, now: Instant) -> Outcome {
        let outcome = match self.requests.get(k).map(|r| (r.demand, r.frames)) {
            Some((Demand::Pin(PinKind::LargePages), n)) => {
                if self.try_pin_large(k, n) {
                    Outcome::Granted
                } else {
                    Outcome::Failed
                }
            }
            Some((Demand::Pin(kind), _)) => self.try_pin_small(k, kind),
            Some((Demand::Pageable, n)) => {
                if self.try_commit(k, n) {
                    Outcome::Granted
                } else {
                    Outcome::Failed
                }
            }
            None => Outcome::Failed,
        };
        let Some(r) = self.requests.get_mut(k) else {
            return Outcome::Failed;
        };
        let retry = RequestState::Pending {
            next_retry: now.saturating_add(Duration::from_secs(1)),
        };
        match outcome {
            Outcome::Granted => {
                r.state = RequestState::Active;
                r.satisfied_at.get_or_insert(now);
                self.note_resident();
            }
            Outcome::Partial => {
                r.state = retry;
                r.short_grants = r.short_grants.saturating_add(1);
                self.short_grants = self.short_grants.saturating_add(1);
                self.note_resident();
            }
            Outcome::Failed => {
                r.state = retry;
                r.failures = r.failures.saturating_add(1);
                self.alloc_failures = self.alloc_failures.saturating_add(1);
            }
        }
        outcome
    }

    /// Whether resident available memory (and commit, if `commit`) can take `n` more
    /// frames.
    pub(super) fn charges_fit_for(&self, n: u64, commit: bool) -> bool {
        self.resident_available().get() >= n && (!commit || self.commit_free() >= n)
    }

    pub(super) fn charges_fit(&self, n: u64) -> bool {
        self.charges_fit_for(n, true)
    }

    /// A pinned 4 KiB request (module docs, "Allocations that wait and allocations that
    /// cannot"). Frames are placed first-fit: no placement is documented for them.
    pub(super) fn try_pin_small(&mut self, k: usize, kind: PinKind) -> Outcome {
        let Some((frames, granted, partial_ok)) = self
            .requests
            .get(k)
            .map(|r| (r.frames, r.granted, r.partial_ok))
        else {
            return Outcome::Failed;
        };
        let need = frames.saturating_sub(granted);
        if need == 0 {
            return Outcome::Granted;
        }
        let commit = kind.charges_commit();
        let owner = Owner::Pinned(k);
        let taken = if kind.waits() {
            // Waits for the working-set manager and the modified page writer: all or
            // nothing.
            if !self.charges_fit_for(need, commit) {
                return Outcome::Failed;
            }
            let mut got = self.take_available(need, owner, Placement::FirstFit);
            let short = need.saturating_sub(got.len() as u64);
            if short > 0 && self.reclaim_now(short) > 0 {
                got.extend(self.take_available(short, owner, Placement::FirstFit));
            }
            if (got.len() as u64) < need {
                got.sort_unstable();
                self.release_frames(&got);
                return Outcome::Failed;
            }
            got.len() as u64
        } else {
            // Cannot wait: available pages (free, zeroed, standby) as they are now, within
            // what resident available memory and commit can still be charged.
            let room = {
                let ra = self.resident_available().get();
                if commit {
                    ra.min(self.commit_free())
                } else {
                    ra
                }
            };
            let avail = self.available().get();
            let can = need.min(room).min(avail);
            let fails = can == 0 || (can < need && !partial_ok);
            if can < need {
                // The memory manager learns that its lists ran short: the next working-set
                // pass trims until what is still missing would fit above the high-memory
                // threshold (an assumption, module docs).
                let missing = if fails { need } else { need - can };
                self.demand = self.demand.saturating_add(missing);
            }
            if fails {
                return Outcome::Failed;
            }
            self.take_available(can, owner, Placement::FirstFit).len() as u64
        };
        let Some(r) = self.requests.get_mut(k) else {
            return Outcome::Failed;
        };
        r.granted = r.granted.saturating_add(taken);
        r.charged = r.granted;
        if r.granted >= r.frames {
            Outcome::Granted
        } else {
            Outcome::Partial
        }
    }

    pub(super) fn try_pin_large(&mut self, k: usize, n: u64) -> bool {
        let blocks = n.div_ceil(BLOCK_FRAMES);
        let need = blocks.saturating_mul(BLOCK_FRAMES);
        if !self.charges_fit(need) {
            return false;
        }
        // Whole free blocks first, then those whose pageable pages must be paged out
        // (without a page file, private pages cannot be: only free and standby pages
        // may be in the way then).
        let can_page_out = self.can_page_out();
        let mut eligible: Vec<(u16, u32)> = self
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.fixed == 0)
            .map(|(i, b)| (b.free, i as u32))
            .filter(|&(free, b)| {
                can_page_out
                    || free == BLOCK_FRAMES as u16
                    || (u64::from(b) * BLOCK_FRAMES..(u64::from(b) + 1) * BLOCK_FRAMES)
                        .all(|f| matches!(self.owner(f), Some(Owner::Free | Owner::Standby(_))))
            })
            .collect();
        if (eligible.len() as u64) < blocks {
            return false;
        }
        eligible.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, b) in eligible.iter().take(blocks as usize) {
            let base = u64::from(b) * BLOCK_FRAMES;
            // Page out (or move) the block's pageable pages: their requests keep the
            // commit.
            self.set_all(base..base + BLOCK_FRAMES, Owner::Free);
            self.set_all(base..base + BLOCK_FRAMES, Owner::Pinned(k));
        }
        if let Some(r) = self.requests.get_mut(k) {
            r.charged = need;
            r.granted = need;
        }
        true
    }

    pub(super) fn try_commit(&mut self, k: usize, n: u64) -> bool {
        if self.commit_free() < n {
            return false;
        }
        self.pageable_commit = self.pageable_commit.saturating_add(n);
        if let Some(r) = self.requests.get_mut(k) {
            r.charged = n;
        }
        self.place_pageable(n, k);
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
        self.advance(now);
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

    /// One pass of the working-set manager at the model's clock (the last instant it was
    /// given: by [`GuestModel::retry_due`], a request, or a pass): [`GuestModel::balance_at`]
    /// without moving the clock.
    pub fn balance(&mut self) {
        self.balance_at(Instant::from_nanos(self.now));
    }

    /// One pass of the working-set manager at `now` (the runner calls it once a second,
    /// and shortly after available memory falls below the low-memory threshold): the
    /// modified page writer catches up, then, while available memory plus the pages
    /// already on their way through the modified list is below the high-memory threshold
    /// (plus what allocations that cannot wait found missing since the last pass), it
    /// trims working-set pages that are at least [`TRIM_MIN_AGE`] old, least recently used
    /// first, at most RAM / [`crate::guest::spec::TRIM_PASS_DIVISOR`] per pass, to the
    /// modified list. Nothing is trimmed without a page file.
    pub fn balance_at(&mut self, now: Instant) {
        self.advance(now);
        let goal = self
            .high_threshold()
            .get()
            .saturating_add(std::mem::take(&mut self.demand));
        let have = self.available().get().saturating_add(self.modified);
        if have < goal && self.pageable_resident > 0 {
            let per_pass = (self.ram() / super::spec::TRIM_PASS_DIVISOR).max(1);
            self.trim_aged((goal - have).min(per_pass));
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
                short_grants: r.short_grants,
                satisfied_at: r.satisfied_at,
            })
            .collect()
    }
}
