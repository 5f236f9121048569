//! The hostile host: [`Hostile`], a [`Backdoor`] that answers each call as a [`Reply`]
//! script says and otherwise delegates to the simulator's VMware host model (`FakeHost`).
//!
//! A script can answer any EAX, any RBX / RCX, per-entry statuses 1..=31, rewritten entry
//! addresses, reserved bits, garbage past the batch, RESET / BUSY anywhere
//! (`docs/hostile-inputs.md`). The host model stays *sound*: a perturbed reply is one a
//! protocol-conforming host could give, so the model's held-frame set stays the truth. A
//! call answered with a non-SUCCESS status is not delegated (the host did nothing); RESET
//! makes the host forget every page; a batch entry answered with a refusal or a rewritten
//! address is taken out of the batch the model sees (the host did not take that page);
//! START is always delegated (it always ends the session).
//!
//! At every LOCK and UNLOCK the host checks the guest's side of the protocol for every
//! page, including those the model will not see (no LOCK of a frame the host holds or
//! that is not a balloon page, no UNLOCK of one it does not hold, batches well formed),
//! and the inflation bound ([`crate::oracle`]); it also tracks the target the engine
//! learns from each reply, by the protocol's rules.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use vmballoon_core::protocol::{BATCH_CAPACITY, Backdoor, BatchPage, Command, RawReply};
use vmballoon_core::units::{PageSize, Pfn};
use vmballoon_sim::guest::Owner;
use vmballoon_sim::host::FakeHost;
use vmballoon_sim::world::SharedWorld;

use crate::oracle::{Oracle, safe_ceiling};

/// EAX values with a meaning (`docs/protocol.md` §3).
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
pub(crate) const REQUESTED: u64 = 0x2E;
/// BASIC_CMDS.
pub(crate) const BASIC: u64 = 0x02;
/// BATCHED_CMDS.
pub(crate) const BATCHED: u64 = 0x04;
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

impl Reply {
    /// The host does nothing and answers EAX = `status`, with RBX and RCX zero: a bare
    /// status such as [`status::RESET`], [`status::BUSY`] or [`status::FAILURE`].
    #[must_use]
    pub const fn status(status: u32) -> Self {
        Self::answer(status, 0, 0)
    }

    /// The host does nothing and answers EAX = `status`, RBX = `rbx`, RCX = `rcx` (see
    /// [`Reply::Status`] for START and for a page command answered SUCCESS).
    #[must_use]
    pub const fn answer(status: u32, rbx: u64, rcx: u64) -> Self {
        Self::Status { status, rbx, rcx }
    }

    /// A batched call whose entry `i` is answered as `entries[i % len]`, with `tail`
    /// written past the count when it is not zero (see [`Reply::Entries`]).
    #[must_use]
    pub fn entries(entries: impl IntoIterator<Item = EntryReply>, tail: u64) -> Self {
        Self::Entries {
            entries: entries.into_iter().collect(),
            tail,
        }
    }
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
    /// The simulator's host of `world`, answering as `script` says and then honestly, and
    /// reporting to `oracle`.
    pub(crate) fn new(world: SharedWorld, script: Vec<Reply>, oracle: Rc<RefCell<Oracle>>) -> Self {
        let inner = FakeHost::new(world.clone());
        let pfn = Pfn::new(world.borrow().guest.batch_page_pfn()).unwrap_or(Pfn::MAX);
        Self {
            world,
            inner,
            page: Box::new(BatchPage::zeroed()),
            pfn,
            script: script.into(),
            oracle,
        }
    }

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
        // page, as the reset and unload paths rely on (docs/protocol.md §2.1).
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
        let mut o = self.oracle.borrow_mut();
        let single = matches!(cmd, Command::Lock | Command::Unlock);
        let count = if single {
            1
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
            n.min(BATCH_CAPACITY)
        };
        let w = self.world.borrow();
        for i in 0..count {
            let pfn = if single {
                arg1
            } else {
                let raw = u64::from_le(self.page.entries[i]);
                if raw & 0xFFF != 0 {
                    o.violation(format!(
                        "{} entry {i} has low bits set: {raw:#x}",
                        cmd.name()
                    ));
                }
                raw >> 12
            };
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
            let n = (count as u64).saturating_mul(size.frames().get());
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
