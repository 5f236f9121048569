//! [`Channel`]: the one choke point through which every balloon call passes.
//!
//! It counts every call and its status per command, turns RESET from any command into a
//! pending session reset, refuses locally what the session does not allow (no START yet,
//! capability not granted, a value too wide for a 32-bit protocol), takes the host's target
//! from every successful reply that carries one, and decodes replies into typed results.
//! Nothing else in the project calls [`Backdoor::call`].

use crate::error::{Error, Result};
use crate::mask::PageMask;
use crate::protocol::{
    BATCH_CAPACITY, Backdoor, BatchEntry, Capabilities, Command, GUEST_TYPE, LockMode, RawReply,
    Session, Status,
};
use crate::stats::CallStats;
use crate::units::{Frames, PageSize, Pfn};

/// Lock (give pages to the host) or unlock (take them back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// LOCK / BATCHED_LOCK / BATCHED_2M_LOCK.
    Lock,
    /// UNLOCK / BATCHED_UNLOCK / BATCHED_2M_UNLOCK.
    Unlock,
}

/// The outcome of moving one chunk of pages (at most 512) to or from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Pages the host accepted (lock: it now holds them; unlock: it gave them back).
    pub done: PageMask,
    /// Lock only: pages the host refused but that are worth holding back from the OS
    /// until the end of the cycle so the allocator does not hand them out again
    /// (PPN_PINNED, PPN_INVALID and the like: `docs/protocol.md` §3 rule 3).
    pub refused: PageMask,
    /// Backdoor calls made.
    pub calls: u32,
    /// Why the transfer stopped early or failed as a whole, if it did.
    pub stop: Option<Error>,
    /// Lock only: the host said it needs no more pages (PPN_NOTNEEDED): stop inflating.
    pub not_needed: bool,
}

impl Transfer {
    const fn empty(stop: Option<Error>) -> Self {
        Self {
            done: PageMask::EMPTY,
            refused: PageMask::EMPTY,
            calls: 0,
            stop,
            not_needed: false,
        }
    }
}

/// A reply the host gave with a success status, as the channel's one call path hands it on.
#[derive(Clone, Copy, Debug)]
struct Accepted {
    /// The registers as the host left them.
    reply: RawReply,
    /// For a command whose reply carries the target: why RBX was not taken as the new
    /// target. The host still did what was asked; only its target is unusable.
    target_error: Option<Error>,
}

/// The balloon channel: a [`Backdoor`], the negotiated [`Session`], the last target and
/// the call statistics.
#[derive(Debug)]
pub struct Channel<B> {
    backdoor: B,
    session: Option<Session>,
    reset_pending: bool,
    target: Frames,
    stats: CallStats,
}

impl<B: Backdoor> Channel<B> {
    /// A channel with no session. Like Linux (`reset_required = true` at load), the first
    /// thing the engine does is the reset sequence.
    pub fn new(backdoor: B) -> Self {
        Self {
            backdoor,
            session: None,
            reset_pending: true,
            target: Frames::ZERO,
            stats: CallStats::new(),
        }
    }

    /// The session in effect, if START succeeded since the last reset.
    #[must_use]
    pub const fn session(&self) -> Option<Session> {
        self.session
    }

    /// Whether the host asked for a reset (or no session was ever started).
    #[must_use]
    pub const fn reset_pending(&self) -> bool {
        self.reset_pending
    }

    /// The most recent target the host reported. It is taken in one place, the channel's call
    /// path, from every successful reply to a command that carries one
    /// ([`Command::replies_with_target`]: TARGET, LOCK, UNLOCK and the four batched
    /// commands); a failed call, or a target too wide for the session, leaves it unchanged.
    #[must_use]
    pub const fn target(&self) -> Frames {
        self.target
    }

    /// Call counts by command and status.
    #[must_use]
    pub const fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// The backdoor (for inspection by tests and the simulator).
    #[must_use]
    pub const fn backdoor(&self) -> &B {
        &self.backdoor
    }

    /// The backdoor, mutably (the simulator injects host behaviour through it).
    pub fn backdoor_mut(&mut self) -> &mut B {
        &mut self.backdoor
    }

    /// Gives the backdoor back.
    pub fn into_backdoor(self) -> B {
        self.backdoor
    }

    /// The single place that executes the backdoor, and the single place that updates the
    /// target.
    fn call(&mut self, command: Command, arg1: u64, arg2: u64) -> Result<Accepted> {
        if command != Command::Start {
            let Some(session) = self.session else {
                return Err(Error::NotStarted { command });
            };
            if !session.capabilities.contains(command.required_capability()) {
                return Err(Error::NotGranted { command });
            }
        }
        let reply = self.backdoor.call(command.number(), arg1, arg2);
        let status = Status::from_raw(reply.status);
        self.stats.record(command, status);
        match status {
            Status::Success => {}
            // 0x03000000 is a success only as START's answer; anywhere else it is undefined.
            Status::SuccessWithCapabilities if command == Command::Start => {}
            Status::SuccessWithCapabilities => {
                return Err(Error::UnknownStatus {
                    command,
                    raw: reply.status,
                });
            }
            // RESET may arrive as the status of any command (docs/protocol.md §3 rule 1): the host
            // has forgotten every page. No further command but START until the reset is done.
            Status::Reset => {
                self.session = None;
                self.reset_pending = true;
                return Err(Error::Reset { command });
            }
            Status::Busy => return Err(Error::Busy { command }),
            Status::Unknown(raw) => return Err(Error::UnknownStatus { command, raw }),
            status => return Err(Error::Host { command, status }),
        }
        // A successful reply to TARGET, LOCK, UNLOCK or a batched command carries the host's
        // current target in RBX (`docs/protocol.md` §2). Take it from every such reply, as
        // Linux does (`VMW_BALLOON_CMD_WITH_TARGET_MASK`), so a host that lowers the target
        // in the middle of a pass is heard at once; other replies leave RBX undefined.
        let mut target_error = None;
        if command.replies_with_target() {
            let wide = self.session.is_some_and(|s| s.target_64bit);
            // Without the 64-bit capability the target travels in EBX. Our inputs were checked
            // to fit in 32 bits, so upper bits in RBX can only come from the host: reject,
            // don't mask, and keep the last good target.
            if !wide && reply.result > u64::from(u32::MAX) {
                target_error = Some(Error::ReplyOutOfRange {
                    command,
                    value: reply.result,
                });
            } else {
                self.target = Frames::new(reply.result);
            }
        }
        Ok(Accepted {
            reply,
            target_error,
        })
    }

    /// START with `requested` capabilities; on success the negotiated session is in effect.
    ///
    /// # Errors
    /// The host's failure, or `Host { status: Success }`-free cases where nothing usable was
    /// granted (reported as [`Error::NotGranted`] for LOCK).
    pub fn start(&mut self, requested: Capabilities) -> Result<Session> {
        self.session = None;
        self.reset_pending = true;
        let reply = self
            .call(Command::Start, u64::from(requested.bits()), 0)?
            .reply;
        let status = Status::from_raw(reply.status);
        let session =
            Session::negotiate(requested, status, reply.capabilities).ok_or(Error::NotGranted {
                command: Command::Lock,
            })?;
        self.session = Some(session);
        Ok(session)
    }

    /// Marks the reset sequence complete (after START, batch page and GUEST_ID).
    pub fn finish_reset(&mut self) {
        if self.session.is_some() {
            self.reset_pending = false;
        }
    }

    /// START(0), the "null capability" start: ends the session before pages are freed
    /// without UNLOCK, so the host does not raise spurious resets when the guest touches
    /// them (Linux unload order), and is the fallback when batching cannot be set up.
    ///
    /// # Errors
    /// The host's failure status; the session is closed either way.
    pub fn stop(&mut self) -> Result<()> {
        let result = self.call(Command::Start, 0, 0).map(|_| ());
        self.session = None;
        self.reset_pending = true;
        result
    }

    /// GUEST_ID with the Windows value (4). Failures are reported; the engine ignores them
    /// as Linux and OVT do.
    ///
    /// # Errors
    /// The host's failure status.
    pub fn guest_id(&mut self) -> Result<()> {
        self.call(Command::GuestId, GUEST_TYPE as u64, 0)
            .map(|_| ())
    }

    /// TARGET with `limit` (the guest's total RAM in frames); returns the host's target.
    ///
    /// # Errors
    /// [`Error::TooWide`] when the limit does not fit in 32 bits without the 64-bit
    /// capability (Linux skips the tick rather than truncate), or the host's failure.
    pub fn get_target(&mut self, limit: Frames) -> Result<Frames> {
        let wide = self.session.is_some_and(|s| s.target_64bit);
        if !wide && limit.get() > u64::from(u32::MAX) {
            return Err(Error::TooWide {
                command: Command::Target,
                value: limit.get(),
            });
        }
        let accepted = self.call(Command::Target, limit.get(), 0)?;
        match accepted.target_error {
            Some(e) => Err(e),
            None => Ok(self.target),
        }
    }

    /// Moves up to 512 pages of `size` to (`Lock`) or from (`Unlock`) the host.
    ///
    /// `pfn_of(i)` names page `i` of the chunk (for 2 MiB pages, its first frame). A page
    /// the protocol cannot express (a 2 MiB page not 2 MiB-aligned, a PFN above 32 bits in
    /// single-page mode, or no PFN at all) is refused locally without calling the host,
    /// as both Linux and OVT do.
    pub fn transfer(
        &mut self,
        direction: Direction,
        size: PageSize,
        count: usize,
        pfn_of: impl FnMut(usize) -> Option<Pfn>,
    ) -> Transfer {
        self.transfer_until(direction, size, count, pfn_of, |_, _| false)
    }

    /// [`Channel::transfer`], and in single-page mode, where each page is one call whose
    /// reply carries the host's target, `enough(pages_done, target)` is asked after every
    /// page the host took: `true` ends the transfer there, so a target the host lowers
    /// during the pass is never overshot (Linux re-reads the target before every page,
    /// `docs/protocol.md` §6.3). A batched transfer is one call and does not ask.
    pub fn transfer_until(
        &mut self,
        direction: Direction,
        size: PageSize,
        count: usize,
        mut pfn_of: impl FnMut(usize) -> Option<Pfn>,
        enough: impl FnMut(usize, Frames) -> bool,
    ) -> Transfer {
        let count = count.min(BATCH_CAPACITY);
        let Some(session) = self.session else {
            let command = match direction {
                Direction::Lock => Command::Lock,
                Direction::Unlock => Command::Unlock,
            };
            return Transfer::empty(Some(Error::NotStarted { command }));
        };
        let command = match direction {
            Direction::Lock => session.lock_command(size),
            Direction::Unlock => session.unlock_command(size),
        };
        if size == PageSize::Large && !session.large_pages {
            return Transfer::empty(Some(Error::NotGranted { command }));
        }
        let valid = |pfn: Option<Pfn>| pfn.filter(|p| p.is_aligned_to(size));
        match session.mode {
            LockMode::Batched => {
                self.transfer_batched(direction, command, count, |i| valid(pfn_of(i)))
            }
            LockMode::Single => {
                self.transfer_single(direction, command, count, |i| valid(pfn_of(i)), enough)
            }
        }
    }

    fn transfer_batched(
        &mut self,
        direction: Direction,
        command: Command,
        count: usize,
        mut pfn_of: impl FnMut(usize) -> Option<Pfn>,
    ) -> Transfer {
        let mut out = Transfer::empty(None);
        let Some((page, batch_pfn)) = self.backdoor.batch_page() else {
            return Transfer::empty(Some(Error::NoBatchPage));
        };
        // Build the batch from the pages we can express. `slots` maps entry k back to its
        // page index in the chunk: the k-th set bit (usually all of 0..count).
        let mut slots = PageMask::first(count);
        let mut entries = 0usize;
        for i in 0..count {
            let Some(pfn) = pfn_of(i) else {
                slots.remove(i);
                continue;
            };
            if let Some(e) = page.entries.get_mut(entries) {
                *e = BatchEntry::for_page(pfn).raw().to_le();
                entries = entries.saturating_add(1);
            }
        }
        if direction == Direction::Lock {
            out.refused = slots.complement_within(count);
        }
        if entries == 0 {
            return out;
        }
        out.calls = 1;
        let result = self.call(command, batch_pfn.get(), entries as u64);
        let accepted = match result {
            Ok(accepted) => accepted,
            // Failure of the whole batch overrides single operation results (Linux
            // `vmballoon_lock`): every entry failed with that status. Lock: nothing is held.
            // Unlock: everything stays ballooned.
            Err(e) => {
                out.stop = Some(e);
                return out;
            }
        };
        if let Some(e) = accepted.target_error {
            // A malformed target does not undo what the host did with the pages.
            out.stop = Some(e);
        }
        let Some((page, _)) = self.backdoor.batch_page() else {
            // The page vanished during the call: trust nothing the host may have done.
            out.stop = Some(Error::NoBatchPage);
            return out;
        };
        for (k, i) in slots.iter().enumerate() {
            let raw = page.entries.get(k).copied().map_or(u64::MAX, u64::from_le);
            // A host that rewrote the address bits has told us nothing about our page:
            // treat it as not done (lock: freed; unlock: stays ballooned).
            let expected = pfn_of(i).map(BatchEntry::for_page);
            if Some(BatchEntry::from_raw(raw)) == expected {
                // Fast path: address intact and status bits zero (SUCCESS).
                out.done.insert(i);
                continue;
            }
            let entry = BatchEntry::from_raw(raw);
            let status = if Some(entry.pfn()) == expected.map(BatchEntry::pfn) {
                entry.status()
            } else {
                Status::Failure
            };
            Self::classify(direction, status, i, &mut out);
        }
        out
    }

    /// One call per page. The first page the host does not take ends the transfer: Linux
    /// (`vmballoon_lock` fails the whole operation, `vmballoon_inflate` and
    /// `vmballoon_deflate` break) and open-vm-tools (`BalloonLock`, `BalloonUnlock`) both
    /// stop at the first refused or failed single-page call (`docs/protocol.md` §6.3, §7).
    fn transfer_single(
        &mut self,
        direction: Direction,
        command: Command,
        count: usize,
        mut pfn_of: impl FnMut(usize) -> Option<Pfn>,
        mut enough: impl FnMut(usize, Frames) -> bool,
    ) -> Transfer {
        let mut out = Transfer::empty(None);
        for i in 0..count {
            // Single-page commands carry the PFN in EBX. Linux never lifts the 32-bit limit
            // in non-batched mode (only OVT does with the 64-bit capability): a frame at or
            // above 16 TiB is refused locally as PPN_INVALID without calling the host.
            let Some(pfn32) = pfn_of(i).and_then(Pfn::to_u32) else {
                if direction == Direction::Lock {
                    out.refused.insert(i);
                }
                return out;
            };
            out.calls = out.calls.saturating_add(1);
            match self.call(command, u64::from(pfn32), 0) {
                Ok(accepted) => {
                    out.done.insert(i);
                    if let Some(e) = accepted.target_error {
                        out.stop = Some(e);
                        return out;
                    }
                    if enough(out.done.len(), self.target) {
                        return out;
                    }
                }
                Err(Error::Host { status, .. }) => {
                    Self::classify(direction, status, i, &mut out);
                    return out;
                }
                // RESET, BUSY, undefined statuses: stop this chunk; the rest is untouched.
                Err(e) => {
                    out.stop = Some(e);
                    return out;
                }
            }
        }
        out
    }

    /// Sorts one page's status into the transfer outcome (`docs/protocol.md` §3, §6.2, §7).
    fn classify(direction: Direction, status: Status, i: usize, out: &mut Transfer) {
        match (direction, status) {
            (_, Status::Success) => out.done.insert(i),
            // Unlock failure: the page stays ballooned and must not be freed.
            (Direction::Unlock, _) => {}
            // Refused pages worth holding until the end of the cycle.
            (Direction::Lock, Status::PpnPinned | Status::PpnInvalid | Status::PpnLocked) => {
                out.refused.insert(i);
            }
            // NOTNEEDED: free the page and stop inflating this tick (LNX-old, OVT).
            (Direction::Lock, Status::PpnNotNeeded) => out.not_needed = true,
            // RESET per entry (LNX-4x, OVT: free the page), BUSY per entry, undefined codes:
            // the host does not hold the page; free it. Only RESET in EAX resets the session.
            (Direction::Lock, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Expect, ScriptedBackdoor};

    fn started(script: &ScriptedBackdoor) -> Channel<ScriptedBackdoor> {
        let mut ch = Channel::new(script.clone());
        ch.start(Capabilities::REQUESTED).unwrap();
        ch.finish_reset();
        ch
    }

    #[test]
    fn commands_before_start_are_refused_locally() {
        let script = ScriptedBackdoor::new([]);
        let mut ch = Channel::new(script.clone());
        assert!(ch.reset_pending());
        assert_eq!(
            ch.get_target(Frames::new(1)),
            Err(Error::NotStarted {
                command: Command::Target
            })
        );
        assert_eq!(
            ch.guest_id(),
            Err(Error::NotStarted {
                command: Command::GuestId
            })
        );
        let t = ch.transfer(Direction::Lock, PageSize::Small, 1, |_| Pfn::new(1));
        assert_eq!(
            t.stop,
            Some(Error::NotStarted {
                command: Command::Lock
            })
        );
        assert_eq!(t.calls, 0);
        script.done();
    }

    #[test]
    fn start_sends_requested_caps_and_negotiates() {
        let script = ScriptedBackdoor::new([Expect::start(0x0E)]);
        let mut ch = Channel::new(script.clone());
        let s = ch.start(Capabilities::REQUESTED).unwrap();
        assert_eq!(s.mode, LockMode::Batched);
        assert!(s.large_pages);
        assert!(!s.target_64bit);
        assert!(ch.reset_pending());
        ch.finish_reset();
        assert!(!ch.reset_pending());
        assert_eq!(
            ch.stats()
                .count(Command::Start, Status::SuccessWithCapabilities),
            1
        );
        script.done();
    }

    #[test]
    fn success_with_capabilities_is_only_valid_for_start() {
        let script = ScriptedBackdoor::new([
            Expect::start(0x2E),
            Expect::target(Frames::new(100), 7).with_status(Status::SuccessWithCapabilities),
        ]);
        let mut ch = started(&script);
        assert_eq!(
            ch.get_target(Frames::new(100)),
            Err(Error::UnknownStatus {
                command: Command::Target,
                raw: 0x0300_0000
            })
        );
        script.done();
    }

    #[test]
    fn guest_id_sends_windows_value() {
        let script = ScriptedBackdoor::new([Expect::start(0x2E), Expect::guest_id()]);
        let mut ch = started(&script);
        ch.guest_id().unwrap();
        script.done();
    }

    #[test]
    fn target_sends_limit_and_reads_ebx() {
        let script = ScriptedBackdoor::new([
            Expect::start(0x2E),
            Expect::target(Frames::new(1_048_576), 681_574),
        ]);
        let mut ch = started(&script);
        assert_eq!(
            ch.get_target(Frames::new(1_048_576)),
            Ok(Frames::new(681_574))
        );
        assert_eq!(ch.target(), Frames::new(681_574));
        script.done();
    }

    #[test]
    fn target_limit_too_wide_without_64bit_capability_is_refused_not_truncated() {
        let script = ScriptedBackdoor::new([Expect::start(0x0E)]);
        let mut ch = started(&script);
        let limit = Frames::new(u64::from(u32::MAX) + 1);
        assert_eq!(
            ch.get_target(limit),
            Err(Error::TooWide {
                command: Command::Target,
                value: limit.get()
            })
        );
        script.done();
    }

    #[test]
    fn target_limit_wide_with_64bit_capability_is_sent_whole() {
        let limit = u64::from(u32::MAX) + 5;
        let script = ScriptedBackdoor::new([
            Expect::start(0x2E),
            Expect::target(Frames::new(limit), limit - 1),
        ]);
        let mut ch = started(&script);
        assert_eq!(
            ch.get_target(Frames::new(limit)),
            Ok(Frames::new(limit - 1))
        );
        script.done();
    }

    #[test]
    fn target_reply_wider_than_32_bits_without_capability_is_rejected() {
        let script = ScriptedBackdoor::new([
            Expect::start(0x0E),
            Expect::target(Frames::new(10), 0x1_0000_0000),
        ]);
        let mut ch = started(&script);
        assert_eq!(
            ch.get_target(Frames::new(10)),
            Err(Error::ReplyOutOfRange {
                command: Command::Target,
                value: 0x1_0000_0000
            })
        );
        script.done();
    }

    #[test]
    fn target_is_taken_only_from_successful_replies_that_carry_one() {
        // RBX is 999 in every reply that must not move the target.
        let script = ScriptedBackdoor::new([
            Expect::start(0x2E).replies(0x0300_0000, 999, 0x2E),
            Expect::target(Frames::new(1000), 100),
            Expect::batch(Command::BatchedLock, 1, 200),
            Expect::batch(Command::BatchedUnlock, 1, 300),
            Expect::batch(Command::Batched2mLock, 1, 400),
            Expect::batch(Command::Batched2mUnlock, 1, 500),
            Expect::guest_id().replies(0, 999, 0),
            Expect::target(Frames::new(1000), 999).with_status(Status::Busy),
            Expect::batch(Command::BatchedLock, 1, 999).with_status(Status::Failure),
            Expect::batch(Command::Batched2mUnlock, 1, 999).with_status(Status::CmdInvalid),
            Expect::target(Frames::new(1000), 999).with_status(Status::SuccessWithCapabilities),
            Expect::batch(Command::BatchedUnlock, 1, 999).with_status(Status::Reset),
            Expect::null_start().replies(0, 999, 0),
        ]);
        let mut ch = Channel::new(script.clone());
        ch.start(Capabilities::REQUESTED).unwrap();
        assert_eq!(ch.target(), Frames::ZERO, "START carries no target");
        assert_eq!(ch.get_target(Frames::new(1000)), Ok(Frames::new(100)));
        assert_eq!(ch.target(), Frames::new(100));
        let moves = [
            ((Direction::Lock, PageSize::Small), 200),
            ((Direction::Unlock, PageSize::Small), 300),
            ((Direction::Lock, PageSize::Large), 400),
            ((Direction::Unlock, PageSize::Large), 500),
        ];
        for ((direction, size), target) in moves {
            let t = ch.transfer(direction, size, 1, |_| Pfn::new(0x200));
            assert_eq!((t.done.len(), t.stop), (1, None), "{direction:?} {size:?}");
            assert_eq!(ch.target(), Frames::new(target), "{direction:?} {size:?}");
        }
        // Replies that leave the target where it was: no target in GUEST_ID's reply, and
        // failed calls (BUSY, FAILURE, CMD_INVALID, 0x03000000 outside START, RESET).
        ch.guest_id().unwrap();
        assert!(ch.get_target(Frames::new(1000)).unwrap_err().is_busy());
        let t = ch.transfer(Direction::Lock, PageSize::Small, 1, |_| Pfn::new(0x200));
        assert!(t.done.is_empty() && t.stop.is_some());
        let t = ch.transfer(Direction::Unlock, PageSize::Large, 1, |_| Pfn::new(0x200));
        assert!(t.done.is_empty() && t.stop.is_some());
        assert!(ch.get_target(Frames::new(1000)).is_err());
        let t = ch.transfer(Direction::Unlock, PageSize::Small, 1, |_| Pfn::new(0x200));
        assert!(t.stop.is_some_and(Error::is_reset));
        ch.stop().unwrap();
        assert_eq!(ch.target(), Frames::new(500));
        script.done();

        // Single-page LOCK and UNLOCK carry it too; a refused page does not.
        let script = ScriptedBackdoor::new([
            Expect::legacy_start(),
            Expect::page(Command::Lock, 0x100, 600),
            Expect::page(Command::Unlock, 0x100, 700),
            Expect::page(Command::Lock, 0x101, 999).with_status(Status::PpnPinned),
            Expect::page(Command::Lock, 0x102, 999).with_status(Status::PpnNotNeeded),
        ]);
        let mut ch = started(&script);
        ch.transfer(Direction::Lock, PageSize::Small, 1, |_| Pfn::new(0x100));
        assert_eq!(ch.target(), Frames::new(600));
        ch.transfer(Direction::Unlock, PageSize::Small, 1, |_| Pfn::new(0x100));
        assert_eq!(ch.target(), Frames::new(700));
        // A refused page ends the pass (single-page mode), so each refusal is its own pass.
        let t = ch.transfer(Direction::Lock, PageSize::Small, 2, |i| {
            Pfn::new(0x101 + i as u64)
        });
        assert!(t.done.is_empty() && t.refused.len() == 1);
        let t = ch.transfer(Direction::Lock, PageSize::Small, 1, |_| Pfn::new(0x102));
        assert!(t.done.is_empty() && t.not_needed);
        assert_eq!(ch.target(), Frames::new(700));
        script.done();
    }

    #[test]
    fn target_wider_than_the_session_is_not_taken_but_the_pages_are() {
        // No 64-bit capability: a target above 32 bits is reported and the last good one
        // kept, while what the host did with the pages stands.
        let wide = 0x1_0000_0000;
        let script = ScriptedBackdoor::new([
            Expect::start(0x0E),
            Expect::target(Frames::new(10), 50),
            Expect::target(Frames::new(10), wide),
            Expect::batch(Command::BatchedLock, 1, wide),
        ]);
        let mut ch = started(&script);
        assert_eq!(ch.get_target(Frames::new(10)), Ok(Frames::new(50)));
        let too_wide = |command| Error::ReplyOutOfRange {
            command,
            value: wide,
        };
        assert_eq!(
            ch.get_target(Frames::new(10)),
            Err(too_wide(Command::Target))
        );
        assert_eq!(ch.target(), Frames::new(50));
        let t = ch.transfer(Direction::Lock, PageSize::Small, 1, |_| Pfn::new(0x100));
        assert_eq!(t.done.iter().collect::<std::vec::Vec<_>>(), [0]);
        assert_eq!(t.stop, Some(too_wide(Command::BatchedLock)));
        assert_eq!(ch.target(), Frames::new(50));
        script.done();

        // Single-page: the page is locked, the chunk stops there.
        let script = ScriptedBackdoor::new([
            Expect::legacy_start(),
            Expect::page(Command::Lock, 0x100, 60),
            Expect::page(Command::Lock, 0x101, wide),
        ]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Lock, PageSize::Small, 3, |i| {
            Pfn::new(0x100 + i as u64)
        });
        assert_eq!(t.done.iter().collect::<std::vec::Vec<_>>(), [0, 1]);
        assert_eq!((t.calls, t.stop), (2, Some(too_wide(Command::Lock))));
        assert_eq!(ch.target(), Frames::new(60));
        script.done();
    }

    #[test]
    fn reset_from_every_command_ends_the_session() {
        // Each command that can be sent, answered with RESET.
        type Send = fn(&mut Channel<ScriptedBackdoor>) -> Option<Error>;
        let cases: [(Command, Send); 5] = [
            (Command::Target, |c| c.get_target(Frames::new(1)).err()),
            (Command::GuestId, |c| c.guest_id().err()),
            (Command::BatchedLock, |c| {
                c.transfer(Direction::Lock, PageSize::Small, 1, |_| Pfn::new(0x100))
                    .stop
            }),
            (Command::BatchedUnlock, |c| {
                c.transfer(Direction::Unlock, PageSize::Small, 1, |_| Pfn::new(0x100))
                    .stop
            }),
            (Command::Batched2mLock, |c| {
                c.transfer(Direction::Lock, PageSize::Large, 1, |_| Pfn::new(0x200))
                    .stop
            }),
        ];
        for (command, send) in cases {
            let script = ScriptedBackdoor::new([
                Expect::start(0x2E),
                Expect::any(command).with_status(Status::Reset),
            ]);
            let mut ch = started(&script);
            let err = send(&mut ch).unwrap();
            assert!(err.is_reset(), "{command:?}: {err:?}");
            assert!(ch.reset_pending() && ch.session().is_none(), "{command:?}");
            // Nothing but START may follow.
            assert!(matches!(
                ch.get_target(Frames::new(1)),
                Err(Error::NotStarted { .. })
            ));
            script.done();
        }
        // START itself answered with RESET, and the 2M unlock and single-page commands.
        let script = ScriptedBackdoor::new([Expect::start(0).with_status(Status::Reset)]);
        let mut ch = Channel::new(script.clone());
        assert!(ch.start(Capabilities::REQUESTED).unwrap_err().is_reset());
        script.done();
        let script = ScriptedBackdoor::new([
            Expect::start(0x2E),
            Expect::any(Command::Batched2mUnlock).with_status(Status::Reset),
        ]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Unlock, PageSize::Large, 1, |_| Pfn::new(0x200));
        assert!(t.stop.unwrap().is_reset());
        script.done();
        let script = ScriptedBackdoor::new([
            Expect::legacy_start(),
            Expect::page(Command::Lock, 0x100, 0).with_status(Status::Reset),
        ]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Lock, PageSize::Small, 3, |i| {
            Pfn::new(0x100 + i as u64)
        });
        assert!(t.stop.unwrap().is_reset());
        assert_eq!(t.calls, 1);
        assert!(ch.reset_pending());
        script.done();
    }

    #[test]
    fn busy_and_unknown_statuses_are_typed_errors() {
        let script = ScriptedBackdoor::new([
            Expect::start(0x2E),
            Expect::target(Frames::new(1), 0).with_status(Status::Busy),
            Expect::target(Frames::new(1), 0).with_status(Status::Unknown(0x77)),
            Expect::target(Frames::new(1), 0).with_status(Status::Failure),
        ]);
        let mut ch = started(&script);
        assert_eq!(
            ch.get_target(Frames::new(1)),
            Err(Error::Busy {
                command: Command::Target
            })
        );
        assert_eq!(
            ch.get_target(Frames::new(1)),
            Err(Error::UnknownStatus {
                command: Command::Target,
                raw: 0x77
            })
        );
        assert_eq!(
            ch.get_target(Frames::new(1)),
            Err(Error::Host {
                command: Command::Target,
                status: Status::Failure
            })
        );
        assert!(!ch.reset_pending());
        assert_eq!(ch.stats().count(Command::Target, Status::Busy), 1);
        assert_eq!(ch.stats().count(Command::Target, Status::Unknown(0)), 1);
        assert_eq!(ch.stats().calls(Command::Target), 3);
        script.done();
    }

    #[test]
    fn batched_lock_writes_entries_and_reads_per_entry_status() {
        let script = ScriptedBackdoor::new([
            Expect::start(0x2E),
            Expect::batch(Command::BatchedLock, 4, 900)
                .entries_in(&[0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000])
                .entry_statuses(&[0, 5, 6, 2]),
        ]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Lock, PageSize::Small, 4, |i| {
            Pfn::new(0x100 + i as u64)
        });
        assert_eq!(t.calls, 1);
        assert_eq!(t.stop, None);
        assert_eq!(t.done.iter().collect::<std::vec::Vec<_>>(), [0]);
        assert_eq!(t.refused.iter().collect::<std::vec::Vec<_>>(), [1, 3]);
        assert!(t.not_needed);
        assert_eq!(ch.target(), Frames::new(900));
        script.done();
    }

    #[test]
    fn batch_failure_overrides_entry_status() {
        // The host writes SUCCESS into every entry but fails the call as a whole.
        let script = ScriptedBackdoor::new([
            Expect::start(0x2E),
            Expect::any(Command::BatchedLock)
                .entry_statuses(&[0, 0])
                .with_status(Status::Failure),
            Expect::any(Command::BatchedUnlock)
                .entry_statuses(&[0, 0])
                .with_status(Status::CmdInvalid),
        ]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Lock, PageSize::Small, 2, |i| {
            Pfn::new(0x100 + i as u64)
        });
        assert!(t.done.is_empty() && t.refused.is_empty());
        assert_eq!(
            t.stop,
            Some(Error::Host {
                command: Command::BatchedLock,
                status: Status::Failure
            })
        );
        let t = ch.transfer(Direction::Unlock, PageSize::Small, 2, |i| {
            Pfn::new(0x100 + i as u64)
        });
        assert!(t.done.is_empty());
        assert_eq!(
            t.stop,
            Some(Error::Host {
                command: Command::BatchedUnlock,
                status: Status::CmdInvalid
            })
        );
        script.done();
    }

    #[test]
    fn unlock_failure_keeps_page_ballooned() {
        let script = ScriptedBackdoor::new([
            Expect::start(0x2E),
            Expect::any(Command::BatchedUnlock).entry_statuses(&[0, 4, 0]),
        ]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Unlock, PageSize::Small, 3, |i| {
            Pfn::new(0x100 + i as u64)
        });
        assert_eq!(t.done.iter().collect::<std::vec::Vec<_>>(), [0, 2]);
        assert!(t.refused.is_empty());
        script.done();
    }

    #[test]
    fn host_rewriting_entry_address_is_not_trusted() {
        let script = ScriptedBackdoor::new([
            Expect::start(0x2E),
            Expect::any(Command::BatchedLock).overwrite_entry(0, 0x99_9000),
        ]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Lock, PageSize::Small, 2, |i| {
            Pfn::new(0x100 + i as u64)
        });
        assert_eq!(t.done.iter().collect::<std::vec::Vec<_>>(), [1]);
        script.done();
    }

    #[test]
    fn large_page_entries_name_the_aligned_first_frame() {
        let script = ScriptedBackdoor::new([
            Expect::start(0x2E),
            Expect::batch(Command::Batched2mLock, 2, 1024).entries_in(&[0x20_0000, 0x60_0000]),
        ]);
        let mut ch = started(&script);
        // Page 1 is not 2 MiB-aligned: refused locally, never sent.
        let pfns = [0x200, 0x401, 0x600];
        let t = ch.transfer(Direction::Lock, PageSize::Large, 3, |i| Pfn::new(pfns[i]));
        assert_eq!(t.done.iter().collect::<std::vec::Vec<_>>(), [0, 2]);
        assert_eq!(t.refused.iter().collect::<std::vec::Vec<_>>(), [1]);
        script.done();
    }

    #[test]
    fn large_pages_are_refused_locally_without_2m_capability() {
        let script = ScriptedBackdoor::new([Expect::start(0x06)]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Lock, PageSize::Large, 1, |_| Pfn::new(0x200));
        assert_eq!(
            t.stop,
            Some(Error::NotGranted {
                command: Command::Batched2mLock
            })
        );
        script.done();
    }

    #[test]
    fn single_page_mode_sends_one_call_per_page() {
        let script = ScriptedBackdoor::new([
            Expect::legacy_start(),
            Expect::page(Command::Lock, 0x100, 50),
            Expect::page(Command::Lock, 0x101, 49),
            Expect::page(Command::Lock, 0x102, 48),
        ]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Lock, PageSize::Small, 3, |i| {
            Pfn::new(0x100 + i as u64)
        });
        assert_eq!(t.calls, 3);
        assert_eq!(t.done.iter().collect::<std::vec::Vec<_>>(), [0, 1, 2]);
        assert_eq!(ch.target(), Frames::new(48));
        script.done();
    }

    #[test]
    fn single_page_refusal_ends_the_pass() {
        // Linux (`vmballoon_lock` -> -EIO, `vmballoon_inflate` breaks) and open-vm-tools
        // (`BalloonLock`) stop at the first page the host does not take.
        let script = ScriptedBackdoor::new([
            Expect::legacy_start(),
            Expect::page(Command::Lock, 0x100, 50),
            Expect::page(Command::Lock, 0x101, 0).with_status(Status::PpnPinned),
        ]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Lock, PageSize::Small, 3, |i| {
            Pfn::new(0x100 + i as u64)
        });
        assert_eq!(t.calls, 2, "page 2 is never offered");
        assert_eq!(t.done.iter().collect::<std::vec::Vec<_>>(), [0]);
        assert_eq!(t.refused.iter().collect::<std::vec::Vec<_>>(), [1]);
        script.done();
    }

    #[test]
    fn single_page_unlock_failure_ends_the_pass() {
        let script = ScriptedBackdoor::new([
            Expect::legacy_start(),
            Expect::page(Command::Unlock, 0x100, 0).with_status(Status::PpnUnlocked),
        ]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Unlock, PageSize::Small, 3, |i| {
            Pfn::new(0x100 + i as u64)
        });
        assert_eq!(t.calls, 1);
        assert!(t.done.is_empty());
        script.done();
    }

    #[test]
    fn single_page_lowered_target_is_not_overshot() {
        // The reply to each single-page LOCK carries the target; `enough` sees it before the
        // next page is offered.
        let script = ScriptedBackdoor::new([
            Expect::legacy_start(),
            Expect::page(Command::Lock, 0x100, 10),
            Expect::page(Command::Lock, 0x101, 2),
        ]);
        let mut ch = started(&script);
        let held = 0u64;
        let t = ch.transfer_until(
            Direction::Lock,
            PageSize::Small,
            5,
            |i| Pfn::new(0x100 + i as u64),
            |done, target| held + done as u64 >= target.get(),
        );
        assert_eq!(t.calls, 2, "the target fell to 2: no third page");
        assert_eq!(t.done.len(), 2);
        script.done();
    }

    #[test]
    fn single_page_pfn_above_32_bits_is_refused_locally() {
        let script = ScriptedBackdoor::new([Expect::start(0x22)]);
        let mut ch = started(&script);
        let pfns = [0x1_0000_0000, 0x100];
        let t = ch.transfer(Direction::Lock, PageSize::Small, 2, |i| Pfn::new(pfns[i]));
        assert_eq!(
            t.calls, 0,
            "refused without a call, and the pass ends there"
        );
        assert_eq!(t.refused.iter().collect::<std::vec::Vec<_>>(), [0]);
        assert!(t.done.is_empty());
        script.done();
    }

    #[test]
    fn single_page_not_needed_stops_the_chunk() {
        let script = ScriptedBackdoor::new([
            Expect::legacy_start(),
            Expect::page(Command::Lock, 0x100, 0).with_status(Status::PpnNotNeeded),
        ]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Lock, PageSize::Small, 3, |i| {
            Pfn::new(0x100 + i as u64)
        });
        assert!(t.not_needed);
        assert_eq!(t.calls, 1);
        assert!(t.done.is_empty() && t.refused.is_empty());
        script.done();
    }

    #[test]
    fn stop_sends_null_start_and_closes_session() {
        let script = ScriptedBackdoor::new([Expect::start(0x2E), Expect::null_start()]);
        let mut ch = started(&script);
        ch.stop().unwrap();
        assert!(ch.session().is_none() && ch.reset_pending());
        script.done();
    }

    #[test]
    fn no_batch_page_is_reported() {
        let script = ScriptedBackdoor::without_batch_page([Expect::start(0x2E)]);
        let mut ch = started(&script);
        let t = ch.transfer(Direction::Lock, PageSize::Small, 1, |_| Pfn::new(1));
        assert_eq!(t.stop, Some(Error::NoBatchPage));
        script.done();
    }
}
