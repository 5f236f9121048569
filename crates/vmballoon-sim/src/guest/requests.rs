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

impl GuestModel {
    // ---- guest requests ----------------------------------------------------------------

    pub(super) fn find(&self, id: &str) -> Option<usize> {
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

    pub(super) fn add_request(
        &mut self,
        id: &str,
        demand: Demand,
        size: Frames,
        now: Instant,
    ) -> Outcome {
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
    pub(super) fn attempt(&mut self, k: usize, now: Instant) -> Outcome {
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

    pub(super) fn charges_fit(&self, n: u64) -> bool {
        self.resident_available().get() >= n && self.commit_free() >= n
    }

    pub(super) fn try_pin_small(&mut self, k: usize, n: u64) -> bool {
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

    pub(super) fn try_pin_large(&mut self, k: usize, n: u64) -> bool {
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

    pub(super) fn undo_pin(&mut self, k: usize) {
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

    pub(super) fn try_commit(&mut self, k: usize, n: u64) -> bool {
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
}
