//! [`HostModel`]: a behavioural model of the VMware host side of the balloon protocol
//! (`docs/protocol.md` §2–§5, §9), with a protocol checker; and [`FakeHost`], the handle that
//! implements the core's [`Backdoor`] over it.
//!
//! # What the host does
//!
//! * **START** ANDs the guest's requested capabilities with the configured ones and answers
//!   `0x03000000` with the grant in RCX; a legacy host (`capabilities = []`) answers `0`
//!   (BASIC only). START (re)opens the session and forgets every page (the reset and
//!   unload paths rely on it: `docs/protocol.md` §2.1).
//! * **TARGET** answers the scheduled target (frames), capped by the host-side
//!   `max_balloon_percent` of RAM (`Mem.CtlMaxPercent`) and by the guest's limit argument
//!   when non-zero, and to 32 bits unless 64-bit targets were granted.
//! * **LOCK / UNLOCK / BATCHED_*** read the PPN or the batch page, write each entry's
//!   status, and answer the target in RBX. A 2 MiB page is 512 frames.
//! * Injected behaviour (the hostile mode of `docs/scenario-format.md`): `host_reset` (the host
//!   forgets every page at once and answers RESET to the next call other than START),
//!   `host_busy_calls N` (the next N calls that read the target or move pages are answered
//!   BUSY; START and GUEST_ID are not, so a guest can always close the session before
//!   freeing its pages), `host_refuse_next N` (the next N pages offered are refused with
//!   PPN_PINNED), `host_entry_status` (the next N pages offered — or given back, with
//!   `on = "unlock"` — are answered PPN_NOTNEEDED, BUSY or RESET: per entry in a batch, as
//!   the call's status of a single-page LOCK / UNLOCK; `balloon_def.h`'s
//!   `Balloon_BatchSetStatus` allows per-entry values up to BUSY, `docs/protocol.md` §3), and
//!   `host_target_after_locks` (the reply to the K-th LOCK-family call from now carries a
//!   new target, so a target lowered in the middle of a pass can be tested,
//!   `docs/protocol.md` §2). An injected answer is taken by the next page offered, in the order
//!   the injections were made. A RESET that is a call's status (single-page mode) is a
//!   real reset: the host forgets every page and wants START, as for `host_reset`; a
//!   RESET written into one batch entry only refuses that page (neither open driver
//!   resets the session on it, `docs/protocol.md` §6.3, §7).
//!
//! # What the checker records (each is a guest bug)
//!
//! LOCK of a frame the host already holds; UNLOCK of one it does not hold, or of part of a
//! 2 MiB page with a 4 KiB command (or the reverse); LOCK of a frame that is not a balloon
//! page of the guest; any command but START before the first START or after a RESET; a
//! command whose capability was not granted, or an undefined or retired command; a batch
//! whose PPN is not the batch page, with a count of 0 or more than 512, or an entry with
//! reserved bits (11..5) or status bits set by the guest, or a 2 MiB entry that is not
//! 2 MiB-aligned; a PPN outside guest RAM. The guest side adds: a page freed while the
//! host holds it, and breaches of the `PageAllocator` contract.
//!
//! Two rules are **guest-conformance rules**, derived from what both open drivers do
//! rather than from documented host behaviour (whether a real ESXi rejects these calls is
//! not public, `docs/protocol.md` §11):
//!
//! * a 2 MiB command (BATCHED_2M_LOCK / UNLOCK) in a session without BATCHED: 2 MiB pages
//!   travel only in batches, and a guest without BATCHED has no batch page (Linux
//!   `vmballoon_send_start`: "2MB pages are only supported with batching",
//!   `docs/protocol.md` §4 rule 4);
//! * a TARGET whose limit (EBX) does not fit in 32 bits without the 64-bit-target
//!   capability (Linux `vmballoon_send_get_target` refuses to send it, "as required by the
//!   host-guest protocol"; OVT truncates it: `docs/protocol.md` §2.2).

use std::collections::VecDeque;

use vmballoon_core::protocol::{
    BATCH_CAPACITY, Backdoor, BatchPage, Capabilities, Command, RawReply, Status,
};
use vmballoon_core::stats::CallStats;
use vmballoon_core::units::{Frames, PageSize, Pfn};

use crate::cost::Work;
use crate::guest::{GuestModel, Owner};
use crate::world::{Checker, SharedWorld, World};

/// The host's configuration (`[host]` of a scenario).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// What START grants (ANDed with the request), or `None` for a legacy host that
    /// answers START with plain SUCCESS (BASIC only).
    pub capabilities: Option<Capabilities>,
    /// Host-side cap on the balloon as a percentage of guest RAM; 0 = none.
    pub max_balloon_percent: u8,
}

impl Default for HostSpec {
    /// A current ESXi host: basic, batched and 2 MiB commands, `Mem.CtlMaxPercent` = 65.
    fn default() -> Self {
        Self {
            capabilities: Some(
                Capabilities::BASIC
                    .union(Capabilities::BATCHED)
                    .union(Capabilities::BATCHED_2M),
            ),
            max_balloon_percent: 65,
        }
    }
}

/// The capability names a scenario may list in `[host] capabilities`.
pub const CAPABILITY_NAMES: [(&str, Capabilities); 4] = [
    ("basic", Capabilities::BASIC),
    ("batched", Capabilities::BATCHED),
    ("batched-2m", Capabilities::BATCHED_2M),
    ("64-bit-target", Capabilities::TARGET_64BIT),
];

/// Which page moves an injected per-entry answer ([`HostModel::inject_entry_status`])
/// applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryDirection {
    /// Pages offered (LOCK, BATCHED_LOCK, BATCHED_2M_LOCK).
    Lock,
    /// Pages asked back (UNLOCK and the batched unlocks).
    Unlock,
}

/// The session as the host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Session {
    /// No START yet.
    NotStarted,
    /// A RESET was answered; only START is valid now.
    AfterReset,
    /// START succeeded with this grant.
    Started(Capabilities),
}

/// The VMware host model. See the [module docs](self).
#[derive(Debug)]
pub struct HostModel {
    spec: HostSpec,
    ram: u64,
    held: Vec<u64>,
    large_heads: Vec<u64>,
    held_frames: u64,
    session: Session,
    reset_pending: bool,
    busy_calls: u64,
    /// Injected per-page answers for pages offered, in order: (status, pages left).
    lock_answers: VecDeque<(Status, u64)>,
    /// Injected per-page answers for pages asked back.
    unlock_answers: VecDeque<(Status, u64)>,
    /// Injected target changes: (LOCK-family calls still to come, new target).
    target_after_locks: Vec<(u64, Frames)>,
    target: Frames,
    calls: CallStats,
    undefined_calls: u64,
    frames_locked: u64,
    frames_unlocked: u64,
    refused_pages: u64,
    resets_answered: u64,
    busy_answered: u64,
    guest_type: Option<u64>,
}

fn bit(set: &[u64], f: u64) -> bool {
    set.get((f / 64) as usize)
        .is_some_and(|w| w & (1 << (f % 64)) != 0)
}

fn put(set: &mut [u64], f: u64, on: bool) {
    if let Some(w) = set.get_mut((f / 64) as usize) {
        if on {
            *w |= 1 << (f % 64);
        } else {
            *w &= !(1 << (f % 64));
        }
    }
}

impl HostModel {
    /// A host for a guest of `ram` frames.
    #[must_use]
    pub fn new(spec: HostSpec, ram: Frames) -> Self {
        let words = ram.get().div_ceil(64) as usize;
        Self {
            spec,
            ram: ram.get(),
            held: vec![0; words],
            large_heads: vec![0; words],
            held_frames: 0,
            session: Session::NotStarted,
            reset_pending: false,
            busy_calls: 0,
            lock_answers: VecDeque::new(),
            unlock_answers: VecDeque::new(),
            target_after_locks: Vec::new(),
            target: Frames::ZERO,
            calls: CallStats::new(),
            undefined_calls: 0,
            frames_locked: 0,
            frames_unlocked: 0,
            refused_pages: 0,
            resets_answered: 0,
            busy_answered: 0,
            guest_type: None,
        }
    }

    // ---- the schedule and injected behaviour -------------------------------------------

    /// Sets the balloon target the host asks for from now on (before its own cap).
    pub fn set_target(&mut self, target: Frames) {
        self.target = target;
    }

    /// The target TARGET would answer now: the schedule, capped by `max_balloon_percent`
    /// of RAM.
    #[must_use]
    pub fn effective_target(&self) -> Frames {
        let cap = match self.spec.max_balloon_percent {
            0 => Frames::MAX,
            p => Frames::new(self.ram).percent(p),
        };
        self.target.min(cap)
    }

    /// The host resets the session: it forgets every page now and answers RESET to the
    /// next call other than START.
    pub fn inject_reset(&mut self) {
        self.reset_pending = true;
        self.forget_all();
    }

    /// The next `n` target or page calls are answered BUSY.
    pub fn inject_busy(&mut self, n: u64) {
        self.busy_calls = self.busy_calls.saturating_add(n);
    }

    /// The next `n` pages offered are refused with PPN_PINNED.
    pub fn inject_refusals(&mut self, n: u64) {
        self.inject_entry_status(Status::PpnPinned, n, EntryDirection::Lock);
    }

    /// The next `n` pages offered (or asked back) are answered `status` instead of being
    /// locked (unlocked): per entry in a batch, as the call's status in single-page mode.
    /// Answers queue behind earlier injections of the same direction.
    pub fn inject_entry_status(&mut self, status: Status, n: u64, direction: EntryDirection) {
        if n == 0 || status == Status::Success {
            return;
        }
        let queue = match direction {
            EntryDirection::Lock => &mut self.lock_answers,
            EntryDirection::Unlock => &mut self.unlock_answers,
        };
        queue.push_back((status, n));
    }

    /// The reply to the `locks`-th LOCK-family call from now (1 = the next one) carries
    /// `target`, which stays the host's target from then on (until the next target event).
    /// `locks` = 0 sets it now.
    pub fn inject_target_after_locks(&mut self, locks: u64, target: Frames) {
        if locks == 0 {
            self.target = target;
        } else {
            self.target_after_locks.push((locks, target));
        }
    }

    /// Counts one LOCK-family call against the pending target injections; the ones that
    /// fall due now set the target (the last one injected wins).
    fn count_lock_call(&mut self) {
        let mut due = None;
        for (left, target) in &mut self.target_after_locks {
            *left = left.saturating_sub(1);
            if *left == 0 {
                due = Some(*target);
            }
        }
        self.target_after_locks.retain(|(left, _)| *left > 0);
        if let Some(t) = due {
            self.target = t;
        }
    }

    /// The injected answer for the next page of `direction`, if any (taken).
    fn next_answer(&mut self, direction: EntryDirection) -> Option<Status> {
        let queue = match direction {
            EntryDirection::Lock => &mut self.lock_answers,
            EntryDirection::Unlock => &mut self.unlock_answers,
        };
        let (status, left) = queue.front_mut()?;
        let status = *status;
        *left = left.saturating_sub(1);
        if *left == 0 {
            queue.pop_front();
        }
        Some(status)
    }

    /// A RESET that is a call's status: the host forgets every page and wants START.
    fn reset_now(&mut self) {
        self.forget_all();
        self.session = Session::AfterReset;
        self.resets_answered = self.resets_answered.saturating_add(1);
    }

    fn forget_all(&mut self) {
        self.held.iter_mut().for_each(|w| *w = 0);
        self.large_heads.iter_mut().for_each(|w| *w = 0);
        self.held_frames = 0;
    }

    // ---- what the host holds -----------------------------------------------------------

    fn page_in_ram(&self, pfn: u64, size: PageSize) -> bool {
        pfn.checked_add(size.frames().get())
            .is_some_and(|end| end <= self.ram)
    }

    /// Whether the host holds any frame of the page of `size` at `pfn`.
    #[must_use]
    pub fn holds_any(&self, pfn: u64, size: PageSize) -> bool {
        match size {
            PageSize::Small => bit(&self.held, pfn),
            PageSize::Large => (pfn..pfn.saturating_add(512)).any(|f| bit(&self.held, f)),
        }
    }

    /// Whether the host holds every frame of the page of `size` at `pfn`.
    #[must_use]
    pub fn holds_all(&self, pfn: u64, size: PageSize) -> bool {
        self.page_in_ram(pfn, size)
            && (pfn..pfn.saturating_add(size.frames().get())).all(|f| bit(&self.held, f))
    }

    /// Frames the host holds.
    #[must_use]
    pub const fn held_frames(&self) -> Frames {
        Frames::new(self.held_frames)
    }

    // ---- counters ----------------------------------------------------------------------

    /// Calls by command and answer.
    #[must_use]
    pub const fn calls(&self) -> &CallStats {
        &self.calls
    }

    /// Every balloon call received (including undefined command numbers).
    #[must_use]
    pub fn total_calls(&self) -> u64 {
        self.calls.total().saturating_add(self.undefined_calls)
    }

    /// Frames handed to the host (a 2 MiB page counts 512).
    #[must_use]
    pub const fn frames_locked(&self) -> u64 {
        self.frames_locked
    }

    /// Frames taken back from the host.
    #[must_use]
    pub const fn frames_unlocked(&self) -> u64 {
        self.frames_unlocked
    }

    /// Pages refused (every injected answer to a page offered: PPN_PINNED, NOTNEEDED, BUSY,
    /// RESET).
    #[must_use]
    pub const fn refused_pages(&self) -> u64 {
        self.refused_pages
    }

    /// RESET answers given.
    #[must_use]
    pub const fn resets_answered(&self) -> u64 {
        self.resets_answered
    }

    /// BUSY answers given.
    #[must_use]
    pub const fn busy_answered(&self) -> u64 {
        self.busy_answered
    }

    /// The guest type of the last GUEST_ID.
    #[must_use]
    pub const fn guest_type(&self) -> Option<u64> {
        self.guest_type
    }

    // ---- the protocol ------------------------------------------------------------------

    /// Handles one balloon call. `page` is the guest's batch page and its PFN.
    pub fn handle(
        &mut self,
        guest: &GuestModel,
        checker: &mut Checker,
        page: (&mut BatchPage, u64),
        command: u32,
        arg1: u64,
        arg2: u64,
    ) -> RawReply {
        let Some(cmd) = Command::ALL.get(command as usize).copied() else {
            self.undefined_calls = self.undefined_calls.saturating_add(1);
            checker.record(format!("undefined balloon command {command}"));
            return reply(Status::CmdInvalid, 0, 0);
        };
        let answer = self.dispatch(guest, checker, page, cmd, arg1, arg2);
        self.calls.record(cmd, Status::from_raw(answer.status));
        answer
    }

    fn dispatch(
        &mut self,
        guest: &GuestModel,
        checker: &mut Checker,
        page: (&mut BatchPage, u64),
        cmd: Command,
        arg1: u64,
        arg2: u64,
    ) -> RawReply {
        if cmd == Command::Start {
            return self.start(arg1);
        }
        if self.reset_pending {
            self.reset_pending = false;
            self.session = Session::AfterReset;
            self.resets_answered = self.resets_answered.saturating_add(1);
            return reply(Status::Reset, 0, 0);
        }
        let granted = match self.session {
            Session::Started(granted) => granted,
            Session::NotStarted => {
                checker.record(format!("{} before START", cmd.name()));
                return reply(Status::Reset, 0, 0);
            }
            Session::AfterReset => {
                checker.record(format!("{} after RESET before START", cmd.name()));
                return reply(Status::Reset, 0, 0);
            }
        };
        if !granted.contains(cmd.required_capability()) {
            checker.record(format!(
                "{} without its capability (granted {:#x})",
                cmd.name(),
                granted.bits()
            ));
            return reply(Status::CmdInvalid, 0, 0);
        }
        if matches!(cmd, Command::Batched2mLock | Command::Batched2mUnlock)
            && !granted.contains(Capabilities::BATCHED)
        {
            // Guest-conformance rule (module docs): 2 MiB pages only travel in batches.
            checker.record(format!(
                "{} in a session without BATCHED (granted {:#x}): 2 MiB pages need batching",
                cmd.name(),
                granted.bits()
            ));
            return reply(Status::CmdInvalid, 0, 0);
        }
        let moves_pages = !matches!(cmd, Command::GuestId);
        if moves_pages && self.busy_calls > 0 {
            self.busy_calls -= 1;
            self.busy_answered = self.busy_answered.saturating_add(1);
            return reply(Status::Busy, 0, 0);
        }
        let wide = granted.contains(Capabilities::TARGET_64BIT);
        match cmd {
            Command::GuestId => {
                self.guest_type = Some(arg1);
                reply(Status::Success, 0, 0)
            }
            Command::Target => {
                if !wide && arg1 > u64::from(u32::MAX) {
                    // Guest-conformance rule (module docs).
                    checker.record(format!(
                        "TARGET with a limit wider than 32 bits ({arg1:#x}) without 64-bit \
                         targets"
                    ));
                }
                let mut t = self.effective_target();
                if arg1 != 0 {
                    t = t.min(Frames::new(arg1));
                }
                self.target_reply(Status::Success, wide, t)
            }
            Command::Lock | Command::Unlock => {
                if !wide && arg1 > u64::from(u32::MAX) {
                    checker.record(format!(
                        "{} with a PPN wider than 32 bits ({arg1:#x}) without 64-bit targets",
                        cmd.name()
                    ));
                }
                let status = if cmd == Command::Lock {
                    self.count_lock_call();
                    self.lock(guest, checker, arg1, PageSize::Small)
                } else {
                    self.unlock(checker, arg1, PageSize::Small)
                };
                if status == Status::Reset {
                    // The page's injected answer is the call's status: a real reset.
                    self.reset_now();
                }
                if status == Status::Success {
                    self.target_reply(Status::Success, wide, self.effective_target())
                } else {
                    reply(status, 0, 0)
                }
            }
            Command::BatchedLock
            | Command::BatchedUnlock
            | Command::Batched2mLock
            | Command::Batched2mUnlock => {
                if matches!(cmd, Command::BatchedLock | Command::Batched2mLock) {
                    self.count_lock_call();
                }
                let status = self.batch(guest, checker, page, cmd, arg1, arg2);
                if status == Status::Success {
                    self.target_reply(Status::Success, wide, self.effective_target())
                } else {
                    reply(status, 0, 0)
                }
            }
            // Unreachable: START is handled above and the rest need capabilities the host
            // never grants. Answer as an unknown command.
            Command::Start | Command::RetiredGetProtoV3 | Command::VmciDoorbellSet => {
                checker.record(format!("unexpected command {}", cmd.name()));
                reply(Status::CmdInvalid, 0, 0)
            }
        }
    }

    fn target_reply(&self, status: Status, wide: bool, target: Frames) -> RawReply {
        let t = if wide {
            target.get()
        } else {
            target.get().min(u64::from(u32::MAX))
        };
        reply(status, t, 0)
    }

    fn start(&mut self, requested: u64) -> RawReply {
        self.reset_pending = false;
        self.forget_all();
        let requested = Capabilities::from_bits((requested & 0xFFFF_FFFF) as u32);
        match self.spec.capabilities {
            None => {
                self.session = Session::Started(Capabilities::BASIC);
                reply(Status::Success, 0, 0)
            }
            Some(host) => {
                let granted = host.intersection(requested);
                self.session = Session::Started(granted);
                reply(
                    Status::SuccessWithCapabilities,
                    0,
                    u64::from(granted.bits()),
                )
            }
        }
    }

    fn lock(
        &mut self,
        guest: &GuestModel,
        checker: &mut Checker,
        pfn: u64,
        size: PageSize,
    ) -> Status {
        if !self.page_in_ram(pfn, size) {
            checker.record(format!("LOCK of pfn {pfn:#x} outside guest RAM"));
            return Status::PpnInvalid;
        }
        if self.holds_any(pfn, size) {
            checker.record(format!(
                "LOCK of {} page pfn {pfn:#x}, which the host already holds",
                size.name()
            ));
            return Status::PpnLocked;
        }
        let frames = pfn..pfn.saturating_add(size.frames().get());
        if let Some(f) = frames
            .clone()
            .find(|&f| guest.owner_of(f) != Some(Owner::Balloon))
        {
            checker.record(format!(
                "LOCK of pfn {f:#x}, which is not a balloon page of the guest ({:?})",
                guest.owner_of(f)
            ));
            return Status::PpnInvalid;
        }
        if let Some(answer) = self.next_answer(EntryDirection::Lock) {
            self.refused_pages = self.refused_pages.saturating_add(1);
            return answer;
        }
        for f in frames {
            put(&mut self.held, f, true);
        }
        if size == PageSize::Large {
            put(&mut self.large_heads, pfn, true);
        }
        let n = size.frames().get();
        self.held_frames = self.held_frames.saturating_add(n);
        self.frames_locked = self.frames_locked.saturating_add(n);
        Status::Success
    }

    fn unlock(&mut self, checker: &mut Checker, pfn: u64, size: PageSize) -> Status {
        if !self.holds_all(pfn, size) {
            checker.record(format!(
                "UNLOCK of {} page pfn {pfn:#x}, which the host does not hold",
                size.name()
            ));
            return Status::PpnUnlocked;
        }
        let head = pfn - pfn % 512;
        let in_large = bit(&self.large_heads, head) && self.holds_all(head, PageSize::Large);
        match size {
            PageSize::Small if in_large => {
                checker.record(format!(
                    "4k UNLOCK of pfn {pfn:#x}, part of a 2 MiB page the host holds"
                ));
                return Status::PpnInvalid;
            }
            PageSize::Large if !bit(&self.large_heads, pfn) => {
                checker.record(format!(
                    "2m UNLOCK of pfn {pfn:#x}, whose frames were locked as 4 KiB pages"
                ));
                return Status::PpnInvalid;
            }
            _ => {}
        }
        if let Some(answer) = self.next_answer(EntryDirection::Unlock) {
            return answer;
        }
        for f in pfn..pfn.saturating_add(size.frames().get()) {
            put(&mut self.held, f, false);
        }
        put(&mut self.large_heads, pfn, false);
        let n = size.frames().get();
        self.held_frames = self.held_frames.saturating_sub(n);
        self.frames_unlocked = self.frames_unlocked.saturating_add(n);
        Status::Success
    }

    fn batch(
        &mut self,
        guest: &GuestModel,
        checker: &mut Checker,
        (page, page_pfn): (&mut BatchPage, u64),
        cmd: Command,
        arg1: u64,
        arg2: u64,
    ) -> Status {
        if arg1 != page_pfn {
            checker.record(format!(
                "{} names PPN {arg1:#x}, not the batch page {page_pfn:#x}",
                cmd.name()
            ));
            return Status::Failure;
        }
        let count = match usize::try_from(arg2) {
            Ok(n) if (1..=BATCH_CAPACITY).contains(&n) => n,
            _ => {
                checker.record(format!("{} with {arg2} entries (1..=512)", cmd.name()));
                return Status::Failure;
            }
        };
        let size = match cmd {
            Command::Batched2mLock | Command::Batched2mUnlock => PageSize::Large,
            _ => PageSize::Small,
        };
        let locking = matches!(cmd, Command::BatchedLock | Command::Batched2mLock);
        for (i, slot) in page.entries.iter_mut().take(count).enumerate() {
            let raw = u64::from_le(*slot);
            if raw & 0x1F != 0 {
                checker.record(format!(
                    "{} entry {i} has status bits set by the guest ({raw:#x})",
                    cmd.name()
                ));
            }
            if raw & 0xFE0 != 0 {
                checker.record(format!(
                    "{} entry {i} has reserved bits 11..5 set ({raw:#x})",
                    cmd.name()
                ));
            }
            let pfn = raw >> 12;
            let status = if size == PageSize::Large && pfn % 512 != 0 {
                checker.record(format!(
                    "{} entry {i}: pfn {pfn:#x} is not 2 MiB-aligned",
                    cmd.name()
                ));
                Status::PpnInvalid
            } else if locking {
                self.lock(guest, checker, pfn, size)
            } else {
                self.unlock(checker, pfn, size)
            };
            *slot = (raw | u64::from(status.raw() & 0x1F)).to_le();
        }
        Status::Success
    }
}

fn reply(status: Status, result: u64, capabilities: u64) -> RawReply {
    RawReply {
        status: status.raw(),
        result,
        capabilities,
    }
}

/// The host handle: the core's [`Backdoor`] over the shared [`World`]. It owns the batch
/// page, which in the simulation is the guest page at [`GuestModel::batch_page_pfn`] (an
/// OS frame), so the host reads exactly what the guest wrote.
#[derive(Debug)]
pub struct FakeHost {
    world: SharedWorld,
    page: Box<BatchPage>,
    pfn: Pfn,
}

impl FakeHost {
    /// A host handle on `world`.
    #[must_use]
    pub fn new(world: SharedWorld) -> Self {
        let pfn = Pfn::new(world.borrow().guest.batch_page_pfn()).unwrap_or(Pfn::MAX);
        Self {
            world,
            page: Box::new(BatchPage::zeroed()),
            pfn,
        }
    }
}

impl Backdoor for FakeHost {
    /// One call, charged to the modelled clock ([`crate::cost`]): the exit itself, and the
    /// host's per-page work when a page command succeeded as a whole.
    fn call(&mut self, command: u32, arg1: u64, arg2: u64) -> RawReply {
        let mut w = self.world.borrow_mut();
        let World {
            guest,
            host,
            checker,
            ..
        } = &mut *w;
        let reply = host.handle(
            guest,
            checker,
            (&mut self.page, self.pfn.get()),
            command,
            arg1,
            arg2,
        );
        let call_ns = w.cost.call_ns;
        w.charge(Work::Calls, call_ns);
        let entries = match Command::ALL.get(command as usize) {
            Some(Command::Lock | Command::Unlock) => 1,
            _ => arg2,
        };
        if Status::from_raw(reply.status) == Status::Success
            && let Some(cmd) = Command::ALL.get(command as usize)
            && let Some((work, ns)) = w.cost.host_work(*cmd, entries)
        {
            w.charge(work, ns);
        }
        reply
    }

    fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)> {
        Some((&mut self.page, self.pfn))
    }
}

#[cfg(test)]
mod tests;
