//! The adversarial harness shared by `tests/properties.rs` and the `engine_script` fuzz
//! target (`fuzz/fuzz_targets/engine_script.rs` includes this file by path).
//!
//! It runs the real engine (`vmballoon_core::engine::Balloon`) against the simulator's
//! host model and Windows guest model, through three wrappers that make them hostile:
//!
//! * [`Hostile`], the [`Backdoor`]: answers each call as a [`Reply`] script says (any EAX,
//!   any RBX / RCX, per-entry statuses 1..=31, rewritten entry addresses, reserved bits,
//!   garbage past the batch, RESET / BUSY anywhere) and otherwise delegates to the
//!   simulator's `FakeHost`. It keeps the host model *sound*: a perturbed reply is one a
//!   protocol-conforming host could give, so the host model's held-frame set stays the
//!   truth. A call answered with a non-SUCCESS status is not delegated (the host did
//!   nothing); RESET makes the host forget every page; a batch entry answered with a
//!   refusal or a rewritten address is taken out of the batch the model sees (the host
//!   did not take that page); START is always delegated (it always ends the session).
//! * [`Pages`], the `PageAllocator`: fails or shortens allocations on demand and counts
//!   the frames out of the store, so the oracle knows the balloon's footprint mid-tick.
//! * [`Memory`], the `MemorySource`: fails snapshots or forces `LowMemoryCondition`.
//!
//! The [`Oracle`] checks, at every LOCK and every allocation, that the engine never plans
//! past `min(target, ceiling)`, and [`Harness::tick`] checks after every tick that no page
//! leaked, was freed twice or while the host held it, that the engine's, the guest's and
//! the host's counts agree, and that a tick that inflated left the resident-available and
//! commit floors intact. The host model's own checker (LOCK of a held frame, UNLOCK of one
//! it does not hold, malformed batches, commands before START...) must stay at zero.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::rc::Rc;

use vmballoon_core::config::Config;
use vmballoon_core::engine::{Balloon, Calibration, SessionState, TickReport};
use vmballoon_core::fake::ManualClock;
use vmballoon_core::mask::PageMask;
use vmballoon_core::platform::{
    Clock, MemoryError, MemorySnapshot, MemorySource, PageAllocator, Shelf, StorePosition,
};
use vmballoon_core::policy::{self, ClampReason, SLACK};
use vmballoon_core::protocol::{BATCH_CAPACITY, Backdoor, BatchPage, Command, RawReply};
use vmballoon_core::units::{Frames, Instant, PageSize, Pfn};
use vmballoon_sim::guest::{FakeGuest, GuestModel, GuestSpec, GuestUnit, Owner, PinKind};
use vmballoon_sim::host::{FakeHost, HostModel, HostSpec};
use vmballoon_sim::world::{SharedWorld, World};

/// EAX values with a meaning (`protocol.md` §3).
pub mod status {
    /// SUCCESS.
    pub const SUCCESS: u32 = 0;
    /// BALLOON_SUCCESS_WITH_CAPABILITIES: valid only as START's answer.
    pub const SUCCESS_WITH_CAPS: u32 = 0x0300_0000;
    /// ERROR_RESET.
    pub const RESET: u32 = 7;
    /// ERROR_BUSY.
    pub const BUSY: u32 = 8;
    /// BALLOON_FAILURE (−1), also what an empty port reads.
    pub const FAILURE: u32 = 0xFFFF_FFFF;
}

/// The capability bits vmballoon requests (`Capabilities::REQUESTED`).
const REQUESTED: u64 = 0x2E;
/// BASIC_CMDS.
const BASIC: u64 = 0x02;
/// BATCHED_CMDS.
const BATCHED: u64 = 0x04;
/// 64-bit targets.
const TARGET_64BIT: u64 = 0x20;

/// How the host answers one balloon call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The host model answers.
    Honest,
    /// The host does nothing and answers EAX = `status`, RBX = `rbx`, RCX = `rcx`. RESET also
    /// makes it forget every page. START is still delegated (it ends the session whatever
    /// it answers), then answered this way. A page command answered SUCCESS is delegated
    /// and only its RBX replaced: a host cannot claim a page it did not take.
    Status {
        /// EAX.
        status: u32,
        /// RBX.
        rbx: u64,
        /// RCX.
        rcx: u64,
    },
    /// Delegated; on SUCCESS, RBX is replaced by this target (absurd ones included).
    Target(u64),
    /// Delegated; these bits are ORed into RCX (START: only bits outside the requested
    /// set, so the grant itself is unchanged; other commands: RCX is clobbered anyway).
    Caps(u64),
    /// Batched commands: entry `i` is answered as `entries[i % len]`; every entry past the
    /// count is overwritten with `tail ^ i` when `tail` is not zero.
    Entries {
        /// Per-entry answers.
        entries: Vec<EntryReply>,
        /// Garbage written past the count.
        tail: u64,
    },
}

/// How the host answers one batch entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryReply {
    /// Processed by the host model.
    Honest,
    /// Not processed; the status bits read `1 + s % 31` (PPN errors, RESET, BUSY and
    /// undefined codes up to 31).
    Refuse(u8),
    /// Not processed; the address bits are XORed with `xor` (made non-zero) and the status
    /// bits set to `status % 32`.
    Rewrite {
        /// Changes the address.
        xor: u64,
        /// Status bits written with it.
        status: u8,
    },
    /// Processed by the host model, then reserved bits 11..5 set to `bits`.
    Reserved(u8),
}

/// Guest-side faults, counted down as they fire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The next N snapshots fail.
    pub fail_snapshots: u32,
    /// The next N snapshots report `LowMemoryCondition` whatever the guest's state.
    pub force_low_memory: u32,
    /// The next N allocations of each kind (scattered 4 KiB, whole block) return nothing.
    pub fail_alloc: [u32; 2],
    /// The next N allocations of each size return about half of what was asked.
    pub short_alloc: [u32; 2],
}

impl Faults {
    fn add(&mut self, other: &Self) {
        self.fail_snapshots = self.fail_snapshots.saturating_add(other.fail_snapshots);
        self.force_low_memory = self.force_low_memory.saturating_add(other.force_low_memory);
        for i in 0..2 {
            self.fail_alloc[i] = self.fail_alloc[i].saturating_add(other.fail_alloc[i]);
            self.short_alloc[i] = self.short_alloc[i].saturating_add(other.short_alloc[i]);
        }
    }
}

/// Something the guest (or the host's scheduler, or the administrator) does between ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestStep {
    /// Nothing happens.
    Idle,
    /// An application pins `mib` of `kind` (may fail and be retried every second).
    Lock {
        /// Kind of pinned memory.
        kind: PinKind,
        /// Size in MiB.
        mib: u64,
    },
    /// An application commits `mib` of pageable memory.
    Commit {
        /// Size in MiB.
        mib: u64,
    },
    /// The request made `n`-th (modulo the number made) is released or cancelled.
    Release(usize),
    /// Guest-side faults from now on.
    Faults(Faults),
    /// The registry is re-read with new values.
    Config(Config),
    /// The host's scheduled target, in frames (absurd values included).
    Target(u64),
}

/// What is simulated: the guest, the host, and the driver's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// The Windows guest.
    pub guest: GuestSpec,
    /// The host model (capabilities, `Mem.CtlMaxPercent`).
    pub host: HostSpec,
    /// The validated registry settings.
    pub config: Config,
}

impl Setup {
    /// Whether START can give a session that locks pages (legacy, BASIC or BATCHED).
    #[must_use]
    pub fn usable_host(&self) -> bool {
        self.host
            .capabilities
            .is_none_or(|c| u64::from(c.bits()) & REQUESTED & (BASIC | BATCHED) != 0)
    }
}

/// What the oracle knows and has seen. Shared by the wrappers.
#[derive(Debug, Default)]
pub struct Oracle {
    /// The settings the engine runs with.
    pub config: Config,
    /// The target the engine knows, by the protocol's rules (the last SUCCESS reply of a
    /// command that carries one, if it fits the session's width).
    pub t_known: u64,
    /// The target the engine knew when it allocated the chunk being locked.
    pub t_plan: u64,
    /// The known target went down during this tick.
    pub t_dropped: bool,
    /// The session negotiated 64-bit targets.
    pub wide: bool,
    /// Frames taken out of the allocator and not stored or returned (allocated or taken
    /// chunks in the engine's hands).
    pub out: u64,
    /// Frames of units parked (the host holds part of them, or none: refused pages held
    /// back from the OS until the end of the cycle).
    pub parked: u64,
    /// Whether the last snapshot the engine got said `LowMemoryCondition` (`None`: it failed).
    pub last_low: Option<bool>,
    /// Faults still to fire.
    pub faults: Faults,
    /// Broken invariants.
    pub violations: Vec<String>,
    /// Backdoor calls seen.
    pub calls: u64,
}

impl Oracle {
    fn violation(&mut self, message: String) {
        if self.violations.len() < 32 {
            self.violations.push(message);
        }
    }
}

/// The safe ceiling of `architecture.md`, recomputed here from the formula (not with the
/// engine's `policy::ceiling`), in frames:
/// `min(target, MaxBalloonMB, MaxBalloonPercent of RAM, balloon + (ResidentAvailable −
/// reserve), balloon + (CommitLimit − Committed − reserve))`; an unknown bound gives no
/// room above the balloon.
#[must_use]
pub fn safe_ceiling(target: u64, balloon: u64, snap: &MemorySnapshot, config: &Config) -> u64 {
    let floor = policy::reserve(config, snap.total).get();
    let room = |free: Option<u64>| {
        free.map_or(balloon, |f| balloon.saturating_add(f).saturating_sub(floor))
    };
    let commit_free = match (snap.commit_limit, snap.committed) {
        (Some(l), Some(c)) => Some(l.get().saturating_sub(c.get())),
        _ => None,
    };
    let mut c = target;
    if let Some(m) = config.max_balloon {
        c = c.min(m.get());
    }
    if let Some(p) = config.max_balloon_percent {
        c = c.min(snap.total.percent(p).get());
    }
    // Free memory stays above the available floor (`docs/architecture.md`, "The safe
    // ceiling").
    let available_room = snap.available.map_or(balloon, |a| {
        balloon
            .saturating_add(a.get())
            .saturating_sub(policy::available_floor(snap.total).get())
    });
    c.min(room(snap.resident_available.map(Frames::get)))
        .min(room(commit_free))
        .min(available_room)
}

/// The [`Backdoor`]: the simulator's host, made hostile by a [`Reply`] script.
pub struct Hostile {
    world: SharedWorld,
    inner: FakeHost,
    page: Box<BatchPage>,
    pfn: Pfn,
    script: VecDeque<Reply>,
    oracle: Rc<RefCell<Oracle>>,
}

impl Hostile {
    /// Replaces the rest of the script (an empty one makes the host honest).
    pub fn set_script(&mut self, script: impl IntoIterator<Item = Reply>) {
        self.script = script.into_iter().collect();
    }

    /// Replies still scripted.
    #[must_use]
    pub fn scripted(&self) -> usize {
        self.script.len()
    }

    fn forget(&self) {
        self.world.borrow_mut().host.inject_reset();
    }

    fn target_reply(&self) -> u64 {
        let t = self.world.borrow().host.effective_target().get();
        if self.oracle.borrow().wide {
            t
        } else {
            t.min(u64::from(u32::MAX))
        }
    }

    fn start(&mut self, arg1: u64, plan: Reply) -> RawReply {
        // START ends the session in the host model whatever the answer: it forgets every
        // page, as the reset and unload paths rely on (protocol.md §2.1).
        let inner = self.inner.call(0, arg1, 0);
        let granted = match inner.status {
            status::SUCCESS_WITH_CAPS => inner.capabilities & 0xFFFF_FFFF,
            status::SUCCESS => BASIC,
            _ => 0,
        };
        match plan {
            Reply::Status { status, rbx, rcx } => match status {
                status::SUCCESS_WITH_CAPS => RawReply {
                    status,
                    result: rbx,
                    capabilities: granted | (rcx & !REQUESTED),
                },
                // Answering "legacy host" is sound only if the host model granted exactly
                // BASIC (else it would take batches or send 64-bit targets the guest
                // cannot expect from a legacy host).
                status::SUCCESS if granted == BASIC => RawReply {
                    status,
                    result: rbx,
                    capabilities: rcx,
                },
                status::SUCCESS => inner,
                _ => RawReply {
                    status,
                    result: rbx,
                    capabilities: rcx,
                },
            },
            Reply::Caps(garbage) => {
                let mut r = inner;
                if r.status == status::SUCCESS_WITH_CAPS {
                    r.capabilities |= garbage & !REQUESTED;
                } else {
                    r.capabilities = garbage;
                }
                r
            }
            _ => inner,
        }
    }

    fn plain(&mut self, command: u32, arg1: u64, arg2: u64, plan: Reply) -> RawReply {
        match plan {
            Reply::Status { status, rbx, rcx } => {
                if status == status::RESET {
                    self.forget();
                }
                RawReply {
                    status,
                    result: rbx,
                    capabilities: rcx,
                }
            }
            Reply::Target(t) => {
                let mut r = self.inner.call(command, arg1, arg2);
                if r.status == status::SUCCESS {
                    r.result = t;
                }
                r
            }
            Reply::Caps(g) => {
                let mut r = self.inner.call(command, arg1, arg2);
                r.capabilities = g;
                r
            }
            Reply::Honest | Reply::Entries { .. } => self.inner.call(command, arg1, arg2),
        }
    }

    fn page_call(&mut self, cmd: Command, arg1: u64, arg2: u64, plan: Reply) -> RawReply {
        let batched = !matches!(cmd, Command::Lock | Command::Unlock);
        let (entries, tail, rbx, rcx) = match plan {
            Reply::Status { status, rbx, rcx } if status != status::SUCCESS => {
                if status == status::RESET {
                    self.forget();
                }
                return RawReply {
                    status,
                    result: rbx,
                    capabilities: rcx,
                };
            }
            Reply::Status { rbx, .. } | Reply::Target(rbx) => (Vec::new(), 0, Some(rbx), None),
            Reply::Caps(g) => (Vec::new(), 0, None, Some(g)),
            Reply::Entries { entries, tail } => (entries, tail, None, None),
            Reply::Honest => (Vec::new(), 0, None, None),
        };
        let mut r = if batched {
            self.batch(cmd, arg1, arg2, &entries, tail)
        } else {
            self.inner.call(cmd.number(), arg1, arg2)
        };
        if let (Some(t), status::SUCCESS) = (rbx, r.status) {
            r.result = t;
        }
        if let Some(g) = rcx {
            r.capabilities = g;
        }
        r
    }

    /// A batched call: entries answered by the script are taken out of the batch the host
    /// model sees; the rest go to it; the answers are merged back in the guest's order.
    fn batch(
        &mut self,
        cmd: Command,
        arg1: u64,
        arg2: u64,
        entries: &[EntryReply],
        tail: u64,
    ) -> RawReply {
        let count = usize::try_from(arg2).unwrap_or(usize::MAX);
        if arg1 != self.pfn.get() || !(1..=BATCH_CAPACITY).contains(&count) || entries.is_empty() {
            // Malformed (the host model records it) or nothing to perturb.
            let page = self.inner.batch_page().map(|(p, _)| p);
            if let Some(p) = page {
                p.entries = self.page.entries;
            }
            let r = self.inner.call(cmd.number(), arg1, arg2);
            if let Some((p, _)) = self.inner.batch_page() {
                self.page.entries = p.entries;
            }
            self.scribble(count, tail);
            return r;
        }
        let plan = |i: usize| entries[i % entries.len()];
        let mut forwarded = Vec::with_capacity(count);
        {
            let Some((inner, _)) = self.inner.batch_page() else {
                return self.inner.call(cmd.number(), arg1, arg2);
            };
            for i in 0..count {
                if matches!(plan(i), EntryReply::Honest | EntryReply::Reserved(_)) {
                    inner.entries[forwarded.len()] = self.page.entries[i];
                    forwarded.push(i);
                }
            }
        }
        let reply = if forwarded.is_empty() {
            // The host refused every page: overall SUCCESS, nothing taken.
            RawReply {
                status: status::SUCCESS,
                result: self.target_reply(),
                capabilities: 0,
            }
        } else {
            self.inner
                .call(cmd.number(), self.pfn.get(), forwarded.len() as u64)
        };
        if reply.status == status::SUCCESS {
            if let Some((inner, _)) = self.inner.batch_page() {
                for (k, &i) in forwarded.iter().enumerate() {
                    let mut raw = u64::from_le(inner.entries[k]);
                    if let EntryReply::Reserved(bits) = plan(i) {
                        raw |= (u64::from(bits) & 0x7F) << 5;
                    }
                    self.page.entries[i] = raw.to_le();
                }
            }
            for i in 0..count {
                let raw = u64::from_le(self.page.entries[i]);
                let new = match plan(i) {
                    EntryReply::Refuse(s) => raw | u64::from(1 + s % 31),
                    EntryReply::Rewrite { xor, status } => {
                        let x = match xor & !0xFFF {
                            0 => 1 << 12,
                            x => x,
                        };
                        ((raw ^ x) & !0xFFF) | u64::from(status % 32)
                    }
                    EntryReply::Honest | EntryReply::Reserved(_) => continue,
                };
                self.page.entries[i] = new.to_le();
            }
        }
        self.scribble(count, tail);
        reply
    }

    fn scribble(&mut self, count: usize, tail: u64) {
        if tail == 0 {
            return;
        }
        for (i, e) in self.page.entries.iter_mut().enumerate().skip(count) {
            *e = (tail ^ i as u64).to_le();
        }
    }

    /// The guest's side of the protocol, for every page of a LOCK / UNLOCK, including the
    /// pages the host model will not see.
    fn check_pages(&self, cmd: Command, arg1: u64, arg2: u64) {
        let lock = matches!(
            cmd,
            Command::Lock | Command::BatchedLock | Command::Batched2mLock
        );
        let size = match cmd {
            Command::Batched2mLock | Command::Batched2mUnlock => PageSize::Large,
            _ => PageSize::Small,
        };
        let mut pages: Vec<u64> = Vec::new();
        let mut o = self.oracle.borrow_mut();
        if matches!(cmd, Command::Lock | Command::Unlock) {
            pages.push(arg1);
        } else {
            if arg1 != self.pfn.get() {
                o.violation(format!(
                    "{} names PPN {arg1:#x}, not the batch page",
                    cmd.name()
                ));
            }
            let n = usize::try_from(arg2).unwrap_or(usize::MAX);
            if !(1..=BATCH_CAPACITY).contains(&n) {
                o.violation(format!("{} with {arg2} entries", cmd.name()));
            }
            for (i, e) in self.page.entries.iter().take(n).enumerate() {
                let raw = u64::from_le(*e);
                if raw & 0xFFF != 0 {
                    o.violation(format!(
                        "{} entry {i} has low bits set: {raw:#x}",
                        cmd.name()
                    ));
                }
                pages.push(raw >> 12);
            }
        }
        let w = self.world.borrow();
        for &pfn in &pages {
            if size == PageSize::Large && pfn % 512 != 0 {
                o.violation(format!("{} of unaligned 2 MiB page {pfn:#x}", cmd.name()));
                continue;
            }
            if lock {
                if w.host.holds_any(pfn, size) {
                    o.violation(format!(
                        "{} of pfn {pfn:#x}, which the host holds",
                        cmd.name()
                    ));
                }
                let frames = pfn..pfn.saturating_add(size.frames().get());
                if let Some(f) = frames
                    .clone()
                    .find(|&f| w.guest.owner_of(f) != Some(Owner::Balloon))
                {
                    o.violation(format!(
                        "{} of pfn {f:#x}, not a balloon page ({:?})",
                        cmd.name(),
                        w.guest.owner_of(f)
                    ));
                }
            } else if !w.host.holds_all(pfn, size) {
                o.violation(format!(
                    "{} of pfn {pfn:#x}, which the host does not hold",
                    cmd.name()
                ));
            }
        }
        if lock {
            // The inflation bound: if the host took every page of this call, the balloon
            // would still be within min(target, ceiling) as the engine knew them when it
            // allocated the chunk (the target at that moment; the ceiling from the live
            // snapshot, with the chunk in flight counted as balloon, which leaves it as
            // it was before the allocation).
            let n = (pages.len() as u64).saturating_mul(size.frames().get());
            let held = w.host.held_frames().get();
            let balloon = w.guest.stored_frames().get().saturating_add(o.out);
            let snap = w.guest.snapshot();
            let bound = safe_ceiling(o.t_plan, balloon, &snap, &o.config).min(o.t_plan);
            if held.saturating_add(n) > bound {
                let m = format!(
                    "{} of {n} frames would take the balloon from {held} to {} frames, past \
                     min(target {}, ceiling) = {bound}",
                    cmd.name(),
                    held.saturating_add(n),
                    o.t_plan
                );
                o.violation(m);
            }
        }
    }

    /// Tracks what the engine learns from `reply`, by the protocol's rules.
    fn note(&mut self, cmd: Option<Command>, arg1: u64, reply: &RawReply) {
        let mut o = self.oracle.borrow_mut();
        match cmd {
            Some(Command::Start) => match reply.status {
                status::SUCCESS_WITH_CAPS => {
                    o.wide = reply.capabilities & arg1 & TARGET_64BIT != 0;
                }
                _ => o.wide = false,
            },
            Some(c)
                if c.replies_with_target()
                    && reply.status == status::SUCCESS
                    && (o.wide || reply.result <= u64::from(u32::MAX)) =>
            {
                if reply.result < o.t_known {
                    o.t_dropped = true;
                }
                o.t_known = reply.result;
            }
            _ => {}
        }
    }
}

impl Backdoor for Hostile {
    fn call(&mut self, command: u32, arg1: u64, arg2: u64) -> RawReply {
        self.oracle.borrow_mut().calls += 1;
        let plan = self.script.pop_front().unwrap_or(Reply::Honest);
        let cmd = Command::ALL.get(command as usize).copied();
        let reply = match cmd {
            Some(Command::Start) => self.start(arg1, plan),
            Some(
                c @ (Command::Lock
                | Command::Unlock
                | Command::BatchedLock
                | Command::BatchedUnlock
                | Command::Batched2mLock
                | Command::Batched2mUnlock),
            ) => {
                self.check_pages(c, arg1, arg2);
                self.page_call(c, arg1, arg2, plan)
            }
            _ => self.plain(command, arg1, arg2, plan),
        };
        self.note(cmd, arg1, &reply);
        reply
    }

    fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)> {
        Some((&mut self.page, self.pfn))
    }
}

/// The `PageAllocator`: the simulator's guest, with allocation faults and bookkeeping.
pub struct Pages {
    inner: FakeGuest,
    world: SharedWorld,
    oracle: Rc<RefCell<Oracle>>,
}

fn unit_frames(p: &FakeGuest, u: &GuestUnit) -> u64 {
    p.frames(u).get()
}

impl Pages {
    /// The oracle's checks before an allocation of `want` frames (kind `size`: 4 KiB =
    /// scattered, 2 MiB = a whole block); `None` if a fault makes it fail, else how many
    /// pages to ask for.
    fn before_allocation(&mut self, size: PageSize, pages: usize) -> Option<usize> {
        let mut o = self.oracle.borrow_mut();
        match o.last_low {
            Some(false) => {}
            Some(true) => o.violation("allocation under LowMemoryCondition".to_owned()),
            None => o.violation("allocation without a memory snapshot".to_owned()),
        }
        if !(1..=BATCH_CAPACITY).contains(&pages) {
            o.violation(format!("allocate({pages}) outside 1..=512"));
        }
        let w = self.world.borrow();
        // The ceiling counts every frame the balloon has taken from the guest (stored,
        // staged, parked or in hand); the balloon that must stay under it is what the host
        // holds or will be offered: parked frames the host does not hold (refused pages
        // held back until the end of the tick) are not offered again.
        let footprint = w.guest.stored_frames().get().saturating_add(o.out);
        let offered = footprint.saturating_sub(w.guest.parked_unheld_frames().get());
        let snap = w.guest.snapshot();
        let t = o.t_known;
        let bound = safe_ceiling(t, footprint, &snap, &o.config).min(t);
        let want = (pages as u64).saturating_mul(size.frames().get());
        if offered.saturating_add(want) > bound {
            o.violation(format!(
                "allocation of {want} frames on a balloon of {offered}: past min(target \
                 {t}, ceiling) = {bound}"
            ));
        }
        drop(w);
        o.t_plan = t;
        let i = size.index();
        if o.faults.fail_alloc[i] > 0 {
            o.faults.fail_alloc[i] -= 1;
            return None;
        }
        if o.faults.short_alloc[i] > 0 {
            o.faults.short_alloc[i] -= 1;
            // A short block allocation is no block at all (whole chunks only).
            return (size == PageSize::Small).then(|| pages.div_ceil(2));
        }
        Some(pages)
    }

    fn out(&self, f: u64) {
        self.oracle.borrow_mut().out += f;
    }

    fn back(&self, f: u64, what: &str) {
        let mut o = self.oracle.borrow_mut();
        if f > o.out {
            let m = format!("{what} of {f} frames with only {} out", o.out);
            o.violation(m);
        }
        o.out = o.out.saturating_sub(f);
    }
}

impl PageAllocator for Pages {
    type Unit = GuestUnit;

    fn allocate_block(&mut self) -> Option<GuestUnit> {
        self.before_allocation(PageSize::Large, 1)?;
        let unit = self.inner.allocate_block()?;
        self.out(unit_frames(&self.inner, &unit));
        Some(unit)
    }

    fn allocate_scattered(&mut self, pages: usize) -> Option<GuestUnit> {
        let ask = self.before_allocation(PageSize::Small, pages)?;
        let unit = self.inner.allocate_scattered(ask)?;
        self.out(unit_frames(&self.inner, &unit));
        Some(unit)
    }

    fn frames(&self, unit: &GuestUnit) -> Frames {
        self.inner.frames(unit)
    }

    fn pfn(&self, unit: &GuestUnit, index: usize) -> Option<Pfn> {
        self.inner.pfn(unit, index)
    }

    fn free(&mut self, unit: GuestUnit) {
        self.back(unit_frames(&self.inner, &unit), "free");
        self.inner.free(unit);
    }

    fn store(&mut self, shelf: Shelf, unit: GuestUnit, position: StorePosition) {
        self.back(unit_frames(&self.inner, &unit), "store");
        self.inner.store(shelf, unit, position);
    }

    fn take(&mut self, shelf: Shelf) -> Option<GuestUnit> {
        let unit = self.inner.take(shelf)?;
        self.out(unit_frames(&self.inner, &unit));
        Some(unit)
    }

    fn stage(&mut self, unit: GuestUnit) {
        // Staged units are in the platform's keeping (and in the guest's stored frames).
        self.back(unit_frames(&self.inner, &unit), "stage");
        self.inner.stage(unit);
    }

    fn staged_pfn(&self, unit: usize, index: usize) -> Option<Pfn> {
        self.inner.staged_pfn(unit, index)
    }

    fn unstage(&mut self) -> Option<GuestUnit> {
        let unit = self.inner.unstage()?;
        self.out(unit_frames(&self.inner, &unit));
        Some(unit)
    }

    fn park(&mut self, unit: GuestUnit, held: PageMask) {
        let f = unit_frames(&self.inner, &unit);
        self.back(f, "park");
        self.oracle.borrow_mut().parked += f;
        self.inner.park(unit, held);
    }

    fn unpark(&mut self) -> Option<(GuestUnit, PageMask)> {
        let (unit, held) = self.inner.unpark()?;
        let f = unit_frames(&self.inner, &unit);
        {
            let mut o = self.oracle.borrow_mut();
            o.parked = o.parked.saturating_sub(f);
        }
        self.out(f);
        Some((unit, held))
    }

    fn parked(&self) -> usize {
        self.inner.parked()
    }
}

/// The `MemorySource`: the simulator's guest, with snapshot faults.
pub struct Memory {
    inner: FakeGuest,
    oracle: Rc<RefCell<Oracle>>,
}

impl MemorySource for Memory {
    fn snapshot(&mut self) -> Result<MemorySnapshot, MemoryError> {
        let mut o = self.oracle.borrow_mut();
        if o.faults.fail_snapshots > 0 {
            o.faults.fail_snapshots -= 1;
            o.last_low = None;
            return Err(MemoryError::Unavailable);
        }
        let mut s = self.inner.snapshot()?;
        if o.faults.force_low_memory > 0 {
            o.faults.force_low_memory -= 1;
            s.low_memory = true;
        }
        o.last_low = Some(s.low_memory);
        Ok(s)
    }
}

/// The engine under test.
pub type Engine = Balloon<Hostile, Pages, Memory, ManualClock>;

/// Simulated time per tick group bound: ticks run again at once while `more_work`.
const MAX_TICKS_PER_POLL: u32 = 64;

const SECOND: u64 = 1_000_000_000;

/// One run: the world, the engine, the oracle, and the checks.
pub struct Harness {
    /// Simulated time.
    pub clock: ManualClock,
    /// The simulator's world (guest model, host model, protocol checker).
    pub world: SharedWorld,
    /// The oracle.
    pub oracle: Rc<RefCell<Oracle>>,
    /// The engine.
    pub engine: Engine,
    /// The setup.
    pub setup: Setup,
    ids: Vec<String>,
    next_second: u64,
    /// Engine ticks run.
    pub ticks: u64,
    /// The last tick's report.
    pub last: Option<TickReport>,
    /// Every accounting measurement the engine reported, in order.
    pub calibrations: Vec<Calibration>,
}

/// A broken invariant, with the context to reproduce it.
pub type Failure = String;

impl Harness {
    /// A fresh VM: the engine has not ticked yet; the host answers as `script` says, then
    /// honestly.
    #[must_use]
    pub fn new(setup: &Setup, script: Vec<Reply>) -> Self {
        let clock = ManualClock::new();
        let guest = GuestModel::new(setup.guest);
        let host = HostModel::new(setup.host, guest.total());
        let world = World::new(guest, host, clock.clone());
        let oracle = Rc::new(RefCell::new(Oracle {
            config: setup.config,
            ..Oracle::default()
        }));
        let inner = FakeHost::new(world.clone());
        let pfn = Pfn::new(world.borrow().guest.batch_page_pfn()).unwrap_or(Pfn::MAX);
        let host = Hostile {
            world: world.clone(),
            inner,
            page: Box::new(BatchPage::zeroed()),
            pfn,
            script: script.into(),
            oracle: oracle.clone(),
        };
        let pages = Pages {
            inner: FakeGuest::new(world.clone()),
            world: world.clone(),
            oracle: oracle.clone(),
        };
        let memory = Memory {
            inner: FakeGuest::new(world.clone()),
            oracle: oracle.clone(),
        };
        let engine = Balloon::new(host, pages, memory, clock.clone(), setup.config);
        Self {
            clock,
            world,
            oracle,
            engine,
            setup: *setup,
            ids: Vec::new(),
            next_second: SECOND,
            ticks: 0,
            last: None,
            calibrations: Vec::new(),
        }
    }

    /// Applies one guest step (between ticks).
    pub fn guest_step(&mut self, step: &GuestStep) {
        let now = self.clock.now();
        match step {
            GuestStep::Idle => {}
            GuestStep::Lock { kind, mib } => {
                let id = format!("r{}", self.ids.len());
                self.world
                    .borrow_mut()
                    .guest
                    .lock(&id, *kind, Frames::from_mib(*mib), now);
                self.ids.push(id);
            }
            GuestStep::Commit { mib } => {
                let id = format!("r{}", self.ids.len());
                self.world
                    .borrow_mut()
                    .guest
                    .commit(&id, Frames::from_mib(*mib), now);
                self.ids.push(id);
            }
            GuestStep::Release(n) => {
                if !self.ids.is_empty() {
                    let id = &self.ids[n % self.ids.len()];
                    self.world.borrow_mut().guest.release(id);
                }
            }
            GuestStep::Faults(f) => self.oracle.borrow_mut().faults.add(f),
            GuestStep::Config(c) => {
                self.engine.set_config(*c);
                self.oracle.borrow_mut().config = *c;
            }
            GuestStep::Target(t) => self.world.borrow_mut().host.set_target(Frames::new(*t)),
        }
    }

    /// Advances simulated time by one poll interval (the guest retries failed requests and
    /// trims working sets on every whole second), then ticks (again at once while the
    /// engine reports more work) and checks every invariant after each tick.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn tick(&mut self) -> Result<TickReport, Failure> {
        let poll = self.engine.config().poll_interval;
        self.clock.advance(poll);
        let now = self.clock.now().as_nanos();
        {
            let mut w = self.world.borrow_mut();
            while self.next_second <= now {
                w.guest.retry_due(Instant::from_nanos(self.next_second));
                w.guest.balance();
                self.next_second += SECOND;
            }
        }
        let mut report = None;
        for _ in 0..MAX_TICKS_PER_POLL {
            self.oracle.borrow_mut().t_dropped = false;
            let r = self.engine.tick();
            self.ticks += 1;
            self.check(&r)?;
            if let Some(c) = r.calibrated {
                self.calibrations.push(c);
            }
            self.last = Some(r);
            report = Some(r);
            if !r.more_work {
                break;
            }
        }
        report.ok_or_else(|| "no tick ran".to_owned())
    }

    fn context(&self, r: Option<&TickReport>) -> String {
        let w = self.world.borrow();
        let mut s = String::new();
        let _ = write!(
            s,
            "\n  t={:.3}s ticks={} state={:?} balloon={} host_held={} stored={} guest_balloon={} \
             target_known={} scripted_left={} setup={:?}\n  calibrations: {:?}",
            self.clock.now().as_nanos() as f64 / 1e9,
            self.ticks,
            self.engine.state(),
            self.engine.size().get(),
            w.host.held_frames().get(),
            w.guest.stored_frames().get(),
            w.guest.balloon_frames().get(),
            self.oracle.borrow().t_known,
            self.engine.channel().backdoor().scripted(),
            self.setup,
            self.calibrations,
        );
        if let Some(r) = r {
            let _ = write!(s, "\n  report: {r:?}");
        }
        s
    }

    /// Every invariant that must hold after any tick.
    fn check(&self, r: &TickReport) -> Result<(), Failure> {
        let fail = |what: String| Err(format!("{what}{}", self.context(Some(r))));
        let w = self.world.borrow();
        if w.checker.count() > 0 {
            let v: Vec<String> = w
                .checker
                .violations()
                .iter()
                .map(ToString::to_string)
                .collect();
            return fail(format!(
                "{} protocol / platform violations: {v:?}",
                w.checker.count()
            ));
        }
        let o = self.oracle.borrow();
        if !o.violations.is_empty() {
            return fail(format!("oracle violations: {:?}", o.violations));
        }
        let size = self.engine.size().get();
        let stored = w.guest.stored_frames().get();
        let dropped = w.guest.dropped_frames().get();
        if dropped != 0 {
            return fail(format!("{dropped} frames leaked in dropped chunks"));
        }
        if o.out != 0 {
            return fail(format!(
                "after the tick {} frames still out of the store",
                o.out
            ));
        }
        if w.guest.balloon_frames().get() != stored {
            return fail(format!(
                "leak: the guest charges {} frames to the balloon, {stored} are stored",
                w.guest.balloon_frames().get()
            ));
        }
        let unheld = w.guest.parked_unheld_frames().get();
        if size.saturating_add(unheld) != stored || r.balloon.get() != size {
            return fail(format!(
                "accounting: engine size {size}, report {}, stored {stored} (of which {unheld} \
                 parked and not held)",
                r.balloon.get()
            ));
        }
        if w.contract.count() > 0 {
            let v: Vec<String> = w
                .contract
                .violations()
                .iter()
                .map(ToString::to_string)
                .collect();
            return fail(format!("{} contract violations: {v:?}", w.contract.count()));
        }
        let host = w.host.held_frames().get();
        let pending = self.engine.channel().reset_pending();
        if pending && host != 0 {
            return fail(format!("reset pending but the host holds {host} frames"));
        }
        if !pending && host != size {
            return fail(format!("the host holds {host} frames, the engine {size}"));
        }
        if self.engine.channel().target().get() != o.t_known {
            return fail(format!(
                "the engine's target {} is not the one the host last reported ({})",
                self.engine.channel().target().get(),
                o.t_known
            ));
        }
        if r.state == SessionState::Running && self.engine.channel().session().is_none() {
            return fail("running without a session".to_owned());
        }
        if !r.inflated.is_zero() {
            // A tick that inflated leaves both floors intact: the guest does nothing during
            // a tick here, so anything below a floor would be the balloon's doing.
            let snap = w.guest.snapshot();
            let floor = policy::reserve(&o.config, snap.total).get();
            let ra = w.guest.resident_available().get();
            let commit_free = w
                .guest
                .commit_limit()
                .get()
                .saturating_sub(w.guest.committed().get());
            if ra < floor || commit_free < floor {
                return fail(format!(
                    "inflating left resident available {ra} / commit headroom {commit_free} \
                     below the floor {floor}"
                ));
            }
            // The literal form: when the host did not lower its target during the tick,
            // an inflating tick ends within min(target, ceiling).
            let t = o.t_known;
            let c = safe_ceiling(t, size, &snap, &o.config).min(t);
            if !o.t_dropped && size > c {
                return fail(format!(
                    "inflating ended at {size} frames, above min(target, ceiling) = {c}"
                ));
            }
        }
        Ok(())
    }

    /// Makes the host honest and the guest quiet (pending guest requests cancelled, faults
    /// cleared), sets the host's target to `target` frames, runs `seconds` of simulated
    /// time, and checks that the session is running again (within the START back-off, 8 s,
    /// plus two polls of the host turning honest) and that the balloon settled within one
    /// 2 MiB page of min(target, ceiling), or below it only where the guest keeps it there
    /// (allocation failures or `LowMemoryCondition`).
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn recover(&mut self, target: u64, seconds: u64) -> Result<(), Failure> {
        self.engine.backdoor_mut().set_script([]);
        self.oracle.borrow_mut().faults = Faults::default();
        {
            let mut w = self.world.borrow_mut();
            let pending: Vec<String> = w
                .guest
                .requests()
                .filter(|(_, _, _, s)| {
                    matches!(s, vmballoon_sim::guest::RequestState::Pending { .. })
                })
                .map(|(id, ..)| id.to_owned())
                .collect();
            for id in pending {
                w.guest.release(&id);
            }
            w.host.set_target(Frames::new(target));
        }
        let start = self.clock.now().as_nanos();
        let mut end = start.saturating_add(seconds.saturating_mul(SECOND));
        let poll = self.engine.config().poll_interval.as_nanos();
        // Re-inflation after guest pressure waits for the damping hold-off
        // (`docs/architecture.md`, "Guest pressure, damping and memory signals"): the run is
        // extended by a hold-off in force, never by more than the longest one.
        let latest = end
            .saturating_add(policy::HOLD_MAX.as_nanos())
            .saturating_add(2 * poll);
        // START back-off is capped at 8 s; then one poll, and one more for a tick that
        // lands just before the back-off ends.
        let backoff = vmballoon_core::engine::MAX_BACKOFF.as_nanos();
        let running_by = start.saturating_add(backoff).saturating_add(2 * poll);
        let usable = self.setup.usable_host();
        while self.clock.now().as_nanos() < end {
            let r = self.tick()?;
            let now = self.clock.now().as_nanos();
            let damping = self.engine.damping();
            if damping.armed() {
                let released = now
                    .saturating_add(damping.hold().as_nanos())
                    .saturating_add(2 * poll);
                end = end.max(released.min(latest));
            }
            if usable && now >= running_by && r.state != SessionState::Running {
                return Err(format!(
                    "the session is not running {:.1}s after the host turned honest{}",
                    (now - start) as f64 / 1e9,
                    self.context(Some(&r))
                ));
            }
        }
        let r = self.last.unwrap_or_default();
        if !usable {
            if self.engine.state() == SessionState::Running || !self.engine.size().is_zero() {
                return Err(format!(
                    "a host without a lock command gave a session{}",
                    self.context(Some(&r))
                ));
            }
            return Ok(());
        }
        let w = self.world.borrow();
        let snap = w.guest.snapshot();
        let limit = snap.total.get();
        let t = w.host.effective_target().get().min(limit);
        let b = self.engine.size().get();
        let goal = safe_ceiling(t, b, &snap, &self.oracle.borrow().config).min(t);
        let slack = SLACK.get();
        if b >= goal.saturating_add(slack) {
            return Err(format!(
                "after {seconds}s with an honest host the balloon is {b} frames, above \
                 min(target, ceiling) = {goal} by a 2 MiB page or more{}",
                self.context(Some(&r))
            ));
        }
        let guest_limited = w.guest.low_memory()
            || matches!(
                r.reason,
                Some(ClampReason::AllocationFailed | ClampReason::LowMemory)
            );
        if b.saturating_add(slack) <= goal && !guest_limited {
            return Err(format!(
                "after {:.1}s with an honest host the balloon is {b} frames, below \
                 min(target, ceiling) = {goal} by a 2 MiB page or more, and the guest does not \
                 hold it back (damping hold-off {:?}, armed {}){}",
                (self.clock.now().as_nanos() - start) as f64 / 1e9,
                self.engine.damping().hold(),
                self.engine.damping().armed(),
                self.context(Some(&r))
            ));
        }
        Ok(())
    }

    /// Unloads the driver and checks that every page went back: nothing charged to the
    /// balloon, nothing stored, nothing held by the host, no violation, a consistent model.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn shutdown(mut self) -> Result<(), Failure> {
        let before = self.engine.size();
        let popped = self.engine.shutdown();
        let ctx = self.context(None);
        let w = self.world.borrow();
        let o = self.oracle.borrow();
        let mut problems = Vec::new();
        if popped != before {
            problems.push(format!(
                "shutdown popped {popped:?}, the balloon was {before:?}"
            ));
        }
        if !w.guest.balloon_frames().is_zero() || !w.guest.stored_frames().is_zero() {
            problems.push(format!(
                "after shutdown {} frames still charged to the balloon",
                w.guest.balloon_frames().get()
            ));
        }
        if !w.host.held_frames().is_zero() {
            problems.push(format!(
                "after shutdown the host holds {} frames",
                w.host.held_frames().get()
            ));
        }
        if !self.engine.size().is_zero() || self.engine.state() != SessionState::Unstarted {
            problems.push("the engine still has a balloon or a session".to_owned());
        }
        if w.checker.count() > 0 || w.contract.count() > 0 {
            let v: Vec<String> = w
                .checker
                .violations()
                .iter()
                .chain(w.contract.violations())
                .map(ToString::to_string)
                .collect();
            problems.push(format!("violations: {v:?}"));
        }
        if !o.violations.is_empty() {
            problems.push(format!("oracle violations: {:?}", o.violations));
        }
        if !w.guest.dropped_frames().is_zero() {
            problems.push("dropped chunks".to_owned());
        }
        problems.extend(w.guest.self_check());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{problems:?}{ctx}"))
        }
    }
}

/// One whole run: `steps` (one guest step, then one tick, each), then `recover_s` seconds
/// of an honest host and a quiet guest with target `recover_target`, then unload.
///
/// # Errors
/// The first broken invariant.
pub fn run(
    setup: &Setup,
    script: Vec<Reply>,
    steps: &[GuestStep],
    recover_target: u64,
    recover_s: u64,
) -> Result<(), Failure> {
    let mut h = Harness::new(setup, script);
    for step in steps {
        h.guest_step(step);
        h.tick()?;
    }
    h.recover(recover_target, recover_s)?;
    h.shutdown()
}

/// A guest spec from sizes in MiB (RAM rounded down to whole 2 MiB blocks, at least one;
/// OS memory below RAM), `scattered` for a long-running guest's pageable layout.
#[must_use]
pub fn guest_spec(
    ram_mib: u64,
    os_mib: u64,
    pagefile_mib: u64,
    committed_mib: u64,
    scattered: bool,
) -> GuestSpec {
    let ram = (ram_mib - ram_mib % 2).max(2);
    GuestSpec {
        ram: Frames::from_mib(ram),
        os_locked: Frames::from_mib(os_mib.min(ram - 1)),
        pagefile: Frames::from_mib(pagefile_mib),
        committed: Frames::from_mib(committed_mib),
        layout: if scattered {
            vmballoon_sim::guest::PageableLayout::Scattered
        } else {
            vmballoon_sim::guest::PageableLayout::Packed
        },
    }
}
